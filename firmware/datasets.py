"""Sequence classification data sets: images read out as token sequences (one pixel per token).

* ``digits`` / ``pdigits``: scikit-learn's bundled 8x8 digits (1797 images, values 0..16 scaled to
  [0, 1]) as 64-token sequences, row-major or under a seeded fixed permutation; a fixed seeded
  stratified train/test split. Always available offline.
* ``mnist`` / ``pmnist``: MNIST IDX files from a user-given folder (``train-images-idx3-ubyte``
  etc., raw or ``.gz``), 784 tokens of one pixel in [0, 1].
* ``cifar10``: the CIFAR-10 python batches (``data_batch_1..5``, ``test_batch``) from a
  user-given folder (``cifar-10-batches-py``), 1024 tokens of 3 channels (RGB) in [0, 1].

* a user's ``.npz`` (:func:`load_npz`): arrays ``X_train, y_train, X_test, y_test`` and
  optionally ``len_train, len_test``; or arrays in Python (:func:`from_arrays`).

Every loader returns a :class:`SequenceData` of float tokens ``(B, K, d_in)`` and int labels
``0..classes-1`` (``labels[c]`` is class c's original label). Sequences of different lengths are
padded at the end with zeros to the split's longest; ``len_train``/``len_test`` hold each
sequence's true length (None: all full length). The model is causal and sum-pools by
accumulating, so a sequence's result is its running logits after its last true token
(:func:`final_logits`), and padding never reaches them.
Missing or corrupt files and bad arrays raise :class:`DatasetError` naming the problem and the fix.
"""

from __future__ import annotations

import gzip
import pickle
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["DatasetError", "SequenceData", "load_dataset", "load_npz", "from_arrays", "digits",
           "mnist", "cifar10", "read_idx", "read_tokens", "npz_problem", "canonical_name",
           "final_logits", "hold_final", "is_dataset_file", "npz_has_dataset", "DATASETS",
           "DATASET_ALIASES", "PERMUTATION_SEED", "read_ts"]

PERMUTATION_SEED = 1234
SPLIT_SEED = 0


class DatasetError(ValueError):
    """A data set that cannot be found or read (message names the file and the fix)."""


@dataclass
class SequenceData:
    """Train and test splits of a sequence classification task.

    ``len_train``/``len_test``: each sequence's true length (B,) when the split holds sequences
    of different lengths, padded at the end (None: every sequence is full length);
    ``labels``: the original label of each class index (None: the classes are 0..classes-1)."""
    name: str
    x_train: np.ndarray   # (B, K, d_in) float64
    y_train: np.ndarray   # (B,) int64
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int
    len_train: np.ndarray | None = None   # (B,) int64, 1..K
    len_test: np.ndarray | None = None
    labels: list | None = None

    @property
    def seq_len(self) -> int:
        return self.x_train.shape[1]

    @property
    def d_in(self) -> int:
        return self.x_train.shape[2]

    @property
    def variable_length(self) -> bool:
        return self.len_train is not None or self.len_test is not None

    def test_sequence(self, i: int) -> np.ndarray:
        """Test sequence ``i`` at its true length: (len, d_in)."""
        n = self.x_test.shape[1] if self.len_test is None else int(self.len_test[i])
        return self.x_test[i, :n]


def final_logits(running: np.ndarray, lengths: np.ndarray | None) -> np.ndarray:
    """Each sequence's logits after its last true token: ``running`` (B, K, C) -> (B, C)."""
    running = np.asarray(running)
    if lengths is None:
        return running[:, -1]
    return running[np.arange(len(running)), _checked(lengths, running.shape) - 1]


def hold_final(running: np.ndarray, lengths: np.ndarray | None) -> np.ndarray:
    """Running logits (B, K, C) held at each sequence's last true token from there on (what a
    fabric that stopped streaming at the sequence's end reads); ``running[:, -1]`` then is
    every sequence's result."""
    if lengths is None:
        return running
    running = np.array(running)
    K = running.shape[1]
    for b, n in enumerate(_checked(lengths, running.shape)):
        if n < K:
            running[b, n:] = running[b, n - 1]
    return running


def _checked(lengths, shape) -> np.ndarray:
    n = np.asarray(lengths, dtype=np.int64)
    if n.shape != shape[:1] or (n.size and (n.min() < 1 or n.max() > shape[1])):
        raise ValueError(f"lengths {n.shape} with values {n.min() if n.size else '-'}.."
                         f"{n.max() if n.size else '-'}: give one length in 1..{shape[1]} for "
                         f"each of the {shape[0]} sequences")
    return n


