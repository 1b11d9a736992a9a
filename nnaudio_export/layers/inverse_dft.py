"""How frames of a one-sided spectrum become time frames (an inverse real DFT): the
"decoder" half of :class:`~nnaudio_export.layers.iSTFT`, chosen at construction like
:mod:`~nnaudio_export.layers.frame_conv` chooses how a kernel bank is applied.

- :class:`FactoredIRFFT`: two stages of small DFTs (``N = P Q``, Cooley-Tukey) as two
  matmuls, a gather and a twiddle product (:func:`~nnaudio_export.kernels.inverse.irfft_factors`):
  ``(4 P + 2 Q) N`` multiply-adds per frame instead of ``N (N + 2)``, sums of ``2P`` and
  ``2Q`` terms instead of ``N + 2`` (less float32 rounding). Used whenever it saves at
  least half (every ``n_fft`` with a divisor near its square root: 400, 511, 512, 1024, ...).
- :class:`MatrixIRFFT`: one matmul with the ``(N + 2, N)`` matrix of
  :func:`~nnaudio_export.kernels.inverse.irfft_matrix`: for trainable kernels (the matrix
  is the parameter, as nnAudio's) and sizes the factorisation does not help.

Both take rows ``[Re X_t, Im X_t]`` ``(B, T, 2F)`` and return ``irfft(X_t, n_fft)``
``(B, T, n_fft)``, unwindowed.
"""
import torch
from torch import Tensor, nn

from ..kernels.inverse import factor_pair, factored_irfft_saves, irfft_factors, irfft_matrix
from .common import kernel_tensor, register_kernel


class MatrixIRFFT(nn.Module):
    """``z @ kernel`` with the inverse real-DFT matrix (``kernel``, trainable or not)."""

    method = "matrix"

    def __init__(self, n_fft: int, normalized: bool, trainable: bool, dtype: torch.dtype):
        super().__init__()
        register_kernel(self, "kernel", irfft_matrix(n_fft, normalized), trainable, dtype)

    def forward(self, z: Tensor) -> Tensor:
        return torch.matmul(z, self.kernel)


class FactoredIRFFT(nn.Module):
    """The two-stage inverse real DFT of :func:`~nnaudio_export.kernels.inverse.irfft_factors`
    (frozen constants)."""

    method = "factored"

    def __init__(self, n_fft: int, normalized: bool, dtype: torch.dtype):
        super().__init__()
        self.p, self.q = factor_pair(n_fft)
        self.n_fft = n_fft
        parts = irfft_factors(n_fft, normalized)
        self.register_buffer("index", torch.from_numpy(parts.pop("index")).long())
        for name, array in parts.items():
            self.register_buffer(name, kernel_tensor(array, dtype))

    def forward(self, z: Tensor) -> Tensor:
        b, t = z.size(0), z.size(1)
        x = torch.index_select(z, 2, self.index) * self.sign             # (B, T, Q * 2P)
        x = torch.matmul(x.reshape(b, t, self.q, 2 * self.p), self.stage1)
        x = x.transpose(2, 3)                                            # (B, T, 2P, Q): A[c, b]
        re, im = x[:, :, : self.p], x[:, :, self.p:]
        x = torch.cat([re * self.twiddle_cos - im * self.twiddle_sin,
                       re * self.twiddle_sin + im * self.twiddle_cos], dim=3)   # (B, T, P, 2Q)
        x = torch.matmul(x, self.stage2)                                 # (B, T, P, Q): [c, d]
        return x.transpose(2, 3).reshape(b, t, self.n_fft)               # n = c + P d


def irfft_module(n_fft: int, normalized: bool, trainable: bool,
                 dtype: torch.dtype = torch.float32) -> nn.Module:
    """The factored inverse DFT when it saves at least half and the kernels are frozen,
    else the matrix (trainable: its ``kernel`` is the parameter)."""
    if not trainable and factored_irfft_saves(n_fft):
        return FactoredIRFFT(n_fft, normalized, dtype)
    return MatrixIRFFT(n_fft, normalized, trainable, dtype)
