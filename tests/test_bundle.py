"""Bundles: export every preset to every format, load every backend, run, verify parity,
check the manifest, the ONNX artifact, integrity (sha256), overwrite and temp-dir hygiene,
and input validation in every backend.

Per-preset bundles are exported once per session (tests/conftest.py ``bundles``) at 1 s
with all three formats; presets come from ``nx.presets.names()`` so new ones are covered.
"""
import datetime
import hashlib
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import nnaudio_export as nx
from nnaudio_export import signals as sig
from nnaudio_export import manifest as nx_manifest
from nnaudio_export.manifest import BundleError
from nnaudio_export.parity import amplifies_rounding
from nnaudio_export.spec import input_kind
from conftest import short_length

warnings.filterwarnings("ignore")

PRESETS = nx.presets.names()
FORMATS = nx_manifest.FORMATS
FILE_OF = {f.name: f.file for f in nx_manifest.FORMAT_TABLE}
BACKEND_OF = {f.name: f.backend for f in nx_manifest.FORMAT_TABLE}


def test_format_table_is_the_documented_bundle_layout():
    # The on-disk contract (README "Bundles", the C++ example, Triton): pinned literally.
    assert FORMATS == ("torchscript", "onnx", "pt2")
    assert FILE_OF == {"torchscript": "model.pt", "onnx": "model.onnx", "pt2": "model.pt2"}
    assert BACKEND_OF == {"torchscript": "torchscript", "onnx": "onnxruntime", "pt2": "pt2"}
    assert nx_manifest.MAX_EXPORTED_BATCH == 4096
ALL_BACKENDS = ("onnxruntime", "torchscript", "pt2", "eager")
HAS_CUDA = torch.cuda.is_available()

_EAGER = {}


def eager_for(bundle: Path) -> nx.Frontend:
    key = str(bundle)
    if key not in _EAGER:
        spec = json.loads((bundle / "manifest.json").read_text())["spec"]
        _EAGER[key] = nx.Frontend.from_spec(spec).eval()
    return _EAGER[key]


def inputs_for(fe: nx.Frontend, batch: int) -> np.ndarray:
    """Audio, or a synthesis frontend's spectrum (the signals' STFT)."""
    return fe.example_input(tuple(("speech", "tones", "noise", "chirp")[i % 4] for i in range(batch)))


