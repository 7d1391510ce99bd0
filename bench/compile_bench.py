"""Compiler benchmark: compile time, image size, cores needed and NoC hops for the seed model
sizes (random QModels of that shape, default core capacities), plus golden-model throughput.

    .venv/bin/python bench/compile_bench.py [--quick] [--no-golden]

Writes ``bench/results/compile.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
from neuroloom.sim.transports import GoldenTransport

ROOT = Path(__file__).resolve().parents[1]
SIZES = [  # name, H, N (complex modes), layers
    ("small (sMNIST seed)", 64, 32, 4),
    ("large (sCIFAR seed)", 128, 64, 4),
]


def bench_one(name, H, N, L, golden: bool, tokens: int, batch: int) -> dict:
    model = random_qmodel(H, N, L, d_in=1, classes=10, seed=0)
    try:
        compile_model(model, FabricConfig())
        mesh = "2x2"
    except FitError as e:
        mesh = e.mesh
    if mesh is None:
        return {"name": name, "H": H, "N": N, "layers": L, "fits": False}
    cfg = FabricConfig.parse_mesh(mesh)
    t0 = time.perf_counter()
    snake = compile_model(model, cfg, optimize_placement=False)
    t_snake = time.perf_counter() - t0
    t0 = time.perf_counter()
    comp = compile_model(model, cfg)
    t_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    img = from_compiled(comp)
    blob = img.to_bytes()
    t_image = time.perf_counter() - t0
    s = comp.summary()
    r = {"name": name, "H": H, "N": N, "modes": N + 1, "layers": L, "fits": True,
         "mesh": mesh, "cores_used": s["cores_used"], "neurons": s["neurons"],
         "axons": s["axons"], "synapse_rows": s["synapse_rows"],
         "route_words": s["route_words"], "hops_per_token": s["hops_per_token"],
         "hops_per_token_snake": snake.hops(), "compile_s": round(t_compile, 3),
         "compile_snake_s": round(t_snake, 3), "image_s": round(t_image, 3),
         "image_bytes": len(blob), "config_writes": len(img.writes), "stages": comp.num_stages}
    if golden:
        drv = Driver(GoldenTransport(batch=batch, max_batch=batch))
        t0 = time.perf_counter()
        drv.load(img)
        drv.transport.fabric.plan()
        r["golden_load_s"] = round(time.perf_counter() - t0, 2)
        x = model.quantize_input(np.random.default_rng(0).uniform(0, 1, (batch, tokens, 1)))
        t0 = time.perf_counter()
        res = drv.run(x, mode="pipelined")
        dt = time.perf_counter() - t0
        r.update(golden_batch=batch, golden_tokens=tokens, golden_steps=res.steps,
                 golden_steps_per_s=round(res.steps / dt, 2),
                 golden_tokens_per_s=round(batch * tokens / dt, 1))
    return r


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small model only")
    p.add_argument("--no-golden", action="store_true", help="skip golden throughput")
    p.add_argument("--tokens", type=int, default=64, help="tokens per sequence (digits: 64)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "compile.json"))
    a = p.parse_args(argv)
    rows = []
    for name, H, N, L in SIZES[:1] if a.quick else SIZES:
        print(f"... {name}", file=sys.stderr, flush=True)
        rows.append(bench_one(name, H, N, L, not a.no_golden, a.tokens, a.batch))
    out = {"machine": platform.platform(), "python": platform.python_version(),
           "load_average_1min": round(os.getloadavg()[0], 2),
           "default_core": {k: v for k, v in FabricConfig().to_dict().items()
                            if k not in ("mesh_w", "mesh_h")},
           "results": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    cols = [("name", 20), ("mesh", 6), ("cores_used", 6), ("neurons", 8), ("synapse_rows", 8),
            ("hops_per_token", 8), ("hops_per_token_snake", 8), ("compile_s", 8),
            ("image_s", 8), ("image_bytes", 10), ("golden_load_s", 8),
            ("golden_steps_per_s", 8), ("golden_tokens_per_s", 10)]
    heads = ["model", "mesh", "cores", "neurons", "syn.rows", "hops", "hops(sn)", "compile",
             "image", "bytes", "g.load", "g.step/s", "g.tok/s"]
    print(" ".join(f"{h:>{w}}" for h, (_, w) in zip(heads, cols)))
    for r in rows:
        print(" ".join(f"{str(r.get(k, '-')):>{w}}" for k, w in cols))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
