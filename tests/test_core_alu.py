"""NeuronAlu against the golden interpreter: random valid programs, one instruction per cycle."""

import dataclasses
import random

import numpy as np
from amaranth.sim import Simulator

from neuroloom.contract.fixed import sat
from neuroloom.contract.isa import encode
from neuroloom.hw.core.alu import NeuronAlu
from neuroloom.sim.neuron import run_program
from tests.support.core import SMALL, corner_value, random_program

CFG = dataclasses.replace(SMALL, state_regs=8)


def test_alu_random_programs_match_golden():
    cfg = CFG
    dut = NeuronAlu(cfg)
    rng = random.Random(1234)
    W, CW = cfg.state_width, cfg.coef_width
    cases = []
    for _ in range(250):
        prog = random_program(rng, rng.randint(1, 6))
        regs = [corner_value(rng, W) for _ in range(8)]
        coef = [corner_value(rng, CW) for _ in range(8)]
        acc = corner_value(rng, cfg.acc_width)
        cases.append((prog, regs, coef, acc))

    async def bench(ctx):
        for n, (prog, regs, coef, acc) in enumerate(cases):
            state = np.array(regs, dtype=np.int64).reshape(1, 1, 8)
            exp_state, exp_emit, exp_pay = run_program(
                cfg, prog, state, np.array([[acc]]), np.array([coef], dtype=np.int64))
            cur, pred, emit, pay = list(regs), 0, False, 0
            ctx.set(dut.acc, sat(acc, W))
            for i in range(8):
                ctx.set(dut.coef[i], coef[i])
            for ins in prog:
                ctx.set(dut.instr.as_value(), encode(ins))
                for i in range(8):
                    ctx.set(dut.regs[i], cur[i])
                ctx.set(dut.pred, pred)
                cur = [ctx.get(dut.regs_out[i]) for i in range(8)]
                pred = ctx.get(dut.pred_out)
                if ctx.get(dut.emit_set):
                    emit, pay = bool(ctx.get(dut.emit_flag)), ctx.get(dut.emit_value)
            got = (cur, emit, pay if emit else 0)
            want = (list(exp_state[0, 0]), bool(exp_emit[0, 0]), int(exp_pay[0, 0]))
            assert got == want, f"case {n}: {prog}\nregs={regs} coef={coef} acc={acc}\n" \
                                f"got {got}\nwant {want}"

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
