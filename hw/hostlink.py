"""Host link: AXI4-Stream-shaped 32-bit command port of the fabric.

Receives command frames (``neuroloom.contract.hostproto``, ``docs/hostlink.md``) on ``s_axis``,
buffers a whole frame in block
RAM, checks it completely (length against TLAST, checksum, opcode, payload shape, every target
address) and only then executes it: configuration writes/reads and spikes go into the mesh as
flits, RUN drives the barrier and forwards HOST_OUT flits as OUTPUT frames, CLEAR clears the
cores and the barrier. Every command gets exactly one response frame (or an ERROR frame) on
``m_axis``. A bad frame changes nothing; the link never waits on anything but the handshakes.
``sim/hostlink_model.py`` is its reference model.
"""

from __future__ import annotations

from amaranth.hdl import Assert, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.hostproto import (
    FABRIC_COUNTERS,
    MAGIC,
    MAX_PAYLOAD,
    RESPONSE,
    STATUS_WORDS,
    WORD_BITS,
    Cmd,
    ErrorCode,
    FrameHeader,
    MeshSize,
    Opcode,
    OutputTag,
    StatusFlags,
    Target,
)
from neuroloom.contract.layouts import (
    FlitKind,
    Mem,
    cfg_addr_layout,
    flit_layout,
    mem_depth,
    mem_parts,
)

__all__ = ["HostLink", "axis_layout", "NUM_FABRIC_COUNTERS"]

NUM_FABRIC_COUNTERS = len(FABRIC_COUNTERS)

axis_layout = data.StructLayout({"data": WORD_BITS, "last": 1})


