"""Host link protocol and its reference model: every command, every bad-frame class, fuzz."""

import random

import numpy as np
import pytest

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.coreconfig import CoreConfig, Group, Route, Synapse
from neuroloom.contract.hostproto import (
    ERROR,
    MAGIC,
    OUTPUT,
    Cmd,
    ErrorCode,
    FrameError,
    decode_frames,
    encode_frame,
    target,
)
from neuroloom.contract.layouts import Mem, cfg_addr_layout, pack
from neuroloom.firmware.asm import load_program
from neuroloom.sim.golden import GoldenFabric
from neuroloom.sim.hostlink_model import HostLinkModel

CFG = FabricConfig(mesh_w=2, mesh_h=1)


def addr(mem, index, part=0):
    return pack(cfg_addr_layout(CFG), mem=mem, index=index, part=part)


def network():
    """core 0: 3 linear neurons fed by axon 0 -> core 1: integrator -> host channel 5."""
    a, b = CoreConfig(CFG), CoreConfig(CFG)
    a.groups.append(Group(0, 3, a.add_program(load_program("linear"))))
    a.add_axon([Synapse(0, 0b0111, (10, -20, 30, 0))], shift=1)
    ax = b.add_axon([Synapse(0, 1, (1, 0, 0, 0))], shift=0)
    for n in range(3):
        a.routes[n] = [Route(1, 0, ax)]
    b.groups.append(Group(0, 1, b.add_program(load_program("integrator")), start=1))
    b.routes[0] = [Route(host=True, target=5)]
    return [(0,) + w for w in a.writes()] + [(1,) + w for w in b.writes()]


def send(link, *frames):
    words, lasts = [], []
    for f in frames:
        words += f
        lasts += [False] * (len(f) - 1) + [True]
    return decode_frames(link.process(words, lasts))


