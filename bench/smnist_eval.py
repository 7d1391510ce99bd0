"""An sMNIST-sized evaluation on the golden model: wall time serial vs sharded over Dask workers.

Workload: ``--samples`` sequences of ``--tokens`` tokens (default 1,000 x 784, the size of
sequential MNIST's test pass; the values are random pixels in [0, 1], the labels random: this
measures time, not accuracy) through the seed-small-size model ``random_qmodel(64, 32, 4, d_in=1,
classes=10, seed=0)`` compiled with channel neurons onto the smallest default-core mesh it fits,
pipelined, with :func:`neuroloom.firmware.evaluate.golden_eval` (what ``neuroloom eval`` runs):
once per ``--workers`` count (1 = serial in this process; N > 1 = a Dask LocalCluster of N
processes, its start-up included). Every later run is checked equal to the first one, bit for
bit (``equal_to_first_run``; null for the first). Each row records the 1-minute load average
at its start and this process's CPU seconds (serial: the whole run; with workers: the host
side only): on a shared machine the wall time follows the load. Results go to
``bench/results/smnist_eval.json`` (other sizes: ``smnist_eval_SxK.json``); a table is printed.

    .venv/bin/python bench/smnist_eval.py [--samples 1000] [--tokens 784] [--workers 1 2]
        [--batch 256]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from neuroloom.contract.config import FabricConfig
from neuroloom.firmware.compiler import FitError, compile_model, from_compiled, random_qmodel
from neuroloom.firmware.evaluate import golden_eval

RESULTS = Path(__file__).parent / "results" / "smnist_eval.json"
MODEL = "random_qmodel(64, 32, 4, d_in=1, classes=10, seed=0)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--tokens", type=int, default=784)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args()
    q = random_qmodel(64, 32, 4, d_in=1, classes=10, seed=0)
    for mesh in ("1x1", "2x2", "3x3", "4x3", "4x4", "6x6"):
        try:
            img = from_compiled(compile_model(q, FabricConfig.parse_mesh(mesh)))
            break
        except FitError:
            continue
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (args.samples, args.tokens, 1))
    y = rng.integers(0, 10, args.samples)
    rows, first = [], None
    for w in args.workers:
        load0 = round(os.getloadavg()[0], 2)
        t0, c0 = time.perf_counter(), time.process_time()
        g = golden_eval(img, x, y, "pipelined", batch=args.batch, workers=w)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        same = None if first is None else bool(np.array_equal(g.result.running, first))
        first = g.result.running if first is None else first
        rows.append({"workers": w, "seconds": round(wall, 1), "run_seconds": round(g.seconds, 1),
                     "sequences_per_s": round(args.samples / wall, 2),
                     "tokens_per_s": round(args.samples * args.tokens / wall),
                     "failed": len(g.failed), "equal_to_first_run": same,
                     "load_average_1min_at_start": load0,
                     "cpu_seconds_this_process": round(cpu, 1)})
        print(f"workers {w}: {rows[-1]}", flush=True)
    out = RESULTS if (args.samples, args.tokens) == (1000, 784) else \
        RESULTS.with_name(f"smnist_eval_{args.samples}x{args.tokens}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "model": MODEL, "mesh": f"{img.cfg.mesh_w}x{img.cfg.mesh_h}", "mode": "pipelined",
        "samples": args.samples, "tokens": args.tokens, "batch": args.batch,
        "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        "results": rows}, indent=2) + "\n")
    print(f"{'workers':>8} {'seconds':>9} {'seq/s':>8} {'tokens/s':>10} {'== first':>9}")
    for r in rows:
        print(f"{r['workers']:>8} {r['seconds']:>9} {r['sequences_per_s']:>8} "
              f"{r['tokens_per_s']:>10} {str(r['equal_to_first_run']):>9}")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
