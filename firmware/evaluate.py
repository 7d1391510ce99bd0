"""Evaluation loops over the verification ladder: float model, quantized reference, golden
fabric model and the fabric RTL, with the reports ``neuroloom eval`` and ``run`` print.

The golden model runs many sequences side by side (:func:`golden_eval`); the RTL runs one
sequence at a time through the host driver (:func:`rtl_eval`), counting the RTL clock cycles
of each where the link counts them (the Verilator link does). A board on a serial port
(:func:`serial_driver`) runs the same loop; it reports no clock cycles, so its lines give the
fabric's own counters (steps, synaptic operations) and the host's wall time over the UART
instead. Fabrics are reached through the driver's transport registry
(:func:`~neuroloom.firmware.driver.open_transport`), never by importing a simulator, so a
bench or a board script runs the same loops. Progress bars go to stderr; report lines go to
an ``out`` callable (``print`` by default).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.image import Image
from neuroloom.contract.layouts import Counter
from neuroloom.contract.transport import ARCH_COUNTERS

from .datasets import final_logits, hold_final
from .deploy import describe_image
from .driver import Driver, RunResult, golden_driver, open_transport
from .model import FloatModel
from .qmodel import QModel, qforward

__all__ = ["GoldenEval", "OpenRTL", "RTLEval", "RTL_TIMEOUT_S", "accuracy_float", "accuracy_q",
           "board_figures", "describe_link", "evaluate", "golden_driver", "golden_eval",
           "link_cycles", "progress_bar", "rtl_driver", "rtl_eval", "run_report",
           "serial_driver"]

#: seconds a Verilator simulation may take to start (its first build included)
RTL_TIMEOUT_S = 3600.0

#: opens a driver on the fabric RTL of a configuration: ``open_rtl(cfg, waves)`` is a context
#: manager yielding a :class:`Driver` (:func:`rtl_driver`, or the CLI's, which also reports
#: the Verilator build)
OpenRTL = Callable[[FabricConfig, bool], contextlib.AbstractContextManager]


def accuracy_float(model: FloatModel, x: np.ndarray, y: np.ndarray,
                   lengths: np.ndarray | None = None) -> float:
    """Test accuracy of the float model (running logits after each sequence's last true
    token; ``lengths`` None: the last token)."""
    return float(np.mean(model.predict(x, lengths) == y))


def accuracy_q(q: QModel, x: np.ndarray, y: np.ndarray, cfg: FabricConfig | None = None,
               batch: int = 512, lengths: np.ndarray | None = None) -> float:
    """Test accuracy of the quantized reference (:func:`~neuroloom.firmware.qmodel.qforward`),
    read at each sequence's last true token (``lengths``)."""
    hits = 0
    for i in range(0, len(x), batch):
        out = qforward(q, q.quantize_input(x[i:i + batch], cfg), cfg)
        n = None if lengths is None else lengths[i:i + batch]
        hits += int(np.sum(np.argmax(final_logits(out, n), axis=1) == y[i:i + batch]))
    return hits / len(x)


def progress_bar(total: int, desc: str):
    """A tqdm bar on stderr, gone when done."""
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="seq", dynamic_ncols=True, leave=False,
                file=sys.stderr)


def link_cycles(transport) -> int | None:
    """RTL clock cycles counted by a framed transport's link so far (None when its link does
    not count them, e.g. the golden model)."""
    return getattr(getattr(transport, "link", None), "cycles", None)


@contextlib.contextmanager
def rtl_driver(cfg: FabricConfig, waves: bool = False,
               timeout: float = RTL_TIMEOUT_S) -> Iterator[Driver]:
    """A driver on the fabric RTL of ``cfg`` under Verilator (transport ``verilator``), closed
    at the end; the first use of a configuration builds the simulator (minutes)."""
    transport = open_transport("verilator", cfg=cfg, waves=waves, timeout=timeout)
    try:
        yield Driver(transport)
    finally:
        transport.link.close()


