"""Board tops: the fabric behind a UART, with status LEDs, clocked by the board's PLL.

* :class:`UARTFabric` -- the board-independent part, in two clock domains: the fabric, its host
  link and the status lights in ``sync`` (the fabric clock), the
  :class:`~neuroloom.fpga.uart.UARTHostBridge` in ``uart`` (the UART clock), the host words
  crossing between them through one :class:`~amaranth.lib.fifo.AsyncFIFO` each way. The baud
  depends on the UART clock only, so the fabric clock is free. Simulations (Verilator,
  amaranth.sim) run this with a clock for each domain.
* :class:`BoardTop` -- a :class:`UARTFabric` on a board (:mod:`neuroloom.fpga.boards`): the
  board oscillator through an ECP5 ``EHXPLLL``, CLKOP the fabric clock, CLKOS the UART clock
  (:func:`clock_plan` picks the dividers), each domain's reset held until the PLL locks (and
  while the board's reset button is pressed), UART and LED pins.

Status lights (``UARTFabric.leds``, in order): 0 heartbeat (the fabric clock runs: ~1.5 Hz at
50 MHz), 1 host traffic (a command or response word, stretched), 2 fabric busy (the host link
executes a command, e.g. the steps of a RUN; stretched), 3 barrier overrun (sticky until the next
RUN), 4 host-link error (a damaged frame or UART fault, or an ERROR frame answered; stretched).
"""

import dataclasses

from amaranth.hdl import (
    ClockDomain,
    ClockSignal,
    DomainRenamer,
    Elaboratable,
    Module,
    ResetSignal,
    Signal,
)
from amaranth.lib import io, wiring
from amaranth.lib.cdc import PulseSynchronizer, ResetSynchronizer
from amaranth.lib.fifo import AsyncFIFO
from amaranth.lib.wiring import In, Out

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.hostproto import ERROR, FrameHeader
from neuroloom.hw.fabric import Fabric
from neuroloom.hw.hostlink import axis_layout

from .ecp5 import EHXPLLL, PLLParams, global_reset, pll_configs, pll_params
from .uart import MIN_DIVISOR, UARTHostBridge, uart_divisor, uart_margin

__all__ = ["UARTFabric", "BoardTop", "ClockPlan", "clock_plan", "NUM_LEDS", "LED_NAMES",
           "UART_CLOCK_MAX_MHZ", "UART_DOMAIN"]

LED_NAMES = ("heartbeat", "traffic", "busy", "overrun", "error")
NUM_LEDS = len(LED_NAMES)
#: the clock domain of the UART bridge in :class:`UARTFabric`
UART_DOMAIN = "uart"
#: the fastest UART clock :func:`clock_plan` picks (the bridge is small logic; this keeps it
#: far from its Fmax)
UART_CLOCK_MAX_MHZ = 80.0
#: UART clock cycles per bit the plan prefers up to (more adds no margin worth a faster clock)
_GOOD_DIVISOR = 16


def _stretch(m: Module, pulse, cycles: int, name: str) -> Signal:
    """``pulse`` held high for ``cycles`` cycles after it was last seen."""
    count = Signal(range(cycles + 1), name=f"{name}_count")
    with m.If(pulse):
        m.d.sync += count.eq(cycles)
    with m.Elif(count != 0):
        m.d.sync += count.eq(count - 1)
    return count != 0


