# amaranth: UnusedElaboratable=no
"""amaranth.sim unit tests of :class:`hw.noc.Router` (async testbenches, one per stream)."""

import gc
import random
from collections import deque

import pytest
from amaranth.sim import Simulator

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.layouts import FlitKind, flit_layout, unpack
from neuroloom.hw.noc import HOST_KINDS, PORT_NAMES, Port, Router, route_port

CFG3 = FabricConfig(mesh_w=3, mesh_h=3)


def make_flit(cfg, **fields):
    return flit_layout(cfg).const(fields)


def bits(value) -> int:
    return value.as_bits() if hasattr(value, "as_bits") else int(value)


def run(dut, *testbenches, background=(), deadline=1e-3):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for tb in testbenches:
        sim.add_testbench(tb)
    for tb in background:
        sim.add_testbench(tb, background=True)
    sim.run_until(deadline) if deadline else sim.run()


async def put(ctx, link, payload, idle=0):
    """Send one flit on ``link`` after ``idle`` idle cycles (valid held until ready)."""
    for _ in range(idle):
        await ctx.tick()
    ctx.set(link.payload, payload)
    ctx.set(link.valid, 1)
    await ctx.tick().until(link.ready)
    ctx.set(link.valid, 0)


def in_link(dut, port):
    return getattr(dut, f"i_{PORT_NAMES[port]}")


def out_link(dut, port):
    return getattr(dut, f"o_{PORT_NAMES[port]}")


@pytest.mark.parametrize("xy", [(0, 0), (1, 1), (2, 1), (1, 2)])
def test_route_matches_reference(xy):
    x, y = xy
    dut = Router(CFG3, x, y)
    cases = [(dx, dy, kind) for dx in range(3) for dy in range(3)
             for kind in (FlitKind.SPIKE, FlitKind.CFG_READ, FlitKind.HOST_OUT)]
    cases += [(2, 2, FlitKind.READ_RESP)]
    seen = []

    async def testbench(ctx):
        for link in dut.outputs():
            ctx.set(link.ready, 1)
        for dx, dy, kind in cases:
            await put(ctx, dut.i_local, make_flit(CFG3, dst_x=dx, dst_y=dy, kind=kind, data=7))
            await ctx.tick()            # arbitration into the grant stage, then the output
            await ctx.tick()            # register: valid three cycles after the handshake
            fired = [p for p in Port if ctx.get(out_link(dut, p).valid)]
            seen.append(((dx, dy, kind), fired))
            await ctx.tick()

    run(dut, testbench, deadline=None)
    for (dx, dy, kind), fired in seen:
        want = route_port(x, y, dx, dy, kind)
        assert fired == [want], f"router {xy}: flit to ({dx},{dy}) {kind!r} left {fired}, " \
                                f"expected [{want!r}]"


def test_three_cycles_per_hop_and_backpressure_fills_router():
    dut = Router(CFG3, 1, 1)
    depth = CFG3.router_fifo_depth
    log = {}

    async def testbench(ctx):
        assert ctx.get(dut.i_west.ready) == 1
        ctx.set(dut.o_east.ready, 0)
        ctx.set(dut.i_west.payload, make_flit(CFG3, dst_x=2, dst_y=1, data=1))
        ctx.set(dut.i_west.valid, 1)
        await ctx.tick()
        ctx.set(dut.i_west.valid, 0)
        log["valid_by_cycle"] = [ctx.get(dut.o_east.valid)]
        for _ in range(2):
            await ctx.tick()
            log["valid_by_cycle"].append(ctx.get(dut.o_east.valid))
        accepted = 1
        for n in range(2, 3 * depth):
            ctx.set(dut.i_west.payload, make_flit(CFG3, dst_x=2, dst_y=1, data=n))
            ctx.set(dut.i_west.valid, 1)
            *_, ready = await ctx.tick().sample(dut.i_west.ready)
            accepted += ready
        ctx.set(dut.i_west.valid, 0)
        log["accepted"] = accepted
        log["stuck_payload"] = bits(ctx.get(dut.o_east.payload))
        ctx.set(dut.o_east.ready, 1)
        got = []
        for _ in range(depth + 2):
            *_, v, p = await ctx.tick().sample(dut.o_east.valid, dut.o_east.payload)
            if v:
                got.append(p.data)
        log["drained"] = got

    run(dut, testbench, deadline=None)
    assert log["valid_by_cycle"] == [0, 0, 1], \
        "a flit must cross the router in three cycles (FIFO head, grant stage, output register)"
    # depth flits of one input inside: output register, grant stage, depth - 2 in the FIFO
    assert log["accepted"] == depth, f"accepted {log['accepted']} flits, FIFO depth {depth}"
    assert log["stuck_payload"] == bits(make_flit(CFG3, dst_x=2, dst_y=1, data=1))
    assert log["drained"] == list(range(1, depth + 1))


