# amaranth: UnusedElaboratable=no
"""UART and the UART <-> host-port bridge (amaranth.sim).

The testbench plays the host's serial line bit by bit (its own 8N1 bit-banger and line monitor,
its own byte framing written from docs/hostlink.md) and the fabric's host port; frames must
come through word for word, and every kind of damage must end as a frame the host link
reference model answers with ERROR, never as a hang or a silently executed command.
"""

import random

import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from neuroloom.contract.hostproto import ERROR, Cmd, ErrorCode, decode_frames, encode_frame
from neuroloom.fpga.uart import (
    FT231X_BAUDS,
    UARTHostBridge,
    UARTReceiver,
    UARTTransmitter,
    fastest_baud,
    uart_divisor,
)
from neuroloom.fpga.uart_model import BridgeModel, split_frames
from neuroloom.sim.golden import GoldenFabric
from neuroloom.sim.hostlink_model import HostLinkModel
from tests.test_hostlink_model import CFG

DIV = 6


# -- the host side, written from the documentation -------------------------------------------------
def slip(words):
    """Bytes of one frame as the host sends it: abort, escaped little-endian words, END."""
    out = [0xDB, 0xC0]
    for w in words:
        for k in range(4):
            b = (w >> (8 * k)) & 0xFF
            out += {0xC0: [0xDB, 0xDC], 0xDB: [0xDB, 0xDD]}.get(b, [b])
    return out + [0xC0]


def unslip(data):
    """Frames (lists of words) in a byte stream from the board."""
    frames, cur, esc = [], [], False
    for b in data:
        if esc:
            cur.append({0xDC: 0xC0, 0xDD: 0xDB}[b])
            esc = False
        elif b == 0xDB:
            esc = True
        elif b == 0xC0:
            assert len(cur) % 4 == 0, f"frame of {len(cur)} bytes"
            frames.append([int.from_bytes(bytes(cur[i:i + 4]), "little")
                           for i in range(0, len(cur), 4)])
            cur = []
        else:
            cur.append(b)
    assert not cur and not esc, f"unterminated frame {cur}"
    return frames


async def send_bytes(ctx, line, data, bit_cycles=DIV, stop_bits=1, gap=0, bad_stop=()):
    """Bit-bang bytes onto ``line`` (8N1); ``bad_stop``: indices sent with a low stop bit."""
    for i, b in enumerate(data):
        bits = [0] + [(b >> k) & 1 for k in range(8)] + [int(i not in bad_stop)] * stop_bits
        for bit in bits:
            ctx.set(line, bit)
            await ctx.tick().repeat(bit_cycles)
        ctx.set(line, 1)
        if gap:
            await ctx.tick().repeat(gap)


async def receive_bytes(ctx, line, n, timeout=100_000, bit_cycles=DIV):
    """Sample ``n`` bytes from ``line`` at the middle of each bit."""
    out = []
    for _ in range(n):
        cycles = 0
        while ctx.get(line):
            await ctx.tick()
            cycles += 1
            assert cycles < timeout, f"line idle for {timeout} cycles after {len(out)} bytes"
        await ctx.tick().repeat(bit_cycles // 2)
        assert not ctx.get(line), "start bit did not last"
        b = 0
        for k in range(8):
            await ctx.tick().repeat(bit_cycles)
            b |= ctx.get(line) << k
        await ctx.tick().repeat(bit_cycles)
        assert ctx.get(line), "stop bit low"
        out.append(b)
    return out


# -- divisor -----------------------------------------------------------------------------------
def test_divisor_for_usual_clocks():
    assert uart_divisor(25e6, 115_200) == 217
    assert uart_divisor(48e6, 3_000_000) == 16
    assert uart_divisor(50e6, 1_000_000) == 50


def test_divisor_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"too fast for a 10 MHz clock.*baud <= 2500000"):
        uart_divisor(10e6, 3_000_000)
    with pytest.raises(ValueError, match=r"divisor 13\.33 rounds to 13, a 2\.56% baud error"):
        uart_divisor(40e6, 3_000_000)


def test_fastest_baud_follows_the_clock():
    assert fastest_baud(48e6) == 3_000_000
    assert fastest_baud(40e6) == 2_000_000          # 40/3 = 13.3: 2.6 % off
    assert fastest_baud(25e6) in FT231X_BAUDS
    assert uart_divisor(25e6, fastest_baud(25e6)) >= 4


