"""Peer implementations for the speed benchmark: a preset spec is rebuilt as ``Chain``
(transform + power + optional mel + tail stages) and timed with librosa, torch.stft (torchaudio's
recipe), nnAudio, openai-whisper, transformers' WhisperFeatureExtractor, kaldi-native-fbank and the
ONNX ``STFT`` op under ONNX Runtime; ``build_peers`` picks those that apply to a preset and
``prepare_peers`` turns them into timing candidates. FFT-based peers get the textbook FLOP model
``5 N log2 N`` per frame (+ the mel matmul), which is what a conv-DFT is up against; nnAudio's
FLOPs are counted like ours. Synthesis presets (an ``istft`` of a complex spectrum) are timed
against ``torch.istft`` and ``librosa.istft`` (:func:`build_synthesis_peers`). Depends only on
``measure`` (and ``spec`` to tell a synthesis spec).
"""
import math
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from ..spec import input_kind
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


class Chain:
    """A preset spec as transform + power + optional mel + tail stages (what peers rebuild)."""

    def __init__(self, spec: Dict[str, Any]):
        self.sr = float(spec["sample_rate"])
        self.transform: Dict[str, Any] = {}
        self.power = 0.0
        self.mel: Optional[Dict[str, Any]] = None
        self.tail: List[Dict[str, Any]] = []
        for st in spec["stages"]:
            t = st["type"]
            if t in ("stft", "cqt"):
                self.transform = st
            elif t == "power":
                self.power = float(st["exponent"])
            elif t == "mel" and not self.tail:
                self.mel = st
            elif t == "input":
                if st.get("dtype", "float32") != "float32" or st.get("channels", 1) != 1 or st.get("scale"):
                    raise ValueError("peers support float32 mono input only")
            else:
                if t not in ("trim_frames", "log", "log10", "dynamic_range", "affine", "db", "time_major"):
                    raise ValueError(f"peers do not rebuild stage {t!r}")
                self.tail.append(st)
        if not self.transform or self.power <= 0:
            raise ValueError("peers need stft/cqt followed by power")
        self.kind = self.transform["type"]

    def stft_args(self) -> Tuple[int, int, int]:
        st = self.transform
        n_fft = int(st["n_fft"])
        win = int(st["win_length"] or n_fft)
        return n_fft, win, int(st["hop_length"] or win // 4)

    def frames(self, n: int) -> int:
        n_fft, _, hop = self.stft_args()
        return 1 + n // hop if self.transform["center"] else 1 + (n - n_fft) // hop

    def fft_flops(self, n: int, batch: int, n_fft: Optional[int] = None, n_mels: Optional[int] = None) -> float:
        """5 N log2 N per frame (+ 2 n_mels F per frame for a mel matmul)."""
        nf = n_fft or self.stft_args()[0]
        f = self.frames(n) * batch * 5.0 * nf * math.log2(nf)
        m = n_mels or (self.mel["n_mels"] if self.mel else 0)
        return f + 2.0 * m * (nf // 2 + 1) * self.frames(n) * batch


def _np_tail(y: np.ndarray, tail: List[Dict[str, Any]]) -> np.ndarray:
    """Tail stages on ONE item (F, T) in numpy (per-item max, as ours)."""
    for st in tail:
        t = st["type"]
        if t == "trim_frames":
            y = y[..., st["start"]: y.shape[-1] - st["end"]]
        elif t in ("log", "log10"):
            y = y + st["offset"] if st["offset"] else y
            y = np.maximum(y, st["floor"]) if st["floor"] else y
            y = np.log10(y) if t == "log10" else np.log(y)
        elif t == "dynamic_range":
            y = np.maximum(y, y.max() - st["range"])
        elif t == "affine":
            y = y * st["scale"] + st["offset"]
        elif t == "db":
            m = st["multiplier"]
            y = m * np.log10(np.maximum(y, st["amin"])) - m * math.log10(max(st["amin"], abs(st["ref"])))
            y = np.maximum(y, y.max() - st["top_db"]) if st["top_db"] is not None and st["top_db"] >= 0 else y
        elif t == "time_major":
            y = y.T
    return y


def _torch_tail(y: torch.Tensor, tail: List[Dict[str, Any]]) -> torch.Tensor:
    """Tail stages on a batch (B, F, T) in torch (per-item max)."""
    for st in tail:
        t = st["type"]
        if t == "trim_frames":
            y = y[..., st["start"]: y.shape[-1] - st["end"]]
        elif t in ("log", "log10"):
            y = y + st["offset"] if st["offset"] else y
            y = torch.clamp(y, min=st["floor"]) if st["floor"] else y
            y = torch.log10(y) if t == "log10" else torch.log(y)
        elif t in ("dynamic_range", "db"):
            if t == "db":
                m = st["multiplier"]
                y = m * torch.log10(torch.clamp(y, min=st["amin"])) - m * math.log10(max(st["amin"], abs(st["ref"])))
            r = st["range"] if t == "dynamic_range" else st["top_db"]
            if r is not None and r >= 0:
                y = torch.maximum(y, torch.amax(y, dim=(1, 2), keepdim=True) - r)
        elif t == "affine":
            y = y * st["scale"] + st["offset"]
        elif t == "time_major":
            y = y.transpose(1, 2)
    return y


def _mel_fb(ch: Chain) -> np.ndarray:
    """The chain's mel filterbank for the torch.stft peer (torchaudio's recipe needs one):
    our float64 kernel, which the tests hold to librosa.filters.mel's values; it does not
    import librosa, so the peer also runs where librosa is not installed (a GPU machine)."""
    from ..kernels.mel import mel_filterbank
    m = ch.mel
    return mel_filterbank(ch.sr, ch.stft_args()[0], m["n_mels"], m["fmin"], m["fmax"], m["htk"],
                          m["norm"]).astype(np.float32)


class TorchStftFrontend(torch.nn.Module):
    """What torchaudio does: torch.stft (complex) -> |X| ** p -> mel matmul -> tail."""

    def __init__(self, ch: Chain):
        super().__init__()
        import scipy.signal
        self.n_fft, self.win, self.hop = ch.stft_args()
        self.center, self.pad_mode = bool(ch.transform["center"]), ch.transform["pad_mode"]
        w = scipy.signal.get_window(ch.transform["window"], self.win, fftbins=True)
        self.register_buffer("window", torch.from_numpy(np.asarray(w, dtype=np.float32)))
        self.register_buffer("mel", torch.from_numpy(_mel_fb(ch)) if ch.mel else torch.zeros(0))
        self.power, self.tail = ch.power, ch.tail

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.stft(x, self.n_fft, self.hop, self.win, self.window, center=self.center,
                       pad_mode=self.pad_mode, return_complex=True)
        s = z.abs()
        if self.power != 1.0:
            s = s.pow(self.power)
        if self.mel.numel():
            s = torch.matmul(self.mel, s)
        return _torch_tail(s, self.tail)


PeerBuild = Callable[[], Tuple[Callable[[], Any], Optional[float], str]]


def build_peers(preset: str, spec: Dict[str, Any], x: torch.Tensor, xn: np.ndarray, device: str,
                work: Path, quick: bool) -> List[Tuple[str, bool, str, PeerBuild]]:
    """(name, identical_settings, device, build) for each peer that applies; build() -> (fn, flops, note)."""
    ch = Chain(spec)
    b, n = xn.shape
    sr = ch.sr
    peers: List[Tuple[str, bool, str, PeerBuild]] = []
    whisper_like = preset.startswith("whisper") and ch.kind == "stft" and sr == 16000 and ch.mel is not None

    def librosa_peer():
        import librosa
        if ch.kind == "cqt":
            c = ch.transform

            def one(y):
                return np.abs(librosa.cqt(y, sr=sr, hop_length=c["hop_length"], fmin=c["fmin"], n_bins=c["n_bins"],
                                          bins_per_octave=c["bins_per_octave"], filter_scale=c["filter_scale"],
                                          norm=c["norm"], window=c["window"], pad_mode="reflect",
                                          tuning=0.0)) ** ch.power
            return (lambda: [_np_tail(one(y), ch.tail) for y in xn]), None, \
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
        return (lambda: [_np_tail(one(y), ch.tail) for y in xn]), ch.fft_flops(n, b), "per-item loop"

    def torch_stft_peer():
        m = TorchStftFrontend(ch).eval().to(device)

        def fn():
            with torch.inference_mode():
                return m(x)
        return fn, ch.fft_flops(n, b), "torch.stft + |X|^p + matmul (torchaudio's recipe)"

    def nnaudio_peer():
        import nnAudio.features as NF
        st = ch.transform
        if ch.kind == "cqt":
            common = dict(sr=sr, hop_length=st["hop_length"], fmin=st["fmin"], fmax=st["fmax"], n_bins=st["n_bins"],
                          bins_per_octave=st["bins_per_octave"], filter_scale=st["filter_scale"],
                          window=st["window"], pad_mode=st["pad_mode"], output_format="Magnitude", verbose=False)
            layer = (NF.CQT1992v2(norm=st["norm"], center=st["center"], **common) if st["kind"] == "1992v2"
                     else NF.CQT2010v2(basis_norm=st["basis_norm"], earlydownsample=st["earlydownsample"], **common))
        elif ch.mel:
            n_fft, win, hop = ch.stft_args()
            mm = ch.mel
            norm = {"slaney": 1, None: None}.get(mm["norm"], mm["norm"])
            layer = NF.MelSpectrogram(sr=sr, n_fft=n_fft, win_length=win, n_mels=mm["n_mels"], hop_length=hop,
                                      window=st["window"], center=st["center"], pad_mode=st["pad_mode"],
                                      power=ch.power, htk=mm["htk"], fmin=mm["fmin"], fmax=mm["fmax"], norm=norm,
                                      verbose=False)
        else:
            n_fft, win, hop = ch.stft_args()
            layer = NF.STFT(n_fft=n_fft, win_length=win, hop_length=hop, window=st["window"], center=st["center"],
                            pad_mode=st["pad_mode"], sr=sr, output_format="Magnitude", verbose=False)
        layer = layer.eval().to(device)
        pw = ch.power if (ch.kind == "cqt" or not ch.mel) else 1.0

        def fn():
            with torch.inference_mode():
                y = layer(x)
                return _torch_tail(y if pw == 1.0 else y.pow(pw), ch.tail)
        return fn, count_flops(layer, x), "nnAudio 0.3.4 eager (conv1d)"

    def onnx_stft_peer():
        import onnxruntime as ort
        m = TorchStftFrontend(ch).eval()
        path = work / f"{preset}-n{n}-b{b}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(m, (torch.from_numpy(xn),), str(path), dynamo=True, external_data=False,
                              opset_version=18, input_names=["audio"], output_names=["features"], verbose=False)
        s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return (lambda: s.run(None, {"audio": xn})), ch.fft_flops(n, b), "torch.stft exported (dynamo) -> ONNX STFT op"

    def openai_peer():
        import whisper.audio as wa
        return (lambda: wa.log_mel_spectrogram(x, n_mels=ch.mel["n_mels"])), ch.fft_flops(n, b), \
            "batched tensor: clamp uses the whole batch's max"

    def hf_peer():
        from transformers import WhisperFeatureExtractor
        fe = WhisperFeatureExtractor(feature_size=ch.mel["n_mels"])
        items = list(xn)
        return (lambda: fe(items, sampling_rate=16000, return_tensors="np", padding="max_length",
                           max_length=n)), ch.fft_flops(n, b), "numpy path"

    def kaldi_peer():
        import kaldi_native_fbank as knf
        o = knf.FbankOptions()
        o.frame_opts.samp_freq = sr
        o.frame_opts.dither = 0.0
        o.frame_opts.snip_edges = False
        o.mel_opts.num_bins = ch.mel["n_mels"]

        fn = knf_batch(o, sr, list(xn))
        frames = n // 160
        flops = b * frames * (5.0 * 512 * 9 + 2.0 * ch.mel["n_mels"] * 257)
        return fn, flops, "NOT identical: Kaldi fbank (povey, 512-pt FFT, kaldi mel, ln), 25/10 ms, per item"

    cpu = "cpu"
    peers.append(("librosa", True, cpu, librosa_peer))
    if ch.kind == "stft":
        peers.append(("torch.stft", True, device, torch_stft_peer))
    peers.append(("nnAudio 0.3.4", True, device, nnaudio_peer))
    if whisper_like:
        peers.append(("openai-whisper", True, device, openai_peer))
        peers.append(("transformers WhisperFeatureExtractor", True, cpu, hf_peer))
        peers.append(("kaldi-native-fbank (80-bin fbank)", False, cpu, kaldi_peer))
    if ch.kind == "stft":
        peers.append(("ONNX STFT op (ORT CPU)", True, cpu, onnx_stft_peer))
    return peers


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


def prepare_peers(preset: str, spec: Dict[str, Any], x: torch.Tensor, xn: np.ndarray, device: str,
                  work: Path, quick: bool) -> List[Candidate]:
    cands: List[Candidate] = []
    try:
        if input_kind(spec) == "spectrum":
            peers = build_synthesis_peers(spec, x, xn, device)
        elif any(st["type"] == "kaldi_stft" for st in spec["stages"]):
            peers = build_kaldi_peers(spec, xn)
        else:
            peers = build_peers(preset, spec, x, xn, device, work, quick)
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
