"""A registered, serialized I/O ring for measuring one unit's Fmax on its own.

A unit (a neuron core, a router, a fabric shell) is not placed bare: its hundreds of port bits
would not fit the package's pins, the pins would pull its logic across the chip, and
unregistered pins leave paths unconstrained. :class:`IORing` wraps it: every input bit comes
from a flip-flop of a shift chain fed by one pin (``si``), every output bit goes into a
flip-flop of a loadable shift register read out on one pin (``so``). The unit sees registered
inputs and drives registered outputs (what a neighbour built from registers gives it), nothing
can be optimized away, and every path measured is register to register. The reset pin goes
through a flip-flop and, on ECP5, onto a global network (:func:`neuroloom.fpga.ecp5.global_reset`,
as on the boards), so the reset is a register-to-register path too and takes no general routing.
"""

from __future__ import annotations

from amaranth.hdl import Cat, ClockDomain, ClockSignal, Elaboratable, Module, Mux, Signal, Value
from amaranth.lib import wiring

from neuroloom.contract.config import FabricConfig
from neuroloom.fpga.ecp5 import global_reset

__all__ = ["IORing", "CORE_CONFIGS", "serial_ring"]

#: the neuron-core configurations the synthesis benches measure (``bench/core_synth.py``,
#: ``bench/timing_triage.py``): ``default`` (the default FabricConfig core), ``dense`` (1,024
#: neurons, 8,192 mode entries -- the whole seed small model's modes -- and 2 neuron lanes),
#: ``quick`` (32 neurons, shallow memories: checks the flow in a few minutes)
CORE_CONFIGS = {
    "default": FabricConfig(),
    "dense": FabricConfig(neurons=1024, axons=1024, synapse_rows=2048, route_words=1024,
                          modes=8192, neuron_lanes=2),
    "quick": FabricConfig(neurons=32, axons=32, synapse_rows=64, route_words=64, ucode_depth=64,
                          groups=8),
}


class IORing(Elaboratable):
    """Registered, serialized I/O around a :class:`wiring.Component` (see the module docstring).

    Ports: ``clk``, ``rst`` (the ``sync`` domain's clock and synchronous reset), ``si`` (serial
    in), ``load`` (capture the outputs), ``so`` (serial out).
    """

    def __init__(self, dut: wiring.Component):
        self.dut = dut
        self.clk = Signal()
        self.rst = Signal()
        self.si = Signal()
        self.load = Signal()
        self.so = Signal()

    @property
    def ports(self) -> list[Signal]:
        return [self.clk, self.rst, self.si, self.load, self.so]

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain("sync")
        m.d.comb += ClockSignal("sync").eq(self.clk)
        rst_q = Signal(reset_less=True)             # the reset pin, registered
        m.d.sync += rst_q.eq(self.rst)
        global_reset(m, "sync", rst_q, platform)
        m.submodules.dut = dut = self.dut
        serial_ring(m, dut, self.si, self.load, self.so)
        return m


def serial_ring(m: Module, dut: wiring.Component, si, load, so, *, skip=()) -> None:
    """Wire every port of ``dut`` (but the members named in ``skip``, or starting with one of
    them) to the registered serial ring of ``m``'s ``sync`` domain: inputs from a shift chain
    fed by ``si``, outputs captured on ``load`` and shifted out on ``so``."""
    ins, outs = [], []
    for path, member, value in dut.signature.flatten(dut):
        if skip and str(path[0]).startswith(tuple(skip)):
            continue
        value = Value.cast(value)
        (ins if member.flow == wiring.In else outs).append(value)
    chain = Signal(sum(len(v) for v in ins))
    m.d.sync += chain.eq(Cat(si, chain[:-1]))
    m.d.comb += Cat(*ins).eq(chain)
    captured = Signal(sum(len(v) for v in outs))
    m.d.sync += captured.eq(Mux(load, Cat(*outs), captured >> 1))
    m.d.comb += so.eq(captured[0])
