"""The bundle format, at the bottom of the bundle side: what a bundle directory holds, the
one table of its model formats, and how a bundle is read, checked and installed.

Bundles are code (a ``.pt2`` is a shared library): every reader here opens only the fixed
file names of :data:`FORMAT_TABLE` directly inside the bundle, never through a link, and the
runtime loads the very bytes whose sha256 it checked. Standard library only, so the writer (:mod:`~nnaudio_export.bundle`), the runtime, the
verifier, the Triton writer and the CLI all share it without importing torch.
"""
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

BUNDLE_FORMAT = "nnaudio_export.bundle"
BUNDLE_VERSION = 1
MANIFEST = "manifest.json"
# Deterministic inputs and their float64 reference outputs, with the thresholds, written at
# export (uncompressed .npz: a stored zip of .npy files, readable by a tiny C++ parser), so a
# bundle can be re-checked anywhere without the module or spec it came from. Listed in the
# manifest under ``golden`` (sha256, size, items).
GOLDEN = "golden.npz"
# What a bundle was exported from (manifest ``source.kind``): a spec whose kernels the spec
# rebuilds ('spec'); a Frontend whose weights were trained or loaded ('trained_frontend':
# the spec alone would rebuild the untrained kernels); any other module ('module': no spec).
# Only 'spec' bundles can be rebuilt for verification; the others are checked against
# golden.npz (or against the module, when the caller still has it).
SOURCE_KINDS = ("spec", "trained_frontend", "module")
# Tensor names: an analysis bundle takes 'audio' and gives 'features'; a synthesis bundle
# takes 'spectrum' and gives 'audio'. The manifest's input.name / output.name say which.
AUDIO_NAME, SPECTRUM_NAME, FEATURES_NAME = "audio", "spectrum", "features"
INPUT_NAME, OUTPUT_NAME = AUDIO_NAME, FEATURES_NAME     # an analysis bundle's
# libtorch (and Triton's pytorch_libtorch backend) name TorchScript tensors by position.
TORCHSCRIPT_INPUT_NAME, TORCHSCRIPT_OUTPUT_NAME = "INPUT__0", "OUTPUT__0"
# torch.export gives a dynamic batch axis an upper bound; ONNX and .pt2 are exported with it.
MAX_EXPORTED_BATCH = 4096
INPUT_DTYPES = ("float32", "int16")


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


def read_bundle_file(bundle_dir: Union[str, Path], name: str) -> bytes:
    """The bytes of ``name`` (one of a bundle's fixed file names, never a path) directly
    inside ``bundle_dir``: a regular file, opened without following a link (a link, even
    one pointing inside the bundle, is refused)."""
    if name not in (MANIFEST, GOLDEN) + MODEL_FILES:
        raise BundleError(f"{name!r} is not a bundle file name")
    path = Path(bundle_dir) / name
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise BundleError(f"{path}: missing") from None
    except OSError as exc:
        if path.is_symlink():
            raise BundleError(f"{path}: is a symbolic link; a bundle's files must be regular "
                              "files inside it") from None
        raise BundleError(f"{path}: cannot be read ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise BundleError(f"{path}: not a regular file")
        return f.read()


def bundle_path(bundle_dir: Union[str, Path]) -> Path:
    """The bundle directory with every link in its path resolved once, so that all its files
    are read from one directory (a link to the bundle directory is fine; links inside it
    are not)."""
    d = Path(bundle_dir)
    if not d.is_dir():
        raise BundleError(f"{d} is not a bundle: no such directory" if not d.exists()
                          else f"{d} is not a bundle: not a directory")
    return d.resolve()


def manifest_sha256(bundle_dir: Union[str, Path]) -> str:
    """The sha256 of the bundle's ``manifest.json`` bytes: the bundle's own digest. The
    manifest lists every model file's sha256, so pinning this one value (``nx.load(...,
    expected_sha256=...)``, ``--expect-sha256``) pins the whole bundle."""
    return hashlib.sha256(read_bundle_file(bundle_path(bundle_dir), MANIFEST)).hexdigest()


def read_manifest(bundle_dir: Union[str, Path], expected_sha256: Optional[str] = None) -> Dict[str, Any]:
    """The bundle's manifest, checked for the keys every reader relies on; a missing,
    malformed or foreign manifest raises :class:`BundleError` naming what is wrong. With
    ``expected_sha256`` the manifest's bytes must have that digest (see
    :func:`manifest_sha256`); the bytes checked are the bytes parsed."""
    d = bundle_path(bundle_dir)
    path = d / MANIFEST
    if not os.path.lexists(path):
        raise BundleError(f"{d} is not a bundle: {MANIFEST} is missing")
    raw = read_bundle_file(d, MANIFEST)
    if expected_sha256 is not None:
        check_digest(hashlib.sha256(raw).hexdigest(), expected_sha256, path)
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path}: not an nnaudio_export bundle manifest")
    _check_manifest(manifest, path)
    return manifest


def check_digest(actual: str, expected: str, path: Path) -> None:
    if not isinstance(expected, str) or len(expected.strip()) != 64:
        raise ValueError(f"expected_sha256 must be 64 hex digits, got {expected!r}")
    if actual != expected.strip().lower():
        raise BundleError(f"{path}: sha256 is {actual}, not the pinned {expected.strip().lower()}; "
                          "this is not the bundle you trusted")


def _is_batched_shape(shape: Any) -> bool:
    """``['batch' or N, d1, d2, ...]`` with positive integer dims."""
    if not isinstance(shape, list) or len(shape) < 2:
        return False
    rest = shape[1:]
    ok_batch = shape[0] == "batch" or (isinstance(shape[0], int) and not isinstance(shape[0], bool)
                                        and shape[0] >= 1)
    return ok_batch and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in rest)