def run_eager(fe, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return fe(torch.from_numpy(x)).numpy()


def float32_spread(fe: nx.Frontend, x: np.ndarray) -> np.ndarray:
    """Per item: eager float32 vs the spec rebuilt in float64, / the item's peak."""
    with torch.inference_mode():
        y32 = fe(torch.from_numpy(x)).double().numpy()
        y64 = nx.Frontend.from_spec(fe.spec, dtype=torch.float64)(torch.from_numpy(x)).numpy()
    return (np.abs(y32 - y64).reshape(len(x), -1).max(1) / np.abs(y64).reshape(len(x), -1).max(1))


def assert_close_to_eager(out: np.ndarray, ref: np.ndarray, fe: nx.Frontend, what: str,
                          x: "np.ndarray | None" = None) -> None:
    """Independent of nnaudio_export.parity: linear / cepstral outputs within 1e-4 x peak;
    log outputs within 1e-3 output units on bins within 60 dB of each item's peak when the dB
    scale is known (deeper bins are float32 noise), everywhere otherwise. A frontend whose
    iterations amplify float32 rounding (Griffin-Lim; ``x`` its input): each item within
    1e-4 or twice eager float32's own distance from float64, x the item's peak."""
    out = np.asarray(out, np.float64)
    ref = np.asarray(ref, np.float64)
    assert out.shape == ref.shape, f"{what}: shape {out.shape} vs {ref.shape}"
    assert np.all(np.isfinite(out)), f"{what}: non-finite output"
    err = np.abs(out - ref)
    if x is not None and amplifies_rounding(fe):
        peak = np.abs(ref).reshape(len(ref), -1).max(1)
        rel = err.reshape(len(err), -1).max(1) / peak
        limit = np.maximum(1e-4, 2 * float32_spread(fe, x))
        assert np.all(rel <= limit), f"{what}: per item {rel} vs {limit} x peak"
        return
    if fe.output_kind == "log":
        if fe.db_per_unit:
            item_max = ref.reshape(ref.shape[0], -1).max(1).reshape((-1,) + (1,) * (ref.ndim - 1))
            err = np.where(ref >= item_max - 60.0 / fe.db_per_unit, err, 0.0)
        assert err.max() <= 1e-3, f"{what}: max abs {err.max():.3e} (log output)"
    else:
        peak = np.abs(ref).max()
        assert err.max() <= 1e-4 * peak, f"{what}: max abs {err.max():.3e} = {err.max() / peak:.2e} x peak"


def read_manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


# --------------------------------------------------------------------------- every preset x format

@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("preset", PRESETS)
def test_backend_runs_numpy_and_torch(bundles, preset, fmt):
    d = bundles.preset(preset)
    fe = eager_for(d)
    rt = nx.load(d, backend=BACKEND_OF[fmt])
    assert rt.backend == BACKEND_OF[fmt] and rt.device == "cpu"
    assert rt.num_samples == fe.num_samples and rt.sample_rate == fe.sample_rate
    x = inputs_for(fe, 2)
    y_np = rt(x)
    assert isinstance(y_np, np.ndarray) and y_np.dtype == np.float32
    assert y_np.shape == (2,) + fe.output_shape
    y_t = rt(torch.from_numpy(x))
    assert isinstance(y_t, torch.Tensor) and y_t.dtype == torch.float32 and y_t.device.type == "cpu"
    np.testing.assert_array_equal(y_t.numpy(), y_np)
    assert_close_to_eager(y_np, run_eager(fe, x), fe, f"{preset}/{fmt}", x)
    # the batch axis is dynamic: 1 and 5 items, each item as in the batch of 2
    y1 = rt(x[:1])
    y5 = rt(inputs_for(fe, 5))
    assert y1.shape == (1,) + fe.output_shape and y5.shape == (5,) + fe.output_shape
    assert_close_to_eager(y1, y_np[:1], fe, f"{preset}/{fmt} batch 1 vs 2", x[:1])
    assert_close_to_eager(y5[:2], y_np, fe, f"{preset}/{fmt} batch 5 vs 2", x)


@pytest.mark.parametrize("preset", PRESETS)
def test_eager_backend(bundles, preset):
    d = bundles.preset(preset)
    fe = eager_for(d)
    rt = nx.load(d, backend="eager")
    x = inputs_for(fe, 3)
    np.testing.assert_array_equal(rt(x), run_eager(fe, x))


@pytest.mark.parametrize("preset", PRESETS)
def test_verify_cpu_and_cuda(bundles, preset):
    d = bundles.preset(preset)
    # pinned: every backend runs; cuda asked for by name: a missing GPU fails unless allowed
    report = nx.verify(d, devices=("cpu", "cuda"), expected_sha256=nx_manifest.manifest_sha256(d),
                       allow_skip=not HAS_CUDA)
    assert report.ok, report.table()
    cpu = [r for r in report.rows if r.device == "cpu"]
    cuda = [r for r in report.rows if r.device == "cuda"]
    # every backend on cpu, against eager float32 and float64 (eager only against float64)
    seen = {(r.backend, r.reference) for r in cpu}
    for b in ("torchscript", "onnxruntime", "pt2"):
        assert (b, "eager_float32") in seen and (b, "float64_cpu") in seen, seen
    assert ("eager", "float64_cpu") in seen
    for r in cpu:
        assert r.status == "passed" and r.ok is True
        assert r.max_abs is not None and r.threshold is not None
        value = r.max_abs if r.metric == "max_abs" else r.max_rel
        assert value <= r.threshold
    if HAS_CUDA:
        assert cuda and all(r.status == "passed" for r in cuda)
    else:
        assert cuda, "CUDA rows must be listed (as skipped), not left out"
        assert all(r.status == "skipped" for r in cuda)
        assert not any(r.status == "passed" or r.ok for r in cuda)
        assert any("cuda" in s.lower() for s in report.not_checked)
        assert "NOT CHECKED (allowed): cuda" in report.table()
        strict = nx.parity.ParityReport.from_dict({**report.to_dict(), "allow_skip": False})
        assert not strict.ok and "PARITY FAILED" in strict.table()
    d_ = report.to_dict()
    assert json.loads(json.dumps(d_))["ok"] is True
    assert "PARITY OK" in report.table()


@pytest.mark.parametrize("preset", PRESETS)
def test_manifest(bundles, preset):
    d = bundles.preset(preset)
    m = read_manifest(d)
    fe = nx.presets.load(preset, **short_length(preset))
    assert m["format"] == "nnaudio_export.bundle" and m["format_version"] == 1
    assert m["name"] == preset
    assert m["spec"] == fe.spec
    assert m["sample_rate"] == fe.sample_rate and m["num_samples"] == fe.num_samples
    assert m["batch"] is None
    names = {"audio": ("audio", "features"), "spectrum": ("spectrum", "audio")}[fe.input_kind]
    assert (m["input"]["name"], m["output"]["name"]) == (fe.input_name, fe.output_name) == names
    assert m["input"]["dtype"] == fe.input_dtype and m["output"]["dtype"] == "float32"
    assert m["input"]["shape"] == ["batch", *fe.input_shape]
    assert m["output"]["shape"] == ["batch", *fe.output_shape]
    assert m["output"]["kind"] == fe.output_kind
    assert m["length_policy"] in ("exact", "pad_or_trim")
    # files: exactly the three models + golden.npz + the manifest; sha256 and size match the disk
    assert set(m["files"]) == {"model.pt", "model.onnx", "model.pt2"}
    on_disk = sorted(p.name for p in d.iterdir())
    assert on_disk == sorted(list(m["files"]) + ["golden.npz", "manifest.json"]), on_disk
    assert m["golden"]["sha256"] == hashlib.sha256((d / "golden.npz").read_bytes()).hexdigest()
    for name, entry in m["files"].items():
        data = (d / name).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["size"] == len(data) > 0
        assert entry["format"] == {v: k for k, v in FILE_OF.items()}[name]
    assert m["files"]["model.pt"]["method"] == "script", m["files"]["model.pt"].get("note")
    assert m["files"]["model.onnx"]["opset"] >= 17
    assert m["files"]["model.pt2"]["device"] == "cpu"
    v = m["versions"]
    for key in ("python", "torch", "numpy", "onnx", "onnxruntime", "nnaudio_export"):
        assert v.get(key), key
    assert v["torch"] == torch.__version__
    created = datetime.datetime.fromisoformat(m["created"])
    assert created.tzinfo is not None
    age = datetime.datetime.now(datetime.timezone.utc) - created
    assert datetime.timedelta(0) <= age < datetime.timedelta(hours=6)
    # export-time verify was off for these shared bundles: no parity claimed
    assert "parity" not in m


@pytest.mark.parametrize("preset", PRESETS)
def test_onnx_artifact(bundles, preset):
    import onnx
    import onnxruntime as ort
    d = bundles.preset(preset)
    path = d / "model.onnx"
    assert not list(d.glob("*.data")) and not list(d.glob("*.onnx.*"))
    model = onnx.load(str(path), load_external_data=False)
    for init in model.graph.initializer:
        assert init.data_location != onnx.TensorProto.EXTERNAL, init.name
    onnx.checker.check_model(model)
    onnx.checker.check_model(str(path))
    assert model.ir_version <= 13
    opsets = {o.domain: o.version for o in model.opset_import}
    assert opsets.get("", opsets.get("ai.onnx", 0)) >= 17
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"STFT", "DFT"}, ops
    fe = eager_for(d)
    assert [i.name for i in model.graph.input] == [fe.input_name]
    assert [o.name for o in model.graph.output] == [fe.output_name]
    dim0 = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim0.dim_param and not dim0.dim_value
    # raw onnxruntime with batch 1 and 5
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for b in (1, 5):
        y = sess.run([fe.output_name], {fe.input_name: inputs_for(fe, b)})[0]
        assert y.shape == (b,) + fe.output_shape


