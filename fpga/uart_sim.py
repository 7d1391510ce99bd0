"""The board's logic under Verilator, its UART lines on a pseudo-terminal.

:class:`VerilatorBoard` simulates a :class:`~neuroloom.fpga.top.UARTFabric` (the fabric, the
UART bridge and the status lights: everything of the board top but the PLL and the pins) and
serves its serial lines on a pty, so the unmodified serial transport opens ``board.port`` with
pyserial as it would open ``/dev/ttyUSB0``::

    with VerilatorBoard(cfg) as board:
        drv = Driver(open_transport("serial", port=board.port))

:class:`UARTHarness` (testbench code) puts a host-side UART on the fabric's lines: bytes go to
and from the testbench in chunks (``in_*``: up to ``chunk`` bytes per load, sent back to back;
``out_*``: received bytes, held when ``chunk`` arrived, an ``END`` arrived, or the line has been
idle for two byte times), so the cocotb side acts once per chunk while every bit of every byte
crosses the simulated UART at ``divisor`` cycles per bit. The cocotb test :func:`pty_server`
runs inside the simulator process: it opens the pty and writes its name into a file the parent
waits for.
"""

import os
import select
import threading
import time
from pathlib import Path

from amaranth.hdl import Cat, DomainRenamer, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from neuroloom.contract.config import FabricConfig
from neuroloom.hw.core.memories import poison_collisions
from neuroloom.hw.verilog import to_verilog
from neuroloom.sim import verilator
from neuroloom.sim.cache import write_verilog

from .top import NUM_LEDS, UART_DOMAIN, UARTFabric
from .uart import END, UARTReceiver, UARTTransmitter

__all__ = ["UARTHarness", "VerilatorBoard", "TOPLEVEL", "CHUNK", "SIM_DIVISOR",
           "FABRIC_PERIOD_PS", "UART_PERIOD_PS"]

TOPLEVEL = "board_tb"
CHUNK = 64
#: UART clock cycles per bit in simulation (the fewest the UART takes: 40 cycles per byte)
SIM_DIVISOR = 4
#: the simulated clocks' periods by default: unrelated (no common multiple below 73 us), the
#: UART clock the faster, as on a board at 50 MHz with its 60 MHz UART clock
FABRIC_PERIOD_PS = 10_000
UART_PERIOD_PS = 7_300
_ENV_PTY = "NEUROLOOM_PTY_FILE"
_ENV_STOP = "NEUROLOOM_PTY_STOP"
_ENV_SKEW = "NEUROLOOM_PTY_SKEW"
_ENV_PERIODS = "NEUROLOOM_PTY_PERIODS"


