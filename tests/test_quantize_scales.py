"""The quantizer's calibration and scale choice against their documented rules, with expected
values worked out here from the model's definitions (not taken from the quantizer): the
mutation run (``make mutate``) found these rules reached by no test that could tell them from a
neighbouring rule (``tests/test_quantize.py`` checks only that a PTQ model tracks its float
model, which many scale choices do)."""

import numpy as np
import pytest

from neuroloom.contract.config import FabricConfig
from neuroloom.firmware.compiler import random_qmodel
from neuroloom.firmware.model import FloatLayer, FloatModel
from neuroloom.firmware.qmodel import QLinear, QModel, qforward
from neuroloom.firmware.quantize import (
    QuantReport,
    Scales,
    _fit,
    _qlinear,
    accumulator_bounds,
    calibrate,
    choose_scales,
    mode_params,
    qforward_stats,
    quantize,
    quantize_with_scales,
)

CFG = FabricConfig()
W = CFG.state_width                     # 24
CMAX, FRAC = (1 << (CFG.coef_width - 1)) - 1, CFG.coef_width - 1


def _model(H=2, N=2, D=(0.5, 0.0), B=None, seed=0):
    """One layer, the encoder the identity on channel 0 and 0.5x on channel 1."""
    rng = np.random.default_rng(seed)
    ly = FloatLayer(np.log(np.full(H, 0.1)), np.log(rng.uniform(0.5, 1.0, (H, N))),
                    rng.uniform(0, 3, (H, N)), rng.normal(size=(H, N)) + 1j * rng.normal(
                        size=(H, N)), np.asarray(D, float), np.eye(H), np.zeros(H), B)
    enc = np.array([[1.0], [0.5]])[:H]
    return FloatModel(enc, np.zeros(H), [ly], np.ones((3, H)), np.zeros(3))


def test_calibrate_one_token_maxima():
    """One token from the zero state: x = dB u, each mode outputs 2 Re(C' x), the skip D u;
    the layer's range is the largest of the positive pre-activation, any one mode's |output|
    and the skip's |output| (a mode and the skip are separate neurons on the fabric)."""
    m = _model()
    ly = m.layers[0]
    u_vals = np.array([0.3, -0.8])
    tokens = u_vals[:, None, None]                               # (B=2, K=1, d_in=1)
    r = calibrate(m, tokens)
    u = u_vals[:, None] * np.array([1.0, 0.5])[None, :]          # (B, H) layer input
    x = ly.dB[None] * u[:, :, None]                              # (B, H, N)
    modes = 2 * np.abs((ly.Cp[None] * x).real)                   # (B, H, N)
    skip = np.abs(u * ly.D[None])                                # (B, H)
    pre = 2 * (ly.Cp[None] * x).real.sum(axis=2) + u * ly.D[None]
    expected_y = np.maximum(np.maximum(pre, 0).max(axis=0),
                            np.maximum(modes.max(axis=(0, 2)), skip.max(axis=0)))
    np.testing.assert_allclose(r["y"][0], expected_y, rtol=1e-12)
    assert r["in"] == 0.8
    np.testing.assert_allclose(r["z"][0], 0.8)
    xmax = np.maximum(np.abs(x.real), np.abs(x.imag)).max(axis=0)
    np.testing.assert_allclose(r["x"][0], np.concatenate([xmax, skip.max(axis=0)[:, None]], 1),
                               rtol=1e-12)


def test_calibrate_small_positive_preactivation_is_its_own_range():
    """All values below 1: the positive pre-activation (two modes adding up) sets the range,
    not a floor of 1."""
    m = _model(N=2, D=(0.0, 0.0), B=np.ones((2, 2)))
    ly = m.layers[0]
    ly.C[:] = 0.02 / ly.Cp * ly.C                                # C' = 0.02 for every mode
    np.testing.assert_allclose(ly.Cp, 0.02)
    r = calibrate(m, np.full((1, 1, 1), 0.5))
    u = np.array([0.5, 0.25])
    np.testing.assert_allclose(r["y"][0], 2 * 0.02 * u * 2, rtol=1e-12)   # two modes summed


def _ranges(H=2, M=3, **over):
    rng = np.random.default_rng(3)
    r = {"in": 0.7, "z": [2.5, 4.0], "out": 9.0,
         "x": [rng.uniform(0.5, 2.0, (H, M))], "y": [rng.uniform(0.5, 2.0, H)]}
    r.update(over)
    return r


