"""STFT / MelSpectrogram / MFCC layers against librosa 0.11 and nnAudio 0.3.4.

Tolerances are relative to the reference's peak (``max |ours - ref| <= tol * max |ref|``);
MFCCs (dB domain) are compared with an absolute tolerance in dB. Phases are compared
modulo 2 pi where the reference magnitude is above 1e-3 of its peak.
"""

import librosa
import numpy as np
import pytest
import scipy.fft
import torch
from nnAudio.features import MFCC as NNMFCC
from nnAudio.features import STFT as NNSTFT
from nnAudio.features import MelSpectrogram as NNMel

from nnaudio_export.layers import MFCC, STFT, MelSpectrogram

from nnaudio_export.signals import clip

REL_TOL = 1e-4      # of the reference's peak
MFCC_DB_TOL = 5e-3  # absolute, in the MFCC (dB) domain (measured <= 1e-3)
SECONDS = 1.0


def _sig(name, sr, seconds=SECONDS):
    return clip(name, sr, seconds)


def rel_err(ours, ref):
    ours = np.asarray(ours)
    ref = np.asarray(ref)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


def assert_rel(ours, ref, tol=REL_TOL, what=""):
    err = rel_err(ours, ref)
    print(f"[max-err] {what}: {err:.3e} of peak")
    assert err <= tol, f"{what}: max error {err:.3e} of the reference peak > {tol:.0e}"


def wrap(d):
    return (d + np.pi) % (2 * np.pi) - np.pi


def assert_phase(ours_phase, ref_phase, ref_mag, tol=REL_TOL, what=""):
    ours_phase = np.asarray(ours_phase, dtype=np.float64)
    ref_phase = np.asarray(ref_phase, dtype=np.float64)
    ref_mag = np.asarray(ref_mag, dtype=np.float64)
    assert ours_phase.shape == ref_phase.shape == ref_mag.shape
    mask = ref_mag > 1e-3 * ref_mag.max()
    assert mask.sum() > 0
    d = np.abs(wrap(ours_phase - ref_phase))[mask]
    # Phase error scaled by the bin's magnitude = error of the unit-less phase in units of
    # the peak magnitude; a float32 transform is exact to ~1e-6 of the peak, so a bin at 1e-3
    # of the peak has ~1e-3 rad of phase noise. Both bounds are checked.
    weighted = float((d * ref_mag[mask]).max() / ref_mag.max())
    print(f"[max-err] {what}: phase max {d.max():.3e} rad, magnitude-weighted {weighted:.3e}")
    assert weighted <= tol, f"{what}: magnitude-weighted phase error {weighted:.3e}"
    assert d.max() <= 1e-3, f"{what}: phase error {d.max():.3e} rad where |X| > 1e-3 peak"
    assert np.all(ours_phase > -np.pi + 1e-4 - 1e-6) and np.all(ours_phase <= np.pi + 1e-4 + 1e-6)


def run(layer, y):
    with torch.no_grad():
        return layer(torch.from_numpy(np.asarray(y, dtype=np.float32))[None]).numpy()[0]


# ============================================================================ librosa

LIBROSA_SIGNALS = ["speech", "tones", "noise", "chirp", "int16"]

STFT_LIBROSA_CONFIGS = [
    dict(n_fft=2048, hop_length=None, win_length=None, window="hann", center=True),
    dict(n_fft=512, hop_length=128, win_length=400, window="hamming", center=True),
    dict(n_fft=400, hop_length=160, win_length=400, window="hann", center=True),
    dict(n_fft=256, hop_length=100, win_length=None, window="blackman", center=False),
]


