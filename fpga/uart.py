"""UART (8N1) and the UART <-> host-port bridge of the board tops.

* :class:`UARTReceiver`, :class:`UARTTransmitter` -- 8 data bits, no parity, one stop bit, LSB
  first; ``divisor`` clock cycles per bit (:func:`uart_divisor` computes it and refuses a baud
  the clock cannot make within the UART's tolerance).
* :class:`UARTHostBridge` -- carries the fabric's 32-bit host frames (AXI4-Stream shaped:
  ``data``/``last``, :data:`neuroloom.hw.hostlink.axis_layout`) over a UART byte stream.

Byte framing (both directions; ``docs/hostlink.md``, "Host frames over a UART"): each 32-bit
word is sent as 4 bytes, least significant first; a frame ends with ``END`` (0xC0), which stands
for TLAST on the word before it. ``END`` and ``ESC`` (0xDB) inside the data are sent as
``ESC ESC_END`` (0xDB 0xDC) and ``ESC ESC_ESC`` (0xDB 0xDD), as in SLIP (RFC 1055). ``ESC END``
is an *abort*: the host sends it before every frame, so a frame left half-sent by a lost byte is
closed as damaged instead of swallowing the next command. Empty frames are ignored.

The receiving bridge delivers a *damaged* frame (a byte with a UART framing error, a byte lost
to a full FIFO, a bad escape, an abort, or a byte count that is not a multiple of 4) with a
final word equal to the sum of the words before it plus one: its checksum is then wrong by
construction, so the host link answers it with an ERROR frame (BAD_LENGTH or BAD_CHECKSUM) and
executes none of it. The link never waits on a byte that will not come.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out, connect

from neuroloom.hw.hostlink import axis_layout

__all__ = ["UARTReceiver", "UARTTransmitter", "UARTHostBridge", "uart_divisor", "fastest_baud",
           "uart_margin", "FT231X_BAUDS", "rx_byte_layout", "END", "ESC", "ESC_END", "ESC_ESC",
           "MIN_DIVISOR"]

END, ESC, ESC_END, ESC_ESC = 0xC0, 0xDB, 0xDC, 0xDD
MIN_DIVISOR = 4
# Rates an FT231X makes exactly (3 MHz / n), fastest first: the candidates of fastest_baud.
FT231X_BAUDS = (3_000_000, 2_000_000, 1_500_000, 1_000_000, 500_000, 250_000, 115_200)

rx_byte_layout = data.StructLayout({"data": 8, "fault": 1})


def uart_margin(divisor: int) -> float:
    """Relative baud error one end may have: the stop bit is sampled 9.5 bits after the start
    edge, which is seen up to 2 clock cycles late (synchronizer, odd half-bit); half of the
    remaining half-bit margin is ours, the other half the far end's."""
    return (0.5 - 2 / divisor) / 9.5 / 2


def uart_divisor(clk_hz: float, baud: int) -> int:
    """Clock cycles per bit for ``baud`` from a ``clk_hz`` clock.

    Raises
    ------
    ValueError
        the nearest divisor is below :data:`MIN_DIVISOR`, or makes a baud off by more than the
        UART tolerance (the message names the error and the nearest rates that work).
    """
    if baud <= 0 or clk_hz <= 0:
        raise ValueError(f"baud={baud!r} and clock {clk_hz!r} Hz must be positive")
    divisor = round(clk_hz / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"baud {baud} is too fast for a {clk_hz / 1e6:g} MHz clock: the UART "
                         f"needs >= {MIN_DIVISOR} clock cycles per bit; use a baud <= "
                         f"{int(clk_hz // MIN_DIVISOR)}")
    error = abs(clk_hz / divisor - baud) / baud
    if error > uart_margin(divisor):
        ok = [b for b in FT231X_BAUDS if _fits(clk_hz, b)]
        raise ValueError(f"baud {baud} from a {clk_hz / 1e6:g} MHz clock: the divisor "
                         f"{clk_hz / baud:.2f} rounds to {divisor}, a {error:.2%} baud error, "
                         f"more than the UART tolerance {uart_margin(divisor):.2%}; choose "
                         f"another baud (e.g. {ok[0] if ok else int(clk_hz // 16)}) or clock")
    return divisor


