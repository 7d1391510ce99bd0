"""Golden model throughput: neuron updates/s and synaptic ops/s at batch 1 and 256.

Workload: a 2x2 fabric, every core a group of 256 S4D neurons (the main program), every neuron
routing its spike to the next core, where its axon fans out to 16 neurons through 4 dense
synapse rows. Results go to bench/results/golden.json and a table is printed.

    .venv/bin/python bench/golden_bench.py [--steps N]
"""

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.coreconfig import CoreConfig, Group, Route, Synapse
from neuroloom.contract.layouts import Counter
from neuroloom.firmware.asm import load_program
from neuroloom.sim.golden import GoldenFabric

RESULTS = Path(__file__).parent / "results" / "golden.json"


def build(cfg: FabricConfig, rng) -> dict:
    configs = {}
    for core in range(cfg.num_cores):
        cc = CoreConfig(cfg)
        cc.groups.append(Group(0, cfg.neurons, cc.add_program(load_program("s4d"))))
        r = 0.99 * np.exp(1j * rng.uniform(-np.pi, np.pi, cfg.neurons))
        cc.coef[:, 0], cc.coef[:, 1] = np.round(r.real * 2 ** 15), np.round(r.imag * 2 ** 15)
        cc.coef[:, 2] = 2 ** 10
        cc.coef[:, 4], cc.coef[:, 5] = rng.integers(-2 ** 14, 2 ** 14, (2, cfg.neurons))
        rows_per_axon = 4
        for a in range(cfg.neurons):
            first = (a * 7) % (cfg.neurons // cfg.synapse_lanes - rows_per_axon)
            cc.add_axon([Synapse(first + i, 0b1111, tuple(rng.integers(-128, 128, 4)))
                         for i in range(rows_per_axon)], shift=7)
        nxt = cfg.core_xy((core + 1) % cfg.num_cores)
        for n in range(cfg.neurons):
            cc.routes[n] = [Route(nxt[0], nxt[1], n)]
        configs[core] = cc
    return configs


def measure(batch: int, steps: int) -> dict:
    cfg = FabricConfig(mesh_w=2, mesh_h=2, synapse_rows=1024)
    fabric = GoldenFabric(cfg, batch=batch)
    for core, cc in build(cfg, np.random.default_rng(0)).items():
        fabric.load([(core,) + w for w in cc.writes()])
    fabric.plan()
    rng = np.random.default_rng(1)
    t0 = time.perf_counter()
    for _ in range(steps):
        fabric.inject(0, 0, rng.integers(-1000, 1000, batch))
        fabric.step()
    dt = time.perf_counter() - t0
    c = fabric.counters.sum(axis=(0, 1))
    return {"batch": batch, "steps": steps, "seconds": round(dt, 4),
            "steps_per_s": round(steps / dt, 1),
            "neuron_updates_per_s": round(c[Counter.NEURON_UPDATES] / dt),
            "syn_ops_per_s": round(c[Counter.SYN_OPS] / dt)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=50)
    args = ap.parse_args()
    rows = [measure(b, args.steps if b == 1 else max(5, args.steps // 5)) for b in (1, 256)]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                                   "python": platform.python_version(), "results": rows},
                                  indent=2) + "\n")
    print(f"{'batch':>6} {'steps/s':>10} {'neuron upd/s':>14} {'syn ops/s':>14}")
    for r in rows:
        print(f"{r['batch']:>6} {r['steps_per_s']:>10} {r['neuron_updates_per_s']:>14,} "
              f"{r['syn_ops_per_s']:>14,}")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
