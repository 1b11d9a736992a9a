"""Synthesis: a spectrum in, audio out. ``spectrum_input`` (the input of a synthesis chain:
its layout, ``freq_bins`` and ``num_frames``), then ``istft`` (a complex spectrum -> audio
``(B, L)``, the :class:`~nnaudio_export.layers.iSTFT` layer's arguments) or
``griffin_lim`` (a magnitude or power spectrogram -> audio, the
:class:`~nnaudio_export.layers.GriffinLim` layer's arguments).

A Griffin-Lim bundle's float32 waveform can follow the rounding (a tone's phase from a
zero-phase start, see the layer), so its parity is judged against the measured float32
spread of the eager module (:mod:`nnaudio_export.parity`)."""
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from ..checks import REQUIRED, Param, pick
from ..layers import GriffinLim, iSTFT, kernel_tensor
from ..layers.griffin_lim import GRIFFIN_LIM_ARGS
from ..layers.istft import ISTFT_ARGS
from ..manifest import SPECTRUM_NAME
from ..signals import spectrum as signal_spectrum
from .base import Context, InputStageBase, Shape, Stage, TensorInfo, register

# Spectrum layouts (see SpectrumInputStage). 'log_magnitude_phase' is Vocos' ISTFTHead:
# log|X| rows, then phase rows, on one axis. 'magnitude' / 'power' have no phase: the input
# of griffin_lim.
LAYOUTS = ("complex", "magnitude_phase", "log_magnitude_phase", "magnitude", "power")
PHASELESS = {"magnitude": 1.0, "power": 2.0}     # layout -> exponent of |X|
# Vocos clips exp(log-magnitude) here ("safeguard to prevent excessively large magnitudes").
VOCOS_MAX_MAGNITUDE = 1e2


def layout_shape(layout: str, freq_bins: int, num_frames: int) -> Shape:
    """The input shape (without batch) of a spectrum of ``layout``."""
    if layout == "log_magnitude_phase":
        return (2 * freq_bins, num_frames)
    if layout in PHASELESS:
        return (freq_bins, num_frames)
    return (freq_bins, num_frames, 2)


@register
class SpectrumInputStage(InputStageBase):
    """The input of a synthesis chain: a spectrum of ``freq_bins`` bins and ``num_frames``
    frames (float32), first stage. Layouts:

    - 'complex': ``(B, F, T, 2)`` real, imag (the STFT layer's 'Complex' output);
    - 'magnitude_phase': ``(B, F, T, 2)`` ``|X|``, phase in radians;
    - 'log_magnitude_phase': ``(B, 2F, T)``, ``log|X|`` rows then phase rows, as Vocos'
      ``ISTFTHead`` splits its projection (``mag, p = x.chunk(2, dim=1)``);
      ``|X| = min(exp(log|X|), 100)`` as there;
    - 'magnitude' / 'power': ``(B, F, T)``, ``|X|`` or ``|X|^2``, no phase.

    The first three give the complex spectrum ``(B, F, T, 2)`` to ``istft``, the last two
    pass the spectrogram to ``griffin_lim`` as it is. Other shapes raise ``ValueError``
    naming ``freq_bins`` / ``num_frames``.
    """

    type_name = "spectrum_input"
    input_kind = "spectrum"
    params = (Param("freq_bins", REQUIRED, "int", low=1, doc="frequency bins F"),
              Param("num_frames", REQUIRED, "int", low=1, doc="frames T (fixes the shape)"),
              Param("layout", "complex", "str", choices=LAYOUTS))

    def __init__(self, layout: str, freq_bins: int, num_frames: int,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        self.layout = layout
        self.freq_bins = int(freq_bins)
        self.num_frames = int(num_frames)
        self.max_magnitude = VOCOS_MAX_MAGNITUDE
        self.register_buffer("dtype_probe", kernel_tensor(np.zeros(1), dtype))
        shape = layout_shape(layout, self.freq_bins, self.num_frames)
        self.shape = list(shape)
        self.expected = "(batch, " + ", ".join(str(d) for d in shape) + ")"
        self.shape_names = "(batch, {}freq_bins, num_frames{})".format(
            "2 x " if layout == "log_magnitude_phase" else "", ", 2" if len(shape) == 3 else "")

    @classmethod
    def build(cls, p: Dict[str, Any], ctx: Context,
              previous: Optional[Stage]) -> Tuple[Stage, Context]:
        module = cls(p["layout"], p["freq_bins"], p["num_frames"], ctx.dtype)
        if p["layout"] in PHASELESS:
            return module, ctx.but(input=module.tensor(), domain="power",
                                   power=PHASELESS[p["layout"]], n_fft=0)
        return module, ctx.but(input=module.tensor(), domain="complex", power=0.0, n_fft=0)

    def tensor(self) -> TensorInfo:
        return TensorInfo(SPECTRUM_NAME, tuple(self.shape), "float32", "spectrum")

    def example_input(self, names: Sequence[str], sample_rate: float) -> np.ndarray:
        """The STFT of each named test signal (:func:`nnaudio_export.signals.spectrum`)
        in this layout, float32."""
        return np.stack([to_layout(signal_spectrum(name, self.freq_bins, self.num_frames, sample_rate),
                                   self.layout) for name in names]).astype(np.float32)

    def out_shape(self, in_shape: Shape) -> Shape:
        if self.layout in PHASELESS:
            return (self.freq_bins, self.num_frames)
        return (self.freq_bins, self.num_frames, 2)

    def forward(self, x: Tensor) -> Tensor:
        if list(x.shape[1:]) != self.shape:
            raise ValueError("spectrum: expected shape {} = {}, got {}".format(
                self.shape_names, self.expected, list(x.shape)))
        x = x.to(self.dtype_probe.dtype)
        if self.layout == "magnitude_phase":
            return polar(x[..., 0], x[..., 1])
        if self.layout == "log_magnitude_phase":
            mag = torch.clamp(torch.exp(x[:, : self.freq_bins]), max=self.max_magnitude)
            return polar(mag, x[:, self.freq_bins:])
        return x


def to_layout(z: np.ndarray, layout: str) -> np.ndarray:
    """A complex ``(F, T)`` numpy spectrum in ``layout`` (what that input stage takes)."""
    mag, phase = np.abs(z), np.angle(z)
    if layout in PHASELESS:
        return mag ** PHASELESS[layout]
    if layout == "complex":
        return np.stack([z.real, z.imag], axis=-1)
    if layout == "magnitude_phase":
        return np.stack([mag, phase], axis=-1)
    return np.concatenate([np.log(np.maximum(mag, 1e-7)), phase], axis=0)


def polar(magnitude: Tensor, phase: Tensor) -> Tensor:
    """``(B, F, T, 2)`` real, imag of ``magnitude * exp(i phase)``."""
    return torch.stack([magnitude * torch.cos(phase), magnitude * torch.sin(phase)], dim=-1)


class SynthesisStage(Stage):
    """Base of the synthesis stages: a complex spectrum from ``spectrum_input`` -> audio."""

    role = "synthesis"

    @classmethod
    def check_context(cls, ctx: Context) -> None:
        if ctx.input is None or ctx.input.kind != "spectrum" or ctx.domain != "complex":
            raise ValueError("a synthesis stage needs a spectrum input: start the chain with "
                             "spectrum_input (STFT -> iSTFT chains: use nnaudio_export.layers)")

    def __init__(self, layer: torch.nn.Module):
        super().__init__()
        self.layer = layer

    def out_shape(self, in_shape: Shape) -> Shape:
        return self.layer.output_shape_for(in_shape[1])

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x)


