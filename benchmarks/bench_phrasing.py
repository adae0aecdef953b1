"""Phrasing gap: the same test clips, queried with training-style vs test-only phrasings.

    python -m benchmarks.bench_phrasing --ckpt data/bench-quality/single-stage/best

SynthAV's test captions use templates and synonyms the model never trained on. Re-captioning the
very same test clips with training templates (same attributes, fresh random choices) and comparing
text→video / text→audio recall separates what the audio and visual encoders can do from how well
the text side generalises to new wording.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from benchmarks._common import write_result
from models.model import TrimodalModel
from training.batches import all_captions, examples
from training.datasets import load_manifest
from training.evaluate import evaluate
from training.synthav import GeneratorConfig, plan_corpus
from training.synthav.captions import make_captions
from training.trainer import prepare


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", type=Path, required=True)
    p.add_argument("--corpus", type=Path, default=Path("data/bench-synthav"))
    p.add_argument("--cache", type=Path, default=Path("data/bench-quality/cache"))
    p.add_argument("--train", type=int, default=2000)
    p.add_argument("--val", type=int, default=200)
    p.add_argument("--test", type=int, default=1000)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    total = args.train + args.val + args.test
    plan = plan_corpus(
        GeneratorConfig(
            clips=total,
            seed=args.seed,
            val_fraction=args.val / total,
            test_fraction=args.test / total,
        )
    )
    by_id = {c.spec.id: c for c in plan.clips}
    items = load_manifest(args.corpus / "manifest.jsonl", splits=["test"])
    if any(by_id[i.id].captions != {k: list(v) for k, v in i.captions.items()} for i in items[:20]):
        raise SystemExit("the corpus was not made with these --seed/--train/--val/--test settings")
    train_style = []
    for item in items:
        spec = by_id[item.id].spec
        caps = make_captions(spec, np.random.default_rng([args.seed, spec.index, 99]), 3, "train")
        train_style.append(replace(item, captions={k: tuple(v) for k, v in caps.items()}))
    prepared = prepare(items, "small", args.cache)
    model = TrimodalModel.load(args.ckpt, text_backbone=prepared.backbone)
    prepared.texts.ensure(
        all_captions(examples(train_style, prepared.cache)), prepared.backbone.embed
    )
    rows: dict[str, Any] = {}
    for name, its in (("test-only phrasings", items), ("training phrasings", train_style)):
        report = evaluate(model, its, prepared.cache, prepared.texts, modes=("pooled",))
        rows[name] = {d: report[d]["pooled"]["all"] for d in ("text→video", "text→audio")}
    table = Table(title=f"phrasing gap on {len(items)} test clips ({args.ckpt})")
    for col in ("queries", "t→v R@1", "t→v R@10", "t→a R@1", "t→a R@10"):
        table.add_column(col, justify="right")
    for name, r in rows.items():
        table.add_row(
            name,
            f"{r['text→video']['R@1']:.3f}",
            f"{r['text→video']['R@10']:.3f}",
            f"{r['text→audio']['R@1']:.3f}",
            f"{r['text→audio']['R@10']:.3f}",
        )
    Console(width=160).print(table)
    result = {"ckpt": str(args.ckpt), "phrasings": rows}
    write_result("bench_phrasing", result)
    return result


if __name__ == "__main__":
    main()
