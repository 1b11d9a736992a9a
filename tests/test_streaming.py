"""Streaming frontends (nnaudio_export.streaming): audio fed in random pieces (1 sample,
below one hop, not a multiple of the hop, seconds) gives, concatenated, the offline
frontend's output (same frame count, within 1e-6 x peak; log outputs within 80 dB of each
item's peak) for kaldi_fbank_80, kaldi_fbank_80_lhotse, mel_128, stft_2048, mfcc_20 (no
top_db) and a whisper-style log-mel (no clamp) at 16, 22.05 and 44.1 kHz in eager, and in
TorchScript and ONNX Runtime against the offline bundle of the same backend (each preset at
one rate, the rates rotated), .pt2 for three of them; the Kaldi presets' frames-ready counts
and values after every chunk match kaldi-native-fbank's OnlineFbank fed the same chunks;
stages that need the whole clip are refused naming the stage."""
import json
import warnings

import numpy as np
import pytest
import torch

import nnaudio_export as nx
from nnaudio_export.cli import main as cli_main
from nnaudio_export.signals import clip
from nnaudio_export.stream_runtime import eager_session, relative_error, stream_through

warnings.filterwarnings("ignore")
EXACT = 1e-6    # x peak


def whisper_style(sr=16000):
    """Whisper's log-mel without the per-item clamp (dynamic_range), which cannot stream.
    Above 22.05 kHz n_fft 1024 and a 10 ms hop (n_fft 400's bins, 110 Hz apart at 44.1 kHz,
    leave some of the 80 mel filters empty, which the spec refuses)."""
    spec = nx.presets.get_spec("whisper_80")
    spec["stages"] = [s for s in spec["stages"] if s["type"] != "dynamic_range"]
    spec.pop("length_policy", None)
    spec["sample_rate"] = sr
    if sr > 22050:
        stft = next(s for s in spec["stages"] if s["type"] == "stft")
        stft["n_fft"], stft["hop_length"] = 1024, sr // 100
    return spec


def nemo_style():
    """NeMo's log-mel (whole-signal pre-emphasis carried across chunks) without the per-item
    normalisation and frame padding, which cannot stream."""
    spec = nx.presets.get_spec("nemo_mel_80")
    spec["stages"] = [s for s in spec["stages"] if s["type"] not in ("normalize", "pad_to_multiple")]
    return spec


def preset_spec(name, sr=None):
    spec = nx.presets.get_spec(name)
    for st in spec["stages"]:
        if st["type"] == "db":
            st["top_db"] = None        # per-item top_db cannot stream
    if sr is not None:
        spec["sample_rate"] = sr
    return spec


def frontend(spec, seconds):
    spec = dict(spec, num_samples=int(round(seconds * spec["sample_rate"])))
    return nx.Frontend.from_spec(spec).eval()


def pieces(sr, hop, length, seed):
    """Random piece sizes: single samples, below a hop, odd multiples, a 1.2 s piece."""
    rng = np.random.default_rng(seed)
    sizes = [1] * 40 + list(rng.integers(1, hop, 6)) + [3 * hop + 7, int(1.2 * sr)]
    while sum(sizes) < length:
        sizes.append(int(rng.integers(1, 4 * hop)))
    return sizes


def signals(sr, seconds):
    return np.stack([clip(n, sr, seconds)[: int(round(seconds * sr))] for n in ("speech", "tones", "noise")])


# The list: every one streams at 16, 22.05 and 44.1 kHz in eager (chunk sizes vary).
LISTED = ("kaldi_fbank_80", "kaldi_fbank_80_lhotse", "mel_128", "stft_2048", "mfcc_20", "whisper_style")
RATES = (16000, 22050, 44100)
CHUNK_MS = (20.0, 25.0, 100.0, 50.0, 30.0, 40.0)
CASES = [(name, sr, CHUNK_MS[(i + j) % len(CHUNK_MS)])
         for i, name in enumerate(LISTED) for j, sr in enumerate(RATES)] + [("nemo_style", 16000, 20.0)]


