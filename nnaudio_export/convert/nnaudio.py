"""nnAudio 0.3.x / nnAudio2 2.0.x layers -> ours, trained kernels included.

:func:`from_nnaudio` reads a layer's arguments from its attributes, builds our layer with
them and copies every kernel tensor (so trained weights travel); the result computes the
same numbers (nnAudio's, bugs included: the model was trained on them) but scripts, traces
and exports with a fixed input length. :func:`convert_nnaudio` swaps every such layer of a
model in place.

What is not carried: the ``output_format`` / ``normalization_type`` a caller passes to
nnAudio's ``forward`` (ours fix them at construction: pass them here), the inverse STFT
kernels, and nnAudio's fallback to zero padding for inputs too short for reflect padding
(ours refuse such a ``num_samples``).
"""
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
from torch import nn

from ..checks import require
from ..layers import (CQT1992v2, CQT2010v2, MFCC, STFT, VQT, Gammatonegram, MelSpectrogram)
from ..layers.cqt import _norm_scale
from ..layers.vqt import VQTOctave

PACKAGES = ("nnAudio", "nnAudio2")
DEFAULT_SR = 22050.0  # nnAudio's default; its STFT/Mel/CQT1992v2 layers do not record sr


def _source(layer: nn.Module) -> Optional[str]:
    """The nnAudio layer type of ``layer`` (its class or the nearest listed base class), or
    None when it is not an nnAudio / nnAudio2 module."""
    for cls in type(layer).__mro__:
        if cls.__module__.split(".")[0] in PACKAGES and cls.__name__ in CONVERTERS:
            return cls.__name__
    return None


def _copy(dst: torch.Tensor, src: torch.Tensor, what: str) -> None:
    require(tuple(dst.shape) == tuple(src.shape), what,
            f"the nnAudio kernel has shape {list(src.shape)}, ours {list(dst.shape)}: "
            f"an argument was not read back correctly")
    with torch.no_grad():
        dst.copy_(src.detach().to(dst.dtype))


def _copy_dft(stft: STFT, kernel: torch.Tensor) -> None:
    """nnAudio's DFT kernels into our STFT, applied as they are (the direct conv, as nnAudio):
    trained kernels and nnAudio's float32 rounding of them travel (see STFT.load_kernel)."""
    _copy(stft.kernel, kernel, "n_fft")
    stft.load_kernel(kernel)


def _stacked(real: torch.Tensor, imag: torch.Tensor) -> torch.Tensor:
    return torch.cat([real.detach(), imag.detach()], dim=0)


def _bins_per_octave(freqs: np.ndarray, default: int = 12) -> int:
    if len(freqs) < 2:
        return default
    return int(round(1.0 / np.log2(float(freqs[1]) / float(freqs[0]))))


def _filter_scale(lengths, freqs: np.ndarray, sr: float, bins_per_octave: int) -> float:
    """The ``filter_scale`` nnAudio was built with, from its filter lengths at ``sr``:
    ``N_k = ceil(Q sr / f_k)`` puts ``Q`` in ``((N_k - 1) f_k / sr, N_k f_k / sr]`` for every
    bin; the shortest decimal ``filter_scale = Q (2 ** (1 / bpo) - 1)`` in all of them (the
    one a user typed) is taken, else the middle of the intersection."""
    n = np.asarray(lengths.detach().double().cpu() if torch.is_tensor(lengths) else lengths,
                   dtype=np.float64)
    f = np.asarray(freqs, dtype=np.float64)[:len(n)]
    lo, hi = float(np.max((n - 1) * f / sr)), float(np.min(n * f / sr))
    alpha = 2.0 ** (1.0 / bins_per_octave) - 1.0
    for digits in range(7):
        scale = round(0.5 * (lo + hi) * alpha, digits)
        if lo < float(scale) / alpha and np.all(np.ceil(float(scale) / alpha * sr / f) == n):
            return float(scale)
    return 0.5 * (lo + hi) * alpha


def _stft(layer, num_samples, sr, **_):
    ours = STFT(n_fft=int(layer.n_fft), win_length=layer.win_length,
                freq_bins=int(layer.wsin.shape[0]), hop_length=int(layer.stride),
                window=layer.window, center=bool(layer.center), pad_mode=layer.pad_mode,
                sr=sr, trainable=bool(layer.trainable), output_format=layer.output_format,
                num_samples=num_samples)
    _copy_dft(ours, _stacked(layer.wcos, layer.wsin))
    ours.bins2freq = [float(f) for f in layer.bins2freq]  # its freq_scale's, which we copy
    return ours


