"""Rough static timing triage of a neuron core (or a fabric) from its Yosys netlist, in a minute
instead of a place-and-route's half hour: which register-to-register paths are deep, and through
what.

    .venv/bin/python bench/timing_triage.py [--config quick|default|dense] [--paths 15]
    .venv/bin/python bench/timing_triage.py --mesh 1x1 [--above 9]

Synthesizes the core (or, with ``--mesh``, a fabric of default cores with its barrier and host
link, what ``bench/fabric_synth.py`` places and routes) in its I/O ring
(``neuroloom.fpga.synth.synthesize``, ``pnr=False``, cached), then walks the netlist with fixed
delay guesses: LUT4 0.45 ns, PFUMX/L6MUX 0.3 ns, CCU2C 0.5 ns in and 0.06 ns per carry step,
MULT18X18D 4.2 ns, DP16KD 5.8 ns clock-to-out, LUT-RAM read 0.6 ns, and a route per net of
``0.7 + 0.45 log2(fanout)`` ns (none on carry chains). These are guesses, not nextpnr's timing
model: the figures rank paths, they are not an Fmax. Measured once against nextpnr (quick core,
seed 1, router2): nextpnr's critical path was 0.79 of this estimate; the host link's
multiplexer-heavy paths it overestimates more (about 20 ns estimated for a 9.5 ns path).
Confirm every fix with ``bench/core_synth.py`` / ``bench/fabric_synth.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import defaultdict

from neuroloom.contract.config import FabricConfig
from neuroloom.fpga.ioring import CORE_CONFIGS as CONFIGS
from neuroloom.fpga.ioring import IORing
from neuroloom.fpga.synth import synthesize
from neuroloom.hw.core.core import NeuronCore
from neuroloom.hw.fabric import Fabric
from neuroloom.hw.targets import ECP5
from neuroloom.hw.verilog import to_verilog

TOP = "core_ring"
LOGIC = {"LUT4": 0.45, "PFUMX": 0.3, "L6MUX21": 0.3}
MUX_INPUTS = {"PFUMX": ("ALUT", "BLUT", "C0"), "L6MUX21": ("D0", "D1", "SD")}
CLOCK_PINS = {"CLK", "CLKA", "CLKB", "WCK"}


class Netlist:
    def __init__(self, module: dict):
        self.cells = module["cells"]
        self.names: dict[int, str] = {}
        for name, net in module["netnames"].items():
            if name.startswith("$"):
                continue
            for b in net["bits"]:
                if isinstance(b, int) and (b not in self.names or len(name) < len(self.names[b])):
                    self.names[b] = name
        self.driver: dict[int, tuple[str, str]] = {}
        self.sinks: dict[int, list[tuple[str, str]]] = defaultdict(list)
        for cn, c in self.cells.items():
            dirs = c.get("port_directions", {})
            for port, bits in c["connections"].items():
                for b in bits:
                    if isinstance(b, int):
                        if dirs.get(port) == "output":
                            self.driver[b] = (cn, port)
                        else:
                            self.sinks[b].append((cn, port))
        self._arcs: dict[str, dict[str, list[tuple[str, float]]]] = {}
        self._arrival: dict[int, tuple[float, int | None]] = {}

    def route(self, b: int) -> float:
        if any(port == "CIN" for _, port in self.sinks[b]):
            return 0.0
        return 0.7 + 0.45 * math.log2(max(1, len(self.sinks[b])))

    def arcs(self, cn: str) -> dict[str, list[tuple[str, float]]]:
        if cn not in self._arcs:
            t = self.cells[cn]["type"]
            conn = self.cells[cn]["connections"]
            out: dict[str, list[tuple[str, float]]] = defaultdict(list)
            if t == "LUT4":
                out["Z"] = [(p, LOGIC[t]) for p in "ABCD" if p in conn]
            elif t in MUX_INPUTS:
                out["Z"] = [(p, LOGIC[t]) for p in MUX_INPUTS[t]]
            elif t == "CCU2C":
                for p in ("A0", "B0", "C0", "D0"):
                    out["S0"].append((p, 0.5))
                    out["S1"].append((p, 0.6))
                    out["COUT"].append((p, 0.55))
                for p in ("A1", "B1", "C1", "D1"):
                    out["S1"].append((p, 0.5))
                    out["COUT"].append((p, 0.55))
                out["S0"].append(("CIN", 0.3))
                out["S1"].append(("CIN", 0.35))
                out["COUT"].append(("CIN", 0.06))
            elif t == "TRELLIS_DPR16X4":
                for j in range(4):
                    out[f"DO{j}"] = [(f"RAD{i}", 0.6) for i in range(4)]
            elif t == "MULT18X18D":
                for j in range(36):
                    out[f"P{j}"] = [(f"{a}{i}", 4.2) for a in "AB" for i in range(18)]
            self._arcs[cn] = out
        return self._arcs[cn]

    def source(self, cn: str) -> float | None:
        """Clock-to-out of a sequential output, None for a combinational one."""
        t = self.cells[cn]["type"]
        if t == "TRELLIS_FF":
            return 0.5
        if t == "DP16KD":
            reg = self.cells[cn]["parameters"].get("REGMODE_A", "NOREG").strip()
            return 5.8 if reg == "NOREG" else 1.0
        if t in ("TRELLIS_DPR16X4", "MULT18X18D", "CCU2C", *LOGIC):
            return None
        return 0.0

    def arrival(self, b: int) -> tuple[float, int | None]:
        """Latest arrival at the driver of bit ``b`` and the input bit it comes through."""
        stack = [b]
        while stack:
            x = stack[-1]
            if x in self._arrival:
                stack.pop()
                continue
            if x not in self.driver:
                self._arrival[x] = (0.0, None)
                stack.pop()
                continue
            cn, port = self.driver[x]
            s = self.source(cn)
            if s is not None:
                self._arrival[x] = (s, None)
                stack.pop()
                continue
            conn = self.cells[cn]["connections"]
            inputs = [ib for p, _ in self.arcs(cn).get(port, []) for ib in conn.get(p, [])
                      if isinstance(ib, int)]
            pending = [ib for ib in inputs if ib not in self._arrival]
            if pending:
                stack.extend(pending)
                continue
            best = (0.0, None)
            for p, d in self.arcs(cn).get(port, []):
                for ib in conn.get(p, []):
                    if isinstance(ib, int):
                        t = self._arrival[ib][0] + self.route(ib) + d
                        if t > best[0]:
                            best = (t, ib)
            self._arrival[x] = best
            stack.pop()
        return self._arrival[b]

    def endpoints(self):
        for cn, c in self.cells.items():
            if c["type"] not in ("TRELLIS_FF", "DP16KD", "TRELLIS_DPR16X4"):
                continue
            dirs = c.get("port_directions", {})
            for port, bits in c["connections"].items():
                if dirs.get(port) != "input" or port in CLOCK_PINS or port.startswith("RAD"):
                    continue
                for b in bits:
                    if isinstance(b, int):
                        yield self.arrival(b)[0] + self.route(b) + 0.2, cn, port, b

    def trace(self, b: int | None) -> list[str]:
        lines = []
        while b is not None:
            t, prev = self._arrival.get(b, (0.0, None))
            cn = self.driver.get(b, ("?", "?"))[0]
            kind = self.cells.get(cn, {}).get("type", "?")
            lines.append(f"{t:6.2f}  {kind:15} {self.names.get(b, cn)[:70]}  "
                         f"(fanout {len(self.sinks[b])})")
            b = prev
        return lines[::-1]


def report(netlist: Netlist, paths: int) -> None:
    seen = set()
    for t, cn, port, b in sorted(netlist.endpoints(), reverse=True):
        key = re.sub(r"(_TRELLIS_FF_Q)?(_\d+)?$", "", cn.split("$")[0]) + port[:2]
        if key in seen:
            continue
        seen.add(key)
        print(f"{t:6.2f} ns  -> {cn[:80]} .{port}")
        for line in netlist.trace(b)[-12:]:
            print("        " + line)
        if len(seen) >= paths:
            break


def overview(netlist: Netlist, above: float) -> None:
    """Every endpoint group (flip-flop or memory name, bit index dropped) whose worst estimate
    is above ``above`` ns: worst, count of endpoint bits over, and the worst path's start."""
    groups: dict[str, list] = {}
    for t, cn, _port, b in netlist.endpoints():
        if t <= above:
            continue
        key = re.sub(r"(_TRELLIS_FF_Q|_DP16KD|_TRELLIS_DPR16X4).*$", "", cn.split("$")[0])
        g = groups.setdefault(key, [0.0, 0, None])
        g[1] += 1
        if t > g[0]:
            g[0], g[2] = t, b
    print(f"endpoint groups above {above} ns: {len(groups)}")
    for key, (t, n, b) in sorted(groups.items(), key=lambda kv: -kv[1][0]):
        start = netlist.trace(b)[0].split()[2] if b is not None else "?"
        print(f"{t:6.2f} ns  {n:5d} bits  {key[:60]:60}  from {start[:50]}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", choices=sorted(CONFIGS), default="quick",
                    help="core configuration (bench/core_synth.py CONFIGS; default quick)")
    ap.add_argument("--mesh", metavar="WxH", default=None,
                    help="instead of one core: a fabric of default cores (e.g. 1x1)")
    ap.add_argument("--paths", type=int, default=15, help="distinct endpoints to print")
    ap.add_argument("--above", type=float, default=None,
                    help="instead: every endpoint group whose estimate exceeds this (ns)")
    args = ap.parse_args(argv)
    if args.mesh is not None:
        top = f"fabric_{args.mesh}"
        ring = IORing(Fabric(FabricConfig.parse_mesh(args.mesh)))
    else:
        top = TOP
        ring = IORing(NeuronCore(CONFIGS[args.config], 0, 0))
    result = synthesize(to_verilog(ring, top, ports=ring.ports, platform=ECP5), top=top, pnr=False)
    print(result.summary(), file=sys.stderr)
    module = json.loads((result.workdir / f"{top}.json").read_text())["modules"][top]
    if args.above is not None:
        overview(Netlist(module), args.above)
    else:
        report(Netlist(module), args.paths)


if __name__ == "__main__":
    main()
