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
"Real-valued fast Fourier transform algorithms", IEEE Trans. ASSP 35 (1987).

Stage 2 in two steps (three stages in all, :func:`stage2_radix`): stage 2 is a full
``N1``-point DFT over the phases (the low rows are ``Y_b``, the high rows
``conj(Y_{N1 - b - 1})``), dense, ``4 N1^2`` multiply-adds per ``a``; with ``N1 = U V`` and
``r = V h + l`` it splits (Cooley-Tukey again) into ``U``-point DFTs over ``h`` for each ``l``,
the twiddle ``exp(-2 pi i c_a r / N1)`` folded in, then ``V``-point DFTs over ``l`` for each
``c_a = c mod U``: ``4 N1 (U + V)`` (4,096 instead of 16,640 at ``N1 = 64``). It pays only
where stage 2's GEMM is compute-bound: at ``N1 = 64`` (n_fft 2048, hop 512) ONNX Runtime ran
stage 2 and the power in 15.1 ms instead of 18.8 (8 x 431 frames, 2 threads, interleaved
medians of 30, 2026-12-04); at ``N1 <= 32`` the dense stage 2 is memory-bound and stays
(whisper_80's ``N1 = 20`` split 5 x 4 as below: ORT 29.1 -> 28.7 ms at 2 threads, 48.5 ->
45.7 at 1, 2026-12-04 20:20, with its float32 rounding changed: not taken).

