"""Reference implementations of each preset, calling the REAL reference packages.

``REFERENCES[preset_name]`` is a :class:`Reference`: call it with one clip (1-D float32
numpy, the preset's ``num_samples`` long) to get the reference features in the preset's
output layout (float64 numpy); ``.description`` says what was called. Packages are imported
inside each call, so importing this module needs none of them. ``ALTERNATES`` holds second
references (e.g. transformers for Whisper). Used by the tests and to record measured errors.

NeMo: ``nemo_toolkit`` is installed ``--no-deps`` (the whole toolkit's dependencies are far
too heavy), and its ``FilterbankFeatures`` is loaded from it without NeMo's package
``__init__`` files (see :func:`nemo_filterbank_features_class`). :func:`nemo_mel_reimplementation`
is a float64 re-implementation of the same math, the float64 companion of that float32
reference.
"""
from typing import Callable, Dict, List

import numpy as np

from .nemo import nemo_filterbank, nemo_mel_reimplementation
from .vocos import librosa_griffinlim, librosa_istft, torch_istft, vocos_head
from .packages import (ast_extractor, clap_extractor, kaldi_native_fbank, panns_torchlibrosa, panns_librosa, speechbrain_fbank,
                       speechbrain_fbank_float64, whisper_hf, whisper_hf_numpy, whisper_openai)


class Reference:
    """A callable reference: ``ref(audio_1d_float32) -> features`` (``takes='spectrum'``:
    ``ref(spectrum_float32) -> audio``, one item in the preset's input layout) plus
    ``description``.

    ``float64``: the package computes the spectrum in float64 (numpy FFT), so its own
    rounding is far below any tolerance here. The others (torch.stft, torch conv1d,
    Kaldi's float32 FFT) carry float32 rounding of their own: next to a loud tone, bins
    70-80 dB down are off the exact value by up to ~5e-5 (Whisper units) / ~2e-3 dB."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], description: str, package: str,
                 float64: bool = False, takes: str = "audio"):
        self.fn = fn
        self.description = description
        self.package = package
        self.float64 = bool(float64)
        self.takes = takes

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
        return np.asarray(self.fn(x.reshape(-1) if self.takes == "audio" else x), dtype=np.float64)

    def __repr__(self) -> str:
        return f"Reference({self.description!r})"


REFERENCES: Dict[str, Reference] = {
    "whisper_80": Reference(whisper_openai(80), "openai-whisper whisper.audio.log_mel_spectrogram(pad_or_trim(x), n_mels=80)", "openai-whisper"),
    "whisper_128": Reference(whisper_openai(128), "openai-whisper whisper.audio.log_mel_spectrogram(pad_or_trim(x), n_mels=128)", "openai-whisper"),
    "kaldi_fbank_80": Reference(kaldi_native_fbank(80, True, 0.0, 32768.0), "kaldi-native-fbank OnlineFbank(num_bins=80, dither=0, snip_edges=True) on x * 32768", "kaldi-native-fbank"),
    "kaldi_fbank_80_lhotse": Reference(kaldi_native_fbank(80, False, -400.0, 1.0), "kaldi-native-fbank OnlineFbank(num_bins=80, dither=0, snip_edges=False, high_freq=-400) on x", "kaldi-native-fbank"),
    "ast_128": Reference(ast_extractor, "transformers ASTFeatureExtractor()(x, sampling_rate=16000).input_values[0]", "transformers"),
    "nemo_mel_80": Reference(nemo_filterbank, "NeMo FilterbankFeatures (nemo_toolkit, as AudioToMelSpectrogramPreprocessor(window_size=0.025, features=80) builds it, eval), loaded without NeMo's package __init__", "nemo_toolkit"),
    "clap_htsat": Reference(clap_extractor, "transformers ClapFeatureExtractor()(x, sampling_rate=48000).input_features[0, 0] (fusion, repeatpad)", "transformers", float64=True),
    "panns_cnn14": Reference(panns_torchlibrosa, "torchlibrosa Spectrogram(1024, 320) + LogmelFilterBank(32000, 1024, 64, 50, 14000, top_db=None)[0, 0]", "torchlibrosa"),
    "speechbrain_fbank_40": Reference(speechbrain_fbank, "speechbrain.lobes.features.Fbank()(x)[0] (imported with a placeholder torchaudio module when torchaudio is absent)", "speechbrain"),
    "vocos_istft_24khz": Reference(vocos_head(False), "vocos 0.1.0 heads.ISTFTHead(dim=1026, n_fft=1024, hop_length=256, padding='same') with out = Identity, on x.T[None] (loaded without vocos' package __init__)", "vocos", takes="spectrum"),
    "griffinlim_1024": Reference(librosa_griffinlim(1024, 256), "librosa.griffinlim(S, n_iter=32, hop_length=256, n_fft=1024, momentum=0.99, init=None, dtype=float64)", "librosa", float64=True, takes="spectrum"),
    "istft_1024": Reference(torch_istft(1024, 256), "torch.istft(X, 1024, 256, window=torch.hann_window(1024, dtype=float64), center=True) in float64", "torch", float64=True, takes="spectrum"),
}

ALTERNATES: Dict[str, List[Reference]] = {
    "whisper_80": [
        Reference(whisper_hf(80), "transformers WhisperFeatureExtractor(feature_size=80)(x, max_length=len(x)).input_features[0] (its torch path)", "transformers"),
        Reference(whisper_hf_numpy(80), "transformers WhisperFeatureExtractor(feature_size=80)._np_extract_fbank_features (its numpy path, float64 FFT)", "transformers", float64=True),
    ],
    "whisper_128": [
        Reference(whisper_hf(128), "transformers WhisperFeatureExtractor(feature_size=128)(x, max_length=len(x)).input_features[0] (its torch path)", "transformers"),
        Reference(whisper_hf_numpy(128), "transformers WhisperFeatureExtractor(feature_size=128)._np_extract_fbank_features (its numpy path, float64 FFT)", "transformers", float64=True),
    ],
    "nemo_mel_80": [
        Reference(nemo_mel_reimplementation, "float64 RE-IMPLEMENTATION of NeMo FilterbankFeatures' math (nnaudio_export.references.nemo_mel_reimplementation)", "nnaudio_export (re-implementation)", float64=True),
    ],
    "speechbrain_fbank_40": [
        Reference(speechbrain_fbank_float64, "speechbrain.lobes.features.Fbank()(x)[0] built and run with torch's default dtype float64", "speechbrain", float64=True),
    ],
    "vocos_istft_24khz": [
        Reference(vocos_head(True), "vocos 0.1.0 heads.ISTFTHead as above, built and run with torch's default dtype float64", "vocos", float64=True, takes="spectrum"),
    ],
    "istft_1024": [
        Reference(librosa_istft(1024, 256), "librosa.istft(X, n_fft=1024, hop_length=256, dtype=float64)", "librosa", float64=True, takes="spectrum"),
    ],
    "panns_cnn14": [
        Reference(panns_librosa, "librosa.feature.melspectrogram(float64 x, sr=32000, n_fft=1024, hop_length=320, n_mels=64, fmin=50, fmax=14000) + power_to_db(ref=1, amin=1e-10, top_db=None), transposed", "librosa", float64=True),
    ],
}


def float64_reference(name: str) -> "Reference | None":
    """The preset's first reference that computes in float64, or None."""
    for ref in [REFERENCES[name]] + ALTERNATES.get(name, []):
        if ref.float64:
            return ref
    return None


