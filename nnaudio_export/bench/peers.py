"""Peer implementations for the speed benchmark: a preset spec is rebuilt as ``Chain``
(transform + power + optional mel + tail stages) and timed with librosa, torch.stft (torchaudio's
recipe), nnAudio, openai-whisper, transformers' WhisperFeatureExtractor, kaldi-native-fbank and the
ONNX ``STFT`` op under ONNX Runtime (one ``*_peer`` builder each, from a :class:`PeerRun`; the spec as
:class:`~.chain.Chain`); ``build_peers`` picks those that apply to a preset and
``prepare_peers`` turns them into timing candidates. FFT-based peers get the textbook FLOP model
``5 N log2 N`` per frame (+ the mel matmul), which is what a conv-DFT is up against; nnAudio's
FLOPs are counted like ours. Synthesis presets (an ``istft`` of a complex spectrum) are timed
against ``torch.istft`` and ``librosa.istft`` (:func:`build_synthesis_peers`). Depends only on
``measure`` and ``chain`` (and ``spec`` to tell a synthesis spec).
"""
import functools
import math
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

import numpy as np
import torch

from ..ort_cpu import side_by_side
from ..spec import input_kind
from .chain import Chain, TorchStftFrontend, _np_tail, _torch_tail
from .measure import Candidate, _err, count_flops


def knf_batch(options: Any, sr: float, items: List[np.ndarray]) -> Callable[[], List[np.ndarray]]:
    """kaldi-native-fbank over a batch as a C++ frontend runs it: one ``OnlineFbank`` per item,
    the whole item accepted, then every ready frame."""
    import kaldi_native_fbank as knf

    def fn() -> List[np.ndarray]:
        out = []
        for y in items:
            f = knf.OnlineFbank(options)
            f.accept_waveform(sr, y)
            f.input_finished()
            out.append(np.stack([f.get_frame(i) for i in range(f.num_frames_ready)]))
        return out
    return fn


PeerBuild = Callable[[], Tuple[Callable[[], Any], Optional[float], str]]


class PeerRun(NamedTuple):
    """What every analysis peer is built from: the preset, its spec as a :class:`Chain`, the
    batch (torch ``x`` on ``device``, numpy ``xn``) and a scratch directory."""
    preset: str
    ch: Chain
    x: torch.Tensor
    xn: np.ndarray
    device: str
    work: Path


def librosa_peer(r: PeerRun):
    import librosa
    ch, sr = r.ch, r.ch.sr
    b, n = r.xn.shape
    if ch.kind == "cqt":
        c = ch.transform

        def one_cqt(y):
            return np.abs(librosa.cqt(y, sr=sr, hop_length=c["hop_length"], fmin=c["fmin"], n_bins=c["n_bins"],
                                      bins_per_octave=c["bins_per_octave"], filter_scale=c["filter_scale"],
                                      norm=c["norm"], window=c["window"], pad_mode="reflect",
                                      tuning=0.0)) ** ch.power
        return (lambda: [_np_tail(one_cqt(y), ch.tail) for y in r.xn]), None, \
            "librosa.cqt per item (recursive, FFT-based; not the same algorithm)"
    n_fft, win, hop = ch.stft_args()
    kw = dict(n_fft=n_fft, hop_length=hop, win_length=win, window=ch.transform["window"],
              center=ch.transform["center"], pad_mode=ch.transform["pad_mode"])
    if ch.mel:
        m = ch.mel

        def one(y):
            return librosa.feature.melspectrogram(y=y, sr=sr, power=ch.power, n_mels=m["n_mels"], fmin=m["fmin"],
                                                  fmax=m["fmax"], htk=m["htk"], norm=m["norm"], **kw)
    else:
        def one(y):
            return np.abs(librosa.stft(y, **kw)) ** ch.power
    return (lambda: [_np_tail(one(y), ch.tail) for y in r.xn]), ch.fft_flops(n, b), "per-item loop"


