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
    (_with(stages=[{"type": "spectrum_input", "freq_bins": 257, "num_frames": 30},
                   {"type": "griffin_lim", "n_fft": 512}]), [r"stages\[1\] \(griffin_lim\)", "layout='magnitude'"]),
    (_with(stages=[{"type": "spectrum_input", "freq_bins": 257, "num_frames": 30, "layout": "magnitude"},
                   {"type": "istft", "n_fft": 512}]), [r"stages\[1\] \(istft\)", "spectrum input"]),
    (_with(stages=[{"type": "spectrum_input", "freq_bins": 300, "num_frames": 30, "layout": "power"},
                   {"type": "griffin_lim", "n_fft": 512}]), [r"stages\[1\] \(griffin_lim\)", "freq_bins"]),
    (_with(stages=[{"type": "spectrum_input", "freq_bins": 257, "num_frames": 30, "layout": "magnitude"},
                   {"type": "griffin_lim", "n_fft": 512, "momentum": 1.0}]), [r"stages\[1\]", "momentum"]),
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


# --------------------------------------------------------------------------- Griffin-Lim bundle

GL = "griffinlim_1024"


def librosa_griffinlim(s: np.ndarray, dtype=np.float64) -> np.ndarray:
    import librosa
    return librosa.griffinlim(s.astype(dtype), n_iter=32, hop_length=256, n_fft=1024, init=None,
                              momentum=0.99, dtype=dtype).astype(np.float64)


def spectral_convergence(y: np.ndarray, s: np.ndarray) -> float:
    """``||S - |STFT(y)||| / ||S||`` with the preset's STFT (librosa's, zero padding)."""
    import librosa
    rebuilt = np.abs(librosa.stft(y, n_fft=1024, hop_length=256, pad_mode="constant"))
    return float(np.linalg.norm(rebuilt - s) / np.linalg.norm(s))


@pytest.fixture(scope="module")
def gl_outputs(bundles):
    """The shared griffinlim_1024 bundle (64 frames, every format), its example input
    (speech, tones, noise), every backend's output, eager float64, librosa float64 and eager
    float32 on the input nudged by float32 rounding (``tolerances.rounding_nudges``)."""
    from nnaudio_export.tolerances import rounding_nudges
    d = bundles.preset(GL)
    fe = nx.Frontend.from_spec(read_manifest(d)["spec"]).eval()
    x = fe.example_input(("speech", "tones", "noise"))
    outs = {b: run(nx.load(d, backend=b), x) for b in BACKENDS}
    with torch.no_grad():
        y64 = nx.Frontend.from_spec(fe.spec, dtype=torch.float64)(torch.from_numpy(x)).numpy()
        nudged = [fe(torch.from_numpy(v)).numpy() for v in rounding_nudges(x)]
    lib = np.stack([librosa_griffinlim(item) for item in x])
    return d, x, outs, y64, lib, nudged


def item_rel(y, ref):
    return np.abs(y - ref).max(axis=-1) / np.abs(ref).max(axis=-1)


def test_griffinlim_preset_against_librosa(gl_outputs):
    """Float64 (the spec rebuilt in float64): librosa.griffinlim(init=None) step for step,
    within 1e-8 x peak or twice the move of librosa's own float64 run when the magnitude
    moves by float64 rounding (2^-52 relative; 3 draws): measured ours 4.3e-13 speech,
    4.5e-7 tones, 3.6e-12 noise; the nudge moves tones by 1.7-3.0e-7 (zero phase is
    ill-conditioned there even in float64). Float32, every backend: each item within twice
    eager float32's own distance from float64, the largest over its run on the input and on
    4 inputs nudged by float32 rounding (the rounding the 32 iterations amplify, measured
    1.2e-4 speech, 0.72 tones, 9.7e-4 noise x peak; ORT 9.7e-5, 0.61, 1.2e-3), and the spectral convergence
    Griffin-Lim optimises no worse than librosa's own float32 runs by more than 0.1 %: the
    largest of librosa float64, float32, and float32 on the magnitude nudged by float32
    rounding (2^-24 relative; 4 seeded draws), which is how far float32 rounding alone moves
    librosa on an ill-conditioned item (measured, eager, three-stage inverse DFT: speech
    0.067964 vs librosa 0.067964 in every run; tones 0.158001 vs 0.154463 / 0.157273 and
    nudged 0.150197-0.162735; noise 0.125417 vs 0.125416-0.125418)."""
    d, x, outs, y64, lib, nudged = gl_outputs
    for i in range(x.shape[0]):
        s = x[i].astype(np.float64)
        moves = [item_rel(librosa_griffinlim(s * (1 + 2.0 ** -52 * np.random.default_rng(k).standard_normal(s.shape)))[None],
                          lib[i:i + 1])[0] for k in range(3)]
        assert item_rel(y64[i:i + 1], lib[i:i + 1])[0] <= max(1e-8, 2 * max(moves)), (i, moves)
    theirs = [max(spectral_convergence(run_, x[i].astype(np.float64))
                  for run_ in librosa_float32_runs(x[i], lib[i])) for i in range(x.shape[0])]
    spread = np.max([item_rel(y, lib) for y in [outs["eager"], *nudged]], axis=0)
    for backend, y in outs.items():
        assert np.all(item_rel(y, lib) <= np.maximum(1e-5, 2 * spread)), (backend, item_rel(y, lib), spread)
        for i in range(x.shape[0]):
            sc = spectral_convergence(y[i], x[i].astype(np.float64))
            assert sc <= 1.001 * theirs[i], (backend, i, sc, theirs[i])


