"""Time-aware matching: whole clips and excerpts across sound and picture, with a fingerprint peer.

    python -m benchmarks.bench_timing --ckpt RUN/best \
        --pool test=data/bench-synthav/manifest.jsonl#test \
        --pool foreign=data/foreign-1000/manifest.jsonl \
        --pool robust=data/robust-test/manifest.jsonl

For each pool (every item is searched against all the others, as in `bench_quality`):
- **whole clips**, audio→video and video→audio, pooled (first pass only), hybrid (the pooled top
  `--rerank` re-ranked by sequence distance) and service (what the checkpoint's recorded search
  policy does by default), over all clips, the clips whose sound and picture share an event source
  (only those can be told apart by *when* things happen: an engine has no events, a misaligned
  clip's sound is another clip's), the others, and the timing twins;
- **excerpts** of `--seconds` (1.5 / 2.5 / 4 s) cut at a random offset from each clip (footage at
  a frame, sound at any sample, as a user cuts them), searched in four directions (sound →
  audio, sound → video, footage → video, footage → audio), R@1 / R@10 and the start error of
  the segment returned for hits at rank 1;
- a **Chromaprint** row (`fpcalc -raw`, Debian `libchromaprint-tools`; a peer, not a dependency
  of the product) for sound → audio on the *same* excerpts: each pool clip fingerprinted whole,
  each excerpt fingerprinted alone and slid along it, the lowest bit-error rate wins, the best
  offset is the segment start. Chromaprint needs about 2.7 s of sound before its first item, so a
  shorter excerpt has no fingerprint at all (counted as a miss).
Pool clips that fail to decode are skipped and listed with their reason.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import wave as wavfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch import Tensor

from benchmarks._common import write_result
from benchmarks.bench_quality import other_pools
from models.encoders import Embeddings
from models.events import fused_agreement, sound_envelopes
from models.model import TrimodalModel
from models.policy import DIRECTIONS, SearchPolicy
from training.cache import DecodeSpec, FeatureCache
from training.datasets import load_manifest
from training.evaluate import (
    EXCERPT_DIRECTIONS,
    Pool,
    _batched,
    _direction,
    agreement_parts,
    clip_seconds,
    clip_subsets_of,
    cut_excerpts,
    embed_pool,
    excerpt_report,
    take_rows,
)
from training.metrics import roc_auc, summarise

# Chromaprint's default algorithm: 11,025 Hz, one item per 4096 / 3 samples.
CHROMAPRINT_ITEM_S = 4096 / 3 / 11_025
FULL_DIRECTIONS = ("audio→video", "video→audio")


# --------------------------------------------------------------------------- Chromaprint


def _write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wavfile.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())


def fingerprint(samples: np.ndarray, rate: int, workdir: Path, name: str) -> np.ndarray:
    """Chromaprint's raw fingerprint (uint32 items) of mono samples; empty when the sound is too
    short for one item."""
    path = workdir / f"{name}.wav"
    _write_wav(path, samples, rate)
    try:
        run = subprocess.run(
            ["fpcalc", "-raw", "-plain", "-length", "0", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        path.unlink(missing_ok=True)
    text = run.stdout.strip()
    if not text:
        return np.zeros(0, np.uint32)
    return np.array([int(x) for x in text.split(",")], dtype=np.uint32)


def fingerprints(waves: list[np.ndarray], rate: int, workers: int = 4) -> list[np.ndarray]:
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(workers) as ex:
        return list(
            ex.map(lambda iw: fingerprint(iw[1], rate, Path(tmp), str(iw[0])), enumerate(waves))
        )


def best_alignment(query: np.ndarray, targets: np.ndarray, lengths: np.ndarray):
    """Slide `query` (L,) along every target (N, Lmax; `lengths` valid items each): the lowest
    bit-error rate per target over every offset where the query fits whole, and that offset.
    A target shorter than the query is compared over its own length."""
    n, lmax = targets.shape
    lq = len(query)
    span = min(lq, lmax)
    q = query[:span]
    offsets = max(1, lmax - span + 1)
    padded = np.pad(targets, ((0, 0), (0, span)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, span, axis=1)[:, :offsets]
    bits = np.bitwise_count(windows ^ q[None, None, :]).astype(np.float32)  # (N, O, span)
    valid_items = (np.arange(offsets)[:, None] + np.arange(span)[None, :])[None] < lengths[
        :, None, None
    ]  # (N, O, span)
    counted = valid_items.sum(-1)
    ber = np.where(counted > 0, (bits * valid_items).sum(-1) / (32 * counted.clip(min=1)), 1.0)
    # An offset must keep the whole query inside the target, unless the target is too short.
    fits = (np.arange(offsets)[None, :] + span) <= np.maximum(lengths[:, None], span)
    ber = np.where(fits, ber, 1.0)
    best = ber.argmin(1)
    return ber[np.arange(n), best], best


def chromaprint_report(
    pool_waves: list[np.ndarray],
    excerpt_waves: list[np.ndarray],
    rows: list[int],
    starts: list[float],
    rate: int,
) -> dict[str, Any]:
    """Sound → audio by Chromaprint on the given excerpts, against whole pool clips."""
    prints = fingerprints(pool_waves, rate)
    lengths = np.array([len(p) for p in prints])
    targets = np.zeros((len(prints), max(1, int(lengths.max()))), np.uint32)
    for i, fp in enumerate(prints):
        targets[i, : len(fp)] = fp
    queries = fingerprints(excerpt_waves, rate)
    ranks, errors, empty = [], [], 0
    for q, row, start in zip(queries, rows, starts, strict=True):
        if len(q) == 0:
            empty += 1
            ranks.append(len(prints))  # no fingerprint: nothing found
            continue
        ber, offset = best_alignment(q, targets, lengths)
        ber = np.where(lengths > 0, ber, 1.0)
        rank = int((ber <= ber[row]).sum())  # ties count against
        ranks.append(rank)
        if rank == 1:
            errors.append(abs(float(offset[row]) * CHROMAPRINT_ITEM_S - start))
    err = np.array(errors)
    return {
        **summarise(torch.tensor(ranks)),
        "no_fingerprint": empty,
        "start_error_s": {
            "median": float(np.median(err)) if err.size else float("nan"),
            "within_0.25s": float((err <= 0.25).mean()) if err.size else 0.0,
        },
    }


# --------------------------------------------------------------------------- agreement


def _agreement_envelopes(
    model: TrimodalModel, pool: Pool
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each row's sound and picture envelopes as an index scores its agreement by them
    (`index.build`): the sound's bands where the checkpoint's policy chose the best band, the
    picture's change and motion envelopes where the policy was measured with them."""
    policy = model.search_policy
    by_bands = policy.agreement_bands
    sounds = pool.events["audio_bands" if by_bands else "audio"]
    pictures = pool.events["visual_kinds" if by_bands and policy.picture_motion else "visual"]
    return sounds, pictures


