"""Random channel-neuron core configurations (MODES programs, mode entries) shared by the
amaranth.sim and the cocotb tests of channel neurons."""

from __future__ import annotations

import random

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.coreconfig import CoreConfig, Group, Route, Synapse
from neuroloom.contract.isa import Instr, encode
from neuroloom.contract.layouts import MODE_COEFS, MODE_STATE, Emit, Op, Operand
from neuroloom.firmware.asm import load_program

#: a core whose mode memory is small enough to fill in a test
CHANNEL_CFG = FabricConfig(mesh_w=2, mesh_h=1, neurons=16, axons=16, synapse_rows=48,
                           route_words=40, ucode_depth=48, groups=4, modes=48)


def corner(rng: random.Random, width: int) -> int:
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    r = rng.random()
    if r < 0.2:
        return rng.choice([lo, hi, 0, 1, -1, lo + 1, hi - 1])
    return rng.randint(-3000, 3000) if r < 0.6 else rng.randint(lo, hi)


def random_channel_program(rng: random.Random) -> list[int]:
    """A straight-line program with one or two MODES among random ALU instructions."""
    prog = []
    for _ in range(rng.randint(0, 2)):
        prog.append(Instr(rng.choice([Op.ADD, Op.LDC, Op.SHR, Op.MAX]), rd=rng.randrange(8),
                          ra=rng.choice([*range(8), Operand.ACC]), rb=Operand.ACC,
                          ck=rng.randrange(8), sh=rng.choice([0, 1, 3])).canonical())
    for _ in range(rng.randint(1, 2)):
        prog.append(Instr(Op.MODES, rd=rng.randrange(8),
                          rb=rng.choice([*range(8), Operand.ACC, Operand.ZERO]),
                          sh=rng.choice([0, 1, 14, 15, 31, rng.randrange(32)]),
                          so=rng.choice([0, 1, 15, 19, 31, rng.randrange(32)]),
                          emit=rng.choice(list(Emit))))
    if rng.random() < 0.5:
        prog.append(Instr(Op.MAX, rd=prog[-1].rd, ra=prog[-1].rd, rb=Operand.ZERO,
                          emit=Emit.NONZERO))
    prog[-1] = Instr(**{**prog[-1].__dict__, "last": True})
    return [encode(i) for i in prog]


def random_channel_core(rng: random.Random, cfg: FabricConfig, max_modes: int,
                        xy=(0, 0)) -> CoreConfig:
    """Channel groups with mode counts in 1..max_modes (the shipped program and random ones),
    random synapses onto them, host routes and loopback routes."""
    cc = CoreConfig(cfg)
    n = mode = 0
    for gi in range(cfg.groups):
        M = rng.choice([1, max_modes, rng.randint(1, max_modes)])
        count = rng.randint(1, 4)
        if n + count > cfg.neurons or mode + count * M > cfg.modes:
            break
        words = (load_program("channel", {"FRAC": 14, "OUT_SHIFT": rng.choice([14, 19])})
                 if gi == 0 else random_channel_program(rng))
        if len(cc.ucode) + len(words) > cfg.ucode_depth:
            break
        cc.groups.append(Group(n, count, cc.add_program(words), mode_base=mode, modes=M,
                               period=rng.choice([1, 1, 2]), start=rng.choice([0, 0, 1])))
        for k in range(n, n + count):
            cc.coef[k] = [corner(rng, cfg.coef_width) for _ in range(cfg.coefs)]
            cc.state[k] = [corner(rng, cfg.state_width) for _ in range(cfg.state_regs)]
        for e in range(mode, mode + count * M):
            if rng.random() < 0.6:   # a realistic stable mode
                c = [rng.randint(12000, 16300), rng.randint(-3000, 3000),
                     rng.randint(-16384, 16384), rng.randint(-16384, 16384),
                     rng.randint(-16000, 16000), rng.randint(-16000, 16000)]
            else:
                c = [corner(rng, cfg.coef_width) for _ in range(MODE_COEFS)]
            cc.mcoef[e] = c
            cc.mstate[e] = [corner(rng, cfg.state_width) for _ in range(MODE_STATE)]
        n, mode = n + count, mode + count * M
    L = cfg.synapse_lanes
    for _ in range(3):
        syn = [Synapse(rng.randrange(max(1, -(-n // L))), rng.randrange(1, 1 << L),
                       tuple(rng.randint(-128, 127) for _ in range(L))) for _ in range(2)]
        cc.add_axon(syn, rng.choice([0, 2, 6]))
    for k in range(n):
        cc.routes[k] = [Route(host=True, target=k)]
        if rng.random() < 0.5:
            cc.routes[k].append(Route(xy[0], xy[1], rng.randrange(len(cc.axons))))
    return cc
