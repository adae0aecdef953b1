"""A picture's events, learned from its own sound.

The hand-made change envelope (`models.events.picture_events`: how much the picture changes from
one frame to the next) follows a SynthAV clip's true event times with a median correlation of
0.72 on the generator's own val clips and far less where the picture is drawn another way
(`benchmarks/bench_events.py` fidelity). It measures every change alike: a glyph gliding across
the screen counts as much as one that flashes, and a ball's landing, a change of motion rather
than of pixels, counts hardly at all. Which changes are events is what a clip's *sound* says: an
event starts a sound. So a small network reads each pair of consecutive frames (grey, 32 × 32)
beside the decoder's per-frame measures (change, its quadrants, change of motion, the halves'),
and learns to fire where the clip's own sound has an onset (`training.trainer`'s event phase:
the envelope's correlation with the sound's onset envelope, `models.events.sound_events`). No
labels: a clip whose sound is another's, or a sound from offscreen, is noise it averages over, so
the training corpus can be anyone's.

It is the picture's envelope wherever a search meets sound with picture or picture with picture by
their events (`TrimodalModel.picture_envelope`: the index, an uploaded video, the evaluation and so
the search policy); a checkpoint without a trained one keeps the hand-made envelope. Chosen on the
val splits (200 clips among themselves, envelopes alone, the sound's onset envelope against the
picture's, shared-event clips, audio→video / video→audio R@1; docs/quality-log.md "A picture's
events, learned from its sound"): the generator's own val clips 0.63 / 0.61 hand-made → 0.81 / 0.81,
the same re-encoded 0.44 / 0.45 → 0.46 / 0.46, a `--variety` val split 0.32 / 0.33 → 0.32 / 0.32.
Taught by the true event times instead of the sound, the same network found fewer (0.74 / 0.76 on
the own val clips, 64 × 64): what it is for is to meet the sound.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.events import PICTURE_REGIONS, frame_changes, frame_region_changes, standardise
from models.motion import HALVES

# The side of the grey pictures the network reads: on the own val clips 32 × 32 found about as
# many as 64 × 64 (audio→video R@1 0.81 / 0.81 at 4 and 3 epochs) for a quarter of the cost.
SIZE = 32
WIDTH = 16
# The decoder's measures per frame, in this order: change, its quadrants', change of motion, each
# half's change and change of motion.
MEASURES = 1 + PICTURE_REGIONS + 1 + 2 * len(HALVES)


class PictureEventNet(nn.Module):
    """(B, T + 1, S, S) grey frames and (B, T, MEASURES) measures → (B, T) event logits, bin t
    for what happens between frames t and t + 1 (where `picture_events` places a change)."""

    trained: Tensor  # () buffer: 1 once the trainer's event phase has fitted it

    def __init__(self, size: int = SIZE, width: int = WIDTH) -> None:
        super().__init__()
        self.size = size
        self.frames = nn.Sequential(
            nn.Conv2d(3, width, 5, 2, 2),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, 2, 1),
            nn.ReLU(),
        )
        self.temporal = nn.Sequential(
            nn.Conv1d(4 * width + MEASURES, 32, 5, padding=2),
            nn.ReLU(),
            nn.Conv1d(32, 1, 3, padding=1),
        )
        # Set by the trainer's event phase: an untrained network is never used for a search.
        self.register_buffer("trained", torch.zeros(()))

    @property
    def is_trained(self) -> bool:
        return bool(self.trained.item() > 0)

    def forward(self, grey: Tensor, measures: Tensor) -> Tensor:
        b, steps = measures.shape[:2]
        before, after = grey[:, :-1], grey[:, 1:]  # (B, T, S, S) each
        pairs = torch.stack([before, after, 4.0 * (after - before)], 2)  # (B, T, 3, S, S)
        h = self.frames(pairs.reshape(b * steps, 3, self.size, self.size))
        seen = torch.cat([h.amax((2, 3)), h.mean((2, 3))], 1).reshape(b, steps, -1)
        x = torch.cat([seen, measures], 2).transpose(1, 2)  # (B, C, T)
        return self.temporal(x)[:, 0]  # (B, T)


def event_inputs(
    frames: np.ndarray,
    size: int = SIZE,
    changes: np.ndarray | None = None,
    region_changes: np.ndarray | None = None,
    motion: np.ndarray | None = None,
    halves: np.ndarray | None = None,
) -> tuple[Tensor, Tensor]:
    """One clip's network inputs: (T + 1, S, S) grey frames in [0, 1] (the last repeated: nothing
    follows it) and (T, MEASURES) measures, each taken relative to its own median in the clip
    (a clip's scale says nothing of when its events are) and log-compressed. A measure the
    decoder did not give is taken from the frames where it can be (the change, its quadrants)
    and is zero where it cannot (motion)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or len(frames) == 0:
        raise ValueError(f"frames must be (T, H, W, C) with T ≥ 1, got {frames.shape}")
    t, height, width = frames.shape[:3]
    # grey as the mean of the channels, then each cell's mean (area resampling), in a few
    # passes over the uint8 frames where the picture divides evenly (a reduction along the
    # 3-wide channel axis is ten times slower)
    white = 3.0 * (255.0 if frames.dtype == np.uint8 else 1.0)
    grey_full = (frames[..., 0].astype(np.float32) + frames[..., 1] + frames[..., 2]) / white
    if height % size == 0 and width % size == 0:
        kh, kw = height // size, width // size
        cells = sum(grey_full[:, i::kh, j::kw] for i in range(kh) for j in range(kw))
        grey = torch.from_numpy(np.ascontiguousarray(cells / (kh * kw), np.float32))
    else:
        grey = F.interpolate(torch.from_numpy(grey_full)[:, None], (size, size), mode="area")[:, 0]
    grey = torch.cat([grey, grey[-1:]])  # (T + 1, S, S)

    def column(values: np.ndarray | None, width: int) -> np.ndarray:
        if values is None:
            return np.zeros((t, width), np.float32)
        v = np.asarray(values, np.float32).reshape(t, width)
        if not np.isfinite(v).all():
            raise ValueError("the decoder's picture measures have non-finite values")
        return v

    if changes is None:
        changes = frame_changes(frames)
    if region_changes is None:
        region_changes = frame_region_changes(frames)
    values = np.concatenate(
        [
            column(changes, 1),
            column(region_changes, PICTURE_REGIONS),
            column(motion, 1),
            column(halves, 2 * len(HALVES)),
        ],
        1,
    )
    values = np.maximum(values, 0.0)
    median = np.median(values, axis=0, keepdims=True)
    mean = values.mean(axis=0, keepdims=True)
    scale = np.where(median > 0, median, np.where(mean > 0, mean, 1.0))
    return grey, torch.from_numpy(np.log1p(values / scale).astype(np.float32))


@torch.inference_mode()
def learned_envelope(
    net: PictureEventNet,
    frames: np.ndarray,
    changes: np.ndarray | None = None,
    region_changes: np.ndarray | None = None,
    motion: np.ndarray | None = None,
    halves: np.ndarray | None = None,
) -> np.ndarray:
    """(T,) the picture's standardised event envelope by `net`, one bin per frame (as
    `picture_events` at the frame rate)."""
    grey, measures = event_inputs(frames, net.size, changes, region_changes, motion, halves)
    device = net.trained.device
    logits = net(grey[None].to(device), measures[None].to(device))[0]
    return standardise(logits.float().cpu().numpy())
