"""Model files in and out: NeuroLoom's own format, and checkpoints of Gu's S4D.

Our format is two files side by side: ``<stem>.npz`` (the arrays) and ``<stem>.json`` (format
name, version, sizes and metadata). :func:`save_float`/:func:`load_float` hold a
:class:`~firmware.model.FloatModel`, :func:`save_qmodel`/:func:`load_qmodel` a
:class:`~firmware.qmodel.QModel`; :func:`load_model` reads either.

:func:`import_s4` reads a state_dict in the layout of the ``state-spaces/s4`` standalone S4D
(``models/s4/s4d.py``, stacked as in its ``example.py``): a torch checkpoint ``{'model':
state_dict}`` or a bare state_dict (``torch.load(weights_only=True)``), or a ``.npz`` with the same
keys (no torch needed). Per layer ``i`` (keys under ``layers.{i}.`` or ``s4_layers.{i}.``,
optionally behind ``model.``/``module.`` and ``layer.`` prefixes)::

    kernel.log_dt (H)   kernel.C (H, N/2, 2)   kernel.log_A_real (H, N/2)   kernel.A_imag (H, N/2)
    D (H)               output_linear.0.weight (H, H, 1) or (H, H)   output_linear.0.bias (H)
    [kernel.B (H, N/2, 2): optional learnable complex input weights]

plus ``encoder.weight (H, d_in)``/``.bias`` and ``decoder.weight (classes, H)``/``.bias``.

What a state_dict cannot say comes from options (or a ``'neuroloom'`` metadata dict in the
checkpoint): ``activation`` must be ``'relu'`` (Gu's GELU does not run on the fabric) and
``residual`` must be false (the quantized reference has no skip path). ``layers.{i}`` stacks default
to ``residual=False`` (the n-S4D layout); Gu's ``example.py`` (``s4_layers.{i}``) always adds a
residual, so for it the option must be given. ``pooling`` is ``'sum'``, the only pooling the
fabric runs (the decoder's outputs integrated over the sequence: running logits, ``K`` times
Gu's mean pooling, the same argmax). LayerNorm (``norms.*``, ``*.norm.*``) and GLU output linears
are rejected with :class:`ModelImportError` naming the key and the fix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .datasets import npz_problem
from .model import FloatLayer, FloatModel
from .qmodel import QModel

__all__ = ["ModelImportError", "save_float", "load_float", "save_qmodel", "load_qmodel",
           "load_model", "import_s4", "FLOAT_FORMAT", "QMODEL_FORMAT", "FORMAT_VERSION",
           "POOLINGS", "read_npz"]

#: the models shipped with the package (package data)
SHIPPED_MODEL_DIR = Path(__file__).parent / "models"

FLOAT_FORMAT = "neuroloom-float-s4d"
QMODEL_FORMAT = "neuroloom-qmodel"
FORMAT_VERSION = 1

#: the poolings the fabric runs: ``sum``, the decoder's outputs integrated over the sequence
POOLINGS = ("sum",)


class ModelImportError(ValueError):
    """A model file that cannot be read or cannot run on the fabric (message names key + fix)."""


# -- our own format -------------------------------------------------------------------------------
def _paths(path) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix in (".npz", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".npz"), p.with_name(p.name + ".json")


def _write(path, arrays: dict, meta: dict) -> tuple[Path, Path]:
    npz, js = _paths(path)
    npz.parent.mkdir(parents=True, exist_ok=True)
    np.savez(npz, **arrays)
    js.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return npz, js


def _read(path, fmt: str | None) -> tuple[dict, dict]:
    npz, js = _paths(path)
    for p in (npz, js):
        if not p.is_file():
            raise ModelImportError(f"{p}: no such file (a NeuroLoom model is {npz.name} + "
                                   f"{js.name})")
    try:
        meta = json.loads(js.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelImportError(f"{js}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or "format" not in meta:
        raise ModelImportError(f"{js}: no 'format' field; not a NeuroLoom model file")
    if fmt is not None and meta["format"] != fmt:
        raise ModelImportError(f"{js}: format is {meta['format']!r}, expected {fmt!r}")
    if meta.get("version") != FORMAT_VERSION:
        raise ModelImportError(f"{js}: format version {meta.get('version')!r} is not supported "
                               f"(this NeuroLoom reads version {FORMAT_VERSION})")
    return read_npz(npz), meta


def read_npz(path) -> dict:
    """The arrays of a ``.npz`` archive of numeric arrays (never unpickles: an object array could
    run code). Raises :class:`ModelImportError` saying what is wrong without numpy's advice to
    load pickles."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:  # zipfile/pickle/format errors: all mean "not a numeric npz"
        raise ModelImportError(f"{path}: {npz_problem(e)}") from None



