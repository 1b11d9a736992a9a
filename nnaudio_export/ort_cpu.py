"""A batch through ONNX Runtime on the CPU: a few items a call, each call writing its rows of
one output array (IO binding: no copy out of ONNX Runtime, no concatenation), either on one
session with its intra-op threads or shared out among single-threaded sessions running side
by side (``nx.load(..., item_workers=N)``, :class:`ItemWorkers`), or whichever of the two
was faster lately (``item_workers='auto'``, :class:`FasterOfTwo`); :class:`CpuBatches` is
the one object a runtime holds for all of it.

Why a few items a call: one call's intermediates then stay in the caches between the graph's
passes (README, "Running a CPU batch a few items a call"). Why items side by side can help:
the threads share no data mid-graph, and the ops ONNX Runtime runs on one thread (Pad,
Transpose, Slice: ~45 % of istft_1024's kernel time at 2 threads) leave no core idle. Why it
is not the default: on our 2-vCPU EPYC VM (2026-12-05, whisper_80, 8 x 30 s, one runtime per
process) 2 workers held 17.5-21 ms a batch with calls back to back, where one session with 2
intra-op threads took 16-17 ms in most processes but 31-43 ms in some (both threads busy, on
different vCPUs); after a 0.1 s pause before each call the workers took 22-25 ms against the
intra-op session's 17-20 (waking the idle vCPU and the worker thread costs milliseconds).
"""
import collections
import functools
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, Callable, Dict, List, Optional, Sequence, TypeVar

import numpy as np


T = TypeVar("T")


def side_by_side(pool: ThreadPoolExecutor, tasks: Sequence[Callable[[], T]]) -> List[T]:
    """Run ``tasks`` at once, the first on the calling thread (one thread less to wake) and
    the rest on ``pool`` (at least ``len(tasks) - 1`` threads); their results in order. Every
    task has finished when this returns or raises (the calling thread's error first, else the
    first pool task's)."""
    jobs = [pool.submit(task) for task in tasks[1:]]
    try:
        first = tasks[0]()
    finally:
        wait(jobs)   # none still writing when this returns or raises
    return [first] + [job.result() for job in jobs]


