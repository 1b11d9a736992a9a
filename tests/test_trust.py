"""A bundle is code: pinning by the manifest's digest, readers that open only the bundle's
fixed file names (no links, no paths from the manifest), ``verify`` that runs TorchScript
and .pt2 only when asked or pinned, malformed manifests refused with one line, and a model
that does not fit its manifest refused at load."""
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nnaudio_export as nx
from nnaudio_export.manifest import BundleError, manifest_sha256, read_manifest
from nnaudio_export.triton import write_triton_repo

CLI = [sys.executable, "-m", "nnaudio_export.cli"]


def copy_bundle(src: Path, parent: Path, name: str = "copy") -> Path:
    return Path(shutil.copytree(src, parent / name))


def rewrite_manifest(bundle: Path, change) -> None:
    m = json.loads((bundle / "manifest.json").read_text())
    change(m)
    (bundle / "manifest.json").write_text(json.dumps(m))


def resign(bundle: Path, name: str) -> None:
    """What an attacker with write access does: replace a file, update its manifest entry."""
    data = (bundle / name).read_bytes()
    rewrite_manifest(bundle, lambda m: m["files"][name].update(
        sha256=hashlib.sha256(data).hexdigest(), size=len(data)))


def test_pinned_digest_refuses_a_resigned_bundle(mel_bundle, tmp_path):
    digest = manifest_sha256(mel_bundle)
    assert digest == hashlib.sha256((mel_bundle / "manifest.json").read_bytes()).hexdigest()
    nx.load(mel_bundle, backend="pt2", expected_sha256=digest.upper())          # hex in any case
    b = copy_bundle(mel_bundle, tmp_path)
    with open(b / "model.pt2", "ab") as f:                                     # a "new .so"
        f.write(b"\0" * 16)
    resign(b, "model.pt2")
    with pytest.raises(BundleError, match="not the pinned"):
        nx.load(b, backend="pt2", expected_sha256=digest)
    with pytest.raises(BundleError, match="not the pinned"):
        nx.verify(b, expected_sha256=digest)
    with pytest.raises(BundleError, match="not the pinned"):
        write_triton_repo(b, tmp_path / "repo", expected_sha256=digest)
    with pytest.raises(ValueError, match="64 hex digits"):
        nx.load(mel_bundle, expected_sha256="abc")
    r = subprocess.run(CLI + ["inspect", str(b), "--expect-sha256", digest], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not the pinned" in r.stderr


def test_verify_runs_code_backends_only_when_asked_or_pinned(mel_bundle, tmp_path):
    b = copy_bundle(mel_bundle, tmp_path)
    (b / "model.pt2").write_bytes(b"not a shared library")     # would fail if it were loaded
    (b / "model.pt").write_bytes(b"not a TorchScript archive")
    resign(b, "model.pt2")
    resign(b, "model.pt")
    report = nx.verify(b, devices=("cpu",))
    assert report.ok, report.table()
    assert {r.backend for r in report.rows} == {"eager", "onnxruntime"}
    assert "torchscript, pt2: not run" in report.table()
    report = nx.verify(b, devices=("cpu",), backends=["pt2"])
    assert not report.ok
    assert [r.status for r in report.rows if r.backend == "pt2"] == ["error"]
    report = nx.verify(b, devices=("cpu",), expected_sha256=manifest_sha256(b))
    assert {r.backend for r in report.rows if r.status == "error"} == {"pt2", "torchscript"}
    with pytest.raises(ValueError, match="not in this bundle"):
        nx.verify(b, backends=["tflite"])


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "sub/model.onnx", "model.onnx.data"])
def test_manifest_file_names_are_only_the_known_ones(mel_bundle, tmp_path, name):
    b = copy_bundle(mel_bundle, tmp_path)
    rewrite_manifest(b, lambda m: m["files"].update({name: {"sha256": "0" * 64, "size": 1}}))
    for call in (lambda: nx.load(b), lambda: nx.verify(b), lambda: read_manifest(b)):
        with pytest.raises(BundleError, match="a bundle holds only"):
            call()