def _mel_kwargs(layer, sr) -> Dict:
    stft = layer.stft
    return dict(sr=sr, n_fft=int(layer.n_fft), win_length=stft.win_length,
                n_mels=int(layer.mel_basis.shape[0]), hop_length=int(layer.stride),
                window=stft.window, center=bool(layer.center), pad_mode=layer.pad_mode,
                power=float(layer.power), trainable_mel=bool(layer.trainable_mel),
                trainable_STFT=bool(layer.trainable_STFT))


def _copy_mel(ours: MelSpectrogram, layer) -> None:
    _copy_dft(ours.stft, _stacked(layer.stft.wcos, layer.stft.wsin))
    ours.load_mel_basis(layer.mel_basis)      # its values, and bands that follow its zeros


def _mel(layer, num_samples, sr, **_):
    ours = MelSpectrogram(num_samples=num_samples, **_mel_kwargs(layer, sr))
    _copy_mel(ours, layer)
    return ours


def _mfcc(layer, num_samples, sr, **_):
    top_db = layer.top_db
    ours = MFCC(n_mfcc=int(layer.m_mfcc), norm="ortho", ref=float(layer.ref.flatten()[0]),
                amin=float(layer.amin.flatten()[0]),
                top_db=None if top_db is None else float(top_db), num_samples=num_samples,
                **_mel_kwargs(layer.melspec_layer, sr))
    _copy_mel(ours.melspec_layer, layer.melspec_layer)
    return ours


def _cqt1992_into(ours: CQT1992v2, layer, normalization_type: str) -> None:
    """Copy nnAudio's CQT1992v2 kernels into ours as they are, its output scale applied
    after the conv as nnAudio does (``scaled_output``)."""
    lengths = layer.lenghts.detach().double().cpu().numpy()
    scale = torch.from_numpy(_norm_scale(normalization_type, lengths)[:, None])
    _copy(ours.kernel, _stacked(layer.cqt_kernels_real, layer.cqt_kernels_imag), "fmin")
    _copy(ours.output_scale, scale.to(ours.output_scale.dtype), "n_bins")
    ours.scaled_output = True


def _cqt1992_args(layer, sr: float) -> Dict:
    freqs = np.asarray(layer.frequencies, dtype=np.float64)
    bpo = _bins_per_octave(freqs)
    return dict(sr=sr, hop_length=int(layer.hop_length), fmin=float(freqs[0]),
                n_bins=len(freqs), bins_per_octave=bpo,
                filter_scale=_filter_scale(layer.lenghts, freqs, sr, bpo),
                pad_mode=layer.pad_mode, trainable=bool(layer.trainable),
                output_format=layer.output_format)


def _cqt1992(layer, num_samples, sr, normalization_type, **_):
    ours = CQT1992v2(center=bool(layer.center), normalization_type=normalization_type,
                     num_samples=num_samples, **_cqt1992_args(layer, sr))
    _cqt1992_into(ours, layer, normalization_type)
    return ours


def _check_octaves(layer, hops: List[int], factor: int, what: str) -> None:
    """Refuse, naming ``hop_length``, a multirate layer whose octave plan is not ours."""
    hop_e = int(layer.hop_length)
    want = [hop_e >> j for j in range(int(layer.n_octaves))]
    require(int(layer.downsample_factor) == factor and hops == want, "hop_length",
            f"{what} with hop_length {hop_e * int(layer.downsample_factor)} computes its "
            f"octaves with hops {want} after downsampling by {int(layer.downsample_factor)}, "
            f"which no exact plan reproduces (ours: {hops} after {factor}); use a hop_length "
            f"divisible by downsample_factor * 2 ** (n_octaves - 1)")


def _decimation_into(ours, layer) -> None:
    _copy(ours.lowpass_filter, layer.lowpass_filter.float(), "lowpass_filter")
    if int(layer.downsample_factor) > 1:
        _copy(ours.early_downsample_filter, layer.early_downsample_filter.float(),
              "early_downsample_filter")


def _nnaudio_scale(layer, normalization_type: str, dtype: torch.dtype) -> torch.Tensor:
    """nnAudio's multirate output scale: ``downsample_factor`` times the normalisation of
    the lengths at the downsampled rate (its level; sqrt(factor) too large for 'librosa')."""
    lengths = layer.lenghts.detach().double().cpu().numpy()
    scale = float(layer.downsample_factor) * _norm_scale(normalization_type, lengths)
    return torch.from_numpy(scale[:, None]).to(dtype)


