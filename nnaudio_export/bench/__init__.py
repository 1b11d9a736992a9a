"""Speed benchmark of our bundles against the peers (librosa, torch.stft, nnAudio,
openai-whisper, transformers, kaldi-native-fbank, the ONNX ``STFT`` op): a tool on top of
the package, not part of the core. ``nnaudio-export bench`` / ``scripts/bench.py``.

:mod:`.driver` (presets, our bundles, the run) -> :mod:`.peers`, :mod:`.report` ->
:mod:`.measure` (timing, FLOPs, memory, the machine's GEMM ceiling); :mod:`.options` is the
command line (no torch). The names below load :mod:`.driver` on first use.
"""
import importlib
from typing import Any

__all__ = ["OURS", "PRESETS", "Config", "add_cli", "cmd_bench", "main", "run", "run_preset"]
_FROM = {"OURS": "options", "PRESETS": "options", "add_cli": "options"}


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'nnaudio_export.bench' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_FROM.get(name, 'driver')}", __name__), name)
    globals()[name] = value
    return value
