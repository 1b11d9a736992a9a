"""WAV files in and out of bundles: read 16-bit PCM / 32-bit float RIFF WAVE, turn a clip
into a bundle's input item following its manifest (sample rate, channels, length policy,
dtype), and write features as ``.npy``. numpy only (bottom of the package order); used by
``nnaudio-export run`` and ``examples/serve_ort.py``.
"""
import os
from pathlib import Path
from typing import Any, Dict, Tuple

import numpy as np


class ClipError(ValueError):
    """A WAV file that cannot be fed to the bundle."""


def read_wav(path: Path) -> Tuple[int, np.ndarray]:
    """(sample_rate, samples (frames, channels)) of a 16-bit PCM (int16) or 32-bit float
    (float32) RIFF/WAVE file, WAVE_FORMAT_EXTENSIBLE included."""
    data = Path(path).read_bytes()
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ClipError(f"{path}: not a RIFF/WAVE file")
    pos, fmt, body = 12, None, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        start = pos + 8
        if cid == b"fmt ":
            fmt = data[start:start + size]
        elif cid == b"data":
            body = data[start:start + size] if size not in (0, 0xFFFFFFFF) else data[start:]
        pos = start + size + (size & 1)
    if fmt is None or len(fmt) < 16:
        raise ClipError(f"{path}: no fmt chunk")
    if body is None:
        raise ClipError(f"{path}: no data chunk")
    tag, channels = int.from_bytes(fmt[0:2], "little"), int.from_bytes(fmt[2:4], "little")
    sr, bits = int.from_bytes(fmt[4:8], "little"), int.from_bytes(fmt[14:16], "little")
    if tag == 0xFFFE and len(fmt) >= 26:
        tag = int.from_bytes(fmt[24:26], "little")
    if (tag, bits) == (1, 16):
        dtype = np.dtype("<i2")
    elif (tag, bits) == (3, 32):
        dtype = np.dtype("<f4")
    else:
        raise ClipError(f"{path}: unsupported WAV encoding (format tag {tag}, {bits} bits); "
                        "expected 16-bit PCM or 32-bit float")
    if channels < 1:
        raise ClipError(f"{path}: invalid channel count {channels}")
    frames = len(body) // (dtype.itemsize * channels)
    x = np.frombuffer(body, dtype=dtype, count=frames * channels).reshape(frames, channels)
    return sr, x.astype(dtype.newbyteorder("="))


def prepare(path: Path, manifest: Dict[str, Any]) -> np.ndarray:
    """One clip as the bundle's input item: (N,) or (C, N) of the manifest's dtype."""
    sr, x = read_wav(path)
    want_sr = int(round(float(manifest["sample_rate"])))
    if sr != want_sr:
        raise ClipError(f"{path.name}: sample rate {sr} Hz, the bundle expects {want_sr} Hz "
                        f"(expected {want_sr}, got {sr}); resample first")
    shape = manifest["input"]["shape"]
    channels = int(shape[1]) if len(shape) == 3 else 1
    if x.shape[1] != channels:
        raise ClipError(f"{path.name}: expected {channels} channel(s), got {x.shape[1]}")
    n = int(manifest["num_samples"])
    policy = manifest.get("length_policy", "exact")
    if len(x) != n:
        if policy != "pad_or_trim":
            raise ClipError(f"{path.name}: expected {n} samples ({n / want_sr:.3f} s), got {len(x)} "
                            f"({len(x) / want_sr:.3f} s); the bundle's length_policy is '{policy}'")
        x = x[:n] if len(x) > n else np.concatenate([x, np.zeros((n - len(x), channels), x.dtype)])
    if manifest["input"]["dtype"] == "float32":
        x = x.astype(np.float32) / 32768.0 if x.dtype == np.int16 else x.astype(np.float32)
    elif x.dtype != np.int16:
        x = np.clip(np.rint(x.astype(np.float32) * 32768.0), -32768, 32767).astype(np.int16)
    x = np.ascontiguousarray(x.T)  # (C, N)
    return x[0] if channels == 1 else x


def save_npy(path: Path, arr: np.ndarray) -> None:
    """Write ``arr`` as float32 ``.npy`` atomically (a temporary file beside it, renamed)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(arr, dtype=np.float32))
    os.replace(tmp, path)
