"""Fabric top: a W x H mesh of tiles (neuron core + router), the step barrier and the host link.

The only ports are the AXI4-Stream-shaped host port (``s_axis_*`` in, ``m_axis_*`` out, 32-bit)
and a sticky ``overrun`` flag; everything else (configuration, tokens, runs, outputs, counters)
travels in frames (``neuroloom.contract.hostproto``, ``docs/hostlink.md``). ``neuroloom generate``
writes this as Verilog.

:class:`FabricShell` is everything but the cores (mesh, barrier, host link, fabric counters) with
the cores' ports as its own: :class:`Fabric` is a shell plus ``num_cores`` neuron cores, and
``bench/unit_synth.py`` places and routes the shell alone to measure the network, barrier and
host link apart from the cores.

With ``cfg.gals`` (``docs/noc.md``, GALS) every tile (core, router, barrier agent) runs in a
clock domain of its own, ``tile_x_y``, clocked and reset by the ports ``clk_x_y`` / ``rst_x_y``;
the host link, the barrier and the fabric counters stay in ``sync`` (``clk``, ``rst``). The
mesh is a :class:`~.noc.gals_mesh.GalsMesh` and the barrier a :class:`~.gals.GalsBarrier`.
Reset: assert every reset together (for at least three cycles of the slowest clock), release
the tiles' resets, then ``rst`` last.
"""


from amaranth.hdl import Cat, ClockDomain, DomainRenamer, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out, connect

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.layouts import flit_layout

from .barrier import Barrier, popcount
from .core.core import NeuronCore
from .gals import GalsBarrier, TileAgent
from .hostlink import HostLink
from .noc.gals_mesh import GalsMesh, tile_domain
from .noc.mesh import Mesh

__all__ = ["HOST_PORTS", "Fabric", "FabricShell"]


class FabricShell(wiring.Component):
    """Mesh, barrier, host link and fabric counters, with the cores' side as ports.

    Interface attributes
    --------------------
    s_axis_*, m_axis_*, overrun : as :class:`Fabric`
    tile_in : In(flit stream).array(num_cores), core ``k``'s flits into the network
    tile_out : Out(flit stream).array(num_cores), the network's flits to core ``k``
    tile_idle : In(num_cores), core ``k`` is idle (``NeuronCore.idle``: the barrier's ``done``)
    step : Out(16), step_start : Out(1), clear : Out(1), what every core receives, through one
        register per core (:class:`Fabric`: the broadcast from the barrier and the host link
        to the far cores is a net across the die, not the start of a core's logic)

    Timing: every core sees ``step_start`` and ``clear`` a cycle after the barrier and the host
    link drive them, so the barrier ignores ``done`` for two cycles (``Barrier(settle=2)``);
    the cores' ``inject_fire`` / ``eject_fire`` reach the barrier's count through a register
    each (the host link's, beside the barrier, directly), exact by the barrier's rule for late
    ports (``hw/barrier.py``).
    """

    def __init__(self, cfg: FabricConfig, *, step_budget: int = 0):
        if not isinstance(cfg, FabricConfig):
            raise TypeError(f"cfg must be a FabricConfig, not {cfg!r}")
        self._cfg = cfg
        self._budget = step_budget
        link = stream.Signature(flit_layout(cfg))
        n = cfg.num_cores
        members = {
            "s_axis_tdata": In(32), "s_axis_tvalid": In(1), "s_axis_tready": Out(1),
            "s_axis_tlast": In(1), "m_axis_tdata": Out(32), "m_axis_tvalid": Out(1),
            "m_axis_tready": In(1), "m_axis_tlast": Out(1), "overrun": Out(1),
            "tile_in": In(link).array(n),
            "tile_out": Out(link).array(n),
            "tile_idle": In(n),
            "step": Out(16),
            "step_start": Out(1),
            "clear": Out(1),
        }
        super().__init__(members)

    @property
    def cfg(self) -> FabricConfig:
        return self._cfg

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        C = cfg.num_cores
        m.submodules.mesh = mesh = Mesh(cfg)
        m.submodules.barrier = barrier = Barrier(C, C + 1, settle=2)
        m.submodules.link = link = HostLink(cfg)
        for i in range(C):
            connect(m, core=wiring.flipped(self.tile_in[i]), mesh=mesh.tile_in[i])
            connect(m, mesh=mesh.tile_out[i], core=wiring.flipped(self.tile_out[i]))
        connect(m, link=link.o_flit, mesh=mesh.host_in)
        connect(m, mesh=mesh.host_out, link=link.i_flit)
        m.d.comb += [self.step.eq(barrier.step[:16]), self.step_start.eq(barrier.step_start),
                     self.clear.eq(link.clear)]

        all_idle = self.tile_idle.all()
        # the cores' handshake pulses, a cycle late: from each tile to the barrier a register
        # to register net (the host link's port sits beside the barrier)
        inject_q, eject_q = Signal(C, name="core_inject_q"), Signal(C, name="core_eject_q")
        m.d.sync += [inject_q.eq(mesh.inject_fire[:C]), eject_q.eq(mesh.eject_fire[:C])]
        m.d.comb += [
            barrier.done.eq(self.tile_idle),
            barrier.inject_fire.eq(Cat(inject_q, mesh.inject_fire[C])),
            barrier.eject_fire.eq(Cat(eject_q, mesh.eject_fire[C])),
            barrier.start.eq(link.run_start),
            barrier.steps.eq(link.run_steps),
            barrier.budget.eq(self._budget),
            barrier.clear.eq(link.clear),
            link.running.eq(barrier.running),
            link.step.eq(barrier.step),
            link.cores_idle.eq(all_idle),
            link.quiet.eq(all_idle & (barrier.in_flight == 0)),
            link.overrun.eq(barrier.overrun),
            self.overrun.eq(barrier.overrun),
        ]

        # AXI4-Stream naming at the top level
        m.d.comb += _axi_names(self, link)

        # fabric counters (COUNTERS command): cycles, steps, barrier wait cycles (running, every
        # core done, flits still in flight), flits injected, flits ejected, overrun flag
        cycles, wait, injected, ejected = (Signal(32, name=n) for n in
                                           ("cycles", "barrier_wait", "flits_in", "flits_out"))
        n_in = popcount(m, mesh.inject_fire, "n_inject")
        n_out = popcount(m, mesh.eject_fire, "n_eject")
        with m.If(link.clear):
            m.d.sync += [cycles.eq(0), wait.eq(0), injected.eq(0), ejected.eq(0)]
        with m.Else():
            m.d.sync += [cycles.eq(cycles + 1), injected.eq(injected + n_in),
                         ejected.eq(ejected + n_out)]
            with m.If(barrier.running & all_idle & (barrier.in_flight != 0)):
                m.d.sync += wait.eq(wait + 1)
        for i, v in enumerate([cycles, barrier.step, wait, injected, ejected, barrier.overrun]):
            m.d.comb += link.counters[i].eq(v)
        return m


