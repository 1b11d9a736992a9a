"""The exported-graph rewrites (:mod:`nnaudio_export.onnx_rewrites`): the folded matrix is the
gather's algebra in float64, only the exact patterns are rewritten (and a bin gather only
where folding pays; pair sums of two with the same rounding), and a shipped bundle that was
rewritten still meets the float64 reference (librosa) and the eager module."""
import json

import librosa
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from nnaudio_export.onnx_rewrites import (fold_bin_gather, fold_constant_slices, fold_slice_of_gather,
                                          gather_fold_pays, pair_sums_as_matmul, rewrite, scatter_columns)
from nnaudio_export.signals import clip


def test_scattered_columns_are_the_gather_in_float64():
    rng = np.random.default_rng(0)
    w, y = rng.standard_normal((5, 7)), rng.standard_normal((3, 11, 4))
    index = np.array([10, 0, 3, 3, 4, 9, 1])          # a repeated row adds both columns
    got = scatter_columns(w, index, 11) @ y
    np.testing.assert_allclose(got, w @ y[:, index], rtol=0, atol=1e-13)


def _graph(index, readers=1, gather_on_left=False, constant_index=True):
    """``MatMul(W, Gather(Y, index, axis=1))`` on ``Y`` ``(B, 6, 4)``, ``W`` ``(3, len(index))``."""
    w = np.arange(3 * len(index), dtype=np.float32).reshape(3, len(index)) / 7.0
    inits = [numpy_helper.from_array(w, "W")]
    inputs = [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["B", 6, 4])]
    if constant_index:
        inits.append(numpy_helper.from_array(np.asarray(index, np.int64), "idx"))
    else:
        inputs.append(helper.make_tensor_value_info("idx", TensorProto.INT64, [len(index)]))
    nodes = [helper.make_node("Gather", ["Y", "idx"], ["G"], axis=1),
             helper.make_node("MatMul", ["G", "W"] if gather_on_left else ["W", "G"], ["out"])]
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["B", 3, 4])]
    if readers == 2:
        nodes.append(helper.make_node("Neg", ["G"], ["other"]))
        outputs.append(helper.make_tensor_value_info("other", TensorProto.FLOAT, ["B", len(index), 4]))
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_folded_graph_runs_the_same_products():
    model = _graph([5, 0, 2, 2])
    y = np.random.default_rng(1).standard_normal((2, 6, 4)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString()).run(None, {"Y": y})[0]
    assert fold_bin_gather(model) == 1
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node] == ["MatMul"]
    assert {i.name for i in model.graph.initializer} == {"W.on_rows_of.Y"}   # old W, index dropped
    got = ort.InferenceSession(model.SerializeToString()).run(None, {"Y": y})[0]
    w = np.arange(12, dtype=np.float64).reshape(3, 4) / np.float32(7.0)
    exact = np.einsum("mk,bkt->bmt", np.float32(w).astype(np.float64), y.astype(np.float64)[:, [5, 0, 2, 2]])
    assert np.abs(got - exact).max() <= 4 * np.finfo(np.float32).eps * np.abs(exact).max()
    assert np.abs(want - exact).max() <= 4 * np.finfo(np.float32).eps * np.abs(exact).max()


@pytest.mark.parametrize("kwargs", [{"readers": 2}, {"gather_on_left": True}, {"constant_index": False}])
def test_other_patterns_are_left_alone(kwargs):
    model = _graph([5, 0, 2, 2] if not kwargs.get("gather_on_left") else [0, 1, 2, 3, 4, 5], **kwargs)
    before = model.SerializeToString()
    assert fold_bin_gather(model) == 0
    assert model.SerializeToString() == before


def test_a_gather_is_not_folded_where_the_dense_product_costs_more():
    """A gather of 2 of 40 rows under a 3-row matrix: folding would multiply 38 zero columns
    per output row (114 multiply-adds a column) to save a 2-value copy (32)."""
    assert not gather_fold_pays(3, 2, 40) and gather_fold_pays(3, 4, 6)
    model = _graph([5, 0])
    graph = model.graph
    graph.input[0].type.tensor_type.shape.dim[1].dim_value = 40
    before = model.SerializeToString()
    assert fold_bin_gather(model) == 0
    assert model.SerializeToString() == before


