"""Triton Inference Server model repository from a bundle.

``write_triton_repo(bundle, repo)`` writes two models::

    repo/<name>_onnx/config.pbtxt        platform onnxruntime_onnx, the bundle's tensor names
                                         ('audio' -> 'features'; synthesis: 'spectrum' -> 'audio')
    repo/<name>_onnx/1/model.onnx
    repo/<name>_libtorch/config.pbtxt    platform pytorch_libtorch, INPUT__0 / OUTPUT__0
    repo/<name>_libtorch/1/model.pt

both with ``max_batch_size`` and ``dynamic_batching {}``; a streaming bundle gets
``sequence_batching`` with implicit state instead (``state`` -> ``next_state`` kept by
Triton per sequence, zeros at a sequence's start; ``end`` as the CONTROL_SEQUENCE_END
control; requests carry ``audio_chunk`` and ``chunk_length``). Triton batches along the first
axis, so the bundle must have been exported with a dynamic batch axis (the default); a
fixed-batch bundle is refused. Each model directory is assembled beside its final place
(one writer at a time, leftovers of interrupted runs removed: :mod:`nnaudio_export.install`),
the model file is written from the bytes checked against the manifest's sha256, and the
directory is renamed into place. ``overwrite`` replaces a model directory only when it holds
nothing but what this function writes (its ``config.pbtxt`` and version ``1/``): other
versions or files there are refused, never deleted. CLI: ``nnaudio-export triton BUNDLE
--repo REPO [--name N] [--max-batch 64] [--force] [--expect-sha256 HEX]``.
"""
import argparse
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from .install import check_replaceable, install_dir, remove_leftovers, staging_dir, target_lock
from .manifest import (FORMAT_TABLE, MAX_EXPORTED_BATCH, MODEL_FILES, BundleError, ModelFormat,
                       check_files, read_checked, read_manifest, tensor_names)

# The model formats Triton has a backend for, by the suffix of the model they become.
TRITON_FORMATS: Dict[str, ModelFormat] = {f.triton_suffix: f for f in FORMAT_TABLE if f.triton_suffix}
BACKENDS = tuple(TRITON_FORMATS)
_TRITON_DTYPES = {"float32": "TYPE_FP32", "int16": "TYPE_INT16"}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
# The first line of every config.pbtxt written here: how a model directory is known as ours.
CONFIG_MARK = "# nnaudio_export bundle "
VERSION = "1"


def foreign_in_model_dir(model_dir: Path) -> Optional[str]:
    """None when ``model_dir`` holds only what :func:`write_triton_repo` writes (our
    ``config.pbtxt`` and version ``1/`` with one model file), else what else is there."""
    other = [n + ("/" if (model_dir / n).is_dir() else "") for n in sorted(os.listdir(model_dir))
             if n not in ("config.pbtxt", VERSION)]
    version = model_dir / VERSION
    if version.is_dir() and not version.is_symlink():
        other += [f"{VERSION}/{n}" for n in sorted(os.listdir(version)) if n not in MODEL_FILES]
    elif os.path.lexists(version):
        other.append(VERSION)
    if other:
        return "holds " + ", ".join(other[:4]) + (f" and {len(other) - 4} more" if len(other) > 4 else "")
    config = model_dir / "config.pbtxt"
    if os.path.lexists(config):
        try:
            ours = not config.is_symlink() and config.read_text(errors="replace").startswith(CONFIG_MARK)
        except OSError:
            ours = False
        if not ours:
            return "has a config.pbtxt"
    return None


def _dims(shape: Sequence[Any], what: str) -> List[int]:
    """The non-batch dims of a manifest shape ``['batch', ...]``."""
    if not shape or shape[0] != "batch":
        raise BundleError(f"{what} shape {list(shape)} has no dynamic batch axis")
    dims = list(shape[1:])
    if not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims):
        raise BundleError(f"{what} shape {list(shape)}: Triton needs fixed positive dims after the batch axis")
    return dims


def _pbtxt(name: str, platform: str, backend: str, max_batch: int, inp: str, in_type: str,
           in_dims: List[int], out: str, out_dims: List[int], comment: str) -> str:
    def dims(d: List[int]) -> str:
        return "[ " + ", ".join(str(int(v)) for v in d) + " ]"
    return (
        f"# {comment}\n"
        f'name: "{name}"\n'
        f'platform: "{platform}"\n'
        f'backend: "{backend}"\n'
        f"max_batch_size: {int(max_batch)}\n"
        "input [\n"
        "  {\n"
        f'    name: "{inp}"\n'
        f"    data_type: {in_type}\n"
        f"    dims: {dims(in_dims)}\n"
        "  }\n"
        "]\n"
        "output [\n"
        "  {\n"
        f'    name: "{out}"\n'
        "    data_type: TYPE_FP32\n"
        f"    dims: {dims(out_dims)}\n"
        "  }\n"
        "]\n"
        "dynamic_batching { }\n"
    )


