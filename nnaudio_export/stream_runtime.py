"""Run a streaming bundle: :func:`stream` returns a :class:`StreamSession` whose
``accept(samples)`` buffers any number of samples into whole chunks, runs the graph on each
and returns the frames completed so far; ``finish()`` runs the last (partial) chunk with
``end`` set and returns the rest. Concatenated along the frame axis, the returned frames
are the offline bundle's output for the same samples.

Loading follows :mod:`nnaudio_export.runtime`: the manifest may be pinned
(``expected_sha256``), every file's sha256 is checked and the checked bytes are loaded
(a ``.pt2`` through a private copy)."""
import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple, Union

import numpy as np
import torch

from .builder import Frontend
from .manifest import BundleError, bundle_path, check_files, format_for_backend, read_checked, read_manifest
from .devices import ort_providers
from .runtime import BACKENDS
from .stream_bundle import streaming_section
from .streaming import StreamingFrontend

Call = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], Tuple[np.ndarray, np.ndarray, np.ndarray]]
NAMES = ("audio_chunk", "chunk_length", "end", "state")


def _torch_call(model: Any, device: torch.device) -> Call:
    def call(chunk, length, end, state):
        args = [torch.from_numpy(a).to(device) for a in (chunk, length, end, state)]
        with torch.no_grad():
            out = model(*args)
        return tuple(o.detach().cpu().numpy() for o in out)
    return call


def _load_pt2(data: bytes, name: str) -> Any:
    os.environ.setdefault("AOTI_RUNTIME_CHECK_INPUTS", "1")
    private = tempfile.mkdtemp(prefix="nnaudio_export_pt2_")
    try:
        path = os.path.join(private, name)
        with open(path, "wb") as f:
            f.write(data)
        return torch._inductor.aoti_load_package(path)
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _load(directory: Path, manifest: Dict[str, Any], backend: str, device: str,
          intra_op_num_threads: Optional[int]) -> Call:
    fmt = format_for_backend(backend)
    tdev = torch.device(device)
    if fmt is None:     # eager: the graph rebuilt from the validated spec
        fe = Frontend.from_spec(manifest["spec"]).eval()
        sf = StreamingFrontend(fe, int(manifest["streaming"]["chunk_samples"])).eval().to(tdev)
        return _torch_call(sf, tdev)
    data = read_checked(directory, manifest, fmt.file)
    if backend == "torchscript":
        return _torch_call(torch.jit.load(io.BytesIO(data), map_location=tdev).eval(), tdev)
    if backend == "pt2":
        return _torch_call(_load_pt2(data, fmt.file), tdev)
    import onnxruntime as ort
    opts = ort.SessionOptions()
    if intra_op_num_threads is not None:
        opts.intra_op_num_threads = int(intra_op_num_threads)
    sess = ort.InferenceSession(data, sess_options=opts, providers=ort_providers(device))

    def call(chunk, length, end, state):
        return tuple(sess.run(None, dict(zip(NAMES, (chunk, length, end, state)))))
    return call


class StreamSession:
    """``batch`` streams fed in lockstep (see :func:`stream`)."""

    def __init__(self, call: Call, manifest: Dict[str, Any], batch: int):
        st = manifest["streaming"]
        self.manifest, self.batch, self._call = manifest, int(batch), call
        self.chunk_samples = int(st["chunk_samples"])
        self.frame_axis = int(st["frame_axis"])
        self.state_size = int(st["state"]["size"])
        self.input_dtype = manifest["input"]["dtype"]
        self.channel_shape = tuple(st["inputs"][0]["shape"][1:-1])
        self.sample_rate = float(manifest["sample_rate"])
        self.reset()

    def reset(self) -> None:
        """Start new streams (state zeros)."""
        self._state = np.zeros((self.batch, self.state_size), np.float32)
        self._buffer = np.zeros((self.batch,) + self.channel_shape + (0,), self.input_dtype)

    def _as_batch(self, samples: Any) -> np.ndarray:
        x = samples.detach().cpu().numpy() if isinstance(samples, torch.Tensor) else np.asarray(samples)
        if str(x.dtype) != self.input_dtype:
            raise ValueError(f"samples: expected dtype {self.input_dtype}, got {x.dtype}")
        if x.ndim == len(self.channel_shape) + 1 and self.batch == 1:
            x = x[None]
        if x.shape[:-1] != (self.batch,) + self.channel_shape:
            want = ("batch={}".format(self.batch),) + tuple(map(str, self.channel_shape)) + ("samples",)
            raise ValueError(f"samples: expected shape ({', '.join(want)}), got {tuple(x.shape)}")
        return x

    def _run(self, chunk: np.ndarray, length: int, end: bool) -> np.ndarray:
        b = self.batch
        frames, count, self._state = self._call(
            np.ascontiguousarray(chunk), np.full((b, 1), float(length), np.float32),
            np.full((b, 1), 1.0 if end else 0.0, np.float32), self._state)
        n = int(count[0, 0])
        if not np.all(count == n):
            raise RuntimeError(f"streams in lockstep completed different frame counts {count.ravel()}")
        return np.take(frames, np.arange(n), axis=self.frame_axis)

    def _join(self, parts, single: bool) -> np.ndarray:
        out = np.concatenate(parts, axis=self.frame_axis) if parts else np.zeros(0, np.float32)
        return out[0] if single and out.ndim > 1 else out

    def accept(self, samples: Any) -> np.ndarray:
        """Buffer ``samples`` ((L,) for one stream, (batch, L), or with a channel axis) and
        run every whole chunk; returns the frames completed (offline layout, frame axis
        possibly of length 0; no batch axis for a 1-D input)."""
        single = np.ndim(samples) == len(self.channel_shape) + 1 and self.batch == 1
        self._buffer = np.concatenate([self._buffer, self._as_batch(samples)], axis=-1)
        parts = []
        n = self.chunk_samples
        while self._buffer.shape[-1] >= n:
            parts.append(self._run(self._buffer[..., :n], n, False))
            self._buffer = self._buffer[..., n:]
        if not parts:
            shape = [self.batch] + list(self.manifest["streaming"]["outputs"][0]["shape"][1:])
            shape[self.frame_axis] = 0
            parts.append(np.zeros(shape, np.float32))
        return self._join(parts, single)

    def finish(self, single: bool = True) -> np.ndarray:
        """Run the buffered rest with ``end`` set (right padding); return the last frames and
        start new streams."""
        rest = self._buffer.shape[-1]
        chunk = np.zeros(self._buffer.shape[:-1] + (self.chunk_samples,), self.input_dtype)
        chunk[..., :rest] = self._buffer
        out = self._run(chunk, rest, True)
        self.reset()
        return self._join([out], single and self.batch == 1)


