"""Contrastive losses: plain functions of embeddings (the model never computes its own loss).

- `info_nce`: symmetric InfoNCE over a batch, matching pairs on the diagonal.
- `single_stage_loss`: SLAVA's single-stage trimodal objective, w_vt·L_vt + w_at·L_at + w_av·L_av,
  with caption-kind routing: visual captions pair with vision, audio captions with audio,
  audiovisual captions with both.
- `two_stage_loss`: the reference recipe SLAVA compares against: stage 1 aligns vision and text
  only; stage 2 aligns audio and text only, with vision frozen (the trainer freezes it).
- `paraphrase_loss`: two wordings of one clip's caption embed together (the text head learns
  meaning, not one grammar's wording).
- `scav_loss`: SCAV's sequence-level contrast: negative sequence distances as logits, the distance
  matrix normalised row- and column-wise before the softmax.
- `step_contrast_loss`: per-step audio–visual contrast: the sound at step t against the picture at
  t, the picture at the clip's other times and every other clip's steps (Synchformer's segment
  contrast at the grid's resolution): the sequence heads learn *when*, not only *what*.
- `sync_loss`: whole-sequence audio–visual contrast whose extra negatives are the clip's own
  picture shifted by a few steps: only timing separates them (the default timing objective).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from models.encoders import Embeddings
from models.sequence import Distance, pairwise_distance


def info_nce(
    a: Tensor,
    b: Tensor,
    scale: Tensor | float,
    valid: Tensor | None = None,
    targets: Tensor | None = None,
) -> Tensor:
    """Symmetric InfoNCE between row-aligned unit vectors a (B, D) and b (B, D).

    `valid` (B,) drops rows whose pair is missing (a clip without audio) from both the anchors and
    the negatives, instead of pretending a zero vector is a sample.
    `targets` (B, B), symmetric, rows summing to 1: soft targets instead of the identity (see
    `soft_targets`); None is plain InfoNCE.
    """
    if valid is not None:
        a, b = a[valid], b[valid]
        if targets is not None:
            targets = targets[valid][:, valid]
            targets = targets / targets.sum(1, keepdim=True)
    if a.shape[0] < 2:
        return a.new_zeros(())  # no negatives: nothing to contrast
    logits = scale * a @ b.T  # (B, B)
    target = torch.arange(a.shape[0], device=a.device) if targets is None else targets
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def soft_targets(sentences: Tensor, temperature: float) -> Tensor:
    """Soft contrastive targets from the frozen text tower's own similarity between captions.

    Row i spreads its mass over the captions in the batch by softmax(cos(t_i, t_j) / temperature):
    the caption's own clip keeps most of it, a clip whose caption says the same thing in other
    words gets a share instead of being pushed away as a negative. Two identical captions get
    equal shares, so duplicates stop being false negatives. The video side then learns the text
    tower's notion of "same meaning", not one template's wording.
    """
    unit = F.normalize(sentences.float(), dim=-1)
    return torch.softmax(unit @ unit.T / temperature, dim=1)


@dataclass(frozen=True)
class PairWeights:
    vt: float = 1.0
    at: float = 1.0
    # Audio–vision at a quarter: with equal weights it pulled the visual embedding away from the
    # text space (small preset, 10 epochs: text→video R@10 0.469 → 0.537, audio→video 0.184 →
    # 0.196, text→audio 0.229 → 0.246; benchmarks/results/bench_quality-av025-*).
    av: float = 0.25


@dataclass(frozen=True)
class TextBatch:
    """Projected caption embeddings of one batch, one caption of each kind per clip (B, D)."""

    visual: Tensor
    audio: Tensor
    audiovisual: Tensor


def single_stage_loss(
    visual: Embeddings,
    audio: Embeddings,
    text: TextBatch,
    scales: dict[str, Tensor],
    weights: PairWeights = PairWeights(),
    audio_valid: Tensor | None = None,
    targets: dict[str, Tensor] | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """All three pairs in one stage, each caption kind routed to the modality it describes.

    `targets`: optional soft targets per caption kind (`soft_targets`), for the text pairs.
    """
    tg = targets or {}
    l_vt = 0.5 * (
        info_nce(visual.pooled, text.visual, scales["visual_text"], None, tg.get("visual"))
        + info_nce(
            visual.pooled, text.audiovisual, scales["visual_text"], None, tg.get("audiovisual")
        )
    )
    l_at = 0.5 * (
        info_nce(audio.pooled, text.audio, scales["audio_text"], audio_valid, tg.get("audio"))
        + info_nce(
            audio.pooled, text.audiovisual, scales["audio_text"], audio_valid, tg.get("audiovisual")
        )
    )
    l_av = info_nce(audio.pooled, visual.pooled, scales["audio_visual"], audio_valid)
    total = weights.vt * l_vt + weights.at * l_at + weights.av * l_av
    return total, {"vt": l_vt.item(), "at": l_at.item(), "av": l_av.item()}


def two_stage_loss(
    stage: int,
    visual: Embeddings | None,
    audio: Embeddings | None,
    text: TextBatch,
    scales: dict[str, Tensor],
    audio_valid: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Stage 1: vision–text only. Stage 2: audio–text only (vision is frozen by the trainer)."""
    if stage == 1:
        if visual is None:
            raise ValueError("stage 1 needs visual embeddings")
        loss = 0.5 * (
            info_nce(visual.pooled, text.visual, scales["visual_text"])
            + info_nce(visual.pooled, text.audiovisual, scales["visual_text"])
        )
        return loss, {"vt": loss.item()}
    if stage == 2:
        if audio is None:
            raise ValueError("stage 2 needs audio embeddings")
        loss = 0.5 * (
            info_nce(audio.pooled, text.audio, scales["audio_text"], audio_valid)
            + info_nce(audio.pooled, text.audiovisual, scales["audio_text"], audio_valid)
        )
        return loss, {"at": loss.item()}
    raise ValueError(f"stage must be 1 or 2, got {stage}")


