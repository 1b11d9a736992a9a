"""The command line, run as users run it: ``python -m nnaudio_export.cli`` in a subprocess.

User errors: one line on stderr, exit 2, no traceback (``--debug`` shows it); ``verify``
exits 1 when parity fails.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest

import nnaudio_export as nx

TIMEOUT = 300


def cli(*args, cwd=None):
    env = dict(os.environ)
    env.setdefault("PYTHONWARNINGS", "ignore")
    return subprocess.run([sys.executable, "-m", "nnaudio_export.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd, env=env)


def error_lines(stderr: str):
    """stderr lines that are not progress / library warnings."""
    return [l for l in stderr.splitlines()
            if l.strip() and not l.startswith("[") and "Warning" not in l and not l.startswith("W1")
            and not l.startswith("  ")]


def assert_one_line_error(res, code=2, *needles):
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    errs = [l for l in res.stderr.splitlines() if l.startswith("nnaudio-export: error:")]
    assert len(errs) == 1, res.stderr
    for n in needles:
        assert n in errs[0], (n, errs[0])
    return errs[0]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One CLI build (whisper_80, onnx + torchscript, 2 s) shared by the read-only tests."""
    root = tmp_path_factory.mktemp("cli")
    out = root / "whisper"
    res = cli("build", "whisper_80", "--out", out, "--formats", "onnx,torchscript", "--seconds", "2")
    return out, res


def test_presets_lists_names_with_shapes():
    res = cli("presets")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split()[:4] == ["preset", "sample_rate", "num_samples", "output_shape"]
    rows = {l.split()[0]: l.split() for l in lines[1:] if l.strip()}
    assert set(rows) == set(nx.presets.names())
    for name, cols in rows.items():
        shape = nx.presets.load(name).output_shape
        assert cols[3] == "x".join(map(str, shape)), (name, cols)
    assert rows["whisper_80"][1:4] == ["16000", "480000", "80x3000"]


def test_build_prints_parity_table(built):
    out, res = built
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    assert f"bundle: {out}" in res.stdout
    assert "input  audio: ['batch', 32000] float32" in res.stdout
    assert "output features: ['batch', 80, 200] float32" in res.stdout
    assert "| backend | device | reference |" in res.stdout
    assert "| onnxruntime | cpu |" in res.stdout and "| torchscript | cpu |" in res.stdout
    assert "PARITY OK" in res.stdout
    assert "judged within 60 dB" in res.stdout            # preset at precision 'single' (its default)
    assert "exporting model.onnx" in res.stderr            # progress goes to stderr
    assert "torchvision" not in res.stderr                 # the ONNX exporter's registry is quiet
    assert res.stdout.count("| backend | device |") == 1   # the parity table, once
    m = json.loads((out / "manifest.json").read_text())
    assert set(m["files"]) == {"model.onnx", "model.pt"} and m["num_samples"] == 32000
    assert m["parity"]["ok"] is True


def test_build_refuses_existing_then_force(built, tmp_path):
    out, res = built
    assert res.returncode == 0, res.stderr
    dst = tmp_path / "b"
    shutil.copytree(out, dst)
    before = (dst / "manifest.json").read_text()
    again = cli("build", "whisper_80", "--out", dst, "--formats", "torchscript", "--seconds", "1")
    line = assert_one_line_error(again, 2, "already exists")
    assert "--force" in line
    assert (dst / "manifest.json").read_text() == before
    forced = cli("build", "whisper_80", "--out", dst, "--formats", "torchscript", "--seconds", "1",
                 "--precision", "extended", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "PARITY OK" in forced.stdout and "judged within 80 dB" in forced.stdout
    m = json.loads((dst / "manifest.json").read_text())
    assert set(m["files"]) == {"model.pt"} and m["num_samples"] == 16000
    assert m["spec"]["stages"][1]["precision"] == "extended"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]   # no temp dirs left


