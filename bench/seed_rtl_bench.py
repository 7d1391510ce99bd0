"""Cycles per token of the seed small model shape (H=64, N=32, 4 layers; random parameters) on
the RTL of the smallest default-core mesh it fits (7x6), both modes, checked against qforward.
Results to bench/results/fabric_seed.json. Slow: a 42-tile Verilator build (about 8 min here)
and ~185k config writes through the cocotb host link; on 2026-11-22 the image load had not
finished after 19 min of simulation, so this has not produced a figure yet (the link's per-word
cocotb handling of WRITE frames is the bottleneck).

    .venv/bin/python bench/seed_rtl_bench.py [--tokens 8]
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

from firmware.compiler import compile_model, random_qmodel
from firmware.driver import Driver
from firmware.image import from_compiled
from firmware.qmodel import qforward
from firmware.transports import FramedTransport
from hw.config import FabricConfig
from sim.verilator_link import VerilatorLink

RESULTS = Path(__file__).parent / "results" / "fabric_seed.json"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=8)
    args = ap.parse_args()
    model = random_qmodel(64, 32, 4, d_in=1, classes=10, seed=0)
    cfg = FabricConfig(mesh_w=7, mesh_h=6)
    comp = compile_model(model, cfg, mode="pipelined")
    img = from_compiled(comp)
    x = model.quantize_input(np.random.default_rng(0).uniform(0, 1, (1, args.tokens, 1)), cfg)
    ref = qforward(model, x, cfg)
    res = {"model": "random H=64 N=32 L=4", "mesh": "7x6", "cores_used": comp.cores_used,
           "tokens": args.tokens, "writes": len(img.writes)}
    t = time.time()
    with VerilatorLink(cfg) as link:
        res["build_and_start_s"] = round(time.time() - t, 1)
        drv = Driver(FramedTransport(link))
        c0, t = link.cycles, time.time()
        drv.load(img)
        res["load_cycles"], res["load_s"] = link.cycles - c0, round(time.time() - t, 1)
        for mode in ("pipelined", "fall-through"):
            c0, t = link.cycles, time.time()
            out = drv.run(x, mode=mode)
            cyc = link.cycles - c0
            res[mode] = {"cycles_per_token": round(cyc / args.tokens, 1),
                         "wall_s": round(time.time() - t, 1),
                         "sim_cycles_per_s": round(cyc / (time.time() - t)),
                         "bit_exact_vs_qforward": bool(np.array_equal(out.running, ref))}
            print(mode, res[mode], flush=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
