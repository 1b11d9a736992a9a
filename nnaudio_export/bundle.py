"""Write a bundle's files: TorchScript, one-file ONNX and AOTInductor ``.pt2`` of a
:class:`~nnaudio_export.builder.Frontend`, plus ``manifest.json`` (spec, shapes, sha256,
versions). The format table, reading, checking and installing are
:mod:`nnaudio_export.manifest`'s; verifying the result and measuring the error against a
preset's reference are the caller's (:func:`nnaudio_export.export`)."""
import contextlib
import copy
import datetime as _dt
import io
import logging
import platform
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np
import torch

from ._version import __version__
from .builder import Frontend
from .layers.common import filterbank_stages
from .layers.frame_conv import fourier_stages
from .manifest import (BUNDLE_FORMAT, BUNDLE_VERSION, GOLDEN, MANIFEST, TORCHSCRIPT_INPUT_NAME,
                       TORCHSCRIPT_OUTPUT_NAME, model_format, sha256_file, write_json_atomic)
from .onnx_rewrites import rewrite

# Opset 18 and IR version 8 load in every onnxruntime(-gpu) >= 1.14; onnx 1.23 would
# write IR 14 by default, which onnxruntime-gpu 1.31 refuses (max IR 13).
ONNX_OPSET = 18
ONNX_IR_VERSION = 8

Progress = Callable[[str], None]


def example_input(fe: Frontend, batch: int) -> torch.Tensor:
    """A deterministic input of the frontend's shape and dtype (speech-like, tones, noise,
    chirp, repeated; spectrum inputs: their STFT)."""
    names = ("speech", "tones", "noise", "chirp")
    return torch.from_numpy(fe.example_input(tuple(names[i % 4] for i in range(batch))))


# golden.npz: three items (speech, tones, noise) while they stay small, else one; the
# reference outputs in float64 while they stay small, else float32 (its rounding, 6e-8 of a
# value, is far below every threshold). Whisper's 30 s: one item, ~2.9 MB.
GOLDEN_SIGNALS = ("speech", "tones", "noise")
GOLDEN_SMALL_BYTES = 1 << 20


def golden_input(fe: Any) -> np.ndarray:
    """golden.npz's inputs for ``fe``: :data:`GOLDEN_SIGNALS`, or only the first when three
    items with float64 outputs would pass :data:`GOLDEN_SMALL_BYTES`."""
    one = fe.example_input(GOLDEN_SIGNALS[:1])
    per_item = one.nbytes + 8 * int(np.prod(fe.output_shape))
    if len(GOLDEN_SIGNALS) * per_item > GOLDEN_SMALL_BYTES:
        return one
    return fe.example_input(GOLDEN_SIGNALS)


def write_golden(path: Path, inputs: np.ndarray, outputs: np.ndarray,
                 check: Dict[str, float]) -> Dict[str, Any]:
    """Write golden.npz: ``input`` (the bundle's input dtype), ``output`` (the float64
    reference; float32 when large) and the scalars of ``check`` (float64: ``threshold``,
    ``relative``, ``db_per_unit``, ``window_db``; and where the bound is scaled per value,
    ``scale``, float32, the output's shape: an error counts divided by it), as an
    uncompressed zip of .npy files with fixed timestamps (the same export gives the same
    bytes). Returns its manifest entry."""
    if outputs.nbytes > GOLDEN_SMALL_BYTES:
        outputs = outputs.astype(np.float32)
    arrays = {"input": inputs, "output": outputs}
    arrays.update({k: np.float64(v) for k, v in check.items() if k != "scale"})
    if "scale" in check:
        arrays["scale"] = np.asarray(check["scale"], dtype=np.float32)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, array in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.array(array, order="C"), allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0)), buf.getvalue())
    return {"file": GOLDEN, "sha256": sha256_file(path), "size": path.stat().st_size,
            "items": int(inputs.shape[0]), "output_dtype": str(outputs.dtype)}


def _batch_dim(fmt: str) -> Any:
    """``dynamic_shapes`` for the frontend's one input: a dynamic batch axis."""
    return ({0: torch.export.Dim("batch", min=1, max=model_format(fmt).max_batch)},)


