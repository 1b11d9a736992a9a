"""The runtime's guards: large batches run in chunks (the manifest's bytes_per_item sets the
default), NaN / Inf input is refused naming the items, ``length_policy: pad_or_trim`` is
honoured by ``nx.load`` as by the C++ example and serve_ort, and bad batches say what is
expected. Bundles are exported once per module (ONNX and TorchScript only: fast)."""
import numpy as np
import pytest
import torch

import nnaudio_export as nx
from nnaudio_export import devices, runtime
from nnaudio_export.manifest import MAX_EXPORTED_BATCH

TINY = {"sample_rate": 8000, "num_samples": 800,
        "stages": [{"type": "stft", "n_fft": 64, "hop_length": 32}, {"type": "power"},
                   {"type": "mel", "n_mels": 8}, {"type": "log10", "floor": 1e-10}]}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return nx.export(TINY, tmp_path_factory.mktemp("rt") / "tiny", formats=("onnx", "torchscript"),
                     verify=False)


@pytest.fixture(scope="module")
def whisper(tmp_path_factory):
    """whisper_80 at 0.25 s: length_policy 'pad_or_trim'."""
    return nx.export("whisper_80", tmp_path_factory.mktemp("rt") / "w", seconds=0.25,
                     formats=("onnx",), verify=False, precision="single")


def audio(n, length=800, seed=0):
    return (0.1 * np.random.default_rng(seed).standard_normal((n, length))).astype(np.float32)


def test_bytes_per_item_in_manifest_sets_the_default_max_batch(tiny):
    m = nx.runtime.read_manifest(tiny)
    fe = nx.Frontend.from_spec(m["spec"])
    assert m["bytes_per_item"] == fe.bytes_per_item > 4 * 800
    per_item = m["bytes_per_item"]
    # torch backends: a 1 GiB budget of activations (TorchScript has no batch bound); ONNX
    # Runtime on the CPU: the cache budget per intra-op thread (faster; CACHE_BYTES_PER_THREAD)
    assert nx.load(tiny, backend="torchscript").max_batch == devices.chunk_bytes("cpu") // per_item
    for threads in (None, 1, 3):
        rt = nx.load(tiny, intra_op_num_threads=threads)
        budget = runtime.CACHE_BYTES_PER_THREAD * devices.cpu_threads(threads)
        assert rt.max_batch == min(MAX_EXPORTED_BATCH, budget // per_item)
    assert devices.cpu_threads(3) == 3 and devices.cpu_threads() >= 1
    with pytest.raises(ValueError, match="max_batch: 5000 is above 4096"):
        nx.load(tiny, max_batch=5000)
    with pytest.raises(ValueError, match="max_batch must be an integer >= 1"):
        nx.load(tiny, max_batch=0)


@pytest.mark.parametrize("backend", ["onnxruntime", "torchscript"])
def test_chunked_batch_equals_the_chunks_run_alone(tiny, backend):
    rt = nx.load(tiny, backend=backend, max_batch=3)
    x = audio(8)
    y = rt(x)
    assert y.shape == (8, 8, 26)
    for i in range(0, 8, 3):
        np.testing.assert_array_equal(y[i:i + 3], rt(x[i:i + 3]))
    yt = rt(torch.from_numpy(x))
    assert isinstance(yt, torch.Tensor) and torch.equal(yt, torch.from_numpy(y))


def test_batch_above_the_exported_bound_runs(tiny):
    rt = nx.load(tiny)
    y = rt(audio(MAX_EXPORTED_BATCH + 5))
    assert y.shape[0] == MAX_EXPORTED_BATCH + 5 and np.all(np.isfinite(y))


def test_nan_and_inf_are_refused_naming_the_items(tiny):
    rt = nx.load(tiny)
    x = audio(5)
    x[1, 10] = np.nan
    x[3, 0] = -np.inf
    with pytest.raises(ValueError, match=r"batch item\(s\) 1, 3 hold NaN or Inf"):
        rt(x)
    with pytest.raises(ValueError, match=r"item\(s\) 1, 3"):
        rt(torch.from_numpy(x))
    y = nx.load(tiny, check_finite=False)(x)
    assert np.isnan(y[1]).any() and np.all(np.isfinite(y[[0, 2, 4]]))   # silently NaN without the check


def test_pad_or_trim_is_honoured(whisper):
    rt = nx.load(whisper)
    n = rt.num_samples
    x = audio(2, n + 700, seed=1)
    short = x[:, : n - 1000]
    padded = np.concatenate([short, np.zeros((2, 1000), np.float32)], axis=1)
    np.testing.assert_array_equal(rt(short), rt(padded))
    np.testing.assert_array_equal(rt(x), rt(x[:, :n]))
    np.testing.assert_array_equal(rt(torch.from_numpy(short)).numpy(), rt(padded))


def test_exact_policy_and_bad_batches_say_what_is_expected(tiny):
    rt = nx.load(tiny)
    with pytest.raises(ValueError, match=r"expected shape \(batch, 800\).*length_policy is 'exact'"):
        rt(audio(2, 700))
    with pytest.raises(ValueError, match=r"batch must hold >= 1 item"):
        rt(np.zeros((0, 800), np.float32))
    with pytest.raises(ValueError, match="expected dtype float32, got float64"):
        rt(np.zeros((1, 800)))


def test_export_batch_bounds(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"batch must be >= 1 \(or None"):
        nx.export(TINY, tmp_path / "a", batch=0, formats=("onnx",))
    with pytest.raises(ValueError, match="batch: 100000 is above 4096"):
        nx.export(TINY, tmp_path / "a", batch=100000, formats=("onnx",))
    monkeypatch.setenv("NNAUDIO_EXPORT_MEMORY_LIMIT", "1MiB")
    with pytest.raises(ValueError, match="batch: 4000 items .* memory limit of 1.0 MiB"):
        nx.export(TINY, tmp_path / "a", batch=4000, formats=("torchscript",))
    assert list(tmp_path.iterdir()) == []


def test_torch_backends_on_cuda_run_without_tf32():
    """nx.load(..., device='cuda') runs TorchScript / .pt2 / eager inside float32_cuda():
    cuDNN's TF32 (on by torch's default) and cuBLAS's off for the call, the caller's flags
    back after it, also when the call raises. (The flags are plain settings: checked here
    without a GPU; the GPU report shows the CUDA parity it buys.)"""
    from nnaudio_export.devices import float32_cuda
    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.enabled)
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = True, True
    try:
        with float32_cuda():
            assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
            assert torch.backends.cudnn.enabled
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
        with pytest.raises(RuntimeError, match="inside"):
            with float32_cuda():
                raise RuntimeError("inside")
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before[:2]


