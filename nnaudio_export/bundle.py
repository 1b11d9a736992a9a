"""Export a frontend as a bundle: TorchScript, one-file ONNX and AOTInductor ``.pt2``,
plus ``manifest.json`` (spec, shapes, sha256, versions, parity measured at export)."""
import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Union

import numpy as np
import torch

from . import presets
from .builder import Frontend
from .spec import with_precision

BUNDLE_FORMAT = "nnaudio_export.bundle"
BUNDLE_VERSION = 1
FORMATS = ("torchscript", "onnx", "pt2")
FILES = {"torchscript": "model.pt", "onnx": "model.onnx", "pt2": "model.pt2"}
INPUT_NAME, OUTPUT_NAME = "audio", "features"
# Opset 18 and IR version 8 load in every onnxruntime(-gpu) >= 1.14; onnx 1.23 would
# write IR 14 by default, which onnxruntime-gpu 1.31 refuses (max IR 13).
ONNX_OPSET = 18
ONNX_IR_VERSION = 8

Progress = Callable[[str], None]


def sha256_file(path: Union[str, Path]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve_frontend(source: Union[Frontend, Dict[str, Any], str, Path],
                     num_samples: Optional[int] = None, seconds: Optional[float] = None,
                     precision: Optional[str] = None) -> Frontend:
    """A Frontend from a Frontend, a spec dict, a preset name or a spec JSON path;
    ``num_samples`` / ``seconds`` override the duration, ``precision`` the Fourier
    transform's precision ('single' | 'extended')."""
    if isinstance(source, Frontend):
        if num_samples is None and seconds is None and precision is None:
            return source
        spec = source.spec
    elif isinstance(source, dict):
        spec = dict(source)
    elif isinstance(source, (str, Path)) and str(source).endswith(".json"):
        p = Path(source)
        if not p.is_file():
            raise ValueError(f"spec file {str(p)!r} does not exist")
        spec = json.loads(p.read_text())
    elif isinstance(source, str):
        return presets.load(source, num_samples=num_samples, seconds=seconds, precision=precision)
    else:
        raise ValueError(f"cannot export {type(source).__name__}: give a Frontend, a spec dict, "
                         "a preset name or a spec .json path")
    if num_samples is not None and seconds is not None:
        raise ValueError("give num_samples or seconds, not both")
    if seconds is not None:
        num_samples = int(round(seconds * float(spec["sample_rate"])))
    if num_samples is not None:
        spec["num_samples"] = int(num_samples)
    if precision is not None:
        spec = with_precision(spec, precision)
    return Frontend.from_spec(spec)


def example_input(fe: Frontend, batch: int) -> torch.Tensor:
    from .signals import batch as signal_batch
    names = ("speech", "tones", "noise", "chirp")
    x = signal_batch(fe.num_samples, fe.sample_rate, fe.input_dtype, fe.input_channels,
                     names=tuple(names[i % 4] for i in range(batch)))
    return torch.from_numpy(x)


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


def _write_onnx(fe: Frontend, path: Path, batch: Optional[int]) -> Dict[str, Any]:
    import onnx

    x = example_input(fe, batch or 2)
    errors = []
    exporter = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            dyn = None if batch else {"audio": {0: torch.export.Dim("batch", min=1, max=4096)}}
            torch.onnx.export(fe, (x,), str(path), dynamo=True, external_data=False,
                              opset_version=ONNX_OPSET, input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], dynamic_shapes=dyn, verbose=False)
            exporter = "dynamo"
        except Exception as exc:
            errors.append(f"dynamo: {type(exc).__name__}: {str(exc)[:300]}")
            dyn_axes = None if batch else {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
            torch.onnx.export(fe, (x,), str(path), dynamo=False, opset_version=17,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes=dyn_axes)
            exporter = "legacy"
    model = onnx.load(str(path))
    # One self-contained file: refuse external data rather than ship a broken bundle.
    for init in model.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            raise RuntimeError("ONNX export wrote external data; expected one self-contained file")
    model.ir_version = min(model.ir_version, ONNX_IR_VERSION)
    _name_batch_axis(model, batch)
    onnx.checker.check_model(model)
    ops = sorted({n.op_type for n in model.graph.node})
    for bad in ("STFT", "DFT"):
        if bad in ops:
            raise RuntimeError(f"ONNX graph contains {bad}; expected only conv/matmul/elementwise ops")
    onnx.save(model, str(path))
    for extra in path.parent.glob(path.name + ".data"):
        extra.unlink()
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=None)
    info = {"exporter": exporter, "opset": opset, "ir_version": model.ir_version, "ops": ops}
    if errors:
        info["note"] = "; ".join(errors)
    return info


def _name_batch_axis(model, batch: Optional[int]) -> None:
    """Give the batch axis of input and output the symbolic name 'batch' (or fix it)."""
    for vi in list(model.graph.input) + list(model.graph.output):
        dim0 = vi.type.tensor_type.shape.dim[0]
        if batch:
            dim0.dim_value = int(batch)
        else:
            dim0.dim_param = "batch"


