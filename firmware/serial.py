"""The serial transport: the host link's frames over a board's USB-UART (pyserial).

:class:`SerialLink` is a framed link (``exchange(words) -> words``, like
:class:`neuroloom.sim.transports.ModelLink`) over a serial port, speaking the byte framing of
the board's UART bridge (``docs/hostlink.md``, "Host frames over a UART"): 32-bit words as 4
bytes least significant first, ``END`` (0xC0) after a frame's last word, ``END``/``ESC`` in the
data escaped as in SLIP, and ``ESC END`` (abort) before every frame sent, so a frame left
half-sent by a lost byte is closed as damaged instead of merging with the next one.

:class:`SerialTransport` is the driver's transport over it (registered as ``serial``)::

    drv = Driver(open_transport("serial", port="/dev/ttyUSB0", baud=3_000_000))

A command answered by nothing for ``timeout`` seconds, or only by damaged or foreign frames,
is a :class:`DriverError` naming what was seen; the next command starts clean (stale answers of
an earlier command are recognised by their sequence number and dropped). Nothing waits forever.
"""

from __future__ import annotations

import time

import serial

from neuroloom.contract.hostproto import (
    OUTPUT,
    RESPONSE,
    Cmd,
    Frame,
    FrameError,
    FrameHeader,
    checksum,
    decode_frames,
    encode_frame,
    from_word,
    parse_status,
)
from neuroloom.contract.transport import DriverError

from .transports import FramedTransport

__all__ = ["SerialLink", "SerialTransport", "encode_bytes", "FrameReader", "DEFAULT_BAUD",
           "END", "ESC", "ESC_END", "ESC_ESC"]

END, ESC, ESC_END, ESC_ESC = 0xC0, 0xDB, 0xDC, 0xDD
ABORT = bytes([ESC, END])
DEFAULT_BAUD = 3_000_000          # a board build's UART unless --baud: its own clock makes it
_ESCAPED = {END: bytes([ESC, ESC_END]), ESC: bytes([ESC, ESC_ESC])}


def encode_bytes(words) -> bytes:
    """The bytes of one command frame: abort, escaped little-endian words, ``END``."""
    out = bytearray(ABORT)
    for w in words:
        for b in int(w).to_bytes(4, "little"):
            out += _ESCAPED.get(b, bytes([b]))
    out.append(END)
    return bytes(out)


class FrameReader:
    """Incremental decoder of the bytes a board sends: ``feed(data)`` returns the frames
    completed by ``data``, each a word list, or a string saying why a frame was damaged."""

    def __init__(self):
        self._cur = bytearray()
        self._esc = False
        self._bad = ""

    def feed(self, data: bytes) -> list:
        frames = []
        for b in data:
            if self._esc:
                self._esc = False
                if b == ESC_END:
                    self._cur.append(END)
                elif b == ESC_ESC:
                    self._cur.append(ESC)
                else:
                    self._bad = self._bad or f"bad escape 0x{b:02x}"
                    if b == END:
                        frames.append(self._close())
            elif b == ESC:
                self._esc = True
            elif b == END:
                if self._cur or self._bad:
                    frames.append(self._close())
            else:
                self._cur.append(b)
        return frames

    def _close(self):
        cur, bad = bytes(self._cur), self._bad
        self._cur, self._bad = bytearray(), ""
        if bad:
            return bad
        if len(cur) % 4:
            return f"a frame of {len(cur)} bytes (not whole words)"
        return [int.from_bytes(cur[i:i + 4], "little") for i in range(0, len(cur), 4)]


def _describe(words) -> str:
    try:
        return decode_frames(words)[0].describe()
    except (FrameError, IndexError):
        return f"{len(words)} words that are not a frame"


