"""The golden model's inner loops, compiled: one program over many neurons, and synaptic delivery.

:class:`~neuroloom.sim.golden.GoldenFabric` compiles the configuration tables into a plan (data);
these loops run it. Each is the spec's arithmetic written out per neuron and per sample, like
the per-group interpreter it must equal bit for bit (``tests/support/golden_reference.py``;
``tests/test_golden_fast.py`` compares the two):

* :func:`run_kernel`: for every neuron row, the microcode instruction by instruction on the
  registers R0..R7, ``ACC`` and ``P``; ``MODES`` over the row's mode entries::

      x_m <- (sat(rnd(Re(dA_m x_m) + Re(dB_m) u, sh)), sat(rnd(Im(dA_m x_m) + Im(dB_m) u, sh)))
      Y    = wrap(sum_m sat(rnd(Re C'_m Re x_m + (-Im C'_m) Im x_m, so)), acc_width)
      rd   = sat(Y)

* :func:`deliver`: every spike over every synapse edge of its routes,
  ``acc[dst] = wrap(acc[dst] + sum_edges rnd(payload[src] * w, s), acc_width)``, and the
  counters each emitted spike moves; :func:`inject_lanes`: a host spike over an axon's lanes.

Arrays the loops touch per sample are batch-minor (the batch is the innermost, contiguous axis:
registers (neurons, state_regs, B), accumulators (neurons, B), the mode state ``xm`` (2,
entries, B), payloads and emit flags (neurons, B)), so the inner loop over the batch is a
straight, branch-free vector loop (with one sample, the loop over a neuron's modes is), at 512
bits where the CPU has AVX-512 (:func:`_wide_vectors`). Integer arithmetic, except a batch's
mode loop: every intermediate fits int64 (state <= 32 bits x coefficients <= 18 bits, three
terms: < 2**51; a sum of at most ``modes`` state-width terms), and every state value fits int32,
which lets the products be 32 x 32 -> 64-bit multiplies. The mode loop of a batch
(:func:`_modes_batch`) computes the same integers in float64, exactly (the argument is in its
docstring; ``tests/test_golden_modes_edges.py`` checks the widest configuration): vector float
multiply-adds are cheaper than 64-bit integer products and shifts. Where ``|Re C'| + |Im C'|``
cannot carry a state value out of range, the output term's saturation is the identity and is
skipped. Compiled with numba on first use and cached beside this file.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from neuroloom.contract.layouts import Emit, Op, Operand

__all__ = ["PROGRAM_FIELDS", "encode_program", "run_kernel", "deliver", "inject_lanes"]

#: columns of an encoded program (one row per instruction)
PROGRAM_FIELDS = ("op", "rd", "ra", "rb", "ck", "cl", "emit")

_NOP, _MAD, _CMAD, _ADD, _SUB, _MAX, _MIN, _LDC, _SHR, _CGE, _SEL, _MODES = (
    int(op) for op in (Op.NOP, Op.MAD, Op.CMAD, Op.ADD, Op.SUB, Op.MAX, Op.MIN, Op.LDC,
                       Op.SHR, Op.CGE, Op.SEL, Op.MODES))
_ACC, _ZERO = int(Operand.ACC), int(Operand.ZERO)
_ALWAYS, _NONZERO = int(Emit.ALWAYS), int(Emit.NONZERO)


@intrinsic
def _wide_vectors(typingctx):
    """Let LLVM vectorize the calling function with 512-bit vectors where the CPU has them.

    LLVM's tuning for recent x86 cores prefers 256-bit vectors; the batch loops here are long,
    uniform integer loops that run ~1.5x faster at 512 bits (AVX-512: 8 int64 lanes). This sets
    the function attribute ``"prefer-vector-width"="512"`` on the function being compiled (the
    intrinsic emits no code). Only the speed changes: integer results do not depend on the
    vector width. On a CPU without 512-bit vectors the hint has no effect.
    """
    def codegen(context, builder, sig, args):
        # a string attribute, which llvmlite's known-attribute check does not list (its
        # attribute set is a set); should that change, the loops only run at LLVM's default
        try:
            set.add(builder.function.attributes, '"prefer-vector-width"="512"')
        except TypeError:
            pass
        return context.get_dummy_value()
    return types.none(), codegen


@njit(inline="always")
def _i32(v):
    """``v`` (int64, known to fit int32: a state-width value) through int32: the compiler then
    multiplies such values as 32 x 32 -> 64-bit products (one instruction per vector)."""
    return np.int64(np.int32(v))


@njit(inline="always")
def _scale(s):
    """(2**-s, the offset that turns rounding to nearest into the spec's rounding shift).

    For an integer v and shift s in 0..31, ``(v + ((1 << s) >> 1)) >> s`` (round half up) is
    ``rint(v * 2**-s + off)`` with ``off = 2**-(s + 1)`` (0 for s = 0): v * 2**-s is a multiple of
    2**-s, so adding 2**-(s + 1) moves it strictly inside the interval that rounds to the
    floor of ``v * 2**-s + 1/2`` (never onto a tie: ``rint``'s ties-to-even never decides).
    ``np.rint`` compiles to one vector round instruction."""
    k = 1.0 / np.float64(np.int64(1) << s)
    return k, (0.5 * k if s > 0 else 0.0)


@njit(nogil=True, fastmath={"contract"})
def _modes_batch(xm, e0, c, u, s, t, lo, hi, width, y):
    """``MODES`` over a neuron's mode entries ``e0 ..`` for a batch (B > 1), in float64.

    Exact, for every configuration the contract accepts (state_width <= 32, coef_width <= 18,
    shifts 0..31, at most 2**14 modes): every product of a state value and a coefficient is
    < 2**48 in magnitude, the three-term sums < 2**50; scaled by 2**-s and offset by 2**-(s + 1)
    (:func:`_scale`) they are multiples of 2**-(s + 1) below 2**(51 - s), i.e. fewer than 52
    significant bits, so every multiply-add (fused or not) is exact and rounding to the nearest
    integer (``np.rint``) gives the spec's rounding shift. Saturation is a clamp to integer bounds
    before that rounding (both are monotonic). The output sum has at most 2**14 terms of at most
    2**31: exact. ``y`` (B,) float64 receives the sum (before the wrap).
    """
    _wide_vectors()
    B, M = xm.shape[2], c.shape[0]
    k, off = _scale(s)
    kt, offt = _scale(t)
    flo, fhi = np.float64(lo), np.float64(hi)
    for b in range(B):
        y[b] = 0.0
    for m in range(M):
        ar, ai, br, bi = c[m, 0] * k, c[m, 1] * k, c[m, 2] * k, c[m, 3] * k
        nai, cr, cn = -ai, c[m, 4] * kt, c[m, 5] * kt
        # the output term saturates only if |Re C'| + |Im C'| can carry a state-width value
        # past the range: else the clamp is the identity, skipped
        free = ((abs(np.int64(c[m, 4])) + abs(np.int64(c[m, 5]))) << (width - 1)) + (
            (np.int64(1) << t) >> 1) < (np.int64(1) << (width - 1 + t))
        xr, xi = xm[0, e0 + m], xm[1, e0 + m]
        if free:
            for b in range(B):
                r0, i0 = np.float64(xr[b]), np.float64(xi[b])
                r1 = np.rint(min(max(r0 * ar + (i0 * nai + (u[b] * br + off)), flo), fhi))
                i1 = np.rint(min(max(r0 * ai + (i0 * ar + (u[b] * bi + off)), flo), fhi))
                xr[b], xi[b] = r1, i1
                y[b] += np.rint(r1 * cr + (i1 * cn + offt))
        else:
            for b in range(B):
                r0, i0 = np.float64(xr[b]), np.float64(xi[b])
                r1 = np.rint(min(max(r0 * ar + (i0 * nai + (u[b] * br + off)), flo), fhi))
                i1 = np.rint(min(max(r0 * ai + (i0 * ar + (u[b] * bi + off)), flo), fhi))
                xr[b], xi[b] = r1, i1
                y[b] += np.rint(min(max(r1 * cr + (i1 * cn + offt), flo), fhi))


def encode_program(program) -> np.ndarray:
    """(instructions, 7) int64: the fields :data:`PROGRAM_FIELDS` of each instruction (source
    operand codes past ``ZERO`` read zero, as ``ZERO``)."""
    p = np.array([[int(getattr(ins, f)) for f in PROGRAM_FIELDS] for ins in program],
                 dtype=np.int64).reshape(-1, len(PROGRAM_FIELDS))
    p[:, 2:4] = np.minimum(p[:, 2:4], _ZERO)
    return p


@njit(cache=True, nogil=True)
def _registers(prog):
    """(load, wrote): bool each, indexed by register (R0..R7; the rows past R7 only keep a
    ``CMAD`` to R7, which ``Instr.check`` refuses, in bounds): the registers an encoded program
    reads before it writes them (a straight-line program: every other register it reads, it
    wrote first) and those it writes. A neuron's run loads only the first and stores back only
    the second."""
    load = np.zeros(_ZERO + 1, dtype=np.bool_)
    wrote = np.zeros(_ZERO + 1, dtype=np.bool_)
    for j in range(prog.shape[0]):
        op, rd, ra, rb, em = prog[j, 0], prog[j, 1], prog[j, 2], prog[j, 3], prog[j, 6]
        two = op == _MAD or op == _ADD or op == _SUB or op == _MAX or op == _MIN or \
            op == _CGE or op == _SEL or op == _CMAD
        for r, reads in ((ra, two or op == _SHR), (rb, two or op == _MODES),
                         (ra + 1, op == _CMAD and ra != _ZERO)):
            if reads and r < 8 and not wrote[r]:
                load[r] = True
        if op == _CMAD:
            wrote[rd] = wrote[rd + 1] = True
        elif op != _NOP and op != _CGE and (two or op == _LDC or op == _SHR or op == _MODES):
            wrote[rd] = True
        if em != 0 and not wrote[rd]:     # an emitting instruction sends R[rd]
            load[rd] = True
    return load, wrote


@njit(cache=True, nogil=True)
def run_kernel(prog, sh, so, gid, mrow, mc, state, acc, coef, xm, width, acc_width,
               emit, pay, pos):
    """Run the encoded program ``prog`` (:func:`encode_program`) for ``n`` neurons and a batch.

    sh, so : (instructions, n) each neuron's shift and output shift per instruction
    gid    : (n,) the neurons (rows of ``state``, ``acc``, ``coef``)
    mrow   : (n,) each neuron's first mode entry: its M entries are rows ``mrow .. mrow + M``
             of ``xm``; mc (n, M, 6) their coefficients dA, dB, (Re C', -Im C') as (re, im)
    state  : (neurons, state_regs, B) persistent registers, updated
    acc    : (neurons, B) this step's accumulators, read and zeroed
    coef   : (neurons, coefs) coefficients
    xm     : (2, entries, B) mode state (Re, Im), updated; int32 where ``width`` <= 32 (and
             ``mc`` int32 where the coefficients fit: the products are then int32 x int32)
    emit, pay : (positions, B) written at rows ``pos .. pos + n``: whether each neuron emitted
             and the payload (0 where it did not)
    """
    _wide_vectors()
    S, B = state.shape[1], state.shape[2]
    M = mc.shape[1]
    lo = -(np.int64(1) << (width - 1))
    hi = (np.int64(1) << (width - 1)) - 1
    half_a = np.int64(1) << (acc_width - 1)
    mask_a = (np.int64(1) << acc_width) - 1
    load, wrote = _registers(prog)
    # R0..R7, then ACC (sat(acc)) and ZERO: a source operand code is a row
    regs = np.zeros((_ZERO + 1, B), dtype=np.int64)
    y = np.empty(B, dtype=np.float64)     # the MODES output sum (exact, see _modes_batch)
    u = np.empty(B, dtype=np.float64)     # the MODES input
    pred = np.zeros(B, dtype=np.bool_)
    fired = np.zeros(B, dtype=np.bool_)
    spike = np.zeros(B, dtype=np.int64)
    for i in range(gid.shape[0]):
        g = gid[i]
        for k in range(8):                # the registers the program reads before writing
            if load[k]:
                for b in range(B):
                    regs[k, b] = state[g, k, b] if k < S else 0
        for b in range(B):
            regs[_ACC, b] = min(max(acc[g, b], lo), hi)
            acc[g, b] = 0
            pred[b] = False
            fired[b] = False
            spike[b] = 0
        for j in range(prog.shape[0]):
            op, rd, ra, rb, ck, cl, em = (prog[j, 0], prog[j, 1], prog[j, 2], prog[j, 3],
                                          prog[j, 4], prog[j, 5], prog[j, 6])
            s = sh[j, i]
            rs = (np.int64(1) << s) >> 1
            if op == _MAD:
                k0, l0 = coef[g, ck], coef[g, cl]
                for b in range(B):
                    regs[rd, b] = min(max((regs[ra, b] * k0 + regs[rb, b] * l0 + rs) >> s,
                                          lo), hi)
            elif op == _CMAD:
                kr, ki, lr, li = coef[g, ck], coef[g, ck + 1], coef[g, cl], coef[g, cl + 1]
                ra1 = _ZERO if ra == _ZERO else ra + 1
                for b in range(B):
                    re = regs[ra, b] * kr - regs[ra1, b] * ki + regs[rb, b] * lr
                    im = regs[ra, b] * ki + regs[ra1, b] * kr + regs[rb, b] * li
                    regs[rd, b] = min(max((re + rs) >> s, lo), hi)
                    regs[rd + 1, b] = min(max((im + rs) >> s, lo), hi)
            elif op == _ADD:
                for b in range(B):
                    regs[rd, b] = min(max(regs[ra, b] + regs[rb, b], lo), hi)
            elif op == _SUB:
                for b in range(B):
                    regs[rd, b] = min(max(regs[ra, b] - regs[rb, b], lo), hi)
            elif op == _MAX:
                for b in range(B):
                    regs[rd, b] = max(regs[ra, b], regs[rb, b])
            elif op == _MIN:
                for b in range(B):
                    regs[rd, b] = min(regs[ra, b], regs[rb, b])
            elif op == _LDC:
                c = min(max(coef[g, ck] << s, lo), hi)
                for b in range(B):
                    regs[rd, b] = c
            elif op == _SHR:
                for b in range(B):
                    regs[rd, b] = min(max((regs[ra, b] + rs) >> s, lo), hi)
            elif op == _CGE:
                for b in range(B):
                    pred[b] = regs[ra, b] >= regs[rb, b]
            elif op == _SEL:
                for b in range(B):
                    regs[rd, b] = regs[ra, b] if pred[b] else regs[rb, b]
            elif op == _MODES:
                t = so[j, i]
                e0, c = mrow[i], mc[i]
                if B == 1:                    # one sample: the loop over the modes is inner
                    rt = (np.int64(1) << t) >> 1
                    u0, y0 = regs[rb, 0], np.int64(0)
                    for m in range(M):
                        r0, i0 = np.int64(xm[0, e0 + m, 0]), np.int64(xm[1, e0 + m, 0])
                        ar, ai, br, bi, cr, cn = (np.int64(c[m, 0]), np.int64(c[m, 1]),
                                                  np.int64(c[m, 2]), np.int64(c[m, 3]),
                                                  np.int64(c[m, 4]), np.int64(c[m, 5]))
                        r1 = min(max((r0 * ar - i0 * ai + u0 * br + rs) >> s, lo), hi)
                        i1 = min(max((r0 * ai + i0 * ar + u0 * bi + rs) >> s, lo), hi)
                        xm[0, e0 + m, 0], xm[1, e0 + m, 0] = r1, i1
                        y0 += min(max((r1 * cr + i1 * cn + rt) >> t, lo), hi)
                    regs[rd, 0] = min(max(((y0 + half_a) & mask_a) - half_a, lo), hi)
                else:
                    for b in range(B):
                        u[b] = regs[rb, b]
                    _modes_batch(xm, e0, c, u, s, t, lo, hi, width, y)
                    for b in range(B):
                        regs[rd, b] = min(max(((np.int64(y[b]) + half_a) & mask_a) - half_a,
                                              lo), hi)
            if em != 0:                   # the pending spike: (condition, R[rd]) as of now
                for b in range(B):
                    spike[b] = regs[rd, b]
                    fired[b] = True if em == _ALWAYS else (
                        regs[rd, b] != 0 if em == _NONZERO else pred[b])
        for k in range(S):                # the registers the program wrote
            if wrote[k]:
                for b in range(B):
                    state[g, k, b] = regs[k, b]
        for b in range(B):
            emit[pos + i, b] = fired[b]
            pay[pos + i, b] = spike[b] if fired[b] else 0


#: 2**61: added to a product below 2**40 in magnitude before a rounding shift, so the shift can be
#: a logical one (:func:`deliver`)
_BIAS = np.int64(1) << 61


@njit(cache=True, nogil=True)
def deliver(pay, emit, eptr, dsti, w, s, dst, acc, acc_width, cptr, ccol, cval, counters,
            updates):
    """Synaptic delivery and counters of one step.

    pay, emit : (positions, B) the step's payloads and emit flags
    eptr      : (positions + 1,) the edges leaving position i are ``eptr[i]:eptr[i + 1]``
    dsti, w, s : (E,) each edge's receiver (index into ``dst``), weight and shift
    dst       : (D,) the receiving neurons (columns of ``acc``)
    acc       : (neurons, B) the accumulators of the next step, updated modulo 2**acc_width
    cptr, ccol, cval : per position (CSR) the counters one emitted spike moves:
                ``core * 4 + counter`` (``counters[:, core, counter]``, (B, cores, counters)),
                and by how much
    updates   : (cores, 4) what the step adds to every sample's counters (neuron updates)
    """
    _wide_vectors()
    B = pay.shape[1]
    delta = np.zeros((dst.shape[0], B), dtype=np.int64)
    moved = np.zeros((counters.shape[1] * 4, B), dtype=np.int64)    # batch-minor counters
    touched = np.zeros(counters.shape[1] * 4, dtype=np.bool_)
    p = np.empty(B, dtype=np.int64)
    for i in range(pay.shape[0]):
        fired = False
        for b in range(B):
            fired |= emit[i, b]
        if not fired:                         # no spike: payload 0 adds rnd(0 * w, s) = 0
            continue
        for b in range(B):
            p[b] = pay[i, b]
        for e in range(eptr[i], eptr[i + 1]):
            # rnd(p * w, s) = (p * w + 2**(s-1)) >> s, shifted as an unsigned number: the
            # product is < 2**40 in magnitude (state <= 32 bits, weights <= 9), so adding
            # _BIAS (a multiple of 2**s) makes it positive, and the logical shift (one vector
            # instruction; an arithmetic 64-bit shift has none before AVX-512) of the sum,
            # minus _BIAS >> s, is the arithmetic shift
            d, we, se = dsti[e], _i32(w[e]), s[e]
            re = ((np.int64(1) << se) >> 1) + _BIAS
            sub, us = _BIAS >> se, np.uint64(se)
            dd = delta[d]
            for b in range(B):
                dd[b] += np.int64(np.uint64(_i32(p[b]) * we + re) >> us) - sub
        f = emit[i]
        for j in range(cptr[i], cptr[i + 1]):
            col, v = ccol[j], cval[j]
            touched[col] = True
            mv = moved[col]
            for b in range(B):
                mv[b] += v if f[b] else 0
    for col in range(moved.shape[0]):
        u = updates[col // 4, col % 4]
        if touched[col] or u != 0:
            for b in range(B):
                counters[b, col // 4, col % 4] += moved[col, b] + u
    half = np.int64(1) << (acc_width - 1)
    mask = (np.int64(1) << acc_width) - 1
    for k in range(dst.shape[0]):
        g = dst[k]
        for b in range(B):
            acc[g, b] = ((acc[g, b] + delta[k, b] + half) & mask) - half


@njit(cache=True, nogil=True)
def inject_lanes(p, dst, w, s, acc, acc_width):
    """A host spike over an axon's lanes: ``acc[dst[j]] = wrap(acc[dst[j]] + rnd(p * w[j], s[j]),
    acc_width)`` for every lane j (lanes may repeat a neuron: each adds).

    p : (B,) the payload of each sample; dst, w, s : (lanes,); acc : (neurons, B)
    """
    _wide_vectors()
    B = acc.shape[1]
    half = np.int64(1) << (acc_width - 1)
    mask = (np.int64(1) << acc_width) - 1
    for j in range(dst.shape[0]):
        we, se = w[j], s[j]
        re = (np.int64(1) << se) >> 1
        a = acc[dst[j]]
        for b in range(B):
            a[b] = ((a[b] + ((_i32(p[b]) * _i32(we) + re) >> se) + half) & mask) - half