def test_saturation_disjoint_paths():
    """Five streams to five different outputs: one flit per cycle on every output."""
    dut = Router(CFG3, 1, 1)
    paths = {Port.NORTH: (1, 2), Port.SOUTH: (1, 0), Port.EAST: (0, 1), Port.WEST: (2, 1),
             Port.LOCAL: (1, 1)}
    cycles = 200
    counts = {p: 0 for p in Port}

    async def testbench(ctx):
        for p, (dx, dy) in paths.items():
            ctx.set(in_link(dut, p).payload, make_flit(CFG3, dst_x=dx, dst_y=dy))
            ctx.set(in_link(dut, p).valid, 1)
        for p in Port:
            ctx.set(out_link(dut, p).ready, 1)
        for _ in range(cycles):
            sampled = await ctx.tick().sample(*(out_link(dut, p).valid for p in Port))
            for p, v in zip(Port, sampled[2:]):  # (clk, rst, *samples)
                counts[p] += v

    run(dut, testbench, deadline=None)
    for p, n in counts.items():
        # pipeline fill: three cycles through the router, then 1 flit/cycle
        assert n >= cycles - 3, f"output {p.name}: {n} flits in {cycles} cycles"


def test_round_robin_is_fair():
    """All five inputs want Local: grants rotate, one flit per cycle."""
    dut = Router(CFG3, 1, 1)
    cycles = 300
    order = []

    async def testbench(ctx):
        for p in Port:
            ctx.set(in_link(dut, p).payload, make_flit(CFG3, dst_x=1, dst_y=1, data=int(p)))
            ctx.set(in_link(dut, p).valid, 1)
        ctx.set(dut.o_local.ready, 1)
        for _ in range(cycles):
            *_, v, payload = await ctx.tick().sample(dut.o_local.valid, dut.o_local.payload)
            if v:
                order.append(payload.data)

    run(dut, testbench, deadline=None)
    # pipeline fill: three cycles through the router, then 1 flit/cycle
    assert len(order) >= cycles - 3, f"{len(order)} grants in {cycles} cycles"
    for k in range(0, len(order) - 5):
        window = sorted(order[k:k + 5])
        assert window == [0, 1, 2, 3, 4], f"grants {order[k:k + 5]} at {k} are not round-robin"


#: Router port -> (dx, dy) to the neighbour behind it, and the neighbour's port facing back.
NEIGHBOUR = {Port.NORTH: ((0, -1), Port.SOUTH), Port.SOUTH: ((0, 1), Port.NORTH),
             Port.EAST: ((1, 0), Port.WEST), Port.WEST: ((-1, 0), Port.EAST)}


def arrives_on(cfg, x, y, port, dx, dy, kind) -> bool:
    """Whether a mesh of X-Y routers can deliver flit (dx, dy, kind) to input ``port`` of router
    (x, y): from the core (Local) any flit; from the host (West of (0, 0)) the kinds it sends;
    from a neighbour only a flit that the reference routing, run at the neighbour, sends here."""
    if port == Port.LOCAL:
        return True
    (ox, oy), facing = NEIGHBOUR[port]
    nx, ny = x + ox, y + oy
    if (nx, ny) == (-1, 0):
        return kind not in HOST_KINDS
    if not (0 <= nx < cfg.mesh_w and 0 <= ny < cfg.mesh_h):
        return False
    return route_port(nx, ny, dx, dy, kind) == facing


@pytest.mark.parametrize("seed, mesh, xy", [(1, 3, (1, 1)), (2, 3, (1, 1)), (3, 2, (0, 0)),
                                            (4, 3, (2, 1))])
