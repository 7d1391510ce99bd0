"""Flat-port top level of a :class:`Mesh` plus a :class:`~hw.barrier.Barrier`, for Verilog tests.

Verilator/cocotb testbenches and benchmarks drive this wrapper: every stream port becomes
plain signals with readable names, flits are packed 64-bit words (``flit_layout(cfg)``):

==========================================  =====  ===========================================
``tile{k}_in_valid`` / ``_ready`` / ``_data``  in   core ``k`` -> network (``Mesh.tile_in[k]``)
``tile{k}_out_valid`` / ``_ready`` / ``_data`` out  network -> core ``k`` (``Mesh.tile_out[k]``)
``tile{k}_done``                                in   core ``k`` done (``Barrier.done``)
``host_in_*`` / ``host_out_*``                  both the host link, West of router (0, 0)
``tiles_in_ready``, ``tiles_out_valid``         out  the per-tile ready / valid bits as vectors
``start steps budget hold clear abort``         in   barrier control
``running step step_start step_done overrun``   out  barrier status
``in_flight step_cycles idle misroute``         out  accounting and error flags
==========================================  =====  ===========================================

(Directions as seen from the wrapper's ports; the ``_ready`` of an ``in`` stream is an output.)
The mesh's injection/ejection handshakes feed the barrier's counters directly.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Elaboratable, Module, Signal

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.layouts import flit_layout
from neuroloom.hw.barrier import Barrier
from neuroloom.hw.verilog import to_verilog

from .mesh import Mesh

__all__ = ["NocHarness", "noc_harness_verilog"]


class NocHarness(Elaboratable):
    """Mesh + barrier with flat, named ports (see the module docstring); ``ports()`` lists them.

    Parameters
    ----------
    cfg : FabricConfig
        The fabric whose network is wrapped.
    """

    def __init__(self, cfg: FabricConfig):
        if not isinstance(cfg, FabricConfig):
            raise TypeError(f"cfg must be a FabricConfig, not {cfg!r}")
        self._cfg = cfg
        self.mesh = Mesh(cfg)
        self.barrier = Barrier(cfg.num_cores)
        width = flit_layout(cfg).size
        self._inputs, self._outputs = [], []

        def add(name, shape, direction):
            sig = Signal(shape, name=name)
            (self._inputs if direction == "in" else self._outputs).append(sig)
            setattr(self, name, sig)
            return sig

        names = [f"tile{k}" for k in range(cfg.num_cores)] + ["host"]
        for prefix in names:
            add(f"{prefix}_in_valid", 1, "in")
            add(f"{prefix}_in_data", width, "in")
            add(f"{prefix}_in_ready", 1, "out")
            add(f"{prefix}_out_ready", 1, "in")
            add(f"{prefix}_out_valid", 1, "out")
            add(f"{prefix}_out_data", width, "out")
        for k in range(cfg.num_cores):
            add(f"tile{k}_done", 1, "in")
        add("tiles_in_ready", cfg.num_cores, "out")
        add("tiles_out_valid", cfg.num_cores, "out")
        b = self.barrier
        for name in ("start", "steps", "budget", "hold", "clear", "abort"):
            add(name, getattr(b, name).shape(), "in")
        for name in ("running", "step", "step_start", "step_done", "overrun", "in_flight",
                     "step_cycles"):
            add(name, getattr(b, name).shape(), "out")
        add("idle", 1, "out")
        add("misroute", 1, "out")

    @property
    def cfg(self) -> FabricConfig:
        return self._cfg

    def ports(self) -> list[Signal]:
        return self._inputs + self._outputs

    def elaborate(self, platform):
        m = Module()
        m.submodules.mesh = mesh = self.mesh
        m.submodules.barrier = barrier = self.barrier
        n = self._cfg.num_cores
        links_in = [*mesh.tile_in, mesh.host_in]
        links_out = [*mesh.tile_out, mesh.host_out]
        names = [f"tile{k}" for k in range(n)] + ["host"]
        for prefix, i_link, o_link in zip(names, links_in, links_out):
            m.d.comb += [
                i_link.valid.eq(getattr(self, f"{prefix}_in_valid")),
                i_link.payload.eq(getattr(self, f"{prefix}_in_data")),
                getattr(self, f"{prefix}_in_ready").eq(i_link.ready),
                o_link.ready.eq(getattr(self, f"{prefix}_out_ready")),
                getattr(self, f"{prefix}_out_valid").eq(o_link.valid),
                getattr(self, f"{prefix}_out_data").eq(o_link.payload),
            ]
        m.d.comb += [
            self.tiles_in_ready.eq(Cat(link.ready for link in mesh.tile_in)),
            self.tiles_out_valid.eq(Cat(link.valid for link in mesh.tile_out)),
            barrier.done.eq(Cat(getattr(self, f"tile{k}_done") for k in range(n))),
            barrier.inject_fire.eq(mesh.inject_fire),
            barrier.eject_fire.eq(mesh.eject_fire),
            self.idle.eq(mesh.idle),
            self.misroute.eq(mesh.misroute),
        ]
        for name in ("start", "steps", "budget", "hold", "clear", "abort"):
            m.d.comb += getattr(barrier, name).eq(getattr(self, name))
        for name in ("running", "step", "step_start", "step_done", "overrun", "in_flight",
                     "step_cycles"):
            m.d.comb += getattr(self, name).eq(getattr(barrier, name))
        return m


def noc_harness_verilog(cfg: FabricConfig, name: str = "noc_harness") -> str:
    """Verilog text of :class:`NocHarness` for ``cfg`` (top module ``name``)."""
    top = NocHarness(cfg)
    return to_verilog(top, name, ports=top.ports())
