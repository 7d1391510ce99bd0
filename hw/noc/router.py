"""Five-port mesh router: LUT-RAM input FIFOs, dimension-ordered (X then Y) routing, round-robin
arbitration into a grant stage and registered outputs.

One router per tile. Every port is a pair of ``stream.Signature(flit_layout(cfg))`` links
(``i_<port>`` into the router, ``o_<port>`` out of it). Microarchitecture, three cycles per hop,
every path inside the router from flip-flops (or LUT RAM read at a registered address) to
flip-flops (``docs/noc.md``):

* **Route on the way in**: the output port of a flit (X first, then Y, then Local; host-bound
  kinds ``READ_RESP``/``HOST_OUT`` always travel to tile (0, 0) and leave router (0, 0) by its
  West port, where the host link attaches) is computed from the input link's payload and stored
  one-hot with the flit.
* **Input FIFO** per port in LUT RAM; its head's route is held in registers (``want`` and the
  request ``req``). ``i_<port>.ready`` is a flip-flop: fewer than ``router_fifo_depth`` flits of
  that input are inside the router (a per-input occupancy counter that also counts its flits in
  output stages). No combinational path runs from an ``o_*.ready`` to an ``i_*.ready``: a mesh
  of routers has no combinational loop.
* **Output arbitration**: per connected output, a round-robin arbiter
  (:class:`~.arbiter.RoundRobinOneHot`) over the registered requests of the inputs X-Y routing
  can bring to it (:func:`turn_allowed`: 2 for East/West, 4 for North/South, 5 for Local);
  the winner is popped and
  its input index enters the output's grant stage. The output register then loads the flit from
  that input's LUT RAM (a mux with registered selects). ``valid`` and ``payload`` are that
  register, so they are stable until the transfer (stream rule 2). The flits of one input leave
  in the order they arrived (a head may only go to another output than its predecessor once the
  predecessor has left).

A flit whose route leaves the mesh (an edge port without a neighbour, given ``cfg.mesh_w`` and
``cfg.mesh_h``) is a bug upstream: ``misroute`` rises and an ``Assert`` fires in simulation and
formal verification. Such ports get no output stages (``valid = 0``), so the flit stays at the
head of its FIFO and the barrier flags an overrun rather than losing it silently. A flit that
needs a turn :func:`turn_allowed` does not wire (a U-turn, Y to X: nothing a mesh of X-Y routers
produces) is held the same way with ``misroute`` high (no ``Assert``: the accounting proof
feeds any flit to any input and shows such flits stay counted); other inputs keep flowing.
"""

from __future__ import annotations

import enum
import functools
import operator

from amaranth.hdl import Assert, Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.layouts import FlitKind, flit_layout

from .arbiter import RoundRobinOneHot

__all__ = ["HOST_KINDS", "PORT_NAMES", "Port", "Router", "connected_ports", "route_port",
           "turn_allowed"]


class Port(enum.IntEnum):
    """Router port index. ``y`` grows to the South, ``x`` grows to the East."""
    NORTH = 0   # neighbour (x, y - 1)
    EAST = 1    # neighbour (x + 1, y)
    SOUTH = 2   # neighbour (x, y + 1)
    WEST = 3    # neighbour (x - 1, y); the host link at router (0, 0)
    LOCAL = 4   # the tile's core


PORT_NAMES = tuple(p.name.lower() for p in Port)

#: Flit kinds that travel to the host (they leave router (0, 0) by its West port).
HOST_KINDS = (FlitKind.READ_RESP, FlitKind.HOST_OUT)


def route_port(x: int, y: int, dst_x: int, dst_y: int, kind: int) -> Port:
    """Python reference of the routing function of router (x, y) (used by tests and models)."""
    if kind in HOST_KINDS:
        dst_x, dst_y = 0, 0
    if dst_x > x:
        return Port.EAST
    if dst_x < x:
        return Port.WEST
    if dst_y > y:
        return Port.SOUTH
    if dst_y < y:
        return Port.NORTH
    if (x, y) == (0, 0) and kind in HOST_KINDS:
        return Port.WEST
    return Port.LOCAL


