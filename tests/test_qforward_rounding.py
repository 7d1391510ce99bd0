"""qforward == the golden fabric where rounding and saturation decide the result.

Random models with the default shifts (``tests/test_compiler.py``) meet an exact half, the tie
of ``rnd``, about once in 2**14 roundings, so a rounding off by one in qforward's mode states or
output terms can pass them. Here every shift is 1 or 2, so ties are common at every rounding
(synaptic terms, mode states, output terms), and a 12-bit state width makes mode states, sums
and the running logits saturate at both bounds."""

import numpy as np
import pytest

from neuroloom.contract.config import FabricConfig
from neuroloom.firmware.compiler import MODES, compile_model, from_compiled, random_qmodel
from neuroloom.firmware.driver import Driver
from neuroloom.firmware.qmodel import MAPPINGS, QLayer, QLinear, QModel, qforward
from neuroloom.sim.transports import GoldenTransport

CFG = FabricConfig.parse_mesh("2x2", state_width=12)


def _tight_model(seed: int) -> QModel:
    """A random model's shape (H=5, N=3, 2 layers) with shifts 1-2 and small weights and
    coefficients (gains near 1: the values mostly stay off the rails)."""
    q = random_qmodel(5, 3, 2, d_in=2, classes=3, seed=seed, cfg=CFG)
    rng = np.random.default_rng(seed)

    def lin(w: QLinear) -> QLinear:
        return QLinear(rng.integers(-2, 3, w.W.shape), rng.integers(1, 3, w.W.shape[1]),
                       rng.integers(-40, 41, len(w.b)), int(rng.integers(0, 2)))

    layers = []
    for ly in q.layers:
        H, M, _ = ly.dA.shape
        dA = rng.integers(-2, 3, (H, M, 2))                  # frac 2: |dA| <= 0.71
        dA[:, -1] = 0                                        # the D skip mode
        dB = rng.integers(-6, 7, (H, M, 2))
        dB[:, -1, 1] = 0
        C = rng.integers(-2, 3, (H, M, 2))
        layers.append(QLayer(dA, dB, C, 2, int(rng.integers(1, 3)), rng.integers(-30, 31, H),
                             int(rng.integers(0, 2)), lin(ly.mix)))
    return QModel(lin(q.enc), layers, lin(q.dec), q.in_scale, q.out_scale)


@pytest.mark.parametrize("mapping", MAPPINGS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ties_and_saturation_equal_golden(seed, mapping):
    model = _tight_model(seed)
    rng = np.random.default_rng(seed)
    x = rng.integers(-200, 201, (4, 24, 2))
    x[-1] = rng.integers(-2048, 2048, (24, 2))                  # loud: the whole 12-bit range
    # the inputs make ties: synaptic terms of the encoder at exactly half an LSB
    sh = model.enc.shift
    terms = x[..., None, :] * model.enc.W                                  # (B, K, H, d_in)
    assert np.count_nonzero(terms % (1 << sh) == (1 << sh) >> 1) > 20
    ref = qforward(model, x, CFG, mapping=mapping)
    # ... and saturate: a wider fabric computes otherwise
    wide = FabricConfig.parse_mesh("2x2", state_width=20)
    assert np.any(qforward(model, x, wide, mapping=mapping) != ref)
    assert ref.max() == (1 << 11) - 1 or ref.min() == -(1 << 11)
    assert np.mean(np.abs(ref) < (1 << 11) - 1) > 0.5        # mostly off the rails
    drv = Driver(GoldenTransport(max_batch=4))
    drv.load(from_compiled(compile_model(model, CFG, mapping=mapping)))
    for mode in MODES:
        np.testing.assert_array_equal(drv.run(x, mode=mode).running, ref,
                                      err_msg=f"golden ({mode}) != qforward")
