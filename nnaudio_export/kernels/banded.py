"""Which blocks of a sparse filterbank matrix to multiply: row bands of a mel / Kaldi bank
(numpy, no torch).

What: a filterbank ``W`` (``M`` filters x ``F`` bins) applied as ``W @ P`` to a power
spectrum ``P`` (``F`` bins x frames) is mostly zeros: filter ``m`` of a triangular bank is
non-zero only between its neighbours' centres, so whisper_80's 80 x 201 bank has 391
non-zero weights of 16,080 and mel_128's 128 x 1025 bank 2,018 of 131,200. Split the rows
into ``K`` consecutive bands ``[r0, r1)``; band ``g`` reads only the bins ``[c0, c1)``
between its first and last non-zero column:

    (W @ P)[r0:r1] = W[r0:r1, c0:c1] @ P[c0:c1]          (the other products are 0 * P)

Cost of band ``g`` per frame, in multiply-add units (:func:`band_cost`):

    (r1 - r0) (c1 - c0)  +  copy_cost (c1 - c0)  +  op_cost

the products, the copy of its bins a runtime makes to get a contiguous operand (ONNX
``Slice`` / ``Gather``: one row read and written), and a fixed cost per band (two more ops
to schedule, a concat entry). :func:`row_bands` picks the partition of minimum total cost by
dynamic programming over the band boundaries (``O(M^2)`` band costs, each from the rows'
column extents), and keeps the dense product when no partition beats ``M F``.

``copy_cost = 16`` and ``op_cost = 2000`` are this machine class's ratios (2-core AMD EPYC,
ONNX Runtime CPU, measured 2026-12-04): a float copied costs about what 16-19 multiply-adds
of a small-K GEMM cost, and whisper_80 / mel_128 ran equally fast for ``op_cost`` from 500 to
4000 (5 or 3 bands; 10 or 5 bands). The sums are those of the dense product minus exact
zero terms, so the result is the same up to float rounding of a shorter sum.

Reference: the banded structure is that of any triangular filterbank (Davis & Mermelstein,
IEEE Trans. ASSP 28 (1980); librosa ``filters.mel``); the partition is the textbook
optimal-segmentation recurrence (Bellman, "Dynamic Programming", 1957).
"""
from typing import List, Tuple

import numpy as np

COPY_COST = 16.0
OP_COST = 2000.0


def column_extents(matrix: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Per row, the first non-zero column and one past the last (``(0, 0)`` for an all-zero
    row)."""
    nonzero = np.asarray(matrix) != 0
    any_ = nonzero.any(axis=1)
    first = np.where(any_, nonzero.argmax(axis=1), 0)
    last = np.where(any_, nonzero.shape[1] - nonzero[:, ::-1].argmax(axis=1), 0)
    return first.astype(np.int64), last.astype(np.int64)


def band_cost(rows: int, cols: int, copy_cost: float = COPY_COST, op_cost: float = OP_COST) -> float:
    """Cost per frame of one band of ``rows`` filters reading ``cols`` bins (module doc)."""
    return rows * cols + copy_cost * cols + op_cost


def row_bands(matrix: np.ndarray, copy_cost: float = COPY_COST,
              op_cost: float = OP_COST) -> List[Tuple[int, int, int, int]]:
    """The cheapest split of ``matrix``'s rows into bands, as ``(r0, r1, c0, c1)`` (rows
    ``[r0, r1)`` read columns ``[c0, c1)``), covering every row in order; ``[]`` when the
    dense product is as cheap (one band over all columns, or no non-zero weight at all).

    A band of all-zero rows reads no column (``c0 = c1``) and multiplies nothing: its
    output rows are zeros."""
    w = np.asarray(matrix)
    if w.ndim != 2 or w.shape[0] == 0 or not np.any(w):
        return []
    m, f = w.shape
    first, last = column_extents(w)
    empty = last == 0
    best = np.full(m + 1, np.inf)
    best[0] = 0.0
    start = np.zeros(m + 1, dtype=np.int64)
    for end in range(1, m + 1):
        lo, hi = f, 0
        for begin in range(end - 1, -1, -1):      # band [begin, end), widened row by row
            if not empty[begin]:
                lo, hi = min(lo, first[begin]), max(hi, last[begin])
            cost = best[begin] + band_cost(end - begin, max(0, hi - lo), copy_cost, op_cost)
            if cost < best[end]:
                best[end], start[end] = cost, begin
    bands = []
    end = m
    while end > 0:
        begin = int(start[end])
        rows = ~empty[begin:end]
        lo = int(first[begin:end][rows].min()) if rows.any() else 0
        hi = int(last[begin:end][rows].max()) if rows.any() else 0
        bands.append((begin, end, lo, hi))
        end = begin
    bands.reverse()
    if best[m] >= m * f or (len(bands) == 1 and bands[0][2:] == (0, f)):
        return []
    return bands


def banded_macs(bands: List[Tuple[int, int, int, int]], rows: int, cols: int) -> int:
    """Multiply-adds per frame of the banded product (``rows x cols`` when dense)."""
    if not bands:
        return rows * cols
    return sum((r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in bands)
