"""Kernel math (float64 numpy) against independent references: librosa, scipy, numpy.fft,
nnAudio 0.3.4's own kernel builder."""

import librosa
import numpy as np
import pytest
import scipy.fft
import scipy.signal
from nnAudio.utils import create_fourier_kernels

from nnaudio_export.kernels import (dct_matrix, fourier_bin_frequencies, fourier_kernels,
                                    get_window, mel_filterbank, pad_center)

# --------------------------------------------------------------------------- mel

MEL_SETUPS = [
    # sr, n_fft, n_mels, fmin, fmax
    (22050, 2048, 128, 0.0, None),
    (16000, 512, 40, 20.0, 7600.0),
    (16000, 400, 80, 0.0, 8000.0),
    (44100, 1024, 64, 300.0, 12000.0),
    (8000, 256, 23, 100.0, 3800.0),
]


@pytest.mark.parametrize("sr,n_fft,n_mels,fmin,fmax", MEL_SETUPS)
@pytest.mark.parametrize("htk", [False, True])
@pytest.mark.parametrize("norm", [None, 1, "slaney", np.inf, 2])
def test_mel_filterbank_matches_librosa(sr, n_fft, n_mels, fmin, fmax, htk, norm):
    ours = mel_filterbank(sr, n_fft, n_mels, fmin, fmax, htk, norm)
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax,
                              htk=htk, norm=norm, dtype=np.float64)
    assert ours.shape == ref.shape == (n_mels, n_fft // 2 + 1)
    assert ours.dtype == np.float64
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-7)


def test_mel_filterbank_norms_mean_what_librosa_says():
    # Sanity of the semantics (on the librosa reference-equal output): inf -> peak 1, 1 -> sum 1.
    inf = mel_filterbank(16000, 512, 40, 0.0, 8000.0, False, np.inf)
    np.testing.assert_allclose(inf.max(axis=1), 1.0, atol=1e-12)
    one = mel_filterbank(16000, 512, 40, 0.0, 8000.0, False, 1)
    np.testing.assert_allclose(one.sum(axis=1), 1.0, atol=1e-12)


def test_mel_filterbank_bad_norm():
    with pytest.raises(ValueError, match="norm"):
        mel_filterbank(16000, 512, 40, norm="area")


# --------------------------------------------------------------------------- DCT

@pytest.mark.parametrize("n_in,n_out", [(128, 20), (40, 13), (80, 80), (23, 1), (7, 7)])
@pytest.mark.parametrize("norm", ["ortho", None])
def test_dct_matrix_matches_scipy(n_in, n_out, norm):
    d = dct_matrix(n_in, n_out, norm)
    assert d.shape == (n_out, n_in)
    # Column n of the matrix is the DCT of the n-th unit vector.
    ref = scipy.fft.dct(np.eye(n_in), type=2, norm=norm, axis=0)[:n_out]
    np.testing.assert_allclose(d, ref, rtol=0, atol=1e-12 * max(1.0, np.abs(ref).max()))
    x = np.random.default_rng(0).standard_normal((n_in, 5))
    np.testing.assert_allclose(d @ x, scipy.fft.dct(x, type=2, norm=norm, axis=0)[:n_out],
                               rtol=0, atol=1e-10)


def test_dct_matrix_ortho_is_orthonormal_against_scipy_idct():
    d = dct_matrix(32, 32, "ortho")
    ref_inv = scipy.fft.idct(np.eye(32), type=2, norm="ortho", axis=0)
    np.testing.assert_allclose(d @ ref_inv, np.eye(32), atol=1e-12)


# --------------------------------------------------------------------------- windows

WINDOWS = ["hann", "hamming", "blackman", "boxcar", "bartlett", ("kaiser", 8.0),
           ("gaussian", 7.0), "triang", "blackmanharris", "nuttall"]


@pytest.mark.parametrize("window", WINDOWS, ids=str)
@pytest.mark.parametrize("length", [1, 2, 15, 400, 512])
@pytest.mark.parametrize("fftbins", [True, False])
def test_get_window_matches_scipy(window, length, fftbins):
    ours = get_window(window, length, fftbins=fftbins)
    ref = scipy.signal.get_window(window, length, fftbins=fftbins)
    assert ours.dtype == np.float64 and ours.shape == (length,)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-14)


@pytest.mark.parametrize("length", [256, 400, 2048])
def test_get_window_hann_is_librosa_periodic_hann(length):
    np.testing.assert_allclose(get_window("hann", length), librosa.filters.get_window("hann", length),
                               rtol=0, atol=1e-14)
    # periodic == first N of the symmetric window of N + 1 (scipy's definition, checked independently)
    np.testing.assert_allclose(get_window("hann", length),
                               scipy.signal.windows.hann(length + 1, sym=True)[:-1], atol=1e-14)


def test_get_window_aliases_and_list_spec():
    np.testing.assert_allclose(get_window("hann_symmetric", 64),
                               scipy.signal.get_window("hann", 64, fftbins=False), atol=1e-15)
    np.testing.assert_allclose(get_window(["kaiser", 4.0], 64),
                               scipy.signal.get_window(("kaiser", 4.0), 64), atol=1e-15)
    np.testing.assert_allclose(get_window("rectangular", 10), np.ones(10), atol=0)


@pytest.mark.parametrize("n,size", [(400, 512), (5, 8), (512, 512), (3, 10)])
def test_pad_center_matches_librosa(n, size):
    x = np.arange(1, n + 1, dtype=np.float64)
    np.testing.assert_array_equal(pad_center(x, size), librosa.util.pad_center(x, size=size))


def test_get_window_unknown_names_window():
    with pytest.raises(ValueError, match="window"):
        get_window("no_such_window", 64)


# --------------------------------------------------------------------------- Fourier kernels

@pytest.mark.parametrize("n_fft,win_length,window", [(512, None, "hann"), (512, 400, "hamming"),
                                                     (400, 400, "hann"), (256, 201, "blackman"),
                                                     (63, None, "hann")])
def test_fourier_kernels_equal_rfft_of_windowed_frames(n_fft, win_length, window):
    cos, sin, win = fourier_kernels(n_fft, win_length, window=window)
    wl = n_fft if win_length is None else win_length
    ref_win = librosa.util.pad_center(scipy.signal.get_window(window, wl, fftbins=True), size=n_fft)
    np.testing.assert_allclose(win, ref_win, atol=1e-15)
    assert cos.shape == sin.shape == (n_fft // 2 + 1, n_fft)
    frames = np.random.default_rng(7).standard_normal((9, n_fft))
    ours = frames @ cos.T - 1j * (frames @ sin.T)
    ref = np.fft.rfft(frames * ref_win, axis=-1)
    err = np.abs(ours - ref).max()
    assert err <= 1e-10 * np.abs(ref).max(), err


@pytest.mark.parametrize("freq_scale,fmin,fmax,freq_bins,sr", [
    ("linear", 50.0, 6000.0, None, 22050),
    ("log", 50.0, 6000.0, 200, 22050),
    ("log2", 30.0, 7900.0, 100, 16000),
    ("no", 50.0, 6000.0, None, 22050),
])
def test_fourier_kernels_match_nnaudio(freq_scale, fmin, fmax, freq_bins, sr):
    n_fft = 512
    wsin, wcos, bins2freq, _, mask = create_fourier_kernels(
        n_fft, win_length=n_fft, freq_bins=freq_bins, fmin=fmin, fmax=fmax, sr=sr,
        freq_scale=freq_scale, window="hann", verbose=False)
    cos, sin, win = fourier_kernels(n_fft, n_fft, freq_bins, fmin, fmax, sr, freq_scale, "hann")
    # nnAudio rounds its kernels to float32: agreement is to float32 resolution.
    np.testing.assert_allclose(win, mask, rtol=0, atol=1e-7)
    np.testing.assert_allclose(cos, wcos[:, 0, :].astype(np.float64) * mask, rtol=0, atol=2e-7)
    np.testing.assert_allclose(sin, wsin[:, 0, :].astype(np.float64) * mask, rtol=0, atol=2e-7)
    np.testing.assert_allclose(fourier_bin_frequencies(n_fft, freq_bins, fmin, fmax, sr, freq_scale),
                               bins2freq, rtol=1e-12, atol=1e-9)


def test_fourier_kernels_arbitrary_frequencies_are_dtft():
    # 'log' bins: X(f) = sum x w exp(-2 pi i f n / sr), evaluated independently with numpy.
    sr, n_fft = 16000, 256
    cos, sin, win = fourier_kernels(n_fft, None, 40, 100.0, 7000.0, sr, "log", "hann")
    f = fourier_bin_frequencies(n_fft, 40, 100.0, 7000.0, sr, "log")
    x = np.random.default_rng(3).standard_normal(n_fft)
    n = np.arange(n_fft)
    ref = np.exp(-2j * np.pi * np.outer(f, n) / sr) @ (x * scipy.signal.get_window("hann", n_fft))
    np.testing.assert_allclose(cos @ x - 1j * (sin @ x), ref, rtol=0, atol=1e-10 * np.abs(ref).max())


@pytest.mark.parametrize("name", ["hann", "hamming", "blackman", "boxcar"])
def test_cosine_windows_equal_scipy(name):
    # computed without scipy.signal (whose import pulls in scipy.stats); scipy is the reference
    from nnaudio_export.kernels.windows import get_window
    for n in (1, 2, 3, 16, 400, 401, 2048):
        for periodic in (True, False):
            ref = scipy.signal.get_window(name, n, fftbins=periodic)
            np.testing.assert_allclose(get_window(name, n, periodic), ref, rtol=0, atol=4e-15)


def test_building_a_preset_does_not_import_scipy_signal():
    import subprocess
    import sys
    code = ("import sys, nnaudio_export as nx; nx.presets.load('whisper_80'); nx.presets.load('mel_128'); "
            "print(sorted(m for m in ('scipy.signal', 'scipy.stats') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
