"""Parity thresholds, how an output is compared with its reference (:func:`compare`), and
how a per-item normalisation's conditioning scales the thresholds.

A per-item normalisation ``(x - mean) / sqrt(var + eps)`` multiplies any error of its input
by ``1 / sqrt(var + eps)``. On a steady tone a feature row's variance over frames is ~0, so
the float32 rounding of an otherwise accurate log-mel comes out ~3000 times larger (for
SeamlessM4T's eps 1e-7; transformers' own float32 extractor is 1e-2 off its float64 run
there). :func:`normalisation_bound_scale` derives, from the float64 reference alone, each
output value's bound: the threshold the normalisation's input would be judged by (its kind,
dB scale and dB window, as :func:`compare` judges a log output), times
the normalisation's amplification of that value's row, carried through the stages after it.
Where that exceeds the plain threshold the bound is scaled, and the report says so.
"""
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from .builder import Frontend
from .spec import transform_precisions
from .stages.normalisation import NormalizeStage

# float32 thresholds: relative to the output's peak for linear (and cepstral) outputs;
# absolute for log outputs: 1e-4 in output units, but never tighter than 1e-3 dB (an output
# in dB units has 1 dB per unit, so 1e-4 there would be 40x stricter than Whisper's scale).
# Log outputs are judged within 80 dB of each item's peak when every Fourier transform runs
# at precision 'extended' (all production presets). At precision 'single' the window is
# 60 dB: a float32 conv DFT's rounding floor at -80 dB is itself ~1e-4 in log10 units
# (eager float32 vs float64 measured 0.7-1.2e-4 there), so two float32 runtimes can differ
# by 1e-4 there; the 80 dB figure is still reported.
# Per-item normalised log outputs have no dB scale: 5e-4 absolute over all values (scaled
# per value where the normalisation is ill-conditioned: normalisation_bound_scale).
LINEAR_REL_TOL = 1e-5
LOG_ABS_TOL = 1e-4
LOG_MIN_DB_TOL = 1e-3
NORMALIZED_LOG_ABS_TOL = 5e-4
LOG_DB_WINDOW = 60.0
LOG_DB_REPORT_WINDOW = 80.0
EXTENDED_LOG_DB_WINDOW = 80.0

# Iterations that amplify float32 rounding (a module with ``amplifies_rounding = True``:
# Griffin-Lim, 32 steps with momentum 0.99) make any two float32 runs differ by far more
# than LINEAR_REL_TOL: the eager module itself is 1e-4 .. 0.7 x peak from its float64 copy
# (griffinlim_1024, 64 frames; 0.7 on tones, whose zero-phase start is ill-conditioned).
# There each item is judged against that measured spread of float32: a backend may be
# SPREAD_FACTOR times as far from the reference as eager float32 is from float64 on the
# same item (never tighter than LINEAR_REL_TOL). Measured: ORT vs float64 at 1.0-1.2x the
# spread, ORT vs eager float32 at 0.0003-0.33x.
SPREAD_FACTOR = 2.0
# One float32 run's distance from float64 is a single sample of how far rounding moves an
# item: griffinlim_1024's noise item measured 9.4e-5 .. 1.1e-3 x peak over eager runs on
# inputs nudged by float32 rounding (7 draws; ORT 1.2e-3 with the three-stage inverse DFT).
# The spread is the largest over the run on the input and SPREAD_DRAWS runs on nudged inputs
# (x (1 + 2^-24 g), g standard normal, seeds 0 .. SPREAD_DRAWS - 1: deterministic).
SPREAD_DRAWS = 4

def log_threshold(db_per_unit: Optional[float]) -> float:
    """Absolute threshold for a log output with ``db_per_unit`` dB per output unit."""
    if not db_per_unit:
        return NORMALIZED_LOG_ABS_TOL
    return max(LOG_ABS_TOL, LOG_MIN_DB_TOL / db_per_unit)


