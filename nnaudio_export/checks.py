"""Typed argument checks shared by the layers, the stage registry and the spec loader.

Standard library only, at the bottom of the package, so every layer can use the same rules:
booleans are booleans, integers are integers (never ``40.5`` read as 40, never ``"80"``),
numbers are finite, ranges are checked, and every failure is one ``ValueError`` that names
the parameter.
"""
import math
import numbers
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Tuple

# Param.kind values and what they accept.
KINDS = {
    "bool": "a boolean (true/false)",
    "int": "an integer",
    "number": "a finite number",
    "str": "a string",
    "window": "a window name or a [name, parameter, ...] list",
    "numbers": "a finite number or a list of finite numbers",
    "norm": "None, 'slaney' or a number (inf allowed)",
    "order": "None, a boolean or a finite number",
}

REQUIRED = object()   # Param.default for parameters that have no default


def require(condition: bool, param: str, message: str) -> None:
    """Raise ``ValueError("<param>: <message>")`` unless ``condition``."""
    if not condition:
        raise ValueError(f"{param}: {message}")


def require_choice(value: Any, param: str, choices: Iterable[Any]) -> None:
    choices = tuple(choices)
    if isinstance(value, bool) and not any(isinstance(c, bool) for c in choices):
        raise ValueError(f"{param} must be one of {choices}, got {value!r}")
    if value not in choices:
        raise ValueError(f"{param} must be one of {choices}, got {value!r}")


def is_int(value: Any) -> bool:
    """An integer and not a bool (numpy integers included)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite real number and not a bool (numpy scalars included)."""
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(float(value)))


def require_positive_int(value: Any, param: str) -> int:
    if not is_int(value) or value <= 0:
        raise ValueError(f"{param} must be a positive integer, got {value!r}")
    return int(value)


def require_number(value: Any, param: str) -> float:
    if not is_number(value):
        raise ValueError(f"{param} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Param:
    """One parameter of a stage: its name, default, kind and range.

    ``kind`` is a key of :data:`KINDS`; ``optional`` allows ``None``; ``choices`` restricts
    the value; ``low`` / ``high`` are inclusive bounds (``low_open``: ``low`` itself is
    excluded). ``default=REQUIRED`` makes the parameter mandatory.
    """

    name: str
    default: Any
    kind: str
    optional: bool = False
    choices: Optional[Tuple[Any, ...]] = None
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def check(self, value: Any) -> None:
        """Raise ``ValueError`` naming the parameter unless ``value`` is valid."""
        if value is None:
            if self.optional or self.kind in ("norm", "order"):
                return
            raise ValueError(f"{self.name} must be {KINDS[self.kind]}, got None")
        if self.choices is not None:
            require_choice(value, self.name, self.choices)
            return
        ok = {"bool": lambda v: isinstance(v, bool),
              "int": is_int,
              "number": is_number,
              "str": lambda v: isinstance(v, str),
              "window": _is_window,
              "numbers": lambda v: is_number(v) or (isinstance(v, (list, tuple)) and len(v) > 0
                                                    and all(is_number(e) for e in v)),
              "norm": lambda v: v == "slaney" or is_number(v) or v == math.inf,
              "order": lambda v: isinstance(v, bool) or is_number(v),
              }[self.kind](value)
        if not ok:
            raise ValueError(f"{self.name} must be {KINDS[self.kind]}, got {value!r}")
        if self.kind in ("int", "number"):
            self._check_range(float(value), value)

    def _check_range(self, v: float, shown: Any) -> None:
        if self.low is not None and (v < self.low or (self.low_open and v == self.low)):
            op = ">" if self.low_open else ">="
            raise ValueError(f"{self.name} must be {op} {self.low:g}, got {shown!r}")
        if self.high is not None and v > self.high:
            raise ValueError(f"{self.name} must be <= {self.high:g}, got {shown!r}")


def _is_window(value: Any) -> bool:
    if isinstance(value, str):
        return True
    return (isinstance(value, (list, tuple)) and len(value) > 0 and isinstance(value[0], str)
            and all(is_number(v) or isinstance(v, str) for v in value[1:]))
