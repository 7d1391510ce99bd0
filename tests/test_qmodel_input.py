"""QModel's own small rules: float tokens to payloads (round half up, saturate, NaN refused),
the shape properties of a model without layers, a linear's default bias shift, and
(de)serialisation. The mutation run (``make mutate``) found these reached by no test of the
quantizer or compiler; the expected values are worked out here."""

import numpy as np
import pytest

from neuroloom.contract.config import FabricConfig
from neuroloom.firmware.compiler import random_qmodel
from neuroloom.firmware.qmodel import QLinear, QModel, num_stages, qforward

TOP = (1 << 23) - 1                     # 24-bit payloads


def _model(in_scale=4.0):
    lin = QLinear(np.array([[1]]), np.array([0]), np.array([0]))
    return QModel(lin, [], lin, in_scale, 1.0)


def test_quantize_input_rounds_half_up():
    m = _model(in_scale=4.0)
    x = np.array([0.125, 0.375, -0.125, -0.375, 0.124, 1.0, -2.0]) / 1.0
    np.testing.assert_array_equal(m.quantize_input(x), [1, 2, 0, -1, 0, 4, -8])


def test_quantize_input_saturates_at_the_payload_range():
    m = _model(in_scale=1.0)
    x = np.array([TOP, TOP + 0.4, TOP + 0.5, -TOP - 1, -TOP - 1.5, 1e300, -np.inf, np.inf])
    np.testing.assert_array_equal(m.quantize_input(x),
                                  [TOP, TOP, TOP, -TOP - 1, -TOP - 1, TOP, -TOP - 1, TOP])
    narrow = FabricConfig(state_width=16)
    np.testing.assert_array_equal(m.quantize_input(np.array([40000.0, -40000.0]), narrow),
                                  [32767, -32768])


def test_quantize_input_refuses_nan_and_names_the_first():
    m = _model()
    x = np.zeros((2, 3, 1))
    x[1, 2, 0] = x[1, 1, 0] = np.nan
    with pytest.raises(ValueError, match=r"2 NaN \(first at index \(1, 1, 0\)\)"):
        m.quantize_input(x)


def test_a_model_without_layers():
    m = _model()
    assert m.modes == 0 and m.H == 1 and m.d_in == 1 and m.classes == 1
    assert num_stages(m, "per-mode") == 2 and num_stages(m, "channel") == 2


def test_a_linear_applies_its_bias_unshifted_by_default():
    lin = QLinear(np.array([[0]]), np.array([0]), np.array([5]))
    assert lin.bias_shift == 0
    m = QModel(QLinear(np.array([[1]]), np.array([0]), np.array([0])), [], lin, 1.0, 1.0)
    np.testing.assert_array_equal(qforward(m, np.zeros((1, 3, 1), np.int64))[0, :, 0],
                                  [5, 10, 15])


def test_arrays_round_trip():
    q = random_qmodel(6, 2, 2, d_in=2, classes=4, seed=1)
    back = QModel.from_arrays(*q.to_arrays())
    x = q.quantize_input(np.random.default_rng(0).uniform(-5, 5, (2, 6, 2)))
    np.testing.assert_array_equal(qforward(back, x), qforward(q, x))
    assert back.describe() == q.describe() and back.meta == q.meta
    assert [ly.relu_bias_shift for ly in back.layers] == [ly.relu_bias_shift for ly in q.layers]


@pytest.mark.parametrize("seed", [0, 3])
def test_mappings_agree_when_states_saturate(seed):
    """Inputs large enough that mode states hit the 24-bit bounds (a 30-bit fabric computes
    otherwise): the channel pass saturates exactly where the per-mode pass does."""
    q = random_qmodel(6, 2, 2, d_in=2, classes=4, seed=seed)
    x = q.quantize_input(np.random.default_rng(seed).uniform(-1e5, 1e5, (3, 10, 2)))
    channel = qforward(q, x, mapping="channel")
    np.testing.assert_array_equal(channel, qforward(q, x, mapping="per-mode"))
    wide = FabricConfig(state_width=30, acc_width=48)
    assert np.any(qforward(q, x, wide, mapping="per-mode") != channel)
