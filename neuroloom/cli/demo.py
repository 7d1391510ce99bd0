"""The shipped model on the digits test split: float, quantized, golden model and RTL (or a
board)."""

from __future__ import annotations

import contextlib

from neuroloom.firmware.demo import (
    DEMO_CLOCK_MHZ,
    DEMO_CLOCK_SOURCE,
    RTL_DEMO_FT,
    RTL_DEMO_LIMIT,
    golden_demo,
    rtl_demo,
)

from . import options
from .eval import board_driver, board_request
from .options import CLIError
from .simulator import verilator_driver


def add_arguments(parser) -> None:
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help=f"first N test sequences (RTL default {RTL_DEMO_LIMIT} pipelined, "
                             f"{RTL_DEMO_FT} fall-through; golden: all)")
    parser.add_argument("--all", action="store_true", help="the whole test split on the RTL too")
    parser.add_argument("--clock", type=float, default=None, metavar="MHZ",
                        help=f"clock for the tokens/s column (default {DEMO_CLOCK_MHZ:g}: "
                             f"{DEMO_CLOCK_SOURCE})")
    options.add_backend_options(parser, default="verilator", serial=True)
    options.add_fabric_options(parser, "The fabric to compile the model for and to simulate; "
                               "without a mesh the mesh grows to the smallest that fits (on a "
                               "board: the options it was built with; the board's mesh)")


def run(args) -> int:
    options.check_backend(args)
    if args.clock is not None and args.backend != "verilator":
        raise CLIError("--clock sets the tokens/s column of the RTL run: it needs --backend "
                       "verilator")
    if args.clock is not None and not args.clock > 0:
        raise CLIError(f"--clock {args.clock:g}: give a clock above 0 MHz")
    with board_driver(args) as board:
        req = board_request(args, board)
        if args.backend == "golden":
            ok = golden_demo(req.config(), mesh_fixed=req.mesh_fixed,
                             limit=None if args.all else args.limit)
        elif board is not None:
            ok = rtl_demo(req.config(), mesh_fixed=True, limit=args.limit, all_samples=args.all,
                          open_rtl=lambda cfg, waves: contextlib.nullcontext(board),
                          label="board")
        else:
            ok = rtl_demo(req.config(), mesh_fixed=req.mesh_fixed, limit=args.limit,
                          all_samples=args.all,
                          clock_mhz=DEMO_CLOCK_MHZ if args.clock is None else args.clock,
                          clock_source=(DEMO_CLOCK_SOURCE if args.clock is None
                                        else "given by --clock"),
                          waves=args.waves, open_rtl=verilator_driver)
    return 0 if ok else 1
