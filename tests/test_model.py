"""Float n-S4D (ladder level 1): recurrent and convolutional forms agree to 1e-9."""

import numpy as np
import pytest

from neuroloom.firmware.model import FloatModel, ssm_kernel


@pytest.mark.parametrize("complex_B", [False, True])
def test_recurrent_equals_convolutional(complex_B):
    m = FloatModel.random(d_in=3, H=8, N=4, L=3, classes=5, seed=1, complex_B=complex_B)
    x = np.random.default_rng(2).standard_normal((4, 50, 3))
    rec = m.forward_recurrent(x)
    for fft in (True, False):
        conv = m.forward_conv(x, fft=fft)
        err = np.max(np.abs(rec - conv))
        assert err < 1e-9, f"recurrent vs conv (fft={fft}): max |diff| {err:.3e} >= 1e-9"
    assert rec.shape == (4, 50, 5)


def test_kernel_matches_gu_formula():
    """K = 2 Re(C (exp(dtA)-1)/A . exp(dtA l)) written out per element."""
    ly = FloatModel.random(1, 2, 3, 1, 2, seed=3).layers[0]
    K = ssm_kernel(ly, 7)
    dt = np.exp(ly.log_dt)
    for h in range(2):
        for t in range(7):
            ref = 0.0
            for n in range(3):
                A = -np.exp(ly.log_A_real[h, n]) + 1j * ly.A_imag[h, n]
                ref += 2 * (ly.C[h, n] * (np.exp(dt[h] * A) - 1) / A * np.exp(dt[h] * A * t)).real
            assert abs(K[h, t] - ref) < 1e-12


def test_running_logits_are_cumulative_and_dA_stable():
    m = FloatModel.random(d_in=1, H=4, N=2, L=1, classes=3, seed=0)
    assert np.all(np.abs(m.layers[0].dA) < 1)
    x = np.random.default_rng(0).random((2, 10, 1))
    trace = {}
    out = m.forward_recurrent(x, trace=trace)
    per_token = trace["z0"] @ m.dec_W.T + m.dec_b
    np.testing.assert_allclose(out[:, -1], per_token.sum(axis=1), atol=1e-12)
    assert trace["x0"].shape == (2, 10, 4, 2)
    assert m.neurons() == 4 + (4 * 3 + 8) + 3
