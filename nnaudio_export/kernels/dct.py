"""DCT matrices (float64), so that a DCT is a plain matmul in every runtime."""
from __future__ import annotations

from typing import Optional

import numpy as np


def dct_matrix(n_in: int, n_out: Optional[int] = None, norm: Optional[str] = "ortho") -> np.ndarray:
    """DCT-II as an ``(n_out, n_in)`` matrix ``D`` so that ``y = D @ x``.

    ``D[k, n] = 2 cos(pi k (2n + 1) / (2 N))``, the unnormalised DCT-II of
    ``scipy.fft.dct(x, type=2, norm=None)``; with ``norm='ortho'`` row 0 is scaled by
    ``sqrt(1 / (4N))`` and the others by ``sqrt(1 / (2N))``, making ``D`` orthonormal.
    Reference: scipy.fft.dct; Makhoul (1980).
    """
    if n_out is None:
        n_out = n_in
    if not 0 < n_out <= n_in:
        raise ValueError(f"n_mfcc must be in 1..{n_in}, got {n_out}")
    if norm not in (None, "ortho"):
        raise ValueError(f"norm must be 'ortho' or None, got {norm!r}")
    k = np.arange(n_out, dtype=np.float64)[:, None]
    n = np.arange(n_in, dtype=np.float64)[None, :]
    d = 2.0 * np.cos(np.pi * k * (2.0 * n + 1.0) / (2.0 * n_in))
    if norm == "ortho":
        d[0] *= np.sqrt(1.0 / (4.0 * n_in))
        d[1:] *= np.sqrt(1.0 / (2.0 * n_in))
    return d
