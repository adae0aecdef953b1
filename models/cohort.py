"""Per-item offsets of the cross-modal re-rank's step similarity, measured against a cohort.

In a pool of mixed media some items' learned steps are less like *every* query of the other
modality: a picture from an 8 fps file holds each frame across grid steps, and its steps' mean
similarity to the pool's sounds is 0.12 where other recipes' is 0.5 (README "Frame rates"). The
re-rank adds w × the step similarity to the first pass's score, so such an item loses to other
clips however well it matches its own query. Score normalisation against a cohort, as speaker
verification's Z-norm and cross-modal retrieval's query-bank normalisation do it, takes that
item-level offset off: each item's mean step similarity to a cohort of the pool's own queries of
the other modality (`sequence_offsets`), subtracted w × it in the re-rank
(`training.evaluate.fused_score`'s callers; `benchmarks/bench_timing --sequence-offsets`).

The cohort must be the searched items: offsets measured against training clips ran *against*
the pool's for sounds (correlation −0.95 on a mixed val pool) and lost there. The cohort is
chosen by the items' ids alone (`cohort_rows`), so the same items give the same offsets in any
order.

What it moves is measured on whole clips only; the service does not use it yet (an index would
keep the offsets per item, kept current through `add` and `remove`, and the policy would choose
it per query length on val: README "Frame rates").
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from models.sequence import Distance, paired_distance, sequence_similarity

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
    distance: Distance = "interp",
) -> Tensor:
    """(N,) float32: each item's mean step similarity (`sequence_similarity` of the whole
    sequences' `paired_distance`) to the cohort's query sequences, `queries` (N, Tq, D) of the
    other modality, row for row with `items` (N, Ti, D); an item is never its own cohort member.
    Centred: the items' mean offset is 0 (the re-rank's scale stays as the policy measured it).
    An item without steps, or with no cohort member but itself, gets 0."""
    n = items.shape[0]
    if queries.shape[0] != n:
        raise ValueError(f"{queries.shape[0]} query rows for {n} items")
    cohort = np.asarray(cohort, np.int64)
    total = torch.zeros(n, dtype=torch.float64)
    count = torch.zeros(n, dtype=torch.float64)
    usable = item_mask.any(dim=1)
    rows = usable.nonzero().flatten()
    if not len(rows) or not len(cohort):
        return torch.zeros(n)
    for q in cohort.tolist():
        if not bool(query_mask[q].any()):
            continue
        d = paired_distance(
            distance, queries[q : q + 1], query_mask[q : q + 1], items[rows], item_mask[rows]
        )
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
