"""Mutation testing over a listed set of operators: does the fast suite notice a wrong line?

Each mutant changes one operator of one module (the table :data:`OPERATORS`), is imported in
place of the module through an import hook in a fresh ``pytest`` process (the working tree is
never written), and counts as killed when the module's tests fail. ``make mutate`` runs every
module of :data:`TARGETS`; ``python tests/mutate.py MODULE...`` some of them. Survivors are
printed with their line; the ones that cannot change behaviour are listed in docs/mutation.md.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: module -> (source file, the fast tests that cover it)
TARGETS = {
    "neuroloom.contract.fixed": ("neuroloom/contract/fixed.py",
                                 ["tests/test_fixed.py", "tests/test_quantize.py",
                                  "tests/test_driver.py", "tests/test_golden.py"]),
    "neuroloom.firmware.driver": ("firmware/driver.py",
                                  ["tests/test_driver.py", "tests/test_bad_inputs.py"]),
    "neuroloom.firmware.quantize": ("firmware/quantize.py",
                                    ["tests/test_quantize.py", "tests/test_compiler.py"]),
    "neuroloom.contract.hostproto": ("neuroloom/contract/hostproto.py",
                                     ["tests/test_hostlink_model.py", "tests/test_serial.py"]),
}

_CMP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
        ast.NotEq: ast.Eq}
_BIN = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.FloorDiv, ast.FloorDiv: ast.Mult,
        ast.LShift: ast.RShift, ast.RShift: ast.LShift, ast.BitAnd: ast.BitOr,
        ast.BitOr: ast.BitAnd}
#: the operators, by name: what each replaces
OPERATORS = {
    "compare": "< <= > >= == != swapped for their neighbour (boundary) or negation",
    "binop": "+ - * // << >> & | swapped (+/-, *///, <</>>, &/|)",
    "boolop": "and/or swapped",
    "const": "an integer constant n replaced by n + 1",
    "unary": "a unary minus or not removed",
}


class _Mutator(ast.NodeTransformer):
    """Walks a module; with ``target`` None collects mutation sites, else applies site
    ``target``."""

    def __init__(self, target: int | None = None):
        self.sites: list[tuple[str, int, str]] = []
        self.target = target

    def _site(self, kind: str, node, what: str) -> bool:
        self.sites.append((kind, getattr(node, "lineno", 0), what))
        return len(self.sites) - 1 == self.target

    def visit_Compare(self, node):
        self.generic_visit(node)
        op = type(node.ops[0])
        if op in _CMP and self._site("compare", node, f"{op.__name__} -> "
                                                      f"{_CMP[op].__name__}"):
            node.ops[0] = _CMP[op]()
        return node

    def visit_BinOp(self, node):
        self.generic_visit(node)
        op = type(node.op)
        if op in _BIN and self._site("binop", node, f"{op.__name__} -> {_BIN[op].__name__}"):
            node.op = _BIN[op]()
        return node

    def visit_BoolOp(self, node):
        self.generic_visit(node)
        new = ast.Or if isinstance(node.op, ast.And) else ast.And
        if self._site("boolop", node, f"{type(node.op).__name__} -> {new.__name__}"):
            node.op = new()
        return node

    def visit_UnaryOp(self, node):
        self.generic_visit(node)
        if isinstance(node.op, ast.USub | ast.Not) and self._site(
                "unary", node, f"{type(node.op).__name__} removed"):
            return node.operand
        return node

    def visit_Constant(self, node):
        if isinstance(node.value, int) and not isinstance(node.value, bool) and self._site(
                "const", node, f"{node.value} -> {node.value + 1}"):
            return ast.copy_location(ast.Constant(node.value + 1), node)
        return node

    def visit_Assign(self, node):               # __all__ and other name lists: not code
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return node
        return self.generic_visit(node)


def sites(source: str) -> list[tuple[str, int, str]]:
    m = _Mutator()
    m.visit(ast.parse(source))
    return m.sites


def mutant(source: str, i: int) -> str:
    return ast.unparse(_Mutator(i).visit(ast.parse(source)))


_BOOT = """
import importlib.abc, importlib.util, sys
name, path, code = sys.argv[1], sys.argv[2], open(sys.argv[3]).read()
class Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, p, target=None):
        if fullname == name:
            return importlib.util.spec_from_loader(name, self, origin=path)
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        module.__file__ = path
        exec(compile(code, path, "exec"), module.__dict__)
sys.meta_path.insert(0, Finder())
import pytest
sys.exit(pytest.main(["-q", "-x", "-p", "no:xdist", "-p", "no:cacheprovider",
                      "--no-header", "-p", "no:randomly", *sys.argv[4:]]))
"""


def run_module(name: str, timeout: float, out_dir: Path,
               pytest_args: tuple = ()) -> tuple[int, list]:
    """(killed, survivors) of every mutant of module ``name``."""
    rel, tests = TARGETS[name]
    source = (ROOT / rel).read_text()
    found = sites(source)
    control = out_dir / f"{name}.original.py"
    control.write_text(source)
    r = subprocess.run([sys.executable, "-c", _BOOT, name, str(ROOT / rel), str(control),
                        *pytest_args, *tests], cwd=ROOT, capture_output=True, timeout=timeout)
    if r.returncode != 0:                     # else every mutant would count as killed
        raise SystemExit(f"{name}: the tests fail on the unmutated module (through the import "
                         f"hook); fix them first:\n{r.stdout.decode()[-2000:]}")
    killed, survivors = 0, []
    for i, (kind, line, what) in enumerate(found):
        f = out_dir / f"{name}.{i}.py"
        f.write_text(mutant(source, i))
        try:
            r = subprocess.run([sys.executable, "-c", _BOOT, name, str(ROOT / rel), str(f),
                                *pytest_args, *tests], cwd=ROOT, capture_output=True,
                               timeout=timeout)
            dead = r.returncode != 0
        except subprocess.TimeoutExpired:
            dead = True                                     # a hang is noticed too
        if dead:
            killed += 1
        else:
            survivors.append((line, kind, what))
        print(f"  {name}:{line} {kind} {what}: {'killed' if dead else 'SURVIVED'}",
              flush=True)
    return killed, survivors


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("modules", nargs="*", default=list(TARGETS),
                   help=f"modules to mutate (default all: {', '.join(TARGETS)})")
    p.add_argument("--timeout", type=float, default=300, help="seconds per mutant run")
    p.add_argument("--list", action="store_true", help="only count the mutants")
    p.add_argument("--pytest-arg", action="append", default=[], metavar="ARG",
                   help="passed to pytest (repeat for several)")
    args = p.parse_args(argv)
    out_dir = ROOT / "build" / "mutants"
    out_dir.mkdir(parents=True, exist_ok=True)
    total_k = total_n = 0
    for name in args.modules:
        n = len(sites((ROOT / TARGETS[name][0]).read_text()))
        if args.list:
            print(f"{name}: {n} mutants")
            continue
        t0 = time.perf_counter()
        k, surv = run_module(name, args.timeout, out_dir, tuple(args.pytest_arg))
        total_k, total_n = total_k + k, total_n + n
        print(f"{name}: {k}/{n} killed ({100 * k / max(1, n):.1f} %) in "
              f"{time.perf_counter() - t0:.0f} s; survivors:")
        for line, kind, what in surv:
            print(f"    line {line}: {kind} {what}")
    if total_n:
        print(f"all: {total_k}/{total_n} killed ({100 * total_k / total_n:.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
