"""Compile a model for an FPGA part: choose the fabric (mesh, per-core capacities, neuron and
synapse lanes) that fits the part's resources and gives the shortest estimated step for a
schedule -- what ``neuroloom compile MODEL --board NAME`` runs.

For every neuron-lane and synapse-lane setting the search takes the largest near-square mesh
whose cores could fit the part at all and packs the model onto it two ways: *fill* with the
smallest *cycle budget* (neuron-engine cycles and synapse rows per core,
:func:`~neuroloom.firmware.compiler.compile_model`'s ``cycle_budget`` and ``row_budget``) with
which the model packs onto that mesh, so mode updates and synapse rows spread evenly; and
*spread* (``packing="spread"``: every stage cut into one chunk per core). Each core's
capacities are then set to what its busiest core uses (memories no deeper than needed), the
fabric's cells are estimated (:mod:`~neuroloom.firmware.resources`) and checked against the
part; a mesh where nothing fits is retried one size smaller. The candidate with the fewest
estimated cycles for the schedule wins (pipelined: cycles per step; fall-through: cycles per
token). ``docs/resources.md`` has the details.

A model that fits no candidate raises :class:`PartFitError` naming the binding resource of the
closest candidate and by how much it is over.
"""

from __future__ import annotations

import dataclasses

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.layouts import MODE_COEFS, MODE_STATE
from neuroloom.contract.parts import Part

from . import resources
from .compiler import MAX_MESH, Compiled, FitError, compile_model, fitting_mesh
from .qmodel import DEFAULT_MAPPING, QModel

__all__ = ["CHOSEN_FIELDS", "PartFitError", "TargetFit", "compile_for_part", "check_part", "MESHES",
           "NEURON_LANES", "SYNAPSE_LANES"]

#: the FabricConfig fields the search chooses (the others -- widths -- come from the caller)
CHOSEN_FIELDS = ("mesh_w", "mesh_h", "neurons", "axons", "synapse_rows", "route_words",
                 "ucode_depth", "groups", "modes", "neuron_lanes", "synapse_lanes")
#: the lane settings the search tries
NEURON_LANES = (1, 2, 4, 8)
SYNAPSE_LANES = (2, 4)
#: near-square meshes, smallest first
MESHES = tuple((w, h) for k in range(1, MAX_MESH + 1) for w, h in ((k, k - 1), (k, k)) if h)
#: capacities a core is packed with before they are cut down to what it uses
_ROOMY = dict(neurons=1024, axons=1024, synapse_rows=8192, route_words=4096, ucode_depth=256,
              groups=16, modes=8192)
#: budget search: stop when the bracket is this tight (relative)
_PRECISION = 0.03


class PartFitError(FitError):
    """No fabric for the model fits the part. ``resource``, ``needed``, ``available`` are the
    binding resource of the closest candidate; ``fabric`` that candidate's FabricConfig."""

    def __init__(self, message, resource, needed, available, fabric=None):
        super().__init__(message, resource, needed, available)
        self.fabric = fabric


