"""The mesh of a GALS fabric: every router in its tile's clock domain, every link between two
domains through a :class:`~.cdc.CdcLink`.

Router (x, y) runs in clock domain :func:`tile_domain` ``(x, y)`` (``"tile_x_y"``); its core
is in the same domain, so ``tile_in[k]``/``tile_out[k]`` are plain streams of that domain.
Each directed neighbour link (East/West, North/South) is an asynchronous FIFO from the
sender's domain to the receiver's; the host link (``host_in``/``host_out``, in the ``sync``
domain: host link and barrier) reaches the West port of router (0, 0) through two more. Routing,
tie-offs and the host attachment are those of :class:`~.mesh.Mesh`.

Accounting: ``inject_fire[k]`` / ``eject_fire[k]`` are the handshakes of ``tile_in[k]`` /
``tile_out[k]`` **in tile k's domain**; bit ``num_cores`` is the host's, in ``sync``. Flits in
flight are the flits injected and not yet ejected: inside routers or inside CDC FIFOs.
"""

from __future__ import annotations

from amaranth.hdl import Cat, DomainRenamer, Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.layouts import flit_layout

from .cdc import CdcLink
from .router import PORT_NAMES, Port, Router

__all__ = ["CDC_DEPTH", "GalsMesh", "tile_domain"]

#: slots of every CDC FIFO: enough for one flit per cycle across equal clocks (the pointers
#: take 2-3 cycles to cross each way); 8 x 64 bits is 16 LUT-RAM cells (DPR16X4) on ECP5
CDC_DEPTH = 8


def tile_domain(x: int, y: int) -> str:
    """Name of the clock domain of tile (x, y)."""
    return f"tile_{x}_{y}"


class GalsMesh(wiring.Component):
    """The on-chip network of a GALS fabric (see the module docstring).

    Interface attributes
    --------------------
    tile_in, tile_out, host_in, host_out, inject_fire, eject_fire, misroute : as
        :class:`~.mesh.Mesh`, each tile port in its tile's domain, the host's in ``sync``.
    busy : Out(1)
        Some router or CDC FIFO holds a flit. It mixes every domain: for simulation monitors
        only, never for logic.
    """

    def __init__(self, cfg: FabricConfig, *, cdc_depth: int = CDC_DEPTH, host_domain="sync"):
        if not isinstance(cfg, FabricConfig):
            raise TypeError(f"cfg must be a FabricConfig, not {cfg!r}")
        self._cfg = cfg
        self._depth = cdc_depth
        self._host = host_domain
        link = stream.Signature(flit_layout(cfg))
        n = cfg.num_cores
        super().__init__({
            "tile_in": In(link).array(n), "tile_out": Out(link).array(n),
            "host_in": In(link), "host_out": Out(link),
            "inject_fire": Out(n + 1), "eject_fire": Out(n + 1),
            "busy": Out(1), "misroute": Out(1),
        })

    @property
    def cfg(self) -> FabricConfig:
        return self._cfg

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        w, h = cfg.mesh_w, cfg.mesh_h
        layout = flit_layout(cfg)
        routers = {}
        for y in range(h):
            for x in range(w):
                r = Router(cfg, x, y)
                m.submodules[f"router_{x}_{y}"] = DomainRenamer(tile_domain(x, y))(r)
                routers[x, y] = r
        cdcs = []

        def cross(name, src, src_domain, dst, dst_domain):
            cdc = CdcLink(layout, self._depth, w_domain=src_domain, r_domain=dst_domain)
            m.submodules[name] = cdc
            cdcs.append(cdc)
            wiring.connect(m, src=src, cdc=cdc.i)
            wiring.connect(m, cdc=cdc.o, dst=dst)

        linked = set()
        for (x, y), r in routers.items():
            here = tile_domain(x, y)
            if x + 1 < w:
                east, there = routers[x + 1, y], tile_domain(x + 1, y)
                cross(f"cdc_{x}_{y}_east", r.o_east, here, east.i_west, there)
                cross(f"cdc_{x + 1}_{y}_west", east.o_west, there, r.i_east, here)
                linked |= {(x, y, Port.EAST), (x + 1, y, Port.WEST)}
            if y + 1 < h:
                south, there = routers[x, y + 1], tile_domain(x, y + 1)
                cross(f"cdc_{x}_{y}_south", r.o_south, here, south.i_north, there)
                cross(f"cdc_{x}_{y + 1}_north", south.o_north, there, r.i_south, here)
                linked |= {(x, y, Port.SOUTH), (x, y + 1, Port.NORTH)}

        for k in range(cfg.num_cores):
            r = routers[cfg.core_xy(k)]
            wiring.connect(m, core=wiring.flipped(self.tile_in[k]), router=r.i_local)
            wiring.connect(m, router=r.o_local, core=wiring.flipped(self.tile_out[k]))
        host_router = routers[0, 0]
        cross("cdc_host_in", wiring.flipped(self.host_in), self._host, host_router.i_west,
              tile_domain(0, 0))
        cross("cdc_host_out", host_router.o_west, tile_domain(0, 0),
              wiring.flipped(self.host_out), self._host)
        linked.add((0, 0, Port.WEST))

        for (x, y), r in routers.items():
            for p in (Port.NORTH, Port.EAST, Port.SOUTH, Port.WEST):
                if (x, y, p) not in linked:
                    m.d.comb += [getattr(r, f"i_{PORT_NAMES[p]}").valid.eq(0),
                                 getattr(r, f"o_{PORT_NAMES[p]}").ready.eq(0)]

        links_in = [*self.tile_in, self.host_in]
        links_out = [*self.tile_out, self.host_out]
        m.d.comb += [
            self.inject_fire.eq(Cat(s.valid & s.ready for s in links_in)),
            self.eject_fire.eq(Cat(s.valid & s.ready for s in links_out)),
            self.busy.eq(Cat(*(r.busy for r in routers.values()),
                             *(c.holding for c in cdcs)).any()),
            self.misroute.eq(Cat(r.misroute for r in routers.values()).any()),
        ]
        return m