def test_default_chunk_follows_the_devices_memory(monkeypatch):
    """nx.load's default max_batch: 1 GiB of activations a call on the CPU; on CUDA a quarter
    of the GPU's free memory (at least 1 GiB), within the memory limit either way."""
    from nnaudio_export.checks import memory_limit
    from nnaudio_export.devices import CHUNK_BYTES, chunk_bytes
    assert chunk_bytes("cpu") == min(CHUNK_BYTES, memory_limit())
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (12 * 2**30, 140 * 2**30))
    assert chunk_bytes("cuda") == min(3 * 2**30, memory_limit())
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (2**30, 140 * 2**30))
    assert chunk_bytes("cuda") == min(CHUNK_BYTES, memory_limit())
    monkeypatch.setenv("NNAUDIO_EXPORT_MEMORY_LIMIT", "512MiB")
    assert chunk_bytes("cuda") == chunk_bytes("cpu") == 512 * 2**20


def test_item_workers_run_a_batch_side_by_side(tiny):
    """item_workers=2: a batch's items run on two single-threaded sessions at once; each item
    is the graph's own single-threaded result (the same kernels as a 1-thread session run
    chunk by chunk, so equal to the bit), a single item stays on the main session."""
    one_thread = nx.load(tiny, intra_op_num_threads=1)
    rt = nx.load(tiny, item_workers=2)
    assert rt.item_workers == 2 and "item_workers=2" in repr(rt)
    assert rt.max_batch == one_thread.max_batch          # chunks sized for one thread
    rt(audio(1))
    assert not rt._batches.workers._sessions                # one item: no workers built
    x = audio(7, seed=3)
    y = rt(x)
    assert len(rt._batches.workers._sessions) == 2
    np.testing.assert_array_equal(y, one_thread(x))
    yt = rt(torch.from_numpy(x))
    assert isinstance(yt, torch.Tensor) and torch.equal(yt, torch.from_numpy(y))
    small = nx.load(tiny, item_workers=2, max_batch=2)   # 4 calls of <= 2 items, dealt in turn
    np.testing.assert_array_equal(small(x), y)


def test_item_workers_errors_name_the_parameter(tiny, tmp_path):
    for bad in (0, "fast", 2.0, True):
        with pytest.raises(ValueError, match="item_workers must be an integer >= 1 or 'auto'"):
            nx.load(tiny, item_workers=bad)
    for workers in (2, "auto"):
        with pytest.raises(ValueError, match="item_workers: only ONNX Runtime on the CPU"):
            nx.load(tiny, backend="torchscript", item_workers=workers)
    fixed = nx.export(TINY, tmp_path / "fixed", formats=("onnx",), verify=False, batch=4)
    for workers in (2, "auto"):
        with pytest.raises(ValueError, match="item_workers: this bundle was exported with a fixed batch of 4"):
            nx.load(fixed, item_workers=workers)


