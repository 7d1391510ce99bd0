"""Model or image summary, the per-core resource table, the estimated cells and cycles."""

from __future__ import annotations

from neuroloom.firmware.deploy import describe_image, usage_table
from neuroloom.firmware.resources import core_resources, fabric_resources, step_cycles

from . import options


def add_arguments(parser) -> None:
    parser.add_argument("target", metavar="MODEL_OR_IMAGE")
    options.add_fabric_options(parser, "A model is compiled for this fabric; an image must "
                               "match every fabric option given")
    options.add_mapping_option(parser)
    options.add_import_options(parser)
    options.add_calibration_options(parser)


def cycles_table(comp) -> str:
    """Estimated cycles of a compiled model: both schedules, then per used core its neuron
    engine cycles, synapse rows and route words per step (every group active, every source
    firing) and the largest of them."""
    est = step_cycles(comp)
    lines = [f"estimated cycles: {est.pipelined} per step pipelined (busiest core + step "
             f"overhead), {est.fall_through} per token fall-through (per stage: "
             f"{', '.join(map(str, est.per_stage))})",
             f"{'core':>4} {'(x,y)':>7} {'neuron':>7} {'rows':>7} {'routes':>7} {'bound':>7}"]
    for c, v in est.per_core.items():
        x, y = comp.cfg.core_xy(c)
        lines.append(f"{c:>4} {f'({x},{y})':>7} {v['neuron']:>7} {v['rows']:>7} "
                     f"{v['routes']:>7} {v['bound']:>7}")
    return "\n".join(lines)


def cells_line(cfg) -> str:
    """Estimated ECP5 cells of the fabric and of one core (``neuroloom.firmware.resources``)."""
    fab, core = fabric_resources(cfg).as_cells(), core_resources(cfg).as_cells()
    return ("estimated cells: fabric " + ", ".join(f"{k} {v}" for k, v in fab.items())
            + "; per core " + ", ".join(f"{k} {v}" for k, v in core.items())
            + (" (GALS clock-domain links not counted)" if getattr(cfg, "gals", False) else ""))


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
    print(cells_line(image.cfg))
    if target.compiled is not None:
        print(cycles_table(target.compiled))
    elif image.model.get("estimate"):
        e = image.model["estimate"]
        print(f"estimated cycles (recorded at compile): {e['pipelined_cycles_per_step']} per "
              f"step pipelined, {e['fall_through_cycles_per_token']} per token fall-through")
    return 0
