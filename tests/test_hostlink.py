"""RTL host link (amaranth.sim) against its reference model, word for word.

The testbench plays mesh, barrier and cores with the golden fabric behind them: flits the link
sends are applied to a GoldenFabric, CFG_READs answered, RUN steps the golden fabric and feeds
its host outputs back as HOST_OUT flits. The link's response stream must equal
``HostLinkModel.process`` on the same command stream, under random input gaps and output
backpressure.
"""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator
from test_hostlink_model import CFG, addr, bad_frames, load_frames, network

from neuroloom.contract.hostproto import Cmd, decode_frames, encode_frame, target
from neuroloom.contract.layouts import (
    FlitKind,
    Mem,
    cfg_addr_layout,
    flit_layout,
    mem_depth,
    mem_parts,
    pack,
    to_signed,
    unpack,
)
from neuroloom.hw.hostlink import HostLink
from neuroloom.sim.golden import GoldenFabric
from neuroloom.sim.hostlink_model import HostLinkModel


def run_link(frames, seed=0, gap=0.3, stall=0.3, max_cycles=40_000):
    dut = HostLink(CFG)
    fabric = GoldenFabric(CFG)
    words, lasts = [], []
    for f in frames:
        words += f
        lasts += [False] * (len(f) - 1) + [True]
    expect = HostLinkModel(GoldenFabric(CFG)).process(words, lasts)
    got: list[int] = []
    got_last: list[bool] = []
    rng = random.Random(seed)

    async def producer(ctx):
        for w, last in zip(words, lasts):
            while rng.random() < gap:
                await ctx.tick()
            ctx.set(dut.s_axis.valid, 1)
            ctx.set(dut.s_axis.payload, {"data": w, "last": int(last)})
            await ctx.tick().until(dut.s_axis.ready)
            ctx.set(dut.s_axis.valid, 0)

    async def consumer(ctx):
        cycles = 0
        while len(got) < len(expect) and cycles < max_cycles:
            ctx.set(dut.m_axis.ready, int(rng.random() >= stall))
            _, _, valid, ready, payload = await ctx.tick().sample(
                dut.m_axis.valid, dut.m_axis.ready, dut.m_axis.payload)
            if valid and ready:
                got.append(payload.data)
                got_last.append(bool(payload.last))
            cycles += 1

    async def fabric_emulator(ctx):
        queue = []           # (flit dict, step) waiting to enter i_flit
        running, idle_wait = False, 0
        fl = flit_layout(CFG)
        while True:
            if queue:
                ctx.set(dut.i_flit.valid, 1)
                ctx.set(dut.i_flit.payload, queue[0][0])
                ctx.set(dut.step, queue[0][1])
            else:
                ctx.set(dut.i_flit.valid, 0)
                ctx.set(dut.step, fabric.t)
            if running and not queue:
                running = False
            ctx.set(dut.running, int(running))
            ctx.set(dut.cores_idle, int(idle_wait == 0))
            ctx.set(dut.quiet, int(idle_wait == 0))
            ctx.set(dut.counters[1], fabric.t)
            ctx.set(dut.o_flit.ready, int(rng.random() >= 0.2))
            idle_wait = max(0, idle_wait - 1)
            (_, _, ov, ordy, op, iv, irdy, start, steps, clear) = await ctx.tick().sample(
                dut.o_flit.valid, dut.o_flit.ready, dut.o_flit.payload, dut.i_flit.valid,
                dut.i_flit.ready, dut.run_start, dut.run_steps, dut.clear)
            if iv and irdy:
                queue.pop(0)
            if ov and ordy:
                f = unpack(fl, int(op.as_value().value))
                core = CFG.core_index(f["dst_x"], f["dst_y"])
                a = unpack(cfg_addr_layout(CFG), f["addr"])
                if f["kind"] == FlitKind.CFG_WRITE:
                    fabric.write(core, a["mem"], a["index"], a["part"], f["data"])
                elif f["kind"] == FlitKind.SPIKE:
                    fabric.inject(core, f["addr"], to_signed(f["data"], 32))
                elif f["kind"] == FlitKind.CFG_READ:
                    value = fabric.read(core, a["mem"], a["index"], a["part"])
                    queue.append((dict(f, kind=FlitKind.READ_RESP, dst_x=0, dst_y=0,
                                       data=value), fabric.t))
            if start:
                running = True
                for _ in range(steps):
                    r = fabric.step()
                    for ch, v, ok in zip(r.channels, r.payload[0], r.valid[0]):
                        if ok:
                            queue.append((dict(dst_x=0, dst_y=0, kind=FlitKind.HOST_OUT,
                                               addr=int(ch), data=int(v) & 0xFFFFFFFF), r.step))
            if clear:
                fabric.clear()
                idle_wait = 3

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.add_process(fabric_emulator)
    sim.run()
    return got, got_last, expect, lasts, fabric


