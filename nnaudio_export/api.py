"""The public entry points that combine the layers below: a frontend from whatever the user
has (:func:`resolve_frontend`), and :func:`export` = write the bundle, verify it, measure the
error against the preset's reference package, install it."""
import json
import os
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Union

import torch
from torch import nn

from . import presets
from .builder import Frontend, ModuleFrontend, state_sha256
from .bundle import write_bundle, write_golden
from .checks import is_int, require_memory
from .install import (check_replaceable, install_dir, remove_leftovers, staging_dir, target_lock,
                      target_path)
from .manifest import (FORMATS, GOLDEN, MANIFEST, bundle_backends, foreign_entries, model_format,
                       write_json_atomic)
from .parity import golden_data
from .parity import verify as verify_bundle
from .references import measure_reference_error
from .spec import with_overrides
from .stream_bundle import write_streaming_bundle
from .streaming import StreamingFrontend
from .stream_runtime import check_stream

Source = Union[Frontend, nn.Module, Dict[str, Any], str, Path]


def resolve_frontend(source: Source, num_samples: Optional[int] = None,
                     seconds: Optional[float] = None, precision: Optional[str] = None,
                     num_frames: Optional[int] = None, sample_rate: Optional[float] = None,
                     output_kind: str = "linear", target: Optional[str] = None
                     ) -> Union[Frontend, ModuleFrontend]:
    """A Frontend from a Frontend, a spec dict, a preset name or a spec JSON path;
    ``num_samples`` / ``seconds`` override the duration (a synthesis spec's: ``num_frames``),
    ``precision`` the transforms' precision ('single' | 'extended'), ``target`` the device
    the graph is laid out for ('cpu' | 'cuda'; a module's layers take theirs when built). Any other
    ``nn.Module`` (one of our layers, a model containing them) becomes a
    :class:`ModuleFrontend`, which needs ``sample_rate`` and ``num_samples`` (or
    ``seconds``); ``output_kind`` chooses its parity metric."""
    if target is not None and isinstance(source, nn.Module) and not isinstance(source, Frontend):
        raise ValueError("target: a module's layers are laid out when they are built; construct "
                         "them with target='cuda' (STFT, KaldiSTFT, MelSpectrogram, MFCC) instead")
    if isinstance(source, ModuleFrontend):
        return source
    if isinstance(source, nn.Module) and not isinstance(source, Frontend):
        if seconds is not None and sample_rate is not None and num_samples is None:
            num_samples = int(round(float(seconds) * float(sample_rate)))
        return ModuleFrontend(source, sample_rate, num_samples, output_kind)
    if sample_rate is not None:
        raise ValueError("sample_rate: only a module needs it; a Frontend, spec or preset has its own")
    if isinstance(source, Frontend):
        if (num_samples is None and seconds is None and precision is None and num_frames is None
                and target is None):
            return source
        return _with_weights(source, Frontend.from_spec(
            with_overrides(source.spec, num_samples, seconds, precision, num_frames, target)))
    elif isinstance(source, dict):
        spec = source
    elif isinstance(source, (str, Path)) and _looks_like_file(source):
        spec = _read_spec_file(Path(source))
    elif isinstance(source, str):
        if source not in presets.names():
            raise ValueError(f"unknown preset {source!r}, and no spec file of that name; presets: "
                             f"{', '.join(presets.names())}")
        return presets.load(source, num_samples=num_samples, seconds=seconds, precision=precision,
                            num_frames=num_frames, target=target)
    else:
        raise ValueError(f"cannot export {type(source).__name__}: give a Frontend, an nn.Module, "
                         "a spec dict, a preset name or a spec .json path")
    return Frontend.from_spec(with_overrides(spec, num_samples, seconds, precision, num_frames, target))


def _with_weights(trained: Frontend, rebuilt: Frontend) -> Frontend:
    """``rebuilt`` (the spec with a new length or precision) carrying ``trained``'s weights
    when they are not the spec's own; refused when they do not fit the new build."""
    if trained.matches_spec():
        return rebuilt
    try:
        rebuilt.load_state_dict(trained.state_dict(), strict=True)
    except RuntimeError:
        raise ValueError("num_samples: the trained weights do not fit the frontend rebuilt for the "
                         "new length / precision; export it at its own (no overrides)") from None
    return rebuilt


def describe_source(fe: Union[Frontend, ModuleFrontend]) -> Dict[str, Any]:
    """The manifest's ``source``: 'spec' when the spec rebuilds ``fe`` (kernels included),
    'trained_frontend' (a Frontend with other weights) or 'module' (class, state digest,
    shapes), with the sha256 of the state dict (:func:`nnaudio_export.builder.state_sha256`)."""
    if isinstance(fe, ModuleFrontend):
        return {"kind": "module", "class": fe.module_class, "state_sha256": state_sha256(fe.module),
                "input_shape": ["batch", *fe.input_shape], "output_shape": ["batch", *fe.output_shape]}
    if fe.matches_spec():
        return {"kind": "spec"}
    return {"kind": "trained_frontend", "state_sha256": state_sha256(fe)}


