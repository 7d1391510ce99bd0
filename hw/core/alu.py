"""Neuron ALU: executes one microcode instruction on a neuron's register file, in one cycle.

Bit-exact with ``sim.neuron.run_program`` (one instruction of it). Six signed multipliers
(``state_width`` x ``coef_width``) serve both multiply instructions::

    p0 = a0*k0   p1 = a1*k1   p2 = b*l0        re = p0 - p1 + p2
    p3 = a0*k1   p4 = a1*k0   p5 = b*l1        im = p3 + p4 + p5

MAD uses ``a0 = src(ra)``, ``a1 = 0``, ``k0 = C[k]``, ``l0 = C[l]`` (``re``); CMAD the complex pair
``(a0, a1) = (R[ra], R[ra+1])`` (or zero), ``(k0, k1) = (C[k], C[k+1])``, ``(l0, l1) =
(C[l], C[l+1])``, writing ``re`` to ``R[rd]`` and ``im`` to ``R[rd+1]``.

MODES (one mode entry per evaluation; the neuron engine iterates over the entries) uses the
same six products with ``(a0, a1) = mode_x``, ``k = (dA)``, ``l = (dB)``, ``b = src(rb)``: the new
state ``(re_r, im_r)`` goes to ``mode_x_out``; two more multipliers form
``o = sat(rnd(re_r * Re C' + im_r * (-Im C'), so))`` and ``mode_sum_out = wrap(mode_sum + o)``
(``acc_width`` bits), and ``R[rd] = sat(mode_sum_out)``.
"""

from __future__ import annotations

from amaranth.hdl import Array, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.layouts import (
    MODE_COEFS,
    MODE_STATE,
    Emit,
    Op,
    Operand,
    instr_layout,
    modes_instr_layout,
)

__all__ = ["NeuronAlu", "rnd_hw", "sat_hw"]


def rnd_hw(m: Module, value, shift, name: str):
    """``(value + (2**shift >> 1)) >> shift`` (round half up, arithmetic shift)."""
    half = Signal(33, name=f"{name}_half")
    m.d.comb += half.eq((Const(1, 33) << shift)[1:])
    out = Signal(signed(len(value) + 1), name=name)
    m.d.comb += out.eq((value + half) >> shift)
    return out


def sat_hw(value, width: int):
    """Clamp a signed value to the signed ``width``-bit range (result is ``width`` bits)."""
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    return Mux(value > hi, hi, Mux(value < lo, lo, value))[:width].as_signed()


