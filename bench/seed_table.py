"""The seed's table: the seed small model (H=64, N=32, 4 layers, d_in=1, 10 classes;
``random_qmodel(64, 32, 4, d_in=1, classes=10, seed=0)``) on one ECP5-85F, side by side with
CPU baselines measured in the same run and the seed's Loihi 2 / Jetson Orin Nano figures
(quoted).

    .venv/bin/python bench/seed_table.py [--tokens 64] [--reuse] [--trained STEM]

What it does, in order:

1. compiles the model with ``compile_for_part(model, ULX3S-85F, schedule)`` for both
   schedules (what ``neuroloom compile MODEL --board ulx3s-85f --schedule S`` does);
2. runs each compiled image in Verilator for ``--tokens`` random tokens (one build per distinct
   fabric) in the schedule it was chosen for, and checks -- these are the product, the script
   exits non-zero when one fails -- RTL running logits == golden == ``qforward`` bit for bit
   and the architectural counters RTL == golden;
3. converts RTL cycle counts to time at the measured Fmax: a recorded place-and-route of that
   very fabric (``bench/results/fabric_seed_synth.json``, ``bench/fabric_synth.py --fabric``)
   if there is one, else the core's recorded Fmax (``bench/results/core_synth.json``); the
   table says which;
4. times a float token-by-token S4D recurrence of the same shape (batch 1, float32 /
   complex64) in numpy and in PyTorch (CPU, one thread) on this machine;
5. quotes the seed's Loihi 2 and Jetson Orin Nano token-by-token figures (source file named);
6. adds cores, the cells (resource-model estimate; measured if a place-and-route record
   exists) and the multiplier utilization: useful products per token (8 per mode entry -- the
   S4D update, ``dA x + dB u`` and ``Re(C' x)`` -- plus the synaptic operations the RTL counted;
   pipelined: per step) times two MULT18X18D each, over MULT18X18D in the fabric x cycles per
   token;
7. says what binds: per core, the RTL's busy cycles per step beside the estimate's parts
   (neuron engine, of it the MODES issue cycles; synaptic rows at the measured fire rate;
   route words).

Cycles (RTL clock cycles, ``VerilatorLink.cycles``, the host offering a word every cycle):
*RUN cycles* are the RUN commands' exchanges only (the fabric's own rate, the host's INJECTs
and counter reads taken out); pipelined, one token enters per step, so RUN cycles per step are
the steady-state cycles per token; fall-through, RUN cycles per token are the latency of a
token through all stages. End to end (every command of the run) is recorded too.

``--reuse`` takes the RTL figures from the last record instead of running Verilator (the CPU
baselines are measured again; the clock and cells are read again, e.g. after a place and
route). ``--trained STEM``: also a trained quantized model of the same shape (``STEM.npz`` +
``STEM.json``, e.g. ``neuroloom train -H 64 -N 32 -L 4``), compiled onto the chosen fabric
(same capacities, spread packing) and run on the RTL in both schedules on its data set's first
test sequence, with the same checks, beside its quantized reference's test accuracy.
Results: ``bench/results/seed_table.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.hostproto import Cmd
from neuroloom.contract.layouts import Counter, Mem
from neuroloom.contract.parts import board_part
from neuroloom.firmware import resources
from neuroloom.firmware.compiler import from_compiled, random_qmodel
from neuroloom.firmware.driver import Driver
from neuroloom.firmware.model import FloatModel
from neuroloom.firmware.qmodel import qforward
from neuroloom.firmware.target import compile_for_part
from neuroloom.firmware.transports import FramedTransport
from neuroloom.sim.transports import GoldenTransport

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
OUT = RESULTS / "seed_table.json"
PNR = RESULTS / "fabric_seed_synth.json"
CORE_SYNTH = RESULTS / "core_synth.json"
BOARD = "ulx3s-85f"
MODEL = "random_qmodel(64, 32, 4, d_in=1, classes=10, seed=0)"
SCHEDULES = ("pipelined", "fall-through")
#: useful 24 x 16-bit products per mode entry of a channel neuron (dA x: 4, dB u: 2, Re C'x: 2)
PRODUCTS_PER_MODE = 8
#: MULT18X18D per product (24-bit operands take two 18 x 18 blocks; synapse lanes have two)
MULTS_PER_PRODUCT = 2

SEED_FILE = Path("/work/shared/seeds/001_c7205e3adbba59d0.txt")
#: the seed's token-by-token rows, quoted exactly (``SEED_FILE``, slide "Streaming diagonal SSMs
#: run extremely well on Loihi 2 compared to an edge GPU (Jetson Orin Nano)"); the model on that
#: slide is the sCIFAR one (accuracy 84.13 / 86.53 %: the large model, H=128, N=64, 265k
#: parameters, 111 cores), not the small one
QUOTED = [
    {"name": "Loihi 2 (fall-through)",
     "line": "Loihi2(fall-through)\t\t84.13\t0.016\t0.066\t15,260",
     "accuracy": 84.13, "energy_mJ": 0.016, "latency_ms": 0.066, "throughput": 15260},
    {"name": "Jetson Orin Nano GPU (recurrent)",
     "line": "Orin Nano GPU (recurrent) 8\t\t86.53\t16.11\t4.98\t201",
     "accuracy": 86.53, "energy_mJ": 16.11, "latency_ms": 4.98, "throughput": 201},
]
QUOTED_HEADER = ("Token-by-token processi\tng\tAcc.\tEnergy (mJ)\tLatency (ms)\tThroughput")


def _git(*args) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def code_source() -> dict:
    """Where the neuroloom code that ran came from: this tree (its commit, and whether ``hw``
    had uncommitted changes), or a clean export of a commit put first on ``PYTHONPATH`` (its
    root holds a ``.commit`` file), e.g. to measure a commit while ``hw`` is being edited."""
    import neuroloom.hw

    code = Path(neuroloom.hw.__file__).resolve().parents[1]
    if code == ROOT:
        return {"commit": _git("rev-parse", "--short", "HEAD"),
                "hw_dirty": bool(_git("status", "--porcelain", "--", "hw"))}
    marker = code / ".commit"
    return {"commit": marker.read_text().strip() if marker.is_file() else None,
            "hw_dirty": False if marker.is_file() else None, "code_root": str(code)}


class CountingLink:
    """A link wrapper that adds up simulated cycles per command opcode."""

    def __init__(self, link):
        self.link = link
        self.cycles: dict[int, int] = {}

    def exchange(self, words):
        c0 = self.link.cycles
        out = self.link.exchange(words)
        op = words[0] & 0xFF
        self.cycles[op] = self.cycles.get(op, 0) + self.link.cycles - c0
        return out


# -- the fabric ------------------------------------------------------------------------------

def compile_seed(model) -> dict:
    """schedule -> TargetFit for the board."""
    fits = {}
    for schedule in SCHEDULES:
        t0 = time.perf_counter()
        fits[schedule] = fit = compile_for_part(model, board_part(BOARD), schedule)
        cfg = fit.compiled.cfg
        print(f"compile --board {BOARD} --schedule {schedule}: {cfg.mesh_w}x{cfg.mesh_h}, "
              f"neuron_lanes {cfg.neuron_lanes}, synapse_lanes {cfg.synapse_lanes}, packing "
              f"{fit.packing} ({time.perf_counter() - t0:.1f} s)", flush=True)
    return fits


# -- RTL -------------------------------------------------------------------------------------

def busy_cycles(tr, cfg: FabricConfig) -> np.ndarray:
    """RTL-only per-core counter: cycles each core was not idle."""
    return np.array([tr.read(c, Mem.COUNTER, int(Counter.BUSY_CYCLES), 0)
                     for c in range(cfg.num_cores)], dtype=np.int64)


def run_rtl(jobs: list[tuple[str, object, str]], model_of: dict, tokens: int,
            inputs: dict | None = None) -> dict:
    """Run ``jobs`` (name, Compiled, schedule) on Verilator, one build per fabric, each checked
    against the golden model and ``qforward``; name -> record. The tokens are ``tokens``
    uniform random values, or ``inputs[name]`` (float tokens, (1, K, d_in)) when given."""
    from neuroloom.sim.verilator_link import VerilatorLink, is_built

    out = {}
    by_cfg: dict[FabricConfig, list] = {}
    for job in jobs:
        by_cfg.setdefault(job[1].cfg, []).append(job)
    for cfg, group in by_cfg.items():
        built = is_built(cfg)
        t0 = time.perf_counter()
        if not built:
            print(f"building the Verilator model of the {cfg.mesh_w}x{cfg.mesh_h} fabric "
                  "(minutes) ...", flush=True)
        with VerilatorLink(cfg, timeout=7200.0) as vlink:
            build_s = round(time.perf_counter() - t0, 1)
            link = CountingLink(vlink)
            drv = Driver(FramedTransport(link))
            tr = drv.transport
            for name, comp, schedule in group:
                model = model_of[name]
                xf = (inputs or {}).get(name)
                if xf is None:
                    xf = np.random.default_rng(0).uniform(0, 1, (1, tokens, 1))
                x = model.quantize_input(xf, cfg)
                k = x.shape[1]
                ref = qforward(model, x, cfg)
                img = from_compiled(comp)
                link.cycles.clear()
                t1 = time.perf_counter()
                drv.load(img)
                load = {"cycles": sum(link.cycles.values()),
                        "wall_s": round(time.perf_counter() - t1, 1)}

                b0 = busy_cycles(tr, cfg)
                link.cycles.clear()
                c0, t1 = vlink.cycles, time.perf_counter()
                res = drv.run(x, mode=schedule)
                total, wall = vlink.cycles - c0, time.perf_counter() - t1
                b = busy_cycles(tr, cfg) - b0
                gold = Driver(GoldenTransport(batch=1))
                gold.load(img)
                g = gold.run(x, mode=schedule)
                run = link.cycles.get(int(Cmd.RUN), 0)
                rec = {
                    "schedule": schedule, "fabric": cfg.to_dict(), "cores_used": comp.cores_used,
                    "stages": comp.num_stages, "tokens": k, "steps": res.steps,
                    "load": load, "build_s" if not built else "start_s": build_s,
                    "run_cycles": run, "end_to_end_cycles": total,
                    "run_cycles_per_step": round(run / res.steps, 1),
                    "run_cycles_per_token": round(run / k, 1),
                    "end_to_end_cycles_per_token": round(total / k, 1),
                    "cycles_by_command": {Cmd(op).name: c for op, c in sorted(link.cycles.items())},
                    "busy_cycles_per_step_by_core": {
                        f"{c} {cfg.core_xy(c)}": round(float(b[c]) / res.steps, 1)
                        for c in range(cfg.num_cores)},
                    "counters_per_token": {Counter(i).name: int(res.counters[:, i].sum()) / k
                                           for i in range(res.counters.shape[1])},
                    "counters_per_step": {Counter(i).name: int(res.counters[:, i].sum()) / res.steps
                                          for i in range(res.counters.shape[1])},
                    "rtl_equal_qforward": bool(np.array_equal(res.running, ref)),
                    "golden_equal_qforward": bool(np.array_equal(g.running, ref)),
                    "counters_rtl_equal_golden": bool(np.array_equal(res.counters, g.counters)),
                    "wall_s": round(wall, 1),
                }
                syn_step = float(res.counters[:, Counter.SYN_OPS].sum()) / res.steps
                rec["fire_rate"] = round(syn_step / resources.full_syn_ops(comp), 3) \
                    if schedule == "pipelined" else None
                out[name] = rec
                print(f"RTL {name}: {res.steps} steps, {rec['run_cycles_per_step']} RUN "
                      f"cycles/step, {rec['run_cycles_per_token']} RUN cycles/token; "
                      f"RTL == qforward "
                      f"{rec['rtl_equal_qforward']}, golden == qforward "
                      f"{rec['golden_equal_qforward']}, counters RTL == golden "
                      f"{rec['counters_rtl_equal_golden']} ({rec['wall_s']} s)", flush=True)
    return out


# -- Fmax ------------------------------------------------------------------------------------

def trained_model(stem: str, seed_model, cfg: FabricConfig) -> dict:
    """The trained quantized model at ``stem``, checked to have the seed model's shape,
    compiled onto ``cfg`` (spread packing), its data set's first test sequence and its
    quantized reference's test accuracy."""
    from neuroloom.firmware.compiler import compile_model
    from neuroloom.firmware.datasets import load_dataset
    from neuroloom.firmware.evaluate import accuracy_q
    from neuroloom.firmware.importer import load_qmodel

    tm = load_qmodel(stem)
    shape = (tm.H, tm.modes, len(tm.layers), tm.d_in, tm.classes)
    want = (seed_model.H, seed_model.modes, len(seed_model.layers), seed_model.d_in,
            seed_model.classes)
    if shape != want:
        raise SystemExit(f"--trained {stem}: shape (H, modes, layers, d_in, classes) {shape}, "
                         f"not the seed model's {want}")
    name = tm.meta.get("dataset")
    if not name:
        raise SystemExit(f"--trained {stem}: its metadata names no data set")
    data = load_dataset(name)
    comp = compile_model(tm, cfg, mode="pipelined", packing="spread")
    acc = accuracy_q(tm, data.x_test, data.y_test, cfg, lengths=data.len_test)
    return {"model": tm, "compiled": comp, "x": data.x_test[:1],
            "record": {"stem": str(stem), "dataset": data.name, "meta": {
                k: tm.meta[k] for k in ("float_acc", "q_acc", "seed", "command", "qaft")
                if k in tm.meta},
                "q_accuracy": round(float(acc), 4), "test_sequences": len(data.y_test),
                "label": int(data.y_test[0])}}


