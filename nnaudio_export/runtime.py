"""Load a bundle and run it: ONNX Runtime, TorchScript, AOTInductor (.pt2) or eager.

A bundle is code (a ``.pt2`` is a shared library, TorchScript a program): loading runs what
is in it. Trust comes from where the bundle came from; pin it with ``expected_sha256`` (the
manifest's digest, printed by ``nnaudio-export build`` / ``inspect``): the manifest lists
every file's sha256, and the bytes that are hashed are the bytes that are loaded.
"""
import contextlib
import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from .devices import chunk_bytes, cpu_threads, cuda_available, float32_cuda, ort_providers
from .manifest import (FORMAT_TABLE, INPUT_NAME, MANIFEST, BundleError, bundle_path, check_files,
                       format_for_backend, read_bundle_file, read_checked, read_manifest,
                       rebuildable, source_kind, tensor_names)
from .ort_cpu import CpuBatches, ItemWorkers

# One backend per model format, plus 'eager' (the module rebuilt from the manifest's spec).
BACKENDS = tuple(f.backend for f in FORMAT_TABLE) + ("eager",)
# ONNX Runtime on the CPU runs a batch fastest a few items a call: one call's activations then
# stay in the caches between the graph's passes. 8 items, 2 threads, one call against one
# item a call (2026-12-05, 2-core EPYC, 32 MiB L3): whisper_80 (30 s) 25.3 -> 20.7 ms,
# istft_1024 25.8 -> 18.0, stft_2048 15.8 -> 11.2, mel_128 16.6 -> 13.0; short items gain
# as much from calls of a few MiB (whisper_80 at 1 s: 18.4 ms for 128 items in one call,
# 12.7 in calls of 32). The default chunk on the CPU is this much of the manifest's
# bytes_per_item per intra-op thread.
CACHE_BYTES_PER_THREAD = 6 * 2**20
# (Running a batch's items side by side on single-threaded sessions instead: ort_cpu.)

Tensorlike = Union[np.ndarray, torch.Tensor]


def _dense_strides(shape) -> List[int]:
    strides, acc = [], 1
    for d in reversed(list(shape)):
        strides.append(acc)
        acc *= int(d)
    return strides[::-1]


