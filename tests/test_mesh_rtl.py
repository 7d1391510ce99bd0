"""Verilator + cocotb tests of the mesh and barrier (:class:`hw.noc.harness.NocHarness`).

This file is both the pytest module (``test_*``: build once per mesh, cached under
``build/noc/<digest of the Verilog text>/``, then run the cocotb tests) and the cocotb test
module (``@cocotb.test``).

Every tile and the host run a traffic source and a sink with random idle cycles and random
backpressure. Sources send in barrier steps: each step gives each source a quota; a tile's
``done`` is "quota sent and no flit waiting". A scoreboard built from a Python reference of the
routing function checks that every flit arrives exactly once, at the right exit, unaltered, in
order per (source, destination) pair; a monitor checks every cycle that the barrier's in-flight
count equals the scoreboard's and that ``step_done`` never fires while a flit is in flight.
"""

import json
import os
import random
from collections import deque
from pathlib import Path

import cocotb
import pytest
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.layouts import FlitKind, flit_layout, pack
from neuroloom.hw.noc import HOST_KINDS, Port, route_port
from neuroloom.hw.noc.harness import noc_harness_verilog
from neuroloom.sim.cache import write_verilog
from neuroloom.sim.verilator import run_cocotb

TOP = "noc_harness"
CFG_ENV = "NEUROLOOM_NOC_CFG"
FLITS_ENV = "NEUROLOOM_NOC_FLITS"
MESHES = ["1x1", "2x2", "3x5", "4x4"]


def write_harness_verilog(cfg: FabricConfig) -> Path:
    """``build/noc/<digest of the Verilog text>/noc_harness.v``."""
    return write_verilog(noc_harness_verilog(cfg, TOP), TOP, kind="noc")


def expected_exit(cfg: FabricConfig, src_xy, dst_x, dst_y, kind):
    """Walk the reference routing function hop by hop: (exit, hops); exit = core or "host"."""
    x, y = src_xy
    for hops in range(1, 2 * (cfg.mesh_w + cfg.mesh_h) + 2):
        port = route_port(x, y, dst_x, dst_y, kind)
        if port == Port.LOCAL:
            return cfg.core_index(x, y), hops
        if port == Port.WEST and (x, y) == (0, 0):
            return "host", hops
        x += {Port.EAST: 1, Port.WEST: -1}.get(port, 0)
        y += {Port.SOUTH: 1, Port.NORTH: -1}.get(port, 0)
        assert 0 <= x < cfg.mesh_w and 0 <= y < cfg.mesh_h, f"reference left the mesh at {x, y}"
    raise AssertionError("reference routing loops")


# ---------------------------------------------------------------------------------------------
# cocotb side (runs inside the Verilator process)

PATTERNS = {
    # name: (injection probability per cycle, sink ready probability, stall bursts)
    "uniform": (0.5, 0.7, False),
    "hotspot": (0.8, 0.5, True),
    "transpose": (1.0, 1.0, False),     # saturation, no backpressure
    "all_to_one": (1.0, 0.6, True),
}