def measured_clock(cfg: FabricConfig) -> dict:
    """The Fmax to convert cycles with: this fabric's recorded place-and-route, else the
    core's."""
    if PNR.is_file():
        rec = json.loads(PNR.read_text())
        if (FabricConfig.from_dict(rec["config"]) == cfg and rec.get("fits")
                and rec.get("fmax_mhz")):
            return {"mhz": rec["fmax_mhz"], "source": f"place and route of this fabric "
                    f"({PNR.relative_to(ROOT)}, commit {rec.get('commit')}, seeds "
                    f"{', '.join(rec['fmax_mhz_by_seed'])}, best)", "fabric_pnr": True}
    why = "this fabric has no place-and-route record"
    if PNR.is_file() and FabricConfig.from_dict(json.loads(PNR.read_text())["config"]) == cfg:
        why = f"this fabric's place and route has no Fmax ({PNR.relative_to(ROOT)})"
    core = json.loads(CORE_SYNTH.read_text())["default"]
    routed = [s for s, f in core["fmax_mhz_by_seed"].items() if f is not None]
    return {"mhz": core["fmax_mhz"], "source": f"the core's Fmax ({CORE_SYNTH.relative_to(ROOT)}"
            f" 'default', best of seeds {', '.join(routed)}); {why}",
            "fabric_pnr": False}


