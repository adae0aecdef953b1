"""Checkpoints compared on a SynthAV test pool nobody tuned on (a new seed).

    python -m benchmarks.bench_fresh_pool --ckpt NAME=DIR [--ckpt NAME=DIR ...] [--seed 11]

A setting chosen by looking at the benchmark's test pool has to be checked somewhere else: this
generates (or reuses) a test-only corpus with another seed and reports pooled R@1/R@10 for the
four directions, for each checkpoint, on that pool.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks._common import write_result

DIRS = ("text→video", "text→audio", "audio→video", "video→audio")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", action="append", required=True, help="NAME=DIR, repeatable")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--clips", type=int, default=1000)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    from models.model import TrimodalModel
    from training.batches import all_captions, examples
    from training.datasets import load_manifest
    from training.evaluate import evaluate
    from training.synthav import GeneratorConfig, generate_corpus
    from training.trainer import prepare

    out = args.out or Path(f"data/fresh-pool-seed{args.seed}")
    generate_corpus(
        out, GeneratorConfig(clips=args.clips, seed=args.seed, val_fraction=0.0, test_fraction=1.0)
    )
    items = [i for i in load_manifest(out / "manifest.jsonl") if i.split == "test"]
    prep = prepare(items, "small", out / "cache")
    prep.texts.ensure(all_captions(examples(items, prep.cache)), prep.backbone.embed)
    results: dict[str, Any] = {"seed": args.seed, "pool": len(items), "checkpoints": {}}
    table = Table(title=f"fresh SynthAV test pool (seed {args.seed}, {len(items)} clips), pooled")
    table.add_column("checkpoint")
    for d in DIRS:
        table.add_column(f"{d} R@1/R@10", justify="right")
    for spec in args.ckpt:
        name, _, path = spec.partition("=")
        model = TrimodalModel.load(Path(path), text_backbone=prep.backbone)
        report = evaluate(model, items, prep.cache, prep.texts, modes=("pooled",))
        row = {d: report[d]["pooled"]["all"] for d in DIRS}
        results["checkpoints"][name] = {"path": path, "pooled": row}
        table.add_row(name, *[f"{row[d]['R@1']:.3f} / {row[d]['R@10']:.3f}" for d in DIRS])
    Console(width=160).print(table)
    write_result("bench_fresh_pool", results)
    return results


if __name__ == "__main__":
    main()
