"""Production presets against the REAL reference packages (nnaudio_export.references):
eager, TorchScript and ONNX Runtime (CPU) on speech-like, tone, noise and digital-silence
float32 clips, plus each preset's default length in eager.

Errors are checked within 80 dB of each item's peak (``within_db``; ``None``: everywhere,
for per-item normalised outputs). A reference that computes in float32 (openai-whisper's
and transformers' torch.stft, torchlibrosa's conv) is itself off the exact value next to a
loud tone by up to 5.4e-5 (Whisper) / 2.4e-3 dB (PANNs) at 80 dB, more than the
tolerance. Against those, the check is ``|ours - ref| <= tol + |ref - ref64|`` bin by bin,
where ``ref64`` is the same preset's float64 reference (transformers' numpy path, librosa):
we may differ from a float32 reference by no more than its own rounding plus the
tolerance, and float64 references get the plain tolerance. ``full_tol`` bounds the whole
output. Set ``NNX_PRESET_REPORT=path.json`` to write every measured error.
"""
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import nnaudio_export as nx
from nnaudio_export.kernels.kaldi import (kaldi_edge_indices, kaldi_fbank_kernels, kaldi_num_frames,
                                          kaldi_window)
from nnaudio_export.references import ALTERNATES, REFERENCES, float64_reference
from nnaudio_export.spec import transform_precisions

from nnaudio_export.signals import clip

warnings.filterwarnings("ignore")

# name: short test length (s), tolerance (output units), within_db, full-range bound
CASES = {
    "whisper_80": dict(seconds=2.0, tol=5e-5, within_db=80.0, full_tol=5e-5),
    "whisper_128": dict(seconds=2.0, tol=5e-5, within_db=80.0, full_tol=5e-5),
    "kaldi_fbank_80": dict(seconds=2.0, tol=1e-3, within_db=80.0, full_tol=0.5),
    "kaldi_fbank_80_lhotse": dict(seconds=2.0, tol=5e-4, within_db=80.0, full_tol=0.05),
    "ast_128": dict(seconds=2.0, tol=5e-4, within_db=None, full_tol=5e-4),
    "nemo_mel_80": dict(seconds=2.0, tol=5e-4, within_db=None, full_tol=5e-4),
    "clap_htsat": dict(seconds=3.0, tol=1e-3, within_db=80.0, full_tol=1.0),  # 3 s: repeat-pad path
    "panns_cnn14": dict(seconds=2.0, tol=1e-3, within_db=80.0, full_tol=1.0),
    "speechbrain_fbank_40": dict(seconds=2.0, tol=2e-3, within_db=80.0, full_tol=5e-3),
}
SIGNALS = {
    "speech": lambda sr, s: clip("speech", sr, s),
    "tones": lambda sr, s: clip("tones", sr, s),
    "noise": lambda sr, s: clip("noise", sr, s),
    "silence": lambda sr, s: np.zeros(int(round(sr * s)), np.float32),
}
REPORT = {}
_BUILT = {}


@pytest.fixture(scope="module", autouse=True)
def _write_report():
    yield
    path = os.environ.get("NNX_PRESET_REPORT")
    if path:
        Path(path).write_text(json.dumps(REPORT, indent=1, sort_keys=True))


def all_references(name):
    # A missing reference package is a failure, never a skip: scripts/test.sh installs them all.
    return [REFERENCES[name]] + ALTERNATES.get(name, [])


def built(name, tmp_path_factory):
    """(eager, scripted, onnxruntime callable) at the short test length, cached per preset."""
    if name in _BUILT:
        return _BUILT[name]
    spec = nx.presets.get_spec(name)
    n = int(round(CASES[name]["seconds"] * spec["sample_rate"]))
    fe = nx.presets.load(name, num_samples=n).eval()
    bundle = nx.export(fe, tmp_path_factory.mktemp(name) / "bundle", formats=("torchscript", "onnx"),
                       verify=False)
    _BUILT[name] = (fe, nx.load(bundle, backend="torchscript"), nx.load(bundle, backend="onnxruntime"))
    return _BUILT[name]


