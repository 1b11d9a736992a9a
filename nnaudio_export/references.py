"""Reference implementations of each preset, calling the REAL reference packages.

``REFERENCES[preset_name]`` is a :class:`Reference`: call it with one clip (1-D float32
numpy, the preset's ``num_samples`` long) to get the reference features in the preset's
output layout (float64 numpy); ``.description`` says what was called. Packages are imported
inside each call, so importing this module needs none of them. ``ALTERNATES`` holds second
references (e.g. transformers for Whisper). Used by the tests and to record measured errors.

NeMo: ``nemo_toolkit`` is installed ``--no-deps`` (the whole toolkit's dependencies are far
too heavy), and its ``FilterbankFeatures`` is loaded from it without NeMo's package
``__init__`` files (see :func:`_nemo_filterbank_features`). :func:`nemo_mel_reimplementation`
is a float64 re-implementation of the same math, the float64 companion of that float32
reference.
"""
from __future__ import annotations

import sys
import types
from typing import Callable, Dict, List

import numpy as np


class Reference:
    """A callable reference: ``ref(audio_1d_float32) -> features`` plus ``description``.

    ``float64``: the package computes the spectrum in float64 (numpy FFT), so its own
    rounding is far below any tolerance here. The others (torch.stft, torch conv1d,
    Kaldi's float32 FFT) carry float32 rounding of their own: next to a loud tone, bins
    70-80 dB down are off the exact value by up to ~5e-5 (Whisper units) / ~2e-3 dB."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], description: str, package: str,
                 float64: bool = False):
        self.fn = fn
        self.description = description
        self.package = package
        self.float64 = bool(float64)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(np.asarray(audio, dtype=np.float32).reshape(-1))
        return np.asarray(self.fn(x), dtype=np.float64)

    def __repr__(self) -> str:
        return f"Reference({self.description!r})"


# ----------------------------------------------------------------------------- Whisper

def _whisper_openai(n_mels: int) -> Callable[[np.ndarray], np.ndarray]:
    def fn(x: np.ndarray) -> np.ndarray:
        import torch
        import whisper.audio as wa
        audio = torch.from_numpy(x)
        if audio.shape[0] == wa.N_SAMPLES:  # the preset's default length
            audio = wa.pad_or_trim(audio)
        return wa.log_mel_spectrogram(audio, n_mels=n_mels).double().numpy()
    return fn


def _whisper_hf(n_mels: int) -> Callable[[np.ndarray], np.ndarray]:
    def fn(x: np.ndarray) -> np.ndarray:
        from transformers import WhisperFeatureExtractor
        fe = WhisperFeatureExtractor(feature_size=n_mels)
        out = fe(x, sampling_rate=16000, return_tensors="np", max_length=x.shape[0])
        return out["input_features"][0]
    return fn


def _whisper_hf_numpy(n_mels: int) -> Callable[[np.ndarray], np.ndarray]:
    # transformers' own numpy path (what __call__ runs when torch is absent): float64 FFT.
    def fn(x: np.ndarray) -> np.ndarray:
        from transformers import WhisperFeatureExtractor
        fe = WhisperFeatureExtractor(feature_size=n_mels)
        return fe._np_extract_fbank_features(x[None, :], "cpu")[0]
    return fn


# ----------------------------------------------------------------------------- Kaldi

def _kaldi_native(num_bins: int, snip_edges: bool, high_freq: float, scale: float,
                  window: str = "povey") -> Callable[[np.ndarray], np.ndarray]:
    def fn(x: np.ndarray) -> np.ndarray:
        import kaldi_native_fbank as knf
        opts = knf.FbankOptions()
        opts.frame_opts.samp_freq = 16000
        opts.frame_opts.dither = 0.0
        opts.frame_opts.snip_edges = snip_edges
        opts.frame_opts.window_type = window
        opts.mel_opts.num_bins = num_bins
        opts.mel_opts.high_freq = high_freq
        fb = knf.OnlineFbank(opts)
        fb.accept_waveform(16000, (x * np.float32(scale)).astype(np.float32).tolist())
        fb.input_finished()
        return np.stack([np.asarray(fb.get_frame(i)) for i in range(fb.num_frames_ready)])
    return fn


# ----------------------------------------------------------------------------- AST / CLAP

def _ast(x: np.ndarray) -> np.ndarray:
    from transformers import ASTFeatureExtractor
    return ASTFeatureExtractor()(x, sampling_rate=16000, return_tensors="np")["input_values"][0]


def _clap(x: np.ndarray) -> np.ndarray:
    from transformers import ClapFeatureExtractor
    out = ClapFeatureExtractor()(x, sampling_rate=48000, return_tensors="np")
    return out["input_features"][0, 0]


# ----------------------------------------------------------------------------- PANNs

def _panns(x: np.ndarray) -> np.ndarray:
    import torch
    from torchlibrosa.stft import LogmelFilterBank, Spectrogram
    spec = Spectrogram(n_fft=1024, hop_length=320, win_length=1024, window="hann", center=True,
                       pad_mode="reflect", freeze_parameters=True)
    mel = LogmelFilterBank(sr=32000, n_fft=1024, n_mels=64, fmin=50, fmax=14000, ref=1.0,
                           amin=1e-10, top_db=None, freeze_parameters=True)
    with torch.no_grad():
        y = mel(spec(torch.from_numpy(x)[None, :]))
    return y[0, 0].double().numpy()


def _panns_librosa(x: np.ndarray) -> np.ndarray:
    # What torchlibrosa reproduces, in float64: librosa melspectrogram + power_to_db.
    import librosa
    mel = librosa.feature.melspectrogram(y=x.astype(np.float64), sr=32000, n_fft=1024,
                                         hop_length=320, window="hann", center=True,
                                         pad_mode="reflect", power=2.0, n_mels=64, fmin=50.0,
                                         fmax=14000.0, htk=False, norm="slaney")
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None).T


# ----------------------------------------------------------------------------- SpeechBrain

def _speechbrain_fbank():
    """Import ``speechbrain.lobes.features.Fbank`` without side effects on this process.

    speechbrain's package ``__init__`` applies global "quirks": it switches TorchScript to
    the legacy executor and turns TF32 on. Either would change OUR numbers for the rest of
    the process (TorchScript fusions differ from a fresh libtorch process by ~1e-6; TF32
    breaks fp32 CUDA parity), so they are excluded through ``SB_DISABLE_QUIRKS``.
    It also imports torchaudio (its data-loading code), which cannot be installed next to
    torch 2.13 here; ``Fbank`` itself never calls torchaudio. When torchaudio is missing, a
    placeholder module is registered only for the duration of the import."""
    import os
    saved_env = os.environ.get("SB_DISABLE_QUIRKS")
    os.environ["SB_DISABLE_QUIRKS"] = "disable_jit_profiling,allow_tf32,disable_cudnn_benchmarking"
    try:
        try:
            from speechbrain.lobes.features import Fbank
            return Fbank
        except ModuleNotFoundError as exc:
            if exc.name != "torchaudio":
                raise
        for name in [m for m in sys.modules if m == "speechbrain" or m.startswith("speechbrain.")]:
            del sys.modules[name]
        stub = types.ModuleType("torchaudio")
        stub.__version__ = "placeholder (torchaudio not installed)"
        sys.modules["torchaudio"] = stub
        try:
            from speechbrain.lobes.features import Fbank
        finally:
            if sys.modules.get("torchaudio") is stub:
                del sys.modules["torchaudio"]
        return Fbank
    finally:
        if saved_env is None:
            os.environ.pop("SB_DISABLE_QUIRKS", None)
        else:
            os.environ["SB_DISABLE_QUIRKS"] = saved_env


def _speechbrain(x: np.ndarray) -> np.ndarray:
    import torch
    fbank = _speechbrain_fbank()()
    with torch.no_grad():
        return fbank(torch.from_numpy(x)[None, :])[0].double().numpy()


def _speechbrain_float64(x: np.ndarray) -> np.ndarray:
    # The same package code run in float64: Fbank builds its window and filterbank from the
    # default dtype, so building and running it under float64 makes every step float64.
    import torch
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        fbank = _speechbrain_fbank()()
        with torch.no_grad():
            return fbank(torch.from_numpy(x.astype(np.float64))[None, :])[0].numpy()
    finally:
        torch.set_default_dtype(old)


# ----------------------------------------------------------------------------- NeMo

def _nemo_filterbank_features():
    """NeMo's ``FilterbankFeatures`` class (what ``AudioToMelSpectrogramPreprocessor`` wraps)
    from the installed ``nemo_toolkit``, without running NeMo's package ``__init__`` files:
    they import the whole toolkit (lightning, hydra, ...), which is not installed here
    (``nemo_toolkit`` is installed ``--no-deps``). ``features.py`` is loaded by path; the
    three names it imports from NeMo are given placeholders for the duration of the load:
    ``AudioAugmentor`` and ``AudioSegment`` (used only by ``WaveformFeaturizer``, never by
    ``FilterbankFeatures``) and ``nemo.utils.logging`` (a standard-library logger)."""
    import importlib.util
    import logging
    from pathlib import Path
    cached = sys.modules.get("_nnx_nemo_features")
    if cached is not None:
        return cached.FilterbankFeatures
    top = importlib.util.find_spec("nemo")
    if top is None or not top.submodule_search_locations:
        raise ModuleNotFoundError("nemo_toolkit is not installed", name="nemo")
    path = Path(list(top.submodule_search_locations)[0]) / "collections/asr/parts/preprocessing/features.py"
    placeholders = {name: types.ModuleType(name) for name in (
        "nemo", "nemo.utils", "nemo.collections", "nemo.collections.asr", "nemo.collections.asr.parts",
        "nemo.collections.asr.parts.preprocessing", "nemo.collections.asr.parts.preprocessing.perturb",
        "nemo.collections.asr.parts.preprocessing.segment")}
    placeholders["nemo.utils"].logging = logging.getLogger("nemo")
    placeholders["nemo.collections.asr.parts.preprocessing.perturb"].AudioAugmentor = None
    placeholders["nemo.collections.asr.parts.preprocessing.segment"].AudioSegment = None
    saved = {name: sys.modules.get(name) for name in placeholders}
    sys.modules.update(placeholders)
    try:
        spec = importlib.util.spec_from_file_location("_nnx_nemo_features", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old
    sys.modules["_nnx_nemo_features"] = module
    return module.FilterbankFeatures


def _nemo(x: np.ndarray) -> np.ndarray:
    import torch
    # AudioToMelSpectrogramPreprocessor(window_size=0.025, window_stride=0.01, features=80)
    # in eval mode (no dither): its FilterbankFeatures with these arguments.
    fb = _nemo_filterbank_features()(sample_rate=16000, n_window_size=400, n_window_stride=160,
                                     window="hann", normalize="per_feature", n_fft=None,
                                     preemph=0.97, nfilt=80, lowfreq=0, highfreq=None, log=True,
                                     log_zero_guard_type="add", log_zero_guard_value=2 ** -24,
                                     dither=0.0, pad_to=16, mag_power=2.0, mel_norm="slaney").eval()
    with torch.no_grad():
        out, _ = fb(torch.from_numpy(x)[None, :], torch.tensor([x.shape[0]]))
    return out[0].double().numpy()


def nemo_mel_reimplementation(x: np.ndarray, n_mels: int = 80, sr: int = 16000, n_fft: int = 512,
                              win_length: int = 400, hop: int = 160, preemph: float = 0.97,
                              pad_to: int = 16) -> np.ndarray:
    """RE-IMPLEMENTATION (float64 numpy), NOT NeMo: the math of NeMo
    ``AudioToMelSpectrogramPreprocessor`` / ``FilterbankFeatures`` with its defaults in eval
    mode, read from NeMo's source: ``y = cat(x[:1], x[1:] - 0.97 x[:-1])``;
    ``torch.stft(n_fft=512, hop=160, win_length=400, window=hann_window(400, periodic=False),
    center=True, pad_mode='constant')``; ``|X|^2``; ``librosa.filters.mel(sr, 512, 80,
    fmin=0, fmax=sr/2, norm='slaney')``; ``ln(x + 2**-24)``; ``seq_len = N // hop`` (current
    ``get_seq_len``: ``(N + 2 (n_fft // 2) - n_fft) // hop``); per-feature mean and unbiased
    std (+1e-5) over the first seq_len frames; frames from seq_len on set to 0; padded with 0
    to a multiple of ``pad_to``."""
    import librosa
    x = np.asarray(x, dtype=np.float64)
    y = np.concatenate([x[:1], x[1:] - preemph * x[:-1]])
    yp = np.pad(y, (n_fft // 2, n_fft // 2))
    n = np.arange(win_length)
    win = np.zeros(n_fft)
    lo = (n_fft - win_length) // 2
    win[lo: lo + win_length] = 0.5 - 0.5 * np.cos(2 * np.pi * n / (win_length - 1))
    frames = 1 + (yp.shape[0] - n_fft) // hop
    idx = np.arange(frames)[:, None] * hop + np.arange(n_fft)[None, :]
    power = np.abs(np.fft.rfft(yp[idx] * win, axis=1)) ** 2          # (T, F)
    fb = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=0.0, fmax=sr / 2,
                             norm="slaney", dtype=np.float64)
    feat = np.log(fb @ power.T + 2.0 ** -24)                          # (M, T)
    seq = x.shape[0] // hop
    v = feat[:, :seq]
    mean = v.mean(axis=1, keepdims=True)
    std = np.sqrt(((v - mean) ** 2).sum(axis=1, keepdims=True) / (seq - 1)) + 1e-5
    out = (feat - mean) / std
    out[:, seq:] = 0.0
    total = out.shape[1] + (-out.shape[1]) % pad_to
    return np.pad(out, ((0, 0), (0, total - out.shape[1])))


REFERENCES: Dict[str, Reference] = {
    "whisper_80": Reference(_whisper_openai(80), "openai-whisper whisper.audio.log_mel_spectrogram(pad_or_trim(x), n_mels=80)", "openai-whisper"),
    "whisper_128": Reference(_whisper_openai(128), "openai-whisper whisper.audio.log_mel_spectrogram(pad_or_trim(x), n_mels=128)", "openai-whisper"),
    "kaldi_fbank_80": Reference(_kaldi_native(80, True, 0.0, 32768.0), "kaldi-native-fbank OnlineFbank(num_bins=80, dither=0, snip_edges=True) on x * 32768", "kaldi-native-fbank"),
    "kaldi_fbank_80_lhotse": Reference(_kaldi_native(80, False, -400.0, 1.0), "kaldi-native-fbank OnlineFbank(num_bins=80, dither=0, snip_edges=False, high_freq=-400) on x", "kaldi-native-fbank"),
    "ast_128": Reference(_ast, "transformers ASTFeatureExtractor()(x, sampling_rate=16000).input_values[0]", "transformers"),
    "nemo_mel_80": Reference(_nemo, "NeMo FilterbankFeatures (nemo_toolkit, as AudioToMelSpectrogramPreprocessor(window_size=0.025, features=80) builds it, eval), loaded without NeMo's package __init__", "nemo_toolkit"),
    "clap_htsat": Reference(_clap, "transformers ClapFeatureExtractor()(x, sampling_rate=48000).input_features[0, 0] (fusion, repeatpad)", "transformers", float64=True),
    "panns_cnn14": Reference(_panns, "torchlibrosa Spectrogram(1024, 320) + LogmelFilterBank(32000, 1024, 64, 50, 14000, top_db=None)[0, 0]", "torchlibrosa"),
    "speechbrain_fbank_40": Reference(_speechbrain, "speechbrain.lobes.features.Fbank()(x)[0] (imported with a placeholder torchaudio module when torchaudio is absent)", "speechbrain"),
}

ALTERNATES: Dict[str, List[Reference]] = {
    "whisper_80": [
        Reference(_whisper_hf(80), "transformers WhisperFeatureExtractor(feature_size=80)(x, max_length=len(x)).input_features[0] (its torch path)", "transformers"),
        Reference(_whisper_hf_numpy(80), "transformers WhisperFeatureExtractor(feature_size=80)._np_extract_fbank_features (its numpy path, float64 FFT)", "transformers", float64=True),
    ],
    "whisper_128": [
        Reference(_whisper_hf(128), "transformers WhisperFeatureExtractor(feature_size=128)(x, max_length=len(x)).input_features[0] (its torch path)", "transformers"),
        Reference(_whisper_hf_numpy(128), "transformers WhisperFeatureExtractor(feature_size=128)._np_extract_fbank_features (its numpy path, float64 FFT)", "transformers", float64=True),
    ],
    "nemo_mel_80": [
        Reference(nemo_mel_reimplementation, "float64 RE-IMPLEMENTATION of NeMo FilterbankFeatures' math (nnaudio_export.references.nemo_mel_reimplementation)", "nnaudio_export (re-implementation)", float64=True),
    ],
    "speechbrain_fbank_40": [
        Reference(_speechbrain_float64, "speechbrain.lobes.features.Fbank()(x)[0] built and run with torch's default dtype float64", "speechbrain", float64=True),
    ],
    "panns_cnn14": [
        Reference(_panns_librosa, "librosa.feature.melspectrogram(float64 x, sr=32000, n_fft=1024, hop_length=320, n_mels=64, fmin=50, fmax=14000) + power_to_db(ref=1, amin=1e-10, top_db=None), transposed", "librosa", float64=True),
    ],
}


def float64_reference(name: str) -> "Reference | None":
    """The preset's first reference that computes in float64, or None."""
    for ref in [REFERENCES[name]] + ALTERNATES.get(name, []):
        if ref.float64:
            return ref
    return None


def measure_reference_error(fe) -> "Dict[str, object] | None":
    """Max |fe - reference| on a speech-like clip for a frontend built from a registered preset
    (same stages; any ``num_samples``). ``None`` when ``fe`` is not such a preset; a dict with
    ``error`` when the reference package cannot be imported or run. Errors in output units
    (``db_per_unit`` converts log outputs to dB)."""
    import torch
    from . import presets
    from .signals import speech_like
    from .spec import normalize_spec
    name = getattr(fe, "name", None)
    if name not in REFERENCES or name not in presets.names():
        return None
    spec = fe.spec
    if spec["stages"] != normalize_spec(presets.get_spec(name))["stages"]:
        return None
    ref = REFERENCES[name]
    x = speech_like(fe.num_samples, fe.sample_rate)
    out = {"preset": name, "reference": ref.description, "package": ref.package,
           "signal": "speech_like", "num_samples": int(fe.num_samples)}
    try:
        r = ref(x)
    except Exception as exc:  # the reference package is missing or failed: say so
        out["error"] = f"{type(exc).__name__}: {exc}"
        return out
    with torch.no_grad():
        y = fe(torch.from_numpy(x)[None].to(torch.float32))[0].double().cpu().numpy()
    if y.shape != r.shape:
        out["error"] = f"shape mismatch: ours {list(y.shape)}, reference {list(r.shape)}"
        return out
    out["max_abs_error"] = float(np.max(np.abs(y - r)))
    out["units"] = "output units" + (f" ({fe.db_per_unit:g} dB per unit)" if fe.db_per_unit else "")
    return out
