"""Exact rewrites of an exported ONNX graph that ONNX Runtime's own optimiser does not make
(numpy + onnx; no torch). Each rewrite changes which constants multiply what, never the
arithmetic: the rewritten graph computes the same sums of the same products, and the
bundle's parity check (ORT against eager float32 and float64) runs on the rewritten file.

- :func:`fold_bin_gather`: a ``Gather`` of rows by a constant index whose only reader is a
  ``MatMul`` with a constant matrix on the left (the factorised DFT's bins picked out of its
  grid, then the mel / filterbank matrix) becomes that ``MatMul`` alone, with the matrix's
  columns scattered onto the gathered rows (zero columns for the rows no bin uses). One pass
  over ``(B, F, T)`` less: whisper_80 in ORT, 8 x 30 s, 2 threads, interleaved medians of 60
  rounds, 47.6 -> 46.5 ms (measured 2026-12-04). The products are the same; the sum gains
  zero terms, which add exactly. It folds only where the dense product costs less than
  the copy it saves (:func:`gather_fold_pays`): a banded filterbank's gathers stay.
- :func:`fold_constant_slices`: a ``Slice`` of a constant by constants (a band of a
  filterbank, :func:`nnaudio_export.functional.banded_matmul`) becomes that constant.
- :func:`fold_slice_of_gather`: a ``Slice`` along a ``Gather``'s axis of the gathered rows
  becomes one ``Gather`` of the sliced index (the band's bins read straight from the
  factorised DFT's grid: one copy instead of two).
- :func:`pair_sums_as_matmul`: a ``ReduceSum`` over an axis of 2 (the power's ``C^2 + S^2``)
  becomes a ``MatMul`` by ``[1, 1]`` between two reshapes: the same one rounding of ``a + b``.
  ONNX Runtime's CUDA provider hands that ``ReduceSum`` to a cuDNN reduction that took 1.21
  of whisper_80's 4.03 ms of kernels (H200, batch 64, 2026-12-04); cuBLAS's gemv took 0.50
  (bare session 4.76 -> 3.30 ms). On the CPU, a one-item batch leaves the pair axis
  outermost, and ORT's reduction of a leading axis is slow: whisper_80 (30 s) 1.75 ms for
  the ``ReduceSum`` against 0.34 for two items (1 thread); 8 items one a call took 26.8-27.8
  ms with it and 20.7 with the MatMul at 2 threads, 8 items in one call 25.0 and 25.1-25.3
  (2026-12-05). The runtime runs CPU batches an item or two a call (``runtime``), so it
  is rewritten for every target. In torch (eager, TorchScript, ``.pt2``) the sum stays: the
  same matmul there cost ~0.9 ms more.

:func:`rewrite` runs them in that order (slices, slice-of-gather, bin gather, pair sums) and
says how many of each it made.
"""
from typing import Dict, Optional

import numpy as np

from .kernels.banded import COPY_COST


def _constant(model, name: str) -> Optional[np.ndarray]:
    from onnx import numpy_helper
    for init in model.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name and node.attribute[0].name == "value":
            return numpy_helper.to_array(node.attribute[0].t)
    return None


def _shapes(model) -> Dict[str, list]:
    """The shape of every tensor ONNX shape inference can tell (a dim: int, or None when
    symbolic), from value_info, inputs and outputs."""
    import onnx
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    return shapes


def scatter_columns(matrix: np.ndarray, index: np.ndarray, rows: int) -> np.ndarray:
    """``W'`` ``(M, rows)`` with ``W' @ Y == W @ Y[index]`` for any ``Y`` of ``rows`` rows:
    ``W'[:, index[j]] += W[:, j]`` (a repeated index adds its columns)."""
    out = np.zeros((matrix.shape[0], rows), dtype=matrix.dtype)
    np.add.at(out.T, np.asarray(index, dtype=np.int64), matrix.T)
    return out


def rewrite(model) -> Dict[str, int]:
    """Every rewrite of this module, in order, on ``model`` (in place): how many of each (the
    same for graphs laid out for 'cpu' and for 'cuda': each pays on both)."""
    return {"fold_constant_slices": fold_constant_slices(model),
            "fold_slice_of_gather": fold_slice_of_gather(model),
            "fold_bin_gather": fold_bin_gather(model),
            "pair_sums_as_matmul": pair_sums_as_matmul(model)}


