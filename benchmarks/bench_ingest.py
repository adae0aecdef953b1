"""Ingest benchmark: end-to-end indexing throughput (decode + features + encode + write + publish).

    python -m benchmarks.bench_ingest [--clips 500] [--workers N] [--ckpt DIR] [--repeat 1]

Runs `index.build.build_index`, the function `trimodal index build` calls, on the first `--clips`
clips of a SynthAV corpus (default `data/bench-synthav`: its test split first, then the other
splits if more clips are asked for), with the same arguments the CLI passes (auto index type,
batch 16, shard 256, no resume). Each repeat starts fresh: a new temporary index root and work
directory, a freshly loaded model, a newly spawned decode pool. The OS page cache is not dropped:
the media files may be warm in memory after the first run.

Without `--ckpt` the model is a fresh `small`-preset TrimodalModel (random weights, seed 0) saved
to a temporary checkpoint: throughput does not depend on the weights, only on the architecture.
Pass a trained checkpoint to time exactly that one, e.g.
`--ckpt data/bench-quality-final/single-stage/best`.

Reported: clips/s, media seconds per wall second ("x real time") and that divided by the cores
used (min(workers, cpu_count)), CPU seconds of the parent and of the decode workers, and
per-stage seconds. "Cores used" counts decode workers only: the parent encodes on its own torch
threads besides them, so with `--workers 1` the per-core figure flatters (media s / CPU s does not).

Stages are timed from outside, with no change to the product code: for the run, timers wrap the
module functions `build_index` looks up at call time (`embed_corpus`, `publish_from_shards`,
`encode_batch`, `write_shard`, `Reader`, `ann.build`, `ann.tune`) and the model's input and
encoder methods. Decoding happens in worker processes in parallel with encoding in the parent, so
"decode wait" is the time the parent sat idle waiting for decoded clips (decoding not hidden
behind encoding), not the total decode time.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import resource
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar
from unittest import mock

import torch
from rich.console import Console
from rich.table import Table

import index.ann
import index.build
import index.embed
from benchmarks._common import write_result
from index.embed import CorpusItem, Decoded
from index.version import IndexVersion
from models.config import ModelConfig
from models.config import preset as preset_config
from models.model import CONFIG_FILE, TrimodalModel, checkpoint_hash
from service.index_cli import corpus_items
from training.synthav import GeneratorConfig, generate_corpus

F = TypeVar("F", bound=Callable[..., Any])
SPLIT_ORDER = ("test", "val", "train")
# Stage rows in table order: (key, label, parent stage or None).
STAGES = (
    ("build", "build_index total", None),
    ("embed", "embed_corpus (decode+features+encode+write)", "build"),
    ("first_item", "pool start-up + first clip decoded", "embed"),
    ("decode_wait", "waiting for decoded clips (rest)", "embed"),
    ("visual_inputs", "visual inputs (frames to tensor)", "embed"),
    ("audio_inputs", "audio inputs (log-mel)", "embed"),
    ("visual_encoder", "visual encoder", "embed"),
    ("audio_encoder", "audio encoder", "embed"),
    ("encode_other", "encode_batch rest (to numpy)", "embed"),
    ("write_shard", "write_shard (npz + fsync)", "embed"),
    ("pool_shutdown", "decode pool shutdown", "embed"),
    ("embed_other", "embed rest (plan, shard re-read)", "embed"),
    ("publish", "publish_from_shards (FAISS + stores)", "build"),
    ("faiss_build", "FAISS build", "publish"),
    ("faiss_tune", "FAISS tune", "publish"),
    ("publish_other", "publish rest (shards, stores, checksums)", "publish"),
    ("build_other", "build rest", "build"),
)


class Stages:
    """Accumulated wall seconds per named stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] += seconds

    def wrap(self, name: str, fn: F) -> F:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(name, time.perf_counter() - start)

        return timed  # type: ignore[return-value]

    def finish(self) -> dict[str, float]:
        """Fill the "rest" rows (a parent minus its timed children) and round."""
        s = self.seconds
        model_parts = ("visual_inputs", "audio_inputs", "visual_encoder", "audio_encoder")
        s["encode_other"] = s["encode_batch"] - sum(s[k] for k in model_parts)
        embed_parts = ("first_item", "decode_wait", "encode_batch", "write_shard", "pool_shutdown")
        s["embed_other"] = s["embed"] - sum(s[k] for k in embed_parts)
        s["publish_other"] = s["publish"] - s["faiss_build"] - s["faiss_tune"]
        s["build_other"] = s["build"] - s["embed"] - s["publish"]
        return {key: round(s[key], 4) for key, _, _ in STAGES}