def _fits(clk_hz: float, baud: int, share: float = 1.0) -> bool:
    divisor = round(clk_hz / baud)
    return divisor >= MIN_DIVISOR and \
        abs(clk_hz / divisor - baud) / baud <= share * uart_margin(divisor)


def fastest_baud(clk_hz: float, bauds=FT231X_BAUDS) -> int:
    """The fastest of ``bauds`` that a ``clk_hz`` clock makes within half the UART tolerance
    (a default with room to spare; :func:`uart_divisor` accepts up to the whole tolerance)."""
    for b in sorted(bauds, reverse=True):
        if _fits(clk_hz, b, share=0.5):
            return b
    raise ValueError(f"no baud of {list(bauds)} works from a {clk_hz / 1e6:g} MHz clock; "
                     f"raise the clock")


def _check_divisor(divisor) -> int:
    if not isinstance(divisor, int) or divisor < MIN_DIVISOR:
        raise ValueError(f"divisor={divisor!r} must be an int >= {MIN_DIVISOR} "
                         f"(clock cycles per bit; see uart_divisor)")
    return divisor


class _UARTComponent(wiring.Component):
    """A component clocked at ``divisor`` clock cycles per UART bit (checked)."""

    def __init__(self, divisor: int):
        self._divisor = _check_divisor(divisor)
        super().__init__()

    @property
    def divisor(self) -> int:
        return self._divisor


