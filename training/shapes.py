"""The outlines of each clip's glyphs (`models.shape.glyph_shapes`), decoded apart from the
feature cache: they are measured on larger frames than the encoders see (`SHAPE_SIZE`), a few a
second (`SHAPE_FPS`).

`clip_shapes` keeps what it measured beside a feature cache (`memo_name` in its directory: the
cache's name already stands for its files, their sizes and times), so a pool measured once
is read back after. A file that fails to decode is reported and left unread (its kinds unknown),
never read as empty frames.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from models.shape import ROW, SHAPE_FPS, SHAPE_SIZE, read_shapes
from models.spare import usable_cores
from training.datasets import ManifestItem
from training.memo import read_rows, write_rows

log = logging.getLogger(__name__)

# 1: `models.shape` as first built (2026-12-05); 2: each part's colour too
SHAPES_VERSION = 2


def _job(job: tuple[str, tuple[float, ...]]) -> list[np.ndarray] | str:
    return read_shapes(*job)


def read_all(
    paths: Sequence[Path], stretches: Sequence[Sequence[float]], workers: int | None = None
) -> Iterator[list[np.ndarray] | str]:
    """`read_shapes` of each path with its stretches, in worker processes (spawned: the caller
    holds torch threads), in order."""
    jobs = [(str(p), tuple(s)) for p, s in zip(paths, stretches, strict=True)]
    workers = min(workers or usable_cores(), max(len(jobs), 1))
    if workers <= 1:
        yield from map(_job, jobs)
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        yield from pool.map(_job, jobs, chunksize=4)


def memo_name() -> str:
    """The file a feature cache's directory keeps its clips' outlines in: named by how they
    were measured."""
    return f"shapes-v{SHAPES_VERSION}-{SHAPE_SIZE}px-{SHAPE_FPS:g}fps.npz"


def clip_shapes(
    items: Sequence[ManifestItem], directory: Path | None = None, workers: int | None = None
) -> dict[str, np.ndarray]:
    """Item id → its `glyph_shapes` rows (as shown), for the items with a video file whose
    frames decode; measured once and kept in `directory` (a feature cache's) where given."""
    memo = None if directory is None else Path(directory) / memo_name()
    known = read_rows(memo)
    wanted = [i for i in items if i.video is not None and i.id not in known]
    failed = 0
    paths = [i.video for i in wanted if i.video is not None]
    for item, found in zip(wanted, read_all(paths, [(1.0,)] * len(paths), workers), strict=True):
        if isinstance(found, str):
            log.warning("outlines of %s not read: %s", item.id, found)
            failed += 1
            continue
        known[item.id] = found[0]
    if memo is not None and len(wanted) > failed:
        write_rows(memo, known, ROW)
    return {i.id: known[i.id] for i in items if i.id in known}
