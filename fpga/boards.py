"""The boards a fabric can be built for: what :class:`~neuroloom.fpga.top.BoardTop` and the
build flow need to know about each (its ``amaranth-boards`` platform, nextpnr part, oscillator,
UART, LEDs, reset button, openFPGALoader board name).

A new ECP5 board is one more :class:`Board` entry in :data:`BOARDS` (``docs/board.md``).
"""

import dataclasses

from amaranth_boards.ecp5_5g_evn import ECP55GEVNPlatform
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from neuroloom.contract.parts import Part, board_part

from .uart import FT231X_BAUDS

__all__ = ["Board", "BOARDS", "board"]


@dataclasses.dataclass(frozen=True)
class Board:
    """One FPGA board.

    Attributes
    ----------
    name : the name users type (``--board``)
    platform : the ``amaranth-boards`` platform class
    nextpnr_device, package, speed : the part as nextpnr-ecp5 names it
    clock, clock_mhz : the oscillator resource (name, number) and its frequency
    uart : the USB-UART resource (name, number), FPGA side ``rx`` in, ``tx`` out
    leds : the ``led`` resource numbers of the status lights, in ``top.LED_NAMES`` order
    reset : a button resource (name, number) that resets the fabric, or None
    bauds : the rates the board's USB-UART makes exactly, the candidates of the default baud
        (:func:`~neuroloom.fpga.top.clock_plan`)
    loader_board : openFPGALoader's ``-b`` name

    The part's capacities are :attr:`part` (``neuroloom.contract.parts``, what the compiler
    fits a model against) and :attr:`resources`, never repeated here.
    """

    name: str
    platform: type
    nextpnr_device: str
    package: str
    speed: int
    clock: tuple
    clock_mhz: float
    uart: tuple
    leds: tuple
    reset: tuple | None
    bauds: tuple
    loader_board: str

    @property
    def part(self) -> Part:
        """The FPGA part on the board (:func:`neuroloom.contract.parts.board_part`)."""
        return board_part(self.name)

    @property
    def resources(self) -> dict[str, int]:
        """Cells available on the part (LUT4, FF, DP16KD, MULT18X18D)."""
        return self.part.resources()


BOARDS = {b.name: b for b in (
    Board("ulx3s-85f", ULX3S_85F_Platform, "85k", "CABGA381", 6,
          clock=("clk25", 0), clock_mhz=25.0, uart=("uart", 0), leds=(0, 1, 2, 3, 4),
          reset=("button_fire", 0), bauds=FT231X_BAUDS, loader_board="ulx3s"),
    # Lattice ECP5-5G Evaluation Board: FT2232H UART (after the jumper change its platform
    # file describes), 12 MHz oscillator
    Board("ecp5-5g-evn", ECP55GEVNPlatform, "um5g-85k", "CABGA381", 8,
          clock=("clk12", 0), clock_mhz=12.0, uart=("uart", 0), leds=(0, 1, 2, 3, 4),
          reset=None, bauds=FT231X_BAUDS, loader_board="ecp5_evn"),
)}


def board(name: str) -> Board:
    """The board called ``name``; ``ValueError`` naming the known boards otherwise."""
    try:
        return BOARDS[name]
    except KeyError:
        raise ValueError(f"unknown board {name!r}; known boards: "
                         f"{', '.join(sorted(BOARDS))}") from None
