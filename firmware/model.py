"""The float n-S4D model: level 1 of the verification ladder (numpy, float64).

n-S4D is Gu's minimal S4D (``state-spaces/s4: models/s4/s4d.py``) made neuromorphic: ReLU
instead of GELU, a plain H x H output linear instead of GLU, no normalization, no residual.
Per layer, channel ``h`` and complex mode ``n`` (ZOH discretization)::

    dt  = exp(log_dt[h])                          A  = -exp(log_A_real[h, n]) + i A_imag[h, n]
    dA  = exp(dt A)                               C' = C (exp(dt A) - 1) / A      dB = B (= 1)
    x[h, n] <- dA x[h, n] + dB u[h]               (recurrent form, one token at a time)
    y[h]     = 2 Re(sum_n C'[h, n] x[h, n]) + D[h] u[h]
             = (K * u)[h] + D[h] u[h],  K[h, l] = 2 Re(sum_n C' dB dA^l)   (convolutional form)
    z        = W ReLU(y) + b

An encoder Linear(d_in -> H) comes before the first layer; a decoder Linear(H -> classes) is
applied to every token's output and summed over the sequence, so the logits are *running* logits
(``K`` times Gu's mean pooling: the same argmax). The model is causal: a sequence shorter than
the padded batch has its result in the running logits after its own last token.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["FloatLayer", "FloatModel", "ssm_kernel"]


@dataclass
class FloatLayer:
    """One n-S4D layer with Gu's S4D parameters (``N`` complex modes per channel)."""
    log_dt: np.ndarray      # (H,)
    log_A_real: np.ndarray  # (H, N)
    A_imag: np.ndarray      # (H, N)
    C: np.ndarray           # (H, N) complex
    D: np.ndarray           # (H,)
    W: np.ndarray           # (H, H) output linear (mixing)
    b: np.ndarray           # (H,)
    B: np.ndarray | None = None  # (H, N) complex input weights; None means 1 (Gu's S4D)

    @property
    def H(self) -> int:
        return self.log_dt.shape[0]

    @property
    def N(self) -> int:
        return self.log_A_real.shape[1]

    @property
    def A(self) -> np.ndarray:
        return -np.exp(self.log_A_real) + 1j * self.A_imag                  # (H, N)

    @property
    def dtA(self) -> np.ndarray:
        return self.A * np.exp(self.log_dt)[:, None]                        # (H, N)

    @property
    def dA(self) -> np.ndarray:
        """Discrete state transition ``exp(dt A)``, complex (H, N), ``|dA| < 1``."""
        return np.exp(self.dtA)                                             # (H, N)

    @property
    def dB(self) -> np.ndarray:
        """Discrete input weights (ZOH keeps them at ``B``; the (dA-1)/A factor is in C')."""
        if self.B is None:
            return np.ones((self.H, self.N), dtype=np.complex128)           # (H, N)
        return np.asarray(self.B, dtype=np.complex128)

    @property
    def Cp(self) -> np.ndarray:
        """C' = C (exp(dt A) - 1) / A (complex, (H, N))."""
        return self.C * (np.exp(self.dtA) - 1.0) / self.A                   # (H, N)


