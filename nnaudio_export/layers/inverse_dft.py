"""How a spectrum becomes windowed time frames (an inverse real DFT times the window): the
"decoder" half of :class:`~nnaudio_export.layers.iSTFT`, chosen at construction like
:mod:`~nnaudio_export.layers.frame_conv` chooses how a kernel bank is applied.

- :class:`FactoredIRFFT`: two stages of small DFTs (``N = P Q``, Cooley-Tukey) as two
  matmuls on the spectrum's own layout (:func:`~nnaudio_export.kernels.inverse.irfft_factors`):
  about ``2 (P + Q) N`` multiply-adds per frame instead of ``2 F N`` (8x fewer at n_fft
  1024), shorter sums (less float32 rounding), the window folded into the second stage.
  Used whenever it saves at least half (n_fft 400, 511, 512, 1024, 2048, ...) with frozen
  kernels and window.
- :class:`MatrixIRFFT`: one matmul with the ``(N + 2, N)`` matrix of
  :func:`~nnaudio_export.kernels.inverse.irfft_matrix`, then the window: for trainable
  kernels (the matrix is the parameter, as nnAudio's) or window, and sizes the
  factorisation does not help.

Both take the spectrum ``(B, F, T, 2)`` (real, imag) and return ``w[n] irfft(X_t)[n]``
``(B, T, n_fft)``, and hold the window as ``window`` (for the iSTFT's envelope).
"""
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..kernels.inverse import factor_pair, factored_irfft_saves, irfft_factors, irfft_matrix
from .common import kernel_tensor, register_kernel


class MatrixIRFFT(nn.Module):
    """``[Re X_t, Im X_t] @ kernel`` with the inverse real-DFT matrix, times the window
    (each trainable or not)."""

    method = "matrix"

    def __init__(self, n_fft: int, window: np.ndarray, normalized: bool, trainable_kernels: bool,
                 trainable_window: bool, dtype: torch.dtype):
        super().__init__()
        self.bins = n_fft // 2 + 1
        register_kernel(self, "kernel", irfft_matrix(n_fft, normalized), trainable_kernels, dtype)
        register_kernel(self, "window", window, trainable_window, dtype)

    def forward(self, x: Tensor) -> Tensor:
        z = x.permute(0, 2, 3, 1).reshape(x.size(0), x.size(2), 2 * self.bins)   # (B, T, 2F)
        return torch.matmul(z, self.kernel) * self.window


class FactoredIRFFT(nn.Module):
    """The two-stage windowed inverse real DFT of
    :func:`~nnaudio_export.kernels.inverse.irfft_factors` (frozen constants)."""

    method = "factored"

    def __init__(self, n_fft: int, window: np.ndarray, normalized: bool, dtype: torch.dtype):
        super().__init__()
        self.p, self.q = factor_pair(n_fft)
        self.n_fft = n_fft
        self.bins = n_fft // 2 + 1
        self.rows = -(-self.bins // self.q)
        parts = irfft_factors(n_fft, window, normalized)
        self.register_buffer("bin_scale", kernel_tensor(parts["bin_scale"][:, None], dtype))
        self.register_buffer("stage1", kernel_tensor(parts["stage1"], dtype))
        self.register_buffer("stage2", kernel_tensor(parts["stage2"], dtype))
        self.register_buffer("window", kernel_tensor(window, dtype))

    def forward(self, x: Tensor) -> Tensor:
        b, t = x.size(0), x.size(2)
        x = x.permute(0, 3, 1, 2) * self.bin_scale                        # (B, 2, F, T)
        x = F.pad(x, [0, 0, 0, self.rows * self.q - self.bins])
        x = x.reshape(b, 2 * self.rows, self.q * t)                        # rows (Re|Im, a), cols (b, t)
        y = torch.matmul(self.stage1, x)                                   # (B, 2P, Q T): rows (c, Re|Im)
        y = torch.matmul(self.stage2, y.reshape(b, self.p, 2 * self.q, t))  # (B, P, Q, T): [c, d, t]
        return y.permute(0, 3, 2, 1).reshape(b, t, self.n_fft)             # n = c + P d


def irfft_module(n_fft: int, window: np.ndarray, normalized: bool, trainable_kernels: bool,
                 trainable_window: bool, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The factored inverse DFT when it saves at least half and nothing trains, else the
    matrix (its ``kernel`` and ``window`` are the parameters that train)."""
    if not (trainable_kernels or trainable_window) and factored_irfft_saves(n_fft):
        return FactoredIRFFT(n_fft, window, normalized, dtype)
    return MatrixIRFFT(n_fft, window, normalized, trainable_kernels, trainable_window, dtype)
