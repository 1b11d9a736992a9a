"""TorchScript (script / trace / save+load) and ONNX (dynamo and legacy exporters, run in
onnxruntime CPU) give the eager outputs; trainable kernels receive gradients."""
import io
import warnings

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from nnaudio_export.layers import MFCC, STFT, MelSpectrogram

from nnaudio_export.signals import clip

SR = 16000
L = 8000  # 0.5 s
JIT_TOL = 1e-6
ONNX_TOL = 1e-5
FORBIDDEN_OPS = {"STFT", "DFT", "FFT", "Rfft", "Irfft", "IRFFT", "RFFT"}


def _audio():
    return torch.from_numpy(np.stack([clip("speech", SR, L / SR), clip("noise", SR, L / SR)]))


def _make(name):
    common = dict(num_samples=L, verbose=False)
    if name.startswith("STFT-"):
        return STFT(n_fft=256, hop_length=64, output_format=name[5:], sr=SR, **common)
    if name == "STFTlog-Magnitude":
        return STFT(n_fft=256, hop_length=64, freq_bins=64, freq_scale="log", fmin=60, fmax=7000,
                    sr=SR, output_format="Magnitude", **common)
    if name == "Mel":
        return MelSpectrogram(sr=SR, n_fft=256, hop_length=64, n_mels=32, **common)
    if name == "MFCC":
        return MFCC(sr=SR, n_mfcc=13, n_fft=256, hop_length=64, n_mels=32, **common)
    if name == "STFTx-Complex":  # precision 'extended': the float64 factorised stages must export too
        return STFT(n_fft=256, hop_length=64, sr=SR, precision="extended", **common)
    if name == "Melx":
        return MelSpectrogram(sr=SR, n_fft=256, hop_length=64, n_mels=32, precision="extended", **common)
    raise KeyError(name)


LAYERS = ["STFT-Complex", "STFT-Magnitude", "STFT-Phase", "STFTlog-Magnitude", "Mel", "MFCC",
          "STFTx-Complex", "Melx"]


def _phase_mag(layer, x):
    """Eager magnitude of the same STFT, to mask/weight phase comparisons."""
    m = STFT(n_fft=layer.n_fft, hop_length=layer.hop_length, output_format="Magnitude",
             sr=layer.sr, verbose=False)
    with torch.no_grad():
        return m(x).numpy()


def assert_close(name, got, want, tol, mag=None, what=""):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    if name == "STFT-Phase":
        mask = mag > 1e-3 * mag.max()
        d = np.abs((got - want + np.pi) % (2 * np.pi) - np.pi)[mask]
        weighted = float((d * mag[mask]).max() / mag.max())
        print(f"[max-err] {what} {name}: phase {d.max():.3e} rad, magnitude-weighted {weighted:.3e}")
        assert weighted <= tol and d.max() <= 1e-3
        assert got.min() > -np.pi + 1e-4 - 1e-6 and got.max() <= np.pi + 1e-4 + 1e-6
        return
    err = float(np.abs(got - want).max() / np.abs(want).max())
    print(f"[max-err] {what} {name}: {err:.3e} of peak")
    assert err <= tol, f"{what} {name}: {err:.3e} > {tol:.0e} of peak"


@pytest.mark.parametrize("name", LAYERS)
def test_torchscript_script_trace_and_save_load(name):
    layer = _make(name).eval()
    x = _audio()
    with torch.no_grad():
        eager = layer(x).numpy()
        mag = _phase_mag(layer, x) if name == "STFT-Phase" else None
        scripted = torch.jit.script(layer)
        assert_close(name, scripted(x).numpy(), eager, JIT_TOL, mag, "script")
        buf = io.BytesIO()
        torch.jit.save(scripted, buf)
        buf.seek(0)
        loaded = torch.jit.load(buf)
        assert_close(name, loaded(x).numpy(), eager, JIT_TOL, mag, "script save/load")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            traced = torch.jit.trace(layer, (x,))
        assert_close(name, traced(x).numpy(), eager, JIT_TOL, mag, "trace")
    # The scripted module keeps the length check.
    with pytest.raises(Exception, match="expected"):
        scripted(x[:, : L - 1])