@pytest.mark.parametrize("signal", LIBROSA_SIGNALS)
@pytest.mark.parametrize("cfg", STFT_LIBROSA_CONFIGS, ids=lambda c: f"nfft{c['n_fft']}-{c['window']}")
def test_stft_vs_librosa(signal, cfg):
    sr = 16000
    y = _sig(signal, sr)
    hop = cfg["hop_length"] or (cfg["win_length"] or cfg["n_fft"]) // 4
    ref = librosa.stft(y.astype(np.float64), n_fft=cfg["n_fft"], hop_length=hop,
                       win_length=cfg["win_length"], window=cfg["window"], center=cfg["center"],
                       pad_mode="reflect")
    cplx = run(STFT(n_fft=cfg["n_fft"], hop_length=cfg["hop_length"], win_length=cfg["win_length"],
                    window=cfg["window"], center=cfg["center"], output_format="Complex",
                    verbose=False), y)
    mag = run(STFT(n_fft=cfg["n_fft"], hop_length=cfg["hop_length"], win_length=cfg["win_length"],
                   window=cfg["window"], center=cfg["center"], output_format="Magnitude",
                   verbose=False), y)
    assert_rel(mag, np.abs(ref), what=f"STFT|.| vs librosa {signal} {cfg}")
    assert_rel(cplx[..., 0] + 1j * cplx[..., 1], ref, what=f"STFT complex vs librosa {signal} {cfg}")


MEL_LIBROSA_CONFIGS = [
    dict(sr=22050),  # defaults on both sides: n_fft 2048, hop 512, 128 slaney mels, power 2
    dict(sr=16000, n_fft=512, hop_length=160, win_length=400, n_mels=40, fmin=20.0, fmax=7600.0),
    dict(sr=16000, n_fft=400, hop_length=160, n_mels=80, htk=True, norm=None, power=1.0),
]


def _librosa_mel_kwargs(cfg):
    kw = dict(cfg)
    if "norm" in kw and kw["norm"] == 1:
        kw["norm"] = "slaney"
    return kw