# -- receiver and transmitter ---------------------------------------------------------------------
def test_transmitter_to_receiver_back_to_back():
    m = Module()
    m.submodules.tx = tx = UARTTransmitter(DIV)
    m.submodules.rx = rx = UARTReceiver(DIV)
    m.d.comb += rx.rx.eq(tx.tx)
    data = [0x00, 0xFF, 0x55, 0xAA, 0xC0, 0xDB] + [random.Random(1).randrange(256)
                                                     for _ in range(20)]
    got, faults = [], []

    async def producer(ctx):
        for b in data:
            ctx.set(tx.i.valid, 1)
            ctx.set(tx.i.payload, b)
            await ctx.tick().until(tx.i.ready)
        ctx.set(tx.i.valid, 0)

    async def consumer(ctx):
        ctx.set(rx.o.ready, 1)
        while len(got) < len(data):
            _, _, valid, payload = await ctx.tick().sample(rx.o.valid, rx.o.payload)
            if valid:
                got.append(payload.data)
                faults.append(payload.fault)

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run_until(1e-6 * DIV * 10 * (len(data) + 4))
    assert got == data, f"received {got}, sent {data}"
    assert not any(faults)


def rx_bench(drive, n, check=None):
    """Run a receiver with ``drive(ctx, line)``; returns [(byte, fault)] and error pulses."""
    dut = UARTReceiver(DIV)
    got, errors = [], [0]

    async def driver(ctx):
        await drive(ctx, dut.rx)

    async def consumer(ctx):
        ctx.set(dut.o.ready, 1)
        async for _, _, valid, payload, err in ctx.tick().sample(dut.o.valid, dut.o.payload,
                                                                  dut.error):
            errors[0] += err
            if valid:
                got.append((payload.data, payload.fault))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(driver)
    sim.add_testbench(consumer, background=True)
    sim.run_until(1e-6 * DIV * 10 * (n + 3))
    return got, errors[0]


def test_receiver_flags_a_low_stop_bit():
    async def drive(ctx, line):
        await send_bytes(ctx, line, [0x12, 0x34, 0x56], bad_stop={1}, gap=DIV)
    got, errors = rx_bench(drive, 3)
    assert got == [(0x12, 0), (0x34, 1), (0x56, 0)], got
    assert errors == 1


