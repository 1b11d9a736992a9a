"""Banded filterbank products (:mod:`nnaudio_export.kernels.banded`,
:func:`nnaudio_export.functional.banded_matmul`, the matrix stages): the bands of librosa's
and Kaldi's own banks give librosa's dense product in float64, the partition is the cheapest
one (checked by brute force), and the stages fall back to the dense product whenever the
zeros are not guaranteed (trainable weights, weights loaded from a state dict)."""
import itertools

import librosa
import numpy as np
import pytest
import torch

import nnaudio_export as nx
from nnaudio_export import functional as FN
from nnaudio_export.kernels.banded import band_cost, banded_macs, row_bands
from nnaudio_export.kernels.dct import dct_matrix
from nnaudio_export.kernels.kaldi import kaldi_mel_banks
from nnaudio_export.signals import clip


def _banded_product(w: np.ndarray, p: np.ndarray, bands) -> np.ndarray:
    return FN.banded_matmul(torch.from_numpy(w), torch.from_numpy(p), [list(b) for b in bands]).numpy()


@pytest.mark.parametrize("sr, n_fft, n_mels, fmax", [(16000, 400, 80, 8000), (22050, 2048, 128, None),
                                                      (16000, 400, 128, 8000), (44100, 1024, 64, 14000)])
