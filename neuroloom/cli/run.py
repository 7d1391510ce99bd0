"""Run token sequences through an image (golden model or RTL)."""

from __future__ import annotations

import numpy as np

from neuroloom.contract.image import MODES
from neuroloom.contract.image import load as load_image
from neuroloom.firmware.datasets import read_tokens
from neuroloom.firmware.deploy import check_fabric
from neuroloom.firmware.driver import SATURATION_POLICIES
from neuroloom.firmware.evaluate import link_cycles, run_report

from . import options
from .options import CLIError
from .simulator import fabric_driver


def add_arguments(parser) -> None:
    parser.add_argument("image")
    parser.add_argument("--input", metavar="FILE",
                        help="tokens: .npy/.npz/.csv/.txt, (K, d_in) or (B, K, d_in)")
    parser.add_argument("--sample", type=int, metavar="N",
                        help="use test sample N of --dataset instead")
    parser.add_argument("--payloads", action="store_true",
                        help="the input holds integer payloads (do not quantize)")
    parser.add_argument("--saturation", choices=SATURATION_POLICIES, default="warn",
                        help="float tokens too large for the payload width: clamp them and warn "
                             "(default), or refuse the input (error)")
    parser.add_argument("--mode", choices=MODES, default=None,
                        help="schedule (default: the image's)")
    parser.add_argument("--running", action="store_true",
                        help="print the running integer logits after every token")
    parser.add_argument("--counters", action="store_true", help="print per-core counters")
    options.add_backend_options(parser, serial=True)
    options.add_fabric_options(parser, "Checked against the image's fabric: every option given "
                               "must match it")
    options.add_dataset_options(parser, "where --sample comes from (default digits; the "
                                "sample is streamed at its true length)")


def run(args) -> int:
    options.check_backend(args)
    if (args.input is None) == (args.sample is None):
        raise CLIError("give exactly one of --input FILE or --sample N")
    image = load_image(args.image)
    req = options.fabric_request(args)
    check_fabric(image, req.given, req.source, where=args.image)
    d_in = len(image.inputs)
    if args.input is not None:
        x = read_tokens(args.input, d_in)
    else:
        data = options.dataset_from_args(args)
        if not 0 <= args.sample < len(data.x_test):
            raise CLIError(f"--sample {args.sample} outside the test split (0.."
                           f"{len(data.x_test) - 1})")
        if data.d_in != d_in:
            raise CLIError(f"the image takes d_in={d_in} features per token, {data.name} has "
                           f"{data.d_in}")
        x = data.test_sequence(args.sample)          # at its true length
        label = data.y_test[args.sample]
        named = "" if data.labels is None else f" ({data.labels[label]!r})"
        print(f"{data.name} test sample {args.sample}: label {label}{named}, {len(x)} tokens")
    if args.payloads:
        lim = 1 << (image.cfg.state_width - 1)
        if not np.array_equal(x, np.round(x)):
            raise CLIError(f"--payloads: {args.input or 'the sample'} holds non-integer values; "
                           "payloads are integers (leave out --payloads to quantize float tokens)")
        if x.min() < -lim or x.max() >= lim:
            raise CLIError(f"--payloads: {args.input or 'the sample'} holds values outside the "
                           f"{image.cfg.state_width}-bit payload range [{-lim}, {lim - 1}]")
    batch = x.shape[0] if x.ndim == 3 else 1
    with fabric_driver(args.backend, image.cfg, waves=args.waves, batch=min(batch, 64),
                       port=args.port, baud=args.baud) as drv:
        drv.load(image)
        xq = x.astype(np.int64) if args.payloads else drv.quantize(x, saturation=args.saturation)
        c0 = link_cycles(drv.transport)
        res = drv.run(xq, mode=args.mode)
        cycles = None if c0 is None else link_cycles(drv.transport) - c0
    for line in run_report(res, running=args.running, counters=args.counters, cycles=cycles):
        print(line)
    labels = image.model.get("labels")
    if labels:
        print("classes: " + "  ".join(f"{i}={v!r}" for i, v in enumerate(labels)))
    return 0