@contextlib.contextmanager
def serial_driver(port: str, baud: int | None = None,
                  timeout: float | None = None) -> Iterator[Driver]:
    """A driver on a board at serial ``port`` (transport ``serial``), closed at the end. The
    board is asked for its STATUS at once, so a port that does not open or a board that does
    not answer fails here (:class:`~neuroloom.contract.transport.DriverError`), before any
    long computation; ``drv.transport.link.board_status`` holds the answer (mesh size)."""
    kw = {k: v for k, v in (("baud", baud), ("timeout", timeout)) if v is not None}
    transport = open_transport("serial", port=port, **kw)
    try:
        transport.link.status()
        yield Driver(transport)
    finally:
        transport.close()


def describe_link(transport) -> str:
    """How the host reaches a fabric, for report lines: a serial link's port and baud."""
    link = getattr(transport, "link", None)
    port, baud = getattr(link, "port_name", None), getattr(link, "baud", None)
    return f"serial {port} at {baud} baud" if port else type(transport).__name__


@dataclass
class GoldenEval:
    """The golden model on a test set: accuracy, logits that differ from the quantized
    reference (None when no reference was given), the run, wall seconds, and the samples that
    failed on a cluster (``(first, end, error)``; counted as wrong)."""
    accuracy: float
    mismatches: int | None
    result: RunResult
    seconds: float
    failed: list = field(default_factory=list)


def golden_eval(image: Image, x: np.ndarray, y: np.ndarray, mode: str, q: QModel | None = None,
                batch: int = 64, desc: str = "golden", workers: int = 1,
                scheduler: str | None = None, client=None,
                lengths: np.ndarray | None = None) -> GoldenEval:
    """Run the float tokens ``x`` (B, K, d_in) through ``image`` on the golden model; with
    ``q``, count the running logits that differ from the quantized reference. With
    ``workers`` > 1, a ``scheduler`` address or a Dask ``client``, the samples are sharded over
    a Dask cluster (:mod:`neuroloom.firmware.distributed`; the same result bit for bit).
    ``lengths``: true lengths of sequences padded at the end; each sequence's running logits
    are held at its last true token (the model is causal: padding never reaches them)."""
    failed = []
    if workers > 1 or scheduler or client is not None:
        from .distributed import golden_run

        host = golden_driver(1)                 # quantizes as a serial run does
        host.load(image)
        xq = host.quantize(x)
        t0 = time.perf_counter()
        with progress_bar(len(x), f"{desc} ({mode})") as bar:
            sr = golden_run(image, xq, mode, client=client, workers=workers,
                            scheduler=scheduler, batch=batch, progress=bar.update)
        seconds = time.perf_counter() - t0
        K = xq.shape[1]
        running = hold_final(sr.running, lengths)
        res = RunResult(running[:, -1] if K else running[:, 0], running, sr.steps,
                        mode, sr.counters, float(image.model.get("out_scale", 1.0)))
        failed = sr.failed
    else:
        drv = golden_driver(min(batch, len(x)))
        drv.load(image)
        xq = drv.quantize(x)
        t0 = time.perf_counter()
        with progress_bar(len(x), f"{desc} ({mode})") as bar:
            res = drv.run(xq, mode=mode, progress=bar.update, lengths=lengths)
        seconds = time.perf_counter() - t0
    ok = np.ones(len(x), dtype=bool)
    for a, b, _ in failed:
        ok[a:b] = False
    mism = None
    if q is not None:
        n = None if lengths is None else np.asarray(lengths)[ok]
        mism = int(np.sum(qforward(q, xq[ok], image.cfg, lengths=n) != res.running[ok]))
    return GoldenEval(float(np.mean((res.predictions == y) & ok)), mism, res, seconds, failed)


@dataclass
class RTLEval:
    """The RTL (or a board) on a test set: running logits (B, K, classes), RTL clock cycles per
    sample (the commands of one ``Driver.run``: CLEAR, token INJECTs, RUN, counter reads; None
    when the link does not count them, as a board's does not), steps per sample, the
    architectural counters of every core summed over the samples (cores, 4; ``ARCH_COUNTERS``
    order), the tokens streamed, and the host's wall seconds."""
    running: np.ndarray
    cycles: np.ndarray | None
    seconds: float
    steps: np.ndarray
    counters: np.ndarray
    tokens: int

    def accuracy(self, y: np.ndarray) -> float:
        return float(np.mean(self.running[:, -1].argmax(-1) == y[:len(self.running)]))

    def same_as(self, running: np.ndarray) -> int:
        """Samples whose running logits equal ``running``'s, every token."""
        return int(sum(np.array_equal(self.running[b], running[b])
                       for b in range(len(self.running))))


