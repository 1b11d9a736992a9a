"""ONNX Runtime serving: one Runtime shared by threads, CUDA IO binding (only where CUDA
exists), and the examples/serve_ort.py batch loop."""
import importlib.util
import random
import subprocess
import sys
import threading
import wave
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

import nnaudio_export as nx

warnings.filterwarnings("ignore")
ort = pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[1]
N_CALLS, N_THREADS = 200, 8


def _cuda_ort() -> bool:
    return torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers()


CUDA_REASON = ("needs a CUDA device for torch AND onnxruntime-gpu's CUDAExecutionProvider "
               f"(torch.cuda.is_available()={torch.cuda.is_available()}, "
               f"ORT providers={ort.get_available_providers()})")


@pytest.fixture(scope="module")
def bundle(mel_bundle) -> Path:
    return mel_bundle  # the shared mel_128 bundle (conftest)


def _inputs(n_samples: int, count: int) -> list:
    rng = np.random.default_rng(1234)
    t = np.arange(n_samples, dtype=np.float64) / 22050.0
    out = []
    for i in range(count):  # every input distinct: a tone at its own frequency plus noise
        x = 0.3 * np.sin(2 * np.pi * (100.0 + 37.0 * i) * t) + 0.05 * rng.standard_normal(n_samples)
        out.append(x.astype(np.float32))
    return out


def test_one_session_shared_by_threads(bundle):
    rt = nx.load(bundle, backend="onnxruntime", device="cpu")
    xs = _inputs(rt.num_samples, N_CALLS)
    expected = [rt(x[None]) for x in xs]  # single-threaded reference, one call per input
    assert len({e.tobytes() for e in expected}) == N_CALLS, "inputs must give distinct outputs"

    order = list(range(N_CALLS))
    random.Random(0).shuffle(order)
    barrier = threading.Barrier(N_THREADS)
    seen_threads = set()

    def work(chunk):
        barrier.wait()  # start together to maximise overlap
        seen_threads.add(threading.get_ident())
        return [(i, rt(xs[i][None])) for i in chunk]

    chunks = [order[k::N_THREADS] for k in range(N_THREADS)]
    with ThreadPoolExecutor(N_THREADS) as pool:
        results = [r for part in pool.map(work, chunks) for r in part]
    assert len(seen_threads) == N_THREADS
    assert sorted(i for i, _ in results) == list(range(N_CALLS))
    bad = [i for i, y in results if not (y.dtype == expected[i].dtype and y.shape == expected[i].shape
                                         and np.array_equal(y, expected[i]))]
    assert not bad, f"{len(bad)}/{N_CALLS} threaded results differ from the single-threaded ones (e.g. {bad[:5]})"


def test_shared_session_torch_inputs(bundle):
    """torch CPU tensors through the same session from several threads: same bits as numpy."""
    rt = nx.load(bundle, backend="onnxruntime", device="cpu")
    xs = _inputs(rt.num_samples, 16)
    expected = [rt(x[None]) for x in xs]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda x: rt(torch.from_numpy(x)[None]), xs))
    for y, e in zip(got, expected):
        assert isinstance(y, torch.Tensor) and np.array_equal(y.numpy(), e)


@pytest.mark.skipif(not _cuda_ort(), reason=CUDA_REASON)
def test_cuda_iobinding(bundle):
    rt = nx.load(bundle, backend="onnxruntime", device="cuda")
    assert "CUDAExecutionProvider" in rt.providers
    cpu = nx.load(bundle, backend="onnxruntime", device="cpu")
    xs = np.stack(_inputs(rt.num_samples, 5))
    want = cpu(xs)
    peak = float(np.abs(want).max())
    x_gpu = torch.from_numpy(xs).cuda()
    y = rt(x_gpu)  # CUDA tensor in -> IO binding, CUDA tensor out
    assert y.is_cuda and y.dtype == torch.float32 and tuple(y.shape) == want.shape
    y_np = y.cpu().numpy()
    # same session through host copies: the same kernels
    y_host = rt(xs)
    assert np.abs(y_np - y_host).max() <= 1e-6 * peak
    # against ORT CPU (TF32 is off in ort_providers)
    assert np.abs(y_np - want).max() <= 1e-4 * peak
    # a non-contiguous view and a batch of one
    xt = torch.from_numpy(np.ascontiguousarray(xs.T)).cuda().T
    assert not xt.is_contiguous()
    assert np.abs(rt(xt).cpu().numpy() - y_np).max() <= 1e-6 * peak
    assert np.abs(rt(x_gpu[2:3]).cpu().numpy()[0] - y_np[2]).max() <= 1e-6 * peak
    # threads sharing the CUDA session
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda i: rt(x_gpu[i:i + 1]).cpu().numpy()[0], range(5)))
    for i, o in enumerate(outs):
        assert np.abs(o - y_np[i]).max() <= 1e-6 * peak


# --- examples/serve_ort.py -------------------------------------------------------------------