def test_receiver_at_the_wrong_baud_reports_faults():
    async def drive(ctx, line):            # the far end runs 40 % slow
        await send_bytes(ctx, line, [0x00, 0xF0, 0x00, 0x0F], bit_cycles=DIV * 14 // 10)
    got, errors = rx_bench(drive, 6)
    assert errors >= 1 and any(f for _, f in got), got


def test_receiver_keeps_a_waiting_byte_and_marks_the_one_after_a_loss():
    dut = UARTReceiver(DIV)
    got = []

    async def driver(ctx):
        await send_bytes(ctx, dut.rx, [1, 2, 3])        # nobody takes them
        ctx.set(dut.o.ready, 1)
        await ctx.tick()
        got.append((ctx.get(dut.o.payload.data), ctx.get(dut.o.payload.fault)))
        await ctx.tick()
        ctx.set(dut.o.ready, 0)
        await send_bytes(ctx, dut.rx, [4])
        got.append((ctx.get(dut.o.payload.data), ctx.get(dut.o.payload.fault)))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(driver)
    sim.run()
    assert got == [(1, 0), (4, 1)], got


# -- the bridge ----------------------------------------------------------------------------------
def bridge_bench(host_bytes, responses=(), max_cycles=None, **send):
    """Send ``host_bytes`` into the bridge's rx line; collect the command words it delivers
    (with TLAST); answer with the ``responses`` words and collect the bytes on tx."""
    dut = UARTHostBridge(DIV, fifo_depth=8)
    words, lasts, faults = [], [], [0]
    resp_words = [w for f in responses for w in f]
    resp_lasts = [i == len(f) - 1 for f in responses for i in range(len(f))]
    n_resp_bytes = sum(len(slip(f)) - 2 for f in responses)
    tx_bytes = []
    rng = random.Random(3)

    async def host(ctx):
        await send_bytes(ctx, dut.rx, host_bytes, **send)
        await ctx.tick().repeat(DIV * 4)

    async def fabric_in(ctx):
        async for _, _, valid, ready, payload, fault in ctx.tick().sample(
                dut.o_cmd.valid, dut.o_cmd.ready, dut.o_cmd.payload, dut.fault):
            ctx.set(dut.o_cmd.ready, int(rng.random() < 0.7))
            faults[0] += fault
            if valid and ready:
                words.append(payload.data)
                lasts.append(payload.last)

    async def fabric_out(ctx):
        for w, last in zip(resp_words, resp_lasts):
            ctx.set(dut.i_resp.valid, 1)
            ctx.set(dut.i_resp.payload, {"data": w, "last": last})
            await ctx.tick().until(dut.i_resp.ready)
        ctx.set(dut.i_resp.valid, 0)

    async def monitor(ctx):
        tx_bytes.extend(await receive_bytes(ctx, dut.tx, n_resp_bytes))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(host)
    sim.add_testbench(fabric_in, background=True)
    sim.add_testbench(fabric_out)
    sim.add_testbench(monitor)
    cycles = max_cycles or DIV * 12 * (len(host_bytes) + 8)
    sim.run_until(1e-6 * cycles)
    return words, lasts, tx_bytes, faults[0]


def split(words, lasts):
    frames, cur = [], []
    for w, last in zip(words, lasts):
        cur.append(w)
        if last:
            frames.append(cur)
            cur = []
    assert not cur, f"words without TLAST at the end: {cur}"
    return frames


TRICKY = encode_frame(Cmd.WRITE, [0xC0DBC0DB, 0xDBDBC0C0, 0x000000C0, 0xDB000000], seq=0xC0)
STATUS = encode_frame(Cmd.STATUS, [], seq=7)


def test_frames_round_trip_through_the_bridge():
    host = slip(TRICKY) + slip(STATUS)
    answers = [encode_frame(Cmd.WRITE | 0x80, [], 0xC0), encode_frame(0x90, [0xC0C0, 0xDBDB]),
               encode_frame(Cmd.STATUS | 0x80, [0x4E4C4F4D, 0x101, 0, 0], 7)]
    words, lasts, tx_bytes, faults = bridge_bench(host, answers)
    assert split(words, lasts) == [TRICKY, STATUS]
    assert unslip(tx_bytes) == answers
    assert bytes(tx_bytes) == BridgeModel.encode(*split_frames([w for f in answers for w in f]))
    assert faults == 0


def test_back_to_back_bytes_with_no_idle_between_them():
    frames = [encode_frame(Cmd.INJECT, [i, i * 0x01010101], seq=i) for i in range(6)]
    host = [b for f in frames for b in slip(f)]
    words, lasts, _, faults = bridge_bench(host)
    assert split(words, lasts) == frames
    assert faults == 0


def answers(words, lasts):
    """What the host link (its reference model) says to a delivered word stream."""
    return decode_frames(HostLinkModel(GoldenFabric(CFG)).process(words, lasts))


@pytest.mark.parametrize("damage", ["lost byte", "lost END", "framing error", "noise",
                                    "bad escape", "truncated"])
def test_damage_ends_in_an_error_frame_and_the_next_frame_runs(damage):
    first = encode_frame(Cmd.WRITE, [0x12345678, 0x9ABCDEF0], seq=1)
    data, bad_stop = slip(first), set()
    if damage == "lost byte":
        del data[6]
    elif damage == "lost END":
        data.pop()
    elif damage == "framing error":
        bad_stop = {5}
    elif damage == "noise":
        data[4:4] = [0x5A]
    elif damage == "bad escape":
        data[4:4] = [0xDB, 0x01]
    elif damage == "truncated":
        data = data[:9] + [0xC0]
    host = data + slip(STATUS)
    # a byte after a low stop bit needs an idle bit first (the receiver waits for the idle level)
    words, lasts, _, faults = bridge_bench(host, bad_stop=bad_stop, gap=DIV if bad_stop else 0)
    assert (words, lasts) == BridgeModel().feed(bytes(host), faults=bad_stop), \
        "the RTL and the bridge's reference model deliver different words"
    frames = answers(words, lasts)
    assert [f.opcode for f in frames] == [ERROR, Cmd.STATUS | 0x80], \
        [f.describe() for f in frames]
    assert frames[0].payload[0] in (ErrorCode.BAD_LENGTH, ErrorCode.BAD_CHECKSUM)
    assert frames[1].seq == 7
    assert faults >= 1


def test_the_abort_before_a_frame_is_ignored_when_nothing_is_pending():
    words, lasts, _, faults = bridge_bench([0xDB, 0xC0, 0xC0, 0xC0] + slip(STATUS))
    assert split(words, lasts) == [STATUS]
    assert faults == 0


def test_a_slow_host_port_loses_bytes_but_not_the_link():
    """The fabric takes nothing for a while: the FIFO overflows, the frame is damaged."""
    dut = UARTHostBridge(DIV, fifo_depth=2)
    frame = encode_frame(Cmd.READ, list(range(8)), seq=2)
    words, lasts = [], []

    async def host(ctx):
        await send_bytes(ctx, dut.rx, slip(frame) + slip(STATUS))
        await ctx.tick().repeat(DIV * 4)

    async def fabric(ctx):
        await ctx.tick().repeat(DIV * 10 * 20)
        ctx.set(dut.o_cmd.ready, 1)
        async for _, _, valid, payload in ctx.tick().sample(dut.o_cmd.valid, dut.o_cmd.payload):
            if valid:
                words.append(payload.data)
                lasts.append(payload.last)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(host)
    sim.add_testbench(fabric, background=True)
    sim.run()
    frames = answers(words, lasts)
    assert [f.opcode for f in frames] == [ERROR, Cmd.STATUS | 0x80], \
        [f.describe() for f in frames]


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match=r"divisor=3 must be an int >= 4"):
        UARTReceiver(3)
    with pytest.raises(ValueError, match=r"fifo_depth=1 must be an int >= 2"):
        UARTHostBridge(8, fifo_depth=1)
