"""Host link frame protocol: the layouts of its words, its opcodes and error codes.

Every frame, in both directions, is a sequence of 32-bit words on an AXI4-Stream-shaped link: a
:class:`FrameHeader` word, ``length`` payload words, and a checksum word (the sum of the header
and payload words modulo 2**32) that carries TLAST. Payload words that have fields are the
:class:`Target`, :class:`OutputTag`, :class:`MeshSize` and :class:`StatusFlags` layouts; the
opcode and error code fields are shaped by the :class:`Opcode` and :class:`ErrorCode` enums. The
gateware (``neuroloom.hw.hostlink``) uses these layouts as ``Signal(layout)``, the host side packs
and unpacks words with :func:`to_word` and :func:`from_word`, which read the field offsets from
the same layouts. ``docs/hostlink.md`` is the protocol's reference for a third-party host: every
frame, the STATUS flags, every error code, TLAST rules, resynchronisation and an example exchange.

Command frames (host -> fabric) are answered by exactly one response frame (opcode
``command | RESPONSE``, same ``seq``) or by one ERROR frame; a RUN forwards the fabric's host
outputs as OUTPUT frames before its response. A bad frame is rejected as a whole before any of it
executes: it changes no state.
"""

# No ``from __future__ import annotations`` here: data.Struct reads the field shapes from its
# evaluated class annotations.
import functools
from dataclasses import dataclass, field

from amaranth.hdl import Shape, unsigned
from amaranth.lib import data, enum

from .config import FabricConfig

__all__ = [
    "WORD_BITS", "SEQ_BITS", "STEP_BITS", "MAGIC", "RESPONSE", "MAX_PAYLOAD", "STATUS_WORDS",
    "FABRIC_COUNTERS",
    "Cmd", "Opcode", "OUTPUT", "ERROR", "ErrorCode",
    "FrameHeader", "Target", "OutputTag", "MeshSize", "StatusFlags", "WORD_LAYOUTS",
    "to_word", "from_word", "header", "checksum", "encode_frame", "decode_frames",
    "Frame", "FrameError", "target", "untarget", "output_tag", "unwrap_step",
    "status_payload", "parse_status",
]

WORD_BITS = 32            # every word of the link
SEQ_BITS = 8              # the sequence number a response echoes
STEP_BITS = 16            # the step number in an OUTPUT frame, modulo 2**STEP_BITS
MAGIC = 0x4E4C4F4D        # "NLOM", first word of the STATUS response
RESPONSE = 0x80           # response opcode = command opcode | RESPONSE
MAX_PAYLOAD = 510         # payload words a command frame may carry (the link's frame buffer)
STATUS_WORDS = 4          # payload words of the STATUS response
FABRIC_COUNTERS = ("cycles", "steps", "barrier_wait_cycles", "flits_injected", "flits_ejected",
                   "overruns")


class Cmd(enum.IntEnum, shape=8):
    """Command opcodes (host -> fabric)."""
    WRITE = 0x01      # pairs (target, value): configuration writes
    READ = 0x02       # targets: configuration reads
    INJECT = 0x03     # pairs (target, payload): spikes into axons
    RUN = 0x04        # [steps]
    CLEAR = 0x05      # no payload: zero neuron state, step counter back to 0
    COUNTERS = 0x06   # no payload: the fabric counters
    STATUS = 0x07     # no payload: magic, mesh size, step, flags


class Opcode(enum.IntEnum, shape=8):
    """Every opcode on the wire: the commands, their responses, OUTPUT and ERROR."""
    WRITE = int(Cmd.WRITE)
    READ = int(Cmd.READ)
    INJECT = int(Cmd.INJECT)
    RUN = int(Cmd.RUN)
    CLEAR = int(Cmd.CLEAR)
    COUNTERS = int(Cmd.COUNTERS)
    STATUS = int(Cmd.STATUS)
    WRITE_RESP = Cmd.WRITE | RESPONSE
    READ_RESP = Cmd.READ | RESPONSE
    INJECT_RESP = Cmd.INJECT | RESPONSE
    RUN_RESP = Cmd.RUN | RESPONSE
    CLEAR_RESP = Cmd.CLEAR | RESPONSE
    COUNTERS_RESP = Cmd.COUNTERS | RESPONSE
    STATUS_RESP = Cmd.STATUS | RESPONSE
    OUTPUT = 0x90     # a host output of the fabric, forwarded while RUN executes (seq 0)
    ERROR = 0xFF      # a rejected command frame (seq of that frame)