@pytest.mark.parametrize("signal", LIBROSA_SIGNALS)
@pytest.mark.parametrize("cfg", MEL_LIBROSA_CONFIGS, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_melspectrogram_vs_librosa(signal, cfg):
    y = _sig(signal, cfg["sr"])
    ref = librosa.feature.melspectrogram(y=y.astype(np.float64), pad_mode="reflect",
                                         **_librosa_mel_kwargs(cfg))
    ours = run(MelSpectrogram(verbose=False, **cfg), y)
    assert_rel(ours, ref, what=f"Mel vs librosa {signal} {cfg}")


MFCC_LIBROSA_CONFIGS = [
    dict(sr=22050),  # n_mfcc 20, 128 mels, top_db 80
    dict(sr=16000, n_mfcc=13, n_fft=512, hop_length=160, win_length=400, n_mels=40),
]


@pytest.mark.parametrize("signal", LIBROSA_SIGNALS)
@pytest.mark.parametrize("cfg", MFCC_LIBROSA_CONFIGS, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_mfcc_vs_librosa(signal, cfg):
    # One item: librosa's top_db clamp (whole array) equals ours (per item).
    y = _sig(signal, cfg["sr"])
    ref = librosa.feature.mfcc(y=y.astype(np.float64), pad_mode="reflect", **cfg)
    ours = run(MFCC(verbose=False, **cfg), y)
    assert ours.shape == ref.shape
    err = float(np.abs(ours - ref).max())
    print(f"[max-err] MFCC vs librosa {signal} {cfg}: {err:.3e} dB-units (peak {np.abs(ref).max():.1f})")
    assert err <= MFCC_DB_TOL


@pytest.mark.parametrize("signal", ["noise", "tones"])
def test_mfcc_ref_and_no_top_db_vs_librosa(signal):
    """top_db=None, ref=2: librosa.power_to_db + scipy DCT-II (ortho) as the reference; the
    dB mel is also checked directly, restricted to within 80 dB of its peak."""
    sr = 16000
    y = _sig(signal, sr)
    mel_kw = dict(n_fft=512, hop_length=128, n_mels=40)
    S = librosa.feature.melspectrogram(y=y.astype(np.float64), sr=sr, pad_mode="reflect", **mel_kw)
    ref_db = librosa.power_to_db(S, ref=2.0, amin=1e-10, top_db=None)
    ref = scipy.fft.dct(ref_db, type=2, norm="ortho", axis=-2)[:13]
    layer = MFCC(sr=sr, n_mfcc=13, ref=2.0, top_db=None, verbose=False, **mel_kw)
    ours = run(layer, y)
    if signal == "noise":  # every band is far above float32 noise: the DCT is comparable
        err = float(np.abs(ours - ref).max())
        print(f"[max-err] MFCC top_db=None ref=2 vs librosa {signal}: {err:.3e}")
        assert err <= MFCC_DB_TOL
    db = 10 * np.log10(np.maximum(run(layer.melspec_layer, y), 1e-10)) - 10 * np.log10(2.0)
    keep = ref_db > ref_db.max() - 80.0
    err_db = float(np.abs(db - ref_db)[keep].max())
    print(f"[max-err] dB mel (within 80 dB of peak) vs librosa {signal}: {err_db:.3e} dB")
    assert err_db <= 1e-2


# ============================================================================ nnAudio 0.3.4

def _nn(layer_cls, **kw):
    return layer_cls(verbose=False, **kw)


STFT_NN_CONFIGS = [
    dict(),  # defaults: n_fft 2048, hop 512, hann, reflect
    dict(n_fft=512, hop_length=128, win_length=400, window="hamming"),
    dict(n_fft=512, hop_length=128, freq_scale="linear", fmin=50, fmax=6000, sr=16000),
    dict(n_fft=512, hop_length=128, freq_bins=120, freq_scale="log", fmin=60, fmax=7000, sr=16000),
    dict(n_fft=512, hop_length=128, freq_bins=96, freq_scale="log2", fmin=40, fmax=7900, sr=16000),
    dict(n_fft=256, hop_length=64, center=False),
    dict(n_fft=256, hop_length=100, pad_mode="constant"),
]


def _cfg_id(c):
    return "-".join(f"{k}{v}" for k, v in c.items()) or "defaults"


@pytest.mark.parametrize("signal", ["speech", "tones", "noise"])
@pytest.mark.parametrize("cfg", STFT_NN_CONFIGS, ids=_cfg_id)
def test_stft_vs_nnaudio(signal, cfg):
    y = _sig(signal, 16000)
    x = torch.from_numpy(y)[None]
    outs = {}
    for fmt in ("Complex", "Magnitude", "Phase"):
        ref = _nn(NNSTFT, output_format=fmt, **cfg)
        ours = STFT(output_format=fmt, verbose=False, **cfg)
        with torch.no_grad():
            outs[fmt] = (ours(x).numpy()[0], ref(x).numpy()[0])
    c_ours, c_ref = outs["Complex"]
    assert_rel(c_ours, c_ref, what=f"STFT Complex vs nnAudio {signal} {cfg}")
    m_ours, m_ref = outs["Magnitude"]
    assert_rel(m_ours, m_ref, what=f"STFT Magnitude vs nnAudio {signal} {cfg}")
    p_ours, p_ref = outs["Phase"]
    assert_phase(p_ours, p_ref, m_ref, what=f"STFT Phase vs nnAudio {signal} {cfg}")


MEL_NN_CONFIGS = [
    dict(),
    dict(sr=16000, n_fft=512, hop_length=128, win_length=400, window="hamming", n_mels=64),
    dict(sr=16000, n_fft=1024, hop_length=256, n_mels=80, htk=True, norm=None, power=1.0),
    dict(sr=16000, n_fft=512, hop_length=160, n_mels=40, fmin=30.0, fmax=7000.0, center=False),
    dict(sr=16000, n_fft=512, hop_length=160, n_mels=40, pad_mode="constant", power=1.5),
]


@pytest.mark.parametrize("signal", ["speech", "tones", "noise"])
@pytest.mark.parametrize("cfg", MEL_NN_CONFIGS, ids=_cfg_id)
def test_melspectrogram_vs_nnaudio(signal, cfg):
    y = _sig(signal, cfg.get("sr", 22050))
    ref = run(_nn(NNMel, **cfg), y)
    ours = run(MelSpectrogram(verbose=False, **cfg), y)
    assert_rel(ours, ref, what=f"Mel vs nnAudio {signal} {cfg}")


MFCC_NN_CONFIGS = [
    (dict(), ["speech", "tones", "noise"]),
    (dict(sr=16000, n_mfcc=13, n_fft=512, hop_length=160, n_mels=40), ["speech", "tones", "noise"]),
    # Without the top_db clamp only bands far above float32 noise are comparable: noise.
    (dict(sr=16000, n_mfcc=13, n_fft=512, hop_length=128, n_mels=40, top_db=None, ref=2.0), ["noise"]),
    (dict(sr=16000, n_mfcc=20, n_fft=400, hop_length=160, n_mels=64, htk=True, top_db=60.0), ["speech"]),
]


@pytest.mark.parametrize("cfg,signals", MFCC_NN_CONFIGS, ids=[_cfg_id(c) for c, _ in MFCC_NN_CONFIGS])
def test_mfcc_vs_nnaudio(cfg, signals):
    for signal in signals:
        y = _sig(signal, cfg.get("sr", 22050))
        ref = run(_nn(NNMFCC, **cfg), y)
        ours = run(MFCC(verbose=False, **cfg), y)
        assert ours.shape == ref.shape
        err = float(np.abs(ours - ref).max())
        print(f"[max-err] MFCC vs nnAudio {signal} {cfg}: {err:.3e}")
        assert err <= MFCC_DB_TOL, (signal, err)


def test_batch_and_rank_handling_vs_nnaudio():
    """(L,), (B, L), (B, 1, L) inputs give the same per-item results as nnAudio."""
    ys = np.stack([_sig("speech", 16000, 0.5), _sig("noise", 16000, 0.5)])
    kw = dict(n_fft=256, hop_length=64, output_format="Magnitude")
    ours, ref = STFT(verbose=False, **kw), _nn(NNSTFT, **kw)
    with torch.no_grad():
        for x in (torch.from_numpy(ys), torch.from_numpy(ys)[:, None], torch.from_numpy(ys[0])):
            assert_rel(ours(x).numpy(), ref(x).numpy(), what=f"STFT rank {x.dim()} vs nnAudio")


# ============================================================================ deliberate differences

def test_mel_norm_inf_is_librosa_inf_not_nnaudio():
    sr, n_fft, n_mels = 16000, 512, 40
    lib_inf = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, norm=np.inf, dtype=np.float64)
    ours = MelSpectrogram(sr=sr, n_fft=n_fft, n_mels=n_mels, norm=np.inf, verbose=False)
    np.testing.assert_allclose(ours.mel_basis.numpy(), lib_inf, rtol=0, atol=1e-7)
    np.testing.assert_allclose(ours.mel_basis.numpy().max(axis=1), 1.0, atol=1e-6)
    # nnAudio accepts np.inf and leaves the filters un-normalised: its basis is NOT librosa's.
    nn_basis = _nn(NNMel, sr=sr, n_fft=n_fft, n_mels=n_mels, norm=np.inf).mel_basis.numpy()
    assert np.abs(nn_basis - lib_inf).max() > 1e-3
    # The layer output follows librosa's norm=np.inf.
    y = _sig("speech", sr)
    ref = librosa.feature.melspectrogram(y=y.astype(np.float64), sr=sr, n_fft=n_fft, n_mels=n_mels,
                                         norm=np.inf, pad_mode="reflect")
    assert_rel(run(ours, y), ref, what="Mel norm=inf vs librosa")


def test_mel_norm_slaney_accepted_unlike_nnaudio():
    sr, n_fft, n_mels = 16000, 512, 40
    ours = MelSpectrogram(sr=sr, n_fft=n_fft, n_mels=n_mels, norm="slaney", verbose=False)
    lib = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, norm="slaney", dtype=np.float64)
    np.testing.assert_allclose(ours.mel_basis.numpy(), lib, rtol=0, atol=1e-7 * lib.max())
    # ... and nnAudio's norm=1 (Slaney) is the same thing:
    ours1 = MelSpectrogram(sr=sr, n_fft=n_fft, n_mels=n_mels, norm=1, verbose=False)
    np.testing.assert_array_equal(ours.mel_basis.numpy(), ours1.mel_basis.numpy())
    nn1 = _nn(NNMel, sr=sr, n_fft=n_fft, n_mels=n_mels, norm=1).mel_basis.numpy()
    assert_rel(ours1.mel_basis.numpy(), nn1, tol=1e-6, what="mel basis norm=1 vs nnAudio")
    with pytest.raises(Exception):
        _nn(NNMel, sr=sr, n_fft=n_fft, n_mels=n_mels, norm="slaney")


