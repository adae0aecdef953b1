"""Every re-rank weighting ranked at once gives what ranking one weighting at a time gave."""

from __future__ import annotations

from itertools import product

import torch

from training.evaluate import _fused_ranks, _Memo, _rerank_ranks, fused_score


def memo_logging(seed: int, calls: list) -> _Memo:
    """Values that depend on the query, the candidate and how many were asked together (as a
    batched computation's last bits may): so asking in another order would show."""

    def compute(qi: int, cand: torch.Tensor) -> torch.Tensor:
        calls.append((qi, tuple(cand.tolist())))
        g = torch.Generator().manual_seed(seed * 1_000 + qi)
        base = torch.rand(64, generator=g)[cand]
        return base * 3.0 + 1e-3 * len(cand)

    return _Memo(compute)


def test_all_weightings_at_once_rank_as_one_at_a_time_and_ask_the_same():
    torch.manual_seed(0)
    queries, items, k = 30, 64, 8
    pooled = torch.randn(queries, items)
    pooled[:, 5] = -torch.inf  # an item without the target's modality
    target = torch.randint(0, items, (queries,))
    target[0] = 5  # unreachable: keeps its pooled rank
    scanned = {q: torch.randperm(items)[:6] for q in range(queries)}

    def extra(q: int) -> torch.Tensor:
        return scanned[q]

    combos = list(product((None, 2.0, 0.25), (0.0, 0.5, 2.0)))
    calls_one, calls_all = ([], []), ([], [])
    memo, events = memo_logging(1, calls_one[0]), memo_logging(2, calls_one[1])
    one_at_a_time = {}
    for w, e in combos:

        def score(qi, cand, w=w, e=e):
            correlations = events(qi, cand) if e else None
            return fused_score(pooled[qi, cand], memo(qi, cand), w, "interp", correlations, e)

        one_at_a_time[w, e] = _rerank_ranks(pooled, target, score, k, extra if e else None)
    at_once = _fused_ranks(
        pooled,
        target,
        combos,
        memo_logging(1, calls_all[0]),
        "interp",
        memo_logging(2, calls_all[1]),
        k,
        extra,
    )
    assert set(at_once) == set(one_at_a_time)
    for combo, ranks in one_at_a_time.items():
        assert torch.equal(at_once[combo], ranks), combo
    # the memos were asked for the same candidates: per query, in the same order
    for one, every in zip(calls_one, calls_all, strict=True):
        assert sorted(one, key=lambda c: c[0]) == sorted(every, key=lambda c: c[0])
    # the re-rank moved something, and the event weightings reached scanned candidates
    plain = _rerank_ranks(pooled, target, lambda qi, cand: pooled[qi, cand], k)
    assert any(not torch.equal(r, plain) for r in at_once.values())
    assert at_once[None, 0.0][0] == plain[0]