def _axi_names(top, link) -> list:
    """The host link's streams as the top level's AXI4-Stream ports (HOST_PORTS)."""
    return [
        link.s_axis.valid.eq(top.s_axis_tvalid),
        link.s_axis.payload.data.eq(top.s_axis_tdata),
        link.s_axis.payload.last.eq(top.s_axis_tlast),
        top.s_axis_tready.eq(link.s_axis.ready),
        top.m_axis_tvalid.eq(link.m_axis.valid),
        top.m_axis_tdata.eq(link.m_axis.payload.data),
        top.m_axis_tlast.eq(link.m_axis.payload.last),
        link.m_axis.ready.eq(top.m_axis_tready),
    ]


#: the fabric's host-side ports (AXI4-Stream in and out, the barrier's overrun flag); a GALS
#: fabric adds a clock and a reset per tile
HOST_PORTS = {
    "s_axis_tdata": In(32), "s_axis_tvalid": In(1), "s_axis_tready": Out(1),
    "s_axis_tlast": In(1), "m_axis_tdata": Out(32), "m_axis_tvalid": Out(1),
    "m_axis_tready": In(1), "m_axis_tlast": Out(1), "overrun": Out(1),
}


class Fabric(wiring.Component):
    """A complete NeuroLoom fabric.

    Parameters
    ----------
    cfg : FabricConfig
    step_budget : int
        Cycles per step before ``overrun`` rises (0: no limit).
    monitor : bool
        GALS only, for testbenches: add ``mon_step_done`` (the barrier's ``step_done``, in
        ``sync``) and ``mon_busy`` (some router or CDC FIFO holds a flit or some core is not
        idle: a mix of every domain, never for logic).

    Interface attributes
    --------------------
    s_axis_tdata, s_axis_tvalid, s_axis_tready, s_axis_tlast : command words from the host
    m_axis_tdata, m_axis_tvalid, m_axis_tready, m_axis_tlast : response words to the host
    overrun : Out(1), some step exceeded its cycle budget (sticky until the next run)
    clk_x_y, rst_x_y : In(1), GALS only: clock and reset of tile (x, y)
    """

    def __init__(self, cfg: FabricConfig, *, step_budget: int = 0, monitor: bool = False):
        if not isinstance(cfg, FabricConfig):
            raise TypeError(f"cfg must be a FabricConfig, not {cfg!r}")
        if monitor and not cfg.gals:
            raise ValueError("Fabric monitor=True needs a GALS fabric (cfg.gals)")
        self._cfg = cfg
        self._budget = step_budget
        self._monitor = monitor
        members = dict(HOST_PORTS)
        if cfg.gals:
            for k in range(cfg.num_cores):
                x, y = cfg.core_xy(k)
                members[f"clk_{x}_{y}"] = In(1)
                members[f"rst_{x}_{y}"] = In(1)
        if monitor:
            members |= {"mon_step_done": Out(1), "mon_busy": Out(1)}
        super().__init__(members)

    @property
    def cfg(self) -> FabricConfig:
        return self._cfg

    def elaborate(self, platform):
        if self._cfg.gals:
            return self._elaborate_gals()
        m = Module()
        cfg = self._cfg
        m.submodules.shell = shell = FabricShell(cfg, step_budget=self._budget)
        cores = []
        for i in range(cfg.num_cores):
            x, y = cfg.core_xy(i)
            core = NeuronCore(cfg, x, y)
            m.submodules[f"core_{x}_{y}"] = core
            cores.append(core)
            connect(m, core=core.o_flit, shell=shell.tile_in[i])
            connect(m, shell=shell.tile_out[i], core=core.i_flit)
            # the broadcast through a register per core (FabricShell: the barrier settles 2)
            step = Signal(16, name=f"step_{x}_{y}")
            start, clear = Signal(name=f"step_start_{x}_{y}"), Signal(name=f"clear_{x}_{y}")
            m.d.sync += [step.eq(shell.step), start.eq(shell.step_start),
                         clear.eq(shell.clear)]
            m.d.comb += [core.step.eq(step), core.step_start.eq(start), core.clear.eq(clear)]
        m.d.comb += shell.tile_idle.eq(Cat(core.idle for core in cores))
        for name in ("s_axis_tdata", "s_axis_tvalid", "s_axis_tlast", "m_axis_tready"):
            m.d.comb += getattr(shell, name).eq(getattr(self, name))
        for name in ("s_axis_tready", "m_axis_tdata", "m_axis_tvalid", "m_axis_tlast",
                     "overrun"):
            m.d.comb += getattr(self, name).eq(getattr(shell, name))
        return m

    def _elaborate_gals(self):
        m = Module()
        cfg = self._cfg
        n = cfg.num_cores
        m.submodules.mesh = mesh = GalsMesh(cfg)
        m.submodules.barrier = barrier = GalsBarrier(n)
        m.submodules.link = link = HostLink(cfg)
        cores = []
        for k in range(n):
            x, y = cfg.core_xy(k)
            dom = tile_domain(x, y)
            cd = ClockDomain(dom)
            m.domains += cd
            m.d.comb += [cd.clk.eq(getattr(self, f"clk_{x}_{y}")),
                         cd.rst.eq(getattr(self, f"rst_{x}_{y}"))]
            core = NeuronCore(cfg, x, y)
            agent = TileAgent()
            m.submodules[f"core_{x}_{y}"] = DomainRenamer(dom)(core)
            m.submodules[f"agent_{x}_{y}"] = DomainRenamer(dom)(agent)
            cores.append(core)
            connect(m, core=core.o_flit, mesh=mesh.tile_in[k])
            connect(m, mesh=mesh.tile_out[k], core=core.i_flit)
            m.d.comb += [
                core.step.eq(agent.step), core.step_start.eq(agent.step_start),
                core.clear.eq(agent.clear),
                agent.core_idle.eq(core.idle), agent.inject.eq(mesh.inject_fire[k]),
                agent.eject.eq(mesh.eject_fire[k]),
                agent.req.eq(barrier.req), agent.cmd.eq(barrier.cmd),
                agent.cmd_step.eq(barrier.cmd_step[:16]),
                barrier.ack[k].eq(agent.ack), barrier.quiet_in[k].eq(agent.quiet),
                barrier.sent[k].eq(agent.sent), barrier.recv[k].eq(agent.recv),
            ]
        connect(m, link=link.o_flit, mesh=mesh.host_in)
        connect(m, mesh=mesh.host_out, link=link.i_flit)
        m.d.comb += [
            barrier.host_inject.eq(mesh.inject_fire[n]),
            barrier.host_eject.eq(mesh.eject_fire[n]),
            barrier.start.eq(link.run_start), barrier.steps.eq(link.run_steps),
            barrier.budget.eq(self._budget), barrier.clear.eq(link.clear),
            link.running.eq(barrier.running), link.step.eq(barrier.step),
            link.cores_idle.eq(barrier.quiet), link.quiet.eq(barrier.quiet),
            link.overrun.eq(barrier.overrun), self.overrun.eq(barrier.overrun),
            *_axi_names(self, link),
        ]
        # fabric counters: cycles of ``clk``, steps, barrier wait (running with flits reported
        # in flight), flits injected / ejected as of the last barrier round, overrun
        cycles, wait = Signal(32, name="cycles"), Signal(32, name="barrier_wait")
        with m.If(link.clear):
            m.d.sync += [cycles.eq(0), wait.eq(0)]
        with m.Else():
            m.d.sync += cycles.eq(cycles + 1)
            with m.If(barrier.running & (barrier.in_flight != 0)):
                m.d.sync += wait.eq(wait + 1)
        for i, v in enumerate([cycles, barrier.step, wait, barrier.injected, barrier.ejected,
                               barrier.overrun]):
            m.d.comb += link.counters[i].eq(v)
        if self._monitor:
            m.d.comb += [self.mon_step_done.eq(barrier.step_done),
                         self.mon_busy.eq(mesh.busy | ~Cat(c.idle for c in cores).all())]
        return m
