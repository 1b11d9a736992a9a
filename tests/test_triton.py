"""nnaudio_export.triton: Triton model repository from a bundle.

Every config.pbtxt must parse as Triton's ModelConfig (tritonclient[grpc]'s
model_config_pb2); names, dtypes and dims are checked against the exported ONNX graph and
against what the TorchScript module returns on a sample batch.
"""
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import nnaudio_export as nx
from nnaudio_export.manifest import sha256_file
from nnaudio_export.cli import main as cli_main
from nnaudio_export.manifest import BundleError, read_manifest
from nnaudio_export.triton import write_triton_repo

warnings.filterwarnings("ignore")
onnx = pytest.importorskip("onnx")
from google.protobuf import text_format  # noqa: E402
from tritonclient.grpc import model_config_pb2 as mc  # noqa: E402  (pip: tritonclient[grpc])


@pytest.fixture(scope="module")
def bundle(mel_bundle) -> Path:
    return mel_bundle  # the shared mel_128 bundle (conftest)


@pytest.fixture(scope="module")
def int16_bundle(tmp_path_factory) -> Path:
    spec = {"format": "nnaudio_export.frontend", "format_version": 1, "name": "fbank_int16",
            "sample_rate": 16000, "num_samples": 4000,
            "stages": [{"type": "input", "dtype": "int16"},
                       {"type": "stft", "n_fft": 400, "hop_length": 160},
                       {"type": "power", "exponent": 2.0},
                       {"type": "mel", "n_mels": 40, "norm": "slaney"}]}
    return nx.export(spec, tmp_path_factory.mktemp("triton") / "int16", formats=("torchscript", "onnx"),
                     verify=False)


def parse(path: Path) -> "mc.ModelConfig":
    return text_format.Parse(path.read_text(), mc.ModelConfig())


def onnx_io(path: Path):
    model = onnx.load(str(path))

    def desc(vi):
        dims = [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]
        return vi.name, vi.type.tensor_type.elem_type, dims
    return [desc(v) for v in model.graph.input], [desc(v) for v in model.graph.output]


ONNX_TO_TRITON = {onnx.TensorProto.FLOAT: mc.TYPE_FP32, onnx.TensorProto.INT16: mc.TYPE_INT16}


@pytest.mark.parametrize("which", ["bundle", "int16_bundle"])
def test_repo_layout_and_configs(request, tmp_path, which):
    b: Path = request.getfixturevalue(which)
    m = read_manifest(b)
    repo = tmp_path / "repo"
    written = write_triton_repo(b, repo, max_batch=16)
    name = m["name"]
    assert sorted(written) == [f"{name}_libtorch", f"{name}_onnx"]
    assert sorted(p.name for p in repo.iterdir()) == [f"{name}_libtorch", f"{name}_onnx"], "leftover temp dirs"

    # --- ONNX model: names, types, dims against the graph itself
    d = repo / f"{name}_onnx"
    assert sorted(str(p.relative_to(d)) for p in d.rglob("*")) == ["1", "1/model.onnx", "config.pbtxt"]
    assert sha256_file(d / "1" / "model.onnx") == m["files"]["model.onnx"]["sha256"]
    cfg = parse(d / "config.pbtxt")
    assert cfg.name == d.name
    assert cfg.platform == "onnxruntime_onnx" and cfg.backend == "onnxruntime"
    assert cfg.max_batch_size == 16 and cfg.HasField("dynamic_batching")
    (in_name, in_type, in_dims), = onnx_io(d / "1" / "model.onnx")[0]
    (out_name, out_type, out_dims), = onnx_io(d / "1" / "model.onnx")[1]
    assert len(cfg.input) == 1 and len(cfg.output) == 1
    assert cfg.input[0].name == in_name == "audio"
    assert cfg.output[0].name == out_name == "features"
    assert cfg.input[0].data_type == ONNX_TO_TRITON[in_type]
    assert cfg.output[0].data_type == ONNX_TO_TRITON[out_type] == mc.TYPE_FP32
    assert in_dims[0] == "batch" and out_dims[0] == "batch", "Triton batching needs a symbolic batch axis"
    assert list(cfg.input[0].dims) == in_dims[1:] == [m["num_samples"]]
    assert list(cfg.output[0].dims) == out_dims[1:]

    # --- TorchScript model: INPUT__0 / OUTPUT__0, dims from a real forward pass
    d = repo / f"{name}_libtorch"
    assert sorted(str(p.relative_to(d)) for p in d.rglob("*")) == ["1", "1/model.pt", "config.pbtxt"]
    assert sha256_file(d / "1" / "model.pt") == m["files"]["model.pt"]["sha256"]
    cfg_pt = parse(d / "config.pbtxt")
    assert cfg_pt.name == d.name
    assert cfg_pt.platform == "pytorch_libtorch" and cfg_pt.backend == "pytorch"
    assert cfg_pt.max_batch_size == 16 and cfg_pt.HasField("dynamic_batching")
    assert [i.name for i in cfg_pt.input] == ["INPUT__0"] and [o.name for o in cfg_pt.output] == ["OUTPUT__0"]
    module = torch.jit.load(str(d / "1" / "model.pt"))
    dtype = {mc.TYPE_FP32: torch.float32, mc.TYPE_INT16: torch.int16}[cfg_pt.input[0].data_type]
    x = torch.zeros(3, *cfg_pt.input[0].dims, dtype=dtype)
    x[:, ::7] = 1000 if dtype == torch.int16 else 0.1
    with torch.inference_mode():
        y = module(x)
    assert y.dtype == torch.float32 and cfg_pt.output[0].data_type == mc.TYPE_FP32
    assert list(y.shape) == [3, *cfg_pt.output[0].dims]
    assert list(cfg_pt.input[0].dims) == list(cfg.input[0].dims)
    assert list(cfg_pt.output[0].dims) == list(cfg.output[0].dims)


