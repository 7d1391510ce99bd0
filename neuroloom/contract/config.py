"""Fabric parameters: one frozen dataclass that every layer of NeuroLoom reads.

The hardware generator, the compiler, the golden model and the host driver all take a
:class:`FabricConfig`; every width, depth and count that the spec (``docs/architecture.md``)
mentions is a field here, with its default.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

__all__ = ["FabricConfig"]


def _bits_for(count: int) -> int:
    """Number of bits needed to index ``count`` items (at least 1)."""
    return max(1, (count - 1).bit_length())


@dataclass(frozen=True)
class FabricConfig:
    """Parameters of a NeuroLoom fabric.

    Mesh
        ``mesh_w`` x ``mesh_h`` tiles, each a neuron core and a 5-port router.
    Core capacities
        ``neurons`` per core, ``axons`` (input axon table entries), ``synapse_rows``
        (synapse memory words, each ``synapse_lanes`` weights wide), ``route_words``
        (output route memory), ``ucode_depth`` (microcode words), ``groups`` (neuron group
        descriptors).
    Arithmetic
        ``state_width`` (neuron registers and graded spike payloads, signed),
        ``coef_width`` (per-neuron coefficients, signed), ``weight_width`` (synaptic weights,
        signed), ``acc_width`` (dendrite accumulators, signed, modular).
    NoC
        ``router_fifo_depth`` (input buffer depth per router port); ``gals``: every tile (core
        and router) in a clock domain of its own, links between domains through asynchronous
        FIFOs, the step barrier across domains by handshakes (``docs/noc.md``, GALS). A flag:
        ``True``/``False``, or 1/0 (the dictionary form and the CLI carry it as 0/1).
    """

    mesh_w: int = 2
    mesh_h: int = 2
    neurons: int = 256
    axons: int = 256
    synapse_rows: int = 1024
    synapse_lanes: int = 4
    route_words: int = 512
    ucode_depth: int = 64
    groups: int = 8
    modes: int = 1024            # mode memory entries (complex S4D modes of channel neurons)
    neuron_lanes: int = 1        # mode entries per cycle of a MODES instruction (SIMD lanes)
    state_regs: int = 4          # persistent registers R0..R{state_regs-1} per neuron
    coefs: int = 8               # coefficients C0..C7 per neuron
    state_width: int = 24
    coef_width: int = 16
    weight_width: int = 8
    acc_width: int = 32
    router_fifo_depth: int = 4
    gals: bool = False           # globally asynchronous, locally synchronous tiles

    # Fixed by the spec (not parameters): 8 registers, 4-bit coordinates, 32-bit flit data.
    NUM_REGS = 8
    COORD_BITS = 4
    FLIT_DATA_BITS = 32

    def __post_init__(self):
        def need(cond, msg):
            if not cond:
                raise ValueError(f"FabricConfig: {msg}")

        need(isinstance(self.gals, int) and self.gals in (0, 1),
             f"gals={self.gals!r} must be True/False (or 1/0)")
        object.__setattr__(self, "gals", bool(self.gals))
        for name in ("mesh_w", "mesh_h"):
            v = getattr(self, name)
            need(isinstance(v, int) and 1 <= v <= 1 << self.COORD_BITS,
                 f"{name}={v!r} must be an integer in 1..{1 << self.COORD_BITS}")
        for name in ("neurons", "axons", "synapse_rows", "route_words", "ucode_depth",
                     "groups", "modes", "router_fifo_depth"):
            v = getattr(self, name)
            need(isinstance(v, int) and v >= 1, f"{name}={v!r} must be a positive integer")
        need(self.synapse_lanes in (1, 2, 4, 8),
             f"synapse_lanes={self.synapse_lanes!r} must be 1, 2, 4 or 8")
        need(self.neurons % self.synapse_lanes == 0,
             f"neurons={self.neurons!r} must be a multiple of synapse_lanes="
             f"{self.synapse_lanes!r}")
        need(self.neuron_lanes in (1, 2, 4, 8),
             f"neuron_lanes={self.neuron_lanes!r} must be 1, 2, 4 or 8")
        need(self.modes % self.neuron_lanes == 0,
             f"modes={self.modes!r} must be a multiple of neuron_lanes={self.neuron_lanes!r}")
        need(1 <= self.state_regs <= self.NUM_REGS,
             f"state_regs={self.state_regs!r} must be in 1..{self.NUM_REGS}")
        need(self.coefs == 8, f"coefs={self.coefs!r}: the ISA addresses exactly 8 coefficients")
        need(8 <= self.state_width <= 32, f"state_width={self.state_width!r} must be in 8..32")
        need(2 <= self.coef_width <= 18, f"coef_width={self.coef_width!r} must be in 2..18")
        need(2 <= self.weight_width <= 9, f"weight_width={self.weight_width!r} must be in 2..9")
        need(self.state_width + self.weight_width <= self.acc_width <= 48,
             f"acc_width={self.acc_width!r} must be in "
             f"{self.state_width + self.weight_width}..48 (state_width + weight_width)")
        need(self.synapse_lanes * self.weight_width + self.row_bits + self.synapse_lanes <= 64,
             "synapse word wider than 64 bits; reduce synapse_lanes or weight_width")
        for name, bits in (("axons", self.axon_bits), ("neurons", self.neuron_bits),
                           ("synapse_rows", self.syn_addr_bits),
                           ("route_words", self.route_addr_bits),
                           ("modes", self.mode_bits)):
            need(bits <= self.INDEX_BITS,
                 f"{name}={getattr(self, name)!r} exceeds the {self.INDEX_BITS}-bit "
                 f"configuration index")

    # Configuration address space: mem (MEM_BITS) | index (INDEX_BITS) | part (PART_BITS); a
    # flit's address field (axon, configuration address or output channel) is ADDR_BITS wide.
    MEM_BITS = 4
    INDEX_BITS = 14
    PART_BITS = 3
    ADDR_BITS = MEM_BITS + INDEX_BITS + PART_BITS

    # -- derived widths -------------------------------------------------------------------------
    @property
    def num_cores(self) -> int:
        return self.mesh_w * self.mesh_h

    @property
    def neuron_bits(self) -> int:
        return _bits_for(self.neurons)

    @property
    def axon_bits(self) -> int:
        return _bits_for(self.axons)

    @property
    def row_bits(self) -> int:
        """Bits of a synapse word's row field (a row is ``synapse_lanes`` neurons)."""
        return _bits_for(self.neurons // self.synapse_lanes)

    @property
    def syn_addr_bits(self) -> int:
        return _bits_for(self.synapse_rows)

    @property
    def syn_count_bits(self) -> int:
        """Bits of an axon's synapse-row count (0..synapse_rows inclusive)."""
        return self.synapse_rows.bit_length()

    @property
    def route_addr_bits(self) -> int:
        return _bits_for(self.route_words)

    @property
    def route_count_bits(self) -> int:
        return self.route_words.bit_length()

    @property
    def mode_bits(self) -> int:
        return _bits_for(self.modes)

    @property
    def pc_bits(self) -> int:
        return _bits_for(self.ucode_depth)

    @property
    def group_bits(self) -> int:
        return _bits_for(self.groups)

    @property
    def addr_bits(self) -> int:
        """Width of a flit's address field (axon, config address or output channel)."""
        return self.ADDR_BITS

    # -- serialisation ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Every field; flags (``gals``) as 0/1, so the dictionary is all integers."""
        return {k: int(v) if isinstance(v, bool) else v
                for k, v in dataclasses.asdict(self).items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> FabricConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"FabricConfig: unknown parameter(s) {unknown}; known: "
                             f"{sorted(known)}")
        return cls(**d)

    @classmethod
    def parse_mesh(cls, text: str, **kwargs) -> FabricConfig:
        """``FabricConfig.parse_mesh("3x2")`` -> a 3-wide, 2-high fabric."""
        try:
            w, h = (int(v) for v in text.lower().split("x"))
        except ValueError:
            raise ValueError(f"mesh {text!r} is not of the form WxH, e.g. 2x2") from None
        return cls(mesh_w=w, mesh_h=h, **kwargs)

    def core_index(self, x: int, y: int) -> int:
        """Cores are numbered row-major: ``index = y * mesh_w + x``."""
        return y * self.mesh_w + x

    def core_xy(self, index: int) -> tuple[int, int]:
        return index % self.mesh_w, index // self.mesh_w
