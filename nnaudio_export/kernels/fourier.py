"""Windowed Fourier kernels for a convolutional STFT (float64)."""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from .windows import WindowSpec, get_window, pad_center

FREQ_SCALES = ("no", "linear", "log", "log2")


def fourier_bin_frequencies(n_fft: int, freq_bins: Optional[int] = None, fmin: float = 50.0,
                            fmax: float = 6000.0, sr: float = 22050.0,
                            freq_scale: str = "no") -> np.ndarray:
    """Centre frequency in Hz of each STFT bin, following nnAudio 0.3.x.

    - ``'no'``: ``f_k = k sr / n_fft`` for ``k = 0 .. freq_bins-1`` (the DFT bins).
    - ``'linear'``: ``f_k = fmin + k (fmax - fmin) / freq_bins``.
    - ``'log'`` / ``'log2'``: ``f_k = fmin (fmax / fmin) ** (k / freq_bins)`` (nnAudio
      computes it with ``exp``/``log`` resp. ``2**``/``log2``: the same numbers).

    As in nnAudio, ``fmax`` itself is not reached by the non-'no' scales.
    """
    if freq_scale not in FREQ_SCALES:
        raise ValueError(f"freq_scale must be one of {FREQ_SCALES}, got {freq_scale!r}")
    if freq_bins is None:
        freq_bins = n_fft // 2 + 1
    k = np.arange(freq_bins, dtype=np.float64)
    if freq_scale == "no":
        return k * sr / n_fft
    if freq_scale == "linear":
        return fmin + k * (fmax - fmin) / freq_bins
    if freq_scale == "log":
        return fmin * np.exp(k * np.log(fmax / fmin) / freq_bins)
    return fmin * 2.0 ** (k * np.log2(fmax / fmin) / freq_bins)


def fourier_kernels(n_fft: int, win_length: Optional[int] = None, freq_bins: Optional[int] = None,
                    fmin: float = 50.0, fmax: float = 6000.0, sr: float = 22050.0,
                    freq_scale: str = "no", window: WindowSpec = "hann",
                    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windowed cosine and sine kernels, each ``(freq_bins, n_fft)``, float64.

    ``cos[k, n] = w[n] cos(2 pi f_k n / sr)``, ``sin[k, n] = w[n] sin(2 pi f_k n / sr)``
    with ``w`` the periodic ``window`` of ``win_length`` samples centre-padded to ``n_fft``
    (librosa ``pad_center``). Correlating a frame ``x[n]`` with them gives
    ``X_k = sum_n x[n] w[n] exp(-2 pi i f_k n / sr) = cos-part - i sin-part``,
    the DFT convention of librosa, numpy and nnAudio.

    Returns ``(cos, sin, window)`` where ``window`` is the padded window (length ``n_fft``).
    Reference: nnAudio 0.3.x ``create_fourier_kernels``.
    """
    if win_length is None:
        win_length = n_fft
    freqs = fourier_bin_frequencies(n_fft, freq_bins, fmin, fmax, sr, freq_scale)
    win = pad_center(get_window(window, win_length, fftbins=True), n_fft)
    n = np.arange(n_fft, dtype=np.float64)
    if freq_scale == "no":
        # Integer bins: reduce k*n modulo n_fft exactly, so the phase keeps full accuracy.
        k = np.arange(freqs.shape[0], dtype=np.int64)
        cycles = (np.outer(k, np.arange(n_fft, dtype=np.int64)) % n_fft) / n_fft
    else:
        cycles = np.outer(freqs / sr, n)
    phase = 2.0 * np.pi * cycles
    return np.cos(phase) * win, np.sin(phase) * win, win
