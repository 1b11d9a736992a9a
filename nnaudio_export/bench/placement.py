"""Where the host has put the two vCPUs the benchmark runs on, read before each timed call
(``bench --probe PATH``), so that each row's median can be split by placement.

Why: on a cloud VM the hypervisor moves vCPUs between cores that share an L3 and cores on
different dies, in spells of seconds to minutes. On our 2-vCPU EPYC VM (2026-12-05) a cache
line took 72-80 ns between the two vCPUs with one L3 and ~330 ns apart; apart, ONNX
Runtime's and torch's intra-op threads ran up to 2.5x slower while single-threaded work did
not slow at all (README, "Why intra-op threads stall on a cloud VM"). A 2-thread median mixes
both states in whatever share the run happened to get: most of the +-30 % swings between
runs. The probe is ``scripts/core_to_core.c`` (``gcc -O2 -pthread scripts/core_to_core.c -o
core_to_core``): two threads pinned to the two CPUs pass a cache line back and forth and it
prints the mean round trip in ns (~1 ms a reading).
"""
import os
import statistics
import subprocess
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

# A round trip above this many ns: the two vCPUs are on different dies (72-80 ns with one
# L3, ~330 apart, nothing read in between on our VM).
APART_NS = 150.0
PLACEMENTS = ("one_l3", "apart")
BUILD_HINT = "build it with: gcc -O2 -pthread scripts/core_to_core.c -o core_to_core"


def placement_reader(path: str) -> Callable[[], float]:
    """A function that runs the probe binary at ``path`` on the first two CPUs this process
    may use and returns its reading in ns. The probe is run once here, so that a probe that
    cannot run fails before the benchmark starts, with one line naming ``--probe``."""
    exe = Path(path)
    if not exe.is_file() or not os.access(exe, os.X_OK):
        raise ValueError(f"--probe: {path} is not an executable file ({BUILD_HINT})")
    cpus = sorted(os.sched_getaffinity(0))[:2] if hasattr(os, "sched_getaffinity") else []
    if len(cpus) < 2:
        raise ValueError("--probe: this process may run on one CPU only, so there is no placement to read")

    def read() -> float:
        done = subprocess.run([str(exe), *map(str, cpus)], capture_output=True, text=True, timeout=30)
        try:
            if done.returncode != 0:
                raise ValueError
            return float(done.stdout.strip())
        except ValueError:
            said = (done.stderr.strip() or done.stdout.strip() or f"exit status {done.returncode}").splitlines()[0]
            raise ValueError(f"--probe: {path} on CPUs {cpus[0]} and {cpus[1]} gave no reading in ns: "
                             f"{said[:200]} ({BUILD_HINT})") from None

    read()
    return read


def state(ns: float) -> str:
    """'apart' above :data:`APART_NS`, else 'one_l3'."""
    return "apart" if ns > APART_NS else "one_l3"


def split_by_placement(times_ms: List[float], probe_ns: List[float]) -> Dict[str, Dict[str, Any]]:
    """Per placement state (:data:`PLACEMENTS`): the timed calls made in it and their median
    ms (None where there were none)."""
    out: Dict[str, Dict[str, Any]] = {}
    for name in PLACEMENTS:
        ts = [t for t, ns in zip(times_ms, probe_ns) if state(ns) == name]
        out[name] = {"calls": len(ts), "median_ms": statistics.median(ts) if ts else None}
    return out


def fastest_by_placement(peers: List[Dict[str, Any]]) -> Dict[str, Optional[float]]:
    """Per state, the fastest of ``peers``' medians there (the rows a ratio is taken
    against, as the caller chose them), or None where none ran in it."""
    best: Dict[str, Optional[float]] = {}
    for name in PLACEMENTS:
        ms = [r["by_placement"][name]["median_ms"] for r in peers
              if r.get("by_placement") and r["by_placement"][name]["median_ms"] is not None]
        best[name] = min(ms) if ms else None
    return best
