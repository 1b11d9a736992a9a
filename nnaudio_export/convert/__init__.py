"""Converters: turn what users already have into this package's frontends and layers —
a Hugging Face feature extractor (:mod:`.hf`, ``nx.from_hf``: built as a spec through the
builder's stages) or nnAudio 0.3.x / nnAudio2 2.0.x layers (:mod:`.nnaudio`,
``nx.from_nnaudio`` / ``nx.convert_nnaudio``: their kernels copied, trained or not)."""
from .nnaudio import convert_nnaudio, from_nnaudio

__all__ = ["from_nnaudio", "convert_nnaudio"]