def measure_reference_error(fe) -> "Dict[str, object] | None":
    """Max |fe - reference| on a speech-like clip (synthesis presets: its STFT) for a frontend
    built from a registered preset (same stages; any length). ``None`` when ``fe`` is not
    such a preset; a dict with ``error`` when the reference package cannot be imported or
    run. Errors in output units (``db_per_unit`` converts log outputs to dB)."""
    import torch
    from .. import presets
    from ..spec import normalize_spec
    name = getattr(fe, "name", None)
    if name not in REFERENCES or name not in presets.names():
        return None
    spec = fe.spec
    preset_stages = normalize_spec(presets.get_spec(name))["stages"]
    if fe.input_kind == "spectrum":   # any num_frames
        preset_stages[0]["num_frames"] = spec["stages"][0]["num_frames"]
    if spec["stages"] != preset_stages:
        return None
    ref = REFERENCES[name]
    x = fe.example_input(("speech",))[0]
    out = {"preset": name, "reference": ref.description, "package": ref.package,
           "signal": "speech_like" + (" (its STFT)" if fe.input_kind == "spectrum" else ""),
           "num_samples": int(fe.num_samples)}
    try:
        r = ref(x)
    except Exception as exc:  # the reference package is missing or failed: say so
        out["error"] = f"{type(exc).__name__}: {exc}"
        return out
    with torch.no_grad():
        y = fe(torch.from_numpy(x)[None])[0].double().cpu().numpy()
    if y.shape != r.shape:
        out["error"] = f"shape mismatch: ours {list(y.shape)}, reference {list(r.shape)}"
        return out
    out["max_abs_error"] = float(np.max(np.abs(y - r)))
    out["units"] = "output units" + (f" ({fe.db_per_unit:g} dB per unit)" if fe.db_per_unit else "")
    return out
