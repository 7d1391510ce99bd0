"""The golden model's whole-fabric execution plan against the per-group interpreter it replaced
(``tests/support/golden_reference.py``, frozen): random multi-core images (shipped programs,
channel neurons with MODES, random straight-line programs, schedules, loopback and remote routes,
repeated synapse targets), a batch of samples, injections; every step's host outputs, spikes,
registers, accumulators, mode state and counters equal, and after configuration rewrites too."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.coreconfig import CoreConfig, Group, Route, Synapse
from neuroloom.contract.isa import Instr, encode
from neuroloom.contract.layouts import MODE_COEFS, MODE_STATE, Emit, Mem, Op, Operand
from neuroloom.sim.golden import GoldenFabric
from tests.support.channel import corner, random_channel_core
from tests.support.core import random_core_config, random_program
from tests.support.golden_reference import ReferenceFabric

CFG = FabricConfig(mesh_w=2, mesh_h=2, neurons=16, axons=16, synapse_rows=48, route_words=40,
                   ucode_depth=64, groups=4, modes=48)


def random_program_core(rng: random.Random, cfg: FabricConfig, xy) -> CoreConfig:
    """Groups running random programs (any instruction, MODES included, 0..3 modes each)."""
    cc = CoreConfig(cfg)
    n = mode = 0
    for _ in range(rng.randint(1, 3)):
        count, M = rng.randint(1, 4), rng.choice([0, 1, 3])
        words = [encode(i) for i in random_program(rng, rng.randint(1, 8))]
        if n + count > cfg.neurons or mode + count * M > cfg.modes or \
                len(cc.ucode) + len(words) > cfg.ucode_depth:
            break
        cc.groups.append(Group(n, count, cc.add_program(words), rng.choice([1, 2]),
                               rng.choice([0, 1]), mode_base=mode, modes=M))
        for k in range(n, n + count):
            cc.coef[k] = [corner(rng, cfg.coef_width) for _ in range(cfg.coefs)]
            cc.state[k] = [corner(rng, cfg.state_width) for _ in range(cfg.state_regs)]
        for e in range(mode, mode + count * M):
            cc.mcoef[e] = [corner(rng, cfg.coef_width) for _ in range(MODE_COEFS)]
            cc.mstate[e] = [corner(rng, cfg.state_width) for _ in range(MODE_STATE)]
        n, mode = n + count, mode + count * M
    L = cfg.synapse_lanes
    for _ in range(3):
        cc.add_axon([Synapse(rng.randrange(cfg.neurons // L), rng.randrange(1, 1 << L),
                             tuple(rng.randint(-128, 127) for _ in range(L)))
                     for _ in range(rng.randint(0, 3))], rng.choice([0, 3, 7]))
    for k in range(n):
        cc.routes[k] = [Route(host=True, target=16 + k)] if rng.random() < 0.5 else []
        for _ in range(rng.randint(0, 2)):
            cc.routes[k].append(Route(rng.randrange(cfg.mesh_w), rng.randrange(cfg.mesh_h),
                                      rng.randrange(3)))
    return cc


def random_image(seed: int):
    rng = random.Random(seed)
    writes = []
    for core in range(CFG.num_cores):
        xy = CFG.core_xy(core)
        kind = (seed + core) % 3
        if kind == 0:
            cc = random_core_config(CFG, rng, xy, programs=("s4d", "lif", "relu", "integrator"))
        elif kind == 1:
            cc = random_channel_core(rng, CFG, max_modes=5, xy=xy)
        else:
            cc = random_program_core(rng, CFG, xy)
        writes += [(core,) + w for w in cc.writes()]
    return writes


def check_equal(fast: GoldenFabric, ref: ReferenceFabric, a, b, where: str):
    np.testing.assert_array_equal(a.channels, b.channels, err_msg=f"{where}: channels")
    for name in ("payload", "valid", "emit", "spikes"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name),
                                      err_msg=f"{where}: {name}")
    for name in ("state", "acc", "mstate", "counters"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(ref, name),
                                      err_msg=f"{where}: {name}")


# one sample runs the modes as the inner loop; 37 = whole 8- and 4-lane vectors and a remainder
@pytest.mark.parametrize("B", [1, 3, 37])
@pytest.mark.parametrize("seed", range(6))
def test_plan_equals_reference_on_random_images(seed, B):
    rng = np.random.default_rng(seed)
    fast, ref = GoldenFabric(CFG, batch=B), ReferenceFabric(CFG, batch=B)
    writes = random_image(seed)
    fast.load(writes)
    ref.load(writes)
    emitted = 0
    for t in range(16):
        if t == 9:                         # a schedule change and a coefficient rewrite mid-run
            for f in (fast, ref):
                for core in range(CFG.num_cores):
                    word = f.read(core, Mem.GROUP, 0, 0)
                    if word:
                        f.write(core, Mem.GROUP, 0, 0, word ^ (1 << 20))
                f.write(1, Mem.COEF, 0, 6, 12345)
                f.write(2, Mem.MCOEF, 0, 0, 0xFFFF9000)
        for _ in range(rng.integers(0, 4)):
            core, axon = int(rng.integers(CFG.num_cores)), int(rng.integers(CFG.axons))
            p = rng.integers(-(1 << 23), 1 << 23, B)
            fast.inject(core, axon, p)
            ref.inject(core, axon, p)
        a, b = fast.step(), ref.step()
        check_equal(fast, ref, a, b, f"seed {seed} step {t}")
        emitted += int(b.emit.sum())
    assert emitted > 0, "the random image should emit spikes (the test would be vacuous)"


def test_plan_equals_reference_after_clear_and_batch_one():
    writes = random_image(7)
    fast, ref = GoldenFabric(CFG), ReferenceFabric(CFG)
    for f in (fast, ref):
        f.load(writes)
        for _ in range(3):
            f.inject(0, 1, 1000)
            f.step()
        f.clear()
    for t in range(5):
        fast.inject(3, 2, -77)
        ref.inject(3, 2, -77)
        check_equal(fast, ref, fast.step(), ref.step(), f"after clear, step {t}")


def test_clear_zeroes_rows_outside_the_plan():
    """CLEAR zeroes every register, accumulator and mode entry, also those no step touches (only
    written) and those of groups a table rewrite dropped."""
    writes = random_image(4)
    fast, ref = GoldenFabric(CFG, batch=5), ReferenceFabric(CFG, batch=5)
    for f in (fast, ref):
        f.load(writes)
        for core in range(CFG.num_cores):         # the last neurons, mode entry: in no group
            f.write(core, Mem.STATE, CFG.neurons - 1, 0, 0x123)
            f.write(core, Mem.ACC, CFG.neurons - 2, 1, 0xFFFFFF00)
            f.write(core, Mem.MSTATE, CFG.modes - 1, 1, 77)
        for _ in range(3):
            f.inject(0, 1, 1000)
            f.step()
        for core in range(CFG.num_cores):         # drop group 0 of every core
            f.write(core, Mem.GROUP, 0, 0, 0)
            f.write(core, Mem.GROUP, 0, 1, 0)
        f.inject(1, 0, -500)
        f.step()
    assert fast.state.any() and fast.mstate.any() and fast.acc.any()
    check_equal(fast, ref, fast.step(), ref.step(), "before clear")
    for f in (fast, ref):
        f.clear()
    for name in ("state", "acc", "mstate"):
        assert not getattr(ref, name).any()
        np.testing.assert_array_equal(getattr(fast, name), getattr(ref, name), err_msg=name)
    for t in range(3):
        for f in (fast, ref):
            f.inject(2, 1, [5000, -3, 0, 12, 7])
        check_equal(fast, ref, fast.step(), ref.step(), f"after clear, step {t}")


def test_interleaved_schedules_of_one_kernel_gather_their_mode_state():
    """Three channel groups of one program on periods (1, 0), (2, 0), (2, 1): at odd steps the
    kernel's active rows are not one range (their mode state columns neither)."""
    from neuroloom.firmware.asm import load_program

    rng = random.Random(5)
    cc = CoreConfig(CFG)
    pc = cc.add_program(load_program("channel", {"FRAC": 14, "OUT_SHIFT": 14}))
    M = 3
    for i, (period, start) in enumerate([(1, 0), (2, 0), (2, 1)]):
        cc.groups.append(Group(2 * i, 2, pc, period, start, mode_base=2 * i * M, modes=M))
    for k in range(6):
        cc.coef[k] = [corner(rng, CFG.coef_width) for _ in range(CFG.coefs)]
        cc.routes[k] = [Route(host=True, target=k), Route(0, 0, 0)]
    for e in range(6 * M):
        cc.mcoef[e] = [rng.randint(12000, 16300), rng.randint(-3000, 3000), 16384, 0,
                       rng.randint(-16000, 16000), rng.randint(-16000, 16000)]
    cc.add_axon([Synapse(0, 0b1111, (3, -5, 7, 100)), Synapse(1, 0b0011, (-9, 11, 0, 0))], 2)
    writes = [(0,) + w for w in cc.writes()]
    fast, ref = GoldenFabric(CFG, batch=2), ReferenceFabric(CFG, batch=2)
    fast.load(writes)
    ref.load(writes)
    rows = [len(r.gid) for r in fast._phase(1).runs]
    first = fast._phase(1).runs[0].mrow                   # each neuron's first mode entry
    assert rows == [4] and not (np.diff(first) == M).all(), first
    for t in range(8):
        for f in (fast, ref):
            f.inject(0, 0, [1000 * (t + 1), -777])
        check_equal(fast, ref, fast.step(), ref.step(), f"step {t}")


