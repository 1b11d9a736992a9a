"""Stage types, one class each, grouped by role; :data:`STAGES` maps a spec's ``"type"`` to
its class (see :mod:`nnaudio_export.stages.base` for what a stage declares).

Adding a stage: one class in the file of its role, decorated with ``@register``, plus its
tests. The spec's defaults, the type checks and the builder method follow from the class.
"""
from .base import (DOMAINS, INPUT_KINDS, ROLES, STAGES, Context, InputStageBase, Shape, Stage,
                   TensorInfo, register)
from . import audio, transforms, spectral, scaling, normalisation, layout, synthesis  # noqa: F401  (register)

__all__ = ["STAGES", "Stage", "InputStageBase", "Context", "TensorInfo", "Shape", "register",
           "ROLES", "DOMAINS", "INPUT_KINDS"]
