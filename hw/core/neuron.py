"""Neuron engine: the per-step neuron pass, pipelined (group schedule, batched issue, a fixed-
latency datapath, write-back).

On ``start`` (step ``t``) the engine visits the group descriptors in order; a group is active
when ``t >= start`` and its phase counter is 0 (phase counters count ``(t - start) % period``
without a divider, so steps must arrive in order: 0, 1, 2, ...; ``phase_reset`` restarts them).

An active group runs in **batches** of up to ``slots`` neurons. A batch runs its program one
**round** per instruction: the round issues the instruction once for every neuron of the batch
(slot ``j`` = neuron ``first + batch base + j``), one issue per cycle, into a pipeline of fixed
latency ``DEPTH`` that never stalls. MODES issues one row of ``neuron_lanes`` mode entries per
cycle, so a slot's MODES takes ``ceil(modes / lanes)`` issues (one if it has no modes).

Hazards (``docs/core.md`` has the argument in full):

* **registers**: every slot has its register file (R0..R7, the saturated ACC operand, P and the
  pending spike) in a small LUT memory indexed by slot. A slot is *busy* from the first issue of
  an instruction until that instruction writes back; the next instruction of the slot issues
  only when it is not busy. Within a batch different slots are different neurons, so nothing
  else is shared. With ``slots > DEPTH`` a full batch never waits.
* **memories**: round 0 reads STATE and ACC (and clears the ACC word with the slot's last
  issue of round 0), every issue reads COEF, MODES issues read and (``LAT_X`` later) write back
  MSTATE/MCOEF rows that no other issue of the pass touches; the last round writes STATE and
  reads ROUTE_INDEX. Groups may overlap, so a new group starts only when the pipeline is empty.
* **emissions**: the pending spike leaves a cycle after write-back (registered) into a FIFO;
  an issue that can emit reserves FIFO space first (``credit``), so write-back never waits.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.layouts import (
    MODE_COEFS,
    MODE_STATE,
    Emit,
    Op,
    Operand,
    group_layout,
    instr_layout,
    modes_instr_layout,
    route_index_layout,
)

from .alu import NeuronDatapath, delay, ram_delay, reg, sat_hw

__all__ = ["NeuronEngine", "emission_layout"]


def emission_layout(cfg: FabricConfig) -> data.StructLayout:
    """A neuron's spike, handed to the route unit: payload and its route words."""
    return data.StructLayout({
        "payload": signed(cfg.state_width),
        "base": unsigned(cfg.route_addr_bits),
        "count": unsigned(cfg.route_count_bits),
    })


def _op_layout(cfg: FabricConfig, slots: int) -> data.StructLayout:
    """One issue travelling down the pipeline."""
    L = cfg.neuron_lanes
    return data.StructLayout({
        "valid": 1,
        "slot": unsigned(max(1, (slots - 1).bit_length())),
        "n": unsigned(cfg.neuron_bits),
        "first": 1,      # round 0: registers from STATE/ACC
        "last": 1,       # the program's last instruction (STATE write-back, emission)
        "final": 1,      # the slot's last issue of this instruction (register write-back)
        "mfirst": 1,     # the slot's first MODES issue (restart the sum)
        "instr": unsigned(32),
        "mrow": unsigned(max(1, cfg.mode_bits - (L - 1).bit_length())),
        "mlive": unsigned(L),
        "bank": unsigned(cfg.synapse_lanes),   # one-hot: the ACC bank of neuron n
        "dec": _dec_layout(cfg),
    })


def _dec_layout(cfg: FabricConfig) -> data.StructLayout:
    """The instruction's operand selects, decoded at issue (one-hot, round 0 folded in), so
    that operand select is AND-OR gates driven by flip-flops of small fan-out.

    ``oh_*`` (used in P2): one bit per source, STATE register ``i < state_regs`` (round 0)
    then register-file register ``0..7`` (later rounds); ``k_*``: one bit per coefficient.
    Flags (used in P3): ``*_r`` the selected register, ``*_as`` / ``*_am`` the ACC operand
    in round 0 / later, ``x0_m`` / ``x1_m`` the mode entry (MODES), ``k_i`` the
    instruction's coefficients (not MODES)."""
    ns = cfg.state_regs + 8
    return data.StructLayout({
        "oh_a": ns, "oh_a1": ns, "oh_b": ns, "oh_d": ns,
        "k_0": 8, "k_1": 8, "l_0": 8, "l_1": 8,
        "a_r": 1, "a_as": 1, "a_am": 1, "b_r": 1, "b_as": 1, "b_am": 1,
        "x0_m": 1, "x0_r": 1, "x0_as": 1, "x0_am": 1, "x1_m": 1, "x1_r": 1, "k_i": 1,
    })


def _late_layout(cfg: FabricConfig, slots: int) -> data.StructLayout:
    """What an issue still needs after operand select: the fields of the instruction that
    write-back reads, instead of the whole word."""
    early = _op_layout(cfg, slots)
    fields = {name: field.shape for name, field in early
              if name not in ("instr", "dec", "bank")}
    # the opcode and destination decoded in operand select (write-back reads flags only):
    # f_re MAD/CMAD, f_ms MODES, f_sc the scalar ops, f_cge CGE; hit[i] writes rd = i,
    # hit1[i] CMAD's second register; e_* the emit condition, one-hot
    return data.StructLayout({**fields, "opc": unsigned(5),
                              "f_re": 1, "f_ms": 1, "f_sc": 1, "f_cge": 1, "write": 1,
                              "hit": 8, "hit1": 8, "e_al": 1, "e_nz": 1, "e_p": 1, "e_any": 1})


