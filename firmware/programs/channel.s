; S4D channel neuron: one whole channel h of a layer, all of its M modes (the last one is the
; D skip: dA = 0, dB = 1, C' = D), the ReLU and one graded spike per step.
;   u  = sat(acc + bias_in)            acc: the previous layer's mixing (or the encoder) on synapses
;   for every mode m:  x_m <- dA_m x_m + dB_m u;   Y += sat(rnd(Re(C'_m x_m), OUT_SHIFT))
;   y  = max(sat(sat(Y) + bias_relu), 0)      (sent if non-zero: the next layer's mixing synapses)
; Neuron coefs: C6 = bias_in (<< IN_SHIFT: the mixing / encoder bias), C7 = bias_relu
;               (<< RELU_SHIFT).  Mode entries: x_m (state), dA_m, dB_m, (Re C'_m, -Im C'_m).
.equ FRAC 15
.equ OUT_SHIFT 15
.equ IN_SHIFT 0
.equ RELU_SHIFT 0
LDC    R4, C6, IN_SHIFT
ADD    R4, ACC, R4
MODES  R5, R4, FRAC, OUT_SHIFT
LDC    R6, C7, RELU_SHIFT
ADD    R5, R5, R6
MAX.NZ R5, R5, ZERO