def _permute(data: SequenceData, seed: int) -> SequenceData:
    perm = np.random.default_rng(seed).permutation(data.seq_len)
    return SequenceData("p" + data.name, data.x_train[:, perm], data.y_train,
                        data.x_test[:, perm], data.y_test, data.classes)


def digits(permuted: bool = False, test_fraction: float = 0.2, seed: int = SPLIT_SEED,
           perm_seed: int = PERMUTATION_SEED) -> SequenceData:
    """scikit-learn's 8x8 digits as 64-token sequences; fixed seeded stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images.reshape(-1, 64, 1) / 16.0).astype(np.float64)              # (1797, 64, 1)
    y = d.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=test_fraction, random_state=seed,
                                          stratify=y)
    data = SequenceData("digits", xtr, ytr, xte, yte, 10)
    return _permute(data, perm_seed) if permuted else data


# -- MNIST (IDX) ----------------------------------------------------------------------------------
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def _open_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DatasetError(f"{path}: cannot read ({e})") from None


def read_idx(path) -> np.ndarray:
    """Read one IDX file (raw or gzip): the format of the MNIST distribution."""
    path = Path(path)
    raw = _open_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DatasetError(f"{path}: not an IDX file (bad magic {raw[:4].hex() or 'empty'})")
    dtype, ndim = np.dtype(_IDX_TYPES[raw[2]]), raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise DatasetError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    need = int(np.prod(shape)) * dtype.itemsize
    body = raw[4 + 4 * ndim:]
    if len(body) != need:
        raise DatasetError(f"{path}: IDX header says shape {shape} ({need} bytes of data), "
                           f"file has {len(body)}")
    return np.frombuffer(body, dtype=dtype).reshape(shape)


def _find(folder: Path, stems: tuple[str, ...]) -> Path:
    for stem in stems:
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    raise DatasetError(f"{folder}: missing {stems[0]} (or {stems[0]}.gz); download MNIST's "
                       "four IDX files into this folder")


def mnist(path, permuted: bool = False, perm_seed: int = PERMUTATION_SEED) -> SequenceData:
    """MNIST from the IDX files in folder ``path``, as 784-token sequences in [0, 1]."""
    folder = Path(path)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such folder (expected MNIST IDX files in it)")
    parts = []
    for split in ("train", "t10k"):
        imgs = read_idx(_find(folder, (f"{split}-images-idx3-ubyte", f"{split}-images.idx3-ubyte")))
        labs = read_idx(_find(folder, (f"{split}-labels-idx1-ubyte", f"{split}-labels.idx1-ubyte")))
        if imgs.ndim != 3 or labs.ndim != 1 or len(imgs) != len(labs):
            raise DatasetError(f"{folder}: {split} images {imgs.shape} and labels {labs.shape} "
                               "do not match (expected (n, rows, cols) and (n,))")
        parts += [imgs.reshape(len(imgs), -1, 1).astype(np.float64) / 255.0,
                  labs.astype(np.int64)]
    data = SequenceData("mnist", *parts, 10)
    return _permute(data, perm_seed) if permuted else data


# -- CIFAR-10 (python batches) --------------------------------------------------------------------
def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DatasetError(f"{path}: missing CIFAR-10 batch (expected the python version, "
                           "folder cifar-10-batches-py)")
    try:
        with path.open("rb") as f:
            d = pickle.load(f, encoding="bytes")
        data, labels = d[b"data"], d[b"labels"]
    except Exception as e:  # unpickling garbage raises many kinds
        raise DatasetError(f"{path}: not a CIFAR-10 python batch ({type(e).__name__}: {e})") \
            from None
    data = np.asarray(data)
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DatasetError(f"{path}: data has shape {data.shape} with {len(labels)} labels, "
                           "expected (n, 3072) and n labels")
    x = data.reshape(-1, 3, 1024).transpose(0, 2, 1).astype(np.float64) / 255.0  # (n, 1024, 3)
    return x, np.asarray(labels, dtype=np.int64)


def cifar10(path) -> SequenceData:
    """CIFAR-10 from the python batches in folder ``path``: 1024 tokens of RGB in [0, 1]."""
    folder = Path(path)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such folder (expected cifar-10-batches-py)")
    tr = [_cifar_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
    xte, yte = _cifar_batch(folder / "test_batch")
    return SequenceData("cifar10", np.concatenate([t[0] for t in tr]),
                        np.concatenate([t[1] for t in tr]), xte, yte, 10)


#: the bundled data sets by their canonical names
DATASETS = ("digits", "pdigits", "mnist", "pmnist", "cifar10")
#: other names accepted for them
DATASET_ALIASES = {"digits-permuted": "pdigits", "mnist-permuted": "pmnist"}


def canonical_name(name: str) -> str | None:
    """The canonical name of a bundled data set (``digits-permuted`` -> ``pdigits``), or None."""
    name = DATASET_ALIASES.get(name, name)
    return name if name in DATASETS else None


def is_dataset_file(name) -> bool:
    """``name`` is a user data set file (``.npz``) rather than a bundled data set's name."""
    return str(name).endswith(".npz") or (canonical_name(str(name)) is None
                                          and Path(name).is_file())