def test_mfcc_top_db_is_per_batch_item():
    sr = 16000
    loud = _sig("speech", sr)
    quiet = (1e-3 * _sig("tones", sr)).astype(np.float32)
    batch = np.stack([loud, quiet])
    kw = dict(n_mfcc=13, n_fft=512, hop_length=160, n_mels=40)
    layer = MFCC(sr=sr, verbose=False, **kw)
    with torch.no_grad():
        ours = layer(torch.from_numpy(batch)).numpy()
    for i, y in enumerate(batch):
        ref = librosa.feature.mfcc(y=y.astype(np.float64), sr=sr, pad_mode="reflect", **kw)
        err = float(np.abs(ours[i] - ref).max())
        print(f"[max-err] MFCC batch item {i} vs per-item librosa: {err:.3e}")
        assert err <= MFCC_DB_TOL
    # librosa on the whole batch clamps the quiet item against the loud one's peak: different.
    whole = librosa.feature.mfcc(y=batch.astype(np.float64), sr=sr, pad_mode="reflect", **kw)
    assert np.abs(whole[0] - ours[0]).max() <= MFCC_DB_TOL
    assert np.abs(whole[1] - ours[1]).max() > 1.0
    # nnAudio clamps per item too.
    with torch.no_grad():
        nn = _nn(NNMFCC, sr=sr, **kw)(torch.from_numpy(batch)).numpy()
    assert np.abs(nn - ours).max() <= MFCC_DB_TOL


