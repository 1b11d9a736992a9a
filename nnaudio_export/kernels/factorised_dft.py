"""A windowed real DFT of strided frames in two small stages (polyphase Cooley-Tukey), float64.

What: frame ``t`` of a signal ``s`` starts at ``t hop``; its windowed DFT bins are

    C_k = sum_n v[n] s[t hop + n] cos(2 pi k n / N),   S_k = sum_n v[n] s[...] sin(...)

(the ``[cos; sin]`` correlation of :func:`nnaudio_export.kernels.fourier.fourier_kernels`,
``X_k = C_k - i S_k``). With ``N = N1 N2`` and ``N1`` dividing both ``hop`` and ``N``, write
``n = N1 m + r`` (phase ``r``, position ``m``) and ``k = a + N2 b`` (``a < N2``). Then

    X_k = sum_r exp(-2 pi i b r / N1) Z_r[a],
    Z_r[a] = sum_m v[n] s[t hop + n] exp(-2 pi i a n / N)        (twiddle folded in)

because ``k n / N = a n / N + b m + b r / N1``. Phase ``r`` of every frame is the strided
sub-sequence ``s[N1 j + r]`` from ``j = t hop / N1``: stage 1 is one grouped conv (``N1``
groups, ``N2`` taps, stride ``hop / N1``) on the signal reshaped to ``(N1, L / N1)``, giving
``P_r[a] = Re Z_r[a]`` and ``Q_r[a] = -Im Z_r[a]`` for every ``a < N2``; stage 2 is one real
matrix over ``(r, P|Q)`` shared by every ``a``:

    C_k = sum_r cos(theta) P_r[a] - sin(theta) Q_r[a],  S_k = sum_r sin(theta) P_r[a] + cos(theta) Q_r[a]

with ``theta = 2 pi b r / N1``, for ``b < ceil(F / N2)`` only (``F`` bins wanted, at most
``N // 2 + 1``: the real input's other half is never computed). Bins come out in natural
order ``k = N2 b + a``. Multiply-adds per frame: ``2 N N2`` (stage 1) ``+ 4 ceil(F / N2) N1
N2`` (stage 2) against ``2 F K`` for the direct conv (``K`` taps): 33,600 vs 160,800 at
n_fft 400 (``N1 = N2 = 20``), 401,408 vs 4,198,400 at n_fft 2048 (``N1 = 64, N2 = 32``).
Sums are also ~``sqrt(N)`` shorter than the direct conv's, so float32 rounds less.

Reference: Cooley & Tukey, "An algorithm for the machine calculation of complex Fourier
series", Math. Comp. 19 (1965); the polyphase view as in Crochiere & Rabiner, "Multirate
Digital Signal Processing" (1983), ch. 7. Two stages only: a third (mixed radix) would cut
stage 1 further, but each stage is one more pass over the data in the runtimes we target.
"""
from math import gcd
from typing import Dict, Optional, Tuple

import numpy as np

# Use the factorised stages only where they save at least this fraction of the direct conv.
MIN_SAVING = 0.5


def direct_macs(bins: int, taps: int) -> int:
    """Multiply-adds per frame of the direct ``[cos; sin]`` conv: ``2 F K``."""
    return 2 * int(bins) * int(taps)


