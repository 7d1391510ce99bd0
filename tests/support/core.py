"""Shared helpers of the neuron-core tests: random valid microcode, corner-heavy values, random
core configurations and the flits the golden model says a core emits."""

from __future__ import annotations

import random

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.isa import Instr
from neuroloom.contract.layouts import Emit, Op, Operand

#: A small core for tests where memory depth does not matter.
SMALL = FabricConfig(mesh_w=3, mesh_h=2, neurons=32, axons=32, synapse_rows=64, route_words=64,
                     ucode_depth=64, groups=8)


def corner_value(rng: random.Random, width: int) -> int:
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    r = rng.random()
    if r < 0.25:
        return rng.choice([lo, hi, 0, 1, -1, lo + 1, hi - 1, 1 << (width - 2), -(1 << (width - 2))])
    if r < 0.5:
        return rng.randint(-64, 64)
    return rng.randint(lo, hi)


def random_instr(rng: random.Random, last: bool = False) -> Instr:
    """A random instruction that passes ``Instr.check``."""
    op = rng.choice([o for o in Op])

    def src():
        return rng.choice([*range(8), Operand.ACC, Operand.ZERO])

    rd, ra, rb = rng.randrange(8), src(), src()
    ck, cl = rng.randrange(8), rng.randrange(8)
    sh = rng.choice([0, 1, 2, rng.randrange(32), 15, 31, 16, 24])
    if op == Op.CMAD:
        rd = rng.randrange(7)
        ra = rng.choice([*range(7), Operand.ZERO])
        ck, cl = rng.randrange(7), rng.randrange(7)
    emit = Emit.NONE if op in (Op.NOP, Op.CGE) else rng.choice(
        [Emit.NONE, Emit.NONE, Emit.ALWAYS, Emit.NONZERO, Emit.IF_P])
    ins = Instr(op=op, rd=rd, ra=ra, rb=rb, ck=ck, cl=cl, sh=sh, emit=emit, last=last)
    ins.check()
    return ins


def random_program(rng: random.Random, length: int) -> list[Instr]:
    return [random_instr(rng, last=i == length - 1) for i in range(length)]


# -- random core configurations ---------------------------------------------------------------

def random_core_config(cfg: FabricConfig, rng: random.Random, xy: tuple[int, int], *,
                       programs=("s4d", "relu", "linear", "integrator", "lif"),
                       dense: float = 0.5, max_rows: int = 4, max_routes: int = 3,
                       schedules: bool = True):
    """A random but valid CoreConfig for the core at ``xy``: one group per program, random
    axons/synapses (sparse and dense rows, repeated targets), coefficients, state and routes
    (remote tiles, host channels and loopback to this core's axons)."""
    from neuroloom.contract.coreconfig import CoreConfig, Group, Route, Synapse
    from neuroloom.firmware.asm import load_program

    cc = CoreConfig(cfg)
    L = cfg.synapse_lanes
    n = 0
    per = max(1, cfg.neurons // max(1, len(programs)))
    for name in programs:
        size = rng.randint(1, per)
        if n + size > cfg.neurons:
            break
        pc = cc.add_program(load_program(name))
        period, start = (rng.choice([1, 1, 1, 2, 3]), rng.choice([0, 0, 1, 3])) if schedules \
            else (1, 0)
        cc.groups.append(Group(n, size, pc, period, start))
        for k in range(n, n + size):
            c = [rng.randint(-(1 << 15), (1 << 15) - 1) for _ in range(8)]
            if name == "s4d":
                c[0] = rng.randint(26000, 32700)
                c[1] = rng.randint(-3000, 3000)
            if name == "lif":
                c[0], c[1] = rng.randint(2000, 4000), rng.randint(100, 4096)
                c[2] = rng.randint(0, 3000)
            cc.coef[k] = [corner_value(rng, cfg.coef_width) if rng.random() < 0.05 else v
                          for v in c]
            cc.state[k] = [corner_value(rng, cfg.state_width) if rng.random() < 0.1 else
                           rng.randint(-5000, 5000) for _ in range(cfg.state_regs)]
        n += size
    n_axons = rng.randint(2, cfg.axons)
    rows_left = cfg.synapse_rows
    for _ in range(n_axons):
        k = min(rows_left, rng.randint(0, max_rows))
        rows_left -= k
        syns = []
        rep = rng.randrange(cfg.neurons // L)
        for _ in range(k):
            row = rep if rng.random() < 0.3 else rng.randrange(cfg.neurons // L)
            mask = (1 << L) - 1 if rng.random() < dense else 1 << rng.randrange(L)
            if rng.random() < 0.1:
                mask = rng.randrange(1 << L)
            w = tuple(corner_value(rng, cfg.weight_width) for _ in range(L))
            syns.append(Synapse(row, mask, w))
        cc.add_axon(syns, rng.choice([0, 0, 1, 4, 7, 8, 12]))
    words = cfg.route_words
    for g in cc.groups:
        for k in range(g.first, g.first + g.count):
            rts = []
            for _ in range(rng.randint(0, max_routes)):
                if words == 0:
                    break
                words -= 1
                kind = rng.random()
                if kind < 0.3:
                    rts.append(Route(host=True, target=rng.randrange(1 << cfg.INDEX_BITS)))
                elif kind < 0.6:
                    rts.append(Route(xy[0], xy[1], rng.randrange(n_axons)))
                else:
                    while True:
                        x, y = rng.randrange(cfg.mesh_w), rng.randrange(cfg.mesh_h)
                        if (x, y) != tuple(xy) or cfg.num_cores == 1:
                            break
                    rts.append(Route(x, y, rng.randrange(cfg.axons)))
            cc.routes[k] = rts
    return cc


def expected_flits(cfg: FabricConfig, cc, xy, core: int, result, sample: int = 0):
    """Multiset (sorted list) of the flits the core must emit for golden ``StepResult``:
    ``(dst_x, dst_y, kind, addr, data)``; loopback routes never leave the core."""
    from neuroloom.contract.layouts import FlitKind
    out = []
    base = core * cfg.neurons
    for n, rts in cc.routes.items():
        if not result.emit[sample, base + n]:
            continue
        data = int(result.spikes[sample, base + n]) & 0xFFFFFFFF
        for r in rts:
            if r.host:
                out.append((0, 0, int(FlitKind.HOST_OUT), r.target, data))
            elif (r.x, r.y) != tuple(xy):
                out.append((r.x, r.y, int(FlitKind.SPIKE), r.target, data))
    return sorted(out)