def test_bands_of_librosas_bank_give_librosas_product_in_float64(sr, n_fft, n_mels, fmax):
    """librosa's own mel bank (float64) and a power spectrum of speech: the banded product
    equals librosa's dense ``mel_basis @ S`` to float64 rounding, with fewer multiply-adds."""
    w = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmax=fmax, dtype=np.float64)
    y = clip("speech", sr, 1.0)
    s = np.abs(librosa.stft(y.astype(np.float64), n_fft=n_fft, hop_length=n_fft // 4)) ** 2
    bands = row_bands(w)
    assert len(bands) >= 2 and banded_macs(bands, *w.shape) < w.size / 2
    want = w @ s        # melspectrogram(S=s)'s product, with the float64 bank (it builds float32)
    got = _banded_product(w, s[None], bands)[0]
    assert np.abs(got - want).max() <= 1e-13 * np.abs(want).max()


def test_bands_of_kaldis_bank_cover_its_weights():
    """Kaldi's banks (low_freq 20, 80 bins at 16 kHz): every non-zero weight inside a band."""
    w = kaldi_mel_banks(80, 16000, 512, 20.0, 0.0)
    bands = row_bands(w)
    assert bands
    inside = np.zeros_like(w, dtype=bool)
    for r0, r1, c0, c1 in bands:
        inside[r0:r1, c0:c1] = True
    assert not np.any(w[~inside])


@pytest.mark.parametrize("seed", range(6))
def test_partition_is_the_cheapest_one(seed):
    """Random banded matrices (8 rows, some all-zero, widths 1-30 of 200 columns), small
    per-band cost so that splitting matters: the dynamic programme's cost is the brute
    force's, and its bands are consecutive and cover every row."""
    rng = np.random.default_rng(seed)
    w = np.zeros((8, 200))
    for r in range(8):
        if rng.random() < 0.2:
            continue
        c0 = int(rng.integers(0, 170))
        w[r, c0:c0 + int(rng.integers(1, 30))] = rng.random()
    bands = row_bands(w, copy_cost=2.0, op_cost=40.0)
    cost = (sum(band_cost(r1 - r0, c1 - c0, 2.0, 40.0) for r0, r1, c0, c1 in bands)
            if bands else float(w.size))

    def brute(w):
        m, f = w.shape
        best = float(m * f)
        for k in range(m):
            for cuts in itertools.combinations(range(1, m), k):
                edges = (0,) + cuts + (m,)
                total = 0.0
                for a, b in zip(edges, edges[1:]):
                    cols = np.nonzero(np.any(w[a:b] != 0, axis=0))[0]
                    total += band_cost(b - a, int(cols[-1] + 1 - cols[0]) if cols.size else 0, 2.0, 40.0)
                best = min(best, total)
        return best

    assert cost == pytest.approx(brute(w))
    if bands:
        assert [b[0] for b in bands] == [0] + [b[1] for b in bands[:-1]] and bands[-1][1] == 8


def test_dense_matrices_stay_dense():
    """A DCT has no zero block, an all-zero matrix nothing to multiply: both dense ([])."""
    assert row_bands(dct_matrix(80, 20, "ortho")) == []
    assert row_bands(np.zeros((4, 9))) == []


def test_a_band_of_zero_rows_gives_zeros():
    w = np.zeros((6, 50))
    w[3:, 40:50] = np.arange(30).reshape(3, 10) + 1.0
    w[0, 0:3] = 2.0
    bands = row_bands(w, copy_cost=1.0, op_cost=1.0)
    assert any(c0 == c1 for _, _, c0, c1 in bands)          # rows 1-2 read nothing
    p = np.random.default_rng(0).standard_normal((2, 50, 7))
    np.testing.assert_allclose(_banded_product(w, p, bands), w @ p, rtol=0, atol=1e-12)


def _mel_stage(fe):
    return next(s for s in fe.stages if type(s).__name__ == "MelStage")


def test_trainable_bank_is_dense_and_frozen_bank_is_banded():
    spec = nx.presets.get_spec("whisper_80")
    assert _mel_stage(nx.Frontend.from_spec(spec)).bands
    for stage in spec["stages"]:
        if stage["type"] == "mel":
            stage["trainable"] = True
    assert _mel_stage(nx.Frontend.from_spec(spec)).bands == []


def test_weights_loaded_from_a_state_dict_get_their_own_bands():
    """A frozen bank replaced through ``load_state_dict`` by one with weights outside the
    old bands (a bank trained elsewhere): the bands follow, so the output is the new bank's
    dense product, in eager and TorchScript."""
    fe = nx.Frontend.from_spec(nx.presets.get_spec("mel_128"))
    stage = _mel_stage(fe)
    old = [list(b) for b in stage.bands]
    state = fe.state_dict()
    key = next(k for k in state if k.endswith("weight") and state[k].shape == stage.weight.shape)
    state[key] = state[key].clone()
    state[key][0, -1] = 0.5          # filter 0 now also reads the top bin
    fe.load_state_dict(state)
    assert stage.bands != old and stage.bands[0][3] == stage.weight.shape[1]
    x = torch.rand(2, stage.weight.shape[1], 5, dtype=torch.float32)
    want = torch.matmul(stage.weight.double(), x.double())
    for run in (stage, torch.jit.script(stage)):
        assert (run(x).double() - want).abs().max() <= 1e-5 * want.abs().max()


def test_a_mel_layer_given_another_basis_applies_all_of_it():
    """``MelSpectrogram.load_mel_basis`` (the nnAudio importer's path): a basis with a weight
    outside the constructed bands is applied in full, eager and TorchScript."""
    from nnaudio_export.layers import MelSpectrogram
    layer = MelSpectrogram(sr=16000, n_fft=400, n_mels=40, hop_length=160, num_samples=4000)
    basis = layer.mel_basis.clone()
    basis[0, 150] = 0.25
    layer.load_mel_basis(basis)
    dense = MelSpectrogram(sr=16000, n_fft=400, n_mels=40, hop_length=160, num_samples=4000,
                           trainable_mel=True)
    with torch.no_grad():
        dense.mel_basis.copy_(basis)
    x = torch.from_numpy(clip("speech", 16000, 0.25)[None].astype(np.float32))
    want = dense(x)
    for run in (layer, torch.jit.script(layer)):
        assert (run(x) - want).abs().max() <= 1e-6 * want.abs().max()
    with pytest.raises(ValueError, match="n_mels"):
        layer.load_mel_basis(basis[:-1])