def test_random_traffic_with_backpressure(seed, mesh, xy):
    """Random X-Y-legal flits, idle and backpressure on every port: exactly once, in order,
    unaltered, out of the port the reference routing names, ``misroute`` never high."""
    cfg = FabricConfig(mesh_w=mesh, mesh_h=mesh, router_fifo_depth=2 + seed % 3)
    x, y = xy
    dut = Router(cfg, x, y)
    rng = random.Random(seed)
    per_input = 300
    kinds = [FlitKind.SPIKE, FlitKind.CFG_WRITE, FlitKind.HOST_OUT]
    ins = [p for p in Port if any(arrives_on(cfg, x, y, p, dx, dy, kind) for kind in kinds
                                  for dx in range(mesh) for dy in range(mesh))]
    expected = {(i, o): deque() for i in Port for o in Port}
    received = []
    misrouted = []
    sends = {i: [] for i in Port}
    for i in ins:
        flits = []
        for n in range(per_input):
            while True:
                kind = rng.choice(kinds)
                dx, dy = rng.randrange(mesh), rng.randrange(mesh)
                if arrives_on(cfg, x, y, i, dx, dy, kind):
                    break
            f = make_flit(cfg, dst_x=dx, dst_y=dy, kind=kind, addr=rng.randrange(1 << 20),
                          data=(int(i) << 16) | n)
            expected[i, route_port(x, y, dx, dy, kind)].append(bits(f))
            flits.append(f)
        sends[i] = flits

    def producer(port):
        async def testbench(ctx):
            link = in_link(dut, port)
            for f in sends[port]:
                await put(ctx, link, f, idle=rng.choice([0, 0, 0, 1, 3]))
        return testbench

    def consumer(port):
        async def testbench(ctx):
            link = out_link(dut, port)
            ready_pattern = [rng.random() < 0.6 for _ in range(97)]
            prev = None
            cycle = 0
            while True:
                ctx.set(link.ready, ready_pattern[cycle % len(ready_pattern)])
                *_, valid, ready, payload = await ctx.tick().sample(link.valid, link.ready,
                                                                   link.payload)
                payload = bits(payload)
                if prev is not None and prev[0] and not prev[1]:
                    assert valid and payload == prev[2], \
                        f"output {port.name} changed valid/payload before ready at cycle {cycle}"
                if valid and ready:
                    received.append((port, payload))
                prev = (valid, ready, payload)
                cycle += 1
        return testbench

    async def waiter(ctx):
        total = per_input * len(ins)
        quiet = 0                       # cycles since the last delivery (stuck: give up)
        while len(received) < total and quiet < 400:
            before = len(received)
            *_, bad = await ctx.tick().sample(dut.misroute)
            if bad:
                misrouted.append(bad)
            quiet = 0 if len(received) > before else quiet + 1

    # producers in the background too: a flit stuck in the router must fail the checks below,
    # not hang the producer behind it
    run(dut, waiter, background=[*(producer(p) for p in Port), *(consumer(p) for p in Port)],
        deadline=None)
    layout = flit_layout(cfg)
    for port, payload in received:
        src = Port(unpack(layout, payload)["data"] >> 16)
        queue = expected[src, port]
        assert queue, f"unexpected flit {payload:#x} from {src.name} at output {port.name}"
        head = queue.popleft()
        assert payload == head, f"{src.name}->{port.name}: got {payload:#x}, expected {head:#x}"
    left = {k: len(q) for k, q in expected.items() if q}
    assert not left, f"flits never delivered: {left}"
    assert len(received) == per_input * len(ins) >= 3 * per_input
    assert not misrouted, "misroute rose on X-Y-legal traffic"


