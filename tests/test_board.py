# amaranth: UnusedElaboratable=no
"""Board tops: PLL dividers, board table, the ULX3S-85F top elaborated to Verilog + pin
constraints (fast), and the UART fabric answering frames over its serial lines in amaranth.sim.
"""

import json
import re
from pathlib import Path

import pytest
from amaranth.sim import Simulator

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.hostproto import ERROR, MAGIC, Cmd, decode_frames, encode_frame
from neuroloom.firmware.driver import open_transport
from neuroloom.fpga.boards import BOARDS, board
from neuroloom.fpga.ecp5 import pll_params
from neuroloom.fpga.top import BoardTop, UARTFabric
from neuroloom.hw.core.memories import poison_collisions
from tests.test_uart import receive_bytes, send_bytes, slip, unslip

SMALL = FabricConfig(mesh_w=1, mesh_h=1, neurons=16, axons=16, synapse_rows=32, synapse_lanes=1,
                     route_words=16, ucode_depth=32, groups=2, modes=16)


@pytest.mark.parametrize("f_in, f_out", [(25, 50), (25, 100), (25, 62.5), (25, 33.333),
                                         (12, 48), (25, 133)])
def test_pll_dividers_make_the_clock_within_the_ecp5_ranges(f_in, f_out):
    p = pll_params(f_in, f_out)
    # the EHXPLLL relations, written from the datasheet: out = in / CLKI_DIV * CLKFB_DIV
    out = f_in / p.clki_div * p.clkfb_div
    assert abs(out - f_out) <= 0.005 * f_out, (p, out)
    assert 3.125 <= f_in / p.clki_div <= 400
    assert 400 <= out * p.clkop_div <= 800
    assert 1 <= p.clki_div <= 128 and 1 <= p.clkfb_div <= 80 and 1 <= p.clkop_div <= 128


def test_impossible_clocks_are_refused_with_the_range():
    with pytest.raises(ValueError, match=r"makes 3\.125 \.\. 400 MHz, not 500 MHz"):
        pll_params(25, 500)
    with pytest.raises(ValueError, match=r"makes 3\.125 \.\. 400 MHz, not 1 MHz"):
        pll_params(25, 1)
    with pytest.raises(ValueError, match=r"cannot make 50 MHz from 12 MHz \(nearest: 48 MHz\); "
                                         r"choose .* a multiple of 4 MHz"):
        pll_params(12, 50)


def test_unknown_board_names_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown board 'arty'; known boards: ecp5-5g-evn, "
                                         r"ulx3s-85f"):
        board("arty")


def test_board_top_refuses_a_baud_no_uart_clock_makes():
    with pytest.raises(ValueError, match=r"baud 30000000: no UART clock the PLL makes beside the "
                                         r"40 MHz fabric clock \(up to 80 MHz, >= 4 cycles per "
                                         r"bit\)"):
        BoardTop(board("ulx3s-85f"), SMALL, clock_mhz=40, baud=30_000_000)
    with pytest.raises(ValueError, match=r"cannot make 51 MHz from 25 MHz"):
        BoardTop(board("ulx3s-85f"), SMALL, clock_mhz=51)


@pytest.mark.parametrize("clock", [6.25, 25, 40, 50, 56.25, 62.5, 75, 100, 133.33])
def test_the_uart_clock_makes_3_mbaud_whatever_the_fabric_clock(clock):
    top = BoardTop(board("ulx3s-85f"), SMALL, clock_mhz=clock)
    p = top.pll
    fabric = 25 / p.clki_div * p.clkfb_div                  # CLKOP
    uart = fabric * p.clkop_div / p.clkos_div                # CLKOS = VCO / CLKOS_DIV
    assert abs(fabric - clock) <= 0.005 * clock, (p, fabric)
    assert 400 <= fabric * p.clkop_div <= 800 and 1 <= p.clkos_div <= 128
    assert top.baud == 3_000_000, top.clocks
    assert uart <= 80 and top.divisor >= 16, (p, uart, top.divisor)
    # half of our half of the margin left after the stop bit's sampling uncertainty (2 cycles)
    error = abs(uart * 1e6 / top.divisor - 3e6) / 3e6
    assert error <= (0.5 - 2 / top.divisor) / 9.5 / 4, (p, uart, error)
    if clock != 133.33:
        assert error < 1e-9, "the PLL makes an exact 3 Mbaud clock for this fabric clock"


