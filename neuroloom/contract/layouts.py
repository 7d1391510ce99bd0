"""Data layouts shared by the hardware, the compiler and the models.

Every format of the spec is one ``amaranth.lib.data`` layout, built here from a
:class:`~neuroloom.contract.config.FabricConfig`. Hardware uses them as ``Signal(layout)``; software
packs and unpacks words with :func:`pack` and :func:`unpack`, which read the field offsets from
the very same layouts (nobody writes bit offsets by hand).
"""

from __future__ import annotations

import enum
import functools

import numpy as np
from amaranth.hdl import Shape, signed, unsigned
from amaranth.lib import data

from .config import FabricConfig

__all__ = [
    "FlitKind", "Mem", "Op", "Emit", "Operand", "Counter", "MODE_STATE", "MODE_COEFS",
    "flit_layout", "cfg_addr_layout", "axon_layout", "synapse_layout", "route_index_layout",
    "route_layout", "group_layout", "instr_layout", "modes_instr_layout", "mem_parts",
    "mem_depth", "mem_word_layout",
    "pack", "unpack", "to_signed",
]


class FlitKind(enum.IntEnum):
    """Message kind carried by every flit."""
    SPIKE = 0       # addr = destination axon, data = graded payload (sign-extended)
    CFG_WRITE = 1   # addr = config address (mem|index|part), data = word part
    CFG_READ = 2    # addr = config address; the core answers with READ_RESP to the host
    READ_RESP = 3   # addr = config address read, data = word part; host-bound
    HOST_OUT = 4    # addr = output channel, data = graded payload; host-bound


class Mem(enum.IntEnum):
    """Core memories in the configuration address space (``mem`` field)."""
    AXON = 0         # per axon: synapse block (base row, row count, shift)
    SYNAPSE = 1      # synapse words (row of ``synapse_lanes`` weights + lane mask)
    STATE = 2        # per neuron, part = register R0..R{state_regs-1}
    COEF = 3         # per neuron, part = coefficient C0..C7
    ROUTE_INDEX = 4  # per neuron: (base, count) into ROUTE
    ROUTE = 5        # output route words (destination tile + axon, or host channel)
    UCODE = 6        # microcode words
    GROUP = 7        # neuron-group descriptors
    COUNTER = 8      # read-only performance counters (see Counter)
    ACC = 9          # dendrite accumulators, part = buffer (0 or 1)
    MSTATE = 10      # per mode entry, part = 0: Re x, 1: Im x
    MCOEF = 11       # per mode entry, part = Re dA, Im dA, Re dB, Im dB, Re C', -Im C'


class Counter(enum.IntEnum):
    """Per-core counters (``Mem.COUNTER`` index). 0..3 are architectural (golden == RTL)."""
    NEURON_UPDATES = 0   # neuron programs executed
    SYN_OPS = 1          # enabled synapse lanes processed
    SPIKES_SENT = 2      # route words fired (flits emitted, loopback and host included)
    SPIKES_RECEIVED = 3  # spikes delivered to this core's axons (host injections included)
    BUSY_CYCLES = 4      # RTL only: cycles the core was not idle


class Op(enum.IntEnum):
    """Neuron microcode opcodes (semantics in ``neuroloom.contract.isa`` and the spec)."""
    NOP = 0
    MAD = 1    # rd = sat(rnd(ra*C[k] + rb*C[l], sh))
    CMAD = 2   # (rd,rd+1) = sat(rnd((ra,ra+1)*(C[k],C[k+1]) + rb*(C[l],C[l+1]), sh)), complex
    ADD = 3    # rd = sat(ra + rb)
    SUB = 4    # rd = sat(ra - rb)
    MAX = 5    # rd = max(ra, rb)
    MIN = 6    # rd = min(ra, rb)
    LDC = 7    # rd = sat(C[k] << sh)
    SHR = 8    # rd = rnd(ra, sh)
    CGE = 9    # P = (ra >= rb)
    SEL = 10   # rd = P ? ra : rb
    MODES = 11  # channel: for every mode m, x_m <- dA_m x_m + dB_m rb; rd = sat(sum Re(C'_m x_m))


class Emit(enum.IntEnum):
    """Emit condition attached to an instruction: spike with payload rd at program end."""
    NONE = 0
    ALWAYS = 1
    NONZERO = 2
    IF_P = 3


class Operand(enum.IntEnum):
    """Source operand codes beyond R0..R7 (codes 0..7)."""
    ACC = 8    # the neuron's accumulator for this step, saturated to state_width
    ZERO = 9


#: parts of one mode entry: state (Re x, Im x) and coefficients (dA, dB, C' as complex pairs)
MODE_STATE = 2
MODE_COEFS = 6


# -- layouts --------------------------------------------------------------------------------------

