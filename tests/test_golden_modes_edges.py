"""``MODES`` at the widest configuration the contract accepts (``state_width`` 32,
``coef_width`` 18, shifts 0 and 31) against the frozen per-group interpreter
(``tests/support/golden_reference.py``, int64 numpy): mode states and inputs on both saturation
bounds, coefficients of the largest magnitude, values whose rounding is an exact tie. A batch
runs the mode loop of :mod:`neuroloom.sim.kernels` in float64 (exact by the argument of its
``_modes_batch``), one sample in int64: both must equal the interpreter bit for bit. The
emitted payloads (both bounds of 32 bits) reach 9-bit weights of both bounds at synapse shifts
0 to 31: the delivery's biased logical shift (``deliver``) on its widest products."""

from __future__ import annotations

import random

import numpy as np
import pytest

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.coreconfig import CoreConfig, Group, Route, Synapse
from neuroloom.contract.isa import Instr, encode
from neuroloom.contract.layouts import MODE_COEFS, MODE_STATE, Emit, Op, Operand
from neuroloom.sim.golden import GoldenFabric
from tests.support.golden_reference import ReferenceFabric

CFG = FabricConfig(mesh_w=2, mesh_h=1, neurons=16, axons=8, synapse_rows=16, route_words=32,
                   ucode_depth=64, groups=4, modes=64, state_width=32, coef_width=18,
                   weight_width=9, acc_width=48)
LO, HI = -(1 << 31), (1 << 31) - 1
#: state values: both bounds, and halves / three quarters of 2**31 (ties at shifts 30 and 31)
STATES = [LO, HI, LO + 1, HI - 1, 0, 1, -1, 1 << 30, -(1 << 30), 3 << 29, -(3 << 29), 1 << 29,
          -(1 << 29)]
#: coefficients: the largest magnitudes of 18 bits, and small ones (exact ties survive)
COEFS = [-(1 << 17), (1 << 17) - 1, -(1 << 17) + 1, 0, 1, -1, 2, 1 << 16, -(1 << 16)]
#: (sh, so) of the MODES instructions
SHIFTS = [(0, 0), (31, 31), (0, 31), (31, 0), (30, 1), (1, 30), (17, 14)]


def pick(rng: random.Random, edges: list[int], width: int) -> int:
    return rng.choice(edges) if rng.random() < 0.8 else rng.randint(-(1 << (width - 1)),
                                                                     (1 << (width - 1)) - 1)


def modes_program(rng: random.Random, sh: int, so: int) -> list[int]:
    """``MODES`` on ACC, on a register loaded with a saturated constant, or on a persistent
    register; emitting its output."""
    prog = []
    rb = rng.choice([Operand.ACC, Operand.ACC, 1, 5])
    if rb == 5:                                # R5 = sat(C[k] << 31): a bound, or 0
        prog.append(Instr(Op.LDC, rd=5, ck=rng.randrange(8), sh=31))
    prog.append(Instr(Op.MODES, rd=rng.choice([0, 2, 6]), rb=rb, sh=sh, so=so,
                      emit=Emit.ALWAYS))
    if rng.random() < 0.5:                     # a second MODES sees the state the first wrote
        prog.append(Instr(Op.MODES, rd=3, rb=Operand.ACC, sh=so, so=sh, emit=Emit.NONZERO))
    prog[-1] = Instr(**{**prog[-1].__dict__, "last": True})
    return [encode(i) for i in prog]


def edge_core(rng: random.Random, xy) -> CoreConfig:
    cc = CoreConfig(CFG)
    n = mode = 0
    for sh, so in rng.sample(SHIFTS, CFG.groups):
        count, M = rng.randint(1, 3), rng.choice([1, 2, 5])
        cc.groups.append(Group(n, count, cc.add_program(modes_program(rng, sh, so)), 1, 0,
                               mode_base=mode, modes=M))
        for k in range(n, n + count):
            cc.coef[k] = [pick(rng, COEFS, CFG.coef_width) for _ in range(CFG.coefs)]
            cc.state[k] = [pick(rng, STATES, CFG.state_width) for _ in range(CFG.state_regs)]
        for e in range(mode, mode + count * M):
            cc.mcoef[e] = [pick(rng, COEFS, CFG.coef_width) for _ in range(MODE_COEFS)]
            cc.mstate[e] = [pick(rng, STATES, CFG.state_width) for _ in range(MODE_STATE)]
        n, mode = n + count, mode + count * M
    L = CFG.synapse_lanes
    for _ in range(3):                         # weights of 9 bits: the inputs saturate
        cc.add_axon([Synapse(row, (1 << L) - 1,
                             tuple(rng.choice([-256, 255, 1, -1]) for _ in range(L)))
                     for row in range(-(-n // L))], rng.choice([0, 8, 30, 31]))
    for k in range(n):
        cc.routes[k] = [Route(host=True, target=k), Route(xy[0], xy[1], rng.randrange(3))]
    return cc


@pytest.mark.parametrize("B", [1, 37])
@pytest.mark.parametrize("seed", range(4))
def test_modes_at_the_widest_config_equal_the_interpreter(seed, B):
    rng = random.Random(seed)
    writes = [(core,) + w for core in range(CFG.num_cores)
              for w in edge_core(rng, CFG.core_xy(core)).writes()]
    fast, ref = GoldenFabric(CFG, batch=B), ReferenceFabric(CFG, batch=B)
    fast.load(writes)
    ref.load(writes)
    prng = np.random.default_rng(seed)
    bounds = set()
    for t in range(12):
        for core in range(CFG.num_cores):
            p = prng.choice(np.array(STATES), B) if t % 2 else prng.integers(LO, HI, B,
                                                                           endpoint=True)
            fast.inject(core, t % 3, p)
            ref.inject(core, t % 3, p)
        a, b = fast.step(), ref.step()
        where = f"seed {seed} B {B} step {t}"
        for name in ("channels", "payload", "valid", "emit", "spikes"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name),
                                          err_msg=f"{where}: {name}")
        for name in ("state", "mstate", "acc", "counters"):
            np.testing.assert_array_equal(getattr(fast, name), getattr(ref, name),
                                          err_msg=f"{where}: {name}")
        bounds |= set(np.unique(ref.mstate)) & {LO, HI}
        bounds |= set(np.unique(b.payload[b.valid])) & {LO, HI}
    assert bounds == {LO, HI}, f"the run should saturate at both bounds, reached {bounds}"