class UARTReceiver(_UARTComponent):
    """8N1 receiver, ``divisor`` clock cycles per bit, sampling each bit at its middle.

    Interface attributes
    --------------------
    rx : In(1)                      the serial line (idle high); synchronized inside
    o : Out(stream of rx_byte_layout) received bytes; ``fault`` marks a byte whose stop bit
                                    was low (framing error: wrong baud, noise, break) or a byte
                                    that follows one lost because ``o`` was not taken in time
    error : Out(1)                  one-cycle pulse per framing error or lost byte

    A byte waits on ``o`` until taken; a byte completed while the previous one still waits is
    dropped (the UART cannot be held), and the next byte carries ``fault``.
    """

    rx: In(1, init=1)
    o: Out(stream.Signature(rx_byte_layout))
    error: Out(1)

    def elaborate(self, platform):
        m = Module()
        div = self._divisor
        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1)
        timer = Signal(range(div))
        bit = Signal(range(8))
        shreg = Signal(8)
        lost = Signal()

        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        def emit(fault):
            with m.If(self.o.valid & ~self.o.ready):
                m.d.sync += lost.eq(1)
                m.d.comb += self.error.eq(1)
            with m.Else():
                m.d.sync += [self.o.valid.eq(1), self.o.payload.data.eq(shreg),
                             self.o.payload.fault.eq(fault | lost), lost.eq(0)]

        with m.If(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.FSM(name="rx"):
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += timer.eq(div // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer == 0):
                    m.d.sync += [timer.eq(div - 1), bit.eq(0)]
                    with m.If(rx):                  # a glitch, not a start bit
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer == 0):
                    m.d.sync += [shreg.eq(Cat(shreg[1:], rx)), timer.eq(div - 1),
                                 bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer == 0):
                    with m.If(rx):
                        emit(0)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.comb += self.error.eq(1)
                        emit(1)
                        m.next = "BREAK"
            with m.State("BREAK"):           # after a framing error, wait for the idle level
                with m.If(rx):
                    m.next = "IDLE"
        return m


class UARTTransmitter(_UARTComponent):
    """8N1 transmitter, ``divisor`` clock cycles per bit.

    Interface attributes
    --------------------
    i : In(stream of 8 bits)    bytes to send; taken when the previous byte's stop bit ends
    tx : Out(1)                 the serial line (idle high)
    """

    i: In(stream.Signature(8))
    tx: Out(1, init=1)

    def elaborate(self, platform):
        m = Module()
        div = self._divisor
        shreg = Signal(10, init=1)          # stop bit, 8 data bits, start bit (sent LSB first)
        bits = Signal(range(11))
        timer = Signal(range(div))
        m.d.comb += [self.tx.eq(shreg[0]), self.i.ready.eq(bits == 0)]
        with m.If(bits == 0):
            with m.If(self.i.valid):
                m.d.sync += [shreg.eq(Cat(Const(0, 1), self.i.payload, Const(1, 1))),
                             bits.eq(10), timer.eq(div - 1)]
        with m.Elif(timer == 0):
            m.d.sync += [shreg.eq(Cat(shreg[1:], Const(1, 1))), bits.eq(bits - 1),
                         timer.eq(div - 1)]
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
        return m


class FrameDecoder(wiring.Component):
    """Bytes (``rx_byte_layout``) -> host words: undoes the escapes, assembles little-endian
    words, turns ``END`` into TLAST on the word before it, and delivers damaged frames with a
    wrong checksum word (module docstring).

    Interface attributes
    --------------------
    i : In(stream of rx_byte_layout)
    o : Out(stream of axis_layout)
    damaged : Out(1)        one-cycle pulse when a damaged frame is closed
    """

    i: In(stream.Signature(rx_byte_layout))
    o: Out(stream.Signature(axis_layout))
    damaged: Out(1)

    def elaborate(self, platform):
        m = Module()
        acc = Signal(24)                    # bytes 0..2 of the word being assembled
        nbytes = Signal(2)
        held = Signal(32)                   # the last complete word: TLAST or not is unknown
        has_held = Signal()
        total = Signal(32)                  # sum of the words delivered in this frame
        esc = Signal()
        poison = Signal()
        nonempty = Signal()

        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        def deliver(word, last):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.data.eq(word),
                         self.o.payload.last.eq(last), total.eq(total + word)]

        def reset_frame():
            m.d.sync += [nbytes.eq(0), has_held.eq(0), total.eq(0), esc.eq(0), poison.eq(0),
                         nonempty.eq(0)]

        byte = Signal(8)
        with m.FSM(name="deframe"):
            with m.State("BYTE"):
                m.d.comb += self.i.ready.eq(~self.o.valid)
                with m.If(self.i.valid & ~self.o.valid):
                    d, fault = self.i.payload.data, self.i.payload.fault
                    add = Signal()
                    close = Signal()
                    m.d.comb += byte.eq(d)
                    with m.If(fault):
                        m.d.sync += [poison.eq(1), nonempty.eq(1), esc.eq(0)]
                    with m.Elif(esc):
                        m.d.sync += esc.eq(0)
                        with m.If(d == ESC_END):
                            m.d.comb += [add.eq(1), byte.eq(END)]
                        with m.Elif(d == ESC_ESC):
                            m.d.comb += [add.eq(1), byte.eq(ESC)]
                        with m.Elif(d == END):           # abort
                            m.d.comb += close.eq(1)
                            m.d.sync += poison.eq(1)
                        with m.Else():
                            m.d.sync += [poison.eq(1), nonempty.eq(1)]
                    with m.Elif(d == ESC):
                        m.d.sync += esc.eq(1)
                    with m.Elif(d == END):
                        m.d.comb += close.eq(1)
                    with m.Else():
                        m.d.comb += add.eq(1)
                    with m.If(add):
                        m.d.sync += [nbytes.eq(nbytes + 1), nonempty.eq(1)]
                        with m.Switch(nbytes):
                            for k in range(3):
                                with m.Case(k):
                                    m.d.sync += acc.word_select(k, 8).eq(byte)
                            with m.Case(3):
                                m.d.sync += [held.eq(Cat(acc, byte)), has_held.eq(1)]
                                with m.If(has_held):
                                    deliver(held, 0)
                    with m.If(close):
                        with m.If(~nonempty):
                            reset_frame()                # empty frame (or a bare abort)
                        with m.Elif(~poison & ~esc & (nbytes == 0)):
                            deliver(held, 1)             # nonempty and whole: has_held
                            reset_frame()
                        with m.Else():
                            with m.If(has_held):
                                deliver(held, 0)
                            m.next = "TAIL"
            with m.State("TAIL"):                        # the deliberately wrong checksum
                with m.If(~self.o.valid):
                    m.d.sync += [self.o.valid.eq(1), self.o.payload.data.eq(total + 1),
                                 self.o.payload.last.eq(1)]
                    m.d.comb += self.damaged.eq(1)
                    reset_frame()
                    m.next = "BYTE"
        return m


