"""The factorised windowed DFT of :mod:`nnaudio_export.kernels.factorised_dft` as torch ops:
a way to apply a frozen ``[cos; sin]`` DFT kernel bank, picked by
:func:`~nnaudio_export.layers.frame_conv.frame_conv` at build time.

Ops only (every runtime has them, no ``DFT``/``STFT`` op, no complex tensors, no ``Gather``
framing, no 2-D conv): Pad, Reshape/Transpose (the polyphase split of the signal), one
grouped ``conv1d`` (stage 1), one ``MatMul`` (stage 2; from ``N1 = 64`` on two
``MatMul``s with no transpose between them, the phases entering stage 1 reordered by a block
swap, :func:`~nnaudio_export.kernels.factorised_dft.stage2_radix`), and one ``Gather`` of
the ``F`` bins' rows out of the stage-2 grid (a copy of the output, in place of a slice). Same input
and output as the direct conv: ``(B, 1, L)`` -> ``[cos; sin]`` ``(B, 2 F, T)``,
``T = (L - n_fft) // hop + 1``; and :meth:`FactorisedDFT.squared`, ``|X|^2`` ``(B, F, T)``
summed on the grid before the gather (one square, one sum, one gather: ONNX Runtime spent
~13 of ~48 ms of whisper_80 on the slice, split, square and add it replaces).
"""
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import functional as FN
from ..checks import require_choice
from ..kernels.factorised_dft import (direct_macs, factorised_dft_kernels, factorised_macs, grid_rows,
                                      grid_rows_of, radix_grid_index, radix_part_index, radix_phase_order,
                                      radix_stage2_kernels, stage1_frame_matrix, stage1_remainder_columns,
                                      stage2_radix)
from .common import kernel_tensor

# The devices a graph can be laid out for (:class:`FactorisedDFT`'s ``target``).
TARGETS = ("cpu", "cuda")
# The layouts whose stage 2 is split where stage2_radix says. Not 'cuda': on an H200 the split
# (then with two transposes) took 3.83 ms against 2.84 dense (n_fft 2048, batch 64); the
# transpose-free split works there too (tests) but is not yet timed on a GPU
# (scripts/gpu_probe_split.py times both).
SPLIT_STAGE2_TARGETS = ("cpu",)


