"""What the multirate transforms (CQT2010v2, the multirate VQT) share: nnAudio's decimation
filters, and the signal length and frame count at each octave's rate."""
from typing import Callable, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from .. import functional as FN
from ..kernels.cqt import lowpass_filter
from .common import kernel_tensor

DECIMATION_TAPS = 256  # nnAudio's anti-aliasing FIR length (both filters)


def octave_lengths(n: int, downsample_factor: int, decimates: List[bool]) -> Optional[List[int]]:
    """Signal length at each octave's rate of a multirate transform (an optional early
    downsampling by ``downsample_factor``, then a halving before each octave that
    ``decimates``; each a strided 'same'-padded conv), or None where a decimation has no input."""
    if downsample_factor > 1:
        if n < 2:
            return None
        n = (n - 2) // downsample_factor + 1
    out: List[int] = []
    for decimate in decimates:
        if decimate:
            if n < 2:
                return None
            n = (n - 2) // 2 + 1
        out.append(n)
    return out


def smallest_length(ok: Callable[[int], bool]) -> int:
    """The smallest ``n >= 1`` with ``ok(n)``, for a monotone ``ok`` (doubling, then bisection)."""
    hi = 1
    while not ok(hi):
        hi *= 2
    lo = hi // 2  # not ok (or 0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def multirate_output_shape(layer: nn.Module, num_samples: int) -> Tuple[int, ...]:
    """(bins, frames[, 2]) of a multirate layer (CQT2010v2, multirate VQT): the frame count of
    its shortest octave."""
    lens = layer._octave_lengths(num_samples)
    t = 0 if lens is None else min(FN.frame_count(l, o.width, o.hop, True)
                                   for l, o in zip(lens, layer.octaves))
    return (layer.n_bins, t) if layer.output_format == "Magnitude" else (layer.n_bins, t, 2)


def register_decimation(layer: nn.Module, factor: int, dtype: torch.dtype) -> None:
    """A multirate layer's decimation filters, as nnAudio's (rounded to float32 as nnAudio's
    are): ``early_downsample_filter`` (the early downsampling by ``factor``, a 1-tap identity
    when 1) and ``lowpass_filter`` (each octave's halving), applied with 'same' zero padding
    ``layer.decimation_pad``."""
    early = lowpass_filter(1.0 / factor, DECIMATION_TAPS, 0.03) if factor > 1 else np.ones(1)
    layer.register_buffer("early_downsample_filter", kernel_tensor(early.astype(np.float32)[None, None], dtype))
    halve = lowpass_filter(0.5, DECIMATION_TAPS, 0.001).astype(np.float32)
    layer.register_buffer("lowpass_filter", kernel_tensor(halve[None, None], dtype))
    layer.decimation_pad = (DECIMATION_TAPS - 1) // 2