def measured_cells(cfg: FabricConfig) -> dict | None:
    if not PNR.is_file():
        return None
    rec = json.loads(PNR.read_text())
    if FabricConfig.from_dict(rec["config"]) != cfg:
        return None
    return {"fits": rec.get("fits"), "LUT4": rec.get("LUT4"), "TRELLIS_FF": rec.get("TRELLIS_FF"),
            "DP16KD": rec.get("DP16KD"), "MULT18X18D": rec.get("MULT18X18D"),
            "utilization": rec.get("utilization"), "error": rec.get("error"),
            "status": rec.get("status"), "fmax_mhz_by_seed": rec.get("fmax_mhz_by_seed"),
            "post_placement_fmax_estimate_mhz": rec.get("post_placement_fmax_estimate_mhz")}


# -- CPU baselines ---------------------------------------------------------------------------

def _params(fm: FloatModel) -> dict:
    """The float model as float32 / complex64 arrays for the recurrences."""
    c, f = np.complex64, np.float32
    return {"enc_W": fm.enc_W.astype(f), "enc_b": fm.enc_b.astype(f),
            "layers": [(ly.dA.astype(c), np.broadcast_to(ly.dB, ly.dA.shape).astype(c),
                        ly.Cp.astype(c), ly.D.astype(f), ly.W.astype(f), ly.b.astype(f))
                       for ly in fm.layers],
            "dec_W": fm.dec_W.astype(f), "dec_b": fm.dec_b.astype(f)}


