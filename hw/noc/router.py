"""Five-port mesh router: input FIFOs, dimension-ordered (X then Y) routing, round-robin outputs.

One router per tile. Every port is a pair of ``stream.Signature(flit_layout(cfg))`` links
(``i_<port>`` into the router, ``o_<port>`` out of it). Microarchitecture, one cycle per hop:

* **Input FIFO per port** (:class:`amaranth.lib.fifo.SyncFIFO`, first-word-fall-through, depth
  ``cfg.router_fifo_depth``). ``i_<port>.ready`` is "FIFO not full", a function of registers only,
  so no combinational path runs from an ``o_*.ready`` to an ``i_*.ready``: a mesh of routers has
  no combinational loop.
* **Route computation** on each FIFO head (combinational): X first, then Y, then Local. Host-bound
  kinds (``READ_RESP``, ``HOST_OUT``) always travel to tile (0, 0) and leave router (0, 0) by its
  West port, where the host link attaches.
* **Output arbitration**: per output, a round-robin arbiter over the five inputs whose head wants
  that output. The pointer moves past the winner after each transfer, so a waiting input loses
  at most four transfers (one per other input). While ``o.valid & ~o.ready`` the grant is held,
  so ``valid`` and ``payload`` stay stable until the transfer (stream rule 2).

A flit whose route leaves the mesh (an edge port without a neighbour, given ``cfg.mesh_w`` and
``cfg.mesh_h``) is a bug upstream: ``misroute`` rises and an ``Assert`` fires in simulation and
formal verification. The flit is then stuck at the head of its FIFO (the mesh ties unconnected
outputs to ``ready = 0``), so the barrier flags an overrun rather than losing it silently.
"""

from __future__ import annotations

import enum

from amaranth.hdl import Assert, Cat, Const, Module, Mux, Signal
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.layouts import FlitKind, flit_layout

from .arbiter import RoundRobin

__all__ = ["HOST_KINDS", "PORT_NAMES", "Port", "Router", "connected_ports", "route_port"]


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


class Router(wiring.Component):
    """Mesh router of tile (``x``, ``y``).

    Parameters
    ----------
    cfg : FabricConfig
        Flit layout, FIFO depth (``router_fifo_depth``) and mesh size (for the off-mesh check).
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
        Some input FIFO holds a flit.
    misroute : Out(1)
        Some FIFO head is routed to a port with nothing behind it (a bug; also an ``Assert``).

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

    def _route(self, m: Module, head) -> Signal:
        """The output port (a ``Port`` value) wanted by FIFO head ``head`` (a flit view)."""
        port = Signal(range(len(Port)))
        host = (head.kind == FlitKind.READ_RESP) | (head.kind == FlitKind.HOST_OUT)
        dst_x = Mux(host, 0, head.dst_x)
        dst_y = Mux(host, 0, head.dst_y)
        with m.If(dst_x > self._x):
            m.d.comb += port.eq(Port.EAST)
        with m.Elif(dst_x < self._x):
            m.d.comb += port.eq(Port.WEST)
        with m.Elif(dst_y > self._y):
            m.d.comb += port.eq(Port.SOUTH)
        with m.Elif(dst_y < self._y):
            m.d.comb += port.eq(Port.NORTH)
        with m.Elif(host & Const((self._x, self._y) == (0, 0))):
            m.d.comb += port.eq(Port.WEST)
        with m.Else():
            m.d.comb += port.eq(Port.LOCAL)
        return port

    def elaborate(self, platform):
        m = Module()
        layout = self._layout
        n = len(Port)
        connected = connected_ports(self._cfg, self._x, self._y)

        heads, want, routes = [], [], []
        for i, (name, i_link) in enumerate(zip(PORT_NAMES, self.inputs())):
            buf = fifo.SyncFIFO(width=layout.size, depth=self._cfg.router_fifo_depth)
            m.submodules[f"fifo_{name}"] = buf
            m.d.comb += [
                buf.w_data.eq(i_link.payload),
                buf.w_en.eq(i_link.valid),
                i_link.ready.eq(buf.w_rdy),
            ]
            head = layout(buf.r_data)
            heads.append((buf, head))
            routes.append(self._route(m, head))
            want.append(Signal(n, name=f"want_{name}"))   # one-hot: output wanted by the head
            for o in range(n):
                m.d.comb += want[i][o].eq(buf.r_rdy & (routes[i] == o))

        m.d.comb += self.busy.eq(_any(buf.r_rdy for buf, _ in heads))

        bad = Signal()
        m.d.comb += bad.eq(_any(want[i][o] for i in range(n) for o in range(n)
                                if Port(o) not in connected))
        m.d.comb += self.misroute.eq(bad)
        m.d.sync += Assert(~bad, f"router ({self._x},{self._y}): flit routed off the mesh")

        fire = []       # fire[o]: one-hot over inputs, the transfer on output o this cycle
        for o, (oname, o_link) in enumerate(zip(PORT_NAMES, self.outputs())):
            arbiter = m.submodules[f"arbiter_{oname}"] = RoundRobin(n)
            m.d.comb += [
                arbiter.requests.eq(Cat(want[i][o] for i in range(n))),
                arbiter.ready.eq(o_link.ready),
                o_link.valid.eq(arbiter.valid),
            ]
            with m.Switch(arbiter.grant):
                for i in range(n):
                    with m.Case(i):
                        m.d.comb += o_link.payload.eq(heads[i][1])
            fire.append(arbiter.fire)

        for i, (buf, _) in enumerate(heads):
            m.d.comb += buf.r_en.eq(_any(fire[o][i] for o in range(n)))
        return m


def _any(values):
    values = list(values)
    return Cat(values).any() if values else Const(0, 1)
