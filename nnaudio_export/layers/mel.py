"""Mel spectrogram and MFCC layers with nnAudio 0.3.x's arguments."""

from typing import List, Optional, Tuple, Union

import torch
from torch import Tensor

from .. import functional as FN
from ..kernels.dct import dct_matrix
from ..kernels.mel import mel_filterbank
from ..kernels.windows import WindowSpec
from ..checks import Param, check_args, pick, require
from .common import BandedWeight, FrontendLayer, register_kernel, require_kernel_memory
from .stft import STFT, STFT_ARGS

# The filterbank's arguments (the ``mel`` stage declares these too), the dB scaling's
# (``db`` stage, MFCC) and the DCT's (``mfcc`` stage): one rule for layers and specs.
MEL_ARGS = (Param("n_mels", 128, "int", low=1),
            Param("fmin", 0.0, "number", low=0),
            Param("fmax", None, "number", optional=True, doc="default: sample_rate / 2"),
            Param("htk", False, "bool"),
            Param("norm", "slaney", "norm"))
# The mel stage's bank options that reproduce other code's banks (transformers'
# mel_filter_bank); the layer keeps librosa's / nnAudio's bank and does not take them.
MEL_BANK_ARGS = (Param("allow_above_nyquist", False, "bool",
                       doc="let fmax exceed sample_rate / 2 (filters there empty)"),
                 Param("bin_rate", None, "number", optional=True, low=0, low_open=True,
                       doc="FFT bin k at k * bin_rate / n_fft Hz (None: the sample rate)"))
DB_ARGS = (Param("ref", 1.0, "number"),
           Param("amin", 1e-10, "number", low=0, low_open=True),
           Param("top_db", None, "number", optional=True, low=0),
           Param("multiplier", 10.0, "number"))
MFCC_ARGS = (Param("n_mfcc", 20, "int", low=1),
             Param("norm", "ortho", "str", optional=True, choices=("ortho", None)))
_MEL_LAYER_ARGS = MEL_ARGS + pick(STFT_ARGS, "sr", "n_fft", "win_length", "hop_length", "window",
                                  "center", "pad_mode", "num_samples", "verbose", "precision", "target") + (
    Param("power", 2.0, "number", low=0, low_open=True),
    Param("trainable_mel", False, "bool"), Param("trainable_STFT", False, "bool"))
_MFCC_LAYER_ARGS = MFCC_ARGS + pick(DB_ARGS, "ref", "amin", "top_db") + pick(
    STFT_ARGS, "sr", "num_samples", "verbose")


def nnaudio_mel_norm(norm) -> Union[None, str, float]:
    """Translate nnAudio's ``norm`` to :func:`mel_filterbank`'s (librosa >= 0.8) meaning.

    nnAudio (a copy of librosa 0.7) reads ``norm=1`` as Slaney area normalisation; we keep
    that. ``'slaney'`` is accepted too (nnAudio raises NameError), and ``np.inf`` really
    normalises each filter's peak to 1 (nnAudio accepts it and silently does nothing).
    Any other number ``p`` is librosa's l_p row normalisation.
    """
    MEL_ARGS[-1].check(norm)
    if norm is None or norm == "slaney":
        return norm
    return "slaney" if float(norm) == 1.0 else float(norm)


