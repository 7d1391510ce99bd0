"""The resource and cycle model (``neuroloom.firmware.resources``) against what Yosys and the
benches recorded, part capacities, and compiling for a board (``neuroloom.firmware.target``,
``neuroloom compile --board``)."""

import json
from pathlib import Path

import numpy as np
import pytest

from neuroloom.cli import main
from neuroloom.contract.config import FabricConfig
from neuroloom.contract.parts import BOARD_PARTS, PARTS, Part, board_part
from neuroloom.firmware import resources
from neuroloom.firmware.compiler import (
    CompileError,
    FitError,
    compile_model,
    from_compiled,
    random_qmodel,
)
from neuroloom.firmware.driver import Driver
from neuroloom.firmware.importer import save_qmodel
from neuroloom.firmware.qmodel import qforward
from neuroloom.firmware.target import PartFitError, compile_for_part
from neuroloom.sim.transports import GoldenTransport

ROOT = Path(__file__).resolve().parents[1]
RECORD = json.loads((ROOT / "bench" / "results" / "resource_model.json").read_text())
MEASURED = RECORD["measured"]
CORE_CYCLES = json.loads((ROOT / "bench" / "results" / "core_cycles.json").read_text())


def _estimate(rec: dict) -> resources.Resources:
    cfg = FabricConfig.from_dict(rec["config"])
    return (resources.core_resources(cfg) if rec["kind"] == "core"
            else resources.fabric_resources(cfg))


@pytest.mark.parametrize("name", sorted(MEASURED))
def test_block_ram_and_multipliers_exact(name):
    rec, est = MEASURED[name], _estimate(MEASURED[name])
    assert (est.DP16KD, est.MULT18X18D) == (rec["cells"]["DP16KD"],
                                            rec["cells"]["MULT18X18D"]), (name, rec["cells"])


@pytest.mark.parametrize("name", sorted(MEASURED))
def test_lut4_within_15_percent_of_yosys(name):
    rec, est = MEASURED[name], _estimate(MEASURED[name])
    lut = rec["cells"]["LUT4"]
    assert abs(est.LUT4 - lut) <= 0.15 * lut, (name, round(est.LUT4), lut)


@pytest.mark.parametrize("name", sorted(n for n, r in MEASURED.items() if r["kind"] == "core"))
def test_every_core_memory_maps_as_yosys_mapped_it(name):
    rec = MEASURED[name]
    cfg = FabricConfig.from_dict(rec["config"])
    ours = {m: resources.map_memory(d, w, g).primitive
            for m, d, w, g in resources.core_memories(cfg)}
    yosys = {m: p for m, p in rec["memories"].items() if m in ours}
    assert set(yosys) == set(ours), sorted(set(yosys) ^ set(ours))
    assert ours == yosys, {m: (ours[m], yosys[m]) for m in ours if ours[m] != yosys[m]}


@pytest.mark.parametrize("depth, width, primitive, units", [
    (64, 24, "TRELLIS_DPR16X4", 24),       # a 64-neuron core's STATE register: LUT RAM
    (64, 32, "PDPW16KD", 1),               # 64-word microcode: one block, 36 wide
    (1024, 24, "DP16KD", 2),               # 1024-entry MSTATE part: two 18 x 1024 blocks
    (1024, 16, "DP16KD", 1),               # 1024-entry MCOEF part
    (8, 32, "TRELLIS_DPR16X4", 8),         # a small core's accumulator bank
])
def test_map_memory_cases_seen_in_yosys_logs(depth, width, primitive, units):
    got = resources.map_memory(depth, width)
    assert (got.primitive, got.units) == (primitive, units), got


def test_map_memory_rejects_empty():
    with pytest.raises(ValueError, match="positive"):
        resources.map_memory(0, 8)


def test_multipliers_follow_the_lanes():
    for nl, sl in ((1, 4), (2, 4), (4, 2), (8, 1)):
        cfg = FabricConfig(neuron_lanes=nl, synapse_lanes=sl, modes=1024)
        assert resources.core_mults(cfg) == 16 * nl + 2 * sl


