"""Synthesis frontends (spectrum -> audio): the presets against their references through
every backend, the spec rules of a synthesis chain, the runtime's shape check, the CLI
(build / verify / inspect / presets) and Triton configs of a synthesis bundle.

The generic bundle tests (tests/test_bundle.py: every backend, batch 1 / 5, verify against
eager float32 and float64, manifest, ONNX artifact) cover the synthesis presets too.
"""
import json
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import nnaudio_export as nx
from nnaudio_export.manifest import read_manifest
from nnaudio_export.references import ALTERNATES, REFERENCES
from nnaudio_export.triton import write_triton_repo
from conftest import SHORT_FRAMES

warnings.filterwarnings("ignore")

SYNTHESIS_PRESETS = ("vocos_istft_24khz", "istft_1024")
BACKENDS = ("eager", "torchscript", "onnxruntime", "pt2")
# Against float64 references: the layer's float32 rounding (measured 2-5e-7 x peak).
TOL = 1e-6


def run(rt, x: np.ndarray) -> np.ndarray:
    return np.asarray(rt(x), dtype=np.float64)


@pytest.mark.parametrize("name", SYNTHESIS_PRESETS)
def test_preset_matches_its_references_in_every_backend(bundles, name):
    """Float64 references: 1e-6 x peak. Vocos as shipped (float32): within 1e-6 x peak plus
    its own distance from its float64 run, sample by sample."""
    d = bundles.preset(name)
    fe = nx.Frontend.from_spec(read_manifest(d)["spec"])
    refs = [REFERENCES[name]] + ALTERNATES[name]
    exact = next(r for r in refs if r.float64)
    x = fe.example_input(("speech", "tones", "noise"))
    outs = {b: run(nx.load(d, backend=b), x) for b in BACKENDS}
    for i in range(x.shape[0]):
        truth = exact(x[i])
        for ref in refs:
            r = ref(x[i])
            allowance = 0.0 if ref.float64 else np.abs(r - truth)
            for backend, y in outs.items():
                err = np.maximum(np.abs(y[i] - r) - allowance, 0.0).max() / np.abs(r).max()
                assert err <= TOL, f"{name} item {i} {backend} vs {ref.description}: {err:.2e}"


def test_vocos_preset_at_its_default_length_in_eager():
    fe = nx.presets.load("vocos_istft_24khz").eval()
    assert fe.input_shape == (1026, 938) and fe.output_shape == (938 * 256,)
    x = fe.example_input(("speech",))
    with torch.no_grad():
        y = fe(torch.from_numpy(x))[0].double().numpy()
    r = ALTERNATES["vocos_istft_24khz"][0](x[0])      # Vocos in float64
    assert np.abs(y - r).max() <= TOL * np.abs(r).max()


def test_log_magnitude_is_clipped_at_100_as_vocos():
    fe = nx.presets.load("vocos_istft_24khz", num_frames=SHORT_FRAMES).eval()
    x = fe.example_input(("speech",))
    x[0, :513] += 8.0                                   # magnitudes far above 100
    with torch.no_grad():
        y = fe(torch.from_numpy(x))[0].double().numpy()
    r = ALTERNATES["vocos_istft_24khz"][0](x[0])
    assert np.abs(y - r).max() <= TOL * np.abs(r).max()
    assert np.abs(r - ALTERNATES["vocos_istft_24khz"][0](x[0] - 8.0)).max() > 1.0   # the clip mattered


@pytest.mark.parametrize("layout", ["complex", "magnitude_phase", "log_magnitude_phase"])
def test_layouts_give_the_same_audio(layout):
    """The same spectrum in each layout (the phase wraps; the log-magnitude clips at 100,
    which these spectra stay below) gives the same audio as torch.istft in float64."""
    fe = (nx.FrontendBuilder(sample_rate=16000).spectrum_input(257, 30, layout)
          .istft(n_fft=512, hop_length=128).build())
    x = fe.example_input(("speech", "noise"))
    assert x.shape == (2,) + fe.input_shape
    with torch.no_grad():
        y = fe(torch.from_numpy(x)).double().numpy()
    complex_fe = (nx.FrontendBuilder(sample_rate=16000).spectrum_input(257, 30, "complex")
                  .istft(n_fft=512, hop_length=128).build())
    z = torch.view_as_complex(torch.from_numpy(complex_fe.example_input(("speech", "noise"))).double())
    ref = torch.istft(z, 512, 128, window=torch.hann_window(512, dtype=torch.float64)).numpy()
    assert np.abs(y - ref).max() <= TOL * np.abs(ref).max()


