; S4D complex state neuron: one complex mode n of one channel h.
;   x <- dA * x + dB * u          (u = this step's input, the accumulator)
;   y  = Re(C' * x)               (sent to the channel's readout neuron; zeros are not sent)
; State:  R0 = Re x, R1 = Im x
; Coefs:  C0 = Re dA, C1 = Im dA   (fixed point, FRAC fractional bits)
;         C2 = Re dB, C3 = Im dB   (scaled so that dB*u >> FRAC is on the state's scale)
;         C4 = Re C', C5 = -Im C'  (Re(C' x) = Re C' * Re x - Im C' * Im x; >> OUT_SHIFT)
; A real skip term D*u is the same program with dA = 0 (C0 = C1 = 0).
.equ FRAC 15
.equ OUT_SHIFT 15
CMAD   R0, R0, C0, ACC, C2, FRAC
MAD.NZ R4, R0, C4, R1, C5, OUT_SHIFT
