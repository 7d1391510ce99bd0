"""Golden fabric model: S4D program vs the float recurrence, cross-core spikes, schedules,
batching, configuration access and errors."""

import numpy as np
import pytest

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.coreconfig import ConfigError, CoreConfig, Group, Route, Synapse
from neuroloom.contract.layouts import Counter, Mem
from neuroloom.firmware.asm import load_program
from neuroloom.sim.golden import GoldenFabric

FRAC, OUT = 15, 15


def load(fabric, configs):
    for core, cc in configs.items():
        fabric.load([(core,) + w for w in cc.writes()])


def fan_out_axon(cc, neurons, weight=1, shift=0):
    """An axon whose block reaches ``neurons`` with one weight (rows packed by lane)."""
    lanes = cc.cfg.synapse_lanes
    rows = {}
    for n in neurons:
        rows.setdefault(n // lanes, [0] * lanes)[n % lanes] = weight
    syn = [Synapse(r, sum(1 << j for j, w in enumerate(ws) if w), tuple(ws))
           for r, ws in sorted(rows.items())]
    return cc.add_axon(syn, shift)


# -- S4D program vs float complex recurrence ----------------------------------------------------

@pytest.mark.parametrize("radius", [0.9, 0.99, 0.999, 0.9995])
def test_s4d_program_tracks_float_recurrence_within_bound(radius):
    rng = np.random.default_rng(int(radius * 1e4))
    cfg = FabricConfig(mesh_w=1, mesh_h=1)
    M, K = 16, 400
    theta = rng.uniform(-np.pi, np.pi, M)
    dA = radius * np.exp(1j * theta)                                      # (M,)

    def q(v):
        return np.round(v * 2 ** FRAC).astype(np.int64)

    dAq = q(dA.real) + 1j * q(dA.imag)                                   # (M,) integer
    # dB scaled so that a 16-bit-ish input keeps the state well inside 24 bits
    dBq = np.round((1 - radius) * 2 ** FRAC * 8 * np.exp(1j * rng.uniform(0, 6.3, M)))
    Cq = np.round(rng.uniform(-1, 1, M) * 2 ** 14) + 1j * np.round(rng.uniform(-1, 1, M) * 2 ** 14)
    cc = CoreConfig(cfg)
    pc = cc.add_program(load_program("s4d", {"FRAC": FRAC, "OUT_SHIFT": OUT}))
    cc.groups.append(Group(0, M, pc))
    cc.coef[:M, 0], cc.coef[:M, 1] = dAq.real, dAq.imag
    cc.coef[:M, 2], cc.coef[:M, 3] = dBq.real, dBq.imag
    cc.coef[:M, 4], cc.coef[:M, 5] = Cq.real, -Cq.imag
    for n in range(M):
        cc.routes[n] = [Route(host=True, target=n)]
    axon = fan_out_axon(cc, range(M))
    fabric = GoldenFabric(cfg)
    load(fabric, {0: cc})

    u = rng.integers(-2 ** 14, 2 ** 14, K)
    x = np.zeros(M, dtype=complex)                                       # float state, LSB units
    a = dAq / 2 ** FRAC
    max_state_err = 0.0
    for k in range(K):
        fabric.inject(0, axon, int(u[k]))
        out = fabric.step()
        x = a * x + dBq / 2 ** FRAC * u[k]
        xi = fabric.state[0, :M, 0] + 1j * fabric.state[0, :M, 1]
        max_state_err = max(max_state_err, np.max(np.abs(xi - x)))
        y_float = (Cq * x).real / 2 ** OUT
        y = np.zeros(M)
        y[out.channels[out.valid[0]]] = out.payload[0][out.valid[0]]
        # bound: state rounding <= sqrt(2)/2 LSB per step, amplified by 1/(1-|dA_q|)
        state_bound = (np.sqrt(2) / 2) / (1 - np.abs(a))
        y_bound = (np.abs(Cq.real) + np.abs(Cq.imag)) * state_bound / 2 ** OUT + 0.5
        assert np.all(np.abs(xi - x) <= state_bound), f"step {k}: state error over bound"
        assert np.all(np.abs(y - y_float) <= y_bound), f"step {k}: output error over bound"
    assert np.max(np.abs(x)) < 2 ** 22, "test input should not saturate the state"
    assert max_state_err > 0, "rounding must be visible (the test would be vacuous otherwise)"


# -- cross-core spikes --------------------------------------------------------------------------

def test_two_core_network_spikes_cross_cores():
    cfg = FabricConfig(mesh_w=2, mesh_h=1)
    rng = np.random.default_rng(3)
    w1 = rng.integers(-128, 128, (4, 2))          # core 0: 4 linear neurons, 2 inputs
    w2 = rng.integers(-128, 128, (3, 4))          # core 1: 3 relu neurons fed by core 0
    a, b = CoreConfig(cfg), CoreConfig(cfg)
    a.groups.append(Group(0, 4, a.add_program(load_program("linear"))))
    inputs = [a.add_axon([Synapse(0, 0b1111, tuple(w1[:, i]))], shift=2) for i in range(2)]
    b.groups.append(Group(0, 3, b.add_program(load_program("relu")), start=1))
    for n in range(4):
        axon = b.add_axon([Synapse(0, 0b0111, tuple(w2[:, n]) + (0,))], shift=3)
        a.routes[n] = [Route(1, 0, axon)]
    for n in range(3):
        b.routes[n] = [Route(host=True, target=n)]
    fabric = GoldenFabric(cfg)
    load(fabric, {0: a, 1: b})

    def r(v, s):
        return (v + (1 << s >> 1)) >> s

    xs = rng.integers(-3000, 3000, (6, 2))
    outs = []
    for k in range(7):
        if k < 6:
            for i in range(2):
                fabric.inject(0, inputs[i], int(xs[k, i]))
        outs.append(fabric.step())
    for k in range(6):
        h = np.array([sum(r(int(xs[k, i]) * int(w1[n, i]), 2) for i in range(2))
                      for n in range(4)])
        y = np.maximum([sum(r(int(h[n]) * int(w2[m, n]), 3) for n in range(4))
                        for m in range(3)], 0)
        got = outs[k + 1]
        expect_valid = y != 0
        assert got.valid[0].tolist() == expect_valid.tolist()
        assert got.payload[0].tolist() == y.tolist(), f"token {k}"
    c = fabric.arch_counters()
    # core 0 runs 7 steps x 4 neurons; sends 4 spikes per token (zeros of step 7 are not sent)
    assert c[0].tolist() == [7 * 4, 6 * 2 * 4, 6 * 4, 12]
    assert c[1, 3] == 24 and c[1, 1] == 24 * 3


# -- schedules ----------------------------------------------------------------------------------

def layered(cfg, mode, rng):
    """encoder(linear) -> hidden(relu) -> readout(integrator), one stage per core."""
    stages = 3
    period = 1 if mode == "pipelined" else stages
    cores = [CoreConfig(cfg) for _ in range(3)]
    progs = ["linear", "relu", "integrator"]
    sizes = [6, 5, 3]
    for s, cc in enumerate(cores):
        cc.groups.append(Group(0, sizes[s], cc.add_program(load_program(progs[s])),
                               period=period, start=s))
        cc.coef[:sizes[s], 6] = rng.integers(-50, 50, sizes[s])
    inputs = [cores[0].add_axon([Synapse(0, 0b1111, tuple(rng.integers(-128, 128, 4))),
                                 Synapse(1, 0b0011, tuple(rng.integers(-128, 128, 2)) + (0, 0))],
                                shift=4) for _ in range(2)]
    for s in range(2):
        dst = cfg.core_xy(s + 1)
        for n in range(sizes[s]):
            wts = tuple(rng.integers(-128, 128, 4))
            ax = cores[s + 1].add_axon([Synapse(0, (1 << min(4, sizes[s + 1])) - 1, wts)]
                                       + ([Synapse(1, 1, tuple(rng.integers(-128, 128, 4)))]
                                          if sizes[s + 1] > 4 else []), shift=5)
            cores[s].routes[n] = [Route(dst[0], dst[1], ax)]
    for n in range(sizes[2]):
        cores[2].routes[n] = [Route(host=True, target=n)]
    return dict(enumerate(cores)), inputs, stages


def run_layered(mode, tokens, seed=7):
    cfg = FabricConfig(mesh_w=2, mesh_h=2)
    configs, inputs, stages = layered(cfg, mode, np.random.default_rng(seed))
    fabric = GoldenFabric(cfg, batch=tokens.shape[0])
    load(fabric, configs)
    K = tokens.shape[1]
    period = 1 if mode == "pipelined" else stages
    by_step = {}
    for step in range((K - 1) * period + stages):
        if step % period == 0 and step // period < K:
            for i, ax in enumerate(inputs):
                fabric.inject(0, ax, tokens[:, step // period, i])
        out = fabric.step()
        by_step[out.step] = out.payload.copy()
    # the readout of token k is produced at step k*period + stages-1
    logits = [by_step[k * period + stages - 1] for k in range(K)]
    return np.stack(logits, axis=1), fabric


def layered_reference(tokens, seed=7):
    """The running logits of :func:`layered`, computed token by token in plain Python integers
    from the programs' definitions (linear: z = sat(acc + C6); relu: max(sat(acc + C6), 0);
    integrator: s = sat(s + sat(acc + C6))), a synapse adding (p * w + 2**(shift-1)) >> shift
    to neuron row * lanes + lane; no golden model involved. (B, K, 3)"""
    cfg = FabricConfig(mesh_w=2, mesh_h=2)
    cores, inputs, _ = layered(cfg, "pipelined", np.random.default_rng(seed))
    lanes, top = cfg.synapse_lanes, (1 << (cfg.state_width - 1)) - 1

    def sat(v):
        return max(-top - 1, min(top, v))

    def deliver(cc, axon, payload, acc):
        base, count, shift = cc.axons[axon]
        for syn in cc.synapses[base:base + count]:
            for j in range(lanes):
                if syn.mask >> j & 1:
                    acc[syn.row * lanes + j] += (payload * int(syn.weights[j])
                                                 + (1 << shift >> 1)) >> shift

    def stage(s, acc):
        return [sat(a + int(cores[s].coef[n, 6])) for n, a in enumerate(acc)]

    out = np.zeros(tokens.shape[:2] + (3,), dtype=np.int64)
    for b in range(tokens.shape[0]):
        logits = [0, 0, 0]
        for k in range(tokens.shape[1]):
            acc = [0] * 6
            for i, ax in enumerate(inputs):
                deliver(cores[0], ax, int(tokens[b, k, i]), acc)
            for s, size in ((0, 5), (1, 3)):
                z = stage(s, acc)
                if s == 1:
                    z = [max(v, 0) for v in z]
                acc = [0] * size
                for n, v in enumerate(z):
                    deliver(cores[s + 1], cores[s].routes[n][0].target, v, acc)
            logits = [sat(v + y) for v, y in zip(logits, stage(2, acc), strict=True)]
            out[b, k] = logits
    return out


def test_pipelined_and_fall_through_give_the_reference_outputs():
    tokens = np.random.default_rng(0).integers(-4000, 4000, (4, 12, 2))
    pipe, fp = run_layered("pipelined", tokens)
    fall, ff = run_layered("fall-through", tokens)
    want = layered_reference(tokens)
    assert pipe.shape == want.shape == (4, 12, 3)
    assert np.abs(want).max() > 0
    np.testing.assert_array_equal(pipe, want)
    np.testing.assert_array_equal(fall, want)
    assert ff.t == 12 * 3 and fp.t == 12 + 2


def test_batch_gives_each_sample_its_reference_outputs():
    tokens = np.random.default_rng(1).integers(-4000, 4000, (3, 8, 2))
    together, _ = run_layered("pipelined", tokens)
    np.testing.assert_array_equal(together, layered_reference(tokens))


# -- configuration access and accumulator arithmetic --------------------------------------------

def test_config_words_read_back_and_clear():
    cfg = FabricConfig(mesh_w=1, mesh_h=1)
    cc = CoreConfig(cfg)
    cc.groups.append(Group(2, 3, cc.add_program(load_program("integrator")), period=2, start=1))
    cc.state[2:5, 0] = [-7, 8, -(2 ** 23)]
    cc.coef[2:5, 6] = [-1, 2, 3]
    cc.routes[3] = [Route(host=True, target=9)]
    fabric = GoldenFabric(cfg)
    writes = cc.writes()
    fabric.load([(0,) + w for w in writes])
    for mem, index, part, value in writes:
        assert fabric.read(0, mem, index, part) == value, (Mem(mem).name, index, part)
    assert fabric.read(0, Mem.STATE, 4, 0) == (-(2 ** 23)) & 0xFFFFFFFF
    fabric.step()
    fabric.step()
    assert fabric.read(0, Mem.STATE, 3, 0) == 10
    assert fabric.read(0, Mem.COUNTER, Counter.NEURON_UPDATES, 0) == 3
    fabric.clear()
    assert fabric.t == 0 and fabric.read(0, Mem.STATE, 3, 0) == 0


def test_an_axon_without_synapses_after_a_full_synapse_memory_encodes():
    """Every synapse row taken, then an axon with none: its block is empty, so the AXON word
    holds base 0 (the next free row, one past the memory, does not fit the field) and a spike
    on it reaches no neuron."""
    cfg = FabricConfig(mesh_w=1, mesh_h=1, neurons=8, synapse_rows=2, axons=4)
    cc = CoreConfig(cfg)
    cc.groups.append(Group(0, 8, cc.add_program(load_program("integrator")), 1, 0))
    full = cc.add_axon([Synapse(0, 0b1111, (1, 2, 3, 4)), Synapse(1, 0b1111, (5, 6, 7, 8))], 0)
    empty = cc.add_axon([], 0)
    assert cc.axons[full] == (0, 2, 0) and cc.axons[empty] == (0, 0, 0)
    fabric = GoldenFabric(cfg)
    fabric.load([(0,) + w for w in cc.writes()])
    fabric.inject(0, empty, 100)
    fabric.step()
    assert fabric.read(0, Mem.COUNTER, Counter.SYN_OPS, 0) == 0


def test_accumulator_wraps_modulo_and_saturates_on_read():
    cfg = FabricConfig(mesh_w=1, mesh_h=1)
    cc = CoreConfig(cfg)
    cc.groups.append(Group(0, 1, cc.add_program(load_program("linear"))))
    cc.routes[0] = [Route(host=True, target=0)]
    ax = cc.add_axon([Synapse(0, 1, (127, 0, 0, 0))], shift=0)
    fabric = GoldenFabric(cfg)
    load(fabric, {0: cc})
    for _ in range(3):                       # 3 * (2**23-1) * 127 wraps past 2**31
        fabric.inject(0, ax, 2 ** 23 - 1)
    total = 3 * (2 ** 23 - 1) * 127
    wrapped = (total + 2 ** 31) % 2 ** 32 - 2 ** 31
    assert fabric.acc[0, 0, 0] == wrapped
    out = fabric.step()
    assert out.payload[0, 0] == max(wrapped, -(2 ** 23))   # saturated to 24 bits on read


@pytest.mark.parametrize("mutate, message", [
    (lambda cc: cc.routes.__setitem__(0, [Route(5, 0, 0)]), "outside the 2x1 mesh"),
    (lambda cc: cc.groups.append(Group(0, 2, 0)), "overlap"),
    (lambda cc: cc.groups.append(Group(300, 2, 0)), "neurons needs 302, capacity is 256"),
    (lambda cc: cc.axons.append((1020, 10, 0)), "out of range"),
])
def test_config_errors_name_the_problem(mutate, message):
    cfg = FabricConfig(mesh_w=2, mesh_h=1)
    cc = CoreConfig(cfg)
    cc.groups.append(Group(0, 1, cc.add_program(load_program("relu"))))
    mutate(cc)
    with pytest.raises(ConfigError, match=message):
        cc.writes()


def test_bad_addresses_and_payloads_rejected():
    fabric = GoldenFabric(FabricConfig(mesh_w=1, mesh_h=1))
    with pytest.raises(ConfigError, match="out of range"):
        fabric.write(0, Mem.SYNAPSE, 5000, 0, 1)
    with pytest.raises(ConfigError, match="outside the 1x1 mesh"):
        fabric.write(1, Mem.AXON, 0, 0, 1)
    with pytest.raises(ValueError, match="24-bit signed range"):
        fabric.inject(0, 0, 2 ** 23)
    fabric.write(0, Mem.UCODE, 0, 0, 0)            # a NOP without 'last' fills the memory
    fabric.write(0, Mem.GROUP, 0, 0, 1 << 8)       # group 0: 1 neuron at pc 0
    with pytest.raises(ConfigError, match="period"):
        fabric.step()
