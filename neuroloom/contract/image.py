"""Config image: a compiled model as one versioned, checksummed binary file (``.nlimg``).

Layout (all integers little-endian)::

    offset  size  field
    0       8     magic  b"NLOOMIMG"
    8       2     format version (VERSION)
    10      2     reserved (0)
    12      4     header length Lh (bytes of UTF-8 JSON)
    16      4     number of config writes Nw
    20      4     CRC-32 of everything after this 24-byte preamble (header + writes)
    24      Lh    header JSON (see below)
    24+Lh   10*Nw writes: uint16 core, uint8 mem, uint8 part, uint16 index, uint32 value

Header JSON: ``fabric`` (FabricConfig dict), ``mode`` (the schedule the writes carry),
``schedules`` (per mode: token period, output step of token 0 and the GROUP writes of that mode,
so a driver can switch modes by rewriting only the group descriptors), ``inputs`` (per input
feature: list of [core, axon] the host injects the token value into), ``outputs`` (per class:
[core, neuron, host channel]), ``model`` (d_in, H, modes, layers, classes, in_scale, out_scale),
``stages`` and ``usage`` (informational).
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import FabricConfig

__all__ = ["Image", "ImageError", "MAGIC", "VERSION", "MODES", "save", "load"]

MODES = ("pipelined", "fall-through")   # the two schedules every image carries

MAGIC = b"NLOOMIMG"
VERSION = 1
_PRE = struct.Struct("<8sHHIII")
_WRITE = np.dtype([("core", "<u2"), ("mem", "u1"), ("part", "u1"), ("index", "<u2"),
                   ("value", "<u4")])


class ImageError(ValueError):
    """A file that is not a valid NeuroLoom config image."""


@dataclass
class Image:
    """A loaded config image (see the module docstring for the fields)."""
    cfg: FabricConfig
    mode: str
    writes: list                      # (core, mem, index, part, value)
    schedules: dict                   # mode -> {"period", "first_output", "group_writes"}
    inputs: list                      # per input feature: [(core, axon), ...]
    outputs: list                     # per class: (core, neuron, channel)
    model: dict = field(default_factory=dict)
    stages: list = field(default_factory=list)
    usage: list = field(default_factory=list)

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    def token_period(self, mode: str) -> int:
        return self._sched(mode)["period"]

    def output_step(self, mode: str, k: int) -> int:
        s = self._sched(mode)
        return s["first_output"] + k * s["period"]

    def _sched(self, mode):
        if mode not in self.schedules:
            raise ValueError(f"mode {mode!r} is not in this image (has: "
                             f"{', '.join(self.schedules)})")
        return self.schedules[mode]

    # -- binary encoding ------------------------------------------------------------------------
    def header(self) -> dict:
        return {"fabric": self.cfg.to_dict(), "mode": self.mode, "schedules": self.schedules,
                "inputs": [[list(e) for e in lst] for lst in self.inputs],
                "outputs": [list(o) for o in self.outputs], "model": self.model,
                "stages": self.stages, "usage": self.usage}

    def to_bytes(self) -> bytes:
        head = json.dumps(self.header(), sort_keys=True, separators=(",", ":")).encode()
        w = np.zeros(len(self.writes), dtype=_WRITE)
        if self.writes:
            arr = np.array(self.writes, dtype=np.int64)
            w["core"], w["mem"], w["index"] = arr[:, 0], arr[:, 1], arr[:, 2]
            w["part"], w["value"] = arr[:, 3], arr[:, 4]
        body = head + w.tobytes()
        return _PRE.pack(MAGIC, VERSION, 0, len(head), len(self.writes),
                         zlib.crc32(body)) + body

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "image") -> Image:
        if data[:len(MAGIC)] != MAGIC[:len(data)]:
            raise ImageError(f"{source}: not a NeuroLoom config image (bad magic "
                             f"{bytes(data[:len(MAGIC)])!r})")
        if len(data) < _PRE.size:
            raise ImageError(f"{source}: truncated ({len(data)} bytes, the preamble alone is "
                             f"{_PRE.size})")
        magic, version, _, lh, nw, crc = _PRE.unpack_from(data)
        if magic != MAGIC:
            raise ImageError(f"{source}: not a NeuroLoom config image (bad magic {magic!r})")
        if version != VERSION:
            raise ImageError(f"{source}: image format version {version}, this NeuroLoom reads "
                             f"version {VERSION}; recompile the model")
        need = _PRE.size + lh + nw * _WRITE.itemsize
        if len(data) < need:
            raise ImageError(f"{source}: truncated ({len(data)} bytes, expected {need})")
        if len(data) > need:
            raise ImageError(f"{source}: {len(data) - need} trailing bytes after the image")
        body = data[_PRE.size:need]
        if zlib.crc32(body) != crc:
            raise ImageError(f"{source}: checksum mismatch (file corrupted)")
        try:
            h = json.loads(body[:lh].decode())
            cfg = FabricConfig.from_dict(h["fabric"])
            w = np.frombuffer(body[lh:], dtype=_WRITE)
            writes = list(zip(w["core"].tolist(), w["mem"].tolist(), w["index"].tolist(),
                              w["part"].tolist(), w["value"].tolist()))
            return cls(cfg, h["mode"], writes, h["schedules"],
                       [[tuple(e) for e in lst] for lst in h["inputs"]],
                       [tuple(o) for o in h["outputs"]], h.get("model", {}),
                       h.get("stages", []), h.get("usage", []))
        except (KeyError, TypeError, ValueError, UnicodeDecodeError) as e:
            raise ImageError(f"{source}: malformed header ({e})") from None


def save(image: Image, path) -> int:
    """Write ``image`` to ``path``; returns the size in bytes."""
    data = image.to_bytes()
    Path(path).write_bytes(data)
    return len(data)


def load(path) -> Image:
    """Read an image file; raises FileNotFoundError or :class:`ImageError`."""
    path = Path(path)
    return Image.from_bytes(path.read_bytes(), str(path))
