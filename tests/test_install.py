"""Nothing lost, nothing left behind: ``--force`` replaces only what nnaudio_export wrote,
interrupted or killed exports leave only marked leftovers that the next export to the same
path removes (or restores), and two exports to one path cannot run at once.

The bundles are a tiny torchscript-only spec (scripting takes well under a second)."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import nnaudio_export as nx
from nnaudio_export import install
from nnaudio_export.install import MARKER, TargetBusy, target_lock
from nnaudio_export.manifest import read_manifest
from nnaudio_export.triton import write_triton_repo

TINY = {"sample_rate": 8000, "num_samples": 800,
        "stages": [{"type": "stft", "n_fft": 64, "hop_length": 32}, {"type": "power"}]}


def export(out, **kw):
    kw.setdefault("formats", ("torchscript",))
    kw.setdefault("verify", False)
    return nx.export(TINY, out, **kw)


def entries(d: Path):
    return sorted(p.name for p in Path(d).iterdir())


def test_force_refuses_a_directory_that_is_not_a_bundle(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    with pytest.raises(FileExistsError, match="thesis.tex.*nnaudio_export did not write"):
        export(out, overwrite=True)
    assert entries(out) == ["thesis.tex"]
    assert entries(tmp_path) == ["mine"]


def test_force_refuses_a_bundle_with_user_files_in_it(tmp_path):
    out = export(tmp_path / "b")
    (out / "notes.txt").write_text("mine")
    (out / "data").mkdir()
    with pytest.raises(FileExistsError, match=r"holds data/, notes.txt"):
        export(out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"


def test_force_refuses_a_foreign_manifest(tmp_path):
    out = tmp_path / "b"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"format": "something.else"}))
    with pytest.raises(FileExistsError, match="no nnaudio_export manifest.json"):
        export(out, overwrite=True)
    assert entries(out) == ["manifest.json"]


def test_force_refuses_a_file_and_a_link(tmp_path):
    f = tmp_path / "some_file"
    f.write_text("keep me")
    with pytest.raises(FileExistsError, match="is a file"):
        export(f, overwrite=True)
    assert f.read_text() == "keep me"
    target = export(tmp_path / "real")
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(FileExistsError, match="symbolic link"):
        export(link, overwrite=True)
    assert link.is_symlink() and read_manifest(target)


def test_force_replaces_our_bundle_and_an_empty_directory(tmp_path):
    out = export(tmp_path / "b")
    export(out, overwrite=True, formats=("onnx",))
    assert entries(out) == ["golden.npz", "manifest.json", "model.onnx"]
    empty = tmp_path / "empty"
    empty.mkdir()
    export(empty, overwrite=True)
    assert entries(tmp_path) == ["b", "empty"]


def test_out_dot_force_leaves_no_leftovers(tmp_path, monkeypatch):
    out = export(tmp_path / "b")
    monkeypatch.chdir(out)
    export(".", overwrite=True)
    monkeypatch.chdir(tmp_path)
    assert entries(tmp_path) == ["b"]
    assert entries(out) == ["golden.npz", "manifest.json", "model.pt"]


def test_read_only_bundle_replaced_without_leftovers(tmp_path):
    out = export(tmp_path / "b")
    for p in out.iterdir():
        p.chmod(0o444)
    out.chmod(0o555)
    export(out, overwrite=True)
    assert entries(tmp_path) == ["b"]
    assert read_manifest(out)["files"]


def _leftover(parent: Path, target: str, kind: str, inner: bool = True) -> Path:
    """What a writer killed at the wrong moment leaves: a marked container."""
    box = Path(tempfile.mkdtemp(prefix=f".{target}.killed{kind}", dir=parent))
    (box / MARKER).write_text(json.dumps({"tool": "nnaudio_export", "target": target, "kind": kind}))
    if inner:
        (box / target).mkdir()
        (box / target / "model.pt").write_bytes(b"partial")
    return box


def test_leftovers_of_killed_exports_are_removed_by_the_next_one(tmp_path):
    _leftover(tmp_path, "b", "staging")
    _leftover(tmp_path, "b", "staging", inner=False)
    _leftover(tmp_path, "other", "staging")             # another target's: not ours to remove
    lookalike = tmp_path / ".b.lookalike.tmp"           # our name pattern, but no marker
    lookalike.mkdir()
    export(tmp_path / "b")
    assert [n[:20] for n in entries(tmp_path)] == [".b.lookalike.tmp", ".other.killedstaging", "b"]


def test_a_bundle_moved_aside_by_a_killed_replacement_is_restored(tmp_path):
    out = export(tmp_path / "b")
    before = read_manifest(out)
    box = _leftover(tmp_path, "b", "aside", inner=False)
    os.replace(out, box / "b")                          # killed between the two renames
    with pytest.raises(ValueError):                     # the next export fails before writing ...
        nx.export(TINY, out, formats=("tflite",))
    export(tmp_path / "c")                              # (other targets do not touch it)
    assert not out.exists()
    with pytest.raises(FileExistsError):                # ... a new export to b restores it first
        export(out)
    assert read_manifest(out) == before and entries(tmp_path) == ["b", "c"]


def test_second_export_to_the_same_path_fails_at_once(tmp_path):
    out = tmp_path / "b"
    with target_lock(install.target_path(out)):
        t0 = time.time()
        with pytest.raises(TargetBusy, match=f"being written by another nnaudio_export process .pid {os.getpid()}"):
            export(out)
        assert time.time() - t0 < 5
    export(out)                                          # released: works, lock file gone
    assert entries(tmp_path) == ["b"]


KILL_SCRIPT = """
import sys, time, nnaudio_export as nx
spec = {"sample_rate": 8000, "num_samples": 800,
        "stages": [{"type": "stft", "n_fft": 64, "hop_length": 32}, {"type": "power"}]}
