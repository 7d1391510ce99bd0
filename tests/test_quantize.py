"""PTQ (ladder level 1 -> 2): the QModel from quantize() tracks the float model, stays in the
fabric's integer ranges, reports saturation; the shipped model keeps its accuracy. Torch-free."""

from pathlib import Path

import numpy as np
import pytest

from neuroloom.contract.config import FabricConfig
from neuroloom.firmware.compiler import compile_model, from_compiled
from neuroloom.firmware.datasets import digits
from neuroloom.firmware.driver import Driver
from neuroloom.firmware.importer import load_float, load_qmodel
from neuroloom.firmware.model import FloatLayer, FloatModel
from neuroloom.firmware.qmodel import qforward
from neuroloom.firmware.quantize import (
    Scales,
    accumulator_bounds,
    calibrate,
    choose_scales,
    qforward_stats,
    quantize,
)
from neuroloom.firmware.train import accuracy_float, accuracy_q
from neuroloom.sim.transports import GoldenTransport

MODELS = Path(__file__).resolve().parent.parent / "firmware" / "models"


def _check_ranges(q):
    lins = [q.enc, q.dec] + [ly.mix for ly in q.layers]
    for lin in lins:
        assert lin.W.min() >= -128 and lin.W.max() <= 127
        assert lin.shift.min() >= 0 and lin.shift.max() <= 31
        assert np.abs(lin.b).max(initial=0) <= 32767 and 0 <= lin.bias_shift <= 31
    for ly in q.layers:
        for a in (ly.dA, ly.dB, ly.C):
            assert a.min() >= -32768 and a.max() <= 32767
        assert ly.frac == 15 and 0 <= ly.out_shift <= 31
        assert np.all(ly.dA[:, -1] == 0) and np.all(ly.dB[:, -1, 1] == 0)  # the D skip mode


@pytest.mark.parametrize("seed,complex_B", [(0, False), (1, True)])
def test_ptq_tracks_float(seed, complex_B):
    m = FloatModel.random(d_in=2, H=8, N=4, L=2, classes=5, seed=seed, complex_B=complex_B)
    x = np.random.default_rng(seed).random((64, 40, 2))
    q, report = quantize(m, x)
    assert not report.any_saturation, str(report)
    _check_ranges(q)
    f = m.forward_recurrent(x)
    t = q.quantize_input(x)
    out = qforward(q, t)
    stats_out, _ = qforward_stats(q, t)
    np.testing.assert_array_equal(stats_out, out)
    err = np.abs(out / q.out_scale - f).max() / np.abs(f).max()
    assert err < 0.01, f"quantized vs float: relative error {err:.4f} >= 1%"
    assert Scales.from_dict(q.meta["scales"]).to_dict() == q.meta["scales"]


def test_slow_mode_keeps_precision():
    """|dA| = 0.9995 (gain 2000), 1000 tokens of a constant input: 15 fractional bits do."""
    H, N = 2, 1
    dt = np.array([0.0005, 0.0005])
    ly = FloatLayer(np.log(dt), np.zeros((H, N)), np.array([[0.0], [0.3]]),
                    np.ones((H, N), complex), np.zeros(H), np.eye(H), np.zeros(H))
    m = FloatModel(np.ones((H, 1)), np.zeros(H), [ly], np.eye(H), np.zeros(H))
    assert np.allclose(np.abs(ly.dA[0]), 0.9995, atol=1e-6)
    x = np.ones((1, 1000, 1))
    q, report = quantize(m, x)
    assert not report.any_saturation, str(report)
    f = m.forward_recurrent(x)[0, :, 0]
    out = qforward(q, q.quantize_input(x))[0, :, 0] / q.out_scale
    rel = np.abs(out - f).max() / np.abs(f).max()
    # dA is rounded to 2**-16 = 1.5e-5 while 1 - |dA| = 5e-4: the time constant may move ~2.5 %
    assert rel < 0.03, f"relative error {rel:.4f}"


def test_saturation_is_reported():
    m = FloatModel.random(d_in=1, H=4, N=2, L=1, classes=3, seed=2)
    x = np.random.default_rng(0).random((16, 20, 1))
    q, report = quantize(m, x)
    assert not report.any_saturation
    _, loud = qforward_stats(q, q.quantize_input(x * 64))
    assert loud.any_saturation and loud.saturated["layers.0.state"] > 0
    assert "layers.0.state:" in str(loud)
    # a calibration that leaves no headroom saturates on inputs only slightly larger
    tight = choose_scales(m, calibrate(m, x), headroom=0)
    assert tight.z[0] == pytest.approx(8 * choose_scales(m, calibrate(m, x)).z[0])


def test_shipped_model_accuracy():
    f = load_float(MODELS / "digits-float")
    q = load_qmodel(MODELS / "digits-q")
    d = digits()
    fa = accuracy_float(f, d.x_test, d.y_test)
    qa = accuracy_q(q, d.x_test, d.y_test)
    assert fa >= 0.95, f"float test accuracy {fa:.4f} < 0.95"
    assert abs(qa - fa) <= 0.01, f"quantized {qa:.4f} vs float {fa:.4f}: more than 1 point apart"
    # the same accuracies by other paths: the float model's convolutional form, and the golden
    # fabric model running the compiled image (not the accuracies the model's metadata records)
    assert fa == np.mean(np.argmax(f.forward_conv(d.x_test)[:, -1], axis=1) == d.y_test)
    drv = Driver(GoldenTransport())
    drv.load(from_compiled(compile_model(q, FabricConfig())))
    assert qa == np.mean(drv.run(drv.quantize(d.x_test)).predictions == d.y_test)
    assert f.neurons() == q.H + len(q.layers) * (q.H * q.modes + 2 * q.H) + q.classes <= 1024


def test_worst_case_accumulators_fit():
    """A mixing layer whose inputs cancel: calibration maxima alone would let a full-scale
    input wrap the 32-bit accumulator; quantize() adds headroom until the bound fits."""
    m = FloatModel.random(d_in=1, H=16, N=2, L=1, classes=2, seed=0)
    m.enc_W[:] = 1.0
    m.enc_b[:] = 0.0
    ly = m.layers[0]
    for a in (ly.log_dt, ly.log_A_real, ly.A_imag, ly.C, ly.D):
        a[:] = a[0]                                  # 16 identical channels ...
    ly.W[:] = np.where(np.arange(16) % 2, 8.0, -8.0)[None, :]  # ... cancelling in every row
    ly.b[:] = 0.01
    x = np.random.default_rng(0).random((8, 16, 1))
    q, _ = quantize(m, x)
    bounds = accumulator_bounds(q)
    assert max(bounds.values()) <= 2**31 - 1, bounds
