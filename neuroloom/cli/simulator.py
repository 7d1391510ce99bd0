"""The CLI's side of the Verilator backend: say when the simulator has to be built, keep the
simulator's own output in its log, and turn a failed build into one error line.

The driver and the evaluation loops reach the RTL through the transport registry
(``open_transport("verilator", ...)``); this module only adds what a terminal user needs around
it, so it is the one CLI module that looks at the simulator's build folder.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from neuroloom.contract.config import FabricConfig
from neuroloom.firmware.driver import Driver, open_transport
from neuroloom.firmware.evaluate import RTL_TIMEOUT_S, golden_driver
from neuroloom.sim import verilator_link

from .options import BACKENDS, CLIError

__all__ = ["fabric_driver", "verilator_driver"]


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


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


def _failure(e: Exception, log: Path) -> CLIError:
    hint = _log_error_line(log)
    return CLIError(f"{str(e).strip().splitlines()[0]}"
                    + (f"; the log says: {hint}" if hint else "")
                    + f" (full log: {log}; is a C++ compiler (g++) and make installed? "
                    "run `make test` to check the toolchain)")


@contextlib.contextmanager
def verilator_driver(cfg: FabricConfig, waves: bool = False) -> Iterator[Driver]:
    """A driver on the fabric RTL of ``cfg``; the Verilator build and the simulator's output go
    to ``<build>/sim.log``, a note on stderr says when it has to build first."""
    os.environ.setdefault("COCOTB_LOG_LEVEL", "WARNING")
    os.environ.setdefault("GPI_LOG_LEVEL", "WARNING")
    built = verilator_link.is_built(cfg, waves)
    build = verilator_link.sim_build_dir(cfg, waves)
    log = build / "sim.log"
    if not built:
        _note(f"building the Verilator model of the {cfg.mesh_w}x{cfg.mesh_h} fabric (first use "
              f"of this configuration{', with waves' if waves else ''}; takes a few minutes; "
              f"log: {log}) ...")
    t0 = time.perf_counter()
    try:
        with _quiet_fds(log):
            transport = open_transport("verilator", cfg=cfg, waves=waves, timeout=RTL_TIMEOUT_S)
    except RuntimeError as e:
        raise _failure(e, log) from None
    if not built:
        _note(f"built in {time.perf_counter() - t0:.0f} s")
    try:
        yield Driver(transport)
    finally:
        try:
            with _quiet_fds(log):
                transport.link.close()
        except RuntimeError as e:
            raise _failure(e, log) from None
        if waves:
            found = sorted(build.rglob("*.fst")) + sorted(build.rglob("*.vcd"))
            _note("waves: " + (", ".join(str(f) for f in found) if found else f"under {build}"))


@contextlib.contextmanager
def fabric_driver(backend: str, cfg: FabricConfig, *, waves: bool = False,
                  batch: int = 64, port: str | None = None,
                  baud: int | None = None) -> Iterator[Driver]:
    """A driver on the golden model (``batch`` sequences side by side), the RTL, or a board on
    serial ``port``."""
    if backend == "serial":
        transport = open_transport("serial", port=port,
                                   **({"baud": baud} if baud is not None else {}))
        try:
            yield Driver(transport)
        finally:
            transport.close()
        return
    if backend not in BACKENDS:
        raise CLIError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "golden":
        if waves:
            raise CLIError("--waves needs --backend verilator")
        yield golden_driver(batch)
        return
    with verilator_driver(cfg, waves) as drv:
        yield drv