def _looks_like_file(source: Union[str, Path]) -> bool:
    """A Path, an existing file, or a name that can only be a path (a '.json' suffix or a
    directory separator); anything else is taken as a preset name."""
    text = str(source)
    return (isinstance(source, Path) or os.path.isfile(text) or text.endswith(".json")
            or os.sep in text or (os.altsep is not None and os.altsep in text))


def _read_spec_file(p: Path) -> Dict[str, Any]:
    if not p.is_file():
        raise ValueError(f"spec file {str(p)!r} does not exist")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"spec file {str(p)!r}: invalid JSON ({exc})") from None


def _check_batch(batch: Optional[int], formats: Sequence[str], fe: Frontend) -> None:
    """A fixed batch is exported, verified and run at that size: bounded by the formats'
    batch bound and the memory limit (``nnaudio_export.checks.memory_limit``)."""
    if batch is None:
        return
    if not is_int(batch) or batch < 1:
        raise ValueError(f"batch must be >= 1 (or None for a dynamic batch axis), got {batch!r}")
    bounds = [model_format(f).max_batch for f in formats if model_format(f).max_batch]
    if bounds and batch > min(bounds):
        raise ValueError(f"batch: {batch} is above {min(bounds)}, the largest batch an exported "
                         "ONNX / .pt2 graph takes; export with a dynamic batch (no --batch) and let "
                         "the runtime split large batches (nx.load(..., max_batch=N))")
    require_memory(batch * fe.bytes_per_item, "batch",
                   f"{batch} items of {fe.bytes_per_item / 2**20:.1f} MiB each (estimated)")


def _check_chunk(chunk_samples: Optional[int], chunk_ms: Optional[float], fe: Frontend) -> int:
    """The chunk length in samples, from ``chunk_samples`` or ``chunk_ms`` (one of them)."""
    if (chunk_samples is None) == (chunk_ms is None):
        raise ValueError("chunk_samples: give chunk_samples or chunk_ms (one of them) with streaming=True")
    if chunk_ms is not None:
        if isinstance(chunk_ms, bool) or not isinstance(chunk_ms, (int, float)) or not chunk_ms > 0:
            raise ValueError(f"chunk_ms must be a positive number, got {chunk_ms!r}")
        chunk_samples = int(round(float(chunk_ms) * fe.sample_rate / 1000.0))
    if isinstance(chunk_samples, bool) or not isinstance(chunk_samples, int) or chunk_samples < 1:
        raise ValueError(f"chunk_samples: a positive integer is needed with streaming=True, got "
                         f"{chunk_samples!r}")
    StreamingFrontend(fe, chunk_samples)     # a stage that cannot stream: ValueError naming it
    return chunk_samples


def _check_formats(formats: Sequence[str]) -> tuple:
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    formats = tuple(dict.fromkeys(formats))
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ValueError(f"formats: unknown {bad}; choose from {FORMATS}")
    return formats


def _check_pt2_device(pt2_device: str, formats: Sequence[str], streaming: bool) -> None:
    if pt2_device not in ("cpu", "cuda"):
        raise ValueError(f"pt2_device must be 'cpu' or 'cuda', got {pt2_device!r}")
    if pt2_device == "cpu":
        return
    if "pt2" not in formats:
        raise ValueError(f"pt2_device={pt2_device!r}: only with 'pt2' in formats (got {list(formats)})")
    if streaming:
        raise ValueError("pt2_device='cuda': streaming bundles compile their .pt2 for the CPU only")
    if not torch.cuda.is_available():
        raise RuntimeError("pt2_device='cuda': a CUDA .pt2 is compiled on the GPU it will run on, and "
                           "torch.cuda.is_available() is False here")


