"""Hugging Face feature extractors -> :class:`~nnaudio_export.builder.Frontend`.

:func:`from_hf` reads a transformers feature extractor (the object, its
``preprocessor_config.json``, or a model directory holding one) and builds the frontend that
computes the same features for one clip, as a spec of this package's stages (so it exports,
verifies and serialises like a preset). transformers itself is not needed to read a config.

Supported (``feature_extractor_type``), each reproducing the extractor's default call on one
clip of ``num_samples`` samples:

- ``WhisperFeatureExtractor``: any ``feature_size``, ``n_fft``, ``hop_length``,
  ``chunk_length``, ``sampling_rate`` -> ``input_features[0]`` (mels, frames); the
  input is ``chunk_length`` seconds (``length_policy`` 'pad_or_trim', as the extractor).
- ``ASTFeatureExtractor`` (16 kHz) -> ``input_values[0]`` (max_length, num_mel_bins).
- ``ClapFeatureExtractor`` (truncation 'fusion' or 'rand_trunc', padding 'repeatpad',
  'repeat' or 'pad', clips up to ``max_length_s``) -> ``input_features[0, 0]`` (frames, mels): one copy of fusion's four.
- ``SeamlessM4TFeatureExtractor`` -> ``input_features[0]`` (frames // stride,
  stride * num_mel_bins): Kaldi fbank on x * 32768, per-mel-bin normalisation, padding to
  an even frame count, stride stacking.
- ``Wav2Vec2FeatureExtractor`` (``do_normalize``) -> ``input_values[0]``: the clip,
  zero-mean unit-variance.
- ``SpeechT5FeatureExtractor`` -> the ``audio_target`` log-mel features (frames, mels)
  (its ``audio`` input path is Wav2Vec2's waveform normalisation).

Every attribute is either reproduced, checked against the value that makes it irrelevant, or
refused: an attribute or value we do not reproduce raises ``ValueError`` naming it, never a
silent mismatch.
"""
import json
import math
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

from ..builder import Frontend
from ..checks import is_int, is_number
from ..spec import FORMAT, FORMAT_VERSION, with_overrides

CONFIG_NAME = "preprocessor_config.json"
# Kaldi's log floor as transformers spells it (float32 epsilon).
KALDI_LOG_FLOOR = 1.192092955078125e-07
# Attributes that never change one clip's features (batch padding side and masks, the
# processor's bookkeeping).
BOOKKEEPING = ("feature_extractor_type", "processor_class", "padding_side",
               "return_attention_mask", "auto_map")
Source = Union[str, Path, Dict[str, Any], Any]


class ExtractorConfig:
    """An extractor's attributes with transformers' defaults filled in. Converters read
    them with ``[name]`` (marking them reproduced), :meth:`ignore` the ones that do not
    change a single clip's features, and :meth:`finish` refuses whatever is left."""

    def __init__(self, kind: str, given: Dict[str, Any], defaults: Dict[str, Any]):
        self.kind = kind
        self.values = {**defaults, **{k: v for k, v in given.items() if k not in BOOKKEEPING}}
        self.used: set = set()

    def __getitem__(self, name: str) -> Any:
        self.used.add(name)
        return self.values[name]

    def error(self, name: str, why: str) -> ValueError:
        return ValueError(f"{self.kind}.{name}={self.values.get(name)!r}: {why}")

    def require(self, name: str, ok: bool, why: str) -> None:
        self.used.add(name)
        if not ok:
            raise self.error(name, why)

    def number(self, name: str, low: float = -math.inf) -> float:
        value = self[name]
        if not is_number(value) or value < low:
            raise self.error(name, f"must be a finite number >= {low:g}")
        return float(value)

    def integer(self, name: str, low: int = 1) -> int:
        value = self[name]
        if not is_int(value) or value < low:
            raise self.error(name, f"must be an integer >= {low}")
        return int(value)

    def derived(self, name: str, expected: Any) -> None:
        """An attribute transformers computes from the others: accepted when it agrees."""
        self.used.add(name)
        if name in self.values and self.values[name] != expected:
            raise self.error(name, f"disagrees with the other attributes (they give {expected!r})")

    def ignore(self, *names: str) -> None:
        self.used.update(names)

    def finish(self) -> None:
        left = sorted(set(self.values) - self.used)
        if left:
            raise ValueError(f"{self.kind}: attribute(s) {left} are not reproduced by from_hf; "
                             "remove them or port the extractor by hand")


