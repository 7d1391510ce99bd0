"""CLI structure: thin command modules, every FabricConfig field a flag, --fabric files,
image/fabric mismatches, train as a real subcommand, results on stdout and notes on stderr."""

import contextlib
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from neuroloom.cli import COMMANDS, build_parser, command_module, main
from neuroloom.contract.config import FabricConfig
from neuroloom.contract.image import load as load_image
from neuroloom.firmware.compiler import random_qmodel
from neuroloom.firmware.driver import Driver, open_transport
from neuroloom.firmware.importer import save_qmodel
from neuroloom.firmware.transports import FramedTransport

ROOT = Path(__file__).resolve().parents[1]
FABRIC_COMMANDS = ("generate", "compile", "run", "eval", "info", "demo")
#: the least each command needs besides a fabric flag
MINIMAL_ARGV = {"generate": ["-o", "f.v"], "compile": ["m", "-o", "m.nlimg"], "run": ["i"],
                "eval": ["t"], "info": ["t"], "demo": []}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A small quantized model and its image on a 1x1 fabric with the default widths."""
    d = tmp_path_factory.mktemp("cli_commands")
    save_qmodel(random_qmodel(6, 2, 1, d_in=1, classes=10, seed=4), d / "small")
    assert main(["compile", str(d / "small"), "-o", str(d / "img.nlimg"), "--mesh", "1x1"]) == 0
    return d


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("neuroloom: error: "), lines[0]
    return lines[0]


@pytest.mark.parametrize("name", COMMANDS)
def test_command_modules_are_thin(name):
    mod = command_module(name)
    assert callable(mod.add_arguments) and callable(mod.run), name
    assert mod.__doc__ and mod.__doc__.strip(), f"{name}: no docstring (it is the help line)"
    lines = len(Path(mod.__file__).read_text().splitlines())
    assert lines < 120, f"neuroloom/cli/{name}.py has {lines} lines: move the work into the library"


@pytest.mark.parametrize("name", FABRIC_COMMANDS)
@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(FabricConfig)])
def test_every_fabric_field_has_a_flag(name, field):
    parser = build_parser()
    flag = "--" + field.replace("_", "-")
    args = parser.parse_args([name, *MINIMAL_ARGV[name], flag, "7", "--fabric", "f.json"])
    assert getattr(args, f"fabric_{field}") == 7 and args.fabric == "f.json"


@pytest.mark.parametrize("name", FABRIC_COMMANDS)
def test_fabric_flag_help_states_default(name, capsys):
    with pytest.raises(SystemExit) as ei:
        main([name, "--help"])
    assert ei.value.code == 0
    out = capsys.readouterr().out
    for f in dataclasses.fields(FabricConfig):
        flag = "--" + f.name.replace("_", "-")
        assert flag in out, f"{name} --help: no {flag}"
    assert "--mesh WxH" in out and "--fabric FILE" in out
    assert "(default 256)" in out                         # neurons, axons


def test_generate_then_compile_with_its_fabric_json(small, tmp_path, capsys):
    v = tmp_path / "fabric.v"
    assert main(["generate", "--mesh", "1x1", "--neurons", "128", "--axons", "64",
                 "--route-words", "200", "-o", str(v)]) == 0
    desc = json.loads((tmp_path / "fabric.json").read_text())
    img = tmp_path / "m.nlimg"
    assert main(["compile", str(small / "small"), "--fabric", str(tmp_path / "fabric.json"),
                 "-o", str(img)]) == 0
    assert "mesh 1x1" in capsys.readouterr().out
    got = load_image(img).cfg.to_dict()
    want = {**FabricConfig().to_dict(), "mesh_w": 1, "mesh_h": 1, "neurons": 128, "axons": 64,
            "route_words": 200}
    assert got == want == desc["config"], (got, want)

    # the image runs with the same file, and a flag overrides the file
    assert main(["run", str(img), "--sample", "0", "--fabric",
                 str(tmp_path / "fabric.json")]) == 0
    img2 = tmp_path / "m2.nlimg"
    assert main(["compile", str(small / "small"), "--fabric", str(tmp_path / "fabric.json"),
                 "--neurons", "64", "-o", str(img2)]) == 0
    assert load_image(img2).cfg.neurons == 64 and load_image(img2).cfg.axons == 64


def test_plain_config_dict_as_fabric_file(small, tmp_path):
    f = tmp_path / "cfg.json"
    f.write_text(json.dumps({"mesh_w": 1, "mesh_h": 1, "groups": 6}))
    img = tmp_path / "m.nlimg"
    assert main(["compile", str(small / "small"), "--fabric", str(f), "-o", str(img)]) == 0
    cfg = load_image(img).cfg
    assert (cfg.mesh_w, cfg.mesh_h, cfg.groups, cfg.neurons) == (1, 1, 6, 256)


def test_compile_neurons_flag(small, tmp_path, capsys):
    img = tmp_path / "n128.nlimg"
    assert main(["compile", str(small / "small"), "--neurons", "128", "--mesh", "1x1",
                 "-o", str(img)]) == 0
    assert load_image(img).cfg.neurons == 128
    assert main(["info", str(img)]) == 0
    assert "/128" in capsys.readouterr().out                  # usage table: used/capacity


def test_model_compiled_for_flags_without_mesh_grows(small, tmp_path):
    """No mesh given: the default 2x2 (the model fits); every other flag is kept."""
    img = tmp_path / "w.nlimg"
    assert main(["compile", str(small / "small"), "--ucode-depth", "128", "-o", str(img)]) == 0
    cfg = load_image(img).cfg
    assert (cfg.mesh_w, cfg.mesh_h, cfg.ucode_depth) == (2, 2, 128)


@pytest.mark.parametrize("argv,needles", [
    (["run", "IMG", "--sample", "0", "--neurons", "128"],
     ["neurons=256 in the image", "128 from --neurons"]),
    (["eval", "IMG", "--limit", "2", "--mesh", "2x2"],
     ["mesh_w=1 in the image", "2 from --mesh", "mesh_h=1"]),
    (["info", "IMG", "--acc-width", "40"], ["acc_width=32 in the image", "40 from --acc-width"]),
    (["run", "IMG", "--sample", "0", "--fabric", "F2x2"], ["mesh_w=1 in the image", "F2x2"]),
])
def test_image_fabric_mismatch_is_one_line(argv, needles, small, tmp_path, capsys):
    f = tmp_path / "f2x2.json"
    f.write_text(json.dumps({"config": FabricConfig().to_dict()}))
    subs = {"IMG": str(small / "img.nlimg"), "F2x2": str(f)}
    argv = [subs.get(a, a) for a in argv]
    needles = [subs.get(n, n) for n in needles]
    capsys.readouterr()
    assert main(argv) == 1
    line = _one_error_line(capsys)
    assert "compiled for another fabric" in line and "neuroloom compile" in line, line
    for n in needles:
        assert n in line, (n, line)


def test_image_with_matching_fabric_options_runs(small, capsys):
    assert main(["info", str(small / "img.nlimg"), "--mesh", "1x1", "--neurons", "256"]) == 0
    assert "fabric 1x1" in capsys.readouterr().out


@pytest.mark.parametrize("content,needle", [
    ("{not json", "not JSON"),
    ('{"config": {"mesh_w": 1, "neuronz": 3}}', "unknown fabric field(s) neuronz"),
    ('{"config": {"mesh_w": "two"}}', "mesh_w='two' must be an integer"),
    ("[1, 2]", "no fabric configuration"),
    ('{"config": {"mesh_w": 1, "mesh_h": 1, "neurons": 6}}', "multiple of synapse_lanes"),
])
def test_bad_fabric_file_is_one_line(content, needle, small, tmp_path, capsys):
    f = tmp_path / "fabric.json"
    f.write_text(content)
    out = tmp_path / "x.nlimg"
    assert main(["compile", str(small / "small"), "--fabric", str(f), "-o", str(out)]) == 1
    assert needle in _one_error_line(capsys)
    assert not out.exists()


@pytest.mark.parametrize("argv,needle", [
    (["compile", "SMALL", "-o", "OUT", "--fabric", "/nonexistent/fabric.json"], "no such file"),
    (["compile", "SMALL", "-o", "OUT", "--mesh", "1x1", "--mesh-w", "2"], "not both"),
    (["compile", "IMG", "-o", "OUT"], "is a config image, not a model"),
    (["generate", "--mesh", "1x1", "--top", "9bad name", "-o", "OUT"], "not a Verilog module"),
    (["generate", "--mesh-w", "1", "-o", "OUT"], "give the mesh"),
    (["demo", "--backend", "golden", "--limit", "0"], "at least 1"),
    (["demo", "--backend", "golden", "--waves"], "--backend verilator"),
    (["eval", "IMG", "--limit", "0"], "at least 1"),
    (["compile", "SMALL", "-o", "/nonexistent/dir/x.nlimg"], "no such file"),
    (["compile", "SMALL", "-o", "SMALL.npz"], "would overwrite the model"),
    (["compile", "SMALL", "-o", "OUT", "--activation", "relu"], "describe Gu checkpoints"),
    (["info", "SMALL", "--no-residual"], "describe Gu checkpoints"),
    (["run", "IMG", "--input", "FRAC", "--payloads"], "non-integer"),
    (["run", "IMG", "--input", "EMPTYNPY"], "not a .npy file of numeric arrays"),
])
def test_more_user_errors_one_line(argv, needle, small, tmp_path, capsys):
    np.save(tmp_path / "frac.npy", np.full((5, 1), 2.5))
    (tmp_path / "empty.npy").write_bytes(b"")
    subs = {"SMALL": str(small / "small"), "IMG": str(small / "img.nlimg"),
            "OUT": str(tmp_path / "out.x"), "SMALL.npz": str(small / "small.npz"),
            "FRAC": str(tmp_path / "frac.npy"), "EMPTYNPY": str(tmp_path / "empty.npy")}
    model_bytes = (small / "small.npz").read_bytes()
    argv = [subs.get(a, a) for a in argv]
    capsys.readouterr()
    assert main(argv) == 1
    assert needle in _one_error_line(capsys)
    assert not (tmp_path / "out.x").exists()
    assert (small / "small.npz").read_bytes() == model_bytes


def test_ctrl_c_exits_130(small, monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(command_module("info"), "run", interrupted)
    assert main(["info", str(small / "img.nlimg")]) == 130
    out = capsys.readouterr()
    assert out.err == "neuroloom: interrupted\n" and out.out == "", out


def test_train_help_exits_0(capsys):
    with pytest.raises(SystemExit) as ei:
        main(["train", "--help"])
    assert ei.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--epochs", "--dataset", "--qaft-epochs", "--out", "--neurons"):
        assert opt in out, opt


def test_train_tiny_run_then_compile(tmp_path, capsys):
    stem = tmp_path / "tiny"
    assert main(["train", "--dataset", "digits", "-H", "4", "-N", "2", "-L", "1",
                 "--epochs", "1", "--qaft-epochs", "1", "--max-steps", "2", "--calib", "32",
                 "--out", str(stem), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("float ") and "quantized" in out and str(stem) in out, out
    assert "PTQ: test accuracy" in err                        # phase logs are notes
    meta = json.loads((tmp_path / "tiny-q.json").read_text())
    assert "neuroloom train --dataset digits -H 4 -N 2 -L 1" in json.dumps(meta)
    assert (tmp_path / "tiny-float.npz").is_file()
    img = tmp_path / "tiny.nlimg"
    assert main(["compile", str(tmp_path / "tiny-q"), "--mesh", "1x1", "-o", str(img)]) == 0
    assert main(["eval", str(img), "--limit", "4"]) == 0


@pytest.mark.parametrize("argv,needle", [
    (["train", "--epochs", "-1"], "--epochs -1"),
    (["train", "-H", "0"], "-H 0"),
    (["train", "--dataset", "imagenet"], "unknown dataset"),
])
def test_train_bad_options_one_line(argv, needle, capsys):
    assert main(argv) == 1
    assert needle in _one_error_line(capsys)


def test_results_on_stdout_notes_on_stderr(small, capsys):
    assert main(["demo", "--backend", "golden", "--limit", "4"]) == 0
    out, err = capsys.readouterr()
    assert "golden accuracy" in out and "golden accuracy" not in err
    assert main(["eval", str(small / "img.nlimg"), "--limit", "3"]) == 0
    out, err = capsys.readouterr()
    assert "golden accuracy" in out and "accuracy" not in err


class _CountingLink:
    """The host link reference model, counting words exchanged as 'cycles'."""

    def __init__(self, cfg):
        self.inner = open_transport("model", cfg=cfg).link
        self.cycles = 0

    def exchange(self, words):
        reply = self.inner.exchange(words)
        self.cycles += len(words) + len(reply)
        return reply

    def close(self):
        pass


@contextlib.contextmanager
def _model_rtl(cfg, waves=False):
    yield Driver(FramedTransport(_CountingLink(cfg)))


def test_demo_rtl_report_with_clock(monkeypatch, capsys):
    """The RTL demo's report, with the host link reference model standing in for Verilator:
    the clock given by --clock heads the tokens/s column, the per-sample check holds."""
    monkeypatch.setattr(command_module("demo"), "verilator_driver", _model_rtl)
    assert main(["demo", "--limit", "2", "--clock", "50"]) == 0
    out = capsys.readouterr().out
    assert "tokens/s @ 50 MHz" in out and "clock 50 MHz = given by --clock" in out
    assert out.count("RTL == golden bit-exact on 2/2 samples") == 2, out
    row = next(ln for ln in out.splitlines() if ln.startswith("pipelined "))
    cycles_per_token, tokens_per_s = (float(v.replace(",", "")) for v in row.split()[1:3])
    assert tokens_per_s == pytest.approx(50e6 / cycles_per_token, rel=1e-3, abs=1), row


def test_demo_default_clock_is_the_measured_core_fmax(monkeypatch, capsys):
    """Without --clock the demo states DEMO_CLOCK_MHZ, which must be the Fmax the synthesis
    bench recorded, to 0.1 MHz (the installed package does not read bench/results/)."""
    measured = json.loads((ROOT / "bench" / "results" / "core_synth.json").read_text())
    monkeypatch.setattr(command_module("demo"), "verilator_driver", _model_rtl)
    assert main(["demo", "--limit", "1"]) == 0
    out = capsys.readouterr().out
    fmax = measured["default"]["fmax_mhz"]
    assert f"tokens/s @ {round(fmax, 1):g} MHz" in out, out
    assert "bench/core_synth.py" in out


def test_verilator_build_message_on_stderr(small, tmp_path, monkeypatch, capsys):
    """The 'building the Verilator model' note goes to stderr, never into the results."""
    import neuroloom.sim.verilator_link as vl

    monkeypatch.setattr(vl, "sim_build_dir", lambda cfg, waves=False: tmp_path / "sim")

    def failing_link(cfg, waves=False, timeout=0):
        raise RuntimeError("the Verilator simulation did not start: no compiler")

    monkeypatch.setattr(vl, "VerilatorLink", failing_link)
    assert main(["run", str(small / "img.nlimg"), "--sample", "0", "--backend", "verilator"]) == 1
    out, err = capsys.readouterr()
    assert "building the Verilator model" in err and "building" not in out
    assert err.strip().splitlines()[-1].startswith("neuroloom: error: the Verilator simulation")


def test_run_token_file_shapes(small, tmp_path, capsys):
    """One row of K scalars is one sequence; an empty file is an error, not a traceback."""
    np.savetxt(tmp_path / "row.csv", np.linspace(0, 1, 9)[None], delimiter=",")
    assert main(["run", str(small / "img.nlimg"), "--input", str(tmp_path / "row.csv"),
                 "--running"]) == 0
    out = capsys.readouterr().out
    assert "sample 0: class" in out and "sample 0 token 8:" in out and "sample 0 token 9" not in out
    assert "divided by the image's output scale" in out
    (tmp_path / "empty.csv").write_text("")
    assert main(["run", str(small / "img.nlimg"), "--input", str(tmp_path / "empty.csv")]) == 1
    assert "empty.csv" in _one_error_line(capsys)


def _long_options(help_text: str) -> set[str]:
    # argparse wraps a long usage line after a hyphen ("--route-" / "words N"): rejoin it
    help_text = re.sub(r"(--[a-z0-9-]*-)\n\s*", r"\1", help_text)
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", help_text)) - {"--help"}


def test_user_guide_matches_the_cli(capsys):
    """docs/user-guide.md names every option of every command, and no option that none has."""
    guide = (ROOT / "docs" / "user-guide.md").read_text()
    documented = _long_options(guide)
    everything = set()
    for name in COMMANDS:
        with pytest.raises(SystemExit):
            main([name, "--help"])
        options = _long_options(capsys.readouterr().out)
        everything |= options
        missing = sorted(options - documented)
        assert not missing, f"docs/user-guide.md does not mention {name}'s {missing}"
        assert f"neuroloom {name}" in guide, name
    stale = sorted(documented - everything)
    assert not stale, f"docs/user-guide.md names options no command has: {stale}"


@pytest.fixture(scope="module")
def float_model(tmp_path_factory):
    """A small random float model (d_in 1), saved as a NeuroLoom float model."""
    from neuroloom.firmware.importer import save_float
    from neuroloom.firmware.model import FloatModel
    d = tmp_path_factory.mktemp("float_model")
    save_float(FloatModel.random(d_in=1, H=4, N=2, L=1, classes=10, seed=0), d / "fm")
    return d / "fm"


def test_compile_calibration_is_said_and_reported(float_model, tmp_path, capsys):
    """Default: digits (max token 1.0), said on stderr; the saturation report on stdout; a
    token file of values up to 20 is a choice that changes the input scale (a power of two
    putting the calibration maximum at 2**(24-1-3), docs of firmware/quantize.py)."""
    img = tmp_path / "d.nlimg"
    assert main(["compile", str(float_model), "--mesh", "1x1", "-o", str(img)]) == 0
    out, err = capsys.readouterr()
    assert "calibrated on the first 256 digits train sequences (the default" in err, err
    assert "--calibrate" in err and "note:" not in out
    assert "on the calibration data: saturated values: none; clipped parameters: 0" in out, out
    assert load_image(img).model["in_scale"] == 2.0 ** 20
    x = np.full((3, 16, 1), 20.0)
    np.save(tmp_path / "cal.npy", x)
    img2 = tmp_path / "c.nlimg"
    assert main(["compile", str(float_model), "--mesh", "1x1", "-o", str(img2), "--calibrate",
                 str(tmp_path / "cal.npy")]) == 0
    out, err = capsys.readouterr()
    assert f"calibrated on 3 sequence(s) of 16 tokens from {tmp_path / 'cal.npy'}" in err, err
    assert load_image(img2).model["in_scale"] == 2.0 ** 15             # 20 * 2**15 <= 2**20
    assert main(["compile", str(float_model), "--mesh", "1x1", "-o", str(img2), "--calibrate",
                 "pdigits"]) == 0
    assert "calibrated on the first 256 pdigits train sequences" in capsys.readouterr().err


@pytest.mark.parametrize("argv,needle", [
    (["--calibrate", "nope"], "--calibrate nope: neither a data set"),
    (["--data", "somewhere"], "--data PATH is the folder of a --calibrate data set"),
    (["--calibrate", "mnist"], "needs a folder"),
])
def test_compile_bad_calibration_one_line(argv, needle, float_model, tmp_path, capsys):
    out = tmp_path / "x.nlimg"
    assert main(["compile", str(float_model), "-o", str(out), *argv]) == 1
    assert needle in _one_error_line(capsys)
    assert not out.exists()


def test_compile_calibrate_on_quantized_model_is_refused(small, tmp_path, capsys):
    out = tmp_path / "x.nlimg"
    assert main(["compile", str(small / "small"), "-o", str(out), "--calibrate", "digits"]) == 1
    assert "quantized model, which needs no calibration" in _one_error_line(capsys)
    assert not out.exists()


def test_run_final_logits_are_the_integers_over_the_output_scale(small, tmp_path, capsys):
    """By value: the final logits printed are the fabric's integers (checked against a driver
    run of the same tokens) divided by the image's output scale (here 8), to the 4 significant
    digits printed; the class is their argmax."""
    from neuroloom.firmware.datasets import digits
    img = load_image(small / "img.nlimg")
    scaled = tmp_path / "scaled.nlimg"
    scaled.write_bytes(dataclasses.replace(img, model={**img.model, "out_scale": 8.0})
                       .to_bytes())
    assert main(["run", str(scaled), "--sample", "3", "--running"]) == 0
    lines = capsys.readouterr().out.splitlines()
    K = digits().x_test.shape[1]
    ints = np.array([int(v) for v in next(ln for ln in lines if ln.startswith(
        f"sample 0 token {K - 1}: ")).split(":")[1].split()])
    final = next(ln for ln in lines if ln.startswith("sample 0: class "))
    shown = np.array([float(v) for v in final.split("logits")[1].split()])
    drv = Driver(open_transport("golden"))
    drv.load(img)
    np.testing.assert_array_equal(ints, drv.run(drv.quantize(digits().x_test[3])).logits)
    assert np.any(ints % 8), ints                        # a scale of 1 would print otherwise
    np.testing.assert_allclose(shown, ints / 8.0, rtol=5.1e-4)
    assert final.startswith(f"sample 0: class {int(np.argmax(ints))} "), final
