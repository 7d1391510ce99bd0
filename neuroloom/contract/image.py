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

A file that passes its checksum is then checked for meaning (:meth:`Image.validate`): every
write's core, memory, index and part, every group descriptor (neurons, program counter, period,
mode entries), every route and synapse block, every input and output, both schedules and the
model's scales must be in range for the fabric the header names; an error names the field.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import FabricConfig
from .layouts import (
    Mem,
    axon_layout,
    group_layout,
    mem_depth,
    mem_parts,
    route_index_layout,
    route_layout,
    unpack,
)

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

    # -- semantic checks ------------------------------------------------------------------------
    def validate(self, source: str = "image") -> None:
        """Raise :class:`ImageError` naming the first field out of range for ``self.cfg``.

        What passes here cannot make the driver or a fabric index outside a memory, divide by
        a zero period or scale tokens by a non-positive factor. It does not prove the image
        computes a useful model (only a compiler can).
        """
        cfg = self.cfg

        def bad(what: str) -> ImageError:
            return ImageError(f"{source}: {what} (the image is damaged or was not written by "
                              "neuroloom compile: recompile the model)")

        if self.mode not in MODES:
            raise bad(f"mode {self.mode!r} is not one of {', '.join(MODES)}")
        if set(self.schedules) != set(MODES):
            raise bad(f"schedules has {sorted(self.schedules)}, expected {list(MODES)}")
        for mode, sch in self.schedules.items():
            for key, least in (("period", 1), ("first_output", 0)):
                v = sch.get(key) if isinstance(sch, dict) else None
                if not _is_int(v) or v < least:
                    raise bad(f"schedules.{mode}.{key} = {v!r} must be an integer >= {least}")
            gw = sch.get("group_writes")
            if not isinstance(gw, list) or not all(
                    isinstance(w, list | tuple) and len(w) == 5 and all(map(_is_int, w))
                    for w in gw):
                raise bad(f"schedules.{mode}.group_writes must be a list of "
                          "[core, mem, index, part, value]")
            if any(w[1] != Mem.GROUP for w in gw):
                raise bad(f"schedules.{mode}.group_writes holds a write outside GROUP")
            self._check_writes(gw, f"schedules.{mode}.group_writes", bad)
        self._check_writes(self.writes, "writes", bad)
        self._check_words(bad)

        n = cfg.num_cores
        for f, dests in enumerate(self.inputs):
            for j, e in enumerate(dests):
                if len(e) != 2 or not all(map(_is_int, e)):
                    raise bad(f"inputs[{f}][{j}] = {list(e)!r} must be [core, axon]")
                core, axon = e
                if not 0 <= core < n:
                    raise bad(f"inputs[{f}][{j}].core = {core} is outside the "
                              f"{cfg.mesh_w}x{cfg.mesh_h} mesh (cores 0..{n - 1})")
                if not 0 <= axon < cfg.axons:
                    raise bad(f"inputs[{f}][{j}].axon = {axon} is outside 0..{cfg.axons - 1}")
        for k, o in enumerate(self.outputs):
            if len(o) != 3 or not all(map(_is_int, o)):
                raise bad(f"outputs[{k}] = {list(o)!r} must be [core, neuron, channel]")
            for name, v, top in (("core", o[0], n), ("neuron", o[1], cfg.neurons),
                                 ("channel", o[2], 1 << cfg.INDEX_BITS)):
                if not 0 <= v < top:
                    raise bad(f"outputs[{k}].{name} = {v} is outside 0..{top - 1}")
        if not self.outputs:
            raise bad("outputs is empty (a model has at least one class)")
        m = self.model
        for key in ("in_scale", "out_scale"):
            v = m.get(key, 1.0)
            if not (_is_int(v) or isinstance(v, float)) or not math.isfinite(v) or v <= 0:
                raise bad(f"model.{key} = {v!r} must be a positive finite number")
        for key, have in (("d_in", len(self.inputs)), ("classes", len(self.outputs))):
            if key in m and m[key] != have:
                raise bad(f"model.{key} = {m[key]!r} but the image has {have} "
                          f"{'inputs' if key == 'd_in' else 'outputs'}")

    def _check_writes(self, writes, where: str, bad) -> None:
        """Every write's core, memory, index and part in range (vectorized: images are big)."""
        if not len(writes):
            return
        w = np.asarray(writes, dtype=np.int64)                                # (Nw, 5)
        cfg = self.cfg
        core, mem, index, part, value = w.T
        i = np.flatnonzero((core < 0) | (core >= cfg.num_cores))
        if i.size:
            raise bad(f"{where}[{i[0]}].core = {core[i[0]]} is outside the {cfg.mesh_w}x"
                      f"{cfg.mesh_h} mesh (cores 0..{cfg.num_cores - 1})")
        writable = [int(m) for m in Mem if m != Mem.COUNTER]
        i = np.flatnonzero(~np.isin(mem, writable))
        if i.size:
            raise bad(f"{where}[{i[0]}].mem = {mem[i[0]]} is not a writable memory "
                      f"({', '.join(f'{m.name}={int(m)}' for m in Mem if m != Mem.COUNTER)})")
        for m in Mem:
            sel = mem == m
            if not sel.any():
                continue
            depth, parts = mem_depth(cfg, m), mem_parts(cfg, m)
            i = np.flatnonzero(sel & ((index < 0) | (index >= depth)))
            if i.size:
                raise bad(f"{where}[{i[0]}].index = {index[i[0]]} is outside {m.name}'s "
                          f"0..{depth - 1}")
            i = np.flatnonzero(sel & ((part < 0) | (part >= parts)))
            if i.size:
                raise bad(f"{where}[{i[0]}].part = {part[i[0]]} is outside {m.name}'s "
                          f"0..{parts - 1}")
        i = np.flatnonzero((value < 0) | (value >= 1 << 32))
        if i.size:
            raise bad(f"{where}[{i[0]}].value = {value[i[0]]} is not a 32-bit word")

    def _check_words(self, bad) -> None:
        """The struct words the fabric follows: group descriptors (in every schedule), axon
        blocks, route indices and routes."""
        cfg = self.cfg
        words: dict = {}
        for c, m, i, p, v in self.writes:
            if m in (Mem.AXON, Mem.ROUTE_INDEX, Mem.ROUTE, Mem.GROUP):
                words.setdefault((m, c, i), {})[p] = v

        def word(parts: dict) -> int:
            return sum(v << (32 * p) for p, v in parts.items())

        # the descriptors as loaded (they run in the image's mode), then as each schedule
        # rewrites them
        for mode in (None, *MODES):
            groups = {k: dict(v) for k, v in words.items() if k[0] == Mem.GROUP}
            for c, m, i, p, v in self.schedules[mode]["group_writes"] if mode else ():
                groups.setdefault((m, c, i), {})[p] = v
            for (_, c, i), parts in sorted(groups.items()):
                g = unpack(group_layout(cfg), word(parts))
                if g["count"] == 0:                                      # disabled
                    continue
                at = f"core {c} group {i} ({f'schedules.{mode}' if mode else 'writes'})"
                if g["period"] < 1:
                    raise bad(f"{at}: period = {g['period']} must be at least 1")
                if g["first"] + g["count"] > cfg.neurons:
                    raise bad(f"{at}: neurons first + count = {g['first']} + {g['count']} "
                              f"exceed the core's {cfg.neurons}")
                if g["pc"] >= cfg.ucode_depth:
                    raise bad(f"{at}: pc = {g['pc']} is outside the microcode "
                              f"(0..{cfg.ucode_depth - 1})")
                if g["modes"] and g["mode_base"] + g["count"] * g["modes"] > cfg.modes:
                    raise bad(f"{at}: mode entries mode_base + count * modes = {g['mode_base']}"
                              f" + {g['count']} * {g['modes']} exceed the core's {cfg.modes}")
        for (m, c, i), parts in sorted(words.items()):
            if m == Mem.AXON:
                a = unpack(axon_layout(cfg), word(parts))
                if a["base"] + a["count"] > cfg.synapse_rows:
                    raise bad(f"core {c} axon {i}: synapse block base + count = {a['base']} + "
                              f"{a['count']} exceeds the core's {cfg.synapse_rows} rows")
            elif m == Mem.ROUTE_INDEX:
                r = unpack(route_index_layout(cfg), word(parts))
                if r["base"] + r["count"] > cfg.route_words:
                    raise bad(f"core {c} neuron {i}: routes base + count = {r['base']} + "
                              f"{r['count']} exceed the core's {cfg.route_words} route words")
            elif m == Mem.ROUTE:
                r = unpack(route_layout(cfg), word(parts))
                if r["host"]:
                    continue
                if r["x"] >= cfg.mesh_w or r["y"] >= cfg.mesh_h:
                    raise bad(f"core {c} route {i}: tile ({r['x']},{r['y']}) is outside the "
                              f"{cfg.mesh_w}x{cfg.mesh_h} mesh")
                if r["target"] >= cfg.axons:
                    raise bad(f"core {c} route {i}: axon {r['target']} is outside "
                              f"0..{cfg.axons - 1}")

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
            img = cls(cfg, h["mode"], writes, h["schedules"],
                      [[tuple(e) for e in lst] for lst in h["inputs"]],
                      [tuple(o) for o in h["outputs"]], h.get("model", {}),
                      h.get("stages", []), h.get("usage", []))
            if not isinstance(img.model, dict) or not isinstance(img.schedules, dict):
                raise TypeError("model and schedules must be JSON objects")
        except (KeyError, TypeError, ValueError, UnicodeDecodeError) as e:
            raise ImageError(f"{source}: malformed header ({e})") from None
        img.validate(source)
        return img


def _is_int(v) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def save(image: Image, path) -> int:
    """Write ``image`` to ``path``; returns the size in bytes."""
    data = image.to_bytes()
    try:
        Path(path).write_bytes(data)
    except OSError as e:                       # a full disk says no file name: name it
        raise OSError(e.errno, e.strerror, str(path)) from None
    return len(data)


def load(path) -> Image:
    """Read an image file; raises FileNotFoundError or :class:`ImageError`."""
    path = Path(path)
    return Image.from_bytes(path.read_bytes(), str(path))
