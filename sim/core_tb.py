"""cocotb testbench of one :class:`~neuroloom.hw.core.core.NeuronCore` (Verilator).

* :func:`write_core_verilog` -- the core's Verilog, cached under ``build/core/<digest>/``; its
  Verilator build goes to ``<that folder>/verilator``.
* :class:`CoreTB` (runs inside the simulator) drives ``i_flit`` (random idle gaps between
  flits), takes ``o_flit`` (random backpressure), pulses steps and waits for ``idle``; every
  cycle is one pass of a single clocked loop (inputs change at the falling edge, handshakes are
  sampled in the read-only phase). Tests check it against the golden model
  (``tests/test_core_cocotb.py``); ``bench/core_bench.py`` reads the cycle counters with it.
"""

from __future__ import annotations

import random
from collections import deque
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.layouts import FlitKind, Mem, cfg_addr_layout, flit_layout, pack, unpack
from neuroloom.hw.core.core import NeuronCore
from neuroloom.hw.core.memories import poison_collisions
from neuroloom.hw.verilog import to_verilog

from .cache import write_verilog

__all__ = ["TOPLEVEL", "CoreTB", "CoreTimeout", "write_core_verilog"]

#: the core's Verilog module name (the Verilator toplevel)
TOPLEVEL = "core"


def write_core_verilog(cfg: FabricConfig, xy: tuple[int, int]) -> Path:
    """The Verilog of the core at ``xy`` of ``cfg``: ``build/core/<digest of the text>/core.v``."""
    with poison_collisions():        # a word read in a block-RAM collision is poisoned
        text = to_verilog(NeuronCore(cfg, *xy), TOPLEVEL)
    return write_verilog(text, TOPLEVEL, kind="core")


class CoreTimeout(AssertionError):
    """The core did not finish (accept its flits, answer reads, end a step) in time."""


