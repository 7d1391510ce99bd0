"""W x H mesh of :class:`~hw.noc.router.Router` s, with per-tile core ports and the host port.

Tile (x, y) holds core ``y * mesh_w + x`` (``cfg.core_index``). Router (x, y)'s East port links to
router (x + 1, y)'s West port and its South port to router (x, y + 1)'s North port; every link is
a direct ``stream`` connection from one router's output register to the next one's input (three
cycles per hop: FIFO head, grant stage, output register).

The host link attaches to the West port of router (0, 0): ``host_in`` feeds its West input and
``host_out`` drains its West output. The other edge ports are tied off: their inputs never carry a
flit (``valid = 0``) and their outputs never accept one (``ready = 0``), so a flit that the
routing function sends off the mesh stays visible at the head of its FIFO (and the router's
``Assert`` fires in simulation) instead of vanishing.

Accounting for the barrier: ``inject_fire[k]`` / ``eject_fire[k]`` are the handshakes of core
``k``'s ``tile_in`` / ``tile_out`` links in this cycle, index ``num_cores`` is the host link.
Links carry no storage, so the flits in flight are exactly the flits held in routers (FIFOs, grant
stages, output registers): ``sum(inject_fire) - sum(eject_fire)`` accumulated over time equals
the number of flits in the network, and ``idle`` is high when no router holds a flit.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.layouts import flit_layout

from .router import PORT_NAMES, Port, Router

__all__ = ["Mesh"]


class Mesh(wiring.Component):
    """The on-chip network of a ``cfg.mesh_w`` x ``cfg.mesh_h`` fabric.

    Parameters
    ----------
    cfg : FabricConfig
        Mesh size, flit layout and router FIFO depth.

    Interface attributes
    --------------------
    tile_in : In(stream.Signature(flit_layout(cfg))).array(num_cores)
        Flits a core injects into its router's Local input.
    tile_out : Out(stream.Signature(flit_layout(cfg))).array(num_cores)
        Flits delivered to a core by its router's Local output.
    host_in : In(stream.Signature(flit_layout(cfg)))
        Host-injected flits (West input of router (0, 0)).
    host_out : Out(stream.Signature(flit_layout(cfg)))
        Host-bound flits (West output of router (0, 0)).
    inject_fire, eject_fire : Out(num_cores + 1)
        Per-port handshake pulses into / out of the network (bit ``num_cores``: host link).
    idle : Out(1)
        No flit is held in any router (FIFO, grant stage or output register).
    misroute : Out(1)
        Some router holds a flit routed off the mesh (a bug upstream).
    """

    def __init__(self, cfg: FabricConfig):
        if not isinstance(cfg, FabricConfig):
            raise TypeError(f"cfg must be a FabricConfig, not {cfg!r}")
        self._cfg = cfg
        link = stream.Signature(flit_layout(cfg))
        n = cfg.num_cores
        super().__init__({
            "tile_in": In(link).array(n),
            "tile_out": Out(link).array(n),
            "host_in": In(link),
            "host_out": Out(link),
            "inject_fire": Out(n + 1),
            "eject_fire": Out(n + 1),
            "idle": Out(1),
            "misroute": Out(1),
        })

    @property
    def cfg(self) -> FabricConfig:
        return self._cfg

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        w, h = cfg.mesh_w, cfg.mesh_h
        routers = {}
        for y in range(h):
            for x in range(w):
                routers[x, y] = m.submodules[f"router_{x}_{y}"] = Router(cfg, x, y)

        def port(r, direction, p):
            return getattr(r, f"{direction}_{PORT_NAMES[p]}")

        linked = set()   # (x, y, Port) whose input and output are wired
        for (x, y), r in routers.items():
            if x + 1 < w:
                east = routers[x + 1, y]
                wiring.connect(m, eastbound=r.o_east, from_west=east.i_west)
                wiring.connect(m, westbound=east.o_west, from_east=r.i_east)
                linked |= {(x, y, Port.EAST), (x + 1, y, Port.WEST)}
            if y + 1 < h:
                south = routers[x, y + 1]
                wiring.connect(m, southbound=r.o_south, from_north=south.i_north)
                wiring.connect(m, northbound=south.o_north, from_south=r.i_south)
                linked |= {(x, y, Port.SOUTH), (x, y + 1, Port.NORTH)}

        for k in range(cfg.num_cores):
            r = routers[cfg.core_xy(k)]
            wiring.connect(m, core=wiring.flipped(self.tile_in[k]), router=r.i_local)
            wiring.connect(m, router=r.o_local, core=wiring.flipped(self.tile_out[k]))
        host_router = routers[0, 0]
        wiring.connect(m, host=wiring.flipped(self.host_in), router=host_router.i_west)
        wiring.connect(m, router=host_router.o_west, host=wiring.flipped(self.host_out))
        linked.add((0, 0, Port.WEST))

        for (x, y), r in routers.items():
            for p in (Port.NORTH, Port.EAST, Port.SOUTH, Port.WEST):
                if (x, y, p) not in linked:
                    m.d.comb += [
                        port(r, "i", p).valid.eq(0),
                        port(r, "o", p).ready.eq(0),
                    ]

        links_in = [*self.tile_in, self.host_in]
        links_out = [*self.tile_out, self.host_out]
        m.d.comb += [
            self.inject_fire.eq(Cat(s.valid & s.ready for s in links_in)),
            self.eject_fire.eq(Cat(s.valid & s.ready for s in links_out)),
            self.idle.eq(~Cat(r.busy for r in routers.values()).any()),
            self.misroute.eq(Cat(r.misroute for r in routers.values()).any()),
        ]
        return m
