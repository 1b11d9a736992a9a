"""A batch through ONNX Runtime on the CPU: a few items a call, each call writing its rows of
one output array (IO binding: no copy out of ONNX Runtime, no concatenation), either on one
session with its intra-op threads or shared out among single-threaded sessions running side
by side (``nx.load(..., item_workers=N)``, :class:`ItemWorkers`).

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
import functools
import threading
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

    def _ready(self) -> List[Any]:
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
        sessions = self._ready()[:n]
        size = chunk_items(n, len(sessions), max_items)
        starts = range(0, n, size)
        step = len(sessions)
        assert self._pool is not None
        side_by_side(self._pool, [functools.partial(run_bound, s, self.names, arr, out, starts[k::step], size)
                                  for k, s in enumerate(sessions)])