class UARTHarness(wiring.Component):
    """Chunked byte access to ``inner``'s UART lines (module docstring); every port of the
    harness is in the ``uart`` domain."""

    def __init__(self, inner, divisor: int, *, chunk: int = CHUNK):
        self.inner = inner
        self._divisor = divisor
        self.chunk = chunk
        super().__init__({
            "in_data": In(8 * chunk), "in_count": In(range(chunk + 1)), "in_load": In(1),
            "in_ready": Out(1),
            "out_data": Out(8 * chunk), "out_count": Out(range(chunk + 1)), "out_hold": Out(1),
            "out_ack": In(1), "leds": Out(NUM_LEDS), "skew": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        K, div = self.chunk, self._divisor
        m.submodules.inner = dut = self.inner
        host = Module()
        m.submodules.host = DomainRenamer(UART_DOMAIN)(host)
        host.submodules.host_tx = good = UARTTransmitter(div)
        host.submodules.host_tx_skewed = skewed = UARTTransmitter(div + div // 4 + 1)
        host.submodules.host_rx = rx = UARTReceiver(div)
        m.d.comb += [dut.rx.eq(Mux(self.skew, skewed.tx, good.tx)), rx.rx.eq(dut.tx),
                     self.leds.eq(dut.leds)]

        data, count = Signal(8 * K), Signal(range(K + 1))
        sending = Signal()
        m.d.comb += [self.in_ready.eq(count == 0),
                     good.i.valid.eq((count != 0) & ~self.skew),
                     skewed.i.valid.eq((count != 0) & self.skew),
                     good.i.payload.eq(data[:8]), skewed.i.payload.eq(data[:8]),
                     sending.eq((good.i.valid & good.i.ready) |
                                (skewed.i.valid & skewed.i.ready))]
        with m.If(sending):
            m.d[UART_DOMAIN] += [data.eq(data >> 8), count.eq(count - 1)]
        with m.If(self.in_load & (count == 0)):
            m.d[UART_DOMAIN] += [data.eq(self.in_data), count.eq(self.in_count)]

        idle = Signal(range(20 * div + 1))
        hold, o_cnt = self.out_hold, self.out_count
        m.d.comb += rx.o.ready.eq(~hold)
        with m.If(rx.o.valid & ~hold):
            m.d[UART_DOMAIN] += [self.out_data.eq(Cat(self.out_data[8:], rx.o.payload.data)),
                         o_cnt.eq(o_cnt + 1), idle.eq(0)]
            with m.If((rx.o.payload.data == END) | (o_cnt == K - 1)):
                m.d[UART_DOMAIN] += hold.eq(1)
        with m.Elif((o_cnt != 0) & ~hold):
            m.d[UART_DOMAIN] += idle.eq(idle + 1)
            with m.If(idle == 20 * div):
                m.d[UART_DOMAIN] += hold.eq(1)
        with m.If(self.out_ack & hold):
            m.d[UART_DOMAIN] += [hold.eq(0), o_cnt.eq(0), idle.eq(0)]
        return m


def board_verilog(cfg: FabricConfig, divisor: int = SIM_DIVISOR) -> Path:
    """The Verilog of ``UARTHarness(UARTFabric(cfg))``: ``build/board/<digest>/board_tb.v``."""
    top = UARTHarness(UARTFabric(cfg, divisor, blink_cycles=1 << 12), divisor)
    with poison_collisions():        # a word read in a block-RAM collision is poisoned
        text = to_verilog(top, TOPLEVEL)
    return write_verilog(text, TOPLEVEL, kind="board")


class VerilatorBoard:
    """A simulated board on a pty (module docstring).

    Parameters
    ----------
    cfg : the fabric
    timeout : seconds to wait for the simulator to start (the first use builds it: minutes)
    fabric_period_ps, uart_period_ps : the periods of the fabric clock (``sync``) and of the
        UART clock (``uart``; the baud is ``1 / (SIM_DIVISOR * uart_period)``); a run-time
        choice, the same build serves any
    """

    def __init__(self, cfg: FabricConfig, *, timeout: float = 900.0,
                 fabric_period_ps: int = FABRIC_PERIOD_PS,
                 uart_period_ps: int = UART_PERIOD_PS):
        for name, v in (("fabric_period_ps", fabric_period_ps),
                        ("uart_period_ps", uart_period_ps)):
            if not isinstance(v, int) or v < 2 or v % 2:
                raise ValueError(f"{name}={v!r} must be an even int >= 2 (picoseconds)")
        self.cfg = cfg
        self.periods_ps = (fabric_period_ps, uart_period_ps)
        verilog = board_verilog(cfg)
        self.build = verilog.parent / "sim"
        self.build.mkdir(parents=True, exist_ok=True)
        tag = f"{os.getpid()}-{id(self)}"
        self._pty_file = self.build / f"pty-{tag}.name"
        self._stop_file = self.build / f"pty-{tag}.stop"
        self._skew_file = self.build / f"pty-{tag}.skew"
        for f in (self._pty_file, self._stop_file, self._skew_file):
            f.unlink(missing_ok=True)
        self.error: BaseException | None = None

        def simulate():
            try:
                verilator.run_cocotb(TOPLEVEL, [verilog], __name__, self.build,
                                     extra_env={_ENV_PTY: str(self._pty_file),
                                                _ENV_STOP: str(self._stop_file),
                                                _ENV_SKEW: str(self._skew_file),
                                                _ENV_PERIODS: "{} {}".format(*self.periods_ps)},
                                     testcase="pty_server")
            except BaseException as e:          # reported by close()
                self.error = e

        self._thread = threading.Thread(target=simulate, name="verilator-board", daemon=True)
        self._thread.start()
        t0 = time.monotonic()
        while not self._pty_file.is_file() or not self._pty_file.read_text().endswith("\n"):
            if not self._thread.is_alive() or time.monotonic() - t0 > timeout:
                self.close()
                raise RuntimeError("the simulated board did not start"
                                   + (f": {self.error}" if self.error else
                                      f" within {timeout:.0f} s"))
            time.sleep(0.1)
        #: the pty device the serial transport opens
        self.port = self._pty_file.read_text().strip()

    def wrong_baud(self, on: bool = True) -> None:
        """Send the host's bytes to the fabric with bits 1.5 times too long from the next command
        on (or at the right rate again): the far end of a UART set to the wrong baud."""
        if on:
            self._skew_file.touch()
        else:
            self._skew_file.unlink(missing_ok=True)

    def close(self) -> None:
        self._stop_file.touch()
        self._thread.join(timeout=60)
        for f in (self._pty_file, self._stop_file, self._skew_file):
            f.unlink(missing_ok=True)
        if self.error is not None:
            raise RuntimeError(f"the simulated board failed: {self.error}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# -- the cocotb side (runs inside the simulator process)

try:                                        # cocotb is importable only where it is installed
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import ClockCycles, FallingEdge, First, RisingEdge
except ImportError:                         # pragma: no cover
    cocotb = None

if cocotb is not None:
    @cocotb.test()
    async def pty_server(dut):
        """Move bytes between the pty and the harness until the stop file appears.

        The fabric clock (``clk``) and the UART clock (``uart_clk``) run at their periods; the
        harness's ports are in the UART domain, so this coroutine steps on ``uart_clk``. With
        bytes in flight it wakes once per byte time; with none, it waits on the pty (the
        simulation pauses, nothing is lost: the UART lines are idle)."""
        import tty
        fabric_ps, uart_ps = (int(v) for v in os.environ[_ENV_PERIODS].split())
        clk = dut.uart_clk
        Clock(dut.clk, fabric_ps, unit="ps").start()
        Clock(clk, uart_ps, unit="ps").start()
        dut.rst.value = 1
        dut.uart_rst.value = 1
        dut.in_load.value = 0
        dut.out_ack.value = 0
        await ClockCycles(dut.clk, 3)
        await ClockCycles(clk, 3)
        dut.rst.value = 0
        dut.uart_rst.value = 0
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        name_file = Path(os.environ[_ENV_PTY])
        stop_file = Path(os.environ[_ENV_STOP])
        skew_file = Path(os.environ[_ENV_SKEW])
        dut.skew.value = 0
        name_file.write_text(os.ttyname(slave) + "\n")
        K, byte_time = CHUNK, 10 * SIM_DIVISOR
        pending = b""
        quiet = 0                           # wake-ups with nothing on the lines
        try:
            while not stop_file.exists():
                await FallingEdge(clk)
                dut.in_load.value = 0
                dut.out_ack.value = 0
                if not pending:
                    if select.select([master], [], [], 0.0 if quiet < 64 else 0.002)[0]:
                        try:
                            pending = os.read(master, 4096)
                        except OSError:
                            pending = b""
                    if pending and dut.in_ready.value == 1:
                        # new bytes, the line idle: the rate may change (asked before they
                        # were written, so looked at after they arrived)
                        dut.skew.value = int(skew_file.exists())
                acted = False
                if pending and dut.in_ready.value == 1:
                    chunk, pending = pending[:K], pending[K:]
                    dut.in_data.value = int.from_bytes(chunk, "little")
                    dut.in_count.value = len(chunk)
                    dut.in_load.value = 1
                    acted = True
                if dut.out_hold.value == 1:
                    n = int(dut.out_count.value)
                    data = int(dut.out_data.value).to_bytes(K, "little")[K - n:]
                    while data:
                        try:
                            data = data[os.write(master, data):]
                        except BlockingIOError:
                            time.sleep(0.001)
                    dut.out_ack.value = 1
                    acted = True
                quiet = 0 if acted or pending else quiet + 1
                await RisingEdge(clk)
                if acted:
                    continue
                if pending:                 # the transmitter is busy with the last chunk
                    await First(RisingEdge(dut.in_ready), RisingEdge(dut.out_hold))
                else:                       # sleep a while unless an answer arrives
                    await First(RisingEdge(dut.out_hold),
                                ClockCycles(clk, byte_time if quiet < 64 else 50 * byte_time))
        finally:
            os.close(master)
            os.close(slave)
