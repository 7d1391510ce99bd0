"""Calibrate the resource model (``neuroloom.firmware.resources``) against Yosys and record its
error: synthesize (``synth_ecp5``, no place-and-route) neuron cores and whole fabrics of several
configurations, one at a time, and compare their cell counts with the model's estimates.

    .venv/bin/python bench/resource_model.py [--synth NAME ...|--synth all] [--fit]
    .venv/bin/python bench/resource_model.py --seed-fabric

* ``--synth``: synthesize these configurations (``CONFIGS``; cached by the flow on the Verilog
  text, so an unchanged design returns at once) and record their cell counts in
  ``bench/results/resource_model.json``;
* ``--fit``: least-squares fit of the LUT4 / FF / CCU2C / TRELLIS_DPR16X4 coefficients of a core
  and of a fabric's shell (mesh, barrier, host link) on the recorded measurements; prints the
  table to paste into ``firmware/resources.py`` (``CORE_COEFS``, ``SHELL_COEFS``) and records it;
* always: prints every recorded configuration, measured vs estimated (with the coefficients in
  ``firmware/resources.py``) and the relative error, and records them;
* ``--seed-fabric`` (alone): a held-out check, not fitted -- the seed small model's ULX3S-85F
  fabric as ``bench/fabric_synth.py --fabric`` synthesized and placed it
  (``bench/results/fabric_seed_synth.json``, inside the I/O ring): Yosys cells and nextpnr's
  packed LUT4 sites (``TRELLIS_COMB``) against the estimate; recorded as ``seed_fabric_check``.

A core is synthesized alone (``NeuronCore`` at tile (0, 0) as the top), a fabric as
``Fabric(cfg)`` (its only ports are the 32-bit host streams). On a 2-core machine a default
core takes ~2-5 minutes, a 2x1 fabric of small cores ~5-10.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np

from neuroloom.contract.config import FabricConfig
from neuroloom.firmware import resources
from neuroloom.fpga.synth import source_revision, synthesize
from neuroloom.hw.core.core import NeuronCore
from neuroloom.hw.fabric import Fabric
from neuroloom.hw.targets import ECP5
from neuroloom.hw.verilog import to_verilog

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "resource_model.json"

_SMALL = dict(neurons=32, axons=32, synapse_rows=64, route_words=64, modes=64)

#: name -> (what is synthesized: "core" or "fabric", its FabricConfig)
CONFIGS = {
    "core_small": ("core", FabricConfig(mesh_w=1, mesh_h=1, **_SMALL)),
    "core_n64_m1024_nl2": ("core", FabricConfig(
        mesh_w=1, mesh_h=1, neurons=64, axons=64, synapse_rows=512, route_words=512, groups=4,
        modes=1024, neuron_lanes=2)),
    "core_default": ("core", FabricConfig(mesh_w=1, mesh_h=1)),
    "core_n128_m2048_nl4_sl2": ("core", FabricConfig(
        mesh_w=1, mesh_h=1, neurons=128, axons=128, synapse_rows=1024, route_words=256,
        modes=2048, neuron_lanes=4, synapse_lanes=2)),
    "core_n64_m512_nl8_sl1": ("core", FabricConfig(
        mesh_w=1, mesh_h=1, neurons=64, axons=128, synapse_rows=512, route_words=256,
        modes=512, neuron_lanes=8, synapse_lanes=1)),
    "core_n512_m4096_nl2": ("core", FabricConfig(
        mesh_w=1, mesh_h=1, neurons=512, axons=512, synapse_rows=2048, route_words=1024,
        modes=4096, neuron_lanes=2)),
    "fabric_1x1_small": ("fabric", FabricConfig(mesh_w=1, mesh_h=1, **_SMALL)),
    "fabric_2x1_small": ("fabric", FabricConfig(mesh_w=2, mesh_h=1, **_SMALL)),
    "fabric_2x2_small": ("fabric", FabricConfig(mesh_w=2, mesh_h=2, **_SMALL)),
}

#: lone memories (depth, width) shaped like a core's sub-memories, around the block-RAM
#: boundaries the board search meets (depths just past 512 / 1024, odd widths)
MEMORY_SHAPES = ((48, 32), (96, 24), (130, 19), (200, 29), (528, 16), (1485, 16), (1485, 24),
                 (2400, 24), (3040, 6), (3040, 32))

CELLS = ("LUT4", "TRELLIS_FF", "CCU2C", "TRELLIS_DPR16X4", "DP16KD", "MULT18X18D", "PFUMX",
         "L6MUX21")


def synth(name: str) -> dict:
    kind, cfg = CONFIGS[name]
    top = "core" if kind == "core" else "fabric"
    design = NeuronCore(cfg, 0, 0) if kind == "core" else Fabric(cfg)
    t0 = time.perf_counter()
    rev = source_revision(ROOT)
    r = synthesize(to_verilog(design, top, platform=ECP5), top=top, pnr=False)
    memories = yosys_memories(r.yosys_log.read_text(), top)
    return {"kind": kind, "config": cfg.to_dict(),
            "cells": {c: r.cells.get(c, 0) for c in CELLS}, "latches": r.latches,
            "memories": memories,
            "synth_seconds": r.synth_seconds, "wall_seconds": round(time.perf_counter() - t0, 1),
            **rev, "workdir": str(r.workdir.relative_to(ROOT))}


def synth_memory(depth: int, width: int) -> dict:
    """Synthesize one ``PartedMemory`` (one part): the primitive Yosys maps it to and the cells."""
    from neuroloom.hw.core.memories import PartedMemory

    r = synthesize(to_verilog(PartedMemory(width=width, depth=depth, part_width=width), "mem"),
                   top="mem", pnr=False)
    mapped = yosys_memories(r.yosys_log.read_text(), "mem")
    return {"depth": depth, "width": width, "primitive": mapped.get("part0", "FF"),
            "DP16KD": r.cells.get("DP16KD", 0),
            "TRELLIS_DPR16X4": r.cells.get("TRELLIS_DPR16X4", 0)}


def yosys_memories(log: str, top: str) -> dict[str, str]:
    """Memory name -> the primitive Yosys mapped it to, from a synthesis log."""
    return dict(sorted(re.findall(rf"mapping memory {top}\.(\S+) via \$__(\w+?)_\n", log)))


def _measured_core(rec: dict, records: dict) -> dict | None:
    """A fabric's cores, measured alone (the core record with the same config but the mesh)."""
    cfg = FabricConfig.from_dict(dict(rec["config"], mesh_w=1, mesh_h=1))
    for r in records.values():
        if r["kind"] == "core" and FabricConfig.from_dict(r["config"]) == cfg:
            return r["cells"]
    return None


