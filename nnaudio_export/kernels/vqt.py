"""The multirate plan of the variable-Q transform (numpy, float64): which rate, hop and
kernel bank each octave uses, as nnAudio2 2.0.3's ``VQT`` (and nnAudio 0.3.4's) computes it.

The kernels themselves are :func:`nnaudio_export.kernels.cqt.cqt_kernels` with ``gamma``
(:func:`nnaudio_export.kernels.cqt.variable_q_lengths`).

References
----------
.. [1] Schoerkhuber, C., Klapuri, A., Holighaus, N. and Doerfler, M. "A Matlab toolbox for
       efficient perfect reconstruction time-frequency transforms with log-frequency
       resolution." AES 53rd Conference on Semantic Audio, 2014.
.. [2] Schoerkhuber, C. and Klapuri, A. "Constant-Q transform toolbox for music
       processing." SMC 2010.
"""
from __future__ import annotations

from typing import Dict, List

import numpy as np

from .cqt import HANN_BANDWIDTH, cqt_quality


def nnaudio_early_downsample_count(nyquist: float, filter_cutoff: float, hop_length: int,
                                   n_octaves: int) -> int:
    """nnAudio's number of early halvings, ``min(c1, c2)`` with
    ``c1 = max(0, ceil(log2(0.85 nyquist / cutoff)) - 2)`` (librosa's rule: the top octave's
    filters still fit below 85 % of the reduced Nyquist frequency) and
    ``c2 = max(0, ceil(log2(hop)) - n_octaves + 1)`` (nnAudio's ``nextpow2(hop)``; the hop
    must stay divisible, which :func:`vqt_plan` then checks)."""
    c1 = max(0, int(np.ceil(np.log2(0.85 * nyquist / filter_cutoff)) - 1) - 1)
    c2 = max(0, int(np.ceil(np.log2(hop_length))) - n_octaves + 1)
    return min(c1, c2)


def vqt_plan(sr: float, hop_length: int, fmin: float, n_bins: int, bins_per_octave: int,
             filter_scale: float, earlydownsample: bool) -> Dict:
    """Static plan of the multirate (variable-)Q transform [1]_ [2]_ as nnAudio2's ``VQT``.

    ``n_octaves = ceil(n_bins / bins_per_octave)`` octaves of ``bins_per_octave`` bins each,
    the top one ending at the top bin ``fmax_t = fmin 2 ** ((n_bins - 1) / bpo)``; after
    ``e`` early halvings (:func:`nnaudio_early_downsample_count`, ``factor = 2 ** e``, rate
    ``sr_e = sr / factor``, hop ``hop_e = hop / factor``) octave ``j`` (0 = top) is computed
    at rate ``sr_e / 2 ** j`` with hop ``hop_e / 2 ** j`` and its own kernel bank, whose
    lowest bin is ``fmin_t 2 ** -j``. The octaves are stacked lowest first and the lowest
    ``n_octaves bpo - n_bins`` rows dropped.

    ``hop_length`` must be divisible by ``factor * 2 ** (n_octaves - 1)`` (raises
    ``ValueError`` naming it): nnAudio then truncates ``hop // 2`` and linearly interpolates
    every octave to the shortest frame count, which moves frames off their centres.

    Returns a dict with ``Q, n_octaves, fmax_t, fmin_t, factor, sr_e, hop_e`` and ``octaves``
    (top first): ``rate``, ``fmin`` (of its bank), ``hop``, ``bin_start`` (first row kept),
    ``n_bins`` (rows kept).
    """
    Q = cqt_quality(filter_scale, bins_per_octave)
    n_octaves = int(np.ceil(float(n_bins) / bins_per_octave))
    fmax_t = fmin * 2.0 ** ((n_bins - 1) / bins_per_octave)
    fmin_t = fmax_t / 2.0 ** (1.0 - 1.0 / bins_per_octave)
    e = 0
    if earlydownsample:
        cutoff = fmax_t * (1.0 + 0.5 * HANN_BANDWIDTH / Q)
        e = nnaudio_early_downsample_count(sr // 2, cutoff, hop_length, n_octaves)
    factor = 2 ** e
    step = factor * 2 ** (n_octaves - 1)
    if hop_length % step:
        raise ValueError(f"hop_length: {hop_length} must be divisible by {step} (early "
                         f"downsampling {factor} x 2 ** (n_octaves - 1)) so that every octave's "
                         f"frames stay centred; nnAudio would truncate and interpolate them")
    hop_e = hop_length // factor
    sr_e = sr / factor
    octaves: List[Dict] = []
    for j in range(n_octaves):
        keep = bins_per_octave if j < n_octaves - 1 else n_bins - (n_octaves - 1) * bins_per_octave
        octaves.append(dict(rate=sr_e / 2 ** j, fmin=fmin_t * 2.0 ** -j, hop=hop_e >> j,
                            bin_start=bins_per_octave - keep, n_bins=keep))
    return dict(Q=Q, n_octaves=n_octaves, fmax_t=fmax_t, fmin_t=fmin_t, factor=factor,
                sr_e=sr_e, hop_e=hop_e, octaves=octaves)