def _onnx_export(layer, x, path, dynamo: bool, **names) -> str:
    """``layer`` exported with the dynamo exporter or the legacy one at opset 17."""
    kw = dict(dynamo=True, external_data=False) if dynamo else dict(dynamo=False, opset_version=17)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(layer, (x,), str(path), **names, **kw)
    return str(path)


def _onnx_run(layer, x, path, dynamo: bool) -> np.ndarray:
    """Export ``layer`` and run it on ``x`` in ONNX Runtime (CPU)."""
    sess = onnxruntime.InferenceSession(_onnx_export(layer, x, path, dynamo),
                                        providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    return out


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "legacy-opset17"])
@pytest.mark.parametrize("name", LAYERS)
def test_onnx_export_runs_in_onnxruntime(name, dynamo, tmp_path):
    layer = _make(name).eval()
    x = _audio()
    with torch.no_grad():
        eager = layer(x).numpy()
    mag = _phase_mag(layer, x) if name == "STFT-Phase" else None
    path = _onnx_export(layer, x, tmp_path / f"{name}.onnx", dynamo,
                        input_names=["audio"], output_names=["features"])
    model = onnx.load(path)
    onnx.checker.check_model(model)
    ops = {node.op_type for node in model.graph.node}
    for fn in model.functions:
        ops |= {node.op_type for node in fn.node}
    assert not ops & FORBIDDEN_OPS, ops
    sess = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    assert_close(name, out, eager, ONNX_TOL, mag, "onnx-dynamo" if dynamo else "onnx-legacy")


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "legacy-opset17"])
def test_onnx_phase_at_branch_cut(dynamo, tmp_path):
    """The Nyquist bin of -(-1)^n lies on the negative real axis: ONNX Runtime gives ~+pi too."""
    layer = _make("STFT-Phase").eval()
    alt = -((-1.0) ** np.arange(L)).astype(np.float32)
    x = torch.from_numpy(np.stack([alt, -0.5 * np.ones(L, np.float32)]))
    out = _onnx_run(layer, x, tmp_path / "phase.onnx", dynamo)
    nyq, dc = out[0, layer.n_fft // 2], out[1, 0]
    for v in (nyq, dc):
        assert np.all(v > np.pi - 1e-4) and np.all(v <= np.pi + 1e-4), v
    with torch.no_grad():
        eager = layer(x).numpy()
    np.testing.assert_allclose(out[0, layer.n_fft // 2], eager[0, layer.n_fft // 2], atol=1e-5)
    np.testing.assert_allclose(out[1, 0], eager[1, 0], atol=1e-5)


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "legacy-opset17"])
def test_onnx_phase_of_exact_silence_is_zero(dynamo, tmp_path):
    """Digital silence gives 0 + 0i bins; eager (atan2(0, 0) = 0) and every runtime must give
    0, not NaN (audio often has exact zeros: leading silence, gated recordings)."""
    layer = _make("STFT-Phase").eval()
    x = torch.zeros(2, L)
    x[1, L // 2:] = torch.from_numpy(clip("noise", SR, L / SR)[: L - L // 2])
    out = _onnx_run(layer, x, tmp_path / "phase0.onnx", dynamo)
    with torch.no_grad():
        eager = layer(x).numpy()
    assert np.all(eager[0] == 0.0)
    n_nan = int(np.isnan(out).sum())
    assert n_nan == 0, f"{n_nan} NaN phases where the spectrum is exactly 0 + 0i"
    np.testing.assert_allclose(out[0], 0.0, atol=0)


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "legacy-opset17"])
def test_onnx_keeps_the_trainable_magnitude_epsilon(dynamo, tmp_path):
    """nnAudio's trainable Magnitude is sqrt(re^2 + im^2 + 1e-8): 1e-4 on silent bins. The
    dynamo exporter's rewriter drops an Add of a constant within 1e-8 of zero; ours is written
    so that it cannot (exact, bit for bit the same as eager)."""
    from nnAudio.features import STFT as NNAudioSTFT

    theirs = NNAudioSTFT(n_fft=256, hop_length=64, trainable=True, output_format="Magnitude",
                         verbose=False)
    layer = STFT(n_fft=256, hop_length=64, trainable=True, output_format="Magnitude").eval()
    x = torch.zeros(2, L)
    x[1, L // 2:] = torch.from_numpy(clip("noise", SR, L / SR)[: L - L // 2])
    out = _onnx_run(layer, x, tmp_path / "mag_eps.onnx", dynamo)
    with torch.no_grad():
        eager = layer(x).numpy()
        ref = theirs(x).numpy()
    # Silent item: exactly nnAudio's sqrt(0 + 1e-8) in float32, in eager and in ONNX Runtime.
    np.testing.assert_array_equal(eager[0], ref[0])
    assert float(ref[0].min()) > 9.9e-5
    np.testing.assert_allclose(out, eager, rtol=0, atol=1e-6 * float(np.abs(eager).max()))
    # ...and not 0 in ONNX Runtime (the dropped constant): equal up to 2 float32 ulps.
    np.testing.assert_allclose(out[0], eager[0], rtol=2 * np.finfo(np.float32).eps, atol=0)


# --------------------------------------------------------------------------- training

def _check_grad(p, what):
    assert isinstance(p, torch.nn.Parameter) and p.requires_grad, what
    assert p.grad is not None, what
    g = p.grad
    assert torch.isfinite(g).all(), what
    assert g.abs().max() > 0, what


@pytest.mark.parametrize("fmt", ["Magnitude", "Complex", "Phase"])
def test_stft_trainable_kernel_gets_gradient(fmt):
    layer = STFT(n_fft=256, hop_length=64, trainable=True, output_format=fmt, verbose=False)
    x = _audio()
    # Include an all-zero item: the magnitude must still have a finite gradient there.
    x = torch.cat([x, torch.zeros(1, L)])
    out = layer(x)
    loss = out.pow(2).mean() if fmt != "Phase" else torch.cos(out).mean()
    loss.backward()
    params = dict(layer.named_parameters())
    assert params, "trainable STFT has no parameters"
    for n, p in params.items():
        _check_grad(p, f"STFT {fmt} {n}")


def test_mel_trainable_mel_and_stft_get_gradients():
    x = _audio()
    layer = MelSpectrogram(sr=SR, n_fft=256, hop_length=64, n_mels=32, trainable_mel=True,
                           trainable_STFT=True, verbose=False)
    torch.log(layer(x) + 1e-6).mean().backward()
    names = dict(layer.named_parameters())
    assert "mel_basis" in names and "stft.kernel" in names, list(names)
    for n, p in names.items():
        _check_grad(p, f"Mel {n}")
    only_mel = MelSpectrogram(sr=SR, n_fft=256, hop_length=64, n_mels=32, trainable_mel=True,
                              verbose=False)
    assert list(dict(only_mel.named_parameters())) == ["mel_basis"]
    only_mel(x).mean().backward()
    _check_grad(only_mel.mel_basis, "Mel trainable_mel only")
    frozen = MelSpectrogram(sr=SR, n_fft=256, hop_length=64, n_mels=32, verbose=False)
    assert not list(frozen.parameters())


def test_mfcc_trainable_through_mel():
    layer = MFCC(sr=SR, n_mfcc=13, n_fft=256, hop_length=64, n_mels=32, trainable_mel=True,
                 trainable_STFT=True, verbose=False)
    layer(_audio()).pow(2).mean().backward()
    for n, p in layer.named_parameters():
        _check_grad(p, f"MFCC {n}")


def test_trainable_layer_scripts():
    layer = STFT(n_fft=256, hop_length=64, trainable=True, output_format="Magnitude", verbose=False)
    x = _audio()
    scripted = torch.jit.script(layer)
    with torch.no_grad():
        assert_close("STFT-Magnitude", scripted(x).numpy(), layer(x).numpy(), JIT_TOL, what="script trainable")