def test_a_given_baud_gets_a_uart_clock_of_its_own():
    for baud in (1_000_000, 2_000_000, 115_200):
        top = BoardTop(board("ulx3s-85f"), SMALL, clock_mhz=50, baud=baud)
        p = top.pll
        uart_hz = 25e6 / p.clki_div * p.clkfb_div * p.clkop_div / p.clkos_div
        assert top.baud == baud
        assert abs(uart_hz / top.divisor - baud) / baud < 0.01, (baud, uart_hz, top.divisor)


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_board_top_elaborates_to_verilog_and_pins(name):
    b = board(name)
    clock = 50 if name == "ulx3s-85f" else 48
    top = BoardTop(b, SMALL, clock_mhz=clock)
    assert top.baud == 3_000_000
    plan = b.platform().prepare(top, name="top", debug_verilog=True)
    verilog = plan.files["top.debug.v"]
    lpf = plan.files["top.lpf"]
    p = top.pll
    assert "EHXPLLL" in verilog
    for param, value in [("CLKI_DIV", p.clki_div), ("CLKFB_DIV", p.clkfb_div),
                         ("CLKOP_DIV", p.clkop_div), ("CLKOS_DIV", p.clkos_div)]:
        assert f".{param}(32'd{value})" in verilog, f"{param} {value} not in the PLL instance"
    assert '.CLKOS_ENABLE("ENABLED")' in verilog
    assert "cmd_cdc" in verilog and "resp_cdc" in verilog, "no clock-domain crossing"
    assert "reset_uart" in verilog and "reset_sync" in verilog
    assert "DCCA" in verilog and "sync_rst_dcca" in verilog, "the fabric's reset not on a global"
    if name == "ulx3s-85f":       # FT231X: FPGA rx on M1, tx on L4 (the ULX3S schematic)
        assert 'LOCATE COMP "uart_0__rx__io" SITE "M1"' in lpf
        assert 'LOCATE COMP "uart_0__tx__io" SITE "L4"' in lpf
        assert 'SITE "B2"' in lpf                # led 0


class UARTTicks:
    """A testbench context whose ``tick()`` is the UART clock's (for the line helpers)."""

    def __init__(self, ctx):
        self._ctx = ctx

    def tick(self):
        return self._ctx.tick("uart")

    def __getattr__(self, name):
        return getattr(self._ctx, name)


@pytest.mark.parametrize("fabric_period", [1.37e-6, 0.61e-6])
def test_uart_fabric_answers_status_and_bad_frames_over_its_lines(fabric_period):
    """The board's logic (no PLL) in amaranth.sim, the fabric clock slower or faster than the
    UART clock: STATUS, a damaged frame, STATUS again."""
    div = 4
    dut = UARTFabric(SMALL, div, blink_cycles=64)
    status = encode_frame(Cmd.STATUS, [], seq=5)
    damaged = slip(encode_frame(Cmd.RUN, [3], seq=6))
    del damaged[5]
    host = slip(status) + damaged + slip(encode_frame(Cmd.STATUS, [], seq=7))
    got = []
    leds = []

    async def host_tb(ctx):
        await send_bytes(UARTTicks(ctx), dut.rx, host, bit_cycles=div)

    async def monitor(ctx):
        while got.count(0xC0) < 3:
            got.extend(await receive_bytes(UARTTicks(ctx), dut.tx, 1, bit_cycles=div,
                                           timeout=20_000))

    async def lights(ctx):
        async for _, _, value in ctx.tick().sample(dut.leds):
            leds.append(value)

    with poison_collisions():    # block-RAM collision reads poisoned (memories.py)
        sim = Simulator(dut)
    sim.add_clock(1e-6, domain="uart")
    sim.add_clock(fabric_period)
    sim.add_testbench(host_tb)
    sim.add_testbench(monitor)
    sim.add_testbench(lights, background=True)
    sim.run()
    frames = unslip(got)
    decoded = [decode_frames(f)[0] for f in frames]
    assert [(f.opcode, f.seq) for f in decoded] == [(Cmd.STATUS | 0x80, 5), (ERROR, 6),
                                                    (Cmd.STATUS | 0x80, 7)], decoded
    assert decoded[0].payload[:2] == [MAGIC, 0x101]
    assert any(v & 0b10000 for v in leds), "error light never lit"
    assert any(v & 0b00010 for v in leds), "traffic light never lit"


