"""Per-core configuration: the tables of one neuron core, and their encoding to config writes.

A :class:`CoreConfig` is what the compiler produces for one core and what a config image holds:
axon table, synapse rows, neuron groups with their microcode, coefficients, initial state and
output routes. :meth:`CoreConfig.writes` turns it into the ``(mem, index, part, value)`` words
the host sends as CFG_WRITE flits; the golden model and the RTL load exactly those words.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .config import FabricConfig
from .layouts import (
    MODE_COEFS,
    MODE_STATE,
    Mem,
    axon_layout,
    group_layout,
    mem_parts,
    pack,
    route_index_layout,
    route_layout,
    synapse_layout,
)

__all__ = ["Group", "Route", "Synapse", "CoreConfig", "ConfigError", "split_parts"]


class ConfigError(ValueError):
    """A core configuration that the fabric cannot hold or run."""


@dataclass(frozen=True)
class Group:
    """Neurons ``[first, first+count)`` run the program at ``pc``; active at step ``t`` iff
    ``t >= start`` and ``(t - start) % period == 0``. Neuron ``first + i`` owns the ``modes``
    mode entries from ``mode_base + i * modes`` (channel neurons; 0 for the others)."""
    first: int
    count: int
    pc: int
    period: int = 1
    start: int = 0
    mode_base: int = 0
    modes: int = 0

    def active(self, t: int) -> bool:
        return t >= self.start and (t - self.start) % self.period == 0

    def mode_span(self) -> tuple[int, int]:
        """``(first entry, entries)`` of the group's mode memory."""
        return self.mode_base, self.count * self.modes


@dataclass(frozen=True)
class Route:
    """A spike to tile ``(x, y)`` axon ``target``, or (``host``) to host output channel
    ``target``."""
    x: int = 0
    y: int = 0
    target: int = 0
    host: bool = False


@dataclass
class Synapse:
    """One synapse row: lane j adds ``rnd(payload * weights[j], shift)`` to neuron
    ``row*lanes + j`` when ``mask`` bit j is set (the shift is the axon's)."""
    row: int
    mask: int
    weights: tuple


