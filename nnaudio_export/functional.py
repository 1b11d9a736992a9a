"""Pure, TorchScript-compatible functions that apply kernels to audio.

Only operators that every runtime has: ``F.pad`` (reflect / constant), ``conv1d``,
matmul and elementwise math. No ``torch.stft``, ``torch.fft`` or complex tensors, so the
graphs export to ONNX (both exporters), TorchScript and AOTInductor unchanged.
"""

import math
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def as_batch(x: Tensor) -> Tensor:
    """(L,) -> (1, 1, L); (B, L) -> (B, 1, L); (B, 1, L) unchanged. Other ranks: ValueError."""
    if x.dim() == 1:
        return x.reshape(1, 1, -1)
    if x.dim() == 2:
        return x.unsqueeze(1)
    if x.dim() == 3 and x.size(1) == 1:
        return x
    raise ValueError("audio must have shape (L,), (B, L) or (B, 1, L); got {}".format(list(x.shape)))


def check_num_samples(x: Tensor, num_samples: int, min_samples: int) -> None:
    """Raise ``ValueError`` when the last axis is not ``num_samples`` (when >= 0), or is
    shorter than ``min_samples``. Cheap shape checks; they fold away in a static export."""
    n = x.size(-1)
    if num_samples >= 0 and n != num_samples:
        raise ValueError("audio length: expected {} samples, got {}".format(num_samples, n))
    if n < min_samples:
        raise ValueError("audio length: need at least {} samples for this padding/kernel, got {}".format(
            min_samples, n))


def pad_both(x: Tensor, pad: int, mode: str) -> Tensor:
    """Pad the last axis by ``pad`` on both sides; ``mode`` 'reflect' (no edge repeat,
    like numpy/librosa 'reflect') or 'constant' (zeros)."""
    return pad_sides(x, pad, pad, mode)


def pad_sides(x: Tensor, left: int, right: int, mode: str) -> Tensor:
    """Pad the last axis by ``left`` and ``right`` samples (as :func:`pad_both`)."""
    if left == 0 and right == 0:
        return x
    if mode == "reflect":
        # Reversed slices and a concat, not ``F.pad(mode='reflect')``: ONNX Runtime's
        # reflect ``Pad`` is ~2 ms slower on whisper_80's 8 x 30 s (4.9 of ~47 ms, measured
        # 2026-12-04); the values are the same copies. Callers require ``pad < length``.
        n = x.size(-1)
        parts = [x]
        if left > 0:
            parts = [x[..., 1:left + 1].flip(-1), x]
        if right > 0:
            parts.append(x[..., n - right - 1:n - 1].flip(-1))
        return torch.cat(parts, -1)
    return F.pad(x, [left, right], mode="constant", value=0.0)


def pad_for_frames(x: Tensor, pad: int, mode: str, kernel: int, hop: int,
                   drop_start: int = 0, drop_end: int = 0) -> Tensor:
    """:func:`pad_both` for frames of ``kernel`` samples every ``hop``, except that the right
    side stops where the last frame ends: the samples after it are in no frame, so a frame
    conv that must not read them (the factorised DFT's polyphase reshape) has none to slice
    off (a copy of the signal: 2.2 of ~30 ms of stft_2048 in ONNX Runtime). Frames and
    values are :func:`pad_both`'s.

    ``drop_start`` / ``drop_end``: the first / last frames are not wanted (a ``trim_frames``
    stage folded into the transform, :func:`~nnaudio_export.stages.layout.fold_frame_trims`):
    the padding shrinks by ``hop`` per dropped frame, so the frames left are exactly the
    others, with no slice of the output. Where the frames kept would need a cut into the
    signal itself, it pads in full (the fold is refused at build time in that case)."""
    sides = frame_padding(x.size(-1), pad, kernel, hop, drop_start, drop_end)
    if sides is None:
        return pad_both(x, pad, mode)
    return pad_sides(x, sides[0], sides[1], mode)


def frame_padding(num_samples: int, pad: int, kernel: int, hop: int,
                  drop_start: int = 0, drop_end: int = 0) -> Optional[Tuple[int, int]]:
    """``(left, right)`` padding of :func:`pad_for_frames`: frames as after ``pad`` samples
    on both sides, less the ``drop_start`` first and ``drop_end`` last, and nothing past the
    last frame kept; None when there is no centre padding, no frame, or the frames kept
    would need a cut into the signal (fewer than one left, or ``right < 0``)."""
    total = num_samples + 2 * pad
    if pad == 0 or total < kernel:
        return None
    frames = (total - kernel) // hop + 1
    left = pad - drop_start * hop
    right = (frames - drop_end - 1) * hop + kernel - pad - num_samples
    if left < 0 or right < 0 or frames - drop_start - drop_end < 1:
        return None
    return left, right


