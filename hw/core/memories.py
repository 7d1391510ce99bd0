"""Core memories built so that Yosys maps them to block RAM (DP16KD on ECP5).

Every memory has one synchronous read port and one write port (simple dual port). A word that
the host writes in parts (32-bit parts of a struct word, one register of a neuron's state, one
coefficient) has one write enable per part. When the parts are of equal width and the memory is
deep enough for block RAM (``neuroloom.contract.memmap.packs_parts``), the word is one memory
whose write port has that granularity, and Yosys packs the parts side by side into the block
RAM's byte lanes (a DP16KD byte is 9 bits: a 16-bit part takes 18 bits, a 24-bit part 27): eight
256 x 16 coefficients fill four 36-bit PDPW16KD instead of eight block RAMs, two 1024 x 24
mode-state registers three 18-bit DP16KD instead of four. Otherwise (unequal parts, or a shallow
memory that maps to LUT RAM) the word is split into narrow sub-memories, one per part. Reading
returns the whole word either way.

Read-write collisions. A DP16KD read at the address its other port writes in the same cycle
returns an undefined word. A memory built with ``read_old=True`` promises the old word there, and
Yosys emulates that in logic (a registered copy of the write data and an address compare on the
read data's path: LUTs and flip-flops). With ``read_old=False`` Yosys gets ``no_rw_check`` and
maps the bare block RAM, and the design must never use a word read in a collision. Simulation
checks that promise: a build inside :func:`poison_collisions` (every Verilator and
Amaranth-simulator build of the core in the project's tests and tools) returns the word with
every bit inverted after a collision, so a design that used it would no longer equal the golden
model. Synthesis and ``neuroloom generate`` build without it. The core uses the default
(``read_old=True``) for now: docs/core.md says why.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager

from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from neuroloom.contract.memmap import packs_parts

__all__ = ["PartedMemory", "poison_collisions"]

_POISON = contextvars.ContextVar("neuroloom_poison_collisions", default=False)


@contextmanager
def poison_collisions():
    """Elaborations inside this block model an undefined collision read as a poisoned word (every
    bit inverted) in memories built with ``read_old=False``. For simulation builds only."""
    token = _POISON.set(True)
    try:
        yield
    finally:
        _POISON.reset(token)


class PartedMemory(wiring.Component):
    """A ``depth`` x ``width`` memory written in parts of ``part_width`` bits.

    Parameters
    ----------
    width : bits per word
    depth : number of words
    part_width : bits per write part (the last part may be narrower)

    Interface attributes
    --------------------
    r_addr, r_en : In; ``r_data`` (Out) is the word at ``r_addr`` one cycle after ``r_en``,
        held while ``r_en`` is low (synchronous, not transparent).
    w_addr, w_data : In; ``w_en`` (In, one bit per part) writes the enabled parts.

    A read at the address written in the same cycle returns the old word if ``read_old``, and an
    undefined word otherwise (see the module's docstring).
    """

    def __init__(self, *, width: int, depth: int, part_width: int, read_old: bool = True):
        if width < 1 or depth < 1 or part_width < 1:
            raise ValueError(f"PartedMemory: width={width!r}, depth={depth!r}, "
                             f"part_width={part_width!r} must be positive")
        self._width, self._depth, self._part_width = width, depth, part_width
        self._parts = -(-width // part_width)
        self._read_old = read_old
        super().__init__({
            "r_addr": In(range(max(depth, 2))), "r_en": In(1), "r_data": Out(width),
            "w_addr": In(range(max(depth, 2))), "w_en": In(self._parts), "w_data": In(width),
        })

    @property
    def parts(self) -> int:
        return self._parts

    @property
    def packed(self) -> bool:
        """One memory with a write granularity of ``part_width``, rather than one sub-memory
        per part (:func:`~neuroloom.contract.memmap.packs_parts`)."""
        return packs_parts(self._width, self._depth, self._part_width)

    def elaborate(self, platform):
        m = Module()
        attrs = {} if self._read_old else {"no_rw_check": 1}
        poison = not self._read_old and _POISON.get()
        P = self._part_width
        # (name, first part, parts): the whole word in one memory written part by part, or one
        # memory per part
        mems = ([("mem", 0, self._parts)] if self.packed else
                [(f"part{p}", p, 1) for p in range(self._parts)])
        for name, p0, n in mems:
            lo, hi = p0 * P, min(self._width, (p0 + n) * P)
            mem = Memory(shape=unsigned(hi - lo), depth=self._depth, init=[], attrs=attrs)
            m.submodules[name] = mem
            rp = mem.read_port()
            wp = mem.write_port(granularity=P if n > 1 else None)
            m.d.comb += [
                rp.addr.eq(self.r_addr), rp.en.eq(self.r_en),
                wp.addr.eq(self.w_addr), wp.en.eq(self.w_en[p0:p0 + n]),
                wp.data.eq(self.w_data[lo:hi]),
            ]
            if poison:
                # the parts written in the cycle a read takes their address return inverted;
                # held with the data while r_en is low
                hit = Signal(n, name=f"collided{'' if n > 1 else p0}")
                with m.If(self.r_en):
                    m.d.sync += hit.eq(self.w_en[p0:p0 + n]
                                       & (self.r_addr == self.w_addr).replicate(n))
                mask = Cat(*(hit[i].replicate(min(hi, lo + (i + 1) * P) - (lo + i * P))
                             for i in range(n)))
                m.d.comb += self.r_data[lo:hi].eq(rp.data ^ mask)
            else:
                m.d.comb += self.r_data[lo:hi].eq(rp.data)
        return m