def _agreements(
    model: TrimodalModel,
    audio: Embeddings,
    visual: Embeddings,
    sounds: list[np.ndarray],
    pictures: list[np.ndarray],
) -> list[tuple[float, float]]:
    """(score, offset s) per clip as an index stores them: the steps' agreement fused with the
    envelopes' by the checkpoint's recorded weight (none recorded: the steps' alone)."""
    weight = model.search_policy.agreement_event_weight
    return [
        fused_agreement(a.score, a.offset_s, None if weight is None else e, weight or 0.0)
        for a, e in agreement_parts(model, audio, visual, sounds, pictures)
    ]


@torch.inference_mode()
def agreement_report(
    model: TrimodalModel,
    ids: list[str],
    cache: FeatureCache,
    pool,
    shared: Tensor | None,
    seed: int = 0,
) -> dict[str, Any]:
    """Agreement of each clip's own sound and picture against (a) the same picture with another
    clip's sound (ROC AUC: the own pairs should score higher), and (b) its own sound shifted by
    ±0.25–1.0 s (the error of the estimated offset)."""
    rng = np.random.default_rng(seed)
    rows = (pool.has_audio & pool.has_video).nonzero().flatten()
    if len(rows) < 2:
        return {}
    by_bands = model.search_policy.agreement_bands
    sounds, pictures = _agreement_envelopes(model, pool)
    own_pictures = [pictures[r] for r in rows.tolist()]
    own_sound, picture = take_rows(pool.audio, rows), take_rows(pool.visual, rows)
    own = _agreements(model, own_sound, picture, [sounds[r] for r in rows.tolist()], own_pictures)
    other = rows[
        torch.from_numpy(np.roll(np.arange(len(rows)), 1 + int(rng.integers(len(rows) - 1))))
    ]
    swapped = _agreements(
        model,
        take_rows(pool.audio, other),
        picture,
        [sounds[r] for r in other.tolist()],
        own_pictures,
    )
    score = np.array([a for a, _ in own])
    score_swapped = np.array([a for a, _ in swapped])
    sr = model.cfg.audio.sample_rate
    shifts = rng.uniform(0.25, 1.0, len(rows)) * rng.choice([-1.0, 1.0], len(rows))
    waves = []
    for r, shift in zip(rows.tolist(), shifts, strict=True):
        wave = np.asarray(cache.audio(ids[r]), np.float32)
        n = round(abs(shift) * sr)
        pad = np.zeros(n, np.float32)
        # late: silence first, the end cut off; early: the start cut off, silence after
        waves.append(
            np.concatenate([pad, wave])[: len(wave)]
            if shift > 0
            else np.concatenate([wave[n:], pad])
        )
    shifted = _agreements(
        model,
        _batched(lambda w: model.encode_audio(*model.audio_inputs(w)), waves),
        picture,
        [sound_envelopes(w, sr, model.cfg.visual.fps)[1 if by_bands else 0] for w in waves],
        own_pictures,
    )
    error = np.abs(np.array([o for _, o in shifted]) - shifts)
    in_sync = np.abs(np.array([o for _, o in own]))
    sub = shared[rows].numpy() if shared is not None else np.ones(len(rows), bool)
    return {
        "clips": len(rows),
        "swapped_auc": {
            "all": roc_auc(score, score_swapped),
            "shared": roc_auc(score[sub], score_swapped[sub]),
        },
        "shifted_offset_error_s": {
            "median": float(np.median(error)),
            "median_shared": float(np.median(error[sub])) if sub.any() else float("nan"),
            "within_0.1s_shared": float((error[sub] <= 0.1).mean()) if sub.any() else float("nan"),
        },
        "own_offset_s_median_abs": float(np.median(in_sync[sub])) if sub.any() else float("nan"),
    }


