"""Transform stages: audio (B, 1, L) -> a spectrum. ``stft`` and ``cqt`` give the complex
spectrum (B, F, T, 2), or ``|X| ** p`` (B, F, T) when a ``power`` stage follows (it is fused
into them); ``kaldi_stft`` gives Kaldi's power spectrum directly. Each wraps a layer, whose
arguments it takes."""
from typing import Any, Dict, Optional, Tuple

import torch
from torch import Tensor, nn

from .. import functional as FN
from ..checks import Param
from ..kernels.fourier import FREQ_SCALES
from ..kernels.kaldi import KALDI_WINDOWS
from ..layers import PRECISIONS, STFT, CQT1992v2, CQT2010v2, KaldiSTFT
from ..layers.cqt import NORMALIZATION_TYPES
from ..layers.stft import PAD_MODES
from .base import Context, Shape, Stage, register


def _precision() -> Param:
    return Param("precision", "single", "str", choices=PRECISIONS,
                 doc="'single' (one float32 conv) or 'extended' (error-free split)")


class TransformStage(Stage):
    """Base of the transforms: they start the spectral part of a chain."""

    role = "transform"

    @classmethod
    def check_context(cls, ctx: Context) -> None:
        if ctx.domain != "audio":
            raise ValueError("a transform must come right after the input")


class FusablePowerTransform(TransformStage):
    """A transform whose complex spectrum a following ``power`` stage turns into
    ``|X| ** power`` inside the same module (one conv, one square, one add)."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer
        self.power = 0.0

    def fuse_power(self, power: float) -> None:
        self.power = float(power)

    def out_shape(self, in_shape: Shape) -> Shape:
        f, t = self.layer.output_shape_for(in_shape[-1])[:2]
        return (f, t) if self.power > 0 else (f, t, 2)


@register
class STFTStage(FusablePowerTransform):
    """STFT (the :class:`~nnaudio_export.layers.STFT` layer's arguments, sr from the builder)."""

    type_name = "stft"
    params = (Param("n_fft", 2048, "int", low=1),
              Param("win_length", None, "int", optional=True, low=1),
              Param("hop_length", None, "int", optional=True, low=1),
              Param("window", "hann", "window"),
              Param("center", True, "bool"),
              Param("pad_mode", "reflect", "str", choices=PAD_MODES),
              Param("freq_bins", None, "int", optional=True, low=1),
              Param("freq_scale", "no", "str", choices=FREQ_SCALES),
              Param("fmin", 50.0, "number"),
              Param("fmax", 6000.0, "number"),
              _precision())

    @classmethod
    def build(cls, p: Dict[str, Any], ctx: Context,
              previous: Optional[Stage]) -> Tuple[Stage, Context]:
        layer = STFT(sr=ctx.sample_rate, num_samples=ctx.shape[-1], output_format="Complex",
                     dtype=ctx.dtype, **p)
        plain = layer.freq_scale == "no" and layer.freq_bins == layer.n_fft // 2 + 1
        return cls(layer), ctx.but(domain="complex", power=0.0, n_fft=layer.n_fft if plain else 0)

    def forward(self, x: Tensor) -> Tensor:
        if self.power > 0.0:
            return self.layer.power_spectrum(x, self.power)
        real, imag = self.layer.spectrum(x)
        return torch.stack([real, imag], dim=-1)


@register
class CQTStage(FusablePowerTransform):
    """CQT: ``kind`` '1992v2' or '2010v2' and the CQT layers' arguments."""

    type_name = "cqt"
    params = (Param("kind", "1992v2", "str", choices=("1992v2", "2010v2")),
              Param("hop_length", 512, "int", low=1),
              Param("fmin", 32.70, "number", low=0, low_open=True),
              Param("fmax", None, "number", optional=True),
              Param("n_bins", 84, "int", low=1),
              Param("bins_per_octave", 12, "int", low=1),
              Param("filter_scale", 1, "number", low=0, low_open=True),
              Param("norm", 1, "order", doc="1992v2: kernel normalisation order"),
              Param("basis_norm", 1, "order", doc="2010v2: kernel normalisation order"),
              Param("window", "hann", "window"),
              Param("center", True, "bool"),
              Param("pad_mode", "reflect", "str", choices=PAD_MODES),
              Param("earlydownsample", True, "bool"),
              Param("normalization_type", "librosa", "str", choices=NORMALIZATION_TYPES),
              _precision())

    @classmethod
    def build(cls, p: Dict[str, Any], ctx: Context,
              previous: Optional[Stage]) -> Tuple[Stage, Context]:
        common = dict(sr=ctx.sample_rate, hop_length=p["hop_length"], fmin=p["fmin"],
                      fmax=p["fmax"], n_bins=p["n_bins"], bins_per_octave=p["bins_per_octave"],
                      filter_scale=p["filter_scale"], window=p["window"], pad_mode=p["pad_mode"],
                      output_format="Complex", normalization_type=p["normalization_type"],
                      num_samples=ctx.shape[-1], verbose=False, precision=p["precision"],
                      dtype=ctx.dtype)
        if p["kind"] == "1992v2":
            layer = CQT1992v2(norm=p["norm"], center=p["center"], **common)
        else:
            layer = CQT2010v2(basis_norm=p["basis_norm"], earlydownsample=p["earlydownsample"],
                              **common)
        return cls(layer), ctx.but(domain="complex", power=0.0, n_fft=0)

    def forward(self, x: Tensor) -> Tensor:
        real, imag = self.layer.spectrum(x)
        if self.power > 0.0:
            return FN.power_spectrum(real, imag, self.power, 0.0)
        return torch.stack([real, imag], dim=-1)


@register
class KaldiSTFTStage(TransformStage):
    """Kaldi fbank's power spectrum (win_length, hop_length in samples, window 'povey' |
    'hanning' | 'hamming' | ..., remove_dc_offset, preemphasis, round_to_power_of_two,
    snip_edges); the per-frame linear steps are folded into the conv kernel
    (:class:`~nnaudio_export.layers.KaldiSTFT`)."""

    type_name = "kaldi_stft"
    params = (Param("win_length", 400, "int", low=1),
              Param("hop_length", 160, "int", low=1),
              Param("window", "povey", "str", choices=KALDI_WINDOWS),
              Param("remove_dc_offset", True, "bool"),
              Param("preemphasis", 0.97, "number"),
              Param("round_to_power_of_two", True, "bool"),
              Param("snip_edges", True, "bool"),
              _precision())

    def __init__(self, layer: KaldiSTFT):
        super().__init__()
        self.layer = layer

    @classmethod
    def build(cls, p: Dict[str, Any], ctx: Context,
              previous: Optional[Stage]) -> Tuple[Stage, Context]:
        layer = KaldiSTFT(ctx.shape[-1], dtype=ctx.dtype, **p)
        return cls(layer), ctx.but(domain="power", power=2.0, n_fft=layer.n_fft)

    def out_shape(self, in_shape: Shape) -> Shape:
        return self.layer.output_shape_for(in_shape[-1])

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x)
