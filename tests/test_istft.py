"""The inverse STFT layer against the real references: torch.istft and librosa.istft in
float64 on the same spectra, Vocos' own ISTFT ('same' padding), our STFT -> iSTFT round
trip; its kernel math against numpy / librosa / scipy; its errors; TorchScript and ONNX
Runtime of the layer and of a user model STFT -> mask network -> iSTFT.

Tolerance: 1e-6 x each item's peak for the float32 layer, 1e-12 for the float64 build
(measured ~2e-15). Where the overlap-added squared window ``e[m]`` is small (an uncentred
edge, or ``length`` past the last full overlap) the inverse divides by it: any float32
inverse then amplifies its rounding by ``sqrt(max e / e[m])`` (the frames' rounding is
absolute, the window in the numerator is ``sqrt(e)``), torch.istft's own float32 run
included (asserted). Both tolerances are scaled by that factor sample by sample (1.0-1.4 except
at such edges).
"""
import warnings

import librosa
import numpy as np
import onnx
import onnxruntime
import pytest
import scipy.signal
import torch

from nnaudio_export import signals
from nnaudio_export.kernels.inverse import (edge_bin_blocks, factor_pair, factor_triple, irfft_factors,
                                            irfft_macs, irfft_matrix, irfft_three_stage, nola_gap,
                                            overlap_blocks, stage2_blocks, synthesis_window,
                                            three_stage_saves, window_sumsquare)
from nnaudio_export.layers import STFT, iSTFT
from nnaudio_export.layers.inverse_dft import FactoredIRFFT, MatrixIRFFT, ThreeStageIRFFT
from nnaudio_export.references.vocos import vocos_modules

warnings.filterwarnings("ignore")
# torch.istft warns when `length` is past the natural length (it zero-pads, as we do).
pytestmark = pytest.mark.filterwarnings("ignore:The length of signal is shorter")

TOL32, TOL64 = 1e-6, 1e-12
SR = 16000
N_FFT = 512
FRAMES = 40


def torch_window(name: str, n: int) -> torch.Tensor:
    """The window from torch itself (not from our kernels): periodic Hann / Hamming, and
    Kaldi's povey (symmetric Hann ** 0.85)."""
    if name == "hann":
        return torch.hann_window(n, periodic=True, dtype=torch.float64)
    if name == "hamming":
        return torch.hamming_window(n, periodic=True, dtype=torch.float64)
    return torch.hann_window(n, periodic=False, dtype=torch.float64) ** 0.85


def spectra(n_fft: int, hop: int, window: str, center: bool, win_length=None,
            frames: int = FRAMES, **stft_kw) -> torch.Tensor:
    """(4, F, frames) complex128: torch.stft (float64) of speech, tones and noise with the
    same window, plus a random (inconsistent) spectrum."""
    win_length = win_length or n_fft
    n = hop * (frames - 1) + (0 if center else n_fft)
    w = torch_window(window, win_length)
    rows = [torch.stft(torch.from_numpy(signals.clip(s, SR, 1.0)[:n].astype(np.float64)), n_fft, hop,
                       win_length, w, center=center, return_complex=True, **stft_kw)
            for s in ("speech", "tones", "noise")]
    rng = np.random.default_rng(0)
    rows.append(torch.from_numpy(rng.standard_normal(rows[0].shape) + 1j * rng.standard_normal(rows[0].shape)))
    return torch.stack(rows)


def ours(z: torch.Tensor, dtype=torch.float32, **kw) -> np.ndarray:
    layer = iSTFT(freq_bins=z.shape[1], num_frames=z.shape[2], dtype=dtype, **kw)
    with torch.no_grad():
        return layer(torch.view_as_real(z).to(dtype)).double().numpy()


