"""Formal proof (yowasp-sby, ``multiclock on``) that the GALS barrier's cross-domain handshake
never ends a step early: :class:`GalsBarrier` with two :class:`TileAgent` s, each agent in a
clock domain of its own, the barrier in a third.

Model. The barrier clock and the two tile clocks toggle every ``hb`` / ``h0`` / ``h1`` solver
steps (a ``$global_clock`` module, each from a free initial phase), so a proof fixes the ratios
of the clocks while their phases run through every alignment. The synchronizers of ``req`` and
``ack`` model uncertain capture and metastable fan-out (``hw/gals.py``, ``_synchronize``). The
host starts runs of a free number of steps at free times. Each tile has an abstract core and
the network is abstract, keeping the accounting rules the barrier relies on:

* a core gets work only from its ``step_start`` (a free amount, maybe none) or from a flit it
  takes out of the network (a free amount); it is idle iff it has no work left; it finishes
  work at free times;
* a core puts a flit into the network (``inject``) only while it has work, addressed to a free
  tile, and only while fewer than ``CAPACITY`` flits for that tile are inside; a tile takes a
  flit out (``eject``) at a free time while one for it is inside. Flits inside are counted per
  destination from both sides (``injected - ejected``), so no flit is lost or created, and a flit
  may stay inside for any time (any latency, any clock-domain crossing).

Property: whenever ``step_done`` is high, no flit is inside the network, every core is idle and
every tile has received exactly one ``step_start`` per step begun (so each tile started the step
that ends). Bounded from the initial (reset) state; the counter widths are small (flit counts 3
bits, at most 2 flits per destination inside: the counts cannot wrap past a balance).

Injected faults, each of which the proof must catch: the barrier ends a step on quiet reports
ignoring the counts (``ignore_counts``), takes a round as complete when any tile answered
(``any_ack``), and the agents' ``req`` synchronizer has one flip-flop (its loads may then
disagree: a tile starts a step twice).
"""


import pytest
from amaranth.hdl import (
    Array,
    Assert,
    ClockDomain,
    ClockSignal,
    DomainRenamer,
    Elaboratable,
    Instance,
    Module,
    Signal,
)

from neuroloom.hw.gals import GalsBarrier, TileAgent
from neuroloom.sim import formal

TILES = 2
COUNT_BITS = 3
STEP_BITS = 3
CAPACITY = 2             # flits for one tile inside the network at most
WORK_BITS = 2

#: the barrier clock and the tile clocks, toggled every HB / H0 / H1 solver steps
CLOCKS_V = """\
module gals_clocks(output reg clk_b, output reg clk_0, output reg clk_1);
  parameter HB = 1;
  parameter H0 = 1;
  parameter H1 = 1;
  reg [3:0] cb, c0, c1;
  always @($global_clock) begin
    if (cb >= HB - 1) begin cb <= 0; clk_b <= !clk_b; end else cb <= cb + 1;
    if (c0 >= H0 - 1) begin c0 <= 0; clk_0 <= !clk_0; end else c0 <= c0 + 1;
    if (c1 >= H1 - 1) begin c1 <= 0; clk_1 <= !clk_1; end else c1 <= c1 + 1;
  end
endmodule
"""


