"""The one fixed-point primitive of the fabric: multiply, round half up, shift, saturate.

``rnd(v, s) = (v + 2**(s-1)) >> s`` for ``s > 0`` (arithmetic shift: round half towards
+infinity) and ``v`` for ``s == 0``; ``sat(v, w)`` clamps to the signed ``w``-bit range. Works
on Python ints and on int64 numpy arrays (every intermediate of the spec fits 63 bits).
"""

from __future__ import annotations

import numpy as np

__all__ = ["rnd", "sat", "mulshift", "wrap", "smin", "smax"]


def smin(width: int) -> int:
    return -(1 << (width - 1))


def smax(width: int) -> int:
    return (1 << (width - 1)) - 1


def rnd(v, s):
    """Round half up and shift right by ``s`` (scalar or array, ``0 <= s < 63``)."""
    if isinstance(v, np.ndarray) or isinstance(s, np.ndarray):
        v = np.asarray(v, dtype=np.int64)
        s = np.asarray(s, dtype=np.int64)
        return (v + ((np.int64(1) << s) >> 1)) >> s
    return (v + ((1 << s) >> 1)) >> s


def sat(v, width: int):
    """Saturate to the signed ``width``-bit range."""
    if isinstance(v, np.ndarray):
        return np.clip(v, smin(width), smax(width))
    return min(max(v, smin(width)), smax(width))


def mulshift(a, b, s, width: int):
    """``sat(rnd(a * b, s), width)``: the fabric's multiply-shift."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return sat(rnd(np.asarray(a, np.int64) * np.asarray(b, np.int64), s), width)
    return sat(rnd(a * b, s), width)


def wrap(v, width: int):
    """Two's-complement wrap to ``width`` bits (accumulators are modular: order-independent)."""
    if isinstance(v, np.ndarray):
        m = np.int64(1) << width
        return ((v.astype(np.int64) + (m >> 1)) & (m - 1)) - (m >> 1)
    m = 1 << width
    return ((v + (m >> 1)) & (m - 1)) - (m >> 1)
