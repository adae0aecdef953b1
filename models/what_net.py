"""What a piece shows and what it sounds: two small networks that name its sources' kind and size.

Timing alone cannot tell a 2.5 s sound piece's clip from the many clips whose events happen to fall
alike; the sources' kind and size would (a perfect encoder of both lifts the timing ceiling's R@1
from 0.62 to 0.84 at 2.5 s: `benchmarks.bench_event_ceiling`), but the pooled vectors, aligned
through captions, tell them apart across modalities poorly (a 2.5 s sound piece's top ten pictures
show its sources' kinds and sizes 42 % of the time among 200 val clips). So each modality gets a
network of its own that names them on one shared list of classes — the world's sources, each small
or large (SynthAV: a ball is a filled circle that thuds; a small bell rings higher) — trained
after the main epochs from the training clips' metadata (`training.what_phase`): the picture's
from its frames (the sources it shows), the sound's from its log-mel (the sources it sounds). A
search then weighs how far a query's and an item's lists agree (`agreement`) beside the pooled
score, the steps and the envelopes, where the checkpoint's search policy measured that it helps
(`models.policy.SearchPolicy.what_weight`).

A checkpoint whose config has no networks (`ModelConfig.what_nets` False: every checkpoint from
before them) or whose networks were never trained searches without them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

# The world's sources and sizes (shared/SYNTHAV.md); class k = SOURCES[k // 2] at SIZES[k % 2].
SOURCES = ("ball", "bell", "drum", "bird", "clock", "engine", "siren")
SIZES = ("small", "large")
CLASSES = tuple(f"{s} {z}" for s in SOURCES for z in SIZES)
# The picture network reads every FRAME_STEP-th frame (4 a second at 12 fps): a glyph's kind and
# size show in any frame, and a third of the frames cost a third.
FRAME_STEP = 3
WIDTH = 16


def class_of(kind: str, size: str) -> int | None:
    """The class of a source of `kind` at `size`; None for one outside the list."""
    if kind not in SOURCES or size not in SIZES:
        return None
    return SOURCES.index(kind) * len(SIZES) + SIZES.index(size)


class PictureWhat(nn.Module):
    """(B, T, H, W, 3) uint8 frames → (B, len(CLASSES)) logits: each frame read alone, the
    strongest evidence over time kept (a source seen in any frame is in the piece)."""

    def __init__(self, width: int = WIDTH) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(3, width, 5, 2, 2),
            nn.GroupNorm(4, width),
            nn.GELU(),
            nn.Conv2d(width, 2 * width, 3, 2, 1),
            nn.GroupNorm(4, 2 * width),
            nn.GELU(),
            nn.Conv2d(2 * width, 4 * width, 3, 2, 1),
            nn.GroupNorm(4, 4 * width),
            nn.GELU(),
            nn.Conv2d(4 * width, 4 * width, 3, 2, 1),
            nn.GroupNorm(4, 4 * width),
            nn.GELU(),
        )
        # pooled over the frame, so a glyph is the same wherever it is; its size is in which
        # filters respond (the last layer's field is 33 px across)
        self.frame = nn.Sequential(nn.Linear(8 * width, 128), nn.GELU())
        self.out = nn.Linear(128, len(CLASSES))

    def forward(self, frames: Tensor) -> Tensor:
        b, t = frames.shape[:2]
        x = frames.reshape(b * t, *frames.shape[2:]).permute(0, 3, 1, 2).float() / 255.0
        x = x - x.mean((2, 3), keepdim=True)  # a frame's exposure says nothing of its sources
        h = self.conv(x)
        h = self.frame(torch.cat([h.amax((2, 3)), h.mean((2, 3))], 1)).reshape(b, t, -1)
        return self.out(h.amax(1))


class SoundWhat(nn.Module):
    """(B, n_mels, frames) log-mel → (B, len(CLASSES)) logits; the recording level (a constant
    in log-mel) is taken out, pitch (where in the mel axis) kept: a small source sounds higher."""

    def __init__(self, n_mels: int, width: int = WIDTH) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, width, 3, 2, 1),
            nn.GELU(),
            nn.Conv2d(width, 2 * width, 3, 2, 1),
            nn.GELU(),
            nn.Conv2d(2 * width, 4 * width, 3, 2, 1),
            nn.GELU(),
        )
        self.frame = nn.Sequential(nn.Linear(4 * width * -(-n_mels // 8), 128), nn.GELU())
        self.out = nn.Linear(128, len(CLASSES))

    def forward(self, mel: Tensor) -> Tensor:
        x = self.conv((mel - mel.mean((1, 2), keepdim=True)).unsqueeze(1))  # (B, C, F', T')
        h = self.frame(x.permute(0, 3, 1, 2).flatten(2))  # (B, T', 128)
        return self.out(h.amax(1))


class WhatNets(nn.Module):
    """The picture's and the sound's network, and whether the trainer fitted them."""

    trained: Tensor  # () buffer: 1 once the trainer's what phase has fitted them

    def __init__(self, n_mels: int) -> None:
        super().__init__()
        self.picture = PictureWhat()
        self.sound = SoundWhat(n_mels)
        self.register_buffer("trained", torch.zeros(()))

    @property
    def is_trained(self) -> bool:
        return bool(self.trained.item() > 0)


def picture_inputs(frames: np.ndarray | Tensor) -> Tensor:
    """(1, T', H, W, 3) uint8: the frames the picture network reads of (T, H, W, 3) `frames`."""
    x = torch.as_tensor(np.ascontiguousarray(np.asarray(frames)[::FRAME_STEP]))
    if x.ndim != 4 or x.shape[-1] != 3 or len(x) == 0:
        raise ValueError(f"frames must be (T, H, W, 3) with T ≥ 1, got {tuple(x.shape)}")
    return x.unsqueeze(0)


@torch.inference_mode()
def probabilities(net: nn.Module, inputs: Sequence[Tensor]) -> np.ndarray:
    """(N, len(CLASSES)) float32: each input's (one item, batch of one) class probabilities."""
    net.eval()
    if not inputs:
        return np.zeros((0, len(CLASSES)), np.float32)
    return torch.cat([torch.sigmoid(net(x)) for x in inputs]).float().cpu().numpy()


def agreement(query: np.ndarray | Tensor, items: np.ndarray | Tensor) -> Tensor:
    """(Q, N) in [0, 1]: how many of the classes (Q, C) `query` and (N, C) `items` say alike —
    both present or both absent, each weighed by its probability — as a share of the classes.
    A row of NaN (an item without that stream) agrees with nothing: 0."""
    q = torch.as_tensor(query, dtype=torch.float32)
    t = torch.as_tensor(items, dtype=torch.float32)
    if q.ndim != 2 or t.ndim != 2 or q.shape[1] != len(CLASSES) or t.shape[1] != len(CLASSES):
        raise ValueError(
            f"expected (Q, {len(CLASSES)}) and (N, {len(CLASSES)}), got "
            f"{tuple(q.shape)} and {tuple(t.shape)}"
        )
    out = (q @ t.T + (1 - q) @ (1 - t).T) / len(CLASSES)
    return torch.nan_to_num(out, nan=0.0)
