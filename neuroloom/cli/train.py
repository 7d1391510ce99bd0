"""Train an n-S4D classifier, quantize it and fine-tune it (QAFT); needs the 'train' extra."""

from __future__ import annotations

import importlib.util
import shlex
import sys
from pathlib import Path

from neuroloom.firmware.train import train

from . import options
from .options import CLIError


def add_arguments(parser) -> None:
    m = parser.add_argument_group("model")
    m.add_argument("-H", type=int, metavar="N", default=16,
                   help="channels (model width; default 16)")
    m.add_argument("-N", type=int, metavar="N", default=8,
                   help="complex modes per channel (default 8)")
    m.add_argument("-L", type=int, metavar="N", default=2, help="layers (default 2)")
    t = parser.add_argument_group("training")
    t.add_argument("--epochs", type=int, metavar="N", default=60,
                   help="float pre-training epochs (default 60)")
    t.add_argument("--qaft-epochs", type=int, default=3, metavar="N",
                   help="quantization-aware fine-tuning epochs (default 3; 0: PTQ only)")
    t.add_argument("--batch", type=int, metavar="N", default=32, help="batch size (default 32)")
    t.add_argument("--lr", type=float, metavar="X", default=1e-2,
                   help="learning rate (default 0.01)")
    t.add_argument("--ssm-lr", type=float, metavar="X", default=1e-3,
                   help="learning rate of the SSM parameters (default 0.001)")
    t.add_argument("--qaft-lr", type=float, metavar="X", default=2e-4,
                   help="QAFT learning rate (default 2e-4)")
    t.add_argument("--weight-decay", type=float, metavar="X", default=0.01,
                   help="AdamW weight decay, not on SSM parameters (default 0.01)")
    t.add_argument("--calib", type=int, default=512, metavar="N",
                   help="train sequences that calibrate the quantizer (default 512)")
    t.add_argument("--max-steps", type=int, default=None, metavar="N",
                   help="at most N optimizer steps per phase (smoke tests)")
    t.add_argument("--seed", type=int, metavar="N", default=0, help="random seed (default 0)")
    t.add_argument("--threads", type=int, default=1, metavar="N",
                   help="torch threads (default 1: small tensors gain nothing from more)")
    parser.add_argument("--out", default="model", metavar="STEM",
                        help="output stem: writes STEM-float.{npz,json} and STEM-q.{npz,json} "
                             "(default 'model')")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    options.add_dataset_options(parser, "the task to train on (default digits)")
    options.add_fabric_options(parser, "Widths the model is quantized for (the mesh does not "
                               "matter here)")


def run(args) -> int:
    for name in ("H", "N", "L", "batch", "calib"):
        if getattr(args, name) < 1:
            raise CLIError(f"{'-' if len(name) == 1 else '--'}{name} {getattr(args, name)}: "
                           "give at least 1")
    for name in ("epochs", "qaft_epochs"):
        if getattr(args, name) < 0:
            raise CLIError(f"--{name.replace('_', '-')} {getattr(args, name)}: give 0 or more")
    for name in ("lr", "ssm_lr", "qaft_lr"):
        if not getattr(args, name) > 0:
            raise CLIError(f"--{name.replace('_', '-')} {getattr(args, name):g}: give a learning "
                           "rate above 0")
    if not args.weight_decay >= 0:
        raise CLIError(f"--weight-decay {args.weight_decay:g}: give 0 or more")
    if args.threads < 1 or (args.max_steps is not None and args.max_steps < 1):
        raise CLIError("--threads and --max-steps: give at least 1")
    if not Path(args.out).parent.is_dir():
        raise FileNotFoundError(2, "No such folder for --out", str(Path(args.out).parent))
    if importlib.util.find_spec("torch") is None:
        raise CLIError("training needs PyTorch, the 'train' extra: pip install 'neuroloom[train]'")
    name, path = options.dataset_spec(args)
    req = options.fabric_request(args)
    cfg = req.config()
    r = train(name, H=args.H, N=args.N, L=args.L, epochs=args.epochs,
              qaft_epochs=args.qaft_epochs, batch=args.batch, lr=args.lr, ssm_lr=args.ssm_lr,
              qaft_lr=args.qaft_lr, weight_decay=args.weight_decay, seed=args.seed,
              data_path=path, out=Path(args.out), calib=args.calib, max_steps=args.max_steps,
              cfg=cfg, progress=not args.no_progress, command=_command(args, name, req),
              threads=args.threads, log=lambda line: print(line, file=sys.stderr))
    print(f"float {r.metrics['float_acc']:.4f}  quantized {r.metrics['q_acc']:.4f}  "
          f"neurons {r.metrics['neurons']}; wrote {', '.join(str(p) for p in r.paths)}")
    return 0


def _command(args, dataset: str, req: options.FabricRequest) -> str:
    """The options of this run as a command line (recorded in the model's metadata)."""
    argv = ["--dataset", dataset, "-H", args.H, "-N", args.N, "-L", args.L,
            "--epochs", args.epochs, "--qaft-epochs", args.qaft_epochs, "--batch", args.batch,
            "--lr", args.lr, "--ssm-lr", args.ssm_lr, "--qaft-lr", args.qaft_lr,
            "--weight-decay", args.weight_decay, "--calib", args.calib, "--seed", args.seed]
    if args.max_steps is not None:
        argv += ["--max-steps", args.max_steps]
    for k, v in req.given.items():
        argv += [options.fabric_flag(k), v]
    return "neuroloom train " + shlex.join(str(a) for a in argv)