@dataclasses.dataclass
class TargetFit:
    """The chosen fabric: its compiled model, estimated cells (``resources``, the fabric;
    ``core``, one core), the part, the cycle estimate for both schedules, the cycle budget the
    packer ran with and every candidate the search weighed (``candidates``: dicts)."""
    compiled: Compiled
    resources: resources.Resources
    core: resources.Resources
    part: Part
    estimate: resources.StepEstimate
    schedule: str
    cycle_budget: int | None
    candidates: list
    packing: str = "fill"

    def usage(self) -> dict[str, tuple[float, int]]:
        """Part resource -> (estimated use, capacity)."""
        return _usage(self.resources, self.part)

    def cycles(self) -> int:
        """Estimated cycles for the schedule (pipelined: per step; fall-through: per token)."""
        return _objective(self.estimate, self.schedule)

    def report(self, board: str) -> str:
        """The chosen fabric for ``board``: its parameters, estimated cells against the part,
        per core, and the estimated cycles (four lines)."""
        cfg = self.compiled.cfg
        lines = [f"board {board} ({self.part.name}): fabric {cfg.mesh_w}x{cfg.mesh_h}, "
                 + ", ".join(f"{k} {getattr(cfg, k)}" for k in CHOSEN_FIELDS[2:])
                 + (f"; packing fill, cycle budget {self.cycle_budget} per core"
                    if self.packing == "fill" else "; packing spread (every stage on every core)")]
        use = ", ".join(f"{name} {need:.0f}/{have} ({100 * need / have:.0f}%)"
                        for name, (need, have) in self.usage().items())
        lines.append(f"estimated cells (fabric): {use}; LUT4 = LUT4 sites incl. carries and "
                     f"LUT RAM, of {100 * self.part.logic_limit:.0f}% of the part")
        lines.append("estimated cells per core: " + ", ".join(
            f"{k} {v}" for k, v in self.core.as_cells().items()))
        lines.append(f"chosen for {self.schedule}: {self.cycles()} estimated cycles "
                     f"({'per step' if self.schedule == 'pipelined' else 'per token'}); "
                     f"{len(self.candidates)} candidate fabrics weighed")
        return "\n".join(lines)


def _usage(res: resources.Resources, part: Part) -> dict[str, tuple[float, int]]:
    return {"LUT4": (res.logic, int(part.lut4 * part.logic_limit)),
            "FF": (res.TRELLIS_FF, part.ff), "DP16KD": (res.DP16KD, part.dp16kd),
            "MULT18X18D": (res.MULT18X18D, part.mult18x18d)}


def check_part(res: resources.Resources, part: Part) -> tuple[str, float, int] | None:
    """None if ``res`` fits ``part``, else the most over-used resource as (name, need, have);
    LUT4 counts LUT4 sites (logic, carries, LUT RAM) against ``part.logic_limit`` of them."""
    over = [(need / have, name, need, have) for name, (need, have) in _usage(res, part).items()
            if need > have]
    return max(over)[1:] if over else None


def _objective(est: resources.StepEstimate, schedule: str) -> int:
    return est.pipelined if schedule == "pipelined" else est.fall_through


