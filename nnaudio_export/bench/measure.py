"""Measurement primitives of the speed benchmark, shared by ``bench`` and ``bench_peers`` and
importing neither: the machine description, CPU-contention snapshots, the fp32 GEMM ceiling,
timing (``warmup`` calls, then the median (and min / max) of ``repeats`` timed calls of one whole
batch, ``time.perf_counter``, CUDA synchronised; ``measure`` times candidates round-robin, with a
pause before each timed call so no implementation pays for the previous one's spinning
threads), FLOP
counting (conv / matmul FLOPs counted by ``torch.utils.flop_counter`` on an eager module, 2 per
multiply-add, elementwise ops not counted) and peak memory of our backends (a fresh subprocess
per backend loads the bundle and runs it twice; peak anonymous RSS minus the value right after
imports and input creation, so torch's own footprint is in every baseline alike).
"""
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from ..allocator import minor_faults
from .placement import split_by_placement

SIGNAL_NAMES = ("speech", "tones", "noise", "chirp")

Candidate = Tuple[Dict[str, Any], Callable[[], Any], Optional[Callable[[], None]]]


def _say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _err(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).strip()[:300]}"


# ---------------------------------------------------------------- machine, ceiling, timing

def machine_info() -> Dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: Dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                            "platform": platform.platform(), "python": platform.python_version(),
                            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    for mod in ("torch", "onnxruntime", "onnx", "numpy", "librosa", "nnAudio", "transformers", "whisper"):
        try:
            m = __import__(mod)
            info[mod] = getattr(m, "__version__", None) or _dist_version(mod)
        except Exception:
            info[mod] = "not installed"
    return info


def _dist_version(mod: str) -> str:
    from importlib import metadata
    for name in (mod, {"whisper": "openai-whisper"}.get(mod, mod)):
        try:
            return metadata.version(name)
        except Exception:
            continue
    return "unknown"


def cpu_snapshot() -> Dict[str, float]:
    """Busy and steal CPU seconds of the whole machine (/proc/stat) and of this process tree."""
    hz = os.sysconf("SC_CLK_TCK")
    try:
        f = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        busy, steal = (f[0] + f[1] + f[2] + f[5] + f[6]) / hz, (f[7] if len(f) > 7 else 0) / hz
    except (OSError, ValueError, IndexError):
        busy = steal = float("nan")
    t = os.times()
    return {"t": time.time(), "busy": busy, "steal": steal,
            "own": t.user + t.system + t.children_user + t.children_system}


def contention(a: Dict[str, float], b: Dict[str, float]) -> Dict[str, float]:
    """Average cores used by OTHER processes and stolen by the hypervisor between two snapshots."""
    wall = max(b["t"] - a["t"], 1e-9)
    return {"other_cores": max(0.0, (b["busy"] - a["busy"]) - (b["own"] - a["own"])) / wall,
            "steal_cores": (b["steal"] - a["steal"]) / wall, "loadavg_end": os.getloadavg()[0]}


def gemm_gflops(quick: bool, device: str = "cpu") -> Dict[str, Any]:
    """fp32 torch.matmul of square matrices on ``device`` (on CUDA with TF32 as the caller set
    it: the benchmark turns it off): best median GFLOP/s over the sizes tried."""
    best: Dict[str, Any] = {"gflops": 0.0}
    sizes = (1024,) if quick else ((2048, 3072) if device == "cpu" else (4096, 8192))
    sync = torch.cuda.synchronize if device == "cuda" else None
    for n in sizes:
        a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
        t = time_call(lambda: torch.matmul(a, b), warmup=1, repeats=3 if quick else 5, sync=sync)
        g = 2.0 * n ** 3 / (t["median_ms"] * 1e-3) / 1e9
        if g > best["gflops"]:
            best = {"gflops": g, "n": n, "median_ms": t["median_ms"]}
    return best


def time_call(fn: Callable[[], Any], warmup: int, repeats: int,
              sync: Optional[Callable[[], None]] = None) -> Dict[str, Any]:
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        ts.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": statistics.median(ts), "min_ms": min(ts), "max_ms": max(ts), "runs": len(ts)}


def count_flops(module: Callable[[torch.Tensor], Any], x: torch.Tensor) -> Optional[float]:
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as fc, torch.inference_mode():
        module(x)
    return float(fc.get_total_flops())


def note_items_per_call(row: Dict[str, Any], max_batch: int, batch: int) -> None:
    """Record in ``row`` how many items a call the runtime (``nx.load``) runs of the timed
    batch (its default chunks), and say so in the note when that is fewer than the batch."""
    row["items_per_call"] = min(max_batch, batch)
    if row["items_per_call"] < batch:
        row["note"] = "; ".join(filter(None, [row.get("note"), f"{row['items_per_call']} item(s) a call"]))


def make_input(num_samples: int, sample_rate: float, batch: int) -> np.ndarray:
    """The same deterministic batch as the exporter's example input (speech, tones, noise, chirp, ...)."""
    from ..signals import batch as signal_batch
    return signal_batch(num_samples, sample_rate, "float32", 1,
                        names=tuple(SIGNAL_NAMES[i % 4] for i in range(batch)))


