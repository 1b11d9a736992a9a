"""Transform stages: audio (B, 1, L) -> a spectrum. ``stft`` and ``cqt`` give the complex
spectrum (B, F, T, 2), or ``|X| ** p`` (B, F, T) when a ``power`` stage follows (it is fused
into them); ``kaldi_stft`` gives Kaldi's power spectrum directly. Each wraps a layer, whose
arguments it takes; ``trainable=True`` makes its kernels ``nn.Parameter``s (precision
'single' only), to train inside a model and export with :meth:`Frontend.save` /
:func:`nnaudio_export.export`."""
from typing import Any, Dict, Optional, Tuple

import torch
from torch import Tensor, nn

from .. import functional as FN
from ..checks import pick
from ..layers import STFT, CQT1992v2, CQT2010v2, FactorisedDFT, KaldiSTFT
from ..layers.cqt import CQT_ARGS
from ..layers.kaldi import KALDI_ARGS
from ..layers.stft import STFT_ARGS
from .base import Context, Shape, Stage, register


class TransformStage(Stage):
    """Base of the transforms: they start the spectral part of a chain. Subclasses hold their
    layer as ``self.layer`` (no class-level annotation: TorchScript cannot compile an
    ``nn.Module``-typed attribute annotation, and the whole frontend must script)."""

    role = "transform"

    def work_elements(self, in_shape: Shape) -> int:
        """The padded input and the conv's (real; imag) output, three times at precision
        'extended' (the float64 stages' output and its float32 copy, or the split's input and
        two products); the stacked signal blocks of a stage 1 run as a MatMul."""
        f, t = self.layer.output_shape_for(in_shape[-1])[:2]
        copies = 3 if self.layer.precision == "extended" else 1
        conv = getattr(self.layer, "conv", None)
        stacked = conv.stacked_elements(int(t)) if isinstance(conv, FactorisedDFT) else 0
        return (copies * (2 * int(f) * int(t) + 2 * int(in_shape[-1])) + stacked
                + super().work_elements(in_shape))

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
    streaming = "framing"
    params = pick(STFT_ARGS, "n_fft", "win_length", "hop_length", "window", "center", "pad_mode",
                  "freq_bins", "freq_scale", "fmin", "fmax", "precision", "trainable")

    @classmethod
    def build(cls, p: Dict[str, Any], ctx: Context,
              previous: Optional[Stage]) -> Tuple[Stage, Context]:
        layer = STFT(sr=ctx.sample_rate, num_samples=ctx.shape[-1], output_format="Complex",
                     dtype=ctx.dtype, target=ctx.target, **p)
        plain = layer.freq_scale == "no" and layer.freq_bins == layer.n_fft // 2 + 1
        return cls(layer), ctx.but(domain="complex", power=0.0, n_fft=layer.n_fft if plain else 0)

    def __init__(self, layer: nn.Module):
        super().__init__(layer)
        self.drop_start = 0      # frames left out by padding less (a folded trim_frames)
        self.drop_end = 0

    def drop_frames(self, start: int, end: int, num_samples: int) -> bool:
        """Leave out the first ``start`` and last ``end`` frames by padding less (a
        ``trim_frames`` stage folded in: :func:`~nnaudio_export.stages.layout.
        fold_frame_trims`); False, and nothing changed, when the centre padding is too
        short for it."""
        layer = self.layer
        if FN.frame_padding(num_samples, layer.pad_amount, layer.n_fft, layer.hop_length,
                            self.drop_start + start, self.drop_end + end) is None:
            return False
        self.drop_start += int(start)
        self.drop_end += int(end)
        return True

    def out_shape(self, in_shape: Shape) -> Shape:
        shape = super().out_shape(in_shape)
        return (shape[0], shape[1] - self.drop_start - self.drop_end) + tuple(shape[2:])

    def forward(self, x: Tensor) -> Tensor:
        if self.power > 0.0:
            return self.layer.power_spectrum(x, self.power, self.drop_start, self.drop_end)
        real, imag = self.layer.spectrum(x, self.drop_start, self.drop_end)
        return torch.stack([real, imag], dim=-1)


@register
class CQTStage(FusablePowerTransform):
    """CQT: ``kind`` '1992v2' or '2010v2' and the CQT layers' arguments."""

    type_name = "cqt"
    whole_clip = ("not streamed: the streaming graph frames stft / kaldi_stft only (CQT's "
                  "per-octave kernels and 2010v2's downsampling are not framed per chunk)")
    params = pick(CQT_ARGS, "kind", "hop_length", "fmin", "fmax", "n_bins", "bins_per_octave",
                  "filter_scale", "norm", "basis_norm", "window", "center", "pad_mode",
                  "earlydownsample", "normalization_type", "precision", "trainable")

    @classmethod
    def build(cls, p: Dict[str, Any], ctx: Context,
              previous: Optional[Stage]) -> Tuple[Stage, Context]:
        common = dict(sr=ctx.sample_rate, hop_length=p["hop_length"], fmin=p["fmin"],
                      fmax=p["fmax"], n_bins=p["n_bins"], bins_per_octave=p["bins_per_octave"],
                      filter_scale=p["filter_scale"], window=p["window"], pad_mode=p["pad_mode"],
                      output_format="Complex", normalization_type=p["normalization_type"],
                      num_samples=ctx.shape[-1], verbose=False, precision=p["precision"],
                      trainable=p["trainable"], dtype=ctx.dtype)
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
    streaming = "framing"
    params = pick(KALDI_ARGS, "win_length", "hop_length", "window", "remove_dc_offset", "preemphasis",
                  "round_to_power_of_two", "snip_edges", "precision", "trainable")

    def __init__(self, layer: KaldiSTFT):
        super().__init__()
        self.layer = layer

    @classmethod
    def build(cls, p: Dict[str, Any], ctx: Context,
              previous: Optional[Stage]) -> Tuple[Stage, Context]:
        layer = KaldiSTFT(ctx.shape[-1], dtype=ctx.dtype, target=ctx.target, **p)
        return cls(layer), ctx.but(domain="power", power=2.0, n_fft=layer.n_fft)

    def out_shape(self, in_shape: Shape) -> Shape:
        return self.layer.output_shape_for(in_shape[-1])

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x)
