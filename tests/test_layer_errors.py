"""Argument and input validation: ValueErrors that name the parameter, and output_shape."""
import warnings

import librosa
import numpy as np
import pytest
import torch

from nnaudio_export.layers import MFCC, STFT, MelSpectrogram


def _x(*shape):
    return torch.from_numpy(np.random.default_rng(0).standard_normal(shape).astype(np.float32))


# --------------------------------------------------------------------------- input length

@pytest.mark.parametrize("make", [
    lambda: STFT(n_fft=256, hop_length=64, num_samples=4000, verbose=False),
    lambda: MelSpectrogram(sr=16000, n_fft=256, hop_length=64, n_mels=32, num_samples=4000, verbose=False),
    lambda: MFCC(sr=16000, n_fft=256, hop_length=64, n_mels=32, n_mfcc=13, num_samples=4000, verbose=False),
], ids=["STFT", "Mel", "MFCC"])
@pytest.mark.parametrize("length", [3999, 4001, 1000])
def test_wrong_length_names_expected_and_received(make, length):
    layer = make()
    with pytest.raises(ValueError) as info:
        layer(_x(2, length))
    msg = str(info.value)
    assert "4000" in msg and str(length) in msg, msg
    assert "length" in msg or "samples" in msg, msg
    assert layer(_x(2, 4000)).shape[0] == 2  # the right length works


@pytest.mark.parametrize("cls,kw", [
    (STFT, dict(n_fft=256)),
    (MelSpectrogram, dict(n_fft=256, n_mels=32)),
    (MFCC, dict(n_fft=256, n_mels=32, n_mfcc=13)),
])
def test_num_samples_too_short_for_reflect_padding(cls, kw):
    with pytest.raises(ValueError, match="num_samples") as info:
        cls(num_samples=100, verbose=False, **kw)
    assert "100" in str(info.value) and "129" in str(info.value), str(info.value)
    cls(num_samples=129, verbose=False, **kw)  # n_fft // 2 + 1 is the minimum


def test_input_too_short_without_num_samples():
    layer = STFT(n_fft=256, hop_length=64, output_format="Magnitude", verbose=False)
    with pytest.raises(ValueError, match="at least 129"):
        layer(_x(1, 128))
    # At the minimum length the result is still librosa's.
    y = np.random.default_rng(1).standard_normal(129).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # librosa: "n_fft too large for input"
        ref = np.abs(librosa.stft(y.astype(np.float64), n_fft=256, hop_length=64, pad_mode="reflect"))
    with torch.no_grad():
        ours = layer(torch.from_numpy(y)[None]).numpy()[0]
    assert np.abs(ours - ref).max() <= 1e-4 * ref.max()
    no_center = STFT(n_fft=256, hop_length=64, center=False, verbose=False)
    with pytest.raises(ValueError, match="256"):
        no_center(_x(1, 255))
    with pytest.raises(ValueError, match="num_samples"):
        STFT(n_fft=256, center=False, num_samples=255, verbose=False)


def test_num_samples_must_be_positive_int():
    for bad in (0, -5, 100.5, True):
        with pytest.raises(ValueError, match="num_samples"):
            STFT(n_fft=64, num_samples=bad, verbose=False)


# --------------------------------------------------------------------------- arguments

@pytest.mark.parametrize("hop", [0, -1, -64])
@pytest.mark.parametrize("cls", [STFT, MelSpectrogram, MFCC])
def test_bad_hop_length(cls, hop):
    with pytest.raises(ValueError, match="hop_length"):
        cls(n_fft=256, hop_length=hop, verbose=False)


@pytest.mark.parametrize("cls", [STFT, MelSpectrogram, MFCC])
def test_unknown_window(cls):
    with pytest.raises(ValueError, match="window") as info:
        cls(n_fft=256, window="definitely_not_a_window", verbose=False)
    assert "definitely_not_a_window" in str(info.value)


def test_unknown_freq_scale():
    with pytest.raises(ValueError, match="freq_scale") as info:
        STFT(n_fft=256, freq_scale="mel", verbose=False)
    assert "'mel'" in str(info.value)


def test_unknown_output_format():
    with pytest.raises(ValueError, match="output_format") as info:
        STFT(n_fft=256, output_format="Power", verbose=False)
    assert "Power" in str(info.value)


@pytest.mark.parametrize("cls", [MelSpectrogram, MFCC])
def test_mel_fmax_above_nyquist(cls):
    with pytest.raises(ValueError, match="fmax") as info:
        cls(sr=16000, n_fft=512, fmax=9000.0, verbose=False)
    assert "9000" in str(info.value) and "8000" in str(info.value)


