"""Inverse STFT math (float64 numpy): synthesis kernels, the window-sum envelope of
overlap-add, and where an inverse is defined (NOLA)."""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

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
    :func:`irfft_matrix`: about ``2 (P + Q) N`` against ``2 F N`` per frame."""
    p, q = factor_pair(n_fft)
    return 2 * (p + q) <= n_fft // 2 + 1


def irfft_factors(n_fft: int, window: np.ndarray, normalized: bool = False) -> Dict[str, np.ndarray]:
    """The windowed inverse real DFT ``w[n] irfft(X, n_fft)[n]`` in two stages of small DFTs
    (Cooley-Tukey, ``N = P Q``), reading only the ``F = N // 2 + 1`` one-sided bins. With
    ``k = Q a + b`` and ``n = c + P d`` (``a, c < P``; ``b, d < Q``)::

        w[n] irfft(X)[n] = w[n] Re sum_b e^(2 pi i b n / N) A[c, b],
        A[c, b]          = sum_a g_k X[Q a + b] e^(2 pi i a c / P)

    with ``X`` zero-padded to ``A_rows Q`` bins (``A_rows = ceil(F / Q)``) and
    ``g_k = 2 / N`` (the conjugate half folded in, taking the real part), ``1 / N`` at DC
    and Nyquist (whose imaginary parts drop out, as in ``numpy.fft.irfft``). As arrays:

    - ``bin_scale`` (``F``): 1, and 1/2 at DC and Nyquist (``g_k = bin_scale[k] 2 / N``);
    - ``stage1`` (``2P, 2 A_rows``): rows ``(c, Re | Im A)``, columns ``(Re | Im X, a)``:
      ``stage1 @ [Re X[Q a + b]; Im X[Q a + b]]`` over ``a`` is ``A[c, b]`` (``2 / N``
      folded in; ``normalized``: ``2 / sqrt(N)``, see :func:`_irfft_scale`);
    - ``stage2`` (``P, Q, 2Q``): for each ``c``, rows ``d``, columns ``(Re | Im A, b)``:
      ``w[n] (cos, -sin)(2 pi b n / N)``, so ``stage2[c] @ [Re A[c, :]; Im A[c, :]]`` is the
      windowed frame at ``n = c + P d``.

    About ``2 (P + Q) N`` multiply-adds per frame instead of ``2 F N``, and sums of ``2 A_rows``
    and ``2Q`` terms instead of ``2F`` (less float32 rounding). Reference: Cooley & Tukey
    (1965); the result equals ``window * (z @`` :func:`irfft_matrix` ``)`` and numpy.fft.irfft.
    """
    p, q = factor_pair(n_fft)
    bins = n_fft // 2 + 1
    rows = -(-bins // q)
    bin_scale = np.ones(bins)
    bin_scale[0] = 0.5
    if n_fft % 2 == 0:
        bin_scale[-1] = 0.5
    stage1 = _bin_stage(p, rows, 2.0 * _irfft_scale(n_fft, normalized))
    n = np.arange(p)[:, None, None] + p * np.arange(q)[None, :, None]                # [c, d, 1]
    bn = 2.0 * np.pi * (((np.arange(q)[None, None, :] * n) % n_fft) / n_fft)        # [c, d, b]
    w = np.asarray(window, dtype=np.float64)[n]
    stage2 = np.concatenate([np.cos(bn) * w, -np.sin(bn) * w], axis=2)
    return {"bin_scale": bin_scale, "stage1": stage1, "stage2": stage2}


def _bin_stage(p: int, rows: int, g: float) -> np.ndarray:
    """The first stage of the factored inverses, ``(2P, 2 rows)``: rows ``(c, Re | Im)``,
    columns ``(Re | Im, a)``, the complex product ``g e^(2 pi i a c / P) X`` as real
    ``2 x 2`` blocks (``a c`` reduced modulo ``P`` as integers)."""
    ac = 2.0 * np.pi * ((np.outer(np.arange(p), np.arange(rows)) % p) / p)        # [c, a]
    cos1, sin1 = g * np.cos(ac), g * np.sin(ac)
    stage1 = np.stack([np.stack([cos1, -sin1], axis=1), np.stack([sin1, cos1], axis=1)], axis=1)
    return stage1.reshape(2 * p, 2 * rows)


def overlap_blocks(n_fft: int, p: int, hop_length: int) -> Tuple[int, int]:
    """``(D, R)`` for overlap-adding frames whose sample ``n = c + P d`` (``c < P``) comes
    out of :func:`irfft_factors`' second stage: with ``hop = P D``, sample ``n`` lands at
    ``r hop + j`` of its frame, ``r = d // D`` (the frame's ``R = ceil(Q / D)`` hop-long
    blocks) and ``j = c + P (d mod D)``. ``(0, 0)`` when ``P`` does not divide ``hop``.
    The same for :func:`irfft_three_stage`'s last stage with ``P Q1`` in place of ``P``."""
    q = n_fft // p
    if hop_length % p:
        return 0, 0
    d = hop_length // p
    return d, -(-q // d)


def stage2_blocks(stage2: np.ndarray, hop_length: int, offset_major: bool = False) -> np.ndarray:
    """:func:`irfft_factors`' ``stage2`` ``(P, Q, 2Q)`` with its rows ``d`` zero-padded to
    ``R D`` (:func:`overlap_blocks`), ``(P, R D, 2Q)``: row ``r D + d'`` of ``[c]`` gives the
    frame's sample ``c + P (r D + d')``, which lands in the frame's hop-long block ``r``.
    ``offset_major``: the same rows ordered ``d' R + r`` instead (the ``R`` blocks of one
    offset ``d'`` adjacent, so that their shifted sum is a strided view of one buffer)."""
    p, q, _ = stage2.shape
    d, r = overlap_blocks(p * q, p, hop_length)
    blocks = np.concatenate([stage2, np.zeros((p, r * d - q, 2 * q))], axis=1)
    if offset_major:
        blocks = blocks.reshape(p, r, d, 2 * q).transpose(0, 2, 1, 3).reshape(p, r * d, 2 * q)
    return np.ascontiguousarray(blocks)


def edge_bin_blocks(window: np.ndarray, hop_length: int, normalized: bool = False,
                    nyquist_in_sums: bool = True) -> np.ndarray:
    """The part of the DC and Nyquist bins that :func:`irfft_factors` counts twice when
    ``bin_scale`` is not applied (``g_k = 2 / N`` there instead of ``1 / N``), to subtract
    from the overlap-add, ``(2R, hop)`` with ``R = ceil(N / hop)``::

        E[(u, r), j] = -(g / 2) w[n] s_u[n],   n = r hop + j < N (else 0),

    with ``s_0 = 1`` (DC) and ``s_1 = (-1)^n`` (Nyquist, even ``N``; 0 for odd ``N``),
    ``g / 2 = 1 / N`` (``normalized``: ``1 / sqrt(N)``). With ``v_0[t] = Re X_t[0]``,
    ``v_1[t] = Re X_t[N / 2]``, the correction of output block ``m`` (samples
    ``m hop .. m hop + hop - 1``) is ``sum_{u, r} v_u[m - r] E[(u, r), :]`` (the imaginary
    parts of both bins drop out of ``Re`` by themselves). ``nyquist_in_sums=False``: the
    sums leave the Nyquist bin out (:func:`irfft_three_stage` when ``N / 2`` bins fill its
    rows exactly), so its whole term ``+(1 / N) w[n] (-1)^n`` is added here instead.
    Reference: numpy.fft.irfft's weights (``c_k`` of :func:`irfft_matrix`)."""
    n_fft = np.asarray(window).shape[0]
    r = -(-n_fft // hop_length)
    n = np.arange(r * hop_length).reshape(r, hop_length)
    w = np.concatenate([np.asarray(window, dtype=np.float64), np.zeros(r * hop_length - n_fft)])[n]
    sign = (-1.0) ** n if n_fft % 2 == 0 else np.zeros(n.shape)
    if not nyquist_in_sums:
        sign = -sign
    return -_irfft_scale(n_fft, normalized) * np.concatenate([w, w * sign])


# The three-stage inverse replaces the two-stage one only where the multiply-add count says
# it pays for its extra pass over the frames: at n_fft 1024, hop 256 (0.61 of the
# multiply-adds) it measured 1.26x faster at 2 threads and 1.37x at 1 (ONNX Runtime CPU).
THREE_STAGE_SHARE = 0.7


def nyquist_left_out(n_fft: int, q: int) -> bool:
    """Whether the inverse's sums can leave the Nyquist bin to the edge correction: even
    ``N`` whose ``N / 2`` lower bins fill whole rows of ``q`` (no bin padding at all)."""
    return n_fft % 2 == 0 and (n_fft // 2) % q == 0


def irfft_macs(n_fft: int, hop_length: int, factors: Tuple[int, ...]) -> int:
    """Multiply-adds per frame of the factored inverse with ``factors`` ``(P, Q)``
    (:func:`irfft_factors`; the Nyquist bin in its sums) or ``(P, Q1, Q2)``
    (:func:`irfft_three_stage`), overlap-adding its own hop-long blocks where the product of
    all factors but the last divides ``hop_length`` (``R D`` rows in the last stage, see
    :func:`overlap_blocks`), else (or ``hop_length`` 0) producing whole frames."""
    p, last = factors[0], factors[-1]
    q = int(np.prod(factors[1:]))
    bins = n_fft // 2 if len(factors) == 3 and nyquist_left_out(n_fft, q) else n_fft // 2 + 1
    rows = -(-bins // q)
    lead = n_fft // last
    d, r = overlap_blocks(n_fft, lead, hop_length) if hop_length > 0 else (0, 0)
    rows_last = r * d if r else last
    macs = 2 * p * 2 * rows * q + lead * rows_last * 2 * last
    if len(factors) == 3:
        macs += p * (2 * factors[1]) ** 2 * last
    return macs


def factor_triple(n_fft: int, hop_length: int) -> Optional[Tuple[int, int, int]]:
    """``(P, Q1, Q2)``, each at least 2, ``P Q1 Q2 = n_fft`` and ``P Q1`` dividing
    ``hop_length`` (so the last stage's rows are hop-long blocks), with the fewest
    :func:`irfft_macs`; ties go to the most balanced split, then the larger ``P``
    (n_fft 1024, hop 256: ``16 x 8 x 8``, which measured fastest of the tied splits).
    ``None`` when no split has ``P Q1`` dividing the hop."""
    best = None
    for p in range(2, n_fft + 1):
        if n_fft % p:
            continue
        for q1 in range(2, n_fft // p + 1):
            q2, rem = divmod(n_fft, p * q1)
            if rem or q2 < 2 or hop_length % (p * q1):
                continue
            key = (irfft_macs(n_fft, hop_length, (p, q1, q2)), -min(p, q1, q2), -p)
            if best is None or key < best[0]:
                best = (key, (p, q1, q2))
    return None if best is None else best[1]


def three_stage_saves(n_fft: int, hop_length: int) -> Optional[Tuple[int, int, int]]:
    """The :func:`factor_triple` split when its multiply-adds are at most
    :data:`THREE_STAGE_SHARE` of the two-stage inverse's (:func:`factor_pair`), else ``None``."""
    triple = factor_triple(n_fft, hop_length) if hop_length > 0 else None
    if triple is None:
        return None
    two = irfft_macs(n_fft, hop_length, factor_pair(n_fft))
    return triple if irfft_macs(n_fft, hop_length, triple) <= THREE_STAGE_SHARE * two else None


def irfft_three_stage(n_fft: int, window: np.ndarray, factors: Tuple[int, int, int],
                      hop_length: int, normalized: bool = False) -> Dict[str, Any]:
    """The windowed inverse real DFT in three stages of small DFTs, the last one producing
    hop-long blocks to overlap-add (mixed-radix Cooley-Tukey, ``N = P Q1 Q2``, ``Q = Q1 Q2``,
    ``P Q1`` dividing the hop). With ``k = Q a + Q2 b1 + b2`` and
    ``n = c + P d1 + P Q1 d2`` (``a, c < P``; ``b1, d1 < Q1``; ``b2, d2 < Q2``)::

        A[c, b]        = sum_a g X[Q a + b] e^(2 pi i a c / P)                      (stage 1)
        B[c, d1, b2]   = sum_b1 A[c, Q2 b1 + b2] e^(2 pi i b1 (c + P d1) / (P Q1))  (stage 2)
        w[n] irfft(X)[n] = w[n] Re sum_b2 B[c, d1, b2] e^(2 pi i b2 n / N)          (stage 3)

    (``k n / N = a c / P + Q2 b1 (c + P d1) / (P Q1) + b2 n / N`` modulo integers; stage 1
    is :func:`irfft_factors`' with ``Q`` for its second factor, ``g = 2 / N``). The bins read
    are the lower ``N / 2`` when they fill whole rows of ``Q`` (:func:`nyquist_left_out`:
    the Nyquist bin then goes to the edge correction, no bin padding), else all ``F``,
    zero-padded to ``rows Q``. As arrays:

    - ``stage1`` (``2P, 2 rows``): rows ``(c, Re | Im)``, columns ``(Re | Im, a)``;
    - ``stage2`` (``P, 2 Q1, 2 Q1``): for each ``c``, rows ``(d1, Re | Im)``, columns
      ``(Re | Im, b1)``: the complex product as a real ``2 x 2`` block;
    - ``stage3`` (``P, Q1, R D, 2 Q2``): for each ``(c, d1)``, rows ``(d', r)`` (offset
      major, :func:`stage2_blocks`; ``hop = P Q1 D``, ``d2 = r D + d'``, zero rows past
      ``Q2``), columns ``(Re | Im, b2)``: ``w[n] (cos, -sin)(2 pi b2 n / N)``;
    - ``edge`` (``2R, hop``): :func:`edge_bin_blocks` for these sums; ``bins`` and
      ``blocks`` ``(D, R)``.

    The phases are integers reduced modulo their period before scaling (exact in float64).
    Reference: Cooley & Tukey (1965); the overlap-add equals that of
    ``w * numpy.fft.irfft`` frames."""
    p, q1, q2 = factors
    q = q1 * q2
    bins = n_fft // 2 if nyquist_left_out(n_fft, q) else n_fft // 2 + 1
    rows = -(-bins // q)
    stage1 = _bin_stage(p, rows, 2.0 * _irfft_scale(n_fft, normalized))
    lead = p * q1
    c, d1, b1 = np.arange(p)[:, None, None], np.arange(q1)[None, :, None], np.arange(q1)[None, None, :]
    theta = 2.0 * np.pi * (((b1 * (c + p * d1)) % lead) / lead)                      # [c, d1, b1]
    cos2, sin2 = np.cos(theta), np.sin(theta)
    stage2 = np.stack([np.stack([cos2, -sin2], axis=2), np.stack([sin2, cos2], axis=2)], axis=2)
    n = (np.arange(p)[:, None, None] + p * np.arange(q1)[None, :, None]
         + lead * np.arange(q2)[None, None, :])                                      # [c, d1, d2]
    phase = 2.0 * np.pi * (((n[..., None] * np.arange(q2)) % n_fft) / n_fft)        # [c, d1, d2, b2]
    w = np.asarray(window, dtype=np.float64)[n][..., None]
    stage3 = np.concatenate([np.cos(phase) * w, -np.sin(phase) * w], axis=3)
    d, r = overlap_blocks(n_fft, lead, hop_length)
    stage3 = np.concatenate([stage3, np.zeros((p, q1, r * d - q2, 2 * q2))], axis=2)
    stage3 = stage3.reshape(p, q1, r, d, 2 * q2).transpose(0, 1, 3, 2, 4).reshape(p, q1, r * d, 2 * q2)
    return {"stage1": stage1, "stage2": stage2.reshape(p, 2 * q1, 2 * q1),
            "stage3": np.ascontiguousarray(stage3), "bins": bins, "blocks": (d, r),
            "edge": edge_bin_blocks(window, hop_length, normalized, nyquist_in_sums=bins > n_fft // 2)}


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
