"""Model or image summary and the per-core resource table."""

from __future__ import annotations

from neuroloom.firmware.deploy import describe_image, usage_table

from . import options


def add_arguments(parser) -> None:
    parser.add_argument("target", metavar="MODEL_OR_IMAGE")
    options.add_fabric_options(parser, "A model is compiled for this fabric; an image must "
                               "match every fabric option given")
    options.add_mapping_option(parser)
    options.add_import_options(parser)
    options.add_calibration_options(parser)


def run(args) -> int:
    target = options.load_target(args.target, args, options.fabric_request(args),
                                 options.calibration_from_args(args))
    image = target.image
    print(describe_image(image))
    if target.compiled is not None:
        s = target.compiled.summary()
        print(f"compiled for {s['mesh']}: {s['cores_used']} cores used, "
              f"{s['hops_per_token']} NoC hops/token, {len(image.writes)} config writes")
    print(usage_table(image))
    return 0
