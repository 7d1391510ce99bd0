# amaranth: UnusedElaboratable=no
"""amaranth.sim tests of :class:`hw.barrier.Barrier` against a cycle-level Python model."""

import random

import pytest
from amaranth.sim import Simulator

from neuroloom.hw.barrier import Barrier


class BarrierModel:
    """The barrier's specification, one call per clock cycle (see ``hw/barrier.py``)."""

    def __init__(self, settle=1):
        self.settle = settle
        self.in_flight = self.step = self.remaining = self.age = self.step_cycles = 0
        self.running = self.step_start = self.step_done = self.overrun = 0

    def outputs(self):
        return dict(running=self.running, step=self.step, step_start=self.step_start,
                    step_done=self.step_done, overrun=self.overrun, in_flight=self.in_flight,
                    step_cycles=self.step_cycles)

    def cycle(self, *, all_done, injected, ejected, hold=0, start=0, steps=0, budget=0,
              clear=0, abort=0):
        nxt = self.in_flight + injected - ejected
        assert nxt >= 0, "model: more ejections than flits in flight"
        finish = (self.running and self.age >= self.settle and all_done and not hold
                  and self.in_flight == 0 and injected == 0)
        self.step_start = self.step_done = 0
        running, age = self.running, self.age
        if running:
            self.age += 1
            if not finish and budget and age + 1 == budget:
                self.overrun = 1
        if abort:
            self.running = 0
        elif finish:
            self.step_done = 1
            self.step += 1
            self.step_cycles = age + 1
            self.remaining -= 1
            self.age = 0
            if self.remaining == 0:
                self.running = 0
            else:
                self.step_start = 1
        elif not running and start:
            self.remaining, self.age, self.overrun = steps, 0, 0
            if steps:
                self.running = self.step_start = 1
        elif not running and clear:
            self.step, self.overrun = 0, 0
        self.in_flight = nxt


def popcount_bits(k, width):
    """A random bit vector of ``width`` bits with ``k`` bits set."""
    return sum(1 << b for b in random.sample(range(width), k))


def run_against_model(dut, stimulus, cycles):
    """Drive ``stimulus(cycle, model) -> inputs`` and compare every output every cycle."""
    model = BarrierModel(settle=dut.settle)
    log = []

    async def testbench(ctx):
        for cycle in range(cycles):
            inputs = stimulus(cycle, model)
            ctx.set(dut.done, inputs.pop("done"))
            ctx.set(dut.inject_fire, inputs.pop("inject_fire", 0))
            ctx.set(dut.eject_fire, inputs.pop("eject_fire", 0))
            for name in ("hold", "start", "steps", "budget", "clear", "abort"):
                ctx.set(getattr(dut, name), inputs.get(name, 0))
            await ctx.tick()
            model.cycle(**inputs_for_model(dut, ctx, inputs))
            got = {name: ctx.get(getattr(dut, name)) for name in model.outputs()}
            assert got == model.outputs(), f"cycle {cycle}: dut {got} != model {model.outputs()}"
            log.append(got)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return log


def inputs_for_model(dut, ctx, inputs):
    return dict(all_done=ctx.get(dut.done) == (1 << dut.cores) - 1,
                injected=bin(ctx.get(dut.inject_fire)).count("1"),
                ejected=bin(ctx.get(dut.eject_fire)).count("1"),
                **inputs)


def test_runs_steps_and_counts():
    dut = Barrier(cores=3)
    busy_until = {}

    def stimulus(cycle, model):
        if model.step_start:
            busy_until[model.step] = cycle + 2 + model.step * 3
        done = 0b111 if cycle >= busy_until.get(model.step, 0) else 0b010
        return dict(done=done, start=int(cycle == 1), steps=4)

    log = run_against_model(dut, stimulus, 60)
    assert sum(c["step_done"] for c in log) == 4
    assert sum(c["step_start"] for c in log) == 4
    assert log[-1]["step"] == 4 and log[-1]["running"] == 0


