"""Channel neurons on the NeuronCore (amaranth.sim) against the golden model: random channel
programs (MODES among other instructions), mode counts 1..max per neuron, corner values of mode
state and coefficients, injections, loopback and backpressure; every output flit, every STATE
and MSTATE word compared after every step."""

from __future__ import annotations

import dataclasses
import random

import pytest
from amaranth.sim import Simulator

from neuroloom.contract.coreconfig import CoreConfig, Group, Route, Synapse
from neuroloom.contract.layouts import (
    MODE_STATE,
    FlitKind,
    Mem,
    cfg_addr_layout,
    flit_layout,
    pack,
)
from neuroloom.firmware.asm import load_program
from neuroloom.hw.core.core import NeuronCore
from neuroloom.hw.core.memories import poison_collisions
from neuroloom.sim.golden import GoldenFabric
from tests.support.channel import CHANNEL_CFG, corner, random_channel_core

CFG = CHANNEL_CFG
XY = (0, 0)


def expected(cc: CoreConfig, res) -> list:
    out = []
    for k, rts in cc.routes.items():
        if res.emit[0, k]:
            out += [(FlitKind.HOST_OUT, r.target, int(res.spikes[0, k]) & 0xFFFFFFFF)
                    for r in rts if r.host]
    return sorted(out)


def run_core(cc: CoreConfig, steps: int, seed: int):
    cfg, rng = cc.cfg, random.Random(seed)
    golden = GoldenFabric(cfg)
    dut = NeuronCore(cfg, *XY)
    A = cfg_addr_layout(cfg)

    async def send(ctx, kind, addr, data=0):
        ctx.set(dut.i_flit.payload, flit_layout(cfg).const(
            dict(dst_x=XY[0], dst_y=XY[1], kind=kind, addr=addr, data=data & 0xFFFFFFFF)))
        ctx.set(dut.i_flit.valid, 1)
        await ctx.tick().until(dut.i_flit.ready)
        ctx.set(dut.i_flit.valid, 0)

    async def read(ctx, mem, index, part):
        addr = pack(A, mem=mem, index=index, part=part)
        await send(ctx, FlitKind.CFG_READ, addr)
        ctx.set(dut.o_flit.ready, 1)
        flit, = await ctx.tick().sample(dut.o_flit.payload).until(dut.o_flit.valid)
        ctx.set(dut.o_flit.ready, 0)
        assert flit.kind == FlitKind.READ_RESP and flit.addr == addr
        return flit.data

    async def bench(ctx):
        for mem, index, part, value in cc.writes():
            await send(ctx, FlitKind.CFG_WRITE, pack(A, mem=mem, index=index, part=part), value)
            golden.write(0, mem, index, part, value)
        for t in range(steps):
            for _ in range(rng.randint(0, 2)):
                axon, payload = rng.randrange(len(cc.axons)), corner(rng, cfg.state_width)
                await send(ctx, FlitKind.SPIKE, axon, payload)
                golden.inject(0, axon, payload)
            await ctx.tick().until(dut.idle)
            ctx.set(dut.step, t)
            ctx.set(dut.step_start, 1)
            await ctx.tick()
            ctx.set(dut.step_start, 0)
            got = []
            while True:
                ready = rng.random() < 0.7
                ctx.set(dut.o_flit.ready, ready)
                _, _, valid, flit, idle = await ctx.tick().sample(
                    dut.o_flit.valid, dut.o_flit.payload, dut.idle)
                if valid and ready:
                    got.append((FlitKind(flit.kind), flit.addr, flit.data))
                if idle and not (valid and ready):
                    break
            ctx.set(dut.o_flit.ready, 0)
            res = golden.step()
            assert sorted(got) == expected(cc, res), f"step {t}: flits differ"
            for g in cc.groups:
                for e in range(g.mode_base, g.mode_base + g.count * g.modes):
                    for p in range(MODE_STATE):
                        want = golden.read(0, Mem.MSTATE, e, p)
                        got_v = await read(ctx, Mem.MSTATE, e, p)
                        assert got_v == want, f"step {t}: MSTATE[{e}].{p} {got_v:#x} != {want:#x}"
                for k in range(g.first, g.first + g.count):
                    for p in range(cfg.state_regs):
                        want = golden.read(0, Mem.STATE, k, p)
                        assert await read(ctx, Mem.STATE, k, p) == want, f"STATE[{k}].{p}"

    with poison_collisions():    # block-RAM collision reads poisoned (memories.py)
        sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return golden


@pytest.mark.parametrize("lanes", [1, 2, 4])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_channel_neurons_match_golden(seed, lanes):
    """Every neuron_lanes setting (mode memories banked by lane; groups' mode bases are not
    aligned to the lanes) against the same golden model."""
    rng = random.Random(seed)
    cfg = dataclasses.replace(CFG, neuron_lanes=lanes)
    cc = random_channel_core(rng, cfg, max_modes=[1, 6, 12][seed - 1])
    assert cc.groups and cc.groups[0].modes >= 1
    golden = run_core(cc, steps=4, seed=seed)
    assert golden.counters[0, 0, 0] > 0


def test_one_neuron_spans_the_whole_mode_memory():
    rng = random.Random(9)
    cc = CoreConfig(CFG)
    pc = cc.add_program(load_program("channel", {"FRAC": 14, "OUT_SHIFT": 16}))
    cc.groups.append(Group(0, 1, pc, modes=CFG.modes))
    for e in range(CFG.modes):
        cc.mcoef[e] = [rng.randint(12000, 16300), rng.randint(-3000, 3000), 16384, 0,
                       rng.randint(-9000, 9000), rng.randint(-9000, 9000)]
    cc.add_axon([Synapse(0, 1, (100,) + (0,) * (CFG.synapse_lanes - 1))], 0)
    cc.routes[0] = [Route(host=True, target=5)]
    run_core(cc, steps=3, seed=4)


def test_groups_larger_than_a_batch():
    """Groups of more neurons than the engine's slots run in several batches (the last one
    partial), with mode pointers carried across batches, next to a group of one neuron."""
    from neuroloom.hw.core.neuron import NeuronEngine

    K = NeuronEngine.SLOTS
    cfg = dataclasses.replace(CFG, neurons=2 * K + 16, axons=16, modes=4 * K, neuron_lanes=2)
    rng = random.Random(21)
    cc = CoreConfig(cfg)
    pc = cc.add_program(load_program("channel", {"FRAC": 14, "OUT_SHIFT": 15}))
    count, M = K + 9, 3                        # one full batch and a partial one
    cc.groups.append(Group(0, count, pc, mode_base=1, modes=M))
    lif = cc.add_program(load_program("lif"))
    cc.groups.append(Group(count, K + 3, lif))
    cc.groups.append(Group(2 * K + 12, 1, pc, mode_base=1 + count * M, modes=M))
    for k in range(cfg.neurons):
        cc.coef[k] = [rng.randint(-2000, 2000) for _ in range(cfg.coefs)]
        cc.state[k] = [rng.randint(-5000, 5000) for _ in range(cfg.state_regs)]
    for e in range(1, 1 + (count + 1) * M):
        cc.mcoef[e] = [rng.randint(12000, 16300), rng.randint(-3000, 3000),
                       rng.randint(-16384, 16384), rng.randint(-16384, 16384),
                       rng.randint(-16000, 16000), rng.randint(-16000, 16000)]
    L = cfg.synapse_lanes
    for a in range(4):
        cc.add_axon([Synapse(r, (1 << L) - 1, tuple(rng.randint(-100, 100) for _ in range(L)))
                     for r in range(a * 5, a * 5 + 5)], 0)
    for k in range(0, cfg.neurons, 3):
        cc.routes[k] = [Route(host=True, target=k)]
    run_core(cc, steps=3, seed=21)