def listed_spec(name, sr):
    return (whisper_style(sr) if name == "whisper_style" else
            nemo_style() if name == "nemo_style" else preset_spec(name, sr))


def hop_of(fe):
    return next(s for s in fe.spec["stages"] if s["type"] in ("stft", "kaldi_stft"))["hop_length"]


@pytest.mark.parametrize("name,sr,chunk_ms", CASES)
def test_streamed_frames_equal_offline(name, sr, chunk_ms):
    fe = frontend(listed_spec(name, sr), 1.3)
    x = signals(fe.sample_rate, 1.3)
    with torch.no_grad():
        want = fe(torch.from_numpy(x)).numpy()
    n = int(round(chunk_ms * fe.sample_rate / 1000))
    got = stream_through(eager_session(fe, n, batch=3), x, pieces(fe.sample_rate, hop_of(fe), x.shape[1], 7))
    assert got.shape == want.shape
    err = relative_error(got, want, fe.output_kind, fe.db_per_unit)
    assert err <= EXACT, f"{name} @ {fe.sample_rate:g} Hz, {n}-sample chunks: {err:.3g} x peak"


@pytest.mark.parametrize("name,tol", [("kaldi_fbank_80", 1e-3), ("kaldi_fbank_80_lhotse", 5e-4)])
def test_kaldi_frames_ready_after_every_chunk_match_online_fbank(name, tol):
    """Tolerances as tests/test_presets.py (kaldi-native-fbank computes in float32)."""
    import kaldi_native_fbank as knf
    spec = nx.presets.get_spec(name)
    fe = frontend(spec, 1.0)
    x = clip("speech", 16000, 1.0)[:16000]
    stages = {s["type"]: s for s in fe.spec["stages"]}
    scale = next(s.get("scale") or 1.0 for s in fe.spec["stages"] if s["type"] == "input")
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq, opts.frame_opts.dither = 16000, 0.0
    opts.frame_opts.snip_edges = stages["kaldi_stft"]["snip_edges"]
    opts.mel_opts.num_bins = 80
    opts.mel_opts.high_freq = stages["kaldi_mel"]["high_freq"]
    online = knf.OnlineFbank(opts)
    chunk = 160 * 3 + 40                                       # not a multiple of the hop
    session = eager_session(fe, chunk)
    done, peaks = 0, []
    for pos in range(0, 16000, chunk):
        piece = x[pos: pos + chunk]
        got = session.accept(piece)
        if len(piece) < chunk:
            got = np.concatenate([got, session.finish()])
        online.accept_waveform(16000, (piece * np.float32(scale)).tolist())
        if len(piece) < chunk:
            online.input_finished()
        done += got.shape[0]
        assert done == online.num_frames_ready, f"after {pos + len(piece)} samples"
        ref = np.stack([np.asarray(online.get_frame(i)) for i in range(done - got.shape[0], done)]) \
            if got.shape[0] else np.zeros((0, 80))
        peaks.append(ref.max(initial=-np.inf))
        window = ref >= max(peaks) - 80.0 / fe.db_per_unit          # within 80 dB of the peak so far
        err = np.abs(got - ref)[window].max(initial=0.0)
        assert err <= tol, f"after {pos + len(piece)} samples: {err:.3g}"
    assert done == fe.output_shape[0]


@pytest.mark.parametrize("name,stage", [("whisper_80", "dynamic_range"), ("mfcc_20", "db"),
                                        ("nemo_mel_80", "normalize"), ("ast_128", "fix_frames"),
                                        ("clap_htsat", "repeat_pad"), ("cqt1992v2_84", "cqt")])
def test_whole_clip_stages_refuse_streaming_naming_the_stage(name, stage, tmp_path):
    fe = nx.presets.load(name, seconds=1.0)
    with pytest.raises(ValueError, match=rf"\({stage}\) cannot stream"):
        nx.export(fe, tmp_path / "b", streaming=True, chunk_samples=1600)
    assert not (tmp_path / "b").exists()