def test_step_waits_for_flits_in_flight():
    """Core 1 sends its last flit at cycle 5 and is done after it; the flit lands at cycle 20."""
    dut = Barrier(cores=2)

    def stimulus(cycle, model):
        return dict(done=0b11 if cycle > 5 else 0b01, start=int(cycle == 0), steps=1,
                    inject_fire=0b001 if cycle == 5 else 0, eject_fire=0b100 if cycle == 20 else 0)

    log = run_against_model(dut, stimulus, 30)
    done_at = [c for c, o in enumerate(log) if o["step_done"]]
    # log[c] holds the outputs in the cycle after cycle c: step_done follows the eject cycle
    # the ejecting cycle still counts the flit: the step closes one cycle later
    assert done_at == [21], f"step_done at {done_at}, expected two cycles after the last eject"
    assert all(o["in_flight"] == 1 for o in log[5:20])


def test_done_is_ignored_in_the_first_cycle_of_a_step():
    dut = Barrier(cores=1)
    log = run_against_model(dut, lambda c, m: dict(done=1, start=int(c == 0), steps=3), 12)
    starts = [c for c, o in enumerate(log) if o["step_start"]]
    dones = [c for c, o in enumerate(log) if o["step_done"]]
    assert starts == [0, 2, 4] and dones == [2, 4, 6], (starts, dones)
    assert log[-1]["step_cycles"] == 2


def test_settle_2_ignores_done_for_two_cycles():
    """The fabric's barrier (its cores see ``step_start`` through a register)."""
    dut = Barrier(cores=1, settle=2)
    log = run_against_model(dut, lambda c, m: dict(done=1, start=int(c == 0), steps=3), 14)
    starts = [c for c, o in enumerate(log) if o["step_start"]]
    dones = [c for c, o in enumerate(log) if o["step_done"]]
    assert starts == [0, 3, 6] and dones == [3, 6, 9], (starts, dones)
    assert log[-1]["step_cycles"] == 3


def test_hold_overrun_abort_clear():
    dut = Barrier(cores=1)

    def stimulus(cycle, model):
        return dict(done=1, hold=int(cycle < 12 or 20 <= cycle < 40), start=int(cycle in (0, 20)),
                    steps=2, budget=5, abort=int(cycle == 25), clear=int(cycle == 28))

    log = run_against_model(dut, stimulus, 32)
    assert log[10]["overrun"] == 1 and log[10]["running"] == 1
    assert log[12]["step_done"] == 1 and log[12]["step"] == 1
    assert log[20]["overrun"] == 0, "start clears overrun"
    assert log[25]["running"] == 0, "abort stops the run"
    assert log[28]["step"] == 0, "clear resets the step number"


@pytest.mark.parametrize("seed", range(4))
def test_random_against_model(seed):
    rng = random.Random(seed)
    random.seed(seed)
    cores = rng.choice([1, 4, 15])
    dut = Barrier(cores=cores, settle=1 + seed % 2)
    ports = cores + 1
    state = {"pending": 0, "work": [0] * cores}

    def stimulus(cycle, model):
        if model.step_start:
            state["work"] = [rng.choice([0, 0, 1, 3, 10]) for _ in range(cores)]
        inject = 0
        for k in range(cores):
            if state["work"][k] and rng.random() < 0.5:
                state["work"][k] -= 1
                inject |= 1 << k
        if rng.random() < 0.1:
            inject |= 1 << cores                   # host link injects too
        n_inject = bin(inject).count("1")
        n_eject = rng.randint(0, min(state["pending"], ports))
        state["pending"] += n_inject - n_eject
        done = sum(1 << k for k in range(cores) if not state["work"][k])
        if rng.random() < 0.05:
            done &= ~1                             # a core still computing
        return dict(done=done, inject_fire=inject, eject_fire=popcount_bits(n_eject, ports),
                    start=int(rng.random() < 0.1), steps=rng.randint(0, 5),
                    budget=rng.choice([0, 8, 30]), hold=int(rng.random() < 0.05),
                    clear=int(rng.random() < 0.02), abort=int(rng.random() < 0.005))

    log = run_against_model(dut, stimulus, 2000)
    assert sum(o["step_done"] for o in log) > 20


def test_constructor_checks_arguments():
    with pytest.raises(ValueError, match="Barrier cores=0 must be a positive integer"):
        Barrier(cores=0)
    with pytest.raises(ValueError, match="Barrier count_bits=1 must be an integer >= 2"):
        Barrier(cores=2, count_bits=1)
    with pytest.raises(ValueError, match="Barrier settle=0 must be a positive integer"):
        Barrier(cores=2, settle=0)
    b = Barrier(cores=3)
    assert (b.cores, b.ports, b.count_bits, b.step_bits) == (3, 4, 16, 32)
