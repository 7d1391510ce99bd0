"""Golden neuron engine: runs one group's microcode over all its neurons and a batch at once.

Reads like the spec's "Neuron microcode" section, in numpy. Register file per neuron:
R0..R7 (``state_width``-bit signed), R0..R{state_regs-1} persistent, the rest zero at program
start; ``ACC`` is the step's accumulator saturated to ``state_width``; ``P`` a predicate, false at
start. Every emitting instruction replaces the pending spike ``(condition, R[rd])``.
"""

from __future__ import annotations

import numpy as np

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.fixed import rnd, sat
from neuroloom.contract.isa import Instr
from neuroloom.contract.layouts import Emit, Op, Operand

__all__ = ["run_program"]


def run_program(cfg: FabricConfig, program: list[Instr], state: np.ndarray, acc: np.ndarray,
                coef: np.ndarray):
    """Execute ``program`` for a group of neurons.

    Parameters
    ----------
    state : (B, n, state_regs) int64, persistent registers (not modified)
    acc   : (B, n) int64, the accumulator values (any width; saturated here)
    coef  : (n, 8) int64, the neurons' coefficients

    Returns ``(new_state (B, n, state_regs), emit (B, n) bool, payload (B, n) int64)``.
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
    return np.moveaxis(regs[:S], 0, 2).copy(), emit, np.where(emit, payload, 0)