def _fitted_config(comp: Compiled, base: FabricConfig) -> FabricConfig:
    """``base`` with every capacity cut to the most any core of ``comp`` uses."""
    used = {r: max(u[r][0] for u in comp.usage()) for r in comp.usage()[0]}
    NL, SL = base.neuron_lanes, base.synapse_lanes
    return dataclasses.replace(
        base, neurons=max(SL, -(-used["neurons"] // SL) * SL), axons=max(1, used["axons"]),
        synapse_rows=max(1, used["synapse_rows"]), route_words=max(1, used["route_words"]),
        ucode_depth=max(1, used["ucode"]), groups=max(1, used["groups"]),
        modes=max(NL, -(-used["modes"] // NL) * NL))


#: FitError resource -> the FabricConfig field that holds it
_FIELD = {"neurons": "neurons", "axons": "axons", "synapse_rows": "synapse_rows",
          "route_words": "route_words", "ucode": "ucode_depth", "groups": "groups",
          "modes": "modes"}


def _compile_fitted(model, comp: Compiled, roomy: FabricConfig, mapping: str,
                    budget: int | None, packing: str = "fill",
                    attempts: int = 6) -> tuple[FabricConfig, Compiled, int | None]:
    """Compile on ``roomy`` cut down to what ``comp`` uses; where the packer, on the tighter
    core, runs out of something (it packs greedily, so a capacity can bind that did not on the
    roomy core), that capacity grows by a quarter (the cycle budget by 3 %) and it tries again.
    Returns the capacities, the compilation and the budget it ran with."""
    fitted = _fitted_config(comp, roomy)
    for _ in range(attempts):
        try:
            return fitted, _compile(model, fitted, mapping, budget, True, packing), budget
        except FitError as e:
            if e.resource == "cycles" and budget is not None:     # tighter: a little more time
                budget = int(budget * 1.03) + 1
                continue
            name = _FIELD.get(e.resource if isinstance(e.resource, str) else "")
            if name is None:
                raise
            have = getattr(fitted, name)
            grow = max(have + 1, int(have * 1.25))
            if e.cores_needed is None and e.needed:     # one core's need (not the mesh's)
                grow = max(grow, int(e.needed))
            if name == "modes":
                grow = -(-grow // fitted.neuron_lanes) * fitted.neuron_lanes
            if name == "neurons":
                grow = -(-grow // fitted.synapse_lanes) * fitted.synapse_lanes
            fitted = dataclasses.replace(fitted, **{name: grow})
    return fitted, _compile(model, fitted, mapping, budget, True, packing), budget


def _compile(model, cfg, mapping, budget, optimize=False, packing="fill"):
    return compile_model(model, cfg, mapping=mapping, cycle_budget=budget, row_budget=(
        None if budget is None else min(budget, cfg.synapse_rows)), optimize_placement=optimize,
        packing=packing)


def _min_budget(model: QModel, cfg: FabricConfig, mapping: str) -> tuple[int, Compiled] | None:
    """The smallest cycle budget (within :data:`_PRECISION`) with which ``model`` packs onto
    ``cfg``'s mesh, and that compilation; None if it does not fit even without one."""
    try:
        comp = _compile(model, cfg, mapping, None)
    except FitError:
        return None
    # without a budget no core exceeds its own load, so the busiest core's load fits
    est = resources.step_cycles(comp, overhead=0)
    rows = [u["synapse_rows"][0] for u in comp.usage()]       # incl. the host inputs' rows
    hi = max(1, max(rows), max(v["neuron"] for v in est.per_core.values()))
    best = None
    for _ in range(8):          # the packer counts rows by an upper bound: a little more room
        try:
            best = (hi, _compile(model, cfg, mapping, hi))
            break
        except FitError:
            hi = int(hi * 1.25) + 1
    if best is None:
        return None
    # no budget below the average load fits the mesh
    lo = max(1, int(0.95 * max(sum(v[k] for v in est.per_core.values())
                               for k in ("neuron", "rows")) / cfg.num_cores))
    while hi - lo > max(1, int(_PRECISION * hi)):
        mid = (lo + hi) // 2
        try:
            best = (mid, _compile(model, cfg, mapping, mid))
            hi = mid
        except FitError:
            lo = mid
    return best


def compile_for_part(model: QModel, part: Part, schedule: str = "pipelined", *,
                     base: FabricConfig | None = None, mapping: str = DEFAULT_MAPPING,
                     neuron_lanes=NEURON_LANES, synapse_lanes=SYNAPSE_LANES,
                     mode: str | None = None) -> TargetFit:
    """Choose and compile the fabric for ``model`` on ``part`` (see the module docstring).

    ``base``: the widths and anything else not searched (default: the FabricConfig defaults);
    ``schedule``: what the step is minimized for (``pipelined`` or ``fall-through``); ``mode``:
    the compiled image's default schedule (default: ``schedule``).

    Raises :class:`PartFitError` when no candidate fits, :class:`CompileError` for a model the
    compiler refuses (ranges, accumulators).
    """
    if schedule not in ("pipelined", "fall-through"):
        raise ValueError(f"schedule {schedule!r} is not one of pipelined, fall-through")
    base = base or FabricConfig()
    if getattr(base, "gals", False):
        raise ValueError("compiling for a board chooses synchronous fabrics (the resource model "
                         "does not count GALS clock-domain links); drop --gals")
    _check_mode_memory(model, base, part, mapping)
    tried, closest = [], None
    best: dict | None = None
    for NL in neuron_lanes:
        for SL in synapse_lanes:
            try:
                roomy = dataclasses.replace(base, mesh_w=1, mesh_h=1, neuron_lanes=NL,
                                            synapse_lanes=SL, **_ROOMY)
            except ValueError:
                continue
            light = dataclasses.replace(roomy, neurons=SL, axons=1, synapse_rows=1,
                                        route_words=1, ucode_depth=1, groups=1, modes=NL)
            meshes = [m for m in MESHES if check_part(resources.fabric_resources(
                dataclasses.replace(light, mesh_w=m[0], mesh_h=m[1])), part) is None]
            if not meshes:                      # not even one empty core fits
                cand = {"fabric": light, "fits": False,
                        "binding": check_part(resources.fabric_resources(light), part)}
                tried.append(cand)
                closest = _closer(closest, cand)
            for w, h in reversed(meshes):
                cfg = dataclasses.replace(roomy, mesh_w=w, mesh_h=h)
                # fill: the shallowest mode-memory bank that packs (it caps what a core
                # takes); spread cuts every stage evenly, so only the roomier depth matters
                depths = _bank_depths(model, cfg)
                cands = []
                for depth in depths:
                    cands.append(_evaluate(model, dataclasses.replace(cfg, modes=NL * depth),
                                           mapping, part, schedule, "fill"))
                    if cands[-1] is not None:
                        break
                cands += [_evaluate(model, dataclasses.replace(cfg, modes=NL * d), mapping,
                                    part, schedule, "spread") for d in depths[-1:]]
                tried += [c for c in cands if c is not None]
                if all(c is None for c in cands):   # the mesh is too small for the model
                    cand = _needs_more_cores(model, roomy, mapping, part)
                    tried.append(cand)
                    closest = _closer(closest, cand)
                    break                           # smaller meshes hold even less
                for cand in cands:
                    if cand is None:
                        continue
                    if not cand["fits"]:
                        closest = _closer(closest, cand)
                    elif best is None or cand["key"] < best["key"]:
                        best = cand
                if any(c is not None and c["fits"] for c in cands):
                    break                           # else one mesh smaller
    if best is None:
        _raise_part(model, part, closest)
    comp = best["compiled"]
    comp.set_mode(mode or schedule)
    summary = [{k: v for k, v in c.items() if k not in ("compiled", "estimate", "key")}
               for c in tried]
    return TargetFit(comp, best["resources"], resources.core_resources(comp.cfg), part,
                     best["estimate"], schedule, best["budget"], summary, best["packing"])


#: mode-memory bank depths the search tries (block RAM holds 512 x 36 or 1024 x 18 words, so
#: a bank just past one of these costs a whole block more per part)
_DEPTHS = (512, 1024, 2048, 4096, 8192)


def _bank_depths(model: QModel, cfg: FabricConfig) -> list[int]:
    """The two smallest mode-memory bank depths that hold the model's mode entries on the
    mesh (with a channel's entries whole on one core); the roomy depth without modes."""
    M = model.modes
    total = len(model.layers) * model.H * M
    if total == 0:
        return [_ROOMY["modes"] // cfg.neuron_lanes]
    fit = [d for d in _DEPTHS if cfg.neuron_lanes * d >= M and
           cfg.num_cores * ((cfg.neuron_lanes * d) // M) * M >= total and
           cfg.neuron_lanes * d <= 1 << FabricConfig.INDEX_BITS]
    return fit[:2]


def _evaluate(model, cfg: FabricConfig, mapping: str, part: Part, schedule: str,
              packing: str) -> dict | None:
    """Pack ``model`` on ``cfg`` -- ``fill`` with the smallest cycle budget, or ``spread`` --,
    cut the capacities to what it uses, estimate cells and cycles: a candidate dict, or None
    if it does not pack at all."""
    if packing == "fill":
        found = _min_budget(model, cfg, mapping)
        if found is None:
            return None
        budget, comp = found
    else:
        try:
            budget, comp = None, _compile(model, cfg, mapping, None, packing=packing)
        except FitError:
            return None
    try:
        fitted, comp, budget = _compile_fitted(model, comp, cfg, mapping, budget, packing)
    except (FitError, ValueError) as e:
        return {"fabric": cfg, "packing": packing, "budget": budget, "fits": False,
                "binding": None, "error": str(e).splitlines()[0]}
    res = resources.fabric_resources(fitted)
    est = resources.step_cycles(comp)
    bind = check_part(res, part)
    return {"fabric": fitted, "packing": packing, "budget": budget,
            "cycles": _objective(est, schedule), "fits": bind is None, "binding": bind,
            "cores_used": comp.cores_used, "compiled": comp, "resources": res, "estimate": est,
            "key": (_objective(est, schedule), res.logic)}


def _check_mode_memory(model: QModel, base: FabricConfig, part: Part, mapping: str) -> None:
    """Channel neurons keep every mode entry in block or LUT RAM: refuse at once a model whose
    mode entries alone exceed the part's block RAM and LUT RAM together (a lower bound)."""
    if mapping != "channel":
        return
    entries = len(model.layers) * model.H * model.modes
    bits = entries * (MODE_STATE * base.state_width + MODE_COEFS * base.coef_width)
    lut_ram_bits = part.lut4 * part.logic_limit * 16 * 4 / 6      # 64 bits per 6 LUT4 sites
    need = int(-(-max(0, bits - lut_ram_bits) // _DP16KD_BITS))
    if need > part.dp16kd:
        raise PartFitError(
            f"model does not fit {part.name}: binding resource DP16KD: its {entries} mode "
            f"entries ({bits / 1e6:.2f} Mbit) need at least {need} DP16KD even with every LUT "
            f"as LUT RAM, {part.dp16kd} available ({need - part.dp16kd} over); use a smaller "
            "model (fewer modes or channels) or a larger part", "DP16KD", need, part.dp16kd)


#: bits of one DP16KD (18 Kbit incl. the parity bits)
_DP16KD_BITS = 18 * 1024


def _needs_more_cores(model, roomy: FabricConfig, mapping: str, part: Part) -> dict:
    """The model packed without a budget on as many cores as it needs (every mesh the part
    holds was too small): the fabric it would need, and what binds."""
    big = dataclasses.replace(roomy, mesh_w=MAX_MESH, mesh_h=MAX_MESH)
    try:
        comp = _compile(model, big, mapping, None)
    except FitError as e:
        return {"fabric": None, "binding": (e.resource, e.needed, e.available), "fits": False,
                "ratio": float("inf")}
    mesh = fitting_mesh(comp.cores_used) or f"{MAX_MESH}x{MAX_MESH}"
    w, h = (int(v) for v in mesh.split("x"))
    fitted = _fitted_config(comp, dataclasses.replace(roomy, mesh_w=w, mesh_h=h))
    bind = check_part(resources.fabric_resources(fitted), part)
    return {"fabric": fitted, "binding": bind, "fits": False, "cores_used": comp.cores_used}


def _ratio(cand: dict) -> float:
    b = cand.get("binding")
    return float("inf") if not b or not isinstance(b[1], int | float) or not b[2] else b[1] / b[2]


def _closer(a: dict | None, b: dict) -> dict:
    return b if a is None or _ratio(b) < _ratio(a) else a


def _raise_part(model: QModel, part: Part, closest: dict | None):
    if closest is None or not closest.get("binding"):
        raise PartFitError(f"model {model.describe()} fits no fabric on {part.name}: no lane "
                           "setting gives a core that fits the part", None, None, None)
    name, need, have = closest["binding"]
    f = closest["fabric"]
    what = ("" if f is None else
            f" (closest: a {f.mesh_w}x{f.mesh_h} fabric, {f.neurons} neurons, {f.modes} mode "
            f"entries, {f.synapse_rows} synapse rows per core, neuron_lanes {f.neuron_lanes}, "
            f"synapse_lanes {f.synapse_lanes})")
    limit = " (the part's LUT4 sites x its logic limit)" if name == "LUT4" else ""
    raise PartFitError(f"model does not fit {part.name}: binding resource {name}: "
                       f"{need:.0f} needed, {have} available{limit} ({need - have:.0f} over)"
                       f"{what}; use a smaller model or a larger part", name, need, have, f)

