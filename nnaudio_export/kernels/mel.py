"""Mel scale and mel filterbanks (float64), equal to ``librosa.filters.mel``."""
from __future__ import annotations

from typing import Optional, Union

import numpy as np

# Slaney's auditory toolbox mel scale: linear below 1 kHz, logarithmic above.
_F_SP = 200.0 / 3.0
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def hz_to_mel(frequencies, htk: bool = False):
    """Hz -> mel. ``htk``: ``2595 log10(1 + f / 700)``; otherwise Slaney's scale
    (``f / (200/3)`` below 1 kHz, ``15 + 27 ln(f / 1000) / ln 6.4`` above).
    Reference: librosa ``hz_to_mel``; Slaney (1998) Auditory Toolbox."""
    f = np.asanyarray(frequencies, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    mels = f / _F_SP
    log_part = f >= _MIN_LOG_HZ
    return np.where(log_part, _MIN_LOG_MEL + np.log(np.maximum(f, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP,
                    mels)


def mel_to_hz(mels, htk: bool = False):
    """Inverse of :func:`hz_to_mel`."""
    m = np.asanyarray(mels, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    freqs = _F_SP * m
    log_part = m >= _MIN_LOG_MEL
    return np.where(log_part, _MIN_LOG_HZ * np.exp(_LOGSTEP * (np.maximum(m, _MIN_LOG_MEL) - _MIN_LOG_MEL)),
                    freqs)


def mel_frequencies(n_mels: int, fmin: float = 0.0, fmax: float = 11025.0, htk: bool = False) -> np.ndarray:
    """``n_mels`` frequencies (Hz) equally spaced on the mel scale from fmin to fmax."""
    mels = np.linspace(hz_to_mel(fmin, htk), hz_to_mel(fmax, htk), n_mels)
    return mel_to_hz(mels, htk)


def fft_frequencies(sr: float, n_fft: int) -> np.ndarray:
    """Centre frequencies of the ``1 + n_fft // 2`` one-sided DFT bins."""
    return np.arange(n_fft // 2 + 1, dtype=np.float64) * float(sr) / n_fft


def require_nonempty_filters(weights: np.ndarray, sr: float, n_fft: int,
                             checked: Optional[np.ndarray] = None) -> np.ndarray:
    """``weights`` unchanged, or ``ValueError`` naming ``n_mels`` when some filter has no FFT
    bin inside it (all zeros: its band would always be 0, -inf after a log). librosa and
    nnAudio only warn ("Empty filters detected"); librosa's and SpeechBrain's filterbanks here
    refuse (Kaldi's keeps them: AST was trained with one). ``checked``: a boolean per filter,
    only those are required to be non-empty (default: all)."""
    empty = np.max(np.abs(weights), axis=1) == 0
    empty = np.flatnonzero(empty if checked is None else empty & checked)
    if empty.size:
        shown = ", ".join(str(i) for i in empty[:6]) + (", ..." if empty.size > 6 else "")
        raise ValueError(f"n_mels: {empty.size} of {weights.shape[0]} filters are empty (no FFT bin "
                         f"falls inside filters {shown}; the bins are {sr / n_fft:.1f} Hz apart at "
                         f"n_fft {n_fft}); use fewer mels or a larger n_fft")
    return weights


def mel_filterbank(sr: float, n_fft: int, n_mels: int = 128, fmin: float = 0.0,
                   fmax: Optional[float] = None, htk: bool = False,
                   norm: Union[None, str, float] = "slaney",
                   allow_above_nyquist: bool = False, bin_rate: Optional[float] = None) -> np.ndarray:
    """Triangular mel filterbank ``(n_mels, 1 + n_fft // 2)`` in float64.

    Filter ``m`` rises linearly (in Hz) from ``f[m]`` to ``f[m+1]`` and falls to ``f[m+2]``,
    with ``f`` = :func:`mel_frequencies` ``(n_mels + 2, fmin, fmax, htk)``.

    ``norm`` follows **librosa >= 0.8**: ``'slaney'`` divides each triangle by half its
    width in Hz (``2 / (f[m+2] - f[m])``, constant energy per band); a number ``p``
    normalises each row to unit l_p norm (``np.inf``: peak 1, ``1``: sum 1); ``None``
    leaves peaks at 1. (nnAudio's ``norm=1`` means ``'slaney'``: the layers translate.)

    A filter with no FFT bin inside it raises ``ValueError`` (librosa only warns), except,
    with ``allow_above_nyquist``, the filters starting at or above the Nyquist frequency
    (``fmax > sr / 2`` lays them out there: transformers' Whisper bank spans 0..8000 Hz at
    any rate, and below 16 kHz those filters are empty). ``bin_rate``: FFT bin ``k`` sits at
    ``k bin_rate / n_fft`` Hz (default ``sr``, the true frequency); transformers'
    ``mel_filter_bank`` spaces its bins evenly up to ``sampling_rate // 2`` exactly, i.e.
    ``bin_rate = n_fft (sr // 2) / (n_fft // 2)``, which differs for an odd rate or ``n_fft``.

    Reference: librosa ``filters.mel`` (Slaney 1998; Young et al., HTK book).
    """
    if fmax is None:
        fmax = float(sr) / 2.0
    if not (0.0 <= fmin < fmax):
        raise ValueError(f"fmin/fmax: need 0 <= fmin < fmax, got fmin={fmin}, fmax={fmax}")
    fftfreqs = fft_frequencies(sr if bin_rate is None else bin_rate, n_fft)
    mel_f = mel_frequencies(n_mels + 2, fmin, fmax, htk)
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fftfreqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    if isinstance(norm, str):
        if norm != "slaney":
            raise ValueError(f"norm must be None, 'slaney' or a number, got {norm!r}")
        weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    elif norm is not None:
        p = float(norm)
        a = np.abs(weights)
        if np.isinf(p):
            length = a.max(axis=1) if p > 0 else a.min(axis=1)
        elif p == 0:
            length = (a > 0).sum(axis=1).astype(np.float64)
        elif p > 0:
            length = (a ** p).sum(axis=1) ** (1.0 / p)
        else:
            raise ValueError(f"norm: unsupported l_p norm {norm!r}")
        # librosa leaves rows whose norm is below the smallest normal float untouched.
        length = np.where(length < np.finfo(np.float64).tiny, 1.0, length)
        weights = weights / length[:, None]
    checked = mel_f[:-2] < fftfreqs[-1] if allow_above_nyquist else None
    return require_nonempty_filters(weights, sr, n_fft, checked)
