"""Per-item offsets of the cross-modal re-rank's step similarity, measured against a cohort.

In a pool of mixed media some items' learned steps are less like *every* query of the other
modality: a picture from an 8 fps file holds each frame across grid steps. The re-rank adds
w × the step similarity to the first pass's score, so such an item could lose to other clips
however well it matches its own query. Score normalisation against a cohort, as speaker
verification's Z-norm and cross-modal retrieval's query-bank normalisation do it, takes such an
item-level offset off: each item's mean step similarity to a cohort of the pool's own queries of
the other modality, measured as the re-rank measures a query against a candidate
(`window_distances`), subtracted w × it in the re-rank (`training.evaluate.fused_score`'s
callers; `benchmarks/bench_timing --sequence-offsets`).

The cohort must be the searched items (offsets against training clips ran against the pool's).
It is chosen by the items' ids alone (`cohort_rows`), so the same items give the same offsets in
any order.

A measurement, not a search default: measured as the service re-ranks, the offsets move val
figures by a query or two either way; the gains measured before came from resampling every pair
to the pool's longest sequence, which the evaluation's whole-clip re-rank did and the service
never does (docs/quality-log.md "What did not work").
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from models.alignment import window_distances
from models.sequence import Distance, sequence_similarity

# Queries each item's offset is the mean over: the standard error of a mean of 128 step
# similarities is a hundredth of their spread.
COHORT_SIZE = 128


def cohort_rows(ids: Sequence[str], eligible: np.ndarray, size: int = COHORT_SIZE) -> np.ndarray:
    """Rows (ascending) of at most `size` of the `eligible` ((N,) bool) items: those whose ids
    hash lowest, so the cohort depends on which items there are, not on their order."""
    eligible = np.asarray(eligible, bool)
    if eligible.shape != (len(ids),):
        raise ValueError(f"eligible must be ({len(ids)},) bool, got {eligible.shape}")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    rows = np.flatnonzero(eligible)
    keys = [hashlib.sha1(ids[int(r)].encode()).hexdigest() for r in rows]
    chosen = rows[np.argsort(keys, kind="stable")[:size]]
    return np.sort(chosen)


def sequence_offsets(
    queries: Tensor,
    query_mask: Tensor,
    items: Tensor,
    item_mask: Tensor,
    cohort: np.ndarray,
    steps_per_second: float = 4.0,
    distance: Distance = "interp",
) -> Tensor:
    """(N,) float32: each item's mean step similarity to the cohort's query sequences, as the
    re-rank measures a query against a candidate (`sequence_similarity` of `window_distances`:
    the query's steps against the item's best window, nothing resampled), `queries` (N, Tq, D)
    of the other modality, row for row with `items` (N, Ti, D); an item is never its own cohort
    member. Centred: the items' mean offset is 0 (the re-rank's scale stays as the policy
    measured it). An item without steps, or with no cohort member but itself, gets 0."""
    n = items.shape[0]
    if queries.shape[0] != n:
        raise ValueError(f"{queries.shape[0]} query rows for {n} items")
    cohort = np.asarray(cohort, np.int64)
    return cohort_offsets(
        queries[cohort],
        query_mask[cohort],
        cohort,
        n,
        lambda rows: (items[rows], item_mask[rows]),
        steps_per_second,
        distance,
        block=max(n, 1),
    )


def cohort_offsets(
    cohort_steps: Tensor,
    cohort_mask: Tensor,
    cohort: np.ndarray,
    n: int,
    fetch: Callable[[Tensor], tuple[Tensor, Tensor]],
    steps_per_second: float = 4.0,
    distance: Distance = "interp",
    block: int = 4096,
) -> Tensor:
    """`sequence_offsets` for `n` items read `block` rows at a time (`fetch(rows)` → their
    (B, Ti, D) steps and (B, Ti) mask; an index would read its stores so, were the offsets a
    search default, which they are not: see the module's note): the cohort's
    query sequences (`cohort_steps` (C, Tq, D), `cohort_mask`) are the items' of the other
    modality at rows `cohort`. Each pair is measured alone, so an offset does not depend on
    which items share its block (only a matrix product's rounding may)."""
    cohort = np.asarray(cohort, np.int64)
    if cohort_steps.shape[0] != len(cohort) or cohort_mask.shape[0] != len(cohort):
        raise ValueError(f"{cohort_steps.shape[0]} cohort sequences for {len(cohort)} rows")
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    total = torch.zeros(n, dtype=torch.float64)
    count = torch.zeros(n, dtype=torch.float64)
    members = [(j, int(q)) for j, q in enumerate(cohort.tolist()) if bool(cohort_mask[j].any())]
    for first in range(0, n if members else 0, block):
        rows = torch.arange(first, min(first + block, n))
        steps, mask = fetch(rows)
        usable = mask.any(dim=1)
        if not bool(usable.any()):
            continue
        rows, steps, mask = rows[usable], steps[usable], mask[usable]
        for j, q in members:
            query = cohort_steps[j][cohort_mask[j]]
            d, _ = window_distances(query, steps, mask, steps_per_second, distance)
            sim = sequence_similarity(d, distance).double()
            others = rows != q
            total[rows[others]] += sim[others]
            count[rows[others]] += 1
    measured = count > 0
    out = torch.zeros(n, dtype=torch.float64)
    out[measured] = total[measured] / count[measured]
    if bool(measured.any()):
        out[measured] -= out[measured].mean()
    return out.float()