def npz_has_dataset(path) -> bool:
    """``path`` is a readable ``.npz`` holding a data set's ``X_train`` (not a token file)."""
    path = Path(path)
    if path.suffix != ".npz" or not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as z:
            return "X_train" in z.files
    except (ValueError, OSError, EOFError):
        return False


def load_dataset(name, path=None) -> SequenceData:
    """Load a data set: a bundled one by name (``DATASETS``, or an alias of
    ``DATASET_ALIASES``; ``path`` is the folder for mnist/cifar10), or a user's ``.npz`` file
    (:func:`load_npz`)."""
    if isinstance(name, SequenceData):
        return name
    if is_dataset_file(name):
        if path is not None:
            raise DatasetError(f"{name} is a data set file; a folder (--data PATH) is only for "
                               "mnist and cifar10")
        return load_npz(name)
    canon = canonical_name(name)
    if canon is None:
        names = sorted([*DATASETS, *DATASET_ALIASES])
        raise DatasetError(f"unknown data set {name!r}; choose one of {', '.join(names)}, or "
                           "give a .npz file with X_train, y_train, X_test, y_test")
    if canon in ("digits", "pdigits"):
        return digits(permuted=canon == "pdigits")
    if path is None:
        raise DatasetError(f"data set {name!r} needs a folder with its files (--data PATH)")
    if canon in ("mnist", "pmnist"):
        return mnist(path, permuted=canon == "pmnist")
    return cifar10(path)


# -- user data sets ---------------------------------------------------------------------------
NPZ_KEYS = ("X_train", "y_train", "X_test", "y_test")
NPZ_OPTIONAL = ("len_train", "len_test")


