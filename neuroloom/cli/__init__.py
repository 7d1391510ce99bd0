"""``neuroloom``: compile models to config images, run them on the golden model, evaluate, inspect.

Subcommands::

    neuroloom compile MODEL -o model.nlimg [--mesh WxH] [--mode pipelined|fall-through]
    neuroloom run IMAGE (--input FILE | --sample N) [--mode M] [--running] [--counters]
                  [--backend golden|verilator [--waves]]
    neuroloom eval MODEL_OR_IMAGE [--dataset digits|digits-permuted|mnist PATH] [--limit N]
                  [--backend golden|verilator [--waves]]
    neuroloom info MODEL_OR_IMAGE [--mesh WxH]
    neuroloom demo [--limit N | --all] [--backend verilator|golden]
    neuroloom generate --mesh WxH [--neurons N ...] -o fabric.v   (Verilog + fabric.json)
    neuroloom train ...            (firmware.train; needs the 'train' extra: torch)

MODEL is a NeuroLoom model (``<stem>.npz`` + ``<stem>.json``, quantized or float -- float models
are quantized with calibration data from ``--dataset``) or a Gu S4D checkpoint (``.pt``, or a
``.npz`` state_dict with no ``.json`` beside it; give ``--activation relu``, see
:func:`firmware.importer.import_s4`).
Backends: ``golden`` (the golden model, batched) or ``verilator`` (the fabric RTL simulated by
Verilator through the framed host link, one sample at a time; the first use of a fabric
configuration builds the simulator, which takes a few minutes).
Every user error prints one line (``neuroloom: error: ...``) and exits non-zero.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["main"]

PROG = "neuroloom"
DATASET_ALIASES = {"digits": "digits", "digits-permuted": "pdigits", "pdigits": "pdigits",
                   "mnist": "mnist", "mnist-permuted": "pmnist", "pmnist": "pmnist",
                   "cifar10": "cifar10"}


class CLIError(Exception):
    """A user error with a one-line message."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# -- helpers ---------------------------------------------------------------------------------------

def _cfg(mesh: str | None, default=None):
    from neuroloom.contract.config import FabricConfig
    if mesh is None:
        return default or FabricConfig()
    return FabricConfig.parse_mesh(mesh)


def _is_image(path: Path) -> bool:
    from neuroloom.contract.image import MAGIC
    if path.suffix == ".nlimg":
        return True
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except (IsADirectoryError, FileNotFoundError):
        return False


def _dataset(spec, data_path=None, required=True):
    """``--dataset NAME [PATH]`` -> SequenceData (or None when not required and not given)."""
    from neuroloom.firmware.datasets import load_dataset
    if not spec:
        if not required:
            return None
        spec = ["digits"]
    name = DATASET_ALIASES.get(spec[0])
    if name is None:
        raise CLIError(f"unknown dataset {spec[0]!r}; choose one of "
                       f"{', '.join(sorted(DATASET_ALIASES))}")
    if len(spec) > 2:
        raise CLIError("--dataset takes a name and at most one PATH")
    path = spec[1] if len(spec) == 2 else data_path
    return load_dataset(name, path)


def _is_checkpoint(p: Path) -> bool:
    """A Gu-layout checkpoint: torch file, or a ``.npz`` with no NeuroLoom ``.json`` beside it."""
    return p.suffix in (".pt", ".pth", ".ckpt") or (
        p.suffix == ".npz" and not p.with_suffix(".json").is_file())


def _load_model(path: str, dataset=None, cfg=None, activation=None, residual=None):
    """(float model or None, QModel) from a NeuroLoom model file or a Gu checkpoint."""
    from neuroloom.firmware.importer import import_s4, load_model
    from neuroloom.firmware.model import FloatModel
    p = Path(path)
    if _is_checkpoint(p):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such file")
        try:
            fm = import_s4(p, activation=activation, residual=residual)
        except Exception as e:
            if activation is None and "activation" in str(e) and "--activation" not in str(e):
                raise CLIError(f"{str(e).strip().splitlines()[0]} (pass --activation relu)") \
                    from None
            raise
    else:
        fm = load_model(p)
    if not isinstance(fm, FloatModel):
        return None, fm
    from neuroloom.firmware.quantize import quantize
    data = dataset if dataset is not None else _dataset(["digits"])
    if data.d_in != fm.d_in:
        raise CLIError(f"{path} is a float model with d_in={fm.d_in}; quantizing it needs "
                       f"calibration data with that input width (--dataset), "
                       f"{data.name} has d_in={data.d_in}")
    q, _ = quantize(fm, data.x_train[:256], cfg)
    return fm, q


