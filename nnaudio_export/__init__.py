"""nnaudio_export: spectrogram frontends as verified production artifacts.

Layers (``nnaudio_export.layers``) -> stages -> spec / builder (``Frontend``,
``FrontendBuilder``) -> bundle writer -> runtime (``load``) / parity (``verify``) ->
``export`` (write + verify + reference) -> CLI (``nnaudio-export``). See the README's
"Architecture" section for what each module may import.

The names below are imported on first use, so ``import nnaudio_export`` stays cheap (no
torch until a frontend, layer or bundle is touched).
"""
import importlib
from typing import Any

from ._version import __version__

_LAZY = {
    "Frontend": ("builder", "Frontend"),
    "FrontendBuilder": ("builder", "FrontendBuilder"),
    "export": ("api", "export"),
    "load": ("runtime", "load"),
    "stream": ("stream_runtime", "stream"),
    "verify": ("parity", "verify"),
    "manifest_sha256": ("manifest", "manifest_sha256"),
    "from_nnaudio": ("convert", "from_nnaudio"),
    "convert_nnaudio": ("convert", "convert_nnaudio"),
    "layers": ("layers", None),
    "presets": ("presets", None),
    "from_hf": ("convert.hf", "from_hf"),
    "retain_freed_memory": ("allocator", "retain_freed_memory"),
}

__all__ = ["Frontend", "FrontendBuilder", "layers", "presets", "export", "load", "stream", "verify",
           "manifest_sha256", "from_hf", "from_nnaudio", "convert_nnaudio", "retain_freed_memory",
           "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'nnaudio_export' has no attribute {name!r}")
    module, attr = _LAZY[name]
    mod = importlib.import_module(f".{module}", __name__)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))
