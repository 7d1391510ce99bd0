"""Step barrier: ends a step only when every core is done and no flit is in flight.

The fabric advances in steps. :class:`Barrier` broadcasts the current step number ``step`` and a
one-cycle ``step_start`` pulse; cores run their step's work (their schedules read ``step``) and
raise ``done``. The barrier keeps an exact count of the flits in the network, from the
handshake pulses of every injection link (``inject_fire``: cores and host into the mesh) and
every ejection link (``eject_fire``: mesh into cores and host):

    in_flight(t + 1) = in_flight(t) + popcount(inject_fire(t)) - popcount(eject_fire(t))

The count runs all the time (configuration flits sent between runs are counted too). A step
ends in the first cycle ``t`` (not the step's first cycle) in which

    all(done(t)) and not hold(t) and in_flight(t) == 0 and no injection in cycle t

The registered count matters: a flit ejected into a core in cycle ``t`` is still counted in
cycle ``t``, and the core lowers ``done`` from cycle ``t+1`` until it has integrated the spike,
so the step cannot close while a delivered spike is still inside a core. (Closing on
``in_flight(t+1) == 0`` lets a spike slip into the next step's accumulator buffer: found by the
end-to-end fabric test.) Then, registered, ``step_done`` pulses, ``step`` increments and, while
steps remain, ``step_start`` pulses in the same cycle for the next step. ``step_done`` therefore
rises two cycles after the last flit of the step is delivered (the barrier latency;
``docs/noc.md``).

Protocol for cores: a core that has work in a step must lower ``done`` no later than
``settle`` cycles after ``step_start`` (the barrier ignores ``done`` in the step's first
``settle`` cycles; ``settle = 1``: the cycle after), and must keep it low until that work and
its flits have left the core. A fabric whose ``step_start`` reaches the cores through a
register stage (``FabricShell``) sets ``settle = 2``.

Ports whose ``inject_fire`` / ``eject_fire`` arrive one cycle late (registered near their tile,
``FabricShell``) keep the rule exact as long as a flit injected in cycle ``t`` leaves the network
in ``t + 1`` at the earliest (the NoC's contract C1, ``tests/formal/test_barrier_formal.py``)
and a core that is ``done`` offers no flit in that cycle (C4, asserted in the core): the count
then lags the network by those ports' last cycle, a flit ejected into such a port in cycle
``t - 1`` is impossible when the count is 0 and no (late) injection shows in cycle ``t``, and
the count never goes below zero (proven there). ``hold`` lets another agent (the host link
streaming a token in) keep the step open.

``overrun`` (sticky until ``start`` or ``clear``) rises when a step is not finished within
``budget`` cycles from its ``step_start`` (``budget = 0``: no limit); the step still waits for
its flits. ``abort`` stops a run.
"""

from __future__ import annotations

from amaranth.hdl import Assert, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Barrier", "popcount"]


def popcount(m: Module, bits, name: str) -> Signal:
    """Number of set bits of ``bits``, as a balanced adder tree (combinational)."""
    terms = [bits[i] for i in range(len(bits))]
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
    out = Signal(range(len(bits) + 1), name=name)
    m.d.comb += out.eq(terms[0] if terms else 0)
    return out


