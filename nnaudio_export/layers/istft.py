"""Inverse STFT as a matmul and an overlap-add, with ``torch.istft``'s semantics."""
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import functional as FN
from ..checks import Param, check_args, require
from ..kernels.inverse import NOLA_TOLERANCE, nola_gap, synthesis_window, window_sumsquare
from ..kernels.windows import WindowSpec
from .common import kernel_tensor
from .inverse_dft import factors_text, irfft_module

PADDINGS = ("center", "same")

# The constructor's arguments, checked by the same rules as a spec's (the istft stage picks
# its parameters from here).
ISTFT_ARGS = (Param("n_fft", 2048, "int", low=2),
              Param("win_length", None, "int", optional=True, low=1),
              Param("freq_bins", None, "int", optional=True, low=1),
              Param("hop_length", None, "int", optional=True, low=1),
              Param("window", "hann", "window"),
              Param("freq_scale", "no", "str", choices=("no",),
                    doc="only 'no' (the DFT's own bins) has an exact inverse"),
              Param("center", True, "bool"),
              Param("fmin", 50, "number"),
              Param("fmax", 6000, "number"),
              Param("sr", 22050, "number", low=0, low_open=True),
              Param("trainable_kernels", False, "bool"),
              Param("trainable_window", False, "bool"),
              Param("verbose", True, "bool"),
              Param("refresh_win", True, "bool"),
              Param("normalized", False, "bool"),
              Param("onesided", None, "bool", optional=True),
              Param("length", None, "int", optional=True, low=1,
                    doc="output samples (default: the natural length)"),
              Param("padding", "center", "str", choices=PADDINGS),
              Param("num_frames", None, "int", optional=True, low=1))


def _bins(n_fft: int, freq_bins: Optional[int], onesided: Optional[bool]) -> Tuple[int, bool]:
    """(freq_bins, onesided): ``n_fft // 2 + 1`` bins are a one-sided spectrum, ``n_fft``
    a two-sided one (whose upper half is not read, as ``torch.istft``)."""
    half = n_fft // 2 + 1
    if freq_bins is None:
        return (n_fft, False) if onesided is False else (half, True)
    if onesided is None:
        require(freq_bins in (half, n_fft), "freq_bins",
                f"an inverse needs n_fft // 2 + 1 = {half} (one-sided) or n_fft = {n_fft} "
                f"(two-sided) bins, got {freq_bins}")
        return freq_bins, freq_bins == half
    expected = half if onesided else n_fft
    require(freq_bins == expected, "freq_bins",
            f"onesided={onesided} with n_fft={n_fft} needs {expected} bins, got {freq_bins}")
    return freq_bins, onesided


