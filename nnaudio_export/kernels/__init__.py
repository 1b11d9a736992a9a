"""Filterbank math: small pure numpy/scipy functions in float64, no torch.

Each function returns the *kernels* (what a transform is); the torch layers in
:mod:`nnaudio_export.layers` decide how they are applied (conv1d / matmul).
"""
from .windows import get_window, pad_center, povey_window
from .fourier import fourier_kernels, fourier_bin_frequencies
from .mel import hz_to_mel, mel_to_hz, mel_frequencies, fft_frequencies, mel_filterbank
from .dct import dct_matrix
from .split import power_of_two_table, split_bits, split_kernel
from .inverse import (factor_pair, factor_triple, irfft_factors, irfft_matrix, irfft_three_stage,
                      nola_gap, synthesis_window, window_sumsquare)

__all__ = [
    "get_window", "pad_center", "povey_window",
    "fourier_kernels", "fourier_bin_frequencies",
    "hz_to_mel", "mel_to_hz", "mel_frequencies", "fft_frequencies", "mel_filterbank",
    "dct_matrix",
    "split_bits", "split_kernel", "power_of_two_table",
    "synthesis_window", "irfft_matrix", "irfft_factors", "factor_pair", "irfft_three_stage", "factor_triple",
    "window_sumsquare", "nola_gap",
]