def numpy_recurrent(p: dict, tokens: np.ndarray) -> tuple[np.ndarray, list]:
    """Token by token, batch 1: running logits (K, classes) and each token's seconds."""
    states = [np.zeros_like(ly[0]) for ly in p["layers"]]                  # (H, N) each
    acc = np.zeros(p["dec_b"].shape, np.float32)
    out, times = [], []
    for u in tokens.astype(np.float32):                                     # (d_in,)
        t0 = time.perf_counter()
        z = p["enc_W"] @ u + p["enc_b"]                                     # (H,)
        for i, (dA, dB, Cp, D, W, b) in enumerate(p["layers"]):
            states[i] = dA * states[i] + dB * z[:, None]                    # (H, N)
            y = 2.0 * np.real(np.sum(Cp * states[i], axis=1)) + D * z       # (H,)
            z = W @ np.maximum(y, 0.0) + b                                  # (H,)
        acc = acc + p["dec_W"] @ z + p["dec_b"]                             # (classes,)
        times.append(time.perf_counter() - t0)
        out.append(acc)
    return np.array(out), times


def torch_recurrent(p: dict, tokens: np.ndarray) -> tuple[np.ndarray, list]:
    import torch

    t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in p.items() if k != "layers"}
    layers = [tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in ly) for ly in p["layers"]]
    states = [torch.zeros_like(ly[0]) for ly in layers]                     # (H, N) each
    acc = torch.zeros_like(t["dec_b"])
    out, times = [], []
    with torch.inference_mode():
        for u in torch.from_numpy(tokens.astype(np.float32)):              # (d_in,)
            t0 = time.perf_counter()
            z = t["enc_W"] @ u + t["enc_b"]                                 # (H,)
            for i, (dA, dB, Cp, D, W, b) in enumerate(layers):
                states[i] = dA * states[i] + dB * z[:, None]                # (H, N)
                y = 2.0 * torch.real((Cp * states[i]).sum(dim=1)) + D * z   # (H,)
                z = W @ torch.relu(y) + b                                   # (H,)
            acc = acc + t["dec_W"] @ z + t["dec_b"]                         # (classes,)
            times.append(time.perf_counter() - t0)
            out.append(acc.clone())
    return torch.stack(out).numpy(), times


