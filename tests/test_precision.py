"""precision='extended' against numpy's float64 FFT, and its edges: a windowed-DFT bank runs
the factorised stages in float64 (layers.factorised_dft); other banks (CQT, a kernel loaded
into an STFT) the error-free split conv (kernels.split): exact split, per-item and per-frame
scaling, batch independence, gradients, errors, export."""
import warnings

import numpy as np
import onnxruntime
import pytest
import torch

import nnaudio_export as nx
from nnaudio_export.kernels.fourier import fourier_kernels
from nnaudio_export.kernels.split import power_of_two_table, split_bits, split_kernel
from nnaudio_export.kernels.windows import get_window
from nnaudio_export.layers import STFT, FactorisedDFT, MelSpectrogram, SplitFrameConv
from nnaudio_export.spec import with_precision

from nnaudio_export.signals import clip

SR = 16000


def numpy_stft(x, n_fft, hop):
    """|X| of a centred, reflect-padded, periodic-Hann STFT with numpy's float64 rfft."""
    xp = np.pad(np.asarray(x, np.float64), n_fft // 2, mode="reflect")
    frames = 1 + (xp.shape[0] - n_fft) // hop
    idx = np.arange(frames)[:, None] * hop + np.arange(n_fft)[None, :]
    win = get_window("hann", n_fft)
    return np.abs(np.fft.rfft(xp[idx] * win, axis=1)).T


def rel_error_within(got, want, db):
    """max |got - want| / want over bins within ``db`` of the peak (magnitudes)."""
    mask = 20 * np.log10(np.maximum(want, 1e-300) / want.max()) >= -db
    return float((np.abs(got - want)[mask] / want[mask]).max())


def magnitude(layer, x):
    with torch.no_grad():
        return layer(torch.from_numpy(x)[None])[0].double().numpy()


def test_split_bits_keep_integer_sums_exact():
    assert split_bits(400) == (7, 8) and split_bits(1024) == (7, 7) and split_bits(2048) == (6, 7)
    for k in (16, 400, 512, 1024, 2048, 4096):
        a, b = split_bits(k)
        assert k * 2 ** (a + b) <= 2 ** 24 and b - a in (0, 1)
    with pytest.raises(ValueError, match="kernel_length"):
        split_bits(0)


def test_split_kernel_is_exact_in_float64():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 1, 300)) * 1.7
    m, c, lo = split_kernel(w, 8)
    assert np.all(m == np.round(m)) and np.abs(m).max() <= 2 ** 8
    assert np.log2(c) == np.round(np.log2(c))
    np.testing.assert_array_equal(m / c + lo, w)  # error-free
    assert np.abs(lo).max() <= 0.5 / c


def test_power_of_two_table_picks_the_smallest_covering_exponent():
    thresholds, scales = power_of_two_table(7)
    for peak in (1e-30, 3e-5, 0.25, 0.2500001, 0.5, 1.0, 1.5, 32768.0):
        s = scales[np.sum(peak > thresholds)]
        assert np.log2(s) == np.round(np.log2(s))
        assert peak * s <= 2 ** 7 and (peak * s > 2 ** 6 or peak < 2.0 ** -64)


