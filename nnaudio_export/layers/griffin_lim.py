"""Griffin-Lim phase reconstruction with a fixed number of iterations and a deterministic
start, built from the STFT and iSTFT layers."""
from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from .. import functional as FN
from ..checks import REQUIRED, Param, check_args, require
from ..kernels.windows import WindowSpec
from .common import kernel_tensor
from .istft import iSTFT
from .stft import PAD_MODES, STFT


GRIFFIN_LIM_ARGS = (Param("n_fft", REQUIRED, "int", low=2),
                    Param("n_iter", 32, "int", low=1),
                    Param("hop_length", None, "int", optional=True, low=1),
                    Param("win_length", None, "int", optional=True, low=1),
                    Param("window", "hann", "window"),
                    Param("center", True, "bool"),
                    Param("pad_mode", "constant", "str", choices=PAD_MODES),
                    Param("momentum", 0.99, "number", low=0, high=1),
                    Param("power", 1.0, "number", low=0, low_open=True,
                          doc="1: magnitude, 2: power spectrogram"),
                    Param("length", None, "int", optional=True, low=1),
                    Param("freq_bins", None, "int", optional=True, low=1),
                    Param("num_frames", None, "int", optional=True, low=1))


class GriffinLim(nn.Module):
    """Audio ``(B, L)`` from a magnitude (``power=1``) or power (``power=2``) spectrogram
    ``(B, n_fft // 2 + 1, T)`` by the fast Griffin-Lim algorithm (Perraudin, Balazs &
    Soendergaard 2013), step for step as ``librosa.griffinlim``::

        angles = S * start                      (start: zero phase, or ``init``)
        repeat n_iter times:
            rebuilt = STFT(iSTFT(angles))
            angles  = rebuilt - momentum / (1 + momentum) * previous rebuilt
            angles  = S * angles / |angles|        (0 where |angles| = 0)
        return iSTFT(angles)

    with the :class:`~nnaudio_export.layers.STFT` and :class:`~nnaudio_export.layers.iSTFT`
    layers (same ``n_fft``, ``hop_length``, ``win_length``, ``window``, ``center``,
    ``pad_mode``, ``length``). The loop has a fixed count, so exporters unroll it: every
    runtime runs the same ``n_iter`` iterations. librosa divides by ``|angles| + tiny``
    (its ``util.tiny``); we take 0 where ``|angles| = 0`` instead, the same numbers
    (adding ``tiny`` changes no normal float), because exporters drop an ``x + 1e-38``.

    In float32 the result depends on rounding chaotically on some inputs: from zero phase a
    stationary tone's peak bin is rebuilt from near-cancelling frames, so its phase (and the
    waveform) follows the rounding; librosa's own float32 run is as far from its float64
    run there (see the tests). The float64 build matches ``librosa.griffinlim`` to ~1e-9.

    Arguments are nnAudio 0.3.x ``Griffin_Lim``'s (``n_fft``, ``n_iter``, ``hop_length``,
    ``win_length``, ``window``, ``center``, ``pad_mode``, ``momentum``) plus ``power``,
    ``length``, ``freq_bins`` (only ``n_fft // 2 + 1``, checked), ``num_frames`` (fixes
    ``T``), ``init`` and ``dtype``.

    Differences, on purpose: the start is deterministic, zero phase (``init=None``, as
    ``librosa.griffinlim(init=None)``) or the given phases ``init`` (radians,
    ``(n_fft // 2 + 1, num_frames)``), where nnAudio and librosa's default draw a random
    phase; ``pad_mode`` defaults to 'constant' (librosa's; nnAudio's is 'reflect');
    ``momentum`` must be in [0, 1) (librosa also allows more, with a warning).
    """

    __jit_unused_properties__ = ["num_frames", "output_shape"]
    # Float32 rounding grows through the iterations (above): nnaudio_export.parity judges a
    # bundle holding this layer per item against the measured float32 spread.
    amplifies_rounding = True

    def __init__(self, n_fft: int, n_iter: int = 32, hop_length: Optional[int] = None,
                 win_length: Optional[int] = None, window: WindowSpec = "hann",
                 center: bool = True, pad_mode: str = "constant", momentum: float = 0.99,
                 power: float = 1.0, length: Optional[int] = None,
                 freq_bins: Optional[int] = None, num_frames: Optional[int] = None,
                 init: Optional[np.ndarray] = None, dtype: torch.dtype = torch.float32):
        super().__init__()
        check_args(GRIFFIN_LIM_ARGS, locals())
        require(momentum < 1.0, "momentum", f"must be in [0, 1), got {momentum}")
        self.n_iter = int(n_iter)
        bins = n_fft // 2 + 1
        require(freq_bins is None or freq_bins == bins, "freq_bins",
                f"Griffin-Lim takes a one-sided spectrogram of n_fft // 2 + 1 = {bins} bins, got {freq_bins!r}")
        require(length is None or num_frames is not None, "length",
                "needs num_frames, to check that the STFT of length samples has num_frames frames")
        self.istft = iSTFT(n_fft, win_length, bins, hop_length, window, center=center,
                           length=length, num_frames=num_frames, dtype=dtype)
        hop = self.istft.hop_length
        if num_frames is not None and length is not None:
            frames = FN.frame_count(length, n_fft, hop, center)
            require(frames == num_frames, "length",
                    f"the STFT of {length} samples has {frames} frames, not num_frames={num_frames}")
        self.stft = STFT(n_fft, self.istft.win_length, bins, hop, window, center=center,
                         pad_mode=pad_mode, output_format="Complex", verbose=False, dtype=dtype)
        self.freq_bins = bins
        self.power = float(power)
        self.momentum = float(momentum)
        self.decay = self.momentum / (1.0 + self.momentum)
        self.has_init = init is not None
        phase = self._init_phase(init, bins, num_frames)
        self.register_buffer("init_cos", kernel_tensor(np.cos(phase), dtype))
        self.register_buffer("init_sin", kernel_tensor(np.sin(phase), dtype))

    @staticmethod
    def _init_phase(init: Optional[np.ndarray], bins: int, num_frames: Optional[int]) -> np.ndarray:
        if init is None:
            return np.zeros((0, 0))
        require(num_frames is not None, "init", "given phases need num_frames")
        phase = np.asarray(init, dtype=np.float64)
        require(phase.shape == (bins, num_frames), "init",
                f"expected phases of shape ({bins}, {num_frames}), got {phase.shape}")
        require(bool(np.all(np.isfinite(phase))), "init", "phases must be finite")
        return phase

    @property
    def num_frames(self) -> Optional[int]:
        return self.istft.num_frames

    @property
    def output_shape(self) -> Optional[Tuple[int, ...]]:
        return self.istft.output_shape

    def output_shape_for(self, num_frames: int) -> Tuple[int, ...]:
        return self.istft.output_shape_for(num_frames)

    def forward(self, x: Tensor) -> Tensor:
        FN.check_spectrum(x, 3, self.freq_bins, self.istft._num_frames, self.istft._min_frames)
        if self.power == 1.0:
            mag = x
        elif self.power == 2.0:
            mag = torch.sqrt(x)
        else:
            mag = torch.pow(x, 1.0 / self.power)
        if self.has_init:
            real, imag = mag * self.init_cos, mag * self.init_sin
        else:
            real, imag = mag, torch.zeros_like(mag)
        prev_real, prev_imag = torch.zeros_like(mag), torch.zeros_like(mag)
        for _ in range(self.n_iter):
            rebuilt_real, rebuilt_imag = self.stft.spectrum(self.istft.synthesize(real, imag))
            # The first iteration has no previous estimate: zero, as librosa's tprev=None.
            real = rebuilt_real - self.decay * prev_real
            imag = rebuilt_imag - self.decay * prev_imag
            scale = FN.rescale_factor(torch.sqrt(real * real + imag * imag), mag)
            real, imag = real * scale, imag * scale
            prev_real, prev_imag = rebuilt_real, rebuilt_imag
        return self.istft.synthesize(real, imag)

    def extra_repr(self) -> str:
        return f"n_iter={self.n_iter}, momentum={self.momentum}, power={self.power}, init={'given' if self.has_init else 'zero phase'}"
