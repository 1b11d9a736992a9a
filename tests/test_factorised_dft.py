"""The factorised DFT (polyphase Cooley-Tukey in two stages): its split rule, its float64
kernels against numpy's FFT, the float32 layer against numpy's float64 FFT (no worse than the
direct conv it replaces, both measured here), when it is chosen, and its exported graphs."""
import json

import numpy as np
import onnx
import pytest
import torch

import nnaudio_export as nx
from nnaudio_export.kernels.factorised_dft import (dft_split, direct_macs, factorised_dft_apply,
                                                   factorised_dft_kernels, factorised_macs, grid_rows,
                                                   radix_stage2_kernels, stage1_frame_matrix,
                                                   stage1_remainder_columns, stage2_radix)
from nnaudio_export.kernels.kaldi import kaldi_dft_parts, kaldi_fbank_kernels
from nnaudio_export.kernels.windows import get_window
from nnaudio_export.layers import STFT, FactorisedDFT, FrameConv, KaldiSTFT, SplitFrameConv
from nnaudio_export.signals import clip

SR = 16000


def numpy_frames_rfft(x, n_fft, hop, window, bins):
    """[Re; -Im] of numpy's float64 rfft of every frame: the ``[cos; sin]`` correlation."""
    frames = 1 + (len(x) - n_fft) // hop
    idx = np.arange(frames)[:, None] * hop + np.arange(n_fft)[None, :]
    spec = np.fft.rfft(x[idx] * window, axis=1)[:, :bins].T
    return np.concatenate([spec.real, -spec.imag])