def _core_target(cfg: FabricConfig, cells: dict, cell: str) -> float:
    """What the linear model of ``cell`` predicts: the count, less the exactly counted LUT RAM
    of the core memories for TRELLIS_DPR16X4."""
    if cell != "TRELLIS_DPR16X4":
        return cells[cell]
    exact = resources.core_resources(cfg).TRELLIS_DPR16X4 - resources._linear(
        resources.CORE_COEFS, resources.core_features(cfg))[cell]
    return cells[cell] - exact


def _lstsq(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    return coef


def fit(records: dict) -> dict:
    """Least-squares coefficients for the fitted cells of a core and of a fabric's shell, and
    each core's leave-one-out error (the fit without it, applied to it)."""
    names = [n for n, r in records.items() if r["kind"] == "core"]
    cores = [(FabricConfig.from_dict(records[n]["config"]), records[n]["cells"]) for n in names]
    out = {"core": {}, "shell": {}, "core_leave_one_out_error": {n: {} for n in names}}
    X = np.array([resources.core_features(cfg) for cfg, _ in cores], dtype=float)
    for cell in resources.FITTED:
        y = np.array([_core_target(cfg, c, cell) for cfg, c in cores], dtype=float)
        out["core"][cell] = [round(float(v), 4) for v in _lstsq(X, y)]
        for i, n in enumerate(names):
            keep = [k for k in range(len(names)) if k != i]
            pred = float(X[i] @ _lstsq(X[keep], y[keep])) + cores[i][1][cell] - y[i]
            out["core_leave_one_out_error"][n][cell] = round(
                (pred - cores[i][1][cell]) / cores[i][1][cell], 4)
    shells = []
    for r in records.values():
        core = _measured_core(r, records) if r["kind"] == "fabric" else None
        if core is not None:
            cfg = FabricConfig.from_dict(r["config"])
            shells.append((cfg, {c: r["cells"][c] - cfg.num_cores * core[c]
                                 for c in resources.FITTED}))
    if shells:
        X = np.array([resources.shell_features(cfg) for cfg, _ in shells], dtype=float)
        for cell in resources.FITTED:
            y = np.array([s[cell] for _, s in shells], dtype=float)
            coef, *_ = np.linalg.lstsq(X, y, rcond=None)
            out["shell"][cell] = [round(float(v), 4) for v in coef]
    return out


def compare(records: dict) -> dict:
    """Per record: measured, estimated (the model as it is in resources.py) and the error."""
    out = {}
    for name, r in records.items():
        cfg = FabricConfig.from_dict(r["config"])
        est = (resources.core_resources(cfg) if r["kind"] == "core"
               else resources.fabric_resources(cfg)).as_cells()
        err = {c: round((est[c] - r["cells"][c]) / r["cells"][c], 4) if r["cells"][c] else
               (0.0 if est[c] == 0 else None) for c in est}
        out[name] = {"estimated": est, "error": err}
    return out


#: RTL cycle records of compiled models: (name, results file, its record's key or None, mapping,
#: row budget, mode budget) -- all measured on the single-cycle neuron engine (Nov 2026)
RTL_RECORDS = (
    ("channel 4x3", "mapping.json", "channel", "channel", None, None),
    ("channel mb264 rb384 6x6", "mapping.json", "channel-mb264-rb384", "channel", 384, 264),
    ("per-mode 7x6", "fabric_seed.json", None, "per-mode", None, None),
    ("per-mode rb768 7x6", "fabric_seed_rb768.json", None, "per-mode", 768, None),
    ("per-mode rb512 8x6", "fabric_seed_rb512.json", None, "per-mode", 512, None),
)


def cycles() -> dict:
    """The cycle model against the records: the pipelined engine's constants against
    ``core_cycles.json`` (bench/core_bench.py), the step estimate on the single-cycle engine
    against the fabric RTL runs of the seed small model (RUN cycles per step pipelined, per
    token fall-through)."""
    from neuroloom.firmware.compiler import compile_model, random_qmodel

    res = ROOT / "bench" / "results"
    core = json.loads((res / "core_cycles.json").read_text())
    eng = resources.ENGINES["pipelined"]
    s4d = eng.step + resources.group_cycles(256, 2, 0, 0, 1, eng)
    chan = eng.step + resources.group_cycles(32, 6, 1, 32, 1, eng)
    out = {"core_bench": {
        "s4d_256_neurons": {"measured": core["s4d_step_cycles_routes0"], "estimated": s4d},
        "channel_32x32_modes": {"measured": core["channel_step_cycles"], "estimated": chan}}}
    model = random_qmodel(64, 32, 4, d_in=1, classes=10, seed=0)
    fabric = {}
    for name, file, key, mapping, rb, mb in RTL_RECORDS:
        rec = json.loads((res / file).read_text())
        rec = rec[key] if key else dict(rec, rtl={m: rec[m] for m in ("pipelined",
                                                                       "fall-through")})
        comp = compile_model(model, FabricConfig.parse_mesh(rec["mesh"]), mapping=mapping,
                             row_budget=rb, mode_budget=mb)
        est = resources.step_cycles(comp, "single-cycle")
        pm, ft = (rec["rtl"]["pipelined"]["run_cycles_per_step"],
                  rec["rtl"]["fall-through"]["run_cycles_per_token"])
        fabric[name] = {
            "cores_used": comp.cores_used, "recorded_cores_used": rec["cores_used"],
            "pipelined": {"rtl": pm, "estimated": est.pipelined,
                          "error": round((est.pipelined - pm) / pm, 4)},
            "fall_through": {"rtl": ft, "estimated": est.fall_through,
                             "error": round((est.fall_through - ft) / ft, 4)}}
    out["fabric_rtl_single_cycle_engine"] = fabric
    return out


#: the fabric and model of the RTL check of the pipelined engine's cycle estimate
RTL_FABRIC = FabricConfig(mesh_w=2, mesh_h=2, neurons=32, axons=128, synapse_rows=256,
                          route_words=128, modes=256, neuron_lanes=2, synapse_lanes=2)
RTL_TOKENS = 16


def _rtl_runs(cfg: FabricConfig, model, comps: dict, tokens: int) -> dict:
    """Steady-state RUN cycles of each compiled model in ``comps`` (name -> Compiled, all for
    ``cfg``) on one Verilator build: per step pipelined and per token fall-through, the
    difference of a ``tokens`` and a ``tokens // 2`` run, with the estimate and bit-exactness."""
    from neuroloom.contract.hostproto import Cmd
    from neuroloom.firmware.compiler import from_compiled
    from neuroloom.firmware.driver import Driver
    from neuroloom.firmware.qmodel import qforward
    from neuroloom.firmware.transports import FramedTransport
    from neuroloom.sim.verilator_link import VerilatorLink

    x = model.quantize_input(np.random.default_rng(0).uniform(0, 1, (1, tokens, 1)))
    ref = qforward(model, x)
    out = {}
    with VerilatorLink(cfg, timeout=7200.0) as link:
        cycles: dict = {}

        class Counting:
            def exchange(self, words):
                c0 = link.cycles
                resp = link.exchange(words)
                cycles[words[0] & 0xFF] = cycles.get(words[0] & 0xFF, 0) + link.cycles - c0
                return resp

        drv = Driver(FramedTransport(Counting()))
        for name, comp in comps.items():
            est = resources.step_cycles(comp)
            t0 = time.perf_counter()
            cycles.clear()
            drv.load(from_compiled(comp))
            rec = {"cores_used": comp.cores_used, "load_cycles": sum(cycles.values()),
                   "load_seconds": round(time.perf_counter() - t0, 1)}
            for mode, key, estimate in (("pipelined", "per_step", est.pipelined),
                                        ("fall-through", "per_token", est.fall_through)):
                # steady state: the difference of a run of all tokens and of the first half
                # (the fill and the last outputs cancel)
                run, steps, exact = {}, {}, True
                for k in (tokens // 2, tokens):
                    cycles.clear()
                    res = drv.run(x[:, :k], mode=mode)
                    run[k], steps[k] = cycles.get(int(Cmd.RUN), 0), res.steps
                    exact &= bool(np.array_equal(res.running, ref[:, :k]))
                k0, k1 = tokens // 2, tokens
                rtl = (run[k1] - run[k0]) / ((steps[k1] - steps[k0]) if mode == "pipelined"
                                             else k1 - k0)
                rec[mode] = {f"rtl_{key}": round(rtl, 1), f"estimated_{key}": estimate,
                             "error": round((estimate - rtl) / rtl, 4),
                             "bit_exact_vs_qforward": exact}
            out[name] = rec
            print(f"  RTL {name}: {rec}", flush=True)
    return out


def rtl_seed() -> dict:
    """The seed small model on the fabric ``compile --board ulx3s-85f`` chooses (pipelined),
    on the RTL: steady-state cycles in both schedules against the estimate (16 tokens)."""
    from neuroloom.contract.parts import board_part
    from neuroloom.firmware.compiler import random_qmodel
    from neuroloom.firmware.target import compile_for_part

    model = random_qmodel(64, 32, 4, d_in=1, classes=10, seed=0)
    fit = compile_for_part(model, board_part("ulx3s-85f"), "pipelined")
    comp = fit.compiled
    out = {"model": "random_qmodel(64, 32, 4, d_in=1, classes=10, seed=0)",
           "fabric": comp.cfg.to_dict(), "packing": fit.packing, "tokens": RTL_TOKENS,
           **source_revision(ROOT)}
    out["golden_fire_rate"] = rate = fire_rate(comp, model, RTL_TOKENS)
    est = resources.step_cycles(comp, fire_rate=rate)
    out["estimate_with_fire_rate"] = {"pipelined_per_step": est.pipelined,
                                      "fall_through_per_token": est.fall_through,
                                      "per_stage": est.per_stage, "per_core": est.per_core}
    out.update(_rtl_runs(comp.cfg, model, {"chosen": comp}, RTL_TOKENS))
    for mode, key, e in (("pipelined", "per_step", est.pipelined),
                         ("fall-through", "per_token", est.fall_through)):
        rtl = out["chosen"][mode][f"rtl_{key}"]
        out["estimate_with_fire_rate"][f"error_{mode}"] = round((e - rtl) / rtl, 4)
    print(f"  golden fire rate {rate}; with it: {out['estimate_with_fire_rate']}", flush=True)
    return out


def fire_rate(comp, model, tokens: int) -> float:
    """The share of synaptic operations a pipelined golden run of ``tokens`` random tokens
    performs, of those every source spiking every step would (ReLU zeros are not sent)."""
    from neuroloom.contract.layouts import Counter
    from neuroloom.firmware.compiler import from_compiled
    from neuroloom.firmware.driver import Driver
    from neuroloom.sim.transports import GoldenTransport

    x = model.quantize_input(np.random.default_rng(0).uniform(0, 1, (1, tokens, 1)))
    drv = Driver(GoldenTransport(batch=1))
    drv.load(from_compiled(comp))
    res = drv.run(x, mode="pipelined")
    done = float(res.counters[:, Counter.SYN_OPS].sum()) / res.steps
    return round(done / resources.full_syn_ops(comp), 3)


def rtl_cycles() -> dict:
    """Run a small model on the RTL (Verilator) packed three ways on ``RTL_FABRIC`` and compare
    its steady-state RUN cycles (per step pipelined, per token fall-through: the difference of
    a 16-token and an 8-token run) with the estimate on the pipelined engine; every run is
    checked bit-exact against the quantized reference."""
    from neuroloom.firmware.compiler import compile_model, random_qmodel

    model = random_qmodel(16, 7, 3, d_in=1, classes=4, seed=11)
    packings = {"fill": dict(), "fill, cycle budget 400": dict(cycle_budget=400, row_budget=256),
                "spread": dict(packing="spread")}
    out = {"fabric": RTL_FABRIC.to_dict(), "model": "random_qmodel(16, 7, 3, d_in=1, classes=4, "
           "seed=11)", "tokens": RTL_TOKENS, **source_revision(ROOT)}
    out.update(_rtl_runs(RTL_FABRIC, model, {name: compile_model(model, RTL_FABRIC, **kw)
                                             for name, kw in packings.items()}, RTL_TOKENS))
    return out


def seed_on_board(board: str = "ulx3s-85f") -> dict:
    """The seed small model compiled for ``board`` for each schedule: the chosen fabric, its
    estimated cells against the part and its estimated cycles (no synthesis)."""
    from neuroloom.contract.parts import board_part
    from neuroloom.firmware.compiler import random_qmodel
    from neuroloom.firmware.target import compile_for_part

    model = random_qmodel(64, 32, 4, d_in=1, classes=10, seed=0)
    out = {"model": "random_qmodel(64, 32, 4, d_in=1, classes=10, seed=0)", "board": board}
    for schedule in ("pipelined", "fall-through"):
        t0 = time.perf_counter()
        fit = compile_for_part(model, board_part(board), schedule)
        comp = fit.compiled
        out[schedule] = {
            "fabric": comp.cfg.to_dict(), "cores_used": comp.cores_used,
            "cycle_budget": fit.cycle_budget,
            "estimated_cells": fit.resources.as_cells(),
            "estimated_logic_sites": round(fit.resources.logic),
            "part_usage": {k: [round(a), b] for k, (a, b) in fit.usage().items()},
            "estimated_cycles": {"pipelined_per_step": fit.estimate.pipelined,
                                 "fall_through_per_token": fit.estimate.fall_through,
                                 "per_stage": fit.estimate.per_stage,
                                 "per_core": fit.estimate.per_core},
            "candidates": len(fit.candidates),
            "search_seconds": round(time.perf_counter() - t0, 1)}
        print(f"{schedule}: {comp.cfg.mesh_w}x{comp.cfg.mesh_h}, neuron_lanes "
              f"{comp.cfg.neuron_lanes}, synapse_lanes {comp.cfg.synapse_lanes}, "
              f"{comp.cores_used} cores used; {out[schedule]['part_usage']}; "
              f"{fit.estimate.pipelined} cycles/step pipelined, {fit.estimate.fall_through} "
              f"cycles/token fall-through", flush=True)
    return out


def seed_fabric_check() -> dict:
    """The seed fabric's synthesis and placement record against the estimate (held out)."""
    rec = json.loads((ROOT / "bench" / "results" / "fabric_seed_synth.json").read_text())
    cfg = FabricConfig.from_dict(rec["config"])
    est = resources.fabric_resources(cfg)
    cells = est.as_cells()
    out = {"config": rec["config"], "synth_commit": rec.get("commit"), "cells": {}}
    for c in CELLS:
        if c in cells and rec["cells"].get(c):
            m = rec["cells"][c]
            out["cells"][c] = {"measured": m, "estimated": cells[c],
                               "error": round((cells[c] - m) / m, 4)}
    comb = rec.get("utilization", {}).get("TRELLIS_COMB")
    if comb:
        out["logic_sites"] = {"measured_trellis_comb": comb["used"],
                              "estimated": round(est.logic),
                              "error": round((est.logic - comb["used"]) / comb["used"], 4),
                              "available": comb["available"]}
    return out


def table(records: dict, cmp: dict) -> str:
    cols = ("LUT4", "TRELLIS_FF", "DP16KD", "MULT18X18D", "TRELLIS_DPR16X4", "CCU2C")
    w = max(map(len, records))
    lines = [f"{'configuration':<{w}} " + " ".join(f"{c[:8]:>20}" for c in cols),
             f"{'':<{w}} " + " ".join(f"{'meas / est (err)':>20}" for _ in cols)]
    for name, r in records.items():
        cells = []
        for c in cols:
            m, e, err = r["cells"][c], cmp[name]["estimated"][c], cmp[name]["error"][c]
            cells.append(f"{m:>6} /{e:>6} ({'-' if err is None else f'{100 * err:+.0f}%':>5})")
        lines.append(f"{name:<{w}} " + " ".join(f"{s:>20}" for s in cells))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--synth", nargs="+", default=[], metavar="NAME",
                    help=f"configurations to synthesize ({', '.join(CONFIGS)}, or all)")
    ap.add_argument("--fit", action="store_true",
                    help="fit the coefficients on the recorded measurements and print them")
    ap.add_argument("--memories", action="store_true",
                    help="synthesize the lone memories of MEMORY_SHAPES and record their mapping")
    ap.add_argument("--rtl", action="store_true",
                    help="check the pipelined engine's cycle estimate on the RTL (Verilator: "
                         "builds a 2x2 fabric, minutes)")
    ap.add_argument("--rtl-seed", action="store_true",
                    help="run the seed small model on the fabric --seed chooses on the RTL "
                         "(Verilator; a large build and ~10 minutes)")
    ap.add_argument("--seed", action="store_true",
                    help="also compile the seed small model for the ULX3S-85F (both schedules) "
                         "and record the chosen fabric")
    ap.add_argument("--seed-fabric", action="store_true",
                    help="only: check the estimate against the seed fabric's recorded synthesis "
                         "and placement (bench/results/fabric_seed_synth.json)")
    args = ap.parse_args(argv)
    if args.seed_fabric:
        data = json.loads(OUT.read_text()) if OUT.is_file() else {}
        chk = data["seed_fabric_check"] = seed_fabric_check()
        OUT.write_text(json.dumps(data, indent=1) + "\n")
        for c, v in chk["cells"].items():
            print(f"{c:<16} measured {v['measured']:>7,} estimated {v['estimated']:>7,} "
                  f"({100 * v['error']:+.1f}%)")
        if "logic_sites" in chk:
            v = chk["logic_sites"]
            print(f"{'LUT4 sites':<16} measured {v['measured_trellis_comb']:>7,} estimated "
                  f"{v['estimated']:>7,} ({100 * v['error']:+.1f}%) of {v['available']:,}")
        print(f"results: {OUT.relative_to(ROOT)}")
        return 0
    names = list(CONFIGS) if args.synth == ["all"] else args.synth
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        ap.error(f"unknown configuration {unknown[0]!r}; known: {', '.join(CONFIGS)}")
    data = json.loads(OUT.read_text()) if OUT.is_file() else {}
    records = data.get("measured", {})
    for name in names:
        print(f"synthesizing {name} ...", flush=True)
        records[name] = synth(name)
        print(f"  {records[name]['cells']} ({records[name]['synth_seconds']} s)", flush=True)
        data["measured"] = records
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(data, indent=1) + "\n")
    if args.memories:
        data["memories"] = [synth_memory(d, w) for d, w in MEMORY_SHAPES]
        for m in data["memories"]:
            est = resources.map_memory(m["depth"], m["width"])
            print(f"memory {m['depth']} x {m['width']}: Yosys {m['primitive']} "
                  f"({m['DP16KD']} DP16KD, {m['TRELLIS_DPR16X4']} DPR16X4), model "
                  f"{est.primitive} x {est.units}", flush=True)
        OUT.write_text(json.dumps(data, indent=1) + "\n")
    if not records:
        print("nothing measured yet: run with --synth")
        return 1
    for r in records.values():              # records of runs before memories were kept
        if "memories" not in r:
            r["memories"] = yosys_memories((ROOT / r["workdir"] / "yosys.log").read_text(),
                                           "core" if r["kind"] == "core" else "fabric")
    if args.fit:
        coefs = fit(records)
        data["fitted"] = coefs
        print(f"fitted coefficients (core features {resources.CORE_FEATURES}, shell "
              f"{resources.SHELL_FEATURES}), for firmware/resources.py:")
        for table_name, part in (("CORE_COEFS", "core"), ("SHELL_COEFS", "shell")):
            print(f"{table_name} = {{")
            for cell, v in coefs[part].items():
                print(f'    "{cell}": ({", ".join(f"{x:g}" for x in v)}),')
            print("}")
        print("leave-one-out LUT4 error per core: " + ", ".join(
            f"{n} {100 * e['LUT4']:+.1f}%" for n, e in coefs["core_leave_one_out_error"].items()))
    cmp = compare(records)
    data["measured"] = records
    data["model"] = {"core": {c: list(v) for c, v in resources.CORE_COEFS.items()},
                     "shell": {c: list(v) for c, v in resources.SHELL_COEFS.items()}}
    data["comparison"] = cmp
    worst = max(abs(v["error"]["LUT4"]) for v in cmp.values())
    exact = all(v["error"][c] == 0.0 for v in cmp.values() for c in ("DP16KD", "MULT18X18D"))
    data["summary"] = {"max_abs_lut4_error": worst, "dp16kd_and_mult_exact": exact}
    OUT.write_text(json.dumps(data, indent=1) + "\n")
    print(table(records, cmp))
    print(f"max |LUT4 error| {100 * worst:.1f} %, DP16KD and MULT18X18D exact: {exact}")
    kept = data.get("cycles", {}).get("fabric_rtl_pipelined_engine")    # --rtl's, if run
    cyc = data["cycles"] = cycles()
    if kept:
        cyc["fabric_rtl_pipelined_engine"] = kept
    OUT.write_text(json.dumps(data, indent=1) + "\n")
    print("\ncycle model vs records (estimated / measured):")
    for name, v in cyc["core_bench"].items():
        print(f"  core bench {name}: {v['estimated']} / {v['measured']} (pipelined engine)")
    for name, v in cyc.get("fabric_rtl_pipelined_engine", {}).items():
        if isinstance(v, dict) and "pipelined" in v:
            p, f = v["pipelined"], v["fall-through"]
            print(f"  RTL {name} (pipelined engine, steady state): pipelined "
                  f"{p['estimated_per_step']} / {p['rtl_per_step']} per step "
                  f"({100 * p['error']:+.1f}%), fall-through {f['estimated_per_token']} / "
                  f"{f['rtl_per_token']} per token ({100 * f['error']:+.1f}%)")
    for name, v in cyc["fabric_rtl_single_cycle_engine"].items():
        p, f = v["pipelined"], v["fall_through"]
        print(f"  {name}: pipelined {p['estimated']} / {p['rtl']} per step "
              f"({100 * p['error']:+.1f}%), fall-through {f['estimated']} / {f['rtl']} per "
              f"token ({100 * f['error']:+.1f}%)")
    if args.rtl:
        print("\ncycle estimate vs RTL (pipelined engine):")
        data["cycles"]["fabric_rtl_pipelined_engine"] = rtl_cycles()
        OUT.write_text(json.dumps(data, indent=1) + "\n")
    if args.rtl_seed:
        print("\nseed small model on its ulx3s-85f fabric, RTL:")
        data["seed_small_on_ulx3s_85f_rtl"] = rtl_seed()
        OUT.write_text(json.dumps(data, indent=1) + "\n")
    if args.seed:
        print("\nseed small model for ulx3s-85f:")
        data["seed_small_on_ulx3s_85f"] = seed_on_board()
        OUT.write_text(json.dumps(data, indent=1) + "\n")
    print(f"results: {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
