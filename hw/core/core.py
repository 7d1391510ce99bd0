"""NeuronCore: one tile's neuron core (memories, synapse engine, neuron engine, route unit,
config port), bit-exact with ``sim.golden.GoldenFabric`` for one core.

Block diagram (``docs/core.md`` has the timing)::

    i_flit --+-- SPIKE -----> [merge] --> SynapseEngine --> ACC[sbuf] banks
             |                  ^ loopback
             +-- CFG_* --> ConfigPort <--> every memory (when quiescent) --> READ_RESP -+
                                                                                        v
    step_start --> NeuronEngine --> emissions FIFO --> RouteUnit --> SPIKE/HOST_OUT --> o_flit

Accumulator buffers: spikes integrate into buffer ``sbuf`` = (t_last + 1) & 1 (0 before the
first step); the neuron pass of step t reads and clears buffer t & 1 = ~sbuf. Each buffer is
``synapse_lanes`` banks; bank j holds neurons ``row * lanes + j``.
"""

from __future__ import annotations

from amaranth.hdl import Array, Assert, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.layouts import (
    MODE_COEFS,
    MODE_STATE,
    Counter,
    FlitKind,
    Mem,
    axon_layout,
    cfg_addr_layout,
    flit_layout,
    group_layout,
    route_index_layout,
    route_layout,
    synapse_layout,
)

from .alu import reg
from .config_port import ConfigPort
from .memories import PartedMemory
from .neuron import NeuronEngine
from .route import RouteUnit
from .synapse import SynapseEngine, spike_layout

__all__ = ["NeuronCore"]


def _part(value, part, nparts: int):
    """32-bit part ``part`` of ``value`` (zero-padded to ``nparts`` x 32 bits)."""
    padded = Cat(value, Const(0, 32 * nparts - len(value))) if 32 * nparts > len(value) else value
    return padded.word_select(part, 32) if nparts > 1 else padded[:32]


