"""The project's accuracy table on public benchmarks: float, PTQ, QAFT and on-fabric accuracy
of n-S4D classifiers trained by NeuroLoom's own training code, beside published references.

Data sets: JapaneseVowels (UEA: 12 channels, 9 classes, lengths 7..29), ItalyPowerDemand and
GunPoint (UCR, one channel), read from the ``.ts`` files bundled in the ``aeon`` wheel (no
download at run time), and the permuted digits (``pdigits``, the psMNIST analogue, bundled with
scikit-learn). Each channel is standardized with the train split's mean and deviation.

For every data set and seed: train (float pre-training masked to each sequence's true length,
PTQ, QAFT), evaluate the float model, the PTQ model and the QAFT model on the whole test
split (each sequence read at its true length), compile the QAFT model and run the whole test
split on the golden fabric model (checked bit for bit against the quantized reference); for
the first seed, run the first ``--rtl`` test sequences on the RTL (Verilator), each streamed
at its own length, checked against the golden model bit for bit. For JapaneseVowels the same
seeds are also trained the old way (padding not masked) and read padded and at true length.
As a check of the published references, 1-NN DTW (full window; several channels: DTW_D,
squared Euclidean cost over channels; at true lengths; on the data as distributed, not
standardized) is measured here too.

The data need ``aeon``'s wheel, installed without its dependencies (numba, which aeon needs,
caps numpy below 2.4; this project pins numpy 2.4): ``pip install --no-deps aeon==1.6.0``.

Run: ``.venv/bin/python bench/accuracy_bench.py`` (``--quick``: one seed, fewer epochs);
prints the table, records ``bench/results/accuracy.json`` with the wall time.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from neuroloom.contract.config import FabricConfig
from neuroloom.firmware.compiler import from_compiled
from neuroloom.firmware.datasets import SequenceData, from_arrays, load_dataset, read_ts
from neuroloom.firmware.deploy import compile_fitting
from neuroloom.firmware.evaluate import (
    accuracy_float,
    accuracy_q,
    golden_eval,
    rtl_driver,
    rtl_eval,
)
from neuroloom.firmware.train import train

RESULTS = Path(__file__).parent / "results" / "accuracy.json"

#: published test accuracies (1 - error rate) and where they come from
PUBLISHED = {
    "JapaneseVowels": ("1-NN DTW_I 0.959, DTW_D 0.949, ED 0.924",
                       "Bagnall et al., The UEA multivariate time series classification "
                       "archive, 2018 (arXiv:1811.00075), benchmark table"),
    "ItalyPowerDemand": ("1-NN ED 0.955, DTW 0.950, DTW (learned window) 0.955",
                         "Dau et al., The UCR time series archive (IEEE/CAA J. Autom. Sinica "
                         "2019; arXiv:1810.07758), archive summary table (error rates)"),
    "GunPoint": ("1-NN ED 0.913, DTW 0.907, DTW (learned window) 0.913",
                 "Dau et al., The UCR time series archive (arXiv:1810.07758), archive summary "
                 "table (error rates)"),
    "pdigits": ("-", "sklearn 8x8 digits under a fixed permutation: no published figure; the "
                     "psMNIST analogue"),
}

#: model and training per data set (seed-small model: H=16, N=8 complex modes, 2 layers)
SETTINGS = {
    "JapaneseVowels": dict(H=16, N=8, L=2, epochs=80, batch=32, qaft_epochs=5),
    "ItalyPowerDemand": dict(H=16, N=8, L=2, epochs=150, batch=16, qaft_epochs=5),
    "GunPoint": dict(H=16, N=8, L=2, epochs=200, batch=16, qaft_epochs=5),
    "pdigits": dict(H=16, N=8, L=2, epochs=60, batch=32, qaft_epochs=3),
}


def aeon_data(name: str) -> SequenceData:
    spec = importlib.util.find_spec("aeon")           # finds the files, imports nothing
    if spec is None or not spec.submodule_search_locations:
        sys.exit("the UEA/UCR data come with aeon's wheel: pip install --no-deps aeon==1.6.0")
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / name
    return from_arrays(*read_ts(folder / f"{name}_TRAIN.ts"),
                       *read_ts(folder / f"{name}_TEST.ts"), name=name)


def standardized(d: SequenceData) -> SequenceData:
    """Each channel scaled by the train split's mean and deviation over true tokens."""
    B, K, _ = d.x_train.shape
    n = np.full(B, K) if d.len_train is None else d.len_train
    valid = np.arange(K)[None, :] < n[:, None]                                  # (B, K)
    tok = d.x_train[valid]                                                      # (tokens, C)
    mu, sd = tok.mean(0), tok.std(0) + 1e-8

    def f(x, lens):
        m = np.arange(x.shape[1])[None, :] < (x.shape[1] if lens is None else lens[:, None])
        return np.where(m[..., None], (x - mu) / sd, 0.0)

    return SequenceData(d.name, f(d.x_train, d.len_train), d.y_train, f(d.x_test, d.len_test),
                        d.y_test, d.classes, d.len_train, d.len_test, d.labels)


