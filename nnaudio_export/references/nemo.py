"""NeMo's ``FilterbankFeatures`` loaded from the installed ``nemo_toolkit`` without its
package ``__init__`` files, and a float64 re-implementation of the same math (its float64
companion)."""
import sys
import types

import numpy as np

from .by_path import load_file, placeholder_modules


def nemo_filterbank_features_class():
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
    with placeholder_modules(placeholders):
        module = load_file("_nnx_nemo_features", path)
    return module.FilterbankFeatures


def nemo_filterbank(x: np.ndarray) -> np.ndarray:
    import torch
    # AudioToMelSpectrogramPreprocessor(window_size=0.025, window_stride=0.01, features=80)
    # in eval mode (no dither): its FilterbankFeatures with these arguments.
    fb = nemo_filterbank_features_class()(sample_rate=16000, n_window_size=400, n_window_stride=160,
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