def paraphrase_loss(
    anchor: Tensor, other: Tensor, anchor_raw: Tensor, other_raw: Tensor, temperature: float
) -> Tensor:
    """Two wordings of one clip's caption (same kind) must embed together, apart from the other
    clips' captions: the text side learns what a caption says, not how this grammar says it.

    anchor/other (B, D): projected; anchor_raw/other_raw (B, hidden): the frozen tower's vectors,
    used only to find identical sentences, which count as positives wherever they sit in the batch.
    """
    if anchor.shape[0] < 2:
        return anchor.new_zeros(())
    logits = anchor @ other.T / temperature  # (B, B)
    same = (anchor_raw[:, None, :] == other_raw[None, :, :]).all(-1)
    same |= torch.eye(anchor.shape[0], dtype=torch.bool, device=anchor.device)
    masked = logits.masked_fill(~same, float("-inf"))
    rows = torch.logsumexp(masked, 1) - torch.logsumexp(logits, 1)
    cols = torch.logsumexp(masked, 0) - torch.logsumexp(logits, 0)
    return -0.5 * (rows.mean() + cols.mean())


def normalise_distances(distance: Tensor) -> Tensor:
    """Standardise a (B, B) distance matrix row-wise and column-wise (SCAV), averaged.

    Sequence distances have no natural scale (they grow with length and content), so raw values
    make the softmax either flat or one-hot; standardising each row and each column fixes that.
    """
    rows = (distance - distance.mean(1, keepdim=True)) / (distance.std(1, keepdim=True) + 1e-6)
    cols = (distance - distance.mean(0, keepdim=True)) / (distance.std(0, keepdim=True) + 1e-6)
    return 0.5 * (rows + cols)


