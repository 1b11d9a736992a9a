"""How a bank of frame kernels is applied: the "encoder" half of a filterbank layer.

A layer owns its kernel (nnAudio's ``kernel`` attribute, trainable or not) and hands it to
one of these modules, chosen by ``precision`` at construction, so a new precision (or a new
way to apply a kernel bank) needs no change to the layers, and TorchScript compiles only the
chosen one. Every filterbank layer applies its kernels through here: STFT, Kaldi STFT,
CQT1992v2 and each octave of CQT2010v2.

- ``'single'``: float32. A frozen bank that is a plain windowed DFT (the layer says so
  with ``dft=DFTFrames(...)``: STFT with ``freq_scale='no'``, Kaldi's power spectrum) runs
  as the two-stage factorised DFT of :mod:`nnaudio_export.layers.factorised_dft` when
  :func:`~nnaudio_export.kernels.factorised_dft.dft_split` finds a split of ``(n_fft,
  hop)`` that saves at least half (5-10x fewer multiply-adds, and less rounding than the
  direct conv); everything else (trainable kernels, ``freq_scale`` 'linear'/'log', CQT,
  no split, float64 reference builds) is one ``conv1d``.
- ``'extended'``: a frozen plain windowed DFT with a factorised split runs the same
  factorised stages in float64 and rounds their output to float32 once (bins 80 dB below
  the peak keep ~1.5e-7 relative accuracy instead of ~1.5e-4; ~2.5x the time of 'single'
  in ONNX Runtime); every other frozen bank (CQT, ``freq_scale`` 'linear'/'log', a kernel
  given to ``load_kernel``, no split) the error-free split of
  :mod:`nnaudio_export.kernels.split` (three conv-sized products): rounding error 2^7-2^8
  times smaller, ~2e-6 relative 80 dB down. Frozen kernels only.

Inputs that are not float32 (a float64 reference, ``.double()``) use the plain conv: the
split only makes sense for float32 rounding.
"""
from typing import Any, Dict, List, NamedTuple, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import functional as FN
from ..checks import Param, require, require_choice
from ..kernels.factorised_dft import dft_split
from ..kernels.split import power_of_two_table, split_bits, split_kernel
from .common import kernel_tensor
from .factorised_dft import TARGETS, FactorisedDFT
from .inverse_dft import FactoredIRFFT, MatrixIRFFT, ThreeStageIRFFT

INVERSE_DFTS = (MatrixIRFFT, FactoredIRFFT, ThreeStageIRFFT)

PRECISIONS = ("single", "extended")
PRECISION = Param("precision", "single", "str", choices=PRECISIONS,
                  doc="'single' (float32) or 'extended' (a DFT bank's factorised stages in float64, "
                      "other banks an error-free split)")
TARGET = Param("target", "cpu", "str", choices=TARGETS,
               doc="the device the graph is laid out for: 'cpu' or 'cuda' (the factorised DFT's "
                   "stage 1 as a grouped conv or a MatMul)")


class DFTFrames(NamedTuple):
    """What a kernel bank is when it is a windowed DFT: ``window`` (length ``n_fft``, zero
    past ``taps``), frames every ``hop``, the first ``bins`` bins, rows ``[cos; sin]``;
    Kaldi's also ``preemphasis`` and a low-rank remainder (see
    :class:`~nnaudio_export.layers.factorised_dft.FactorisedDFT`)."""
    window: np.ndarray
    hop: int
    bins: int
    taps: int
    preemphasis: float = 0.0
    correction_taps: Optional[np.ndarray] = None
    correction_bins: Optional[np.ndarray] = None