def run(model, x, numpy_in=False):
    a = x[None].astype(np.float32)
    if numpy_in:
        return np.asarray(model(a), dtype=np.float64)[0]
    with torch.no_grad():
        y = model(torch.from_numpy(a))
    y = y.numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    return y.astype(np.float64)[0]


def own_rounding(name, ref, x, r):
    """Bin-by-bin |ref - ref64| for a float32 reference (0 for a float64 one, or when the
    preset has no float64 reference)."""
    exact = float64_reference(name)
    if ref.float64 or exact is None:
        return np.zeros_like(r)
    return np.abs(r - exact(x))


def errors(fe, y, r, case, allowance=None):
    """(max error within ``within_db`` of the reference's peak, max error everywhere), each
    after subtracting ``allowance`` (the reference's own rounding) bin by bin."""
    assert y.shape == r.shape, (y.shape, r.shape)
    d = np.abs(y - r)
    if allowance is not None:
        d = np.maximum(d - allowance, 0.0)
    mask = np.ones_like(d, dtype=bool)
    if case["within_db"] is not None:
        mask = (r.max() - r) * fe.db_per_unit <= case["within_db"]
    return float(d[mask].max()), float(d.max())


def float32_reference_error(fe, name, x, case):
    """How far the preset's real (float32) reference is from float64 on ``x``, within the
    preset's dB window (0 when the reference is itself float64 or no float64 one exists)."""
    ref, exact = REFERENCES[name], float64_reference(name)
    if ref.float64 or exact is None:
        return 0.0
    return errors(fe, ref(x), exact(x), case)[0]


def float64_truth(name, fe, x):
    """The preset's float64 reference package, else our own float64 build (Kaldi and AST have
    no float64 package; our float64 build is checked against them in test_preset_matches_reference)."""
    exact = float64_reference(name)
    if exact is not None:
        return exact(x)
    return run(nx.Frontend.from_spec(fe.spec, dtype=torch.float64).eval(), x)


@pytest.mark.parametrize("signal", list(SIGNALS))
@pytest.mark.parametrize("name", list(CASES))
def test_preset_matches_reference(name, signal, tmp_path_factory):
    """Bound: the tolerance, or, where the real float32 reference is itself further from
    float64 on this signal (measured here), that distance (the precision policy)."""
    case = CASES[name]
    fe, script, ort = built(name, tmp_path_factory)
    x = SIGNALS[signal](fe.sample_rate, fe.num_samples / fe.sample_rate)[: fe.num_samples]
    bound = max(case["tol"], float32_reference_error(fe, name, x, case))
    outs = {"eager": run(fe, x), "torchscript": run(script, x), "onnxruntime": run(ort, x, numpy_in=True)}
    for ref in all_references(name):
        r = ref(x)
        allowance = own_rounding(name, ref, x, r)
        for backend, y in outs.items():
            masked, full = errors(fe, y, r, case, allowance)
            raw = errors(fe, y, r, case)[0]
            REPORT[f"{name}/{signal}/{backend}/{ref.package}{'' if ref.float64 else ' (float32)'}"] = {
                "masked": masked, "full": full, "masked_raw": raw, "bound": bound,
                "reference_own_rounding": float(allowance.max())}
            where = f"{name} {signal} {backend} vs {ref.description}"
            assert masked <= bound, f"{where}: {masked:.3g} > {bound:.3g} (within {case['within_db']} dB)"
            assert full <= case["full_tol"], f"{where}: full range {full:.3g} > {case['full_tol']}"


