"""Testbench top of a GALS fabric: :class:`~neuroloom.sim.link_harness.LinkHarness` around a
:class:`~neuroloom.hw.fabric.Fabric` built with ``monitor=True``, with every tile's clock and
reset as ports and an in-flight monitor.

Ports: those of :class:`LinkHarness` (in ``sync``: ``clk``, ``rst``), ``clk_x_y`` / ``rst_x_y``
per tile, and the monitor's counters ``mon_steps`` (steps ended so far) and ``mon_errors``
(steps that ended while a router or a CDC FIFO held a flit or a core was not idle, sampled in
the cycle of the barrier's ``step_done``). The monitor reads signals of every domain at once: a
simulation-only check (in a 2-state simulator there is no metastability to fear).
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from neuroloom.contract.config import FabricConfig
from neuroloom.hw.fabric import Fabric

from .link_harness import LinkHarness

__all__ = ["GalsHarness", "tile_clocks"]


def tile_clocks(cfg: FabricConfig) -> list[str]:
    """Names of the tiles' clock ports, ``clk_x_y``, in core order."""
    return [f"clk_{x}_{y}" for x, y in map(cfg.core_xy, range(cfg.num_cores))]


class GalsHarness(wiring.Component):
    """See the module docstring."""

    def __init__(self, cfg: FabricConfig, *, chunk: int = 32):
        if not cfg.gals:
            raise ValueError("GalsHarness needs a GALS fabric (cfg.gals)")
        self.cfg = cfg
        self.fabric = Fabric(cfg, monitor=True)
        self.link = LinkHarness(self.fabric, chunk=chunk)
        members = dict(self.link.signature.members)
        for name in tile_clocks(cfg):
            members[name] = In(1)
            members["rst" + name[3:]] = In(1)
        members |= {"mon_steps": Out(32), "mon_errors": Out(16)}
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = link = self.link
        fabric = self.fabric
        for name, member in self.link.signature.members.items():
            ours, theirs = getattr(self, name), getattr(link, name)
            if member.flow == In:
                m.d.comb += theirs.eq(ours)
            else:
                m.d.comb += ours.eq(theirs)
        for name in tile_clocks(self.cfg):
            rst = "rst" + name[3:]
            m.d.comb += [getattr(fabric, name).eq(getattr(self, name)),
                         getattr(fabric, rst).eq(getattr(self, rst))]
        ended = Signal()
        m.d.comb += ended.eq(fabric.mon_step_done)
        with m.If(ended):
            m.d.sync += self.mon_steps.eq(self.mon_steps + 1)
            with m.If(fabric.mon_busy):
                m.d.sync += self.mon_errors.eq(self.mon_errors + 1)
        return m
