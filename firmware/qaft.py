"""Quantization-aware fine-tuning (QAFT) in PyTorch: train the float parameters through the
*exact* quantized reference.

:class:`QAFTModel` holds the float n-S4D parameters (as :class:`~firmware.model.FloatModel`) and
the fixed stage scales chosen by PTQ (:class:`~firmware.quantize.Scales`). Its forward pass
derives the integer parameters exactly as :func:`~firmware.quantize.quantize_with_scales` does
and then runs :func:`~firmware.qmodel.qforward`'s arithmetic: in float64 every value is an
integer below 2**53, so ``floor``, division by powers of two and ``remainder`` are exact and the
forward equals ``qforward`` bit for bit (in int64 too, see ``exact=True``). Gradients pass
straight through the roundings and wraps (straight-through estimator); saturations are clamps.
:meth:`QAFTModel.to_qmodel` exports the integers the forward pass uses.

Needs the optional ``train`` extra (``torch``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from neuroloom.contract.config import FabricConfig

from .model import FloatLayer, FloatModel
from .qmodel import QLayer, QLinear, QModel
from .quantize import Scales

__all__ = ["QAFTModel"]

F64 = torch.float64


def _ste(v: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Value of ``q``, gradient of ``v``."""
    return v + (q - v).detach()


def _round(v):  # round half up, straight-through
    return _ste(v, torch.floor(v + 0.5))


class _RoundShift(torch.autograd.Function):
    """floor((v + floor(p/2)) / p) forward, d/dv = 1/p backward (one graph node)."""

    @staticmethod
    def forward(ctx, v, p):
        ctx.save_for_backward(p)
        return torch.floor((v + torch.floor(p / 2)) / p)

    @staticmethod
    def backward(ctx, g):
        (p,) = ctx.saved_tensors
        return g / p, None


def _rnd(v: torch.Tensor, s) -> torch.Tensor:
    """fixed.rnd: (v + 2**(s-1)) >> s, exact on integer-valued float64 or int64 tensors."""
    s = torch.as_tensor(s, device=v.device)
    if not v.is_floating_point():
        return (v + ((1 << s) >> 1)) >> s
    return _RoundShift.apply(v, torch.pow(2.0, s.to(F64)))


def _sat(v: torch.Tensor, width: int) -> torch.Tensor:
    return torch.clamp(v, -(1 << (width - 1)), (1 << (width - 1)) - 1)


def _wrap(v: torch.Tensor, width: int) -> torch.Tensor:
    m, h = 1 << width, 1 << (width - 1)
    if not v.is_floating_point():
        return ((v + h) & (m - 1)) - h
    return _ste(v, torch.remainder(v + h, m) - h)


def _shift_for(colmax: torch.Tensor, limit: float) -> torch.Tensor:
    """Largest shift in 0..31 with colmax * 2**shift <= limit (0 for empty columns)."""
    with torch.no_grad():
        sh = torch.floor(torch.log2(limit / colmax))
        sh = torch.where(torch.isfinite(sh), sh, torch.zeros_like(sh))
        return torch.clamp(sh, 0, 31)


def attach_parameters(module: nn.Module, model: FloatModel, dtype) -> None:
    """Register a FloatModel's parameters on ``module`` as trainable torch Parameters:
    ``enc_W, enc_b, dec_W, dec_b`` and ``layers[i].{log_dt, log_A_real, A_imag, D, W, b,
    C_re, C_im}`` (plus ``B_re, B_im`` where the layer has a learnable B)."""
    def t(a):
        return nn.Parameter(torch.tensor(np.asarray(a), dtype=dtype))

    module.enc_W, module.enc_b = t(model.enc_W), t(model.enc_b)
    module.dec_W, module.dec_b = t(model.dec_W), t(model.dec_b)
    module.layers = nn.ModuleList()
    for ly in model.layers:
        m = nn.Module()
        for k in ("log_dt", "log_A_real", "A_imag", "D", "W", "b"):
            setattr(m, k, t(getattr(ly, k)))
        m.C_re, m.C_im = t(ly.C.real), t(ly.C.imag)
        m.has_B = ly.B is not None
        if m.has_B:
            m.B_re, m.B_im = t(np.real(ly.B)), t(np.imag(ly.B))
        module.layers.append(m)


