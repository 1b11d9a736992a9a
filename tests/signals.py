"""Deterministic test signals (float32 numpy, mono).

Every generator has the signature ``gen(sr, seconds) -> np.ndarray[float32]`` and is
fully deterministic (fixed seeds), so a failing comparison can be reproduced exactly.
``SIGNALS`` maps a short name to the generator.
"""
from __future__ import annotations

import numpy as np


def _t(sr: float, seconds: float) -> np.ndarray:
    n = int(round(sr * seconds))
    return np.arange(n, dtype=np.float64) / float(sr)


def speech_like(sr: float, seconds: float) -> np.ndarray:
    """Voiced-speech caricature: a glottal-pulse-ish harmonic source (1/k^1.2 harmonics of a
    slowly gliding f0 around 120 Hz), shaped by three moving formant-like resonance
    envelopes, syllable-rate amplitude modulation, a little breath noise, and exact silent
    gaps (digital zeros) between "words"."""
    t = _t(sr, seconds)
    rng = np.random.default_rng(1234)
    f0 = 120.0 + 15.0 * np.sin(2 * np.pi * 0.7 * t) + 8.0 * np.sin(2 * np.pi * 3.1 * t)
    phase0 = 2 * np.pi * np.cumsum(f0) / sr
    nyq = sr / 2.0
    # Formant centres move slowly (vowel changes); bandwidths ~ 80-200 Hz.
    formants = [
        (600.0 + 200.0 * np.sin(2 * np.pi * 1.3 * t), 90.0),
        (1500.0 + 400.0 * np.sin(2 * np.pi * 0.9 * t + 1.0), 120.0),
        (2600.0 + 200.0 * np.sin(2 * np.pi * 0.5 * t + 2.0), 180.0),
    ]
    y = np.zeros_like(t)
    n_harm = int(nyq // 100.0)
    for k in range(1, n_harm + 1):
        fk = k * f0
        alive = fk < 0.95 * nyq
        if not alive.any():
            break
        gain = np.zeros_like(t)
        for fc, bw in formants:
            gain += 1.0 / (1.0 + ((fk - fc) / bw) ** 2)
        gain = (0.05 + gain) / k ** 1.2
        y += np.where(alive, gain * np.sin(k * phase0), 0.0)
    # Syllable-rate envelope (~4 Hz) and breath noise.
    env = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t) ** 2
    y = y * env + 0.01 * rng.standard_normal(t.shape)
    # Silent gaps: two stretches of exact zeros with 10 ms raised-cosine fades.
    n = t.shape[0]
    mask = np.ones(n)
    fade = max(1, int(0.01 * sr))
    for start_frac, len_frac in ((0.3, 0.12), (0.7, 0.08)):
        a = int(start_frac * n)
        b = min(n, a + int(len_frac * n))
        mask[a:b] = 0.0
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
        lo = max(0, a - fade)
        mask[lo:a] *= ramp[::-1][: a - lo]
        hi = min(n, b + fade)
        mask[b:hi] *= ramp[: hi - b]
    y = y * mask
    y = 0.5 * y / np.max(np.abs(y))
    return y.astype(np.float32)


def tones(sr: float, seconds: float) -> np.ndarray:
    """Sum of three pure tones (440, 1234.5, 3000 Hz) with different amplitudes."""
    t = _t(sr, seconds)
    y = (0.5 * np.sin(2 * np.pi * 440.0 * t)
         + 0.25 * np.sin(2 * np.pi * 1234.5 * t + 0.3)
         + 0.1 * np.sin(2 * np.pi * min(3000.0, 0.4 * sr) * t + 1.1))
    return y.astype(np.float32)


def pure_tone(sr: float, seconds: float, freq: float = 1000.0) -> np.ndarray:
    """Single sine of ``freq`` Hz, amplitude 0.8."""
    t = _t(sr, seconds)
    return (0.8 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def chirp(sr: float, seconds: float) -> np.ndarray:
    """Exponential sweep from 50 Hz to 0.45 sr."""
    t = _t(sr, seconds)
    f1, f2 = 50.0, 0.45 * sr
    dur = max(seconds, 1e-9)
    k = np.log(f2 / f1) / dur
    ph = 2 * np.pi * f1 * (np.exp(k * t) - 1.0) / k
    return (0.7 * np.sin(ph)).astype(np.float32)


def white_noise(sr: float, seconds: float) -> np.ndarray:
    """Gaussian white noise, std 0.3, fixed seed."""
    n = int(round(sr * seconds))
    return (0.3 * np.random.default_rng(42).standard_normal(n)).astype(np.float32)


def int16_speech(sr: float, seconds: float) -> np.ndarray:
    """The speech-like signal quantised to 16-bit PCM and scaled back to [-1, 1)."""
    y = speech_like(sr, seconds)
    q = np.clip(np.round(y.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int16)
    return (q.astype(np.float32) / 32768.0).astype(np.float32)


SIGNALS = {
    "speech": speech_like,
    "tones": tones,
    "tone1k": pure_tone,
    "chirp": chirp,
    "noise": white_noise,
    "int16": int16_speech,
}
