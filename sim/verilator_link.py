"""Verilator link: the fabric RTL behind the host driver's framed transport.

:class:`VerilatorLink` generates the Verilog of the fabric inside its testbench harness
(:class:`neuroloom.sim.link_harness.LinkHarness`) for a :class:`FabricConfig` into
``build/fabric/<digest of the Verilog text>/`` (so any change of the generated design, whatever
file it comes from, gets a new folder), builds it with Verilator once there (cached by
:func:`neuroloom.sim.verilator.run_cocotb`), and runs the simulation in a background thread. The
cocotb test in this module (:func:`link_server`) serves ``exchange(words) -> words`` requests
that arrive over a Unix socket in the build folder, so
``firmware.transports.FramedTransport(VerilatorLink(cfg))`` is the same driver code that runs
against the golden model and a board.

The harness moves host words in chunks of :data:`CHUNK`: the fabric sees the command stream at
one word per cycle (as from a host that always has the next word ready) and never waits on the
response side, while Python acts once per chunk or response frame instead of every cycle. The
cycles between two Python actions run in Verilator alone, so simulation runs at close to the
model's own speed.

A GALS fabric (``cfg.gals``) is simulated inside :class:`~neuroloom.sim.gals_harness.
GalsHarness` (every tile's clock and reset are ports, plus an in-flight monitor), with a clock
per tile: ``VerilatorLink(cfg, clocks=ClockPlan(...))`` sets each clock's period and, with
``vary``, changes the tiles' periods at random times during the run. The monitor's counts come
back with every exchange (:attr:`VerilatorLink.monitor`). One Verilator build serves every
clock plan.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import threading
from functools import lru_cache
from pathlib import Path

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.hostproto import OUTPUT, FrameHeader, from_word
from neuroloom.hw.core.memories import poison_collisions
from neuroloom.hw.fabric import Fabric
from neuroloom.hw.verilog import to_verilog

from . import verilator
from .cache import write_verilog
from .gals_harness import GalsHarness, tile_clocks
from .link_harness import LinkHarness

__all__ = ["VerilatorLink", "ClockPlan", "harness_verilog", "sim_build_dir", "is_built", "CHUNK"]

_ENV_SOCK = "NEUROLOOM_LINK_SOCKET"
_ENV_CLOCKS = "NEUROLOOM_LINK_CLOCKS"
#: words per chunk between the testbench and the harness (both directions)
CHUNK = 32
#: Verilog module name of the harness (the Verilator toplevel)
TOPLEVEL = "fabric_tb"


@dataclasses.dataclass(frozen=True)
class ClockPlan:
    """Clock periods of a GALS simulation, in picoseconds.

    ``host``: the ``sync`` domain (host link, barrier); ``tiles``: one period per core (core
    order), or empty for all at ``host``. ``vary``: a seed; each tile's clock then takes a new
    period, drawn from ``vary_range``, every 20..400 of its cycles (the first from ``tiles``).
    """
    host: int = 10_000
    tiles: tuple[int, ...] = ()
    vary: int | None = None
    vary_range: tuple[int, int] = (7_000, 13_000)

    def to_json(self, cfg: FabricConfig) -> str:
        tiles = list(self.tiles) or [self.host] * cfg.num_cores
        if len(tiles) != cfg.num_cores:
            raise ValueError(f"ClockPlan has {len(tiles)} tile periods for {cfg.num_cores} "
                             "cores")
        for p in [self.host, *tiles, *self.vary_range]:
            if p < 2 or p % 2:
                raise ValueError(f"clock period {p!r} ps must be even and >= 2")
        return json.dumps({"host": self.host, "tiles": dict(zip(tile_clocks(cfg), tiles)),
                           "vary": self.vary, "vary_range": list(self.vary_range)})


@lru_cache(maxsize=4)
def _generate(cfg: FabricConfig) -> Path:
    top = GalsHarness(cfg, chunk=CHUNK) if cfg.gals else LinkHarness(Fabric(cfg), chunk=CHUNK)
    with poison_collisions():        # a word read in a block-RAM collision is poisoned
        text = to_verilog(top, TOPLEVEL)
    path = write_verilog(text, TOPLEVEL, kind="fabric")
    (path.parent / "fabric.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    return path


def harness_verilog(cfg: FabricConfig, *, fresh: bool = False) -> Path:
    """The Verilog of the fabric inside its :class:`LinkHarness` (module :data:`TOPLEVEL`),
    which is what :class:`VerilatorLink` simulates: ``build/fabric/<digest>/fabric_tb.v``.

    The text is generated once per process and configuration (a few seconds for a 2x2 fabric,
    about a minute for 7x6); ``fresh`` generates it again (after the gateware changed in this
    process, as in tests)."""
    if fresh:
        _generate.cache_clear()
    path = _generate(cfg)
    if not path.is_file():                  # the build folder was removed meanwhile
        _generate.cache_clear()
        path = _generate(cfg)
    return path


def sim_build_dir(cfg: FabricConfig, waves: bool = False) -> Path:
    """The Verilator build folder of ``cfg``, beside its Verilog (generated if needed)."""
    return harness_verilog(cfg).parent / ("sim_waves" if waves else "sim")


def is_built(cfg: FabricConfig, waves: bool = False) -> bool:
    """Is the Verilator model of ``cfg`` built already (so opening a link will not build)?"""
    return verilator.is_built(sim_build_dir(cfg, waves))


def _send(sock: socket.socket, obj) -> None:
    sock.sendall(json.dumps(obj).encode() + b"\n")


def _recv(f) -> object:
    line = f.readline()
    if not line:
        raise ConnectionError("the simulation closed the link")
    return json.loads(line)


class VerilatorLink:
    """A framed link to the fabric RTL simulated by Verilator (see module docstring).

    Parameters
    ----------
    cfg : the fabric to generate and simulate
    waves : write an FST waveform of the whole session into the build folder
    clocks : GALS only: the clock periods (default: every clock at 10 ns)
    """

    def __init__(self, cfg: FabricConfig, *, waves: bool = False, timeout: float = 600.0,
                 clocks: ClockPlan | None = None):
        if clocks is not None and not cfg.gals:
            raise ValueError("clocks= needs a GALS fabric (cfg.gals); a synchronous fabric has "
                             "one clock")
        self.cfg = cfg
        env = {}
        if cfg.gals:
            env[_ENV_CLOCKS] = (clocks or ClockPlan()).to_json(cfg)
        self.verilog = harness_verilog(cfg)
        self.build = sim_build_dir(cfg, waves)
        self.build.mkdir(parents=True, exist_ok=True)
        sock_path = self.build / f"link-{os.getpid()}-{id(self)}.sock"
        sock_path.unlink(missing_ok=True)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(sock_path))
        server.listen(1)
        server.settimeout(1.0)
        self._error: BaseException | None = None

        def simulate():
            try:
                verilator.run_cocotb(TOPLEVEL, [self.verilog], __name__, self.build,
                                     waves=waves, extra_env={_ENV_SOCK: str(sock_path), **env},
                                     testcase="link_server")
            except BaseException as e:      # reported by exchange()/close()
                self._error = e

        self._thread = threading.Thread(target=simulate, daemon=True)
        self._thread.start()
        waited = 0.0
        try:
            while True:
                try:
                    self._sock, _ = server.accept()
                    break
                except TimeoutError:
                    waited += 1.0
                    if not self._thread.is_alive() or waited > timeout:
                        raise RuntimeError(
                            "the Verilator simulation did not start"
                            + (f": {self._error}" if self._error else
                               f" within {timeout:.0f} s")) from None
        finally:
            server.close()
            sock_path.unlink(missing_ok=True)
        self._file = self._sock.makefile("rb")
        #: RTL clock cycles the commands took, summed: for each exchange, from the cycle the
        #: fabric accepted the command's first word to the cycle it handed over the response's
        #: last word (what a host without latency of its own would see)
        self.cycles = 0
        #: clock cycles simulated so far, harness latency and reset included (simulation speed)
        self.sim_cycles = 0
        #: GALS: the in-flight monitor's counts so far, ``{"steps": ..., "errors": ...}``
        self.monitor = None

    def exchange(self, words: list[int]) -> list[int]:
        """Send one command frame; returns every word up to its response frame."""
        if not words:
            raise ValueError("exchange needs at least one word (a command frame)")
        try:
            _send(self._sock, {"words": [int(w) for w in words]})
            reply = _recv(self._file)
        except (OSError, ConnectionError) as e:
            raise RuntimeError(f"Verilator link failed: {self._error or e}") from None
        self.cycles += reply["cycles"]
        self.sim_cycles = reply["sim_cycles"]
        self.monitor = reply.get("monitor")
        return reply["words"]

    def close(self) -> None:
        if self._thread.is_alive():
            try:
                _send(self._sock, {"quit": True})
            except OSError:
                pass
            self._thread.join(timeout=60)
        self._sock.close()
        if self._error:
            raise RuntimeError(f"Verilator simulation failed: {self._error}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# -- the cocotb side (runs inside the simulator process)

def _is_response(header: int) -> bool:
    return from_word(FrameHeader, header)["opcode"] != OUTPUT    # OUTPUTs come first


try:                                        # cocotb is importable only where it is installed
    import cocotb
    from cocotb.clock import Clock
    from cocotb.simtime import get_sim_time
    from cocotb.triggers import FallingEdge, First, RisingEdge, Timer
except ImportError:                         # pragma: no cover
    cocotb = None


async def _varying_clock(signal, period: int, lo: int, hi: int, rng) -> None:
    """Drive ``signal`` with a clock whose period (ps, even) changes every 20..400 cycles."""
    while True:
        half = period // 2
        for _ in range(rng.randrange(20, 401)):
            signal.value = 1
            await Timer(half, unit="ps")
            signal.value = 0
            await Timer(half, unit="ps")
        period = 2 * rng.randrange(lo // 2, hi // 2 + 1)


async def _start_clocks(dut) -> int:
    """Start every clock and run the reset sequence; returns the host clock's period (ps).

    GALS (``NEUROLOOM_LINK_CLOCKS`` set): every reset is asserted, the tiles' resets are
    released one after the other, then the host's (``docs/noc.md``, GALS)."""
    import random

    plan = os.environ.get(_ENV_CLOCKS)
    if plan is None:
        Clock(dut.clk, 10, unit="ns").start()
        dut.rst.value = 1
        for _ in range(3):
            await RisingEdge(dut.clk)
        dut.rst.value = 0
        return 10_000
    plan = json.loads(plan)
    rng = random.Random(plan["vary"])
    host = plan["host"]
    Clock(dut.clk, host, unit="ps").start()
    dut.rst.value = 1
    for name in plan["tiles"]:
        getattr(dut, "rst" + name[3:]).value = 1
    for name, period in plan["tiles"].items():
        sig = getattr(dut, name)
        if plan["vary"] is None:
            Clock(sig, period, unit="ps").start()
        else:
            lo, hi = plan["vary_range"]
            cocotb.start_soon(_varying_clock(sig, period, lo, hi, random.Random(rng.random())))
    slowest = max([host, *plan["tiles"].values(), *plan["vary_range"]])
    await Timer(4 * slowest, unit="ps")
    for name in plan["tiles"]:
        getattr(dut, "rst" + name[3:]).value = 0
        await Timer(rng.randrange(slowest), unit="ps")
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    return host

