"""The event phase: the picture's event network learns when things happen from each clip's sound.

After the main epochs (and the sequence branches' phase), only `TrimodalModel.picture_events`
(`models.event_net`) learns, on the training clips as the feature cache holds them: its envelope
of a window of the picture must rise and fall with the clip's own sound's onset envelope
(`models.events.sound_events`), their correlation being the objective. The sound is the only
teacher, so any corpus with sound trains it, and a run can lend it clips besides its training
ones (`trimodal train --event-data`: e.g. pictures drawn and synthesised unlike the training
clips); a clip whose sound belongs to another, or whose sound comes from offscreen, disagrees
with its picture and is averaged over. Each clip's grey pictures are shown another way every
epoch (inverted, contrast, brightness, blur, noise): the network should learn what an event looks
like, not one renderer's palette. And some windows are
shown as a file at a lower frame rate would be decoded (`vary_rate`): a user's 8 or 10 fps file
holds frames on the grid, loses a one-frame flash and shows the rest late.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from models.event_net import event_inputs
from models.events import sound_events
from models.model import TrimodalModel
from training.augment import SLOWER_RATES, slower_file

EVENT_PHASE_DONE = "event_phase.json"
# Bins of a training window (4 s at 12 fps): clips of any length train together, and the network,
# which sees a few frames around each bin, never needs the whole clip. A batch of shorter clips
# takes windows as long as its shortest; a clip shorter than MIN_WINDOW bins is left out.
WINDOW = 48
MIN_WINDOW = 12
BATCH = 16
LR = 3e-3
# The phase holds its clips' inputs in memory (~80 KB a 6 s clip): a larger training corpus lends
# it a random subset of this many (a 27 k-parameter network learns from 2,000 in four epochs), and
# so does each source of more clips.
MAX_CLIPS = 4_000
# The share of training windows shown as a file at a lower frame rate, and those rates as shares of
# the grid's (8 and 10 fps at 12). Chosen on the val splits (docs/quality-log.md "A picture's
# events, learned from its sound"): with 8 epochs, the `--variety` val split's clips (other looks,
# 10-25 fps) audio→video / video→audio R@1 by envelopes alone 0.352 / 0.360 → 0.416 / 0.396 (two
# seeds against three), the own val 0.874 / 0.885 without it → 0.858 / 0.864.
RATE_SHARE = 0.3
LOWER_RATES = SLOWER_RATES


def envelope_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Minus the mean correlation of each row of (B, W) `logits` with the same row of `target`
    (both standardised along W here); rows whose target is flat (no sound to learn from) left
    out."""
    keep = target.std(1, correction=0) > 1e-6
    if not bool(keep.any()):
        return logits.sum() * 0.0
    y, t = logits[keep], target[keep]
    y = (y - y.mean(1, keepdim=True)) / (y.std(1, correction=0, keepdim=True) + 1e-5)
    t = (t - t.mean(1, keepdim=True)) / t.std(1, correction=0, keepdim=True)
    return -(y * t).mean(1).mean()


def vary_looks(grey: Tensor, rng: np.random.Generator) -> Tensor:
    """(B, T, S, S) grey frames in [0, 1], each clip shown another way: inverted half of the
    time, contrast ×0.4–1.4, brightness ±0.3, blurred by 0–2 box passes, camera noise."""
    b = grey.shape[0]
    shape = (b, 1, 1, 1)
    invert = torch.from_numpy(rng.random(shape) < 0.5).float()
    contrast = torch.from_numpy(rng.uniform(0.4, 1.4, shape)).float()
    brightness = torch.from_numpy(rng.uniform(-0.3, 0.3, shape)).float()
    g = invert * (1.0 - grey) + (1.0 - invert) * grey
    g = (g - 0.5) * contrast + 0.5 + brightness
    size = g.shape[-1]
    for _ in range(int(rng.integers(0, 3))):
        g = F.avg_pool2d(g.reshape(-1, 1, size, size), 3, 1, 1).reshape(g.shape)
    noise = torch.from_numpy(rng.standard_normal(g.shape).astype(np.float32))
    return g + noise * float(rng.uniform(0.0, 0.04))


def vary_rate(
    grey: Tensor,
    measures: Tensor,
    rng: np.random.Generator,
    share: float = RATE_SHARE,
    rates: tuple[float, ...] = LOWER_RATES,
) -> tuple[Tensor, Tensor]:
    """(B, W + 1, S, S) grey frames and (B, W, M) measures (`event_inputs`' log-compressed ones)
    of windows on the grid; each window, with probability `share`, as a file at a lower frame
    rate (a random one of `rates`, as a share of the grid's) would be decoded: the file's frame k
    (at k / rate) shows the grid frame floor(k / rate + phase); the grid holds the last file frame
    at or before each of its times (`models._decode._VideoSampler`, sample and hold); and bin j's
    measures are the largest of the file's frame pairs that start inside it, or the pair spanning
    it where none does, each pair's change the grid bins it spans, summed. The inputs are new
    tensors; the sound's target is not touched (the events happened when they happened)."""
    if not all(0.0 < r <= 1.0 for r in rates):
        raise ValueError(f"rates are shares of the grid's frame rate, in (0, 1]: {rates}")
    grey, measures = grey.clone(), measures.clone()
    steps = measures.shape[1]
    for row in range(len(grey)):
        if rng.random() >= share:
            continue
        rate = float(rng.choice(rates))
        shown, held = slower_file(steps + 1, rate, float(rng.uniform(0.0, 1.0)))
        k = np.arange(len(shown))
        grey[row] = grey[row, torch.from_numpy(shown[held])]
        linear = torch.expm1(measures[row])
        summed = torch.cat([linear.new_zeros(1, linear.shape[1]), linear.cumsum(0)])
        pairs = summed[torch.from_numpy(shown[1:])] - summed[torch.from_numpy(shown[:-1])]
        # at a rate at most the grid's, at most one pair starts in a bin: bin j's is the last
        # pair starting at or before it (the one spanning it where none starts inside)
        starts = np.floor(k[:-1] / rate + 1e-9).astype(np.int64)
        last = np.searchsorted(starts, np.arange(steps), side="right") - 1
        out = pairs[torch.from_numpy(np.maximum(last, 0))]
        out[torch.from_numpy(last < 0)] = 0.0
        measures[row] = torch.log1p(out.clamp_min(0.0))
    return grey, measures


