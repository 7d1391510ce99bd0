"""The step barrier of a GALS fabric: a barrier in the host's clock domain, one agent per tile in
the tile's clock domain, and toggle handshakes between them.

No signal of one domain is used by logic of another except through a two-flip-flop
synchronizer of a *toggle* (a level that changes once per request), and data that crosses with
a toggle (the command, a tile's report) is held stable in registers from before the toggle
changes until the other side has answered, so it is sampled only while it cannot change.
Nothing depends on the ratio of the clocks: every wait is for an answer, never for a number of
cycles of another domain.

**Rounds.** :class:`GalsBarrier` (domain ``sync``) runs *rounds*, one after the other: it sets a
command (``POLL``, ``START`` with a step number, or ``CLEAR``) and toggles ``req``; every
:class:`TileAgent` sees the toggle through its synchronizer, executes the command (``START``:
pulses its core's ``step_start`` with the step number; ``CLEAR``: pulses ``clear``; then waits
:data:`SETTLE` cycles so that its core has lowered ``idle`` if it has work), then captures its
*report* and toggles ``ack``. The round is complete when every ``ack`` equals ``req``.

**Reports.** A tile's report is ``sent`` and ``recv`` (16-bit wrapping counts of the flits its
core injected into / took from the network) and ``quiet``: the core was idle and no flit was
injected or ejected at the tile in **every** cycle since its previous report. The host link's
own injections and ejections are counted in ``sync`` the same way, with ``hold`` as activity.

**Step end.** A step ends when a ``POLL`` round completes in which every report (and the host's)
is quiet and the counts balance: ``sum(sent) == sum(recv)`` (mod 2**16, far more than the
flits the network can hold). Why this cannot end a step early: let round *k - 1* complete at
time *T* (the barrier has seen every ``ack``). Every tile captured its report of round *k - 1*
before *T* and its report of round *k* after *T* (round *k*'s request leaves after *T*). A quiet
report of round *k* says the tile did nothing during an interval that contains *T*, so its
counts at *T* are the ones it reported, its core was idle at *T*, and therefore the flits in
flight at *T* (injected, not ejected: inside routers and CDC FIFOs) are ``sum(sent) -
sum(recv)`` of the reports: zero. At *T* every core had started the step (the ``START`` round
completed before the first ``POLL``, with its report captured :data:`SETTLE` cycles after the
pulse), no core had work left and no flit was anywhere: the step was over, and nothing can
start again before the next ``START``. A step therefore costs at least the ``START`` round and
one ``POLL`` round. Reports cover the time *between* captures, not the moment of capture:
tiles captured at different times could each look idle while a flit travels from a
later-captured tile to an earlier-captured one; the interval catches that flit's delivery.

While no run is going on the barrier keeps polling; ``quiet`` tells the host link that the
last complete round was quiet with balanced counts and nothing happened at the host since
(``HostLink`` starts a RUN only then, and answers CLEAR once it is set again).
"""


import enum

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Command", "GalsBarrier", "SETTLE", "TileAgent"]

#: cycles (of the tile's clock) between a START/CLEAR pulse and the report: the core lowers
#: ``idle`` in the cycle after the pulse when it has work
SETTLE = 3
COUNT_BITS = 16
STEP_BITS = 16


class Command(enum.IntEnum):
    """What a round asks of every :class:`TileAgent`."""
    POLL = 0
    START = 1
    CLEAR = 2


