"""Calls into the real reference packages (openai-whisper, transformers, kaldi-native-fbank,
torchlibrosa, librosa, SpeechBrain), each imported inside the call so that importing this
module needs none of them. Each function maps one clip (1-D float32 numpy) to the reference
features in the preset's output layout."""
import sys
import types
from typing import Callable

import numpy as np


# ----------------------------------------------------------------------------- Whisper

def whisper_openai(n_mels: int) -> Callable[[np.ndarray], np.ndarray]:
    def fn(x: np.ndarray) -> np.ndarray:
        import torch
        import whisper.audio as wa
        audio = torch.from_numpy(x)
        if audio.shape[0] == wa.N_SAMPLES:  # the preset's default length
            audio = wa.pad_or_trim(audio)
        return wa.log_mel_spectrogram(audio, n_mels=n_mels).double().numpy()
    return fn


def whisper_hf(n_mels: int) -> Callable[[np.ndarray], np.ndarray]:
    def fn(x: np.ndarray) -> np.ndarray:
        from transformers import WhisperFeatureExtractor
        fe = WhisperFeatureExtractor(feature_size=n_mels)
        out = fe(x, sampling_rate=16000, return_tensors="np", max_length=x.shape[0])
        return out["input_features"][0]
    return fn


def whisper_hf_numpy(n_mels: int) -> Callable[[np.ndarray], np.ndarray]:
    # transformers' own numpy path (what __call__ runs when torch is absent): float64 FFT.
    def fn(x: np.ndarray) -> np.ndarray:
        from transformers import WhisperFeatureExtractor
        fe = WhisperFeatureExtractor(feature_size=n_mels)
        return fe._np_extract_fbank_features(x[None, :], "cpu")[0]
    return fn


# ----------------------------------------------------------------------------- Kaldi

def kaldi_native_fbank(num_bins: int, snip_edges: bool, high_freq: float, scale: float,
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

def ast_extractor(x: np.ndarray) -> np.ndarray:
    from transformers import ASTFeatureExtractor
    return ASTFeatureExtractor()(x, sampling_rate=16000, return_tensors="np")["input_values"][0]


def clap_extractor(x: np.ndarray) -> np.ndarray:
    from transformers import ClapFeatureExtractor
    out = ClapFeatureExtractor()(x, sampling_rate=48000, return_tensors="np")
    return out["input_features"][0, 0]


# ----------------------------------------------------------------------------- PANNs

def panns_torchlibrosa(x: np.ndarray) -> np.ndarray:
    import torch
    from torchlibrosa.stft import LogmelFilterBank, Spectrogram
    spec = Spectrogram(n_fft=1024, hop_length=320, win_length=1024, window="hann", center=True,
                       pad_mode="reflect", freeze_parameters=True)
    mel = LogmelFilterBank(sr=32000, n_fft=1024, n_mels=64, fmin=50, fmax=14000, ref=1.0,
                           amin=1e-10, top_db=None, freeze_parameters=True)
    with torch.no_grad():
        y = mel(spec(torch.from_numpy(x)[None, :]))
    return y[0, 0].double().numpy()


def panns_librosa(x: np.ndarray) -> np.ndarray:
    # What torchlibrosa reproduces, in float64: librosa melspectrogram + power_to_db.
    import librosa
    mel = librosa.feature.melspectrogram(y=x.astype(np.float64), sr=32000, n_fft=1024,
                                         hop_length=320, window="hann", center=True,
                                         pad_mode="reflect", power=2.0, n_mels=64, fmin=50.0,
                                         fmax=14000.0, htk=False, norm="slaney")
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None).T


# ----------------------------------------------------------------------------- SpeechBrain

def speechbrain_fbank_class():
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


def speechbrain_fbank(x: np.ndarray) -> np.ndarray:
    import torch
    fbank = speechbrain_fbank_class()()
    with torch.no_grad():
        return fbank(torch.from_numpy(x)[None, :])[0].double().numpy()


def speechbrain_fbank_float64(x: np.ndarray) -> np.ndarray:
    # The same package code run in float64: Fbank builds its window and filterbank from the
    # default dtype, so building and running it under float64 makes every step float64.
    import torch
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        fbank = speechbrain_fbank_class()()
        with torch.no_grad():
            return fbank(torch.from_numpy(x.astype(np.float64))[None, :])[0].numpy()
    finally:
        torch.set_default_dtype(old)