@pytest.mark.parametrize("preset", PRESETS)
def test_spec_round_trip(bundles, preset):
    d = bundles.preset(preset)
    spec = read_manifest(d)["spec"]
    fe1 = nx.Frontend.from_spec(spec)
    fe2 = nx.Frontend.from_spec(json.dumps(fe1.spec))
    assert fe1.spec == fe2.spec == spec
    x = torch.from_numpy(inputs_for(fe1, 2))
    with torch.inference_mode():
        assert torch.equal(fe1(x), fe2(x))


# --------------------------------------------------------------------------- whisper at 30 s

@pytest.fixture(scope="module")
def whisper_30s(bundles):
    return bundles.get("whisper_80_30s", "whisper_80", formats=("onnx", "torchscript"))


def test_whisper_default_30s_bundle(whisper_30s):
    import whisper.audio as wa
    d = whisper_30s
    m = read_manifest(d)
    assert m["num_samples"] == 480_000 and m["sample_rate"] == 16000
    assert m["input"]["shape"] == ["batch", 480_000]
    assert m["output"]["shape"] == ["batch", 80, 3000]
    assert set(m["files"]) == {"model.onnx", "model.pt"}
    assert sorted(p.name for p in d.iterdir()) == ["golden.npz", "manifest.json", "model.onnx", "model.pt"]
    # golden.npz stays small for a 30 s preset: one item, float32 outputs
    assert m["golden"]["items"] == 1 and m["golden"]["output_dtype"] == "float32"
    assert m["golden"]["size"] < 3.5e6
    # export-time parity (cpu) recorded, and the reference error against openai-whisper
    assert m["parity"]["ok"] is True
    assert any(r["backend"] == "onnxruntime" and r["status"] == "passed" for r in m["parity"]["rows"])
    ref_err = m.get("reference_error")
    assert ref_err is not None and "error" not in ref_err, ref_err
    assert ref_err["max_abs_error"] <= 1e-4
    x = sig.speech_like(480_000, 16000)
    ref = wa.log_mel_spectrogram(wa.pad_or_trim(torch.from_numpy(x)), 80).double().numpy()
    for backend in ("onnxruntime", "torchscript"):
        y = nx.load(d, backend=backend)(x[None])[0].astype(np.float64)
        assert y.shape == (80, 3000)
        assert np.abs(y - ref).max() <= 1e-4, backend      # float32 vs float32 (see test_builder)
    report = nx.verify(d, backends=["onnxruntime", "torchscript"])   # cpu (+ cuda where available)
    assert report.ok, report.table()
    assert {r.backend for r in report.rows} == {"eager", "onnxruntime", "torchscript"}


