"""The public entry points that combine the layers below: a frontend from whatever the user
has (:func:`resolve_frontend`), and :func:`export` = write the bundle, verify it, measure the
error against the preset's reference package, install it."""
import json
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Union

from . import presets
from .builder import Frontend
from .bundle import write_bundle
from .checks import is_int
from .manifest import FORMATS, MANIFEST, install_dir, staging_dir, write_json_atomic
from .parity import verify as verify_bundle
from .references import measure_reference_error
from .spec import with_overrides

Source = Union[Frontend, Dict[str, Any], str, Path]


def resolve_frontend(source: Source, num_samples: Optional[int] = None,
                     seconds: Optional[float] = None, precision: Optional[str] = None,
                     num_frames: Optional[int] = None) -> Frontend:
    """A Frontend from a Frontend, a spec dict, a preset name or a spec JSON path;
    ``num_samples`` / ``seconds`` override the duration (a synthesis spec's: ``num_frames``),
    ``precision`` the transforms' precision ('single' | 'extended')."""
    if isinstance(source, Frontend):
        if num_samples is None and seconds is None and precision is None and num_frames is None:
            return source
        spec = source.spec
    elif isinstance(source, dict):
        spec = source
    elif isinstance(source, (str, Path)) and str(source).endswith(".json"):
        p = Path(source)
        if not p.is_file():
            raise ValueError(f"spec file {str(p)!r} does not exist")
        try:
            spec = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"spec file {str(p)!r}: invalid JSON ({exc})") from None
    elif isinstance(source, str):
        return presets.load(source, num_samples=num_samples, seconds=seconds, precision=precision,
                            num_frames=num_frames)
    else:
        raise ValueError(f"cannot export {type(source).__name__}: give a Frontend, a spec dict, "
                         "a preset name or a spec .json path")
    return Frontend.from_spec(with_overrides(spec, num_samples, seconds, precision, num_frames))


def _check_formats(formats: Sequence[str]) -> tuple:
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    formats = tuple(dict.fromkeys(formats))
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ValueError(f"formats: unknown {bad}; choose from {FORMATS}")
    return formats


def export(source: Source, out_dir: Union[str, Path], formats: Sequence[str] = FORMATS,
           batch: Optional[int] = None, overwrite: bool = False,
           num_samples: Optional[int] = None, seconds: Optional[float] = None,
           verify: bool = True, progress: Optional[Callable[[str], None]] = None,
           precision: Optional[str] = None, num_frames: Optional[int] = None) -> Path:
    """Write a bundle directory ``out_dir`` and return its path.

    ``source``: a :class:`Frontend`, a spec dict, a preset name or a spec ``.json`` path.
    ``formats``: any of 'torchscript' (``model.pt``, ``torch.jit.script``), 'onnx'
    (``model.onnx``, one file, opset 18 / IR 8, input ``audio`` output ``features``),
    'pt2' (``model.pt2``, AOTInductor for this CPU; needs a C++ compiler). ``batch=None``
    keeps the batch axis dynamic; an int fixes it. ``num_samples`` / ``seconds`` (analysis)
    or ``num_frames`` (synthesis: the input spectrum's frames) override the length;
    ``precision`` ('single' | 'extended') the transforms' precision (presets choose their
    own). A synthesis bundle's tensors are ``spectrum`` -> ``audio``. The bundle is written
    to a temporary directory beside ``out_dir``, verified on CPU unless ``verify=False``
    (parity figures, and for presets the error against the reference package, go into the
    manifest) and renamed into place; an existing ``out_dir`` is refused unless
    ``overwrite=True``.
    """
    say = progress or (lambda msg: None)
    formats = _check_formats(formats)
    if batch is not None and (not is_int(batch) or batch <= 0):
        raise ValueError(f"batch must be None (dynamic) or a positive integer, got {batch!r}")
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass overwrite=True (CLI: --force) to replace it")
    fe = resolve_frontend(source, num_samples, seconds, precision, num_frames).eval()
    with staging_dir(out) as tmp:
        manifest = write_bundle(fe, tmp, formats, batch, say)
        if verify:
            say("verifying parity on cpu")
            manifest["parity"] = verify_bundle(tmp, devices=("cpu",), progress=progress).to_dict()
            ref = measure_reference_error(fe)
            if ref is not None:
                manifest["reference_error"] = ref
            write_json_atomic(tmp / MANIFEST, manifest)
        install_dir(tmp, out, overwrite)
    say(f"wrote {out}")
    return out
