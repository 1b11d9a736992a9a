"""Streaming frontends: a stateful, shape-static graph that takes audio in chunks and gives
the frames each chunk completes, equal to the offline frontend's frames.

:class:`StreamingFrontend` wraps a :class:`~nnaudio_export.builder.Frontend` whose stages
can stream (each stage declares how: ``Stage.streaming``; one that needs the whole clip makes
construction fail with a ``ValueError`` naming it). Its graph::

    (audio_chunk (B, N), chunk_length (B, 1), end (B, 1), state (B, S))
        -> (frames (B, ..., max_frames, ...), num_frames (B, 1) int64, next_state (B, S))

Each batch row is an independent stream. ``state`` is all zeros at a stream's start (so a
serving stack's zero-initialised implicit state starts a stream) and holds, per row, the
last ``tail`` samples (after the input stage's dtype conversion, scaling and downmix), the
number of samples seen (saturating at :data:`COUNTER_CAP`, far beyond any padding) and the
offset of the next frame's first sample from the end of the samples seen (relative to its
value at the start). A call takes ``chunk_length`` samples of ``audio_chunk`` (``N`` except
in the last call) and returns every frame those samples complete: the first
``num_frames`` entries of the frame axis; the rest are zeros. The last call of a stream
sets ``end`` to 1: its frames include those that need the right padding, and its
``next_state`` is zeros (a fresh stream).

Left padding (numpy 'reflect', zeros, or Kaldi's ``snip_edges=False`` edge reflection) is
built on the first calls from the samples in the state; a frame is emitted once every sample
it depends on has arrived (for a centred reflect pad, frame 0 also needs ``x[n_fft // 2]``).
Every call convolves a window of ``max_frames`` frames with the offline transform's kernels
at its precision, so each frame is computed as offline (to the conv's own rounding).
"""
from dataclasses import dataclass
from typing import List, Tuple

import torch
from torch import Tensor, nn

from . import functional as FN
from .builder import Frontend
from .stages.audio import InputStage
from .stages.transforms import KaldiSTFTStage, STFTStage

# The samples-seen counter saturates here: exact in float32, and far beyond the reach of any
# left padding (only a stream's first samples are ever compared with it).
COUNTER_CAP = float(2 ** 22)
# Edge padding of a frame grid: none, zeros, numpy 'reflect' (x[-s] = x[s]) or Kaldi's
# 'symmetric' (x[-s] = x[s - 1], the edge sample repeated).
PADS = ("none", "zeros", "reflect", "symmetric")


@dataclass(frozen=True)
class FrameGrid:
    """How a transform frames a signal of L samples: frame ``f`` covers samples
    ``[f hop - left, f hop - left + taps)`` (outside ``[0, L)`` by ``pad``), and there are
    ``floor((L + count_offset) / hop) + count_base`` frames."""

    hop: int
    taps: int
    left: int
    pad: str
    count_offset: int
    count_base: int


