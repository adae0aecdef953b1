"""Training examples from the caches: frames, waveforms and one caption of each kind per clip."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from training.augment import SLOWER_RATES, AugmentConfig, augment_audio, augment_frames, show_slower
from training.cache import FeatureCache, TextCache
from training.datasets import CAPTION_KINDS, ManifestItem

# When an item lacks a caption kind, borrow the nearest kind that it has.
_FALLBACK = {
    "visual": ("visual", "audiovisual", "audio"),
    "audio": ("audio", "audiovisual", "visual"),
    "audiovisual": ("audiovisual", "visual", "audio"),
}


@dataclass(frozen=True)
class Example:
    id: str
    captions: dict[str, tuple[str, ...]]  # every kind filled (see _FALLBACK)
    has_video: bool
    has_audio: bool


@dataclass
class Batch:
    ids: list[str]
    frames: list[np.ndarray]  # uint8 (T, S, S, 3) each, T may be 0
    audio: list[np.ndarray]  # float32 (N,) each, N may be 0
    text: dict[str, torch.Tensor]  # kind → (B, hidden) cached sentence vectors
    has_video: torch.Tensor  # (B,) bool
    has_audio: torch.Tensor  # (B,) bool
    # kind → (B, hidden): another caption of the same kind per clip (a different one where the clip
    # has several), for the paraphrase loss; None unless asked for.
    text_alt: dict[str, torch.Tensor] | None = None
    # per clip: its id where `frames` are the cache's own (not augmented), else None; what the
    # cache's `PictureMemo` keeps the visual encoder's measures of the frames by
    frame_keys: list[str | None] | None = None


def examples(items: Sequence[ManifestItem], cache: FeatureCache) -> list[Example]:
    """Items that decoded and have at least one caption; skipped ones stay listed in the cache."""
    out = []
    for item in items:
        if item.id not in cache.row:
            continue
        available = {k: v for k, v in item.captions.items() if v}
        if not available:
            continue
        captions = {
            kind: next(item.captions[k] for k in _FALLBACK[kind] if item.captions.get(k))
            for kind in CAPTION_KINDS
        }
        out.append(
            Example(
                item.id, captions, len(cache.frames(item.id)) > 0, cache.audio(item.id).size > 0
            )
        )
    return out


def all_captions(exs: Sequence[Example]) -> list[str]:
    return sorted({t for e in exs for texts in e.captions.values() for t in texts})


def iterate_batches(
    exs: Sequence[Example],
    cache: FeatureCache,
    texts: TextCache,
    batch_size: int,
    rng: np.random.Generator,
    shuffle: bool = True,
    drop_last: bool = True,
    augment: AugmentConfig | None = None,
    sample_rate: int = 16_000,
    paraphrases: bool = False,
) -> Iterator[Batch]:
    """Batches of examples in a random order (one caption of each kind drawn per clip); with
    `augment`, each clip's frames and waveform are re-shown and re-heard another way each time
    (`training.augment`; `sample_rate` is the cached waveforms'); with `paraphrases`, a second,
    different caption of each kind per clip (`Batch.text_alt`)."""
    order = rng.permutation(len(exs)) if shuffle else np.arange(len(exs))
    stop = len(order) - (len(order) % batch_size if drop_last and len(order) >= batch_size else 0)
    for start in range(0, stop, batch_size):
        chosen = [exs[i] for i in order[start : start + batch_size]]
        # A fresh caption of each kind per clip per epoch: the captions are augmentation.
        picks = {
            kind: [int(rng.integers(len(e.captions[kind]))) for e in chosen]
            for kind in CAPTION_KINDS
        }
        text = {
            kind: texts.lookup(
                [e.captions[kind][i] for e, i in zip(chosen, picks[kind], strict=True)]
            )
            for kind in CAPTION_KINDS
        }
        text_alt = None
        if paraphrases:
            text_alt = {}
            for kind in CAPTION_KINDS:
                alts = []
                for e, i in zip(chosen, picks[kind], strict=True):
                    n = len(e.captions[kind])
                    alts.append(
                        e.captions[kind][(i + 1 + int(rng.integers(n - 1))) % n if n > 1 else i]
                    )
                text_alt[kind] = texts.lookup(alts)
        frames = [np.asarray(cache.frames(e.id)) for e in chosen]
        keys: list[str | None] = [e.id for e in chosen]
        audio = [cache.audio(e.id) for e in chosen]
        if augment is not None:
            shown = [augment_frames(f, rng, augment) for f in frames]
            keys = [k if s is f else None for k, s, f in zip(keys, shown, frames, strict=True)]
            frames = shown
            audio = [
                augment_audio(np.asarray(a, np.float32), sample_rate, rng, augment) for a in audio
            ]
        yield Batch(
            ids=[e.id for e in chosen],
            frames=frames,
            audio=audio,
            text=text,
            has_video=torch.tensor([e.has_video for e in chosen]),
            has_audio=torch.tensor([e.has_audio for e in chosen]),
            text_alt=text_alt,
            frame_keys=keys,
        )


def shown_slower(
    batch: Batch,
    rng: np.random.Generator,
    share: float,
    rates: tuple[float, ...] = SLOWER_RATES,
) -> Batch:
    """`batch` with each clip's frames, with probability `share`, as a file at a lower frame rate
    would show them on the grid (`training.augment.show_slower`); such a clip's frames are its
    own, so the picture memo does not key them (`Batch.frame_keys`). The sound, captions and the
    rest are the batch's."""
    frames = [show_slower(f, rng, share, rates) for f in batch.frames]
    keys = batch.frame_keys or [None] * len(frames)
    keys = [k if s is f else None for k, s, f in zip(keys, frames, batch.frames, strict=True)]
    return replace(batch, frames=frames, frame_keys=keys)
