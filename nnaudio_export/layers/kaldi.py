"""Kaldi fbank's power spectrum as one strided conv of folded per-frame kernels."""

from typing import Tuple

import numpy as np
import torch
from torch import Tensor

from .. import functional as FN
from ..checks import Param, check_args, pick, require
from ..kernels.kaldi import (KALDI_WINDOWS, kaldi_dft_parts, kaldi_edge_indices, kaldi_fbank_kernels,
                             padded_length, kaldi_num_frames)
from .common import FrontendLayer, register_kernel, require_kernel_memory
from .frame_conv import PRECISION, TARGET, DFTFrames, frame_conv
from .stft import STFT_ARGS

# The layer's arguments; the ``kaldi_stft`` stage declares its own from here.
KALDI_ARGS = (Param("win_length", 400, "int", low=1),
              Param("hop_length", 160, "int", low=1),
              Param("window", "povey", "str", choices=KALDI_WINDOWS),
              Param("remove_dc_offset", True, "bool"),
              Param("preemphasis", 0.97, "number"),
              Param("round_to_power_of_two", True, "bool"),
              Param("snip_edges", True, "bool"),
              PRECISION,
              TARGET,
              Param("num_samples", 16000, "int", low=1)) + pick(STFT_ARGS, "trainable")


class KaldiSTFT(FrontendLayer):
    """Kaldi fbank's power spectrum ``(B, n_fft // 2 + 1, frames)`` of ``(B, 1, L)`` (or
    ``(B, L)``) audio of exactly ``num_samples`` samples.

    DC removal, pre-emphasis (``x[-1] := x[0]`` inside the frame), window and zero-padding to
    ``n_fft`` are one linear map per frame, folded in float64 into the conv kernels
    (:func:`~nnaudio_export.kernels.kaldi.kaldi_fbank_kernels`); one strided conv gives real
    and imaginary parts, applied through :mod:`~nnaudio_export.layers.frame_conv` at
    ``precision`` ('single' | 'extended'). At 'single' with frozen kernels the same map runs
    as the factorised DFT of the pre-emphasised signal plus a rank <= 2 remainder
    (:func:`~nnaudio_export.kernels.kaldi.kaldi_dft_parts`); at 'extended' the same, in
    float64. ``snip_edges=False``: the signal is extended with
    constant index buffers (Kaldi's edge reflection, edge sample repeated) so frame ``f``
    starts at ``hop f + hop // 2 - L // 2``. Dither is not supported (inference: dither 0).
    Kaldi's arguments are in samples here (``win_length`` 400 = 25 ms at 16 kHz).
    ``target`` ('cpu' | 'cuda'): the device the factorised DFT is laid out for, as in
    :class:`~nnaudio_export.layers.STFT`.
    """

    def __init__(self, num_samples: int, win_length: int = 400, hop_length: int = 160,
                 window: str = "povey", remove_dc_offset: bool = True, preemphasis: float = 0.97,
                 round_to_power_of_two: bool = True, snip_edges: bool = True,
                 precision: str = "single", trainable: bool = False,
                 dtype: torch.dtype = torch.float32, target: str = "cpu"):
        super().__init__()
        check_args(KALDI_ARGS, locals())
        require(num_samples >= win_length, "num_samples",
                f"{num_samples} is shorter than win_length {win_length}")
        n_fft = padded_length(win_length, round_to_power_of_two)
        require_kernel_memory(n_fft + 2, n_fft, "win_length", "the Kaldi kernels", precision)
        kern, n_fft = kaldi_fbank_kernels(win_length, window, remove_dc_offset, preemphasis,
                                          round_to_power_of_two)
        register_kernel(self, "kernel", kern[:, None, :], trainable, dtype)
        parts = kaldi_dft_parts(win_length, window, remove_dc_offset, preemphasis, round_to_power_of_two)
        dft = DFTFrames(parts["window"], hop_length, n_fft // 2 + 1, win_length, parts["preemphasis"],
                        parts["correction_taps"], parts["correction_bins"])
        self.conv = frame_conv(kern[:, None, :], precision, trainable, dtype, dft, framed=True, target=target)
        self.precision = self.conv.precision
        self.n_fft = int(n_fft)
        self.n_bins = self.n_fft // 2 + 1
        self.win_length = win_length
        self.hop_length = hop_length
        self.frames = kaldi_num_frames(num_samples, win_length, hop_length, snip_edges)
        require(self.frames > 0, "num_samples", f"{num_samples} gives no frames")
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
        self.stop = self.start + (self.frames - 1) * self.hop_length + win_length
        self._set_lengths(num_samples, num_samples, "a Kaldi frame grid is fixed by the length")

    def output_shape_for(self, num_samples: int) -> Tuple[int, ...]:
        return (self.n_bins, self.frames)

    def forward(self, x: Tensor) -> Tensor:
        x = FN.as_batch(x)
        FN.check_num_samples(x, self._num_samples, self._min_samples)
        if self.n_left > 0 or self.n_right > 0:
            parts = [x]
            if self.n_left > 0:
                parts = [torch.index_select(x, 2, self.left_index)] + parts
            if self.n_right > 0:
                parts = parts + [torch.index_select(x, 2, self.right_index)]
            x = torch.cat(parts, dim=2)
        x = x[:, :, self.start: self.stop]
        return self.conv.squared(x, self.kernel, self.hop_length)

    def extra_repr(self) -> str:
        return (f"n_fft={self.n_fft}, win_length={self.win_length}, hop_length={self.hop_length}, "
                f"snip_edges={self.snip_edges}, frames={self.frames}, precision={self.precision!r}")
