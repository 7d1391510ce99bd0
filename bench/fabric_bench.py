"""Fabric RTL benchmarks (Verilator, through the host driver and the framed host link).

(a) RTL clock cycles per token, pipelined and fall-through, of the shipped digits model on the
    default 2x2 fabric (a few test samples; link.cycles around each Driver.run / tokens, so the
    host-link traffic of a run -- CLEAR, INJECTs, RUN, counter reads -- is included).
(b) The seed "small" model shape (H=64, N=32, 4 layers, random_qmodel): cores needed and the mesh
    it compiles to; its RTL figures come from ``bench/seed_rtl_bench.py`` (run that first: the
    42-tile build and the image load take several minutes).
(c) Verilator simulation speed (simulated cycles per wall second during runs) against mesh size,
    1x1 / 2x2 / 3x3 of small-capacity cores, random models spread over the mesh.

Results: bench/results/fabric.json and a printed table.

    .venv/bin/python bench/fabric_bench.py [--samples 3]
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
from neuroloom.firmware.compiler import (
    FitError,
    compile_model,
    from_compiled,
    random_qmodel,
)
from neuroloom.firmware.driver import Driver
from neuroloom.firmware.transports import FramedTransport
from neuroloom.sim.transports import GoldenTransport

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "fabric.json"
SMALL = dict(neurons=32, axons=32, synapse_rows=128, route_words=64, ucode_depth=32)
MODES = ("pipelined", "fall-through")
#: (mesh, random model shape) for the speed sweep; shapes chosen to use most of each mesh
SWEEP = [((1, 1), (4, 2, 1)), ((2, 2), (6, 3, 2)), ((3, 3), (12, 3, 3))]


def _built(cfg) -> bool:
    from neuroloom.sim.verilator_link import is_built
    return is_built(cfg)


def open_link(cfg):
    """VerilatorLink with the build/simulator output sent to a log file; (link, build seconds)."""
    from neuroloom.sim.verilator_link import VerilatorLink
    os.environ.setdefault("COCOTB_LOG_LEVEL", "WARNING")
    os.environ.setdefault("GPI_LOG_LEVEL", "WARNING")
    fresh = not _built(cfg)
    if fresh:
        print(f"  building the Verilator model of {cfg.mesh_w}x{cfg.mesh_h} ...", flush=True)
    t0 = time.perf_counter()
    sys.stdout.flush()
    saved = os.dup(1), os.dup(2)
    log = open(ROOT / "build" / "fabric_bench.log", "ab")
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    try:
        link = VerilatorLink(cfg, timeout=7200.0)
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
    return link, (time.perf_counter() - t0 if fresh else None)


def close_link(link):
    saved = os.dup(1), os.dup(2)
    with open(ROOT / "build" / "fabric_bench.log", "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            link.close()
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def rtl_runs(model, cfg, xq, modes=MODES):
    """Per mode: cycles/token (mean), sim cycles/s, wall s/sample, bit-exact vs golden."""
    comp = compile_model(model, cfg, mode="pipelined")
    img = from_compiled(comp)
    link, build_s = open_link(cfg)
    out = {"mesh": f"{cfg.mesh_w}x{cfg.mesh_h}", "cores_used": comp.cores_used,
           "hops_per_token": comp.hops(), "build_seconds": build_s, "samples": len(xq),
           "tokens": int(xq.shape[1])}
    try:
        drv = Driver(FramedTransport(link))
        t0 = time.perf_counter()
        drv.load(img)
        out["load_cycles"], out["load_seconds"] = link.cycles, time.perf_counter() - t0
        gold = Driver(GoldenTransport(batch=len(xq), max_batch=len(xq)))
        gold.load(img)
        for mode in modes:
            ref = gold.run(xq, mode=mode).running
            cyc, wall, same, sim = [], 0.0, 0, 0
            for b in range(len(xq)):
                c0, s0, t0 = link.cycles, link.sim_cycles, time.perf_counter()
                res = drv.run(xq[b:b + 1], mode=mode)
                wall += time.perf_counter() - t0
                cyc.append(link.cycles - c0)
                sim += link.sim_cycles - s0
                same += int(np.array_equal(res.running[0], ref[b]))
            K = xq.shape[1]
            out[mode] = {"cycles_per_token": float(np.mean(cyc)) / K,
                         "cycles_per_sample": [int(c) for c in cyc],
                         "steps": int(res.steps),
                         "sim_cycles_per_s": float(sim / wall),
                         "sim_tokens_per_s": float(len(xq) * K / wall),
                         "bit_exact_vs_golden": f"{same}/{len(xq)}"}
    finally:
        close_link(link)
    return out


def bench_shipped(samples):
    from neuroloom.firmware.datasets import load_dataset
    from neuroloom.firmware.importer import load_model
    q = load_model(ROOT / "firmware" / "models" / "digits-q")
    cfg = FabricConfig()
    xq = q.quantize_input(load_dataset("digits").x_test[:samples], cfg)
    return rtl_runs(q, cfg, xq)


def seed_model():
    cfg = FabricConfig()
    q = random_qmodel(64, 32, 4, d_in=1, classes=10, seed=0, cfg=cfg)
    try:
        comp = compile_model(q, cfg)
        mesh = "2x2"
    except FitError as e:
        info = {"fits_2x2": False, "fit_error": str(e), "cores_needed": e.cores_needed,
                "binding_resource": e.resource, "mesh": e.mesh}
        w, h = (int(v) for v in e.mesh.split("x"))
        cfg = FabricConfig(mesh_w=w, mesh_h=h)
        comp = compile_model(q, cfg)
        mesh = e.mesh
    else:
        info = {"fits_2x2": True}
    info.update({"shape": "H=64 N=32 layers=4 d_in=1 classes=10 (random_qmodel seed 0)",
                 "mesh": mesh, "cores_used": comp.cores_used, "hops_per_token": comp.hops()})
    return q, cfg, info


def bench_seed():
    """The fit of the seed shape, and its RTL figures from ``bench/seed_rtl_bench.py`` (a
    separate run: the 7x6 build and image load take a while) if that has been run."""
    _, _, info = seed_model()
    seed_json = ROOT / "bench" / "results" / "fabric_seed.json"
    if seed_json.is_file():
        info["rtl"] = json.loads(seed_json.read_text())
        info["rtl"]["from"] = str(seed_json.relative_to(ROOT))
    else:
        info["rtl"] = "not run yet: .venv/bin/python bench/seed_rtl_bench.py"
    return info


def bench_sweep(samples):
    rows = []
    for (w, h), (H, N, L) in SWEEP:
        cfg = FabricConfig(mesh_w=w, mesh_h=h, **SMALL)
        m = random_qmodel(H, N, L, d_in=2, classes=3, seed=5, cfg=cfg)
        xq = m.quantize_input(np.random.default_rng(2).uniform(-9, 9, (samples, 16, 2)), cfg)
        r = rtl_runs(m, cfg, xq, modes=("pipelined",))
        r["model"] = f"H={H} N={N} layers={L} d_in=2 classes=3"
        rows.append(r)
        print(f"  {r['mesh']}: {r['pipelined']['sim_cycles_per_s']:.0f} cycles/s", flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=3)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    res = {"cpu_count": os.cpu_count()}
    print("(a) shipped digits model on the default 2x2 fabric", flush=True)
    res["shipped"] = bench_shipped(args.samples)
    OUT.write_text(json.dumps(res, indent=2) + "\n")          # partial results as we go
    print("(c) Verilator simulation speed vs mesh size (small cores)", flush=True)
    res["sim_speed"] = bench_sweep(args.samples)
    OUT.write_text(json.dumps(res, indent=2) + "\n")
    print("(b) seed small model shape H=64 N=32 4 layers", flush=True)
    res["seed_model"] = bench_seed()
    res["total_seconds"] = time.perf_counter() - t0
    OUT.write_text(json.dumps(res, indent=2) + "\n")

    s = res["shipped"]
    print(f"\n(a) shipped digits-q on {s['mesh']} ({s['cores_used']} cores used), "
          f"{s['samples']} samples x {s['tokens']} tokens")
    print(f"{'mode':<14}{'cycles/token':>13}{'steps':>7}{'sim cycles/s':>14}"
          f"{'sim tokens/s':>14}{'bit-exact':>11}")
    for mode in MODES:
        r = s[mode]
        print(f"{mode:<14}{r['cycles_per_token']:>13.1f}{r['steps']:>7}"
              f"{r['sim_cycles_per_s']:>14.0f}{r['sim_tokens_per_s']:>14.1f}"
              f"{r['bit_exact_vs_golden']:>11}")
    b = res["seed_model"]
    print(f"\n(b) seed shape {b['shape']}: needs {b['cores_used']} cores, mesh {b['mesh']}"
          + ("" if b.get("fits_2x2") else f" (binding resource {b['binding_resource']})"))
    rtl = b["rtl"]
    print("    RTL: " + (rtl if isinstance(rtl, str) else
                         f"{rtl['pipelined']['cycles_per_token']:.1f} cycles/token pipelined, "
                         f"{rtl['fall-through']['cycles_per_token']:.1f} fall-through "
                         f"(from {rtl['from']})"))
    print(f"\n(c) simulation speed ({res['cpu_count']} CPUs)")
    print(f"{'mesh':<6}{'cores used':>11}{'cycles/token':>13}{'sim cycles/s':>14}"
          f"{'build s':>9}  model")
    for r in res["sim_speed"]:
        bs = "cached" if r["build_seconds"] is None else f"{r['build_seconds']:.0f}"
        print(f"{r['mesh']:<6}{r['cores_used']:>11}{r['pipelined']['cycles_per_token']:>13.1f}"
              f"{r['pipelined']['sim_cycles_per_s']:>14.0f}{bs:>9}  {r['model']}")
    print(f"\nwrote {OUT.relative_to(ROOT)} ({res['total_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