def load_frames(writes):
    payload = []
    for core, mem, index, part, value in writes:
        x, y = CFG.core_xy(core)
        payload += [target(x, y, addr(mem, index, part)), value]
    return [encode_frame(Cmd.WRITE, payload[i:i + 400], seq=i // 400 & 0xFF)
            for i in range(0, len(payload), 400)]


@pytest.fixture
def link():
    link = HostLinkModel(GoldenFabric(CFG))
    replies = send(link, *load_frames(network()))
    assert all(r.opcode == Cmd.WRITE | 0x80 for r in replies)
    return link


def run_tokens(link, tokens):
    outs = []
    for k, v in enumerate(tokens):
        replies = send(link, encode_frame(Cmd.INJECT, [target(0, 0, 0), v & 0xFFFFFFFF], seq=k),
                       encode_frame(Cmd.RUN, [1], seq=k))
        assert replies[0].opcode == Cmd.INJECT | 0x80 and replies[-1].opcode == Cmd.RUN | 0x80
        outs += [(f.payload[0] & 0xFFFF, f.payload[0] >> 16, f.payload[1])
                 for f in replies if f.opcode == OUTPUT]
    return outs


def test_commands_drive_the_fabric_like_direct_calls(link):
    direct = GoldenFabric(CFG)
    direct.load(network())
    expect = []
    for v in [100, -7, 0, 55]:
        direct.inject(0, 0, v)
        r = direct.step()
        expect += [(r.step, int(c), int(p) & 0xFFFFFFFF)
                   for c, p, ok in zip(r.channels, r.payload[0], r.valid[0]) if ok]
    assert run_tokens(link, [100, -7, 0, 55]) == expect
    assert expect and expect[0][1] == 5
    status = send(link, encode_frame(Cmd.STATUS, seq=9))[0]
    assert status.seq == 9 and status.payload[:3] == [MAGIC, 2 | 1 << 8, 4]
    read = send(link, encode_frame(Cmd.READ, [target(1, 0, addr(Mem.STATE, 0))]))[0]
    assert read.payload[1] == direct.read(1, Mem.STATE, 0, 0)
    assert send(link, encode_frame(Cmd.CLEAR))[0].opcode == Cmd.CLEAR | 0x80
    assert link.fabric.t == 0 and link.fabric.read(1, Mem.STATE, 0, 0) == 0
    assert len(send(link, encode_frame(Cmd.COUNTERS))[0].payload) == 6


def bad_frames():
    good = encode_frame(Cmd.WRITE, [target(0, 0, addr(Mem.COEF, 0, 6)), 3])
    return {
        "opcode": (encode_frame(0x42, []), ErrorCode.BAD_OPCODE),
        "checksum": (good[:-1] + [good[-1] ^ 1], ErrorCode.BAD_CHECKSUM),
        "length-long": ([good[0] + (1 << 16)] + good[1:-1] + [good[-1] + (1 << 16)],
                        ErrorCode.BAD_LENGTH),
        "length-odd": (encode_frame(Cmd.WRITE, [target(0, 0, 0)]), ErrorCode.BAD_LENGTH),
        "run-length": (encode_frame(Cmd.RUN, []), ErrorCode.BAD_LENGTH),
        "tile": (encode_frame(Cmd.WRITE, [target(2, 0, addr(Mem.COEF, 0)), 1]),
                 ErrorCode.BAD_ADDRESS),
        "index": (encode_frame(Cmd.WRITE, [target(0, 0, addr(Mem.AXON, 300)), 1]),
                  ErrorCode.BAD_ADDRESS),
        "mem": (encode_frame(Cmd.READ, [target(0, 0, 15 << 16)]), ErrorCode.BAD_ADDRESS),
        "axon": (encode_frame(Cmd.INJECT, [target(0, 0, 256), 1]), ErrorCode.BAD_ADDRESS),
        "too-long": (encode_frame(Cmd.WRITE, [target(0, 0, addr(Mem.COEF, 0)), 1] * 300),
                     ErrorCode.BAD_LENGTH),
    }


@pytest.mark.parametrize("name", list(bad_frames()))
def test_bad_frames_get_errors_and_change_nothing(link, name):
    frame, code = bad_frames()[name]
    before = snapshot(link)
    reply = send(link, frame)
    assert [r.opcode for r in reply] == [ERROR] and reply[0].payload == [code, frame[0]]
    assert snapshot(link) == before


def snapshot(link):
    f = link.fabric
    return (f.t, f.state.tobytes(), f.coef.tobytes(), f.acc.tobytes(),
            tuple(v.tobytes() for v in f._raw.values()))


def test_fuzzed_frames_never_hang_and_leave_the_model_intact(link):
    rng = random.Random(5)
    tokens = [100, -7, 0, 55, 9]
    before = snapshot(link)
    replies = 0
    for _ in range(300):
        n = rng.randint(1, 12)
        words = [rng.getrandbits(32) for _ in range(n)]
        if rng.random() < 0.5:      # a plausible header with a random opcode and length
            words[0] = rng.choice([0x42, 0x07, 0x05, 0x01]) | rng.randint(0, 14) << 16
            words[0] = rng.choice([words[0], 0x42 | (n - 2) << 16])
        lasts = [False] * (n - 1) + [True]
        out = link.process(words, lasts)
        frames = decode_frames(out)
        replies += len(frames)
        assert all(f.opcode in (ERROR, Cmd.STATUS | 0x80, Cmd.CLEAR | 0x80) for f in frames)
        if any(f.opcode == Cmd.CLEAR | 0x80 for f in frames):
            before = snapshot(link)   # a valid CLEAR is allowed to clear
    assert replies >= 300
    assert snapshot(link) == before
    fresh = HostLinkModel(GoldenFabric(CFG))
    send(fresh, *load_frames(network()))
    assert run_tokens(link, tokens) == run_tokens(fresh, tokens)


def test_decode_frames_reports_malformed_streams():
    f = encode_frame(Cmd.STATUS, [1, 2])
    with pytest.raises(FrameError, match="truncated"):
        decode_frames(f[:-1])
    with pytest.raises(FrameError, match="bad checksum"):
        decode_frames(f[:-1] + [0])
    with pytest.raises(FrameError, match="TLAST"):
        decode_frames(f, lasts=[True] * len(f))
    assert np.array_equal(decode_frames(f)[0].payload, [1, 2])
