"""Decoding corpus items for the indexer, in worker processes.

Kept apart from `index.embed` on purpose: a spawned worker imports only this module, PyAV and
numpy, not torch or the model code (which cost each worker seconds of start-up and exit).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.media import MediaError, decode


@dataclass(frozen=True)
class CorpusItem:
    id: str
    media: Path  # the video file, or the audio file of an audio-only item
    audio: Path | None = None  # a separate audio track, if any
    title: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class Decoded:
    id: str
    frames: np.ndarray | None
    audio: np.ndarray | None
    duration_s: float
    error: str | None = None


def read_item(item: CorpusItem, fps: float, image_size: int, sample_rate: int) -> Decoded:
    """Decode one item for the encoders; a refused file is an error with its reason."""
    try:
        media = decode(item.media, fps=fps, size=(image_size, image_size), sample_rate=sample_rate)
        audio = media.audio
        if item.audio is not None:
            audio = decode(
                item.audio, fps=None, size=None, sample_rate=sample_rate, video=False
            ).audio
    except MediaError as e:
        return Decoded(item.id, None, None, 0.0, f"{e.reason.value}: {e.message}")
    return Decoded(item.id, media.frames, audio, media.duration_s)


def _read_job(job: tuple[CorpusItem, float, int, int]) -> Decoded:
    return read_item(*job)


class Reader:
    """Decodes items in worker processes (spawned: the parent holds torch threads)."""

    def __init__(self, fps: float, image_size: int, sample_rate: int, workers: int) -> None:
        self.args = (fps, image_size, sample_rate)
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Reader:
        if self.workers > 1:
            ctx = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def read(self, items: Sequence[CorpusItem]) -> Iterator[Decoded]:
        jobs = [(item, *self.args) for item in items]
        if self._pool is None:
            yield from map(_read_job, jobs)
        else:
            yield from self._pool.map(_read_job, jobs, chunksize=2)
