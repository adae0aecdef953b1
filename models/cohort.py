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

An index keeps each item's offsets (`index.build.step_offsets`, made anew at every publish, so
`add` and `remove` keep them current), and the search policy says, per query length and
direction, whether the re-rank takes them off (`SearchPolicy.step_offsets`, chosen on val by
`training.search_policy.choose_offsets_tiers`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from models.sequence import Distance, paired_distance, resample, sequence_similarity

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
    sequences' `paired_distance`, each pair alone) to the cohort's query sequences, `queries` (N, Tq, D) of the
    other modality, row for row with `items` (N, Ti, D); an item is never its own cohort member.
    Centred: the items' mean offset is 0 (the re-rank's scale stays as the policy measured it).
    An item without steps, or with no cohort member but itself, gets 0."""
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
        distance,
        block=max(n, 1),
    )


def cohort_offsets(
    cohort_steps: Tensor,
    cohort_mask: Tensor,
    cohort: np.ndarray,
    n: int,
    fetch: Callable[[Tensor], tuple[Tensor, Tensor]],
    distance: Distance = "interp",
    block: int = 4096,
) -> Tensor:
    """`sequence_offsets` for `n` items read `block` rows at a time (`fetch(rows)` → their
    (B, Ti, D) steps and (B, Ti) mask), as an index reads them from its stores: the cohort's
    query sequences (`cohort_steps` (C, Tq, D), `cohort_mask`) are the items' of the other
    modality at rows `cohort`. Each pair's distance is its own (`paired_distance` of the two
    alone: "interp" resamples both to the longer of the two), so an offset does not depend on
    which items share its block. "interp" is computed for a cohort and a block at once, by
    lengths (|a|² + |b|² − 2 a·b as one matrix product): 128 cohort members cost ~1 ms per 200
    items of 24 steps on one core, where a distance per pair cost ~4 ms per item."""
    cohort = np.asarray(cohort, np.int64)
    if cohort_steps.shape[0] != len(cohort) or cohort_mask.shape[0] != len(cohort):
        raise ValueError(f"{cohort_steps.shape[0]} cohort sequences for {len(cohort)} rows")
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    total = torch.zeros(n, dtype=torch.float64)
    count = torch.zeros(n, dtype=torch.float64)
    q_len = cohort_mask.sum(dim=1)
    members = (q_len > 0).nonzero().flatten()
    cohort_t = torch.from_numpy(cohort)
    for first in range(0, n if len(members) else 0, block):
        rows = torch.arange(first, min(first + block, n))
        steps, mask = fetch(rows)
        i_len = mask.sum(dim=1)
        for li in i_len.unique().tolist():
            if li == 0:
                continue  # an item without steps: no offset
            at = (i_len == li).nonzero().flatten()
            if not bool(mask[at, :li].all()):
                raise ValueError("an item's valid steps must come first in its row")
            items, where = steps[at, :li], rows[at]
            for lq in q_len[members].unique().tolist():
                qs = members[q_len[members] == lq]
                sim = _similarities(cohort_steps[qs, :lq], items, distance)  # (Cq, B)
                others = cohort_t[qs].unsqueeze(1) != where.unsqueeze(0)  # never itself
                total[where] += (sim.double() * others).sum(dim=0)
                count[where] += others.sum(dim=0).double()
    measured = count > 0
    out = torch.zeros(n, dtype=torch.float64)
    out[measured] = total[measured] / count[measured]
    if bool(measured.any()):
        out[measured] -= out[measured].mean()
    return out.float()


def _similarities(queries: Tensor, items: Tensor, distance: Distance) -> Tensor:
    """(Q, B) `sequence_similarity` of every query (Q, Lq, D) with every item (B, Li, D), all
    steps valid: each pair's `paired_distance`."""
    lq, li = queries.shape[1], items.shape[1]
    if distance != "interp":
        q_mask = torch.ones(queries.shape[:2], dtype=torch.bool)
        i_mask = torch.ones(items.shape[:2], dtype=torch.bool)
        return torch.stack(
            [
                sequence_similarity(
                    paired_distance(distance, queries[j : j + 1], q_mask[j : j + 1], items, i_mask),
                    distance,
                )
                for j in range(queries.shape[0])
            ]
        )
    length = max(lq, li)
    a = resample(queries, torch.ones(queries.shape[:2], dtype=torch.bool), length).flatten(1)
    b = resample(items, torch.ones(items.shape[:2], dtype=torch.bool), length).flatten(1)
    d = (a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1) - 2 * a @ b.T) / length
    return sequence_similarity(d, distance)
