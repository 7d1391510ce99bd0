"""The issue's end-to-end check: the board's logic (fabric + UART bridge, every bit on the
simulated UART lines) under Verilator, its lines on a pseudo-terminal, and the unmodified
serial transport opening that pty with pyserial. Models run bit-exact with the quantized
reference, counters equal the golden model's, and a damaged byte stream (noise, a truncated
frame, a lost END) gives ERROR frames or a clean timeout, after which the model still runs
bit-exact."""

import time

import numpy as np
import pytest

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.hostproto import ERROR, Cmd, decode_frames, encode_frame
from neuroloom.firmware.compiler import compile_model, from_compiled, random_qmodel
from neuroloom.firmware.driver import Driver, DriverError, open_transport
from neuroloom.firmware.qmodel import qforward
from neuroloom.firmware.serial import FrameReader, SerialLink, encode_bytes
from neuroloom.fpga.uart_sim import FABRIC_PERIOD_PS, UART_PERIOD_PS, VerilatorBoard
from tests.support.runs import check_both_schedules

pytestmark = pytest.mark.rtl

SMALL = FabricConfig(mesh_w=1, mesh_h=1, neurons=32, axons=32, synapse_rows=128, route_words=64,
                     ucode_depth=32)


@pytest.fixture(scope="module")
def small_board():
    """The small fabric's board on a pty, the UART clock faster than the fabric clock (the
    default periods); one simulator for the tests of this module."""
    assert UART_PERIOD_PS < FABRIC_PERIOD_PS
    with VerilatorBoard(SMALL) as board:
        yield board


def test_small_model_on_the_simulated_board_and_a_damaged_line(small_board):
    model = random_qmodel(4, 2, 1, d_in=2, classes=3, seed=5, cfg=SMALL)
    img = from_compiled(compile_model(model, SMALL, mode="pipelined"))
    x = model.quantize_input(np.random.default_rng(4).uniform(-9, 9, (2, 5, 2)), SMALL)
    ref = qforward(model, x, SMALL)
    board = small_board
    t = open_transport("serial", port=board.port, timeout=5)
    drv = Driver(t)
    drv.load(img)
    check_both_schedules(drv, img, x, ref, "board")
    t.close()

    link = SerialLink(board.port, timeout=3)
    port = link.port
    # noise on an idle line, then a good command: the noise is a damaged frame (ERROR)
    port.write(bytes([0x5A, 0x13, 0xC0]))
    port.flush()
    status = encode_frame(Cmd.STATUS, [], seq=9)
    answer = decode_frames(link.exchange(status))
    assert [(f.opcode, f.seq) for f in answer] == [(Cmd.STATUS | 0x80, 9)], answer
    # a truncated frame (no END): the next command's abort closes it, the host drops the
    # ERROR answer of the truncated one (another seq) and gets its own answer
    port.write(encode_bytes(encode_frame(Cmd.RUN, [1], seq=10))[:-3])
    port.flush()
    answer = decode_frames(link.exchange(encode_frame(Cmd.STATUS, [], seq=11)))
    assert [(f.opcode, f.seq) for f in answer] == [(Cmd.STATUS | 0x80, 11)], answer
    # a frame with a byte changed: ERROR with its seq, which the driver reports
    bad = bytearray(encode_bytes(encode_frame(Cmd.WRITE, [0x100, 7], seq=12)))
    bad[8] ^= 0x40
    port.write(bytes(bad))
    port.flush()
    got, deadline = b"", time.monotonic() + 30
    while 0xC0 not in got:
        assert time.monotonic() < deadline, f"no ERROR frame for a damaged frame: {got.hex()}"
        got += port.read(64)
    frames = [decode_frames(f)[0] for f in FrameReader().feed(got)]
    assert [(f.opcode, f.seq, f.payload[0]) for f in frames] == [(ERROR, 12, 4)], frames
    # a command whose END is lost: a clean timeout naming the port, then the model again
    with pytest.raises(DriverError, match=r"no answer from the board on /dev/pts/\d+ to "
                                          r"command 0x07 \(seq 13\) within 3 s"):
        class Truncating:
            def __init__(self, inner):
                self.inner = inner

            def __getattr__(self, name):
                return getattr(self.inner, name)

            def write(self, data):
                return self.inner.write(data[:-1])
        link.port = Truncating(port)
        link.exchange(encode_frame(Cmd.STATUS, [], seq=13))
    link.port = port
    # the host at the wrong baud: the fabric hears garbage, the host a clean error
    board.wrong_baud()
    with pytest.raises(DriverError, match=r"no answer from the board"):
        link.exchange(encode_frame(Cmd.STATUS, [], seq=14))
    board.wrong_baud(False)
    link.close()
    t = open_transport("serial", port=board.port, timeout=5)
    drv = Driver(t)
    drv.load(img)
    check_both_schedules(drv, img, x, ref, "board")
    t.close()