def test_other_argument_errors_name_their_parameter():
    with pytest.raises(ValueError, match="fmax"):
        STFT(n_fft=256, freq_scale="log", fmin=50, fmax=9000, sr=16000, verbose=False)
    with pytest.raises(ValueError, match="fmin"):
        STFT(n_fft=256, freq_scale="linear", fmin=4000, fmax=3000, sr=16000, verbose=False)
    with pytest.raises(ValueError, match="fmin"):
        MelSpectrogram(sr=16000, n_fft=256, fmin=5000.0, fmax=4000.0, verbose=False)
    with pytest.raises(ValueError, match="win_length"):
        STFT(n_fft=256, win_length=300, verbose=False)
    with pytest.raises(ValueError, match="n_fft"):
        STFT(n_fft=0, verbose=False)
    with pytest.raises(ValueError, match="pad_mode"):
        STFT(n_fft=256, pad_mode="circular", verbose=False)
    with pytest.raises(ValueError, match="n_mfcc"):
        MFCC(n_fft=256, n_mels=20, n_mfcc=30, verbose=False)
    with pytest.raises(ValueError, match="n_mels"):
        MelSpectrogram(n_fft=256, n_mels=0, verbose=False)
    with pytest.raises(ValueError, match="norm"):
        MelSpectrogram(n_fft=256, norm="area", verbose=False)
    with pytest.raises(ValueError, match="top_db"):
        MFCC(n_fft=256, top_db=-1.0, verbose=False)
    with pytest.raises(ValueError, match="amin"):
        MFCC(n_fft=256, amin=0.0, verbose=False)
    with pytest.raises(ValueError, match="iSTFT"):
        STFT(n_fft=256, iSTFT=True, verbose=False)


# --------------------------------------------------------------------------- input rank

@pytest.mark.parametrize("make", [
    lambda: STFT(n_fft=64, hop_length=16, verbose=False),
    lambda: MelSpectrogram(sr=16000, n_fft=64, hop_length=16, n_mels=8, verbose=False),
    lambda: MFCC(sr=16000, n_fft=64, hop_length=16, n_mels=8, n_mfcc=5, verbose=False),
], ids=["STFT", "Mel", "MFCC"])
@pytest.mark.parametrize("shape", [(2, 1, 1, 500), (2, 2, 500), ()])
def test_bad_rank_names_expected_shape(make, shape):
    layer = make()
    x = torch.tensor(0.5) if shape == () else _x(*shape)
    with pytest.raises(ValueError) as info:
        layer(x)
    msg = str(info.value)
    assert "(B, L)" in msg and "(B, 1, L)" in msg, msg
    assert str(list(x.shape)) in msg, msg


# --------------------------------------------------------------------------- output_shape

OUTPUT_SHAPE_CASES = [
    (STFT, dict(n_fft=512, hop_length=128), 8000),
    (STFT, dict(n_fft=512, hop_length=128, output_format="Magnitude", center=False), 8000),
    (STFT, dict(n_fft=400, hop_length=160, win_length=400, output_format="Phase", pad_mode="constant"), 7777),
    (STFT, dict(n_fft=256, freq_bins=40, freq_scale="log", fmin=60, fmax=7000, sr=16000,
                output_format="Magnitude"), 3000),
    (STFT, dict(n_fft=256, hop_length=100, center=False), 256),
    (MelSpectrogram, dict(sr=16000, n_fft=512, hop_length=160, n_mels=40), 16000),
    (MelSpectrogram, dict(sr=16000, n_fft=400, hop_length=160, n_mels=80, center=False), 16001),
    (MFCC, dict(sr=16000, n_fft=512, hop_length=160, n_mels=40, n_mfcc=13), 8000),
    (MFCC, dict(sr=22050, n_mfcc=20), 11025),
]


@pytest.mark.parametrize("cls,kw,n", OUTPUT_SHAPE_CASES,
                         ids=[f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(OUTPUT_SHAPE_CASES)])
def test_output_shape_matches_actual(cls, kw, n):
    layer = cls(num_samples=n, verbose=False, **kw)
    with torch.no_grad():
        out = layer(_x(3, n))
    assert layer.num_samples == n
    assert tuple(out.shape) == (3,) + tuple(layer.output_shape), (out.shape, layer.output_shape)
    free = cls(verbose=False, **kw)
    assert free.num_samples is None and free.output_shape is None
    with torch.no_grad():
        assert tuple(free(_x(1, n)).shape[1:]) == tuple(layer.output_shape)