def test_build_invalid_spec_file_names_parameter(tmp_path):
    spec = {"format": "nnaudio_export.frontend", "format_version": 1, "sample_rate": 16000,
            "num_samples": 16000,
            "stages": [{"type": "stft", "n_fft": 400, "hop_length": 160}, {"type": "power"},
                       {"type": "mel", "n_mels": 80, "fmax": 11025.0}]}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(spec))
    res = cli("build", path, "--out", tmp_path / "out", "--formats", "onnx")
    assert_one_line_error(res, 2, "fmax", "mel", "Nyquist")
    assert not (tmp_path / "out").exists()
    # unknown preset: one line listing the available ones
    res = cli("build", "no_such_preset", "--out", tmp_path / "out2")
    assert_one_line_error(res, 2, "no_such_preset", "whisper_80")
    # malformed JSON file
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    res = cli("build", broken, "--out", tmp_path / "out3")
    assert_one_line_error(res, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json", "broken.json"]


def test_build_good_spec_file(tmp_path):
    fe = (nx.FrontendBuilder(sample_rate=8000, num_samples=8000, name="custom")
          .stft(n_fft=256, hop_length=80).power(2.0).mel(n_mels=32).db(top_db=60.0).build())
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(fe.spec))
    res = cli("build", path, "--out", tmp_path / "out", "--formats", "onnx,torchscript")
    assert res.returncode == 0, res.stderr
    assert "PARITY OK" in res.stdout
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert m["spec"] == fe.spec and m["output"]["shape"] == ["batch", 32, 101]


def test_verify_json(built, tmp_path):
    out, res = built
    assert res.returncode == 0, res.stderr
    report = tmp_path / "report.json"
    digest = nx.manifest_sha256(out)
    assert f"manifest sha256: {digest}" in res.stdout                 # build prints the pin
    v = cli("verify", out, "--json", report, "--expect-sha256", digest)
    assert v.returncode == 0, v.stderr
    assert "PARITY OK" in v.stdout
    data = json.loads(report.read_text())
    assert data["ok"] is True
    rows = data["rows"]
    assert {r["backend"] for r in rows if r["device"] == "cpu"} >= {"eager", "onnxruntime", "torchscript"}
    cuda = [r for r in rows if r["device"] == "cuda"]
    from nnaudio_export.devices import cuda_available
    if not cuda_available():
        assert not cuda and not data["not_checked"]                   # auto: cuda only where available
        strict = cli("verify", out, "--device", "all")
        assert strict.returncode == 1 and "NOT CHECKED: cuda" in strict.stdout
        assert "| cuda |" in strict.stdout and "SKIPPED (no CUDA device)" in strict.stdout
        lenient = cli("verify", out, "--device", "all", "--allow-skip")
        assert lenient.returncode == 0 and "NOT CHECKED (allowed): cuda" in lenient.stdout
    unpinned = cli("verify", out, "--device", "cpu")
    assert unpinned.returncode == 0 and "| cuda |" not in unpinned.stdout
    assert "| torchscript |" not in unpinned.stdout and "torchscript: not run" in unpinned.stdout
    named = cli("verify", out, "--device", "cpu", "--backend", "torchscript")
    assert named.returncode == 0 and "| torchscript | cpu |" in named.stdout


def test_verify_tampered_exits_2_one_line(built, tmp_path):
    out, res = built
    assert res.returncode == 0, res.stderr
    d = tmp_path / "b"
    shutil.copytree(out, d)
    with open(d / "model.onnx", "ab") as f:
        f.write(b"x")
    v = cli("verify", d)
    assert_one_line_error(v, 2, "sha256", "model.onnx")
    # --debug: the same error with its traceback
    dbg = cli("--debug", "verify", d)
    assert dbg.returncode != 0
    assert "Traceback" in dbg.stderr and "BundleError" in dbg.stderr
    # inspect still shows the manifest, reports the mismatch and exits 1
    ins = cli("inspect", d)
    assert ins.returncode == 1, ins.stderr
    assert "MISMATCH" in ins.stdout and "name:" in ins.stdout


def test_verify_not_a_bundle(tmp_path):
    v = cli("verify", tmp_path)
    assert_one_line_error(v, 2, "manifest.json")


def test_inspect_shows_files_and_sha256(built):
    out, res = built
    assert res.returncode == 0, res.stderr
    ins = cli("inspect", out)
    assert ins.returncode == 0, ins.stderr
    m = json.loads((out / "manifest.json").read_text())
    for name, entry in m["files"].items():
        line = [l for l in ins.stdout.splitlines() if l.startswith("file:") and name in l]
        assert len(line) == 1, ins.stdout
        assert entry["sha256"][:16] in line[0] and str(entry["size"]) in line[0]
    assert "all sha256 match" in ins.stdout
    assert "whisper_80" in ins.stdout and "16000 Hz" in ins.stdout
    assert "parity:      ok" in ins.stdout


