"""Place and route whole fabrics (cores, mesh, barrier, host link) for Fmax on the reference
part (LFE5U-85F-6BG381C, ``--85k --package CABGA381 --speed 6``, every seed reported), each
inside :class:`neuroloom.fpga.ioring.IORing` (registered serial I/O, so every path measured is
register to register); writes ``bench/results/fabric_synth.json`` and prints a table.

    .venv/bin/python bench/fabric_synth.py [--mesh 1x1 2x2] [--seeds 1 2 3] [--freq 100]

Default cores (``FabricConfig`` defaults but the mesh). On a 2-core machine a 1x1 fabric takes
~10 minutes of synthesis and ~15-30 minutes of place-and-route per seed, a 2x2 about four times
that. Results are cached on the Verilog text and the options (``neuroloom.fpga.synth``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from neuroloom.contract.config import FabricConfig
from neuroloom.fpga.ioring import IORing
from neuroloom.fpga.synth import figures_table, synthesize
from neuroloom.hw.fabric import Fabric
from neuroloom.hw.verilog import to_verilog

RESULTS = Path(__file__).resolve().parent / "results"
OUT = RESULTS / "fabric_synth.json"


def synth_fabric(mesh: str, *, seeds=(1,), freq: float = 100.0, pnr: bool = True) -> dict:
    cfg = FabricConfig.parse_mesh(mesh)
    ring = IORing(Fabric(cfg))
    top = f"fabric_{mesh}"
    result = synthesize(to_verilog(ring, top, ports=ring.ports), top=top, pnr=pnr, seeds=seeds,
                        frequency_mhz=freq)
    print(result.summary(), flush=True)
    out = {"config": cfg.to_dict(), **result.figures()}
    out.pop("cells")
    best = result.best
    if best is not None and best.critical_path:
        path = best.critical_path
        out["critical_path"] = {"from": path[0].from_cell, "to": path[-1].to_cell,
                                "ns": round(best.critical_path_ns, 3), "steps": len(path)}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mesh", nargs="+", default=["1x1"], help="meshes (default: 1x1)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3],
                    help="nextpnr seeds, one place-and-route each (default: 1 2 3; at most 5)")
    ap.add_argument("--freq", type=float, default=100.0, help="target clock, MHz (default 100)")
    ap.add_argument("--no-pnr", action="store_true", help="synthesis and cell counts only")
    args = ap.parse_args(argv)
    if len(args.seeds) > 5:
        ap.error("at most 5 seeds")
    RESULTS.mkdir(exist_ok=True)
    recorded = json.loads(OUT.read_text()) if OUT.is_file() else {}
    for mesh in args.mesh:
        recorded[mesh] = synth_fabric(mesh, seeds=tuple(args.seeds), freq=args.freq,
                                      pnr=not args.no_pnr)
        OUT.write_text(json.dumps(recorded, indent=2) + "\n")
    print("\n" + figures_table(recorded, "mesh"))
    print(f"results: {OUT}")


if __name__ == "__main__":
    main()
