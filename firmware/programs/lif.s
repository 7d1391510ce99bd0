; Leaky integrate-and-fire:
;   v <- rnd(v * decay + acc * gain, FRAC)
;   if v >= threshold: spike with payload C3, v <- 0
; State: R0 = v.  Coefs: C0 = decay, C1 = gain (FRAC fractional bits),
;                        C2 = threshold (applied as C2 << TH_SHIFT), C3 = spike payload
.equ FRAC 12
.equ TH_SHIFT 0
MAD    R0, R0, C0, ACC, C1, FRAC
LDC    R4, C2, TH_SHIFT
CGE    R0, R4
LDC.P  R5, C3, 0
SEL    R0, ZERO, R0
