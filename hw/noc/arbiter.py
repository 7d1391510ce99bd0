"""Round-robin arbiter for one router output port, with the grant held during backpressure."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RoundRobin", "RoundRobinOneHot"]


class RoundRobin(wiring.Component):
    """Fair arbiter of ``n`` requesters for a valid/ready output.

    ``grant`` is the first requester at or after the priority pointer, which moves just past the
    winner after every transfer (``valid & ready``): a requester that keeps requesting is served
    after at most ``n - 1`` transfers to others. While the output is stalled (``valid & ~ready``
    in the previous cycle) the grant is held, so a stream built on it keeps ``payload`` stable
    until the transfer, provided the granted request stays up (it does in the router: a request
    is a FIFO head that only leaves when granted).

    Parameters
    ----------
    n : int
        Number of requesters (>= 1).

    Interface attributes
    --------------------
    requests : In(n)
        One bit per requester.
    ready : In(1)
        The output accepts the granted request this cycle.
    valid : Out(1)
        Some request is pending (``requests != 0``).
    grant : Out(range(n))
        Index of the served requester (meaningful when ``valid``).
    fire : Out(n)
        One-hot: the granted requester's transfer happens this cycle (``valid & ready``).
    """

    def __init__(self, n: int):
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"RoundRobin n={n!r} must be a positive integer")
        self._n = n
        # State, created here so that formal harnesses can state invariants over it.
        self._prio = Signal(range(n))          # first requester to consider
        self._held = Signal()                  # the output was stalled last cycle
        self._held_grant = Signal(range(n))
        super().__init__({
            "requests": In(n),
            "ready": In(1),
            "valid": Out(1),
            "grant": Out(range(n)),
            "fire": Out(n),
        })

    @property
    def n(self) -> int:
        return self._n

    def elaborate(self, platform):
        m = Module()
        n = self._n
        prio, held, held_grant = self._prio, self._held, self._held_grant
        free_grant = Signal(range(n))

        with m.Switch(prio):
            for p in range(n):
                with m.Case(p):
                    for i in reversed([(p + k) % n for k in range(n)]):  # the last If wins
                        with m.If(self.requests[i]):
                            m.d.comb += free_grant.eq(i)

        m.d.comb += [
            self.valid.eq(self.requests.any()),
            self.grant.eq(Mux(held, held_grant, free_grant)),
        ]
        transfer = self.valid & self.ready
        for i in range(n):
            m.d.comb += self.fire[i].eq(transfer & (self.grant == i))
        m.d.sync += [
            held.eq(self.valid & ~self.ready),
            held_grant.eq(self.grant),
        ]
        with m.If(transfer):
            m.d.sync += prio.eq(Mux(self.grant == n - 1, 0, self.grant + 1))
        return m


class RoundRobinOneHot(wiring.Component):
    """Round-robin arbiter for a *registered* output: one-hot grant, no grant holding.

    ``grant`` is one-hot: the first requester after the last winner (``_last``), cyclically; the
    last winner moves to the granted requester whenever ``advance`` is high (the output register
    took the granted request this cycle). A requester that keeps requesting is served after at
    most ``n - 1`` transfers to others. Unlike :class:`RoundRobin`, nothing is held while the
    output is stalled: the router's output register keeps ``valid`` and ``payload`` stable, and
    the arbiter only decides what enters it.

    Parameters
    ----------
    n : int
        Number of requesters (>= 1).

    Interface attributes
    --------------------
    requests : In(n)
        One bit per requester.
    advance : In(1)
        The granted request is taken this cycle (only meaningful while ``requests != 0``).
    grant : Out(n)
        One-hot: the requester served (all zero without requests).
    """

    def __init__(self, n: int):
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"RoundRobinOneHot n={n!r} must be a positive integer")
        self._n = n
        self._last = Signal(range(n), init=n - 1)    # the last winner: requester 0 first
        super().__init__({
            "requests": In(n),
            "advance": In(1),
            "grant": Out(n),
        })

    @property
    def n(self) -> int:
        return self._n

    def elaborate(self, platform):
        m = Module()
        n, last = self._n, self._last
        with m.Switch(last):
            for k in range(n):
                with m.Case(k):
                    order = [(k + 1 + j) % n for j in range(n)]      # priority after winner k
                    for pos, i in enumerate(order):
                        m.d.comb += self.grant[i].eq(
                            self.requests[i] & ~_any_of(self.requests[j] for j in order[:pos]))
        # the winner's index: the grant is one-hot, so each index bit is an OR of grant bits
        winner = Cat(_any_of(self.grant[i] for i in range(n) if i >> b & 1)
                     for b in range(len(last)))
        with m.If(self.advance & self.requests.any()):
            m.d.sync += last.eq(winner)
        return m


def _any_of(bits):
    bits = list(bits)
    return Cat(bits).any() if bits else Const(0, 1)