def misaligned_report(model: TrimodalModel, items: list, cache: FeatureCache) -> dict[str, Any]:
    """ROC AUC of the agreement score on clips flagged `misaligned` (their sound was taken from
    another clip) against the others: the SynthAV train split's realism flag."""
    by_id = {i.id: i for i in items if i.id in cache.row}
    ids = list(by_id)
    # pictures meet sounds as the checkpoint's policy has them met
    pool = embed_pool(model, cache, ids, picture_halves=model.search_policy.picture_halves)
    rows = (pool.has_audio & pool.has_video).nonzero().flatten()
    # the envelopes an index scores the agreement by (before: the single ones whatever the
    # policy said)
    sounds, pictures = _agreement_envelopes(model, pool)
    agreement = _agreements(
        model,
        take_rows(pool.audio, rows),
        take_rows(pool.visual, rows),
        [sounds[r] for r in rows.tolist()],
        [pictures[r] for r in rows.tolist()],
    )
    score = np.array([a for a, _ in agreement])
    flagged = np.array([bool(by_id[ids[r]].meta.get("misaligned")) for r in rows.tolist()])
    # the misaligned clips are the ones to find: a low score flags them
    return {
        "clips": len(rows),
        "misaligned": int(flagged.sum()),
        "roc_auc": roc_auc(-score[flagged], -score[~flagged]),
    }


# --------------------------------------------------------------------------- the model


