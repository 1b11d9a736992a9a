"""Constant-Q kernels, anti-aliasing filters and the CQT2010 octave plan (numpy, float64).

The numbers reproduce nnAudio 0.3.4 (``nnAudio.utils.create_cqt_kernels``,
``create_lowpass_filter``, ``get_early_downsample_params``) in float64; nnAudio itself
rounds the kernels to complex64 before the layers round them to float32.

References
----------
.. [1] Brown, J. C. "Calculation of a constant Q spectral transform." JASA 89(1), 1991.
.. [2] Brown, J. C. and Puckette, M. S. "An efficient algorithm for the calculation of a
       constant Q transform." JASA 92(5), 1992.
.. [3] Schoerkhuber, C. and Klapuri, A. "Constant-Q transform toolbox for music
       processing." SMC 2010.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np

from .windows import WindowSpec, get_window

# Bandwidth of the Hann window main lobe in bins, used for the early-downsampling cutoff
# (librosa's ``window_bandwidth('hann')``, hard-coded by nnAudio for every window).
HANN_BANDWIDTH = 1.5


def cqt_quality(filter_scale: float, bins_per_octave: int) -> float:
    """Quality factor ``Q = filter_scale / (2 ** (1 / bins_per_octave) - 1)`` [1]_."""
    return float(filter_scale) / (2.0 ** (1.0 / bins_per_octave) - 1.0)


def cqt_n_bins(fmin: float, fmax: Optional[float], n_bins: int, bins_per_octave: int) -> int:
    """Number of bins: ``ceil(bins_per_octave * log2(fmax / fmin))`` when ``fmax`` is given
    (it overrides ``n_bins``, as in nnAudio's ``create_cqt_kernels``), else ``n_bins``."""
    if fmax is None:
        return int(n_bins)
    return int(np.ceil(bins_per_octave * np.log2(fmax / fmin)))


def cqt_frequencies(n_bins: int, fmin: float, bins_per_octave: int) -> np.ndarray:
    """Centre frequencies ``f_k = fmin * 2 ** (k / bins_per_octave)``, ``k = 0 .. n_bins-1``
    (``librosa.cqt_frequencies``)."""
    return float(fmin) * 2.0 ** (np.arange(int(n_bins), dtype=np.float64) / float(bins_per_octave))


def cqt_filter_lengths(Q: float, sr: float, freqs: np.ndarray) -> np.ndarray:
    """Filter lengths in samples, ``N_k = ceil(Q * sr / f_k)`` [1]_ (float64 array of
    integers, as nnAudio's ``lenghts``)."""
    return np.ceil(float(Q) * float(sr) / np.asarray(freqs, dtype=np.float64))


def variable_q_lengths(Q: float, sr: float, freqs: np.ndarray, gamma: float,
                       bins_per_octave: int) -> np.ndarray:
    """Filter lengths of the variable-Q transform [4]_, ``N_k = ceil(Q sr / (f_k + gamma /
    alpha))`` with ``alpha = 2 ** (1 / bins_per_octave) - 1`` (nnAudio's ``alpha``; librosa
    >= 0.10 uses ``(2 ** (2 / bpo) - 1) / (2 ** (2 / bpo) + 1)`` and ``Q = filter_scale /
    alpha``, so its lengths are ~3 % longer at 12 bins per octave). The bandwidth of bin ``k``
    is ``alpha f_k + gamma``: ``gamma = 0`` is the constant-Q :func:`cqt_filter_lengths`.

    .. [4] Schoerkhuber, C., Klapuri, A., Holighaus, N. and Doerfler, M. "A Matlab toolbox
       for efficient perfect reconstruction time-frequency transforms with log-frequency
       resolution." AES 53rd Conference on Semantic Audio, 2014.
    """
    alpha = 2.0 ** (1.0 / bins_per_octave) - 1.0
    freqs = np.asarray(freqs, dtype=np.float64)
    return np.ceil(float(Q) * float(sr) / (freqs + float(gamma) / alpha))


def _cqt_window(window: WindowSpec, length: int) -> np.ndarray:
    """Periodic window of ``length``; ``('gaussian', att_db)`` is read as nnAudio's
    ``get_window_dispatch`` does: the attenuation in dB at the edges, not a sigma."""
    if isinstance(window, (tuple, list)) and len(window) == 2 and window[0] == "gaussian":
        sigma = np.floor(-length / 2 / np.sqrt(-2 * np.log(10 ** (-float(window[1]) / 20))))
        return get_window(("gaussian", sigma), length, fftbins=True)
    return get_window(window, length, fftbins=True)


def cqt_kernels(Q: float, sr: float, fmin: float, n_bins: int = 84, bins_per_octave: int = 12,
                norm=1, window: WindowSpec = "hann", fmax: Optional[float] = None,
                topbin_check: bool = True, gamma: float = 0.0
                ) -> Tuple[np.ndarray, np.ndarray, int, np.ndarray, np.ndarray]:
    """Time-domain constant-Q kernels [1]_ [2]_ as nnAudio's ``create_cqt_kernels``.

    For bin ``k`` with ``f_k`` (:func:`cqt_frequencies`) and ``N_k``
    (:func:`cqt_filter_lengths`; :func:`variable_q_lengths` when ``gamma > 0``, the
    variable-Q kernels of nnAudio's ``VQT``)::

        a_k[n] = w_{N_k}[n + ceil(N_k / 2)] * exp(2 pi i f_k n / sr) / N_k,
        n = -ceil(N_k / 2) .. N_k - ceil(N_k / 2) - 1

    (nnAudio's ``np.r_[-l // 2 : l // 2]`` with float ``l``, so the phase origin is the
    sample the frame is centred on), then
    divided by its ``norm``-norm (``norm`` 1, 2 or True = 1; falsy: none), and placed in a
    row of width ``W = 2 ** ceil(log2(max N_k))`` starting at ``ceil(W/2 - N_k/2)``, minus
    one when ``N_k`` is odd. Correlating audio with ``conj(a_k)`` gives bin ``k``.

    Returns ``(real, imag, W, lengths, freqs)`` with real/imag ``(n_bins, W)`` float64.
    Raises ``ValueError`` naming ``n_bins`` (or ``fmax``) when ``topbin_check`` and the top
    bin is above ``sr / 2``.
    """
    n_bins = cqt_n_bins(fmin, fmax, n_bins, bins_per_octave)
    freqs = cqt_frequencies(n_bins, fmin, bins_per_octave)
    if topbin_check and freqs.max() > sr / 2:
        param = "n_bins" if fmax is None else "fmax"
        raise ValueError(f"{param}: the top bin {freqs.max():.2f} Hz is above the Nyquist "
                         f"frequency {sr / 2} Hz; reduce {param} or fmin")
    lengths = variable_q_lengths(Q, sr, freqs, gamma, bins_per_octave)
    width = int(2 ** np.ceil(np.log2(lengths.max())))
    real = np.zeros((n_bins, width))
    imag = np.zeros((n_bins, width))
    order = 1 if norm is True else norm
    for k in range(n_bins):
        n_k = int(lengths[k])
        start = int(np.ceil(width / 2.0 - n_k / 2.0)) - (1 if n_k % 2 == 1 else 0)
        n = np.arange(-((n_k + 1) // 2), n_k // 2, dtype=np.float64)  # = r_[-l//2 : l//2]
        sig = _cqt_window(window, n_k) * np.exp(2j * np.pi * freqs[k] * n / sr) / n_k
        if order:
            sig = sig / np.linalg.norm(sig, order)
        real[k, start:start + n_k] = sig.real
        imag[k, start:start + n_k] = sig.imag
    return real, imag, width, lengths, freqs


def lowpass_filter(band_center: float = 0.5, kernel_length: int = 256,
                   transition_bandwidth: float = 0.03) -> np.ndarray:
    """Linear-phase FIR low-pass (``scipy.signal.firwin2``, frequencies relative to Nyquist)
    with gain 1 up to ``band_center / (1 + tb)`` and 0 from ``band_center * (1 + tb)``,
    as nnAudio's ``create_lowpass_filter`` (which then rounds it to float32)."""
    import scipy.signal   # only CQT2010v2 needs it: not imported with the package
    pass_max = band_center / (1.0 + transition_bandwidth)
    stop_min = band_center * (1.0 + transition_bandwidth)
    return scipy.signal.firwin2(int(kernel_length), [0.0, pass_max, stop_min, 1.0],
                                [1.0, 1.0, 0.0, 0.0]).astype(np.float64)


def twos_in(n: int) -> int:
    """How many times 2 divides the positive integer ``n``."""
    count = 0
    while n % 2 == 0:
        n //= 2
        count += 1
    return count


def early_downsample_count(nyquist: float, filter_cutoff: float, hop_length: int,
                           n_octaves: int) -> int:
    """Number of early halvings: ``min(c1, c2)`` with (librosa/nnAudio)
    ``c1 = max(0, ceil(log2(0.85 nyquist / cutoff)) - 2)`` and
    ``c2 = max(0, twos_in(hop) - n_octaves + 1)``.

    nnAudio uses ``ceil(log2(hop))`` instead of ``twos_in(hop)``; the two agree whenever
    nnAudio's hop arithmetic is exact (``hop`` divisible by ``2 ** (count + n_octaves - 1)``),
    where nnAudio otherwise truncates ``hop // factor`` and misaligns frames.
    """
    c1 = max(0, int(np.ceil(np.log2(0.85 * nyquist / filter_cutoff)) - 1) - 1)
    c2 = max(0, twos_in(int(hop_length)) - n_octaves + 1)
    return min(c1, c2)


def cqt2010_plan(sr: float, hop_length: int, fmin: float, n_bins: int, bins_per_octave: int,
                 filter_scale: float, earlydownsample: bool) -> Dict:
    """Static plan of the multirate CQT [3]_ (nnAudio's CQT2010v2 with an exact frame rule).

    The top octave kernel bank covers ``bins_per_octave`` bins ending at the top bin
    ``fmax_t``; with ``n_octaves = ceil(n_bins / bins_per_octave)`` octaves, nnAudio applies it
    to the signal halved ``j`` times for octave ``j`` (0 = top) with hop ``hop_e / 2 ** j``.

    Frame rule: after ``e`` early halvings (``factor = 2 ** e``, :func:`early_downsample_count`)
    the hop is ``hop_e = hop / factor``; the signal is halved only ``v = min(n_octaves - 1,
    twos_in(hop_e))`` times, so every hop is an integer and frame ``t`` of every octave is
    centred on input sample ``t * hop`` (up to the half-sample delay of each 256-tap
    decimation filter). Octaves ``v .. n_octaves-1`` all run at rate ``sr / factor / 2 ** v``
    in one kernel bank designed at that rate (CQT1992-style, longer kernels). When
    ``v = n_octaves - 1`` this is exactly nnAudio's algorithm.

    Returns a dict with ``Q, n_octaves, fmax_t, fmin_t, factor, sr_e, hop_e, v`` and
    ``stages``: for each stage (lowest frequencies first) ``halvings`` (number of factor-2
    decimations of the early-downsampled signal), ``hop``, ``bank`` ('top' | 'deep'),
    ``bin_start`` (first row of the bank kept) and ``n_bins`` (rows kept).
    """
    Q = cqt_quality(filter_scale, bins_per_octave)
    n_octaves = int(np.ceil(float(n_bins) / bins_per_octave))
    remainder = n_bins % bins_per_octave
    top_in_octave = bins_per_octave if remainder == 0 else remainder
    fmax_t = fmin * 2 ** (n_octaves - 1) * 2 ** ((top_in_octave - 1) / bins_per_octave)
    fmin_t = fmax_t / 2 ** (1 - 1 / bins_per_octave)
    if earlydownsample:
        cutoff = fmax_t * (1 + 0.5 * HANN_BANDWIDTH / Q)
        e = early_downsample_count(sr // 2, cutoff, hop_length, n_octaves)
    else:
        e = 0
    factor = 2 ** e
    hop_e = hop_length // factor
    v = min(n_octaves - 1, twos_in(hop_e))
    stages: List[Dict] = []
    for j in range(v):  # octaves at their own rate, top octave bank
        stages.append(dict(halvings=j, hop=hop_e >> j, bank="top", bin_start=0,
                           n_bins=bins_per_octave))  # octaves above the lowest are full
    rest = n_bins - v * bins_per_octave  # bins of octaves v .. n_octaves - 1
    if v == n_octaves - 1:
        stages.append(dict(halvings=v, hop=hop_e >> v, bank="top",
                           bin_start=bins_per_octave - rest, n_bins=rest))
    else:
        stages.append(dict(halvings=v, hop=hop_e >> v, bank="deep", bin_start=0, n_bins=rest))
    stages.reverse()
    return dict(Q=Q, n_octaves=n_octaves, fmax_t=fmax_t, fmin_t=fmin_t, factor=factor,
                sr_e=sr / factor, hop_e=hop_e, v=v, stages=stages)
