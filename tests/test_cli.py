"""CLI: the happy paths on small models, and one-line errors (no traceback, non-zero exit)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_importer import gu_state_dict

from neuroloom.cli import main
from neuroloom.firmware.compiler import random_qmodel
from neuroloom.firmware.importer import save_qmodel

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def qmodel_path(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    save_qmodel(random_qmodel(6, 2, 1, d_in=1, classes=10, seed=4), d / "small")
    save_qmodel(random_qmodel(64, 32, 1, d_in=1, classes=10, seed=4), d / "big")
    assert main(["compile", str(d / "small"), "-o", str(d / "img.nlimg"), "--mesh", "1x1"]) == 0
    (d / "garbage.nlimg").write_bytes(b"hello, not an image")
    return d


def _err_line(capsys):
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.err, out.err
    return lines[0]


def test_compile_info_run_eval(qmodel_path, capsys, tmp_path):
    img = tmp_path / "small.nlimg"
    assert main(["compile", str(qmodel_path / "small"), "-o", str(img), "--mesh", "1x1",
                 "--mode", "fall-through"]) == 0
    assert "1 cores used" in capsys.readouterr().out and img.is_file()

    assert main(["info", str(img)]) == 0
    out = capsys.readouterr().out
    assert "mode fall-through" in out and "neurons" in out and "(0,0)" in out

    assert main(["info", str(qmodel_path / "small")]) == 0
    assert "compiled for 2x2" in capsys.readouterr().out

    x = np.random.default_rng(0).uniform(0, 1, (2, 7, 1))
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(img), "--input", str(tmp_path / "x.npy"), "--counters",
                 "--mode", "pipelined"]) == 0
    out = capsys.readouterr().out
    assert "sample 1: class" in out and "steps (pipelined)" in out

    assert main(["run", str(img), "--sample", "3", "--running"]) == 0
    assert "token 63:" in capsys.readouterr().out

    assert main(["eval", str(img), "--limit", "12"]) == 0
    assert "golden accuracy" in capsys.readouterr().out

    assert main(["eval", str(qmodel_path / "small"), "--limit", "12", "--mesh", "1x1"]) == 0
    out = capsys.readouterr().out
    assert "quantized accuracy" in out and "bit for bit" in out


def test_demo(capsys):
    assert main(["demo", "--limit", "8", "--backend", "golden"]) == 0
    out = capsys.readouterr().out
    assert out.count("bit for bit") == 2 and "steps/token" in out


@pytest.mark.parametrize("argv,needle", [
    (["compile", "/nonexistent/model", "-o", "x.nlimg"], "no such file"),
    (["run", "/nonexistent.nlimg", "--sample", "0"], "no such file"),
    (["info", "/nonexistent.nlimg"], "no such file"),
    (["eval", "IMG", "--dataset", "mnist"], "needs a folder"),
    (["eval", "IMG", "--dataset", "mnist", "/nonexistent-mnist"], "nonexistent-mnist"),
    (["eval", "IMG", "--dataset", "imagenet"], "unknown dataset"),
    (["run", "IMG"], "exactly one of --input"),
    (["run", "IMG", "--sample", "99999"], "outside the test split"),
    (["compile", "BIG", "-o", "x.nlimg", "--mesh", "1x1"], "--mesh"),
    (["compile", "SMALL", "-o", "x.nlimg", "--mesh", "3by3"], "WxH"),
    (["compile", "SMALL", "-o", "x.nlimg", "--row-budget", "0"], "positive integer"),
    (["compile", "SMALL", "-o", "x.nlimg", "--row-budget", "2"], "raise the row budget"),
    (["info", "GARBAGE"], "bad magic"),
])
def test_user_errors_are_one_line(argv, needle, qmodel_path, tmp_path, capsys):
    subs = {"IMG": str(qmodel_path / "img.nlimg"), "BIG": str(qmodel_path / "big"),
            "SMALL": str(qmodel_path / "small"), "GARBAGE": str(qmodel_path / "garbage.nlimg")}
    capsys.readouterr()
    argv = [subs.get(a, a) for a in argv]
    argv = [str(tmp_path / a) if a == "x.nlimg" else a for a in argv]
    assert main(argv) == 1
    line = _err_line(capsys)
    assert line.startswith("neuroloom: error:") and needle in line, line


def test_fit_error_names_resource(qmodel_path, capsys, tmp_path):
    assert main(["compile", str(qmodel_path / "big"), "-o", str(tmp_path / "b.nlimg"),
                 "--mesh", "1x1"]) == 1
    line = _err_line(capsys)
    assert "binding resource" in line and "over" in line and "mesh fits" in line


@pytest.mark.parametrize("argv", [["compile"], ["run", "x", "--mode", "bogus"], ["frobnicate"],
                                  []])
def test_bad_args_exit_2_one_line(argv, capsys):
    with pytest.raises(SystemExit) as ei:
        main(argv)
    assert ei.value.code == 2
    assert _err_line(capsys).startswith("neuroloom")


def test_console_entry_no_traceback(tmp_path):
    bad = tmp_path / "bad.nlimg"
    bad.write_bytes(b"NLOOMIMG" + b"\0" * 40)
    r = subprocess.run([sys.executable, "-m", "neuroloom", "info", str(bad)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("neuroloom: error:") and len(r.stderr.strip().splitlines()) == 1


TINY = ["--neurons", "8", "--axons", "8", "--synapse-rows", "8", "--route-words", "8",
        "--ucode-depth", "8"]


def test_generate_tiny(tmp_path, capsys):
    out = tmp_path / "fabric.v"
    assert main(["generate", "--mesh", "1x1", *TINY, "-o", str(out)]) == 0
    assert "module fabric" in out.read_text()
    desc = json.loads((tmp_path / "fabric.json").read_text())
    assert desc["config"]["mesh_w"] == 1 and desc["config"]["neurons"] == 8
    assert desc["config"]["groups"] == 8                      # default kept
    names = {p["name"]: p for p in desc["ports"]}
    assert names["s_axis_tdata"] == {"name": "s_axis_tdata", "dir": "in", "width": 32}
    assert names["m_axis_tvalid"]["dir"] == "out" and "clk" in names
    assert desc["host_protocol"]["magic"] == "0x4E4C4F4D"
    assert "1x1" in capsys.readouterr().out



def test_generate_target_ecp5_uses_registered_mult18(tmp_path, capsys):
    """--target ecp5: the multipliers are MULT18X18D blocks with their registers on; the
    default (generic) Verilog has none, so any simulator reads it."""
    paths = {t: tmp_path / f"{t}.v" for t in ("generic", "ecp5")}
    for t, out in paths.items():
        assert main(["generate", "--mesh", "1x1", *TINY, "--target", t, "-o", str(out)]) == 0
    generic, ecp5 = (paths[t].read_text() for t in ("generic", "ecp5"))
    assert "MULT18X18D" not in generic
    blocks = ecp5.count("MULT18X18D ")
    assert blocks > 0 and ecp5.count('.REG_OUTPUT_CLK("CLK0")') == blocks
    assert ecp5.count('.REG_INPUTA_CLK("CLK0")') == blocks

@pytest.mark.parametrize("argv,needle", [
    (["--mesh", "1x1", "--neurons", "6"], "multiple of synapse_lanes"),
    (["--mesh", "17x1"], "mesh_w=17"),
    (["--mesh", "1x1", "--axons", "0"], "axons=0"),
    (["--mesh", "2by2"], "WxH"),
    (["--mesh", "1x1", "--neurons", "32768"], "configuration index"),
    ([], "--mesh"),
])
def test_generate_bad_params_one_line(argv, needle, tmp_path, capsys):
    out = tmp_path / "f.v"
    assert main(["generate", *argv, "-o", str(out)]) == 1
    line = _err_line(capsys)
    assert line.startswith("neuroloom: error:") and needle in line, line
    assert not out.exists()


def test_generate_bad_output_folder(tmp_path, capsys):
    assert main(["generate", "--mesh", "1x1", *TINY, "-o", str(tmp_path / "no" / "f.v")]) == 1
    assert "no such file" in _err_line(capsys)


@pytest.mark.parametrize("argv", [
    ["run", "IMG", "--sample", "0", "--backend", "fpga"],
    ["eval", "IMG", "--backend", "bogus"],
    ["demo", "--backend", "x"],
    ["generate", "--mesh", "1x1", "--neurons", "many", "-o", "f.v"],
])
def test_bad_backend_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as ei:
        main(argv)
    assert ei.value.code == 2
    assert _err_line(capsys).startswith("neuroloom")


@pytest.mark.parametrize("argv", [
    ["run", "IMG", "--sample", "0", "--waves"],
    ["eval", "IMG", "--limit", "2", "--waves"],
])
def test_waves_needs_verilator(argv, qmodel_path, capsys):
    argv = [str(qmodel_path / "img.nlimg") if a == "IMG" else a for a in argv]
    assert main(argv) == 1
    assert "--backend verilator" in _err_line(capsys)


def test_simulator_failure_is_one_line(qmodel_path, tmp_path, monkeypatch, capsys):
    """A Verilator build that fails (here: a stand-in that writes a compiler error to the log
    and raises like VerilatorLink does) ends in one error line naming the cause and the log,
    exit 1, no traceback."""
    import neuroloom.sim.verilator_link as vl

    monkeypatch.setattr(vl, "sim_build_dir", lambda cfg, waves=False: tmp_path / "sim")

    def broken_link(cfg, waves=False, timeout=0):
        import os
        os.write(1, b"x.cpp:1:10: fatal error: foo.h: No such file or directory\n")
        raise RuntimeError("the Verilator simulation did not start: Command failed with "
                           "return code: 2")

    monkeypatch.setattr(vl, "VerilatorLink", broken_link)
    img = str(qmodel_path / "img.nlimg")
    assert main(["run", img, "--sample", "0", "--backend", "verilator"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("neuroloom: error: the Verilator simulation did not start"), line
    assert "fatal error: foo.h" in line and str(tmp_path / "sim" / "sim.log") in line


def _gu_state_dict():
    """A tiny state_dict in the state-spaces/s4 S4D layout (d_in=1, as digits)."""
    return gu_state_dict(H=4, N2=2, d_in=1, classes=10, L=1)


def test_gu_npz_routed_to_importer(tmp_path, capsys):
    """A .npz without a .json beside it is a Gu checkpoint: without --activation the one-line
    error names the flag; with --activation relu --no-residual it imports and compiles."""
    np.savez(tmp_path / "gu.npz", **_gu_state_dict())
    assert main(["info", str(tmp_path / "gu.npz")]) == 1
    line = _err_line(capsys)
    assert "--activation relu" in line, line
    assert main(["info", str(tmp_path / "gu.npz"), "--activation", "gelu"]) == 1
    assert "not supported" in _err_line(capsys)
    assert main(["info", str(tmp_path / "gu.npz"), "--activation", "relu",
                 "--no-residual"]) == 0
    assert "model d_in=1 H=4" in capsys.readouterr().out
    img = tmp_path / "gu.nlimg"
    assert main(["compile", str(tmp_path / "gu.npz"), "--activation", "relu", "-o",
                 str(img)]) == 0 and img.is_file()


def test_compile_mapping_and_pooling(qmodel_path, tmp_path, capsys):
    """--mapping reaches the compiler (spec §9: per-mode 3L + 2 stages, channel L + 2) and the
    golden model of each image equals the quantized reference; --pooling accepts only sum."""
    from neuroloom.contract.image import load
    L = 1                                         # the "small" model has one S4D layer
    expected = {"per-mode": 3 * L + 2, "channel": L + 2}
    stages = {}
    for mapping in ("per-mode", "channel"):
        img = tmp_path / f"{mapping}.nlimg"
        assert main(["compile", str(qmodel_path / "small"), "-o", str(img), "--mesh", "1x1",
                     "--mapping", mapping, "--pooling", "sum"]) == 0
        assert f"mapping {mapping}" in capsys.readouterr().out
        stages[mapping] = len(load(img).stages)
        assert stages[mapping] == expected[mapping], (mapping, stages)
        assert main(["eval", str(qmodel_path / "small"), "--limit", "6", "--mesh", "1x1",
                     "--mapping", mapping]) == 0
        assert "bit for bit" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["compile", str(qmodel_path / "small"), "-o", str(tmp_path / "m.nlimg"),
              "--pooling", "mean"])
    assert e.value.code == 2 and "--pooling" in _err_line(capsys)