@dataclass
class FloatModel:
    """A float n-S4D classifier: encoder, ``L`` layers, per-token decoder with sum pooling."""
    enc_W: np.ndarray       # (H, d_in)
    enc_b: np.ndarray       # (H,)
    layers: list            # list[FloatLayer]
    dec_W: np.ndarray       # (classes, H)
    dec_b: np.ndarray       # (classes,)
    meta: dict = field(default_factory=dict)

    @property
    def d_in(self) -> int:
        return self.enc_W.shape[1]

    @property
    def H(self) -> int:
        return self.enc_W.shape[0]

    @property
    def N(self) -> int:
        return self.layers[0].N if self.layers else 0

    @property
    def classes(self) -> int:
        return self.dec_W.shape[0]

    def neurons(self) -> int:
        """Fabric neurons needed: encoder H, per layer H(N+1) modes + H readouts + H mixers,
        and one integrator per class."""
        return self.H + len(self.layers) * (self.H * (self.N + 1) + 2 * self.H) + self.classes

    @classmethod
    def random(cls, d_in: int, H: int, N: int, L: int, classes: int, seed: int = 0,
               dt_min: float = 1e-3, dt_max: float = 1e-1, complex_B: bool = False
               ) -> FloatModel:
        """A randomly initialised model with Gu's S4D-Lin initialisation."""
        rng = np.random.default_rng(seed)

        def lin(o, i):
            k = 1.0 / np.sqrt(i)
            return rng.uniform(-k, k, (o, i)), rng.uniform(-k, k, o)

        enc_W, enc_b = lin(H, d_in)
        layers = []
        for _ in range(L):
            W, b = lin(H, H)
            log_dt = rng.uniform(np.log(dt_min), np.log(dt_max), H)            # (H,)
            C = (rng.standard_normal((H, N)) + 1j * rng.standard_normal((H, N))) / np.sqrt(2)
            B = None
            if complex_B:
                B = 1.0 + 0.3 * (rng.standard_normal((H, N)) + 1j * rng.standard_normal((H, N)))
            layers.append(FloatLayer(log_dt, np.log(0.5) * np.ones((H, N)),
                                     np.pi * np.tile(np.arange(N, dtype=np.float64), (H, 1)),
                                     C, rng.standard_normal(H), W, b, B))
        dec_W, dec_b = lin(classes, H)
        return cls(enc_W, enc_b, layers, dec_W, dec_b)

    # -- forward passes ---------------------------------------------------------------------------
    def forward_recurrent(self, tokens: np.ndarray, trace: dict | None = None) -> np.ndarray:
        """Token-by-token recurrence (what the fabric does).

        tokens : (B, K, d_in) floats
        trace  : if a dict, filled with per-layer intermediates for calibration:
                 ``u{l}`` (B, K, H) layer input, ``x{l}`` (B, K, H, N) complex states,
                 ``y{l}`` (B, K, H) pre-activation, ``z{l}`` (B, K, H) layer output,
                 ``z_enc`` (B, K, H)
        returns : (B, K, classes) running logits
        """
        tokens = np.asarray(tokens, dtype=np.float64)
        Bsz, K, _ = tokens.shape
        z_all = tokens @ self.enc_W.T + self.enc_b                          # (B, K, H)
        if trace is not None:
            trace["z_enc"] = z_all
        for i, ly in enumerate(self.layers):
            dA, dB, Cp = ly.dA, ly.dB, ly.Cp                                # (H, N)
            x = np.zeros((Bsz, ly.H, ly.N), dtype=np.complex128)            # (B, H, N)
            y = np.empty((Bsz, K, ly.H))
            xs = np.empty((Bsz, K, ly.H, ly.N), dtype=np.complex128) if trace is not None else None
            for k in range(K):
                u = z_all[:, k]                                             # (B, H)
                x = dA * x + dB * u[:, :, None]                             # (B, H, N)
                y[:, k] = 2.0 * np.real(np.sum(Cp * x, axis=2)) + ly.D * u  # (B, H)
                if xs is not None:
                    xs[:, k] = x
            z_next = np.maximum(y, 0.0) @ ly.W.T + ly.b                     # (B, K, H)
            if trace is not None:
                trace[f"u{i}"], trace[f"x{i}"], trace[f"y{i}"] = z_all, xs, y
                trace[f"z{i}"] = z_next
            z_all = z_next
        return np.cumsum(z_all @ self.dec_W.T + self.dec_b, axis=1)         # (B, K, classes)

    def forward_conv(self, tokens: np.ndarray, fft: bool = True) -> np.ndarray:
        """Convolutional form (how the model is trained): y = K * u + D u per channel.

        tokens : (B, K, d_in) floats; returns (B, K, classes) running logits
        """
        tokens = np.asarray(tokens, dtype=np.float64)
        K = tokens.shape[1]
        z = tokens @ self.enc_W.T + self.enc_b                              # (B, K, H)
        for ly in self.layers:
            kern = ssm_kernel(ly, K)                                        # (H, K)
            u = np.moveaxis(z, 1, 2)                                        # (B, H, K)
            if fft:
                n = 2 * K
                y = np.fft.irfft(np.fft.rfft(u, n) * np.fft.rfft(kern, n), n)[..., :K]
            else:
                y = np.zeros_like(u)
                for lag in range(K):
                    y[..., lag:] += kern[:, lag, None] * u[..., :K - lag]
            y = y + ly.D[:, None] * u                                       # (B, H, K)
            z = np.maximum(np.moveaxis(y, 2, 1), 0.0) @ ly.W.T + ly.b       # (B, K, H)
        return np.cumsum(z @ self.dec_W.T + self.dec_b, axis=1)             # (B, K, classes)

    def predict(self, tokens: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        """Class of each sequence from its running logits after its last true token
        (``lengths`` (B,), None: the last token): (B,)."""
        from .datasets import final_logits
        return np.argmax(final_logits(self.forward_conv(tokens), lengths), axis=1)


def ssm_kernel(layer: FloatLayer, K: int) -> np.ndarray:
    """S4D convolution kernel ``K[h, l] = 2 Re(sum_n C'[h,n] dB[h,n] exp(dtA[h,n] l))``: (H, K)."""
    powers = np.exp(layer.dtA[:, :, None] * np.arange(K))                   # (H, N, K)
    return 2.0 * np.real(np.einsum("hn,hnl->hl", layer.Cp * layer.dB, powers))