class Barrier(wiring.Component):
    """Step sequencer and global barrier.

    Parameters
    ----------
    cores : int
        Number of cores (``done`` inputs).
    ports : int
        Number of injection/ejection accounting ports (cores + host link: ``cores + 1``).
    count_bits : int
        Width of the in-flight counter (must hold every flit the network can buffer).
    step_bits : int
        Width of the step number and of the ``steps`` / ``budget`` inputs.
    settle : int
        Cycles from ``step_start`` in which ``done`` is ignored (>= 1): one more than the
        register stages between ``step_start`` and the cores.

    Interface attributes
    --------------------
    done : In(cores)
        Per core: finished this step's work, no flit waiting to leave.
    inject_fire, eject_fire : In(ports)
        Handshake pulses of the links into / out of the network (``Mesh.inject_fire``...).
    hold : In(1)
        Keep the current step open (e.g. the host link is injecting this step's token).
    start : In(1)
        Pulse, when not ``running``: run ``steps`` steps, starting at step number ``step``.
    steps : In(step_bits)
        Number of steps a ``start`` runs (0: none).
    budget : In(step_bits)
        Cycle budget per step; a longer step sets ``overrun`` (0: unlimited).
    clear : In(1)
        Pulse, when not ``running``: ``step`` and ``overrun`` back to 0.
    abort : In(1)
        Pulse: stop the run at once (``running`` falls, no ``step_done``).
    running : Out(1)
        A run is in progress.
    step : Out(step_bits)
        Current step number t (already the next one in the cycle ``step_done`` is high).
    step_start : Out(1)
        Pulse: step ``step`` begins.
    step_done : Out(1)
        Pulse: the previous step ended (all cores done, nothing in flight).
    overrun : Out(1)
        Sticky: some step exceeded ``budget`` cycles.
    in_flight : Out(count_bits)
        Flits in the network now.
    step_cycles : Out(step_bits)
        Length in cycles of the last completed step.

    Raises
    ------
    ValueError
        If ``cores``, ``ports`` or ``settle`` is not a positive integer, or a width is below 2.
    """

    def __init__(self, cores: int, ports: int | None = None, *, count_bits: int = 16,
                 step_bits: int = 32, settle: int = 1):
        ports = cores + 1 if ports is None else ports
        for name, value in (("cores", cores), ("ports", ports), ("settle", settle)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"Barrier {name}={value!r} must be a positive integer")
        for name, value in (("count_bits", count_bits), ("step_bits", step_bits)):
            if not isinstance(value, int) or value < 2:
                raise ValueError(f"Barrier {name}={value!r} must be an integer >= 2")
        self._cores = cores
        self._ports = ports
        self._count_bits = count_bits
        self._step_bits = step_bits
        self._settle = settle
        super().__init__({
            "done": In(cores),
            "inject_fire": In(ports),
            "eject_fire": In(ports),
            "hold": In(1),
            "start": In(1),
            "steps": In(step_bits),
            "budget": In(step_bits),
            "clear": In(1),
            "abort": In(1),
            "running": Out(1),
            "step": Out(step_bits),
            "step_start": Out(1),
            "step_done": Out(1),
            "overrun": Out(1),
            "in_flight": Out(count_bits),
            "step_cycles": Out(step_bits),
        })

    @property
    def cores(self) -> int:
        return self._cores

    @property
    def ports(self) -> int:
        return self._ports

    @property
    def count_bits(self) -> int:
        return self._count_bits

    @property
    def step_bits(self) -> int:
        return self._step_bits

    @property
    def settle(self) -> int:
        return self._settle

    def elaborate(self, platform):
        m = Module()

        injected = popcount(m, self.inject_fire, "injected")
        ejected = popcount(m, self.eject_fire, "ejected")
        wide = Signal(self._count_bits + 2)            # room to see under/overflow
        m.d.comb += wide.eq(self.in_flight + injected - ejected)
        in_flight_next = Signal(self._count_bits)
        m.d.comb += in_flight_next.eq(wide)
        m.d.sync += self.in_flight.eq(in_flight_next)
        m.d.sync += Assert(wide[self._count_bits:] == 0,
                           "barrier: in-flight count under/overflow (accounting bug)")

        remaining = Signal(self._step_bits)
        age = Signal(self._step_bits)                  # cycles since step_start, saturating
        age_max = (1 << self._step_bits) - 1
        quiet = Signal()
        # The *registered* count: a flit ejected into a core in cycle t is still counted at t,
        # and the core lowers ``done`` at t+1, so the step cannot close between the two.
        m.d.comb += quiet.eq(self.done.all() & ~self.hold & (self.in_flight == 0) &
                             (injected == 0))
        finish = Signal()
        m.d.comb += finish.eq(self.running & (age >= self._settle) & quiet)

        m.d.sync += [
            self.step_start.eq(0),
            self.step_done.eq(0),
        ]
        with m.If(self.running):
            m.d.sync += age.eq(Mux(age == age_max, age, age + 1))
            with m.If(~finish & (self.budget != 0) & (age + 1 == self.budget)):
                m.d.sync += self.overrun.eq(1)

        with m.If(self.abort):
            m.d.sync += self.running.eq(0)
        with m.Elif(finish):
            m.d.sync += [
                self.step_done.eq(1),
                self.step.eq(self.step + 1),
                self.step_cycles.eq(age + 1),
                remaining.eq(remaining - 1),
                age.eq(0),
            ]
            with m.If(remaining == 1):
                m.d.sync += self.running.eq(0)
            with m.Else():
                m.d.sync += self.step_start.eq(1)
        with m.Elif(~self.running & self.start):
            m.d.sync += [
                remaining.eq(self.steps),
                age.eq(0),
                self.overrun.eq(0),
            ]
            with m.If(self.steps != 0):
                m.d.sync += [
                    self.running.eq(1),
                    self.step_start.eq(1),
                ]
        with m.Elif(~self.running & self.clear):
            m.d.sync += [
                self.step.eq(0),
                self.overrun.eq(0),
            ]
        return m