def frame_grid(stage: nn.Module) -> FrameGrid:
    """The frame grid of an ``stft`` or ``kaldi_stft`` stage (as its layer frames offline)."""
    layer = stage.layer
    if isinstance(stage, STFTStage):
        k, lp = int(layer.n_fft), int(layer.pad_amount)
        pad = ("reflect" if layer.pad_mode == "reflect" else "zeros") if layer.center else "none"
        return FrameGrid(int(layer.hop_length), k, lp, pad, 2 * lp - k, 1)
    taps, hop = int(layer.kernel.shape[-1]), int(layer.hop_length)
    if layer.snip_edges:
        return FrameGrid(hop, taps, 0, "none", -taps, 1)
    return FrameGrid(hop, taps, layer.win_length // 2 - hop // 2, "symmetric", hop // 2, 0)


def _split_stages(fe: Frontend) -> Tuple[InputStage, nn.Module, List[nn.Module], int, int, float]:
    """(input stage, transform stage, per-frame stages, frames trimmed at start, at end,
    pre-emphasis coefficient or 0); ValueError naming the first stage that cannot stream."""
    if fe.input_kind != "audio":
        raise ValueError("streaming: a synthesis frontend (spectrum in) does not stream")
    stages = list(fe.stages)
    post: List[nn.Module] = []
    start = end = 0
    preemphasis = 0.0
    transform = None
    for i, st in enumerate(stages):
        why = st.streaming_refusal()
        if why is not None:
            raise ValueError(f"streaming: stages[{i}] ({st.type_name}) cannot stream: {why}")
        if st.streaming == "framing":
            if transform is not None:
                raise ValueError(f"streaming: stages[{i}] ({st.type_name}): one transform only")
            transform = st
        elif st.streaming == "samples" and transform is None and preemphasis == 0.0:
            preemphasis = float(st.coefficient)
        elif transform is None and st.streaming != "input":
            raise ValueError(f"streaming: stages[{i}] ({st.type_name}) before the transform "
                             "does not stream")
        elif st.streaming == "frame_index":
            start += st.start
            end += st.end
        elif st.streaming == "frames":
            post.append(st)
    if transform is None:
        raise ValueError("streaming: the frontend has no stft or kaldi_stft stage")
    return stages[0], transform, post, start, end, preemphasis


class StreamingFrontend(nn.Module):
    """The streaming graph of ``frontend`` for chunks of ``chunk_samples`` samples (see the
    module docstring). Attributes: ``chunk_samples``, ``state_size``, ``tail`` (samples kept),
    ``max_frames`` (frame axis length), ``frame_axis`` (in the output, batch included),
    ``lookahead`` (samples after a frame's time ``f hop`` that it needs), ``grid``."""

    __jit_ignored_attributes__ = ["grid"]

    def __init__(self, frontend: Frontend, chunk_samples: int):
        super().__init__()
        if isinstance(chunk_samples, bool) or not isinstance(chunk_samples, int) or chunk_samples < 1:
            raise ValueError(f"chunk_samples must be a positive integer, got {chunk_samples!r}")
        inp, transform, post, trim_start, trim_end, pre = _split_stages(frontend)
        g = frame_grid(transform)
        self.grid = g
        self.chunk_samples = n = int(chunk_samples)
        self.channels, self.scale = int(inp.channels), float(inp.scale)
        self.register_buffer("dtype_probe", inp.dtype_probe.clone())
        self.layer = transform.layer
        self.power = float(getattr(transform, "power", 2.0))
        self.n_bins = int(transform.layer.freq_bins if isinstance(transform, STFTStage)
                          else transform.layer.n_bins)
        self.eps = float(getattr(transform.layer, "eps", 0.0))
        self.counter_cap = COUNTER_CAP
        self.hop, self.taps, self.left = g.hop, g.taps, g.left
        self.pad_code = PADS.index(g.pad)
        self.trim_end = int(trim_end)
        self.count_offset, self.count_base = g.count_offset, g.count_base
        # Offset of frame `trim_start` (the first one emitted) at the start of a stream.
        self.q_start = float(g.left - trim_start * g.hop)
        # Largest pending offset: a frame waiting for its last sample (< taps) or, with a
        # centred reflect pad, frame 0 waiting for x[left] (2 left + 1).
        q_max = max(g.taps, 2 * g.left + 1, int(self.q_start))
        self.tail = max(q_max, g.taps - g.left + 1, 1)
        right = max(g.taps - g.left, 0)
        self.max_frames = max(1, (n + q_max + g.count_offset - g.left) // g.hop + g.count_base,
                              (n + q_max - g.taps) // g.hop + 1)
        self.window = (self.max_frames - 1) * g.hop + g.taps
        # Pre-emphasis reads the sample before each one: one more raw sample is kept (zeros
        # before a stream's start, as offline).
        self.preemphasis = float(pre)
        self.raw_tail = self.tail + (1 if pre != 0.0 else 0)
        self.state_size = self.raw_tail + 2
        self.lookahead = g.taps - g.left
        self.right_reach = right
        self.post = nn.Sequential(*post)
        self.register_buffer("positions", torch.arange(self.window, dtype=torch.float32))
        self.register_buffer("frame_index", torch.arange(self.max_frames, dtype=torch.float32))
        self.register_buffer("tail_index", torch.arange(self.raw_tail, dtype=torch.float32))
        self.frame_axis = self._find_frame_axis()

    def _find_frame_axis(self) -> int:
        """The output axis (batch included) that holds frames, found by running the per-frame
        stages on spectra of two frame counts."""
        with torch.no_grad():
            shapes = []
            for t in (2, 3):
                spec = self._spectrum(torch.zeros(1, 1, (t - 1) * self.hop + self.taps,
                                                  dtype=self.dtype_probe.dtype))
                shapes.append(self.post(spec).shape)
        axes = [i for i, (a, b) in enumerate(zip(shapes[0], shapes[1])) if a != b]
        return axes[0]

    def _spectrum(self, window: Tensor) -> Tensor:
        """The transform's output (as offline) of a (B, 1, W) window: frames at stride hop."""
        if self.power > 0.0:
            p = self.layer.conv.squared(window, self.layer.kernel, self.hop)
            return FN.power_from_squared(p, self.power, self.eps)
        y = self.layer.conv(window, self.layer.kernel, self.hop)
        real, imag = FN.stacked_spectrum(y, self.n_bins)
        return torch.stack([real, imag], dim=-1)

    def _chunk(self, audio_chunk: Tensor) -> Tensor:
        """The input stage on a chunk: (B, N) or (B, C, N) of the input dtype -> (B, N)."""
        x = audio_chunk.to(self.dtype_probe.dtype)
        if self.channels != 1:
            x = torch.mean(x, dim=1)
        if self.scale != 1.0:
            x = x * self.scale
        return x

    def _window(self, buf: Tensor, n: Tensor, q: Tensor, valid: Tensor, ended: Tensor) -> Tensor:
        """The (B, 1, W) samples of the next ``max_frames`` frames, edges padded."""
        h = float(self.tail)
        r = self.positions.unsqueeze(0) - q            # sample index relative to samples seen
        left = (n + r) < 0.0
        right = (r >= valid) & ended
        src = r
        if self.pad_code == 2:
            src = torch.where(left, -2.0 * n - r, src)
            src = torch.where(right, 2.0 * (valid - 1.0) - r, src)
        elif self.pad_code == 3:
            src = torch.where(left, -2.0 * n - r - 1.0, src)
            src = torch.where(right, 2.0 * valid - 1.0 - r, src)
        idx = torch.clamp(src + h, 0.0, float(buf.size(1) - 1)).to(torch.int64)
        win = torch.gather(buf, 1, idx)
        if self.pad_code == 1:
            win = torch.where(left | right, torch.zeros_like(win), win)
        return win.unsqueeze(1)

    def _frame_count(self, n: Tensor, q: Tensor, valid: Tensor, ended: Tensor) -> Tensor:
        """Frames this call completes (B, 1): every sample they need has arrived (or the
        stream ended), and they are frames of the offline output (trimmed end excluded)."""
        start = self.frame_index.unsqueeze(0) * float(self.hop) - q    # relative first sample
        ready = (start + float(self.taps)) <= valid
        if self.pad_code == 2:          # a reflected left edge reads x[-first sample]
            ready = ready & ((-(n + start) + 1.0) <= n + valid)
        big = float(self.max_frames)
        avail = torch.amin(torch.where(ready, torch.full_like(start, big),
                                       self.frame_index.unsqueeze(0).expand_as(start)),
                           dim=1, keepdim=True)
        total = torch.floor((valid + q + float(self.count_offset - self.left)) / float(self.hop)) \
            + float(self.count_base - self.trim_end)
        count = torch.where(ended, total, torch.minimum(avail, total))
        return torch.clamp(count, 0.0, big)

    def forward(self, audio_chunk: Tensor, chunk_length: Tensor, end: Tensor,
                state: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        x = self._chunk(audio_chunk)
        dt = x.dtype
        h = self.raw_tail
        tail = state[:, :h].to(dt)
        n = state[:, h: h + 1].to(dt)
        q = state[:, h + 1: h + 2].to(dt) + self.q_start
        valid = torch.clamp(chunk_length.to(dt), 0.0, float(self.chunk_samples))
        ended = end.to(dt) > 0.5
        buf = torch.cat([tail, x], dim=1)
        emph = buf
        if self.preemphasis != 0.0:
            emph = buf[:, 1:] - self.preemphasis * buf[:, :-1]
        frames = self.post(self._spectrum(self._window(emph, n, q, valid, ended)))
        count = self._frame_count(n, q, valid, ended)
        keep = self.frame_index.unsqueeze(0) < count                   # (B, max_frames)
        shape = [keep.size(0)] + [1] * (frames.dim() - 1)
        shape[self.frame_axis] = self.max_frames
        frames = torch.where(keep.reshape(shape), frames, torch.zeros_like(frames))
        next_tail = torch.gather(buf, 1, (self.tail_index.unsqueeze(0) + valid).to(torch.int64))
        next_n = torch.clamp(n + valid, 0.0, self.counter_cap)
        next_q = q + valid - count * float(self.hop) - self.q_start
        nxt = torch.cat([next_tail, next_n, next_q], dim=1).to(state.dtype)
        nxt = torch.where(ended, torch.zeros_like(nxt), nxt)
        return frames, count.to(torch.int64), nxt

    def state_layout(self) -> dict:
        """What the state vector holds (the manifest's ``streaming.state_layout``)."""
        h = self.raw_tail
        return {"samples": [0, h], "samples_seen": h, "frame_offset": h + 1,
                "preemphasis_carries_one_sample": self.preemphasis != 0.0}

    def zero_state(self, batch: int) -> Tensor:
        return torch.zeros(batch, self.state_size, dtype=torch.float32)

