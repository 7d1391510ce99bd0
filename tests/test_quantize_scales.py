"""The quantizer's calibration and scale choice against their documented rules, with expected
values worked out here from the model's definitions (not taken from the quantizer): the
mutation run (``make mutate``) found these rules reached by no test that could tell them from a
neighbouring rule (``tests/test_quantize.py`` checks only that a PTQ model tracks its float
model, which many scale choices do)."""

import numpy as np
import pytest

from neuroloom.contract.config import FabricConfig
from neuroloom.firmware.model import FloatLayer, FloatModel
from neuroloom.firmware.quantize import (
    QuantReport,
    _fit,
    _qlinear,
    calibrate,
    choose_scales,
    mode_params,
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
    Wm = np.array([[127 / 8, 1.0, 0.0], [-2.0, 200.0, 0.0]])
    lin, clipped = _qlinear(Wm, np.zeros(2), 1.0, 1.0, cfg)
    np.testing.assert_array_equal(lin.shift, [3, 0, 0])
    np.testing.assert_array_equal(lin.W[:, 0], [127, -16])
    np.testing.assert_array_equal(lin.W[:, 1], [1, 127])
    assert clipped == 1                                  # 200 does not fit 8 bits
    lin, _ = _qlinear(Wm, np.array([40000.0, 3.0]), 1.0, 1.0, cfg)
    assert lin.bias_shift == 1 and lin.b[0] == 20000
    lin, clipped = _qlinear(Wm, np.array([2.0 ** 60, 0.0]), 1.0, 1.0, cfg)
    assert lin.bias_shift == 31 and lin.b[0] == CMAX and clipped == 2    # 200 and the bias
