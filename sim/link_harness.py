"""Simulation harness around the fabric's host port: hands words to and from the testbench in
chunks, so the Python side of a Verilator simulation acts once per chunk instead of every cycle.

:class:`LinkHarness` wraps any component with the fabric's flat AXI4-Stream host port
(``s_axis_tdata/tvalid/tready/tlast``, ``m_axis_*``; see :class:`hw.fabric.Fabric`):

* Input: two slots of ``chunk`` words. The testbench writes a chunk (``in_data``: word ``j`` in
  bits ``32j..32j+31``, ``in_last`` bit ``j`` = its TLAST, ``in_count`` words) with a one-cycle
  ``in_load`` strobe whenever ``in_ready`` is high. Slot A presents its words on ``s_axis`` one
  per handshake; slot B waits behind it and moves into A in the cycle A drains, so a stream of
  chunks reaches the fabric at one word per cycle without bubbles, exactly as a host that
  always has the next word ready. ``in_load`` while ``in_ready`` is low sets the sticky
  ``in_overflow`` error flag and drops the chunk.
* Output: ``m_axis`` goes into a FIFO (``m_axis_tready`` is the FIFO's ``w_rdy``, so the fabric
  never waits on the testbench unless it falls ``out_fifo_depth`` words behind) and from there
  into a collector. The collector raises ``out_hold`` when it holds ``chunk`` words or a word
  with TLAST; the ``out_count`` words it holds are the top ones of ``out_data`` (oldest first:
  word ``j`` in bits ``32(chunk-count+j)..``) with their TLAST in ``out_last``. A one-cycle
  ``out_ack`` empties it.

It is testbench code only: ``neuroloom generate`` writes the bare fabric.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

__all__ = ["LinkHarness"]


class LinkHarness(wiring.Component):
    """Chunked testbench access to ``inner``'s host port (see the module docstring)."""

    def __init__(self, inner, *, chunk: int = 32, out_fifo_depth: int = 16):
        if chunk < 1:
            raise ValueError(f"chunk={chunk!r} must be >= 1")
        self.inner = inner
        self.chunk = chunk
        self._depth = out_fifo_depth
        super().__init__({
            "in_data": In(32 * chunk), "in_last": In(chunk), "in_count": In(range(chunk + 1)),
            "in_load": In(1), "in_ready": Out(1), "in_overflow": Out(1),
            "out_data": Out(32 * chunk), "out_last": Out(chunk),
            "out_count": Out(range(chunk + 1)), "out_hold": Out(1), "out_ack": In(1),
            "cmd_start": Out(48), "resp_end": Out(48), "overrun": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        K = self.chunk
        m.submodules.inner = dut = self.inner
        m.d.comb += self.overrun.eq(dut.overrun)

        # -- input: slot A drives s_axis, slot B is staged behind it -------------------------------
        a_data, a_last = Signal(32 * K), Signal(K)
        a_cnt = Signal(range(K + 1))
        b_data, b_last = Signal(32 * K), Signal(K)
        b_cnt = Signal(range(K + 1))
        m.d.comb += [dut.s_axis_tvalid.eq(a_cnt != 0), dut.s_axis_tdata.eq(a_data[:32]),
                     dut.s_axis_tlast.eq(a_last[0]), self.in_ready.eq(b_cnt == 0)]
        take = Signal()
        m.d.comb += take.eq(dut.s_axis_tvalid & dut.s_axis_tready)
        a_free = Signal()                   # A is empty after this cycle
        m.d.comb += a_free.eq((a_cnt == 0) | ((a_cnt == 1) & take))
        with m.If(take):
            m.d.sync += [a_data.eq(a_data >> 32), a_last.eq(a_last >> 1), a_cnt.eq(a_cnt - 1)]
        with m.If(a_free & (b_cnt != 0)):
            m.d.sync += [a_data.eq(b_data), a_last.eq(b_last), a_cnt.eq(b_cnt), b_cnt.eq(0)]
        with m.If(self.in_load):
            with m.If(b_cnt != 0):
                m.d.sync += self.in_overflow.eq(1)
            with m.Elif(a_free):
                m.d.sync += [a_data.eq(self.in_data), a_last.eq(self.in_last),
                             a_cnt.eq(self.in_count)]
            with m.Else():
                m.d.sync += [b_data.eq(self.in_data), b_last.eq(self.in_last),
                             b_cnt.eq(self.in_count)]

        # -- output: FIFO, then the collector the testbench reads ----------------------------------
        m.submodules.ofifo = fifo = SyncFIFOBuffered(width=33, depth=self._depth)
        m.d.comb += [fifo.w_data.eq(Cat(dut.m_axis_tdata, dut.m_axis_tlast)),
                     fifo.w_en.eq(dut.m_axis_tvalid), dut.m_axis_tready.eq(fifo.w_rdy)]
        o_cnt, hold = self.out_count, self.out_hold      # registers
        m.d.comb += fifo.r_en.eq(~hold)
        with m.If(fifo.r_rdy & ~hold):
            word, last = fifo.r_data[:32], fifo.r_data[32]
            m.d.sync += [self.out_data.eq(Cat(self.out_data[32:], word)),
                         self.out_last.eq(Cat(self.out_last[1:], last)),
                         o_cnt.eq(o_cnt + 1)]
            with m.If(last | (o_cnt == K - 1)):
                m.d.sync += hold.eq(1)
        with m.If(self.out_ack & hold):
            m.d.sync += [hold.eq(0), o_cnt.eq(0)]

        # -- timing ------------------------------------------------------------------------------
        cycle = Signal(48)
        in_frame = Signal()                 # a command word without TLAST has been accepted
        m.d.sync += cycle.eq(cycle + 1)
        with m.If(take):
            with m.If(~in_frame):
                m.d.sync += self.cmd_start.eq(cycle)
            m.d.sync += in_frame.eq(~dut.s_axis_tlast)
        with m.If(dut.m_axis_tvalid & dut.m_axis_tready & dut.m_axis_tlast):
            m.d.sync += self.resp_end.eq(cycle)
        return m
