"""Analysis windows (float64)."""
from __future__ import annotations

from typing import Union, Tuple

import numpy as np
import scipy.signal

WindowSpec = Union[str, Tuple, list, float]


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
