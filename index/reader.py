"""Decoding corpus items for the indexer, in worker processes.

Kept apart from `index.embed` on purpose: a spawned worker imports only this module, PyAV and
numpy, not torch or the model code (which cost each worker seconds of start-up and exit).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.media import Fit, MediaError, decode
from models.shape import STILLS, media_shapes


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
    changes: np.ndarray | None = None  # (T,) the decoder's picture change per frame
    region_changes: np.ndarray | None = None  # (T, 4) the same per quadrant
    motion: np.ndarray | None = None  # (T,) the decoder's change of motion per frame
    halves: np.ndarray | None = None  # (T, 4) each half's change and change of motion per frame
    # (R, models.shape.ROW) its glyphs' outlines and colours (`models.shape.media_shapes`), where
    # asked for and it has pictures
    shapes: np.ndarray | None = None


def read_item(
    item: CorpusItem,
    fps: float,
    image_size: int,
    sample_rate: int,
    fit: Fit = "pad",
    shapes: bool = False,
) -> Decoded:
    """Decode one item for the encoders (and, with `shapes`, measure its glyphs' outlines on
    larger frames kept from the same pass, `models.shape.STILLS`); a refused file is an error
    with its reason."""
    try:
        size = (image_size, image_size)
        media = decode(
            item.media,
            fps=fps,
            size=size,
            sample_rate=sample_rate,
            fit=fit,
            stills=STILLS if shapes else None,
        )
        audio = media.audio
        if item.audio is not None:
            audio = decode(
                item.audio, fps=None, size=None, sample_rate=sample_rate, video=False
            ).audio
    except MediaError as e:
        return Decoded(item.id, None, None, 0.0, f"{e.reason.value}: {e.message}")
    return Decoded(
        item.id,
        media.frames,
        audio,
        media.duration_s,
        changes=media.changes,
        region_changes=media.region_changes,
        motion=media.motion,
        halves=media.halves,
        shapes=media_shapes(media) if shapes else None,
    )


def _read_job(job: tuple[CorpusItem, float, int, int, Fit, bool]) -> Decoded:
    return read_item(*job)


_PR_SET_PDEATHSIG = 1
PARENT_POLL_S = 0.25


def _exit_if_orphaned(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            # os._exit: the main thread may be blocked for ever writing to a pipe nobody reads.
            os._exit(1)
        time.sleep(PARENT_POLL_S)


def die_with_parent(parent: int) -> None:
    """Initializer of each decode worker: end it when the build process is gone, however that
    died (SIGKILL included), instead of leaving it blocked on the pool's pipes for ever.

    The kernel's parent-death signal (Linux) is the first line; a thread that watches for the
    worker being re-parented covers the rest (and the race of the parent dying before prctl).
    Once the workers are gone the pool's resource tracker reads EOF and exits by itself.
    """
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    threading.Thread(
        target=_exit_if_orphaned, args=(parent,), name="parent-watch", daemon=True
    ).start()


class Reader:
    """Decodes items in worker processes (spawned: the parent holds torch threads). The workers
    die with the process that made them (`die_with_parent`)."""

    def __init__(
        self,
        fps: float,
        image_size: int,
        sample_rate: int,
        workers: int,
        fit: Fit = "pad",
        shapes: bool = False,
    ) -> None:
        self.args = (fps, image_size, sample_rate, fit, shapes)
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Reader:
        if self.workers > 1:
            ctx = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=ctx,
                initializer=die_with_parent,
                initargs=(os.getpid(),),
            )
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
