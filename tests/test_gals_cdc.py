# amaranth: UnusedElaboratable=no
"""CdcLink in amaranth.sim: long random runs between two clocks (the formal proof covers short
ones exhaustively), and the constructor's checks."""

import random

import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from neuroloom.hw.noc.cdc import CdcLink


@pytest.mark.parametrize("w_ns, r_ns", [(7, 13), (13, 7), (10, 10)])
def test_cdc_link_random_traffic(w_ns, r_ns):
    m = Module()
    m.domains += [ClockDomain("w"), ClockDomain("r")]
    m.submodules.cdc = cdc = CdcLink(16, 8, w_domain="w", r_domain="r")
    sim = Simulator(m)
    sim.add_clock(w_ns * 1e-9, domain="w")
    sim.add_clock(r_ns * 1e-9, domain="r", phase=0.3e-9)
    n = 600
    got, errors = [], []

    async def writer(ctx):
        rng = random.Random(1)
        sent = 0
        while sent < n:
            if rng.random() < 0.7:
                ctx.set(cdc.i.valid, 1)
                ctx.set(cdc.i.payload, sent * 37 & 0xFFFF)
                await ctx.tick("w").until(cdc.i.ready)
                sent += 1
                ctx.set(cdc.i.valid, 0)
            else:
                await ctx.tick("w")

    async def reader(ctx):
        rng = random.Random(2)
        held = None
        while len(got) < n:
            ready = rng.random() < 0.6
            ctx.set(cdc.o.ready, ready)
            _, _, valid, payload = await ctx.tick("r").sample(cdc.o.valid, cdc.o.payload)
            if held is not None and not (valid and payload == held):
                errors.append(f"valid/payload changed while waiting ({held} -> {payload})")
            held = None
            if valid and ready:
                got.append(payload)
            elif valid:
                held = payload

    sim.add_testbench(writer)
    sim.add_testbench(reader)
    sim.run()
    assert not errors, errors[:3]
    assert got == [k * 37 & 0xFFFF for k in range(n)]


def test_cdc_link_checks_its_arguments():
    with pytest.raises(ValueError, match="depth=6 must be a power of two"):
        CdcLink(8, 6, w_domain="a", r_domain="b")
    with pytest.raises(ValueError, match="sync_stages=0"):
        CdcLink(8, 4, w_domain="a", r_domain="b", sync_stages=0)
    with pytest.raises(ValueError, match="two clock domains"):
        CdcLink(8, 4, w_domain="a", r_domain="a")