class UARTFabric(wiring.Component):
    """A fabric of ``cfg`` (``sync`` domain) behind a UART with ``divisor`` cycles of the
    ``uart`` domain's clock per bit.

    Parameters
    ----------
    cfg : the fabric's parameters
    divisor : UART clock cycles per bit (:func:`~neuroloom.fpga.uart.uart_divisor`)
    step_budget : the barrier's overrun budget in cycles per step (0: none)
    blink_cycles : the heartbeat's half period and the stretch of the other lights, in fabric
        clock cycles
    fifo_depth : host words buffered by each clock-domain crossing (a power of 2)

    Interface attributes
    --------------------
    rx : In(1), tx : Out(1)      the UART lines (FPGA side; ``uart`` domain)
    leds : Out(NUM_LEDS)         status lights (module docstring)
    """

    rx: In(1, init=1)
    tx: Out(1, init=1)
    leds: Out(NUM_LEDS)

    def __init__(self, cfg: FabricConfig, divisor: int, *, step_budget: int = 0,
                 blink_cycles: int = 1 << 24, fifo_depth: int = 8):
        if not isinstance(cfg, FabricConfig):
            raise TypeError(f"cfg must be a FabricConfig, not {cfg!r}")
        if not isinstance(blink_cycles, int) or blink_cycles < 1:
            raise ValueError(f"blink_cycles={blink_cycles!r} must be an int >= 1")
        if not isinstance(fifo_depth, int) or fifo_depth < 2 or fifo_depth & (fifo_depth - 1):
            raise ValueError(f"fifo_depth={fifo_depth!r} must be a power of 2 >= 2")
        self._cfg = cfg
        self._divisor = divisor
        self._budget = step_budget
        self._blink = blink_cycles
        self._fifo_depth = fifo_depth
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
        bridge = UARTHostBridge(self._divisor)
        m.submodules.bridge = DomainRenamer(UART_DOMAIN)(bridge)
        # host words between the domains: (data, last) through an AsyncFIFO each way
        width = axis_layout.size
        m.submodules.cmd_cdc = cmd = AsyncFIFO(width=width, depth=self._fifo_depth,
                                               w_domain=UART_DOMAIN, r_domain="sync")
        m.submodules.resp_cdc = resp = AsyncFIFO(width=width, depth=self._fifo_depth,
                                                 w_domain="sync", r_domain=UART_DOMAIN)
        cmd_word = axis_layout(cmd.r_data)
        resp_word = Signal(axis_layout)
        m.d.comb += [
            bridge.rx.eq(self.rx), self.tx.eq(bridge.tx),
            cmd.w_data.eq(bridge.o_cmd.payload), cmd.w_en.eq(bridge.o_cmd.valid),
            bridge.o_cmd.ready.eq(cmd.w_rdy),
            fabric.s_axis_tdata.eq(cmd_word.data), fabric.s_axis_tlast.eq(cmd_word.last),
            fabric.s_axis_tvalid.eq(cmd.r_rdy), cmd.r_en.eq(fabric.s_axis_tready),
            resp_word.data.eq(fabric.m_axis_tdata), resp_word.last.eq(fabric.m_axis_tlast),
            resp.w_data.eq(resp_word), resp.w_en.eq(fabric.m_axis_tvalid),
            fabric.m_axis_tready.eq(resp.w_rdy),
            bridge.i_resp.payload.eq(resp.r_data), bridge.i_resp.valid.eq(resp.r_rdy),
            resp.r_en.eq(bridge.i_resp.ready),
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
        m.submodules.fault_cdc = fault = PulseSynchronizer(UART_DOMAIN, "sync")
        m.d.comb += [
            fault.i.eq(bridge.fault),
            self.leds[0].eq(beat),
            self.leds[1].eq(_stretch(m, cmd_fire | resp_fire, self._blink, "traffic")),
            self.leds[2].eq(_stretch(m, busy, self._blink, "busy")),
            self.leds[3].eq(fabric.overrun),
            self.leds[4].eq(_stretch(m, fault.o | error_frame, self._blink, "error")),
        ]
        return m


@dataclasses.dataclass(frozen=True)
class ClockPlan:
    """A board's clocks: the PLL (CLKOP: the fabric clock, CLKOS: the UART clock), the baud and
    its divisor (UART clock cycles per bit)."""

    pll: PLLParams
    baud: int
    divisor: int

    @property
    def fabric_mhz(self) -> float:
        return self.pll.f_out_mhz

    @property
    def uart_mhz(self) -> float:
        return self.pll.f_os_mhz

    @property
    def baud_error(self) -> float:
        """The relative error of the baud the UART clock makes."""
        return abs(self.uart_mhz * 1e6 / self.divisor - self.baud) / self.baud


def clock_plan(board, clock_mhz: float, baud: int | None = None) -> ClockPlan:
    """The PLL dividers, baud and divisor of a board top with a ``clock_mhz`` fabric clock.

    CLKOP makes the fabric clock (:func:`~neuroloom.fpga.ecp5.pll_params`); CLKOS, from the same
    VCO, makes the UART clock, chosen for the baud alone: without ``baud``, the fastest of
    ``board.bauds`` (the rates its USB-UART makes) that a UART clock up to
    :data:`UART_CLOCK_MAX_MHZ` gives within half the UART tolerance (room to spare, as
    :func:`~neuroloom.fpga.uart.fastest_baud`); with ``baud``, within the whole tolerance
    (:func:`~neuroloom.fpga.uart.uart_divisor`). Among the UART clocks that give it: >= 16
    cycles per bit where possible (the margin grows with them), then the smallest baud error
    (to 0.01 %), then the slowest clock.

    Raises
    ------
    ValueError
        a fabric clock the PLL cannot make, or a baud no UART clock beside it gives.
    """
    nearest = pll_params(board.clock_mhz, clock_mhz)
    wanted = sorted(board.bauds, reverse=True) if baud is None else [int(baud)]
    share = 0.5 if baud is None else 1.0
    best = None
    for order, cfg in enumerate(pll_configs(board.clock_mhz, clock_mhz)):
        if abs(cfg.f_out_mhz - nearest.f_out_mhz) > 1e-9:
            continue                                  # only the fabric clock nearest the ask
        for os_div in range(1, 129):
            f_hz = cfg.f_vco_mhz / os_div * 1e6
            if f_hz > UART_CLOCK_MAX_MHZ * 1e6:
                continue
            for b in wanted:                          # fastest first: the first fit is best
                div = round(f_hz / b)
                err = abs(f_hz / div - b) / b if div else 1.0
                if div >= MIN_DIVISOR and err <= share * uart_margin(div):
                    key = (-b, -min(div, _GOOD_DIVISOR), round(err, 4), f_hz, order)
                    if best is None or key < best[0]:
                        best = (key, cfg.with_clkos(os_div), b)
                    break
    if best is None:
        raise ValueError(f"baud {wanted[0] if baud else list(wanted)}: no UART clock the PLL "
                         f"makes beside the {nearest.f_out_mhz:g} MHz fabric clock (up to "
                         f"{UART_CLOCK_MAX_MHZ:g} MHz, >= {MIN_DIVISOR} cycles per bit) gives "
                         f"it within the UART tolerance; choose one of "
                         f"{', '.join(map(str, board.bauds))}")
    _, pll, b = best
    return ClockPlan(pll, b, uart_divisor(pll.f_os_mhz * 1e6, b))


class BoardTop(Elaboratable):
    """A :class:`UARTFabric` on a board: PLL, resets, pins (the top given to the platform).

    Parameters
    ----------
    board : a :class:`~neuroloom.fpga.boards.Board`
    cfg : the fabric's parameters
    clock_mhz : the fabric clock, made by the PLL (CLKOP) from the board oscillator
    baud : the UART rate (default: the fastest the board's USB-UART makes; the UART clock,
        CLKOS, is chosen for it: :func:`clock_plan`)
    step_budget : the barrier's overrun budget in cycles per step (0: none)

    Raises ``ValueError`` for a clock the PLL cannot make or a baud no UART clock beside it
    makes within the UART tolerance.
    """

    def __init__(self, board, cfg: FabricConfig, *, clock_mhz: float = 50.0,
                 baud: int | None = None, step_budget: int = 0):
        self._board = board
        self._cfg = cfg
        self._plan = clock_plan(board, clock_mhz, baud)
        self._budget = step_budget

    @property
    def clocks(self) -> ClockPlan:
        return self._plan

    @property
    def pll(self) -> PLLParams:
        """The PLL's dividers and the clocks it makes (:class:`~neuroloom.fpga.ecp5.PLLParams`)."""
        return self._plan.pll

    @property
    def baud(self) -> int:
        return self._plan.baud

    @property
    def divisor(self) -> int:
        return self._plan.divisor

    def elaborate(self, platform):
        m = Module()
        board = self._board

        def pin(direction, resource, name):
            m.submodules[name] = buf = io.Buffer(direction, resource)
            return buf

        clk_in = pin("i", platform.request(*board.clock, dir="-"), "clk_in")
        m.submodules.pll = pll = EHXPLLL(self._plan.pll)
        m.d.comb += pll.clk_in.eq(clk_in.i)

        m.domains.sync = ClockDomain("sync")
        m.domains.uart = ClockDomain(UART_DOMAIN)
        m.d.comb += [ClockSignal("sync").eq(pll.clk_out), ClockSignal(UART_DOMAIN).eq(pll.clk_os)]
        reset = ~pll.locked
        if board.reset is not None:
            button = pin("i", platform.request(*board.reset, dir="-"), "reset_button")
            reset = reset | button.i
        # the fabric's reset (every flip-flop's) on a global network: the synchronizer in a
        # domain of its own on the same clock, its output through a DCCA (global_reset)
        m.domains.sync_rst = ClockDomain("sync_rst")
        m.d.comb += ClockSignal("sync_rst").eq(pll.clk_out)
        m.submodules.reset_sync = ResetSynchronizer(reset, domain="sync_rst")
        global_reset(m, "sync", ResetSignal("sync_rst"), platform)
        m.submodules.reset_uart = ResetSynchronizer(reset, domain=UART_DOMAIN)

        m.submodules.fabric = top = UARTFabric(
            self._cfg, self._plan.divisor, step_budget=self._budget,
            blink_cycles=int(self._plan.fabric_mhz * 1e6 / 3))
        uart = platform.request(*board.uart, dir="-")
        rx, tx = pin("i", uart.rx, "uart_rx"), pin("o", uart.tx, "uart_tx")
        m.d.comb += [top.rx.eq(rx.i), tx.o.eq(top.tx)]
        for i, led_number in enumerate(board.leds[:len(LED_NAMES)]):
            led = pin("o", platform.request("led", led_number, dir="-"), f"led_{i}")
            m.d.comb += led.o.eq(top.leds[i])
        return m