@functools.cache
def flit_layout(cfg: FabricConfig) -> data.StructLayout:
    """Single-flit packet: destination tile, kind, address and 32-bit data."""
    return data.StructLayout({
        "dst_x": unsigned(cfg.COORD_BITS),
        "dst_y": unsigned(cfg.COORD_BITS),
        "kind": unsigned(3),
        "addr": unsigned(cfg.addr_bits),
        "data": unsigned(cfg.FLIT_DATA_BITS),
    })


@functools.cache
def cfg_addr_layout(cfg: FabricConfig) -> data.StructLayout:
    """Configuration address carried in ``flit.addr`` of CFG_* and READ_RESP flits."""
    return data.StructLayout({
        "part": unsigned(cfg.PART_BITS),
        "index": unsigned(cfg.INDEX_BITS),
        "mem": unsigned(cfg.MEM_BITS),
    })


@functools.cache
def axon_layout(cfg: FabricConfig) -> data.StructLayout:
    """Axon table entry: the synapse block of one input axon."""
    return data.StructLayout({
        "base": unsigned(cfg.syn_addr_bits),
        "count": unsigned(cfg.syn_count_bits),
        "shift": unsigned(5),
    })


@functools.cache
def synapse_layout(cfg: FabricConfig) -> data.StructLayout:
    """Synapse word: lane j targets neuron ``row * synapse_lanes + j`` when ``mask[j]``."""
    return data.StructLayout({
        "row": unsigned(cfg.row_bits),
        "mask": unsigned(cfg.synapse_lanes),
        "weights": data.ArrayLayout(signed(cfg.weight_width), cfg.synapse_lanes),
    })


@functools.cache
def route_index_layout(cfg: FabricConfig) -> data.StructLayout:
    return data.StructLayout({
        "base": unsigned(cfg.route_addr_bits),
        "count": unsigned(cfg.route_count_bits),
    })


@functools.cache
def route_layout(cfg: FabricConfig) -> data.StructLayout:
    """Output route: a spike to (x, y) axon ``target``, or (host=1) host channel ``target``."""
    return data.StructLayout({
        "x": unsigned(cfg.COORD_BITS),
        "y": unsigned(cfg.COORD_BITS),
        "host": unsigned(1),
        "target": unsigned(cfg.INDEX_BITS),
    })


@functools.cache
def group_layout(cfg: FabricConfig) -> data.StructLayout:
    """Neuron group: neurons [first, first+count) run the program at ``pc`` on schedule; neuron
    ``first + i`` owns the mode entries ``[mode_base + i*modes, mode_base + (i+1)*modes)``."""
    return data.StructLayout({
        "first": unsigned(cfg.neuron_bits),
        "count": unsigned(cfg.neuron_bits + 1),
        "pc": unsigned(cfg.pc_bits),
        "period": unsigned(8),
        "start": unsigned(16),
        "mode_base": unsigned(cfg.mode_bits),
        "modes": unsigned(cfg.mode_bits + 1),
    })


@functools.cache
def instr_layout() -> data.StructLayout:
    """One 32-bit microcode word."""
    return data.StructLayout({
        "op": unsigned(5),
        "emit": unsigned(2),
        "last": unsigned(1),
        "rd": unsigned(3),
        "ra": unsigned(4),
        "rb": unsigned(4),
        "ck": unsigned(3),
        "cl": unsigned(3),
        "sh": unsigned(5),
        "_pad": unsigned(2),
    })


@functools.cache
def modes_instr_layout() -> data.StructLayout:
    """The ``MODES`` instruction's word: ``op``, ``emit``, ``last``, ``rd`` and ``rb`` where
    :func:`instr_layout` has them; ``so`` (the output shift) where ``ck``/``cl`` are."""
    return data.StructLayout({
        "op": unsigned(5),
        "emit": unsigned(2),
        "last": unsigned(1),
        "rd": unsigned(3),
        "_ra": unsigned(4),
        "rb": unsigned(4),
        "so": unsigned(5),
        "_pad0": unsigned(1),
        "sh": unsigned(5),
        "_pad": unsigned(2),
    })


@functools.cache
def mem_word_layout(cfg: FabricConfig, mem: Mem):
    """The layout of one word of ``mem`` (None for the plain-integer memories)."""
    return {
        Mem.AXON: axon_layout(cfg), Mem.SYNAPSE: synapse_layout(cfg),
        Mem.ROUTE_INDEX: route_index_layout(cfg), Mem.ROUTE: route_layout(cfg),
        Mem.UCODE: instr_layout(), Mem.GROUP: group_layout(cfg),
    }.get(Mem(mem))


