"""Model inputs computed from decoded media: log-mel spectrograms and normalised frames.

Everything here is plain torch so the CPU path never needs torchaudio (its PyPI wheel is a CUDA
build that fails to load beside CPU torch). Where torchaudio does load, a test checks the log-mel
against `torchaudio.transforms.MelSpectrogram`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# ImageNet statistics: the common choice, and what pretrained vision towers expect.
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class LogMelConfig:
    sample_rate: int = 16_000
    n_fft: int = 400  # 25 ms window
    hop_length: int = 160  # 10 ms hop: 100 mel frames per second
    n_mels: int = 64
    f_min: float = 0.0
    f_max: float | None = None  # None = Nyquist
    eps: float = 1e-6

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop_length


def _hz_to_mel(hz: torch.Tensor | float) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(hz, dtype=torch.float64) / 700.0)


def _mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(cfg: LogMelConfig) -> torch.Tensor:
    """Triangular HTK-scale filters, no area normalisation: (n_fft // 2 + 1, n_mels).

    Same construction as torchaudio's `melscale_fbanks(norm=None, mel_scale="htk")`.
    """
    f_max = cfg.f_max if cfg.f_max is not None else cfg.sample_rate / 2
    n_freqs = cfg.n_fft // 2 + 1
    all_freqs = torch.linspace(0, cfg.sample_rate // 2, n_freqs, dtype=torch.float64)
    mel_points = torch.linspace(
        float(_hz_to_mel(cfg.f_min)), float(_hz_to_mel(f_max)), cfg.n_mels + 2, dtype=torch.float64
    )
    hz_points = _mel_to_hz(mel_points)
    widths = hz_points[1:] - hz_points[:-1]  # (n_mels + 1,)
    slopes = hz_points.unsqueeze(0) - all_freqs.unsqueeze(1)  # (n_freqs, n_mels + 2)
    down = -slopes[:, :-2] / widths[:-1]
    up = slopes[:, 2:] / widths[1:]
    return torch.clamp(torch.minimum(down, up), min=0.0).to(torch.float32)


class LogMel(torch.nn.Module):
    """Waveform (..., N) at `cfg.sample_rate` → log-mel (..., n_mels, frames).

    `frames = N // hop_length + 1` (centred STFT), so frame i is centred on i * hop / sample_rate s.
    """

    window: torch.Tensor
    fbank: torch.Tensor

    def __init__(self, cfg: LogMelConfig = LogMelConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)
        self.register_buffer("fbank", mel_filterbank(cfg), persistent=False)

    def power_mel(self, wave: torch.Tensor) -> torch.Tensor:
        if not torch.is_floating_point(wave):
            raise TypeError(f"waveform must be floating point, got {wave.dtype}")
        lead = wave.shape[:-1]
        flat = wave.reshape(-1, wave.shape[-1]).to(torch.float32)
        # Reflect padding needs more samples than half a window; pad very short clips with zeros.
        pad_mode = "reflect" if flat.shape[-1] > self.cfg.n_fft // 2 else "constant"
        spec = torch.stft(
            flat,
            n_fft=self.cfg.n_fft,
            hop_length=self.cfg.hop_length,
            window=self.window,
            center=True,
            pad_mode=pad_mode,
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()  # (B, n_freqs, frames)
        mel = torch.matmul(power.transpose(1, 2), self.fbank).transpose(1, 2)  # (B, n_mels, frames)
        return mel.reshape(*lead, self.cfg.n_mels, mel.shape[-1])

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return torch.log(self.power_mel(wave) + self.cfg.eps)


def log_mel(wave: np.ndarray | torch.Tensor, cfg: LogMelConfig = LogMelConfig()) -> torch.Tensor:
    """Convenience wrapper: one waveform or a batch → log-mel (..., n_mels, frames)."""
    tensor = torch.as_tensor(wave)
    if not torch.isfinite(tensor).all():
        raise ValueError("waveform holds NaN or Inf samples")
    return LogMel(cfg)(tensor)


def num_mel_frames(num_samples: int, cfg: LogMelConfig = LogMelConfig()) -> int:
    return num_samples // cfg.hop_length + 1


def _check_frames(
    frames: np.ndarray | torch.Tensor, shape: str, ndim_ok: Callable[[int], bool]
) -> None:
    """Refuse anything but uint8 RGB frames (numpy or torch) of an accepted rank."""
    if str(frames.dtype) not in ("uint8", "torch.uint8"):
        raise TypeError(f"frames must be uint8 RGB, got {frames.dtype}")
    if not ndim_ok(frames.ndim) or frames.shape[-1] != 3:
        raise ValueError(f"frames must be {shape}, got {tuple(frames.shape)}")


def frames_to_tensor(
    frames: np.ndarray | torch.Tensor,
    size: tuple[int, int] | None = None,
    mean: tuple[float, float, float] = IMAGE_MEAN,
    std: tuple[float, float, float] = IMAGE_STD,
) -> torch.Tensor:
    """uint8 RGB frames (..., T, H, W, 3) → normalised float (..., T, 3, h, w).

    Resizing here is for arrays that did not come through `models.media.decode` at the right size
    (the decoder already scales in FFmpeg, which is cheaper). Downscaling uses antialiasing so thin
    glyph edges do not alias into noise.
    """
    _check_frames(frames, "(..., T, H, W, 3)", lambda ndim: ndim >= 4)
    if isinstance(frames, np.ndarray) and not frames.flags.writeable:
        frames = np.array(frames)  # a read-only memmap slice: torch wants memory it may own
    tensor = torch.as_tensor(frames)
    lead = tensor.shape[:-3]
    x = tensor.reshape(-1, *tensor.shape[-3:]).permute(0, 3, 1, 2).to(torch.float32) / 255.0
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    mean_t = torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1)
    x = (x - mean_t) / std_t
    return x.reshape(*lead, 3, x.shape[-2], x.shape[-1])


def frames_batch(
    clips: Sequence[np.ndarray | torch.Tensor], size: tuple[int, int], every: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 RGB clips (T, H, W, 3) → (B, F, 3, h, w) normalised as `frames_to_tensor` makes each,
    zero past each clip's end, and the mask (B, F) of real frames; a clip without frames gets
    one padded step and an all-False mask. `every`: only frames 0, every, 2·every, … of each
    clip, as `[:, ::every]` of the whole batch holds them (B, ceil(F / every), 3, h, w), with the
    whole batch's mask (B, F): what the visual trunk reads (`VisualEncoder.measure`), made
    without the frames it skips.

    The values and the memory layout are those of `pad_batch` over `frames_to_tensor` of each
    clip, bit for bit, made in one float buffer (converted, scaled and normalised in place,
    channels last as the per-clip path leaves them) instead of a tensor per clip and per
    operation, then a padded copy of each, then a stacked one (a training batch of 64 clips of 72
    frames: ~0.2 s, was ~0.3 s, on two cores). A clip that needs resizing takes
    `frames_to_tensor`'s way. The layout is the one the stem would see (`channels_last`): the
    convolutions follow it, and give the numbers they did before."""
    if every < 1:
        raise ValueError(f"every must be a positive number of frames, got {every}")
    lengths = [len(c) for c in clips]
    for clip, n in zip(clips, lengths, strict=True):
        if n:  # a clip without pictures (an audio-only item) may have any shape
            _check_frames(clip, "(T, H, W, 3)", lambda ndim: ndim == 4)
    longest = max([1, *lengths])
    kept = [-(-n // every) for n in lengths]  # frames 0, every, …: ceil(n / every)
    buffer = torch.empty(len(clips), -(-longest // every), *size, 3)
    into = buffer.numpy()
    resized = {i for i, c in enumerate(clips) if lengths[i] and tuple(c.shape[1:3]) != tuple(size)}
    for i, clip in enumerate(clips):
        if lengths[i] and i not in resized:
            # uint8 → float32 is exact either way; numpy reads a read-only cache slice in place
            if isinstance(clip, torch.Tensor):
                buffer[i, : kept[i]].copy_(clip[::every])
            else:
                into[i, : kept[i]] = clip[::every]
    mean = torch.tensor(IMAGE_MEAN, dtype=buffer.dtype)
    std = torch.tensor(IMAGE_STD, dtype=buffer.dtype)
    buffer.div_(255.0).sub_(mean).div_(std)
    batch = buffer.permute(0, 1, 4, 2, 3)
    for i in sorted(resized):  # resizing is per frame: the kept frames' are the same
        batch[i, : kept[i]] = frames_to_tensor(clips[i][::every], size=size)
    for i, n in enumerate(kept):
        batch[i, n:] = 0.0
    mask = torch.arange(longest)[None] < torch.tensor(lengths)[:, None]
    return (batch if channels_last(lengths, every) else batch.contiguous()), mask


def channels_last(lengths: Sequence[int], every: int = 1) -> bool:
    """Whether the pictures of clips of `lengths` frames reach the visual stem channels last
    (`frames_batch`), as the per-clip path laid them out; the convolutions' arithmetic follows
    the layout. Stacking kept the per-clip tensors' channels-last layout unless a clip without
    frames (a contiguous block of zeros) or with one (whose layout torch reads as contiguous) was
    there; and the stem reads every `every`-th frame of the batch as one run of pictures, which
    torch copies into a contiguous one where the batch's frame count is not a multiple of
    `every` (the picked frames of one clip do not then lead on into the next's)."""
    longest = max([1, *lengths])
    return all(n > 1 for n in lengths) and longest % every == 0


def pad_batch(items: list[torch.Tensor], dim: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ragged tensors along a new batch axis, zero-padding `dim` → (batch, mask (B, L)).

    The mask says which steps are real; padded steps must never be read as content.
    """
    if not items:
        raise ValueError("pad_batch needs at least one tensor")
    lengths = [t.shape[dim] for t in items]
    longest = max(lengths)
    padded = []
    for t in items:
        pad = [0, 0] * (t.ndim - dim - 1) + [0, longest - t.shape[dim]]
        padded.append(F.pad(t, pad))
    mask = torch.arange(longest).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    return torch.stack(padded), mask


def seconds_to_steps(seconds: float, steps_per_second: float) -> int:
    """Number of whole grid steps covering `seconds` (at least one)."""
    return max(1, math.floor(seconds * steps_per_second + 1e-6))