def cpu_baselines(tokens: int, repeats: int = 20) -> dict:
    """Median seconds per token of each recurrence over ``repeats`` runs of ``tokens`` tokens
    (first run discarded), checked against ``FloatModel.forward_recurrent`` (float64)."""
    import torch

    torch.set_num_threads(1)
    fm = FloatModel.random(1, 64, 32, 4, 10, seed=0)
    x = np.random.default_rng(0).uniform(0, 1, (tokens, 1))
    ref = fm.forward_recurrent(x[None])[0]                                  # (K, classes)
    p = _params(fm)
    out = {}
    for name, fn, version in (("numpy", numpy_recurrent, np.__version__),
                              ("pytorch", torch_recurrent, torch.__version__)):
        fn(p, x)                                                            # warm-up
        times = []
        for _ in range(repeats):
            y, t = fn(p, x)
            times.extend(t)
        err = float(np.max(np.abs(y - ref)) / np.max(np.abs(ref)))
        if err > 1e-3:
            raise SystemExit(f"the {name} recurrence disagrees with forward_recurrent "
                             f"(relative error {err:.2e}): fix the baseline")
        med = float(np.median(times))
        out[name] = {"version": version, "threads": 1 if name == "pytorch" else None,
                     "tokens": tokens, "repeats": repeats,
                     "median_us_per_token": round(med * 1e6, 1),
                     "p10_us": round(float(np.percentile(times, 10)) * 1e6, 1),
                     "p90_us": round(float(np.percentile(times, 90)) * 1e6, 1),
                     "tokens_per_s": round(1.0 / med), "max_rel_error_vs_float64": err}
        print(f"CPU {name} {version}: {out[name]['median_us_per_token']} us/token (median), "
              f"{out[name]['tokens_per_s']:,} tokens/s", flush=True)
    return out


def quoted(q: dict) -> bool | None:
    """Whether the quoted line is in the seed file verbatim (None: the file is not here)."""
    if not SEED_FILE.is_file():
        return None
    text = SEED_FILE.read_text()
    if q["line"] not in text or QUOTED_HEADER not in text:
        raise SystemExit(f"the quote {q['line']!r} is not in {SEED_FILE}: fix QUOTED")
    return True


# -- the table -------------------------------------------------------------------------------