def _tokens(x, where: str) -> np.ndarray:
    """(N, T) or (N, T, C) numeric -> float64 (N, T, C)."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise DatasetError(f"{where} has dtype {x.dtype}; token values must be numbers (int or "
                           "float)")
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3 or 0 in x.shape:
        raise DatasetError(f"{where} has shape {x.shape}; give (sequences, tokens, channels) or "
                           "(sequences, tokens), none of them 0")
    return x.astype(np.float64)


def _lengths(n, x: np.ndarray, where: str, name: str) -> np.ndarray | None:
    """Checked lengths (given, or read off trailing all-NaN padding) -> int64 (N,) or None."""
    N, T, _ = x.shape
    nan = np.isnan(x)
    if n is None:
        if not nan.any():
            return None
        row = nan.all(axis=2)                                                # (N, T)
        # trailing padding: from some token on, every channel NaN, and no NaN before it
        n = T - np.argmin(row[:, ::-1], axis=1)                              # (N,)
        n = np.where(row.all(axis=1), 0, n)
        return _check_lengths(n, x, where, name, inferred=True)
    n = np.asarray(n)
    if n.dtype.kind not in "iu" and not (n.dtype.kind == "f" and np.all(n == np.round(n))):
        raise DatasetError(f"{where}: {name} has dtype {n.dtype}; lengths are integers")
    if n.shape != (N,):
        raise DatasetError(f"{where}: {name} has shape {n.shape}; give one length per "
                           f"sequence, ({N},)")
    return _check_lengths(n.astype(np.int64), x, where, name, inferred=False)


def _check_lengths(n, x, where, name, inferred: bool) -> np.ndarray:
    N, T, _ = x.shape
    bad = np.flatnonzero((n < 1) | (n > T))
    if bad.size:
        i = int(bad[0])
        raise DatasetError(f"{where}: sequence {i} has length {int(n[i])}"
                           f"{' (all NaN)' if inferred and n[i] == 0 else ''}; lengths must be "
                           f"1..{T} (the padded length)")
    valid = np.arange(T)[None, :] < n[:, None]                              # (N, T)
    nan = np.isnan(x) & valid[:, :, None]
    if nan.any():
        b, k, c = (int(v) for v in np.argwhere(nan)[0])
        how = (f"pad at the end with NaN in every channel, or give {name}" if inferred
               else f"within its length {int(n[b])} of {name}")
        raise DatasetError(f"{where}: NaN at sequence {b}, token {k}, channel {c} ({how}); "
                           "fill or drop missing values")
    return n


def _labels(y_train, y_test, n_train: int, n_test: int, where: str):
    """Labels of any type -> (int64 train, int64 test, original labels by class index)."""
    ys = []
    for y, n, name in ((y_train, n_train, "y_train"), (y_test, n_test, "y_test")):
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.shape != (n,):
            raise DatasetError(f"{where}: {name} has shape {y.shape}; give one label per "
                               f"sequence, ({n},)")
        if y.dtype.kind not in "biufUS":
            raise DatasetError(f"{where}: {name} has dtype {y.dtype}; labels are integers or "
                               "strings")
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            raise DatasetError(f"{where}: {name} holds NaN or infinite labels")
        if y.dtype.kind == "S":
            y = y.astype(str)
        ys.append(y)
    if (ys[0].dtype.kind == "U") != (ys[1].dtype.kind == "U"):
        raise DatasetError(f"{where}: y_train holds {ys[0].dtype} labels, y_test {ys[1].dtype}; "
                           "give both as strings or both as numbers")
    classes = np.unique(ys[0])
    unseen = np.setdiff1d(np.unique(ys[1]), classes)
    if unseen.size:
        raise DatasetError(f"{where}: y_test has label(s) {', '.join(map(str, unseen[:5]))} "
                           "that y_train never has; a model cannot learn a class it never sees")
    if len(classes) < 2:
        raise DatasetError(f"{where}: y_train has {len(classes)} class; a classifier needs at "
                           "least 2")
    names = [v.item() for v in classes]
    if classes.dtype.kind == "f" and np.all(classes == np.round(classes)):
        names = [int(v) for v in names]
    return (np.searchsorted(classes, ys[0]).astype(np.int64),
            np.searchsorted(classes, ys[1]).astype(np.int64), names)


def from_arrays(X_train, y_train, X_test, y_test, len_train=None, len_test=None,
                name: str = "user") -> SequenceData:
    """A :class:`SequenceData` from arrays: ``X`` shaped (N, T, C) or (N, T) (numbers), ``y``
    (N,) labels of any type (mapped to 0..C-1 in sorted order; ``labels`` keeps them), optional
    true lengths (N,) for sequences padded at the end (without them, sequences padded at the
    end with NaN in every channel get their lengths from it). Padding becomes zeros.

    Raises :class:`DatasetError` naming the array and the problem (shape, dtype, NaN or
    infinite values, labels, lengths)."""
    xs, ns = [], []
    for x, n, split in ((X_train, len_train, "train"), (X_test, len_test, "test")):
        where = f"{name}: X_{split}"
        x = _tokens(x, where)
        n = _lengths(n, x, name, f"len_{split}")
        if n is not None:
            x = np.where(np.arange(x.shape[1])[None, :, None] < n[:, None, None], x, 0.0)
            if np.all(n == x.shape[1]):
                n = None
        inf = np.isinf(x)
        if inf.any():
            b, k, c = (int(v) for v in np.argwhere(inf)[0])
            raise DatasetError(f"{where} has an infinite value at sequence {b}, token {k}, "
                               f"channel {c}; token values must be finite")
        xs.append(x)
        ns.append(n)
    if xs[0].shape[2] != xs[1].shape[2]:
        raise DatasetError(f"{name}: X_train has {xs[0].shape[2]} channels per token, X_test "
                           f"{xs[1].shape[2]}; both splits need the same channels")
    ytr, yte, labels = _labels(y_train, y_test, len(xs[0]), len(xs[1]), name)
    return SequenceData(name, xs[0], ytr, xs[1], yte, len(labels), ns[0], ns[1], labels)


def read_ts(path) -> tuple[np.ndarray, np.ndarray]:
    """One split of a UEA/UCR ``.ts`` file (sktime/aeon format: ``@`` header lines, then one
    case a line, channels separated by ``:``, values by ``,``, the class label last): (X (N, T,
    C) with NaN after each shorter case, labels as strings). Raises :class:`DatasetError`."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot read ({e})") from None
    body = [ln for ln in lines if ln.strip() and not ln.lstrip().startswith(("#", "@"))]
    cases, labels = [], []
    for i, line in enumerate(body):
        *dims, label = line.strip().split(":")
        try:
            cases.append([np.array([np.nan if v in ("?", "NaN") else float(v)
                                    for v in d.split(",")]) for d in dims])
        except ValueError:
            raise DatasetError(f"{path}: case {i} holds a value that is not a number") from None
        labels.append(label.strip())
    if not cases or len({len(c) for c in cases}) != 1:
        raise DatasetError(f"{path}: no cases, or cases with different channel counts")
    T = max(len(d) for c in cases for d in c)
    x = np.full((len(cases), T, len(cases[0])), np.nan)
    for i, c in enumerate(cases):
        for ch, d in enumerate(c):
            x[i, :len(d), ch] = d
    return x, np.array(labels)


