"""Place and route whole fabrics (cores, mesh, barrier, host link) for Fmax on the reference
part (LFE5U-85F-6BG381C, ``--85k --package CABGA381 --speed 6``, every seed reported), each
inside :class:`neuroloom.fpga.ioring.IORing` (registered serial I/O, so every path measured is
register to register); writes ``bench/results/fabric_synth.json`` and prints a table.

    .venv/bin/python bench/fabric_synth.py [--mesh 1x1 2x2] [--seeds 1 2 3] [--freq 100]
                                           [--router2] [--tmg-ripup] [--jobs 2] [--name KEY]
                                           [--seed-minutes 90] [--floorplan [spread]]
                                           [--placer static]
    .venv/bin/python bench/fabric_synth.py --fabric f.json --name seed [--seeds 1]

Default cores (``FabricConfig`` defaults but the mesh). ``--fabric FILE`` places and routes
the fabric a fabric.json describes instead (e.g. ``neuroloom compile MODEL --board ulx3s-85f
--fabric-out f.json``); its result goes to ``bench/results/fabric_<name>_synth.json``,
including a failure to fit or to route (the tool's message and the cell counts). With one
``--mesh``, ``--name KEY`` records the run under KEY instead of the mesh (a second netlist
measured beside the recorded one). On a 2-core
machine a 1x1 fabric takes ~10 minutes of synthesis and ~15-30 minutes of place-and-route per
seed, a 2x2 about four times that. Results are cached on the Verilog text and the options
(``neuroloom.fpga.synth``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from neuroloom.contract.config import FabricConfig
from neuroloom.fpga.floorplan import CoreFloorplan
from neuroloom.fpga.ioring import IORing
from neuroloom.fpga.synth import (
    NextpnrError,
    add_pnr_arguments,
    figures_table,
    nextpnr_options,
    source_revision,
    synthesize,
    yosys_cell_counts,
)
from neuroloom.hw.fabric import Fabric
from neuroloom.hw.targets import ECP5
from neuroloom.hw.verilog import to_verilog
from neuroloom.sim.cache import build_dir

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
OUT = RESULTS / "fabric_synth.json"


def synth_fabric(cfg: FabricConfig | str, *, seeds=(1,), freq: float = 100.0, pnr: bool = True,
                 name: str | None = None, router2: bool = False, tmg_ripup: bool = False,
                 jobs: int = 1, seed_minutes: float | None = None,
                 floorplan: str | None = None, placer: str | None = None) -> dict:
    """Synthesize (and place and route) ``cfg`` (a FabricConfig, or a mesh 'WxH' of default
    cores) in an IORing; the figures as a dict. With ``name`` the run's folder is
    ``build/synth/fabric-<name>`` and a tool failure is recorded (``"error"``) instead of
    raised. ``router2`` / ``tmg_ripup``: nextpnr's router2 and its timing-driven rip-up;
    ``placer``: nextpnr's placer (``fpga.synth.PLACERS``; None: its default);
    ``jobs``: seeds placed and routed at once; ``floorplan``: each core's block RAMs and
    multipliers pinned in its share of the die by that rule (``"centre"`` or ``"spread"``,
    ``neuroloom.fpga.floorplan``; None: not pinned)."""
    if isinstance(cfg, str):
        cfg = FabricConfig.parse_mesh(cfg)
    top = f"fabric_{name or f'{cfg.mesh_w}x{cfg.mesh_h}'}"
    out_dir = build_dir("synth", f"fabric-{name}") if name else None
    ring = IORing(Fabric(cfg))
    t0 = time.perf_counter()
    verilog = to_verilog(ring, top, ports=ring.ports, platform=ECP5)
    rec = {"config": cfg.to_dict(), **source_revision(ROOT),
           "verilog_seconds": round(time.perf_counter() - t0, 1), "seeds": list(seeds)}
    extra = nextpnr_options(router2=router2, tmg_ripup=tmg_ripup, placer=placer)
    rec["nextpnr_args"] = list(extra)
    plan = CoreFloorplan(cfg.mesh_w, cfg.mesh_h, rule=floorplan) if floorplan else None
    if plan is not None:
        rec["floorplan"] = plan.key()
    print(f"{top}: Verilog in {rec['verilog_seconds']} s; synthesizing ...", flush=True)
    try:
        result = synthesize(verilog, top=top, pnr=pnr, seeds=seeds, frequency_mhz=freq,
                            out_dir=out_dir, nextpnr_args=extra, jobs=jobs,
                            seed_timeout=seed_minutes and 60 * seed_minutes,
                            floorplan=plan)
    except NextpnrError as e:
        if name is None:
            raise
        log = (out_dir / "yosys.log").read_text(errors="replace")
        cells = yosys_cell_counts(log)
        rec.update({"fits": False, "error": str(e)[-3000:], "target_mhz": freq,
                    **{k: cells.get(k) for k in ("LUT4", "TRELLIS_FF", "DP16KD", "MULT18X18D")},
                    "cells": cells})
        print(f"{top}: place and route failed:\n{rec['error']}", flush=True)
        return rec
    print(result.summary(), flush=True)
    rec.update(result.figures())
    rec["fits"] = bool(result.runs) or None
    rec["utilization"] = result.utilization
    if name is None:
        rec.pop("cells")
    best = result.best
    if best is not None and best.critical_path:
        path = best.critical_path
        rec["critical_path"] = {"from": path[0].from_cell, "to": path[-1].to_cell,
                                "ns": round(best.critical_path_ns, 3), "steps": len(path)}
    return rec


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mesh", nargs="+", default=["1x1"], help="meshes (default: 1x1)")
    ap.add_argument("--fabric", metavar="FILE",
                    help="a fabric.json (its 'config'): place and route that fabric instead")
    ap.add_argument("--name", default=None,
                    help="with --fabric: the result's name, bench/results/fabric_NAME_synth.json "
                         "(default seed); with one --mesh: record under this key instead of "
                         "the mesh")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3],
                    help="nextpnr seeds, one place-and-route each (default: 1 2 3; at most 5)")
    ap.add_argument("--freq", type=float, default=100.0, help="target clock, MHz (default 100)")
    ap.add_argument("--no-pnr", action="store_true", help="synthesis and cell counts only")
    add_pnr_arguments(ap, "fabric")
    ap.add_argument("--floorplan", nargs="?", const="centre", choices=CoreFloorplan.RULES,
                    help="pin each core's block RAMs and multipliers in its share of the die "
                         "(neuroloom.fpga.floorplan; the placer then keeps each core together): "
                         "near its centre (the default rule) or spread over it")
    args = ap.parse_args(argv)
    opts = dict(router2=args.router2, tmg_ripup=args.tmg_ripup, jobs=args.jobs,
                seed_minutes=args.seed_minutes, floorplan=args.floorplan, placer=args.placer)
    if len(args.seeds) > 5:
        ap.error("at most 5 seeds")
    if args.name is not None and not args.fabric and len(args.mesh) != 1:
        ap.error("--name with meshes needs exactly one --mesh")
    RESULTS.mkdir(exist_ok=True)
    if args.fabric:
        args.name = args.name or "seed"
        data = json.loads(Path(args.fabric).read_text())
        cfg = FabricConfig.from_dict(data.get("config", data))
        out = RESULTS / f"fabric_{args.name}_synth.json"
        rec = synth_fabric(cfg, seeds=tuple(args.seeds), freq=args.freq, pnr=not args.no_pnr,
                           name=args.name, **opts)
        rec["fabric_file"] = str(args.fabric)
        out.write_text(json.dumps(rec, indent=2) + "\n")
        if "error" not in rec:
            print("\n" + figures_table({args.name: rec}, "fabric"))
        print(f"results: {out}")
        return 0 if rec.get("fits") is not False else 1
    recorded = {}
    for mesh in args.mesh:
        rec = synth_fabric(mesh, seeds=tuple(args.seeds), freq=args.freq,
                           pnr=not args.no_pnr, **opts)
        # the record is read again just before writing: another run (another mesh) may have
        # written its entry while this one placed and routed
        recorded = json.loads(OUT.read_text()) if OUT.is_file() else {}
        recorded[args.name or mesh] = rec
        OUT.write_text(json.dumps(recorded, indent=2) + "\n")
    print("\n" + figures_table(recorded, "mesh"))
    print(f"results: {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
