"""Layout stages: cut, pad or fix the frame axis, and put time first."""
from typing import Any, Dict, Optional, Sequence, Tuple

import torch.nn.functional as F
from torch import Tensor

from ..checks import REQUIRED, Param
from .base import Context, Shape, Stage, register


@register
class TrimFramesStage(Stage):
    """Drop ``start`` frames at the beginning and ``end`` at the end (Whisper drops the
    last STFT frame)."""

    type_name = "trim_frames"
    streaming = "frame_index"
    role = "layout"
    params = (Param("start", 0, "int", low=0), Param("end", 0, "int", low=0))

    def __init__(self, start: int, end: int):
        super().__init__()
        self.start = int(start)
        self.end = int(end)
        self.folded = False     # the transform leaves the frames out (fold_frame_trims)

    @classmethod
    def build(cls, p: Dict[str, Any], ctx: Context,
              previous: Optional[Stage]) -> Tuple[Stage, Context]:
        start, end, frames = p["start"], p["end"], ctx.shape[-1]
        if start + end >= frames:
            raise ValueError(f"start/end must be >= 0 and leave frames, got {start}/{end} of {frames}")
        return cls(start, end), ctx

    def out_shape(self, in_shape: Shape) -> Shape:
        if self.folded:
            return tuple(in_shape)
        return tuple(in_shape[:-1]) + (in_shape[-1] - self.start - self.end,)

    def forward(self, x: Tensor) -> Tensor:
        if self.folded:
            return x
        return x[..., self.start: x.size(-1) - self.end]


def fold_frame_trims(modules: Sequence[Stage], in_shapes: Sequence[Shape]) -> int:
    """Fold each ``trim_frames`` into the transform before it when only per-frame stages
    (``streaming == 'frames'``, each frame on its own: power, mel, log, ...) stand between:
    the transform then pads less and never computes the dropped frames
    (``drop_frames``, :func:`~nnaudio_export.functional.pad_for_frames`), and the trim
    stage passes its input through. The output is the same frames, computed the same way;
    the graph loses a copy of the features (whisper_80 in ONNX Runtime: a ``Slice`` of
    8 x 80 x 3001 values, ~1.5 ms of ~34 at 2 threads). The streaming graph, which frames the
    samples itself, still reads ``start`` / ``end``. ``in_shapes``: each module's input
    shape (no batch axis). Returns how many were folded."""
    folded = 0
    for i, trim in enumerate(modules):
        if not isinstance(trim, TrimFramesStage):
            continue
        j = i - 1
        while j >= 0 and modules[j].streaming == "frames" and modules[j].streaming_refusal() is None:
            j -= 1
        drop = getattr(modules[j], "drop_frames", None) if j >= 0 else None
        if drop is not None and drop(trim.start, trim.end, int(in_shapes[j][-1])):
            trim.folded = True
            folded += 1
    return folded


@register
class FixFramesStage(Stage):
    """Pad with ``value`` or cut the time axis to exactly ``frames`` (AST's 1024)."""

    type_name = "fix_frames"
    whole_clip = "pads or cuts to a frame count fixed for the whole clip"
    role = "layout"
    params = (Param("frames", REQUIRED, "int", low=1), Param("value", 0.0, "number"))

    def __init__(self, frames: int, value: float, in_frames: int):
        super().__init__()
        self.frames = int(frames)
        self.value = float(value)
        self.pad = max(0, self.frames - int(in_frames))

    @classmethod
    def build(cls, p: Dict[str, Any], ctx: Context,
              previous: Optional[Stage]) -> Tuple[Stage, Context]:
        return cls(p["frames"], p["value"], ctx.shape[-1]), ctx

    def out_shape(self, in_shape: Shape) -> Shape:
        return tuple(in_shape[:-1]) + (self.frames,)

    def forward(self, x: Tensor) -> Tensor:
        if self.pad > 0:
            return F.pad(x, [0, self.pad], mode="constant", value=self.value)
        return x[..., : self.frames]


@register
class PadToMultipleStage(Stage):
    """Pad the time axis with ``value`` up to a multiple of ``multiple`` frames (NeMo
    ``pad_to``)."""

    type_name = "pad_to_multiple"
    whole_clip = "pads the whole clip's frame count to a multiple"
    role = "layout"
    params = (Param("multiple", 16, "int", low=1), Param("value", 0.0, "number"))

    def __init__(self, multiple: int, value: float, in_frames: int):
        super().__init__()
        self.multiple = int(multiple)
        self.value = float(value)
        self.pad = (-int(in_frames)) % self.multiple

    @classmethod
    def build(cls, p: Dict[str, Any], ctx: Context,
              previous: Optional[Stage]) -> Tuple[Stage, Context]:
        return cls(p["multiple"], p["value"], ctx.shape[-1]), ctx

    def out_shape(self, in_shape: Shape) -> Shape:
        return tuple(in_shape[:-1]) + (in_shape[-1] + self.pad,)

    def forward(self, x: Tensor) -> Tensor:
        if self.pad > 0:
            return F.pad(x, [0, self.pad], mode="constant", value=self.value)
        return x


@register
class TimeMajorStage(Stage):
    """(B, F, T) -> (B, T, F), the layout Kaldi-style models take."""

    type_name = "time_major"
    streaming = "frames"
    role = "layout"

    @classmethod
    def build(cls, p: Dict[str, Any], ctx: Context,
              previous: Optional[Stage]) -> Tuple[Stage, Context]:
        return cls(), ctx

    def out_shape(self, in_shape: Shape) -> Shape:
        return (in_shape[1], in_shape[0]) + tuple(in_shape[2:])

    def forward(self, x: Tensor) -> Tensor:
        return x.transpose(1, 2)


@register
class StackFramesStage(Stage):
    """Stack ``stride`` consecutive frames into one (SeamlessM4T's stride stacking):
    (B, F, T) -> (B, stride * F, T // stride), output frame ``t`` holding input frames
    ``t * stride .. t * stride + stride - 1`` one after the other (row ``k * F + f`` is
    feature ``f`` of frame ``t * stride + k``), so that after ``time_major`` it is
    transformers' ``reshape(T // stride, F * stride)`` of the time-major features. The
    last ``T % stride`` frames are dropped, as transformers drops them."""

    type_name = "stack_frames"
    role = "layout"
    params = (Param("stride", 2, "int", low=1),)

    def __init__(self, stride: int, in_features: int, in_frames: int):
        super().__init__()
        self.stride = int(stride)
        self.in_features = int(in_features)
        self.frames = int(in_frames) // self.stride

    @classmethod
    def check_context(cls, ctx: Context) -> None:
        super().check_context(ctx)
        if len(ctx.shape) != 2:
            raise ValueError(f"needs (features, frames) input, got shape {list(ctx.shape)}")

    @classmethod
    def build(cls, p: Dict[str, Any], ctx: Context,
              previous: Optional[Stage]) -> Tuple[Stage, Context]:
        features, frames = ctx.shape
        if frames < p["stride"]:
            raise ValueError(f"stride {p['stride']} is more than the {frames} frames")
        return cls(p["stride"], features, frames), ctx

    def out_shape(self, in_shape: Shape) -> Shape:
        return (self.stride * self.in_features, self.frames)

    def forward(self, x: Tensor) -> Tensor:
        b = x.size(0)
        x = x[..., : self.frames * self.stride].reshape(b, self.in_features, self.frames, self.stride)
        return x.permute(0, 3, 1, 2).reshape(b, self.stride * self.in_features, self.frames)