def test_name_and_overwrite(bundle, tmp_path):
    repo = tmp_path / "repo"
    write_triton_repo(bundle, repo, name="melfe", max_batch=8)
    assert parse(repo / "melfe_onnx" / "config.pbtxt").name == "melfe_onnx"
    before = (repo / "melfe_onnx" / "config.pbtxt").read_text()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_triton_repo(bundle, repo, name="melfe", max_batch=32)
    assert (repo / "melfe_onnx" / "config.pbtxt").read_text() == before
    write_triton_repo(bundle, repo, name="melfe", max_batch=32, overwrite=True)
    assert parse(repo / "melfe_onnx" / "config.pbtxt").max_batch_size == 32
    assert parse(repo / "melfe_libtorch" / "config.pbtxt").max_batch_size == 32
    assert sorted(p.name for p in repo.iterdir()) == ["melfe_libtorch", "melfe_onnx"]
    for bad in ("../evil", "a/b", ""):
        with pytest.raises(ValueError, match="model name"):
            write_triton_repo(bundle, repo, name=bad, overwrite=True)
    for bad in (0, 5000, 2.5, True):
        with pytest.raises(ValueError, match="max_batch"):
            write_triton_repo(bundle, repo, max_batch=bad, overwrite=True)


def test_fixed_batch_refused(tmp_path):
    b = nx.export("mel_128", tmp_path / "fixed", seconds=0.25, formats=("torchscript",), batch=4, verify=False)
    with pytest.raises(BundleError, match="fixed batch of 4.*dynamic batch axis"):
        write_triton_repo(b, tmp_path / "repo")
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())
    assert cli_main(["triton", str(b), "--repo", str(tmp_path / "repo")]) == 2


def test_sha256_mismatch_refused(bundle, tmp_path):
    b = tmp_path / "bundle"
    shutil.copytree(bundle, b)
    with open(b / "model.onnx", "ab") as f:
        f.write(b"x")
    with pytest.raises(BundleError, match="sha256"):
        write_triton_repo(b, tmp_path / "repo")
    assert not any((tmp_path / "repo").glob("*")) if (tmp_path / "repo").exists() else True


def test_missing_model_file_refused(tmp_path):
    b = nx.export("mel_128", tmp_path / "ts_only", seconds=0.25, formats=("torchscript",), verify=False)
    with pytest.raises(BundleError, match="has no model.onnx"):
        write_triton_repo(b, tmp_path / "repo")
    written = write_triton_repo(b, tmp_path / "repo", backends=("libtorch",))
    assert list(written) == ["mel_128_libtorch"]


def test_cli_exit_codes(bundle, tmp_path, capsys):
    repo = tmp_path / "repo"
    assert cli_main(["triton", str(bundle), "--repo", str(repo), "--name", "fe", "--max-batch", "4"]) == 0
    out = capsys.readouterr().out
    assert "fe_onnx" in out and "fe_libtorch" in out and "tritonserver --model-repository" in out
    assert parse(repo / "fe_onnx" / "config.pbtxt").max_batch_size == 4
    assert cli_main(["triton", str(bundle), "--repo", str(repo), "--name", "fe"]) == 2
    assert "--force" in capsys.readouterr().err
    assert cli_main(["triton", str(bundle), "--repo", str(repo), "--name", "fe", "--force"]) == 0
    assert parse(repo / "fe_onnx" / "config.pbtxt").max_batch_size == 64
    assert cli_main(["triton", str(bundle), "--repo", str(repo), "--max-batch", "0"]) == 2
    assert cli_main(["triton", str(tmp_path / "nope"), "--repo", str(repo)]) == 2
    # the installed console script, end to end
    exe = Path(sys.executable).with_name("nnaudio-export")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "nnaudio_export.cli"]
    r = subprocess.run(cmd + ["triton", str(bundle), "--repo", str(tmp_path / "r2")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "r2" / "mel_128_onnx" / "1" / "model.onnx").is_file()
    r = subprocess.run(cmd + ["triton", str(bundle), "--repo", str(tmp_path / "r2")], capture_output=True, text=True)
    assert r.returncode == 2 and "already exist" in r.stderr
