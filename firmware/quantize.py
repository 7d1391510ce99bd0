"""Post-training quantization: a float n-S4D model -> the integer :class:`~firmware.qmodel.QModel`.

Every integer stage of :func:`~firmware.qmodel.qforward` carries real values on a *scale*
(``value = integer / scale``). PTQ picks the scales from calibration data, then every integer
parameter follows from the float one and the scales of the stage's input and output:

* input tokens: ``in_scale``, a power of two, so calibration tokens reach ``2**(W-1-headroom)``
* encoder and mixing outputs ``z``: one scale per stage (``s_z``); readout sums ``y``: one
  scale per channel (``s_y[h]``, covering the positive sum and every single mode's output,
  which can be far larger than their sum); running logits: ``out_scale``. Each calibration
  maximum lands at ``2**(W-1-headroom)``, leaving ``headroom`` bits for unseen inputs.
* linear ``o = sum_i W[o,i] v[i] + b[o]``: ``Wq[o,i] = round(W[o,i] s_out / s_in[i] 2**shift[i])``
  with the largest ``shift[i]`` (0..31) that keeps column ``i`` in int8: per-input-column
  quantization, the best the one-shift-per-axon synapses allow. ``b`` on ``s_out`` as
  ``bq << bias_shift`` with the smallest shift that fits the 16-bit coefficient.
* S4D modes: ``M = N+1`` per channel (mode ``N`` is the D skip: ``dA = 0``, ``dB = D``,
  ``C' = 1/2``). Each mode has its own state scale ``s_x[h,m]``: as large as the state range
  (calibration maximum at ``2**(W-1-headroom)``) and the 16-bit ``dB`` allow. Then
  ``dAq = round(dA 2**frac)``, ``dBq = round(dB s_x / s_z 2**frac)``,
  ``Cq = round(2 C' s_y / s_x 2**out_shift)`` stored as ``(Re, -Im)``; ``frac = coef_width-1``
  (15: ``|dA|`` up to 0.99997) and ``out_shift`` per layer, the largest that keeps ``Cq`` in range.

:func:`quantize` also keeps every linear's worst case (all inputs at full scale) inside the
accumulator (:func:`accumulator_bounds`), as the compiler requires, by giving a stage more
headroom where needed. :func:`qforward_stats` runs the quantized reference and counts
saturations per stage (it mirrors :func:`~firmware.qmodel.qforward` and returns the same logits).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.fixed import rnd, sat, smax, wrap

from .model import FloatModel
from .qmodel import QLayer, QLinear, QModel

__all__ = ["Scales", "calibrate", "choose_scales", "quantize_with_scales", "quantize",
           "qforward_stats", "accumulator_bounds", "mode_params", "QuantReport"]


@dataclass
class Scales:
    """Real-valued scales of every integer stage (``value = integer / scale``)."""
    in_scale: float
    z: list                 # L+1 floats: encoder output, then each layer's output
    x: list                 # L arrays (H, M): state scale per mode
    y: list                 # L arrays (H,): ReLU output scale per channel
    out_scale: float

    def to_dict(self) -> dict:
        return {"in_scale": self.in_scale, "z": [float(v) for v in self.z],
                "x": [np.asarray(v).tolist() for v in self.x],
                "y": [np.asarray(v).tolist() for v in self.y], "out_scale": self.out_scale}

    @classmethod
    def from_dict(cls, d: dict) -> Scales:
        return cls(float(d["in_scale"]), [float(v) for v in d["z"]],
                   [np.asarray(v, np.float64) for v in d["x"]],
                   [np.asarray(v, np.float64) for v in d["y"]], float(d["out_scale"]))


@dataclass
class QuantReport:
    """Saturation counts of the quantized model on calibration data, per stage."""
    saturated: dict = field(default_factory=dict)   # stage -> count of saturated values
    total: dict = field(default_factory=dict)       # stage -> number of values computed
    weight_clipped: int = 0                         # parameters clipped to their integer range

    @property
    def any_saturation(self) -> bool:
        return any(self.saturated.values()) or self.weight_clipped > 0

    def __str__(self) -> str:
        parts = [f"{k}: {v}/{self.total[k]}" for k, v in self.saturated.items() if v]
        sat_txt = ", ".join(parts) if parts else "none"
        return f"saturated values: {sat_txt}; clipped parameters: {self.weight_clipped}"


def mode_params(model: FloatModel) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per layer the fabric's M = N+1 modes as complex (dA, dB, C') arrays (H, M): the
    S4D modes, then the D skip (dA = 0, dB = D, C' = 1/2, so 2 Re(C' x) = D u)."""
    out = []
    for ly in model.layers:
        dA = np.concatenate([ly.dA, np.zeros((ly.H, 1))], axis=1)           # (H, M)
        dB = np.concatenate([ly.dB, ly.D[:, None].astype(np.complex128)], axis=1)
        Cp = np.concatenate([ly.Cp, np.full((ly.H, 1), 0.5 + 0j)], axis=1)
        out.append((dA, dB, Cp))
    return out