@pytest.mark.parametrize("headroom", [0, 3])
def test_choose_scales_puts_each_maximum_at_the_target(headroom):
    """Every calibration maximum lands on 2**(W-1-headroom): exactly for z, y and the output,
    at the largest power of two not above it for the input (a shift on the host)."""
    m = _model()
    target = 2.0 ** (W - 1 - headroom)
    r = _ranges()
    s = choose_scales(m, r, CFG, headroom)
    assert s.in_scale * r["in"] <= target < 2 * s.in_scale * r["in"]
    assert np.log2(s.in_scale) == int(np.log2(s.in_scale))
    np.testing.assert_allclose(np.array(s.z) * r["z"], target, rtol=1e-12)
    assert s.out_scale * r["out"] == pytest.approx(target, rel=1e-12)
    np.testing.assert_allclose(s.y[0] * r["y"][0], target, rtol=1e-12)


def test_choose_scales_state_scale_is_the_tighter_of_range_and_coefficient():
    """A mode's state scale sx keeps its range within the target and its input coefficient
    dB sx / sz within the coefficient range, and meets one of the two exactly."""
    m = _model(B=np.array([[1.0, 1e-4], [3.0, 0.5]]))
    r = _ranges()
    s = choose_scales(m, r, CFG)
    target = 2.0 ** (W - 1 - 3)
    _, dB, _ = mode_params(m)[0]
    dbmax = np.maximum(np.abs(dB.real), np.abs(dB.imag))                # (H, M)
    sx, sz = s.x[0], s.z[0]
    by_range = sx * r["x"][0] / target                                  # <= 1
    by_coef = dbmax * sx / sz * 2.0 ** FRAC / CMAX                      # <= 1
    assert np.all(by_range <= 1 + 1e-12) and np.all(by_coef <= 1 + 1e-12)
    np.testing.assert_allclose(np.maximum(by_range, by_coef), 1.0, rtol=1e-12)
    assert np.any(by_coef > by_range + 1e-6) and np.any(by_range > by_coef + 1e-6)


def test_choose_scales_zero_ranges_and_dead_modes():
    """A stage that never moves (range 0) gets scale 1; a mode with dB = 0 and no range never
    leaves 0 and gets the scale that makes its readout coefficient 2 |C'| sy / sx about 1; a
    channel whose range is tiny next to the layer's largest is scaled as if it were 1e-3 of
    it (no huge gain on noise)."""
    B = np.array([[0.0, 1.0], [1.0, 1.0]])
    m = _model(B=B, D=(0.0, 0.5))
    xr = np.array([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0]])       # mode (0, 0) dead; (0, 2) the skip
    r = _ranges(z=[0.0, 4.0], out=0.0, x=[xr], y=[np.array([1e-9, 2.0])])
    s = choose_scales(m, r, CFG)
    target = 2.0 ** (W - 1 - 3)
    assert s.z[0] == 1.0 and s.out_scale == 1.0
    np.testing.assert_allclose(s.y[0], [target / 2e-3, target / 2.0], rtol=1e-12)
    _, _, Cp = mode_params(m)[0]
    np.testing.assert_allclose(s.x[0][0, 0], 2 * np.abs(Cp[0, 0]) * s.y[0][0], rtol=1e-12)
    # the skip of channel 0 has D = 0 and range 0: dead as well
    np.testing.assert_allclose(s.x[0][0, 2], 2 * np.abs(Cp[0, 2]) * s.y[0][0], rtol=1e-12)
    assert np.all(np.isfinite(s.x[0])) and np.all(s.x[0] > 0)


def test_quant_report_of_nothing_is_clean():
    rep = QuantReport()
    assert not rep.any_saturation
    assert str(rep) == "saturated values: none; clipped parameters: 0"
    rep.weight_clipped = 1
    assert rep.any_saturation
    rep = QuantReport(saturated={"enc.out": 0, "dec.out": 2}, total={"enc.out": 5, "dec.out": 7})
    assert rep.any_saturation and str(rep) == ("saturated values: dec.out: 2/7; clipped "
                                               "parameters: 0")


