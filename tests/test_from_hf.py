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
    # below 16 kHz the bank still spans 0..8000 Hz: the filters above Nyquist are empty/partial
    "whisper_8k_2s": ("WhisperFeatureExtractor", dict(sampling_rate=8000, chunk_length=2), None,
                      _call("input_features"), _whisper64, 5e-5, 80.0, 40.0),
    "whisper_11k_odd_fft_1s": ("WhisperFeatureExtractor", dict(sampling_rate=11025, chunk_length=1, feature_size=64, n_fft=511), None,
                       _call("input_features"), _whisper64, 5e-5, 80.0, 40.0),
    "ast_default_2s": ("ASTFeatureExtractor", {}, 2.0, _call("input_values"), None, 5e-4, None, None),
    "ast_64_300_raw": ("ASTFeatureExtractor", dict(num_mel_bins=64, max_length=300, do_normalize=False), 2.0,
                       _call("input_values"), None, 5e-4, None, None),
    "clap_default_3s": ("ClapFeatureExtractor", {}, 3.0, _call("input_features"), None, 1e-3, 80.0, 10.0),
    "clap_rand_trunc_2s": ("ClapFeatureExtractor", dict(truncation="rand_trunc", max_length_s=2, feature_size=48,
                                                        fft_window_size=512, hop_length=256, sampling_rate=16000,
                                                        frequency_max=8000), 1.3,
                           _call("input_features"), None, 1e-3, 80.0, 10.0),
    # the other padding modes of a clip shorter than max_length_s (1.3 s of 3 s: 2 tiles + 0.4 s)
    "clap_repeat": ("ClapFeatureExtractor", dict(padding="repeat", max_length_s=3, sampling_rate=16000,
                                                 hop_length=160, fft_window_size=400, frequency_max=8000), 1.3,
                    _call("input_features"), None, 1e-3, 80.0, 10.0),
    "clap_pad": ("ClapFeatureExtractor", dict(padding="pad", truncation="rand_trunc", max_length_s=3,
                                              sampling_rate=16000, hop_length=160, fft_window_size=400,
                                              frequency_max=8000), 1.3,
                 _call("input_features"), None, 1e-3, 80.0, 10.0),
    "seamless_default": ("SeamlessM4TFeatureExtractor", {}, 1.0, _call("input_features"), None, 1e-3, 80.0, None),
    "seamless_40_stride3": ("SeamlessM4TFeatureExtractor", dict(num_mel_bins=40, stride=3, padding_value=1.0), 1.01,
                            _call("input_features"), None, 1e-3, 80.0, None),
    "wav2vec2_default": ("Wav2Vec2FeatureExtractor", {}, 1.0, _call("input_values"), _wav2vec2_64, 1e-5, None, None),
    "wav2vec2_8k": ("Wav2Vec2FeatureExtractor", dict(sampling_rate=8000), 1.5, _call("input_values"), _wav2vec2_64,
                    1e-5, None, None),
    "speecht5_default": ("SpeechT5FeatureExtractor", {}, 1.0, _speecht5, None, 1e-4, 80.0, 20.0),
    "speecht5_40_32k": ("SpeechT5FeatureExtractor", dict(num_mel_bins=40, sampling_rate=32000, win_length=32,
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


# ----------------------------------------------------------------------------- sources and errors

def test_config_file_model_directory_and_object_give_the_same_frontend(tmp_path):
    e = transformers.SeamlessM4TFeatureExtractor(num_mel_bins=40, stride=3)
    e.save_pretrained(tmp_path)                 # writes preprocessor_config.json, offline
    from_object = hf_spec(e, seconds=1.0)
    assert hf_spec(tmp_path, seconds=1.0) == from_object
    assert hf_spec(tmp_path / "preprocessor_config.json", seconds=1.0) == from_object
    assert hf_spec(str(tmp_path), num_samples=16000) == from_object
    # a config written by hand with only the changed attributes: transformers' defaults fill the rest
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(
        {"feature_extractor_type": "SeamlessM4TFeatureExtractor", "num_mel_bins": 40, "stride": 3}))
    assert hf_spec(tmp_path, seconds=1.0) == from_object
    fe = nx.from_hf(tmp_path, seconds=1.0)
    assert fe.output_shape == (32, 120) and fe.spec["stages"][-2] == {"type": "stack_frames", "stride": 3}


def _config(kind, **attrs):
    return {"feature_extractor_type": kind, **attrs}


@pytest.mark.parametrize("source, seconds, needles", [
    (_config("WhisperFeatureExtractor", feature_size=80, spectrogram_mode="power"), None,
     ["WhisperFeatureExtractor", "spectrogram_mode", "not reproduced"]),
    (_config("WhisperFeatureExtractor", dither=0.1), None, ["dither=0.1", "random"]),
    (_config("WhisperFeatureExtractor", chunk_length=30, n_samples=160000), None, ["n_samples=160000", "480000"]),
    (_config("WhisperFeatureExtractor"), 10.0, ["chunk_length", "480000"]),
    (_config("ASTFeatureExtractor", sampling_rate=22050), 1.0,
     ["ASTFeatureExtractor.sampling_rate=22050", "numpy and torchaudio paths differ"]),
    (_config("ClapFeatureExtractor", padding="zeros"), 3.0, ["padding='zeros'", "repeatpad"]),
    (_config("ClapFeatureExtractor", truncation="crop"), 3.0, ["truncation='crop'"]),
    (_config("ClapFeatureExtractor"), 12.0, ["max_length_s", "random"]),
    (_config("SeamlessM4TFeatureExtractor"), None, ["SeamlessM4TFeatureExtractor", "seconds"]),
    (_config("Wav2Vec2FeatureExtractor", do_normalize=False), 1.0, ["do_normalize=False"]),
    (_config("SpeechT5FeatureExtractor", win_function="hamming_window"), 1.0, ["win_function='hamming_window'"]),
    (_config("SpeechT5FeatureExtractor", sampling_rate=24000), 1.0, ["win_length=64", "power of two"]),
    (_config("SpeechT5FeatureExtractor", dither=0.5), 1.0, ["dither", "not reproduced"]),
    (_config("EncodecFeatureExtractor"), 1.0, ["feature_extractor_type='EncodecFeatureExtractor'", "supported"]),
    ({"sampling_rate": 16000}, 1.0, ["feature_extractor_type=None"]),
    (_config("Wav2Vec2FeatureExtractor", sampling_rate="16k"), 1.0, ["sampling_rate='16k'", "number"]),
])
def test_what_is_not_reproduced_raises_naming_it(source, seconds, needles):
    with pytest.raises(ValueError) as e:
        nx.from_hf(source, seconds=seconds)
    msg = str(e.value)
    assert all(n in msg for n in needles) and "\n" not in msg, msg


def test_unsupported_attribute_of_a_real_extractor_object_is_named():
    e = transformers.Wav2Vec2FeatureExtractor(do_normalize=True, model_input_names_extra=1)
    with pytest.raises(ValueError, match=r"model_input_names_extra"):
        nx.from_hf(e, seconds=1.0)


def test_missing_or_bad_config_path(tmp_path):
    with pytest.raises(ValueError, match="preprocessor_config.json"):
        nx.from_hf(tmp_path, seconds=1.0)
    (tmp_path / "preprocessor_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        nx.from_hf(tmp_path, seconds=1.0)


# ----------------------------------------------------------------------------- bundles and the CLI

def test_cli_builds_an_hf_config_whose_bundle_equals_the_extractor(tmp_path):
    """``nnaudio-export build hf:DIR``: export, parity at export, then ONNX Runtime against
    transformers' SpeechT5 extractor (log10 |X| mel, the presets' 80 dB mask)."""
    e = transformers.SpeechT5FeatureExtractor(num_mel_bins=64)
    e.save_pretrained(tmp_path / "model")
    out = tmp_path / "bundle"
    res = subprocess.run([sys.executable, "-m", "nnaudio_export.cli", "build", f"hf:{tmp_path / 'model'}",
                          "--out", str(out), "--seconds", "1", "--formats", "onnx"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr + res.stdout
    assert "[batch, 63, 64]" in res.stdout.replace("'", "")
    rt = nx.load(out, backend="onnxruntime")
    for signal in SIGNALS:
        x = clip(signal, 16000, 1.0)
        with float64_spectrogram():
            r64 = _speecht5(e, x)
        y = np.asarray(rt(x[None]), dtype=np.float64)[0]
        mask = (r64.max() - r64) * 20.0 <= 80.0
        assert np.abs(y - r64)[mask].max() <= 1e-4, signal


def test_cli_hf_errors_are_one_line(tmp_path, capsys):
    from nnaudio_export.cli import main
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(_config("WhisperFeatureExtractor", dither=0.1)))
    assert main(["build", f"hf:{tmp_path}", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "dither=0.1" in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "b").exists(), err


def test_seamless_stride_stacking_exports_to_onnx(tmp_path):
    """The new layout stage through ONNX Runtime: the bundle equals the eager frontend."""
    fe = nx.from_hf(transformers.SeamlessM4TFeatureExtractor(stride=3), seconds=1.0).eval()
    out = nx.export(fe, tmp_path / "b", formats=("onnx",), verify=False)
    x = fe.example_input(("speech", "noise"))
    with torch.no_grad():
        ref = fe(torch.from_numpy(x)).numpy()
    got = nx.load(out, backend="onnxruntime")(x)
    assert got.shape == (2, 32, 240) and np.abs(got - ref).max() <= 1e-4