def progress(msg):
    print("writing", flush=True)
    time.sleep(60)
nx.export(spec, sys.argv[1], formats=("torchscript",), verify=False, progress=progress)
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_export_leaves_nothing_after_the_next_export(tmp_path, sig):
    out = tmp_path / "b"
    p = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(out)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "writing"
    p.send_signal(sig)
    p.wait(timeout=60)
    p.stdout.close()
    assert [n for n in entries(tmp_path) if n.endswith(".tmp")]   # the kill left a staging dir
    export(out)
    assert entries(tmp_path) == ["b"]


def test_cli_sigterm_cleans_up_on_the_way_out(tmp_path):
    out = tmp_path / "b"
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps(TINY))
    p = subprocess.Popen([sys.executable, "-m", "nnaudio_export.cli", "build", str(spec), "--out", str(out),
                          "--formats", "pt2", "--no-verify"], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not [n for n in entries(tmp_path) if n.endswith(".tmp")] and time.time() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and "interrupted" in err, err
    assert entries(tmp_path) == ["tiny.json"]


def test_a_swallowed_interrupt_still_installs_nothing(tmp_path, monkeypatch):
    """After the CLI's SIGTERM handler ran (``install.request_stop``), an export whose
    interrupt a library swallowed still puts nothing in place and leaves no leftovers."""
    monkeypatch.setattr(install, "_STOP_REQUESTED", False)
    install.request_stop()
    with pytest.raises(KeyboardInterrupt):
        export(tmp_path / "b")
    assert entries(tmp_path) == []


# --------------------------------------------------------------------------- Triton

def test_triton_force_keeps_other_versions_and_user_files(tmp_path):
    bundle = export(tmp_path / "bundle", formats=("torchscript", "onnx"))
    repo = tmp_path / "repo"
    write_triton_repo(bundle, repo, name="m")
    model = repo / "m_onnx"
    (model / "2").mkdir()
    (model / "2" / "model.onnx").write_bytes(b"someone else's version")
    with pytest.raises(FileExistsError, match=r"m_onnx holds 2/, which nnaudio_export did not write"):
        write_triton_repo(bundle, repo, name="m", overwrite=True)
    assert (model / "2" / "model.onnx").read_bytes() == b"someone else's version"
    (model / "2" / "model.onnx").unlink()
    (model / "2").rmdir()
    (model / "1" / "README").write_text("mine")
    with pytest.raises(FileExistsError, match="1/README"):
        write_triton_repo(bundle, repo, name="m", overwrite=True)
    (model / "1" / "README").unlink()
    write_triton_repo(bundle, repo, name="m", overwrite=True, max_batch=8)   # only ours: replaced
    assert "max_batch_size: 8" in (model / "config.pbtxt").read_text()
    assert entries(repo) == ["m_libtorch", "m_onnx"]
    (repo / "x_onnx").mkdir()
    (repo / "x_onnx" / "config.pbtxt").write_text('name: "x_onnx"\n')   # a config we did not write
    with pytest.raises(FileExistsError, match="has a config.pbtxt"):
        write_triton_repo(bundle, repo, name="x", overwrite=True)