@pytest.fixture(scope="module")
def kaldi_bundles(tmp_path_factory):
    """The kaldi_fbank_80 streaming bundle built by the CLI (10 ms chunks, every format),
    and its offline ONNX bundle, for 1 s."""
    d = tmp_path_factory.mktemp("stream")
    assert cli_main(["build", "kaldi_fbank_80", "--out", str(d / "s"), "--seconds", "1",
                     "--streaming", "--chunk-ms", "10"]) == 0
    off = nx.export("kaldi_fbank_80", d / "o", formats=("onnx",), seconds=1.0, verify=False)
    return d / "s", off


def test_streaming_bundle_every_backend_equals_offline(kaldi_bundles):
    """kaldi_fbank_80 at 16 kHz built by the CLI: its manifest, and each backend's streamed
    frames against the offline output (ONNX Runtime: the offline ONNX bundle; TorchScript
    and .pt2: the eager offline frontend), within 1e-6 x peak."""
    stream_dir, offline_dir = kaldi_bundles
    manifest = json.loads((stream_dir / "manifest.json").read_text())
    st = manifest["streaming"]
    assert st["chunk_samples"] == 160 and st["state"]["size"] == st["inputs"][3]["shape"][1]
    assert [t["name"] for t in st["inputs"]] == ["audio_chunk", "chunk_length", "end", "state"]
    assert st["lookahead_samples"] == 400
    assert manifest["parity"]["ok"] is True
    assert set(manifest["parity"]["streaming"]) == {"torchscript", "onnxruntime", "pt2", "eager"}
    x = signals(16000, 1.0)
    fe = nx.Frontend.from_spec(manifest["spec"]).eval()
    with torch.no_grad():
        eager = fe(torch.from_numpy(x)).numpy()
    offline = {"onnxruntime": nx.load(offline_dir, backend="onnxruntime")(x)}
    for backend in ("onnxruntime", "torchscript", "pt2"):
        got = stream_through(nx.stream(stream_dir, backend=backend, batch=3), x, pieces(16000, 160, 16000, 3))
        want = offline.get(backend, eager)
        assert got.shape == want.shape
        err = relative_error(got, want, "log", fe.db_per_unit)
        assert err <= EXACT, f"{backend}: {err:.3g} x peak"


# Bundles of every listed frontend, each at one rate, the rates rotated so that each backend
# runs all three: TorchScript and ONNX Runtime for all six; .pt2 (an AOTInductor build of
# ~20-40 s each) for a mel (mel_128 at 44.1 kHz) and a log-mel (whisper-style at 22.05 kHz)
# besides kaldi_fbank_80 at 16 kHz above (structurally: Kaldi framing, centred reflect pad
# with n_fft 2048, and with n_fft 400 plus a trimmed frame). (name, rate, chunk ms, backends)
BUNDLES = [(name, RATES[i % 3], CHUNK_MS[i], ("torchscript", "onnxruntime") + (("pt2",) if name == "mel_128" else ()))
           for i, name in enumerate(LISTED)] + [("whisper_style", 22050, 30.0, ("pt2",))]
FORMAT_OF = {"torchscript": "torchscript", "onnxruntime": "onnx", "pt2": "pt2"}


@pytest.fixture(scope="module")
def listed_bundles(tmp_path_factory):
    """Builds on first use: (frontend, streaming bundle, offline bundle) per (name, rate),
    for 1 s; the offline bundle has the streaming bundle's formats but .pt2."""
    root, built = tmp_path_factory.mktemp("listed"), {}

    def get(name, sr, chunk_ms, backends):
        if (name, sr) not in built:
            fe = frontend(listed_spec(name, sr), 1.0)
            formats = tuple(FORMAT_OF[b] for b in backends)
            key = f"{name}-{sr}"
            s = nx.export(fe, root / f"{key}-s", formats=formats, streaming=True,
                          chunk_samples=int(round(chunk_ms * sr / 1000)), verify=False)
            offline = tuple(f for f in formats if f != "pt2")
            o = nx.export(fe, root / f"{key}-o", formats=offline, verify=False) if offline else None
            built[(name, sr)] = (fe, s, o)
        return built[(name, sr)]
    return get