def _pairs(z: np.ndarray) -> np.ndarray:
    return np.stack([z.real, z.imag], axis=-1)


def save_float(model: FloatModel, path) -> tuple[Path, Path]:
    """Write ``model`` as ``<path>.npz`` + ``<path>.json``; returns the two paths."""
    arrays = {"enc.W": model.enc_W, "enc.b": model.enc_b,
              "dec.W": model.dec_W, "dec.b": model.dec_b}
    for i, ly in enumerate(model.layers):
        for k in ("log_dt", "log_A_real", "A_imag", "D", "W", "b"):
            arrays[f"layers.{i}.{k}"] = np.asarray(getattr(ly, k), np.float64)
        arrays[f"layers.{i}.C"] = _pairs(ly.C)
        if ly.B is not None:
            arrays[f"layers.{i}.B"] = _pairs(np.asarray(ly.B))
    meta = {"format": FLOAT_FORMAT, "version": FORMAT_VERSION, "d_in": model.d_in,
            "H": model.H, "N": model.N, "layers": len(model.layers), "classes": model.classes,
            "meta": model.meta}
    return _write(path, arrays, meta)


def load_float(path) -> FloatModel:
    """Read a model written by :func:`save_float` (checked like an import)."""
    arrays, meta = _read(path, FLOAT_FORMAT)
    sd = {"encoder.weight": arrays.get("enc.W"), "encoder.bias": arrays.get("enc.b"),
          "decoder.weight": arrays.get("dec.W"), "decoder.bias": arrays.get("dec.b")}
    for i in range(int(meta.get("layers", 0))):
        p = f"layers.{i}."
        for ours, gu in (("log_dt", "kernel.log_dt"), ("log_A_real", "kernel.log_A_real"),
                         ("A_imag", "kernel.A_imag"), ("C", "kernel.C"), ("B", "kernel.B"),
                         ("D", "D"), ("W", "output_linear.0.weight"),
                         ("b", "output_linear.0.bias")):
            if p + ours in arrays:
                sd[p + gu] = arrays[p + ours]
    sd = {k: v for k, v in sd.items() if v is not None}
    model = _build(sd, residual=False, where=str(_paths(path)[0]))
    model.meta = dict(meta.get("meta", {}))
    return model


def save_qmodel(model: QModel, path) -> tuple[Path, Path]:
    """Write a quantized model as ``<path>.npz`` + ``<path>.json`` (``QModel.to_arrays``)."""
    arrays, meta = model.to_arrays()
    meta = {"format": QMODEL_FORMAT, "version": FORMAT_VERSION, "d_in": model.d_in,
            "H": model.H, "modes": model.modes, "classes": model.classes, **meta}
    return _write(path, {k: np.asarray(v, np.int64) for k, v in arrays.items()}, meta)


def load_qmodel(path) -> QModel:
    """Read a quantized model written by :func:`save_qmodel`."""
    arrays, meta = _read(path, QMODEL_FORMAT)
    try:
        return QModel.from_arrays(arrays, meta)
    except KeyError as e:
        raise ModelImportError(f"{_paths(path)[0]}: missing entry {e.args[0]!r}") from None


def _check_pooling(pooling, where) -> None:
    if pooling in POOLINGS:
        return
    hint = (" (a model trained with mean pooling runs with 'sum': K times the mean, the same "
            "argmax)" if pooling == "mean" else "")
    raise ModelImportError(
        f"{where}: pooling {pooling!r} is not supported; the fabric runs "
        f"{', '.join(map(repr, POOLINGS))}: the decoder's outputs integrated over the sequence, "
        f"read as running logits{hint}")


def load_model(path, *, pooling: str = "sum") -> FloatModel | QModel:
    """Read either kind of NeuroLoom model file (dispatch on the JSON ``format``).

    ``pooling`` must be one of :data:`POOLINGS` (``'sum'``, what NeuroLoom models compute);
    another value raises :class:`ModelImportError`.
    """
    _, js = _paths(path)
    _check_pooling(pooling, js)
    arrays_meta = _read(path, None)[1]
    fmt = arrays_meta["format"]
    if fmt == FLOAT_FORMAT:
        return load_float(path)
    if fmt == QMODEL_FORMAT:
        return load_qmodel(path)
    raise ModelImportError(f"{js}: unknown format {fmt!r} (expected {FLOAT_FORMAT!r} or "
                           f"{QMODEL_FORMAT!r})")


