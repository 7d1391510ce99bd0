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
runs the 256 sequences two ways, interleaved: all 256 side by side, and in blocks of 64 side by
side one block after the other (``golden, blocks of 64``: what ``neuroloom eval`` does with its
default ``--batch 64``; a block's mode state stays in the cache from step to step, 256 samples'
does not), each ``--rounds`` times (median; sequences as long as the batch-1 runs' by default,
so both pay the same pipeline fill per token); float and ``qforward`` run once, on
``--ref-batch-tokens`` tokens. Batch 1 and batch 256 of each model run in fresh processes of
their own (runs earlier in a process change the speed of later ones, see :func:`run_part`). Then
where a golden step goes, at batch 1 and 256 (``step_cpu_ms``): the process CPU milliseconds of
each compiled loop of one pipelined steady-state step (every kernel, the delivery) and of the
whole ``GoldenFabric.step``, averaged over repeated calls (CPU time, so that other jobs on the
machine count less than in wall time).
Results go to ``bench/results/golden.json``; a table is printed.

Every model runs on one thread: BLAS (numpy float's products) is limited to one thread
(``--blas-threads``), because its idle threads spin on the other core and slowed every model
measured in the same process (on the 2-core machine, seed small: numpy float 336 -> 89
us/token, golden 469 -> 201 with one BLAS thread). Runs are timed in process CPU seconds
(``--clock wall`` for wall seconds): with one thread the two agree on an otherwise idle machine,
and on a shared one CPU time leaves out the time other jobs held the core.

    .venv/bin/python bench/golden_bench.py [--tokens 128] [--batch-tokens 128]
        [--ref-batch-tokens 32] [--rounds 5] [--models small,large] [--clock cpu]
        [--blas-threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
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
#: `neuroloom eval`'s default batch: 256 sequences also run as blocks of this many side by side
BLOCK = 64
BLOCKED = f"golden, blocks of {BLOCK}"
MODELS = {"small": (64, 32), "large": (128, 64)}
MESHES = ("1x1", "2x2", "3x3", "4x3", "4x4", "6x6", "8x8", "12x12", "16x16")


def cpu_description() -> dict:
    """The CPU's model name and widest vector extension (the mode loops run ~1.5x faster with
    AVX-512 than with AVX2, see ``neuroloom.sim.kernels``); empty where /proc/cpuinfo is not."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    vector = next((f for f in ("avx512f", "avx2", "avx", "sse4_2") if f in flags), "")
    return {"cpu_model": fields.get("model name", ""), "cpu_vector": vector}


def compile_smallest(q):
    for mesh in MESHES:
        try:
            return from_compiled(compile_model(q, FabricConfig.parse_mesh(mesh)))
        except FitError:
            continue
    raise SystemExit("the model fits none of the meshes tried")


CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
clock = CLOCKS["cpu"]


def timed(fn) -> float:
    t0 = clock()
    fn()
    return clock() - t0


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


def setup(name: str, args):
    H, N = MODELS[name]
    q = random_qmodel(H, N, 4, d_in=1, classes=10, seed=0)
    fm = FloatModel.random(1, H, N, 4, 10, seed=0)
    img = compile_smallest(q)
    rng = np.random.default_rng(1)
    x1 = rng.integers(-3000, 3000, (1, args.tokens, 1))
    KB = args.tokens if args.batch_tokens is None else args.batch_tokens
    xb = rng.integers(-3000, 3000, (256, KB, 1))
    return q, fm, img, x1, xb


def batch1(name: str, args) -> dict:
    """Batch 1: ``--rounds`` interleaved rounds of float, qforward, golden; medians (us/token)."""
    q, fm, img, x1, _ = setup(name, args)
    K = x1.shape[1]
    gold1 = Driver(GoldenTransport(batch=1, max_batch=1))
    gold1.load(img)
    gold1.run(x1[:, :4])                                   # plan built, caches warm
    assert np.array_equal(gold1.run(x1).running, qforward(q, x1)), "golden != qforward"
    per = {"float": [], "qforward": [], "golden": []}
    for _ in range(args.rounds):
        per["float"].append(timed(lambda: fm.forward_recurrent(x1.astype(np.float64))) / K)
        per["qforward"].append(timed(lambda: qforward(q, x1)) / K)
        per["golden"].append(timed(lambda: gold1.run(x1)) / K)
    return {"us": {k: 1e6 * statistics.median(v) for k, v in per.items()},
            "cpu": step_breakdown(img, 1, 2000)}


def batch256(name: str, args) -> dict:
    """Batch 256: golden ``--rounds`` times (median), float and qforward once (tokens/s)."""
    q, fm, img, _, xb = setup(name, args)
    B, KB = xb.shape[:2]
    xr = xb[:, :args.ref_batch_tokens]
    goldb = Driver(GoldenTransport(batch=B, max_batch=B))
    goldb.load(img)
    # the same 256 sequences in blocks of BLOCK side by side (the driver runs block after
    # block), as `neuroloom eval` runs them by default (--batch 64)
    goldk = Driver(GoldenTransport(batch=BLOCK, max_batch=BLOCK))
    goldk.load(img)
    ref = qforward(q, xb[:, :8])
    for d in (goldb, goldk):
        assert np.array_equal(d.run(xb[:, :8]).running, ref), "golden batch 256 != qforward"
    per256, perk = [], []
    for _ in range(args.rounds):                           # interleaved
        per256.append(timed(lambda: goldb.run(xb)) / (B * KB))
        perk.append(timed(lambda: goldk.run(xb)) / (B * KB))
    return {"agg": {"float": B * xr.shape[1] / timed(
                        lambda: fm.forward_recurrent(xr.astype(np.float64))),
                    "qforward": B * xr.shape[1] / timed(lambda: qforward(q, xr)),
                    "golden": 1 / statistics.median(per256),
                    BLOCKED: 1 / statistics.median(perk)},
            "cpu": step_breakdown(img, B, 7), "tokens": {"golden": KB,
                                                          "float, qforward": xr.shape[1]}}


def bench_model(name: str, args) -> dict:
    """Both batch sizes, each measured in a fresh process (:func:`run_part`)."""
    one, many = run_part(name, "batch1", args), run_part(name, "batch256", args)
    us, agg = one["us"], many["agg"]
    H, N = MODELS[name]
    _, _, img, _, _ = setup(name, args)
    return {
        "model": f"random_qmodel({H}, {N}, 4, d_in=1, classes=10, seed=0)",
        "mesh": f"{img.cfg.mesh_w}x{img.cfg.mesh_h}", "tokens_batch1": args.tokens,
        "tokens_batch256": many["tokens"], "rounds": args.rounds,
        "us_per_token_batch1": {k: round(v, 1) for k, v in us.items()},
        "x_numpy_float_batch1": {k: round(v / us["float"], 2) for k, v in us.items()},
        "tokens_per_s_batch256": {k: round(v) for k, v in agg.items()},
        "batch256_gain": {k: round(agg[k] / (1e6 / us[k.split(",")[0]]), 2) for k in agg},
        "step_cpu_ms": {"batch 1": one["cpu"], "batch 256": many["cpu"]},
    }


def run_part(name: str, part: str, args) -> dict:
    """``batch1`` or ``batch256`` of one model in a fresh process: runs earlier in a process
    change the speed of later ones (measured: after a batch-256 run, golden batch 1 200 ->
    240-350 us/token; after the batch-1 rounds, golden batch 256 12.7 -> 14-16 us per token and
    sample), which would move the gain either way."""
    argv = [sys.executable, __file__, "--part", f"{name}:{part}"] + [
        f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
        if k not in ("part", "models") and v is not None]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=128, help="tokens per batch-1 run")
    ap.add_argument("--batch-tokens", type=int, default=None,
                    help="tokens per golden batch-256 run (default: --tokens)")
    ap.add_argument("--ref-batch-tokens", type=int, default=32,
                    help="tokens per float and qforward batch-256 run")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--models", default="small,large")
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="cpu",
                    help="time runs in process CPU seconds (default) or wall seconds")
    ap.add_argument("--blas-threads", type=int, default=1,
                    help="BLAS threads (numpy float's products); more spin on the other core")
    ap.add_argument("--part", help=argparse.SUPPRESS)    # MODEL:PART, its result on stdout
    args = ap.parse_args()
    global clock
    clock = CLOCKS[args.clock]
    if args.part:
        name, part = args.part.split(":")
        with threadpool_limits(args.blas_threads):  # one: every model on one core (docstring)
            print(json.dumps({"batch1": batch1, "batch256": batch256}[part](name, args)))
        return
    load0 = [round(v, 2) for v in os.getloadavg()]
    rows = []
    for name in args.models.split(","):
        rows.append({"name": name, **bench_model(name, args)})
        print(f"{name}: done", flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "machine": platform.processor() or platform.machine(), **cpu_description(),
        "cpus": os.cpu_count(),
        "blas_threads": args.blas_threads, "clock": args.clock,
        "load_average_at_start": load0,
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        "python": platform.python_version(), "numpy": np.__version__, "results": rows},
        indent=2) + "\n")
    print(f"{'model':>6} {'':>10} {'float':>10} {'qforward':>10} {'golden':>10} "
          f"{f'golden {BLOCK}s':>10}")
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
