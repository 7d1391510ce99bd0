"""Yosys synthesis of one small neuron core for ECP5 (no place-and-route: that is in bench/ and
make test-slow), elaborated for ECP5 as the synthesis flows elaborate it: no latch, every memory
maps to a RAM primitive (block RAM for the deep ones, LUT RAM for the small register files and
FIFOs), and the multipliers are MULT18X18D blocks with their input and output registers on."""

from __future__ import annotations

import inspect
import re

from neuroloom.contract.config import FabricConfig
from neuroloom.fpga.synth import synthesize
from neuroloom.hw.core.core import NeuronCore
from neuroloom.hw.targets import ECP5
from neuroloom.hw.verilog import to_verilog
from neuroloom.sim.core_tb import TOPLEVEL

#: small, but with the deep memories deep enough that block RAM is the only sensible mapping
CFG = FabricConfig(mesh_w=1, mesh_h=1, neurons=64, axons=64, synapse_rows=512, route_words=512,
                   ucode_depth=64, groups=4, modes=1024, neuron_lanes=2)

BLOCK = {"DP16KD", "PDPW16KD"}
LUT = {"TRELLIS_DPR16X4"}


def expected_memories(cfg: FabricConfig) -> dict[str, set[str]]:
    """Every memory of the core by its Yosys name, and the primitives it may map to."""
    mems = {f"synapse.part{p}": BLOCK for p in range(2)}
    # the mode banks' equal parts (2 x 24-bit state, 6 x 16-bit coefficients), deep enough for
    # block RAM: one memory each, written part by part, its parts in the block RAM's byte lanes
    mems.update({f"mstate{i}.mem": BLOCK for i in range(cfg.neuron_lanes)})
    mems.update({f"mcoef{i}.mem": BLOCK for i in range(cfg.neuron_lanes)})
    mems["route_mem.part0"] = BLOCK
    # 64 words: split into one sub-memory per register / coefficient, each in LUT RAM or a block
    shallow = BLOCK | LUT
    mems.update({f"state.part{p}": shallow for p in range(cfg.state_regs)})
    mems.update({f"coef.part{p}": shallow for p in range(cfg.coefs)})
    mems.update({"axon.part0": shallow, "route_index.part0": shallow, "ucode.part0": shallow})
    mems.update({f"acc{b}_{j}.part0": shallow for b in range(2) for j in range(cfg.synapse_lanes)})
    mems.update({"eng.rf_regs": LUT, "eng.rf_misc": LUT, "eng.emitq.storage": LUT,
                 "route.outq.storage": LUT, "inq.storage": LUT, "outq.storage": LUT})
    # the write-back's LUT-RAM delay lines (alu.ram_delay) and the projection coefficients'
    mems.update({f"eng.{n}_ring": LUT for n in ("es_ram", "ex_ram", "scalar", "cge", "re", "im")})
    mems.update({f"eng.dp.l{i}_{c}_ring": LUT for i in range(cfg.neuron_lanes)
                 for c in ("cr", "cn")})
    return mems


def test_small_core_synthesizes_clean():
    text = to_verilog(NeuronCore(CFG, 0, 0), TOPLEVEL, platform=ECP5)
    r = synthesize(text, top=TOPLEVEL, pnr=False)
    log = r.yosys_log.read_text()
    assert not r.latches, "latch in the core"
    # the core's Assert (with a message) leaves nothing for simulation only in the netlist
    assert "Assert(" in inspect.getsource(NeuronCore.elaborate)
    assert not any(k.startswith("$") for k in r.cells), r.cells
    mapped = dict(re.findall(r"mapping memory core\.(\S+) via \$__(\w+?)_\n", log))
    to_ff = re.findall(r"using FF mapping for memory core\.(\S+)", log)
    assert all("proc_rom" in name for name in to_ff), f"memories built from flip-flops: {to_ff}"
    want = expected_memories(CFG)
    assert set(mapped) == set(want), (sorted(set(mapped) ^ set(want)))
    wrong = {n: p for n, p in mapped.items() if p not in want[n]}
    assert not wrong, f"memories on the wrong primitive: {wrong}"
    # 8 products per neuron lane, each split into two partial products of <= 18 bits, and one
    # payload x weight product per synapse lane, likewise two partials (24-bit payloads)
    assert r.mult18x18d == 16 * CFG.neuron_lanes + 2 * CFG.synapse_lanes, r.cells
    # every one of them the instantiated, registered block (Yosys maps a `*` without them)
    dsps = re.findall(r"MULT18X18D #\((.*?)\) ", text, flags=re.S)
    assert len(dsps) == r.mult18x18d
    assert all('.REG_INPUTA_CLK("CLK0")' in d and '.REG_OUTPUT_CLK("CLK0")' in d for d in dsps)
