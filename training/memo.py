"""A file of rows per clip kept beside a feature cache (`training.shapes`, `training.timbres`):
each clip's rows, however many, under its id; written whole through a temporary file, so a
reader never meets half of one. And how those rows are measured: the clips the file lacks, in
worker processes."""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np

from models.spare import usable_cores
from training.datasets import ManifestItem

Job = TypeVar("Job")
Done = TypeVar("Done")

log = logging.getLogger(__name__)


def read_rows(memo: Path | None) -> dict[str, np.ndarray]:
    """Item id → its rows, from `memo` where it exists; nothing where it is damaged (logged:
    the clips are measured again)."""
    known: dict[str, np.ndarray] = {}
    if memo is None or not memo.exists():
        return known
    try:
        with np.load(memo) as z:
            offsets, rows = z["offsets"], z["rows"]
            for k, item_id in enumerate(z["ids"].tolist()):
                known[str(item_id)] = rows[offsets[k] : offsets[k + 1]]
    except (OSError, ValueError, KeyError) as e:
        log.warning("memo %s unreadable (%s): measuring again", memo, e)
        return {}
    return known


def write_rows(memo: Path, known: dict[str, np.ndarray], width: int) -> None:
    """Keep every clip's rows (each (R, `width`)) in `memo`."""
    ids = list(known)
    offsets = np.cumsum([0] + [len(known[i]) for i in ids])
    rows = np.concatenate([known[i] for i in ids]) if ids else np.zeros((0, width), np.float32)
    tmp = memo.with_name(memo.name + ".part")
    with open(tmp, "wb") as f:
        np.savez(f, ids=np.array(ids), offsets=offsets, rows=rows.astype(np.float32))
    os.replace(tmp, memo)


def in_workers(
    job: Callable[[Job], Done], jobs: Sequence[Job], workers: int | None, chunksize: int
) -> Iterator[Done]:
    """`job` of each of `jobs`, in order, in worker processes (spawned: the caller holds torch
    threads; `job` a module's function) or here where one worker would do."""
    workers = min(workers or usable_cores(), max(len(jobs), 1))
    if workers <= 1:
        yield from map(job, jobs)
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        yield from pool.map(job, jobs, chunksize=chunksize)


def measured_rows(
    items: Sequence[ManifestItem],
    memo: Path | None,
    path_of: Callable[[ManifestItem], Path | None],
    measure: Callable[[list[Path]], Iterable[list[np.ndarray] | str]],
    width: int,
    what: str,
) -> dict[str, np.ndarray]:
    """Item id → its rows, for the `items` with a file (`path_of`): those `memo` keeps read
    from it, the others measured (`measure` of their files: each file's rows first, or why it
    could not be, logged as `what` of the item not measured and left out) and `memo` written
    again where any was."""
    known = read_rows(memo)
    wanted = [i for i in items if path_of(i) is not None and i.id not in known]
    paths = [p for p in map(path_of, wanted) if p is not None]
    failed = 0
    for item, found in zip(wanted, measure(paths), strict=True):
        if isinstance(found, str):
            log.warning("%s of %s not measured: %s", what, item.id, found)
            failed += 1
            continue
        known[item.id] = found[0]
    if memo is not None and len(wanted) > failed:
        write_rows(memo, known, width)
    return {i.id: known[i.id] for i in items if i.id in known}
