"""Config port: executes CFG_WRITE and CFG_READ flits against the core's memories.

A configuration access is only started while the core is quiescent (``allow``: no neuron pass,
no spike in the synapse engine or route unit), so the port owns every memory port in the cycle
of the access and the core needs no arbitration beyond a priority multiplexer. The accepted
flit is registered first: a write takes effect the cycle after it is accepted; a read issues
the memory read then, captures the word part three cycles later (``rdata``, selected by the core
from ``addr``) and answers with a READ_RESP flit to the host: dst (0, 0), the same ``addr``,
data = the part. ``busy`` covers every cycle after acceptance (the core holds spikes back
meanwhile).
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.layouts import FlitKind, cfg_addr_layout, flit_layout

__all__ = ["ConfigPort"]


class ConfigPort(wiring.Component):
    """Sequencer of configuration accesses.

    Interface attributes
    --------------------
    i_flit : In(stream of flit_layout), CFG_WRITE and CFG_READ flits only.
    allow : In(1), the core is quiescent.
    addr : Out(cfg_addr_layout), address of the access (held during a read).
    wdata : Out(32), the data of a write (the core strobes each memory itself from the flit it
        sees accepted: the write is the cycle after acceptance, a read's RAM read likewise).
    rdata : In(32), the addressed part, three cycles after the RAM read (the core registers the
        memories' words, then the addressed part of each).
    o_flit : Out(stream of flit_layout), READ_RESP flits.
    busy : Out(1), a read is being answered.
    """

    def __init__(self, cfg: FabricConfig):
        self._cfg = cfg
        super().__init__({
            "i_flit": In(stream.Signature(flit_layout(cfg))),
            "allow": In(1),
            "addr": Out(cfg_addr_layout(cfg)),
            "wdata": Out(32), "rdata": In(32),
            "o_flit": Out(stream.Signature(flit_layout(cfg))),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        held = Signal(cfg_addr_layout(self._cfg))
        held_data = Signal(32)
        resp = self.o_flit.p
        m.d.comb += [resp.kind.eq(FlitKind.READ_RESP), resp.addr.eq(held), resp.data.eq(held_data)]
        held_wdata = Signal(32)
        # every memory port sees the access from registers: the address and the data here, the
        # strobes in the core
        m.d.comb += [self.addr.eq(held), self.wdata.eq(held_wdata)]
        with m.FSM(name="cfg"):
            with m.State("IDLE"):
                m.d.comb += self.i_flit.ready.eq(self.allow)
                with m.If(self.i_flit.valid & self.allow):
                    m.d.sync += [held.eq(self.i_flit.p.addr), held_wdata.eq(self.i_flit.p.data)]
                    with m.If(self.i_flit.p.kind == FlitKind.CFG_WRITE):
                        m.next = "WRITE"
                    with m.Else():
                        m.next = "READ0"
            with m.State("WRITE"):
                m.d.comb += self.busy.eq(1)
                m.next = "IDLE"
            with m.State("READ0"):
                m.d.comb += self.busy.eq(1)
                m.next = "READ"
            with m.State("READ"):
                m.d.comb += self.busy.eq(1)
                m.next = "READ2"
            with m.State("READ2"):
                m.d.comb += self.busy.eq(1)
                m.next = "READ3"
            with m.State("READ3"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += held_data.eq(self.rdata)
                m.next = "RESP"
            with m.State("RESP"):
                m.d.comb += [self.busy.eq(1), self.o_flit.valid.eq(1)]
                with m.If(self.o_flit.ready):
                    m.next = "IDLE"
        return m