def dtw_1nn(d: SequenceData, max_pairs: int = 1 << 15) -> float:
    """1-NN accuracy under DTW (full window, squared Euclidean cost over channels), every
    sequence at its true length."""
    ltr = np.full(len(d.x_train), d.x_train.shape[1]) if d.len_train is None else d.len_train
    lte = np.full(len(d.x_test), d.x_test.shape[1]) if d.len_test is None else d.len_test
    Ttr = d.x_train.shape[1]
    hits = 0
    step = max(1, max_pairs // len(d.x_train))
    for a in range(0, len(d.x_test), step):
        xt = d.x_test[a:a + step]                                          # (b, T1, C)
        b, T1 = len(xt), xt.shape[1]
        D = np.full((b, len(d.x_train), Ttr + 1), np.inf)
        D[:, :, 0] = 0.0
        prev = D.copy()
        best = np.full((b, len(d.x_train)), np.inf)
        for i in range(T1):
            cost = ((xt[:, None, i, None, :] - d.x_train[None]) ** 2).sum(-1)  # (b, n, T2)
            cur = np.full_like(prev, np.inf)
            for j in range(Ttr):
                cur[:, :, j + 1] = cost[:, :, j] + np.minimum(
                    np.minimum(prev[:, :, j], prev[:, :, j + 1]), cur[:, :, j])
            if i == 0:
                cur[:, :, 1:] = np.cumsum(cost, axis=2)
            prev = cur
            ends = (lte[a:a + b] == i + 1)                                  # (b,)
            if ends.any():
                best[ends] = cur[ends][:, np.arange(len(ltr)), ltr]
        hits += int(np.sum(d.y_train[np.argmin(best, axis=1)] == d.y_test[a:a + b]))
    return hits / len(d.x_test)


def padded(d: SequenceData) -> SequenceData:
    """The same data without lengths: padding is part of every sequence (the old way)."""
    return SequenceData(d.name, d.x_train, d.y_train, d.x_test, d.y_test, d.classes,
                        labels=d.labels)


def run_set(name: str, seeds: list[int], quick: bool, rtl_n: int, cfg: FabricConfig,
            log) -> dict:
    raw = None if name == "pdigits" else aeon_data(name)
    data = load_dataset("pdigits") if raw is None else standardized(raw)
    st = dict(SETTINGS[name])
    if quick:
        st["epochs"] = max(5, st["epochs"] // 5)
        st["qaft_epochs"] = 1
    lte = data.len_test
    rec = {"train": len(data.x_train), "test": len(data.x_test), "channels": data.d_in,
           "classes": data.classes, "settings": st, "seeds": seeds, "runs": []}
    rec["lengths"] = (f"{int(lte.min())}..{int(lte.max())}" if lte is not None
                      else str(data.x_test.shape[1]))
    t0 = time.perf_counter()
    for seed in seeds:
        t1 = time.perf_counter()
        r = train(data, seed=seed, progress=False, log=lambda _: None, **st)
        m = r.metrics
        run = {"seed": seed, "float": m["float_acc"], "ptq": m["ptq_acc"],
               "qaft": m.get("qaft_acc", m["q_acc"]), "deployed": m["q_acc"],
               "train_s": round(time.perf_counter() - t1, 1)}
        comp = compile_fitting(r.qmodel, cfg)
        image = from_compiled(comp)
        g = golden_eval(image, data.x_test, data.y_test, image.mode, r.qmodel, batch=128,
                        lengths=lte)
        run.update(golden=g.accuracy, golden_mismatches=g.mismatches,
                   golden_s=round(g.seconds, 1), mesh=f"{image.cfg.mesh_w}x{image.cfg.mesh_h}")
        if seed == seeds[0] and rtl_n:
            n = min(rtl_n, len(data.x_test))
            with rtl_driver(image.cfg) as drv:
                drv.load(image)
                xq = drv.quantize(data.x_test[:n])
                rr = rtl_eval(drv, xq, image.mode, lengths=None if lte is None else lte[:n])
            ntok = n * xq.shape[1] if lte is None else int(lte[:n].sum())
            run.update(rtl_n=n, rtl_exact=rr.same_as(g.result.running[:n]),
                       rtl_acc=rr.accuracy(data.y_test[:n]),
                       rtl_cycles_per_token=round(float(rr.cycles.sum()) / ntok, 1),
                       rtl_s=round(rr.seconds, 1))
        if data.variable_length:
            # the old way: the padding is part of every sequence; read padded, and at true length
            old = train(padded(data), seed=seed, progress=False, log=lambda _: None, **st)
            run.update(old_padded=accuracy_float(old.float_model, data.x_test, data.y_test),
                       old_true_length=accuracy_float(old.float_model, data.x_test,
                                                      data.y_test, lte),
                       old_q_padded=accuracy_q(old.qmodel, data.x_test, data.y_test),
                       old_q_true_length=accuracy_q(old.qmodel, data.x_test, data.y_test,
                                                    lengths=lte))
        log(f"  {name} seed {seed}: " + ", ".join(
            f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in run.items()
            if k != "seed"))
        rec["runs"].append(run)
    rec["dtw_1nn"] = None if raw is None else dtw_1nn(raw)      # the data as published
    rec["seconds"] = round(time.perf_counter() - t0, 1)
    return rec


def ms(runs, key) -> str:
    v = np.array([r[key] for r in runs if r.get(key) is not None], dtype=float)
    return "-" if not len(v) else f"{v.mean():.3f} +- {v.std():.3f}"


def table(results: dict) -> list[str]:
    lines = [f"{'data set':<17} {'train/test':>10} {'ch':>3} {'cls':>3} {'len':>6}  "
             f"{'float':>15} {'PTQ':>15} {'QAFT':>15} {'on fabric':>15}  bit-exact"]
    for name, rec in results.items():
        runs = rec["runs"]
        gold_ok = all(r["golden_mismatches"] == 0 for r in runs)
        rtl = [r for r in runs if "rtl_n" in r]
        exact = f"golden==qref {'all' if gold_ok else 'NO'}" + "".join(
            f"; RTL==golden {r['rtl_exact']}/{r['rtl_n']}" for r in rtl)
        lines.append(f"{name:<17} {rec['train']:>4}/{rec['test']:<5} {rec['channels']:>3} "
                     f"{rec['classes']:>3} {rec['lengths']:>6}  {ms(runs, 'float'):>15} "
                     f"{ms(runs, 'ptq'):>15} {ms(runs, 'qaft'):>15} {ms(runs, 'golden'):>15}"
                     f"  {exact}")
    lines.append("")
    for name, rec in results.items():
        kind = "DTW_D" if rec["channels"] > 1 else "DTW"
        dtw = ("" if rec["dtw_1nn"] is None
               else f"; measured here: 1-NN {kind} {rec['dtw_1nn']:.3f}")
        lines.append(f"{name}: published {PUBLISHED[name][0]}{dtw}  [{PUBLISHED[name][1]}]")
        runs = rec["runs"]
        if "old_padded" in runs[0]:
            lines.append(f"{name}, padding not masked (the old training): float read padded "
                         f"{ms(runs, 'old_padded')}, at true length {ms(runs, 'old_true_length')}"
                         f"; quantized padded {ms(runs, 'old_q_padded')}, at true length "
                         f"{ms(runs, 'old_q_true_length')}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--seeds", type=int, default=3, help="seeds per data set (default 3)")
    ap.add_argument("--rtl", type=int, default=8,
                    help="test sequences run on the RTL for the first seed (default 8; 0: none)")
    ap.add_argument("--quick", action="store_true", help="one seed, a fifth of the epochs")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args()
    seeds = [0] if a.quick else list(range(a.seeds))
    cfg = FabricConfig(mesh_w=1, mesh_h=1)            # one default core: one Verilator build
    t0 = time.perf_counter()
    results = {}
    for name in a.sets:
        print(f"{name} ...", file=sys.stderr, flush=True)
        results[name] = run_set(name, seeds, a.quick, a.rtl, cfg,
                                lambda s: print(s, file=sys.stderr, flush=True))
    wall = time.perf_counter() - t0
    lines = table(results)
    lines.append(f"wall time {wall / 60:.1f} min ({platform.machine()}, "
                 f"{'quick' if a.quick else f'{len(seeds)} seeds'}; command: "
                 f"python bench/accuracy_bench.py {' '.join(sys.argv[1:])})")
    print("\n".join(lines))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"results": results, "published": PUBLISHED,
                                 "wall_s": round(wall, 1), "quick": a.quick,
                                 "command": "python bench/accuracy_bench.py "
                                            + " ".join(sys.argv[1:]),
                                 "table": lines}, indent=1) + "\n")


if __name__ == "__main__":
    main()