class NeuronEngine(wiring.Component):
    """Runs the neuron pass of one step.

    Interface attributes
    --------------------
    start : In(1), pulse: run the pass of step ``step``; ignored while ``busy``.
    step : In(16), the step number ``t`` (sampled with ``start``).
    busy : Out(1), the pass is running or a spike waits in the emission FIFO.
    groups : In(groups x group_layout), the group descriptors.
    phase_reset : In(groups), restart the phase counter of a group.
    ucode_addr, ucode_en : Out; ``ucode_data`` In (32): microcode read port.
    ctx_addr, ctx_en : Out; read port address of STATE, COEF and the accumulator (bank
        ``ctx_addr % synapse_lanes``, row ``ctx_addr // synapse_lanes`` of this step's buffer).
    state_data, coef_data : In, their read data (the cycle after ``ctx_en``).
    acc_q : In(2 x synapse_lanes words), every accumulator bank of both buffers, registered as it
        left the block RAM (two cycles after ``ctx_en``); ``acc_sel`` : In(synapse_lanes), the
        cycle before: lane j's read went to buffer 0 if set, else buffer 1.
    ri_addr, ri_en : Out; ``ri_data`` In: ROUTE_INDEX read port.
    wb_addr, wb_en, wb_data : Out, STATE write-back (all registers).
    clr_addr, clr_en : Out, clear one accumulator word of this step's buffer.
    mode_addr, mode_en : Out, row of the MSTATE and MCOEF banks (entry ``row * lanes + i`` is in
        bank ``i``); ``mstate_data``, ``mcoef_data`` In, one word per bank.
    mwb_addr, mwb_en, mwb_data : Out, MSTATE write-back of one row (``mwb_en``: one bit per bank).
    emission : Out(stream of emission_layout), spikes for the route unit.
    updated : Out(1), one neuron finished (NEURON_UPDATES).
    """

    #: slots per batch (register files); more than DEPTH keeps full batches stall-free
    SLOTS = 32
    #: emission FIFO depth
    EMIT_DEPTH = 32

    def __init__(self, cfg: FabricConfig, slots: int = SLOTS):
        self._cfg, self._slots = cfg, slots
        S, W, CW, L = cfg.state_regs, cfg.state_width, cfg.coef_width, cfg.neuron_lanes
        row_bits = max(1, cfg.mode_bits - (L - 1).bit_length())
        super().__init__({
            "start": In(1), "step": In(16), "busy": Out(1),
            "groups": In(data.ArrayLayout(group_layout(cfg), cfg.groups)),
            "phase_reset": In(cfg.groups),
            "ucode_addr": Out(cfg.pc_bits), "ucode_en": Out(1), "ucode_data": In(32),
            "ctx_addr": Out(cfg.neuron_bits), "ctx_en": Out(1),
            "state_data": In(S * W), "coef_data": In(cfg.coefs * CW),
            "acc_q": In(data.ArrayLayout(data.ArrayLayout(signed(cfg.acc_width),
                                                          cfg.synapse_lanes), 2)),
            "acc_sel": In(cfg.synapse_lanes),
            "ri_addr": Out(cfg.neuron_bits), "ri_en": Out(1),
            "ri_data": In(route_index_layout(cfg)),
            "wb_addr": Out(cfg.neuron_bits), "wb_en": Out(1), "wb_data": Out(S * W),
            "clr_addr": Out(cfg.neuron_bits), "clr_en": Out(1),
            "mode_addr": Out(row_bits), "mode_en": Out(1),
            "mstate_data": In(data.ArrayLayout(unsigned(MODE_STATE * W), L)),
            "mcoef_data": In(data.ArrayLayout(unsigned(MODE_COEFS * CW), L)),
            "mwb_addr": Out(row_bits), "mwb_en": Out(L),
            "mwb_data": Out(data.ArrayLayout(unsigned(MODE_STATE * W), L)),
            "emission": Out(stream.Signature(emission_layout(cfg))),
            "updated": Out(1),
        })

    @property
    def cfg(self) -> FabricConfig:
        return self._cfg

    @property
    def depth(self) -> int:
        """Cycles from an issue to its write-back (the earliest re-issue of its slot is one
        cycle later)."""
        return 5 + NeuronDatapath(self._cfg, self._cfg.neuron_lanes).LAT_SUM + 2

    def elaborate(self, platform):
        cfg, K = self._cfg, self._slots
        S, W, G, L = cfg.state_regs, cfg.state_width, cfg.groups, cfg.neuron_lanes
        LB = (L - 1).bit_length()
        ab = (cfg.synapse_lanes - 1).bit_length()
        m = Module()
        m.submodules.dp = dp = NeuronDatapath(cfg, L)
        m.submodules.emitq = emitq = fifo.SyncFIFOBuffered(
            width=emission_layout(cfg).size, depth=self.EMIT_DEPTH)
        OPL = _op_layout(cfg, K)

        # -- group schedule: phase counters ---------------------------------------------------
        phase = [Signal(8, name=f"phase{i}") for i in range(G)]
        active = Signal(G)
        for i in range(G):
            desc = self.groups[i]
            due = self.step >= desc.start
            with m.If(self.phase_reset[i]):
                m.d.sync += phase[i].eq(0)
            with m.Elif(self.start & ~self.busy):
                m.d.sync += active[i].eq(due & (phase[i] == 0) & (desc.count != 0))
                with m.If(due):
                    m.d.sync += phase[i].eq(Mux(phase[i] + 1 == desc.period, 0, phase[i] + 1))

        # -- per-slot register files (LUT memories, asynchronous read) ---------------------------
        rf_regs = Memory(shape=unsigned(8 * W), depth=K, init=[])
        misc_layout = data.StructLayout({"acc": signed(W), "pred": 1, "pflag": 1,
                                         "pval": signed(W)})
        rf_misc = Memory(shape=misc_layout, depth=K, init=[])
        m.submodules.rf_regs, m.submodules.rf_misc = rf_regs, rf_misc
        rf_regs_r, rf_misc_r = rf_regs.read_port(domain="comb"), rf_misc.read_port(domain="comb")
        rf_regs_w, rf_misc_w = rf_regs.write_port(granularity=W), rf_misc.write_port()

        # -- sequencer state --------------------------------------------------------------------
        # Everything the issue decision reads is a flip-flop: the flags below are kept up to date
        # as the sequencer moves (``wait_j`` = busy[j], ``on_last`` = the slot's MODES issue is on
        # its last row, ``last_slot`` = j + 1 == r, ``last_batch`` = rem == r), so the decision
        # is a few LUTs deep and only its fan-out is wide.
        g = Signal(range(max(G, 2)))
        dq = Signal(group_layout(cfg))          # the descriptor of group g, registered
        gpc = Signal(cfg.pc_bits)
        gmodes = Signal(cfg.mode_bits + 1)
        gm0 = Signal()                          # gmodes == 0
        rem = Signal(cfg.neuron_bits + 1)       # neurons of the group not yet in a batch + batch
        r = Signal(range(K + 1))                # neurons in this batch
        nb = Signal(cfg.neuron_bits)            # first neuron of the batch
        j = Signal(range(K))                    # slot being issued
        j1 = Signal(range(K + 1))               # j + 1
        n_cur = Signal(cfg.neuron_bits)         # its neuron
        first_round = Signal()
        cur = Signal(instr_layout())            # this round's instruction
        cur_modes = Signal()                    # cur.op == MODES
        nxt = Signal(instr_layout())            # the next round's instruction (when nxt_ok)
        pc = Signal(cfg.pc_bits)
        npc = Signal(cfg.pc_bits)               # the pc of the word being fetched / in nxt
        fetch_req = Signal()                    # issue the prefetch of the next instruction
        fetched = Signal()                      # ucode_data holds the word fetched last cycle
        nxt_ok = Signal()                       # nxt holds the next instruction
        batch_mptr = Signal(cfg.mode_bits + 1)  # the batch's first mode entry
        mslot = Signal(cfg.mode_bits + 1)       # the slot's first mode entry
        mcur = Signal(cfg.mode_bits + 1)        # next MODES entry of the slot (when mstarted)
        mend = Signal(cfg.mode_bits + 1)        # mslot + modes
        mlast = Signal(cfg.mode_bits + 1)       # mend - 1
        mlast_n = Signal(cfg.mode_bits + 1)     # mlast + gmodes: the next slot's last entry
        mstarted = Signal()
        rows_left = Signal(cfg.mode_bits + 1)   # MODES rows of the slot after the current one
        on_last = Signal()                      # rows_left == 0
        last_slot = Signal()                    # j + 1 == r
        last_batch = Signal()                   # rem == r
        wait_j = Signal()                       # busy[j]
        busy = Signal(K)
        inflight_emit = Signal(range(self.EMIT_DEPTH + K + 1))

        descs = Array(self.groups[i] for i in range(G))

        # -- issue ---------------------------------------------------------------------------
        is_modes = cur_modes
        # the slot's entries are [mslot, mend); mlast = mend - 1
        mc = Mux(mstarted, mcur, mslot)
        mrow = (mc >> LB)
        row_next = (mrow + 1) << LB
        mlive = Signal(L)
        for i in range(L):
            first_ok = (Const(i, max(LB, 1)) >= mc[:LB]) if LB else 1
            last_ok = (~on_last | (Const(i, LB) <= mlast[:LB])) if LB else 1
            m.d.comb += mlive[i].eq(first_ok & last_ok & ~gm0)
        final = ~is_modes | on_last | gm0
        fresh = ~is_modes | ~mstarted
        group_end = cur.last & last_batch
        # The write-back's spike enters the FIFO a cycle later, from flip-flops (``ew_valid``,
        # ``ew_data``): the write-back stage sits far from the FIFO. ``emit_n`` = ``emitq.level``,
        # counted here from the FIFO's handshakes (its own level is an adder over two of its
        # flip-flops); ``emit_nz`` = ``emit_n != 0``, registered from the next count without an
        # adder, so the engine's ``busy`` -- which fans out to the core's idle, step start and
        # ACC ownership -- is an OR of flip-flops instead of a path from the FIFO's ready
        ew_valid = Signal()
        ew_data = Signal(emission_layout(cfg).size)
        emit_n = Signal(range(self.EMIT_DEPTH + 1))
        emit_nz = Signal()
        r_fire = emitq.r_en & emitq.r_rdy
        m.d.comb += [emitq.w_en.eq(ew_valid), emitq.w_data.eq(ew_data)]
        m.d.sync += [
            emit_n.eq(emit_n + ew_valid - r_fire),      # ew_valid: w_rdy by the credits
            emit_nz.eq(ew_valid | ~((emit_n == 0) | ((emit_n == 1) & r_fire))),
        ]
        # registered, with one entry of margin: at most one reservation is made per cycle
        credit_ok = Signal()
        m.d.sync += credit_ok.eq(emit_n + inflight_emit + 1 < self.EMIT_DEPTH)
        issuing = Signal()
        in_issue = Signal()                     # the FSM is in ISSUE (one flip-flop, no decode)
        can = (~fresh | ~wait_j) & (~(cur.last & final) | credit_ok)
        m.d.comb += issuing.eq(in_issue & can)

        p0 = Signal(OPL, name="p0")
        # Only ``valid`` and the clear depend on the issue decision: the fields, the read
        # addresses and the read enables do not (reads have no side effects, the data of a cycle
        # without an issue is never used), so the decision does not reach the block RAMs.
        m.d.sync += [
            p0.valid.eq(issuing),
            p0.slot.eq(j), p0.n.eq(n_cur), p0.first.eq(first_round), p0.last.eq(cur.last),
            p0.final.eq(final), p0.mfirst.eq(is_modes & ~mstarted),
            p0.instr.eq(cur.as_value()), p0.mrow.eq(mrow), p0.mlive.eq(mlive),
            p0.bank.eq(Const(1, cfg.synapse_lanes) << n_cur[:ab] if ab else 1),
        ]
        # the block RAMs read a cycle later, at addresses registered beside ``p0`` (the
        # sequencer's flip-flops stay by the sequencer; these copies sit by the memories)
        p1 = reg(m, p0, "p1")
        # operand selects decoded from this round's instruction (a flip-flop) and round 0
        dec = p0.dec
        fr = first_round

        def onehot(code):
            return Cat(*[(code == i) & fr for i in range(S)],
                       *[(code == i) & ~fr for i in range(8)])

        c_modes, c_cmad = cur_modes, cur.op == Op.CMAD
        ra_r, ra_acc = cur.ra < 8, cur.ra == Operand.ACC
        rb_r, rb_acc = cur.rb < 8, cur.rb == Operand.ACC
        plain = ~c_modes & ~c_cmad
        m.d.sync += [
            dec.oh_a.eq(onehot(cur.ra[:3])), dec.oh_a1.eq(onehot((cur.ra[:3] + 1)[:3])),
            dec.oh_b.eq(onehot(cur.rb[:3])), dec.oh_d.eq(onehot(cur.rd)),
            dec.k_0.eq(Const(1, 8) << cur.ck), dec.k_1.eq(Const(1, 8) << (cur.ck + 1)[:3]),
            dec.l_0.eq(Const(1, 8) << cur.cl), dec.l_1.eq(Const(1, 8) << (cur.cl + 1)[:3]),
            dec.a_r.eq(ra_r), dec.a_as.eq(ra_acc & fr), dec.a_am.eq(ra_acc & ~fr),
            dec.b_r.eq(rb_r), dec.b_as.eq(rb_acc & fr), dec.b_am.eq(rb_acc & ~fr),
            dec.x0_m.eq(c_modes), dec.x0_r.eq(~c_modes & ra_r),
            dec.x0_as.eq(plain & ra_acc & fr), dec.x0_am.eq(plain & ra_acc & ~fr),
            dec.x1_m.eq(c_modes), dec.x1_r.eq(c_cmad & ra_r), dec.k_i.eq(~c_modes),
        ]
        ctx_q = reg(m, n_cur, "ctx_q")
        mrow_q = reg(m, mrow, "mrow_q")
        m.d.comb += [self.ctx_addr.eq(ctx_q), self.ctx_en.eq(1),
                     self.mode_addr.eq(mrow_q), self.mode_en.eq(1)]
        # the ACC word is cleared the cycle after its last read (``ctx_q``): written from
        # flip-flops two cycles after the issue
        clr_addr = delay(m, n_cur, 2, "clr_addr")
        clr_en = delay(m, issuing & first_round & final, 2, "clr_en")
        m.d.comb += [self.clr_addr.eq(clr_addr), self.clr_en.eq(clr_en)]

        busy_set = Signal(K)
        j_oh = Signal(K, init=1)                # one-hot of j
        busy_clr = Signal(K)
        wb_done = Signal()                      # write-back of a slot's final issue
        wb_slot = Signal(range(K))
        with m.If(issuing & fresh):
            m.d.comb += busy_set.eq(j_oh)
        m.d.sync += busy.eq((busy & ~busy_clr) | busy_set)
        emit_in = issuing & cur.last & final
        emit_out = Signal()
        m.d.sync += inflight_emit.eq(inflight_emit + emit_in - emit_out)

        # wait_j follows busy[j] as j moves: stays, steps to j + 1 or restarts at 0
        m.d.sync += wait_j.eq((wait_j & ~(wb_done & (wb_slot == j))) | (issuing & fresh))
        wait_inc = busy.bit_select(j1, 1) & ~(wb_done & (wb_slot == j1))
        wait_zero = (busy[0] & ~(wb_done & (wb_slot == 0))) | (issuing & fresh & (j == 0))

        def rows(first, last):
            """MODES rows of a slot whose entries are [first, last], minus one."""
            return ((last >> LB) - (first >> LB))[:len(rows_left)]

        def slot_start(first, last):
            """The next issue is a slot's first, its entries [first, last]."""
            m.d.sync += [rows_left.eq(rows(first, last)), on_last.eq((first >> LB) == (last >> LB))]

        # microcode prefetch: the cycle after a round starts, read its successor; the word is
        # registered in ``nxt`` the cycle after (block-RAM clock-to-out has the cycle to itself)
        m.d.sync += fetched.eq(0)
        with m.If(fetch_req):
            nxt_pc = Mux(cur.last, gpc, pc + 1)
            m.d.comb += [self.ucode_addr.eq(nxt_pc), self.ucode_en.eq(1)]
            m.d.sync += [npc.eq(nxt_pc), fetched.eq(1), fetch_req.eq(0)]
        with m.If(fetched):
            m.d.sync += [nxt.eq(self.ucode_data), nxt_ok.eq(1)]

        def start_round(r_next_is_1):
            m.d.sync += [cur.eq(nxt), cur_modes.eq(nxt.op == Op.MODES), pc.eq(npc),
                         fetch_req.eq(1), nxt_ok.eq(0), j.eq(0), j1.eq(1), j_oh.eq(1),
                         mstarted.eq(0), last_slot.eq(r_next_is_1), wait_j.eq(wait_zero)]

        with m.If(issuing):
            with m.If(is_modes):
                m.d.sync += [mstarted.eq(~final), mcur.eq(row_next),
                             rows_left.eq(rows_left - 1), on_last.eq(rows_left == 1)]
            with m.If(final):
                m.d.sync += [j.eq(j + 1), j1.eq(j1 + 1), j_oh.eq(j_oh.rotate_left(1)),
                             n_cur.eq(n_cur + 1),
                             mslot.eq(mend), mend.eq(mend + gmodes),
                             mlast.eq(mlast_n), mlast_n.eq(mlast_n + gmodes), mstarted.eq(0),
                             last_slot.eq(j1 + 1 == r), wait_j.eq(wait_inc)]
                slot_start(mend, mlast_n)

        # The pass sequencer: one flip-flop per state (ISSUE is ``in_issue``), so no state
        # decode sits between the flip-flops and the wide fan-out of a state change.
        st = {name: Signal(name=f"st_{name.lower()}", init=int(name == "IDLE"))
              for name in ("IDLE", "SCAN", "LOAD", "START", "TURN", "DRAIN")}
        st["ISSUE"] = in_issue

        def go(frm, to):
            # only the two flags involved: each flag's next value depends on its own
            # transitions, not on every state's conditions
            m.d.sync += [st[frm].eq(0), st[to].eq(1)]

        # the pipeline is empty (registered: one cycle late, which is safe because nothing
        # issues outside ISSUE, and START and DRAIN come at least two cycles after an issue)
        empty = Signal()
        m.d.sync += empty.eq(busy == 0)
        # the next batch's size from flip-flops (rem and r only change in LOAD and TURN, and
        # TURN always follows an ISSUE cycle)
        left = Signal.like(rem)
        left_one, left_big = Signal(), Signal()
        m.d.sync += [left.eq(rem - r), left_one.eq(rem - r == 1), left_big.eq(rem - r > K)]
        # the batch's mode range from flip-flops, for the next round's restart in TURN
        # (batch_mptr and gmodes only change in LOAD and TURN, and TURN always follows an ISSUE
        # cycle, so these are a cycle late at most and never read then)
        bm_end, bm_last, bm_last_n = (Signal.like(mend) for _ in range(3))
        bm_rows, bm_one_row = Signal.like(rows_left), Signal()
        bm_last_c = batch_mptr + gmodes - 1
        m.d.sync += [
            bm_end.eq(batch_mptr + gmodes), bm_last.eq(bm_last_c),
            bm_last_n.eq(batch_mptr + (gmodes << 1) - 1),
            bm_rows.eq(rows(batch_mptr, bm_last_c)),
            bm_one_row.eq((batch_mptr >> LB) == (bm_last_c >> LB)),
        ]

        with m.If(st["IDLE"]):
            with m.If(self.start):
                m.d.sync += g.eq(0)
                go("IDLE", "SCAN")
        with m.If(st["SCAN"]):
            m.d.sync += dq.eq(descs[g])
            with m.If(active.bit_select(g, 1)):
                go("SCAN", "LOAD")
            with m.Elif(g == G - 1):
                go("SCAN", "DRAIN")
            with m.Else():
                m.d.sync += g.eq(g + 1)
        with m.If(st["LOAD"]):
            m.d.comb += [self.ucode_addr.eq(dq.pc), self.ucode_en.eq(1)]
            m.d.sync += [
                npc.eq(dq.pc), fetched.eq(1), nxt_ok.eq(0), gpc.eq(dq.pc),
                gmodes.eq(dq.modes), gm0.eq(dq.modes == 0),
                rem.eq(dq.count), nb.eq(dq.first), n_cur.eq(dq.first),
                r.eq(Mux(dq.count > K, K, dq.count)), last_batch.eq(dq.count <= K),
                batch_mptr.eq(dq.mode_base), mslot.eq(dq.mode_base),
                mend.eq(dq.mode_base + dq.modes), mlast.eq(dq.mode_base + dq.modes - 1),
                mlast_n.eq(dq.mode_base + (dq.modes << 1) - 1),
            ]
            go("LOAD", "START")
        with m.If(st["START"]):
            # groups may overlap: a group starts on an empty pipeline
            with m.If(empty & nxt_ok):
                start_round(r == 1)
                slot_start(mslot, mlast)
                m.d.sync += first_round.eq(1)
                go("START", "ISSUE")
        with m.If(in_issue):
            with m.If(issuing & final & last_slot):
                go("ISSUE", "TURN")
        with m.If(st["TURN"]):
            # the round's last issue is out (j, n_cur and the mode range have moved past
            # the batch): end the group, or start the next round or batch
            with m.If(group_end):
                with m.If(g == G - 1):
                    go("TURN", "DRAIN")
                with m.Else():
                    m.d.sync += g.eq(g + 1)
                    go("TURN", "SCAN")
            with m.Elif(nxt_ok):
                go("TURN", "ISSUE")
                with m.If(cur.last):
                    # next batch (round 0 of the program): its first slot is where the
                    # mode range already points
                    start_round(left_one)
                    m.d.sync += [
                        first_round.eq(1), rem.eq(left), nb.eq(n_cur),
                        r.eq(Mux(left_big, K, left)), last_batch.eq(~left_big),
                        batch_mptr.eq(mslot),
                    ]
                with m.Else():
                    start_round(r == 1)
                    m.d.sync += [first_round.eq(0), n_cur.eq(nb),
                                 mslot.eq(batch_mptr), mend.eq(bm_end), mlast.eq(bm_last),
                                 mlast_n.eq(bm_last_n),
                                 rows_left.eq(bm_rows), on_last.eq(bm_one_row)]
        with m.If(st["DRAIN"]):
            with m.If(empty):
                go("DRAIN", "IDLE")
        m.d.comb += self.busy.eq(~st["IDLE"] | emit_nz | ew_valid)

        # -- P1: register files (asynchronous) and memories (synchronous) read -----------------
        m.d.comb += [rf_regs_r.addr.eq(p1.slot), rf_misc_r.addr.eq(p1.slot)]
        p2 = reg(m, p1, "p2")
        p2_regs = reg(m, rf_regs_r.data, "p2_regs", unsigned(8 * W))
        p2_misc = reg(m, rf_misc_r.data, "p2_misc")
        p2_state = reg(m, self.state_data, "p2_state")
        p2_coef = reg(m, self.coef_data, "p2_coef")
        # the accumulator words are registered by the core (nothing between block RAM and
        # flip-flop); the one-hot of buffer and bank is registered here beside them
        NB = cfg.synapse_lanes
        p2_accsel = reg(m, Cat(p1.bank & self.acc_sel, p1.bank & ~self.acc_sel), "p2_accsel")
        p2_mstate = reg(m, self.mstate_data, "p2_mstate")
        p2_mcoef = reg(m, self.mcoef_data, "p2_mcoef")

        # -- P2 -> P3: every accumulator word saturated to W bits on its way into a register of
        # the engine's own (``acc_q`` sits by its block RAM, shared with the synapse engine and
        # the config read-back; the route from there to the datapath was a critical path with
        # the pick after it); the buffer x bank one-hot (``p2_accsel``, registered at P1) goes
        # along, and the word is picked in P3, in front of operand select
        NA = 2 * NB
        p3_accw = [reg(m, sat_hw(self.acc_q[bk // NB][bk % NB], W), f"p3_accw{bk}", signed(W))
                   for bk in range(NA)]
        p3_accsel = reg(m, p2_accsel, "p3_accsel")
        # Register-indexed operands are picked here, a stage ahead of operand select, by the
        # one-hot selects decoded at issue (round 0 folded in: STATE registers, else the
        # register file): AND-OR gates, each select flip-flop driving one operand's bits.
        srcs = ([p2_state[i * W:(i + 1) * W] for i in range(S)]
                + [p2_regs[i * W:(i + 1) * W] for i in range(8)])
        cws = [p2_coef.word_select(i, cfg.coef_width) for i in range(8)]

        def orsel(*pairs):
            """The value of the (one-hot) flag that is set, 0 if none: AND-OR gates."""
            out = 0
            for flag, v in pairs:
                out = out | Mux(flag, v, 0)
            return out

        def pick(onehot, values, name, shape):
            """``orsel`` over ``values`` by the bits of ``onehot``, registered."""
            out = Signal(shape, name=name)
            m.d.sync += out.eq(orsel(*((onehot[i], v) for i, v in enumerate(values))))
            return out

        sel2 = p2.dec
        opa = pick(sel2.oh_a, srcs, "p3_opa", signed(W))
        opa1 = pick(sel2.oh_a1, srcs, "p3_opa1", signed(W))
        opb = pick(sel2.oh_b, srcs, "p3_opb", signed(W))
        opd = pick(sel2.oh_d, srcs, "p3_opd", signed(W))
        kq = [pick(sel, cws, f"p3_{n}", signed(cfg.coef_width)) for n, sel in
              (("k0", sel2.k_0), ("k1", sel2.k_1), ("l0", sel2.l_0), ("l1", sel2.l_1))]
        # the STATE registers' values after round 0's choice (write-back keeps them)
        pers = Signal(S * W, name="p3_pers")
        m.d.sync += pers.eq(Mux(p2.first, p2_state, p2_regs[:S * W]))
        p2 = reg(m, p2, "p3")
        p2_misc = reg(m, p2_misc, "p3_misc")
        p2_mstate, p2_mcoef = reg(m, p2_mstate, "p3_mstate"), reg(m, p2_mcoef, "p3_mcoef")
        # the ACC word of this step's buffer and the neuron's bank (saturated): AND-OR
        p2_acc = Signal(signed(W), name="p3_acc")
        m.d.comb += p2_acc.eq(orsel(*((p3_accsel[bk], p3_accw[bk]) for bk in range(NA))))

        # -- P3: operand select into the datapath: at most four sources, one-hot ----------------
        ins = instr_layout()(p2.instr)
        mins = modes_instr_layout()(p2.instr)
        sel3 = p2.dec
        first = p2.first
        acc_eff = Mux(first, p2_acc, p2_misc.acc)
        pred_eff = p2_misc.pred & ~first
        pflag_eff = p2_misc.pflag & ~first
        pval_eff = Mux(first, 0, p2_misc.pval)

        a = orsel((sel3.a_r, opa), (sel3.a_as, p2_acc), (sel3.a_am, p2_misc.acc))
        b = orsel((sel3.b_r, opb), (sel3.b_as, p2_acc), (sel3.b_am, p2_misc.acc))
        m.d.comb += [
            dp.op.eq(ins.op), dp.sh.eq(ins.sh), dp.so.eq(mins.so), dp.a.eq(a), dp.b.eq(b),
            dp.kc.eq(kq[0]), dp.pred.eq(pred_eff), dp.live.eq(p2.mlive),
        ]
        for i in range(L):
            xs = p2_mstate[i].word_select
            cs = p2_mcoef[i].word_select
            mx = [xs(q, W).as_signed() for q in range(MODE_STATE)]
            mcv = [cs(q, cfg.coef_width).as_signed() for q in range(MODE_COEFS)]
            if i == 0:
                a0 = orsel((sel3.x0_m, mx[0]), (sel3.x0_r, opa), (sel3.x0_as, p2_acc),
                           (sel3.x0_am, p2_misc.acc))
                a1 = orsel((sel3.x1_m, mx[1]), (sel3.x1_r, opa1))
                ks = [Mux(sel3.k_i, kq[q], mcv[q]) for q in range(4)] + [mcv[4], mcv[5]]
            else:
                a0, a1, ks = mx[0], mx[1], mcv
            m.d.comb += [dp.x[i][0].eq(a0), dp.x[i][1].eq(a1)]
            m.d.comb += [dp.c[i][q].eq(ks[q]) for q in range(MODE_COEFS)]

        # what write-back needs, carried beside the datapath (E0 onwards)
        late = _late_layout(cfg, K)
        carry_layout = data.StructLayout({
            "op": late, "pers": unsigned(S * W), "rd_old": signed(W), "acc": signed(W),
            "pred": 1, "pflag": 1, "pval": signed(W),
        })
        e0 = Signal(carry_layout, name="e0")
        f_re = (ins.op == Op.MAD) | (ins.op == Op.CMAD)
        f_ms = ins.op == Op.MODES
        f_sc = Cat(*[ins.op == o for o in (Op.ADD, Op.SUB, Op.MAX, Op.MIN, Op.LDC, Op.SHR,
                                             Op.SEL)]).any()
        m.d.sync += [
            *[getattr(e0.op, f).eq(getattr(p2, f)) for f, _ in OPL
              if f not in ("instr", "dec", "bank")],
            e0.op.opc.eq(ins.op),
            e0.op.f_re.eq(f_re), e0.op.f_ms.eq(f_ms), e0.op.f_sc.eq(f_sc),
            e0.op.f_cge.eq(ins.op == Op.CGE), e0.op.write.eq(f_re | f_ms | f_sc),
            e0.op.hit.eq(Mux(f_re | f_ms | f_sc, Const(1, 8) << ins.rd, 0)),
            e0.op.hit1.eq(Mux(ins.op == Op.CMAD, Const(1, 8) << (ins.rd + 1)[:3], 0)),
            e0.op.e_al.eq(ins.emit == Emit.ALWAYS), e0.op.e_nz.eq(ins.emit == Emit.NONZERO),
            e0.op.e_p.eq(ins.emit == Emit.IF_P), e0.op.e_any.eq(ins.emit != Emit.NONE),
            e0.pers.eq(pers),
            e0.rd_old.eq(opd), e0.acc.eq(acc_eff), e0.pred.eq(pred_eff),
            e0.pflag.eq(pflag_eff), e0.pval.eq(pval_eff),
        ]

        # -- MSTATE write-back at LAT_X -----------------------------------------------------------
        # the carried fields travel in LUT-RAM delay lines, only ``valid`` in flip-flops
        ex = Signal.like(e0.op, name="ex")
        m.d.comb += [ex.as_value().eq(ram_delay(m, e0.op, dp.LAT_X, "ex_ram")),
                     ex.valid.eq(delay(m, e0.op.valid, dp.LAT_X, "ex_valid"))]
        ex_modes = ex.opc == Op.MODES
        with m.If(ex.valid & ex_modes):
            m.d.comb += [self.mwb_addr.eq(ex.mrow), self.mwb_en.eq(ex.mlive)]
        for i in range(L):
            m.d.comb += self.mwb_data[i].eq(dp.x_out[i].as_value())

        # -- E(LAT_SUM): the MODES sum, E(LAT_SUM+1) merge, then write-back -----------------------
        LS = dp.LAT_SUM
        es = Signal.like(e0, name="es")        # aligned with dp.lane_sum
        m.d.comb += [es.as_value().eq(ram_delay(m, e0, LS, "es_ram")),
                     es.op.valid.eq(delay(m, e0.op.valid, LS, "es_valid"))]
        msum = Signal(signed(cfg.acc_width))
        with m.If(es.op.valid & (es.op.opc == Op.MODES)):
            m.d.sync += msum.eq(Mux(es.op.mfirst, dp.lane_sum,
                                    (msum + dp.lane_sum)[:cfg.acc_width].as_signed()))
        em = reg(m, es, "em")                  # aligned with msum
        scalar = ram_delay(m, dp.scalar, LS + 1 - dp.LAT_SCALAR, "scalar").as_signed()
        cge = ram_delay(m, dp.cge, LS + 1 - dp.LAT_SCALAR, "cge")
        re = ram_delay(m, dp.x_out[0][0], LS + 1 - dp.LAT_X, "re").as_signed()
        im = ram_delay(m, dp.x_out[0][1], LS + 1 - dp.LAT_X, "im").as_signed()
        # ROUTE_INDEX read one cycle ahead of the merge
        m.d.comb += [self.ri_addr.eq(es.op.n), self.ri_en.eq(es.op.valid & es.op.last)]

        # write-back: one-hot choices from the flags decoded in operand select
        mi = em.op
        msat = sat_hw(msum, W)
        result = Signal(signed(W))
        m.d.comb += result.eq(orsel((mi.f_re, re), (mi.f_ms, msat), (mi.f_sc, scalar)))
        write = mi.write
        pred_out = Mux(mi.f_cge, cge, em.pred)
        value = Mux(write, result, em.rd_old)
        # value != 0 from the zero tests of the candidates (in parallel, not after the muxes;
        # saturation keeps zero and non-zero apart)
        nonzero = ((mi.f_re & (re != 0)) | (mi.f_ms & (msum != 0)) | (mi.f_sc & (scalar != 0))
                   | (~write & (em.rd_old != 0)))
        emit_flag = (mi.e_al | (mi.e_nz & nonzero) | (mi.e_p & pred_out))
        has_emit = mi.e_any

        wb_layout = data.StructLayout({
            "op": late, "regs": data.ArrayLayout(signed(W), 8), "wen": 8, "mwe": 1,
            "misc": misc_layout, "ri": route_index_layout(cfg),
        })
        wb = Signal(wb_layout, name="wb")
        # the register files' write enables are flip-flops (a slot's final issue writes back)
        em_done = em.op.valid & em.op.final
        m.d.sync += [wb.op.eq(em.op), wb.ri.eq(self.ri_data),
                     wb.misc.acc.eq(em.acc), wb.misc.pred.eq(pred_out),
                     wb.misc.pflag.eq(Mux(has_emit, emit_flag, em.pflag)),
                     wb.misc.pval.eq(Mux(has_emit, value, em.pval))]
        for i in range(8):
            old = em.pers[i * W:(i + 1) * W].as_signed() if i < S else 0
            hit, hit1 = mi.hit[i], mi.hit1[i]
            m.d.sync += [
                wb.regs[i].eq(Mux(hit, result, Mux(hit1, im, old))),
                wb.wen[i].eq(em_done & (hit | hit1 | em.op.first)),
            ]
        m.d.sync += wb.mwe.eq(em_done)

        # -- write-back ----------------------------------------------------------------------
        done = wb.op.valid & wb.op.final
        m.d.comb += [wb_done.eq(done), wb_slot.eq(wb.op.slot)]
        m.d.comb += [
            rf_regs_w.addr.eq(wb.op.slot), rf_regs_w.data.eq(wb.regs.as_value()),
            rf_regs_w.en.eq(wb.wen),
            rf_misc_w.addr.eq(wb.op.slot), rf_misc_w.data.eq(wb.misc), rf_misc_w.en.eq(wb.mwe),
        ]
        with m.If(done):
            m.d.comb += busy_clr.eq(Const(1, K) << wb.op.slot)
        fire = done & wb.op.last
        # the spike (and the return of the reservation) a cycle after write-back, registered
        fire_q = Signal()
        m.d.sync += [
            fire_q.eq(fire),
            ew_valid.eq(fire & wb.misc.pflag & (wb.ri.count != 0)),
            ew_data.eq(Cat(wb.misc.pval, wb.ri.base, wb.ri.count)),
        ]
        m.d.comb += [
            emit_out.eq(fire_q),
            self.wb_addr.eq(wb.op.n), self.wb_en.eq(fire), self.updated.eq(fire),
            self.wb_data.eq(wb.regs.as_value()[:S * W]),
        ]
        m.d.comb += [
            self.emission.valid.eq(emitq.r_rdy),
            self.emission.payload.eq(emitq.r_data),
            emitq.r_en.eq(self.emission.ready),
        ]
        return m
