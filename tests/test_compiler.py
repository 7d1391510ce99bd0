"""Compiler tests: the quantized reference == the golden fabric running the compiled image, bit for
bit (running logits after every token), in both schedules, on several shapes and meshes."""

import numpy as np
import pytest

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.layouts import Counter
from neuroloom.firmware.compiler import (
    MODES,
    AccumulatorRangeError,
    CompileError,
    FitError,
    compile_model,
    fitting_mesh,
    from_compiled,
    random_qmodel,
    snake_order,
)
from neuroloom.firmware.driver import ARCH_COUNTERS, Driver
from neuroloom.firmware.qmodel import MAPPINGS, qforward
from neuroloom.sim.transports import GoldenTransport

# (H, N, layers, d_in, classes, mesh, core capacities): small capacities force multi-core maps
CASES = [
    (4, 2, 1, 3, 5, "1x1", {}),
    (3, 1, 0, 2, 4, "1x1", {}),
    (8, 4, 2, 2, 5, "2x2", dict(neurons=40, axons=40)),
    (6, 3, 2, 1, 10, "2x3", dict(neurons=24, axons=24, synapse_rows=64, route_words=48)),
    (12, 3, 3, 4, 3, "3x3", dict(neurons=32, axons=32, synapse_lanes=2, groups=4)),
    (4, 2, 1, 2, 3, "3x2", dict(groups=1, neurons=16, axons=16)),   # one stage per core
    (5, 6, 1, 3, 2, "2x2", dict(neurons=16, axons=16, synapse_lanes=8, weight_width=6)),
    (6, 4, 2, 2, 3, "3x3", dict(neurons=16, axons=16, modes=16)),   # mode memory binds
]


def _cfg(mesh, caps):
    return FabricConfig.parse_mesh(mesh, **caps)


def _tokens(model, cfg, B, K, seed, amp=16.0):
    rng = np.random.default_rng(seed)
    return model.quantize_input(rng.uniform(-amp, amp, size=(B, K, model.d_in)), cfg)


@pytest.mark.parametrize("mapping", MAPPINGS)
@pytest.mark.parametrize("H,N,L,d_in,classes,mesh,caps", CASES)
def test_reference_equals_golden(H, N, L, d_in, classes, mesh, caps, mapping):
    cfg = _cfg(mesh, caps)
    model = random_qmodel(H, N, L, d_in=d_in, classes=classes, seed=H * 31 + N, cfg=cfg)
    if mapping == "channel" and L == 0:
        with pytest.raises(CompileError, match="needs at least one S4D layer"):
            compile_model(model, cfg, mapping=mapping)
        return
    comp = compile_model(model, cfg, mapping=mapping)
    assert comp.cores_used >= 1 and comp.mapping == mapping
    assert comp.num_stages == (L + 2 if mapping == "channel" else 3 * L + 2)
    drv = Driver(GoldenTransport(max_batch=4))
    drv.load(from_compiled(comp))
    # ordinary inputs, and loud ones that saturate somewhere along the way
    x = np.concatenate([_tokens(model, cfg, 3, 9, 1), _tokens(model, cfg, 2, 9, 2, amp=3e4)])
    ref = qforward(model, x, cfg, mapping=mapping)
    results = {}
    for mode in MODES:
        res = drv.run(x, mode=mode)
        np.testing.assert_array_equal(res.running, ref, err_msg=f"{mode} != qforward")
        np.testing.assert_array_equal(res.logits, ref[:, -1])
        results[mode] = res
    S = comp.num_stages
    assert results["pipelined"].steps == 9 + S - 1
    assert results["fall-through"].steps == 9 * S
    np.testing.assert_array_equal(results["pipelined"].running, results["fall-through"].running)


def test_multicore_maps_are_really_multicore():
    cfg = _cfg("3x3", CASES[4][6])
    comp = compile_model(random_qmodel(12, 3, 3, d_in=4, classes=3, seed=1, cfg=cfg), cfg,
                         mapping="per-mode")
    assert comp.cores_used == 9
    assert comp.hops() > 0
    # each channel's modes sit on one core, with the readout neuron
    for (s, j), (c, _) in comp.placement.items():
        if comp.stages[s].kind == "modes":
            h = j // comp.model_info["modes"]
            assert comp.placement[(s + 1, h)][0] == c


