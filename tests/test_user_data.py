"""A user's own data set end to end: loader checks, variable lengths at every level, and the
CLI alone from a .npz (multichannel, string labels, variable lengths) to golden and RTL logits."""

import json

import numpy as np
import pytest

from neuroloom.cli import main
from neuroloom.contract.config import FabricConfig
from neuroloom.contract.image import load as load_image
from neuroloom.firmware.compiler import compile_model, from_compiled
from neuroloom.firmware.datasets import DatasetError, from_arrays, load_dataset, load_npz
from neuroloom.firmware.driver import Driver, open_transport
from neuroloom.firmware.model import FloatModel
from neuroloom.firmware.qmodel import QModel, qforward
from neuroloom.firmware.quantize import quantize

LABELS = np.array(["low", "mid", "high"])
#: the smallest fabric the test model fits (one core), shared with tests/test_fabric_e2e.py
RTL_FABRIC = ["--mesh", "1x1", "--neurons", "32", "--axons", "32", "--synapse-rows", "128",
              "--route-words", "64", "--ucode-depth", "32"]


def _sequences(rng, n, T=10):
    """Three classes told apart by a sine's frequency and a level, lengths 4..T, padded with
    large junk after each sequence (a model that read the padding would fail)."""
    lengths = rng.integers(4, T + 1, n)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 3.0, (n, T, 3))                                   # junk padding
    for i in range(n):
        t = np.arange(lengths[i])
        x[i, :lengths[i], 0] = np.sin(t * (y[i] + 1) * 0.7)
        x[i, :lengths[i], 1] = (y[i] - 1) * 0.5
        x[i, :lengths[i], 2] = rng.normal(0, 0.1, lengths[i])
    return x, LABELS[y], lengths


@pytest.fixture(scope="module")
def user_npz(tmp_path_factory):
    rng = np.random.default_rng(0)
    xtr, ytr, ltr = _sequences(rng, 48)
    xte, yte, lte = _sequences(rng, 16)
    path = tmp_path_factory.mktemp("user") / "user.npz"
    np.savez(path, X_train=xtr, y_train=ytr, X_test=xte, y_test=yte, len_train=ltr,
             len_test=lte)
    return path


# -- the loader ----------------------------------------------------------------------------------

def test_npz_loads_labels_lengths_and_zeroes_the_padding(user_npz):
    d = load_npz(user_npz)
    raw = np.load(user_npz)
    assert (d.name, d.classes, d.d_in, d.seq_len) == ("user", 3, 3, 10)
    assert d.labels == ["high", "low", "mid"]                            # sorted
    np.testing.assert_array_equal(np.array(d.labels)[d.y_test], raw["y_test"])
    np.testing.assert_array_equal(d.len_test, raw["len_test"])
    n = int(raw["len_train"][0])
    np.testing.assert_array_equal(d.x_train[0, :n], raw["X_train"][0, :n])
    assert not d.x_train[0, n:].any(), "padding after a sequence's length becomes zeros"
    assert d.test_sequence(1).shape == (raw["len_test"][1], 3)


def test_two_dimensional_x_integer_labels_and_nan_padding_lengths():
    xtr = np.array([[1, 2, np.nan], [3, np.nan, np.nan], [4, 5, 6]])     # (N, T): one channel
    d = from_arrays(xtr, [7, 9, 7], [[1.0, 2.0]], [9])
    assert d.x_train.shape == (3, 3, 1) and d.x_test.shape == (1, 2, 1)
    assert d.labels == [7, 9] and d.y_train.tolist() == [0, 1, 0] and d.y_test.tolist() == [1]
    assert d.len_train.tolist() == [2, 1, 3] and d.len_test is None
    assert d.x_train[1, 1:, 0].tolist() == [0.0, 0.0]


def _arrays(**change):
    a = dict(X_train=np.zeros((4, 5, 2)), y_train=np.array(["a", "b", "a", "b"]),
             X_test=np.zeros((2, 5, 2)), y_test=np.array(["b", "a"]))
    a.update(change)
    return a


