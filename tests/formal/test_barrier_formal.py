"""The barrier never ends a step with a flit in flight: unbounded proofs (k-induction), in two
parts that meet at the NoC's accounting contract.

**The contract** (what the barrier relies on from the network), per cycle ``t``, with
``occ(t)`` = flits injected before ``t`` minus flits ejected before ``t``:

  C1. a flit leaves only from inside: ``popcount(eject_fire(t)) <= occ(t)`` (a flit injected
      in cycle ``t`` cannot leave in cycle ``t``);
  C2. the network holds at most ``capacity`` flits: ``occ(t) <= capacity``;
  C3. ``idle(t) == (occ(t) == 0)``;
  C4. (for ports seen a cycle late) a core that is ``done`` injects nothing in that cycle.

**Part 1** (:class:`BarrierProperties`): the real :class:`~neuroloom.hw.barrier.Barrier` against
an *abstract* network, a free occupancy counter whose inject/eject pulses are any the contract
allows (cores' ``done``, ``hold``, ``start``, ``steps``, ``abort`` ... all free). Proven: the
barrier's count equals ``occ``; when ``step_done`` rises the network is empty, nothing was
delivered in the cycle the step closed (a core that received a flit then had not yet lowered
``done``), every core was done and ``hold`` low.

**Part 2** (``test_noc_contract.py``): the real routers and mesh keep the contract.

The fabric's barrier (``FabricShell``) sees the cores' pulses through a register each and the
host link's directly, and settles two cycles: part 1 is proven for that arrangement too (the
count then equals ``occ`` less the late ports' last cycle).

Each part is shown to catch the bug it is for: the barrier ignoring ``in_flight``, ignoring
injections, or closing one cycle early on the next count (the bug the end-to-end test once
found).
"""

import pytest
from amaranth.hdl import Assert, Assume, Cat, Elaboratable, Module, ResetSignal, Signal

from neuroloom.contract.config import FabricConfig
from neuroloom.hw import barrier as barrier_module
from neuroloom.hw.barrier import popcount
from neuroloom.sim import formal
from tests.formal._support import mesh_capacity, patched_module


class BarrierProperties(Elaboratable):
    """``barrier_cls`` (``cores`` cores, ``cores + 1`` accounting ports) on an abstract network
    of ``capacity`` flits that keeps the contract."""

    def __init__(self, cores, capacity, barrier_cls=barrier_module.Barrier, *, late=False):
        self.capacity = capacity
        self.late = late                 # the cores' pulses a cycle late (FabricShell)
        # the fabric's widths and settle (hw/fabric.py)
        self.barrier = barrier_cls(cores, settle=2 if late else 1)
        ports = cores + 1
        self.inject = Signal(ports, name="net_inject")    # the abstract network's handshakes
        self.eject = Signal(ports, name="net_eject")

    def free_inputs(self):
        driven = {id(self.barrier.inject_fire), id(self.barrier.eject_fire)}
        return [p for p in formal.free_inputs(self.barrier) if id(p) not in driven] + [
            self.inject, self.eject]

    def elaborate(self, platform):
        m = Module()
        m.submodules.barrier = b = self.barrier
        m.d.comb += Assume(~ResetSignal())
        injected = popcount(m, self.inject, "net_injected")
        ejected = popcount(m, self.eject, "net_ejected")
        occ = Signal(range(self.capacity + 1), name="occ")        # the abstract network
        m.d.sync += occ.eq(occ + injected - ejected)
        cores = len(self.inject) - 1
        if self.late:
            # the cores' pulses through a register, the host's (last bit) direct; the count
            # lags by what the late ports did last cycle
            inject_q = Signal(cores, name="late_inject")
            eject_q = Signal(cores, name="late_eject")
            m.d.sync += [inject_q.eq(self.inject[:cores]), eject_q.eq(self.eject[:cores])]
            m.d.comb += [b.inject_fire.eq(Cat(inject_q, self.inject[cores])),
                         b.eject_fire.eq(Cat(eject_q, self.eject[cores]))]
            lag_in = popcount(m, inject_q, "lag_injected")
            lag_out = popcount(m, eject_q, "lag_ejected")
            m.d.comb += Assert(b.in_flight + lag_in - lag_out == occ)
            # C4 (late ports only): a core that reports ``done`` offers no flit in that cycle
            # (its ``idle`` is a register: nothing was busy and nothing started the cycle
            # before; asserted in the core, ``hw/core/core.py``)
            for k in range(cores):
                m.d.comb += Assume(~(b.done[k] & self.inject[k]))
        else:
            m.d.comb += [b.inject_fire.eq(self.inject), b.eject_fire.eq(self.eject)]
            m.d.comb += Assert(b.in_flight == occ)
        m.d.comb += Assume(ejected <= occ)                                      # C1
        m.d.comb += Assume(occ + injected - ejected <= self.capacity)           # C2
        idle = Signal(name="idle")
        m.d.comb += idle.eq(occ == 0)                                           # C3

        last_ejected = Signal.like(ejected, name="last_ejected")
        last_quiet = Signal(name="last_quiet")
        m.d.sync += [last_ejected.eq(ejected),
                     last_quiet.eq(b.done.all() & ~b.hold)]
        with m.If(b.step_done):
            m.d.comb += [Assert(idle), Assert(last_ejected == 0), Assert(last_quiet)]
        return m


def _prove(name, top, depth=4):
    return formal.prove(name, top, ports=top.free_inputs(), mode="prove", depth=depth,
                        solver="yices", timeout=300)


#: meshes whose network the barrier is proven for: the one test_noc_contract.py proves keeps
#: the contract, and the default 2 x 2 (its routers proven one by one)
MESHES = [FabricConfig(mesh_w=2, mesh_h=1, router_fifo_depth=2), FabricConfig(mesh_w=2, mesh_h=2)]


@pytest.mark.parametrize("late", [False, True], ids=["direct", "late_cores"])
@pytest.mark.parametrize("cfg", MESHES, ids=lambda c: f"{c.mesh_w}x{c.mesh_h}")
def test_barrier_keeps_the_step_open_while_flits_fly_proof(cfg, late):
    top = BarrierProperties(cfg.num_cores, mesh_capacity(cfg), late=late)
    log = _prove(f"barrier_contract_{cfg.mesh_w}x{cfg.mesh_h}{'_late' if late else ''}", top)
    assert "successful proof by k-induction" in log


#: bugs the proof must catch: (what, text of hw/barrier.py, its replacement)
BARRIER_BUGS = {
    "ignores in_flight": ("(self.in_flight == 0) &", ""),
    "ignores injections": (" &\n                             (injected == 0))", ")"),
    "closes on the next count": ("(self.in_flight == 0) &\n                             "
                                 "(injected == 0))", "(in_flight_next == 0))"),
}


@pytest.mark.parametrize("late", [False, True], ids=["direct", "late_cores"])
@pytest.mark.parametrize("bug", list(BARRIER_BUGS))
def test_barrier_proof_catches_an_injected_bug(bug, late):
    old, new = BARRIER_BUGS[bug]
    buggy = patched_module("neuroloom.hw.barrier", old, new).Barrier
    with pytest.raises(formal.ProofFailed) as e:
        # (late: the counterexample from reset is longer: two settle cycles, the registers)
        _prove(f"barrier_bug_{bug}{'_late' if late else ''}",
               BarrierProperties(2, mesh_capacity(MESHES[0]), barrier_cls=buggy, late=late),
               depth=6 if late else 4)
    assert "BMC failed" in str(e.value), str(e.value)   # a counterexample trace from reset