def chunk_items(n: int, workers: int, max_items: int) -> int:
    """Items a call when ``n`` items are dealt to ``workers`` sessions: at most ``max_items``,
    and few enough that every worker (up to ``n`` of them) gets a chunk."""
    return min(max_items, -(-n // min(workers, n)))


def run_bound(session: Any, names: Sequence[str], arr: np.ndarray, out: np.ndarray,
              starts: Sequence[int], size: int) -> None:
    """Run ``session`` (input, output tensor ``names``) on the items ``[i, i + size)`` of
    ``arr`` for each ``i`` in ``starts``, writing their outputs into the same rows of the
    float32 array ``out``."""
    input_name, output_name = names
    binding = session.io_binding()
    for i in starts:
        rows = out[i:i + size]
        binding.bind_cpu_input(input_name, arr[i:i + size])
        binding.bind_output(output_name, "cpu", 0, np.float32, list(rows.shape), rows.ctypes.data)
        session.run_with_iobinding(binding)


class ItemWorkers:
    """``count`` (>= 2) single-threaded CPU sessions of one model (its checked bytes ``data``, the
    session ``config`` entries of the main session) that run a batch's items side by side;
    built at the first :meth:`run`, so that a runtime that only sees single items never pays
    for them. Safe to call from several threads (each call binds its own tensors)."""

    def __init__(self, data: bytes, config: Dict[str, str], count: int, names: Sequence[str]):
        self.count, self.names = count, tuple(names)
        self._data, self._config = data, dict(config)
        self._sessions: List[Any] = []
        self._pool: Optional[ThreadPoolExecutor] = None
        self._lock = threading.Lock()

    def ready(self) -> List[Any]:
        """The sessions, built (with the pool) at the first call."""
        with self._lock:
            if not self._sessions:
                import onnxruntime as ort
                for _ in range(self.count):
                    opts = ort.SessionOptions()
                    opts.intra_op_num_threads = 1
                    for key, value in self._config.items():
                        opts.add_session_config_entry(str(key), str(value))
                    self._sessions.append(ort.InferenceSession(self._data, sess_options=opts,
                                                               providers=["CPUExecutionProvider"]))
                # the calling thread runs one worker's share itself (side_by_side)
                self._pool = ThreadPoolExecutor(self.count - 1, thread_name_prefix="nnaudio_export-items")
            return list(self._sessions)

    def run(self, arr: np.ndarray, out: np.ndarray, max_items: int) -> None:
        """Items of ``arr`` into the rows of ``out``, at most ``max_items`` a call, in chunks
        small enough that every worker gets one (the first ``len(arr)`` workers at most),
        dealt out in turn."""
        n = arr.shape[0]
        sessions = self.ready()[:n]
        size = chunk_items(n, len(sessions), max_items)
        starts = range(0, n, size)
        step = len(sessions)
        assert self._pool is not None
        side_by_side(self._pool, [functools.partial(run_bound, s, self.names, arr, out, starts[k::step], size)
                                  for k, s in enumerate(sessions)])


class FasterOfTwo:
    """Picks, call by call, the faster of two ways to run a batch (``item_workers='auto'``:
    0 the intra-op session, 1 the item workers) from the seconds per item each took lately.

    Why choose at run time: which way is faster depends on where the host puts the vCPUs,
    and that changes while a process runs. On our 2-vCPU EPYC VM (2026-12-05) a cache line
    took 72-80 ns between the two vCPUs most of the time (one L3) and ~330 ns in spells of
    seconds to minutes (different dies); in those spells one session's two intra-op threads
    ran whisper_80 2.5x slower (4.9 against 2.0 ms an item, slower than one thread's 3.8),
    while two single-threaded sessions side by side did not slow at all. With one L3 either
    way can be faster (istft_1024 after a pause: 19.2 ms the batch intra-op, 23.9 side by side).

    Rule: a way's estimate is the fastest of its last ``window`` counted calls (each way's
    first ``warmup`` calls, its sessions' first runs, are not counted), so one disturbed call
    does not decide and a slowdown of the way in use shows within ``window`` calls. At the
    start each way runs until its window is full (8 calls with the defaults; a choice made on
    one call each once kept a way 1.3x slower for 40 calls). Then the way with the lower
    estimate runs, and the other is tried for ``stint`` calls in a row once
    ``explore_every x (its estimate / the best)^2`` calls (at most ``max_explore_every``) have
    passed without it. A stint, because the first call after a switch can be slow: cold
    caches (3.5-3.9 against 2.3 ms an item, whisper_80), and ONNX Runtime's intra-op threads
    spinning on after their call on the cores the workers need (4.1-5.0 against 2.2), which
    is why the auto runtime's intra-op session sets ``session.force_spinning_stop``. Trips
    cost ~3-4 % where the ways are within 20 %; rarer trips leave a way timed in a spell of
    the other state waiting too long (one server loop, whisper_80: trips every 64-256 /
    32-128 / 16-64 calls gave 22.0 / 21.2 / 21.0 ms a batch, intra-op alone 22.5, workers
    22.5).

    As a server loop (8-item batches back to back, 2-s blocks rotating, 4 min, final rule),
    mean ms a batch, intra-op / 2 workers / auto: whisper_80 24.3 / 23.6 / 22.6, istft_1024
    26.7 / 19.1 / 18.6; with one L3 auto stays 3-13 % behind the intra-op session. Where calls
    are rare (the benchmark's rotation, one every ~1.5 s) the estimates age and it runs what
    its first calls found faster. Every figure:
    docs/benchmarks/cpu-2core-2026-12-05-vcpu-placement.md. Both ways compute every item with
    the same graph (for our presets the same bits: ONNX Runtime's CPU kernels split work
    across threads without reordering any sum), so the choice changes speed, not results.
    Thread-safe; calls running at once time each other's contention."""

    WAYS = ("intra_op", "item_workers")

    def __init__(self, explore_every: int = 32, max_explore_every: int = 128, stint: int = 2,
                 window: int = 3, warmup: int = 1):
        self.explore_every, self.max_explore_every = explore_every, max_explore_every
        self.stint, self.warmup = stint, warmup
        self.calls = [0, 0]                          # calls run each way, warm-up included
        self.since = [0, 0]                          # calls since each way last ran
        self.recent = [collections.deque(maxlen=window), collections.deque(maxlen=window)]
        self.current, self._stint_left = 0, 0
        self._lock = threading.Lock()

    def estimate(self, way: int) -> Optional[float]:
        """Seconds per item: the fastest of ``way``'s recent counted calls (None before one)."""
        return min(self.recent[way]) if self.recent[way] else None

    def _wanted(self) -> int:
        for way in (0, 1):   # at the start each way fills its window: one call does not decide
            if len(self.recent[way]) < (self.recent[way].maxlen or 1):
                return way
        e0, e1 = self.estimate(0), self.estimate(1)
        best = 0 if e0 <= e1 else 1          # type: ignore[operator]
        other = 1 - best
        ratio = max(e0, e1) / min(e0, e1)    # type: ignore[type-var,operator]
        interval = min(self.max_explore_every, max(self.explore_every, self.explore_every * ratio * ratio))
        return other if self.since[other] >= interval else best

    def pick(self) -> int:
        """The way to run the next call."""
        with self._lock:
            if self._stint_left > 0:
                self._stint_left -= 1
                return self.current
            way = self._wanted()
            if way != self.current:
                self.current, self._stint_left = way, self.stint - 1
            return way

    def record(self, way: int, seconds_per_item: float) -> None:
        """The time one call of ``way`` took, per item."""
        with self._lock:
            self.calls[way] += 1
            self.since[way] = 0
            self.since[1 - way] += 1
            if self.calls[way] > self.warmup:
                self.recent[way].append(seconds_per_item)

    def summary(self) -> Dict[str, Dict[str, Any]]:
        """Per way: calls run and its estimate in ms per item (None before one counts)."""
        with self._lock:
            estimates = [self.estimate(w) for w in (0, 1)]
            return {name: {"calls": self.calls[w],
                           "ms_per_item": None if estimates[w] is None else 1e3 * estimates[w]}
                    for w, name in enumerate(self.WAYS)}


class CpuBatches:
    """How a runtime's batch of several items runs through ONNX Runtime on the CPU: on
    ``session`` (its intra-op threads) ``max_batch`` items a call, on ``workers`` side by
    side ``worker_batch`` items a call, or, with ``choose``, each batch the way a
    :class:`FasterOfTwo` picks (timed here, the workers' sessions built before the clock
    runs). Each call writes its rows of one float32 array of rows ``row_shape``. ``names``:
    the model's input and output tensor names."""

    def __init__(self, session: Any, names: Sequence[str], row_shape: Sequence[int], max_batch: int,
                 worker_batch: int, workers: Optional[ItemWorkers] = None, choose: bool = False):
        self.session, self.names = session, tuple(names)
        self.row_shape = tuple(int(d) for d in row_shape)
        self.max_batch, self.worker_batch = max_batch, worker_batch
        self.workers = workers
        self.chooser = FasterOfTwo() if choose and workers is not None else None

    def takes(self, n: int) -> bool:
        """Whether a batch of ``n`` items runs here rather than in one plain call: more than
        ``max_batch`` items, or 2 or more with item workers."""
        return n > self.max_batch or (n > 1 and self.workers is not None)

    def run(self, arr: np.ndarray) -> np.ndarray:
        """The outputs of the items of ``arr`` (C-contiguous), stacked."""
        n = arr.shape[0]
        if self.chooser is None or n < 2:
            return self._run_way(arr, 1 if self.workers is not None and n > 1 else 0)
        way = self.chooser.pick()
        if way == 1:
            assert self.workers is not None
            self.workers.ready()
        start = time.perf_counter()
        out = self._run_way(arr, way)
        self.chooser.record(way, (time.perf_counter() - start) / n)
        return out

    def _run_way(self, arr: np.ndarray, way: int) -> np.ndarray:
        """``arr`` on the session (way 0) or on the workers (way 1)."""
        n = arr.shape[0]
        out = np.empty((n,) + self.row_shape, np.float32)
        if way == 1:
            assert self.workers is not None
            self.workers.run(arr, out, self.worker_batch)
        else:
            run_bound(self.session, self.names, arr, out, range(0, n, self.max_batch), self.max_batch)
        return out

    def timings(self) -> Optional[Dict[str, Dict[str, Any]]]:
        """With a chooser: per way the batches it ran and its estimate in ms per item
        (:meth:`FasterOfTwo.summary`); else None."""
        return self.chooser.summary() if self.chooser is not None else None