def _synchronize(m, value, name, stages=2, *, formal=False, loads=1):
    """``value`` (from another clock domain) through ``stages`` flip-flops of ``sync``; returns
    ``loads`` views of the last one (the logic reading it, one view per group of loads).

    With ``formal`` (``platform == "formal"``, the proofs of ``tests/formal/``) the chain models
    what flip-flops sampling an asynchronous signal may do, as :class:`~.noc.cdc.CdcLink`'s
    synchronizers: a bit that changed since the last capture may be captured with its old value
    (at most one edge late), and in the cycle after such a capture the first flip-flop may be
    metastable, so that loads reading it may see either value, independently. A correct chain
    (``stages >= 2``) has the second flip-flop as the first one's only load, and every view is
    the same; with ``stages=1`` (a fault injection) the views may disagree.
    """
    regs = [Signal(len(value), name=f"{name}_s{k}") for k in range(stages)]
    if not formal:
        m.d.sync += regs[0].eq(value)
        for a, b in zip(regs, regs[1:]):
            m.d.sync += b.eq(a)
        return [regs[-1]] * loads

    from amaranth.asserts import AnySeq

    width = len(value)
    late = Signal(width, name=f"{name}_late")      # these bits were captured late last time
    meta = Signal(width, name=f"{name}_meta")      # the first flip-flop may be metastable
    changed = Signal(width, name=f"{name}_changed")
    keep_old = Signal(width, name=f"{name}_keep_old")
    m.d.comb += [changed.eq((value ^ regs[0]) & ~late),
                 keep_old.eq(changed & AnySeq(width))]
    m.d.sync += [regs[0].eq((value & ~keep_old) | (regs[0] & keep_old)),
                 late.eq(keep_old), meta.eq(changed)]

    def view(k):
        v = Signal(width, name=f"{name}_view{k}")
        m.d.comb += v.eq(regs[0] ^ (meta & AnySeq(width)))
        return v

    if stages == 1:
        return [view(k) for k in range(loads)]
    m.d.sync += regs[1].eq(view(0))
    for a, b in zip(regs[1:], regs[2:]):
        m.d.sync += b.eq(a)
    return [regs[-1]] * loads


