"""What timing the media carry: sound and picture aligned by their events, with nothing learned.

    python -m benchmarks.bench_events --pool test=data/bench-synthav/manifest.jsonl#test \
        --pool foreign=data/foreign-1000/manifest.jsonl \
        --pool robust=data/robust-test/manifest.jsonl

In SynthAV every clip has its own event times, shared by picture and sound. This measures how much
of that a frame rate keeps, before any model: each clip is decoded by the product's decoder
(`training.cache`, stretched to 64×64, 16 kHz) at each `--fps`, and reduced to the product's two
envelopes (`models.events`: onset strength of the sound, change of the picture, one bin per frame
or `--grid` bins a second, each minus its 5-bin moving average and standardised). A sound is
scored against a picture by their best correlation over lags of -L..+L
bins, for each `--max-lag` L: a frame shows an event up to a frame after it sounds, and encoders
shift sound further (AAC priming, frame-rate conversion), so the tolerance is reported, not
fixed. Audio→video and video→audio R@1 / R@10 over the whole pool and over the clips whose sound
and picture share an event source (a seen and heard source that has events; an engine has none),
with that share.

It answered the time-aware matching issue's "choose frame sampling by measurement", and led to the
envelopes becoming a product path (`index.search` scans and weighs them). The envelope rate and
detrending were fixed on the own val split, never on a test pool.

Beside the retrieval figures, each envelope's **fidelity**: on the shared-event clips, its best
correlation (same lags) with the clip's true event times from the corpus metadata (one bin per
event of a main source), median over the clips and per source of the clips with one timed main
source. It says which half loses the timing on media made another way (a `--variety` val split
of the own generator: the picture's change envelope 0.72 → 0.37 where the sound's held 0.83 →
0.78; docs/quality-log.md "What did not work"), so a new envelope can be chosen there, on val.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from benchmarks._common import write_result
from benchmarks.bench_quality import other_pools
from models.events import DETREND_BINS, picture_events, sound_events
from models.model import TrimodalModel
from training.cache import DecodeSpec, FeatureCache
from training.evaluate import shares_an_event

SAMPLE_RATE = 16_000
IMAGE_SIZE = 64


def _fixed(x: np.ndarray, length: int) -> np.ndarray:
    """Cut or pad (with zeros: nothing happens) to `length` bins, so a pool is one matrix."""
    out = np.zeros(length, np.float32)
    out[: min(length, len(x))] = x[:length]
    return out


def alignment_scores(sound: np.ndarray, picture: np.ndarray, max_lag: int = 1) -> np.ndarray:
    """(N, T) × (M, T) standardised envelopes → (N, M): best correlation over lags."""
    t = sound.shape[1]
    best = np.full((sound.shape[0], picture.shape[0]), -np.inf, np.float32)
    for lag in range(-max_lag, max_lag + 1):
        shifted = np.roll(picture, lag, axis=1)
        best = np.maximum(best, sound @ shifted.T / t)
    return best


def recall(scores: np.ndarray, subset: np.ndarray | None = None) -> dict[str, float]:
    """Row i's right answer is column i; R@1, R@10 over the rows in `subset` (a tie counts
    against)."""
    right = np.diag(scores)[:, None]
    ranks = (scores > right).sum(1) + ((scores == right).sum(1) - 1)
    if subset is not None:
        ranks = ranks[subset]
    if ranks.size == 0:
        return {"R@1": float("nan"), "R@10": float("nan"), "n": 0}
    return {
        "R@1": float(np.mean(ranks == 0)),
        "R@10": float(np.mean(ranks < 10)),
        "n": int(ranks.size),
    }


def event_bins(meta: dict[str, Any], rate: float, length: int) -> np.ndarray:
    """(length,) 1 in each bin at `rate` where a source the clip both shows and sounds (SynthAV
    metadata: every main source) has an event, else 0."""
    train = np.zeros(length, np.float32)
    for source in meta.get("sources", ()):
        if source.get("role") != "main":
            continue
        for t in source.get("events") or ():
            b = int(np.floor(float(t) * rate + 1e-9))
            if 0 <= b < length:
                train[b] = 1.0
    return train


def event_train(meta: dict[str, Any], rate: float, length: int) -> np.ndarray | None:
    """A clip's true event times (`event_bins`), standardised; None for a clip without any (or
    without metadata)."""
    train = event_bins(meta, rate, length)
    if not train.any() or train.all():
        return None
    return (train - train.mean()) / train.std()


def fidelity(
    envelopes: np.ndarray, trains: np.ndarray, kinds: list[str], max_lag: int
) -> dict[str, Any]:
    """(N, T) standardised envelopes and the clips' event trains → each envelope's best
    correlation with its own clip's train (lags as `alignment_scores`): the median over the
    clips, and per source (clips with one timed main source)."""
    own = np.array(
        [
            alignment_scores(e[None], t[None], max_lag)[0, 0]
            for e, t in zip(envelopes, trains, strict=True)
        ]
    )
    by_source: dict[str, Any] = {}
    for kind in sorted(set(kinds) - {""}):
        picked = own[[k == kind for k in kinds]]
        by_source[kind] = {"clips": int(picked.size), "median": float(np.median(picked))}
    return {"median": float(np.median(own)) if own.size else float("nan"), "by_source": by_source}


def _timed_source(meta: dict[str, Any]) -> str:
    """The kind of a clip's one timed main source ("" for none or several)."""
    kinds = [
        s.get("kind", "")
        for s in meta.get("sources", ())
        if s.get("role") == "main" and s.get("events")
    ]
    return kinds[0] if len(kinds) == 1 else ""


