"""Assembler for neuron microcode: text -> 32-bit words.

Syntax (one instruction per line; ``;`` or ``#`` start a comment)::

    .equ FRAC 15                          ; a named constant (may be overridden by caller)
    CMAD R0, R0, C0, ACC, C2, FRAC        ; x <- dA*x + dB*acc  (complex)
    MAD.NZ R4, R0, C4, R1, C5, FRAC       ; y = Re(C x); emit it if non-zero
    MODES  R5, R4, FRAC, OUT_SHIFT        ; every mode of a channel neuron; R5 = sum Re(C' x)

Mnemonics are those of ``neuroloom.contract.isa.SIGNATURES`` plus the pseudo-instructions
``MOV rd, ra``, ``RELU rd, ra``, ``MUL rd, ra, Ck, s`` and ``CMUL rd, ra, Ck, s``. An emit
suffix ``.E`` (always), ``.NZ`` (if non-zero) or ``.P`` (if the predicate is set) may follow any
mnemonic that writes a register. The assembler marks the final instruction ``last``.
Errors raise :class:`AsmError`, naming the source, the line and the problem.
"""

from __future__ import annotations

import re
from pathlib import Path

from neuroloom.contract.isa import SIGNATURES, Instr, encode
from neuroloom.contract.layouts import Emit, Op, Operand

__all__ = ["AsmError", "assemble", "assemble_file", "parse", "PROGRAM_DIR", "load_program"]

PROGRAM_DIR = Path(__file__).parent / "programs"

_PSEUDO = {
    # name: (real op, operand kinds as written, how to build the real operands)
    "MOV": (Op.ADD, "da", lambda d, a: dict(rd=d, ra=a, rb=Operand.ZERO)),
    "RELU": (Op.MAX, "da", lambda d, a: dict(rd=d, ra=a, rb=Operand.ZERO)),
    "MUL": (Op.MAD, "daks", lambda d, a, k, s: dict(rd=d, ra=a, ck=k, rb=Operand.ZERO, sh=s)),
    "CMUL": (Op.CMAD, "daks", lambda d, a, k, s: dict(rd=d, ra=a, ck=k, rb=Operand.ZERO, sh=s)),
}
_SUFFIX = {"": Emit.NONE, "E": Emit.ALWAYS, "NZ": Emit.NONZERO, "P": Emit.IF_P}
_KIND_NAME = {"d": "destination register", "a": "source operand", "b": "source operand",
              "k": "coefficient", "l": "coefficient", "s": "shift", "o": "output shift"}


class AsmError(ValueError):
    """A microcode source error: ``source:line: message``."""

    def __init__(self, source: str, line: int, message: str):
        self.source, self.line, self.message = source, line, message
        super().__init__(f"{source}:{line}: {message}")


def _operand(kind: str, text: str, symbols: dict[str, int]):
    t = text.strip().upper()
    if kind == "d":
        m = re.fullmatch(r"R([0-7])", t)
        if not m:
            raise ValueError(f"{text!r} is not a writable register (R0..R7)")
        return int(m.group(1))
    if kind in "ab":
        m = re.fullmatch(r"R([0-7])", t)
        if m:
            return int(m.group(1))
        if t in ("ACC", "ZERO"):
            return Operand[t]
        raise ValueError(f"{text!r} is not a source operand (R0..R7, ACC, ZERO)")
    if kind in "kl":
        m = re.fullmatch(r"C([0-7])", t)
        if not m:
            raise ValueError(f"{text!r} is not a coefficient (C0..C7)")
        return int(m.group(1))
    value = symbols.get(t)
    if value is None:
        try:
            value = int(t, 0)
        except ValueError:
            raise ValueError(f"{text!r} is neither a number nor a defined constant "
                             f"(known: {', '.join(sorted(symbols)) or 'none'})") from None
    if not 0 <= value <= 31:
        raise ValueError(f"shift {value} out of range 0..31")
    return value


