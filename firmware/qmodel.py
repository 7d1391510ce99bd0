"""The quantized reference: the integer n-S4D model that *defines* what the fabric computes.

A :class:`QModel` holds only integers (plus the float scales used to quantize inputs and to read
logits). :func:`qforward` runs it layer by layer with exactly the fabric's arithmetic: every
stage is one of the shipped neuron programs (``firmware/programs``) and every connection one
synaptic multiply-shift, so the compiled fabric must reproduce it bit for bit.

Per token k (``x_k``: (d_in,) integer payloads), with ``rnd``/``sat``/``wrap`` of
``neuroloom.contract.fixed`` (W = state_width, A = acc_width)::

    linear(v, Wq, shift, b, bs)[o] =
        sat(sat(wrap(sum_i rnd(v[i] * Wq[o, i], shift[i]))) + sat(b[o] << bs))

    z  = linear(x_k, enc)                                       # stage 0 (program 'linear')
    for each layer l:
        u  = z                                                  # synapse weight 1, shift 0
        (xr, xi)[h, n] = CMAD: sat(rnd(xr*dAr - xi*dAi + u*dBr, frac)),
                               sat(rnd(xr*dAi + xi*dAr + u*dBi, frac))      # program 's4d'
        o[h, n] = sat(rnd(xr*Cr + xi*Cni, out_shift))          # Cni = -Im C'
        y[h] = max(sat(sat(wrap(sum_n o[h, n])) + sat(rb[h] << rbs)), 0)    # program 'relu'
        z  = linear(y, mix_l)                                   # program 'linear'
    s  = sat(s + sat(sat(wrap(sum_h rnd(z[h] * Wd[c, h], ds[h]))) + sat(bd[c] << dbs)))
                                                                # program 'integrator'
    logits_k = s                                                # running, summed over tokens

The skip term D*u is mode n = N of each channel, with dA = 0 (a plain product on the same path).

Two mappings run this function (``MAPPINGS``). ``per-mode`` is the pipeline above: one neuron per
mode, readout and mixing neurons (3 stages per layer). ``channel`` runs one *channel neuron* per
(layer, channel) with the program 'channel' and its MODES instruction::

    u[h]  = sat(sat(wrap(sum_i rnd(v[i] * Wq[h, i], shift[i]))) + sat(b[h] << bs))
            # v: the token (layer 0, Wq = enc) or the previous layer's y (Wq = its mix)
    for every mode m:  (xr, xi)[h, m] = CMAD as above;  Y[h] += sat(rnd(xr*Cr + xi*Cni, out_shift))
    y[h]  = max(sat(sat(wrap(Y[h])) + sat(rb[h] << rbs)), 0)

then one more stage ('linear') for the last layer's mixing and the decoder: L + 2 stages. The
arithmetic is the same sum of the same terms, so both mappings compute identical integers
(``qforward(..., mapping=...)`` runs each as its neurons do; a test holds them equal).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.fixed import rnd, sat, smax, smin, wrap

from .datasets import hold_final

__all__ = ["QLinear", "QLayer", "QModel", "qforward", "STAGES_PER_LAYER", "num_stages",
           "MAPPINGS", "DEFAULT_MAPPING", "check_mapping"]

STAGES_PER_LAYER = 3  # per-mode mapping: modes (s4d), readout (relu), mixing (linear)
#: how layers become neurons: one neuron per complex mode, or one channel neuron per channel
MAPPINGS = ("per-mode", "channel")
DEFAULT_MAPPING = "channel"


def check_mapping(mapping: str) -> str:
    if mapping not in MAPPINGS:
        raise ValueError(f"mapping {mapping!r} is not one of {', '.join(MAPPINGS)}")
    return mapping


@dataclass
class QLinear:
    """Integer dense layer on synapses: ``W`` (out, in) int8-range, one shift per input
    (the input's axon), bias ``b`` (out,) applied as ``b << bias_shift``."""
    W: np.ndarray
    shift: np.ndarray
    b: np.ndarray
    bias_shift: int = 0


@dataclass
class QLayer:
    """One n-S4D layer: ``M`` = N+1 modes per channel (the last is the D skip, dA = 0)."""
    dA: np.ndarray        # (H, M, 2) int: Re, Im; frac fractional bits
    dB: np.ndarray        # (H, M, 2) int
    C: np.ndarray         # (H, M, 2) int: Re C', -Im C'
    frac: int
    out_shift: int
    relu_bias: np.ndarray  # (H,) int
    relu_bias_shift: int
    mix: QLinear           # (H, H)


@dataclass
class QModel:
    """The deployed integer model. ``in_scale``: token value x -> payload round(x * in_scale);
    ``out_scale``: logits = s / out_scale (for reporting only)."""
    enc: QLinear           # (H, d_in)
    layers: list
    dec: QLinear           # (classes, H)
    in_scale: float
    out_scale: float
    meta: dict = field(default_factory=dict)

    @property
    def d_in(self) -> int:
        return self.enc.W.shape[1]

    @property
    def H(self) -> int:
        return self.enc.W.shape[0]

    @property
    def classes(self) -> int:
        return self.dec.W.shape[0]

    @property
    def modes(self) -> int:
        """Modes per channel on the fabric (N complex modes + the D skip)."""
        return self.layers[0].dA.shape[1] if self.layers else 0

    def quantize_input(self, x: np.ndarray, cfg: FabricConfig | None = None) -> np.ndarray:
        """Float tokens -> integer payloads (round half up, saturated to the payload width in
        floating point, as :meth:`~neuroloom.firmware.driver.Driver.quantize`: a huge value or
        +-inf becomes the largest or smallest payload, never a wrapped one).

        Raises ValueError for a NaN (it has no payload)."""
        width = (cfg or FabricConfig()).state_width
        xf = np.asarray(x, dtype=np.float64)
        if np.isnan(xf).any():
            at = tuple(int(i) for i in np.argwhere(np.isnan(xf))[0])
            raise ValueError(f"token values include {int(np.isnan(xf).sum())} NaN (first at "
                             f"index {at}); a NaN has no payload: fix the input")
        with np.errstate(over="ignore", invalid="ignore"):
            v = np.floor(xf * self.in_scale + 0.5)
        return np.clip(v, -(1 << (width - 1)), (1 << (width - 1)) - 1).astype(np.int64)

    # -- (de)serialisation: npz of integer arrays + JSON of scalars --------------------------------
    def to_arrays(self) -> tuple[dict, dict]:
        arrays, meta = {}, {"in_scale": self.in_scale, "out_scale": self.out_scale,
                            "layers": len(self.layers), "meta": self.meta}

        def put_lin(prefix, lin):
            arrays[f"{prefix}.W"], arrays[f"{prefix}.shift"] = lin.W, lin.shift
            arrays[f"{prefix}.b"] = lin.b
            meta[f"{prefix}.bias_shift"] = int(lin.bias_shift)

        put_lin("enc", self.enc)
        put_lin("dec", self.dec)
        for i, ly in enumerate(self.layers):
            for k in ("dA", "dB", "C", "relu_bias"):
                arrays[f"layers.{i}.{k}"] = getattr(ly, k)
            for k in ("frac", "out_shift", "relu_bias_shift"):
                meta[f"layers.{i}.{k}"] = int(getattr(ly, k))
            put_lin(f"layers.{i}.mix", ly.mix)
        return arrays, meta

    @classmethod
    def from_arrays(cls, arrays, meta) -> QModel:
        def lin(prefix):
            return QLinear(np.asarray(arrays[f"{prefix}.W"], np.int64),
                           np.asarray(arrays[f"{prefix}.shift"], np.int64),
                           np.asarray(arrays[f"{prefix}.b"], np.int64),
                           int(meta[f"{prefix}.bias_shift"]))

        layers = [QLayer(*(np.asarray(arrays[f"layers.{i}.{k}"], np.int64)
                           for k in ("dA", "dB", "C")),
                         int(meta[f"layers.{i}.frac"]), int(meta[f"layers.{i}.out_shift"]),
                         np.asarray(arrays[f"layers.{i}.relu_bias"], np.int64),
                         int(meta[f"layers.{i}.relu_bias_shift"]), lin(f"layers.{i}.mix"))
                  for i in range(int(meta["layers"]))]
        return cls(lin("enc"), layers, lin("dec"), float(meta["in_scale"]),
                   float(meta["out_scale"]), dict(meta.get("meta", {})))

    def describe(self) -> str:
        return json.dumps({"d_in": self.d_in, "H": self.H, "modes": self.modes,
                           "layers": len(self.layers), "classes": self.classes}, sort_keys=True)


def num_stages(model: QModel, mapping: str = DEFAULT_MAPPING) -> int:
    """Pipeline stages (the fall-through token period in steps): per-mode: encoder, 3 per
    layer, decoder; channel: 1 per layer, the last layer's mixing, decoder."""
    per_layer = STAGES_PER_LAYER if check_mapping(mapping) == "per-mode" else 1
    return 2 + per_layer * len(model.layers)


#: synaptic terms (samples x outputs x inputs) held at once by ``_linear`` (a cache-sized slice)
_TERM_ELEMS = 1 << 16


def _term_dtype(v, Wq, half):
    """int32 when every synaptic term ``v * w + half`` provably fits it (the default widths:
    24-bit payloads times 8-bit weights), else int64: the same integers, int32 is faster."""
    bound = (int(np.abs(v).max(initial=0)) * int(np.abs(Wq).max(initial=0))
             + int(half.max(initial=0)))
    return np.int32 if bound < (1 << 31) else np.int64


def _linear(v, lin: QLinear, W: int, A: int):
    """v (R, in) -> (R, out), exactly the 'linear' program fed by synapses: every term
    ``rnd(v[i] * Wq[o, i], shift[i])`` rounded on its own, their modular sum, the bias. The
    rows go a slice at a time (the terms of a slice stay in cache)."""
    n_out, n_in = lin.W.shape
    sh = np.asarray(lin.shift, dtype=np.int64)                                # (in,)
    half = (np.int64(1) << sh) >> 1
    dt = _term_dtype(v, lin.W, half)
    vq, Wq, half, sh = (np.asarray(a).astype(dt) for a in (v, lin.W, half, sh))
    step = max(1, _TERM_ELEMS // max(1, n_out * n_in))
    out = np.empty((v.shape[0], n_out), dtype=np.int64)
    for r in range(0, v.shape[0], step):
        t = vq[r:r + step, None, :] * Wq                                      # (r, out, in)
        t += half                                                             # rnd(v * w, sh)
        t >>= sh
        t.sum(axis=2, dtype=np.int64, out=out[r:r + step])                    # (r, out)
    acc = sat(wrap(out, A), W)                                               # (R, out)
    return sat(acc + sat(lin.b.astype(np.int64) << lin.bias_shift, W), W)


#: mode states (tokens x samples x re/im x modes x channels) held at once by the channel pass
_CHUNK_ELEMS = 1 << 16


def _planes(a: np.ndarray) -> np.ndarray:
    """(H, M, 2) coefficients -> (2, M, H) planes (mode-major, channels contiguous)."""
    return np.ascontiguousarray(np.asarray(a, dtype=np.int64).transpose(2, 1, 0))


def _channel_layer(u, ly: QLayer, W: int, A: int):
    """Channel neurons of one layer over a whole sequence, as the 'channel' program runs them
    token after token: ``u`` (B, K, H) the biased inputs; returns y (B, K, H).

    The state of every mode of every channel is one array ``x`` (B, 2, M, H) (Re, Im), and the
    complex product ``x * dA`` is one product with the planes ``P`` (2, 2, M, H)::

        (xr, xi) * dA = xr * (dAr, dAi) + xi * (-dAi, dAr)

    Only this state update is sequential in the tokens; everything else (the input terms
    ``u*dB`` with the rounding constant, the output terms ``Re(C' x)``, their sum ``Y``, bias
    and ReLU) is computed for a chunk of tokens at once. ``Y`` is summed exactly and wrapped
    once: the same value as the running modular sum of the MODES loop. A large batch goes a
    block of samples at a time, so that the states being updated stay in cache."""
    B, K, H = u.shape
    M = ly.dA.shape[1]
    block = max(1, _CHUNK_ELEMS // max(1, 2 * M * H))         # samples whose states stay in cache
    if B > block:                                        # (the samples are independent)
        return np.concatenate([_channel_layer(u[b:b + block], ly, W, A)
                               for b in range(0, B, block)])
    lo, hi = smin(W), smax(W)
    (ar, ai), dB, C = _planes(ly.dA), _planes(ly.dB), _planes(ly.C)         # (2, M, H) each
    P = np.stack([np.stack([ar, ai]), np.stack([-ai, ar])])                  # (2, 2, M, H)
    half = (1 << ly.frac) >> 1
    x = np.zeros((B, 2, M, H), dtype=np.int64)                               # mode states
    prod = np.empty((B, 2, 2, M, H), dtype=np.int64)
    Y = np.empty((K, B, H), dtype=np.int64)                                  # sum_m o[h, m]
    chunk = max(1, _CHUNK_ELEMS // max(1, B * 2 * M * H))
    for k0 in range(0, K, chunk):
        uk = u[:, k0:k0 + chunk].transpose(1, 0, 2)[:, :, None, None, :]   # (k, B, 1, 1, H)
        S = uk * dB                                                          # (k, B, 2, M, H)
        S += half                                      # u*dB + rounding; becomes the states
        for n in S:                                     # token after token: n (B, 2, M, H)
            np.multiply(x[:, :, None], P, out=prod)                          # (B, 2, 2, M, H)
            n += prod[:, 0]
            n += prod[:, 1]                             # x*dA + u*dB + half
            n >>= ly.frac
            np.maximum(n, lo, out=n)                    # sat: the new state, kept in S
            x = np.minimum(n, hi, out=n)
        o = S[:, :, 0] * C[0]                                                # (k, B, M, H)
        o += S[:, :, 1] * C[1]                                               # xr*Cr + xi*Cni
        o += (1 << ly.out_shift) >> 1                                        # rnd, sat
        o >>= ly.out_shift
        np.minimum(np.maximum(o, lo, out=o), hi, out=o)
        o.sum(axis=2, out=Y[k0:k0 + chunk])                                  # (k, B, H)
    rb = sat(ly.relu_bias.astype(np.int64) << ly.relu_bias_shift, W)        # (H,)
    y = np.maximum(sat(sat(wrap(Y, A), W) + rb, W), 0)                       # (K, B, H)
    return y.transpose(1, 0, 2)


def qforward(model: QModel, tokens: np.ndarray, cfg: FabricConfig | None = None,
             mapping: str = DEFAULT_MAPPING, lengths: np.ndarray | None = None) -> np.ndarray:
    """Run the quantized reference.

    tokens : (B, K, d_in) integer payloads (see :meth:`QModel.quantize_input`)
    mapping : ``per-mode`` or ``channel``: which neurons compute it (identical results)
    lengths : (B,) true lengths of sequences padded at the end (None: all K tokens); the
              running logits are held at each sequence's last true token from there on
    returns : (B, K, classes) running integer logits after each token
    """
    if lengths is not None:
        return hold_final(qforward(model, tokens, cfg, mapping), lengths)
    cfg = cfg or FabricConfig()
    if check_mapping(mapping) == "channel":
        return _qforward_channel(model, tokens, cfg)
    W, A = cfg.state_width, cfg.acc_width
    tokens = np.asarray(tokens, dtype=np.int64)
    B, K, _ = tokens.shape
    states = [np.zeros((B,) + ly.dA.shape, dtype=np.int64) for ly in model.layers]  # (B,H,M,2)
    s = np.zeros((B, model.classes), dtype=np.int64)                              # (B, classes)
    out = np.zeros((B, K, model.classes), dtype=np.int64)
    for k in range(K):
        z = _linear(tokens[:, k], model.enc, W, A)                                # (B, H)
        for ly, x in zip(model.layers, states):
            u = z[:, :, None]                                                     # (B, H, 1)
            xr, xi = x[..., 0], x[..., 1]                                         # (B, H, M)
            dAr, dAi, dBr, dBi = ly.dA[..., 0], ly.dA[..., 1], ly.dB[..., 0], ly.dB[..., 1]
            nr = sat(rnd(xr * dAr - xi * dAi + u * dBr, ly.frac), W)
            ni = sat(rnd(xr * dAi + xi * dAr + u * dBi, ly.frac), W)
            x[..., 0], x[..., 1] = nr, ni
            o = sat(rnd(nr * ly.C[..., 0] + ni * ly.C[..., 1], ly.out_shift), W)  # (B, H, M)
            acc = sat(wrap(o.sum(axis=2), A), W)                                  # (B, H)
            y = np.maximum(sat(acc + sat(ly.relu_bias.astype(np.int64) << ly.relu_bias_shift,
                                         W), W), 0)
            z = _linear(y, ly.mix, W, A)                                          # (B, H)
        s = sat(s + _linear(z, model.dec, W, A), W)
        out[:, k] = s
    return out


def _qforward_channel(model: QModel, tokens: np.ndarray, cfg: FabricConfig) -> np.ndarray:
    """``qforward`` with channel neurons, layer after layer over the whole sequence (a layer's
    token k needs only the previous layer's token k and its own state): the input linear map
    of a layer is its channel neurons' synapses plus their input-bias coefficient, then MODES,
    bias, ReLU."""
    W, A = cfg.state_width, cfg.acc_width
    tokens = np.asarray(tokens, dtype=np.int64)
    B, K, _ = tokens.shape
    v, lin = tokens, model.enc                                                # (B, K, d_in)
    for ly in model.layers:
        u = _linear(v.reshape(B * K, -1), lin, W, A).reshape(B, K, -1)        # (B, K, H)
        v, lin = _channel_layer(u, ly, W, A), ly.mix                          # y: (B, K, H)
    z = _linear(v.reshape(B * K, -1), lin, W, A)                              # last mixing
    d = _linear(z, model.dec, W, A).reshape(B, K, -1)                         # (B, K, classes)
    out = np.empty_like(d)
    s = np.zeros((B, model.classes), dtype=np.int64)
    for k in range(K):                                                        # the integrator
        s = np.add(s, d[:, k], out=out[:, k])                                 # s = sat(s + d)
        np.minimum(np.maximum(s, smin(W), out=s), smax(W), out=s)
    return out