# --------------------------------------------------------------------------- fixed batch

@pytest.fixture(scope="module")
def fixed_batch(bundles):
    return bundles.get("mel_128_batch2", "mel_128", formats=FORMATS, seconds=1.0, batch=2)


def test_fixed_batch_bundle(fixed_batch):
    import onnx
    d = fixed_batch
    m = read_manifest(d)
    n = m["num_samples"]
    assert m["batch"] == 2
    assert m["input"]["shape"] == [2, n] and m["output"]["shape"][0] == 2
    assert m["parity"]["ok"] is True
    model = onnx.load(str(d / "model.onnx"))
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2
    fe = eager_for(d)
    for backend in ALL_BACKENDS:
        rt = nx.load(d, backend=backend)
        assert rt(inputs_for(fe, 2)).shape == (2,) + fe.output_shape
        for bad in (3, 1):
            with pytest.raises(ValueError, match=rf"\(2, {n}\)"):
                rt(inputs_for(fe, bad))
    assert nx.verify(d, devices=("cpu",)).ok


# --------------------------------------------------------------------------- input validation

@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_wrong_input_refused_in_every_backend(bundles, backend):
    d = bundles.preset("whisper_80")
    rt = nx.load(d, backend=backend)
    n = rt.num_samples
    expected = rf"\(batch, {n}\)"
    good = sig.batch(n, 16000, names=("speech",))
    # whisper_80's length_policy is 'pad_or_trim': other lengths are zero-padded / cut (as
    # Whisper's pad_or_trim), in every backend; an 'exact' bundle refuses them
    # (tests/test_runtime_guards.py)
    assert rt.length_policy == "pad_or_trim"
    short = good[:, : n - 1]
    np.testing.assert_array_equal(rt(short), rt(np.concatenate([short, np.zeros((1, 1), np.float32)], 1)))
    np.testing.assert_array_equal(rt(np.concatenate([good, good[:, :160]], 1)), rt(good))
    bad_inputs = {
        "rank1": np.zeros((n,), np.float32),
        "rank3": np.zeros((1, 1, n), np.float32),
        "stereo": np.zeros((1, 2, n), np.float32),
        "empty_batch": np.zeros((0, n), np.float32),
    }
    for what, x in bad_inputs.items():
        for arr in (x, torch.from_numpy(x)):
            with pytest.raises(ValueError, match=expected):
                rt(arr)
    for dtype in (np.float64, np.int16, np.float16):
        with pytest.raises(ValueError, match="float32"):
            rt(good.astype(dtype))
        with pytest.raises(ValueError, match="float32"):
            rt(torch.from_numpy(good.astype(dtype)))
    with pytest.raises(TypeError):
        rt(good.tolist())
    # still works after the refusals (batch 2: batch 1 on pt2 is covered by
    # test_backend_runs_numpy_and_torch)
    good2 = sig.batch(n, 16000, names=("speech", "tones"))
    assert rt(good2).shape == (2, 80, n // 160)


@pytest.fixture(scope="module")
def int16_stereo_bundle(bundles):
    fe = (nx.FrontendBuilder(sample_rate=16000, num_samples=8000, name="int16_stereo")
          .input(dtype="int16", channels=2).stft(n_fft=400, hop_length=160).power(2.0)
          .mel(n_mels=40, fmax=8000.0).log10(floor=1e-10).dynamic_range(6.0).build())
    return bundles.get("int16_stereo", fe, formats=FORMATS)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_int16_stereo_bundle(int16_stereo_bundle, backend):
    d = int16_stereo_bundle
    m = read_manifest(d)
    assert m["input"]["dtype"] == "int16" and m["input"]["shape"] == ["batch", 2, 8000]
    assert m["parity"]["ok"] is True
    fe = eager_for(d)
    rt = nx.load(d, backend=backend)
    x = sig.batch(8000, 16000, dtype="int16", channels=2, names=("speech", "noise"))
    assert x.dtype == np.int16
    assert_close_to_eager(rt(x), run_eager(fe, x), fe, f"int16 stereo {backend}")
    with pytest.raises(ValueError, match="int16"):
        rt(x.astype(np.float32))
    with pytest.raises(ValueError, match=r"\(batch, 2, 8000\)"):
        rt(x[:, 0])


# --------------------------------------------------------------------------- integrity

@pytest.mark.parametrize("fname", sorted(FILE_OF.values()))
def test_tampered_file_refused(bundles, tmp_path, fname):
    d = shutil.copytree(bundles.preset("whisper_80"), tmp_path / "b")
    nx.load(d, backend="eager")                                 # intact copy loads
    with open(d / fname, "ab") as f:
        f.write(b"\0")
    for backend in ALL_BACKENDS:
        with pytest.raises(BundleError, match="sha256"):
            nx.load(d, backend=backend)
    with pytest.raises(BundleError, match="sha256"):
        nx.verify(d, devices=("cpu",))
    assert issubclass(BundleError, ValueError)


def test_same_size_modification_refused(bundles, tmp_path):
    d = shutil.copytree(bundles.preset("whisper_80"), tmp_path / "b")
    p = d / "model.onnx"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256"):
        nx.load(d, backend="onnxruntime")


def test_missing_file_and_not_a_bundle(bundles, tmp_path):
    d = shutil.copytree(bundles.preset("whisper_80"), tmp_path / "b")
    (d / "model.pt").unlink()
    with pytest.raises(BundleError, match="model.pt"):
        nx.load(d, backend="onnxruntime")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BundleError, match="manifest.json"):
        nx.load(empty)
    (empty / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError):
        nx.load(empty)


