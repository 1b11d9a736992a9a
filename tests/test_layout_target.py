"""The device a graph is laid out for (``target``: 'cpu' | 'cuda'): a 'cuda' bundle runs the
factorised DFT's stage 1 as a MatMul and its power's pair sum as a MatMul, nothing else
changes; every backend still meets the float64 reference and the eager module (here on the
CPU; scripts/gpu_check.py verifies it on CUDA), the manifest says which layout it is, and a
wrong or unsupported target is one clear error."""
import json

import numpy as np
import onnx
import pytest
import torch

import nnaudio_export as nx
from nnaudio_export.layers import STFT, FactorisedDFT, MelSpectrogram
from nnaudio_export.spec import compile_spec, normalize_spec

from test_cli import cli


@pytest.fixture(scope="module")
def cuda_bundle(tmp_path_factory):
    """whisper_80 (1 s) laid out for CUDA, every format, verified at export (on the CPU)."""
    return nx.export("whisper_80", tmp_path_factory.mktemp("cuda_layout") / "b", seconds=1.0, target="cuda")


def test_cuda_bundle_graph_has_no_conv_and_no_pair_reduction(cuda_bundle):
    model = onnx.load(str(cuda_bundle / "model.onnx"))
    ops = [n.op_type for n in model.graph.node]
    assert "Conv" not in ops and "ReduceSum" not in ops, ops
    assert not set(ops) & {"DFT", "STFT"}
    manifest = json.loads((cuda_bundle / "manifest.json").read_text())
    assert manifest["spec"]["target"] == "cuda"
    (stage,) = manifest["fourier_stages"]
    assert (stage["target"], stage["stage1"], stage["stage2_split"]) == ("cuda", "matmul", None)
    assert stage["macs_per_frame"] == 27280 + 2 * 11 * 20 * 4      # 24 taps for 20: 4 zero taps per phase
    assert manifest["files"]["model.onnx"]["rewrites"]["pair_sums_as_matmul"] == 1


def test_cuda_bundle_passes_parity_on_every_backend(cuda_bundle):
    report = nx.verify(cuda_bundle, devices=("cpu",), backends=("eager", "torchscript", "onnxruntime", "pt2"))
    assert report.ok, report.table()
    ran = {r["backend"] for r in report.to_dict()["rows"] if r["status"] == "passed"}
    assert ran == {"eager", "torchscript", "onnxruntime", "pt2"}


def test_both_layouts_agree_to_float32_rounding(cuda_bundle):
    """The same frontend laid out for the CPU, on the same input: a few float32 roundings of
    the output's peak apart (whisper_80: the same split and a dense stage 2 either way; the
    sums differ only in the order the runtimes pick)."""
    x = nx.presets.load("whisper_80", seconds=1.0).example_input()
    cpu = nx.presets.load("whisper_80", seconds=1.0)
    cuda = nx.load(cuda_bundle, backend="onnxruntime")
    with torch.no_grad():
        want = cpu(torch.from_numpy(x)).numpy()
    got = np.asarray(cuda(x))
    assert np.abs(got - want).max() <= 8 * np.finfo(np.float32).eps * float(np.abs(want).max())


def test_layers_take_the_target():
    stft = STFT(n_fft=2048, hop_length=512, target="cuda")
    assert isinstance(stft.conv, FactorisedDFT) and stft.conv.blocks == 4 and stft.conv.u == 0
    assert "target=cuda, stage1=matmul of 4 blocks" in repr(stft.conv)
    assert STFT(n_fft=2048, hop_length=512).conv.u == 8            # the CPU layout splits stage 2
    mel = MelSpectrogram(sr=16000, n_fft=400, hop_length=160, n_mels=80, target="cuda")
    assert mel.stft.conv.target == "cuda"
    torch.jit.script(mel)


@pytest.mark.parametrize("call", [
    lambda: STFT(n_fft=400, hop_length=160, target="gpu"),
    lambda: MelSpectrogram(n_fft=400, hop_length=160, target="tpu"),
    lambda: normalize_spec(dict(nx.presets.get_spec("whisper_80"), target="gpu")),
    lambda: nx.presets.get_spec("whisper_80", target="CUDA"),
])
def test_an_unknown_target_names_the_parameter(call):
    with pytest.raises(ValueError, match="target"):
        call()


def test_streaming_and_modules_refuse_a_target(tmp_path):
    with pytest.raises(ValueError, match="target: streaming bundles are laid out for the CPU"):
        nx.export("whisper_80", tmp_path / "s", seconds=1.0, streaming=True, target="cuda", verify=False)
    layer = STFT(n_fft=400, hop_length=160, sr=16000, output_format="Magnitude", num_samples=16000)
    with pytest.raises(ValueError, match="target='cuda'.*instead"):
        nx.export(layer, tmp_path / "m", sample_rate=16000, num_samples=16000, target="cuda", verify=False)
    assert not any(tmp_path.iterdir())


def test_a_spec_says_its_target_and_defaults_to_cpu():
    assert normalize_spec(nx.presets.get_spec("whisper_80"))["target"] == "cpu"
    fe = nx.Frontend.from_spec(dict(nx.presets.get_spec("whisper_80", seconds=1.0), target="cuda"))
    (dft,) = [m for m in fe.modules() if isinstance(m, FactorisedDFT)]
    assert dft.target == "cuda"
    # the memory estimate (runtime chunking) counts the stacked blocks: 20 phases x 24 taps a frame
    cpu = compile_spec(normalize_spec(nx.presets.get_spec("whisper_80", seconds=1.0)))
    cuda = compile_spec(normalize_spec(fe.spec))
    assert cuda.bytes_per_item - cpu.bytes_per_item == 4 * 20 * 24 * fe.stages[1].layer.output_shape_for(16000)[1]


def test_cli_build_target(tmp_path):
    out = tmp_path / "b"
    res = cli("build", "kaldi_fbank_80", "--out", out, "--formats", "onnx", "--seconds", "1", "--target", "cuda")
    assert res.returncode == 0, res.stderr
    assert "PARITY OK" in res.stdout
    assert json.loads((out / "manifest.json").read_text())["spec"]["target"] == "cuda"
    assert "laid out:    for cuda" in cli("inspect", out).stdout
    res = cli("build", "whisper_80", "--out", tmp_path / "x", "--target", "gpu")   # argparse's usage error
    assert res.returncode == 2 and "--target: invalid choice: 'gpu'" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "x").exists()
