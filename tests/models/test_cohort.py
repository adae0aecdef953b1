"""Per-item offsets of the step similarity against a cohort (`models.cohort`): what they are, and
that taking them off lets an item whose steps are unlike every query's be found by its own."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.alignment import window_distances
from models.cohort import cohort_offsets, cohort_rows, sequence_offsets
from models.sequence import sequence_similarity
from training.evaluate import _fused_ranks, _Memo


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def test_the_cohort_is_the_same_items_in_any_order():
    ids = [f"clip{i:03d}" for i in range(50)]
    eligible = np.ones(50, bool)
    eligible[[3, 7]] = False
    rows = cohort_rows(ids, eligible, size=10)
    assert len(rows) == 10 and 3 not in rows and 7 not in rows
    assert list(rows) == sorted(rows)
    order = np.random.default_rng(0).permutation(50)
    again = cohort_rows([ids[i] for i in order], eligible[order], size=10)
    assert sorted(ids[order[r]] for r in again) == sorted(ids[r] for r in rows)
    assert len(cohort_rows(ids, eligible)) == 48  # fewer eligible than the size: all of them
    with pytest.raises(ValueError):
        cohort_rows(ids, eligible[:10])


def test_offsets_are_each_items_mean_similarity_to_the_cohort_but_itself_centred():
    g = torch.Generator().manual_seed(0)
    n, steps, dim = 9, 6, 8
    queries = _unit(torch.randn(n, steps, dim, generator=g))
    items = _unit(torch.randn(n, steps, dim, generator=g))
    qmask = torch.ones(n, steps, dtype=torch.bool)
    imask = torch.ones(n, steps, dtype=torch.bool)
    imask[2, 4:] = False  # a shorter item
    imask[5] = False  # an item without steps: no offset
    cohort = np.array([0, 2, 4, 6])
    got = sequence_offsets(queries, qmask, items, imask, cohort)
    raw = {}
    for c in range(n):
        if c == 5:
            continue
        sims = [
            float(
                sequence_similarity(
                    window_distances(queries[q][qmask[q]], items[c : c + 1], imask[c : c + 1], 4.0)[
                        0
                    ]
                )[0]
            )
            for q in cohort
            if q != c
        ]
        raw[c] = np.mean(sims)
    mean = np.mean(list(raw.values()))
    for c, value in raw.items():
        assert float(got[c]) == pytest.approx(value - mean, abs=1e-5)
    assert float(got[5]) == 0.0


def test_taking_the_offsets_off_finds_the_items_whose_steps_are_unlike_every_query():
    """Half the items' steps carry a component every query shares (they look like everything),
    the other half carry only a faint copy of their own query's: by the step similarity the
    faint ones lose to the others; by it less each item's offset they come first."""
    g = torch.Generator().manual_seed(1)
    n, steps, dim = 40, 5, 32
    common = _unit(torch.randn(dim, generator=g))
    own = _unit(torch.randn(n, steps, dim, generator=g))
    queries = _unit(own + 1.2 * common)
    noise = _unit(torch.randn(n, steps, dim, generator=g))
    faint = torch.arange(n) % 2 == 1
    items = torch.where(
        faint[:, None, None], _unit(0.6 * own + noise), _unit(0.4 * own + 1.2 * common + noise)
    )
    mask = torch.ones(n, steps, dtype=torch.bool)
    ids = [f"i{k}" for k in range(n)]
    offsets = sequence_offsets(queries, mask, items, mask, cohort_rows(ids, np.ones(n, bool)))
    assert float(offsets[faint].mean()) < float(offsets[~faint].mean())

    def distance(qi: int, cand: torch.Tensor) -> torch.Tensor:  # as the re-rank measures
        return window_distances(queries[qi], items[cand], mask[cand], 4.0)[0]

    pooled = torch.zeros(n, n)  # nothing but the steps tells the items apart
    target = torch.arange(n)
    combos = [(1.0, 0.0)]

    def ranks(off: torch.Tensor | None) -> torch.Tensor:
        def no_scan(q: int) -> torch.Tensor:
            return torch.empty(0, dtype=torch.long)

        found = _fused_ranks(
            pooled,
            target,
            combos,
            _Memo(distance),
            "interp",
            _Memo(distance),
            n,
            no_scan,
            offsets=off,
        )
        return found[combos[0]]

    plain, offset = ranks(None), ranks(offsets)
    first = lambda r, rows: float((r[rows] == 1).float().mean())  # noqa: E731
    assert first(plain, faint) < 0.3
    assert first(offset, faint) > first(plain, faint) + 0.4
    assert first(offset, torch.ones(n, dtype=torch.bool)) > first(
        plain, torch.ones(n, dtype=torch.bool)
    )