def read_config(source: Source) -> Dict[str, Any]:
    """The extractor's attributes (``to_dict()``) from the object, a dict, a
    ``preprocessor_config.json`` path or a directory holding one."""
    if isinstance(source, dict):
        config = dict(source)
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            path = path / CONFIG_NAME
        if not path.is_file():
            raise ValueError(f"from_hf: {path} is not a file (give a {CONFIG_NAME} or a model "
                             "directory holding one)")
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"from_hf: {path} is not valid JSON ({exc})") from None
        if not isinstance(config, dict):
            raise ValueError(f"from_hf: {path} must hold a JSON object")
    elif callable(getattr(source, "to_dict", None)):
        config = dict(source.to_dict())
        config.setdefault("feature_extractor_type", type(source).__name__)
    else:
        raise ValueError(f"from_hf: give a transformers feature extractor, a {CONFIG_NAME} path "
                         f"or a model directory, got {type(source).__name__}")
    kind = config.get("feature_extractor_type")
    if kind not in CONVERTERS:
        raise ValueError(f"feature_extractor_type={kind!r} is not supported; supported: "
                         f"{', '.join(sorted(CONVERTERS))}")
    return config


def _length(c: ExtractorConfig, num_samples: Optional[int], default: Optional[int]) -> int:
    if num_samples is None:
        if default is None:
            raise ValueError(f"{c.kind}: give seconds or num_samples (the extractor takes any "
                             "length; a frontend's input length is fixed)")
        return default
    return int(num_samples)


def _spec(c: ExtractorConfig, sample_rate: float, num_samples: int, stages: List[Dict[str, Any]],
          output: str, **top: Any) -> Dict[str, Any]:
    c.finish()
    return {"format": FORMAT, "format_version": FORMAT_VERSION,
            "name": f"hf_{c.kind[: -len('FeatureExtractor')].lower()}",
            "description": f"transformers {c.kind} as from_hf converted it: {output}",
            "reference": f"transformers {c.kind}(**config)(x, sampling_rate={sample_rate:g}).{output}",
            "sample_rate": sample_rate, "num_samples": num_samples, "stages": stages, **top}


def _stft(n_fft: int, hop: int) -> Dict[str, Any]:
    return {"type": "stft", "n_fft": n_fft, "hop_length": hop, "window": "hann", "center": True,
            "pad_mode": "reflect", "precision": "extended"}


