"""Clock-domain crossing: an asynchronous FIFO as a stream link between two clock domains.

:class:`CdcLink` carries stream payloads (flits) from a writer clock domain to a reader clock
domain. It is the FIFO of Cummings' "style #2" (as :class:`amaranth.lib.fifo.AsyncFIFO`): each
side counts its transfers in a binary pointer one bit wider than the address and publishes it
Gray-coded in a register; the other side brings it in through a chain of ``sync_stages``
flip-flops and decodes it. Full and empty are computed from a side's own pointer and the
synchronized copy of the other's, so they are pessimistic and never wrong: the writer can only
see fewer free slots than there are, the reader fewer flits. The storage is LUT RAM written in
the writer's domain and read asynchronously at the reader's pointer (a slot is never rewritten
until the reader's pointer has come back across).

It is our own FIFO rather than ``AsyncFIFO`` because the proof (``tests/formal/
test_cdc_formal.py``) must be able to break it on purpose: ``sync_stages=1`` and ``gray=False``
are fault injections, not options for hardware. Under ``platform == "formal"`` every
synchronizer models what a real flip-flop sampling an asynchronous signal may do:

* *uncertain capture*: the bits the source changed at its latest update may be captured with
  their new or their old value (independently per bit), and a value captured old is captured
  new at the next edge at the latest (a one-cycle delay per bit);
* *metastable fan-out*: in the cycle after such a capture the first flip-flop may be
  metastable; every load reading it may see either value of those bits, independently. The
  second flip-flop is the only load of the first in a correct chain; with ``sync_stages=1`` the
  full/empty logic is read by two loads (the stream handshake and the pointer update), which
  may then disagree.

With Gray pointers a source update changes one bit, so any captured value is the old or the new
pointer; with binary pointers several bits change at once and a mixture may be captured.

Stream rules: ``o.valid`` and ``i.ready`` come from flip-flops through the empty / full compare
only (no path from ``ready`` to ``valid`` or back); ``o.payload`` is the slot at the reader's
pointer, stable until the transfer.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["CdcLink", "gray_decode", "gray_encode"]


def gray_encode(value):
    """Gray code of an Amaranth value (same width)."""
    return value ^ value[1:]


def gray_decode(gray):
    """Binary value of a Gray-coded Amaranth value (same width)."""
    bits = [gray[-1]]
    for i in reversed(range(len(gray) - 1)):
        bits.append(bits[-1] ^ gray[i])
    return Cat(*reversed(bits))


class CdcLink(wiring.Component):
    """Asynchronous FIFO with stream ports (see the module docstring).

    Parameters
    ----------
    shape : shape-castable
        Payload shape (a flit layout).
    depth : int
        Slots, a power of two >= 2.
    w_domain, r_domain : str
        Clock domains of ``i`` (writer) and ``o`` (reader).
    sync_stages : int
        Flip-flops per synchronizer, >= 2 for hardware; 1 only to inject a fault in proofs.
    gray : bool
        Gray-coded pointers cross the domains; ``False`` (binary) only to inject a fault.

    Interface attributes
    --------------------
    i : In(stream.Signature(shape)), in ``w_domain``
    o : Out(stream.Signature(shape)), in ``r_domain``
    holding : Out(1)
        Some payload is inside (writer's pointer != reader's pointer). It mixes both domains:
        for simulation monitors only, never for logic.

    Raises
    ------
    ValueError
        If ``depth`` is not a power of two >= 2, ``sync_stages`` < 1 or the domains are equal.
    """

    def __init__(self, shape, depth: int = 8, *, w_domain: str, r_domain: str,
                 sync_stages: int = 2, gray: bool = True):
        if not isinstance(depth, int) or depth < 2 or depth & (depth - 1):
            raise ValueError(f"CdcLink depth={depth!r} must be a power of two >= 2")
        if not isinstance(sync_stages, int) or sync_stages < 1:
            raise ValueError(f"CdcLink sync_stages={sync_stages!r} must be an integer >= 1")
        if w_domain == r_domain:
            raise ValueError(f"CdcLink needs two clock domains, got {w_domain!r} twice")
        self._shape = shape
        self._depth = depth
        self._w_domain = w_domain
        self._r_domain = r_domain
        self._stages = sync_stages
        self._gray = gray
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape)),
                          "holding": Out(1)})

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def sync_stages(self) -> int:
        return self._stages

    def _encode(self, value):
        return gray_encode(value) if self._gray else value

    def _decode(self, value):
        return gray_decode(value) if self._gray else value

    def _synchronize(self, m, src, src_domain, dst_domain, name, formal, loads):
        """``src`` (a register of ``src_domain``) through ``sync_stages`` flip-flops of
        ``dst_domain``; returns ``loads`` views of the last one (identical except in the formal
        model of a one-stage chain, see the module docstring)."""
        width = len(src)
        stages = [Signal(width, name=f"{name}_s{k}") for k in range(self._stages)]
        if not formal:
            m.d[dst_domain] += stages[0].eq(src)
            for a, b in zip(stages, stages[1:]):
                m.d[dst_domain] += b.eq(a)
            return [stages[-1]] * loads

        from amaranth.asserts import AnySeq

        # ``old``: the source's value before its latest update (those bits may be captured late)
        prev = Signal(width, name=f"{name}_prev")
        keep = Signal(width, name=f"{name}_keep")
        old = Signal(width, name=f"{name}_old")
        m.d.comb += old.eq(Mux(prev != src, prev, keep))
        m.d[src_domain] += [prev.eq(src), keep.eq(old)]
        late = Signal(name=f"{name}_late")          # the previous capture was late: not again
        meta = Signal(width, name=f"{name}_meta")   # bits the first flip-flop may hold metastable
        unsure = Signal(width, name=f"{name}_unsure")
        m.d.comb += unsure.eq(Mux(late | (stages[0] == src), 0, src ^ old))
        pick = AnySeq(width)
        captured = Signal(width, name=f"{name}_captured")
        m.d.comb += captured.eq((src & ~(unsure & ~pick)) | (old & unsure & ~pick))
        m.d[dst_domain] += [stages[0].eq(captured), late.eq(captured != src), meta.eq(unsure)]

        def view(k):
            v = Signal(width, name=f"{name}_view{k}")
            m.d.comb += v.eq(stages[0] ^ (meta & AnySeq(width)))
            return v

        if self._stages == 1:
            return [view(k) for k in range(loads)]
        m.d[dst_domain] += stages[1].eq(view(0))
        for a, b in zip(stages[1:], stages[2:]):
            m.d[dst_domain] += b.eq(a)
        return [stages[-1]] * loads

    def elaborate(self, platform):
        m = Module()
        formal = platform == "formal"
        wd, rd = self._w_domain, self._r_domain
        abits = (self._depth - 1).bit_length()
        pbits = abits + 1

        w_bin = Signal(pbits)                     # writes so far (mod 2 * depth)
        w_pub = Signal(pbits)                     # w_bin as it crosses (Gray), a register
        r_bin = Signal(pbits)
        r_pub = Signal(pbits)

        r_seen = self._synchronize(m, r_pub, rd, wd, "rptr", formal, 2)   # into the writer
        w_seen = self._synchronize(m, w_pub, wd, rd, "wptr", formal, 2)   # into the reader

        def full(seen):
            return (w_bin - self._decode(seen))[:pbits] == self._depth

        def empty(seen):
            return self._decode(seen) == r_bin

        w_do, r_do = Signal(), Signal()
        # load 0 drives the handshake the neighbour sees, load 1 the pointer update
        m.d.comb += [
            self.i.ready.eq(~full(r_seen[0])),
            w_do.eq(self.i.valid & ~full(r_seen[1])),
            self.o.valid.eq(~empty(w_seen[0])),
            r_do.eq(self.o.ready & ~empty(w_seen[1])),
        ]
        w_next, r_next = Signal(pbits), Signal(pbits)
        m.d.comb += [w_next.eq(w_bin + w_do), r_next.eq(r_bin + r_do)]
        m.d[wd] += [w_bin.eq(w_next), w_pub.eq(self._encode(w_next))]
        m.d[rd] += [r_bin.eq(r_next), r_pub.eq(self._encode(r_next))]

        m.submodules.storage = storage = Memory(shape=self._shape, depth=self._depth, init=[])
        wp = storage.write_port(domain=wd)
        rp = storage.read_port(domain="comb")
        m.d.comb += [
            wp.addr.eq(w_bin[:abits]), wp.data.eq(self.i.payload), wp.en.eq(w_do),
            rp.addr.eq(r_bin[:abits]), self.o.payload.eq(rp.data),
            self.holding.eq(w_bin != r_bin),
        ]
        return m
