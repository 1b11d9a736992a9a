"""The benchmark's view of the Fourier stages: how each kernel bank is applied (factorised
``N1 x N2`` or a direct conv), its multiply-adds per frame now and with the direct conv
("before": what every 'single' build ran before the factorised DFT), and the direct conv
itself exported to ONNX and timed in ONNX Runtime as the "before" row."""
import copy
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from ..api import export
from ..layers import FactorisedDFT, FrameConv
from ..layers.frame_conv import fourier_stages  # noqa: F401  (re-exported for the driver)
from ..runtime import load
from .measure import Candidate, _err, count_flops, note_items_per_call


def with_direct_conv(fe: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``fe`` whose factorised DFTs are the plain conv again (same kernels)."""
    fe = copy.deepcopy(fe)
    for layer in fe.modules():
        if isinstance(getattr(layer, "conv", None), FactorisedDFT):
            layer.conv = FrameConv()
    return fe


def direct_conv_candidate(fe: torch.nn.Module, x: torch.Tensor, xn: np.ndarray, device: str,
                          out: Path, threads: Optional[int] = None) -> List[Candidate]:
    """The 'before' row: ``fe`` with its factorised DFTs replaced by the direct conv, as an
    ONNX model timed in ONNX Runtime (none when ``fe`` has no factorised DFT)."""
    if not any(isinstance(m, FactorisedDFT) for m in fe.modules()):
        return []
    row: Dict[str, Any] = {"impl": "ours: onnxruntime, precision single, direct conv (before)",
                           "group": "ours", "backend": "onnxruntime", "device": device,
                           "identical_settings": True, "flop_model": "conv/matmul counted (flop_counter)"}
    try:
        direct = with_direct_conv(fe).eval().cpu()   # exported from the CPU, whatever fe's device
        bundle = export(direct, out, formats=("onnx",), batch=None, verify=False, overwrite=True)
        rt = load(bundle, backend="onnxruntime", device=device, intra_op_num_threads=threads)
        flops = count_flops(direct.to(x.device), x)
        row.update(bundle=str(bundle), gflop=flops / 1e9 if flops else None)
        note_items_per_call(row, rt.max_batch, len(xn))
        inp = xn if device == "cpu" else x
        return [(row, (lambda rt=rt, inp=inp: rt(inp)), None)]
    except Exception as exc:
        return [({**row, "status": "error", "error": _err(exc)}, None, None)]
