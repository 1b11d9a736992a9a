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
``P_r[a] = Re Z_r[a]`` and ``Q_r[a] = -Im Z_r[a]``.

Real input: since ``exp(-2 pi i N2 n / N) = exp(-2 pi i r / N1)``,
``Z_r[N2 - a] = exp(-2 pi i r / N1) conj(Z_r[a])``, so stage 1 computes only
``a <= N2 / 2`` (``A = N2 // 2 + 1`` values, half the channels of all ``N2``), and the bins
``k = N2 (b + 1) - a`` of the upper ``a`` come from the same ``Z_r[a]``:

    X_{N2 (b+1) - a} = sum_r exp(-2 pi i (b + 1) r / N1) conj(Z_r[a]).

Stage 2 is then one real matrix over ``(r, P|Q)`` shared by every ``a``: rows ``b < B2``
(the "low" bins ``k = a + N2 b``) and rows ``b < BH`` of the conjugated input (the "high"
bins ``k = N2 (b + 1) - a``), each ``theta = 2 pi c r / N1`` (``c = b`` or ``b + 1``):

    C = sum_r cos(theta) P_r - sin(theta) (+-Q_r),   S = sum_r sin(theta) P_r + cos(theta) (+-Q_r)

Its output is a *grid* of ``G = (B2 + BH) A`` rows per part (row ``j A + a``); each of the
first ``F`` bins is one grid row (:func:`grid_index`), the others (duplicates at ``a = 0``
and ``a = N2 / 2``, bins past ``F``) are never read. Only bins below ``F`` (at most
``N // 2 + 1``) are computed: the real input's other half is not.

Multiply-adds per frame (:func:`factorised_macs`): ``2 A N`` (stage 1) ``+ 4 (B2 + BH) N1 A``
(stage 2) against ``2 F K`` for the direct conv (``K`` taps): 27,280 vs 160,800 at n_fft 400
(``N1 = N2 = 20``), 352,512 vs 4,198,400 at n_fft 2048 (``N1 = 64, N2 = 32``). Sums are also
~``sqrt(N)`` shorter than the direct conv's, so float32 rounds less.

Reference: Cooley & Tukey, "An algorithm for the machine calculation of complex Fourier
series", Math. Comp. 19 (1965); the polyphase view as in Crochiere & Rabiner, "Multirate
Digital Signal Processing" (1983), ch. 7; the real-input symmetry as in Sorensen et al.,
"Real-valued fast Fourier transform algorithms", IEEE Trans. ASSP 35 (1987). Two stages only: a third (mixed
radix) would cut stage 1 further, but each stage is one more pass over the data in the
runtimes we target, and those passes, not multiply-adds, bound their time.
"""
from math import gcd
from typing import Dict, Optional, Tuple

import numpy as np

# Use the factorised stages only where they save at least this fraction of the direct conv.
MIN_SAVING = 0.5


def direct_macs(bins: int, taps: int) -> int:
    """Multiply-adds per frame of the direct ``[cos; sin]`` conv: ``2 F K``."""
    return 2 * int(bins) * int(taps)


def grid_rows(n_fft: int, n1: int, bins: int) -> Tuple[int, int, int]:
    """``(A, B2, BH)`` of the stage-2 grid (module docstring): ``A = N2 // 2 + 1`` stage-1
    values of ``a``; ``B2 = ceil(F / N2)`` low rows (bins ``a + N2 b``); ``BH`` high rows
    (bins ``N2 (b + 1) - a``, ``1 <= a <= (N2 - 1) // 2``), as many as reach below ``F``."""
    n2 = int(n_fft) // int(n1)
    return n2 // 2 + 1, -(-int(bins) // n2), (int(bins) - 1 + (n2 - 1) // 2) // n2


def grid_index(n_fft: int, n1: int, bins: int) -> np.ndarray:
    """For each bin ``k < F``, its row ``j A + a`` in the stage-2 grid (``int64``, ``(F,)``):
    ``a = k mod N2 <= N2 / 2`` is low row ``j = k // N2``; otherwise ``a = N2 - k mod N2``
    on high row ``j = B2 + k // N2``."""
    n2 = int(n_fft) // int(n1)
    a_count, low, _ = grid_rows(n_fft, n1, bins)
    k = np.arange(int(bins))
    a, b = k % n2, k // n2
    high = a >= a_count
    return np.where(high, (low + b) * a_count + (n2 - a), b * a_count + a).astype(np.int64)


def grid_rows_of(bins: np.ndarray, index: np.ndarray, grid: int) -> np.ndarray:
    """Rows ``[cos; sin]`` ``(2 F, r)`` in natural bin order -> the same rows placed on the
    stage-2 grid ``(2 G, r)`` (bin ``k`` at row ``index[k]`` of each part; other rows 0)."""
    f, r = bins.shape[0] // 2, bins.shape[1]
    out = np.zeros((2, grid, r))
    out[:, index] = bins.reshape(2, f, r)
    return out.reshape(2 * grid, r)


def factorised_macs(n_fft: int, n1: int, bins: int) -> int:
    """Multiply-adds per frame of the two stages: ``2 A N + 4 (B2 + BH) N1 A``
    (:func:`grid_rows`)."""
    a_count, low, high = grid_rows(n_fft, n1, bins)
    return 2 * a_count * int(n_fft) + 4 * (low + high) * int(n1) * a_count


def dft_split(n_fft: int, hop: int, bins: Optional[int] = None, taps: Optional[int] = None
              ) -> Optional[Tuple[int, int]]:
    """``(N1, N2)`` for frames of ``n_fft`` every ``hop``, or None when the direct conv
    should stay. The rule: ``N1`` ranges over the divisors of ``gcd(hop, n_fft)`` with
    ``N1 >= N2 >= 2``; the one with the fewest :func:`factorised_macs` wins (ties: the
    larger ``N1``); it is used only if that is at most ``MIN_SAVING`` of
    :func:`direct_macs` (``bins`` defaults to ``n_fft // 2 + 1``, ``taps`` to ``n_fft``).
    E.g. (400, 160) -> (20, 20); (512, 160) -> (32, 16); (2048, 512) -> (64, 32);
    (1024, 256) -> (32, 32); (400, 101) -> None (gcd 1).

    Why ``N2 <= N1`` (stage 1's sums no longer than stage 2's): float32 rounding, measured
    against float64 on tones 80 dB down. Splits with longer stage-1 sums have fewer
    multiply-adds but round more: (16, 25) put whisper_80's log-mel 7.3e-5 from float64
    (its tolerance is 5e-5) and a 400-point bin 3.3e-4 off (the direct conv: 2.5e-4),
    where (20, 20) gives 1.75e-4; (32, 64) at n_fft 2048 was 1.6e-4, (64, 32) 1.8e-4."""
    n_fft, hop = int(n_fft), int(hop)
    bins = n_fft // 2 + 1 if bins is None else int(bins)
    taps = n_fft if taps is None else int(taps)
    g = gcd(hop, n_fft)
    best = None
    for n1 in range(2, g + 1):
        if g % n1 or n_fft // n1 < 2 or n_fft // n1 > n1:
            continue
        key = (factorised_macs(n_fft, n1, bins), -n1)
        best = key if best is None or key < best else best
    if best is None or best[0] > MIN_SAVING * direct_macs(bins, taps):
        return None
    return -best[1], n_fft // -best[1]


def factorised_dft_kernels(window: np.ndarray, n1: int, bins: int) -> Dict[str, np.ndarray]:
    """The two stages for the windowed DFT of frames of ``N = len(window)`` (module
    docstring), ``N1 = n1``, the first ``bins`` bins (``A, B2, BH`` of :func:`grid_rows`):

    - ``stage1`` ``(N1 2 A, 1, N2)``: row ``r 2 A + p A + a``, tap ``m`` is
      ``v[n] cos(2 pi a n / N)`` (``p = 0``) or ``v[n] sin(2 pi a n / N)`` (``p = 1``),
      ``n = N1 m + r`` (``a n`` reduced modulo ``N`` in integers, so phases stay exact);
    - ``stage2`` ``(2 (B2 + BH), 2 N1)``: row ``q (B2 + BH) + j`` (``q = 0`` cos part, 1 sin
      part; ``j < B2`` low row ``b = j``, else high row ``b = j - B2``), column ``2 r + p``;
    - ``index`` ``(bins,)``: :func:`grid_index`.
    """
    v = np.asarray(window, dtype=np.float64)
    n = v.shape[0]
    if n % n1 or n // n1 < 2 or n1 < 2:
        raise ValueError(f"n1 must divide n_fft ({n}) with n_fft / n1 >= 2, got {n1}")
    n2 = n // n1
    a_count, low, high = grid_rows(n, n1, bins)
    r = np.arange(n1)[:, None, None]
    a = np.arange(a_count)[None, :, None]
    idx = n1 * np.arange(n2)[None, None, :] + r                    # (N1, 1, N2) sample index
    angle = 2 * np.pi * ((a * idx) % n) / n                        # (N1, A, N2)
    stage1 = np.stack([np.cos(angle), np.sin(angle)], axis=1) * v[idx][:, None]
    c = np.concatenate([np.arange(low), np.arange(1, high + 1)])[:, None]   # low b, high b + 1
    sign = np.concatenate([np.ones(low), -np.ones(high)])[:, None]          # conj: Q -> -Q
    theta = 2 * np.pi * ((c * np.arange(n1)[None, :]) % n1) / n1  # (B2 + BH, N1)
    cos, sin = np.cos(theta), np.sin(theta)
    stage2 = np.zeros((2, low + high, n1, 2))
    stage2[0, :, :, 0], stage2[0, :, :, 1] = cos, -sin * sign
    stage2[1, :, :, 0], stage2[1, :, :, 1] = sin, cos * sign
    return {"stage1": stage1.reshape(n1 * 2 * a_count, 1, n2),
            "stage2": stage2.reshape(2 * (low + high), 2 * n1),
            "index": grid_index(n, n1, bins)}


def factorised_dft_apply(signal: np.ndarray, window: np.ndarray, hop: int, n1: int,
                         bins: int) -> np.ndarray:
    """The two stages in numpy (float64), ``[C; S]`` ``(2 bins, T)`` of a 1-D ``signal``:
    the executable statement of the layout the torch layer follows (tests compare it with
    numpy's FFT)."""
    parts = factorised_dft_kernels(window, n1, bins)
    n = len(window)
    n2 = n // n1
    a_count = grid_rows(n, n1, bins)[0]
    frames = (len(signal) - n) // hop + 1
    used = (frames - 1) * hop + n
    phases = np.asarray(signal[:used], np.float64).reshape(used // n1, n1).T   # (N1, L / N1)
    step = hop // n1
    pos = np.arange(frames)[:, None] * step + np.arange(n2)[None, :]         # (T, N2)
    taps = parts["stage1"].reshape(n1, 2 * a_count, n2)
    z = np.einsum("rcm,rtm->rct", taps, phases[:, pos])                       # (N1, 2 A, T)
    grid = parts["stage2"] @ z.reshape(2 * n1, a_count * frames)             # (2 (B2+BH), A T)
    grid = grid.reshape(2, -1, frames)                                        # rows j A + a
    return grid[:, parts["index"]].reshape(2 * bins, frames)
