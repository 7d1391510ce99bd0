"""The real routers and mesh keep the accounting contract the barrier relies on: unbounded
proofs (k-induction). Part 2 of the barrier proof; part 1 and the contract are in
``test_barrier_formal.py``.

With ``occ`` = flits that entered minus flits that left (counted from the link handshakes only,
a black-box view), every cycle:

  C1. ``popcount(leaving) <= occ``: a flit leaves only from inside (none passes straight through
      in the cycle it enters);
  C2. ``occ + entering - leaving <= capacity``;
  C3. ``busy`` (a router) / ``~idle`` (the mesh) exactly when ``occ != 0``.

Part 1 proves the barrier correct for *any* network that keeps C1-C3; here the real
:class:`~neuroloom.hw.noc.router.Router` (every port free, any traffic) and the real
:class:`~neuroloom.hw.noc.mesh.Mesh` (tiles and host inject any flit addressed inside the
mesh, cores and host take flits whenever they like) are proven to keep them.

The contract alone is not inductive (an unreachable state, e.g. an occupancy count without its
flit, breaks it one step later), so the proofs also assert *strengthening invariants* over the
router's internals (:func:`router_invariants`): each input's occupancy equals its FIFO level
plus its flits in output stages, the FIFO pointers agree with the level, heads and stored routes
are one-hot and name a connected port, a request is a subset of the head's route and of the
outputs its input may use, every grant stage and output register holds one flit of one input,
and the flits of one input sit in the stages of one output. These are proven along with the
contract (k-induction proves them all together), so they are facts, not assumptions. To read the
FIFOs' stored routes (and, in the mesh, stored flits) the proof adds read ports to the router's
LUT-RAM memories: observation only, the router's own logic is unchanged.

In the mesh proof the routers carry the real 64-bit flit with 4-bit coordinates, so a flit
addressed off the mesh could exist; the tiles and host are assumed to address flits inside the
mesh (the compiler's and host driver's job), and the proof shows that every flit stored in a
FIFO, grant stage or output register stays addressed inside it.

A router that duplicates a flit (an output register that stays valid after its transfer),
forgets one (stops counting a flit waiting at a stalled output) or drops one (takes a flit with
its FIFO full) breaks the contract itself: a bounded check of C1-C3 alone finds the trace from
reset, and the proof fails (``test_contract_proof_catches_an_injected_router_bug``).
"""

import inspect
import re
from pathlib import Path

import pytest
from amaranth.hdl import Assert, Assume, Cat, Elaboratable, Module, ResetSignal, Signal
from amaranth.lib import data

from neuroloom.contract.config import FabricConfig
from neuroloom.hw.barrier import popcount
from neuroloom.hw.noc import Mesh
from neuroloom.hw.noc.router import PORT_NAMES, Port, Router, connected_ports
from neuroloom.sim import formal
from tests.formal._support import mesh_capacity, patched_module


class _Internals:
    """The signals and submodules of an elaborated router module, by name."""

    def __init__(self, module: Module):
        self.signals: dict = {}
        for stmts in module._statements.values():
            for stmt in stmts:
                for s in stmt._lhs_signals() | stmt._rhs_signals():
                    self.signals.setdefault(s.name, s)
        self.subs = {k: v[0] if isinstance(v, tuple) else v
                     for k, v in module._named_submodules.items()}

    def __getitem__(self, name):
        for table in (self.signals, self.subs):
            if name in table:
                return table[name]
        raise KeyError(f"the router has no internal {name!r}: the proof's invariants name the "
                       f"router's internals, update them with the router")


def _elaborated(router: Router, platform) -> _Internals:
    """Elaborate ``router`` now (so that the proof can name its internals and add read ports to
    its memories); it returns the same module when the design is built."""
    module = router.elaborate(platform)
    router.elaborate = lambda platform: module
    return _Internals(module)


def _one_hot_or_zero(value):
    return (value & (value - 1))[:len(value)] == 0


