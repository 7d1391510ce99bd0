"""The transport that speaks the host link's framed protocol
(:mod:`neuroloom.contract.hostproto`).

:class:`FramedTransport` implements :class:`neuroloom.contract.transport.Transport` on top of
any *link*: an object with ``exchange(words) -> words`` that sends one command frame (TLAST on
its last word) and returns every word the fabric answers up to and including the command's
response frame (OUTPUT frames of a RUN come first). Links:

* :class:`neuroloom.sim.transports.ModelLink` -- the host link reference model over the golden
  fabric; proves the driver + protocol path end to end.
* :class:`neuroloom.sim.verilator_link.VerilatorLink` -- the fabric RTL under Verilator.
"""

from __future__ import annotations

import numpy as np

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.hostproto import (
    MAX_PAYLOAD,
    OUTPUT,
    RESPONSE,
    SEQ_BITS,
    WORD_BITS,
    Cmd,
    FrameError,
    OutputTag,
    decode_frames,
    encode_frame,
    from_word,
    parse_status,
    target,
    unwrap_step,
)
from neuroloom.contract.layouts import Mem, cfg_addr_layout, pack, to_signed
from neuroloom.contract.transport import ARCH_COUNTERS, DriverError, StepOutput, Transport

__all__ = ["FramedTransport"]


class FramedTransport(Transport):
    """The driver's transport over a framed host link (batch 1)."""

    def __init__(self, link):
        self.link = link
        self.cfg = None
        self.t = 0
        self._seq = 0
        self._inject: list[int] = []

    # -- framing ----------------------------------------------------------------------------------
    def _command(self, op: Cmd, payload=()):
        """Send one command; returns (OUTPUT frames, response payload)."""
        self._seq = (self._seq + 1) % (1 << SEQ_BITS)
        try:
            frames = decode_frames(self.link.exchange(encode_frame(op, list(payload), self._seq)))
        except FrameError as e:
            raise DriverError(f"host link: {e}") from None
        if not frames:
            raise DriverError(f"host link: no response to {op.name}")
        resp = frames[-1]
        if resp.is_error or resp.opcode != op | RESPONSE or resp.seq != self._seq:
            raise DriverError(f"host link: {op.name} answered with {resp.describe()}")
        return [f for f in frames[:-1] if f.opcode == OUTPUT], resp.payload

    def _target(self, core: int, addr: int) -> int:
        x, y = self.cfg.core_xy(core)
        return target(x, y, addr)

    def _cfg_target(self, core, mem, index, part) -> int:
        return self._target(core, pack(cfg_addr_layout(self.cfg), mem=int(mem), index=index,
                                       part=part))

    # -- Transport --------------------------------------------------------------------------------
    def open(self, cfg: FabricConfig) -> None:
        self.cfg = cfg
        try:
            status = parse_status(self._command(Cmd.STATUS)[1])
        except FrameError as e:
            raise DriverError(f"host link: {e}") from None
        w, h = status["mesh_w"], status["mesh_h"]
        if (w, h) != (cfg.mesh_w, cfg.mesh_h):
            raise DriverError(f"the image is for a {cfg.mesh_w}x{cfg.mesh_h} mesh, the fabric "
                              f"is {w}x{h}")

    def write(self, core, mem, index, part, value):
        self.write_many([(core, mem, index, part, value)])

    def write_many(self, writes):
        words: list[int] = []
        for c, m, i, p, v in writes:
            words += [self._cfg_target(c, m, i, p), int(v)]
            if len(words) + 2 > MAX_PAYLOAD:
                self._command(Cmd.WRITE, words)
                words = []
        if words:
            self._command(Cmd.WRITE, words)

    def read(self, core, mem, index, part):
        _, resp = self._command(Cmd.READ, [self._cfg_target(core, mem, index, part)])
        return int(resp[1])

    def inject(self, core, axon, payload):
        if np.ndim(payload):
            raise ValueError("a framed link runs one sample at a time (scalar payloads)")
        self._inject += [self._target(core, axon), int(payload)]

    def _flush_injects(self):
        while self._inject:
            chunk, self._inject = self._inject[:MAX_PAYLOAD], self._inject[MAX_PAYLOAD:]
            self._command(Cmd.INJECT, chunk)

    def run(self, steps):
        self._flush_injects()
        t0 = self.t
        outs, resp = self._command(Cmd.RUN, [steps])
        self.t = int(resp[0]) if resp else t0 + steps
        per_step: dict = {}
        for f in outs:
            for a, v in zip(f.payload[0::2], f.payload[1::2]):
                tag = from_word(OutputTag, a)
                per_step.setdefault(unwrap_step(tag["step"], t0), []).append(
                    (tag["channel"], to_signed(int(v), WORD_BITS)))
        result = []
        for s in range(t0, t0 + steps):
            rec = per_step.get(s, [])
            result.append(StepOutput(s, np.array([c for c, _ in rec], dtype=np.int64),
                                     np.array([[v for _, v in rec]], dtype=np.int64),
                                     np.ones((1, len(rec)), dtype=bool)))
        return result

    def clear(self):
        self._inject = []
        self._command(Cmd.CLEAR)
        self.t = 0

    def counters(self):
        cfg = self.cfg
        tg = [self._cfg_target(c, Mem.COUNTER, int(k), 0)
              for c in range(cfg.num_cores) for k in ARCH_COUNTERS]
        vals: list[int] = []
        for i in range(0, len(tg), MAX_PAYLOAD // 2):
            vals += self._command(Cmd.READ, tg[i:i + MAX_PAYLOAD // 2])[1][1::2]
        return np.array(vals, dtype=np.int64).reshape(1, cfg.num_cores, len(ARCH_COUNTERS))
