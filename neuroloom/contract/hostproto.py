"""Host link frame protocol: encoding and decoding of the 32-bit word frames.

Every frame, in both directions, is a sequence of 32-bit words on an AXI4-Stream-shaped link::

    header    = opcode (bits 0..7) | seq (bits 8..15) | length (bits 16..31, payload words)
    payload   = length words
    checksum  = (sum of header and payload words) mod 2**32;  TLAST is set on this word

Commands (host -> fabric) and their payloads; every command is answered by exactly one response
frame with opcode ``command | 0x80`` and the same ``seq``, or by an ERROR frame:

- WRITE 0x01: pairs (target, value), each a CFG_WRITE. Response: no payload.
- READ 0x02: targets, each a CFG_READ. Response: pairs (target, value), in target order.
- INJECT 0x03: pairs (target, payload), each a SPIKE to an axon (payload saturated to
  state_width). Response: no payload.
- RUN 0x04: [steps]: run that many steps. Response: [step counter after the run].
- CLEAR 0x05: no payload; zero neuron state, restart at step 0. Response: no payload.
- COUNTERS 0x06: no payload. Response: the fabric counters (``FABRIC_COUNTERS``).
- STATUS 0x07: no payload. Response: [MAGIC, mesh_w | mesh_h << 8, step, flags].

``target = x (bits 0..3) | y (bits 4..7) | addr (bits 8..27)``: the tile and the flit address
(a configuration address ``mem|index|part``, or an axon for INJECT).

While RUN executes, every HOST_OUT flit is forwarded at once as an OUTPUT frame
(opcode 0x90, seq 0) with payload ``[step | channel << 16, value]``; the RUN response follows the
last output of the run.

Errors (opcode 0xFF, seq of the bad frame, payload ``[code, header]``): BAD_OPCODE,
BAD_LENGTH (length field disagrees with TLAST, odd pair count, or longer than the buffer),
BAD_ADDRESS (tile outside the mesh or address outside the memory), BAD_CHECKSUM. A bad frame
is rejected as a whole before any of it executes: it changes no state.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = ["Cmd", "ErrorCode", "Frame", "FrameError", "encode_frame", "decode_frames", "target",
           "untarget", "OUTPUT", "ERROR", "MAGIC", "MAX_PAYLOAD", "FABRIC_COUNTERS", "checksum"]

MAGIC = 0x4E4C4F4D        # "NLOM"
OUTPUT = 0x90
ERROR = 0xFF
RESPONSE = 0x80
MAX_PAYLOAD = 510         # payload words a command frame may carry (the link's frame buffer)
FABRIC_COUNTERS = ("cycles", "steps", "barrier_wait_cycles", "flits_injected", "flits_ejected",
                   "overruns")


class Cmd(enum.IntEnum):
    WRITE = 0x01
    READ = 0x02
    INJECT = 0x03
    RUN = 0x04
    CLEAR = 0x05
    COUNTERS = 0x06
    STATUS = 0x07


class ErrorCode(enum.IntEnum):
    BAD_OPCODE = 1
    BAD_LENGTH = 2
    BAD_ADDRESS = 3
    BAD_CHECKSUM = 4


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
    return sum(int(w) for w in words) & 0xFFFFFFFF


def header(opcode: int, seq: int, length: int) -> int:
    return (opcode & 0xFF) | (seq & 0xFF) << 8 | (length & 0xFFFF) << 16


def encode_frame(opcode: int, payload=(), seq: int = 0) -> list[int]:
    """Words of one frame (the last one, the checksum, goes with TLAST)."""
    words = [header(opcode, seq, len(payload))] + [int(w) & 0xFFFFFFFF for w in payload]
    return words + [checksum(words)]


def target(x: int, y: int, addr: int) -> int:
    return (x & 0xF) | (y & 0xF) << 4 | (addr & 0xFFFFF) << 8


def untarget(word: int) -> tuple[int, int, int]:
    return word & 0xF, (word >> 4) & 0xF, (word >> 8) & 0xFFFFF


def decode_frames(words, lasts=None) -> list[Frame]:
    """Split a word stream into frames (using TLAST if given, else the length fields) and check
    each checksum; raises :class:`FrameError` on a malformed stream."""
    words = [int(w) for w in words]
    frames, i = [], 0
    while i < len(words):
        length = words[i] >> 16
        end = i + length + 1
        if end >= len(words):
            raise FrameError(f"truncated frame at word {i}: header says {length} payload words")
        if lasts is not None and (not lasts[end] or any(lasts[i:end])):
            raise FrameError(f"TLAST does not match the length field of the frame at word {i}")
        if checksum(words[i:end]) != words[end]:
            raise FrameError(f"bad checksum in the frame at word {i}")
        frames.append(Frame(words[i] & 0xFF, (words[i] >> 8) & 0xFF, words[i + 1:end]))
        i = end + 1
    return frames
