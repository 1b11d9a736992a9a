"""The benchmark's command line (standard library only, so ``nnaudio-export --help`` does not
import torch): what is measured by default and the ``bench`` arguments. The run itself is
:mod:`.driver`'s (``cmd_bench``), which the CLI imports when the command runs."""
import argparse
from typing import Any

STREAM_PRESETS = ("kaldi_fbank_80",)
PRESETS = ("whisper_80", "mel_128", "stft_2048", "cqt1992v2_84", "cqt2010v2_84", "istft_1024")
OURS = ("eager", "torchscript", "onnxruntime", "pt2")
MALLOC_MODES = ("default", "retain")
FULL_BATCH, QUICK_BATCH, QUICK_SECONDS = 8, 2, 1.0
# What the peers need (the `bench` extra, or the test extra that includes them).
PEER_PACKAGES = "librosa, nnAudio 0.3.4, openai-whisper, transformers, kaldi-native-fbank, matplotlib"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help=f"smoke test: batch {QUICK_BATCH} x {QUICK_SECONDS:g} s, "
                   "2 repeats, no ORT option sweep")
    p.add_argument("--out", default="build/bench", help="output directory (bench.md, bench.json, bench.png, bundles/)")
    p.add_argument("--presets", nargs="+", default=None,
                   help=f"presets to measure (default {' '.join(PRESETS)}; --streaming: {' '.join(STREAM_PRESETS)})")
    p.add_argument("--batch", type=int, default=None, help=f"batch size (default {FULL_BATCH}; quick {QUICK_BATCH})")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per implementation (default 5; quick 2)")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls first (default 3: TorchScript's profiling executor optimises after 2; quick 1)")
    p.add_argument("--settle", type=float, default=None,
                   help="seconds of sleep before each timed call (default 0.2: ONNX Runtime's and OpenMP's "
                        "threads spin after a call and slowed the next implementation up to 1.5x; quick 0)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where to time everything; with cuda our bundles are built with target='cuda' "
                        "(the CPU layout's ONNX model is timed beside them) and peers that run on the CPU "
                        "are skipped")
    p.add_argument("--no-memory", action="store_true", help="skip the per-backend memory subprocesses")
    p.add_argument("--ort-variants", dest="ort_variants", action="store_true", default=None,
                   help="time ORT SessionOptions variants (default on, off with --quick)")
    p.add_argument("--no-ort-variants", dest="ort_variants", action="store_false")
    p.add_argument("--streaming", action="store_true",
                   help="per-chunk latency of streaming bundles at batch 1 in ORT (and kaldi-native-fbank's "
                        "OnlineFbank for Kaldi presets) instead; writes bench_streaming.md/.json")
    p.add_argument("--chunks-ms", default="10,100", help="--streaming: chunk sizes in ms, comma-separated")
    p.add_argument("--stream-seconds", type=float, default=20.0, help="--streaming: seconds of speech fed")
    p.add_argument("--malloc", choices=MALLOC_MODES, default="default",
                   help="the C allocator during the run: 'default' (glibc's own: large blocks are unmapped "
                        "when freed, so torch and numpy pay page faults on every call) or 'retain' (glibc keeps "
                        "freed memory, nnaudio_export.retain_freed_memory; glibc only). The report gives "
                        "page faults per call either way")
    p.add_argument("--threads", type=int, default=None,
                   help="intra-op threads of everything timed: torch.set_num_threads (peers, our torch "
                        "backends) and ORT's intra_op_num_threads (default: each library's own, one per "
                        "core; --streaming: 1). With N >= 2 on the CPU, ours in ORT is also timed with "
                        "item_workers=N and item_workers='auto', and the peers that compute an item at a "
                        "time N items side by side")
    p.add_argument("--calls-per-turn", type=int, default=1, metavar="K",
                   help="timed calls each implementation makes back to back in its turn of the rotation "
                        "(default 1). With K >= 2 all but a turn's first call find the caches as the "
                        "implementation's own previous call left them, as in a server running one "
                        "frontend; the report also gives the median of the turns' first calls")
    p.add_argument("--probe", default=None, metavar="PATH",
                   help="the core_to_core binary (gcc -O2 -pthread scripts/core_to_core.c -o core_to_core): "
                        "read before each timed call, it tells whether the two vCPUs share an L3; the "
                        "report then gives each row's median per placement (cloud VMs move vCPUs between "
                        "dies, and intra-op threads run up to 2.5x slower apart)")


def add_cli(subparsers: Any, **common: Any) -> argparse.ArgumentParser:
    """The ``bench`` subcommand's parser (the caller sets its ``func``)."""
    p = subparsers.add_parser("bench", help="benchmark our bundles against librosa, torch.stft, nnAudio, ...",
                              description="Benchmark our bundles against the peers. The peers need "
                                          f"{PEER_PACKAGES} (pip install -e .[bench] installs librosa "
                                          "and matplotlib; the rest as in scripts/setup_env.sh); a "
                                          "peer whose package is missing is reported, not timed.",
                              **common)
    add_arguments(p)
    return p
