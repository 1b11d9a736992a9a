"""Speed benchmark of our bundles against the peers (librosa, torch.stft, nnAudio,
openai-whisper, transformers, kaldi-native-fbank, the ONNX ``STFT`` op): a tool on top of
the package, not part of the core. ``nnaudio-export bench`` / ``scripts/bench.py``.

:mod:`.driver` (presets, our bundles, the run, the CLI) -> :mod:`.peers`, :mod:`.report` ->
:mod:`.measure` (timing, FLOPs, memory, the machine's GEMM ceiling).
"""
from .driver import OURS, PRESETS, Config, add_cli, cmd_bench, main, run, run_preset

__all__ = ["OURS", "PRESETS", "Config", "add_cli", "cmd_bench", "main", "run", "run_preset"]