def torch_stft_peer(r: PeerRun):
    m = TorchStftFrontend(r.ch).eval().to(r.device)

    def fn():
        with torch.inference_mode():
            return m(r.x)
    b, n = r.xn.shape
    return fn, r.ch.fft_flops(n, b), "torch.stft + |X|^p + matmul (torchaudio's recipe)"


def nnaudio_layer(ch: Chain) -> torch.nn.Module:
    """nnAudio 0.3.4's layer for the chain's transform (and mel), magnitude output."""
    import nnAudio.features as NF
    st, sr = ch.transform, ch.sr
    if ch.kind == "cqt":
        common = dict(sr=sr, hop_length=st["hop_length"], fmin=st["fmin"], fmax=st["fmax"], n_bins=st["n_bins"],
                      bins_per_octave=st["bins_per_octave"], filter_scale=st["filter_scale"],
                      window=st["window"], pad_mode=st["pad_mode"], output_format="Magnitude", verbose=False)
        return (NF.CQT1992v2(norm=st["norm"], center=st["center"], **common) if st["kind"] == "1992v2"
                else NF.CQT2010v2(basis_norm=st["basis_norm"], earlydownsample=st["earlydownsample"], **common))
    n_fft, win, hop = ch.stft_args()
    if ch.mel:
        mm = ch.mel
        norm = {"slaney": 1, None: None}.get(mm["norm"], mm["norm"])
        return NF.MelSpectrogram(sr=sr, n_fft=n_fft, win_length=win, n_mels=mm["n_mels"], hop_length=hop,
                                 window=st["window"], center=st["center"], pad_mode=st["pad_mode"],
                                 power=ch.power, htk=mm["htk"], fmin=mm["fmin"], fmax=mm["fmax"], norm=norm,
                                 verbose=False)
    return NF.STFT(n_fft=n_fft, win_length=win, hop_length=hop, window=st["window"], center=st["center"],
                   pad_mode=st["pad_mode"], sr=sr, output_format="Magnitude", verbose=False)


def nnaudio_peer(r: PeerRun):
    ch = r.ch
    layer = nnaudio_layer(ch).eval().to(r.device)
    pw = ch.power if (ch.kind == "cqt" or not ch.mel) else 1.0

    def fn():
        with torch.inference_mode():
            y = layer(r.x)
            return _torch_tail(y if pw == 1.0 else y.pow(pw), ch.tail)
    return fn, count_flops(layer, r.x), "nnAudio 0.3.4 eager (conv1d)"


def onnx_stft_peer(r: PeerRun):
    import onnxruntime as ort
    m = TorchStftFrontend(r.ch).eval()
    b, n = r.xn.shape
    path = r.work / f"{r.preset}-n{n}-b{b}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (torch.from_numpy(r.xn),), str(path), dynamo=True, external_data=False,
                          opset_version=18, input_names=["audio"], output_names=["features"], verbose=False)
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return (lambda: s.run(None, {"audio": r.xn})), r.ch.fft_flops(n, b), "torch.stft exported (dynamo) -> ONNX STFT op"


def openai_peer(r: PeerRun):
    import whisper.audio as wa
    b, n = r.xn.shape
    return (lambda: wa.log_mel_spectrogram(r.x, n_mels=r.ch.mel["n_mels"])), r.ch.fft_flops(n, b), \
        "batched tensor: clamp uses the whole batch's max"


def hf_peer(r: PeerRun):
    from transformers import WhisperFeatureExtractor
    fe = WhisperFeatureExtractor(feature_size=r.ch.mel["n_mels"])
    items = list(r.xn)
    b, n = r.xn.shape
    return (lambda: fe(items, sampling_rate=16000, return_tensors="np", padding="max_length",
                       max_length=n)), r.ch.fft_flops(n, b), "numpy path"