def _check_manifest(manifest: Dict[str, Any], path: Path) -> None:
    for key, kind in (("files", dict), ("input", dict), ("output", dict), ("spec", dict),
                      ("num_samples", int), ("sample_rate", (int, float))):
        if not isinstance(manifest.get(key), kind) or isinstance(manifest.get(key), bool):
            raise BundleError(f"{path}: '{key}' is missing or malformed")
    if manifest["input"].get("dtype") not in INPUT_DTYPES or not _is_batched_shape(manifest["input"].get("shape")):
        raise BundleError(f"{path}: 'input' needs dtype {INPUT_DTYPES} and shape [batch, ...]")
    if not _is_batched_shape(manifest["output"].get("shape")) or not isinstance(manifest["output"].get("kind"), str):
        raise BundleError(f"{path}: 'output' needs shape [batch, ...] and kind")
    for name, entry in manifest["files"].items():
        if name not in MODEL_FILES:
            raise BundleError(f"{path}: files lists {name!r}; a bundle holds only {MODEL_FILES}")
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str) \
                or not isinstance(entry.get("size"), int):
            raise BundleError(f"{path}: files.{name} lacks sha256 / size")
    golden = manifest.get("golden")
    if golden is not None and (not isinstance(golden, dict) or not isinstance(golden.get("sha256"), str)
                               or not isinstance(golden.get("size"), int)):
        raise BundleError(f"{path}: 'golden' lacks sha256 / size")
    if source_kind(manifest) not in SOURCE_KINDS:
        raise BundleError(f"{path}: source.kind must be one of {SOURCE_KINDS}")


def source_kind(manifest: Dict[str, Any]) -> str:
    """What the bundle was exported from (:data:`SOURCE_KINDS`); 'spec' for bundles written
    before the manifest said."""
    source = manifest.get("source")
    return source.get("kind", "spec") if isinstance(source, dict) else "spec"


def rebuildable(manifest: Dict[str, Any]) -> bool:
    """Whether the manifest's spec rebuilds the exported module (kernels included)."""
    return source_kind(manifest) == "spec"


def read_golden(bundle_dir: Union[str, Path], manifest: Dict[str, Any]) -> bytes:
    """The bytes of the bundle's golden.npz, refused unless the manifest lists it with this
    size and sha256."""
    entry = manifest.get("golden")
    if entry is None:
        raise BundleError(f"{bundle_dir} has no {GOLDEN} (exported before golden outputs were "
                          "written); re-export it, or verify against its spec")
    data = read_bundle_file(bundle_dir, GOLDEN)
    if len(data) != entry["size"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise BundleError(f"{Path(bundle_dir) / GOLDEN}: sha256 does not match {MANIFEST}; the file "
                          "was modified or corrupted. Re-export the bundle.")
    return data


def read_checked(bundle_dir: Union[str, Path], manifest: Dict[str, Any], name: str) -> bytes:
    """The bytes of the model file ``name``, refused unless listed in the manifest with this
    size and sha256. Loading these bytes (not the path again) means what was checked is
    what runs."""
    entry = manifest["files"].get(name)
    if entry is None:
        raise BundleError(f"{bundle_dir} has no {name} (exported files: {sorted(manifest['files'])})")
    try:
        data = read_bundle_file(bundle_dir, name)
    except BundleError as exc:
        if "missing" in str(exc):
            raise BundleError(f"{Path(bundle_dir) / name}: missing (listed in {MANIFEST})") from None
        raise
    if len(data) != entry["size"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise BundleError(f"{Path(bundle_dir) / name}: sha256 does not match {MANIFEST}; the file was "
                          "modified or corrupted. Re-export the bundle.")
    return data


def check_files(bundle_dir: Union[str, Path], manifest: Dict[str, Any],
                names: Optional[Sequence[str]] = None) -> None:
    """Refuse any listed model file (``names``: only these; all: golden.npz too) that is
    missing, is a link, or whose size or sha256 differs from the manifest."""
    for name in manifest["files"]:
        if names is None or name in names:
            read_checked(bundle_dir, manifest, name)
    if names is None and manifest.get("golden") is not None:
        read_golden(bundle_dir, manifest)


def foreign_entries(bundle_dir: Path) -> Optional[str]:
    """None when ``bundle_dir`` holds only what a bundle export writes (an nnaudio_export
    ``manifest.json`` and model files; an empty directory too), else what else is there:
    :func:`nnaudio_export.install.install_dir` replaces only such a directory."""
    names = sorted(os.listdir(bundle_dir))
    if not names:
        return None
    other = [n + ("/" if (bundle_dir / n).is_dir() else "") for n in names
             if n not in (MANIFEST, GOLDEN) + MODEL_FILES]
    if other:
        return "holds " + ", ".join(other[:4]) + (f" and {len(other) - 4} more" if len(other) > 4 else "")
    try:
        raw = read_bundle_file(bundle_dir, MANIFEST)
        ours = json.loads(raw.decode("utf-8")).get("format") == BUNDLE_FORMAT
    except (BundleError, ValueError, AttributeError):
        ours = False
    return None if ours else f"has no nnaudio_export {MANIFEST} (it holds {', '.join(names)})"


def bundle_backends(manifest: Dict[str, Any]) -> List[str]:
    """The runtime backends of the model files a bundle holds, in table order."""
    return [f.backend for f in FORMAT_TABLE if f.file in manifest["files"]]


def write_json_atomic(path: Path, data: Dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n",
                   encoding="utf-8")
    os.replace(tmp, path)
