"""QAFT: the torch fake-quantized forward equals qforward bit for bit; training runs.

torch comes with the ``train`` extra, which ``make test`` installs: a missing torch is an error
here, not a skip that would hide these checks."""

import numpy as np
import pytest
import torch

from neuroloom.firmware.importer import load_float, load_qmodel
from neuroloom.firmware.model import FloatModel
from neuroloom.firmware.qaft import QAFTModel
from neuroloom.firmware.qmodel import qforward
from neuroloom.firmware.quantize import calibrate, choose_scales, quantize_with_scales
from neuroloom.firmware.train import train


@pytest.mark.parametrize("seed,complex_B", [(0, False), (5, True)])
def test_qaft_forward_is_qforward(seed, complex_B):
    m = FloatModel.random(d_in=2, H=6, N=3, L=2, classes=4, seed=seed, complex_B=complex_B)
    rng = np.random.default_rng(seed)
    x = rng.random((8, 25, 2))
    scales = choose_scales(m, calibrate(m, x), headroom=1)
    net = QAFTModel(m, scales)
    q = net.to_qmodel()
    ref_q, _ = quantize_with_scales(m, scales)
    for a, b in [(q.enc.W, ref_q.enc.W), (q.dec.shift, ref_q.dec.shift)] + \
            [(la.dB, lb.dB) for la, lb in zip(q.layers, ref_q.layers)] + \
            [(la.C, lb.C) for la, lb in zip(q.layers, ref_q.layers)] + \
            [(la.mix.b, lb.mix.b) for la, lb in zip(q.layers, ref_q.layers)]:
        np.testing.assert_array_equal(a, b)
    # inputs beyond the calibration range: saturation paths must match too
    t = q.quantize_input(np.concatenate([x, 6 * x]))
    ref = qforward(q, t)
    out_f = net(torch.tensor(t, dtype=torch.float64))
    np.testing.assert_array_equal(out_f.detach().numpy(), ref)
    np.testing.assert_array_equal(net(torch.tensor(t), exact=True).numpy(), ref)
    (out_f[:, -1] ** 2).sum().backward()
    for p in (net.enc_W, net.layers[0].log_dt, net.layers[1].W, net.dec_b):
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_train_smoke(tmp_path):
    r = train("digits", H=4, N=2, L=1, epochs=1, qaft_epochs=1, max_steps=2, calib=32,
              out=tmp_path / "m", progress=False, log=lambda *_: None)
    assert set(r.metrics) >= {"float_acc", "ptq_acc", "qaft_acc", "q_acc", "neurons"}
    f, q = load_float(tmp_path / "m-float"), load_qmodel(tmp_path / "m-q")
    assert f.meta["dataset"] == "digits" and q.meta["q_acc"] == r.metrics["q_acc"]
    assert q.H == 4 and q.modes == 3


def test_lr_schedule_any_step_count():
    """The one-cycle schedule runs for every step count (torch's OneCycleLR divides by zero at
    10 steps with a 10 % warm-up), and never leaves (0, max_lr]."""
    import torch

    from neuroloom.firmware.train import _one_cycle

    for total in range(1, 41):
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=0.1)
        sched = _one_cycle(opt, [0.1], total)
        for _ in range(total):
            lr = opt.param_groups[0]["lr"]
            assert 0 < lr <= 0.1 + 1e-12, (total, lr)
            opt.step()
            sched.step()
