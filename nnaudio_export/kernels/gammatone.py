"""Gammatone filterbank on FFT bins (numpy, float64), as nnAudio's ``get_gammatone``.

Each row is the magnitude response, sampled at the FFT bin frequencies, of Slaney's
4th-order gammatone filter [1]_ (poles and zeros of the cascade of four biquads), the
construction of Ellis' ``fft2gammatonemx`` [2]_.

References
----------
.. [1] Slaney, M. "An efficient implementation of the Patterson-Holdsworth auditory filter
       bank." Apple Computer Technical Report 35, 1993.
.. [2] Ellis, D. P. W. "Gammatone-like spectrograms." 2009,
       http://www.ee.columbia.edu/~dpwe/resources/matlab/gammatonegram/
"""
import numpy as np

# Glasberg & Moore's equivalent rectangular bandwidth: ERB(f) = f / EAR_Q + MIN_BW (order 1).
EAR_Q = 9.26449
MIN_BW = 24.7
GAMMATONE_ORDER = 4


def erb_space(n_bins: int, fmin: float, fmax: float) -> np.ndarray:
    """``n_bins`` centre frequencies equally spaced on the ERB-rate scale from ``fmax`` down
    towards ``fmin`` (``fmax`` itself excluded, ``fmin`` included), returned ascending:
    ``c_k = (fmax + E) * ((fmin + E) / (fmax + E)) ** (k / n_bins) - E``, ``E = EAR_Q MIN_BW``,
    ``k = n_bins .. 1`` (Slaney's ``ERBSpace``)."""
    e = EAR_Q * MIN_BW
    k = np.arange(int(n_bins), 0, -1, dtype=np.float64)
    return (fmax + e) * np.exp(k * (np.log(fmin + e) - np.log(fmax + e)) / n_bins) - e


def gammatone_filterbank(sr: float, n_fft: int, n_bins: int = 64, fmin: float = 0.0,
                         fmax: float = None, width: float = 1.0) -> np.ndarray:
    """``(n_bins, n_fft // 2 + 1)`` gammatone weights for a magnitude spectrum.

    For centre ``c`` (:func:`erb_space`), ``T = 1 / sr``, bandwidth
    ``B = 2 pi 1.019 width ERB(c)``, ``theta = 2 pi c T`` and ``r = exp(-B T)``: one pole pair
    ``p = r exp(i theta)`` (of order 4) and four real zeros
    ``z_j = r (cos theta + s_j sin theta)``, ``s_j = -+ sqrt(3 -+ 2 ** 1.5)``. Row ``c`` at
    ``u_m = exp(2 pi i m / n_fft)`` is::

        W[c, m] = T ** 4 / g(c) * prod_j |u_m - z_j| / |(p - u_m)(conj(p) - u_m)| ** 4 / n_fft

    where ``g(c)`` is the gain at the centre frequency (so the peak is ~1 / n_fft):
    ``g = |prod_j 2T (r exp(i theta) a_j - exp(2 i theta))| / |2 (1 + exp(2 i theta)) r -
    2 r ** 2 - 2 exp(2 i theta)| ** 4`` with ``a_j = cos theta + s_j sin theta`` the zeros'
    factors. The ``1 / n_fft`` is nnAudio's ``get_gammatone``; ``fmax=None`` is ``sr / 2``.
    nnAudio computes this in float64 and stores it in float32.
    """
    fmax = float(sr) / 2.0 if fmax is None else float(fmax)
    centres = erb_space(n_bins, float(fmin), fmax)[:, None]
    T = 1.0 / float(sr)
    bandwidth = 2.0 * np.pi * 1.019 * width * (centres / EAR_Q + MIN_BW)
    r = np.exp(-bandwidth * T)
    theta = 2.0 * np.pi * centres * T
    pole = r * np.exp(1j * theta)
    unit = np.exp(2j * np.pi * np.arange(int(n_fft) // 2 + 1) / n_fft)[None, :]
    rotation = np.exp(2j * theta)
    numerator = np.ones(centres.shape, dtype=np.complex128)
    response = np.ones((centres.shape[0], unit.shape[1]))
    for sign_outer in (-1.0, 1.0):         # sqrt(3 - 2^1.5) first, then sqrt(3 + 2^1.5)
        for sign_inner in (-1.0, 1.0):
            s = sign_inner * np.sqrt(3.0 + sign_outer * 2.0 ** 1.5)
            a = np.cos(theta) + s * np.sin(theta)
            numerator = numerator * (2.0 * T * (r * np.exp(1j * theta) * a - rotation))
            response = response * np.abs(unit - r * a)
    denominator = 2.0 * (1.0 + rotation) * r - 2.0 * r ** 2 - 2.0 * rotation
    gain = np.abs(numerator / denominator ** GAMMATONE_ORDER)
    poles = np.abs((pole - unit) * (np.conj(pole) - unit)) ** -GAMMATONE_ORDER
    return T ** GAMMATONE_ORDER / gain * response * poles / float(n_fft)
