"""Speed benchmark: our bundles (eager, TorchScript, ONNX Runtime, AOTInductor .pt2) against
the usual peers (librosa, torch.stft, nnAudio, openai-whisper, transformers, kaldi-native-fbank,
the ONNX ``STFT`` op) on the same data in one process, with this machine's fp32 GEMM rate as
the ceiling and each artifact's FLOP count.

Timing: ``warmup`` calls, then the median (and min / max) of ``repeats`` timed calls of one
whole batch (``time.perf_counter``; CUDA is synchronised). FLOPs of our artifacts and of
nnAudio are the conv / matmul FLOPs counted by ``torch.utils.flop_counter`` on the eager module
(2 per multiply-add; elementwise ops not counted). FFT-based peers get the textbook model
``5 N log2 N`` per frame (+ the mel matmul), which is what a conv-DFT is up against.
Peak memory of ours: a fresh subprocess per backend loads the bundle and runs it twice;
``ru_maxrss`` minus the RSS right after imports and input creation (torch is imported in every
probe, so the baseline includes it for all four).
"""
import argparse
import datetime as _dt
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

PRESETS = ("whisper_80", "mel_128", "stft_2048", "cqt1992v2_84", "cqt2010v2_84")
OURS = ("eager", "torchscript", "onnxruntime", "pt2")
FULL_BATCH, QUICK_BATCH, QUICK_SECONDS = 8, 2, 1.0
SIGNAL_NAMES = ("speech", "tones", "noise", "chirp")


def _say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- machine, ceiling, timing

def machine_info() -> Dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: Dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                            "platform": platform.platform(), "python": platform.python_version(),
                            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    for mod in ("torch", "onnxruntime", "onnx", "numpy", "librosa", "nnAudio", "transformers", "whisper"):
        try:
            m = __import__(mod)
            info[mod] = getattr(m, "__version__", None) or _dist_version(mod)
        except Exception:
            info[mod] = "not installed"
    return info


def _dist_version(mod: str) -> str:
    from importlib import metadata
    for name in (mod, {"whisper": "openai-whisper"}.get(mod, mod)):
        try:
            return metadata.version(name)
        except Exception:
            continue
    return "unknown"


def cpu_snapshot() -> Dict[str, float]:
    """Busy and steal CPU seconds of the whole machine (/proc/stat) and of this process tree."""
    hz = os.sysconf("SC_CLK_TCK")
    try:
        f = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        busy, steal = (f[0] + f[1] + f[2] + f[5] + f[6]) / hz, (f[7] if len(f) > 7 else 0) / hz
    except (OSError, ValueError, IndexError):
        busy = steal = float("nan")
    t = os.times()
    return {"t": time.time(), "busy": busy, "steal": steal,
            "own": t.user + t.system + t.children_user + t.children_system}


def contention(a: Dict[str, float], b: Dict[str, float]) -> Dict[str, float]:
    """Average cores used by OTHER processes and stolen by the hypervisor between two snapshots."""
    wall = max(b["t"] - a["t"], 1e-9)
    return {"other_cores": max(0.0, (b["busy"] - a["busy"]) - (b["own"] - a["own"])) / wall,
            "steal_cores": (b["steal"] - a["steal"]) / wall, "loadavg_end": os.getloadavg()[0]}


def gemm_gflops(quick: bool) -> Dict[str, Any]:
    """fp32 torch.matmul of square matrices: best median GFLOP/s over the sizes tried."""
    best: Dict[str, Any] = {"gflops": 0.0}
    for n in ((1024,) if quick else (2048, 3072)):
        a, b = torch.randn(n, n), torch.randn(n, n)
        t = time_call(lambda: torch.matmul(a, b), warmup=1, repeats=3 if quick else 5)
        g = 2.0 * n ** 3 / (t["median_ms"] * 1e-3) / 1e9
        if g > best["gflops"]:
            best = {"gflops": g, "n": n, "median_ms": t["median_ms"]}
    return best


