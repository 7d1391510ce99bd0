"""NeuronDatapath (the pipelined neuron arithmetic) against the spec's formulas
(``neuroloom.contract.fixed``), one new random operation every cycle: every result is checked
at its documented latency, so operations in flight must not disturb each other."""

from __future__ import annotations

import dataclasses
import random

import pytest
from amaranth.sim import Simulator

from neuroloom.contract.fixed import rnd, sat, wrap
from neuroloom.contract.layouts import Op
from neuroloom.hw.core.alu import NeuronDatapath
from tests.support.core import SMALL, corner_value

SCALAR = (Op.ADD, Op.SUB, Op.MAX, Op.MIN, Op.LDC, Op.SHR, Op.SEL)


def expected(cfg, op):
    """The spec's value of every output for one operation (independent of the RTL)."""
    W = cfg.state_width
    a, b, kc, pred, sh, so = op["a"], op["b"], op["kc"], op["pred"], op["sh"], op["so"]
    scalar = {
        Op.ADD: sat(a + b, W), Op.SUB: sat(a - b, W), Op.MAX: max(a, b), Op.MIN: min(a, b),
        Op.LDC: sat(kc << sh, W), Op.SHR: sat(rnd(a, sh), W), Op.SEL: a if pred else b,
    }.get(op["op"])
    xs, total = [], 0
    for (a0, a1), (k0, k1, l0, l1, cr, cn), live in zip(op["x"], op["c"], op["live"]):
        re = sat(rnd(a0 * k0 - a1 * k1 + b * l0, sh), W)
        im = sat(rnd(a0 * k1 + a1 * k0 + b * l1, sh), W)
        xs.append((re, im))
        if live:
            total += sat(rnd(re * cr + im * cn, so), W)
    return scalar, a >= b, xs, wrap(total, cfg.acc_width)


@pytest.mark.parametrize(("lanes", "widths"), [(1, (24, 16)), (2, (24, 16)), (8, (24, 16)),
                                               (1, (16, 12)), (1, (32, 18))])
def test_datapath_back_to_back_random_operations(lanes, widths):
    W, CW = widths
    cfg = dataclasses.replace(SMALL, state_width=W, coef_width=CW, acc_width=W + 16,
                              neuron_lanes=lanes)
    dut = NeuronDatapath(cfg, lanes)
    rng = random.Random(lanes * 100 + W)

    def shift():
        return rng.choice([0, 1, 2, 14, 15, 16, 31, rng.randrange(32)])

    ops = []
    for _ in range(300):
        ops.append(dict(
            op=rng.choice((*SCALAR, Op.MODES, Op.CMAD, Op.MAD, Op.CGE)),
            a=corner_value(rng, W), b=corner_value(rng, W), kc=corner_value(rng, CW),
            pred=rng.randrange(2), sh=shift(), so=shift(),
            x=[(corner_value(rng, W), corner_value(rng, W)) for _ in range(lanes)],
            c=[tuple(corner_value(rng, CW) for _ in range(6)) for _ in range(lanes)],
            live=[rng.randrange(2) for _ in range(lanes)]))
    want = [expected(cfg, op) for op in ops]
    lat_s, lat_x, lat_sum = dut.LAT_SCALAR, dut.LAT_X, dut.LAT_SUM

    async def bench(ctx):
        checked = 0
        for t in range(len(ops) + lat_sum + 2):
            if t < len(ops):
                op = ops[t]
                for name in ("op", "a", "b", "kc", "pred", "sh", "so"):
                    ctx.set(getattr(dut, name), op[name])
                for i in range(lanes):
                    for q in range(2):
                        ctx.set(dut.x[i][q], op["x"][i][q])
                    for q in range(6):
                        ctx.set(dut.c[i][q], op["c"][i][q])
                ctx.set(dut.live, sum(v << i for i, v in enumerate(op["live"])))
            await ctx.tick()
            # after the tick of cycle t, E0 holds operation t and an output of latency lat
            # (counted from E0) shows operation t - lat
            for lat, check in ((lat_s, "s"), (lat_x, "x"), (lat_sum, "sum")):
                k = t - lat
                if not 0 <= k < len(ops):
                    continue
                scalar, ge, xs, total = want[k]
                if check == "s":
                    if ops[k]["op"] in SCALAR:
                        assert ctx.get(dut.scalar) == scalar, f"op {k} {ops[k]['op'].name}"
                    assert ctx.get(dut.cge) == ge, f"op {k} cge"
                elif check == "x":
                    got = [(ctx.get(dut.x_out[i][0]), ctx.get(dut.x_out[i][1]))
                           for i in range(lanes)]
                    assert got == xs, f"op {k}: x"
                else:
                    assert ctx.get(dut.lane_sum) == total, f"op {k}: lane sum"
                    checked += 1
        assert checked == len(ops)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