def test_fit_rounds_half_up_clips_and_counts():
    q, clipped = _fit(np.array([-129.2, -128.5, -128.0, 0.5, 126.5, 127.49, 127.5]), -128, 127)
    np.testing.assert_array_equal(q, [-128, -128, -128, 1, 127, 127, 127])
    assert clipped == 2                                  # -129 and 128 before the clip
    assert _fit(np.array([-128.0, 127.0]), -128, 127)[1] == 0


def test_qlinear_shift_is_the_largest_that_fits_the_weight_width():
    """Each input column gets the largest shift s >= 0 with round(max |w| 2**s) <= 127 (8-bit
    weights): a column whose largest weight is 127/8 takes s = 3 exactly, one above 127.5
    takes 0 and is clipped; a bias too large for the 16-bit coefficient shifts right until it
    fits, at most 31."""
    cfg = CFG
    Wm = np.array([[127 / 8, 1.0, 0.0, 1e-12], [-2.0, 200.0, 0.0, 0.0],
                   [0.0, -300.0, 0.0, 0.0]])
    lin, clipped = _qlinear(Wm, np.zeros(3), 1.0, 1.0, cfg)
    np.testing.assert_array_equal(lin.shift, [3, 0, 0, 31])      # a zero column: 0
    np.testing.assert_array_equal(lin.W[:, 0], [127, -16, 0])
    np.testing.assert_array_equal(lin.W[:, 1], [1, 127, -128])    # clipped to -128..127
    assert lin.bias_shift == 0 and np.all(lin.b == 0)
    assert clipped == 2                                  # 200 and -300 do not fit 8 bits
    lin, _ = _qlinear(Wm, np.array([40000.0, 3.0, -32768.0]), 1.0, 1.0, cfg)
    assert lin.bias_shift == 1 and list(lin.b) == [20000, 2, -16384]
    lin, clipped = _qlinear(Wm, np.array([2.0 ** 60, 0.0, -(2.0 ** 60)]), 1.0, 1.0, cfg)
    assert lin.bias_shift == 31 and list(lin.b) == [CMAX, 0, -CMAX - 1]
    assert clipped == 4                                  # and both biases


def _one_layer_scales(m, sx=0.5, sy=0.5):
    """Scales that keep the encoder, mixing and decoder weights as they are (each linear's
    output scale equals its input's) and dB sx / sz = sx."""
    H, M = m.H, m.layers[0].N + 1
    return Scales(1.0, [1.0, sy], [np.full((H, M), sx)], [np.full(H, sy)], sy)


def _set_cp(m, cp):
    """Make the first layer's C' = ``cp`` (H, N) (C = C' A / (dA - 1))."""
    ly = m.layers[0]
    ly.C = np.asarray(cp, complex) * ly.A / (ly.dA - 1.0)
    np.testing.assert_allclose(ly.Cp, cp, rtol=1e-9, atol=1e-12)


def _mode_coefficients(m, sx, sy):
    _, _, Cp = mode_params(m)[0]
    c = 2 * Cp * sy / sx
    return np.stack([c.real, -c.imag], axis=-1)


def test_state_coefficients_are_dA_and_dB_in_q15():
    """dA and dB sx / sz at 15 fractional bits, rounded half up (|error| <= 2**-16), even for
    dA next to -1 (the most negative coefficient, -32768, must stay reachable)."""
    m = _model(B=np.array([[0.3, -0.7], [0.5, 1.0]]))
    ly = m.layers[0]
    ly.log_dt[:] = 0.0
    ly.log_A_real[0, 0], ly.A_imag[0, 0] = np.log(1e-5), np.pi      # dA = -0.99999
    q, clipped = quantize_with_scales(m, _one_layer_scales(m), CFG)
    dA, dB, _ = mode_params(m)[0]
    assert q.layers[0].frac == 15 and clipped == 0
    pairs = np.stack([dA.real, dA.imag], -1)
    assert np.abs(q.layers[0].dA / 2.0 ** 15 - pairs).max() <= 2.0 ** -16 + 1e-15
    assert q.layers[0].dA[0, 0, 0] == -32768
    pairs = np.stack([(dB * 0.5).real, (dB * 0.5).imag], -1)         # sx / sz = 0.5
    assert np.abs(q.layers[0].dB / 2.0 ** 15 - pairs).max() <= 2.0 ** -16 + 1e-15


