"""Neuron-core benchmarks from RTL cycle counters (Verilator + cocotb), plus ECP5 synthesis.

    .venv/bin/python bench/core_bench.py            # cycles + synthesis/placement (slow)
    .venv/bin/python bench/core_bench.py --no-synth # cycles only

This file is also the cocotb module of the measurement (``@cocotb.test`` below, run inside the
simulator with :class:`neuroloom.sim.core_tb.CoreTB`).

Measured on the default FabricConfig core (the Verilator build is shared with
``tests/test_core_cocotb.py``), with no input gaps and no output backpressure:

* S4D update: one group of all neurons running ``s4d.s`` (CMAD + MAD), with and without one
  route per neuron: BUSY_CYCLES of the step / neurons.
* synaptic throughput: spikes into axons whose rows are sparse (1 lane) or dense (all lanes):
  SYN_OPS / BUSY_CYCLES while the spikes are integrated.
* channel neurons (``channel.s``: 5 scalar instructions and one MODES): 32 channels of 32 modes
  (the whole mode memory), one step: BUSY_CYCLES per channel beside ``modes / neuron_lanes``,
  and the multiplier utilization of the step (8 useful products per mode entry over the
  engine's ``8 x neuron_lanes`` product units; each product is two MULT18X18D).
  ``--lanes 1 2 4`` measures each ``neuron_lanes`` setting (one Verilator build each).

Results: ``bench/results/core.json`` (``core_cycles.json``: cycles only) and a printed table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from pathlib import Path

import cocotb

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.coreconfig import CoreConfig, Group, Route, Synapse
from neuroloom.contract.layouts import Counter, Mem
from neuroloom.firmware.asm import load_program
from neuroloom.fpga.synth import synthesize
from neuroloom.sim.core_tb import TOPLEVEL, CoreTB, write_core_verilog
from neuroloom.sim.verilator import run_cocotb

RESULTS = Path(__file__).resolve().parent / "results"
ENV_OUT = "NEUROLOOM_CORE_BENCH_OUT"
ENV_CFG = "NEUROLOOM_CORE_BENCH_CFG"
#: channel-neuron measurement: channels x modes (fills the default 1024-entry mode memory)
CHANNELS, MODES = 32, 32
XY = (0, 1)


async def _counters(tb):
    return await tb.read_many([(Mem.COUNTER, c, 0) for c in range(len(Counter))])


async def _load(tb, cc):
    """Clear the core and load ``cc``."""
    await tb.clear()
    for w in cc.writes():
        tb.write(*w)
    await tb.drain()


async def _step_counts(tb) -> list[int]:
    """Counter increments over one step (step 0)."""
    before = await _counters(tb)
    await tb.step(0)
    after = await _counters(tb)
    return [a - b for a, b in zip(after, before)]


@cocotb.test()
async def core_bench(dut):
    cfg = FabricConfig.from_dict(json.loads(os.environ[ENV_CFG]))
    tb = CoreTB(dut, cfg, XY, random.Random(0), gaps=0.0, backpressure=0.0)
    await tb.start()
    out = {}
    L = cfg.synapse_lanes
    for routes in (0, 1):
        cc = CoreConfig(cfg)
        pc = cc.add_program(load_program("s4d"))
        cc.groups.append(Group(0, cfg.neurons, pc))
        for k in range(cfg.neurons):
            cc.coef[k] = [30000, 2000, 1000, -500, 12000, 3000, 0, 0]
            cc.state[k] = [1000 + k, -k, 0, 0]
            cc.routes[k] = [Route(1, 1, k % cfg.axons)] * routes
        await _load(tb, cc)
        counts = await _step_counts(tb)
        busy = counts[Counter.BUSY_CYCLES]
        out[f"s4d_cycles_per_update_routes{routes}"] = busy / counts[Counter.NEURON_UPDATES]
        out[f"s4d_step_cycles_routes{routes}"] = busy
    for name, mask in (("sparse", 1), ("dense", (1 << L) - 1)):
        cc = CoreConfig(cfg)
        rows_per_axon = 64
        for a in range(8):
            cc.add_axon([Synapse((a * 7 + r) % (cfg.neurons // L), mask, (3,) * L)
                         for r in range(rows_per_axon)], 2)
        await _load(tb, cc)
        before = await _counters(tb)
        for i in range(32):
            tb.spike(i % 8, 1000 + i)
        await tb.drain()
        after = await _counters(tb)
        ops = after[Counter.SYN_OPS] - before[Counter.SYN_OPS]
        # BUSY_CYCLES also counts the READ_RESP traffic of the counter reads: subtract the
        # cycles of an idle read round (measured just below).
        base0 = await _counters(tb)
        base1 = await _counters(tb)
        read_cost = base1[Counter.BUSY_CYCLES] - base0[Counter.BUSY_CYCLES]
        busy = after[Counter.BUSY_CYCLES] - before[Counter.BUSY_CYCLES] - read_cost
        out[f"syn_ops_per_cycle_{name}"] = ops / busy
        out[f"syn_ops_{name}"] = ops
        out[f"syn_busy_cycles_{name}"] = busy
    cc = CoreConfig(cfg)
    pc = cc.add_program(load_program("channel"))
    cc.groups.append(Group(0, CHANNELS, pc, mode_base=0, modes=MODES))
    for k in range(CHANNELS):
        cc.coef[k] = [0] * 6 + [100, 0]
    for e in range(CHANNELS * MODES):
        cc.mcoef[e] = [30000, 2000, 16384, 0, 12000, -3000]
    await _load(tb, cc)
    busy = (await _step_counts(tb))[Counter.BUSY_CYCLES]
    out["channel_step_cycles"] = busy
    out["channel_cycles_per_channel"] = busy / CHANNELS
    out["channel_modes_per_lane"] = MODES / cfg.neuron_lanes
    out["channel_multiplier_utilization"] = (CHANNELS * MODES * 8) / (8 * cfg.neuron_lanes * busy)
    Path(os.environ[ENV_OUT]).write_text(json.dumps(out, indent=2))


def run_cycles(lanes: int = 1) -> dict:
    cfg = FabricConfig(neuron_lanes=lanes)
    src = write_core_verilog(cfg, XY)
    out = RESULTS / ("core_cycles.json" if lanes == 1 else f"core_cycles_lanes{lanes}.json")
    RESULTS.mkdir(exist_ok=True)
    run_cocotb(TOPLEVEL, [src], "core_bench", src.parent / "verilator",
               python_paths=[Path(__file__).resolve().parent],
               extra_env={ENV_OUT: str(out), ENV_CFG: cfg.to_json()})
    return json.loads(out.read_text())


def run_synth(pnr: bool) -> dict:
    """The default core at XY through the ECP5 flow (seed 1; ``bench/core_synth.py`` sweeps
    seeds)."""
    result = synthesize(write_core_verilog(FabricConfig(), XY), top=TOPLEVEL, pnr=pnr)
    return result.figures()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-synth", action="store_true")
    ap.add_argument("--no-pnr", action="store_true")
    ap.add_argument("--lanes", type=int, nargs="+", default=[1],
                    help="neuron_lanes settings to measure (default: 1)")
    args = ap.parse_args()
    res = {"cycles": run_cycles()}
    for lanes in args.lanes:
        if lanes != 1:
            res[f"cycles_lanes{lanes}"] = run_cycles(lanes)
    if not args.no_synth:
        res["ecp5"] = run_synth(pnr=not args.no_pnr)
    elif (RESULTS / "core_synth.json").is_file():
        res["ecp5"] = json.loads((RESULTS / "core_synth.json").read_text()).get("default", {})
    (RESULTS / "core.json").write_text(json.dumps(res, indent=2))
    rows = [(k, v) for k, v in res["cycles"].items()]
    for lanes in args.lanes:
        if lanes != 1:
            rows += [(f"lanes{lanes} {k}", v) for k, v in res[f"cycles_lanes{lanes}"].items()
                     if k.startswith("channel")]
    if "ecp5" in res:
        rows += [(f"ecp5 {k}", v) for k, v in sorted(res["ecp5"].get("cells", {}).items())]
        rows += [("ecp5 fmax_mhz", res["ecp5"].get("fmax_mhz")),
                 ("ecp5 latches", res["ecp5"].get("latches"))]
    width = max(len(k) for k, _ in rows)
    print(f"{'metric':<{width}}  value")
    for k, v in rows:
        print(f"{k:<{width}}  {v:.3f}" if isinstance(v, float) else f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
