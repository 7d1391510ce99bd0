"""Compile a model to a config image (.nlimg)."""

from __future__ import annotations

import time
from pathlib import Path

from neuroloom.contract.image import MODES, save
from neuroloom.firmware.compiler import from_compiled
from neuroloom.firmware.deploy import compile_fitting, is_image, load_model_file

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
    cfg = req.config()
    activation, residual, pooling = options.import_options(args, args.model)
    fm, q = load_model_file(args.model, options.calibration_from_args(args), cfg,
                            activation=activation, residual=residual, pooling=pooling,
                            note=options.note, report=print)
    if fm is None and args.calibrate is not None:
        raise CLIError(f"--calibrate: {args.model} is a quantized model, which needs no "
                       "calibration; drop --calibrate (or give its float model)")
    comp = compile_fitting(q, cfg, args.mode, mesh_fixed=req.mesh_fixed,
                           row_budget=args.row_budget, mapping=args.mapping)
    labels = (fm.meta if fm is not None else q.meta).get("labels")
    if labels is not None:                      # the original labels travel with the image
        comp.model_info["labels"] = list(labels)
    size = save(from_compiled(comp), args.output)
    s = comp.summary()
    print(f"compiled {args.model} -> {args.output}: {size} bytes, mesh {s['mesh']}, "
          f"{s['cores_used']} cores used, {s['neurons']} neurons, {s['synapse_rows']} synapse "
          f"rows, {s['hops_per_token']} hops/token, mode {args.mode}, mapping {args.mapping} "
          f"({time.perf_counter() - t0:.2f} s)")
    return 0
