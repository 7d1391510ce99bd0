"""The serial transport, unmodified, through a pseudo-terminal to a modelled board (the UART
bridge's byte framing in front of the host link reference model over the golden fabric): the
shipped digits model bit-exact, and every kind of line damage a clear DriverError, never a
hang, after which the model runs bit-exact again."""

import time

import numpy as np
import pytest

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.hostproto import Cmd, encode_frame
from neuroloom.firmware.compiler import compile_model, from_compiled
from neuroloom.firmware.datasets import load_dataset
from neuroloom.firmware.driver import Driver, DriverError, open_transport
from neuroloom.firmware.importer import load_model
from neuroloom.firmware.qmodel import qforward
from neuroloom.firmware.serial import FrameReader, SerialLink, SerialTransport, encode_bytes
from neuroloom.fpga.uart_model import BridgeModel, PtyBoard, split_frames
from neuroloom.sim.golden import GoldenFabric
from neuroloom.sim.hostlink_model import HostLinkModel
from neuroloom.sim.transports import GoldenTransport

CFG = FabricConfig()


@pytest.fixture(scope="module")
def digits():
    model = load_model("firmware/models/digits-q")
    img = from_compiled(compile_model(model, CFG, mode="pipelined"))
    x = model.quantize_input(load_dataset("digits").x_test[:2], CFG)
    return model, img, x, qforward(model, x, CFG)


def board(**kw):
    return PtyBoard(HostLinkModel(GoldenFabric(CFG, 1)), **kw)


def test_framing_round_trips_through_the_bridge_model():
    frames = [encode_frame(Cmd.WRITE, [0xC0DBC0DB, 0x000000C0, 0xDBDBDBDB, 7], seq=0xC0),
              encode_frame(Cmd.STATUS, [], seq=0xDB)]
    data = b"".join(encode_bytes(f) for f in frames)
    words, lasts = BridgeModel().feed(data)
    assert (words, lasts) == split_frames([w for f in frames for w in f])
    assert FrameReader().feed(BridgeModel.encode(words, lasts)) == frames


def test_shipped_model_through_the_serial_transport_is_bit_exact(digits):
    model, img, x, ref = digits
    with board() as b:
        t = open_transport("serial", port=b.port, baud=3_000_000, timeout=5)
        assert isinstance(t, SerialTransport)
        drv = Driver(t)
        drv.load(img)
        gold = Driver(GoldenTransport(batch=1))
        gold.load(img)
        for mode in ("pipelined", "fall-through"):
            res = drv.run(x, mode=mode)
            np.testing.assert_array_equal(res.running, ref, err_msg=mode)
            np.testing.assert_array_equal(res.counters, gold.run(x, mode=mode).counters)
        t.close()
        assert t.link.frames_sent > 10


class Damage:
    """Damages the byte at the session index it is armed for (lose it, or change it)."""

    def __init__(self):
        self.at = None
        self.how = b""

    def arm(self, at, how=b""):
        self.at, self.how = at, how

    def __call__(self, index, byte):
        if index == self.at:
            return self.how
        return bytes([byte])


@pytest.mark.parametrize("damage", ["lost byte", "lost END", "noise byte", "flipped bit"])
def test_line_damage_is_a_clear_error_and_the_model_runs_again(digits, damage):
    model, img, x, ref = digits
    hurt = Damage()
    with board(mangle=hurt) as b:
        drv = Driver(SerialTransport(b.port, timeout=0.5))
        drv.load(img)
        # the damage hits the RUN's frame: abort (2 bytes) + header (4) + steps + checksum + END
        drv.transport.clear()
        start = b.received
        index = {"lost byte": start + 7, "lost END": None, "noise byte": start + 3,
                 "flipped bit": start + 8}[damage]
        if damage == "lost END":
            run = encode_bytes(encode_frame(Cmd.RUN, [1], seq=0))
            index = start + len(run) - 1
        how = {"noise byte": b"\x5a\x00", "flipped bit": b"\x10"}.get(damage, b"")
        hurt.arm(index, how)
        t0 = time.monotonic()
        with pytest.raises(DriverError, match=r"RUN answered with ERROR|no answer from the board"):
            drv.transport.run(1)
        assert time.monotonic() - t0 < 5, "the error took too long"
        res = drv.run(x, mode="fall-through")
        np.testing.assert_array_equal(res.running, ref)
        assert b.model.damaged >= (damage != "flipped bit")


def test_no_board_times_out_clearly():
    with board() as b:
        b._stop.set()                      # nobody answers
        b._thread.join()
        link = SerialLink(b.port, timeout=0.3)
        t0 = time.monotonic()
        with pytest.raises(DriverError, match=r"no answer from the board on /dev/pts/\d+ to "
                                              r"command 0x07 \(seq 1\) within 0\.3 s"):
            link.exchange(encode_frame(Cmd.STATUS, [], seq=1))
        assert time.monotonic() - t0 < 2
        link.close()


def test_a_missing_port_is_named():
    with pytest.raises(DriverError, match=r"cannot open serial port '/dev/ttyNOPE9'.*plugged in"):
        SerialLink("/dev/ttyNOPE9")


def test_cli_run_on_a_board_prints_what_the_golden_model_prints(tmp_path, capsys):
    from neuroloom.cli import main
    img = str(tmp_path / "digits.nlimg")
    assert main(["compile", "firmware/models/digits-q", "-o", img]) == 0
    capsys.readouterr()
    assert main(["run", img, "--sample", "3", "--counters"]) == 0
    golden = capsys.readouterr().out
    with board() as b:
        assert main(["run", img, "--sample", "3", "--counters", "--backend", "serial",
                     "--port", b.port, "--baud", "1000000"]) == 0
    assert capsys.readouterr().out == golden


def test_cli_serial_options_are_checked(capsys):
    from neuroloom.cli import main
    assert main(["run", "x.nlimg", "--sample", "0", "--backend", "serial"]) == 1
    assert "--backend serial needs --port" in capsys.readouterr().err
    assert main(["run", "x.nlimg", "--sample", "0", "--port", "/dev/ttyUSB0"]) == 1
    assert "--port and --baud need --backend serial" in capsys.readouterr().err
