"""One typed validation for every parameter (layers, builder, spec files), context checks
(empty mel filters, n_fft), memory estimates before allocation, and one clear ValueError
line naming the parameter (and, in specs, the stage as the user numbered it)."""
import json
import subprocess
import sys
import time
import warnings

import librosa
import pytest

import nnaudio_export as nx
from nnaudio_export import api
from nnaudio_export.checks import MEMORY_LIMIT_ENV, memory_limit
from nnaudio_export.layers import MFCC, STFT, CQT1992v2, CQT2010v2, KaldiSTFT, MelSpectrogram
from nnaudio_export.layers.cqt import CQT_ARGS
from nnaudio_export.layers.kaldi import KALDI_ARGS
from nnaudio_export.layers.mel import DB_ARGS, MEL_ARGS, MEL_BANK_ARGS, MFCC_ARGS
from nnaudio_export.layers.stft import STFT_ARGS
from nnaudio_export.stages import STAGES

CLI = [sys.executable, "-m", "nnaudio_export.cli"]


def spec(*stages, **top):
    return {"sample_rate": top.get("sample_rate", 16000), "num_samples": top.get("num_samples", 16000),
            "stages": list(stages)}


STFT0 = {"type": "stft", "n_fft": 400, "hop_length": 160}


@pytest.mark.parametrize("stage, bad, index", [
    ({"type": "stft", "n_fft": 400, "center": "no"}, "center must be a boolean", 0),
    ({"type": "mel", "n_mels": 40, "htk": "no"}, "htk must be a boolean", 2),
    ({"type": "mel", "n_mels": 40.5}, "n_mels must be an integer, got 40.5", 2),
    ({"type": "mel", "n_mels": "80"}, "n_mels must be an integer, got '80'", 2),
    ({"type": "mel", "n_mels": 0}, "n_mels must be >= 1, got 0", 2),
    ({"type": "mel", "n_mels": -5}, "n_mels must be >= 1, got -5", 2),
    ({"type": "mel", "n_mels": 128, "fmin": float("nan")}, "fmin must be a finite number", 2),
    ({"type": "stft", "n_fft": 1, "hop_length": 1}, "n_fft must be >= 2, got 1", 0),
])
def test_spec_parameters_are_typed_and_the_user_index_is_named(stage, bad, index):
    stages = [STFT0, {"type": "power"}, {"type": "mel", "n_mels": 40}]
    stages[index] = stage
    with pytest.raises(ValueError) as e:
        nx.Frontend.from_spec(spec(*stages))
    msg = str(e.value)
    assert msg.startswith(f"stages[{index}] ({stage['type']}): ") and bad in msg and "\n" not in msg


def test_non_finite_top_level_from_json_text():
    text = json.dumps(spec(STFT0)).replace('"sample_rate": 16000', '"sample_rate": Infinity')
    with pytest.raises(ValueError, match="sample_rate must be a positive finite number, got inf"):
        nx.Frontend.from_spec(text)
    floor = json.dumps(spec(STFT0, {"type": "power"}, {"type": "log", "floor": 1}))
    with pytest.raises(ValueError, match=r"stages\[2\] \(log\): floor must be a finite number, got nan"):
        nx.Frontend.from_spec(floor.replace('"floor": 1', '"floor": NaN'))


def test_stages_declare_their_layers_parameters():
    # the very same Param objects: one rule for layers, builder and spec files (the matrix
    # stages' ``trainable`` is the transform layers' own; the mel stage's MEL_BANK_ARGS are
    # declared beside the layer's, which does not take them)
    trainable = tuple(p for p in STFT_ARGS if p.name == "trainable")
    for kind, table in (("stft", STFT_ARGS), ("cqt", CQT_ARGS), ("kaldi_stft", KALDI_ARGS),
                        ("mel", MEL_ARGS + trainable + MEL_BANK_ARGS), ("mfcc", MFCC_ARGS + trainable), ("db", DB_ARGS)):
        assert all(any(p is q for q in table) for p in STAGES[kind].params), kind


