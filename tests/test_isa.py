"""Microcode ISA: encoding, assembler/disassembler round trip, errors, and every instruction of
the golden interpreter against an independent scalar reference written from the spec."""

import math
from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.isa import Instr, decode, disassemble, encode, format_instr
from neuroloom.contract.layouts import Emit, Op, Operand
from neuroloom.firmware.asm import AsmError, assemble, load_program, parse
from neuroloom.sim.neuron import run_program

CFG = FabricConfig()
W = CFG.state_width
LO, HI = -(2 ** (W - 1)), 2 ** (W - 1) - 1
PROGRAMS = ["s4d", "channel", "relu", "linear", "integrator", "lif"]


# -- independent reference (scalar, exact rationals) --------------------------------------------

def ref_round(v: int, s: int) -> int:
    """Round half up of v / 2**s, computed with exact rationals."""
    return math.floor(Fraction(v, 2 ** s) + Fraction(1, 2)) if s else v


def ref_sat(v: int) -> int:
    return LO if v < LO else HI if v > HI else v


def ref_wrap(v: int, width: int) -> int:
    m = 2 ** width
    return (v + m // 2) % m - m // 2


def ref_exec(program, regs, acc, coef, modes=()):
    """Scalar interpreter written from docs/architecture.md. Returns (regs, emitted, payload)
    and, when ``modes`` (a list of ``[Re x, Im x, Re dA, Im dA, Re dB, Im dB, Re C', -Im C']``)
    is given, the mode states after the program as a fourth item."""
    modes = [list(m) for m in modes]
    r = list(regs) + [0] * (8 - len(regs))
    a = ref_sat(acc)
    p = False
    pending = (False, 0)

    def val(code):
        return r[code] if code < 8 else (a if code == Operand.ACC else 0)

    for i in program:
        if i.op == Op.MAD:
            r[i.rd] = ref_sat(ref_round(val(i.ra) * coef[i.ck] + val(i.rb) * coef[i.cl], i.sh))
        elif i.op == Op.CMAD:
            xr, xi = (0, 0) if i.ra == Operand.ZERO else (r[i.ra], r[i.ra + 1])
            re = xr * coef[i.ck] - xi * coef[i.ck + 1] + val(i.rb) * coef[i.cl]
            im = xr * coef[i.ck + 1] + xi * coef[i.ck] + val(i.rb) * coef[i.cl + 1]
            r[i.rd], r[i.rd + 1] = ref_sat(ref_round(re, i.sh)), ref_sat(ref_round(im, i.sh))
        elif i.op == Op.ADD:
            r[i.rd] = ref_sat(val(i.ra) + val(i.rb))
        elif i.op == Op.SUB:
            r[i.rd] = ref_sat(val(i.ra) - val(i.rb))
        elif i.op == Op.MAX:
            r[i.rd] = max(val(i.ra), val(i.rb))
        elif i.op == Op.MIN:
            r[i.rd] = min(val(i.ra), val(i.rb))
        elif i.op == Op.LDC:
            r[i.rd] = ref_sat(coef[i.ck] * 2 ** i.sh)
        elif i.op == Op.SHR:
            r[i.rd] = ref_sat(ref_round(val(i.ra), i.sh))
        elif i.op == Op.CGE:
            p = val(i.ra) >= val(i.rb)
        elif i.op == Op.SEL:
            r[i.rd] = val(i.ra) if p else val(i.rb)
        elif i.op == Op.MODES:
            u, y = val(i.rb), 0
            for md in modes:
                xr, xi, ar, ai, br, bi, cr, cn = md
                md[0] = ref_sat(ref_round(xr * ar - xi * ai + u * br, i.sh))
                md[1] = ref_sat(ref_round(xr * ai + xi * ar + u * bi, i.sh))
                y = ref_wrap(y + ref_sat(ref_round(md[0] * cr + md[1] * cn, i.so)),
                             CFG.acc_width)
            r[i.rd] = ref_sat(y)
        if i.emit != Emit.NONE:
            cond = {Emit.ALWAYS: True, Emit.NONZERO: r[i.rd] != 0, Emit.IF_P: p}[i.emit]
            pending = (cond, r[i.rd])
    out = r[:CFG.state_regs], pending[0], pending[1] if pending[0] else 0
    return out + ([m[:2] for m in modes],) if modes else out


def golden_exec(program, regs, acc, coef, modes=()):
    state = np.array(regs, dtype=np.int64).reshape(1, 1, -1)
    args = ()
    if modes:
        md = np.array(modes, dtype=np.int64).reshape(1, len(modes), 8)      # (1, M, 8)
        args = (md[None, :, :, :2], md[:, :, 2:])
    res = run_program(CFG, program, state, np.array([[acc]]),
                      np.array(coef, dtype=np.int64).reshape(1, -1), *args)
    out = [int(v) for v in res[0][0, 0]], bool(res[1][0, 0]), int(res[2][0, 0])
    return out + (res[3][0, 0].tolist(),) if modes else out


# -- strategies ---------------------------------------------------------------------------------

corner_state = st.sampled_from([LO, LO + 1, -1, 0, 1, HI - 1, HI])
state_val = st.one_of(corner_state, st.integers(LO, HI))
coef_val = st.one_of(st.sampled_from([-32768, -1, 0, 1, 32767, 16384]),
                     st.integers(-32768, 32767))
acc_val = st.one_of(st.sampled_from([-(2 ** 31), 2 ** 31 - 1, LO - 1, HI + 1, 0]),
                    st.integers(-(2 ** 31), 2 ** 31 - 1))
src = st.sampled_from(list(range(8)) + [Operand.ACC, Operand.ZERO])


@st.composite
def instrs(draw, op=None):
    op = draw(st.sampled_from(list(Op))) if op is None else op
    emit = draw(st.sampled_from(list(Emit))) if op not in (Op.NOP, Op.CGE) else Emit.NONE
    if op == Op.CMAD:
        rd = draw(st.integers(0, 6))
        ra = draw(st.sampled_from(list(range(7)) + [Operand.ZERO]))
        ck, cl = draw(st.integers(0, 6)), draw(st.integers(0, 6))
    else:
        rd, ra = draw(st.integers(0, 7)), draw(src)
        ck, cl = draw(st.integers(0, 7)), draw(st.integers(0, 7))
    shift = st.one_of(st.sampled_from([0, 1, 15, 31]), st.integers(0, 31))
    return Instr(op=op, rd=rd, ra=ra, rb=draw(src), ck=ck, cl=cl, sh=draw(shift),
                 so=draw(shift), emit=emit).canonical()


#: mode entries: state (2) then dA, dB, C' (6), corner-heavy
mode_entry = st.tuples(state_val, state_val, *[coef_val] * 6)
mode_entries = st.lists(mode_entry, min_size=0, max_size=5)


def _check(program, regs, acc, coef, modes=()):
    assert golden_exec(program, regs, acc, coef, modes) == \
        ref_exec(program, regs, acc, coef, modes), "\n".join(map(str, program))


@pytest.mark.parametrize("op", list(Op), ids=lambda o: o.name)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_each_instruction_matches_reference(op, data):
    # a setup instruction to set P at random, then the instruction under test
    setup = Instr(Op.CGE, ra=data.draw(src), rb=data.draw(src))
    program = [setup, data.draw(instrs(op))]
    regs = data.draw(st.lists(state_val, min_size=CFG.state_regs, max_size=CFG.state_regs))
    coef = data.draw(st.lists(coef_val, min_size=8, max_size=8))
    _check(program, regs, data.draw(acc_val), coef, data.draw(mode_entries))


@settings(max_examples=300, deadline=None)
@given(program=st.lists(instrs(), min_size=1, max_size=8),
       regs=st.lists(state_val, min_size=4, max_size=4),
       coef=st.lists(coef_val, min_size=8, max_size=8), acc=acc_val, modes=mode_entries)
def test_random_programs_match_reference(program, regs, acc, coef, modes):
    _check(program, regs, acc, coef, modes)


def test_modes_rounding_saturation_and_wrap_corners():
    one = Instr(Op.MODES, rd=5, rb=Operand.ACC, sh=1, so=1, emit=Emit.ALWAYS)
    # rounding half up at both roundings: x = rnd(u * 1, 1), o = rnd(x * 1, 1)
    for acc, x, y in [(3, 2, 1), (-3, -1, 0), (5, 3, 2), (-5, -2, -1), (1, 1, 1), (-1, 0, 0)]:
        regs, _, pay, xm = golden_exec([one], [0] * 4, acc, [0] * 8, [[0, 0, 0, 0, 1, 0, 1, 0]])
        assert (xm, pay) == ([[x, 0]], y), (acc, xm, pay)
    # the state saturates, then the output term, then the sum (W bits on the way to rd)
    big = [HI, HI, 32767, 0, 32767, 0, 32767, 32767]
    for m in (1, 3, 257, 300):   # 257+ terms of 2**23-1 leave the 32-bit range: Y wraps
        modes = [big] * m
        prog = [replace(one, sh=0, so=0)]
        assert golden_exec(prog, [0] * 4, 2 ** 31 - 1, [0] * 8, modes) == \
            ref_exec(prog, [0] * 4, 2 ** 31 - 1, [0] * 8, modes), m
    _, _, pay, xm = golden_exec([replace(one, sh=0, so=0)], [0] * 4, HI, [0] * 8, [big] * 3)
    assert xm == [[HI, HI]] * 3 and pay == HI
    _, _, pay, _ = golden_exec([replace(one, sh=0, so=0)], [0] * 4, HI, [0] * 8, [big] * 300)
    assert pay == LO, "300 * (2**23-1) wraps modulo 2**32 to a negative sum, saturated to LO"
    # no mode entries: the sum is 0
    assert golden_exec([one], [0] * 4, 77, [0] * 8)[2] == 0


def test_rounding_is_half_up_and_saturates():
    mad = [Instr(Op.MAD, rd=4, ra=Operand.ACC, ck=0, rb=Operand.ZERO, sh=1, emit=Emit.ALWAYS)]
    for acc, expect in [(3, 2), (-3, -1), (1, 1), (-1, 0), (5, 3), (-5, -2)]:
        assert golden_exec(mad, [0] * 4, acc, [1] + [0] * 7)[2] == expect, acc
    big = [Instr(Op.LDC, rd=0, ck=0, sh=31, emit=Emit.ALWAYS)]
    assert golden_exec(big, [0] * 4, 0, [-5] + [0] * 7)[0][0] == LO
    assert golden_exec(big, [0] * 4, 0, [5] + [0] * 7)[0][0] == HI


# -- encoding and assembler ---------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(ins=instrs(), last=st.booleans())
def test_encode_decode_round_trip(ins, last):
    ins = Instr(**{**ins.__dict__, "last": last})
    word = encode(ins)
    assert 0 <= word < 2 ** 32
    assert decode(word) == ins


@pytest.mark.parametrize("name", PROGRAMS)
def test_shipped_programs_round_trip(name):
    words = load_program(name)
    text = disassemble(words)
    assert assemble(text) == words
    assert disassemble(assemble(text)) == text
    assert [decode(w).last for w in words] == [False] * (len(words) - 1) + [True]


@settings(max_examples=100, deadline=None)
@given(program=st.lists(instrs(), min_size=1, max_size=10))
def test_random_program_text_round_trip(program):
    text = "\n".join(format_instr(i) for i in program)
    words = assemble(text)
    assert [replace(decode(w), last=False) for w in words] == program
    assert disassemble(words) == text + "\n"


def test_pseudo_instructions_and_defines():
    words = assemble(".equ K 3\nMOV R1, ACC\nRELU R2, R1\nMUL R3, R2, C1, K\nCMUL.E R4, R0, C2, K")
    assert [decode(w).op for w in words] == [Op.ADD, Op.MAX, Op.MAD, Op.CMAD]
    assert decode(words[2]).sh == 3
    assert decode(assemble(".equ K 3\nSHR R0, R0, K", defines={"K": 7})[0]).sh == 7
    modes = decode(assemble(".equ F 14\nMODES.NZ R5, ACC, F, 19")[0])
    assert (modes.op, modes.rd, modes.rb, modes.sh, modes.so, modes.emit) == \
        (Op.MODES, 5, Operand.ACC, 14, 19, Emit.NONZERO)


@pytest.mark.parametrize("text, message", [
    ("FOO R0, R1, R2", "prog.s:1: unknown mnemonic 'FOO'"),
    ("ADD R0, R1", "ADD takes 3 operand(s)"),
    ("\nADD ACC, R1, R2", "prog.s:2: 'ACC' is not a writable register"),
    ("ADD R0, R9, R2", "'R9' is not a source operand"),
    ("MAD R0, R1, C9, R2, C0, 1", "'C9' is not a coefficient"),
    ("SHR R0, R1, 32", "shift 32 out of range 0..31"),
    ("SHR R0, R1, FRAC", "'FRAC' is neither a number nor a defined constant"),
    ("CMAD R7, R0, C0, ACC, C2, 1", "CMAD destination pair must start at R0..R6"),
    ("CMAD R0, ACC, C0, ACC, C2, 1", "CMAD complex source must be a pair"),
    ("CMAD R0, R0, C7, ACC, C2, 1", "CMAD coefficient pairs must start at C0..C6"),
    ("CGE.E R0, R1", "CGE writes no register and cannot emit"),
    ("MODES R5, R4, 15", "MODES takes 4 operand(s)"),
    ("MODES R5, R4, 15, 32", "shift 32 out of range 0..31"),
    ("ADD.X R0, R1, R2", "unknown emit suffix '.X'"),
    (".equ 1X 3\nNOP", "expected '.equ NAME VALUE'"),
    (".org 3", "unknown directive '.org'"),
    ("; nothing", "program has no instructions"),
])
def test_assembler_errors_name_line_and_problem(text, message):
    with pytest.raises(AsmError) as e:
        parse(text, source="prog.s")
    assert message in str(e.value) and str(e.value).startswith("prog.s:")


def test_unknown_program_lists_shipped_ones():
    with pytest.raises(FileNotFoundError, match="shipped programs"):
        load_program("nope")


def test_decode_rejects_bad_words():
    with pytest.raises(ValueError, match="unknown opcode"):
        decode(31)