def stream(bundle_dir: Union[str, Path], backend: str = "onnxruntime", device: str = "cpu",
           batch: int = 1, expected_sha256: Optional[str] = None,
           intra_op_num_threads: Optional[int] = None) -> StreamSession:
    """A :class:`StreamSession` on a streaming bundle (``nx.export(..., streaming=True)``):
    ``batch`` independent streams fed in lockstep, run by ``backend`` ('onnxruntime',
    'torchscript', 'pt2' or 'eager') on ``device``."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
    directory = bundle_path(bundle_dir)
    manifest = read_manifest(directory, expected_sha256)
    if not isinstance(manifest.get("streaming"), dict):
        raise BundleError(f"{directory} is not a streaming bundle: export it with streaming=True "
                          "(CLI: build --streaming --chunk-ms MS), or load it with nx.load")
    check_files(directory, manifest)
    return StreamSession(_load(directory, manifest, backend, device, intra_op_num_threads),
                         manifest, batch)


def eager_session(frontend: Frontend, chunk_samples: int, batch: int = 1) -> StreamSession:
    """A :class:`StreamSession` on ``frontend``'s streaming graph in eager PyTorch, without
    writing a bundle (what the 'eager' backend of a streaming bundle runs)."""
    sf = StreamingFrontend(frontend, chunk_samples).eval()
    manifest = {"streaming": streaming_section(sf, frontend, None), "spec": frontend.spec,
                "input": {"dtype": frontend.input_dtype}, "sample_rate": frontend.sample_rate}
    return StreamSession(_torch_call(sf, torch.device("cpu")), manifest, batch)


def stream_through(session: StreamSession, audio: np.ndarray, sizes) -> np.ndarray:
    """``audio`` (batch, L) fed to ``session`` in pieces of ``sizes`` (cycled), then
    finished: the concatenated frames (batch axis kept)."""
    parts, pos, i = [], 0, 0
    while pos < audio.shape[-1]:
        step = int(sizes[i % len(sizes)])
        parts.append(session.accept(audio[..., pos: pos + step]) if session.batch > 1
                     else session.accept(audio[..., pos: pos + step])[None])
        pos, i = pos + step, i + 1
    last = session.finish(single=False)
    parts.append(last if last.ndim == parts[0].ndim else last[None])
    return np.concatenate(parts, axis=session.frame_axis)


def check_stream(bundle_dir: Union[str, Path], backends, manifest: Dict[str, Any]) -> Dict[str, Any]:
    """Each backend's streamed output of the example signals (uneven pieces) against the eager
    offline frontend: max abs error (log outputs: within 80 dB of each item's peak), relative
    to the peak; refuses (RuntimeError) a frame count that differs or an error above 1e-4."""
    fe = Frontend.from_spec(manifest["spec"]).eval()
    audio = fe.example_input(("speech", "tones", "noise"))
    with torch.no_grad():
        want = fe(torch.from_numpy(audio)).numpy()
    n = int(manifest["streaming"]["chunk_samples"])
    sizes = [1, max(1, n // 3), 2 * n + 7, 5 * n]
    out: Dict[str, Any] = {}
    for backend in backends:
        got = stream_through(stream(bundle_dir, backend=backend, batch=audio.shape[0]), audio, sizes)
        if got.shape != want.shape:
            raise RuntimeError(f"streaming {backend}: frames {got.shape}, offline {want.shape}")
        err = relative_error(got, want, fe.output_kind, fe.db_per_unit)
        if not err <= 1e-4:
            raise RuntimeError(f"streaming {backend}: {err:.2e} x peak from the offline frontend")
        out[backend] = {"max_error_x_peak": err}
    return out


def relative_error(got: np.ndarray, want: np.ndarray, kind: str, db_per_unit: Optional[float]) -> float:
    """max |got - want| / max |want| per item; for log outputs only where ``want`` is within
    80 dB of the item's peak (when dB per unit is known)."""
    worst = 0.0
    for g, w in zip(got.astype(np.float64), want.astype(np.float64)):
        mask = np.ones(w.shape, bool)
        if kind == "log" and db_per_unit:
            mask = w >= w.max() - 80.0 / db_per_unit
        peak = max(np.abs(w).max(), 1e-30)
        worst = max(worst, float(np.abs(g - w)[mask].max(initial=0.0) / peak))
    return worst
