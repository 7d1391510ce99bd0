"""The installed package: one import name, its data, and its layering.

The wheel is built from a copy of the source tree (so nothing is written into the checkout) and
unpacked into a folder that then stands first on ``sys.path``: these tests see exactly what
``pip install .`` installs, not the editable checkout. The layering contracts are the
``[tool.importlinter]`` section of ``pyproject.toml`` (docs/house.md explains them).
"""

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
SKIP = shutil.ignore_patterns(".git", ".venv", "build", "sim_build", "__pycache__", "*.egg-info",
                              ".pytest_cache", ".hypothesis", ".ruff_cache", "tests", "bench")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of the current source tree."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=SKIP)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "-q", "-w", str(tmp / "dist"), str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    (whl,) = (tmp / "dist").glob("neuroloom-*.whl")
    return whl


@pytest.fixture(scope="module")
def site(wheel, tmp_path_factory) -> Path:
    """The wheel unpacked, as pip would lay it out in site-packages."""
    site = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    return site


def _env(site: Path) -> dict:
    return dict(os.environ, PYTHONPATH=str(site))


def lint_imports(site: Path, cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(exe), "--no-cache", str(PYPROJECT)], cwd=cwd, env=_env(site),
                          capture_output=True, text=True)


def test_wheel_holds_one_package_with_its_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"neuroloom", wheel.name.split("-py3")[0] + ".dist-info"}, sorted(tops)
    for pkg in ("contract", "cli", "hw", "hw/core", "hw/noc", "sim", "firmware", "fpga"):
        assert f"neuroloom/{pkg}/__init__.py" in names, f"{pkg} missing from the wheel"
    data = {n for n in names if n.startswith(("neuroloom/firmware/models/",
                                              "neuroloom/firmware/programs/"))}
    shipped = {f"neuroloom/firmware/{p.parent.name}/{p.name}"
               for d in ("models", "programs") for p in (ROOT / "firmware" / d).iterdir()
               if p.is_file()}
    assert shipped and data == shipped, sorted(shipped ^ data)
    meta = next(n for n in names if n.endswith("entry_points.txt"))
    eps = zipfile.ZipFile(wheel).read(meta).decode()
    assert "neuroloom = neuroloom.cli:main" in eps and "[neuroloom.transports]" in eps, eps


def test_installed_package_is_the_one_imported(site, tmp_path):
    r = subprocess.run([sys.executable, "-c", "import neuroloom.firmware.driver as d; "
                        "print(d.__file__); print(*d.transport_names())"],
                       cwd=tmp_path, env=_env(site), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    where, names = r.stdout.splitlines()
    assert Path(where).is_relative_to(site), where
    assert names.split() == ["golden", "model", "serial", "verilator"], names


def test_installed_demo_runs_from_another_folder(site, tmp_path):
    """The shipped model from package data, on the golden model, outside the repository."""
    r = subprocess.run([sys.executable, "-m", "neuroloom", "demo", "--backend", "golden",
                        "--limit", "20"], cwd=tmp_path, env=_env(site), capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "model digits-q" in r.stdout, r.stdout
    assert "== quantized, bit for bit" in r.stdout, r.stdout


def test_layering_contracts_hold(site, tmp_path):
    r = lint_imports(site, tmp_path)
    assert r.returncode == 0, r.stdout[-3000:]
    assert "2 kept, 0 broken" in r.stdout, r.stdout[-3000:]


@pytest.mark.parametrize("module, upward, contract", [
    ("contract/fixed.py", "import neuroloom.hw.verilog", "cli > fpga > sim"),
    ("hw/barrier.py", "import neuroloom.firmware.asm", "cli > fpga > sim"),
    ("firmware/asm.py", "import neuroloom.sim.golden", "cli > fpga > sim"),
    ("sim/neuron.py", "import neuroloom.firmware.compiler", "not on the compiler or"),
])
def test_an_upward_import_breaks_the_layering(site, tmp_path, module, upward, contract):
    bad = tmp_path / "site"
    shutil.copytree(site, bad)
    path = bad / "neuroloom" / module
    path.write_text(path.read_text() + f"\n{upward}  # an upward import\n")
    r = lint_imports(bad, tmp_path)
    assert r.returncode != 0, r.stdout[-3000:]
    broken = r.stdout.partition("Broken contracts")[2]
    assert contract in broken and upward.split()[1] in broken, r.stdout[-3000:]


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def test_project_code_imports_only_through_neuroloom():
    """Nothing imports the repository folders by their own names (``hw``, ``sim`` ...), and
    library code never imports tests."""
    folders = {"hw", "sim", "firmware", "fpga", "tests", "bench", "neuroloom.tests"}
    bad = []
    for top in ("neuroloom", "hw", "sim", "firmware", "fpga", "bench"):
        for p in sorted((ROOT / top).rglob("*.py")):
            bad += [f"{p.relative_to(ROOT)}: import {m}" for m in _imports(p)
                    if m.split(".")[0] in folders]
    assert not bad, "\n".join(bad)


@pytest.mark.slow
def test_pip_install_from_a_clean_clone(tmp_path):
    """``pip install .`` (not editable) of a clean clone into a fresh virtual environment, then
    the shipped demo from another folder: what a new user does."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(clone)],
                         capture_output=True, text=True, timeout=1800)
    assert pip.returncode == 0, pip.stderr[-3000:]
    top = {p.name.split("-")[0] for p in (venv / "lib").glob("python3*/site-packages/*")}
    assert "neuroloom" in top and not top & {"hw", "sim", "firmware", "fpga", "tests"}, top
    run = tmp_path / "elsewhere"
    run.mkdir()
    r = subprocess.run([str(venv / "bin" / "neuroloom"), "demo", "--backend", "golden"],
                       cwd=run, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "== quantized, bit for bit" in r.stdout, r.stdout