def split_stft(n_fft, hop):
    """An 'extended' STFT whose bank goes through the error-free split conv (what a CQT bank,
    or a kernel given to ``load_kernel``, gets), split from the float64 kernel."""
    layer = STFT(n_fft=n_fft, hop_length=hop, output_format="Magnitude", sr=SR, precision="extended").eval()
    cos, sin, _ = fourier_kernels(n_fft, n_fft, n_fft // 2 + 1, 0.0, SR / 2, SR, "no", "hann")
    layer.conv = SplitFrameConv(np.concatenate([cos, sin])[:, None, :], framed=True)
    return layer


def test_exact_part_is_exact():
    """conv(k, kernel_int) of the split is bit-identical to the float64 integer sum."""
    conv = split_stft(400, 160).conv
    x = torch.from_numpy(clip("tones", SR, 1.0))[None, None]
    peak = x.abs().max()
    s = conv.scales[int((peak > conv.thresholds).sum())]
    k = torch.round(x * s)
    assert k.abs().max() <= 2 ** conv.input_bits
    y32 = torch.nn.functional.conv1d(k, conv.kernel_int, stride=160).double()
    y64 = torch.nn.functional.conv1d(k.double(), conv.kernel_int.double(), stride=160)
    assert torch.equal(y32, y64)


@pytest.mark.parametrize("n_fft,hop", [(400, 160), (1024, 320), (2048, 512)])
@pytest.mark.parametrize("signal", ["tones", "speech", "noise"])
def test_extended_matches_float64_fft_80db_below_the_peak(n_fft, hop, signal):
    def gen(sr, seconds):
        return clip(signal, sr, seconds)
    x = gen(SR, 1.0)
    want = numpy_stft(x, n_fft, hop)
    ext = magnitude(STFT(n_fft=n_fft, hop_length=hop, output_format="Magnitude", sr=SR,
                         precision="extended"), x)
    single = magnitude(STFT(n_fft=n_fft, hop_length=hop, output_format="Magnitude", sr=SR), x)
    split = magnitude(split_stft(n_fft, hop), x)
    e_ext, e_single = rel_error_within(ext, want, 80), rel_error_within(single, want, 80)
    e_split = rel_error_within(split, want, 80)
    print(f"[max-err] {signal} n_fft={n_fft}: extended {e_ext:.2e} (split conv {e_split:.2e}), "
          f"single {e_single:.2e} (relative, 80 dB)")
    # float64 stages, rounded once to float32: within a few float32 roundings of the value
    assert e_ext <= 8 * np.finfo(np.float32).eps
    assert e_split <= 1e-4
    if signal == "tones":  # where single precision is at its worst: the reason for 'extended'
        assert e_single > 10 * e_split > 10 * e_ext


@pytest.mark.parametrize("method", ["factorised", "split"])
def test_each_item_keeps_the_extended_accuracy(method):
    """A loud item, a quiet one (-120 dB) and a large-valued one (int16 scale): each keeps the
    extended accuracy (the split: each item scaled on its own), and batching does not change
    any item's result."""
    base = clip("tones", SR, 1.0)
    items = np.stack([base, 1e-6 * base, 32768.0 * base]).astype(np.float32)
    layer = split_stft(400, 160) if method == "split" else \
        STFT(n_fft=400, hop_length=160, output_format="Magnitude", sr=SR, precision="extended").eval()
    with torch.no_grad():
        batched = layer(torch.from_numpy(items))
        for i in range(3):
            alone = layer(torch.from_numpy(items[i: i + 1]))
            assert torch.equal(alone[0], batched[i])
            assert rel_error_within(alone[0].double().numpy(), numpy_stft(items[i], 400, 160), 80) <= 5e-5


@pytest.mark.parametrize("method", ["factorised", "split"])
def test_a_quiet_passage_keeps_the_extended_accuracy(method):
    """Frames of a passage 80 dB quieter than the clip's peak keep the extended accuracy
    against numpy's float64 FFT: float64 has the range, and the STFT's split works frame by
    frame (functional.split_frames_matmul; a scale per item left them at 1.5e-4, near
    'single')."""
    base = clip("tones", SR, 1.0)
    x = np.concatenate([base, 1e-4 * base]).astype(np.float32)
    want = numpy_stft(x, 400, 160)
    layer = split_stft(400, 160) if method == "split" else \
        STFT(n_fft=400, hop_length=160, output_format="Magnitude", sr=SR, precision="extended").eval()
    got = magnitude(layer, x)
    half = want.shape[1] // 2
    for frames in (slice(0, half - 5), slice(half + 5, None)):
        assert rel_error_within(got[:, frames], want[:, frames], 80) <= 1e-5


def test_silence_and_float64_input():
    layer = STFT(n_fft=400, hop_length=160, output_format="Magnitude", sr=SR, precision="extended").eval()
    with torch.no_grad():
        assert torch.count_nonzero(layer(torch.zeros(2, 8000))) == 0
        x = clip("tones", SR, 0.5)
        # float64 input runs the float64 stages with no rounding to float32 at the end
        got = layer.double()(torch.from_numpy(x).double()[None])[0]
        assert got.dtype == torch.float64
        assert rel_error_within(got.numpy(), numpy_stft(x, 400, 160), 80) <= 1e-10
        # the split conv: float64 input takes the plain conv (the split is for float32 rounding)
        split = split_stft(400, 160).double()
        plain = STFT(n_fft=400, hop_length=160, output_format="Magnitude", sr=SR).double()
        plain.load_kernel(plain.kernel.clone())   # the direct conv
        assert torch.equal(split(torch.from_numpy(x).double()[None]), plain(torch.from_numpy(x).double()[None]))


def test_gradient_reaches_the_input():
    x = torch.from_numpy(clip("speech", SR, 0.5))[None].requires_grad_(True)
    grads = []
    for precision in ("single", "extended"):
        mel = MelSpectrogram(sr=SR, n_fft=400, hop_length=160, n_mels=40, precision=precision)
        x.grad = None
        mel(x).log1p().sum().backward()
        grads.append(x.grad.clone())
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-6 * float(grads[0].abs().max()))


