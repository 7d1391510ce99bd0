"""Floorplanning a fabric for nextpnr-ecp5: each core's block RAMs and multipliers pinned near
its own part of the die.

A fabric of several default cores uses most of the part's hard blocks (a 2x2: 125 of 208
DP16KD, 96 of 156 MULT18X18D) and nextpnr's analytic placer, left alone, spreads each core's
blocks over the whole die's block-RAM and DSP rows, pulling the core's logic apart with them
(docs/core.md, "The 2x2 fabric"). YoWASP's nextpnr has no Python for region constraints, but it
honours a cell's ``BEL`` attribute: :class:`CoreFloorplan` gives every DP16KD and MULT18X18D of
core ``(x, y)`` a site in that core's share of the die -- the die cut into ``mesh_w`` x
``mesh_h`` rectangles, mesh x left to right, mesh y top to bottom -- by one of two rules:
``centre``, the free site nearest the rectangle's centre, the cores in turn, so none is left
with only the far ones; ``spread``, the core's blocks spread evenly over its rectangle's sites
(fewer blocks side by side in a row, whose input wires router2 found the most congested). The
rest (logic, the host link's buffer) is left to the placer, which now sees each core's blocks
as anchors in one place. On the 2x2 this shortens placement and its wire length a lot, but
router2 has not yet converged on the pinned placements (docs/core.md, "The 2x2 fabric, packed
and floorplanned"). :func:`neuroloom.fpga.synth.synthesize` applies it between Yosys and
nextpnr (``floorplan=``); ``bench/fabric_synth.py --floorplan`` measures it.

The sites are those of the LFE5U-85F / LFE5UM5G-85F die, read from nextpnr-ecp5 0.11's placement
of a design that fills every DP16KD and MULT18X18D (``bench/hard_bels.py`` places it again and
compares): block RAM in four rows (y 22, 46, 70, 82) of 52 sites, multipliers in three rows
(y 10, 34, 58) of 52.
"""

from __future__ import annotations

import dataclasses
import re

__all__ = ["CoreFloorplan", "FloorplanError", "hard_bels"]

#: x of the 52 block-RAM sites of a row (four per group of nine columns: EBR0..EBR3)
_EBR_X = (4, 6, 8, 10, 13, 15, 17, 19, 22, 24, 26, 28, 31, 33, 35, 37, 40, 42, 44, 46, 49, 51,
          53, 55, 58, 60, 62, 64, 69, 71, 73, 75, 78, 80, 82, 84, 87, 89, 91, 93, 96, 98, 100,
          102, 105, 107, 109, 111, 114, 116, 118, 120)
_EBR_Y = (22, 46, 70, 82)
#: x of the 52 multiplier sites of a row (MULT18_0, _1, _4, _5 per group)
_MULT_X = (4, 5, 8, 9, 13, 14, 17, 18, 22, 23, 26, 27, 31, 32, 35, 36, 40, 41, 44, 45, 49, 50,
           53, 54, 58, 59, 62, 63, 69, 70, 73, 74, 78, 79, 82, 83, 87, 88, 91, 92, 96, 97, 100,
           101, 105, 106, 109, 110, 114, 115, 118, 119)
_MULT_Y = (10, 34, 58)
_MULT_SLOT = (0, 1, 4, 5)

#: parts whose die the table describes (nextpnr-ecp5 ``--85k`` and ``--um5g-85k``)
_DEVICES = ("85k", "um5g-85k")
#: the die's tile grid (X 0..125, Y 0..94, the I/O ring on its edge): a core's share of the die
#: is a rectangle of it, since its logic spreads over the whole rectangle, not just the rows of
#: hard blocks
_DIE = (126, 95)

_CORE = re.compile(r"(?:^|\.)core_(\d+)_(\d+)\.")


class FloorplanError(ValueError):
    """A floorplan that cannot be made: an unknown die, more blocks than sites."""


def hard_bels(device: str = "85k") -> dict[str, list[tuple[int, int, str]]]:
    """Every DP16KD and MULT18X18D site of the die as ``(x, y, bel name)``, by cell type."""
    if device not in _DEVICES:
        raise FloorplanError(f"no hard-block site table for nextpnr device {device!r} "
                             f"(known: {', '.join(_DEVICES)}); place without a floorplan")
    ebr = [(x, y, f"X{x}/Y{y}/EBR{i % 4}") for y in _EBR_Y for i, x in enumerate(_EBR_X)]
    mult = [(x, y, f"X{x}/Y{y}/MULT18_{_MULT_SLOT[i % 4]}") for y in _MULT_Y
            for i, x in enumerate(_MULT_X)]
    return {"DP16KD": ebr, "MULT18X18D": mult}


