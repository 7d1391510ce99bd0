"""Neuron engine: the per-step neuron pass (group schedule, microcode sequencing, writeback).

On ``start`` (step ``t``) the engine visits the group descriptors in order; a group is active
when ``t >= start`` and its phase counter is 0 (phase counters count ``(t - start) % period``
without a divider, so steps must arrive in order: 0, 1, 2, ...; ``phase_reset`` restarts them).
For every neuron of an active group it runs the group's program, one instruction per cycle on
the single-cycle :class:`~hw.core.alu.NeuronAlu`:

* cycle 0 of a neuron uses its context straight from the memories' read ports (persistent
  registers from STATE, the rest zero; ``ACC = sat(acc)``; coefficients; route index), which
  were read the cycle before; the same cycle clears the accumulator and issues the reads of
  the next neuron's context (prefetch), so neurons follow each other without a bubble;
* the cycle of the instruction with ``last`` writes R0..R{state_regs-1} back and, if the
  pending spike is valid and the neuron has routes, offers an emission ``(payload, route base,
  route count)``; the engine stalls in that cycle while ``emission.ready`` is low.

* ``MODES`` iterates over the neuron's mode entries (``modes`` of the group, from the neuron's
  mode pointer: ``mode_base`` for the group's first neuron, then ``+ modes`` per neuron): one
  cycle to read entry 0, then one cycle per entry -- the ALU updates the entry from the read
  port's data, the engine writes it back and reads the next one, ``msum`` carries the sum --
  and the instruction completes (writes ``rd``) in the cycle of the last entry. The entries are
  independent (only the sum links them), so a later pipelined engine can issue one per cycle.

A program of L instructions costs L cycles per neuron, plus ``modes`` cycles per MODES (or 0
with no modes); each active group adds 1 cycle, each group descriptor 1 cycle of scan.
"""

from __future__ import annotations

from amaranth.hdl import Array, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.layouts import (
    MODE_COEFS,
    MODE_STATE,
    Op,
    group_layout,
    instr_layout,
    route_index_layout,
)

from .alu import NeuronAlu, sat_hw

__all__ = ["NeuronEngine", "emission_layout"]


def emission_layout(cfg: FabricConfig) -> data.StructLayout:
    """A neuron's spike, handed to the route unit: payload and its route words."""
    return data.StructLayout({
        "payload": signed(cfg.state_width),
        "base": unsigned(cfg.route_addr_bits),
        "count": unsigned(cfg.route_count_bits),
    })