_TRITON_ANY_DTYPES = dict(_TRITON_DTYPES, int64="TYPE_INT64")


def _tensor_block(kind: str, tensors: List[Dict[str, Any]]) -> str:
    rows = [f"{kind} [\n"]
    for i, t in enumerate(tensors):
        dims = "[ " + ", ".join(str(int(v)) for v in _dims(t["shape"], t["name"])) + " ]"
        rows.append(f'  {{\n    name: "{t["triton_name"]}"\n    data_type: {_TRITON_ANY_DTYPES[t["dtype"]]}\n'
                    f"    dims: {dims}\n  }}{',' if i < len(tensors) - 1 else ''}\n")
    return "".join(rows) + "]\n"


def _streaming_pbtxt(name: str, fmt: ModelFormat, max_batch: int, streaming: Dict[str, Any],
                     comment: str) -> str:
    """A ``sequence_batching`` config with implicit state: Triton keeps ``state`` /
    ``next_state`` per sequence (zeros at its start: a new stream), ``end`` is the
    CONTROL_SEQUENCE_END control (1.0 on a sequence's last request), and a request carries
    ``audio_chunk`` and ``chunk_length``; it gets ``frames`` and ``num_frames``."""
    def named(t: Dict[str, Any], i: int, prefix: str) -> Dict[str, Any]:
        # TorchScript tensors are named by position (INPUT__i / OUTPUT__i).
        return dict(t, triton_name=f"{prefix}__{i}" if fmt.input_name else t["name"])
    ins = [named(t, i, "INPUT") for i, t in enumerate(streaming["inputs"])]
    outs = [named(t, i, "OUTPUT") for i, t in enumerate(streaming["outputs"])]
    state, next_state, end = ins[3], outs[2], ins[2]
    size = int(streaming["state"]["size"])
    return (
        f"# {comment}\n"
        f'name: "{name}"\n'
        f'platform: "{fmt.triton_platform}"\n'
        f'backend: "{fmt.triton_backend}"\n'
        f"max_batch_size: {int(max_batch)}\n"
        + _tensor_block("input", ins[:2]) + _tensor_block("output", outs[:2]) +
        "sequence_batching {\n"
        "  max_sequence_idle_microseconds: 60000000\n"
        "  control_input [\n"
        "    {\n"
        f'      name: "{end["triton_name"]}"\n'
        "      control [ { kind: CONTROL_SEQUENCE_END fp32_false_true: [ 0, 1 ] } ]\n"
        "    }\n"
        "  ]\n"
        "  state [\n"
        "    {\n"
        f'      input_name: "{state["triton_name"]}"\n'
        f'      output_name: "{next_state["triton_name"]}"\n'
        "      data_type: TYPE_FP32\n"
        f"      dims: [ {size} ]\n"
        "      initial_state: [ { data_type: TYPE_FP32 dims: [ %d ] zero_data: true name: \"new_stream\" } ]\n"
        "    }\n"
        "  ]\n"
        "}\n") % size


def _check_bundle_for_triton(manifest: Dict[str, Any], bundle: Path) -> None:
    batch = manifest.get("batch")
    if batch is not None or manifest["input"]["shape"][0] != "batch":
        raise BundleError(
            f"{bundle} was exported with a fixed batch of {batch}; Triton's max_batch_size / "
            "dynamic_batching need a dynamic batch axis. Re-export without --batch (batch=None).")
    if manifest["input"]["dtype"] not in _TRITON_DTYPES:
        raise BundleError(f"{bundle}: input dtype {manifest['input']['dtype']!r} has no Triton type here")