def router_invariants(m: Module, router: Router, r: _Internals) -> list:
    """Add the strengthening invariants of ``router`` (internals ``r``) to ``m``; returns the
    per-input occupancy counters (their sum is the flits inside)."""
    cfg = router.cfg
    depth = cfg.router_fifo_depth
    mem_depth = 1 << max(1, (depth - 1).bit_length())          # as the router sizes its FIFOs
    ptr_bits = max(1, (mem_depth - 1).bit_length())
    n = len(Port)
    connected = connected_ports(cfg, router.x, router.y)
    outs = [o for o in Port if o in connected]
    connected_mask = sum(1 << o for o in connected)
    for o in outs:
        on = PORT_NAMES[o]
        a_valid, a_src = r[f"a_valid_{on}"], r[f"a_src_{on}"]
        valid, src = r[f"o_valid_{on}"], r[f"o_src_{on}"]
        m.d.comb += [
            Assert(r[f"arbiter_{on}"]._last < n),
            Assert(_one_hot_or_zero(a_src)), Assert(a_valid == (a_src != 0)),
            Assert(_one_hot_or_zero(src)), Assert(valid == (src != 0)),
        ]
    occupancy = []
    for i, name in enumerate(PORT_NAMES):
        occ, level, in_out = r[f"occ_{name}"], r[f"level_{name}"], r[f"in_out_{name}"]
        want, req, last_out = r[f"want_{name}"], r[f"req_{name}"], r[f"last_out_{name}"]
        free, consume = r[f"free_{name}"], r[f"consume_{name}"]
        occupancy.append(occ)
        if Port(i) not in connected:
            m.d.comb += Assert(occ == 0)
        in_stages = sum((r[f"a_valid_{PORT_NAMES[o]}"] & r[f"a_src_{PORT_NAMES[o]}"][i])
                        + r[f"o_src_{PORT_NAMES[o]}"][i] for o in outs)
        m.d.comb += [
            Assert(occ <= depth),
            Assert(r[f"ready_{name}"] == (occ < depth)),
            Assert(occ == level + in_out),
            Assert(in_out == in_stages),
            Assert(free == (in_out == 0)),
            Assert(r[f"several_{name}"] == (level >= 2)),
            Assert((r[f"produce_{name}"] - consume)[:ptr_bits] == (level % mem_depth)),
            Assert(_one_hot_or_zero(want)),
            Assert((want & ~connected_mask) == 0),
            Assert((want != 0) == (level >= 1)),
            Assert((req & ~want) == 0),
            Assert((req & ~(last_out | Cat(*[free] * n))) == 0),
            Assert(_one_hot_or_zero(last_out)),
        ]
        with m.If(in_out != 0):              # all of this input's staged flits: one output
            for o in outs:
                on = PORT_NAMES[o]
                with m.If(~last_out[o]):
                    m.d.comb += Assert(~(r[f"a_valid_{on}"] & r[f"a_src_{on}"][i]))
                    m.d.comb += Assert(~r[f"o_src_{on}"][i])
        routes = r[f"routes_{name}"]
        for j in range(1, depth):            # the routes stored behind the head (in ``want``)
            port = routes.read_port(domain="comb")
            m.d.comb += port.addr.eq(consume + j)
            with m.If(level > j):
                m.d.comb += Assert(_one_hot_or_zero(port.data) & (port.data != 0))
                m.d.comb += Assert((port.data & ~connected_mask) == 0)
    return occupancy


def _contract(m: Module, entering, leaving, idle, capacity: int) -> Signal:
    """Assert C1-C3 on the handshakes ``entering``/``leaving`` (bit vectors) and ``idle``;
    returns ``occ``."""
    came = popcount(m, entering, "entering")
    went = popcount(m, leaving, "leaving")
    occ = Signal(range(capacity + 1), name="occ")
    m.d.sync += occ.eq(occ + came - went)
    m.d.comb += [
        Assert(went <= occ),                                     # C1
        Assert(occ + came - went <= capacity),                   # C2
        Assert(idle == (occ == 0)),                              # C3
    ]
    return occ