@dataclasses.dataclass(frozen=True)
class CoreFloorplan:
    """Pin each core's DP16KD and MULT18X18D in its ``1 / (mesh_w * mesh_h)`` of the die. Cells
    are found by their Yosys names (``...core_X_Y....``).

    ``rule``: ``"centre"`` (the free sites nearest the rectangle's centre, cores in turn) or
    ``"spread"`` (the core's blocks of each type spread evenly over the sites inside its
    rectangle, in name order over the sites sorted by row then column: a memory's blocks stay
    side by side, and the rows' input wires are shared by fewer blocks at once)."""

    mesh_w: int
    mesh_h: int
    device: str = "85k"
    rule: str = "centre"

    #: bumped when a placement rule changes (part of the synthesis cache key)
    VERSION = 1
    RULES = ("centre", "spread")

    def __post_init__(self):
        if self.mesh_w < 1 or self.mesh_h < 1:
            raise FloorplanError(f"mesh {self.mesh_w}x{self.mesh_h}: both sides must be >= 1")
        if self.rule not in self.RULES:
            raise FloorplanError(f"unknown floorplan rule {self.rule!r} "
                                 f"(known: {', '.join(self.RULES)})")
        hard_bels(self.device)

    def key(self) -> dict:
        """What the pins depend on besides the netlist (for a cache key)."""
        key = {"floorplan": "cores", "version": self.VERSION,
               "mesh": [self.mesh_w, self.mesh_h], "device": self.device}
        if self.rule != "centre":                # (the keys of earlier centre runs stay)
            key["rule"] = self.rule
        return key

    def centre(self, x: int, y: int) -> tuple[float, float]:
        """The centre of core ``(x, y)``'s rectangle of the die (tile coordinates)."""
        w, h = _DIE
        return (x + 0.5) * w / self.mesh_w, (y + 0.5) * h / self.mesh_h

    def inside(self, x: int, y: int, site: tuple[int, int, str]) -> bool:
        """Whether ``site`` lies in core ``(x, y)``'s rectangle of the die."""
        w, h = _DIE
        return (x * w / self.mesh_w <= site[0] < (x + 1) * w / self.mesh_w
                and y * h / self.mesh_h <= site[1] < (y + 1) * h / self.mesh_h)

    def pins(self, cells: dict[str, str]) -> dict[str, str]:
        """``{cell name: BEL}`` for the cores' hard blocks among ``cells`` (``{name: type}``,
        e.g. a Yosys JSON module's cells); other cells are not pinned."""
        sites = hard_bels(self.device)
        pins = {}
        for kind, all_sites in sites.items():
            by_core: dict[tuple[int, int], list[str]] = {}
            for name, ctype in cells.items():
                m = _CORE.search(name)
                if ctype == kind and m:
                    core = (int(m.group(1)), int(m.group(2)))
                    if not (core[0] < self.mesh_w and core[1] < self.mesh_h):
                        raise FloorplanError(f"cell {name!r} belongs to core {core}, outside "
                                             f"the {self.mesh_w}x{self.mesh_h} floorplan")
                    by_core.setdefault(core, []).append(name)
            if not by_core:
                continue
            need = sum(len(v) for v in by_core.values())
            if need > len(all_sites):
                raise FloorplanError(f"the cores have {need} {kind} cells, the die "
                                     f"{len(all_sites)} sites")
            if self.rule == "spread":
                for c, names in sorted(by_core.items()):
                    own = sorted((s for s in all_sites if self.inside(*c, s)),
                                 key=lambda s: (s[1], s[0]))
                    if len(own) < len(names):
                        raise FloorplanError(
                            f"core {c} has {len(names)} {kind} cells and its rectangle of the "
                            f"die {len(own)} sites: use the 'centre' rule")
                    pins.update((n, own[i * len(own) // len(names)][2])
                                for i, n in enumerate(sorted(names)))
                continue
            free = set(all_sites)
            centre = {c: self.centre(*c) for c in by_core}
            got: dict[tuple[int, int], list[tuple[int, int, str]]] = {c: [] for c in by_core}
            order = sorted(by_core)
            while any(len(got[c]) < len(by_core[c]) for c in order):
                for c in order:                 # one site per core in turn: no core starves
                    if len(got[c]) < len(by_core[c]):
                        cx, cy = centre[c]
                        s = min(free, key=lambda s: (abs(s[0] - cx) + abs(s[1] - cy), s[2]))
                        free.discard(s)
                        got[c].append(s)
            for c in order:
                # a memory's or a datapath's blocks (adjacent names) on adjacent sites
                chosen = sorted(got[c], key=lambda s: (s[1], s[0]))
                pins.update(zip(sorted(by_core[c]), (s[2] for s in chosen)))
        return pins

    def apply(self, netlist: dict, top: str) -> dict[str, str]:
        """Set the ``BEL`` attribute of the pinned cells of module ``top`` of a Yosys JSON
        netlist (in place); returns the pins."""
        try:
            module_cells = netlist["modules"][top]["cells"]
        except KeyError:
            raise FloorplanError(f"the netlist has no module {top!r}") from None
        pins = self.pins({n: c["type"] for n, c in module_cells.items()})
        for name, bel in pins.items():
            module_cells[name].setdefault("attributes", {})["BEL"] = bel
        return pins
