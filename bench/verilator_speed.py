"""Raw Verilator simulation speed of the fabric (inside its link harness, idle host port):
clock cycles per wall second with every internal signal public (cocotb's default,
``--public-flat-rw``) and with only the toplevel's ports visible (what ``run_cocotb``
builds by default), plus the build times. Results: bench/results/verilator_speed.json.

    .venv/bin/python bench/verilator_speed.py [--mesh 2x2 ...] [--cycles 20000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

OUT = ROOT / "bench" / "results" / "verilator_speed.json"
ENV_CYCLES = "NEUROLOOM_SPEED_CYCLES"
ENV_OUT = "NEUROLOOM_SPEED_OUT"

try:
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import ClockCycles
except ImportError:                         # pragma: no cover
    cocotb = None

if cocotb is not None:
    @cocotb.test()
    async def raw_speed(dut):
        """Reset, then run the clock for the requested cycles; wall time to a JSON file."""
        Clock(dut.clk, 10, unit="ns").start()
        dut.rst.value = 1
        dut.in_load.value = 0
        dut.out_ack.value = 0
        await ClockCycles(dut.clk, 3)
        dut.rst.value = 0
        n = int(os.environ[ENV_CYCLES])
        t = time.perf_counter()
        await ClockCycles(dut.clk, n)
        Path(os.environ[ENV_OUT]).write_text(json.dumps({"cycles": n,
                                                         "seconds": time.perf_counter() - t}))


def measure(cfg, public: bool, cycles: int, repeats: int) -> dict:
    from neuroloom.sim import verilator
    from neuroloom.sim.verilator_link import TOPLEVEL, harness_verilog, sim_build_dir
    src = harness_verilog(cfg)
    bdir = sim_build_dir(cfg).parent / "sim_public" if public else sim_build_dir(cfg)
    out = bdir / "speed.json"
    speeds, build_s = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        r = verilator.run_cocotb(TOPLEVEL, [src], "verilator_speed", bdir, public=public,
                                 python_paths=[Path(__file__).parent],
                                 extra_env={ENV_CYCLES: str(cycles), ENV_OUT: str(out)})
        if r.built:
            build_s = round(time.perf_counter() - t, 1)
        res = json.loads(out.read_text())
        speeds.append(round(res["cycles"] / res["seconds"]))
    return {"cycles_per_s": speeds, "build_s": build_s}


def main(argv=None) -> int:
    from neuroloom.contract.config import FabricConfig
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mesh", nargs="+", default=["2x2"], help="meshes of default cores")
    ap.add_argument("--cycles", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    os.environ.setdefault("COCOTB_LOG_LEVEL", "WARNING")
    res = {"cpu_count": os.cpu_count(), "cycles": args.cycles, "meshes": {}}
    for mesh in args.mesh:
        cfg = FabricConfig.parse_mesh(mesh)
        res["meshes"][mesh] = {
            "public_flat_rw": measure(cfg, True, args.cycles, args.repeats),
            "ports_only": measure(cfg, False, args.cycles, args.repeats),
        }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=2) + "\n")
    print(f"\n{'mesh':<6}{'signals':<16}{'cycles/s (each run)':<30}{'build s':>8}")
    for mesh, r in res["meshes"].items():
        for kind, v in r.items():
            b = "cached" if v["build_s"] is None else f"{v['build_s']:.0f}"
            print(f"{mesh:<6}{kind:<16}{', '.join(f'{s:,}' for s in v['cycles_per_s']):<30}"
                  f"{b:>8}")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