def test_single_sequence_and_counters():
    cfg = FabricConfig(mesh_w=1, mesh_h=1)
    model = random_qmodel(4, 2, 1, d_in=2, classes=3, seed=5)
    comp = compile_model(model, cfg, mode="fall-through")
    drv = Driver(GoldenTransport())
    drv.load(from_compiled(comp), verify=True)
    x = _tokens(model, cfg, 1, 5, 3)
    res = drv.run(x[0])
    assert res.running.shape == (5, 3) and res.mode == "fall-through"
    np.testing.assert_array_equal(res.running, qforward(model, x, cfg)[0])
    c = drv.read_counters()
    # fall-through, 5 tokens: every neuron updated once per token
    assert c["neuron_updates"][0] == 5 * sum(st.size for st in comp.stages)
    assert res.counters[0, 0] == c["neuron_updates"][0]
    assert c["spikes_received"][0] > 0 and Counter.SYN_OPS == 1


def test_synapse_rows_are_packed():
    cfg = FabricConfig(mesh_w=1, mesh_h=1, synapse_lanes=4)
    model = random_qmodel(16, 2, 1, d_in=1, classes=2, seed=0)
    comp = compile_model(model, cfg)
    core = comp.cores[0]
    rows = sum(n for _, n, _ in core.axons)
    lanes = sum(bin(s.mask).count("1") for s in core.synapses)
    assert lanes > 2 * rows            # dense blocks use several lanes per row
    # one route word per (source neuron, destination core): one core -> at most one per neuron
    for n, (_c, local) in comp.placement.items():
        rts = core.routes.get(local, [])
        assert sum(not r.host for r in rts) <= 1
        assert sum(r.host for r in rts) == (comp.stages[n[0]].kind == "decoder")


def test_fit_error_names_resource_and_mesh():
    model = random_qmodel(16, 8, 2, d_in=1, classes=10, seed=0)
    cfg = FabricConfig(mesh_w=1, mesh_h=1, neurons=64, axons=64)
    with pytest.raises(FitError) as ei:
        compile_model(model, cfg, mapping="per-mode")
    e = ei.value
    assert e.resource == "neurons" and e.cores_needed > 1 and e.mesh
    assert "neurons" in str(e) and f"--mesh {e.mesh}" in str(e) and "over" in str(e)
    w, h = (int(v) for v in e.mesh.split("x"))
    compile_model(model, FabricConfig(mesh_w=w, mesh_h=h, neurons=64, axons=64),
                  mapping="per-mode")
    if e.cores_needed < w * h:
        with pytest.raises(FitError):
            compile_model(model, FabricConfig(mesh_w=1, mesh_h=e.cores_needed - 1,
                                              neurons=64, axons=64), mapping="per-mode")


def test_fit_error_block_too_big_for_any_mesh():
    model = random_qmodel(2, 40, 1, d_in=1, classes=2, seed=0)     # 41 modes per channel
    with pytest.raises(FitError, match="neurons.*raise the core"):
        compile_model(model, FabricConfig(neurons=32, axons=64), mapping="per-mode")
    with pytest.raises(CompileError, match="holds 41 modes, a core's mode memory 40"):
        compile_model(model, FabricConfig(modes=40), mapping="channel")


def test_default_mapping_is_channel():
    comp = compile_model(random_qmodel(4, 2, 2, seed=0))
    assert comp.mapping == "channel" and comp.num_stages == 4


def test_fit_error_route_words():
    model = random_qmodel(8, 2, 1, d_in=1, classes=2, seed=0)
    with pytest.raises(FitError, match="route_words") as ei:
        compile_model(model, FabricConfig(route_words=4))
    assert ei.value.resource == "route_words"


def test_readout_split_from_modes_when_groups_are_scarce():
    cfg = FabricConfig(mesh_w=3, mesh_h=2, groups=1, neurons=16, axons=16)
    comp = compile_model(random_qmodel(4, 2, 1, d_in=2, classes=3, seed=1, cfg=cfg), cfg,
                         mapping="per-mode")
    assert all(len(c.groups) <= 1 for c in comp.cores)
    assert comp.placement[(1, 0)][0] != comp.placement[(2, 0)][0]


def test_accumulator_bound_checked():
    model = random_qmodel(8, 2, 1, d_in=1, classes=2, seed=0)
    model.layers[0].mix.shift[:] = 0
    model.layers[0].mix.W[:] = 127
    with pytest.raises(AccumulatorRangeError, match="layer0.mixing.*32-bit accumulator"):
        compile_model(model)
    compile_model(model, allow_acc_wrap=True)


def test_parameter_range_errors():
    model = random_qmodel(4, 2, 1, seed=0)
    model.layers[0].mix.W[0, 0] = 300
    with pytest.raises(CompileError, match=r"layers\.0\.mix\.W: value 300 outside the 8-bit"):
        compile_model(model)
    model = random_qmodel(4, 2, 1, seed=0)
    model.layers[0].dA[0, 0, 0] = 1 << 16
    with pytest.raises(CompileError, match=r"layers\.0\.dA"):
        compile_model(model)
    with pytest.raises(ValueError, match="mode"):
        compile_model(random_qmodel(4, 2, 1), mode="bogus")


