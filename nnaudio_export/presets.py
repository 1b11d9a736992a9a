"""Preset frontend specs stored as JSON in the repository's ``models/`` directory."""
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

from .builder import Frontend
from .spec import with_precision

DEFAULT_PRESET = "whisper_80"


def models_dir() -> Path:
    """``$NNAUDIO_EXPORT_MODELS`` or the ``models/`` directory beside the package."""
    env = os.environ.get("NNAUDIO_EXPORT_MODELS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "models"


def names() -> List[str]:
    return sorted(p.stem for p in models_dir().glob("*.json"))


def get_spec(name: str, num_samples: Optional[int] = None, seconds: Optional[float] = None,
             precision: Optional[str] = None) -> Dict[str, Any]:
    """The preset's spec; ``num_samples`` or ``seconds`` override its duration,
    ``precision`` ('single' | 'extended') its Fourier transform's precision."""
    path = models_dir() / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"preset: unknown preset {name!r}; available: {', '.join(names())}")
    spec = json.loads(path.read_text())
    if num_samples is not None and seconds is not None:
        raise ValueError("give num_samples or seconds, not both")
    if seconds is not None:
        if not seconds > 0:
            raise ValueError(f"seconds must be positive, got {seconds}")
        num_samples = int(round(seconds * spec["sample_rate"]))
    if num_samples is not None:
        spec["num_samples"] = int(num_samples)
    if precision is not None:
        spec = with_precision(spec, precision)
    return spec


def load(name: str, num_samples: Optional[int] = None, seconds: Optional[float] = None,
         precision: Optional[str] = None) -> Frontend:
    """Build a preset's frontend (``num_samples=None``: the preset's own length;
    ``precision=None``: the preset's own)."""
    return Frontend.from_spec(get_spec(name, num_samples, seconds, precision))