def factorised_macs(n_fft: int, n1: int, bins: int) -> int:
    """Multiply-adds per frame of the two stages: ``2 N N2 + 4 ceil(F / N2) N1 N2``."""
    n2 = n_fft // n1
    return 2 * n_fft * n2 + 4 * (-(-bins // n2)) * n1 * n2


def dft_split(n_fft: int, hop: int, bins: Optional[int] = None, taps: Optional[int] = None
              ) -> Optional[Tuple[int, int]]:
    """``(N1, N2)`` for frames of ``n_fft`` every ``hop``, or None when the direct conv
    should stay. The rule: ``N1`` ranges over the divisors of ``gcd(hop, n_fft)`` with
    ``N1, N2 >= 2``; the one with the fewest :func:`factorised_macs` wins (ties: the most
    balanced ``N1, N2``, then the larger ``N1``: fewer taps per conv); it is used only if that is at most ``MIN_SAVING`` of
    :func:`direct_macs` (``bins`` defaults to ``n_fft // 2 + 1``, ``taps`` to ``n_fft``).
    E.g. (400, 160) -> (20, 20); (512, 160) -> (32, 16); (2048, 512) -> (64, 32);
    (1024, 256) -> (32, 32); (400, 101) -> None (gcd 1)."""
    n_fft, hop = int(n_fft), int(hop)
    bins = n_fft // 2 + 1 if bins is None else int(bins)
    taps = n_fft if taps is None else int(taps)
    g = gcd(hop, n_fft)
    best = None
    for n1 in range(2, g + 1):
        if g % n1 or n_fft // n1 < 2:
            continue
        key = (factorised_macs(n_fft, n1, bins), abs(n1 - n_fft // n1), -n1)
        best = key if best is None or key < best else best
    if best is None or best[0] > MIN_SAVING * direct_macs(bins, taps):
        return None
    return -best[2], n_fft // -best[2]


def factorised_dft_kernels(window: np.ndarray, n1: int, bins: int) -> Dict[str, np.ndarray]:
    """The two stages for the windowed DFT of frames of ``N = len(window)`` (module
    docstring), ``N1 = n1``, the first ``bins`` bins:

    - ``stage1`` ``(N1 2 N2, 1, N2)``: row ``r 2 N2 + p N2 + a``, tap ``m`` is
      ``v[n] cos(2 pi a n / N)`` (``p = 0``) or ``v[n] sin(2 pi a n / N)`` (``p = 1``),
      ``n = N1 m + r`` (``a n`` reduced modulo ``N`` in integers, so phases stay exact);
    - ``stage2`` ``(2 B2, 2 N1)`` with ``B2 = ceil(bins / N2)``: row ``q B2 + b`` (``q = 0``
      cos part, 1 sin part), column ``2 r + p``.
    """
    v = np.asarray(window, dtype=np.float64)
    n = v.shape[0]
    if n % n1 or n // n1 < 2 or n1 < 2:
        raise ValueError(f"n1 must divide n_fft ({n}) with n_fft / n1 >= 2, got {n1}")
    n2 = n // n1
    rows = -(-int(bins) // n2)
    r = np.arange(n1)[:, None, None]
    a = np.arange(n2)[None, :, None]
    m = np.arange(n2)[None, None, :]
    idx = n1 * m + r                                              # (N1, 1, N2) sample index
    angle = 2 * np.pi * ((a * idx) % n) / n                        # (N1, N2, N2)
    stage1 = np.stack([np.cos(angle), np.sin(angle)], axis=1) * v[idx][:, None]
    b = np.arange(rows)[:, None]
    theta = 2 * np.pi * ((b * np.arange(n1)[None, :]) % n1) / n1   # (B2, N1)
    c, s = np.cos(theta), np.sin(theta)
    stage2 = np.zeros((2, rows, n1, 2))
    stage2[0, :, :, 0], stage2[0, :, :, 1] = c, -s
    stage2[1, :, :, 0], stage2[1, :, :, 1] = s, c
    return {"stage1": stage1.reshape(n1 * 2 * n2, 1, n2),
            "stage2": stage2.reshape(2 * rows, 2 * n1)}


def factorised_dft_apply(signal: np.ndarray, window: np.ndarray, hop: int, n1: int,
                         bins: int) -> np.ndarray:
    """The two stages in numpy (float64), ``[C; S]`` ``(2 bins, T)`` of a 1-D ``signal``:
    the executable statement of the layout the torch layer follows (tests compare it with
    numpy's FFT)."""
    parts = factorised_dft_kernels(window, n1, bins)
    n = len(window)
    n2 = n // n1
    frames = (len(signal) - n) // hop + 1
    used = (frames - 1) * hop + n
    phases = np.asarray(signal[:used], np.float64).reshape(used // n1, n1).T   # (N1, L / N1)
    step = hop // n1
    pos = np.arange(frames)[:, None] * step + np.arange(n2)[None, :]         # (T, N2)
    taps = parts["stage1"].reshape(n1, 2 * n2, n2)
    z = np.einsum("rcm,rtm->rct", taps, phases[:, pos])                       # (N1, 2 N2, T)
    y = parts["stage2"] @ z.reshape(2 * n1, n2 * frames)                       # (2 B2, N2 T)
    y = y.reshape(2, -1, n2, frames).reshape(2, -1, frames)[:, :bins]
    return y.reshape(2 * bins, frames)