def write_triton_repo(bundle_dir: Union[str, Path], repo_dir: Union[str, Path], name: Optional[str] = None,
                      max_batch: int = 64, overwrite: bool = False,
                      backends: Sequence[str] = BACKENDS,
                      expected_sha256: Optional[str] = None) -> Dict[str, Path]:
    """Write ``<name>_onnx`` and ``<name>_libtorch`` (``backends``) into the Triton model
    repository ``repo_dir`` (created if needed); returns ``{model_name: model_dir}``.

    ``name`` defaults to the manifest's name; ``max_batch`` (1..4096) becomes
    ``max_batch_size``. Existing model directories are refused unless ``overwrite``.
    Raises :class:`BundleError` (a ValueError) for a fixed-batch bundle, a missing model
    file or a sha256 mismatch (``expected_sha256`` pins the manifest itself).
    """
    bundle = Path(bundle_dir)
    manifest = read_manifest(bundle, expected_sha256)
    _check_bundle_for_triton(manifest, bundle)
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or not 1 <= max_batch <= MAX_EXPORTED_BATCH:
        raise ValueError(f"max_batch must be an integer in 1..{MAX_EXPORTED_BATCH}, got {max_batch!r}")
    name = manifest["name"] if name is None else name
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"model name {name!r}: use letters, digits, '_', '.', '-' (no path separators)")
    backends = tuple(dict.fromkeys(backends))
    bad = [b for b in backends if b not in BACKENDS]
    if bad or not backends:
        raise ValueError(f"backends: unknown {bad}; choose from {BACKENDS}")
    files = [TRITON_FORMATS[b].file for b in backends]
    missing = [f for f in files if f not in manifest["files"]]
    if missing:
        raise BundleError(f"{bundle} has no {', '.join(missing)} (exported files: {sorted(manifest['files'])})")
    check_files(bundle, manifest, files)

    repo = Path(repo_dir)
    repo.mkdir(parents=True, exist_ok=True)
    targets = {b: repo.resolve() / f"{name}_{b}" for b in backends}
    for target in targets.values():
        check_replaceable(target, overwrite, foreign_in_model_dir)
    written: Dict[str, Path] = {}
    for b in backends:
        _write_model(bundle, manifest, TRITON_FORMATS[b], targets[b], max_batch, overwrite)
        written[targets[b].name] = targets[b]
    return written


def _write_model(bundle: Path, manifest: Dict[str, Any], fmt: ModelFormat, final: Path,
                 max_batch: int, overwrite: bool) -> None:
    """One Triton model directory (``config.pbtxt`` + ``1/<model file>``), assembled beside
    ``final`` and renamed into place."""
    comment = (f"{CONFIG_MARK[2:]}{manifest['name']!r}: {manifest['sample_rate']:g} Hz, "
               f"{manifest['num_samples']} samples, length_policy {manifest.get('length_policy', 'exact')}, "
               f"output {manifest['output'].get('kind', '')}")
    data = read_checked(bundle, manifest, fmt.file)
    input_name, output_name = tensor_names(fmt, manifest)
    with target_lock(final):
        remove_leftovers(final)
        with staging_dir(final) as tmp:
            (tmp / VERSION).mkdir()
            (tmp / VERSION / fmt.file).write_bytes(data)
            if "streaming" in manifest:
                config = _streaming_pbtxt(final.name, fmt, max_batch, manifest["streaming"],
                                          comment + ", streaming")
            else:
                config = _pbtxt(final.name, fmt.triton_platform, fmt.triton_backend, max_batch,
                                input_name, _TRITON_DTYPES[manifest["input"]["dtype"]],
                                _dims(manifest["input"]["shape"], "input"), output_name,
                                _dims(manifest["output"]["shape"], "output"), comment)
            (tmp / "config.pbtxt").write_text(config)
            install_dir(tmp, final, overwrite, foreign_in_model_dir)


def cmd_triton(args: argparse.Namespace) -> int:
    written = write_triton_repo(args.bundle, args.repo, name=args.name, max_batch=args.max_batch,
                                overwrite=args.force, expected_sha256=args.expect_sha256)
    for model, path in written.items():
        print(f"{model}: {path / 'config.pbtxt'}")
    print(f"serve with: tritonserver --model-repository {Path(args.repo).resolve()}")
    return 0


def add_cli(subparsers: Any, **common: Any) -> None:
    t = subparsers.add_parser("triton", help="write a Triton model repository (onnx + libtorch) from a bundle",
                              **common)
    t.add_argument("bundle", help="bundle directory (exported with a dynamic batch axis)")
    t.add_argument("--repo", required=True, help="Triton model repository directory (created if needed)")
    t.add_argument("--name", default=None, help="model name prefix (default: the manifest's name)")
    t.add_argument("--max-batch", type=int, default=64, help="max_batch_size (default 64)")
    t.add_argument("--force", action="store_true",
                   help="replace model directories this tool wrote (others are refused)")
    t.add_argument("--expect-sha256", default=None, metavar="HEX",
                   help="refuse the bundle unless its manifest.json has this sha256")
    t.set_defaults(func=cmd_triton)