def _cqt2010(layer, num_samples, sr, normalization_type, fix_nnaudio_bugs=False, **_):
    freqs = np.asarray(layer.frequencies, dtype=np.float64)
    bpo = _bins_per_octave(freqs)
    require(len(freqs) >= bpo, "n_bins",
            f"CQT2010v2 with n_bins {len(freqs)} below bins_per_octave builds bins below fmin; "
            f"not reproduced")
    factor = int(layer.downsample_factor)
    ours = CQT2010v2(sr=sr, hop_length=int(layer.hop_length) * factor, fmin=float(freqs[0]),
                     n_bins=len(freqs), bins_per_octave=bpo,
                     filter_scale=_filter_scale(layer.lenghts, freqs, sr / factor, bpo),
                     earlydownsample=factor > 1, pad_mode=layer.pad_mode,
                     trainable=bool(layer.trainable), output_format=layer.output_format,
                     normalization_type=normalization_type, num_samples=num_samples)
    hops = [o.hop for o in ours.octaves] if not any(o.deep for o in ours.octaves) else []
    _check_octaves(layer, hops, ours.downsample_factor, "nnAudio's CQT2010v2")
    _copy(ours.kernel_top, _stacked(layer.cqt_kernels_real, layer.cqt_kernels_imag), "fmin")
    _decimation_into(ours, layer)
    if not fix_nnaudio_bugs:
        _copy(ours.scale, _nnaudio_scale(layer, normalization_type, ours.scale.dtype), "n_bins")
    return ours


def _vqt(layer, num_samples, sr, normalization_type, **_):
    common = dict(sr=float(layer.sr), hop_length=int(layer.hop_length),
                  filter_scale=float(layer.filter_scale), bins_per_octave=int(layer.bins_per_octave),
                  basis_norm=layer.basis_norm, gamma=float(layer.gamma), pad_mode=layer.pad_mode,
                  trainable=bool(layer.trainable), output_format=layer.output_format,
                  normalization_type=normalization_type, num_samples=num_samples)
    if hasattr(layer, "cqt"):  # nnAudio2, gamma == 0: a CQT1992v2 inside
        freqs = np.asarray(layer.cqt.frequencies, dtype=np.float64)
        ours = VQT(fmin=float(freqs[0]), n_bins=len(freqs), multirate=False, **common)
        _cqt1992_into(ours.transform, layer.cqt, normalization_type)
        return ours
    return _vqt_multirate(layer, common)


def _vqt_multirate(layer, common: Dict) -> VQT:
    factor = int(layer.downsample_factor)
    freqs = np.asarray(layer.frequencies, dtype=np.float64)
    common["hop_length"] = int(layer.hop_length) * factor
    ours = VQT(fmin=float(freqs[0]), n_bins=int(layer.n_bins), earlydownsample=factor > 1,
               multirate=True, **common)
    transform = ours.transform
    require(int(layer.n_bins) >= int(layer.bins_per_octave), "n_bins",
            f"nnAudio's VQT with n_bins {int(layer.n_bins)} below bins_per_octave builds bins "
            f"below fmin; not reproduced")
    _check_octaves(layer, [o.hop for o in transform.octaves], transform.downsample_factor,
                   "nnAudio's VQT")
    octaves = []
    for j, old in enumerate(transform.octaves):  # nnAudio2's widths may differ from ours
        kernel = _stacked(getattr(layer, f"cqt_kernels_real_{j}"),
                          getattr(layer, f"cqt_kernels_imag_{j}")).double().cpu().numpy()
        octaves.append(VQTOctave(kernel, old.hop, old.bin_start, old.n_bins, old.decimate,
                                 old.pad_mode, bool(layer.trainable), "single",
                                 transform.scale.dtype))
    transform.octaves = nn.ModuleList(octaves)
    _decimation_into(transform, layer)
    _copy(transform.scale, _nnaudio_scale(layer, common["normalization_type"],
                                          transform.scale.dtype), "n_bins")
    ours.refresh_lengths(common["num_samples"])
    return ours


def _gammatone(layer, num_samples, sr, **_):
    stft = layer.stft
    ours = Gammatonegram(sr=sr, n_fft=int(layer.n_fft), win_length=stft.win_length,
                         n_bins=int(layer.gammatone_basis.shape[0]), hop_length=int(layer.stride),
                         window=stft.window, center=bool(layer.center), pad_mode=layer.pad_mode,
                         power=float(layer.power), trainable_bins=bool(layer.trainable_bins),
                         trainable_STFT=bool(layer.trainable_STFT), num_samples=num_samples)
    _copy_dft(ours.stft, _stacked(stft.wcos, stft.wsin))
    _copy(ours.gammatone_basis, layer.gammatone_basis, "n_bins")
    return ours


