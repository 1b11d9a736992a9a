"""Write a streaming bundle: the :class:`~nnaudio_export.streaming.StreamingFrontend` of a
frontend as TorchScript, one-file ONNX and ``.pt2``, plus ``manifest.json`` with a
``streaming`` section (the tensors, the state's size and layout, how a stream starts and
ends, the frame axis and the algorithmic latency).

The manifest's ``input`` / ``output`` are the chunk (``audio_chunk (batch, N)``) and the
frames (``frames``, the frame axis ``max_frames`` long), so the checks every reader makes
still hold; its ``streaming`` section lists all four inputs and three outputs."""
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from .builder import Frontend
from .bundle import (ONNX_IR_VERSION, ONNX_OPSET, Progress, name_batch_axis, quiet_onnx_exporter,
                     build_manifest)
from .manifest import MANIFEST, model_format, write_json_atomic
from .onnx_rewrites import rewrite
from .streaming import StreamingFrontend

INPUTS = ("audio_chunk", "chunk_length", "end", "state")
OUTPUTS = ("frames", "num_frames", "next_state")


def example_args(sf: StreamingFrontend, fe: Frontend, batch: int) -> Tuple[torch.Tensor, ...]:
    """A first call of ``batch`` streams: the first chunk of the example signals."""
    audio = torch.from_numpy(fe.example_input(("speech", "tones", "noise", "chirp")[:1] * batch))
    chunk = audio[..., : sf.chunk_samples]
    if chunk.shape[-1] < sf.chunk_samples:
        chunk = torch.nn.functional.pad(chunk, [0, sf.chunk_samples - chunk.shape[-1]])
    full = torch.full((batch, 1), float(sf.chunk_samples))
    return chunk.contiguous(), full, torch.zeros(batch, 1), sf.zero_state(batch)


def _dims(batch: Optional[int], fmt: str) -> Optional[Tuple[Dict[int, Any], ...]]:
    if batch:
        return None
    dim = torch.export.Dim("batch", min=1, max=model_format(fmt).max_batch)
    return tuple({0: dim} for _ in INPUTS)


def _write_torchscript(sf: StreamingFrontend, args, path: Path, batch) -> Dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(sf).save(str(path))
    return {"method": "script"}


def _write_onnx(sf: StreamingFrontend, args, path: Path, batch: Optional[int]) -> Dict[str, Any]:
    import onnx

    with warnings.catch_warnings(), quiet_onnx_exporter():
        warnings.simplefilter("ignore")
        torch.onnx.export(sf, args, str(path), dynamo=True, external_data=False,
                          opset_version=ONNX_OPSET, input_names=list(INPUTS),
                          output_names=list(OUTPUTS), dynamic_shapes=_dims(batch, "onnx"),
                          verbose=False)
    model = onnx.load(str(path))
    model.ir_version = min(model.ir_version, ONNX_IR_VERSION)
    name_batch_axis(model, batch)
    rewrites = rewrite(model)
    onnx.checker.check_model(model)
    ops = sorted({n.op_type for n in model.graph.node})
    if "STFT" in ops or "DFT" in ops:
        raise RuntimeError("ONNX graph contains STFT/DFT; expected only conv/matmul/elementwise ops")
    onnx.save(model, str(path))
    for extra in path.parent.glob(path.name + ".data"):
        extra.unlink()
    return {"exporter": "dynamo", "opset": ONNX_OPSET, "ir_version": model.ir_version, "ops": ops,
            "rewrites": rewrites}


def _write_pt2(sf: StreamingFrontend, args, path: Path, batch: Optional[int]) -> Dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ep = torch.export.export(sf, args, dynamic_shapes=_dims(batch, "pt2"), strict=False)
        with torch._inductor.config.patch({"aot_inductor.check_lowerbound": False}):
            torch._inductor.aoti_compile_and_package(ep, package_path=str(path))
    return {"device": "cpu", "cpu_isa_bound": True,
            "runtime_env": {"AOTI_RUNTIME_CHECK_INPUTS": "1"},
            "note": "compiled for this machine's CPU ISA; the runtime checks shapes before calling"}


WRITERS = {"torchscript": _write_torchscript, "onnx": _write_onnx, "pt2": _write_pt2}


