"""Per-chunk latency of streaming bundles at batch 1 (``nnaudio-export bench --streaming``,
``scripts/bench.py --streaming``; ``scripts/bench_streaming.py`` is a thin wrapper): each
``nx.stream(...).accept`` of one chunk in ONNX Runtime, against kaldi-native-fbank's
``OnlineFbank.accept_waveform`` plus reading the frames it made ready, on the same chunks
(Kaldi presets only: the peer computes Kaldi fbank). Median and p99 per call and the
real-time factor (time spent / audio duration)."""
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from ..api import export
from ..signals import clip
from ..stream_runtime import stream
from .measure import machine_info

STREAM_PRESETS = ("kaldi_fbank_80",)
CHUNKS_MS = (10.0, 100.0)
STREAM_SECONDS = 20.0
WARMUP_CALLS = 3


def _stats(times: Sequence[float], chunk_s: float) -> Dict[str, float]:
    t = np.asarray(times)
    return {"median_ms": 1e3 * float(np.median(t)), "p99_ms": 1e3 * float(np.percentile(t, 99)),
            "rtf": float(t.sum() / (len(t) * chunk_s))}


def kaldi_online(spec: Dict[str, Any]) -> Optional[Callable[[np.ndarray], int]]:
    """A kaldi-native-fbank ``OnlineFbank`` fed chunk by chunk as our graph would be (input
    scale applied), returning the frames it made ready (read out); None for a preset
    without a ``kaldi_stft`` stage or without the package."""
    stages = {s["type"]: s for s in spec["stages"]}
    if "kaldi_stft" not in stages or "kaldi_mel" not in stages:
        return None
    try:
        import kaldi_native_fbank as knf
    except ImportError:
        return None
    sr = float(spec["sample_rate"])
    scale = np.float32((stages.get("input") or {}).get("scale") or 1.0)
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq, opts.frame_opts.dither = sr, 0.0
    opts.frame_opts.snip_edges = stages["kaldi_stft"]["snip_edges"]
    opts.mel_opts.num_bins = stages["kaldi_mel"]["n_mels"]
    opts.mel_opts.high_freq = stages["kaldi_mel"]["high_freq"]
    online, ready = knf.OnlineFbank(opts), [0]

    def accept(piece: np.ndarray) -> int:
        online.accept_waveform(sr, (piece * scale).tolist())
        frames = [online.get_frame(i) for i in range(ready[0], online.num_frames_ready)]
        ready[0] += len(frames)
        return len(frames)
    return accept


def bench_chunk(preset: str, chunk_ms: float, seconds: float = STREAM_SECONDS, threads: int = 1) -> Dict[str, Any]:
    """One preset at one chunk size: ours (ORT, ``threads`` intra-op threads) and, for Kaldi
    presets, kaldi-native-fbank, timed call by call over ``seconds`` of speech."""
    with tempfile.TemporaryDirectory() as d:
        out = export(preset, Path(d) / "b", formats=("onnx",), seconds=1.0, streaming=True,
                     chunk_ms=chunk_ms, verify=False)
        session = stream(out, backend="onnxruntime", intra_op_num_threads=threads)
    manifest = session.manifest
    sr = int(manifest["sample_rate"])
    n = int(manifest["streaming"]["chunk_samples"])
    x = clip("speech", sr, seconds)[: int(seconds * sr)]
    peer = kaldi_online(manifest["spec"])
    for _ in range(WARMUP_CALLS):
        session.accept(x[:n])
    session.reset()
    ours: List[float] = []
    theirs: List[float] = []
    for pos in range(0, len(x) - n + 1, n):
        piece = x[pos: pos + n]
        t0 = time.perf_counter()
        session.accept(piece)
        t1 = time.perf_counter()
        if peer is not None:
            peer(piece)
            theirs.append(time.perf_counter() - t1)
        ours.append(t1 - t0)
    row: Dict[str, Any] = {"preset": preset, "chunk_ms": chunk_ms, "chunk_samples": n, "calls": len(ours),
                           "ort_threads": threads, "ours_ort": _stats(ours, n / sr)}
    if theirs:
        row["kaldi_native_fbank"] = _stats(theirs, n / sr)
    return row


def markdown(rows: Sequence[Dict[str, Any]], load: str) -> str:
    lines = [f"Streaming, batch 1, per `accept` of one chunk; load average {load}", "",
             "| preset | chunk | ours ORT median / p99 (ms) | ours RTF | kaldi-native-fbank median / p99 (ms) | its RTF |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        o, k = r["ours_ort"], r.get("kaldi_native_fbank")
        peer = f"{k['median_ms']:.3f} / {k['p99_ms']:.3f} | {k['rtf']:.4f}" if k else "- | -"
        lines.append(f"| {r['preset']} | {r['chunk_ms']:g} ms | {o['median_ms']:.3f} / {o['p99_ms']:.3f} | "
                     f"{o['rtf']:.4f} | {peer} |")
    return "\n".join(lines) + "\n"


def run_streaming(presets: Sequence[str], chunks_ms: Sequence[float], seconds: float, threads: int,
                  out: Optional[Path] = None) -> Dict[str, Any]:
    """Every preset at every chunk size; writes ``bench_streaming.json`` / ``.md`` into
    ``out`` when given."""
    rows = [bench_chunk(p, float(ms), seconds, threads) for p in presets for ms in chunks_ms]
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    report = {"machine": machine_info(), "load_average": load, "seconds": seconds, "rows": rows}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench_streaming.json").write_text(json.dumps(report, indent=1))
        (out / "bench_streaming.md").write_text(markdown(rows, load))
    return report
