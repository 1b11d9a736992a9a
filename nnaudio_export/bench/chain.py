"""A preset spec as the peers rebuild it (:class:`Chain`: transform + power + optional mel +
tail stages), the tail stages in numpy and torch, and torch.stft with torchaudio's recipe
(:class:`TorchStftFrontend`), for :mod:`.peers`."""
import math
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch


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
