"""CoreFloorplan: each core's DP16KD / MULT18X18D pinned near its share of the die (checked on
a netlist of cell names shaped like a 2x2 fabric's; the placement result is bench/'s)."""

import re

import pytest

from neuroloom.contract.parts import PARTS
from neuroloom.fpga.floorplan import CoreFloorplan, FloorplanError, hard_bels


def _xy(bel: str) -> tuple[int, int]:
    x, y = re.match(r"X(\d+)/Y(\d+)/", bel).groups()
    return int(x), int(y)


def test_the_site_table_is_the_parts():
    sites = hard_bels()
    part = PARTS["LFE5U-85F"]
    assert len(sites["DP16KD"]) == part.dp16kd == 208
    assert len(sites["MULT18X18D"]) == part.mult18x18d == 156
    names = [s[2] for v in sites.values() for s in v]
    assert len(set(names)) == len(names)
    # names as nextpnr-ecp5 reports them (NEXTPNR_BEL of a placed design)
    assert "X10/Y22/EBR3" in {s[2] for s in sites["DP16KD"]}
    assert "X101/Y10/MULT18_5" in {s[2] for s in sites["MULT18X18D"]}


def _fabric_cells(w: int, h: int, brams: int = 31, mults: int = 24) -> dict[str, str]:
    cells = {"dut.host.buf.mem.0.0": "DP16KD", "dut.core_0_0.eng.lut": "LUT4"}
    for x in range(w):
        for y in range(h):
            cells.update({f"dut.core_{x}_{y}.m{i:02}.0.0": "DP16KD" for i in range(brams)})
            cells.update({f"dut.core_{x}_{y}.eng.dp.p{i:02}.dsp": "MULT18X18D"
                          for i in range(mults)})
    return cells


def test_2x2_cores_get_their_own_quarter():
    cells = _fabric_cells(2, 2)
    pins = CoreFloorplan(2, 2).pins(cells)
    # every core block pinned, to a site of its type, no site twice; nothing else pinned
    assert set(pins) == {n for n, t in cells.items() if "core_" in n and t != "LUT4"}
    sites = hard_bels()
    for name, bel in pins.items():
        assert bel in {s[2] for s in sites[cells[name]]}
    assert len(set(pins.values())) == len(pins)
    mid_x = (4 + 120) / 2
    for name, bel in pins.items():
        x, y = _xy(bel)
        cx, cy = map(int, re.search(r"core_(\d+)_(\d+)", name).groups())
        assert (x < mid_x) == (cx == 0), (name, bel)
        if cells[name] == "DP16KD":               # block-RAM rows 22, 46 | 70, 82
            assert (y < 58) == (cy == 0), (name, bel)


def test_spread_rule_spreads_each_core_over_its_rectangle():
    cells = _fabric_cells(2, 2)
    plan = CoreFloorplan(2, 2, rule="spread")
    pins = plan.pins(cells)
    assert set(pins) == {n for n, t in cells.items() if "core_" in n and t != "LUT4"}
    assert len(set(pins.values())) == len(pins)
    sites = {s[2]: s for v in hard_bels().values() for s in v}
    for name, bel in pins.items():
        cx, cy = map(int, re.search(r"core_(\d+)_(\d+)", name).groups())
        assert plan.inside(cx, cy, sites[bel]), (name, bel)
    # 31 block RAMs over the 52 sites of core (0, 0)'s quarter (rows 22 and 46, x < 63):
    # every other site or so, in name order, the first at the first site
    own = sorted((pins[n] for n in cells if n.startswith("dut.core_0_0.m")),
                 key=lambda b: (_xy(b)[1], _xy(b)[0]))
    assert [_xy(b) for b in own][:3] == [(4, 22), (6, 22), (10, 22)]
    assert {_xy(b)[1] for b in own} == {22, 46}
    assert plan.key()["rule"] == "spread" and "rule" not in CoreFloorplan(2, 2).key()
    # the bottom half has one multiplier row (y 58): 27 of its sites left of x 63
    with pytest.raises(FloorplanError, match=r"core \(0, 1\) has 30 MULT18X18D cells and its "
                                             r"rectangle of the die 27 sites"):
        plan.pins(_fabric_cells(2, 2, brams=1, mults=30))
    with pytest.raises(FloorplanError, match="unknown floorplan rule 'tight'"):
        CoreFloorplan(2, 2, rule="tight")


def test_apply_sets_bel_attributes_in_a_yosys_netlist():
    cells = _fabric_cells(1, 2, brams=3, mults=2)
    netlist = {"modules": {"top": {"cells": {n: {"type": t, "attributes": {}}
                                             for n, t in cells.items()}}}}
    pins = CoreFloorplan(1, 2).apply(netlist, "top")
    got = {n: c["attributes"]["BEL"] for n, c in netlist["modules"]["top"]["cells"].items()
           if "BEL" in c["attributes"]}
    assert got == pins and len(pins) == 10
    with pytest.raises(FloorplanError, match="no module 'fabric'"):
        CoreFloorplan(1, 2).apply(netlist, "fabric")


def test_errors():
    with pytest.raises(FloorplanError, match="no hard-block site table for nextpnr device '25k'"):
        CoreFloorplan(1, 1, device="25k")
    with pytest.raises(FloorplanError, match=r"core \(1, 0\), outside the 1x1 floorplan"):
        CoreFloorplan(1, 1).pins(_fabric_cells(2, 1, brams=1, mults=1))
    with pytest.raises(FloorplanError, match="the cores have 212 DP16KD cells, the die 208"):
        CoreFloorplan(2, 2).pins(_fabric_cells(2, 2, brams=53, mults=1))
    with pytest.raises(FloorplanError, match="both sides"):
        CoreFloorplan(0, 2)