# --------------------------------------------------------------------------- spec rules

SYN = {"format": "nnaudio_export.frontend", "format_version": 1, "sample_rate": 16000,
       "stages": [{"type": "spectrum_input", "freq_bins": 257, "num_frames": 30},
                  {"type": "istft", "n_fft": 512, "hop_length": 128}]}


def _with(**changes):
    spec = json.loads(json.dumps(SYN))
    for key, value in changes.items():
        if key == "stages":
            spec["stages"] = value
        else:
            spec[key] = value
    return spec


@pytest.mark.parametrize("spec,needles", [
    (_with(num_samples=16000), ["num_samples", "synthesis spec"]),
    (_with(length_policy="exact"), ["length_policy"]),
    (_with(stages=[{"type": "spectrum_input", "freq_bins": 300, "num_frames": 30},
                   {"type": "istft", "n_fft": 512}]), [r"stages\[1\] \(istft\)", "freq_bins"]),
    (_with(stages=[{"type": "spectrum_input", "freq_bins": 257, "num_frames": 30}]), ["istft"]),
    (_with(stages=[{"type": "spectrum_input", "freq_bins": 257, "num_frames": 30, "layout": "polar"},
                   {"type": "istft", "n_fft": 512}]), [r"stages\[0\]", "layout"]),
    (_with(stages=[{"type": "spectrum_input", "freq_bins": 257},
                   {"type": "istft", "n_fft": 512}]), [r"stages\[0\]", "num_frames is required"]),
    (_with(stages=[{"type": "spectrum_input", "freq_bins": 257, "num_frames": 30},
                   {"type": "istft", "n_fft": 512, "hop_length": 512}]), [r"stages\[1\]", "hop_length", "NOLA"]),
    (_with(stages=[{"type": "spectrum_input", "freq_bins": 257, "num_frames": 30},
                   {"type": "istft", "n_fft": 512, "padding": "same"}]), [r"stages\[1\]", "padding", "center=False"]),
    (_with(stages=[{"type": "spectrum_input", "freq_bins": 257, "num_frames": 30},
                   {"type": "istft", "n_fft": 512}, {"type": "log"}]), [r"stages\[2\] \(log\)", "needs a power/magnitude spectrum"]),
    ({"sample_rate": 16000, "num_samples": 8000, "stages": [{"type": "stft", "n_fft": 512},
                                                              {"type": "istft", "n_fft": 512}]},
     [r"stages\[1\] \(istft\)", "spectrum_input"]),
    ({"sample_rate": 16000, "num_samples": 8000, "stages": [{"type": "input"}, {"type": "stft"},
                                                              {"type": "spectrum_input", "freq_bins": 1, "num_frames": 1}]},
     [r"stages\[2\] \(spectrum_input\)", "first stage"]),
])
def test_invalid_synthesis_specs_name_stage_and_parameter(spec, needles):
    with pytest.raises(ValueError) as info:
        nx.Frontend.from_spec(spec)
    for n in needles:
        assert re.search(n, str(info.value)), (n, str(info.value))


def test_duration_overrides():
    assert nx.presets.load("istft_1024", num_frames=10).input_shape == (513, 10, 2)
    with pytest.raises(ValueError, match="num_frames"):
        nx.presets.load("istft_1024", seconds=1.0)
    with pytest.raises(ValueError, match="num_frames: only a synthesis spec"):
        nx.presets.load("mel_128", num_frames=10)


def test_analysis_bundle_manifest_keeps_its_keys_and_names(mel_bundle):
    """The input/output generalisation leaves an analysis bundle's manifest as it was
    (the C++ example and Triton configs read it)."""
    m = read_manifest(mel_bundle)
    assert set(m["input"]) == {"name", "dtype", "shape", "torchscript_name"}
    assert set(m["output"]) == {"name", "dtype", "shape", "kind", "db_per_unit", "torchscript_name"}
    assert (m["input"]["name"], m["output"]["name"]) == ("audio", "features")
    assert m["num_samples"] == m["input"]["shape"][-1]


