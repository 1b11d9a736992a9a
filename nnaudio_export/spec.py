"""Frontend specs: a JSON-serialisable description (format version, sample rate, length,
stage list) and its compilation into scriptable stage modules."""
import copy
import json
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from torch import nn

from . import stages as S
from . import stages_kaldi as SK
from .kernels.kaldi import KALDI_WINDOWS, kaldi_mel_banks, speechbrain_mel_filterbank
from .kernels.dct import dct_matrix
from .kernels.mel import mel_filterbank
from .layers._conv import PRECISIONS
from .layers.stft import STFT

FORMAT = "nnaudio_export.frontend"
FORMAT_VERSION = 1

# Every stage type with its parameters and defaults. A spec's stages are filled from these
# so that a saved spec states every number it depends on.
STAGE_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "input": {"dtype": "float32", "channels": 1, "scale": None},
    "stft": {"n_fft": 2048, "win_length": None, "hop_length": None, "window": "hann",
             "center": True, "pad_mode": "reflect", "freq_bins": None, "freq_scale": "no",
             "fmin": 50.0, "fmax": 6000.0, "precision": "single"},
    "cqt": {"kind": "1992v2", "hop_length": 512, "fmin": 32.70, "fmax": None, "n_bins": 84,
            "bins_per_octave": 12, "filter_scale": 1, "norm": 1, "basis_norm": 1,
            "window": "hann", "center": True, "pad_mode": "reflect", "earlydownsample": True,
            "normalization_type": "librosa"},
    "power": {"exponent": 2.0},
    "mel": {"n_mels": 128, "fmin": 0.0, "fmax": None, "htk": False, "norm": "slaney"},
    "mfcc": {"n_mfcc": 20, "norm": "ortho"},
    "log": {"floor": None, "offset": 0.0},
    "log10": {"floor": None, "offset": 0.0},
    "db": {"ref": 1.0, "amin": 1e-10, "top_db": None, "multiplier": 10.0},
    "dynamic_range": {"range": 8.0},
    "affine": {"scale": 1.0, "offset": 0.0},
    "standardize": {"mean": 0.0, "std": 1.0},
    "normalize": {"mode": "per_feature", "eps": 1e-5, "unbiased": True, "valid_frames": None},
    "trim_frames": {"start": 0, "end": 0},
    "fix_frames": {"frames": None, "value": 0.0},
    "time_major": {},
    # production frontends (stages_kaldi)
    "preemphasis": {"coefficient": 0.97},
    "repeat_pad": {"length": None},
    "kaldi_stft": {"win_length": 400, "hop_length": 160, "window": "povey",
                   "remove_dc_offset": True, "preemphasis": 0.97,
                   "round_to_power_of_two": True, "snip_edges": True, "precision": "single"},
    "kaldi_mel": {"n_mels": 80, "low_freq": 20.0, "high_freq": 0.0},
    "speechbrain_mel": {"n_mels": 40, "fmin": 0.0, "fmax": None},
    "pad_to_multiple": {"multiple": 16, "value": 0.0},
}
AUDIO_STAGES = ("preemphasis", "repeat_pad")
TRANSFORMS = ("stft", "cqt")
TOP_KEYS = ("format", "format_version", "name", "description", "reference", "sample_rate",
            "num_samples", "length_policy", "stages", "notes")
# How deployments should treat audio of another length: 'exact' (refuse it) or
# 'pad_or_trim' (zero-pad / cut to num_samples first, as Whisper does).
LENGTH_POLICIES = ("exact", "pad_or_trim")


@dataclass
class CompiledSpec:
    """What compiling a spec gives: the stage modules and facts about the output."""
    modules: List[nn.Module]
    output_shape: Tuple[int, ...]
    output_kind: str                 # 'linear', 'log' or 'cepstral' (DCT of logs)
    db_per_unit: Optional[float]     # dB per output unit for log outputs, when known
    input_dtype: str
    input_channels: int