class Runtime:
    """A loaded bundle. ``rt(x)`` takes numpy or torch input of the manifest's input shape
    and dtype (analysis: audio ``(batch, num_samples)``, stereo ``(batch, 2, num_samples)``;
    synthesis: the spectrum, e.g. ``(batch, freq_bins, frames, 2)``) and returns the output
    (features, or audio ``(batch, num_samples)``) of the same kind (numpy in, numpy out;
    torch in, torch out on ``device``).

    - Length (audio input): with the manifest's ``length_policy`` 'pad_or_trim' other lengths
      are zero-padded / cut to ``num_samples`` (as the C++ example and serve_ort do); with
      'exact' they are refused. A spectrum input must have exactly the manifest's shape.
    - Batches larger than ``max_batch`` run in chunks (default: as many items as fit
      :func:`chunk_bytes` by the manifest's ``bytes_per_item``, at most the format's batch
      bound of 4096; for ONNX Runtime on the CPU at most :data:`CACHE_BYTES_PER_THREAD` per
      intra-op thread, at least one item: faster, see there). Chunks change no item's
      arithmetic: every graph we export computes each item on its own.
    - ``item_workers`` (ONNX Runtime on the CPU; default 1, off): with ``N >= 2`` a batch of
      2 or more items runs on ``N`` single-threaded sessions in parallel, each taking
      ``max_batch`` items a call (then sized for one thread), the calling thread running one
      of them; a single item still runs on the session with the intra-op threads. Steadier than
      intra-op threads when calls come back to back, slower after idle pauses (measured:
      :mod:`~nnaudio_export.ort_cpu`). With ``'auto'`` the runtime keeps both, ``N`` being
      its intra-op threads (off with one thread), and runs each batch of 2 or more items the
      way that was faster lately (:class:`~nnaudio_export.ort_cpu.FasterOfTwo`: which one is
      depends on where the host puts the vCPUs, and changes within seconds on cloud VMs);
      :meth:`batch_timings` shows its figures. The worker sessions are built at the first such call,
      with the same ``ort_config``. Every item is computed by the same
      graph either way; sessions with different thread counts may round differently in the
      last bit (ONNX Runtime's kernels split work by thread count), well within the parity
      bounds ``nx.verify`` checks.
    - ``check_finite`` (default on): float input with NaN or Inf is refused, naming the items
      (their output would silently be NaN); the check costs one pass over the input.
    - Loading checks every file's sha256 (and the manifest's against ``expected_sha256`` when
      given), loads the checked bytes, and runs one item of zeros: a model whose input or
      output does not match the manifest is refused at load, not inside ONNX Runtime later.
    """

    def __init__(self, bundle_dir: Union[str, Path], backend: str = "onnxruntime", device: str = "cpu",
                 verify_files: bool = True, intra_op_num_threads: Optional[int] = None,
                 ort_config: Optional[Dict[str, str]] = None, expected_sha256: Optional[str] = None,
                 max_batch: Optional[int] = None, check_finite: bool = True,
                 item_workers: Union[int, str] = 1):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        if device == "cuda" and not cuda_available():
            raise RuntimeError("device='cuda' asked for, but torch.cuda.is_available() is False")
        self.dir = bundle_path(bundle_dir)
        self.manifest = read_manifest(self.dir, expected_sha256)
        if "streaming" in self.manifest:
            raise BundleError(f"{self.dir} is a streaming bundle (chunk + state in, frames out): "
                              "run it with nx.stream(...)")
        self.backend, self.device = backend, device
        self.num_samples = int(self.manifest["num_samples"])
        self.sample_rate = float(self.manifest["sample_rate"])
        self.length_policy = self.manifest.get("length_policy", "exact")
        self.input_dtype = self.manifest["input"]["dtype"]
        self.input_name = self.manifest["input"].get("name", INPUT_NAME)
        self.input_kind = self.manifest["input"].get("kind", "audio")
        self.input_shape: Tuple[Any, ...] = tuple(self.manifest["input"]["shape"])
        self.output_shape: Tuple[Any, ...] = tuple(self.manifest["output"]["shape"])
        self.batch: Optional[int] = self.manifest.get("batch")
        self.check_finite = bool(check_finite)
        fmt = format_for_backend(backend)
        self.item_workers = self._check_item_workers(item_workers)
        self._worker_count = (cpu_threads(intra_op_num_threads) if self.item_workers == "auto"
                              else int(self.item_workers))
        bound = fmt.max_batch if fmt else None
        # Chunks are sized for the threads that run them: the intra-op session's (all but
        # with fixed N workers, where it only sees single items), or one worker's.
        self.max_batch = self._max_batch(max_batch, bound,
                                         1 if self.item_workers not in (1, "auto") else intra_op_num_threads)
        self._worker_batch = self._max_batch(max_batch, bound, 1)
        self._batches: Optional[CpuBatches] = None   # ONNX Runtime on the CPU: batches of 2+ items
        self._tdev = torch.device(device)
        if verify_files:   # the whole bundle: a bundle with any modified file is refused
            check_files(self.dir, self.manifest)
        if fmt is None:
            if not rebuildable(self.manifest):
                raise BundleError(f"{self.dir}: backend 'eager' rebuilds the module from the spec, "
                                  f"but this bundle holds a {source_kind(self.manifest)} (its weights "
                                  "are only in the model files); use another backend")
            from .builder import Frontend
            self._model = Frontend.from_spec(self.manifest["spec"]).eval().to(self._tdev)
        else:
            data = (read_checked(self.dir, self.manifest, fmt.file) if verify_files
                    else self._read_unchecked(fmt.file))
            self._load(fmt, data, intra_op_num_threads, ort_config)
        self._probe()

    def _read_unchecked(self, name: str) -> bytes:
        if name not in self.manifest["files"]:
            raise BundleError(f"{self.dir} has no {name} (exported formats: {sorted(self.manifest['files'])})")
        return read_bundle_file(self.dir, name)

    @property
    def _ort_on_cpu(self) -> bool:
        """ONNX Runtime on the CPU: chunks sized for the caches, run through IO binding."""
        return self.backend == "onnxruntime" and self.device == "cpu"

    def _check_item_workers(self, item_workers: Union[int, str]) -> Union[int, str]:
        """How many single-threaded sessions run a batch's items in parallel (1: none), or
        'auto' (as many as intra-op threads, used when faster)."""
        if item_workers != "auto" and (isinstance(item_workers, bool) or not isinstance(item_workers, int)
                                       or item_workers < 1):
            raise ValueError(f"item_workers must be an integer >= 1 or 'auto', got {item_workers!r}")
        if item_workers != 1 and not self._ort_on_cpu:
            raise ValueError(f"item_workers: only ONNX Runtime on the CPU runs items in parallel "
                             f"sessions (backend={self.backend!r}, device={self.device!r}); leave it at 1")
        if item_workers != 1 and self.batch is not None:
            raise ValueError(f"item_workers: this bundle was exported with a fixed batch of {self.batch}, "
                             "so every call takes exactly that many items; leave it at 1")
        return item_workers

    def _max_batch(self, max_batch: Optional[int], bound: Optional[int],
                   threads: Optional[int] = None) -> int:
        if self.batch is not None:   # a fixed-batch graph takes exactly its batch a call
            if max_batch is not None and max_batch != self.batch:
                raise ValueError(f"max_batch: this bundle was exported with a fixed batch of "
                                 f"{self.batch}; max_batch must be {self.batch} or unset, got {max_batch!r}")
            return int(self.batch)
        if max_batch is not None:
            if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
                raise ValueError(f"max_batch must be an integer >= 1, got {max_batch!r}")
            if bound and max_batch > bound:
                raise ValueError(f"max_batch: {max_batch} is above {bound}, the largest batch the "
                                 f"exported graph takes")
            return max_batch
        per_item = self.manifest.get("bytes_per_item")
        budget = chunk_bytes(self.device)
        if self._ort_on_cpu:
            budget = min(budget, CACHE_BYTES_PER_THREAD * cpu_threads(threads))
        fit = max(1, budget // int(per_item)) if per_item else 4096
        return int(min(fit, bound or fit))

    def _load(self, fmt, data: bytes, intra_op_num_threads: Optional[int],
              ort_config: Optional[Dict[str, str]]) -> None:
        """Load the model from the (checked) bytes ``data``."""
        if fmt.backend == "torchscript":
            self._model = torch.jit.load(io.BytesIO(data), map_location=self._tdev).eval()
        elif fmt.backend == "pt2":
            pt2_dev = self.manifest["files"][fmt.file].get("device", "cpu")
            if pt2_dev != self.device:
                raise BundleError(f"{fmt.file} was compiled for {pt2_dev}, not {self.device}; "
                                  f"re-export on a {self.device} machine")
            # The .pt2 checks shapes itself only with this set (read once, at first call).
            os.environ.setdefault("AOTI_RUNTIME_CHECK_INPUTS", "1")
            # AOTInductor loads from a path: a private copy of the checked bytes, so that the
            # library that runs is the one that was hashed.
            private = tempfile.mkdtemp(prefix="nnaudio_export_pt2_")
            try:
                path = os.path.join(private, fmt.file)
                with open(path, "wb") as f:
                    f.write(data)
                self._model = torch._inductor.aoti_load_package(path)
            finally:
                shutil.rmtree(private, ignore_errors=True)
        else:
            self._load_ort(fmt, data, intra_op_num_threads, ort_config)

    def _load_ort(self, fmt, data: bytes, intra_op_num_threads: Optional[int],
                  ort_config: Optional[Dict[str, str]]) -> None:
        import onnxruntime as ort
        if self.device == "cuda":
            # cuDNN frontend kernels ignore use_tf32=0; this must be set before CUDA starts.
            os.environ.setdefault("NVIDIA_TF32_OVERRIDE", "0")
            self._cuda_index = torch.cuda.current_device()
        opts = ort.SessionOptions()
        # On shared or oversubscribed hosts 1 thread and {"session.intra_op.allow_spinning": "0"}
        # were faster in our benchmark; ORT's defaults are kept unless asked.
        if intra_op_num_threads is not None:
            opts.intra_op_num_threads = int(intra_op_num_threads)
        config = dict(ort_config or {})
        if self.item_workers == "auto":
            # Its threads stop spinning when a call returns, or they hold up the workers'
            # next call (FasterOfTwo: a switch to the workers cost 2 slow batches).
            config.setdefault("session.force_spinning_stop", "1")
        for key, value in config.items():
            opts.add_session_config_entry(str(key), str(value))
        self.session = ort.InferenceSession(data, sess_options=opts, providers=ort_providers(self.device))
        used = self.session.get_providers()
        if self.device == "cuda" and "CUDAExecutionProvider" not in used:
            raise RuntimeError(f"ONNX Runtime fell back to {used} although CUDA was asked for")
        self.providers = used
        self._input_name, self._output_name = tensor_names(fmt, self.manifest)
        names = ([i.name for i in self.session.get_inputs()], [o.name for o in self.session.get_outputs()])
        if self._input_name not in names[0] or self._output_name not in names[1]:
            raise BundleError(f"{self.dir / fmt.file} does not match {MANIFEST}: its tensors are "
                              f"{names[0]} -> {names[1]}, the manifest says {self._input_name!r} -> "
                              f"{self._output_name!r}")
        if self._ort_on_cpu:
            names = (self._input_name, self._output_name)
            workers = (ItemWorkers(data, dict(ort_config or {}), self._worker_count, names)
                       if self._worker_count > 1 else None)
            self._batches = CpuBatches(self.session, names, self.output_shape[1:], self.max_batch,
                                       self._worker_batch, workers, choose=self.item_workers == "auto")

    def _probe(self) -> None:
        """One call with zeros of the manifest's input: its output must have the manifest's
        shape (a model swapped in from another bundle is refused here, with both shapes)."""
        n = self.batch or 1
        x = np.zeros((n,) + tuple(int(d) for d in self.input_shape[1:]), dtype=self.input_dtype)
        what = f"{self.backend} model of {self.dir}"
        try:
            y = self._run(torch.from_numpy(x).to(self._tdev) if self.device == "cuda" else x)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise BundleError(f"{what} does not take the manifest's input {list(x.shape)} "
                              f"{self.input_dtype}: {first}") from None
        want = (n,) + tuple(int(d) for d in self.output_shape[1:])
        if tuple(y.shape) != want:
            raise BundleError(f"{what} gives {self.manifest['output'].get('name', 'an output')} of shape "
                              f"{list(y.shape)} for input "
                              f"{list(x.shape)}; {MANIFEST} says {list(want)}")

    @property
    def expected_shape(self) -> str:
        dims = ["batch" if d == "batch" else str(d) for d in self.input_shape]
        return "(" + ", ".join(dims) + ")"

    def _prepare(self, x: Tensorlike) -> Tensorlike:
        """Check dtype and shape, apply the length policy (audio input), check finiteness."""
        is_torch = isinstance(x, torch.Tensor)
        name = self.input_name
        dtype_name = str(x.dtype).replace("torch.", "")
        shape = tuple(x.shape)
        if dtype_name != self.input_dtype:
            raise ValueError(f"{name}: expected dtype {self.input_dtype}, got {dtype_name}")
        # An audio input's length may be fixed by the length policy; a spectrum's may not.
        fixed = self.input_shape[1:-1] if self.input_kind == "audio" else self.input_shape[1:]
        rank_ok = len(shape) == len(self.input_shape) and all(d == s for d, s in zip(fixed, shape[1:]))
        if not rank_ok:
            raise ValueError(f"{name}: expected shape {self.expected_shape} {self.input_dtype}, got {shape}")
        if shape[0] < 1:
            raise ValueError(f"{name}: the batch must hold >= 1 item: expected shape {self.expected_shape}, "
                             f"got {shape}")
        if self.batch is not None and shape[0] != self.batch:
            raise ValueError(f"{name}: this bundle was exported with a fixed batch of {self.batch}; "
                             f"expected shape {self.expected_shape}, got {shape}")
        if self.input_kind == "audio" and shape[-1] != self.num_samples:
            if self.length_policy != "pad_or_trim":
                raise ValueError(f"{name}: expected shape {self.expected_shape} {self.input_dtype}, got "
                                 f"{shape} (the bundle's length_policy is 'exact')")
            x = _pad_or_trim(x, self.num_samples)
        if self.check_finite and self.input_dtype != "int16":
            _check_finite(x, is_torch, name)
        return x

    def __call__(self, x: Tensorlike) -> Tensorlike:
        if not isinstance(x, (torch.Tensor, np.ndarray)):
            raise TypeError(f"{self.input_name} must be a numpy array or torch tensor, got {type(x).__name__}")
        x = self._prepare(x)
        n = x.shape[0]
        if self._batches is not None and self._batches.takes(n):
            is_torch = isinstance(x, torch.Tensor)
            out = self._batches.run(np.ascontiguousarray(x.detach().cpu().numpy() if is_torch else x))
            return torch.from_numpy(out) if is_torch else out
        if n <= self.max_batch:
            return self._run(x)
        parts = [self._run(x[i:i + self.max_batch]) for i in range(0, n, self.max_batch)]
        if isinstance(parts[0], torch.Tensor):
            return torch.cat(parts)
        return np.concatenate(parts)

    def _run(self, audio: Tensorlike) -> Tensorlike:
        is_torch = isinstance(audio, torch.Tensor)
        if self.backend == "onnxruntime":
            if is_torch and audio.is_cuda and self.device == "cuda":
                return self._run_ort_iobinding(audio)
            arr = audio.detach().cpu().numpy() if is_torch else audio
            out = self.session.run([self._output_name], {self._input_name: np.ascontiguousarray(arr)})[0]
            return torch.from_numpy(out).to(self._tdev) if is_torch else out
        x = audio if is_torch else torch.from_numpy(np.ascontiguousarray(audio))
        x = x.to(self._tdev).contiguous()
        if self.backend == "pt2" and list(x.stride()) != _dense_strides(x.shape):
            # torch calls a (1, N) tensor with stride 0 on the size-1 axis contiguous, but
            # the .pt2 input check wants the canonical strides.
            x = torch.empty(x.shape, dtype=x.dtype, device=x.device).copy_(x)
        with torch.inference_mode(), (float32_cuda() if self.device == "cuda" else contextlib.nullcontext()):
            y = self._model(x)
        if isinstance(y, (list, tuple)):
            y = y[0]
        return y if is_torch else y.detach().cpu().numpy()

    def batch_timings(self) -> Optional[Dict[str, Dict[str, Any]]]:
        """With ``item_workers='auto'`` (and 2+ threads): per way ('intra_op', 'item_workers')
        the batches it ran and its estimate in ms per item (the fastest of its last 3
        counted batches); else None."""
        return self._batches.timings() if self._batches is not None else None

    def _run_ort_iobinding(self, x: torch.Tensor) -> torch.Tensor:
        """Bind CUDA torch tensors directly (no host round trip)."""
        if (x.device.index or 0) != self._cuda_index:
            raise ValueError(f"{self.input_name} is on {x.device}, but the ONNX Runtime session was created on "
                             f"cuda:{self._cuda_index}")
        x = x.contiguous()
        out_shape = [x.shape[0]] + [int(d) for d in self.output_shape[1:]]
        y = torch.empty(out_shape, dtype=torch.float32, device=x.device)
        binding = self.session.io_binding()
        elem = np.float32 if self.input_dtype == "float32" else np.int16
        binding.bind_input(self._input_name, "cuda", x.device.index or 0, elem, list(x.shape), x.data_ptr())
        binding.bind_output(self._output_name, "cuda", y.device.index or 0, np.float32, out_shape, y.data_ptr())
        # ORT runs on its own stream: wait for torch's producer kernels first (blocking, but
        # simple and safe); ORT synchronises its stream before run_with_iobinding returns.
        torch.cuda.current_stream(x.device).synchronize()
        self.session.run_with_iobinding(binding)
        return y

    def __repr__(self) -> str:
        return (f"Runtime({str(self.dir)!r}, backend={self.backend!r}, device={self.device!r}, "
                f"input={self.expected_shape}, max_batch={self.max_batch}, item_workers={self.item_workers!r})")


def _pad_or_trim(audio: Tensorlike, n: int) -> Tensorlike:
    """Zero-pad or cut the last axis to ``n`` samples (Whisper's ``pad_or_trim``)."""
    have = audio.shape[-1]
    if have > n:
        return audio[..., :n]
    if isinstance(audio, torch.Tensor):
        return F.pad(audio, [0, n - have])
    return np.pad(audio, [(0, 0)] * (audio.ndim - 1) + [(0, n - have)])


def _check_finite(x: Tensorlike, is_torch: bool, name: str) -> None:
    """Refuse NaN / Inf values, naming the batch items that hold them."""
    if is_torch:
        bad = (~torch.isfinite(x)).reshape(x.shape[0], -1).any(dim=1).nonzero().flatten().tolist()
    else:
        bad = np.flatnonzero(~np.isfinite(x).reshape(x.shape[0], -1).all(axis=1)).tolist()
    if bad:
        shown = ", ".join(str(i) for i in bad[:8]) + (", ..." if len(bad) > 8 else "")
        raise ValueError(f"{name}: batch item(s) {shown} hold NaN or Inf values (their output would "
                         "be NaN); clean the input or load with check_finite=False")


def load(bundle_dir: Union[str, Path], backend: str = "onnxruntime", device: str = "cpu",
         verify_files: bool = True, intra_op_num_threads: Optional[int] = None,
         ort_config: Optional[Dict[str, str]] = None, expected_sha256: Optional[str] = None,
         max_batch: Optional[int] = None, check_finite: bool = True,
         item_workers: Union[int, str] = 1) -> Runtime:
    """Load a bundle for inference; see :class:`Runtime`. Every file's sha256 is checked
    against the manifest first (a mismatch raises :class:`BundleError`); ``expected_sha256``
    pins the manifest itself (its digest from ``nnaudio-export build`` / ``inspect``), and
    with it the whole bundle. Loading runs the bundle's code (a ``.pt2`` is a shared
    library): load only bundles you trust. ``max_batch`` bounds the items per call (larger
    batches are chunked); ``check_finite=False`` skips the NaN / Inf check of the input.
    ``intra_op_num_threads`` / ``ort_config`` (session config entries) tune ONNX Runtime;
    ``item_workers=N`` runs a CPU batch's items on ``N`` single-threaded ONNX Runtime sessions
    in parallel (default 1: one session with the intra-op threads); ``'auto'`` runs each batch
    the way (intra-op threads or that many workers) that was faster lately."""
    return Runtime(bundle_dir, backend, device, verify_files, intra_op_num_threads, ort_config,
                   expected_sha256, max_batch, check_finite, item_workers)
