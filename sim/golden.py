"""Golden fabric model: executes config images the way the fabric does, bit for bit, in numpy.

The model holds every core memory as the configuration words the host writes (decoded with the
shared layouts), and runs steps exactly as the spec's execution model says::

    step t:  for every core, for every group active at t (t >= start, (t-start) % period == 0):
                 ACC = sat(acc[t % 2][n]);  acc[t % 2][n] = 0;  run the group's microcode
                 (a MODES instruction runs over the neuron's mode entries)
             every spike emitted in step t, for every route of its neuron:
                 host route  -> a host output (step t, channel, payload)
                 spike route -> axon a of tile (x, y): for every synapse row of a's block,
                                for every lane j in the row's mask:
                                acc[(t+1) % 2][row*lanes + j] += rnd(payload * w[j], shift)
                                (modulo 2**acc_width: the sum does not depend on arrival order)
    inject before step t:       the same synaptic path into acc[t % 2]

How it runs fast. The configuration tables are compiled once (on the first step after a table
write) into a :class:`Plan`, which is plain data:

* one :class:`Kernel` per distinct (program, modes per neuron): every neuron of every core that
  runs that program, so a step runs each program *once* over the whole fabric
  (:func:`neuroloom.sim.neuron.execute`, vectorized over neurons, modes and the batch);
* the synapse edges (source neuron, destination neuron, weight, shift) of every route;
* per neuron, the counters one emitted spike moves (a sparse (neurons, 3*cores) map);
* one :class:`Phase` per set of active groups, cached (a schedule has few: pipelined fill,
  then all; fall-through one stage at a time): the kernel rows that run, the edges leaving
  them, and the delivery to their destinations as one sparse sum.

A step is then the spec's three lines: update the active neurons, deliver every spike over its
edges into the other accumulator buffer, add the counters. Everything is vectorized over a batch
of independent samples: ``state`` is (B, cores*neurons, state_regs), ``acc`` (B, 2,
cores*neurons), the mode state ``mstate`` (B, cores*modes, 2). The per-group interpreter this
replaces is kept as the test oracle (``tests/support/golden_reference.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.coreconfig import ConfigError, Group
from neuroloom.contract.fixed import rnd, wrap
from neuroloom.contract.isa import Instr, decode
from neuroloom.contract.layouts import (
    MODE_COEFS,
    MODE_STATE,
    Counter,
    Mem,
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

from .neuron import ModeCoefs, execute

__all__ = ["GoldenFabric", "StepResult", "Plan", "Kernel", "Phase"]

_STRUCT_MEMS = (Mem.AXON, Mem.SYNAPSE, Mem.ROUTE_INDEX, Mem.ROUTE, Mem.UCODE, Mem.GROUP)
ARCH_COUNTERS = (Counter.NEURON_UPDATES, Counter.SYN_OPS, Counter.SPIKES_SENT,
                 Counter.SPIKES_RECEIVED)


class _Spikes:
    """The spikes of one step, scattered to (B, cores*neurons) arrays when first asked for."""

    def __init__(self, gid, emit, payload, total):
        self._args, self._full = (gid, emit, payload, total), None

    def full(self):
        if self._full is None:
            gid, emit, payload, total = self._args
            e = np.zeros((emit.shape[0], total), dtype=bool)
            p = np.zeros((emit.shape[0], total), dtype=np.int64)
            e[:, gid], p[:, gid] = emit, payload
            self._full = e, p
        return self._full


@dataclass
class StepResult:
    """Host outputs of one step: ``payload[b, i]`` on channel ``channels[i]`` if ``valid[b, i]``;
    ``emit``/``spikes`` (B, cores*neurons): which neurons emitted, and their payloads."""
    step: int
    channels: np.ndarray     # (K,)
    payload: np.ndarray      # (B, K)
    valid: np.ndarray        # (B, K) bool
    _spikes: _Spikes = field(repr=False)

    @property
    def emit(self) -> np.ndarray:
        return self._spikes.full()[0]

    @property
    def spikes(self) -> np.ndarray:
        return self._spikes.full()[1]


@dataclass
class Kernel:
    """Every neuron of the fabric that runs one program (up to its shifts) with ``modes`` mode
    entries each; the rows are groups one after another."""
    program: tuple[Instr, ...]   # the instructions, shifts zeroed
    sh: np.ndarray           # (instructions, n) each row's shifts
    so: np.ndarray           # (instructions, n) each row's output shifts (MODES)
    modes: int
    gid: np.ndarray          # (n,) neuron ids core*neurons + neuron
    mid: np.ndarray          # (n, modes) mode entry ids core*modes + entry
    mbase: int               # first column of its mode state (mode-major: mbase + m*n + row)
    groups: list             # (core, group index in Plan.groups, first row, end row)


@dataclass
class Run:
    """One kernel's active rows in a phase: their program (shifts per row where they differ),
    coefficients, and mode state (views of the fabric's when the rows are one range)."""
    program: list[Instr]
    gid: np.ndarray          # (n,)
    coef: np.ndarray         # (n, coefs)
    modes: ModeCoefs | None
    xr: np.ndarray | None = None     # (B, M, n) views, or
    xi: np.ndarray | None = None
    cols: np.ndarray | None = None   # (M, n) columns of the mode state to gather and scatter


@dataclass
class Phase:
    """What a step with one set of active groups does. Positions index the neurons updated
    (``gid``, the runs one after another)."""
    runs: list[Run]
    gid: np.ndarray          # (n,) neurons updated
    updates: np.ndarray      # (cores * 4,) neuron updates per core (counters core*4 + counter)
    src: np.ndarray          # (E,) edge source, a position
    w: np.ndarray            # (E, 1) edge weight
    s: np.ndarray            # (E, 1) edge shift (its axon's)
    half: np.ndarray         # (E, 1) rounding constant (1 << s) >> 1
    dst: np.ndarray          # (D,) neurons that receive
    deliver: sp.csr_matrix   # (D, E) edge -> receiving neuron
    host_col: np.ndarray     # host routes of updated neurons: column in Plan.host_ch,
    host_pos: np.ndarray     # and the position of the neuron
    counts: sp.csr_matrix    # (cores * 4, n) emitted -> counters core*4 + counter moved


@dataclass
class Plan:
    """The configuration tables compiled for execution (see the module docstring)."""
    kernels: list[Kernel]
    groups: list[Group]
    edges: dict              # src, dst, w, s: (E,) sorted by src
    first: np.ndarray        # (cores*neurons + 1,) edges of neuron g: first[g]:first[g+1]
    counts: sp.csr_matrix    # (cores*neurons, cores * 4)
    host_src: np.ndarray     # (K,) neuron of each host route
    host_ch: np.ndarray      # (K,) its channel
    phases: dict = field(default_factory=dict)   # active-group flags -> Phase
    axons: dict = field(default_factory=dict)    # (core, axon) -> injection lanes


class GoldenFabric:
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
        # mode state as Re and Im planes, entries in the plan's storage order (each kernel's
        # entries mode-major and contiguous): entry e of the fabric is at column _mpos[e]
        self._xm = np.zeros((MODE_STATE, batch, C * cfg.modes), dtype=np.int64)
        self._mpos = np.arange(C * cfg.modes)
        self.mcoef = np.zeros((C * cfg.modes, MODE_COEFS), dtype=np.int64)
        self.counters = np.zeros((batch, C, len(Counter)), dtype=np.int64)
        self.t = 0
        self._plan = None

    @property
    def mstate(self) -> np.ndarray:
        """(B, cores*modes, 2) mode state, entry ``core*modes + index`` (a copy)."""
        return np.moveaxis(self._xm[:, :, self._mpos], 0, 2)

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
            self._coefs_changed()
        elif mem == Mem.ACC:
            self.acc[:, part, gid] = to_signed(value, min(32, cfg.acc_width))
        elif mem == Mem.MSTATE:
            self._xm[part, :, self._mpos[core * cfg.modes + index]] = to_signed(
                value, cfg.state_width)
        elif mem == Mem.MCOEF:
            self.mcoef[core * cfg.modes + index, part] = to_signed(value, cfg.coef_width)
            self._coefs_changed()
        elif mem == Mem.COUNTER:
            self.counters[:, core, index] = value

    def _coefs_changed(self) -> None:
        if self._plan is not None:
            self._plan.phases.clear()                 # phases hold gathered coefficients

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
                 Mem.MSTATE: lambda: self._xm[part, sample, self._mpos[mid]],
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

    # -- execution plan (the config tables, compiled for vectorized execution) -------------------
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
                return tuple(prog)
            pc += 1

    def plan(self) -> Plan:
        """The execution plan of the loaded tables (built on first use after a table write)."""
        if self._plan is None:
            self._plan = self._build_plan()
        return self._plan

    def _build_plan(self) -> Plan:
        cfg = self.cfg
        C, N, NM = cfg.num_cores, cfg.neurons, cfg.modes
        kernels: dict = {}                        # (program, modes) -> [(core, Group, gids)]
        groups = []
        edges = {"src": [], "dst": [], "w": [], "s": []}
        host_src, host_ch = [], []
        sent = np.zeros(C * N, dtype=np.int64)    # routes fired per emitting neuron (own core)
        recv = {}                                 # (gid, receiving core) -> spikes delivered
        ops = {}                                  # (gid, receiving core) -> synaptic lane ops
        owner = -np.ones((C, N), dtype=np.int64)
        for core in range(C):
            modes_used = np.zeros(NM, dtype=bool)
            for gi in range(cfg.groups):
                g = unpack(group_layout(cfg), self._word(Mem.GROUP, core, gi))
                if g["count"] == 0:
                    continue
                grp = Group(g["first"], g["count"], g["pc"], g["period"], g["start"],
                            g["mode_base"], g["modes"])
                mb, mn = grp.mode_span()
                if grp.first + grp.count > N or grp.period == 0 or mb + mn > NM:
                    raise ConfigError(f"core {cfg.core_xy(core)}: group {gi} is invalid "
                                      f"({grp})")
                if (owner[core, grp.first:grp.first + grp.count] >= 0).any():
                    raise ConfigError(f"core {cfg.core_xy(core)}: group {gi} overlaps another")
                if modes_used[mb:mb + mn].any():
                    raise ConfigError(f"core {cfg.core_xy(core)}: group {gi} shares mode "
                                      f"entries with another")
                owner[core, grp.first:grp.first + grp.count] = gi
                modes_used[mb:mb + mn] = True
                program = self._program(core, grp.pc)
                # programs that differ only in shifts (a layer's constants) share a kernel
                shape = tuple(replace(ins, sh=0, so=0) for ins in program)
                kernels.setdefault((shape, grp.modes), []).append(
                    (core, grp, len(groups), program))
                groups.append(grp)
                for n in range(grp.first, grp.first + grp.count):
                    gid = core * N + n
                    ri = unpack(route_index_layout(cfg), self._word(Mem.ROUTE_INDEX, core, n))
                    if ri["base"] + ri["count"] > cfg.route_words:
                        raise ConfigError(f"core {cfg.core_xy(core)}: neuron {n} routes "
                                          f"{ri['base']}+{ri['count']} beyond memory")
                    for k in range(ri["base"], ri["base"] + ri["count"]):
                        r = unpack(route_layout(cfg), self._word(Mem.ROUTE, core, k))
                        sent[gid] += 1
                        if r["host"]:
                            host_src.append(gid)
                            host_ch.append(r["target"])
                            continue
                        if not (r["x"] < cfg.mesh_w and r["y"] < cfg.mesh_h):
                            raise ConfigError(f"core {cfg.core_xy(core)}: neuron {n} routes "
                                              f"to tile ({r['x']},{r['y']}) outside the mesh")
                        d = cfg.core_index(r["x"], r["y"])
                        dd, ww, ss = self._axon_lanes(d, r["target"])
                        recv[gid, d] = recv.get((gid, d), 0) + 1
                        ops[gid, d] = ops.get((gid, d), 0) + len(dd)
                        edges["src"] += [gid] * len(dd)
                        edges["dst"] += dd
                        edges["w"] += ww
                        edges["s"] += ss
        # counters moved by one emitted spike of neuron gid: (gid, core * 4 + counter) -> count
        A = len(ARCH_COUNTERS)
        rows, cols, vals = [], [], []
        for gid in np.flatnonzero(sent):
            rows.append(gid), cols.append(gid // N * A + Counter.SPIKES_SENT)
            vals.append(sent[gid])
        for counter, table in ((Counter.SPIKES_RECEIVED, recv), (Counter.SYN_OPS, ops)):
            for (gid, d), v in table.items():
                rows.append(gid), cols.append(d * A + counter), vals.append(v)
        counts = sp.csr_matrix((np.array(vals, dtype=np.int64), (rows, cols)),
                               shape=(C * N, C * A))
        order = np.argsort(np.array(edges["src"], dtype=np.int64), kind="stable")
        e = {k: np.array(v, dtype=np.int64)[order] for k, v in edges.items()}
        first = np.searchsorted(e["src"], np.arange(C * N + 1))   # gid's: first[gid]:first[gid+1]
        ks, mbase = [], 0
        for (shape, M), members in kernels.items():
            # groups that run on the same schedule next to each other: a phase's rows are
            # then one range of the kernel, and its mode state a view
            members.sort(key=lambda m: (m[1].period, m[1].start, m[0], m[1].first))
            gids = [np.arange(core * N + g.first, core * N + g.first + g.count)
                    for core, g, _, _ in members]
            mids = [core * NM + g.mode_base + np.arange(g.count * M).reshape(g.count, M)
                    for core, g, _, _ in members]
            bounds = np.cumsum([0] + [g.count for _, g, _, _ in members])
            shifts = [np.repeat([[getattr(ins, f) for ins in p] for _, g, _, p in members],
                                [g.count for _, g, _, _ in members], axis=0).T
                      for f in ("sh", "so")]                      # (instructions, n) each
            k = Kernel(shape, shifts[0], shifts[1], M, np.concatenate(gids),
                       np.concatenate(mids), mbase,
                       [(core, gi, bounds[i], bounds[i + 1])
                        for i, (core, _, gi, _) in enumerate(members)])
            ks.append(k)
            mbase += k.mid.size
        self._store_modes(ks, mbase)
        return Plan(ks, groups, e, first, counts, np.array(host_src, dtype=np.int64),
                    np.array(host_ch, dtype=np.int64))

    def _store_modes(self, kernels: list[Kernel], used: int) -> None:
        """Lay the mode state out for ``kernels``: kernel after kernel, each mode-major
        (column ``base + m * rows + row``), then the entries no group owns."""
        pos = -np.ones(self._mpos.shape, dtype=np.int64)
        for k in kernels:
            n, M = k.mid.shape
            pos[k.mid] = k.mbase + np.arange(M)[None, :] * n + np.arange(n)[:, None]
        free = pos < 0
        pos[free] = used + np.arange(int(free.sum()))
        glob = self._xm[:, :, self._mpos]                       # (2, B, entries) fabric order
        self._mpos = pos
        self._xm[:, :, pos] = glob

    def _run(self, k: Kernel, rows: np.ndarray) -> Run:
        def shift(v):                       # one int when every row has the same shift
            v = v[rows]
            return int(v[0]) if (v == v[0]).all() else v

        program = [replace(ins, sh=shift(k.sh[i]), so=shift(k.so[i]))
                   for i, ins in enumerate(k.program)]
        gid = k.gid[rows]
        run = Run(program, gid, self.coef[gid], None)
        if k.modes:
            run.modes = ModeCoefs(self.mcoef[k.mid[rows]])
            n = len(k.gid)
            lo, hi = int(rows[0]), int(rows[-1]) + 1
            if hi - lo == len(rows):                 # one range: views, updated in place
                cols = slice(k.mbase, k.mbase + k.modes * n)
                run.xr, run.xi = (self._xm[j][:, cols].reshape(self.batch, k.modes, n)
                                  [:, :, lo:hi] for j in range(2))
                assert np.shares_memory(run.xr, self._xm)
            else:
                run.cols = k.mbase + np.arange(k.modes)[:, None] * n + rows[None, :]
        return run

    def _phase(self, t: int) -> Phase:
        """What runs in step ``t``: the phase of the groups active at ``t`` (cached)."""
        plan = self.plan()
        key = tuple(g.active(t) for g in plan.groups)
        ph = plan.phases.get(key)
        if ph is None:
            ph = plan.phases[key] = self._build_phase(plan, key)
        return ph

    def _build_phase(self, plan: Plan, active: tuple) -> Phase:
        cfg = self.cfg
        C, N = cfg.num_cores, cfg.neurons
        A = len(ARCH_COUNTERS)
        runs, updates = [], np.zeros(C * A, dtype=np.int64)
        for k in plan.kernels:
            spans = [(lo, hi) for core, gi, lo, hi in k.groups if active[gi]]
            if not spans:
                continue
            for core, gi, lo, hi in k.groups:
                updates[core * A + Counter.NEURON_UPDATES] += (hi - lo) if active[gi] else 0
            rows = np.concatenate([np.arange(lo, hi) for lo, hi in spans])
            runs.append(self._run(k, rows))
        gid = np.concatenate([r.gid for r in runs]) if runs else np.zeros(0, dtype=np.int64)
        pos = -np.ones(C * N, dtype=np.int64)
        pos[gid] = np.arange(len(gid))                   # position of a neuron in this phase
        # the synapse edges leaving the updated neurons, sources as phase positions
        first, e = plan.first, plan.edges
        sel = np.concatenate([np.arange(first[g], first[g + 1]) for g in gid]) if len(gid) \
            else np.zeros(0, dtype=np.int64)
        dst, inv = np.unique(e["dst"][sel], return_inverse=True)
        deliver = sp.csr_matrix((np.ones(len(sel), dtype=np.int64), (inv, np.arange(len(sel)))),
                                shape=(len(dst), len(sel)))
        hp = pos[plan.host_src]
        s = e["s"][sel, None]
        return Phase(runs, gid, updates, pos[e["src"][sel]], e["w"][sel, None], s,
                     (1 << s) >> 1, dst, deliver, np.flatnonzero(hp >= 0), hp[hp >= 0],
                     sp.csr_matrix(plan.counts[gid].T))

    # -- running ---------------------------------------------------------------------------------
    def inject(self, core: int, axon: int, payload) -> None:
        """A spike from the host to ``axon`` of ``core`` before step ``self.t``: integrated for
        step ``t``. ``payload`` is a scalar or one value per sample (B,)."""
        cfg = self.cfg
        if not 0 <= core < cfg.num_cores:
            raise ConfigError(f"core {core} outside the {cfg.mesh_w}x{cfg.mesh_h} mesh")
        p = np.asarray(payload, dtype=np.int64)
        lo, hi = -(1 << (cfg.state_width - 1)), (1 << (cfg.state_width - 1)) - 1
        if p.size and (p.min() < lo or p.max() > hi):
            raise ValueError(f"spike payload outside the {cfg.state_width}-bit signed range")
        plan = self.plan()
        lanes = plan.axons.get((core, axon))
        if lanes is None:
            lanes = plan.axons[core, axon] = self._inject_lanes(core, axon)
        udst, inv, w, s, moved = lanes
        contrib = rnd(p.reshape(-1, 1) * w, s)                             # (B or 1, lanes)
        if len(udst) < len(inv):
            delta = np.zeros((len(contrib), len(udst)), dtype=np.int64)
            np.add.at(delta, (slice(None), inv), contrib)
            contrib = delta
        buf = self.acc[:, self.t & 1]
        buf[:, udst] = wrap(buf[:, udst] + contrib, cfg.acc_width)
        self.counters[:, core] += moved

    def _inject_lanes(self, core: int, axon: int):
        """(receiving neurons, lane -> neuron, weights, shifts, counters moved) of an axon."""
        dst, w, s = (np.array(v, dtype=np.int64) for v in self._axon_lanes(core, axon))
        udst, inv = np.unique(dst, return_inverse=True)      # rows may repeat a neuron
        if len(udst) == len(dst):
            udst, inv = dst, np.arange(len(dst))
        moved = np.zeros(len(Counter), dtype=np.int64)
        moved[Counter.SPIKES_RECEIVED], moved[Counter.SYN_OPS] = 1, len(dst)
        return udst, inv, w, s, moved

    def step(self) -> StepResult:
        """Run one step (the spec's execution model, section 7); returns its host outputs."""
        cfg, t, B = self.cfg, self.t, self.batch
        ph = self._phase(t)
        now, nxt = t & 1, (t & 1) ^ 1
        # 1. update: every active neuron runs its program on ACC = sat(acc[t % 2]), then
        #    acc[t % 2] = 0; each program runs once over all of its neurons on every core
        emits, pays = [], []
        acc_now = self.acc[:, now]
        for run in ph.runs:
            acc = acc_now[:, run.gid]
            acc_now[:, run.gid] = 0
            state = self.state[:, run.gid]
            if run.cols is None:
                new, em, pay = execute(cfg, run.program, state, acc, run.coef, run.xr, run.xi,
                                       run.modes)
            else:
                xr, xi = self._xm[0][:, run.cols], self._xm[1][:, run.cols]  # (B, M, n)
                new, em, pay = execute(cfg, run.program, state, acc, run.coef, xr, xi,
                                       run.modes)
                self._xm[0][:, run.cols], self._xm[1][:, run.cols] = xr, xi
            self.state[:, run.gid] = new
            emits.append(em)
            pays.append(pay)
        emit = np.concatenate(emits, axis=1) if len(emits) > 1 else \
            emits[0] if emits else np.zeros((B, 0), dtype=bool)
        payload = np.concatenate(pays, axis=1) if len(pays) > 1 else \
            pays[0] if pays else np.zeros((B, 0), dtype=np.int64)
        # 2. integration: every spike, over every synapse edge of its routes, into acc[(t+1)%2]
        if len(ph.src):
            contrib = payload.T[ph.src]                                      # (E, B)
            contrib *= ph.w
            contrib += ph.half
            contrib >>= ph.s                                                 # rnd(p * w, s)
            delta = ph.deliver @ contrib                                     # (D, B)
            buf = self.acc[:, nxt]
            buf[:, ph.dst] = wrap(buf[:, ph.dst] + delta.T, cfg.acc_width)
        # 3. counters: the neurons updated, and per emitted spike what its routes move
        moved = (ph.counts @ emit.T.astype(np.int64)).T                      # (B, cores*4)
        self.counters[:, :, :len(ARCH_COUNTERS)] += (moved + ph.updates).reshape(B, -1, 4)
        self.t += 1
        host_ch = self._plan.host_ch
        hp = np.zeros((B, len(host_ch)), dtype=np.int64)
        hv = np.zeros((B, len(host_ch)), dtype=bool)
        hp[:, ph.host_col], hv[:, ph.host_col] = payload[:, ph.host_pos], emit[:, ph.host_pos]
        return StepResult(t, host_ch, hp, hv, _Spikes(ph.gid, emit, payload,
                                                       cfg.num_cores * cfg.neurons))

    def clear(self) -> None:
        """The host's CLEAR: zero every neuron register and accumulator, restart at step 0."""
        self.state[:] = 0
        self._xm[:] = 0
        self.acc[:] = 0
        self.t = 0

    def arch_counters(self, sample: int = 0) -> np.ndarray:
        """(cores, 4) architectural counters of one sample."""
        return self.counters[sample][:, list(ARCH_COUNTERS)]
