"""Sequence classification data sets: images read out as token sequences (one pixel per token).

* ``digits`` / ``pdigits``: scikit-learn's bundled 8x8 digits (1797 images, values 0..16 scaled to
  [0, 1]) as 64-token sequences, row-major or under a seeded fixed permutation; a fixed seeded
  stratified train/test split. Always available offline.
* ``mnist`` / ``pmnist``: MNIST IDX files from a user-given folder (``train-images-idx3-ubyte``
  etc., raw or ``.gz``), 784 tokens of one pixel in [0, 1].
* ``cifar10``: the CIFAR-10 python batches (``data_batch_1..5``, ``test_batch``) from a
  user-given folder (``cifar-10-batches-py``), 1024 tokens of 3 channels (RGB) in [0, 1].

Every loader returns a :class:`SequenceData` of float tokens ``(B, K, d_in)`` and int labels.
Missing or corrupt files raise :class:`DatasetError` naming the file and what was expected.
"""

from __future__ import annotations

import gzip
import pickle
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["DatasetError", "SequenceData", "load_dataset", "digits", "mnist", "cifar10",
           "read_idx", "read_tokens", "npz_problem", "DATASETS", "PERMUTATION_SEED"]

PERMUTATION_SEED = 1234
SPLIT_SEED = 0


class DatasetError(ValueError):
    """A data set that cannot be found or read (message names the file and the fix)."""


@dataclass
class SequenceData:
    """Train and test splits of a sequence classification task."""
    name: str
    x_train: np.ndarray   # (B, K, d_in) float64
    y_train: np.ndarray   # (B,) int64
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int

    @property
    def seq_len(self) -> int:
        return self.x_train.shape[1]

    @property
    def d_in(self) -> int:
        return self.x_train.shape[2]


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


DATASETS = ("digits", "pdigits", "mnist", "pmnist", "cifar10")


def load_dataset(name: str, path=None) -> SequenceData:
    """Load a data set by name (``DATASETS``); ``path`` is the folder for mnist/cifar10."""
    if name in ("digits", "pdigits"):
        return digits(permuted=name == "pdigits")
    if name not in DATASETS:
        raise DatasetError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    if path is None:
        raise DatasetError(f"data set {name!r} needs a folder with its files (--data PATH)")
    if name in ("mnist", "pmnist"):
        return mnist(path, permuted=name == "pmnist")
    return cifar10(path)


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
