"""Spectral stages: ``power`` (fused into the transform before it) and the fixed matrices
applied along the feature axis: mel filterbanks (librosa, Kaldi, SpeechBrain) and the DCT
of MFCCs."""
import math
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from .. import functional as FN
from ..checks import Param, pick
from ..kernels.dct import dct_matrix
from ..kernels.kaldi import kaldi_mel_banks, speechbrain_mel_filterbank
from ..kernels.mel import mel_filterbank
from ..layers import register_kernel
from ..layers.common import BandedWeight, require_kernel_memory
from ..layers.mel import MEL_ARGS, MEL_BANK_ARGS, MFCC_ARGS
from ..layers.stft import STFT_ARGS
from .base import Context, Shape, Stage, register
from .transforms import FusablePowerTransform

# A matrix stage's weights as an nn.Parameter (trained inside a model, then saved with
# Frontend.save and exported with the trained values): the layers' own declaration.
TRAINABLE = pick(STFT_ARGS, "trainable")[0]


@register
class PowerStage(Stage):
    """``|X| ** exponent`` right after a transform (fused into it: no module of its own)."""

    type_name = "power"
    streaming = "frames"
    role = "spectral"
    params = (Param("exponent", 2.0, "number", low=0, low_open=True),)

    @classmethod
    def check_context(cls, ctx: Context) -> None:
        if ctx.domain != "complex":
            raise ValueError("power must directly follow a transform (stft or cqt)")

    @classmethod
    def build(cls, p: Dict[str, Any], ctx: Context,
              previous: Optional[Stage]) -> Tuple[Optional[Stage], Context]:
        if not isinstance(previous, FusablePowerTransform):
            raise ValueError("power must directly follow a transform (stft or cqt)")
        previous.fuse_power(p["exponent"])
        return None, ctx.but(domain="power", power=float(p["exponent"]))


