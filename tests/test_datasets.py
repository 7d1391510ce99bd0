"""Data sets: built-in digits, and MNIST/CIFAR-10 loaders on tiny files written here."""

import gzip
import pickle
import struct

import numpy as np
import pytest

from neuroloom.firmware.datasets import DatasetError, cifar10, digits, load_dataset, mnist, read_idx


def test_digits_sequential_and_permuted():
    d = digits()
    assert d.x_train.shape[1:] == (64, 1) and len(d.x_train) + len(d.x_test) == 1797
    assert 0.0 <= d.x_train.min() and d.x_train.max() == 1.0 and d.classes == 10
    again = digits()
    np.testing.assert_array_equal(d.x_test, again.x_test)        # fixed seeded split
    p = load_dataset("pdigits")
    assert p.name == "pdigits" and not np.array_equal(p.x_train, d.x_train)
    np.testing.assert_array_equal(np.sort(p.x_train, axis=1), np.sort(d.x_train, axis=1))
    np.testing.assert_array_equal(p.y_train, d.y_train)


def _idx(path, arr, gz):
    code = {np.uint8: 0x08}[arr.dtype.type]
    raw = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx(tmp_path, gz):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (5, 4, 4), dtype=np.uint8)
    labs = rng.integers(0, 10, 5, dtype=np.uint8)
    sfx = ".gz" if gz else ""
    for split in ("train", "t10k"):
        _idx(tmp_path / f"{split}-images-idx3-ubyte{sfx}", imgs, gz)
        _idx(tmp_path / f"{split}-labels-idx1-ubyte{sfx}", labs, gz)
    d = mnist(tmp_path)
    assert d.x_train.shape == (5, 16, 1) and d.x_test.shape == (5, 16, 1)
    np.testing.assert_allclose(d.x_train[2, :, 0], imgs[2].ravel() / 255.0)
    np.testing.assert_array_equal(d.y_test, labs)
    p = load_dataset("pmnist", tmp_path)
    np.testing.assert_array_equal(np.sort(p.x_train, axis=1), np.sort(d.x_train, axis=1))


def test_mnist_errors(tmp_path):
    with pytest.raises(DatasetError, match=r"no such folder"):
        mnist(tmp_path / "nope")
    with pytest.raises(DatasetError, match=r"missing train-images-idx3-ubyte \(or "
                                           r"train-images-idx3-ubyte.gz\)"):
        mnist(tmp_path)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DatasetError, match=r"bad: not an IDX file \(bad magic 01020304\)"):
        read_idx(tmp_path / "bad")
    _idx(tmp_path / "short", np.zeros((3, 2), np.uint8), False)
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-1])
    with pytest.raises(DatasetError, match=r"short: IDX header says shape \(3, 2\) \(6 bytes "
                                           r"of data\), file has 5"):
        read_idx(tmp_path / "short")
    (tmp_path / "trunc.gz").write_bytes(gzip.compress(b"\x00" * 100)[:20])
    with pytest.raises(DatasetError, match=r"trunc.gz: cannot read"):
        read_idx(tmp_path / "trunc.gz")
    with pytest.raises(DatasetError, match=r"needs a folder"):
        load_dataset("mnist")
    with pytest.raises(DatasetError, match=r"unknown data set 'svhn'"):
        load_dataset("svhn")


def _batch(path, n, rng):
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    with path.open("wb") as f:
        pickle.dump({b"data": data, b"labels": list(rng.integers(0, 10, n))}, f)
    return data


def test_cifar10(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(1, 6):
        _batch(tmp_path / f"data_batch_{i}", 2, rng)
    test = _batch(tmp_path / "test_batch", 3, rng)
    d = cifar10(tmp_path)
    assert d.x_train.shape == (10, 1024, 3) and d.x_test.shape == (3, 1024, 3)
    np.testing.assert_allclose(d.x_test[1, 5], test[1, [5, 1029, 2053]] / 255.0)  # R, G, B
    (tmp_path / "test_batch").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=r"test_batch: not a CIFAR-10 python batch"):
        cifar10(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(DatasetError, match=r"data_batch_3: missing CIFAR-10 batch"):
        cifar10(tmp_path)
