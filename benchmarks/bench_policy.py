"""Does the re-rank default a checkpoint recorded on its val split hold on other media?

    python -m benchmarks.bench_policy --ckpt RUN/best --pool test=DIR/manifest.jsonl#test \
        --pool foreign=DIR/manifest.jsonl --pool robust=DIR/manifest.jsonl

The trainer decides each direction's re-rank default on its validation split
(`training.search_policy.measure_policy`: for queries from 4 s whole clips and 4 s excerpts,
2–4 s 2.5 s excerpts, under 2 s 1.5 s excerpts). This runs the same measurement on other
pools, only to report it beside the recorded choice of the 2–4 s tier: pooled vs re-ranked
R@1 / R@10 per direction and pool.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks._common import write_result
from benchmarks.bench_quality import other_pools
from models.config import ModelConfig
from models.model import TrimodalModel
from models.policy import DIRECTIONS
from models.text import TextBackbone
from training.batches import all_captions, examples
from training.search_policy import measure_policy
from training.trainer import prepare


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", type=Path, required=True)
    p.add_argument("--pool", action="append", default=[], metavar="NAME=MANIFEST", required=True)
    p.add_argument("--cache", type=Path, default=Path("data/bench-policy-cache"))
    p.add_argument("--tag", default="")
    args = p.parse_args(argv)

    backbone = TextBackbone(ModelConfig.load(args.ckpt / "config.json").text)
    model = TrimodalModel.load(args.ckpt, text_backbone=backbone)
    recorded = model.search_policy
    results: dict[str, Any] = {"ckpt": str(args.ckpt), "recorded": recorded.to_dict(), "pools": {}}
    table = Table(title=f"re-rank: pooled → re-ranked R@1 / R@10 ({args.ckpt})")
    table.add_column("pool")
    for d in DIRECTIONS:
        table.add_column(f"{d} (default {'on' if recorded.rerank.get(d) else 'off'})")
    for name, items in other_pools(args.pool).items():
        ready = prepare(
            items, "small", args.cache, fit=model.cfg.visual.fit, fps=model.cfg.visual.fps
        )
        ready.texts.ensure(all_captions(examples(items, ready.cache)), backbone.embed)
        found = measure_policy(model, items, ready.cache, ready.texts, recorded.sequence_trained)
        results["pools"][name] = found.to_dict()
        cells = []
        for d in DIRECTIONS:
            # the weighting the checkpoint recorded, measured on this pool, against pooled
            evidence = found.evidence.get(d, {})
            label = recorded.evidence.get(d, {}).get("chosen", "off")
            parts = []
            for kind, m in evidence.items():
                if not isinstance(m, dict) or "pooled" not in m:  # "chosen", "gain_R@1"
                    continue
                p_, h = m["pooled"], m.get(label, m["pooled"])
                parts.append(
                    f"{kind} {p_['R@1']:.3f}/{p_['R@10']:.3f} → {h['R@1']:.3f}/{h['R@10']:.3f}"
                )
            cells.append("\n".join(parts) + f"\n(recorded: {label})")
        table.add_row(name, *cells)
    Console(width=200).print(table)
    write_result("bench_policy" + (f"-{args.tag}" if args.tag else ""), results)
    return results


if __name__ == "__main__":
    main()
