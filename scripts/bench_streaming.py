"""Per-chunk latency of a streaming bundle at batch 1: ``nx.stream(...).accept`` in ONNX
Runtime against kaldi-native-fbank's ``OnlineFbank.accept_waveform`` (plus reading the frames
it made ready) on the same chunks; median and p99 per call and the real-time factor.

    python scripts/bench_streaming.py [--preset kaldi_fbank_80] [--chunks-ms 10,100] [--seconds 20]
"""
import argparse
import json
import tempfile
import time

import numpy as np

import nnaudio_export as nx
from nnaudio_export.signals import clip


def _stats(times, chunk_s):
    t = np.asarray(times)
    return {"median_ms": 1e3 * float(np.median(t)), "p99_ms": 1e3 * float(np.percentile(t, 99)),
            "rtf": float(t.sum() / (len(t) * chunk_s))}


def bench(preset: str, chunk_ms: float, seconds: float, threads: int) -> dict:
    import kaldi_native_fbank as knf
    with tempfile.TemporaryDirectory() as d:
        out = nx.export(preset, f"{d}/b", formats=("onnx",), seconds=1.0, streaming=True,
                        chunk_ms=chunk_ms, verify=False)
        session = nx.stream(out, backend="onnxruntime", intra_op_num_threads=threads)
        manifest = session.manifest
    sr = int(manifest["sample_rate"])
    n = int(manifest["streaming"]["chunk_samples"])
    x = clip("speech", sr, seconds)[: int(seconds * sr)]
    stages = {s["type"]: s for s in manifest["spec"]["stages"]}
    scale = (stages.get("input") or {}).get("scale") or 1.0
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq, opts.frame_opts.dither = sr, 0.0
    opts.frame_opts.snip_edges = stages["kaldi_stft"]["snip_edges"]
    opts.mel_opts.num_bins = stages["kaldi_mel"]["n_mels"]
    opts.mel_opts.high_freq = stages["kaldi_mel"]["high_freq"]
    ours, theirs = [], []
    for _ in range(3):                                  # warm-up
        session.accept(x[:n])
    session.reset()
    online, ready = knf.OnlineFbank(opts), 0
    for pos in range(0, len(x) - n + 1, n):
        piece = x[pos: pos + n]
        t0 = time.perf_counter()
        session.accept(piece)
        t1 = time.perf_counter()
        online.accept_waveform(sr, (piece * np.float32(scale)).tolist())
        frames = [online.get_frame(i) for i in range(ready, online.num_frames_ready)]
        ready += len(frames)
        t2 = time.perf_counter()
        ours.append(t1 - t0)
        theirs.append(t2 - t1)
    return {"preset": preset, "chunk_ms": chunk_ms, "chunk_samples": n, "calls": len(ours),
            "ours_ort": _stats(ours, n / sr), "kaldi_native_fbank": _stats(theirs, n / sr)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="kaldi_fbank_80")
    p.add_argument("--chunks-ms", default="10,100")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--threads", type=int, default=1, help="ORT intra-op threads")
    args = p.parse_args()
    for ms in args.chunks_ms.split(","):
        print(json.dumps(bench(args.preset, float(ms), args.seconds, args.threads)))


if __name__ == "__main__":
    main()