def kaldi_peer(r: PeerRun):
    import kaldi_native_fbank as knf
    o = knf.FbankOptions()
    o.frame_opts.samp_freq = r.ch.sr
    o.frame_opts.dither = 0.0
    o.frame_opts.snip_edges = False
    o.mel_opts.num_bins = r.ch.mel["n_mels"]
    fn = knf_batch(o, r.ch.sr, list(r.xn))
    b, n = r.xn.shape
    flops = b * (n // 160) * (5.0 * 512 * 9 + 2.0 * r.ch.mel["n_mels"] * 257)
    return fn, flops, "NOT identical: Kaldi fbank (povey, 512-pt FFT, kaldi mel, ln), 25/10 ms, per item"


def build_peers(preset: str, spec: Dict[str, Any], x: torch.Tensor, xn: np.ndarray, device: str,
                work: Path, quick: bool) -> List[Tuple[str, bool, str, PeerBuild]]:
    """(name, identical_settings, device, build) for each peer that applies; build() -> (fn, flops, note)."""
    r = PeerRun(preset, Chain(spec), x, xn, device, work)
    ch = r.ch
    whisper_like = preset.startswith("whisper") and ch.kind == "stft" and ch.sr == 16000 and ch.mel is not None
    cpu = "cpu"
    peers: List[Tuple[str, bool, str, Callable]] = [("librosa", True, cpu, librosa_peer)]
    if ch.kind == "stft":
        peers.append(("torch.stft", True, device, torch_stft_peer))
    peers.append(("nnAudio 0.3.4", True, device, nnaudio_peer))
    if whisper_like:
        peers.append(("openai-whisper", True, device, openai_peer))
        peers.append(("transformers WhisperFeatureExtractor", True, cpu, hf_peer))
        peers.append(("kaldi-native-fbank (80-bin fbank)", False, cpu, kaldi_peer))
    if ch.kind == "stft":
        peers.append(("ONNX STFT op (ORT CPU)", True, cpu, onnx_stft_peer))
    return [(name, same, dev, functools.partial(build, r)) for name, same, dev, build in peers]


def build_synthesis_peers(spec: Dict[str, Any], x: torch.Tensor, xn: np.ndarray,
                          device: str) -> List[Tuple[str, bool, str, PeerBuild]]:
    """torch.istft (eager, complex64) and librosa.istft (float32, the whole batch in one call)
    on the same spectra, for a spec ``spectrum_input(layout='complex') -> istft`` with
    centre padding."""
    import scipy.signal
    first, st = spec["stages"][0], spec["stages"][1]
    if first["layout"] != "complex" or st["type"] != "istft" or st["padding"] != "center":
        raise ValueError("synthesis peers: only spectrum_input(layout='complex') -> istft(padding='center')")
    n_fft = int(st["n_fft"])
    win = int(st["win_length"] or n_fft)
    hop = int(st["hop_length"] or win // 4)
    window = scipy.signal.get_window(st["window"], win, fftbins=True).astype(np.float32)
    b, frames = xn.shape[0], xn.shape[2]
    flops = b * frames * 5.0 * n_fft * math.log2(n_fft)
    kw = dict(center=bool(st["center"]), length=st["length"])

    def torch_peer():
        z = torch.view_as_complex(x.contiguous())
        w = torch.from_numpy(window).to(x.device)

        def fn():
            with torch.inference_mode():
                return torch.istft(z, n_fft, hop, win, w, normalized=bool(st["normalized"]), **kw)
        return fn, flops, "torch.istft (complex64)"

    def librosa_peer():
        import librosa
        z = (xn[..., 0] + 1j * xn[..., 1]).astype(np.complex64)
        return (lambda: librosa.istft(z, n_fft=n_fft, hop_length=hop, win_length=win, window=window, **kw)), \
            flops, "librosa.istft on the whole batch (float32)"
    return [("torch.istft", True, device, torch_peer), ("librosa.istft", True, "cpu", librosa_peer)]


def build_kaldi_peers(spec: Dict[str, Any], xn: np.ndarray) -> List[Tuple[str, bool, str, PeerBuild]]:
    """kaldi-native-fbank's ``OnlineFbank`` with the spec's own settings (the Kaldi presets'
    reference), one item after another as a C++ frontend runs it, on the same numpy batch."""
    stages = {st["type"]: st for st in spec["stages"]}
    frames, mel = stages["kaldi_stft"], stages.get("kaldi_mel")
    if mel is None or "log" not in stages or not frames["round_to_power_of_two"]:
        raise ValueError("Kaldi peers: only kaldi_stft -> kaldi_mel -> log (Kaldi fbank) is rebuilt")
    sr = float(spec["sample_rate"])
    scale = np.float32(stages.get("input", {}).get("scale") or 1.0)

    def knf_peer():
        import kaldi_native_fbank as knf
        o = knf.FbankOptions()
        o.frame_opts.samp_freq = sr
        o.frame_opts.frame_length_ms = 1000.0 * frames["win_length"] / sr
        o.frame_opts.frame_shift_ms = 1000.0 * frames["hop_length"] / sr
        o.frame_opts.dither = 0.0
        o.frame_opts.snip_edges = bool(frames["snip_edges"])
        o.frame_opts.window_type = frames["window"]
        o.frame_opts.remove_dc_offset = bool(frames["remove_dc_offset"])
        o.frame_opts.preemph_coeff = float(frames["preemphasis"])
        o.mel_opts.num_bins = int(mel["n_mels"])
        o.mel_opts.low_freq = float(mel["low_freq"])
        o.mel_opts.high_freq = float(mel["high_freq"])
        items = [np.ascontiguousarray(y * scale, dtype=np.float32) for y in xn]

        fn = knf_batch(o, sr, items)
        n_fft = 1 << (int(frames["win_length"]) - 1).bit_length()
        count = len(items) * (xn.shape[-1] // int(frames["hop_length"]))
        return fn, count * (5.0 * n_fft * math.log2(n_fft) + 2.0 * mel["n_mels"] * (n_fft // 2 + 1)), \
            "OnlineFbank, the spec's settings, per item (input scaled before timing)"
    return [("kaldi-native-fbank", True, "cpu", knf_peer)]


# Peers that take the whole batch as one torch tensor: also timed on the batch cut into calls of
# as many items as ours runs a call (the runtime's CPU default), which can be faster for them
# too (smaller tensors: fewer fresh pages, warmer caches), so "x fastest peer" is the better of both.
CHUNKED_PEERS = ("torch.stft", "openai-whisper", "torch.istft")
# ...and, where the run has N >= 2 threads on the CPU, every peer that computes an item at a time
# also with N chunks side by side, one thread each (torch.set_num_threads(1) for the call), as
# ours runs with item_workers=N: the same share of the machine, used the same way.
SIDE_BY_SIDE_PEERS = CHUNKED_PEERS + ("librosa", "librosa.istft", "transformers WhisperFeatureExtractor",
                                      "kaldi-native-fbank")


def side_by_side_call(fns: List[Callable[[], Any]], workers: int) -> Callable[[], List[Any]]:
    """Run ``fns`` ``workers`` at a time, each with one torch thread, dealt in turn as ours
    deals its chunks (:func:`~nnaudio_export.ort_cpu.side_by_side`); outputs in order."""
    pool = ThreadPoolExecutor(workers - 1, thread_name_prefix="bench-side-by-side")
    shares = [functools.partial(lambda k: [f() for f in fns[k::workers]], k) for k in range(workers)]

    def run() -> List[Any]:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            parts = side_by_side(pool, shares)
        finally:
            torch.set_num_threads(threads)
        return [parts[i % workers][i // workers] for i in range(len(fns))]
    return run


def _peer_builds(preset: str, spec: Dict[str, Any], x: torch.Tensor, xn: np.ndarray, device: str,
                 work: Path, quick: bool) -> List[Tuple[str, bool, str, PeerBuild]]:
    if input_kind(spec) == "spectrum":
        return build_synthesis_peers(spec, x, xn, device)
    if any(st["type"] == "kaldi_stft" for st in spec["stages"]):
        return build_kaldi_peers(spec, xn)
    return build_peers(preset, spec, x, xn, device, work, quick)


def chunked_peers(preset: str, spec: Dict[str, Any], x: torch.Tensor, xn: np.ndarray, device: str,
                  work: Path, quick: bool, items: int, side_by_side: int = 1) -> List[Tuple[str, bool, str, PeerBuild]]:
    """Each of :data:`CHUNKED_PEERS` that applies (with ``side_by_side`` >= 2: of
    :data:`SIDE_BY_SIDE_PEERS`, that many chunks at a time), built once per chunk of ``items``
    items and run chunk after chunk (its outputs kept as a list: joining them is not timed)."""
    chunks = [_peer_builds(preset, spec, x[i:i + items], xn[i:i + items], device, work, quick)
              for i in range(0, len(xn), items)]
    wanted = SIDE_BY_SIDE_PEERS if side_by_side > 1 else CHUNKED_PEERS
    how = f"{items} item(s) a call" + (f", {side_by_side} side by side" if side_by_side > 1 else "")
    out = []
    for name, same, dev, _ in chunks[0]:
        if name not in wanted:
            continue
        builds = [next(b for n, _, _, b in peers if n == name) for peers in chunks]

        def build(builds=builds):
            parts = [b() for b in builds]
            fns = [p[0] for p in parts]
            flops = sum(p[1] for p in parts) if all(p[1] for p in parts) else None
            run = side_by_side_call(fns, side_by_side) if side_by_side > 1 else (lambda: [f() for f in fns])
            return run, flops, f"{parts[0][2]}; {how}" + (", one thread each" if side_by_side > 1 else "")
        out.append((f"{name} ({how})", same, dev, build))
    return out


def prepare_peers(preset: str, spec: Dict[str, Any], x: torch.Tensor, xn: np.ndarray, device: str,
                  work: Path, quick: bool, items_per_call: Optional[int] = None,
                  side_by_side: int = 1) -> List[Candidate]:
    """The peers' candidates; with ``items_per_call`` below the batch also :func:`chunked_peers`,
    and with ``side_by_side`` >= 2 (on the CPU) also those chunks that many at a time."""
    cands: List[Candidate] = []
    try:
        peers = _peer_builds(preset, spec, x, xn, device, work, quick)
        if items_per_call and items_per_call < len(xn):
            peers += chunked_peers(preset, spec, x, xn, device, work, quick, items_per_call)
            if side_by_side > 1 and device == "cpu":
                peers += chunked_peers(preset, spec, x, xn, device, work, quick, items_per_call, side_by_side)
    except Exception as exc:
        return [({"impl": "peers", "group": "peer", "status": "error", "error": _err(exc)}, None, None)]
    for name, identical, dev, build in peers:
        row: Dict[str, Any] = {"impl": name, "group": "peer", "device": dev, "identical_settings": identical}
        if dev != device:   # a GPU table compares implementations on the same GPU
            cands.append(({**row, "status": "skipped", "error": f"runs on {dev}; --device {device} times "
                           f"the peers that run on {device}"}, None, None))
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fn, flops, note = build()
            row.update(note=note, gflop=flops / 1e9 if flops else None,
                       flop_model="conv/matmul counted (flop_counter)" if name.startswith("nnAudio")
                       else ("5 N log2 N per frame (+ mel matmul)" if flops else None))
            cands.append((row, fn, torch.cuda.synchronize if dev == "cuda" else None))
        except Exception as exc:
            cands.append(({**row, "status": "error", "error": _err(exc)}, None, None))
    return cands
