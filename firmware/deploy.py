"""From a model file to a config image: the policy behind ``neuroloom compile``, ``info`` and
``eval``, reusable by benches.

* :func:`load_model_file` reads a NeuroLoom model (quantized or float) or a Gu S4D checkpoint
  and returns the deployed :class:`~neuroloom.firmware.qmodel.QModel` (a float model is
  quantized with calibration sequences: :data:`CALIBRATION_SEQUENCES` train sequences of a data
  set, the digits one unless the caller names another, or every sequence of a token file; it
  says which, and reports what saturates on them);
* :func:`compile_fitting` compiles it, growing the mesh to the smallest that fits when the
  caller did not fix it;
* :func:`load_target` does both for ``MODEL_OR_IMAGE`` (an image is loaded as is);
* :func:`check_fabric` refuses an image whose fabric differs from the one a user asked for,
  naming every differing field;
* :func:`describe_image` and :func:`usage_table` are the one-line summary and the per-core
  resource table of an image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.image import MAGIC, Image
from neuroloom.contract.image import load as load_image

from .compiler import RESOURCES, Compiled, FitError, compile_model, from_compiled
from .datasets import SequenceData, digits, read_tokens
from .importer import import_s4, load_model
from .model import FloatModel
from .qmodel import DEFAULT_MAPPING, QModel
from .quantize import quantize

__all__ = ["CALIBRATION_SEQUENCES", "CHECKPOINT_SUFFIXES", "Calibration", "FabricMismatchError",
           "Target", "calibration_tokens", "check_fabric", "compile_fitting", "describe_image",
           "is_checkpoint", "is_image", "load_model_file", "load_target", "usage_table"]

#: train sequences a float model is calibrated on before quantization
CALIBRATION_SEQUENCES = 256
#: suffixes of torch checkpoint files (Gu's layout)
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


class FabricMismatchError(ValueError):
    """An image compiled for one fabric, used with options that name another."""


@dataclass
class Target:
    """What ``MODEL_OR_IMAGE`` resolved to: the image, and for a model also the float model
    (None when the file held a quantized model), the QModel and the compiler's result."""
    image: Image
    float_model: FloatModel | None = None
    qmodel: QModel | None = None
    compiled: Compiled | None = None


def is_image(path) -> bool:
    """A config image: ``.nlimg`` suffix, or a file starting with the image magic."""
    path = Path(path)
    if path.suffix == ".nlimg":
        return True
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except (IsADirectoryError, FileNotFoundError):
        return False


def is_checkpoint(path) -> bool:
    """A Gu-layout checkpoint: a torch file, or a ``.npz`` with no NeuroLoom ``.json`` beside
    it."""
    path = Path(path)
    return path.suffix in CHECKPOINT_SUFFIXES or (
        path.suffix == ".npz" and not path.with_suffix(".json").is_file())


#: what a float model can be calibrated on: a data set (its first CALIBRATION_SEQUENCES train
#: sequences), a token file (every sequence in it), float tokens (B, K, d_in), or None (digits)
Calibration = SequenceData | str | Path | np.ndarray | None


def calibration_tokens(calibration: Calibration, d_in: int) -> tuple[np.ndarray, str]:
    """(float tokens (B, K, d_in), what they are, in words) of ``calibration``.

    Raises
    ------
    ValueError : the data have another input width than ``d_in``, or a token file is unreadable
    FileNotFoundError : no such token file
    """
    if calibration is None:
        data = digits()
        what = (f"the first {CALIBRATION_SEQUENCES} digits train sequences (the default: choose "
                "the data with --calibrate DATASET|FILE)")
    elif isinstance(calibration, SequenceData):
        data = calibration
        what = f"the first {CALIBRATION_SEQUENCES} {data.name} train sequences"
    elif isinstance(calibration, str | Path):
        x = read_tokens(calibration, d_in)
        x = x[None] if x.ndim == 2 else x
        return x, f"{len(x)} sequence(s) of {x.shape[1]} tokens from {calibration}"
    else:
        x = np.asarray(calibration, dtype=np.float64)
        if x.ndim != 3 or x.shape[2] != d_in:
            raise ValueError(f"calibration tokens of shape {x.shape}: expected (B, K, {d_in})")
        return x, f"{len(x)} given sequence(s)"
    if data.d_in != d_in:
        raise ValueError(f"calibration data {data.name} has d_in={data.d_in}, the model takes "
                         f"d_in={d_in}: calibrate on data with that input width")
    return data.x_train[:CALIBRATION_SEQUENCES], what


def load_model_file(path, calibration: Calibration = None,
                    cfg: FabricConfig | None = None, *, activation: str | None = None,
                    residual: bool | None = None, pooling: str = "sum",
                    note: Callable[[str], None] | None = None,
                    report: Callable[[str], None] | None = None,
                    ) -> tuple[FloatModel | None, QModel]:
    """(float model or None, QModel) from a NeuroLoom model file stem or a Gu checkpoint.

    A float model (a NeuroLoom float file or any checkpoint) is quantized for ``cfg``'s widths,
    calibrated on ``calibration`` (see :func:`calibration_tokens`; default: the first
    :data:`CALIBRATION_SEQUENCES` digits train sequences). ``note`` is told what the model was
    calibrated on, ``report`` what saturates on that data (both one line).
    ``activation``, ``residual`` and ``pooling`` are passed to
    :func:`~neuroloom.firmware.importer.import_s4` for a checkpoint.

    Raises
    ------
    FileNotFoundError : no such checkpoint or calibration file
    ModelImportError : unreadable model or checkpoint (from the importer)
    ValueError : the calibration data have another input width than the model
    """
    path = Path(path)
    if is_checkpoint(path):
        if not path.is_file():
            raise FileNotFoundError(2, "No such file", str(path))
        model = import_s4(path, activation=activation, residual=residual, pooling=pooling)
    else:
        model = load_model(path, pooling=pooling)
    if not isinstance(model, FloatModel):
        return None, model
    tokens, what = calibration_tokens(calibration, model.d_in)
    if note:
        note(f"note: {path} is a float model: quantizing it, calibrated on {what}")
    q, rep = quantize(model, tokens, cfg)
    if report:
        report(f"quantized {path} (input scale {q.in_scale:g}, output scale {q.out_scale:g}); "
               f"on the calibration data: {rep}")
    return model, q