def token_frames(tokens):
    frames = []
    for k, v in enumerate(tokens):
        frames.append(encode_frame(Cmd.INJECT, [target(0, 0, 0), v & 0xFFFFFFFF], seq=k))
        frames.append(encode_frame(Cmd.RUN, [1], seq=k))
    return frames


def test_every_command_matches_the_model():
    frames = load_frames(network()) + token_frames([100, -7, 0, 55, 2 ** 30]) + [
        encode_frame(Cmd.RUN, [3], seq=40),
        encode_frame(Cmd.READ, [target(1, 0, addr(Mem.STATE, 0)),
                                target(0, 0, addr(Mem.COEF, 1, 6)),
                                target(1, 0, addr(Mem.COUNTER, 1))], seq=41),
        encode_frame(Cmd.STATUS, seq=42),
        encode_frame(Cmd.COUNTERS, seq=43),
        encode_frame(Cmd.CLEAR, seq=44),
        encode_frame(Cmd.STATUS, seq=45),
        encode_frame(Cmd.RUN, [0], seq=46),
    ]
    got, got_last, expect, _, _ = run_link(frames)
    assert got == expect
    replies = decode_frames(got, got_last)
    assert sum(f.opcode == 0x90 for f in replies) >= 5, "the run produced host outputs"


def test_bad_frames_answer_errors_and_keep_state():
    frames = load_frames(network())
    for frame, _ in bad_frames().values():
        frames.append(frame)
    frames += token_frames([100, -7, 3])
    got, _, expect, _, fabric = run_link(frames, seed=1)
    assert got == expect
    reference = GoldenFabric(CFG)
    reference.load(network())
    for v in [100, -7, 3]:
        reference.inject(0, 0, v)
        reference.step()
    np.testing.assert_array_equal(fabric.state, reference.state)


def test_fuzzed_frames_never_hang():
    rng = random.Random(11)
    frames = load_frames(network())
    for _ in range(40):
        n = rng.randint(1, 8)
        f = [rng.getrandbits(32) for _ in range(n)]
        if rng.random() < 0.5:
            f[0] = rng.choice([0x42, 0x07, 0x05, 0x01, 0x02]) | rng.randint(0, 8) << 16
        frames.append(f)
    frames += token_frames([9, 8, 7])
    got, got_last, expect, _, _ = run_link(frames, seed=2)
    assert got == expect
    assert len(decode_frames(got, got_last)) >= 40


@pytest.mark.parametrize("mem", [Mem.AXON, Mem.SYNAPSE, Mem.GROUP])
def test_address_check_matches_memory_shapes(mem):
    depth, parts = mem_depth(CFG, mem), mem_parts(CFG, mem)
    ok = pack(cfg_addr_layout(CFG), mem=mem, index=depth - 1, part=parts - 1)
    bad_index = pack(cfg_addr_layout(CFG), mem=mem, index=depth, part=0)
    bad_part = pack(cfg_addr_layout(CFG), mem=mem, index=0, part=parts)
    frames = [encode_frame(Cmd.READ, [target(0, 0, a)], seq=i)
              for i, a in enumerate([ok, bad_index, bad_part])]
    got, _, expect, _, _ = run_link(frames, seed=3)
    assert got == expect
    assert [f.opcode for f in decode_frames(got)] == [Cmd.READ | 0x80, 0xFF, 0xFF]
