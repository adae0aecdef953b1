"""Does search still work when the sound was recorded louder or quieter?

    python -m benchmarks.bench_level --ckpt RUN/best --manifest data/bench-synthav/manifest.jsonl \
        [--split val] [--gains-db=-20,-10,0,6] [--tag T]

How loud a file is recorded is not part of what a clip shows or sounds like: a field recording is
often 20 dB below a mastered track, and a quiet copy of a clip is still the clip. Every clip of the
split has its sound scaled by each gain (as a file at that level would decode: above full scale it
is taken back to full scale, as a limiter would), the pictures and captions kept; each pooled
direction with a sound side is measured against the pool at that gain. The split defaults to val:
this is the benchmark that chose `TrainConfig.augment`'s default, and it never looks at a test pool.
Prints a table, writes benchmarks/results/bench_level-*.json and ends with one JSON line.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from benchmarks._common import write_result
from models.model import TrimodalModel
from training.cache import DecodeSpec, FeatureCache, TextCache
from training.datasets import load_manifest
from training.evaluate import evaluate

DIRECTIONS = ("text→audio", "audio→video", "video→audio", "text→video")


def at_level(wave: np.ndarray, gain_db: float) -> np.ndarray:
    """`wave` as a file recorded `gain_db` louder would decode: scaled, and back to full scale
    where the scaled peak would pass it."""
    out = np.asarray(wave, np.float32) * np.float32(10 ** (gain_db / 20))
    peak = float(np.abs(out).max()) if out.size else 0.0
    return out / peak if peak > 1.0 else out


class LevelCache:
    """A feature cache whose waveforms come back at another recording level."""

    def __init__(self, cache: FeatureCache, gain_db: float) -> None:
        self.cache, self.gain_db = cache, gain_db

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cache, name)

    def audio(self, item_id: str) -> np.ndarray:
        return at_level(self.cache.audio(item_id), self.gain_db)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", type=Path, required=True)
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--split", default="val")
    p.add_argument("--gains-db", default="-20,-10,0,6")
    p.add_argument(
        "--cache", type=Path, default=None, help="features cache (default: beside the manifest)"
    )
    p.add_argument("--tag", default="")
    args = p.parse_args(argv)
    gains = [float(g) for g in args.gains_db.split(",")]

    items = [i for i in load_manifest(args.manifest) if i.split == args.split]
    if not items:
        raise SystemExit(f"{args.manifest} has no {args.split!r} clips")
    model = TrimodalModel.load(args.ckpt)
    cfg = model.cfg
    cache_root = args.cache or args.manifest.parent / ".trimodal-cache"
    cache = FeatureCache.build(items, DecodeSpec.for_model(cfg), cache_root)
    texts = TextCache(cache_root, f"{cfg.text.model}|{cfg.text.max_length}")
    texts.ensure(
        sorted({c for i in items for kind in i.captions.values() for c in kind}),
        model.text.backbone.embed,
    )
    by_gain: dict[str, Any] = {}
    with torch.inference_mode():
        for gain in gains:
            report = evaluate(
                model,
                items,
                LevelCache(cache, gain),
                texts,
                modes=("pooled",),  # type: ignore[arg-type]
            )
            by_gain[f"{gain:+g} dB"] = {
                d: {k: report[d]["pooled"]["all"][k] for k in ("R@1", "R@10")} for d in DIRECTIONS
            }
            by_gain[f"{gain:+g} dB"]["pool"] = report["pool"]

    table = Table(title=f"pooled R@1 / R@10 with the sound at another level ({args.split} split)")
    table.add_column("sound level")
    for d in DIRECTIONS:
        table.add_column(d, justify="right")
    for name, row in by_gain.items():
        table.add_row(name, *(f"{row[d]['R@1']:.3f} / {row[d]['R@10']:.3f}" for d in DIRECTIONS))
    Console(width=120).print(table)
    result = {
        "ckpt": str(args.ckpt),
        "manifest": str(args.manifest),
        "split": args.split,
        "by_gain": by_gain,
    }
    write_result("bench_level" + (f"-{args.tag}" if args.tag else ""), result)
    return result


if __name__ == "__main__":
    main()