def calibrate(model: FloatModel, tokens: np.ndarray) -> dict:
    """Maxima of |value| at every stage of the float model on ``tokens`` (B, K, d_in)."""
    trace: dict = {}
    logits = model.forward_recurrent(tokens, trace=trace)
    r = {"in": float(np.max(np.abs(tokens))), "z": [float(np.max(np.abs(trace["z_enc"])))],
         "x": [], "y": [], "out": float(np.max(np.abs(logits)))}
    for i, ly in enumerate(model.layers):
        xs = trace[f"x{i}"]                                                 # (B, K, H, N)
        xmax = np.maximum(np.abs(xs.real), np.abs(xs.imag)).max(axis=(0, 1))  # (H, N)
        skip = np.abs(trace[f"u{i}"] * ly.D).max(axis=(0, 1))               # (H,)
        r["x"].append(np.concatenate([xmax, skip[:, None]], axis=1))        # (H, M)
        Cp = ly.Cp                                                          # (H, N)
        o = 2 * np.abs((Cp * xs).real).max(axis=(0, 1))                      # (H, N) per mode
        ypos = np.maximum(trace[f"y{i}"], 0).max(axis=(0, 1))                # (H,)
        r["y"].append(np.maximum(ypos, np.maximum(o.max(axis=1), skip)))     # (H,)
        r["z"].append(float(np.max(np.abs(trace[f"z{i}"]))))
    return r


def choose_scales(model: FloatModel, ranges: dict, cfg: FabricConfig | None = None,
                  headroom: int = 3) -> Scales:
    """Scales putting every calibration maximum at ``2**(state_width-1-headroom)``."""
    cfg = cfg or FabricConfig()
    target = float(2 ** (cfg.state_width - 1 - headroom))
    cmax, frac = smax(cfg.coef_width), cfg.coef_width - 1

    def scale(m):
        return target / m if m > 0 else 1.0

    in_scale = float(2.0 ** np.floor(np.log2(scale(ranges["in"]))))
    z = [scale(m) for m in ranges["z"]]
    xs, ys = [], []
    for i, (_, dB, Cp) in enumerate(mode_params(model)):
        y = ranges["y"][i]
        ys.append(target / np.maximum(y, max(1e-3 * y.max(), 1e-12)))
        dbmax = np.maximum(np.abs(dB.real), np.abs(dB.imag))                # (H, M)
        by_db = np.where(dbmax > 0, cmax / np.maximum(dbmax, 1e-300) / 2 ** frac, np.inf) * z[i]
        xm = ranges["x"][i]
        by_range = np.where(xm > 0, target / np.maximum(xm, 1e-300), np.inf)
        sx = np.minimum(by_db, by_range)
        # a mode with dB = 0 never leaves 0: pick the scale that makes its C about 1, so that
        # it does not limit the layer's out_shift
        dead = np.maximum(2 * np.abs(Cp) * ys[-1][:, None], 1e-12)
        xs.append(np.where(np.isfinite(sx), sx, dead))
    return Scales(in_scale, z, xs, ys, scale(ranges["out"]))


def _fit(v: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, int]:
    q = np.floor(v + 0.5)
    clipped = int(np.count_nonzero((q < lo) | (q > hi)))
    return np.clip(q, lo, hi).astype(np.int64), clipped


