"""The bundle format, at the bottom of the bundle side: what a bundle directory holds, the
one table of its model formats, and how a bundle is read, checked and installed.

Standard library only, so the writer (:mod:`~nnaudio_export.bundle`), the runtime, the
verifier, the Triton writer and the CLI all share it without importing torch.
"""
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

BUNDLE_FORMAT = "nnaudio_export.bundle"
BUNDLE_VERSION = 1
MANIFEST = "manifest.json"
# Tensor names: an analysis bundle takes 'audio' and gives 'features'; a synthesis bundle
# takes 'spectrum' and gives 'audio'. The manifest's input.name / output.name say which.
AUDIO_NAME, SPECTRUM_NAME, FEATURES_NAME = "audio", "spectrum", "features"
INPUT_NAME, OUTPUT_NAME = AUDIO_NAME, FEATURES_NAME     # an analysis bundle's
# libtorch (and Triton's pytorch_libtorch backend) name TorchScript tensors by position.
TORCHSCRIPT_INPUT_NAME, TORCHSCRIPT_OUTPUT_NAME = "INPUT__0", "OUTPUT__0"
# torch.export gives a dynamic batch axis an upper bound; ONNX and .pt2 are exported with it.
MAX_EXPORTED_BATCH = 4096


class BundleError(ValueError):
    """A bundle that is missing, malformed or does not match its manifest."""


@dataclass(frozen=True)
class ModelFormat:
    """One model format a bundle can hold: its file, the runtime backend that loads it,
    the Triton model it becomes (platform, backend, model-name suffix; None when Triton has
    no backend for it), its tensor names (None: the bundle's own, see :func:`tensor_names`)
    and the largest batch its dynamic axis takes."""
    name: str
    file: str
    backend: str
    triton_platform: Optional[str]
    triton_backend: Optional[str]
    triton_suffix: Optional[str]
    input_name: Optional[str]
    output_name: Optional[str]
    max_batch: Optional[int]          # None: no bound


FORMAT_TABLE = (
    ModelFormat("torchscript", "model.pt", "torchscript", "pytorch_libtorch", "pytorch", "libtorch",
                TORCHSCRIPT_INPUT_NAME, TORCHSCRIPT_OUTPUT_NAME, None),
    ModelFormat("onnx", "model.onnx", "onnxruntime", "onnxruntime_onnx", "onnxruntime", "onnx",
                None, None, MAX_EXPORTED_BATCH),
    ModelFormat("pt2", "model.pt2", "pt2", None, None, None,
                None, None, MAX_EXPORTED_BATCH),
)
FORMATS = tuple(f.name for f in FORMAT_TABLE)
MODEL_FILES = tuple(f.file for f in FORMAT_TABLE)


def model_format(name: str) -> ModelFormat:
    """The table row of a format name ('torchscript' | 'onnx' | 'pt2')."""
    for f in FORMAT_TABLE:
        if f.name == name:
            return f
    raise ValueError(f"formats: unknown {name!r}; choose from {FORMATS}")


def format_for_backend(backend: str) -> Optional[ModelFormat]:
    """The format a runtime backend loads (None for 'eager', which rebuilds from the spec)."""
    for f in FORMAT_TABLE:
        if f.backend == backend:
            return f
    return None


def format_for_file(name: str) -> Optional[ModelFormat]:
    for f in FORMAT_TABLE:
        if f.file == name:
            return f
    return None


def tensor_names(fmt: ModelFormat, manifest: Dict[str, Any]) -> Tuple[str, str]:
    """(input, output) tensor names of a bundle's model file of format ``fmt``: the
    format's fixed names (TorchScript: by position), else the manifest's ``input.name`` /
    ``output.name`` (an analysis bundle's 'audio' / 'features' when a manifest lacks them)."""
    return (fmt.input_name or manifest["input"].get("name", INPUT_NAME),
            fmt.output_name or manifest["output"].get("name", OUTPUT_NAME))


def sha256_file(path: Union[str, Path]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(bundle_dir: Union[str, Path]) -> Dict[str, Any]:
    """The bundle's manifest, checked for the keys every reader relies on; a missing,
    malformed or foreign manifest raises :class:`BundleError` naming what is wrong."""
    d = Path(bundle_dir)
    path = d / MANIFEST
    if not path.is_file():
        raise BundleError(f"{d} is not a bundle: {MANIFEST} is missing")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path}: not an nnaudio_export bundle manifest")
    for key, kind in (("files", dict), ("input", dict), ("output", dict), ("spec", dict),
                      ("num_samples", int), ("sample_rate", (int, float))):
        if not isinstance(manifest.get(key), kind) or isinstance(manifest.get(key), bool):
            raise BundleError(f"{path}: '{key}' is missing or malformed")
    for name, entry in manifest["files"].items():
        if name not in MODEL_FILES:
            raise BundleError(f"{path}: files lists {name!r}; a bundle holds only {MODEL_FILES}")
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str) \
                or not isinstance(entry.get("size"), int):
            raise BundleError(f"{path}: files.{name} lacks sha256 / size")
    return manifest


def check_files(bundle_dir: Union[str, Path], manifest: Dict[str, Any],
                names: Optional[Sequence[str]] = None) -> None:
    """Refuse any listed model file (``names``: only these) that is missing, is a link, or
    whose size or sha256 differs from the manifest."""
    d = Path(bundle_dir)
    for name, entry in manifest["files"].items():
        if names is not None and name not in names:
            continue
        p = d / name
        if p.is_symlink():
            raise BundleError(f"{p}: is a symbolic link; a bundle's files must be regular files")
        if not p.is_file():
            raise BundleError(f"{p}: missing (listed in {MANIFEST})")
        if p.stat().st_size != entry["size"] or sha256_file(p) != entry["sha256"]:
            raise BundleError(f"{p}: sha256 does not match {MANIFEST}; the file was modified "
                              "or corrupted. Re-export the bundle.")


def bundle_backends(manifest: Dict[str, Any]) -> List[str]:
    """The runtime backends of the model files a bundle holds, in table order."""
    return [f.backend for f in FORMAT_TABLE if f.file in manifest["files"]]


def write_json_atomic(path: Path, data: Dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n",
                   encoding="utf-8")
    os.replace(tmp, path)


@contextlib.contextmanager
def staging_dir(final: Path) -> Iterator[Path]:
    """A new empty directory beside ``final`` to assemble it in (same filesystem, so it can
    be renamed into place); removed again when the block fails."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def install_dir(tmp: Path, final: Path, overwrite: bool) -> None:
    """Rename the finished directory ``tmp`` onto ``final`` (made 0755: mkdtemp gives 0700
    and a bundle is meant to be shared). An existing ``final`` is refused unless
    ``overwrite``; then it is moved aside, replaced, and put back if the replacement fails."""
    os.chmod(tmp, 0o755)
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
