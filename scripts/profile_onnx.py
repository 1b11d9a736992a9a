#!/usr/bin/env python3
"""Where ONNX Runtime spends a bundle's time: the per-node kernel times of the *timed* calls only.

    python scripts/profile_onnx.py BUNDLE_OR_MODEL [--threads N] [--batch B] [--runs R] [--top K]

ONNX Runtime's profiler records every call of the session, warm-up calls included, and the
first calls of a session are slow (its arena grows: fresh pages, page faults), mostly in the
ops that first touch a new buffer. Summing a node's events over all calls and dividing by the
call count, as a quick script does, inflated istft_1024's Pad and Transpose 2.6x (0.37 and 0.36
ms an item at 1 thread, against 0.14 and 0.14 in steady state) and the whole graph's kernel
time 1.6x (4.4 against 2.7 ms; wall clock 2.9). Here each node's time is the median of its
last ``--runs`` events, the warm-up calls left out, and the wall-clock median is printed
beside the kernel total.
"""
import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def model_path(arg: str) -> Path:
    """A bundle directory (its ONNX model file, as the manifest's format table names it) or
    an .onnx file."""
    from nnaudio_export.manifest import model_format
    p = Path(arg)
    if p.is_dir():
        p = p / model_format("onnx").file
    if not p.is_file():
        raise SystemExit(f"profile_onnx: no ONNX model at {arg} (give a bundle directory or a .onnx file)")
    return p


def profile(path: Path, threads: int, batch: int, runs: int, warmup: int = 3):
    """(input shape, wall-clock ms per call (median), {node: (op, median kernel ms, in, out)})."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.enable_profiling = True
    opts.profile_file_prefix = os.path.join(tempfile.mkdtemp(prefix="profile_onnx_"), "ort")
    s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    inp = s.get_inputs()[0]
    shape = [batch if not isinstance(d, int) else d for d in inp.shape]
    dtype = np.int16 if "int16" in inp.type else np.float32
    x = (np.random.default_rng(0).standard_normal(shape) * (3000 if dtype == np.int16 else 0.1)).astype(dtype)
    for _ in range(warmup):
        s.run(None, {inp.name: x})
    wall = []
    for _ in range(runs):
        t = time.perf_counter()
        s.run(None, {inp.name: x})
        wall.append(1e3 * (time.perf_counter() - t))
    events = json.loads(Path(s.end_profiling()).read_text())
    times, info = collections.defaultdict(list), {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            node = e["name"][: -len("_kernel_time")]
            times[node].append(e["dur"] / 1e3)
            a = e.get("args", {})
            info[node] = (a.get("op_name", "?"), a.get("input_type_shape"), a.get("output_type_shape"))
    nodes = {n: (info[n][0], float(np.median(v[-runs:])), info[n][1], info[n][2]) for n, v in times.items()}
    return shape, float(np.median(wall)), nodes


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="a bundle directory or a .onnx file")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    p.add_argument("--batch", type=int, default=1, help="items a call, for a dynamic batch axis (default 1)")
    p.add_argument("--runs", type=int, default=20, help="timed calls after 3 warm-up calls (default 20)")
    p.add_argument("--top", type=int, default=15, help="nodes listed, slowest first (default 15)")
    a = p.parse_args(argv)
    if a.threads < 1 or a.batch < 1 or a.runs < 1 or a.top < 1:
        raise SystemExit("profile_onnx: --threads, --batch, --runs and --top must be >= 1")
    shape, wall, nodes = profile(model_path(a.model), a.threads, a.batch, a.runs)
    total = sum(v[1] for v in nodes.values())
    print(f"input {shape}, {a.threads} thread(s): wall clock {wall:.3f} ms a call (median of {a.runs}), "
          f"kernels {total:.3f} ms (medians of the timed calls, warm-up left out)")
    for name, (op, ms, ins, outs) in sorted(nodes.items(), key=lambda kv: -kv[1][1])[: a.top]:
        shapes = " ".join(str(list(d.values())[0]) for d in (ins or [])[:2])
        out = " ".join(str(list(d.values())[0]) for d in (outs or [])[:1])
        print(f"{ms:8.3f} ms {100 * ms / total:5.1f} %  {op:12s} {name[:36]:36s} {shapes} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
