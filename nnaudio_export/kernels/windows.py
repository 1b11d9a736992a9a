"""Analysis windows (float64)."""
from __future__ import annotations

from typing import Union, Tuple

import numpy as np

WindowSpec = Union[str, Tuple, list, float]

# Generalised cosine windows by their coefficients a_k (scipy.signal.windows.general_cosine):
# computed here, so that the common windows do not import scipy.signal (~0.6 s, it pulls in
# scipy.stats); every other window comes from scipy.signal.get_window.
COSINE_WINDOWS = {"hann": (0.5, 0.5), "hamming": (0.54, 0.46), "blackman": (0.42, 0.5, 0.08),
                  "boxcar": (1.0,)}


def cosine_window(coefficients: Tuple[float, ...], length: int, fftbins: bool = True) -> np.ndarray:
    """``w[n] = sum_k (-1)^k a_k cos(2 pi k n / (M - 1))``, ``n = 0 .. M - 1``, with ``M =
    length + 1`` and the last sample dropped when ``fftbins`` (periodic, DFT-even), else
    ``M = length`` (symmetric); length 1 gives ``[1]``. Equal to scipy's ``get_window``
    for 'hann', 'hamming', 'blackman' and 'boxcar' (to float64 rounding)."""
    if length == 1:
        return np.ones(1)
    m = length + 1 if fftbins else length
    n = np.arange(m, dtype=np.float64)
    w = np.zeros(m)
    for k, a in enumerate(coefficients):
        w += (-1.0) ** k * a * np.cos(2.0 * np.pi * k * n / (m - 1))
    return w[:length]


def povey_window(length: int) -> np.ndarray:
    """Kaldi's 'povey' window: a *symmetric* Hann window raised to 0.85.

    ``w[n] = (0.5 - 0.5 cos(2 pi n / (N - 1))) ** 0.85`` (Kaldi ``feature-window.cc``).
    """
    if length == 1:
        return np.ones(1)
    n = np.arange(length, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / (length - 1))) ** 0.85


def get_window(window: WindowSpec, length: int, fftbins: bool = True) -> np.ndarray:
    """Window of ``length`` samples in float64.

    ``window`` is anything :func:`scipy.signal.get_window` accepts (a name such as
    ``'hann'``, or a tuple such as ``('kaiser', 8.0)``; a JSON list is taken as a tuple),
    plus ``'povey'`` (Kaldi) and ``'hann_symmetric'`` / ``'hamming_symmetric'`` shorthands.
    ``fftbins=True`` gives the periodic (DFT-even) window, as librosa and nnAudio use.

    Raises ``ValueError`` naming ``window`` for an unknown window.
    """
    length = int(length)
    if length <= 0:
        raise ValueError(f"window length must be positive, got {length}")
    if isinstance(window, list):
        window = tuple(window)
    if isinstance(window, str):
        if window == "povey":
            return povey_window(length)
        if window.endswith("_symmetric"):
            return get_window(window[: -len("_symmetric")], length, fftbins=False)
        if window in ("ones", "rectangular", "rect"):
            window = "boxcar"
    if isinstance(window, str) and window in COSINE_WINDOWS and int(length) >= 1:
        return cosine_window(COSINE_WINDOWS[window], int(length), fftbins)
    import scipy.signal
    try:
        w = scipy.signal.get_window(window, length, fftbins=fftbins)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"window: unknown or invalid window {window!r} ({exc})") from None
    return np.asarray(w, dtype=np.float64)


def pad_center(data: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad a 1-D array on both sides to ``size`` (left gets ``(size - n) // 2``),
    as ``librosa.util.pad_center`` does."""
    n = data.shape[-1]
    if n > size:
        raise ValueError(f"win_length ({n}) must be <= n_fft ({size})")
    lpad = (size - n) // 2
    return np.pad(data, (lpad, size - n - lpad))
