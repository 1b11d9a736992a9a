"""Vocos' inverse STFT (``vocos.spectral_ops.ISTFT``, ``vocos.heads.ISTFTHead``) loaded from
the installed ``vocos`` 0.1.0 without its package ``__init__``, which imports the
pretrained model, its feature extractor and torchaudio (no wheel for torch 2.13 here; vocos
is installed ``--no-deps``). The torch.istft and librosa.istft references of the plain
inverse (and librosa.griffinlim, for griffinlim_1024) are here too."""
import sys
import types
from typing import Callable

import numpy as np

from .by_path import load_file, placeholder_modules

# vocos_istft_24khz: charactr/vocos-mel-24khz's head.
VOCOS_N_FFT, VOCOS_HOP = 1024, 256


def vocos_modules() -> types.SimpleNamespace:
    """``spectral_ops`` and ``heads`` of the installed vocos, loaded by path. ``heads.py``
    imports ``vocos.spectral_ops`` and ``vocos.modules`` (given the modules loaded here)
    and two mel-scale helpers from ``torchaudio.functional.functional`` that ``ISTFTHead``
    does not use (given a placeholder module for the duration of the load)."""
    import importlib.util
    from pathlib import Path
    cached = sys.modules.get("_nnx_vocos_heads")
    if cached is not None:
        return types.SimpleNamespace(spectral_ops=sys.modules["_nnx_vocos_spectral_ops"], heads=cached)
    top = importlib.util.find_spec("vocos")
    if top is None or not top.submodule_search_locations:
        raise ModuleNotFoundError("vocos is not installed (pip install --no-deps vocos==0.1.0)", name="vocos")
    root = Path(list(top.submodule_search_locations)[0])
    spectral_ops = load_file("_nnx_vocos_spectral_ops", root / "spectral_ops.py")   # numpy, scipy, torch only
    modules = load_file("_nnx_vocos_modules", root / "modules.py")                  # torch only
    placeholders = {name: types.ModuleType(name) for name in (
        "vocos", "torchaudio", "torchaudio.functional", "torchaudio.functional.functional")}
    placeholders["torchaudio.functional.functional"]._hz_to_mel = None
    placeholders["torchaudio.functional.functional"]._mel_to_hz = None
    placeholders["vocos.spectral_ops"] = spectral_ops
    placeholders["vocos.modules"] = modules
    with placeholder_modules(placeholders):
        heads = load_file("_nnx_vocos_heads", root / "heads.py")
    return types.SimpleNamespace(spectral_ops=spectral_ops, heads=heads)


def vocos_head(float64: bool) -> Callable[[np.ndarray], np.ndarray]:
    """Vocos' ``ISTFTHead(dim=1026, n_fft=1024, hop_length=256, padding='same')`` with its
    projection replaced by the identity: ``(1026, T)`` log-magnitude and phase rows -> audio
    ``(256 T,)``. ``float64``: built and run with torch's default dtype float64 (its Hann
    window, exp, cos, sin and irfft in float64), else as shipped (float32)."""
    def fn(x: np.ndarray) -> np.ndarray:
        import torch
        heads = vocos_modules().heads
        saved = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64 if float64 else torch.float32)
        try:
            head = heads.ISTFTHead(dim=VOCOS_N_FFT + 2, n_fft=VOCOS_N_FFT, hop_length=VOCOS_HOP,
                                   padding="same").eval()
            head.out = torch.nn.Identity()
            inp = torch.from_numpy(np.asarray(x, np.float64 if float64 else np.float32))
            with torch.no_grad():
                return head(inp.T[None])[0].double().numpy()    # (B, L, H) = (1, T, 1026)
        finally:
            torch.set_default_dtype(saved)
    return fn


def torch_istft(n_fft: int, hop_length: int, center: bool = True) -> Callable[[np.ndarray], np.ndarray]:
    """``torch.istft`` in float64 (periodic Hann of ``n_fft``) of one ``(F, T, 2)`` spectrum."""
    def fn(x: np.ndarray) -> np.ndarray:
        import torch
        z = torch.view_as_complex(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)))
        window = torch.hann_window(n_fft, dtype=torch.float64)
        return torch.istft(z, n_fft, hop_length, window=window, center=center).numpy()
    return fn


def librosa_istft(n_fft: int, hop_length: int, center: bool = True) -> Callable[[np.ndarray], np.ndarray]:
    """``librosa.istft`` in float64 of one ``(F, T, 2)`` spectrum."""
    def fn(x: np.ndarray) -> np.ndarray:
        import librosa
        z = np.asarray(x, np.float64)
        return librosa.istft(z[..., 0] + 1j * z[..., 1], n_fft=n_fft, hop_length=hop_length,
                             center=center, dtype=np.float64)
    return fn


def librosa_griffinlim(n_fft: int, hop_length: int, n_iter: int = 32,
                       momentum: float = 0.99) -> Callable[[np.ndarray], np.ndarray]:
    """``librosa.griffinlim(init=None)`` in float64 of one ``(F, T)`` magnitude spectrogram
    (periodic Hann, center, zero padding: librosa's defaults)."""
    def fn(x: np.ndarray) -> np.ndarray:
        import librosa
        return librosa.griffinlim(np.asarray(x, np.float64), n_iter=n_iter, hop_length=hop_length,
                                  n_fft=n_fft, init=None, momentum=momentum, dtype=np.float64)
    return fn
