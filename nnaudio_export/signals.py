"""Deterministic test signals (float32 numpy, mono), for parity checks, example inputs of
exports, benchmarks and the test suite.

Every generator is ``gen(num_samples, sample_rate, ...) -> np.ndarray[float32]`` and fully
deterministic (fixed seeds), so a failing comparison can be reproduced exactly. Two named
sets:

- :data:`SIGNALS` (speech, tones, chirp, noise): what ``nx.verify`` and the exporters feed;
- :data:`TEST_SIGNALS` (speech, tones, tone1k, chirp, noise, int16): the test suite's set,
  whose tolerances were measured on exactly these waveforms.
"""
from typing import Callable, Dict, Sequence

import numpy as np


def _t(num_samples: int, sample_rate: float) -> np.ndarray:
    return np.arange(int(num_samples)) / float(sample_rate)


def speech_like(num_samples: int, sample_rate: float, seed: int = 0) -> np.ndarray:
    """Glottal-pulse-like harmonics (f0 gliding 100-180 Hz) shaped by two moving formants,
    syllable envelopes and stretches of digital silence."""
    rng = np.random.default_rng(seed)
    t = _t(num_samples, sample_rate)
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


def _silence_mask(n: int, sample_rate: float) -> np.ndarray:
    """Two stretches of exact zeros (at 30 % and 70 % of the clip) with 10 ms
    raised-cosine fades."""
    mask = np.ones(n)
    fade = max(1, int(0.01 * sample_rate))
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
    for start_frac, len_frac in ((0.3, 0.12), (0.7, 0.08)):
        a = int(start_frac * n)
        b = min(n, a + int(len_frac * n))
        mask[a:b] = 0.0
        lo = max(0, a - fade)
        mask[lo:a] *= ramp[::-1][: a - lo]
        hi = min(n, b + fade)
        mask[b:hi] *= ramp[: hi - b]
    return mask


