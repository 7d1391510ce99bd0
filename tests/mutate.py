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
import json
import os
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
                                  ["tests/test_driver.py", "tests/test_driver_runs.py",
                                   "tests/test_bad_inputs.py"]),
    "neuroloom.firmware.quantize": ("firmware/quantize.py",
                                    ["tests/test_quantize.py", "tests/test_quantize_scales.py",
                                     "tests/test_compiler.py"]),
    "neuroloom.firmware.qmodel": ("firmware/qmodel.py",
                                  ["tests/test_qmodel_input.py", "tests/test_quantize.py",
                                   "tests/test_quantize_scales.py", "tests/test_compiler.py",
                                   "tests/test_driver.py"]),
    "neuroloom.contract.hostproto": ("neuroloom/contract/hostproto.py",
                                     ["tests/test_hostproto_frames.py",
                                      "tests/test_hostlink_model.py", "tests/test_serial.py"]),
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

    def __init__(self, target: int | None = None, skip_annotations: bool = False):
        self.sites: list[tuple[str, int, str, bool]] = []
        self.target = target
        self.skip_annotations = skip_annotations
        self._body = 0                  # > 0: inside a function or lambda body

    def _site(self, kind: str, node, what: str) -> bool:
        self.sites.append((kind, getattr(node, "lineno", 0), what, self._body > 0))
        return len(self.sites) - 1 == self.target

    def visit_Lambda(self, node):
        node.args = self.visit(node.args)
        self._body += 1
        node.body = self.visit(node.body)
        self._body -= 1
        return node

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

    # With ``from __future__ import annotations`` annotations are never evaluated: a mutant
    # there is equivalent by construction, so none is made (``skip_annotations``). Without it
    # (hostproto: data.Struct reads its field shapes from class annotations) they are mutated.
    def visit_arg(self, node):
        return node if self.skip_annotations else self.generic_visit(node)

    def visit_FunctionDef(self, node):
        node.decorator_list = [self.visit(n) for n in node.decorator_list]
        node.args = self.visit(node.args)      # defaults: evaluated where the def runs
        if node.returns is not None and not self.skip_annotations:
            node.returns = self.visit(node.returns)
        self._body += 1
        node.body = [self.visit(n) for n in node.body]
        self._body -= 1
        return node

    def visit_AnnAssign(self, node):
        if not self.skip_annotations:
            return self.generic_visit(node)
        if node.value is not None:
            node.value = self.visit(node.value)
        return node

    def visit_Assign(self, node):               # __all__ and other name lists: not code
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return node
        return self.generic_visit(node)


def _lazy_annotations(tree: ast.Module) -> bool:
    return any(isinstance(n, ast.ImportFrom) and n.module == "__future__"
               and any(a.name == "annotations" for a in n.names) for n in tree.body)


def sites(source: str) -> list[tuple[str, int, str, bool]]:
    """(operator kind, line, change, inside a function body) of every mutant of ``source``."""
    tree = ast.parse(source)
    m = _Mutator(skip_annotations=_lazy_annotations(tree))
    m.visit(tree)
    return m.sites


def mutant(source: str, i: int) -> str:
    tree = ast.parse(source)
    return ast.unparse(_Mutator(i, _lazy_annotations(tree)).visit(tree))


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
import json, os, threading, pytest
plugins, cover_out = [], os.environ.get("MUTATE_COVERAGE")
if cover_out:                     # record the lines of ``path`` each test runs (setup too)
    lines, current = {}, [None]
    def local(frame, event, arg):
        if event == "line" and current[0] is not None:
            lines.setdefault(current[0], set()).add(frame.f_lineno)
        return local
    def tracer(frame, event, arg):
        return local if frame.f_code.co_filename == path else None
    class Cover:                  # key: "nodeid" (call, teardown) or "setup:nodeid"
        @pytest.hookimpl(hookwrapper=True)
        def pytest_runtest_setup(self, item):
            current[0] = "setup:" + item.nodeid
            yield
            current[0] = item.nodeid
        @pytest.hookimpl(hookwrapper=True)
        def pytest_runtest_protocol(self, item, nextitem):
            yield
            current[0] = None
        def pytest_sessionfinish(self, session):
            with open(cover_out, "w") as f:
                json.dump({k: sorted(v) for k, v in lines.items()}, f)
    sys.settrace(tracer)
    threading.settrace(tracer)
    plugins.append(Cover())
sys.exit(pytest.main(["-q", "-x", "-p", "no:xdist", "-p", "no:cacheprovider",
                      "--no-header", "-p", "no:randomly", *sys.argv[4:]], plugins=plugins))
