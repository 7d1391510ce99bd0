"""GALS fabrics end to end: every tile on its own clock (co-prime periods, and periods that change
during the run), compiled models through the host driver over Verilator, against the quantized
reference and the golden model, per step and in both schedules, with the in-flight monitor of
:class:`~neuroloom.sim.gals_harness.GalsHarness` checking every step end.

The default suite builds one 2 x 2 GALS fabric (cached); ``-m slow`` adds 3 x 3 and the shipped
model.
"""

import numpy as np
import pytest

from neuroloom.contract.config import FabricConfig
from neuroloom.firmware.compiler import compile_model, from_compiled, random_qmodel
from neuroloom.firmware.driver import Driver
from neuroloom.firmware.qmodel import qforward
from neuroloom.firmware.transports import FramedTransport
from neuroloom.sim.transports import GoldenTransport
from neuroloom.sim.verilator_link import ClockPlan, VerilatorLink
from tests.support.fabric_runs import SMALL, steps_of
from tests.support.runs import check_both_schedules

pytestmark = pytest.mark.rtl

#: tile periods (ps): co-prime 7, 9, 11, 13 ns ... around a 10 ns host clock
COPRIME = (7_000, 9_000, 11_000, 13_000, 8_000, 12_000, 7_400, 10_600, 9_800)


def plans(cfg):
    tiles = COPRIME[:cfg.num_cores]
    return {"coprime": ClockPlan(host=10_000, tiles=tiles),
            "varying": ClockPlan(host=10_000, tiles=tiles, vary=7)}


def check_gals(model, cfg, x, plan, mapping=None):
    kw = {} if mapping is None else {"mapping": mapping}
    comp = compile_model(model, cfg, mode="pipelined", **kw)
    assert comp.cores_used >= 2 and comp.hops() > 0, "spikes must cross clock domains"
    img = from_compiled(comp)
    ref = qforward(model, x, cfg, mapping=comp.mapping)
    with VerilatorLink(cfg, clocks=plan) as link:
        rtl = Driver(FramedTransport(link))
        rtl.load(img)
        check_both_schedules(rtl, img, x, ref, "GALS RTL")
        for mode in ("pipelined", "fall-through"):
            before = link.monitor["steps"]
            got, got_c = steps_of(FramedTransport(link), img, x[0], mode)
            exp, exp_c = steps_of(GoldenTransport(batch=1), img, x[0], mode)
            assert got == exp, f"{mode}: per-step host outputs differ"
            np.testing.assert_array_equal(got_c, exp_c)
            ran = link.monitor["steps"] - before
            assert ran == max(exp) + 1, f"{mode}: the monitor saw {ran} step ends"
        assert link.monitor["errors"] == 0, (
            f"{link.monitor['errors']} steps ended with a flit in flight or a core busy")


@pytest.mark.parametrize("clocks", ["coprime", "varying"])
def test_gals_2x2_random_model(clocks):
    cfg = FabricConfig(mesh_w=2, mesh_h=2, gals=True, **SMALL)
    model = random_qmodel(6, 3, 2, d_in=2, classes=3, seed=5, cfg=cfg)
    x = model.quantize_input(np.random.default_rng(2).uniform(-9, 9, (2, 6, 2)), cfg)
    check_gals(model, cfg, x, plans(cfg)[clocks], mapping="per-mode")


@pytest.mark.slow
@pytest.mark.parametrize("clocks", ["coprime", "varying"])
@pytest.mark.parametrize("mapping", ["per-mode", "channel"])
def test_gals_3x3_random_model(clocks, mapping):
    caps = dict(SMALL, modes=16) if mapping == "channel" else SMALL
    cfg = FabricConfig(mesh_w=3, mesh_h=3, gals=True, **caps)
    model = random_qmodel(10, 3, 3, d_in=2, classes=3, seed=6, cfg=cfg)
    x = model.quantize_input(np.random.default_rng(3).uniform(-9, 9, (2, 6, 2)), cfg)
    check_gals(model, cfg, x, plans(cfg)[clocks], mapping=mapping)


@pytest.mark.slow
@pytest.mark.parametrize("clocks", ["coprime", "varying"])
def test_gals_shipped_model(clocks):
    from neuroloom.firmware.datasets import load_dataset
    from neuroloom.firmware.importer import load_model
    model = load_model("firmware/models/digits-q")
    cfg = FabricConfig(gals=True)
    x = model.quantize_input(load_dataset("digits").x_test[:2], cfg)
    check_gals(model, cfg, x, plans(cfg)[clocks], mapping="per-mode")
