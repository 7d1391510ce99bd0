"""Driver.run beyond the plain case: sequences of different true lengths, batches split into
chunks, empty batches and sequences, the steps a run takes. Expected logits come from the
quantized reference (``qforward``, which holds each sequence's logits at its last true token
by ``hold_final``), steps from the image's schedule. The mutation run (``make mutate``) found
these paths of ``firmware/driver.py`` reached by no driver test."""

import dataclasses

import numpy as np
import pytest

from neuroloom.contract.config import FabricConfig
from neuroloom.firmware.compiler import compile_model, from_compiled, random_qmodel
from neuroloom.firmware.driver import Driver, DriverError
from neuroloom.firmware.qmodel import qforward
from neuroloom.sim.transports import GoldenTransport

CFG = FabricConfig(mesh_w=2, mesh_h=2, neurons=24, axons=24)


@pytest.fixture(scope="module")
def model():
    q = random_qmodel(6, 2, 2, d_in=2, classes=4, seed=7, cfg=CFG)
    x = q.quantize_input(np.random.default_rng(3).uniform(-1000, 1000, (5, 7, 2)), CFG)
    # every token reaches the logits (a small random model can ignore its input: then a
    # driver that loses tokens would still match the reference)
    ref = qforward(q, x, CFG)
    for k in range(1, 7):
        changed = x.copy()
        changed[:, k] = 0
        assert np.any(qforward(q, changed, CFG)[:, k:] != ref[:, k:]), k
    return q, from_compiled(compile_model(q, CFG)), x


def _driver(img, max_batch=256):
    d = Driver(GoldenTransport(max_batch=max_batch))
    d.load(img)
    return d


@pytest.mark.parametrize("mode", ["pipelined", "fall-through"])
@pytest.mark.parametrize("max_batch", [256, 2])
def test_lengths_hold_each_sequence_at_its_last_token(model, mode, max_batch):
    """Sequences of true lengths 1..7 padded to 7, run side by side (one chunk) or two at a
    time (chunks of 2, 2 and 1: each streamed for its own longest sequence): the logits of
    each are those after its last true token, held from there on."""
    q, img, x = model
    lengths = np.array([7, 1, 4, 3, 6])
    r = _driver(img, max_batch).run(x, mode=mode, lengths=lengths)
    ref = qforward(q, x, CFG, lengths=lengths)
    np.testing.assert_array_equal(r.running, ref)
    np.testing.assert_array_equal(r.logits, ref[:, -1])
    for b, m in enumerate(lengths):
        np.testing.assert_array_equal(r.logits[b], qforward(q, x[b:b + 1, :m], CFG)[0, -1])


@pytest.mark.parametrize("mode", ["pipelined", "fall-through"])
def test_a_run_takes_the_steps_of_its_last_output(model, mode):
    q, img, x = model
    d = _driver(img)
    r = d.run(x, mode=mode)
    np.testing.assert_array_equal(r.running, qforward(q, x, CFG))
    assert r.steps == img.output_step(mode, x.shape[1] - 1) + 1
    assert d.transport.fabric.t == r.steps            # and the fabric stepped no further
    one = _driver(img).run(x[:, :1], mode=mode)
    assert one.steps == img.output_step(mode, 0) + 1


@pytest.mark.parametrize("lengths", [
    [7, 1, 4, 3],                  # one short
    [7.0, 1.0, 4.0, 3.0, 6.0],     # floats
    [7, 0, 4, 3, 6],               # an empty sequence
    [7, 1, 8, 3, 6],               # longer than the tokens
])
def test_bad_lengths_are_refused(model, lengths):
    _, img, x = model
    with pytest.raises(ValueError, match=r"give 5 integer lengths in 1\.\.7"):
        _driver(img).run(x, lengths=np.array(lengths))


def test_no_tokens_is_an_error_and_no_sequences_an_empty_result(model):
    _, img, x = model
    with pytest.raises(ValueError, match="no tokens"):
        _driver(img).run(x[:, :0])
    with pytest.raises(ValueError, match="no tokens"):
        _driver(img).run(x[0, :0])
    r = _driver(img).run(x[:0])
    assert r.logits.shape == (0, 4) and r.running.shape == (0, 7, 4) and r.steps == 0


class _LosingTransport(GoldenTransport):
    """The golden fabric, but the host output of channel ``lost`` never arrives valid."""

    def __init__(self, lost, **kw):
        super().__init__(**kw)
        self.lost = lost

    def run(self, steps):
        out = []
        for so in super().run(steps):
            valid = np.array(so.valid, copy=True)
            for i, ch in enumerate(so.channels):
                if int(ch) == self.lost:
                    valid[:, i] = False
            out.append(dataclasses.replace(so, valid=valid))
        return out


def test_a_missing_host_output_is_an_error(model):
    _, img, x = model
    lost = img.outputs[1][2]
    d = Driver(_LosingTransport(lost))
    d.load(img)
    with pytest.raises(DriverError, match=f"no host output on channel {lost} at step"):
        d.run(x)
