"""Compiler: a quantized n-S4D model (:class:`~firmware.qmodel.QModel`) -> per-core configurations.

The deployed network is the stage pipeline of :mod:`firmware.qmodel` (encoder, then per layer
modes / readout / mixing, then decoder). Every *logical neuron* is ``(stage, j)``:

==========  ==================  =============  ==========================================
stage       kind                j              inputs (one axon per source and core)
==========  ==================  =============  ==========================================
0           encoder (linear)    h              host input feature i: ``enc.W[h, i]``
1 + 3l      modes (s4d)         h * M + m      z[h] of the previous stage, weight 1, shift 0
2 + 3l      readout (relu)      h              modes (h, m), weight 1, shift 0
3 + 3l      mixing (linear)     o              readout h: ``mix.W[o, h]``, shift ``mix.shift[h]``
3L + 1      decoder (integr.)   c              last z[h]: ``dec.W[c, h]``; routes to host ch. c
==========  ==================  =============  ==========================================

With ``mapping="channel"`` a layer is one stage of *channel neurons* (program 'channel': all M
modes of a channel in one neuron, its mode entries in the core's mode memory; the input linear
map -- encoder or previous mixing -- is the neuron's synapses plus its C6 bias, the ReLU bias is
C7), then one 'linear' stage for the last layer's mixing and the decoder:

==========  ==================  =============  ==========================================
stage       kind                j              inputs
==========  ==================  =============  ==========================================
l           channel             h              l = 0: host input i, ``enc.W[h, i]``; else
                                               channel h' of l-1: ``mix[l-1].W[h, h']``
L           mixing (linear)     o              channel h of L-1: ``mix[L-1].W[o, h]``
L + 1       decoder (integr.)   c              mixing h: ``dec.W[c, h]``; routes to host ch. c
==========  ==================  =============  ==========================================

Partitioning is a greedy, stage-ordered packing: items (single encoder / mixing / decoder neurons,
and one *channel block* per layer and channel = its M mode neurons plus its readout neuron) are
put on the current core while every capacity still holds (neurons, axons, synapse rows, route
words -- counted on the *source* core --, microcode, groups), else on the next core. Cores are
visited in a snake (boustrophedon) order over the mesh, so consecutive stages land on the same
or on adjacent tiles. Because the packing does not depend on the mesh shape, a model that does
not fit raises :class:`FitError` naming the binding resource, the shortfall and the smallest mesh
that fits.

Inside a core, neurons are laid out by (stage, j): one neuron group per stage, each channel's
modes contiguous, so a source's targets are consecutive and its synapse rows are packed
``synapse_lanes`` wide (lanes with a zero weight are masked off; all-zero rows are dropped).
Every source neuron gets one axon per destination core and one route word per destination core
(multicast); a spike to the own core uses local loopback.

Schedules (``MODES``): *pipelined* -- every group period 1, start = stage index, one token per
step, logits of token k at step k + S - 1 (S = number of stages); *fall-through* -- period S,
start = stage index, token k injected before step k*S, logits at step k*S + S - 1. A
:class:`Compiled` holds both; :meth:`Compiled.writes` emits the configuration for one of them
and :meth:`Compiled.group_writes` only the group descriptors, which is all that differs (the
config image stores both so the driver can switch modes without recompiling).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.coreconfig import CoreConfig, Group, Route, Synapse, split_parts
from neuroloom.contract.fixed import smax, smin
from neuroloom.contract.image import MODES, Image
from neuroloom.contract.layouts import Mem, group_layout, pack

from . import resources
from .asm import load_program
from .qmodel import DEFAULT_MAPPING, MAPPINGS, QLayer, QLinear, QModel, check_mapping, num_stages

__all__ = ["CompileError", "FitError", "AccumulatorRangeError", "MODES", "StageInfo",
           "Compiled", "compile_model", "from_compiled", "random_qmodel", "snake_order",
           "fitting_mesh", "MAPPINGS", "DEFAULT_MAPPING", "PACKINGS"]

MAX_MESH = 1 << FabricConfig.COORD_BITS   # tiles per mesh side (the coordinate width)


class CompileError(ValueError):
    """A model the compiler cannot map (bad parameter ranges, unsupported shape)."""


class FitError(CompileError):
    """The model does not fit the fabric. Attributes: ``resource``, ``needed``, ``available``,
    ``cores_needed`` and ``mesh`` (a ``"WxH"`` that fits, or None)."""

    def __init__(self, message, resource=None, needed=None, available=None, cores_needed=None,
                 mesh=None):
        super().__init__(message)
        self.resource, self.needed, self.available = resource, needed, available
        self.cores_needed, self.mesh = cores_needed, mesh


class AccumulatorRangeError(CompileError):
    """Some dendrite accumulator could leave the ``acc_width`` range for worst-case payloads."""


#: how the packer puts stages on cores (compile_model's ``packing``)
PACKINGS = ("fill", "spread")

RESOURCES = ("neurons", "axons", "synapse_rows", "route_words", "ucode", "groups", "modes")


_BUDGET = {"synapse_rows": "row budget", "modes": "mode budget", "cycles": "cycle budget"}


def _capacity(cfg: FabricConfig, resource: str) -> int:
    return {"neurons": cfg.neurons, "axons": cfg.axons, "synapse_rows": cfg.synapse_rows,
            "route_words": cfg.route_words, "ucode": cfg.ucode_depth,
            "groups": cfg.groups, "modes": cfg.modes}[resource]


@dataclass
class StageInfo:
    """One pipeline stage: ``kind`` in encoder/modes/readout/mixing/decoder (per-mode) or
    channel/mixing/decoder (channel); ``modes``: mode entries per neuron."""
    index: int
    kind: str
    layer: int | None
    program: str
    defines: dict
    size: int
    modes: int = 0

    @property
    def name(self) -> str:
        return self.kind if self.layer is None else f"layer{self.layer}.{self.kind}"


# -- model view: stages, connections, coefficients -------------------------------------------------

class _Net:
    """The QModel as logical neurons and connections (shared by compiler and checks)."""

    def __init__(self, model: QModel, cfg: FabricConfig, mapping: str = DEFAULT_MAPPING):
        self.model, self.cfg, self.mapping = model, cfg, check_mapping(mapping)
        H, M, L = model.H, model.modes, len(model.layers)
        self.H, self.M, self.L = H, M, L
        if mapping == "channel":
            st = []
            for li, ly in enumerate(model.layers):
                lin = model.enc if li == 0 else model.layers[li - 1].mix
                st.append(StageInfo(li, "channel", li, "channel",
                                    {"FRAC": ly.frac, "OUT_SHIFT": ly.out_shift,
                                     "IN_SHIFT": lin.bias_shift,
                                     "RELU_SHIFT": ly.relu_bias_shift}, H, M))
            st.append(StageInfo(L, "mixing", L - 1, "linear",
                                {"BIAS_SHIFT": model.layers[-1].mix.bias_shift}, H))
            st.append(StageInfo(L + 1, "decoder", None, "integrator",
                                {"BIAS_SHIFT": model.dec.bias_shift}, model.classes))
            self._finish(st)
            return
        st = [StageInfo(0, "encoder", None, "linear", {"BIAS_SHIFT": model.enc.bias_shift}, H)]
        for li, ly in enumerate(model.layers):
            b = 1 + 3 * li
            st.append(StageInfo(b, "modes", li, "s4d",
                                {"FRAC": ly.frac, "OUT_SHIFT": ly.out_shift}, H * M))
            st.append(StageInfo(b + 1, "readout", li, "relu",
                                {"BIAS_SHIFT": ly.relu_bias_shift}, H))
            st.append(StageInfo(b + 2, "mixing", li, "linear",
                                {"BIAS_SHIFT": ly.mix.bias_shift}, H))
        st.append(StageInfo(3 * L + 1, "decoder", None, "integrator",
                            {"BIAS_SHIFT": model.dec.bias_shift}, model.classes))
        self._finish(st)

    def _finish(self, st: list) -> None:
        assert len(st) == num_stages(self.model, self.mapping)
        self.stages = st
        self.programs = [load_program(s.program, {k: int(v) for k, v in s.defines.items()})
                         for s in st]

    def z_stage(self, layer: int) -> int:
        """Stage producing the input z of ``layer`` (the decoder for layer == L)."""
        if self.mapping == "channel":
            return self.L   # only the decoder asks: the last layer's mixing stage
        return 0 if layer == 0 else 3 * layer

    # Sources of one logical neuron: list of (source key, weight, shift). A source key is
    # ("in", i) for host input i, else (stage, j).
    def sources(self, s: int, j: int) -> list:
        st, m = self.stages[s], self.model
        if st.kind == "encoder" or (st.kind == "channel" and st.layer == 0):
            return [(("in", i), int(m.enc.W[j, i]), int(m.enc.shift[i]))
                    for i in range(m.d_in)]
        if st.kind == "channel":
            lin = m.layers[st.layer - 1].mix
            return [((s - 1, h), int(lin.W[j, h]), int(lin.shift[h])) for h in range(self.H)]
        if st.kind == "modes":
            return [((self.z_stage(st.layer), j // self.M), 1, 0)]
        if st.kind == "readout":
            return [((s - 1, j * self.M + k), 1, 0) for k in range(self.M)]
        lin = m.layers[st.layer].mix if st.kind == "mixing" else m.dec
        src = s - 1 if st.kind == "mixing" else self.z_stage(self.L)
        return [((src, h), int(lin.W[j, h]), int(lin.shift[h])) for h in range(self.H)]

    def coefs(self, s: int, j: int) -> list:
        st, m = self.stages[s], self.model
        c = [0] * 8
        if st.kind == "modes":
            ly = m.layers[st.layer]
            h, k = divmod(j, self.M)
            c[:6] = [ly.dA[h, k, 0], ly.dA[h, k, 1], ly.dB[h, k, 0], ly.dB[h, k, 1],
                     ly.C[h, k, 0], ly.C[h, k, 1]]
        elif st.kind == "encoder":
            c[6] = m.enc.b[j]
        elif st.kind == "channel":
            ly = m.layers[st.layer]
            c[6] = (m.enc if st.layer == 0 else m.layers[st.layer - 1].mix).b[j]
            c[7] = ly.relu_bias[j]
        elif st.kind == "readout":
            c[6] = m.layers[st.layer].relu_bias[j]
        elif st.kind == "mixing":
            c[6] = m.layers[st.layer].mix.b[j]
        else:
            c[6] = m.dec.b[j]
        return [int(v) for v in c]

    def mode_coefs(self, s: int, j: int) -> np.ndarray:
        """(M, 6) mode coefficients of channel neuron j of stage s: dA, dB, (Re C', -Im C')."""
        ly = self.model.layers[self.stages[s].layer]
        return np.concatenate([ly.dA[j], ly.dB[j], ly.C[j]], axis=1).astype(np.int64)


def _check_ranges(model: QModel, cfg: FabricConfig, mapping: str = DEFAULT_MAPPING) -> None:
    """Every integer parameter must fit its field; raise CompileError naming the first misfit."""
    wlo, whi = smin(cfg.weight_width), smax(cfg.weight_width)
    clo, chi = smin(cfg.coef_width), smax(cfg.coef_width)

    def rng(name, arr, lo, hi, what):
        arr = np.asarray(arr)
        if arr.size and (arr.min() < lo or arr.max() > hi):
            bad = arr.min() if arr.min() < lo else arr.max()
            raise CompileError(f"{name}: value {int(bad)} outside the {what} range {lo}..{hi}")

    def lin(name, q: QLinear, n_in, n_out):
        if q.W.shape != (n_out, n_in) or q.shift.shape != (n_in,) or q.b.shape != (n_out,):
            raise CompileError(f"{name}: shapes W {q.W.shape}, shift {q.shift.shape}, "
                               f"b {q.b.shape} do not match ({n_out}, {n_in})")
        rng(f"{name}.W", q.W, wlo, whi, f"{cfg.weight_width}-bit weight")
        rng(f"{name}.shift", q.shift, 0, 31, "axon shift")
        rng(f"{name}.b", q.b, clo, chi, f"{cfg.coef_width}-bit coefficient")
        rng(f"{name}.bias_shift", [q.bias_shift], 0, 31, "shift")

    H = model.H
    if H < 1 or model.d_in < 1 or model.classes < 1:
        raise CompileError(f"model {model.describe()} has an empty dimension")
    lin("enc", model.enc, model.d_in, H)
    lin("dec", model.dec, H, model.classes)
    for i, ly in enumerate(model.layers):
        p = f"layers.{i}"
        M = ly.dA.shape[1]
        for k in ("dA", "dB", "C"):
            a = getattr(ly, k)
            if a.shape != (H, M, 2):
                raise CompileError(f"{p}.{k}: shape {a.shape}, expected ({H}, {M}, 2)")
            rng(f"{p}.{k}", a, clo, chi, f"{cfg.coef_width}-bit coefficient")
        if M != model.modes:
            raise CompileError(f"{p}: {M} modes per channel, layer 0 has {model.modes}")
        rng(f"{p}.frac", [ly.frac], 0, 31, "shift")
        rng(f"{p}.out_shift", [ly.out_shift], 0, 31, "shift")
        rng(f"{p}.relu_bias", ly.relu_bias, clo, chi, f"{cfg.coef_width}-bit coefficient")
        rng(f"{p}.relu_bias_shift", [ly.relu_bias_shift], 0, 31, "shift")
        lin(f"{p}.mix", ly.mix, H, H)
    S = num_stages(model, mapping)
    if S > 255:
        raise CompileError(f"{len(model.layers)} layers need a fall-through period of "
                           f"{S} steps; the group period field holds 255")
    if mapping == "channel" and model.modes > cfg.modes:
        raise CompileError(f"a channel neuron holds {model.modes} modes, a core's mode memory "
                           f"{cfg.modes}; raise the modes capacity or use --mapping per-mode")


def _term_bound(P: int, w: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Largest |rnd(p * w, s)| for |p| <= P (see neuroloom.contract.fixed.rnd)."""
    w = np.abs(np.asarray(w, dtype=np.int64))
    s = np.asarray(s, dtype=np.int64)
    return (P * w + ((np.int64(1) << s) >> 1)) >> s


