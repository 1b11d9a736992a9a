"""Load a bundle and run it: ONNX Runtime, TorchScript, AOTInductor (.pt2) or eager."""
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch

from .manifest import (FORMAT_TABLE, INPUT_NAME, BundleError, check_files, format_for_backend,
                       read_manifest, tensor_names)

# One backend per model format, plus 'eager' (the module rebuilt from the manifest's spec).
BACKENDS = tuple(f.backend for f in FORMAT_TABLE) + ("eager",)


def _dense_strides(shape) -> List[int]:
    strides, acc = [], 1
    for d in reversed(list(shape)):
        strides.append(acc)
        acc *= int(d)
    return strides[::-1]


def cuda_available() -> bool:
    return torch.cuda.is_available()


def ort_providers(device: str) -> List[Any]:
    """Providers for an ORT session; CUDA only when it is really usable, with TF32 off."""
    import onnxruntime as ort
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise RuntimeError("device='cuda' asked for ONNX Runtime on CUDA, but this onnxruntime has no "
                           "CUDAExecutionProvider (install onnxruntime-gpu, not onnxruntime)")
    if not cuda_available():
        raise RuntimeError("device='cuda' asked for, but no CUDA device is available")
    dev = torch.cuda.current_device()
    return [("CUDAExecutionProvider", {"device_id": dev, "use_tf32": 0,
                                       "cudnn_conv_algo_search": "HEURISTIC"}),
            "CPUExecutionProvider"]


class Runtime:
    """A loaded bundle. ``rt(x)`` takes numpy or torch input of the manifest's input shape
    and dtype (analysis: audio ``(batch, num_samples)``, stereo ``(batch, 2, num_samples)``;
    synthesis: the spectrum, e.g. ``(batch, freq_bins, frames, 2)``) and returns the output
    (features, or audio ``(batch, num_samples)``) of the same kind (numpy in, numpy out;
    torch in, torch out on ``device``)."""

    def __init__(self, bundle_dir: Union[str, Path], backend: str = "onnxruntime", device: str = "cpu",
                 verify_files: bool = True, intra_op_num_threads: Optional[int] = None,
                 ort_config: Optional[Dict[str, str]] = None):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        if device == "cuda" and not cuda_available():
            raise RuntimeError("device='cuda' asked for, but torch.cuda.is_available() is False")
        self.dir = Path(bundle_dir)
        self.manifest = read_manifest(self.dir)
        self.backend, self.device = backend, device
        self.num_samples = int(self.manifest["num_samples"])
        self.sample_rate = float(self.manifest["sample_rate"])
        self.input_dtype = self.manifest["input"]["dtype"]
        self.input_name = self.manifest["input"].get("name", INPUT_NAME)
        self.input_shape: Tuple[Any, ...] = tuple(self.manifest["input"]["shape"])
        self.output_shape: Tuple[Any, ...] = tuple(self.manifest["output"]["shape"])
        self.batch: Optional[int] = self.manifest.get("batch")
        fmt = format_for_backend(backend)
        fname = fmt.file if fmt is not None else None
        if fname is not None and fname not in self.manifest["files"]:
            raise BundleError(f"{self.dir} has no {fname} (exported formats: {sorted(self.manifest['files'])})")
        if verify_files:
            check_files(self.dir, self.manifest)
        self._tdev = torch.device(device)
        if backend == "eager":
            from .builder import Frontend
            self._model = Frontend.from_spec(self.manifest["spec"]).eval().to(self._tdev)
        elif backend == "torchscript":
            self._model = torch.jit.load(str(self.dir / fname), map_location=self._tdev).eval()
        elif backend == "pt2":
            pt2_dev = self.manifest["files"][fname].get("device", "cpu")
            if pt2_dev != device:
                raise BundleError(f"{fname} was compiled for {pt2_dev}, not {device}; re-export on a {device} machine")
            # The .pt2 checks shapes itself only with this set (read once, at first call).
            os.environ.setdefault("AOTI_RUNTIME_CHECK_INPUTS", "1")
            self._model = torch._inductor.aoti_load_package(str(self.dir / fname))
        else:
            import onnxruntime as ort
            if device == "cuda":
                # cuDNN frontend kernels ignore use_tf32=0; this must be set before CUDA starts.
                os.environ.setdefault("NVIDIA_TF32_OVERRIDE", "0")
                self._cuda_index = torch.cuda.current_device()
            opts = ort.SessionOptions()
            # On shared or oversubscribed hosts 1 thread and {"session.intra_op.allow_spinning": "0"}
            # were faster in our benchmark; ORT's defaults are kept unless asked.
            if intra_op_num_threads is not None:
                opts.intra_op_num_threads = int(intra_op_num_threads)
            for key, value in (ort_config or {}).items():
                opts.add_session_config_entry(str(key), str(value))
            self.session = ort.InferenceSession(str(self.dir / fname), sess_options=opts,
                                                providers=ort_providers(device))
            used = self.session.get_providers()
            if device == "cuda" and "CUDAExecutionProvider" not in used:
                raise RuntimeError(f"ONNX Runtime fell back to {used} although CUDA was asked for")
            self.providers = used
            self._input_name, self._output_name = tensor_names(fmt, self.manifest)

    @property
    def expected_shape(self) -> str:
        dims = ["batch" if d == "batch" else str(d) for d in self.input_shape]
        return "(" + ", ".join(dims) + ")"

    def _check(self, shape: Tuple[int, ...], dtype_name: str) -> None:
        ok = len(shape) == len(self.input_shape) and all(
            d == "batch" and s >= 1 or d == s for d, s in zip(self.input_shape, shape))
        if not ok:
            raise ValueError(f"{self.input_name}: expected shape {self.expected_shape} {self.input_dtype}, "
                             f"got {tuple(shape)}")
        if dtype_name != self.input_dtype:
            raise ValueError(f"{self.input_name}: expected dtype {self.input_dtype}, got {dtype_name}")

    def __call__(self, audio: Union[np.ndarray, torch.Tensor]) -> Union[np.ndarray, torch.Tensor]:
        is_torch = isinstance(audio, torch.Tensor)
        if not is_torch and not isinstance(audio, np.ndarray):
            raise TypeError(f"{self.input_name} must be a numpy array or torch tensor, got {type(audio).__name__}")
        dtype_name = str(audio.dtype).replace("torch.", "")
        self._check(tuple(audio.shape), dtype_name)
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
        with torch.inference_mode():
            y = self._model(x)
        if isinstance(y, (list, tuple)):
            y = y[0]
        return y if is_torch else y.detach().cpu().numpy()

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
                f"input={self.expected_shape})")


def load(bundle_dir: Union[str, Path], backend: str = "onnxruntime", device: str = "cpu",
         verify_files: bool = True, intra_op_num_threads: Optional[int] = None,
         ort_config: Optional[Dict[str, str]] = None) -> Runtime:
    """Load a bundle for inference; see :class:`Runtime`. Every file's sha256 is checked
    against the manifest first (a mismatch raises :class:`BundleError`).
    ``intra_op_num_threads`` / ``ort_config`` (session config entries) tune ONNX Runtime."""
    return Runtime(bundle_dir, backend, device, verify_files, intra_op_num_threads, ort_config)
