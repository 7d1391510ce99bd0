"""Host link protocol and its reference model: the word layouts (against hand-written words and
against docs/hostlink.md), every command, every bad-frame class, fuzz."""

import random
import re
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Shape, unsigned
from amaranth.lib import data

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.coreconfig import CoreConfig, Group, Route, Synapse
from neuroloom.contract.hostproto import (
    ERROR,
    MAGIC,
    OUTPUT,
    RESPONSE,
    STEP_BITS,
    WORD_LAYOUTS,
    Cmd,
    ErrorCode,
    FrameError,
    FrameHeader,
    MeshSize,
    Opcode,
    OutputTag,
    StatusFlags,
    Target,
    decode_frames,
    encode_frame,
    from_word,
    header,
    output_tag,
    parse_status,
    status_payload,
    target,
    to_word,
    untarget,
    unwrap_step,
)
from neuroloom.contract.layouts import Mem, cfg_addr_layout, flit_layout, pack
from neuroloom.firmware.asm import load_program
from neuroloom.firmware.compiler import MAX_MESH
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


# -- the word layouts -----------------------------------------------------------------------------

def test_word_layouts_take_their_widths_from_the_fabric():
    flit = data.Layout.cast(flit_layout(CFG))
    t = data.Layout.cast(Target)
    assert t["x"].width == t["y"].width == flit["dst_x"].width == FabricConfig.COORD_BITS
    assert t["addr"].width == flit["addr"].width == CFG.addr_bits
    assert data.Layout.cast(OutputTag)["step"].width == STEP_BITS
    assert [data.Layout.cast(w).size for w in WORD_LAYOUTS] == [32] * len(WORD_LAYOUTS)
    assert MAX_MESH == 1 << FabricConfig.COORD_BITS
    assert untarget(target(MAX_MESH - 1, MAX_MESH - 1, 0)) == (MAX_MESH - 1, MAX_MESH - 1, 0)
    with pytest.raises(ValueError, match=rf"Target.x = {MAX_MESH} does not fit in 4 bits"):
        target(MAX_MESH, 0, 0)


def test_words_pack_to_the_documented_bit_positions():
    assert header(Cmd.WRITE, 0x12, 0x345) == 0x0345_1201
    assert encode_frame(Cmd.STATUS, seq=1) == [0x0000_0107, 0x0000_0107]
    assert target(3, 5, 0xABCDE) == 0x0ABC_DE53
    assert untarget(0xEABC_DE53) == (3, 5, 0xABCDE)          # reserved bits 29..31 ignored
    assert output_tag(0x1_2345, 7) == 0x0007_2345             # step modulo 2**16
    assert [unwrap_step(s, since=0xFFFE) for s in (0xFFFE, 0xFFFF, 0, 3)] == \
        [0xFFFE, 0xFFFF, 0x1_0000, 0x1_0003]
    assert status_payload(3, 2, 9, overrun=True) == [0x4E4C_4F4D, 0x0000_0203, 9, 1]
    assert parse_status([MAGIC, 0x0203, 9, 1]) == {"mesh_w": 3, "mesh_h": 2, "step": 9,
                                                   "overrun": True}
    assert from_word(FrameHeader, 0xFFFF_FF42) == {"opcode": 0x42, "seq": 0xFF, "length": 0xFFFF}
    with pytest.raises(FrameError, match="not a NeuroLoom fabric"):
        parse_status([0x1234, 0x0203, 9, 0])
    with pytest.raises(ValueError, match="FrameHeader.seq = 256 does not fit in 8 bits"):
        header(Cmd.READ, 256, 0)
    with pytest.raises(ValueError, match="MeshSize has no field 'depth'"):
        to_word(MeshSize, depth=1)


def test_opcodes_and_error_codes_are_8_bit_enums():
    for c in Cmd:
        assert Opcode[c.name] == c and Opcode[f"{c.name}_RESP"] == c | RESPONSE
    assert len(Opcode) == 2 * len(Cmd) + 2 and (OUTPUT, ERROR) == (0x90, 0xFF)
    for enum in (Cmd, Opcode, ErrorCode):
        assert Shape.cast(enum) == unsigned(8)
    assert data.Layout.cast(FrameHeader)["opcode"].shape is Opcode
    assert data.Layout.cast(StatusFlags)["overrun"].offset == 0


