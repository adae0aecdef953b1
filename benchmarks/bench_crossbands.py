"""Sound against picture by events, one envelope or the best of the sound's bands (nothing learned).

    python -m benchmarks.bench_crossbands --val data/bench-synthav/manifest.jsonl \
        --pool test=data/bench-synthav/manifest.jsonl#test \
        --pool foreign=data/foreign-1000/manifest.jsonl \
        --pool robust=data/robust-test/manifest.jsonl --cache DIR

Whole clips are matched across modalities by their event envelopes (`models.events`): today the
sound's single onset envelope (the flux of every mel bin summed) against the picture's change
envelope. A clip's sound holds its visible source's events *and* everything else it hears
(ambience, an offscreen source), summed into one envelope; the sound's bands
(`models.events.sound_bands`, eight groups of mel bins) each hold fewer of them. This measures,
envelopes alone, audio→video and video→audio R@1 / R@10 of:
- "single": the sound's single envelope against the picture's;
- "best band": the best, over the sound's eight bands, of each band's correlation with the
  picture's envelope (the same placements and lag tolerance as `match_events`);
- "+ motion": the best over the sound's bands and the picture's change *and* motion envelopes
  (`models.events.picture_motion`: where its motion changes, a ball landing), every pair;
- "+ halves": and each half's change and motion envelopes beside them
  (`models.events.picture_halves`: the top and bottom halves of the picture, where two things
  one above the other each change at their own moments).

Queries are the clips whose sound and picture share an event source (`shares_an_event`), up to
`--max-queries` of them (a fixed random subset), searched among every clip of the pool. `--val`
is the own val split with `--distractors` train clips added: the pool a setting may be chosen on;
the others are only reported.
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
from benchmarks.bench_quality import other_pools
from models.config import preset
from models.events import item_events, match_across, match_events, match_many, picture_kinds
from training.cache import DecodeSpec, FeatureCache
from training.datasets import ManifestItem, load_manifest
from training.evaluate import shares_an_event
from training.metrics import ranks_from_scores, summarise


def measure(envelopes: list[dict[str, np.ndarray]], queries: list[int]) -> dict[str, Any]:
    """Envelope-only ranks of each query's own clip, both directions, both scorings."""
    sound = [e["audio"] for e in envelopes]
    picture = [e["visual"] for e in envelopes]
    bands = [e["audio_bands"] for e in envelopes]
    kinds = [picture_kinds(e["visual"], e["visual_motion"]) for e in envelopes]
    n_bands = max(b.shape[1] for b in bands if len(b))
    per_band = [
        [b[:, k].copy() if len(b) else np.zeros(0, np.float32) for b in bands]
        for k in range(n_bands)
    ]
    found: dict[str, list[np.ndarray]] = {
        "audio→video single": [],
        "audio→video best band": [],
        "video→audio single": [],
        "video→audio best band": [],
        "audio→video + motion": [],
        "video→audio + motion": [],
        "audio→video + halves": [],
        "video→audio + halves": [],
    }
    halves = [picture_kinds(e["visual"], e["visual_motion"], e["visual_halves"]) for e in envelopes]
    for q in queries:
        found["audio→video single"].append(match_events(sound[q], picture).scores)
        by_band = match_many([bands[q][:, k].copy() for k in range(n_bands)], picture)
        found["audio→video best band"].append(np.max([m.scores for m in by_band], axis=0))
        found["video→audio single"].append(match_events(picture[q], sound).scores)
        found["video→audio best band"].append(
            np.max([match_events(picture[q], per_band[k]).scores for k in range(n_bands)], 0)
        )
        found["audio→video + motion"].append(match_across([bands[q]], kinds)[0].scores)
        found["video→audio + motion"].append(match_across([kinds[q]], bands)[0].scores)
        found["audio→video + halves"].append(match_across([bands[q]], halves)[0].scores)
        found["video→audio + halves"].append(match_across([halves[q]], bands)[0].scores)
    target = torch.tensor(queries, dtype=torch.long)
    return {
        name: summarise(ranks_from_scores(torch.from_numpy(np.stack(s)), target))
        for name, s in found.items()
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--val", type=Path, help="the own manifest: its val split plus distractors")
    p.add_argument("--distractors", type=int, default=800, help="train clips added to val")
    p.add_argument("--pool", action="append", default=[], help="NAME=MANIFEST[#SPLIT]")
    p.add_argument("--cache", type=Path, default=Path("data/bench-crossbands/cache"))
    p.add_argument("--max-queries", type=int, default=300)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    cfg = preset("small")
    spec = DecodeSpec.for_model(cfg)
    pools: dict[str, list[ManifestItem]] = {}
    if args.val:
        pools["val"] = (
            load_manifest(args.val, ["val"])
            + load_manifest(args.val, ["train"])[: args.distractors]
        )
    pools |= other_pools(args.pool)
    table = Table(title="envelopes alone, shared-event clips: R@1 / R@10")
    methods = ("single", "best band", "+ motion", "+ halves")
    for col in ("pool", "clips", "queries", "direction", *methods):
        table.add_column(col, justify="left" if col in ("pool", "direction") else "right")
    results: dict[str, Any] = {"settings": {k: str(v) for k, v in vars(args).items()}, "pools": {}}
    fps, sr = cfg.visual.fps, cfg.audio.sample_rate
    for name, items in pools.items():
        cache = FeatureCache.build(items, spec, args.cache, args.workers)
        kept = [i for i in items if i.id not in cache.skipped]
        envelopes = [
            item_events(
                np.asarray(cache.frames(i.id)),
                cache.audio(i.id),
                fps,
                sr,
                cache.changes(i.id),
                cache.region_changes(i.id),
                cache.motion(i.id),
                cache.halves(i.id),
            )
            for i in kept
        ]
        eligible = [
            k
            for k, i in enumerate(kept)
            if shares_an_event(i.meta)
            and (name != "val" or i.split == "val")
            and len(envelopes[k]["audio"])
            and len(envelopes[k]["visual"])
        ]
        rng = np.random.default_rng(0)
        if len(eligible) > args.max_queries:
            eligible = sorted(rng.choice(eligible, args.max_queries, replace=False).tolist())
        r = measure(envelopes, eligible)
        results["pools"][name] = {
            "clips": len(kept),
            "queries": len(eligible),
            "skipped": cache.skipped,
            **r,
        }
        for d in ("audio→video", "video→audio"):
            cells = [f"{r[f'{d} {m}']['R@1']:.3f} / {r[f'{d} {m}']['R@10']:.3f}" for m in methods]
            table.add_row(name, str(len(kept)), str(len(eligible)), d, *cells)
    Console().print(table)
    write_result("bench_crossbands", results)
    return results


if __name__ == "__main__":
    main()
