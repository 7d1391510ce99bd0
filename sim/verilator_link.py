"""Verilator link: the fabric RTL behind the host driver's framed transport.

:class:`VerilatorLink` generates the fabric's Verilog for a :class:`FabricConfig` (cached under
``build/fabric/<hash>/`` by configuration and RTL source digest), builds it with Verilator once
(cached by ``sim.tools.run_cocotb``), and runs the simulation in a background thread. The cocotb
test in this module (:func:`link_server`) drives the AXI4-Stream host port cycle by cycle and
serves ``exchange(words) -> words`` requests that arrive over a Unix socket in the build folder,
so ``firmware.transports.FramedTransport(VerilatorLink(cfg))`` is the same driver code that runs
against the golden model and a board.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
from pathlib import Path

from firmware.hostproto import OUTPUT
from hw.config import FabricConfig

from . import tools

__all__ = ["VerilatorLink", "fabric_verilog"]

_HW_DIR = Path(__file__).resolve().parent.parent / "hw"
_ENV_SOCK = "NEUROLOOM_LINK_SOCKET"


def _rtl_digest() -> str:
    h = hashlib.sha256()
    for p in sorted(_HW_DIR.rglob("*.py")):
        h.update(p.relative_to(_HW_DIR).as_posix().encode())
        h.update(p.read_bytes())
    h.update((Path(__file__).parent.parent / "firmware" / "hostproto.py").read_bytes())
    return h.hexdigest()[:16]


def fabric_verilog(cfg: FabricConfig, out: Path | None = None) -> Path:
    """Write (or reuse) the fabric's Verilog for ``cfg``; returns the file's path."""
    key = tools.config_hash({"cfg": cfg.to_dict(), "rtl": _rtl_digest()})
    path = out or tools.build_dir("fabric", key) / "fabric.v"
    if not path.exists():
        from hw.fabric import Fabric
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(tools.to_verilog(Fabric(cfg), "fabric"))
        tmp.replace(path)
        (path.parent / "fabric.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    return path


def _send(sock: socket.socket, obj) -> None:
    sock.sendall(json.dumps(obj).encode() + b"\n")


def _recv(f) -> object:
    line = f.readline()
    if not line:
        raise ConnectionError("the simulation closed the link")
    return json.loads(line)


class VerilatorLink:
    """A framed link to the fabric RTL simulated by Verilator (see module docstring).

    Parameters
    ----------
    cfg : the fabric to generate and simulate
    waves : write an FST waveform of the whole session into the build folder
    """

    def __init__(self, cfg: FabricConfig, *, waves: bool = False, timeout: float = 600.0):
        self.cfg = cfg
        self.verilog = fabric_verilog(cfg)
        self.build = self.verilog.parent / ("sim_waves" if waves else "sim")
        self.build.mkdir(parents=True, exist_ok=True)
        sock_path = self.build / f"link-{os.getpid()}-{id(self)}.sock"
        sock_path.unlink(missing_ok=True)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(sock_path))
        server.listen(1)
        server.settimeout(1.0)
        self._error: BaseException | None = None

        def simulate():
            try:
                tools.run_cocotb("fabric", [self.verilog], __name__, self.build, waves=waves,
                                 extra_env={_ENV_SOCK: str(sock_path)}, testcase="link_server")
            except BaseException as e:      # reported by exchange()/close()
                self._error = e

        self._thread = threading.Thread(target=simulate, daemon=True)
        self._thread.start()
        waited = 0.0
        try:
            while True:
                try:
                    self._sock, _ = server.accept()
                    break
                except TimeoutError:
                    waited += 1.0
                    if not self._thread.is_alive() or waited > timeout:
                        raise RuntimeError(
                            "the Verilator simulation did not start"
                            + (f": {self._error}" if self._error else
                               f" within {timeout:.0f} s")) from None
        finally:
            server.close()
            sock_path.unlink(missing_ok=True)
        self._file = self._sock.makefile("rb")
        self.cycles = 0

    def exchange(self, words: list[int]) -> list[int]:
        """Send one command frame; returns every word up to its response frame."""
        try:
            _send(self._sock, {"words": [int(w) for w in words]})
            reply = _recv(self._file)
        except (OSError, ConnectionError) as e:
            raise RuntimeError(f"Verilator link failed: {self._error or e}") from None
        self.cycles = reply["cycles"]
        return reply["words"]

    def close(self) -> None:
        if self._thread.is_alive():
            try:
                _send(self._sock, {"quit": True})
            except OSError:
                pass
            self._thread.join(timeout=60)
        self._sock.close()
        if self._error:
            raise RuntimeError(f"Verilator simulation failed: {self._error}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# -- the cocotb side (runs inside the simulator process)

def _is_response(header: int) -> bool:
    return (header & 0xFF) != OUTPUT        # OUTPUT frames come before the response


try:                                        # cocotb is importable only where it is installed
    import cocotb
    from cocotb.clock import Clock
    from cocotb.simtime import get_sim_time
    from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge
except ImportError:                         # pragma: no cover
    cocotb = None

if cocotb is not None:
    @cocotb.test()
    async def link_server(dut):
        """Serve exchange requests from the socket until told to quit."""
        Clock(dut.clk, 10, unit="ns").start()
        dut.rst.value = 1
        dut.s_axis_tvalid.value = 0
        dut.s_axis_tlast.value = 0
        dut.s_axis_tdata.value = 0
        dut.m_axis_tready.value = 1
        for _ in range(3):
            await RisingEdge(dut.clk)
        dut.rst.value = 0
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(os.environ[_ENV_SOCK])
        f = sock.makefile("rb")
        t0 = get_sim_time(unit="ns")
        while True:
            msg = _recv(f)                  # blocks the simulation: the fabric waits too
            if msg.get("quit"):
                break
            words = msg["words"]
            i, got, frame_start = 0, [], 0
            done = False
            while not done:
                await FallingEdge(dut.clk)
                sending = i < len(words)
                if sending:
                    dut.s_axis_tvalid.value = 1
                    dut.s_axis_tdata.value = words[i]
                    dut.s_axis_tlast.value = int(i == len(words) - 1)
                else:
                    dut.s_axis_tvalid.value = 0
                await ReadOnly()
                if sending and dut.s_axis_tready.value == 1:
                    i += 1
                if dut.m_axis_tvalid.value == 1:
                    got.append(int(dut.m_axis_tdata.value))
                    if dut.m_axis_tlast.value == 1:
                        done = _is_response(got[frame_start])
                        frame_start = len(got)
                elif not sending:
                    # nothing to send, nothing coming: sleep until the fabric answers (the
                    # cycles in between run in Verilator without a Python callback each)
                    await RisingEdge(dut.m_axis_tvalid)
                    continue
                await RisingEdge(dut.clk)
            cycles = round((get_sim_time(unit="ns") - t0) / 10)
            _send(sock, {"words": got, "cycles": cycles})
        sock.close()