def _load_serve():
    spec = importlib.util.spec_from_file_location("serve_ort", ROOT / "examples" / "serve_ort.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _write_pcm16(path: Path, x: np.ndarray, sr: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(np.round(np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())


def _write_f32(path: Path, x: np.ndarray, sr: int) -> None:
    data = np.asarray(x, "<f4").tobytes()
    fmt = np.array([3, 1], "<u2").tobytes() + np.array([sr, sr * 4], "<u4").tobytes() + np.array([4, 32], "<u2").tobytes()
    body = b"WAVE" + b"fmt " + np.uint32(16).tobytes() + fmt + b"data" + np.uint32(len(data)).tobytes() + data
    path.write_bytes(b"RIFF" + np.uint32(len(body)).tobytes() + body)


def test_serve_ort_three_files(bundle, tmp_path):
    serve = _load_serve()
    rt = nx.load(bundle)
    sr, n = int(rt.sample_rate), rt.num_samples
    xs = _inputs(n, 3)
    wav_dir, out_dir = tmp_path / "wav", tmp_path / "out"
    wav_dir.mkdir()
    _write_pcm16(wav_dir / "a.wav", xs[0], sr)
    _write_f32(wav_dir / "b.wav", xs[1], sr)
    _write_pcm16(wav_dir / "c.wav", xs[2], sr)
    # what each file decodes to, run one at a time
    direct = {"a": rt((np.round(np.clip(xs[0], -1, 1) * 32767).astype(np.int16) / 32768.0).astype(np.float32)[None])[0],
              "b": rt(xs[1][None])[0],
              "c": rt((np.round(np.clip(xs[2], -1, 1) * 32767).astype(np.int16) / 32768.0).astype(np.float32)[None])[0]}
    # batch 2: one full batch and one partial one
    stats = serve.serve(bundle, wav_dir, out_dir, batch=2, progress=False)
    assert stats["done"] == ["a.wav", "b.wav", "c.wav"] and not stats["failed"]
    assert sorted(p.name for p in out_dir.iterdir()) == ["a.npy", "b.npy", "c.npy"]
    for stem, want in direct.items():
        got = np.load(out_dir / f"{stem}.npy")
        assert got.dtype == np.float32 and got.shape == want.shape
        assert np.abs(got - want).max() <= 1e-6 * np.abs(want).max(), stem

    # the script itself (its clips on 2 single-threaded sessions side by side): a bad file is
    # reported, the good ones are still written, exit 1
    _write_pcm16(wav_dir / "d_wrong_sr.wav", xs[0], 16000)
    _write_pcm16(wav_dir / "e_short.wav", xs[0][:1000], sr)
    out2 = tmp_path / "out2"
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "serve_ort.py"), str(bundle), str(wav_dir),
                        str(out2), "--batch", "8", "--item-workers", "2"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 1, r.stderr
    assert "d_wrong_sr.wav" in r.stderr and "expected 22050, got 16000" in r.stderr
    assert "e_short.wav" in r.stderr and f"expected {n} samples" in r.stderr
    assert sorted(p.name for p in out2.iterdir()) == ["a.npy", "b.npy", "c.npy"]
    for stem, want in direct.items():
        assert np.abs(np.load(out2 / f"{stem}.npy") - want).max() <= 1e-6 * np.abs(want).max()
    # item_workers='auto' (each batch the faster way lately): the same features
    stats = serve.serve(bundle, wav_dir, tmp_path / "out3", batch=2, progress=False, item_workers="auto")
    assert stats["done"] == ["a.wav", "b.wav", "c.wav"]
    for stem, want in direct.items():
        assert np.abs(np.load(tmp_path / "out3" / f"{stem}.npy") - want).max() <= 1e-6 * np.abs(want).max()
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "serve_ort.py"), str(bundle), str(wav_dir),
                        str(out2), "--item-workers", "fast"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "--item-workers: expected an integer >= 1 or 'auto', got 'fast'" in r.stderr


def test_serve_ort_pad_or_trim(tmp_path):
    serve = _load_serve()
    b = nx.export("whisper_80", tmp_path / "wh", seconds=0.5, formats=("onnx",), verify=False)
    rt = nx.load(b)
    n, sr = rt.num_samples, int(rt.sample_rate)
    x = _inputs(n + 3000, 1)[0]
    wav_dir = tmp_path / "wav"
    wav_dir.mkdir()
    _write_f32(wav_dir / "long.wav", x, sr)
    _write_f32(wav_dir / "short.wav", x[:n - 2000], sr)
    stats = serve.serve(b, wav_dir, tmp_path / "out", batch=4, progress=False)
    assert not stats["failed"]
    short = np.zeros(n, np.float32)
    short[:n - 2000] = x[:n - 2000]
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "long.npy"), rt(x[None, :n])[0])
    got = np.load(tmp_path / "out" / "short.npy")
    want = rt(short[None])[0]
    assert np.abs(got - want).max() <= 1e-6 * np.abs(want).max()