def test_verify_parity_failure_exits_1(built, tmp_path):
    """A manifest whose spec no longer describes the model files (the sha256 covers the
    model files, not the manifest): the artifacts disagree with the eager rebuild, so
    verify reports FAILED and exits 1 (not 2: nothing is malformed)."""
    out, res = built
    assert res.returncode == 0, res.stderr
    d = tmp_path / "b"
    shutil.copytree(out, d)
    m = json.loads((d / "manifest.json").read_text())
    mel = [s for s in m["spec"]["stages"] if s["type"] == "mel"][0]
    assert mel["norm"] == "slaney"
    mel["norm"] = None                    # unnormalised triangles: a different frontend
    (d / "manifest.json").write_text(json.dumps(m, indent=2))
    nx.load(d, backend="onnxruntime")     # still a valid bundle (files intact)
    v = cli("verify", d, "--device", "cpu")
    assert v.returncode == 1, (v.stdout, v.stderr)
    assert "PARITY FAILED" in v.stdout and "FAILED" in v.stdout
    assert "Traceback" not in v.stderr


def test_usage_errors():
    res = cli()
    assert res.returncode == 2 and "usage" in res.stderr.lower()
    res = cli("build", "whisper_80")          # --out missing
    assert res.returncode == 2 and "--out" in res.stderr
    res = cli("build", "whisper_80", "--out", "x", "--seconds", "1", "--num-samples", "5")
    assert res.returncode == 2 and "not allowed" in res.stderr


def test_help_and_version_do_not_import_torch():
    code = ("import sys\nfrom nnaudio_export.cli import main\n"
            "for argv in (['--help'], ['build', '--help'], ['verify', '--help'], ['--version']):\n"
            "    try:\n        main(argv)\n    except SystemExit as e:\n        assert e.code == 0, argv\n"
            "print('torch' in sys.modules, 'scipy' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "False False"
    assert "``" not in res.stdout                                   # no raw RST in --help
    assert "any of torchscript, onnx, pt2" in res.stdout and "default: all" in res.stdout
    assert f"nnaudio-export {nx.__version__}" in res.stdout


def test_debug_is_accepted_after_the_command(tmp_path):
    res = cli("verify", tmp_path / "missing", "--debug")
    assert res.returncode != 0 and "Traceback" in res.stderr and "BundleError" in res.stderr
    res = cli("verify", tmp_path / "missing")
    assert_one_line_error(res, 2, "no such directory")


def test_run_a_bundle_on_a_wav_file(built, tmp_path):
    import wave
    import numpy as np
    out, res = built
    assert res.returncode == 0, res.stderr
    m = nx.runtime.read_manifest(out)
    n = m["num_samples"] - 5000                                      # pad_or_trim (whisper)
    pcm = (np.sin(np.arange(n) * 0.05) * 8000).astype("<i2")
    with wave.open(str(tmp_path / "in.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm.tobytes())
    r = cli("run", out, tmp_path / "in.wav", tmp_path / "f.npy", "--expect-sha256", nx.manifest_sha256(out))
    assert r.returncode == 0, r.stderr
    x = np.zeros((1, m["num_samples"]), np.float32)
    x[0, :n] = pcm / 32768.0
    np.testing.assert_array_equal(np.load(tmp_path / "f.npy"), nx.load(out)(x)[0])
    r = cli("run", out, tmp_path / "missing.wav", tmp_path / "g.npy")
    assert_one_line_error(r, 2, "missing.wav")
    r = cli("run", out, tmp_path / "in.wav", tmp_path / "g.npy", "--expect-sha256", "0" * 64)
    assert_one_line_error(r, 2, "not the pinned")
    assert not (tmp_path / "g.npy").exists()


def test_reference_line_says_how_to_get_a_missing_package():
    from nnaudio_export.cli import _reference_line
    line = _reference_line({"package": "openai-whisper", "error": "ModuleNotFoundError: No module named 'whisper'"})
    assert "'openai-whisper' is not installed" in line and "setup_env.sh test" in line and "{" not in line
    ok = _reference_line({"reference": "openai-whisper", "max_abs_error": 3.85e-5, "units": "output units",
                          "signal": "speech_like", "num_samples": 32000})
    assert ok.startswith("max |ours - openai-whisper| = 3.85e-05 output units")