class CoreTB:
    """Flit-level driver and monitor of one core (see the module docstring).

    Parameters
    ----------
    dut : the cocotb handle of the ``core`` toplevel
    cfg, xy : the fabric and the core's position (its flits are addressed to ``xy``)
    rng : randomness of the idle gaps and the backpressure
    gaps : probability that no flit is offered in a cycle where one could be
    backpressure : probability that ``o_flit`` is not ready in a cycle
    """

    def __init__(self, dut, cfg: FabricConfig, xy, rng: random.Random, *, gaps: float = 0.3,
                 backpressure: float = 0.4):
        self.dut, self.cfg, self.xy, self.rng = dut, cfg, tuple(xy), rng
        self.gaps, self.backpressure = gaps, backpressure
        self.tx: deque[int] = deque()
        self.cur = None
        self.rx: list[tuple] = []          # SPIKE / HOST_OUT flits since the last take
        self.resp: deque[tuple] = deque()  # READ_RESP (addr, data)
        self.idle = 0
        self.cycle = 0
        self.sent_cycles = 0               # cycles with a flit accepted on i_flit
        self._pulse = None
        self._flit = flit_layout(cfg)
        self._addr = cfg_addr_layout(cfg)

    async def start(self):
        d = self.dut
        Clock(d.clk, 10, unit="ns").start()
        d.rst.value = 1
        d.i_flit__valid.value = 0
        d.i_flit__payload.value = 0
        d.o_flit__ready.value = 0
        d.step.value = 0
        d.step_start.value = 0
        d.clear.value = 0
        for _ in range(3):
            await FallingEdge(d.clk)
        d.rst.value = 0
        cocotb.start_soon(self._loop())

    async def _loop(self):
        d, rng = self.dut, self.rng
        while True:
            await FallingEdge(d.clk)
            if self.cur is None and self.tx and rng.random() >= self.gaps:
                self.cur = self.tx.popleft()
            d.i_flit__valid.value = int(self.cur is not None)
            if self.cur is not None:
                d.i_flit__payload.value = self.cur
            d.o_flit__ready.value = int(rng.random() >= self.backpressure)
            pulse, self._pulse = self._pulse, None
            d.step_start.value = int(pulse is not None and pulse[0] == "step")
            d.clear.value = int(pulse is not None and pulse[0] == "clear")
            if pulse is not None and pulse[0] == "step":
                d.step.value = pulse[1]
            await ReadOnly()
            if self.cur is not None and d.i_flit__ready.value:
                self.cur = None
            if d.o_flit__valid.value and d.o_flit__ready.value:
                f = unpack(self._flit, int(d.o_flit__payload.value))
                if f["kind"] == FlitKind.READ_RESP:
                    self.resp.append((f["addr"], f["data"]))
                else:
                    self.rx.append((f["dst_x"], f["dst_y"], f["kind"], f["addr"], f["data"]))
            self.idle = int(d.idle.value)
            self.cycle += 1

    # -- flits ----------------------------------------------------------------------------------
    def flit(self, kind, addr, data=0, x=None, y=None) -> int:
        x, y = self.xy if x is None else (x, y)
        return pack(self._flit, dst_x=x, dst_y=y, kind=int(kind), addr=addr,
                    data=data & 0xFFFFFFFF)

    def cfg_addr(self, mem, index, part) -> int:
        return pack(self._addr, mem=int(mem), index=index, part=part)

    def write(self, mem, index, part, value):
        self.tx.append(self.flit(FlitKind.CFG_WRITE, self.cfg_addr(mem, index, part), value))

    def spike(self, axon, payload):
        self.tx.append(self.flit(FlitKind.SPIKE, axon, payload))

    async def cycles(self, n=1):
        target = self.cycle + n
        while self.cycle < target:
            await FallingEdge(self.dut.clk)

    async def drain(self, limit=200_000):
        """Wait until every queued flit is accepted and the core is idle."""
        start = self.cycle
        quiet = 0
        while quiet < 3:
            await FallingEdge(self.dut.clk)
            quiet = quiet + 1 if (self.idle and not self.tx and self.cur is None) else 0
            if self.cycle - start > limit:
                raise CoreTimeout(f"core not idle after {limit} cycles")

    async def read_many(self, addrs: list[tuple]) -> list[int]:
        """CFG_READ every (mem, index, part); returns the data parts in order."""
        self.resp.clear()
        for mem, index, part in addrs:
            self.tx.append(self.flit(FlitKind.CFG_READ, self.cfg_addr(mem, index, part)))
        start = self.cycle
        while len(self.resp) < len(addrs):
            await FallingEdge(self.dut.clk)
            if self.cycle - start > 20 * len(addrs) + 1000:
                raise CoreTimeout(f"only {len(self.resp)} of {len(addrs)} READ_RESP")
        out = []
        for (mem, index, part), (addr, data) in zip(addrs, self.resp):
            assert addr == self.cfg_addr(mem, index, part), \
                f"READ_RESP addr {addr:#x} for {Mem(mem).name}[{index}].{part}"
            out.append(data)
        self.resp.clear()
        return out

    async def step(self, t: int) -> int:
        """Run step ``t``; returns the cycles from step_start until idle."""
        await self.drain()
        self._pulse = ("step", t)
        while self._pulse is not None:
            await FallingEdge(self.dut.clk)
        start = self.cycle
        await self.cycles(1)
        while not self.idle:
            await FallingEdge(self.dut.clk)
            if self.cycle - start > 200_000:
                raise CoreTimeout(f"step {t} did not finish")
        return self.cycle - start - 1

    async def clear(self):
        await self.drain()
        self._pulse = ("clear", 0)
        while self._pulse is not None:
            await FallingEdge(self.dut.clk)
        await self.drain()

    def take(self) -> list[tuple]:
        out, self.rx = sorted(self.rx), []
        return out

    # -- whole-core checks ----------------------------------------------------------------------
    async def check_state(self, golden, core: int, neurons=None, what=""):
        cfg = self.cfg
        neurons = range(cfg.neurons) if neurons is None else neurons
        addrs = [(Mem.STATE, n, p) for n in neurons for p in range(cfg.state_regs)]
        addrs += [(Mem.ACC, n, b) for n in neurons for b in range(2)]
        addrs += [(Mem.COUNTER, c, 0) for c in range(4)]
        got = await self.read_many(addrs)
        for (mem, n, p), g in zip(addrs, got):
            want = golden.read(core, mem, n, p)
            assert g == want, f"{what}: {Mem(mem).name}[{n}].{p} RTL {g:#x} != golden " \
                              f"{want:#x}"
        return got
