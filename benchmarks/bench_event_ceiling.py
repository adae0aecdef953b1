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


def ceiling(
    items: Sequence[ManifestItem],
    seconds: float | None,
    queries: int,
    seed: int = 0,
    fps: float = 12.0,
) -> dict[str, float | int]:
    """Expected R@1 of a perfect encoder of event timing (and of timing with the shared sources'
    kind and size) for pieces of `seconds` (None: whole clips) cut from up to `queries` clips that
    share an eventful source and are long enough, among all `items`, on a grid of `fps` bins a
    second (the model's frame rate)."""
    metas = [i.meta for i in items]
    if not metas or any(not m for m in metas):
        raise ValueError("every item needs SynthAV metadata (meta: sources, events, duration)")
    raw = [event_train(m, fps) for m in metas]
    lengths = np.array([len(t) for t in raw])
    trains = np.zeros((len(raw), int(lengths.max())), np.float32)
    for row, t in zip(trains, raw, strict=True):
        row[: len(t)] = t
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
            piece = trains[k, : lengths[k]]
        else:
            start = int(rng.integers(0, lengths[k] - w + 1))
            piece = trains[k, start : start + w]
        if piece.std() == 0:  # no event in the piece (or one in every bin): nothing to match
            flat += 1
            timing.append(0.0)
            attributes.append(0.0)
            continue
        events.append(int(piece.sum()))
        best = _best_placements(piece, trains, lengths)
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


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pool", action="append", required=True, help="NAME=MANIFEST[#SPLIT]")
    p.add_argument("--pieces", default=",".join(f"{s:g}" for s in PIECES))
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fps", type=float, default=12.0, help="the grid (the model's frame rate)")
    p.add_argument("--tag", default="")
    args = p.parse_args(argv)
    lengths: list[float | None] = [float(s) for s in args.pieces.split(",") if s] + [None]
    results: dict[str, Any] = {
        "queries": args.queries,
        "seed": args.seed,
        "fps": args.fps,
        "pools": {},
    }
    table = Table(title="cross-modal R@1 of a perfect encoder of event timing (ties guessed)")
    for col in ("pool", "piece", "events (median)", "timing", "timing + kind, size"):
        table.add_column(col, justify="left" if col == "pool" else "right")
    for spec in args.pool:
        name, _, where = spec.partition("=")
        path, _, split = where.partition("#")
        items = load_manifest(Path(path), [split] if split else None)
        rows: dict[str, Any] = {}
        for seconds in lengths:
            key = "whole" if seconds is None else f"{seconds:g}s"
            rows[key] = m = ceiling(items, seconds, args.queries, args.seed, args.fps)
            table.add_row(
                name,
                key,
                f"{m['events per piece (median)']:g}",
                f"{m['R@1 timing']:.3f}",
                f"{m['R@1 timing + kind and size']:.3f}",
            )
        results["pools"][name] = {"manifest": where, "items": len(items), "lengths": rows}
    Console(width=120).print(table)
    write_result("bench_event_ceiling" + (f"-{args.tag}" if args.tag else ""), results)
    return results


if __name__ == "__main__":
    main()
