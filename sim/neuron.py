"""Golden neuron engine: runs one group's microcode over all its neurons and a batch at once.

Reads like the spec's "Neuron microcode" section, in numpy. Register file per neuron:
R0..R7 (``state_width``-bit signed), R0..R{state_regs-1} persistent, the rest zero at program
start; ``ACC`` is the step's accumulator saturated to ``state_width``; ``P`` a predicate, false at
start. Every emitting instruction replaces the pending spike ``(condition, R[rd])``. ``MODES``
runs every mode entry of the neuron (a channel neuron's complex modes, all at once here: the
spec makes the modes independent and their sum order-free)::

    x_m <- (sat(rnd(Re(dA_m x_m) + Re(dB_m) u, sh)), sat(rnd(Im(dA_m x_m) + Im(dB_m) u, sh)))
    Y    = wrap(sum_m sat(rnd(Re C'_m Re x_m + (-Im C'_m) Im x_m, so)), acc_width)
    rd   = sat(Y)
"""

from __future__ import annotations

import numpy as np

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.fixed import rnd, sat, wrap
from neuroloom.contract.isa import Instr
from neuroloom.contract.layouts import Emit, Op, Operand

__all__ = ["run_program"]


def run_program(cfg: FabricConfig, program: list[Instr], state: np.ndarray, acc: np.ndarray,
                coef: np.ndarray, mstate: np.ndarray | None = None,
                mcoef: np.ndarray | None = None):
    """Execute ``program`` for a group of neurons.

    Parameters
    ----------
    state : (B, n, state_regs) int64, persistent registers (not modified)
    acc   : (B, n) int64, the accumulator values (any width; saturated here)
    coef  : (n, 8) int64, the neurons' coefficients
    mstate : (B, n, M, 2) int64, the neurons' mode state (None: no modes; not modified)
    mcoef  : (n, M, 6) int64, the neurons' mode coefficients

    Returns ``(new_state (B, n, state_regs), emit (B, n) bool, payload (B, n) int64)``, and
    with ``mstate`` given a fourth item, the new mode state (B, n, M, 2).
    """
    W = cfg.state_width
    B, n, S = state.shape
    regs = np.zeros((cfg.NUM_REGS, B, n), dtype=np.int64)          # (8, B, n)
    regs[:S] = np.moveaxis(state, 2, 0)
    acc_in = sat(acc.astype(np.int64), W)                            # (B, n)
    zero = np.zeros((B, n), dtype=np.int64)
    pred = np.zeros((B, n), dtype=bool)
    emit = np.zeros((B, n), dtype=bool)
    payload = np.zeros((B, n), dtype=np.int64)
    c = [coef[:, k].astype(np.int64) for k in range(cfg.coefs)]     # 8 x (n,)
    if mstate is None:
        xm = np.zeros((B, n, 0, 2), dtype=np.int64)                   # (B, n, M, 2)
        mc = np.zeros((n, 0, 6), dtype=np.int64)                      # (n, M, 6)
    else:
        xm = np.array(mstate, dtype=np.int64)
        mc = np.asarray(mcoef, dtype=np.int64)

    def src(code):
        if code < 8:
            return regs[code]
        return acc_in if code == Operand.ACC else zero

    for ins in program:
        op = ins.op
        if op == Op.MAD:
            regs[ins.rd] = sat(rnd(src(ins.ra) * c[ins.ck] + src(ins.rb) * c[ins.cl], ins.sh), W)
        elif op == Op.CMAD:
            ar, ai = (zero, zero) if ins.ra == Operand.ZERO else (regs[ins.ra], regs[ins.ra + 1])
            kr, ki, lr, li = c[ins.ck], c[ins.ck + 1], c[ins.cl], c[ins.cl + 1]
            b = src(ins.rb)
            re = ar * kr - ai * ki + b * lr                          # (B, n)
            im = ar * ki + ai * kr + b * li                          # (B, n)
            regs[ins.rd], regs[ins.rd + 1] = sat(rnd(re, ins.sh), W), sat(rnd(im, ins.sh), W)
        elif op == Op.ADD:
            regs[ins.rd] = sat(src(ins.ra) + src(ins.rb), W)
        elif op == Op.SUB:
            regs[ins.rd] = sat(src(ins.ra) - src(ins.rb), W)
        elif op == Op.MAX:
            regs[ins.rd] = np.maximum(src(ins.ra), src(ins.rb))
        elif op == Op.MIN:
            regs[ins.rd] = np.minimum(src(ins.ra), src(ins.rb))
        elif op == Op.LDC:
            regs[ins.rd] = np.broadcast_to(sat(c[ins.ck] << ins.sh, W), (B, n))
        elif op == Op.SHR:
            regs[ins.rd] = sat(rnd(src(ins.ra), ins.sh), W)
        elif op == Op.CGE:
            pred = src(ins.ra) >= src(ins.rb)
        elif op == Op.SEL:
            regs[ins.rd] = np.where(pred, src(ins.ra), src(ins.rb))
        elif op == Op.MODES:
            u = src(ins.rb)[:, :, None]                              # (B, n, 1)
            xr, xi = xm[..., 0], xm[..., 1]                          # (B, n, M)
            ar, ai, br, bi, cr, cn = (mc[None, :, :, k] for k in range(6))   # (1, n, M)
            nr = sat(rnd(xr * ar - xi * ai + u * br, ins.sh), W)
            ni = sat(rnd(xr * ai + xi * ar + u * bi, ins.sh), W)
            xm = np.stack([nr, ni], axis=-1)
            o = sat(rnd(nr * cr + ni * cn, ins.so), W)              # (B, n, M)
            regs[ins.rd] = sat(wrap(o.sum(axis=2), cfg.acc_width), W)
        elif op != Op.NOP:
            raise ValueError(f"unknown opcode {op!r}")
        if ins.emit != Emit.NONE:
            value = regs[ins.rd]
            payload = value.copy()
            if ins.emit == Emit.ALWAYS:
                emit = np.ones((B, n), dtype=bool)
            elif ins.emit == Emit.NONZERO:
                emit = value != 0
            else:
                emit = pred.copy()
    out = np.moveaxis(regs[:S], 0, 2).copy(), emit, np.where(emit, payload, 0)
    return out if mstate is None else out + (xm,)