def _compile(q, cfg, mode, mesh_given: bool, row_budget: int | None = None):
    """Compile; without --mesh, grow the mesh to the smallest that fits."""
    from neuroloom.contract.config import FabricConfig
    from neuroloom.firmware.compiler import FitError, compile_model
    try:
        return compile_model(q, cfg, mode=mode, row_budget=row_budget)
    except FitError as e:
        if mesh_given or not e.mesh:
            raise
        w, h = (int(v) for v in e.mesh.split("x"))
        return compile_model(q, FabricConfig(**{**cfg.to_dict(), "mesh_w": w, "mesh_h": h}),
                             mode=mode, row_budget=row_budget)


def _import_opts(args) -> tuple:
    """(activation, residual) for :func:`firmware.importer.import_s4` from the CLI flags."""
    return (getattr(args, "activation", None),
            False if getattr(args, "no_residual", False) else None)


def _load_target(path: str, args, need_model_for_eval=False):
    """MODEL_OR_IMAGE -> (image, float model or None, QModel or None, Compiled or None)."""
    from neuroloom.contract.image import load as load_image
    from neuroloom.firmware.compiler import from_compiled
    p = Path(path)
    if not p.exists() and not Path(str(p) + ".json").exists() and \
            not p.with_suffix(".json").exists():
        raise FileNotFoundError(f"{path}: no such file")
    if _is_image(p):
        return load_image(p), None, None, None
    data = _dataset(getattr(args, "dataset", None), getattr(args, "data", None), required=False)
    cfg = _cfg(getattr(args, "mesh", None))
    fm, q = _load_model(path, data, cfg, *_import_opts(args))
    comp = _compile(q, cfg, getattr(args, "mode", None) or "pipelined",
                    getattr(args, "mesh", None) is not None, getattr(args, "row_budget", None))
    return from_compiled(comp), fm, q, comp


def _usage_table(image) -> str:
    from neuroloom.firmware.compiler import RESOURCES
    cfg = image.cfg
    caps = {"neurons": cfg.neurons, "axons": cfg.axons, "synapse_rows": cfg.synapse_rows,
            "route_words": cfg.route_words, "ucode": cfg.ucode_depth, "groups": cfg.groups}
    head = f"{'core':>4} {'(x,y)':>7} " + " ".join(f"{r:>14}" for r in RESOURCES)
    lines = [head]
    tot = dict.fromkeys(RESOURCES, 0)
    for c, u in enumerate(image.usage):
        if not u or not u.get("groups", [0])[0]:
            continue
        x, y = cfg.core_xy(c)
        cells = []
        for r in RESOURCES:
            used = u[r][0]
            tot[r] += used
            cells.append(f"{used:>6}/{caps[r]:<4}{100 * used // max(1, caps[r]):>3}%")
        lines.append(f"{c:>4} {f'({x},{y})':>7} " + " ".join(cells))
    n = sum(1 for u in image.usage if u and u.get("groups", [0])[0])
    lines.append(f"{'all':>4} {n:>4}/{cfg.num_cores:<2} " +
                 " ".join(f"{tot[r]:>14}" for r in RESOURCES))
    return "\n".join(lines)


def _describe_image(image) -> str:
    m = image.model
    S = image.num_stages
    return (f"model d_in={m.get('d_in')} H={m.get('H')} modes={m.get('modes')} "
            f"layers={m.get('layers')} classes={m.get('classes')}; fabric "
            f"{image.cfg.mesh_w}x{image.cfg.mesh_h}; {S} stages; mode {image.mode} "
            f"(pipelined: 1 step/token, latency {S} steps; fall-through: {S} steps/token)")


BACKENDS = ("golden", "verilator")


def _sim_built(cfg, waves=False) -> tuple[bool, Path]:
    """(is the Verilator model of ``cfg`` already built?, its build folder)."""
    from neuroloom.sim.verilator_link import is_built, sim_build_dir
    return is_built(cfg, waves), sim_build_dir(cfg, waves)


