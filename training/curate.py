"""Curation, after LG-CAV-MAE: keep the training clips whose audio agrees with their caption.

Each train clip is scored by the cosine similarity between its pooled audio embedding and its
audiovisual captions (the general description of the clip, which a replaced sound track
contradicts), averaged over those captions. The top `keep` fraction of train clips is kept; val
and test items pass through untouched. `random_subset` is the baseline the paper compares with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from models.model import TrimodalModel
from training.cache import FeatureCache, TextCache
from training.datasets import ManifestItem
from training.evaluate import embed_pool


@dataclass(frozen=True)
class Scored:
    id: str
    score: float


@torch.inference_mode()
def agreement_scores(
    model: TrimodalModel, items: Sequence[ManifestItem], cache: FeatureCache, texts: TextCache
) -> list[Scored]:
    """Audio–caption agreement per item that has audio and an audiovisual (or any) caption."""
    usable = [i for i in items if i.id in cache.row and cache.audio(i.id).size > 0]
    pool = embed_pool(model, cache, [i.id for i in usable])
    out = []
    for row, item in enumerate(usable):
        captions = (
            item.captions.get("audiovisual")
            or item.captions.get("audio")
            or item.captions.get("visual")
        )
        if not captions:
            continue
        text = (
            model.project_text(texts.lookup(list(captions)).to(model.device)).pooled.float().cpu()
        )
        out.append(Scored(item.id, float((text @ pool.audio.pooled[row]).mean())))
    return out


def keep_top(scored: Sequence[Scored], keep: float) -> set[str]:
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    ranked = sorted(scored, key=lambda s: (-s.score, s.id))
    return {s.id for s in ranked[: max(1, round(keep * len(ranked)))]}


def random_subset(ids: Sequence[str], keep: float, seed: int = 0) -> set[str]:
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(ids), size=max(1, round(keep * len(ids))), replace=False)
    return {ids[i] for i in chosen}