# Seconds of quiet before each timed call. ONNX Runtime's intra-op workers spin after a run
# (its default, ``session.intra_op.allow_spinning=1``) and OpenMP's do after a parallel
# region: measured 2026-12-04 (2 cores, whisper_80 8 x 30 s), openai-whisper timed right after
# one of our ORT calls took 114 ms median, 99 ms 20 ms later, 75 ms 100 ms or 300 ms later;
# ORT timed right after openai-whisper was not slowed. 0.2 s covers it with margin.
SETTLE_S = 0.2


def measure(cands: List[Candidate], warmup: int, repeats: int, settle: float = SETTLE_S,
            placement: Optional[Callable[[], float]] = None, calls_per_turn: int = 1) -> None:
    """Warm every candidate up, then time them ROUND-ROBIN (one call of each per round), so
    load from other processes hits all implementations alike; ``settle`` seconds of sleep
    before each timed call (see :data:`SETTLE_S`); median / min / max per row, and the median
    minor page faults of a timed call (``faults_per_call``). ``placement``: read before each
    call's pause (:mod:`.placement`; its spinning threads settle with the pause), each row
    then also gets ``placement_ns`` and ``by_placement``. ``calls_per_turn`` (K): each turn
    (``repeats`` of them) is K timed calls back to back after the pause, all in the median;
    with K >= 2 the row also gets ``first_of_turn_ms``, the median of the turns' first calls
    (those that find the caches as the other implementations left them)."""
    live = []
    for row, fn, sync in cands:
        if fn is None:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for _ in range(max(warmup, 1)):
                    fn()
            live.append((row, fn, sync, [], [], []))  # call times (ms), page faults, placement (ns)
        except Exception as exc:
            row.update(status="error", error=_err(exc))
    for _ in range(repeats):
        for row, fn, sync, ts, faults, where in live:
            reading = placement() if placement is not None else None
            time.sleep(settle)
            for _ in range(calls_per_turn):
                f0 = minor_faults()
                t0 = time.perf_counter()
                fn()
                if sync:
                    sync()
                ts.append((time.perf_counter() - t0) * 1e3)
                faults.append(minor_faults() - f0)
                if reading is not None:
                    where.append(reading)
    for row, _, _, ts, faults, where in live:
        row.update(status="ok", median_ms=statistics.median(ts), min_ms=min(ts), max_ms=max(ts), runs=len(ts),
                   faults_per_call=int(statistics.median(faults)))
        if calls_per_turn > 1:
            row["first_of_turn_ms"] = statistics.median(ts[::calls_per_turn])
        if placement is not None:
            row.update(placement_ns=[round(ns, 1) for ns in where], by_placement=split_by_placement(ts, where))



# ---------------------------------------------------------------- memory of our backends

def _anon_bytes() -> int:
    """Anonymous resident memory (resident minus file-backed pages, from /proc/self/statm)."""
    f = Path("/proc/self/statm").read_text().split()
    return (int(f[1]) - int(f[2])) * os.sysconf("SC_PAGE_SIZE")


def _probe_main(argv: List[str]) -> None:
    """Subprocess entry: peak anonymous RSS while loading and running one backend (JSON on stdout).
    A thread samples /proc/self/statm every 0.5 ms (torch and ORT release the GIL while computing)."""
    import gc
    import resource
    import threading
    cfg = json.loads(argv[0])
    from ..builder import Frontend
    from ..manifest import read_manifest
    from ..runtime import load
    fe = Frontend.from_spec(read_manifest(cfg["bundle"])["spec"])    # the same input as the run
    xn = fe.example_input(tuple(SIGNAL_NAMES[i % len(SIGNAL_NAMES)] for i in range(cfg["batch"])))
    x = torch.from_numpy(xn).to(cfg["device"])
    gc.collect()
    base = _anon_bytes()
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _anon_bytes())
            time.sleep(0.0005)
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    rt = load(cfg["bundle"], backend=cfg["backend"], device=cfg["device"])
    for _ in range(2):
        rt(xn if cfg["backend"] == "onnxruntime" and cfg["device"] == "cpu" else x)
    stop.set()
    th.join()
    peak[0] = max(peak[0], _anon_bytes())
    res = {"mem_mb": (peak[0] - base) / 2 ** 20,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if cfg["device"] == "cuda":
        res["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    print(json.dumps(res))


def probe_memory(bundle: Path, backend: str, device: str, batch: int) -> Dict[str, Any]:
    cfg = json.dumps({"bundle": str(bundle), "backend": backend, "device": device, "batch": batch})
    code = "import sys; from nnaudio_export.bench.measure import _probe_main; _probe_main(sys.argv[1:])"
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    r = subprocess.run([sys.executable, "-c", code, cfg], capture_output=True, text=True, timeout=600, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"memory probe failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(r.stdout.strip().splitlines()[-1])