def gather_fold_pays(weight_rows: int, gathered: int, rows: int) -> bool:
    """Whether ``MatMul(W', Y)`` over all ``rows`` of ``Y`` costs no more than gathering
    ``gathered`` of them first: the ``weight_rows (rows - gathered)`` extra multiply-adds
    per column against the copy of ``gathered`` values (``COPY_COST`` multiply-adds each,
    :mod:`nnaudio_export.kernels.banded`). whisper_80's dense mel bank on the grid (80 rows,
    201 of 231): 2,400 <= 3,216, folds; one of its bands (38 filters, 39 of 231): stays."""
    return weight_rows * (rows - gathered) <= COPY_COST * gathered


def _int_list(model, name: str) -> Optional[list]:
    value = _constant(model, name) if name else None
    return None if value is None else [int(v) for v in np.asarray(value).reshape(-1)]


def _slice_params(model, node, rank: int):
    """``[(axis, start, end, step)]`` of a ``Slice`` with constant parameters (axes
    normalised by ``rank``), or None."""
    starts, ends = _int_list(model, node.input[1]), _int_list(model, node.input[2])
    axes = _int_list(model, node.input[3]) if len(node.input) > 3 and node.input[3] else None
    steps = _int_list(model, node.input[4]) if len(node.input) > 4 and node.input[4] else None
    if starts is None or ends is None or len(starts) != len(ends):
        return None
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    if len(axes) != len(starts) or len(steps) != len(starts) or any(a < -rank or a >= rank for a in axes):
        return None
    return [(a % rank, s, e, st) for a, s, e, st in zip(axes, starts, ends, steps)]


def fold_constant_slices(model) -> int:
    """Replace every ``Slice`` whose data and parameters are constants, with positive
    steps, by an initializer of its value. Returns how many."""
    from onnx import numpy_helper
    graph = model.graph
    folded = []
    for node in graph.node:
        if node.op_type != "Slice":
            continue
        data = _constant(model, node.input[0])
        params = _slice_params(model, node, data.ndim) if data is not None and data.ndim > 0 else None
        if params is None or any(step < 1 for _, _, _, step in params):
            continue
        index = [slice(None)] * data.ndim
        for axis, start, end, step in params:    # ONNX clamps as Python's slices do (step > 0)
            index[axis] = slice(start, end, step)
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(data[tuple(index)]),
                                                         node.output[0]))
        folded.append(node)
    return _remove(graph, folded)


def fold_slice_of_gather(model) -> int:
    """``Slice(Gather(Y, index, axis=a), start, end, axes=[a])`` (constant 1-D ``index``, step
    1) becomes ``Gather(Y, index[start:end], axis=a)``; the first gather goes when nothing
    else reads it. Returns how many slices were replaced."""
    from onnx import helper, numpy_helper
    graph = model.graph
    shapes = _shapes(model)
    producer = {o: node for node in graph.node for o in node.output}
    replaced = 0
    for node in list(graph.node):
        gather = producer.get(node.input[0]) if node.op_type == "Slice" else None
        if gather is None or gather.op_type != "Gather":
            continue
        index, shape = _constant(model, gather.input[1]), shapes.get(gather.output[0])
        if index is None or index.ndim != 1 or not shape:
            continue
        axis = next((a.i for a in gather.attribute if a.name == "axis"), 0) % len(shape)
        params = _slice_params(model, node, len(shape))
        if params is None or len(params) != 1 or params[0][0] != axis or params[0][3] != 1:
            continue
        picked = index[params[0][1]:params[0][2]]
        if picked.size == 0:
            continue
        name = f"{gather.input[1]}.slice.{node.output[0]}"
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(picked), name))
        new = helper.make_node("Gather", [gather.input[0], name], [node.output[0]], axis=axis,
                               name=f"{node.name or node.output[0]}.gather")
        at = list(graph.node).index(node)
        graph.node.remove(node)
        graph.node.insert(at, new)
        replaced += 1
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    for node in [n for n in graph.node if n.op_type == "Gather" and n.output[0] not in used]:
        graph.node.remove(node)
    _drop_unused_initializers(graph)
    return replaced