OUTPUT = Opcode.OUTPUT
ERROR = Opcode.ERROR


class ErrorCode(enum.IntEnum, shape=8):
    """First payload word of an ERROR frame."""
    BAD_OPCODE = 1    # the opcode is not a command
    BAD_LENGTH = 2    # length field vs TLAST, payload longer than MAX_PAYLOAD, or wrong shape
    BAD_ADDRESS = 3   # a target outside the mesh, the memory or the axon table
    BAD_CHECKSUM = 4  # last word is not the sum of the others


# -- word layouts ---------------------------------------------------------------------------------

_COORD = FabricConfig.COORD_BITS
_ADDR = FabricConfig.ADDR_BITS


class FrameHeader(data.Struct):
    """First word of every frame."""
    opcode: Opcode
    seq: unsigned(SEQ_BITS)
    length: unsigned(16)       # payload words (header and checksum not counted)


class Target(data.Struct):
    """Payload word naming a tile and a flit address: a configuration address (``mem | index |
    part``, ``neuroloom.contract.layouts.cfg_addr_layout``) or, for INJECT, an axon. The reserved
    bits are ignored (a READ response echoes the target word as it was sent)."""
    x: unsigned(_COORD)
    y: unsigned(_COORD)
    addr: unsigned(_ADDR)
    _reserved: unsigned(WORD_BITS - 2 * _COORD - _ADDR)


class OutputTag(data.Struct):
    """First payload word of an OUTPUT frame (the second is the value, 32-bit signed)."""
    step: unsigned(STEP_BITS)  # the barrier's step counter, modulo 2**STEP_BITS
    channel: unsigned(WORD_BITS - STEP_BITS)


class MeshSize(data.Struct):
    """Second payload word of the STATUS response."""
    width: unsigned(8)
    height: unsigned(8)
    _reserved: unsigned(16)


class StatusFlags(data.Struct):
    """Fourth payload word of the STATUS response."""
    overrun: unsigned(1)       # sticky: some step took longer than its budget (barrier)
    _reserved: unsigned(WORD_BITS - 1)


WORD_LAYOUTS = (FrameHeader, Target, OutputTag, MeshSize, StatusFlags)


@functools.cache
def _spans(layout) -> tuple:
    """(name, offset, width) of the public fields of a one-word layout, from the layout."""
    cast = data.Layout.cast(layout)
    if cast.size != WORD_BITS:
        raise TypeError(f"{layout!r} is {cast.size} bits wide, not a {WORD_BITS}-bit word")
    return tuple((name, f.offset, Shape.cast(f.shape).width) for name, f in cast
                 if not name.startswith("_"))


def to_word(layout, **fields) -> int:
    """Pack one word of a word layout: ``to_word(Target, x=1, y=0, addr=5)``. Missing fields are
    zero; a value that does not fit its field raises ``ValueError`` naming it."""
    spans = {name: (offset, width) for name, offset, width in _spans(layout)}
    word = 0
    for name, value in fields.items():
        if name not in spans:
            raise ValueError(f"{layout.__name__} has no field {name!r}; fields: {list(spans)}")
        offset, width = spans[name]
        value = int(value)
        if not 0 <= value < 1 << width:
            raise ValueError(f"{layout.__name__}.{name} = {value} does not fit in {width} bits")
        word |= value << offset
    return word


def from_word(layout, word: int) -> dict:
    """The public fields of one word of a word layout, as plain integers."""
    word = int(word)
    return {name: word >> offset & ((1 << width) - 1) for name, offset, width in _spans(layout)}


# -- frames ---------------------------------------------------------------------------------------

class FrameError(ValueError):
    """A frame that cannot be decoded (host side)."""