@pytest.mark.parametrize("change, message", [
    (dict(X_train=np.zeros((4, 5, 2, 1))), r"X_train has shape \(4, 5, 2, 1\); give "
                                           r"\(sequences, tokens, channels\)"),
    (dict(X_train=np.zeros((4, 0, 2))), r"X_train has shape \(4, 0, 2\)"),
    (dict(X_test=np.array([["a"] * 5] * 2)), r"X_test has dtype <U1; token values must be "
                                             r"numbers"),
    (dict(X_test=np.zeros((2, 5, 3))), r"X_train has 2 channels per token, X_test 3"),
    (dict(y_train=np.array(["a", "b", "a"])), r"y_train has shape \(3,\); give one label per "
                                              r"sequence, \(4,\)"),
    (dict(y_test=np.array(["b", "c"])), r"y_test has label\(s\) c that y_train never has"),
    (dict(y_train=np.array(["a"] * 4), y_test=np.array(["a", "a"])), r"1 class; a classifier "
                                                                      r"needs at least 2"),
    (dict(y_test=np.array([1, 0])), r"y_train holds <U1 labels, y_test int64"),
    (dict(y_train=np.array([0.0, np.nan, 1.0, 0.0]), y_test=np.array([0.0, 1.0])),
     r"y_train holds NaN or infinite labels"),
    (dict(X_train=np.where(np.arange(5)[None, :, None] == 1, np.nan, np.zeros((4, 5, 2)))),
     r"NaN at sequence 0, token 1, channel 0 \(pad at the end with NaN in every channel"),
    (dict(X_test=np.full((2, 5, 2), np.inf)), r"X_test has an infinite value at sequence 0, "
                                              r"token 0"),
    (dict(len_train=np.array([5, 0, 5, 5])), r"sequence 1 has length 0; lengths must be 1..5"),
    (dict(len_train=np.array([5, 6, 5, 5])), r"sequence 1 has length 6; lengths must be 1..5"),
    (dict(len_test=np.array([5])), r"len_test has shape \(1,\); give one length per sequence, "
                                   r"\(2,\)"),
    (dict(len_test=np.array([1.5, 2.0])), r"len_test has dtype float64; lengths are integers"),
])
def test_loader_errors_name_the_problem(tmp_path, change, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **_arrays(**change))
    with pytest.raises(DatasetError, match=message) as e:
        load_dataset(path)
    assert "\n" not in str(e.value)


def test_nan_inside_a_given_length_is_refused_and_after_it_is_padding():
    x = np.zeros((4, 5, 2))
    x[0, 3:] = np.nan
    d = from_arrays(x, ["a", "b", "a", "b"], np.zeros((2, 5, 2)), ["a", "b"],
                    len_train=[3, 5, 5, 5])
    assert d.len_train.tolist() == [3, 5, 5, 5] and not np.isnan(d.x_train).any()
    with pytest.raises(DatasetError, match=r"NaN at sequence 0, token 3, channel 0 \(within its "
                                           r"length 4 of len_train\)"):
        from_arrays(x, ["a", "b", "a", "b"], np.zeros((2, 5, 2)), ["a", "b"],
                    len_train=[4, 5, 5, 5])


@pytest.mark.parametrize("keys, message", [
    (("X_train", "y_train", "X_test"), r"missing y_test; a data set .npz holds X_train, "
                                       r"y_train, X_test, y_test"),
    (("X_train", "y_train", "X_test", "y_test", "lengths"), r"unknown lengths"),
])
def test_npz_keys(tmp_path, keys, message):
    a = {**_arrays(), "lengths": np.ones(4, int)}
    np.savez(tmp_path / "d.npz", **{k: a[k] for k in keys})
    with pytest.raises(DatasetError, match=message):
        load_npz(tmp_path / "d.npz")


def test_npz_unreadable_and_object_arrays(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match=r"junk.npz: not a .npz archive"):
        load_npz(tmp_path / "junk.npz")
    np.savez(tmp_path / "obj.npz", **{**_arrays(), "y_train": np.array([1, "a", 2, 3], object)})
    with pytest.raises(DatasetError, match=r"obj.npz: holds object \(pickled\) arrays"):
        load_npz(tmp_path / "obj.npz")
    with pytest.raises(FileNotFoundError):
        load_npz(tmp_path / "none.npz")


