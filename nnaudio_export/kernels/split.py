"""Error-free operand splitting for extended-precision float32 convolution (numpy, float64).

Why: a float32 conv1d DFT rounds every partial sum of ``sum_n x[n] w[n]``. Next to a loud
tone those partial sums are about as large as the tone's own bin, so a bin 80 dB below the
peak carries a relative error of ~1e-3 (1e-3 dB-ish in a log-mel), which is the whole
tolerance of several production frontends. An FFT rounds ~sqrt(N) / log2(N) times less.

How (the splitting idea of Ozaki et al., "Error-free transformations of matrix
multiplication by using fast routines of matrix multiplication and its applications",
Numer. Algorithms 59, 2012, reduced to one level): write

    x = x_hi + x_lo,   x_hi = k / s,        k = round(x s)  integers, |k| <= 2^a
    w = w_hi + w_lo,   w_hi = m / c,        m = round(w c)  integers, |m| <= 2^b

with ``s`` and ``c`` powers of two. Then ``sum k m`` is a sum of integers bounded by
``K 2^(a + b)``: with ``a + b <= 24 - ceil(log2 K)`` every partial sum is an integer below
2^24, exact in float32 in any summation order (any GEMM, any runtime, TF32 included). What
is left, ``sum x_hi w_lo + sum x_lo w``, is 2^-min(a, b) times smaller than the plain sum,
and so are its rounding errors. Cost: three conv-sized products instead of one.

:func:`split_bits` picks ``(a, b)``, :func:`split_kernel` splits the (float64) kernel once,
:func:`power_of_two_table` gives the constant tables that pick ``s`` per batch item at run
time with comparisons and a gather only (no log2/pow, whose rounding differs between
runtimes). The torch side is :func:`nnaudio_export.functional.split_conv1d`.
"""
from typing import Tuple

import numpy as np

# Peaks are snapped to 2^e with e in [MIN_EXPONENT, MAX_EXPONENT]; quieter or louder audio
# still splits exactly, it only gains less precision.
MIN_EXPONENT = -64
MAX_EXPONENT = 64


def split_bits(kernel_length: int) -> Tuple[int, int]:
    """``(input_bits a, kernel_bits b)`` for kernels of ``kernel_length`` taps: the largest
    ``a + b <= 24 - ceil(log2 K)`` (so ``K 2^(a+b) <= 2^24``), shared as evenly as possible
    with ``b >= a``. E.g. K = 400 -> (7, 8); 1024 -> (7, 7); 2048 -> (6, 7)."""
    if kernel_length < 1:
        raise ValueError(f"kernel_length must be positive, got {kernel_length}")
    total = 24 - int(np.ceil(np.log2(kernel_length)))
    if total < 2:
        raise ValueError(f"kernel_length {kernel_length} is too long for an exact float32 split")
    a = total // 2
    return a, total - a


def split_kernel(kernel: np.ndarray, bits: int) -> Tuple[np.ndarray, float, np.ndarray]:
    """Split a float64 kernel into ``(integers m, scale c, remainder w_lo)`` with
    ``w = m / c + w_lo`` exactly in float64, ``c = 2^(bits - ceil(log2 max|w|))`` a power of
    two, ``|m| <= 2^bits`` and ``|w_lo| <= 1 / (2 c)``. ``m`` is exact in float32; ``w_lo``
    is rounded to float32 only once, so the split kernel carries ~``24 + bits`` bits of the
    float64 kernel (more than the plain float32 kernel's 24)."""
    w = np.asarray(kernel, dtype=np.float64)
    peak = float(np.max(np.abs(w))) if w.size else 0.0
    if peak == 0.0:
        return np.zeros_like(w), 1.0, np.zeros_like(w)
    scale = 2.0 ** (bits - int(np.ceil(np.log2(peak))))
    m = np.round(w * scale)
    return m, float(scale), w - m / scale


def power_of_two_table(bits: int, min_exponent: int = MIN_EXPONENT,
                       max_exponent: int = MAX_EXPONENT) -> Tuple[np.ndarray, np.ndarray]:
    """``(thresholds, scales)`` to choose ``s = 2^(bits - e)`` for a peak ``p``, where
    ``e`` is the smallest exponent with ``p <= 2^e`` (clipped to ``[min_exponent,
    max_exponent]``): ``i = count(p > thresholds)`` and ``s = scales[i]``, so
    ``|x s| <= 2^bits`` for every ``|x| <= p``.

    thresholds: ``2^j`` for ``j = min_exponent .. max_exponent - 1``;
    scales: ``2^(bits - e)`` for ``e = min_exponent .. max_exponent`` (one longer)."""
    exps = np.arange(min_exponent, max_exponent + 1, dtype=np.float64)
    return 2.0 ** exps[:-1], 2.0 ** (bits - exps)