def our_rows(rec: dict) -> dict:
    """The headline numbers of our fabric from the RTL records and the clock."""
    mhz = rec["clock"]["mhz"]
    pip, ft = rec["rtl"]["pipelined"], rec["rtl"]["fall-through"]
    mults = rec["fabric"]["pipelined"]["estimated_cells"]["MULT18X18D"]
    mode_products = PRODUCTS_PER_MODE * rec["mode_entries"]
    rows = {}
    # pipelined: a token enters every step (tokens/s) and passes all stages (latency);
    # fall-through: a token takes all its stages' steps, the next one waits (both the same)
    for name, r, cycles, latency, per in (
            ("pipelined", pip, pip["run_cycles_per_step"],
             pip["stages"] * pip["run_cycles_per_step"], "counters_per_step"),
            ("fall-through", ft, ft["run_cycles_per_token"], ft["run_cycles_per_token"],
             "counters_per_token")):
        useful = mode_products + r[per]["SYN_OPS"]
        rows[name] = {"cycles_per_token": cycles, "latency_cycles": round(latency, 1),
                      "latency_us": round(latency / mhz, 2),
                      "tokens_per_s": round(mhz * 1e6 / cycles),
                      "end_to_end_cycles_per_token": r["end_to_end_cycles_per_token"],
                      "useful_products_per_token": useful,
                      "multiplier_utilization": round(MULTS_PER_PRODUCT * useful
                                                      / (mults * cycles), 3)}
    return rows