@pytest.mark.parametrize("name", list(CASES))
def test_preset_default_length_eager(name):
    case = CASES[name]
    fe = nx.presets.load(name).eval()
    x = clip("speech", fe.sample_rate, fe.num_samples / fe.sample_rate)[: fe.num_samples]
    r = REFERENCES[name](x)
    y = run(fe, x)
    assert y.shape == tuple(fe.output_shape)
    masked, full = errors(fe, y, r, case, own_rounding(name, REFERENCES[name], x, r))
    REPORT[f"{name}/speech_default_length/eager"] = {"masked": masked, "full": full}
    assert masked <= max(case["tol"], float32_reference_error(fe, name, x, case)), masked
    assert full <= case["full_tol"], full


@pytest.mark.parametrize("name", list(CASES))
def test_default_precision_meets_the_policy_against_float64_truth(name):
    """The precision policy (README "Precision"): a preset's default precision must meet its
    tolerance against float64 truth within its dB window, or be no further from float64 than
    its real reference is on the same signal (measured here, never hard-coded). Tones are the
    hard case (a loud bin next to bins 80 dB down); speech-like audio for the typical one. The
    presets whose factorised `single` DFT meets this default to it; the others
    (kaldi_fbank_80_lhotse, nemo_mel_80, clap_htsat) keep `extended`."""
    case = CASES[name]
    spec = nx.presets.get_spec(name)
    fe = nx.presets.load(name, seconds=case["seconds"]).eval()
    for signal in ("tones", "speech"):
        x = clip(signal, spec["sample_rate"], case["seconds"])[: fe.num_samples]
        truth = float64_truth(name, fe, x)
        ours = errors(fe, run(fe, x), truth, case)[0]
        theirs = float32_reference_error(fe, name, x, case) if float64_reference(name) is not None \
            else errors(fe, REFERENCES[name](x), truth, case)[0]
        REPORT[f"{name}/{signal}/default-precision-vs-float64"] = {
            "ours": ours, "reference": theirs, "precision": sorted(transform_precisions(spec))}
        assert ours <= max(case["tol"], theirs), (signal, ours, case["tol"], theirs)


@pytest.mark.parametrize("name", ["whisper_80", "panns_cnn14"])
def test_float32_references_are_off_the_exact_value_by_more_than_the_tolerance(name):
    """Why float32 references get their own rounding as an allowance: on tones, openai-whisper
    and torchlibrosa are off their float64 counterpart within 80 dB by an amount of the order of
    the tolerance, which depends on the machine's FFT / GEMM kernels (openai-whisper: 5.4e-5 on
    an Intel Xeon with AVX-512, 3.1e-5 on an AMD EPYC with AVX2; tolerance 5e-5), while ours at
    precision 'extended' stays far inside the tolerance and many times closer than theirs (the
    presets' default, 'single', is pinned by the policy test above)."""
    case = CASES[name]
    spec = nx.presets.get_spec(name)
    fe = nx.presets.load(name, seconds=case["seconds"], precision="extended").eval()
    x = clip("tones", spec["sample_rate"], case["seconds"])
    exact = float64_reference(name)(x)
    theirs = errors(fe, REFERENCES[name](x), exact, case)[0]
    ours = errors(fe, run(fe, x), exact, case)[0]
    REPORT[f"{name}/tones/reference-vs-float64"] = {"masked": theirs, "ours_extended_masked": ours}
    assert theirs > case["tol"] / 2 and ours < case["tol"] / 4 and theirs > 8 * ours, (theirs, ours)


def test_nemo_digital_silence_is_zero_where_nemo_float32_is_not():
    """Deliberate difference: per-feature normalisation of a constant band divides the rounding
    of NeMo's float32 mean by std 0 + 1e-5 (+-0.28); ours takes the mean relative to the first
    frame and returns 0, as the float64 re-implementation does (to its own 3.6e-10)."""
    fe = nx.presets.load("nemo_mel_80", seconds=2.0).eval()
    x = np.zeros(fe.num_samples, np.float32)
    nemo = REFERENCES["nemo_mel_80"](x)
    exact = float64_reference("nemo_mel_80")(x)
    ours = run(fe, x)
    assert np.abs(nemo).max() > 0.05 and np.abs(exact).max() < 1e-9   # float64: its own 3.6e-10
    assert np.abs(ours).max() < 1e-9


