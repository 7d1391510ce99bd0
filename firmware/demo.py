"""The demo: the shipped model on the digits test split, down the verification ladder.

:func:`golden_demo` reports float, quantized-reference and golden-model accuracy in both
schedules (golden == quantized checked bit for bit); :func:`rtl_demo` adds the fabric RTL under
Verilator on the first samples (RTL == golden checked per sample) with cycles per token and
tokens per second at a stated clock (:data:`DEMO_CLOCK_MHZ` unless the caller gives one). On a
board (``open_rtl`` a :func:`~neuroloom.firmware.evaluate.serial_driver`), which counts no
clock cycles for the host, its performance table gives the steps run and the fabric's counters
(synaptic operations, spikes) per token and tokens per second of the host's wall time over the
UART.
Report lines go to ``out`` (stdout), notes to ``note`` (stderr).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.image import MODES

from .compiler import from_compiled
from .datasets import SequenceData, digits
from .deploy import compile_fitting
from .evaluate import (
    OpenRTL,
    accuracy_float,
    accuracy_q,
    board_figures,
    describe_link,
    golden_eval,
    link_cycles,
    rtl_driver,
    rtl_eval,
)
from .importer import SHIPPED_MODEL_DIR, load_model
from .model import FloatModel
from .qmodel import QModel, qforward
from .quantize import quantize

__all__ = ["DEMO_CLOCK_MHZ", "DEMO_CLOCK_SOURCE", "RTL_DEMO_FT", "RTL_DEMO_LIMIT", "demo_model",
           "golden_demo", "rtl_demo", "shipped_model"]

#: clock (MHz) of the demo's tokens/s column: the post-place-and-route Fmax that nextpnr reported
#: for one neuron core with the default FabricConfig (256 neurons) on the ULX3S's LFE5U-85F,
#: speed grade 6, measured by ``bench/core_synth.py`` (its record: bench/results/core_synth.json),
#: to 0.1 MHz
DEMO_CLOCK_MHZ = 103.9
#: where :data:`DEMO_CLOCK_MHZ` comes from, as the demo states it
DEMO_CLOCK_SOURCE = ("the post-place Fmax of one default neuron core (256 neurons) on ECP5 "
                     "LFE5U-85F speed 6 (nextpnr), measured by bench/core_synth.py")
#: RTL samples by default (pipelined); fall-through runs the first :data:`RTL_DEMO_FT` of them
RTL_DEMO_LIMIT = 100
RTL_DEMO_FT = 20


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def shipped_model() -> tuple[FloatModel | None, QModel, str] | None:
    """(float model or None, QModel, name) of the model shipped in ``firmware/models``, or
    None when none is shipped."""
    qs = sorted(SHIPPED_MODEL_DIR.glob("*-q.json")) if SHIPPED_MODEL_DIR.is_dir() else []
    if not qs:
        return None
    qpath = qs[0].with_suffix("")
    q = load_model(qpath)
    fpath = Path(str(qpath)[:-2] + "-float")
    fm = load_model(fpath) if fpath.with_suffix(".json").is_file() else None
    return (fm if isinstance(fm, FloatModel) else None), q, qpath.name


def demo_model(data: SequenceData, cfg: FabricConfig | None = None,
               note: Callable[[str], None] = _stderr) -> tuple[FloatModel | None, QModel, str]:
    """The shipped model, or (saying so) a small random model quantized on ``data``."""
    shipped = shipped_model()
    if shipped is not None:
        return shipped
    note(f"note: no trained model in {SHIPPED_MODEL_DIR} yet; using a small RANDOM model "
         "(accuracy near chance)")
    fm = FloatModel.random(d_in=1, H=8, N=4, L=2, classes=10, seed=0)
    q, _ = quantize(fm, data.x_train[:128], cfg)
    return fm, q, "random H=8 N=4 L=2"


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit < 1:
        raise ValueError(f"--limit {limit}: give at least 1 test sequence")


def golden_demo(cfg: FabricConfig, *, mesh_fixed: bool = False, limit: int | None = None,
                out: Callable[[str], None] = print,
                note: Callable[[str], None] = _stderr) -> bool:
    """Float, quantized and golden accuracy on the first ``limit`` (default all) digits test
    sequences, golden == quantized checked bit for bit in both schedules; True when it held."""
    _check_limit(limit)
    data = digits()
    x, y = data.x_test[:limit], data.y_test[:limit]
    fm, q, name = demo_model(data, cfg, note)
    comp = compile_fitting(q, cfg, "pipelined", mesh_fixed=mesh_fixed)
    image = from_compiled(comp)
    s = comp.summary()
    K = x.shape[1]
    out(f"model {name}: {q.describe()}; {len(x)} digits test sequences of {K} tokens")
    out(f"fabric {s['mesh']} ({s['cores_used']} cores used, {s['neurons']} neurons, "
        f"{s['hops_per_token']} hops/token)")
    if fm is not None:
        out(f"float accuracy      {accuracy_float(fm, x, y):.4f}")
    else:
        out("float accuracy      n/a (no float model shipped)")
    out(f"quantized accuracy  {accuracy_q(q, x, y, image.cfg):.4f}")
    ok = True
    for mode in MODES:
        g = golden_eval(image, x, y, mode, q)
        res = g.result
        out(f"golden accuracy     {g.accuracy:.4f}  [{mode}: {res.steps} steps for {K} tokens = "
            f"{res.steps / K:.2f} steps/token, token period {image.token_period(mode)}, "
            f"latency {image.output_step(mode, 0) + 1} steps; {len(x) / g.seconds:.0f} seq/s] "
            + ("== quantized, bit for bit" if g.mismatches == 0
               else f"{g.mismatches} logits DIFFER"))
        ok &= g.mismatches == 0
    return ok


def rtl_demo(cfg: FabricConfig, *, mesh_fixed: bool = False, limit: int | None = None,
             all_samples: bool = False, clock_mhz: float = DEMO_CLOCK_MHZ,
             clock_source: str = DEMO_CLOCK_SOURCE, waves: bool = False,
             open_rtl: OpenRTL = rtl_driver, out: Callable[[str], None] = print,
             note: Callable[[str], None] = _stderr, label: str = "RTL") -> bool:
    """:func:`golden_demo`'s ladder on the whole test split, then the RTL on the first
    ``limit`` sequences (default :data:`RTL_DEMO_LIMIT`; fall-through on the first
    :data:`RTL_DEMO_FT` of them; ``all_samples``: the whole split in both), with an accuracy
    table and a performance table (cycles/token, tokens/s at ``clock_mhz``). True when golden ==
    quantized and RTL == golden held everywhere. ``open_rtl`` may open a board, named
    ``label`` in the tables; a link that counts no clock cycles gets the board's performance
    table (module docstring) and ``clock_mhz`` is not used."""
    _check_limit(limit)
    if not clock_mhz > 0:
        raise ValueError(f"--clock {clock_mhz!r}: the clock must be a positive number of MHz")
    t_start = time.perf_counter()
    data = digits()
    x, y = data.x_test, data.y_test
    n = len(x) if all_samples else min(len(x), limit if limit is not None else RTL_DEMO_LIMIT)
    fm, q, name = demo_model(data, cfg, note)
    comp = compile_fitting(q, cfg, "pipelined", mesh_fixed=mesh_fixed)
    image = from_compiled(comp)
    cfg = image.cfg
    s = comp.summary()
    K = x.shape[1]
    out(f"model {name}: {q.describe()}")
    out(f"digits test split: {len(x)} sequences of {K} tokens; {label} on the first {n}")
    out(f"fabric {s['mesh']} ({s['cores_used']} cores used, {s['neurons']} neurons, "
        f"{s['hops_per_token']} hops/token), {image.num_stages} pipeline stages")
    rows = []                                     # (what, accuracy, samples, note)
    if fm is not None:
        rows.append(("float", accuracy_float(fm, x, y), len(x), ""))
    else:
        rows.append(("float", None, 0, "no float model shipped"))
    xq_all = q.quantize_input(x, cfg)
    ref = qforward(q, xq_all, cfg)
    rows.append(("quantized (reference)", float(np.mean(ref[:, -1].argmax(-1) == y)), len(x), ""))
    gold = {}
    ok = True
    for mode in MODES:
        g = golden_eval(image, x, y, mode, q)
        gold[mode] = g.result.running
        rows.append((f"golden ({mode})", g.accuracy, len(x),
                     "== quantized, bit for bit" if g.mismatches == 0
                     else f"{g.mismatches} logits DIFFER"))
        ok &= g.mismatches == 0
    counts = {"pipelined": n, "fall-through": n if all_samples else min(n, RTL_DEMO_FT)}
    perf, runs = {}, {}
    with open_rtl(cfg, waves) as drv:
        t0 = time.perf_counter()
        drv.load(image)
        load_s = time.perf_counter() - t0
        load_cycles = link_cycles(drv.transport)
        where = describe_link(drv.transport)
        xq = drv.quantize(x[:n])
        for mode in MODES:
            m = counts[mode]
            r = runs[mode] = rtl_eval(drv, xq[:m], mode, desc=label)
            same = r.same_as(gold[mode])
            ok &= same == m
            if r.cycles is not None:
                perf[mode] = (r.cycles.mean() / K, m * K / r.seconds, m)
            rows.append((f"{label} ({mode})", r.accuracy(y), m,
                         f"{label} == golden bit-exact on {same}/{m} samples"))
    out("")
    out(f"{'':<24}{'accuracy':>9}{'samples':>9}")
    for what, acc, m, remark in rows:
        a = "n/a" if acc is None else f"{acc:.4f}"
        out(f"{what:<24}{a:>9}{m:>9}  {remark}".rstrip())
    out("")
    if len(perf) < len(MODES):                  # a board: no clock cycles
        _board_table(runs, label, where, load_s, time.perf_counter() - t_start, out)
        return ok
    out(f"{'RTL mode':<14}{'cycles/token':>13}{f'tokens/s @ {clock_mhz:g} MHz':>22}"
        f"{'simulated tokens/s (wall)':>27}{'samples':>9}")
    for mode in MODES:
        cpt, wall, m = perf[mode]
        out(f"{mode:<14}{cpt:>13.1f}{clock_mhz * 1e6 / cpt:>22,.0f}{wall:>27.1f}{m:>9}")
    out("")
    out(f"cycles/token: mean over samples of the RTL clock cycles of the commands of one "
        f"Driver.run (each from its first word into the fabric to its response's last word out) "
        f"/ {K} tokens, host-link traffic included (CLEAR, token INJECTs, RUN, counter reads); "
        f"clock {clock_mhz:g} MHz = {clock_source}. Image load: {load_cycles} cycles, "
        f"{load_s:.1f} s. Total {time.perf_counter() - t_start:.0f} s.")
    return ok


def _board_table(runs: dict, label: str, where: str, load_s: float, total_s: float,
                 out: Callable[[str], None]) -> None:
    """The performance table of a fabric whose link counts no clock cycles (a board)."""
    out(f"{label + ' mode':<14}{'steps/token':>12}{'syn ops/token':>15}{'spikes/token':>14}"
        f"{'tokens/s (wall)':>17}{'samples':>9}")
    for mode in MODES:
        f = board_figures(runs[mode])
        out(f"{mode:<14}{f['steps_per_token']:>12.2f}{f['syn_ops_per_token']:>15.1f}"
            f"{f['spikes_per_token']:>14.1f}{f['tokens_per_s']:>17.1f}{len(runs[mode].running):>9}")
    out("")
    out(f"steps/token: the steps run / tokens; synaptic operations and spikes: the fabric's own "
        f"counters (every core, summed over the samples) / tokens; tokens/s: tokens / the "
        f"host's wall time of the Driver.run calls over {where}, UART transfers included. A "
        f"board counts no clock cycles for the host, so this table has none. Image load: "
        f"{load_s:.1f} s. Total {total_s:.0f} s.")
