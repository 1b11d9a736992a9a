"""``nx.from_hf`` against transformers' own feature extractors (built offline from
constructor arguments or a written ``preprocessor_config.json``), default and non-default
configurations, on speech-like, tone and noise clips.

Tolerances are the presets' (tests/test_presets.py) for the same feature kinds. transformers'
numpy ``spectrogram`` stores the FFT as complex64 and returns float32, and Whisper's
``__call__`` runs torch.stft in float32: next to a loud tone their deep bins are off the
exact value by more than the tolerance. So each extractor also runs on a float64 path made
from ITS OWN code (Whisper: ``_np_extract_fbank_features``; the others: the same call with
``audio_utils.spectrogram`` computing in complex128 / float64), and we may differ from the
extractor by no more than its own measured rounding ``|ref - ref64|`` plus the tolerance,
bin by bin, as in the presets' tests. ``within_db``: the check is restricted to bins within
that many dB of the peak of the float64 reference's spectrum level (None: everywhere).
"""
import json
import subprocess
import sys
import warnings
from contextlib import contextmanager

import numpy as np
import pytest
import torch

import nnaudio_export as nx
from nnaudio_export.convert.hf import hf_spec
from nnaudio_export.signals import clip

import transformers
import transformers.audio_utils as audio_utils

warnings.filterwarnings("ignore")
SIGNALS = ("speech", "tones", "noise")


class _Numpy64:
    """numpy, except that ``complex64`` is ``complex128`` (audio_utils' FFT buffer)."""
    complex64 = np.complex128

    def __getattr__(self, name):
        return getattr(np, name)


@contextmanager
def float64_spectrogram():
    """transformers' ``spectrogram`` computing and returning float64 (its own code, with
    the complex64 buffer and the float32 output cast lifted) in every extractor module."""
    original = audio_utils.spectrogram

    def spectrogram64(*args, **kwargs):
        kwargs["dtype"] = np.float64
        return original(*args, **kwargs)

    modules = [m for name, m in list(sys.modules.items())
               if name.startswith("transformers.models.") and getattr(m, "spectrogram", None) is original]
    saved_np = audio_utils.np
    audio_utils.np = _Numpy64()
    for m in modules:
        m.spectrogram = spectrogram64
    try:
        yield
    finally:
        audio_utils.np = saved_np
        for m in modules:
            m.spectrogram = original


def _call(output):
    def fn(e, x):
        out = e(x, sampling_rate=e.sampling_rate, return_tensors="np")
        return np.asarray(out[output], dtype=np.float64)
    return fn


def _whisper64(e, x):
    return e._np_extract_fbank_features(x[None].astype(np.float64), "cpu")[0]


def _wav2vec2_64(e, x):
    return e.zero_mean_unit_var_norm([x.astype(np.float64)], None)[0]


def _speecht5(e, x):
    out = e(audio_target=x, sampling_rate=e.sampling_rate, return_tensors="np")
    return np.asarray(out["input_values"], dtype=np.float64)[0]


# id: (extractor class, constructor kwargs, seconds, call, float64 call (None: the call under
# float64_spectrogram), tol, within_db, dB per unit of the level the mask is taken on)
CASES = {
    "whisper_default": ("WhisperFeatureExtractor", {}, None, _call("input_features"), _whisper64, 5e-5, 80.0, 40.0),
    "whisper_128_2s": ("WhisperFeatureExtractor", dict(feature_size=128, chunk_length=2), None,
                       _call("input_features"), _whisper64, 5e-5, 80.0, 40.0),
    "whisper_512_320_32k": ("WhisperFeatureExtractor", dict(feature_size=64, n_fft=512, hop_length=320, chunk_length=1,
                                                            sampling_rate=32000), None,
                            _call("input_features"), _whisper64, 5e-5, 80.0, 40.0),
    "ast_default_2s": ("ASTFeatureExtractor", {}, 2.0, _call("input_values"), None, 5e-4, None, None),
    "ast_64_300_raw": ("ASTFeatureExtractor", dict(num_mel_bins=64, max_length=300, do_normalize=False), 2.0,
                       _call("input_values"), None, 5e-4, None, None),
    "clap_default_3s": ("ClapFeatureExtractor", {}, 3.0, _call("input_features"), None, 1e-3, 80.0, 10.0),
    "clap_rand_trunc_2s": ("ClapFeatureExtractor", dict(truncation="rand_trunc", max_length_s=2, feature_size=48,
                                                        fft_window_size=512, hop_length=256, sampling_rate=16000,
                                                        frequency_max=8000), 1.3,
                           _call("input_features"), None, 1e-3, 80.0, 10.0),
    "seamless_default": ("SeamlessM4TFeatureExtractor", {}, 1.0, _call("input_features"), None, 1e-3, 80.0, None),
    "seamless_40_stride3": ("SeamlessM4TFeatureExtractor", dict(num_mel_bins=40, stride=3, padding_value=1.0), 1.01,
                            _call("input_features"), None, 1e-3, 80.0, None),
    "wav2vec2_default": ("Wav2Vec2FeatureExtractor", {}, 1.0, _call("input_values"), _wav2vec2_64, 1e-5, None, None),
    "wav2vec2_8k": ("Wav2Vec2FeatureExtractor", dict(sampling_rate=8000), 1.5, _call("input_values"), _wav2vec2_64,
                    1e-5, None, None),
    "speecht5_default": ("SpeechT5FeatureExtractor", {}, 1.0, _speecht5, None, 1e-4, 80.0, 20.0),
    "speecht5_40_24k": ("SpeechT5FeatureExtractor", dict(num_mel_bins=40, sampling_rate=32000, win_length=32,
                                                         hop_length=10, fmin=0, fmax=16000), 1.0,
                        _speecht5, None, 1e-4, 80.0, 20.0),
}
# Bound on the whole output (beyond the extractor's own rounding): the presets' full-range
# bounds (Whisper, AST, CLAP, Kaldi); SpeechT5's log10 |X| 60-70 dB below a tone: 0.1 (2 dB).
FULL_TOL = {"whisper": 5e-5, "ast": 5e-4, "clap": 1.0, "seamless": 0.5, "wav2vec2": 1e-5, "speecht5": 0.1}
_BUILT = {}


