"""How should a non-square picture become the encoders' square input? Measured, not guessed.

    python -m benchmarks.bench_fit --ckpt RUN/best --val-pool VARIETY/manifest.jsonl \
        [--pool foreign=DIR/manifest.jsonl] [--pool robust=DIR/manifest.jsonl]

One checkpoint, its pools decoded three ways (`models.media.decode` fit: "pad" letterboxes,
"stretch" fills the square and keeps the glyphs' height, "crop" cuts the sides). The fit is CHOSEN
on the --val-pool's val split alone (clips unlike the training ones: a --variety SynthAV corpus of
4:3 and 16:9 clips when the model trained on square ones); the --pool corpora are only reported
beside it, never looked at to choose. Pooled R@1 / R@10 per direction.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks._common import write_result
from benchmarks.bench_quality import DIRS, other_pools
from models.config import ModelConfig
from models.model import TrimodalModel
from models.text import TextBackbone
from training.batches import all_captions, examples
from training.datasets import load_manifest
from training.evaluate import evaluate, validation_score
from training.trainer import prepare

FITS = ("pad", "stretch", "crop")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", type=Path, required=True)
    p.add_argument("--val-pool", type=Path, required=True, metavar="MANIFEST")
    p.add_argument("--pool", action="append", default=[], metavar="NAME=MANIFEST")
    p.add_argument("--cache", type=Path, default=Path("data/bench-fit-cache"))
    p.add_argument("--tag", default="")
    args = p.parse_args(argv)
    console = Console(width=200)

    backbone = TextBackbone(ModelConfig.load(args.ckpt / "config.json").text)
    model = TrimodalModel.load(args.ckpt, text_backbone=backbone)
    val = [i for i in load_manifest(args.val_pool) if i.split == "val"]
    pools = {"val": val, **other_pools(args.pool)}
    results: dict[str, Any] = {"ckpt": str(args.ckpt), "val_pool": str(args.val_pool), "fits": {}}
    for fit in FITS:
        by_pool = {}
        for name, items in pools.items():
            ready = prepare(items, "small", args.cache, fit=fit, fps=model.cfg.visual.fps)
            ready.texts.ensure(all_captions(examples(items, ready.cache)), backbone.embed)
            report = evaluate(model, items, ready.cache, ready.texts, modes=("pooled",))
            by_pool[name] = {"score": validation_score(report), "report": report}
        results["fits"][fit] = by_pool
    chosen = max(FITS, key=lambda f: results["fits"][f]["val"]["score"])
    results["chosen"] = chosen

    table = Table(title=f"fit: pooled R@1 / R@10 ({args.ckpt}); chosen on val: {chosen}")
    table.add_column("fit")
    table.add_column("pool")
    table.add_column("val score", justify="right")
    for d in DIRS:
        table.add_column(d, justify="right")
    for fit in FITS:
        for name, got in results["fits"][fit].items():
            cells = []
            for d in DIRS:
                r = got["report"].get(d) or {}
                a = r.get("pooled", {}).get("all")
                cells.append(f"{a['R@1']:.3f} / {a['R@10']:.3f}" if a else "-")
            score = f"{got['score']:.3f}" if name == "val" else ""
            table.add_row(fit, name, score, *cells)
    console.print(table)
    write_result("bench_fit" + (f"-{args.tag}" if args.tag else ""), results)
    return results


if __name__ == "__main__":
    main()
