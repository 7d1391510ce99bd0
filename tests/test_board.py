# amaranth: UnusedElaboratable=no
"""Board tops: PLL dividers, board table, the ULX3S-85F top elaborated to Verilog + pin
constraints (fast), and the UART fabric answering frames over its serial lines in amaranth.sim.
"""

import pytest
from amaranth.sim import Simulator

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.hostproto import ERROR, MAGIC, Cmd, decode_frames, encode_frame
from neuroloom.fpga.boards import BOARDS, board
from neuroloom.fpga.ecp5 import pll_params
from neuroloom.fpga.top import BoardTop, UARTFabric
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


def test_board_top_refuses_a_baud_the_clock_cannot_make():
    with pytest.raises(ValueError, match=r"baud 3000000 from a 40 MHz clock"):
        BoardTop(board("ulx3s-85f"), SMALL, clock_mhz=40, baud=3_000_000)


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_board_top_elaborates_to_verilog_and_pins(name):
    b = board(name)
    clock = 50 if name == "ulx3s-85f" else 48
    top = BoardTop(b, SMALL, clock_mhz=clock)
    assert top.baud == b.default_baud(clock * 1e6)
    plan = b.platform().prepare(top, name="top", debug_verilog=True)
    verilog = plan.files["top.debug.v"]
    lpf = plan.files["top.lpf"]
    p = top.pll
    assert "EHXPLLL" in verilog
    for param, value in [("CLKI_DIV", p.clki_div), ("CLKFB_DIV", p.clkfb_div),
                         ("CLKOP_DIV", p.clkop_div)]:
        assert f".{param}(32'd{value})" in verilog, f"{param} {value} not in the PLL instance"
    if name == "ulx3s-85f":       # FT231X: FPGA rx on M1, tx on L4 (the ULX3S schematic)
        assert 'LOCATE COMP "uart_0__rx__io" SITE "M1"' in lpf
        assert 'LOCATE COMP "uart_0__tx__io" SITE "L4"' in lpf
        assert 'SITE "B2"' in lpf                # led 0


def test_uart_fabric_answers_status_and_bad_frames_over_its_lines():
    """The board's logic (no PLL) in amaranth.sim: STATUS, a damaged frame, STATUS again."""
    div = 4
    dut = UARTFabric(SMALL, div, blink_cycles=64)
    status = encode_frame(Cmd.STATUS, [], seq=5)
    damaged = slip(encode_frame(Cmd.RUN, [3], seq=6))
    del damaged[5]
    host = slip(status) + damaged + slip(encode_frame(Cmd.STATUS, [], seq=7))
    got = []
    leds = []

    async def host_tb(ctx):
        await send_bytes(ctx, dut.rx, host, bit_cycles=div)

    async def monitor(ctx):
        while got.count(0xC0) < 3:
            got.extend(await receive_bytes(ctx, dut.tx, 1, bit_cycles=div, timeout=20_000))

    async def lights(ctx):
        async for _, _, value in ctx.tick().sample(dut.leds):
            leds.append(value)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
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
