"""Reference model of the host link: command frames in, response frames out, over the golden
fabric. The RTL host link must answer every frame the same way (OUTPUT frames of one step may
come in any order on the RTL: the NoC does not order them; compare them per step as a set).
See ``neuroloom.contract.hostproto`` and ``docs/hostlink.md`` for the frame format.
"""

from __future__ import annotations

from neuroloom.contract.coreconfig import ConfigError
from neuroloom.contract.hostproto import (
    ERROR,
    MAX_PAYLOAD,
    OUTPUT,
    RESPONSE,
    WORD_BITS,
    Cmd,
    ErrorCode,
    FrameHeader,
    checksum,
    encode_frame,
    from_word,
    output_tag,
    status_payload,
    untarget,
)
from neuroloom.contract.layouts import Mem, cfg_addr_layout, mem_depth, mem_parts, to_signed, unpack

from .golden import GoldenFabric

__all__ = ["HostLinkModel"]

_PAIRS = (Cmd.WRITE, Cmd.INJECT)
_NO_PAYLOAD = (Cmd.CLEAR, Cmd.COUNTERS, Cmd.STATUS)


class HostLinkModel:
    """Host link over a :class:`GoldenFabric` (batch 1)."""

    def __init__(self, fabric: GoldenFabric):
        if fabric.batch != 1:
            raise ValueError("the host link model drives a fabric of batch 1")
        self.fabric = fabric
        self.cfg = fabric.cfg
        self.steps_run = 0

    # -- validation -------------------------------------------------------------------------------
    def _tile(self, word):
        x, y, addr = untarget(word)
        if x >= self.cfg.mesh_w or y >= self.cfg.mesh_h:
            return None
        return self.cfg.core_index(x, y), addr

    def _cfg_addr_ok(self, addr) -> bool:
        a = unpack(cfg_addr_layout(self.cfg), addr)
        if a["mem"] not in Mem._value2member_map_:
            return False
        mem = Mem(a["mem"])
        return a["index"] < mem_depth(self.cfg, mem) and a["part"] < mem_parts(self.cfg, mem)

    def check(self, words: list[int]) -> ErrorCode | None:
        """The error a complete frame (header .. checksum) gets, or None if it is good."""
        head, payload = from_word(FrameHeader, words[0]), words[1:-1]
        if len(payload) != head["length"] or len(payload) > MAX_PAYLOAD:
            return ErrorCode.BAD_LENGTH
        if checksum(words[:-1]) != words[-1]:
            return ErrorCode.BAD_CHECKSUM
        op = head["opcode"]
        if op not in Cmd._value2member_map_:
            return ErrorCode.BAD_OPCODE
        op = Cmd(op)
        if (op in _PAIRS and len(payload) % 2) or (op in _NO_PAYLOAD and payload) or \
                (op == Cmd.RUN and len(payload) != 1):
            return ErrorCode.BAD_LENGTH
        targets = payload[0::2] if op in _PAIRS else payload if op == Cmd.READ else []
        for t in targets:
            tile = self._tile(t)
            if tile is None:
                return ErrorCode.BAD_ADDRESS
            if op == Cmd.INJECT and tile[1] >= self.cfg.axons:
                return ErrorCode.BAD_ADDRESS
            if op != Cmd.INJECT and not self._cfg_addr_ok(tile[1]):
                return ErrorCode.BAD_ADDRESS
        return None

    # -- execution ---------------------------------------------------------------------------
    def execute(self, words: list[int]) -> list[int]:
        """Response words (one or more frames) for one complete command frame."""
        err = self.check(words)
        head = from_word(FrameHeader, words[0])
        seq = head["seq"]
        if err is not None:
            return encode_frame(ERROR, [int(err), words[0]], seq)
        op, payload, f = Cmd(head["opcode"]), words[1:-1], self.fabric
        resp: list[int] = []
        out: list[int] = []
        if op == Cmd.WRITE:
            for t, v in zip(payload[0::2], payload[1::2]):
                core, addr = self._tile(t)
                a = unpack(cfg_addr_layout(self.cfg), addr)
                f.write(core, a["mem"], a["index"], a["part"], v)
        elif op == Cmd.READ:
            for t in payload:
                core, addr = self._tile(t)
                a = unpack(cfg_addr_layout(self.cfg), addr)
                resp += [t, f.read(core, a["mem"], a["index"], a["part"])]
        elif op == Cmd.INJECT:
            for t, v in zip(payload[0::2], payload[1::2]):
                core, axon = self._tile(t)
                value = to_signed(v, WORD_BITS)
                lo, hi = -(1 << (self.cfg.state_width - 1)), (1 << (self.cfg.state_width - 1)) - 1
                f.inject(core, axon, min(max(value, lo), hi))
        elif op == Cmd.RUN:
            for _ in range(payload[0]):
                r = f.step()
                for ch, v, ok in zip(r.channels, r.payload[0], r.valid[0]):
                    if ok:
                        out += encode_frame(OUTPUT, [output_tag(r.step, int(ch)), int(v)])
                self.steps_run += 1
            resp = [f.t]
        elif op == Cmd.CLEAR:
            f.clear()
        elif op == Cmd.COUNTERS:
            resp = [0, f.t, 0, 0, 0, 0]      # cycle-level counters are the RTL's own
        elif op == Cmd.STATUS:
            resp = status_payload(self.cfg.mesh_w, self.cfg.mesh_h, f.t, overrun=False)
        return out + encode_frame(op | RESPONSE, resp, seq)

    def process(self, words, lasts) -> list[int]:
        """A raw word stream with TLAST flags -> all response words. Framing errors (TLAST not
        where the length says) answer BAD_LENGTH and resynchronize after the next TLAST."""
        out, frame = [], []
        for w, last in zip(words, lasts):
            frame.append(int(w) % (1 << WORD_BITS))
            if last:
                if len(frame) < 2:
                    out += encode_frame(ERROR, [int(ErrorCode.BAD_LENGTH), frame[0]],
                                        from_word(FrameHeader, frame[0])["seq"])
                else:
                    try:
                        out += self.execute(frame)
                    except ConfigError as e:      # a config the fabric cannot run
                        raise RuntimeError(f"fabric rejected the loaded configuration: {e}") from e
                frame = []
        return out