class NocTB:
    """Sources, sinks, scoreboard and barrier monitor for every port of the harness."""

    def __init__(self, dut, cfg: FabricConfig, pattern: str, seed: int):
        self.dut, self.cfg, self.pattern = dut, cfg, pattern
        self.rng = random.Random(seed)
        self.layout = flit_layout(cfg)
        self.n = cfg.num_cores
        names = [f"tile{k}" for k in range(self.n)] + ["host"]
        self.in_valid = [getattr(dut, f"{p}_in_valid") for p in names]
        self.in_data = [getattr(dut, f"{p}_in_data") for p in names]
        self.in_ready = [getattr(dut, f"{p}_in_ready") for p in names]
        self.out_valid = [getattr(dut, f"{p}_out_valid") for p in names]
        self.out_ready = [getattr(dut, f"{p}_out_ready") for p in names]
        self.out_data = [getattr(dut, f"{p}_out_data") for p in names]
        self.done = [getattr(dut, f"tile{k}_done") for k in range(self.n)]
        self.inject_p, self.ready_p, self.stalls = PATTERNS[pattern]
        self.expected: dict[tuple, deque] = {}
        self.seq = [0] * (self.n + 1)
        self.pending = 0
        self.holding = [None] * (self.n + 1)   # flit driven on each source, not yet accepted
        self.quota = [0] * (self.n + 1)
        self.written: dict = {}
        self.sent = self.received = self.steps_done = 0

    def write(self, handle, value):
        if self.written.get(id(handle)) != value:
            handle.value = value
            self.written[id(handle)] = value

    async def reset(self):
        Clock(self.dut.clk, 10, unit="ns").start()
        for h in self.in_valid + self.out_ready + self.done:
            self.write(h, 0)
        for name in ("start", "steps", "budget", "hold", "clear", "abort"):
            self.write(getattr(self.dut, name), 0)
        self.write(self.dut.rst, 1)
        for _ in range(3):
            await FallingEdge(self.dut.clk)
        self.write(self.dut.rst, 0)

    def destination(self, src: int):
        """(dst_x, dst_y, kind) of a new flit from source ``src`` (``n`` is the host)."""
        cfg, rng = self.cfg, self.rng
        if src < self.n and rng.random() < 0.1:
            return 0, 0, rng.choice(HOST_KINDS)            # to the host
        kind = rng.choice([FlitKind.SPIKE, FlitKind.CFG_WRITE, FlitKind.CFG_READ])
        sx, sy = cfg.core_xy(src) if src < self.n else (0, 0)
        if self.pattern == "hotspot" and rng.random() < 0.5:
            return cfg.mesh_w // 2, cfg.mesh_h // 2, kind
        if self.pattern == "transpose" and src < self.n:
            return sy % cfg.mesh_w, sx % cfg.mesh_h, kind
        if self.pattern == "all_to_one":
            return cfg.mesh_w - 1, cfg.mesh_h - 1, kind
        return rng.randrange(cfg.mesh_w), rng.randrange(cfg.mesh_h), kind

    def new_flit(self, src: int) -> int:
        dx, dy, kind = self.destination(src)
        word = pack(self.layout, dst_x=dx, dst_y=dy, kind=kind,
                    addr=self.rng.randrange(1 << self.cfg.addr_bits),
                    data=(src << 24) | self.seq[src])
        self.seq[src] += 1
        src_xy = self.cfg.core_xy(src) if src < self.n else (0, 0)
        exit_, _ = expected_exit(self.cfg, src_xy, dx, dy, kind)
        self.expected.setdefault((src, exit_), deque()).append(word)
        return word

    def plan_steps(self, total: int):
        """Per-step quotas (one list per step, one entry per source) adding up to ``total``."""
        steps, left, mean = [], total, 6
        while left > 0:
            empty = self.rng.random() < 0.1                 # some steps send nothing
            quotas = []
            for _ in range(self.n + 1):
                quotas.append(0 if empty else min(left, self.rng.randrange(2 * mean + 1)))
                left -= quotas[-1]
            steps.append(quotas)
        return steps

    def receive(self, port: int, word: int):
        src = (word >> (self.layout.size - 32 + 24)) & 0xFF
        exit_ = port if port < self.n else "host"
        queue = self.expected.get((src, exit_))
        assert queue, f"flit {word:#x} from source {src} arrived at {exit_}: not expected there"
        want = queue.popleft()
        assert word == want, f"source {src} -> {exit_}: got {word:#x}, expected {want:#x}"
        self.received += 1

    async def run(self, total: int):
        dut, n, rng = self.dut, self.n, self.rng
        plan = self.plan_steps(total)
        await self.reset()
        self.write(dut.steps, len(plan))
        self.write(dut.budget, 0)
        self.write(dut.start, 1)
        step, idle_cycles, cycle, started = -1, 0, 0, False
        sink_ready = [1] * (n + 1)
        while True:
            await FallingEdge(dut.clk)
            cycle += 1
            self.write(dut.start, 0)
            assert not int(dut.misroute.value), f"cycle {cycle}: flit routed off mesh"
            in_flight = int(dut.in_flight.value)
            assert in_flight == self.pending, \
                f"cycle {cycle}: barrier counts {in_flight} in flight, scoreboard {self.pending}"
            assert int(dut.idle.value) == (self.pending == 0), f"cycle {cycle}: idle"
            running = int(dut.running.value)
            started |= bool(running)
            if int(dut.step_done.value):
                assert self.pending == 0, \
                    f"cycle {cycle}: step_done with {self.pending} flits in flight"
                assert not any(self.quota) and not any(h is not None for h in self.holding), \
                    f"cycle {cycle}: step_done before every source finished"
                self.steps_done += 1
            if int(dut.step_start.value):
                step += 1
                assert int(dut.step.value) == step, f"cycle {cycle}: step number"
                self.quota = list(plan[step])
            if started and not running and self.received == total:
                break
            assert idle_cycles < 3000, f"cycle {cycle}: no progress for 3000 cycles (deadlock?)"

            progress = False
            in_ready = int(dut.tiles_in_ready.value) | \
                (int(dut.host_in_ready.value) << n)
            for k in range(n + 1):
                if self.holding[k] is None and self.quota[k] and rng.random() < self.inject_p:
                    self.holding[k] = self.new_flit(k)
                    self.quota[k] -= 1
                word = self.holding[k]
                self.write(self.in_valid[k], int(word is not None))
                if word is not None:
                    self.write(self.in_data[k], word)
                    if in_ready >> k & 1:                   # accepted at the next edge
                        self.holding[k] = None
                        self.pending += 1
                        self.sent += 1
                        progress = True
                if k < n:
                    self.write(self.done[k], int(word is None and not self.quota[k]))
            self.write(dut.hold, int(self.holding[n] is not None or bool(self.quota[n])))

            out_valid = int(dut.tiles_out_valid.value) | \
                (int(dut.host_out_valid.value) << n)
            for k in range(n + 1):
                if self.stalls and rng.random() < 0.02:
                    sink_ready[k] = -rng.randrange(5, 40)  # a stall burst of that many cycles
                if sink_ready[k] < 0:
                    sink_ready[k] += 1
                    ready = 0
                else:
                    ready = int(rng.random() < self.ready_p)
                self.write(self.out_ready[k], ready)
                if ready and out_valid >> k & 1:
                    self.receive(k, int(self.out_data[k].value))
                    self.pending -= 1
                    progress = True
            idle_cycles = 0 if progress or not self.pending else idle_cycles + 1

        left = {key: len(q) for key, q in self.expected.items() if q}
        assert not left, f"flits never delivered: {left}"
        assert self.sent == self.received == total, (self.sent, self.received, total)
        assert self.steps_done == len(plan), f"{self.steps_done} steps done of {len(plan)}"
        dut._log.info(f"{self.pattern}: {total} flits in {len(plan)} steps, {cycle} cycles")