def test_split_rule():
    assert dft_split(400, 160) == (20, 20)            # whisper: gcd 80
    assert dft_split(512, 160) == (32, 16)            # kaldi: gcd 32
    assert dft_split(2048, 512) == (64, 32)
    assert dft_split(1024, 256) == (32, 32)
    assert dft_split(400, 101) is None                # gcd 1: no polyphase split
    assert dft_split(16, 4) is None                   # too small to save half
    for n_fft, hop in ((400, 160), (512, 160), (2048, 512), (1024, 256)):
        n1, n2 = dft_split(n_fft, hop)
        assert n1 * n2 == n_fft and hop % n1 == 0
        assert factorised_macs(n_fft, n1, n_fft // 2 + 1) <= 0.5 * direct_macs(n_fft // 2 + 1, n_fft)
    assert factorised_macs(400, 20, 201) == 27280 and direct_macs(201, 400) == 160800
    # stage 2 split into 8-point DFTs from N1 = 64 on (n_fft 2048): 4 N1 (U + V) A, not 4 (B2 + BH) N1 A
    assert stage2_radix(64) == (8, 8) and stage2_radix(32) is None and stage2_radix(20) is None
    # V even (the second step one matrix for every c_a): 128 -> 8 x 16; 81 (odd only) stays dense
    assert stage2_radix(128) == (8, 16) and stage2_radix(72) == (6, 12) and stage2_radix(81) is None
    with pytest.raises(ValueError, match="even V"):
        radix_stage2_kernels(20, 4, 5)
    assert factorised_macs(2048, 64, 1025) == 139264
    assert factorised_macs(2048, 64, 1025, split_stage2=False) == 352512
    # stage-1 sums never longer than stage 2's (float32 rounding, see dft_split)
    assert dft_split(400, 160, bins=201) != (16, 25) and factorised_macs(400, 16, 201) < 27280


def only_bin_gathers(model, bins):
    """No Gather framing: every Gather of the graph picks at most ``bins`` whole rows by a
    constant 1-D index (the factorised stages' bins out of their grid, or the bins of one
    band of a banded filterbank, read straight from the grid)."""
    inits = {i.name: i for i in model.graph.initializer}
    consts = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant"}
    for node in model.graph.node:
        if node.op_type != "Gather":
            continue
        index = inits.get(node.input[1])
        dims = list(index.dims) if index is not None else list(consts[node.input[1]].attribute[0].t.dims)
        assert len(dims) == 1 and 1 <= dims[0] <= bins, (node.name, dims)
    return True


@pytest.mark.parametrize("n_fft,hop,bins", [(400, 160, 201), (512, 160, 257), (2048, 512, 1025),
                                            (400, 160, 37), (2048, 512, 300), (8192, 2048, 4097)])
def test_float64_stages_are_numpy_rfft(n_fft, hop, bins):
    x = np.random.default_rng(n_fft).standard_normal(max(6000, 3 * n_fft))
    window = get_window("hann", n_fft)
    got = factorised_dft_apply(x, window, hop, dft_split(n_fft, hop)[0], bins)
    want = numpy_frames_rfft(x, n_fft, hop, window, bins)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-12 * np.abs(want).max()


def rel_error_80db(got, want):
    """max |got - want| / |want| over bins within 80 dB of the peak (magnitudes)."""
    mask = want >= want.max() * 1e-4
    return float((np.abs(got - want)[mask] / want[mask]).max())


@pytest.mark.parametrize("target", ["cpu", "cuda"])
@pytest.mark.parametrize("n_fft,hop", [(400, 160), (2048, 512)])
def test_float32_layer_vs_numpy_float64_fft(n_fft, hop, target):
    """Against numpy's float64 FFT on tones (where float32 rounding is at its worst): the
    factorised stages, in either layout, are no further than the direct float32 conv, which
    is measured here."""
    x = clip("tones", SR, 1.0)
    xp = np.pad(x.astype(np.float64), n_fft // 2, mode="reflect")
    spec = numpy_frames_rfft(xp, n_fft, hop, get_window("hann", n_fft), n_fft // 2 + 1)
    want = np.hypot(spec[: n_fft // 2 + 1], spec[n_fft // 2 + 1:])
    fast = STFT(n_fft=n_fft, hop_length=hop, sr=SR, output_format="Magnitude", target=target)
    direct = STFT(n_fft=n_fft, hop_length=hop, sr=SR, output_format="Magnitude")
    direct.conv = FrameConv()
    assert isinstance(fast.conv, FactorisedDFT) and fast.conv.target == target
    with torch.no_grad():
        xt = torch.from_numpy(x)[None]
        e_fast = rel_error_80db(fast(xt)[0].double().numpy(), want)
        e_direct = rel_error_80db(direct(xt)[0].double().numpy(), want)
    print(f"[max-err] n_fft={n_fft}, {target} layout: factorised {e_fast:.2e}, direct conv {e_direct:.2e} "
          "(relative, 80 dB)")
    assert e_fast <= e_direct and e_fast <= 5e-4


@pytest.mark.parametrize("target", ["cpu", "cuda"])
@pytest.mark.parametrize("n_fft,hop,bins", [(400, 160, 201), (512, 160, 257), (2048, 512, 1025),
                                            (1024, 256, 513), (400, 160, 37), (2048, 512, 300),
                                            (8192, 2048, 4097)])
def test_layer_in_float64_is_numpy_rfft(n_fft, hop, bins, target):
    """The torch layer in float64, either layout, is numpy's FFT to 1e-12, for lengths that do
    and do not fill the last block. 'cpu': stage 1 a grouped conv, stage 2 split from
    ``N1 = 64`` on (8 x 8 at n_fft 2048, 8 x 16 at 8192: the phases reordered, no transpose
    between the steps); 'cuda': stage 1 one MatMul of stacked signal blocks (zero taps where
    ``N2`` is not a multiple of ``hop / N1``), stage 2 dense."""
    window = get_window("hann", n_fft)
    n1 = dft_split(n_fft, hop)[0]
    layer = FactorisedDFT(window, hop, bins, n1, dtype=torch.float64, target=target)
    if target == "cuda":
        assert layer.u == 0 and layer.blocks == -(-(n_fft // n1) // (hop // n1))
    else:
        assert (layer.u, layer.v) == (stage2_radix(n1) or (0, 0)) and layer.blocks == 0
    for length in (3 * n_fft, 3 * n_fft + hop // 2 + 3):
        x = np.random.default_rng(length).standard_normal(length)
        with torch.no_grad():
            xt = torch.from_numpy(x)[None, None]
            got = layer(xt, torch.zeros(0), hop)[0].numpy()
            power = layer.squared(xt, torch.zeros(0), hop)[0].numpy()
        want = numpy_frames_rfft(x, n_fft, hop, window, bins)
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= 1e-12 * np.abs(want).max()
        want_power = want[:bins] ** 2 + want[bins:] ** 2
        assert np.abs(power - want_power).max() <= 1e-12 * want_power.max()


@pytest.mark.parametrize("n_fft,hop,bins", [(2048, 512, 1025), (8192, 2048, 4097)])
def test_cuda_layout_with_split_stage2_is_numpy_rfft(monkeypatch, n_fft, hop, bins):
    """The 'cuda' layout keeps stage 2 dense by default (SPLIT_STAGE2_TARGETS; the split is
    untimed on a GPU), but with the split allowed (as scripts/gpu_probe_split.py does) its
    stacked blocks follow the split's phase order: float64 is numpy's FFT to 1e-12."""
    from nnaudio_export.layers import factorised_dft as layer_module
    window = get_window("hann", n_fft)
    n1 = dft_split(n_fft, hop)[0]
    assert FactorisedDFT(window, hop, bins, n1, dtype=torch.float64, target="cuda").u == 0
    monkeypatch.setattr(layer_module, "SPLIT_STAGE2_TARGETS", ("cpu", "cuda"))
    layer = FactorisedDFT(window, hop, bins, n1, dtype=torch.float64, target="cuda")
    assert (layer.u, layer.v) == stage2_radix(n1) and layer.blocks > 0
    x = np.random.default_rng(n_fft).standard_normal(3 * n_fft + hop // 2 + 3)
    with torch.no_grad():
        xt = torch.from_numpy(x)[None, None]
        got = layer(xt, torch.zeros(0), hop)[0].numpy()
        power = layer.squared(xt, torch.zeros(0), hop)[0].numpy()
    want = numpy_frames_rfft(x, n_fft, hop, window, bins)
    assert np.abs(got - want).max() <= 1e-12 * np.abs(want).max()
    want_power = want[:bins] ** 2 + want[bins:] ** 2
    assert np.abs(power - want_power).max() <= 1e-12 * want_power.max()


def test_stage1_frame_matrix_pads_the_taps_with_zeros():
    stage1 = np.arange(2 * 3 * 5, dtype=np.float64).reshape(6, 1, 5)       # N1 = 2, 2A = 3, N2 = 5
    m = stage1_frame_matrix(stage1, 2, 2)                                 # step 2: K = 3 blocks
    assert m.shape == (2, 3, 6)
    assert np.array_equal(m[:, :, :5], stage1.reshape(2, 3, 5)) and not m[:, :, 5:].any()


def test_chosen_only_for_frozen_plain_dft():
    fast = STFT(n_fft=400, hop_length=160, sr=SR)
    assert isinstance(fast.conv, FactorisedDFT) and "n1=20, n2=20" in repr(fast)
    assert "macs_per_frame=27280 (direct conv 160800)" in repr(fast)
    assert isinstance(STFT(n_fft=400, hop_length=160, sr=SR, trainable=True).conv, FrameConv)
    assert isinstance(STFT(n_fft=400, hop_length=160, sr=SR, freq_scale="linear",
                           fmin=50, fmax=4000).conv, FrameConv)
    assert isinstance(STFT(n_fft=400, hop_length=101, sr=SR).conv, FrameConv)
    assert isinstance(STFT(n_fft=400, hop_length=160, sr=SR, dtype=torch.float64).conv, FrameConv)
    # 'extended': the same stages in float64 (stage 1 a MatMul: ONNX Runtime's CPU Conv is
    # float32 only); no split of (n_fft, hop), or not a plain DFT: the error-free split conv
    ext = STFT(n_fft=400, hop_length=160, sr=SR, precision="extended").conv
    assert isinstance(ext, FactorisedDFT) and ext.precision == "extended" and ext.blocks == 3
    assert ext.stage1_matrix.dtype == ext.stage2.dtype == torch.float64
    assert isinstance(STFT(n_fft=400, hop_length=101, sr=SR, precision="extended").conv, SplitFrameConv)
    assert isinstance(STFT(n_fft=400, hop_length=160, sr=SR, freq_scale="linear", fmin=50, fmax=4000,
                           precision="extended").conv, SplitFrameConv)


@pytest.fixture(scope="module", params=["whisper_80", "kaldi_fbank_80_lhotse"])
def extended_bundle(tmp_path_factory, request):
    fe = nx.presets.load(request.param, seconds=1.0, precision="extended").eval()
    formats = ("onnx", "torchscript") + (("pt2",) if request.param == "whisper_80" else ())   # AOTInductor in float64
    return fe, nx.export(fe, tmp_path_factory.mktemp("ext") / request.param, formats=formats, verify=False), formats


def test_extended_bundle_runs_float64_stages(extended_bundle):
    """Precision 'extended' on a plain DFT bank: the factorised stages in float64 between two
    Casts (whisper_80; kaldi_fbank_80_lhotse also with its pre-emphasis and rank-2 remainder
    in float64), no Conv left (ONNX Runtime's CPU provider has none in float64), and each
    backend within the 'extended' bound of the float64 reference (nx.verify: 80 dB)."""
    fe, bundle, formats = extended_bundle
    model = onnx.load(str(bundle / "model.onnx"))
    ops = [n.op_type for n in model.graph.node]
    assert "Conv" not in ops and ops.count("Cast") >= 2
    double = onnx.TensorProto.DOUBLE
    inits = {i.name: i.data_type for i in model.graph.initializer}
    matmuls = [inits.get(n.input[0]) for n in model.graph.node if n.op_type == "MatMul" and n.input[0] in inits]
    assert matmuls.count(double) >= 2                    # stage 1 and stage 2
    (stage,) = json.loads((bundle / "manifest.json").read_text())["fourier_stages"]
    assert (stage["method"], stage["precision"], stage["stage1"]) == ("factorised", "extended", "matmul")
    # ONNX Runtime's graph optimizer merges two transposes with only a Reshape between them
    # into one 4-D permutation (3-4x slower here): in the graph it runs, every Transpose
    # swaps the last two axes only (a Gather of the phases, or with Kaldi's pre-emphasis the
    # cast, sits between stage 1's two transposes: FactorisedDFT.phase_blocks)
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.optimized_model_filepath = str(bundle.parent / f"{bundle.name}-ort-optimized.onnx")
    options.log_severity_level = 3
    onnxruntime.InferenceSession(str(bundle / "model.onnx"), options, providers=["CPUExecutionProvider"])
    perms = [list(a.ints) for n in onnx.load(options.optimized_model_filepath).graph.node
             if n.op_type == "Transpose" for a in n.attribute if a.name == "perm"]
    assert perms and all(p[:-2] == list(range(len(p) - 2)) for p in perms), perms
    backends = ("onnxruntime", "torchscript") + (("pt2",) if "pt2" in formats else ())
    report = nx.verify(bundle, devices=("cpu",), backends=backends)
    assert report.ok, report.table()


@pytest.mark.parametrize("num_samples", [16000, 16013])
def test_frame_count_and_tail_match_the_direct_conv(num_samples):
    """Lengths that are not a multiple of N1 (the samples past the last frame are dropped,
    never padded into an extra frame), float64 layer as the reference, batch of 3."""
    x = torch.from_numpy(np.stack([clip(s, SR, 1.1)[:num_samples] for s in ("speech", "noise", "tones")]))
    for center in (True, False):
        fast = STFT(n_fft=400, hop_length=160, sr=SR, center=center)
        ref = STFT(n_fft=400, hop_length=160, sr=SR, center=center, dtype=torch.float64)
        with torch.no_grad():
            got, want = fast(x), ref(x.double())
        assert got.shape == want.shape
        assert float((got.double() - want).abs().max()) <= 2e-6 * float(want.abs().max())


def test_mel_bundle_graph_and_backends(mel_bundle):
    """mel_128 (precision 'single') ships the factorised stages: standard ops only (one
    grouped 1-D conv, no DFT/STFT op, no Gather framing, no 2-D conv: its one Gather picks
    the bins out of the stage-2 grid), and every backend
    matches eager and the float64 reference (nx.verify)."""
    model = onnx.load(str(mel_bundle / "model.onnx"))
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"DFT", "STFT", "GatherElements", "Unfold"}, ops
    assert only_bin_gathers(model, 1025)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) == 1
    groups = [a.i for a in convs[0].attribute if a.name == "group"]
    assert groups == [dft_split(2048, 512)[0]]
    inits = {i.name: i for i in model.graph.initializer}
    assert len(inits[convs[0].input[1]].dims) == 3                          # 1-D conv
    (stage,) = json.loads((mel_bundle / "manifest.json").read_text())["fourier_stages"]
    assert (stage["method"], stage["n1"], stage["n2"], stage["macs_per_frame"]) == ("factorised", 64, 32, 139264)
    assert stage["stage2_split"] == [8, 8]
    split = sorted(list(inits[n.input[0]].dims) for n in model.graph.node
                   if n.op_type == "MatMul" and n.input[0] in inits and len(inits[n.input[0]].dims) == 3)
    assert split == [[8, 16, 16]]                                           # stage 2 as 8 x 8: per l,
    dense = [list(inits[n.input[0]].dims) for n in model.graph.node
             if n.op_type == "MatMul" and n.input[0] in inits and list(inits[n.input[0]].dims) == [16, 16]]
    assert dense == [[16, 16]]                                              # then one V-point DFT
    # no transpose between the steps: only the polyphase split and its block swap, before the conv
    order = [n.op_type for n in model.graph.node]
    transposes = [i for i, op in enumerate(order) if op == "Transpose"]
    assert len(transposes) == 2 and max(transposes) < order.index("Conv")
    assert stage["direct_macs_per_frame"] == 4198400
    (bank,) = json.loads((mel_bundle / "manifest.json").read_text())["filterbank_stages"]
    gathers = [n for n in model.graph.node if n.op_type == "Gather"]
    assert len(bank["bands"]) == len(gathers) == 7 and bank["macs_per_frame"] == 16667
    report = nx.verify(mel_bundle, devices=("cpu",), backends=("onnxruntime", "torchscript", "pt2"))
    assert report.ok, report.table()


def test_kaldi_parts_rebuild_the_folded_kernel():
    """Kaldi's folded kernel = DFT of the windowed pre-emphasised frame + a rank <= 2 rest."""
    for window, rank in (("povey", 1), ("hamming", 2)):
        parts = kaldi_dft_parts(400, window)
        kernel, n_fft = kaldi_fbank_kernels(400, window)
        c, w = parts["preemphasis"], parts["window"][:400]
        k = np.arange(n_fft // 2 + 1)
        cycles = (np.outer(k, np.arange(400)) % n_fft) / n_fft
        dft = np.concatenate([np.cos(2 * np.pi * cycles), np.sin(2 * np.pi * cycles)])
        pre = np.eye(400, 401, k=1) - c * np.eye(400, 401)
        rebuilt = dft @ (w[:, None] * pre) + parts["correction_bins"] @ parts["correction_taps"]
        assert parts["correction_taps"].shape == (rank, 401)
        assert np.abs(rebuilt - np.pad(kernel, [(0, 0), (1, 0)])).max() <= 1e-12 * np.abs(kernel).max()


def test_kaldi_remainder_carried_by_stage1_lands_on_every_gathered_bin():
    """On a MatMul stage 1 Kaldi's rank <= 2 remainder rides as extra input rows: stage 2 maps
    its columns onto the remainder at every bin the output gathers (float64, 1e-12)."""
    for window in ("povey", "hamming"):
        parts = kaldi_dft_parts(400, window)
        n_fft = len(parts["window"])
        n1 = dft_split(n_fft, 160, n_fft // 2 + 1, 400)[0]
        dft = factorised_dft_kernels(parts["window"], n1, n_fft // 2 + 1)
        a_count = grid_rows(n_fft, n1, n_fft // 2 + 1)[0]
        cols = stage1_remainder_columns(dft["stage2"], parts["correction_bins"], dft["index"], a_count)
        r = parts["correction_bins"].shape[1]
        assert cols.shape == (n1, 2 * a_count, r)
        y = dft["stage2"] @ cols.reshape(2 * n1, a_count * r)      # rows (phase, P|Q), cols (a, r)
        y = y.reshape(2, -1, a_count, r).reshape(2, -1, r)        # (C|S, grid row g' A + a, r)
        want = parts["correction_bins"].reshape(2, -1, r)
        got = y[:, dft["index"]]
        assert np.abs(got - want).max() <= 1e-12 * np.abs(want).max()


@pytest.mark.parametrize("remove_dc_offset,preemphasis", [(True, 0.97), (False, 0.97), (True, 0.0), (False, 0.0)])
@pytest.mark.parametrize("precision,target", [("extended", "cpu"), ("single", "cuda")])
def test_kaldi_on_a_matmul_stage1_with_and_without_a_remainder(remove_dc_offset, preemphasis, precision, target):
    """The MatMul stage 1 ('extended', the 'cuda' layout) with a remainder of rank 2, 1 or 0
    (none: no row rides on stage 1) against the float64 build of the same Kaldi map."""
    args = dict(win_length=400, hop_length=160, window="hamming", remove_dc_offset=remove_dc_offset,
                preemphasis=preemphasis)
    layer = KaldiSTFT(16000, precision=precision, target=target, **args)
    ref = KaldiSTFT(16000, dtype=torch.float64, **args)
    assert layer.conv.blocks > 0 and layer.conv.folded == (layer.conv.rank > 0)
    x = torch.from_numpy(clip("speech", SR, 1.0))[None]
    with torch.no_grad():
        got, want = layer(x), ref(x.double())
    # 'extended': C and S rounded once to float32, then squared (the power): a few float32 roundings
    tol = 4 * float(np.finfo(np.float32).eps) if precision == "extended" else 2e-6
    assert float((got.double() - want).abs().max()) <= tol * float(want.abs().max())


@pytest.fixture(scope="module", params=["cpu", "cuda"])
def kaldi_single(tmp_path_factory, request):
    """kaldi_fbank_80 at 'single', laid out for each target (the 'cuda' graph runs on ORT's
    CPU provider here: the same arithmetic, the same reference)."""
    fe = nx.presets.load("kaldi_fbank_80", seconds=1.0, precision="single", target=request.param).eval()
    bundle = nx.export(fe, tmp_path_factory.mktemp("kaldi_single") / "b", formats=("onnx",), verify=False)
    return fe, nx.load(bundle, backend="onnxruntime"), onnx.load(str(bundle / "model.onnx"))


@pytest.mark.parametrize("signal", ["speech", "tones"])
def test_kaldi_single_vs_kaldi_native_fbank(kaldi_single, signal):
    """kaldi_fbank_80 at precision 'single' (factorised stages, eager and ONNX Runtime)
    against kaldi-native-fbank, the preset's tolerance (1e-3) within 80 dB."""
    from nnaudio_export.references import REFERENCES
    fe, ort, model = kaldi_single
    assert any(isinstance(m, FactorisedDFT) for m in fe.modules())
    assert not {n.op_type for n in model.graph.node} & {"DFT", "STFT"}
    assert only_bin_gathers(model, 257)
    x = clip(signal, SR, 1.0)[: fe.num_samples]
    want = REFERENCES["kaldi_fbank_80"](x)
    with torch.no_grad():
        eager = fe(torch.from_numpy(x[None]))[0].double().numpy()
    got = np.asarray(ort(x[None].astype(np.float32)), np.float64)[0]
    mask = (want.max() - want) * fe.db_per_unit <= 80
    for y in (eager, got):
        assert np.abs(y - want)[mask].max() <= 1e-3
