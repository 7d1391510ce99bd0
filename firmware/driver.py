"""Host driver: one API to load a config image, stream tokens and read results, over transports.

A :class:`Transport` is the narrow waist between the driver and a fabric: configuration word
writes/reads, spike injection, running N steps while collecting host outputs, CLEAR and the
architectural counters. :class:`GoldenTransport` runs the bit-exact golden model
(:mod:`sim.golden`, many samples side by side); a Verilator (cocotb) transport and a serial
(FPGA board, framed host protocol) transport implement the same methods, and the driver code
is the same for all of them.

Usage::

    from firmware import image
    from firmware.driver import Driver, GoldenTransport
    drv = Driver(GoldenTransport())
    drv.load(image.load("model.nlimg"))
    res = drv.run(tokens, mode="pipelined")     # tokens: (K, d_in) or (B, K, d_in) payloads
    res.logits, res.running                      # final and per-token running logits (int)

Token timing (see :mod:`firmware.compiler`): token k of a sequence is injected before step
``k * period`` (period 1 pipelined, S fall-through) and its running logits are the decoder's
host outputs at step ``first_output + k * period``. Each sequence starts from CLEAR.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from hw.config import FabricConfig
from hw.layouts import Counter, Mem

from .fixed import sat
from .image import Image

__all__ = ["Transport", "StepOutput", "GoldenTransport", "Driver", "RunResult", "DriverError",
           "ARCH_COUNTERS"]

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

    Implementations: :class:`GoldenTransport`; later ``VerilatorTransport`` (cocotb, RTL) and
    ``SerialTransport`` (board over UART, framed host protocol in docs/).
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

    def close(self) -> None:  # noqa: B027 -- optional hook, nothing to release by default
        """Release the link (serial port, simulator); the default has nothing to release."""


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
        from sim.golden import GoldenFabric  # sim depends on firmware, not the other way round
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
            from sim.golden import GoldenFabric
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


@dataclass
class RunResult:
    """``running[b, k]``: integer logits after token k; ``logits`` = ``running[:, -1]``;
    ``counters`` (cores, 4): architectural counters of this run, summed over the samples."""
    logits: np.ndarray
    running: np.ndarray
    steps: int
    mode: str
    counters: np.ndarray
    out_scale: float = 1.0

    @property
    def predictions(self) -> np.ndarray:
        return np.argmax(self.logits, axis=-1)


class Driver:
    """Load a config image onto a fabric through ``transport`` and stream token sequences."""

    def __init__(self, transport: Transport):
        self.transport = transport
        self.image: Image | None = None
        self.mode: str | None = None

    # -- configuration --------------------------------------------------------------------------
    def load(self, image: Image, verify: bool = False) -> None:
        """Send every configuration write of ``image``; ``verify`` reads each word back."""
        t = self.transport
        t.open(image.cfg)
        t.write_many(image.writes)
        if verify:
            for c, m, i, p, v in image.writes:
                got = t.read(c, m, i, p)
                if got != v:
                    raise DriverError(f"config read-back mismatch at core {c} "
                                      f"{Mem(m).name}[{i}].{p}: wrote {v:#x}, read {got:#x}")
        self.image, self.mode = image, image.mode
        t.clear()

    def set_mode(self, mode: str) -> None:
        """Switch the schedule (rewrites only the group descriptors)."""
        img = self._img()
        if mode == self.mode:
            return
        sched = img._sched(mode)
        self.transport.write_many([tuple(w) for w in sched["group_writes"]])
        self.mode = mode

    def clear(self) -> None:
        self.transport.clear()

    def _img(self) -> Image:
        if self.image is None:
            raise DriverError("no image loaded (call Driver.load first)")
        return self.image

    # -- I/O ------------------------------------------------------------------------------------
    def quantize(self, x) -> np.ndarray:
        """Float token values -> integer payloads, as :meth:`QModel.quantize_input`."""
        img = self._img()
        scale = float(img.model.get("in_scale", 1.0))
        return sat(np.floor(np.asarray(x, dtype=np.float64) * scale + 0.5).astype(np.int64),
                   img.cfg.state_width)

    def run(self, tokens, mode: str | None = None, progress=None) -> RunResult:
        """Stream sequences of integer payloads through the fabric.

        tokens : (K, d_in) or (B, K, d_in) integer payloads (use :meth:`quantize` for floats)
        mode   : "pipelined" or "fall-through" (default: the image's)
        progress : optional callable(n_done_samples) after each batch chunk
        """
        img = self._img()
        mode = mode or self.mode
        self.set_mode(mode)
        x = np.asarray(tokens)
        if not np.issubdtype(x.dtype, np.integer):
            raise ValueError("tokens must be integer payloads; use Driver.quantize for floats")
        single = x.ndim == 2
        if single:
            x = x[None]
        if x.ndim != 3 or x.shape[2] != len(img.inputs):
            raise ValueError(f"tokens of shape {np.shape(tokens)}: expected (K, {len(img.inputs)})"
                             f" or (B, K, {len(img.inputs)})")
        x = x.astype(np.int64)
        lim = 1 << (img.cfg.state_width - 1)
        if x.size and (x.min() < -lim or x.max() >= lim):
            raise ValueError(f"token payloads outside the {img.cfg.state_width}-bit range")
        B, K, _ = x.shape
        n_cls = len(img.outputs)
        running = np.zeros((B, K, n_cls), dtype=np.int64)
        counters = np.zeros((img.cfg.num_cores, len(ARCH_COUNTERS)), dtype=np.int64)
        steps = 0
        t = self.transport
        bs = t.set_batch(min(B, t.max_batch))
        for b0 in range(0, B, bs):
            chunk = x[b0:b0 + bs]
            n = len(chunk)
            if n < bs:
                chunk = np.concatenate([chunk, np.zeros((bs - n,) + chunk.shape[1:], np.int64)])
            before = t.counters()
            r, steps = self._run_chunk(chunk, mode)
            running[b0:b0 + n] = r[:n]
            counters += (t.counters() - before)[:n].sum(axis=0)
            if progress:
                progress(n)
        if single:
            running = running[0]
        return RunResult(running[..., -1, :] if K else running[..., 0, :], running, steps, mode,
                         counters, float(img.model.get("out_scale", 1.0)))

    def _run_chunk(self, x: np.ndarray, mode: str):
        img, t = self._img(), self.transport
        B, K, _ = x.shape
        period = img.token_period(mode)
        out_steps = {img.output_step(mode, k): k for k in range(K)}
        total = img.output_step(mode, K - 1) + 1 if K else 0
        chan = [o[2] for o in img.outputs]
        running = np.zeros((B, K, len(chan)), dtype=np.int64)
        seen = np.zeros(K, dtype=bool)
        t.clear()
        step = 0
        while step < total:
            k = step // period
            if step % period == 0 and k < K:
                for i, dests in enumerate(img.inputs):
                    # every feature is sent, zeros included: skipping zeros would make the
                    # counters depend on how samples are batched (a batch skips only all-zero)
                    v = x[:, k, i]
                    for core, axon in dests:
                        t.inject(core, axon, v if B > 1 else int(v[0]))
            n = period if k < K - 1 else total - step
            for so in t.run(n):
                kk = out_steps.get(so.step)
                if kk is None:
                    continue
                idx = {int(c): i for i, c in enumerate(so.channels)}
                for ci, ch in enumerate(chan):
                    i = idx.get(ch)
                    if i is None or not so.valid[:, i].all():
                        raise DriverError(f"no host output on channel {ch} at step {so.step} "
                                          f"(token {kk})")
                    running[:, kk, ci] = so.payload[:, i]
                seen[kk] = True
            step += n
        if not seen.all():
            raise DriverError(f"missing outputs for tokens {np.flatnonzero(~seen).tolist()}")
        return running, total

    # -- counters -------------------------------------------------------------------------------
    def read_counters(self) -> dict:
        """Architectural counters of every core (sample 0), read through config reads:
        ``{"neuron_updates": (cores,), "syn_ops": ..., "spikes_sent": ...,
        "spikes_received": ...}``.
        """
        t = self.transport
        cfg = self._img().cfg
        out = {k.name.lower(): np.zeros(cfg.num_cores, dtype=np.int64) for k in ARCH_COUNTERS}
        for c in range(cfg.num_cores):
            for k in ARCH_COUNTERS:
                out[k.name.lower()][c] = t.read(c, Mem.COUNTER, int(k), 0)
        return out