def _write_torchscript(fe: Frontend, path: Path) -> Dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            module = torch.jit.script(fe)
            method, note = "script", None
        except Exception as exc:  # recorded, never silent
            module = torch.jit.trace(fe, example_input(fe, 2), check_trace=False)
            method, note = "trace", f"torch.jit.script failed ({type(exc).__name__}: {exc}); traced"
        module.save(str(path))
    info: Dict[str, Any] = {"method": method}
    if note:
        info["note"] = note
    return info


@contextlib.contextmanager
def quiet_onnx_exporter():
    """The dynamo exporter logs one warning per torchvision op when torchvision is absent
    (irrelevant here: no torchvision op is used); keep its registry quiet while exporting."""
    log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _write_onnx(fe: Frontend, path: Path, batch: Optional[int]) -> Dict[str, Any]:
    import onnx

    x = example_input(fe, batch or 2)
    errors = []
    exporter = None
    with warnings.catch_warnings(), quiet_onnx_exporter():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(fe, (x,), str(path), dynamo=True, external_data=False,
                              opset_version=ONNX_OPSET, input_names=[fe.input_name],
                              output_names=[fe.output_name],
                              dynamic_shapes=None if batch else _batch_dim("onnx"), verbose=False)
            exporter = "dynamo"
        except Exception as exc:
            errors.append(f"dynamo: {type(exc).__name__}: {str(exc)[:300]}")
            dyn_axes = None if batch else {fe.input_name: {0: "batch"}, fe.output_name: {0: "batch"}}
            torch.onnx.export(fe, (x,), str(path), dynamo=False, opset_version=17,
                              input_names=[fe.input_name], output_names=[fe.output_name],
                              dynamic_axes=dyn_axes)
            exporter = "legacy"
    model = onnx.load(str(path))
    # One self-contained file: refuse external data rather than ship a broken bundle.
    for init in model.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            raise RuntimeError("ONNX export wrote external data; expected one self-contained file")
    model.ir_version = min(model.ir_version, ONNX_IR_VERSION)
    name_batch_axis(model, batch)
    rewrites = rewrite(model)
    onnx.checker.check_model(model)
    ops = sorted({n.op_type for n in model.graph.node})
    for bad in ("STFT", "DFT"):
        if bad in ops:
            raise RuntimeError(f"ONNX graph contains {bad}; expected only conv/matmul/elementwise ops")
    onnx.save(model, str(path))
    for extra in path.parent.glob(path.name + ".data"):
        extra.unlink()
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=None)
    info = {"exporter": exporter, "opset": opset, "ir_version": model.ir_version, "ops": ops,
            "rewrites": rewrites}
    if errors:
        info["note"] = "; ".join(errors)
    return info


def name_batch_axis(model, batch: Optional[int]) -> None:
    """Give the batch axis of input and output the symbolic name 'batch' (or fix it)."""
    for vi in list(model.graph.input) + list(model.graph.output):
        dim0 = vi.type.tensor_type.shape.dim[0]
        if batch:
            dim0.dim_value = int(batch)
        else:
            dim0.dim_param = "batch"


def _write_pt2(fe: Frontend, path: Path, batch: Optional[int], device: str = "cpu") -> Dict[str, Any]:
    """AOTInductor-compile ``fe`` for ``device``: a CPU .pt2 is bound to this machine's ISA, a
    CUDA one to this GPU's architecture (it is compiled on, and for, the GPU it runs on)."""
    tdev = torch.device(device)
    model = fe if device == "cpu" else copy.deepcopy(fe).to(tdev)
    x = example_input(fe, batch or 2).to(tdev)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ep = torch.export.export(model, (x,), dynamic_shapes=None if batch else _batch_dim("pt2"),
                                 strict=False)
        # Without this the compiled input check refuses batch 1 (export specialises the
        # dynamic batch to >= 2 internally although we ask for >= 1).
        with torch._inductor.config.patch({"aot_inductor.check_lowerbound": False}):
            torch._inductor.aoti_compile_and_package(ep, package_path=str(path))
    info: Dict[str, Any] = {"device": device, "runtime_env": {"AOTI_RUNTIME_CHECK_INPUTS": "1"}}
    if device == "cpu":
        return {**info, "cpu_isa_bound": True,
                "note": "compiled for this machine's CPU ISA; the runtime checks shapes before calling"}
    major, minor = torch.cuda.get_device_capability(tdev)
    return {**info, "cuda_arch": f"sm_{major}{minor}", "cuda_device": torch.cuda.get_device_name(tdev),
            "torch_cuda": torch.version.cuda,
            "note": (f"compiled for CUDA sm_{major}{minor} with torch {torch.__version__}; runs on that "
                     "architecture only. Its convolutions follow the calling process's "
                     "torch.backends.cudnn.allow_tf32 (True by default; nx.load turns it off "
                     "for the call): elsewhere set it False (C++: "
                     "at::globalContext().setAllowTF32CuDNN(false)) or NVIDIA_TF32_OVERRIDE=0 "
                     "for float32 parity")}


