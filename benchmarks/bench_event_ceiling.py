"""How far *when* can go: a piece of one modality matched to the other by its true event times.

    python -m benchmarks.bench_event_ceiling --pool test=data/bench-synthav/manifest.jsonl#test \
        [--pool foreign=data/foreign-1000/manifest.jsonl] [--pieces 1.5,2.5,4] [--queries 200]

A search by sound among pictures (or by footage among sounds) can only tell clips apart by what
both sides carry: when their shared sources' events happen, and what those sources are. This asks
what a *perfect* encoder of that would reach, from the corpus's metadata (SynthAV's `meta`, which
the foreign corpus shares): every clip's train of events — the events of the sources it both
shows and sounds (`role: main`), at the picture's frame grid (a picture knows an event to a frame,
and its sound starts within one) — and each query a piece of its clip's train cut at a random frame
(as `training.evaluate.cut_excerpts` cuts footage), correlated with every clip's train at every
placement. Generous on purpose: an offscreen sound and a silent glyph are left out of both sides,
and the piece lies on its clip's own frame grid.

A clip is found first when no other clip's best placement matches as well; a clip that matches
exactly as well (the same pattern of events somewhere) is a tie, and a perfect encoder can only
guess among ties: R@1 counts 1 / (1 + ties), the expectation of that guess. Two levels: the
timing alone, and the timing with every attribute both sides show (each shared source's kind and
size: a small bell rings higher than a large one), a candidate showing other sources left out.

A cross-modal R@1 target above this ceiling cannot be met by any model of the media: two or three
events of a slow source in a short piece occur, to the frame, in many other clips.

With `--ckpt`, the same pieces again with a real envelope on one side or both — the product's
sound-onset envelope (`models.events.sound_events`) and the checkpoint's picture envelope
(`TrimodalModel.picture_envelope`, its learned network where it has one), decoded as the model
decodes — so a shortfall splits into what each side's envelope loses and what the "what" channel
(kind and size, told apart perfectly here) would give back:

    python -m benchmarks.bench_event_ceiling --pool test=data/bench-plain/manifest.jsonl#test \
        --ckpt data/bq-base/single-stage/best --cache data/bq-base/cache
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from benchmarks._common import write_result
from benchmarks.bench_events import event_bins
from training.datasets import ManifestItem, load_manifest

# The piece lengths of the excerpt protocol (`bench_timing`), and "whole" for full clips.
PIECES = (1.5, 2.5, 4.0)


def event_train(meta: dict[str, Any], fps: float) -> np.ndarray:
    """(bins,) 1 in each frame interval where a source the clip both shows and sounds has an
    event (`bench_events.event_bins`); bins = the clip's duration at `fps`."""
    return event_bins(meta, fps, round(float(meta.get("duration_s", 0.0)) * fps))


