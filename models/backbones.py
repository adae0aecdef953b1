"""Pretrained Hugging Face towers as drop-in stems for the trained encoders.

On a GPU machine the per-frame CNN and the audio conv stem of `models.encoders` can be swapped for
a CLIP vision tower and an AST (Audio Spectrogram Transformer) read from LOCAL directories. The
stems keep the contracts of the ones they replace, so the temporal transformers on top do not
change:

- `HFFrameStem`: ImageNet-normalised frames (N, 3, H, W) → (N, width).
- `HFAudioTokens`: log-mel (B, n_mels, F) + mask (B, F) → tokens (B, ceil(F / token_frames), width)
  + token mask, i.e. 20 tokens/s at 100 mel frames/s.

Nothing is downloaded: every load is `local_files_only=True`, and a missing directory fails with
its path in the message rather than a hub lookup error.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import ASTConfig, ASTModel, CLIPVisionModel

from models.features import IMAGE_MEAN, IMAGE_STD
from models.sequence import take_steps

# CLIP's own pixel statistics (OpenAI), used when the directory has no preprocessor_config.json.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# AudioSet statistics of AST's kaldi fbank (ASTFeatureExtractor defaults), used likewise.
AST_MEAN = -4.2677393
AST_STD = 4.5689974
WINDOWS_PER_PASS = 32  # AST windows (~10 s each at AudioSet's max_length) per tower call


def _check_directory(directory: str | Path) -> Path:
    """Fail with the path in the message: `from_pretrained` would otherwise try the hub name."""
    path = Path(directory)
    if not path.is_dir():
        raise FileNotFoundError(f"pretrained model directory not found: {path}")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no config.json in pretrained model directory: {path}")
    return path


def _preprocessor_config(path: Path) -> dict[str, Any]:
    file = path / "preprocessor_config.json"
    if not file.is_file():
        return {}
    with file.open() as f:
        loaded: dict[str, Any] = json.load(f)
    return loaded


def _square(size: int | list[int] | tuple[int, int] | None) -> tuple[int, int]:
    """CLIP configs spell the input size as an int or a pair; positions are fixed to it."""
    if isinstance(size, int):
        return size, size
    if size is None or len(size) != 2:
        raise ValueError(f"CLIP vision config has no usable image_size: {size!r}")
    return int(size[0]), int(size[1])


def _freeze(tower: nn.Module, frozen: bool) -> None:
    tower.requires_grad_(not frozen)
    if frozen:
        tower.eval()


class HFFrameStem(nn.Module):
    """CLIP vision tower per frame: (N, 3, H, W) → pooled CLS → Linear → (N, width)."""

    scale: Tensor
    shift: Tensor

    def __init__(self, directory: str | Path, width: int, frozen: bool = True) -> None:
        super().__init__()
        path = _check_directory(directory)
        # A directory saved from a full CLIPModel also loads here: the vision part is picked out.
        self.tower = CLIPVisionModel.from_pretrained(str(path), local_files_only=True)
        self.frozen = frozen
        _freeze(self.tower, frozen)
        self.image_size = _square(self.tower.config.image_size)
        # The projection is always trained: it is what adapts a frozen tower to our space.
        self.proj = nn.Linear(self.tower.config.hidden_size, width)

        # Frames arrive ImageNet-normalised (the project's convention); the tower was trained
        # on its own statistics. x_tower = (x * std_in + mean_in - mean_t) / std_t, as one affine.
        pre = _preprocessor_config(path)
        mean_t = torch.tensor(pre.get("image_mean", CLIP_MEAN), dtype=torch.float32)
        std_t = torch.tensor(pre.get("image_std", CLIP_STD), dtype=torch.float32)
        mean_in = torch.tensor(IMAGE_MEAN)
        std_in = torch.tensor(IMAGE_STD)
        self.register_buffer("scale", (std_in / std_t).view(1, 3, 1, 1), persistent=False)
        self.register_buffer(
            "shift", ((mean_in - mean_t) / std_t).view(1, 3, 1, 1), persistent=False
        )

    def train(self, mode: bool = True) -> HFFrameStem:
        """A frozen tower stays in eval mode: its dropout must not add noise to fixed features."""
        super().train(mode)
        if self.frozen:
            self.tower.eval()
        return self

    def forward(self, frames: Tensor) -> Tensor:  # (N, 3, H, W) → (N, width)
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"expected frames (N, 3, H, W), got {tuple(frames.shape)}")
        x = frames * self.scale + self.shift  # tower's normalisation
        # The whole frame is squashed to the tower's square input rather than centre-cropped:
        # content at the edges (captions, gauges) is information here.
        if tuple(x.shape[-2:]) != self.image_size:
            x = F.interpolate(
                x, size=self.image_size, mode="bilinear", align_corners=False, antialias=True
            )
        x = x.to(self.tower.dtype)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            pooled = self.tower(pixel_values=x).pooler_output  # (N, hidden)
        return self.proj(pooled.to(self.proj.weight.dtype))  # (N, width)


def ast_patch_grid(config: ASTConfig) -> tuple[int, int]:
    """(frequency, time) patch counts of one AST input, as `ASTEmbeddings.get_shape` computes
    them: a conv with kernel `patch_size` and strides (frequency_stride, time_stride), no padding,
    over a (num_mel_bins, max_length) spectrogram."""
    patch = _patch_size(config)
    freq = (config.num_mel_bins - patch) // config.frequency_stride + 1
    time = (config.max_length - patch) // config.time_stride + 1
    return freq, time


def _patch_size(config: ASTConfig) -> int:
    patch = config.patch_size
    if not isinstance(patch, int):  # ASTPatchEmbeddings builds a square kernel from it
        raise ValueError(f"AST patch_size must be one int, got {patch!r}")
    return patch


class HFAudioTokens(nn.Module):
    """AST over fixed-length windows → frequency-averaged patch tokens → our token grid.

    AST's position embeddings fix its input to `max_length` frames, so longer inputs are cut into
    windows folded into the batch, and each window's (frequency, time) patch grid is averaged over
    frequency. The per-window time patches (one per `time_stride` frames) are stitched back in time
    and linearly interpolated, by absolute frame position, onto one token per `token_frames` frames.

    Input scale: AST was trained on kaldi fbank (natural-log mel power of a [-1, 1] waveform,
    25 ms frames zero-padded to a 512-point FFT, pre-emphasis 0.97, Kaldi mel triangles from
    20 Hz), standardised as (x - mean) / (2 * std). Our `LogMel` is also the natural log of mel
    power of a [-1, 1] waveform (400-point FFT, Hann, no pre-emphasis, HTK triangles from 0 Hz),
    so the overall level agrees within about a nat (measured on noise and tones), while the
    missing pre-emphasis tilts the spectrum by up to a few nats per band (quieter highs, louder
    lows than AST saw). We apply only AST's standardisation with its statistics: a fixed affine
    that keeps loudness; the projection (and the tower, when not frozen) absorbs the tilt.
    """

    def __init__(
        self,
        directory: str | Path,
        n_mels: int,
        width: int,
        token_frames: int = 5,
        frozen: bool = True,
    ) -> None:
        super().__init__()
        path = _check_directory(directory)
        self.tower = ASTModel.from_pretrained(str(path), local_files_only=True)
        config = self.tower.config
        if config.num_mel_bins != n_mels:
            raise ValueError(
                f"AST at {path} takes {config.num_mel_bins} mel bins but the audio config has "
                f"n_mels={n_mels}; set the audio config's n_mels to {config.num_mel_bins}"
            )
        self.frozen = frozen
        _freeze(self.tower, frozen)
        self.n_mels = n_mels
        self.token_frames = token_frames
        self.window = config.max_length  # mel frames per AST input
        self.patch = _patch_size(config)
        self.time_stride = config.time_stride
        self.grid = ast_patch_grid(config)  # (frequency, time) patches per window
        pre = _preprocessor_config(path)
        self.mean = float(pre.get("mean", AST_MEAN))
        self.std = float(pre.get("std", AST_STD))
        self.proj = nn.Linear(config.hidden_size, width)

    def train(self, mode: bool = True) -> HFAudioTokens:
        """A frozen tower stays in eval mode: its dropout must not add noise to fixed features."""
        super().train(mode)
        if self.frozen:
            self.tower.eval()
        return self

    def forward(self, mel: Tensor, mel_mask: Tensor) -> tuple[Tensor, Tensor]:
        """mel: log-mel (B, n_mels, F); mel_mask (B, F) True for real frames.

        Returns tokens (B, N, width), N = ceil(F / token_frames), zero where padded, and the token
        mask (B, N): a token is real if any of its frames is.
        """
        if mel.ndim != 3 or mel.shape[1] != self.n_mels:
            raise ValueError(f"expected log-mel (B, {self.n_mels}, F), got {tuple(mel.shape)}")
        if mel_mask.shape != (mel.shape[0], mel.shape[2]):
            raise ValueError(
                f"mel_mask must be (B, F) = {(mel.shape[0], mel.shape[2])}, "
                f"got {tuple(mel_mask.shape)}"
            )
        b, _, frames = mel.shape
        mel_mask = mel_mask.bool()
        k = self.token_frames
        n_tokens = math.ceil(frames / k)
        windows = max(1, math.ceil(frames / self.window))

        # Padded frames become log-power 0 before standardising, as AST's extractor pads, so a
        # window's content does not depend on what the batch put in its padding.
        frame_mask = F.pad(mel_mask, (0, windows * self.window - frames), value=False)
        x = F.pad(mel, (0, windows * self.window - frames))  # (B, n_mels, windows·L)
        x = x.masked_fill(~frame_mask.unsqueeze(1), 0.0)
        x = (x - self.mean) / (2.0 * self.std)
        x = x.reshape(b, self.n_mels, windows, self.window).permute(0, 2, 3, 1)
        x = x.reshape(b * windows, self.window, self.n_mels)  # (B·windows, L, n_mels): AST layout

        patches = self._window_patches(x.to(self.tower.dtype))  # (B·windows, t_dim, hidden)
        t_dim = patches.shape[1]
        # Interpolate in float32: bf16 positions would be off by frames beyond ~256.
        seq = patches.reshape(b, windows * t_dim, -1).float()  # (B, S, hidden)

        # Absolute centre (in frames) of every stitched time patch, and of every output token.
        starts = (
            torch.arange(windows, device=mel.device)[:, None] * self.window
            + torch.arange(t_dim, device=mel.device)[None, :] * self.time_stride
        ).reshape(-1)  # (S,)
        src = starts.float() + (self.patch - 1) / 2
        tgt = torch.arange(n_tokens, device=mel.device, dtype=torch.float32) * k + (k - 1) / 2
        # A clip interpolates only between patches that start inside it (before its last real
        # frame), so extra all-padding windows added by longer batch mates never reach its tokens.
        # Masked gaps inside a clip are filled like padding and still interpolated across.
        length = torch.where(
            mel_mask.any(dim=1),
            frames - mel_mask.flip(dims=[1]).int().argmax(dim=1),
            torch.zeros(b, dtype=torch.long, device=mel.device),
        )  # (B,) one past the last real frame
        n_valid = (starts[None, :] < length[:, None]).sum(dim=1)  # (B,)
        tokens = _interpolate(seq, src, tgt, n_valid)  # (B, N, hidden)

        token_mask = F.pad(mel_mask, (0, n_tokens * k - frames), value=False)
        token_mask = token_mask.reshape(b, n_tokens, k).any(dim=2)  # (B, N)
        tokens = self.proj(tokens.to(self.proj.weight.dtype))  # (B, N, width)
        tokens = tokens * token_mask.unsqueeze(-1).to(tokens.dtype)
        return tokens, token_mask

    def _window_patches(self, x: Tensor) -> Tensor:
        """(windows, L, n_mels) → frequency-averaged patch tokens (windows, t_dim, hidden)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            # Bounded passes: an hour of audio is ~350 windows, too many activations at once.
            hidden = torch.cat(
                [
                    self.tower(input_values=chunk).last_hidden_state
                    for chunk in x.split(WINDOWS_PER_PASS)
                ]
            )  # (windows, extra + f·t, hidden)
        f_dim, t_dim = self.grid
        extra = hidden.shape[1] - f_dim * t_dim  # leading CLS / distillation tokens
        if extra < 0:
            raise RuntimeError(
                f"AST returned {hidden.shape[1]} tokens, fewer than its {f_dim}x{t_dim} patch grid"
            )
        # The patch conv runs over (frequency, time) and flattens frequency-major.
        grid = hidden[:, extra:].reshape(hidden.shape[0], f_dim, t_dim, hidden.shape[-1])
        return grid.mean(dim=1)


