"""The chunked testbench harness around the host port (``sim/link_harness.py``), in amaranth.sim
around a stand-in device (a FIFO with random input stalls): every word arrives once, in order,
with its TLAST; the device sees a stream without bubbles while chunks are available; a chunk
loaded while the harness is full raises ``in_overflow``."""

import random

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In
from amaranth.sim import Simulator

from neuroloom.hw.fabric import HOST_PORTS
from neuroloom.sim.link_harness import LinkHarness


class Echo(wiring.Component):
    """Stand-in for the fabric, with its host ports (``neuroloom.hw.fabric.HOST_PORTS``): the words
    it accepts come back out of a small FIFO; input ready is withheld on the cycles ``stall``
    (an extra input) is high."""

    def __init__(self):
        super().__init__({**HOST_PORTS, "stall": In(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.q = q = SyncFIFO(width=33, depth=4)
        m.d.comb += [q.w_data.eq(self.s_axis_tdata | self.s_axis_tlast << 32),
                     q.w_en.eq(self.s_axis_tvalid & ~self.stall),
                     self.s_axis_tready.eq(q.w_rdy & ~self.stall),
                     self.m_axis_tdata.eq(q.r_data[:32]), self.m_axis_tlast.eq(q.r_data[32]),
                     self.m_axis_tvalid.eq(q.r_rdy), q.r_en.eq(self.m_axis_tready)]
        return m


def run(words, lasts, chunk, seed, stall_p, max_cycles=20_000):
    """Feed ``words`` through the harness like the cocotb link does; returns (words out, lasts
    out, number of cycles the device's input was idle between the first and the last word)."""
    echo = Echo()
    dut = LinkHarness(echo, chunk=chunk)
    rng = random.Random(seed)
    out, out_last = [], []
    valid_trace = []

    async def host(ctx):
        i = 0
        for _ in range(max_cycles):
            ctx.set(echo.stall, int(rng.random() < stall_p))
            ctx.set(dut.in_load, 0)
            ctx.set(dut.out_ack, 0)
            if i < len(words) and ctx.get(dut.in_ready):
                n = min(rng.randint(1, chunk), len(words) - i)
                ctx.set(dut.in_data, sum(w << 32 * j for j, w in enumerate(words[i:i + n])))
                ctx.set(dut.in_last, sum(int(b) << j for j, b in enumerate(lasts[i:i + n])))
                ctx.set(dut.in_count, n)
                ctx.set(dut.in_load, 1)
                i += n
            if ctx.get(dut.out_hold):
                n = ctx.get(dut.out_count)
                data, last = ctx.get(dut.out_data), ctx.get(dut.out_last)
                for j in range(chunk - n, chunk):
                    out.append(data >> 32 * j & 0xFFFFFFFF)
                    out_last.append(bool(last >> j & 1))
                ctx.set(dut.out_ack, 1)
            _, _, v = await ctx.tick().sample(echo.s_axis_tvalid)
            valid_trace.append(v)
            if len(out) == len(words):
                break
        assert not ctx.get(dut.in_overflow)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(host)
    sim.run()
    on = [k for k, v in enumerate(valid_trace) if v]
    bubbles = sum(1 for v in valid_trace[on[0]:on[-1]] if not v) if on else 0
    return out, out_last, bubbles


@pytest.mark.parametrize("chunk", [1, 3, 8])
@pytest.mark.parametrize("seed", range(3))
def test_words_arrive_once_in_order_with_tlast(chunk, seed):
    rng = random.Random(100 + seed)
    words = [rng.getrandbits(32) for _ in range(150)]
    lasts = [rng.random() < 0.2 for _ in words[:-1]] + [True]   # frames end with TLAST
    got, got_last, _ = run(words, lasts, chunk, seed, stall_p=0.3)
    assert got == words
    assert got_last == lasts


def test_no_bubbles_when_the_device_is_always_ready():
    rng = random.Random(7)
    words = [rng.getrandbits(32) for _ in range(200)]
    lasts = [k % 17 == 16 or k == 199 for k in range(200)]
    got, _, bubbles = run(words, lasts, chunk=8, seed=1, stall_p=0.0)
    assert got == words
    assert bubbles == 0


def test_load_while_full_is_flagged():
    echo = Echo()
    dut = LinkHarness(echo, chunk=2)

    async def host(ctx):
        ctx.set(echo.stall, 1)                  # nothing drains: A then B fill up
        for _ in range(3):
            ctx.set(dut.in_data, 5)
            ctx.set(dut.in_count, 1)
            ctx.set(dut.in_load, 1)
            await ctx.tick()
        assert ctx.get(dut.in_ready) == 0
        assert ctx.get(dut.in_overflow) == 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(host)
    sim.run()


def test_gateware_edit_gives_a_new_fabric_build_folder(monkeypatch):
    """The Verilator link's folders are keyed on the generated Verilog, so an edit of any
    gateware file (here: the NoC arbiter, which no hand-kept file list has to name) moves the
    fabric to a new build folder with no model built in it; undoing the edit finds the old
    folder again."""
    from amaranth.hdl import Signal

    from neuroloom.contract.config import FabricConfig
    from neuroloom.hw.noc.arbiter import RoundRobinOneHot
    from neuroloom.sim import verilator_link

    cfg = FabricConfig(mesh_w=1, mesh_h=1, neurons=16, axons=16, synapse_rows=32,
                       route_words=32, ucode_depth=32, groups=4)
    before = verilator_link.harness_verilog(cfg, fresh=True)
    original = RoundRobinOneHot.elaborate

    def edited(self, platform):
        m = original(self, platform)
        extra = Signal(name="edit_marker")
        m.d.sync += extra.eq(~extra)
        return m

    monkeypatch.setattr(RoundRobinOneHot, "elaborate", edited)
    after = verilator_link.harness_verilog(cfg, fresh=True)
    assert after.parent != before.parent, "an RTL edit reused the old build folder"
    assert "edit_marker" in after.read_text() and "edit_marker" not in before.read_text()
    assert verilator_link.sim_build_dir(cfg).parent == after.parent
    assert not verilator_link.is_built(cfg)
    monkeypatch.undo()
    assert verilator_link.harness_verilog(cfg, fresh=True) == before