def test_unknown_backend_and_absent_format(tmp_path):
    d = nx.export("whisper_80", tmp_path / "ts_only", formats=("torchscript",), seconds=0.5,
                  verify=False)
    with pytest.raises(BundleError, match="model.onnx"):
        nx.load(d, backend="onnxruntime")
    with pytest.raises(ValueError, match="backend"):
        nx.load(d, backend="tensorrt")
    assert nx.load(d, backend="torchscript")(np.zeros((1, 8000), np.float32)).shape == (1, 80, 50)


# --------------------------------------------------------------------------- export behaviour

def _entries(parent: Path):
    return sorted(p.name for p in parent.iterdir())


def test_existing_out_dir_refused_then_overwritten(tmp_path):
    out = tmp_path / "bundle"
    nx.export("whisper_80", out, formats=("torchscript",), seconds=0.5, verify=False)
    first = read_manifest(out)
    with pytest.raises(FileExistsError):
        nx.export("whisper_80", out, formats=("torchscript",), seconds=0.5, verify=False)
    assert read_manifest(out) == first                          # untouched
    nx.export("whisper_80", out, formats=("onnx",), seconds=0.25, overwrite=True, verify=False)
    second = read_manifest(out)
    assert set(second["files"]) == {"model.onnx"} and second["num_samples"] == 4000
    assert _entries(out) == ["golden.npz", "manifest.json", "model.onnx"]    # old model.pt gone
    assert _entries(tmp_path) == ["bundle"]                     # no temp / .old dirs left
    # a non-bundle directory is refused too
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(FileExistsError):
        nx.export("whisper_80", other, formats=("torchscript",), seconds=0.5, verify=False)


