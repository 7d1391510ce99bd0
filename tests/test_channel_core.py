"""Channel neurons on the NeuronCore (amaranth.sim) against the golden model: random channel
programs (MODES among other instructions), mode counts 1..max per neuron, corner values of mode
state and coefficients, injections, loopback and backpressure; every output flit, every STATE
and MSTATE word compared after every step."""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.coreconfig import CoreConfig, Group, Route, Synapse
from neuroloom.contract.isa import Instr, encode
from neuroloom.contract.layouts import (
    MODE_COEFS,
    MODE_STATE,
    Emit,
    FlitKind,
    Mem,
    Op,
    Operand,
    cfg_addr_layout,
    flit_layout,
    pack,
)
from neuroloom.firmware.asm import load_program
from neuroloom.hw.core.core import NeuronCore
from neuroloom.sim.golden import GoldenFabric

CFG = FabricConfig(mesh_w=2, mesh_h=1, neurons=16, axons=16, synapse_rows=48, route_words=40,
                   ucode_depth=48, groups=4, modes=48)
XY = (0, 0)


def corner(rng: random.Random, width: int) -> int:
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    r = rng.random()
    if r < 0.2:
        return rng.choice([lo, hi, 0, 1, -1, lo + 1, hi - 1])
    return rng.randint(-3000, 3000) if r < 0.6 else rng.randint(lo, hi)


def random_channel_program(rng: random.Random) -> list[int]:
    """A straight-line program with one or two MODES among random ALU instructions."""
    prog = []
    for _ in range(rng.randint(0, 2)):
        prog.append(Instr(rng.choice([Op.ADD, Op.LDC, Op.SHR, Op.MAX]), rd=rng.randrange(8),
                          ra=rng.choice([*range(8), Operand.ACC]), rb=Operand.ACC,
                          ck=rng.randrange(8), sh=rng.choice([0, 1, 3])).canonical())
    for _ in range(rng.randint(1, 2)):
        prog.append(Instr(Op.MODES, rd=rng.randrange(8),
                          rb=rng.choice([*range(8), Operand.ACC, Operand.ZERO]),
                          sh=rng.choice([0, 1, 14, 15, 31, rng.randrange(32)]),
                          so=rng.choice([0, 1, 15, 19, 31, rng.randrange(32)]),
                          emit=rng.choice(list(Emit))))
    if rng.random() < 0.5:
        prog.append(Instr(Op.MAX, rd=prog[-1].rd, ra=prog[-1].rd, rb=Operand.ZERO,
                          emit=Emit.NONZERO))
    prog[-1] = Instr(**{**prog[-1].__dict__, "last": True})
    return [encode(i) for i in prog]


def random_channel_core(rng: random.Random, cfg: FabricConfig, max_modes: int) -> CoreConfig:
    """Channel groups with mode counts in 1..max_modes (the shipped program and random ones),
    random synapses onto them, host routes and loopback routes."""
    cc = CoreConfig(cfg)
    n = mode = 0
    for gi in range(cfg.groups):
        M = rng.choice([1, max_modes, rng.randint(1, max_modes)])
        count = rng.randint(1, 4)
        if n + count > cfg.neurons or mode + count * M > cfg.modes:
            break
        words = (load_program("channel", {"FRAC": 14, "OUT_SHIFT": rng.choice([14, 19])})
                 if gi == 0 else random_channel_program(rng))
        if len(cc.ucode) + len(words) > cfg.ucode_depth:
            break
        cc.groups.append(Group(n, count, cc.add_program(words), mode_base=mode, modes=M,
                               period=rng.choice([1, 1, 2]), start=rng.choice([0, 0, 1])))
        for k in range(n, n + count):
            cc.coef[k] = [corner(rng, cfg.coef_width) for _ in range(cfg.coefs)]
            cc.state[k] = [corner(rng, cfg.state_width) for _ in range(cfg.state_regs)]
        for e in range(mode, mode + count * M):
            if rng.random() < 0.6:   # a realistic stable mode
                c = [rng.randint(12000, 16300), rng.randint(-3000, 3000),
                     rng.randint(-16384, 16384), rng.randint(-16384, 16384),
                     rng.randint(-16000, 16000), rng.randint(-16000, 16000)]
            else:
                c = [corner(rng, cfg.coef_width) for _ in range(MODE_COEFS)]
            cc.mcoef[e] = c
            cc.mstate[e] = [corner(rng, cfg.state_width) for _ in range(MODE_STATE)]
        n, mode = n + count, mode + count * M
    L = cfg.synapse_lanes
    for _ in range(3):
        syn = [Synapse(rng.randrange(max(1, -(-n // L))), rng.randrange(1, 1 << L),
                       tuple(rng.randint(-128, 127) for _ in range(L))) for _ in range(2)]
        cc.add_axon(syn, rng.choice([0, 2, 6]))
    for k in range(n):
        cc.routes[k] = [Route(host=True, target=k)]
        if rng.random() < 0.5:
            cc.routes[k].append(Route(XY[0], XY[1], rng.randrange(len(cc.axons))))
    return cc


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

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return golden


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_channel_neurons_match_golden(seed):
    rng = random.Random(seed)
    cc = random_channel_core(rng, CFG, max_modes=[1, 6, 12][seed - 1])
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