def test_bundled_names_and_aliases():
    assert load_dataset("digits-permuted").name == "pdigits"
    np.testing.assert_array_equal(load_dataset("digits-permuted").x_test,
                                  load_dataset("pdigits").x_test)
    with pytest.raises(DatasetError, match=r"unknown data set 'svhn'; choose one of cifar10, "
                                           r"digits, digits-permuted, mnist, mnist-permuted, "
                                           r"pdigits, pmnist, or give a .npz file"):
        load_dataset("svhn")


# -- variable lengths at every level -------------------------------------------------------------

def _model(d_in=2, seed=3):
    rng = np.random.default_rng(seed)
    fm = FloatModel.random(d_in, 4, 3, 2, 3, seed=seed)
    q, _ = quantize(fm, rng.normal(0, 1, (16, 9, d_in)), FabricConfig())
    return fm, q, rng


def test_a_sequence_alone_equals_its_padded_run_read_at_its_length():
    """Causality, what the whole design rests on: float, quantized reference and golden model
    of a sequence streamed alone at its length equal the padded batch read at that length,
    whatever the padding holds."""
    fm, q, rng = _model()
    x = rng.normal(0, 1, (5, 9, 2))
    lengths = np.array([9, 1, 4, 7, 2])
    xq = q.quantize_input(x)
    held = qforward(q, xq, lengths=lengths)                              # (5, 9, 3)
    drv = Driver(open_transport("golden", batch=5, max_batch=5))
    drv.load(from_compiled(compile_model(q, FabricConfig())))
    golden = drv.run(xq, lengths=lengths)
    np.testing.assert_array_equal(golden.running, held)
    for b, n in enumerate(lengths):
        alone = qforward(q, xq[b:b + 1, :n])[0]                           # (n, 3)
        np.testing.assert_array_equal(held[b, :n], alone)
        assert (held[b, n:] == alone[-1]).all(), "held at the last true token"
        np.testing.assert_array_equal(golden.logits[b], alone[-1])
        np.testing.assert_array_equal(drv.run(xq[b, :n]).logits, alone[-1])
        np.testing.assert_allclose(fm.forward_recurrent(x[b:b + 1, :n])[0, -1],
                                   fm.forward_conv(x)[b, n - 1], rtol=1e-9, atol=1e-9)
    assert list(fm.predict(x, lengths)) == [int(np.argmax(fm.forward_conv(x[b:b + 1, :n])[0, -1]))
                                            for b, n in enumerate(lengths)]


def test_driver_refuses_bad_lengths():
    _, q, rng = _model()
    drv = Driver(open_transport("golden", batch=2, max_batch=2))
    drv.load(from_compiled(compile_model(q, FabricConfig())))
    xq = q.quantize_input(rng.normal(0, 1, (2, 4, 2)))
    for bad in ([0, 4], [4, 5], [4]):
        with pytest.raises(ValueError, match=r"give 2 integer lengths in 1..4"):
            drv.run(xq, lengths=np.array(bad))


def test_quantize_input_saturates_in_float_and_refuses_nan():
    q = QModel.__new__(QModel)
    q.in_scale = 4.0
    top, bottom = (1 << 23) - 1, -(1 << 23)
    got = q.quantize_input(np.array([1e300, -1e300, np.inf, -np.inf, 0.125, -0.125, 2.0**21]))
    assert got.tolist() == [top, bottom, top, bottom, 1, 0, top]
    with pytest.raises(ValueError, match=r"1 NaN \(first at index \(1,\)\)"):
        q.quantize_input(np.array([0.0, np.nan]))


# -- the CLI alone, from a user's .npz to golden and RTL logits ------------------------------------

@pytest.fixture(scope="module")
def trained(user_npz, tmp_path_factory):
    # training needs torch, the train extra, a test dependency (make test installs it)
    out = tmp_path_factory.mktemp("model") / "m"
    assert main(["train", "--dataset", str(user_npz), "-H", "4", "-N", "2", "-L", "1",
                 "--epochs", "60", "--batch", "16", "--lr", "0.03", "--qaft-epochs", "1",
                 "--no-progress", "--out", str(out)]) == 0
    img = out.parent / "m.nlimg"
    assert main(["compile", f"{out}-q", "-o", str(img), *RTL_FABRIC]) == 0
    return out, img