class FrameEncoder(wiring.Component):
    """Host words -> bytes: 4 bytes per word, least significant first, ``END``/``ESC`` escaped,
    ``END`` after the word that carries TLAST.

    Interface attributes
    --------------------
    i : In(stream of axis_layout)
    o : Out(stream of 8 bits)
    """

    i: In(stream.Signature(axis_layout))
    o: Out(stream.Signature(8))

    def elaborate(self, platform):
        m = Module()
        word = Signal(32)
        last = Signal()
        idx = Signal(2)
        cur = word.word_select(idx, 8)
        special = (cur == END) | (cur == ESC)

        def advance():
            m.d.sync += idx.eq(idx + 1)
            with m.If(idx == 3):
                with m.If(last):
                    m.next = "END"
                with m.Else():
                    m.next = "LOAD"
            with m.Else():
                m.next = "DATA"

        with m.FSM(name="frame"):
            with m.State("LOAD"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += [word.eq(self.i.payload.data), last.eq(self.i.payload.last),
                                 idx.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(Mux(special, ESC, cur))]
                with m.If(self.o.ready):
                    with m.If(special):
                        m.next = "ESC2"
                    with m.Else():
                        advance()
            with m.State("ESC2"):
                m.d.comb += [self.o.valid.eq(1),
                             self.o.payload.eq(Mux(cur == END, ESC_END, ESC_ESC))]
                with m.If(self.o.ready):
                    advance()
            with m.State("END"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(END)]
                with m.If(self.o.ready):
                    m.next = "LOAD"
        return m


class UARTHostBridge(wiring.Component):
    """The fabric's host port over a UART (byte framing in the module docstring).

    Parameters
    ----------
    divisor : clock cycles per bit (:func:`uart_divisor`)
    fifo_depth : received bytes buffered while the host link is busy (it takes no command
        word while it executes a frame); the host sends a command only after the previous
        response, so a few bytes suffice.

    Interface attributes
    --------------------
    rx : In(1), tx : Out(1)         the UART lines (FPGA side: rx in, tx out)
    o_cmd : Out(stream of axis_layout)   command words to the fabric's ``s_axis``
    i_resp : In(stream of axis_layout)   response words from the fabric's ``m_axis``
    fault : Out(1)                  one-cycle pulse per UART framing error, lost byte or
                                    damaged frame (a status LED)
    """

    rx: In(1, init=1)
    tx: Out(1, init=1)
    o_cmd: Out(stream.Signature(axis_layout))
    i_resp: In(stream.Signature(axis_layout))
    fault: Out(1)

    def __init__(self, divisor: int, *, fifo_depth: int = 16):
        self._divisor = _check_divisor(divisor)
        if not isinstance(fifo_depth, int) or fifo_depth < 2:
            raise ValueError(f"fifo_depth={fifo_depth!r} must be an int >= 2")
        self._fifo_depth = fifo_depth
        super().__init__()

    @property
    def divisor(self) -> int:
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        m.submodules.receiver = rx = UARTReceiver(self._divisor)
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=len(rx.o.payload.as_value()),
                                                    depth=self._fifo_depth)
        m.submodules.decoder = dec = FrameDecoder()
        m.submodules.encoder = enc = FrameEncoder()
        m.submodules.transmitter = tx = UARTTransmitter(self._divisor)
        m.d.comb += [rx.rx.eq(self.rx), self.tx.eq(tx.tx),
                     fifo.w_data.eq(rx.o.payload.as_value()), fifo.w_en.eq(rx.o.valid),
                     rx.o.ready.eq(fifo.w_rdy),
                     dec.i.payload.eq(fifo.r_data), dec.i.valid.eq(fifo.r_rdy),
                     fifo.r_en.eq(dec.i.ready),
                     self.fault.eq(rx.error | dec.damaged)]
        wiring.connect(m, dec=dec.o, bridge=wiring.flipped(self.o_cmd))
        wiring.connect(m, bridge=wiring.flipped(self.i_resp), enc=enc.i)
        connect(m, enc=enc.o, tx=tx.i)
        return m