# -- docs/hostlink.md agrees with the code ---------------------------------------------------------

DOC = Path(__file__).resolve().parent.parent / "docs" / "hostlink.md"


def layouts_in_doc():
    return {"FrameHeader": FrameHeader, "Target": Target, "OutputTag": OutputTag,
            "MeshSize": MeshSize, "StatusFlags": StatusFlags,
            "cfg_addr_layout": cfg_addr_layout(CFG)}


def test_doc_field_tables_are_the_layouts():
    text = DOC.read_text()
    rows = re.findall(r"^\| `(\w+)` \| `(\w+)` \| (\d+)(?:\.\.(\d+))? \| (\d+) \|", text, re.M)
    documented = {(lay, name): (int(lo), int(hi or lo), int(w)) for lay, name, lo, hi, w in rows}
    expected = {(lay, name): (f.offset, f.offset + f.width - 1, f.width)
                for lay, layout in layouts_in_doc().items()
                for name, f in data.Layout.cast(layout)}
    assert documented == expected
    spec = (DOC.parent / "architecture.md").read_text()
    for name, f in data.Layout.cast(FrameHeader):
        assert f"`{name}` bits {f.offset}..{f.offset + f.width - 1}" in spec, name


def test_doc_code_tables_are_the_enums():
    text = DOC.read_text()
    opcodes = dict(re.findall(r"^\| `0x([0-9A-F]{2})` \| `(\w+)` \|", text, re.M))
    assert {int(k, 16): v for k, v in opcodes.items()} == {int(o): o.name for o in Opcode}
    errors = dict(re.findall(r"^\| `(\d+)` \| `(BAD_\w+)` \|", text, re.M))
    assert {int(k): v for k, v in errors.items()} == {int(e): e.name for e in ErrorCode}


def annotate(words):
    """One line per word of a frame: the word in hex and what it is."""
    head = from_word(FrameHeader, words[0])
    op = Opcode(head["opcode"])
    lines = [f"{words[0]:08X}  header: {op.name}, seq {head['seq']}, length {head['length']}"]
    payload = words[1:-1]
    if op in (Cmd.WRITE, Cmd.INJECT):
        for t, v in zip(payload[0::2], payload[1::2]):
            x, y, a = untarget(t)
            lines += [f"{t:08X}  target: x {x}, y {y}, addr 0x{a:05X}", f"{v:08X}  value"]
    elif op == Opcode.STATUS_RESP:
        mesh, flags = from_word(MeshSize, payload[1]), from_word(StatusFlags, payload[3])
        lines += [f"{payload[0]:08X}  MAGIC", f"{payload[1]:08X}  MeshSize: width "
                  f"{mesh['width']}, height {mesh['height']}", f"{payload[2]:08X}  step",
                  f"{payload[3]:08X}  StatusFlags: overrun {flags['overrun']}"]
    elif op == ERROR:
        lines += [f"{payload[0]:08X}  {ErrorCode(payload[0]).name}",
                  f"{payload[1]:08X}  the header of the rejected frame"]
    return lines + [f"{words[-1]:08X}  checksum (TLAST)"]


def example_exchange():
    """The exchange docs/hostlink.md shows, computed: commands by encode_frame, answers by the
    reference model (which the RTL matches word for word, tests/test_hostlink.py)."""
    cfg = FabricConfig()
    link = HostLinkModel(GoldenFabric(cfg))
    coef = pack(cfg_addr_layout(cfg), mem=Mem.COEF, index=3, part=6)
    write = encode_frame(Cmd.WRITE, [target(1, 0, coef), 100], seq=2)
    commands = [("STATUS", encode_frame(Cmd.STATUS, seq=1)),
                ("WRITE: C6 of neuron 3 on tile (1, 0) = 100", write),
                ("the same WRITE with a damaged checksum", write[:-1] + [write[-1] + 1])]
    out = []
    for what, words in commands:
        answer = link.process(words, [False] * (len(words) - 1) + [True])
        out += [f"host -> fabric   {what}"] + [f"  {line}" for line in annotate(words)]
        out += ["fabric -> host"] + [f"  {line}" for line in annotate(answer)]
    return "\n".join(out)


def test_doc_example_exchange_is_what_the_link_answers():
    assert example_exchange() in DOC.read_text()