def connected_ports(cfg: FabricConfig, x: int, y: int) -> frozenset[Port]:
    """Ports of router (x, y) that have a neighbour, a core or the host behind them."""
    ports = {Port.LOCAL}
    if y > 0:
        ports.add(Port.NORTH)
    if y < cfg.mesh_h - 1:
        ports.add(Port.SOUTH)
    if x < cfg.mesh_w - 1:
        ports.add(Port.EAST)
    if x > 0 or (x, y) == (0, 0):
        ports.add(Port.WEST)
    return frozenset(ports)


#: The port across the router from each side (a flit that keeps its direction leaves there).
_OPPOSITE = {Port.NORTH: Port.SOUTH, Port.SOUTH: Port.NORTH, Port.EAST: Port.WEST,
            Port.WEST: Port.EAST}


def turn_allowed(cfg: FabricConfig, x: int, y: int, i: Port, o: Port) -> bool:
    """Whether router (x, y) forwards flits from input ``i`` to output ``o`` at all.

    Only the turns dimension-ordered routing can take get a path: both ports connected, and

    * Local (the core) to any output, Local included (a flit a tile addresses to itself);
    * East or West (travelling in X) to any output but the one it came in by;
    * North or South (travelling in Y, so already in its column) straight on or to Local only,
      except South to West at (0, 0): host-bound kinds leave there for the host link.

    A flit that would need another turn (a U-turn, Y to X, an input that is tied off) cannot
    come from a mesh of X-Y routers and is handled like a flit routed off the mesh: it stays at
    the head of its FIFO and ``misroute`` rises.
    """
    connected = connected_ports(cfg, x, y)
    if i not in connected or o not in connected:
        return False
    if i == Port.LOCAL:
        return True
    if i in (Port.EAST, Port.WEST):
        return o != i
    return o in (_OPPOSITE[i], Port.LOCAL) or (
        (i, o) == (Port.SOUTH, Port.WEST) and (x, y) == (0, 0))