def versions() -> Dict[str, str]:
    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for mod in ("scipy", "onnx", "onnxruntime", "onnxscript"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:
            out[mod] = "not installed"
    out["nnaudio_export"] = __version__
    out["platform"] = platform.platform()
    return out


def build_manifest(fe: Frontend, formats: Sequence[str], batch: Optional[int],
                   file_info: Dict[str, Dict[str, Any]], directory: Path,
                   extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The manifest; ``extra`` (``source``, ``golden``) goes in after ``files``."""
    spec = fe.spec
    files = {}
    for fmt in formats:
        name = model_format(fmt).file
        p = directory / name
        files[name] = {"format": fmt, "sha256": sha256_file(p), "size": p.stat().st_size, **file_info[fmt]}
    return {
        "format": BUNDLE_FORMAT, "format_version": BUNDLE_VERSION,
        "name": spec.get("name", getattr(fe, "name", "frontend")),
        "reference": spec.get("reference"),
        "sample_rate": fe.sample_rate, "num_samples": fe.num_samples,
        "length_policy": spec.get("length_policy", "exact"),
        "batch": batch,
        # Estimated activation memory of one batch item (float32): nx.load splits batches so
        # that a call stays within its memory budget (max_batch).
        "bytes_per_item": fe.bytes_per_item,
        "input": {"name": fe.input_name, "dtype": fe.input_dtype,
                  "shape": [batch if batch else "batch", *fe.input_shape],
                  "torchscript_name": TORCHSCRIPT_INPUT_NAME, **_input_extras(fe)},
        "output": {"name": fe.output_name, "dtype": "float32",
                   "shape": [batch if batch else "batch", *fe.output_shape],
                   "kind": fe.output_kind, "db_per_unit": fe.db_per_unit,
                   "torchscript_name": TORCHSCRIPT_OUTPUT_NAME},
        "files": files,
        **(extra or {}),
        "spec": spec,
        # How each Fourier stage is applied (factorised N1 x N2 or direct conv), chosen at build time.
        "fourier_stages": fourier_stages(fe),
        # How each filterbank matrix is applied (row bands, or dense), chosen at build time.
        "filterbank_stages": filterbank_stages(fe),
        "versions": versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _input_extras(fe: Frontend) -> Dict[str, Any]:
    """A spectrum input's kind and layout (an analysis bundle's input entry is unchanged)."""
    if fe.input_kind == "audio":
        return {}
    return {"kind": fe.input_kind, "layout": fe.spec["stages"][0]["layout"]}


# fe, path, batch, the .pt2's device -> the file's manifest entry
WRITERS = {"torchscript": lambda fe, path, batch, device: _write_torchscript(fe, path),
           "onnx": lambda fe, path, batch, device: _write_onnx(fe, path, batch), "pt2": _write_pt2}


def write_bundle(fe: Frontend, directory: Path, formats: Sequence[str], batch: Optional[int],
                 progress: Optional[Progress] = None,
                 extra: Optional[Dict[str, Any]] = None, pt2_device: str = "cpu") -> Dict[str, Any]:
    """Write ``formats`` of ``fe`` and ``manifest.json`` into the existing empty
    ``directory``; return the manifest. ``batch=None`` keeps the batch axis dynamic
    (1..4096 for ONNX and .pt2), an int fixes it. ``extra``: manifest entries written by
    the caller (``source``, ``golden``: see :func:`nnaudio_export.export`). ``pt2_device``:
    what the .pt2 is compiled for ('cpu' or 'cuda')."""
    say = progress or (lambda msg: None)
    info: Dict[str, Dict[str, Any]] = {}
    for fmt in formats:
        f = model_format(fmt)
        say(f"exporting {f.file} ({fmt})")
        info[fmt] = WRITERS[fmt](fe, directory / f.file, batch, pt2_device)
    manifest = build_manifest(fe, formats, batch, info, directory, extra)
    write_json_atomic(directory / MANIFEST, manifest)
    return manifest
