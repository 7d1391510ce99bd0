"""FPGA parts a fabric is compiled for, and what each offers: the numbers the compiler's fit
(``neuroloom.firmware.resources``, ``neuroloom compile --board``) and the FPGA flow
(``neuroloom.fpga.boards``) share, kept here because the compiler may not import ``fpga``.

A part's capacities are the cells nextpnr-ecp5 reports as available for it (its utilization
report: ``TRELLIS_COMB`` LUT4 sites, ``TRELLIS_FF``, ``DP16KD``, ``MULT18X18D``).
"""

from __future__ import annotations

import dataclasses

__all__ = ["BOARD_PARTS", "PARTS", "Part", "board_part"]


@dataclasses.dataclass(frozen=True)
class Part:
    """One FPGA part: its ``name``, the cells it has (``lut4``: LUT4 sites, i.e. nextpnr's
    TRELLIS_COMB, which logic, carry chains and LUT RAM share; ``ff``; ``dp16kd``;
    ``mult18x18d``) and the share of the LUT4 sites a design may fill and still place and
    route (``logic_limit``; the rest are left to the placer)."""

    name: str
    lut4: int
    ff: int
    dp16kd: int
    mult18x18d: int
    logic_limit: float = 0.85

    def resources(self) -> dict[str, int]:
        """Capacities by cell name, as ``neuroloom.fpga.boards.Board.resources`` holds them."""
        return {"LUT4": self.lut4, "FF": self.ff, "DP16KD": self.dp16kd,
                "MULT18X18D": self.mult18x18d}


#: nextpnr-ecp5's available cells of the 85k parts (``--85k`` and ``--um5g-85k`` alike)
PARTS = {p.name: p for p in (
    Part("LFE5U-85F", lut4=83_640, ff=83_640, dp16kd=208, mult18x18d=156),
    Part("LFE5UM5G-85F", lut4=83_640, ff=83_640, dp16kd=208, mult18x18d=156),
)}

#: the part on each board of ``neuroloom.fpga.boards.BOARDS``
BOARD_PARTS = {"ulx3s-85f": "LFE5U-85F", "ecp5-5g-evn": "LFE5UM5G-85F"}


def board_part(board: str) -> Part:
    """The part on ``board``; ``ValueError`` naming the known boards otherwise."""
    try:
        return PARTS[BOARD_PARTS[board]]
    except KeyError:
        raise ValueError(f"unknown board {board!r}; known boards: "
                         f"{', '.join(sorted(BOARD_PARTS))}") from None