def test_engine_constants_reproduce_the_core_bench():
    eng = resources.ENGINES["pipelined"]
    s4d = eng.step + resources.group_cycles(256, 2, 0, 0, 1, eng)
    channel = eng.step + resources.group_cycles(32, 6, 1, 32, 1, eng)
    assert (s4d, channel) == (CORE_CYCLES["s4d_step_cycles_routes0"],
                              CORE_CYCLES["channel_step_cycles"])


@pytest.mark.parametrize("packing", ["fill", "fill, cycle budget 400", "spread"])
def test_pipelined_engine_estimate_against_the_rtl_record(packing):
    """bench/resource_model.py --rtl: the estimate today equals the recorded one, which was
    within 15 % of the RTL's steady-state cycles (bit-exact runs)."""
    rec = RECORD["cycles"]["fabric_rtl_pipelined_engine"]
    assert rec["model"] == "random_qmodel(16, 7, 3, d_in=1, classes=4, seed=11)"
    model = random_qmodel(16, 7, 3, d_in=1, classes=4, seed=11)
    kw = {"fill": {}, "fill, cycle budget 400": dict(cycle_budget=400, row_budget=256),
          "spread": dict(packing="spread")}[packing]
    est = resources.step_cycles(compile_model(model, FabricConfig.from_dict(rec["fabric"]),
                                              **kw))
    r = rec[packing]
    assert (est.pipelined, est.fall_through) == (r["pipelined"]["estimated_per_step"],
                                                 r["fall-through"]["estimated_per_token"])
    for mode in ("pipelined", "fall-through"):
        assert r[mode]["bit_exact_vs_qforward"] and abs(r[mode]["error"]) <= 0.15, r[mode]


def test_recorded_rtl_cycle_errors_are_the_models():
    """The bench's record of the cycle model's error is what the model gives today (the model
    has not drifted from its recorded calibration)."""
    model = random_qmodel(64, 32, 4, d_in=1, classes=10, seed=0)
    rec = RECORD["cycles"]["fabric_rtl_single_cycle_engine"]["channel 4x3"]
    comp = compile_model(model, FabricConfig(mesh_w=4, mesh_h=3), mapping="channel")
    est = resources.step_cycles(comp, "single-cycle")
    assert (est.pipelined, est.fall_through) == (rec["pipelined"]["estimated"],
                                                 rec["fall_through"]["estimated"])
    assert abs(rec["pipelined"]["error"]) < 0.15 and abs(rec["fall_through"]["error"]) < 0.15


def test_step_estimate_is_the_busiest_core():
    comp = compile_model(random_qmodel(8, 4, 2, seed=1), FabricConfig(mesh_w=2, mesh_h=2))
    est = resources.step_cycles(comp, overhead=0)
    assert est.pipelined == max(v["bound"] for v in est.per_core.values())
    assert est.fall_through == sum(est.per_stage) and len(est.per_stage) == comp.num_stages
    rows = sum(len(c.synapses) for c in comp.cores)
    injected = sum(comp.cores[c].axons[a][1] for srcs in comp.inputs for c, a in srcs)
    # every row a neuron's spike reaches, once at least (the host's are injected before a step)
    assert sum(v["rows"] for v in est.per_core.values()) >= rows - injected > 0


# -- parts ------------------------------------------------------------------------------------

def test_part_capacities_agree_with_the_fpga_boards():
    import dataclasses

    from neuroloom.fpga.boards import BOARDS, Board
    assert set(BOARD_PARTS) == set(BOARDS)
    # the boards hold no capacities of their own: they take the contract's part
    assert "resources" not in {f.name for f in dataclasses.fields(Board)}
    for name, b in BOARDS.items():
        assert b.part is board_part(name), name
        assert b.resources == board_part(name).resources(), name
    # and those are what nextpnr reported available in a recorded board build
    rec = json.loads((ROOT / "bench" / "results" / "board.json").read_text())
    assert BOARDS[rec["board"]].resources == {k: v["available"]
                                              for k, v in rec["resources"].items()}


def test_unknown_board():
    with pytest.raises(ValueError, match="unknown board 'nope'; known boards: ecp5-5g-evn"):
        board_part("nope")


# -- compiling for a part -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_fit():
    model = random_qmodel(8, 4, 2, d_in=1, classes=4, seed=3)
    return model, compile_for_part(model, PARTS["LFE5U-85F"], "pipelined")


