"""The multipliers on both targets: ``hw.core.alu._Product`` elaborated for simulation (two
registers around a ``*``) and for ECP5 (``MULT18X18D`` with input and output registers, run on
``tests/support/mult18x18d.v``, a model of the primitive written from Lattice's sysDSP usage
guide) give a * k exactly, ``_Product.LAT`` cycles after the operands, every cycle, over random
and extreme operands. Every core and fabric simulation runs the first form; synthesis and the
board builds the second, so this test is what ties the two together.

Also checked in Yosys: the ECP5 form maps to one ``MULT18X18D`` per partial product and no
multiplier logic in LUTs.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import cocotb
import pytest
from amaranth.hdl import Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge, Timer

from neuroloom.fpga.synth import synthesize
from neuroloom.hw.core.alu import _Product
from neuroloom.hw.targets import ECP5
from neuroloom.hw.verilog import to_verilog
from neuroloom.sim.cache import write_verilog
from neuroloom.sim.verilator import run_cocotb

TOP = "dsp_bench"
MODEL = Path(__file__).parent / "support" / "mult18x18d.v"
#: (operand width, coefficient width) of each product under test: the neuron datapath's
#: state x coefficient (split into an unsigned 6-bit and a signed 18-bit part), the synapse
#: engine's payload x weight, and one that needs no split
PAIRS = ((24, 16), (24, 8), (18, 16))
CYCLES = 3000


class DspBench(wiring.Component):
    """One ``_Product`` per entry of :data:`PAIRS`, each with its own operands."""

    def __init__(self):
        ports = {}
        for i, (wa, wk) in enumerate(PAIRS):
            ports[f"a{i}"] = In(signed(wa))
            ports[f"k{i}"] = In(signed(wk))
            ports[f"p{i}"] = Out(signed(wa + wk))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        for i in range(len(PAIRS)):
            prod = _Product(m, getattr(self, f"a{i}"), getattr(self, f"k{i}"), f"prod{i}")
            m.d.comb += getattr(self, f"p{i}").eq(prod.value)
        return m


def _operand(rng: random.Random, width: int) -> int:
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    pick = rng.random()
    if pick < 0.15:
        return rng.choice((lo, hi, 0, -1, 1, lo + 1, hi - 1))
    if pick < 0.25:             # values around the 6-bit split of a 24-bit operand
        return max(lo, min(hi, rng.choice((-1, 1)) * ((1 << 6) + rng.randrange(-2, 2))))
    return rng.randint(lo, hi)


@cocotb.test()
async def products(dut):
    rng = random.Random(int(os.environ.get("DSP_SEED", "1")))
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    await RisingEdge(dut.clk)
    dut.rst.value = 0
    sent = []
    for cycle in range(CYCLES + _Product.LAT):
        ops = [(_operand(rng, wa), _operand(rng, wk)) for wa, wk in PAIRS]
        for i, (a, k) in enumerate(ops):
            getattr(dut, f"a{i}").value = a
            getattr(dut, f"k{i}").value = k
        sent.append(ops)
        await RisingEdge(dut.clk)
        await Timer(1, unit="ns")
        if cycle >= _Product.LAT - 1:
            want = sent[cycle - (_Product.LAT - 1)]
            for i, (a, k) in enumerate(want):
                got = getattr(dut, f"p{i}").value.to_signed()
                assert got == a * k, f"cycle {cycle}, product {i}: {a} * {k} = {a * k}, got {got}"


@pytest.mark.rtl
@pytest.mark.parametrize("target", ["sim", "ecp5"])
def test_products_exact_on_both_targets(target):
    bench = DspBench()
    text = to_verilog(bench, TOP, platform=ECP5 if target == "ecp5" else None)
    assert ("MULT18X18D" in text) == (target == "ecp5")
    src = write_verilog(text, TOP, kind="dsp")
    sources = [src, MODEL] if target == "ecp5" else [src]
    result = run_cocotb(TOP, sources, __name__, src.parent / "verilator",
                        extra_env={"DSP_SEED": "7"},
                        test_dir=src.parent / f"run_{os.getpid()}")
    assert result.tests == 1 and result.failed == 0


def test_ecp5_products_map_to_registered_dsp_blocks():
    bench = DspBench()
    r = synthesize(to_verilog(bench, TOP, platform=ECP5), top=TOP, pnr=False)
    # 24-bit operands take two blocks (high and low part), the 18-bit one takes one
    assert r.cells.get("MULT18X18D") == 5
    # no multiplier built from logic: what LUTs remain add the two partial products
    assert r.cells.get("LUT4", 0) < 200
