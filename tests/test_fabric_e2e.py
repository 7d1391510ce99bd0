"""End to end: compiled models through the host driver over the Verilator RTL of the whole
fabric (host link, mesh, barrier, cores), against the quantized reference and the golden model.

Every step's host outputs (not only the logits the driver keeps) and the architectural counters
of every core must equal the golden model's, in both schedules.
"""

import numpy as np
import pytest

from neuroloom.contract.config import FabricConfig
from neuroloom.firmware.compiler import compile_model, from_compiled, random_qmodel
from neuroloom.firmware.driver import Driver
from neuroloom.firmware.importer import load_model
from neuroloom.firmware.qmodel import qforward
from neuroloom.firmware.transports import FramedTransport
from neuroloom.sim.transports import GoldenTransport
from neuroloom.sim.verilator_link import VerilatorLink
from tests.support.fabric_runs import SMALL, steps_of
from tests.support.runs import check_both_schedules

pytestmark = pytest.mark.rtl

def check_model(model, cfg, x, min_cores, mapping=None):
    kw = {} if mapping is None else {"mapping": mapping}
    comp = compile_model(model, cfg, mode="pipelined", **kw)
    assert comp.cores_used >= min_cores, "the model must spread over the mesh"
    if min_cores > 1:
        assert comp.hops() > 0, "spikes must cross the NoC"
    img = from_compiled(comp)
    ref = qforward(model, x, cfg, mapping=comp.mapping)
    with VerilatorLink(cfg) as link:
        rtl = Driver(FramedTransport(link))
        rtl.load(img)
        check_both_schedules(rtl, img, x, ref, "RTL")
        for mode in ("pipelined", "fall-through"):
            got, got_c = steps_of(FramedTransport(link), img, x[0], mode)
            exp, exp_c = steps_of(GoldenTransport(batch=1), img, x[0], mode)
            assert got == exp, f"{mode}: per-step host outputs differ"
            np.testing.assert_array_equal(got_c, exp_c)
        assert link.cycles > 0


# The non-square 2x3 mesh runs channel neurons in `make test`; its per-mode twin (a second
# minute on the same Verilator build) runs in `make test-slow`.
_SLOW = pytest.mark.slow
@pytest.mark.parametrize("mesh, shape, min_cores, mapping", [
    ((1, 1), dict(H=4, N=2, layers=1), 1, "per-mode"),
    ((1, 1), dict(H=4, N=2, layers=1), 1, "channel"),
    ((2, 2), dict(H=6, N=3, layers=2), 3, "per-mode"),
    ((2, 2), dict(H=6, N=3, layers=2), 3, "channel"),
    pytest.param((2, 3), dict(H=8, N=3, layers=2), 4, "per-mode", marks=_SLOW),
    ((2, 3), dict(H=8, N=3, layers=2), 4, "channel"),
], ids=["1x1-per-mode", "1x1-channel", "2x2-per-mode", "2x2-channel", "2x3-per-mode",
        "2x3-channel"])
def test_random_models_rtl_equals_reference(mesh, shape, min_cores, mapping):
    # channel neurons: a small mode memory (4 channels of 4 modes per core) spreads the model
    caps = dict(SMALL, modes=16) if mapping == "channel" else SMALL
    cfg = FabricConfig(mesh_w=mesh[0], mesh_h=mesh[1], **caps)
    model = random_qmodel(shape["H"], shape["N"], shape["layers"], d_in=2, classes=3, seed=5,
                          cfg=cfg)
    x = model.quantize_input(np.random.default_rng(2).uniform(-9, 9, (2, 6, 2)), cfg)
    check_model(model, cfg, x, min_cores, mapping)


@pytest.mark.parametrize("mapping, min_cores", [("channel", 1), ("per-mode", 2)])
def test_shipped_model_rtl_equals_reference(mapping, min_cores):
    from neuroloom.firmware.datasets import load_dataset
    model = load_model("firmware/models/digits-q")
    cfg = FabricConfig()
    ds = load_dataset("digits")
    x = model.quantize_input(ds.x_test[:2], cfg)
    check_model(model, cfg, x, min_cores, mapping)


def test_fuzzed_frames_on_the_rtl_change_nothing():
    """Malformed frames into the real fabric: each gets an ERROR frame, none hangs the link,
    and a model loaded before the fuzz gives identical outputs after it."""
    import random

    from neuroloom.contract.hostproto import ERROR, Cmd, decode_frames, encode_frame

    cfg = FabricConfig(mesh_w=1, mesh_h=1, **SMALL)
    model = random_qmodel(4, 2, 1, d_in=2, classes=3, seed=5, cfg=cfg)
    img = from_compiled(compile_model(model, cfg, mode="pipelined"))
    x = model.quantize_input(np.random.default_rng(4).uniform(-9, 9, (1, 5, 2)), cfg)
    rng = random.Random(8)
    with VerilatorLink(cfg) as link:
        drv = Driver(FramedTransport(link))
        drv.load(img)
        before = drv.run(x, mode="pipelined").running
        codes = []
        for i in range(60):
            n = rng.randint(1, 9)
            words = [rng.getrandbits(32) for _ in range(n)]
            if i % 3 == 0:      # well-formed header and length, wrong checksum
                words = encode_frame(rng.choice(list(Cmd)), words[:-1], seq=i)
                words[-1] ^= 1 << rng.randrange(32)
            elif i % 3 == 1:    # a valid header whose length disagrees with TLAST
                words[0] = int(rng.choice(list(Cmd))) | (n + 3) << 16
            frames = decode_frames(link.exchange(words))
            assert [f.opcode for f in frames] == [ERROR], frames
            codes.append(frames[0].payload[0])
        assert len(set(codes)) >= 2, "several error classes were exercised"
        np.testing.assert_array_equal(drv.run(x, mode="pipelined").running, before)
        np.testing.assert_array_equal(before, qforward(model, x, cfg))