# -- the build flow (tools replaced by a stand-in; the real build is the slow test below) -------
def fake_synthesize(fmax_by_seed, fail=None, uart_fmax=None, calls=None):
    """``uart_fmax``: write nextpnr reports with the fabric clock (constrained to the requested
    clock) and the UART clock (60 MHz) apart, as a two-clock board top gives them. ``calls``:
    a list that gets each call's nextpnr options."""
    from neuroloom.fpga.synth import NextpnrError, PnrRun, SynthResult

    def synthesize(verilog, *, top, part, frequency_mhz, seeds, bitstream, lpf, out_dir,
                   timeout, nextpnr_args):
        assert "--router" in nextpnr_args, nextpnr_args
        if calls is not None:
            calls.append(list(nextpnr_args))
        if fail:
            raise NextpnrError(fail)
        out = Path(out_dir)
        (out / "top.bit").write_bytes(b"\xff" * 4096)
        if uart_fmax is not None:
            for s in seeds:
                (out / f"r{s}.json").write_text(json.dumps({"fmax": {
                    "$glbnet$fabric.clk": {"achieved": fmax_by_seed[s],
                                           "constraint": frequency_mhz},
                    "$glbnet$fabric.cmd_cdc.uart_clk": {"achieved": uart_fmax,
                                                         "constraint": 60.0}}}))
        runs = tuple(PnrRun(seed=s, fmax_mhz={"clk": min(fmax_by_seed[s], uart_fmax or 1e9)},
                            critical_path=(), log=out / "log", report=out / f"r{s}.json",
                            seconds=1.0) for s in seeds)
        util = {"TRELLIS_COMB": {"used": 9000, "available": 83640},
                "TRELLIS_FF": {"used": 5000, "available": 83640},
                "DP16KD": {"used": 40, "available": 208},
                "MULT18X18D": {"used": 4, "available": 156}}
        return SynthResult(top=top, part=part, frequency_mhz=frequency_mhz, workdir=out,
                           cells={}, latches=False, yosys_log=out / "yosys.log",
                           synth_seconds=2.0, runs=runs, utilization=util,
                           bitstream=out / "top.bit")
    return synthesize


def test_build_reports_resources_fmax_and_keeps_files(tmp_path, monkeypatch):
    import neuroloom.fpga.build as fb
    monkeypatch.setattr(fb, "synthesize", fake_synthesize({1: 61.3, 2: 48.0}))
    lines = []
    done = fb.build("ulx3s-85f", SMALL, clock_mhz=50, seeds=(1, 2), out_dir=tmp_path,
                    log=lines.append)
    assert [line[:5] for line in lines if line.startswith("[")] == ["[1/3]", "[2/3]", "[3/3]"]
    table = done.table()
    assert "LUT4" in table and "9000" in table and "83640" in table
    assert "DP16KD" in table and "MULT18X18D" in table
    assert "61.3   meets" in table and "48.0   MISSES" in table
    assert f"bitstream: {tmp_path / 'top.bit'} (4 KiB)" in table
    for name in ("top.v", "top.lpf", "report.txt", "build.json"):
        assert (tmp_path / name).is_file(), name
    figures = json.loads((tmp_path / "build.json").read_text())
    assert figures["fmax_mhz_by_seed"] == {"1": 61.3, "2": 48.0}
    assert figures["resources"]["DP16KD"] == {"used": 40, "available": 208}
    assert figures["bitstream_bytes"] == 4096
    assert figures["nextpnr_router"] == "router2" and figures["nextpnr_tmg_ripup"] is False


