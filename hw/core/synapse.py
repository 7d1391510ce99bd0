"""Synapse engine: spikes -> axon table -> synapse rows -> accumulators, one row per cycle.

Pipeline (no stalls after the axon lookup; every stage advances every cycle)::

    accept   i_spike taken, AXON read issued                     (axon slot, 1 entry)
    iterate  one synapse row per cycle: SYNAPSE read issued        (row iterator)
    S1       synapse word arrives: payload x weight[j] per lane    (lanes multipliers)
    S2       accumulator read issued in every lane's bank          (bank j holds neurons
                                                                    row*lanes + j)
    S3       acc += rnd(product, shift), written back if mask[j]

The accumulator read of S2 does not see the write of S3 in the same cycle, so S3 forwards the
previous cycle's written value when the rows match (read-modify-write hazard of back-to-back
rows on one neuron). The iterator takes the next spike in the cycle it issues the last row of
the current one, so rows follow each other without bubbles: one row (``popcount(mask)``
synaptic ops) per cycle.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.layouts import axon_layout, synapse_layout

from .alu import rnd_hw

__all__ = ["SynapseEngine", "spike_layout"]


def spike_layout(cfg: FabricConfig) -> data.StructLayout:
    """A spike arriving at one of the core's axons."""
    return data.StructLayout({"axon": unsigned(cfg.axon_bits), "payload": signed(cfg.state_width)})


