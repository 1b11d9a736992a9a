"""Preset frontend specs: the JSON files of the repository's ``models/`` directory, shipped
inside the package as ``nnaudio_export.models`` (package data, read with
:mod:`importlib.resources`, so presets work the same from a checkout, an editable install
and a plain wheel install)."""
import json
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Optional

from .builder import Frontend
from .spec import with_overrides

DEFAULT_PRESET = "whisper_80"
PRESET_PACKAGE = "nnaudio_export.models"


def _preset_root() -> Any:
    """The installed ``nnaudio_export.models``; in a source checkout used without
    installing (``PYTHONPATH=checkout``), the checkout's own ``models/`` (recognised by the
    project's pyproject.toml beside it, never by a loose directory name)."""
    try:
        return resources.files(PRESET_PACKAGE)
    except ModuleNotFoundError:
        root = Path(__file__).resolve().parent.parent
        pyproject = root / "pyproject.toml"
        if (root / "models").is_dir() and pyproject.is_file() and \
                'name = "nnaudio-export"' in pyproject.read_text(encoding="utf-8"):
            return root / "models"
        raise


def _files() -> Dict[str, Any]:
    root = _preset_root()
    return {entry.name[: -len(".json")]: entry for entry in root.iterdir()
            if entry.name.endswith(".json") and entry.is_file()}


def names() -> List[str]:
    return sorted(_files())


def get_spec(name: str, num_samples: Optional[int] = None, seconds: Optional[float] = None,
             precision: Optional[str] = None, num_frames: Optional[int] = None,
             target: Optional[str] = None) -> Dict[str, Any]:
    """The preset's spec; ``num_samples`` or ``seconds`` override its duration (a synthesis
    preset's: ``num_frames``), ``precision`` ('single' | 'extended') its transforms'
    precision, ``target`` ('cpu' | 'cuda') the device its graph is laid out for."""
    files = _files()
    if not isinstance(name, str) or name not in files:
        raise ValueError(f"preset: unknown preset {name!r}; available: {', '.join(sorted(files))}")
    spec = json.loads(files[name].read_text(encoding="utf-8"))
    return with_overrides(spec, num_samples, seconds, precision, num_frames, target)


def load(name: str, num_samples: Optional[int] = None, seconds: Optional[float] = None,
         precision: Optional[str] = None, num_frames: Optional[int] = None,
         target: Optional[str] = None) -> Frontend:
    """Build a preset's frontend (``num_samples=None``: the preset's own length; a synthesis
    preset's ``num_frames=None``: its own; ``precision=None``: the preset's own; ``target``
    None: 'cpu')."""
    return Frontend.from_spec(get_spec(name, num_samples, seconds, precision, num_frames, target))