def librosa_float32_runs(s: np.ndarray, lib64: np.ndarray) -> list:
    """librosa.griffinlim's float64 output ``lib64``, its float32 run, and float32 runs on
    ``s`` nudged by float32 rounding (``tolerances.rounding_nudges``, the draws our own
    spread uses): the outputs float32 rounding alone gives the reference."""
    from nnaudio_export.tolerances import rounding_nudges
    return [lib64, librosa_griffinlim(s, np.float32)] + [librosa_griffinlim(v, np.float32)
                                                        for v in rounding_nudges(s)]


def test_griffinlim_verify_judges_items_by_the_float32_spread(gl_outputs):
    """nx.verify passes with per-item thresholds of 2 x eager float32 vs float64 (the largest
    over the input and its float32-rounding nudges); on a well-conditioned item (speech) the threshold stays below 1e-3 x peak, and a
    backend output moved by more than it fails."""
    from nnaudio_export import parity
    from nnaudio_export.manifest import manifest_sha256
    d, x, outs, y64, lib, nudged = gl_outputs
    report = nx.verify(d, devices=("cpu",), expected_sha256=manifest_sha256(d))
    assert report.ok, report.table()
    rows = [r for r in report.rows if r.backend != "eager"]
    assert {r.backend for r in rows} == {"torchscript", "onnxruntime", "pt2"}
    assert all("x eager float32 vs float64 of the item" in r.note for r in rows)
    limits = parity.spread_limits(outs["eager"], y64, nudged)
    assert limits[0] <= 1e-3 and limits[2] <= 1e-2 and limits[1] > 0.1     # speech, noise; tones
    moved = outs["onnxruntime"].copy()
    moved[0] += 1.5 * limits[0] * np.abs(y64[0]).max()
    row = parity._judge("onnxruntime", "cpu", "float64_cpu", moved, y64,
                        {"kind": "linear", "dbu": None, "window": 60.0, "metric": "max_rel"},
                        None, limits, ["speech", "tones", "noise"])
    assert row.status == "failed" and "speech" in row.note


def test_griffinlim_cli_and_triton(bundles, tmp_path):
    d = bundles.preset(GL)
    res = cli("verify", d, "--device", "cpu", "--golden-only")
    assert res.returncode == 0 and "PARITY OK" in res.stdout, res.stdout + res.stderr
    res = cli("inspect", d)
    assert res.returncode == 0, res.stderr
    assert "spectrum ['batch', 513, 64] float32 (spectrum, layout magnitude)" in res.stdout
    written = write_triton_repo(d, tmp_path / "repo", name="gl", max_batch=4)
    assert sorted(written) == ["gl_libtorch", "gl_onnx"]
    import onnxruntime
    sess = onnxruntime.InferenceSession(str(tmp_path / "repo/gl_onnx/1/model.onnx"),
                                        providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["spectrum"] and sess.get_inputs()[0].shape[1:] == [513, 64]


def test_griffin_lim_stage_takes_power_as_magnitude_squared():
    """spectrum_input(layout='power') -> griffin_lim is the magnitude chain on |X|^2, and
    both are librosa.griffinlim(init=None) in float64 (a short chain, 4 iterations)."""
    import librosa

    def chain(layout):
        spec = (nx.FrontendBuilder(sample_rate=16000).spectrum_input(257, 20, layout)
                .griffin_lim(n_fft=512, hop_length=128, n_iter=4).build().spec)
        return nx.Frontend.from_spec(spec, dtype=torch.float64).eval()

    mag, power = chain("magnitude"), chain("power")
    s = mag.example_input(("speech",))[0].astype(np.float64)
    assert mag.input_shape == power.input_shape == (257, 20)
    np.testing.assert_allclose(power.example_input(("speech",))[0], s ** 2, rtol=1e-6)
    ref = librosa.griffinlim(s, n_iter=4, hop_length=128, n_fft=512, init=None, momentum=0.99,
                             dtype=np.float64)
    with torch.no_grad():
        y_mag = mag(torch.from_numpy(s)[None]).numpy()[0]
        y_pow = power(torch.from_numpy(s ** 2)[None]).numpy()[0]
    assert np.abs(y_mag - ref).max() <= 1e-10 * np.abs(ref).max()
    assert np.abs(y_pow - ref).max() <= 1e-10 * np.abs(ref).max()
