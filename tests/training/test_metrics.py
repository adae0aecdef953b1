"""Metrics against a naive oracle, ties included."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.metrics import ceiling_recall, median_rank, ranks_from_scores, recall_at, summarise


def naive_rank(row: list[float], target: int) -> int:
    """Count, one item at a time, how many items score at least as high as the target."""
    return sum(1 for s in row if s >= row[target])


@pytest.mark.parametrize("seed", range(5))
def test_ranks_match_naive_oracle_with_ties(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 5, size=(20, 15)).astype(np.float32)  # many ties on purpose
    target = rng.integers(0, 15, size=20)
    ranks = ranks_from_scores(torch.from_numpy(scores), torch.from_numpy(target))
    assert ranks.tolist() == [naive_rank(list(scores[q]), int(target[q])) for q in range(20)]


def test_constant_scores_rank_last_not_first():
    ranks = ranks_from_scores(torch.zeros(3, 10), torch.tensor([0, 4, 9]))
    assert ranks.tolist() == [10, 10, 10]
    assert recall_at(ranks)["R@1"] == 0.0


def test_recall_and_median():
    ranks = torch.tensor([1, 2, 6, 11, 30])
    assert recall_at(ranks) == pytest.approx({"R@1": 0.2, "R@5": 0.4, "R@10": 0.6})
    assert median_rank(ranks) == 6
    s = summarise(ranks)
    assert s["n"] == 5 and s["MdR"] == 6


def test_ceiling_recall():
    c = ceiling_recall(torch.tensor([1, 2, 20]))
    assert c["R@1"] == pytest.approx((1 + 0.5 + 0.05) / 3)
    assert c["R@10"] == pytest.approx((1 + 1 + 0.5) / 3)


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        ranks_from_scores(torch.zeros(3), torch.tensor([0]))