if cocotb is not None:
    @cocotb.test()
    async def link_server(dut):
        """Serve exchange requests from the socket until told to quit.

        Inputs are driven at falling edges; ``in_ready``/``out_hold`` are registers, so reading
        them there sees the state after the previous rising edge. With nothing to do, the
        coroutine sleeps until one of them rises."""
        dut.in_load.value = 0
        dut.out_ack.value = 0
        period = await _start_clocks(dut)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(os.environ[_ENV_SOCK])
        f = sock.makefile("rb")
        t0 = get_sim_time(unit="ps")
        K, mask = CHUNK, 0xFFFFFFFF
        while True:
            msg = _recv(f)                  # blocks the simulation: the fabric waits too
            if msg.get("quit"):
                break
            words = [int(w) & mask for w in msg["words"]]
            n = len(words)
            i, got, frame_start, done = 0, [], 0, False
            while not done:
                await FallingEdge(dut.clk)
                dut.in_load.value = 0
                dut.out_ack.value = 0
                acted = False
                if i < n and dut.in_ready.value == 1:
                    k = min(K, n - i)
                    dut.in_data.value = sum(w << 32 * j for j, w in enumerate(words[i:i + k]))
                    dut.in_last.value = 1 << (k - 1) if i + k == n else 0
                    dut.in_count.value = k
                    dut.in_load.value = 1
                    i, acted = i + k, True
                if dut.out_hold.value == 1:
                    k = int(dut.out_count.value)
                    data, last = int(dut.out_data.value), int(dut.out_last.value)
                    for j in range(K - k, K):
                        got.append(data >> 32 * j & mask)
                        if last >> j & 1:
                            done = _is_response(got[frame_start])
                            frame_start = len(got)
                    dut.out_ack.value = 1
                    acted = True
                if done and i < n:
                    raise RuntimeError(f"the fabric answered after {i} of {n} command words")
                if not acted:
                    wake = [RisingEdge(dut.out_hold)]
                    if i < n:
                        wake.append(RisingEdge(dut.in_ready))
                    await First(*wake)
            await RisingEdge(dut.clk)       # the acknowledgement takes effect
            cycles = int(dut.resp_end.value) - int(dut.cmd_start.value) + 1
            sim_cycles = round((get_sim_time(unit="ps") - t0) / period)
            reply = {"words": got, "cycles": cycles, "sim_cycles": sim_cycles}
            if os.environ.get(_ENV_CLOCKS):
                reply["monitor"] = {"steps": int(dut.mon_steps.value),
                                    "errors": int(dut.mon_errors.value)}
            _send(sock, reply)
        if dut.in_overflow.value == 1:
            raise RuntimeError("link harness: a chunk was loaded while it was full")
        sock.close()