def scav_loss(
    audio: Embeddings,
    visual: Embeddings,
    scale: Tensor | float,
    distance: Distance = "interp",
    valid: Tensor | None = None,
) -> Tensor:
    """Sequence-level audio–visual contrast on non-aggregated per-step embeddings."""
    a_seq, a_mask, v_seq, v_mask = audio.sequence, audio.mask, visual.sequence, visual.mask
    if valid is not None:
        a_seq, a_mask, v_seq, v_mask = a_seq[valid], a_mask[valid], v_seq[valid], v_mask[valid]
    if a_seq.shape[0] < 2:
        return a_seq.new_zeros(())
    dist = pairwise_distance(distance, a_seq, a_mask, v_seq, v_mask)  # (B, B)
    logits = -scale * normalise_distances(dist)
    target = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def step_contrast_loss(
    audio: Embeddings,
    visual: Embeddings,
    temperature: float,
    valid: Tensor | None = None,
) -> Tensor:
    """Per-step audio–visual InfoNCE: each audio step's positive is the visual step at the same time
    of the same clip; its negatives are the clip's other visual steps (so only timing separates
    them: an event heard at t is seen at t, not a second later) and every step of the other clips
    in the batch. Symmetric. Steps past either stream's end, and rows where `valid` is False (no
    sound, or no picture), take no part.

    Temporal negatives that look alike (two quiet steps of one clip) cannot be told apart and keep
    a floor under this loss; that is the point: what can be told apart is where the events are.
    """
    a_seq, a_mask, v_seq, v_mask = audio.sequence, audio.mask, visual.sequence, visual.mask
    if valid is not None:
        a_seq, a_mask, v_seq, v_mask = a_seq[valid], a_mask[valid], v_seq[valid], v_mask[valid]
    t = min(a_seq.shape[1], v_seq.shape[1])
    both = a_mask[:, :t] & v_mask[:, :t]
    a_steps, v_steps = a_seq[:, :t][both], v_seq[:, :t][both]  # (N, D) each, row-aligned
    if a_steps.shape[0] < 2:
        return a_seq.new_zeros(())
    logits = a_steps @ v_steps.T / temperature  # (N, N)
    target = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def _lagged_self(a: Tensor, v: Tensor, am: Tensor, vm: Tensor, lag: int) -> Tensor:
    """(B,) mean over valid steps of a[t + lag] · v[t] for each clip with itself."""
    if lag > 0:
        a, am, v, vm = a[:, lag:], am[:, lag:], v[:, :-lag], vm[:, :-lag]
    elif lag < 0:
        a, am, v, vm = a[:, :lag], am[:, :lag], v[:, -lag:], vm[:, -lag:]
    both = (am & vm).to(a.dtype)
    return (a * v).sum(-1).mul(both).sum(1) / both.sum(1).clamp(min=1)


def sync_loss(
    audio: Embeddings,
    visual: Embeddings,
    temperature: float,
    lags: tuple[int, ...] = (-4, -3, -2, -1, 1, 2, 3, 4),
    valid: Tensor | None = None,
) -> Tensor:
    """Whole-sequence audio–visual contrast that only timing can solve (SyncNet's negatives on
    SCAV's sequences): a clip's sound against its own picture, step by step at lag 0 (the
    positive), against every other clip's picture (the batch's negatives) and against its *own*
    picture shifted by each of `lags` steps (negatives that share everything but the time).
    Score = mean step cosine over the steps both have. Symmetric over sound and picture."""
    a, am, v, vm = audio.sequence, audio.mask, visual.sequence, visual.mask
    if valid is not None:
        a, am, v, vm = a[valid], am[valid], v[valid], vm[valid]
    t = min(a.shape[1], v.shape[1])
    a, am, v, vm = a[:, :t], am[:, :t], v[:, :t], vm[:, :t]
    a = torch.where(am.unsqueeze(-1), a, torch.zeros((), dtype=a.dtype))
    v = torch.where(vm.unsqueeze(-1), v, torch.zeros((), dtype=v.dtype))
    if a.shape[0] < 2:
        return a.new_zeros(())
    count = torch.einsum("it,jt->ij", am.to(a.dtype), vm.to(a.dtype)).clamp(min=1)
    cross = torch.einsum("itd,jtd->ij", a, v) / count  # (B, B): sound i, picture j, lag 0
    shifted = [_lagged_self(a, v, am, vm, lag) for lag in lags if abs(lag) < t]
    own = torch.stack(shifted, 1) if shifted else cross.new_zeros((a.shape[0], 0))  # (B, L)
    target = torch.arange(a.shape[0], device=a.device)
    by_sound = torch.cat([cross, own], 1) / temperature
    by_picture = torch.cat([cross.T, own], 1) / temperature
    return 0.5 * (F.cross_entropy(by_sound, target) + F.cross_entropy(by_picture, target))
