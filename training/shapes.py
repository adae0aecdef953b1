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
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from models.shape import ROW, SHAPE_FPS, SHAPE_SIZE, read_shapes
from training.datasets import ManifestItem
from training.memo import in_workers, measured_rows

log = logging.getLogger(__name__)

# 1: `models.shape` as first built (2026-12-05); 2: each part's colour too
SHAPES_VERSION = 2


def _job(job: tuple[str, tuple[float, ...]]) -> list[np.ndarray] | str:
    return read_shapes(*job)


def read_all(
    paths: Sequence[Path], stretches: Sequence[Sequence[float]], workers: int | None = None
) -> Iterator[list[np.ndarray] | str]:
    """`read_shapes` of each path with its stretches, in worker processes, in order."""
    jobs = [(str(p), tuple(s)) for p, s in zip(paths, stretches, strict=True)]
    return in_workers(_job, jobs, workers, chunksize=4)


def memo_name() -> str:
    """The file a feature cache's directory keeps its clips' outlines in: named by how they
    were measured."""
    return f"shapes-v{SHAPES_VERSION}-{SHAPE_SIZE}px-{SHAPE_FPS:g}fps.npz"


def clip_shapes(
    items: Sequence[ManifestItem], directory: Path | None = None, workers: int | None = None
) -> dict[str, np.ndarray]:
    """Item id → its `glyph_shapes` rows (as shown), for the items with a video file whose
    frames decode; measured once and kept in `directory` (a feature cache's) where given."""
    return measured_rows(
        items,
        None if directory is None else Path(directory) / memo_name(),
        lambda item: item.video,
        lambda paths: read_all(paths, [(1.0,)] * len(paths), workers),
        ROW,
        "outlines",
    )
