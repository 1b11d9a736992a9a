"""Gammatone spectrogram with nnAudio2 2.0.3's arguments: ``Gammatonegram``."""

from typing import Optional, Tuple

import torch
from torch import Tensor

from ..checks import Param, check_args, pick, require
from ..kernels.gammatone import gammatone_filterbank
from ..kernels.windows import WindowSpec
from .common import FrontendLayer, register_kernel, require_kernel_memory
from .stft import STFT, STFT_ARGS

_GAMMATONE_ARGS = pick(STFT_ARGS, "sr", "n_fft", "win_length", "hop_length", "window", "center",
                       "pad_mode", "num_samples", "verbose", "precision") + (
    Param("n_bins", 64, "int", low=1),
    Param("fmin", 0.0, "number", low=0),
    Param("fmax", None, "number", optional=True, doc="default: sr / 2"),
    Param("power", 2.0, "number", low=0, low_open=True),
    Param("htk", False, "bool"),
    Param("trainable_bins", False, "bool"), Param("trainable_STFT", False, "bool"))


class Gammatonegram(FrontendLayer):
    """Gammatone spectrogram: ``gammatone_basis @ |STFT| ** power``, as nnAudio2 2.0.3's
    ``nnAudio2.features.Gammatonegram`` (and nnAudio 0.3.4's).

    ``gammatone_basis`` is :func:`nnaudio_export.kernels.gammatone.gammatone_filterbank`
    (``n_bins`` 4th-order gammatone magnitude responses at ERB-spaced centres between
    ``fmin`` and ``fmax``, over the ``n_fft // 2 + 1`` FFT bins); it trains with
    ``trainable_bins``, the :class:`STFT` (``self.stft``) with ``trainable_STFT``. ``htk``
    and ``norm`` are accepted and unused, as in nnAudio2 (the filter shapes are fixed);
    ``verbose`` is ignored. Plus ``num_samples``, ``precision`` and ``dtype`` (see
    :class:`STFT`).

    Differences from nnAudio2, on purpose: ``fmax`` above Nyquist or ``fmin >= fmax`` raise
    ``ValueError`` (nnAudio2 builds filters outside the spectrum); ``power=2`` is computed as
    ``re^2 + im^2`` (as :class:`MelSpectrogram`).
    """

    def __init__(self, sr: float = 22050, n_fft: int = 2048, win_length: Optional[int] = None,
                 n_bins: int = 64, hop_length: int = 512, window: WindowSpec = "hann",
                 center: bool = True, pad_mode: str = "reflect", power: float = 2.0,
                 htk: bool = False, fmin: float = 0.0, fmax: Optional[float] = None, norm=1,
                 trainable_bins: bool = False, trainable_STFT: bool = False,
                 verbose: bool = True, num_samples: Optional[int] = None,
                 precision: str = "single", dtype: torch.dtype = torch.float32):
        super().__init__()
        check_args(_GAMMATONE_ARGS, locals())
        if fmax is None:
            fmax = sr / 2.0
        require(fmax <= sr / 2.0, "fmax", f"{fmax} Hz is above the Nyquist frequency {sr / 2.0} Hz")
        require(0.0 <= fmin < fmax, "fmin", f"need 0 <= fmin < fmax, got fmin={fmin}, fmax={fmax}")
        require_kernel_memory(n_bins, n_fft // 2 + 1, "n_bins", "the gammatone filterbank")
        self.stft = STFT(n_fft=n_fft, win_length=win_length, hop_length=hop_length, window=window,
                         freq_scale="no", center=center, pad_mode=pad_mode, sr=sr,
                         trainable=trainable_STFT, output_format="Magnitude",
                         num_samples=num_samples, precision=precision, dtype=dtype)
        basis = gammatone_filterbank(sr, n_fft, n_bins, fmin, fmax)
        register_kernel(self, "gammatone_basis", basis, trainable_bins, dtype)
        self.n_bins = n_bins
        self.n_fft = self.stft.n_fft
        self.hop_length = self.stft.hop_length
        self.power = float(power)
        self.sr = float(sr)
        self.fmin = float(fmin)
        self.fmax = float(fmax)
        self.trainable_bins = bool(trainable_bins)
        self.trainable_STFT = bool(trainable_STFT)
        self._set_lengths(num_samples, self.stft._min_samples, "STFT padding")

    def output_shape_for(self, num_samples: int) -> Tuple[int, ...]:
        return (self.n_bins, self.stft.output_shape_for(num_samples)[1])

    def forward(self, x: Tensor) -> Tensor:
        spec = self.stft.power_spectrum(x, self.power)
        return torch.matmul(self.gammatone_basis, spec)

    def extra_repr(self) -> str:
        return (f"n_bins={self.n_bins}, fmin={self.fmin}, fmax={self.fmax}, power={self.power}, "
                f"trainable_bins={self.trainable_bins}")