# -- Gu's S4D checkpoints -------------------------------------------------------------------------
_LAYER_KEY = re.compile(r"^(?P<stack>layers|s4_layers)\.(?P<i>\d+)\.(?:layer\.)*(?P<rest>.+)$")
_LAYER_PARAMS = {  # rest -> (our name, required)
    "kernel.log_dt": ("log_dt", True), "kernel.C": ("C", True),
    "kernel.log_A_real": ("log_A_real", True), "kernel.A_imag": ("A_imag", True),
    "kernel.B": ("B", False), "D": ("D", True),
    "output_linear.0.weight": ("W", True), "output_linear.0.bias": ("b", True),
    "output_linear.weight": ("W", True), "output_linear.bias": ("b", True),
}
_TOP = ("encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias")
_NORM_FIX = ("LayerNorm is not supported on the fabric (it divides by a per-token standard "
             "deviation); retrain without normalization (n-S4D)")


def _to_numpy(v, key: str) -> np.ndarray:
    if hasattr(v, "detach"):  # torch tensor
        v = v.detach().cpu()
        if v.is_complex():
            v = np.stack([v.real.numpy(), v.imag.numpy()], axis=-1)
        else:
            v = v.double().numpy()
    try:
        a = np.asarray(v)
        if np.iscomplexobj(a):
            a = _pairs(a)
        return a.astype(np.float64)
    except (TypeError, ValueError):
        raise ModelImportError(f"{key}: not a numeric array ({type(v).__name__})") from None


def _load_source(source) -> tuple[dict, dict, str]:
    """-> (state_dict of numpy arrays, metadata, where)."""
    meta: dict = {}
    if isinstance(source, Mapping):
        obj, where = source, "state_dict"
    else:
        path = Path(source)
        where = str(path)
        if not path.is_file():
            raise ModelImportError(f"{path}: no such file")
        if path.suffix == ".npz":
            obj = read_npz(path)
            if "neuroloom_meta" in obj:
                meta = json.loads(str(obj.pop("neuroloom_meta")))
        else:
            try:
                import torch
            except ImportError:
                raise ModelImportError(
                    f"{path}: reading a torch checkpoint needs torch (pip install "
                    "'neuroloom[train]'); or save the state_dict as .npz (numpy.savez) "
                    "and import that") from None
            try:
                obj = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as e:
                raise ModelImportError(
                    f"{path}: not a torch checkpoint NeuroLoom can read: damaged, another kind "
                    "of file, or holding objects besides tensors (NeuroLoom loads checkpoints "
                    "with weights_only=True and never runs code from them; save the "
                    f"state_dict: torch.save(model.state_dict(), ...)) [{type(e).__name__}]") \
                    from None
    if not isinstance(obj, Mapping):
        raise ModelImportError(f"{where}: expected a state_dict or {{'model': state_dict}}, "
                               f"got {type(obj).__name__}")
    for wrapper in ("model", "state_dict"):
        if isinstance(obj.get(wrapper), Mapping):
            if isinstance(obj.get("neuroloom"), Mapping):
                meta = {**obj["neuroloom"], **meta}
            obj = obj[wrapper]
            break
    sd = {}
    for k, v in obj.items():
        key = str(k)
        while key.startswith(("model.", "module.")):
            key = key.split(".", 1)[1]
        sd[key] = _to_numpy(v, str(k))
    return sd, meta, where


def _check_shape(sd, key, expected, where):
    a = sd[key]
    if a.shape != tuple(expected):
        raise ModelImportError(f"{where}: {key} has shape {a.shape}, expected "
                               f"{tuple(expected)}")


def _problems_error(where: str, problems: list[str]) -> ModelImportError:
    """One error naming every problem (numbered when there are several), on one line."""
    if len(problems) == 1:
        return ModelImportError(f"{where}: {problems[0]}")
    return ModelImportError(f"{where}: {len(problems)} problems: " + "; ".join(
        f"({i}) {p}" for i, p in enumerate(problems, 1)))


