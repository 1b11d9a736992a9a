"""The stages ``from_hf`` added: ``stack_frames`` (SeamlessM4T's stride stacking),
``normalize(eps_on='variance')`` (eps under the square root) and ``normalize_waveform``
(Wav2Vec2's zero-mean unit-variance clip), each against numpy / transformers' own formula
in float64, plus where they may stand in a chain."""
import numpy as np
import pytest
import torch
from transformers import Wav2Vec2FeatureExtractor

import nnaudio_export as nx
from nnaudio_export.signals import clip

SR = 16000


def _mel_chain(n=8000):
    return (nx.FrontendBuilder(SR, n).stft(n_fft=400, hop_length=160).power().mel(n_mels=20)
            .log(floor=1e-10))


def _run64(builder, x):
    fe = nx.Frontend.from_spec(builder.spec, dtype=torch.float64)
    with torch.no_grad():
        return fe(torch.from_numpy(np.atleast_2d(x)).double()).numpy()


@pytest.mark.parametrize("stride", [1, 2, 3, 4])
def test_stack_frames_is_transformers_reshape_of_time_major_features(stride):
    x = clip("speech", SR, 0.5)
    plain = _run64(_mel_chain().time_major(), x)[0]                       # (T, F) = (51, 20)
    stacked = _run64(_mel_chain().stack_frames(stride).time_major(), x)[0]
    frames = plain.shape[0] // stride * stride                            # the remainder is dropped
    expected = plain[:frames].reshape(frames // stride, stride * plain.shape[1])
    assert stacked.shape == expected.shape
    np.testing.assert_array_equal(stacked, expected)


def test_stack_frames_errors_name_the_stage():
    with pytest.raises(ValueError, match=r"stages\[4\] \(stack_frames\): stride 60 is more than the 51 frames"):
        _mel_chain().stack_frames(60).build()
    with pytest.raises(ValueError, match=r"stages\[0\] \(stack_frames\): needs a transform"):
        nx.FrontendBuilder(SR, 8000).stack_frames(2).build()
    with pytest.raises(ValueError, match=r"stages\[1\] \(stack_frames\): needs \(features, frames\)"):
        nx.FrontendBuilder(SR, 8000).stft(n_fft=400, hop_length=160).stack_frames(2).build()


def test_normalize_eps_on_variance_is_transformers_formula_and_differs_from_nemos():
    x = clip("tones", SR, 0.5)
    logmel = _run64(_mel_chain(), x)[0]                                   # (F, T)
    var = logmel.var(axis=1, ddof=1, keepdims=True)
    mean = logmel.mean(axis=1, keepdims=True)
    eps = 1e-2                     # large enough that where it is added shows
    inside = _run64(_mel_chain().normalize(eps=eps, eps_on="variance"), x)[0]
    outside = _run64(_mel_chain().normalize(eps=eps), x)[0]
    np.testing.assert_allclose(inside, (logmel - mean) / np.sqrt(var + eps), rtol=0, atol=1e-10)
    np.testing.assert_allclose(outside, (logmel - mean) / (np.sqrt(var) + eps), rtol=0, atol=1e-10)
    assert np.abs(inside - outside).max() > 1e-3


def test_normalize_waveform_is_transformers_zero_mean_unit_var_norm():
    for signal in ("speech", "tones", "noise"):
        x = clip(signal, SR, 0.5).astype(np.float64)
        ours = _run64(nx.FrontendBuilder(SR, x.size).normalize_waveform(), x)[0]
        theirs = Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm([x], None)[0]
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


def test_normalize_waveform_of_a_constant_clip_is_exactly_zero_and_it_ends_the_chain():
    fe = nx.FrontendBuilder(SR, 4000).normalize_waveform().build()
    with torch.no_grad():
        y = fe(torch.full((2, 4000), 0.3))
    assert fe.output_shape == (4000,) and fe.output_kind == "linear" and bool((y == 0).all())
    with pytest.raises(ValueError, match=r"stages\[4\] \(normalize_waveform\): works on the input audio"):
        _mel_chain().normalize_waveform().build()
    with pytest.raises(ValueError, match=r"stages\[1\] \(stft\): a transform must come right after"):
        nx.FrontendBuilder(SR, 4000).normalize_waveform().stft(n_fft=400, hop_length=160).build()
    with pytest.raises(ValueError, match=r"eps must be positive"):
        nx.FrontendBuilder(SR, 4000).normalize_waveform(eps=0.0).build()
