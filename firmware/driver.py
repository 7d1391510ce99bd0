"""Host driver: one API to load a config image, stream tokens and read results, over transports.

A :class:`~neuroloom.contract.transport.Transport` is the narrow waist between the driver and
a fabric. Transports are found by name (:func:`open_transport`) in the ``neuroloom.transports``
entry-point group, so the driver never imports a simulator: ``golden`` (the bit-exact golden
model, many samples side by side), ``model`` (the host link reference model, whole host protocol)
and ``verilator`` (the RTL under Verilator). A registry entry may give a framed *link* (an object
with ``exchange(words) -> words``) instead of a transport; the driver wraps it in
:class:`~neuroloom.firmware.transports.FramedTransport`. The driver code is the same for all.

Usage::

    from neuroloom.contract import image
    from neuroloom.firmware.driver import Driver, open_transport
    drv = Driver(open_transport("golden"))
    drv.load(image.load("model.nlimg"))
    res = drv.run(tokens, mode="pipelined")     # tokens: (K, d_in) or (B, K, d_in) payloads
    res.logits, res.running                      # final and per-token running logits (int)

Token timing (see :mod:`firmware.compiler`): token k of a sequence is injected before step
``k * period`` (period 1 pipelined, S fall-through) and its running logits are the decoder's
host outputs at step ``first_output + k * period``. Each sequence starts from CLEAR.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from importlib.metadata import entry_points

import numpy as np

from neuroloom.contract.fixed import smax, smin
from neuroloom.contract.image import Image
from neuroloom.contract.layouts import Mem
from neuroloom.contract.transport import ARCH_COUNTERS, DriverError, Transport

from .transports import FramedTransport

__all__ = ["Driver", "RunResult", "DriverError", "SATURATION_POLICIES", "SaturationError",
           "SaturationWarning", "open_transport", "transport_names", "golden_driver",
           "ARCH_COUNTERS"]

TRANSPORT_GROUP = "neuroloom.transports"
#: what :meth:`Driver.quantize` does when a token value does not fit the payload width: saturate
#: it and warn (:class:`SaturationWarning`), or refuse the input (:class:`SaturationError`)
SATURATION_POLICIES = ("warn", "error")


class SaturationWarning(UserWarning):
    """Token values were clamped to the payload range (the result may differ from the float
    model's)."""


class SaturationError(DriverError):
    """Token values do not fit the payload range and the saturation policy is ``"error"``."""


def transport_names() -> list[str]:
    """The names of every registered transport (entry-point group ``neuroloom.transports``)."""
    return sorted(ep.name for ep in entry_points(group=TRANSPORT_GROUP))


def open_transport(name: str, **options) -> Transport:
    """The transport registered as ``name``, built with ``options``.

    A registry entry is a callable returning a :class:`Transport`, or a framed link (an object
    with ``exchange``), which is wrapped in :class:`FramedTransport`.

    Raises
    ------
    DriverError
        no transport of that name is registered (names the ones that are).
    """
    eps = {ep.name: ep for ep in entry_points(group=TRANSPORT_GROUP)}
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none: is neuroloom installed (pip install -e .)?"
        raise DriverError(f"unknown transport {name!r}; registered transports: {known}")
    made = eps[name].load()(**options)
    return made if isinstance(made, Transport) else FramedTransport(made)



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

    def __init__(self, transport: Transport, saturation: str = "warn"):
        if saturation not in SATURATION_POLICIES:
            raise ValueError(f"saturation policy {saturation!r}: choose one of "
                             f"{', '.join(SATURATION_POLICIES)}")
        self.transport = transport
        self.saturation = saturation
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
    def quantize(self, x, saturation: str | None = None) -> np.ndarray:
        """Float token values -> integer payloads: ``floor(x * in_scale + 0.5)`` (round half
        up, as :meth:`QModel.quantize_input`), saturated to the signed payload width in floating
        point, so a huge value or +-inf becomes the largest or smallest payload (never a wrapped,
        sign-flipped one).

        ``saturation`` (default: the driver's, ``"warn"``): ``"warn"`` emits one
        :class:`SaturationWarning` counting the clamped values, ``"error"`` raises
        :class:`SaturationError` instead.

        Raises
        ------
        DriverError : a NaN among the values (it has no payload)
        SaturationError : values outside the payload range under the ``"error"`` policy
        """
        img = self._img()
        policy = self.saturation if saturation is None else saturation
        if policy not in SATURATION_POLICIES:
            raise ValueError(f"saturation policy {policy!r}: choose one of "
                             f"{', '.join(SATURATION_POLICIES)}")
        xf = np.asarray(x, dtype=np.float64)
        nan = np.isnan(xf)
        if nan.any():
            at = tuple(int(i) for i in np.argwhere(nan)[0])
            raise DriverError(f"token values include {int(nan.sum())} NaN (first at index "
                              f"{at}); a NaN has no payload: fix the input")
        scale = float(img.model.get("in_scale", 1.0))
        width = img.cfg.state_width
        lo, hi = smin(width), smax(width)
        with np.errstate(over="ignore", invalid="ignore"):
            v = np.floor(xf * scale + 0.5)                       # float64: +-inf stays +-inf
        out = (v < lo) | (v > hi)
        if out.any():
            msg = (f"{int(out.sum())} of {xf.size} token values saturate the {width}-bit payload "
                   f"range (input scale {scale:g}: values in [{lo / scale:.4g}, {hi / scale:.4g}]"
                   f" fit; the largest magnitude given is {np.abs(xf).max():.4g})")
            if policy == "error":
                raise SaturationError(f"{msg}; scale the inputs, or compile the model with "
                                      "calibration data like them")
            warnings.warn(SaturationWarning(msg), stacklevel=2)
        return np.clip(v, lo, hi).astype(np.int64)

    def run(self, tokens, mode: str | None = None, progress=None,
            lengths=None) -> RunResult:
        """Stream sequences of integer payloads through the fabric.

        tokens : (K, d_in) or (B, K, d_in) integer payloads (use :meth:`quantize` for floats)
        mode   : "pipelined" or "fall-through" (default: the image's)
        progress : optional callable(n_done_samples) after each batch chunk
        lengths : (B,) true lengths of sequences padded at the end (None: all K tokens). Each
                  chunk of samples run side by side is streamed for its longest sequence (a
                  one-sample chunk, as on the RTL, for exactly its length), from CLEAR; a
                  sequence's running logits are held at its last true token from there on, so
                  ``logits`` are every sequence's result (the model is causal: the padding
                  after a sequence never reaches its logits)
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
        if K == 0:                      # (there is no "last token" to read logits after)
            raise ValueError(f"tokens of shape {np.shape(tokens)}: no tokens; give at least one")
        if lengths is not None:
            lengths = np.asarray(lengths)
            if lengths.shape != (B,) or not np.issubdtype(lengths.dtype, np.integer) or (
                    B and (lengths.min() < 1 or lengths.max() > K)):
                raise ValueError(f"lengths of shape {lengths.shape}: give {B} integer lengths "
                                 f"in 1..{K}")
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
            kc = K if lengths is None else int(lengths[b0:b0 + n].max())
            before = t.counters()
            r, steps = self._run_chunk(chunk[:, :kc], mode)
            if lengths is None:
                running[b0:b0 + n] = r[:n]
            for j in range(n if lengths is not None else 0):
                m = int(lengths[b0 + j])
                running[b0 + j, :m] = r[j, :m]
                running[b0 + j, m:] = r[j, m - 1]
            counters += (t.counters() - before)[:n].sum(axis=0)
            if progress:
                progress(n)
        if single:
            running = running[0]
        return RunResult(running[..., -1, :], running, steps, mode, counters,
                         float(img.model.get("out_scale", 1.0)))

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


def golden_driver(batch: int = 64) -> Driver:
    """A driver on the golden fabric model, ``batch`` sequences side by side."""
    batch = max(1, batch)
    return Driver(open_transport("golden", batch=batch, max_batch=batch))
