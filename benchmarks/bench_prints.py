"""Sound → audio by the signal alone: landmarks, dense prints and Chromaprint on the same pieces.

    python -m benchmarks.bench_prints --ckpt RUN/best --cache RUN/cache \
        --pool test=data/bench-synthav/manifest.jsonl#test \
        --pool foreign=data/foreign-1000/manifest.jsonl \
        --pool robust=data/robust-test/manifest.jsonl

The pieces are `bench_timing`'s (`training.evaluate.cut_excerpts`, seed 0, `--max-queries` clips
a pool, sound cut at any sample), searched against every clip of the pool:
- **landmarks** (`models.fingerprint`, what the service asks first): the share found (its own
  clip among those returned) and found first in another clip;
- **dense prints** (`models.prints`): every clip's lowest bit error rate at any offset, ranked
  (R@1 / R@10, the placement error of hits at rank 1), and what `prints.decide` returns: the share
  found and found first in another clip;
- **landmarks, then prints** where the landmarks say nothing: the same two shares;
- **Chromaprint** (`fpcalc -raw`, best bit-error alignment; `bench_timing.chromaprint_report`).
The checkpoint only says how media are decoded (rate, frame rate): nothing learned is asked.
Not wired into the service yet; this measures whether it should be.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from benchmarks._common import write_result
from benchmarks.bench_quality import other_pools
from benchmarks.bench_timing import chromaprint_report
from models import prints as pr
from models.fingerprint import FingerprintTable, peaks, query_peaks
from models.model import TrimodalModel
from training.cache import DecodeSpec, FeatureCache
from training.evaluate import cut_excerpts
from training.metrics import summarise


def _shares(found: list[list[int]], rows: list[int]) -> dict[str, float]:
    n = max(1, len(rows))
    return {
        "found": sum(r in f for f, r in zip(found, rows, strict=True)) / n,
        "first_elsewhere": sum(bool(f) and f[0] != r for f, r in zip(found, rows, strict=True)) / n,
    }


def measure_pool(
    ids: list[str],
    cache: FeatureCache,
    seconds: list[float],
    fps: float,
    max_queries: int | None,
    chromaprint: bool,
) -> dict[str, Any]:
    sr = cache.spec.sample_rate
    waves = [np.asarray(cache.audio(i), np.float32) for i in ids]
    landmarks = FingerprintTable([peaks(w, sr) for w in waves])
    table = [pr.prints(w, sr) for w in waves]
    out: dict[str, Any] = {"pool": len(ids), "skipped": dict(cache.skipped)}
    for s in seconds:
        cut = cut_excerpts(ids, cache, s, fps, sr, max_queries=max_queries)
        by_landmarks, by_prints, both, ranks, errors = [], [], [], [], []
        for wave, row, start in zip(cut.waves, cut.rows, cut.sound_starts, strict=True):
            lm = landmarks.match(query_peaks(wave, sr)).rows.tolist()
            ber, starts = pr.best_offsets(pr.query_prints(wave, sr), table)
            decided = pr.decide(ber, starts).rows.tolist()
            rank = int((ber <= ber[row]).sum())  # ties count against
            ranks.append(rank)
            if rank == 1:
                errors.append(abs(float(starts[row]) - start))
            by_landmarks.append(lm)
            by_prints.append(decided)
            both.append(lm or decided)
        err = np.array(errors)
        out[f"{s:g}s"] = {
            "queries": len(cut.rows),
            "landmarks": _shares(by_landmarks, cut.rows),
            "prints": {
                **summarise(torch.tensor(ranks)),
                "start_error_s": {
                    "median": float(np.median(err)) if err.size else float("nan"),
                    "within_0.25s": float((err <= 0.25).mean()) if err.size else 0.0,
                },
                **_shares(by_prints, cut.rows),
            },
            "landmarks_then_prints": _shares(both, cut.rows),
            "chromaprint": (
                chromaprint_report(waves, cut.waves, cut.rows, cut.sound_starts, sr)
                if chromaprint
                else None
            ),
        }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", type=Path, required=True, help="what says how media are decoded")
    p.add_argument("--pool", action="append", required=True, metavar="NAME=MANIFEST")
    p.add_argument("--seconds", type=float, nargs="+", default=[1.5, 2.5, 4.0])
    p.add_argument("--max-queries", type=int, default=200)
    p.add_argument(
        "--cache", type=Path, default=None, help="feature cache (default: beside --ckpt)"
    )
    p.add_argument("--no-chromaprint", action="store_true")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--tag", default="")
    args = p.parse_args(argv)
    chromaprint = not args.no_chromaprint
    if chromaprint and shutil.which("fpcalc") is None:
        raise SystemExit(
            "fpcalc not found: apt-get install libchromaprint-tools, or --no-chromaprint"
        )
    model = TrimodalModel.load(args.ckpt)
    spec = DecodeSpec.for_model(model.cfg)
    cache_root = args.cache or args.ckpt.parent / "timing-cache"
    results: dict[str, Any] = {
        "ckpt": str(args.ckpt),
        "settings": {
            "max_queries": args.max_queries,
            "match_ber": pr.MATCH_BER,
            "copy_margin": pr.COPY_MARGIN,
            "hop_s": pr.HOP_S,
            "phases": pr.PHASES,
        },
        "pools": {},
    }
    table = Table(title="sound → audio by the signal: found (first elsewhere); R@1 / R@10")
    for col in (
        "pool",
        "length",
        "landmarks",
        "prints ranked",
        "prints decided",
        "both",
        "Chromaprint",
    ):
        table.add_column(col, justify="left" if col in ("pool", "length") else "right")
    for name, items in other_pools(args.pool).items():
        cache = FeatureCache.build(items, spec, cache_root, args.workers)
        ids = [i.id for i in items if i.id in cache.row]
        r = measure_pool(
            ids, cache, args.seconds, model.cfg.visual.fps, args.max_queries, chromaprint
        )
        results["pools"][name] = r
        for s in args.seconds:
            m = r[f"{s:g}s"]

            def shares(d: dict[str, float]) -> str:
                return f"{d['found']:.3f} ({d['first_elsewhere']:.3f})"

            cp = m["chromaprint"]
            table.add_row(
                name,
                f"{s:g} s",
                shares(m["landmarks"]),
                f"{m['prints']['R@1']:.3f} / {m['prints']['R@10']:.3f}",
                shares(m["prints"]),
                shares(m["landmarks_then_prints"]),
                "-" if cp is None else f"{cp['R@1']:.3f} / {cp['R@10']:.3f}",
            )
    Console(width=150).print(table)
    write_result("bench_prints" + (f"-{args.tag}" if args.tag else ""), results)
    return results


if __name__ == "__main__":
    main()
