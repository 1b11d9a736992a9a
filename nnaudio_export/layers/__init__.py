"""Scriptable, shape-static spectrogram layers with nnAudio 0.3.x's arguments (:class:`VQT`, :class:`Gammatonegram`: nnAudio2 2.0.3's; the
inverses too: :class:`iSTFT`, :class:`GriffinLim`), and the pieces they share: :func:`register_kernel` (a kernel as parameter or buffer),
:class:`FrontendLayer` (fixed lengths, known output shapes) and the frame-conv modules that
apply a kernel bank at a chosen precision (:func:`frame_conv`)."""
from .common import FrontendLayer, kernel_tensor, register_kernel
from .cqt import CQT1992v2, CQT2010v2
from .factorised_dft import TARGETS, FactorisedDFT
from .frame_conv import PRECISIONS, DFTFrames, FrameConv, SplitFrameConv, frame_conv
from .gammatone import Gammatonegram
from .griffin_lim import GriffinLim
from .inverse_dft import FactoredIRFFT, MatrixIRFFT, ThreeStageIRFFT, irfft_module
from .istft import iSTFT
from .kaldi import KaldiSTFT
from .mel import MFCC, MelSpectrogram
from .stft import STFT
from .vqt import VQT

__all__ = ["STFT", "MelSpectrogram", "MFCC", "CQT1992v2", "CQT2010v2", "VQT", "Gammatonegram", "KaldiSTFT", "iSTFT", "GriffinLim",
           "FrontendLayer", "register_kernel", "kernel_tensor", "PRECISIONS", "TARGETS", "FrameConv",
           "SplitFrameConv", "frame_conv", "DFTFrames", "FactorisedDFT", "FactoredIRFFT", "ThreeStageIRFFT",
           "MatrixIRFFT", "irfft_module"]