def test_whisper_clamp_is_per_item_and_openai_batched_is_not():
    """A quiet item batched with a loud one: ours (like HF) equals the item alone; openai's
    batched log_mel_spectrogram clamps the quiet item against the loud item's max."""
    import whisper.audio as wa
    n = 32000
    fe = nx.presets.load("whisper_80", num_samples=n).eval()
    loud = clip("speech", 16000, 2.0)
    quiet = (1e-4 * clip("noise", 16000, 2.0)).astype(np.float32)
    with torch.no_grad():
        ours = fe(torch.from_numpy(np.stack([quiet, loud]))).double().numpy()
    alone = REFERENCES["whisper_80"](quiet)
    hf = ALTERNATES["whisper_80"][0](quiet)
    batched = wa.log_mel_spectrogram(torch.from_numpy(np.stack([quiet, loud]))).double().numpy()
    assert np.abs(ours[0] - alone).max() < 5e-5 and np.abs(ours[0] - hf).max() < 5e-5
    assert np.abs(ours[1] - REFERENCES["whisper_80"](loud)).max() < 5e-5
    assert np.abs(batched[0] - alone).max() > 0.1  # openai batched: quiet item differs
    assert "whole batch" in nx.presets.get_spec("whisper_80")["description"].lower()


def test_presets_are_documented_and_registered():
    for name in CASES:
        spec = nx.presets.get_spec(name)
        assert spec.get("description") and spec.get("reference"), name
        assert name in REFERENCES and REFERENCES[name].description


def test_kaldi_folded_kernel_equals_step_by_step_frame_processing():
    rng = np.random.default_rng(0)
    frame = rng.standard_normal(400)
    for window in ("povey", "hanning", "hamming"):
        k, n_fft = kaldi_fbank_kernels(400, window, True, 0.97, True)
        y = frame - frame.mean()
        y = np.concatenate([[y[0] - 0.97 * y[0]], y[1:] - 0.97 * y[:-1]])
        y = np.pad(y * kaldi_window(window, 400), (0, n_fft - 400))
        spec = np.fft.rfft(y)
        got = k @ frame
        np.testing.assert_allclose(got[:257], spec.real, atol=1e-9)
        np.testing.assert_allclose(got[257:], -spec.imag, atol=1e-9)


def test_kaldi_edge_reflection_repeats_the_edge_sample():
    n = 1000
    left, right, start = kaldi_edge_indices(n, 400, 160)
    assert start == 0 and list(left[-3:]) == [2, 1, 0] and list(right[:3]) == [n - 1, n - 2, n - 3]
    frames = kaldi_num_frames(n, 400, 160, False)
    x = np.arange(n, dtype=np.float64)
    padded = np.concatenate([x[left], x, x[right]])
    sym = np.pad(x, (120, 400), mode="symmetric")  # numpy 'symmetric' repeats the edge
    for f in range(frames):
        np.testing.assert_array_equal(padded[160 * f: 160 * f + 400], sym[160 * f: 160 * f + 400])


def test_onnx_graphs_use_no_fft_ops(tmp_path):
    import onnx
    for name in ("kaldi_fbank_80_lhotse", "nemo_mel_80", "clap_htsat"):
        fe = nx.presets.load(name, seconds=1.0).eval()
        path = tmp_path / f"{name}.onnx"
        torch.onnx.export(fe, (torch.zeros(1, fe.num_samples),), str(path), dynamo=False,
                          opset_version=17, input_names=["audio"], output_names=["features"])
        ops = {node.op_type for node in onnx.load(str(path)).graph.node}
        assert not ops & {"STFT", "DFT", "ScatterND"}, (name, ops)