def parse(text: str, defines: dict[str, int] | None = None,
          source: str = "<asm>") -> list[Instr]:
    """Parse assembly text into instructions (``last`` set on the final one)."""
    symbols = {k.upper(): int(v) for k, v in (defines or {}).items()}
    fixed = set(symbols)   # caller's defines override the file's .equ defaults
    instrs: list[Instr] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = re.split(r"[;#]", raw, maxsplit=1)[0].strip()
        if not line:
            continue
        if line.lower().startswith(".equ"):
            parts = line.split()
            if len(parts) != 3 or not re.fullmatch(r"[A-Za-z_]\w*", parts[1]):
                raise AsmError(source, lineno, "expected '.equ NAME VALUE'")
            try:
                value = int(parts[2], 0)
            except ValueError:
                raise AsmError(source, lineno,
                               f"'.equ' value {parts[2]!r} is not an integer") from None
            if parts[1].upper() not in fixed:
                symbols[parts[1].upper()] = value
            continue
        if line.startswith("."):
            raise AsmError(source, lineno, f"unknown directive {line.split()[0]!r}")
        head, _, rest = line.partition(" ")
        mnemonic, _, suffix = head.upper().partition(".")
        if suffix not in _SUFFIX:
            raise AsmError(source, lineno, f"unknown emit suffix '.{suffix}' "
                                           "(use .E, .NZ or .P)")
        args = [a for a in (x.strip() for x in rest.split(",")) if a] if rest.strip() else []
        if mnemonic in _PSEUDO:
            op, kinds, build = _PSEUDO[mnemonic]
        elif mnemonic in Op.__members__:
            op = Op[mnemonic]
            kinds, build = SIGNATURES[op], None
        else:
            raise AsmError(source, lineno, f"unknown mnemonic {mnemonic!r}")
        if len(args) != len(kinds):
            expect = ", ".join(_KIND_NAME[k] for k in kinds) or "no operands"
            raise AsmError(source, lineno, f"{mnemonic} takes {len(kinds)} operand(s) "
                                           f"({expect}), got {len(args)}")
        try:
            values = [_operand(k, a, symbols) for k, a in zip(kinds, args)]
        except ValueError as e:
            raise AsmError(source, lineno, str(e)) from None
        if build is not None:
            fields = build(*values)
        else:
            names = {"d": "rd", "a": "ra", "b": "rb", "k": "ck", "l": "cl", "s": "sh",
                     "o": "so"}
            fields = {names[k]: v for k, v in zip(kinds, values)}
        instr = Instr(op=op, emit=_SUFFIX[suffix], **fields)
        try:
            instr.check()
        except ValueError as e:
            raise AsmError(source, lineno, str(e)) from None
        instrs.append(instr)
    if not instrs:
        raise AsmError(source, 1, "program has no instructions")
    instrs[-1] = Instr(**{**instrs[-1].__dict__, "last": True})
    return instrs


def assemble(text: str, defines: dict[str, int] | None = None,
             source: str = "<asm>") -> list[int]:
    """Assemble a program to 32-bit words."""
    return [encode(i) for i in parse(text, defines, source)]


def assemble_file(path, defines: dict[str, int] | None = None) -> list[int]:
    path = Path(path)
    return assemble(path.read_text(), defines, source=str(path))


def load_program(name: str, defines: dict[str, int] | None = None) -> list[int]:
    """Assemble one of the shipped programs (``s4d``, ``channel``, ``relu``, ``linear``,
    ``integrator``, ``lif``) from ``firmware/programs/NAME.s``."""
    path = PROGRAM_DIR / f"{name}.s"
    if not path.exists():
        known = sorted(p.stem for p in PROGRAM_DIR.glob("*.s"))
        raise FileNotFoundError(f"no neuron program {name!r}; shipped programs: {known}")
    return assemble_file(path, defines)