def time_call(fn: Callable[[], Any], warmup: int, repeats: int,
              sync: Optional[Callable[[], None]] = None) -> Dict[str, Any]:
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        ts.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": statistics.median(ts), "min_ms": min(ts), "max_ms": max(ts), "runs": len(ts)}


def count_flops(module: Callable[[torch.Tensor], Any], x: torch.Tensor) -> Optional[float]:
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as fc, torch.inference_mode():
        module(x)
    return float(fc.get_total_flops())


def make_input(num_samples: int, sample_rate: float, batch: int) -> np.ndarray:
    """The same deterministic batch as the exporter's example input (speech, tones, noise, chirp, ...)."""
    from .signals import batch as signal_batch
    return signal_batch(num_samples, sample_rate, "float32", 1,
                        names=tuple(SIGNAL_NAMES[i % 4] for i in range(batch)))


# ---------------------------------------------------------------- our bundles

def ensure_bundle(preset: str, num_samples: int, root: Path) -> Path:
    """Export ``preset`` once into ``root``; reuse a bundle whose manifest spec, torch version
    and files match."""
    from .bundle import FILES, export
    from .presets import load as load_preset
    fe = load_preset(preset, num_samples=num_samples)
    out = root / f"{preset}-n{num_samples}"
    mf = out / "manifest.json"
    if mf.is_file():
        try:
            m = json.loads(mf.read_text())
            if (m.get("spec") == fe.spec and m["versions"]["torch"] == torch.__version__
                    and all((out / FILES[f]).is_file() for f in FILES)):
                _say(f"{preset}: reusing bundle {out}")
                return out
        except Exception:
            pass
    _say(f"{preset}: exporting bundle {out} (torchscript, onnx, pt2)")
    return export(fe, out, batch=None, verify=False, overwrite=True)


def _anon_bytes() -> int:
    """Anonymous resident memory (resident minus file-backed pages, from /proc/self/statm)."""
    f = Path("/proc/self/statm").read_text().split()
    return (int(f[1]) - int(f[2])) * os.sysconf("SC_PAGE_SIZE")


