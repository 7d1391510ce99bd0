"""Board tops: the fabric behind a UART, with status LEDs, clocked by the board's PLL.

* :class:`UARTFabric` -- the board-independent part, in the ``sync`` domain: a
  :class:`~neuroloom.hw.fabric.Fabric`, the :class:`~neuroloom.fpga.uart.UARTHostBridge` on
  its host port, and the status lights. Simulations (Verilator, amaranth.sim) run this.
* :class:`BoardTop` -- a :class:`UARTFabric` on a board (:mod:`neuroloom.fpga.boards`): the
  board oscillator through an ECP5 ``EHXPLLL`` to the fabric clock, reset held until the PLL
  locks (and while the board's reset button is pressed), UART and LED pins.

Status lights (``UARTFabric.leds``, in order): 0 heartbeat (the fabric clock runs: ~1.5 Hz at
50 MHz), 1 host traffic (a command or response word, stretched), 2 fabric busy (the host link
executes a command, e.g. the steps of a RUN; stretched), 3 barrier overrun (sticky until the next
RUN), 4 host-link error (a damaged frame or UART fault, or an ERROR frame answered; stretched).
"""

from amaranth.hdl import ClockDomain, ClockSignal, Elaboratable, Module, Signal
from amaranth.lib import io, wiring
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.lib.wiring import In, Out

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.hostproto import ERROR, FrameHeader
from neuroloom.hw.fabric import Fabric

from .ecp5 import EHXPLLL, pll_params
from .uart import UARTHostBridge, uart_divisor

__all__ = ["UARTFabric", "BoardTop", "NUM_LEDS", "LED_NAMES"]

LED_NAMES = ("heartbeat", "traffic", "busy", "overrun", "error")
NUM_LEDS = len(LED_NAMES)


def _stretch(m: Module, pulse, cycles: int, name: str) -> Signal:
    """``pulse`` held high for ``cycles`` cycles after it was last seen."""
    count = Signal(range(cycles + 1), name=f"{name}_count")
    with m.If(pulse):
        m.d.sync += count.eq(cycles)
    with m.Elif(count != 0):
        m.d.sync += count.eq(count - 1)
    return count != 0


class UARTFabric(wiring.Component):
    """A fabric of ``cfg`` behind a UART with ``divisor`` clock cycles per bit.

    Parameters
    ----------
    cfg : the fabric's parameters
    divisor : UART clock cycles per bit (:func:`~neuroloom.fpga.uart.uart_divisor`)
    step_budget : the barrier's overrun budget in cycles per step (0: none)
    blink_cycles : the heartbeat's half period and the stretch of the other lights, in cycles

    Interface attributes
    --------------------
    rx : In(1), tx : Out(1)      the UART lines (FPGA side)
    leds : Out(NUM_LEDS)         status lights (module docstring)
    """

    rx: In(1, init=1)
    tx: Out(1, init=1)
    leds: Out(NUM_LEDS)

    def __init__(self, cfg: FabricConfig, divisor: int, *, step_budget: int = 0,
                 blink_cycles: int = 1 << 24):
        if not isinstance(cfg, FabricConfig):
            raise TypeError(f"cfg must be a FabricConfig, not {cfg!r}")
        if not isinstance(blink_cycles, int) or blink_cycles < 1:
            raise ValueError(f"blink_cycles={blink_cycles!r} must be an int >= 1")
        self._cfg = cfg
        self._divisor = divisor
        self._budget = step_budget
        self._blink = blink_cycles
        super().__init__()

    @property
    def cfg(self) -> FabricConfig:
        return self._cfg

    @property
    def divisor(self) -> int:
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        m.submodules.fabric = fabric = Fabric(self._cfg, step_budget=self._budget)
        m.submodules.bridge = bridge = UARTHostBridge(self._divisor)
        m.d.comb += [
            bridge.rx.eq(self.rx), self.tx.eq(bridge.tx),
            fabric.s_axis_tdata.eq(bridge.o_cmd.payload.data),
            fabric.s_axis_tlast.eq(bridge.o_cmd.payload.last),
            fabric.s_axis_tvalid.eq(bridge.o_cmd.valid),
            bridge.o_cmd.ready.eq(fabric.s_axis_tready),
            bridge.i_resp.payload.data.eq(fabric.m_axis_tdata),
            bridge.i_resp.payload.last.eq(fabric.m_axis_tlast),
            bridge.i_resp.valid.eq(fabric.m_axis_tvalid),
            fabric.m_axis_tready.eq(bridge.i_resp.ready),
        ]

        cmd_fire = fabric.s_axis_tvalid & fabric.s_axis_tready
        resp_fire = fabric.m_axis_tvalid & fabric.m_axis_tready
        # the link takes command words only between commands: not ready = executing one
        busy = ~fabric.s_axis_tready
        first = Signal(init=1)                     # the next response word is a header
        with m.If(resp_fire):
            m.d.sync += first.eq(fabric.m_axis_tlast)
        resp_header = FrameHeader(fabric.m_axis_tdata)
        error_frame = resp_fire & first & (resp_header.opcode == ERROR)

        heartbeat = Signal(range(self._blink))
        beat = Signal()
        m.d.sync += heartbeat.eq(heartbeat + 1)
        with m.If(heartbeat == self._blink - 1):
            m.d.sync += [heartbeat.eq(0), beat.eq(~beat)]
        m.d.comb += [
            self.leds[0].eq(beat),
            self.leds[1].eq(_stretch(m, cmd_fire | resp_fire, self._blink, "traffic")),
            self.leds[2].eq(_stretch(m, busy, self._blink, "busy")),
            self.leds[3].eq(fabric.overrun),
            self.leds[4].eq(_stretch(m, bridge.fault | error_frame, self._blink, "error")),
        ]
        return m


