; ReLU integrate-and-emit: y = max(acc + bias, 0); zero outputs are not sent (sparsity).
; Coefs: C6 = bias, applied as C6 << BIAS_SHIFT
.equ BIAS_SHIFT 0
LDC    R4, C6, BIAS_SHIFT
ADD    R4, ACC, R4
MAX.NZ R4, R4, ZERO
