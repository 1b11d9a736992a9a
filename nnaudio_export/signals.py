"""Deterministic test signals for parity checks (float32, in [-1, 1])."""
from typing import Callable, Dict

import numpy as np


def speech_like(num_samples: int, sample_rate: float, seed: int = 0) -> np.ndarray:
    """Glottal-pulse-like harmonics (f0 gliding 100-180 Hz) shaped by two moving formants,
    syllable envelopes and stretches of digital silence."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / sample_rate
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    y = np.zeros(num_samples)
    for h in range(1, 30):
        fh = h * f0
        gain = (np.exp(-((fh - 700) / 250) ** 2) + 0.6 * np.exp(-((fh - 1800) / 400) ** 2)
                + 0.05 / h) * (fh < sample_rate / 2)
        y += gain * np.sin(h * phase)
    env = np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None) ** 0.5
    env *= (np.sin(2 * np.pi * 0.4 * t + 1.0) > -0.3)      # silent gaps
    y = y * env + 0.002 * rng.standard_normal(num_samples) * env
    return (0.5 * y / max(np.abs(y).max(), 1e-9)).astype(np.float32)


def tones(num_samples: int, sample_rate: float, seed: int = 1) -> np.ndarray:
    """Three steady tones (one low, one mid, one near a quarter of the sample rate)."""
    t = np.arange(num_samples) / sample_rate
    freqs = (110.0, 1000.0, 0.23 * sample_rate)
    y = sum(0.3 * np.sin(2 * np.pi * f * t + i) for i, f in enumerate(freqs))
    return (y / 1.0).astype(np.float32)


def chirp(num_samples: int, sample_rate: float, seed: int = 2) -> np.ndarray:
    """Exponential sweep from 40 Hz to 0.45 sample rate."""
    t = np.arange(num_samples) / sample_rate
    dur = max(t[-1], 1e-3)
    f1, f2 = 40.0, 0.45 * sample_rate
    k = np.log(f2 / f1) / dur
    return (0.5 * np.sin(2 * np.pi * f1 * (np.exp(k * t) - 1) / k)).astype(np.float32)


def noise(num_samples: int, sample_rate: float, seed: int = 3) -> np.ndarray:
    """White Gaussian noise at -20 dBFS RMS."""
    rng = np.random.default_rng(seed)
    return np.clip(0.1 * rng.standard_normal(num_samples), -1, 1).astype(np.float32)


def silence(num_samples: int, sample_rate: float, seed: int = 4) -> np.ndarray:
    return np.zeros(num_samples, dtype=np.float32)


SIGNALS: Dict[str, Callable[..., np.ndarray]] = {
    "speech": speech_like, "tones": tones, "chirp": chirp, "noise": noise,
}


def to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)


def batch(num_samples: int, sample_rate: float, dtype: str = "float32", channels: int = 1,
          names=("speech", "tones", "noise")) -> np.ndarray:
    """(len(names), [channels,] num_samples) batch of the named signals in ``dtype``."""
    rows = []
    for i, name in enumerate(names):
        x = SIGNALS[name](num_samples, sample_rate)
        if channels > 1:
            x = np.stack([x * (1.0 - 0.3 * c) for c in range(channels)])
        rows.append(x)
    out = np.stack(rows)
    return to_int16(out) if dtype == "int16" else out.astype(np.float32)
