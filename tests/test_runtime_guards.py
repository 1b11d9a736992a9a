"""The runtime's guards: large batches run in chunks (the manifest's bytes_per_item sets the
default), NaN / Inf input is refused naming the items, ``length_policy: pad_or_trim`` is
honoured by ``nx.load`` as by the C++ example and serve_ort, and bad batches say what is
expected. Bundles are exported once per module (ONNX and TorchScript only: fast)."""
import numpy as np
import pytest
import torch

import nnaudio_export as nx
from nnaudio_export import runtime
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
    assert nx.load(tiny, backend="torchscript").max_batch == runtime.chunk_bytes("cpu") // per_item
    for threads in (None, 1, 3):
        rt = nx.load(tiny, intra_op_num_threads=threads)
        budget = runtime.CACHE_BYTES_PER_THREAD * runtime.cpu_threads(threads)
        assert rt.max_batch == min(MAX_EXPORTED_BATCH, budget // per_item)
    assert runtime.cpu_threads(3) == 3 and runtime.cpu_threads() >= 1
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
    from nnaudio_export.runtime import float32_cuda
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
    from nnaudio_export.runtime import CHUNK_BYTES, chunk_bytes
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
    assert not rt._item_workers._sessions                # one item: no workers built
    x = audio(7, seed=3)
    y = rt(x)
    assert len(rt._item_workers._sessions) == 2
    np.testing.assert_array_equal(y, one_thread(x))
    yt = rt(torch.from_numpy(x))
    assert isinstance(yt, torch.Tensor) and torch.equal(yt, torch.from_numpy(y))
    small = nx.load(tiny, item_workers=2, max_batch=2)   # 4 calls of <= 2 items, dealt in turn
    np.testing.assert_array_equal(small(x), y)


def test_item_workers_errors_name_the_parameter(tiny, tmp_path):
    with pytest.raises(ValueError, match="item_workers must be an integer >= 1"):
        nx.load(tiny, item_workers=0)
    with pytest.raises(ValueError, match="item_workers: only ONNX Runtime on the CPU"):
        nx.load(tiny, backend="torchscript", item_workers=2)
    fixed = nx.export(TINY, tmp_path / "fixed", formats=("onnx",), verify=False, batch=4)
    with pytest.raises(ValueError, match="item_workers: this bundle was exported with a fixed batch of 4"):
        nx.load(fixed, item_workers=2)


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