The layout needs no transpose between the steps (:func:`radix_stage2_kernels`): the phases
enter stage 1 in ``(l, h)`` order (:func:`radix_phase_order`; a block swap of the polyphase
signal, which is ``2 A`` times smaller than stage 1's output), so each ``l`` is one batch of
the first step; the first step writes its rows ``(P'|Q', c_a)``, so ``(l, P'|Q')`` are the
leading rows of one matrix whose columns are ``(c_a, a, t)``; and with ``V`` even the
second step is the same ``V``-point DFT for every ``c_a`` (whether a bin is a conjugated
high one depends on ``c_b`` alone), one matrix over all columns. ONNX Runtime spent 4.7 of
~24 ms of n_fft 2048 on the two transposes this replaces (2 threads, 2026-12-04); moving the
phases with one 4-D permutation instead of the block swap cost 10 ms more.
"""
from math import gcd
from typing import Dict, Optional, Tuple

import numpy as np

# Use the factorised stages only where they save at least this fraction of the direct conv.
MIN_SAVING = 0.5
# Stage 2 splits in two (three stages in all) from this many phases on (module docstring).
RADIX_MIN_N1 = 64


def direct_macs(bins: int, taps: int) -> int:
    """Multiply-adds per frame of the direct ``[cos; sin]`` conv: ``2 F K``."""
    return 2 * int(bins) * int(taps)


def grid_rows(n_fft: int, n1: int, bins: int) -> Tuple[int, int, int]:
    """``(A, B2, BH)`` of the stage-2 grid (module docstring): ``A = N2 // 2 + 1`` stage-1
    values of ``a``; ``B2 = ceil(F / N2)`` low rows (bins ``a + N2 b``); ``BH`` high rows
    (bins ``N2 (b + 1) - a``, ``1 <= a <= (N2 - 1) // 2``), as many as reach below ``F``."""
    n2 = int(n_fft) // int(n1)
    return n2 // 2 + 1, -(-int(bins) // n2), (int(bins) - 1 + (n2 - 1) // 2) // n2


def bin_coordinates(n_fft: int, n1: int, bins: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each bin ``k < F``: ``(a, b, high)`` with ``k = a + N2 b`` (low, ``a <= N2 / 2``)
    or ``k = N2 (b + 1) - a`` (high: from the conjugate of ``Z_r[a]``), ``b = k // N2``."""
    n2 = int(n_fft) // int(n1)
    a_count = grid_rows(n_fft, n1, bins)[0]
    k = np.arange(int(bins))
    high = k % n2 >= a_count
    return np.where(high, n2 - k % n2, k % n2), k // n2, high


def grid_index(n_fft: int, n1: int, bins: int) -> np.ndarray:
    """For each bin ``k < F``, its row ``j A + a`` in the stage-2 grid (``int64``, ``(F,)``):
    a low bin (:func:`bin_coordinates`) is on row ``j = b``, a high one on ``j = B2 + b``."""
    a_count, low, _ = grid_rows(n_fft, n1, bins)
    a, b, high = bin_coordinates(n_fft, n1, bins)
    return (np.where(high, low + b, b) * a_count + a).astype(np.int64)


def grid_rows_of(bins: np.ndarray, index: np.ndarray, grid: int) -> np.ndarray:
    """Rows ``[cos; sin]`` ``(2 F, r)`` in natural bin order -> the same rows placed on the
    stage-2 grid ``(2 G, r)`` (bin ``k`` at row ``index[k]`` of each part; other rows 0)."""
    f, r = bins.shape[0] // 2, bins.shape[1]
    out = np.zeros((2, grid, r))
    out[:, index] = bins.reshape(2, f, r)
    return out.reshape(2 * grid, r)


def stage2_radix(n1: int) -> Optional[Tuple[int, int]]:
    """``(U, V)`` to split stage 2 into ``U``-point then ``V``-point DFTs (``U V = N1``,
    ``U`` the largest divisor ``<= sqrt(N1)`` that leaves ``V`` even, so that the second
    step is one matrix: module docstring), or None to keep it one dense matrix: for
    ``N1 < RADIX_MIN_N1`` or when ``U < 4``. E.g. 64 -> (8, 8), 128 -> (8, 16)."""
    n1 = int(n1)
    if n1 < RADIX_MIN_N1:
        return None
    u = int(np.floor(np.sqrt(n1)))
    while u >= 4 and (n1 % u or (n1 // u) % 2):
        u -= 1
    return (u, n1 // u) if u >= 4 else None


def factorised_macs(n_fft: int, n1: int, bins: int, split_stage2: bool = True) -> int:
    """Multiply-adds per frame: ``2 A N`` (stage 1) plus ``4 (B2 + BH) N1 A`` (stage 2,
    :func:`grid_rows`) or, split (:func:`stage2_radix`, unless ``split_stage2=False``),
    ``4 N1 (U + V) A``."""
    a_count, low, high = grid_rows(n_fft, n1, bins)
    radix = stage2_radix(n1) if split_stage2 else None
    stage2 = 4 * int(n1) * sum(radix) if radix else 4 * (low + high) * int(n1)
    return 2 * a_count * int(n_fft) + stage2 * a_count


def radix_phase_order(n1: int, u: int, v: int) -> np.ndarray:
    """The phases ``r = V h + l`` in the order the split stage 2 reads them, ``(l, h)``:
    ``order[l U + h] = V h + l`` (``int64``, ``(N1,)``)."""
    return (v * np.arange(u)[None, :] + np.arange(v)[:, None]).reshape(int(n1)).astype(np.int64)


def radix_stage2_kernels(n1: int, u: int, v: int) -> Dict[str, np.ndarray]:
    """Stage 2 as two matrices (module docstring; phases ``r = V h + l`` in ``(l, h)``
    order, outputs ``c = c_a + U c_b``, ``V`` even), on values ``P - i Q`` (rows
    ``(.., P|Q)``):

    - ``stage2a`` ``(V, 2U, 2U)``: for each ``l``, rows ``(P'|Q', c_a)``, columns
      ``(h, P|Q)``: ``exp(-i phi) (P - i Q)`` with ``phi = 2 pi c_a r / N1`` (the ``U``-point
      DFT over ``h`` and the twiddle in one angle);
    - ``stage2b`` ``(2V, 2V)``, the same for every ``c_a``: rows ``(c_b, C|S)``, columns
      ``(l, P'|Q')``: ``Y_c = sum_l exp(-2 pi i c_b l / V) T_l``, written ``C = Re Y``,
      ``S = -Im Y`` for ``c < N1 / 2`` (low bins ``X = Y``) and ``S = +Im Y`` from
      ``N1 / 2`` on, i.e. from ``c_b = V / 2`` on (high bins ``X = conj(Y)``; at
      ``c = N1 / 2`` the low row is read only at ``a = 0``, where ``Y`` is real).
    """
    if v % 2:
        raise ValueError(f"the split stage 2 needs an even V (stage2_radix), got {u} x {v}")
    h = np.arange(u)[None, None, :]
    l_ = np.arange(v)[:, None, None]
    c_a = np.arange(u)[None, :, None]
    phi = 2 * np.pi * ((c_a * (v * h + l_)) % n1) / n1                    # (V l, U c_a, U h)
    a = np.zeros((v, 2, u, u, 2))
    a[:, 0, :, :, 0], a[:, 0, :, :, 1] = np.cos(phi), -np.sin(phi)
    a[:, 1, :, :, 0], a[:, 1, :, :, 1] = np.sin(phi), np.cos(phi)
    c_b = np.arange(v)[:, None]
    psi = 2 * np.pi * ((c_b * np.arange(v)[None, :]) % v) / v             # (V c_b, V l)
    sign = np.where(c_b >= v // 2, -1.0, 1.0)
    b = np.zeros((v, 2, v, 2))
    b[:, 0, :, 0], b[:, 0, :, 1] = np.cos(psi), -np.sin(psi)
    b[:, 1, :, 0], b[:, 1, :, 1] = sign * np.sin(psi), sign * np.cos(psi)
    return {"stage2a": a.reshape(v, 2 * u, 2 * u), "stage2b": b.reshape(2 * v, 2 * v)}


def radix_grid_index(n_fft: int, n1: int, bins: int, u: int, v: int) -> np.ndarray:
    """For each bin ``k < F``, its row ``(c_b U + c_a) A + a = c A + a`` in the split stage
    2's power grid (``N1 A`` rows): ``c = b`` for a low bin (``k = a + N2 b``),
    ``c = N1 - b - 1`` for a high one (``k = N2 (b + 1) - a``), ``c = c_a + U c_b``. Before
    the power, each ``c_b`` holds its ``C`` then its ``S`` rows: part ``p`` of row ``g`` is
    row ``g + (c_b + p) U A`` of the ``(c_b, C|S, c_a, a)`` output (:func:`radix_part_index`)."""
    a_count = grid_rows(n_fft, n1, bins)[0]
    a, b, high = bin_coordinates(n_fft, n1, bins)
    c = np.where(high, n1 - b - 1, b)
    return (c * a_count + a).astype(np.int64)


def radix_part_index(index: np.ndarray, u: int, a_count: int) -> np.ndarray:
    """:func:`radix_grid_index` -> the rows ``[C; S]`` ``(2 F,)`` in the split stage 2's
    output, whose rows are ``(c_b, C|S, c_a, a)``."""
    block = int(u) * int(a_count)
    c_b = np.asarray(index) // block
    return np.concatenate([index + c_b * block, index + (c_b + 1) * block]).astype(np.int64)


def dft_split(n_fft: int, hop: int, bins: Optional[int] = None, taps: Optional[int] = None
              ) -> Optional[Tuple[int, int]]:
    """``(N1, N2)`` for frames of ``n_fft`` every ``hop``, or None when the direct conv
    should stay. The rule: ``N1`` ranges over the divisors of ``gcd(hop, n_fft)`` with
    ``N1 >= N2 >= 2``; the one with the fewest two-stage :func:`factorised_macs` wins
    (ties: the larger ``N1``; stage 2 is split afterwards where :func:`stage2_radix` says,
    which is not counted here: the splits were measured as two stages); it is used only if
    that is at most ``MIN_SAVING`` of :func:`direct_macs` (``bins`` defaults to
    ``n_fft // 2 + 1``, ``taps`` to ``n_fft``).
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
        key = (factorised_macs(n_fft, n1, bins, split_stage2=False), -n1)
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


def stage1_frame_matrix(stage1: np.ndarray, n1: int, step: int) -> np.ndarray:
    """Stage 1 as one matrix per phase for the GPU layout: ``(N1, 2 A, K step)``, the
    ``(N1 2 A, 1, N2)`` grouped-conv kernel of :func:`factorised_dft_kernels` with its taps
    zero-padded to ``K step`` (``K = ceil(N2 / step)``, ``step = hop / N1``). Phase ``r`` of
    frame ``t`` is then the ``K`` blocks ``t .. t + K - 1`` of ``step`` samples of the phase
    signal, stacked (a reshape of the padded signal and ``K`` slices), and stage 1 is one
    batched MatMul: a GEMM with ``K step`` terms per output, which cuBLAS runs 1.6-2.9x
    faster than cuDNN's direct grouped conv (H200, batch 64, torch eager, TF32 off,
    2026-12-04: whisper_80 1.32 vs 2.15 ms, n_fft 2048 0.82 vs 2.39 ms). On a CPU the MatMul
    itself costs what the grouped conv does, but stacking the blocks does not (ONNX Runtime,
    2 threads, whisper_80 8 x 30 s: the 4-D transpose 19.9 ms, slices and concat 8.3 ms; the
    whole graph 57.2 vs 30.6 ms), so it is the 'cuda' target's only."""
    rows, _, n2 = stage1.shape
    k = -(-int(n2) // int(step))
    out = np.zeros((int(n1), rows // int(n1), k * int(step)))
    out[:, :, :n2] = stage1.reshape(int(n1), rows // int(n1), n2)
    return out


def stage1_remainder_columns(stage2: np.ndarray, bins: np.ndarray, index: np.ndarray,
                             a_count: int) -> np.ndarray:
    """A low-rank remainder ``bins @ s`` (Kaldi's, :func:`~nnaudio_export.kernels.kaldi.
    kaldi_dft_parts`: ``bins`` ``(2 F, r)`` in natural bin order, ``s`` ``(r, T)`` per frame)
    carried by stage 1: columns ``c`` ``(N1, 2 A, r)`` such that stage 2 maps ``c s`` onto the
    remainder at every gathered grid row, so ``s`` can ride as ``r`` extra rows of stage 1's
    stacked input instead of an outer product added to the output. For each grid column
    ``a`` the rows of ``stage2`` ``(2 (B2 + BH), 2 N1)`` that the bins are gathered from are
    solved in least squares (float64); the remainder is a DFT of real frame patterns, so the
    system is consistent there (the residual is checked: ``ValueError`` beyond 1e-9 relative).
    Grid rows that are never gathered (a bin's duplicate) may differ."""
    rows = stage2.shape[0]
    grid = rows // 2 * a_count
    on_grid = grid_rows_of(np.asarray(bins, np.float64), index, grid).reshape(rows, a_count, -1)
    gathered = np.zeros((2, grid), bool)
    gathered[:, index] = True
    gathered = gathered.reshape(rows, a_count)
    n1 = stage2.shape[1] // 2
    out = np.zeros((n1, 2, a_count, on_grid.shape[-1]))
    for a in range(a_count):
        used = gathered[:, a]
        if not used.any() or on_grid.shape[-1] == 0:
            continue
        cols, *_ = np.linalg.lstsq(stage2[used], on_grid[used, a], rcond=None)
        residual = np.abs(stage2[used] @ cols - on_grid[used, a]).max()
        if residual > 1e-9 * max(float(np.abs(on_grid[:, a]).max()), 1e-300):
            raise ValueError(f"the remainder is not in stage 2's range at grid column {a} "
                             f"(residual {residual:.3g})")
        out[:, :, a] = cols.reshape(n1, 2, -1)
    return out.reshape(n1, 2 * a_count, -1)


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
    radix = stage2_radix(n1)
    if radix is None:
        grid = parts["stage2"] @ z.reshape(2 * n1, a_count * frames)         # (2 (B2+BH), A T)
        grid = grid.reshape(2, -1, frames)                                    # rows j A + a
        return grid[:, parts["index"]].reshape(2 * bins, frames)
    u, v = radix
    split = radix_stage2_kernels(n1, u, v)
    z = z[radix_phase_order(n1, u, v)]                                        # phases (l, h)
    z = split["stage2a"] @ z.reshape(v, 2 * u, -1)                            # (V l, (P'|Q', c_a), A T)
    y = split["stage2b"] @ z.reshape(2 * v, -1)                               # ((c_b, C|S), (c_a, A, T))
    index = radix_grid_index(n, n1, bins, u, v)
    part = radix_part_index(index, u, a_count)
    return y.reshape(2 * n1 * a_count, frames)[part]