class MelSpectrogram(BandedWeight, FrontendLayer):
    """Mel spectrogram: ``mel_basis @ |STFT| ** power``, as nnAudio 0.3.x.

    Arguments, defaults and meanings are nnAudio's ``nnAudio.features.MelSpectrogram``
    (``norm=1`` is Slaney area normalisation), plus ``num_samples``. The STFT is the
    :class:`STFT` layer (``self.stft``), so its kernels train with ``trainable_STFT``.

    Differences from nnAudio, on purpose:
    - ``norm=np.inf`` normalises each filter to peak 1 and ``norm='slaney'`` works
      (nnAudio ignores the first and raises on the second).
    - ``power=2`` is computed as ``re^2 + im^2`` instead of ``sqrt(...) ** 2`` (same value
      to float32 rounding, finite gradient at 0).
    - ``fmax`` above Nyquist or ``fmin >= fmax`` raise ``ValueError`` (nnAudio warns of
      empty filters).

    ``precision``, ``dtype`` and ``target`` (not in nnAudio) are the STFT's: see :class:`STFT`.
    A frozen ``mel_basis`` is applied band by band (:func:`~nnaudio_export.functional.
    banded_matmul`: the same non-zero products, 3.3x fewer multiply-adds for Whisper's
    bank), a trainable one densely.
    """

    bands: List[List[int]]
    banded_weight = "mel_basis"

    def __init__(self, sr: float = 22050, n_fft: int = 2048, win_length: Optional[int] = None,
                 n_mels: int = 128, hop_length: int = 512, window: WindowSpec = "hann",
                 center: bool = True, pad_mode: str = "reflect", power: float = 2.0,
                 htk: bool = False, fmin: float = 0.0, fmax: Optional[float] = None,
                 norm=1, trainable_mel: bool = False, trainable_STFT: bool = False,
                 num_samples: Optional[int] = None, verbose: bool = True,
                 precision: str = "single", dtype: torch.dtype = torch.float32, target: str = "cpu"):
        super().__init__()
        check_args(_MEL_LAYER_ARGS, locals())
        if fmax is None:
            fmax = sr / 2.0
        require(fmax <= sr / 2.0, "fmax", f"{fmax} Hz is above the Nyquist frequency {sr / 2.0} Hz")
        require(0.0 <= fmin < fmax, "fmin", f"need 0 <= fmin < fmax, got fmin={fmin}, fmax={fmax}")
        require_kernel_memory(n_mels, n_fft // 2 + 1, "n_mels", "the mel filterbank")
        self.stft = STFT(n_fft=n_fft, win_length=win_length, hop_length=hop_length, window=window,
                         freq_scale="no", center=center, pad_mode=pad_mode, sr=sr,
                         trainable=trainable_STFT, output_format="Magnitude",
                         num_samples=num_samples, precision=precision, dtype=dtype, target=target)
        basis = mel_filterbank(sr, n_fft, n_mels, fmin, fmax, htk, nnaudio_mel_norm(norm))
        register_kernel(self, "mel_basis", basis, trainable_mel, dtype)
        self.refresh_bands()
        self.n_mels = n_mels
        self.n_fft = self.stft.n_fft
        self.hop_length = self.stft.hop_length
        self.power = float(power)
        self.eps = self.stft.eps
        self.sr = float(sr)
        self.trainable_mel = bool(trainable_mel)
        self.trainable_STFT = bool(trainable_STFT)
        self._set_lengths(num_samples, self.stft._min_samples, "STFT padding")

    def load_mel_basis(self, basis: Tensor) -> None:
        """Replace ``mel_basis`` by another of its shape (nnAudio's, trained or rounded to
        float32 as nnAudio builds it) and apply exactly that: the bands follow its zeros."""
        require(tuple(basis.shape) == tuple(self.mel_basis.shape), "n_mels",
                f"expected a mel basis of shape {list(self.mel_basis.shape)}, got {list(basis.shape)}")
        with torch.no_grad():
            self.mel_basis.copy_(basis.detach().to(self.mel_basis.dtype))
        self.refresh_bands()

    def output_shape_for(self, num_samples: int) -> Tuple[int, ...]:
        return (self.n_mels, self.stft.output_shape_for(num_samples)[1])

    def forward(self, x: Tensor) -> Tensor:
        spec = self.stft.power_spectrum(x, self.power)
        return FN.banded_matmul(self.mel_basis, spec, self.bands)

    def extra_repr(self) -> str:
        return f"n_mels={self.n_mels}, power={self.power}, trainable_mel={self.trainable_mel}"


class MFCC(FrontendLayer):
    """MFCCs: DCT-II of the dB-scaled mel spectrogram, as nnAudio 0.3.x / librosa.

    ``MFCC(sr, n_mfcc=20, norm='ortho', ref=1.0, amin=1e-10, top_db=80.0, **mel_kwargs)``;
    every other keyword goes to :class:`MelSpectrogram`. dB: ``10 log10(max(S, amin)) -
    10 log10(max(amin, |ref|))``, clamped at ``max - top_db`` (``top_db=None``: no clamp).
    The DCT-II is a matmul with a fixed ``(n_mfcc, n_mels)`` matrix (no ``torch.fft``),
    applied to the dB values centred on each frame's mean (:func:`~nnaudio_export.
    functional.centred_matmul`): a frame's common offset of tens of dB no longer rounds in
    every partial sum, which left one float32 matmul 9e-7 x peak off float64 where nnAudio's
    FFT-based DCT is 4e-7 (default MFCC, 1 s of speech / chirp / noise).

    Difference from librosa: ``top_db`` clamps against each batch item's own max (as
    nnAudio), not the whole batch's; identical for a single item.
    """

    def __init__(self, sr: float = 22050, n_mfcc: int = 20, norm: Optional[str] = "ortho",
                 verbose: bool = True, ref: float = 1.0, amin: float = 1e-10,
                 top_db: Optional[float] = 80.0, num_samples: Optional[int] = None, **kwargs):
        super().__init__()
        check_args(_MFCC_LAYER_ARGS, locals())
        self.melspec_layer = MelSpectrogram(sr=sr, num_samples=num_samples, verbose=verbose, **kwargs)
        require(n_mfcc <= self.melspec_layer.n_mels, "n_mfcc",
                f"must be <= n_mels ({self.melspec_layer.n_mels}), got {n_mfcc}")
        register_kernel(self, "dct", dct_matrix(self.melspec_layer.n_mels, n_mfcc, norm),
                        dtype=kwargs.get("dtype", torch.float32))
        self.n_mfcc = n_mfcc
        self.ref = float(ref)
        self.amin = float(amin)
        self.top_db = -1.0 if top_db is None else float(top_db)
        self._set_lengths(num_samples, self.melspec_layer._min_samples, "STFT padding")

    def output_shape_for(self, num_samples: int) -> Tuple[int, ...]:
        return (self.n_mfcc, self.melspec_layer.output_shape_for(num_samples)[1])

    def forward(self, x: Tensor) -> Tensor:
        db = FN.power_to_db(self.melspec_layer(x), self.ref, self.amin, self.top_db)
        return FN.centred_matmul(self.dct, db)

    def extra_repr(self) -> str:
        return f"n_mfcc={self.n_mfcc}, ref={self.ref}, amin={self.amin}, top_db={self.top_db}"