def test_compile_for_part_fits_and_stays_bit_exact(small_fit):
    model, fit = small_fit
    for name, (need, have) in fit.usage().items():
        assert need <= have, (name, need, have)
    comp = fit.compiled
    assert fit.resources == resources.fabric_resources(comp.cfg)
    x = model.quantize_input(np.random.default_rng(0).uniform(0, 1, (1, 6, 1)))
    drv = Driver(GoldenTransport(batch=1))
    drv.load(from_compiled(comp))
    for mode in ("pipelined", "fall-through"):
        assert np.array_equal(drv.run(x, mode=mode).running, qforward(model, x)), mode


def test_compile_for_part_sizes_memories_to_the_busiest_core(small_fit):
    _, fit = small_fit
    comp = fit.compiled
    for r, field in (("synapse_rows", "synapse_rows"), ("axons", "axons"), ("modes", "modes"),
                     ("route_words", "route_words")):
        most = max(u[r][0] for u in comp.usage())
        # cut to the busiest core's use; grown by a quarter at a time where packing needed it
        assert most <= getattr(comp.cfg, field) <= 2 * most + comp.cfg.neuron_lanes, (r, most)


def test_a_part_too_small_names_the_binding_resource():
    tiny = Part("tiny", lut4=4000, ff=4000, dp16kd=4, mult18x18d=8)
    with pytest.raises(PartFitError, match=r"binding resource (LUT4|FF|MULT18X18D|DP16KD): "
                                           r"\d+ needed, \d+ available"):
        compile_for_part(random_qmodel(8, 4, 2, seed=3), tiny)


def test_a_model_too_large_for_the_part_fails_at_once():
    large = random_qmodel(128, 64, 4, d_in=1, classes=10, seed=0)
    with pytest.raises(PartFitError, match=r"binding resource DP16KD: .* 208 available \(\d+ "
                                           r"over\)") as e:
        compile_for_part(large, PARTS["LFE5U-85F"])
    assert e.value.resource == "DP16KD" and e.value.needed > 208