def shown_and_heard(meta: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """The (kind, size) of every source the clip both shows and sounds, sorted."""
    return tuple(
        sorted(
            (str(s.get("kind")), str(s.get("size")))
            for s in meta.get("sources", ())
            if s.get("role") == "main"
        )
    )


def _best_placements(piece: np.ndarray, trains: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """(N,) each train's best correlation with `piece` over every placement inside it (`trains`
    zero-padded to one length, each `lengths` long; a train shorter than the piece: -inf)."""
    w = len(piece)
    windows = np.lib.stride_tricks.sliding_window_view(trains, w, axis=1)  # (N, P, w)
    centred = windows - windows.mean(-1, keepdims=True)
    spread = windows.std(-1)
    q = (piece - piece.mean()) / piece.std()
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = (centred * q).mean(-1) / spread
    inside = np.arange(windows.shape[1])[None, :] + w <= lengths[:, None]
    corr = np.where((spread > 0) & inside, corr, -np.inf)
    return corr.max(1)


def _padded(rows: Sequence[np.ndarray], length: int) -> np.ndarray:
    out = np.zeros((len(rows), length), np.float32)
    for row, r in zip(out, rows, strict=True):
        row[: min(length, len(r))] = r[:length]
    return out


def ceiling(
    items: Sequence[ManifestItem],
    seconds: float | None,
    queries: int,
    seed: int = 0,
    fps: float = 12.0,
    query_side: Sequence[np.ndarray] | None = None,
    target_side: Sequence[np.ndarray] | None = None,
) -> dict[str, float | int]:
    """Expected R@1 of a perfect encoder of event timing (and of timing with the shared sources'
    kind and size) for pieces of `seconds` (None: whole clips) cut from up to `queries` clips that
    share an eventful source and are long enough, among all `items`, on a grid of `fps` bins a
    second (the model's frame rate). `query_side` / `target_side`: one envelope per item on the
    same grid (a real encoder's) to cut the pieces from / to search, instead of the true events;
    the clips, pieces and placements are the same either way (chosen from the true events)."""
    metas = [i.meta for i in items]
    if not metas or any(not m for m in metas):
        raise ValueError("every item needs SynthAV metadata (meta: sources, events, duration)")
    for side in (query_side, target_side):
        if side is not None and len(side) != len(items):
            raise ValueError(f"an envelope per item: {len(side)} for {len(items)} items")
    raw = [event_train(m, fps) for m in metas]
    lengths = np.array([len(t) for t in raw])
    trains = _padded(raw, int(lengths.max()))
    asked = trains if query_side is None else _padded(query_side, trains.shape[1])
    searched = trains if target_side is None else _padded(target_side, trains.shape[1])
    labels = [shown_and_heard(m) for m in metas]
    rng = np.random.default_rng(seed)
    eligible = [k for k, m in enumerate(metas) if not m.get("misaligned") and trains[k].any()]
    if seconds is not None:
        w = round(seconds * fps)
        if w < 2:
            raise ValueError(f"a piece of {seconds} s is under two bins at {fps} fps")
        eligible = [k for k in eligible if lengths[k] >= w]
    if queries < len(eligible):
        eligible = sorted(rng.choice(eligible, queries, replace=False).tolist())
    timing, attributes, events, flat = [], [], [], 0
    for k in eligible:
        if seconds is None:
            start, span = 0, int(lengths[k])
        else:
            start, span = int(rng.integers(0, lengths[k] - w + 1)), w
        truth_piece = trains[k, start : start + span]
        piece = asked[k, start : start + span]
        if truth_piece.std() == 0 or piece.std() == 0:  # no event in the piece: nothing to match
            flat += 1
            timing.append(0.0)
            attributes.append(0.0)
            continue
        events.append(int(truth_piece.sum()))
        best = _best_placements(piece, searched, lengths)
        truth = best[k]
        others = np.delete(np.arange(len(trains)), k)
        ahead = best[others] > truth + 1e-6
        tied = np.abs(best[others] - truth) <= 1e-6
        same = np.array([labels[o] == labels[k] for o in others])
        timing.append(0.0 if ahead.any() else 1.0 / (1 + int(tied.sum())))
        attributes.append(0.0 if (ahead & same).any() else 1.0 / (1 + int((tied & same).sum())))
    return {
        "R@1 timing": round(float(np.mean(timing)), 4),
        "R@1 timing + kind and size": round(float(np.mean(attributes)), 4),
        "queries": len(timing),
        "pool": len(trains),
        "pieces without an event": flat,
        "events per piece (median)": float(np.median(events)) if events else 0.0,
    }


# Which envelope each side of a pairing uses with `--ckpt`: "true" (the metadata's events),
# "sound" (the product's onset envelope) or "picture" (the checkpoint's); query → target.
PAIRINGS = (
    ("sound", "true"),
    ("true", "picture"),
    ("sound", "picture"),
    ("picture", "true"),
    ("true", "sound"),
    ("picture", "sound"),
)


def model_envelopes(
    items: Sequence[ManifestItem], ckpt: Path, cache_root: Path, workers: int | None
) -> tuple[dict[str, list[np.ndarray]], float, dict[str, str]]:
    """Each item's sound-onset envelope and the checkpoint's picture envelope at its frame rate
    (one bin a frame), decoded as the model decodes; an item the decoder refused gets empty
    envelopes (it cannot be found), with its reason."""
    from models.events import sound_events
    from models.model import TrimodalModel
    from training.cache import DecodeSpec, FeatureCache

    model = TrimodalModel.load(ckpt)
    fps, sr = model.cfg.visual.fps, model.cfg.audio.sample_rate
    cache = FeatureCache.build(items, DecodeSpec.for_model(model.cfg), cache_root, workers)
    sides: dict[str, list[np.ndarray]] = {"sound": [], "picture": []}
    skipped: dict[str, str] = {}
    for item in items:
        if item.id not in cache.row:
            skipped[item.id] = cache.skipped.get(item.id, "not decoded")
            sides["sound"].append(np.zeros(0, np.float32))
            sides["picture"].append(np.zeros(0, np.float32))
            continue
        i = item.id
        measures = (cache.changes(i), cache.region_changes(i), cache.motion(i), cache.halves(i))
        sides["sound"].append(sound_events(cache.audio(i), sr, fps))
        sides["picture"].append(model.picture_envelope(cache.frames(i), *measures))
    return sides, fps, skipped


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pool", action="append", required=True, help="NAME=MANIFEST[#SPLIT]")
    p.add_argument("--pieces", default=",".join(f"{s:g}" for s in PIECES))
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fps", type=float, default=12.0, help="the grid (the model's frame rate)")
    p.add_argument(
        "--ckpt",
        type=Path,
        default=None,
        help="also pair each side's real envelope (the sound's onsets, this checkpoint's "
        "picture envelope) with the other side's true events or real envelope; the grid is "
        "then the checkpoint's frame rate",
    )
    p.add_argument("--cache", type=Path, default=Path("data/bench-events-cache"))
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--tag", default="")
    args = p.parse_args(argv)
    lengths: list[float | None] = [float(s) for s in args.pieces.split(",") if s] + [None]
    results: dict[str, Any] = {
        "queries": args.queries,
        "seed": args.seed,
        "fps": args.fps,
        "pools": {},
    }
    if args.ckpt is not None:
        results["ckpt"] = str(args.ckpt)
    table = Table(title="cross-modal R@1 of a perfect encoder of event timing (ties guessed)")
    for col in ("pool", "piece", "query → target", "events (median)", "timing", "+ kind, size"):
        table.add_column(col, justify="left" if col in ("pool", "query → target") else "right")
    for spec in args.pool:
        name, _, where = spec.partition("=")
        path, _, split = where.partition("#")
        items = load_manifest(Path(path), [split] if split else None)
        fps, sides = args.fps, None
        pool: dict[str, Any] = {"manifest": where, "items": len(items)}
        if args.ckpt is not None:
            sides, fps, pool["skipped"] = model_envelopes(
                items, args.ckpt, args.cache, args.workers
            )
            results["fps"] = fps
        pairings = [("true", "true")] + (list(PAIRINGS) if sides else [])
        rows: dict[str, Any] = {}
        for seconds in lengths:
            key = "whole" if seconds is None else f"{seconds:g}s"
            for asked, searched in pairings:
                m = ceiling(
                    items,
                    seconds,
                    args.queries,
                    args.seed,
                    fps,
                    None if sides is None or asked == "true" else sides[asked],
                    None if sides is None or searched == "true" else sides[searched],
                )
                label = "perfect" if asked == searched == "true" else f"{asked} → {searched}"
                rows[key if label == "perfect" else f"{key} {label}"] = m
                table.add_row(
                    name,
                    key,
                    label,
                    f"{m['events per piece (median)']:g}",
                    f"{m['R@1 timing']:.3f}",
                    f"{m['R@1 timing + kind and size']:.3f}",
                )
        results["pools"][name] = {**pool, "lengths": rows}
    Console(width=130).print(table)
    write_result("bench_event_ceiling" + (f"-{args.tag}" if args.tag else ""), results)
    return results


if __name__ == "__main__":
    main()