def _mel(n_mels: int, n_fft: int, sr: float, fmin: float, fmax: float, htk: bool,
         norm: Optional[str], **extra: Any) -> Dict[str, Any]:
    """transformers' ``mel_filter_bank`` as a mel stage: its FFT bins are evenly spaced up to
    ``sampling_rate // 2`` exactly, so for an odd rate or ``n_fft`` they sit at
    ``k bin_rate / n_fft`` with ``bin_rate = n_fft (sr // 2) / (n_fft // 2)``, not the true
    ``k sr / n_fft``."""
    stage = {"type": "mel", "n_mels": n_mels, "fmin": fmin, "fmax": fmax, "htk": htk, "norm": norm, **extra}
    bin_rate = n_fft * (int(sr) // 2) / (n_fft // 2)
    if bin_rate != sr:
        stage["bin_rate"] = bin_rate
    return stage


def _kaldi(window: str) -> Dict[str, Any]:
    """transformers' Kaldi fbank frames: 400 / 160 samples at any rate, 512-point."""
    return {"type": "kaldi_stft", "win_length": 400, "hop_length": 160, "window": window,
            "remove_dc_offset": True, "preemphasis": 0.97, "round_to_power_of_two": True,
            "snip_edges": True, "precision": "extended"}


def _whisper(c: ExtractorConfig, num_samples: Optional[int]) -> Dict[str, Any]:
    """Conv STFT (periodic Hann, centre reflect), |X|^2, slaney mel 0..8000 Hz, last frame
    dropped, log10(max(x, 1e-10)), clamp at the item's max - 8, (x + 4) / 4. The bank spans
    0..8000 Hz at any rate: below 16 kHz its filters above the Nyquist frequency are empty
    or partial (transformers only warns), reproduced with the mel stage's
    ``allow_above_nyquist``."""
    n_mels, n_fft, hop = c.integer("feature_size"), c.integer("n_fft", 2), c.integer("hop_length")
    sr, chunk = c.integer("sampling_rate"), c.number("chunk_length", 0)
    c.require("dither", c.values["dither"] == 0, "random dither is not reproducible; use 0.0")
    c.require("padding_value", c.values["padding_value"] == 0,
              "bundles zero-pad shorter clips (length_policy 'pad_or_trim')")
    total = chunk * sr
    c.require("chunk_length", total == int(total) and total > 0,
              "chunk_length * sampling_rate must be a positive whole number of samples")
    total = int(total)
    c.derived("n_samples", total)
    c.derived("nb_max_frames", total // hop)
    if num_samples is not None and num_samples != total:
        raise c.error("chunk_length", f"the extractor pads / cuts every clip to {total} samples; "
                      f"give seconds=None (a bundle pads or cuts), not {num_samples} samples")
    stages = [_stft(n_fft, hop), {"type": "power", "exponent": 2.0},
              _mel(n_mels, n_fft, sr, 0.0, 8000.0, False, "slaney", allow_above_nyquist=sr < 16000),
              {"type": "trim_frames", "start": 0, "end": 1},
              {"type": "log10", "floor": 1e-10}, {"type": "dynamic_range", "range": 8.0},
              {"type": "affine", "scale": 0.25, "offset": 1.0}]
    return _spec(c, sr, total, stages, "input_features[0] (mels, frames); the clamp at max - 8 "
                 "per item", length_policy="pad_or_trim")


def _ast(c: ExtractorConfig, num_samples: Optional[int]) -> Dict[str, Any]:
    """Kaldi fbank (symmetric Hann) on [-1, 1] audio, ln, padded / cut to max_length
    frames, then (x - mean) / (2 std) when do_normalize."""
    c.require("sampling_rate", c.values["sampling_rate"] == 16000,
              "transformers' numpy and torchaudio paths differ at other rates (400 / 160 "
              "samples vs 25 / 10 ms); only 16000 is reproduced")
    n_mels, frames = c.integer("num_mel_bins", 3), c.integer("max_length")
    c.ignore("feature_size", "padding_value")   # frames are padded with zeros whatever they say
    stages = [_kaldi("hanning"), {"type": "kaldi_mel", "n_mels": n_mels, "low_freq": 20.0, "high_freq": 0.0},
              {"type": "log", "floor": KALDI_LOG_FLOOR},
              {"type": "fix_frames", "frames": frames, "value": 0.0}]
    if c["do_normalize"]:
        mean, std = c.number("mean"), c.number("std")
        c.require("std", std > 0, "must be positive")
        stages.append({"type": "affine", "scale": 1.0 / (2.0 * std), "offset": -mean / (2.0 * std)})
    else:
        c.ignore("mean", "std")
    stages.append({"type": "time_major"})
    n = _length(c, num_samples, 400 + 160 * (frames - 1))
    return _spec(c, 16000, n, stages, "input_values[0] (max_length, num_mel_bins)")


def _clap(c: ExtractorConfig, num_samples: Optional[int]) -> Dict[str, Any]:
    """Pad to max_length_s ('repeatpad', 'repeat' or 'pad'), periodic Hann STFT, |X|^2, mel (fusion: HTK without
    norm; rand_trunc: slaney), 10 log10(max(x, 1e-10)), time-major."""
    sr, hop, n_fft = c.integer("sampling_rate"), c.integer("hop_length"), c.integer("fft_window_size", 2)
    n_mels = c.integer("feature_size")
    total = c.number("max_length_s", 0) * sr
    c.require("max_length_s", total == int(total) and total > 0,
              "max_length_s * sampling_rate must be a positive whole number of samples")
    total = int(total)
    c.derived("nb_max_samples", total)
    c.derived("nb_frequency_bins", n_fft // 2 + 1)
    c.ignore("padding_value", "top_db")   # transformers uses neither on this path
    n = _length(c, num_samples, total)
    truncation = c["truncation"]
    c.require("truncation", truncation in ("fusion", "rand_trunc"), "one of 'fusion', 'rand_trunc'")
    if n > total:
        raise c.error("max_length_s", f"clips longer than {total} samples are cropped at random "
                      f"by transformers (not reproducible); got {n}")
    stages: List[Dict[str, Any]] = []
    if n < total:
        padding = c["padding"]
        c.require("padding", padding in ("repeatpad", "repeat", "pad"), "one of 'repeatpad', 'repeat', 'pad'")
        stages.append({"type": "repeat_pad", "length": total, "mode": padding})
    else:
        c.ignore("padding")
    fusion = truncation == "fusion"
    stages += [_stft(n_fft, hop), {"type": "power", "exponent": 2.0},
               _mel(n_mels, n_fft, sr, c.number("frequency_min", 0), c.number("frequency_max", 0), fusion,
                    None if fusion else "slaney"),
               {"type": "db", "ref": 1.0, "amin": 1e-10, "top_db": None}, {"type": "time_major"}]
    return _spec(c, sr, n, stages, "input_features[0, 0] (frames, mels)")


def _seamless(c: ExtractorConfig, num_samples: Optional[int]) -> Dict[str, Any]:
    """Kaldi fbank (povey) on x * 32768, ln, per-mel-bin (x - mean) / sqrt(var + 1e-7)
    (unbiased), zero frame to an even count, ``stride`` frames stacked, time-major."""
    sr, n_mels, stride = c.integer("sampling_rate"), c.integer("num_mel_bins", 3), c.integer("stride")
    c.require("sampling_rate", sr % 2 == 0, "the mel banks end at sampling_rate // 2: an odd "
              "rate is not reproduced")
    c.ignore("feature_size")    # transformers never reads it on this path
    stages = [{"type": "input", "scale": 32768.0}, _kaldi("povey"),
              {"type": "kaldi_mel", "n_mels": n_mels, "low_freq": 20.0, "high_freq": 0.0},
              {"type": "log", "floor": KALDI_LOG_FLOOR},
              {"type": "normalize", "mode": "per_feature", "eps": 1e-7, "unbiased": True,
               "eps_on": "variance"},
              {"type": "pad_to_multiple", "multiple": 2, "value": c.number("padding_value")},
              {"type": "stack_frames", "stride": stride}, {"type": "time_major"}]
    return _spec(c, sr, _length(c, num_samples, None), stages,
                 "input_features[0] (frames // stride, stride * num_mel_bins)")


def _wav2vec2(c: ExtractorConfig, num_samples: Optional[int]) -> Dict[str, Any]:
    """The clip itself, (x - mean) / sqrt(var + 1e-7) per item."""
    c.require("do_normalize", c.values["do_normalize"] is True,
              "without normalisation the model takes the raw clip: there is nothing to export")
    c.ignore("feature_size", "padding_value")   # one fixed-length clip is never padded
    stages = [{"type": "normalize_waveform", "eps": 1e-7}]
    sr = c.integer("sampling_rate")
    return _spec(c, sr, _length(c, num_samples, None), stages, "input_values[0] (num_samples,)")


def _speecht5(c: ExtractorConfig, num_samples: Optional[int]) -> Dict[str, Any]:
    """The ``audio_target`` features: periodic Hann STFT (centre reflect), |X|, slaney
    mel, log10(max(x, mel_floor)), time-major."""
    sr, n_mels = c.integer("sampling_rate"), c.integer("num_mel_bins", 3)
    c.require("win_function", c.values["win_function"] == "hann_window", "only 'hann_window'")
    size = c.integer("win_length") * sr // 1000
    hop = c.integer("hop_length") * sr // 1000
    n_fft = 1 << max(0, (size - 1).bit_length())
    c.derived("sample_size", size)
    c.derived("sample_stride", hop)
    c.derived("n_fft", n_fft)
    c.derived("n_freqs", n_fft // 2 + 1)
    c.require("win_length", size == n_fft, f"frames of {size} samples zero-padded at the end to "
              f"{n_fft} are not reproduced: win_length * sampling_rate / 1000 must be a power of two")
    c.require("hop_length", hop > 0, "must give at least one sample")
    # do_normalize and padding_value act on the 'audio' (waveform) path only.
    c.ignore("feature_size", "padding_value", "do_normalize")
    floor = c.number("mel_floor")
    c.require("mel_floor", floor > 0, "must be positive")
    stages = [_stft(n_fft, hop), {"type": "power", "exponent": 1.0},
              _mel(n_mels, n_fft, sr, c.number("fmin", 0), c.number("fmax", 0), False, "slaney"),
              {"type": "log10", "floor": floor}, {"type": "time_major"}]
    return _spec(c, sr, _length(c, num_samples, None), stages,
                 "audio_target features: input_values[0] of fe(audio_target=x) (frames, mels)")


# Each extractor's converter and transformers' defaults for its attributes.
CONVERTERS: Dict[str, Callable[[ExtractorConfig, Optional[int]], Dict[str, Any]]] = {
    "WhisperFeatureExtractor": _whisper,
    "ASTFeatureExtractor": _ast,
    "ClapFeatureExtractor": _clap,
    "SeamlessM4TFeatureExtractor": _seamless,
    "Wav2Vec2FeatureExtractor": _wav2vec2,
    "SpeechT5FeatureExtractor": _speecht5,
}
DEFAULTS: Dict[str, Dict[str, Any]] = {
    "WhisperFeatureExtractor": dict(feature_size=80, sampling_rate=16000, hop_length=160, chunk_length=30,
                                    n_fft=400, padding_value=0.0, dither=0.0),
    "ASTFeatureExtractor": dict(feature_size=1, sampling_rate=16000, num_mel_bins=128, max_length=1024,
                                padding_value=0.0, do_normalize=True, mean=-4.2677393, std=4.5689974),
    "ClapFeatureExtractor": dict(feature_size=64, sampling_rate=48000, hop_length=480, max_length_s=10,
                                 fft_window_size=1024, padding_value=0.0, frequency_min=0,
                                 frequency_max=14000, top_db=None, truncation="fusion", padding="repeatpad"),
    "SeamlessM4TFeatureExtractor": dict(feature_size=80, sampling_rate=16000, num_mel_bins=80,
                                        padding_value=0.0, stride=2),
    "Wav2Vec2FeatureExtractor": dict(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True),
    "SpeechT5FeatureExtractor": dict(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=False,
                                     num_mel_bins=80, hop_length=16, win_length=64, win_function="hann_window",
                                     fmin=80, fmax=7600, mel_floor=1e-10),
}


def hf_spec(source: Source, seconds: Optional[float] = None, num_samples: Optional[int] = None,
            precision: Optional[str] = None) -> Dict[str, Any]:
    """The spec :func:`from_hf` builds (see the module's docstring)."""
    config = read_config(source)
    kind = config["feature_extractor_type"]
    c = ExtractorConfig(kind, config, DEFAULTS[kind])
    if seconds is not None and num_samples is not None:
        raise ValueError("give seconds or num_samples, not both")
    if seconds is not None:
        if not is_number(seconds) or seconds <= 0:
            raise ValueError(f"seconds must be a positive finite number, got {seconds!r}")
        num_samples = int(round(float(seconds) * c.number("sampling_rate", 1)))
    if num_samples is not None and (not is_int(num_samples) or num_samples <= 0):
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    spec = CONVERTERS[kind](c, num_samples)
    if precision is not None:
        spec = with_overrides(spec, precision=precision)
    return spec


def from_hf(source: Source, seconds: Optional[float] = None, num_samples: Optional[int] = None,
            precision: Optional[str] = None) -> Frontend:
    """The :class:`Frontend` computing a transformers feature extractor's features for one
    clip of ``seconds`` (or ``num_samples``) of audio at the extractor's sampling rate.

    ``source``: the extractor object, a ``preprocessor_config.json`` path or a model
    directory. The length defaults to the extractor's own where it fixes one (Whisper:
    ``chunk_length``; AST: ``max_length`` frames; CLAP: ``max_length_s``); Seamless,
    Wav2Vec2 and SpeechT5 take any length, so give it. ``precision`` ('single' |
    'extended', default 'extended') is the transforms' precision. An attribute or value
    not reproduced raises ``ValueError`` naming it.
    """
    return Frontend.from_spec(hf_spec(source, seconds, num_samples, precision))
