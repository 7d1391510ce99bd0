"""Channel neurons on the NeuronCore in Verilator (cocotb 2) against the golden model: random
channel programs (MODES among ALU instructions, the shipped 'channel' program), mode counts from
1 to the whole mode memory, corner values, injections, loopback, idle gaps and backpressure;
every flit of every step, every STATE/ACC/MSTATE word and the architectural counters compared.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random

import cocotb
import pytest

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.coreconfig import CoreConfig, Group, Route, Synapse
from neuroloom.contract.layouts import MODE_STATE, Counter, Mem
from neuroloom.firmware.asm import load_program
from neuroloom.sim.core_tb import TOPLEVEL, CoreTB, write_core_verilog
from neuroloom.sim.golden import GoldenFabric
from neuroloom.sim.verilator import run_cocotb
from tests.support.channel import CHANNEL_CFG, corner, random_channel_core
from tests.support.core import expected_flits

ENV_CFG, ENV_SEED = "NEUROLOOM_CHANNEL_CFG", "NEUROLOOM_CHANNEL_SEED"
XY = (1, 0)


def _params():
    cfg = FabricConfig.from_dict(json.loads(os.environ[ENV_CFG]))
    return cfg, int(os.environ.get(ENV_SEED, "1"))


async def load(tb, golden, core, cc):
    writes = cc.writes() + [(Mem.COUNTER, c, 0, 0) for c in range(len(Counter))]
    for mem, index, part, value in writes:
        tb.write(mem, index, part, value)
        golden.write(core, mem, index, part, value)
    # a write takes a few cycles with the testbench's random gaps: the whole mode memory of the
    # largest core is ~130k writes
    await tb.drain(limit=200_000 + 10 * len(writes))


async def check_modes(tb, golden, core, cc, what):
    addrs = [(Mem.MSTATE, e, p) for g in cc.groups
             for e in range(g.mode_base, g.mode_base + g.count * g.modes)
             for p in range(MODE_STATE)]
    for (mem, e, p), got in zip(addrs, await tb.read_many(addrs)):
        want = golden.read(core, mem, e, p)
        assert got == want, f"{what}: MSTATE[{e}].{p} RTL {got:#x} != golden {want:#x}"


async def run(tb, golden, core, cc, steps, rng, what):
    neurons = range(max(g.first + g.count for g in cc.groups))
    for t in range(steps):
        for _ in range(rng.randint(0, 3)):
            axon, payload = rng.randrange(len(cc.axons)), corner(rng, tb.cfg.state_width)
            tb.spike(axon, payload)
            golden.inject(core, axon, payload)
        await tb.drain()
        tb.take()
        await tb.step(t)
        res = golden.step()
        got, want = tb.take(), expected_flits(tb.cfg, cc, tb.xy, core, res)
        assert got == want, f"{what} step {t}: flits differ\nRTL    {got}\ngolden {want}"
        await check_modes(tb, golden, core, cc, f"{what} step {t}")
        await tb.check_state(golden, core, neurons=neurons, what=f"{what} step {t}")


@cocotb.test()
async def random_channel_programs(dut):
    """Random channel cores with mode counts 1..12, then clear, then more steps."""
    cfg, seed = _params()
    rng = random.Random(seed)
    tb = CoreTB(dut, cfg, XY, rng)
    await tb.start()
    core = cfg.core_index(*XY)
    for r, max_modes in enumerate([1, 5, 12]):
        golden = GoldenFabric(cfg)
        cc = random_channel_core(rng, cfg, max_modes, XY)
        await tb.clear()
        await load(tb, golden, core, cc)
        await run(tb, golden, core, cc, 5, rng, f"round {r}")
        await tb.clear()
        golden.clear()
        await check_modes(tb, golden, core, cc, "after clear")
        await run(tb, golden, core, cc, 2, rng, f"round {r} after clear")


@cocotb.test()
async def whole_mode_memory(dut):
    """One channel neuron over every mode entry, heavy backpressure; then modes = 0."""
    cfg, seed = _params()
    rng = random.Random(seed + 1)
    tb = CoreTB(dut, cfg, XY, rng, gaps=0.5, backpressure=0.8)
    await tb.start()
    core = cfg.core_index(*XY)
    golden = GoldenFabric(cfg)
    cc = CoreConfig(cfg)
    pc = cc.add_program(load_program("channel", {"FRAC": 14, "OUT_SHIFT": 15}))
    cc.groups.append(Group(0, 1, pc, modes=cfg.modes))
    cc.groups.append(Group(1, 2, pc))                      # no mode entries: MODES gives 0
    for e in range(cfg.modes):
        cc.mcoef[e] = [rng.randint(12000, 16300), rng.randint(-3000, 3000), 16384, 0,
                       rng.randint(-12000, 12000), rng.randint(-12000, 12000)]
    L = cfg.synapse_lanes
    cc.add_axon([Synapse(0, 0b111, (90, -50, 70) + (0,) * (L - 3))], 0)
    cc.coef[1] = [0] * 6 + [300, 0]
    cc.coef[2] = [0] * 6 + [0, 0]
    for k in range(3):
        cc.routes[k] = [Route(host=True, target=k), Route(XY[0], XY[1], 0)]
    await load(tb, golden, core, cc)
    await run(tb, golden, core, cc, 6, rng, "whole mode memory")


# ---------------------------------------------------------------------------------------------
# pytest side

@pytest.mark.rtl
@pytest.mark.parametrize("lanes", [1, 2, pytest.param(4, marks=pytest.mark.slow)])
def test_channel_core_vs_golden(lanes):
    """Every neuron_lanes setting runs the same channel configurations, bit for bit."""
    cfg = dataclasses.replace(CHANNEL_CFG, neuron_lanes=lanes)
    src = write_core_verilog(cfg, XY)
    env = {ENV_CFG: cfg.to_json(), ENV_SEED: "3"}
    r = run_cocotb(TOPLEVEL, [src], __name__, src.parent / "verilator", extra_env=env)
    assert r.failed == 0 and r.tests == 2


@pytest.mark.slow
@pytest.mark.rtl
def test_largest_mode_memory_vs_golden():
    """The largest core size the configuration index allows: 16,384 mode entries in 4 lane
    banks; one channel neuron spans all of them (and the random channel rounds run too)."""
    cfg = dataclasses.replace(CHANNEL_CFG, modes=1 << FabricConfig.INDEX_BITS, neuron_lanes=4)
    src = write_core_verilog(cfg, XY)
    env = {ENV_CFG: cfg.to_json(), ENV_SEED: "5"}
    r = run_cocotb(TOPLEVEL, [src], __name__, src.parent / "verilator", extra_env=env)
    assert r.failed == 0 and r.tests == 2
