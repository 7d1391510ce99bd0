"""Shared layouts: software pack/unpack agree with Amaranth's own encoding; config checks."""

import numpy as np
import pytest
from amaranth.hdl import Shape
from amaranth.lib import data
from hypothesis import given, settings
from hypothesis import strategies as st

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.layouts import (
    Mem,
    axon_layout,
    cfg_addr_layout,
    flit_layout,
    group_layout,
    instr_layout,
    mem_depth,
    mem_parts,
    pack,
    route_index_layout,
    route_layout,
    synapse_layout,
    unpack,
)

CONFIGS = [FabricConfig(), FabricConfig(mesh_w=3, mesh_h=5, neurons=64, synapse_lanes=8,
                                        synapse_rows=4096, weight_width=6)]


def layouts(cfg):
    return [flit_layout(cfg), cfg_addr_layout(cfg), axon_layout(cfg), synapse_layout(cfg),
            route_index_layout(cfg), route_layout(cfg), group_layout(cfg), instr_layout()]


def random_value(layout, draw):
    """A random value for every field, as a nested dict/list for layout.const()."""
    if isinstance(layout, data.ArrayLayout):
        return [random_value(layout.elem_shape, draw) for _ in range(layout.length)]
    if isinstance(layout, data.StructLayout):
        return {name: random_value(f.shape, draw) for name, f in layout
                if not name.startswith("_")}
    shape = Shape.cast(layout)
    lo, hi = ((-(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1) if shape.signed
              else (0, (1 << shape.width) - 1))
    return draw(st.integers(lo, hi))


@pytest.mark.parametrize("cfg", CONFIGS, ids=["default", "3x5-8lanes"])
@settings(max_examples=60, deadline=None)
@given(st.data())
def test_pack_matches_amaranth_const(cfg, data_):
    for layout in layouts(cfg):
        value = random_value(layout, data_.draw)
        word = pack(layout, **value)
        assert word == layout.const(value).as_value().value, layout
        back = unpack(layout, word)
        assert back == value
        vec = unpack(layout, np.array([word, word], dtype=object))
        for name, v in value.items():
            assert np.asarray(vec[name])[1].tolist() == v


def test_pack_rejects_out_of_range_and_unknown_fields():
    cfg = FabricConfig()
    with pytest.raises(ValueError, match="field 'weights' value 128 out of range -128..127"):
        pack(synapse_layout(cfg), weights=[128, 0, 0, 0])
    with pytest.raises(ValueError, match="unknown field"):
        pack(axon_layout(cfg), bogus=1)


def test_flit_is_64_bits_and_parts_cover_words():
    cfg = FabricConfig()
    assert flit_layout(cfg).size == 4 + 4 + 3 + 21 + 32
    for mem in Mem:
        assert mem_parts(cfg, mem) <= 1 << cfg.PART_BITS
        assert mem_depth(cfg, mem) <= 1 << cfg.INDEX_BITS


@pytest.mark.parametrize("kwargs, message", [
    (dict(mesh_w=0), "mesh_w=0 must be an integer in 1..16"),
    (dict(mesh_h=17), "mesh_h=17"),
    (dict(synapse_lanes=3), "synapse_lanes=3 must be 1, 2, 4 or 8"),
    (dict(neurons=30), "multiple of synapse_lanes"),
    (dict(acc_width=24), "acc_width=24 must be in 32..48"),
    (dict(neurons=32768), "exceeds the 14-bit configuration index"),
])
def test_fabric_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FabricConfig(**kwargs)


def test_fabric_config_round_trips_and_parses_mesh():
    cfg = FabricConfig.parse_mesh("3x2", neurons=128)
    assert (cfg.mesh_w, cfg.mesh_h, cfg.num_cores) == (3, 2, 6)
    assert FabricConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.core_xy(cfg.core_index(2, 1)) == (2, 1)
    with pytest.raises(ValueError, match="not of the form WxH"):
        FabricConfig.parse_mesh("3by2")
    with pytest.raises(ValueError, match="unknown parameter"):
        FabricConfig.from_dict({"mesh": 3})