def _qlinear(W: np.ndarray, b: np.ndarray, s_in, s_out: float, cfg: FabricConfig
             ) -> tuple[QLinear, int]:
    """Quantize ``o = W v + b`` from input scale(s) ``s_in`` to output scale ``s_out``."""
    wmax, cmax = smax(cfg.weight_width), smax(cfg.coef_width)
    real = W * s_out / np.broadcast_to(np.asarray(s_in, np.float64), (W.shape[1],))  # (out, in)
    colmax = np.abs(real).max(axis=0)                                              # (in,)
    with np.errstate(divide="ignore"):
        shift = np.floor(np.log2((wmax + 0.49) / colmax))
    shift = np.clip(np.where(np.isfinite(shift), shift, 0), 0, 31).astype(np.int64)
    Wq, c1 = _fit(real * 2.0 ** shift, -wmax - 1, wmax)
    bmax = np.abs(b * s_out).max(initial=0.0)
    bs = 0
    while bs < 31 and np.floor(bmax / 2 ** bs + 0.5) > cmax:
        bs += 1
    bq, c2 = _fit(b * s_out / 2 ** bs, -cmax - 1, cmax)
    return QLinear(Wq, shift, bq, bs), c1 + c2


def _pairs(z: np.ndarray) -> np.ndarray:
    return np.stack([z.real, z.imag], axis=-1)


def quantize_with_scales(model: FloatModel, scales: Scales, cfg: FabricConfig | None = None
                         ) -> tuple[QModel, int]:
    """The QModel for fixed ``scales``; returns it and the number of clipped parameters."""
    cfg = cfg or FabricConfig()
    cmax, frac = smax(cfg.coef_width), cfg.coef_width - 1
    enc, clipped = _qlinear(model.enc_W, model.enc_b, scales.in_scale, scales.z[0], cfg)
    layers = []
    for i, (ly, (dA, dB, Cp)) in enumerate(zip(model.layers, mode_params(model))):
        sx, sy, sz = scales.x[i], scales.y[i], scales.z[i]
        dAq, c1 = _fit(_pairs(dA) * 2 ** frac, -cmax - 1, cmax)
        dBq, c2 = _fit(_pairs(dB * sx / sz) * 2 ** frac, -cmax - 1, cmax)
        creal = 2 * Cp * sy[:, None] / sx                                   # (H, M)
        cpair = np.stack([creal.real, -creal.imag], axis=-1)                # (H, M, 2)
        peak = np.abs(cpair).max()
        out_shift = int(np.clip(np.floor(np.log2((cmax + 0.49) / peak)), 0, 31)) if peak else 0
        Cq, c3 = _fit(cpair * 2 ** out_shift, -cmax - 1, cmax)
        mix, c4 = _qlinear(ly.W, ly.b, sy, scales.z[i + 1], cfg)
        layers.append(QLayer(dAq, dBq, Cq, frac, out_shift, np.zeros(ly.H, np.int64), 0, mix))
        clipped += c1 + c2 + c3 + c4
    dec, c5 = _qlinear(model.dec_W, model.dec_b, scales.z[-1], scales.out_scale, cfg)
    q = QModel(enc, layers, dec, scales.in_scale, scales.out_scale,
               {"scales": scales.to_dict(), **{k: v for k, v in model.meta.items()
                                               if isinstance(v, (str, int, float, bool))}})
    return q, clipped + c5


def quantize(model: FloatModel, calib_tokens: np.ndarray, cfg: FabricConfig | None = None,
             headroom: int = 3) -> tuple[QModel, QuantReport]:
    """PTQ: calibrate on ``calib_tokens`` (B, K, d_in) floats, choose scales, quantize, and
    report saturations of the quantized model on the same data."""
    cfg = cfg or FabricConfig()
    ranges = calibrate(model, calib_tokens)
    for _ in range(32):
        scales = choose_scales(model, ranges, cfg, headroom)
        q, clipped = quantize_with_scales(model, scales, cfg)
        over = [k for k, v in accumulator_bounds(q, cfg).items() if v > smax(cfg.acc_width)]
        if not over:
            break
        # a linear whose worst case (every input at full scale) could wrap the accumulator:
        # give its output one more bit of headroom (the compiler rejects such models)
        for k in over:
            if k == "dec":
                ranges["out"] *= 2
            else:
                j = 0 if k == "enc" else int(k.split(".")[1]) + 1
                ranges["z"][j] *= 2
    _, report = qforward_stats(q, q.quantize_input(calib_tokens, cfg), cfg)
    report.weight_clipped = clipped
    return q, report