def variant_subsets(items: list, shared: torch.Tensor) -> dict[str, torch.Tensor]:
    """The shared-event clips of each re-encoding recipe (the robustness set's meta "variant"),
    as "shared@VARIANT": a clip's picture and sound are in one file, so a whole-clip query and
    its target are of the same recipe, and a recipe that loses events shows as its own row.
    Empty for pools without variants."""
    names = [i.meta.get("variant") for i in items]
    return {
        f"shared@{v}": shared & torch.tensor([n == v for n in names])
        for v in sorted({n for n in names if n})
    }


def rate_subsets(items: list, shared: torch.Tensor) -> dict[str, torch.Tensor]:
    """The shared-event clips of each frame rate (meta "fps"), as "shared@Nfps", for a pool
    whose clips come at several rates and carry no recipe (`variant_subsets` names the rate
    where they do): a rate whose pictures place their events coarsely shows as its own row.
    Empty for a pool at one rate."""
    rates = [i.meta.get("fps") if not i.meta.get("variant") else None for i in items]
    known = sorted({float(r) for r in rates if isinstance(r, (int, float))})
    if len(known) < 2:
        return {}
    return {
        f"shared@{r:g}fps": shared
        & torch.tensor([isinstance(x, (int, float)) and float(x) == r for x in rates])
        for r in known
    }


@torch.inference_mode()
def measure_pool(
    model: TrimodalModel,
    items: list,
    cache: FeatureCache,
    seconds: list[float],
    chromaprint_seconds: list[float],
    rerank_k: int,
    max_queries: int | None = None,
    sequence_offsets: bool = False,
) -> dict[str, Any]:
    """`sequence_offsets`: the audio/video re-rank, whole clips and pieces, takes each
    candidate's cohort offset off its step similarity (`models.cohort`; a measurement: the
    service does not, docs/quality-log.md "What did not work")."""
    offsets_in = frozenset(("audio→video", "video→audio") if sequence_offsets else ())
    by_id = {i.id: i for i in items if i.id in cache.row}
    ids = list(by_id)
    pool = embed_pool(model, cache, ids, picture_halves=model.search_policy.picture_halves)
    subsets = clip_subsets_of([by_id[i] for i in ids])
    if "shared" in subsets:
        subsets["unshared"] = ~subsets["shared"]
        subsets.update(variant_subsets([by_id[i] for i in ids], subsets["shared"]))
        subsets.update(rate_subsets([by_id[i] for i in ids], subsets["shared"]))
    out: dict[str, Any] = {
        "pool": len(ids),
        "skipped": dict(cache.skipped),
        "shared_share": float(subsets["shared"].float().mean()) if "shared" in subsets else None,
        "full": {},
        "excerpts": {},
        "chromaprint": {},
    }
    policy = model.search_policy

    # "hybrid" re-ranks as the service does, with the checkpoint's recorded fusion weights for the
    # direction; hybrid_by_weight also holds the steps alone ("sequence") and each without the
    # event envelopes (what they add).
    def tried(band: SearchPolicy) -> tuple[dict[str, tuple], dict[str, tuple]]:
        weights = {
            d: (None,) if band.rerank_weight.get(d) is None else (band.rerank_weight[d], None)
            for d in DIRECTIONS
        }
        events = {
            d: (0.0,) if not band.event_weight.get(d) else (band.event_weight[d], 0.0)
            for d in DIRECTIONS
        }
        return weights, events

    # whole clips get the defaults of a query as long as they are
    clip_s = clip_seconds(model, pool)
    whole = policy.for_length(clip_s)
    out["full_query_s"] = clip_s
    long_weights, long_events = tried(whole)
    for d in FULL_DIRECTIONS:
        rep = _direction(
            model,
            d,
            by_id,
            pool,
            None,
            subsets,
            rerank_k,
            "interp",
            ("pooled", "hybrid"),
            long_weights[d],
            long_events[d],
            cross_bands=d in whole.cross_bands,
            what_weight=whole.what_weight.get(d, 0.0),
            sequence_offsets=sequence_offsets,
        )
        rep["service"] = rep["hybrid"] if whole.rerank.get(d, False) else rep["pooled"]
        out["full"][d] = rep
    fps, sr = model.cfg.visual.fps, model.cfg.audio.sample_rate
    for s in seconds:
        band = policy.for_length(s)  # the defaults a query this long gets
        weights, events = tried(band)
        rep = excerpt_report(
            model,
            [by_id[i] for i in ids],
            cache,
            s,
            rerank_k=rerank_k,
            pool=pool,
            max_queries=max_queries,
            subsets={k: v for k, v in subsets.items() if k in ("shared", "unshared")},
            weights=weights,
            event_weights=events,
            cross_bands=band.cross_bands,
            what_weight=dict(band.what_weight),
            sequence_offsets=offsets_in,
        )
        for d in EXCERPT_DIRECTIONS:
            if d in rep:
                rep[d]["service"] = (
                    rep[d]["hybrid"] if band.rerank.get(d, False) else rep[d]["pooled"]
                )
        out["excerpts"][f"{s:g}s"] = rep
    out["agreement"] = agreement_report(model, ids, cache, pool, subsets.get("shared"))
    if chromaprint_seconds:
        whole = [np.asarray(cache.audio(i)) for i in ids]
        for s in chromaprint_seconds:
            cut = cut_excerpts(ids, cache, s, fps, sr, max_queries=max_queries)  # the model's
            out["chromaprint"][f"{s:g}s"] = chromaprint_report(
                whole, cut.waves, cut.rows, cut.sound_starts, sr
            )
    return out


