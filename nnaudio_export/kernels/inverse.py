"""Inverse STFT math (float64 numpy): synthesis kernels, the window-sum envelope of
overlap-add, and where an inverse is defined (NOLA)."""
from __future__ import annotations

from typing import Optional

import numpy as np

from .windows import WindowSpec, get_window, pad_center

# torch.istft refuses an envelope below this (``window overlap add min``); so do we.
NOLA_TOLERANCE = 1e-11


def synthesis_window(window: WindowSpec, win_length: int, n_fft: int) -> np.ndarray:
    """The periodic ``window`` of ``win_length`` samples centre-padded to ``n_fft``
    (``torch.istft``, ``librosa.istft``), float64."""
    return pad_center(get_window(window, win_length, fftbins=True), n_fft)


def inverse_fourier_kernels(n_fft: int, window: np.ndarray, normalized: bool = False) -> np.ndarray:
    """Windowed inverse real-DFT kernel ``K``, ``(n_fft, 2 F)`` with ``F = n_fft // 2 + 1``,
    so that one frame of a one-sided spectrum ``X`` (``z = [Re X; Im X]``) becomes
    ``K @ z = w[n] irfft(X, n_fft)[n]``:

        K[n, k]     =  c_k w[n] cos(2 pi k n / N) / N
        K[n, F + k] = -c_k w[n] sin(2 pi k n / N) / N

    with ``c_0 = 1``, ``c_{N/2} = 1`` (even ``N``) and ``c_k = 2`` otherwise (the conjugate
    half of the spectrum folded in). As ``numpy.fft.irfft`` (and ``torch.istft``), the
    imaginary parts of the DC and Nyquist bins are ignored (their sine rows are 0).
    ``normalized=True`` scales by ``sqrt(N)`` (``torch.istft(normalized=True)``, the inverse
    of a forward STFT divided by ``sqrt(N)``).

    ``window`` is the synthesis window, ``n_fft`` long (:func:`synthesis_window`).
    References: numpy.fft.irfft; torch.istft; nnAudio 0.3.x ``iSTFT`` (which builds the
    same kernels over the full ``n_fft`` bins).
    """
    window = np.asarray(window, dtype=np.float64)
    if window.shape != (n_fft,):
        raise ValueError(f"window: expected {n_fft} samples, got {window.shape}")
    bins = n_fft // 2 + 1
    weight = np.full(bins, 2.0)
    weight[0] = 1.0
    if n_fft % 2 == 0:
        weight[-1] = 1.0
    # Integer phase k*n reduced modulo n_fft exactly, as for the forward kernels.
    cycles = (np.outer(np.arange(n_fft, dtype=np.int64), np.arange(bins, dtype=np.int64)) % n_fft) / n_fft
    phase = 2.0 * np.pi * cycles
    scale = weight[None, :] * window[:, None] / n_fft
    if normalized:
        scale = scale * np.sqrt(n_fft)
    return np.concatenate([np.cos(phase) * scale, -np.sin(phase) * scale], axis=1)


def window_sumsquare(window: np.ndarray, n_frames: int, hop_length: int) -> np.ndarray:
    """Overlap-added squared window: ``e[m] = sum_t w[m - t hop]^2`` over ``n_frames``
    frames, length ``len(w) + hop (n_frames - 1)``. Dividing an overlap-add of windowed
    frames by it is the least-squares inverse of an STFT (Griffin & Lim 1984).
    Reference: ``librosa.filters.window_sumsquare`` (with the window already padded to
    ``n_fft``)."""
    w2 = np.asarray(window, dtype=np.float64) ** 2
    n = w2.shape[0]
    out = np.zeros(n + hop_length * (n_frames - 1))
    for t in range(n_frames):
        out[t * hop_length: t * hop_length + n] += w2
    return out


def nola_gap(window: np.ndarray, hop_length: int) -> Optional[int]:
    """The first offset ``r`` in ``0 .. hop - 1`` at which the steady-state envelope
    ``sum_j w[r + j hop]^2`` is below :data:`NOLA_TOLERANCE`, or ``None`` when the
    nonzero-overlap-add (NOLA) condition holds and an inverse exists.
    Reference: ``scipy.signal.check_NOLA`` (its ``binsums`` of ``w^2``)."""
    w2 = np.asarray(window, dtype=np.float64) ** 2
    padded = np.pad(w2, (0, (-w2.shape[0]) % hop_length))
    sums = padded.reshape(-1, hop_length).sum(axis=0)
    low = np.flatnonzero(sums < NOLA_TOLERANCE)
    return int(low[0]) if low.size else None
