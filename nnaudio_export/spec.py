"""Frontend specs: a JSON-serialisable description (format version, sample rate, length,
stage list, the device the graph is laid out for) and its compilation into scriptable stage
modules.

Every stage type, its parameters, defaults and checks come from the registry in
:mod:`nnaudio_export.stages`; this module only validates the top level, fills defaults and
runs the chain.

Two directions, told apart by the first stage: an analysis spec takes audio (its ``input``
stage, inserted when missing) of ``num_samples`` samples; a synthesis spec starts with
``spectrum_input``, whose ``num_frames`` (and ``freq_bins``) fix its input shape, and has no
``num_samples`` / ``length_policy`` (its output length is the synthesis stage's ``length``,
by default the natural one).
"""
import copy
import json
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from .checks import is_int, is_number, require_choice, require_memory
from .layers import PRECISIONS, TARGETS
from .manifest import AUDIO_NAME, FEATURES_NAME
from .stages import STAGES, Context, InputStageBase, Stage, TensorInfo
from .stages.layout import fold_frame_trims

FORMAT = "nnaudio_export.frontend"
FORMAT_VERSION = 1
TOP_KEYS = ("format", "format_version", "name", "description", "reference", "sample_rate",
            "num_samples", "length_policy", "target", "stages", "notes")
# How deployments should treat audio of another length: 'exact' (refuse it) or
# 'pad_or_trim' (zero-pad / cut to num_samples first, as Whisper does).
LENGTH_POLICIES = ("exact", "pad_or_trim")

# Every stage type's parameters and defaults (required parameters have none), derived from
# the registry. A normalised spec states every number it depends on.
STAGE_DEFAULTS: Dict[str, Dict[str, Any]] = {
    kind: {p.name: p.default for p in cls.params if not p.required} for kind, cls in STAGES.items()}
# Stage types whose transform takes a ``precision``.
PRECISION_STAGES = tuple(kind for kind, cls in STAGES.items()
                         if any(p.name == "precision" for p in cls.params))


@dataclass
class CompiledSpec:
    """What compiling a spec gives: the stage modules, the input and output tensors (the
    output's kind: 'linear', 'log' or 'cepstral', a DCT of logs) and, for log outputs, dB
    per output unit when known."""
    modules: List[nn.Module]
    input: TensorInfo
    output: TensorInfo
    db_per_unit: Optional[float]
    bytes_per_item: int              # estimated activation memory of one batch item


def stage_error(index: int, kind: str, msg: str) -> ValueError:
    return ValueError(f"stages[{index}] ({kind}): {msg}")


def check_stage_params(kind: str, given: Dict[str, Any]) -> Dict[str, Any]:
    """``given`` (without 'type') checked against the stage's declared parameters and
    completed with defaults; raises ``ValueError`` naming the parameter."""
    cls = STAGES[kind]
    known = [p.name for p in cls.params]
    bad = sorted(set(given) - set(known))
    if bad:
        raise ValueError(f"unknown parameter(s) {bad}; known: {sorted(known)}")
    full: Dict[str, Any] = {}
    for p in cls.params:
        if p.name not in given:
            if p.required:
                raise ValueError(f"{p.name} is required")
            full[p.name] = copy.deepcopy(p.default)
            continue
        p.check(given[p.name])
        full[p.name] = p.canonical(given[p.name])
    return full


def input_kind(spec: Dict[str, Any]) -> str:
    """'spectrum' for a synthesis spec (its first stage is ``spectrum_input``), else
    'audio' (an analysis spec; its audio ``input`` stage may be left implicit)."""
    stages = spec.get("stages")
    first = stages[0] if isinstance(stages, list) and stages and isinstance(stages[0], dict) else {}
    cls = STAGES.get(first.get("type"))
    return cls.input_kind if cls is not None and issubclass(cls, InputStageBase) else "audio"


def _check_top_level(spec: Dict[str, Any]) -> None:
    unknown = set(spec) - set(TOP_KEYS)
    if unknown:
        raise ValueError(f"spec: unknown keys {sorted(unknown)}")
    if spec.get("format", FORMAT) != FORMAT:
        raise ValueError(f"spec.format must be {FORMAT!r}, got {spec.get('format')!r}")
    version = spec.get("format_version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise ValueError(f"spec.format_version {version} is not supported (this is {FORMAT_VERSION})")
    sr = spec.get("sample_rate")
    if not is_number(sr) or sr <= 0:
        raise ValueError(f"sample_rate must be a positive finite number, got {sr!r}")
    if input_kind(spec) == "spectrum":
        for key in ("num_samples", "length_policy"):
            if key in spec:
                raise ValueError(f"{key}: a synthesis spec (spectrum_input first) has none: its "
                                 "input shape is spectrum_input's num_frames and freq_bins, its "
                                 "output length the synthesis stage's length")
    else:
        n = spec.get("num_samples")
        if not is_int(n) or n <= 0:
            raise ValueError(f"num_samples must be a positive integer, got {n!r}")
        require_choice(spec.get("length_policy", "exact"), "length_policy", LENGTH_POLICIES)
    require_choice(spec.get("target", "cpu"), "target", TARGETS)
    stages = spec.get("stages")
    if not isinstance(stages, list) or not stages:
        raise ValueError("stages must be a non-empty list")


def normalize_spec(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Validate the top level and every stage's parameters, fill stage defaults, put an
    input stage first when there is none; return a new dict (input untouched). Errors name
    the stage by its position in ``spec['stages']``."""
    if not isinstance(spec, dict):
        raise ValueError(f"spec must be a dict, got {type(spec).__name__}")
    _check_top_level(spec)
    filled = []
    for i, st in enumerate(spec["stages"]):
        if not isinstance(st, dict) or "type" not in st:
            raise ValueError(f"stages[{i}]: must be an object with a 'type'")
        kind = st["type"]
        if kind not in STAGES:
            raise stage_error(i, kind, f"unknown stage type; known: {sorted(STAGES)}")
        try:
            params = check_stage_params(kind, {k: v for k, v in st.items() if k != "type"})
        except ValueError as exc:
            raise stage_error(i, kind, str(exc)) from None
        filled.append({"type": kind, **params})
    if STAGES[filled[0]["type"]].role != "input":
        filled.insert(0, {"type": "input", **copy.deepcopy(STAGE_DEFAULTS["input"])})
    out = {"format": FORMAT, "format_version": FORMAT_VERSION}
    for k in ("name", "description", "reference", "notes"):
        if k in spec:
            out[k] = copy.deepcopy(spec[k])
    out["sample_rate"] = spec["sample_rate"]
    if input_kind(spec) == "audio":
        out.update({"num_samples": spec["num_samples"],
                    "length_policy": spec.get("length_policy", "exact")})
    out["target"] = spec.get("target", "cpu")
    out["stages"] = filled
    json.dumps(out, allow_nan=False)  # must be strict JSON
    return out


def compile_spec(spec: Dict[str, Any], dtype: torch.dtype = torch.float32,
                 index_offset: int = 0) -> CompiledSpec:
    """Turn a normalised spec into stage modules with kernels of ``dtype``, checking the
    chain; raises ``ValueError`` naming the stage and parameter for an invalid chain.
    ``index_offset`` maps positions in ``spec['stages']`` to the ones the user wrote
    (-1 when :func:`normalize_spec` put the input stage in)."""
    n = int(spec.get("num_samples", 0))      # audio input length; 0: a spectrum input
    ctx = Context(sample_rate=float(spec["sample_rate"]), num_samples=n, dtype=dtype,
                  shape=(n,) if n else (), target=spec.get("target", "cpu"))
    modules: List[Stage] = []
    in_shapes: List[Tuple[int, ...]] = []      # each module's input shape
    for i, st in enumerate(spec["stages"]):
        kind = st["type"]
        cls = STAGES[kind]
        try:
            ctx = ctx.but(index=i)
            cls.check_context(ctx)
            params = {k: v for k, v in st.items() if k != "type"}
            in_shape = ctx.shape
            module, ctx = cls.build(params, ctx, modules[-1] if modules else None)
            if module is None:                  # folded into the previous module
                shape = modules[-1].out_shape(in_shapes[-1])
            else:
                modules.append(module)
                in_shapes.append(in_shape)
                shape = module.out_shape(in_shape)
        except ValueError as exc:
            raise stage_error(i + index_offset, kind, str(exc)) from None
        if any(d <= 0 for d in shape):
            short = f"num_samples={n}" if n else "spectrum_input.num_frames"
            raise stage_error(i + index_offset, kind, f"output shape {shape} is empty: {short} is too short")
        ctx = ctx.but(shape=tuple(shape))
    if ctx.input.kind == "audio" and ctx.domain == "audio":
        raise ValueError("stages: a frontend needs a transform stage (stft, cqt or kaldi_stft)")
    fold_frame_trims(modules, in_shapes)
    if ctx.input.kind == "spectrum" and ctx.domain != "audio":
        raise ValueError("stages: a synthesis spec needs a synthesis stage (istft)")
    name = AUDIO_NAME if ctx.domain == "audio" else FEATURES_NAME
    output = TensorInfo(name, tuple(ctx.shape), "float32", ctx.output_kind)
    elements = math.prod(ctx.input.shape) + sum(m.work_elements(s) for m, s in zip(modules, in_shapes))
    per_item = elements * torch.empty(0, dtype=dtype).element_size()
    what = f"one batch item of {n} samples" if n else f"one batch item of shape {list(ctx.input.shape)}"
    require_memory(per_item, "num_samples" if n else "spectrum_input.num_frames", f"{what} through these stages")
    return CompiledSpec(modules, ctx.input, output, ctx.db_per_unit, int(per_item))


def transform_precisions(spec: Dict[str, Any]) -> set:
    """The ``precision`` values of a spec's transform stages ('single' when unset)."""
    return {st.get("precision", "single") for st in spec.get("stages", [])
            if isinstance(st, dict) and st.get("type") in PRECISION_STAGES}


def with_precision(spec: Dict[str, Any], precision: str) -> Dict[str, Any]:
    """A copy of ``spec`` whose transform stages (those with a ``precision``) run at
    ``precision``: 'single' (float32) or 'extended' (a DFT bank's factorised stages in
    float64, other banks an error-free split; see :mod:`nnaudio_export.layers.frame_conv`)."""
    require_choice(precision, "precision", PRECISIONS)
    spec = copy.deepcopy(spec)
    hits = [st for st in spec.get("stages", []) if isinstance(st, dict) and st.get("type") in PRECISION_STAGES]
    if not hits:
        raise ValueError(f"precision: the spec has no {' or '.join(PRECISION_STAGES)} stage to set it on")
    for st in hits:
        st["precision"] = precision
    return spec


def with_overrides(spec: Dict[str, Any], num_samples: Optional[int] = None,
                   seconds: Optional[float] = None, precision: Optional[str] = None,
                   num_frames: Optional[int] = None, target: Optional[str] = None) -> Dict[str, Any]:
    """A copy of ``spec`` with its duration, its transforms' ``precision`` and its
    ``target`` ('cpu' | 'cuda': the device the graph is laid out for) replaced where given. The duration of an analysis spec is its input audio (``num_samples`` or
    ``seconds``, not both); of a synthesis spec its input frames (``num_frames``)."""
    spec = copy.deepcopy(spec)
    if num_samples is not None and seconds is not None:
        raise ValueError("give num_samples or seconds, not both")
    synthesis = input_kind(spec) == "spectrum"
    if synthesis and (num_samples is not None or seconds is not None):
        raise ValueError("num_samples/seconds: a synthesis spec's duration is its input's "
                         "num_frames (spectrum_input); give num_frames")
    if num_frames is not None:
        if not synthesis:
            raise ValueError("num_frames: only a synthesis spec (spectrum_input first) has "
                             "num_frames; give num_samples or seconds")
        if not is_int(num_frames) or num_frames <= 0:
            raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
        spec["stages"][0]["num_frames"] = int(num_frames)
    if seconds is not None:
        if not is_number(seconds) or seconds <= 0:
            raise ValueError(f"seconds must be a positive finite number, got {seconds!r}")
        sr = spec.get("sample_rate")
        if not is_number(sr) or sr <= 0:
            raise ValueError(f"sample_rate must be a positive finite number, got {sr!r}")
        num_samples = int(round(seconds * float(sr)))
    if num_samples is not None:
        if not is_int(num_samples) or num_samples <= 0:
            raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
        spec["num_samples"] = int(num_samples)
    if precision is not None:
        spec = with_precision(spec, precision)
    if target is not None:
        require_choice(target, "target", TARGETS)
        spec["target"] = target
    return spec