def rel_err(y: np.ndarray, ref: np.ndarray, hop: int, scale=1.0) -> dict:
    """Max error per item relative to the item's peak (divided by the per-sample
    ``scale``): everywhere, and in the first and last ``hop`` samples (where conv-transpose
    stand-ins for torch.istft go wrong)."""
    assert y.shape == ref.shape, (y.shape, ref.shape)
    err = np.abs(y - ref) / np.abs(ref).max(axis=1, keepdims=True) / scale
    return {"all": float(err.max()), "first_hop": float(err[:, :hop].max()),
            "last_hop": float(err[:, -hop:].max())}


def conditioning(window: np.ndarray, hop: int, frames: int, start: int, size: int) -> np.ndarray:
    """``sqrt(max e / e[m])`` over the ``size`` kept output samples from ``start``, ``e`` the
    overlap-added squared window from librosa (1 over zero-padded samples)."""
    e = librosa.filters.window_sumsquare(window=window, n_frames=frames, hop_length=hop,
                                         win_length=window.shape[0], n_fft=window.shape[0],
                                         dtype=np.float64, norm=None)
    kept = e[start:start + size]
    return np.sqrt(e.max() / np.pad(kept, (0, size - kept.shape[0]), constant_values=e.max()))


# --------------------------------------------------------------------------- torch.istft