class FrameConv(nn.Module):
    """``conv1d(x, kernel, stride)``: precision 'single'. ``framed`` (windowed DFTs: STFT,
    Kaldi): float32 frames are cut first (:func:`~nnaudio_export.functional.frames_of`) and
    multiplied by the kernel as matmul rows, so a frame's arithmetic does not depend on the
    signal's length: ONNX Runtime's conv sums in an order it picks from the output length,
    which made streamed frames differ from offline ones by 5e-5 x peak in a log-mel 80 dB
    down (see :func:`~nnaudio_export.functional.split_frames_matmul`)."""

    precision = "single"
    method = "direct"

    def __init__(self, framed: bool = False):
        super().__init__()
        self.framed = bool(framed)

    def forward(self, x: Tensor, kernel: Tensor, stride: int) -> Tensor:
        if self.framed and x.dtype == torch.float32:
            return FN.frames_matmul(x, kernel, stride)
        return F.conv1d(x, kernel, stride=stride)

    def squared(self, x: Tensor, kernel: Tensor, stride: int) -> Tensor:
        """``|X|^2`` ``(B, F, T)`` of a ``[cos; sin]`` bank (every frame conv has this, so a
        layer asks for the power without knowing how its bank is applied)."""
        return FN.stacked_squared(self.forward(x, kernel, stride))

    def extra_repr(self) -> str:
        return f"framed={self.framed}"


class SplitFrameConv(nn.Module):
    """``conv1d(x, kernel, stride)`` with the error-free split (precision 'extended'),
    its split kernels built once in float64 from ``kernel`` ((C, 1, K) numpy).

    ``framed`` (windowed DFTs: STFT, Kaldi): frames are cut first and each is split with
    its own scale and multiplied as a matmul row (:func:`~nnaudio_export.functional.
    split_frames_matmul`), so a frame's split does not depend on the signal around it and
    its sums not on the signal's length (a streaming chunk gives the offline frame; in ONNX
    Runtime bit for bit). Otherwise (CQT's
    long kernels, whose frame matrix would be ``taps / hop`` times the signal): one scale
    per item and convs (:func:`~nnaudio_export.functional.split_conv1d`)."""

    precision = "extended"
    method = "direct"

    def __init__(self, kernel: np.ndarray, dtype: torch.dtype = torch.float32, framed: bool = False):
        super().__init__()
        self.framed = bool(framed)
        kernel = np.asarray(kernel, dtype=np.float64)
        require(kernel.ndim == 3 and kernel.shape[1] == 1, "kernel",
                f"expected shape (channels, 1, taps), got {list(kernel.shape)}")
        input_bits, kernel_bits = split_bits(kernel.shape[-1])
        ints, scale, rest = split_kernel(kernel, kernel_bits)
        thresholds, scales = power_of_two_table(input_bits)
        self.register_buffer("kernel_int", kernel_tensor(ints, dtype))
        self.register_buffer("kernel_rest", kernel_tensor(np.concatenate([rest, kernel], axis=1), dtype))
        self.register_buffer("thresholds", kernel_tensor(thresholds, dtype))
        self.register_buffer("scales", kernel_tensor(scales, dtype))
        self.kernel_unscale = 1.0 / scale
        self.input_bits = input_bits
        self.kernel_bits = kernel_bits

    def forward(self, x: Tensor, kernel: Tensor, stride: int) -> Tensor:
        if x.dtype != torch.float32:
            return F.conv1d(x, kernel, stride=stride)
        if self.framed:
            c, taps = self.kernel_int.size(0), self.kernel_int.size(-1)
            return FN.split_frames_matmul(x, self.kernel_int.reshape(c, taps).t(),
                                          self.kernel_rest.reshape(c, 2 * taps).t(),
                                          self.kernel_unscale, self.thresholds, self.scales, stride)
        return FN.split_conv1d(x, self.kernel_int, self.kernel_rest, self.kernel_unscale,
                               self.thresholds, self.scales, stride)

    def squared(self, x: Tensor, kernel: Tensor, stride: int) -> Tensor:
        """``|X|^2`` ``(B, F, T)`` of a ``[cos; sin]`` bank (see :meth:`FrameConv.squared`)."""
        return FN.stacked_squared(self.forward(x, kernel, stride))

    def extra_repr(self) -> str:
        return f"input_bits={self.input_bits}, kernel_bits={self.kernel_bits}, framed={self.framed}"


# The error-free split is three conv-sized products (kernels/split.py).
SPLIT_PRODUCTS = 3


