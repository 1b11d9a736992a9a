"""The benchmark's bundles and inputs: each preset exported once per spec, torch version,
formats and source tree (reused across runs while none of them changes), the length a run
uses, and the input batch it times (audio, or a synthesis preset's spectrum)."""
import functools
import hashlib
import json
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from ..api import export
from ..manifest import model_format
from ..presets import get_spec, load as load_preset
from ..spec import input_kind, transform_precisions
from .measure import SIGNAL_NAMES, _say, make_input
from .options import QUICK_SECONDS

QUICK_FRAMES = 64   # a synthesis preset's input in --quick (its own length otherwise)


def bench_length(raw: Dict[str, Any], quick: bool) -> Dict[str, int]:
    """The length overrides of a run: the preset's own, or in --quick QUICK_SECONDS of
    audio input (a synthesis preset: QUICK_FRAMES input frames)."""
    if input_kind(raw) == "spectrum":
        return {"num_frames": QUICK_FRAMES if quick else int(raw["stages"][0]["num_frames"])}
    return {"num_samples": int(round(QUICK_SECONDS * float(raw["sample_rate"]))) if quick
            else int(raw["num_samples"])}


def bench_input(preset: str, raw: Dict[str, Any], length: Dict[str, int], batch: int) -> Tuple[int, np.ndarray]:
    """(audio samples per item, the input batch) of a run at ``length``: the benchmark's
    signals, or for a synthesis preset their STFT in its input layout."""
    if "num_samples" in length:
        n = length["num_samples"]
        return n, make_input(n, float(raw["sample_rate"]), batch)
    example = load_preset(preset, **length)
    return example.num_samples, example.example_input(tuple(SIGNAL_NAMES[i % len(SIGNAL_NAMES)]
                                                            for i in range(batch)))


@functools.lru_cache(maxsize=1)
def source_fingerprint() -> str:
    """sha256 of this package's Python sources: a bundle exported by other code (same spec,
    same torch, another graph) is exported again, not timed as if it were this code's."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def ensure_bundle(preset: str, length: Dict[str, int], root: Path, precision: Optional[str] = None,
                  pt2_device: str = "cpu", formats: Tuple[str, ...] = ("torchscript", "onnx", "pt2"),
                  target: str = "cpu") -> Path:
    """Export ``preset`` at ``length`` (:func:`bench_length`) and ``precision`` (default the
    preset's own), laid out for ``target``, its .pt2 compiled for ``pt2_device``, once into
    ``root``; reuse a bundle whose manifest spec, torch version, .pt2 device and ``formats``
    match and that this package's sources exported (:func:`source_fingerprint`, kept beside
    the bundle in ``<bundle>.source``)."""
    fe = load_preset(preset, precision=precision, target=target, **length)
    size = f"n{length['num_samples']}" if "num_samples" in length else f"t{length['num_frames']}"
    out = root / (f"{preset}-{size}" + (f"-{precision}" if precision else "")
                  + ("" if target == "cpu" else f"-{target}-layout")
                  + ("" if pt2_device == "cpu" else f"-pt2{pt2_device}")
                  + ("" if "pt2" in formats else "-no-pt2"))
    mf = out / "manifest.json"
    stamp = out.with_name(out.name + ".source")
    if mf.is_file() and stamp.is_file() and stamp.read_text().strip() == source_fingerprint():
        try:
            m = json.loads(mf.read_text())
            files = [model_format(f).file for f in formats]
            if (m.get("spec") == fe.spec and m["versions"]["torch"] == torch.__version__
                    and sorted(m["files"]) == sorted(files)
                    and m["files"].get(model_format("pt2").file, {}).get("device", "cpu") == pt2_device
                    and all((out / f).is_file() for f in files)):
                _say(f"{preset}: reusing bundle {out}")
                return out
        except Exception:
            pass
    _say(f"{preset}: exporting bundle {out} ({', '.join(formats)}{' for ' + pt2_device if 'pt2' in formats else ''})")
    bundle = export(fe, out, formats=formats, batch=None, verify=False, overwrite=True,
                    pt2_device=pt2_device if "pt2" in formats else "cpu")
    stamp.write_text(source_fingerprint() + "\n")
    return bundle


def declared_precisions(preset: str, spec: Dict[str, Any]) -> Tuple[str, str]:
    """(the precision a preset declares for its transforms, the other one) when its JSON names
    one (the production presets do); ('', '') for presets that leave it at the default."""
    raw = get_spec(preset).get("stages", [])
    own = transform_precisions(spec)
    if len(own) != 1 or not any("precision" in st for st in raw):
        return "", ""
    (own_precision,) = own
    return own_precision, ("single" if own_precision == "extended" else "extended")