class BoardTop(Elaboratable):
    """A :class:`UARTFabric` on a board: PLL, reset, pins (the top given to the platform).

    Parameters
    ----------
    board : a :class:`~neuroloom.fpga.boards.Board`
    cfg : the fabric's parameters
    clock_mhz : the fabric clock, made by the PLL from the board oscillator
    baud : the UART rate (default: the fastest the board's USB-UART and the clock allow)
    step_budget : the barrier's overrun budget in cycles per step (0: none)

    Raises ``ValueError`` for a clock the PLL cannot make or a baud the clock cannot make
    within the UART tolerance.
    """

    def __init__(self, board, cfg: FabricConfig, *, clock_mhz: float = 50.0,
                 baud: int | None = None, step_budget: int = 0):
        self._board = board
        self._cfg = cfg
        self._pll = pll_params(board.clock_mhz, clock_mhz)
        f_hz = self._pll.f_out_mhz * 1e6
        self._baud = board.default_baud(f_hz) if baud is None else int(baud)
        self._divisor = uart_divisor(f_hz, self._baud)
        self._budget = step_budget

    @property
    def pll(self):
        """The PLL's dividers and the clock it makes (:class:`~neuroloom.fpga.ecp5.PLLParams`)."""
        return self._pll

    @property
    def baud(self) -> int:
        return self._baud

    @property
    def divisor(self) -> int:
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        board = self._board

        def pin(direction, resource, name):
            m.submodules[name] = buf = io.Buffer(direction, resource)
            return buf

        clk_in = pin("i", platform.request(*board.clock, dir="-"), "clk_in")
        m.submodules.pll = pll = EHXPLLL(self._pll)
        m.d.comb += pll.clk_in.eq(clk_in.i)

        m.domains.sync = ClockDomain("sync")
        m.d.comb += ClockSignal("sync").eq(pll.clk_out)
        reset = ~pll.locked
        if board.reset is not None:
            button = pin("i", platform.request(*board.reset, dir="-"), "reset_button")
            reset = reset | button.i
        m.submodules.reset_sync = ResetSynchronizer(reset, domain="sync")

        m.submodules.fabric = top = UARTFabric(self._cfg, self._divisor,
                                               step_budget=self._budget,
                                               blink_cycles=int(self._pll.f_out_mhz * 1e6 / 3))
        uart = platform.request(*board.uart, dir="-")
        rx, tx = pin("i", uart.rx, "uart_rx"), pin("o", uart.tx, "uart_tx")
        m.d.comb += [top.rx.eq(rx.i), tx.o.eq(top.tx)]
        for i, led_number in enumerate(board.leds[:len(LED_NAMES)]):
            led = pin("o", platform.request("led", led_number, dir="-"), f"led_{i}")
            m.d.comb += led.o.eq(top.leds[i])
        return m
