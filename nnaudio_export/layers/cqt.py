"""Constant-Q transforms with nnAudio 0.3.x's arguments: CQT1992v2 and CQT2010v2."""

from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import functional as FN
from ..checks import Param, check_args, pick, require, require_positive_int
from ..kernels.cqt import cqt2010_plan, cqt_filter_lengths, cqt_kernels, cqt_n_bins, cqt_quality
from ..kernels.windows import WindowSpec, get_window
from .common import FrontendLayer, register_kernel, require_kernel_memory
from .frame_conv import PRECISION, FrameConv, frame_conv
from .multirate import multirate_output_shape, octave_lengths, register_decimation, smallest_length
from .stft import STFT_ARGS

OUTPUT_FORMATS = ("Magnitude", "Complex", "Phase")
PAD_MODES = ("reflect", "constant")
NORMALIZATION_TYPES = ("librosa", "convolutional", "wrap")

# The CQT layers' arguments (``kind`` is the ``cqt`` stage's choice of layer): the layers
# check theirs with these and the stage declares its own from here.
CQT_ARGS = (Param("kind", "1992v2", "str", choices=("1992v2", "2010v2")),
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
            PRECISION,
            Param("output_format", "Magnitude", "str", choices=OUTPUT_FORMATS)
            ) + pick(STFT_ARGS, "sr", "trainable", "num_samples", "verbose")
_COMMON_ARGS = pick(CQT_ARGS, "sr", "hop_length", "fmin", "fmax", "n_bins", "bins_per_octave",
                    "filter_scale", "window", "pad_mode", "normalization_type", "precision",
                    "output_format", "trainable", "num_samples", "verbose", "norm")


def _check_common(args, extra: Tuple[str, ...]) -> int:
    """Check the layer's arguments (its ``locals()``); return ``n_bins`` (from ``fmax`` when
    given). The kernel width follows from the lowest bin: refused before it is built when
    it would pass the memory limit."""
    check_args(_COMMON_ARGS + pick(CQT_ARGS, *extra), args)
    fmin, fmax, bpo = args["fmin"], args["fmax"], args["bins_per_octave"]
    if fmax is None:
        n_bins = args["n_bins"]
    else:
        require(fmax > fmin, "fmax", f"must be above fmin ({fmin}), got {fmax}")
        n_bins = require_positive_int(cqt_n_bins(fmin, fmax, 0, bpo), "fmax")
    longest = float(cqt_filter_lengths(cqt_quality(args["filter_scale"], bpo), args["sr"], [fmin])[0])
    width = int(2.0 ** np.ceil(np.log2(longest)))
    require_kernel_memory(2 * max(n_bins, bpo), width, "fmin", "the CQT kernels", args["precision"])
    get_window(args["window"], 16)  # validates `window` early, naming it
    return n_bins


def _format(real: Tensor, imag: Tensor, output_format: str, eps: float) -> Tensor:
    if output_format == "Magnitude":
        return FN.magnitude(real, imag, eps)
    if output_format == "Phase":
        return FN.unit_phasor(real, imag)
    return torch.stack([real, imag], dim=-1)


