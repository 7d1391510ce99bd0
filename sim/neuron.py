"""Golden neuron engine: runs one program over many neurons and a batch at once.

Reads like the spec's "Neuron microcode" section, in numpy. Register file per neuron:
R0..R7 (``state_width``-bit signed), R0..R{state_regs-1} persistent, the rest zero at program
start; ``ACC`` is the step's accumulator saturated to ``state_width``; ``P`` a predicate, false at
start. Every emitting instruction replaces the pending spike ``(condition, R[rd])``. ``MODES``
runs every mode entry of the neuron (a channel neuron's complex modes, all at once here: the
spec makes the modes independent and their sum order-free)::

    x_m <- (sat(rnd(Re(dA_m x_m) + Re(dB_m) u, sh)), sat(rnd(Im(dA_m x_m) + Im(dB_m) u, sh)))
    Y    = wrap(sum_m sat(rnd(Re C'_m Re x_m + (-Im C'_m) Im x_m, so)), acc_width)
    rd   = sat(Y)

The neurons need not be one group: :func:`execute` runs any set of neurons that share a program
(all cores) in one call. The mode loop works on separate real and imaginary planes in place, a
slice of the batch at a time so that its temporaries stay in the cache; the arithmetic is the
one above, term for term. The golden model itself now runs the compiled loops of
:mod:`neuroloom.sim.kernels` (the same arithmetic, checked against the frozen per-group
interpreter of ``tests/support/golden_reference.py``); this module is the readable numpy
form (the ISA tests and the frozen interpreter run it).
"""

from __future__ import annotations

import numpy as np

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.fixed import smax, smin
from neuroloom.contract.isa import Instr
from neuroloom.contract.layouts import Emit, Op, Operand

__all__ = ["run_program", "execute", "ModeCoefs"]

#: elements of one batch slice of the mode loop (its temporaries stay in the L2 cache)
_MODE_CHUNK = 1 << 16


class ModeCoefs:
    """Mode coefficients of ``n`` neurons x ``M`` modes as six contiguous (M, n) planes:
    ``ar, ai`` = dA, ``br, bi`` = dB, ``cr, cn`` = (Re C', -Im C')."""

    def __init__(self, mcoef: np.ndarray):
        mc = np.asarray(mcoef, dtype=np.int64)                              # (n, M, 6)
        self.ar, self.ai, self.br, self.bi, self.cr, self.cn = (
            np.ascontiguousarray(mc[:, :, k].T) for k in range(6))
        self.modes = mc.shape[1]