CASES = [(w, hop, center, length) for w in ("hann", "hamming", "povey") for hop in (N_FFT // 4, N_FFT // 2)
         for center in (True, False) for length in (None, "shorter", "longer")
         # hann / povey are 0 at their ends: uncentred, or (povey) past the last overlap,
         # torch.istft and we refuse (test_where_torch_istft_divides_by_zero...)
         if (center or w == "hamming") and not (w == "povey" and length == "longer")]


def _length(kind, hop, center):
    natural = hop * (FRAMES - 1) + (0 if center else N_FFT)
    return {None: None, "shorter": natural - hop - 37, "longer": natural + hop + 41}[kind]


@pytest.mark.parametrize("window,hop,center,length", CASES)
def test_matches_torch_istft_float64(window, hop, center, length):
    z = spectra(N_FFT, hop, window, center)
    length = _length(length, hop, center)
    w = torch_window(window, N_FFT)
    ref = torch.istft(z, N_FFT, hop, window=w, center=center, length=length).numpy()
    scale = conditioning(w.numpy(), hop, FRAMES, N_FFT // 2 if center else 0, ref.shape[1])
    kw = dict(n_fft=N_FFT, hop_length=hop, window=window, center=center, length=length)
    errs = rel_err(ours(z, **kw), ref, hop, scale)
    assert max(errs.values()) <= TOL32, errs
    assert max(rel_err(ours(z, torch.float64, **kw), ref, hop, scale).values()) <= TOL64
    # torch.istft's own float32 run obeys the same scaled bound
    theirs = torch.istft(z.to(torch.complex64), N_FFT, hop, window=w.float(), center=center,
                         length=length).double().numpy()
    assert max(rel_err(theirs, ref, hop, scale).values()) <= TOL32


def test_float32_inverse_amplifies_rounding_where_the_envelope_is_small():
    """hann, hop n_fft / 2, length past the last full overlap: the last samples are covered
    by one frame whose window goes to sin(pi / n_fft)^2; torch.istft's own float32 run is
    then far more than 1e-6 x peak off its float64 run, as ours is, and both are within the
    conditioning-scaled tolerance (above)."""
    hop = N_FFT // 2
    z = spectra(N_FFT, hop, "hann", True)
    length = _length("longer", hop, True)
    w = torch_window("hann", N_FFT)
    ref = torch.istft(z, N_FFT, hop, window=w, center=True, length=length).numpy()
    theirs = torch.istft(z.to(torch.complex64), N_FFT, hop, window=w.float(), center=True,
                         length=length).double().numpy()
    assert rel_err(theirs, ref, hop)["last_hop"] > 100 * TOL32
    assert rel_err(ours(z, n_fft=N_FFT, hop_length=hop, length=length), ref, hop)["last_hop"] > 100 * TOL32


@pytest.mark.parametrize("window,hop,center,length", [c for c in CASES if c[0] != "povey"])
def test_matches_librosa_istft(window, hop, center, length):
    z = spectra(N_FFT, hop, window, center)
    length = _length(length, hop, center)
    ref = librosa.istft(z.numpy(), n_fft=N_FFT, hop_length=hop, window=window, center=center,
                        length=length, dtype=np.float64)
    scale = conditioning(torch_window(window, N_FFT).numpy(), hop, FRAMES, N_FFT // 2 if center else 0,
                         ref.shape[1])
    kw = dict(n_fft=N_FFT, hop_length=hop, window=window, center=center, length=length)
    errs = rel_err(ours(z, **kw), ref, hop, scale)
    assert max(errs.values()) <= TOL32, errs


@pytest.mark.parametrize("case", ["win_length_400", "odd_n_fft", "normalized", "two_sided"])
def test_matches_torch_istft_other_arguments(case):
    n_fft, hop, win, stft_kw, kw = N_FFT, 128, None, {}, {}
    if case == "win_length_400":
        win, hop = 400, 100
    elif case == "odd_n_fft":
        n_fft = 511
    elif case == "normalized":
        stft_kw = kw = {"normalized": True}
    else:
        stft_kw, kw = {"onesided": False}, {"onesided": False}
    z = spectra(n_fft, hop, "hann", True, win_length=win, **stft_kw)
    ref = torch.istft(z, n_fft, hop, win, torch_window("hann", win or n_fft), center=True,
                      **kw).numpy()
    y = ours(z, n_fft=n_fft, hop_length=hop, win_length=win, **kw)
    assert max(rel_err(y, ref, hop).values()) <= TOL32


def test_two_sided_input_reads_only_the_first_half_like_torch():
    z = spectra(N_FFT, 128, "hann", True, onesided=False)
    z[:, N_FFT // 2 + 1:] = 123.0   # the mirrored half is not read (torch.istft slices it off)
    ref = torch.istft(z, N_FFT, 128, window=torch_window("hann", N_FFT), onesided=False).numpy()
    assert max(rel_err(ours(z, n_fft=N_FFT, hop_length=128, onesided=False), ref, 128).values()) <= TOL32


# --------------------------------------------------------------------------- round trip, Vocos

@pytest.mark.parametrize("name", ["speech", "tones", "noise"])
@pytest.mark.parametrize("n_fft,hop", [(1024, 256), (400, 160)])
def test_round_trip_our_stft_then_istft(name, n_fft, hop):
    x = signals.clip(name, SR, 1.0)
    n = x.shape[0]
    stft = STFT(n_fft, hop_length=hop, output_format="Complex", num_samples=n)
    istft = iSTFT(n_fft, hop_length=hop, length=n, num_frames=stft.output_shape[1])
    with torch.no_grad():
        y = istft(stft(torch.from_numpy(x)[None]))[0].double().numpy()
    assert np.abs(y - x).max() <= TOL32 * np.abs(x).max()


@pytest.mark.parametrize("padding", ["same", "center"])
def test_matches_vocos_istft(padding):
    """Vocos' own ISTFT (vocos 0.1.0 spectral_ops, as shipped: float32; and built with
    torch's default dtype float64) on complex spectra of speech, tones, noise, random."""
    ops = vocos_modules().spectral_ops
    z = spectra(1024, 256, "hann", padding == "center")
    kw = dict(n_fft=1024, hop_length=256, center=padding == "center", padding=padding)
    vocos32 = ops.ISTFT(n_fft=1024, hop_length=256, win_length=1024, padding=padding)
    saved = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        vocos64 = ops.ISTFT(n_fft=1024, hop_length=256, win_length=1024, padding=padding)
    finally:
        torch.set_default_dtype(saved)
    with torch.no_grad():
        ref64 = vocos64(z).numpy()
        ref32 = vocos32(z.to(torch.complex64)).double().numpy()
    y = ours(z, **kw)
    assert y.shape == ref64.shape == (4, 256 * FRAMES if padding == "same" else 256 * (FRAMES - 1))
    assert max(rel_err(y, ref64, 256).values()) <= TOL32
    assert max(rel_err(ours(z, torch.float64, **kw), ref64, 256).values()) <= TOL64
    # Vocos' float32 run is itself this close to its float64 run: the references agree.
    assert max(rel_err(ref32, ref64, 256).values()) <= TOL32


# --------------------------------------------------------------------------- kernels

@pytest.mark.parametrize("n_fft", [16, 15, 400, 511, 1024, 2048])
@pytest.mark.parametrize("normalized", [False, True])
def test_inverse_dft_kernels_are_irfft(n_fft, normalized):
    """The matrix and the two-stage factors (applied in numpy, as the layer applies them)
    both equal numpy.fft.irfft (times the window), ignoring Im of the DC / Nyquist bins."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal(n_fft // 2 + 1) + 1j * rng.standard_normal(n_fft // 2 + 1)
    w = rng.random(n_fft)
    ref = np.fft.irfft(X, n_fft, norm="ortho" if normalized else "backward")
    z = np.concatenate([X.real, X.imag])
    np.testing.assert_allclose(z @ irfft_matrix(n_fft, normalized), ref, rtol=0, atol=1e-13)
    f, (p, q) = irfft_factors(n_fft, w, normalized), factor_pair(n_fft)
    rows = f["stage1"].shape[1] // 2
    xs = np.pad(X * f["bin_scale"], (0, rows * q - X.shape[0]))
    a = (f["stage1"] @ np.stack([xs.real, xs.imag]).reshape(2 * rows, q)).reshape(p, 2 * q)
    y = np.einsum("cdk,ck->dc", f["stage2"], a).reshape(-1)         # n = c + P d
    np.testing.assert_allclose(y, w * ref, rtol=0, atol=1e-13)


@pytest.mark.parametrize("n_fft,hop", [(1024, 256), (400, 100), (1000, 250), (2048, 480)])
def test_overlap_added_factors_equal_overlap_added_irfft(n_fft, hop):
    """The fused path's factors, applied in numpy as the layer applies them (stage 1 without
    ``bin_scale``, stage 2 to hop-long blocks summed shifted, plus the DC / Nyquist
    correction), equal the overlap-add of ``w * numpy.fft.irfft`` frames."""
    rng = np.random.default_rng(2)
    frames = 6
    X = rng.standard_normal((frames, n_fft // 2 + 1)) + 1j * rng.standard_normal((frames, n_fft // 2 + 1))
    w = rng.random(n_fft)
    ref = np.zeros(n_fft + hop * (frames - 1))
    for t, frame in enumerate(w * np.fft.irfft(X, n_fft)):
        ref[t * hop: t * hop + n_fft] += frame
    f, (p, q) = irfft_factors(n_fft, w), factor_pair(n_fft)
    d, r = overlap_blocks(n_fft, p, hop)
    assert d * p == hop and r * hop >= n_fft
    rows = f["stage1"].shape[1] // 2
    xs = np.pad(X, [(0, 0), (0, rows * q - X.shape[1])])
    a = np.stack([xs.real, xs.imag], axis=1).reshape(frames, 2 * rows, q)
    a = (f["stage1"] @ a).reshape(frames, p, 2 * q)                          # [t, c, (Re|Im, b)]
    blocks = np.einsum("tck,cjk->ctj", a, stage2_blocks(f["stage2"], hop))
    blocks = blocks.reshape(p, frames, r, d).transpose(0, 2, 1, 3)           # [c, r, t, d']
    edges = np.stack([X[:, 0].real, X[:, n_fft // 2].real])                  # [u, t]
    corr = np.einsum("ut,urj->trj", edges, edge_bin_blocks(w, hop).reshape(2, r, hop))
    out = np.zeros((frames + r - 1, d, p))
    for k in range(r):
        out[k: k + frames] += blocks[:, k].transpose(1, 2, 0)                # j = c + P d'
        out[k: k + frames] += corr[:, k].reshape(frames, d, p)
    y = out.reshape(-1)
    np.testing.assert_allclose(y[: ref.shape[0]], ref, rtol=0, atol=1e-13)
    np.testing.assert_array_equal(y[ref.shape[0]:], 0.0)
    assert overlap_blocks(n_fft, p, hop + 1) == (0, 0)                       # P does not divide it


def _overlap_added_irfft(X: np.ndarray, w: np.ndarray, hop: int, normalized: bool = False) -> np.ndarray:
    """The reference: ``w * numpy.fft.irfft`` of each frame of ``X`` (T, F), overlap-added."""
    n_fft = w.shape[0]
    ref = np.zeros(n_fft + hop * (X.shape[0] - 1))
    for t, frame in enumerate(w * np.fft.irfft(X, n_fft, norm="ortho" if normalized else "backward")):
        ref[t * hop: t * hop + n_fft] += frame
    return ref


@pytest.mark.parametrize("n_fft,hop,factors,normalized", [
    (1024, 256, (16, 8, 8), False), (1024, 256, (8, 8, 16), True), (2048, 512, (16, 8, 16), False),
    (400, 100, (10, 5, 8), False),
    (600, 150, (3, 5, 40), False),     # odd P: N / 2 does not fill rows of Q, the Nyquist bin stays in
    (675, 135, (3, 9, 25), True)])     # odd N: no Nyquist bin
def test_three_stage_factors_equal_overlap_added_irfft(n_fft, hop, factors, normalized):
    """The three-stage factors, applied in numpy as ThreeStageIRFFT applies them (stage 1 on
    the bins it reads, stage 2 per ``c``, stage 3 per ``(c, d1)`` giving hop-long blocks
    summed shifted, plus the DC / Nyquist correction), equal the overlap-add of
    ``w * numpy.fft.irfft`` frames; where ``N / 2`` bins fill the rows the Nyquist bin is
    left to the correction."""
    rng = np.random.default_rng(3)
    frames, (p, q1, q2) = 6, factors
    q = q1 * q2
    X = rng.standard_normal((frames, n_fft // 2 + 1)) + 1j * rng.standard_normal((frames, n_fft // 2 + 1))
    w = rng.random(n_fft)
    f = irfft_three_stage(n_fft, w, factors, hop, normalized)
    assert f["bins"] == (n_fft // 2 if n_fft % 2 == 0 and p % 2 == 0 else n_fft // 2 + 1)
    (d, r), rows = f["blocks"], f["stage1"].shape[1] // 2
    assert d * p * q1 == hop and r * hop >= n_fft
    xs = np.zeros((frames, rows * q), complex)
    xs[:, : f["bins"]] = X[:, : f["bins"]]
    a = (f["stage1"] @ np.stack([xs.real, xs.imag], axis=1).reshape(frames, 2 * rows, q))
    a = a.reshape(frames, p, 2 * q1, q2)                                      # [t, c, (Re|Im, b1), b2]
    b = np.einsum("cij,tcjk->tcik", f["stage2"], a).reshape(frames, p, q1, 2 * q2)   # [t, c, d1, (Re|Im, b2)]
    blocks = np.einsum("cejk,tcek->tcej", f["stage3"], b).reshape(frames, p, q1, d, r)
    edges = np.stack([X[:, 0].real, X[:, n_fft // 2].real])                  # [u, t]
    corr = np.einsum("ut,urj->trj", edges, f["edge"].reshape(2, r, hop))
    out = np.zeros((frames + r - 1, d, q1, p))                               # j = c + P d1 + P Q1 d'
    for k in range(r):
        out[k: k + frames] += blocks[..., k].transpose(0, 3, 2, 1)
        out[k: k + frames] += corr[:, k].reshape(frames, d, q1, p)
    y, ref = out.reshape(-1), _overlap_added_irfft(X, w, hop, normalized)
    np.testing.assert_allclose(y[: ref.shape[0]], ref, rtol=0, atol=1e-13)
    np.testing.assert_array_equal(y[ref.shape[0]:], 0.0)


def test_three_stage_split_rule():
    """The split with the fewest multiply-adds whose ``P Q1`` divides the hop, taken where it
    needs at most 0.7 of the two-stage inverse's: n_fft 1024, hop 256 -> 16 x 8 x 8, 81,920
    per frame against 135,168; none for a hop no split divides, nor where it saves too little."""
    assert factor_triple(1024, 256) == (16, 8, 8) and factor_pair(1024) == (32, 32)
    assert irfft_macs(1024, 256, (16, 8, 8)) == 81920 and irfft_macs(1024, 256, (32, 32)) == 135168
    assert three_stage_saves(1024, 256) == (16, 8, 8)
    assert factor_triple(511, 127) is None and three_stage_saves(511, 127) is None
    assert factor_triple(2048, 480) == (8, 4, 64) and three_stage_saves(2048, 480) is None   # 0.83
    assert three_stage_saves(1024, 0) is None


@pytest.mark.parametrize("n_fft,hop,kind", [(1024, 256, ThreeStageIRFFT), (400, 100, ThreeStageIRFFT),
                                            (2048, 480, FactoredIRFFT), (511, 127, FactoredIRFFT),
                                            (16, 4, MatrixIRFFT)])
def test_inverse_dft_choice_and_its_frames(n_fft, hop, kind):
    """Which inverse DFT the layer builds, that its repr names the factors, and that its
    frames (``forward``, built in float64) are ``w * numpy.fft.irfft`` of each frame."""
    layer = iSTFT(n_fft, hop_length=hop, num_frames=5, dtype=torch.float64)
    idft = layer.idft
    assert type(idft) is kind
    factors = idft.describe()["factors"]
    assert (factors is None) == (kind is MatrixIRFFT)
    named = "factors=" + "x".join(map(str, factors)) if factors else "factors="
    assert (named in repr(layer)) == bool(factors)
    rng = np.random.default_rng(4)
    X = rng.standard_normal((2, 5, n_fft // 2 + 1)) + 1j * rng.standard_normal((2, 5, n_fft // 2 + 1))
    w = idft.window.numpy()
    with torch.no_grad():
        frames = idft(torch.view_as_real(torch.from_numpy(X).transpose(1, 2).contiguous())).numpy()
    np.testing.assert_allclose(frames, w * np.fft.irfft(X, n_fft), rtol=0, atol=1e-13)


@pytest.mark.parametrize("window,win_length,n_fft,hop", [("hann", 400, 512, 128), ("hamming", 1024, 1024, 256),
                                                          (("kaiser", 8.0), 300, 300, 75)])
def test_window_sumsquare_matches_librosa(window, win_length, n_fft, hop):
    ours_ = window_sumsquare(synthesis_window(window, win_length, n_fft), 17, hop)
    ref = librosa.filters.window_sumsquare(window=window, n_frames=17, hop_length=hop,
                                           win_length=win_length, n_fft=n_fft, dtype=np.float64, norm=None)
    np.testing.assert_allclose(ours_, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("window,nperseg,hop", [("hann", 256, 64), ("hann", 256, 128), ("hann", 256, 256),
                                                ("boxcar", 256, 256), ("hamming", 256, 200),
                                                (("tukey", 0.0), 128, 128), ("bartlett", 128, 128)])
def test_nola_gap_agrees_with_scipy_check_nola(window, nperseg, hop):
    w = scipy.signal.get_window(window, nperseg)
    ok = scipy.signal.check_NOLA(w, nperseg, nperseg - hop) if hop < nperseg else \
        scipy.signal.check_NOLA(w, nperseg, 0)
    assert (nola_gap(w, hop) is None) == bool(ok)


# --------------------------------------------------------------------------- errors

@pytest.mark.parametrize("window,hop,center,length,param", [
    ("hann", N_FFT, True, None, "hop_length"),        # NOLA violated: hann with hop n_fft
    ("hann", N_FFT // 4, False, None, "window"),      # only at the edge: hann is 0 at sample 0
    ("povey", N_FFT // 2, False, None, "window"),
    ("povey", N_FFT // 2, True, "longer", "window"),  # symmetric: 0 at its last sample too
])
def test_where_torch_istft_divides_by_zero_we_refuse_at_construction(window, hop, center, length, param):
    length = _length(length, hop, center)
    z = spectra(N_FFT, min(hop, N_FFT // 2), window, True)[:1]
    with pytest.raises(RuntimeError, match="window overlap add min"):
        torch.istft(z, N_FFT, hop, window=torch_window(window, N_FFT), center=center, length=length)
    with pytest.raises(ValueError, match=f"^{param}: "):
        iSTFT(N_FFT, hop_length=hop, window=window, center=center, length=length, num_frames=FRAMES)
    if length is None:     # without num_frames: refused for every frame count
        with pytest.raises(ValueError, match=f"^{param}: "):
            iSTFT(N_FFT, hop_length=hop, window=window, center=center)


@pytest.mark.parametrize("kwargs,param", [
    (dict(hop_length=600), "hop_length"),                           # hop > n_fft: gaps
    (dict(freq_bins=300), "freq_bins"),
    (dict(freq_bins=N_FFT, onesided=True), "freq_bins"),
    (dict(padding="same"), "padding"),                              # 'same' needs center=False
    (dict(padding="valid", center=False), "padding"),
    (dict(freq_scale="log"), "freq_scale"),
    (dict(win_length=N_FFT + 1), "win_length"),
    (dict(num_frames=1), "num_frames"),                             # centred: no sample left
    (dict(length=0), "length"),
    (dict(window="no_such_window"), "window"),
])
def test_bad_arguments_name_the_parameter(kwargs, param):
    with pytest.raises(ValueError, match=f"^{param}"):
        iSTFT(N_FFT, **kwargs)


def test_bad_input_shapes_name_freq_bins_and_num_frames():
    layer = iSTFT(N_FFT, hop_length=128, num_frames=FRAMES)
    good = torch.zeros(2, N_FFT // 2 + 1, FRAMES, 2)
    assert layer(good).shape == (2, 128 * (FRAMES - 1))
    for bad, what in ((good[..., 0], "freq_bins=257"), (good[:, :256], "freq_bins=257"),
                      (good[:, :, :-1], "num_frames=40")):
        with pytest.raises(ValueError, match=what):
            layer(bad)
    free = iSTFT(N_FFT, hop_length=128)      # no num_frames: any count from the fewest usable
    assert free(good[:, :, :7]).shape == (2, 128 * 6)
    with pytest.raises(ValueError, match="at least 2 frames"):
        free(good[:, :, :1])


# --------------------------------------------------------------------------- variants

def test_unfixed_frames_and_trainable_kernels_give_the_same_output():
    """Without num_frames the envelope is computed per call; trainable kernels use the
    inverse-DFT matrix (a parameter) instead of the factored DFT: the same numbers."""
    z = torch.view_as_real(spectra(N_FFT, 128, "hann", True)).float()
    fixed = iSTFT(N_FFT, hop_length=128, num_frames=FRAMES)
    free = iSTFT(N_FFT, hop_length=128)
    trainable = iSTFT(N_FFT, hop_length=128, num_frames=FRAMES, trainable_window=True,
                      trainable_kernels=True)
    assert fixed.idft.method == "factored" and trainable.idft.method == "matrix"
    assert isinstance(trainable.idft.window, torch.nn.Parameter)
    assert isinstance(trainable.idft.kernel, torch.nn.Parameter)
    assert not isinstance(fixed.idft.window, torch.nn.Parameter)
    with torch.no_grad():
        y = fixed(z)
        peak = y.abs().max()
        assert (free(z) - y).abs().max() <= TOL32 * peak
        assert (trainable(z) - y).abs().max() <= TOL32 * peak
    trainable(z).square().sum().backward()
    assert trainable.idft.window.grad.abs().sum() > 0 and trainable.idft.kernel.grad.abs().sum() > 0


@pytest.mark.parametrize("n_fft,hop", [(15, 3), (16, 4), (400, 100), (511, 127), (1024, 256), (2048, 480)])
def test_matrix_and_factored_inverse_dft_agree_with_torch(n_fft, hop):
    """The matrix, the two-stage frames + overlap-add (n_fft 511: P = 7 does not divide the
    hop), the two-stage overlap-add of hop-long blocks (2048, hop 480: P = 32; no three-stage
    split saves enough) and the three-stage one (400: 10 x 5 x 8, 1024: 16 x 8 x 8)."""
    fused = iSTFT(n_fft, hop_length=hop).idft
    assert getattr(fused, "fuses_overlap_add") == (n_fft in (400, 1024, 2048))
    z = spectra(n_fft, hop, "hann", True)
    ref = torch.istft(z, n_fft, hop, window=torch_window("hann", n_fft)).numpy()
    for trainable in (False, True):
        y = ours(z, n_fft=n_fft, hop_length=hop, trainable_kernels=trainable)
        assert max(rel_err(y, ref, hop).values()) <= TOL32


# --------------------------------------------------------------------------- export

def _onnx(module, x, path):
    torch.onnx.export(module, (x,), str(path), dynamo=True, external_data=False, opset_version=18,
                      input_names=["x"], output_names=["y"])
    model = onnx.load(str(path))
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"STFT", "DFT", "ConvTranspose", "Col2Im"}, ops
    sess = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x.numpy()})[0]


@pytest.mark.parametrize("center,padding", [(True, "center"), (False, "same")])
def test_layer_scripts_and_runs_in_onnxruntime(center, padding, tmp_path):
    z = torch.view_as_real(spectra(1024, 256, "hann", center)).float()
    layer = iSTFT(1024, hop_length=256, center=center, padding=padding, num_frames=FRAMES).eval()
    with torch.no_grad():
        y = layer(z).numpy()
        np.testing.assert_array_equal(torch.jit.script(layer)(z).numpy(), y)
    out = _onnx(layer, z, tmp_path / "istft.onnx")
    assert np.abs(out - y).max() <= 1e-5 * np.abs(y).max()


class MaskedDenoiser(torch.nn.Module):
    """A user model: STFT -> a small mask network on the magnitude -> iSTFT."""

    def __init__(self, num_samples: int, n_fft: int = 512, hop: int = 128):
        super().__init__()
        self.stft = STFT(n_fft, hop_length=hop, output_format="Complex", num_samples=num_samples)
        bins, frames = self.stft.output_shape[:2]
        torch.manual_seed(0)
        self.mask = torch.nn.Sequential(torch.nn.Conv1d(bins, 64, 3, padding=1), torch.nn.ReLU(),
                                        torch.nn.Conv1d(64, bins, 3, padding=1), torch.nn.Sigmoid())
        self.istft = iSTFT(n_fft, hop_length=hop, length=num_samples, num_frames=frames)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        z = self.stft(audio)                                      # (B, F, T, 2)
        mag = torch.sqrt(z[..., 0] ** 2 + z[..., 1] ** 2 + 1e-12)
        return self.istft(z * self.mask(torch.log1p(mag)).unsqueeze(-1))


def test_stft_mask_network_istft_exports_as_one_graph(tmp_path):
    n = 8000
    model = MaskedDenoiser(n).eval()
    x = torch.from_numpy(np.stack([signals.clip("speech", SR, 0.5), signals.clip("noise", SR, 0.5)]))
    with torch.no_grad():
        y = model(x).numpy()
        assert y.shape == (2, n)
        np.testing.assert_allclose(torch.jit.script(model)(x).numpy(), y, rtol=0, atol=1e-6 * np.abs(y).max())
        exported = torch.export.export(model, (x,), strict=False).module()
        np.testing.assert_allclose(exported(x).numpy(), y, rtol=0, atol=1e-6 * np.abs(y).max())
    out = _onnx(model, x, tmp_path / "denoiser.onnx")
    assert np.abs(out - y).max() <= 1e-5 * np.abs(y).max()
