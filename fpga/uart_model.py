"""Reference model of the UART bridge's byte framing, and a board on a pseudo-terminal.

* :class:`BridgeModel` -- what :class:`neuroloom.fpga.uart.UARTHostBridge` does with bytes, in
  Python: host bytes -> (word, TLAST) deliveries to the host link (damaged frames closed with a
  wrong checksum word), and response words -> bytes.
* :class:`PtyBoard` -- a pseudo-terminal whose far end is a "board": a thread that decodes the
  bytes written to the pty with a :class:`BridgeModel`, hands the words to a framed backend
  (``process(words, lasts) -> words``, e.g. :class:`neuroloom.sim.hostlink_model.HostLinkModel`
  or a bit-level UART into the RTL) and writes the encoded answers back. The unmodified serial
  transport opens ``PtyBoard.port`` with pyserial; ``mangle`` damages the byte stream on the way
  in, to test resynchronisation.
"""

from __future__ import annotations

import os
import select
import threading
import tty

from neuroloom.contract.hostproto import FrameHeader, from_word

from .uart import END, ESC, ESC_END, ESC_ESC

__all__ = ["BridgeModel", "PtyBoard", "split_frames"]


def split_frames(words) -> list[tuple[list[int], list[bool]]]:
    """Response words -> (words, lasts), frame boundaries from the length fields."""
    words, lasts, i = list(words), [], 0
    while i < len(words):
        end = min(i + from_word(FrameHeader, words[i])["length"] + 1, len(words) - 1)
        lasts += [False] * (end - i) + [True]
        i = end + 1
    return words, lasts


class BridgeModel:
    """The byte framing of the UART bridge (``fpga/uart.py`` module docstring)."""

    def __init__(self):
        self._acc: list[int] = []
        self._held: int | None = None
        self._total = 0
        self._esc = self._poison = self._nonempty = False
        self.damaged = 0

    def feed(self, data: bytes, faults=()) -> tuple[list[int], list[bool]]:
        """Received bytes (``faults``: indices received with a UART fault) -> the words and
        TLAST flags the bridge delivers to the host link."""
        words: list[int] = []
        lasts: list[bool] = []

        def deliver(w, last):
            words.append(w & 0xFFFFFFFF)
            lasts.append(last)
            self._total = (self._total + w) & 0xFFFFFFFF

        for i, b in enumerate(data):
            close = False
            add = None
            if i in faults:
                self._poison = self._nonempty = True
                self._esc = False
            elif self._esc:
                self._esc = False
                if b in (ESC_END, ESC_ESC):
                    add = END if b == ESC_END else ESC
                elif b == END:
                    self._poison = close = True
                else:
                    self._poison = self._nonempty = True
            elif b == ESC:
                self._esc = True
            elif b == END:
                close = True
            else:
                add = b
            if add is not None:
                self._nonempty = True
                self._acc.append(add)
                if len(self._acc) == 4:
                    if self._held is not None:
                        deliver(self._held, False)
                    self._held = int.from_bytes(bytes(self._acc), "little")
                    self._acc = []
            if close:
                if not self._nonempty:
                    pass
                elif not self._poison and not self._acc:
                    deliver(self._held, True)
                else:
                    if self._held is not None:
                        deliver(self._held, False)
                    words.append((self._total + 1) & 0xFFFFFFFF)
                    lasts.append(True)
                    self.damaged += 1
                self._acc, self._held, self._total = [], None, 0
                self._esc = self._poison = self._nonempty = False
        return words, lasts

    @staticmethod
    def encode(words, lasts) -> bytes:
        """Response words -> the bytes the bridge sends."""
        out = bytearray()
        for w, last in zip(words, lasts):
            for b in int(w).to_bytes(4, "little"):
                out += bytes([ESC, ESC_END if b == END else ESC_ESC]) if b in (END, ESC) \
                    else bytes([b])
            if last:
                out.append(END)
        return bytes(out)


class PtyBoard:
    """A board behind a pseudo-terminal (module docstring).

    Parameters
    ----------
    backend : object with ``process(words, lasts) -> response words``
    mangle : optional ``f(index, byte) -> bytes`` applied to every received byte (an int;
        ``index`` counts from 0 over the whole session): ``b""`` loses it, other bytes damage it
    """

    def __init__(self, backend, mangle=None):
        self.backend = backend
        self.mangle = mangle
        self.model = BridgeModel()
        self.received = 0
        self.error: BaseException | None = None
        self._words: list[int] = []
        self._lasts: list[bool] = []
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="pty-board", daemon=True)
        self._thread.start()

    def _serve(self):
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([self._master], [], [], 0.05)
                if not ready:
                    continue
                try:
                    data = os.read(self._master, 4096)
                except OSError:
                    return
                base, self.received = self.received, self.received + len(data)
                if self.mangle is not None:
                    data = b"".join(self.mangle(base + i, b) for i, b in enumerate(data))
                words, lasts = self.model.feed(data)
                self._words += words
                self._lasts += lasts
                if True in self._lasts:             # whole frames only: the backend keeps
                    n = len(self._lasts) - self._lasts[::-1].index(True)     # no partial one
                    words, lasts = self._words[:n], self._lasts[:n]
                    self._words, self._lasts = self._words[n:], self._lasts[n:]
                    answer = self.backend.process(words, lasts)
                    out = self.model.encode(*split_frames(answer))
                    while out:
                        n = os.write(self._master, out)
                        out = out[n:]
        except BaseException as e:         # reported by close(), not lost in the thread
            self.error = e

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.error is not None:
            raise self.error

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
