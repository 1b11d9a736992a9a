"""Parity of per-item normalised outputs on ill-conditioned input (SeamlessM4T on a steady
tone): the bound is scaled per value by the normalisation's amplification, derived from the
float64 reference (nnaudio_export/tolerances.py), written into golden.npz, and said in the
report. Pinned: a Seamless bundle verifies at export, with golden.npz and against
transformers' own float32 extractor (which the scaled bound admits and the plain one does
not); a bundle whose model is really wrong (perturbed mel weights) still fails it."""
import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
import transformers  # a reference (scripts/setup_env.sh test installs it): missing is a failure

import nnaudio_export as nx
from nnaudio_export.builder import Frontend
from nnaudio_export.tolerances import NORMALIZED_LOG_ABS_TOL, normalisation_bound_scale

SECONDS = 1.0


def seamless(perturb: bool = False) -> nx.Frontend:
    fe = nx.from_hf(transformers.SeamlessM4TFeatureExtractor(), seconds=SECONDS).eval()
    if perturb:    # every mel weight off by ~1 % (a per-bin constant factor would normalise away)
        with torch.no_grad():
            w = fe.stages[2].weight
            noise = np.random.default_rng(0).standard_normal(tuple(w.shape))
            w.mul_(1.0 + 1e-2 * torch.from_numpy(noise).to(w.dtype))
    return fe


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("scaled")
    good = nx.export(seamless(), root / "good", formats=("onnx",))          # verified at export
    bad = nx.export(seamless(perturb=True), root / "bad", formats=("onnx",), verify=False)
    return good, bad


def test_seamless_bundle_verifies_with_the_scaled_bound(bundles):
    good, _ = bundles
    parity = nx.runtime.read_manifest(good)["parity"]
    assert parity["ok"], parity
    assert any("ill-conditioned input" in line for line in parity["conditioning"])
    report = nx.verify(good)
    assert report.ok, report.table()
    eager = next(r for r in report.rows if r.backend == "eager")
    # the plain bound would fail (the tone's rounding amplified ~3000x), the scaled one holds
    assert eager.max_abs > NORMALIZED_LOG_ABS_TOL and eager.max_scaled <= NORMALIZED_LOG_ABS_TOL / 5
    assert eager.bound_scale > 100 and "SCALED BOUND: ill-conditioned input" in report.table()


def test_scaled_bound_admits_transformers_float32_extractor():
    """transformers' own float32 output on the tone is 1e-2 off the float64 reference, 20x
    the plain bound; the scaled bound, derived without it, admits it with margin."""
    fe = seamless()
    x = fe.example_input(("tones",))
    reference = Frontend.from_spec(fe.spec, dtype=torch.float64).eval()
    with torch.inference_mode():
        y64 = reference(torch.from_numpy(x)).numpy()[0]
    scale, note = normalisation_bound_scale(reference, x, NORMALIZED_LOG_ABS_TOL)
    extractor = transformers.SeamlessM4TFeatureExtractor()
    theirs = extractor(x[0], sampling_rate=16000, return_tensors="np")["input_features"][0]
    err = np.abs(theirs - y64)
    assert err.max() > 10 * NORMALIZED_LOG_ABS_TOL
    assert (err / scale[0]).max() <= NORMALIZED_LOG_ABS_TOL / 10, note


def test_golden_carries_the_scale_and_catches_a_wrong_model(bundles, tmp_path):
    good, bad = bundles
    with np.load(good / "golden.npz") as g:
        assert g["scale"].shape == g["output"].shape and g["scale"].min() == 1.0
    report = nx.verify(good, golden_only=True)
    assert report.ok and report.conditioning, report.table()
    victim = tmp_path / "victim"
    shutil.copytree(good, victim)
    m = json.loads((victim / "manifest.json").read_text())
    for name, entry in m["files"].items():
        shutil.copyfile(bad / name, victim / name)
        data = (victim / name).read_bytes()
        entry.update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    (victim / "manifest.json").write_text(json.dumps(m, indent=2))
    for report in (nx.verify(victim, golden_only=True), nx.verify(victim)):
        assert not report.ok, report.table()
        worst = max(r.max_scaled for r in report.rows if r.reference != "eager_float32" and r.backend != "eager")
        assert worst > 10 * NORMALIZED_LOG_ABS_TOL, report.table()


def test_nemo_at_its_own_length_verifies_with_the_statistics_term(tmp_path):
    """nemo_mel_80 at its preset length (10 s): on the steady tones, band 8's first frame lies
    17 std from its row's mean, so it carries 17x the std's relative rounding; float32 eager is
    then ~1e-3 off float64 there, twice the plain bound. The bound now includes the statistics'
    term (:func:`normalised_error_bound`) and the module/spec stage indices are matched by type
    (the power stage fuses into the STFT module): the bundle verifies at export, and the
    figures show both the plain bound's failure and the scaled one's margin."""
    d = nx.export("nemo_mel_80", tmp_path / "nemo", formats=("onnx",))     # verified at export
    parity = nx.runtime.read_manifest(d)["parity"]
    assert parity["ok"], parity
    eager = next(r for r in parity["rows"] if r["backend"] == "eager")
    assert eager["max_abs"] > NORMALIZED_LOG_ABS_TOL and eager["max_scaled"] <= NORMALIZED_LOG_ABS_TOL / 2
    fe = nx.presets.load("nemo_mel_80")
    reference = Frontend.from_spec(fe.spec, dtype=torch.float64).eval()
    x = fe.example_input(("speech", "tones", "noise"))
    scale, note = normalisation_bound_scale(reference, x, NORMALIZED_LOG_ABS_TOL)
    assert "values far from their mean" in note
    assert scale[0].max() < 10 and scale[2].max() < 10     # speech, noise: a few times the plain bound
    assert np.median(scale[1]) < 10                         # tones: large only in bands far below the peak


def test_statistics_term_bounds_a_real_perturbation_of_the_statistics():
    """normalised_error_bound against brute force: perturb a row by up to b per value (random
    signs, 200 draws) and the normalised outputs never move further than the bound."""
    from nnaudio_export.stages.normalisation import NormalizeStage
    from nnaudio_export.tolerances import normalised_error_bound
    rng = np.random.default_rng(1)
    h = torch.from_numpy(np.concatenate([[5.0], rng.normal(0.0, 0.1, 299)]).reshape(1, 1, 300))
    b = torch.full_like(h, 1e-4)
    for eps_on_variance in (False, True):
        stage = NormalizeStage(True, 1e-5, True, 0, eps_on_variance).double()
        bound = normalised_error_bound(stage, h, b)
        y = stage(h)
        worst = torch.zeros_like(h)
        for _ in range(200):
            moved = stage(h + b * torch.from_numpy(rng.choice([-1.0, 1.0], size=h.shape)))
            worst = torch.maximum(worst, (moved - y).abs())
        # the worst case for the outlier (~50 std out): it moves up, the rest towards the mean
        # (the std shrinks): ~4x b / s, the value's own term, and within the bound
        push = -b * torch.sign(h - h.mean())
        push[0, 0, 0] = b[0, 0, 0]
        worst = torch.maximum(worst, (stage(h + push) - y).abs())
        assert bool((worst <= bound).all())
        s = float(h[0, 0, 1] - h[0, 0, 2]) / float(y[0, 0, 1] - y[0, 0, 2])
        assert float(worst[0, 0, 0]) > 3 * 1e-4 / s
