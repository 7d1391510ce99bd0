"""How Yosys (``synth_ecp5``'s ``memory_libmap``) maps a memory onto ECP5 RAM primitives,
repeated in Python: the gateware uses it to decide how a core memory is built
(``hw/core/memories.py``: packed or split, :func:`packs_parts`) and the resource model to count
block and LUT RAM (``neuroloom.firmware.resources``), so both stand on one rule. Checked
against Yosys' own choices in ``tests/test_resources.py`` and ``tests/test_memories.py``.
"""

from __future__ import annotations

import dataclasses

__all__ = ["MemoryMap", "map_memory", "packs_parts"]


#: Yosys memory_libmap's weights (passes/memory/memory_libmap.cc)
_FACTOR_MUX = _FACTOR_DEMUX = 0.5
_FACTOR_EMU = 2
#: (name, cost, address bits, data widths, allowed base-width indices, emulation score):
#: DPR16X4 is asynchronous (the read register is free, one point for the unshared read port);
#: a block RAM's non-transparent read port costs read-first + transparency emulation (3 + 3)
#: and the unshared read port (1). PDPW16KD writes 36 bits only: base widths 9 and up.
_RAMS = (
    ("TRELLIS_DPR16X4", 4, 4, (4,), (0,), 1),
    ("DP16KD", 128, 14, (1, 2, 4, 9, 18), (0, 1, 2, 3, 4), 7),
    ("PDPW16KD", 128, 14, (1, 2, 4, 9, 18, 36), (3, 4, 5), 7),
)
_BYTE = {"TRELLIS_DPR16X4": 0, "DP16KD": 9, "PDPW16KD": 9}


@dataclasses.dataclass(frozen=True)
class MemoryMap:
    """How Yosys maps one ``depth`` x ``width`` memory: ``primitive`` (``TRELLIS_DPR16X4``,
    ``DP16KD``, ``PDPW16KD`` -- built from a DP16KD --, or ``FF``), ``units`` of it, the
    ``cost`` Yosys compared."""
    primitive: str
    units: int
    cost: float

    @property
    def block(self) -> bool:
        return self.primitive in ("DP16KD", "PDPW16KD")


def map_memory(depth: int, width: int, granularity: int | None = None) -> MemoryMap:
    """The primitive and unit count Yosys picks for a ``depth`` x ``width`` memory with one
    synchronous, non-transparent read port (with enable) and one write port with one enable
    per ``granularity`` bits (default: one for the word; ``PartedMemory``, the core's FIFOs):
    the cheapest configuration by memory_libmap's cost, ties to the first (LUT RAM, DP16KD,
    PDPW16KD), the flip-flop fallback (``width * depth``) only when strictly cheaper. A block
    RAM holds each enable's bits in whole 9-bit bytes (a 16-bit part takes 18 bits)."""
    if depth < 1 or width < 1:
        raise ValueError(f"memory {depth!r} x {width!r}: depth and width must be positive")
    gran = width if granularity is None else granularity
    if gran < 1 or width % gran:
        raise ValueError(f"memory {depth!r} x {width!r}: write granularity {granularity!r} "
                         "must divide the width")
    best = MemoryMap("FF", 0, float(width * depth))
    best_int = width * depth                   # Yosys keeps the fallback's cost as an int
    for name, unit_cost, abits, dbits, bases, emu in _RAMS:
        cand = None
        for b in bases:
            unit = dbits[b]
            byte = _BYTE[name]
            eb = unit if byte == 0 or byte > unit else byte
            swizzle = width // gran * (-(-gran // eb) * eb)
            mult_a = -(-depth // (1 << (abits - b)))
            units = -(-(mult_a * swizzle) // unit)
            cost = (unit_cost * units + _FACTOR_MUX * (mult_a - 1) * width
                    + _FACTOR_DEMUX * (mult_a if mult_a != 1 else 0) + _FACTOR_EMU * emu)
            if cand is None or int(cost) < int(cand.cost):
                cand = MemoryMap(name, units, cost)
        if cand.cost < best_int:
            best, best_int = cand, int(cand.cost)
    return best


def packs_parts(width: int, depth: int, part_width: int) -> bool:
    """Whether a core memory of ``depth`` words of ``width`` bits, written in parts of
    ``part_width`` bits, is built as one memory written with that granularity -- Yosys lays the
    parts side by side into a block RAM's 9-bit byte lanes, e.g. eight 256 x 16 coefficients in
    four 36-bit PDPW16KD instead of eight blocks -- rather than as one sub-memory per part.

    Packed when the word has several parts of equal width and each part alone would map to
    block RAM: a part that maps to LUT RAM stays split, since packing saves nothing there and
    tips Yosys' cost towards block RAM (a 64-deep word of eight 16-bit parts costs it less as
    four PDPW16KD than as LUT RAM; split, each 64 x 16 part stays LUT RAM)."""
    parts = -(-width // part_width)
    return parts > 1 and width % part_width == 0 and map_memory(depth, part_width).block
