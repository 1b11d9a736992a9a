"""The builder API: describe a frontend as a chain of stages, get a shape-static module
and its JSON spec."""
import copy
import json
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from .layers._base import kernel_dtype
from .spec import FORMAT, FORMAT_VERSION, STAGE_DEFAULTS, compile_spec, normalize_spec


class Frontend(nn.Module):
    """A compiled frontend: ``audio (batch, num_samples) -> features (batch, *output_shape)``.

    Build it with :class:`FrontendBuilder`, :meth:`from_spec` or
    ``nnaudio_export.presets.load``. Attributes: ``sample_rate``, ``num_samples``,
    ``output_shape`` (without batch), ``spec`` (normalised, JSON-serialisable),
    ``output_kind`` ('linear' | 'log'), ``db_per_unit`` (for log outputs when known),
    ``input_dtype`` ('float32' | 'int16'), ``input_channels``.
    """

    __jit_unused_properties__ = ["spec", "input_shape"]

    def __init__(self, spec: Dict[str, Any], dtype: torch.dtype = torch.float32):
        super().__init__()
        norm = normalize_spec(spec)
        with kernel_dtype(dtype):
            compiled = compile_spec(norm)
        self.stages = nn.Sequential(*compiled.modules)
        self._spec_json = json.dumps(norm, sort_keys=True)
        self.sample_rate = float(norm["sample_rate"])
        self.num_samples = int(norm["num_samples"])
        self.output_shape = tuple(int(d) for d in compiled.output_shape)
        self.output_kind = compiled.output_kind
        self.db_per_unit = compiled.db_per_unit
        self.input_dtype = compiled.input_dtype
        self.input_channels = compiled.input_channels
        self.name = str(norm.get("name", "frontend"))

    @classmethod
    def from_spec(cls, spec: Union[Dict[str, Any], str], dtype: torch.dtype = torch.float32) -> "Frontend":
        """Rebuild from a spec dict or its JSON text; the same spec gives the same output
        bit for bit. ``dtype=torch.float64`` keeps the kernels in float64 (a reference)."""
        if isinstance(spec, str):
            spec = json.loads(spec)
        return cls(spec, dtype=dtype)

    @property
    def spec(self) -> Dict[str, Any]:
        return json.loads(self._spec_json)

    @property
    def input_shape(self) -> Tuple[int, ...]:
        """Input shape without batch: (num_samples,) or (channels, num_samples)."""
        if self.input_channels == 1:
            return (self.num_samples,)
        return (self.input_channels, self.num_samples)

    def forward(self, audio: Tensor) -> Tensor:
        return self.stages(audio)

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, sample_rate={self.sample_rate:g}, num_samples={self.num_samples}, "
                f"output_shape={self.output_shape}")