@functools.cache
def mem_depth(cfg: FabricConfig, mem: Mem) -> int:
    """Number of words (indices) of a core memory."""
    return {
        Mem.AXON: cfg.axons, Mem.SYNAPSE: cfg.synapse_rows, Mem.STATE: cfg.neurons,
        Mem.COEF: cfg.neurons, Mem.ROUTE_INDEX: cfg.neurons, Mem.ROUTE: cfg.route_words,
        Mem.UCODE: cfg.ucode_depth, Mem.GROUP: cfg.groups, Mem.COUNTER: len(Counter),
        Mem.ACC: cfg.neurons, Mem.MSTATE: cfg.modes, Mem.MCOEF: cfg.modes,
    }[Mem(mem)]


@functools.cache
def mem_parts(cfg: FabricConfig, mem: Mem) -> int:
    """Number of 32-bit parts a word of ``mem`` is split into for configuration access.

    Struct-shaped words are split little-end first into 32-bit parts; STATE, COEF and ACC use one
    part per register/coefficient/buffer, sign-extended to 32 bits; MSTATE and MCOEF likewise
    (2 state and 6 coefficient parts per mode entry).
    """
    mem = Mem(mem)
    if mem == Mem.MSTATE:
        return MODE_STATE
    if mem == Mem.MCOEF:
        return MODE_COEFS
    if mem == Mem.STATE:
        return cfg.state_regs
    if mem == Mem.COEF:
        return cfg.coefs
    if mem == Mem.ACC:
        return 2
    if mem == Mem.COUNTER:
        return 1
    return -(-mem_word_layout(cfg, mem).size // 32)


# -- software packing -----------------------------------------------------------------------------

def to_signed(value, width: int):
    """Interpret the low ``width`` bits of ``value`` (int or int64 array) as two's complement."""
    if isinstance(value, np.ndarray):
        v = value.astype(np.int64) & ((1 << width) - 1)
        return np.where(v >= 1 << (width - 1), v - (1 << width), v)
    value &= (1 << width) - 1
    return value - (1 << width) if value >> (width - 1) else value


def _leaves(layout, prefix=(), base=0):
    """Yield (path, offset, width, signed) for every scalar member, in offset order."""
    if isinstance(layout, data.ArrayLayout):
        for i in range(layout.length):
            yield from _leaves(layout.elem_shape, prefix + (i,),
                               base + i * Shape.cast(layout.elem_shape).width)
        return
    if isinstance(layout, data.Layout):
        for name, field in layout:
            yield from _leaves(field.shape, prefix + (name,), base + field.offset)
        return
    shape = Shape.cast(layout)
    yield prefix, base, shape.width, shape.signed


@functools.cache
def _fields(layout) -> dict:
    """name -> (offsets per element, width, signed); arrays give a list of offsets."""
    out: dict = {}
    for path, offset, width, sgn in _leaves(layout):
        name = path[0]
        if name.startswith("_"):
            continue
        offsets, _, _ = out.setdefault(name, ([], width, sgn))
        offsets.append(offset)
    return out


def pack(layout, **values) -> int:
    """Encode one word: ``pack(synapse_layout(cfg), row=3, mask=0b1, weights=[5, 0, 0, 0])``.

    Missing fields are zero; an out-of-range value raises ``ValueError`` naming the field.
    """
    fields = _fields(layout)
    unknown = set(values) - set(fields)
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)} for layout {layout!r}")
    word = 0
    for name, (offsets, width, sgn) in fields.items():
        v = values.get(name, 0)
        elems = list(v) if len(offsets) > 1 else [v]
        if len(elems) != len(offsets):
            raise ValueError(f"field {name!r} takes {len(offsets)} elements, got {len(elems)}")
        lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if sgn else (0, (1 << width) - 1)
        for off, e in zip(offsets, elems):
            e = int(e)
            if not lo <= e <= hi:
                raise ValueError(f"field {name!r} value {e} out of range {lo}..{hi}")
            word |= (e & ((1 << width) - 1)) << off
    return word


def unpack(layout, words) -> dict:
    """Decode one word (int) or many (array of uint64/int64/object) into a dict of fields.

    Array fields come back with a trailing axis (``weights``: (..., lanes)).
    """
    scalar = not isinstance(words, np.ndarray)
    if scalar:
        words = np.array([words], dtype=object)
    words = np.asarray(words, dtype=object)
    out = {}
    for name, (offsets, width, sgn) in _fields(layout).items():
        cols = []
        for off in offsets:
            v = np.array([(int(w) >> off) & ((1 << width) - 1) for w in words.ravel()],
                         dtype=np.int64).reshape(words.shape)
            cols.append(to_signed(v, width) if sgn else v)
        arr = np.stack(cols, axis=-1) if len(offsets) > 1 else cols[0]
        out[name] = arr[0] if scalar else arr
    if scalar:
        out = {k: (int(v) if np.ndim(v) == 0 else [int(e) for e in v]) for k, v in out.items()}
    return out
