"""The simulated fabrics as driver transports (found by name through the transport registry).

* :class:`GoldenTransport` -- the golden model (:class:`neuroloom.sim.golden.GoldenFabric`),
  many samples side by side.
* :class:`ModelLink` -- the host link reference model (:class:`HostLinkModel`) over a golden
  fabric: a framed link, so the driver's framed transport runs the whole host protocol on it.
"""

from __future__ import annotations

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.transport import ARCH_COUNTERS, DriverError, StepOutput, Transport

from .golden import GoldenFabric
from .hostlink_model import HostLinkModel

__all__ = ["GoldenTransport", "ModelLink"]


class ModelLink:
    """A link to the host link reference model driving a golden fabric of ``cfg``."""

    def __init__(self, cfg: FabricConfig):
        self.cfg = cfg
        self.model = HostLinkModel(GoldenFabric(cfg, 1))
        self.frames_sent = 0

    def exchange(self, words: list[int]) -> list[int]:
        self.frames_sent += 1
        return self.model.process(words, [0] * (len(words) - 1) + [1])


class GoldenTransport(Transport):
    """The golden model (:class:`sim.golden.GoldenFabric`) as a transport.

    ``max_batch`` samples run side by side; changing the batch rebuilds the model and replays
    the configuration writes seen so far, so construct it with the ``batch`` you will use.
    """

    def __init__(self, cfg: FabricConfig | None = None, batch: int = 1, max_batch: int = 256):
        self.max_batch = max(1, int(max_batch))
        self.batch = max(1, min(int(batch), self.max_batch))
        self.fabric = None
        self._log: dict = {}
        if cfg is not None:
            self.open(cfg)

    def open(self, cfg: FabricConfig) -> None:
        """A fresh golden fabric (power-on state: every memory zero)."""
        self.cfg = cfg
        self.fabric = GoldenFabric(cfg, self.batch)
        self._log = {}

    def _need(self):
        if self.fabric is None:
            raise DriverError("transport not opened: load an image first")
        return self.fabric

    def set_batch(self, batch: int) -> int:
        batch = max(1, min(int(batch), self.max_batch))
        if batch != self.batch and self.fabric is not None:
            self.fabric = GoldenFabric(self.cfg, batch)
            for (c, m, i, p), v in self._log.items():
                self.fabric.write(c, m, i, p, v)
        self.batch = batch
        return batch

    def write(self, core, mem, index, part, value):
        self._need().write(core, mem, index, part, value)
        self._log[(core, mem, index, part)] = value

    def write_many(self, writes):
        f = self._need()
        for c, m, i, p, v in writes:
            f.write(c, m, i, p, v)
            self._log[(c, m, i, p)] = v

    def read(self, core, mem, index, part):
        return self._need().read(core, mem, index, part)

    def inject(self, core, axon, payload):
        self._need().inject(core, axon, payload)

    def run(self, steps):
        f = self._need()
        out = []
        for _ in range(steps):
            r = f.step()
            out.append(StepOutput(r.step, r.channels, r.payload, r.valid))
        return out

    def clear(self):
        self._need().clear()

    def counters(self):
        f = self._need()
        return f.counters[:, :, list(ARCH_COUNTERS)].copy()