def _tensors(sf: StreamingFrontend, fe: Frontend, frames_shape: List[int],
             batch: Optional[int]) -> Dict[str, List[Dict[str, Any]]]:
    b = batch if batch else "batch"
    chunk = [b, sf.chunk_samples] if fe.input_channels == 1 else [b, fe.input_channels, sf.chunk_samples]
    return {"inputs": [{"name": "audio_chunk", "dtype": fe.input_dtype, "shape": chunk},
                       {"name": "chunk_length", "dtype": "float32", "shape": [b, 1]},
                       {"name": "end", "dtype": "float32", "shape": [b, 1]},
                       {"name": "state", "dtype": "float32", "shape": [b, sf.state_size]}],
            "outputs": [{"name": "frames", "dtype": "float32", "shape": [b] + frames_shape},
                        {"name": "num_frames", "dtype": "int64", "shape": [b, 1]},
                        {"name": "next_state", "dtype": "float32", "shape": [b, sf.state_size]}]}


def streaming_section(sf: StreamingFrontend, fe: Frontend, batch: Optional[int]) -> Dict[str, Any]:
    """The manifest's ``streaming`` entry."""
    with torch.no_grad():
        frames = sf(*example_args(sf, fe, 1))[0]
    frames_shape = [int(d) for d in frames.shape[1:]]
    g = sf.grid
    return {
        "chunk_samples": sf.chunk_samples,
        **_tensors(sf, fe, frames_shape, batch),
        "max_frames": sf.max_frames,
        "frame_axis": sf.frame_axis,
        "state": {"name": "state", "size": sf.state_size, "dtype": "float32",
                  "layout": sf.state_layout(),
                  "meaning": "samples: the last samples of the stream (after the input "
                             "stage's conversion); samples_seen: samples so far, saturating at "
                             f"{int(sf.counter_cap)}; frame_offset: where the next frame starts, "
                             "relative to its value at a stream's start"},
        "start": "state all zeros (a new stream); the left padding is built from the first samples",
        "end": "set end=1 on the last call, with chunk_length = the samples in it (0..chunk_samples); "
               "its frames include those needing the right padding, and next_state is zeros",
        "frames": "the first num_frames entries of the frame axis are the frames this call completed "
                  "(the rest are zeros); concatenated over a stream they equal the offline output",
        "frame_grid": {"hop": g.hop, "taps": g.taps, "left": g.left, "pad": g.pad},
        "lookahead_samples": sf.lookahead,
        "latency_samples": sf.lookahead + sf.chunk_samples - 1,
        "latency_note": "frame f (time f * hop) is returned once sample f * hop + lookahead_samples - 1 "
                        "has arrived (a centred reflect pad: frame 0 also waits for sample n_fft // 2), "
                        "at the end of the chunk holding it: at most chunk_samples - 1 later",
        "offline_num_samples": fe.num_samples,
    }


def write_streaming_bundle(fe: Frontend, directory: Path, formats: Sequence[str],
                           batch: Optional[int], chunk_samples: int,
                           progress: Optional[Progress] = None) -> Dict[str, Any]:
    """Write ``formats`` of ``fe``'s streaming graph for ``chunk_samples`` and
    ``manifest.json`` into the empty ``directory``; return the manifest. Raises
    ``ValueError`` naming the first stage that cannot stream."""
    say = progress or (lambda msg: None)
    sf = StreamingFrontend(fe, chunk_samples).eval()
    args = example_args(sf, fe, batch or 2)
    info: Dict[str, Dict[str, Any]] = {}
    for fmt in formats:
        f = model_format(fmt)
        say(f"exporting {f.file} ({fmt}, streaming, {chunk_samples}-sample chunks)")
        info[fmt] = WRITERS[fmt](sf, args, directory / f.file, batch)
    manifest = build_manifest(fe, formats, batch, info, directory)
    section = streaming_section(sf, fe, batch)
    manifest["input"].update(section["inputs"][0])
    manifest["input"]["torchscript_name"] = "INPUT__0"
    manifest["output"].update(section["outputs"][0])
    manifest["output"]["torchscript_name"] = "OUTPUT__0"
    manifest["bytes_per_item"] = int(fe.bytes_per_item * min(1.0, sf.window / max(1, fe.num_samples))) + 1
    manifest["streaming"] = section
    write_json_atomic(directory / MANIFEST, manifest)
    return manifest