def test_mesh_helpers():
    assert snake_order(3, 2) == [0, 1, 2, 5, 4, 3]
    assert fitting_mesh(1) == "1x1" and fitting_mesh(5) == "3x2" and fitting_mesh(37) == "7x6"
    assert fitting_mesh(257) is None


def test_row_budget_spreads_fan_in_and_stays_bit_exact():
    """With a row budget no core uses more synapse rows than the budget (and, every source
    spiking at most once a step, no core processes more rows per step: the golden model's
    synaptic-op counter stays within budget x lanes); more cores are used; results equal
    qforward and the unbudgeted map bit for bit."""
    cfg = FabricConfig(mesh_w=4, mesh_h=4, neurons=64, axons=64, synapse_rows=128)
    model = random_qmodel(8, 4, 2, d_in=2, classes=5, seed=3, cfg=cfg)
    x = _tokens(model, cfg, 2, 8, 5)
    ref = qforward(model, x, cfg)
    def most_rows(comp):            # synapse rows actually configured, per core
        return max(sum(n for _, n, _ in core.axons) for core in comp.cores)

    full = compile_model(model, cfg)
    budget = most_rows(full) // 2
    comp = compile_model(model, cfg, row_budget=budget)
    assert most_rows(comp) <= budget
    assert comp.cores_used > full.cores_used
    drv = Driver(GoldenTransport(max_batch=2))
    drv.load(from_compiled(comp))
    res = drv.run(x, mode="pipelined")
    np.testing.assert_array_equal(res.running, ref)
    per_step = res.counters[:, ARCH_COUNTERS.index(Counter.SYN_OPS)] / (2 * res.steps)
    assert per_step.max() <= budget * cfg.synapse_lanes


@pytest.mark.parametrize("budget, match", [(0, "positive integer"), (2.5, "positive integer"),
                                           (10_000, "more than a core's"),
                                           (3, "row budget is 3.*raise the row budget")])
def test_row_budget_errors(budget, match):
    model = random_qmodel(8, 4, 1, d_in=1, classes=2, seed=0)
    with pytest.raises(CompileError, match=match):
        compile_model(model, FabricConfig(), row_budget=budget)


def test_channel_mapping_shape_and_mode_memory():
    cfg = _cfg("3x3", dict(neurons=16, axons=16, modes=16))
    H, N, L, classes = 6, 4, 2, 3
    model = random_qmodel(H, N, L, d_in=2, classes=classes, seed=5, cfg=cfg)
    comp = compile_model(model, cfg, mapping="channel")
    assert [s.kind for s in comp.stages] == ["channel"] * L + ["mixing", "decoder"]
    tot = comp.summary()
    assert (tot["neurons"], tot["modes"]) == (L * H + H + classes, L * H * (N + 1))
    per_core = [u["modes"][0] for u in comp.usage()]
    assert max(per_core) <= 16 and sum(1 for m in per_core if m) >= L * H * (N + 1) // 16
    per_mode = compile_model(model, cfg.__class__.parse_mesh("4x4", neurons=16, axons=16),
                             mapping="per-mode")
    assert per_mode.summary()["modes"] == 0
    with pytest.raises(CompileError, match="holds 5 modes, a core's mode memory 4"):
        compile_model(model, _cfg("3x3", dict(modes=4)), mapping="channel")
    with pytest.raises(CompileError, match="mapping 'bogus' is not one of per-mode, channel"):
        compile_model(model, cfg, mapping="bogus")


def test_mode_budget_spreads_channel_neurons_and_stays_bit_exact():
    cfg = FabricConfig(mesh_w=4, mesh_h=4)
    model = random_qmodel(8, 4, 2, d_in=2, classes=5, seed=3, cfg=cfg)
    x = _tokens(model, cfg, 2, 8, 5)
    full = compile_model(model, cfg)
    comp = compile_model(model, cfg, mode_budget=10)        # two channels of 5 modes per core
    assert max(u["modes"][0] for u in comp.usage()) <= 10
    assert comp.cores_used > full.cores_used
    drv = Driver(GoldenTransport(max_batch=2))
    drv.load(from_compiled(comp))
    np.testing.assert_array_equal(drv.run(x, mode="pipelined").running, qforward(model, x, cfg))
    with pytest.raises(FitError, match="needs 5 modes on one core, the mode budget is 4"):
        compile_model(model, cfg, mode_budget=4)
    for bad, match in [(0, "positive integer"), (5000, "more than a core's 1024 mode entries")]:
        with pytest.raises(CompileError, match=match):
            compile_model(model, cfg, mode_budget=bad)