def _seamless_bin_std(e, x):
    """Each output column's mel-bin std (``sqrt(var + 1e-7)``, what the extractor divides
    by), from its own float64 fbank: errors times it are in log-mel units. On steady tones
    a bin's std over frames is tiny, so the normalisation divides any float32 rounding of
    the log-mel (the extractor's and ours) by it; the tolerance is the Kaldi presets'."""
    with float64_spectrogram():
        fb = e._extract_fbank_features(x)
    return np.tile(np.sqrt(fb.var(0, ddof=1) + 1e-7), e.stride)[None, :]


def _seamless_level_db(e, x):
    """The extractor's float64 log-mel in dB (10 log10 of the Kaldi power), in the output's
    stacked layout (the even-count padding frame counted as loud): where the within-dB mask
    is taken, as for the Kaldi presets."""
    with float64_spectrogram():
        fb = e._extract_fbank_features(x) * (10.0 / np.log(10.0))
    if fb.shape[0] % 2:
        fb = np.concatenate([fb, np.full((1, fb.shape[1]), fb.max())])
    frames = fb.shape[0] // e.stride * e.stride
    return fb[:frames].reshape(frames // e.stride, e.stride * fb.shape[1])


SCALES = {"seamless_default": _seamless_bin_std, "seamless_40_stride3": _seamless_bin_std}
LEVELS = {"seamless_default": _seamless_level_db, "seamless_40_stride3": _seamless_level_db}


def extractor(case_id):
    kind, kwargs = CASES[case_id][:2]
    return getattr(transformers, kind)(**kwargs)


def built(case_id):
    if case_id not in _BUILT:
        e = extractor(case_id)
        _BUILT[case_id] = (e, nx.from_hf(e, seconds=CASES[case_id][2]).eval())
    return _BUILT[case_id]


def ours(fe, x):
    with torch.no_grad():
        return fe(torch.from_numpy(x[None].astype(np.float32)))[0].double().numpy()


def reference_pair(case_id, e, x):
    """(the extractor's output, the same code's float64 output)."""
    call, call64 = CASES[case_id][3], CASES[case_id][4]
    r = call(e, x)
    if call64 is not None:
        return r, call64(e, x)
    with float64_spectrogram():
        return r, call(e, x)


@pytest.mark.parametrize("signal", SIGNALS)
@pytest.mark.parametrize("case_id", list(CASES))
def test_from_hf_matches_the_extractor(case_id, signal):
    tol, within_db, db_per_unit = CASES[case_id][5:]
    e, fe = built(case_id)
    x = clip(signal, int(fe.sample_rate), fe.num_samples / fe.sample_rate)[: fe.num_samples]
    r, r64 = reference_pair(case_id, e, x)
    while r.ndim > len(fe.output_shape):     # the batch axis; CLAP's first fusion channel
        r = r[0]
    while r64.ndim > len(fe.output_shape):
        r64 = r64[0]
    y = ours(fe, x)
    assert y.shape == r.shape, (y.shape, r.shape)
    scale = SCALES[case_id](e, x) if case_id in SCALES else 1.0
    own = np.abs(r - r64) * scale
    err = np.maximum(np.abs(y - r) * scale - own, 0.0)
    mask = np.ones_like(err, dtype=bool)
    if within_db is not None:
        level = LEVELS[case_id](e, x) if case_id in LEVELS else r64 * db_per_unit
        mask = level.max() - level <= within_db
    assert err[mask].max() <= tol, f"{case_id} {signal}: {err[mask].max():.3g} > {tol} (own rounding {own.max():.3g})"
    full = FULL_TOL[case_id.split("_")[0]]
    assert err.max() <= full, f"{case_id} {signal}: full range {err.max():.3g} > {full}"
    # and the float64 path itself, without any allowance, where the mask holds
    exact = (np.abs(y - r64) * scale)[mask].max()
    assert exact <= tol, f"{case_id} {signal} vs float64: {exact:.3g} > {tol}"