class CQT1992v2(FrontendLayer):
    """Constant-Q transform as ONE strided ``conv1d`` of time-domain CQT kernels.

    Arguments, defaults and numbers are nnAudio 0.3.x's ``nnAudio.features.CQT1992v2``
    (kernels of :func:`nnaudio_export.kernels.cqt.cqt_kernels`, ``center`` pads
    ``kernel_width // 2`` on both sides with ``pad_mode``), plus ``num_samples`` to fix the
    input length. ``verbose`` is accepted and ignored.

    Output: 'Magnitude' ``(B, F, T)``, 'Complex' ``(B, F, T, 2)`` (real, imag), 'Phase'
    ``(B, F, T, 2)`` (cos, sin of the phase, as nnAudio), ``T = 1 + L // hop`` when centred.

    Differences from nnAudio, on purpose:
    - ``normalization_type`` ('librosa': times ``sqrt(N_k)``; 'convolutional': none; 'wrap':
      times 2) is a constructor argument (nnAudio takes it at forward time); its scale is
      folded into the kernel rows, so trainable kernels are the scaled ones.
    - Bad arguments (top bin above Nyquist: ``n_bins``/``fmax``; ``fmin <= 0``; unknown
      ``window``/``output_format``/``normalization_type``/``pad_mode``) raise ``ValueError``
      naming the parameter; nnAudio prints, or fails at forward time.
    - 'Phase' is ``z / |z|`` (``(1, 0)`` at ``z = 0``), equal to nnAudio's
      ``cos/sin(atan2)`` without the trigonometry.

    ``precision`` ('single' | 'extended') and ``dtype`` (not in nnAudio) as for
    :class:`~nnaudio_export.layers.STFT`: the kernels are applied through
    :mod:`~nnaudio_export.layers.frame_conv`.
    """

    def __init__(self, sr: float = 22050, hop_length: int = 512, fmin: float = 32.70,
                 fmax: Optional[float] = None, n_bins: int = 84, bins_per_octave: int = 12,
                 filter_scale: float = 1, norm=1, window: WindowSpec = "hann",
                 center: bool = True, pad_mode: str = "reflect", trainable: bool = False,
                 output_format: str = "Magnitude", normalization_type: str = "librosa",
                 num_samples: Optional[int] = None, verbose: bool = True,
                 precision: str = "single", dtype: torch.dtype = torch.float32):
        super().__init__()
        n_bins = _check_common(locals(), ("center",))
        Q = cqt_quality(filter_scale, bins_per_octave)
        real, imag, width, lengths, freqs = cqt_kernels(Q, sr, fmin, n_bins, bins_per_octave,
                                                        norm, window, fmax)
        scale = _norm_scale(normalization_type, lengths)[:, None]
        kernel = np.concatenate([real * scale, imag * scale], axis=0)[:, None, :]
        register_kernel(self, "kernel", kernel, trainable, dtype)
        self.conv = frame_conv(kernel, precision, trainable, dtype)
        self.precision = self.conv.precision
        self.register_buffer("lengths", torch.from_numpy(lengths.astype(np.float32)))
        # A scale applied after the conv instead of folded into the kernel rows: only for
        # kernels taken as they are from nnAudio (nnaudio_export.convert), where rounding the
        # scaled rows to float32 would move the output by ~3e-6 x peak.
        self.register_buffer("output_scale", torch.ones(n_bins, 1, dtype=dtype))
        self.scaled_output = False
        self.frequencies = freqs
        self.sr = float(sr)
        self.n_bins = n_bins
        self.bins_per_octave = bins_per_octave
        self.kernel_width = width
        self.hop_length = hop_length
        self.center = bool(center)
        self.pad_mode = pad_mode
        self.pad_amount = width // 2 if center else 0
        self.output_format = output_format
        self.normalization_type = normalization_type
        self.trainable = bool(trainable)
        self.eps = 1e-8 if trainable else 0.0
        if center:
            min_len = self.pad_amount + 1 if pad_mode == "reflect" else 1
            why = f"{pad_mode} padding of kernel_width // 2 = {self.pad_amount}"
        else:
            min_len, why = width, f"kernel_width = {width}"
        self._set_lengths(num_samples, min_len, why)

    def output_shape_for(self, num_samples: int) -> Tuple[int, ...]:
        t = FN.frame_count(num_samples, self.kernel_width, self.hop_length, self.center)
        return (self.n_bins, t) if self.output_format == "Magnitude" else (self.n_bins, t, 2)

    def spectrum(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """(real, imag), each (B, F, T), of any accepted input."""
        x = FN.as_batch(x)
        FN.check_num_samples(x, self._num_samples, self._min_samples)
        x = FN.pad_both(x, self.pad_amount, self.pad_mode)
        real, imag = FN.stacked_spectrum(self.conv(x, self.kernel, self.hop_length), self.n_bins)
        if self.scaled_output:
            return real * self.output_scale, imag * self.output_scale
        return real, imag

    def forward(self, x: Tensor) -> Tensor:
        real, imag = self.spectrum(x)
        return _format(real, imag, self.output_format, self.eps)

    def extra_repr(self) -> str:
        return (f"sr={self.sr}, hop_length={self.hop_length}, n_bins={self.n_bins}, "
                f"bins_per_octave={self.bins_per_octave}, kernel_width={self.kernel_width}, "
                f"output_format={self.output_format!r}, "
                f"normalization_type={self.normalization_type!r}, num_samples={self.num_samples}, "
                f"precision={self.precision!r}")


def _norm_scale(normalization_type: str, lengths: np.ndarray) -> np.ndarray:
    if normalization_type == "librosa":
        return np.sqrt(lengths)
    if normalization_type == "wrap":
        return np.full(lengths.shape, 2.0)
    return np.ones(lengths.shape)


class CQT2010Octave(nn.Module):
    """One octave of :class:`CQT2010v2` at its own sample rate: whether the rate is halved
    first, the centre padding and hop at that rate, which kernel bank it applies ('top' or
    'deep') and which rows of that bank's output are its bins."""

    def __init__(self, hop: int, width: int, deep: bool, bin_start: int, n_bins: int,
                 bank_rows: int, decimate: bool):
        super().__init__()
        self.hop = int(hop)
        self.width = int(width)
        self.pad = self.width // 2
        self.deep = bool(deep)
        self.bin_start = int(bin_start)
        self.n_bins = int(n_bins)
        self.bank_rows = int(bank_rows)
        self.decimate = bool(decimate)

    def forward(self, y: Tensor) -> Tuple[Tensor, Tensor]:
        """(real, imag) of this octave's bins from its bank's ``[cos; sin]`` output."""
        lo = self.bin_start
        hi = lo + self.n_bins
        return y[:, lo:hi], -y[:, self.bank_rows + lo:self.bank_rows + hi]


class CQT2010v2(FrontendLayer):
    """Multirate constant-Q transform: the top octave's kernels applied to the signal
    halved once per octave (Schoerkhuber & Klapuri 2010), as nnAudio 0.3.x's
    ``nnAudio.features.CQT2010v2``, with the octave loop unrolled at construction
    (``self.octaves``, one :class:`CQT2010Octave` each, top octave first).

    Arguments and defaults are nnAudio's, plus ``normalization_type`` (a constructor
    argument here), ``num_samples``, ``precision`` and ``dtype`` (as for
    :class:`~nnaudio_export.layers.STFT`; the kernel banks are applied through
    :mod:`~nnaudio_export.layers.frame_conv`, the anti-aliasing filters with a plain conv).
    ``norm`` is accepted and unused, as in nnAudio; ``basis_norm`` normalises the kernels;
    ``verbose`` is ignored. Frames are always centred (``pad_mode`` padding of
    ``kernel_width // 2`` at every rate).

    Frame-alignment rule (see :func:`nnaudio_export.kernels.cqt.cqt2010_plan`): after the
    early downsampling by ``downsample_factor = 2 ** e`` the hop ``hop_e = hop /
    downsample_factor`` is halved only ``v = min(n_octaves - 1, twos_in(hop_e))`` times, so
    every octave's hop is an exact integer and frame ``t`` of every octave is centred on input
    sample ``t * hop``. Octaves below the ``v``-th stay at that last rate, in one kernel bank
    designed at that rate (longer kernels, as CQT1992 does). Octaves whose frame counts differ
    are all cut to the smallest count (known from the input length). When ``hop`` is divisible
    by ``2 ** (e + n_octaves - 1)`` the algorithm and numbers are nnAudio's.

    Differences from nnAudio, on purpose (bugs there):
    - Early downsampling (e.g. ``n_bins`` 24..72 at sr 22050, fmin 32.7): nnAudio multiplies
      by ``downsample_factor`` and uses ``sqrt`` of filter lengths at the *downsampled* rate,
      so its output is ``sqrt(factor)`` ('librosa') or ``factor`` ('convolutional', 'wrap')
      times too large. Here 'librosa' multiplies by ``sqrt(ceil(Q sr / f_k))`` at the original
      rate and no factor, matching CQT1992v2 and librosa.
    - ``hop_length`` not divisible by ``2 ** (n_octaves - 1)``: nnAudio fails (or truncates
      ``hop // factor`` and misaligns frames); here the rule above applies. The early
      downsampling count uses the number of factors 2 in the hop instead of
      ``ceil(log2(hop))`` (the same whenever nnAudio's arithmetic is exact).
    - ``n_bins < bins_per_octave``: nnAudio builds the wrong bins (below ``fmin``); here the
      top octave bank always has ``bins_per_octave`` rows and the needed ones are kept.
    - ``fmax`` sets ``n_bins = ceil(bins_per_octave log2(fmax / fmin))`` as in CQT1992v2
      (nnAudio's CQT2010v2 ignores it) and ``window`` is used (nnAudio always uses Hann).
    - Frame counts that differ between octaves are trimmed (nnAudio fails on ``torch.cat``).
    - Bad arguments raise ``ValueError`` naming the parameter; too-short inputs for reflect
      padding at the lowest rate raise instead of silently switching to zero padding.
    """

    def __init__(self, sr: float = 22050, hop_length: int = 512, fmin: float = 32.70,
                 fmax: Optional[float] = None, n_bins: int = 84, bins_per_octave: int = 12,
                 filter_scale: float = 1, norm: bool = True, basis_norm=1,
                 window: WindowSpec = "hann", pad_mode: str = "reflect",
                 earlydownsample: bool = True, trainable: bool = False,
                 output_format: str = "Magnitude", normalization_type: str = "librosa",
                 num_samples: Optional[int] = None, verbose: bool = True,
                 precision: str = "single", dtype: torch.dtype = torch.float32):
        super().__init__()
        n_bins = _check_common(locals(), ("basis_norm", "earlydownsample"))
        plan = cqt2010_plan(sr, hop_length, fmin, n_bins, bins_per_octave, filter_scale,
                            bool(earlydownsample))
        param = "n_bins" if fmax is None else "fmax"
        require(plan["fmax_t"] <= sr / 2, param,
                f"the top bin {plan['fmax_t']:.2f} Hz is above the Nyquist frequency {sr / 2} Hz")
        widths, rows = self._build_banks(plan, fmin, bins_per_octave, basis_norm, window,
                                         trainable, precision, dtype)
        self.precision = self.conv_top.precision
        self.downsample_factor = int(plan["factor"])
        register_decimation(self, self.downsample_factor, dtype)
        stages = list(reversed(plan["stages"]))  # top octave first, as they are computed
        self.octaves = nn.ModuleList([
            CQT2010Octave(s["hop"], widths[s["bank"]], s["bank"] == "deep", s["bin_start"],
                          s["n_bins"], rows[s["bank"]], decimate=i > 0)
            for i, s in enumerate(stages)])
        freqs = fmin * 2.0 ** (np.arange(n_bins) / float(bins_per_octave))
        lengths = np.ceil(plan["Q"] * sr / freqs)  # at the ORIGINAL rate (nnAudio: at sr_e)
        self.register_buffer("scale", torch.from_numpy(
            _norm_scale(normalization_type, lengths)[:, None].astype(np.float32)))
        self.register_buffer("lengths", torch.from_numpy(lengths.astype(np.float32)))
        self.frequencies = freqs
        self.sr = float(sr)
        self.hop_length = hop_length
        self.n_bins = n_bins
        self.bins_per_octave = bins_per_octave
        self.n_octaves = int(plan["n_octaves"])
        self.octave_halvings = int(plan["v"])
        self.pad_mode = pad_mode
        self.output_format = output_format
        self.normalization_type = normalization_type
        self.trainable = bool(trainable)
        self.eps = 1e-8 if trainable else 0.0
        self._set_lengths(num_samples, self._min_length(),
                          f"{pad_mode} padding of up to {max(o.pad for o in self.octaves)} samples at "
                          f"the lowest sample rate, after "
                          f"{int(np.log2(self.downsample_factor)) + len(self.octaves) - 1} halvings")

    def _build_banks(self, plan, fmin, bins_per_octave, basis_norm, window, trainable,
                     precision, dtype):
        """The top-octave bank (designed at the rate after early downsampling) and, when
        octaves stay at the last halved rate, the 'deep' bank designed at that rate; each
        with its frame-conv module. Returns their kernel widths and row counts."""
        Q, sr_e, v = plan["Q"], plan["sr_e"], plan["v"]
        top_r, top_i, top_w, _, _ = cqt_kernels(Q, sr_e, plan["fmin_t"], bins_per_octave,
                                                bins_per_octave, basis_norm, window,
                                                topbin_check=False)
        top = np.concatenate([top_r, top_i])[:, None, :]
        register_kernel(self, "kernel_top", top, trainable, dtype)
        self.conv_top = frame_conv(top, precision, trainable, dtype)
        widths = {"top": top_w, "deep": 0}
        rows = {"top": bins_per_octave, "deep": 0}
        deep = [s for s in plan["stages"] if s["bank"] == "deep"]
        if deep:
            d_r, d_i, widths["deep"], _, _ = cqt_kernels(Q, sr_e / 2 ** v, fmin, deep[0]["n_bins"],
                                                         bins_per_octave, basis_norm, window,
                                                         topbin_check=False)
            rows["deep"] = deep[0]["n_bins"]
            bank = np.concatenate([d_r, d_i])[:, None, :]
            register_kernel(self, "kernel_deep", bank, trainable, dtype)
            self.conv_deep = frame_conv(bank, precision, trainable, dtype)
        else:  # never applied; kept so that the scripted forward has both branches
            self.register_buffer("kernel_deep", torch.zeros(0, 1, 1, dtype=dtype))
            self.conv_deep = FrameConv()
        return widths, rows

    def _octave_lengths(self, n: int) -> Optional[List[int]]:
        return octave_lengths(n, self.downsample_factor, [o.decimate for o in self.octaves])

    def _min_length(self) -> int:
        def ok(n: int) -> bool:
            lens = self._octave_lengths(n)
            if lens is None:
                return False
            return all(l >= (o.pad + 1 if self.pad_mode == "reflect" else 1)
                       for l, o in zip(lens, self.octaves))
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
            padded = FN.pad_both(x, octave.pad, self.pad_mode)
            if octave.deep:
                y = self.conv_deep(padded, self.kernel_deep, octave.hop)
            else:
                y = self.conv_top(padded, self.kernel_top, octave.hop)
            real, imag = octave(y)
            reals.append(real)
            imags.append(imag)
        return FN.stack_octaves(reals, imags, self.scale)

    def forward(self, x: Tensor) -> Tensor:
        real, imag = self.spectrum(x)
        return _format(real, imag, self.output_format, self.eps)

    def extra_repr(self) -> str:
        return (f"sr={self.sr}, hop_length={self.hop_length}, n_bins={self.n_bins}, "
                f"bins_per_octave={self.bins_per_octave}, downsample_factor={self.downsample_factor}, "
                f"octave_halvings={self.octave_halvings}, output_format={self.output_format!r}, "
                f"normalization_type={self.normalization_type!r}, num_samples={self.num_samples}, "
                f"precision={self.precision!r}")
