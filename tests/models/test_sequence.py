"""Sequence distances and alignment against plain per-pair references written out here."""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.alignment import (
    align_sequence,
    align_sequence_batch,
    align_vector,
    align_vector_batch,
)
from models.sequence import (
    Distance,
    dtw,
    interpolated_euclidean,
    paired_distance,
    pairwise_distance,
    resample,
    sinkhorn_wasserstein,
    soft_dtw,
    take_steps,
)

NAMES: list[Distance] = ["interp", "softdtw", "dtw", "wasserstein"]


def ragged(
    lengths: list[int],
    d: int = 5,
    t: int | None = None,
    seed: int = 0,
    unit: bool = True,
    dtype: torch.dtype = torch.float64,
    garbage: float = 1e3,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, D) random steps with mask; padded steps hold large garbage that must not matter."""
    g = torch.Generator().manual_seed(seed)
    t = t or max(lengths)
    x = torch.randn(len(lengths), t, d, generator=g, dtype=dtype)
    if unit:
        x = F.normalize(x, dim=-1)
    mask = torch.arange(t) < torch.tensor(lengths).unsqueeze(1)
    x = torch.where(mask.unsqueeze(-1), x, garbage * torch.randn(x.shape, generator=g, dtype=dtype))
    return x, mask


def valid(x: torch.Tensor, mask: torch.Tensor, i: int) -> np.ndarray:
    return x[i, : int(mask[i].sum())].detach().double().numpy()


def smooth(n: int, d: int, seed: int) -> np.ndarray:
    """A slowly varying unit-step sequence: what a clip embedding looks like over time."""
    walk = np.cumsum(np.random.default_rng(seed).normal(size=(n, d)), axis=0)
    return walk / np.linalg.norm(walk, axis=1, keepdims=True)


# --------------------------------------------------------------------------- naive references


def ref_resample(x: np.ndarray, length: int) -> np.ndarray:
    n = x.shape[0]
    pos = np.full(1, (n - 1) / 2) if length == 1 else np.linspace(0, n - 1, length)
    return np.stack([np.interp(pos, np.arange(n), x[:, j]) for j in range(x.shape[1])], 1)


def ref_interp(a: np.ndarray, b: np.ndarray, length: int) -> float:
    ra, rb = ref_resample(a, length), ref_resample(b, length)
    return float(((ra - rb) ** 2).sum(1).mean())


def step_costs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def ref_dtw(a: np.ndarray, b: np.ndarray, gamma: float, normalize: bool = True) -> float:
    c = step_costs(a, b)
    n, m = c.shape
    r = np.full((n + 1, m + 1), np.inf)
    r[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            prev = np.array([r[i - 1, j - 1], r[i - 1, j], r[i, j - 1]])
            if gamma == 0:
                soft = prev.min()
            else:
                lo = prev.min()
                soft = lo - gamma * np.log(np.exp(-(prev - lo) / gamma).sum())
            r[i, j] = c[i - 1, j - 1] + soft
    return float(r[n, m] / (n + m) if normalize else r[n, m])


def lse(x: np.ndarray, axis: int) -> np.ndarray:
    top = x.max(axis=axis, keepdims=True)
    return (top + np.log(np.exp(x - top).sum(axis=axis, keepdims=True))).squeeze(axis)


def ref_sinkhorn(a: np.ndarray, b: np.ndarray, eps: float, iterations: int) -> float:
    c = step_costs(a, b)
    n, m = c.shape
    f, g = np.zeros(n), np.zeros(m)
    for _ in range(iterations):
        f = -np.log(n) - lse(-c / eps + g[None, :], axis=1)
        g = -np.log(m) - lse(-c / eps + f[:, None], axis=0)
    plan = np.exp(f[:, None] - c / eps + g[None, :])
    return float((plan * c).sum())


def each_pair(
    x: torch.Tensor,
    xm: torch.Tensor,
    y: torch.Tensor,
    ym: torch.Tensor,
    fn: Callable[[np.ndarray, np.ndarray], float],
) -> np.ndarray:
    """(Bq, Bk) of `fn` on the valid parts, one pair at a time."""
    return np.array(
        [
            [fn(valid(x, xm, i), valid(y, ym, j)) for j in range(y.shape[0])]
            for i in range(x.shape[0])
        ]
    )


# --------------------------------------------------------------------------- distances


@pytest.fixture
def batches() -> tuple[torch.Tensor, ...]:
    q, qm = ragged([5, 1, 3], t=7, seed=1)
    k, km = ragged([2, 6, 4, 1], t=6, seed=2)
    return q, qm, k, km


def test_resample_matches_np_interp_and_keeps_endpoints() -> None:
    x, m = ragged([5, 1, 3, 2], t=6, d=4)
    for length in (1, 2, 4, 9):
        out = resample(x, m, length)
        assert out.shape == (4, length, 4)
        for i in range(4):
            np.testing.assert_allclose(
                out[i].numpy(), ref_resample(valid(x, m, i), length), atol=1e-12
            )
    same = resample(x, m, 5)[0]
    assert torch.equal(same, x[0, :5])  # resampling to its own length is the identity


def test_interp_matches_reference(batches: tuple[torch.Tensor, ...]) -> None:
    q, qm, k, km = batches
    got = interpolated_euclidean(q, qm, k, km)
    want = each_pair(q, qm, k, km, lambda a, b: ref_interp(a, b, 6))  # longest valid = 6
    np.testing.assert_allclose(got.numpy(), want, atol=1e-10)
    got3 = interpolated_euclidean(q, qm, k, km, length=3)
    want3 = each_pair(q, qm, k, km, lambda a, b: ref_interp(a, b, 3))
    np.testing.assert_allclose(got3.numpy(), want3, atol=1e-10)


@pytest.mark.parametrize("gamma", [0.0, 0.05, 1.0])
def test_dtw_and_soft_dtw_match_reference(batches: tuple[torch.Tensor, ...], gamma: float) -> None:
    q, qm, k, km = batches
    got = dtw(q, qm, k, km) if gamma == 0 else soft_dtw(q, qm, k, km, gamma=gamma)
    want = each_pair(q, qm, k, km, lambda a, b: ref_dtw(a, b, gamma))
    np.testing.assert_allclose(got.numpy(), want, atol=1e-10)
    raw = soft_dtw(q, qm, k, km, gamma=gamma or 0.1, normalize=False)
    want_raw = each_pair(q, qm, k, km, lambda a, b: ref_dtw(a, b, gamma or 0.1, False))
    np.testing.assert_allclose(raw.numpy(), want_raw, atol=1e-10)


def test_sinkhorn_matches_plain_log_domain_reference(batches: tuple[torch.Tensor, ...]) -> None:
    q, qm, k, km = batches
    for eps, iters in [(0.05, 50), (0.5, 7), (0.01, 23)]:
        got = sinkhorn_wasserstein(q, qm, k, km, epsilon=eps, iterations=iters)
        want = each_pair(q, qm, k, km, functools.partial(ref_sinkhorn, eps=eps, iterations=iters))
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-8, atol=1e-10)


def test_sinkhorn_stays_finite_for_large_costs_and_small_epsilon() -> None:
    """Costs / ε near 1e5: a kernel exp(-C/ε) would underflow to all zeros."""
    q, qm = ragged([4, 2], d=6, unit=False, seed=3)
    k, km = ragged([3, 5], d=6, unit=False, seed=4)
    q, k = 10 * q, 10 * k
    want = each_pair(q, qm, k, km, lambda a, b: ref_sinkhorn(a, b, 0.01, 30))
    got = sinkhorn_wasserstein(q, qm, k, km, epsilon=0.01, iterations=30)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-9)
    # float32 resolves C/ε ~ 1e5 only to ~1e-2 in the exponent; plain log-domain float32
    # Sinkhorn is off by the same ~0.2 %.
    got32 = sinkhorn_wasserstein(q.float(), qm, k.float(), km, epsilon=0.01, iterations=30)
    assert torch.isfinite(got32).all()
    np.testing.assert_allclose(got32.numpy(), want, rtol=1e-2)


@pytest.mark.parametrize("name", NAMES)
def test_padding_garbage_never_matters(name: Distance) -> None:
    q, qm = ragged([3, 5, 2], t=6, seed=5, garbage=1.0)
    k, km = ragged([4, 1], t=5, seed=6, garbage=1.0)
    q2 = torch.where(qm.unsqueeze(-1), q, torch.nan)  # NaN padding, longer padding too
    k2 = F.pad(torch.where(km.unsqueeze(-1), k, -7e4), (0, 0, 0, 3))
    km2 = F.pad(km, (0, 3))
    base = pairwise_distance(name, q, qm, k, km)
    assert torch.equal(base, pairwise_distance(name, q2, qm, k2, km2))
    q2.requires_grad_(True)
    pairwise_distance(name, q2, qm, k2, km2).sum().backward()
    assert q2.grad is not None and torch.isfinite(q2.grad).all()
    assert (q2.grad[~qm] == 0).all()


def test_gradcheck_interp_softdtw_sinkhorn() -> None:
    q, qm = ragged([3, 2], t=3, d=3, seed=7, garbage=1.0)
    k, km = ragged([2, 4, 1], t=4, d=3, seed=8, garbage=1.0)
    q.requires_grad_(True)
    k.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: interpolated_euclidean(a, qm, b, km), (q, k))
    assert torch.autograd.gradcheck(lambda a, b: soft_dtw(a, qm, b, km, gamma=0.3), (q, k))
    # The Sinkhorn gradient is implicit (the converged plan's), so converge before checking.
    assert torch.autograd.gradcheck(
        lambda a, b: sinkhorn_wasserstein(a, qm, b, km, epsilon=0.5, iterations=300), (q, k)
    )
    assert torch.autograd.gradcheck(
        lambda a, b: paired_distance("wasserstein", a, qm, b, km[:2], epsilon=0.3, iterations=500),
        (q, k[:2].detach().requires_grad_(True)),
    )


def test_float32_gradients_are_finite_and_shaped() -> None:
    q, qm = ragged([6, 3, 1], t=6, d=8, seed=9, dtype=torch.float32)
    q.requires_grad_(True)
    for name in NAMES:
        q.grad = None
        pairwise_distance(name, q, qm, q, qm).sum().backward()
        assert q.grad is not None and torch.isfinite(q.grad).all(), name


def test_soft_dtw_tends_to_dtw_and_stays_below(batches: tuple[torch.Tensor, ...]) -> None:
    q, qm, k, km = batches
    hard = dtw(q, qm, k, km)
    # softmin >= min - γ log 3 at each of at most n + m - 1 cells; normalisation divides by n + m.
    for gamma in (1e-3, 1e-2):
        gap = hard - soft_dtw(q, qm, k, km, gamma=gamma)
        assert (gap >= -1e-12).all() and (gap <= gamma * math.log(3)).all()
    for gamma in (0.1, 1.0, 5.0):
        assert (soft_dtw(q, qm, k, km, gamma=gamma) <= hard).all()
    loose = soft_dtw(q.float(), qm, k.float(), km, gamma=1e-3)
    torch.testing.assert_close(loose, hard.float(), atol=2e-3, rtol=0)


@pytest.mark.parametrize("name", ["interp", "dtw"])
def test_self_is_row_minimum_and_stretched_copy_beats_unrelated(name: Distance) -> None:
    x, m = ragged([6, 4, 5, 6, 3], seed=10)
    d = pairwise_distance(name, x, m, x, m)
    assert torch.equal(d.argmin(1), torch.arange(5))
    assert torch.allclose(d.diagonal(), torch.zeros(5, dtype=d.dtype), atol=1e-12)

    base = smooth(12, 16, seed=0)
    stretched = ref_resample(base, 18)  # the same clip played at 2/3 speed
    shifted = base[2:]  # the same clip starting 0.5 s later
    others = [smooth(12, 16, seed=s) for s in range(1, 9)]
    seqs = [base, stretched, shifted, *others]
    t = max(len(s) for s in seqs)
    batch = torch.zeros(len(seqs), t, 16, dtype=torch.float64)
    mask = torch.zeros(len(seqs), t, dtype=torch.bool)
    for i, s in enumerate(seqs):
        batch[i, : len(s)] = torch.from_numpy(s)
        mask[i, : len(s)] = True
    row = pairwise_distance(name, batch[:1], mask[:1], batch, mask)[0]
    assert row[1] < row[3:].min() and row[2] < row[3:].min()


def test_sinkhorn_converges_and_ignores_step_order() -> None:
    # Smooth D = 32 sequences: costs spread like real clip embeddings, 50 iterations suffice.
    seqs = [smooth(n, 32, seed=s) for s, n in enumerate([5, 3, 4, 6, 2])]
    x = torch.zeros(5, 6, 32, dtype=torch.float64)
    for i, s in enumerate(seqs):
        x[i, : len(s)] = torch.from_numpy(s)
    mask = torch.arange(6) < torch.tensor([len(s) for s in seqs]).unsqueeze(1)
    q, qm, k, km = x[:2], mask[:2], x[2:], mask[2:]
    w50 = sinkhorn_wasserstein(q, qm, k, km)
    torch.testing.assert_close(
        w50, sinkhorn_wasserstein(q, qm, k, km, iterations=400), atol=1e-4, rtol=0
    )
    # Tiny D spreads costs over [0, 4] = 80 ε: slower, but more iterations keep closing in.
    a, am = ragged([5, 3], seed=11)
    b, bm = ragged([4, 6, 2], seed=12)
    limit = sinkhorn_wasserstein(a, am, b, bm, iterations=3000)
    errors = [
        float((sinkhorn_wasserstein(a, am, b, bm, iterations=n) - limit).abs().max())
        for n in (50, 200, 800)
    ]
    assert errors[0] < 0.1 and errors[1] < errors[0] / 10 and errors[2] < min(errors[1], 1e-3)
    # Order-free: shuffling each sequence's valid steps changes nothing, which is why this
    # distance cannot separate timing twins (same content, different order).
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    k_shuffled = k.clone()
    k_shuffled[1] = k[1, perm]
    k_shuffled[0, :4] = k[0, perm[perm < 4]]
    torch.testing.assert_close(sinkhorn_wasserstein(q, qm, k_shuffled, km), w50, atol=1e-12, rtol=0)
    assert not torch.allclose(dtw(q, qm, k_shuffled, km), dtw(q, qm, k, km))


def test_sinkhorn_approaches_the_assignment_optimum() -> None:
    n = 5
    for seed in range(3):
        q, qm = ragged([n], d=4, seed=20 + seed)
        k, km = ragged([n], d=4, seed=40 + seed)
        c = step_costs(valid(q, qm, 0), valid(k, km, 0))
        best = min(sum(c[i, p[i]] for i in range(n)) for p in itertools.permutations(range(n)))
        got = sinkhorn_wasserstein(q, qm, k, km, epsilon=2e-3, iterations=3000)
        assert abs(float(got) - best / n) < 1e-3


@pytest.mark.parametrize("name", NAMES)
def test_paired_is_the_diagonal_and_broadcasts_a_single_query(name: Distance) -> None:
    a, am = ragged([4, 2, 6, 1], seed=13, dtype=torch.float32)
    b, bm = ragged([3, 6, 5, 2], seed=14, dtype=torch.float32)
    kw = {"gamma": 0.2} if name == "softdtw" else {}
    full = pairwise_distance(name, a, am, b, bm, **kw)
    torch.testing.assert_close(
        paired_distance(name, a, am, b, bm, **kw), full.diagonal(), atol=1e-5, rtol=1e-5
    )
    one = paired_distance(name, a[2:3], am[2:3], b, bm, **kw)
    torch.testing.assert_close(one, full[2], atol=1e-5, rtol=1e-5)
    flipped = paired_distance(name, b, bm, a[2:3], am[2:3], **kw)
    torch.testing.assert_close(
        flipped, pairwise_distance(name, b, bm, a[2:3], am[2:3], **kw)[:, 0], atol=1e-5, rtol=1e-5
    )


def test_training_sized_batch_runs_forward_and_backward() -> None:
    q, qm = ragged([24] * 8 + [13] * 8, t=24, d=32, dtype=torch.float32, seed=15)
    q.requires_grad_(True)
    for name in NAMES:
        d = pairwise_distance(name, q, qm, q.detach(), qm)
        assert d.shape == (16, 16) and torch.isfinite(d).all()
        q.grad = None
        d.sum().backward()
        assert q.grad is not None and torch.isfinite(q.grad).all() and q.grad.abs().sum() > 0


# --------------------------------------------------------------------------- alignment


def noise_steps(t: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(t, d, generator=g), dim=-1)


def test_align_vector_finds_a_planted_segment() -> None:
    d = 32
    query = noise_steps(1, d, 0)[0]
    target = noise_steps(40, d, 1)
    target[10:16] = F.normalize(query + 0.3 * noise_steps(6, d, 2), dim=-1)
    mask = torch.arange(44) < 40
    target = torch.cat([target, torch.full((4, d), 9.0)])
    seg = align_vector(query, target, mask)
    assert abs(seg.start_s - 10 / 4) <= 0.25 and abs(seg.end_s - 16 / 4) <= 0.25
    assert seg.timeline.shape == (40,)
    torch.testing.assert_close(seg.timeline, F.cosine_similarity(target[:40], query[None], dim=1))
    lo, hi = round(seg.start_s * 4), round(seg.end_s * 4)
    assert seg.score == pytest.approx(float(seg.timeline[lo:hi].mean()), abs=1e-6)
    slow = align_vector(query, target, mask, steps_per_second=2.0)
    assert (slow.start_s, slow.end_s) == (seg.start_s * 2, seg.end_s * 2)


def ref_best_run(values: torch.Tensor, min_steps: int) -> float:
    n = len(values)
    m = min(min_steps, n)
    return max(float(values[s:e].sum()) for s in range(n) for e in range(s + m, n + 1))


@pytest.mark.parametrize("min_steps", [1, 3, 50])
def test_align_vector_segment_is_the_best_run_above_threshold(min_steps: int) -> None:
    query = noise_steps(1, 8, 3)[0]
    target = noise_steps(30, 8, 4)
    seg = align_vector(query, target, torch.ones(30, dtype=torch.bool), min_steps=min_steps)
    tl = seg.timeline
    threshold = (tl.quantile(0.5) + tl.max()) / 2
    lo, hi = round(seg.start_s * 4), round(seg.end_s * 4)
    assert hi - lo >= min(min_steps, 30)
    got = float((tl[lo:hi] - threshold).sum())
    assert got == pytest.approx(ref_best_run(tl - threshold, min_steps), abs=1e-5)


def test_align_vector_flat_timeline_gives_one_step() -> None:
    query = torch.tensor([1.0, 0.0])
    target = torch.tensor([[1.0, 1.0]]).repeat(6, 1)
    seg = align_vector(query, target, torch.ones(6, dtype=torch.bool))
    assert (seg.start_s, seg.end_s) == (0.0, 0.25)
    single = align_vector(query, target[:1], torch.ones(1, dtype=torch.bool), min_steps=4)
    assert (single.start_s, single.end_s) == (0.0, 0.25)


def steps_with_cosines(cosines: list[float]) -> torch.Tensor:
    """(T, 2) unit steps whose cosine similarity to (1, 0) is given."""
    c = torch.tensor(cosines)
    return torch.stack([c, (1 - c**2).sqrt()], 1)


def test_align_vector_threshold_uses_valid_steps_only() -> None:
    query = torch.tensor([1.0, 0.0])
    # Valid cosines 0.5, 0.6, 0.9: threshold (0.6 + 0.9) / 2 = 0.75 keeps only the last step.
    # Counting the 9 padded steps (similarity 0) would drop the median to 0, the threshold to
    # 0.45, and take all three steps.
    short = torch.cat([steps_with_cosines([0.5, 0.6, 0.9]), torch.ones(9, 2)])
    full = steps_with_cosines([0.1 * i for i in range(12)])  # makes the batch 12 steps long
    mask = torch.arange(12) < torch.tensor([[3], [12]])
    seg = align_vector_batch(query, torch.stack([short, full]), mask)[0]
    assert (seg.start_s, seg.end_s) == (0.5, 0.75)
    assert seg.score == pytest.approx(0.9)


def ref_align(q: torch.Tensor, t: torch.Tensor) -> tuple[int, float]:
    """Python loop over offsets: best (offset, mean cosine) of the shorter inside the longer."""
    sims = F.normalize(q, dim=-1) @ F.normalize(t, dim=-1).T  # (nq, nk)
    nq, nk = sims.shape
    if nq <= nk:
        scores = [
            float(sims[range(nq), [o + i for i in range(nq)]].mean()) for o in range(nk - nq + 1)
        ]
    else:
        scores = [
            float(sims[[o + j for j in range(nk)], range(nk)].mean()) for o in range(nq - nk + 1)
        ]
    best = int(np.argmax(scores))
    return best, scores[best]


def test_align_sequence_finds_a_planted_copy() -> None:
    d = 32
    query = noise_steps(8, d, 5)
    target = noise_steps(30, d, 6)
    target[7:15] = F.normalize(query + 0.2 * noise_steps(8, d, 7), dim=-1)
    q_mask = torch.ones(8, dtype=torch.bool)
    seg = align_sequence(query, q_mask, target, torch.ones(30, dtype=torch.bool))
    assert (seg.start_s, seg.end_s) == (7 / 4, 15 / 4)
    offset, score = ref_align(query, target)
    assert offset == 7 and seg.score == pytest.approx(score, abs=1e-5)
    sims = F.normalize(query, dim=-1) @ target.T
    torch.testing.assert_close(seg.timeline[7:15], sims[:, 7:15].diagonal())
    torch.testing.assert_close(seg.timeline[:7], sims[:, :7].amax(0))
    torch.testing.assert_close(seg.timeline[15:], sims[:, 15:].amax(0))


def test_align_sequence_longer_query_returns_whole_target() -> None:
    d = 16
    query = noise_steps(20, d, 8)
    target = F.normalize(query[5:13] + 0.2 * noise_steps(8, d, 9), dim=-1)
    seg = align_sequence(
        query, torch.ones(20, dtype=torch.bool), target, torch.ones(8, dtype=torch.bool)
    )
    assert (seg.start_s, seg.end_s) == (0.0, 8 / 4)
    offset, score = ref_align(query, target)
    assert offset == 5 and seg.score == pytest.approx(score, abs=1e-5)
    sims = F.normalize(query, dim=-1) @ target.T
    torch.testing.assert_close(seg.timeline, sims[5:13].diagonal())


def test_align_sequence_respects_masks() -> None:
    d = 16
    query = torch.cat([noise_steps(6, d, 10), torch.full((3, d), 5.0)])  # 3 padded steps
    q_mask = torch.arange(9) < 6
    target = noise_steps(40, d, 11)
    target[4:10] = F.normalize(query[:6] + 0.5 * noise_steps(6, d, 12), dim=-1)  # weak match
    target[30:36] = query[:6]  # perfect match, but in padding
    t_mask = torch.arange(40) < 25
    seg = align_sequence(query, q_mask, target, t_mask)
    assert (seg.start_s, seg.end_s) == (4 / 4, 10 / 4)
    assert seg.timeline.shape == (25,)
    assert seg.score == pytest.approx(ref_align(query[:6], target[:25])[1], abs=1e-5)


def test_batch_alignment_equals_one_at_a_time() -> None:
    d = 16
    targets, t_mask = ragged([12, 5, 9, 3], t=12, d=d, dtype=torch.float32, seed=16)
    query = noise_steps(6, d, 17)
    q_mask = torch.arange(6) < 5
    for seg, i in zip(align_sequence_batch(query, q_mask, targets, t_mask), range(4), strict=True):
        one = align_sequence(query, q_mask, targets[i], t_mask[i])
        assert (seg.start_s, seg.end_s) == (one.start_s, one.end_s)
        assert seg.score == pytest.approx(one.score)
        torch.testing.assert_close(seg.timeline, one.timeline)
        _, score = ref_align(query[:5], targets[i, : int(t_mask[i].sum())])
        assert seg.score == pytest.approx(score, abs=1e-5)
    vec = query[0]
    for seg, i in zip(align_vector_batch(vec, targets, t_mask, min_steps=2), range(4), strict=True):
        one = align_vector(vec, targets[i], t_mask[i], min_steps=2)
        assert (seg.start_s, seg.end_s, seg.score) == (one.start_s, one.end_s, one.score)


# --------------------------------------------------------------------------- validation


def test_invalid_inputs_raise_value_error() -> None:
    x, m = ragged([3, 2], seed=18)
    y, ym = ragged([2, 2, 1], seed=19)
    bad_calls = [
        lambda: dtw(x, m.float(), y, ym),  # mask not bool
        lambda: dtw(x, m[:, :2], y, ym),  # mask shape
        lambda: dtw(x[0], m[0], y, ym),  # not 3-D
        lambda: dtw(x, m, y[..., :3], ym),  # D differs
        lambda: dtw(x, m, y.float(), ym),  # dtype differs
        lambda: dtw(x, torch.zeros_like(m), y, ym),  # empty sequence
        lambda: dtw(x[:0], m[:0], y, ym),  # empty batch
        lambda: dtw(x, torch.tensor([[False, True, True], [True, True, False]]), y, ym),  # holes
        lambda: dtw(x.long(), m, y.long(), ym),  # integer steps
        lambda: soft_dtw(x, m, y, ym, gamma=0.0),
        lambda: sinkhorn_wasserstein(x, m, y, ym, epsilon=0.0),
        lambda: sinkhorn_wasserstein(x, m, y, ym, iterations=0),
        lambda: interpolated_euclidean(x, m, y, ym, length=0),
        lambda: resample(x, m, 0),
        lambda: pairwise_distance("cosine", x, m, y, ym),  # type: ignore[arg-type]
        lambda: paired_distance("dtw", x, m, y, ym),  # batches 2 vs 3
        lambda: paired_distance("softdtw", x, m, y[:2], ym[:2], gamma=-1.0),
        lambda: align_vector(x[0, 0], x[0], m[0], min_steps=0),
        lambda: align_vector(x[0, 0], x[0], torch.zeros(3, dtype=torch.bool)),
        lambda: align_vector(x[0, 0, :2], x[0], m[0]),
        lambda: align_vector(x[0], x[0], m[0]),
        lambda: align_sequence(x[0], m[0], y[0], ym[0], steps_per_second=0.0),
        lambda: align_sequence(x[0], torch.zeros(3, dtype=torch.bool), y[0], ym[0]),
        lambda: align_sequence(x[0, 0], m[0], y[0], ym[0]),
    ]
    for i, call in enumerate(bad_calls):
        with pytest.raises(ValueError):
            call()
            pytest.fail(f"call {i} did not raise")
    with pytest.raises(TypeError):
        paired_distance("dtw", x, m, y[:2], ym[:2], gamma=0.1)


def brute_force_vector_segment(
    query: torch.Tensor, target: torch.Tensor, min_steps: int
) -> tuple[int, int, float]:
    """Every [s, e) with e - s >= min(m, n), in float64: the maximum sum of (cosine - threshold)
    with threshold = (median + max) / 2; earliest end, then shortest, among equals."""
    sims = (F.normalize(target.double(), dim=-1) @ F.normalize(query.double(), dim=0)).tolist()
    n = len(sims)
    ordered = sorted(sims)
    median = (ordered[(n - 1) // 2] + ordered[n // 2]) / 2
    threshold = (median + max(sims)) / 2
    m = min(min_steps, n)
    best: tuple[float, int, int] | None = None
    for e in range(1, n + 1):
        for s in range(e - m, -1, -1):  # longer segments later: strictly better only
            total = sum(x - threshold for x in sims[s:e])
            if best is None or total > best[0] + 1e-9:
                best = (total, s, e)
    assert best is not None
    _, s, e = best
    return s, e, sum(sims[s:e]) / (e - s)


@pytest.mark.parametrize("seed", range(40))
def test_align_vector_batch_matches_a_brute_force_search(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    k, t, d = 5, int(torch.randint(1, 20, (1,), generator=g)), 8
    targets = torch.randn(k, t, d, generator=g)
    lengths = torch.randint(1, t + 1, (k,), generator=g)
    mask = torch.arange(t)[None] < lengths[:, None]
    targets[~mask] = float("nan")  # padding garbage must not matter
    query = torch.randn(d, generator=g)
    min_steps = int(torch.randint(1, 5, (1,), generator=g))
    for i, seg in enumerate(align_vector_batch(query, targets, mask, 4.0, min_steps)):
        n = int(lengths[i])
        s, e, score = brute_force_vector_segment(query, targets[i, :n], min_steps)
        assert (seg.start_s, seg.end_s) == (s / 4.0, e / 4.0)
        assert seg.score == pytest.approx(score, abs=1e-5)
        assert seg.timeline.shape == (n,)
        assert torch.isfinite(seg.timeline).all()


def test_take_steps_equals_gather_and_carries_gradients() -> None:
    g = torch.Generator().manual_seed(5)
    seq = torch.randn(4, 7, 3, generator=g, requires_grad=True)
    index = torch.randint(0, 7, (4, 5), generator=g)
    out = take_steps(seq, index)
    expected = seq.gather(1, index.unsqueeze(-1).expand(-1, -1, 3))
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    assert seq.grad is not None
    counts = torch.zeros(4, 7).scatter_add_(1, index, torch.ones(4, 5))
    torch.testing.assert_close(seq.grad, counts.unsqueeze(-1).expand(-1, -1, 3))
