"""The stage registry: what a stage type is, what it may assume about the chain before it
(the :class:`Context`), and how a spec's stage entry becomes a module.

A stage type is ONE class (an ``nn.Module``) that declares

- ``type_name``: its ``"type"`` in a spec, and the builder method of the same name;
- ``role``: 'input', 'audio', 'transform', 'spectral', 'scaling', 'normalisation',
  'layout' or 'synthesis' (the README's stage table and the ``stages/`` file it lives in);
- ``params``: its parameters as :class:`~nnaudio_export.checks.Param` (name, default, type,
  range), from which the spec's defaults, the builder's signature and the type checks are
  all derived, so none of them can drift;
- ``check_context(ctx)``: where in a chain it may stand (raises ``ValueError``);
- ``build(params, ctx, previous)``: its module and the context after it.

:func:`register` adds a class to :data:`STAGES`; :func:`nnaudio_export.spec.compile_spec` is
a loop over a spec's stages that looks each one up here.
"""
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Dict, Optional, Sequence, Tuple, Type

import numpy as np
import torch
from torch import nn

from ..checks import Param

Shape = Tuple[int, ...]

ROLES = ("input", "audio", "transform", "spectral", "scaling", "normalisation", "layout",
         "synthesis")
# What the chain carries: audio samples, a complex spectrum (B, F, T, 2), a power or
# magnitude spectrum (B, F, T), or features derived from it.
DOMAINS = ("audio", "complex", "power", "features")
# What a frontend's input tensor is: audio samples (analysis: audio -> features) or a
# spectrum (synthesis: spectrum -> audio).
INPUT_KINDS = ("audio", "spectrum")


@dataclass(frozen=True)
class TensorInfo:
    """A frontend's input or output tensor: ``name`` (the bundle's tensor name), ``shape``
    without the batch axis, ``dtype`` ('float32' | 'int16') and ``kind``: for an input
    'audio' or 'spectrum' (:data:`INPUT_KINDS`), for an output how it is compared:
    'linear', 'log' or 'cepstral'."""

    name: str
    shape: Tuple[int, ...]
    dtype: str
    kind: str


@dataclass(frozen=True)
class Context:
    """Facts about the chain so far, given to each stage as it is built.

    ``shape`` is the output shape of the chain so far without the batch axis; ``power`` the
    exponent of ``|X|`` once the spectrum is a power/magnitude; ``n_fft`` the DFT size when
    the spectrum's bins are a plain DFT's ``0 .. n_fft // 2`` (what a mel filterbank needs),
    else 0; ``log`` / ``cepstral`` whether the features are logs / a DCT of logs;
    ``db_per_unit`` dB per output unit for log outputs when known; ``dtype`` the kernels'
    dtype (``torch.float64``: a reference whose kernels were never rounded to float32);
    ``index`` the stage's position in the spec's list; ``target`` the device the transforms
    are laid out for (the spec's ``target``: 'cpu' or 'cuda').
    """

    sample_rate: float
    num_samples: int
    dtype: torch.dtype = torch.float32
    shape: Shape = ()
    domain: str = "audio"
    power: float = 0.0
    n_fft: int = 0
    log: bool = False
    cepstral: bool = False
    db_per_unit: Optional[float] = None
    input: Optional[TensorInfo] = None
    index: int = 0
    target: str = "cpu"

    @property
    def output_kind(self) -> str:
        """'cepstral' (a DCT of logs, compared like a linear output), 'log' or 'linear'."""
        return "cepstral" if self.cepstral else ("log" if self.log else "linear")

    def but(self, **changes: Any) -> "Context":
        return replace(self, **changes)