def timed_reader(stages: Stages) -> type[index.embed.Reader]:
    """A Reader that records how long the parent waits for each decoded clip."""

    class TimedReader(index.embed.Reader):
        def read(self, items: Sequence[CorpusItem]) -> Iterator[Decoded]:
            it = super().read(items)
            while True:
                start = time.perf_counter()
                try:
                    decoded = next(it)
                except StopIteration:
                    return
                finally:
                    waited = time.perf_counter() - start
                    first = "first_item" not in stages.seconds
                    stages.add("first_item" if first else "decode_wait", waited)
                yield decoded

        def __exit__(self, *exc: object) -> None:
            start = time.perf_counter()
            try:
                super().__exit__(*exc)
            finally:
                stages.add("pool_shutdown", time.perf_counter() - start)

    return TimedReader


@contextlib.contextmanager
def instrumented(model: TrimodalModel, stages: Stages) -> Iterator[None]:
    """Wrap the functions build_index reaches in timers for the duration of one build."""
    patches = [
        (index.build, "embed_corpus", "embed"),
        (index.build, "publish_from_shards", "publish"),
        (index.embed, "encode_batch", "encode_batch"),
        (index.embed, "write_shard", "write_shard"),
        (index.ann, "build", "faiss_build"),
        (index.ann, "tune", "faiss_tune"),
    ]
    with contextlib.ExitStack() as stack:
        for module, attr, name in patches:
            stack.enter_context(
                mock.patch.object(module, attr, stages.wrap(name, getattr(module, attr)))
            )
        stack.enter_context(mock.patch.object(index.embed, "Reader", timed_reader(stages)))
        # Instance attributes shadow the methods encode_batch calls on this model only.
        for attr, name in (
            ("visual_inputs", "visual_inputs"),
            ("audio_inputs", "audio_inputs"),
            ("encode_visual", "visual_encoder"),
            ("encode_audio", "audio_encoder"),
        ):
            stack.enter_context(
                mock.patch.object(model, attr, stages.wrap(name, getattr(model, attr)))
            )
        yield


def ensure_corpus(path: Path) -> Path:
    """The corpus bench_quality uses (3200 clips, seed 7); generated only if it is missing."""
    manifest = path / "manifest.jsonl"
    if not manifest.exists():
        train, val, test = 2000, 200, 1000
        total = train + val + test
        cfg = GeneratorConfig(
            clips=total, seed=7, val_fraction=val / total, test_fraction=test / total
        )
        generate_corpus(path, cfg)
    return manifest


def pick_items(manifest: Path, clips: int) -> tuple[list[CorpusItem], dict[str, int]]:
    """The first `clips` items, test split first, built as the CLI builds them from a manifest."""
    chosen: list[CorpusItem] = []
    per_split: dict[str, int] = {}
    for split in SPLIT_ORDER:
        if len(chosen) >= clips:
            break
        take = corpus_items(manifest, [split])[: clips - len(chosen)]
        chosen += take
        per_split[split] = len(take)
    if len(chosen) < clips:
        raise SystemExit(f"{manifest} holds only {len(chosen)} clips; asked for {clips}")
    return chosen, per_split


def fresh_checkpoint(out: Path) -> Path:
    torch.manual_seed(0)
    TrimodalModel(preset_config("small")).save(out)
    return out


def resolve_device(name: str) -> torch.device:
    from training.trainer import resolve_device as resolve  # what the CLI uses

    return resolve(name)