class HostLink(wiring.Component):
    """Frame-level host port.

    Interface attributes
    --------------------
    s_axis : In(stream of {data, last})   command words from the host (TDATA/TLAST)
    m_axis : Out(stream of {data, last})  response words to the host
    o_flit : Out(flit stream)             into the mesh (router (0,0) west input)
    i_flit : In(flit stream)              from the mesh (router (0,0) west output)
    run_start, run_steps, running, step   barrier run control (``hw.barrier.Barrier``)
    clear : Out(1)                        pulse: clear the barrier and every core
    cores_idle : In(1)                    every core is idle (clear finished)
    quiet : In(1)                         no flit in the mesh and every core idle: a RUN starts
                                          only then, so spikes and writes sent before it have
                                          all landed in the buffers of the step they precede
    overrun : In(1)                       the barrier's sticky overrun flag
    counters : In(32) x 6                 fabric counters returned by COUNTERS (FABRIC_COUNTERS)
    """

    def __init__(self, cfg: FabricConfig, *, buffer_words: int = MAX_PAYLOAD + 2):
        if buffer_words < 4:
            raise ValueError(f"buffer_words={buffer_words!r} must be >= 4")
        self._cfg = cfg
        self._depth = buffer_words
        flit = stream.Signature(flit_layout(cfg))
        axis = stream.Signature(axis_layout)
        super().__init__({
            "s_axis": In(axis), "m_axis": Out(axis),
            "o_flit": Out(flit), "i_flit": In(flit),
            "run_start": Out(1), "run_steps": Out(32), "running": In(1), "step": In(32),
            "clear": Out(1), "cores_idle": In(1), "quiet": In(1), "overrun": In(1),
            "counters": In(32).array(NUM_FABRIC_COUNTERS),
        })

    @property
    def cfg(self) -> FabricConfig:
        return self._cfg

    def _cfg_addr_ok(self, m: Module, addr) -> Signal:
        """Combinational: ``addr`` (a ``cfg_addr_layout`` view) names an existing word part."""
        ok = Signal(name="cfg_addr_ok")
        with m.Switch(addr.mem):
            for mm in Mem:
                with m.Case(int(mm)):
                    m.d.comb += ok.eq((addr.index < mem_depth(self._cfg, mm)) &
                                      (addr.part < mem_parts(self._cfg, mm)))
            with m.Default():
                m.d.comb += ok.eq(0)
        return ok

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        W = cfg.state_width

        m.submodules.buf = buf = Memory(shape=WORD_BITS, depth=self._depth, init=[])
        wr = buf.write_port()
        rd = buf.read_port()                        # synchronous: data one cycle after addr
        # the block RAM's output registered once more (``rdq``: two cycles after addr): a
        # DP16KD read without its output register has ~5.8 ns clock-to-out, too slow for the
        # address checks and the FSM behind it
        rdq = Signal(WORD_BITS)
        m.d.sync += rdq.eq(rd.data)

        # -- receive ------------------------------------------------------------------------------
        count = Signal(range(self._depth + 2))      # words received in this frame
        overflow = Signal()
        head = Signal(FrameHeader)
        total = Signal(WORD_BITS)                   # sum of the words before the current one
        chk_ok = Signal()
        op, seq, length = head.opcode, head.seq, head.length

        # -- execution state ----------------------------------------------------------------------
        idx = Signal(range(self._depth + 1))        # buffer index being read
        items = Signal(range(self._depth))          # targets (pairs or words) in the payload
        item = Signal(range(self._depth))
        err = Signal(ErrorCode, init=ErrorCode.BAD_OPCODE)   # an enum signal resets to a member
        tgt = Signal(Target)
        val = Signal(WORD_BITS)
        resp = Signal(FrameHeader)                  # header of the response being sent
        word_i = Signal.like(resp.length, name="word_i")
        # checksum of the response words sent so far: the word of the last handshake waits one
        # cycle in ``tx_pend`` before it is added, so the response-word mux and the 32-bit adder
        # are in different cycles. A checksum word is sent two cycles or more after the last
        # word's handshake (a state without a handshake between), when ``tx_pend`` is 0 and
        # ``tx_sum`` the whole sum: the adder is not in front of ``m_axis``
        tx_sum = Signal(WORD_BITS)
        tx_pend = Signal(WORD_BITS)
        tx_check = Signal(WORD_BITS)
        m.d.comb += tx_check.eq(tx_sum + tx_pend)
        m.d.sync += [tx_sum.eq(tx_check), tx_pend.eq(0)]
        out_flit = Signal(flit_layout(cfg))
        out_tag = Signal(OutputTag)                 # payload of the OUTPUT frame being sent
        out_value = Signal(WORD_BITS)
        started = Signal()

        is_pairs = (op == Cmd.WRITE) | (op == Cmd.INJECT)
        known = Signal()
        m.d.comb += known.eq((op >= Cmd.WRITE) & (op <= Cmd.STATUS))
        no_payload = (op == Cmd.CLEAR) | (op == Cmd.COUNTERS) | (op == Cmd.STATUS)

        # target checks on the word read from the buffer
        t_in = Target(rdq)
        tile_ok = (t_in.x < cfg.mesh_w) & (t_in.y < cfg.mesh_h)
        cfg_ok = self._cfg_addr_ok(m, cfg_addr_layout(cfg)(t_in.addr))
        target_ok = tile_ok & Mux(op == Cmd.INJECT, t_in.addr < cfg.axons, cfg_ok)
        target_ok_q = Signal()                      # registered: VALIDATE_CHECK acts on it
        m.d.sync += target_ok_q.eq(target_ok)
        bad = Signal()                              # CHECK found an error (code in ``err``)

        # saturate an INJECT payload to the state width, sign-extended into flit data
        vs = val.as_signed()
        lo, hi = -(1 << (W - 1)), (1 << (W - 1)) - 1
        sat_val = Mux(vs > hi, Const(hi, WORD_BITS),
                      Mux(vs < lo, Const(lo % (1 << WORD_BITS), WORD_BITS), val))

        # ``m_axis`` from an output register (valid, data, last from flip-flops): the FSM's
        # response-word multiplexer ends at it, not at whatever takes the stream (in the 1x1
        # fabric, the link's state -> that multiplexer -> the consumer's register was the
        # critical path). The register takes a word whenever it is empty or its word leaves in
        # this cycle (``tx_ready``), so the words still stream at one per cycle.
        tx_valid = Signal()
        tx_word = Signal(WORD_BITS)
        tx_last = Signal()
        tx_ready = Signal()
        m.d.comb += tx_ready.eq(~self.m_axis.valid | self.m_axis.ready)
        with m.If(tx_ready):
            m.d.sync += [self.m_axis.valid.eq(tx_valid), self.m_axis.payload.data.eq(tx_word),
                         self.m_axis.payload.last.eq(tx_last)]

        def tx(word, nxt, last=False):
            """Drive one response word; go to ``nxt`` when accepted."""
            m.d.comb += [tx_valid.eq(1), tx_word.eq(word), tx_last.eq(last)]
            with m.If(tx_ready):
                m.d.sync += tx_pend.eq(word)
                if last:
                    m.d.sync += [tx_sum.eq(0), tx_pend.eq(0)]
                m.next = nxt

        def respond(opcode, n, seq_):
            m.d.sync += [resp.opcode.eq(opcode), resp.length.eq(n), resp.seq.eq(seq_),
                         word_i.eq(0)]
            m.next = "RESP_HDR"

        header_word = resp.as_value()
        flags = Signal(StatusFlags)
        m.d.comb += flags.overrun.eq(self.overrun)
        status_words = Signal(WORD_BITS)            # MAGIC, MeshSize, step, StatusFlags
        with m.Switch(word_i):
            with m.Case(0):
                m.d.comb += status_words.eq(MAGIC)
            with m.Case(1):
                m.d.comb += status_words.eq(
                    MeshSize.const({"width": cfg.mesh_w, "height": cfg.mesh_h}).as_value())
            with m.Case(2):
                m.d.comb += status_words.eq(self.step)
            with m.Default():
                m.d.comb += status_words.eq(flags)
        counter_word = Signal(WORD_BITS)
        with m.Switch(word_i):
            for i in range(NUM_FABRIC_COUNTERS):
                with m.Case(i):
                    m.d.comb += counter_word.eq(self.counters[i])
        resp_word = Signal(WORD_BITS)
        with m.Switch(resp.opcode):
            with m.Case(Opcode.ERROR):
                m.d.comb += resp_word.eq(Mux(word_i == 0, err, head.as_value()))
            with m.Case(Opcode.RUN_RESP):
                m.d.comb += resp_word.eq(self.step)
            with m.Case(Opcode.STATUS_RESP):
                m.d.comb += resp_word.eq(status_words)
            with m.Case(Opcode.COUNTERS_RESP):
                m.d.comb += resp_word.eq(counter_word)
        # the payload word ``word_i`` of a generic response, registered: RESP_W sends it a
        # cycle after ``word_i`` (or ``resp``) last changed, so the word muxes end here and not
        # at ``m_axis`` (live values, the step and the counters, are a cycle old)
        resp_word_q = Signal(WORD_BITS)
        m.d.sync += resp_word_q.eq(resp_word)

        # Flits to and from the mesh pass through one register each way, so that the FSM's state
        # decode reaches neither router (0, 0) nor, through the handshakes, the barrier's
        # accounting (in the 1x1 fabric that chain, link state -> west input -> injection
        # count -> step end, was the longest path). Out: the FSM hands a flit over only into
        # the empty register (``o_full``); a RUN waits until it has left (``quiet`` counts only
        # the mesh). In: the register takes a flit whenever empty (``i_full``), with the step
        # number of that cycle (``i_step``: the step the flit left the mesh in, what an OUTPUT
        # frame is tagged with); the FSM consumes it (``i_take``) in the states that used to
        # accept flits. Host-link flits are at most one every two cycles either way.
        o_full = Signal()
        o_flit = Signal(flit_layout(cfg))
        m.d.comb += [self.o_flit.valid.eq(o_full), self.o_flit.payload.eq(o_flit)]
        with m.If(self.o_flit.ready):
            m.d.sync += o_full.eq(0)
        i_full = Signal()
        i_flit = Signal(flit_layout(cfg))
        i_step = Signal.like(self.step)
        i_take = Signal()
        m.d.comb += self.i_flit.ready.eq(~i_full)
        with m.If(self.i_flit.valid & ~i_full):
            m.d.sync += [i_full.eq(1), i_flit.eq(self.i_flit.payload), i_step.eq(self.step)]
        with m.If(i_take):
            m.d.sync += i_full.eq(0)

        # ``clear`` and ``run_start`` are one-cycle pulses from flip-flops (set by the FSM, low
        # again the next cycle): the FSM's decode does not reach every core's clear logic, the
        # fabric counters or the barrier's step logic
        m.d.sync += [self.clear.eq(0), self.run_start.eq(0)]
        with m.FSM(name="link"):
            with m.State("RECV"):
                m.d.comb += [self.s_axis.ready.eq(1), i_take.eq(i_full)]   # drop strays
                with m.If(self.s_axis.valid):
                    word = self.s_axis.payload.data
                    m.d.comb += [wr.addr.eq(count), wr.data.eq(word),
                                 wr.en.eq(count < self._depth)]
                    with m.If(count == 0):
                        m.d.sync += head.eq(word)
                    with m.If(count >= self._depth):
                        m.d.sync += overflow.eq(1)
                    m.d.sync += [total.eq(total + word), count.eq(count + 1)]
                    with m.If(self.s_axis.payload.last):
                        m.d.sync += chk_ok.eq(total == word)
                        m.next = "CHECK"
            # The frame's checks are decided in CHECK and registered (``bad`` and the error
            # code), and acted on in DECIDE: the length/count compares and the priority of the
            # errors do not sit in front of the response header's and the FSM's flip-flops.
            with m.State("CHECK"):
                pairs_bad = is_pairs & length[0]
                shape_bad = pairs_bad | (no_payload & (length != 0)) | \
                    ((op == Cmd.RUN) & (length != 1))
                m.d.sync += [items.eq(Mux(is_pairs, length >> 1, length)), item.eq(0),
                             idx.eq(1), count.eq(0), total.eq(0), overflow.eq(0), bad.eq(1)]
                with m.If(overflow | (count < 2) | (count - 2 != length)):
                    m.d.sync += err.eq(ErrorCode.BAD_LENGTH)
                with m.Elif(~chk_ok):
                    m.d.sync += err.eq(ErrorCode.BAD_CHECKSUM)
                with m.Elif(~known):
                    m.d.sync += err.eq(ErrorCode.BAD_OPCODE)
                with m.Elif(shape_bad):
                    m.d.sync += err.eq(ErrorCode.BAD_LENGTH)
                with m.Else():
                    m.d.sync += bad.eq(0)
                m.next = "DECIDE"
            with m.State("DECIDE"):
                with m.If(bad):
                    respond(Opcode.ERROR, 2, seq)
                with m.Elif(is_pairs | (op == Cmd.READ)):
                    m.next = "VALIDATE_ADDR"
                with m.Else():
                    m.next = "EXEC"
            # -- every target checked before anything executes ----------------------------------
            with m.State("VALIDATE_ADDR"):
                with m.If(item == items):
                    m.d.sync += [item.eq(0), idx.eq(1)]
                    m.next = "EXEC"
                with m.Else():
                    m.d.comb += rd.addr.eq(idx)
                    m.next = "VALIDATE_WAIT"
            with m.State("VALIDATE_WAIT"):
                m.next = "VALIDATE_TEST"
            with m.State("VALIDATE_TEST"):          # the target's checks on ``rdq``, registered
                m.next = "VALIDATE_CHECK"
            with m.State("VALIDATE_CHECK"):
                with m.If(~target_ok_q):
                    m.d.sync += err.eq(ErrorCode.BAD_ADDRESS)
                    respond(Opcode.ERROR, 2, seq)
                with m.Else():
                    m.d.sync += [item.eq(item + 1), idx.eq(idx + Mux(is_pairs, 2, 1))]
                    m.next = "VALIDATE_ADDR"
            with m.State("EXEC"):
                with m.Switch(op):
                    with m.Case(Cmd.WRITE, Cmd.INJECT):
                        m.next = "PAIR_T"
                    with m.Case(Cmd.READ):
                        m.d.sync += [resp.opcode.eq(Opcode.READ_RESP), resp.seq.eq(seq),
                                     resp.length.eq(length << 1)]
                        m.next = "READ_HDR"
                    with m.Case(Cmd.RUN):
                        m.d.comb += rd.addr.eq(1)
                        m.next = "RUN_READ"
                    with m.Case(Cmd.CLEAR):         # after the last flit sent has left
                        with m.If(~o_full):
                            m.d.sync += self.clear.eq(1)
                            m.next = "CLEAR_DELAY"
                    with m.Case(Cmd.COUNTERS):
                        respond(Opcode.COUNTERS_RESP, NUM_FABRIC_COUNTERS, seq)
                    with m.Default():      # STATUS
                        respond(Opcode.STATUS_RESP, STATUS_WORDS, seq)
            # -- WRITE / INJECT: one flit per pair ----------------------------------------------
            with m.State("PAIR_T"):
                with m.If(item == items):
                    respond(op | RESPONSE, 0, seq)
                with m.Else():
                    m.d.comb += rd.addr.eq(idx)
                    m.next = "PAIR_V"
            with m.State("PAIR_V"):
                m.d.comb += rd.addr.eq(idx + 1)
                m.next = "PAIR_TGT"
            with m.State("PAIR_TGT"):
                m.d.sync += tgt.eq(rdq)
                m.next = "PAIR_FLIT"
            with m.State("PAIR_FLIT"):
                m.d.sync += val.eq(rdq)
                m.next = "PAIR_SEND"
            with m.State("PAIR_SEND"):
                m.d.comb += [out_flit.dst_x.eq(tgt.x), out_flit.dst_y.eq(tgt.y),
                             out_flit.addr.eq(tgt.addr),
                             out_flit.kind.eq(Mux(op == Cmd.INJECT, FlitKind.SPIKE,
                                                  FlitKind.CFG_WRITE)),
                             out_flit.data.eq(Mux(op == Cmd.INJECT, sat_val, val))]
                with m.If(~o_full):
                    m.d.sync += [o_full.eq(1), o_flit.eq(out_flit),
                                 item.eq(item + 1), idx.eq(idx + 2)]
                    m.next = "PAIR_T"
            # -- READ: one request at a time, answers streamed in target order ------------------
            with m.State("READ_HDR"):
                tx(header_word, "READ_T")
            with m.State("READ_T"):
                with m.If(item == items):
                    m.next = "RESP_CHK"
                with m.Else():
                    m.d.comb += rd.addr.eq(idx)
                    m.next = "READ_WAIT_RAM"
            with m.State("READ_WAIT_RAM"):
                m.next = "READ_LATCH"
            with m.State("READ_LATCH"):
                m.d.sync += tgt.eq(rdq)
                m.next = "READ_SEND"
            with m.State("READ_SEND"):
                m.d.comb += [out_flit.dst_x.eq(tgt.x), out_flit.dst_y.eq(tgt.y),
                             out_flit.addr.eq(tgt.addr), out_flit.kind.eq(FlitKind.CFG_READ)]
                with m.If(~o_full):
                    m.d.sync += [o_full.eq(1), o_flit.eq(out_flit)]
                    m.next = "READ_WAIT"
            with m.State("READ_WAIT"):
                m.d.comb += i_take.eq(i_full)
                with m.If(i_full & (i_flit.kind == FlitKind.READ_RESP)):
                    m.d.sync += val.eq(i_flit.data)
                    m.next = "READ_TX_T"
            with m.State("READ_TX_T"):
                tx(tgt.as_value(), "READ_TX_V")
            with m.State("READ_TX_V"):
                with m.If(tx_ready):
                    m.d.sync += [item.eq(item + 1), idx.eq(idx + 1)]
                tx(val, "READ_T")
            # -- RUN: drive the barrier, forward host outputs --------------------------------------
            with m.State("RUN_READ"):
                m.next = "RUN_ARM"
            with m.State("RUN_ARM"):
                m.d.sync += [self.run_steps.eq(rdq), started.eq(0)]
                m.next = "RUN_QUIET"
            with m.State("RUN_QUIET"):
                with m.If(self.quiet & ~o_full):
                    m.next = "RUN_START"
            with m.State("RUN_START"):
                m.d.sync += self.run_start.eq(1)
                m.next = "RUN_STARTED"
            with m.State("RUN_STARTED"):           # the barrier sees the pulse in this cycle
                m.next = "RUN_WAIT"
            with m.State("RUN_WAIT"):
                m.d.comb += i_take.eq(i_full)
                m.d.sync += started.eq(1)
                with m.If(i_full & (i_flit.kind == FlitKind.HOST_OUT)):
                    m.d.sync += [out_tag.step.eq(i_step),
                                 out_tag.channel.eq(i_flit.addr),
                                 out_value.eq(i_flit.data),
                                 resp.opcode.eq(Opcode.OUTPUT), resp.seq.eq(0),
                                 resp.length.eq(2)]
                    m.next = "OUT_HDR"
                with m.Elif(started & ~self.running):
                    respond(Opcode.RUN_RESP, 1, seq)
            with m.State("OUT_HDR"):
                tx(header_word, "OUT_TAG")
            with m.State("OUT_TAG"):
                tx(out_tag.as_value(), "OUT_VALUE")
            with m.State("OUT_VALUE"):
                tx(out_value, "OUT_GAP")
            with m.State("OUT_GAP"):           # ``tx_sum`` takes in the last word
                m.next = "OUT_CHK"
            with m.State("OUT_CHK"):
                m.d.sync += Assert(tx_pend == 0, "host link: checksum sent before complete")
                tx(tx_sum, "RUN_WAIT", last=True)
            # -- CLEAR ---------------------------------------------------------------------------
            with m.State("CLEAR_DELAY"):       # the barrier sees ``clear`` now
                m.next = "CLEAR_DELAY2"
            # the cores see it now (through the fabric's register per core) and lower
            # ``cores_idle`` the cycle after
            with m.State("CLEAR_DELAY2"):
                m.next = "CLEAR_WAIT"
            with m.State("CLEAR_WAIT"):
                with m.If(self.cores_idle & ~self.running):
                    respond(Opcode.CLEAR_RESP, 0, seq)
            # -- generic response: header, resp.length words of resp_word, checksum ---------------
            with m.State("RESP_HDR"):
                tx(header_word, "RESP_W")
            with m.State("RESP_W"):          # no handshake when done: READ_T neither
                with m.If(word_i == resp.length):
                    m.next = "RESP_CHK"
                with m.Else():
                    with m.If(tx_ready):
                        m.d.sync += word_i.eq(word_i + 1)
                    tx(resp_word_q, "RESP_W_NEXT")
            with m.State("RESP_W_NEXT"):     # ``resp_word_q`` follows ``word_i``
                m.next = "RESP_W"
            with m.State("RESP_CHK"):
                m.d.sync += Assert(tx_pend == 0, "host link: checksum sent before complete")
                tx(tx_sum, "RECV", last=True)
        return m