def fold_bin_gather(model) -> int:
    """Fold every ``MatMul(W, Gather(Y, index, axis=-2))`` with constant 2-D ``W``, constant
    1-D non-negative ``index``, no other reader of the gather and a fold that pays
    (:func:`gather_fold_pays`) into ``MatMul(W', Y)`` (:func:`scatter_columns`). Edits
    ``model`` in place; returns how many were folded."""
    from onnx import numpy_helper
    graph = model.graph
    shapes = _shapes(model)
    readers: Dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    folded = []
    for node in graph.node:
        if node.op_type != "Gather" or node.output[0] in outputs or len(readers.get(node.output[0], [])) != 1:
            continue
        (matmul,) = readers[node.output[0]]
        if matmul.op_type != "MatMul" or list(matmul.input) != [matmul.input[0], node.output[0]]:
            continue
        weight, index = _constant(model, matmul.input[0]), _constant(model, node.input[1])
        shape = shapes.get(node.input[0])
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        if weight is None or index is None or not shape or weight.ndim != 2 or index.ndim != 1:
            continue
        rows = shape[-2] if len(shape) >= 2 else None
        if axis % len(shape) != len(shape) - 2 or rows is None or index.size != weight.shape[1]:
            continue
        if index.size == 0 or index.min() < 0 or index.max() >= rows:
            continue
        if not gather_fold_pays(weight.shape[0], index.size, rows):
            continue
        name = f"{matmul.input[0]}.on_rows_of.{node.input[0]}"
        graph.initializer.append(numpy_helper.from_array(scatter_columns(weight, index, rows), name))
        matmul.input[0], matmul.input[1] = name, node.input[0]
        folded.append(node)
    return _remove(graph, folded)


def pair_sums_as_matmul(model) -> int:
    """Replace every ``ReduceSum(X, axes=[k], keepdims=0)`` (``k >= 1``) whose ``X`` has a
    static shape ``(B, d_1, .., d_k = 2, ..)`` by ``Reshape(MatMul([[1, 1]], Reshape(X,
    (B, d_1 .. d_(k-1), 2, -1))), (B, d_1, .., d_(k-1), d_(k+1), ..))`` (module docstring: the
    same sum, without cuDNN's reduction on ONNX Runtime's CUDA provider or the CPU provider's
    slow reduction of a leading axis; the split stage 2 sums its pairs on axis 2). Edits
    ``model`` in place; returns how many were replaced."""
    from onnx import helper, numpy_helper
    graph = model.graph
    shapes = _shapes(model)
    replaced = 0
    for node in [n for n in graph.node if n.op_type == "ReduceSum"]:
        keepdims = next((a.i for a in node.attribute if a.name == "keepdims"), 1)
        axes = _int_list(model, node.input[1]) if len(node.input) > 1 else None
        shape = shapes.get(node.input[0])
        if keepdims != 0 or axes is None or not shape or len(shape) < 3 or len(axes) != 1:
            continue
        k = axes[0] % len(shape)
        if k < 1 or shape[k] != 2 or any(d is None for d in shape[1:]):
            continue
        lead = [int(np.prod(shape[1:k], dtype=np.int64))] if k > 1 else []
        base = f"{node.output[0]}.pair_sum"
        graph.initializer.extend([
            numpy_helper.from_array(np.ones((1, 2), np.float32), f"{base}.ones"),
            numpy_helper.from_array(np.array([0, *lead, 2, -1], np.int64), f"{base}.flat"),
            numpy_helper.from_array(np.array([0, *shape[1:k], *shape[k + 1:]], np.int64), f"{base}.shape")])
        new = [helper.make_node("Reshape", [node.input[0], f"{base}.flat"], [f"{base}.x"], name=f"{base}.reshape_in"),
               helper.make_node("MatMul", [f"{base}.ones", f"{base}.x"], [f"{base}.y"], name=f"{base}.matmul"),
               helper.make_node("Reshape", [f"{base}.y", f"{base}.shape"], [node.output[0]], name=f"{base}.reshape_out")]
        at = list(graph.node).index(node)
        graph.node.remove(node)
        for offset, n in enumerate(new):
            graph.node.insert(at + offset, n)
        replaced += 1
    _drop_unused_initializers(graph)
    return replaced


def _remove(graph, nodes) -> int:
    """Remove ``nodes`` (replaced by a rewrite) and the initializers nothing reads any more;
    how many nodes."""
    for node in nodes:
        graph.node.remove(node)
    _drop_unused_initializers(graph)
    return len(nodes)


def _drop_unused_initializers(graph) -> None:
    used = {name for node in graph.node for name in node.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