@contextlib.contextmanager
def _quiet_fds(log: Path):
    """Send this process's (and its children's) stdout/stderr file descriptors to ``log``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def _open_link(cfg, waves=False):
    """A :class:`sim.verilator_link.VerilatorLink` for ``cfg``; the Verilator build and the
    simulator's own output go to ``<build>/sim.log``; says so when it has to build first."""
    from neuroloom.sim.verilator_link import VerilatorLink
    os.environ.setdefault("COCOTB_LOG_LEVEL", "WARNING")
    os.environ.setdefault("GPI_LOG_LEVEL", "WARNING")
    built, build = _sim_built(cfg, waves)
    log = build / "sim.log"
    if not built:
        print(f"building the Verilator model of the {cfg.mesh_w}x{cfg.mesh_h} fabric (first use "
              f"of this configuration{', with waves' if waves else ''}; takes a few minutes; "
              f"log: {log}) ...", flush=True)
    t0 = time.perf_counter()
    try:
        with _quiet_fds(log):
            link = VerilatorLink(cfg, waves=waves, timeout=3600.0)
    except RuntimeError as e:
        hint = _log_error_line(log)
        raise CLIError(f"{str(e).strip().splitlines()[0]}"
                       + (f"; the log says: {hint}" if hint else "")
                       + f" (full log: {log}; is a C++ compiler (g++) and make installed? "
                       "run `make test` to check the toolchain)") from None
    if not built:
        print(f"built in {time.perf_counter() - t0:.0f} s", flush=True)
    return link