def test_cycle_budget_spreads_the_engine_work():
    model = random_qmodel(16, 8, 2, seed=2)
    cfg = FabricConfig(mesh_w=4, mesh_h=4)
    loose = resources.step_cycles(compile_model(model, cfg), overhead=0)
    tight = compile_model(model, cfg, cycle_budget=loose.pipelined // 2,
                          row_budget=loose.pipelined // 2)
    est = resources.step_cycles(tight, overhead=0)
    assert est.pipelined <= loose.pipelined // 2 < loose.pipelined
    with pytest.raises(FitError, match="cycle budget"):
        compile_model(model, cfg, cycle_budget=5)


# -- the CLI ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model_stem(tmp_path_factory):
    d = tmp_path_factory.mktemp("board")
    save_qmodel(random_qmodel(8, 2, 1, d_in=1, classes=4, seed=3), d / "m")
    return d


def test_cli_compile_for_a_board(model_stem, capsys):
    d = model_stem
    assert main(["compile", str(d / "m"), "-o", str(d / "m.nlimg"), "--board", "ulx3s-85f",
                 "--fabric-out", str(d / "fabric.json")]) == 0
    out = capsys.readouterr().out
    assert "board ulx3s-85f (LFE5U-85F): fabric" in out and "estimated cycles" in out, out
    cfg = FabricConfig.from_dict(json.loads((d / "fabric.json").read_text())["config"])
    assert main(["info", str(d / "m.nlimg"), "--fabric", str(d / "fabric.json")]) == 0
    out = capsys.readouterr().out
    assert "estimated cells: fabric" in out and "estimated cycles" in out, out
    assert f"fabric {cfg.mesh_w}x{cfg.mesh_h}" in out


def test_cli_info_prints_per_core_cycles(model_stem, capsys):
    assert main(["info", str(model_stem / "m"), "--mesh", "2x2"]) == 0
    out = capsys.readouterr().out
    assert "neuron    rows  routes   bound" in out and "per step pipelined" in out, out


@pytest.mark.parametrize("argv, message", [
    (["--board", "ulx3s-85f", "--row-budget", "10"], "drop --row-budget"),
    (["--board", "ulx3s-85f", "--mesh", "2x2"], "drop --mesh"),
    (["--board", "ulx3s-85f", "--modes", "64"], "drop --modes"),
    (["--schedule", "fall-through"], "--schedule needs --board"),
    (["--fabric-out", "f.json"], "--fabric-out needs --board"),
    (["--board", "ulx3s-85f", "--gals", "1"], "drop --gals"),
])
def test_cli_board_option_errors(model_stem, capsys, argv, message):
    assert main(["compile", str(model_stem / "m"), "-o", str(model_stem / "x.nlimg"),
                 *argv]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (model_stem / "x.nlimg").exists()


def test_cli_model_too_large_for_the_board(tmp_path, capsys):
    save_qmodel(random_qmodel(128, 64, 4, d_in=1, classes=10, seed=0), tmp_path / "big")
    assert main(["compile", str(tmp_path / "big"), "-o", str(tmp_path / "big.nlimg"),
                 "--board", "ulx3s-85f"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "binding resource DP16KD" in err[0] and "over" in err[0], err


def test_cli_unknown_board(model_stem, capsys):
    with pytest.raises(SystemExit) as e:
        main(["compile", str(model_stem / "m"), "-o", "x.nlimg", "--board", "nope"])
    assert e.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("mapping", ["channel", "per-mode"])
def test_spread_packing_puts_every_stage_on_every_core_and_stays_bit_exact(mapping):
    model = random_qmodel(8, 2, 2, d_in=1, classes=4, seed=5)
    cfg = FabricConfig(mesh_w=2, mesh_h=1, modes=1024)
    comp = compile_model(model, cfg, mapping=mapping, packing="spread")
    # a stage of at least two rows' worth of neurons (channels for the per-mode modes) is cut
    # in two, one chunk per core; a smaller one stays on core 0
    for st in comp.stages:
        size = model.H if st.kind in ("modes", "readout") else st.size     # channels
        want = {0, 1} if size >= 2 * cfg.synapse_lanes else {0}
        assert {c for c in range(2) if st.index in comp.group_stage[c]} == want, st
    x = model.quantize_input(np.random.default_rng(1).uniform(0, 1, (1, 5, 1)))
    drv = Driver(GoldenTransport(batch=1))
    drv.load(from_compiled(comp))
    ref = qforward(model, x, mapping=mapping)
    for mode in ("pipelined", "fall-through"):
        assert np.array_equal(drv.run(x, mode=mode).running, ref), mode


def test_packing_errors():
    model = random_qmodel(8, 2, 2, seed=5)
    with pytest.raises(CompileError, match="packing 'round' is not one of fill, spread"):
        compile_model(model, FabricConfig(), packing="round")
    with pytest.raises(FitError, match=r"spread over 2 cores, core \d needs \d+ modes"):
        compile_model(model, FabricConfig(mesh_w=2, mesh_h=1, modes=8), packing="spread")


@pytest.mark.parametrize("mem", RECORD["memories"], ids=lambda m: f"{m['depth']}x{m['width']}")
def test_lone_memories_map_as_yosys_mapped_them(mem):
    """Memories around the block-RAM boundaries, synthesized alone (bench --memories)."""
    got = resources.map_memory(mem["depth"], mem["width"])
    cells = mem["DP16KD"] if got.block else mem["TRELLIS_DPR16X4"]
    assert (got.primitive, got.units) == (mem["primitive"], cells), (got, mem)


def test_fire_rate_scales_rows_and_serializes_fall_through():
    comp = compile_model(random_qmodel(16, 4, 2, seed=1), FabricConfig(mesh_w=2, mesh_h=1),
                         packing="spread")
    every, half = resources.step_cycles(comp), resources.step_cycles(comp, fire_rate=0.5)
    full = resources.step_cycles(comp, fire_rate=1.0)
    assert full.pipelined == every.pipelined
    for c, v in every.per_core.items():
        assert half.per_core[c]["rows"] == round(0.5 * v["rows"]), c
        assert half.per_core[c]["neuron"] == v["neuron"], c
    # a stage's pass then its rows: never shorter than the larger of the two
    assert all(f >= e for f, e in zip(full.per_stage, every.per_stage))
    assert full.fall_through > every.fall_through