class FrontendBuilder:
    """Chain stages into a :class:`Frontend`::

        fe = (FrontendBuilder(sample_rate=16000, num_samples=480_000)
                .stft(n_fft=400, hop_length=160).power(2.0)
                .mel(n_mels=80, norm="slaney").log10(floor=1e-10).build())

    Every method takes the parameters of its stage (see ``nnaudio_export.spec.STAGE_DEFAULTS``)
    and returns the builder. Checks run at :meth:`build`, which raises ``ValueError``
    naming the stage and parameter of an invalid chain.
    """

    def __init__(self, sample_rate: float, num_samples: int, name: Optional[str] = None,
                 description: Optional[str] = None):
        self._spec: Dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION,
                                      "sample_rate": sample_rate, "num_samples": num_samples,
                                      "stages": []}
        if name is not None:
            self._spec["name"] = name
        if description is not None:
            self._spec["description"] = description

    def _add(self, kind: str, **params: Any) -> "FrontendBuilder":
        unknown = set(params) - set(STAGE_DEFAULTS[kind])
        if unknown:
            raise ValueError(f"{kind}() got unknown parameter(s) {sorted(unknown)}; "
                            f"known: {sorted(STAGE_DEFAULTS[kind])}")
        self._spec["stages"].append({"type": kind, **params})
        return self

    # input
    def input(self, dtype: str = "float32", channels: int = 1, scale: Optional[float] = None) -> "FrontendBuilder":
        """PCM input: 'float32' or 'int16' (scaled by ``scale``, default 1/32768), mono or
        stereo (downmixed in the graph). Must be first; default float32 mono."""
        return self._add("input", dtype=dtype, channels=channels, scale=scale)

    # transforms
    def stft(self, **params: Any) -> "FrontendBuilder":
        """STFT (the :class:`~nnaudio_export.layers.STFT` layer's arguments, sr from the builder)."""
        return self._add("stft", **params)

    def cqt(self, kind: str = "1992v2", **params: Any) -> "FrontendBuilder":
        """CQT: ``kind`` '1992v2' or '2010v2' and the CQT layers' arguments."""
        return self._add("cqt", kind=kind, **params)

    def kaldi_stft(self, **params: Any) -> "FrontendBuilder":
        """Kaldi fbank's power spectrum (win_length, hop_length in samples, window 'povey' |
        'hanning' | 'hamming' | ..., remove_dc_offset, preemphasis, round_to_power_of_two,
        snip_edges); the per-frame linear steps are folded into the conv kernel."""
        return self._add("kaldi_stft", **params)

    # audio (before the transform)
    def preemphasis(self, coefficient: float = 0.97) -> "FrontendBuilder":
        """Whole-signal ``y[n] = x[n] - c x[n-1]``, ``y[0] = x[0]`` (NeMo)."""
        return self._add("preemphasis", coefficient=coefficient)

    def repeat_pad(self, length: int) -> "FrontendBuilder":
        """Tile the clip ``int(length / num_samples)`` times, zero-pad to ``length`` (CLAP)."""
        return self._add("repeat_pad", length=length)

    # spectral
    def kaldi_mel(self, n_mels: int = 80, low_freq: float = 20.0, high_freq: float = 0.0) -> "FrontendBuilder":
        """Kaldi mel banks (``1127 ln(1 + f/700)``, triangles in mel space; high_freq <= 0 is
        Nyquist + high_freq)."""
        return self._add("kaldi_mel", n_mels=n_mels, low_freq=low_freq, high_freq=high_freq)

    def speechbrain_mel(self, n_mels: int = 40, fmin: float = 0.0, fmax: Optional[float] = None) -> "FrontendBuilder":
        """SpeechBrain's triangular filterbank (HTK mel edges, triangles symmetric in Hz)."""
        return self._add("speechbrain_mel", n_mels=n_mels, fmin=fmin, fmax=fmax)

    def power(self, exponent: float = 2.0) -> "FrontendBuilder":
        """``|X| ** exponent`` right after a transform (fused into it)."""
        return self._add("power", exponent=exponent)

    def magnitude(self) -> "FrontendBuilder":
        return self.power(1.0)

    def mel(self, **params: Any) -> "FrontendBuilder":
        """Mel filterbank (librosa ``filters.mel`` semantics: norm 'slaney' | None | number)."""
        return self._add("mel", **params)

    def mfcc(self, n_mfcc: int = 20, norm: Optional[str] = "ortho") -> "FrontendBuilder":
        """DCT-II of log/dB features (librosa ``feature.mfcc``)."""
        return self._add("mfcc", n_mfcc=n_mfcc, norm=norm)

    # scaling
    def log(self, floor: Optional[float] = None, offset: float = 0.0) -> "FrontendBuilder":
        """``ln(max(x + offset, floor))``."""
        return self._add("log", floor=floor, offset=offset)

    def log10(self, floor: Optional[float] = None, offset: float = 0.0) -> "FrontendBuilder":
        """``log10(max(x + offset, floor))``."""
        return self._add("log10", floor=floor, offset=offset)

    def db(self, ref: float = 1.0, amin: float = 1e-10, top_db: Optional[float] = None,
           multiplier: float = 10.0) -> "FrontendBuilder":
        """librosa ``power_to_db`` (``multiplier=20`` for amplitudes), top_db per item."""
        return self._add("db", ref=ref, amin=amin, top_db=top_db, multiplier=multiplier)

    def dynamic_range(self, value_range: float = 8.0) -> "FrontendBuilder":
        """``max(x, item_max - value_range)`` (Whisper: 8 in log10 units)."""
        return self._add("dynamic_range", range=value_range)

    def affine(self, scale: float = 1.0, offset: float = 0.0) -> "FrontendBuilder":
        return self._add("affine", scale=scale, offset=offset)

    # normalisation
    def standardize(self, mean: Union[float, Sequence[float]], std: Union[float, Sequence[float]]) -> "FrontendBuilder":
        """``(x - mean) / std`` with fixed scalars or per-feature lists."""
        return self._add("standardize", mean=mean, std=std)

    def normalize(self, mode: str = "per_feature", eps: float = 1e-5, unbiased: bool = True,
                  valid_frames: Optional[int] = None) -> "FrontendBuilder":
        """Per-item mean/std normalisation computed from the features (NeMo)."""
        return self._add("normalize", mode=mode, eps=eps, unbiased=unbiased, valid_frames=valid_frames)


    # layout
    def trim_frames(self, start: int = 0, end: int = 0) -> "FrontendBuilder":
        return self._add("trim_frames", start=start, end=end)

    def fix_frames(self, frames: int, value: float = 0.0) -> "FrontendBuilder":
        return self._add("fix_frames", frames=frames, value=value)

    def pad_to_multiple(self, multiple: int = 16, value: float = 0.0) -> "FrontendBuilder":
        """Pad the time axis with ``value`` to a multiple of ``multiple`` frames (NeMo pad_to)."""
        return self._add("pad_to_multiple", multiple=multiple, value=value)

    def time_major(self) -> "FrontendBuilder":
        return self._add("time_major")

    @property
    def spec(self) -> Dict[str, Any]:
        return copy.deepcopy(self._spec)

    def build(self) -> Frontend:
        return Frontend.from_spec(self._spec)