def formant_speech(num_samples: int, sample_rate: float, seed: int = 1234) -> np.ndarray:
    """Voiced-speech caricature: a glottal-pulse-ish harmonic source (1/k^1.2 harmonics of a
    slowly gliding f0 around 120 Hz), shaped by three moving formant-like resonance
    envelopes, syllable-rate amplitude modulation, a little breath noise, and exact silent
    gaps (digital zeros) between "words"."""
    t = _t(num_samples, sample_rate)
    rng = np.random.default_rng(seed)
    f0 = 120.0 + 15.0 * np.sin(2 * np.pi * 0.7 * t) + 8.0 * np.sin(2 * np.pi * 3.1 * t)
    phase0 = 2 * np.pi * np.cumsum(f0) / sample_rate
    nyq = sample_rate / 2.0
    formants = [  # centres move slowly (vowel changes); bandwidths ~ 80-200 Hz
        (600.0 + 200.0 * np.sin(2 * np.pi * 1.3 * t), 90.0),
        (1500.0 + 400.0 * np.sin(2 * np.pi * 0.9 * t + 1.0), 120.0),
        (2600.0 + 200.0 * np.sin(2 * np.pi * 0.5 * t + 2.0), 180.0),
    ]
    y = np.zeros_like(t)
    for k in range(1, int(nyq // 100.0) + 1):
        fk = k * f0
        alive = fk < 0.95 * nyq
        if not alive.any():
            break
        gain = np.zeros_like(t)
        for fc, bw in formants:
            gain += 1.0 / (1.0 + ((fk - fc) / bw) ** 2)
        gain = (0.05 + gain) / k ** 1.2
        y += np.where(alive, gain * np.sin(k * phase0), 0.0)
    env = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t) ** 2          # syllable rate, ~4 Hz
    y = y * env + 0.01 * rng.standard_normal(t.shape)             # breath noise
    y = y * _silence_mask(t.shape[0], sample_rate)
    y = 0.5 * y / np.max(np.abs(y))
    return y.astype(np.float32)


def tones(num_samples: int, sample_rate: float,
          freqs: Sequence[float] = (110.0, 1000.0, None), amps: Sequence[float] = (0.3, 0.3, 0.3),
          phases: Sequence[float] = (0.0, 1.0, 2.0)) -> np.ndarray:
    """A sum of steady tones (default: one low, one mid, one at 0.23 x the sample rate,
    where ``None`` stands)."""
    t = _t(num_samples, sample_rate)
    y = sum(a * np.sin(2 * np.pi * (0.23 * sample_rate if f is None else f) * t + p)
            for f, a, p in zip(freqs, amps, phases))
    return np.asarray(y).astype(np.float32)


def three_tones(num_samples: int, sample_rate: float) -> np.ndarray:
    """440, 1234.5 and min(3000, 0.4 sr) Hz with amplitudes 0.5, 0.25, 0.1."""
    return tones(num_samples, sample_rate, (440.0, 1234.5, min(3000.0, 0.4 * sample_rate)),
                 (0.5, 0.25, 0.1), (0.0, 0.3, 1.1))


def pure_tone(num_samples: int, sample_rate: float, freq: float = 1000.0) -> np.ndarray:
    """Single sine of ``freq`` Hz, amplitude 0.8."""
    t = _t(num_samples, sample_rate)
    return (0.8 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def chirp(num_samples: int, sample_rate: float, f_start: float = 40.0, amplitude: float = 0.5,
          duration: float = 0.0) -> np.ndarray:
    """Exponential sweep from ``f_start`` to 0.45 x the sample rate over ``duration``
    seconds (0: the clip's, measured from the first to the last sample)."""
    t = _t(num_samples, sample_rate)
    dur = max(duration if duration > 0 else t[-1], 1e-3 if duration <= 0 else 1e-9)
    f1, f2 = f_start, 0.45 * sample_rate
    k = np.log(f2 / f1) / dur
    return (amplitude * np.sin(2 * np.pi * f1 * (np.exp(k * t) - 1) / k)).astype(np.float32)


def sweep(num_samples: int, sample_rate: float) -> np.ndarray:
    """:func:`chirp` from 50 Hz at amplitude 0.7 over ``num_samples / sample_rate`` s."""
    return chirp(num_samples, sample_rate, 50.0, 0.7, duration=num_samples / sample_rate)


def noise(num_samples: int, sample_rate: float, seed: int = 3, std: float = 0.1,
          clip: bool = True) -> np.ndarray:
    """White Gaussian noise (default -20 dBFS RMS, clipped to [-1, 1])."""
    y = std * np.random.default_rng(seed).standard_normal(int(num_samples))
    return (np.clip(y, -1, 1) if clip else y).astype(np.float32)


def white_noise(num_samples: int, sample_rate: float) -> np.ndarray:
    """Gaussian white noise, std 0.3, seed 42, not clipped."""
    return noise(num_samples, sample_rate, seed=42, std=0.3, clip=False)


def silence(num_samples: int, sample_rate: float) -> np.ndarray:
    return np.zeros(int(num_samples), dtype=np.float32)


def to_int16(x: np.ndarray) -> np.ndarray:
    """[-1, 1] float -> int16 PCM (scaled by 32767)."""
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)


def int16_speech(num_samples: int, sample_rate: float) -> np.ndarray:
    """:func:`formant_speech` quantised to 16-bit PCM (scaled by 32768) and back to [-1, 1)."""
    y = formant_speech(num_samples, sample_rate)
    q = np.clip(np.round(y.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int16)
    return (q.astype(np.float32) / 32768.0).astype(np.float32)


Generator = Callable[[int, float], np.ndarray]

SIGNALS: Dict[str, Generator] = {
    "speech": speech_like, "tones": tones, "chirp": chirp, "noise": noise,
}

TEST_SIGNALS: Dict[str, Generator] = {
    "speech": formant_speech,
    "tones": three_tones,
    "tone1k": pure_tone,
    "chirp": sweep,
    "noise": white_noise,
    "int16": int16_speech,
}


def clip(name: str, sample_rate: float, seconds: float) -> np.ndarray:
    """The :data:`TEST_SIGNALS` generator ``name`` for ``seconds`` at ``sample_rate``."""
    return TEST_SIGNALS[name](int(round(sample_rate * seconds)), sample_rate)


def spectrum(name: str, freq_bins: int, num_frames: int, sample_rate: float) -> np.ndarray:
    """Complex ``(freq_bins, num_frames)`` spectrum of the :data:`SIGNALS` generator
    ``name``: a plain STFT (periodic Hann of ``n = 2 (freq_bins - 1)`` samples, hop
    ``n // 4``, no padding, not normalised), computed in float64. A realistic input for
    synthesis frontends (any spectrum of the shape would do: the inverse is linear)."""
    n = max(1, 2 * (int(freq_bins) - 1))
    hop = max(1, n // 4)
    x = SIGNALS[name](n + hop * (int(num_frames) - 1), sample_rate).astype(np.float64)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)
    frames = np.stack([x[t * hop: t * hop + n] for t in range(int(num_frames))], axis=1)
    return np.fft.rfft(frames * window[:, None], n=n, axis=0)[: int(freq_bins)]


def batch(num_samples: int, sample_rate: float, dtype: str = "float32", channels: int = 1,
          names=("speech", "tones", "noise")) -> np.ndarray:
    """(len(names), [channels,] num_samples) batch of the named :data:`SIGNALS` in ``dtype``."""
    rows = []
    for name in names:
        x = SIGNALS[name](num_samples, sample_rate)
        if channels > 1:
            x = np.stack([x * (1.0 - 0.3 * c) for c in range(channels)])
        rows.append(x)
    out = np.stack(rows)
    return to_int16(out) if dtype == "int16" else out.astype(np.float32)
