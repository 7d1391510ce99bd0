"""NeuronCore on Verilator (cocotb 2) against the golden model, flit for flit.

The pytest functions at the bottom build the core's Verilog (cached under
``build/core/<digest of the Verilog text>/``) and run the cocotb tests above them inside the
simulator. Each cocotb test loads a configuration with CFG_WRITE flits
(``CoreConfig.writes()``), injects SPIKE flits, runs steps with random idle gaps on ``i_flit``
and random backpressure on ``o_flit``, and compares every emitted flit (as a multiset per
step), every STATE/ACC word and the architectural counters (read back with CFG_READ) with
``GoldenFabric``.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
import pytest

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.coreconfig import CoreConfig, Group, Route, Synapse
from neuroloom.contract.isa import encode
from neuroloom.contract.layouts import Counter, Mem
from neuroloom.sim.core_tb import TOPLEVEL, CoreTB, write_core_verilog
from neuroloom.sim.golden import GoldenFabric
from neuroloom.sim.verilator import run_cocotb
from tests.support.core import (
    SMALL,
    corner_value,
    expected_flits,
    random_core_config,
    random_program,
)

ENV_CFG, ENV_XY, ENV_SEED, ENV_STEPS = ("NEUROLOOM_CORE_CFG", "NEUROLOOM_CORE_XY",
                                        "NEUROLOOM_CORE_SEED", "NEUROLOOM_CORE_STEPS")


def _params():
    cfg = FabricConfig.from_dict(json.loads(os.environ[ENV_CFG]))
    xy = tuple(int(v) for v in os.environ[ENV_XY].split(","))
    return cfg, xy, int(os.environ.get(ENV_SEED, "1")), int(os.environ.get(ENV_STEPS, "24"))


async def load(tb: CoreTB, golden: GoldenFabric, core: int, cc: CoreConfig):
    """Send every config write of ``cc`` (and zero the counters, which writes set)."""
    writes = cc.writes() + [(Mem.COUNTER, c, 0, 0) for c in range(len(Counter))]
    for mem, index, part, value in writes:
        tb.write(mem, index, part, value)
        golden.write(core, mem, index, part, value)
    await tb.drain()


async def run_steps(tb, golden, core, cc, steps, rng, n_axons, t0=0, inject=0.5):
    cycles = []
    for t in range(t0, t0 + steps):
        for _ in range(rng.randint(0, 4) if rng.random() < inject else 0):
            axon = rng.randrange(n_axons)
            payload = corner_value(rng, tb.cfg.state_width)
            tb.spike(axon, payload)
            golden.inject(core, axon, payload)
        await tb.drain()
        tb.take()
        cycles.append(await tb.step(t))
        res = golden.step()
        got, want = tb.take(), expected_flits(tb.cfg, cc, tb.xy, core, res)
        assert got == want, f"step {t}: flits differ\nRTL    {got}\ngolden {want}"
    return cycles


@cocotb.test()
async def programs_vs_golden(dut):
    """Random layers with the five shipped programs, schedules, loopback, injections."""
    cfg, xy, seed, steps = _params()
    rng = random.Random(seed)
    tb = CoreTB(dut, cfg, xy, rng)
    await tb.start()
    core = cfg.core_index(*xy)
    for rnd_i in range(2):
        golden = GoldenFabric(cfg)
        cc = random_core_config(cfg, rng, xy)
        if rnd_i:
            await tb.clear()
        await load(tb, golden, core, cc)
        await tb.check_state(golden, core, what="after load")
        await run_steps(tb, golden, core, cc, steps, rng, len(cc.axons))
        await tb.check_state(golden, core, what=f"after {steps} steps")
        # clear: state and accumulators zero, schedule restarts at step 0
        await tb.clear()
        golden.clear()
        await tb.check_state(golden, core, what="after clear")
        await run_steps(tb, golden, core, cc, 4, rng, len(cc.axons))
        await tb.check_state(golden, core, what="after clear + 4 steps")


@cocotb.test()
async def isa_fuzz(dut):
    """Random valid programs, coefficients, states and accumulator values (both buffers,
    written directly) incl. saturation and rounding corners: RTL == sim.neuron."""
    cfg, xy, seed, _ = _params()
    rng = random.Random(seed + 7)
    tb = CoreTB(dut, cfg, xy, rng, gaps=0.1, backpressure=0.2)
    await tb.start()
    core = cfg.core_index(*xy)
    for _ in range(6):
        golden = GoldenFabric(cfg)
        cc = CoreConfig(cfg)
        n = 0
        while n < cfg.neurons and len(cc.groups) < cfg.groups:
            size = min(cfg.neurons - n, rng.randint(1, 8))
            prog = random_program(rng, rng.randint(1, 8))
            pc = cc.add_program([encode(i) for i in prog]) \
                if len(cc.ucode) + len(prog) <= cfg.ucode_depth else 0
            if not cc.ucode:
                break
            cc.groups.append(Group(n, size, pc))
            n += size
        for k in range(cfg.neurons):
            cc.coef[k] = [corner_value(rng, cfg.coef_width) for _ in range(8)]
            cc.state[k] = [corner_value(rng, cfg.state_width) for _ in range(cfg.state_regs)]
            cc.routes[k] = [Route(host=True, target=k)]
        tb.resp.clear()
        await tb.clear()
        await load(tb, golden, core, cc)
        for t in range(3):
            for k in range(n):
                for b in range(2):
                    v = corner_value(rng, 32) if rng.random() < 0.7 else \
                        corner_value(rng, cfg.state_width + 2)
                    tb.write(Mem.ACC, k, b, v)
                    golden.write(core, Mem.ACC, k, b, v)
            await tb.drain()
            tb.take()
            await tb.step(t)
            res = golden.step()
            got, want = tb.take(), expected_flits(cfg, cc, xy, core, res)
            assert got == want, f"step {t}: flits differ\nRTL    {got}\ngolden {want}"
            await tb.check_state(golden, core, neurons=range(n), what=f"isa fuzz step {t}")


@cocotb.test()
async def edges(dut):
    """Empty core; maximum fan-in (one axon over every synapse row, back-to-back rows on one
    neuron) and fan-out (one neuron over every route word); full memories; backpressure."""
    cfg, xy, seed, _ = _params()
    rng = random.Random(seed + 11)
    tb = CoreTB(dut, cfg, xy, rng, gaps=0.5, backpressure=0.7)
    await tb.start()
    core = cfg.core_index(*xy)
    L = cfg.synapse_lanes

    # empty core: a step finishes with no output
    golden = GoldenFabric(cfg)
    await load(tb, golden, core, CoreConfig(cfg))
    cyc = await tb.step(0)
    golden.step()
    assert tb.take() == [] and cyc < 4 * cfg.groups + 10, cyc

    # fan-in and fan-out
    await tb.clear()
    golden = GoldenFabric(cfg)
    cc = CoreConfig(cfg)
    from neuroloom.firmware.asm import load_program
    pc = cc.add_program(load_program("integrator"))
    cc.groups.append(Group(0, cfg.neurons, pc))
    rows = [Synapse(0 if i % 3 else rng.randrange(cfg.neurons // L), (1 << L) - 1 if i % 2
                    else 1, tuple(corner_value(rng, cfg.weight_width) for _ in range(L)))
            for i in range(cfg.synapse_rows - 1)]
    cc.add_axon(rows, 3)
    cc.add_axon([Synapse(1, 1 << (L - 1), (5,) * L)], 0)
    cc.axons += [(0, 0, 0)] * (cfg.axons - len(cc.axons))
    for k in range(cfg.neurons):
        cc.coef[k] = [0] * 6 + [rng.randint(-100, 100), 0]
    others = [(x, y) for x in range(cfg.mesh_w) for y in range(cfg.mesh_h) if (x, y) != xy]
    cc.routes[0] = [Route(*rng.choice(others), rng.randrange(cfg.axons))
                    for _ in range(cfg.route_words - cfg.neurons)]
    cc.routes[0][:2] = [Route(xy[0], xy[1], 0), Route(host=True, target=3)]
    for k in range(1, cfg.neurons):
        cc.routes[k] = [Route(xy[0], xy[1], 1)]
    cc.ucode += [0] * (cfg.ucode_depth - len(cc.ucode))
    await load(tb, golden, core, cc)
    await run_steps(tb, golden, core, cc, 5, rng, 2, inject=1.0)
    await tb.check_state(golden, core, what="fan-in/fan-out")


# ---------------------------------------------------------------------------------------------
# pytest side


def run_core(cfg, xy, testcase=None, seed=1, steps=24):
    src = write_core_verilog(cfg, xy)
    env = {ENV_CFG: cfg.to_json(), ENV_XY: f"{xy[0]},{xy[1]}", ENV_SEED: str(seed),
           ENV_STEPS: str(steps)}
    return run_cocotb(TOPLEVEL, [src], __name__, src.parent / "verilator", extra_env=env,
                      testcase=testcase)


@pytest.mark.rtl
def test_core_small_vs_golden():
    r = run_core(SMALL, (1, 0))
    assert r.failed == 0 and r.tests == 3


@pytest.mark.slow
@pytest.mark.rtl
def test_core_default_config_vs_golden():
    """Slow tier only because its Verilator build takes ~2-4 minutes on 2 cores."""
    cfg = FabricConfig()
    run_core(cfg, (0, 1), testcase="programs_vs_golden", seed=3, steps=8)


@pytest.mark.slow
@pytest.mark.rtl
@pytest.mark.parametrize("seed", [11, 12, 13])
def test_core_small_long(seed):
    run_core(SMALL, (2, 1), seed=seed, steps=80)


