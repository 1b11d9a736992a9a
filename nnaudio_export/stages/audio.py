"""Stages on audio samples: the input (dtype, channels, scaling) and what runs before the
transform (NeMo's whole-signal pre-emphasis, CLAP's repeat-padding)."""
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..checks import REQUIRED, Param
from ..layers import kernel_tensor
from ..manifest import AUDIO_NAME
from ..signals import batch as signal_batch
from .base import Context, InputStageBase, Shape, Stage, TensorInfo, register


@register
class InputStage(InputStageBase):
    """PCM input: 'float32' or 'int16' (scaled by ``scale``, default 1/32768), mono or
    stereo (downmixed in the graph). Must be first; default float32 mono.

    (B, L) or (B, C, L) of ``dtype`` -> (B, 1, L) in the kernels' dtype. ``num_samples``
    fixes L: other lengths raise ``ValueError``.
    """

    type_name = "input"
    input_kind = "audio"
    params = (Param("dtype", "float32", "str", choices=("float32", "int16")),
              Param("channels", 1, "int", choices=(1, 2)),
              Param("scale", None, "number", optional=True,
                    doc="multiplier applied after the dtype conversion (default 1/32768 "
                        "for int16, else 1)"))

    def __init__(self, num_samples: int, channels: int, scale: float,
                 dtype: torch.dtype = torch.float32, input_dtype: str = "float32"):
        super().__init__()
        self.num_samples = int(num_samples)
        self.channels = int(channels)
        self.scale = float(scale)
        self.input_dtype = str(input_dtype)
        # Its dtype is the working dtype: it follows .to() / .double() like the kernels.
        self.register_buffer("dtype_probe", kernel_tensor(np.zeros(1), dtype))
        self.expected = "(batch, {})".format(num_samples) if channels == 1 else \
            "(batch, {}, {})".format(channels, num_samples)

    @classmethod
    def build(cls, p: Dict[str, Any], ctx: Context,
              previous: Optional[Stage]) -> Tuple[Stage, Context]:
        scale = p["scale"]
        if scale is None:
            scale = 1.0 / 32768.0 if p["dtype"] == "int16" else 1.0
        module = cls(ctx.num_samples, p["channels"], float(scale), ctx.dtype, p["dtype"])
        return module, ctx.but(input=module.tensor())

    def tensor(self) -> TensorInfo:
        shape = (self.num_samples,) if self.channels == 1 else (self.channels, self.num_samples)
        return TensorInfo(AUDIO_NAME, shape, self.input_dtype, "audio")

    def example_input(self, names: Sequence[str], sample_rate: float) -> np.ndarray:
        return signal_batch(self.num_samples, sample_rate, self.input_dtype, self.channels,
                            names=tuple(names))

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


class AudioStage(Stage):
    """Base of the stages that work on (B, 1, L) audio before the transform."""

    role = "audio"

    @classmethod
    def check_context(cls, ctx: Context) -> None:
        if ctx.domain != "audio" or ctx.input is None or ctx.input.kind != "audio":
            raise ValueError("works on the input audio: put it before the transform")


@register
class PreEmphasisStage(AudioStage):
    """Whole-signal pre-emphasis ``y[0] = x[0]``, ``y[n] = x[n] - c x[n-1]`` (NeMo
    ``FilterbankFeatures``), as a 2-tap conv1d after one zero of left padding."""

    type_name = "preemphasis"
    streaming = "samples"
    params = (Param("coefficient", 0.97, "number"),)

    def __init__(self, coefficient: float, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.coefficient = float(coefficient)
        self.register_buffer("kernel", kernel_tensor(np.array([[[-float(coefficient), 1.0]]]), dtype))

    @classmethod
    def build(cls, p: Dict[str, Any], ctx: Context,
              previous: Optional[Stage]) -> Tuple[Stage, Context]:
        return cls(p["coefficient"], ctx.dtype), ctx

    def forward(self, x: Tensor) -> Tensor:
        return F.conv1d(F.pad(x, [1, 0], mode="constant", value=0.0), self.kernel)


@register
class RepeatPadStage(AudioStage):
    """CLAP's padding of a clip shorter than ``length`` (transformers ``ClapFeatureExtractor``,
    ``n = length // L`` with ``L = num_samples``): ``mode`` 'repeatpad' tiles the clip ``n``
    times, then zero-pads to ``length``; 'repeat' tiles it ``n + 1`` times and cuts at
    ``length``; 'pad' only zero-pads. Identity when L == length."""

    type_name = "repeat_pad"
    whole_clip = "tiles the whole clip to a fixed length"
    params = (Param("length", REQUIRED, "int", low=1, doc="samples after padding"),
              Param("mode", "repeatpad", "str", choices=("repeatpad", "repeat", "pad")))

    def __init__(self, in_samples: int, length: int, mode: str = "repeatpad"):
        super().__init__()
        if in_samples > length:
            raise ValueError(f"num_samples {in_samples} is longer than length {length}: "
                             "the reference crops at random there (not reproducible)")
        tiles = int(length / in_samples)
        if in_samples < length and mode != "repeatpad":
            tiles = tiles + 1 if mode == "repeat" else 1
        self.repeats = tiles
        self.cut = tiles * int(in_samples) > int(length)      # 'repeat' overshoots, then cuts
        self.pad = max(0, int(length) - tiles * int(in_samples))
        self.length = int(length)

    @classmethod
    def build(cls, p: Dict[str, Any], ctx: Context,
              previous: Optional[Stage]) -> Tuple[Stage, Context]:
        return cls(ctx.shape[-1], p["length"], p["mode"]), ctx

    def out_shape(self, in_shape: Shape) -> Shape:
        return (1, self.length)

    def forward(self, x: Tensor) -> Tensor:
        if self.repeats > 1:
            x = x.repeat(1, 1, self.repeats)
        if self.cut:
            x = x[..., : self.length]
        if self.pad > 0:
            x = F.pad(x, [0, self.pad], mode="constant", value=0.0)
        return x