@dataclass
class Frame:
    opcode: int
    seq: int = 0
    payload: list = field(default_factory=list)

    @property
    def is_error(self) -> bool:
        return self.opcode == ERROR

    def describe(self) -> str:
        if self.is_error:
            code = self.payload[0] if self.payload else 0
            name = ErrorCode(code).name if code in ErrorCode._value2member_map_ else str(code)
            return f"ERROR {name} (seq {self.seq})"
        return f"frame 0x{self.opcode:02x} seq {self.seq} ({len(self.payload)} words)"


def checksum(words) -> int:
    """The checksum word: the sum of the words modulo 2**WORD_BITS."""
    return sum(int(w) for w in words) % (1 << WORD_BITS)


def header(opcode: int, seq: int, length: int) -> int:
    """A :class:`FrameHeader` word (``opcode`` may be any 8-bit value, to forge bad frames)."""
    return to_word(FrameHeader, opcode=opcode, seq=seq, length=length)


def encode_frame(opcode: int, payload=(), seq: int = 0) -> list[int]:
    """Words of one frame (the last one, the checksum, goes with TLAST). Payload words are taken
    modulo 2**32 (a negative value is sent in two's complement)."""
    words = [header(opcode, seq, len(payload))] + [int(w) % (1 << WORD_BITS) for w in payload]
    return words + [checksum(words)]


def decode_frames(words, lasts=None) -> list[Frame]:
    """Split a word stream into frames (using TLAST if given, else the length fields) and check
    each checksum; raises :class:`FrameError` on a malformed stream."""
    words = [int(w) for w in words]
    frames, i = [], 0
    while i < len(words):
        head = from_word(FrameHeader, words[i])
        end = i + head["length"] + 1
        if end >= len(words):
            raise FrameError(f"truncated frame at word {i}: header says {head['length']} "
                             f"payload words")
        if lasts is not None and (not lasts[end] or any(lasts[i:end])):
            raise FrameError(f"TLAST does not match the length field of the frame at word {i}")
        if checksum(words[i:end]) != words[end]:
            raise FrameError(f"bad checksum in the frame at word {i}")
        frames.append(Frame(head["opcode"], head["seq"], words[i + 1:end]))
        i = end + 1
    return frames


# -- payload words --------------------------------------------------------------------------------

def target(x: int, y: int, addr: int) -> int:
    """A :class:`Target` word: tile (x, y), flit address ``addr``."""
    return to_word(Target, x=x, y=y, addr=addr)


def untarget(word: int) -> tuple[int, int, int]:
    """(x, y, addr) of a :class:`Target` word (reserved bits ignored)."""
    t = from_word(Target, word)
    return t["x"], t["y"], t["addr"]


def output_tag(step: int, channel: int) -> int:
    """The :class:`OutputTag` word of a host output of ``step`` on ``channel``."""
    return to_word(OutputTag, step=step % (1 << STEP_BITS), channel=channel)


def unwrap_step(wire_step: int, since: int) -> int:
    """The full step number of an OUTPUT frame's ``step`` field, for a run that started at step
    ``since`` and lasts fewer than 2**STEP_BITS steps."""
    return since + (wire_step - since) % (1 << STEP_BITS)


def status_payload(mesh_w: int, mesh_h: int, step: int, overrun: bool) -> list[int]:
    """The STATUS response payload: [MAGIC, MeshSize, step, StatusFlags]."""
    return [MAGIC, to_word(MeshSize, width=mesh_w, height=mesh_h), step % (1 << WORD_BITS),
            to_word(StatusFlags, overrun=int(overrun))]


def parse_status(payload) -> dict:
    """Fields of a STATUS response payload (``FrameError`` if it is not one)."""
    if len(payload) != STATUS_WORDS or payload[0] != MAGIC:
        raise FrameError(f"STATUS answered {list(payload)!r}, not a NeuroLoom fabric "
                         f"(expected [0x{MAGIC:08X}, mesh, step, flags])")
    mesh, flags = from_word(MeshSize, payload[1]), from_word(StatusFlags, payload[3])
    return {"mesh_w": mesh["width"], "mesh_h": mesh["height"], "step": int(payload[2]),
            "overrun": bool(flags["overrun"])}
