"""Route unit: expands a neuron's emission into one spike per route word (multicast).

For an emission ``(payload, base, count)`` it reads ROUTE[base .. base+count-1], one word per
cycle; each word is registered as it leaves the block RAM (on a dense core ROUTE is several
cascaded DP16KD whose output mux is most of a cycle) and then enters a ``DEPTH``-entry output
FIFO (registered output; a read issues only when the FIFO has room for it, so the block-RAM
output never drives the flit ports). A route word becomes

* a HOST_OUT flit (``host=1``): dst (0, 0), addr = channel ``target``, data = payload;
* a loopback spike (the core's own tile): to the synapse engine, never leaving the core;
* a SPIKE flit otherwise: dst (x, y), addr = axon ``target``, data = payload.

The payload is sign-extended to the flit's 32 data bits.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, signed
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.layouts import FlitKind, flit_layout, route_layout

from .neuron import emission_layout
from .synapse import spike_layout

__all__ = ["RouteUnit"]


class RouteUnit(wiring.Component):
    """Fans emissions out over their route words.

    Parameters
    ----------
    cfg : fabric parameters
    x, y : this tile's coordinates (routes to them are loopback)

    Interface attributes
    --------------------
    i_emit : In(stream of emission_layout).
    route_addr, route_en : Out; ``route_data`` In(route_layout): ROUTE read port.
    o_flit : Out(stream of flit_layout), SPIKE and HOST_OUT flits.
    o_loop : Out(stream of spike_layout), spikes for this core's own axons.
    busy : Out(1); sent : Out(1), one route word fired (SPIKES_SENT).
    """

    #: output FIFO entries (5 sustains one route word per cycle with the registered room check
    #: and two words in flight: the block-RAM read and the register after it)
    DEPTH = 5

    def __init__(self, cfg: FabricConfig, x: int, y: int):
        if not (0 <= x < cfg.mesh_w and 0 <= y < cfg.mesh_h):
            raise ValueError(f"RouteUnit: tile ({x!r}, {y!r}) outside the "
                             f"{cfg.mesh_w}x{cfg.mesh_h} mesh")
        self._cfg, self._x, self._y = cfg, x, y
        super().__init__({
            "i_emit": In(stream.Signature(emission_layout(cfg))),
            "route_addr": Out(cfg.route_addr_bits), "route_en": Out(1),
            "route_data": In(route_layout(cfg)),
            "o_flit": Out(stream.Signature(flit_layout(cfg))),
            "o_loop": Out(stream.Signature(spike_layout(cfg))),
            "busy": Out(1), "sent": Out(1),
        })

    def elaborate(self, platform):
        cfg = self._cfg
        W = cfg.state_width
        m = Module()

        it_busy = Signal()
        it_ptr = Signal(cfg.route_addr_bits)
        it_rem = Signal(cfg.route_count_bits)
        it_payload = Signal(signed(W))

        # route words are registered as they leave the block RAM (data_q), then land in a small
        # FIFO (registered output); a read issues only when the FIFO has room for it
        entry = data.StructLayout({"route": route_layout(cfg), "payload": signed(W)})
        m.submodules.outq = outq = fifo.SyncFIFOBuffered(width=entry.size, depth=self.DEPTH)
        inflight = Signal()                     # the block RAM is reading a word this cycle
        inflight_payload = Signal(signed(W))
        inflight2 = Signal()                    # data_q holds a word for the FIFO
        data_q = Signal(entry.size)
        # room for one more word, registered: the FIFO's level, the two words in flight (block
        # RAM read, data_q) and one entry of margin for the word issued in the cycle the room was
        # registered; sustains a word per cycle while the consumer takes them
        room = Signal()
        m.d.sync += room.eq(outq.level + inflight + inflight2 + 1 < self.DEPTH)
        it_last = Signal()                      # it_rem == 1
        issue = it_busy & room
        load = self.i_emit.valid & (~it_busy | (issue & it_last))
        m.d.sync += [inflight.eq(issue), inflight_payload.eq(it_payload),
                     inflight2.eq(inflight),
                     data_q.eq(Cat(self.route_data.as_value(), inflight_payload))]
        m.d.comb += [
            outq.w_en.eq(inflight2),
            outq.w_data.eq(data_q),
            self.i_emit.ready.eq(~it_busy | (issue & it_last)),
            self.route_addr.eq(it_ptr), self.route_en.eq(issue),
            self.busy.eq(it_busy | inflight | inflight2 | (outq.level != 0)),
        ]
        with m.If(issue):
            m.d.sync += [it_ptr.eq(it_ptr + 1), it_rem.eq(it_rem - 1), it_last.eq(it_rem == 2)]
            with m.If(it_last):
                m.d.sync += it_busy.eq(0)
        with m.If(load):
            e = self.i_emit.p
            m.d.sync += [it_busy.eq(e.count != 0), it_ptr.eq(e.base), it_rem.eq(e.count),
                         it_last.eq(e.count == 1), it_payload.eq(e.payload)]

        head = entry(outq.r_data)
        r = head.route
        loop = ~r.host & (r.x == self._x) & (r.y == self._y)
        consume = outq.r_rdy & ((loop & self.o_loop.ready) | (~loop & self.o_flit.ready))
        m.d.comb += [outq.r_en.eq(consume), self.sent.eq(consume)]

        f = self.o_flit.p
        m.d.comb += [
            self.o_loop.valid.eq(outq.r_rdy & loop),
            self.o_loop.p.axon.eq(r.target),
            self.o_loop.p.payload.eq(head.payload),
            self.o_flit.valid.eq(outq.r_rdy & ~loop),
            f.kind.eq(FlitKind.SPIKE),
            f.dst_x.eq(r.x), f.dst_y.eq(r.y),
            f.addr.eq(r.target),
            f.data.eq(head.payload),
        ]
        with m.If(r.host):
            m.d.comb += [f.kind.eq(FlitKind.HOST_OUT), f.dst_x.eq(0), f.dst_y.eq(0)]
        return m