def _probe_main(argv: List[str]) -> None:
    """Subprocess entry: peak anonymous RSS while loading and running one backend (JSON on stdout).
    A thread samples /proc/self/statm every 0.5 ms (torch and ORT release the GIL while computing)."""
    import gc
    import resource
    import threading
    cfg = json.loads(argv[0])
    from .runtime import load
    xn = make_input(cfg["num_samples"], cfg["sample_rate"], cfg["batch"])
    x = torch.from_numpy(xn).to(cfg["device"])
    gc.collect()
    base = _anon_bytes()
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _anon_bytes())
            time.sleep(0.0005)
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    rt = load(cfg["bundle"], backend=cfg["backend"], device=cfg["device"])
    for _ in range(2):
        rt(xn if cfg["backend"] == "onnxruntime" and cfg["device"] == "cpu" else x)
    stop.set()
    th.join()
    peak[0] = max(peak[0], _anon_bytes())
    res = {"mem_mb": (peak[0] - base) / 2 ** 20,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if cfg["device"] == "cuda":
        res["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    print(json.dumps(res))


def probe_memory(bundle: Path, backend: str, device: str, batch: int, num_samples: int,
                 sample_rate: float) -> Dict[str, Any]:
    cfg = json.dumps({"bundle": str(bundle), "backend": backend, "device": device, "batch": batch,
                      "num_samples": num_samples, "sample_rate": sample_rate})
    code = "import sys; from nnaudio_export.bench import _probe_main; _probe_main(sys.argv[1:])"
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    r = subprocess.run([sys.executable, "-c", code, cfg], capture_output=True, text=True, timeout=600, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"memory probe failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


Candidate = Tuple[Dict[str, Any], Callable[[], Any], Optional[Callable[[], None]]]


def prepare_ours(bundle: Path, fe: torch.nn.Module, x: torch.Tensor, xn: np.ndarray, device: str) -> List[Candidate]:
    """Load the bundle with each backend; the FLOPs are counted once on the eager module."""
    from .runtime import load
    cands: List[Candidate] = []
    flops = None
    sync = torch.cuda.synchronize if device == "cuda" else None
    for backend in OURS:
        row: Dict[str, Any] = {"impl": f"ours: {backend}", "group": "ours", "backend": backend, "device": device,
                               "identical_settings": True, "flop_model": "conv/matmul counted (flop_counter)"}
        if backend == "pt2" and device != "cpu":
            cands.append(({**row, "status": "skipped", "error": "the .pt2 is compiled for CPU"}, None, None))
            continue
        try:
            rt = load(bundle, backend=backend, device=device)
            if flops is None:
                flops = count_flops(fe.to(x.device), x)
            if backend == "onnxruntime":
                row["note"] = "providers " + ",".join(p.replace("ExecutionProvider", "")
                                                       for p in rt.session.get_providers())
            inp = xn if (backend == "onnxruntime" and device == "cpu") else x
            cands.append((row, (lambda rt=rt, inp=inp: rt(inp)), sync))
        except Exception as exc:
            cands.append(({**row, "status": "error", "error": _err(exc)}, None, None))
    for row, _, _ in cands:
        row["gflop"] = flops / 1e9 if flops else None
    return cands


def _err(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).strip()[:300]}"


def measure(cands: List[Candidate], warmup: int, repeats: int) -> None:
    """Warm every candidate up, then time them ROUND-ROBIN (one call of each per round), so
    load from other processes hits all implementations alike; median / min / max per row."""
    live = []
    for row, fn, sync in cands:
        if fn is None:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for _ in range(max(warmup, 1)):
                    fn()
            live.append((row, fn, sync, []))
        except Exception as exc:
            row.update(status="error", error=_err(exc))
    for _ in range(repeats):
        for row, fn, sync, ts in live:
            t0 = time.perf_counter()
            fn()
            if sync:
                sync()
            ts.append((time.perf_counter() - t0) * 1e3)
    for row, _, _, ts in live:
        row.update(status="ok", median_ms=statistics.median(ts), min_ms=min(ts), max_ms=max(ts), runs=len(ts))


def ort_variants(bundle: Path, xn: np.ndarray, cfg: "Config") -> List[Dict[str, Any]]:
    """The same model.onnx under different ORT SessionOptions (CPU), timed round-robin."""
    import onnxruntime as ort
    lv = ort.GraphOptimizationLevel
    variants = [("default (as runtime.load)", {}, {}),
                ("intra_op_num_threads=1", {"intra_op_num_threads": 1}, {}),
                (f"intra_op_num_threads={os.cpu_count()}", {"intra_op_num_threads": os.cpu_count()}, {}),
                ("graph_optimization_level=ORT_ENABLE_BASIC", {"graph_optimization_level": lv.ORT_ENABLE_BASIC}, {}),
                ("graph_optimization_level=ORT_DISABLE_ALL", {"graph_optimization_level": lv.ORT_DISABLE_ALL}, {}),
                ("intra_op.allow_spinning=0", {}, {"session.intra_op.allow_spinning": "0"}),
                ("set_denormal_as_zero=1", {}, {"session.set_denormal_as_zero": "1"}),
                ("enable_cpu_mem_arena=False", {"enable_cpu_mem_arena": False}, {})]
    cands: List[Candidate] = []
    for name, attrs, entries in variants:
        try:
            opts = ort.SessionOptions()
            for k, v in attrs.items():
                setattr(opts, k, v)
            for k, v in entries.items():
                opts.add_session_config_entry(k, v)
            s = ort.InferenceSession(str(bundle / "model.onnx"), sess_options=opts,
                                     providers=["CPUExecutionProvider"])
            cands.append(({"variant": name}, (lambda s=s: s.run(["features"], {"audio": xn})), None))
        except Exception as exc:
            cands.append(({"variant": name, "error": _err(exc)}, None, None))
    measure(cands, cfg.warmup, cfg.repeats)  # round-robin, like the main table
    return [row for row, _, _ in cands]


# ---------------------------------------------------------------- peers

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
    import librosa
    m = ch.mel
    return librosa.filters.mel(sr=ch.sr, n_fft=ch.stft_args()[0], n_mels=m["n_mels"], fmin=m["fmin"],
                               fmax=m["fmax"], htk=m["htk"], norm=m["norm"]).astype(np.float32)


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

        def fn():
            out = []
            for y in xn:
                f = knf.OnlineFbank(o)
                f.accept_waveform(sr, y)
                f.input_finished()
                out.append(np.stack([f.get_frame(i) for i in range(f.num_frames_ready)]))
            return out
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


def prepare_peers(preset: str, spec: Dict[str, Any], x: torch.Tensor, xn: np.ndarray, device: str,
                  work: Path, quick: bool) -> List[Candidate]:
    cands: List[Candidate] = []
    try:
        peers = build_peers(preset, spec, x, xn, device, work, quick)
    except Exception as exc:
        return [({"impl": "peers", "group": "peer", "status": "error", "error": _err(exc)}, None, None)]
    for name, identical, dev, build in peers:
        row: Dict[str, Any] = {"impl": name, "group": "peer", "device": dev, "identical_settings": identical}
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


# ---------------------------------------------------------------- driver

class Config:
    def __init__(self, presets=PRESETS, out="build/bench", quick=False, batch=None, repeats=None,
                 warmup=None, device="cpu", memory=True, ort_variants=None):
        self.presets = tuple(presets)
        self.out = Path(out)
        self.quick = bool(quick)
        self.batch = batch
        self.repeats = int(repeats if repeats is not None else (2 if quick else 5))
        self.warmup = int(warmup if warmup is not None else (1 if quick else 3))
        self.device = device
        self.memory = bool(memory)
        self.ort_variants = (not quick) if ort_variants is None else bool(ort_variants)
        if self.repeats < 1 or self.warmup < 0:
            raise ValueError("repeats must be >= 1 and warmup >= 0")
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("--device cuda: torch.cuda.is_available() is False")


def run_preset(preset: str, cfg: Config, peak_gflops: float) -> Dict[str, Any]:
    from .presets import get_spec, load as load_preset
    raw = get_spec(preset)
    sr = float(raw["sample_rate"])
    n = int(round(QUICK_SECONDS * sr)) if cfg.quick else int(raw["num_samples"])
    b = cfg.batch or (QUICK_BATCH if cfg.quick else FULL_BATCH)
    xn = make_input(n, sr, b)
    x = torch.from_numpy(xn).to(cfg.device)
    res: Dict[str, Any] = {"preset": preset, "batch": b, "num_samples": n, "sample_rate": sr,
                           "seconds": n / sr, "rows": [], "ort_variants": []}
    spec, bundle, cands = None, None, []
    try:
        fe = load_preset(preset, num_samples=n)
        spec = fe.spec
        res["output_shape"] = [b, *fe.output_shape]
        bundle = ensure_bundle(preset, n, cfg.out / "bundles")
        res["bundle"] = str(bundle)
        cands += prepare_ours(bundle, fe, x, xn, cfg.device)
    except Exception as exc:
        _say(f"{preset}: ours failed: {_err(exc)}")
        cands += [({"impl": f"ours: {be}", "group": "ours", "backend": be, "device": cfg.device,
                    "identical_settings": True, "status": "error", "error": _err(exc)}, None, None) for be in OURS]
    if spec is None:  # our layer could not be built: the peers only need the preset's numbers
        from .spec import normalize_spec
        try:
            spec = normalize_spec(get_spec(preset, num_samples=n))
        except Exception:
            spec = get_spec(preset, num_samples=n)
    work = cfg.out / "peers"
    work.mkdir(parents=True, exist_ok=True)
    cands += prepare_peers(preset, spec, x, xn, cfg.device, work, cfg.quick)
    _say(f"{preset}: timing {sum(1 for c in cands if c[1])} implementations round-robin, "
         f"batch {b} x {n / sr:g} s, {cfg.warmup} warm-up + {cfg.repeats} timed calls each")
    snap = cpu_snapshot()
    measure(cands, cfg.warmup, cfg.repeats)
    res["contention"] = contention(snap, cpu_snapshot())
    res["rows"] = [row for row, _, _ in cands]
    del cands
    for row in res["rows"]:
        _say(f"{preset}: {row['impl']}: " + (f"{row['median_ms']:.1f} ms" if row.get("status") == "ok"
                                             else str(row.get("error"))))
    if bundle is not None:
        for row in res["rows"]:
            if row["group"] == "ours" and row.get("status") == "ok" and cfg.memory:
                try:
                    row.update(probe_memory(bundle, row["backend"], cfg.device, b, n, sr))
                except Exception as exc:
                    row["note"] = ((row.get("note") or "") + f" memory probe: {_err(exc)}").strip()
        if cfg.ort_variants and cfg.device == "cpu":
            res["ort_variants"] = ort_variants(bundle, xn, cfg)
    _finish_rows(res, peak_gflops)
    return res


def _finish_rows(res: Dict[str, Any], peak_gflops: float) -> None:
    ok_peers = [r["median_ms"] for r in res["rows"]
                if r["group"] == "peer" and r["status"] == "ok" and r.get("identical_settings")]
    fastest = min(ok_peers) if ok_peers else None
    res["fastest_peer"] = next((r["impl"] for r in res["rows"] if r["group"] == "peer" and r["status"] == "ok"
                                and r.get("identical_settings") and r["median_ms"] == fastest), None)
    res["fastest_peer_ms"] = fastest
    for r in res["rows"]:
        r.setdefault("status", "error")
        for k in ("median_ms", "min_ms", "max_ms", "runs", "gflop", "note", "error", "mem_mb", "peak_rss_mb"):
            r.setdefault(k, None)
        ok = r["status"] == "ok"
        r["rel_to_fastest_peer"] = fastest / r["median_ms"] if ok and fastest else None
        r["gflops_per_s"] = r["gflop"] / (r["median_ms"] * 1e-3) if ok and r["gflop"] else None
        r["pct_of_gemm_peak"] = 100.0 * r["gflops_per_s"] / peak_gflops if r["gflops_per_s"] else None
        r["realtime_factor"] = res["batch"] * res["seconds"] / (r["median_ms"] * 1e-3) if ok else None


def run(cfg: Config) -> Dict[str, Any]:
    cfg.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    snap = cpu_snapshot()
    info = machine_info()
    info["loadavg_start"] = os.getloadavg()[0]
    _say(f"machine: {info['cores']} cores, {info['cpu']}, torch {info['torch']}, onnxruntime {info['onnxruntime']}")
    gemm = gemm_gflops(cfg.quick)
    _say(f"fp32 GEMM ceiling: {gemm['gflops']:.1f} GFLOP/s (torch.matmul {gemm['n']}x{gemm['n']})")
    results = [run_preset(p, cfg, gemm["gflops"]) for p in cfg.presets]
    after = gemm_gflops(cfg.quick)
    _say(f"fp32 GEMM after the run: {after['gflops']:.1f} GFLOP/s")
    gemm = {**gemm, "gflops_before": gemm["gflops"], "gflops_after": after["gflops"]}
    if after["gflops"] > gemm["gflops"]:  # the ceiling is the best this machine did in this run
        gemm["gflops"] = after["gflops"]
        for res in results:
            _finish_rows(res, gemm["gflops"])
    info["contention"] = contention(snap, cpu_snapshot())
    report = {"machine": info, "gemm": gemm, "device": cfg.device, "quick": cfg.quick,
              "repeats": cfg.repeats, "warmup": cfg.warmup, "memory_method": MEMORY_METHOD,
              "flop_method": FLOP_METHOD, "presets": results, "wall_s": time.time() - t0}
    write_reports(report, cfg.out)
    return report


MEMORY_METHOD = ("ours only, a fresh subprocess per backend: mem MB = peak anonymous RSS (resident minus "
                 "file-backed pages, /proc/self/statm sampled every 0.5 ms) while loading the bundle and running "
                 "2 batches, minus the value after imports and input creation: weights, arenas, workspaces, output; "
                 "not library code pages. peak_rss_mb in bench.json = getrusage ru_maxrss of the whole process")
FLOP_METHOD = ("ours and nnAudio: conv/matmul FLOPs counted by torch.utils.flop_counter on the eager module "
               "(2 per MAC, elementwise not counted); FFT peers: 5 N log2 N per frame + 2 n_mels (N/2+1) per "
               "frame for the mel matmul (a real FFT needs about half of 5 N log2 N)")


# ---------------------------------------------------------------- reports

def _f(v: Any, fmt: str = "{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def markdown(report: Dict[str, Any]) -> str:
    m, g = report["machine"], report["gemm"]
    c = m["contention"]
    lines = [f"# nnaudio_export benchmark{' (quick)' if report['quick'] else ''}", "",
             f"- machine: {m['cores']} cores, {m['cpu']}; torch threads {m['torch_threads']}; "
             f"device {report['device']}{' (' + m['cuda'] + ')' if m.get('cuda') else ''}",
             f"- date {m['date']}; torch {m['torch']}, onnxruntime {m['onnxruntime']}, onnx {m['onnx']}, "
             f"numpy {m['numpy']}, librosa {m['librosa']}, nnAudio {m['nnAudio']}",
             f"- fp32 GEMM ceiling (torch.matmul {g['n']}x{g['n']}, same run; best of before "
             f"{g['gflops_before']:.0f} / after {g['gflops_after']:.0f}): **{g['gflops']:.1f} GFLOP/s**",
             f"- other load during the run: {c['other_cores']:.2f} cores busy in other processes, "
             f"{c['steal_cores']:.2f} cores stolen by the hypervisor (average); load average "
             f"{m['loadavg_start']:.2f} at start" + (" **(machine was not idle: timings are noisy)**"
                                                      if c["other_cores"] > 0.2 or c["steal_cores"] > 0.2 else ""),
             f"- timing: {report['warmup']} warm-up calls, then median / min of {report['repeats']} timed calls "
             "of one whole batch; same input batch for every implementation",
             f"- FLOPs: {report['flop_method']}", f"- memory: {report['memory_method']}", ""]
    head = ("implementation", "median ms", "min ms", "x fastest peer", "GFLOP", "GFLOP/s", "% GEMM peak",
            "mem MB", "notes")
    for p in report["presets"]:
        lines += [f"## {p['preset']}: batch {p['batch']} x {p['seconds']:g} s at {p['sample_rate']:g} Hz", "",
                  f"fastest peer (identical settings): {p['fastest_peer'] or '-'} "
                  f"({_f(p['fastest_peer_ms'])} ms)", "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in p["rows"]:
            note = r["error"] if r["status"] != "ok" else (r["note"] or "")
            if r["status"] != "ok":
                note = f"**{r['status'].upper()}**: {note}"
            lines.append("| " + " | ".join([
                ("**" + r["impl"] + "**") if r["group"] == "ours" else r["impl"], _f(r["median_ms"]), _f(r["min_ms"]),
                _f(r["rel_to_fastest_peer"], "{:.2f}x"), _f(r["gflop"], "{:.2f}"), _f(r["gflops_per_s"]),
                _f(r["pct_of_gemm_peak"], "{:.0f} %"), _f(r["mem_mb"], "{:.0f}"),
                note.replace("|", "/").replace("\n", " ")]) + " |")
        if p["ort_variants"]:
            lines += ["", f"ONNX Runtime session options ({p['preset']}, CPU, same model.onnx):", "",
                      "| SessionOptions | median ms | min ms |", "|---|---|---|"]
            lines += [f"| {v['variant']} | {_f(v.get('median_ms'))} | {_f(v.get('min_ms'))} |"
                      + (f" {v['error']}" if "error" in v else "") for v in p["ort_variants"]]
        lines.append("")
    lines.append(f"Total benchmark wall time: {report['wall_s']:.0f} s.")
    return "\n".join(lines) + "\n"


def chart(report: Dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ps = report["presets"]
    fig, axes = plt.subplots(len(ps), 1, figsize=(9, 1.2 + 2.6 * len(ps)), squeeze=False)
    for ax, p in zip(axes[:, 0], ps):
        rows = [r for r in p["rows"] if r["rel_to_fastest_peer"]]
        if not rows:
            ax.text(0.5, 0.5, f"{p['preset']}: no peer or no result", ha="center", va="center")
            ax.axis("off")
            continue
        names = [r["impl"] + ("" if r.get("identical_settings", True) else " *") for r in rows]
        vals = [r["rel_to_fastest_peer"] for r in rows]
        colors = ["tab:blue" if r["group"] == "ours" else "tab:gray" for r in rows]
        ax.barh(range(len(rows)), vals, color=colors)
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels(names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.axvline(1.0, color="k", lw=0.8)
        for i, v in enumerate(vals):
            ax.text(v, i, f" {v:.2f}x", va="center", fontsize=7)
        ax.set_title(f"{p['preset']} (batch {p['batch']} x {p['seconds']:g} s): throughput vs fastest peer "
                     f"({p['fastest_peer']}, {p['fastest_peer_ms']:.1f} ms)", fontsize=9)
    m = report["machine"]
    fig.suptitle(f"{m['cores']} cores, {m['cpu']}, torch {m['torch']}, ORT {m['onnxruntime']}  "
                 "(blue: ours; * not identical settings)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_reports(report: Dict[str, Any], out: Path) -> None:
    (out / "bench.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / "bench.md").write_text(markdown(report))
    try:
        chart(report, out / "bench.png")
    except Exception as exc:  # the numbers matter more than the picture
        _say(f"chart failed: {type(exc).__name__}: {exc}")


# ---------------------------------------------------------------- CLI

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help=f"smoke test: batch {QUICK_BATCH} x {QUICK_SECONDS:g} s, "
                   "2 repeats, no ORT option sweep")
    p.add_argument("--out", default="build/bench", help="output directory (bench.md, bench.json, bench.png, bundles/)")
    p.add_argument("--presets", nargs="+", default=list(PRESETS), help="presets to measure")
    p.add_argument("--batch", type=int, default=None, help=f"batch size (default {FULL_BATCH}; quick {QUICK_BATCH})")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per implementation (default 5; quick 2)")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls first (default 3: TorchScript's profiling executor optimises after 2; quick 1)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--no-memory", action="store_true", help="skip the per-backend memory subprocesses")
    p.add_argument("--ort-variants", dest="ort_variants", action="store_true", default=None,
                   help="time ORT SessionOptions variants (default on, off with --quick)")
    p.add_argument("--no-ort-variants", dest="ort_variants", action="store_false")


def cmd_bench(args: argparse.Namespace) -> int:
    from .presets import names
    bad = [p for p in args.presets if p not in names()]
    if bad:
        raise ValueError(f"--presets: unknown {bad}; available: {', '.join(names())}")
    if args.batch is not None and args.batch < 1:
        raise ValueError("--batch must be >= 1")
    cfg = Config(args.presets, args.out, args.quick, args.batch, args.repeats, args.warmup, args.device,
                 not args.no_memory, args.ort_variants)
    report = run(cfg)
    print(markdown(report))
    print(f"wrote {cfg.out / 'bench.md'}, {cfg.out / 'bench.json'}, {cfg.out / 'bench.png'}")
    return 0


def add_cli(subparsers: Any) -> None:
    p = subparsers.add_parser("bench", help="benchmark our bundles against librosa, torch.stft, nnAudio, ...")
    add_arguments(p)
    p.set_defaults(func=cmd_bench)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    add_arguments(p)
    return cmd_bench(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
