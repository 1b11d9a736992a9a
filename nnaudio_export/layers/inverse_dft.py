"""How a spectrum becomes windowed time frames (an inverse real DFT times the window): the
"decoder" half of :class:`~nnaudio_export.layers.iSTFT`, chosen at construction like
:mod:`~nnaudio_export.layers.frame_conv` chooses how a kernel bank is applied.

- :class:`FactoredIRFFT`: two stages of small DFTs (``N = P Q``, Cooley-Tukey) as two
  matmuls on the spectrum's own layout (:func:`~nnaudio_export.kernels.inverse.irfft_factors`):
  about ``2 (P + Q) N`` multiply-adds per frame instead of ``2 F N`` (8x fewer at n_fft
  1024), shorter sums (less float32 rounding), the window folded into the second stage.
  Used whenever it saves at least half (n_fft 400, 511, 512, 1024, 2048, ...) with frozen
  kernels and window.
- :class:`ThreeStageIRFFT`: three stages (``N = P Q1 Q2``,
  :func:`~nnaudio_export.kernels.inverse.irfft_three_stage`), the last one producing
  hop-long blocks that it overlap-adds like the two-stage one: used instead of it where it
  needs at most 0.7 of the multiply-adds (:func:`~nnaudio_export.kernels.inverse.three_stage_saves`;
  n_fft 1024, hop 256: ``16 x 8 x 8``, 81,920 per frame instead of 135,168).
- :class:`MatrixIRFFT`: one matmul with the ``(N + 2, N)`` matrix of
  :func:`~nnaudio_export.kernels.inverse.irfft_matrix`, then the window: for trainable
  kernels (the matrix is the parameter, as nnAudio's) or window, and sizes the
  factorisation does not help.

All take the spectrum ``(B, F, T, 2)`` (real, imag) and return ``w[n] irfft(X_t)[n]``
``(B, T, n_fft)``, or with ``overlap_added`` those frames overlap-added ``hop_length`` apart
(the factored ones without forming them when their leading factors divide the hop), and
hold the window as ``window`` (for the iSTFT's envelope).
"""
from typing import Any, Dict, List, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import functional as FN
from ..kernels.inverse import (edge_bin_blocks, factor_pair, factored_irfft_saves, irfft_factors,
                               irfft_macs, irfft_matrix, irfft_three_stage, overlap_blocks,
                               stage2_blocks, three_stage_saves)
from .common import kernel_tensor, register_kernel


class MatrixIRFFT(nn.Module):
    """``[Re X_t, Im X_t] @ kernel`` with the inverse real-DFT matrix, times the window
    (each trainable or not)."""

    method = "matrix"

    def __init__(self, n_fft: int, window: np.ndarray, normalized: bool, trainable_kernels: bool,
                 trainable_window: bool, dtype: torch.dtype, hop_length: int = 1):
        super().__init__()
        self.bins = n_fft // 2 + 1
        self.hop_length = hop_length
        self.fuses_overlap_add = False
        register_kernel(self, "kernel", irfft_matrix(n_fft, normalized), trainable_kernels, dtype)
        register_kernel(self, "window", window, trainable_window, dtype)

    def describe(self) -> Dict[str, Any]:
        return {"method": self.method, "n_fft": int(self.kernel.shape[1]), "hop": self.hop_length,
                "factors": None, "macs_per_frame": int(self.kernel.shape[0] * self.kernel.shape[1])}

    def forward(self, x: Tensor) -> Tensor:
        z = x.permute(0, 2, 3, 1).reshape(x.size(0), x.size(2), 2 * self.bins)   # (B, T, 2F)
        return torch.matmul(z, self.kernel) * self.window

    def overlap_added(self, x: Tensor) -> Tensor:
        """``(B, F, T, 2)`` -> the overlap-add of the windowed frames ``(B, N + hop (T - 1))``."""
        return FN.overlap_add(self.forward(x), self.hop_length)