def export(source: Source, out_dir: Union[str, Path], formats: Sequence[str] = FORMATS,
           batch: Optional[int] = None, overwrite: bool = False,
           num_samples: Optional[int] = None, seconds: Optional[float] = None,
           verify: bool = True, progress: Optional[Callable[[str], None]] = None,
           precision: Optional[str] = None, num_frames: Optional[int] = None,
           sample_rate: Optional[float] = None, output_kind: str = "linear",
           streaming: bool = False, chunk_samples: Optional[int] = None,
           chunk_ms: Optional[float] = None, pt2_device: str = "cpu", target: Optional[str] = None) -> Path:
    """Write a bundle directory ``out_dir`` and return its path.

    ``source``: a :class:`Frontend` (trained or loaded weights are exported and verified
    as they are), a spec dict, a preset name, a spec ``.json`` path, or any ``nn.Module``
    taking audio ``(batch, num_samples)`` (one of our layers, a model containing them;
    give ``sample_rate`` and ``num_samples`` or ``seconds``; ``output_kind`` 'linear' |
    'log' | 'cepstral' chooses its parity metric). The manifest's ``source`` says which
    (a module's class and state sha256), and ``golden.npz`` holds deterministic inputs
    with their float64 reference outputs and thresholds (``nx.verify(dir,
    golden_only=True)``, ``frontend_cli --check``).
    ``formats``: any of 'torchscript' (``model.pt``, ``torch.jit.script``), 'onnx'
    (``model.onnx``, one file, opset 18 / IR 8, input ``audio`` output ``features``),
    'pt2' (``model.pt2``, AOTInductor for this CPU, or with ``pt2_device='cuda'`` for this
    machine's GPU; needs a C++ compiler, and a CUDA one runs only on that GPU architecture).
    ``batch=None``
    keeps the batch axis dynamic; an int fixes it. ``num_samples`` / ``seconds`` (analysis)
    or ``num_frames`` (synthesis: the input spectrum's frames) override the length;
    ``precision`` ('single' | 'extended') the transforms' precision (presets choose their
    own); ``target`` ('cpu' | 'cuda', default the spec's own, 'cpu') the device the graph is
    laid out for: 'cuda' runs the factorised DFT's stage 1 as a MatMul instead of a grouped
    conv (ONNX Runtime on an H200: whisper_80 7.4 -> 4.7 ms per batch of 64; a CPU runs it
    1.7-1.9x slower); the numbers agree to float32 rounding, every format and backend runs either,
    and the manifest's spec records it. A synthesis bundle's tensors are ``spectrum`` ->
    ``audio``. The bundle is written
    to a marked temporary directory beside ``out_dir``, verified on CPU unless
    ``verify=False`` (parity figures, and for presets the error against the reference
    package, go into the manifest) and renamed into place (:mod:`nnaudio_export.install`):
    one export per ``out_dir`` at a time (a second one fails at once), leftovers of an
    interrupted export to the same path are removed first, and an existing ``out_dir`` is
    replaced only with ``overwrite=True`` and only when it holds nothing but a bundle this
    package wrote. A fixed ``batch`` must be <= 4096 (ONNX / .pt2) and fit the memory limit.
    Returns the absolute path. The manifest's sha256 (:func:`nnaudio_export.manifest.
    manifest_sha256`) is the bundle's digest to pin when loading it elsewhere.

    ``streaming=True`` writes a streaming bundle instead (:mod:`nnaudio_export.streaming`):
    its graph takes ``audio_chunk (batch, chunk_samples)``, ``chunk_length``, ``end`` and
    ``state`` and returns the frames the chunk completed, their count and the next state;
    run it with :func:`nnaudio_export.stream`. A stage that needs the whole clip raises
    ``ValueError`` naming it. Verification streams the example signals in uneven pieces
    through every backend and compares them with the offline frontend.
    """
    say = progress or (lambda msg: None)
    formats = _check_formats(formats)
    _check_pt2_device(pt2_device, formats, streaming)
    out = target_path(out_dir)
    check_replaceable(out, overwrite, foreign_entries)
    fe = resolve_frontend(source, num_samples, seconds, precision, num_frames, sample_rate,
                          output_kind, target).eval()
    _check_batch(batch, formats, fe)
    origin = describe_source(fe)
    from_spec = origin["kind"] == "spec"
    if streaming:
        if not from_spec:
            raise ValueError(f"streaming: only a frontend its spec rebuilds streams (a preset, a spec, "
                             f"an untrained Frontend); got a {origin['kind'].replace('_', ' ')}")
        if fe.spec.get("target", "cpu") != "cpu":
            raise ValueError("target: streaming bundles are laid out for the CPU (their chunks are a "
                             "few frames: a GPU layout gains nothing there); use target='cpu'")
        chunk_samples = _check_chunk(chunk_samples, chunk_ms, fe)
    elif chunk_samples is not None or chunk_ms is not None:
        raise ValueError("chunk_samples / chunk_ms: only with streaming=True")
    with target_lock(out):
        for box in remove_leftovers(out):
            say(f"removed {box.name}, left by an interrupted export")
        check_replaceable(out, overwrite, foreign_entries)
        with staging_dir(out) as tmp:
            if streaming:
                manifest = write_streaming_bundle(fe, tmp, formats, batch, chunk_samples, say)
            else:
                say(f"writing {GOLDEN}")
                golden = write_golden(tmp / GOLDEN, *golden_data(fe, from_spec))
                manifest = write_bundle(fe, tmp, formats, batch, say, {"source": origin, "golden": golden},
                                        pt2_device)
            if verify and streaming:
                say("verifying the streamed frames against the offline frontend on cpu")
                manifest["parity"] = {"ok": True, "streaming": check_stream(tmp, bundle_backends(manifest) + ["eager"],
                                                                manifest)}
                write_json_atomic(tmp / MANIFEST, manifest)
            elif verify:
                say("verifying parity on cpu")
                # Trusted: this process has just written every file. A bundle its spec
                # cannot rebuild is checked against the very module it was exported from.
                report = verify_bundle(tmp, devices=("cpu",), backends=bundle_backends(manifest),
                                       progress=progress, module=None if from_spec else fe)
                manifest["parity"] = report.to_dict()
                ref = measure_reference_error(fe) if from_spec else None
                if ref is not None:
                    manifest["reference_error"] = ref
                write_json_atomic(tmp / MANIFEST, manifest)
            install_dir(tmp, out, overwrite, foreign_entries)
    say(f"wrote {out}")
    return out