class QAFTModel(nn.Module):
    """Fake-quantized n-S4D whose forward is :func:`~firmware.qmodel.qforward`.

    Parameters
    ----------
    model : the float model to start from (its parameters become trainable)
    scales : fixed stage scales (from :func:`~firmware.quantize.choose_scales`)
    cfg : fabric widths
    """

    def __init__(self, model: FloatModel, scales: Scales, cfg: FabricConfig | None = None):
        super().__init__()
        self.cfg = cfg or FabricConfig()
        self.scales = scales
        self.meta = dict(model.meta)
        attach_parameters(self, model, F64)

    # -- integer parameters (differentiable through straight-through rounding) ------------------
    def _qlinear(self, W, b, s_in, s_out):
        c = self.cfg
        wmax, cmax = (1 << (c.weight_width - 1)) - 1, (1 << (c.coef_width - 1)) - 1
        s_in = torch.as_tensor(np.broadcast_to(np.asarray(s_in, np.float64), (W.shape[1],)).copy())
        real = W * s_out / s_in                                             # (out, in)
        shift = _shift_for(real.detach().abs().amax(dim=0), wmax + 0.49)     # (in,)
        Wq = torch.clamp(_round(real * torch.pow(2.0, shift)), -wmax - 1, wmax)
        with torch.no_grad():
            bmax, bs = float((b * s_out).abs().max()), 0
            while bs < 31 and np.floor(bmax / 2 ** bs + 0.5) > cmax:
                bs += 1
        bq = torch.clamp(_round(b * s_out / 2 ** bs), -cmax - 1, cmax)
        return Wq, shift, bq, bs

    def _modes(self, ly):
        """Complex (dA, dB, C') of the M = N+1 fabric modes (the last is the D skip)."""
        H = ly.log_dt.shape[0]
        A = torch.complex(-torch.exp(ly.log_A_real), ly.A_imag)              # (H, N)
        dtA = A * torch.exp(ly.log_dt)[:, None]
        dA = torch.exp(dtA)
        Cp = torch.complex(ly.C_re, ly.C_im) * (dA - 1.0) / A
        dB = torch.complex(ly.B_re, ly.B_im) if ly.has_B else torch.ones_like(dA)
        zero = torch.zeros(H, 1, dtype=dA.dtype)
        dA = torch.cat([dA, zero], dim=1)                                    # (H, M)
        dB = torch.cat([dB, torch.complex(ly.D, torch.zeros_like(ly.D))[:, None]], dim=1)
        Cp = torch.cat([Cp, torch.full((H, 1), 0.5, dtype=dA.dtype)], dim=1)
        return dA, dB, Cp

    def integer_params(self) -> dict:
        """All integer parameters (float64 tensors holding integers, with STE gradients)."""
        c, s = self.cfg, self.scales
        cmax, frac = (1 << (c.coef_width - 1)) - 1, c.coef_width - 1
        q = {"enc": self._qlinear(self.enc_W, self.enc_b, s.in_scale, s.z[0]), "layers": []}

        def fit(v):
            return torch.clamp(_round(v), -cmax - 1, cmax)

        for i, ly in enumerate(self.layers):
            dA, dB, Cp = self._modes(ly)
            sx = torch.as_tensor(s.x[i])                                     # (H, M)
            sy = torch.as_tensor(s.y[i])                                     # (H,)
            dAq = fit(torch.stack([dA.real, dA.imag], -1) * 2 ** frac)       # (H, M, 2)
            dBs = dB * (sx / s.z[i])
            dBq = fit(torch.stack([dBs.real, dBs.imag], -1) * 2 ** frac)
            cr = 2 * Cp * (sy[:, None] / sx)
            cpair = torch.stack([cr.real, -cr.imag], -1)                     # (H, M, 2)
            with torch.no_grad():
                peak = float(cpair.abs().max())
                os_ = int(np.clip(np.floor(np.log2((cmax + 0.49) / peak)), 0, 31)) if peak else 0
            Cq = fit(cpair * 2 ** os_)
            q["layers"].append((dAq, dBq, Cq, frac, os_,
                                self._qlinear(ly.W, ly.b, s.y[i], s.z[i + 1])))
        q["dec"] = self._qlinear(self.dec_W, self.dec_b, s.z[-1], s.out_scale)
        return q

    # -- the quantized reference, in torch ------------------------------------------------------
    def forward(self, tokens: torch.Tensor, exact: bool = False) -> torch.Tensor:
        """Running integer logits (B, K, classes) of integer payloads ``tokens`` (B, K, d_in).

        ``exact=True`` runs in int64 (no gradients); otherwise float64 with STE gradients.
        Both equal :func:`~firmware.qmodel.qforward` bit for bit.
        """
        Wd, A = self.cfg.state_width, self.cfg.acc_width
        q = self.integer_params()

        def cast(v):
            return v.detach().round().long() if exact else v

        tokens = tokens.long() if exact else tokens.to(F64)

        def linear(v, lin):                                   # v (..., in) -> (..., out)
            Wq, shift, bq, bs = lin
            Wq, shift, bq = cast(Wq), cast(shift), cast(bq)
            prod = _rnd(v[..., None, :] * Wq, shift)                         # (..., out, in)
            acc = _sat(_wrap(prod.sum(-1), A), Wd)
            return _sat(acc + _sat(bq * (1 << bs), Wd), Wd)

        z = linear(tokens, q["enc"])                                          # (B, K, H)
        Bsz, K, _ = z.shape
        for dAq, dBq, Cq, frac, os_, mix in q["layers"]:
            dAr, dAi, dBr, dBi = (cast(v) for v in (dAq[..., 0], dAq[..., 1],
                                                    dBq[..., 0], dBq[..., 1]))
            Cr, Ci = cast(Cq[..., 0]), cast(Cq[..., 1])
            xr = xi = torch.zeros((Bsz,) + tuple(dAr.shape), dtype=z.dtype)   # (B, H, M)
            outs = []
            for k in range(K):
                u = z[:, k, :, None]                                          # (B, H, 1)
                nr = _sat(_rnd(xr * dAr - xi * dAi + u * dBr, frac), Wd)
                ni = _sat(_rnd(xr * dAi + xi * dAr + u * dBi, frac), Wd)
                xr, xi = nr, ni
                outs.append(_sat(_rnd(nr * Cr + ni * Ci, os_), Wd).sum(-1))  # (B, H)
            acc = _sat(_wrap(torch.stack(outs, 1), A), Wd)                    # (B, K, H)
            y = torch.clamp(acc, min=0)                                       # relu bias = 0
            z = linear(y, mix)                                                # (B, K, H)
        d = linear(z, q["dec"])                                               # (B, K, classes)
        s = torch.zeros_like(d[:, 0])
        out = []
        for k in range(K):
            s = _sat(s + d[:, k], Wd)
            out.append(s)
        return torch.stack(out, 1)

    # -- export ---------------------------------------------------------------------------------
    def to_qmodel(self) -> QModel:
        """The QModel whose qforward equals this module's forward."""
        q = self.integer_params()

        def npi(v):
            return np.asarray(v.detach().round().long().numpy(), np.int64)

        def lin(t):
            Wq, shift, bq, bs = t
            return QLinear(npi(Wq), npi(shift), npi(bq), int(bs))

        layers = [QLayer(npi(dAq), npi(dBq), npi(Cq), int(frac), int(os_),
                         np.zeros(dAq.shape[0], np.int64), 0, lin(mix))
                  for dAq, dBq, Cq, frac, os_, mix in q["layers"]]
        meta = {"scales": self.scales.to_dict(), "qaft": True,
                **{k: v for k, v in self.meta.items() if isinstance(v, (str, int, float, bool))}}
        return QModel(lin(q["enc"]), layers, lin(q["dec"]), self.scales.in_scale,
                      self.scales.out_scale, meta)

    def to_float(self) -> FloatModel:
        """The current float parameters as a :class:`FloatModel`."""

        def n(v):
            return v.detach().numpy().copy()

        layers = [FloatLayer(n(ly.log_dt), n(ly.log_A_real), n(ly.A_imag),
                             n(ly.C_re) + 1j * n(ly.C_im), n(ly.D), n(ly.W), n(ly.b),
                             (n(ly.B_re) + 1j * n(ly.B_im)) if ly.has_B else None)
                  for ly in self.layers]
        return FloatModel(n(self.enc_W), n(self.enc_b), layers, n(self.dec_W), n(self.dec_b),
                          dict(self.meta))
