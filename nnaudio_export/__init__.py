"""nnaudio_export: spectrogram frontends as verified production artifacts.

Layers (``nnaudio_export.layers``) -> builder/spec -> export (``export``) ->
runtime (``load``) / parity (``verify``) -> CLI (``nnaudio-export``).
"""
from . import layers, presets
from .builder import Frontend, FrontendBuilder

__version__ = "0.1.0"

try:  # export / runtime / parity are added on top of the builder
    from .bundle import export
    from .runtime import load
    from .parity import verify
except ImportError:  # pragma: no cover
    pass

__all__ = ["Frontend", "FrontendBuilder", "layers", "presets", "export", "load", "verify", "__version__"]