def _cell(m: dict[str, Any] | None) -> str:
    return "-" if not m else f"{m['R@1']:.3f} / {m['R@10']:.3f}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", type=Path, required=True)
    p.add_argument("--pool", action="append", default=[], metavar="NAME=MANIFEST", required=True)
    p.add_argument("--seconds", type=float, nargs="+", default=[1.5, 2.5, 4.0])
    p.add_argument(
        "--chromaprint",
        type=float,
        nargs="*",
        default=[2.5, 4.0],
        help="excerpt lengths to run Chromaprint on (needs fpcalc; none: skip the peer)",
    )
    p.add_argument(
        "--misaligned",
        type=Path,
        default=None,
        metavar="MANIFEST",
        help="a SynthAV manifest whose train split flags misaligned clips: the agreement "
        "score's ROC AUC on them",
    )
    p.add_argument("--rerank", type=int, default=100)
    p.add_argument(
        "--max-queries",
        type=int,
        default=None,
        help="excerpts from this many clips per pool (a fixed random subset; every clip is "
        "still a target)",
    )
    p.add_argument(
        "--cache", type=Path, default=None, help="feature cache (default: beside --ckpt)"
    )
    p.add_argument("--workers", type=int, default=None)
    p.add_argument(
        "--sequence-offsets",
        action="store_true",
        help="take each candidate's cohort offset off its step similarity in the audio/video "
        "re-rank, whole clips and pieces (models.cohort; a measurement: the service does not)",
    )
    p.add_argument("--tag", default="")
    args = p.parse_args(argv)
    if args.chromaprint and shutil.which("fpcalc") is None:
        raise SystemExit(
            "fpcalc not found: apt-get install libchromaprint-tools, or pass --chromaprint with "
            "no lengths to skip the peer"
        )

    model = TrimodalModel.load(args.ckpt)
    spec = DecodeSpec.for_model(model.cfg)
    cache_root = args.cache or args.ckpt.parent / "timing-cache"
    results: dict[str, Any] = {
        "ckpt": str(args.ckpt),
        "search_policy": model.search_policy.to_dict(),
        "settings": {
            "rerank_k": args.rerank,
            "fps": model.cfg.visual.fps,
            "sequence_offsets": args.sequence_offsets,
        },
        "pools": {},
    }
    full = Table(title="whole clips: R@1 / R@10 (pooled | hybrid | service)")
    for col in ("pool", "direction", "clips", "all", "shared events", "no shared event", "twins"):
        full.add_column(col, justify="left" if col in ("pool", "direction") else "right")
    ex = Table(title="excerpts: R@1 / R@10 as the service answers (segment start error, median)")
    for col in ("pool", "length", "direction", "all", "shared events", "start error", "≤ 0.25 s"):
        ex.add_column(col, justify="left" if col in ("pool", "length", "direction") else "right")
    for name, items in other_pools(args.pool).items():
        cache = FeatureCache.build(items, spec, cache_root, args.workers)
        r = measure_pool(
            model,
            items,
            cache,
            args.seconds,
            args.chromaprint,
            args.rerank,
            args.max_queries,
            args.sequence_offsets,
        )
        results["pools"][name] = r
        for d, rep in r["full"].items():
            row = []
            for part in ("all", "shared", "unshared", "twins"):
                cells = [_cell(rep[m].get(part)) for m in ("pooled", "hybrid", "service")]
                row.append(" | ".join(cells))
            full.add_row(name, d, str(rep["service"]["all"]["n"]), *row)
        for length, rep in r["excerpts"].items():
            for d in EXCERPT_DIRECTIONS:
                if d not in rep:
                    continue
                m = rep[d]
                shared = m.get("shared", {}).get(
                    "hybrid" if m["service"] is m["hybrid"] else "pooled"
                )
                err = m["start_error_s"]
                ex.add_row(
                    name,
                    length,
                    d,
                    _cell(m["service"]),
                    _cell(shared),
                    f"{err['median']:.2f} s",
                    f"{err['within_0.25s']:.2f}",
                )
            cp = r["chromaprint"].get(length)
            if cp:
                err = cp["start_error_s"]
                ex.add_row(
                    name,
                    length,
                    "audio→audio (Chromaprint)",
                    _cell(cp),
                    "-",
                    f"{err['median']:.2f} s",
                    f"{err['within_0.25s']:.2f}",
                )
    agree = Table(title="audio–visual agreement (the clip's own sound and picture)")
    for col in ("pool", "clips", "swapped sound AUC", "shifted ±0.25–1 s: offset error", "≤ 0.1 s"):
        agree.add_column(col, justify="left" if col == "pool" else "right")
    for name, r in results["pools"].items():
        a = r.get("agreement")
        if a:
            err = a["shifted_offset_error_s"]
            agree.add_row(
                name,
                str(a["clips"]),
                f"{a['swapped_auc']['all']:.3f} (shared {a['swapped_auc']['shared']:.3f})",
                f"{err['median']:.3f} s (shared {err['median_shared']:.3f} s)",
                f"{err['within_0.1s_shared']:.2f}",
            )
    if args.misaligned is not None:
        train = [i for i in load_manifest(args.misaligned) if i.split == "train"]
        cache = FeatureCache.build(train, spec, cache_root, args.workers)
        mis = misaligned_report(model, train, cache)
        results["misaligned"] = mis
        agree.add_row(
            f"misaligned flag ({mis['misaligned']} of {mis['clips']} train clips)",
            str(mis["clips"]),
            f"{mis['roc_auc']:.3f}",
            "-",
            "-",
        )
    recipes = Table(title="whole clips with a shared event, by re-encoding recipe: R@1 as served")
    for col in ("pool", "recipe", "clips", *FULL_DIRECTIONS):
        recipes.add_column(col, justify="left" if col in ("pool", "recipe") else "right")
    for name, r in results["pools"].items():
        parts = sorted({p for rep in r["full"].values() for p in rep["service"] if "@" in p})
        for part in parts:
            cells = [r["full"][d]["service"].get(part) for d in FULL_DIRECTIONS]
            n = next((c["n"] for c in cells if c), 0)
            recipes.add_row(
                name,
                part.split("@", 1)[1],
                str(n),
                *(f"{c['R@1']:.3f}" if c else "-" for c in cells),
            )
    console = Console(width=200)
    console.print(full)
    if recipes.row_count:
        console.print(recipes)
    console.print(ex)
    console.print(agree)
    write_result("bench_timing" + (f"-{args.tag}" if args.tag else ""), results)
    return results


if __name__ == "__main__":
    main()
