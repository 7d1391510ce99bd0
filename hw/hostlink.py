"""Host link: AXI4-Stream-shaped 32-bit command port of the fabric.

Receives command frames (``firmware/hostproto.py``) on ``s_axis``, buffers a whole frame in block
RAM, checks it completely (length against TLAST, checksum, opcode, payload shape, every target
address) and only then executes it: configuration writes/reads and spikes go into the mesh as
flits, RUN drives the barrier and forwards HOST_OUT flits as OUTPUT frames, CLEAR clears the
cores and the barrier. Every command gets exactly one response frame (or an ERROR frame) on
``m_axis``. A bad frame changes nothing; the link never waits on anything but the handshakes.
``sim/hostlink_model.py`` is its reference model.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.hostproto import ERROR as ERROR_OP
from neuroloom.contract.hostproto import MAGIC, MAX_PAYLOAD, OUTPUT, RESPONSE, Cmd, ErrorCode
from neuroloom.contract.layouts import FlitKind, Mem, flit_layout, mem_depth, mem_parts

__all__ = ["HostLink", "axis_layout", "NUM_FABRIC_COUNTERS"]

NUM_FABRIC_COUNTERS = 6

axis_layout = data.StructLayout({"data": 32, "last": 1})


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
    counters : In(32) x 6                 fabric counters returned by COUNTERS
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
        """Combinational: ``addr`` (20 bits: mem|index|part) names an existing word part."""
        ok = Signal(name="cfg_addr_ok")
        part, index, mem = addr[0:3], addr[3:16], addr[16:20]
        with m.Switch(mem):
            for mm in Mem:
                with m.Case(int(mm)):
                    m.d.comb += ok.eq((index < mem_depth(self._cfg, mm)) &
                                      (part < mem_parts(self._cfg, mm)))
            with m.Default():
                m.d.comb += ok.eq(0)
        return ok

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        W = cfg.state_width

        m.submodules.buf = buf = Memory(shape=32, depth=self._depth, init=[])
        wr = buf.write_port()
        rd = buf.read_port()                        # synchronous: data one cycle after addr

        # -- receive ------------------------------------------------------------------------------
        count = Signal(range(self._depth + 2))      # words received in this frame
        overflow = Signal()
        head = Signal(32)
        total = Signal(32)                          # sum of the words before the current one
        chk_ok = Signal()
        op = head[0:8]
        seq = head[8:16]
        length = head[16:32]

        # -- execution state ----------------------------------------------------------------------
        idx = Signal(range(self._depth + 1))        # buffer index being read
        items = Signal(range(self._depth))          # targets (pairs or words) in the payload
        item = Signal(range(self._depth))
        err = Signal(3)
        tgt = Signal(32)
        val = Signal(32)
        resp_len = Signal(16)
        resp_op = Signal(8)
        resp_seq = Signal(8)
        word_i = Signal(16)
        tx_sum = Signal(32)
        out_flit = Signal(flit_layout(cfg))
        host_flit = Signal(flit_layout(cfg))
        host_step = Signal(16)
        started = Signal()

        is_pairs = (op == Cmd.WRITE) | (op == Cmd.INJECT)
        known = Signal()
        m.d.comb += known.eq((op >= Cmd.WRITE) & (op <= Cmd.STATUS))
        no_payload = (op == Cmd.CLEAR) | (op == Cmd.COUNTERS) | (op == Cmd.STATUS)

        # target checks on the word read from the buffer
        t_x, t_y, t_addr = rd.data[0:4], rd.data[4:8], rd.data[8:28]
        tile_ok = (t_x < cfg.mesh_w) & (t_y < cfg.mesh_h)
        cfg_ok = self._cfg_addr_ok(m, t_addr)
        target_ok = tile_ok & Mux(op == Cmd.INJECT, t_addr < cfg.axons, cfg_ok)

        # saturate an INJECT payload to the state width, sign-extended into flit data
        vs = val.as_signed()
        lo, hi = -(1 << (W - 1)), (1 << (W - 1)) - 1
        sat_val = Mux(vs > hi, Const(hi, 32), Mux(vs < lo, Const(lo & 0xFFFFFFFF, 32), val))

        def tx(word, nxt, last=False):
            """Drive one response word; go to ``nxt`` when accepted."""
            m.d.comb += [self.m_axis.valid.eq(1), self.m_axis.payload.data.eq(word),
                         self.m_axis.payload.last.eq(last)]
            with m.If(self.m_axis.ready):
                m.d.sync += tx_sum.eq(tx_sum + word)
                if last:
                    m.d.sync += tx_sum.eq(0)
                m.next = nxt

        def respond(opcode, n, seq_):
            m.d.sync += [resp_op.eq(opcode), resp_len.eq(n), resp_seq.eq(seq_), word_i.eq(0)]
            m.next = "RESP_HDR"

        header_word = Cat(resp_op, resp_seq, resp_len)
        status_words = Signal(32)
        with m.Switch(word_i):
            with m.Case(0):
                m.d.comb += status_words.eq(MAGIC)
            with m.Case(1):
                m.d.comb += status_words.eq(cfg.mesh_w | cfg.mesh_h << 8)
            with m.Case(2):
                m.d.comb += status_words.eq(self.step)
            with m.Default():
                m.d.comb += status_words.eq(self.overrun)
        counter_word = Signal(32)
        with m.Switch(word_i):
            for i in range(NUM_FABRIC_COUNTERS):
                with m.Case(i):
                    m.d.comb += counter_word.eq(self.counters[i])
        resp_word = Signal(32)
        with m.Switch(resp_op):
            with m.Case(ERROR_OP):
                m.d.comb += resp_word.eq(Mux(word_i == 0, err, head))
            with m.Case(Cmd.RUN | RESPONSE):
                m.d.comb += resp_word.eq(self.step)
            with m.Case(Cmd.STATUS | RESPONSE):
                m.d.comb += resp_word.eq(status_words)
            with m.Case(Cmd.COUNTERS | RESPONSE):
                m.d.comb += resp_word.eq(counter_word)
            with m.Case(OUTPUT):
                m.d.comb += resp_word.eq(Mux(word_i == 0,
                                             Cat(host_step, host_flit.addr[0:16]),
                                             host_flit.data))

        m.d.comb += self.o_flit.payload.eq(out_flit)

        with m.FSM(name="link"):
            with m.State("RECV"):
                m.d.comb += [self.s_axis.ready.eq(1), self.i_flit.ready.eq(1)]   # drop strays
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
            with m.State("CHECK"):
                pairs_bad = is_pairs & length[0]
                shape_bad = pairs_bad | (no_payload & (length != 0)) | \
                    ((op == Cmd.RUN) & (length != 1))
                m.d.sync += [items.eq(Mux(is_pairs, length >> 1, length)), item.eq(0),
                             idx.eq(1), count.eq(0), total.eq(0), overflow.eq(0)]
                with m.If(overflow | (count < 2) | (count - 2 != length)):
                    m.d.sync += err.eq(ErrorCode.BAD_LENGTH)
                    respond(ERROR_OP, 2, seq)
                with m.Elif(~chk_ok):
                    m.d.sync += err.eq(ErrorCode.BAD_CHECKSUM)
                    respond(ERROR_OP, 2, seq)
                with m.Elif(~known):
                    m.d.sync += err.eq(ErrorCode.BAD_OPCODE)
                    respond(ERROR_OP, 2, seq)
                with m.Elif(shape_bad):
                    m.d.sync += err.eq(ErrorCode.BAD_LENGTH)
                    respond(ERROR_OP, 2, seq)
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
                    m.next = "VALIDATE_CHECK"
            with m.State("VALIDATE_CHECK"):
                with m.If(~target_ok):
                    m.d.sync += err.eq(ErrorCode.BAD_ADDRESS)
                    respond(ERROR_OP, 2, seq)
                with m.Else():
                    m.d.sync += [item.eq(item + 1), idx.eq(idx + Mux(is_pairs, 2, 1))]
                    m.next = "VALIDATE_ADDR"
            with m.State("EXEC"):
                with m.Switch(op):
                    with m.Case(Cmd.WRITE, Cmd.INJECT):
                        m.next = "PAIR_T"
                    with m.Case(Cmd.READ):
                        m.d.sync += [resp_op.eq(Cmd.READ | RESPONSE), resp_seq.eq(seq),
                                     resp_len.eq(length << 1)]
                        m.next = "READ_HDR"
                    with m.Case(Cmd.RUN):
                        m.d.comb += rd.addr.eq(1)
                        m.next = "RUN_ARM"
                    with m.Case(Cmd.CLEAR):
                        m.d.comb += self.clear.eq(1)
                        m.next = "CLEAR_DELAY"
                    with m.Case(Cmd.COUNTERS):
                        respond(Cmd.COUNTERS | RESPONSE, NUM_FABRIC_COUNTERS, seq)
                    with m.Default():      # STATUS
                        respond(Cmd.STATUS | RESPONSE, 4, seq)
            # -- WRITE / INJECT: one flit per pair ----------------------------------------------
            with m.State("PAIR_T"):
                with m.If(item == items):
                    respond(op | RESPONSE, 0, seq)
                with m.Else():
                    m.d.comb += rd.addr.eq(idx)
                    m.next = "PAIR_V"
            with m.State("PAIR_V"):
                m.d.sync += tgt.eq(rd.data)
                m.d.comb += rd.addr.eq(idx + 1)
                m.next = "PAIR_FLIT"
            with m.State("PAIR_FLIT"):
                m.d.sync += val.eq(rd.data)
                m.next = "PAIR_SEND"
            with m.State("PAIR_SEND"):
                m.d.comb += [out_flit.dst_x.eq(tgt[0:4]), out_flit.dst_y.eq(tgt[4:8]),
                             out_flit.addr.eq(tgt[8:28]),
                             out_flit.kind.eq(Mux(op == Cmd.INJECT, FlitKind.SPIKE,
                                                  FlitKind.CFG_WRITE)),
                             out_flit.data.eq(Mux(op == Cmd.INJECT, sat_val, val)),
                             self.o_flit.valid.eq(1)]
                with m.If(self.o_flit.ready):
                    m.d.sync += [item.eq(item + 1), idx.eq(idx + 2)]
                    m.next = "PAIR_T"
            # -- READ: one request at a time, answers streamed in target order ------------------
            with m.State("READ_HDR"):
                tx(header_word, "READ_T")
            with m.State("READ_T"):
                with m.If(item == items):
                    m.next = "RESP_CHK"
                with m.Else():
                    m.d.comb += rd.addr.eq(idx)
                    m.next = "READ_LATCH"
            with m.State("READ_LATCH"):
                m.d.sync += tgt.eq(rd.data)
                m.next = "READ_SEND"
            with m.State("READ_SEND"):
                m.d.comb += [out_flit.dst_x.eq(tgt[0:4]), out_flit.dst_y.eq(tgt[4:8]),
                             out_flit.addr.eq(tgt[8:28]), out_flit.kind.eq(FlitKind.CFG_READ),
                             self.o_flit.valid.eq(1)]
                with m.If(self.o_flit.ready):
                    m.next = "READ_WAIT"
            with m.State("READ_WAIT"):
                m.d.comb += self.i_flit.ready.eq(1)
                with m.If(self.i_flit.valid & (self.i_flit.payload.kind == FlitKind.READ_RESP)):
                    m.d.sync += val.eq(self.i_flit.payload.data)
                    m.next = "READ_TX_T"
            with m.State("READ_TX_T"):
                tx(tgt, "READ_TX_V")
            with m.State("READ_TX_V"):
                with m.If(self.m_axis.ready):
                    m.d.sync += [item.eq(item + 1), idx.eq(idx + 1)]
                tx(val, "READ_T")
            # -- RUN: drive the barrier, forward host outputs --------------------------------------
            with m.State("RUN_ARM"):
                m.d.sync += [self.run_steps.eq(rd.data), started.eq(0)]
                m.next = "RUN_QUIET"
            with m.State("RUN_QUIET"):
                with m.If(self.quiet):
                    m.next = "RUN_START"
            with m.State("RUN_START"):
                m.d.comb += self.run_start.eq(1)
                m.next = "RUN_WAIT"
            with m.State("RUN_WAIT"):
                m.d.comb += self.i_flit.ready.eq(1)
                m.d.sync += started.eq(1)
                with m.If(self.i_flit.valid & (self.i_flit.payload.kind == FlitKind.HOST_OUT)):
                    m.d.sync += [host_flit.eq(self.i_flit.payload), host_step.eq(self.step),
                                 resp_op.eq(OUTPUT),
                                 resp_seq.eq(0), resp_len.eq(2), word_i.eq(0)]
                    m.next = "OUT_HDR"
                with m.Elif(started & ~self.running):
                    respond(Cmd.RUN | RESPONSE, 1, seq)
            with m.State("OUT_HDR"):
                tx(header_word, "OUT_W")
            with m.State("OUT_W"):
                tx(resp_word, "OUT_W")
                with m.If(self.m_axis.ready):
                    m.d.sync += word_i.eq(word_i + 1)
                    with m.If(word_i == 1):
                        m.next = "OUT_CHK"
            with m.State("OUT_CHK"):
                tx(tx_sum, "RUN_WAIT", last=True)
            # -- CLEAR ---------------------------------------------------------------------------
            with m.State("CLEAR_DELAY"):       # cores lower cores_idle the cycle after clear
                m.next = "CLEAR_WAIT"
            with m.State("CLEAR_WAIT"):
                with m.If(self.cores_idle & ~self.running):
                    respond(Cmd.CLEAR | RESPONSE, 0, seq)
            # -- generic response: header, resp_len words of resp_word, checksum -------------------
            with m.State("RESP_HDR"):
                tx(header_word, "RESP_W")
            with m.State("RESP_W"):
                with m.If(word_i == resp_len):
                    m.next = "RESP_CHK"
                with m.Else():
                    with m.If(self.m_axis.ready):
                        m.d.sync += word_i.eq(word_i + 1)
                    tx(resp_word, "RESP_W")
            with m.State("RESP_CHK"):
                tx(tx_sum, "RECV", last=True)
        return m