class BarrierWorld(Elaboratable):
    """Barrier + agents + abstract cores and network, with the property (module docstring)."""

    def __init__(self, half_periods, *, barrier_fault=None, sync_stages=2, reach=None):
        self.half_periods = half_periods
        self.reach = reach
        self.barrier = GalsBarrier(TILES, step_bits=STEP_BITS, count_bits=COUNT_BITS,
                                   fault=barrier_fault)
        self.agents = [TileAgent(count_bits=COUNT_BITS, sync_stages=sync_stages)
                       for _ in range(TILES)]
        # free inputs
        self.start = Signal()
        self.steps = Signal(STEP_BITS)
        self.work = [Signal(WORK_BITS, name=f"work_new{i}") for i in range(TILES)]
        self.finish = [Signal(name=f"finish{i}") for i in range(TILES)]
        self.send = [Signal(name=f"send{i}") for i in range(TILES)]
        self.dest = [Signal(range(TILES), name=f"dest{i}") for i in range(TILES)]
        self.take = [Signal(name=f"take{i}") for i in range(TILES)]

    def free_inputs(self):
        return [self.start, self.steps, *self.work, *self.finish, *self.send, *self.dest,
                *self.take]

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain("sync", reset_less=True)
        b = self.barrier
        m.submodules.barrier = b
        clks = [Signal(name=f"clk_{k}") for k in ("b", "0", "1")]
        m.submodules.clocks = Instance("gals_clocks", p_HB=self.half_periods[0],
                                       p_H0=self.half_periods[1], p_H1=self.half_periods[2],
                                       o_clk_b=clks[0], o_clk_0=clks[1], o_clk_1=clks[2])
        m.d.comb += ClockSignal("sync").eq(clks[0])
        m.d.comb += [b.start.eq(self.start), b.steps.eq(self.steps), b.budget.eq(0),
                     b.hold.eq(0), b.clear.eq(0), b.abort.eq(0),
                     b.host_inject.eq(0), b.host_eject.eq(0)]

        # injected[i][j]: flits tile i put in for tile j (domain of i); ejected[j] (domain of j)
        injected = [[Signal(COUNT_BITS, name=f"injected_{i}_{j}") for j in range(TILES)]
                    for i in range(TILES)]
        ejected = [Signal(COUNT_BITS, name=f"ejected_{j}") for j in range(TILES)]
        inside = []
        for j in range(TILES):
            v = Signal(COUNT_BITS, name=f"inside_{j}")
            m.d.comb += v.eq(sum(injected[i][j] for i in range(TILES)) - ejected[j])
            inside.append(v)

        work = []
        starts = []
        for i, a in enumerate(self.agents):
            dom = f"t{i}"
            m.domains += ClockDomain(dom, reset_less=True)
            m.d.comb += ClockSignal(dom).eq(clks[1 + i])
            m.submodules[f"agent{i}"] = DomainRenamer(dom)(a)
            m.d.comb += [a.req.eq(b.req), a.cmd.eq(b.cmd), a.cmd_step.eq(b.cmd_step),
                         b.ack[i].eq(a.ack), b.quiet_in[i].eq(a.quiet),
                         b.sent[i].eq(a.sent), b.recv[i].eq(a.recv)]
            w = Signal(WORK_BITS, name=f"work{i}")
            n_starts = Signal(STEP_BITS, name=f"starts{i}")
            work.append(w)
            starts.append(n_starts)
            inject = Signal(name=f"inject{i}")
            eject = Signal(name=f"eject{i}")
            room = Signal(name=f"room{i}")
            m.d.comb += [
                room.eq(Array(inside)[self.dest[i]] < CAPACITY),
                inject.eq(self.send[i] & (w != 0) & room),
                eject.eq(self.take[i] & (inside[i] != 0)),
                a.inject.eq(inject), a.eject.eq(eject), a.core_idle.eq(w == 0),
            ]
            with m.If(inject):
                for j in range(TILES):
                    with m.If(self.dest[i] == j):
                        m.d[dom] += injected[i][j].eq(injected[i][j] + 1)
            with m.If(eject):
                m.d[dom] += ejected[i].eq(ejected[i] + 1)
            # the core: work from step_start or a taken flit; finishes at free times
            with m.If(a.step_start):
                m.d[dom] += [w.eq(self.work[i]), n_starts.eq(n_starts + 1)]
            with m.Elif(eject):
                m.d[dom] += w.eq(self.work[i])
            with m.Elif((w != 0) & self.finish[i]):
                m.d[dom] += w.eq(w - 1)

        ok = Signal()
        m.d.comb += ok.eq((inside[0] == 0) & (inside[1] == 0) & (work[0] == 0) &
                          (work[1] == 0) & (starts[0] == b.step) & (starts[1] == b.step))
        if self.reach is None:
            m.d.comb += Assert(~b.step_done | ok, "a step ended early")
        else:
            # reachability: claim that fewer than ``reach`` steps end with a flit having
            # crossed; the bounded check must refute it (the bound is deep enough)
            # one tile sent the other a flit (delivered when the step ends: nothing is inside)
            crossed = Signal()
            m.d.comb += crossed.eq((injected[0][1] != 0) | (injected[1][0] != 0))
            m.d.comb += Assert(~(b.step_done & crossed & (b.step >= self.reach)),
                               "reachable")
        self.ok = ok
        return m


