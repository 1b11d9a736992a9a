"""Scriptable, shape-static spectrogram layers with nnAudio 0.3.x's arguments."""
from .stft import STFT
from .mel import MelSpectrogram, MFCC

__all__ = ["STFT", "MelSpectrogram", "MFCC"]

try:  # the CQT layers live in their own module
    from .cqt import CQT1992v2, CQT2010v2  # noqa: F401
    __all__ += ["CQT1992v2", "CQT2010v2"]
except ImportError:  # pragma: no cover - only while the module is being written
    pass