def test_item_workers_auto_runs_each_batch_the_faster_way(tiny, whisper):
    """item_workers='auto' with 2 intra-op threads: a batch runs on the 2-thread session or on
    2 single-threaded workers, each chunked for its threads, as FasterOfTwo picks; both ways
    are tried within the first 8 calls and give the same bits as the plain session (ONNX
    Runtime's CPU kernels split work across threads without reordering a sum: pinned here for
    whisper_80's graph, the claim FasterOfTwo's docstring makes). One thread: nothing to
    choose, no workers."""
    for bundle, length in ((tiny, 800), (whisper, 4000)):
        x = audio(7, length, seed=5)
        plain = nx.load(bundle, intra_op_num_threads=2)
        want = plain(x)
        np.testing.assert_array_equal(nx.load(bundle, intra_op_num_threads=1)(x), want)
        rt = nx.load(bundle, intra_op_num_threads=2, item_workers="auto")
        assert "item_workers='auto'" in repr(rt)
        assert rt.session.get_session_options().get_session_config_entry("session.force_spinning_stop") == "1"
        assert rt.max_batch == plain.max_batch
        assert rt._batches.worker_batch == nx.load(bundle, intra_op_num_threads=1).max_batch
        for _ in range(8):
            np.testing.assert_array_equal(rt(x), want)
        timings = rt.batch_timings()
        assert timings["intra_op"]["calls"] >= 2 and timings["item_workers"]["calls"] >= 2
        assert all(t["ms_per_item"] > 0 for t in timings.values())
        rt(x[:1])                                             # one item: on the session, not timed
        assert sum(t["calls"] for t in rt.batch_timings().values()) == 8
    single = nx.load(tiny, intra_op_num_threads=1, item_workers="auto")
    assert single.batch_timings() is None and single._batches.workers is None
    np.testing.assert_array_equal(single(audio(3)), nx.load(tiny)(audio(3)))


def test_faster_of_two_keeps_the_faster_way_and_follows_a_change():
    """FasterOfTwo on made-up timings: each way run 4 times first (one warm-up call, then its
    3-call window filled); then the faster way, with a 2-call trip to the other once the
    interval has passed (32 x ratio^2 calls); when the way in use slows down, the switch
    comes within the 3-call window, with no trip needed."""
    from nnaudio_export.ort_cpu import FasterOfTwo
    chooser = FasterOfTwo()
    cost = {0: 1.0, 1: 1.2}

    def run(calls):
        ways = []
        for _ in range(calls):
            way = chooser.pick()
            chooser.record(way, cost[way])
            ways.append(way)
        return ways
    ways = run(300)
    assert ways[:8] == [0, 0, 0, 0, 1, 1, 1, 1]
    trips = [i for i in range(9, 300) if ways[i] == 1 and ways[i - 1] == 0]
    assert trips and all(ways[i + 1] == 1 for i in trips)        # stints of two calls
    assert trips[0] - 8 >= 32 * 1.2 ** 2 - 1 and sum(ways[8:]) == 2 * len(trips)
    cost[0] = 3.0                                                  # the intra-op way slows down
    after = run(10)
    assert after[-1] == 1 and after.index(1) <= 3
    summary = chooser.summary()
    assert summary["item_workers"]["ms_per_item"] == pytest.approx(1200.0)
    assert summary["intra_op"]["calls"] + summary["item_workers"]["calls"] == 310


def test_fixed_batch_bundle_runs_its_batch_in_one_call(tiny, tmp_path, monkeypatch):
    """A bundle exported with a fixed batch takes exactly that batch a call: its max_batch is
    the batch whatever the cache budget (a default budget below it once cut the batch into
    calls the graph refused), and another max_batch is refused naming it."""
    fixed = nx.export(TINY, tmp_path / "fixed", formats=("onnx",), verify=False, batch=4)
    monkeypatch.setattr(runtime, "CACHE_BYTES_PER_THREAD", 1)
    rt = nx.load(fixed)
    assert rt.max_batch == 4
    x = audio(4)
    np.testing.assert_array_equal(rt(x), nx.load(tiny, max_batch=1)(x))
    with pytest.raises(ValueError, match="max_batch: this bundle was exported with a fixed batch of 4"):
        nx.load(fixed, max_batch=2)


def test_side_by_side_waits_for_every_task_and_raises_their_error():
    """ort_cpu.side_by_side: results in order, the first task on the calling thread; when a
    task fails, its error is raised only after every task has finished (no worker still
    writing into the caller's output)."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor
    from nnaudio_export.ort_cpu import side_by_side
    pool = ThreadPoolExecutor(2)
    caller = threading.get_ident()
    assert side_by_side(pool, [threading.get_ident, lambda: 2, lambda: 3]) == [caller, 2, 3]
    done = []

    def slow():
        time.sleep(0.2)
        done.append(True)

    def fail():
        raise RuntimeError("task failed")
    with pytest.raises(RuntimeError, match="task failed"):
        side_by_side(pool, [fail, slow])
    assert done == [True]
    with pytest.raises(RuntimeError, match="task failed"):
        side_by_side(pool, [lambda: 1, fail])
