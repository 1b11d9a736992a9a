"""Kaldi fbank math in float64 numpy: windows, mel banks, frame positions and the folded
per-frame kernel.

Reference: Kaldi ``src/feat/feature-window.{h,cc}`` (``FrameExtractionOptions``,
``FeatureWindowFunction``, ``ExtractWindow``, ``ProcessWindow``, ``NumFrames``,
``FirstSampleOfFrame``) and ``src/feat/mel-computations.cc`` (``MelBanks``), as also
implemented by kaldi-native-fbank and ``torchaudio.compliance.kaldi``.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from .mel import require_nonempty_filters
from .windows import povey_window

KALDI_WINDOWS = ("povey", "hanning", "hamming", "rectangular", "sine", "blackman")


def kaldi_window(window: str, length: int, blackman_coeff: float = 0.42) -> np.ndarray:
    """Kaldi ``FeatureWindowFunction`` (all symmetric: ``a = 2 pi / (N - 1)``):

    - ``hanning``: ``0.5 - 0.5 cos(a n)``
    - ``povey``: ``(0.5 - 0.5 cos(a n)) ** 0.85``
    - ``hamming``: ``0.54 - 0.46 cos(a n)``
    - ``sine``: ``sin(0.5 a n)``
    - ``blackman``: ``c - 0.5 cos(a n) + (0.5 - c) cos(2 a n)`` with ``c = blackman_coeff``
    - ``rectangular``: ones.
    """
    if window not in KALDI_WINDOWS:
        raise ValueError(f"window must be one of {KALDI_WINDOWS}, got {window!r}")
    length = int(length)
    if length <= 0:
        raise ValueError(f"window length must be positive, got {length}")
    if window == "povey":
        return povey_window(length)
    if length == 1 or window == "rectangular":
        return np.ones(length)
    a = 2.0 * np.pi / (length - 1)
    n = np.arange(length, dtype=np.float64)
    if window == "hanning":
        return 0.5 - 0.5 * np.cos(a * n)
    if window == "hamming":
        return 0.54 - 0.46 * np.cos(a * n)
    if window == "sine":
        return np.sin(0.5 * a * n)
    return blackman_coeff - 0.5 * np.cos(a * n) + (0.5 - blackman_coeff) * np.cos(2.0 * a * n)


def padded_length(win_length: int, round_to_power_of_two: bool = True) -> int:
    """FFT size: ``win_length`` rounded up to a power of two (Kaldi ``RoundUpToNearestPowerOfTwo``)
    when ``round_to_power_of_two``, else ``win_length``."""
    if not round_to_power_of_two:
        return int(win_length)
    n = 1
    while n < win_length:
        n *= 2
    return n


def kaldi_mel_scale(f):
    """Kaldi ``MelScale``: ``1127 ln(1 + f / 700)``."""
    return 1127.0 * np.log(1.0 + np.asanyarray(f, dtype=np.float64) / 700.0)


def kaldi_mel_banks(num_bins: int, sample_rate: float, n_fft: int, low_freq: float = 20.0,
                    high_freq: float = 0.0) -> np.ndarray:
    """Kaldi ``MelBanks`` (no VTLN) as a ``(num_bins, n_fft // 2 + 1)`` matrix.

    ``high_freq <= 0`` means Nyquist + high_freq (Kaldi: 0 is Nyquist, -400 is 400 Hz below).
    ``num_bins + 2`` edges are equally spaced in mel (``1127 ln(1 + f / 700)``) from
    mel(low) to mel(high); bin ``m`` has weight ``(mel - left) / (center - left)`` rising and
    ``(right - mel) / (right - center)`` falling, with ``mel`` the mel of each FFT bin
    frequency ``k sr / n_fft`` and non-zero only for ``left < mel < right`` (triangles in
    mel space, peak 1, no normalisation). Kaldi uses the first ``n_fft / 2`` bins only: the
    Nyquist column is zero.
    """
    num_bins = int(num_bins)
    if num_bins < 3:
        raise ValueError(f"n_mels must be at least 3, got {num_bins}")
    nyquist = 0.5 * float(sample_rate)
    high = float(high_freq) if high_freq > 0.0 else nyquist + float(high_freq)
    low = float(low_freq)
    if not (0.0 <= low < nyquist and 0.0 < high <= nyquist and low < high):
        raise ValueError(f"low_freq/high_freq: need 0 <= low < high <= Nyquist ({nyquist} Hz); "
                         f"got low_freq={low_freq}, high_freq={high_freq} (-> {high} Hz)")
    n_half = int(n_fft) // 2
    mel_low, mel_high = kaldi_mel_scale(low), kaldi_mel_scale(high)
    delta = (mel_high - mel_low) / (num_bins + 1)
    edges = mel_low + delta * np.arange(num_bins + 2, dtype=np.float64)
    left, center, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    mel = kaldi_mel_scale(np.arange(n_half, dtype=np.float64) * float(sample_rate) / int(n_fft))[None, :]
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    w = np.where(mel <= center, up, down)
    w = np.where((mel > left) & (mel < right), w, 0.0)
    # Empty banks are kept (Kaldi asserts, torchaudio and kaldi-native-fbank do not): AST's
    # 128 bins at n_fft 512 have one (bank 3), and its model was trained with it.
    return np.concatenate([w, np.zeros((num_bins, int(n_fft) // 2 + 1 - n_half))], axis=1)


def kaldi_frame_operator(win_length: int, n_fft: int, window: str = "povey",
                         remove_dc_offset: bool = True, preemphasis: float = 0.97) -> np.ndarray:
    """The per-frame linear steps of Kaldi ``ProcessWindow`` (dither 0) as one
    ``(n_fft, win_length)`` matrix ``M = P W E D``, applied to a raw frame ``x``:

    1. DC removal: ``D = I - (1/L) 1 1^T`` (``x -= mean(x)``), when ``remove_dc_offset``.
    2. Pre-emphasis, in place from the end: ``y[n] = x[n] - c x[n-1]`` for ``n >= 1`` and
       ``y[0] = x[0] - c x[0]`` (Kaldi ``Preemphasize``: ``x[-1] := x[0]``):
       ``E = I - c S`` with ``S[n, n-1] = 1`` and ``S[0, 0] = 1``.
    3. Window: ``W = diag(w)`` (:func:`kaldi_window`).
    4. Zero-pad to ``n_fft``: ``P = [I_L; 0]``.
    """
    L, N = int(win_length), int(n_fft)
    if N < L:
        raise ValueError(f"n_fft ({N}) must be >= win_length ({L})")
    D = np.eye(L) - (1.0 / L if remove_dc_offset else 0.0)
    S = np.eye(L, k=-1)
    S[0, 0] = 1.0
    E = np.eye(L) - float(preemphasis) * S
    M = (kaldi_window(window, L)[:, None] * E) @ D
    return np.concatenate([M, np.zeros((N - L, L))], axis=0)


def kaldi_fbank_kernels(win_length: int, window: str = "povey", remove_dc_offset: bool = True,
                        preemphasis: float = 0.97, round_to_power_of_two: bool = True) -> Tuple[np.ndarray, int]:
    """Correlation kernels ``(2 F, win_length)`` (``F = n_fft // 2 + 1``; rows ``[cos; sin]``)
    that give the real and imaginary DFT of the processed, padded frame directly from the raw
    frame: ``K = [C; S] M`` with ``C[k, n] = cos(2 pi k n / n_fft)``, ``S[k, n] = sin(...)``
    and ``M`` from :func:`kaldi_frame_operator`, folded in float64. Returns ``(K, n_fft)``.
    The power spectrum is ``(K_cos x)^2 + (K_sin x)^2`` (Kaldi ``ComputePowerSpectrum``).
    """
    n_fft = padded_length(win_length, round_to_power_of_two)
    M = kaldi_frame_operator(win_length, n_fft, window, remove_dc_offset, preemphasis)
    k = np.arange(n_fft // 2 + 1, dtype=np.int64)
    cycles = (np.outer(k, np.arange(n_fft, dtype=np.int64)) % n_fft) / n_fft
    dft = np.concatenate([np.cos(2 * np.pi * cycles), np.sin(2 * np.pi * cycles)], axis=0)
    return dft @ M, n_fft


def kaldi_num_frames(num_samples: int, win_length: int, hop_length: int, snip_edges: bool) -> int:
    """Kaldi ``NumFrames``: ``1 + (N - L) // hop`` (0 when N < L) with ``snip_edges``, else
    ``(N + hop // 2) // hop``."""
    if snip_edges:
        return 0 if num_samples < win_length else 1 + (num_samples - win_length) // hop_length
    return (num_samples + hop_length // 2) // hop_length


def kaldi_first_sample(frame: int, win_length: int, hop_length: int, snip_edges: bool) -> int:
    """Kaldi ``FirstSampleOfFrame``: ``hop f`` with ``snip_edges``, else
    ``hop f + hop // 2 - L // 2`` (frame centred on ``hop (f + 1/2)``; 160 f - 120 at 400/160)."""
    if snip_edges:
        return hop_length * frame
    return hop_length * frame + hop_length // 2 - win_length // 2


def kaldi_edge_indices(num_samples: int, win_length: int, hop_length: int) -> Tuple[np.ndarray, np.ndarray, int]:
    """For ``snip_edges=False``: sample indices that extend the signal on the left and right so
    that frame ``f`` is ``padded[hop f : hop f + L]``. Out-of-range indices are reflected as
    in Kaldi ``ExtractWindow`` (``s < 0 -> -s - 1``; ``s >= N -> 2 N - 1 - s``, repeated:
    the edge sample is repeated, numpy 'symmetric' and not torch 'reflect').

    Returns ``(left, right, start)``: prepend ``x[left]``, append ``x[right]``, then drop the
    first ``start`` samples (``start > 0`` only when the first frame starts inside the signal).
    """
    n = int(num_samples)
    frames = kaldi_num_frames(n, win_length, hop_length, False)
    if frames <= 0:
        raise ValueError(f"num_samples {n} gives no frames")
    first = kaldi_first_sample(0, win_length, hop_length, False)
    end = kaldi_first_sample(frames - 1, win_length, hop_length, False) + win_length

    def reflect(s: int) -> int:
        while s < 0 or s >= n:
            s = -s - 1 if s < 0 else 2 * n - 1 - s
        return s

    left = np.array([reflect(s) for s in range(min(first, 0), 0)], dtype=np.int64)
    right = np.array([reflect(s) for s in range(n, max(end, n))], dtype=np.int64)
    return left, right, max(first, 0)


def speechbrain_mel_filterbank(sample_rate: float, n_fft: int, n_mels: int = 40, f_min: float = 0.0,
                               f_max=None) -> np.ndarray:
    """SpeechBrain ``Filterbank`` (triangular, no parameter changes) as ``(n_mels, n_fft // 2 + 1)``.

    (Not Kaldi; kept here with the other non-librosa filterbanks.) Edges ``hz`` are
    ``n_mels + 2`` points equally spaced in HTK mel (``2595 log10(1 + f / 700)``) from f_min to
    f_max; band ``m`` is centred at ``hz[m + 1]`` with half-width ``b = hz[m + 1] - hz[m]``
    on BOTH sides (symmetric in Hz): ``max(0, min(1 + s, 1 - s))``, ``s = (f - hz[m+1]) / b``,
    where ``f = linspace(0, sr // 2, n_fft // 2 + 1)``. Peak 1, no normalisation.
    Reference: ``speechbrain.processing.features.Filterbank``.
    """
    if f_max is None:
        f_max = sample_rate / 2.0
    if not 0.0 <= f_min < f_max <= sample_rate / 2.0:
        raise ValueError(f"fmin/fmax: need 0 <= fmin < fmax <= Nyquist, got {f_min}, {f_max}")
    to_mel = lambda f: 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)  # noqa: E731
    mels = np.linspace(to_mel(f_min), to_mel(f_max), int(n_mels) + 2)
    hz = 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    band = (hz[1:] - hz[:-1])[:-1]
    center = hz[1:-1]
    freqs = np.linspace(0.0, float(int(sample_rate) // 2), int(n_fft) // 2 + 1)
    slope = (freqs[None, :] - center[:, None]) / band[:, None]
    return require_nonempty_filters(np.maximum(0.0, np.minimum(slope + 1.0, 1.0 - slope)),
                                    sample_rate, n_fft)


def kaldi_dft_parts(win_length: int, window: str = "povey", remove_dc_offset: bool = True,
                    preemphasis: float = 0.97, round_to_power_of_two: bool = True, tol: float = 1e-12):
    """Kaldi's folded kernel :func:`kaldi_fbank_kernels` ``K`` as a plain windowed DFT of a
    pre-emphasised signal plus a low-rank remainder, so a factorised DFT can apply it
    (:mod:`nnaudio_export.kernels.factorised_dft`). On the frame extended by the sample
    before it, ``x_e = [x[s-1], x[s], ..., x[s+L-1]]``:

        K x = D diag(w) p + U (V x_e),   p[n] = x[s+n] - c x[s+n-1]

    with ``D`` the ``[cos; sin]`` DFT of ``n_fft`` points, ``w`` the Kaldi window, ``c`` the
    pre-emphasis. Exact for any value of ``x[s-1]`` (Kaldi's frame does not read it: its
    ``x[-1] := x[0]``): the remainder ``M_e - diag(w) P_e`` is ``c w[0] (x[s-1] - x[s])`` on
    row 0 (zero for windows with ``w[0] = 0``, e.g. povey, hanning) plus DC removal's
    ``-(1 - c) mean(x) w``, rank <= 2, found with an SVD (singular values above ``tol``
    times the largest). Returns ``dict(n_fft, window (n_fft, zero past L), preemphasis,
    correction_taps (r, L + 1), correction_bins (2 F, r))``."""
    L = int(win_length)
    n_fft = padded_length(L, round_to_power_of_two)
    M = kaldi_frame_operator(L, n_fft, window, remove_dc_offset, preemphasis)[:L]
    c = float(preemphasis)
    w = kaldi_window(window, L)
    M_e = np.concatenate([np.zeros((L, 1)), M], axis=1)          # (L, L + 1): ignores x[s-1]
    P_e = np.eye(L, L + 1, k=1) - c * np.eye(L, L + 1)            # p[n] = x_e[n+1] - c x_e[n]
    rest = M_e - w[:, None] * P_e
    u, s, vt = np.linalg.svd(rest, full_matrices=False)
    rank = int(np.sum(s > tol * max(1.0, float(np.abs(M).max()))))
    k = np.arange(n_fft // 2 + 1, dtype=np.int64)
    cycles = (np.outer(k, np.arange(L, dtype=np.int64)) % n_fft) / n_fft
    dft = np.concatenate([np.cos(2 * np.pi * cycles), np.sin(2 * np.pi * cycles)], axis=0)
    return {"n_fft": n_fft, "window": np.concatenate([w, np.zeros(n_fft - L)]), "preemphasis": c,
            "correction_taps": vt[:rank], "correction_bins": dft @ (u[:, :rank] * s[:rank])}