@pytest.mark.parametrize("peak, shift", [(32767 / 8, 3), (32767.2 / 8, 3), (1e-9, 31),
                                         (5e4, 0)])
def test_readout_shift_is_the_largest_that_fits_the_coefficients(peak, shift):
    """The readout coefficients 2 C' sy / sx (Re, -Im) take the largest shift in 0..31 with
    round(peak 2**shift) <= 32767; a peak beyond the range keeps shift 0 and is clipped to
    -32768..32767 and counted."""
    m = _model(N=2, D=(0.0, 0.0))
    _set_cp(m, np.array([[0.5, 0.01], [-0.5, 0.02 + 0.01j]]))     # peak of 2 C': 1 (and skip)
    sx, sy = 0.5, 0.5 * peak
    q, clipped = quantize_with_scales(m, _one_layer_scales(m, sx, sy), CFG)
    ly = q.layers[0]
    assert ly.out_shift == shift
    want = np.floor(_mode_coefficients(m, sx, sy) * 2.0 ** shift + 0.5)
    np.testing.assert_array_equal(ly.C, np.clip(want, -32768, 32767))
    assert clipped == int(np.count_nonzero((want < -32768) | (want > 32767)))
    assert (clipped > 0) == (peak > 32767.5)


def test_clipped_parameters_are_counted_in_every_part():
    """Clipped decoder, mixing and readout parameters add up (none subtracts)."""
    m = _model(N=2, D=(0.0, 0.0))
    _set_cp(m, np.array([[3e4, 0.0], [0.0, 0.0]]))                   # 1 readout value
    m.layers[0].W = np.array([[300.0, 0.0], [0.0, 1.0]])            # 1 mixing weight
    m.dec_W = np.array([[400.0, 0.0], [0.0, 500.0], [0.0, 0.0]])    # 2 decoder weights
    _, clipped = quantize_with_scales(m, _one_layer_scales(m), CFG)
    assert clipped == 1 + 1 + 2


def test_quantize_uses_3_bits_of_headroom_by_default():
    m = _model()
    x = np.random.default_rng(5).random((4, 6, 1))
    q, _ = quantize(m, x)
    s = choose_scales(m, calibrate(m, x), CFG, headroom=3)
    assert Scales.from_dict(q.meta["scales"]).z == s.z