def test_eval_on_the_simulated_board(small_board, tmp_path, capsys, monkeypatch):
    """``neuroloom eval --backend serial`` through the pty (the same build as above): the board
    lines are bit-exact with golden and report the steps run and the fabric's synaptic
    operations (those of the golden model), the host's wall time, and no clock cycles."""
    import functools

    from neuroloom.cli import command_module, main
    from neuroloom.contract.image import save
    from neuroloom.contract.transport import ARCH_COUNTERS, Counter
    from neuroloom.firmware.driver import golden_driver
    from neuroloom.firmware.evaluate import serial_driver

    model = random_qmodel(4, 2, 1, d_in=2, classes=3, seed=5, cfg=SMALL)
    img = from_compiled(compile_model(model, SMALL, mode="pipelined"))
    save(img, tmp_path / "m.nlimg")
    rng = np.random.default_rng(7)
    x, y = rng.uniform(-9, 9, (3, 4, 2)), np.array([0, 1, 2])
    np.savez(tmp_path / "d.npz", X_train=x, y_train=y, X_test=x, y_test=y)
    # the simulated UART is ~1000x slower than a board's: a long frame is seconds of silence
    monkeypatch.setattr(command_module("eval"), "serial_driver",
                        functools.partial(serial_driver, timeout=30))
    assert main(["eval", str(tmp_path / "m.nlimg"), "--dataset", str(tmp_path / "d.npz"),
                 "--backend", "serial", "--port", small_board.port, "--mode", "pipelined",
                 "--neurons", "32", "--axons", "32", "--synapse-rows", "128",
                 "--route-words", "64", "--ucode-depth", "32"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("board accuracy"))
    assert "board == golden bit-exact on 3/3 samples" in line, out
    assert "cycles" not in line and "a board counts no clock cycles" in out, out
    gold = golden_driver(1)
    gold.load(img)
    xq = gold.quantize(x)
    runs = [gold.run(xq[b:b + 1], mode="pipelined") for b in range(3)]
    col = ARCH_COUNTERS.index(Counter.SYN_OPS)
    steps = sum(r.steps for r in runs) / 12
    syn_ops = sum(int(r.counters[:, col].sum()) for r in runs) / 12
    assert f"{steps:.2f} steps/token, {syn_ops:.1f} syn ops/token" in line, (line, steps, syn_ops)


@pytest.mark.slow
def test_shipped_digits_model_on_the_simulated_board(capsys, monkeypatch):
    """The shipped model on the default 2x2 fabric (its own Verilator build, minutes), the
    fabric clock faster than the UART clock; then ``neuroloom demo --backend serial`` on it."""
    import functools

    from neuroloom.cli import command_module, main
    from neuroloom.firmware.datasets import load_dataset
    from neuroloom.firmware.evaluate import serial_driver
    from neuroloom.firmware.importer import load_model
    cfg = FabricConfig()
    model = load_model("firmware/models/digits-q")
    img = from_compiled(compile_model(model, cfg, mode="pipelined"))
    x = model.quantize_input(load_dataset("digits").x_test[:2], cfg)
    ref = qforward(model, x, cfg)
    with VerilatorBoard(cfg, fabric_period_ps=UART_PERIOD_PS,
                        uart_period_ps=FABRIC_PERIOD_PS) as board:
        t = open_transport("serial", port=board.port, timeout=10)
        drv = Driver(t)
        drv.load(img)
        check_both_schedules(drv, img, x, ref, "board")
        t.close()
        monkeypatch.setattr(command_module("eval"), "serial_driver",
                            functools.partial(serial_driver, timeout=60))
        assert main(["demo", "--backend", "serial", "--port", board.port, "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("board == golden bit-exact on 2/2 samples") == 2, out
    assert "cycles/token" not in out and "board counts no clock cycles" in out, out
