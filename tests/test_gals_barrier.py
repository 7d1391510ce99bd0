"""The GALS barrier (:class:`GalsBarrier` + one :class:`TileAgent` per tile, each tile on its own
clock) against a model of cores and network, in amaranth.sim.

Each tile's model core starts working when its agent pulses ``step_start`` (busy for a random
time, sending flits at random moments) and integrates every flit delivered to it (busy for a
few cycles, lowering ``idle`` from the cycle after the delivery as the real core does). Flits
take a random time in the network (up to 120 host cycles). The checker: every step ends (the
barrier's ``step_done``) with no flit in flight and every model core idle with no work left;
every step of a run is started at every tile in order; ``overrun`` and ``step`` behave. Two
injected barrier faults must be caught by the same checker.
"""

import random

import pytest
from amaranth.hdl import ClockDomain, DomainRenamer, Module
from amaranth.sim import Simulator

from neuroloom.hw.gals import GalsBarrier, TileAgent

PERIODS = [7e-9, 9e-9, 11e-9, 13e-9]      # tiles; the barrier's clock is 10 ns


class World:
    """Flits in flight and per-tile work of the model, shared by the testbenches."""

    def __init__(self, n, seed):
        self.rng = random.Random(seed)
        self.n = n
        self.now = 0                        # host cycles
        self.flights = []                   # [deliver_at, dst]
        self.working = [False] * n
        self.starts = [[] for _ in range(n)]
        self.errors = []


def build(n, fault=None):
    m = Module()
    barrier = GalsBarrier(n, fault=fault)
    m.submodules.barrier = barrier
    agents = []
    for i in range(n):
        m.domains += ClockDomain(f"t{i}")
        agent = TileAgent()
        m.submodules[f"agent{i}"] = DomainRenamer(f"t{i}")(agent)
        agents.append(agent)
        m.d.comb += [agent.req.eq(barrier.req), agent.cmd.eq(barrier.cmd),
                     agent.cmd_step.eq(barrier.cmd_step[:16]),
                     barrier.ack[i].eq(agent.ack), barrier.quiet_in[i].eq(agent.quiet),
                     barrier.sent[i].eq(agent.sent), barrier.recv[i].eq(agent.recv)]
    return m, barrier, agents


def run_world(n, seed, fault=None, runs=3, steps=6):
    m, barrier, agents = build(n, fault)
    world = World(n, seed)
    sim = Simulator(m)
    sim.add_clock(10e-9)
    for i in range(n):
        sim.add_clock(PERIODS[i], domain=f"t{i}", phase=PERIODS[i] * (i + 1) / 7)

    def tile(i):
        async def bench(ctx):
            agent = agents[i]
            rng = random.Random(seed * 100 + i)
            work, offset, send_at, integrate = 0, 0, set(), 0
            ctx.set(agent.core_idle, 1)
            async for _ in ctx.tick(f"t{i}"):
                inject = eject = 0
                working_now = work > 0
                if work:
                    if offset in send_at:
                        inject = 1
                        world.flights.append([world.now + rng.randrange(1, 120),
                                              rng.randrange(n)])
                    offset, work = offset + 1, work - 1
                for f in world.flights:
                    if f[1] == i and f[0] <= world.now:
                        world.flights.remove(f)
                        eject = 1
                        break
                # idle falls the cycle after a delivery or a step_start, as in the real core
                ctx.set(agent.core_idle, 0 if working_now or integrate else 1)
                ctx.set(agent.inject, inject)
                ctx.set(agent.eject, eject)
                integrate = 3 if eject else max(0, integrate - 1)
                if ctx.get(agent.step_start):
                    world.starts[i].append(ctx.get(agent.step))
                    work = rng.choice([0, rng.randrange(1, 40), rng.randrange(1, 40)])
                    offset = 0
                    send_at = {rng.randrange(work) for _ in range(rng.randrange(4))} if work \
                        else set()
                world.working[i] = bool(work or integrate)
        return bench

    async def host(ctx):
        ran = 0
        async for _ in ctx.tick():
            world.now += 1
            if ctx.get(barrier.step_done):
                busy = [i for i in range(n) if world.working[i]]
                if world.flights or busy:
                    world.errors.append((world.now, len(world.flights), busy))
            if world.now % 40 == 0 and not ctx.get(barrier.running) and ran < runs:
                if ctx.get(barrier.quiet):
                    ctx.set(barrier.steps, steps)
                    ctx.set(barrier.start, 1)
                    ran += 1
                    continue
            ctx.set(barrier.start, 0)
            if ran == runs and not ctx.get(barrier.running) and ctx.get(barrier.quiet):
                world.final_step = ctx.get(barrier.step)
                return
            if world.now > 20_000:
                return

    for i in range(n):
        sim.add_testbench(tile(i), background=True)
    sim.add_testbench(host)
    sim.run()
    return world


@pytest.mark.parametrize("seed", [1, 2])
def test_gals_barrier_ends_steps_only_when_quiet(seed):
    world = run_world(4, seed)
    assert not world.errors, f"steps ended with flits in flight / cores busy: {world.errors[:3]}"
    assert getattr(world, "final_step", None) == 18, "three runs of 6 steps did not finish"
    for i, starts in enumerate(world.starts):
        assert starts == list(range(18)), f"tile {i} started steps {starts}"


@pytest.mark.parametrize("fault", ["ignore_counts", "any_ack"])
def test_gals_barrier_faults_are_caught(fault):
    caught = []
    for seed in (1, 2, 3):
        world = run_world(4, seed, fault=fault)
        starts_ok = all(s == list(range(18)) for s in world.starts)
        if world.errors or not starts_ok:
            caught.append(seed)
            break
    assert caught, f"the checker passed a barrier with the fault {fault!r}"