def test_build_passes_timing_driven_ripup_to_nextpnr(tmp_path, monkeypatch):
    import neuroloom.fpga.build as fb
    calls = []
    monkeypatch.setattr(fb, "synthesize", fake_synthesize({1: 61.3}, calls=calls))
    fb.build("ulx3s-85f", SMALL, clock_mhz=50, out_dir=tmp_path / "a", log=lambda s: None)
    done = fb.build("ulx3s-85f", SMALL, clock_mhz=50, out_dir=tmp_path / "b",
                    log=lambda s: None, tmg_ripup=True)
    assert "--tmg-ripup" not in calls[0] and "--tmg-ripup" in calls[1]
    assert calls[1][calls[1].index("--router") + 1] == "router2"
    assert json.loads((tmp_path / "b" / "build.json").read_text())["nextpnr_tmg_ripup"] is True
    assert done.tmg_ripup


def test_build_passes_the_placer_to_nextpnr(tmp_path, monkeypatch):
    import neuroloom.fpga.build as fb
    calls = []
    monkeypatch.setattr(fb, "synthesize", fake_synthesize({1: 61.3}, calls=calls))
    fb.build("ulx3s-85f", SMALL, clock_mhz=50, out_dir=tmp_path / "a", log=lambda s: None)
    lines = []
    fb.build("ulx3s-85f", SMALL, clock_mhz=50, out_dir=tmp_path / "b", log=lines.append,
             placer="static")
    assert "--placer" not in calls[0]
    assert calls[1][calls[1].index("--placer") + 1] == "static"
    assert any("static placer" in line for line in lines), lines
    figures = [json.loads((tmp_path / d / "build.json").read_text()) for d in "ab"]
    assert [f["nextpnr_placer"] for f in figures] == ["heap", "static"]
    with pytest.raises(ValueError, match="placer 'sa': choose one of heap, static"):
        fb.build("ulx3s-85f", SMALL, clock_mhz=50, out_dir=tmp_path / "c", placer="sa")


def test_build_that_misses_the_clock_names_a_clock_that_works(tmp_path, monkeypatch):
    import neuroloom.fpga.build as fb
    monkeypatch.setattr(fb, "synthesize", fake_synthesize({1: 20.2}))
    with pytest.raises(fb.BuildError, match=r"best seed reaches 20\.2 MHz, below the 50 MHz "
                                            r"clock; build with --clock 18\.75"):
        fb.build("ulx3s-85f", SMALL, clock_mhz=50, out_dir=tmp_path, log=lambda s: None)
    assert (tmp_path / "report.txt").is_file(), "the reports stay when timing fails"


def test_build_judges_the_fabric_and_the_uart_clock_each_by_its_own(tmp_path, monkeypatch):
    import neuroloom.fpga.build as fb
    monkeypatch.setattr(fb, "synthesize", fake_synthesize({1: 52.5}, uart_fmax=48.0))
    with pytest.raises(fb.BuildError, match=r"the UART clock's logic reaches 48\.0 MHz, below "
                                            r"its 60 MHz clock"):
        fb.build("ulx3s-85f", SMALL, clock_mhz=50, out_dir=tmp_path, log=lambda s: None)
    # the UART clock's logic slower than the fabric's but faster than its own clock: meets
    monkeypatch.setattr(fb, "synthesize", fake_synthesize({1: 101.0, 2: 90.0}, uart_fmax=95.0))
    done = fb.build("ulx3s-85f", SMALL, clock_mhz=100, seeds=(1, 2), out_dir=tmp_path,
                    log=lambda s: None)
    assert done.fmax_by_seed == {1: 101.0, 2: 90.0} and done.best_fmax == 101.0
    assert done.uart_fmax_by_seed == {1: 95.0, 2: 95.0}
    table = done.table()
    assert "101.0   meets (UART clock 95.0 MHz: meets 60)" in table, table
    assert "90.0   MISSES (UART clock 95.0 MHz: meets 60)" in table, table
    figures = json.loads((tmp_path / "build.json").read_text())
    assert figures["uart_clock_mhz"] == 60 and figures["uart_fmax_mhz_by_seed"]["1"] == 95.0


