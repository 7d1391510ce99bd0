"""Synapse engine: spikes -> axon table -> synapse rows -> accumulators, one row per cycle.

Pipeline (no stalls after the axon lookup; every stage advances every cycle)::

    accept   i_spike taken, AXON read issued                     (axon slot A)
    axon     the axon word registered                             (axon slot B)
    iterate  one synapse row per cycle: SYNAPSE read issued        (row iterator)
    S1       synapse word arrives and is registered
    P1, P2   payload x weight[j] per lane (partial products, then their sum)
    S2       accumulator read issued in every lane's bank (bank j holds neurons row*lanes + j);
             product + rounding half
    S3       accumulator words leave the block RAMs into the core's registers (both buffers'
             banks, nothing between RAM and flip-flop); delta = (product + half) >> shift;
             which word S4 adds to is decided (one-hot)
    S4       acc + delta (modulo 2^acc_width)
    S5       the sum registered and written back if mask[j]

The accumulator read of S2 does not see the writes (S5) of the three rows ahead of it (in its
own cycle and the next two), so S4 forwards the newest of those three sums when the rows match
(read-modify-write hazard of back-to-back rows on one neuron; the row compares happen in S3);
otherwise it takes the registered word of this engine's buffer (``acc_sel``). A read in the
cycle its row is written is therefore never used, and the accumulator memories need no
read-old logic. The iterator takes the next spike in the cycle it issues the last row of the
current one, so rows follow each other without bubbles: one row (``popcount(mask)`` synaptic
ops) per cycle.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.layouts import axon_layout, synapse_layout

from .alu import _Product, delay, reg

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
    acc_raddr, acc_ren : Out; accumulator read, all banks of this engine's buffer.
    acc_q : In(2 x lanes words), every bank of both buffers, registered as it left the block
        RAM (two cycles after ``acc_ren``); ``acc_sel`` : In(lanes), the cycle before: lane j's
        read went to buffer 0 if set, else buffer 1.
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
            "acc_q": In(data.ArrayLayout(data.ArrayLayout(signed(A), L), 2)),
            "acc_sel": In(L),
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

        # -- axon slots: A (spike accepted, AXON read in flight), B (axon word registered) --
        a_valid = Signal()
        a_payload = Signal(signed(W))
        b_valid = Signal()
        b_payload = Signal(signed(W))
        b_ax = Signal(axon_layout(cfg))
        # -- row iterator --
        it_busy = Signal()
        it_ptr = Signal(cfg.syn_addr_bits)
        it_rem = Signal(cfg.syn_count_bits)
        it_payload = Signal(signed(W))
        it_shift = Signal(5)

        it_last = Signal()                      # it_rem == 1
        it_free = ~it_busy | it_last
        load = b_valid & it_free
        a_move = a_valid & (~b_valid | load)
        accept = self.i_spike.valid & self.i_spike.ready
        m.d.comb += [
            self.i_spike.ready.eq(~a_valid | a_move),
            self.axon_addr.eq(self.i_spike.p.axon), self.axon_en.eq(accept),
            self.received.eq(load),
        ]
        with m.If(accept):
            m.d.sync += [a_valid.eq(1), a_payload.eq(self.i_spike.p.payload)]
        with m.Elif(a_move):
            m.d.sync += a_valid.eq(0)
        with m.If(a_move):
            m.d.sync += [b_valid.eq(1), b_payload.eq(a_payload), b_ax.eq(self.axon_data)]
        with m.Elif(load):
            m.d.sync += b_valid.eq(0)

        s1_valid = Signal()
        s1_payload = Signal(signed(W))
        s1_shift = Signal(5)
        m.d.sync += s1_valid.eq(it_busy)
        with m.If(it_busy):
            m.d.comb += [self.syn_addr.eq(it_ptr), self.syn_en.eq(1)]
            m.d.sync += [it_ptr.eq(it_ptr + 1), it_rem.eq(it_rem - 1), it_last.eq(it_rem == 2),
                         s1_payload.eq(it_payload), s1_shift.eq(it_shift)]
            with m.If(it_rem == 1):
                m.d.sync += it_busy.eq(0)
        with m.If(load):
            m.d.sync += [it_ptr.eq(b_ax.base), it_rem.eq(b_ax.count), it_busy.eq(b_ax.count != 0),
                         it_last.eq(b_ax.count == 1),
                         it_payload.eq(b_payload), it_shift.eq(b_ax.shift)]

        # -- S1: the synapse word registered (block-RAM output) --
        s1r_valid = Signal()
        s1r_payload = Signal(signed(W))
        s1r_shift = Signal(5)
        s1r_syn = Signal(synapse_layout(cfg))
        m.d.sync += [s1r_valid.eq(s1_valid), s1r_payload.eq(s1_payload), s1r_shift.eq(s1_shift),
                     s1r_syn.eq(self.syn_data)]
        with m.If(s1r_valid):
            m.d.comb += self.ops.eq(sum(s1r_syn.mask[j] for j in range(L)))

        # -- P0, P1, P2: products (the multipliers' operand copies, one MULT18X18D partial per
        # lane and part, then their sum) --
        Q = _Product.LAT
        prods = [_Product(m, s1r_payload, s1r_syn.weights[j], f"prod{j}").value
                 for j in range(L)]
        s2_valid = delay(m, s1r_valid, Q, "s2_valid")
        s2_row = delay(m, s1r_syn.row, Q, "s2_row")
        s2_mask = delay(m, s1r_syn.mask & s1r_valid.replicate(L), Q, "s2_mask")
        s2_shift = delay(m, s1r_shift, Q, "s2_shift")

        # -- S2: accumulator read at the row; product + half --
        m.d.comb += [self.acc_raddr.eq(s2_row), self.acc_ren.eq(s2_valid)]
        HW = max(P + 2, 34)
        half = Signal(HW)
        m.d.comb += half.eq((Const(1, HW + 1) << s2_shift)[1:HW + 1])
        s3_valid = reg(m, s2_valid, "s3_valid")
        s3_row = reg(m, s2_row, "s3_row")
        s3_mask = reg(m, s2_mask, "s3_mask")
        s3_shift = reg(m, s2_shift, "s3_shift")
        s3_sum = [reg(m, prods[j] + half.as_signed(), f"s3_sum{j}", signed(HW + 1))
                  for j in range(L)]

        # -- S3: accumulator words registered (by the core), delta shifted, forwarding decided --
        # The S2 read at cycle t sees the block RAM as written before t; the rows one, two and
        # three ahead write it at t + 2, t + 1 and t (S5). Their new words, newest first: the
        # S5 register (w1), last cycle's S5 word (w2), the one before (w3). S3 compares its row
        # with those rows while they are in S4, S5 and w2, and registers a one-hot choice.
        s4_valid = reg(m, s3_valid, "s4_valid")
        s4_row = reg(m, s3_row, "s4_row")
        s4_mask = reg(m, s3_mask, "s4_mask")
        s4_delta = [reg(m, (s3_sum[j] >> s3_shift), f"s4_delta{j}", signed(HW + 1))
                    for j in range(L)]
        s4_wen = Signal(L)
        s5_wen = Signal(L)
        s5_row = Signal.like(s2_row)
        s5_data = [Signal(signed(A), name=f"s5_data{j}") for j in range(L)]
        w2_valid = Signal(L)
        w2_row = Signal.like(s2_row)
        w2_data = [Signal(signed(A), name=f"w2_data{j}") for j in range(L)]
        w3_data = [Signal(signed(A), name=f"w3_data{j}") for j in range(L)]
        use_w1, use_w2, use_w3, use_q0, use_q1 = [], [], [], [], []
        for j in range(L):
            k1 = s4_wen[j] & (s4_row == s3_row)
            k2 = s5_wen[j] & (s5_row == s3_row)
            k3 = w2_valid[j] & (w2_row == s3_row)
            ram = ~k1 & ~k2 & ~k3
            use_w1.append(reg(m, k1, f"use_w1_{j}"))
            use_w2.append(reg(m, ~k1 & k2, f"use_w2_{j}"))
            use_w3.append(reg(m, ~k1 & ~k2 & k3, f"use_w3_{j}"))
            use_q0.append(reg(m, ram & self.acc_sel[j], f"use_q0_{j}"))
            use_q1.append(reg(m, ram & ~self.acc_sel[j], f"use_q1_{j}"))

        # -- S4: add; S5: the write registered (nothing between the adder and the block RAM's
        # input but this register and the core's write multiplexer) --
        m.d.sync += [s5_wen.eq(s4_wen), s5_row.eq(s4_row),
                     w2_valid.eq(s5_wen), w2_row.eq(s5_row)]
        m.d.comb += self.acc_waddr.eq(s5_row)
        for j in range(L):
            old = ((s5_data[j] & use_w1[j].replicate(A)) | (w2_data[j] & use_w2[j].replicate(A))
                   | (w3_data[j] & use_w3[j].replicate(A))
                   | (self.acc_q[0][j] & use_q0[j].replicate(A))
                   | (self.acc_q[1][j] & use_q1[j].replicate(A)))
            m.d.comb += [
                s4_wen[j].eq(s4_valid & s4_mask[j]),
                self.acc_wdata[j].eq(s5_data[j]),
                self.acc_wen[j].eq(s5_wen[j]),
            ]
            m.d.sync += [s5_data[j].eq((old.as_signed() + s4_delta[j])[:A]),
                         w2_data[j].eq(s5_data[j]), w3_data[j].eq(w2_data[j])]

        in_products = [delay(m, s1r_valid, d, f"p{d}_valid") for d in range(1, Q)]
        m.d.comb += self.busy.eq(a_valid | b_valid | it_busy | s1_valid | s1r_valid | s2_valid
                                 | Cat(*in_products).any() | s3_valid | s4_valid | s5_wen.any())
        return m
