#!/usr/bin/env python3
"""Which way to run CPU batches on this host: ONNX Runtime's intra-op threads, N item workers,
or ``item_workers='auto'``, each timed as a server loop runs it (batches back to back).

    python scripts/server_loop.py BUNDLE [--batch 8] [--threads N] [--block 2] [--minutes 2]
                                         [--probe ./core_to_core] [--json OUT]

The three runtimes take turns in blocks of ``--block`` seconds of back-to-back batches for
``--minutes``; the mean ms per batch of each is printed. Why blocks and not single calls:
on a cloud VM the cost of a way changes within seconds (where the host puts the vCPUs), and
a switch between ways is itself slow for a call or two, so a rotation of single calls (the
benchmark's) times neither way as a server sees it. With ``--probe`` (the binary built from
``scripts/core_to_core.c``) the cache-line round trip between the first two CPUs this process
may use is read before and after each block, and the means are also given per state ('one
cache': both readings at most 150 ns, ``nnaudio_export.bench.placement.APART_NS``; 'apart':
both above; the benchmark's ``--probe`` reads the same probe before each timed call).
"""
import argparse
import json
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from nnaudio_export.bench.placement import APART_NS, placement_reader


def example_batch(rt: Any, batch: int) -> np.ndarray:
    """Noise of the bundle's input shape (audio or spectrum), ``batch`` items."""
    shape = (batch,) + tuple(int(d) for d in rt.input_shape[1:])
    x = 0.1 * np.random.default_rng(0).standard_normal(shape)
    return x.astype(np.float32) if rt.input_dtype == "float32" else (x * 3000).astype(np.int16)


def run_blocks(bundle: str, batch: int, threads: Optional[int], block: float, minutes: float,
               probe: Optional[str]) -> List[Dict[str, Any]]:
    """One record per block: runtime, ms per batch, probe readings before / after."""
    import nnaudio_export as nx
    from nnaudio_export.devices import cpu_threads
    workers = cpu_threads(threads)
    runtimes = {"intra-op": nx.load(bundle, intra_op_num_threads=threads),
                f"{workers} item workers": nx.load(bundle, intra_op_num_threads=threads, item_workers=workers),
                "auto": nx.load(bundle, intra_op_num_threads=threads, item_workers="auto")}
    x = example_batch(runtimes["intra-op"], batch)
    for rt in runtimes.values():            # sessions built, arenas grown
        for _ in range(3):
            rt(x)
    read: Callable[[], Optional[float]] = placement_reader(probe) if probe else (lambda: None)
    records, end = [], time.time() + 60.0 * minutes
    while time.time() < end:
        for name, rt in runtimes.items():
            before, start, calls = read(), time.perf_counter(), 0
            while time.perf_counter() - start < block:
                rt(x)
                calls += 1
            records.append({"runtime": name, "ms_per_batch": 1e3 * (time.perf_counter() - start) / calls,
                            "probe_before_ns": before, "probe_after_ns": read()})
    records.append({"runtime": "auto", "batch_timings": runtimes["auto"].batch_timings()})
    return records


def state(r: Dict[str, Any]) -> str:
    a, b = r["probe_before_ns"], r["probe_after_ns"]
    if a is None:
        return "all"
    return "one cache" if max(a, b) <= APART_NS else ("apart" if min(a, b) > APART_NS else "changing")


def summary(records: List[Dict[str, Any]]) -> str:
    blocks = [r for r in records if "ms_per_batch" in r]
    names = list(dict.fromkeys(r["runtime"] for r in blocks))
    lines = []
    for group in ("all", "one cache", "apart", "changing"):
        rows = [r for r in blocks if group == "all" or state(r) == group]
        if not rows:
            continue
        cells = [f"{n} {statistics.mean(r['ms_per_batch'] for r in rows if r['runtime'] == n):.2f} ms "
                 f"({sum(1 for r in rows if r['runtime'] == n)} blocks)" for n in names
                 if any(r["runtime"] == n for r in rows)]
        lines.append(f"{group}: " + ", ".join(cells))
    lines.append(f"auto's ways: {records[-1]['batch_timings']}")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", help="bundle directory")
    ap.add_argument("--batch", type=int, default=8, help="items a batch (default 8)")
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads (default: the CPUs)")
    ap.add_argument("--block", type=float, default=2.0, help="seconds per block (default 2)")
    ap.add_argument("--minutes", type=float, default=2.0, help="length of the run (default 2)")
    ap.add_argument("--probe", default=None, help="the core_to_core binary (scripts/core_to_core.c)")
    ap.add_argument("--json", default=None, help="write every block's record here")
    args = ap.parse_args(argv)
    if args.batch < 2:
        ap.error(f"--batch must be >= 2 (a single item always runs on the intra-op session), got {args.batch}")
    records = run_blocks(args.bundle, args.batch, args.threads, args.block, args.minutes, args.probe)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(records, fh, indent=1)
    print(summary(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