class RouterContract(Elaboratable):
    """One router of a ``cfg`` mesh at (x, y), every port free (a port the mesh ties off
    carries nothing in). Flits carry the routing fields and 2 bits of data (the router moves the
    rest as opaque bits), with coordinates as wide as the mesh needs, addressed inside the mesh
    (the mesh proof shows the routers keep them so)."""

    def __init__(self, cfg: FabricConfig, x: int, y: int, router_cls=Router,
                 invariants: bool = True):
        coord = max(1, (max(cfg.mesh_w, cfg.mesh_h) - 1).bit_length())
        layout = data.StructLayout({"dst_x": coord, "dst_y": coord, "kind": 3, "data": 2})
        self.router = router_cls(cfg, x, y, layout=layout)
        self.invariants = invariants        # False: the contract alone (a bounded check)

    def free_inputs(self):
        return formal.free_inputs(self.router)

    def elaborate(self, platform):
        m = Module()
        router, cfg = self.router, self.router.cfg
        r = _elaborated(router, platform)
        m.submodules.router = router
        m.d.comb += Assume(~ResetSignal())
        connected = connected_ports(cfg, router.x, router.y)
        for port, link in zip(Port, router.inputs()):
            if port not in connected:                 # tied off in the mesh
                m.d.comb += Assume(~link.valid)
            with m.If(link.valid):
                m.d.comb += Assume((link.payload.dst_x < cfg.mesh_w)
                                   & (link.payload.dst_y < cfg.mesh_h))
        occ = _contract(m, Cat(s.valid & s.ready for s in router.inputs()),
                        Cat(s.valid & s.ready for s in router.outputs()), ~router.busy,
                        len(connected) * cfg.router_fifo_depth)
        if self.invariants:
            m.d.comb += Assert(occ == sum(router_invariants(m, router, r)))
        return m


class MeshContract(Elaboratable):
    """The whole ``cfg`` mesh (real flits): the tiles and the host inject any flit addressed
    inside the mesh and take flits whenever they like."""

    def __init__(self, cfg: FabricConfig):
        self.mesh = Mesh(cfg)

    def free_inputs(self):
        return formal.free_inputs(self.mesh)

    def elaborate(self, platform):
        m = Module()
        mesh, cfg = self.mesh, self.mesh.cfg
        mesh_module = mesh.elaborate(platform)
        mesh.elaborate = lambda platform: mesh_module
        m.submodules.mesh = mesh
        m.d.comb += Assume(~ResetSignal())

        def inside_mesh(flit):
            return (flit.dst_x < cfg.mesh_w) & (flit.dst_y < cfg.mesh_h)

        for link in [*mesh.tile_in, mesh.host_in]:
            with m.If(link.valid):
                m.d.comb += Assume(inside_mesh(link.payload))
        inside = []
        for name, router in _Internals(mesh_module).subs.items():
            if not name.startswith("router_"):
                continue
            r = _elaborated(router, platform)
            inside += router_invariants(m, router, r)
            connected = connected_ports(cfg, router.x, router.y)
            layout = router._layout
            # every stored flit stays addressed inside the mesh: FIFOs, grant stages (the flit
            # is still in LUT RAM at ``popped_slot``), output registers
            for o in connected:
                on = PORT_NAMES[o]
                with m.If(r[f"o_valid_{on}"]):
                    m.d.comb += Assert(inside_mesh(layout(r[f"o_payload_{on}"])))
            for i, iname in enumerate(PORT_NAMES):
                for o in connected:
                    on = PORT_NAMES[o]
                    with m.If(r[f"a_valid_{on}"] & r[f"a_src_{on}"][i]):
                        m.d.comb += Assert(inside_mesh(layout(r[f"popped_{iname}"])))
                flits = r[f"flits_{iname}"]
                for j in range(cfg.router_fifo_depth):
                    port = flits.read_port(domain="comb")
                    m.d.comb += port.addr.eq(r[f"consume_{iname}"] + j)
                    with m.If(r[f"level_{iname}"] > j):
                        m.d.comb += Assert(inside_mesh(layout(port.data)))
        occ = _contract(m, mesh.inject_fire, mesh.eject_fire, mesh.idle, mesh_capacity(cfg))
        m.d.comb += Assert(occ == sum(inside))
        return m


