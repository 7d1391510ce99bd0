"""Write the fabric's Verilog and a JSON description of it (fabric.json) beside it."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from amaranth.hdl import Shape

from neuroloom.contract import hostproto
from neuroloom.contract.config import FabricConfig
from neuroloom.hw.fabric import Fabric
from neuroloom.hw.targets import ECP5
from neuroloom.hw.verilog import to_verilog

from . import options
from .options import CLIError

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def add_arguments(parser) -> None:
    parser.add_argument("-o", "--output", required=True,
                        help="Verilog file to write (fabric.v); the JSON description goes beside "
                             "it (fabric.json), which --fabric of the other commands reads")
    parser.add_argument("--top", default="fabric", help="top module name (default fabric)")
    parser.add_argument("--target", choices=("generic", "ecp5"), default="generic",
                        help="generic: portable RTL for any simulator or synthesis tool "
                             "(default); ecp5: for Yosys synth_ecp5, the multipliers as "
                             "MULT18X18D blocks with their registers on (faster on ECP5; a "
                             "simulator then needs a MULT18X18D model)")
    options.add_fabric_options(parser, "The fabric to generate; a mesh is required (--mesh, "
                               "--mesh-w and --mesh-h, or --fabric)")


def run(args) -> int:
    req = options.fabric_request(args)
    if not {"mesh_w", "mesh_h"} <= set(req.given):
        raise CLIError("give the mesh: --mesh WxH (or --mesh-w and --mesh-h, or --fabric "
                       "fabric.json)")
    cfg = req.config()                                   # ValueError names the bad field
    if not _IDENTIFIER.fullmatch(args.top):
        raise CLIError(f"--top {args.top!r} is not a Verilog module name (letters, digits, _; "
                       "not starting with a digit)")
    out = Path(args.output)
    if out.is_dir():
        raise CLIError(f"{out}: is a folder; give the Verilog file to write (-o fabric.v)")
    if not out.parent.is_dir():
        raise FileNotFoundError(2, "No such file or directory", str(out.parent))
    t0 = time.perf_counter()
    fabric = Fabric(cfg)
    text = to_verilog(fabric, args.top, platform=ECP5 if args.target == "ecp5" else None)
    js = out.with_suffix(".json")
    for path, content in ((out, text), (js, json.dumps(
            fabric_description(fabric, cfg, args.top, out.name), indent=2) + "\n")):
        try:
            path.write_text(content)
        except OSError as e:                   # a full disk says no file name: name it
            raise OSError(e.errno, e.strerror, str(path)) from None
    print(f"fabric {cfg.mesh_w}x{cfg.mesh_h} ({cfg.num_cores} cores: {cfg.neurons} neurons, "
          f"{cfg.axons} axons, {cfg.synapse_rows} synapse rows, {cfg.route_words} route words, "
          f"ucode {cfg.ucode_depth}, {cfg.groups} groups) -> {out} ({len(text)} bytes, module "
          f"{args.top}) + {js} ({time.perf_counter() - t0:.1f} s)")
    return 0


def fabric_description(fabric: Fabric, cfg: FabricConfig, top: str, verilog: str) -> dict:
    """fabric.json: the configuration, the top's ports and the host protocol's constants."""
    ports = [{"name": "clk", "dir": "in", "width": 1},
             {"name": "rst", "dir": "in", "width": 1, "note": "synchronous, active high"}]
    for name, m in fabric.signature.members.items():
        ports.append({"name": name, "dir": "in" if m.flow.name == "In" else "out",
                      "width": Shape.cast(m.shape).width})
    return {
        "top": top,
        "verilog": verilog,
        "config": cfg.to_dict(),
        "num_cores": cfg.num_cores,
        "ports": ports,
        "host_protocol": {
            "version": getattr(hostproto, "VERSION", 1),
            "magic": f"0x{hostproto.MAGIC:08X}",
            "max_payload_words": hostproto.MAX_PAYLOAD,
            "commands": {c.name: int(c) for c in hostproto.Cmd},
            "response_flag": hostproto.RESPONSE,
            "output_opcode": hostproto.OUTPUT,
            "error_opcode": hostproto.ERROR,
            "fabric_counters": list(hostproto.FABRIC_COUNTERS),
        },
        "generator": "neuroloom generate",
    }
