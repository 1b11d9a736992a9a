"""The builder API: describe a frontend as a chain of stages, get a shape-static module
and its JSON spec."""
import copy
import inspect
import json
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Type, Union

import numpy as np
import torch
from torch import Tensor, nn

from .checks import KINDS, Param
from .spec import FORMAT, FORMAT_VERSION, compile_spec, normalize_spec
from .stages import STAGES, Stage


class Frontend(nn.Module):
    """A compiled frontend: one input tensor -> one output tensor, shapes fixed.

    Analysis (the usual): ``audio (batch, num_samples) -> features (batch, *output_shape)``;
    synthesis (a spec starting with ``spectrum_input``): ``spectrum (batch, *input_shape)
    -> audio (batch, num_samples)``.

    Build it with :class:`FrontendBuilder`, :meth:`from_spec` or
    ``nnaudio_export.presets.load``. Attributes: ``sample_rate``; ``num_samples`` (the audio
    length: the input's, or the output's for synthesis); ``input_name`` / ``output_name``
    (the bundle's tensor names: 'audio' -> 'features', or 'spectrum' -> 'audio');
    ``input_kind`` ('audio' | 'spectrum'), ``input_shape`` / ``output_shape`` (without
    batch), ``input_dtype`` ('float32' | 'int16'), ``input_channels``; ``output_kind``
    ('linear' | 'log' | 'cepstral'), ``db_per_unit`` (for log outputs when known); ``spec``
    (normalised, JSON-serialisable); ``bytes_per_item`` (estimated activation memory of one
    batch item; a build above the memory limit of :func:`nnaudio_export.checks.memory_limit`
    is refused).
    """

    __jit_unused_properties__ = ["spec", "input_shape"]

    def __init__(self, spec: Dict[str, Any], dtype: torch.dtype = torch.float32):
        super().__init__()
        norm = normalize_spec(spec)
        # Errors name stages as the user numbered them (normalize_spec may add the input).
        offset = 0 if len(norm["stages"]) == len(spec["stages"]) else -1
        compiled = compile_spec(norm, dtype, offset)
        self.stages = nn.Sequential(*compiled.modules)
        self._spec_json = json.dumps(norm, sort_keys=True)
        self.sample_rate = float(norm["sample_rate"])
        self.input_name, self.output_name = compiled.input.name, compiled.output.name
        self.input_kind = compiled.input.kind
        self.input_dtype = compiled.input.dtype
        self._input_shape = tuple(int(d) for d in compiled.input.shape)
        self.input_channels = self._input_shape[0] if self.input_kind == "audio" and len(self._input_shape) == 2 else 1
        self.output_shape = tuple(int(d) for d in compiled.output.shape)
        self.output_kind = compiled.output.kind
        self.db_per_unit = compiled.db_per_unit
        audio = self._input_shape if self.input_kind == "audio" else self.output_shape
        self.num_samples = int(audio[-1])
        self.bytes_per_item = compiled.bytes_per_item
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
        """Input shape without batch: audio (num_samples,) or (channels, num_samples); a
        spectrum e.g. (freq_bins, num_frames, 2)."""
        return self._input_shape

    def example_input(self, names: Sequence[str] = ("speech", "tones", "noise")) -> np.ndarray:
        """A deterministic input batch (numpy, the input's shape and dtype), one item per
        :data:`nnaudio_export.signals.SIGNALS` name: the signals themselves for audio
        inputs, their STFT in the input's layout for spectrum inputs."""
        return self.stages[0].example_input(tuple(names), self.sample_rate)

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

    A synthesis chain starts with ``spectrum_input`` and has no ``num_samples``::

        vocoder_tail = (FrontendBuilder(sample_rate=24000)
                          .spectrum_input(freq_bins=513, num_frames=256, layout="log_magnitude_phase")
                          .istft(n_fft=1024, hop_length=256, center=False, padding="same")
                          .build())             # (batch, 1026, 256) -> (batch, 65536)

    There is one method per stage type of :data:`nnaudio_export.stages.STAGES`, named
    after it, taking that stage's parameters (positionally in their declared order, or by
    name; ``help(FrontendBuilder.mel)`` lists them with defaults and types), plus
    :meth:`magnitude` (``power(1.0)``). Each returns the builder. A wrong parameter name or
    a missing required parameter raises ``TypeError`` at the call; values and the chain are
    checked at :meth:`build`, which raises ``ValueError`` naming the stage and parameter.
    """

    def __init__(self, sample_rate: float, num_samples: Optional[int] = None,
                 name: Optional[str] = None, description: Optional[str] = None):
        self._spec: Dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION,
                                      "sample_rate": sample_rate, "stages": []}
        if num_samples is not None:     # a synthesis chain (spectrum_input first) has none
            self._spec["num_samples"] = num_samples
        if name is not None:
            self._spec["name"] = name
        if description is not None:
            self._spec["description"] = description

    def _add(self, kind: str, params: Dict[str, Any]) -> "FrontendBuilder":
        self._spec["stages"].append({"type": kind, **copy.deepcopy(params)})
        return self

    def magnitude(self) -> "FrontendBuilder":
        """``|X|`` right after a transform: ``power(1.0)``."""
        return self._add("power", {"exponent": 1.0})

    @property
    def spec(self) -> Dict[str, Any]:
        return copy.deepcopy(self._spec)

    def build(self) -> Frontend:
        return Frontend.from_spec(self._spec)


def _describe(p: Param) -> str:
    kind = "one of " + ", ".join(repr(c) for c in p.choices) if p.choices else KINDS[p.kind]
    rng = []
    if p.low is not None:
        rng.append(f"{'>' if p.low_open else '>='} {p.low:g}")
    if p.high is not None:
        rng.append(f"<= {p.high:g}")
    default = "required" if p.required else f"default {p.default!r}"
    text = f"    {p.name}: {kind}{' ' + ' and '.join(rng) if rng else ''}"
    text += " or None" if p.optional and not p.choices else ""
    return text + f" ({default})" + (f"; {p.doc}" if p.doc else "")


def _stage_method(kind: str, cls: Type[Stage]) -> Callable[..., FrontendBuilder]:
    """The builder method for a stage type: signature, defaults and docs from its class."""
    fields = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    fields += [inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                 default=inspect.Parameter.empty if p.required else p.default)
               for p in cls.params]
    signature = inspect.Signature(fields)

    def method(self: FrontendBuilder, *args: Any, **kwargs: Any) -> FrontendBuilder:
        try:
            bound = signature.bind(self, *args, **kwargs)
        except TypeError as exc:
            known = ", ".join(p.name for p in cls.params) or "none"
            raise TypeError(f"{kind}(): {exc} (parameters: {known})") from None
        return self._add(kind, {k: v for k, v in bound.arguments.items() if k != "self"})

    method.__name__ = method.__qualname__ = kind
    method.__signature__ = signature  # type: ignore[attr-defined]
    doc = inspect.cleandoc(cls.__doc__ or kind)
    if cls.params:
        doc += "\n\nParameters (stage ``{}``):\n".format(kind) + "\n".join(_describe(p) for p in cls.params)
    method.__doc__ = doc
    return method


for _kind, _cls in STAGES.items():
    setattr(FrontendBuilder, _kind, _stage_method(_kind, _cls))
