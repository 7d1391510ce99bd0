"""Golden model speed beside numpy float, measured in one run: microseconds per token at batch 1
and aggregate tokens/s at batch 256, for the seed model sizes.

Models: ``random_qmodel(H, N, 4, d_in=1, classes=10, seed=0)`` compiled (channel neurons) onto
the smallest default-core mesh it fits, beside ``FloatModel.random(1, H, N, 4, 10)`` of the same
shape: seed small H=64, N=32; seed large H=128, N=64. Per model, ``--rounds`` interleaved rounds
(float, qforward, golden), medians reported:

* numpy float: ``FloatModel.forward_recurrent`` (token by token, the recurrence in numpy);
* ``qforward``: the quantized reference (channel mapping);
* golden: the golden fabric model behind the host driver (``Driver.run``, pipelined schedule,
  fill steps included), what ``neuroloom eval`` runs.

Then batch 256: aggregate tokens/s and its ratio to the batch-1 rate (the batching gain). Golden
runs ``--rounds`` times (median; sequences as long as the batch-1 runs' by default, so both pay
the same pipeline fill per token), after every batch-1 round; float and ``qforward`` run once, on
``--ref-batch-tokens`` tokens. Then where a golden step goes, at batch 1 and 256
(``step_cpu_ms``): the process CPU milliseconds of each compiled loop of one pipelined
steady-state step (every kernel, the delivery) and of the whole ``GoldenFabric.step``, averaged
over repeated calls (CPU time, so that other jobs on the machine count less than in wall time).
Results go to ``bench/results/golden.json``; a table is printed.

Everything runs on one thread: BLAS (numpy float's products) is limited to one thread, because
its idle threads spin on the other core and slowed every model measured in the same process
(on the 2-core machine, seed small: numpy float 336 -> 89 us/token, golden 469 -> 201 with one
BLAS thread).

    .venv/bin/python bench/golden_bench.py [--tokens 128] [--batch-tokens 128]
        [--ref-batch-tokens 32] [--rounds 5] [--models small,large]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from neuroloom.contract.config import FabricConfig
from neuroloom.firmware.compiler import FitError, compile_model, from_compiled, random_qmodel
from neuroloom.firmware.driver import Driver
from neuroloom.firmware.model import FloatModel
from neuroloom.firmware.qmodel import qforward
from neuroloom.sim.kernels import deliver, run_kernel
from neuroloom.sim.transports import GoldenTransport

RESULTS = Path(__file__).parent / "results" / "golden.json"
MODELS = {"small": (64, 32), "large": (128, 64)}
MESHES = ("1x1", "2x2", "3x3", "4x3", "4x4", "6x6", "8x8", "12x12", "16x16")


def compile_smallest(q):
    for mesh in MESHES:
        try:
            return from_compiled(compile_model(q, FabricConfig.parse_mesh(mesh)))
        except FitError:
            continue
    raise SystemExit("the model fits none of the meshes tried")


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def step_breakdown(img, B: int, reps: int) -> dict:
    """CPU ms of the parts of one steady-state pipelined step at batch ``B``."""
    drv = Driver(GoldenTransport(batch=B, max_batch=B))
    drv.load(img)
    drv.run(np.random.default_rng(2).integers(-3000, 3000, (B, 16, 1)))
    f = drv.transport.fabric
    ph, cfg = f._phase(f.t), f.cfg
    emit = np.empty((len(ph.gid), B), dtype=bool)
    pay = np.empty((len(ph.gid), B), dtype=f._xm.dtype)
    parts = {f"kernel {len(r.gid)} neurons x {r.mc.shape[1]} modes":
             lambda r=r: run_kernel(r.prog, r.sh, r.so, r.gid, r.mrow, r.mc, f._st, f._acc[0],
                                    f.coef, f._xm, cfg.state_width, cfg.acc_width, emit, pay,
                                    r.pos) for r in ph.runs}
    parts["deliver"] = lambda: deliver(pay, emit, ph.eptr, ph.dsti, ph.w, ph.s, ph.dst,
                                       f._acc[1], cfg.acc_width, *ph.counts, f.counters, ph.updates)
    parts["whole step"] = f.step
    out = {}
    for k, fn in parts.items():
        c0 = time.process_time()
        for _ in range(reps):
            fn()
        out[k] = round(1e3 * (time.process_time() - c0) / reps, 3)
    return out


def bench_model(name: str, args) -> dict:
    H, N = MODELS[name]
    q = random_qmodel(H, N, 4, d_in=1, classes=10, seed=0)
    fm = FloatModel.random(1, H, N, 4, 10, seed=0)
    img = compile_smallest(q)
    rng = np.random.default_rng(1)
    K, B = args.tokens, 256
    KB = K if args.batch_tokens is None else args.batch_tokens
    x1 = rng.integers(-3000, 3000, (1, K, 1))
    xb = rng.integers(-3000, 3000, (B, KB, 1))
    xr = xb[:, :args.ref_batch_tokens]
    gold1 = Driver(GoldenTransport(batch=1, max_batch=1))
    gold1.load(img)
    gold1.run(x1[:, :4])                                   # plan built, caches warm
    ref = qforward(q, x1)
    assert np.array_equal(gold1.run(x1).running, ref), "golden != qforward"
    goldb = Driver(GoldenTransport(batch=B, max_batch=B))
    goldb.load(img)
    assert np.array_equal(goldb.run(xb[:, :8]).running[:3], qforward(q, xb[:3, :8])), \
        "golden batch 256 != qforward"
    per = {"float": [], "qforward": [], "golden": []}
    for _ in range(args.rounds):
        per["float"].append(timed(lambda: fm.forward_recurrent(x1.astype(np.float64))) / K)
        per["qforward"].append(timed(lambda: qforward(q, x1)) / K)
        per["golden"].append(timed(lambda: gold1.run(x1)) / K)
    us = {k: 1e6 * statistics.median(v) for k, v in per.items()}
    # after the batch-1 rounds: a batch-256 run leaves the next batch-1 runs slower for a while
    # (measured: 200 -> 240-320 us/token), which would flatter the gain
    per256 = [timed(lambda: goldb.run(xb)) / (B * KB) for _ in range(args.rounds)]
    agg = {"float": B * xr.shape[1] / timed(lambda: fm.forward_recurrent(xr.astype(np.float64))),
           "qforward": B * xr.shape[1] / timed(lambda: qforward(q, xr)),
           "golden": 1 / statistics.median(per256)}
    cpu = {f"batch {b}": step_breakdown(img, b, max(5, 2000 // b)) for b in (1, B)}
    return {
        "model": f"random_qmodel({H}, {N}, 4, d_in=1, classes=10, seed=0)",
        "mesh": f"{img.cfg.mesh_w}x{img.cfg.mesh_h}", "tokens_batch1": K,
        "tokens_batch256": {"golden": KB, "float, qforward": xr.shape[1]}, "rounds": args.rounds,
        "us_per_token_batch1": {k: round(v, 1) for k, v in us.items()},
        "x_numpy_float_batch1": {k: round(v / us["float"], 2) for k, v in us.items()},
        "tokens_per_s_batch256": {k: round(v) for k, v in agg.items()},
        "batch256_gain": {k: round(agg[k] / (1e6 / us[k]), 2) for k in us},
        "step_cpu_ms": cpu,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=128, help="tokens per batch-1 run")
    ap.add_argument("--batch-tokens", type=int, default=None,
                    help="tokens per golden batch-256 run (default: --tokens)")
    ap.add_argument("--ref-batch-tokens", type=int, default=32,
                    help="tokens per float and qforward batch-256 run")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--models", default="small,large")
    args = ap.parse_args()
    load0 = [round(v, 2) for v in os.getloadavg()]
    rows = []
    with threadpool_limits(1):                  # every model on one core (see the docstring)
        for name in args.models.split(","):
            rows.append({"name": name, **bench_model(name, args)})
            print(f"{name}: done", flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "blas_threads": 1,
        "load_average_at_start": load0,
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        "python": platform.python_version(), "numpy": np.__version__, "results": rows},
        indent=2) + "\n")
    print(f"{'model':>6} {'':>10} {'float':>10} {'qforward':>10} {'golden':>10}")
    for r in rows:
        u, x, a, g = (r["us_per_token_batch1"], r["x_numpy_float_batch1"],
                      r["tokens_per_s_batch256"], r["batch256_gain"])
        print(f"{r['name']:>6} {'us/token':>10} " + " ".join(f"{u[k]:>10}" for k in u))
        print(f"{'':>6} {'x float':>10} " + " ".join(f"{x[k]:>10}" for k in x))
        print(f"{'':>6} {'b256 tok/s':>10} " + " ".join(f"{a[k]:>10}" for k in a))
        print(f"{'':>6} {'b256 gain':>10} " + " ".join(f"{g[k]:>10}" for k in g))
        for batch, parts in r["step_cpu_ms"].items():
            print(f"{'':>6} step CPU ms at {batch}: "
                  + ", ".join(f"{k} {v}" for k, v in parts.items()))
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