@dataclass
class CoreConfig:
    """Everything one core holds. Arrays are sized to the core's capacities on demand."""
    cfg: FabricConfig
    axons: list = field(default_factory=list)      # per axon: (base row, row count, shift)
    synapses: list = field(default_factory=list)   # list[Synapse]
    groups: list = field(default_factory=list)     # list[Group]
    ucode: list = field(default_factory=list)      # microcode words
    coef: np.ndarray = None                        # (neurons, 8)
    state: np.ndarray = None                       # (neurons, state_regs) initial state
    routes: dict = field(default_factory=dict)     # neuron -> list[Route]
    mstate: np.ndarray = None                      # (modes, 2) initial mode state
    mcoef: np.ndarray = None                       # (modes, 6) mode coefficients

    def __post_init__(self):
        if self.mstate is None:
            self.mstate = np.zeros((self.cfg.modes, MODE_STATE), dtype=np.int64)
        if self.mcoef is None:
            self.mcoef = np.zeros((self.cfg.modes, MODE_COEFS), dtype=np.int64)
        if self.coef is None:
            self.coef = np.zeros((self.cfg.neurons, self.cfg.coefs), dtype=np.int64)
        if self.state is None:
            self.state = np.zeros((self.cfg.neurons, self.cfg.state_regs), dtype=np.int64)

    # -- building ---------------------------------------------------------------------------------
    def add_program(self, words: list[int]) -> int:
        """Append a program to the microcode memory (reusing an identical one); returns its pc."""
        n = len(words)
        for pc in range(len(self.ucode) - n + 1):
            if self.ucode[pc:pc + n] == list(words):
                return pc
        pc = len(self.ucode)
        self.ucode.extend(words)
        return pc

    def add_axon(self, synapses: list[Synapse], shift: int) -> int:
        """Append an axon whose synapse block is ``synapses``; returns the axon index. An axon
        without synapses has base 0 (its base is never read, and the next free row may be one
        past the synapse memory, which the AXON word's base field cannot hold)."""
        base = len(self.synapses) if synapses else 0
        self.synapses.extend(synapses)
        self.axons.append((base, len(synapses), shift))
        return len(self.axons) - 1

    # -- checking ---------------------------------------------------------------------------------
    def usage(self) -> dict:
        """Resource use against capacity: name -> (used, capacity)."""
        c = self.cfg
        return {
            "neurons": (max((g.first + g.count for g in self.groups), default=0), c.neurons),
            "axons": (len(self.axons), c.axons),
            "synapse_rows": (len(self.synapses), c.synapse_rows),
            "route_words": (sum(len(r) for r in self.routes.values()), c.route_words),
            "ucode": (len(self.ucode), c.ucode_depth),
            "groups": (len(self.groups), c.groups),
            "modes": (max((sum(g.mode_span()) for g in self.groups if g.modes), default=0),
                      c.modes),
        }

    def validate(self, where: str = "core") -> None:
        """Raise :class:`ConfigError` naming the first thing the core cannot hold or run."""
        c = self.cfg
        for name, (used, cap) in self.usage().items():
            if used > cap:
                raise ConfigError(f"{where}: {name} needs {used}, capacity is {cap} "
                                  f"({used - cap} over)")
        for i, (base, count, shift) in enumerate(self.axons):
            if base + count > c.synapse_rows or not 0 <= shift <= 31:
                raise ConfigError(f"{where}: axon {i} block {base}+{count} shift {shift} "
                                  "is out of range")
        for i, g in enumerate(self.groups):
            if g.count < 1 or g.first + g.count > c.neurons:
                raise ConfigError(f"{where}: group {i} neurons {g.first}+{g.count} out of range")
            if not 1 <= g.period <= 255 or not 0 <= g.start < 1 << 16:
                raise ConfigError(f"{where}: group {i} period {g.period} / start {g.start} "
                                  "out of range (period 1..255, start 0..65535)")
            if not 0 <= g.pc < len(self.ucode):
                raise ConfigError(f"{where}: group {i} pc {g.pc} outside the microcode")
            mb, mn = g.mode_span()
            if g.modes < 0 or mb < 0 or (g.modes and mb + mn > c.modes):
                raise ConfigError(f"{where}: group {i} mode entries {mb}+{mn} out of range "
                                  f"(mode memory holds {c.modes})")
            for j in range(i):
                h = self.groups[j]
                if g.first < h.first + h.count and h.first < g.first + g.count:
                    raise ConfigError(f"{where}: groups {j} and {i} overlap")
                (gb, gn), (hb, hn) = g.mode_span(), h.mode_span()
                if gn and hn and gb < hb + hn and hb < gb + gn:
                    raise ConfigError(f"{where}: groups {j} and {i} share mode entries")
        for n, rts in self.routes.items():
            for r in rts:
                if not r.host and not (0 <= r.x < c.mesh_w and 0 <= r.y < c.mesh_h):
                    raise ConfigError(f"{where}: neuron {n} routes to tile ({r.x},{r.y}) "
                                      f"outside the {c.mesh_w}x{c.mesh_h} mesh")
                if not r.host and r.target >= c.axons:
                    raise ConfigError(f"{where}: neuron {n} routes to axon {r.target} >= "
                                      f"{c.axons}")

    # -- encoding ---------------------------------------------------------------------------------
    def words(self) -> list[tuple[Mem, int, int]]:
        """Whole memory words ``(mem, index, value)`` that configure this core.

        Every group descriptor is written (unused ones with count 0: disabled); other memories
        are written over the extent in use; state and both accumulator buffers of every neuron
        in a group are written, so loading also clears what a previous model left.
        """
        c = self.cfg
        self.validate()
        out: list[tuple[Mem, int, int]] = []
        for i, (base, count, shift) in enumerate(self.axons):
            out.append((Mem.AXON, i, pack(axon_layout(c), base=base, count=count, shift=shift)))
        for i, s in enumerate(self.synapses):
            out.append((Mem.SYNAPSE, i, pack(synapse_layout(c), row=s.row, mask=s.mask,
                                              weights=list(s.weights))))
        for pc, w in enumerate(self.ucode):
            out.append((Mem.UCODE, pc, w))
        for i in range(c.groups):
            g = self.groups[i] if i < len(self.groups) else None
            out.append((Mem.GROUP, i, 0 if g is None else pack(
                group_layout(c), first=g.first, count=g.count, pc=g.pc, period=g.period,
                start=g.start, mode_base=g.mode_base, modes=g.modes)))
        used = sorted({n for g in self.groups for n in range(g.first, g.first + g.count)})
        base = 0
        for n in used:
            rts = self.routes.get(n, [])
            out.append((Mem.ROUTE_INDEX, n, pack(route_index_layout(c), base=base,
                                                 count=len(rts))))
            for r in rts:
                out.append((Mem.ROUTE, base, pack(route_layout(c), x=r.x, y=r.y,
                                                  host=int(r.host), target=r.target)))
                base += 1
            out.append((Mem.STATE, n, [int(v) for v in self.state[n]]))
            out.append((Mem.COEF, n, [int(v) for v in self.coef[n]]))
            out.append((Mem.ACC, n, [0, 0]))
        for g in self.groups:
            mb, mn = g.mode_span()
            for e in range(mb, mb + mn if g.modes else mb):
                out.append((Mem.MSTATE, e, [int(v) for v in self.mstate[e]]))
                out.append((Mem.MCOEF, e, [int(v) for v in self.mcoef[e]]))
        return out

    def writes(self) -> list[tuple[int, int, int, int]]:
        """Config writes ``(mem, index, part, value32)`` in the order the host sends them."""
        return [(m, i, p, v) for m, i, word in self.words()
                for p, v in enumerate(split_parts(self.cfg, m, word))]


def split_parts(cfg: FabricConfig, mem: Mem, word) -> list[int]:
    """Split one memory word into its 32-bit configuration parts (see ``mem_parts``).

    ``word`` is an int for struct memories, a list of signed values for STATE/COEF/ACC/MSTATE/
    MCOEF.
    """
    if isinstance(word, list):
        return [int(v) & 0xFFFFFFFF for v in word]
    return [(word >> (32 * p)) & 0xFFFFFFFF for p in range(mem_parts(cfg, mem))]