def check_accumulators(model: QModel, cfg: FabricConfig, mapping: str = DEFAULT_MAPPING) -> dict:
    """Worst-case dendrite accumulator magnitude per stage (every payload at +-2**(W-1)); with
    channel neurons also the MODES sum register of each layer (``layer{i}.modes_sum``).

    Raises :class:`AccumulatorRangeError` if any could leave the signed ``acc_width`` range
    (the hardware would wrap); returns ``{stage name: bound}``.
    """
    P, lim = 1 << (cfg.state_width - 1), smax(cfg.acc_width)
    out = {}

    def lin(name, q: QLinear):
        b = _term_bound(P, q.W, q.shift[None, :]).sum(axis=1)
        o = int(np.argmax(b))
        out[name] = int(b[o])
        if b[o] > lim:
            raise AccumulatorRangeError(
                f"{name}: neuron {o} can accumulate up to {int(b[o])} (fan-in {q.W.shape[1]}, "
                f"{cfg.state_width}-bit payloads), beyond the {cfg.acc_width}-bit accumulator "
                f"({lim}); increase that input's shift or reduce its weights")

    if mapping == "channel":
        for i in range(len(model.layers)):
            lin(f"layer{i}.channel", model.enc if i == 0 else model.layers[i - 1].mix)
            rb = P * model.modes
            out[f"layer{i}.modes_sum"] = rb
            if rb > lim:
                raise AccumulatorRangeError(
                    f"layer{i}.channel: {model.modes} modes can sum to {rb}, beyond the "
                    f"{cfg.acc_width}-bit MODES sum ({lim}); use fewer modes per channel")
        if model.layers:
            lin(f"layer{len(model.layers) - 1}.mixing", model.layers[-1].mix)
        else:
            lin("encoder", model.enc)
        lin("decoder", model.dec)
        return out
    lin("encoder", model.enc)
    for i, ly in enumerate(model.layers):
        out[f"layer{i}.modes"] = P
        rb = P * model.modes
        out[f"layer{i}.readout"] = rb
        if rb > lim:
            raise AccumulatorRangeError(
                f"layer{i}.readout: {model.modes} modes can sum to {rb}, beyond the "
                f"{cfg.acc_width}-bit accumulator ({lim}); use fewer modes per channel")
        lin(f"layer{i}.mixing", ly.mix)
    lin("decoder", model.dec)
    return out