def _build(sd: dict, residual: bool | None, where: str,
           problems: list | None = None) -> FloatModel | None:
    """Validate a normalized state_dict (numpy arrays) and build the FloatModel.

    A damaged or malformed state_dict raises :class:`ModelImportError` at once; a part the
    fabric cannot run (LayerNorm, residual, GLU) is noted and the check goes on, so that every
    such part is reported together: appended to ``problems`` (None is returned then), or
    raised as one error when no list is given."""
    own = problems is None
    problems = [] if own else problems
    layers: dict[int, dict] = {}
    stacks = set()
    norms = []
    for key, a in sd.items():
        if re.match(r"^(?:norms\.\d+|(?:s4_)?layers\.\d+\.norm)\.", key) or ".norm." in key:
            norms.append(key)
            continue
        if not np.all(np.isfinite(a)):
            bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
            raise ModelImportError(f"{where}: {key} has {bad} non-finite value(s) (NaN/inf)")
        if key in _TOP:
            continue
        m = _LAYER_KEY.match(key)
        if m and m["rest"] in _LAYER_PARAMS:
            stacks.add(m["stack"])
            layers.setdefault(int(m["i"]), {})[_LAYER_PARAMS[m["rest"]][0]] = key
            continue
        known = ", ".join(sorted(k for k in _LAYER_PARAMS if "output_linear.0" not in k))
        raise ModelImportError(f"{where}: unexpected key {key!r}; an n-S4D state_dict has "
                               f"encoder.*, decoder.* and per layer {known}")
    if norms:
        more = f" (and {len(norms) - 1} more norm keys)" if norms[1:] else ""
        problems.append(f"{norms[0]}{more}: {_NORM_FIX}")
    for key in _TOP:
        if key not in sd:
            raise ModelImportError(f"{where}: missing key {key!r}")
    if not layers:
        raise ModelImportError(f"{where}: no S4D layers found (expected keys like "
                               "'layers.0.kernel.log_dt' or 's4_layers.0.kernel.log_dt')")
    if len(stacks) > 1:
        raise ModelImportError(f"{where}: both layers.* and s4_layers.* keys; cannot tell the "
                               "layer order")
    if residual is None:
        if stacks == {"s4_layers"}:
            problems.append(
                "s4_layers.* is the layout of Gu's example.py, which adds a residual "
                "around every layer; the fabric's quantized reference has no residual path: "
                "retrain without residual connections and import with residual=False "
                "(--no-residual)")
        residual = False
    if residual:
        problems.append("residual connections are not supported by the quantized reference "
                        "(QModel has no skip path around a layer); retrain without residual "
                        "connections (n-S4D)")
    if sorted(layers) != list(range(len(layers))):
        raise ModelImportError(f"{where}: layer indices {sorted(layers)} are not "
                               f"0..{len(layers) - 1}")

    H, d_in = sd["encoder.weight"].shape if sd["encoder.weight"].ndim == 2 else (None, None)
    if H is None:
        raise ModelImportError(f"{where}: encoder.weight has shape {sd['encoder.weight'].shape}, "
                               "expected (H, d_in)")
    _check_shape(sd, "encoder.bias", (H,), where)
    classes = sd["decoder.weight"].shape[0]
    _check_shape(sd, "decoder.weight", (classes, H), where)
    _check_shape(sd, "decoder.bias", (classes,), where)

    out = []
    N2 = None
    for i in range(len(layers)):
        keys = layers[i]
        stack = next(iter(stacks))
        for name, (ours, required) in _LAYER_PARAMS.items():
            if required and ours not in keys and name.startswith(("kernel", "D")):
                raise ModelImportError(f"{where}: missing key '{stack}.{i}.{name}'")
        for ours, name in (("W", "weight"), ("b", "bias")):
            if ours not in keys:
                raise ModelImportError(f"{where}: missing key '{stack}.{i}.output_linear.0.{name}'")
        C = sd[keys["C"]]
        if C.ndim != 3 or C.shape[0] != H or C.shape[2] != 2:
            raise ModelImportError(f"{where}: {keys['C']} has shape {C.shape}, expected "
                                   f"({H}, N/2, 2) (complex as real pairs)")
        N2 = C.shape[1]
        _check_shape(sd, keys["log_dt"], (H,), where)
        _check_shape(sd, keys["log_A_real"], (H, N2), where)
        _check_shape(sd, keys["A_imag"], (H, N2), where)
        if "B" in keys:
            _check_shape(sd, keys["B"], (H, N2, 2), where)
        D = sd[keys["D"]]
        if D.shape == (1, H):  # the full s4 repo keeps D as (channels, H)
            D = D[0]
        if D.shape != (H,):
            raise ModelImportError(f"{where}: {keys['D']} has shape {D.shape}, expected ({H},)")
        W = sd[keys["W"]]
        if W.ndim == 3 and W.shape[2] == 1:
            W = W[:, :, 0]
        if W.ndim == 2 and W.shape == (2 * H, H):
            problems.append(
                f"{keys['W']} has shape {sd[keys['W']].shape}: a GLU output linear "
                f"(Conv1d to 2H={2 * H} channels, then GLU); the fabric has no GLU: retrain "
                f"with a plain H x H output linear (n-S4D)")
            continue
        if W.shape != (H, H):
            raise ModelImportError(f"{where}: {keys['W']} has shape {sd[keys['W']].shape}, "
                                   f"expected ({H}, {H}, 1) or ({H}, {H})")
        _check_shape(sd, keys["b"], (H,), where)
        ly = FloatLayer(sd[keys["log_dt"]].copy(), sd[keys["log_A_real"]].copy(),
                        sd[keys["A_imag"]].copy(), sd[keys["C"]][..., 0] + 1j * C[..., 1],
                        D.copy(), W.copy(), sd[keys["b"]].copy(),
                        (sd[keys["B"]][..., 0] + 1j * sd[keys["B"]][..., 1]) if "B" in keys
                        else None)
        mag = np.abs(ly.dA)
        if np.any(mag >= 1.0):
            h, n = np.unravel_index(np.argmax(mag), mag.shape)
            raise ModelImportError(
                f"{where}: {keys['log_A_real']}: unstable mode [{h}, {n}]: |dA| = "
                f"exp(-exp(log_A_real) * exp(log_dt)) = {mag[h, n]:.17g}, expected < 1 "
                f"(log_A_real = {ly.log_A_real[h, n]!r}, log_dt = {ly.log_dt[h]!r})")
        out.append(ly)
        if N2 != out[0].N:
            raise ModelImportError(f"{where}: {keys['C']} has {N2} modes per channel, layer 0 "
                                   f"has {out[0].N}; all layers must have the same N")
    if problems:
        if own:
            raise _problems_error(where, problems)
        return None
    return FloatModel(sd["encoder.weight"].copy(), sd["encoder.bias"].copy(), out,
                      sd["decoder.weight"].copy(), sd["decoder.bias"].copy())


