"""Config image: round trip, and a clear error for each kind of corruption."""

import struct
import zlib

import numpy as np
import pytest

from neuroloom.contract import image as im
from neuroloom.contract.config import FabricConfig
from neuroloom.firmware.compiler import compile_model, from_compiled, random_qmodel
from neuroloom.firmware.driver import Driver
from neuroloom.firmware.qmodel import qforward
from neuroloom.sim.transports import GoldenTransport


@pytest.fixture(scope="module")
def compiled():
    cfg = FabricConfig(mesh_w=2, mesh_h=1, neurons=32, axons=32)
    model = random_qmodel(6, 2, 1, d_in=2, classes=3, seed=3, cfg=cfg)
    return model, compile_model(model, cfg, mode="fall-through")


def test_round_trip(compiled, tmp_path):
    model, comp = compiled
    img = from_compiled(comp)
    path = tmp_path / "m.nlimg"
    size = im.save(img, path)
    assert size == path.stat().st_size
    back = im.load(path)
    assert back.cfg == comp.cfg and back.mode == "fall-through"
    assert back.writes == img.writes == comp.writes()
    assert back.inputs == [[tuple(e) for e in lst] for lst in comp.inputs]
    assert back.outputs == comp.outputs
    assert back.model["in_scale"] == model.in_scale and back.model["classes"] == 3
    assert back.token_period("pipelined") == 1
    assert back.token_period("fall-through") == comp.num_stages
    assert back.output_step("pipelined", 2) == comp.output_step("pipelined", 2)
    assert back.to_bytes() == img.to_bytes()
    # the loaded image runs exactly like the reference
    x = model.quantize_input(np.random.default_rng(0).uniform(-9, 9, (2, 5, 2)), comp.cfg)
    drv = Driver(GoldenTransport())
    drv.load(back)
    np.testing.assert_array_equal(drv.run(x, mode="pipelined").running,
                                  qforward(model, x, comp.cfg))


def _blob(compiled):
    return from_compiled(compiled[1]).to_bytes()


def _reseal(data: bytes) -> bytes:
    """Recompute the checksum (to reach the checks behind it)."""
    pre = bytearray(data[:24])
    struct.pack_into("<I", pre, 20, zlib.crc32(data[24:]))
    return bytes(pre) + data[24:]


def test_bad_magic(compiled):
    data = b"XXXXXXXX" + _blob(compiled)[8:]
    with pytest.raises(im.ImageError, match="bad magic"):
        im.Image.from_bytes(data)


def test_bad_version(compiled):
    data = bytearray(_blob(compiled))
    struct.pack_into("<H", data, 8, im.VERSION + 1)
    with pytest.raises(im.ImageError, match=f"version {im.VERSION + 1}.*recompile"):
        im.Image.from_bytes(bytes(data))


def test_bad_checksum(compiled):
    data = bytearray(_blob(compiled))
    data[-3] ^= 0x40                       # one bit of one config write
    with pytest.raises(im.ImageError, match="checksum"):
        im.Image.from_bytes(bytes(data))


@pytest.mark.parametrize("cut", [0, 10, 30, 1])
def test_truncated(compiled, cut):
    data = _blob(compiled)
    data = data[:cut] if cut != 1 else data[:-1]
    with pytest.raises(im.ImageError, match="truncated"):
        im.Image.from_bytes(data)


def test_trailing_bytes(compiled):
    with pytest.raises(im.ImageError, match="trailing"):
        im.Image.from_bytes(_blob(compiled) + b"\0")


def test_malformed_header(compiled):
    data = bytearray(_blob(compiled))
    lh = struct.unpack_from("<I", data, 12)[0]
    data[24:24 + lh] = b"{" + b" " * (lh - 1)      # same length, not JSON
    with pytest.raises(im.ImageError, match="malformed header"):
        im.Image.from_bytes(_reseal(bytes(data)))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        im.load(tmp_path / "nope.nlimg")


def test_unknown_mode(compiled):
    with pytest.raises(ValueError, match="mode 'turbo'"):
        from_compiled(compiled[1]).token_period("turbo")