def _env_cfg() -> FabricConfig:
    return FabricConfig.from_dict(json.loads(os.environ[CFG_ENV]))


async def _traffic(dut, pattern, seed):
    cfg = _env_cfg()
    total = int(os.environ.get(FLITS_ENV, "800"))
    await NocTB(dut, cfg, pattern, seed).run(total)


@cocotb.test()
async def uniform(dut):
    await _traffic(dut, "uniform", 1)


@cocotb.test()
async def hotspot(dut):
    await _traffic(dut, "hotspot", 2)


@cocotb.test()
async def transpose(dut):
    await _traffic(dut, "transpose", 3)


@cocotb.test()
async def all_to_one(dut):
    await _traffic(dut, "all_to_one", 4)


# ---------------------------------------------------------------------------------------------
# pytest side


def _run(mesh: str, flits: int):
    cfg = FabricConfig.parse_mesh(mesh)
    src = write_harness_verilog(cfg)
    result = run_cocotb(TOP, [src], __name__, src.parent / "verilator",
                        extra_env={CFG_ENV: cfg.to_json(), FLITS_ENV: str(flits)},
                        test_dir=src.parent / f"run_{flits}_{os.getpid()}")
    assert result.tests == len(PATTERNS) and result.failed == 0


@pytest.mark.rtl
@pytest.mark.parametrize("mesh", MESHES)
def test_mesh_random_traffic(mesh):
    _run(mesh, 800)


@pytest.mark.rtl
@pytest.mark.slow
@pytest.mark.parametrize("mesh", MESHES)
def test_mesh_random_traffic_long(mesh):
    _run(mesh, 25_000)   # x 4 patterns = 1e5 flits per mesh