class _Clips:
    """The clips' network inputs and sound targets, taken once (grey frames as uint8), from one
    or more (feature cache, clip ids) sources."""

    def __init__(self, model: TrimodalModel, sources: Sequence[tuple[Any, Sequence[str]]]) -> None:
        net = model.picture_events
        assert net is not None
        fps, sr = model.cfg.visual.fps, model.cfg.audio.sample_rate
        self.grey: list[np.ndarray] = []
        self.measures: list[np.ndarray] = []
        self.targets: list[np.ndarray] = []
        for cache, ids in sources:
            self._take(net, cache, ids, fps, sr)

    def _take(self, net: Any, cache: Any, ids: Sequence[str], fps: float, sr: int) -> None:
        for i in ids:
            frames, wave = np.asarray(cache.frames(i)), cache.audio(i)
            if len(frames) < MIN_WINDOW or wave.size == 0:
                continue  # too short for a window, or nothing to learn from
            grey, measures = event_inputs(
                frames,
                net.size,
                cache.changes(i),
                cache.region_changes(i),
                cache.motion(i),
                cache.halves(i),
            )
            target = sound_events(wave, sr, fps)
            n = min(len(measures), len(target))
            if n < MIN_WINDOW:
                continue
            self.grey.append((grey[: n + 1].numpy() * 255.0).round().astype(np.uint8))
            self.measures.append(measures[:n].numpy())
            self.targets.append(target[:n].astype(np.float32))

    def __len__(self) -> int:
        return len(self.targets)

    def batch(self, rows: np.ndarray, rng: np.random.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """A random window of each row's clip, `WINDOW` bins or the batch's shortest clip:
        grey (B, W + 1, S, S), measures (B, W, M), target (B, W)."""
        w = min(WINDOW, *(len(self.targets[r]) for r in rows))
        grey, measures, target = [], [], []
        for r in rows:
            s = int(rng.integers(0, len(self.targets[r]) - w + 1))
            grey.append(self.grey[r][s : s + w + 1])
            measures.append(self.measures[r][s : s + w])
            target.append(self.targets[r][s : s + w])
        return (
            torch.from_numpy(np.stack(grey)).float() / 255.0,
            torch.from_numpy(np.stack(measures)),
            torch.from_numpy(np.stack(target)),
        )


def _subset(ids: Sequence[str], seed: int, stream: int) -> list[str]:
    """At most `MAX_CLIPS` of `ids`, a random subset in their order where there are more."""
    ids = list(ids)
    if len(ids) <= MAX_CLIPS:
        return ids
    keep = np.random.default_rng([seed, stream]).choice(len(ids), MAX_CLIPS, replace=False)
    return [ids[i] for i in sorted(keep)]


def event_phase(
    prepared: Any,
    epochs: int,
    seed: int,
    out: Path,
    device: torch.device,
    log: IO[str],
    start: float,
    extra: Sequence[tuple[Any, Sequence[str]]] = (),
) -> bool:
    """`epochs` epochs in which only the best checkpoint's picture event network learns; the
    result, marked trained, replaces `best/` (everything else in it bit-identical). False, and
    `best/` untouched, when its config has no such network or no training clip has a window of
    pictures with sound."""
    model = TrimodalModel.load(out / "best", device, prepared.backbone, warn_untrained=False)
    net = model.picture_events
    if net is None or epochs < 1:
        return False
    ids = _subset([e.id for e in prepared.train], seed, 2_000)
    sources = [(prepared.cache, ids)]
    sources += [(cache, _subset(more, seed, 3_000 + k)) for k, (cache, more) in enumerate(extra)]
    clips = _Clips(model, sources)
    if not len(clips):
        log.write(json.dumps({"phase": "events", "skipped": "no clip long enough with sound"}))
        log.write("\n")
        return False
    model.requires_grad_(False)
    net.requires_grad_(True)
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=1e-4)
    # An epoch shows every clip the phase holds, lent ones too (an epoch of only as many windows
    # as the training clips give, drawn from all, lost on the val splits what lending gained:
    # docs/quality-log.md "Pictures drawn other ways teach the event network").
    steps = epochs * math.ceil(len(clips) / BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, LR, total_steps=steps)
    for epoch in range(epochs):
        rng = np.random.default_rng([seed, 2_000 + epoch])
        order = rng.permutation(len(clips))
        total, n = 0.0, 0
        for s in range(0, len(order), BATCH):
            grey, measures, target = clips.batch(order[s : s + BATCH], rng)
            grey, measures = vary_rate(grey, measures, rng)
            grey = vary_looks(grey, rng)
            loss = envelope_loss(net(grey.to(device), measures.to(device)), target.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(grey)
            n += len(grey)
        record = {
            "phase": "events",
            "epoch": epoch,
            "envelope_loss": total / max(1, n),
            "seconds": round(time.perf_counter() - start, 1),
        }
        log.write(json.dumps(record) + "\n")
        log.flush()
    net.eval()
    net.trained.fill_(1.0)
    model.save(out / "best")
    return True
