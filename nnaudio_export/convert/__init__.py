"""Converters from other packages' layers to ours: :func:`from_nnaudio`,
:func:`convert_nnaudio` (nnAudio 0.3.x and nnAudio2 2.0.x)."""
from .nnaudio import convert_nnaudio, from_nnaudio

__all__ = ["from_nnaudio", "convert_nnaudio"]
