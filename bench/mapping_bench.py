"""Per-mode vs channel neurons, side by side, on the seed small model shape
(``random_qmodel(64, 32, 4, d_in=1, classes=10, seed=0)``), each on the smallest default-core
mesh it fits:

* stages, neurons, mode entries, cores used, synapse rows (total and busiest core), route words;
* flits per token and synaptic operations per token (golden counters, pipelined, every core);
* golden-model wall time per step (pipelined, batch 1), and the quantized reference check
  (golden == qforward for both mappings, and qforward equal across the mappings);
* an estimate of the single-cycle neuron engine's cycles per step on the busiest core
  (sum over its groups of ``count * (program length + modes per MODES + 1)``) next to the
  busiest core's synapse rows (one row per cycle): the two lower bounds of a step;
* a third column, ``channel-mbN-rbR``: channel neurons with at most N mode entries and R
  synapse rows per core (``compile_model(..., mode_budget=N, row_budget=R)``, default 264 =
  8 channels of 33 modes, and 384 rows), spread over more cores for a shorter step;
* with ``--rtl COLUMN`` (repeatable) the RTL cycles per token in both schedules (Verilator;
  the per-mode mapping needs a 7x6 mesh: a ~5-8 minute build and a slow run).

    .venv/bin/python bench/mapping_bench.py [--tokens 32] [--mode-budget 264] [--row-budget 384]
        [--rtl channel] [--rtl channel-mb264-rb384] [--rtl per-mode]

Results go to ``bench/results/mapping.json``; a table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.isa import decode
from neuroloom.contract.layouts import Counter, Op
from neuroloom.firmware.compiler import FitError, compile_model, from_compiled, random_qmodel
from neuroloom.firmware.driver import Driver
from neuroloom.firmware.qmodel import MAPPINGS, qforward
from neuroloom.sim.transports import GoldenTransport

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "mapping.json"
MODEL = "random_qmodel(64, 32, 4, d_in=1, classes=10, seed=0)"
SCHEDULES = ("pipelined", "fall-through")


def engine_cycles(core) -> int:
    """Cycles of one neuron pass of the single-cycle engine if every group is active."""
    total = 0
    for g in core.groups:
        prog, pc = [], g.pc
        while True:
            ins = decode(core.ucode[pc])
            prog.append(ins)
            if ins.last:
                break
            pc += 1
        n_modes = sum(1 for i in prog if i.op == Op.MODES)
        total += 1 + g.count * (len(prog) + n_modes * g.modes)
    return total + core.cfg.groups


def smallest_mesh(model, **kw) -> FabricConfig:
    try:
        compile_model(model, FabricConfig(mesh_w=1, mesh_h=1), **kw)
        return FabricConfig(mesh_w=1, mesh_h=1)
    except FitError as e:
        return FabricConfig.parse_mesh(e.mesh)


def bench_mapping(model, kw: dict, x, ref) -> tuple[dict, object, FabricConfig]:
    cfg = smallest_mesh(model, **kw)
    t0 = time.perf_counter()
    comp = compile_model(model, cfg, **kw)
    t_compile = time.perf_counter() - t0
    img = from_compiled(comp)
    s = comp.summary()
    used = [c for c in comp.cores if c.groups]
    rows = [len(c.synapses) for c in used]
    drv = Driver(GoldenTransport(batch=1))
    drv.load(img)
    t0 = time.perf_counter()
    res = drv.run(x, mode="pipelined")
    dt = time.perf_counter() - t0
    K = x.shape[1]
    ctr = res.counters.sum(axis=0)                    # (4,) architectural, summed over cores
    r = {
        "mesh": s["mesh"], "cores_used": s["cores_used"], "stages": s["stages"],
        "neurons": s["neurons"], "mode_entries": s["modes"],
        "synapse_rows": s["synapse_rows"], "max_synapse_rows_per_core": max(rows),
        "route_words": s["route_words"], "hops_per_token_if_all_fire": s["hops_per_token"],
        "flits_per_token": round(float(ctr[Counter.SPIKES_SENT]) / K, 1),
        "syn_ops_per_token": round(float(ctr[Counter.SYN_OPS]) / K, 1),
        "neuron_updates_per_token": round(float(ctr[Counter.NEURON_UPDATES]) / K, 1),
        "engine_cycles_busiest_core_est": max(engine_cycles(c) for c in used),
        "golden_ms_per_step": round(1e3 * dt / res.steps, 2),
        "compile_s": round(t_compile, 2), "config_writes": len(img.writes),
        "golden_equals_qforward": bool(np.array_equal(res.running, ref)),
    }
    return r, img, cfg


def bench_rtl(img, cfg: FabricConfig, x, ref) -> dict:
    from neuroloom.contract.hostproto import Cmd
    from neuroloom.firmware.transports import FramedTransport
    from neuroloom.sim.verilator_link import VerilatorLink

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
        drv.load(img)
        for mode in SCHEDULES:
            cycles.clear()
            res = drv.run(x, mode=mode)
            run = cycles.get(int(Cmd.RUN), 0)
            out[mode] = {"steps": res.steps,
                         "run_cycles_per_token": round(run / x.shape[1], 1),
                         "run_cycles_per_step": round(run / res.steps, 1),
                         "bit_exact_vs_qforward": bool(np.array_equal(res.running, ref))}
            print(f"  RTL {mode}: {out[mode]}", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=32, help="tokens per run (default 32)")
    ap.add_argument("--mode-budget", type=int, default=264,
                    help="mode entries per core of the third column (default 264)")
    ap.add_argument("--row-budget", type=int, default=384,
                    help="synapse rows per core of the third column (default 384)")
    ap.add_argument("--rtl", action="append", default=[],
                    help="also run this column (per-mode, channel, channel-mbN-rbR) on the "
                         "Verilator RTL (repeatable)")
    args = ap.parse_args()
    columns = {"per-mode": dict(mapping="per-mode"), "channel": dict(mapping="channel"),
               f"channel-mb{args.mode_budget}-rb{args.row_budget}": dict(
                   mapping="channel", mode_budget=args.mode_budget, row_budget=args.row_budget)}
    unknown = sorted(set(args.rtl) - set(columns))
    if unknown:
        ap.error(f"--rtl {unknown[0]!r} is not a column ({', '.join(columns)})")
    model = random_qmodel(64, 32, 4, d_in=1, classes=10, seed=0)
    x = model.quantize_input(np.random.default_rng(0).uniform(0, 1, (1, args.tokens, 1)))
    refs = {m: qforward(model, x, mapping=m) for m in MAPPINGS}
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    old = old if old.get("tokens") == args.tokens else {}
    results = {"model": MODEL, "tokens": args.tokens, "cpu_count": os.cpu_count(),
               "qforward_equal_across_mappings": bool(np.array_equal(*refs.values()))}
    for col, kw in columns.items():
        print(f"{col} ...", flush=True)
        ref = refs[kw["mapping"]]
        r, img, cfg = bench_mapping(model, kw, x, ref)
        if col in args.rtl:
            r["rtl"] = bench_rtl(img, cfg, x, ref)
        elif col in old:
            r["rtl"] = old[col].get("rtl")   # kept from an earlier run of the same column
            if r["rtl"] is None:
                del r["rtl"]
        results[col] = r
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")

    rows = [("mesh", "mesh"), ("cores used", "cores_used"), ("stages", "stages"),
            ("neurons", "neurons"), ("mode entries", "mode_entries"),
            ("synapse rows", "synapse_rows"), ("rows, busiest core", "max_synapse_rows_per_core"),
            ("route words", "route_words"), ("flits / token", "flits_per_token"),
            ("synaptic ops / token", "syn_ops_per_token"),
            ("neuron updates / token", "neuron_updates_per_token"),
            ("engine cycles, busiest core (est.)", "engine_cycles_busiest_core_est"),
            ("golden ms / step", "golden_ms_per_step"),
            ("golden == qforward", "golden_equals_qforward")]
    print(f"\n{'seed small model':<36}" + "".join(f"{m:>20}" for m in columns))
    for label, key in rows:
        print(f"{label:<36}" + "".join(f"{str(results[m][key]):>20}" for m in columns))
    for mode in SCHEDULES:
        for what in ("run_cycles_per_token", "run_cycles_per_step"):
            cells = [str(results[m]["rtl"][mode][what]) if "rtl" in results[m] else "-"
                     for m in columns]
            label = f"RTL RUN cycles/{what.rsplit('_', 1)[1]}, {mode}"
            print(f"{label:<36}" + "".join(f"{c:>20}" for c in cells))
    print(f"qforward equal across mappings: {results['qforward_equal_across_mappings']}; "
          f"results in {RESULTS.relative_to(ROOT)}")
    ok = results["qforward_equal_across_mappings"] and all(
        results[m]["golden_equals_qforward"] for m in columns) and all(
        r["bit_exact_vs_qforward"] for m in columns for r in results[m].get("rtl", {}).values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