def test_no_leftover_temp_dirs_after_success_and_failure(tmp_path):
    parent = tmp_path / "p"
    out = parent / "b"
    nx.export("whisper_80", out, formats=("torchscript", "onnx"), seconds=0.5)
    assert _entries(parent) == ["b"]

    class Boom(RuntimeError):
        pass

    def progress(msg):
        if "onnx" in msg:
            raise Boom("interrupted mid-export")

    fail = parent / "c"
    with pytest.raises(Boom):
        nx.export("whisper_80", fail, formats=("torchscript", "onnx"), seconds=0.5, progress=progress)
    assert _entries(parent) == ["b"]                            # no .c.*.tmp, no c
    # a failed overwrite leaves the previous bundle intact
    before = read_manifest(out)
    with pytest.raises(Boom):
        nx.export("whisper_80", out, formats=("torchscript", "onnx"), seconds=0.5, overwrite=True,
                  progress=progress)
    assert _entries(parent) == ["b"]
    assert read_manifest(out) == before
    nx.load(out, backend="onnxruntime")                         # still verifies (sha256)
    # invalid spec: nothing created at all
    bad = {"sample_rate": 16000, "num_samples": 16000,
           "stages": [{"type": "stft", "n_fft": 400}, {"type": "power"},
                      {"type": "mel", "fmax": 9000.0}]}
    with pytest.raises(ValueError, match="fmax"):
        nx.export(bad, parent / "d", formats=("torchscript",))
    assert _entries(parent) == ["b"]


