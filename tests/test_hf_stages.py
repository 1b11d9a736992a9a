"""The stages ``from_hf`` added: ``stack_frames`` (SeamlessM4T's stride stacking),
``normalize(eps_on='variance')`` (eps under the square root) and ``normalize_waveform``
(Wav2Vec2's zero-mean unit-variance clip), each against numpy / transformers' own formula
in float64, plus where they may stand in a chain; the mel stage's ``allow_above_nyquist``
(against librosa) and ``bin_rate`` (against transformers' ``mel_filter_bank``); the
``repeat_pad`` modes against transformers' CLAP padding code."""
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


def _mel_weights(sr, n_fft, **mel):
    fe = nx.FrontendBuilder(sr, 4 * n_fft).stft(n_fft=n_fft, hop_length=n_fft // 4).power().mel(**mel).build()
    return fe.stages[-1].weight.detach().double().numpy()


def test_mel_above_nyquist_only_when_asked_and_then_as_librosa():
    import librosa
    with pytest.raises(ValueError, match=r"fmax: 8000.0 Hz is above the Nyquist.*allow_above_nyquist"):
        _mel_weights(8000, 400, n_mels=40, fmax=8000.0)
    ours = _mel_weights(8000, 400, n_mels=40, fmax=8000.0, allow_above_nyquist=True)
    with pytest.warns(UserWarning, match="Empty filters"):
        want = librosa.filters.mel(sr=8000, n_fft=400, n_mels=40, fmax=8000.0, dtype=np.float64)
    assert np.all(ours[-5:] == 0) and np.abs(ours - want).max() <= 1e-7 * np.abs(want).max()


@pytest.mark.parametrize("sr, n_fft", [(11025, 512), (16000, 511)])
def test_mel_bin_rate_is_transformers_mel_filter_bank(sr, n_fft):
    from transformers.audio_utils import mel_filter_bank
    want = mel_filter_bank(num_frequency_bins=n_fft // 2 + 1, num_mel_filters=40, min_frequency=0.0,
                           max_frequency=5000.0, sampling_rate=sr, norm="slaney", mel_scale="slaney").T
    rate = n_fft * (sr // 2) / (n_fft // 2)
    ours = _mel_weights(sr, n_fft, n_mels=40, fmax=5000.0, bin_rate=rate)
    plain = _mel_weights(sr, n_fft, n_mels=40, fmax=5000.0)
    assert np.abs(ours - want).max() <= 1e-7 * np.abs(want).max()
    assert np.abs(plain - want).max() > 1e-3 * np.abs(want).max()     # the true bin frequencies differ


@pytest.mark.parametrize("mode", ["repeatpad", "repeat", "pad"])
@pytest.mark.parametrize("n", [300, 250, 1000])
def test_repeat_pad_modes_are_clap_padding(mode, n):
    """transformers' ClapFeatureExtractor._get_input_mel padding, restated: repeat ->
    tile(n_repeat + 1)[:max_length]; repeatpad -> tile(n_repeat); then zero-pad."""
    x = np.arange(1, n + 1, dtype=np.float64)
    n_repeat = int(1000 / n)
    want = {"repeat": np.tile(x, n_repeat + 1)[:1000], "repeatpad": np.tile(x, n_repeat), "pad": x}[mode]
    want = np.pad(want, (0, 1000 - want.shape[0]))
    fe = nx.FrontendBuilder(SR, n).repeat_pad(length=1000, mode=mode).stft(n_fft=64, hop_length=16).build()
    with torch.no_grad():
        got = fe.stages[1](fe.stages[0](torch.from_numpy(x[None].astype(np.float32)))).double().numpy()
    assert np.array_equal(got.reshape(-1), want)