class TileAgent(wiring.Component):
    """A tile's side of the GALS barrier (its ``sync`` is the tile's clock domain).

    Parameters
    ----------
    count_bits : int
        Width of the wrapping flit counts (16 in hardware; proofs use fewer).
    sync_stages : int
        Flip-flops of the ``req`` synchronizer, >= 2 for hardware; 1 only to inject a fault
        (the proof of ``tests/formal/test_gals_barrier_formal.py`` must catch it).

    Interface attributes
    --------------------
    req : In(1), cmd : In(2), cmd_step : In(16)
        From :class:`GalsBarrier` (another domain): a toggle and the command it carries.
    ack : Out(1), quiet : Out(1), sent : Out(count_bits), recv : Out(count_bits)
        To the barrier: the toggle answering ``req`` and the report (registers, stable until
        the next ``req``).
    core_idle : In(1), inject : In(1), eject : In(1)
        The core's ``idle`` and the handshakes of its links into / out of the network.
    step : Out(16), step_start : Out(1), clear : Out(1)
        To the core.
    """

    def __init__(self, *, count_bits: int = COUNT_BITS, sync_stages: int = 2):
        if not isinstance(count_bits, int) or count_bits < 2:
            raise ValueError(f"TileAgent count_bits={count_bits!r} must be an integer >= 2")
        if not isinstance(sync_stages, int) or sync_stages < 1:
            raise ValueError(f"TileAgent sync_stages={sync_stages!r} must be an integer >= 1")
        self._count_bits, self._stages = count_bits, sync_stages
        super().__init__({
            "req": In(1), "cmd": In(2), "cmd_step": In(STEP_BITS),
            "ack": Out(1), "quiet": Out(1), "sent": Out(count_bits), "recv": Out(count_bits),
            "core_idle": In(1), "inject": In(1), "eject": In(1),
            "step": Out(STEP_BITS), "step_start": Out(1), "clear": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        # three groups of loads of the synchronized request: the decision to take it, the
        # record of the request taken, the answer (they see the same value in a correct chain)
        req, req_seen, req_ack = _synchronize(m, self.req, "req", self._stages,
                                              formal=platform == "formal", loads=3)
        seen = Signal()                    # the last request taken
        settle = Signal(range(SETTLE + 1))
        waiting = Signal()
        sent, recv = Signal(self._count_bits), Signal(self._count_bits)
        active = Signal()                  # something happened since the last report
        act_now = Signal()
        m.d.comb += act_now.eq(~self.core_idle | self.inject | self.eject | self.step_start |
                               self.clear)
        m.d.sync += [sent.eq(sent + self.inject), recv.eq(recv + self.eject),
                     self.step_start.eq(0), self.clear.eq(0), active.eq(active | act_now)]

        report = Signal()
        with m.If(~waiting & (req != seen)):
            m.d.sync += seen.eq(req_seen)
            with m.Switch(self.cmd):
                with m.Case(Command.START):
                    m.d.sync += [self.step.eq(self.cmd_step), self.step_start.eq(1),
                                 waiting.eq(1), settle.eq(SETTLE)]
                with m.Case(Command.CLEAR):
                    m.d.sync += [self.clear.eq(1), waiting.eq(1), settle.eq(SETTLE)]
                with m.Default():
                    m.d.comb += report.eq(1)
        with m.If(waiting):
            m.d.sync += settle.eq(settle - 1)
            with m.If(settle == 1):
                m.d.comb += report.eq(1)
                m.d.sync += waiting.eq(0)
        with m.If(report):
            m.d.sync += [self.quiet.eq(~(active | act_now)), self.sent.eq(sent),
                         self.recv.eq(recv), active.eq(0),
                         self.ack.eq(Mux(waiting, seen, req_ack))]
        return m


class GalsBarrier(wiring.Component):
    """Step sequencer and barrier of a GALS fabric (module docstring), in domain ``sync``.

    Parameters
    ----------
    tiles : int
        Number of :class:`TileAgent` s.
    fault : str, optional
        Only for tests that show the checks catch a broken barrier: ``"ignore_counts"`` ends
        a step on quiet reports whatever the counts, ``"any_ack"`` takes a round as complete
        when any tile (not every tile) has answered.
    count_bits : int
        Width of the agents' flit counts (:class:`TileAgent` ``count_bits``).
    sync_stages : int
        Flip-flops of the ``ack`` synchronizer, >= 2 for hardware; 1 only to inject a fault.

    Interface attributes
    --------------------
    req : Out(1), cmd : Out(2), cmd_step : Out(16)
        To every agent.
    ack : In(tiles), quiet_in : In(tiles), sent, recv : In(count_bits).array(tiles)
        From the agents (other domains; synchronized here).
    host_inject, host_eject : In(1)
        Handshakes of the host link's links into / out of the network (``sync``).
    hold, start, steps, budget, clear, abort : as :class:`~neuroloom.hw.barrier.Barrier`.
    running, step, step_start, step_done, overrun, step_cycles : as
        :class:`~neuroloom.hw.barrier.Barrier` (``step_start`` pulses when a START round
        begins).
    in_flight : Out(count_bits)
        ``sum(sent) - sum(recv)`` of the last complete round (host included).
    quiet : Out(1)
        Not running, the last complete POLL round was quiet with balanced counts, and nothing
        happened at the host since: every flit has landed and every core is idle.
    injected, ejected : Out(32)
        Flits injected / ejected by cores and host up to the last complete round.
    rounds : Out(32)
        Rounds completed (for the cost benchmark).
    """

    def __init__(self, tiles: int, *, step_bits: int = 32, fault: str | None = None,
                 count_bits: int = COUNT_BITS, sync_stages: int = 2):
        if not isinstance(tiles, int) or tiles < 1:
            raise ValueError(f"GalsBarrier tiles={tiles!r} must be a positive integer")
        if fault not in (None, "ignore_counts", "any_ack"):
            raise ValueError(f"GalsBarrier fault={fault!r} is not a known fault")
        if not isinstance(sync_stages, int) or sync_stages < 1:
            raise ValueError(f"GalsBarrier sync_stages={sync_stages!r} must be an integer >= 1")
        self._fault = fault
        self._tiles = tiles
        self._step_bits = step_bits
        self._stages = sync_stages
        self._count_bits = count_bits
        super().__init__({
            "req": Out(1), "cmd": Out(2), "cmd_step": Out(STEP_BITS),
            "ack": In(tiles), "quiet_in": In(tiles),
            "sent": In(count_bits).array(tiles), "recv": In(count_bits).array(tiles),
            "host_inject": In(1), "host_eject": In(1),
            "hold": In(1), "start": In(1), "steps": In(step_bits), "budget": In(step_bits),
            "clear": In(1), "abort": In(1),
            "running": Out(1), "step": Out(step_bits), "step_start": Out(1),
            "step_done": Out(1), "overrun": Out(1), "step_cycles": Out(step_bits),
            "in_flight": Out(count_bits), "quiet": Out(1),
            "injected": Out(32), "ejected": Out(32), "rounds": Out(32),
        })

    @property
    def tiles(self) -> int:
        return self._tiles

    def elaborate(self, platform):
        m = Module()
        n = self._tiles
        cb = self._count_bits
        ack, = _synchronize(m, self.ack, "ack", self._stages, formal=platform == "formal")

        in_round = Signal()
        done = Signal()
        if self._fault == "any_ack":
            m.d.comb += done.eq(in_round & (~(ack ^ self.req.replicate(n))).any())
        else:
            m.d.comb += done.eq(in_round & (ack == self.req.replicate(n)))

        # host-side counts and activity since the last completed round
        h_sent, h_recv = Signal(cb), Signal(cb)
        h_active = Signal()
        h_now = Signal()
        m.d.comb += h_now.eq(self.host_inject | self.host_eject | self.hold)
        m.d.sync += [h_sent.eq(h_sent + self.host_inject), h_recv.eq(h_recv + self.host_eject)]

        total_sent = Signal(cb)
        total_recv = Signal(cb)
        m.d.comb += [
            total_sent.eq(sum(self.sent[i] for i in range(n)) + h_sent),
            total_recv.eq(sum(self.recv[i] for i in range(n)) + h_recv),
        ]
        clean = Signal()
        if self._fault == "ignore_counts":
            m.d.comb += clean.eq(self.quiet_in.all() & ~h_active & ~h_now)
        else:
            m.d.comb += clean.eq(self.quiet_in.all() & ~h_active & ~h_now &
                                 (total_sent == total_recv))
        prev_sent, prev_recv = Signal(cb), Signal(cb)

        remaining = Signal(self._step_bits)
        age = Signal(self._step_bits)
        age_max = (1 << self._step_bits) - 1
        start_pending, clear_pending = Signal(), Signal()
        last_cmd = Signal(2)

        def issue(kind):
            m.d.sync += [self.cmd.eq(kind), last_cmd.eq(kind), self.req.eq(~self.req),
                         in_round.eq(1)]

        m.d.sync += [self.step_start.eq(0), self.step_done.eq(0),
                     h_active.eq(h_active | h_now)]
        with m.If(h_now):
            m.d.sync += self.quiet.eq(0)
        with m.If(self.running):
            m.d.sync += age.eq(Mux(age == age_max, age, age + 1))
            with m.If((self.budget != 0) & (age + 1 == self.budget)):
                m.d.sync += self.overrun.eq(1)

        finish = Signal()
        with m.If(done):
            m.d.sync += [
                h_active.eq(0), prev_sent.eq(total_sent), prev_recv.eq(total_recv),
                self.in_flight.eq(total_sent - total_recv),
                self.injected.eq(self.injected + (total_sent - prev_sent)[:cb]),
                self.ejected.eq(self.ejected + (total_recv - prev_recv)[:cb]),
                self.rounds.eq(self.rounds + 1),
            ]
            m.d.comb += finish.eq(self.running & ~start_pending &
                                  (last_cmd == Command.POLL) & clean)
            with m.If(~self.running & (last_cmd == Command.POLL) & ~clear_pending):
                m.d.sync += self.quiet.eq(clean)
            with m.If(finish):
                m.d.sync += [self.step_done.eq(1), self.step.eq(self.step + 1),
                             self.step_cycles.eq(age + 1), remaining.eq(remaining - 1),
                             age.eq(0)]
                with m.If(remaining == 1):
                    m.d.sync += [self.running.eq(0), self.quiet.eq(1)]
                    issue(Command.POLL)
                with m.Else():
                    m.d.sync += [self.cmd_step.eq(self.step + 1), self.step_start.eq(1)]
                    issue(Command.START)
            with m.Elif(start_pending):
                m.d.sync += [start_pending.eq(0), self.cmd_step.eq(self.step),
                             self.step_start.eq(1), age.eq(0)]
                issue(Command.START)
            with m.Elif(clear_pending):
                m.d.sync += clear_pending.eq(0)
                issue(Command.CLEAR)
            with m.Else():
                issue(Command.POLL)
        with m.Elif(~in_round):
            issue(Command.POLL)

        with m.If(self.abort):
            m.d.sync += [self.running.eq(0), start_pending.eq(0)]
        with m.Elif(~self.running & self.start):
            m.d.sync += [remaining.eq(self.steps), age.eq(0), self.overrun.eq(0),
                         self.quiet.eq(0)]
            with m.If(self.steps != 0):
                m.d.sync += [self.running.eq(1), start_pending.eq(1)]
        with m.Elif(~self.running & self.clear):
            m.d.sync += [self.step.eq(0), self.overrun.eq(0), self.quiet.eq(0),
                         clear_pending.eq(1)]
        return m