def _log_error_line(log: Path) -> str:
    """The first line of a build/simulator log that looks like the cause of a failure."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    for pat in ("fatal error", "error:", "Error", "%Error"):
        for ln in lines:
            if pat in ln and "Warning" not in ln:
                return ln.strip()[:300]
    return ""


@contextlib.contextmanager
def _driver(backend: str, cfg, *, waves=False, batch=64):
    """(Driver, link or None) for a backend; closes the link (and reports waves) at the end."""
    from neuroloom.firmware.driver import Driver, open_transport
    from neuroloom.firmware.transports import FramedTransport
    if backend not in BACKENDS:
        raise CLIError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "golden":
        if waves:
            raise CLIError("--waves needs --backend verilator")
        yield Driver(open_transport("golden", batch=max(1, batch), max_batch=max(1, batch))), None
        return
    link = _open_link(cfg, waves)
    try:
        yield Driver(FramedTransport(link)), link
    finally:
        with _quiet_fds(link.build / "sim.log"):
            link.close()
        if waves:
            found = sorted(link.build.rglob("*.fst")) + sorted(link.build.rglob("*.vcd"))
            where = ", ".join(str(f) for f in found) if found else f"under {link.build}"
            print(f"waves: {where}")


def _progress(total, desc):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="seq", dynamic_ncols=True, leave=False,
                file=sys.stderr)


def _golden_eval(image, x, y, mode, q=None, batch=64, desc="golden"):
    """Accuracy on the golden model (and bit-exactness against the reference when q given)."""
    from neuroloom.firmware.driver import Driver, open_transport
    batch = max(1, min(batch, len(x)))
    drv = Driver(open_transport("golden", batch=batch, max_batch=batch))
    drv.load(image)
    xq = drv.quantize(x)
    t0 = time.perf_counter()
    with _progress(len(x), f"{desc} ({mode})") as bar:
        res = drv.run(xq, mode=mode, progress=bar.update)
    dt = time.perf_counter() - t0
    acc = float(np.mean(res.predictions == y))
    mism = None
    if q is not None:
        from neuroloom.firmware.qmodel import qforward
        ref = qforward(q, xq, image.cfg)
        mism = int(np.sum(ref != res.running))
    return acc, mism, res, dt


def _rtl_eval(drv, link, xq, mode, desc="RTL"):
    """Run ``xq`` (B, K, d_in) sample by sample on the RTL: (running (B, K, C), cycles per
    sample (link.cycles around each Driver.run: clear + injects + runs + counter reads), wall
    seconds)."""
    B = len(xq)
    running, cycles = [], []
    t0 = time.perf_counter()
    with _progress(B, f"{desc} ({mode})") as bar:
        for b in range(B):
            c0 = link.cycles
            res = drv.run(xq[b:b + 1], mode=mode)
            cycles.append(link.cycles - c0)
            running.append(res.running[0])
            bar.update(1)
    return np.array(running), np.array(cycles), time.perf_counter() - t0


# -- subcommands -----------------------------------------------------------------------------------

def cmd_compile(args) -> int:
    from neuroloom.contract.image import save
    from neuroloom.firmware.compiler import from_compiled
    t0 = time.perf_counter()
    data = _dataset(args.dataset, args.data, required=False)
    cfg = _cfg(args.mesh)
    _, q = _load_model(args.model, data, cfg, *_import_opts(args))
    comp = _compile(q, cfg, args.mode, args.mesh is not None, args.row_budget)
    image = from_compiled(comp)
    size = save(image, args.output)
    s = comp.summary()
    print(f"compiled {args.model} -> {args.output}: {size} bytes, mesh {s['mesh']}, "
          f"{s['cores_used']} cores used, {s['neurons']} neurons, {s['synapse_rows']} synapse "
          f"rows, {s['hops_per_token']} hops/token, mode {args.mode} "
          f"({time.perf_counter() - t0:.2f} s)")
    return 0


def _read_input(path: str) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        if p.suffix == ".npy":
            x = np.load(p, allow_pickle=False)
        elif p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                x = z[z.files[0]]
        else:
            x = np.loadtxt(p, delimiter="," if p.suffix == ".csv" else None, ndmin=2)
    except (ValueError, OSError) as e:
        raise CLIError(f"{path}: cannot read tokens ({e})") from None
    return np.asarray(x)


def cmd_run(args) -> int:
    from neuroloom.contract.image import load
    image = load(args.image)
    d_in = len(image.inputs)
    if (args.input is None) == (args.sample is None):
        raise CLIError("give exactly one of --input FILE or --sample N")
    if args.input is not None:
        x = _read_input(args.input)
        if x.ndim == 2 and d_in == 1 and x.shape[1] != 1 and x.shape[0] == 1:
            x = x.T                     # one row of K scalar tokens
        if x.ndim == 1 and d_in == 1:
            x = x[:, None]
    else:
        data = _dataset(args.dataset, args.data)
        if not 0 <= args.sample < len(data.x_test):
            raise CLIError(f"--sample {args.sample} outside the test split (0.."
                           f"{len(data.x_test) - 1})")
        x = data.x_test[args.sample]
        print(f"{data.name} test sample {args.sample}: label {data.y_test[args.sample]}")
    if x.shape[-1] != d_in or x.ndim not in (2, 3):
        raise CLIError(f"input of shape {x.shape}: the image expects (K, {d_in}) or "
                       f"(B, K, {d_in}) tokens")
    batch = x.shape[0] if x.ndim == 3 else 1
    with _driver(args.backend, image.cfg, waves=args.waves, batch=min(batch, 64)) as (drv, link):
        drv.load(image)
        xq = x.astype(np.int64) if args.payloads else drv.quantize(x)
        c0 = link.cycles if link else 0
        res = drv.run(xq, mode=args.mode)
        cycles = link.cycles - c0 if link else None
    run = res.running if res.running.ndim == 3 else res.running[None]
    scale = res.out_scale or 1.0
    for b in range(run.shape[0]):
        if args.running:
            for k in range(run.shape[1]):
                print(f"sample {b} token {k}: " + " ".join(str(v) for v in run[b, k]))
        logits = run[b, -1]
        print(f"sample {b}: class {int(np.argmax(logits))}  logits "
              + " ".join(f"{v / scale:.4g}" for v in logits))
    print(f"{res.steps} steps ({res.mode})" + (
        "" if cycles is None else f"; {cycles} RTL clock cycles for {run.shape[0]} sample(s) of "
        f"{run.shape[1]} tokens = {cycles / max(1, run.size // run.shape[2]):.1f} cycles/token"))
    if args.counters:
        names = ("neuron_updates", "syn_ops", "spikes_sent", "spikes_received")
        print("core " + " ".join(f"{n:>16}" for n in names))
        for c in range(res.counters.shape[0]):
            if res.counters[c].any():
                print(f"{c:>4} " + " ".join(f"{v:>16}" for v in res.counters[c]))
    return 0


def cmd_eval(args) -> int:
    if args.waves and args.backend != "verilator":
        raise CLIError("--waves needs --backend verilator")
    data = _dataset(args.dataset, args.data)
    image, fm, q, _ = _load_target(args.target, args)
    if len(image.inputs) != data.d_in:
        raise CLIError(f"the model takes d_in={len(image.inputs)} features per token, "
                       f"{data.name} has {data.d_in}")
    x, y = data.x_test, data.y_test
    if args.limit is not None:
        x, y = x[:args.limit], y[:args.limit]
    print(f"{data.name}: {len(x)} test sequences of {x.shape[1]} tokens; {_describe_image(image)}")
    if fm is not None:
        print(f"float accuracy      {np.mean(fm.predict(x) == y):.4f}")
    if q is not None:
        from neuroloom.firmware.train import accuracy_q
        print(f"quantized accuracy  {accuracy_q(q, x, y, image.cfg):.4f}")
    modes = [args.mode] if args.mode else [image.mode]
    for mode in modes:
        acc, mism, res, dt = _golden_eval(image, x, y, mode, q, batch=args.batch)
        exact = "" if mism is None else (
            "  (== quantized, bit for bit)" if mism == 0 else f"  ({mism} logits DIFFER)")
        print(f"golden accuracy     {acc:.4f}  [{mode}, {len(x) / dt:.1f} seq/s]{exact}")
        if mism:
            return 1
    if args.backend == "golden":
        return 0
    ok = True
    with _driver("verilator", image.cfg, waves=args.waves) as (drv, link):
        drv.load(image)
        xq = drv.quantize(x)
        for mode in modes:
            gold = _golden_eval(image, x, y, mode, batch=args.batch)[2].running
            run, cyc, dt = _rtl_eval(drv, link, xq, mode)
            same = int(sum(np.array_equal(run[b], gold[b]) for b in range(len(x))))
            acc = float(np.mean(run[:, -1].argmax(-1) == y))
            print(f"RTL accuracy        {acc:.4f}  [{mode}, {cyc.mean() / x.shape[1]:.1f} "
                  f"cycles/token, {len(x) / dt:.2f} seq/s simulated] RTL == golden bit-exact on "
                  f"{same}/{len(x)} samples")
            ok &= same == len(x)
    return 0 if ok else 1


def cmd_info(args) -> int:
    image, fm, q, comp = _load_target(args.target, args)
    print(_describe_image(image))
    if comp is not None:
        s = comp.summary()
        print(f"compiled for {s['mesh']}: {s['cores_used']} cores used, "
              f"{s['hops_per_token']} NoC hops/token, {len(image.writes)} config writes")
    print(_usage_table(image))
    return 0


def _shipped_model():
    """(float model or None, QModel, name) of the model shipped in firmware/models, or None."""
    from neuroloom.firmware.importer import SHIPPED_MODEL_DIR, load_model
    from neuroloom.firmware.model import FloatModel
    qs = sorted(SHIPPED_MODEL_DIR.glob("*-q.json")) if SHIPPED_MODEL_DIR.is_dir() else []
    if not qs:
        return None
    qpath = qs[0].with_suffix("")
    q = load_model(qpath)
    fpath = Path(str(qpath)[:-2] + "-float")
    fm = load_model(fpath) if fpath.with_suffix(".json").is_file() else None
    return (fm if isinstance(fm, FloatModel) else None), q, qpath.name


CORE_SYNTH = Path(__file__).resolve().parents[1] / "bench" / "results" / "core_synth.json"
DEFAULT_CLOCK_MHZ = 16.0
RTL_DEMO_LIMIT = 100         # RTL samples by default (pipelined); fall-through: the first few
RTL_DEMO_FT = 20


def _clock():
    """(MHz, where the number came from) for the tokens/s column."""
    try:
        js = json.loads(CORE_SYNTH.read_text())
        f = float(js["fmax_mhz"])
        c = js.get("config", {})
        return f, (f"the post-place Fmax of one neuron core ({c.get('neurons', '?')} neurons) "
                   f"on ECP5 (nextpnr), from {CORE_SYNTH.relative_to(CORE_SYNTH.parents[2])}")
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_CLOCK_MHZ, (f"an assumed clock ({CORE_SYNTH.name} not found: run "
                                   "bench/core_synth.py for the measured Fmax)")


def _demo_model(data):
    shipped = _shipped_model()
    if shipped is None:
        from neuroloom.firmware.importer import SHIPPED_MODEL_DIR
        from neuroloom.firmware.model import FloatModel
        from neuroloom.firmware.quantize import quantize
        print(f"note: no trained model in {SHIPPED_MODEL_DIR} yet; using a small RANDOM model "
              "(accuracy near chance)")
        fm = FloatModel.random(d_in=1, H=8, N=4, L=2, classes=10, seed=0)
        q, _ = quantize(fm, data.x_train[:128])
        return fm, q, "random H=8 N=4 L=2"
    return shipped


def cmd_demo(args) -> int:
    if args.backend == "verilator":
        return _demo_rtl(args)
    if args.all:
        args.limit = None
    return _demo_golden(args)


def _demo_rtl(args) -> int:
    from neuroloom.firmware.compiler import MODES, from_compiled
    from neuroloom.firmware.datasets import digits
    from neuroloom.firmware.qmodel import qforward
    from neuroloom.firmware.train import accuracy_float
    t_start = time.perf_counter()
    data = digits()
    x, y = data.x_test, data.y_test
    n = len(x) if args.all else min(len(x), args.limit if args.limit is not None
                                    else RTL_DEMO_LIMIT)
    if n < 1:
        raise CLIError("--limit must be at least 1")
    fm, q, name = _demo_model(data)
    cfg = _cfg(args.mesh)
    comp = _compile(q, cfg, "pipelined", args.mesh is not None)
    image = from_compiled(comp)
    cfg = image.cfg
    s = comp.summary()
    K = x.shape[1]
    print(f"model {name}: {q.describe()}")
    print(f"digits test split: {len(x)} sequences of {K} tokens; RTL on the first {n}")
    print(f"fabric {s['mesh']} ({s['cores_used']} cores used, {s['neurons']} neurons, "
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
        acc, mism, res, _ = _golden_eval(image, x, y, mode, q)
        gold[mode] = res.running
        rows.append((f"golden ({mode})", acc, len(x),
                     "== quantized, bit for bit" if mism == 0 else f"{mism} logits DIFFER"))
        ok &= mism == 0
    counts = {"pipelined": n, "fall-through": min(n, RTL_DEMO_FT) if not args.all else n}
    perf = {}
    with _driver("verilator", cfg, waves=args.waves) as (drv, link):
        t0 = time.perf_counter()
        drv.load(image)
        load_s, load_cycles = time.perf_counter() - t0, link.cycles
        xq = drv.quantize(x[:n])
        assert np.array_equal(xq, xq_all[:n])
        for mode in MODES:
            m = counts[mode]
            run, cyc, dt = _rtl_eval(drv, link, xq[:m], mode)
            same = int(sum(np.array_equal(run[b], gold[mode][b]) for b in range(m)))
            ok &= same == m
            perf[mode] = (cyc.mean() / K, m * K / dt, m)
            rows.append((f"RTL ({mode})", float(np.mean(run[:, -1].argmax(-1) == y[:m])), m,
                         f"RTL == golden bit-exact on {same}/{m} samples"))
    mhz, where = _clock()
    print()
    print(f"{'':<24}{'accuracy':>9}{'samples':>9}")
    for what, acc, m, note in rows:
        a = "n/a" if acc is None else f"{acc:.4f}"
        print(f"{what:<24}{a:>9}{m:>9}  {note}".rstrip())
    print()
    print(f"{'RTL mode':<14}{'cycles/token':>13}{f'tokens/s @ {mhz:g} MHz':>22}"
          f"{'simulated tokens/s (wall)':>27}{'samples':>9}")
    for mode in MODES:
        cpt, wall, m = perf[mode]
        print(f"{mode:<14}{cpt:>13.1f}{mhz * 1e6 / cpt:>22,.0f}{wall:>27.1f}{m:>9}")
    print()
    print(f"cycles/token: mean over samples of the RTL clock cycles of the commands of one "
          f"Driver.run (each from its first word into the fabric to its response's last word out) "
          f"/ {K} tokens, host-link traffic included (CLEAR, token INJECTs, RUN, counter reads); "
          f"clock {mhz:g} MHz = {where}. Image load: {load_cycles} cycles, {load_s:.1f} s. "
          f"Total {time.perf_counter() - t_start:.0f} s.")
    return 0 if ok else 1


def _demo_golden(args) -> int:
    from neuroloom.firmware.compiler import MODES, from_compiled
    from neuroloom.firmware.datasets import digits
    from neuroloom.firmware.train import accuracy_float, accuracy_q
    data = digits()
    x, y = data.x_test, data.y_test
    if args.limit is not None:
        x, y = x[:args.limit], y[:args.limit]
    fm, q, name = _demo_model(data)
    cfg = _cfg(args.mesh)
    comp = _compile(q, cfg, "pipelined", args.mesh is not None)
    image = from_compiled(comp)
    s = comp.summary()
    print(f"model {name}: {q.describe()}; {len(x)} digits test sequences of {x.shape[1]} tokens")
    print(f"fabric {s['mesh']} ({s['cores_used']} cores used, {s['neurons']} neurons, "
          f"{s['hops_per_token']} hops/token)")
    if fm is not None:
        print(f"float accuracy      {accuracy_float(fm, x, y):.4f}")
    else:
        print("float accuracy      n/a (no float model shipped)")
    print(f"quantized accuracy  {accuracy_q(q, x, y, image.cfg):.4f}")
    ok = True
    for mode in MODES:
        acc, mism, res, dt = _golden_eval(image, x, y, mode, q)
        K = x.shape[1]
        print(f"golden accuracy     {acc:.4f}  [{mode}: {res.steps} steps for {K} tokens = "
              f"{res.steps / K:.2f} steps/token, token period {image.token_period(mode)}, "
              f"latency {image.output_step(mode, 0) + 1} steps; {len(x) / dt:.0f} seq/s] "
              + ("== quantized, bit for bit" if mism == 0 else f"{mism} logits DIFFER"))
        ok &= mism == 0
    return 0 if ok else 1


GEN_PARAMS = ("neurons", "axons", "synapse_rows", "route_words", "ucode_depth", "groups")


def cmd_generate(args) -> int:
    """Verilog of ``hw.fabric.Fabric(cfg)`` and a JSON description beside it."""
    from neuroloom.contract.config import FabricConfig
    if args.mesh is None:
        raise CLIError("give --mesh WxH")
    kw = {k: getattr(args, k) for k in GEN_PARAMS if getattr(args, k) is not None}
    cfg = FabricConfig.parse_mesh(args.mesh, **kw)        # ValueError -> one line
    out = Path(args.output)
    if out.is_dir():
        raise CLIError(f"{out}: is a folder; give the Verilog file to write (-o fabric.v)")
    if not out.parent.is_dir():
        raise FileNotFoundError(2, "No such file or directory", str(out.parent))
    from amaranth.hdl import Shape

    from neuroloom.contract import hostproto as hp
    from neuroloom.hw.fabric import Fabric
    from neuroloom.hw.verilog import to_verilog
    t0 = time.perf_counter()
    fabric = Fabric(cfg)
    ports = [{"name": "clk", "dir": "in", "width": 1},
             {"name": "rst", "dir": "in", "width": 1, "note": "synchronous, active high"}]
    for name, m in fabric.signature.members.items():
        ports.append({"name": name, "dir": "in" if m.flow.name == "In" else "out",
                      "width": Shape.cast(m.shape).width})
    text = to_verilog(fabric, args.top)
    out.write_text(text)
    desc = {
        "top": args.top,
        "verilog": out.name,
        "config": cfg.to_dict(),
        "num_cores": cfg.num_cores,
        "ports": ports,
        "host_protocol": {
            "version": getattr(hp, "VERSION", 1),
            "magic": f"0x{hp.MAGIC:08X}",
            "max_payload_words": hp.MAX_PAYLOAD,
            "commands": {c.name: int(c) for c in hp.Cmd},
            "response_flag": hp.RESPONSE,
            "output_opcode": hp.OUTPUT,
            "error_opcode": hp.ERROR,
            "fabric_counters": list(hp.FABRIC_COUNTERS),
        },
        "generator": "neuroloom generate",
    }
    js = out.with_suffix(".json")
    js.write_text(json.dumps(desc, indent=2) + "\n")
    print(f"fabric {cfg.mesh_w}x{cfg.mesh_h} ({cfg.num_cores} cores: {cfg.neurons} neurons, "
          f"{cfg.axons} axons, {cfg.synapse_rows} synapse rows, {cfg.route_words} route words, "
          f"ucode {cfg.ucode_depth}, {cfg.groups} groups) -> {out} ({len(text)} bytes, module "
          f"{args.top}) + {js} ({time.perf_counter() - t0:.1f} s)")
    return 0


def cmd_train(args) -> int:
    try:
        from neuroloom.firmware import train
    except ImportError as e:
        raise CLIError(f"training needs the 'train' extra (pip install -e '.[train]'): {e}") \
            from None
    return int(train.main(args.rest) or 0)


# -- entry point -----------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    from neuroloom.firmware.compiler import MODES
    p = _Parser(prog=PROG, description="NeuroLoom: compile S4D models onto the fabric, run, "
                                       "evaluate and inspect them.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def dataset_opts(sp):
        sp.add_argument("--dataset", nargs="+", metavar=("NAME", "PATH"),
                        help="digits (default), digits-permuted, mnist PATH, mnist-permuted "
                             "PATH, cifar10 PATH")
        sp.add_argument("--data", default=None, help="folder with the dataset's files")

    def backend_opts(sp, default="golden"):
        sp.add_argument("--backend", choices=BACKENDS, default=default,
                        help=f"golden model or the fabric RTL simulated by Verilator "
                             f"(default {default})")
        sp.add_argument("--waves", action="store_true",
                        help="verilator: write a waveform (FST) into the build folder")

    def import_opts(sp):
        sp.add_argument("--activation", default=None,
                        help="Gu checkpoints: the layers' activation (a checkpoint does not "
                             "record it; the fabric runs 'relu')")
        sp.add_argument("--no-residual", action="store_true",
                        help="Gu checkpoints: the layers have no residual connection")

    c = sub.add_parser("compile", help="compile a model to a config image")
    c.add_argument("model")
    c.add_argument("-o", "--output", required=True, help="image file to write (.nlimg)")
    c.add_argument("--mesh", help="WxH (default: 2x2, or the smallest mesh that fits)")
    c.add_argument("--mode", choices=MODES, default="pipelined")
    c.add_argument("--row-budget", type=int, default=None, metavar="N",
                   help="at most N synapse rows per core (default: all): shorter steps on "
                        "more cores, since a core works through one row per cycle")
    import_opts(c)
    dataset_opts(c)
    c.set_defaults(func=cmd_compile)

    r = sub.add_parser("run", help="run token sequences through an image (golden model or RTL)")
    r.add_argument("image")
    r.add_argument("--input", help="tokens: .npy/.npz/.csv/.txt, (K, d_in) or (B, K, d_in)")
    r.add_argument("--sample", type=int, help="use test sample N of --dataset instead")
    r.add_argument("--payloads", action="store_true",
                   help="the input holds integer payloads (do not quantize)")
    r.add_argument("--mode", choices=MODES, default=None)
    r.add_argument("--running", action="store_true", help="print running logits per token")
    r.add_argument("--counters", action="store_true", help="print per-core counters")
    backend_opts(r)
    dataset_opts(r)
    r.set_defaults(func=cmd_run)

    e = sub.add_parser("eval", help="test accuracy (float, quantized, golden)")
    e.add_argument("target", metavar="MODEL_OR_IMAGE")
    e.add_argument("--limit", type=int, default=None, help="first N test sequences only")
    e.add_argument("--mesh", help="WxH when compiling a model")
    e.add_argument("--mode", choices=MODES, default=None)
    e.add_argument("--batch", type=int, default=64, help="sequences run side by side (golden)")
    backend_opts(e)
    import_opts(e)
    dataset_opts(e)
    e.set_defaults(func=cmd_eval)

    i = sub.add_parser("info", help="model/image summary and per-core usage table")
    i.add_argument("target", metavar="MODEL_OR_IMAGE")
    i.add_argument("--mesh", help="WxH when compiling a model")
    import_opts(i)
    dataset_opts(i)
    i.set_defaults(func=cmd_info)

    d = sub.add_parser("demo", help="the shipped model on the digits test split")
    d.add_argument("--limit", type=int, default=None,
                   help=f"first N test sequences (RTL default {RTL_DEMO_LIMIT}; golden: all)")
    d.add_argument("--all", action="store_true", help="the whole test split on the RTL too")
    d.add_argument("--mesh", default=None)
    backend_opts(d, default="verilator")
    d.set_defaults(func=cmd_demo)

    g = sub.add_parser("generate", help="write the fabric's Verilog (+ a JSON description)")
    g.add_argument("--mesh", help="WxH tiles (required)")
    from neuroloom.contract.config import FabricConfig
    for k in GEN_PARAMS:
        g.add_argument(f"--{k.replace('_', '-')}", type=int, default=None,
                       help=f"per core (default {getattr(FabricConfig, k)})")
    g.add_argument("-o", "--output", required=True, help="Verilog file to write (fabric.v); "
                   "the JSON description goes beside it (fabric.json)")
    g.add_argument("--top", default="fabric", help="top module name (default fabric)")
    g.set_defaults(func=cmd_generate)

    t = sub.add_parser("train", help="train + quantize a model (firmware.train)", add_help=False)
    t.add_argument("rest", nargs=argparse.REMAINDER)
    t.set_defaults(func=cmd_train)
    return p


def _user_errors() -> tuple:
    from neuroloom.contract.coreconfig import ConfigError
    from neuroloom.contract.image import ImageError
    from neuroloom.firmware.compiler import CompileError
    from neuroloom.firmware.driver import DriverError
    errs = [CLIError, CompileError, ConfigError, DriverError, ImageError, FileNotFoundError,
            IsADirectoryError, PermissionError, ValueError]
    for mod, name in (("neuroloom.firmware.datasets", "DatasetError"),
                      ("neuroloom.firmware.importer", "ModelImportError")):
        try:
            errs.append(getattr(__import__(mod, fromlist=[name]), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errs)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except _user_errors() as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, OSError) and e.filename:
            msg = f"{e.filename}: {(e.strerror or msg).lower()}"
        print(f"{PROG}: error: {msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