def test_links_inside_a_bundle_are_refused_a_linked_bundle_is_fine(mel_bundle, tmp_path):
    b = copy_bundle(mel_bundle, tmp_path)
    outside = tmp_path / "outside.onnx"
    shutil.move(b / "model.onnx", outside)
    (b / "model.onnx").symlink_to(outside)                       # same bytes, but a link
    with pytest.raises(BundleError, match="symbolic link"):
        nx.load(b)
    r = subprocess.run(CLI + ["inspect", str(b)], capture_output=True, text=True)
    assert r.returncode == 1 and "integrity:   MISMATCH" in r.stdout and "symbolic link" in r.stdout
    c = copy_bundle(mel_bundle, tmp_path, "c")
    shutil.move(c / "manifest.json", tmp_path / "m.json")
    (c / "manifest.json").symlink_to(tmp_path / "m.json")
    with pytest.raises(BundleError, match="symbolic link"):
        read_manifest(c)
    link = tmp_path / "current"
    link.symlink_to(mel_bundle)                                   # a link TO the bundle: resolved once
    assert nx.load(link).dir == mel_bundle.resolve()


@pytest.mark.parametrize("manifest", [
    [1, 2, 3], {"format": "nnaudio_export.bundle"}, "text",
])
def test_malformed_manifest_is_one_line_everywhere(mel_bundle, tmp_path, manifest):
    b = copy_bundle(mel_bundle, tmp_path)
    (b / "manifest.json").write_text(json.dumps(manifest))
    for call in (lambda: nx.load(b), lambda: nx.verify(b), lambda: read_manifest(b)):
        with pytest.raises(BundleError):
            call()
    for cmd in (["inspect", str(b)], ["verify", str(b)]):
        r = subprocess.run(CLI + cmd, capture_output=True, text=True)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize("drop", ["files", "input", "output"])
def test_manifest_missing_keys(mel_bundle, tmp_path, drop):
    b = copy_bundle(mel_bundle, tmp_path)
    rewrite_manifest(b, lambda m: m.pop(drop))
    with pytest.raises(BundleError, match=f"'{drop}' is missing"):
        nx.load(b)
    rewrite_manifest(b, lambda m: m.update({drop: {"dtype": "float64", "shape": "x"}}))
    with pytest.raises(BundleError, match=drop):
        nx.load(b)


def test_inspect_mismatch_exits_nonzero(mel_bundle, tmp_path):
    b = copy_bundle(mel_bundle, tmp_path)
    with open(b / "model.onnx", "ab") as f:
        f.write(b"\0")
    r = subprocess.run(CLI + ["inspect", str(b)], capture_output=True, text=True)
    assert r.returncode == 1 and "MISMATCH" in r.stdout
    r = subprocess.run(CLI + ["inspect", str(mel_bundle)], capture_output=True, text=True)
    assert r.returncode == 0 and f"manifest:    sha256 {manifest_sha256(mel_bundle)}" in r.stdout


def test_model_swapped_from_another_bundle_is_refused_at_load(mel_bundle, tmp_path):
    spec = {"sample_rate": 22050, "num_samples": 11025,
            "stages": [{"type": "stft", "n_fft": 512, "hop_length": 512}, {"type": "power"},
                       {"type": "mel", "n_mels": 20}]}
    other = nx.export(spec, tmp_path / "other", formats=("onnx", "torchscript"), verify=False)
    b = copy_bundle(mel_bundle, tmp_path)
    for name in ("model.onnx", "model.pt"):
        shutil.copyfile(other / name, b / name)
        resign(b, name)
    m = read_manifest(b)
    for backend in ("onnxruntime", "torchscript"):
        with pytest.raises(BundleError, match=r"gives features of shape \[1, 20, 22\].*says \[1, 128, 22\]"):
            nx.load(b, backend=backend)
    assert m["output"]["shape"][1:] == [128, 22]
    x = np.zeros((1, 11025), np.float32)
    assert nx.load(other)(x).shape == (1, 20, 22)