class SynapseEngine(wiring.Component):
    """Integrates spikes into one accumulator buffer (the core picks the buffer).

    Interface attributes
    --------------------
    i_spike : In(stream of spike_layout).
    busy : Out(1), a spike is somewhere in the pipeline.
    axon_addr, axon_en : Out; ``axon_data`` In(axon_layout): AXON read port.
    syn_addr, syn_en : Out; ``syn_data`` In(synapse_layout): SYNAPSE read port.
    acc_raddr, acc_ren : Out; ``acc_rdata`` In(lanes words): accumulator read, all banks.
    acc_waddr, acc_wdata, acc_wen : Out, accumulator write (one enable per bank).
    received : Out(1), a spike entered the row iterator (SPIKES_RECEIVED).
    ops : Out, enabled lanes of the row in S1 (SYN_OPS).
    """

    def __init__(self, cfg: FabricConfig):
        self._cfg = cfg
        L, A = cfg.synapse_lanes, cfg.acc_width
        rows = max(cfg.neurons // L, 2)
        super().__init__({
            "i_spike": In(stream.Signature(spike_layout(cfg))),
            "busy": Out(1),
            "axon_addr": Out(cfg.axon_bits), "axon_en": Out(1), "axon_data": In(axon_layout(cfg)),
            "syn_addr": Out(cfg.syn_addr_bits), "syn_en": Out(1),
            "syn_data": In(synapse_layout(cfg)),
            "acc_raddr": Out(range(rows)), "acc_ren": Out(1),
            "acc_rdata": In(data.ArrayLayout(signed(A), L)),
            "acc_waddr": Out(range(rows)), "acc_wen": Out(L),
            "acc_wdata": Out(data.ArrayLayout(signed(A), L)),
            "received": Out(1), "ops": Out(range(L + 1)),
        })

    @property
    def cfg(self) -> FabricConfig:
        return self._cfg

    def elaborate(self, platform):
        cfg = self._cfg
        L, W, A = cfg.synapse_lanes, cfg.state_width, cfg.acc_width
        P = W + cfg.weight_width
        m = Module()

        # -- axon slot --
        l_valid = Signal()
        l_payload = Signal(signed(W))
        # -- row iterator --
        it_busy = Signal()
        it_ptr = Signal(cfg.syn_addr_bits)
        it_rem = Signal(cfg.syn_count_bits)
        it_payload = Signal(signed(W))
        it_shift = Signal(5)

        it_free = ~it_busy | (it_rem == 1)
        load = l_valid & it_free
        accept = self.i_spike.valid & self.i_spike.ready
        m.d.comb += [
            self.i_spike.ready.eq(~l_valid | load),
            self.axon_addr.eq(self.i_spike.p.axon), self.axon_en.eq(accept),
            self.received.eq(load),
        ]
        with m.If(accept):
            m.d.sync += [l_valid.eq(1), l_payload.eq(self.i_spike.p.payload)]
        with m.Elif(load):
            m.d.sync += l_valid.eq(0)

        s1_valid = Signal()
        s1_payload = Signal(signed(W))
        s1_shift = Signal(5)
        m.d.sync += s1_valid.eq(it_busy)
        with m.If(it_busy):
            m.d.comb += [self.syn_addr.eq(it_ptr), self.syn_en.eq(1)]
            m.d.sync += [it_ptr.eq(it_ptr + 1), it_rem.eq(it_rem - 1),
                         s1_payload.eq(it_payload), s1_shift.eq(it_shift)]
            with m.If(it_rem == 1):
                m.d.sync += it_busy.eq(0)
        with m.If(load):
            ax = self.axon_data
            m.d.sync += [it_ptr.eq(ax.base), it_rem.eq(ax.count), it_busy.eq(ax.count != 0),
                         it_payload.eq(l_payload), it_shift.eq(ax.shift)]

        # -- S1: products --
        s2_valid = Signal()
        s2_row = Signal.like(self.acc_raddr)
        s2_mask = Signal(L)
        s2_shift = Signal(5)
        s2_prod = [Signal(signed(P), name=f"s2_prod{j}") for j in range(L)]
        syn = self.syn_data
        m.d.sync += [s2_valid.eq(s1_valid), s2_row.eq(syn.row), s2_shift.eq(s1_shift),
                     s2_mask.eq(syn.mask & s1_valid.replicate(L))]
        for j in range(L):
            m.d.sync += s2_prod[j].eq(s1_payload * syn.weights[j])
        with m.If(s1_valid):
            m.d.comb += self.ops.eq(sum(syn.mask[j] for j in range(L)))

        # -- S2: accumulator read --
        s3_valid = Signal()
        s3_row = Signal.like(s2_row)
        s3_mask = Signal(L)
        s3_shift = Signal(5)
        s3_prod = [Signal(signed(P), name=f"s3_prod{j}") for j in range(L)]
        m.d.comb += [self.acc_raddr.eq(s2_row), self.acc_ren.eq(s2_valid)]
        m.d.sync += [s3_valid.eq(s2_valid), s3_row.eq(s2_row), s3_mask.eq(s2_mask),
                     s3_shift.eq(s2_shift)]
        m.d.sync += [s3_prod[j].eq(s2_prod[j]) for j in range(L)]

        # -- S3: add and write back, forwarding last cycle's write --
        fw_valid = Signal(L)
        fw_row = Signal.like(s2_row)
        fw_data = [Signal(signed(A), name=f"fw_data{j}") for j in range(L)]
        m.d.comb += self.acc_waddr.eq(s3_row)
        m.d.sync += [fw_valid.eq(self.acc_wen), fw_row.eq(s3_row)]
        for j in range(L):
            old = Signal(signed(A), name=f"old{j}")
            hit = fw_valid[j] & (fw_row == s3_row)
            m.d.comb += old.eq(Mux(hit, fw_data[j], self.acc_rdata[j]))
            delta = rnd_hw(m, s3_prod[j], s3_shift, f"delta{j}")
            m.d.comb += [
                self.acc_wdata[j].eq(old + delta),
                self.acc_wen[j].eq(s3_valid & s3_mask[j]),
            ]
            m.d.sync += fw_data[j].eq(self.acc_wdata[j])

        m.d.comb += self.busy.eq(l_valid | it_busy | s1_valid | s2_valid | s3_valid)
        return m
