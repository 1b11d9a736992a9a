"""Where a bundle runs: the CPU's threads and CUDA, the memory one call may use on each, the
providers an ONNX Runtime session gets, and float32 kept float32 on CUDA (TF32 off).
Used by :mod:`~nnaudio_export.runtime`, :mod:`~nnaudio_export.stream_runtime`,
:mod:`~nnaudio_export.parity` and the benchmark."""
import contextlib
import os
from typing import Any, List, Optional

import torch

from .checks import memory_limit

# Default memory budget of one call: batches whose estimated activations (the manifest's
# bytes_per_item) exceed it are split into chunks (ONNX Runtime took 9.4 GB for 10000 x 1 s
# of whisper_80 in one call).
CHUNK_BYTES = 2**30


def cuda_available() -> bool:
    return torch.cuda.is_available()


def cpu_threads(intra_op_num_threads: Optional[int] = None) -> int:
    """The intra-op threads a session uses: the given number, else the CPUs this process may
    run on (ONNX Runtime's default is one per physical core)."""
    if intra_op_num_threads:
        return int(intra_op_num_threads)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not Linux
        return os.cpu_count() or 1


def chunk_bytes(device: str) -> int:
    """The activations one call may hold by default, within ``memory_limit()``: 1 GiB
    (:data:`CHUNK_BYTES`) of host memory on the CPU; on CUDA a quarter of the GPU's free
    memory, at least 1 GiB (a host-sized chunk split a batch of 64 whisper_80 items into 54 +
    10, two calls where one does on an H200)."""
    if device == "cuda":
        free, _ = torch.cuda.mem_get_info()
        return min(max(CHUNK_BYTES, free // 4), memory_limit())
    return min(CHUNK_BYTES, memory_limit())


@contextlib.contextmanager
def float32_cuda():
    """Float32 as exported for the torch backends on CUDA: cuDNN's TF32 (on by default in
    torch) and cuBLAS's off for the call, the caller's settings restored after. ONNX Runtime
    gets the same from ``use_tf32=0``. TF32 rounds products to a 10-bit mantissa, ~5e-4
    relative: 50x the parity bound of a linear output. The flags are process-wide, so another
    thread's CUDA work during the call runs without TF32 too."""
    matmul = torch.backends.cuda.matmul.allow_tf32
    cudnn = torch.backends.cudnn
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        with cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark,
                         deterministic=cudnn.deterministic, allow_tf32=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul


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
