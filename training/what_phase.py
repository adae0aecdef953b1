"""The what phase: the picture's and the sound's networks learn to name the sources a clip shows
and sounds (`models.what_net`), after the event phase, from the training clips' metadata.

A SynthAV clip's `meta` says which sources it shows (every one but an offscreen sound) and which
it sounds (`meta["audio"]["sources"]`: the track's own, a misaligned clip's donor's included), each
with its kind and size: the picture network's targets are the first, the sound network's the
second, one binary target per class. Each step shows a piece of every clip in a batch, of one
length drawn from `PIECE_S` (a query may be any part of a clip), the sound at a recording level
drawn as the main epochs draw it (`training.augment.level_only`'s range), so a quiet file is the
same source. Nothing else of the model changes. A corpus without such metadata (a user's own
media) leaves the networks untrained, and searches go without them.

Other clips with such metadata can be lent to the phase (`trimodal train --what-data`, e.g. a
`trimodal synth --variety` corpus: glyphs drawn, sounds synthesised and files encoded unlike the
training clips), so that the networks learn the world's kinds and sizes rather than one
renderer's pictures of them. Lent clips join every epoch beside the training ones.
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

from models.model import TrimodalModel
from models.what_net import CLASSES, class_of, picture_inputs
from training.augment import level_only
from training.datasets import ManifestItem

WHAT_PHASE_DONE = "what_phase.json"
BATCH = 32
LR = 3e-3
PIECE_S = (1.5, 6.0)
# the recording levels the main epochs draw by default (`training.augment.level_only`)
GAIN_DB = level_only().gain_db


def vary_pictures(frames: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """(B, T, H, W, 3) uint8 → float in [0, 255]: each piece drawn another way that keeps what
    and how large its sources are — colours swapped or greyed (a source's kind is not its
    colour), light and dark inverted (day and night), exposure and contrast, camera noise, a
    soft focus, mirrored — never rescaled (a glyph's size is what it says)."""
    out = frames.float()
    for b in range(len(out)):
        x = out[b]
        x = x[..., torch.as_tensor(rng.permutation(3))]
        if rng.random() < 0.2:
            x = x.mean(-1, keepdim=True).expand_as(x)
        if rng.random() < 0.3:
            x = 255.0 - x
        x = (x - 128.0) * float(rng.uniform(0.6, 1.4)) + 128.0 + float(rng.uniform(-30, 30))
        if rng.random() < 0.3:  # a 3×3 box blur
            x = F.avg_pool2d(x.permute(0, 3, 1, 2), 3, 1, 1, count_include_pad=False)
            x = x.permute(0, 2, 3, 1)
        if rng.random() < 0.5:
            x = x.flip(2)
        gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
        x = x + torch.randn(x.shape, generator=gen) * float(rng.uniform(0.0, 12.0))
        out[b] = x.clamp(0.0, 255.0)
    return out


def vary_sounds(mel: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """(B, n_mels, frames) log-mel, each sound heard another way that keeps its pitch: a tilt of
    up to ±6 dB across the band (another microphone or synthesis), a noise floor 10–40 dB below
    it, and for some a band cut off as a low sample rate cuts it."""
    out = mel.clone()
    bins = torch.linspace(-1.0, 1.0, mel.shape[1], device=mel.device)[:, None]
    for b in range(len(out)):
        x = out[b] + float(rng.uniform(-1.0, 1.0)) * math.log(10**0.6) * bins
        if rng.random() < 0.5:
            floor = x.exp().mean() * 10 ** (-float(rng.uniform(1.0, 4.0)))
            x = torch.logaddexp(x, floor.log().expand_as(x))
        if rng.random() < 0.3:
            top = int(rng.integers(mel.shape[1] // 2, mel.shape[1]))
            x[top:] = x.min()
        out[b] = x
    return out


def what_labels(meta: dict[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """((C,), (C,)) float32 multi-hot: the classes a clip shows and those it sounds, from SynthAV
    metadata; None for a clip without it (or naming a source or size outside `CLASSES`)."""
    sources = meta.get("sources")
    heard = (meta.get("audio") or {}).get("sources")
    if not isinstance(sources, list) or not isinstance(heard, list):
        return None
    seen_out = np.zeros(len(CLASSES), np.float32)
    heard_out = np.zeros(len(CLASSES), np.float32)
    for found, out in (
        ([s for s in sources if s.get("role") != "offscreen"], seen_out),
        (heard, heard_out),
    ):
        for s in found:
            k = class_of(str(s.get("kind")), str(s.get("size")))
            if k is None:
                return None
            out[k] = 1.0
    return seen_out, heard_out


def named_clips(items: Sequence[ManifestItem]) -> int:
    """How many of `items` name their sources (`what_labels`): what the phase learns from."""
    return sum(what_labels(i.meta) is not None for i in items)


class _Clips:
    """Clips with labels and both streams, as their feature caches hold them: (cache, items)
    sources, the training clips' first."""

    def __init__(
        self, sources: Sequence[tuple[Any, Sequence[ManifestItem]]], fps: float, sr: int
    ) -> None:
        self.fps, self.sr = fps, sr
        self.caches: list[Any] = []
        self.ids: list[str] = []
        self.seen: list[np.ndarray] = []
        self.heard: list[np.ndarray] = []
        self.seconds: list[float] = []
        for cache, items in sources:
            for item in items:
                labels = what_labels(item.meta)
                if labels is None or item.id not in cache.row:
                    continue
                frames, wave = cache.frames(item.id), cache.audio(item.id)
                seconds = min(len(frames) / fps, len(wave) / sr)
                if seconds < PIECE_S[0]:
                    continue
                self.caches.append(cache)
                self.ids.append(item.id)
                self.seen.append(labels[0])
                self.heard.append(labels[1])
                self.seconds.append(seconds)

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, rows: Sequence[int], rng: np.random.Generator):
        """Pieces of one length (at most the shortest clip's) at random offsets: frames, waves
        at a random level, and both targets."""
        span = float(rng.uniform(*PIECE_S))
        span = min(span, min(self.seconds[r] for r in rows))
        n_frames, n_samples = max(1, round(span * self.fps)), round(span * self.sr)
        frames, waves = [], []
        for r in rows:
            clip, wave = self.caches[r].frames(self.ids[r]), self.caches[r].audio(self.ids[r])
            start = float(rng.uniform(0.0, self.seconds[r] - span))
            first = min(int(start * self.fps), len(clip) - n_frames)
            frames.append(picture_inputs(clip[first : first + n_frames])[0])
            at = min(int(start * self.sr), len(wave) - n_samples)
            waves.append(np.asarray(wave[at : at + n_samples], np.float32))
        short = min(len(f) for f in frames)
        gain = 10 ** (rng.uniform(*GAIN_DB, size=(len(rows), 1)) / 20)
        return (
            torch.stack([f[:short] for f in frames]),
            torch.as_tensor(np.stack(waves) * gain, dtype=torch.float32),
            torch.as_tensor(np.stack([self.seen[r] for r in rows])),
            torch.as_tensor(np.stack([self.heard[r] for r in rows])),
        )


def what_phase(
    prepared: Any,
    epochs: int,
    seed: int,
    out: Path,
    device: torch.device,
    log: IO[str],
    start: float,
    extra: Sequence[tuple[Any, Sequence[ManifestItem]]] = (),
    vary: bool = False,
) -> bool:
    """`epochs` epochs in which only the best checkpoint's what networks learn, from the
    training clips and the (cache, items) of `extra` (lent clips, decoded as the run decodes);
    the result, marked trained, replaces `best/` (everything else in it bit-identical). False,
    and `best/` untouched, when its config has no such networks or no clip has the metadata."""
    model = TrimodalModel.load(out / "best", device, prepared.backbone, warn_untrained=False)
    nets = model.what_nets
    if nets is None or epochs < 1:
        return False
    cfg = model.cfg
    sources = [(prepared.cache, prepared.train_items), *extra]
    clips = _Clips(sources, cfg.visual.fps, cfg.audio.sample_rate)
    if not len(clips):
        log.write(json.dumps({"phase": "what", "skipped": "no clip names its sources"}))
        log.write("\n")
        return False
    model.requires_grad_(False)
    nets.requires_grad_(True)
    nets.train()
    opt = torch.optim.AdamW(nets.parameters(), lr=LR, weight_decay=1e-4)
    steps = epochs * math.ceil(len(clips) / BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, LR, total_steps=steps)
    for epoch in range(epochs):
        rng = np.random.default_rng([seed, 3_000 + epoch])
        order = rng.permutation(len(clips))
        totals, n = np.zeros(2), 0
        for s in range(0, len(order), BATCH):
            frames, waves, seen, heard = clips.batch(order[s : s + BATCH].tolist(), rng)
            with torch.no_grad():
                mel = model.log_mel(waves.to(device))
                if vary:
                    frames, mel = vary_pictures(frames, rng), vary_sounds(mel, rng)
            picture = F.binary_cross_entropy_with_logits(
                nets.picture(frames.to(device)), seen.to(device)
            )
            sound = F.binary_cross_entropy_with_logits(nets.sound(mel), heard.to(device))
            opt.zero_grad(set_to_none=True)
            (picture + sound).backward()
            opt.step()
            sched.step()
            totals += [float(picture.detach()) * len(seen), float(sound.detach()) * len(seen)]
            n += len(seen)
        record = {
            "phase": "what",
            "epoch": epoch,
            "clips": len(clips),
            "picture_loss": totals[0] / max(1, n),
            "sound_loss": totals[1] / max(1, n),
            "seconds": round(time.perf_counter() - start, 1),
        }
        log.write(json.dumps(record) + "\n")
        log.flush()
    nets.eval()
    nets.trained.fill_(1.0)
    model.save(out / "best")
    return True
