"""Retrieval metrics as pure tensor functions.

Ties are counted against the query: an item scoring exactly as high as the right answer ranks
ahead of it. A model that scores everything the same therefore gets rank N, not rank 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


def ranks_from_scores(scores: Tensor, target: Tensor) -> Tensor:
    """1-based rank of `target[q]` in each row of `scores` (Q, N); ties count against it."""
    if scores.ndim != 2 or target.shape != (scores.shape[0],):
        raise ValueError(
            f"scores (Q, N) and target (Q,) expected, got {tuple(scores.shape)} and "
            f"{tuple(target.shape)}"
        )
    true = scores.gather(1, target[:, None])  # (Q, 1)
    ahead = (scores >= true).sum(dim=1)  # counts the target itself once
    return ahead.to(torch.long)


def recall_at(ranks: Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    if ranks.numel() == 0:
        return {f"R@{k}": float("nan") for k in ks}
    return {f"R@{k}": (ranks <= k).float().mean().item() for k in ks}


def median_rank(ranks: Tensor) -> float:
    if ranks.numel() == 0:
        return float("nan")
    return ranks.float().median().item()


def summarise(ranks: Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    return {**recall_at(ranks, ks), "MdR": median_rank(ranks), "n": int(ranks.numel())}


def ceiling_recall(equivalent: Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Best achievable recall when each query has `equivalent[q]` indistinguishable pool items
    (its own clip included): a perfect model ranks them first, in some order: R@K = min(1, K/n)."""
    n = equivalent.float().clamp(min=1)
    return {f"R@{k}": torch.clamp(k / n, max=1.0).mean().item() for k in ks}


def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a positive scores above a negative), ties half: the area under the ROC curve."""
    if positive.size == 0 or negative.size == 0:
        return float("nan")
    both = np.concatenate([positive, negative])
    order = both.argsort(kind="stable")
    ranks = np.empty(both.size)
    ranks[order] = np.arange(1, both.size + 1)
    for value in np.unique(both):  # ties share their mean rank
        tied = both == value
        ranks[tied] = ranks[tied].mean()
    pos_ranks = ranks[: positive.size].sum()
    return float(
        (pos_ranks - positive.size * (positive.size + 1) / 2) / (positive.size * negative.size)
    )