def _err(i: int, kind: str, msg: str) -> ValueError:
    return ValueError(f"stages[{i}] ({kind}): {msg}")


def normalize_spec(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Validate the top level, fill stage defaults, return a new dict (input untouched)."""
    if not isinstance(spec, dict):
        raise ValueError(f"spec must be a dict, got {type(spec).__name__}")
    spec = copy.deepcopy(spec)
    unknown = set(spec) - set(TOP_KEYS)
    if unknown:
        raise ValueError(f"spec: unknown keys {sorted(unknown)}")
    if spec.get("format", FORMAT) != FORMAT:
        raise ValueError(f"spec.format must be {FORMAT!r}, got {spec.get('format')!r}")
    version = spec.get("format_version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise ValueError(f"spec.format_version {version} is not supported (this is {FORMAT_VERSION})")
    sr = spec.get("sample_rate")
    if not isinstance(sr, (int, float)) or isinstance(sr, bool) or sr <= 0:
        raise ValueError(f"sample_rate must be a positive number, got {sr!r}")
    n = spec.get("num_samples")
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"num_samples must be a positive integer, got {n!r}")
    policy = spec.get("length_policy", "exact")
    if policy not in LENGTH_POLICIES:
        raise ValueError(f"length_policy must be one of {LENGTH_POLICIES}, got {policy!r}")
    stages = spec.get("stages")
    if not isinstance(stages, list) or not stages:
        raise ValueError("stages must be a non-empty list")
    filled = []
    # Errors name positions in the normalised stage list, which always starts with an
    # input stage (the one compile_spec reports too).
    offset = 0 if isinstance(stages[0], dict) and stages[0].get("type") == "input" else 1
    for j, st in enumerate(stages):
        i = j + offset
        if not isinstance(st, dict) or "type" not in st:
            raise ValueError(f"stages[{i}]: must be an object with a 'type'")
        kind = st["type"]
        if kind not in STAGE_DEFAULTS:
            raise _err(i, kind, f"unknown stage type; known: {sorted(STAGE_DEFAULTS)}")
        bad = set(st) - set(STAGE_DEFAULTS[kind]) - {"type"}
        if bad:
            raise _err(i, kind, f"unknown parameter(s) {sorted(bad)}; known: {sorted(STAGE_DEFAULTS[kind])}")
        full = {"type": kind, **copy.deepcopy(STAGE_DEFAULTS[kind])}
        full.update({k: v for k, v in st.items() if k != "type"})
        filled.append(full)
    if filled[0]["type"] != "input":
        filled.insert(0, {"type": "input", **copy.deepcopy(STAGE_DEFAULTS["input"])})
    out = {"format": FORMAT, "format_version": FORMAT_VERSION}
    for k in ("name", "description", "reference", "notes"):
        if k in spec:
            out[k] = spec[k]
    out.update({"sample_rate": sr, "num_samples": n, "length_policy": policy, "stages": filled})
    json.dumps(out)  # must be JSON-serialisable
    return out


PRECISION_STAGES = ("stft", "kaldi_stft")


def transform_precisions(spec: Dict[str, Any]) -> set:
    """The ``precision`` values of a spec's Fourier transform stages ('single' when unset)."""
    return {st.get("precision", "single") for st in spec.get("stages", [])
            if isinstance(st, dict) and st.get("type") in PRECISION_STAGES}


def with_precision(spec: Dict[str, Any], precision: str) -> Dict[str, Any]:
    """A copy of ``spec`` whose Fourier transform stages (stft, kaldi_stft) run at
    ``precision``: 'single' (one float32 conv) or 'extended' (error-free split, ~2-3x
    the transform's time, ~2^7 times less rounding; see
    :mod:`nnaudio_export.layers._conv`)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    spec = copy.deepcopy(spec)
    hits = [st for st in spec.get("stages", []) if isinstance(st, dict) and st.get("type") in PRECISION_STAGES]
    if not hits:
        raise ValueError(f"precision: the spec has no {' or '.join(PRECISION_STAGES)} stage to set it on")
    for st in hits:
        st["precision"] = precision
    return spec


def compile_spec(spec: Dict[str, Any]) -> CompiledSpec:
    """Turn a normalised spec into stage modules, checking the chain. Raises ``ValueError``
    naming the stage and parameter for an invalid chain."""
    sr = float(spec["sample_rate"])
    n = int(spec["num_samples"])
    stages = spec["stages"]
    modules: List[nn.Module] = []
    shape: Tuple[int, ...] = (n,)
    state = "audio"          # audio -> complex | power -> features
    power_p = 0.0
    n_fft = 0
    log_domain = False
    cepstral = False         # a DCT of log features: compared like a linear output
    db_unit: Optional[float] = None
    in_dtype, in_ch = "float32", 1
    i = 0
    while i < len(stages):
        st = stages[i]
        kind = st["type"]
        try:
            if kind == "input":
                if i != 0:
                    raise ValueError("must be the first stage")
                in_dtype, in_ch = st["dtype"], int(st["channels"])
                if in_dtype not in ("float32", "int16"):
                    raise ValueError(f"dtype must be 'float32' or 'int16', got {in_dtype!r}")
                if in_ch not in (1, 2):
                    raise ValueError(f"channels must be 1 or 2, got {in_ch}")
                scale = st["scale"]
                if scale is None:
                    scale = 1.0 / 32768.0 if in_dtype == "int16" else 1.0
                mod = S.InputStage(n, in_ch, in_dtype, float(scale))
            elif kind in TRANSFORMS:
                if state != "audio":
                    raise ValueError("a transform must come right after the input")
                nxt = stages[i + 1] if i + 1 < len(stages) else None
                p = float(nxt["exponent"]) if nxt is not None and nxt["type"] == "power" else 0.0
                if nxt is not None and nxt["type"] == "power":
                    if not p > 0:
                        raise ValueError(f"power.exponent must be positive, got {p}")
                    i += 1  # fused into the transform
                if kind == "stft":
                    prm = {k: v for k, v in st.items() if k != "type"}
                    layer = STFT(sr=sr, num_samples=shape[-1], output_format="Complex", **prm)
                    n_fft = layer.n_fft if layer.freq_scale == "no" and layer.freq_bins == layer.n_fft // 2 + 1 else 0
                    mod = S.STFTStage(layer, p)
                else:
                    mod = S.CQTStage(_cqt_layer(st, sr, shape[-1]), p)
                state = "power" if p > 0 else "complex"
                power_p = p
            elif kind in AUDIO_STAGES:
                if state != "audio":
                    raise ValueError("works on audio: put it before the transform")
                if kind == "preemphasis":
                    mod = SK.PreEmphasisStage(float(st["coefficient"]))
                else:
                    if st["length"] is None or int(st["length"]) <= 0:
                        raise ValueError(f"length must be a positive integer, got {st['length']!r}")
                    mod = SK.RepeatPadStage(shape[-1], int(st["length"]))
            elif kind == "kaldi_stft":
                if state != "audio":
                    raise ValueError("a transform must come right after the input")
                if st["window"] not in KALDI_WINDOWS:
                    raise ValueError(f"window must be one of {KALDI_WINDOWS}, got {st['window']!r}")
                mod = SK.KaldiSTFTStage(shape[-1], int(st["win_length"]), int(st["hop_length"]),
                                        st["window"], bool(st["remove_dc_offset"]),
                                        float(st["preemphasis"]), bool(st["round_to_power_of_two"]),
                                        bool(st["snip_edges"]), st["precision"])
                if mod.frames <= 0:
                    raise ValueError(f"num_samples={shape[-1]} gives no frames")
                n_fft, state, power_p = mod.n_fft, "power", 2.0
            elif kind in ("kaldi_mel", "speechbrain_mel"):
                if state != "power" or n_fft == 0:
                    raise ValueError(f"{kind} needs a power spectrum of a plain stft or kaldi_stft before it")
                if kind == "kaldi_mel":
                    fb = kaldi_mel_banks(int(st["n_mels"]), sr, n_fft, float(st["low_freq"]),
                                         float(st["high_freq"]))
                else:
                    fb = speechbrain_mel_filterbank(sr, n_fft, int(st["n_mels"]), float(st["fmin"]),
                                                    None if st["fmax"] is None else float(st["fmax"]))
                mod = S.MatrixStage(fb)
                state = "features"
            elif kind == "pad_to_multiple":
                if int(st["multiple"]) <= 0:
                    raise ValueError(f"multiple must be a positive integer, got {st['multiple']!r}")
                mod = SK.PadToMultipleStage(int(st["multiple"]), float(st["value"]), shape[-1])
            elif kind == "power":
                raise ValueError("power must directly follow a transform (stft or cqt)")
            elif kind == "mel":
                if state != "power" or n_fft == 0:
                    raise ValueError("mel needs a power/magnitude spectrum of a plain stft "
                                     "(freq_scale 'no', default freq_bins) right before it")
                fmax = st["fmax"] if st["fmax"] is not None else sr / 2
                if fmax > sr / 2:
                    raise ValueError(f"fmax: {fmax} Hz is above the Nyquist frequency {sr / 2} Hz")
                if not 0 <= st["fmin"] < fmax:
                    raise ValueError(f"fmin: need 0 <= fmin < fmax, got {st['fmin']}")
                mod = S.MatrixStage(mel_filterbank(sr, n_fft, int(st["n_mels"]), float(st["fmin"]),
                                                   float(fmax), bool(st["htk"]), st["norm"]))
                state = "features"
            elif kind == "mfcc":
                if not log_domain or state == "complex" or len(shape) != 2:
                    raise ValueError("mfcc (a DCT over features) needs log/db features before it")
                mod = S.MatrixStage(dct_matrix(shape[0], int(st["n_mfcc"]), st["norm"]))
                db_unit = None
                cepstral = True
            elif kind in ("log", "log10", "db"):
                if state in ("audio", "complex"):
                    raise ValueError(f"{kind} needs a power/magnitude spectrum or features before it")
                if log_domain:
                    raise ValueError("the features are already in the log domain")
                if kind == "db":
                    if not st["amin"] > 0:
                        raise ValueError(f"amin must be positive, got {st['amin']}")
                    top = -1.0 if st["top_db"] is None else float(st["top_db"])
                    if st["top_db"] is not None and top < 0:
                        raise ValueError(f"top_db must be non-negative or None, got {top}")
                    mod = S.DbStage(st["ref"], st["amin"], top, st["multiplier"])
                    db_unit = (20.0 / power_p) / float(st["multiplier"])
                else:
                    floor = 0.0 if st["floor"] is None else float(st["floor"])
                    if floor < 0 or (floor == 0 and float(st["offset"]) <= 0):
                        raise ValueError("floor: give a positive floor and/or a positive offset "
                                         "(log of 0 is -inf)")
                    base = 10.0 if kind == "log10" else math.e
                    mod = S.LogStage(base, floor, float(st["offset"]))
                    db_unit = (20.0 / power_p) * (1.0 if base == 10.0 else 1.0 / math.log(10.0))
                log_domain = True
            elif kind == "dynamic_range":
                if not log_domain:
                    raise ValueError("dynamic_range clamps log features: put a log stage first")
                mod = S.DynamicRangeStage(float(st["range"]))
            elif kind == "affine":
                mod = S.AffineStage(float(st["scale"]), float(st["offset"]))
                if db_unit is not None:
                    db_unit = db_unit / abs(float(st["scale"])) if st["scale"] != 0 else None
            elif kind == "standardize":
                std = np.atleast_1d(np.asarray(st["std"], dtype=np.float64))
                mean = np.atleast_1d(np.asarray(st["mean"], dtype=np.float64))
                for name, v in (("mean", mean), ("std", std)):
                    if v.size not in (1, shape[0]):
                        raise ValueError(f"{name} must be a number or {shape[0]} values, got {v.size}")
                if np.any(std <= 0):
                    raise ValueError("std must be positive")
                mod = S.StandardizeStage(mean, std)
                db_unit = db_unit * float(std[0]) if (db_unit is not None and std.size == 1) else None
            elif kind == "normalize":
                if st["mode"] not in ("per_feature", "global"):
                    raise ValueError(f"mode must be 'per_feature' or 'global', got {st['mode']!r}")
                vf = 0 if st["valid_frames"] is None else int(st["valid_frames"])
                if vf < 0 or vf > shape[-1] or vf == 1:
                    raise ValueError(f"valid_frames must be in 2..{shape[-1]}, got {vf}")
                cls = S.NormalizeStage
                mod = cls(st["mode"] == "per_feature", float(st["eps"]), bool(st["unbiased"]), vf)
                db_unit = None
            elif kind == "trim_frames":
                start, end = int(st["start"]), int(st["end"])
                if start < 0 or end < 0 or start + end >= shape[-1]:
                    raise ValueError(f"start/end must be >= 0 and leave frames, got {start}/{end} of {shape[-1]}")
                mod = S.TrimFramesStage(start, end)
            elif kind == "fix_frames":
                if st["frames"] is None or int(st["frames"]) <= 0:
                    raise ValueError(f"frames must be a positive integer, got {st['frames']!r}")
                mod = S.FixFramesStage(int(st["frames"]), float(st["value"]), shape[-1])
            elif kind == "time_major":
                mod = S.TimeMajorStage()
            else:  # pragma: no cover - normalize_spec refuses unknown types
                raise ValueError("unknown stage")
            if kind not in ("input", "kaldi_stft") + TRANSFORMS + AUDIO_STAGES and state in ("audio",):
                raise ValueError("needs a transform (stft or cqt) before it")
        except ValueError as exc:
            msg = str(exc)
            if msg.startswith("stages["):
                raise
            raise _err(i, kind, msg) from None
        shape = mod.out_shape(shape)
        if any(d <= 0 for d in shape):
            raise _err(i, kind, f"output shape {shape} is empty: num_samples={n} is too short")
        modules.append(mod)
        i += 1
    if state == "audio":
        raise ValueError("stages: a frontend needs a transform stage (stft, cqt or kaldi_stft)")
    kind_out = "cepstral" if cepstral else ("log" if log_domain else "linear")
    return CompiledSpec(modules, tuple(shape), kind_out, db_unit,
                        in_dtype, in_ch)


def _cqt_layer(st: Dict[str, Any], sr: float, n: int) -> nn.Module:
    from .layers.cqt import CQT1992v2, CQT2010v2
    common = dict(sr=sr, hop_length=st["hop_length"], fmin=st["fmin"], fmax=st["fmax"],
                  n_bins=st["n_bins"], bins_per_octave=st["bins_per_octave"],
                  filter_scale=st["filter_scale"], window=st["window"], pad_mode=st["pad_mode"],
                  output_format="Complex", normalization_type=st["normalization_type"],
                  num_samples=n, verbose=False)
    if st["kind"] == "1992v2":
        return CQT1992v2(norm=st["norm"], center=st["center"], **common)
    if st["kind"] == "2010v2":
        return CQT2010v2(basis_norm=st["basis_norm"], earlydownsample=st["earlydownsample"], **common)
    raise ValueError(f"kind must be '1992v2' or '2010v2', got {st['kind']!r}")