class MatrixStage(BandedWeight, Stage):
    """``W @ x`` along the feature axis: (B, F, T) -> (B, K, T).

    A frozen ``W`` with zero blocks (a triangular filterbank) is applied band by band
    (:func:`~nnaudio_export.functional.banded_matmul`, bands from :func:`~nnaudio_export.
    kernels.banded.row_bands`: whisper_80's mel bank 4,815 multiply-adds a frame in 3 bands
    instead of 16,080); the bands are recomputed whenever ``weight`` is loaded from a state
    dict. A trainable ``W`` stays dense (training may fill its zeros)."""

    role = "spectral"
    bands: List[List[int]]

    def __init__(self, matrix: np.ndarray, trainable: bool = False,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        register_kernel(self, "weight", matrix, trainable, dtype)
        self.refresh_bands()

    def out_shape(self, in_shape: Shape) -> Shape:
        return (int(self.weight.shape[0]),) + tuple(in_shape[1:])

    def forward(self, x: Tensor) -> Tensor:
        return FN.banded_matmul(self.weight, x, self.bands)


class FilterbankStage(MatrixStage):
    """A filterbank over a plain DFT's power spectrum (needs its ``n_fft``)."""

    @classmethod
    def check_context(cls, ctx: Context) -> None:
        if ctx.domain != "power" or ctx.n_fft == 0:
            raise ValueError(f"{cls.type_name} needs a power/magnitude spectrum of a plain stft "
                             "(freq_scale 'no', default freq_bins) or kaldi_stft right before it")

    @staticmethod
    def require_memory(n_mels: int, ctx: Context) -> None:
        require_kernel_memory(n_mels, ctx.n_fft // 2 + 1, "n_mels", "the filterbank")


@register
class MelStage(FilterbankStage):
    """Mel filterbank (librosa ``filters.mel`` semantics: norm 'slaney' | None | number).

    ``fmax`` above the Nyquist frequency is refused unless ``allow_above_nyquist``: then the
    filters are laid out up to ``fmax`` as asked and the ones above Nyquist are empty or
    partial, as librosa (which warns) and transformers' Whisper extractor below 16 kHz (its
    bank always spans 0..8000 Hz) compute them. ``bin_rate`` lays the FFT bins out at another
    rate than the true one (transformers' ``mel_filter_bank``: see
    :func:`~nnaudio_export.kernels.mel.mel_filterbank`)."""

    type_name = "mel"
    streaming = "frames"
    params = MEL_ARGS + (TRAINABLE,) + MEL_BANK_ARGS

    @classmethod
    def build(cls, p: Dict[str, Any], ctx: Context,
              previous: Optional[Stage]) -> Tuple[Stage, Context]:
        sr = ctx.sample_rate
        fmax = p["fmax"] if p["fmax"] is not None else sr / 2
        if fmax > sr / 2 and not p["allow_above_nyquist"]:
            raise ValueError(f"fmax: {fmax} Hz is above the Nyquist frequency {sr / 2} Hz "
                             "(allow_above_nyquist=True lays the bank out anyway)")
        if not p["fmin"] < fmax:
            raise ValueError(f"fmin: need 0 <= fmin < fmax, got {p['fmin']}")
        cls.require_memory(p["n_mels"], ctx)
        norm = math.inf if p["norm"] == "inf" else p["norm"]      # JSON spells inf "inf"
        fb = mel_filterbank(sr, ctx.n_fft, p["n_mels"], float(p["fmin"]), float(fmax), p["htk"], norm,
                            allow_above_nyquist=p["allow_above_nyquist"], bin_rate=p["bin_rate"])
        return cls(fb, p["trainable"], ctx.dtype), ctx.but(domain="features")


@register
class KaldiMelStage(FilterbankStage):
    """Kaldi mel banks (``1127 ln(1 + f/700)``, triangles in mel space; high_freq <= 0 is
    Nyquist + high_freq)."""

    type_name = "kaldi_mel"
    streaming = "frames"
    params = (Param("n_mels", 80, "int", low=3),
              Param("low_freq", 20.0, "number", low=0),
              Param("high_freq", 0.0, "number"))

    @classmethod
    def build(cls, p: Dict[str, Any], ctx: Context,
              previous: Optional[Stage]) -> Tuple[Stage, Context]:
        cls.require_memory(p["n_mels"], ctx)
        fb = kaldi_mel_banks(p["n_mels"], ctx.sample_rate, ctx.n_fft, float(p["low_freq"]),
                             float(p["high_freq"]))
        return cls(fb, dtype=ctx.dtype), ctx.but(domain="features")


@register
class SpeechBrainMelStage(FilterbankStage):
    """SpeechBrain's triangular filterbank (HTK mel edges, triangles symmetric in Hz)."""

    type_name = "speechbrain_mel"
    streaming = "frames"
    params = (Param("n_mels", 40, "int", low=1),
              Param("fmin", 0.0, "number", low=0),
              Param("fmax", None, "number", optional=True, doc="default: sample_rate / 2"))

    @classmethod
    def build(cls, p: Dict[str, Any], ctx: Context,
              previous: Optional[Stage]) -> Tuple[Stage, Context]:
        fmax = None if p["fmax"] is None else float(p["fmax"])
        cls.require_memory(p["n_mels"], ctx)
        fb = speechbrain_mel_filterbank(ctx.sample_rate, ctx.n_fft, p["n_mels"], float(p["fmin"]), fmax)
        return cls(fb, dtype=ctx.dtype), ctx.but(domain="features")


@register
class MFCCStage(MatrixStage):
    """DCT-II of log/dB features (librosa ``feature.mfcc``), as a matmul."""

    type_name = "mfcc"
    streaming = "frames"
    params = MFCC_ARGS + (TRAINABLE,)

    @classmethod
    def check_context(cls, ctx: Context) -> None:
        if not ctx.log or ctx.domain in ("audio", "complex") or len(ctx.shape) != 2:
            raise ValueError("mfcc (a DCT over features) needs log/db features before it")

    @classmethod
    def build(cls, p: Dict[str, Any], ctx: Context,
              previous: Optional[Stage]) -> Tuple[Stage, Context]:
        matrix = dct_matrix(ctx.shape[0], p["n_mfcc"], p["norm"])
        return cls(matrix, p["trainable"], ctx.dtype), ctx.but(domain="features", db_per_unit=None,
                                                     cepstral=True)