class FactorisedDFT(nn.Module):
    """``[cos; sin]`` windowed DFT of frames ``x[t hop : t hop + n_fft]`` in two stages
    (``n_fft = n1 n2``, ``n1`` dividing ``hop``): a grouped conv per phase (``a <= n2 / 2``
    only: the real input's symmetry), one matmul across phases onto a grid of bins (or,
    for ``n1 >= 64`` without a Kaldi remainder, ``U``- then ``V``-point DFTs across them:
    :meth:`split_stage2`), one gather of the bins in natural order. ``window`` (length ``n_fft``) is folded into stage 1. ``taps``: frames
    of ``taps <= n_fft`` samples zero-padded to ``n_fft`` (Kaldi); the input is then padded
    on the right by ``n_fft - taps`` zeros so the frame count is the direct conv's.

    Kaldi's folded kernels (:func:`~nnaudio_export.kernels.kaldi.kaldi_dft_parts`) add two
    optional parts: ``preemphasis`` ``c`` (the DFT then runs on ``x[n] - c x[n-1]``, a
    2-tap conv, the signal extended by one zero on the left) and a rank-``r`` remainder
    ``correction_bins @ conv1d(x_e, correction_taps, hop)`` (``r`` <= 2: DC removal, and
    pre-emphasis at the frame's first sample), added to the stages' output (on a MatMul
    stage 1: carried as ``r`` extra rows of its input, :meth:`stage1_matmul`).

    Precision 'extended' is this module with float64 kernels (``dtype=torch.float64``) on
    float32 input: stage 1's stacked phase blocks are cast to float64 (with Kaldi's pre-emphasis
    the phases, which it then runs on: :meth:`phase_blocks`), both stages (and Kaldi's parts) run in float64, and the stage-2
    output is rounded to float32 once, so each bin carries one float32 rounding of its own
    value (1.4e-7 relative 80 dB below the peak, against 1.4-1.8e-4 for 'single' and ~2e-6
    for the error-free split conv it replaced). Stage 1 is then a MatMul
    (``stage1_matmul=True``: ONNX Runtime's CPU Conv is float32 only), the pre-emphasis a
    subtraction and the remainder frames times taps. On a float64 input nothing is rounded.

    ``target``: the device the arithmetic is laid out for (the same numbers either way, to
    float32 rounding). 'cpu': stage 1 a grouped conv, stage 2 split where
    :func:`~nnaudio_export.kernels.factorised_dft.stage2_radix` says. 'cuda': stage 1 a
    batched MatMul on stacked blocks of the phase signal
    (:func:`~nnaudio_export.kernels.factorised_dft.stage1_frame_matrix`; cuDNN's direct
    grouped conv was the GPU's slowest kernel) and stage 2 one dense MatMul (split, n_fft 2048
    took 3.83 ms on an H200 against 2.84 dense: the GPU's GEMM is not the bound, the split's
    two transposes were; the split has none since, not yet timed on a GPU)."""

    precision = "single"
    method = "factorised"

    def __init__(self, window: np.ndarray, hop: int, bins: int, n1: int,
                 taps: Optional[int] = None, dtype: torch.dtype = torch.float32,
                 preemphasis: float = 0.0, correction_taps: Optional[np.ndarray] = None,
                 correction_bins: Optional[np.ndarray] = None, target: str = "cpu",
                 stage1_matmul: Optional[bool] = None):
        super().__init__()
        require_choice(target, "target", TARGETS)
        self.target = target
        # float64 kernels on float32 input: precision 'extended' (see forward)
        self.precision = "extended" if dtype == torch.float64 else "single"
        window = np.asarray(window, dtype=np.float64)
        self.n_fft = int(window.shape[0])
        self.n1 = int(n1)
        self.n2 = self.n_fft // self.n1
        self.hop = int(hop)
        self.step = self.hop // self.n1
        self.bins = int(bins)
        self.a_count, low, high = grid_rows(self.n_fft, self.n1, self.bins)
        self.taps = self.n_fft if taps is None else int(taps)
        self.pad_right = self.n_fft - self.taps
        parts = factorised_dft_kernels(window, self.n1, self.bins)
        # Stage 2 split in two where it pays (kernels.factorised_dft.stage2_radix); Kaldi's
        # remainder is placed on the two-stage grid, so a correction keeps two stages.
        radix = stage2_radix(self.n1) if correction_bins is None and target in SPLIT_STAGE2_TARGETS else None
        self.u, self.v = radix if radix else (0, 0)
        split = radix_stage2_kernels(self.n1, self.u, self.v) if radix else {"stage2a": np.zeros(0),
                                                                           "stage2b": np.zeros(0)}
        self.grid = (self.n1 if radix else low + high) * self.a_count     # stage-2 rows per part
        # the phase order stage 2 reads: the split's (l, h), else as they are
        order = radix_phase_order(self.n1, self.u, self.v) if radix else np.arange(self.n1, dtype=np.int64)
        stage1 = parts["stage1"].reshape(self.n1, -1)[order].reshape(parts["stage1"].shape)
        self.register_buffer("stage1", kernel_tensor(stage1, dtype))
        # stage 1 as a MatMul over `blocks` stacked blocks of `step` samples: 'cuda', and
        # float64 (ONNX Runtime's CPU Conv is float32 only)
        matmul = target == "cuda" if stage1_matmul is None else bool(stage1_matmul)
        matrix = stage1_frame_matrix(stage1, self.n1, self.step) if matmul else np.zeros(0)
        self.blocks = int(matrix.shape[-1]) // self.step if matmul else 0
        # Kaldi's remainder rides on a MatMul stage 1 as `rank` extra rows of its stacked input
        # instead of an outer product added to stage 2's output (4.7 of kaldi_fbank_80's 42 ms
        # at 'extended'; kernels.factorised_dft.stage1_remainder_columns)
        self.folded = bool(matmul and correction_bins is not None and correction_bins.shape[1] > 0)
        if self.folded:
            matrix = np.concatenate([matrix, stage1_remainder_columns(
                parts["stage2"], correction_bins, parts["index"], self.a_count)], axis=2)
        self.register_buffer("stage1_matrix", kernel_tensor(matrix, dtype))
        self.register_buffer("phase_order", torch.from_numpy(order))   # phase_blocks
        self.register_buffer("stage2", kernel_tensor(np.zeros(0) if radix else parts["stage2"], dtype))
        self.register_buffer("stage2a", kernel_tensor(split["stage2a"], dtype))
        self.register_buffer("stage2b", kernel_tensor(split["stage2b"], dtype))
        index = radix_grid_index(self.n_fft, self.n1, self.bins, self.u, self.v) if radix else parts["index"]
        self.register_buffer("index", torch.from_numpy(index))
        # [cos; sin] rows of the bins in stage 2's output viewed as (B, 2 G, T)
        part_index = radix_part_index(index, self.u, self.a_count) if radix else \
            np.concatenate([index, index + self.grid])
        self.register_buffer("part_index", torch.from_numpy(part_index))
        self.preemphasis = float(preemphasis)
        self.register_buffer("prefilter", kernel_tensor(np.array([[[-self.preemphasis, 1.0]]]), dtype))
        taps_e = np.zeros((0, self.taps + 1)) if correction_taps is None else correction_taps
        bins_e = np.zeros((2 * self.bins, 0)) if correction_bins is None else correction_bins
        bins_e = grid_rows_of(bins_e, index, self.grid)[:, :0 if self.folded else None]   # added on the grid
        self.rank = int(taps_e.shape[0])
        # float64 (frames times taps): taps zero-padded to whole blocks of `hop`, so the
        # frames need no cut (a copy)
        width = -(-taps_e.shape[1] // self.hop) * self.hop if dtype == torch.float64 else taps_e.shape[1]
        self.correction_pad = int(width - taps_e.shape[1])
        taps_e = np.pad(taps_e, [(0, 0), (0, self.correction_pad)])
        self.register_buffer("correction_taps", kernel_tensor(taps_e[:, None, :], dtype))
        self.register_buffer("correction_bins", kernel_tensor(bins_e, dtype))

    def forward(self, x: Tensor, kernel: Tensor, stride: int) -> Tensor:
        """``[cos; sin]`` ``(B, 2 F, T)`` (``kernel``, ``stride``: the direct conv's, unused),
        in ``x``'s dtype: float64 kernels on float32 input compute in float64 and round the
        stage-2 output once (precision 'extended')."""
        y = self.stage2_output(x).to(x.dtype)
        return torch.index_select(y.reshape(y.size(0), 2 * self.grid, y.size(-1)), 1, self.part_index)

    def squared(self, x: Tensor, kernel: Tensor, stride: int) -> Tensor:
        """``|X|^2 = C^2 + S^2`` ``(B, F, T)``, summed on the grid, then gathered."""
        y = self.stage2_output(x).to(x.dtype)
        if self.u > 0:   # split: rows (c_b, C|S, c_a, a)
            power = (y * y).sum(2).reshape(y.size(0), self.grid, y.size(-1))
        else:
            power = (y * y).sum(1)
        return torch.index_select(power, 1, self.index)

    def stage2_output(self, x: Tensor) -> Tensor:
        """``(B, 1, L)`` -> stage 2's output with Kaldi's pre-emphasis and low-rank remainder:
        ``(B, 2, G, T)`` (parts ``[cos; sin]`` of the grid), or split (:meth:`split_stage2`)
        ``(B, V, 2, U A, T)``; in the kernels' dtype."""
        z = self.stage1_output(x)
        b, t = z.size(0), z.size(2)
        if self.u > 0:
            return self.split_stage2(z)
        y = torch.matmul(self.stage2, z.reshape(b, 2 * self.n1, self.a_count * t))  # (B, 2 (B2+BH), A T)
        if self.rank > 0 and not self.folded:
            y = y.reshape(b, 2 * self.grid, t) + torch.matmul(self.correction_bins,
                                                              self.correction(x.to(self.stage1.dtype)))
        return y.reshape(b, 2, self.grid, t)

    def preemphasised(self, x: Tensor) -> Tensor:
        """``x[n] - c x[n-1]`` (Kaldi's pre-emphasis, ``x[-1] = 0``), or ``x``. float64: as
        a subtraction (ONNX Runtime has no float64 Conv on the CPU)."""
        if self.preemphasis == 0.0:
            return x
        if x.dtype == torch.float64:
            return x - self.preemphasis * F.pad(x, [1, 0])[:, :, :-1]
        return F.conv1d(F.pad(x, [1, 0]), self.prefilter)

    def preemphasised_phases(self, phases: Tensor) -> Tensor:
        """:meth:`preemphasised` on the polyphase signal ``(B, N1, L / N1)``: the sample
        before phase ``r`` is phase ``r - 1``'s, before phase 0 phase ``N1 - 1``'s one step
        earlier (0 at the start). Here rather than on the signal so that nothing but the
        cast sits between stage 1's two transposes (a cast before them let ONNX Runtime
        merge them into the slow 4-D one: 9.6 ms of kaldi_fbank_80_lhotse's ~55, 8 x 10 s).
        The zeros padded past the last frame become ``-c x[L - 1]``; they meet zero taps only."""
        if self.preemphasis == 0.0:
            return phases
        previous = torch.cat([F.pad(phases[:, -1:, :-1], [1, 0]), phases[:, :-1]], dim=1)
        return phases - self.preemphasis * previous

    def correction(self, x: Tensor) -> Tensor:
        """The rank-``r`` remainder's taps on frames of ``x`` extended by one zero on the
        left, ``(B, r, T)``: a strided conv, or in float64 frames times the taps as matmul
        rows (no float64 Conv in ONNX Runtime's CPU provider)."""
        if x.dtype == torch.float64:
            return FN.frames_matmul(F.pad(x, [1, self.correction_pad]), self.correction_taps, self.hop)
        return F.conv1d(F.pad(x, [1, 0]), self.correction_taps, stride=self.hop)

    def stage1_output(self, x: Tensor) -> Tensor:
        """Stage 1 on ``(B, 1, L)`` (pre-emphasis included): the grouped conv of the
        polyphase signal (or :meth:`stage1_matmul`), ``(B, N1 2 A, T)``, rows ``(r, P|Q,
        a)``, in the kernels' dtype."""
        remainder: Optional[Tensor] = None
        if self.folded:
            remainder = self.correction(x.to(self.stage1.dtype))
        if x.dtype == self.stage1.dtype or self.blocks == 0:
            x = self.preemphasised(x.to(self.stage1.dtype))
        # else (float64 kernels on a MatMul stage 1): cast and pre-emphasis on the phases
        b = x.size(0)
        if self.pad_right > 0:
            x = F.pad(x, [0, self.pad_right])
        if self.blocks > 0:
            return self.stage1_matmul(x, remainder)
        length = x.size(-1)
        used = ((length - self.n_fft) // self.hop) * self.hop + self.n_fft
        if used < length:  # samples past the last frame (fewer than hop): not in any frame
            x = x[:, :, :used]
        phases = x.reshape(b, used // self.n1, self.n1).transpose(1, 2)      # (B, N1, L / N1)
        return F.conv1d(self.split_order(phases), self.stage1, stride=self.step, groups=self.n1)

    def split_order(self, phases: Tensor) -> Tensor:
        """``(B, N1, ...)`` with the phases ``r = V h + l`` moved to ``(l, h)`` order when
        stage 2 is split (a swap of contiguous blocks), else as given."""
        if self.u == 0:
            return phases
        b = phases.size(0)
        return phases.reshape(b, self.u, self.v, -1).transpose(1, 2).reshape(phases.shape)

    def stage1_matmul(self, x: Tensor, remainder: Optional[Tensor] = None) -> Tensor:
        """Stage 1 as one batched MatMul (the 'cuda' target, and float64 kernels): the signal, cut or zero-padded
        to ``T - 1 + K`` blocks of ``hop`` samples, viewed as ``(B, N1, step, blocks)``
        (phase ``r``, sample ``q`` of each ``step``-sample block of that phase); frame ``t``'s
        phase ``r`` is blocks ``t .. t + K - 1``, stacked by ``K`` slices into ``(B, N1, K
        step, T)``, times :func:`~nnaudio_export.kernels.factorised_dft.stage1_frame_matrix`.
        The zero-padded samples meet only the matrix's zero taps. ``remainder`` ``(B, r, T)``:
        Kaldi's remainder taps on each frame, stacked below the blocks for every phase."""
        b, length = x.size(0), x.size(-1)
        frames = (length - self.n_fft) // self.hop + 1
        count = frames - 1 + self.blocks
        need = count * self.hop
        if need <= length:
            x = x[:, :, :need]
        else:
            x = F.pad(x, [0, need - length])
        if x.dtype == self.stage1_matrix.dtype:
            blocks = self.split_order(x.reshape(b, count, self.step, self.n1).permute(0, 3, 2, 1))  # (B, N1, step, T - 1 + K)
        else:
            blocks = self.phase_blocks(x, count)
        parts = [blocks[:, :, :, j:j + frames] for j in range(self.blocks)]
        if remainder is not None:
            parts.append(remainder.unsqueeze(1).expand(b, self.n1, remainder.size(1), frames))
        stacked = torch.cat(parts, dim=2)
        return torch.matmul(self.stage1_matrix, stacked.to(self.stage1_matrix.dtype)).reshape(b, -1, frames)

    def phase_blocks(self, x: Tensor, count: int) -> Tensor:
        """:meth:`stage1_matmul`'s ``(B, N1, step, count)`` blocks for float64 kernels on
        float32 input, by two 3-D transposes with one op between them: without it ONNX Runtime
        merges them into one 4-D transpose, 18.5 ms against 5.6 (float64, whisper_80 8 x 30 s,
        2 threads). That op is a Gather of the phases in the order stage 2 reads them (the
        split's, or as they are): the blocks then stay float32 until the stacked signal is cast
        (exact), 78.8 -> 69.7 ms for whisper_80 against casting before them. With Kaldi's
        pre-emphasis, which must round in float64, the cast and the pre-emphasis on the phases
        are that op."""
        b = x.size(0)
        phases = x.reshape(b, count * self.step, self.n1).transpose(1, 2)          # (B, N1, L / N1)
        if self.preemphasis != 0.0 or self.folded:   # float64 from here (the remainder rows are)
            phases = self.split_order(self.preemphasised_phases(phases.to(self.stage1_matrix.dtype)))
        else:
            phases = torch.index_select(phases, 1, self.phase_order)
        return phases.reshape(b * self.n1, count, self.step).transpose(1, 2).reshape(b, self.n1, self.step, count)

    def split_stage2(self, z: Tensor) -> Tensor:
        """Stage 2 as ``U``- then ``V``-point DFTs on stage 1's ``(B, N1 2 A, T)`` (phases in
        ``(l, h)`` order): a batched MatMul per ``l`` over ``(h, P|Q)``, then one MatMul over
        ``(l, P'|Q')`` for all ``(c_a, a, t)``; ``(B, V, 2, U A, T)``: rows ``(c_b, C|S,
        c_a, a)``, output ``c = c_a + U c_b``. No transpose: the rows each step contracts
        lead its operand."""
        b, t = z.size(0), z.size(2)
        cols = self.a_count * t
        z = torch.matmul(self.stage2a, z.reshape(b, self.v, 2 * self.u, cols))   # (B, l, (P'|Q', c_a), A T)
        y = torch.matmul(self.stage2b, z.reshape(b, 2 * self.v, self.u * cols))  # (B, (c_b, C|S), (c_a, A, T))
        return y.reshape(b, self.v, 2, self.u * self.a_count, t)

    def stacked_elements(self, frames: int) -> int:
        """Values per batch item of stage 1's stacked blocks (``N1 K step T``, in float32
        units: twice that in float64; 0 for the grouped conv), for the memory estimate."""
        width = 2 if self.stage1_matrix.dtype == torch.float64 else 1
        return width * self.n1 * self.blocks * self.step * int(frames)

    def macs_per_frame(self) -> int:
        """Multiply-adds per frame: the two stages and the Kaldi remainder, if any."""
        padded_taps = self.blocks * self.step - self.n2 if self.blocks > 0 else 0   # 'cuda': zero taps
        remainder = self.rank * (self.taps + 1 + (2 * self.a_count * self.n1 if self.folded else 2 * self.bins))
        return (factorised_macs(self.n_fft, self.n1, self.bins, split_stage2=self.u > 0)
                + 2 * self.a_count * self.n1 * padded_taps + remainder)

    def extra_repr(self) -> str:
        return (f"n_fft={self.n_fft}, n1={self.n1}, n2={self.n2}, target={self.target}, "
                f"stage1={'matmul of %d blocks' % self.blocks if self.blocks else 'grouped conv'}, "
                f"stage2={'%d x %d' % (self.u, self.v) if self.u > 0 else 'dense'}, hop={self.hop}, bins={self.bins}, "
                f"macs_per_frame={self.macs_per_frame()} "
                f"(direct conv {direct_macs(self.bins, self.taps)}), preemphasis={self.preemphasis}, "
                f"correction_rank={self.rank}")