class NeuronCore(wiring.Component):
    """The neuron core of tile ``(x, y)``.

    Parameters
    ----------
    cfg : fabric parameters (capacities and widths)
    x, y : this tile's coordinates: routes to them take the local loopback path

    Interface attributes
    --------------------
    i_flit : In(stream of flit_layout), from the router's local port: SPIKE, CFG_WRITE,
        CFG_READ (other kinds are dropped).
    o_flit : Out(stream of flit_layout), SPIKE, HOST_OUT and READ_RESP flits.
    step : In(16), the step number, sampled with ``step_start``.
    step_start : In(1), pulse: run step ``step`` (only while ``idle``; steps 0, 1, 2, ...).
    clear : In(1), pulse: zero all STATE, MSTATE and ACC words, restart the schedule (only
        while ``idle``; takes ``max(neurons, modes)`` cycles).
    idle : Out(1), nothing to do and nothing pending (low the cycle after any flit is accepted,
        after ``step_start`` and after ``clear``).
    """

    #: entries of the input and output flit FIFOs (3: one flit per cycle through each)
    PORT_DEPTH = 3

    def __init__(self, cfg: FabricConfig, x: int = 0, y: int = 0):
        if not (0 <= x < cfg.mesh_w and 0 <= y < cfg.mesh_h):
            raise ValueError(f"NeuronCore: tile ({x!r}, {y!r}) outside the "
                             f"{cfg.mesh_w}x{cfg.mesh_h} mesh")
        self._cfg, self._x, self._y = cfg, x, y
        super().__init__({
            "i_flit": In(stream.Signature(flit_layout(cfg))),
            "o_flit": Out(stream.Signature(flit_layout(cfg))),
            "step": In(16), "step_start": In(1), "clear": In(1), "idle": Out(1),
        })

    @property
    def cfg(self) -> FabricConfig:
        return self._cfg

    @property
    def xy(self) -> tuple[int, int]:
        return self._x, self._y

    def elaborate(self, platform):
        cfg = self._cfg
        L, W, CW, A, S, G = (cfg.synapse_lanes, cfg.state_width, cfg.coef_width, cfg.acc_width,
                             cfg.state_regs, cfg.groups)
        lb = (L - 1).bit_length()
        rows = cfg.neurons // L
        m = Module()

        m.submodules.syn = syn = SynapseEngine(cfg)
        m.submodules.eng = eng = NeuronEngine(cfg)
        m.submodules.route = route = RouteUnit(cfg, self._x, self._y)
        m.submodules.cfgp = cfgp = ConfigPort(cfg)

        def pm(name, width, depth, part_width, read_old=True):
            mem = PartedMemory(width=width, depth=depth, part_width=part_width,
                               read_old=read_old)
            m.submodules[name] = mem
            return mem

        axon = pm("axon", axon_layout(cfg).size, cfg.axons, 32)
        synm = pm("synapse", synapse_layout(cfg).size, cfg.synapse_rows, 32)
        state = pm("state", S * W, cfg.neurons, W)
        coef = pm("coef", cfg.coefs * CW, cfg.neurons, CW)
        ridx = pm("route_index", route_index_layout(cfg).size, cfg.neurons, 32)
        routem = pm("route_mem", route_layout(cfg).size, cfg.route_words, 32)
        ucode = pm("ucode", 32, cfg.ucode_depth, 32)
        NL = cfg.neuron_lanes
        nlb = (NL - 1).bit_length()
        mrows = cfg.modes // NL
        mstate = [pm(f"mstate{i}", MODE_STATE * W, mrows, W) for i in range(NL)]
        # MCOEF is written only by config accesses, which need a quiescent core: never read in
        # the cycle it is written, so no read-old logic on the mode address's fan-out
        mcoef = [pm(f"mcoef{i}", MODE_COEFS * CW, mrows, CW, read_old=False) for i in range(NL)]
        # ACC words read in the cycle they are written are never used (docs/core.md): the bare
        # block RAM, no read-old logic between it and the register that takes its word
        acc = [[pm(f"acc{b}_{j}", A, rows, A, read_old=False) for j in range(L)]
               for b in range(2)]

        groups = Signal(data.ArrayLayout(group_layout(cfg), G))
        counters = [Signal(32, name=f"counter_{c.name.lower()}") for c in Counter]

        # the accumulator buffer ``sbuf`` that incoming spikes integrate into, as one flip-flop
        # per buffer: own[b] = (sbuf == b) drives only buffer b's ports
        own = [Signal(name=f"own{b}", init=int(b == 0)) for b in range(2)]
        clearing = Signal()
        # the same flag, inverted, for the memories' write multiplexers only: their fan-out (every
        # STATE, MSTATE and ACC write port) stays off the control paths that read ``clearing``
        wipe_n = Signal(init=1)
        clr_cnt = Signal(max(cfg.neuron_bits, cfg.mode_bits))
        clr_end = max(cfg.neurons, cfg.modes // cfg.neuron_lanes) - 1

        # -- configuration access decode --
        # Every memory port sees a configuration access through strobes of its own, registered
        # in the cycle the config port accepts the flit (the port's WRITE / READ0 state is the
        # next cycle): one flip-flop per memory (bank) instead of one state decode driving every
        # address multiplexer of the core.
        ca = cfgp.addr
        wdata = cfgp.wdata
        nf = cfgp.i_flit.p
        na = cfg_addr_layout(cfg)(nf.addr)
        taking = cfgp.i_flit.valid & cfgp.i_flit.ready

        # A strobe is the decode of the flit at the port's input, registered every cycle whether
        # or not the port takes it, AND the registered fact that it was taken: the acceptance
        # (``allow``, wide fan-out) meets each decode only after the flip-flops.
        # ``took`` has a copy per memory, loaded only while the input's flit decodes to that
        # memory (the strobe's decode masks a stale copy), so the copies stay apart in synthesis
        # and each drives only its memory's strobes.
        took = {}
        is_wr = nf.kind == FlitKind.CFG_WRITE

        def took_for(mem_id, bank=None, sel=1):
            """The copy of ``took`` for ``mem_id`` (with ``bank``: that bank's own copy, loaded
            only while the flit decodes to it, ``sel``; a strobe using it must imply ``sel``).
            A memory whose banks the floorplan spreads apart gets a copy per bank, beside it."""
            key = mem_id if bank is None else (mem_id, bank)
            if key not in took:
                suffix = "" if bank is None else f"_{bank}"
                took[key] = Signal(name=f"cfg_took_{mem_id.name.lower()}{suffix}")
                with m.If((na.mem == mem_id) & sel):
                    m.d.sync += took[key].eq(taking)
            return took[key]

        def strobe(name, write, mem_id, cond, bank=None, sel=1):
            s = Signal(name=name)
            m.d.sync += s.eq((is_wr if write else ~is_wr) & (na.mem == mem_id) & cond)
            return s & took_for(mem_id, bank, sel)

        def cfg_we(name, mem_id, depth, cond=1, bank=None, sel=1):
            """Write strobe of one memory: this cycle the port writes entry ``idx`` of it
            (``bank``, ``sel``: :func:`took_for`; ``cond`` must imply ``sel``)."""
            return strobe(f"cfg_we_{name}", True, mem_id, (na.index < depth) & cond, bank, sel)

        def cfg_re(name, mem_id, cond=1, bank=None, sel=1):
            """Read strobe of one memory: this cycle its read port takes address ``idx``."""
            return strobe(f"cfg_re_{name}", False, mem_id, cond, bank, sel)

        def local_addr(name, cond):
            """A private copy of the access address for one memory (bank), loaded from the
            flit at the port's input whenever it decodes to that memory (``cond``). The copy
            holds the taken flit's address in the cycle of its strobes (the input does not
            change before it is taken), and each memory's address multiplexers see a nearby
            flip-flop instead of the port's address, which fans out over the whole core. The
            copies differ in their enables, so synthesis keeps them apart."""
            a = Signal(cfg_addr_layout(cfg), name=f"cfg_addr_{name}")
            with m.If(cond):
                m.d.sync += a.eq(nf.addr)
            return a.index, a.part

        def cfg_only(mem, mem_id, depth, nparts, r_addr=None, r_en=None, part_width=32):
            """Memory written only by config; read by config or one engine port."""
            name = mem_id.name.lower()
            we, re = cfg_we(name, mem_id, depth), cfg_re(name, mem_id)
            idx, part = local_addr(name, na.mem == mem_id)
            m.d.comb += [
                mem.w_addr.eq(idx),
                mem.w_data.eq(Cat(*[wdata[:part_width]] * nparts)),
                mem.w_en.eq(Mux(we & (part < nparts), 1 << part[:max(1, (nparts - 1)
                                                                     .bit_length())], 0)),
                mem.r_addr.eq(Mux(re, idx, r_addr if r_addr is not None else 0)),
                mem.r_en.eq(re | (r_en if r_en is not None else 0)),
            ]

        cfg_only(axon, Mem.AXON, cfg.axons, axon.parts, syn.axon_addr, syn.axon_en)
        cfg_only(synm, Mem.SYNAPSE, cfg.synapse_rows, synm.parts, syn.syn_addr, syn.syn_en)
        cfg_only(coef, Mem.COEF, cfg.neurons, cfg.coefs, eng.ctx_addr, eng.ctx_en,
                 part_width=CW)
        cfg_only(ridx, Mem.ROUTE_INDEX, cfg.neurons, ridx.parts, eng.ri_addr, eng.ri_en)
        cfg_only(routem, Mem.ROUTE, cfg.route_words, routem.parts, route.route_addr,
                 route.route_en)
        cfg_only(ucode, Mem.UCODE, cfg.ucode_depth, 1, eng.ucode_addr, eng.ucode_en)
        m.d.comb += [
            syn.axon_data.eq(axon.r_data), syn.syn_data.eq(synm.r_data),
            eng.coef_data.eq(coef.r_data), eng.ri_data.eq(ridx.r_data),
            route.route_data.eq(routem.r_data), eng.ucode_data.eq(ucode.r_data),
        ]

        # MSTATE and MCOEF: one bank per neuron lane; entry e is row e // lanes of bank e % lanes.
        def mbank(v):
            return v[:nlb] if nlb else Const(0, 1)

        def mrow(v):
            return v[nlb:]

        for i in range(NL):
            mc = mcoef[i]
            sel = mbank(na.index) == i        # (the lane bank's own ``took``: took_for)
            mc_we = cfg_we(f"mcoef{i}", Mem.MCOEF, cfg.modes, sel, i, sel)
            mc_re = cfg_re(f"mcoef{i}", Mem.MCOEF, sel, i, sel)
            idx, part = local_addr(f"mcoef{i}", (na.mem == Mem.MCOEF) & sel)
            m.d.comb += [
                mc.w_addr.eq(mrow(idx)),
                mc.w_data.eq(Cat(*[wdata[:CW]] * MODE_COEFS)),
                mc.w_en.eq(Mux(mc_we & (part < MODE_COEFS),
                               1 << part[:(MODE_COEFS - 1).bit_length()], 0)),
                mc.r_addr.eq(Mux(mc_re, mrow(idx), eng.mode_addr)),
                mc.r_en.eq(mc_re | eng.mode_en),
                eng.mcoef_data[i].eq(mc.r_data),
            ]

        # STATE: clear > config > neuron write-back.
        st_we, st_re = cfg_we("state", Mem.STATE, cfg.neurons), cfg_re("state", Mem.STATE)
        idx, part = local_addr("state", na.mem == Mem.STATE)
        m.d.comb += [
            state.r_addr.eq(Mux(st_re, idx, eng.ctx_addr)),
            state.r_en.eq(st_re | eng.ctx_en),
            eng.state_data.eq(state.r_data),
        ]
        with m.If(~wipe_n):
            m.d.comb += [state.w_addr.eq(clr_cnt), state.w_data.eq(0),
                         state.w_en.eq((1 << S) - 1)]
        with m.Elif(st_we):
            m.d.comb += [state.w_addr.eq(idx), state.w_data.eq(Cat(*[wdata[:W]] * S)),
                         state.w_en.eq(Mux(part < S, Const(1, S) << part, 0))]
        with m.Else():
            m.d.comb += [state.w_addr.eq(eng.wb_addr), state.w_data.eq(eng.wb_data),
                         state.w_en.eq(eng.wb_en.replicate(S))]

        # MSTATE banks: the same priorities (the engine writes one row of entries per cycle).
        for i in range(NL):
            ms = mstate[i]
            sel = mbank(na.index) == i
            ms_we = cfg_we(f"mstate{i}", Mem.MSTATE, cfg.modes, sel, i, sel)
            ms_re = cfg_re(f"mstate{i}", Mem.MSTATE, sel, i, sel)
            idx, part = local_addr(f"mstate{i}", (na.mem == Mem.MSTATE) & sel)
            m.d.comb += [
                ms.r_addr.eq(Mux(ms_re, mrow(idx), eng.mode_addr)),
                ms.r_en.eq(ms_re | eng.mode_en),
                eng.mstate_data[i].eq(ms.r_data),
            ]
            with m.If(~wipe_n):
                m.d.comb += [ms.w_addr.eq(clr_cnt), ms.w_data.eq(0),
                             ms.w_en.eq((1 << MODE_STATE) - 1)]
            with m.Elif(ms_we):
                m.d.comb += [ms.w_addr.eq(mrow(idx)),
                             ms.w_data.eq(Cat(*[wdata[:W]] * MODE_STATE)),
                             ms.w_en.eq(Mux(part < MODE_STATE, Const(1, MODE_STATE) << part, 0))]
            with m.Else():
                m.d.comb += [ms.w_addr.eq(eng.mwb_addr), ms.w_data.eq(eng.mwb_data[i]),
                             ms.w_en.eq(eng.mwb_en[i].replicate(MODE_STATE))]

        # ACC banks: clear > config > synapse engine (buffer sbuf) / neuron engine (~sbuf).
        def bank(v):
            return v[:lb] if lb else Const(0, 1)

        def row(v):
            return v[lb:]

        # ``own`` changes only here (the step's start, a clear); every ACC memory and every
        # lane's read-data multiplexer gets a private copy of it, which loads with ``own`` and
        # in one more cycle of its own (``extra``, then reloading the value it has): the copies
        # differ in their enables, so synthesis keeps them apart, and each sits by the ports it
        # drives instead of one flip-flop fanning out over every ACC bank
        own_load = Signal()
        own_clear = Signal()
        m.d.comb += [own_load.eq(self.step_start & ~clearing & ~eng.busy),
                     own_clear.eq(self.clear & ~clearing)]

        def own_copy(b, name, extra):
            c = Signal(name=name, init=int(b == 0))
            with m.If(own_clear):
                m.d.sync += c.eq(b == 0)
            with m.Elif(own_load):
                m.d.sync += c.eq(self.step[0] ^ b)
            with m.Elif(extra):
                m.d.sync += c.eq(own[b])
            return c

        a_res = [[None] * L for _ in range(2)]
        for b in range(2):
            for j in range(L):
                mem = acc[b][j]
                # the bank's own copy of ``took`` (loaded while the flit decodes to this part
                # and bank: both strobes imply it)
                bank_sel = (na.part[0] == b) & (bank(na.index) == j)
                a_we = cfg_we(f"acc{b}_{j}", Mem.ACC, cfg.neurons,
                              (na.part == b) & (bank(na.index) == j), f"{b}_{j}", bank_sel)
                a_re = cfg_re(f"acc{b}_{j}", Mem.ACC, bank_sel, f"{b}_{j}", bank_sel)
                a_res[b][j] = a_re
                mine = own_copy(b, f"own{b}_acc{j}", a_re)
                idx, _ = local_addr(f"acc{b}_{j}", (na.mem == Mem.ACC) & bank_sel)
                m.d.comb += [
                    mem.r_addr.eq(Mux(a_re, row(idx), Mux(mine, syn.acc_raddr,
                                                            row(eng.ctx_addr)))),
                    mem.r_en.eq(a_re | Mux(mine, syn.acc_ren, eng.ctx_en)),
                ]
                with m.If(~wipe_n):
                    m.d.comb += [mem.w_addr.eq(row(clr_cnt)), mem.w_data.eq(0),
                                 mem.w_en.eq(bank(clr_cnt) == j)]
                with m.Elif(a_we):
                    m.d.comb += [mem.w_addr.eq(row(idx)), mem.w_data.eq(wdata.as_signed()),
                                 mem.w_en.eq(1)]
                with m.Elif(mine):
                    m.d.comb += [mem.w_addr.eq(syn.acc_waddr), mem.w_data.eq(syn.acc_wdata[j]),
                                 mem.w_en.eq(syn.acc_wen[j])]
                with m.Else():
                    m.d.comb += [mem.w_addr.eq(row(eng.clr_addr)), mem.w_data.eq(0),
                                 mem.w_en.eq(eng.clr_en & (bank(eng.clr_addr) == j))]
        # Every ACC word is registered as it leaves its block RAM, with nothing between (a
        # DP16KD's clock-to-out is 5.8 ns); the engines pick their buffer's word after the
        # register, with the select registered beside it (the synapse engine's buffer is 0 when
        # ``sel``, the neuron engine's is then 1). The config port reads the same registers.
        acc_q = [[reg(m, acc[b][j].r_data, f"acc_q{b}_{j}") for j in range(L)] for b in range(2)]
        for j in range(L):
            sel = own_copy(0, f"own0_rd{j}", a_res[0][j] | a_res[1][j])
            m.d.comb += [syn.acc_sel[j].eq(sel), eng.acc_sel[j].eq(~sel)]
            for b in range(2):
                m.d.comb += [syn.acc_q[b][j].eq(acc_q[b][j]), eng.acc_q[b][j].eq(acc_q[b][j])]

        # GROUP descriptors (flip-flops) and counters: written by config.
        gsize = group_layout(cfg).size
        gparts = -(-gsize // 32)
        # one write strobe per descriptor part, decoded from the accepted flit (no address
        # compare between the port's registers and the descriptors' enables)
        for gi in range(G):
            g_hit = 0
            for p in range(gparts):
                hit = cfg_we(f"group{gi}_{p}", Mem.GROUP, G,
                             (na.index == gi) & (na.part == p))
                g_hit = g_hit | hit
                lo, hi = 32 * p, min(32 * p + 32, gsize)
                with m.If(hit):
                    m.d.sync += groups[gi].as_value()[lo:hi].eq(wdata[:hi - lo])
            m.d.comb += eng.phase_reset[gi].eq(clearing | g_hit)
        m.d.comb += eng.groups.eq(groups)

        # -- read data back to the config port (address held by the port) --------------------------
        idx, part = ca.index, ca.part
        # Three stages: every memory's read data is registered as it leaves the block RAM (the
        # GROUP descriptors and counters, flip-flops spread over the engine, as the addressed
        # one is picked), then the addressed part of each memory, then the addressed memory is
        # picked (``ConfigPort`` waits for all three).
        def q(v, name):
            return reg(m, v, f"rdq_{name}")

        bank_data = Array(acc_q[b][j] for b in range(2) for j in range(L))
        gwords = Array(groups[gi].as_value() for gi in range(G))
        cwords = Array(counters)

        def sext(v):
            return v.as_signed()

        cands = {
            Mem.AXON: _part(q(axon.r_data, "axon"), part, axon.parts),
            Mem.SYNAPSE: _part(q(synm.r_data, "synapse"), part, synm.parts),
            Mem.STATE: sext(q(state.r_data, "state").word_select(part, W)),
            Mem.COEF: sext(q(coef.r_data, "coef").word_select(part, CW)),
            Mem.MSTATE: sext(Array(q(ms.r_data, f"mstate{i}") for i, ms in enumerate(mstate))
                             [mbank(idx)].word_select(part[:1], W)),
            Mem.MCOEF: sext(Array(q(mc.r_data, f"mcoef{i}") for i, mc in enumerate(mcoef))
                            [mbank(idx)].word_select(part, CW)),
            Mem.ROUTE_INDEX: _part(q(ridx.r_data, "ridx"), part, ridx.parts),
            Mem.ROUTE: _part(q(routem.r_data, "route"), part, routem.parts),
            Mem.UCODE: q(ucode.r_data, "ucode"),
            Mem.GROUP: _part(q(gwords[idx[:cfg.group_bits]], "group"), part, gparts),
            Mem.COUNTER: q(cwords[idx[:3]], "counter"),
            Mem.ACC: bank_data[Cat(bank(idx), part[0]) if lb else part[0]][:32],
        }
        rdata = Signal(32)
        with m.Switch(ca.mem):
            for mem_id, value in cands.items():
                with m.Case(mem_id):
                    m.d.comb += rdata.eq(reg(m, value, f"rdp_{mem_id.name.lower()}",
                                             unsigned(32)))
        m.d.comb += cfgp.rdata.eq(rdata)

        # -- registered flit ports: FIFOs on both sides, so the router sees ready, valid and
        # the payload straight from flip-flops --
        FW = flit_layout(cfg).size
        m.submodules.inq = inq = fifo.SyncFIFOBuffered(width=FW, depth=self.PORT_DEPTH)
        m.submodules.outq = outq = fifo.SyncFIFOBuffered(width=FW, depth=self.PORT_DEPTH)
        inp = stream.Signature(flit_layout(cfg)).flip().create()
        out = stream.Signature(flit_layout(cfg)).create()
        m.d.comb += [
            inq.w_data.eq(self.i_flit.p.as_value()), inq.w_en.eq(self.i_flit.valid),
            self.i_flit.ready.eq(inq.w_rdy),
            inp.valid.eq(inq.r_rdy), inp.p.eq(inq.r_data), inq.r_en.eq(inp.ready),
            outq.w_data.eq(out.p.as_value()), outq.w_en.eq(out.valid), out.ready.eq(outq.w_rdy),
            self.o_flit.valid.eq(outq.r_rdy), self.o_flit.p.eq(outq.r_data),
            outq.r_en.eq(self.o_flit.ready),
        ]

        # -- input dispatch and spike merge --
        kind = inp.p.kind
        is_spike = kind == FlitKind.SPIKE
        is_cfg = (kind == FlitKind.CFG_WRITE) | (kind == FlitKind.CFG_READ)
        loop = route.o_loop
        in_spike = inp.valid & is_spike & ~clearing & ~cfgp.busy
        # Spikes from the input FIFO and from the route unit's loopback each wait in a register
        # of their own and are merged from there (loopback first): the AXON read address comes
        # from flip-flops, and the input FIFO's read enable does not depend on the route unit's
        # head.
        lp_valid, ip_valid = Signal(), Signal()
        lp, ip = Signal(spike_layout(cfg)), Signal(spike_layout(cfg))
        lp_go = lp_valid & syn.i_spike.ready
        ip_go = ~lp_valid & ip_valid & syn.i_spike.ready
        lp_ready = ~lp_valid | lp_go
        ip_ready = ~ip_valid | ip_go
        lp_take = loop.valid & lp_ready
        ip_take = in_spike & ip_ready
        with m.If(lp_take):
            m.d.sync += [lp_valid.eq(1), lp.eq(loop.p)]
        with m.Elif(lp_go):
            m.d.sync += lp_valid.eq(0)
        with m.If(ip_take):
            m.d.sync += [ip_valid.eq(1), ip.eq(Cat(inp.p.addr[:cfg.axon_bits], inp.p.data[:W]))]
        with m.Elif(ip_go):
            m.d.sync += ip_valid.eq(0)
        sp_valid = lp_valid | ip_valid
        sp_take = lp_take | ip_take
        m.d.comb += [
            syn.i_spike.valid.eq(sp_valid), syn.i_spike.p.eq(Mux(lp_valid, lp, ip)),
            loop.ready.eq(lp_ready),
            cfgp.i_flit.valid.eq(inp.valid & is_cfg),
            cfgp.i_flit.p.eq(inp.p),
        ]
        with m.If(is_spike):
            m.d.comb += inp.ready.eq(ip_ready & ~clearing & ~cfgp.busy)
        with m.Elif(is_cfg):
            m.d.comb += inp.ready.eq(cfgp.i_flit.ready)
        with m.Else():
            m.d.comb += inp.ready.eq(1)

        # -- neuron engine -> emissions FIFO -> route unit -> o_flit --
        wiring.connect(m, eng.emission, route.i_emit)
        with m.If(cfgp.o_flit.valid):
            m.d.comb += [out.valid.eq(1), out.p.eq(cfgp.o_flit.p),
                         cfgp.o_flit.ready.eq(out.ready)]
        with m.Else():
            m.d.comb += [out.valid.eq(route.o_flit.valid),
                         out.p.eq(route.o_flit.p),
                         route.o_flit.ready.eq(out.ready)]

        # -- steps, clear, idle --
        # ``work``: anything but the flit at the head of the input FIFO (which a config access
        # waits on, so it must not block itself); ``busy`` also counts the input FIFO
        work = (syn.busy | sp_valid | eng.busy | route.busy | cfgp.busy | clearing
                | (outq.level != 0))
        busy = work | (inq.level != 0)
        # the config port may start when the rest of the core is quiescent. Registered: nothing
        # worked last cycle and nothing could have started work since (a spike taken, a step, a
        # clear, a flit sent) -- then nothing works now; the port knows its own state. Keeps
        # ``work`` off the access decode.
        work_q = Signal()
        kick_q = Signal()
        m.d.sync += [
            work_q.eq(syn.busy | sp_valid | eng.busy | route.busy | clearing
                      | (outq.level != 0)),
            kick_q.eq(sp_take | self.step_start | self.clear
                      | (out.valid & out.ready)),
        ]
        # ``idle`` from a flip-flop (the OR of every busy flag in the core fanned out to the
        # barrier and the host link's FSM was the 1x1 fabric's critical path): idle now if
        # nothing was busy last cycle and nothing started work then (a flit taken, a step, a
        # clear). One cycle later than the combinational form when the core goes idle, never
        # earlier.
        idle_q = Signal()
        m.d.sync += idle_q.eq(~busy & ~(self.i_flit.valid & self.i_flit.ready)
                              & ~self.step_start & ~self.clear)
        # what the fabric's barrier relies on when it counts this core's flits a cycle late
        # (hw/barrier.py, contract C4 of tests/formal/test_barrier_formal.py)
        m.d.sync += Assert(~(idle_q & self.o_flit.valid), "core: a flit offered while idle")
        m.d.comb += [
            self.idle.eq(idle_q),
            cfgp.allow.eq(~work_q & ~kick_q),
            eng.step.eq(self.step),
            eng.start.eq(self.step_start & ~clearing),
        ]
        with m.If(own_load):
            m.d.sync += [own[0].eq(self.step[0]), own[1].eq(~self.step[0])]
        with m.If(own_clear):
            m.d.sync += [clearing.eq(1), wipe_n.eq(0), clr_cnt.eq(0), own[0].eq(1), own[1].eq(0)]
        with m.If(clearing):
            m.d.sync += clr_cnt.eq(clr_cnt + 1)
            with m.If(clr_cnt == clr_end):
                m.d.sync += [clearing.eq(0), wipe_n.eq(1)]

        # -- counters --
        # BUSY_CYCLES counts ``~idle`` registered: one cycle late, the same totals once the core
        # has been idle a cycle (as it is before any counter read), and the 32-bit increment
        # starts at a flip-flop instead of the core's whole busy tree
        busy_q = Signal()
        m.d.sync += busy_q.eq(~self.idle)
        incs = {
            Counter.NEURON_UPDATES: eng.updated,
            Counter.SYN_OPS: syn.ops,
            Counter.SPIKES_SENT: route.sent,
            Counter.SPIKES_RECEIVED: syn.received,
            Counter.BUSY_CYCLES: busy_q,
        }
        for c in Counter:
            with m.If(cfg_we(f"counter{c.value}", Mem.COUNTER, len(Counter), na.index == c)):
                m.d.sync += counters[c].eq(wdata)
            with m.Else():
                m.d.sync += counters[c].eq(counters[c] + incs[c])
        return m