def test_runtime_names_the_expected_spectrum_shape(bundles):
    d = bundles.preset("vocos_istft_24khz")
    for backend in BACKENDS:
        rt = nx.load(d, backend=backend)
        with pytest.raises(ValueError, match=r"spectrum: expected shape \(batch, 1026, 64\) float32"):
            rt(np.zeros((1, 1026, SHORT_FRAMES - 1), np.float32))
    fe = nx.Frontend.from_spec(read_manifest(d)["spec"])
    with pytest.raises(ValueError, match=r"freq_bins, num_frames\) = \(batch, 1026, 64\)"):
        fe(torch.zeros(1, 1024, SHORT_FRAMES))


# --------------------------------------------------------------------------- CLI, Triton

def cli(*args):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "nnaudio_export.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=600, env=env)


def test_cli_build_verify_inspect(tmp_path):
    out = tmp_path / "voc"
    res = cli("build", "vocos_istft_24khz", "--out", out, "--formats", "onnx,torchscript",
              "--num-frames", 32)
    assert res.returncode == 0, res.stderr
    assert "input  spectrum: ['batch', 1026, 32] float32" in res.stdout
    assert "output audio: ['batch', 8192] float32" in res.stdout and "PARITY OK" in res.stdout
    m = read_manifest(out)
    assert m["input"]["kind"] == "spectrum" and m["input"]["layout"] == "log_magnitude_phase"
    assert m["num_samples"] == 8192 and m["parity"]["ok"]
    assert m["reference_error"]["package"] == "vocos" and m["reference_error"]["max_abs_error"] < 1e-5
    res = cli("verify", out, "--device", "cpu")
    assert res.returncode == 0 and "PARITY OK" in res.stdout, res.stdout + res.stderr
    res = cli("inspect", out)
    assert res.returncode == 0, res.stderr
    assert "8192 samples of output audio" in res.stdout
    assert "spectrum ['batch', 1026, 32] float32 (spectrum, layout log_magnitude_phase)" in res.stdout
    res = cli("build", "vocos_istft_24khz", "--out", tmp_path / "x", "--seconds", 1)
    assert res.returncode == 2 and "give num_frames" in res.stderr and "Traceback" not in res.stderr
    res = cli("presets")
    rows = {line.split()[0]: line.split() for line in res.stdout.splitlines()[1:]}
    assert rows["vocos_istft_24khz"][1:5] == ["24000", "240128", "240128", "spectrum:1026x938"]
    assert rows["istft_1024"][4] == "spectrum:513x862x2" and rows["whisper_80"][4] == "audio:480000"


def test_triton_configs_of_a_synthesis_bundle(bundles, tmp_path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc
    import onnx
    d = bundles.preset("vocos_istft_24khz")
    written = write_triton_repo(d, tmp_path / "repo", name="voc", max_batch=8)
    assert sorted(written) == ["voc_libtorch", "voc_onnx"]
    cfg = text_format.Parse((tmp_path / "repo/voc_onnx/config.pbtxt").read_text(), mc.ModelConfig())
    graph = onnx.load(str(tmp_path / "repo/voc_onnx/1/model.onnx")).graph
    assert cfg.input[0].name == graph.input[0].name == "spectrum"
    assert cfg.output[0].name == graph.output[0].name == "audio"
    assert list(cfg.input[0].dims) == [1026, SHORT_FRAMES] and list(cfg.output[0].dims) == [SHORT_FRAMES * 256]
    pt = text_format.Parse((tmp_path / "repo/voc_libtorch/config.pbtxt").read_text(), mc.ModelConfig())
    assert [i.name for i in pt.input] == ["INPUT__0"] and list(pt.input[0].dims) == [1026, SHORT_FRAMES]
    module = torch.jit.load(str(tmp_path / "repo/voc_libtorch/1/model.pt"))
    assert tuple(module(torch.zeros(2, 1026, SHORT_FRAMES)).shape) == (2, SHORT_FRAMES * 256)