class NeuronAlu(wiring.Component):
    """Combinational datapath of one microcode instruction.

    Interface attributes
    --------------------
    instr : In(instr_layout()), the instruction.
    regs : In(8 x signed(state_width)), register file before the instruction.
    acc : In(signed(state_width)), the ``ACC`` operand (already saturated).
    coef : In(8 x signed(coef_width)), the neuron's coefficients.
    pred : In(1), the predicate before the instruction.
    regs_out, pred_out : Out, register file and predicate after the instruction.
    emit_set : Out(1), the instruction carries an emit condition (replaces the pending spike).
    emit_flag : Out(1), its condition; ``emit_value`` (Out) = ``regs_out[rd]``.
    mode_x, mode_coef : In, one mode entry's state (Re x, Im x) and coefficients (MODES).
    mode_sum : In(signed(acc_width)), the MODES sum before this entry.
    mode_live : In(1), the entry is real (0: add nothing, e.g. a neuron with no modes).
    mode_x_out, mode_sum_out : Out, the entry's new state and the sum after it.
    """

    def __init__(self, cfg: FabricConfig):
        self._cfg = cfg
        W, CW = cfg.state_width, cfg.coef_width
        regs = data.ArrayLayout(signed(W), cfg.NUM_REGS)
        super().__init__({
            "instr": In(instr_layout()),
            "regs": In(regs),
            "acc": In(signed(W)),
            "coef": In(data.ArrayLayout(signed(CW), cfg.coefs)),
            "pred": In(1),
            "regs_out": Out(regs),
            "pred_out": Out(1),
            "emit_set": Out(1),
            "emit_flag": Out(1),
            "emit_value": Out(signed(W)),
            "mode_x": In(data.ArrayLayout(signed(W), MODE_STATE)),
            "mode_coef": In(data.ArrayLayout(signed(CW), MODE_COEFS)),
            "mode_sum": In(signed(cfg.acc_width)),
            "mode_live": In(1),
            "mode_x_out": Out(data.ArrayLayout(signed(W), MODE_STATE)),
            "mode_sum_out": Out(signed(cfg.acc_width)),
        })

    @property
    def cfg(self) -> FabricConfig:
        return self._cfg

    def elaborate(self, platform):
        m = Module()
        W = self._cfg.state_width
        ins = self.instr
        regs = Array(self.regs[i] for i in range(8))
        coef = Array(self.coef[i] for i in range(8))

        def src(code, name):
            s = Signal(signed(W), name=name)
            with m.If(code < 8):
                m.d.comb += s.eq(regs[code[:3]])
            with m.Elif(code == Operand.ACC):
                m.d.comb += s.eq(self.acc)
            return s

        a = src(ins.ra, "src_a")
        b = src(ins.rb, "src_b")
        is_cmad = ins.op == Op.CMAD
        is_modes = ins.op == Op.MODES
        pair = (ins.ra < 8) & is_cmad
        a0 = Signal(signed(W))
        a1 = Signal(signed(W))
        m.d.comb += [
            a0.eq(Mux(is_modes, self.mode_x[0], Mux(is_cmad, Mux(pair, regs[ins.ra[:3]], 0), a))),
            a1.eq(Mux(is_modes, self.mode_x[1], Mux(pair, regs[(ins.ra[:3] + 1)[:3]], 0))),
        ]
        mc = self.mode_coef
        k0 = Mux(is_modes, mc[0], coef[ins.ck])
        k1 = Mux(is_modes, mc[1], coef[(ins.ck + 1)[:3]])
        l0 = Mux(is_modes, mc[2], coef[ins.cl])
        l1 = Mux(is_modes, mc[3], coef[(ins.cl + 1)[:3]])
        re = Signal(signed(W + self._cfg.coef_width + 2))
        im = Signal(signed(W + self._cfg.coef_width + 2))
        m.d.comb += [
            re.eq(a0 * k0 - a1 * k1 + b * l0),
            im.eq(a0 * k1 + a1 * k0 + b * l1),
        ]
        re_r = sat_hw(rnd_hw(m, re, ins.sh, "re_rnd"), W)
        im_r = sat_hw(rnd_hw(m, im, ins.sh, "im_rnd"), W)
        ldc = Signal(signed(self._cfg.coef_width + 31))
        m.d.comb += ldc.eq(coef[ins.ck] << ins.sh)

        # MODES: the output term of this mode entry and the running sum (modular)
        so = modes_instr_layout()(ins.as_value()).so
        proj = Signal(signed(W + self._cfg.coef_width + 1))
        m.d.comb += proj.eq(re_r * mc[4] + im_r * mc[5])
        term = sat_hw(rnd_hw(m, proj, so, "proj_rnd"), W)
        A = self._cfg.acc_width
        m.d.comb += [
            self.mode_x_out[0].eq(re_r), self.mode_x_out[1].eq(im_r),
            self.mode_sum_out.eq((self.mode_sum + Mux(self.mode_live, term, 0))[:A].as_signed()),
        ]

        result = Signal(signed(W))
        write = Signal()
        m.d.comb += write.eq(1)
        with m.Switch(ins.op):
            with m.Case(Op.MAD, Op.CMAD):
                m.d.comb += result.eq(re_r)
            with m.Case(Op.ADD):
                m.d.comb += result.eq(sat_hw(a + b, W))
            with m.Case(Op.SUB):
                m.d.comb += result.eq(sat_hw(a - b, W))
            with m.Case(Op.MAX):
                m.d.comb += result.eq(Mux(a > b, a, b))
            with m.Case(Op.MIN):
                m.d.comb += result.eq(Mux(a < b, a, b))
            with m.Case(Op.LDC):
                m.d.comb += result.eq(sat_hw(ldc, W))
            with m.Case(Op.SHR):
                m.d.comb += result.eq(sat_hw(rnd_hw(m, a, ins.sh, "shr_rnd"), W))
            with m.Case(Op.SEL):
                m.d.comb += result.eq(Mux(self.pred, a, b))
            with m.Case(Op.MODES):
                m.d.comb += result.eq(sat_hw(self.mode_sum_out, W))
            with m.Default():
                m.d.comb += write.eq(0)

        rd1 = (ins.rd + 1)[:3]
        for i in range(8):
            with m.If(write & (ins.rd == i)):
                m.d.comb += self.regs_out[i].eq(result)
            with m.Elif(is_cmad & (rd1 == i)):
                m.d.comb += self.regs_out[i].eq(im_r)
            with m.Else():
                m.d.comb += self.regs_out[i].eq(self.regs[i])
        m.d.comb += self.pred_out.eq(Mux(ins.op == Op.CGE, a >= b, self.pred))

        value = Array(self.regs_out[i] for i in range(8))[ins.rd]
        m.d.comb += [
            self.emit_value.eq(value),
            self.emit_set.eq(ins.emit != Emit.NONE),
        ]
        with m.Switch(ins.emit):
            with m.Case(Emit.ALWAYS):
                m.d.comb += self.emit_flag.eq(1)
            with m.Case(Emit.NONZERO):
                m.d.comb += self.emit_flag.eq(value != 0)
            with m.Case(Emit.IF_P):
                m.d.comb += self.emit_flag.eq(self.pred_out)
        return m