class iSTFT(nn.Module):
    """Inverse short-time Fourier transform: ``(B, freq_bins, T, 2)`` (real, imag; the
    :class:`~nnaudio_export.layers.STFT` layer's 'Complex' output) -> audio ``(B, L)``.

    Each frame is ``w[n] irfft(X_t, n_fft)[n]``, with an inverse real DFT of float64-built
    constants (:mod:`~nnaudio_export.layers.inverse_dft`: three or two stages of small DFTs
    as matmuls on the spectrum's layout, or one matrix); the frames are overlap-added (by the
    factored DFT itself when its leading factors divide the hop, else
    :func:`~nnaudio_export.functional.overlap_add`) and divided by the overlap-added
    squared window. Only matmul, pad, reshape, transpose and elementwise ops: it passes
    ``torch.jit.script`` and both ONNX exporters (``torch.istft`` does not export).

    Arguments are nnAudio 0.3.x ``nnAudio.features.iSTFT``'s (``n_fft``, ``win_length``,
    ``freq_bins``, ``hop_length=None`` -> ``win_length // 4``, ``window``, ``center``,
    ``trainable_kernels``, ``trainable_window``; ``freq_scale``, ``fmin``, ``fmax``,
    ``sr``, ``verbose`` and ``refresh_win`` are accepted for compatibility), and the
    semantics are ``torch.istft``'s:

    - ``center=True`` trims ``n_fft // 2`` samples at both ends; the natural length is
      ``hop (T - 1)`` (``n_fft + hop (T - 1)`` uncentred);
    - ``length`` cuts or zero-pads the end to exactly ``length`` samples;
    - ``normalized=True`` inverts a forward STFT that was divided by ``sqrt(n_fft)``;
    - ``onesided`` (default: from ``freq_bins``): ``n_fft // 2 + 1`` bins, or ``n_fft`` bins
      of which only the first ``n_fft // 2 + 1`` are read; the imaginary parts of the DC
      and Nyquist bins are ignored;
    - ``padding='same'`` (with ``center=False``): Vocos' ``ISTFT(padding='same')``, trimming
      ``(win_length - hop_length) // 2`` at both ends, so ``T`` frames give ``T hop``
      samples when ``win_length - hop_length`` is even.

    ``num_frames`` (not in nnAudio) fixes ``T``: the layer then refuses other frame counts
    and knows ``output_shape``, and the window-sum envelope is a constant computed in
    float64. Without it (or with ``trainable_window``) the envelope is computed per call.
    Where the envelope is below 1e-11 (``torch.istft``'s NOLA check) no inverse exists:
    that is a ``ValueError`` at construction naming ``hop_length`` (the window and hop
    violate NOLA everywhere) or ``window`` (only at the edges: a window that is 0 at its
    ends with ``center=False``), where ``torch.istft`` fails at call time.

    Differences from nnAudio, on purpose: ``onesided`` and ``length`` are constructor
    arguments (nnAudio takes them in ``forward``; an exported graph needs them fixed);
    ``center=False`` keeps the natural length (nnAudio cuts to ``length`` only); where the
    envelope vanishes nnAudio leaves samples undivided, we refuse the configuration;
    ``freq_scale`` must be 'no' (other bin spacings have no exact inverse); a ``win_length``
    below ``n_fft`` is centre-padded as in ``torch.istft``. ``dtype`` is the kernels' dtype.
    """

    __jit_unused_properties__ = ["num_frames", "output_shape"]

    def __init__(self, n_fft: int = 2048, win_length: Optional[int] = None,
                 freq_bins: Optional[int] = None, hop_length: Optional[int] = None,
                 window: WindowSpec = "hann", freq_scale: str = "no", center: bool = True,
                 fmin: float = 50, fmax: float = 6000, sr: float = 22050,
                 trainable_kernels: bool = False, trainable_window: bool = False,
                 verbose: bool = True, refresh_win: bool = True, normalized: bool = False,
                 onesided: Optional[bool] = None, length: Optional[int] = None,
                 padding: str = "center", num_frames: Optional[int] = None,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        check_args(ISTFT_ARGS, locals())
        win_length = n_fft if win_length is None else win_length
        require(win_length <= n_fft, "win_length", f"must be <= n_fft ({n_fft}), got {win_length}")
        hop_length = max(1, win_length // 4) if hop_length is None else hop_length
        require(not (padding == "same" and center), "padding",
                "'same' trims (win_length - hop_length) // 2 samples at both ends of uncentred "
                "frames (Vocos); use it with center=False")
        freq_bins, onesided = _bins(n_fft, freq_bins, onesided)
        self.length = -1 if length is None else int(length)
        win = synthesis_window(window, win_length, n_fft)
        self.n_fft = n_fft
        self.win_length = win_length
        self.hop_length = hop_length
        self.stride = hop_length  # nnAudio's attribute name
        self.freq_bins = freq_bins
        self.onesided = onesided
        self.bins_used = n_fft // 2 + 1
        self.center = bool(center)
        self.normalized = bool(normalized)
        self.padding = padding
        self.trim = n_fft // 2 if (center and padding == "center") else \
            max(0, (win_length - hop_length) // 2) if padding == "same" else 0
        self.trainable_window = bool(trainable_window)
        self.idft = irfft_module(n_fft, win, normalized, trainable_kernels, trainable_window, dtype,
                                 hop_length)
        self._num_frames, self._min_frames = self._check_frames(num_frames, window, win)
        self.fixed_envelope = self._num_frames >= 0 and not trainable_window
        inverse = np.zeros(0)
        if self.fixed_envelope:
            start, stop, _ = self.region(self._num_frames)
            inverse = 1.0 / window_sumsquare(win, self._num_frames, hop_length)[start:stop]
        self.register_buffer("inv_envelope", kernel_tensor(inverse, dtype))

    def region(self, frames: int) -> Tuple[int, int, int]:
        """(start, stop, length) for ``frames`` frames: samples ``start:stop`` of the
        overlap-add are kept (then zero-padded to ``length``)."""
        ola = self.n_fft + self.hop_length * (frames - 1)
        out = self.length if self.length >= 0 else ola - 2 * self.trim
        return self.trim, min(self.trim + out, ola), out

    def _envelope_gap(self, frames: int, win: np.ndarray) -> Tuple[int, float]:
        """(first kept sample whose envelope is below the tolerance, or -1; its value)."""
        start, stop, _ = self.region(frames)
        env = window_sumsquare(win, frames, self.hop_length)[start:stop]
        low = np.flatnonzero(env < NOLA_TOLERANCE)
        return (int(low[0]), float(env[low[0]])) if low.size else (-1, 0.0)

    def _check_frames(self, num_frames: Optional[int], window: WindowSpec,
                      win: np.ndarray) -> Tuple[int, int]:
        """(num_frames or -1, the fewest frames accepted); ``ValueError`` where no inverse
        exists: NOLA violated (``hop_length``), the envelope 0 at the kept edges
        (``window``), or no output sample (``num_frames``)."""
        gap = nola_gap(win, self.hop_length)
        require(gap is None, "hop_length",
                f"{window!r} ({self.win_length} samples) with hop_length {self.hop_length} violates "
                f"NOLA: the overlap-added squared window is 0 at offset {gap} of every hop, so no "
                "inverse exists; use a smaller hop_length or another window")

        def usable(frames: int) -> bool:
            start, stop, out = self.region(frames)
            return out > 0 and stop > start and self._envelope_gap(frames, win)[0] < 0

        # From ceil(n_fft / hop) + 1 frames on, both edges are complete and the middle is the
        # steady state checked above: every longer input is usable when this one is.
        steady = -(-self.n_fft // self.hop_length) + 1
        probe = steady if num_frames is None else int(num_frames)
        start, stop, out = self.region(probe)
        require(out > 0 and stop > start, "num_frames",
                f"{probe} frames give no output samples (the overlap-add is {self.n_fft} + "
                f"{self.hop_length} (frames - 1) samples, {2 * self.trim} of them trimmed)")
        index, value = self._envelope_gap(probe, win)
        require(index < 0, "window",
                f"the overlap-added squared window is {value:.1e} at output sample {index} (below "
                f"{NOLA_TOLERANCE:g}: torch.istft stops there): the window ({window!r}, "
                f"{self.win_length} samples centred in n_fft={self.n_fft}) is 0 at its ends, and with "
                f"center={self.center}, padding={self.padding!r} an edge sample is covered by one frame "
                "only; use center=True, padding='same', or an n_fft-long window nonzero at its ends "
                "(e.g. 'hamming')")
        if num_frames is not None:
            return probe, probe
        fewest = steady
        while fewest > 1 and usable(fewest - 1):
            fewest -= 1
        return -1, fewest

    @property
    def num_frames(self) -> Optional[int]:
        return None if self._num_frames < 0 else self._num_frames

    @property
    def output_shape(self) -> Optional[Tuple[int, ...]]:
        """``(length,)`` without the batch axis, or None when ``num_frames`` is not fixed."""
        n = self.num_frames
        return None if n is None else self.output_shape_for(n)

    def output_shape_for(self, num_frames: int) -> Tuple[int, ...]:
        return (self.region(num_frames)[2],)

    def forward(self, x: Tensor) -> Tensor:
        FN.check_spectrum(x, 4, self.freq_bins, self._num_frames, self._min_frames)
        return self.spectrum_to_audio(x)

    def synthesize(self, real: Tensor, imag: Tensor) -> Tensor:
        """Audio ``(B, L)`` of a spectrum given as real and imaginary parts, each
        ``(B, freq_bins, T)`` (shapes not checked: for callers that built them)."""
        return self.spectrum_to_audio(torch.stack([real, imag], dim=-1))

    def spectrum_to_audio(self, x: Tensor) -> Tensor:
        """``(B, freq_bins, T, 2)`` -> audio ``(B, L)`` (a two-sided spectrum's upper half
        is not read)."""
        if self.freq_bins != self.bins_used:
            x = x[:, : self.bins_used]
        frames = x.size(2)
        y = self.idft.overlap_added(x)
        start, stop, out = self.region(frames)
        y = y[:, start:stop]
        if self.fixed_envelope:
            y = y * self.inv_envelope
        else:
            y = y / self.envelope(frames)[:, start:stop]
        if out > stop - start:
            y = F.pad(y, [0, out - (stop - start)])
        return y

    def envelope(self, frames: int) -> Tensor:
        """The overlap-added squared window ``(1, n_fft + hop (frames - 1))``, from the
        current window (per call: used without a fixed ``num_frames`` or when trainable)."""
        w2 = (self.idft.window * self.idft.window).reshape(1, 1, self.n_fft)
        return FN.overlap_add(w2.expand(1, frames, self.n_fft), self.hop_length)

    def extra_repr(self) -> str:
        return (f"n_fft={self.n_fft}, win_length={self.win_length}, hop_length={self.hop_length}, "
                f"freq_bins={self.freq_bins}, center={self.center}, padding={self.padding!r}, "
                f"normalized={self.normalized}, length={None if self.length < 0 else self.length}, "
                f"num_frames={self.num_frames}, idft={self.idft.method!r}{_factors(self.idft)}")


def _factors(idft: nn.Module) -> str:
    """``", factors=16x8x8"`` for a factored inverse DFT (see its ``describe``), else ``""``."""
    text = factors_text(idft.describe())
    return f", factors={text}" if text else ""
