"""Neuron microcode ISA: instruction records, encoding to 32-bit words, and disassembly.

The word format is ``layouts.instr_layout()`` (``layouts.modes_instr_layout()`` for ``MODES``,
whose output shift ``so`` sits where the other formats have ``ck``/``cl``); the exact semantics
of every instruction are in ``docs/architecture.md`` ("Neuron microcode") and executed by
``sim.neuron``. A program is a straight-line list of instructions; the last one has
``last=1``. Every instruction may carry an emit condition (mnemonic suffix ``.E``, ``.NZ`` or
``.P``): it replaces the neuron's pending spike with ``R[rd]`` under that condition.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .layouts import Emit, Op, Operand, instr_layout, modes_instr_layout, pack, unpack

__all__ = ["Instr", "encode", "decode", "disassemble", "format_instr", "SIGNATURES",
           "operand_name", "EMIT_SUFFIX"]

#: operand kinds per opcode, in assembly order: d = destination register R0..R7,
#: a/b = source operand (R0..R7, ACC, ZERO), k/l = coefficient C0..C7, s = shift 0..31,
#: o = output shift 0..31 (MODES)
SIGNATURES: dict[Op, str] = {
    Op.NOP: "",
    Op.MAD: "dakbls",
    Op.CMAD: "dakbls",
    Op.ADD: "dab",
    Op.SUB: "dab",
    Op.MAX: "dab",
    Op.MIN: "dab",
    Op.LDC: "dks",
    Op.SHR: "das",
    Op.CGE: "ab",
    Op.SEL: "dab",
    Op.MODES: "dbso",
}

EMIT_SUFFIX = {Emit.NONE: "", Emit.ALWAYS: ".E", Emit.NONZERO: ".NZ", Emit.IF_P: ".P"}


@dataclass(frozen=True)
class Instr:
    """One microcode instruction (fields as in ``instr_layout``)."""
    op: Op
    rd: int = 0
    ra: int = Operand.ZERO
    rb: int = Operand.ZERO
    ck: int = 0
    cl: int = 0
    sh: int = 0
    so: int = 0
    emit: Emit = Emit.NONE
    last: bool = False

    def __post_init__(self):
        object.__setattr__(self, "op", Op(self.op))
        object.__setattr__(self, "emit", Emit(self.emit))

    def canonical(self) -> Instr:
        """The same instruction with the fields its opcode does not use at their defaults
        (what the assembler produces; the hardware ignores unused fields)."""
        used = {"d": "rd", "a": "ra", "b": "rb", "k": "ck", "l": "cl", "s": "sh", "o": "so"}
        keep = {used[k] for k in SIGNATURES[self.op]}
        defaults = Instr(self.op)
        return replace(self, **{f: getattr(defaults, f) for f in used.values() if f not in keep})

    def check(self) -> None:
        """Raise ``ValueError`` if the instruction is not valid (e.g. a bad complex pair)."""
        if not 0 <= self.rd <= 7:
            raise ValueError(f"destination R{self.rd} does not exist (R0..R7)")
        for name in ("ra", "rb"):
            v = getattr(self, name)
            if not 0 <= v <= Operand.ZERO:
                raise ValueError(f"source operand code {v} is not R0..R7, ACC or ZERO")
        for name in ("ck", "cl"):
            if not 0 <= getattr(self, name) <= 7:
                raise ValueError(f"coefficient C{getattr(self, name)} does not exist (C0..C7)")
        if not 0 <= self.sh <= 31:
            raise ValueError(f"shift {self.sh} out of range 0..31")
        if not 0 <= self.so <= 31:
            raise ValueError(f"output shift {self.so} out of range 0..31")
        if self.op == Op.CMAD:
            if self.rd > 6:
                raise ValueError("CMAD destination pair must start at R0..R6 (writes rd, rd+1)")
            if self.ra == Operand.ACC or (self.ra != Operand.ZERO and self.ra > 6):
                raise ValueError("CMAD complex source must be a pair R0..R6 (ra, ra+1) or ZERO")
            if self.ck > 6 or self.cl > 6:
                raise ValueError("CMAD coefficient pairs must start at C0..C6 (uses k, k+1)")
        if self.emit != Emit.NONE and self.op in (Op.NOP, Op.CGE):
            raise ValueError(f"{self.op.name} writes no register and cannot emit")


def encode(instr: Instr) -> int:
    instr.check()
    if instr.op == Op.MODES:
        return pack(modes_instr_layout(), op=instr.op, emit=instr.emit, last=int(instr.last),
                    rd=instr.rd, rb=instr.rb, so=instr.so, sh=instr.sh)
    return pack(instr_layout(), op=instr.op, emit=instr.emit, last=int(instr.last), rd=instr.rd,
                ra=instr.ra, rb=instr.rb, ck=instr.ck, cl=instr.cl, sh=instr.sh)


def decode(word: int) -> Instr:
    f = unpack(instr_layout(), int(word))
    try:
        op = Op(f["op"])
    except ValueError:
        raise ValueError(f"word {word:#010x}: unknown opcode {f['op']}") from None
    if op == Op.MODES:
        g = unpack(modes_instr_layout(), int(word))
        instr = Instr(op=op, rd=g["rd"], rb=g["rb"], sh=g["sh"], so=g["so"],
                      emit=Emit(g["emit"]), last=bool(g["last"]))
        instr.check()
        return instr
    instr = Instr(op=op, rd=f["rd"], ra=f["ra"], rb=f["rb"], ck=f["ck"], cl=f["cl"],
                  sh=f["sh"], emit=Emit(f["emit"]), last=bool(f["last"]))
    instr.check()
    return instr


def operand_name(code: int) -> str:
    if code < 8:
        return f"R{code}"
    return Operand(code).name


def format_instr(instr: Instr) -> str:
    """Canonical assembly text of one instruction (no pseudo-instructions)."""
    args = []
    for kind in SIGNATURES[instr.op]:
        if kind == "d":
            args.append(f"R{instr.rd}")
        elif kind in "ab":
            args.append(operand_name(instr.ra if kind == "a" else instr.rb))
        elif kind in "kl":
            args.append(f"C{instr.ck if kind == 'k' else instr.cl}")
        elif kind == "o":
            args.append(str(instr.so))
        else:
            args.append(str(instr.sh))
    text = instr.op.name + EMIT_SUFFIX[instr.emit]
    return f"{text} {', '.join(args)}" if args else text


def disassemble(words) -> str:
    """Words -> canonical assembly text, one instruction per line; programs end at ``last``."""
    lines = []
    for word in words:
        instr = decode(word)
        lines.append(format_instr(replace(instr, last=False)))
        if instr.last:
            lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"