# -- mesh geometry ---------------------------------------------------------------------------------

def snake_order(w: int, h: int) -> list[int]:
    """Core indices in boustrophedon order: consecutive cores are mesh neighbours."""
    order = []
    for y in range(h):
        xs = range(w) if y % 2 == 0 else range(w - 1, -1, -1)
        order += [y * w + x for x in xs]
    return order


def fitting_mesh(cores: int) -> str | None:
    """A ``WxH`` (W >= H) with at least ``cores`` tiles: smallest side first, then smallest
    area (short NoC paths, few idle tiles); None beyond 16x16."""
    best = None
    for w in range(1, MAX_MESH + 1):
        for h in range(1, w + 1):
            if w * h >= cores:
                key = (w, w * h)
                if best is None or key < best[0]:
                    best = (key, f"{w}x{h}")
    return None if best is None else best[1]


def _hop_cost(traffic: np.ndarray, pos: np.ndarray, dist: np.ndarray) -> int:
    return int((traffic * dist[np.ix_(pos, pos)]).sum())


def place_slots(traffic: np.ndarray, cfg: FabricConfig, optimize: bool = True,
                max_passes: int = 8) -> list[int]:
    """Assign packed cores ("slots", ``traffic[i, j]`` = route words from slot i to slot j) to
    mesh tiles: the snake order, then (``optimize``) pairwise swaps of tiles -- free tiles
    included -- while the total hops ``sum traffic * manhattan`` decreases. Returns the core
    index of every slot."""
    n, C = len(traffic), cfg.num_cores
    order = snake_order(cfg.mesh_w, cfg.mesh_h)
    if not optimize or n <= 1:
        return order[:n]
    xy = np.array([cfg.core_xy(c) for c in range(C)])
    dist = np.abs(xy[:, None, :] - xy[None, :, :]).sum(axis=2)          # (C, C)
    T = np.zeros((C, C), dtype=np.int64)                                  # slots padded to C
    T[:n, :n] = traffic + traffic.T
    pos = np.array(order)                                                 # slot -> tile
    for _ in range(max_passes):
        improved = False
        for i in range(min(n, C)):
            S = dist[np.ix_(pos, pos)]                                    # slot-slot hops
            # swapping slots i and j changes the cost by
            #   sum_k (T[i,k] - T[j,k]) * (S[j,k] - S[i,k])  -  (T[i,i] + T[j,j] - 2 T[i,j]) S[i,j]
            delta = ((T[i][None, :] - T) * (S - S[i][None, :])).sum(axis=1)
            delta -= (T[i, i] + np.diag(T) - 2 * T[i]) * S[i]
            j = int(np.argmin(delta))
            if delta[j] < 0 and j != i:
                pos[i], pos[j] = pos[j], pos[i]
                improved = True
        if not improved:
            break
    return [int(p) for p in pos[:n]]


