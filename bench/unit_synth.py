"""Place and route the fabric's units outside the neuron core, one at a time, for Fmax on the
reference part (LFE5U-85F-6BG381C, ``neuroloom.fpga.synth.synthesize``: every seed reported);
writes ``bench/results/unit_synth.json`` and prints a table. ::

    .venv/bin/python bench/unit_synth.py [UNIT ...] [--seeds 1 2 3] [--no-pnr]

Units (default: all): ``router`` (the centre router of a 3x3 mesh, all five ports used),
``router_00`` (router (0, 0) of a 2x2 mesh: the host exit), ``barrier`` (``Barrier(4, 5)``, as in
a 2x2 fabric), ``hostlink`` (``HostLink`` of a 2x2 fabric), ``shell_1x1`` and ``shell_2x2``
(``FabricShell``: mesh + barrier + host link + fabric counters, i.e. a fabric without its cores).

A unit is not placed bare: its hundreds of port bits would not fit the package's pins, and
unregistered pins would leave paths unconstrained. ``neuroloom.fpga.ioring.IORing`` wraps it:
every input bit comes from a flip-flop of a shift chain fed by one pin, every output bit goes
into a flip-flop of a loadable shift register read out on one pin. The unit therefore sees
registered inputs and drives registered outputs (what a neighbour built from registers gives
it), nothing can be optimized away, and every path measured is register to register.

Each unit's result is merged into the JSON under its name, so units can be run separately;
results are cached by the flow on the Verilog text and options (an unchanged unit returns at
once). Place-and-route of a router takes 1-3 minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from neuroloom.contract.config import FabricConfig
from neuroloom.fpga.ioring import IORing
from neuroloom.fpga.synth import synthesize
from neuroloom.hw.barrier import Barrier
from neuroloom.hw.fabric import FabricShell
from neuroloom.hw.hostlink import HostLink
from neuroloom.hw.noc import Router
from neuroloom.hw.targets import ECP5
from neuroloom.hw.verilog import to_verilog

RESULTS = Path(__file__).resolve().parent / "results"
OUT = RESULTS / "unit_synth.json"

CFG_2X2 = FabricConfig(mesh_w=2, mesh_h=2)
CFG_3X3 = FabricConfig(mesh_w=3, mesh_h=3)

#: name -> (description, factory of the unit, target clock in MHz)
UNITS = {
    "router": ("Router(3x3, 1, 1)", lambda: Router(CFG_3X3, 1, 1), 150.0),
    "router_00": ("Router(2x2, 0, 0)", lambda: Router(CFG_2X2, 0, 0), 150.0),
    "barrier": ("Barrier(4, 5)", lambda: Barrier(4, 5), 100.0),
    "hostlink": ("HostLink(2x2)", lambda: HostLink(CFG_2X2), 100.0),
    "shell_1x1": ("FabricShell(1x1)", lambda: FabricShell(FabricConfig(mesh_w=1, mesh_h=1)),
                  100.0),
    "shell_2x2": ("FabricShell(2x2)", lambda: FabricShell(CFG_2X2), 100.0),
}


def critical_path(result) -> list[dict]:
    """The best seed's critical path, steps as ``{kind, ns, from, to}`` (nets left out)."""
    best = result.best
    if best is None:
        return []
    return [{"kind": s.kind, "ns": round(s.delay_ns, 3), "from": s.from_cell, "to": s.to_cell}
            for s in best.critical_path]


def synth_unit(name: str, *, seeds=(1, 2, 3), pnr: bool = True) -> dict:
    desc, factory, freq = UNITS[name]
    top = IORing(factory())
    text = to_verilog(top, f"u_{name}", ports=top.ports, platform=ECP5)
    result = synthesize(text, top=f"u_{name}", seeds=seeds, pnr=pnr,
                        frequency_mhz=freq)
    print(result.summary(), flush=True)
    figures = result.figures()
    figures.pop("cells")
    return {"unit": desc, **figures,
            "TRELLIS_DPR16X4": result.cells.get("TRELLIS_DPR16X4", 0),
            "critical_path": critical_path(result)}


def table(results: dict) -> str:
    rows = [f"{'unit':<10} {'LUT4':>6} {'FF':>5} {'DPR16':>5} {'DP16KD':>6} {'MULT':>4}  "
            f"{'target':>6}  Fmax MHz by seed"]
    for name, r in results.items():
        seeds = ", ".join(f"{s}: {'-' if f is None else f'{f:.1f}'}"
                          for s, f in r["fmax_mhz_by_seed"].items())
        rows.append(f"{name:<10} {r['LUT4']:>6} {r['TRELLIS_FF']:>5} {r['TRELLIS_DPR16X4']:>5} "
                    f"{r['DP16KD']:>6} {r['MULT18X18D']:>4}  {r['target_mhz']:>6g}  {seeds}")
    return "\n".join(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("units", nargs="*", help=f"units to run (default: all of {list(UNITS)})")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3],
                    help="nextpnr seeds, one place-and-route each (default: 1 2 3)")
    ap.add_argument("--no-pnr", action="store_true", help="synthesis and cell counts only")
    args = ap.parse_args(argv)
    unknown = [u for u in args.units if u not in UNITS]
    if unknown:
        ap.error(f"unknown unit(s) {unknown}; choose from {list(UNITS)}")
    if len(args.seeds) > 5:
        ap.error("at most 5 seeds (the issue's rule: best of at most 5, all listed)")
    RESULTS.mkdir(exist_ok=True)
    results = json.loads(OUT.read_text()) if OUT.is_file() else {}
    for name in args.units or list(UNITS):
        results[name] = synth_unit(name, seeds=tuple(args.seeds), pnr=not args.no_pnr)
        OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"results: {OUT}")


if __name__ == "__main__":
    main()