def _prove(name, top, timeout=600):
    return formal.prove(name, top, ports=top.free_inputs(), mode="prove", depth=2,
                        solver="yices", timeout=timeout)


@pytest.mark.parametrize("mesh, at, depth", [
    ((3, 3), (1, 1), 4),        # all five ports, the default FIFO depth
    ((2, 2), (0, 0), 2),        # the host's corner (West = host link)
    ((2, 2), (1, 1), 2),        # a corner with two neighbours (North, West)
])
def test_router_keeps_the_contract_proof(mesh, at, depth):
    cfg = FabricConfig(mesh_w=mesh[0], mesh_h=mesh[1], router_fifo_depth=depth)
    log = _prove(f"router_contract_{mesh}_{at}_{depth}", RouterContract(cfg, *at))
    assert "successful proof by k-induction" in log


def test_mesh_keeps_the_contract_proof():
    cfg = FabricConfig(mesh_w=2, mesh_h=1, router_fifo_depth=2)
    log = _prove("mesh_contract_2x1", MeshContract(cfg))
    assert "successful proof by k-induction" in log


#: router bugs the proofs must catch: (text of hw/noc/router.py, its replacement)
ROUTER_BUGS = {
    # the output register stays valid after its transfer: the flit leaves twice (C1)
    "duplicates a flit": ("m.d.sync += [v.eq(0), src.eq(0)]", "m.d.sync += [src.eq(0)]"),
    # a flit waiting at a stalled output is no longer counted: busy falls with it inside (C3)
    "forgets a stalled flit": ("released.eq(_any(self.outputs()[o].ready & o_src[o][i]",
                               "released.eq(_any(o_src[o][i]"),
    # an input takes a flit with its FIFO full: one is overwritten, and the count wraps
    "drops a flit": ("ready[i].eq(occ_next < depth)", "ready[i].eq(occ_next <= depth)"),
}


def _failed_assertions(log: str) -> set[tuple[str, int]]:
    return {(Path(f).name, int(line)) for f, line in
            re.findall(r"failed assertion \S+ at (\S+?):(\d+)", log)}


def _lines_of(function) -> set[tuple[str, int]]:
    lines, first = inspect.getsourcelines(function)
    return {(Path(inspect.getsourcefile(function)).name, first + k) for k in range(len(lines))}


@pytest.mark.parametrize("bug", list(ROUTER_BUGS))
def test_contract_proof_catches_an_injected_router_bug(bug):
    """The buggy router breaks the contract itself from reset (a bounded check of C1-C3 alone,
    no invariants: a real trace that matters to the barrier); the full proof fails too."""
    buggy = patched_module("neuroloom.hw.noc.router", *ROUTER_BUGS[bug]).Router
    cfg = FabricConfig(mesh_w=2, mesh_h=2, router_fifo_depth=2)
    top = RouterContract(cfg, 0, 0, router_cls=buggy, invariants=False)
    with pytest.raises(formal.ProofFailed) as e:
        formal.prove(f"router_bug_{bug}", top, ports=top.free_inputs(), mode="bmc", depth=10,
                     solver="yices", timeout=600)
    failed = _failed_assertions(str(e.value))
    assert failed, str(e.value)
    assert failed <= _lines_of(_contract), (failed, str(e.value)[-2000:])
    with pytest.raises(formal.ProofFailed):
        _prove(f"router_bug_{bug}_proof", RouterContract(cfg, 0, 0, router_cls=buggy))
