"""Audio and visual encoders, trained by the project.

Both end the same way: per-token features from a transformer, grouped onto the shared time grid
(`steps_per_second`), then two heads: a per-step sequence head and a pooled head. Every output is
`Embeddings(pooled (B, D), sequence (B, T, D), mask (B, T))`, L2-normalised per vector and per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.backbones import HFAudioTokens, HFFrameStem
from models.config import AudioConfig, ModelConfig, VisualConfig

# Attention runs inside windows of this many grid steps (12 s at 4 steps/s), so a one-hour input
# costs linear, not quadratic, time, and a step only sees its neighbourhood, as in training.
CONTEXT_STEPS = 48


class Embeddings(NamedTuple):
    pooled: Tensor  # (B, D), unit norm
    sequence: Tensor  # (B, T, D), unit norm per step (padded steps are zero)
    mask: Tensor  # (B, T) bool, True = real step


def sinusoidal_positions(length: int, width: int, device: torch.device) -> Tensor:
    """Fixed positions, so an encoder trained on 6 s clips still runs on longer windows."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(
        torch.arange(0, width, 2, device=device, dtype=torch.float32)
        * (-math.log(10_000.0) / width)
    )
    out = torch.zeros(length, width, device=device)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq[: width // 2])
    return out  # (L, W)


def masked_mean(x: Tensor, mask: Tensor, dim: int) -> Tensor:
    weights = mask.to(x.dtype).unsqueeze(-1)
    return (x * weights).sum(dim) / weights.sum(dim).clamp(min=1.0)


ONSET_BANDS = 8  # mel bands grouped for the onset input
CHANGE_GRID = 4  # the picture-change input: a CHANGE_GRID x CHANGE_GRID grid of regions


def onset_features(mel: Tensor, mel_mask: Tensor, token_frames: int) -> Tensor:
    """(B, n_mels, F) log-mel → (B, F // token_frames, 2 * ONSET_BANDS): the positive spectral flux
    of each band group, its largest value inside each token and its mean. A sound's start is one
    mel frame (10 ms) long; a token is 50 ms: the largest value keeps it, wherever it falls."""
    b, _, f = mel.shape
    mel = mel * mel_mask.unsqueeze(1)
    rise = (mel[:, :, 1:] - mel[:, :, :-1]).clamp(min=0)
    rise = F.pad(rise, (1, 0)) * mel_mask.unsqueeze(1)  # the first frame rose from nothing known
    bands = F.adaptive_avg_pool1d(rise.transpose(1, 2), ONSET_BANDS).transpose(1, 2)  # (B, 8, F)
    tokens = bands.reshape(b, ONSET_BANDS, f // token_frames, token_frames)
    return torch.cat([tokens.amax(-1), tokens.mean(-1)], dim=1).transpose(1, 2)


def change_features(frames: Tensor, frame_mask: Tensor) -> Tensor:
    """(B, F, 3, H, W) → (B, F, CHANGE_GRID² + 1): mean absolute change of each region of the raw
    picture since the frame before, and of the whole picture. No learning: a glyph that flashes or
    squashes for one frame changes pixels a learned per-frame stem may average away."""
    diff = (frames[:, 1:] - frames[:, :-1]).abs().mean(2)  # (B, F-1, H, W)
    diff = diff * (frame_mask[:, 1:] & frame_mask[:, :-1])[..., None, None]
    regions = F.adaptive_avg_pool2d(diff, CHANGE_GRID).flatten(2)  # (B, F-1, 16)
    out = torch.cat([regions, regions.mean(-1, keepdim=True)], dim=-1)
    return F.pad(out, (0, 0, 1, 0))  # the first frame: no change known


class TemporalHead(nn.Module):
    """Windowed transformer over tokens, grouping onto grid steps, sequence and pooled heads."""

    def __init__(
        self,
        width: int,
        layers: int,
        heads: int,
        dropout: float,
        tokens_per_step: int,
        dim: int,
        pooled: bool = True,
    ) -> None:
        super().__init__()
        self.tokens_per_step = tokens_per_step
        layer = nn.TransformerEncoderLayer(
            width, heads, 4 * width, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.sequence_head = nn.Linear(width, dim)
        # A head whose pooled vector nobody uses (SequenceBranch) has none: it pools its steps.
        self.pooled_head = nn.Linear(width, dim) if pooled else None
        # Training only: each sample's positions start at a random step in [0, position_jitter),
        # so that a step's embedding cannot say how far it is from the start of the input (an
        # excerpt starts at 0 wherever it was cut from) and an excerpt lands on the same steps.
        self.position_jitter = 0

    def forward(self, tokens: Tensor, token_mask: Tensor) -> Embeddings:
        return self.run(tokens, token_mask)[0]

    def run(self, tokens: Tensor, token_mask: Tensor) -> tuple[Embeddings, Tensor, Tensor]:
        """The embeddings, and the transformer's output tokens (B, N', W) with their mask (N'
        padded to whole steps or windows), for a branch that reads them (`SequenceBranch`)."""
        b, n, w = tokens.shape
        window = CONTEXT_STEPS * self.tokens_per_step
        pad = (-n) % self.tokens_per_step
        if n > window:  # attend within windows: fold them into the batch
            pad = (-n) % window
        tokens = F.pad(tokens, (0, 0, 0, pad))
        token_mask = F.pad(token_mask, (0, pad), value=False)
        length = tokens.shape[1]
        chunk = min(length, window)
        x = tokens.reshape(b * (length // chunk), chunk, w)  # (B·windows, chunk, W)
        m = token_mask.reshape(b * (length // chunk), chunk)
        if self.training and self.position_jitter > 0:
            start = torch.randint(0, self.position_jitter, (x.shape[0], 1), device=x.device)
            table = sinusoidal_positions(
                chunk + self.position_jitter * self.tokens_per_step, w, x.device
            )
            index = start * self.tokens_per_step + torch.arange(chunk, device=x.device)[None]
            x = x + table[index]
        else:
            x = x + sinusoidal_positions(chunk, w, x.device)
        # A window with no real token would make attention all -inf: let it attend, mask it later.
        empty = ~m.any(dim=1)
        attn_mask = m.clone()
        attn_mask[empty] = True
        x = self.transformer(x, src_key_padding_mask=~attn_mask)
        out_tokens = self.norm(x).reshape(b, length, w)

        steps = length // self.tokens_per_step
        x = out_tokens.reshape(b, steps, self.tokens_per_step, w)
        m = token_mask.reshape(b, steps, self.tokens_per_step)
        step_feat = masked_mean(x, m, dim=2)  # (B, T, W)
        step_mask = m.any(dim=2)  # (B, T)
        sequence = F.normalize(self.sequence_head(step_feat), dim=-1) * step_mask.unsqueeze(-1)
        if self.pooled_head is not None:
            pooled = F.normalize(self.pooled_head(masked_mean(step_feat, step_mask, dim=1)), dim=-1)
        else:
            pooled = F.normalize(masked_mean(sequence, step_mask, dim=1), dim=-1)
        return Embeddings(pooled, sequence, step_mask), out_tokens, token_mask


class SequenceBranch(nn.Module):
    """The per-step sequence of an encoder, learned apart from its pooled vector (SyncNet's idea:
    a stream of its own for *when*).

    A small stem of its own reads what changes — the sound's rise in each mel band, the picture's
    difference from the frame before — and its one-layer windowed transformer also reads the
    encoder's output tokens *detached*: an objective on the steps cannot move what the pooled
    vector, and so every text and pooled figure, was trained to be (`trunk_gradient`, a training
    setting, lets a share through). Trained by the timing objectives (step contrast, excerpts); a
    model without the branch takes its steps from the shared transformer's sequence head, as
    checkpoints from before it did."""

    def __init__(
        self,
        stem: nn.Module,
        width: int,
        heads: int,
        tokens_per_step: int,
        dim: int,
        detrend: int = 0,
    ) -> None:
        super().__init__()
        self.trunk_gradient = 0.0  # share of the gradient that reaches the shared encoder
        self.stem = stem  # changes → (B, N, width) tokens on the encoder's token grid
        self.head = TemporalHead(width, 1, heads, 0.0, tokens_per_step, dim, pooled=False)
        self.detrend = detrend  # ModelConfig.sequence_detrend

    def forward(self, tokens: Tensor, token_mask: Tensor, changes: Tensor) -> Embeddings:
        """tokens (B, N', W): the trunk's output, padded to whole steps or windows; changes: the
        stem's input, one token per trunk input token (N <= N'). The head pads again alike."""
        own = self.stem(changes)  # (B, N, W)
        n = own.shape[1]
        tokens, token_mask = tokens[:, :n], token_mask[:, :n]
        g = self.trunk_gradient  # same values, a share g of the gradient
        tokens = g * tokens + (1 - g) * tokens.detach() if g > 0 else tokens.detach()
        steps = self.head(tokens + own, token_mask)
        return detrend_steps(steps, self.detrend) if self.detrend else steps


DETREND_FLOOR = 1e-4


def detrend_steps(e: Embeddings, window: int) -> Embeddings:
    """Each valid step minus the mean of the valid steps within `window` (odd) centred on it,
    unit length again; padding stays zero. A step that differs from nothing around it (a clip of
    one step) becomes zero: it has no timing to compare."""
    m = e.mask.to(e.sequence.dtype).unsqueeze(-1)  # (B, T, 1)
    x = e.sequence * m

    def local_mean(z: Tensor) -> Tensor:  # (B, T, C) → mean over the window, padding as zeros
        pooled = F.avg_pool1d(z.transpose(1, 2), window, 1, window // 2, count_include_pad=True)
        return pooled.transpose(1, 2)

    share = local_mean(m).clamp(min=1.0 / window)  # valid steps in the window / window
    # Rounding leaves ~1e-8 where nothing changed: a floor well below any real change (the steps
    # are unit vectors) keeps that near zero instead of blowing it up to unit length.
    change = F.normalize(x - local_mean(x) / share, dim=-1, eps=DETREND_FLOOR)
    return Embeddings(e.pooled, change * m, e.mask)


def _with_branch(
    trunk: Embeddings, branch: SequenceBranch, tokens: Tensor, mask: Tensor, changes: Tensor
) -> Embeddings:
    """The trunk's pooled vector with the branch's steps."""
    steps = branch(tokens, mask, changes)
    if steps.sequence.shape[1] != trunk.sequence.shape[1]:
        raise RuntimeError("the sequence branch and the trunk disagree on the number of steps")
    return Embeddings(trunk.pooled, steps.sequence, trunk.mask)


class _SoundChanges(nn.Module):
    """Normalised log-mel and its positive rise per band (B, 2·n_mels, F), convolved onto
    tokens."""

    def __init__(self, n_mels: int, width: int, token_frames: int) -> None:
        super().__init__()
        # Onto the token grid (each token's kernel sees all of its mel frames, so a 10 ms onset
        # is kept wherever it falls), then per token: the branch's transformer gives the context.
        # No kernel reaches across tokens, so a padded token cannot leak into the last real one.
        self.conv = nn.Sequential(
            nn.Conv1d(2 * n_mels, width, kernel_size=token_frames, stride=token_frames),
            nn.GELU(),
            nn.Conv1d(width, width, kernel_size=1),
            nn.GELU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x).transpose(1, 2)  # (B, N, W)


PICTURE_GRID = 8  # the visual branch's input: each frame's mean colours on an 8x8 grid


def colour_grid(frames: Tensor) -> Tensor:
    """Normalised frames (B, F, 3, H, W) → (B, F, 3 · PICTURE_GRID²): each frame's mean colours
    on a grid, what the visual branch's stem reads (`_PictureChanges`). No learning."""
    b, f = frames.shape[:2]
    return F.adaptive_avg_pool2d(frames.flatten(0, 1), PICTURE_GRID).reshape(b, f, -1)


class _PictureChanges(nn.Module):
    """Each frame's colour grid (`colour_grid`, B, F, 3 · 8²) → its difference from the frame
    before (a flash, a squash, a step), signed and absolute, through a small MLP. A change needs
    no detail: convolutions at the patch grid cost a third of the encoder's time for no gain in
    what they could see."""

    GRID = PICTURE_GRID

    def __init__(self, width: int) -> None:
        super().__init__()
        inputs = 2 * 3 * self.GRID * self.GRID
        self.mlp = nn.Sequential(nn.Linear(inputs, width), nn.GELU(), nn.Linear(width, width))

    def forward(self, grid: Tensor) -> Tensor:
        diff = torch.cat([torch.zeros_like(grid[:, :1]), grid[:, 1:] - grid[:, :-1]], 1)
        return self.mlp(torch.cat([diff, diff.abs()], -1))


class AudioEncoder(nn.Module):
    """Log-mel (B, n_mels, F) → conv patch stem in time → windowed transformer → grid steps."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        a: AudioConfig = cfg.audio
        self.cfg = a
        self.pretrained: HFAudioTokens | None = None
        if a.backbone is not None:
            self.pretrained = HFAudioTokens(
                a.backbone, a.n_mels, a.width, a.token_frames, frozen=a.backbone_frozen
            )
        else:
            self.stem = nn.Sequential(
                nn.Conv1d(a.n_mels, a.width, kernel_size=3, padding=1),
                nn.GELU(),
                nn.Conv1d(a.width, a.width, kernel_size=a.token_frames, stride=a.token_frames),
                nn.GELU(),
            )
        self.onsets = nn.Linear(2 * ONSET_BANDS, a.width) if a.events else None
        self.head = TemporalHead(
            a.width, a.layers, a.heads, a.dropout, cfg.audio_tokens_per_step, cfg.embed_dim
        )
        self.branch = (
            SequenceBranch(
                _SoundChanges(a.n_mels, a.width, a.token_frames),
                a.width,
                a.heads,
                cfg.audio_tokens_per_step,
                cfg.embed_dim,
                cfg.sequence_detrend,
            )
            if cfg.sequence_branch
            else None
        )
        # Training only (`training.trainer`): False while the trunk trains without the branch,
        # whose steps are then learnt afterwards on the settled trunk; steps come from the trunk.
        self.run_branch = True

    def forward(self, mel: Tensor, mel_mask: Tensor) -> Embeddings:
        """mel: log-mel (B, n_mels, F); mel_mask (B, F) True for real frames."""
        if mel.ndim != 3 or mel.shape[1] != self.cfg.n_mels:
            raise ValueError(f"expected log-mel (B, {self.cfg.n_mels}, F), got {tuple(mel.shape)}")
        k = self.cfg.token_frames
        if self.pretrained is not None:
            tokens, token_mask = self.pretrained(mel, mel_mask)
            return self._heads(tokens, token_mask, mel, mel_mask)
        pad = (-mel.shape[-1]) % k
        mel = F.pad(mel, (0, pad))
        mel_mask = F.pad(mel_mask, (0, pad), value=False)
        # A fixed affine keeps loudness (it is information: a faster engine is louder).
        x = (mel + 5.0) / 4.0 * mel_mask.unsqueeze(1)
        tokens = self.stem(x).transpose(1, 2)  # (B, N, W)
        token_mask = mel_mask.reshape(mel_mask.shape[0], -1, k).any(dim=2)  # (B, N)
        if self.onsets is not None:
            tokens = tokens + self.onsets(onset_features(mel, mel_mask, k) / 4.0)
        return self._heads(tokens, token_mask, mel, mel_mask)

    def _heads(
        self, tokens: Tensor, token_mask: Tensor, mel: Tensor, mel_mask: Tensor
    ) -> Embeddings:
        if self.branch is None or not self.run_branch:
            return self.head(tokens, token_mask)
        trunk, out, out_mask = self.head.run(tokens, token_mask)
        k = self.cfg.token_frames
        pad = (-mel.shape[-1]) % k
        frames = F.pad(mel_mask, (0, pad), value=False).unsqueeze(1)
        x = F.pad((mel + 5.0) / 4.0, (0, pad)) * frames  # as the trunk's stem sees it
        # Each band's rise since the frame before; none at or after the end (padding is silence
        # to nobody), so a clip's steps do not depend on how far its batch was padded.
        rise = F.pad((x[:, :, 1:] - x[:, :, :-1]).clamp(min=0), (1, 0)) * frames
        return _with_branch(trunk, self.branch, out, out_mask, torch.cat([x, rise], dim=1))


class FrameStem(nn.Module):
    """Per-frame CNN keeping a coarse 4x4 layout: where a glyph is, and where it goes, counts."""

    def __init__(self, v: VisualConfig) -> None:
        super().__init__()
        # A patchify first layer (stride = kernel = patch) is ~3x cheaper than stacked stride-2
        # convs at full resolution, which is what lets the small preset train on two CPU cores.
        layers: list[nn.Module] = [
            nn.Conv2d(3, v.channels[0], kernel_size=v.patch, stride=v.patch),
            nn.GroupNorm(min(8, v.channels[0]), v.channels[0]),
            nn.GELU(),
        ]
        c_in = v.channels[0]
        for c in v.channels[1:]:
            layers += [
                nn.Conv2d(c_in, c, kernel_size=3, stride=2, padding=1),
                nn.GroupNorm(min(8, c), c),
                nn.GELU(),
            ]
            c_in = c
        self.conv = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.proj = nn.Linear(c_in * 16, v.width)

    def forward(self, frames: Tensor) -> Tensor:  # (N, 3, H, W) → (N, width)
        return self.proj(self.features(frames))

    def features(self, frames: Tensor) -> Tensor:  # (N, 3, H, W) → (N, channels · 16)
        """The convolutions' pooled features, before the projection. Each frame's are the same
        whatever else is in its batch (the projection's matrix product may round otherwise)."""
        return self.pool(self.conv(frames)).flatten(1)


@dataclass(frozen=True)
class PictureInputs:
    """What the visual encoder reads of a batch of clips (`VisualEncoder.measure`): the frames
    its per-frame stem sees, and what it measures of every frame without learning. These depend
    on the frames alone, so a trainer that shows a clip's frames unchanged every epoch keeps them
    per clip (`training.pictures.PictureMemo`) instead of making them from every frame again."""

    picked: Tensor | None  # (B, ceil(F / trunk_every), 3, H, W): frames 0, trunk_every, …
    mask: Tensor  # (B, F): which of all the frames are real
    changes: Tensor | None  # (B, F, CHANGE_GRID² + 1): `change_features`; None if unread
    grid: Tensor | None  # (B, F, 3 · PICTURE_GRID²): `colour_grid`; None if unread
    # (B, ceil(F / trunk_every), C): the stem's features of the picked frames before its
    # projection (`FrameStem.features`), given instead of them while the stem's weights are
    # fixed (a memo's, `PictureMemo.frozen_stem`)
    stem: Tensor | None = None


def _required(x: Tensor | None, what: str) -> Tensor:
    if x is None:
        raise ValueError(f"this encoder reads {what}, and the inputs lack it")
    return x


class VisualEncoder(nn.Module):
    """Normalised frames (B, F, 3, H, W) → per-frame stem → windowed transformer → grid steps."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        v: VisualConfig = cfg.visual
        self.cfg = v
        self.stem: nn.Module = (
            HFFrameStem(v.backbone, v.width, frozen=v.backbone_frozen)
            if v.backbone
            else FrameStem(v)
        )
        # Frame differences carry the events (a flash, a squash): hand them to the transformer.
        self.motion = nn.Linear(v.width, v.width)
        self.changes = nn.Linear(CHANGE_GRID * CHANGE_GRID + 1, v.width) if v.events else None
        self.head = TemporalHead(
            v.width, v.layers, v.heads, v.dropout, cfg.trunk_frames_per_step, cfg.embed_dim
        )
        self.branch = (
            SequenceBranch(
                _PictureChanges(v.width),
                v.width,
                v.heads,
                cfg.frames_per_step,
                cfg.embed_dim,
                cfg.sequence_detrend,
            )
            if cfg.sequence_branch
            else None
        )
        self.run_branch = True  # as AudioEncoder.run_branch

    def forward(self, frames: Tensor, frame_mask: Tensor) -> Embeddings:
        return self.encode(self.measure(frames, frame_mask))

    def measure(self, frames: Tensor, frame_mask: Tensor) -> PictureInputs:
        """What the encoder reads of normalised frames (B, F, 3, H, W) and their mask (B, F)."""
        if frames.ndim != 5 or frames.shape[2] != 3:
            raise ValueError(f"expected frames (B, F, 3, H, W), got {tuple(frames.shape)}")
        changes = change_features(frames, frame_mask) if self.changes is not None else None
        grid = colour_grid(frames) if self.branch is not None and self.run_branch else None
        return PictureInputs(frames[:, :: self.cfg.trunk_every], frame_mask, changes, grid)

    def encode(self, inputs: PictureInputs) -> Embeddings:
        """The embeddings of what `measure` read (or a `training.pictures` memo kept of it)."""
        every = self.cfg.trunk_every
        frame_mask = inputs.mask
        picked_mask = frame_mask[:, ::every]
        if inputs.stem is not None:  # the stem's features, kept while its weights are fixed
            features = inputs.stem
            if not isinstance(self.stem, FrameStem):
                raise ValueError("only a FrameStem's features can be given instead of frames")
            if features.ndim != 3 or features.shape[:2] != picked_mask.shape:
                raise ValueError(
                    f"expected the stem's features of every {every}th of {frame_mask.shape[1]} "
                    f"frames (B, F', C), got {tuple(features.shape)}"
                )
            b, f = features.shape[:2]
            # the projection over the whole batch at once, as from the frames
            per_frame = self.stem.proj(features.flatten(0, 1)).reshape(b, f, -1)
        else:
            picked = _required(inputs.picked, "the frames its stem sees")
            if picked.ndim != 5 or picked.shape[2] != 3 or picked.shape[1] != picked_mask.shape[1]:
                raise ValueError(
                    f"expected every {every}th of {frame_mask.shape[1]} frames (B, F', 3, H, W), "
                    f"got {tuple(picked.shape)}"
                )
            b, f = picked.shape[:2]
            per_frame = self.stem(picked.flatten(0, 1)).reshape(b, f, -1)  # (B, F / every, W)
        per_frame = per_frame * picked_mask.unsqueeze(-1)
        delta = per_frame - F.pad(per_frame, (0, 0, 1, 0))[:, :-1]
        delta[:, 0] = 0
        tokens = per_frame + self.motion(delta)
        if self.changes is not None:
            changes = _required(inputs.changes, "the picture's changes")  # every frame's
            changes = F.pad(changes, (0, 0, 0, (-changes.shape[1]) % every))
            changes = changes.reshape(b, f, every, -1).amax(2)  # the largest per pick
            tokens = tokens + self.changes(changes)
        if self.branch is None or not self.run_branch:
            return self.head(tokens, picked_mask)
        grid = _required(inputs.grid, "the colour grid the sequence branch reads")
        trunk, out, out_mask = self.head.run(tokens, picked_mask)
        if every > 1:  # the trunk's tokens onto every frame's: each pick stands for its group
            out = out.repeat_interleave(every, dim=1)
            out_mask = out_mask.repeat_interleave(every, dim=1) & F.pad(
                frame_mask, (0, out.shape[1] - frame_mask.shape[1]), value=False
            )
        # Padded frames are zeros: the change into the first of them lands on a padded step.
        return _with_branch(trunk, self.branch, out, out_mask, grid)
