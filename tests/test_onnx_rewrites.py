"""The exported-graph rewrites (:mod:`nnaudio_export.onnx_rewrites`): the folded matrix is the
gather's algebra in float64, only the exact pattern is rewritten, and a shipped bundle that
was rewritten still meets the float64 reference (librosa) and the eager module."""
import json

import librosa
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from nnaudio_export.onnx_rewrites import fold_bin_gather, scatter_columns
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


def test_mel_bundle_is_rewritten_and_meets_librosa_in_float64(mel_bundle):
    """mel_128 ships without its bin Gather (the mel matrix reads the stage-2 grid); the
    rewritten file in ORT against librosa's float64 mel spectrogram of the same audio, within
    the preset's documented tolerance (README, presets table: 1e-4 x peak), every bin."""
    model = onnx.load(str(mel_bundle / "model.onnx"))
    assert "Gather" not in {n.op_type for n in model.graph.node}
    info = json.loads((mel_bundle / "manifest.json").read_text())["files"]["model.onnx"]
    assert info["rewrites"] == {"fold_bin_gather": 1}
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