@register
class ISTFTStage(SynthesisStage):
    """Inverse STFT with ``torch.istft`` semantics (the
    :class:`~nnaudio_export.layers.iSTFT` layer's arguments; ``freq_bins`` and
    ``num_frames`` come from ``spectrum_input``). ``length``: the output length (default
    the natural one); ``padding='same'`` (with ``center=False``): Vocos' 'same' padding."""

    type_name = "istft"
    params = pick(ISTFT_ARGS, "n_fft", "win_length", "hop_length", "window", "center",
                  "normalized", "onesided", "length", "padding")

    @classmethod
    def build(cls, p: Dict[str, Any], ctx: Context,
              previous: Optional[Stage]) -> Tuple[Stage, Context]:
        layer = iSTFT(n_fft=p["n_fft"], win_length=p["win_length"], freq_bins=ctx.shape[0],
                      hop_length=p["hop_length"], window=p["window"], center=p["center"],
                      normalized=p["normalized"], onesided=p["onesided"], length=p["length"],
                      padding=p["padding"], num_frames=ctx.shape[1], dtype=ctx.dtype)
        return cls(layer), ctx.but(domain="audio")


@register
class GriffinLimStage(SynthesisStage):
    """Griffin-Lim phase reconstruction (the :class:`~nnaudio_export.layers.GriffinLim`
    layer's arguments: ``n_iter`` unrolled, ``momentum``, zero-phase start as
    ``librosa.griffinlim(init=None)``) of the magnitude or power spectrogram of a
    ``spectrum_input`` with layout 'magnitude' or 'power' (its exponent is the layer's
    ``power``; ``freq_bins`` must be ``n_fft // 2 + 1``)."""

    type_name = "griffin_lim"
    params = pick(GRIFFIN_LIM_ARGS, "n_fft", "n_iter", "hop_length", "win_length", "window",
                  "center", "pad_mode", "momentum", "length")

    @classmethod
    def check_context(cls, ctx: Context) -> None:
        if ctx.input is None or ctx.input.kind != "spectrum" or ctx.domain != "power" or ctx.log:
            raise ValueError("griffin_lim needs a magnitude or power spectrogram: start the chain "
                             "with spectrum_input(layout='magnitude' or 'power')")

    @classmethod
    def build(cls, p: Dict[str, Any], ctx: Context,
              previous: Optional[Stage]) -> Tuple[Stage, Context]:
        layer = GriffinLim(n_fft=p["n_fft"], n_iter=p["n_iter"], hop_length=p["hop_length"],
                           win_length=p["win_length"], window=p["window"], center=p["center"],
                           pad_mode=p["pad_mode"], momentum=p["momentum"], power=ctx.power,
                           length=p["length"], freq_bins=ctx.shape[0], num_frames=ctx.shape[1],
                           dtype=ctx.dtype)
        return cls(layer), ctx.but(domain="audio", power=0.0)