def _sliced_gather_graph(slice_constant_weight: bool = True):
    """``Gather(Y (B, 40, 4), idx)`` read by two ``Slice``s along its axis, each times a slice
    of ``W``: the shape a banded filterbank exports to (too few of ``Y``'s rows per band for
    folding the gathers into the products to pay)."""
    index = np.array([8, 1, 2, 7, 3, 3, 0], np.int64)
    w = (np.arange(5 * 7, dtype=np.float32).reshape(5, 7) - 11.0) / 13.0
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(index, "idx")]
    for name, value in {"s0": [0], "e0": [3], "s1": [3], "e1": [7], "ax1": [1], "ax0": [0],
                        "c0": [0], "c3": [3], "c7": [7], "r0": [0], "r2": [2], "r5": [5]}.items():
        inits.append(numpy_helper.from_array(np.array(value, np.int64), name))
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["B", 40, 4])
    nodes = [helper.make_node("Gather", ["Y", "idx"], ["G"], axis=1),
             helper.make_node("Slice", ["G", "s0", "e0", "ax1"], ["G0"]),
             helper.make_node("Slice", ["G", "s1", "e1", "ax1"], ["G1"]),
             helper.make_node("Slice", ["W", "r0", "r2", "ax0"], ["Wr0"]),
             helper.make_node("Slice", ["Wr0", "c0", "c3", "ax1"], ["W0"]),
             helper.make_node("Slice", ["W", "r2", "r5", "ax0"], ["Wr1"]),
             helper.make_node("Slice", ["Wr1", "c3", "c7", "ax1"], ["W1"]),
             helper.make_node("MatMul", ["W0", "G0"], ["M0"]),
             helper.make_node("MatMul", ["W1", "G1"], ["M1"]),
             helper.make_node("Concat", ["M0", "M1"], ["out"], axis=1)]
    if not slice_constant_weight:
        nodes[3] = helper.make_node("Slice", ["Wd", "r0", "r2", "ax0"], ["Wr0"])
    inputs = [y] + ([] if slice_constant_weight else
                    [helper.make_tensor_value_info("Wd", TensorProto.FLOAT, [5, 7])])
    graph = helper.make_graph(nodes, "g", inputs,
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["B", 5, 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_band_slices_become_gathers_of_the_grid_and_constants():
    """The two slices of the gathered rows become two gathers of ``Y`` by the sliced index
    and the weight's slices become constants; the first gather goes. Same values (copies and
    the same products), bit for bit."""
    model = _sliced_gather_graph()
    y = np.random.default_rng(2).standard_normal((3, 40, 4)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString()).run(None, {"Y": y})[0]
    assert fold_constant_slices(model) == 4
    assert fold_slice_of_gather(model) == 2
    assert fold_bin_gather(model) == 0
    onnx.checker.check_model(model)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Gather") == 2 and "Slice" not in ops
    picked = sorted(numpy_helper.to_array(i).tolist() for i in model.graph.initializer
                    if i.data_type == TensorProto.INT64)
    assert picked == [[7, 3, 3, 0], [8, 1, 2]]
    got = ort.InferenceSession(model.SerializeToString()).run(None, {"Y": y})[0]
    np.testing.assert_array_equal(got, want)


def test_slices_of_non_constants_are_left_alone():
    model = _sliced_gather_graph(slice_constant_weight=False)
    assert fold_constant_slices(model) == 2      # W's other band (two chained slices) folds
    assert [n.op_type for n in model.graph.node].count("Slice") == 4   # G0, G1 and Wd's two


def test_mel_bundle_is_rewritten_and_meets_librosa_in_float64(mel_bundle):
    """mel_128 ships without its bin Gather: each band of the banded mel bank reads its bins
    straight from the stage-2 grid (one Gather of the grid per band, no gather of all bins,
    no Slice of a constant); the rewritten file in ORT against librosa's float64 mel
    spectrogram of the same audio, within the preset's documented tolerance (README, presets
    table: 1e-4 x peak), every bin."""
    import nnaudio_export as nx
    bands = next(s.bands for s in nx.Frontend.from_spec(nx.presets.get_spec("mel_128")).stages
                 if hasattr(s, "bands"))
    model = onnx.load(str(mel_bundle / "model.onnx"))
    assert [n.op_type for n in model.graph.node].count("Gather") == len(bands) >= 3
    info = json.loads((mel_bundle / "manifest.json").read_text())["files"]["model.onnx"]
    assert info["rewrites"] == {"fold_constant_slices": 2 * len(bands),
                                "fold_slice_of_gather": len(bands), "fold_bin_gather": 0,
                                "pair_sums_as_matmul": 1}
    manifest = json.loads((mel_bundle / "manifest.json").read_text())
    sr, n = int(manifest["sample_rate"]), int(manifest["num_samples"])
    x = np.stack([clip(name, sr, n / sr)[:n] for name in ("speech", "tones")]).astype(np.float32)
    session = ort.InferenceSession(str(mel_bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    for g, item in zip(got, x.astype(np.float64)):
        want = librosa.feature.melspectrogram(y=item, sr=sr, n_fft=2048, hop_length=512, n_mels=128,
                                              center=True, pad_mode="reflect", power=2.0)
        assert g.shape == want.shape
        assert np.abs(g - want).max() <= 1e-4 * want.max()


def _pair_sum_graph(shape, axes, keepdims=0):
    """``ReduceSum(X * X, axes, keepdims)`` on ``X`` of ``shape`` (batch symbolic)."""
    inits = [numpy_helper.from_array(np.asarray(axes, np.int64), "axes")]
    nodes = [helper.make_node("Mul", ["X", "X"], ["sq"]),
             helper.make_node("ReduceSum", ["sq", "axes"], ["out"], keepdims=keepdims)]
    dims = ["B", *shape[1:]]
    out = [d for i, d in enumerate(dims) if i not in [a % len(dims) for a in axes]] if not keepdims else \
        [1 if i in [a % len(dims) for a in axes] else d for i, d in enumerate(dims)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, out)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("shape,axes", [((3, 2, 5, 7), [1]), ((3, 2, 5, 7), [-3]),
                                        ((3, 4, 2, 5, 7), [2]), ((3, 4, 3, 2, 7), [-2])])
def test_pair_sums_become_a_matmul_with_the_same_rounding(shape, axes):
    """The power: ``C^2 + S^2`` as ``[1, 1] @ (B, .., 2, G T)`` rounds the
    sum once, as ReduceSum does: bit for bit the same in ONNX Runtime (and against float64
    within one float32 rounding of the sum), on axis 1 (dense stage 2) or further in (the
    split stage 2's ``(B, V, 2, U A, T)``)."""
    model = _pair_sum_graph(shape, axes)
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString()).run(None, {"X": x})[0]
    assert pair_sums_as_matmul(model) == 1
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node] == ["Mul", "Reshape", "MatMul", "Reshape"]
    got = ort.InferenceSession(model.SerializeToString()).run(None, {"X": x})[0]
    k = axes[0] % len(shape)
    assert got.shape == shape[:k] + shape[k + 1:] and np.array_equal(got, want)
    sq = np.moveaxis(x * x, k, 0)
    exact = sq[0].astype(np.float64) + sq[1]
    assert np.abs(got - exact).max() <= np.finfo(np.float32).eps * np.abs(exact).max()


@pytest.mark.parametrize("shape,axes,keepdims", [((3, 2, 5, 7), [1], 1), ((3, 3, 5, 7), [1], 0),
                                                 ((3, 2, 5, 7), [2], 0), ((3, 2, 2, 7), [1, 2], 0),
                                                 ((3, 2, 5, 7), [0], 0)])
def test_other_reductions_are_left_alone(shape, axes, keepdims):
    model = _pair_sum_graph(shape, axes, keepdims)
    before = model.SerializeToString()
    assert pair_sums_as_matmul(model) == 0
    assert model.SerializeToString() == before


def test_pair_sums_are_rewritten_by_rewrite():
    """Every graph (CPU and 'cuda' layouts alike): ORT's CPU reduction of a one-item batch's
    leading pair axis is as slow as cuDNN's (module docstring)."""
    assert rewrite(_pair_sum_graph((3, 2, 5, 7), [1]))["pair_sums_as_matmul"] == 1