def frame_count(num_samples: int, kernel: int, hop: int, center: bool) -> int:
    """Frames of a strided correlation of ``kernel`` taps, after optional centre padding
    of ``kernel // 2`` on each side."""
    padded = num_samples + 2 * (kernel // 2) if center else num_samples
    if padded < kernel:
        return 0
    return (padded - kernel) // hop + 1


def check_spectrum(x: Tensor, rank: int, bins: int, num_frames: int, min_frames: int) -> None:
    """Raise ``ValueError`` unless ``x`` is ``(batch, bins, frames)`` (``rank`` 3) or
    ``(batch, bins, frames, 2)`` (``rank`` 4) with ``frames == num_frames`` (when >= 0) and
    ``frames >= min_frames``; the messages name ``freq_bins`` / ``num_frames``."""
    shape = "(batch, freq_bins={}, frames)".format(bins) if rank == 3 else \
        "(batch, freq_bins={}, frames, 2)".format(bins)
    if x.dim() != rank or x.size(1) != bins or (rank == 4 and x.size(3) != 2):
        raise ValueError("spectrum: expected shape {}, got {}".format(shape, list(x.shape)))
    frames = x.size(2)
    if num_frames >= 0 and frames != num_frames:
        raise ValueError("spectrum: expected num_frames={} frames, got {}".format(num_frames, frames))
    if frames < min_frames:
        raise ValueError("spectrum: need at least {} frames for this inverse, got {}".format(
            min_frames, frames))


def overlap_add(frames: Tensor, hop: int) -> Tensor:
    """Overlap-add ``(B, T, N)`` frames (time-major) ``hop`` samples apart into
    ``(B, N + hop (T - 1))``: ``y[t hop + n] += frames[:, t, n]``.

    Done by reshape, pad and sum: each frame is cut into ``R = ceil(N / hop)`` blocks of
    ``hop`` samples; block ``r`` of frame ``t`` lands in output block ``t + r``, so the
    output blocks are the sum of the ``R`` block columns shifted by ``r`` frames. ``R`` pads
    and adds (no ``col2im``/``fold``, whose export support varies between runtimes)."""
    t = frames.size(1)
    n = frames.size(2)
    blocks = (n + hop - 1) // hop
    if blocks * hop != n:
        frames = F.pad(frames, [0, blocks * hop - n])
    parts = frames.reshape(frames.size(0), t, blocks, hop)
    y = F.pad(parts[:, :, 0], [0, 0, 0, blocks - 1])
    for r in range(1, blocks):
        y = y + F.pad(parts[:, :, r], [0, 0, r, blocks - 1 - r])
    y = y.reshape(frames.size(0), (t + blocks - 1) * hop)
    return y[:, : n + hop * (t - 1)]


def split_conv1d(x: Tensor, kernel_int: Tensor, kernel_rest: Tensor, kernel_unscale: float,
                 thresholds: Tensor, scales: Tensor, stride: int) -> Tensor:
    """``conv1d(x, w, stride)`` for (B, 1, L) float32 audio with ~2^min(a, b) times less
    rounding error, from a kernel split as ``w = kernel_int * kernel_unscale + w_lo``
    (:func:`nnaudio_export.kernels.split.split_kernel`; ``kernel_rest = [w_lo, w]`` stacked
    on the input-channel axis, ``(C, 2, K)``).

    Per batch item, ``s = scales[count(max|x| > thresholds)]`` (a power of two, see
    :func:`~nnaudio_export.kernels.split.power_of_two_table`), ``k = round(x s)``,
    ``x_hi = k / s`` and ``x_lo = x - x_hi`` (both exact). Then
    ``conv(k, kernel_int)`` is a sum of small integers, exact in float32, and
    ``conv([x_hi, x_lo], [w_lo, w]) = sum x_hi w_lo + x_lo w`` is the small remainder. Three
    conv-sized products; comparisons, a gather, round and power-of-two scalings only, so
    every runtime splits identically. Long kernels (CQT) use this; windowed DFTs use
    :func:`split_frames_matmul`."""
    peak = torch.amax(torch.abs(x), dim=[1, 2], keepdim=True)                    # (B, 1, 1)
    count = torch.sum((peak > thresholds).to(torch.int64), dim=-1)               # (B, 1)
    scale = torch.index_select(scales, 0, count.reshape(-1)).reshape(-1, 1, 1)   # (B, 1, 1)
    k = torch.round(x * scale)
    x_hi = k / scale
    x_lo = x - x_hi
    exact = F.conv1d(k, kernel_int, stride=stride) * (kernel_unscale / scale)
    rest = F.conv1d(torch.cat([x_hi, x_lo], dim=1), kernel_rest, stride=stride)
    return exact + rest


def frames_of(x: Tensor, taps: int, hop: int) -> Tensor:
    """The ``T = (L - taps) // hop + 1`` frames ``x[..., t hop : t hop + taps]`` of a
    (B, L) signal as (B, T, taps), by reshape and slices (no ``Gather``, no ``unfold``):
    the signal is cut into blocks of ``hop`` samples; frame ``t`` is blocks ``t .. t + R - 1``
    (``R = ceil(taps / hop)``) side by side, cut to ``taps``."""
    length = x.size(-1)
    t = (length - taps) // hop + 1
    blocks = (taps + hop - 1) // hop
    used = (t - 1 + blocks) * hop
    if used > length:   # the last frame's last block reaches past the signal: zeros, cut below
        x = F.pad(x, [0, used - length])
    else:
        x = x[:, :used]
    parts = x.reshape(x.size(0), t - 1 + blocks, hop)
    frames = torch.cat([parts[:, r: r + t] for r in range(blocks)], dim=2)
    if blocks * hop == taps:   # whole blocks: no cut (a Slice is a copy in ONNX Runtime)
        return frames
    return frames[:, :, :taps]


def frames_matmul(x: Tensor, kernel: Tensor, stride: int) -> Tensor:
    """``conv1d(x, kernel, stride)`` of a (B, 1, L) signal and a (C, 1, K) kernel computed
    frame by frame: frames (:func:`frames_of`) as matmul rows times the kernel, (B, C, T)."""
    c, taps = kernel.size(0), kernel.size(-1)
    frames = frames_of(x.reshape(x.size(0), x.size(-1)), taps, stride)          # (B, T, K)
    return torch.matmul(frames, kernel.reshape(c, taps).t()).transpose(1, 2)


def split_frames_matmul(x: Tensor, kernel_int: Tensor, kernel_rest: Tensor, kernel_unscale: float,
                        thresholds: Tensor, scales: Tensor, stride: int) -> Tensor:
    """:func:`split_conv1d` computed frame by frame: the (B, 1, L) signal is framed
    (:func:`frames_of`), each frame is split with its own power of two ``s`` (from its own
    peak, so a quiet frame keeps the full extra precision) and the two products are
    matmuls of frames (rows) by ``kernel_int`` (K, C) and ``kernel_rest`` (2 K, C)
    (``[w_lo; w]``). Output (B, C, T), as the conv's.

    Why frames as matmul rows: ONNX Runtime's conv sums in an order that depends on the
    output length (MLAS picks its blocking from it), so the same frame rounded differently
    in a clip and in a streaming chunk (1.7e-6 x peak apart in a log-mel 80 dB down). Its
    matmul's order per row depends only on K and C, and the split's scale here only on the
    frame, so there a frame gives the same bits whatever the signal around it
    (tests/test_streaming.py pins streamed == offline; torch's CPU matmul still picks
    kernels by row count, a difference at float32 rounding of the remainder only)."""
    taps = kernel_int.size(0)
    frames = frames_of(x.reshape(x.size(0), x.size(-1)), taps, stride)          # (B, T, K)
    peak = torch.amax(torch.abs(frames), dim=2, keepdim=True)                    # (B, T, 1)
    count = torch.sum((peak > thresholds).to(torch.int64), dim=-1)               # (B, T)
    scale = torch.index_select(scales, 0, count.reshape(-1)).reshape(peak.shape)
    k = torch.round(frames * scale)
    x_hi = k / scale
    x_lo = frames - x_hi
    exact = torch.matmul(k, kernel_int) * (kernel_unscale / scale)
    rest = torch.matmul(torch.cat([x_hi, x_lo], dim=2), kernel_rest)
    return (exact + rest).transpose(1, 2)


def stacked_spectrum(y: Tensor, n_bins: int) -> Tuple[Tensor, Tensor]:
    """(real, imag), each ``(B, n_bins, T)``, of a ``[cos; sin]`` correlation output
    ``(B, 2 n_bins, T)``, with ``X = sum x (cos - i sin)`` (the usual DFT sign)."""
    return y[:, :n_bins], -y[:, n_bins:]


def stack_octaves(reals: List[Tensor], imags: List[Tensor], scale: Tensor) -> Tuple[Tensor, Tensor]:
    """(real, imag), each ``(B, F, T)``, of a multirate transform's octaves given top octave
    first (as they are computed, each ``(B, F_j, T_j)``): every octave cut to the shortest
    frame count, stacked lowest octave first along the bins, times ``scale`` ``(F, 1)``."""
    t = reals[0].size(-1)
    for r in reals:
        t = min(t, r.size(-1))
    order = [len(reals) - 1 - i for i in range(len(reals))]  # lowest octave first
    real = torch.cat([reals[i][:, :, :t] for i in order], dim=1) * scale
    imag = torch.cat([imags[i][:, :, :t] for i in order], dim=1) * scale
    return real, imag


def stacked_squared(y: Tensor) -> Tensor:
    """``|X|^2`` ``(B, F, T)`` of a ``[cos; sin]`` correlation output ``(B, 2 F, T)``: one
    square, one add of the two halves (the sign of the imaginary part does not matter once
    squared); :func:`power_from_squared` then gives ``|X| ** power``."""
    n_bins = y.size(1) // 2
    y = y * y
    return y[:, :n_bins] + y[:, n_bins:]


def power_from_squared(p: Tensor, power: float, eps: float) -> Tensor:
    """``(p + eps) ** (power / 2)`` for ``p = |X|^2``: power 2 without a sqrt (exact, finite
    gradient at 0), power 1 as a sqrt; eps > 0 keeps the gradient finite (trainable)."""
    if eps > 0.0:
        p = add_small_constant(p, eps)
    if power == 2.0:
        return p
    if power == 1.0:
        return torch.sqrt(p)
    return torch.pow(p, power / 2.0)


def add_small_constant(p: Tensor, eps: float) -> Tensor:
    """``p + eps``, bit for bit, written so that graph optimisers keep it.

    onnxscript's rewriter (used by ``torch.onnx.export(dynamo=True)``) removes an ``Add``
    whose constant is within 1e-8 of zero, which silently dropped nnAudio's ``+1e-8`` inside
    a trainable layer's magnitude (1e-4 instead of 0 on silent bins). Here the constant is
    added at scale ``2**27`` and scaled back: multiplying by a power of two is exact, so the
    sum rounds exactly as ``p + eps`` would (no overflow below ~2.5e30)."""
    scale = 134217728.0  # 2**27
    return (p * scale + eps * scale) * (1.0 / scale)


def magnitude(real: Tensor, imag: Tensor, eps: float) -> Tensor:
    """``sqrt(re^2 + im^2 + eps)``."""
    return power_from_squared(real * real + imag * imag, 1.0, eps)


def power_spectrum(real: Tensor, imag: Tensor, power: float, eps: float) -> Tensor:
    """``|X| ** power`` from real and imaginary parts (see :func:`power_from_squared`)."""
    return power_from_squared(real * real + imag * imag, power, eps)


# Phase values this close above -pi are moved to just above +pi (see `phase`).
PHASE_BRANCH_TOLERANCE: float = 1e-4


def phase(real: Tensor, imag: Tensor) -> Tensor:
    """Angle of ``real + i imag`` in radians, in ``(-pi + 1e-4, pi + 1e-4]``.

    ``atan2`` jumps by 2 pi where ``imag`` changes sign on the negative real axis; float32
    rounding puts tiny ``imag`` on either side in different runtimes, so one runtime would
    return ~+pi and another ~-pi for the same bin (nnAudio does). We fold the first
    ``PHASE_BRANCH_TOLERANCE`` radians above -pi onto +pi, so values at the cut agree to
    float32 rounding everywhere; compare phases modulo 2 pi all the same. (0 + 0i -> 0.)
    """
    ang = torch.atan2(imag, real)
    # 1e-4 == PHASE_BRANCH_TOLERANCE, spelled out because TorchScript cannot read globals.
    ang = torch.where(ang < -math.pi + 1e-4, ang + 2.0 * math.pi, ang)
    # Exporters lower atan2 to atan(imag / real): 0/0 would give NaN, so pin 0 + 0i to 0.
    return torch.where((real == 0.0) & (imag == 0.0), torch.zeros_like(ang), ang)


def unit_phasor(real: Tensor, imag: Tensor) -> Tensor:
    """``(cos angle, sin angle)`` stacked on a last axis of 2, as nnAudio's CQT 'Phase'
    output; computed as ``z / |z|`` (``(1, 0)`` where ``z == 0``, as ``atan2(0, 0) = 0``)."""
    mag = torch.sqrt(real * real + imag * imag)
    nonzero = mag > 0.0
    safe = torch.where(nonzero, mag, torch.ones_like(mag))
    c = torch.where(nonzero, real / safe, torch.ones_like(mag))
    s = torch.where(nonzero, imag / safe, torch.zeros_like(mag))
    return torch.stack([c, s], dim=-1)


def rescale_factor(norm: Tensor, target: Tensor) -> Tensor:
    """``target / norm`` where ``norm > 0``, else 0: the factor that gives a vector of length
    ``norm`` the length ``target`` (a zero vector stays zero), with no division by 0."""
    nonzero = norm > 0.0
    safe = torch.where(nonzero, norm, torch.ones_like(norm))
    return torch.where(nonzero, target / safe, torch.zeros_like(norm))


def clamp_to_item_max(x: Tensor, value_range: float) -> Tensor:
    """``max(x, item_max - value_range)`` with the max taken over each batch item (axis 0)
    on its own, so an item's features never depend on what it was batched with.

    The item max is taken in two steps, over the last axis and then over the rest (the same
    value: a max is exact): ONNX Runtime's CUDA provider hands one ReduceMax of a whole item
    to cuDNN, which spent 20 ms of a 26 ms whisper_80 batch (64 x 30 s, H200) on it."""
    rows = torch.amax(x.reshape(x.size(0), -1, x.size(-1)), dim=2)
    peak = torch.amax(rows, dim=1)
    shape: List[int] = [x.size(0)] + [1] * (x.dim() - 1)
    return torch.maximum(x, peak.reshape(shape) - value_range)


def centred_matmul(matrix: Tensor, x: Tensor) -> Tensor:
    """``matrix @ x`` computed as ``matrix @ (x - m) + rowsum(matrix) m``, ``m`` the mean of
    each column of ``x`` (over its rows, e.g. one frame's dB values). Equal in exact
    arithmetic; in float32 each partial sum then holds values of the column's spread instead
    of its common offset (tens of dB), so it rounds that much less. For an orthonormal DCT-II
    ``rowsum`` is ``sqrt(n)`` for row 0 and ~0 for the others, so the offset reaches row 0
    only, as it should."""
    m = torch.mean(x, dim=-2, keepdim=True)
    return torch.matmul(matrix, x - m) + torch.sum(matrix, dim=-1, keepdim=True) * m


def power_to_db(s: Tensor, ref: float, amin: float, top_db: float, multiplier: float = 10.0) -> Tensor:
    """``m log10(max(s, amin)) - m log10(max(amin, |ref|))`` (``m = multiplier``: 10 for
    power, 20 for amplitude), then, when ``top_db >= 0``, clamped below at
    ``(per-item max) - top_db``.

    Differs from ``librosa.power_to_db`` on batches on purpose: librosa clamps against the
    whole array's max, we (like nnAudio) against each batch item's own max, so an item's
    features never depend on what it was batched with. For one item they are equal.
    """
    log_spec = multiplier * torch.log10(torch.clamp(s, min=amin))
    log_spec = log_spec - multiplier * math.log10(max(amin, abs(ref)))
    if top_db >= 0.0:
        log_spec = clamp_to_item_max(log_spec, top_db)
    return log_spec


def banded_matmul(matrix: Tensor, x: Tensor, bands: List[List[int]]) -> Tensor:
    """``matrix @ x`` along ``x``'s second-to-last axis, one band of rows at a time: rows
    ``[r0, r1)`` times the slice ``x[..., c0:c1, :]`` of the columns they use, bands
    ``[r0, r1, c0, c1]`` covering the rows in order (:func:`~nnaudio_export.kernels.banded.
    row_bands`; ``[]``: the dense product). Equal to the dense product wherever the weights
    outside the bands are exact zeros (a triangular filterbank's): the same non-zero
    products, fewer zero terms. A band that reads no column gives zero rows."""
    if len(bands) == 0:
        return torch.matmul(matrix, x)
    parts: List[Tensor] = []
    for band in bands:
        r0, r1, c0, c1 = band[0], band[1], band[2], band[3]
        if c1 > c0:
            parts.append(torch.matmul(matrix[r0:r1, c0:c1], x.narrow(-2, c0, c1 - c0)))
        else:
            shape = list(x.shape)
            shape[-2] = r1 - r0
            parts.append(torch.zeros(shape, dtype=x.dtype, device=x.device))
    return torch.cat(parts, dim=-2)