class FactoredIRFFT(nn.Module):
    """The two-stage windowed inverse real DFT of
    :func:`~nnaudio_export.kernels.inverse.irfft_factors` (frozen constants).

    ``forward`` returns the frames ``(B, T, N)``. When ``P`` divides the hop,
    :meth:`overlap_added` also overlap-adds them without ever storing them time-major
    (reordering ``(B, P, Q, T)`` stage-2 output to ``(B, T, N)`` was ~45 % of ONNX Runtime's
    time): the input's frames are extended by ``R`` zero frames (in the pad that already
    completes the bins' rows), stage 2's rows are ordered by the sample's offset ``d'`` in
    its hop-long block, then by the block ``r``, giving ``(B, P, D, R, T + R)``, and the
    ``R`` blocks' shifted sum is one strided read (a slice of each ``d'`` group, reshaped
    with a row stride of ``T + R - 1``) and one ``ReduceSum``. Only the overlap-added
    signal (``N / hop`` times smaller) is reordered, in two transposes that each move one
    axis (ORT is slow at general 4-D permutations). There the DC / Nyquist half-weights
    are a small correction of the sum (an ``R``-tap conv over the two bins) instead of a
    pass over the input.

    Measured (ORT 1.32 CPU, 2 threads, n_fft 1024, hop 256, 8 x 862 frames, kernel time per
    node): the shifted sum was a split, 4 pads and 3 adds (~9 ms of ~45), now a slice and
    a ``ReduceSum`` (~5-6 ms); padding the bins on the ``(B, 2, F, T)`` transpose cost 6-7 ms
    as on the interleaved layout, and on ``(B, F, T, 2)`` itself (ORT copies pairs) 59 ms.
    What remains is memory-bound: the two matmuls (~13-15 + ~11-12 ms), one pad and one
    transpose of the input (~6-8.6 + ~4.5-5 ms). Leaving the Nyquist bin to the edge correction
    (512 = 16 x 32 bins, no bin padding) measured no faster and changed float32 rounding
    enough to move a chaotic Griffin-Lim item, so it stays in the sums.
    """

    method = "factored"

    def __init__(self, n_fft: int, window: np.ndarray, normalized: bool, dtype: torch.dtype,
                 hop_length: int = 0):
        super().__init__()
        self.p, self.q = factor_pair(n_fft)
        self.n_fft = n_fft
        self.bins = n_fft // 2 + 1
        self.rows = -(-self.bins // self.q)
        parts = irfft_factors(n_fft, window, normalized)
        self.register_buffer("bin_scale", kernel_tensor(parts["bin_scale"][:, None], dtype))
        self.register_buffer("stage1", kernel_tensor(parts["stage1"], dtype))
        self.register_buffer("stage2", kernel_tensor(parts["stage2"], dtype))
        self.register_buffer("window", kernel_tensor(window, dtype))
        self.hop_length = hop_length
        self.block_rows, self.blocks = overlap_blocks(n_fft, self.p, hop_length) if hop_length > 0 else (0, 0)
        fused = self.blocks > 0
        self.fuses_overlap_add = fused
        self.register_buffer("stage2_blocks", kernel_tensor(
            stage2_blocks(parts["stage2"], hop_length, offset_major=True) if fused else np.zeros(0), dtype))
        self.register_buffer("edge_taps", kernel_tensor(
            edge_taps(edge_bin_blocks(window, hop_length, normalized), self.blocks) if fused
            else np.zeros(0), dtype))

    def describe(self) -> Dict[str, Any]:
        return {"method": self.method, "n_fft": self.n_fft, "hop": self.hop_length,
                "factors": [self.p, self.q],
                "macs_per_frame": irfft_macs(self.n_fft, self.hop_length, (self.p, self.q))}

    def _stage1(self, x: Tensor, extra_frames: int = 0) -> Tensor:
        """``(B, F, T, 2)`` -> the stage-1 output ``(B, P, 2Q, T + extra_frames)``: rows
        ``(c, Re | Im A, b)``, the extra frames 0 (the input laid out by :func:`bins_first`)."""
        width = x.size(2) + extra_frames
        x = bins_first(x, self.rows * self.q, extra_frames, self.rows)
        return torch.matmul(self.stage1, x).reshape(x.size(0), self.p, 2 * self.q, width)

    def forward(self, x: Tensor) -> Tensor:
        b, t = x.size(0), x.size(2)
        y = self._stage1(x * self.bin_scale.unsqueeze(-1))
        y = torch.matmul(self.stage2, y)                                   # (B, P, Q, T): [c, d, t]
        return y.permute(0, 3, 2, 1).reshape(b, t, self.n_fft)             # n = c + P d

    def overlap_added(self, x: Tensor) -> Tensor:
        """``(B, F, T, 2)`` -> the overlap-add of the windowed frames: ``(B, (T + R - 1) hop)``
        fused, else :func:`~nnaudio_export.functional.overlap_add`'s ``(B, N + hop (T - 1))``."""
        if not self.fuses_overlap_add:
            return FN.overlap_add(self.forward(x), self.hop_length)
        b, t, r_blocks = x.size(0), x.size(2), self.blocks
        m = t + r_blocks - 1                                               # M blocks out
        y = self._stage1(x, r_blocks)                                      # DC / Nyquist at weight 2 / N
        frames = torch.matmul(self.stage2_blocks, y)                       # (B, P, D R, T + R): [c, (d', r), t]
        out = shifted_sum(frames.reshape(b, self.p, self.block_rows, r_blocks * (t + r_blocks)), r_blocks)
        out = out.transpose(1, 2).reshape(b, self.hop_length, m)          # (B, P, D, M) -> rows j = c + P d'
        out = out + edge_correction(x, self.n_fft // 2, self.edge_taps, r_blocks)
        return out.transpose(1, 2).reshape(b, m * self.hop_length)


class ThreeStageIRFFT(nn.Module):
    """The three-stage windowed inverse real DFT of
    :func:`~nnaudio_export.kernels.inverse.irfft_three_stage` (frozen constants), overlap-adding
    its hop-long blocks as :class:`FactoredIRFFT` does (``P Q1`` divides the hop).

    Three MatMuls on the layouts they produce, no reorder between them: stage 1 on the
    padded, re / im-first input (as the two-stage one) gives ``(B, P, (Re | Im, b1), (b2, t))``;
    stage 2 (per ``c``) gives ``(B, P, (d1, Re | Im), (b2, t))``, which is
    ``(B, P, Q1, (Re | Im, b2), t)`` as it lies; stage 3 (per ``(c, d1)``) gives the blocks
    ``(B, P, Q1, (d', r), t)``, summed shifted by the strided read and ``ReduceSum`` of
    :meth:`FactoredIRFFT.overlap_added`. The input's pad also crops the Nyquist bin where
    ``N / 2`` bins fill the rows (it is added by the edge correction instead): one Pad op.

    Measured (ONNX Runtime 1.32 CPU, 2 cores, istft_1024, 8 items of 862 frames an item a call,
    caches flushed): 17.0 ms against the two-stage one's 21.4 at 2 threads, 27.0 against 37.0
    at 1; in ORT's steady-state profile of one item at 1 thread (``scripts/profile_onnx.py``,
    warm-up calls left out) the three MatMuls take 2.1 of 3.2 ms of kernels, the input's pad
    and transpose 0.4.
    """

    method = "factored"
    fuses_overlap_add = True

    def __init__(self, n_fft: int, window: np.ndarray, normalized: bool, dtype: torch.dtype,
                 hop_length: int, factors: Tuple[int, int, int]):
        super().__init__()
        self.p, self.q1, self.q2 = factors
        self.n_fft, self.hop_length = n_fft, hop_length
        self.bins = n_fft // 2 + 1
        parts = irfft_three_stage(n_fft, window, factors, hop_length, normalized)
        self.bins_read = int(parts["bins"])
        self.rows = int(parts["stage1"].shape[1] // 2)
        self.block_rows, self.blocks = parts["blocks"]
        for name in ("stage1", "stage2", "stage3"):
            self.register_buffer(name, kernel_tensor(parts[name], dtype))
        self.register_buffer("edge_taps", kernel_tensor(edge_taps(parts["edge"], self.blocks), dtype))
        self.register_buffer("window", kernel_tensor(window, dtype))

    def extra_repr(self) -> str:
        return (f"factors={factors_text(self.describe())}, hop_length={self.hop_length}, "
                f"bins_read={self.bins_read}")

    def describe(self) -> Dict[str, Any]:
        return {"method": self.method, "n_fft": self.n_fft, "hop": self.hop_length,
                "factors": [self.p, self.q1, self.q2],
                "macs_per_frame": irfft_macs(self.n_fft, self.hop_length, (self.p, self.q1, self.q2))}

    def _blocks(self, x: Tensor) -> Tensor:
        """``(B, F, T, 2)`` -> stage 3's blocks ``(B, P, Q1, D R, T + R)`` (rows ``(d', r)``;
        the input's frames extended by ``R`` zero frames)."""
        b, width = x.size(0), x.size(2) + self.blocks
        x = bins_first(x, self.rows * self.q1 * self.q2, self.blocks, self.rows)
        y = torch.matmul(self.stage1, x).reshape(b, self.p, 2 * self.q1, self.q2 * width)
        y = torch.matmul(self.stage2, y).reshape(b, self.p, self.q1, 2 * self.q2, width)
        return torch.matmul(self.stage3, y)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, F, T, 2)`` -> the windowed frames ``(B, T, N)``: block ``(d', r)`` holds
        ``n = c + P d1 + P Q1 d' + hop r``."""
        b, t, r = x.size(0), x.size(2), self.blocks
        y = self._blocks(x)[..., :t].reshape(b, self.p, self.q1, self.block_rows, r, t)
        y = y.permute(0, 5, 4, 3, 2, 1).reshape(b, t, r * self.hop_length)
        return y[:, :, : self.n_fft] + self._edge_frames(x)

    def _edge_frames(self, x: Tensor) -> Tensor:
        """``(B, T, N)``: the edge correction of each frame by itself (the taps' rows)."""
        b, t, r = x.size(0), x.size(2), self.blocks
        v = torch.stack([x[:, 0, :, 0], x[:, self.n_fft // 2, :, 0]], dim=2)      # (B, T, 2)
        taps = self.edge_taps.flip(-1).permute(1, 2, 0).reshape(2, r * self.hop_length)
        return torch.matmul(v, taps)[:, :, : self.n_fft]

    def overlap_added(self, x: Tensor) -> Tensor:
        """``(B, F, T, 2)`` -> the overlap-add of the windowed frames ``(B, (T + R - 1) hop)``."""
        b, t, r = x.size(0), x.size(2), self.blocks
        m = t + r - 1
        y = self._blocks(x).reshape(b, self.p, self.q1, self.block_rows, r * (t + r))
        # (B, P, Q1, D, M) -> (B, D, Q1, P, M): rows j = c + P d1 + P Q1 d'
        out = shifted_sum(y, r).permute(0, 3, 2, 1, 4)
        out = out.reshape(b, self.hop_length, m) + edge_correction(x, self.n_fft // 2, self.edge_taps, r)
        return out.transpose(1, 2).reshape(b, m * self.hop_length)


def factors_text(plan: Dict[str, Any]) -> str:
    """``"16x8x8"``: the ``factors`` of an inverse DFT's ``describe()`` (``""`` for the matrix)."""
    return "x".join(str(f) for f in plan["factors"] or [])


def bins_first(x: Tensor, bins: int, extra_frames: int, rows: int) -> Tensor:
    """``(B, F, T, 2)`` -> ``(B, 2 rows, (bins / rows) (T + extra_frames))``: the first
    ``bins`` bins (zero-padded, or the Nyquist bin cropped, by the same ``Pad``), the frames
    extended by ``extra_frames`` zeros, re / im moved in front: rows ``(Re | Im, a)``,
    columns ``(b, t)`` for bin ``k = (bins / rows) a + b``. Padded on the interleaved layout,
    where each bin is one contiguous run of ``2T`` values (ORT pads that 10x faster than
    ``(T, 2)`` pairs); then one single-axis transpose."""
    b, f, t = x.size(0), x.size(1), x.size(2)
    width = t + extra_frames
    x = F.pad(x.reshape(b, f, 2 * t), [0, 2 * extra_frames, 0, bins - f])
    x = x.reshape(b, bins, width, 2).permute(0, 3, 1, 2)                  # (B, 2, bins, T')
    return x.reshape(b, 2 * rows, (bins // rows) * width)


def shifted_sum(blocks: Tensor, r_blocks: int) -> Tensor:
    """``(..., R (T + R))``, each group of ``R`` rows ``r`` of ``T + R`` columns (the last
    ``R`` zero), -> ``(..., T + R - 1)``: ``sum_r row_r[m - r]``. Block ``r`` of frame ``t``
    lands at output block ``m = t + r``: the group read with a row stride of ``T + R - 1``
    (row ``r`` shifted by ``r``; the zero columns fill the ends) and one ``ReduceSum``, where
    ``R`` shifted slices and adds were ~1.6x slower in ONNX Runtime."""
    width = blocks.size(-1) // r_blocks
    lead: List[int] = list(blocks.shape[:-1])
    rows = blocks[..., : r_blocks * (width - 1)].reshape(lead + [r_blocks, width - 1])
    return rows.sum(-2)


def edge_correction(x: Tensor, nyquist: int, taps: Tensor, r_blocks: int) -> Tensor:
    """``(B, hop, M)``: ``[j, m] = sum_{u, r} v_u[m - r] E[(u, r), j]`` for the real parts
    ``v`` of the spectrum ``x``'s ``(B, F, T, 2)`` DC and ``nyquist`` (``n_fft // 2``) bins
    (0 outside the frames) and the conv ``taps`` of :func:`edge_taps` (rows ``j``): one
    ``R``-tap conv (one op where shifted slices were ``R``: graph optimisers match slices
    pairwise)."""
    v = torch.stack([x[:, 0, :, 0], x[:, nyquist, :, 0]], dim=1)          # (B, 2, T)
    return F.conv1d(F.pad(v, [r_blocks - 1, r_blocks - 1]), taps)


def edge_taps(blocks: np.ndarray, r_blocks: int) -> np.ndarray:
    """:func:`~nnaudio_export.kernels.inverse.edge_bin_blocks` ``E`` ``(2R, hop)`` as conv
    taps ``(hop, 2, R)``: ``W[j, u, R - 1 - r] = E[(u, r), j]`` (a conv over the two bins
    padded by ``R - 1`` reads ``v_u[m - r]`` at tap ``R - 1 - r``)."""
    hop = blocks.shape[1]
    return np.ascontiguousarray(blocks.reshape(2, r_blocks, hop)[:, ::-1, :].transpose(2, 0, 1))


def irfft_module(n_fft: int, window: np.ndarray, normalized: bool, trainable_kernels: bool,
                 trainable_window: bool, dtype: torch.dtype = torch.float32,
                 hop_length: int = 0) -> nn.Module:
    """The factored inverse DFT when it saves at least half and nothing trains: three stages
    where :func:`~nnaudio_export.kernels.inverse.three_stage_saves` finds a split for the hop,
    else two (overlap-adding its own frames when ``P`` divides ``hop_length``); else the
    matrix (its ``kernel`` and ``window`` are the parameters that train)."""
    if not (trainable_kernels or trainable_window) and factored_irfft_saves(n_fft):
        triple = three_stage_saves(n_fft, hop_length)
        if triple is not None:
            return ThreeStageIRFFT(n_fft, window, normalized, dtype, hop_length, triple)
        return FactoredIRFFT(n_fft, window, normalized, dtype, hop_length)
    return MatrixIRFFT(n_fft, window, normalized, trainable_kernels, trainable_window, dtype,
                       max(1, hop_length))