@pytest.mark.parametrize("make, param", [
    (lambda: STFT(center="no", verbose=False), "center"),
    (lambda: STFT(n_fft=400.0), "n_fft"),
    (lambda: STFT(sr=float("inf")), "sr"),
    (lambda: STFT(window=3), "window"),
    (lambda: MelSpectrogram(htk="no", verbose=False), "htk"),
    (lambda: MelSpectrogram(n_mels=40.5, verbose=False), "n_mels"),
    (lambda: MelSpectrogram(n_mels="80", verbose=False), "n_mels"),
    (lambda: MelSpectrogram(power=float("nan"), verbose=False), "power"),
    (lambda: MelSpectrogram(trainable_mel="yes", verbose=False), "trainable_mel"),
    (lambda: MFCC(amin=0.0, verbose=False), "amin"),
    (lambda: MFCC(top_db=float("inf"), verbose=False), "top_db"),
    (lambda: CQT1992v2(n_bins=84.0, verbose=False), "n_bins"),
    (lambda: CQT1992v2(center=1, verbose=False), "center"),
    (lambda: CQT2010v2(earlydownsample="no", verbose=False), "earlydownsample"),
    (lambda: KaldiSTFT(16000, snip_edges="yes"), "snip_edges"),
    (lambda: KaldiSTFT(16000.0), "num_samples"),
])
def test_layers_use_the_same_typed_checks(make, param):
    with pytest.raises(ValueError) as e:
        make()
    assert str(e.value).startswith(param + " ") and "\n" not in str(e.value)


def test_empty_mel_filters_are_refused_where_librosa_warns():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        librosa.filters.mel(sr=16000, n_fft=64, n_mels=128)
    assert any("Empty filters" in str(w.message) for w in caught)   # the reference only warns
    with pytest.raises(ValueError, match=r"stages\[2\] \(mel\): n_mels: 70 of 128 filters are empty"):
        nx.Frontend.from_spec(spec({"type": "stft", "n_fft": 64, "hop_length": 32}, {"type": "power"},
                                   {"type": "mel", "n_mels": 128}))
    with pytest.raises(ValueError, match="n_mels: 70 of 128 filters are empty"):
        MelSpectrogram(sr=16000, n_fft=64, n_mels=128, verbose=False)
    # Kaldi's banks keep their empty bank: AST (128 bins at n_fft 512) is trained with one
    assert nx.presets.load("ast_128", seconds=0.5).output_shape[1] == 128


@pytest.mark.parametrize("n_fft", [2 ** 24, 65536])
def test_huge_kernels_are_refused_before_allocating(n_fft):
    t0 = time.time()
    with pytest.raises(ValueError, match=r"stages\[0\] \(stft\): n_fft: the STFT kernels .* memory limit"):
        nx.Frontend.from_spec(spec({"type": "stft", "n_fft": n_fft}, num_samples=n_fft))
    assert time.time() - t0 < 10


def test_memory_limit_is_overridable(monkeypatch):
    assert memory_limit() == 4 * 2 ** 30
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "1MiB")
    assert memory_limit() == 2 ** 20
    with pytest.raises(ValueError, match=r"n_fft: the STFT kernels \(514 x 512 float64.*1.0 MiB"):
        STFT(n_fft=512)
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "64G")
    assert memory_limit() == 64 * 2 ** 30
    STFT(n_fft=512)
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "lots")
    with pytest.raises(ValueError, match=MEMORY_LIMIT_ENV):
        memory_limit()


def test_per_item_memory_is_estimated_before_running():
    with pytest.raises(ValueError, match="num_samples: one batch item of 10000000000 samples"):
        nx.presets.load("mel_128", num_samples=10 ** 10)
    fe = nx.presets.load("whisper_80", seconds=1.0)
    # ONNX Runtime measured 9.4 GB for 10000 x 1 s (0.94 MB per item); the estimate is of that order
    assert 0.5e6 < fe.bytes_per_item < 2.0e6


def test_sources_spec_files_and_presets(tmp_path):
    p = tmp_path / "frontend_spec"          # no .json suffix: still a spec file
    p.write_text(json.dumps(spec(STFT0, {"type": "power"})))
    assert api.resolve_frontend(str(p)).output_shape == (201, 101)
    with pytest.raises(ValueError, match="does not exist"):
        api.resolve_frontend(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="unknown preset 'whisper80', and no spec file of that name"):
        api.resolve_frontend("whisper80")
    assert api._check_formats("onnx") == ("onnx",)
    assert api._check_formats("onnx, pt2") == ("onnx", "pt2")


@pytest.mark.parametrize("args, words", [
    (["--seconds", "inf"], "seconds must be a positive finite number"),
    (["--batch", "0"], "batch must be >= 1"),
    (["--batch", "100000"], "batch: 100000 is above 4096"),
])
def test_cli_build_refuses_in_one_line(tmp_path, args, words):
    r = subprocess.run(CLI + ["build", "mel_128", "--out", str(tmp_path / "o"), "--formats", "onnx"] + args,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and words in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == []
