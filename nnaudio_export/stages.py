"""Builder stages as small scriptable modules: input, transform, spectral, scaling,
normalisation, layout. Each has ``forward(x) -> x`` and ``out_shape(in_shape)`` (shapes
without the batch axis) so a chain's output shape is known before anything runs."""
import math
from typing import Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from . import functional as FN
from .layers._base import as_kernel
from .layers.stft import STFT

Shape = Tuple[int, ...]


class Stage(nn.Module):
    """Base: identity shape."""

    def out_shape(self, in_shape: Shape) -> Shape:
        return in_shape


class InputStage(Stage):
    """(B, L) or (B, C, L) PCM of ``dtype`` -> (B, 1, L) in the kernels' dtype.

    int16 is scaled by ``scale`` (default 1/32768); stereo (``channels=2``) is averaged to
    mono inside the graph. ``num_samples`` fixes L: other lengths raise ``ValueError``.
    """

    def __init__(self, num_samples: int, channels: int = 1, dtype: str = "float32",
                 scale: float = 1.0):
        super().__init__()
        self.num_samples = int(num_samples)
        self.channels = int(channels)
        self.scale = float(scale)
        self.register_buffer("dtype_probe", as_kernel(np.zeros(1), False))
        self.expected = "(batch, {})".format(num_samples) if channels == 1 else \
            "(batch, {}, {})".format(channels, num_samples)

    def out_shape(self, in_shape: Shape) -> Shape:
        return (1, self.num_samples)

    def forward(self, x: Tensor) -> Tensor:
        if self.channels == 1:
            if x.dim() != 2 or x.size(1) != self.num_samples:
                raise ValueError("audio: expected shape {}, got {}".format(self.expected, list(x.shape)))
            y = x.unsqueeze(1)
        else:
            if x.dim() != 3 or x.size(1) != self.channels or x.size(2) != self.num_samples:
                raise ValueError("audio: expected shape {}, got {}".format(self.expected, list(x.shape)))
            y = x
        y = y.to(self.dtype_probe.dtype)
        if self.channels != 1:
            y = torch.mean(y, dim=1, keepdim=True)
        if self.scale != 1.0:
            y = y * self.scale
        return y


class STFTStage(Stage):
    """STFT layer; with ``power > 0`` it outputs ``|X| ** power`` (B, F, T), else the
    complex spectrum (B, F, T, 2)."""

    def __init__(self, layer: STFT, power: float):
        super().__init__()
        self.layer = layer
        self.power = float(power)
        self.eps = layer.eps

    def out_shape(self, in_shape: Shape) -> Shape:
        f, t = self.layer.output_shape_for(in_shape[-1])[:2]
        return (f, t) if self.power > 0 else (f, t, 2)

    def forward(self, x: Tensor) -> Tensor:
        if self.power > 0.0:
            return self.layer.power_spectrum(x, self.power)
        real, imag = self.layer.spectrum(x)
        return torch.stack([real, imag], dim=-1)


class CQTStage(Stage):
    """A CQT layer's complex spectrum (B, F, T, 2); with ``power > 0`` ``|X| ** power``."""

    def __init__(self, layer: nn.Module, power: float):
        super().__init__()
        self.layer = layer
        self.power = float(power)

    def out_shape(self, in_shape: Shape) -> Shape:
        f, t = self.layer.output_shape_for(in_shape[-1])[:2]
        return (f, t) if self.power > 0 else (f, t, 2)

    def forward(self, x: Tensor) -> Tensor:
        real, imag = self.layer.spectrum(x)
        if self.power > 0.0:
            return FN.power_spectrum(real, imag, self.power, 0.0)
        return torch.stack([real, imag], dim=-1)


class MatrixStage(Stage):
    """``W @ x`` along the feature axis (mel filterbank, DCT): (B, F, T) -> (B, K, T)."""

    def __init__(self, matrix: np.ndarray, trainable: bool = False):
        super().__init__()
        if trainable:
            self.weight = as_kernel(matrix, True)
        else:
            self.register_buffer("weight", as_kernel(matrix, False))

    def out_shape(self, in_shape: Shape) -> Shape:
        return (int(self.weight.shape[0]),) + tuple(in_shape[1:])

    def forward(self, x: Tensor) -> Tensor:
        return torch.matmul(self.weight, x)


class LogStage(Stage):
    """``log_base(max(x + offset, floor))`` (``floor <= 0``: no clamp)."""

    def __init__(self, base: float, floor: float, offset: float):
        super().__init__()
        self.inv_ln_base = 1.0 / math.log(base) if base != math.e else 1.0
        self.floor = float(floor)
        self.offset = float(offset)

    def forward(self, x: Tensor) -> Tensor:
        if self.offset != 0.0:
            x = x + self.offset
        if self.floor > 0.0:
            x = torch.clamp(x, min=self.floor)
        y = torch.log(x)
        if self.inv_ln_base != 1.0:
            y = y * self.inv_ln_base
        return y


class DbStage(Stage):
    """``multiplier * log10(max(x, amin) / max(amin, |ref|))``, then with ``top_db >= 0``
    clamped at the per-item max minus ``top_db`` (librosa's power_to_db, per item)."""

    def __init__(self, ref: float, amin: float, top_db: float, multiplier: float):
        super().__init__()
        self.ref = float(ref)
        self.amin = float(amin)
        self.top_db = float(top_db)
        self.multiplier = float(multiplier)

    def forward(self, x: Tensor) -> Tensor:
        return FN.power_to_db(x, self.ref, self.amin, self.top_db, self.multiplier)


class DynamicRangeStage(Stage):
    """``max(x, item_max - range)``: Whisper's clamp, per batch item (as HF; openai's
    batched code takes the max over the whole batch)."""

    def __init__(self, value_range: float):
        super().__init__()
        self.value_range = float(value_range)

    def forward(self, x: Tensor) -> Tensor:
        return FN.clamp_to_item_max(x, self.value_range)


class AffineStage(Stage):
    """``x * scale + offset``."""

    def __init__(self, scale: float, offset: float):
        super().__init__()
        self.scale = float(scale)
        self.offset = float(offset)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale + self.offset


class StandardizeStage(Stage):
    """``(x - mean) / std`` with fixed scalars or per-feature vectors (F,)."""

    def __init__(self, mean: Union[float, Sequence[float]], std: Union[float, Sequence[float]]):
        super().__init__()
        m = np.atleast_1d(np.asarray(mean, dtype=np.float64))
        s = np.atleast_1d(np.asarray(std, dtype=np.float64))
        self.register_buffer("mean", as_kernel(m[:, None], False))
        self.register_buffer("inv_std", as_kernel(1.0 / s[:, None], False))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) * self.inv_std


class NormalizeStage(Stage):
    """Per-item normalisation computed from the features themselves.

    ``per_feature``: each feature row over the first ``valid_frames`` frames (all when
    <= 0); ``global``: over all features and frames. ``(x - mean) / (std + eps)`` with the
    unbiased (n - 1) std when ``unbiased`` (NeMo), else the population std.
    The mean is taken relative to the first frame (``mean = x0 + mean(x - x0)``): equal in
    exact arithmetic, and in float32 a constant row (digital silence, e.g. every value
    ``ln(2**-24)``) gives exactly 0 instead of ``rounding(mean) / eps`` (up to ~0.3 for NeMo).
    """

    def __init__(self, per_feature: bool, eps: float, unbiased: bool, valid_frames: int):
        super().__init__()
        self.per_feature = bool(per_feature)
        self.eps = float(eps)
        self.unbiased = bool(unbiased)
        self.valid_frames = int(valid_frames)

    def forward(self, x: Tensor) -> Tensor:
        v = x[..., : self.valid_frames] if self.valid_frames > 0 else x
        if self.per_feature:
            x0 = v[..., :1]
            d = v - x0
            n = d.size(-1)
            mean_d = torch.mean(d, dim=-1, keepdim=True)
            var = torch.sum((d - mean_d) ** 2, dim=-1, keepdim=True)
        else:
            x0 = v[..., :1, :1]
            d = v - x0
            n = d.size(-1) * d.size(-2)
            mean_d = torch.mean(d, dim=[-2, -1], keepdim=True)
            var = torch.sum((d - mean_d) ** 2, dim=[-2, -1], keepdim=True)
        var = var / float(n - 1 if self.unbiased else n)
        return ((x - x0) - mean_d) / (torch.sqrt(var) + self.eps)


class TrimFramesStage(Stage):
    """Drop ``start`` frames at the beginning and ``end`` at the end (Whisper drops the
    last STFT frame)."""

    def __init__(self, start: int, end: int):
        super().__init__()
        self.start = int(start)
        self.end = int(end)

    def out_shape(self, in_shape: Shape) -> Shape:
        return tuple(in_shape[:-1]) + (in_shape[-1] - self.start - self.end,)

    def forward(self, x: Tensor) -> Tensor:
        return x[..., self.start: x.size(-1) - self.end]


class FixFramesStage(Stage):
    """Pad with ``value`` or cut the time axis to exactly ``frames`` (AST's 1024)."""

    def __init__(self, frames: int, value: float, in_frames: int):
        super().__init__()
        self.frames = int(frames)
        self.value = float(value)
        self.pad = max(0, self.frames - int(in_frames))

    def out_shape(self, in_shape: Shape) -> Shape:
        return tuple(in_shape[:-1]) + (self.frames,)

    def forward(self, x: Tensor) -> Tensor:
        if self.pad > 0:
            return torch.nn.functional.pad(x, [0, self.pad], mode="constant", value=self.value)
        return x[..., : self.frames]


class TimeMajorStage(Stage):
    """(B, F, T) -> (B, T, F), the layout Kaldi-style models take."""

    def out_shape(self, in_shape: Shape) -> Shape:
        return (in_shape[1], in_shape[0]) + tuple(in_shape[2:])

    def forward(self, x: Tensor) -> Tensor:
        return x.transpose(1, 2)