#: one program per opcode, each reading persistent registers it has not written (the kernel
#: loads only those, and stores back only the registers a program writes)
OPERAND_PROGRAMS = [
    [Instr(Op.MAD, rd=3, ra=1, ck=0, rb=2, cl=1, sh=2, emit=Emit.ALWAYS)],
    [Instr(Op.CMAD, rd=1, ra=0, ck=0, rb=3, cl=2, sh=3, emit=Emit.ALWAYS)],
    [Instr(Op.CMAD, rd=2, ra=Operand.ZERO, ck=4, rb=1, cl=6, sh=1), Instr(Op.ADD, rd=0, ra=3,
                                                                         rb=2, emit=Emit.ALWAYS)],
    [Instr(Op.ADD, rd=0, ra=2, rb=3, emit=Emit.NONZERO)],
    [Instr(Op.SUB, rd=3, ra=1, rb=0, emit=Emit.ALWAYS)],
    [Instr(Op.MAX, rd=2, ra=3, rb=Operand.ACC, emit=Emit.ALWAYS)],
    [Instr(Op.MIN, rd=1, ra=Operand.ACC, rb=0, emit=Emit.ALWAYS)],
    [Instr(Op.SHR, rd=0, ra=3, sh=4, emit=Emit.ALWAYS)],
    [Instr(Op.CGE, ra=1, rb=2), Instr(Op.SEL, rd=3, ra=0, rb=2, emit=Emit.IF_P)],
    [Instr(Op.NOP), Instr(Op.LDC, rd=1, ck=5, sh=3), Instr(Op.SEL, rd=2, ra=1, rb=3,
                                                           emit=Emit.ALWAYS)],
    [Instr(Op.MODES, rd=0, rb=2, sh=14, so=14, emit=Emit.ALWAYS)],
    [Instr(Op.ADD, rd=6, ra=6, rb=1), Instr(Op.MAX, rd=0, ra=6, rb=7, emit=Emit.ALWAYS)],
]


