"""Neuron datapath: the arithmetic of one microcode instruction (or one row of MODES mode
entries), pipelined so that every stage is one multiply, one add or one mux deep.

Bit-exact with ``sim.neuron.run_program``. Every lane is one complex multiply-accumulate
(six signed ``state_width`` x ``coef_width`` products) followed by the MODES output projection
(two more products)::

    p0 = a0*k0   p1 = a1*k1   p2 = b*l0        re = p0 - p1 + p2      re_r = sat(rnd(re, sh))
    p3 = a0*k1   p4 = a1*k0   p5 = b*l1        im = p3 + p4 + p5      im_r = sat(rnd(im, sh))
    term = sat(rnd(re_r*cr + im_r*cn, so))     lane_sum = wrap(sum of the live lanes' terms)

Lane 0 also serves MAD (``a1 = 0``) and CMAD; the other lanes only MODES. Lane 0 carries the
scalar path (ADD, SUB, MAX, MIN, LDC, SHR, CGE, SEL). A product whose operand is wider than
18 bits is split into an 18-bit signed high part and an unsigned low part, so that each partial
product is one MULT18X18D and the partials are added in the next stage.

Latencies, counted in cycles from the inputs (registered at ``E0`` inside the component):
``LAT_SCALAR`` (scalar result, ``cge``), ``LAT_X`` (every lane's ``re_r, im_r``),
``LAT_SUM`` (``lane_sum``). Nothing stalls: results leave at fixed latencies.
"""

from __future__ import annotations

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.layouts import MODE_COEFS, MODE_STATE, Op
from neuroloom.hw.targets import is_ecp5

__all__ = ["Mul18", "NeuronDatapath", "sat_hw", "rnd_hw", "reg", "delay", "ram_delay"]

#: widest multiplier operand that fits one MULT18X18D
DSP_WIDTH = 18


def sat_hw(value, width: int):
    """Clamp a signed value to the signed ``width``-bit range (result is ``width`` bits).

    The value fits iff its bits from ``width - 1`` up are all equal (all copies of the sign):
    a few LUTs wide, where comparisons with the bounds would be two carry chains."""
    if not value.shape().signed:
        value = Cat(value, Const(0, 1)).as_signed()
    if len(value) <= width:
        return Cat(value, value[-1].replicate(width - len(value))).as_signed()
    top = value[width - 1:]
    fits = (top == 0) | (top == (1 << len(top)) - 1)
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    neg = value[-1]
    return Mux(fits, value[:width], Mux(neg, Const(lo, signed(width)),
                                          Const(hi, signed(width))))[:width].as_signed()


def rnd_hw(m: Module, value, shift, name: str):
    """``(value + (2**shift >> 1)) >> shift`` (round half up, arithmetic shift), combinational."""
    half = Signal(33, name=f"{name}_half")
    m.d.comb += half.eq((Const(1, 33) << shift)[1:])
    out = Signal(signed(len(value) + 1), name=name)
    m.d.comb += out.eq((value + half) >> shift)
    return out


def reg(m: Module, value, name: str, shape=None):
    """A register loaded with ``value`` every cycle."""
    s = Signal(shape if shape is not None else value.shape(), name=name)
    m.d.sync += s.eq(value)
    return s


def delay(m: Module, value, cycles: int, name: str):
    """``value`` delayed by ``cycles`` registers (``value`` itself for 0)."""
    for i in range(cycles):
        value = reg(m, value, f"{name}_d{i + 1}")
    return value


def ram_delay(m: Module, value, cycles: int, name: str):
    """``value`` delayed by ``cycles`` through a ring of LUT RAM (a TRELLIS_DPR16X4 holds 16
    cycles of 4 bits, where flip-flops would take 64) and one output register. Contents are
    not reset: delay in flip-flops (:func:`delay`) whatever must be valid right after reset."""
    if cycles < 2:
        return delay(m, value, cycles, name)
    value = value.as_value() if hasattr(value, "as_value") else value
    shape = value.shape()
    depth = 16 if cycles <= 16 else 1 << (cycles - 1).bit_length()
    mem = Memory(shape=unsigned(len(value)), depth=depth, init=[])
    m.submodules[f"{name}_ring"] = mem
    ptr = Signal(range(depth), name=f"{name}_ptr")
    m.d.sync += ptr.eq(ptr + 1)
    wp, rp = mem.write_port(), mem.read_port(domain="comb")
    m.d.comb += [wp.addr.eq(ptr), wp.data.eq(value), wp.en.eq(1),
                 rp.addr.eq(ptr - (cycles - 1))]
    out = Signal(shape, name=name)
    m.d.sync += out.eq(rp.data)
    return out


