"""NeuronCore in amaranth.sim: config write/read round trip of every memory, idle behaviour,
and back-to-back spikes onto one accumulator (the synapse engine's read-modify-write hazard)."""

import random

from amaranth.sim import Simulator

from neuroloom.contract.coreconfig import CoreConfig, Synapse
from neuroloom.contract.layouts import (
    FlitKind,
    Mem,
    cfg_addr_layout,
    flit_layout,
    mem_depth,
    mem_parts,
    mem_word_layout,
    pack,
)
from neuroloom.hw.core.core import NeuronCore
from neuroloom.hw.core.memories import poison_collisions
from neuroloom.sim.golden import GoldenFabric
from tests.support.core import SMALL

CFG = SMALL
XY = (1, 0)


def _run(bench):
    dut = NeuronCore(CFG, *XY)
    with poison_collisions():    # block-RAM collision reads poisoned (memories.py)
        sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def testbench(ctx):
        await bench(ctx, dut)

    sim.add_testbench(testbench)
    sim.run()


async def _send(ctx, dut, kind, addr, data=0):
    ctx.set(dut.i_flit.payload, flit_layout(CFG).const(
        dict(dst_x=XY[0], dst_y=XY[1], kind=kind, addr=addr, data=data & 0xFFFFFFFF)))
    ctx.set(dut.i_flit.valid, 1)
    await ctx.tick().until(dut.i_flit.ready)
    ctx.set(dut.i_flit.valid, 0)


async def _read(ctx, dut, addr):
    await _send(ctx, dut, FlitKind.CFG_READ, addr)
    ctx.set(dut.o_flit.ready, 1)
    flit, = await ctx.tick().sample(dut.o_flit.payload).until(dut.o_flit.valid)
    ctx.set(dut.o_flit.ready, 0)
    assert flit.kind == FlitKind.READ_RESP and flit.addr == addr
    return flit.data


def _legal_value(rng, mem, part):
    """A value golden would store and read back unchanged for this memory part."""
    layout = mem_word_layout(CFG, mem)
    if layout is not None:
        bits = min(32, layout.size - 32 * part)
        return rng.getrandbits(bits)
    width = {Mem.STATE: CFG.state_width, Mem.COEF: CFG.coef_width, Mem.ACC: 32,
             Mem.COUNTER: 32, Mem.MSTATE: CFG.state_width, Mem.MCOEF: CFG.coef_width}[mem]
    return rng.randint(-(1 << (width - 1)), (1 << (width - 1)) - 1) & 0xFFFFFFFF


def test_config_roundtrip_every_memory():
    rng = random.Random(5)
    golden = GoldenFabric(CFG)
    core = CFG.core_index(*XY)
    writes = []
    for mem in Mem:
        for _ in range(4):
            index = rng.randrange(mem_depth(CFG, mem))
            part = rng.randrange(mem_parts(CFG, mem))
            writes.append((mem, index, part, _legal_value(rng, mem, part)))

    async def bench(ctx, dut):
        A = cfg_addr_layout(CFG)
        for mem, index, part, value in writes:
            if mem == Mem.COUNTER:
                continue  # BUSY_CYCLES counts on; checked in the cocotb tests
            await _send(ctx, dut, FlitKind.CFG_WRITE, pack(A, mem=mem, index=index, part=part),
                        value)
            golden.write(core, mem, index, part, value)
        for mem, index, part, _ in writes:
            if mem == Mem.COUNTER:
                continue
            got = await _read(ctx, dut, pack(A, mem=mem, index=index, part=part))
            want = golden.read(core, mem, index, part)
            assert got == want, f"{mem.name}[{index}].{part}: {got:#x} != {want:#x}"

    _run(bench)


def test_back_to_back_rows_on_one_neuron_and_idle():
    L = CFG.synapse_lanes
    cc = CoreConfig(CFG)
    cc.add_axon([Synapse(2, (1 << L) - 1, (7, -3, 127, -128)[:L]) for _ in range(5)]
                + [Synapse(3, 1, (1,) * L), Synapse(2, 1, (-1,) * L)], 1)
    golden = GoldenFabric(CFG)
    core = CFG.core_index(*XY)

    async def bench(ctx, dut):
        A = cfg_addr_layout(CFG)
        for mem, index, part, value in cc.writes():
            await _send(ctx, dut, FlitKind.CFG_WRITE, pack(A, mem=mem, index=index, part=part),
                        value)
            golden.write(core, mem, index, part, value)
        # the last write leaves the core's input FIFO and takes effect within a few cycles;
        # ``idle`` is registered (one cycle after the core went quiet)
        for _ in range(NeuronCore.PORT_DEPTH + 4):
            await ctx.tick()
        assert ctx.get(dut.idle)
        for payload in (1000, -77, 8388607):
            await _send(ctx, dut, FlitKind.SPIKE, 0, payload)
            assert not ctx.get(dut.idle), "idle must drop the cycle after a flit is accepted"
            golden.inject(core, 0, payload)
        await ctx.tick().until(dut.idle)
        for n in range(2 * L, 4 * L):
            got = await _read(ctx, dut, pack(A, mem=Mem.ACC, index=n, part=0))
            assert got == golden.read(core, Mem.ACC, n, 0), f"acc[0][{n}]"

    _run(bench)