def test_build_that_does_not_fit_names_the_resource(tmp_path, monkeypatch):
    import neuroloom.fpga.build as fb
    msg = ("nextpnr-ecp5 failed (exit 255) for top, seed 1; log x:\nERROR: Unable to place "
           "cell 'dp', no BELs remaining to implement cell type 'DP16KD'")
    monkeypatch.setattr(fb, "synthesize", fake_synthesize({}, fail=msg))
    with pytest.raises(fb.BuildError, match=r"1x1 fabric does not fit the ulx3s-85f: it needs "
                                            r"more DP16KD than the part has; use fewer"):
        fb.build("ulx3s-85f", SMALL, out_dir=tmp_path, log=lambda s: None)


def test_program_without_a_board_says_so(tmp_path, monkeypatch):
    from neuroloom.fpga.build import ProgramError, program
    bit = tmp_path / "top.bit"
    with pytest.raises(FileNotFoundError, match=r"no bitstream .*top\.bit: build one first"):
        program(bit)
    bit.write_bytes(b"\xff")
    fake = tmp_path / "openFPGALoader"           # what openFPGALoader 0.10 prints, no board
    fake.write_text("#!/bin/sh\necho 'unable to open ftdi device: -3 (device not found)'\n"
                    "echo 'JTAG init failed with: unable to open ftdi device' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("OPENFPGALOADER", str(fake))
    with pytest.raises(ProgramError, match=r"no ulx3s-85f board found: plug it in"):
        program(bit)
    monkeypatch.setenv("OPENFPGALOADER", str(tmp_path / "missing"))
    with pytest.raises(ProgramError, match=r"openFPGALoader not found at .*missing"):
        program(bit)


def test_program_passes_the_board_and_bitstream(tmp_path, monkeypatch):
    from neuroloom.fpga.build import program
    bit = tmp_path / "top.bit"
    bit.write_bytes(b"\xff")
    fake = tmp_path / "loader"
    fake.write_text('#!/bin/sh\necho "args: $*"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("OPENFPGALOADER", str(fake))
    assert program(bit).strip() == f"args: -b ulx3s {bit}"
    assert program(bit, flash=True).strip() == f"args: -b ulx3s -f {bit}"


@pytest.mark.slow
def test_real_board_build_of_a_small_fabric(tmp_path):
    """The whole flow on the real tools (~10-30 minutes): a bitstream and the table."""
    from neuroloom.fpga.build import build
    done = build("ulx3s-85f", SMALL, clock_mhz=25, out_dir=tmp_path, check_timing=False,
                 log=lambda s: None)
    assert done.bitstream is not None and done.bitstream.stat().st_size > 100_000
    used, avail = done.resources()["LUT4"]
    assert 0 < used < avail
    assert done.best_fmax and done.best_fmax > 5


def test_cli_fpga_build_prints_stages_table_and_bitstream(tmp_path, monkeypatch, capsys):
    import neuroloom.fpga.build as fb
    from neuroloom.cli import main
    monkeypatch.setattr(fb, "synthesize", fake_synthesize({1: 63.8, 2: 45.0}))
    assert main(["fpga", "build", "--mesh", "1x1", "--neurons", "16", "--axons", "16",
                 "--synapse-rows", "32", "--route-words", "16", "--modes", "16", "--seeds", "2",
                 "-o", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == f"bitstream: {tmp_path / 'top.bit'}"
    assert "[1/3] elaborate: ulx3s-85f, 1x1 fabric, PLL 25 -> 62.5 MHz" in err
    assert "63.8   meets" in err and "45.0   MISSES" in err
    assert main(["fpga", "build", "-o", str(tmp_path)]) == 1
    assert "give the mesh" in capsys.readouterr().err
    calls = []
    monkeypatch.setattr(fb, "synthesize", fake_synthesize({1: 63.8}, calls=calls))
    assert main(["fpga", "build", "--mesh", "1x1", "--neurons", "16", "--axons", "16",
                 "--synapse-rows", "32", "--route-words", "16", "--modes", "16", "--tmg-ripup",
                 "--placer", "static", "-o", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert "--tmg-ripup" in calls[0] and "timing-driven rip-up, static placer" in err
    assert calls[0][calls[0].index("--placer") + 1] == "static"
    monkeypatch.setattr(fb, "synthesize", fake_synthesize({1: 20.0}))
    assert main(["fpga", "build", "--mesh", "1x1", "--clock", "50", "-o", str(tmp_path)]) == 1
    assert "below the 50 MHz clock; build with --clock 18.75" in capsys.readouterr().err


def test_the_serial_default_baud_is_the_default_board_builds():
    from neuroloom.firmware.serial import DEFAULT_BAUD
    from neuroloom.fpga.build import DEFAULT_CLOCK_MHZ
    top = BoardTop(board("ulx3s-85f"), SMALL, clock_mhz=DEFAULT_CLOCK_MHZ)
    assert top.baud == DEFAULT_BAUD
    assert abs(top.pll.f_out_mhz - DEFAULT_CLOCK_MHZ) < 1e-9


# -- eval and demo on a board (--backend serial): errors and reports ----------------------------
def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("command", [["eval", "firmware/models/digits-q"], ["demo"]])
def test_serial_backend_errors_are_one_line(command, capsys):
    import os

    from neuroloom.cli import main
    assert main([*command, "--backend", "serial"]) == 1
    assert "--backend serial needs --port" in _one_error_line(capsys)
    assert main([*command, "--backend", "serial", "--port", "/dev/no-such-tty"]) == 1
    assert "cannot open serial port '/dev/no-such-tty'" in _one_error_line(capsys)
    master, slave = os.openpty()                     # a port with no board behind it
    try:
        assert main([*command, "--backend", "serial", "--port", os.ttyname(slave)]) == 1
        assert re.search(r"no answer from the board on /dev/pts/\d+ to command 0x07 "
                         r"\(seq 0\) within 2 s", _one_error_line(capsys))
    finally:
        os.close(master)
        os.close(slave)
    assert main([*command, "--backend", "golden", "--baud", "3000000"]) == 1
    assert "--port and --baud need --backend serial" in _one_error_line(capsys)


class _SilentCycles:
    """The host link reference model as a board's link: answers, counts no clock cycles."""

    def __init__(self, cfg):
        self.inner = open_transport("model", cfg=cfg).link
        self.port_name, self.baud = "/dev/ttyFAKE0", 3_000_000
        self.board_status = {"mesh_w": cfg.mesh_w, "mesh_h": cfg.mesh_h, "step": 0,
                             "overrun": False}

    def exchange(self, words):
        return self.inner.exchange(words)

    def close(self):
        pass


def test_demo_on_a_board_reports_counters_and_wall_time_not_cycles(monkeypatch, capsys):
    """``demo --backend serial``: a board counts no clock cycles, so the performance table has
    the fabric's counters (here checked against the golden model's) and the host's wall time,
    and says so; no cycles/token and no clock."""
    import contextlib
    import dataclasses

    from neuroloom.cli import command_module, main
    from neuroloom.contract.transport import ARCH_COUNTERS, Counter
    from neuroloom.firmware.compiler import from_compiled
    from neuroloom.firmware.datasets import digits
    from neuroloom.firmware.demo import shipped_model
    from neuroloom.firmware.deploy import compile_fitting
    from neuroloom.firmware.driver import Driver, golden_driver
    from neuroloom.firmware.transports import FramedTransport

    @contextlib.contextmanager
    def board(args):
        yield Driver(FramedTransport(_SilentCycles(FabricConfig())))

    import neuroloom.firmware.demo as demo
    split = digits()                                 # 12 test sequences keep the test short
    monkeypatch.setattr(demo, "digits", lambda: dataclasses.replace(
        split, x_test=split.x_test[:12], y_test=split.y_test[:12]))
    monkeypatch.setattr(command_module("demo"), "board_driver", board)
    assert main(["demo", "--backend", "serial", "--port", "/dev/ttyFAKE0", "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("board == golden bit-exact on 2/2 samples") == 2, out
    assert "cycles/token" not in out and "MHz" not in out, out
    assert "no clock cycles" in out and "wall time" in out and "/dev/ttyFAKE0" in out
    # the expected figures, from the golden model on the same two samples
    _, q, _ = shipped_model()
    image = from_compiled(compile_fitting(q, FabricConfig(), "pipelined", mesh_fixed=True))
    gold = golden_driver(1)
    gold.load(image)
    xq = gold.quantize(digits().x_test[:2])
    col = ARCH_COUNTERS.index(Counter.SYN_OPS)
    for mode in ("pipelined", "fall-through"):
        runs = [gold.run(xq[b:b + 1], mode=mode) for b in range(2)]
        tokens = 2 * xq.shape[1]
        steps = sum(r.steps for r in runs) / tokens
        syn_ops = sum(int(r.counters[:, col].sum()) for r in runs) / tokens
        row = next(ln for ln in out.splitlines() if ln.startswith(f"{mode} "))
        fields = row.split()
        assert float(fields[1]) == pytest.approx(steps, abs=0.005), (row, steps)
        assert float(fields[2]) == pytest.approx(syn_ops, abs=0.05), (row, syn_ops)
        assert float(fields[4]) > 0 and int(fields[5]) == 2, row


def test_the_default_board_clock_is_one_the_recorded_default_build_met():
    """DEFAULT_CLOCK_MHZ is the clock of bench/results/board.json's build, which met it (both
    clocks), with the default fabric's mesh 1x1 of default cores."""
    from neuroloom.fpga.build import DEFAULT_CLOCK_MHZ
    record = json.loads((Path(__file__).resolve().parents[1] / "bench" / "results" /
                         "board.json").read_text())
    assert record["clock_mhz_pll"] == DEFAULT_CLOCK_MHZ, record["clock_mhz_pll"]
    assert max(record["fmax_mhz_by_seed"].values()) >= DEFAULT_CLOCK_MHZ
    assert record["meets_clock"] and record["uart_meets_clock"]
    assert record["fabric"] == {**FabricConfig().to_dict(), "mesh_w": 1, "mesh_h": 1}


def test_the_reset_reaches_the_flip_flops_on_a_global_on_ecp5():
    """IORing (the synthesis benches) and the board top drive the ``sync`` reset through a DCCA
    on ECP5 (nextpnr promotes only clocks), from a flip-flop; in simulation directly."""
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    from neuroloom.fpga.ioring import IORing
    from neuroloom.hw.targets import ECP5
    from neuroloom.hw.verilog import to_verilog

    class Reg(wiring.Component):
        i: In(4)
        o: Out(4)

        def elaborate(self, platform):
            from amaranth.hdl import Module
            m = Module()
            m.d.sync += self.o.eq(self.i)
            return m

    for platform, dcca in ((ECP5, 1), (None, 0)):
        ring = IORing(Reg())
        text = to_verilog(ring, "ring", ports=ring.ports, platform=platform)
        assert len(re.findall(r"\bDCCA\b", text)) == dcca, platform
        # CE unconnected, as on nextpnr's own DCCAs (tied to 1 it took the route of CLKI once)
        if dcca:
            assert ".CE(" not in text and ".CLKI(" in text, "DCCA's CE connected"
    # (the board top: test_board_top_elaborates_to_verilog_and_pins)