def _write_pt2(fe: Frontend, path: Path, batch: Optional[int]) -> Dict[str, Any]:
    x = example_input(fe, batch or 2)
    dyn = None if batch else {"audio": {0: torch.export.Dim("batch", min=1, max=4096)}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ep = torch.export.export(fe, (x,), dynamic_shapes=dyn, strict=False)
        # Without this the compiled input check refuses batch 1 (export specialises the
        # dynamic batch to >= 2 internally although we ask for >= 1).
        with torch._inductor.config.patch({"aot_inductor.check_lowerbound": False}):
            torch._inductor.aoti_compile_and_package(ep, package_path=str(path))
    return {"device": "cpu", "cpu_isa_bound": True,
            "runtime_env": {"AOTI_RUNTIME_CHECK_INPUTS": "1"},
            "note": "compiled for this machine's CPU ISA; the runtime checks shapes before calling"}


def versions() -> Dict[str, str]:
    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for mod in ("scipy", "onnx", "onnxruntime", "onnxscript"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:
            out[mod] = "not installed"
    from . import __version__
    out["nnaudio_export"] = __version__
    out["platform"] = platform.platform()
    return out


def build_manifest(fe: Frontend, formats: Sequence[str], batch: Optional[int],
                   file_info: Dict[str, Dict[str, Any]], directory: Path) -> Dict[str, Any]:
    spec = fe.spec
    files = {}
    for fmt in formats:
        name = FILES[fmt]
        p = directory / name
        files[name] = {"format": fmt, "sha256": sha256_file(p), "size": p.stat().st_size, **file_info[fmt]}
    return {
        "format": BUNDLE_FORMAT, "format_version": BUNDLE_VERSION,
        "name": spec.get("name", "frontend"),
        "reference": spec.get("reference"),
        "sample_rate": fe.sample_rate, "num_samples": fe.num_samples,
        "length_policy": spec.get("length_policy", "exact"),
        "batch": batch,
        "input": {"name": INPUT_NAME, "dtype": fe.input_dtype,
                  "shape": [batch if batch else "batch", *fe.input_shape],
                  "torchscript_name": "INPUT__0"},
        "output": {"name": OUTPUT_NAME, "dtype": "float32",
                   "shape": [batch if batch else "batch", *fe.output_shape],
                   "kind": fe.output_kind, "db_per_unit": fe.db_per_unit,
                   "torchscript_name": "OUTPUT__0"},
        "files": files,
        "spec": spec,
        "versions": versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def write_json_atomic(path: Path, data: Dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def export(source: Union[Frontend, Dict[str, Any], str, Path], out_dir: Union[str, Path],
           formats: Sequence[str] = FORMATS, batch: Optional[int] = None, overwrite: bool = False,
           num_samples: Optional[int] = None, seconds: Optional[float] = None,
           verify: bool = True, progress: Optional[Progress] = None,
           precision: Optional[str] = None) -> Path:
    """Write a bundle directory ``out_dir`` and return its path.

    ``source``: a :class:`Frontend`, a spec dict, a preset name or a spec ``.json`` path.
    ``formats``: any of 'torchscript' (``model.pt``, ``torch.jit.script``), 'onnx'
    (``model.onnx``, one file, opset 18 / IR 8, input ``audio`` output ``features``),
    'pt2' (``model.pt2``, AOTInductor for this CPU). ``batch=None`` keeps the batch axis
    dynamic; an int fixes it. ``precision`` ('single' | 'extended') overrides the Fourier
    transform's precision (presets choose their own). The bundle is written to a temporary directory beside
    ``out_dir``, verified on CPU (parity figures go into the manifest) and renamed into
    place; an existing ``out_dir`` is refused unless ``overwrite=True``.
    """
    say = progress or (lambda msg: None)
    formats = tuple(dict.fromkeys(formats))
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ValueError(f"formats: unknown {bad}; choose from {FORMATS}")
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch <= 0):
        raise ValueError(f"batch must be None (dynamic) or a positive integer, got {batch!r}")
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass overwrite=True (CLI: --force) to replace it")
    fe = resolve_frontend(source, num_samples, seconds, precision).eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        info: Dict[str, Dict[str, Any]] = {}
        writers = {"torchscript": lambda p: _write_torchscript(fe, p),
                   "onnx": lambda p: _write_onnx(fe, p, batch),
                   "pt2": lambda p: _write_pt2(fe, p, batch)}
        for fmt in formats:
            say(f"exporting {FILES[fmt]} ({fmt})")
            info[fmt] = writers[fmt](tmp / FILES[fmt])
        manifest = build_manifest(fe, formats, batch, info, tmp)
        write_json_atomic(tmp / "manifest.json", manifest)
        if verify:
            from .parity import verify as run_verify
            say("verifying parity on cpu")
            report = run_verify(tmp, devices=("cpu",), progress=progress)
            manifest["parity"] = report.to_dict()
            ref = _reference_error(fe)
            if ref is not None:
                manifest["reference_error"] = ref
            write_json_atomic(tmp / "manifest.json", manifest)
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; a bundle is meant to be shared
        install_dir(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"wrote {out}")
    return out


def _reference_error(fe: Frontend) -> Optional[Dict[str, Any]]:
    """Error against the preset's real reference package, when one is registered."""
    try:
        from .references import measure_reference_error
    except ImportError:
        return None
    return measure_reference_error(fe)


def install_dir(tmp: Path, final: Path, overwrite: bool) -> None:
    """Rename the finished directory ``tmp`` onto ``final``. An existing ``final`` is
    refused unless ``overwrite``; then it is moved aside, replaced, and put back if the
    replacement fails."""
    if final.exists():
        if not overwrite:
            raise FileExistsError(f"{final} already exists; pass overwrite=True (CLI: --force) to replace it")
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old.", dir=final.parent))
        os.replace(final, old / final.name)
        try:
            os.replace(tmp, final)
        except BaseException:
            os.replace(old / final.name, final)
            raise
        finally:
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
