; Integrator (readout): s <- s + acc + bias, emitted every step (running logits).
; State: R0 = s.  Coefs: C6 = bias, applied as C6 << BIAS_SHIFT
.equ BIAS_SHIFT 0
LDC    R4, C6, BIAS_SHIFT
ADD    R4, ACC, R4
ADD.E  R0, R0, R4