class SerialLink:
    """A framed link to a board's host link over a serial port.

    Parameters
    ----------
    port : the serial device (``/dev/ttyUSB0``, ``COM3``) or a pyserial URL
    baud : the UART rate the board was built with
    timeout : seconds without a byte from the board before a command fails

    Raises
    ------
    DriverError
        the port cannot be opened (names it and the fix).
    """

    def __init__(self, port: str, baud: int = DEFAULT_BAUD, timeout: float = 2.0):
        if timeout <= 0:
            raise ValueError(f"timeout={timeout!r} must be > 0 seconds")
        self.port_name, self.baud, self.timeout = port, int(baud), float(timeout)
        try:
            self.port = serial.serial_for_url(port, baudrate=self.baud, timeout=0.05,
                                              write_timeout=max(self.timeout, 1.0))
        except (serial.SerialException, ValueError, OSError) as e:
            raise DriverError(f"cannot open serial port {port!r}: {e}; is the board plugged "
                              f"in (ls /dev/ttyUSB*) and the port free?") from None
        self.frames_sent = 0
        #: the board's last STATUS answer (:meth:`status`), None before one
        self.board_status: dict | None = None

    def status(self) -> dict:
        """Ask the board for its STATUS: ``{"mesh_w", "mesh_h", "step", "overrun"}``
        (:func:`~neuroloom.contract.hostproto.parse_status`), kept in :attr:`board_status`.

        Raises
        ------
        DriverError
            nothing answers within the timeout, or the answer is not a NeuroLoom fabric's.
        """
        frames = decode_frames(self.exchange(encode_frame(Cmd.STATUS, [], seq=0)))
        resp = frames[-1]
        try:
            if resp.is_error or resp.opcode != Cmd.STATUS | RESPONSE:
                raise FrameError(f"STATUS answered with {resp.describe()}")
            self.board_status = parse_status(resp.payload)
        except FrameError as e:
            raise DriverError(f"the device on {self.port_name} is not a NeuroLoom board: "
                              f"{e}") from None
        return self.board_status

    def exchange(self, words: list[int]) -> list[int]:
        """Send one command frame; the words of its OUTPUT frames and its response frame."""
        words = [int(w) & 0xFFFFFFFF for w in words]
        if len(words) < 2:
            raise ValueError("a command frame has a header and a checksum word at least")
        head = from_word(FrameHeader, words[0])
        seq = head["seq"]
        reader = FrameReader()
        try:
            self.port.reset_input_buffer()         # bytes of an earlier, failed command
            self.port.write(encode_bytes(words))
            self.port.flush()
        except (serial.SerialException, OSError) as e:
            raise DriverError(f"serial port {self.port_name}: write failed: {e}") from None
        self.frames_sent += 1
        outputs: list[int] = []
        seen: list[str] = []
        last_byte = time.monotonic()
        while True:
            try:
                data = self.port.read(max(1, self.port.in_waiting))
            except (serial.SerialException, OSError) as e:
                raise DriverError(f"serial port {self.port_name}: read failed: {e}") from None
            now = time.monotonic()
            if data:
                last_byte = now
            elif now - last_byte > self.timeout:
                break
            for frame in reader.feed(data):
                if isinstance(frame, str) or len(frame) < 2 or checksum(frame[:-1]) != frame[-1]:
                    seen.append(frame if isinstance(frame, str) else "a frame with a bad "
                                "checksum")
                    continue
                h = from_word(FrameHeader, frame[0])
                f = Frame(h["opcode"], h["seq"])
                if f.opcode == OUTPUT:
                    outputs += frame
                elif f.seq == seq:
                    return outputs + frame
                else:                               # the answer to an earlier command
                    seen.append(_describe(frame))
                    outputs = []
        op = head["opcode"]
        what = f"; it sent only: {', '.join(seen[:4])}" if seen else ""
        raise DriverError(f"no answer from the board on {self.port_name} to command 0x{op:02x} "
                          f"(seq {seq}) within {self.timeout:g} s{what}; check that the board is "
                          f"programmed, the port, and the baud ({self.baud}, --baud)")

    def close(self) -> None:
        self.port.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SerialTransport(FramedTransport):
    """The driver's transport to a board over its USB-UART (``serial`` in the registry).

    Parameters: those of :class:`SerialLink`.
    """

    def __init__(self, port: str, baud: int = DEFAULT_BAUD, timeout: float = 2.0):
        super().__init__(SerialLink(port, baud, timeout))

    def close(self) -> None:
        self.link.close()