def cpu_seconds() -> tuple[float, float]:
    """(this process, reaped children) user + system CPU seconds."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def one_build(
    items: Sequence[CorpusItem], ckpt: Path, device: torch.device, args: argparse.Namespace
) -> dict[str, Any]:
    """One fresh build in a temporary index root; returns its timings and what it indexed."""
    stages = Stages()
    start = time.perf_counter()
    model = TrimodalModel.load(ckpt, device)
    model_hash = checkpoint_hash(ckpt)
    load_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        root = Path(tmp) / "index"
        cpu0 = cpu_seconds()
        with instrumented(model, stages):
            start = time.perf_counter()
            report = index.build.build_index(
                root,
                items,
                model,
                model_hash,
                index_type=args.index_type,
                resume=False,
                workers=args.workers,
                batch_size=args.batch_size,
                shard_size=args.shard_size,
            )
            stages.add("build", time.perf_counter() - start)
        cpu1 = cpu_seconds()
        version = IndexVersion.open(root, verify=False)
        table = version.items()
        durations = [table.by_row(r).duration_s for r in range(len(table))]
        table.close()
    media_s = float(sum(d for d in durations if d is not None))
    wall = stages.seconds["build"]
    return {
        "load_checkpoint_s": round(load_s, 3),
        "wall_s": round(wall, 3),
        "indexed": report.items,
        "failed": len(report.failed),
        "failed_examples": dict(sorted(report.failed.items())[:5]),
        "factories": report.factories,
        "media_seconds": round(media_s, 2),
        "cpu_s_parent": round(cpu1[0] - cpu0[0], 2),
        "cpu_s_workers": round(cpu1[1] - cpu0[1], 2),
        "stages_s": stages.finish(),
    }


def rates(run: dict[str, Any], clips: int, cores: int) -> dict[str, float]:
    wall = run["wall_s"]
    cpu = run["cpu_s_parent"] + run["cpu_s_workers"]
    x_rt = run["media_seconds"] / wall
    return {
        "clips_per_s": round(clips / wall, 2),
        "x_realtime": round(x_rt, 1),
        "x_realtime_per_core": round(x_rt / cores, 1),
        "media_s_per_cpu_s": round(run["media_seconds"] / cpu, 1) if cpu else float("nan"),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, default=Path("data/bench-synthav"))
    p.add_argument("--clips", type=int, default=500)
    p.add_argument("--workers", type=int, default=None, help="decode processes (default: cores)")
    p.add_argument("--ckpt", type=Path, default=None, help="default: a fresh small-preset model")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (as the CLI)")
    p.add_argument("--index-type", default="auto")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--shard-size", type=int, default=256)
    p.add_argument("--repeat", type=int, default=1, help="fresh builds to run (median reported)")
    p.add_argument("--note", default="", help="conditions worth recording (e.g. other load)")
    p.add_argument("--tag", default="", help="suffix of the result name")
    args = p.parse_args(argv)
    cpu_count = os.cpu_count() or 1
    args.workers = args.workers or cpu_count
    cores = min(args.workers, cpu_count)
    console = Console(width=120)

    manifest = ensure_corpus(args.corpus)
    items, per_split = pick_items(manifest, args.clips)
    device = resolve_device(args.device)

    with tempfile.TemporaryDirectory(prefix="bench-ingest-ckpt-") as tmp:
        ckpt = args.ckpt or fresh_checkpoint(Path(tmp) / "small")
        cfg = ModelConfig.load(ckpt / CONFIG_FILE)
        runs = []
        for k in range(args.repeat):
            run = one_build(items, ckpt, device, args)
            run |= rates(run, len(items), cores)
            runs.append(run)
            console.print(
                f"run {k + 1}/{args.repeat}: {run['wall_s']:.1f} s, "
                f"{run['clips_per_s']:.2f} clips/s, x{run['x_realtime']:.1f} real time"
            )

    median_run = sorted(runs, key=lambda r: r["wall_s"])[(len(runs) - 1) // 2]
    weights = (
        "fresh small-preset model (random weights, seed 0): throughput does not depend on weights"
        if args.ckpt is None
        else str(args.ckpt)
    )
    title = (
        f"ingest: {len(items)} clips, {median_run['media_seconds']:.0f} s of media, "
        f"{args.workers} workers / {cpu_count} cores, torch threads {torch.get_num_threads()}"
    )
    table = Table(title=title)
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    table.add_column("% of build", justify="right")
    stages = median_run["stages_s"]
    build_s = stages["build"]
    for key, label, parent in STAGES:
        depth = 0 if parent is None else (1 if parent == "build" else 2)
        table.add_row(
            "  " * depth + label, f"{stages[key]:.2f}", f"{100 * stages[key] / build_s:.1f}"
        )
    console.print(table)

    summary = Table(title="throughput (median run)")
    for col in ("clips/s", "x real time", "x real time / core", "media s / CPU s", "CPU s p+w"):
        summary.add_column(col, justify="right")
    summary.add_row(
        f"{median_run['clips_per_s']:.2f}",
        f"{median_run['x_realtime']:.1f}",
        f"{median_run['x_realtime_per_core']:.1f}",
        f"{median_run['media_s_per_cpu_s']:.1f}",
        f"{median_run['cpu_s_parent']:.1f}+{median_run['cpu_s_workers']:.1f}",
    )
    console.print(summary)
    console.print(f"checkpoint: {weights}; model load + hash {median_run['load_checkpoint_s']} s")
    if median_run["failed"]:
        console.print(f"[yellow]{median_run['failed']} clip(s) failed to decode[/yellow]")

    result: dict[str, Any] = {
        "note": args.note,
        "ckpt": weights,
        "preset": "small" if args.ckpt is None else None,
        "config_is_small_preset": cfg == preset_config("small"),
        "device": str(device),
        "corpus": str(args.corpus),
        "clips": len(items),
        "clips_per_split": per_split,
        "workers": args.workers,
        "cpu_count": cpu_count,
        "cores_used": cores,
        "torch_threads": torch.get_num_threads(),
        "index_type": args.index_type,
        "batch_size": args.batch_size,
        "shard_size": args.shard_size,
        "fresh": {
            "temp_index_root": True,
            "resume": False,
            "model_loaded_per_run": True,
            "decode_pool_spawned_per_run": True,
            "os_page_cache_dropped": False,
        },
        "throughput_from": "build_index wall time (model load + checkpoint hash excluded)",
        "repeat": args.repeat,
        "median": median_run,
        "wall_s_all": [r["wall_s"] for r in runs],
        "runs": runs,
    }
    write_result("bench_ingest" + (f"-{args.tag}" if args.tag else ""), result)
    return result


if __name__ == "__main__":
    main()
