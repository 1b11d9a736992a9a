"""Plumbing shared by every layer and stage: kernels as parameters or buffers, input
lengths fixed at construction, output shapes known before anything runs."""

from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from ..checks import require, require_memory, require_positive_int
from ..kernels.banded import banded_macs, row_bands

# Peak memory while a kernel bank is built, in float64 copies of the bank (tracemalloc, STFT
# n_fft 2048 / 4096: 3.0 at precision 'single', 8.0 at 'extended' with its split kernels).
KERNEL_BUILD_COPIES = {"single": 3, "extended": 8}


def kernel_tensor(array: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A float64 numpy kernel as a contiguous tensor of ``dtype``: rounded once, from
    float64, so a ``torch.float64`` build is a reference whose kernels were never rounded
    to float32 (``.double()`` on a float32 layer would keep that rounding)."""
    return torch.from_numpy(np.array(array, dtype=np.float64)).to(dtype).contiguous()


def require_kernel_memory(rows: int, taps: int, param: str, what: str,
                          precision: str = "single") -> None:
    """Refuse, naming ``param``, a ``rows x taps`` kernel bank whose float64 build would pass
    the memory limit (:func:`nnaudio_export.checks.memory_limit`), before allocating it."""
    copies = KERNEL_BUILD_COPIES.get(precision, max(KERNEL_BUILD_COPIES.values()))
    require_memory(float(rows) * float(taps) * 8 * copies, param,
                   f"{what} ({rows} x {taps} float64, built with temporaries)")


def register_kernel(module: nn.Module, name: str, array: np.ndarray, trainable: bool = False,
                    dtype: torch.dtype = torch.float32) -> None:
    """Attach ``array`` to ``module`` as ``name``: an ``nn.Parameter`` when ``trainable``
    (it trains, and is saved in ``state_dict``), else a buffer (saved, moved by ``.to()``,
    constant in exported graphs)."""
    t = kernel_tensor(array, dtype)
    if trainable:
        setattr(module, name, nn.Parameter(t, requires_grad=True))
    else:
        module.register_buffer(name, t)


def weight_bands(weight: torch.Tensor) -> List[List[int]]:
    """The row bands :func:`~nnaudio_export.functional.banded_matmul` applies a frozen
    filterbank ``weight`` in (:func:`~nnaudio_export.kernels.banded.row_bands`); ``[]``
    (dense) for a trainable one: training may fill its zeros."""
    if isinstance(weight, nn.Parameter):
        return []
    return [list(b) for b in row_bands(weight.detach().cpu().double().numpy())]


class BandedWeight:
    """Mixin of a module that applies the 2-D matrix ``getattr(self, banded_weight)`` with
    :func:`~nnaudio_export.functional.banded_matmul`: ``self.bands`` always follows the
    matrix's zeros (set by :meth:`refresh_bands`, and again whenever the matrix is loaded
    from a state dict)."""

    banded_weight = "weight"

    def refresh_bands(self) -> None:
        self.bands = weight_bands(getattr(self, self.banded_weight))

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self.refresh_bands()


def filterbank_stages(fe: nn.Module) -> List[Dict[str, Any]]:
    """One entry per module of ``fe`` that applies a filterbank matrix in bands
    (:class:`BandedWeight`): the bands and the multiply-adds per frame, with the dense
    product's beside them (bundle manifests and the benchmark list these, as
    ``fourier_stages`` for DFTs)."""
    out = []
    for name, module in fe.named_modules():
        if not isinstance(module, BandedWeight):
            continue
        weight = getattr(module, module.banded_weight)
        rows, cols = int(weight.shape[0]), int(weight.shape[1])
        out.append({"layer": name, "bands": [list(b) for b in module.bands], "dense": not module.bands,
                    "macs_per_frame": banded_macs(module.bands, rows, cols), "dense_macs_per_frame": rows * cols})
    return out


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
