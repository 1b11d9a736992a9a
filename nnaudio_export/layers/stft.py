"""Convolutional STFT with nnAudio 0.3.x's arguments."""

from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from .. import functional as FN
from ..kernels.fourier import FREQ_SCALES, fourier_bin_frequencies, fourier_kernels
from ..kernels.windows import WindowSpec, get_window
from ..checks import Param, check_args, require
from .common import FrontendLayer, register_kernel, require_kernel_memory
from .frame_conv import PRECISION, TARGET, DFTFrames, FrameConv, SplitFrameConv, frame_conv

OUTPUT_FORMATS = ("Complex", "Magnitude", "Phase")
PAD_MODES = ("reflect", "constant")

# The STFT's arguments: the layer checks its own with these, and the ``stft`` stage declares
# the ones it takes from here (one rule for layers, builder and specs).
STFT_ARGS = (Param("n_fft", 2048, "int", low=2),
             Param("win_length", None, "int", optional=True, low=1),
             Param("hop_length", None, "int", optional=True, low=1),
             Param("window", "hann", "window"),
             Param("center", True, "bool"),
             Param("pad_mode", "reflect", "str", choices=PAD_MODES),
             Param("freq_bins", None, "int", optional=True, low=1),
             Param("freq_scale", "no", "str", choices=FREQ_SCALES),
             Param("fmin", 50.0, "number"),
             Param("fmax", 6000.0, "number"),
             PRECISION,
             TARGET,
             Param("sr", 22050, "number", low=0, low_open=True),
             Param("iSTFT", False, "bool"),
             Param("trainable", False, "bool"),
             Param("output_format", "Complex", "str", choices=OUTPUT_FORMATS),
             Param("num_samples", None, "int", optional=True, low=1),
             Param("verbose", True, "bool"))


