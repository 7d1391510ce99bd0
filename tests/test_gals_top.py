# amaranth: UnusedElaboratable=no
"""The GALS board-less top for place-and-route (``fpga/gals_top.py``): its clocks, constraints and
wiring, elaborated only (the place-and-route is ``bench/gals_bench.py pnr``)."""

import dataclasses

import pytest
from amaranth.back import rtlil

from neuroloom.contract.config import FabricConfig
from neuroloom.fpga.gals_top import GalsPllTop, gals_clocks, lpf
from neuroloom.fpga.ioring import CORE_CONFIGS


def test_tile_clocks_are_pll_outputs_of_one_vco():
    c = gals_clocks(4)
    (clki, fb, divs), = c.tile_plls
    # 25 MHz / 5 * 12 = 60 MHz on CLKOP, VCO 600 MHz, further outputs at VCO / 11, 12, 13
    assert (clki, fb, divs) == (5, 12, (10, 11, 12, 13))
    assert [round(f, 3) for f in c.tile_mhz] == [60.0, 54.545, 50.0, 46.154]
    assert c.host_mhz == pytest.approx(50.0)
    # five tiles need a second tile PLL
    assert [len(d) for _, _, d in gals_clocks(5).tile_plls] == [4, 1]


def test_gals_clocks_rejects_bad_requests():
    with pytest.raises(ValueError, match="positive"):
        gals_clocks(0)
    with pytest.raises(ValueError, match="PLL"):
        gals_clocks(4, tile_mhz=500.0)


def test_lpf_constrains_the_oscillator_only():
    text = lpf(gals_clocks(4))
    assert 'FREQUENCY PORT "clk_in" 25 MHZ;' in text
    assert 'LOCATE COMP "clk_in" SITE "G2";' in text
    assert text.count("FREQUENCY") == 1       # nextpnr derives every PLL output's constraint


def test_top_needs_a_gals_fabric():
    with pytest.raises(ValueError, match="GALS"):
        GalsPllTop(FabricConfig())


def test_top_elaborates_with_two_plls():
    # one tile (the quickest to elaborate): the tile PLL has CLKOP only, the host PLL CLKOP
    cfg = dataclasses.replace(CORE_CONFIGS["quick"], gals=True, mesh_w=1, mesh_h=1)
    text = rtlil.convert(GalsPllTop(cfg), name="gals_top")
    assert text.count("cell \\EHXPLLL") == 2               # tile PLL and host PLL
    for param in ("CLKI_DIV 5", "CLKFB_DIV 12", "CLKOP_DIV 10",      # tile: 60 MHz
                  "CLKI_DIV 1", "CLKFB_DIV 2", "CLKOP_DIV 12"):      # host: 50 MHz
        assert f"parameter \\{param}\n" in text
    assert "CLKOS_DIV" not in text
    assert "pll_0_0_clk" in text and "pll_0_0_rst" in text
