"""Bad inputs, every subcommand: missing, empty, truncated, corrupted and forged files, bad
meshes, bad numbers, unwritable outputs.

Each case runs the CLI in process (golden backend only) and checks what a user sees: a non-zero
exit, exactly one line on stderr naming the problem (``neuroloom: error: ...``), no traceback,
no file written where none should be, and every input file byte for byte as it was.
"""

import dataclasses
import hashlib
import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from neuroloom.cli import main
from neuroloom.contract.coreconfig import split_parts
from neuroloom.contract.image import Image
from neuroloom.contract.image import load as load_image
from neuroloom.contract.layouts import Mem, group_layout, pack, unpack
from neuroloom.firmware.compiler import random_qmodel
from neuroloom.firmware.importer import save_float, save_qmodel
from neuroloom.firmware.model import FloatModel


def _forge(img: Image, path: Path, **changes) -> None:
    """``img`` with ``changes``, written with a correct checksum (only the semantic check can
    refuse it)."""
    path.write_bytes(dataclasses.replace(img, **changes).to_bytes())


def _group_period_zero(img: Image) -> list:
    parts: dict = {}
    for c, m, i, p, v in img.writes:
        if m == Mem.GROUP:
            parts.setdefault((c, i), {})[p] = v
    key, g = next((k, g) for k, ps in sorted(parts.items())
                  if (g := unpack(group_layout(img.cfg), sum(v << (32 * p)
                                                             for p, v in ps.items())))["count"])
    new = split_parts(img.cfg, Mem.GROUP, pack(group_layout(img.cfg),
                                               **{**{k: int(v) for k, v in g.items()},
                                                  "period": 0}))
    return [(c, m, i, p, new[p]) if (c, m, i) == (*key[:1], Mem.GROUP, key[1]) else
            (c, m, i, p, v) for c, m, i, p, v in img.writes]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Every input the cases name, by placeholder."""
    d = tmp_path_factory.mktemp("bad_inputs")
    save_qmodel(random_qmodel(6, 2, 1, d_in=1, classes=10, seed=4), d / "small")
    save_float(FloatModel.random(d_in=1, H=4, N=2, L=1, classes=10, seed=0), d / "float")
    assert main(["compile", str(d / "small"), "-o", str(d / "img.nlimg"), "--mesh", "1x1"]) == 0
    img = load_image(d / "img.nlimg")
    good = (d / "img.nlimg").read_bytes()
    (d / "empty.nlimg").write_bytes(b"")
    (d / "trunc.nlimg").write_bytes(good[:len(good) // 2])
    flipped = bytearray(good)
    flipped[-7] ^= 0x10
    (d / "flipped.nlimg").write_bytes(bytes(flipped))
    (d / "noise.nlimg").write_bytes(bytes(range(256)) * 4)
    _forge(img, d / "scale.nlimg", model={**img.model, "in_scale": -1})
    _forge(img, d / "outneuron.nlimg", outputs=[(0, 999, 0)] + img.outputs[1:])
    _forge(img, d / "outcore.nlimg", outputs=[(5, 0, 0)] + img.outputs[1:])
    _forge(img, d / "core999.nlimg", writes=[(999, *img.writes[0][1:])] + img.writes[1:])
    _forge(img, d / "period0.nlimg", writes=_group_period_zero(img))
    (d / "empty.npz").write_bytes(b"")
    (d / "garbage.npz").write_bytes(b"PK\x03\x04 not really a zip")
    (d / "garbage.pth").write_bytes(bytes(range(3, 203)))
    (d / "trunc.npz").write_bytes((d / "small.npz").read_bytes()[:200])
    (d / "trunc.json").write_text((d / "small.json").read_text())
    (d / "badjson.npz").write_bytes((d / "small.npz").read_bytes())
    (d / "badjson.json").write_text("{\"format\": ")
    (d / "empty.csv").write_text("")
    (d / "empty.npy").write_bytes(b"")
    np.save(d / "zero.npy", np.zeros((0, 1)))
    np.save(d / "wide.npy", np.zeros((5, 3)))
    np.save(d / "nan.npy", np.array([[0.5], [np.nan]]))
    np.save(d / "huge.npy", np.array([[0.5], [1e13], [np.inf]]))
    np.save(d / "frac.npy", np.full((4, 1), 2.5))
    np.save(d / "bigint.npy", np.full((4, 1), float(1 << 30)))
    (d / "text.csv").write_text("0.1,abc\n")
    (d / "fabric.json").write_text("{not json")
    (d / "fabric_neg.json").write_text(json.dumps({"config": {"mesh_w": -1, "mesh_h": 1}}))
    (d / "cal.csv").write_text("1,2,3\n4,5,6\n")
    return d


#: (argv with placeholders, text the error line must contain); OUT must never be written.
#: Placeholders: D/<name> is a file of the fixture, OUT a fresh path in an empty folder.
CASES = {
    # -- generate ------------------------------------------------------------------------------
    "generate: no mesh": (["generate", "-o", "OUT"], "give the mesh"),
    "generate: mesh not WxH": (["generate", "--mesh", "2by2", "-o", "OUT"], "not of the form WxH"),
    "generate: mesh 0 wide": (["generate", "--mesh", "0x1", "-o", "OUT"], "mesh_w=0"),
    "generate: mesh too big": (["generate", "--mesh", "17x1", "-o", "OUT"], "mesh_w=17"),
    "generate: neurons 0": (["generate", "--mesh", "1x1", "--neurons", "0", "-o", "OUT"],
                            "neurons=0"),
    "generate: lanes 3": (["generate", "--mesh", "1x1", "--synapse-lanes", "3", "-o", "OUT"],
                          "synapse_lanes=3"),
    "generate: bad top": (["generate", "--mesh", "1x1", "--top", "a b", "-o", "OUT"],
                          "not a Verilog module name"),
    "generate: output folder missing": (["generate", "--mesh", "1x1", "-o", "MISSING/f.v"],
                                        "no such file"),
    "generate: output is a folder": (["generate", "--mesh", "1x1", "-o", "D"], "is a folder"),
    "generate: fabric not JSON": (["generate", "--fabric", "D/fabric.json", "-o", "OUT"],
                                  "not JSON"),
    "generate: fabric negative": (["generate", "--fabric", "D/fabric_neg.json", "-o", "OUT"],
                                  "mesh_w=-1"),
    "generate: fabric missing": (["generate", "--fabric", "D/nope.json", "-o", "OUT"],
                                 "no such file"),
    # -- compile -------------------------------------------------------------------------------
    "compile: missing model": (["compile", "D/nope", "-o", "OUT"], "no such file"),
    "compile: missing image": (["compile", "D/nope.nlimg", "-o", "OUT"], "nope.nlimg: no such"),
    "compile: image given": (["compile", "D/img.nlimg", "-o", "OUT"], "is a config image"),
    "compile: 0-byte npz": (["compile", "D/empty.npz", "-o", "OUT"], "not a .npz archive"),
    "compile: garbage npz": (["compile", "D/garbage.npz", "-o", "OUT"], "not a .npz archive"),
    "compile: garbage pth": (["compile", "D/garbage.pth", "-o", "OUT"],
                             "not a torch checkpoint NeuroLoom can read"),
    "compile: truncated npz": (["compile", "D/trunc", "-o", "OUT"], "not a .npz archive"),
    "compile: broken json": (["compile", "D/badjson", "-o", "OUT"], "not valid JSON"),
    "compile: overwrite model": (["compile", "D/small", "-o", "D/small.npz"],
                                 "would overwrite the model"),
    "compile: overwrite model json": (["compile", "D/small", "-o", "D/small.json"],
                                      "would overwrite the model"),
    "compile: full disk": (["compile", "D/small", "-o", "/dev/full", "--mesh", "1x1"],
                           "/dev/full: no space left on device"),
    "compile: output folder missing": (["compile", "D/small", "-o", "MISSING/x.nlimg"],
                                       "no such file"),
    "compile: mesh too small": (["compile", "D/small", "-o", "OUT", "--mesh", "1x1",
                                 "--neurons", "8"], "neurons"),
    "compile: bad mesh": (["compile", "D/small", "-o", "OUT", "--mesh", "2x"], "WxH"),
    "compile: mesh and mesh-w": (["compile", "D/small", "-o", "OUT", "--mesh", "1x1",
                                  "--mesh-w", "2"], "not both"),
    "compile: activation on own model": (["compile", "D/small", "-o", "OUT", "--activation",
                                          "relu"], "describe Gu checkpoints"),
    "compile: unknown calibration": (["compile", "D/float", "-o", "OUT", "--calibrate", "x"],
                                     "neither a data set"),
    "compile: calibration of another width": (["compile", "D/float", "-o", "OUT",
                                               "--calibrate", "D/cal.csv"], "cal.csv"),
    "compile: calibrate a quantized model": (["compile", "D/small", "-o", "OUT",
                                              "--calibrate", "digits"], "needs no calibration"),
    # -- info ----------------------------------------------------------------------------------
    "info: missing": (["info", "D/nope.nlimg"], "no such file"),
    "info: empty image": (["info", "D/empty.nlimg"], "truncated"),
    "info: truncated image": (["info", "D/trunc.nlimg"], "truncated"),
    "info: bit flip": (["info", "D/flipped.nlimg"], "checksum mismatch"),
    "info: noise": (["info", "D/noise.nlimg"], "not a NeuroLoom config image"),
    "info: forged in_scale": (["info", "D/scale.nlimg"], "model.in_scale = -1"),
    "info: forged output neuron": (["info", "D/outneuron.nlimg"], "outputs[0].neuron = 999"),
    "info: forged output core": (["info", "D/outcore.nlimg"], "outputs[0].core = 5"),
    "info: forged write to core 999": (["info", "D/core999.nlimg"], "writes[0].core = 999"),
    "info: forged period 0": (["info", "D/period0.nlimg"], "period = 0 must be at least 1"),
    "info: calibrate an image": (["info", "D/img.nlimg", "--calibrate", "digits"],
                                 "--calibrate describe(s) how a model is imported"),
    "eval: activation on an image": (["eval", "D/img.nlimg", "--activation", "relu"],
                                     "is a config image, already compiled"),
    "info: mapping on an image": (["info", "D/img.nlimg", "--mapping", "per-mode"],
                                  "--mapping describe(s) how a model is imported, quantized or "
                                  "compiled"),
    "info: default mapping on an image": (["info", "D/img.nlimg", "--mapping", "channel"],
                                          "drop --mapping"),
    "eval: mapping on an image": (["eval", "D/img.nlimg", "--mapping", "channel", "--limit",
                                   "2"], "img.nlimg is a config image, already compiled: drop "
                                         "--mapping"),
    "info: pooling on an image": (["info", "D/img.nlimg", "--pooling", "sum"], "drop --pooling"),
    "eval: pooling and mapping on an image": (["eval", "D/img.nlimg", "--pooling", "sum",
                                               "--mapping", "per-mode"],
                                              "drop --pooling and --mapping"),
    "info: image for another fabric": (["info", "D/img.nlimg", "--mesh", "2x2"],
                                       "compiled for another fabric"),
    # -- run -----------------------------------------------------------------------------------
    "run: no input": (["run", "D/img.nlimg"], "exactly one of --input FILE or --sample N"),
    "run: both inputs": (["run", "D/img.nlimg", "--sample", "0", "--input", "D/frac.npy"],
                         "exactly one"),
    "run: sample out of range": (["run", "D/img.nlimg", "--sample", "9999"], "--sample 9999"),
    "run: negative sample": (["run", "D/img.nlimg", "--sample", "-1"], "--sample -1"),
    "run: missing tokens": (["run", "D/img.nlimg", "--input", "D/nope.npy"], "no such file"),
    "run: empty csv": (["run", "D/img.nlimg", "--input", "D/empty.csv"], "no tokens"),
    "run: 0-byte npy": (["run", "D/img.nlimg", "--input", "D/empty.npy"], "not a .npy file"),
    "run: zero-length tokens": (["run", "D/img.nlimg", "--input", "D/zero.npy"], "no tokens"),
    "run: wrong d_in": (["run", "D/img.nlimg", "--input", "D/wide.npy"], "(5, 3)"),
    "run: text in csv": (["run", "D/img.nlimg", "--input", "D/text.csv"], "text.csv"),
    "run: NaN token": (["run", "D/img.nlimg", "--input", "D/nan.npy"], "NaN"),
    "run: saturation error": (["run", "D/img.nlimg", "--input", "D/huge.npy", "--saturation",
                               "error"], "2 of 3 token values saturate"),
    "run: fractional payloads": (["run", "D/img.nlimg", "--input", "D/frac.npy", "--payloads"],
                                 "non-integer"),
    "run: payloads out of range": (["run", "D/img.nlimg", "--input", "D/bigint.npy",
                                    "--payloads"], "outside the 24-bit payload range"),
    "run: forged in_scale": (["run", "D/scale.nlimg", "--sample", "0"], "model.in_scale"),
    "run: forged period 0": (["run", "D/period0.nlimg", "--sample", "0"], "period = 0"),
    "run: truncated image": (["run", "D/trunc.nlimg", "--sample", "0"], "truncated"),
    "run: serial without port": (["run", "D/img.nlimg", "--sample", "0", "--backend", "serial"],
                                 "needs --port"),
    "run: port without serial": (["run", "D/img.nlimg", "--sample", "0", "--port", "x"],
                                 "need --backend serial"),
    "run: waves on golden": (["run", "D/img.nlimg", "--sample", "0", "--waves"],
                             "--waves needs --backend verilator"),
    "run: neurons mismatch": (["run", "D/img.nlimg", "--sample", "0", "--neurons", "128"],
                              "neurons=256 in the image"),
    # -- eval ----------------------------------------------------------------------------------
    "eval: limit 0": (["eval", "D/img.nlimg", "--limit", "0"], "--limit 0"),
    "eval: limit -1": (["eval", "D/img.nlimg", "--limit", "-1"], "--limit -1"),
    "eval: batch 0": (["eval", "D/img.nlimg", "--batch", "0"], "--batch 0"),
    "eval: missing": (["eval", "D/nope.nlimg"], "no such file"),
    "eval: forged output neuron": (["eval", "D/outneuron.nlimg", "--limit", "2"],
                                   "outputs[0].neuron"),
    "eval: bit flip": (["eval", "D/flipped.nlimg"], "checksum mismatch"),
    "eval: unknown dataset": (["eval", "D/img.nlimg", "--dataset", "imagenet"],
                              "unknown dataset"),
    "eval: mnist without folder": (["eval", "D/img.nlimg", "--dataset", "mnist"],
                                   "needs a folder"),
    "eval: mnist missing folder": (["eval", "D/img.nlimg", "--dataset", "mnist", "D/nope"],
                                   "no such folder"),
    "eval: mesh mismatch": (["eval", "D/img.nlimg", "--mesh", "2x2"],
                            "compiled for another fabric"),
    # -- demo ----------------------------------------------------------------------------------
    "demo: limit 0": (["demo", "--backend", "golden", "--limit", "0"], "--limit 0"),
    "demo: limit -1": (["demo", "--backend", "golden", "--limit", "-1"], "--limit -1"),
    "demo: waves on golden": (["demo", "--backend", "golden", "--waves"],
                              "--waves needs --backend verilator"),
    "demo: clock on golden": (["demo", "--backend", "golden", "--clock", "50"],
                              "--clock"),
    "demo: clock 0": (["demo", "--backend", "verilator", "--clock", "0"], "--clock 0"),
    "demo: mesh too small": (["demo", "--backend", "golden", "--mesh", "1x1", "--neurons", "8"],
                             "neurons"),
    "demo: bad mesh": (["demo", "--backend", "golden", "--mesh", "x"], "WxH"),
    # -- train ---------------------------------------------------------------------------------
    "train: epochs -1": (["train", "--epochs", "-1"], "--epochs -1"),
    "train: H 0": (["train", "-H", "0"], "-H 0"),
    "train: batch 0": (["train", "--batch", "0"], "--batch 0"),
    "train: unknown dataset": (["train", "--dataset", "imagenet"], "unknown dataset"),
    "train: output folder missing": (["train", "--out", "MISSING/m"],
                                     "missing: no such folder for --out"),
    "train: learning rate 0": (["train", "--lr", "0"], "--lr 0"),
    "train: bad fabric": (["train", "--state-width", "4"], "state_width=4"),
    # -- fpga ----------------------------------------------------------------------------------
    "fpga build: no mesh": (["fpga", "build", "-o", "OUT"], "give the mesh"),
    "fpga build: seeds 0": (["fpga", "build", "--mesh", "1x1", "--seeds", "0", "-o", "OUT"],
                            "--seeds 0"),
    "fpga build: clock 0": (["fpga", "build", "--mesh", "1x1", "--clock", "0", "-o", "OUT"],
                            "--clock 0"),
    "fpga build: output is a file": (["fpga", "build", "--mesh", "1x1", "-o", "D/small.npz"],
                                     "is a file"),
    "fpga program: missing bitstream": (["fpga", "program", "D/nope.bit"], "nope.bit"),
}

#: argparse errors (exit 2): unknown choices and malformed numbers
USAGE_CASES = {
    "generate: neurons not a number": ["generate", "--mesh", "1x1", "--neurons", "many",
                                       "-o", "OUT"],
    "run: unknown backend": ["run", "D/img.nlimg", "--sample", "0", "--backend", "fpga"],
    "run: unknown saturation policy": ["run", "D/img.nlimg", "--sample", "0", "--saturation",
                                       "clip"],
    "eval: limit not a number": ["eval", "D/img.nlimg", "--limit", "1.5"],
    "train: unknown option": ["train", "--epoch", "3"],
    "compile: no output": ["compile", "D/small"],
    "fpga: unknown board": ["fpga", "build", "--mesh", "1x1", "--board", "zx81", "-o", "OUT"],
}


def _digest(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.is_file()}


def _argv(argv, files: Path, out: Path) -> list[str]:
    def sub(a: str) -> str:
        if a == "OUT":
            return str(out)
        if a == "D":
            return str(files)
        if a.startswith("D/"):
            return str(files / a[2:])
        if a.startswith("MISSING/"):
            return str(out.parent / "missing" / a[8:])
        return a
    return [sub(a) for a in argv]


def _check(argv, files, tmp_path, capsys, code):
    out = tmp_path / "out" / "result.nlimg"
    out.parent.mkdir()
    before = _digest(files)
    capsys.readouterr()
    if code == 2:
        with pytest.raises(SystemExit) as ei:
            main(_argv(argv, files, out))
        rc = ei.value.code
    else:
        rc = main(_argv(argv, files, out))
    got = capsys.readouterr()
    lines = got.err.strip().splitlines()
    assert rc == code, (rc, got.err)
    assert "Traceback" not in got.err + got.out, got.err
    assert len(lines) == 1 and lines[0].startswith("neuroloom"), got.err
    assert list(out.parent.iterdir()) == [], f"wrote {list(out.parent.iterdir())}"
    assert _digest(files) == before, "an input file was changed"
    return lines[0]


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_clean_line(case, files, tmp_path, capsys):
    argv, needle = CASES[case]
    line = _check(argv, files, tmp_path, capsys, 1)
    assert line.startswith("neuroloom: error: "), line
    assert needle in line, (needle, line)
    if "D/" in " ".join(argv) and "nope" in " ".join(argv):
        assert "nope" in line, line                         # the missing file is named


@pytest.mark.parametrize("case", list(USAGE_CASES))
def test_bad_usage_exits_2(case, files, tmp_path, capsys):
    line = _check(USAGE_CASES[case], files, tmp_path, capsys, 2)
    assert "error:" in line and "see 'neuroloom" in line, line


def test_saturating_tokens_warn_and_never_flip_sign(files, capsys):
    """Huge and infinite token values run (warned, one line) and land on the top payload: the
    same logits as the largest value that fits, never those of the most negative payload."""
    img = str(files / "img.nlimg")
    scale = load_image(files / "img.nlimg").model["in_scale"]
    top = ((1 << 23) - 1) / scale
    np.save(files / "top.npy", np.array([[0.5], [top], [top]]))
    capsys.readouterr()
    assert main(["run", img, "--input", str(files / "huge.npy")]) == 0
    huge = capsys.readouterr()
    assert huge.err.strip().splitlines() == [huge.err.strip()], huge.err
    assert huge.err.startswith("neuroloom: warning: 2 of 3 token values saturate"), huge.err
    assert main(["run", img, "--input", str(files / "top.npy")]) == 0
    fits = capsys.readouterr()
    assert fits.err == "" and fits.out == huge.out, (fits, huge)
    (files / "top.npy").unlink()


def test_image_checksum_is_what_the_forgeries_pass(files):
    """The forged images carry a valid CRC (so only the semantic check refuses them)."""
    for name in ("scale", "outneuron", "outcore", "core999", "period0"):
        data = (files / f"{name}.nlimg").read_bytes()
        assert zlib.crc32(data[24:]) == int.from_bytes(data[20:24], "little"), name


def test_mapping_and_pooling_still_apply_to_a_model(files, tmp_path, capsys):
    """--mapping and --pooling default to None (so an image given with them is refused): a
    model given without them is compiled with the defaults (channel: L + 2 stages for this
    one-layer model), with them as asked (per-mode: 3L + 2)."""
    small = str(files / "small")
    capsys.readouterr()
    assert main(["compile", small, "-o", str(tmp_path / "d.nlimg"), "--mesh", "1x1"]) == 0
    assert "mapping channel" in capsys.readouterr().out
    assert len(load_image(tmp_path / "d.nlimg").stages) == 1 + 2
    assert main(["compile", small, "-o", str(tmp_path / "p.nlimg"), "--mesh", "1x1",
                 "--mapping", "per-mode", "--pooling", "sum"]) == 0
    assert "mapping per-mode" in capsys.readouterr().out
    assert len(load_image(tmp_path / "p.nlimg").stages) == 3 * 1 + 2
    assert main(["info", small, "--mapping", "per-mode", "--pooling", "sum"]) == 0
    assert main(["eval", small, "--mapping", "per-mode", "--limit", "2"]) == 0