def accumulator_bounds(q: QModel, cfg: FabricConfig | None = None) -> dict:
    """Worst-case |accumulator| of each linear stage when every input payload is at full scale
    (``2**(W-1)``): ``{'enc' | 'layers.i.mix' | 'dec': bound}``. A model compiles only if every
    bound fits the signed ``acc_width`` accumulator (then ``wrap`` never acts)."""
    cfg = cfg or FabricConfig()
    P = np.int64(1) << (cfg.state_width - 1)
    lins = {"enc": q.enc, **{f"layers.{i}.mix": ly.mix for i, ly in enumerate(q.layers)},
            "dec": q.dec}
    return {k: int(rnd(P * np.abs(lin.W.astype(np.int64)), lin.shift[None, :]).sum(axis=1).max())
            for k, lin in lins.items()}


def qforward_stats(model: QModel, tokens: np.ndarray, cfg: FabricConfig | None = None
                   ) -> tuple[np.ndarray, QuantReport]:
    """:func:`~firmware.qmodel.qforward`, counting values that saturate (or wrap) per stage."""
    cfg = cfg or FabricConfig()
    W, A = cfg.state_width, cfg.acc_width
    rep = QuantReport()

    def count(name, before, after):
        rep.saturated[name] = rep.saturated.get(name, 0) + int(np.count_nonzero(before != after))
        rep.total[name] = rep.total.get(name, 0) + int(np.size(before))
        return after

    def linear(v, lin, name):
        prod = rnd(v[:, None, :] * lin.W[None].astype(np.int64), lin.shift[None, None, :])
        tot = prod.sum(axis=2)
        acc = sat(count(name + ".wrap", tot, wrap(tot, A)), W)
        acc = count(name + ".acc", wrap(tot, A), acc)
        bias = sat(lin.b.astype(np.int64) << lin.bias_shift, W)
        return count(name + ".out", acc + bias, sat(acc + bias, W))

    tokens = np.asarray(tokens, dtype=np.int64)
    Bsz, K, _ = tokens.shape
    states = [np.zeros((Bsz,) + ly.dA.shape, dtype=np.int64) for ly in model.layers]
    s = np.zeros((Bsz, model.classes), dtype=np.int64)
    out = np.zeros((Bsz, K, model.classes), dtype=np.int64)
    for k in range(K):
        z = linear(tokens[:, k], model.enc, "enc")
        for i, (ly, x) in enumerate(zip(model.layers, states)):
            u = z[:, :, None]
            xr, xi = x[..., 0], x[..., 1]
            dAr, dAi, dBr, dBi = ly.dA[..., 0], ly.dA[..., 1], ly.dB[..., 0], ly.dB[..., 1]
            vr = rnd(xr * dAr - xi * dAi + u * dBr, ly.frac)
            vi = rnd(xr * dAi + xi * dAr + u * dBi, ly.frac)
            nr = count(f"layers.{i}.state", vr, sat(vr, W))
            ni = count(f"layers.{i}.state", vi, sat(vi, W))
            x[..., 0], x[..., 1] = nr, ni
            ov = rnd(nr * ly.C[..., 0] + ni * ly.C[..., 1], ly.out_shift)
            o = count(f"layers.{i}.mode_out", ov, sat(ov, W))
            tot = o.sum(axis=2)
            acc = sat(count(f"layers.{i}.readout.wrap", tot, wrap(tot, A)), W)
            # a saturation that the ReLU turns into 0 anyway is harmless: not counted
            count(f"layers.{i}.readout.acc", np.maximum(wrap(tot, A), 0), np.maximum(acc, 0))
            rb = sat(ly.relu_bias.astype(np.int64) << ly.relu_bias_shift, W)
            y = np.maximum(sat(acc + rb, W), 0)
            count(f"layers.{i}.readout.out", np.maximum(acc + rb, 0), y)
            z = linear(y, ly.mix, f"layers.{i}.mix")
        d = linear(z, model.dec, "dec")
        s = count("integrator", s + d, sat(s + d, W))
        out[:, k] = s
    return out, rep
