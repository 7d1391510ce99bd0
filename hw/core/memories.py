"""Core memories built so that Yosys maps them to block RAM (DP16KD on ECP5).

Every memory has one synchronous read port and one write port (simple dual port). A word that
the host writes in parts (32-bit parts of a struct word, one register of a neuron's state, one
coefficient) is split into narrow sub-memories, one per part, each with its own write enable;
reading returns the whole word.
"""

from __future__ import annotations

from amaranth.hdl import Module, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["PartedMemory"]


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
    """

    def __init__(self, *, width: int, depth: int, part_width: int):
        if width < 1 or depth < 1 or part_width < 1:
            raise ValueError(f"PartedMemory: width={width!r}, depth={depth!r}, "
                             f"part_width={part_width!r} must be positive")
        self._width, self._depth, self._part_width = width, depth, part_width
        self._parts = -(-width // part_width)
        super().__init__({
            "r_addr": In(range(max(depth, 2))), "r_en": In(1), "r_data": Out(width),
            "w_addr": In(range(max(depth, 2))), "w_en": In(self._parts), "w_data": In(width),
        })

    @property
    def parts(self) -> int:
        return self._parts

    def elaborate(self, platform):
        m = Module()
        for p in range(self._parts):
            lo = p * self._part_width
            hi = min(self._width, lo + self._part_width)
            mem = Memory(shape=unsigned(hi - lo), depth=self._depth, init=[])
            m.submodules[f"part{p}"] = mem
            rp = mem.read_port()
            wp = mem.write_port()
            m.d.comb += [
                rp.addr.eq(self.r_addr), rp.en.eq(self.r_en), self.r_data[lo:hi].eq(rp.data),
                wp.addr.eq(self.w_addr), wp.en.eq(self.w_en[p]), wp.data.eq(self.w_data[lo:hi]),
            ]
        return m
