"""Compile a model to a config image (.nlimg)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from neuroloom.contract.image import MODES, save
from neuroloom.contract.parts import BOARD_PARTS, board_part
from neuroloom.firmware.compiler import from_compiled
from neuroloom.firmware.deploy import compile_fitting, is_image, load_model_file
from neuroloom.firmware.resources import step_cycles
from neuroloom.firmware.target import CHOSEN_FIELDS, compile_for_part

from . import options
from .options import CLIError


def add_arguments(parser) -> None:
    parser.add_argument("model", help="NeuroLoom model stem (<stem>.npz + <stem>.json) or a Gu "
                                      "S4D checkpoint (.pt, or .npz with no .json beside it)")
    parser.add_argument("-o", "--output", required=True, help="image file to write (.nlimg)")
    parser.add_argument("--mode", choices=MODES, default="pipelined",
                        help="schedule stored as the image's default (both are stored)")
    parser.add_argument("--row-budget", type=int, default=None, metavar="N",
                        help="at most N synapse rows per core (default: all): shorter steps on "
                             "more cores, since a core works through one row per cycle")
    parser.add_argument("--board", choices=sorted(BOARD_PARTS), default=None,
                        help="choose the fabric (mesh, per-core capacities, lanes) that fits this "
                             "board's FPGA and gives the shortest estimated step; the packer "
                             "balances mode updates and synapse rows over the cores")
    parser.add_argument("--schedule", choices=MODES, default=None,
                        help="with --board: the schedule the step is minimized for (default: "
                             "--mode)")
    parser.add_argument("--fabric-out", metavar="FILE", default=None,
                        help="with --board: write the chosen fabric as a fabric.json (for "
                             "--fabric, e.g. 'neuroloom fpga build --fabric FILE')")
    options.add_fabric_options(parser, "The fabric to compile for; without a mesh (--mesh, "
                               "--mesh-w/-h or --fabric) the mesh grows to the smallest that "
                               "fits")
    options.add_mapping_option(parser)
    options.add_import_options(parser)
    options.add_calibration_options(parser)


def run(args) -> int:
    if Path(args.model).suffix == ".nlimg" and not Path(args.model).exists():
        raise FileNotFoundError(2, "No such file", args.model)
    if Path(args.model).is_file() and is_image(args.model):
        raise CLIError(f"{args.model} is a config image, not a model; compile takes a model "
                       "(<stem> of <stem>.npz + <stem>.json, or a checkpoint)")
    model_files = {Path(args.model).resolve(), Path(args.model).with_suffix(".npz").resolve(),
                   Path(args.model).with_suffix(".json").resolve(),
                   Path(f"{args.model}.npz").resolve(), Path(f"{args.model}.json").resolve()}
    if Path(args.output).resolve() in model_files:
        raise CLIError(f"-o {args.output} would overwrite the model; give another image file "
                       "(e.g. model.nlimg)")
    t0 = time.perf_counter()
    req = options.fabric_request(args)
    _check_board_options(args, req)
    cfg = req.config()
    activation, residual, pooling = options.import_options(args, args.model)
    fm, q = load_model_file(args.model, options.calibration_from_args(args), cfg,
                            activation=activation, residual=residual, pooling=pooling,
                            note=options.note, report=print)
    if fm is None and args.calibrate is not None:
        raise CLIError(f"--calibrate: {args.model} is a quantized model, which needs no "
                       "calibration; drop --calibrate (or give its float model)")
    fit = None
    if args.board is None:
        comp = compile_fitting(q, cfg, args.mode, mesh_fixed=req.mesh_fixed,
                               row_budget=args.row_budget, mapping=args.mapping)
    else:
        fit = compile_for_part(q, board_part(args.board), args.schedule or args.mode, base=cfg,
                               mapping=args.mapping, mode=args.mode)
        comp = fit.compiled
    est = step_cycles(comp)
    comp.model_info["estimate"] = {"pipelined_cycles_per_step": est.pipelined,
                                   "fall_through_cycles_per_token": est.fall_through}
    labels = (fm.meta if fm is not None else q.meta).get("labels")
    if labels is not None:                      # the original labels travel with the image
        comp.model_info["labels"] = list(labels)
    size = save(from_compiled(comp), args.output)
    s = comp.summary()
    print(f"compiled {args.model} -> {args.output}: {size} bytes, mesh {s['mesh']}, "
          f"{s['cores_used']} cores used, {s['neurons']} neurons, {s['synapse_rows']} synapse "
          f"rows, {s['hops_per_token']} hops/token, mode {args.mode}, mapping {args.mapping} "
          f"({time.perf_counter() - t0:.2f} s)")
    if fit is not None:
        print(fit.report(args.board))
        if args.fabric_out:
            Path(args.fabric_out).write_text(json.dumps({"config": comp.cfg.to_dict()},
                                                        indent=1) + "\n")
            print(f"fabric: {args.fabric_out}")
    print(f"estimated cycles: {est.pipelined} per step pipelined, {est.fall_through} per token "
          f"fall-through")
    return 0


def _check_board_options(args, req) -> None:
    if args.board is None:
        for flag, value in (("--schedule", args.schedule), ("--fabric-out", args.fabric_out)):
            if value is not None:
                raise CLIError(f"{flag} needs --board (it is about the fabric --board chooses)")
        return
    if args.row_budget is not None:
        raise CLIError("--row-budget and --board: with --board the compiler balances synapse "
                       "rows and mode updates itself; drop --row-budget")
    given = [req.source[k] for k in CHOSEN_FIELDS if k in req.given]
    if given:
        raise CLIError(f"--board chooses the mesh, capacities and lanes; drop "
                       f"{', '.join(dict.fromkeys(given))} (widths may be given)")