@pytest.mark.parametrize("B", [1, 3])
def test_every_opcode_reads_the_registers_it_did_not_write(B):
    cfg = FabricConfig(mesh_w=1, mesh_h=1, neurons=32, axons=4, synapse_rows=16,
                       route_words=32, ucode_depth=64, groups=len(OPERAND_PROGRAMS), modes=8)
    rng = random.Random(11)
    cc = CoreConfig(cfg)
    for g, prog in enumerate(OPERAND_PROGRAMS):
        prog = prog[:-1] + [replace(prog[-1], last=True)]
        M = 2 if prog[0].op == Op.MODES else 0
        cc.groups.append(Group(2 * g, 2, cc.add_program([encode(i) for i in prog]), 1, 0,
                               mode_base=0, modes=M))
        for k in (2 * g, 2 * g + 1):            # nonzero, and far from saturating
            cc.coef[k] = [rng.choice([-1, 1]) * rng.randint(1, 5000) for _ in range(cfg.coefs)]
            cc.state[k] = [rng.choice([-1, 1]) * rng.randint(1, 5000)
                           for _ in range(cfg.state_regs)]
            cc.routes[k] = [Route(host=True, target=k)]
    for e in range(4):
        cc.mcoef[e] = [corner(rng, cfg.coef_width) for _ in range(MODE_COEFS)]
        cc.mstate[e] = [corner(rng, cfg.state_width) for _ in range(MODE_STATE)]
    n = 2 * len(OPERAND_PROGRAMS)
    cc.add_axon([Synapse(r, 0b1111, (5, -7, 100, -128)) for r in range(n // 4)], 0)
    writes = [(0,) + w for w in cc.writes()]
    fast, ref = GoldenFabric(cfg, batch=B), ReferenceFabric(cfg, batch=B)
    fast.load(writes)
    ref.load(writes)
    for t in range(3):
        for f in (fast, ref):
            f.inject(0, 0, [1000 * (t + 1) - 3000 * b for b in range(B)])
        check_equal(fast, ref, fast.step(), ref.step(), f"B {B} step {t}")