def test_bad_precision_and_trainable_kernels_are_refused():
    with pytest.raises(ValueError, match="precision must be one of"):
        STFT(n_fft=256, precision="double")
    with pytest.raises(ValueError, match="precision: 'extended'.*trainable=False"):
        STFT(n_fft=256, precision="extended", trainable=True)
    with pytest.raises(ValueError, match="precision"):
        MelSpectrogram(n_fft=256, precision="extended", trainable_STFT=True)
    no_transform = {"sample_rate": SR, "num_samples": SR, "stages": [{"type": "input"}]}
    with pytest.raises(ValueError, match="no stft or cqt or kaldi_stft stage"):
        with_precision(no_transform, "extended")
    # The CQT stages take it too since they apply their kernels through the frame-conv module.
    cqt = with_precision(nx.presets.get_spec("cqt1992v2_84"), "extended")
    assert nx.Frontend.from_spec(cqt).stages[1].layer.precision == "extended"
    with pytest.raises(ValueError, match="precision must be one of"):
        with_precision(nx.presets.get_spec("whisper_80"), "half")
    bad = nx.presets.get_spec("whisper_80")
    bad["stages"][0]["precision"] = "quad"
    with pytest.raises(ValueError, match="precision"):
        nx.Frontend.from_spec(bad)


def test_preset_precision_override():
    fe = nx.presets.load("whisper_80", seconds=1.0, precision="extended")
    assert fe.spec["stages"][1]["precision"] == "extended"
    assert nx.presets.get_spec("whisper_80")["stages"][0]["precision"] == "single"   # its own


def test_onnx_extended_matches_float64_fft(tmp_path):
    n = 16000
    layer = STFT(n_fft=1024, hop_length=320, output_format="Magnitude", sr=SR, num_samples=n,
                 precision="extended").eval()
    x = clip("tones", SR, 1.0)
    path = str(tmp_path / "stft.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(layer, (torch.from_numpy(x)[None],), path, dynamo=True, external_data=False,
                          input_names=["audio"], output_names=["features"])
    sess = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"audio": x[None]})[0][0].astype(np.float64)
    err = rel_error_within(got, numpy_stft(x, 1024, 320), 80)
    print(f"[max-err] ORT extended n_fft=1024 tones: {err:.2e} relative within 80 dB")
    assert err <= 5e-5
