"""What GALS costs: CDC link cells, extra latency per hop, barrier latency across domains, the
shipped model's step time GALS vs synchronous, and the synthesis of a GALS 2x2 fabric.

    .venv/bin/python bench/gals_bench.py [cdc latency barrier step synth ...]

Writes ``bench/results/gals.json`` (each part replaces its own entry) and prints a table.

* ``cdc``: one :class:`CdcLink` (64-bit flits, 8 slots) and the barrier's parts (one
  :class:`TileAgent`, a 4-tile :class:`GalsBarrier`) through Yosys ``synth_ecp5``
  (``neuroloom.fpga.synth.synthesize``, no place-and-route): LUT4, FF, LUT-RAM and block-RAM
  cells.
* ``latency`` (amaranth.sim): edges of the reader's clock from a flit's write handshake (a
  writer edge) until ``valid`` is high at the reader, over 40 phase offsets of the two clocks,
  for several period ratios.
  A synchronous link adds nothing (the next router's FIFO takes the flit at the same edge).
* ``barrier`` (amaranth.sim): the shortest step (every core idle: the barrier's own cost) and
  the time from the last core going idle to ``step_done``, GALS (tiles at 7/9/11/13 ns or all at
  10 ns, barrier at 10 ns) against the synchronous :class:`Barrier`, in barrier-clock cycles.
* ``step`` (Verilator): the shipped model (channel mapping: one core; per-mode: two) on the
  default 2x2 fabric, synchronous and GALS with every clock at 10 ns: host-clock cycles per
  token in both schedules (``VerilatorLink.cycles`` over everything ``Driver.run`` exchanges:
  the same commands, so the difference is the GALS barrier and the CDC latency).
* ``synth``: synth_ecp5 cell counts of a 2x2 fabric with small cores, synchronous and GALS.
* ``pnr``: place and route (nextpnr-ecp5, router2, LFE5U-85F-6 CABGA381) of a GALS 2x2 with the
  ``quick`` cores of ``fpga/ioring.py``, each tile clocked by its own output of one EHXPLLL
  (60, 54.5, 50, 46.2 MHz from a 600 MHz VCO) and the host domain by a second PLL (50 MHz):
  ``neuroloom.fpga.gals_top.GalsPllTop``. Records Fmax per clock, the worst delay nextpnr
  reports between each pair of domains (not timed: asynchronous), LUT4/FF/DP16KD/MULT18X18D.
  Runs from a scratch folder (``--out``, default ``/tmp/gals-pnr``); ~30+ minutes.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import time
from pathlib import Path

from amaranth.hdl import ClockDomain, DomainRenamer, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In
from amaranth.sim import Simulator

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.layouts import flit_layout
from neuroloom.fpga.synth import synthesize
from neuroloom.hw.barrier import Barrier
from neuroloom.hw.fabric import Fabric
from neuroloom.hw.gals import GalsBarrier, TileAgent
from neuroloom.hw.noc.cdc import CdcLink
from neuroloom.hw.noc.gals_mesh import CDC_DEPTH
from neuroloom.hw.verilog import to_verilog

RESULTS = Path(__file__).resolve().parent / "results"
OUT = RESULTS / "gals.json"
SMALL = dict(neurons=32, axons=32, synapse_rows=128, route_words=64, ucode_depth=32)


class _TwoClocks(wiring.Component):
    """``inner`` (a component with domains ``w`` and ``r``) with their clocks as ports."""

    def __init__(self, inner, domains, members):
        self._inner, self._domains = inner, domains
        super().__init__({**{f"clk_{d}": In(1) for d in domains}, **members})

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = self._inner
        for d in self._domains:
            cd = ClockDomain(d, reset_less=True)
            m.domains += cd
            m.d.comb += cd.clk.eq(getattr(self, f"clk_{d}"))
        for name in self.signature.members:
            if name.startswith("clk_"):
                continue
            ours, theirs = getattr(self, name), getattr(self._inner, name)
            if self.signature.members[name].is_signature:
                wiring.connect(m, wiring.flipped(ours), theirs)
            elif self.signature.members[name].flow == In:
                m.d.comb += theirs.eq(ours)
            else:
                m.d.comb += ours.eq(theirs)
        return m


def _cells(name, top) -> dict:
    res = synthesize(to_verilog(top, name), top=name, pnr=False)
    c = res.cells
    return {"LUT4": res.lut4, "FF": res.ff, "DPR16X4": c.get("TRELLIS_DPR16X4", 0),
            "DP16KD": res.dp16kd, "CCU2C": c.get("CCU2C", 0)}


def bench_cdc() -> dict:
    layout = flit_layout(FabricConfig())
    cdc = CdcLink(layout, CDC_DEPTH, w_domain="w", r_domain="r")
    out = {"cdc_link": _cells("cdc_link", _TwoClocks(cdc, "wr", dict(cdc.signature.members)))}
    out["tile_agent"] = _cells("tile_agent", TileAgent())
    out["gals_barrier_4"] = _cells("gals_barrier", GalsBarrier(4))
    out["sync_barrier_4"] = _cells("sync_barrier", Barrier(4, 5))
    out["flit_bits"] = layout.size
    out["depth"] = CDC_DEPTH
    return out


def _hop_latency(w_ns: float, r_ns: float, phase: float) -> int:
    """Reader edges from one write handshake until ``o.valid`` is high."""
    m = Module()
    m.domains += [ClockDomain("w"), ClockDomain("r")]
    m.submodules.cdc = cdc = CdcLink(8, 4, w_domain="w", r_domain="r")
    sim = Simulator(m)
    sim.add_clock(w_ns * 1e-9, domain="w")
    sim.add_clock(r_ns * 1e-9, domain="r", phase=r_ns * 1e-9 * phase)
    seen = {}

    async def writer(ctx):
        for _ in range(5):
            await ctx.tick("w")
        ctx.set(cdc.i.valid, 1)
        await ctx.tick("w")
        seen["w"] = True
        ctx.set(cdc.i.valid, 0)

    async def reader(ctx):
        edges = None
        async for _ in ctx.tick("r"):
            if edges is None and "w" in seen:
                edges = 0
            if edges is not None:
                edges += 1
                if ctx.get(cdc.o.valid):
                    seen["r"] = edges
                    return

    sim.add_testbench(writer)
    sim.add_testbench(reader)
    sim.run()
    return seen["r"]


def _throughput(w_ns: float, r_ns: float, flits: int = 400) -> float:
    """Flits per cycle of the slower clock with the writer always valid, the reader always
    ready (``CDC_DEPTH`` slots)."""
    m = Module()
    m.domains += [ClockDomain("w"), ClockDomain("r")]
    m.submodules.cdc = cdc = CdcLink(8, CDC_DEPTH, w_domain="w", r_domain="r")
    sim = Simulator(m)
    sim.add_clock(w_ns * 1e-9, domain="w")
    sim.add_clock(r_ns * 1e-9, domain="r", phase=r_ns * 0.37e-9)
    got = {"n": 0, "cycles": 0}

    async def writer(ctx):
        ctx.set(cdc.i.valid, 1)
        async for _ in ctx.tick("w"):
            pass

    async def reader(ctx):
        ctx.set(cdc.o.ready, 1)
        first = None
        async for _, _, valid in ctx.tick("r").sample(cdc.o.valid):
            if valid:
                first = got["cycles"] if first is None else first
                got["n"] += 1
            got["cycles"] += 1
            if got["n"] == flits:
                got["span"] = got["cycles"] - first
                return

    sim.add_testbench(writer, background=True)
    sim.add_testbench(reader)
    sim.run()
    slower = max(w_ns, r_ns)
    return round(got["n"] / (got["span"] * r_ns / slower), 3)


def bench_latency() -> dict:
    out = {}
    for w_ns, r_ns in ((10, 10), (7, 13), (13, 7), (9, 11)):
        lat = [_hop_latency(w_ns, r_ns, (k + 0.5) / 40) for k in range(40)]
        out[f"w{w_ns}ns_r{r_ns}ns"] = {"reader_edges_min": min(lat), "reader_edges_max": max(lat),
                                       "mean": round(statistics.mean(lat), 2),
                                       "flits_per_slower_cycle": _throughput(w_ns, r_ns)}
    return out


def _barrier_world(periods, *, work, gals=True, steps=40, seed=1):
    """Step lengths and last-idle -> step_done latencies in barrier (10 ns) cycles."""
    rng = random.Random(seed)
    n = len(periods)
    m = Module()
    if gals:
        barrier = GalsBarrier(n)
        m.submodules.barrier = barrier
        agents = []
        for i in range(n):
            m.domains += ClockDomain(f"t{i}")
            a = TileAgent()
            m.submodules[f"a{i}"] = DomainRenamer(f"t{i}")(a)
            agents.append(a)
            m.d.comb += [a.req.eq(barrier.req), a.cmd.eq(barrier.cmd),
                         a.cmd_step.eq(barrier.cmd_step[:16]), barrier.ack[i].eq(a.ack),
                         barrier.quiet_in[i].eq(a.quiet), barrier.sent[i].eq(a.sent),
                         barrier.recv[i].eq(a.recv)]
    else:
        barrier = Barrier(n, n + 1)
        m.submodules.barrier = barrier
    sim = Simulator(m)
    sim.add_clock(10e-9)
    state = {"now": 0, "idle_at": [0] * n, "lengths": [], "latency": []}

    def tile(i):
        async def bench(ctx):
            left = 0
            dom = f"t{i}" if gals else "sync"
            sig_idle = agents[i].core_idle if gals else None
            async for _ in ctx.tick(dom):
                if left:
                    left -= 1
                    if not left:
                        state["idle_at"][i] = state["now"]
                if gals:
                    ctx.set(sig_idle, 0 if left else 1)
                    started = ctx.get(agents[i].step_start)
                else:
                    ctx.set(barrier.done[i], 0 if left else 1)
                    started = ctx.get(barrier.step_start)
                if started:
                    left = work(rng) + 1
        return bench

    async def host(ctx):
        while not (ctx.get(barrier.quiet) if gals else True):
            await ctx.tick()
            state["now"] += 1
        ctx.set(barrier.steps, steps)
        ctx.set(barrier.start, 1)
        await ctx.tick()
        ctx.set(barrier.start, 0)
        state["now"] += 1
        while True:
            await ctx.tick()
            state["now"] += 1
            if ctx.get(barrier.step_done):
                state["lengths"].append(ctx.get(barrier.step_cycles))
                state["latency"].append(state["now"] - max(state["idle_at"]))
            if not ctx.get(barrier.running):
                return

    for i in range(n):
        if gals:
            sim.add_clock(periods[i], domain=f"t{i}", phase=periods[i] * (i + 1) / 7)
        sim.add_testbench(tile(i), background=True)
    sim.add_testbench(host)
    sim.run()
    return state


def bench_barrier() -> dict:
    out = {}
    for label, periods, gals in (("sync", [10e-9] * 4, False),
                                 ("gals_all_10ns", [10e-9] * 4, True),
                                 ("gals_7_9_11_13ns", [7e-9, 9e-9, 11e-9, 13e-9], True)):
        idle = _barrier_world(periods, work=lambda rng: 0, gals=gals)
        busy = _barrier_world(periods, work=lambda rng: rng.randrange(20, 200), gals=gals)
        out[label] = {
            "empty_step_cycles": {"min": min(idle["lengths"]), "max": max(idle["lengths"])},
            "last_idle_to_step_done": {"min": min(busy["latency"]),
                                       "max": max(busy["latency"]),
                                       "mean": round(statistics.mean(busy["latency"]), 2)},
        }
    return out


def bench_step(limit: int = 4) -> dict:
    from neuroloom.firmware.compiler import compile_model, from_compiled
    from neuroloom.firmware.datasets import load_dataset
    from neuroloom.firmware.driver import Driver
    from neuroloom.firmware.importer import load_model
    from neuroloom.firmware.transports import FramedTransport
    from neuroloom.sim.verilator_link import VerilatorLink

    model = load_model(Path(__file__).resolve().parents[1] / "firmware" / "models" / "digits-q")
    out = {}
    for gals in (False, True):
        cfg = FabricConfig(gals=gals)
        x = model.quantize_input(load_dataset("digits").x_test[:limit], cfg)
        tokens = x.shape[0] * x.shape[1]
        with VerilatorLink(cfg) as link:
            for mapping in ("channel", "per-mode"):
                comp = compile_model(model, cfg, mode="pipelined", mapping=mapping)
                drv = Driver(FramedTransport(link))
                drv.load(from_compiled(comp))
                for mode in ("pipelined", "fall-through"):
                    c0, t0 = link.cycles, time.time()
                    res = drv.run(x, mode=mode)
                    out[f"{'gals' if gals else 'sync'} {mapping} {mode}"] = {
                        "cores": comp.cores_used,
                        "cycles_per_token": round((link.cycles - c0) / tokens, 1),
                        "wall_s": round(time.time() - t0, 1),
                        "logits_checksum": int(abs(res.running).sum())}
    for key in [k for k in out if k.startswith("sync ")]:
        s, g = out[key], out["gals " + key[5:]]
        assert s["logits_checksum"] == g["logits_checksum"], key
        out[f"{key[5:]}: gals / sync"] = round(g["cycles_per_token"] / s["cycles_per_token"], 3)
    out["tokens"] = tokens
    out["clocks"] = "every clock at 10 ns (host, barrier and tiles)"
    out["cycles"] = "host-clock cycles of every exchange Driver.run makes (injects, RUN, reads)"
    return out


def bench_synth() -> dict:
    out = {}
    for gals in (False, True):
        cfg = FabricConfig(gals=gals, **SMALL)
        out["gals" if gals else "sync"] = _cells(f"fabric_{'gals' if gals else 'sync'}",
                                                 Fabric(cfg))
    out["config"] = {**SMALL, "mesh": "2x2"}
    return out


def _cross_domain_delays(log_text: str) -> dict:
    """nextpnr's ``Max delay posedge A -> posedge B`` lines between two clocks: the
    worst register-to-register delay of each crossing, reported, not timed."""
    out = {}
    for line in log_text.splitlines():
        mt = re.search(r"Max delay posedge \$glbnet\$(\S+)\s+-> posedge \$glbnet\$(\S+)\s*:"
                       r"\s*([0-9.]+) ns", line)
        if mt:
            out[f"{mt[1]} -> {mt[2]}"] = float(mt[3])
    return out


def bench_pnr(out_dir: str = "/tmp/gals-pnr", seeds=(1,)) -> dict:
    import dataclasses

    from neuroloom.fpga.gals_top import GalsPllTop, gals_clocks, lpf
    from neuroloom.fpga.ioring import CORE_CONFIGS
    from neuroloom.fpga.synth import DEFAULT_NEXTPNR_ARGS

    cfg = dataclasses.replace(CORE_CONFIGS["quick"], gals=True)
    clocks = gals_clocks(cfg.num_cores)
    top = GalsPllTop(cfg, clocks)
    work = Path(out_dir)
    work.mkdir(parents=True, exist_ok=True)
    (work / "gals_top.lpf").write_text(lpf(clocks))
    args = (*DEFAULT_NEXTPNR_ARGS, "--router", "router2", "--lpf-allow-unconstrained")
    res = synthesize(to_verilog(top, "gals_top"), top="gals_top", seeds=seeds,
                     frequency_mhz=clocks.host_mhz, lpf=work / "gals_top.lpf",
                     nextpnr_args=args, out_dir=work / "flow")
    fig = res.figures()
    best = res.best
    wanted = {}
    for k in range(cfg.num_cores):
        x, y = cfg.core_xy(k)
        wanted[f"tile_{x}_{y}"] = round(clocks.tile_mhz[k], 3)
    wanted["host (sync)"] = round(clocks.host_mhz, 3)
    return {
        "config": {"core": "quick (fpga/ioring.py CORE_CONFIGS)", "mesh": "2x2", "gals": True},
        "part": "LFE5U-85F-6 CABGA381", "nextpnr_args": list(args),
        "clocks_mhz": wanted,
        "fmax_mhz_by_net": {k: round(v, 2) for k, v in best.fmax_mhz.items()},
        "cross_domain_max_delay_ns": _cross_domain_delays(best.log.read_text()),
        "LUT4": fig["LUT4"], "FF": fig["TRELLIS_FF"], "DP16KD": fig["DP16KD"],
        "MULT18X18D": fig["MULT18X18D"],
        "DPR16X4": res.cells.get("TRELLIS_DPR16X4", 0),
        "utilization": res.utilization,
        "synth_seconds": fig["synth_seconds"], "pnr_seconds": fig["pnr_seconds_by_seed"],
        "workdir": str(res.workdir),
    }


def pnr_table(rec: dict) -> str:
    """The ``pnr`` record as a table: each clock's target and Fmax, then the resources."""
    rows = [f"{'clock net':<28} {'Fmax MHz':>9}"]
    for net, f in sorted(rec["fmax_mhz_by_net"].items()):
        rows.append(f"{net:<28} {f:>9.2f}")
    rows.append("targets (MHz): " + ", ".join(f"{k} {v:g}" for k, v in rec["clocks_mhz"].items()))
    rows.append(f"LUT4 {rec['LUT4']}, FF {rec['FF']}, DP16KD {rec['DP16KD']}, "
                f"MULT18X18D {rec['MULT18X18D']}, DPR16X4 {rec['DPR16X4']}")
    return "\n".join(rows)


PARTS = {"cdc": bench_cdc, "latency": bench_latency, "barrier": bench_barrier,
         "step": bench_step, "synth": bench_synth, "pnr": bench_pnr}
#: parts not run by default (``gals_bench.py`` without arguments): too long
SLOW_PARTS = ("pnr",)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("parts", nargs="*", choices=list(PARTS),
                    default=[p for p in PARTS if p not in SLOW_PARTS])
    args = ap.parse_args(argv)
    record = json.loads(OUT.read_text()) if OUT.is_file() else {}
    for part in args.parts:
        t0 = time.time()
        record[part] = PARTS[part]()
        record[part]["seconds"] = round(time.time() - t0, 1)
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(record, indent=2) + "\n")
        print(f"== {part} ({record[part]['seconds']} s)")
        if part == "pnr":
            print(pnr_table(record[part]))
        else:
            print(json.dumps(record[part], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