def compare(out: np.ndarray, ref: np.ndarray, kind: str, db_per_unit: Optional[float],
            window_db: float = LOG_DB_WINDOW, scale: Optional[np.ndarray] = None) -> Dict[str, float]:
    """max abs and max abs / peak; log outputs with a known dB scale only where the reference
    is within ``window_db`` of its per-item peak (``max_abs_80db``: within 80 dB). With a
    per-value ``scale`` (:func:`nnaudio_export.tolerances.normalisation_bound_scale`), also
    ``max_scaled``: the max of error / scale, which is what is judged then."""
    out = np.asarray(out, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if out.shape != ref.shape:
        raise ValueError(f"shape mismatch: {out.shape} vs reference {ref.shape}")
    if not np.all(np.isfinite(out)):
        return {"max_abs": float("inf"), "max_rel": float("inf"), "max_abs_80db": float("inf"),
                "max_scaled": float("inf")}
    err = np.abs(out - ref)
    peak = float(np.max(np.abs(ref))) if ref.size else 0.0
    res: Dict[str, float] = {}
    if kind == "log" and db_per_unit:
        item_max = ref.reshape(ref.shape[0], -1).max(axis=1).reshape((-1,) + (1,) * (ref.ndim - 1))
        wide = ref >= item_max - LOG_DB_REPORT_WINDOW / db_per_unit
        res["max_abs_80db"] = float(np.where(wide, err, 0.0).max()) if err.size else 0.0
        err = np.where(ref >= item_max - window_db / db_per_unit, err, 0.0)
    max_abs = float(err.max()) if err.size else 0.0
    if scale is not None:
        res["max_scaled"] = float((err / scale).max()) if err.size else 0.0
    res.update({"max_abs": max_abs, "max_rel": max_abs / peak if peak > 0 else max_abs})
    return res


def window_for(spec: Dict[str, Any]) -> float:
    """The dB window log outputs are judged in: 80 dB when every transform of ``spec`` runs
    at precision 'extended', else 60 dB (a spec-less module: 60 dB)."""
    return EXTENDED_LOG_DB_WINDOW if transform_precisions(spec) == {"extended"} else LOG_DB_WINDOW


def input_bound(h: np.ndarray, kind: str, db_per_unit: Optional[float], window_db: float) -> np.ndarray:
    """The error each value of ``h`` (a float64 batch of features) may carry, as its own
    parity check would allow: ``LINEAR_REL_TOL`` x the item's peak (linear), or the log
    threshold (log). A log value ``d`` dB below its item's peak, beyond the dB window that
    check judges in, gets the threshold times the amplitude ratio ``10^((d - window) / 20)``:
    a float32 DFT's error is absolute in amplitude, so its relative error (a log's absolute
    error) grows as the bin falls below the peak (where a log output's check judges nothing)."""
    flat = h.reshape(h.shape[0], -1)
    shape = (-1,) + (1,) * (h.ndim - 1)
    if kind != "log":
        return np.broadcast_to(LINEAR_REL_TOL * np.abs(flat).max(axis=1).reshape(shape), h.shape)
    thr = log_threshold(db_per_unit)
    if not db_per_unit:
        return np.full(h.shape, thr)
    below_db = (flat.max(axis=1).reshape(shape) - h) * db_per_unit
    return thr * np.maximum(1.0, 10.0 ** ((below_db - window_db) / 20.0))


def amplification(stage: NormalizeStage, h: torch.Tensor) -> torch.Tensor:
    """``stage``'s derivative of each output value with respect to its input value (the
    statistics held fixed), ``1 / sqrt(var + eps)`` or ``1 / (std + eps)``, on float64
    ``h``, broadcast to its shape."""
    v = h[..., : stage.valid_frames] if stage.valid_frames > 0 else h
    dims = [-1] if stage.per_feature else [-2, -1]
    var = torch.var(v, dim=dims, keepdim=True, unbiased=stage.unbiased)
    scale = 1.0 / (torch.sqrt(var + stage.eps) if stage.eps_on_variance else torch.sqrt(var) + stage.eps)
    return scale.expand_as(h)


def normalised_error_bound(stage: NormalizeStage, h: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """How far each output of ``stage`` on float64 ``h`` may move when each input value may
    be off by up to ``b`` (same shape), its statistics included:
    ``y = (h - mu) / s`` moves by at most ``(b + dmu) / s + |y| ds / s``, with
    ``dmu <= mean(b)`` over the values the statistics use and ``ds <= sqrt(sum b^2 / (n - u))``
    (centring is a projection, so the centred values move by at most ``||b||``; adding eps to
    the std or under the root shrinks the change). The statistics' term is what an outlier
    needs: a value 17 std from its row's mean (a steady tone's first frame) carries 17x the
    std's relative rounding, which the value's own term alone (``b / s``) missed."""
    v = h[..., : stage.valid_frames] if stage.valid_frames > 0 else h
    bv = b[..., : stage.valid_frames] if stage.valid_frames > 0 else b
    dims = [-1] if stage.per_feature else [-2, -1]
    n = v.shape[-1] * (1 if stage.per_feature else v.shape[-2])
    dof = float(n - 1 if stage.unbiased else n)
    gain = amplification(stage, h)                       # 1 / s
    d_mu = torch.mean(bv, dim=dims, keepdim=True)
    d_s = torch.sqrt(torch.sum(bv ** 2, dim=dims, keepdim=True) / dof)
    y = (h - torch.mean(v, dim=dims, keepdim=True)) * gain
    return (b + d_mu) * gain + y.abs() * d_s * gain


def _through(tail: torch.nn.Module, values: torch.Tensor) -> Optional[torch.Tensor]:
    """``values`` carried through the stages after the normalisation, their constant part
    (padding values, offsets) removed; None when those stages are not affine (then the
    bound cannot be carried and is not scaled)."""
    with torch.inference_mode():
        zero = tail(torch.zeros_like(values))
        once, twice = tail(values) - zero, tail(2.0 * values) - zero
    if not torch.allclose(twice, 2.0 * once, rtol=1e-9, atol=0.0):
        return None
    return once.abs()


def normalisation_bound_scale(reference: torch.nn.Module, x: np.ndarray, threshold: float
                              ) -> Optional[Tuple[np.ndarray, str]]:
    """Per output value, the factor (>= 1) the plain ``threshold`` is multiplied by for a
    frontend whose last per-item normalisation (stage ``normalize``) is ill-conditioned on
    the input batch ``x``, and a one-line description; None when nothing is scaled (no such
    stage, a spec-less module, stages after it that are not affine, or a factor of 1
    everywhere). ``reference`` is the float64 reference (a float64 :class:`Frontend`, trained
    weights included): the scale is derived from it, never from the output judged."""
    if not isinstance(reference, Frontend):
        return None
    spec = reference.spec
    index = [i for i, m in enumerate(reference.stages) if isinstance(m, NormalizeStage)]
    in_spec = [i for i, st in enumerate(spec["stages"]) if st["type"] == "normalize"]
    if not index or len(index) != len(in_spec):
        return None
    # Module and spec indices differ where stages fuse (power into the STFT): each is found by
    # its own list.
    k = index[-1]
    head = Frontend.from_spec(dict(spec, stages=spec["stages"][:in_spec[-1]]))   # its output's kind and dB scale
    with torch.inference_mode():
        h = reference.stages[:k](torch.from_numpy(x).to(torch.float64))
        gain = amplification(reference.stages[k], h)
        b = torch.from_numpy(np.ascontiguousarray(
            input_bound(h.numpy(), head.output_kind, head.db_per_unit, window_for(spec))))
        bound = normalised_error_bound(reference.stages[k], h, b)
    carried = _through(reference.stages[k + 1:], bound)
    if carried is None:
        return None
    scale = np.maximum(1.0, carried.numpy() / threshold)
    top = float(scale.max())
    if top <= 1.0:
        return None
    worst = float(gain.max())
    note = (f"ill-conditioned input: stage {k} (normalize) divides by a std as small as "
            f"{1.0 / worst:.2g} (amplification {worst:.3g}), and values far from their mean carry "
            f"the std's rounding times their distance; bound {threshold:.0e} scaled per value "
            f"by up to {top:.3g} ({int((scale > 1).sum())} of {scale.size} values), derived from "
            "the float64 reference")
    return scale, note


def amplifies_rounding(module: torch.nn.Module) -> bool:
    """Whether ``module`` holds a layer that amplifies float32 rounding (its parity is
    judged per item against the measured float32 spread, :data:`SPREAD_FACTOR`)."""
    return any(getattr(m, "amplifies_rounding", False) for m in module.modules())


def item_rel(y: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per item: max ``|y - ref|`` / the item's peak of ``|ref|``."""
    y = np.asarray(y, np.float64).reshape(y.shape[0], -1)
    ref = np.asarray(ref, np.float64).reshape(ref.shape[0], -1)
    if not np.all(np.isfinite(y)):
        return np.full(y.shape[0], np.inf)
    peak = np.abs(ref).max(axis=1)
    return np.abs(y - ref).max(axis=1) / np.where(peak > 0, peak, 1.0)


def rounding_nudges(x: np.ndarray, draws: int = SPREAD_DRAWS) -> list:
    """``x (1 + 2^-24 g)`` as float32 for ``g`` standard normal drawn with seeds
    ``0 .. draws - 1``: inputs as far from ``x`` as float32 rounding (:data:`SPREAD_DRAWS`)."""
    x64 = np.asarray(x, np.float64)
    return [(x64 * (1.0 + 2.0 ** -24 * np.random.default_rng(k).standard_normal(x64.shape)))
            .astype(np.float32) for k in range(draws)]


def spread_limits(y32: np.ndarray, y64: np.ndarray, nudged: Sequence[np.ndarray] = ()) -> np.ndarray:
    """Per-item thresholds of a rounding-amplifying module: ``max(LINEAR_REL_TOL,
    SPREAD_FACTOR x s)`` with ``s`` the largest distance from float64 of the item (relative
    to its peak) of eager float32 on the input (``y32``) and on :func:`rounding_nudges` of it
    (``nudged``, its outputs)."""
    spread = np.max([item_rel(y, y64) for y in [y32, *nudged]], axis=0)
    return np.maximum(LINEAR_REL_TOL, SPREAD_FACTOR * spread)


def measured_spread(eager: torch.nn.Module, x: np.ndarray, y64: np.ndarray, device: str,
                    y32: Optional[np.ndarray] = None) -> np.ndarray:
    """:func:`spread_limits` of the float32 module ``eager`` on ``device``: its output on
    ``x`` (``y32`` when already run) and on the :func:`rounding_nudges` of ``x``, against
    ``y64``."""
    with torch.inference_mode():
        runs = [eager(torch.from_numpy(v).to(device)).cpu().numpy() for v in
                ([] if y32 is not None else [x]) + rounding_nudges(x)]
    if y32 is not None:
        runs.insert(0, y32)
    return spread_limits(runs[0], y64, runs[1:])