def test_accumulator_bound_is_every_input_at_full_scale():
    """Worst case of a linear: every input at +-2**23 (24-bit payloads), |w| rounded by its
    input's shift, summed per output; the largest output."""
    lin = QLinear(np.array([[1, -2, 0], [3, 0, -127]]), np.array([0, 1, 7]), np.zeros(2), 0)
    q = QModel(lin, [], QLinear(np.array([[5]]), np.array([2]), np.zeros(1), 0), 1.0, 1.0)
    b = accumulator_bounds(q, CFG)
    p = 2 ** 23
    assert b["enc"] == max(p + p, 3 * p + 127 * p // 128)
    assert b["dec"] == 5 * p // 4


def test_saturation_report_counts_every_value():
    """qforward_stats counts how many values each stage computed (B x K x width)."""
    m = _model()
    x = np.random.default_rng(6).random((3, 5, 1))
    q, _ = quantize(m, x)
    _, rep = qforward_stats(q, q.quantize_input(x))
    assert rep.total["enc.out"] == 3 * 5 * 2
    assert rep.total["layers.0.state"] == 2 * 3 * 5 * 2 * 3      # re and im, H x M modes
    assert rep.total["dec.out"] == 3 * 5 * 3
    assert rep.total["integrator"] == 3 * 5 * 3


def _identical_channels(L, H=8, seed=0):
    """A model whose channels are all alike (so alternating +-w rows cancel exactly)."""
    m = FloatModel.random(d_in=1, H=H, N=2, L=L, classes=2, seed=seed)
    m.enc_W[:] = 1.0
    m.enc_b[:] = 0.0
    for ly in m.layers:
        for a in (ly.log_dt, ly.log_A_real, ly.A_imag, ly.C, ly.D):
            a[:] = a[0]
        ly.W[:] = 1.0 / H
        ly.b[:] = 0.0
    return m


@pytest.mark.parametrize("where", ["enc", "dec", "layers.0.mix"])
def test_accumulator_headroom_goes_to_the_offending_linear(where):
    """A linear whose worst case would wrap the accumulator (its rows cancel on the data, so
    its calibrated output range is small) gets one more bit of output headroom at a time until
    it fits: only the scale after it (the output scale, the second layer's input) shrinks, by
    whole bits."""
    m = _identical_channels(L=2)
    alternating = np.where(np.arange(8) % 2, 8.0, -8.0)[None, :]
    x = np.random.default_rng(0).random((8, 16, 1))
    if where == "enc":           # two equal inputs, weights cancelling on them
        m.enc_W = np.array([[30.0, -15.0, -15.0]] * 8)
        m.enc_b[:] = 1e-6
        x = np.repeat(x, 3, axis=2)
    elif where == "dec":
        m.dec_W[:] = alternating
        m.dec_b[:] = 1e-6
    else:
        m.layers[0].W[:] = alternating
        m.layers[0].b[:] = 0.01
    plain = choose_scales(m, calibrate(m, x), CFG)
    q, _ = quantize(m, x)
    assert max(accumulator_bounds(q).values()) <= 2 ** 31 - 1
    s = Scales.from_dict(q.meta["scales"])
    shrunk = [plain.out_scale / s.out_scale] + [a / b for a, b in zip(plain.z, s.z)]
    which = {"dec": 0, "enc": 1, "layers.0.mix": 2}[where]         # out_scale, z[0], z[1]
    for k, r in enumerate(shrunk):
        if k == which:
            assert r >= 2 and np.log2(r) == int(np.log2(r)), shrunk
        elif where != "enc":         # (a tiny encoder output makes the decoder's small too)
            assert r == 1.0, shrunk


def test_quantize_with_scales_uses_the_fabric_widths_it_is_given():
    """A 12-bit coefficient fabric: 11 fractional bits, coefficients within +-2047."""
    cfg = FabricConfig(coef_width=12)
    m = _model()
    q, _ = quantize_with_scales(m, _one_layer_scales(m), cfg)
    ly = q.layers[0]
    assert ly.frac == 11
    for a in (ly.dA, ly.dB, ly.C):
        assert a.min() >= -2048 and a.max() <= 2047
    dA = mode_params(m)[0][0]
    assert np.abs(ly.dA / 2.0 ** 11 - np.stack([dA.real, dA.imag], -1)).max() <= 2.0 ** -12


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_qforward_stats_is_qforward_with_relu_biases(seed):
    """The saturation counter computes what the reference computes, also for a model with
    ReLU biases (quantize() leaves them 0) and large inputs that saturate."""
    q = random_qmodel(6, 2, 2, d_in=2, classes=4, seed=seed)
    assert np.any(q.layers[0].relu_bias != 0)
    t = q.quantize_input(np.random.default_rng(seed).uniform(-1, 1, (3, 12, 2)) * 10 ** seed)
    out, rep = qforward_stats(q, t)
    np.testing.assert_array_equal(out, qforward(q, t))
    # a fabric with 30-bit state and 48-bit accumulators computes the same: nothing saturated
    # or wrapped at 24 bits, so the report must count nothing
    wide = FabricConfig(state_width=30, acc_width=48)
    np.testing.assert_array_equal(qforward(q, t, wide), out)
    assert not rep.any_saturation, str(rep)


@pytest.mark.parametrize("bias, shift", [(32767.0, 0), (32767.4, 0), (32767.5, 1), (32768.0, 1),
                                         (-32768.0, 1)])
def test_bias_shift_boundary(bias, shift):
    """A bias that rounds to at most 32767 in magnitude needs no shift; one more does."""
    lin, clipped = _qlinear(np.eye(1), np.array([bias]), 1.0, 1.0, CFG)
    assert lin.bias_shift == shift and clipped == 0
    assert lin.b[0] == np.floor(bias / 2 ** shift + 0.5)


def test_clipped_state_input_coefficients_are_counted():
    """dB sx / sz beyond the Q15 range is clipped and counted with the rest."""
    m = _model(N=2, D=(0.0, 0.0), B=np.array([[1.0, 0.25], [-1.0, 0.0]]))
    _, clipped = quantize_with_scales(m, _one_layer_scales(m, sx=2.0, sy=2.0), CFG)
    assert clipped == 2                                   # |dB| = 1 at x2: 65536 > 32767
