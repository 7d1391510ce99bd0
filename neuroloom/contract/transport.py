"""The driver/fabric interface: what a host driver needs from any fabric, real or modelled.

A :class:`Transport` is the narrow waist between the host driver (:mod:`neuroloom.firmware.driver`)
and a fabric: configuration word writes/reads, spike injection, running N steps while collecting
host outputs, CLEAR and the architectural counters. It lives in the contract layer so that the
golden model (:mod:`neuroloom.sim`) can implement it without depending on the driver, and the
driver can use any implementation without depending on the simulators.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from .config import FabricConfig
from .layouts import Counter, Mem

__all__ = ["Transport", "StepOutput", "DriverError", "ARCH_COUNTERS"]

ARCH_COUNTERS = (Counter.NEURON_UPDATES, Counter.SYN_OPS, Counter.SPIKES_SENT,
                 Counter.SPIKES_RECEIVED)


class DriverError(RuntimeError):
    """The fabric did not behave as the image promised (missing output, no image loaded)."""


@dataclass
class StepOutput:
    """Host outputs of one step: ``payload[b, i]`` on ``channels[i]`` where ``valid[b, i]``."""
    step: int
    channels: np.ndarray   # (K,)
    payload: np.ndarray    # (B, K)
    valid: np.ndarray      # (B, K) bool


class Transport(ABC):
    """What a driver needs from a fabric. ``batch``: samples run side by side (1 on hardware).

    Implementations: :class:`neuroloom.sim.transports.GoldenTransport` (the golden model) and
    :class:`neuroloom.firmware.transports.FramedTransport` over a framed host link (the host
    link reference model, the Verilator RTL). The driver finds them by name through
    :func:`neuroloom.firmware.driver.open_transport`.
    """

    cfg: FabricConfig | None = None
    batch: int = 1
    max_batch: int = 1

    @abstractmethod
    def open(self, cfg: FabricConfig) -> None:
        """Attach to a fabric with parameters ``cfg`` (hardware: check that it matches)."""

    @abstractmethod
    def write(self, core: int, mem: int, index: int, part: int, value: int) -> None:
        """One configuration write (a CFG_WRITE flit)."""

    def write_many(self, writes) -> None:
        """Many ``(core, mem, index, part, value)`` writes (transports may stream them)."""
        for w in writes:
            self.write(*w)

    @abstractmethod
    def read(self, core: int, mem: int, index: int, part: int) -> int:
        """One configuration read (CFG_READ -> READ_RESP); sample 0 on batched transports."""

    @abstractmethod
    def inject(self, core: int, axon: int, payload) -> None:
        """A host spike to ``axon`` of ``core`` before the next step; payload scalar or (B,)."""

    @abstractmethod
    def run(self, steps: int) -> list[StepOutput]:
        """Run ``steps`` steps; the host outputs of each."""

    @abstractmethod
    def clear(self) -> None:
        """Zero all neuron state and accumulators; the next step is step 0."""

    def set_batch(self, batch: int) -> int:
        """Ask for ``batch`` samples side by side; returns the batch actually used."""
        return self.batch

    def counters(self) -> np.ndarray:
        """(batch, cores, 4) architectural counters, through the generic config read path."""
        cfg = self.cfg
        out = np.zeros((1, cfg.num_cores, len(ARCH_COUNTERS)), dtype=np.int64)
        for c in range(cfg.num_cores):
            for i, k in enumerate(ARCH_COUNTERS):
                out[0, c, i] = self.read(c, Mem.COUNTER, int(k), 0)
        return out

    def close(self) -> None:
        """Release the link (serial port, simulator); the default has nothing to release."""
        return None