# -- packing ---------------------------------------------------------------------------------------

def _rows_bound(n: int, lanes: int) -> int:
    """Synapse rows covering n consecutive neurons at any alignment."""
    return (n + 2 * lanes - 2) // lanes if n else 0


class _CoreLoad:
    def __init__(self):
        self.neurons: list = []          # (stage, j)
        self.stages: set = set()
        self.ucode = 0
        self.src_targets: dict = {}      # source key -> targets on this core
        self.rows = 0
        self.routes = 0
        self.modes = 0
        self.stage_count: dict = {}      # stage -> neurons of it on this core
        self.cycles = 0                  # estimated neuron-engine cycles (cycle budget)

    def usage(self) -> dict:
        return {"neurons": len(self.neurons), "axons": len(self.src_targets),
                "synapse_rows": self.rows, "route_words": self.routes, "ucode": self.ucode,
                "groups": len(self.stages), "modes": self.modes}


def _pack(net: _Net, cfg: FabricConfig, caps: dict, cycle_budget: int | None = None,
          spread: int | None = None):
    """Greedy stage-ordered packing on an unbounded line of cores ("slots"), each within the
    per-core capacities ``caps`` (resource -> amount) and, with ``cycle_budget``, within that
    many estimated neuron-engine cycles per step (``resources.group_cycles``, every group
    active): a core takes an item while its neurons' work still fits, so mode updates spread
    over the cores as evenly as synapse rows do under a row budget.

    ``spread``: instead of filling cores one after the other, cut every stage into ``spread``
    consecutive chunks (a multiple of ``synapse_lanes`` neurons each, so rows stay dense) and
    put chunk k on core k: every core holds a share of every stage, which balances the work of
    both schedules (fall-through runs one stage at a time).

    Returns ``(loads, where, rejects, dests)``: per-slot usage, ``where[(stage, j)] = slot``,
    how often each resource made the packer open a new core, and ``dests[source] = slots``
    it sends to. Raises FitError if some item does not fit even an empty core.
    """
    lanes = cfg.synapse_lanes
    loads: list[_CoreLoad] = [_CoreLoad()]
    where: dict = {}
    dests: dict = {}                       # source key -> set of core slots
    srcs_cache: dict = {}
    prog_key = [tuple(p) for p in net.programs]
    core_progs: list = [set()]
    rejects: dict = {}
    timing = resources.ENGINES["pipelined"]
    shape = [resources.program_shape(p) for p in net.programs]

    def engine_cycles(counts: dict) -> int:
        return timing.step + sum(resources.group_cycles(n, *shape[s], net.stages[s].modes,
                                                        cfg.neuron_lanes, timing)
                                 for s, n in counts.items())

    def sources(n):
        r = srcs_cache.get(n)
        if r is None:
            r = srcs_cache[n] = [k for k, _, _ in net.sources(*n)]
        return r

    def attempt(slot, item):
        """Try ``item`` on ``slot``: ``(None, None, commit)`` if it fits, else
        ``(resource, amount needed, None)``; resource ``("route_words", slot)`` when a source
        core (not ``slot``) runs out of route words."""
        ld = loads[slot]
        new_stages = {s for s, _ in item} - ld.stages
        new_progs = {prog_key[s] for s in new_stages} - core_progs[slot]
        ucode = ld.ucode + sum(len(p) for p in new_progs)
        add_t: dict = {}
        for n in item:
            for k in sources(n):
                add_t[k] = add_t.get(k, 0) + 1
        rows, axons = ld.rows, len(ld.src_targets)
        route_add: dict = {}
        for k, c in add_t.items():
            old = ld.src_targets.get(k, 0)
            rows += _rows_bound(old + c, lanes) - _rows_bound(old, lanes)
            if old == 0:
                axons += 1
                if k[0] != "in" and slot not in dests.get(k, ()):
                    src_slot = where.get(k, slot)  # same item: source lands here too
                    route_add[src_slot] = route_add.get(src_slot, 0) + 1
        host = sum(1 for s, _ in item if net.stages[s].kind == "decoder")
        route_add[slot] = route_add.get(slot, 0) + host
        modes = ld.modes + sum(net.stages[s].modes for s, _ in item)
        use = {"neurons": len(ld.neurons) + len(item), "axons": axons, "synapse_rows": rows,
               "ucode": ucode, "groups": len(ld.stages | new_stages),
               "route_words": ld.routes + route_add.get(slot, 0), "modes": modes}
        for r in RESOURCES:
            if use[r] > caps[r]:
                return r, use[r], None
        counts = ld.stage_count
        if cycle_budget is not None:
            counts = dict(counts)
            for s, _ in item:
                counts[s] = counts.get(s, 0) + 1
            cycles = engine_cycles(counts)
            if cycles > cycle_budget:
                return "cycles", cycles, None
        for s2, add in route_add.items():
            if s2 != slot and loads[s2].routes + add > caps["route_words"]:
                return ("route_words", s2), loads[s2].routes + add, None

        def commit():
            ld.neurons += item
            ld.stages |= new_stages
            core_progs[slot] |= new_progs
            ld.ucode, ld.rows, ld.modes = ucode, rows, modes
            if cycle_budget is not None:
                ld.stage_count = counts
            for k, c in add_t.items():
                ld.src_targets[k] = ld.src_targets.get(k, 0) + c
            for n in item:
                where[n] = slot
            for k in add_t:
                if k[0] != "in":
                    dests.setdefault(k, set()).add(slot)
            for s2, add in route_add.items():
                loads[s2].routes += add
        return None, None, commit

    def place(item, label):
        """Put ``item`` on the current core, else on a new one."""
        for slot in (len(loads) - 1, len(loads)):
            if slot == len(loads):
                loads.append(_CoreLoad())
                core_progs.append(set())
            res, used, commit = attempt(slot, item)
            if commit is not None:
                commit()
                return
            name = res if isinstance(res, str) else "route_words"
            rejects[name] = rejects.get(name, 0) + 1
            if isinstance(res, tuple):   # the sources' core is out of route words
                raise FitError(f"{label}: its sources' core (packing slot {res[1]}) would need "
                               f"{used} route words, capacity is {caps[name]} ({used - caps[name]}"
                               f" over); raise route_words", name, used, caps[name])
        if name == "cycles":
            raise FitError(f"{label} needs {used} neuron-engine cycles on one core, the cycle "
                           f"budget is {cycle_budget} ({used - cycle_budget} over); raise the "
                           "cycle budget", name, used, cycle_budget)
        if caps[name] != _capacity(cfg, name):      # a budget binds, not the core
            budget = _BUDGET[name]
            raise FitError(f"{label} needs {used} {name} on one core, the {budget} is "
                           f"{caps[name]} ({used - caps[name]} over); raise the {budget} "
                           f"(at most {_capacity(cfg, name)})", name, used, caps[name])
        raise FitError(f"{label} needs {used} {name} on one core, capacity is {caps[name]} "
                       f"({used - caps[name]} over); no mesh size helps: raise the core's "
                       f"{name} capacity", name, used, caps[name])

    def place_on(slot, item, label):
        """Put ``item`` on core ``slot`` (spread packing), or raise FitError."""
        while len(loads) <= slot:
            loads.append(_CoreLoad())
            core_progs.append(set())
        res, used, commit = attempt(slot, item)
        if commit is None:
            name = res if isinstance(res, str) else "route_words"
            cap = cycle_budget if name == "cycles" else caps[name]
            raise FitError(f"{label}: spread over {spread} cores, core {slot} needs {used} "
                           f"{name}, capacity is {cap} ({used - cap} over); raise {name} or use "
                           "more cores", name, used, cap)
        commit()

    if spread is not None:
        for st in net.stages:
            s = st.index
            if st.kind == "readout":
                continue
            if st.kind == "modes":        # channel blocks with their readouts
                items = [[(s, h * net.M + m) for m in range(net.M)] + [(s + 1, h)]
                         for h in range(net.H)]
            else:
                items = [[(s, j)] for j in range(st.size)]
            chunk = -(-len(items) // spread)
            chunk = -(-chunk // lanes) * lanes
            for k in range(0, len(items), chunk):
                for i, item in enumerate(items[k:k + chunk]):
                    place_on(k // chunk, item, f"{st.name} neuron {k + i}")
        return loads, where, rejects, dests

    for st in net.stages:
        s = st.index
        if st.kind == "readout":
            continue
        if st.kind == "modes":
            blocks = [[(s, h * net.M + m) for m in range(net.M)] for h in range(net.H)]
            # keep each readout with its channel's modes when that block fits an empty core;
            # else all the layer's mode blocks first, then its readouts
            if _fits_empty_core(net, cfg, blocks[0] + [(s + 1, 0)], caps):
                for h, block in enumerate(blocks):
                    place(block + [(s + 1, h)], f"layer {st.layer} channel {h} (modes+readout)")
            else:
                for h, block in enumerate(blocks):
                    place(block, f"layer {st.layer} channel {h} ({net.M} modes)")
                for h in range(net.H):
                    place([(s + 1, h)], f"layer {st.layer} readout {h}")
            continue
        for j in range(st.size):
            place([(s, j)], f"{st.name} neuron {j}")
    return loads, where, rejects, dests


def _fits_empty_core(net: _Net, cfg: FabricConfig, item, caps: dict) -> bool:
    """Does a channel block (modes + readout) fit an otherwise empty core?"""
    lanes = cfg.synapse_lanes
    srcs: dict = {}
    for n in item:
        for k, _, _ in net.sources(*n):
            srcs[k] = srcs.get(k, 0) + 1
    rows = sum(_rows_bound(c, lanes) for c in srcs.values())
    progs = {tuple(net.programs[s]) for s, _ in item}
    return (len(item) <= caps["neurons"] and len(srcs) <= caps["axons"]
            and rows <= caps["synapse_rows"] and len(item) <= caps["route_words"]
            and sum(len(p) for p in progs) <= caps["ucode"]
            and len({s for s, _ in item}) <= caps["groups"]
            and sum(net.stages[s].modes for s, _ in item) <= caps["modes"])


# -- the result ------------------------------------------------------------------------------------

@dataclass
class Compiled:
    """A model mapped onto a fabric.

    ``cores[c]`` is the :class:`CoreConfig` of core index c (row-major, see FabricConfig);
    ``group_stage[c][g]`` the stage of group g; ``inputs[i]`` the (core, axon) list of input
    feature i; ``outputs[c]`` = (core, neuron, host channel) of class c; ``mapping`` how layers
    became neurons (``per-mode`` or ``channel``).
    """
    cfg: FabricConfig
    mode: str
    stages: list
    cores: list
    group_stage: list
    inputs: list
    outputs: list
    placement: dict                 # (stage, j) -> (core, local neuron)
    in_scale: float = 1.0
    out_scale: float = 1.0
    model_info: dict = field(default_factory=dict)
    acc_bounds: dict = field(default_factory=dict)
    mapping: str = DEFAULT_MAPPING

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    @property
    def cores_used(self) -> int:
        return sum(1 for c in self.cores if c.groups)

    def schedule(self, mode: str, stage: int) -> tuple[int, int]:
        """(period, start) of ``stage`` in ``mode``."""
        _check_mode(mode)
        return (1 if mode == "pipelined" else self.num_stages), stage

    def token_period(self, mode: str) -> int:
        """Steps between tokens."""
        return self.schedule(mode, 0)[0]

    def output_step(self, mode: str, k: int) -> int:
        """Step at which the decoder emits the running logits of token ``k``."""
        return k * self.token_period(mode) + self.num_stages - 1

    def total_steps(self, mode: str, tokens: int) -> int:
        return self.output_step(mode, tokens - 1) + 1 if tokens else 0

    def set_mode(self, mode: str) -> None:
        """Rewrite every group's (period, start) for ``mode``."""
        _check_mode(mode)
        for c, core in enumerate(self.cores):
            core.groups = [replace(g, period=p, start=st)
                           for g, s in zip(core.groups, self.group_stage[c])
                           for p, st in [self.schedule(mode, s)]]
        self.mode = mode

    def writes(self, mode: str | None = None) -> list[tuple[int, int, int, int, int]]:
        """All ``(core, mem, index, part, value)`` config writes for ``mode``."""
        if mode is not None and mode != self.mode:
            self.set_mode(mode)
        out = []
        for c, core in enumerate(self.cores):
            out += [(c, int(m), i, p, v) for m, i, p, v in core.writes()]
        return out

    def group_writes(self, mode: str) -> list[tuple[int, int, int, int, int]]:
        """Only the GROUP descriptor writes for ``mode`` (switching modes needs nothing else)."""
        cfg, out = self.cfg, []
        lay = group_layout(cfg)
        for c, core in enumerate(self.cores):
            for i in range(cfg.groups):
                word = 0
                if i < len(core.groups):
                    g = core.groups[i]
                    period, start = self.schedule(mode, self.group_stage[c][i])
                    word = pack(lay, first=g.first, count=g.count, pc=g.pc, period=period,
                                start=start, mode_base=g.mode_base, modes=g.modes)
                out += [(c, int(Mem.GROUP), i, p, v)
                        for p, v in enumerate(split_parts(cfg, Mem.GROUP, word))]
        return out

    def usage(self) -> list[dict]:
        """Per core: resource -> (used, capacity)."""
        return [core.usage() for core in self.cores]

    def hops(self) -> int:
        """NoC hops per token if every neuron fires once: sum over spike route words of the
        Manhattan distance between source and destination tile (loopback and host: 0)."""
        total = 0
        for c, core in enumerate(self.cores):
            x, y = self.cfg.core_xy(c)
            for rts in core.routes.values():
                total += sum(abs(r.x - x) + abs(r.y - y) for r in rts if not r.host)
        return total

    def route_words(self) -> int:
        return sum(len(r) for core in self.cores for r in core.routes.values())

    def summary(self) -> dict:
        tot = {r: sum(u[r][0] for u in self.usage()) for r in RESOURCES}
        return {"mesh": f"{self.cfg.mesh_w}x{self.cfg.mesh_h}", "cores_used": self.cores_used,
                "mapping": self.mapping, "stages": self.num_stages,
                "hops_per_token": self.hops(), **tot}


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES)}")


# -- compile ---------------------------------------------------------------------------------------

def compile_model(model: QModel, cfg: FabricConfig | None = None, mode: str = "pipelined",
                  allow_acc_wrap: bool = False, optimize_placement: bool = True,
                  row_budget: int | None = None, mapping: str = DEFAULT_MAPPING,
                  mode_budget: int | None = None, cycle_budget: int | None = None,
                  packing: str = "fill") -> Compiled:
    """Map ``model`` onto the fabric ``cfg``.

    ``mapping``: ``"per-mode"`` (one neuron per complex mode, readout and mixing neurons: 3
    stages per layer) or ``"channel"`` (one channel neuron per channel running all its modes:
    1 stage per layer, plus the last mixing; the default); both compute ``qforward`` bit
    for bit.

    Raises :class:`CompileError` for parameters out of range, :class:`AccumulatorRangeError`
    when an accumulator could overflow (unless ``allow_acc_wrap``: the fabric and the reference
    both wrap, so results stay identical, only meaningless), :class:`FitError` when the model
    does not fit. ``optimize_placement``: improve the snake placement by pairwise tile swaps
    that lower the total NoC hops (else keep the snake order).

    ``row_budget``: use at most this many synapse rows per core (default: all of them). A core
    works through one synapse row per cycle and every source spikes at most once per step, so
    the busiest core's rows bound the step length from below; a lower budget spreads fan-in
    over more cores for shorter steps (about 2 cycles per neuron update is the other bound).

    ``mode_budget``: use at most this many mode entries per core (channel mapping; default:
    the whole mode memory). The neuron engine updates ``neuron_lanes`` mode entries per cycle,
    so the busiest core's mode entries bound the step too; a lower budget spreads channel
    neurons over more cores.

    ``cycle_budget``: at most this many estimated neuron-engine cycles per step on a core
    (:func:`~neuroloom.firmware.resources.group_cycles` of its groups, all active); with
    ``row_budget`` set to the same value the packer balances mode updates and synapse rows
    (what ``neuroloom compile --board`` searches over, :mod:`neuroloom.firmware.target`).

    ``packing``: ``"fill"`` (cores filled one after the other in stage order, the default) or
    ``"spread"`` (every stage cut into one chunk per core of the mesh: balanced work in both
    schedules, more route words and axons per core).
    """
    cfg = cfg or FabricConfig()
    _check_mode(mode)
    if mapping not in MAPPINGS:
        raise CompileError(f"mapping {mapping!r} is not one of {', '.join(MAPPINGS)}")
    if mapping == "channel" and not model.layers:
        raise CompileError("the channel mapping needs at least one S4D layer; "
                           "use mapping='per-mode'")
    caps = {r: _capacity(cfg, r) for r in RESOURCES}
    for name, budget, resource, what in (("row_budget", row_budget, "synapse_rows", "synapse rows"),
                                         ("mode_budget", mode_budget, "modes", "mode entries")):
        if budget is None:
            continue
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise CompileError(f"{name}={budget!r} must be a positive integer")
        if budget > caps[resource]:
            raise CompileError(f"{name}={budget} is more than a core's {caps[resource]} {what}")
        caps[resource] = budget
    if packing not in PACKINGS:
        raise CompileError(f"packing {packing!r} is not one of {', '.join(PACKINGS)}")
    if cycle_budget is not None and (isinstance(cycle_budget, bool)
                                     or not isinstance(cycle_budget, int) or cycle_budget < 1):
        raise CompileError(f"cycle_budget={cycle_budget!r} must be a positive integer")
    _check_ranges(model, cfg, mapping)
    try:
        bounds = check_accumulators(model, cfg, mapping)
    except AccumulatorRangeError:
        if not allow_acc_wrap:
            raise
        bounds = {}
    net = _Net(model, cfg, mapping)
    loads, where, rejects, dests = _pack(net, cfg, caps, cycle_budget,
                                         cfg.num_cores if packing == "spread" else None)
    n_needed = len(loads) if loads[-1].neurons else len(loads) - 1
    if n_needed > cfg.num_cores:
        if rejects.get("cycles", 0) > max((rejects.get(r, 0) for r in RESOURCES), default=0):
            mesh = fitting_mesh(n_needed)
            raise FitError(f"model does not fit the {cfg.mesh_w}x{cfg.mesh_h} mesh within "
                           f"{cycle_budget} neuron-engine cycles per core: it needs "
                           f"{n_needed} cores, the mesh has {cfg.num_cores}; binding resource "
                           f"cycles (the cycle budget); "
                           + (f"a {mesh} mesh fits (--mesh {mesh})" if mesh else
                              "raise the cycle budget"),
                           "cycles", n_needed, cfg.num_cores, n_needed, mesh)
        _raise_fit(cfg, loads, n_needed, rejects, caps)

    traffic = np.zeros((n_needed, n_needed), dtype=np.int64)
    for k, slots in dests.items():
        for d in slots:
            traffic[where[k], d] += 1
    slot_core = place_slots(traffic, cfg, optimize=optimize_placement)
    cores = [CoreConfig(cfg) for _ in range(cfg.num_cores)]
    group_stage: list = [[] for _ in range(cfg.num_cores)]
    placement: dict = {}
    lanes = cfg.synapse_lanes

    # local layout and groups
    core_neurons: dict = {}      # core -> logical neurons in local order
    for slot, ld in enumerate(loads[:n_needed]):
        c = slot_core[slot]
        core = cores[c]
        neurons = core_neurons[c] = sorted(ld.neurons)
        for idx, n in enumerate(neurons):
            placement[n] = (c, idx)
        i = 0
        mode_next = 0
        while i < len(neurons):
            s = neurons[i][0]
            e = i
            while e < len(neurons) and neurons[e][0] == s:
                e += 1
            pc = core.add_program(net.programs[s])
            M = net.stages[s].modes
            core.groups.append(Group(i, e - i, pc, 1, s, mode_base=mode_next if M else 0,
                                     modes=M))
            group_stage[c].append(s)
            for n in neurons[i:e]:
                core.coef[placement[n][1]] = net.coefs(*n)
                if M:
                    core.mcoef[mode_next:mode_next + M] = net.mode_coefs(*n)
                    mode_next += M
            i = e

    # axons and synapse rows: per destination core, per source
    axon_of: dict = {}           # (source key, core) -> axon
    inputs: list = [[] for _ in range(model.d_in)]
    for c in slot_core:
        core = cores[c]
        per_src: dict = {}       # key -> (shift, {local: weight})
        for local, n in enumerate(core_neurons[c]):
            for k, w, sh in net.sources(*n):
                ent = per_src.setdefault(k, [sh, {}])
                if w:
                    ent[1][local] = w
        for k in sorted(per_src, key=lambda k: (k[0] != "in", k)):
            sh, tw = per_src[k]
            if not tw:
                continue
            rows: dict = {}
            for local, w in tw.items():
                r, j = divmod(local, lanes)
                rows.setdefault(r, [0] * lanes)[j] = w
            syn = [Synapse(r, sum(1 << j for j in range(lanes) if ws[j]), tuple(ws))
                   for r, ws in sorted(rows.items())]
            a = core.add_axon(syn, sh)
            axon_of[(k, c)] = a
            if k[0] == "in":
                inputs[k[1]].append((c, a))

    # routes: one word per (source neuron, destination core)
    by_src: dict = {}
    for (k, c), a in axon_of.items():
        if k[0] != "in":
            by_src.setdefault(k, []).append((c, a))
    outputs = []
    for n, (c, local) in placement.items():
        rts = []
        for dc, a in sorted(by_src.get(n, [])):
            x, y = cfg.core_xy(dc)
            rts.append(Route(x, y, a))
        if net.stages[n[0]].kind == "decoder":
            rts.append(Route(0, 0, n[1], host=True))
            outputs.append((c, local, n[1]))
        if rts:
            cores[c].routes[local] = rts
    outputs.sort(key=lambda o: o[2])

    for c, core in enumerate(cores):
        try:
            core.validate(f"core {c} {cfg.core_xy(c)}")
        except ValueError as e:  # packing estimates are upper bounds: should not happen
            raise FitError(str(e)) from None

    comp = Compiled(cfg, mode, net.stages, cores, group_stage, inputs, outputs, placement,
                    float(model.in_scale), float(model.out_scale),
                    {"d_in": model.d_in, "H": model.H, "modes": model.modes,
                     "layers": len(model.layers), "classes": model.classes,
                     "mapping": mapping}, bounds, mapping)
    comp.set_mode(mode)
    return comp


def _raise_fit(cfg: FabricConfig, loads, n_needed: int, rejects: dict, caps: dict):
    tot = {r: sum(ld.usage()[r] for ld in loads) for r in RESOURCES}
    avail = {r: caps[r] * cfg.num_cores for r in RESOURCES}
    # the binding resource: highest demand / mesh capacity; if none is over in total (packing
    # keeps channel blocks whole), the one that made the packer open new cores most often
    res = max(RESOURCES, key=lambda r: (tot[r] / avail[r], rejects.get(r, 0)))
    if tot[res] <= avail[res]:
        res = max(RESOURCES, key=lambda r: (rejects.get(r, 0), tot[r] / avail[r]))
        short = (f"{tot[res]} needed of {avail[res]} on the mesh, but whole channel blocks "
                 f"need {n_needed} cores' worth of {res} (per core {caps[res]}"
                 + (f", the {_BUDGET[res]}" if caps[res] != _capacity(cfg, res) else "") + ")")
    else:
        short = f"{tot[res]} needed, {avail[res]} available ({tot[res] - avail[res]} over)"
    mesh = fitting_mesh(n_needed)
    where = (f"a {mesh} mesh fits (--mesh {mesh})" if mesh else
             f"no mesh up to {MAX_MESH}x{MAX_MESH} fits; raise the per-core capacities")
    raise FitError(f"model does not fit the {cfg.mesh_w}x{cfg.mesh_h} mesh: it needs "
                   f"{n_needed} cores, the mesh has {cfg.num_cores}; binding resource {res}: "
                   f"{short}; {where}", res, tot[res], avail[res], n_needed, mesh)


# -- random models (tests, benchmarks, the demo fallback) ------------------------------------------

def random_qmodel(H: int = 8, N: int = 4, layers: int = 2, d_in: int = 1, classes: int = 10,
                  seed: int = 0, frac: int = 14, cfg: FabricConfig | None = None) -> QModel:
    """A random QModel with legal integer parameters (stable S4D poles, accumulator-safe shifts).

    ``N`` complex modes per channel (+1 skip mode with dA = 0, so ``modes == N + 1``).
    """
    cfg = cfg or FabricConfig()
    rng = np.random.default_rng(seed)
    wmax = smax(cfg.weight_width)
    cmax = smax(cfg.coef_width)
    P = 1 << (cfg.state_width - 1)
    lim = smax(cfg.acc_width)

    def lin(n_out, n_in, extra=0, bias_scale=64):
        W = rng.integers(-wmax, wmax + 1, size=(n_out, n_in))
        W[rng.random(W.shape) < 0.1] = 0
        # roughly unit gain (|W| ~ wmax/2, fan-in n_in) and never above the accumulator bound
        s = max(0, int(round(np.log2(wmax / 2 * np.sqrt(n_in)))) + extra)
        while _term_bound(P, W, np.full(n_in, s)).sum(axis=1).max() > lim:
            s += 1
        shift = np.full(n_in, s) + rng.integers(0, 2, size=n_in)
        b = rng.integers(-bias_scale, bias_scale + 1, size=n_out)
        return QLinear(W.astype(np.int64), shift.astype(np.int64), b.astype(np.int64),
                       int(rng.integers(0, 4)))

    lys = []
    M = N + 1
    one = 1 << frac
    for _ in range(layers):
        r = rng.uniform(0.85, 0.999, size=(H, N))
        th = rng.uniform(0, np.pi, size=(H, N))
        dA = np.zeros((H, M, 2), dtype=np.int64)
        dA[:, :N, 0] = np.round(r * np.cos(th) * one)
        dA[:, :N, 1] = np.round(r * np.sin(th) * one)
        dB = rng.integers(-one, one + 1, size=(H, M, 2))
        dB[:, N, :] = [one, 0]                    # skip mode: state = u
        C = rng.integers(-cmax // 2, cmax // 2 + 1, size=(H, M, 2))
        # |C| ~ 2**(coef_width-3); states grow ~1/(1-|dA|) ~ 2**4; M modes add ~sqrt(M)
        out_shift = cfg.coef_width - 3 + 4 + int(round(np.log2(np.sqrt(M))))
        lys.append(QLayer(dA, dB.astype(np.int64), C.astype(np.int64), frac,
                          min(31, out_shift + int(rng.integers(0, 2))),
                          rng.integers(-200, 201, size=H).astype(np.int64),
                          int(rng.integers(0, 3)), lin(H, H)))
    return QModel(lin(H, d_in), lys, lin(classes, H, extra=4), in_scale=64.0, out_scale=1.0,
                  meta={"random": True, "seed": seed})


def from_compiled(comp) -> Image:
    """Build an :class:`Image` from a :class:`Compiled`."""
    schedules = {m: {"period": comp.token_period(m), "first_output": comp.output_step(m, 0),
                     "group_writes": [list(w) for w in comp.group_writes(m)]} for m in MODES}
    model = dict(comp.model_info, in_scale=comp.in_scale, out_scale=comp.out_scale)
    stages = [{"index": s.index, "name": s.name, "program": s.program, "defines": s.defines,
               "size": s.size} for s in comp.stages]
    usage = [{k: list(v) for k, v in u.items()} for u in comp.usage()]
    return Image(comp.cfg, comp.mode, comp.writes(), schedules,
                 [list(x) for x in comp.inputs], list(comp.outputs), model, stages, usage)
