"""Stages for production frontends beyond the librosa-style chain: whole-signal pre-emphasis
(NeMo), repeat-padding (CLAP), and the Kaldi fbank transform (folded per-frame kernel with
Kaldi frame positions and edge reflection). Only ``F.pad``, ``conv1d``, ``index_select``,
``cat`` and elementwise ops, so every runtime runs them."""
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import functional as FN
from .kernels.kaldi import (kaldi_edge_indices, kaldi_fbank_kernels, kaldi_num_frames)
from .layers._base import as_kernel
from .layers._conv import frame_conv
from .stages import Shape, Stage


class PreEmphasisStage(Stage):
    """Whole-signal pre-emphasis on (B, 1, L) audio: ``y[0] = x[0]``,
    ``y[n] = x[n] - c x[n-1]`` (NeMo ``FilterbankFeatures``), as a 2-tap conv1d after one
    zero of left padding."""

    def __init__(self, coefficient: float):
        super().__init__()
        self.register_buffer("kernel", as_kernel(np.array([[[-float(coefficient), 1.0]]]), False))

    def forward(self, x: Tensor) -> Tensor:
        return F.conv1d(F.pad(x, [1, 0], mode="constant", value=0.0), self.kernel)


class RepeatPadStage(Stage):
    """CLAP's 'repeatpad' on (B, 1, L) audio: tile the clip ``int(length / L)`` times, then
    zero-pad to ``length`` (transformers ``ClapFeatureExtractor``); identity when L == length."""

    def __init__(self, in_samples: int, length: int):
        super().__init__()
        if in_samples > length:
            raise ValueError(f"num_samples {in_samples} is longer than length {length}: "
                             "the reference crops at random there (not reproducible)")
        self.repeats = int(length / in_samples)
        self.pad = int(length) - self.repeats * int(in_samples)
        self.length = int(length)

    def out_shape(self, in_shape: Shape) -> Shape:
        return (1, self.length)

    def forward(self, x: Tensor) -> Tensor:
        if self.repeats > 1:
            x = x.repeat(1, 1, self.repeats)
        if self.pad > 0:
            x = F.pad(x, [0, self.pad], mode="constant", value=0.0)
        return x


class PadToMultipleStage(Stage):
    """Pad the time axis with ``value`` up to a multiple of ``multiple`` frames (NeMo
    ``pad_to``)."""

    def __init__(self, multiple: int, value: float, in_frames: int):
        super().__init__()
        self.multiple = int(multiple)
        self.value = float(value)
        self.pad = (-int(in_frames)) % self.multiple

    def out_shape(self, in_shape: Shape) -> Shape:
        return tuple(in_shape[:-1]) + (in_shape[-1] + self.pad,)

    def forward(self, x: Tensor) -> Tensor:
        if self.pad > 0:
            return F.pad(x, [0, self.pad], mode="constant", value=self.value)
        return x


class KaldiSTFTStage(Stage):
    """Kaldi fbank's power spectrum (B, n_fft // 2 + 1, frames) of (B, 1, L) audio.

    DC removal, pre-emphasis (x[-1] := x[0]), window and zero-padding to ``n_fft`` are one
    linear map per frame, folded in float64 into the conv kernels
    (:func:`~nnaudio_export.kernels.kaldi.kaldi_fbank_kernels`); one strided conv1d gives
    real and imaginary parts. ``snip_edges=False``: the signal is extended with constant
    index buffers (Kaldi's edge reflection, edge sample repeated) so frame f starts at
    ``hop f + hop // 2 - L // 2``. Dither is not supported (inference: dither 0).
    ``precision`` 'single' | 'extended' as for :class:`~nnaudio_export.layers.STFT`.
    """

    def __init__(self, num_samples: int, win_length: int, hop_length: int, window: str,
                 remove_dc_offset: bool, preemphasis: float, round_to_power_of_two: bool,
                 snip_edges: bool, precision: str = "single"):
        super().__init__()
        if win_length <= 0 or hop_length <= 0:
            raise ValueError(f"win_length/hop_length must be positive, got {win_length}/{hop_length}")
        if num_samples < win_length:
            raise ValueError(f"num_samples {num_samples} is shorter than win_length {win_length}")
        kern, n_fft = kaldi_fbank_kernels(win_length, window, remove_dc_offset, preemphasis,
                                          round_to_power_of_two)
        self.register_buffer("kernel", as_kernel(kern[:, None, :], False))
        self.conv = frame_conv(kern[:, None, :], precision, False)
        self.n_fft = int(n_fft)
        self.n_bins = self.n_fft // 2 + 1
        self.hop_length = int(hop_length)
        self.frames = kaldi_num_frames(num_samples, win_length, hop_length, snip_edges)
        self.snip_edges = bool(snip_edges)
        left = np.zeros(0, dtype=np.int64)
        right = np.zeros(0, dtype=np.int64)
        start = 0
        if not snip_edges:
            left, right, start = kaldi_edge_indices(num_samples, win_length, hop_length)
        self.register_buffer("left_index", torch.from_numpy(left))
        self.register_buffer("right_index", torch.from_numpy(right))
        self.n_left = int(left.shape[0])
        self.n_right = int(right.shape[0])
        self.start = int(start)
        self.stop = self.start + (self.frames - 1) * self.hop_length + int(win_length)

    def out_shape(self, in_shape: Shape) -> Shape:
        return (self.n_bins, self.frames)

    def forward(self, x: Tensor) -> Tensor:
        if self.n_left > 0 or self.n_right > 0:
            parts = [x]
            if self.n_left > 0:
                parts = [torch.index_select(x, 2, self.left_index)] + parts
            if self.n_right > 0:
                parts = parts + [torch.index_select(x, 2, self.right_index)]
            x = torch.cat(parts, dim=2)
        x = x[:, :, self.start: self.stop]
        return FN.stacked_power(self.conv(x, self.kernel, self.hop_length), self.n_bins, 2.0, 0.0)