def test_illegal_turns_are_held_and_flagged():
    """A U-turn (East in, East out) and a Y-to-X turn (North in, West out) are turns X-Y routing
    never makes: each flit stays at the head of its input (with what follows it), ``misroute``
    rises, and the router keeps serving its other inputs."""
    dut = Router(CFG3, 1, 1)
    log = {"out": [], "misroute": []}

    async def testbench(ctx):
        for link in dut.outputs():
            ctx.set(link.ready, 1)
        ctx.set(dut.o_east.ready, 0)       # the legal flits wait until the outputs are watched
        await put(ctx, dut.i_east, make_flit(CFG3, dst_x=2, dst_y=1, data=1))      # U-turn
        await put(ctx, dut.i_north, make_flit(CFG3, dst_x=0, dst_y=1, data=2))     # Y to X
        await put(ctx, dut.i_east, make_flit(CFG3, dst_x=0, dst_y=1, data=3))      # behind it
        await put(ctx, dut.i_north, make_flit(CFG3, dst_x=1, dst_y=2, data=4))     # behind it
        for n in range(5, 9):                                                      # legal
            await put(ctx, dut.i_west, make_flit(CFG3, dst_x=2, dst_y=1, data=n))
        ctx.set(dut.o_east.ready, 1)
        for _ in range(20):
            sampled = await ctx.tick().sample(dut.misroute, *(
                v for p in Port for v in (out_link(dut, p).valid, out_link(dut, p).payload)))
            log["misroute"].append(sampled[2])
            pairs = sampled[3:]
            for p in Port:
                if pairs[2 * p]:
                    log["out"].append((p, pairs[2 * p + 1].data))
        log["busy"] = ctx.get(dut.busy)

    run(dut, testbench, deadline=None)
    assert log["out"] == [(Port.EAST, n) for n in range(5, 9)], log["out"]
    assert all(log["misroute"]), "misroute must stay high while the flits are held"
    assert log["busy"] == 1


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_off_mesh_flit_fails_assert():
    dut = Router(FabricConfig(mesh_w=2, mesh_h=2), 1, 1)

    async def testbench(ctx):
        await put(ctx, dut.i_local, make_flit(dut.cfg, dst_x=2, dst_y=1))
        for _ in range(3):
            await ctx.tick()

    with pytest.raises(AssertionError, match=r"router \(1,1\): flit routed off the mesh"):
        run(dut, testbench, deadline=None)
    gc.collect()  # finalise the interrupted testbench coroutine while the filter applies


def test_constructor_checks_arguments():
    cfg = FabricConfig(mesh_w=2, mesh_h=3)
    with pytest.raises(ValueError, match=r"router x=2 outside the mesh \(0\.\.1\)"):
        Router(cfg, 2, 0)
    with pytest.raises(ValueError, match=r"router y=-1 outside the mesh \(0\.\.2\)"):
        Router(cfg, 0, -1)
    with pytest.raises(TypeError, match="cfg must be a FabricConfig, not 'x'"):
        Router("x", 0, 0)
    r = Router(cfg, 1, 2)
    assert (r.x, r.y, r.cfg) == (1, 2, cfg)


@pytest.mark.rtl
def test_router_synthesizes_without_latches():
    """synth_ecp5 of a centre router: no latches, FIFOs in distributed RAM, sane size."""
    from neuroloom.fpga.synth import synthesize
    from neuroloom.hw.verilog import to_verilog

    r = synthesize(to_verilog(Router(CFG3, 1, 1), "router"), top="router", pnr=False)
    assert not r.latches, f"latch inferred: {r.cells}"
    assert 100 < r.lut4 < 4000, f"router uses {r.lut4} LUT4"


def test_one_hot_arbiter_rotates_and_grants_a_requester():
    """RoundRobinOneHot: grant is one requester (one-hot), the first after the last winner."""
    from neuroloom.hw.noc.arbiter import RoundRobinOneHot

    n = 5
    dut = RoundRobinOneHot(n)
    rng = random.Random(3)
    log = []

    async def testbench(ctx):
        last = n - 1
        for _ in range(400):
            req = rng.randrange(1 << n)
            adv = rng.random() < 0.7
            ctx.set(dut.requests, req)
            ctx.set(dut.advance, adv)
            grant = ctx.get(dut.grant)
            order = [(last + 1 + j) % n for j in range(n)]
            want = next((i for i in order if req >> i & 1), None)
            log.append((req, last, grant, want))
            await ctx.tick()
            if adv and want is not None:
                last = want

    run(dut, testbench, deadline=None)
    for req, last, grant, want in log:
        expected = 0 if want is None else 1 << want
        assert grant == expected, f"requests {req:05b} after winner {last}: grant {grant:05b}"
