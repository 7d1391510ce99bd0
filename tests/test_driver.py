"""Host driver over the Transport interface (golden transport, and a minimal 'hardware-like'
transport that implements only the abstract methods, one sample at a time)."""

import dataclasses
import warnings

import numpy as np
import pytest

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.layouts import Mem
from neuroloom.contract.transport import Transport
from neuroloom.firmware.compiler import compile_model, from_compiled, random_qmodel
from neuroloom.firmware.driver import (
    Driver,
    DriverError,
    SaturationError,
    SaturationWarning,
)
from neuroloom.firmware.qmodel import qforward
from neuroloom.sim.transports import GoldenTransport


class MinimalTransport(Transport):
    """Only the abstract methods (like a serial link): batch 1, counters via config reads."""

    def __init__(self):
        self.inner = GoldenTransport()
        self.log = []

    def open(self, cfg):
        self.cfg = cfg
        self.inner.open(cfg)

    def write(self, core, mem, index, part, value):
        self.log.append(("write", mem))
        self.inner.write(core, mem, index, part, value)

    def read(self, core, mem, index, part):
        return self.inner.read(core, mem, index, part)

    def inject(self, core, axon, payload):
        assert np.ndim(payload) == 0
        self.log.append(("inject", core, axon))
        self.inner.inject(core, axon, payload)

    def run(self, steps):
        return self.inner.run(steps)

    def clear(self):
        self.inner.clear()


@pytest.fixture(scope="module")
def setup():
    cfg = FabricConfig(mesh_w=2, mesh_h=2, neurons=24, axons=24)
    model = random_qmodel(6, 2, 2, d_in=2, classes=4, seed=7, cfg=cfg)
    comp = compile_model(model, cfg, mode="fall-through")
    x = model.quantize_input(np.random.default_rng(1).uniform(-9, 9, (5, 6, 2)), cfg)
    return model, comp, from_compiled(comp), x, qforward(model, x, cfg)


def test_minimal_transport_matches_reference(setup):
    model, comp, img, x, ref = setup
    t = MinimalTransport()
    drv = Driver(t)
    drv.load(img)
    assert sum(1 for e in t.log if e[0] == "write") == len(img.writes)
    for mode in ("fall-through", "pipelined"):
        t.log.clear()
        res = drv.run(x, mode=mode)
        np.testing.assert_array_equal(res.running, ref)
        # switching mode rewrites the group descriptors only
        assert {e[1] for e in t.log if e[0] == "write"} <= {int(Mem.GROUP)}
    assert res.counters.shape == (comp.cfg.num_cores, 4) and res.counters[:, 0].sum() > 0


def test_batches_are_chunked_and_padded(setup):
    model, comp, img, x, ref = setup
    drv = Driver(GoldenTransport(max_batch=2))       # 5 samples -> chunks 2, 2, 1(+1 pad)
    drv.load(img)
    res = drv.run(x)
    assert res.mode == "fall-through"
    np.testing.assert_array_equal(res.running, ref)
    np.testing.assert_array_equal(res.logits, ref[:, -1])
    np.testing.assert_array_equal(res.predictions, np.argmax(ref[:, -1], axis=1))


def test_counters_pipelined(setup):
    model, comp, img, x, ref = setup
    drv = Driver(GoldenTransport(max_batch=8))
    drv.load(img)
    res = drv.run(x[:1], mode="pipelined")
    # pipelined: stage s updates at steps s..steps-1 (once started, every step)
    expect = sum(st.size * (res.steps - st.index) for st in comp.stages)
    assert res.counters[:, 0].sum() == expect
    c = drv.read_counters()
    assert c["neuron_updates"].sum() == expect and set(c) == {
        "neuron_updates", "syn_ops", "spikes_sent", "spikes_received"}


def test_quantize_and_errors(setup):
    model, comp, img, x, ref = setup
    drv = Driver(GoldenTransport())
    with pytest.raises(DriverError, match="no image loaded"):
        drv.run(x)
    drv.load(img, verify=True)
    xf = np.random.default_rng(2).uniform(-1, 1, (3, 4, 2))
    np.testing.assert_array_equal(drv.quantize(xf), model.quantize_input(xf, comp.cfg))
    with pytest.raises(ValueError, match="integer payloads"):
        drv.run(xf)
    with pytest.raises(ValueError, match="expected"):
        drv.run(x[:, :, :1])
    with pytest.raises(ValueError, match="24-bit"):
        drv.run(x * 0 + (1 << 23))
    with pytest.raises(ValueError, match="mode"):
        drv.run(x, mode="turbo")
    one = drv.run(x[0])                               # a single (K, d_in) sequence
    assert one.running.shape == (6, 4)
    np.testing.assert_array_equal(one.running, ref[0])