def load_npz(path) -> SequenceData:
    """A user data set from a ``.npz`` file (``numpy.savez``): ``X_train, y_train, X_test,
    y_test`` and optionally ``len_train, len_test`` (see :func:`from_arrays`). Raises
    :class:`DatasetError` (unreadable file, missing or unknown arrays, bad arrays) and
    :class:`FileNotFoundError`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "No such file", str(path))
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError) as e:
        raise DatasetError(f"{path}: {npz_problem(e, '.npz')}") from None
    expected = f"a data set .npz holds {', '.join(NPZ_KEYS)} (and optionally " \
               f"{', '.join(NPZ_OPTIONAL)})"
    missing = [k for k in NPZ_KEYS if k not in arrays]
    unknown = sorted(set(arrays) - set(NPZ_KEYS) - set(NPZ_OPTIONAL))
    if missing or unknown:
        what = "; ".join(p for p in (f"missing {', '.join(missing)}" if missing else "",
                                     f"unknown {', '.join(unknown)}" if unknown else "") if p)
        raise DatasetError(f"{path}: {what}; {expected}")
    return from_arrays(*(arrays[k] for k in NPZ_KEYS), arrays.get("len_train"),
                       arrays.get("len_test"), name=path.stem)


def npz_problem(e: Exception, suffix: str = ".npz") -> str:
    """What a failed ``np.load(..., allow_pickle=False)`` of a ``.npz`` or ``.npy`` file means,
    in words (never numpy's advice to load pickles)."""
    kind, writer = ((".npz archive", "numpy.savez") if suffix == ".npz"
                    else (".npy file", "numpy.save"))
    text = str(e)
    if "Object arrays cannot be loaded" in text:
        return ("holds object (pickled) arrays, which NeuroLoom never loads (unpickling can run "
                f"code); save numeric arrays only ({writer})")
    if "pickled" in text or "zip" in text.lower() or isinstance(e, EOFError):
        return (f"not a {kind} of numeric arrays (empty, damaged, truncated or another kind of "
                f"file); write it with {writer}")
    return f"cannot read the arrays ({text.splitlines()[0] if text else type(e).__name__})"


def read_tokens(path, d_in: int) -> np.ndarray:
    """Float tokens from a file: ``.npy``, ``.npz`` (its first array), ``.csv`` or whitespace
    text, shaped ``(K, d_in)`` or ``(B, K, d_in)``; with ``d_in == 1`` a single row or column
    of K values is one sequence. Raises :class:`DatasetError` (unreadable, empty, bad shape)
    and :class:`FileNotFoundError`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "No such file", str(path))
    try:
        if path.suffix == ".npy":
            x = np.load(path, allow_pickle=False)
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if not z.files:
                    raise DatasetError(f"{path}: no arrays in the file")
                x = z[z.files[0]]
        else:
            with warnings.catch_warnings():             # an empty file: refused below
                warnings.simplefilter("ignore", UserWarning)
                x = np.loadtxt(path, delimiter="," if path.suffix == ".csv" else None, ndmin=2)
    except (ValueError, OSError, EOFError) as e:
        if path.suffix in (".npy", ".npz"):
            raise DatasetError(f"{path}: {npz_problem(e, path.suffix)}") from None
        raise DatasetError(f"{path}: cannot read tokens ({str(e).strip() or type(e).__name__})"
                           ) from None
    x = np.asarray(x)
    if x.size == 0:
        raise DatasetError(f"{path}: no tokens in the file; give (K, {d_in}) or "
                           f"(B, K, {d_in}) values")
    if d_in == 1 and x.ndim == 2 and x.shape[0] == 1 and x.shape[1] != 1:
        x = x.T                                              # one row of K scalar tokens
    if d_in == 1 and x.ndim == 1:
        x = x[:, None]
    if x.ndim not in (2, 3) or x.shape[-1] != d_in:
        raise DatasetError(f"{path}: tokens of shape {x.shape}; the image expects (K, {d_in}) "
                           f"or (B, K, {d_in})")
    return x
