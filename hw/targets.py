"""Synthesis targets: what an elaboration is for, passed to Amaranth as its ``platform``.

Gateware elaborated with ``platform=None`` (every simulation build: Verilator, amaranth.sim) is
plain, portable RTL. Elaborated for ECP5 -- :data:`ECP5`, or any Amaranth platform whose
``family`` is ``"ecp5"`` (the board builds' ``amaranth-boards`` platforms) -- a few parts use
the FPGA's primitives where inference cannot reach them: the neuron core's multipliers are
``MULT18X18D`` with their input and output registers on (:class:`~neuroloom.hw.core.alu.Mul18`),
which Yosys never packs by itself. Each such part has the same cycle-level behaviour on every
target (``tests/test_dsp.py`` checks the primitive's wiring against a model of the
``MULT18X18D``).
"""

from __future__ import annotations

__all__ = ["ECP5", "Ecp5Target", "is_ecp5"]


class Ecp5Target:
    """A stand-in platform for Verilog meant for ECP5 synthesis (``bench/`` synthesis flows):
    it only says the family; every other platform hook falls back to Amaranth's default."""

    family = "ecp5"

    def __repr__(self) -> str:
        return "ECP5"


#: pass as ``to_verilog(..., platform=ECP5)`` for Verilog that Yosys ``synth_ecp5`` maps
ECP5 = Ecp5Target()


def is_ecp5(platform) -> bool:
    """Whether ``platform`` (an elaboration's platform argument) targets ECP5."""
    return getattr(platform, "family", None) == "ecp5"