def test_framed_host_link_transport(setup):
    """The same driver over the host link protocol (reference model of the link)."""
    from neuroloom.firmware.transports import FramedTransport
    from neuroloom.sim.transports import ModelLink
    model, comp, img, x, ref = setup
    link = ModelLink(comp.cfg)
    drv = Driver(FramedTransport(link))
    drv.load(img)
    for mode in ("pipelined", "fall-through"):
        res = drv.run(x[:2], mode=mode)
        np.testing.assert_array_equal(res.running, ref[:2])
    gold = Driver(GoldenTransport(batch=1))
    gold.load(img)
    gres = gold.run(x[:2], mode="fall-through")
    np.testing.assert_array_equal(res.counters, gres.counters)
    assert link.frames_sent > 10


def test_framed_transport_checks_mesh(setup):
    from neuroloom.firmware.transports import FramedTransport
    from neuroloom.sim.transports import ModelLink
    model, comp, img, x, ref = setup
    drv = Driver(FramedTransport(ModelLink(FabricConfig(mesh_w=3, mesh_h=1))))
    with pytest.raises(DriverError, match="2x2 mesh, the fabric is 3x1"):
        drv.load(img)


@pytest.fixture
def scaled_driver(setup):
    """A driver loaded with the setup image, its input scale set to 4 (exact in binary)."""
    model, comp, img, x, ref = setup
    drv = Driver(GoldenTransport())
    drv.load(dataclasses.replace(img, model={**img.model, "in_scale": 4.0}))
    return drv


def test_quantize_rounds_exact_ties_half_up(scaled_driver):
    """x * 4 lands exactly on .5: round half up (towards +inf), not half-even, not away
    from zero."""
    x = np.array([0.625, -0.625, 0.875, -0.875, 0.125, -0.125, 0.25])   # * 4: 2.5, -2.5, ...
    want = np.array([3, -2, 4, -3, 1, 0, 1])
    np.testing.assert_array_equal(scaled_driver.quantize(x), want)


def test_quantize_saturates_huge_and_infinite_values_without_sign_flip(scaled_driver):
    top, bottom = (1 << 23) - 1, -(1 << 23)                  # 24-bit payloads
    x = np.array([1e13, 8.8e12 / 4, 1e300, np.inf, -1e13, -np.inf, top / 4, (top + 1) / 4])
    with pytest.warns(SaturationWarning, match="7 of 8 token values saturate the 24-bit"):
        q = scaled_driver.quantize(x)
    np.testing.assert_array_equal(q, [top, top, top, top, bottom, bottom, top, top])


def test_quantize_in_range_does_not_warn(scaled_driver):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        q = scaled_driver.quantize(np.array([((1 << 23) - 1) / 4, -(1 << 23) / 4]))
    np.testing.assert_array_equal(q, [(1 << 23) - 1, -(1 << 23)])


def test_quantize_error_policy(setup, scaled_driver):
    with pytest.raises(SaturationError, match="1 of 2 token values saturate"):
        scaled_driver.quantize(np.array([0.5, 1e9]), saturation="error")
    strict = Driver(GoldenTransport(), saturation="error")
    strict.load(setup[2])
    with pytest.raises(SaturationError):
        strict.quantize(np.array([np.inf]))
    assert strict.quantize(np.array([0.0])).tolist() == [0]
    with pytest.raises(ValueError, match="saturation policy 'clip'"):
        scaled_driver.quantize(np.array([0.0]), saturation="clip")
    with pytest.raises(ValueError, match="saturation policy 'clip'"):
        Driver(GoldenTransport(), saturation="clip")


def test_quantize_rejects_nan(scaled_driver):
    with pytest.raises(DriverError, match=r"1 NaN \(first at index \(1, 0\)\)"):
        scaled_driver.quantize(np.array([[0.5], [np.nan]]))


def test_single_sequence_prediction_and_unknown_transport(setup):
    model, comp, img, x, ref = setup
    drv = Driver(GoldenTransport())
    drv.load(img)
    one = drv.run(x[2])
    assert one.predictions == int(np.argmax(ref[2, -1])), one.logits
    from neuroloom.firmware.driver import open_transport
    with pytest.raises(DriverError, match=r"unknown transport 'nope'; registered transports: "
                                          r"\S*golden"):
        open_transport("nope")


def test_full_range_payloads_are_accepted(setup):
    """The extreme 24-bit payloads run; one past either end is refused."""
    model, comp, img, x, ref = setup
    drv = Driver(GoldenTransport())
    drv.load(img)
    top, bottom = (1 << 23) - 1, -(1 << 23)
    drv.run(np.where(x > 0, top, bottom))
    for bad in (top + 1, bottom - 1):
        with pytest.raises(ValueError, match="outside the 24-bit range"):
            drv.run(x * 0 + bad)
