"""The builder API: describe a frontend as a chain of stages, get a shape-static module
and its JSON spec."""
import copy
import hashlib
import inspect
import json
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Type, Union

import numpy as np
import torch
from torch import Tensor, nn

from .checks import KINDS, Param, is_int, is_number, require, require_choice
from .manifest import AUDIO_NAME, FEATURES_NAME
from .signals import batch as signal_batch
from .spec import FORMAT, FORMAT_VERSION, compile_spec, normalize_spec
from .stages import STAGES, Stage

WEIGHTS_FORMAT = "nnaudio_export.frontend_weights"
OUTPUT_KINDS = ("linear", "log", "cepstral")


def state_sha256(module: nn.Module) -> str:
    """sha256 of a module's state dict: every entry's name, dtype, shape and bytes, in
    name order (the digest a manifest records for a trained frontend or a module)."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        a = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{a.dtype}|{list(a.shape)}|".encode())
        h.update(a.numpy().tobytes() if a.dtype != torch.bfloat16 else a.float().numpy().tobytes())
    return h.hexdigest()


def _weight_paths(path: Union[str, Path]) -> Tuple[Path, Path]:
    """(spec .json, .safetensors) of a saved frontend: ``path`` with either suffix or none."""
    p = Path(path)
    base = p.with_suffix("") if p.suffix in (".json", ".safetensors") else p
    return Path(str(base) + ".json"), Path(str(base) + ".safetensors")


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

    def matches_spec(self) -> bool:
        """Whether the weights are the ones the spec builds (False once trained or loaded
        with other values): only then can a verifier rebuild this module from its spec."""
        fresh = Frontend(self.spec).state_dict()
        mine = self.state_dict()
        return fresh.keys() == mine.keys() and all(
            torch.equal(fresh[k], mine[k].detach().to("cpu", fresh[k].dtype)) for k in fresh)

    def save(self, path: Union[str, Path]) -> Tuple[Path, Path]:
        """Write the spec to ``PATH.json`` and the state dict (trained kernels included) to
        ``PATH.safetensors`` (``path`` with or without either suffix); return both paths.
        :meth:`load` rebuilds the module from the spec and loads the weights into it."""
        from safetensors.torch import save_file
        spec_path, weights_path = _weight_paths(path)
        state = {k: v.detach().to("cpu").contiguous().clone() for k, v in self.state_dict().items()}
        meta = {"format": WEIGHTS_FORMAT,
                "spec_sha256": hashlib.sha256(self._spec_json.encode()).hexdigest()}
        spec_path.write_text(json.dumps(self.spec, indent=2) + "\n", encoding="utf-8")
        save_file(state, str(weights_path), metadata=meta)
        return spec_path, weights_path

    @classmethod
    def load(cls, path: Union[str, Path]) -> "Frontend":
        """The frontend :meth:`save` wrote to ``PATH.json`` + ``PATH.safetensors``; the
        weights must have been saved with this spec (their metadata holds its digest)."""
        from safetensors import safe_open
        spec_path, weights_path = _weight_paths(path)
        for p in (spec_path, weights_path):
            require(p.is_file(), "path", f"{str(p)!r} does not exist (Frontend.save writes both)")
        fe = cls.from_spec(json.loads(spec_path.read_text(encoding="utf-8")))
        with safe_open(str(weights_path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
        want = hashlib.sha256(fe._spec_json.encode()).hexdigest()
        require(meta.get("format") == WEIGHTS_FORMAT and meta.get("spec_sha256") == want, "path",
                f"{str(weights_path)!r} was not saved with the spec {str(spec_path)!r}")
        mine = fe.state_dict()
        if set(state) != set(mine) or any(state[k].shape != mine[k].shape for k in mine):
            raise ValueError(f"path: {str(weights_path)!r} does not hold this spec's tensors "
                             f"(missing {sorted(set(mine) - set(state))[:4]}, extra "
                             f"{sorted(set(state) - set(mine))[:4]}, or other shapes)")
        fe.load_state_dict(state, strict=True)
        return fe


class ModuleFrontend(nn.Module):
    """Any module ``audio (batch, num_samples) float32 -> one tensor``, with the attributes
    of a :class:`Frontend` that export and verification read: one of our layers, or a model
    that contains them, trained or not (its weights are exported as they are).

    It has no spec: a bundle of it records the module's class, the sha256 of its state dict
    and the shapes, and is verified against the module itself (float32) and a float64 deep
    copy (``copy.deepcopy(m).double()``), then against golden.npz. ``output_kind``
    ('linear' | 'log' | 'cepstral') chooses the parity metric; ``db_per_unit`` the dB scale
    of a log output (None: judged on all values).
    """

    __jit_unused_properties__ = ["spec", "input_shape"]

    def __init__(self, module: nn.Module, sample_rate: float, num_samples: int,
                 output_kind: str = "linear", db_per_unit: Optional[float] = None):
        super().__init__()
        require(isinstance(module, nn.Module), "module", f"expected an nn.Module, got {type(module).__name__}")
        require(is_number(sample_rate) and sample_rate > 0, "sample_rate",
                f"a module needs sample_rate= (a positive number), got {sample_rate!r}")
        require(is_int(num_samples) and num_samples > 0, "num_samples",
                f"a module needs num_samples= (a positive integer; or seconds=), got {num_samples!r}")
        require_choice(output_kind, "output_kind", OUTPUT_KINDS)
        self.module = module
        self.sample_rate = float(sample_rate)
        self.num_samples = int(num_samples)
        self.input_name, self.output_name = AUDIO_NAME, FEATURES_NAME
        self.input_kind, self.input_dtype, self.input_channels = "audio", "float32", 1
        self._input_shape = (self.num_samples,)
        self.output_shape = self._probe_output()
        self.output_kind = output_kind
        self.db_per_unit = None if db_per_unit is None else float(db_per_unit)
        self.name = type(module).__name__
        self.module_class = f"{type(module).__module__}.{type(module).__qualname__}"
        # Rough activation estimate (float32): input, output and 4 intermediates of each.
        self.bytes_per_item = int(4 * 4 * (self.num_samples + int(np.prod(self.output_shape))))

    def _probe_output(self) -> Tuple[int, ...]:
        """The output shape without batch, from one call on zeros of batch 2."""
        dtype = next((t.dtype for t in self.module.state_dict().values() if t.is_floating_point()),
                     torch.float32)
        with torch.no_grad():
            y = self.module(torch.zeros(2, self.num_samples, dtype=dtype))
        if not isinstance(y, Tensor) or y.dim() < 2 or y.shape[0] != 2:
            got = list(y.shape) if isinstance(y, Tensor) else type(y).__name__
            raise ValueError(f"module: expected one tensor (batch, ...) for input (batch, "
                             f"{self.num_samples}), got {got}")
        return tuple(int(d) for d in y.shape[1:])

    @property
    def spec(self) -> Dict[str, Any]:
        return {}

    @property
    def input_shape(self) -> Tuple[int, ...]:
        return self._input_shape

    def example_input(self, names: Sequence[str] = ("speech", "tones", "noise")) -> np.ndarray:
        return signal_batch(self.num_samples, self.sample_rate, names=tuple(names))

    def forward(self, audio: Tensor) -> Tensor:
        return self.module(audio)


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