class STFT(FrontendLayer):
    """Short-time Fourier transform as one strided ``conv1d`` of windowed Fourier kernels.

    Arguments, defaults and meanings are nnAudio 0.3.x's ``nnAudio.features.STFT``
    (``hop_length=None`` -> ``win_length // 4``; ``freq_scale`` 'no' | 'linear' | 'log' |
    'log2'; ``center`` pads ``n_fft // 2`` on both sides with ``pad_mode``), plus
    ``num_samples`` to fix the input length. ``iSTFT`` and ``verbose`` are accepted for
    compatibility; no inverse is built (``iSTFT=True`` raises).

    Output: 'Complex' ``(B, F, T, 2)`` (real, imag), 'Magnitude' ``(B, F, T)``,
    'Phase' ``(B, F, T)`` with ``T = 1 + L // hop`` when centred.

    Differences from nnAudio, on purpose:
    - 'Phase' is in ``(-pi + 1e-4, pi + 1e-4]``: angles within 1e-4 rad above -pi are folded
      to +pi (:func:`nnaudio_export.functional.phase`), so every runtime agrees at the
      branch cut where nnAudio's flips by 2 pi.
    - Bad arguments raise ``ValueError`` naming the parameter; nnAudio prints or fails later.
    - Trainable magnitude adds 1e-8 inside the sqrt as nnAudio does; otherwise none.

    ``precision`` (not in nnAudio): 'single' (default) applies the kernels in float32, as the
    two-stage factorised DFT of :mod:`nnaudio_export.layers.factorised_dft` when they are
    frozen DFT kernels (``freq_scale='no'``) and ``(n_fft, hop)`` has a split that saves half
    (5.9x fewer multiply-adds at n_fft 400 / hop 160), else with one conv1d; 'extended' runs those factorised stages in float64 and rounds
    their output once (bins 80 dB below a loud tone keep ~1.5e-7 relative accuracy instead of
    ~1.5e-4), other banks with the error-free split of :mod:`nnaudio_export.layers.frame_conv`
    (~2e-6); frozen kernels only. ``dtype`` (not in
    nnAudio) is the kernels' dtype: ``torch.float64`` builds a reference whose kernels were
    never rounded to float32. ``target`` (not in nnAudio): 'cpu' (default) or 'cuda', the
    device the factorised DFT is laid out for (same numbers to float32 rounding; a CPU runs the
    'cuda' layout 1.7-1.9x slower and a GPU the 'cpu' one up to ~2x slower; see
    :class:`~nnaudio_export.layers.factorised_dft.FactorisedDFT`). nnAudio's unused
    ``window_mask`` buffer is not kept.
    """

    def __init__(self, n_fft: int = 2048, win_length: Optional[int] = None,
                 freq_bins: Optional[int] = None, hop_length: Optional[int] = None,
                 window: WindowSpec = "hann", freq_scale: str = "no", center: bool = True,
                 pad_mode: str = "reflect", iSTFT: bool = False, fmin: float = 50,
                 fmax: float = 6000, sr: float = 22050, trainable: bool = False,
                 output_format: str = "Complex", num_samples: Optional[int] = None,
                 verbose: bool = True, precision: str = "single",
                 dtype: torch.dtype = torch.float32, target: str = "cpu"):
        super().__init__()
        check_args(STFT_ARGS, locals())
        win_length = n_fft if win_length is None else win_length
        require(win_length <= n_fft, "win_length", f"must be <= n_fft ({n_fft}), got {win_length}")
        if hop_length is None:
            hop_length = max(1, win_length // 4)
        freq_bins = n_fft // 2 + 1 if freq_bins is None else freq_bins
        require(not iSTFT, "iSTFT", "the inverse STFT is not provided by nnaudio_export")
        if freq_scale != "no":
            require(0 < fmin < fmax, "fmin", f"need 0 < fmin < fmax, got fmin={fmin}, fmax={fmax}")
            require(fmax <= sr / 2, "fmax", f"{fmax} Hz is above the Nyquist frequency {sr / 2} Hz")
        require_kernel_memory(2 * freq_bins, n_fft, "n_fft", "the STFT kernels", precision)
        get_window(window, win_length)  # validates `window` early, naming it

        cos, sin, padded_window = fourier_kernels(n_fft, win_length, freq_bins, fmin, fmax, sr,
                                                  freq_scale, window)
        kernel = np.concatenate([cos, sin], axis=0)[:, None, :]
        register_kernel(self, "kernel", kernel, trainable, dtype)
        dft = DFTFrames(padded_window, hop_length, freq_bins, n_fft) if freq_scale == "no" else None
        self.conv = frame_conv(kernel, precision, trainable, dtype, dft, framed=True, target=target)
        self.precision = self.conv.precision
        self.n_fft = n_fft
        self.win_length = win_length
        self.hop_length = hop_length
        self.stride = hop_length  # nnAudio's attribute name
        self.freq_bins = freq_bins
        self.center = bool(center)
        self.pad_mode = pad_mode
        self.pad_amount = n_fft // 2 if center else 0
        self.output_format = output_format
        self.trainable = bool(trainable)
        self.eps = 1e-8 if trainable else 0.0
        self.sr = float(sr)
        self.freq_scale = freq_scale
        self.bins2freq = fourier_bin_frequencies(n_fft, freq_bins, fmin, fmax, sr, freq_scale).tolist()
        # torch's reflect pad needs pad < length; without centring the frame must fit.
        min_len = self.pad_amount + 1 if (center and pad_mode == "reflect") else (1 if center else n_fft)
        self._set_lengths(num_samples, min_len,
                          f"reflect padding of n_fft // 2 = {self.pad_amount}" if center else f"n_fft = {n_fft}")

    def load_kernel(self, kernel: Tensor) -> None:
        """Replace the ``[cos; sin]`` kernel bank by another of its shape (nnAudio's, trained
        or rounded to float32 as nnAudio builds it) and apply exactly that from now on: the
        factorised DFT is built from the window, not from ``kernel``, and the 'extended'
        split kernels from the kernel at construction, so either is rebuilt as the direct
        conv (or the split of the new kernel)."""
        require(tuple(kernel.shape) == tuple(self.kernel.shape), "kernel",
                f"expected shape {list(self.kernel.shape)}, got {list(kernel.shape)}")
        with torch.no_grad():
            self.kernel.copy_(kernel.detach().to(self.kernel.dtype))
        if self.precision == "extended":
            self.conv = SplitFrameConv(kernel.detach().double().cpu().numpy(), self.kernel.dtype, framed=True)
        else:
            self.conv = FrameConv()

    def output_shape_for(self, num_samples: int) -> Tuple[int, ...]:
        t = FN.frame_count(num_samples, self.n_fft, self.hop_length, self.center)
        if self.output_format == "Complex":
            return (self.freq_bins, t, 2)
        return (self.freq_bins, t)

    def spectrum(self, x: Tensor, drop_start: int = 0, drop_end: int = 0) -> Tuple[Tensor, Tensor]:
        """(real, imag), each (B, F, T), of any accepted input; ``drop_start`` / ``drop_end``
        frames left out by padding less (:func:`~nnaudio_export.functional.pad_for_frames`)."""
        x = FN.as_batch(x)
        FN.check_num_samples(x, self._num_samples, self._min_samples)
        x = FN.pad_for_frames(x, self.pad_amount, self.pad_mode, self.n_fft, self.hop_length,
                              drop_start, drop_end)
        return FN.stacked_spectrum(self.conv(x, self.kernel, self.hop_length), self.freq_bins)

    def power_spectrum(self, x: Tensor, power: float, drop_start: int = 0, drop_end: int = 0) -> Tensor:
        """``|X| ** power`` (B, F, T) (+1e-8 inside when trainable), computed without
        splitting real and imaginary parts; frames dropped as in :meth:`spectrum`."""
        x = FN.as_batch(x)
        FN.check_num_samples(x, self._num_samples, self._min_samples)
        x = FN.pad_for_frames(x, self.pad_amount, self.pad_mode, self.n_fft, self.hop_length,
                              drop_start, drop_end)
        p = self.conv.squared(x, self.kernel, self.hop_length)
        return FN.power_from_squared(p, power, self.eps)

    def forward(self, x: Tensor) -> Tensor:
        if self.output_format == "Magnitude":
            return self.power_spectrum(x, 1.0)
        real, imag = self.spectrum(x)
        if self.output_format == "Phase":
            return FN.phase(real, imag)
        return torch.stack([real, imag], dim=-1)

    def extra_repr(self) -> str:
        return (f"n_fft={self.n_fft}, win_length={self.win_length}, hop_length={self.hop_length}, "
                f"freq_bins={self.freq_bins}, freq_scale={self.freq_scale!r}, center={self.center}, "
                f"output_format={self.output_format!r}, num_samples={self.num_samples}, "
                f"precision={self.precision!r}")
