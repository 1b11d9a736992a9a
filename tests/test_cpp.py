"""examples/cpp frontend_cli (libtorch): build it, run it on WAV files for both backends and
compare with Python's ``nx.load(...)``; check the sample-rate / length / channel errors and
the manifest pin (``--expect-sha256``).

The C++ and Python runs are deterministic against each other: both use ONE intra-op thread
(``--threads 1`` and ``torch.set_num_threads(1)``), so the two processes sum every conv in
the same order. With different thread counts the float32 sums are split differently and
differ by rounding (a fresh-clone run on a busy machine saw 2.5e-6 against 1e-6 x peak).

The executable is built by scripts/build_cpp.sh into ``build/cpp`` (git-ignored, reused
between runs; set NNX_CPP_BUILD_DIR to use another). A failed build FAILS the tests.
"""
import os
import subprocess
import sys
import time
import wave
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import nnaudio_export as nx

warnings.filterwarnings("ignore")

ROOT = Path(__file__).resolve().parents[1]
BUILD_DIR = Path(os.environ.get("NNX_CPP_BUILD_DIR", ROOT / "build" / "cpp"))
SECONDS = 0.5


@pytest.fixture(scope="module")
def cli() -> Path:
    env = dict(os.environ, PYTHON=sys.executable)
    t0 = time.time()
    r = subprocess.run(["bash", str(ROOT / "scripts" / "build_cpp.sh"), str(BUILD_DIR)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        pytest.fail(f"scripts/build_cpp.sh failed (exit {r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}",
                    pytrace=False)
    exe = BUILD_DIR / "frontend_cli"
    assert exe.is_file() and os.access(exe, os.X_OK), f"build succeeded but {exe} is missing"
    print(f"frontend_cli built in {time.time() - t0:.1f} s")
    return exe


@pytest.fixture(scope="module")
def whisper_bundle(tmp_path_factory) -> Path:
    """whisper_80, 0.5 s: length_policy 'pad_or_trim'."""
    b = nx.export("whisper_80", tmp_path_factory.mktemp("cpp") / "whisper", seconds=SECONDS,
                  formats=("torchscript",), verify=False)
    assert nx.runtime.read_manifest(b)["length_policy"] == "pad_or_trim"
    return b


@pytest.fixture(scope="module")
def int16_bundle(tmp_path_factory) -> Path:
    """A spec whose input is int16 PCM (scaled in the graph)."""
    spec = {"format": "nnaudio_export.frontend", "format_version": 1, "name": "mel_int16",
            "sample_rate": 16000, "num_samples": 8000,
            "stages": [{"type": "input", "dtype": "int16"},
                       {"type": "stft", "n_fft": 512, "hop_length": 160},
                       {"type": "power", "exponent": 2.0},
                       {"type": "mel", "n_mels": 40, "norm": "slaney"}]}
    b = nx.export(spec, tmp_path_factory.mktemp("cpp") / "int16", formats=("torchscript",), verify=False)
    assert nx.runtime.read_manifest(b)["input"]["dtype"] == "int16"
    return b


def clip(n: int, seed: int = 0) -> np.ndarray:
    """Speech-ish test audio in [-0.8, 0.8]: tones plus noise, float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000.0
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1234.5 * t) + 0.05 * rng.standard_normal(n)
    return np.clip(x, -0.8, 0.8).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, sr: int, kind: str, channels: int = 1) -> np.ndarray:
    """Write ``samples`` (frames,) or (frames, channels) as 16-bit PCM or 32-bit float WAV;
    return what a float32 reader gets back (int16 / 32768, or the floats), (frames,) for mono."""
    x = samples.reshape(len(samples), -1) if samples.ndim == 1 else samples
    assert x.shape[1] == channels
    if kind == "int16":
        pcm = np.round(np.clip(x, -1, 1) * 32767).astype("<i2")
        with wave.open(str(path), "wb") as w:
            w.setnchannels(channels)
            w.setsampwidth(2)
            w.setframerate(sr)
            w.writeframes(pcm.tobytes())
        back = pcm.astype(np.float32) / 32768.0
        return back[:, 0] if channels == 1 else back
    # The wave module writes PCM only: build a WAVE_FORMAT_IEEE_FLOAT (3) file by hand.
    data = np.ascontiguousarray(x, dtype="<f4").tobytes()
    fmt = (np.array([3, channels], "<u2").tobytes() + np.array([sr, sr * 4 * channels], "<u4").tobytes()
           + np.array([4 * channels, 32, 0], "<u2").tobytes())
    fact = np.array([len(x)], "<u4").tobytes()
    body = (b"WAVE" + b"fmt " + np.uint32(len(fmt)).tobytes() + fmt + b"fact" + np.uint32(4).tobytes() + fact
            + b"data" + np.uint32(len(data)).tobytes() + data)
    path.write_bytes(b"RIFF" + np.uint32(len(body)).tobytes() + body)
    return x[:, 0].astype(np.float32) if channels == 1 else x.astype(np.float32)


def run_cli(exe: Path, bundle: Path, wav: Path, out: Path, backend: str = "torchscript", *extra: str):
    return subprocess.run([str(exe), str(bundle), str(wav), str(out), "--backend", backend, "--threads", "1",
                           *extra], capture_output=True, text=True, timeout=300)


def python_features(bundle: Path, backend: str, audio: np.ndarray) -> np.ndarray:
    """Python's features with one intra-op thread, as ``run_cli`` runs the C++ side."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return nx.load(bundle, backend=backend)(audio[None])[0]
    finally:
        torch.set_num_threads(before)


def assert_close(got: np.ndarray, want: np.ndarray, what: str) -> float:
    assert got.dtype == np.float32, what
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    peak = float(np.abs(want).max())
    err = float(np.abs(got.astype(np.float64) - want).max())
    print(f"{what}: max abs err {err:.3g} (peak {peak:.3g}, rel {err / peak:.3g})")
    assert err <= 1e-6 * peak, f"{what}: max error {err:.3g} > 1e-6 x peak ({peak:.3g})"
    return err


@pytest.mark.parametrize("backend", ["torchscript", "pt2"])
@pytest.mark.parametrize("kind", ["int16", "float32"])
def test_cli_matches_python(cli, mel_bundle, tmp_path, backend, kind):
    m = nx.runtime.read_manifest(mel_bundle)
    n, sr = m["num_samples"], int(m["sample_rate"])
    audio = write_wav(tmp_path / "in.wav", clip(n, seed=1), sr, kind)
    r = run_cli(cli, mel_bundle, tmp_path / "in.wav", tmp_path / "out.npy", backend)
    assert r.returncode == 0, r.stderr
    got = np.load(tmp_path / "out.npy")
    assert list(got.shape) == m["output"]["shape"][1:]
    assert_close(got, python_features(mel_bundle, backend, audio), f"{backend}/{kind} wav")


def test_wrong_sample_rate(cli, mel_bundle, tmp_path):
    m = nx.runtime.read_manifest(mel_bundle)
    write_wav(tmp_path / "in.wav", clip(m["num_samples"]), 16000, "int16")
    r = run_cli(cli, mel_bundle, tmp_path / "in.wav", tmp_path / "out.npy")
    assert r.returncode == 2
    assert "sample rate" in r.stderr and "expected 22050" in r.stderr and "got 16000" in r.stderr, r.stderr
    assert not (tmp_path / "out.npy").exists()


@pytest.mark.parametrize("delta", [-100, 1])
def test_wrong_length_exact_policy(cli, mel_bundle, tmp_path, delta):
    m = nx.runtime.read_manifest(mel_bundle)
    n = m["num_samples"]
    write_wav(tmp_path / "in.wav", clip(n + delta), int(m["sample_rate"]), "float32")
    for backend in ("torchscript", "pt2"):
        r = run_cli(cli, mel_bundle, tmp_path / "in.wav", tmp_path / "out.npy", backend)
        assert r.returncode == 2, r.stderr
        assert f"expected {n} samples" in r.stderr and f"got {n + delta}" in r.stderr, r.stderr
        assert "'exact'" in r.stderr, r.stderr
    assert not (tmp_path / "out.npy").exists()


def test_stereo_to_mono_bundle_refused(cli, mel_bundle, tmp_path):
    m = nx.runtime.read_manifest(mel_bundle)
    x = np.stack([clip(m["num_samples"]), clip(m["num_samples"], seed=2)], axis=1)
    write_wav(tmp_path / "in.wav", x, int(m["sample_rate"]), "int16", channels=2)
    r = run_cli(cli, mel_bundle, tmp_path / "in.wav", tmp_path / "out.npy")
    assert r.returncode == 2 and "expected 1 channel(s), got 2" in r.stderr, r.stderr


def test_synthesis_bundle_refused(cli, bundles, tmp_path):
    """A synthesis bundle (input 'spectrum', output 'audio') takes no WAV: one clear error
    (--check runs it: test_check_of_a_synthesis_bundle)."""
    b = bundles.preset("vocos_istft_24khz")
    write_wav(tmp_path / "in.wav", clip(16000), 24000, "float32")
    r = run_cli(cli, b, tmp_path / "in.wav", tmp_path / "out.npy")
    assert r.returncode == 2 and "input is 'spectrum', not audio" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "out.npy").exists()


@pytest.mark.parametrize("delta", [-3000, 0, 2500])
def test_pad_or_trim_policy(cli, whisper_bundle, tmp_path, delta):
    m = nx.runtime.read_manifest(whisper_bundle)
    n, sr = m["num_samples"], int(m["sample_rate"])
    audio = write_wav(tmp_path / "in.wav", clip(n + delta, seed=3), sr, "int16")
    r = run_cli(cli, whisper_bundle, tmp_path / "in.wav", tmp_path / "out.npy")
    assert r.returncode == 0, r.stderr
    want_in = np.zeros(n, np.float32)
    want_in[:min(n, len(audio))] = audio[:n]
    assert_close(np.load(tmp_path / "out.npy"), python_features(whisper_bundle, "torchscript", want_in),
                 f"pad_or_trim {delta:+d}")


@pytest.mark.parametrize("kind", ["int16", "float32"])
def test_int16_bundle(cli, int16_bundle, tmp_path, kind):
    m = nx.runtime.read_manifest(int16_bundle)
    audio = write_wav(tmp_path / "in.wav", clip(m["num_samples"], seed=4), 16000, kind)
    pcm = np.clip(np.round(audio * 32768.0), -32768, 32767).astype(np.int16)
    r = run_cli(cli, int16_bundle, tmp_path / "in.wav", tmp_path / "out.npy")
    assert r.returncode == 0, r.stderr
    assert_close(np.load(tmp_path / "out.npy"), nx.load(int16_bundle, backend="torchscript")(pcm[None])[0],
                 f"int16 bundle/{kind} wav")


def test_tampered_model_and_usage(cli, tmp_path, mel_bundle):
    import shutil
    b = tmp_path / "bundle"
    shutil.copytree(mel_bundle, b)
    m = nx.runtime.read_manifest(b)
    write_wav(tmp_path / "in.wav", clip(m["num_samples"]), int(m["sample_rate"]), "int16")
    with open(b / "model.pt", "ab") as f:
        f.write(b"\0")
    r = run_cli(cli, b, tmp_path / "in.wav", tmp_path / "out.npy")
    assert r.returncode == 2 and "sha256 does not match" in r.stderr, r.stderr
    r = run_cli(cli, b, tmp_path / "in.wav", tmp_path / "out.npy", backend="onnx")
    assert r.returncode == 2 and "--backend" in r.stderr
    r = subprocess.run([str(cli), str(b)], capture_output=True, text=True)
    assert r.returncode == 2 and "usage" in r.stderr
    r = run_cli(cli, b, tmp_path / "in.wav", tmp_path / "out.npy", "torchscript", "--threads", "0")
    assert r.returncode == 2 and "--threads must be an integer" in r.stderr, r.stderr
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x04\x00\x00\x00WAVE")
    r = run_cli(cli, mel_bundle, tmp_path / "bad.wav", tmp_path / "out.npy")
    assert r.returncode == 2 and "no fmt chunk" in r.stderr, r.stderr


def test_expect_sha256_pins_the_manifest(cli, mel_bundle, tmp_path):
    import shutil
    m = nx.runtime.read_manifest(mel_bundle)
    audio = write_wav(tmp_path / "in.wav", clip(m["num_samples"], seed=5), int(m["sample_rate"]), "int16")
    digest = nx.manifest_sha256(mel_bundle)
    r = run_cli(cli, mel_bundle, tmp_path / "in.wav", tmp_path / "out.npy", "pt2", "--expect-sha256", digest.upper())
    assert r.returncode == 0, r.stderr
    assert_close(np.load(tmp_path / "out.npy"), python_features(mel_bundle, "pt2", audio), "pinned pt2")
    b = Path(shutil.copytree(mel_bundle, tmp_path / "b"))
    text = (b / "manifest.json").read_text()
    (b / "manifest.json").write_text(text.replace('"name"', '"name" ', 1))   # any change to the manifest
    for backend in ("torchscript", "pt2"):
        r = run_cli(cli, b, tmp_path / "in.wav", tmp_path / "o2.npy", backend, "--expect-sha256", digest)
        assert r.returncode == 2 and "not the pinned" in r.stderr, r.stderr
    assert not (tmp_path / "o2.npy").exists()
    (b / "model.pt").unlink()
    (b / "model.pt").symlink_to(mel_bundle / "model.pt")         # a link is refused, even to good bytes
    r = run_cli(cli, b, tmp_path / "in.wav", tmp_path / "o2.npy")
    assert r.returncode == 2 and "symbolic link" in r.stderr, r.stderr


# --------------------------------------------------------------------------- --check (golden.npz)

def run_check(exe: Path, bundle: Path, backend: str = "torchscript", *extra: str):
    return subprocess.run([str(exe), str(bundle), "--check", "--backend", backend, "--threads", "1", *extra],
                          capture_output=True, text=True, timeout=300)


def _mel_spec(fmax: float) -> dict:
    return {"format": "nnaudio_export.frontend", "format_version": 1, "name": f"mel_fmax_{fmax:g}",
            "sample_rate": 16000, "num_samples": 4000,
            "stages": [{"type": "stft", "n_fft": 512, "hop_length": 160}, {"type": "power", "exponent": 2.0},
                       {"type": "mel", "n_mels": 40, "fmax": fmax}]}


@pytest.mark.parametrize("which,backend", [("mel", "torchscript"), ("mel", "pt2"), ("whisper", "torchscript"),
                                           ("int16", "torchscript")])
def test_check_passes_on_untouched_bundles(cli, mel_bundle, whisper_bundle, int16_bundle, which, backend):
    """Linear (mel_128), log with its dB window (whisper) and int16-input bundles."""
    b = {"mel": mel_bundle, "whisper": whisper_bundle, "int16": int16_bundle}[which]
    r = run_check(cli, b, backend)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "golden check" in r.stdout and ": ok" in r.stdout, r.stdout
    items = nx.runtime.read_manifest(b)["golden"]["items"]
    assert f"{items} items" in r.stdout


def swap_model(a: Path, b: Path) -> None:
    """Bundle ``a``'s model.pt replaced by bundle ``b``'s (another valid model of the same
    shapes), its sha256 and size updated in ``a``'s manifest: every file check passes."""
    import hashlib
    import json
    m = json.loads((a / "manifest.json").read_text())
    data = (b / "model.pt").read_bytes()
    (a / "model.pt").write_bytes(data)
    m["files"]["model.pt"].update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    (a / "manifest.json").write_text(json.dumps(m, indent=2))


def test_check_fails_on_a_swapped_model(cli, tmp_path):
    """model.pt replaced by another valid model of the same shapes, its sha256 and size
    updated in the manifest: every file check passes, the golden check does not."""
    a = nx.export(_mel_spec(8000.0), tmp_path / "a", formats=("torchscript",), verify=False)
    b = nx.export(_mel_spec(6000.0), tmp_path / "b", formats=("torchscript",), verify=False)
    assert run_check(cli, a).returncode == 0
    swap_model(a, b)
    r = run_check(cli, a)
    assert r.returncode == 3 and "FAILED" in r.stdout, r.stdout + r.stderr
    # the golden file itself is pinned by the manifest
    raw = bytearray((a / "golden.npz").read_bytes())
    raw[len(raw) // 2] ^= 1
    (a / "golden.npz").write_bytes(bytes(raw))
    r = run_check(cli, a)
    assert r.returncode == 2 and "golden.npz: sha256 does not match" in r.stderr, r.stderr


def test_stream_run_equals_offline_run(cli, tmp_path):
    """frontend_cli --stream on a streaming bundle (whisper-style log-mel without the clamp,
    100 ms chunks fed in 7 ms pieces), run as model.pt and as model.pt2, writes the offline
    bundle's .npy (model.pt) for the same WAV."""
    spec = nx.presets.get_spec("whisper_80")
    spec["stages"] = [s for s in spec["stages"] if s["type"] != "dynamic_range"]
    spec.pop("length_policy")
    n = 8000 + 77
    spec["num_samples"] = n
    stream_dir = nx.export(spec, tmp_path / "s", formats=("torchscript", "pt2"), streaming=True, chunk_ms=100,
                           verify=False)
    offline_dir = nx.export(spec, tmp_path / "o", formats=("torchscript",), verify=False)
    write_wav(tmp_path / "in.wav", clip(n, seed=4), 16000, "float32")
    r = run_cli(cli, offline_dir, tmp_path / "in.wav", tmp_path / "o.npy", "torchscript")
    assert r.returncode == 0, r.stderr
    for backend in ("torchscript", "pt2"):
        r = run_cli(cli, stream_dir, tmp_path / "in.wav", tmp_path / "s.npy", backend, "--stream", "7")
        assert r.returncode == 0, r.stderr
        assert f"({backend})" in r.stderr
        assert_close(np.load(tmp_path / "s.npy"), np.load(tmp_path / "o.npy").astype(np.float64),
                     f"{backend} stream vs offline")
    r = run_cli(cli, stream_dir, tmp_path / "in.wav", tmp_path / "x.npy", "torchscript")
    assert r.returncode == 2 and "--stream" in r.stderr


def test_check_uses_the_scaled_bound_of_an_ill_conditioned_bundle(cli, tmp_path):
    """A SeamlessM4T bundle's golden.npz carries a per-value bound scale (its per-mel-bin
    normalisation on the tone, tests/test_scaled_bound.py): --check passes with it, and
    fails once the model is swapped for one with perturbed mel weights."""
    import torch
    import transformers
    fes = [nx.from_hf(transformers.SeamlessM4TFeatureExtractor(), seconds=0.5).eval() for _ in range(2)]
    with torch.no_grad():
        w = fes[1].stages[2].weight
        w.mul_(1.0 + 1e-2 * torch.from_numpy(np.random.default_rng(0).standard_normal(tuple(w.shape))).float())
    a = nx.export(fes[0], tmp_path / "a", formats=("torchscript",), verify=False)
    b = nx.export(fes[1], tmp_path / "b", formats=("torchscript",), verify=False)
    r = run_check(cli, a)
    assert r.returncode == 0 and "ill-conditioned input" in r.stdout and ": ok" in r.stdout, r.stdout + r.stderr
    swap_model(a, b)
    r = run_check(cli, a)
    assert r.returncode == 3 and "FAILED" in r.stdout, r.stdout + r.stderr


def _istft_bundle(path, window: str) -> Path:
    fe = (nx.FrontendBuilder(sample_rate=16000).spectrum_input(257, 30, "complex")
          .istft(n_fft=512, hop_length=128, window=window).build())
    return nx.export(fe.spec, path, formats=("torchscript",), verify=False)


def test_check_of_a_synthesis_bundle(cli, tmp_path):
    """--check on an iSTFT bundle: golden.npz's spectra in, its float64 audio out (1e-5 x
    peak); it passes untouched and fails once model.pt is swapped for another window's."""
    a = _istft_bundle(tmp_path / "a", "hann")
    b = _istft_bundle(tmp_path / "b", "hamming")
    r = run_check(cli, a)
    items = nx.runtime.read_manifest(a)["golden"]["items"]
    assert r.returncode == 0 and f"{items} items" in r.stdout and ": ok" in r.stdout, r.stdout + r.stderr
    swap_model(a, b)
    r = run_check(cli, a)
    assert r.returncode == 3 and "FAILED" in r.stdout, r.stdout + r.stderr