def test_a_pool_measures_each_direction_once_against_the_rows_with_both_streams():
    from models.encoders import Embeddings
    from training.evaluate import Pool

    g = torch.Generator().manual_seed(2)
    n, steps, dim = 12, 4, 8
    mask = torch.ones(n, steps, dtype=torch.bool)
    sounds = Embeddings(
        _unit(torch.randn(n, dim, generator=g)),
        _unit(torch.randn(n, steps, dim, generator=g)),
        mask,
    )
    pictures = Embeddings(
        _unit(torch.randn(n, dim, generator=g)),
        _unit(torch.randn(n, steps, dim, generator=g)),
        mask,
    )
    has_audio = torch.ones(n, dtype=torch.bool)
    has_audio[3] = False  # no sound: never a cohort member
    ids = [f"c{k}" for k in range(n)]
    pool = Pool(ids, pictures, sounds, torch.ones(n, dtype=torch.bool), has_audio)
    cohort = cohort_rows(ids, has_audio.numpy())
    assert 3 not in cohort
    found = pool.sequence_offsets("audio→video", 4.0)
    want = sequence_offsets(sounds.sequence, mask, pictures.sequence, mask, cohort)
    assert torch.allclose(found, want)
    assert pool.sequence_offsets("audio→video", 4.0) is found  # computed once
    back = sequence_offsets(pictures.sequence, mask, sounds.sequence, mask, cohort)
    assert torch.allclose(pool.sequence_offsets("video→audio", 4.0), back)


def test_offsets_read_in_blocks_are_the_offsets_of_the_whole_batch():
    """An index reads its items from its stores a block at a time (`cohort_offsets`): every
    block size gives the whole batch's offsets, ragged and empty items and shorter cohort
    members among them (each pair is measured alone; only a matrix product's rounding may differ
    with the block's size)."""
    g = torch.Generator().manual_seed(2)
    n, steps, dim = 23, 7, 16
    queries = _unit(torch.randn(n, steps, dim, generator=g))
    items = _unit(torch.randn(n, steps, dim, generator=g))
    qmask = torch.ones(n, steps, dtype=torch.bool)
    qmask[3] = False  # a cohort member without steps asks nothing
    qmask[::4, 5:] = False  # shorter cohort members
    imask = torch.ones(n, steps, dtype=torch.bool)
    imask[1, 3:] = False
    imask[8] = False
    cohort = cohort_rows([f"clip-{i}" for i in range(n)], np.ones(n, bool), size=9)
    cohort = np.union1d(cohort, [3])
    whole = sequence_offsets(queries, qmask, items, imask, cohort)
    asked: list[int] = []

    def fetch(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        asked.append(len(rows))
        return items[rows], imask[rows]

    for block in (1, 4, 10, n, 100):
        asked.clear()
        got = cohort_offsets(queries[cohort], qmask[cohort], cohort, n, fetch, block=block)
        torch.testing.assert_close(got, whole, rtol=0, atol=1e-6)
        assert sum(asked) == n and max(asked) <= block
    assert float(whole[8]) == 0.0 and float(whole.abs().max()) > 0
    with pytest.raises(ValueError):
        cohort_offsets(queries[cohort], qmask[cohort], cohort[:-1], n, fetch)
