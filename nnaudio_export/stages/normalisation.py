"""Normalisation stages: fixed standardisation, per-item mean/std computed from the
features themselves (NeMo, SeamlessM4T), and the per-item waveform normalisation of
Wav2Vec2-style models."""
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from ..checks import Param
from ..layers import kernel_tensor
from .base import Context, Shape, Stage, register


@register
class StandardizeStage(Stage):
    """``(x - mean) / std`` with fixed scalars or per-feature lists."""

    type_name = "standardize"
    streaming = "frames"
    role = "normalisation"
    params = (Param("mean", 0.0, "numbers"), Param("std", 1.0, "numbers"))

    def __init__(self, mean: Union[float, Sequence[float]], std: Union[float, Sequence[float]],
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        m = np.atleast_1d(np.asarray(mean, dtype=np.float64))
        s = np.atleast_1d(np.asarray(std, dtype=np.float64))
        self.register_buffer("mean", kernel_tensor(m[:, None], dtype))
        self.register_buffer("inv_std", kernel_tensor(1.0 / s[:, None], dtype))

    @classmethod
    def build(cls, p: Dict[str, Any], ctx: Context,
              previous: Optional[Stage]) -> Tuple[Stage, Context]:
        mean = np.atleast_1d(np.asarray(p["mean"], dtype=np.float64))
        std = np.atleast_1d(np.asarray(p["std"], dtype=np.float64))
        for name, v in (("mean", mean), ("std", std)):
            if v.size not in (1, ctx.shape[0]):
                raise ValueError(f"{name} must be a number or {ctx.shape[0]} values, got {v.size}")
        if np.any(std <= 0):
            raise ValueError("std must be positive")
        db = ctx.db_per_unit
        db_unit = db * float(std[0]) if (db is not None and std.size == 1) else None
        return cls(mean, std, ctx.dtype), ctx.but(db_per_unit=db_unit)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) * self.inv_std


@register
class NormalizeStage(Stage):
    """Per-item mean/std normalisation computed from the features (NeMo).

    ``per_feature``: each feature row over the first ``valid_frames`` frames (all when
    None); ``global``: over all features and frames. ``(x - mean) / (std + eps)`` with the
    unbiased (n - 1) std when ``unbiased`` (NeMo), else the population std.
    The mean is taken relative to the first frame (``mean = x0 + mean(x - x0)``): equal in
    exact arithmetic, and in float32 a constant row (digital silence, e.g. every value
    ``ln(2**-24)``) gives exactly 0 instead of ``rounding(mean) / eps`` (up to ~0.3 for NeMo).
    """

    type_name = "normalize"
    whole_clip = "takes mean and std over the whole clip per item"
    role = "normalisation"
    params = (Param("mode", "per_feature", "str", choices=("per_feature", "global")),
              Param("eps", 1e-5, "number", low=0),
              Param("unbiased", True, "bool"),
              Param("valid_frames", None, "int", optional=True, low=0,
                    doc="frames the statistics use (None: all)"),
              Param("eps_on", "std", "str", choices=("std", "variance"),
                    doc="add eps to the std (NeMo) or to the variance under the root"))

    def __init__(self, per_feature: bool, eps: float, unbiased: bool, valid_frames: int,
                 eps_on_variance: bool = False):
        super().__init__()
        self.eps_on_variance = bool(eps_on_variance)
        self.per_feature = bool(per_feature)
        self.eps = float(eps)
        self.unbiased = bool(unbiased)
        self.valid_frames = int(valid_frames)

    @classmethod
    def build(cls, p: Dict[str, Any], ctx: Context,
              previous: Optional[Stage]) -> Tuple[Stage, Context]:
        vf = 0 if p["valid_frames"] is None else int(p["valid_frames"])
        if vf > ctx.shape[-1] or vf == 1:
            raise ValueError(f"valid_frames must be in 2..{ctx.shape[-1]}, got {vf}")
        module = cls(p["mode"] == "per_feature", float(p["eps"]), p["unbiased"], vf,
                     p["eps_on"] == "variance")
        return module, ctx.but(db_per_unit=None)

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
        if self.eps_on_variance:
            return ((x - x0) - mean_d) / torch.sqrt(var + self.eps)
        return ((x - x0) - mean_d) / (torch.sqrt(var) + self.eps)


@register
class NormalizeWaveformStage(Stage):
    """Zero-mean, unit-variance audio per item, ``(x - mean) / sqrt(var + eps)`` with the
    population variance over all samples (transformers' ``zero_mean_unit_var_norm``,
    Wav2Vec2 ``do_normalize``); the normalised waveform is the frontend's output, shape
    (num_samples,) per item. The mean is taken relative to the first sample, as in
    ``normalize``, so that constant input gives exactly 0."""

    type_name = "normalize_waveform"
    role = "normalisation"
    params = (Param("eps", 1e-7, "number", low=0),)

    def __init__(self, eps: float):
        super().__init__()
        self.eps = float(eps)

    @classmethod
    def check_context(cls, ctx: Context) -> None:
        if ctx.domain != "audio" or ctx.input is None or ctx.input.kind != "audio":
            raise ValueError("works on the input audio and ends the chain: nothing but audio "
                             "stages before it")

    @classmethod
    def build(cls, p: Dict[str, Any], ctx: Context,
              previous: Optional[Stage]) -> Tuple[Stage, Context]:
        if float(p["eps"]) <= 0:
            raise ValueError("eps must be positive (digital silence has variance 0)")
        return cls(float(p["eps"])), ctx.but(domain="features", db_per_unit=None)

    def out_shape(self, in_shape: Shape) -> Shape:
        return (in_shape[-1],)

    def forward(self, x: Tensor) -> Tensor:
        x = x.squeeze(1)
        d = x - x[:, :1]
        mean_d = torch.mean(d, dim=-1, keepdim=True)
        var = torch.mean((d - mean_d) ** 2, dim=-1, keepdim=True)
        return (d - mean_d) / torch.sqrt(var + self.eps)
