"""Plumbing shared by every layer: input ranks, fixed lengths, known output shapes."""

from contextlib import contextmanager
from typing import Iterator, Optional, Tuple

import numpy as np
import torch
from torch import nn


_KERNEL_DTYPE = [torch.float32]


@contextmanager
def kernel_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Build layers whose kernels are stored in ``dtype`` (default float32).

    ``with kernel_dtype(torch.float64): ref = STFT(...)`` gives a float64 reference whose
    kernels were never rounded to float32 (``.double()`` on a float32 layer would keep the
    rounding). Used by :func:`nnaudio_export.verify`.
    """
    old = _KERNEL_DTYPE[0]
    _KERNEL_DTYPE[0] = dtype
    try:
        yield
    finally:
        _KERNEL_DTYPE[0] = old


def as_kernel(array: np.ndarray, trainable: bool) -> torch.Tensor:
    """float64 numpy kernel -> float32 tensor (an ``nn.Parameter`` when trainable).
    Inside :func:`kernel_dtype` the tensor has that dtype instead."""
    t = torch.from_numpy(np.array(array, dtype=np.float64)).to(_KERNEL_DTYPE[0]).contiguous()
    return nn.Parameter(t, requires_grad=True) if trainable else t


def require(condition: bool, param: str, message: str) -> None:
    """Raise ``ValueError("<param>: <message>")`` unless ``condition``."""
    if not condition:
        raise ValueError(f"{param}: {message}")


def require_choice(value, param: str, choices) -> None:
    if value not in choices:
        raise ValueError(f"{param} must be one of {tuple(choices)}, got {value!r}")


def require_positive_int(value, param: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{param} must be a positive integer, got {value!r}")
    return int(value)


class FrontendLayer(nn.Module):
    """Base of all layers.

    ``num_samples`` (optional) fixes the input length: the layer then refuses any other
    length with a ``ValueError`` naming both, and ``output_shape`` (without the batch axis)
    is known at construction. Subclasses implement ``output_shape_for(num_samples)`` and
    call ``_set_lengths`` at the end of ``__init__``.
    """

    __jit_unused_properties__ = ["num_samples", "output_shape"]

    _num_samples: int
    _min_samples: int

    def _set_lengths(self, num_samples: Optional[int], min_samples: int, why: str) -> None:
        self._min_samples = int(min_samples)
        if num_samples is None:
            self._num_samples = -1
            return
        n = require_positive_int(num_samples, "num_samples")
        require(n >= min_samples, "num_samples",
                f"{n} is too short: at least {min_samples} samples are needed ({why})")
        self._num_samples = n

    @property
    def num_samples(self) -> Optional[int]:
        return None if self._num_samples < 0 else self._num_samples

    @property
    def output_shape(self) -> Optional[Tuple[int, ...]]:
        """Output shape without the batch axis, or None when the length is not fixed."""
        n = self.num_samples
        return None if n is None else self.output_shape_for(n)

    def output_shape_for(self, num_samples: int) -> Tuple[int, ...]:  # pragma: no cover
        raise NotImplementedError