def _half(m: Module, shift, width: int, name: str):
    """``(1 << shift) >> 1`` as a ``width``-bit signed value."""
    h = Signal(signed(width), name=name)
    m.d.comb += h.eq((Const(1, width + 1) << shift)[1:width + 1])
    return h


class Mul18(wiring.Component):
    """``p = a * k`` for operands of at most 18 bits, two cycles after ``a`` and ``k``: the
    operands are registered, multiplied, and the product registered.

    On ECP5 (:func:`~neuroloom.hw.targets.is_ecp5`) this is one ``MULT18X18D`` with its input
    and output registers on: the multiply runs from register to register inside the block,
    and the routes into and out of it carry no logic. Yosys maps a ``*`` to the block without
    its registers, so the ~4 ns of multiplier logic then shares the cycle with both routes
    (the core's critical path at 80-93 MHz). Elsewhere it is the same two registers around a
    ``*``."""

    def __init__(self, a_shape, k_shape):
        self._a, self._k = a_shape, k_shape
        assert a_shape.width <= DSP_WIDTH and k_shape.width <= DSP_WIDTH
        width = a_shape.width + k_shape.width
        super().__init__({"a": In(a_shape), "k": In(k_shape), "p": Out(signed(width))})

    def elaborate(self, platform):
        m = Module()
        if not is_ecp5(platform):
            a, k = reg(m, self.a, "a"), reg(m, self.k, "k")
            m.d.sync += self.p.eq(a * k)
            return m
        # operands extended to 18 bits as signed values (an unsigned one gets a zero on top,
        # which its shape has room for: the caller passes unsigned parts of <= 17 bits)
        a18, k18, p36 = Signal(18), Signal(18), Signal(36)
        if not self._a.signed:
            assert self._a.width < DSP_WIDTH
        if not self._k.signed:
            assert self._k.width < DSP_WIDTH
        m.d.comb += [a18.eq(self.a), k18.eq(self.k)]       # sign- or zero-extended
        ports = {f"i_A{i}": a18[i] for i in range(18)}
        ports.update({f"i_B{i}": k18[i] for i in range(18)})
        ports.update({f"i_C{i}": Const(0, 1) for i in range(18)})
        ports.update({f"o_P{i}": p36[i] for i in range(36)})
        clk = ClockSignal("sync")
        m.submodules.dsp = Instance(
            "MULT18X18D",
            p_REG_INPUTA_CLK="CLK0", p_REG_INPUTA_CE="CE0", p_REG_INPUTA_RST="RST0",
            p_REG_INPUTB_CLK="CLK0", p_REG_INPUTB_CE="CE0", p_REG_INPUTB_RST="RST0",
            p_REG_INPUTC_CLK="NONE", p_REG_PIPELINE_CLK="NONE",
            p_REG_OUTPUT_CLK="CLK0", p_REG_OUTPUT_CE="CE0", p_REG_OUTPUT_RST="RST0",
            p_CLK0_DIV="ENABLED", p_CLK1_DIV="ENABLED", p_CLK2_DIV="ENABLED",
            p_CLK3_DIV="ENABLED", p_HIGHSPEED_CLK="NONE", p_GSR="DISABLED",
            p_CAS_MATCH_REG="FALSE", p_SOURCEB_MODE="B_SHIFT", p_MULT_BYPASS="DISABLED",
            p_RESETMODE="SYNC",
            i_SIGNEDA=Const(1, 1), i_SIGNEDB=Const(1, 1),
            i_SOURCEA=Const(0, 1), i_SOURCEB=Const(0, 1),
            i_CLK0=clk, i_CLK1=Const(0, 1), i_CLK2=Const(0, 1), i_CLK3=Const(0, 1),
            i_CE0=Const(1, 1), i_CE1=Const(0, 1), i_CE2=Const(0, 1), i_CE3=Const(0, 1),
            i_RST0=Const(0, 1), i_RST1=Const(0, 1), i_RST2=Const(0, 1), i_RST3=Const(0, 1),
            **ports)
        m.d.comb += self.p.eq(p36[:len(self.p)].as_signed())
        return m