def compile_fitting(q: QModel, cfg: FabricConfig, mode: str = "pipelined", *,
                    mesh_fixed: bool = False, row_budget: int | None = None,
                    mapping: str = DEFAULT_MAPPING) -> Compiled:
    """Compile ``q`` onto ``cfg`` with ``mapping`` (``per-mode`` or ``channel`` neurons); unless
    ``mesh_fixed``, a model too big for ``cfg``'s mesh is compiled onto the smallest mesh that
    fits (every other field of ``cfg`` kept)."""
    try:
        return compile_model(q, cfg, mode=mode, row_budget=row_budget, mapping=mapping)
    except FitError as e:
        if mesh_fixed or not e.mesh:
            raise
        w, h = (int(v) for v in e.mesh.split("x"))
        grown = FabricConfig(**{**cfg.to_dict(), "mesh_w": w, "mesh_h": h})
        return compile_model(q, grown, mode=mode, row_budget=row_budget, mapping=mapping)


def load_target(path, calibration: Calibration = None,
                cfg: FabricConfig | None = None, *, mode: str = "pipelined",
                mesh_fixed: bool = False, row_budget: int | None = None,
                activation: str | None = None, residual: bool | None = None,
                pooling: str = "sum", mapping: str = DEFAULT_MAPPING,
                note: Callable[[str], None] | None = None,
                report: Callable[[str], None] | None = None) -> Target:
    """``MODEL_OR_IMAGE`` -> :class:`Target`. An image is loaded as it is (``cfg`` and the
    compile options are not used: check it with :func:`check_fabric`); a model is loaded
    (:func:`load_model_file`, which tells ``note`` and ``report``) and compiled
    (:func:`compile_fitting`) for ``cfg``."""
    path = Path(path)
    if not path.exists() and not path.with_suffix(".json").exists() and \
            not Path(f"{path}.json").exists():
        raise FileNotFoundError(2, "No such file", str(path))
    if is_image(path):
        return Target(load_image(path))
    cfg = cfg or FabricConfig()
    fm, q = load_model_file(path, calibration, cfg, activation=activation, residual=residual,
                            pooling=pooling, note=note, report=report)
    comp = compile_fitting(q, cfg, mode, mesh_fixed=mesh_fixed, row_budget=row_budget,
                           mapping=mapping)
    return Target(from_compiled(comp), fm, q, comp)


def check_fabric(image: Image, wanted: dict, source: dict | None = None,
                 where: str = "the image") -> None:
    """Raise :class:`FabricMismatchError` unless every field in ``wanted`` (FabricConfig field
    -> value) equals ``image.cfg``'s.

    ``source`` maps a field to where its value came from (``"--neurons"``,
    ``"fabric.json"``) for the message, which names every differing field, both values and the
    fix.
    """
    source = source or {}
    have = image.cfg.to_dict()
    diff = [k for k in wanted if have.get(k) != wanted[k]]
    if not diff:
        return
    parts = [f"{k}={have.get(k)} in the image, {wanted[k]} from {source.get(k, 'the options')}"
             for k in diff]
    raise FabricMismatchError(
        f"{where} was compiled for another fabric: {'; '.join(parts)}; compile the model for "
        f"this fabric (neuroloom compile MODEL with the same fabric options) or leave those "
        f"options out to use the image's fabric")


def describe_image(image: Image) -> str:
    """One line: the model's sizes, the fabric, the stages and the schedule."""
    m = image.model
    S = image.num_stages
    return (f"model d_in={m.get('d_in')} H={m.get('H')} modes={m.get('modes')} "
            f"layers={m.get('layers')} classes={m.get('classes')}; fabric "
            f"{image.cfg.mesh_w}x{image.cfg.mesh_h}; {S} stages; mode {image.mode} "
            f"(pipelined: 1 step/token, latency {S} steps; fall-through: {S} steps/token)")


def usage_table(image: Image) -> str:
    """Per-core resource use of ``image`` (used/capacity and percent per resource, as the image
    records it) and the totals over the used cores."""
    cfg = image.cfg
    used_cores = [(c, u) for c, u in enumerate(image.usage) if u and u.get("groups", [0])[0]]
    names = {r for _, u in used_cores for r in u}
    resources = [r for r in RESOURCES if r in names] + sorted(names - set(RESOURCES))
    lines = [f"{'core':>4} {'(x,y)':>7} " + " ".join(f"{r:>14}" for r in resources)]
    total = dict.fromkeys(resources, 0)
    for c, u in used_cores:
        x, y = cfg.core_xy(c)
        cells = []
        for r in resources:
            used, cap = u.get(r, (0, 0))
            total[r] += used
            cells.append(f"{used:>6}/{cap:<4}{100 * used // max(1, cap):>3}%")
        lines.append(f"{c:>4} {f'({x},{y})':>7} " + " ".join(cells))
    lines.append(f"{'all':>4} {len(used_cores):>4}/{cfg.num_cores:<2} "
                 + " ".join(f"{total[r]:>14}" for r in resources))
    return "\n".join(lines)