def _interpolate(values: Tensor, src: Tensor, tgt: Tensor, n_valid: Tensor) -> Tensor:
    """Piecewise-linear resampling along time, by absolute position.

    values (B, S, D) sit at increasing positions `src` (S,); returns (B, N, D) at `tgt` (N,).
    Row b uses only its first `n_valid[b]` sources and holds the end values beyond them, so a
    clip's result does not depend on how far the batch was padded.
    """
    s = values.shape[1]
    hi = torch.searchsorted(src, tgt).clamp(min=1, max=max(s - 1, 1))  # (N,)
    lo = (hi - 1).clamp(max=s - 1)
    last = (n_valid - 1).clamp(min=0)[:, None]  # (B, 1)
    lo_b = torch.minimum(lo[None, :], last)  # (B, N)
    hi_b = torch.minimum(hi[None, :], last).clamp(max=s - 1)
    p_lo, p_hi = src[lo_b], src[hi_b]
    gap = p_hi - p_lo
    weight = torch.where(gap > 0, (tgt - p_lo) / gap.clamp(min=1e-6), torch.zeros_like(gap))
    weight = weight.clamp(0.0, 1.0).unsqueeze(-1)  # (B, N, 1)
    v_lo, v_hi = take_steps(values, lo_b), take_steps(values, hi_b)  # (B, N, D) each
    return v_lo + weight * (v_hi - v_lo)
