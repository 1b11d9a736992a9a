"""Variable-Q transform with nnAudio2 2.0.3's arguments: ``VQT``."""

from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import functional as FN
from ..checks import Param, require
from ..kernels.cqt import cqt_kernels, variable_q_lengths
from ..kernels.vqt import vqt_plan
from ..kernels.windows import WindowSpec
from .common import FrontendLayer, kernel_tensor, register_kernel
from .cqt import CQT1992v2, _check_common, _format, _norm_scale
from .multirate import multirate_output_shape, octave_lengths, register_decimation, smallest_length
from .frame_conv import frame_conv

GAMMA = Param("gamma", 0.0, "number", low=0, doc="bandwidth offset in Hz (0: constant Q)")


class VQTOctave(nn.Module):
    """One octave of the multirate transform: its kernel bank ``[cos; sin]`` (``(2 R, 1,
    W)``, applied through :mod:`~nnaudio_export.layers.frame_conv`), the hop and centre
    padding at its rate, whether the rate is halved first, and the rows of its bank kept."""

    def __init__(self, kernel: np.ndarray, hop: int, bin_start: int, n_bins: int,
                 decimate: bool, pad_mode: str, trainable: bool, precision: str,
                 dtype: torch.dtype):
        super().__init__()
        register_kernel(self, "kernel", kernel, trainable, dtype)
        self.conv = frame_conv(kernel, precision, trainable, dtype)
        self.rows = int(kernel.shape[0]) // 2
        self.width = int(kernel.shape[-1])
        self.pad = self.width // 2
        self.hop = int(hop)
        self.bin_start = int(bin_start)
        self.n_bins = int(n_bins)
        self.decimate = bool(decimate)
        self.pad_mode = pad_mode

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        y = self.conv(FN.pad_both(x, self.pad, self.pad_mode), self.kernel, self.hop)
        lo = self.bin_start
        hi = lo + self.n_bins
        return y[:, lo:hi], -y[:, self.rows + lo:self.rows + hi]