class NeuronEngine(wiring.Component):
    """Runs the neuron pass of one step.

    Interface attributes
    --------------------
    start : In(1), pulse: run the pass of step ``step``; ignored while ``busy``.
    step : In(16), the step number ``t`` (sampled with ``start``).
    busy : Out(1), the pass is running.
    groups : In(groups x group_layout), the group descriptors.
    phase_reset : In(groups), restart the phase counter of a group.
    ucode_addr, ucode_en : Out; ``ucode_data`` In (32): microcode read port.
    ctx_addr, ctx_en : Out; read port address of STATE, COEF, ROUTE_INDEX and the accumulator
        (bank ``ctx_addr % lanes``, row ``ctx_addr // lanes`` of the buffer of this step).
    state_data, coef_data, ri_data, acc_data : In, the context read data (``acc_data``: one word
        per bank).
    wb_addr, wb_en, wb_data : Out, STATE write-back (all registers).
    clr_addr, clr_en : Out, clear one accumulator word of this step's buffer.
    mode_addr, mode_en : Out, read port address of the MSTATE and MCOEF mode memories;
        ``mstate_data``, ``mcoef_data`` In, their read data.
    mwb_addr, mwb_en, mwb_data : Out, MSTATE write-back of one mode entry.
    emission : Out(stream of emission_layout), spikes for the route unit.
    updated : Out(1), one neuron finished (NEURON_UPDATES).
    """

    def __init__(self, cfg: FabricConfig):
        self._cfg = cfg
        S, W, CW = cfg.state_regs, cfg.state_width, cfg.coef_width
        super().__init__({
            "start": In(1), "step": In(16), "busy": Out(1),
            "groups": In(data.ArrayLayout(group_layout(cfg), cfg.groups)),
            "phase_reset": In(cfg.groups),
            "ucode_addr": Out(cfg.pc_bits), "ucode_en": Out(1), "ucode_data": In(32),
            "ctx_addr": Out(cfg.neuron_bits), "ctx_en": Out(1),
            "state_data": In(S * W), "coef_data": In(cfg.coefs * CW),
            "ri_data": In(route_index_layout(cfg)),
            "acc_data": In(data.ArrayLayout(signed(cfg.acc_width), cfg.synapse_lanes)),
            "wb_addr": Out(cfg.neuron_bits), "wb_en": Out(1), "wb_data": Out(S * W),
            "clr_addr": Out(cfg.neuron_bits), "clr_en": Out(1),
            "mode_addr": Out(cfg.mode_bits), "mode_en": Out(1),
            "mstate_data": In(MODE_STATE * W), "mcoef_data": In(MODE_COEFS * CW),
            "mwb_addr": Out(cfg.mode_bits), "mwb_en": Out(1), "mwb_data": Out(MODE_STATE * W),
            "emission": Out(stream.Signature(emission_layout(cfg))),
            "updated": Out(1),
        })

    @property
    def cfg(self) -> FabricConfig:
        return self._cfg

    def elaborate(self, platform):
        cfg = self._cfg
        S, W, CW, G = cfg.state_regs, cfg.state_width, cfg.coef_width, cfg.groups
        lane_bits = (cfg.synapse_lanes - 1).bit_length()
        m = Module()
        m.submodules.alu = alu = NeuronAlu(cfg)

        # -- group schedule: phase counters ---------------------------------------------------
        phase = [Signal(8, name=f"phase{i}") for i in range(G)]
        active = Signal(G)
        for i in range(G):
            desc = self.groups[i]
            due = self.step >= desc.start
            with m.If(self.phase_reset[i]):
                m.d.sync += phase[i].eq(0)
            with m.Elif(self.start & ~self.busy):
                m.d.sync += active[i].eq(due & (phase[i] == 0) & (desc.count != 0))
                with m.If(due):
                    m.d.sync += phase[i].eq(Mux(phase[i] + 1 == desc.period, 0, phase[i] + 1))

        # -- pass state ----------------------------------------------------------------------
        g = Signal(range(max(G, 2)))
        n = Signal(cfg.neuron_bits)
        remaining = Signal(cfg.neuron_bits + 1)
        pc = Signal(cfg.pc_bits)
        gpc = Signal(cfg.pc_bits)
        first = Signal()
        regs = Signal(data.ArrayLayout(signed(W), cfg.NUM_REGS))
        coef_q = Signal(cfg.coefs * CW)
        acc_q = Signal(signed(W))
        ri_q = Signal(route_index_layout(cfg))
        pred = Signal()
        pend_flag = Signal()
        pend_value = Signal(signed(W))

        descs = Array(self.groups[i] for i in range(G))
        desc = descs[g]
        instr = instr_layout()(self.ucode_data)
        acc_lane = self.acc_data[n[:lane_bits]] if lane_bits else self.acc_data[0]

        # Operands: in a neuron's first cycle straight from the context read ports.
        coef_in = Mux(first, self.coef_data, coef_q)
        ri_in = route_index_layout(cfg)(Mux(first, self.ri_data.as_value(), ri_q.as_value()))
        m.d.comb += [
            alu.instr.eq(instr),
            alu.acc.eq(Mux(first, sat_hw(acc_lane, W), acc_q)),
            alu.coef.eq(coef_in),
            alu.pred.eq(pred & ~first),
        ]
        for i in range(cfg.NUM_REGS):
            init = self.state_data[i * W:(i + 1) * W] if i < S else 0
            m.d.comb += alu.regs[i].eq(Mux(first, init, regs[i]))

        flag = Signal()
        value = Signal(signed(W))
        with m.If(alu.emit_set):
            m.d.comb += [flag.eq(alu.emit_flag), value.eq(alu.emit_value)]
        with m.Elif(~first):
            m.d.comb += [flag.eq(pend_flag), value.eq(pend_value)]

        running = Signal()
        is_last = running & instr.last

        # -- MODES: one mode entry per cycle after a one-cycle read of entry 0 --------------------
        mptr = Signal(cfg.mode_bits + 1)       # the neuron's first mode entry
        mi = Signal(cfg.mode_bits + 1)         # entry on the read port (while mloop)
        mloop = Signal()
        msum = Signal(signed(cfg.acc_width))
        is_modes = running & (instr.op == Op.MODES)
        nmodes = desc.modes
        mlast = mloop & (mi + 1 == nmodes)
        mdone = (nmodes == 0) | mlast
        mstall = is_modes & ~mdone
        m.d.comb += [
            alu.mode_x.eq(self.mstate_data), alu.mode_coef.eq(self.mcoef_data),
            alu.mode_sum.eq(Mux(mloop, msum, 0)), alu.mode_live.eq(is_modes & mloop),
        ]

        m.d.comb += [
            self.emission.valid.eq(is_last & flag & (ri_in.count != 0) & ~mstall),
            self.emission.p.payload.eq(value),
            self.emission.p.base.eq(ri_in.base),
            self.emission.p.count.eq(ri_in.count),
        ]
        advance = ~mstall & ~(self.emission.valid & ~self.emission.ready)
        with m.If(is_modes & mloop & (mstall | advance)):
            m.d.comb += [self.mwb_addr.eq(mptr + mi), self.mwb_en.eq(1),
                         self.mwb_data.eq(alu.mode_x_out.as_value())]
        with m.If(is_modes & (nmodes != 0)):
            with m.If(~mloop):
                m.d.comb += [self.mode_addr.eq(mptr), self.mode_en.eq(1)]
                m.d.sync += [mloop.eq(1), mi.eq(0), msum.eq(0)]
            with m.Elif(~mlast):
                m.d.comb += [self.mode_addr.eq(mptr + mi + 1), self.mode_en.eq(1)]
                m.d.sync += [mi.eq(mi + 1), msum.eq(alu.mode_sum_out)]
            with m.Elif(advance):
                m.d.sync += mloop.eq(0)

        with m.FSM(name="pass") as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += g.eq(0)
                    m.next = "SCAN"
            with m.State("SCAN"):
                with m.If(active.bit_select(g, 1)):
                    m.d.comb += [
                        self.ctx_addr.eq(desc.first), self.ctx_en.eq(1),
                        self.ucode_addr.eq(desc.pc), self.ucode_en.eq(1),
                    ]
                    m.d.sync += [
                        n.eq(desc.first), remaining.eq(desc.count), pc.eq(desc.pc),
                        gpc.eq(desc.pc), first.eq(1), mptr.eq(desc.mode_base),
                    ]
                    m.next = "EXEC"
                with m.Elif(g == G - 1):
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += g.eq(g + 1)
            with m.State("EXEC"):
                m.d.comb += running.eq(1)
                with m.If(advance):
                    next_pc = Mux(instr.last, gpc, pc + 1)
                    m.d.comb += [self.ucode_addr.eq(next_pc), self.ucode_en.eq(1)]
                    m.d.sync += [
                        regs.eq(alu.regs_out), pred.eq(alu.pred_out),
                        pend_flag.eq(flag), pend_value.eq(value),
                        coef_q.eq(coef_in), acc_q.eq(alu.acc), ri_q.eq(ri_in),
                        pc.eq(next_pc), first.eq(0),
                    ]
                    with m.If(first):
                        m.d.comb += [self.clr_addr.eq(n), self.clr_en.eq(1)]
                        with m.If(remaining > 1):
                            m.d.comb += [self.ctx_addr.eq(n + 1), self.ctx_en.eq(1)]
                    with m.If(instr.last):
                        m.d.comb += [
                            self.wb_addr.eq(n), self.wb_en.eq(1), self.updated.eq(1),
                            self.wb_data.eq(alu.regs_out.as_value()[:S * W]),
                        ]
                        m.d.sync += mptr.eq(mptr + nmodes)
                        with m.If(remaining > 1):
                            m.d.sync += [n.eq(n + 1), remaining.eq(remaining - 1), first.eq(1)]
                        with m.Elif(g == G - 1):
                            m.next = "IDLE"
                        with m.Else():
                            m.d.sync += g.eq(g + 1)
                            m.next = "SCAN"
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        return m
