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
  (:func:`neuroloom.sim.kernels.run_kernel`, a compiled loop over neurons, modes and the batch);
* the synapse edges (source neuron, destination neuron, weight, shift) of every route;
* per neuron, the counters one emitted spike moves (a sparse (neurons, 3*cores) map);
* one :class:`Phase` per set of active groups, cached (a schedule has few: pipelined fill,
  then all; fall-through one stage at a time): the kernel rows that run, the edges leaving
  them, and the delivery to their destinations as one sparse sum.

A step is then the spec's three lines: update the active neurons, deliver every spike over its
edges into the other accumulator buffer, add the counters (:func:`neuroloom.sim.kernels.deliver`).
Everything runs over a batch of independent samples: ``state`` is (B, cores*neurons,
state_regs), ``acc`` (B, 2, cores*neurons), the mode state ``mstate`` (B, cores*modes, 2) (stored
batch-minor, (2, entries, B), as are a step's payloads: the compiled loops' inner loop is over the
batch). The per-group interpreter this replaces is kept as the test oracle
(``tests/support/golden_reference.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.coreconfig import ConfigError, Group
from neuroloom.contract.isa import Instr, decode
from neuroloom.contract.layouts import (
    MODE_COEFS,
    MODE_STATE,
    Counter,
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

from .kernels import deliver, encode_program, inject_lanes, run_kernel

__all__ = ["GoldenFabric", "StepResult", "Plan", "Kernel", "Phase"]

_STRUCT_MEMS = (Mem.AXON, Mem.SYNAPSE, Mem.ROUTE_INDEX, Mem.ROUTE, Mem.UCODE, Mem.GROUP)
ARCH_COUNTERS = (Counter.NEURON_UPDATES, Counter.SYN_OPS, Counter.SPIKES_SENT,
                 Counter.SPIKES_RECEIVED)


class _Spikes:
    """The spikes of one step (``emit``, ``payload`` (n, B) per updated neuron ``gid``),
    scattered to (B, cores*neurons) arrays when first asked for."""

    def __init__(self, gid, emit, payload, total):
        self._args, self._full = (gid, emit, payload, total), None

    def full(self):
        if self._full is None:
            gid, emit, payload, total = self._args
            e = np.zeros((emit.shape[1], total), dtype=bool)
            p = np.zeros((emit.shape[1], total), dtype=np.int64)
            e[:, gid], p[:, gid] = emit.T, payload.T
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
    mbase: int               # first row of its mode state (row by row: mbase + row*modes + m)
    groups: list             # (core, group index in Plan.groups, first row, end row)


@dataclass
class Run:
    """One kernel's active rows in a phase: their program (encoded, :func:`encode_program`)
    and shifts per row, mode entries and mode coefficients; their outputs go to phase positions
    ``pos .. pos + n``."""
    prog: np.ndarray         # (instructions, 7)
    sh: np.ndarray           # (instructions, n)
    so: np.ndarray           # (instructions, n)
    gid: np.ndarray          # (n,)
    mrow: np.ndarray         # (n,) first row of each neuron's M mode entries in the mode state
    mc: np.ndarray           # (n, M, 6) mode coefficients
    pos: int


@dataclass
class Phase:
    """What a step with one set of active groups does. Positions index the neurons updated
    (``gid``, the runs one after another)."""
    runs: list[Run]
    gid: np.ndarray          # (n,) neurons updated
    updates: np.ndarray      # (cores, 4) neuron updates per core
    eptr: np.ndarray         # (n + 1,) the edges leaving position i: eptr[i]:eptr[i + 1]
    dsti: np.ndarray         # (E,) edge receiver, an index into dst
    w: np.ndarray            # (E,) edge weight
    s: np.ndarray            # (E,) edge shift (its axon's)
    dst: np.ndarray          # (D,) neurons that receive
    host_col: np.ndarray     # host routes of updated neurons: column in Plan.host_ch,
    host_pos: np.ndarray     # and the position of the neuron
    counts: tuple            # (indptr, columns, values) of the sparse (n, cores * 4) map:
                             # emitted -> counters core*4 + counter moved


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
        # registers and accumulators batch-minor too: (neurons, state_regs, B), (2, neurons, B)
        self._st = np.zeros((C * N, cfg.state_regs, batch), dtype=np.int64)
        self.coef = np.zeros((C * N, cfg.coefs), dtype=np.int64)
        self._acc = np.zeros((2, C * N, batch), dtype=np.int64)
        # mode state as Re and Im planes, batch-minor, int32 where the state width fits (half
        # the memory traffic); entries in the plan's storage order (each kernel's entries
        # contiguous, neuron by neuron): entry e of the fabric is at row _mpos[e]
        self._xm = np.zeros((MODE_STATE, C * cfg.modes, batch),
                            dtype=np.int32 if cfg.state_width <= 32 else np.int64)
        self._mpos = np.arange(C * cfg.modes)
        # rows that may be nonzero (neurons of _st/_acc, rows of _xm): what CLEAR has to zero.
        # A step touches only the plan's neurons and mode rows (marked when the plan is built,
        # and again after each CLEAR); a write marks its row
        self._nz = np.zeros(C * N, dtype=bool)
        self._xm_nz = np.zeros(C * cfg.modes, dtype=bool)
        self.mcoef = np.zeros((C * cfg.modes, MODE_COEFS), dtype=np.int64)
        self.counters = np.zeros((batch, C, len(Counter)), dtype=np.int64)
        self.t = 0
        self._plan = None

    @property
    def state(self) -> np.ndarray:
        """(B, cores*neurons, state_regs) persistent registers (a view)."""
        return self._st.transpose(2, 0, 1)

    @property
    def acc(self) -> np.ndarray:
        """(B, 2, cores*neurons) the double-buffered accumulators (a view)."""
        return self._acc.transpose(2, 0, 1)

    @property
    def mstate(self) -> np.ndarray:
        """(B, cores*modes, 2) mode state, entry ``core*modes + index`` (a copy)."""
        return self._xm[:, self._mpos, :].transpose(2, 1, 0).astype(np.int64)

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
            self._st[gid, part] = to_signed(value, cfg.state_width)
            self._nz[gid] = True
        elif mem == Mem.COEF:
            self.coef[gid, part] = to_signed(value, cfg.coef_width)
            self._coefs_changed()
        elif mem == Mem.ACC:
            self._acc[part, gid] = to_signed(value, min(32, cfg.acc_width))
            self._nz[gid] = True
        elif mem == Mem.MSTATE:
            row = self._mpos[core * cfg.modes + index]
            self._xm[part, row, :] = to_signed(value, cfg.state_width)
            self._xm_nz[row] = True
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
        value = {Mem.STATE: lambda: self._st[gid, part, sample],
                 Mem.COEF: lambda: self.coef[gid, part],
                 Mem.ACC: lambda: self._acc[part, gid, sample],
                 Mem.MSTATE: lambda: self._xm[part, self._mpos[mid], sample],
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
            pair = int(ins.op == Op.CMAD)                 # CMAD reads and writes pairs
            if ins.rd + pair > 7 or max(ins.ck, ins.cl) + pair >= cfg.coefs or pair and not (
                    ins.ra + 1 <= 7 or ins.ra == Operand.ZERO):
                raise ConfigError(f"core {cfg.core_xy(core)}: microcode word {pc} ({ins}) names "
                                  f"a register or coefficient that does not exist")
            prog.append(ins)
            if ins.last:
                return tuple(prog)
            pc += 1

    def plan(self) -> Plan:
        """The execution plan of the loaded tables (built on first use after a table write)."""
        if self._plan is None:
            self._plan = self._build_plan()
            self._mark_live(self._plan)
        return self._plan

    def _mark_live(self, plan: Plan) -> None:
        """Mark the rows steps of ``plan`` can make nonzero (see ``_nz``)."""
        for k in plan.kernels:
            self._nz[k.gid] = True
            self._xm_nz[k.mbase:k.mbase + k.mid.size] = True
        self._nz[plan.edges["dst"]] = True
        for lanes in plan.axons.values():
            self._nz[lanes[0]] = True

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
        """Lay the mode state out for ``kernels``: kernel after kernel, each neuron by neuron
        (row ``base + row * modes + m``), then the entries no group owns."""
        pos = -np.ones(self._mpos.shape, dtype=np.int64)
        for k in kernels:
            n, M = k.mid.shape
            pos[k.mid] = k.mbase + np.arange(n * M).reshape(n, M)
        free = pos < 0
        pos[free] = used + np.arange(int(free.sum()))
        glob = self._xm[:, self._mpos]                          # (2, entries, B) fabric order
        nz = self._xm_nz[self._mpos]
        self._mpos = pos
        self._xm[:, pos] = glob
        self._xm_nz[pos] = nz

    def _run(self, k: Kernel, rows: np.ndarray, pos: int) -> Run:
        return Run(encode_program(k.program), np.ascontiguousarray(k.sh[:, rows]),
                   np.ascontiguousarray(k.so[:, rows]), k.gid[rows], k.mbase + rows * k.modes,
                   self.mcoef[k.mid[rows]].astype(
                       np.int32 if self.cfg.coef_width <= 32 else np.int64), pos)

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
        runs, updates, at = [], np.zeros((C, A), dtype=np.int64), 0
        for k in plan.kernels:
            spans = [(lo, hi) for core, gi, lo, hi in k.groups if active[gi]]
            if not spans:
                continue
            for core, gi, lo, hi in k.groups:
                updates[core, Counter.NEURON_UPDATES] += (hi - lo) if active[gi] else 0
            rows = np.concatenate([np.arange(lo, hi) for lo, hi in spans])
            runs.append(self._run(k, rows, at))
            at += len(rows)
        gid = np.concatenate([r.gid for r in runs]) if runs else np.zeros(0, dtype=np.int64)
        pos = -np.ones(C * N, dtype=np.int64)
        pos[gid] = np.arange(len(gid))                   # position of a neuron in this phase
        # the synapse edges leaving the updated neurons, sources as phase positions
        first, e = plan.first, plan.edges
        sel = np.concatenate([np.arange(first[g], first[g + 1]) for g in gid]) if len(gid) \
            else np.zeros(0, dtype=np.int64)
        dst, inv = np.unique(e["dst"][sel], return_inverse=True)
        hp = pos[plan.host_src]
        c = sp.csr_matrix(plan.counts[gid])
        counts = tuple(v.astype(np.int64) for v in (c.indptr, c.indices, c.data))
        eptr = np.searchsorted(pos[e["src"][sel]], np.arange(len(gid) + 1))
        return Phase(runs, gid, updates, eptr, inv.astype(np.int64),
                     e["w"][sel].astype(np.int32 if cfg.weight_width <= 32 else np.int64),
                     e["s"][sel], dst.astype(np.int64), np.flatnonzero(hp >= 0),
                     hp[hp >= 0], counts)

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
            self._nz[lanes[0]] = True
        dst, w, s, moved = lanes
        inject_lanes(np.broadcast_to(p.reshape(-1), (self.batch,)), dst, w, s,
                     self._acc[self.t & 1], cfg.acc_width)
        self.counters[:, core] += moved

    def _inject_lanes(self, core: int, axon: int):
        """(receiving neuron, weight, shift) of each lane of an axon, and the counters moved."""
        dst, w, s = (np.array(v, dtype=np.int64) for v in self._axon_lanes(core, axon))
        moved = np.zeros(len(Counter), dtype=np.int64)
        moved[Counter.SPIKES_RECEIVED], moved[Counter.SYN_OPS] = 1, len(dst)
        return dst, w, s, moved

    def step(self) -> StepResult:
        """Run one step (the spec's execution model, section 7); returns its host outputs."""
        cfg, t, B = self.cfg, self.t, self.batch
        ph = self._phase(t)
        now, nxt = t & 1, (t & 1) ^ 1
        W, A = cfg.state_width, cfg.acc_width
        emit = np.empty((len(ph.gid), B), dtype=bool)                       # (n, B)
        payload = np.empty((len(ph.gid), B), dtype=self._xm.dtype)          # (n, B)
        # 1. update: every active neuron runs its program on ACC = sat(acc[t % 2]), then
        #    acc[t % 2] = 0; each program runs once over all of its neurons on every core
        for r in ph.runs:
            run_kernel(r.prog, r.sh, r.so, r.gid, r.mrow, r.mc, self._st, self._acc[now],
                       self.coef, self._xm, W, A, emit, payload, r.pos)
        # 2. integration: every spike, over every synapse edge of its routes, into acc[(t+1)%2];
        # 3. counters: per emitted spike what its routes move, and the neurons updated
        deliver(payload, emit, ph.eptr, ph.dsti, ph.w, ph.s, ph.dst, self._acc[nxt], A,
                *ph.counts, self.counters, ph.updates)
        self.t += 1
        host_ch = self._plan.host_ch
        hp = np.zeros((B, len(host_ch)), dtype=np.int64)
        hv = np.zeros((B, len(host_ch)), dtype=bool)
        hp[:, ph.host_col], hv[:, ph.host_col] = payload[ph.host_pos].T, emit[ph.host_pos].T
        return StepResult(t, host_ch, hp, hv, _Spikes(ph.gid, emit, payload,
                                                       cfg.num_cores * cfg.neurons))

    def clear(self) -> None:
        """The host's CLEAR: zero every neuron register and accumulator, restart at step 0."""
        n, x = np.flatnonzero(self._nz), np.flatnonzero(self._xm_nz)   # the rest are zero
        self._st[n] = 0
        self._acc[:, n] = 0
        self._xm[:, x] = 0
        self._nz[:] = False
        self._xm_nz[:] = False
        if self._plan is not None:
            self._mark_live(self._plan)
        self.t = 0

    def arch_counters(self, sample: int = 0) -> np.ndarray:
        """(cores, 4) architectural counters of one sample."""
        return self.counters[sample][:, list(ARCH_COUNTERS)]