def import_s4(source, *, activation: str | None = None, residual: bool | None = None,
              pooling: str = "sum") -> FloatModel:
    """Import an S4D checkpoint in the ``state-spaces/s4`` layout as a :class:`FloatModel`.

    Parameters
    ----------
    source : path of a torch checkpoint (``{'model': sd}`` or bare ``sd``) or ``.npz``, or a
             state_dict mapping (tensors or arrays)
    activation : the layers' activation, which no key records: must be ``'relu'`` (n-S4D);
             may also come from ``checkpoint['neuroloom']['activation']``
    residual : whether each layer has a residual connection (must be false; see module doc)
    pooling : how the decoder's per-token outputs become the result: ``'sum'`` (the default and
             the only one the fabric runs, see :data:`POOLINGS`)

    Raises
    ------
    ModelImportError : unreadable file, missing/unexpected key, wrong shape, NaN/inf, unstable
             mode, or a part the fabric cannot run (LayerNorm, GLU, GELU, residual, a pooling
             other than sum)
    """
    _check_pooling(pooling, source if isinstance(source, (str, Path)) else "state_dict")
    sd, meta, where = _load_source(source)
    activation = activation if activation is not None else meta.get("activation")
    residual = residual if residual is not None else meta.get("residual")
    problems: list[str] = []
    model = _build(sd, residual, where, problems)
    if activation is None:
        problems.append(
            "the activation is not recorded in a state_dict; Gu's S4D uses GELU, "
            "which the fabric cannot run: if the model was trained with ReLU (n-S4D), pass "
            "activation='relu' (--activation relu)")
    elif str(activation).lower() != "relu":
        problems.append(
            f"activation {activation!r} is not supported on the fabric (its readout "
            "neurons compute ReLU); retrain with ReLU (n-S4D) and import with activation='relu'")
    if problems:
        raise _problems_error(where, problems)
    model.meta = {"source": where, "activation": "relu", "residual": False,
                  "pooling": "sum"}
    return model
