"""golden.npz: every bundle carries deterministic inputs and their float64 reference outputs
with the thresholds, and ``nx.verify(dir, golden_only=True)`` re-checks the bundle from
them alone (no spec rebuild, no package reference). The golden outputs are checked against
librosa; a bundle whose model files were replaced by another valid model of the same shapes
(manifest sha256 updated too, so every file check passes) fails the golden check. The C++
side (``frontend_cli --check``) is in test_cpp.py."""
import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import librosa
import numpy as np
import pytest

import nnaudio_export as nx
from nnaudio_export.manifest import BundleError

SR, N = 16000, 4000


def mel_spec(fmax=None):
    mel = {"type": "mel", "n_mels": 40, "norm": "slaney"}
    if fmax is not None:
        mel["fmax"] = fmax
    return {"format": "nnaudio_export.frontend", "format_version": 1, "name": "mel_40",
            "sample_rate": SR, "num_samples": N,
            "stages": [{"type": "stft", "n_fft": 512, "hop_length": 160}, {"type": "power", "exponent": 2.0},
                       mel]}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Two bundles of the same shapes whose models differ (the mel band edge)."""
    root = tmp_path_factory.mktemp("golden")
    a = nx.export(mel_spec(), root / "a", formats=("torchscript", "onnx"), verify=False)
    b = nx.export(mel_spec(fmax=6000.0), root / "b", formats=("torchscript", "onnx"), verify=False)
    return a, b


def swap_models(victim: Path, donor: Path) -> None:
    """Replace ``victim``'s model files by ``donor``'s and update the manifest's sha256 and
    size, so that every file check passes and only the numbers can tell."""
    m = json.loads((victim / "manifest.json").read_text())
    for name, entry in m["files"].items():
        shutil.copyfile(donor / name, victim / name)
        data = (victim / name).read_bytes()
        entry.update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    (victim / "manifest.json").write_text(json.dumps(m, indent=2))


def test_golden_file_matches_librosa(pair):
    a, _ = pair
    m = nx.runtime.read_manifest(a)
    raw = (a / "golden.npz").read_bytes()
    assert m["golden"]["sha256"] == hashlib.sha256(raw).hexdigest() and m["golden"]["items"] == 3
    with zipfile.ZipFile(a / "golden.npz") as z:       # stored, so a tiny C++ reader can parse it
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_STORED}
    g = np.load(a / "golden.npz")
    assert g["input"].shape == (3, N) and g["input"].dtype == np.float32
    assert g["output"].dtype == np.float64 and float(g["threshold"]) == nx.parity.LINEAR_REL_TOL
    fb = librosa.filters.mel(sr=SR, n_fft=512, n_mels=40, norm="slaney", dtype=np.float64)
    for x, y in zip(g["input"], g["output"]):
        power = np.abs(librosa.stft(x.astype(np.float64), n_fft=512, hop_length=160, pad_mode="reflect")) ** 2
        ref = fb @ power
        assert np.abs(y - ref).max() <= 1e-9 * np.abs(ref).max()


def test_golden_only_verify_passes_untouched(pair):
    a, _ = pair
    r = nx.verify(a, golden_only=True, backends=["onnxruntime", "torchscript"])
    assert r.ok, r.table()
    assert {(row.backend, row.reference) for row in r.rows} == {("onnxruntime", "golden"), ("torchscript", "golden")}
    assert all(row.max_rel <= 1e-5 for row in r.rows)


def test_golden_only_verify_fails_on_a_swapped_model(pair, tmp_path):
    a, b = pair
    bad = Path(shutil.copytree(a, tmp_path / "bad"))
    swap_models(bad, b)
    nx.load(bad, backend="onnxruntime")          # every file check passes: a valid bundle
    r = nx.verify(bad, golden_only=True, backends=["onnxruntime", "torchscript"])
    assert not r.ok and all(row.status == "failed" for row in r.rows), r.table()
    assert min(row.max_rel for row in r.rows) > 1e-2


def test_golden_file_is_pinned_by_the_manifest(pair, tmp_path):
    a, _ = pair
    bad = Path(shutil.copytree(a, tmp_path / "bad"))
    g = dict(np.load(bad / "golden.npz"))
    g["output"] = g["output"] * 1.5
    np.savez(bad / "golden.npz", **g)
    with pytest.raises(BundleError, match="golden.npz: sha256 does not match"):
        nx.verify(bad, golden_only=True)


def test_golden_only_verify_of_a_fixed_batch_smaller_than_golden(tmp_path):
    """Three golden items through a bundle fixed at batch 2: run in whole batches."""
    b = nx.export(mel_spec(), tmp_path / "b2", formats=("onnx",), batch=2, verify=False)
    r = nx.verify(b, golden_only=True)
    assert r.ok and r.signals == ["golden[0]", "golden[1]", "golden[2]"], r.table()


def test_cli_verify_golden_only_and_inspect(pair):
    import subprocess
    import sys
    a, _ = pair
    r = subprocess.run([sys.executable, "-m", "nnaudio_export.cli", "verify", str(a), "--golden-only"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "| onnxruntime | cpu | golden |" in r.stdout, r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-m", "nnaudio_export.cli", "inspect", str(a)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "source:      spec" in r.stdout and "3 items" in r.stdout, r.stdout
