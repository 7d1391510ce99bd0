"""Cycles per token of the seed small model shape (H=64, N=32, 4 layers, d_in=1, 10 classes;
random parameters from ``random_qmodel(..., seed=0)``) on the RTL of the smallest default-core
mesh it fits (7x6, 41 cores used), in both modes, checked bit for bit against the quantized
reference (qforward) and the architectural counters against the golden model.

Figures (RTL clock cycles from the Verilator simulation, ``VerilatorLink.cycles``: per command,
from the fabric accepting its first word to handing over the response's last word, the host
offering a word every cycle and always ready):

* load: the whole config image through the host link (WRITE frames of 255 writes);
* cycles/token end to end: ``link.cycles`` around ``Driver.run`` (CLEAR, token INJECTs, RUNs,
  counter reads) / tokens -- what a host sees;
* cycles/token in RUN: only the RUN commands' exchanges (3 command words, the steps, OUTPUT
  frames, the response) / tokens -- the fabric's own rate with the host traffic taken out;
* cycles/step in RUN: the same / steps run. Pipelined, one token enters per step, so this is
  the steady-state cycles per token of a long sequence (the per-token figures above include
  the pipeline's fill, stages - 1 extra steps per sequence).
* busy cycles per step of the 5 busiest cores (RTL-only counter ``BUSY_CYCLES``: cycles a
  core was not idle, whole run incl. host traffic, / steps), to see what bounds the step.

Slow: the first run builds the 42-tile Verilator model (about 5 min on 2 cores). Results go to
``bench/results/fabric_seed.json``.

    .venv/bin/python bench/seed_rtl_bench.py [--tokens 64] [--mesh 7x6] [--row-budget N]

With ``--row-budget N`` the model is compiled with at most N synapse rows per core (see
``compile_model``) and the results go to ``bench/results/fabric_seed_rbN.json``.
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
from neuroloom.contract.hostproto import Cmd
from neuroloom.contract.layouts import Counter, Mem
from neuroloom.firmware.compiler import (
    compile_model,
    from_compiled,
    random_qmodel,
)
from neuroloom.firmware.driver import Driver
from neuroloom.firmware.qmodel import qforward
from neuroloom.firmware.transports import FramedTransport
from neuroloom.sim.transports import GoldenTransport

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "fabric_seed.json"
MODES = ("pipelined", "fall-through")


class CountingLink:
    """A link wrapper that adds up simulated cycles and wall time per command opcode."""

    def __init__(self, link):
        self.link = link
        self.cycles: dict[int, int] = {}
        self.wall: dict[int, float] = {}

    def exchange(self, words):
        c0, t0 = self.link.cycles, time.perf_counter()
        out = self.link.exchange(words)
        op = words[0] & 0xFF
        self.cycles[op] = self.cycles.get(op, 0) + self.link.cycles - c0
        self.wall[op] = self.wall.get(op, 0.0) + time.perf_counter() - t0
        return out

    def reset(self):
        self.cycles.clear()
        self.wall.clear()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=64, help="tokens per mode (default 64)")
    ap.add_argument("--mesh", default="7x6", help="mesh WxH of default cores (default 7x6)")
    ap.add_argument("--row-budget", type=int, default=None,
                    help="compile with at most this many synapse rows per core")
    args = ap.parse_args()
    results = RESULTS if args.row_budget is None else RESULTS.with_name(
        f"fabric_seed_rb{args.row_budget}.json")
    from neuroloom.sim.verilator_link import VerilatorLink, is_built

    w, h = (int(v) for v in args.mesh.lower().split("x"))
    cfg = FabricConfig(mesh_w=w, mesh_h=h)
    model = random_qmodel(64, 32, 4, d_in=1, classes=10, seed=0)
    comp = compile_model(model, cfg, mode="pipelined", row_budget=args.row_budget)
    img = from_compiled(comp)
    x = model.quantize_input(np.random.default_rng(0).uniform(0, 1, (1, args.tokens, 1)), cfg)
    ref = qforward(model, x, cfg)
    res = {"model": "random_qmodel(64, 32, 4, d_in=1, classes=10, seed=0)",
           "mesh": f"{w}x{h}", "cores_used": comp.cores_used, "neurons": len(comp.placement),
           "stages": comp.num_stages, "hops_per_token": comp.hops(),
           "row_budget": args.row_budget,
           "max_synapse_rows_per_core": max(u["synapse_rows"][0] for u in comp.usage()),
           "tokens": args.tokens, "config_writes": len(img.writes), "cpu_count": os.cpu_count()}
    print(f"seed model on {w}x{h}: {comp.cores_used} cores, {len(img.writes)} config writes",
          flush=True)
    built = is_built(cfg)
    if not built:
        print("building the Verilator model (about 5 min) ...", flush=True)
    t = time.perf_counter()
    gold = Driver(GoldenTransport(batch=1))
    gold.load(img)
    with VerilatorLink(cfg, timeout=7200.0) as vlink:
        res["build_s" if not built else "start_s"] = round(time.perf_counter() - t, 1)
        link = CountingLink(vlink)
        drv = Driver(FramedTransport(link))
        c0, s0, t = vlink.cycles, vlink.sim_cycles, time.perf_counter()
        drv.load(img)
        dt = time.perf_counter() - t
        res["load"] = {"cycles": vlink.cycles - c0, "wall_s": round(dt, 1),
                       "sim_cycles_per_s": round((vlink.sim_cycles - s0) / dt)}
        print("load", res["load"], flush=True)
        tr = drv.transport

        def busy():                 # RTL-only per-core counter: cycles the core was not idle
            return np.array([tr.read(c, Mem.COUNTER, int(Counter.BUSY_CYCLES), 0)
                             for c in range(cfg.num_cores)], dtype=np.int64)

        for mode in MODES:
            b0 = busy()
            link.reset()
            c0, s0, t = vlink.cycles, vlink.sim_cycles, time.perf_counter()
            out = drv.run(x, mode=mode)
            cyc, dt = vlink.cycles - c0, time.perf_counter() - t
            sim = vlink.sim_cycles - s0
            by_cmd = {Cmd(op).name: c for op, c in sorted(link.cycles.items())}
            b = (busy() - b0) / out.steps
            top = np.argsort(-b)[:5]
            g = gold.run(x, mode=mode)
            res[mode] = {
                "steps": out.steps,
                "cycles_per_token": round(cyc / args.tokens, 1),
                "run_cycles_per_token": round(link.cycles.get(int(Cmd.RUN), 0) / args.tokens, 1),
                "run_cycles_per_step": round(link.cycles.get(int(Cmd.RUN), 0) / out.steps, 1),
                "cycles_by_command": by_cmd,
                "wall_s": round(dt, 1),
                "sim_cycles_per_s": round(sim / dt),
                "bit_exact_vs_qforward": bool(np.array_equal(out.running, ref)),
                "counters_equal_golden": bool(np.array_equal(out.counters, g.counters)),
                "golden_equal_qforward": bool(np.array_equal(g.running, ref)),
                "busy_cycles_per_step_top5": {f"core {int(c)} {cfg.core_xy(int(c))}":
                                              round(float(b[c]), 1) for c in top},
            }
            print(mode, res[mode], flush=True)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(res, indent=2) + "\n")
    print()
    print(f"{'mode':<14}{'steps':>7}{'cycles/token':>14}{'RUN cycles/token':>18}"
          f"{'RUN cycles/step':>17}{'bit-exact':>11}{'sim cycles/s':>14}")
    for mode in MODES:
        r = res[mode]
        print(f"{mode:<14}{r['steps']:>7}{r['cycles_per_token']:>14}{r['run_cycles_per_token']:>18}"
              f"{r['run_cycles_per_step']:>17}"
              f"{str(r['bit_exact_vs_qforward'] and r['counters_equal_golden']):>11}"
              f"{r['sim_cycles_per_s']:>14,}")
    print(f"load: {res['load']['cycles']:,} cycles for {len(img.writes):,} writes, "
          f"{res['load']['wall_s']} s wall; results in {results.relative_to(ROOT)}")
    ok = all(res[m]["bit_exact_vs_qforward"] and res[m]["counters_equal_golden"] for m in MODES)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
