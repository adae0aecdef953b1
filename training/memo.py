"""A file of rows per clip kept beside a feature cache (`training.shapes`, `training.timbres`):
each clip's rows, however many, under its id; written whole through a temporary file, so a
reader never meets half of one."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

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
