"""Config image: round trip, and a clear error for each kind of corruption."""

import dataclasses
import struct
import zlib

import numpy as np
import pytest

from neuroloom.contract import image as im
from neuroloom.contract.config import FabricConfig
from neuroloom.contract.coreconfig import split_parts
from neuroloom.contract.layouts import Mem, group_layout, pack, route_layout, unpack
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


# -- forged images: a valid checksum over contents out of range for the fabric -----------------

def _forge(img: im.Image, **changes) -> bytes:
    """``img`` with ``changes``, encoded with a correct checksum."""
    return dataclasses.replace(img, **changes).to_bytes()


def _set_group_field(img: im.Image, writes: list, field: str, value: int) -> list:
    """``writes`` with ``field`` of the first enabled group descriptor set to ``value``."""
    cfg = img.cfg
    parts = {}
    for c, m, i, p, v in writes:
        if m == Mem.GROUP:
            parts.setdefault((c, i), {})[p] = v
    key, g = next((k, g) for k, ps in sorted(parts.items())
                  if (g := unpack(group_layout(cfg), sum(v << (32 * p) for p, v in ps.items())))
                  ["count"])
    c, i = key
    g[field] = value
    new = split_parts(cfg, Mem.GROUP, pack(group_layout(cfg), **{k: int(v) for k, v in
                                                                  g.items()}))
    return [(cc, m, ii, p, new[p]) if (cc, m, ii) == (c, Mem.GROUP, i) else (cc, m, ii, p, v)
            for cc, m, ii, p, v in writes]


def _forgeries(img: im.Image):
    w0 = img.writes[0]
    sch = img.schedules
    n = img.cfg.num_cores
    route = next(k for k, w in enumerate(img.writes) if w[1] == Mem.ROUTE)
    tile_route = split_parts(img.cfg, Mem.ROUTE, pack(route_layout(img.cfg), x=img.cfg.mesh_w,
                                                      y=0, host=0, target=0))[0]
    ft = img.schedules["fall-through"]["group_writes"]
    return {
        "in_scale -1": (dict(model={**img.model, "in_scale": -1}),
                        "model.in_scale = -1 must be a positive finite number"),
        "in_scale 0": (dict(model={**img.model, "in_scale": 0.0}), "model.in_scale = 0.0"),
        "in_scale nan": (dict(model={**img.model, "in_scale": float("nan")}),
                         "model.in_scale = nan"),
        "out_scale 0": (dict(model={**img.model, "out_scale": 0}), "model.out_scale = 0"),
        "output neuron": (dict(outputs=[(0, img.cfg.neurons, 0)] + img.outputs[1:]),
                          f"outputs[0].neuron = {img.cfg.neurons} is outside 0..31"),
        "output core": (dict(outputs=[(n, 0, 0)] + img.outputs[1:]),
                        f"outputs[0].core = {n} is outside 0..{n - 1}"),
        "write to core 999": (dict(writes=[(999, *w0[1:])] + img.writes[1:]),
                              "writes[0].core = 999 is outside the 2x1 mesh"),
        "write to counters": (dict(writes=[(0, int(Mem.COUNTER), 0, 0, 0)] + img.writes),
                              "writes[0].mem = 8 is not a writable memory"),
        "write to mem 15": (dict(writes=[(0, 15, 0, 0, 0)] + img.writes),
                            "writes[0].mem = 15 is not a writable memory"),
        "index": (dict(writes=[(0, int(Mem.AXON), 32, 0, 0)] + img.writes),
                  "writes[0].index = 32 is outside AXON's 0..31"),
        "part": (dict(writes=[(0, int(Mem.ACC), 0, 2, 0)] + img.writes),
                 "writes[0].part = 2 is outside ACC's 0..1"),
        "group period 0": (dict(writes=_set_group_field(img, img.writes, "period", 0)),
                           "core 0 group 0 (writes): period = 0 must be at least 1"),
        "group period 0 in a schedule": (
            dict(schedules={**sch, "fall-through": {
                **sch["fall-through"],
                "group_writes": [list(w) for w in _set_group_field(img, ft, "period", 0)]}}),
            "core 0 group 0 (schedules.fall-through): period = 0"),
        "group neurons": (dict(writes=_set_group_field(img, img.writes, "first",
                                                        img.cfg.neurons - 1)),
                          "neurons first + count = 31 +"),
        "schedule period 0": (dict(schedules={**sch, "pipelined": {**sch["pipelined"],
                                                                   "period": 0}}),
                              "schedules.pipelined.period = 0 must be an integer >= 1"),
        "schedule missing": (dict(schedules={"pipelined": sch["pipelined"]}),
                             "schedules has ['pipelined']"),
        "schedule write outside GROUP": (
            dict(schedules={**sch, "pipelined": {**sch["pipelined"],
                                                 "group_writes": [list(w0)]}}),
            "group_writes holds a write outside GROUP"),
        "mode": (dict(mode="turbo"), "mode 'turbo' is not one of"),
        "input axon": (dict(inputs=[[(0, img.cfg.axons)]] + img.inputs[1:]),
                       "inputs[0][0].axon = 32 is outside 0..31"),
        "input core": (dict(inputs=[[(7, 0)]] + img.inputs[1:]), "inputs[0][0].core = 7"),
        "route to a tile outside the mesh": (
            dict(writes=[w if k != route else (*w[:4], tile_route)
                         for k, w in enumerate(img.writes)]),
            "route 0: tile (2,0) is outside the 2x1 mesh"),
        "d_in": (dict(inputs=img.inputs[:1]), "model.d_in = 2 but the image has 1 inputs"),
    }


FORGERIES = ("in_scale -1", "in_scale 0", "in_scale nan", "out_scale 0", "output neuron",
             "output core", "write to core 999", "write to counters", "write to mem 15", "index",
             "part", "group period 0", "group period 0 in a schedule", "group neurons",
             "schedule period 0", "schedule missing", "schedule write outside GROUP", "mode",
             "input axon", "input core", "route to a tile outside the mesh", "d_in")


def test_every_forgery_is_tested(compiled):
    assert set(_forgeries(from_compiled(compiled[1]))) == set(FORGERIES)


@pytest.mark.parametrize("case", FORGERIES)
def test_forged_image_is_refused_naming_the_field(compiled, case):
    img = from_compiled(compiled[1])
    changes, needle = _forgeries(img)[case]
    with pytest.raises(im.ImageError) as ei:
        im.Image.from_bytes(_forge(img, **changes), "forged.nlimg")
    msg = str(ei.value)
    assert msg.startswith("forged.nlimg: ") and needle in msg and "\n" not in msg, msg
    assert "recompile the model" in msg, msg


def test_valid_image_passes_its_semantic_check(compiled):
    img = from_compiled(compiled[1])
    img.validate()
    assert im.Image.from_bytes(img.to_bytes()).writes == img.writes