def prove_world(name, world, *, depth, mode="bmc"):
    return formal.prove(name, world, ports=world.free_inputs(), mode=mode, depth=depth,
                        solver="yices", verilog=CLOCKS_V, timeout=3600)


def counterexample(name, world, *, depth):
    """The failing assertion's report line of a proof that must fail (``None`` if it passed)."""
    try:
        prove_world(name, world, depth=depth)
    except formal.ProofFailed as e:
        text = str(e)
        assert "Assert failed" in text, f"{name}: sby failed without a counterexample\n{text}"
        return next(line for line in text.splitlines() if "failed assertion" in line)
    return None


def _label(half_periods):
    return "_".join(map(str, half_periods))


#: (barrier, tile 0, tile 1) half periods in solver steps. The default suite: every clock at the
#: same frequency, phases free (in phase or opposite); a step can end after a flit crossed
#: domains from solver step 37 on (``test_bound_reaches_a_step_end``)
FAST = (1, 1, 1)
FAST_DEPTH = 40
#: ``-m slow``: tile 0 at the barrier's frequency and tile 1 at half of it (first step end with a
#: crossed flit: solver step 59), and tile 0 at twice, tile 1 at two thirds of the barrier's
#: frequency (co-prime half periods; step 89: the depth covers that first step end, the solver
#: needs more than 5 minutes for step 91 alone)
RATIOS = {(1, 1, 2): 64, (2, 1, 3): 91}


def test_barrier_never_ends_early():
    prove_world(f"gals_barrier_{_label(FAST)}", BarrierWorld(FAST), depth=FAST_DEPTH)


def test_proof_catches_any_ack():
    # the barrier takes a round as complete when one tile answered (caught at solver step 15)
    world = BarrierWorld(FAST, barrier_fault="any_ack")
    assert counterexample("gals_fault_any_ack", world, depth=FAST_DEPTH), \
        "the proof passed with the fault any_ack injected"


@pytest.mark.slow
@pytest.mark.parametrize("half_periods", list(RATIOS), ids=_label)
def test_barrier_never_ends_early_ratios(half_periods):
    prove_world(f"gals_barrier_{_label(half_periods)}", BarrierWorld(half_periods),
                depth=RATIOS[half_periods])


@pytest.mark.slow
@pytest.mark.parametrize("half_periods, depth", [(FAST, FAST_DEPTH), *RATIOS.items()],
                         ids=[_label(FAST), *map(_label, RATIOS)])
def test_bound_reaches_a_step_end(half_periods, depth):
    # the bound is deep enough to contain a step that ends after a flit crossed domains
    world = BarrierWorld(half_periods, reach=1)
    assert counterexample(f"gals_reach_{_label(half_periods)}", world, depth=depth), \
        f"no step ends within {depth} solver steps: the bound proves nothing"


#: faults the slow proof (tiles at 1:1 and 1:2) catches, and the solver step of the violation
FAULTS = {"ignore_counts": dict(barrier_fault="ignore_counts"),     # step 59
          "any_ack": dict(barrier_fault="any_ack"),                 # step 15
          "one_sync_stage": dict(sync_stages=1)}                    # step 47: a double START


@pytest.mark.slow
@pytest.mark.parametrize("fault", list(FAULTS))
def test_proof_catches_faults(fault):
    world = BarrierWorld((1, 1, 2), **FAULTS[fault])
    assert counterexample(f"gals_fault_{fault}", world, depth=RATIOS[(1, 1, 2)]), \
        f"the proof passed with the fault {fault} injected"