@pytest.mark.parametrize("n_fft", [256, 512])
def test_phase_at_branch_cut_is_plus_pi(n_fft):
    # x[n] = -(-1)^n: the Nyquist bin is -sum(w) + 0i, exactly on the negative real axis;
    # a negative constant puts the DC bin there too. Rounding makes nnAudio return +-pi.
    n = 4 * n_fft
    alt = -((-1.0) ** np.arange(n)).astype(np.float32)
    const = -0.5 * np.ones(n, dtype=np.float32)
    layer = STFT(n_fft=n_fft, hop_length=n_fft // 4, output_format="Phase", verbose=False)
    mag_layer = STFT(n_fft=n_fft, hop_length=n_fft // 4, output_format="Magnitude", verbose=False)
    for y, k in ((alt, n_fft // 2), (const, 0)):
        ph = run(layer, y)
        mag = run(mag_layer, y)
        ref = np.angle(librosa.stft(y.astype(np.float64), n_fft=n_fft, hop_length=n_fft // 4,
                                    pad_mode="reflect"))
        assert mag[k].min() > 0.1 * mag.max()
        assert np.all(ph[k] > np.pi - 1e-4) and np.all(ph[k] <= np.pi + 1e-4), ph[k]
        assert np.all(np.abs(wrap(ph[k] - ref[k])) < 1e-4)
    # And everywhere the output range is (-pi + 1e-4, pi + 1e-4].
    ph = run(layer, _sig("noise", 16000, 0.5))
    assert ph.min() > -np.pi + 1e-4 and ph.max() <= np.pi + 1e-4
