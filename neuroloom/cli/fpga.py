"""Put the fabric on an FPGA board: 'neuroloom fpga build' makes a bitstream (Yosys, nextpnr,
ecppack), 'neuroloom fpga program' loads it with openFPGALoader; then 'neuroloom run IMAGE
--backend serial --port /dev/ttyUSB0' runs models on the board."""

from __future__ import annotations

import sys
from pathlib import Path

from neuroloom.fpga.boards import BOARDS
from neuroloom.fpga.build import (
    DEFAULT_CLOCK_MHZ,
    PLACERS,
    ROUTERS,
    BuildError,
    ProgramError,
    build,
    program,
)

from . import options
from .options import CLIError


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="fpga_command", required=True,
                                parser_class=type(parser))
    b = sub.add_parser("build", help="build a bitstream of a fabric for a board",
                       description="Yosys + nextpnr-ecp5 + ecppack (YoWASP) on a board top: PLL, "
                                   "UART host link, status LEDs, the fabric. Prints a line per "
                                   "stage and a table of resources and Fmax per seed; the "
                                   "reports stay beside the bitstream.")
    b.add_argument("--board", choices=sorted(BOARDS), default="ulx3s-85f",
                   help="the board (default ulx3s-85f)")
    b.add_argument("--clock", type=float, default=DEFAULT_CLOCK_MHZ, metavar="MHZ",
                   help=f"fabric clock made by the PLL (default {DEFAULT_CLOCK_MHZ:g})")
    b.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="nextpnr seeds 1..N, one place-and-route each (default 1)")
    b.add_argument("--baud", type=int, default=None,
                   help="UART rate (default: the fastest the board's USB-UART makes, 3000000 "
                        "on the ULX3S; the UART has a clock of its own, made for it)")
    b.add_argument("--step-budget", type=int, default=0, metavar="CYCLES",
                   help="barrier overrun budget per step, lights the overrun LED (default 0: "
                        "none)")
    b.add_argument("--router", choices=ROUTERS, default=ROUTERS[0],
                   help=f"nextpnr's router (default {ROUTERS[0]}: router1 stalls on a congested "
                        f"fabric)")
    b.add_argument("--tmg-ripup", action="store_true",
                   help="nextpnr's timing-driven rip-up in the router: slower routing (up to "
                        "~40 minutes a seed for one core), higher Fmax")
    b.add_argument("--placer", choices=PLACERS, default=None,
                   help="nextpnr's placer (default: nextpnr's own, heap); static spreads dense "
                        "logic and places slower (a 2x2 fabric of default cores routes only "
                        "with it)")
    b.add_argument("--no-timing-check", action="store_true",
                   help="keep a build that misses the clock (exit 0)")
    b.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="folder for the bitstream (top.bit) and the reports")
    options.add_fabric_options(b, "The fabric to put on the board; a mesh is required")
    b.set_defaults(fpga_run=_build)

    p = sub.add_parser("program", help="load a bitstream into the board (openFPGALoader)")
    p.add_argument("bitstream", help="the .bit file (neuroloom fpga build -o DIR: DIR/top.bit)")
    p.add_argument("--board", choices=sorted(BOARDS), default="ulx3s-85f",
                   help="the board (default ulx3s-85f)")
    p.add_argument("--flash", action="store_true",
                   help="write the configuration flash (kept over power cycles) instead of "
                        "the FPGA's SRAM")
    p.set_defaults(fpga_run=_program)
    # 'neuroloom fpga --help' shows both commands' options, not only their names
    parser.epilog = b.format_usage().replace("usage: ", "") + p.format_usage().replace(
        "usage: ", "")


def run(args) -> int:
    return args.fpga_run(args)


def _build(args) -> int:
    req = options.fabric_request(args)
    if not {"mesh_w", "mesh_h"} <= set(req.given):
        raise CLIError("give the mesh: --mesh WxH (or --mesh-w and --mesh-h, or --fabric "
                       "fabric.json)")
    if args.seeds < 1:
        raise CLIError(f"--seeds {args.seeds}: give at least 1")
    if not args.clock > 0:
        raise CLIError(f"--clock {args.clock:g}: give a clock above 0 MHz")
    if args.baud is not None and args.baud < 1:
        raise CLIError(f"--baud {args.baud}: give a rate above 0")
    if args.step_budget < 0:
        raise CLIError(f"--step-budget {args.step_budget}: give 0 (no budget) or more")
    out = Path(args.output)
    if out.is_file():
        raise CLIError(f"{out}: is a file; -o names the folder for the bitstream and reports")
    try:
        done = build(args.board, req.config(), clock_mhz=args.clock,
                     seeds=range(1, args.seeds + 1), out_dir=out, baud=args.baud,
                     step_budget=args.step_budget, check_timing=not args.no_timing_check,
                     router=args.router, tmg_ripup=args.tmg_ripup, placer=args.placer,
                     log=lambda line: print(line, file=sys.stderr, flush=True))
    except BuildError as e:
        raise CLIError(str(e)) from None
    print(f"bitstream: {done.bitstream}")
    return 0


def _program(args) -> int:
    try:
        print(program(args.bitstream, board=args.board, flash=args.flash).strip())
    except ProgramError as e:
        raise CLIError(str(e)) from None
    return 0