def rtl_eval(drv: Driver, xq: np.ndarray, mode: str, desc: str = "RTL",
             lengths: np.ndarray | None = None) -> RTLEval:
    """Run the payloads ``xq`` (B, K, d_in) one sample at a time through ``drv`` (an RTL
    driver with a loaded image), each streamed at its true length (``lengths``; running
    logits held at its last token)."""
    running, cycles, steps, counters = [], [], [], 0
    counted = link_cycles(drv.transport) is not None
    t0 = time.perf_counter()
    with progress_bar(len(xq), f"{desc} ({mode})") as bar:
        for b in range(len(xq)):
            c0 = link_cycles(drv.transport)
            n = None if lengths is None else lengths[b:b + 1]
            res = drv.run(xq[b:b + 1], mode=mode, lengths=n)
            if counted:
                cycles.append(link_cycles(drv.transport) - c0)
            running.append(res.running[0])
            steps.append(res.steps)
            counters = counters + res.counters
            bar.update(1)
    tokens = xq.shape[1] * len(xq) if lengths is None else int(np.sum(lengths[:len(xq)]))
    return RTLEval(np.array(running), np.array(cycles) if counted else None,
                   time.perf_counter() - t0, np.array(steps), np.asarray(counters), tokens)


def board_figures(r: RTLEval) -> dict[str, float]:
    """Per-token figures of a run from what a board gives: steps run, synaptic operations and
    spikes sent (the fabric's counters, summed over every core), tokens per second of the
    host's wall time (UART transfers included)."""
    n = max(1, r.tokens)
    col = {k: i for i, k in enumerate(ARCH_COUNTERS)}
    total = np.asarray(r.counters).sum(axis=0) if np.ndim(r.counters) == 2 else np.zeros(4)
    return {"steps_per_token": float(np.sum(r.steps)) / n,
            "syn_ops_per_token": float(total[col[Counter.SYN_OPS]]) / n,
            "spikes_per_token": float(total[col[Counter.SPIKES_SENT]]) / n,
            "tokens_per_s": r.tokens / r.seconds if r.seconds > 0 else float("nan")}


def evaluate(image: Image, x: np.ndarray, y: np.ndarray, *, dataset: str,
             float_model: FloatModel | None = None, qmodel: QModel | None = None,
             modes: tuple[str, ...] | None = None, batch: int = 64, rtl: bool = False,
             waves: bool = False, open_rtl: OpenRTL = rtl_driver,
             out: Callable[[str], None] = print, workers: int = 1,
             scheduler: str | None = None, lengths: np.ndarray | None = None,
             label: str = "RTL") -> bool:
    """The accuracy report of ``neuroloom eval``: float (model given), quantized reference
    (QModel given), golden model per mode (bit for bit against the reference when given) and,
    with ``rtl``, the RTL per mode (sample for sample against the golden model). True when
    every comparison held and no sample failed. ``workers`` > 1 or ``scheduler``: the golden
    runs are sharded over a Dask cluster (one for all modes). ``lengths``: each sequence's
    true length (padded at the end), at which every level reads its logits and the RTL
    streams it. ``open_rtl`` may open a board (:func:`serial_driver`), named ``label`` in the
    report: a link that counts no clock cycles is reported by the fabric's counters and the
    host's wall time, with a line saying so."""
    tokens = (f"{x.shape[1]} tokens" if lengths is None else
              f"{int(np.min(lengths))}..{int(np.max(lengths))} tokens (true lengths)")
    out(f"{dataset}: {len(x)} test sequences of {tokens}; {describe_image(image)}")
    if float_model is not None:
        out(f"float accuracy      {accuracy_float(float_model, x, y, lengths):.4f}")
    if qmodel is not None:
        out(f"quantized accuracy  {accuracy_q(qmodel, x, y, image.cfg, lengths=lengths):.4f}")
    modes = modes or (image.mode,)
    gold = {}
    with _cluster(workers, scheduler) as client:
        where = "" if client is None else f", {_describe(client)}"
        for mode in modes:
            g = golden_eval(image, x, y, mode, qmodel, batch=batch, client=client,
                            lengths=lengths)
            gold[mode] = g.result.running
            exact = "" if g.mismatches is None else (
                "  (== quantized, bit for bit)" if g.mismatches == 0
                else f"  ({g.mismatches} logits DIFFER)")
            out(f"golden accuracy     {g.accuracy:.4f}  [{mode}, {len(x) / g.seconds:.1f} "
                f"seq/s{where}]{exact}")
            for a, b, err in g.failed:
                out(f"golden FAILED       samples {a}..{b - 1}: {err}")
            if g.mismatches or g.failed:
                return False
    if not rtl:
        return True
    ok = True
    uncounted = None
    with open_rtl(image.cfg, waves) as drv:
        drv.load(image)
        xq = drv.quantize(x)
        for mode in modes:
            r = rtl_eval(drv, xq, mode, desc=label, lengths=lengths)
            same = r.same_as(gold[mode])
            if r.cycles is not None:
                perf = (f"{r.cycles.sum() / r.tokens:.1f} cycles/token, "
                        f"{len(x) / r.seconds:.2f} seq/s simulated")
            else:
                uncounted = describe_link(drv.transport)
                f = board_figures(r)
                perf = (f"{f['steps_per_token']:.2f} steps/token, {f['syn_ops_per_token']:.1f} "
                        f"syn ops/token, {f['tokens_per_s']:.1f} tokens/s wall")
            out(f"{label + ' accuracy':<20}{r.accuracy(y):.4f}  [{mode}, {perf}] {label} == "
                f"golden bit-exact on {same}/{len(x)} samples")
            ok &= same == len(x)
    if uncounted:
        out(f"{label}: a board counts no clock cycles for the host; steps/token: the steps run, "
            f"syn ops/token: the fabric's counters, tokens/s: the host's wall time over "
            f"{uncounted} (UART transfers included)")
    return ok


@contextlib.contextmanager
def _cluster(workers: int, scheduler: str | None):
    """A Dask client for the run (None: serial)."""
    if workers <= 1 and not scheduler:
        yield None
        return
    from .distributed import close_client, open_client

    client = open_client(workers, scheduler)
    try:
        yield client
    finally:
        close_client(client)


def _describe(client) -> str:
    n = len(client.scheduler_info().get("workers", {}))
    return f"{n} Dask worker{'s' if n != 1 else ''}"


def run_report(res: RunResult, *, running: bool = False, counters: bool = False,
               cycles: int | None = None) -> list[str]:
    """The lines ``neuroloom run`` prints: per sample the class and the final logits (scaled
    by the image's output scale), optionally the running integer logits after every token,
    the steps (and RTL cycles), optionally the per-core counters."""
    run = res.running if res.running.ndim == 3 else res.running[None]      # (B, K, classes)
    scale = res.out_scale or 1.0
    lines = []
    if running:
        lines.append(f"running logits: integers from the fabric; the final logits below are "
                     f"divided by the image's output scale {scale:g}")
    for b in range(run.shape[0]):
        if running:
            lines += [f"sample {b} token {k}: " + " ".join(str(v) for v in run[b, k])
                      for k in range(run.shape[1])]
        logits = run[b, -1]
        lines.append(f"sample {b}: class {int(np.argmax(logits))}  logits "
                     + " ".join(f"{v / scale:.4g}" for v in logits))
    tokens = run.shape[0] * run.shape[1]
    lines.append(f"{res.steps} steps ({res.mode})" + (
        "" if cycles is None else f"; {cycles} RTL clock cycles for {run.shape[0]} sample(s) of "
        f"{run.shape[1]} tokens = {cycles / max(1, tokens):.1f} cycles/token"))
    if counters:
        names = ("neuron_updates", "syn_ops", "spikes_sent", "spikes_received")
        lines.append("core " + " ".join(f"{n:>16}" for n in names))
        lines += [f"{c:>4} " + " ".join(f"{v:>16}" for v in res.counters[c])
                  for c in range(res.counters.shape[0]) if res.counters[c].any()]
    return lines