def binding(rec: dict, comp) -> dict:
    """Per core: RTL busy cycles per step (pipelined) beside the estimate's parts at the
    measured fire rate (neuron engine, of it MODES issue: per channel neuron its mode entries
    / neuron lanes, rounded up; rows; route words)."""
    est = rec["estimate_with_fire_rate"]["per_core"]
    busy = list(rec["rtl"]["pipelined"]["busy_cycles_per_step_by_core"].values())
    out = {}
    for c, core in enumerate(comp.cores):
        lanes = comp.cfg.neuron_lanes
        issue = sum(g.count * -(-g.modes // lanes) for g in core.groups if g.modes)
        e = est[str(c)] if str(c) in est else est[c]
        out[str(c)] = {"rtl_busy_per_step": busy[c], "neuron_engine": e["neuron"],
                       "modes_issue": issue,
                       "rows_at_fire_rate": e["rows"], "route_words": e["routes"]}
    return out


def table(rec: dict) -> str:
    ours, cpu, clk = rec["ours"], rec["cpu"], rec["clock"]
    fab = rec["fabric"]["pipelined"]
    cfg = fab["fabric"]
    est = fab["estimated_cells"]
    meas = rec.get("measured_cells")
    lines = [f"{'':<44}{'latency/token':>16}{'tokens/s':>12}  notes"]
    lines.append(f"{'NeuroLoom, 1 ECP5-85F, fall-through':<44}"
                 f"{ours['fall-through']['latency_us']:>13} us"
                 f"{ours['fall-through']['tokens_per_s']:>12,}  "
                 f"{ours['fall-through']['cycles_per_token']:,} RTL cycles/token at "
                 f"{clk['mhz']:.1f} MHz")
    lines.append(f"{'NeuroLoom, 1 ECP5-85F, pipelined':<44}"
                 f"{ours['pipelined']['latency_us']:>13} us"
                 f"{ours['pipelined']['tokens_per_s']:>12,}  "
                 f"{ours['pipelined']['cycles_per_token']:,} RTL cycles/step x "
                 f"{rec['rtl']['pipelined']['stages']} stages at {clk['mhz']:.1f} MHz")
    for name in ("numpy", "pytorch"):
        c = cpu[name]
        label = f"CPU {name} {c['version']} recurrent, batch 1"
        lines.append(f"{label:<44}"
                     f"{c['median_us_per_token']:>13} us{c['tokens_per_s']:>12,}  measured "
                     f"here (median of {c['repeats']} x {c['tokens']} tokens)")
    for q in rec["quoted"]:
        lines.append(f"{q['name'] + ' (quoted)':<44}{q['latency_ms'] * 1000:>13g} us"
                     f"{q['throughput']:>12,}  seed, sCIFAR model (H=128, N=64)")
    lines.append("")
    lines.append(f"clock: {clk['mhz']:.1f} MHz = {clk['source']}")
    lines.append(f"fabric: {cfg['mesh_w']}x{cfg['mesh_h']} ({rec['rtl']['pipelined']['cores_used']}"
                 f" cores), neuron_lanes {cfg['neuron_lanes']}, synapse_lanes "
                 f"{cfg['synapse_lanes']}, packing {fab['packing']}; both schedules "
                 f"{'the same fabric' if rec['same_fabric'] else 'different fabrics'}")
    lines.append(f"cells (estimate): LUT4 sites {fab['estimated_logic_sites']:,}, FF "
                 f"{est['TRELLIS_FF']:,}, DP16KD {est['DP16KD']}, MULT18X18D "
                 f"{est['MULT18X18D']}")
    if meas:
        if meas.get("fits") is False:
            lines.append(f"cells (measured): place and route FAILED: "
                         f"{(meas.get('error') or '').splitlines()[0][:100]}")
        else:
            lines.append(f"cells (measured, Yosys): LUT4 {meas['LUT4']:,}, FF "
                         f"{meas['TRELLIS_FF']:,}, DP16KD {meas['DP16KD']}, MULT18X18D "
                         f"{meas['MULT18X18D']}")
            comb = (meas.get("utilization") or {}).get("TRELLIS_COMB")
            if comb:
                lines.append(f"placed (nextpnr): TRELLIS_COMB {comb['used']:,} / "
                             f"{comb['available']:,} ({comb['used'] / comb['available']:.0%}); "
                             f"Fmax by seed {meas.get('fmax_mhz_by_seed')}")
            if meas.get("status"):
                lines.append(f"place and route: {meas['status']}; post-placement estimate "
                             f"{meas.get('post_placement_fmax_estimate_mhz')} MHz")
    for name in SCHEDULES:
        o = ours[name]
        lines.append(f"multiplier utilization, {name}: {o['multiplier_utilization']:.1%} "
                     f"({o['useful_products_per_token']:,.0f} useful products/token x "
                     f"{MULTS_PER_PRODUCT} / ({est['MULT18X18D']} MULT18X18D x "
                     f"{o['cycles_per_token']:,} cycles))")
    lines.append(f"what binds (pipelined, per step; estimate at the measured fire rate "
                 f"{rec['estimate_with_fire_rate']['fire_rate']}):")
    for c, b in rec["binding"].items():
        lines.append(f"  core {c}: RTL busy {b['rtl_busy_per_step']:,} cycles; estimated neuron "
                     f"engine {b['neuron_engine']:,} (MODES issue {b['modes_issue']:,}, the rest "
                     f"scalar rounds and group/batch overheads), synaptic rows "
                     f"{b['rows_at_fire_rate']:,}, route words {b['route_words']}")
    ok = all(rec["rtl"][s][k] for s in SCHEDULES for k in
             ("rtl_equal_qforward", "golden_equal_qforward", "counters_rtl_equal_golden"))
    lines.append(f"bit-exact ({rec['tokens']} tokens, both schedules): RTL == golden == "
                 f"qforward and counters RTL == golden: {ok}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=64, help="tokens per schedule (default 64)")
    ap.add_argument("--reuse", action="store_true",
                    help="take the RTL figures from the last record (no Verilator run)")
    ap.add_argument("--trained", metavar="STEM",
                    help="also run this trained quantized model of the same shape on the fabric")
    args = ap.parse_args(argv)
    model = random_qmodel(64, 32, 4, d_in=1, classes=10, seed=0)
    fits = compile_seed(model)
    rec = {"model": MODEL, "board": BOARD, "part": board_part(BOARD).name,
           "tokens": args.tokens, **code_source(),
           "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or
                       platform.machine(), "python": platform.python_version()},
           "mode_entries": int(sum(ly.dA.shape[0] * ly.dA.shape[1] for ly in model.layers))}
    rec["fabric"] = {s: {"fabric": f.compiled.cfg.to_dict(), "packing": f.packing,
                         "cores_used": f.compiled.cores_used,
                         "estimated_cells": f.resources.as_cells(),
                         "estimated_logic_sites": round(f.resources.logic),
                         "part_usage": {k: [round(a), b] for k, (a, b) in f.usage().items()},
                         "estimated_cycles": {"pipelined_per_step": f.estimate.pipelined,
                                              "fall_through_per_token": f.estimate.fall_through,
                                              "per_core": f.estimate.per_core}}
                     for s, f in fits.items()}
    rec["same_fabric"] = fits["pipelined"].compiled.cfg == fits["fall-through"].compiled.cfg
    if args.reuse:
        if not OUT.is_file():
            raise SystemExit(f"--reuse: no record {OUT.relative_to(ROOT)}; run without --reuse")
        old = json.loads(OUT.read_text())
        if (old.get("fabric") != json.loads(json.dumps(rec["fabric"]))
                or old.get("tokens") != args.tokens):
            raise SystemExit("--reuse: the recorded RTL run is of another fabric or token count; "
                             "run without --reuse")
        rec["rtl"] = old["rtl"]
        if "trained" in old:
            rec["trained"] = old["trained"]
        for r in rec["rtl"].values():       # records before counters per step were kept
            r.setdefault("counters_per_step", {k: v * r["tokens"] / r["steps"] for k, v in
                                               r["counters_per_token"].items()})
        rec["rtl_reused_from"] = {k: old.get(k) for k in ("commit", "hw_dirty", "code_root")}
    else:
        jobs = [(s, fits[s].compiled, s) for s in SCHEDULES]
        models, inputs, trained = {s: model for s in SCHEDULES}, {}, None
        if args.trained:
            trained = trained_model(args.trained, model, fits["pipelined"].compiled.cfg)
            for s in SCHEDULES:
                jobs.append((f"trained {s}", trained["compiled"], s))
                models[f"trained {s}"] = trained["model"]
                inputs[f"trained {s}"] = trained["x"]
        runs = run_rtl(jobs, models, args.tokens, inputs)
        rec["rtl"] = {s: runs[s] for s in SCHEDULES}
        if trained:
            rec["trained"] = {**trained["record"], **{s: runs[f"trained {s}"] for s in SCHEDULES}}
    comp = fits["pipelined"].compiled
    rate = rec["rtl"]["pipelined"]["fire_rate"]
    est = resources.step_cycles(comp, fire_rate=rate)
    rec["estimate_with_fire_rate"] = {"fire_rate": rate, "pipelined_per_step": est.pipelined,
                                      "fall_through_per_token": est.fall_through,
                                      "per_stage": est.per_stage, "per_core": est.per_core}
    rec["binding"] = binding(rec, comp)
    rec["clock"] = measured_clock(comp.cfg)
    rec["measured_cells"] = measured_cells(comp.cfg)
    rec["cpu"] = cpu_baselines(args.tokens)
    rec["quoted"] = [dict(q, source=str(SEED_FILE), header=QUOTED_HEADER, verbatim=quoted(q),
                          throughput_unit="tokens/s (per the slide, token-by-token processing)")
                     for q in QUOTED]
    rec["ours"] = our_rows(rec)
    RESULTS.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(rec, indent=2) + "\n")
    print()
    print(table(rec))
    print(f"results: {OUT.relative_to(ROOT)}")
    runs = [*rec["rtl"].items(),
            *((f"trained {s}", rec["trained"][s]) for s in SCHEDULES if "trained" in rec)]
    if "trained" in rec:
        t = rec["trained"]
        print(f"trained ({t['stem']}, {t['dataset']}): quantized test accuracy "
              f"{t['q_accuracy']:.4f} ({t['test_sequences']} sequences); RTL on test sequence 0 "
              f"(label {t['label']}): pipelined {t['pipelined']['run_cycles_per_step']} "
              f"cycles/step, fall-through {t['fall-through']['run_cycles_per_token']} "
              f"cycles/token, bit-exact " + str(all(
                  t[s][k] for s in SCHEDULES for k in ("rtl_equal_qforward",
                                                       "golden_equal_qforward",
                                                       "counters_rtl_equal_golden"))))
    checks = [(name, k) for name, r in runs
              for k in ("rtl_equal_qforward", "golden_equal_qforward", "counters_rtl_equal_golden")
              if not r[k]]
    if checks:
        print("NOT BIT-EXACT: " + ", ".join(f"{n}: {k}" for n, k in checks), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
