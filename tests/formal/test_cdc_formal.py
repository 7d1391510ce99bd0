"""Formal proof (yowasp-sby, ``multiclock on``) that :class:`CdcLink` never drops, duplicates or
reorders a payload between two clock domains, and that it catches injected CDC faults.

Model: the writer and reader clocks toggle every ``hw`` / ``hr`` solver steps (a
``$global_clock`` module, from a free initial phase), so each proof fixes a ratio of the two
clocks while their phases run through every alignment. The
synchronizers model uncertain captures and metastable fan-out (``hw/noc/cdc.py``). A writer in
the ``w`` domain sends consecutive tags (free ``valid``, held until ``ready``, as the stream
rules say); the reader in ``r`` takes them with a free ``ready`` and checks:

* every transfer carries the next tag (nothing dropped, duplicated or reordered);
* ``valid`` and ``payload`` are stable from the cycle ``valid`` rose until the transfer;
* no flit is lost silently: while the writer has sent more than the reader took, ``valid`` is
  low for at most ``sync_stages + 1`` consecutive reader cycles (the synchronizer latency plus
  one late capture).

Bounded from the initial (reset) state: a 2-slot FIFO, depth 36 steps (9 reader cycles when the
reader is the slower clock), enough to wrap the pointers. The faults (one synchronizer stage,
binary pointers) must each make the proof fail for at least one ratio. ``-m slow`` adds the
co-prime ratios 2:3 and 3:2 at depth 48.
"""


import pytest
from amaranth.hdl import Assert, ClockDomain, ClockSignal, Elaboratable, Instance, Module, Signal

from neuroloom.hw.noc.cdc import CdcLink
from neuroloom.sim import formal

TAG_BITS = 4

#: the two clocks, toggled every HW / HR solver steps from a free initial phase
CLOCKS_V = """\
module cdc_clocks(output reg clk_w, output reg clk_r);
  parameter HW = 1;
  parameter HR = 1;
  reg [3:0] cw, cr;
  always @($global_clock) begin
    if (cw >= HW - 1) begin cw <= 0; clk_w <= !clk_w; end else cw <= cw + 1;
    if (cr >= HR - 1) begin cr <= 0; clk_r <= !clk_r; end else cr <= cr + 1;
  end
endmodule
"""


def prove_multiclock(name, top, *, ports, depth):
    """A bounded proof with the two clocks of :data:`CLOCKS_V` (``multiclock on``)."""
    return formal.prove(name, top, ports=ports, mode="bmc", depth=depth, solver="yices",
                        verilog=CLOCKS_V)


class CdcProperties(Elaboratable):
    def __init__(self, half_periods, **fifo_options):
        self.half_periods = half_periods
        self.dut = CdcLink(TAG_BITS, depth=2, w_domain="w", r_domain="r", **fifo_options)
        self.w_valid = Signal()         # free: the writer offers a new tag
        self.r_ready = Signal()         # free: the reader takes

    def free_inputs(self):
        return [self.w_valid, self.r_ready]

    def elaborate(self, platform):
        m = Module()
        m.domains.w = ClockDomain("w", reset_less=True)
        m.domains.r = ClockDomain("r", reset_less=True)
        m.submodules.dut = dut = self.dut
        clk_w, clk_r = Signal(), Signal()
        m.submodules.clocks = Instance("cdc_clocks", p_HW=self.half_periods[0],
                                       p_HR=self.half_periods[1], o_clk_w=clk_w, o_clk_r=clk_r)
        m.d.comb += [ClockSignal("w").eq(clk_w), ClockSignal("r").eq(clk_r)]

        # writer: consecutive tags, valid held until the transfer
        sent = Signal(TAG_BITS + 2)
        held = Signal()
        m.d.comb += [dut.i.valid.eq(held | self.w_valid), dut.i.payload.eq(sent[:TAG_BITS])]
        m.d.w += held.eq(dut.i.valid & ~dut.i.ready)
        with m.If(dut.i.valid & dut.i.ready):
            m.d.w += sent.eq(sent + 1)

        # reader: checks
        taken = Signal(TAG_BITS + 2)
        m.d.comb += dut.o.ready.eq(self.r_ready)
        bad_tag, unstable, starved = Signal(), Signal(), Signal()
        was_waiting = Signal()
        last_payload = Signal(TAG_BITS)
        wait = Signal(range(8))
        m.d.r += [was_waiting.eq(dut.o.valid & ~dut.o.ready), last_payload.eq(dut.o.payload)]
        with m.If(dut.o.valid & dut.o.ready):
            m.d.r += taken.eq(taken + 1)
            with m.If(dut.o.payload != taken[:TAG_BITS]):
                m.d.r += bad_tag.eq(1)
        with m.If(was_waiting & (~dut.o.valid | (dut.o.payload != last_payload))):
            m.d.r += unstable.eq(1)
        with m.If((sent != taken) & ~dut.o.valid):
            m.d.r += wait.eq(wait + 1)
            with m.If(wait == dut.sync_stages + 1):
                m.d.r += starved.eq(1)
        with m.Else():
            m.d.r += wait.eq(0)
        m.d.comb += [
            Assert(~bad_tag, "a payload was dropped, duplicated or reordered"),
            Assert(~unstable, "valid or payload changed before the transfer"),
            Assert(~starved, "a payload is inside but valid stays low"),
            Assert((sent - taken)[:TAG_BITS + 2] <= dut.depth, "more payloads inside than slots"),
        ]
        return m


# (writer half period, reader half period) in solver steps: a fast writer, a fast reader
RATIOS = [(1, 2), (2, 1)]
DEPTH = 36


@pytest.mark.parametrize("half_periods", RATIOS, ids=["w2x_faster", "r2x_faster"])
def test_cdc_fifo_proof(half_periods):
    top = CdcProperties(half_periods)
    prove_multiclock(f"cdc_{half_periods[0]}_{half_periods[1]}", top,
                     ports=top.free_inputs(), depth=DEPTH)


@pytest.mark.slow
@pytest.mark.parametrize("half_periods", [(2, 3), (3, 2)], ids=["w1.5x_faster", "r1.5x_faster"])
def test_cdc_fifo_proof_coprime(half_periods):
    # co-prime half periods: the phases of the two clocks drift through every alignment
    top = CdcProperties(half_periods)
    prove_multiclock(f"cdc_{half_periods[0]}_{half_periods[1]}", top,
                     ports=top.free_inputs(), depth=48)


@pytest.mark.parametrize("fault", [dict(sync_stages=1), dict(gray=False)],
                         ids=["one_sync_stage", "binary_pointers"])
def test_cdc_fifo_proof_catches_faults(fault):
    caught = []
    for half_periods in RATIOS:
        top = CdcProperties(half_periods, **fault)
        try:
            prove_multiclock(f"cdc_fault_{half_periods[0]}_{half_periods[1]}", top,
                             ports=top.free_inputs(), depth=DEPTH)
        except formal.ProofFailed as e:
            caught.append(str(e))
            break
    assert caught, f"the proof passed with the fault {fault} injected"