def test_export_argument_validation(tmp_path):
    with pytest.raises(ValueError, match="formats"):
        nx.export("whisper_80", tmp_path / "x", formats=("tflite",), seconds=0.5)
    with pytest.raises(ValueError, match="formats"):
        nx.export("whisper_80", tmp_path / "x", formats=(), seconds=0.5)
    for bad in (0, -1, True, 2.0):
        with pytest.raises(ValueError, match="batch"):
            nx.export("whisper_80", tmp_path / "x", formats=("torchscript",), batch=bad, seconds=0.5)
    with pytest.raises(ValueError, match="unknown preset"):
        nx.export("no_such_preset", tmp_path / "x", formats=("torchscript",))
    with pytest.raises(ValueError, match="does not exist"):
        nx.export(str(tmp_path / "missing.json"), tmp_path / "x", formats=("torchscript",))
    assert _entries(tmp_path) == []


def test_export_sources_give_the_same_spec(tmp_path):
    fe = nx.presets.load("whisper_80", seconds=0.5)
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(fe.spec))
    sources = {"frontend": fe, "dict": fe.spec, "json": str(spec_path), "path": spec_path}
    for key, src in sources.items():
        d = nx.export(src, tmp_path / key, formats=("torchscript",), verify=False)
        assert read_manifest(d)["spec"] == fe.spec, key
    d = nx.export("whisper_80", tmp_path / "preset", formats=("torchscript",), num_samples=8000,
                  verify=False)
    assert read_manifest(d)["spec"] == fe.spec
    d = nx.export(fe, tmp_path / "override", formats=("torchscript",), num_samples=4000, verify=False)
    assert read_manifest(d)["num_samples"] == 4000


@pytest.mark.parametrize("name", nx.presets.names())
def test_every_preset_scripts_and_the_script_equals_eager(name):
    # The TorchScript bundle must be compiled, not traced: a trace freezes Python-side
    # branches silently (regression: a class-level nn.Module annotation made every spectral
    # frontend fall back to tracing).
    audio_in = input_kind(nx.presets.get_spec(name)) == "audio"
    fe = nx.presets.load(name, seconds=1.0) if audio_in else nx.presets.load(name)
    scripted = torch.jit.script(fe)
    x = torch.from_numpy(fe.example_input())
    with torch.no_grad():
        ref = fe(x).numpy()
        out = scripted(x).numpy()
    # Same ops in the same order: equal up to float32 rounding of a fused op at most.
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-6 * max(1.0, float(np.abs(ref).max())))


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(pt2_device="gpu"), ValueError, "pt2_device must be 'cpu' or 'cuda'"),
    (dict(pt2_device="cuda", formats=("onnx",)), ValueError, "only with 'pt2' in formats"),
    (dict(pt2_device="cuda", streaming=True), ValueError, "streaming bundles compile their .pt2 for the CPU"),
])
def test_pt2_device_is_checked_before_exporting(tmp_path, kwargs, error, words):
    with pytest.raises(error, match=words.replace(".", r"\.").replace("(", r"\(")):
        nx.export("mel_128", tmp_path / "b", seconds=0.5, **kwargs)
    assert not (tmp_path / "b").exists()


def test_cuda_pt2_needs_the_gpu_it_runs_on(tmp_path):
    """Without a GPU: refused in one line. With one: compiled for it, and the manifest says so."""
    if not HAS_CUDA:
        with pytest.raises(RuntimeError, match="compiled on the GPU it will run on"):
            nx.export("mel_128", tmp_path / "b", seconds=0.5, pt2_device="cuda")
        return
    d = nx.export("mel_128", tmp_path / "b", seconds=0.5, formats=("pt2",), pt2_device="cuda", verify=False)
    entry = read_manifest(d)["files"]["model.pt2"]
    assert entry["device"] == "cuda" and entry["cuda_arch"].startswith("sm_")
    assert nx.verify(d, devices=("cuda",), backends=("pt2",), allow_skip=False).ok
