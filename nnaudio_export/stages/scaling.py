"""Scaling stages: logarithms (natural, base 10, dB), Whisper's per-item dynamic-range
clamp and a fixed affine map. Each keeps track of dB per output unit, which parity
thresholds and comparison windows need."""
import math
from typing import Any, Dict, Optional, Tuple

import torch
from torch import Tensor

from .. import functional as FN
from ..checks import Param
from ..layers.mel import DB_ARGS
from .base import Context, Stage, register


class LogDomainStage(Stage):
    """Base of the stages that take a power/magnitude spectrum or features to logs."""

    role = "scaling"

    @classmethod
    def check_context(cls, ctx: Context) -> None:
        if ctx.domain in ("audio", "complex"):
            raise ValueError(f"{cls.type_name} needs a power/magnitude spectrum or features before it")
        if ctx.log:
            raise ValueError("the features are already in the log domain")


@register
class LogStage(LogDomainStage):
    """``ln(max(x + offset, floor))`` (no clamp when ``floor`` is None)."""

    type_name = "log"
    streaming = "frames"
    base = math.e
    params = (Param("floor", None, "number", optional=True, low=0),
              Param("offset", 0.0, "number"))

    def __init__(self, base: float, floor: float, offset: float):
        super().__init__()
        self.inv_ln_base = 1.0 / math.log(base) if base != math.e else 1.0
        self.floor = float(floor)
        self.offset = float(offset)

    @classmethod
    def build(cls, p: Dict[str, Any], ctx: Context,
              previous: Optional[Stage]) -> Tuple[Stage, Context]:
        floor = 0.0 if p["floor"] is None else float(p["floor"])
        if floor == 0 and float(p["offset"]) <= 0:
            raise ValueError("floor: give a positive floor and/or a positive offset "
                             "(log of 0 is -inf)")
        # dB per unit: 20 / p dB per decade of |X| ** p; natural logs have 1 / ln 10 decades.
        db_unit = (20.0 / ctx.power) * (1.0 if cls.base == 10.0 else 1.0 / math.log(10.0))
        return cls(cls.base, floor, float(p["offset"])), ctx.but(log=True, db_per_unit=db_unit)

    def forward(self, x: Tensor) -> Tensor:
        if self.offset != 0.0:
            x = x + self.offset
        if self.floor > 0.0:
            x = torch.clamp(x, min=self.floor)
        y = torch.log(x)
        if self.inv_ln_base != 1.0:
            y = y * self.inv_ln_base
        return y


@register
class Log10Stage(LogStage):
    """``log10(max(x + offset, floor))`` (no clamp when ``floor`` is None)."""

    type_name = "log10"
    base = 10.0


@register
class DbStage(LogDomainStage):
    """librosa ``power_to_db`` (``multiplier=20`` for amplitudes), top_db per item:
    ``multiplier * log10(max(x, amin) / max(amin, |ref|))``, then with ``top_db``
    clamped at the per-item max minus ``top_db``."""

    type_name = "db"
    streaming = "frames"
    params = DB_ARGS

    def __init__(self, ref: float, amin: float, top_db: float, multiplier: float):
        super().__init__()
        self.ref = float(ref)
        self.amin = float(amin)
        self.top_db = float(top_db)
        self.multiplier = float(multiplier)

    @classmethod
    def build(cls, p: Dict[str, Any], ctx: Context,
              previous: Optional[Stage]) -> Tuple[Stage, Context]:
        top = -1.0 if p["top_db"] is None else float(p["top_db"])
        module = cls(p["ref"], p["amin"], top, p["multiplier"])
        return module, ctx.but(log=True, db_per_unit=(20.0 / ctx.power) / float(p["multiplier"]))

    def streaming_refusal(self) -> Optional[str]:
        if self.top_db >= 0:
            return "top_db clamps at each item's maximum over the whole clip (stream with top_db None)"
        return None

    def forward(self, x: Tensor) -> Tensor:
        return FN.power_to_db(x, self.ref, self.amin, self.top_db, self.multiplier)


@register
class DynamicRangeStage(Stage):
    """``max(x, item_max - range)`` (Whisper: 8 in log10 units), per batch item (as HF;
    openai's batched code takes the max over the whole batch)."""

    type_name = "dynamic_range"
    whole_clip = "clamps at each item's maximum over the whole clip"
    role = "scaling"
    params = (Param("range", 8.0, "number", low=0),)

    def __init__(self, value_range: float):
        super().__init__()
        self.value_range = float(value_range)

    @classmethod
    def check_context(cls, ctx: Context) -> None:
        if not ctx.log:
            raise ValueError("dynamic_range clamps log features: put a log stage first")

    @classmethod
    def build(cls, p: Dict[str, Any], ctx: Context,
              previous: Optional[Stage]) -> Tuple[Stage, Context]:
        return cls(p["range"]), ctx

    def forward(self, x: Tensor) -> Tensor:
        return FN.clamp_to_item_max(x, self.value_range)


@register
class AffineStage(Stage):
    """``x * scale + offset``."""

    type_name = "affine"
    streaming = "frames"
    role = "scaling"
    params = (Param("scale", 1.0, "number"), Param("offset", 0.0, "number"))

    def __init__(self, scale: float, offset: float):
        super().__init__()
        self.scale = float(scale)
        self.offset = float(offset)

    @classmethod
    def build(cls, p: Dict[str, Any], ctx: Context,
              previous: Optional[Stage]) -> Tuple[Stage, Context]:
        scale = float(p["scale"])
        db_unit = ctx.db_per_unit / abs(scale) if ctx.db_per_unit is not None and scale != 0 else None
        return cls(scale, p["offset"]), ctx.but(db_per_unit=db_unit)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale + self.offset