def test_cli_trains_compiles_and_evaluates_a_user_npz(trained, user_npz, capsys):
    out, img = trained
    meta = json.loads(out.with_name("m-q.json").read_text())["meta"]
    assert meta["labels"] == ["high", "low", "mid"] and meta["dataset"] == "user"
    assert load_image(img).model["labels"] == ["high", "low", "mid"]
    capsys.readouterr()
    assert main(["eval", str(img), "--dataset", str(user_npz)]) == 0
    report = capsys.readouterr().out
    assert "16 test sequences of 4..10 tokens (true lengths)" in report, report
    acc = float(report.split("golden accuracy")[1].split()[0])
    assert acc >= 0.75, f"golden accuracy {acc} on a task the model learns (chance 0.33)"
    assert main(["eval", f"{out}-q", "--dataset", str(user_npz), *RTL_FABRIC]) == 0
    assert "(== quantized, bit for bit)" in capsys.readouterr().out


def test_cli_run_sample_streams_its_true_length(trained, user_npz, capsys):
    _, img = trained
    d = load_npz(user_npz)
    capsys.readouterr()
    assert main(["run", str(img), "--dataset", str(user_npz), "--sample", "2",
                 "--running"]) == 0
    text = capsys.readouterr().out
    n = int(d.len_test[2])
    assert f"label {d.y_test[2]} ({d.labels[d.y_test[2]]!r}), {n} tokens" in text
    assert f"sample 0 token {n - 1}:" in text and f"sample 0 token {n}:" not in text
    assert "classes: 0='high'  1='low'  2='mid'" in text


@pytest.mark.rtl
def test_cli_user_npz_on_verilator_bit_exact(trained, user_npz, capsys):
    _, img = trained
    capsys.readouterr()
    assert main(["eval", str(img), "--dataset", str(user_npz), "--limit", "4",
                 "--backend", "verilator"]) == 0
    report = capsys.readouterr().out
    assert "RTL == golden bit-exact on 4/4 samples" in report, report


def test_eval_maps_labels_through_the_models_and_refuses_unknown_ones():
    from neuroloom.cli.options import CLIError, labels_for_model
    d = from_arrays(np.zeros((3, 2)), ["b", "c", "b"], np.zeros((2, 2)), ["c", "b"])
    assert d.labels == ["b", "c"] and d.y_test.tolist() == [1, 0]
    assert labels_for_model(d, ["b", "c"], d.y_test).tolist() == [1, 0]
    assert labels_for_model(d, ["a", "b", "c"], d.y_test).tolist() == [2, 1]
    with pytest.raises(CLIError, match=r"label\(s\) c that the model does not know \(its "
                                       r"classes: a, b\)"):
        labels_for_model(d, ["a", "b"], d.y_test)


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "D/user.npz", "D"], "is a data set file: give no folder with it"),
    (["--dataset", "D/none.npz"], "none.npz: no such data set file"),
    (["--dataset", "D/bad.npz"], "bad.npz: missing y_test"),
])
def test_cli_dataset_file_errors(user_npz, tmp_path, capsys, argv, message):
    np.savez(user_npz.parent / "bad.npz", X_train=np.zeros((2, 3)), y_train=[0, 1],
             X_test=np.zeros((1, 3)))
    argv = [a.replace("D", str(user_npz.parent)) if a.startswith("D") else a for a in argv]
    assert main(["eval", "IMG.nlimg", *argv]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_training_pools_over_each_true_length_only():
    """The float training forward with lengths is the running logits at each last true token
    (padding masked): what a model streamed at true length computes."""
    import torch

    from neuroloom.firmware.train import _torch_model
    fm, _, rng = _model()
    x = rng.normal(0, 1, (4, 9, 2))
    lengths = np.array([9, 2, 5, 1])
    net = _torch_model(fm).double()
    got = net(torch.tensor(x), torch.tensor(lengths)).detach().numpy()
    want = np.stack([fm.forward_recurrent(x[b:b + 1, :n])[0, -1] for b, n in enumerate(lengths)])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    full = net(torch.tensor(x)).detach().numpy()
    assert np.abs(full[1:] - want[1:]).min() > 1e-3, "without lengths the padding counts"
