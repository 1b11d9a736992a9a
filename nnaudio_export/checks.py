"""Typed argument checks shared by the layers, the stage registry and the spec loader.

Standard library only, at the bottom of the package, so every layer can use the same rules:
booleans are booleans, integers are integers (never ``40.5`` read as 40, never ``"80"``),
numbers are finite, ranges are checked, and every failure is one ``ValueError`` that names
the parameter.
"""
import math
import numbers
import os
import re
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple

# Param.kind values and what they accept.
KINDS = {
    "bool": "a boolean (true/false)",
    "int": "an integer",
    "number": "a finite number",
    "str": "a string",
    "window": "a window name or a [name, parameter, ...] list",
    "numbers": "a finite number or a list of finite numbers",
    "norm": "None, 'slaney' or a number (inf, or 'inf' in JSON, for peak normalisation)",
    "order": "None, a boolean or a finite number",
}

REQUIRED = object()   # Param.default for parameters that have no default

# Kernels and per-item activations are estimated from the parameters before anything is
# allocated; beyond this many bytes a build is refused with one line (a typo such as
# n_fft=2**24 would otherwise ask numpy for a PiB). Override with the environment variable
# (bytes, or a number with K/M/G/T[iB]), e.g. NNAUDIO_EXPORT_MEMORY_LIMIT=64GiB.
MEMORY_LIMIT_ENV = "NNAUDIO_EXPORT_MEMORY_LIMIT"
DEFAULT_MEMORY_LIMIT = 4 * 2**30
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


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


def memory_limit() -> int:
    """The byte limit for one kernel bank or one batch item's activations: the environment
    variable :data:`MEMORY_LIMIT_ENV` when set, else :data:`DEFAULT_MEMORY_LIMIT` (4 GiB)."""
    text = os.environ.get(MEMORY_LIMIT_ENV, "").strip()
    if not text:
        return DEFAULT_MEMORY_LIMIT
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?[bB])?", text)
    if not m:
        raise ValueError(f"{MEMORY_LIMIT_ENV}: expected bytes such as 8589934592 or 8GiB, got {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def require_memory(nbytes: float, param: str, what: str) -> None:
    """Refuse, naming ``param``, an allocation estimated at ``nbytes`` above :func:`memory_limit`."""
    limit = memory_limit()
    if nbytes > limit:
        raise ValueError(f"{param}: {what} would take about {_size(nbytes)}, above the memory limit "
                         f"of {_size(limit)}; set {MEMORY_LIMIT_ENV} (e.g. 64GiB) to allow it")


def _size(nbytes: float) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes / 2**10:.1f} KiB"


def check_args(params: Sequence["Param"], values: Dict[str, Any]) -> None:
    """Check a layer's constructor arguments (``values``, e.g. its ``locals()``) against its
    declared :class:`Param` s: the same rules as a spec's stage parameters. Every declared
    name must be present."""
    for p in params:
        p.check(values[p.name])


def pick(params: Sequence["Param"], *names: str) -> Tuple["Param", ...]:
    """The declarations of ``names`` from ``params``, in that order (a stage takes a subset
    of its layer's arguments)."""
    by_name = {p.name: p for p in params}
    return tuple(by_name[n] for n in names)


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
              "norm": lambda v: v in ("slaney", "inf") or is_number(v) or v == math.inf,
              "order": lambda v: isinstance(v, bool) or is_number(v),
              }[self.kind](value)
        if not ok:
            raise ValueError(f"{self.name} must be {KINDS[self.kind]}, got {value!r}")
        if self.kind in ("int", "number"):
            self._check_range(float(value), value)

    def canonical(self, value: Any) -> Any:
        """``value`` as a spec stores it (strict JSON): a 'norm' of inf is written "inf"."""
        if self.kind == "norm" and isinstance(value, float) and value == math.inf:
            return "inf"
        return value

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
