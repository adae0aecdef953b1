"""How far text retrieval can go in a text space: clips placed perfectly, queries in new words.

    python -m benchmarks.bench_text_ceiling --manifest data/bench-synthav/manifest.jsonl \
        [--split test|val | --queries OTHER/manifest.jsonl] [--ckpt RUN/best]

The oracle ceilings of `bench_quality` assume a model that knows every clip's attributes. This
asks what the *shared space* allows: each clip of the split is placed where an ideal encoder
trained on this corpus would put it — at the centroid of the training captions (of one kind) of
every clip with the same SynthAV signature — and the split's own captions, in the wordings
reserved for it, are ranked against those points. Clips whose signature never occurs in training
have no centroid and are left out (the pool size is reported). Ties count in the query's favour:
this is a ceiling. The space is the frozen text tower's (the `small` preset's identity head), or a
checkpoint's trained text head with `--ckpt`. `--queries` takes the query clips and their captions
from another manifest instead (every split; e.g. the foreign corpus, worded by another grammar).

A text→audio R@10 ceiling below a target means no audio encoder can meet that target in this space.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from benchmarks._common import write_result
from models.config import ModelConfig, preset
from models.model import TrimodalModel
from models.text import TextBackbone
from training.datasets import load_manifest
from training.evaluate import _signature

KINDS = ("visual", "audio", "audiovisual")


def ceiling(train: list, queries: list, kind: str, project) -> dict[str, float | int]:
    """R@1 / R@10 of `queries`' captions of `kind` against training-caption centroids."""
    captions = [(c, _signature(i.meta, kind)) for i in train for c in i.captions.get(kind, ())]
    vectors = project([c for c, _ in captions])
    groups: dict[Any, list[torch.Tensor]] = defaultdict(list)
    for (_, sig), v in zip(captions, vectors, strict=True):
        groups[sig].append(v)
    centroid = {s: F.normalize(torch.stack(v).mean(0), dim=-1) for s, v in groups.items()}
    pool = [i for i in queries if _signature(i.meta, kind) in centroid]
    if not pool:
        return {"R@1": float("nan"), "R@10": float("nan"), "pool": 0, "queries": 0}
    points = torch.stack([centroid[_signature(i.meta, kind)] for i in pool])
    texts, target = [], []
    for row, item in enumerate(pool):
        for c in item.captions.get(kind, ()):
            texts.append(c)
            target.append(row)
    q = project(texts)
    scores = q @ points.T
    right = scores[torch.arange(len(target)), torch.tensor(target)]
    ranks = (scores > right[:, None] + 1e-6).sum(1)
    return {
        "R@1": float((ranks == 0).float().mean()),
        "R@10": float((ranks < 10).float().mean()),
        "pool": len(pool),
        "queries": len(texts),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--split", choices=("test", "val"), default="test")
    p.add_argument(
        "--queries",
        type=Path,
        default=None,
        help="query clips and captions from this manifest (all splits) instead of --split",
    )
    p.add_argument("--ckpt", type=Path, default=None, help="use this checkpoint's text head")
    p.add_argument("--tag", default="")
    args = p.parse_args(argv)

    items = load_manifest(args.manifest)
    train = [i for i in items if i.split == "train"]
    queries = (
        load_manifest(args.queries)
        if args.queries is not None
        else [i for i in items if i.split == args.split]
    )
    if args.ckpt is not None:
        backbone = TextBackbone(ModelConfig.load(args.ckpt / "config.json").text)
        model = TrimodalModel.load(args.ckpt, text_backbone=backbone)
        head = model.cfg.text.head
    else:
        backbone, model, head = TextBackbone(preset("small").text), None, "identity (frozen)"

    @torch.inference_mode()
    def project(texts: list[str]) -> torch.Tensor:
        vectors = backbone.embed(texts).float()
        if model is not None:
            return model.project_text(vectors).pooled.float()
        return F.normalize(vectors, dim=-1)

    results: dict[str, Any] = {
        "manifest": str(args.manifest),
        "split": str(args.queries) if args.queries is not None else args.split,
        "head": head,
        "ckpt": str(args.ckpt) if args.ckpt else None,
        "kinds": {k: ceiling(train, queries, k, project) for k in KINDS},
    }
    worded = args.queries.parent.name if args.queries is not None else args.split
    table = Table(title=f"text-space ceiling ({worded} wordings, head: {head})")
    for col in ("caption kind", "pool", "queries", "R@1", "R@10"):
        table.add_column(col, justify="left" if col == "caption kind" else "right")
    for kind, m in results["kinds"].items():
        table.add_row(
            kind, str(m["pool"]), str(m["queries"]), f"{m['R@1']:.3f}", f"{m['R@10']:.3f}"
        )
    Console(width=120).print(table)
    write_result("bench_text_ceiling" + (f"-{args.tag}" if args.tag else ""), results)
    return results


if __name__ == "__main__":
    main()
