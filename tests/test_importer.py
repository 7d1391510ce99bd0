"""Model import: our npz+json format round trips; Gu's S4D state_dict layout imports and gives
the outputs of an independent float implementation; every bad input gets a clear error."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from neuroloom.firmware.importer import (
    SHIPPED_MODEL_DIR,
    ModelImportError,
    import_s4,
    load_float,
    load_model,
    load_qmodel,
    save_float,
    save_qmodel,
)
from neuroloom.firmware.model import FloatModel
from neuroloom.firmware.qmodel import QLayer, QLinear, QModel, qforward

H, N2, D_IN, CLASSES, L = 6, 4, 2, 3, 2


def gu_state_dict(seed=0, prefix="layers", inner="", H=H, N2=N2, d_in=D_IN, classes=CLASSES,
                  L=L):
    """A state_dict laid out like state-spaces/s4 S4D layers (numpy arrays)."""
    rng = np.random.default_rng(seed)
    sd = {"encoder.weight": rng.standard_normal((H, d_in)), "encoder.bias": rng.standard_normal(H),
          "decoder.weight": rng.standard_normal((classes, H)),
          "decoder.bias": rng.standard_normal(classes)}
    for i in range(L):
        p = f"{prefix}.{i}.{inner}"
        sd[p + "kernel.log_dt"] = rng.uniform(np.log(1e-3), np.log(1e-1), H)
        sd[p + "kernel.C"] = rng.standard_normal((H, N2, 2)) / np.sqrt(2)
        sd[p + "kernel.log_A_real"] = np.log(0.5) + 0.1 * rng.standard_normal((H, N2))
        sd[p + "kernel.A_imag"] = np.pi * np.tile(np.arange(N2), (H, 1)) + rng.random((H, N2))
        sd[p + "D"] = rng.standard_normal(H)
        sd[p + "output_linear.0.weight"] = rng.standard_normal((H, H, 1)) / np.sqrt(H)
        sd[p + "output_linear.0.bias"] = rng.standard_normal(H) * 0.1
    return sd


def reference_forward(sd, x, prefix="layers", inner=""):
    """Independent float n-S4D: Gu's kernel, causal convolution by explicit sums, ReLU,
    pointwise output linear, per-token decoder summed over time."""
    Bsz, K, _ = x.shape
    z = np.einsum("bkd,hd->bkh", x, sd["encoder.weight"]) + sd["encoder.bias"]
    for i in range(L):
        p = f"{prefix}.{i}.{inner}"
        dt = np.exp(sd[p + "kernel.log_dt"])
        C = sd[p + "kernel.C"][..., 0] + 1j * sd[p + "kernel.C"][..., 1]
        A = -np.exp(sd[p + "kernel.log_A_real"]) + 1j * sd[p + "kernel.A_imag"]
        dtA = A * dt[:, None]
        Cp = C * (np.exp(dtA) - 1) / A
        kern = np.array([[2 * np.sum(Cp[h] * np.exp(dtA[h] * t)).real for t in range(K)]
                         for h in range(H)])
        y = np.zeros_like(z)
        for t in range(K):
            for s in range(t + 1):
                y[:, t] += kern[:, t - s] * z[:, s]
        y += sd[p + "D"] * z
        a = np.maximum(y, 0)
        z = a @ sd[p + "output_linear.0.weight"][:, :, 0].T + sd[p + "output_linear.0.bias"]
    return np.cumsum(z @ sd["decoder.weight"].T + sd["decoder.bias"], axis=1)


X = np.random.default_rng(9).standard_normal((3, 12, D_IN))


@pytest.mark.parametrize("prefix,inner,wrap", [("layers", "", ""), ("layers", "layer.", "model."),
                                               ("s4_layers", "", "module.")])
def test_gu_layout_npz_matches_independent_reference(tmp_path, prefix, inner, wrap):
    sd = gu_state_dict(1, prefix, inner)
    np.savez(tmp_path / "ck.npz", **{wrap + k: v for k, v in sd.items()})
    m = import_s4(tmp_path / "ck.npz", activation="relu", residual=False)
    ref = reference_forward(sd, X, prefix, inner)
    for out in (m.forward_recurrent(X), m.forward_conv(X)):
        assert np.max(np.abs(out - ref)) < 1e-9, np.max(np.abs(out - ref))
    assert (m.H, m.N, len(m.layers), m.classes) == (H, N2, L, CLASSES)


def test_gu_layout_torch_checkpoint(tmp_path):
    sd = gu_state_dict(2)
    tsd = {k: torch.tensor(v, dtype=torch.float32) for k, v in sd.items()}
    # Gu stores C as a real view of a complex parameter; a complex tensor is accepted as well
    tsd["layers.0.kernel.C"] = torch.view_as_complex(torch.tensor(sd["layers.0.kernel.C"]))
    torch.save({"model": tsd, "neuroloom": {"activation": "relu"}}, tmp_path / "ck.pt")
    m = import_s4(tmp_path / "ck.pt")
    sd32 = {k: v.astype(np.float32).astype(np.float64) for k, v in sd.items()}
    sd32["layers.0.kernel.C"] = sd["layers.0.kernel.C"]
    assert np.max(np.abs(m.forward_conv(X) - reference_forward(sd32, X))) < 1e-9
    torch.save(tsd, tmp_path / "bare.pt")
    assert import_s4(tmp_path / "bare.pt", activation="relu").H == H


def test_float_and_qmodel_round_trip(tmp_path):
    m = FloatModel.random(2, 4, 3, 2, 5, seed=4, complex_B=True)
    m.meta = {"task": "x"}
    save_float(m, tmp_path / "f")
    m2 = load_model(tmp_path / "f.json")
    x = np.random.default_rng(0).random((2, 7, 2))
    np.testing.assert_array_equal(m.forward_recurrent(x), m2.forward_recurrent(x))
    assert m2.meta == {"task": "x"}
    assert json.loads((tmp_path / "f.json").read_text())["format"] == "neuroloom-float-s4d"

    rng = np.random.default_rng(1)

    def lin(o, i):
        return QLinear(rng.integers(-128, 128, (o, i)), rng.integers(0, 8, i),
                       rng.integers(-99, 99, o), 2)

    q = QModel(lin(3, 2), [QLayer(rng.integers(-9000, 9000, (3, 4, 2)),
                                  rng.integers(-9000, 9000, (3, 4, 2)),
                                  rng.integers(-9000, 9000, (3, 4, 2)), 15, 14,
                                  rng.integers(-5, 5, 3), 1, lin(3, 3))],
               lin(4, 3), 256.0, 1024.0, {"a": 1})
    save_qmodel(q, tmp_path / "q.npz")
    q2 = load_qmodel(tmp_path / "q")
    t = rng.integers(-500, 500, (2, 5, 2))
    np.testing.assert_array_equal(qforward(q, t), qforward(q2, t))
    assert isinstance(load_model(tmp_path / "q"), QModel) and q2.meta == {"a": 1}


def _err(tmp_path, sd, match, **kw):
    np.savez(tmp_path / "bad.npz", **sd)
    kw.setdefault("activation", "relu")
    with pytest.raises(ModelImportError, match=match):
        import_s4(tmp_path / "bad.npz", **kw)


def test_rejects_what_the_fabric_cannot_run(tmp_path):
    sd = gu_state_dict()
    _err(tmp_path, {**sd, "norms.0.weight": np.ones(H), "norms.0.bias": np.zeros(H)},
         r"norms.0.(weight|bias)( \(and 1 more norm keys\))?: LayerNorm is not supported on the "
         r"fabric.*retrain without normalization")
    glu = {**sd, "layers.1.output_linear.0.weight": np.zeros((2 * H, H, 1))}
    _err(tmp_path, glu, r"layers.1.output_linear.0.weight has shape \(12, 6, 1\): a GLU output "
                        r"linear.*retrain with a plain H x H output linear")
    _err(tmp_path, sd, r"activation is not recorded.*GELU.*activation='relu'", activation=None)
    _err(tmp_path, sd, r"activation 'gelu' is not supported.*retrain with ReLU", activation="gelu")
    _err(tmp_path, sd, r"residual connections are not supported", residual=True)
    ex = {k.replace("layers.", "s4_layers."): v for k, v in sd.items()}
    _err(tmp_path, ex, r"s4_layers.\* is the layout of Gu's example.py.*residual=False")


def test_every_problem_of_a_checkpoint_is_reported_together(tmp_path):
    """LayerNorm, a GLU output linear, a residual flag and a missing activation: one error
    naming all four, numbered, on one line."""
    sd = {**gu_state_dict(), "norms.0.weight": np.ones(H), "norms.0.bias": np.zeros(H),
          "layers.1.output_linear.0.weight": np.zeros((2 * H, H, 1))}
    np.savez(tmp_path / "many.npz", **sd)
    with pytest.raises(ModelImportError) as ei:
        import_s4(tmp_path / "many.npz", residual=True)
    msg = str(ei.value)
    assert msg.startswith(f"{tmp_path / 'many.npz'}: 4 problems: (1) norms.0.") and "\n" not in msg
    for needle in ("(1) norms.0.weight (and 1 more norm keys): LayerNorm is not supported",
                   "(2) residual connections are not supported",
                   "(3) layers.1.output_linear.0.weight has shape (12, 6, 1): a GLU",
                   "(4) the activation is not recorded"):
        assert needle in msg, (needle, msg)


def test_rejects_bad_checkpoints(tmp_path):
    sd = gu_state_dict()
    _err(tmp_path, {k: v for k, v in sd.items() if k != "layers.1.kernel.A_imag"},
         r"missing key 'layers.1.kernel.A_imag'")
    _err(tmp_path, {k: v for k, v in sd.items() if k != "decoder.bias"},
         r"missing key 'decoder.bias'")
    _err(tmp_path, {**sd, "layers.0.kernel.log_dt": np.zeros(H + 1)},
         r"layers.0.kernel.log_dt has shape \(7,\), expected \(6,\)")
    _err(tmp_path, {**sd, "layers.0.kernel.C": np.zeros((H, N2))},
         r"layers.0.kernel.C has shape \(6, 4\), expected \(6, N/2, 2\)")
    nan = sd["layers.1.D"].copy()
    nan[2] = np.nan
    _err(tmp_path, {**sd, "layers.1.D": nan}, r"layers.1.D has 1 non-finite value\(s\)")
    _err(tmp_path, {**sd, "decoder.weight": np.full((CLASSES, H), np.inf)},
         r"decoder.weight has 18 non-finite")
    unstable = sd["layers.0.kernel.log_A_real"].copy()
    unstable[1, 2] = -800.0
    _err(tmp_path, {**sd, "layers.0.kernel.log_A_real": unstable},
         r"layers.0.kernel.log_A_real: unstable mode \[1, 2\]: \|dA\| .* = 1, expected < 1")
    _err(tmp_path, {**sd, "layers.0.foo": np.zeros(2)}, r"unexpected key 'layers.0.foo'")
    _err(tmp_path, {k: v for k, v in sd.items() if not k.startswith("layers")},
         r"no S4D layers found")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelImportError, match=r"junk.npz: not a .npz archive of numeric "
                                               r"arrays") as ei:
        import_s4(tmp_path / "junk.npz", activation="relu")
    assert "pickle" not in str(ei.value), ei.value              # numpy's unsafe advice
    np.savez(tmp_path / "obj.npz", a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ModelImportError, match=r"obj.npz: holds object \(pickled\) arrays, "
                                               r"which NeuroLoom never loads") as ei:
        import_s4(tmp_path / "obj.npz", activation="relu")
    assert "allow_pickle" not in str(ei.value), ei.value
    (tmp_path / "junk.pth").write_bytes(bytes(range(7, 107)))
    with pytest.raises(ModelImportError, match=r"junk.pth: not a torch checkpoint NeuroLoom can "
                                               r"read.*weights_only=True and never runs code"
                       ) as ei:
        import_s4(tmp_path / "junk.pth", activation="relu")
    assert "weights_only=False" not in str(ei.value) and "\n" not in str(ei.value), ei.value
    with pytest.raises(ModelImportError, match=r"nope.pt: no such file"):
        import_s4(tmp_path / "nope.pt", activation="relu")


def test_own_format_errors(tmp_path):
    with pytest.raises(ModelImportError, match=r"m.npz: no such file"):
        load_float(tmp_path / "m")
    save_float(FloatModel.random(1, 2, 2, 1, 2), tmp_path / "m")
    with pytest.raises(ModelImportError, match=r"format is 'neuroloom-float-s4d', expected "
                                               r"'neuroloom-qmodel'"):
        load_qmodel(tmp_path / "m")
    meta = json.loads((tmp_path / "m.json").read_text())
    (tmp_path / "m.json").write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(ModelImportError, match=r"format version 99 is not supported"):
        load_float(tmp_path / "m")
    (tmp_path / "m.json").write_text("{")
    with pytest.raises(ModelImportError, match=r"m.json: not valid JSON"):
        load_model(tmp_path / "m")


def test_torch_checkpoint_without_torch(tmp_path, monkeypatch):
    (tmp_path / "ck.pt").write_bytes(b"\x80\x02}q\x00.")
    monkeypatch.setitem(__import__("sys").modules, "torch", None)
    with pytest.raises(ModelImportError, match=r"ck.pt: reading a torch checkpoint needs torch "
                                               r"\(pip install 'neuroloom\[train\]'\); or save "
                                               r"the state_dict as .npz"):
        import_s4(tmp_path / "ck.pt", activation="relu")


def test_pooling_is_an_explicit_option(tmp_path):
    np.savez(tmp_path / "ck.npz", **gu_state_dict())
    m = import_s4(tmp_path / "ck.npz", activation="relu", pooling="sum")
    assert m.meta["pooling"] == "sum"
    assert import_s4(tmp_path / "ck.npz", activation="relu").meta["pooling"] == "sum"
    save_float(FloatModel.random(1, 2, 2, 1, 2), tmp_path / "m")
    assert isinstance(load_model(tmp_path / "m", pooling="sum"), FloatModel)
    for bad in ("mean", "max", "last", None):
        msg = rf"pooling {bad!r} is not supported; the fabric runs 'sum'"
        with pytest.raises(ModelImportError, match=msg):
            import_s4(tmp_path / "ck.npz", activation="relu", pooling=bad)
        with pytest.raises(ModelImportError, match=msg):
            load_model(tmp_path / "m", pooling=bad)
    with pytest.raises(ModelImportError, match=r"mean pooling runs with 'sum'.*same argmax"):
        import_s4(tmp_path / "ck.npz", activation="relu", pooling="mean")


def test_models_doc_worked_example_imports_the_shipped_model(tmp_path, monkeypatch):
    doc = (Path(__file__).resolve().parent.parent / "docs" / "models.md").read_text()
    script = re.search(r"```python\n(# make_gu_checkpoint\.py.*?)```", doc, re.S)[1]
    monkeypatch.chdir(tmp_path)
    exec(compile(script, "make_gu_checkpoint.py", "exec"), {})
    imported = import_s4(tmp_path / "gu-digits.npz", activation="relu")
    shipped = load_float(SHIPPED_MODEL_DIR / "digits-float")
    x = np.random.default_rng(3).random((2, 64, 1))
    np.testing.assert_array_equal(imported.forward_recurrent(x), shipped.forward_recurrent(x))