def fourier_stages(fe: nn.Module) -> List[Dict[str, Any]]:
    """One entry per layer of ``fe`` that applies a kernel bank: its method ('direct' or
    'factorised', with ``N1 x N2``) and multiply-adds per frame, with the direct conv's
    beside it (bundle manifests and the benchmark list these); an inverse DFT's as
    'inverse factored' (its ``factors``) or 'inverse matrix', beside the matrix's ``2 F N``."""
    out = []
    for name, layer in fe.named_modules():
        if isinstance(layer, INVERSE_DFTS):
            plan = layer.describe()
            out.append({"layer": name, "method": "inverse " + plan["method"], "precision": "single",
                        "n_fft": plan["n_fft"], "hop": plan["hop"], "factors": plan["factors"],
                        "macs_per_frame": plan["macs_per_frame"],
                        "direct_macs_per_frame": 2 * (plan["n_fft"] // 2 + 1) * plan["n_fft"]})
            continue
        conv = getattr(layer, "conv", None)
        kernel = getattr(layer, "kernel", None)
        if conv is None or not isinstance(kernel, torch.Tensor) or kernel.dim() != 3:
            continue
        direct = int(kernel.shape[0]) * int(kernel.shape[-1])
        row: Dict[str, Any] = {"layer": name, "method": getattr(conv, "method", "direct"),
                               "precision": getattr(conv, "precision", "single"),
                               "direct_macs_per_frame": direct}
        if isinstance(conv, FactorisedDFT):
            row.update(n_fft=conv.n_fft, hop=conv.hop, n1=conv.n1, n2=conv.n2, target=conv.target,
                       dtype=str(conv.stage1.dtype).replace("torch.", ""),
                       stage1="matmul" if conv.blocks else "grouped conv",
                       stage2_split=[conv.u, conv.v] if conv.u > 0 else None,
                       macs_per_frame=conv.macs_per_frame(), correction_rank=conv.rank)
        elif isinstance(conv, SplitFrameConv):
            row["macs_per_frame"] = SPLIT_PRODUCTS * direct
        else:
            row["macs_per_frame"] = direct
        out.append(row)
    return out


def frame_conv(kernel: np.ndarray, precision: str, trainable: bool,
               dtype: torch.dtype = torch.float32, dft: Optional[DFTFrames] = None,
               framed: bool = False, target: str = "cpu") -> nn.Module:
    """The module applying ``kernel`` ((C, 1, K) float64 numpy) at ``precision``; ``dtype``
    is the kernels' dtype (the split kernels of 'extended' are built in it). ``dft``: the
    bank is that windowed DFT, so at 'single' with frozen float32 kernels the factorised
    stages may replace the conv (float64 builds keep the conv: they are the references).
    At 'extended' a bank with such a split gets the factorised stages in float64
    (:class:`~nnaudio_export.layers.factorised_dft.FactorisedDFT` with float64 kernels).
    ``framed``: the 'extended' split, and at 'single' the direct product of a frozen DFT bank
    with no factorised split, work frame by frame (matmul rows; see :class:`FrameConv`,
    :class:`SplitFrameConv`); trainable, non-DFT and float64 banks keep ``conv1d``.
    ``target`` ('cpu' | 'cuda'): the device the factorised stages are laid out for (see
    :class:`~nnaudio_export.layers.factorised_dft.FactorisedDFT`); nothing else depends on it."""
    require_choice(precision, "precision", PRECISIONS)
    require_choice(target, "target", TARGETS)
    plain_dft = dft is not None and not trainable and dtype == torch.float32
    split = dft_split(len(dft.window), dft.hop, dft.bins, dft.taps) if plain_dft else None
    if precision == "extended":
        require(not trainable, "precision",
                "'extended' builds its float64 stages or split kernels once, so it needs frozen kernels "
                "(trainable=False); train with 'single' and rebuild with 'extended' to export")
    if split is not None:   # 'extended': the same stages in float64, stage 1 as a MatMul
        single = precision == "single"
        return FactorisedDFT(dft.window, dft.hop, dft.bins, split[0], dft.taps,
                             dtype if single else torch.float64, dft.preemphasis, dft.correction_taps,
                             dft.correction_bins, target, stage1_matmul=None if single else True)
    if precision == "single":
        # nnAudio's own arithmetic (conv1d) for its kernels: converted layers match it
        return FrameConv(framed if plain_dft else False)
    return SplitFrameConv(kernel, dtype, framed)