def _sat(v: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """In place: saturate to [lo, hi] (two cheap reductions decide whether anything clips)."""
    if v.size and (v.min() < lo or v.max() > hi):
        np.clip(v, lo, hi, out=v)
    return v


def _rnd_sat(v: np.ndarray, s, lo: int, hi: int) -> np.ndarray:
    """In place: ``sat(rnd(v, s))`` (round half up, shift, saturate); ``s`` an int or one
    shift per neuron (n,)."""
    if isinstance(s, np.ndarray) or s:
        v += (np.int64(1) << s) >> 1
        v >>= s
    return _sat(v, lo, hi)


def _modes(u: np.ndarray, xr: np.ndarray, xi: np.ndarray, mc: ModeCoefs, sh, so,
           W: int, A: int) -> np.ndarray:
    """The ``MODES`` loop: ``u`` (B, n) input, ``xr``/``xi`` (B, M, n) mode state (updated in
    place); ``sh``/``so`` ints or (n,) per neuron; returns ``sat(Y)`` (B, n)."""
    lo, hi = smin(W), smax(W)
    B, M, n = xr.shape
    Y = np.empty((B, n), dtype=np.int64)
    step = max(1, _MODE_CHUNK // max(1, n * M))
    for b in range(0, B, step):
        r, i = xr[b:b + step], xi[b:b + step]                              # (b, M, n) views
        ub = u[b:b + step, None, :]                                         # (b, 1, n)
        nr = r * mc.ar                                                      # Re(dA x) + Re(dB) u
        nr -= i * mc.ai
        nr += ub * mc.br
        ni = r * mc.ai                                                      # Im(dA x) + Im(dB) u
        ni += i * mc.ar
        ni += ub * mc.bi
        r[...] = _rnd_sat(nr, sh, lo, hi)
        i[...] = _rnd_sat(ni, sh, lo, hi)
        o = np.multiply(r, mc.cr, out=nr)                                   # Re(C' x)
        o += np.multiply(i, mc.cn, out=ni)
        # the sum of M W-bit terms is exact in int64; wrap once, as a modular Y would
        Y[b:b + step] = _rnd_sat(o, so, lo, hi).sum(axis=1)
    m = np.int64(1) << A
    Y = ((Y + (m >> 1)) & (m - 1)) - (m >> 1)                               # wrap(Y, acc_width)
    return _sat(Y, lo, hi)


def execute(cfg: FabricConfig, program: list[Instr], state: np.ndarray, acc: np.ndarray,
            coef: np.ndarray, xr: np.ndarray | None = None, xi: np.ndarray | None = None,
            mcoef: ModeCoefs | None = None):
    """Execute ``program`` for ``n`` neurons and a batch of ``B`` samples.

    state : (B, n, state_regs) int64, persistent registers (not modified)
    acc   : (B, n) int64, the accumulator values (any width; saturated here)
    coef  : (n, 8) int64, the neurons' coefficients
    xr, xi : (B, M, n) int64, the mode state (updated in place by ``MODES``), or None
    mcoef : the mode coefficients (:class:`ModeCoefs`)

    Returns ``(new_state (B, n, state_regs), emit (B, n) bool, payload (B, n) int64)``.
    An instruction's ``sh``/``so`` may be one shift per neuron (n,): neurons whose programs
    differ only in shifts (a layer's constants) run together.
    """
    W = cfg.state_width
    lo, hi = smin(W), smax(W)
    B, n, S = state.shape
    zero = np.zeros((B, n), dtype=np.int64)
    regs = [state[:, :, k] for k in range(S)] + [zero] * (cfg.NUM_REGS - S)
    acc_in = _sat(np.array(acc, dtype=np.int64), lo, hi)                   # (B, n)
    pred = np.zeros((B, n), dtype=bool)
    emit, payload = None, zero
    c = np.asarray(coef, dtype=np.int64).T                                  # (8, n)

    def src(code):
        if code < 8:
            return regs[code]
        return acc_in if code == Operand.ACC else zero

    def rnd_sat(v, s):                                  # v: a fresh array (modified)
        return _rnd_sat(v, s, lo, hi)

    for ins in program:
        op = ins.op
        if op == Op.MAD:
            regs[ins.rd] = rnd_sat(src(ins.ra) * c[ins.ck] + src(ins.rb) * c[ins.cl], ins.sh)
        elif op == Op.CMAD:
            ar, ai = (zero, zero) if ins.ra == Operand.ZERO else (regs[ins.ra], regs[ins.ra + 1])
            kr, ki, lr, li = c[ins.ck], c[ins.ck + 1], c[ins.cl], c[ins.cl + 1]
            b = src(ins.rb)
            re = ar * kr - ai * ki + b * lr                                 # (B, n)
            im = ar * ki + ai * kr + b * li                                 # (B, n)
            regs[ins.rd], regs[ins.rd + 1] = rnd_sat(re, ins.sh), rnd_sat(im, ins.sh)
        elif op == Op.ADD:
            regs[ins.rd] = _sat(src(ins.ra) + src(ins.rb), lo, hi)
        elif op == Op.SUB:
            regs[ins.rd] = _sat(src(ins.ra) - src(ins.rb), lo, hi)
        elif op == Op.MAX:
            regs[ins.rd] = np.maximum(src(ins.ra), src(ins.rb))
        elif op == Op.MIN:
            regs[ins.rd] = np.minimum(src(ins.ra), src(ins.rb))
        elif op == Op.LDC:
            regs[ins.rd] = np.broadcast_to(_sat(c[ins.ck] << ins.sh, lo, hi), (B, n))
        elif op == Op.SHR:
            regs[ins.rd] = rnd_sat(src(ins.ra) + zero, ins.sh)
        elif op == Op.CGE:
            pred = src(ins.ra) >= src(ins.rb)
        elif op == Op.SEL:
            regs[ins.rd] = np.where(pred, src(ins.ra), src(ins.rb))
        elif op == Op.MODES:
            if mcoef is None or mcoef.modes == 0:
                regs[ins.rd] = zero                                          # M = 0: rd = 0
            else:
                regs[ins.rd] = _modes(src(ins.rb), xr, xi, mcoef, ins.sh, ins.so, W,
                                      cfg.acc_width)
        elif op != Op.NOP:
            raise ValueError(f"unknown opcode {op!r}")
        if ins.emit != Emit.NONE:
            payload = regs[ins.rd]
            if ins.emit == Emit.ALWAYS:
                emit = None                                                  # every neuron
            elif ins.emit == Emit.NONZERO:
                emit = payload != 0
            else:
                emit = pred
    return _finish(program, regs, S, emit, payload, B, n)


def _finish(program, regs, S, emit, payload, B, n):
    """(new persistent registers, emit, payload masked by emit)."""
    new = np.empty((B, n, S), dtype=np.int64)
    for k in range(S):
        new[:, :, k] = regs[k]
    if not any(ins.emit != Emit.NONE for ins in program):
        return new, np.zeros((B, n), dtype=bool), np.zeros((B, n), dtype=np.int64)
    if emit is None:
        return new, np.ones((B, n), dtype=bool), np.array(np.broadcast_to(payload, (B, n)))
    return new, emit, np.where(emit, payload, 0)


def run_program(cfg: FabricConfig, program: list[Instr], state: np.ndarray, acc: np.ndarray,
                coef: np.ndarray, mstate: np.ndarray | None = None,
                mcoef: np.ndarray | None = None):
    """Execute ``program`` for a group of neurons (:func:`execute` with the mode state as one
    array).

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
    if mstate is None:
        return execute(cfg, program, np.asarray(state, dtype=np.int64), np.asarray(acc),
                       np.asarray(coef))
    ms = np.asarray(mstate, dtype=np.int64)                                 # (B, n, M, 2)
    xr, xi = (np.ascontiguousarray(ms[..., k].transpose(0, 2, 1)) for k in range(2))
    out = execute(cfg, program, np.asarray(state, dtype=np.int64), np.asarray(acc),
                  np.asarray(coef), xr, xi, ModeCoefs(mcoef))
    return out + (np.stack([xr, xi], axis=-1).transpose(0, 2, 1, 3),)