class _Product:
    """A signed product in three registered stages (``LAT`` cycles): the multipliers' own
    operand copies, the partial products (:class:`Mul18`, each <= 18 x 18 bits), their sum.

    The operand copies are the input registers of each ``MULT18X18D`` on ECP5 (flip-flops
    elsewhere), so no route from the shared datapath inputs (which fan out to the scalar path
    and up to four partial products) ends in the multiplier's logic."""

    LAT = 3

    def __init__(self, m: Module, a, k, name: str):
        wa = len(a)
        k = k.as_value() if hasattr(k, "as_value") else k
        a = a.as_value() if hasattr(a, "as_value") else a

        def mul(x, y, part):
            unit = Mul18(x.shape(), y.shape())
            m.submodules[f"{name}_{part}"] = unit
            m.d.comb += [unit.a.eq(x), unit.k.eq(y)]
            return unit.p

        if wa <= DSP_WIDTH:
            self.value = reg(m, mul(a, k, "m"), name, signed(wa + len(k)))
            return
        s = wa - DSP_WIDTH
        lo = mul(a[:s].as_unsigned(), k, "lo")
        hi = mul(a[s:].as_signed(), k, "hi")
        self.value = reg(m, (hi << s) + lo, name, signed(wa + len(k)))


class NeuronDatapath(wiring.Component):
    """The pipelined arithmetic of the neuron engine (see the module docstring).

    Interface attributes (inputs sampled every cycle)
    --------------------------------------------------
    op, sh, so : In, the instruction's opcode and shifts.
    a, b : In(signed(state_width)), scalar source operands (``b`` is also MODES' ``u``).
    kc : In(signed(coef_width)), ``C[ck]`` (LDC).
    pred : In(1), the predicate before the instruction (SEL).
    x : In(lanes x 2 x signed(state_width)), ``(a0, a1)`` per lane.
    c : In(lanes x 6 x signed(coef_width)), ``(k0, k1, l0, l1, cr, cn)`` per lane.
    live : In(lanes), lanes whose term enters ``lane_sum``.
    scalar, cge : Out, at ``LAT_SCALAR``: the scalar result and ``a >= b``.
    x_out : Out(lanes x 2 x signed(state_width)), at ``LAT_X``: ``(re_r, im_r)`` per lane.
    lane_sum : Out(signed(acc_width)), at ``LAT_SUM``.
    """

    LAT_SCALAR = 3
    #: products (``_Product.LAT``), the two sums, shift, saturate
    LAT_X = _Product.LAT + 4

    def __init__(self, cfg: FabricConfig, lanes: int = 1):
        self._cfg, self._lanes = cfg, lanes
        W, CW = cfg.state_width, cfg.coef_width
        super().__init__({
            "op": In(unsigned(5)), "sh": In(unsigned(5)), "so": In(unsigned(5)),
            "a": In(signed(W)), "b": In(signed(W)), "kc": In(signed(CW)), "pred": In(1),
            "x": In(data.ArrayLayout(data.ArrayLayout(signed(W), MODE_STATE), lanes)),
            "c": In(data.ArrayLayout(data.ArrayLayout(signed(CW), MODE_COEFS), lanes)),
            "live": In(lanes),
            "scalar": Out(signed(W)), "cge": Out(1),
            "x_out": Out(data.ArrayLayout(data.ArrayLayout(signed(W), MODE_STATE), lanes)),
            "lane_sum": Out(signed(cfg.acc_width)),
        })

    @property
    def LAT_SUM(self) -> int:
        # x + projection product + sum, round, shift, saturate (4) + lane adder tree
        return self.LAT_X + _Product.LAT + 4 + (1 if self._lanes <= 4 else 2)

    def elaborate(self, platform):
        cfg, L = self._cfg, self._lanes
        W, CW, A = cfg.state_width, cfg.coef_width, cfg.acc_width
        m = Module()

        # -- E0: inputs registered ------------------------------------------------------------
        op = reg(m, self.op, "e0_op")
        sh = reg(m, self.sh, "e0_sh")
        so = reg(m, self.so, "e0_so")
        a, b = reg(m, self.a, "e0_a"), reg(m, self.b, "e0_b")
        kc, pred = reg(m, self.kc, "e0_kc"), reg(m, self.pred, "e0_pred")
        x = reg(m, self.x, "e0_x")
        c = reg(m, self.c, "e0_c")
        live = reg(m, self.live, "e0_live")

        # -- scalar path (lane 0): E1 wide results, E2 round/shift, E3 saturate + select -------
        SW = max(W + 2, CW + 33)
        add1 = reg(m, a + b, "s_add")
        sub1 = reg(m, a - b, "s_sub")
        gt1 = reg(m, a > b, "s_gt")
        ge1 = reg(m, a >= b, "s_ge")
        a1_, b1_ = reg(m, a, "s_a"), reg(m, b, "s_b")
        pred1 = reg(m, pred, "s_pred")
        ldc1 = reg(m, kc << sh, "s_ldc", signed(SW))
        HW = max(W + 2, 34)
        shr_sum1 = reg(m, a + _half(m, sh, HW, "s_half"), "s_shr_sum", signed(HW))
        sh1 = reg(m, sh, "s_sh1")
        op1 = reg(m, op, "s_op1")
        res2 = Signal(signed(max(SW, HW) + 1), name="s_res2")
        with m.Switch(op1):
            with m.Case(Op.ADD):
                m.d.sync += res2.eq(add1)
            with m.Case(Op.SUB):
                m.d.sync += res2.eq(sub1)
            with m.Case(Op.MAX):
                m.d.sync += res2.eq(Mux(gt1, a1_, b1_))
            with m.Case(Op.MIN):
                m.d.sync += res2.eq(Mux(gt1, b1_, a1_))
            with m.Case(Op.LDC):
                m.d.sync += res2.eq(ldc1)
            with m.Case(Op.SHR):
                m.d.sync += res2.eq(shr_sum1 >> sh1)
            with m.Case(Op.SEL):
                m.d.sync += res2.eq(Mux(pred1, a1_, b1_))
        m.d.sync += [self.scalar.eq(sat_hw(res2, W)), self.cge.eq(reg(m, ge1, "s_ge2"))]

        # -- lanes: complex product (E1-E3), sums (E4, E5), shift (E6), saturate (E7) ----------
        PW = max(W + CW + 3, 34)
        Q = _Product.LAT
        sh_d = delay(m, sh, Q + 2, "sh")                 # aligned with the sum re (E5)
        so_d = delay(m, so, self.LAT_X + Q + 1, "so")    # aligned with the projection sum
        half_sh = reg(m, _half(m, delay(m, sh, Q - 1, "shh"), PW, "half_sh_c"),
                      "half_sh")                         # aligned with the products (E3)
        live_d = delay(m, live, self.LAT_X + Q + 4, "live")
        terms = []
        for i in range(L):
            a0, a1 = x[i][0], x[i][1]
            k0, k1, l0, l1, cr, cn = (c[i][j] for j in range(MODE_COEFS))
            p = [_Product(m, u, v, f"l{i}_p{j}").value for j, (u, v) in
                 enumerate(((a0, k0), (a1, k1), (b, l0), (a0, k1), (a1, k0), (b, l1)))]
            re_a = reg(m, p[0] - p[1], f"l{i}_re_a", signed(PW))
            re_b = reg(m, p[2] + half_sh, f"l{i}_re_b", signed(PW))
            im_a = reg(m, p[3] + p[4], f"l{i}_im_a", signed(PW))
            im_b = reg(m, p[5] + half_sh, f"l{i}_im_b", signed(PW))
            re = reg(m, re_a + re_b, f"l{i}_re", signed(PW))
            im = reg(m, im_a + im_b, f"l{i}_im", signed(PW))
            re_s = reg(m, re >> sh_d, f"l{i}_re_s", signed(PW))
            im_s = reg(m, im >> sh_d, f"l{i}_im_s", signed(PW))
            re_r = reg(m, sat_hw(re_s, W), f"l{i}_re_r")
            im_r = reg(m, sat_hw(im_s, W), f"l{i}_im_r")
            m.d.comb += [self.x_out[i][0].eq(re_r), self.x_out[i][1].eq(im_r)]
            # projection: E8-E10 products; E11 sum; E12 + half; E13 shift; E14 saturate
            cr6, cn6 = (ram_delay(m, v, self.LAT_X, f"l{i}_{n}").as_signed()
                        for v, n in ((cr, "cr"), (cn, "cn")))
            pr = _Product(m, re_r, cr6, f"l{i}_pr").value
            pi = _Product(m, im_r, cn6, f"l{i}_pi").value
            proj = reg(m, pr + pi, f"l{i}_proj", signed(PW))
            half_so = _half(m, so_d, PW, f"l{i}_half_so")
            proj_h = reg(m, proj + half_so, f"l{i}_proj_h", signed(PW))
            proj_s = reg(m, proj_h >> reg(m, so_d, f"l{i}_so11"), f"l{i}_proj_s", signed(PW))
            term = reg(m, sat_hw(proj_s, W), f"l{i}_term")
            terms.append(Mux(live_d[i], term, 0))

        # -- lane sum (modular, acc_width): one stage for up to 4 lanes, two for 8 ---------------
        def tree(values):
            while len(values) > 1:
                values = [values[j] + values[j + 1] if j + 1 < len(values) else values[j]
                          for j in range(0, len(values), 2)]
            return values[0]

        if L <= 4:
            total = tree(terms)
        else:
            halves = [reg(m, tree(terms[h * 4:(h + 1) * 4]), f"lsum_h{h}", signed(A))
                      for h in range(2)]
            total = halves[0] + halves[1]
        m.d.sync += self.lane_sum.eq(total[:A].as_signed())
        return m