"""


def parse_indices(text: str) -> set[int]:
    """``"3,5,10-12"`` -> {3, 5, 10, 11, 12}."""
    out: set[int] = set()
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def run_module(name: str, timeout: float, out_dir: Path, pytest_args: tuple = (),
               only: set[int] | None = None) -> tuple[int, list]:
    """(killed, survivors) of every mutant of module ``name`` (those numbered in ``only``, if
    given); each outcome is also appended to ``out_dir/NAME.jsonl``."""
    rel, tests = TARGETS[name]
    source = (ROOT / rel).read_text()
    found = sites(source)
    control = out_dir / f"{name}.original.py"
    control.write_text(source)
    cover_file = out_dir / f"{name}.coverage.json"
    for _ in range(3):             # tracing slows the tests: a timing test may need a retry
        r = subprocess.run([sys.executable, "-c", _BOOT, name, str(ROOT / rel), str(control),
                            *pytest_args, *tests], cwd=ROOT, capture_output=True,
                           timeout=timeout, env={**os.environ,
                                                 "MUTATE_COVERAGE": str(cover_file)})
        if r.returncode == 0:
            break
    if r.returncode != 0:                     # else every mutant would count as killed
        raise SystemExit(f"{name}: the tests fail on the unmutated module (through the import "
                         f"hook); fix them first:\n{r.stdout.decode()[-2000:]}")
    # line -> the tests that run it; a line run while setting a test up selects its whole
    # file (a module-scoped fixture runs for the first test only, and serves them all)
    covering: dict[int, set[str]] = {}
    for key, lines in json.loads(cover_file.read_text()).items():
        node = key.removeprefix("setup:").split("::")[0] if key.startswith("setup:") else key
        for line in lines:
            covering.setdefault(line, set()).add(node)

    def selection_of(line: int) -> list[str]:
        nodes = covering.get(line, set())
        files = {n for n in nodes if "::" not in n}
        keep = [n for n in nodes if n in files or n.split("::")[0] not in files]
        return sorted(keep, key=lambda n: (tests.index(n.split("::")[0]), n))

    def run(f: Path, selection: list[str]) -> bool:
        try:
            r = subprocess.run([sys.executable, "-c", _BOOT, name, str(ROOT / rel), str(f),
                                *pytest_args, *selection], cwd=ROOT, capture_output=True,
                               timeout=timeout)
            return r.returncode != 0
        except subprocess.TimeoutExpired:
            return True                                     # a hang is noticed too

    killed, survivors = 0, []
    log = out_dir / f"{name}.jsonl"
    for i, (kind, line, what, in_body) in enumerate(found):
        if only is not None and i not in only:
            continue
        f = out_dir / f"{name}.{i}.py"
        f.write_text(mutant(source, i))
        # A line in a function body changes nothing for a test that never runs it: only the
        # tests that do run (none: the mutant cannot be killed, unreached); a module-level
        # line runs them all.
        selection = selection_of(line) if in_body else tests
        dead = bool(selection) and run(f, selection)
        if dead:
            killed += 1
        else:
            survivors.append((i, line, kind, what))
        with log.open("a") as fh:
            fh.write(json.dumps({"mutant": i, "line": line, "kind": kind, "what": what,
                                 "killed": dead, "reached": bool(selection),
                                 "time": time.time()}) + "\n")
        state = "killed" if dead else "SURVIVED" if selection else "SURVIVED (never run)"
        print(f"  {name} #{i} line {line} {kind} {what}: {state}", flush=True)
    return killed, survivors


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("modules", nargs="*", default=list(TARGETS),
                   help=f"modules to mutate (default all: {', '.join(TARGETS)})")
    p.add_argument("--timeout", type=float, default=300, help="seconds per mutant run")
    p.add_argument("--list", action="store_true", help="only count the mutants")
    p.add_argument("--mutants", metavar="I,J-K", default=None,
                   help="run only these mutant numbers (one module; numbers as printed)")
    p.add_argument("--pytest-arg", action="append", default=[], metavar="ARG",
                   help="passed to pytest (repeat for several)")
    args = p.parse_args(argv)
    only = None if args.mutants is None else parse_indices(args.mutants)
    if only is not None and len(args.modules) != 1:
        p.error("--mutants needs exactly one module")
    out_dir = ROOT / "build" / "mutants"
    out_dir.mkdir(parents=True, exist_ok=True)
    total_k = total_n = 0
    for name in args.modules:
        n = len(sites((ROOT / TARGETS[name][0]).read_text()))
        if args.list:
            print(f"{name}: {n} mutants")
            continue
        t0 = time.perf_counter()
        k, surv = run_module(name, args.timeout, out_dir, tuple(args.pytest_arg), only)
        n = n if only is None else len(only & set(range(n)))
        total_k, total_n = total_k + k, total_n + n
        print(f"{name}: {k}/{n} killed ({100 * k / max(1, n):.1f} %) in "
              f"{time.perf_counter() - t0:.0f} s; survivors:")
        for i, line, kind, what in surv:
            print(f"    #{i} line {line}: {kind} {what}")
    if total_n:
        print(f"all: {total_k}/{total_n} killed ({100 * total_k / total_n:.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
