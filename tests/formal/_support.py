"""Helpers of the formal tests.

* :func:`patched_module`: injected bugs, a gateware module's source with one edit loaded as a
  module of its own (the working tree is never written), so a proof can show that it fails on
  the bug it is meant to catch;
* :func:`mesh_capacity`: the flits a mesh can hold (the bound of the network contract,
  ``test_noc_contract.py``, that ``test_barrier_formal.py`` assumes).
"""

from __future__ import annotations

import importlib
import inspect
import types

from neuroloom.contract.config import FabricConfig
from neuroloom.hw.noc.router import connected_ports


def patched_module(name: str, old: str, new: str) -> types.ModuleType:
    """Module ``name`` (e.g. ``neuroloom.hw.barrier``) with the one occurrence of ``old`` in
    its source replaced by ``new``; relative imports resolve as in the original. Raises
    AssertionError when ``old`` does not occur exactly once (the gateware changed: update the
    injected bug)."""
    original = importlib.import_module(name)
    source = inspect.getsource(original)
    count = source.count(old)
    assert count == 1, (f"{name}: the text to inject a bug into occurs {count} times "
                        f"(expected once); update the test's injected bug:\n{old}")
    module = types.ModuleType(f"{name}_with_bug")
    module.__package__ = original.__package__
    module.__file__ = original.__file__
    exec(compile(source.replace(old, new), original.__file__, "exec"), module.__dict__)
    return module


def mesh_capacity(cfg: FabricConfig) -> int:
    """Flits a ``cfg`` mesh can hold: each connected input of each router holds at most
    ``router_fifo_depth`` (its output stages included)."""
    return sum(len(connected_ports(cfg, x, y)) * cfg.router_fifo_depth
               for x in range(cfg.mesh_w) for y in range(cfg.mesh_h))
