"""Test accuracy down the ladder: float, quantized reference, golden model, RTL or a board."""

from __future__ import annotations

import contextlib
import importlib.util

from neuroloom.contract.image import MODES
from neuroloom.firmware.distributed import ClusterError
from neuroloom.firmware.evaluate import evaluate, serial_driver

from . import options
from .options import CLIError
from .simulator import verilator_driver


def add_arguments(parser) -> None:
    parser.add_argument("target", metavar="MODEL_OR_IMAGE")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="first N test sequences only")
    parser.add_argument("--mode", choices=MODES, default=None,
                        help="schedule (default: the image's)")
    parser.add_argument("--batch", type=int, default=64, metavar="N",
                        help="sequences run side by side on the golden model (default 64)")
    g = parser.add_argument_group("cluster (golden model)")
    g.add_argument("--workers", type=int, default=1, metavar="N",
                   help="shard the test sequences over N local worker processes (a Dask "
                        "LocalCluster; default 1: serial); results are identical")
    g.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="use an existing Dask cluster, e.g. tcp://host:8786 (SSH, SLURM, "
                        "Kubernetes deployments; its workers need neuroloom installed)")
    options.add_backend_options(parser, serial=True)
    options.add_fabric_options(parser, "A model is compiled for this fabric; an image must "
                               "match every fabric option given (on a board: the options it "
                               "was built with; the mesh is the board's unless given)")
    options.add_mapping_option(parser)
    options.add_import_options(parser)
    options.add_dataset_options(parser, "the test split to evaluate on (default digits; "
                                "sequences of different lengths are streamed at their true "
                                "lengths); also calibrates a float model")


def run(args) -> int:
    options.check_backend(args)
    if args.limit is not None and args.limit < 1:
        raise CLIError(f"--limit {args.limit}: give at least 1 test sequence")
    if args.batch < 1:
        raise CLIError(f"--batch {args.batch}: give at least 1")
    if args.workers < 1:
        raise CLIError(f"--workers {args.workers}: give at least 1")
    if (args.workers > 1 or args.scheduler) and args.backend != "golden":
        raise CLIError("--workers/--scheduler shard the golden model; the RTL runs serially "
                       "(drop --workers, or use --backend golden)")
    if (args.workers > 1 or args.scheduler) and importlib.util.find_spec("distributed") is None:
        raise CLIError("--workers/--scheduler need Dask: pip install 'dask[distributed]'")
    with board_driver(args) as board:
        return _evaluate(args, board)


@contextlib.contextmanager
def board_driver(args):
    """The board's driver (``--backend serial``; asked for its STATUS first, so a missing or
    silent board fails before the golden runs), else None."""
    if args.backend != "serial":
        yield None
        return
    with serial_driver(args.port, args.baud) as drv:
        yield drv


def board_request(args, board):
    """The fabric request of ``args``, on a board with the board's mesh unless one is given
    (then it must be the board's)."""
    req = options.fabric_request(args)
    if board is None:
        return req
    st = board.transport.link.board_status
    mesh = {"mesh_w": st["mesh_w"], "mesh_h": st["mesh_h"]}
    if req.mesh_fixed:
        asked = (req.config().mesh_w, req.config().mesh_h)
        if asked != (mesh["mesh_w"], mesh["mesh_h"]):
            raise CLIError(f"the board on {args.port} has a {mesh['mesh_w']}x{mesh['mesh_h']} "
                           f"mesh, not the {asked[0]}x{asked[1]} asked for; give its mesh "
                           f"(or leave --mesh out)")
    else:
        for k, v in mesh.items():
            req.given[k], req.source[k] = v, f"the board on {args.port}"
    return req


def _evaluate(args, board) -> int:
    data = options.dataset_from_args(args)
    target = options.load_target(args.target, args, board_request(args, board), data,
                                 mode=args.mode or "pipelined")
    image = target.image
    if len(image.inputs) != data.d_in:
        raise CLIError(f"the model takes d_in={len(image.inputs)} features per token, "
                       f"{data.name} has {data.d_in}")
    x, y = data.x_test[:args.limit], data.y_test[:args.limit]
    y = options.labels_for_model(data, options.model_labels(target), y)
    lengths = None if data.len_test is None else data.len_test[:args.limit]
    if board is None:
        open_rtl, label = verilator_driver, "RTL"
    else:
        open_rtl, label = (lambda cfg, waves: contextlib.nullcontext(board)), "board"
    try:
        ok = evaluate(image, x, y, dataset=data.name, float_model=target.float_model,
                      qmodel=target.qmodel, modes=(args.mode,) if args.mode else None,
                      batch=args.batch, rtl=args.backend != "golden", waves=args.waves,
                      open_rtl=open_rtl, workers=args.workers,
                      scheduler=args.scheduler, lengths=lengths, label=label)
    except ClusterError as e:
        raise CLIError(str(e)) from None
    return 0 if ok else 1