class Stage(nn.Module):
    """Base of every stage module: ``forward(x) -> x`` and ``out_shape(in_shape)``
    (shapes without the batch axis), plus the class-level declarations above."""

    type_name: ClassVar[str] = ""
    role: ClassVar[str] = ""
    params: ClassVar[Tuple[Param, ...]] = ()
    # How the stage runs on a stream (:mod:`nnaudio_export.streaming`): 'frames' (each frame
    # on its own: it runs unchanged on the frames a chunk completes), 'framing' (a transform:
    # the streaming graph frames the samples itself), 'frame_index' (frame numbers:
    # trim_frames), 'input', 'samples' (on the samples, carrying one sample: preemphasis);
    # '' when it needs the whole clip, ``whole_clip`` saying why.
    streaming: ClassVar[str] = ""
    whole_clip: ClassVar[str] = "needs the whole clip"

    @classmethod
    def check_context(cls, ctx: Context) -> None:
        """Raise ``ValueError`` when the stage cannot follow the chain so far. Default:
        anything after a transform."""
        if ctx.domain == "audio":
            raise ValueError("needs a transform (stft, cqt or kaldi_stft) before it: "
                             "it works on a spectrum or features, not on audio")

    @classmethod
    def build(cls, p: Dict[str, Any], ctx: Context,
              previous: Optional["Stage"]) -> Tuple[Optional["Stage"], Context]:
        """The module for parameters ``p`` (validated, defaults filled) and the context after
        it (its shape is filled in by the caller). ``None`` as module means the stage was
        folded into ``previous`` (``power`` into its transform)."""
        raise NotImplementedError(f"{cls.__name__}.build")

    def out_shape(self, in_shape: Shape) -> Shape:
        return in_shape

    def streaming_refusal(self) -> Optional[str]:
        """None when this stage (with its parameters) can run on a stream, else why not."""
        return None if self.streaming else self.whole_clip

    def work_elements(self, in_shape: Shape) -> int:
        """Elements per batch item this module allocates when it runs (default: its output);
        summed into the frontend's memory estimate."""
        n = 1
        for d in self.out_shape(in_shape):
            n *= int(d)
        return n


class InputStageBase(Stage):
    """Base of the input stages (role 'input', always first): each declares the kind of
    tensor it takes (``input_kind``: 'audio' or 'spectrum') and describes it
    (:meth:`tensor`); ``build`` puts that description into the context (``ctx.input``)."""

    role = "input"
    input_kind: ClassVar[str] = ""
    streaming = "input"

    @classmethod
    def check_context(cls, ctx: Context) -> None:
        if ctx.index != 0:
            raise ValueError("must be the first stage")

    def tensor(self) -> TensorInfo:
        raise NotImplementedError(f"{type(self).__name__}.tensor")

    def example_input(self, names: Sequence[str], sample_rate: float) -> np.ndarray:
        """A deterministic input batch of :meth:`tensor`'s shape and dtype, one item per
        :data:`nnaudio_export.signals.SIGNALS` name (for exports, parity and benchmarks)."""
        raise NotImplementedError(f"{type(self).__name__}.example_input")


STAGES: Dict[str, Type[Stage]] = {}


def register(cls: Type[Stage]) -> Type[Stage]:
    """Class decorator: add a stage type to :data:`STAGES` under its ``type_name``."""
    if not cls.type_name or cls.role not in ROLES:
        raise TypeError(f"{cls.__name__}: a stage needs a type_name and a role in {ROLES}")
    if (cls.role == "input") != issubclass(cls, InputStageBase) or \
            (cls.role == "input" and cls.input_kind not in INPUT_KINDS):
        raise TypeError(f"{cls.__name__}: input stages derive from InputStageBase and declare "
                        f"an input_kind in {INPUT_KINDS}")
    if cls.type_name in STAGES:
        raise TypeError(f"stage type {cls.type_name!r} is registered twice")
    names = [p.name for p in cls.params]
    if len(set(names)) != len(names) or "type" in names:
        raise TypeError(f"{cls.__name__}: parameter names must be unique and not 'type'")
    STAGES[cls.type_name] = cls
    return cls