CONVERTERS: Dict[str, Callable] = {
    "STFT": _stft, "MelSpectrogram": _mel, "MFCC": _mfcc, "CQT1992v2": _cqt1992,
    "CQT2010v2": _cqt2010, "VQT": _vqt, "Gammatonegram": _gammatone}


def from_nnaudio(layer: nn.Module, num_samples: Optional[int] = None, *,
                 sr: Optional[float] = None, normalization_type: str = "librosa",
                 fix_nnaudio_bugs: bool = False) -> nn.Module:
    """Our layer computing what the nnAudio 0.3.x / nnAudio2 2.0.x ``layer`` computes.

    ``layer``: an ``STFT``, ``MelSpectrogram``, ``MFCC``, ``CQT1992v2`` (or ``CQT``),
    ``CQT2010v2``, ``VQT`` or ``Gammatonegram`` of ``nnAudio.features`` /
    ``nnAudio.Spectrogram`` / ``nnAudio2.features``, trained or not: its arguments are read
    from its attributes and its kernel tensors copied (a kernel trainable there is an
    ``nn.Parameter`` here). ``num_samples`` fixes the input length (shape-static export).

    ``sr``: only STFT, MelSpectrogram, MFCC, CQT and Gammatonegram layers do not record
    their sample rate; the numbers do not depend on it (the kernels are copied) but the
    layer's ``sr`` does (default 22050, nnAudio's); CQT2010v2 with ``fix_nnaudio_bugs``
    needs the right one. ``normalization_type``: what the model passes to the CQT / VQT's
    ``forward`` (default 'librosa', nnAudio's). ``fix_nnaudio_bugs=True``: a CQT2010v2 that
    downsamples early gets our level (librosa's; nnAudio's is ``sqrt(downsample_factor)``
    too large), not nnAudio's.

    Raises ``ValueError`` naming the layer type or the argument we do not reproduce.
    """
    kind = _source(layer)
    if kind is None:
        raise ValueError(f"layer: {type(layer).__module__}.{type(layer).__name__} is not a "
                         f"supported nnAudio layer; supported: {', '.join(CONVERTERS)}")
    sr = float(getattr(layer, "sr", None) or sr or DEFAULT_SR) if kind == "VQT" else \
        float(sr or DEFAULT_SR)
    ours = CONVERTERS[kind](layer, num_samples=num_samples, sr=sr,
                            normalization_type=normalization_type,
                            fix_nnaudio_bugs=fix_nnaudio_bugs)
    tensors = list(layer.parameters()) + list(layer.buffers())
    if tensors:
        ours = ours.to(tensors[0].device)
    return ours.train(layer.training)


def _unsupported(module: nn.Module) -> Optional[str]:
    name = type(module).__module__.split(".")[0]
    if name in PACKAGES and _source(module) is None:
        return f"{type(module).__module__}.{type(module).__name__}"
    return None


def convert_nnaudio(model: nn.Module, num_samples: Optional[int] = None, **kwargs) -> nn.Module:
    """Swap every nnAudio / nnAudio2 layer inside ``model`` for ours (:func:`from_nnaudio`,
    same ``kwargs``), in place, and return ``model`` (or the converted layer when ``model``
    is one itself). Every layer gets the same ``num_samples``: the model's input length.
    Raises ``ValueError`` naming any other nnAudio module found (nothing is changed then)."""
    if _source(model) is not None:
        return from_nnaudio(model, num_samples, **kwargs)
    found, bad = [], []

    def walk(parent: nn.Module, prefix: str) -> None:
        for name, child in parent.named_children():
            if _source(child) is not None:
                found.append((parent, name))
            elif _unsupported(child):
                bad.append(f"{prefix}{name} ({_unsupported(child)})")
            else:
                walk(child, f"{prefix}{name}.")
    walk(model, "")
    if bad:
        raise ValueError(f"model: unsupported nnAudio layers {', '.join(bad)}; supported: "
                         f"{', '.join(CONVERTERS)}")
    converted: Dict[int, nn.Module] = {}  # a layer shared by several parents stays shared
    for parent, name in found:
        layer = getattr(parent, name)
        if id(layer) not in converted:
            converted[id(layer)] = from_nnaudio(layer, num_samples, **kwargs)
        setattr(parent, name, converted[id(layer)])
    return model