@pytest.mark.parametrize("name,sr,chunk_ms,backends", BUNDLES)
def test_listed_streaming_bundles_equal_offline_bundles(listed_bundles, name, sr, chunk_ms, backends):
    """Streamed frames, in uneven pieces, against the offline bundle in the same backend
    (.pt2: the eager offline frontend), within 1e-6 x peak: a frame's arithmetic does not
    depend on how long the signal around it is, in any runtime (the 'extended' split works
    frame by frame: nnaudio_export.functional.split_frames_matmul)."""
    fe, stream_dir, offline_dir = listed_bundles(name, sr, chunk_ms, backends)
    x = signals(sr, 1.0)
    with torch.no_grad():
        eager = fe(torch.from_numpy(x)).numpy()
    for backend in backends:
        want = eager if backend == "pt2" else nx.load(offline_dir, backend=backend)(x)
        got = stream_through(nx.stream(stream_dir, backend=backend, batch=3), x,
                             pieces(sr, hop_of(fe), x.shape[1], 5))
        assert got.shape == want.shape, backend
        err = relative_error(got, want, fe.output_kind, fe.db_per_unit)
        assert err <= EXACT, f"{name} @ {sr} Hz, {backend}: {err:.3g} x peak"


def test_streaming_bundle_refused_by_load_and_one_stream_session(kaldi_bundles):
    stream_dir, _ = kaldi_bundles
    with pytest.raises(ValueError, match="streaming bundle"):
        nx.load(stream_dir)
    assert cli_main(["inspect", str(stream_dir)]) == 0
    s = nx.stream(stream_dir)
    x = clip("tones", 16000, 0.1)[:1600]
    assert s.accept(x[:300]).shape == (0, 80)      # one 160-sample chunk run: no frame yet
    assert s.accept(x[300:500]).shape == (1, 80)   # 480 samples run: frame 0 (400 samples)
    with pytest.raises(ValueError, match="dtype float32"):
        s.accept(np.zeros(10, np.int16))


def test_triton_sequence_batching_config_with_implicit_state(kaldi_bundles, tmp_path):
    import onnx
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc
    from nnaudio_export.triton import write_triton_repo
    stream_dir, _ = kaldi_bundles
    written = write_triton_repo(stream_dir, tmp_path / "repo", name="fbank")
    graph = onnx.load(str(stream_dir / "model.onnx")).graph
    names = {"onnx": ([i.name for i in graph.input], [o.name for o in graph.output]),
             "libtorch": ([f"INPUT__{i}" for i in range(4)], [f"OUTPUT__{i}" for i in range(3)])}
    size = json.loads((stream_dir / "manifest.json").read_text())["streaming"]["state"]["size"]
    for suffix, (ins, outs) in names.items():
        cfg = text_format.Parse((written[f"fbank_{suffix}"] / "config.pbtxt").read_text(), mc.ModelConfig())
        assert not cfg.HasField("dynamic_batching")
        seq = cfg.sequence_batching
        (state,) = seq.state
        assert (state.input_name, state.output_name) == (ins[3], outs[2])
        assert list(state.dims) == [size] and state.initial_state[0].zero_data
        (end,) = seq.control_input
        assert end.name == ins[2] and end.control[0].kind == mc.ModelSequenceBatching.Control.CONTROL_SEQUENCE_END
        assert [i.name for i in cfg.input] == ins[:2] and [o.name for o in cfg.output] == outs[:2]
        assert list(cfg.input[0].dims) == [160] and cfg.output[1].data_type == mc.TYPE_INT64
