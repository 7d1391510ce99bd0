"""Build folders keyed on content: generated Verilog, simulator builds, synthesis runs.

Every generated design goes to disk through :func:`write_verilog`, which names its folder after
the sha256 of the Verilog *text*: a change anywhere that changes the design (the gateware, the
contract layouts, Amaranth itself) gives a new folder, and an unchanged design reuses the old
one, with whatever was built from it (Verilator model, synthesis reports) beside it. There is no
hand-kept list of source files to forget.

* :func:`build_root` / :func:`build_dir` -- ``build/<kind>/<key>/`` folders.
* :func:`config_hash` -- a stable key for a JSON-able description (configurations, options).
* :func:`text_digest` -- the key of a text.
* :func:`write_text` / :func:`write_verilog` -- a text into the folder named after its digest.
* :func:`file_lock` -- serialises parallel test workers building into one folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

__all__ = [
    "REPO_ROOT",
    "build_dir",
    "build_root",
    "config_hash",
    "file_lock",
    "text_digest",
    "write_text",
    "write_verilog",
]

#: the source checkout this module lives in (editable install), or site-packages/neuroloom
REPO_ROOT = Path(__file__).resolve().parents[1]

_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def _jsonable(obj: object) -> object:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {"__dataclass__": type(obj).__qualname__, **_jsonable(dataclasses.asdict(obj))}
    if isinstance(obj, enum.Enum):
        return _jsonable(obj.value)
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((_jsonable(v) for v in obj), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, bytes):
        return obj.hex()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"config_hash: cannot describe {type(obj).__qualname__} as JSON: {obj!r}")


def config_hash(obj: object) -> str:
    """Stable 16-hex-digit sha256 of a JSON-able description (dict key order is irrelevant).

    Dataclasses, enums, tuples, sets, Paths and bytes are converted; anything else raises
    TypeError rather than silently hashing an unstable ``repr``.
    """
    text = json.dumps(_jsonable(obj), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def text_digest(text: str | bytes) -> str:
    """16 hex digits of the sha256 of ``text`` (the key of a generated file)."""
    data = text.encode() if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()[:16]


def build_root() -> Path:
    """Where generated files and simulator builds are cached: ``$NEUROLOOM_BUILD_DIR`` when set,
    else ``<repo>/build`` in a source checkout, else ``$XDG_CACHE_HOME/neuroloom`` (by default
    ``~/.cache/neuroloom``) for an installed package."""
    if os.environ.get("NEUROLOOM_BUILD_DIR"):
        return Path(os.environ["NEUROLOOM_BUILD_DIR"]).resolve()
    if (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "hw").is_dir():
        return (REPO_ROOT / "build").resolve()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return (Path(cache) / "neuroloom").resolve()


def build_dir(kind: str, key: str) -> Path:
    """``<build root>/<kind>/<key>`` (created). Both parts are plain names
    (``[A-Za-z0-9_.-]+``); ``ValueError`` otherwise."""
    if not _NAME.fullmatch(kind) or not _NAME.fullmatch(key):
        raise ValueError(f"bad build_dir components: {kind!r}, {key!r}")
    path = build_root() / kind / key
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_text(kind: str, filename: str, text: str) -> Path:
    """``text`` as ``build/<kind>/<text_digest(text)>/<filename>`` (written atomically, reused
    when present); returns the file's path."""
    if not _NAME.fullmatch(filename):
        raise ValueError(f"bad file name {filename!r}")
    path = build_dir(kind, text_digest(text)) / filename
    if not path.is_file() or path.read_text() != text:
        tmp = path.with_name(f".{filename}.{os.getpid()}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return path


def write_verilog(text: str, top: str, *, kind: str = "verilog") -> Path:
    """Verilog ``text`` (whose top module is ``top``) as ``build/<kind>/<digest>/<top>.v``.

    The folder is named after the text, so builds kept beside the file (a Verilator model in
    ``<folder>/verilator``, synthesis reports) can never belong to another version of the
    design.
    """
    return write_text(kind, f"{top}.v", text)


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created), so parallel pytest-xdist workers don't
    build into one folder at once."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
