"""``neuroloom``: generate fabrics, compile models to config images, run, evaluate, inspect, train.

One module per command (:data:`COMMANDS`), each with ``add_arguments(parser)`` and
``run(args) -> int``; the work is done by the library (``neuroloom.firmware.deploy``,
``evaluate``, ``demo``, ``train``) so benches reuse it. Shared option groups (the fabric, data
set, backend and checkpoint-import options) are in :mod:`neuroloom.cli.options`.

Results go to stdout; progress bars, build messages and notes to stderr. Every user error
prints one line (``neuroloom: error: ...``) on stderr and exits non-zero (1; bad arguments 2),
without a traceback; Ctrl-C exits 130. A warning (token values saturated) is one line
``neuroloom: warning: ...`` on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from neuroloom.contract.coreconfig import ConfigError
from neuroloom.contract.image import ImageError
from neuroloom.contract.transport import DriverError
from neuroloom.firmware.compiler import CompileError

from .options import CLIError

__all__ = ["COMMANDS", "PROG", "build_parser", "main"]

PROG = "neuroloom"
#: the commands, in the order ``neuroloom --help`` lists them (module ``neuroloom.cli.<name>``)
COMMANDS = ("generate", "compile", "info", "run", "eval", "demo", "train", "fpga")
#: exceptions that are a user's error (bad input, file, model or fabric): one line, exit 1
USER_ERRORS = (CLIError, CompileError, ConfigError, DriverError, ImageError, OSError, ValueError)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def command_module(name: str):
    """The module of command ``name`` (``neuroloom.cli.<name>``)."""
    return importlib.import_module(f"{__name__}.{name}")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, allow_abbrev=False,
                description="NeuroLoom: generate the fabric, compile S4D models onto it, run, "
                            "evaluate and inspect them.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        mod = command_module(name)
        doc = (mod.__doc__ or name).strip()
        sp = sub.add_parser(name, help=doc.splitlines()[0].rstrip("."), description=doc,
                            allow_abbrev=False)           # --epoch is not --epochs
        mod.add_arguments(sp)
        sp.set_defaults(run=mod.run)
    return p


def _message(e: BaseException) -> str:
    text = str(e).strip()
    msg = text.splitlines()[0] if text else type(e).__name__
    if isinstance(e, OSError) and e.filename:
        msg = f"{e.filename}: {(e.strerror or msg).lower()}"
    return msg


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"{PROG}: warning: {str(message).strip().splitlines()[0]}", file=sys.stderr)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning            # one line each, no source echo
            return args.run(args)
    except USER_ERRORS as e:
        print(f"{PROG}: error: {_message(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