def measure(
    items: list,
    cache: FeatureCache,
    fps: float,
    duration_s: float,
    max_lag: int = 1,
    grid: float | None = None,
    picture_envelope: Callable[..., np.ndarray] | None = None,
) -> dict[str, Any]:
    """`grid`: envelope bins per second (default: one per frame); a coarser grid keeps the
    largest change inside each bin, as a model's time steps would. `picture_envelope`: a
    model's (`TrimodalModel.picture_envelope`, one bin per frame: no `grid`) instead of the
    hand-made change envelope."""
    if picture_envelope is not None and grid is not None and grid != fps:
        raise ValueError("a model's picture envelope has one bin per frame: no --grid with it")
    rate = fps if grid is None else grid
    length = round(duration_s * rate)
    sounds, pictures, shared, skipped = [], [], [], {}
    trains: list[np.ndarray | None] = []
    kinds: list[str] = []
    for item in items:
        if item.id not in cache.row:
            skipped[item.id] = cache.skipped.get(item.id, "not decoded")
            continue
        try:
            sounds.append(_fixed(sound_events(cache.audio(item.id), SAMPLE_RATE, rate), length))
            frames, changes = cache.frames(item.id), cache.changes(item.id)
            picture = (
                picture_envelope(
                    frames,
                    changes,
                    cache.region_changes(item.id),
                    cache.motion(item.id),
                    cache.halves(item.id),
                )
                if picture_envelope is not None
                else picture_events(frames, fps, rate, changes)
            )
            pictures.append(_fixed(picture, length))
        except ValueError as e:
            skipped[item.id] = str(e)
            continue
        shared.append(shares_an_event(item.meta))
        trains.append(event_train(item.meta, rate, length) if shared[-1] else None)
        kinds.append(_timed_source(item.meta))
    s, p, sh = np.stack(sounds), np.stack(pictures), np.array(shared)
    scores = alignment_scores(s, p, max_lag)
    timed = [i for i, t in enumerate(trains) if t is not None]
    train_rows = np.stack([trains[i] for i in timed]) if timed else np.zeros((0, length))
    picked = [kinds[i] for i in timed]
    return {
        "fps": fps,
        "grid_per_s": rate,
        "max_lag_bins": max_lag,
        "pool": len(sounds),
        "shared_share": float(sh.mean()),
        "audio→video": {"all": recall(scores), "shared": recall(scores, sh)},
        "video→audio": {"all": recall(scores.T), "shared": recall(scores.T, sh)},
        "fidelity": {
            "clips": len(timed),
            "sound": fidelity(s[timed], train_rows, picked, max_lag),
            "picture": fidelity(p[timed], train_rows, picked, max_lag),
        },
        "skipped": skipped,
    }


