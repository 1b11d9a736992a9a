"""Inverse STFT math (float64 numpy): synthesis kernels, the window-sum envelope of
overlap-add, and where an inverse is defined (NOLA)."""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

from .windows import WindowSpec, get_window, pad_center

# torch.istft refuses an envelope below this (``window overlap add min``); so do we.
NOLA_TOLERANCE = 1e-11


def synthesis_window(window: WindowSpec, win_length: int, n_fft: int) -> np.ndarray:
    """The periodic ``window`` of ``win_length`` samples centre-padded to ``n_fft``
    (``torch.istft``, ``librosa.istft``), float64."""
    return pad_center(get_window(window, win_length, fftbins=True), n_fft)


def _irfft_scale(n_fft: int, normalized: bool) -> float:
    """``1 / N`` (``numpy.fft.irfft``), or ``1 / sqrt(N)`` for ``normalized`` (the inverse of
    a forward STFT divided by ``sqrt(N)``, ``torch.istft(normalized=True)``)."""
    return 1.0 / np.sqrt(n_fft) if normalized else 1.0 / n_fft


def irfft_matrix(n_fft: int, normalized: bool = False) -> np.ndarray:
    """Inverse real DFT as a matrix ``K``, ``(2 F, n_fft)`` with ``F = n_fft // 2 + 1``, so
    that a frame of a one-sided spectrum ``X`` as the row ``z = [Re X, Im X]`` becomes
    ``z @ K = irfft(X, n_fft)``:

        K[k, n]     =  c_k cos(2 pi k n / N) / N
        K[F + k, n] = -c_k sin(2 pi k n / N) / N

    with ``c_0 = 1``, ``c_{N/2} = 1`` (even ``N``) and ``c_k = 2`` otherwise (the conjugate
    half of the spectrum folded in). As ``numpy.fft.irfft`` (and ``torch.istft``), the
    imaginary parts of the DC and Nyquist bins are ignored (their sine rows are 0);
    ``normalized``: see :func:`_irfft_scale`. References: numpy.fft.irfft; torch.istft;
    nnAudio 0.3.x ``iSTFT`` (the same kernels over the full ``n_fft`` bins).
    """
    bins = n_fft // 2 + 1
    weight = np.full(bins, 2.0)
    weight[0] = 1.0
    if n_fft % 2 == 0:
        weight[-1] = 1.0
    # Integer phase k*n reduced modulo n_fft exactly, as for the forward kernels.
    phase = 2.0 * np.pi * ((np.outer(np.arange(bins), np.arange(n_fft)) % n_fft) / n_fft)
    scale = weight[:, None] * _irfft_scale(n_fft, normalized)
    return np.concatenate([np.cos(phase) * scale, -np.sin(phase) * scale], axis=0)


def factor_pair(n_fft: int) -> Tuple[int, int]:
    """``(P, Q)`` with ``P Q = n_fft`` and ``P`` the largest divisor ``<= sqrt(n_fft)``
    (``P = 1`` for a prime)."""
    p = int(np.floor(np.sqrt(n_fft)))
    while n_fft % p:
        p -= 1
    return p, n_fft // p


def factored_irfft_saves(n_fft: int) -> bool:
    """Whether :func:`irfft_factors` needs at most half the multiply-adds of
    :func:`irfft_matrix`: ``(4 P + 2 Q) N`` against ``2 F N`` per frame."""
    p, q = factor_pair(n_fft)
    return 4 * p + 2 * q <= (n_fft // 2 + 1)


def irfft_factors(n_fft: int, normalized: bool = False) -> Dict[str, np.ndarray]:
    """The inverse real DFT in two stages of small DFTs (Cooley-Tukey, ``N = P Q``), for a
    frame ``z = [Re X, Im X]`` of ``F = N // 2 + 1`` bins. With ``k = Q a + b`` and
    ``n = c + P d`` (``a, c < P``; ``b, d < Q``)::

        irfft(X)[c + P d] = Re sum_b e^(2 pi i b d / Q) e^(2 pi i b c / N) A[c, b] / N,
        A[c, b] = sum_a X[Q a + b] e^(2 pi i a c / P)

    where ``X[k] = conj X[N - k]`` above ``F`` (Hermitian). As arrays:

    - ``index``, ``sign`` (``2 P Q``): ``z[index] * sign`` lays the full spectrum out as
      ``Q`` rows ``[Re X[Q a + b] for a, Im X[Q a + b] for a]`` (``sign`` -1: conjugates);
    - ``stage1`` (``2P, 2P``): a row times it gives ``[Re A[c, b] for c, Im A[c, b] for c]``
      (the ``1 / N`` folded in; ``normalized``: see :func:`_irfft_scale`);
    - ``twiddle_cos``, ``twiddle_sin`` (``P, Q``): ``cos, sin(2 pi b c / N)``;
    - ``stage2`` (``2Q, Q``): ``[Re B[c, b] for b, Im B[c, b] for b]`` times it is
      ``irfft(X)[c + P d]`` for ``d = 0 .. Q - 1``.

    ``(4 P + 2 Q) N`` multiply-adds per frame instead of ``2 F N``, and shorter sums (``2P``
    and ``2Q`` terms instead of ``2F``), so less float32 rounding. Reference: Cooley &
    Tukey (1965); the result equals :func:`irfft_matrix` (and numpy.fft.irfft).
    """
    p, q = factor_pair(n_fft)
    bins = n_fft // 2 + 1
    k = q * np.arange(p)[None, :] + np.arange(q)[:, None]             # (Q, P): k = Q a + b
    mirrored = k >= bins
    source = np.where(mirrored, n_fft - k, k)
    index = np.concatenate([source, bins + source], axis=1)            # (Q, 2P)
    sign = np.concatenate([np.ones((q, p)), np.where(mirrored, -1.0, 1.0)], axis=1)
    ac = 2.0 * np.pi * ((np.outer(np.arange(p), np.arange(p)) % p) / p)  # [a, c]
    cos1, sin1 = np.cos(ac), np.sin(ac)
    stage1 = np.block([[cos1, sin1], [-sin1, cos1]]) * _irfft_scale(n_fft, normalized)
    bc = 2.0 * np.pi * ((np.outer(np.arange(p), np.arange(q)) % n_fft) / n_fft)  # [c, b]
    bd = 2.0 * np.pi * ((np.outer(np.arange(q), np.arange(q)) % q) / q)          # [b, d]
    return {"index": index.reshape(-1), "sign": sign.reshape(-1), "stage1": stage1,
            "twiddle_cos": np.cos(bc), "twiddle_sin": np.sin(bc),
            "stage2": np.concatenate([np.cos(bd), -np.sin(bd)], axis=0)}


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
