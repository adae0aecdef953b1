"""Segment alignment: where in a long target sequence a query (a vector or a sequence) fits best.

Used by search to return the matching time segment `[start_s, end_s]` of a hit and a per-step score
timeline. Steps lie on the shared grid of `steps_per_second`, so step i starts at i / sps seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from models.sequence import Distance, _clean, _lengths, paired_distance, take_steps


@dataclass(frozen=True)
class Segment:
    """Where in a target the query matches: [start_s, end_s) in seconds."""

    start_s: float
    end_s: float
    score: float  # mean similarity within the segment
    timeline: Tensor  # (n,) per-step similarity over the target's n valid steps


def _unit_steps(seq: Tensor, mask: Tensor) -> Tensor:
    """(B, T', D) unit steps for cosine similarity, trimmed like `_clean`; padding stays zero."""
    return F.normalize(_clean(seq, mask)[0], dim=-1)


def align_vector_batch(
    query: Tensor,
    targets: Tensor,
    target_mask: Tensor,
    steps_per_second: float = 4.0,
    min_steps: int = 1,
) -> list[Segment]:
    """`align_vector` for K targets (K, T, D) at once; one Segment per target."""
    if query.dim() != 1:
        raise ValueError(f"query: expected (D,), got shape {tuple(query.shape)}")
    lengths = _lengths(targets, target_mask, "target")
    if query.shape[0] != targets.shape[2]:
        raise ValueError(f"query has D={query.shape[0]}, target has D={targets.shape[2]}")
    if min_steps < 1:
        raise ValueError(f"min_steps must be >= 1, got {min_steps}")
    if not steps_per_second > 0:
        raise ValueError(f"steps_per_second must be > 0, got {steps_per_second}")
    # In numpy: a search computes this for its ~10 hits right after the text tower ran, and
    # torch's per-op dispatch (two dozen small ops) then cost ~1.5 ms against numpy's ~0.2 ms.
    k_count = targets.shape[0]
    mask = target_mask.detach().cpu().numpy()
    n = lengths.cpu().numpy()
    t_len = int(n.max())
    x = _float_numpy(targets)[:, :t_len]
    mask = mask[:, :t_len]
    if not mask.all():
        x = np.where(mask[..., None], x, np.float32(0))
    x = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    q = _float_numpy(query).astype(x.dtype, copy=False)
    q = q / max(float(np.linalg.norm(q)), 1e-12)
    sims = x @ q  # (K, T)
    rows = np.arange(k_count)
    # Threshold = midpoint of median and max: only steps clearly above the clip's typical
    # level add to a segment, yet a broad match (many steps near the max) is kept whole.
    ordered = np.sort(np.where(mask, sims, np.inf), axis=1)  # valid steps first
    lo, hi = ordered[rows, (n - 1) // 2], ordered[rows, n // 2]
    median = lo + (hi - lo) * 0.5  # the 0.5-quantile, interpolated as torch.quantile does
    peak = np.where(mask, sims, -np.inf).max(1)
    gain = np.where(mask, sims - ((median + peak) / 2)[:, None], 0)
    # Best segment [s, e) maximises G[e] - G[s] over prefix sums G with e - s >= m: for each
    # end e the best start is the latest position of the running minimum of G up to e - m (the
    # shortest segment among equals); among ends, argmax takes the earliest.
    prefix = np.concatenate([np.zeros((k_count, 1), gain.dtype), gain.cumsum(1)], 1)  # (K, T+1)
    run_min = np.minimum.accumulate(prefix, axis=1)
    ends = np.arange(t_len + 1)[None, :]  # (1, T + 1)
    run_arg = np.maximum.accumulate(np.where(prefix == run_min, ends, 0), axis=1)
    m = np.minimum(n, min_steps)[:, None]  # (K, 1): whole target if it is shorter
    starts_at = np.maximum(ends - m, 0)  # (K, T + 1)
    total = prefix - np.take_along_axis(run_min, starts_at, 1)
    feasible = (ends >= m) & (ends <= n[:, None])
    end = np.where(feasible, total, -np.inf).argmax(1)  # (K,)
    start = run_arg[rows, starts_at[rows, end]]  # (K,)
    sim_prefix = np.concatenate(
        [np.zeros((k_count, 1), sims.dtype), np.where(mask, sims, 0).cumsum(1)], 1
    )
    score = (sim_prefix[rows, end] - sim_prefix[rows, start]) / (end - start)
    timeline = torch.from_numpy(np.ascontiguousarray(sims))
    return [
        Segment(s / steps_per_second, e / steps_per_second, sc, timeline[i, :ni])
        for i, (s, e, sc, ni) in enumerate(
            zip(start.tolist(), end.tolist(), score.tolist(), n.tolist(), strict=True)
        )
    ]


def _float_numpy(x: Tensor) -> np.ndarray:
    x = x.detach().cpu()
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()  # float16 / bfloat16: numpy has no bfloat16
    return x.numpy()


def align_vector(
    query: Tensor,
    target: Tensor,
    target_mask: Tensor,
    steps_per_second: float = 4.0,
    min_steps: int = 1,
) -> Segment:
    """Localise a single-vector query (D,), e.g. a text embedding, in a target (T, D).

    timeline = cosine similarity of each valid target step to the query. The segment is the
    contiguous run of at least `min_steps` steps (the whole target if it is shorter) with the
    maximum sum of (timeline - threshold), threshold = (median(timeline) + max(timeline)) / 2.
    It is never empty: the peak step alone already has a non-negative sum.
    """
    if target.dim() != 2:
        raise ValueError(f"target: expected (T, D), got shape {tuple(target.shape)}")
    return align_vector_batch(query, target[None], target_mask[None], steps_per_second, min_steps)[
        0
    ]


@dataclass(frozen=True)
class Alignments:
    """`align_sequence` for K targets as tensors, for callers that need only some Segments (the
    re-ranker aligns K candidates but shows segments for the top few)."""

    start: Tensor  # (K,) first step of the window, long
    end: Tensor  # (K,) one past its last step, long
    score: Tensor  # (K,) mean aligned similarity
    timeline: Tensor  # (K, Tk) per-step similarity, valid for the first lengths[k] steps
    lengths: Tensor  # (K,) valid target steps
    steps_per_second: float
    # (K,) the query step aligned with the window's first step: 0 unless the query is longer than
    # the target (then the target lies inside the query, from this step on)
    query_start: Tensor

    def segment(self, k: int) -> Segment:
        sps, n = self.steps_per_second, int(self.lengths[k])
        return Segment(
            int(self.start[k]) / sps,
            int(self.end[k]) / sps,
            float(self.score[k]),
            self.timeline[k, :n],
        )


def align_sequence_batch(
    query: Tensor,
    query_mask: Tensor,
    targets: Tensor,
    target_mask: Tensor,
    steps_per_second: float = 4.0,
) -> list[Segment]:
    """`align_sequence` for K targets (K, Tk, D) at once; one Segment per target."""
    found = align_sequence_tensors(query, query_mask, targets, target_mask, steps_per_second)
    return [found.segment(k) for k in range(len(found.start))]


def align_sequence_tensors(
    query: Tensor,
    query_mask: Tensor,
    targets: Tensor,
    target_mask: Tensor,
    steps_per_second: float = 4.0,
) -> Alignments:
    """`align_sequence_batch` without building a Segment per target."""
    if query.dim() != 2:
        raise ValueError(f"query: expected (Tq, D), got shape {tuple(query.shape)}")
    nq = int(_lengths(query[None], query_mask[None], "query")[0])
    lengths = _lengths(targets, target_mask, "target")
    if query.shape[1] != targets.shape[2]:
        raise ValueError(f"query has D={query.shape[1]}, target has D={targets.shape[2]}")
    if not steps_per_second > 0:
        raise ValueError(f"steps_per_second must be > 0, got {steps_per_second}")
    with torch.no_grad():
        q = F.normalize(query[:nq].to(targets.dtype), dim=-1)  # (nq, D)
        t = _unit_steps(targets, target_mask)  # (K, Tk, D), zero on padding
        sims = torch.einsum("id,ktd->kit", q, t)  # (K, nq, Tk)
        k, tk = sims.shape[0], sims.shape[2]
        # Offset δ aligns query step i with target step i + δ. Sum every diagonal of sims at
        # once: pad the target axis by nq - 1 on both sides and gather (i, p + i).
        padded = F.pad(sims, (nq - 1, nq - 1))  # (K, nq, Tk + 2nq - 2)
        n_off = tk + nq - 1
        dev = sims.device
        cols = torch.arange(nq, device=dev)[:, None] + torch.arange(n_off, device=dev)  # (nq, O)
        diag_sums = padded.gather(2, cols.expand(k, -1, -1)).sum(1)  # (K, O)
        offsets = torch.arange(n_off, device=dev) - (nq - 1)  # (O,) δ of each column
        # Containment: the shorter of query and target lies wholly inside the longer, so each
        # offset averages min(nq, nk) aligned pairs. nq <= nk gives δ in [0, nk - nq]; a longer
        # query gives δ in [nk - nq, 0] (the target slides inside the query).
        slack = (lengths - nq).unsqueeze(1)  # (K, 1)
        inside = (offsets >= slack.clamp(max=0)) & (offsets <= slack.clamp(min=0))  # (K, O)
        overlap = lengths.clamp(max=nq).to(sims.dtype)  # (K,)
        mean = diag_sums / overlap.unsqueeze(1)
        best = mean.masked_fill(~inside, float("-inf")).argmax(1)  # (K,) earliest on ties
        delta = offsets[best]  # (K,)
        score = mean.gather(1, best.unsqueeze(1)).squeeze(1)  # (K,)
        # Timeline: the aligned similarity inside the window; elsewhere each target step's best
        # similarity to any query step, so the curve still shows near-misses.
        row = torch.arange(tk, device=dev).unsqueeze(0) - delta.unsqueeze(1)  # (K, Tk)
        in_window = (row >= 0) & (row < nq)
        aligned = sims.gather(1, row.clamp(0, nq - 1).unsqueeze(1)).squeeze(1)  # (K, Tk)
        timeline = torch.where(in_window, aligned, sims.amax(1))  # (K, Tk)
        start = delta.clamp(min=0)
        end = start + lengths.clamp(max=nq)
    return Alignments(start, end, score, timeline, lengths, steps_per_second, (-delta).clamp(min=0))


def window_distances(
    query: Tensor,
    targets: Tensor,
    target_mask: Tensor,
    steps_per_second: float = 4.0,
    distance: Distance = "interp",
) -> tuple[Tensor, Alignments]:
    """The re-rank's measure: `distance` between the query's steps (Tq, D) and each target's
    window where the query aligns best (`align_sequence_tensors`), (K,), with the alignments.

    A query is usually shorter than what it is searched in (a 5 s sound against a film), and a
    whole-sequence distance would compare it with everything else the target holds. So each
    target is first cut to its best window, then measured there. A target shorter than the query
    lies inside it at its best offset, and the "interp" distance compares it with that part of the
    query, step for step (as a longer target is compared with the whole query): the two sides of
    every pair are then equally long, and nothing is resampled. Every target needs at least one
    valid step.
    """
    q_mask = torch.ones(query.shape[0], dtype=torch.bool, device=query.device)
    found = align_sequence_tensors(query, q_mask, targets, target_mask, steps_per_second)
    start, end = found.start, torch.maximum(found.end, found.start + 1)
    width = int((end - start).max())
    steps = start[:, None] + torch.arange(width, device=start.device)[None, :]  # (K, W)
    window_mask = steps < end[:, None]
    with torch.no_grad():
        if distance == "interp":
            query = query.to(targets.dtype)
            return _window_squared_distance(
                query, found.query_start, targets, steps, window_mask
            ), found
        picked = take_steps(targets, steps.clamp(max=targets.shape[1] - 1))
        windows = picked.masked_fill_(~window_mask[..., None], 0.0)  # (K, W, D)
        d = paired_distance(distance, query[None], q_mask[None], windows, window_mask)
    return d, found


def _window_squared_distance(
    query: Tensor, query_start: Tensor, targets: Tensor, steps: Tensor, window_mask: Tensor
) -> Tensor:
    """(K,) mean over the valid steps i of window k of ‖q_{s_k + i} − t_{k, steps[k, i]}‖², the
    query (Tq, D) read from step s_k = query_start[k] on: each window against the part of the
    query it was aligned with (the whole query, or, for a window shorter than it, the aligned
    part). Expanded as ‖q‖² + ‖t‖² − 2 q·t (each step clamped at 0: rounding can take an exact
    match a hair below), the products of every query step with every target step in one matrix
    product: no (K, W, D) copy of the windows or of the query is made (those copies were most
    of the re-rank's step distances)."""
    k, tk, dim = targets.shape
    rows = (
        query_start[:, None] + torch.arange(steps.shape[1], device=steps.device)[None, :]
    ).clamp(max=query.shape[0] - 1)  # (K, W) the query step each window step meets
    cols = steps.clamp(max=tk - 1)
    dots = (targets.reshape(k * tk, dim) @ query.T).reshape(k, tk, -1)  # (K, Tk, Tq)
    paired = dots[torch.arange(k, device=steps.device)[:, None], cols, rows]  # (K, W)
    target_sq = targets.square().sum(-1).gather(1, cols)  # (K, W)
    query_sq = query.square().sum(-1)[rows]  # (K, W)
    squared = (query_sq + target_sq - 2 * paired).clamp(min=0) * window_mask
    return squared.sum(1) / window_mask.sum(1)


def align_sequence(
    query: Tensor,
    query_mask: Tensor,
    target: Tensor,
    target_mask: Tensor,
    steps_per_second: float = 4.0,
) -> Segment:
    """Slide the query's valid part (Tq, D) over the target's valid part (Tk, D).

    Offset o scores the mean cosine similarity of its aligned steps; the best offset gives the
    segment [o / sps, (o + len_q) / sps). If the query is longer than the target, the target is
    slid inside the query instead and the whole target is the segment. timeline = per-step
    similarity of the target at the best offset (steps outside the window: their best
    similarity to any query step).
    """
    if target.dim() != 2:
        raise ValueError(f"target: expected (T, D), got shape {tuple(target.shape)}")
    return align_sequence_batch(
        query, query_mask, target[None], target_mask[None], steps_per_second
    )[0]


__all__ = [
    "Alignments",
    "Segment",
    "align_sequence",
    "align_sequence_batch",
    "align_sequence_tensors",
    "align_vector",
    "align_vector_batch",
    "window_distances",
]


@dataclass(frozen=True)
class Agreement:
    """How well a clip's sound fits its own picture, and by how much the sound is late."""

    score: float  # peak similarity over lags minus the median over lags: a clear peak = in sync
    offset_s: float  # the sound lags the picture by this much (negative: it comes early)
    similarity: float  # the mean step similarity at the peak
    curve: Tensor  # (2 * max_lag + 1,) mean step similarity at each lag, -max_lag .. +max_lag


def av_agreement(
    audio: Tensor,
    audio_mask: Tensor,
    visual: Tensor,
    visual_mask: Tensor,
    steps_per_second: float = 4.0,
    max_lag_s: float = 1.5,
) -> list[Agreement]:
    """Audio–visual agreement of B clips from their own sequences (B, T, D) each (SyncNet's and
    "synchronizability"'s idea, on the shared step grid): the mean cosine similarity of the
    sound at t + lag with the picture at t, for every lag within ±max_lag_s. A clip whose sound
    belongs to its picture has one lag that stands out; another clip's sound, or a sound with
    nothing to see, has none. The best lag is refined between steps by the parabola through it
    and its neighbours, so the offset is finer than a step. A lag counts only where at least
    half of the shorter stream overlaps."""
    la = _lengths(audio, audio_mask, "audio")
    lv = _lengths(visual, visual_mask, "visual")
    if audio.shape[0] != visual.shape[0] or audio.shape[2] != visual.shape[2]:
        raise ValueError(
            f"audio {tuple(audio.shape)} and visual {tuple(visual.shape)} must have the same "
            "batch and embedding sizes"
        )
    if not steps_per_second > 0 or max_lag_s < 0:
        raise ValueError("steps_per_second must be > 0 and max_lag_s >= 0")
    with torch.no_grad():
        a = _unit_steps(audio, audio_mask).float()
        v = _unit_steps(visual, visual_mask).float()
        t = max(a.shape[1], v.shape[1])
        a = F.pad(a, (0, 0, 0, t - a.shape[1]))
        v = F.pad(v, (0, 0, 0, t - v.shape[1]))
        sims = torch.einsum("btd,bsd->bts", a, v)  # (B, Ta, Tv): sound step t, picture step s
        m = round(max_lag_s * steps_per_second)
        lags = torch.arange(-m, m + 1)
        curve = torch.full((a.shape[0], len(lags)), float("-inf"))
        need = (torch.minimum(la, lv).float() / 2).clamp(min=1)
        for j, lag in enumerate(lags.tolist()):
            # sound step s + lag against picture step s
            diag = torch.diagonal(sims, offset=-lag, dim1=1, dim2=2)  # (B, n)
            s0 = max(0, -lag)
            steps = torch.arange(diag.shape[1]) + s0  # picture step of each diagonal entry
            valid = (steps[None] < lv[:, None]) & (steps[None] + lag < la[:, None])
            count = valid.sum(1)
            mean = (diag * valid).sum(1) / count.clamp(min=1)
            curve[:, j] = torch.where(count >= need, mean, torch.tensor(float("-inf")))
    out = []
    for row in curve:
        finite = torch.isfinite(row)
        if not finite.any():
            out.append(Agreement(0.0, 0.0, 0.0, row))
            continue
        best = int(row.masked_fill(~finite, float("-inf")).argmax())
        peak = float(row[best])
        shift = 0.0
        if 0 < best < len(row) - 1 and bool(finite[best - 1] & finite[best + 1]):
            left, right = float(row[best - 1]), float(row[best + 1])
            bend = left - 2 * peak + right
            if bend < 0:
                shift = max(-0.5, min(0.5, 0.5 * (left - right) / bend))
        offset = (int(lags[best]) + shift) / steps_per_second
        score = peak - float(row[finite].median())
        out.append(Agreement(score, offset, peak, row))
    return out
