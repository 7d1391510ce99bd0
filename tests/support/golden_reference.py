"""The golden model as it was before the whole-fabric execution plan: one group at a time,
the microcode interpreted instruction by instruction, counters from dense products. Slow and
obviously the spec (``docs/architecture.md`` sections 5-7); kept frozen here as the test oracle
that the fast plan of :mod:`neuroloom.sim.golden` is checked against on random images
(``tests/test_golden_fast.py``). Do not optimize this file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.coreconfig import ConfigError, Group
from neuroloom.contract.fixed import rnd, sat, wrap
from neuroloom.contract.isa import Instr, decode
from neuroloom.contract.layouts import (
    MODE_COEFS,
    MODE_STATE,
    Counter,
    Emit,
    Mem,
    Op,
    Operand,
    axon_layout,
    group_layout,
    mem_depth,
    mem_parts,
    route_index_layout,
    route_layout,
    synapse_layout,
    to_signed,
    unpack,
)

__all__ = ["ReferenceFabric", "StepResult", "run_program"]

_STRUCT_MEMS = (Mem.AXON, Mem.SYNAPSE, Mem.ROUTE_INDEX, Mem.ROUTE, Mem.UCODE, Mem.GROUP)
ARCH_COUNTERS = (Counter.NEURON_UPDATES, Counter.SYN_OPS, Counter.SPIKES_SENT,
                 Counter.SPIKES_RECEIVED)


@dataclass
class StepResult:
    """Host outputs of one step: ``payload[b, i]`` on channel ``channels[i]`` if ``valid[b, i]``."""
    step: int
    channels: np.ndarray     # (K,)
    payload: np.ndarray      # (B, K)
    valid: np.ndarray        # (B, K) bool
    emit: np.ndarray         # (B, cores*neurons) bool: which neurons emitted a spike
    spikes: np.ndarray       # (B, cores*neurons) payloads (0 where not emitted)


class ReferenceFabric:
    """Bit-exact model of a NeuroLoom fabric.

    Parameters
    ----------
    cfg : the fabric's parameters
    batch : number of independent samples run side by side (configuration is shared)
    """

    def __init__(self, cfg: FabricConfig, batch: int = 1):
        if batch < 1:
            raise ValueError(f"batch={batch!r} must be >= 1")
        self.cfg, self.batch = cfg, batch
        C, N = cfg.num_cores, cfg.neurons
        self._raw = {m: np.zeros((C, mem_depth(cfg, m), mem_parts(cfg, m)), dtype=np.uint64)
                     for m in _STRUCT_MEMS}
        self.state = np.zeros((batch, C * N, cfg.state_regs), dtype=np.int64)
        self.coef = np.zeros((C * N, cfg.coefs), dtype=np.int64)
        self.acc = np.zeros((batch, 2, C * N), dtype=np.int64)
        self.mstate = np.zeros((batch, C * cfg.modes, MODE_STATE), dtype=np.int64)
        self.mcoef = np.zeros((C * cfg.modes, MODE_COEFS), dtype=np.int64)
        self.counters = np.zeros((batch, C, len(Counter)), dtype=np.int64)
        self.t = 0
        self._plan = None

    # -- configuration access (what CFG_WRITE / CFG_READ flits do) -------------------------------
    def _check_addr(self, core, mem, index, part):
        cfg = self.cfg
        if not 0 <= core < cfg.num_cores:
            raise ConfigError(f"core {core} outside the {cfg.mesh_w}x{cfg.mesh_h} mesh")
        mem = Mem(mem)
        if not 0 <= index < mem_depth(cfg, mem) or not 0 <= part < mem_parts(cfg, mem):
            raise ConfigError(f"config address {mem.name}[{index}].{part} out of range "
                              f"(depth {mem_depth(cfg, mem)}, parts {mem_parts(cfg, mem)})")
        return mem

    def write(self, core: int, mem, index: int, part: int, value: int) -> None:
        """One configuration write of a 32-bit word part."""
        cfg, mem = self.cfg, self._check_addr(core, mem, index, part)
        value = int(value) & 0xFFFFFFFF
        gid = core * cfg.neurons + index
        if mem in _STRUCT_MEMS:
            self._raw[mem][core, index, part] = value
            self._plan = None
        elif mem == Mem.STATE:
            self.state[:, gid, part] = to_signed(value, cfg.state_width)
        elif mem == Mem.COEF:
            self.coef[gid, part] = to_signed(value, cfg.coef_width)
        elif mem == Mem.ACC:
            self.acc[:, part, gid] = to_signed(value, min(32, cfg.acc_width))
        elif mem == Mem.MSTATE:
            self.mstate[:, core * cfg.modes + index, part] = to_signed(value, cfg.state_width)
        elif mem == Mem.MCOEF:
            self.mcoef[core * cfg.modes + index, part] = to_signed(value, cfg.coef_width)
        elif mem == Mem.COUNTER:
            self.counters[:, core, index] = value

    def read(self, core: int, mem, index: int, part: int, sample: int = 0) -> int:
        """One configuration read: the 32-bit word part as the fabric answers it."""
        cfg, mem = self.cfg, self._check_addr(core, mem, index, part)
        gid = core * cfg.neurons + index
        mid = core * cfg.modes + index
        if mem in _STRUCT_MEMS:
            return int(self._raw[mem][core, index, part])
        value = {Mem.STATE: lambda: self.state[sample, gid, part],
                 Mem.COEF: lambda: self.coef[gid, part],
                 Mem.ACC: lambda: self.acc[sample, part, gid],
                 Mem.MSTATE: lambda: self.mstate[sample, mid, part],
                 Mem.MCOEF: lambda: self.mcoef[mid, part],
                 Mem.COUNTER: lambda: self.counters[sample, core, index]}[mem]()
        return int(value) & 0xFFFFFFFF

    def load(self, writes) -> None:
        """Apply ``(core, mem, index, part, value)`` writes (a config image's payload)."""
        for core, mem, index, part, value in writes:
            self.write(core, mem, index, part, value)

    def _word(self, mem: Mem, core: int, index: int) -> int:
        parts = self._raw[mem][core, index]
        return sum(int(v) << (32 * p) for p, v in enumerate(parts))

    # -- execution plan (the config tables, flattened for vectorized execution) ------------------
    def _axon_lanes(self, core: int, axon: int):
        """(dst neuron gids, weights, shifts) of one axon's synapse block."""
        cfg = self.cfg
        if not 0 <= axon < cfg.axons:
            raise ConfigError(f"core {cfg.core_xy(core)}: axon {axon} >= {cfg.axons}")
        a = unpack(axon_layout(cfg), self._word(Mem.AXON, core, axon))
        if a["base"] + a["count"] > cfg.synapse_rows:
            raise ConfigError(f"core {cfg.core_xy(core)}: axon {axon} synapse block "
                              f"{a['base']}+{a['count']} beyond {cfg.synapse_rows} rows")
        dst, w = [], []
        for r in range(a["base"], a["base"] + a["count"]):
            s = unpack(synapse_layout(cfg), self._word(Mem.SYNAPSE, core, r))
            for j in range(cfg.synapse_lanes):
                if s["mask"] >> j & 1:
                    neuron = s["row"] * cfg.synapse_lanes + j
                    if neuron >= cfg.neurons:
                        raise ConfigError(f"core {cfg.core_xy(core)}: synapse row {r} lane {j} "
                                          f"targets neuron {neuron} >= {cfg.neurons}")
                    dst.append(core * cfg.neurons + neuron)
                    w.append(s["weights"][j])
        return dst, w, [a["shift"]] * len(dst)

    def _program(self, core: int, pc: int):
        cfg, prog = self.cfg, []
        while True:
            if pc >= cfg.ucode_depth:
                raise ConfigError(f"core {cfg.core_xy(core)}: program runs past the end of "
                                  f"microcode memory (no 'last' instruction)")
            ins = decode(self._word(Mem.UCODE, core, pc))
            prog.append(ins)
            if ins.last:
                return prog
            pc += 1

    def plan(self):
        if self._plan is not None:
            return self._plan
        cfg = self.cfg
        C, N = cfg.num_cores, cfg.neurons
        groups = []
        src, dst, w, s = [], [], [], []
        host_src, host_ch = [], []
        sent = np.zeros((C * N, C), dtype=np.int64)       # routes fired per emitting neuron
        recv = np.zeros((C * N, C), dtype=np.int64)       # spikes delivered, per receiving core
        ops = np.zeros((C * N, C), dtype=np.int64)        # synaptic lane ops, per receiving core
        owner = -np.ones((C, N), dtype=np.int64)
        for core in range(C):
            for gi in range(cfg.groups):
                g = unpack(group_layout(cfg), self._word(Mem.GROUP, core, gi))
                if g["count"] == 0:
                    continue
                grp = Group(g["first"], g["count"], g["pc"], g["period"], g["start"],
                            g["mode_base"], g["modes"])
                mb, mn = grp.mode_span()
                if grp.first + grp.count > N or grp.period == 0 or mb + mn > cfg.modes:
                    raise ConfigError(f"core {cfg.core_xy(core)}: group {gi} is invalid "
                                      f"({grp})")
                if (owner[core, grp.first:grp.first + grp.count] >= 0).any():
                    raise ConfigError(f"core {cfg.core_xy(core)}: group {gi} overlaps another")
                owner[core, grp.first:grp.first + grp.count] = gi
                sl = slice(core * N + grp.first, core * N + grp.first + grp.count)
                ml = slice(core * cfg.modes + mb, core * cfg.modes + mb + mn)
                groups.append((core, grp, self._program(core, grp.pc), sl, ml))
                for n in range(grp.first, grp.first + grp.count):
                    gid = core * N + n
                    ri = unpack(route_index_layout(cfg), self._word(Mem.ROUTE_INDEX, core, n))
                    if ri["base"] + ri["count"] > cfg.route_words:
                        raise ConfigError(f"core {cfg.core_xy(core)}: neuron {n} routes "
                                          f"{ri['base']}+{ri['count']} beyond memory")
                    for k in range(ri["base"], ri["base"] + ri["count"]):
                        r = unpack(route_layout(cfg), self._word(Mem.ROUTE, core, k))
                        sent[gid, core] += 1
                        if r["host"]:
                            host_src.append(gid)
                            host_ch.append(r["target"])
                            continue
                        if not (r["x"] < cfg.mesh_w and r["y"] < cfg.mesh_h):
                            raise ConfigError(f"core {cfg.core_xy(core)}: neuron {n} routes "
                                              f"to tile ({r['x']},{r['y']}) outside the mesh")
                        d = cfg.core_index(r["x"], r["y"])
                        dd, ww, ss = self._axon_lanes(d, r["target"])
                        recv[gid, d] += 1
                        ops[gid, d] += len(dd)
                        src += [gid] * len(dd)
                        dst += dd
                        w += ww
                        s += ss
        E = len(src)
        incidence = sp.csr_matrix((np.ones(E, dtype=np.int64), (np.array(dst, dtype=np.int64),
                                                                np.arange(E))), shape=(C * N, E))
        self._plan = dict(groups=groups, src=np.array(src, dtype=np.int64),
                          w=np.array(w, dtype=np.int64), s=np.array(s, dtype=np.int64),
                          incidence=incidence, host_src=np.array(host_src, dtype=np.int64),
                          host_ch=np.array(host_ch, dtype=np.int64),
                          sent=sent, recv=recv, ops=ops)
        return self._plan

    # -- running ---------------------------------------------------------------------------------
    def _accumulate(self, buf: int, dst, contrib) -> None:
        """acc[:, buf, dst] += contrib (B, E), modulo 2**acc_width."""
        cfg = self.cfg
        C, N = cfg.num_cores, cfg.neurons
        if isinstance(dst, sp.csr_matrix):
            delta = np.asarray((dst @ contrib.T).T)                        # (B, C*N)
            self.acc[:, buf] = wrap(self.acc[:, buf] + delta, cfg.acc_width)
        else:
            delta = np.zeros((self.batch, C * N), dtype=np.int64)
            np.add.at(delta, (slice(None), dst), contrib)
            self.acc[:, buf] = wrap(self.acc[:, buf] + delta, cfg.acc_width)

    def inject(self, core: int, axon: int, payload) -> None:
        """A spike from the host to ``axon`` of ``core`` before step ``self.t``: integrated for
        step ``t``. ``payload`` is a scalar or one value per sample (B,)."""
        cfg = self.cfg
        if not 0 <= core < cfg.num_cores:
            raise ConfigError(f"core {core} outside the {cfg.mesh_w}x{cfg.mesh_h} mesh")
        p = np.broadcast_to(np.asarray(payload, dtype=np.int64), (self.batch,))
        lo, hi = -(1 << (cfg.state_width - 1)), (1 << (cfg.state_width - 1)) - 1
        if (p < lo).any() or (p > hi).any():
            raise ValueError(f"spike payload outside the {cfg.state_width}-bit signed range")
        dst, w, s = self._axon_lanes(core, axon)
        contrib = rnd(p[:, None] * np.array(w, dtype=np.int64), np.array(s, dtype=np.int64))
        self._accumulate(self.t & 1, np.array(dst, dtype=np.int64), contrib)
        self.counters[:, core, Counter.SPIKES_RECEIVED] += 1
        self.counters[:, core, Counter.SYN_OPS] += len(dst)

    def step(self) -> StepResult:
        """Run one step; returns the host outputs emitted in it."""
        cfg, plan, t = self.cfg, self.plan(), self.t
        B, NT = self.batch, cfg.num_cores * cfg.neurons
        par = t & 1
        emit = np.zeros((B, NT), dtype=bool)                               # (B, C*N)
        payload = np.zeros((B, NT), dtype=np.int64)                        # (B, C*N)
        for core, grp, program, sl, ml in plan["groups"]:
            if not grp.active(t):
                continue
            shape = (grp.count, grp.modes)
            new, em, pay, xm = run_program(
                cfg, program, self.state[:, sl], self.acc[:, par, sl], self.coef[sl],
                self.mstate[:, ml].reshape((B,) + shape + (MODE_STATE,)),
                self.mcoef[ml].reshape(shape + (MODE_COEFS,)))
            self.state[:, sl] = new
            self.mstate[:, ml] = xm.reshape(B, -1, MODE_STATE)
            self.acc[:, par, sl] = 0
            emit[:, sl], payload[:, sl] = em, pay
            self.counters[:, core, Counter.NEURON_UPDATES] += grp.count
        if len(plan["src"]):
            contrib = rnd(payload[:, plan["src"]] * plan["w"], plan["s"])    # (B, E)
            self._accumulate(par ^ 1, plan["incidence"], contrib)
        e = emit.astype(np.int64)
        self.counters[:, :, Counter.SPIKES_SENT] += e @ plan["sent"]        # (B, C)
        self.counters[:, :, Counter.SPIKES_RECEIVED] += e @ plan["recv"]
        self.counters[:, :, Counter.SYN_OPS] += e @ plan["ops"]
        self.t += 1
        hs = plan["host_src"]
        return StepResult(t, plan["host_ch"], payload[:, hs], emit[:, hs], emit, payload)

    def clear(self) -> None:
        """The host's CLEAR: zero every neuron register and accumulator, restart at step 0."""
        self.state[:] = 0
        self.mstate[:] = 0
        self.acc[:] = 0
        self.t = 0

    def arch_counters(self, sample: int = 0) -> np.ndarray:
        """(cores, 4) architectural counters of one sample."""
        return self.counters[sample][:, list(ARCH_COUNTERS)]


def run_program(cfg: FabricConfig, program: list[Instr], state: np.ndarray, acc: np.ndarray,
                coef: np.ndarray, mstate: np.ndarray | None = None,
                mcoef: np.ndarray | None = None):
    """Execute ``program`` for a group of neurons.

    Parameters
    ----------
    state : (B, n, state_regs) int64, persistent registers (not modified)
    acc   : (B, n) int64, the accumulator values (any width; saturated here)
    coef  : (n, 8) int64, the neurons' coefficients
    mstate : (B, n, M, 2) int64, the neurons' mode state (None: no modes; not modified)
    mcoef  : (n, M, 6) int64, the neurons' mode coefficients

    Returns ``(new_state (B, n, state_regs), emit (B, n) bool, payload (B, n) int64)``, and
    with ``mstate`` given a fourth item, the new mode state (B, n, M, 2).
    """
    W = cfg.state_width
    B, n, S = state.shape
    regs = np.zeros((cfg.NUM_REGS, B, n), dtype=np.int64)          # (8, B, n)
    regs[:S] = np.moveaxis(state, 2, 0)
    acc_in = sat(acc.astype(np.int64), W)                            # (B, n)
    zero = np.zeros((B, n), dtype=np.int64)
    pred = np.zeros((B, n), dtype=bool)
    emit = np.zeros((B, n), dtype=bool)
    payload = np.zeros((B, n), dtype=np.int64)
    c = [coef[:, k].astype(np.int64) for k in range(cfg.coefs)]     # 8 x (n,)
    if mstate is None:
        xm = np.zeros((B, n, 0, 2), dtype=np.int64)                   # (B, n, M, 2)
        mc = np.zeros((n, 0, 6), dtype=np.int64)                      # (n, M, 6)
    else:
        xm = np.array(mstate, dtype=np.int64)
        mc = np.asarray(mcoef, dtype=np.int64)

    def src(code):
        if code < 8:
            return regs[code]
        return acc_in if code == Operand.ACC else zero

    for ins in program:
        op = ins.op
        if op == Op.MAD:
            regs[ins.rd] = sat(rnd(src(ins.ra) * c[ins.ck] + src(ins.rb) * c[ins.cl], ins.sh), W)
        elif op == Op.CMAD:
            ar, ai = (zero, zero) if ins.ra == Operand.ZERO else (regs[ins.ra], regs[ins.ra + 1])
            kr, ki, lr, li = c[ins.ck], c[ins.ck + 1], c[ins.cl], c[ins.cl + 1]
            b = src(ins.rb)
            re = ar * kr - ai * ki + b * lr                          # (B, n)
            im = ar * ki + ai * kr + b * li                          # (B, n)
            regs[ins.rd], regs[ins.rd + 1] = sat(rnd(re, ins.sh), W), sat(rnd(im, ins.sh), W)
        elif op == Op.ADD:
            regs[ins.rd] = sat(src(ins.ra) + src(ins.rb), W)
        elif op == Op.SUB:
            regs[ins.rd] = sat(src(ins.ra) - src(ins.rb), W)
        elif op == Op.MAX:
            regs[ins.rd] = np.maximum(src(ins.ra), src(ins.rb))
        elif op == Op.MIN:
            regs[ins.rd] = np.minimum(src(ins.ra), src(ins.rb))
        elif op == Op.LDC:
            regs[ins.rd] = np.broadcast_to(sat(c[ins.ck] << ins.sh, W), (B, n))
        elif op == Op.SHR:
            regs[ins.rd] = sat(rnd(src(ins.ra), ins.sh), W)
        elif op == Op.CGE:
            pred = src(ins.ra) >= src(ins.rb)
        elif op == Op.SEL:
            regs[ins.rd] = np.where(pred, src(ins.ra), src(ins.rb))
        elif op == Op.MODES:
            u = src(ins.rb)[:, :, None]                              # (B, n, 1)
            xr, xi = xm[..., 0], xm[..., 1]                          # (B, n, M)
            ar, ai, br, bi, cr, cn = (mc[None, :, :, k] for k in range(6))   # (1, n, M)
            nr = sat(rnd(xr * ar - xi * ai + u * br, ins.sh), W)
            ni = sat(rnd(xr * ai + xi * ar + u * bi, ins.sh), W)
            xm = np.stack([nr, ni], axis=-1)
            o = sat(rnd(nr * cr + ni * cn, ins.so), W)              # (B, n, M)
            regs[ins.rd] = sat(wrap(o.sum(axis=2), cfg.acc_width), W)
        elif op != Op.NOP:
            raise ValueError(f"unknown opcode {op!r}")
        if ins.emit != Emit.NONE:
            value = regs[ins.rd]
            payload = value.copy()
            if ins.emit == Emit.ALWAYS:
                emit = np.ones((B, n), dtype=bool)
            elif ins.emit == Emit.NONZERO:
                emit = value != 0
            else:
                emit = pred.copy()
    out = np.moveaxis(regs[:S], 0, 2).copy(), emit, np.where(emit, payload, 0)
    return out if mstate is None else out + (xm,)