def fidelity_table(pools: dict[str, dict[str, Any]]) -> Table:
    """Each pool and setting's envelope fidelity: overall, then per source."""
    table = Table(title="envelope fidelity: median correlation with the true event times")
    for col in ("pool", "setting", "clips", "sound", "picture", "picture by source"):
        table.add_column(col, justify="left" if col in ("pool", "setting") else "right")
    for name, by_setting in pools.items():
        for key, m in by_setting.items():
            f = m["fidelity"]
            sources = " ".join(
                f"{kind} {v['median']:.2f}" for kind, v in f["picture"]["by_source"].items()
            )
            table.add_row(
                name,
                key,
                str(f["clips"]),
                f"{f['sound']['median']:.2f}",
                f"{f['picture']['median']:.2f}",
                sources,
            )
    return table


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pool", action="append", default=[], metavar="NAME=MANIFEST", required=True)
    p.add_argument("--fps", type=float, nargs="+", default=[8.0, 12.0])
    p.add_argument("--max-lag", type=int, nargs="+", default=[1, 2], help="lag tolerances (bins)")
    p.add_argument(
        "--grid", type=float, nargs="+", default=[0.0], help="bins per second (0: one per frame)"
    )
    p.add_argument("--duration", type=float, default=6.0, help="seconds of each clip compared")
    p.add_argument("--cache", type=Path, default=Path("data/bench-events-cache"))
    p.add_argument("--workers", type=int, default=None)
    p.add_argument(
        "--ckpt",
        type=Path,
        default=None,
        help="also measure this checkpoint's picture envelope (`TrimodalModel.picture_envelope`: "
        "its trained event network, if it has one) at its own frame rate, beside the hand-made "
        "one",
    )
    p.add_argument("--tag", default="")
    args = p.parse_args(argv)
    model = TrimodalModel.load(args.ckpt) if args.ckpt is not None else None
    if model is not None and (model.cfg.visual.image_size, model.cfg.visual.fit) != (
        IMAGE_SIZE,
        "stretch",
    ):
        raise SystemExit(
            f"--ckpt: this benchmark decodes {IMAGE_SIZE}×{IMAGE_SIZE} stretched pictures; the "
            f"checkpoint reads {model.cfg.visual.image_size}×{model.cfg.visual.image_size} "
            f"{model.cfg.visual.fit}"
        )

    results: dict[str, Any] = {"settings": {"detrend_bins": DETREND_BINS}}
    results["pools"] = {}
    table = Table(title="event envelopes, nothing learned: R@1 / R@10 (shared-event clips)")
    for col in ("pool", "fps", "bins/s", "lag ≤", "clips", "shared", "audio→video", "video→audio"):
        table.add_column(col, justify="left" if col == "pool" else "right")
    for name, items in other_pools(args.pool).items():
        by_fps = {}
        for fps in args.fps:
            spec = DecodeSpec(fps, IMAGE_SIZE, SAMPLE_RATE, "stretch")
            cache = FeatureCache.build(items, spec, args.cache, args.workers)
            for grid, lag in itertools.product(args.grid, args.max_lag):
                key = f"{fps:g}fps-lag{lag}" + (f"-grid{grid:g}" if grid else "")
                settings = {key: measure(items, cache, fps, args.duration, lag, grid or None)}
                if model is not None and not grid and fps == model.cfg.visual.fps:
                    settings[key + "-model"] = measure(
                        items, cache, fps, args.duration, lag, None, model.picture_envelope
                    )
                for setting, m in settings.items():
                    by_fps[setting] = m
                    cells = [
                        f"{m[d]['all']['R@1']:.3f} / {m[d]['all']['R@10']:.3f} "
                        f"({m[d]['shared']['R@1']:.3f} / {m[d]['shared']['R@10']:.3f})"
                        for d in ("audio→video", "video→audio")
                    ]
                    table.add_row(
                        name + (" (model)" if setting.endswith("-model") else ""),
                        f"{fps:g}",
                        f"{m['grid_per_s']:g}",
                        f"{lag / m['grid_per_s']:.2f} s",
                        str(m["pool"]),
                        f"{m['shared_share']:.2f}",
                        *cells,
                    )
        results["pools"][name] = by_fps
    Console(width=160).print(table)
    Console(width=160).print(fidelity_table(results["pools"]))
    write_result("bench_events" + (f"-{args.tag}" if args.tag else ""), results)
    return results


if __name__ == "__main__":
    main()