class MultirateVQT(FrontendLayer):
    """The multirate transform of :class:`VQT` (``gamma > 0``, or ``multirate=True``):
    the plan of :func:`nnaudio_export.kernels.vqt.vqt_plan`, each octave with its own
    kernel bank designed at its own rate, unrolled at construction (``self.octaves``, top
    octave first). ``scale`` ``(n_bins, 1)`` is the output normalisation."""

    def __init__(self, sr: float, hop_length: int, fmin: float, n_bins: int,
                 bins_per_octave: int, filter_scale: float, basis_norm, gamma: float,
                 window: WindowSpec, pad_mode: str, earlydownsample: bool, trainable: bool,
                 output_format: str, normalization_type: str, num_samples: Optional[int],
                 precision: str, dtype: torch.dtype):
        super().__init__()
        plan = vqt_plan(sr, hop_length, fmin, n_bins, bins_per_octave, filter_scale,
                        bool(earlydownsample))
        require(plan["fmax_t"] <= sr / 2, "n_bins",
                f"the top bin {plan['fmax_t']:.2f} Hz is above the Nyquist frequency {sr / 2} Hz")
        octaves = []
        for j, o in enumerate(plan["octaves"]):
            real, imag, _, _, _ = cqt_kernels(plan["Q"], o["rate"], o["fmin"], bins_per_octave,
                                              bins_per_octave, basis_norm, window,
                                              topbin_check=False, gamma=gamma)
            octaves.append(VQTOctave(np.concatenate([real, imag])[:, None, :], o["hop"],
                                     o["bin_start"], o["n_bins"], j > 0, pad_mode, trainable,
                                     precision, dtype))
        self.octaves = nn.ModuleList(octaves)
        self.precision = octaves[0].conv.precision
        self.downsample_factor = int(plan["factor"])
        register_decimation(self, self.downsample_factor, dtype)
        freqs = fmin * 2.0 ** (np.arange(n_bins) / float(bins_per_octave))
        lengths = variable_q_lengths(plan["Q"], sr, freqs, gamma, bins_per_octave)
        self.register_buffer("scale", kernel_tensor(
            _norm_scale(normalization_type, lengths)[:, None], dtype))
        self.frequencies = freqs
        self.n_bins = n_bins
        self.pad_mode = pad_mode
        self.output_format = output_format
        self.eps = 1e-8 if trainable else 0.0
        self.refresh_lengths(num_samples)

    def refresh_lengths(self, num_samples: Optional[int]) -> None:
        """Fix (again) the minimum and, when given, the only accepted input length: after
        construction, or after the octaves' kernels were replaced by others of new widths."""
        self._set_lengths(num_samples, self._min_length(),
                          f"{self.pad_mode} padding of up to {max(o.pad for o in self.octaves)} "
                          f"samples at the lowest sample rate")

    def _octave_lengths(self, n: int) -> Optional[List[int]]:
        return octave_lengths(n, self.downsample_factor, [o.decimate for o in self.octaves])

    def _min_length(self) -> int:
        def ok(n: int) -> bool:
            lens = self._octave_lengths(n)
            return lens is not None and all(
                l >= (o.pad + 1 if self.pad_mode == "reflect" else 1) and
                FN.frame_count(l, o.width, o.hop, True) > 0 for l, o in zip(lens, self.octaves))
        return smallest_length(ok)

    def output_shape_for(self, num_samples: int) -> Tuple[int, ...]:
        return multirate_output_shape(self, num_samples)

    def spectrum(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """(real, imag), each (B, F, T), of any accepted input."""
        x = FN.as_batch(x)
        FN.check_num_samples(x, self._num_samples, self._min_samples)
        pad = self.decimation_pad
        if self.downsample_factor > 1:
            x = F.conv1d(x, self.early_downsample_filter, stride=self.downsample_factor, padding=pad)
        reals: List[Tensor] = []
        imags: List[Tensor] = []
        for octave in self.octaves:  # static: unrolled by scripting, tracing and export
            if octave.decimate:
                x = F.conv1d(x, self.lowpass_filter, stride=2, padding=pad)
            real, imag = octave(x)
            reals.append(real)
            imags.append(imag)
        return FN.stack_octaves(reals, imags, self.scale)

    def forward(self, x: Tensor) -> Tensor:
        real, imag = self.spectrum(x)
        return _format(real, imag, self.output_format, self.eps)


class VQT(FrontendLayer):
    """Variable-Q transform [Schoerkhuber et al. 2014]: constant-Q bins whose bandwidth is
    ``alpha f_k + gamma`` (``gamma`` Hz more than a CQT's: shorter filters, better time
    resolution at low frequencies), with nnAudio2 2.0.3's ``nnAudio2.features.VQT``
    arguments, defaults and numbers, plus ``normalization_type`` (a constructor argument, as
    for the CQT layers), ``num_samples``, ``precision`` and ``dtype`` (as for
    :class:`~nnaudio_export.layers.STFT`).

    ``gamma == 0`` is nnAudio2's: the transform is a :class:`CQT1992v2` (centred, ``norm =
    basis_norm``; ``self.transform``). ``gamma > 0`` (or ``multirate=True``, nnAudio 0.3.4's
    ``VQT`` at any ``gamma``) is the multirate transform of :class:`MultirateVQT`: early
    downsampling, then octave ``j`` at rate ``sr_e / 2 ** j`` with hop ``hop_e / 2 ** j``
    and its own kernel bank (:func:`~nnaudio_export.kernels.cqt.cqt_kernels` with
    ``gamma``, normalised by ``basis_norm``), centred with ``pad_mode`` padding of half the
    bank's width, stacked lowest octave first; the lowest ``n_octaves bpo - n_bins`` rows
    dropped. ``norm`` is accepted and unused, as in nnAudio2; ``verbose`` is ignored.

    Output: 'Magnitude' ``(B, F, T)``, 'Complex' ``(B, F, T, 2)``, 'Phase' ``(B, F, T, 2)``
    (cos, sin), ``T = 1 + L // hop``.

    Differences from nnAudio2, on purpose (multirate; each pinned by a test):
    - Early downsampling: nnAudio2 designs the kernels at the original rate while applying
      them to the downsampled signal (wrong frequencies), multiplies by ``downsample_factor``
      and takes ``sqrt`` of the lengths at the downsampled rate. Here the kernels are designed
      at each octave's real rate and 'librosa' scales by ``sqrt(N_k)`` at the original rate
      with no factor (as :class:`CQT2010v2`), so the level is librosa's.
    - ``hop_length`` must be divisible by ``downsample_factor * 2 ** (n_octaves - 1)``
      (``ValueError`` naming it); nnAudio2 truncates the halved hops and linearly
      interpolates every octave to the shortest frame count (frames move off centre).
    - ``n_bins < bins_per_octave``: the top bank keeps ``bins_per_octave`` rows and the top
      ``n_bins`` are kept (nnAudio builds bins below ``fmin``); ``fmax`` sets ``n_bins`` and
      ``window`` is used (nnAudio2's multirate path ignores both).
    - Too-short inputs for reflect padding at the lowest rate raise instead of switching to
      zero padding.

    Against ``librosa.vqt`` the bins differ by the definition of ``alpha``: see
    :func:`~nnaudio_export.kernels.cqt.variable_q_lengths`.
    """

    def __init__(self, sr: float = 22050, hop_length: int = 512, fmin: float = 32.70,
                 fmax: Optional[float] = None, n_bins: int = 84, filter_scale: float = 1,
                 bins_per_octave: int = 12, norm=True, basis_norm=1, gamma: float = 0,
                 window: WindowSpec = "hann", pad_mode: str = "reflect",
                 earlydownsample: bool = True, trainable: bool = False,
                 output_format: str = "Magnitude", verbose: bool = True,
                 normalization_type: str = "librosa", num_samples: Optional[int] = None,
                 precision: str = "single", dtype: torch.dtype = torch.float32,
                 multirate: Optional[bool] = None):
        super().__init__()
        args = dict(locals())
        n_bins = _check_common(args, ("basis_norm", "earlydownsample"))
        GAMMA.check(gamma)
        self.multirate = bool(gamma > 0) if multirate is None else bool(multirate)
        if self.multirate:
            self.transform = MultirateVQT(sr, hop_length, fmin, n_bins, bins_per_octave,
                                          filter_scale, basis_norm, float(gamma), window,
                                          pad_mode, earlydownsample, trainable, output_format,
                                          normalization_type, num_samples, precision, dtype)
        else:
            self.transform = CQT1992v2(sr, hop_length, fmin, fmax, n_bins, bins_per_octave,
                                       filter_scale, basis_norm, window, True, pad_mode,
                                       trainable, output_format, normalization_type,
                                       num_samples, verbose, precision, dtype)
        self.precision = self.transform.precision
        self.sr = float(sr)
        self.hop_length = hop_length
        self.n_bins = n_bins
        self.bins_per_octave = bins_per_octave
        self.gamma = float(gamma)
        self.output_format = output_format
        self.normalization_type = normalization_type
        self.trainable = bool(trainable)
        self.refresh_lengths(num_samples)

    def refresh_lengths(self, num_samples: Optional[int]) -> None:
        """Take the transform's length limits (again, after its kernels were replaced)."""
        if isinstance(self.transform, MultirateVQT):
            self.transform.refresh_lengths(num_samples)
        self._set_lengths(num_samples, self.transform._min_samples, "padding at the lowest rate")

    def output_shape_for(self, num_samples: int) -> Tuple[int, ...]:
        return self.transform.output_shape_for(num_samples)

    def forward(self, x: Tensor) -> Tensor:
        return self.transform(x)

    def extra_repr(self) -> str:
        return (f"sr={self.sr}, hop_length={self.hop_length}, n_bins={self.n_bins}, "
                f"bins_per_octave={self.bins_per_octave}, gamma={self.gamma}, "
                f"multirate={self.multirate}, output_format={self.output_format!r}, "
                f"normalization_type={self.normalization_type!r}, num_samples={self.num_samples}")