class Router(wiring.Component):
    """Mesh router of tile (``x``, ``y``).

    Parameters
    ----------
    cfg : FabricConfig
        Flit layout, buffering per input (``router_fifo_depth`` flits, >= 4 for full
        throughput) and mesh size (for the off-mesh check and the outputs that exist).
    x, y : int
        This router's tile coordinates (constants: routing compares against them).
    layout : data.StructLayout, optional
        Flit layout override (default ``flit_layout(cfg)``). It must have the ``dst_x``,
        ``dst_y`` and ``kind`` fields of the flit; formal proofs use a narrow one.

    Interface attributes
    --------------------
    i_north, i_east, i_south, i_west, i_local : In(stream.Signature(flit_layout(cfg)))
        Flits entering the router.
    o_north, o_east, o_south, o_west, o_local : Out(stream.Signature(flit_layout(cfg)))
        Flits leaving the router.
    busy : Out(1)
        Some flit is inside the router (FIFO, grant stage or output register).
    misroute : Out(1)
        Some head is routed to a port with nothing behind it (a bug; also an ``Assert``) or
        needs a turn X-Y routing never makes (a bug upstream); it stays there.

    Raises
    ------
    TypeError
        If ``cfg`` is not a :class:`FabricConfig`.
    ValueError
        If (``x``, ``y``) is outside the ``cfg.mesh_w`` x ``cfg.mesh_h`` mesh.
    """

    def __init__(self, cfg: FabricConfig, x: int, y: int, *, layout=None):
        if not isinstance(cfg, FabricConfig):
            raise TypeError(f"cfg must be a FabricConfig, not {cfg!r}")
        if not (isinstance(x, int) and 0 <= x < cfg.mesh_w):
            raise ValueError(f"router x={x!r} outside the mesh (0..{cfg.mesh_w - 1})")
        if not (isinstance(y, int) and 0 <= y < cfg.mesh_h):
            raise ValueError(f"router y={y!r} outside the mesh (0..{cfg.mesh_h - 1})")
        self._cfg = cfg
        self._x = x
        self._y = y
        self._layout = flit_layout(cfg) if layout is None else layout
        link = stream.Signature(self._layout)
        members = {}
        for name in PORT_NAMES:
            members[f"i_{name}"] = In(link)
        for name in PORT_NAMES:
            members[f"o_{name}"] = Out(link)
        members["busy"] = Out(1)
        members["misroute"] = Out(1)
        super().__init__(members)

    @property
    def cfg(self) -> FabricConfig:
        return self._cfg

    @property
    def x(self) -> int:
        return self._x

    @property
    def y(self) -> int:
        return self._y

    def inputs(self):
        return [getattr(self, f"i_{name}") for name in PORT_NAMES]

    def outputs(self):
        return [getattr(self, f"o_{name}") for name in PORT_NAMES]

    def _route(self, m: Module, flit, name: str) -> Signal:
        """One-hot (over ``Port``) output port wanted by ``flit`` (a flit view), combinational."""
        port = Signal(len(Port), name=name)
        host = (flit.kind == FlitKind.READ_RESP) | (flit.kind == FlitKind.HOST_OUT)
        dst_x = Mux(host, 0, flit.dst_x)
        dst_y = Mux(host, 0, flit.dst_y)
        with m.If(dst_x > self._x):
            m.d.comb += port[Port.EAST].eq(1)
        with m.Elif(dst_x < self._x):
            m.d.comb += port[Port.WEST].eq(1)
        with m.Elif(dst_y > self._y):
            m.d.comb += port[Port.SOUTH].eq(1)
        with m.Elif(dst_y < self._y):
            m.d.comb += port[Port.NORTH].eq(1)
        with m.Elif(host & Const((self._x, self._y) == (0, 0))):
            m.d.comb += port[Port.WEST].eq(1)
        with m.Else():
            m.d.comb += port[Port.LOCAL].eq(1)
        return port

    def elaborate(self, platform):
        m = Module()
        layout = self._layout
        n = len(Port)
        depth = self._cfg.router_fifo_depth
        connected = connected_ports(self._cfg, self._x, self._y)
        outs = [o for o in Port if o in connected]        # outputs that get a register
        # the inputs each output takes flits from (the turns X-Y routing makes)
        sources = {o: [i for i in Port if turn_allowed(self._cfg, self._x, self._y, i, o)]
                   for o in outs}

        # -- per input: LUT-RAM FIFO (async read at its head), occupancy credit, request -------
        # ``want[i]``: one-hot output of the flit at the head of input ``i``'s FIFO (zero when
        # empty), a register. ``req[i]``: ``want[i]`` where it may enter its output register
        # now, also a register: the arbiters see flip-flops only. ``last_out[i]``: one-hot, the
        # output the last flit popped from input ``i`` went to; ``free[i]``: no flit of input
        # ``i`` is in an output register. A head may enter the output register of its
        # predecessor's output at any time (one register, in order), another output's only when
        # ``free``: the flits of one input leave the router in the order they entered it, and
        # at most one output register holds a flit of a given input.
        mem_depth = 1 << max(1, (depth - 1).bit_length())   # pointers wrap; occupancy <= depth
        want, req, occ, ready, accept, last_out = [], [], [], [], [], []
        for i, name in enumerate(PORT_NAMES):
            i_link = self.inputs()[i]
            occ.append(Signal(range(depth + 1), name=f"occ_{name}"))
            ready.append(Signal(init=1, name=f"ready_{name}"))
            acc = Signal(name=f"accept_{name}")
            m.d.comb += [i_link.ready.eq(ready[i]), acc.eq(i_link.valid & ready[i])]
            accept.append(acc)
            want.append(Signal(n, name=f"want_{name}"))
            req.append(Signal(n, name=f"req_{name}"))
            last_out.append(Signal(n, name=f"last_out_{name}"))

        # -- per output: round-robin arbiter, grant stage, output register ----------------------
        # Stage A holds the one-hot grant (which input's last popped flit goes out here); the
        # flit itself stays in that input's LUT RAM, whose slot is not reused while the flit is
        # counted in the input's occupancy. Stage B, the output register, loads it from there
        # (a mux with registered selects), so no arbitration logic reaches the 63 data bits.
        pop = [Signal(name=f"pop_{name}") for name in PORT_NAMES]
        o_src = {o: Signal(n, name=f"o_src_{PORT_NAMES[o]}") for o in outs}
        pops = {i: [] for i in range(n)}
        popvia = {}                                    # (input, output): popped to that output
        popped_flit = [Signal(layout, name=f"popped_{name}") for name in PORT_NAMES]
        for o in outs:
            oname = PORT_NAMES[o]
            o_link = self.outputs()[o]
            srcs = sources[o]
            arbiter = m.submodules[f"arbiter_{oname}"] = RoundRobinOneHot(len(srcs))
            a_valid = Signal(name=f"a_valid_{oname}")
            # the grant stage's and the output register's source, one-hot over ``srcs`` (flip-
            # flops), and the same by input number (``a_src``, ``o_src``: wires)
            a_sel = Signal(len(srcs), name=f"a_sel_{oname}")
            a_src = Signal(n, name=f"a_src_{oname}")
            v = Signal(name=f"o_valid_{oname}")
            src = Signal(len(srcs), name=f"o_sel_{oname}")
            m.d.comb += [a_src.eq(_by_input(a_sel, srcs)), o_src[o].eq(_by_input(src, srcs))]
            payload = Signal(layout, name=f"o_payload_{oname}")
            space = Signal(name=f"space_{oname}")          # stage A can load a grant
            move = Signal(name=f"move_{oname}")            # stage A -> output register
            m.d.comb += [
                arbiter.requests.eq(Cat(req[i][o] for i in srcs)),
                move.eq(a_valid & (~v | o_link.ready)),
                space.eq(~a_valid | ~v | o_link.ready),
                arbiter.advance.eq(space),
                o_link.valid.eq(v),
                o_link.payload.eq(payload),
            ]
            with m.If(space):
                # (``grant.any()`` rather than ``requests.any()``: equal, and ``a_valid`` then
                # matches ``a_sel`` in every state of the arbiter, reachable or not)
                m.d.sync += [a_valid.eq(arbiter.grant.any()), a_sel.eq(arbiter.grant)]
            selected = Signal(layout.size, name=f"select_{oname}")
            m.d.comb += selected.eq(functools.reduce(operator.or_, (
                Mux(a_sel[k], popped_flit[i].as_value(), 0) for k, i in enumerate(srcs))))
            with m.If(move):
                m.d.sync += [v.eq(1), payload.eq(selected), src.eq(a_sel)]
            with m.Elif(o_link.ready):
                m.d.sync += [v.eq(0), src.eq(0)]
            for k, i in enumerate(srcs):
                popvia[i, o] = Signal(name=f"pop_{PORT_NAMES[i]}_to_{oname}")
                m.d.comb += popvia[i, o].eq(arbiter.grant[k] & space)
                pops[i].append(popvia[i, o])
        for o in Port:
            if o not in connected:
                m.d.comb += self.outputs()[o].valid.eq(0)

        for i, name in enumerate(PORT_NAMES):
            i_link = self.inputs()[i]
            m.d.comb += pop[i].eq(_any(pops[i]))
            # occupancy: flits of this input anywhere in the router (FIFO, output register)
            released = Signal(name=f"released_{name}")
            m.d.comb += released.eq(_any(self.outputs()[o].ready & o_src[o][i] for o in outs
                                         if (i, o) in popvia))
            occ_next = Signal(range(depth + 1), name=f"occ_next_{name}")
            m.d.comb += occ_next.eq(occ[i] + accept[i] - released)
            m.d.sync += [occ[i].eq(occ_next), ready[i].eq(occ_next < depth)]
            # flits of this input in output stages (A or the output register): at most two,
            # both of the same output (``last_out``)
            # (``free``: none, as a flip-flop; a head that changes output waits for the cycle
            # after its predecessor left, which keeps the outputs' ``ready`` out of ``req``)
            in_out = Signal(range(3), name=f"in_out_{name}")
            in_out_next = Signal(range(3), name=f"in_out_next_{name}")
            free = Signal(init=1, name=f"free_{name}")
            m.d.comb += in_out_next.eq(in_out + pop[i] - released)
            m.d.sync += [in_out.eq(in_out_next), free.eq(in_out_next == 0)]
            with m.If(pop[i]):
                m.d.sync += last_out[i].eq(want[i])

            # the FIFO: flits and their routes in LUT RAM, written at ``produce``, the head read
            # asynchronously at ``consume``; the route of the entry after the head is read at
            # ``consume + 1`` (a second, 5-bit memory) to refill ``want`` when the head leaves
            route = self._route(m, i_link.payload, f"route_{name}")
            flits = m.submodules[f"flits_{name}"] = Memory(shape=layout.size, depth=mem_depth,
                                                           init=[])
            routes = m.submodules[f"routes_{name}"] = Memory(shape=n, depth=mem_depth, init=[])
            produce = Signal(range(mem_depth), name=f"produce_{name}")
            consume = Signal(range(mem_depth), name=f"consume_{name}")
            level = Signal(range(depth + 1), name=f"level_{name}")
            several = Signal(name=f"several_{name}")          # level >= 2
            w_flit, w_route = flits.write_port(), routes.write_port()
            r_flit = flits.read_port(domain="comb")
            popped_slot = Signal(range(mem_depth), name=f"popped_slot_{name}")
            r_next = routes.read_port(domain="comb")
            m.d.comb += [
                w_flit.addr.eq(produce), w_flit.data.eq(i_link.payload), w_flit.en.eq(accept[i]),
                w_route.addr.eq(produce), w_route.data.eq(route), w_route.en.eq(accept[i]),
                r_flit.addr.eq(popped_slot), popped_flit[i].eq(r_flit.data),
                r_next.addr.eq(consume + 1),
            ]
            level_next = Signal(range(depth + 1), name=f"level_next_{name}")
            m.d.comb += level_next.eq(level + accept[i] - pop[i])
            m.d.sync += [level.eq(level_next), several.eq(level_next >= 2)]
            with m.If(accept[i]):
                m.d.sync += produce.eq(produce + 1)
            with m.If(pop[i]):
                m.d.sync += [consume.eq(consume + 1), popped_slot.eq(consume)]
            # the next head's route: after a pop the entry behind (or the arriving flit, or
            # none); without a pop the same head (or the arriving flit into an empty FIFO)
            hv = Signal(name=f"head_valid_{name}")
            may = Signal(n, name=f"may_{name}")
            m.d.comb += [
                hv.eq(want[i].any()),
                may.eq(last_out[i] | Mux(free, (1 << n) - 1, 0)),
            ]
            # ``req`` is written as "arriving route bit AND a gate, OR the rest" so that the
            # route logic, fed by the input link, meets a single LUT before the flip-flop.
            arriving = Mux(accept[i], route, 0)
            with m.If(pop[i]):
                m.d.sync += want[i].eq(Mux(several, r_next.data, arriving))
            with m.Else():
                m.d.sync += want[i].eq(Mux(hv, want[i], arriving))
            # ``req``, bit by bit, needs only its own output's pop: after a pop through output
            # o the next head may request o (its predecessor's output) and nothing else; a pop
            # through another output o' means ``want`` was o', so ``stay & may`` is 0 at o too.
            # This keeps the OR over the outputs out of the arbiters' request loop.
            for o in Port:
                if (i, o) in popvia:
                    via = popvia[i, o]
                    gate = Mux(via, ~several, ~hv & may[o]) & accept[i]
                    rest = Mux(via, several & r_next.data[o], hv & want[i][o] & may[o])
                    m.d.sync += req[i][o].eq((route[o] & gate) | rest)
                else:
                    m.d.sync += req[i][o].eq(0)
            m.d.sync += Assert(~accept[i] | (level < depth),
                               f"router ({self._x},{self._y}): input FIFO {name} overflow")

        m.d.comb += self.busy.eq(_any(count != 0 for count in occ))

        # a head routed off the mesh (a bug upstream: Assert), or needing a turn X-Y routing
        # never makes (cannot come from a mesh of these routers): ``misroute``; it stays there
        off_mesh = Signal()
        m.d.comb += [
            off_mesh.eq(_any(want[i][o] for i in range(n) for o in Port if o not in connected)),
            self.misroute.eq(_any(want[i][o] for i in range(n) for o in Port
                                  if (i, o) not in popvia)),
        ]
        m.d.sync += Assert(~off_mesh, f"router ({self._x},{self._y}): flit routed off the mesh")
        return m


def _by_input(bits, inputs):
    """``bits`` (one per entry of ``inputs``) placed at their input numbers, zero elsewhere."""
    return Cat(bits[inputs.index(i)] if i in inputs else Const(0, 1) for i in Port)


def _any(values):
    values = list(values)
    return Cat(values).any() if values else Const(0, 1)
