"""Ray build throughput: clips/s with 1 and 2 CPU worker nodes, and a throughput model for N.

    python -m benchmarks.bench_ray [--clips 320] [--shard-size 32] [--corpus data/bench-synthav]

A local Ray cluster on this machine (head without CPUs, worker nodes of one CPU each, each
pinned to its own core, all on 127.0.0.1) runs the embedding stage of `trimodal index build
--ray` (`RayRunner`: decode tasks, one encoder actor) over SynthAV clips, with 1 and then 2
worker nodes; the single-machine runner (`LocalRunner`, one decode process) runs the same clips
for reference. Timed: the embedding stage
only (shards written), after the cluster is up; the encoder actor's start-up (loading the model)
is inside the time, as it is in a real build.

The model for N workers is derived, not measured: the per-clip CPU cost of decoding and of
encoding is timed in this process (one thread each), and

    clips/s (N CPU workers, no GPU)   ≈  N / (t_decode + t_encode)     (every CPU does both)
    clips/s (N CPU workers, G GPUs)   ≈  min(N / t_decode, G / t_encode_gpu)

with t_encode_gpu unknown here (no GPU on this machine). Ray's own overhead per shard (task
scheduling, object transfer) is what the measured 1- and 2-worker figures show beyond the model.
Reported per run: wall time, start-up (to the first finished shard) and the steady rate (first
to last finished shard), which is what a long build runs at.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # every node on 127.0.0.1

import torch
from rich.console import Console
from rich.table import Table

from benchmarks._common import write_result
from benchmarks.bench_ingest import ensure_corpus, fresh_checkpoint, pick_items


def _embed(
    items: list[Any], ckpt: Path, work: Path, runner: Any, shard_size: int
) -> dict[str, float]:
    """Wall time of the embedding stage, and its steady state: clips per second from the first
    finished shard to the last (start-up — actors loading the model, workers importing — is
    paid once per build, however big)."""
    from index.embed import embed_corpus
    from models.model import TrimodalModel, checkpoint_hash

    model = TrimodalModel.load(ckpt, "cpu")
    marks: list[tuple[float, int]] = []
    t = time.perf_counter()
    embed_corpus(
        items,
        model,
        checkpoint_hash(ckpt),
        work,
        shard_size=shard_size,
        runner=runner,
        on_progress=lambda done, total: marks.append((time.perf_counter(), done)),
    )
    wall = time.perf_counter() - t
    shard_ends = [m for m in marks if m[1] % shard_size == 0 or m[1] == len(items)]
    first, last = shard_ends[0], shard_ends[-1]
    steady = (last[1] - first[1]) / (last[0] - first[0]) if last[0] > first[0] else float("nan")
    return {
        "seconds": round(wall, 2),
        "clips_per_s": round(len(items) / wall, 2),
        "startup_s": round(first[0] - t, 2),
        "steady_clips_per_s": round(steady, 2),
    }


def _ray_run(
    nodes: int, items: list[Any], ckpt: Path, shard_size: int, tmp: Path
) -> dict[str, float]:
    import ray
    from ray.cluster_utils import Cluster

    from index.ray_runner import RayRunner

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": False},
    )
    try:
        cores = sorted(os.sched_getaffinity(0))
        for k in range(nodes):
            node = cluster.add_node(num_cpus=1, object_store_memory=400 * 1024 * 1024)
            _pin(node, cores[k % len(cores)])
        cluster.wait_for_nodes()
        runner = RayRunner(cluster.address, ckpt, device="cpu", encoders=1)
        return _embed(items, ckpt, tmp / f"ray-{nodes}", runner, shard_size)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()


def _children(pid: int) -> list[int]:
    """Descendants of `pid`, from /proc."""
    parent_of = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent_of[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, parent in parent_of.items() if parent == p]
        found += kids
        frontier += kids
    return found


def _pin(node: Any, core: int) -> None:
    """Keep a worker node on one core: its raylet, and so every worker process it starts later
    (they inherit the affinity). Ray's CPU count is only a scheduling label: unpinned, one
    "1-CPU" node would use every core of this machine, and 1 vs 2 nodes would compare nothing."""
    from ray._private import ray_constants

    for info in node.all_processes.get(ray_constants.PROCESS_TYPE_RAYLET, []):
        raylet = info.process.pid
        for pid in [raylet, *_children(raylet)]:
            with contextlib.suppress(OSError):  # a process that already exited
                os.sched_setaffinity(pid, {core})


def _stage_costs(items: list[Any], ckpt: Path, n: int) -> dict[str, float]:
    """Seconds per clip of decoding and of encoding on one core (this process pinned to it, one
    torch thread): what a 1-CPU worker spends. CPU time would overstate it: FFmpeg's decoding
    threads add CPU seconds that one core absorbs without waiting longer."""
    threads, before = torch.get_num_threads(), os.sched_getaffinity(0)
    torch.set_num_threads(1)
    os.sched_setaffinity(0, {min(before)})
    try:
        return _timed_stages(items, ckpt, n)
    finally:
        os.sched_setaffinity(0, before)
        torch.set_num_threads(threads)


def _timed_stages(items: list[Any], ckpt: Path, n: int) -> dict[str, float]:
    from index.embed import encode_batch
    from index.reader import read_item
    from models.model import TrimodalModel

    model = TrimodalModel.load(ckpt, "cpu")
    cfg = model.cfg
    args = (cfg.visual.fps, cfg.visual.image_size, cfg.audio.sample_rate, cfg.visual.fit)
    warm = [read_item(i, *args) for i in items[:4]]  # first calls: lazy initialisation
    encode_batch(model, [d for d in warm if d.error is None])
    sample = items[4 : 4 + n]
    t = time.perf_counter()
    decoded = [read_item(i, *args) for i in sample]
    t_decode = (time.perf_counter() - t) / len(sample)
    ok = [d for d in decoded if d.error is None]
    t = time.perf_counter()
    for start in range(0, len(ok), 16):
        encode_batch(model, ok[start : start + 16])
    t_encode = (time.perf_counter() - t) / max(1, len(ok))
    return {"decode_s_per_clip_one_core": t_decode, "encode_s_per_clip_one_core": t_encode}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, default=Path("data/bench-synthav"))
    p.add_argument("--clips", type=int, default=320)
    p.add_argument("--shard-size", type=int, default=32)
    p.add_argument("--ckpt", type=Path, default=None, help="default: a fresh small-preset model")
    p.add_argument("--project", default="1,2,4,8,16,32,64", help="N for the throughput model")
    p.add_argument("--note", default="")
    args = p.parse_args(argv)
    from index.embed import LocalRunner

    items, _ = pick_items(ensure_corpus(args.corpus), args.clips)
    result: dict[str, Any] = {"clips": len(items), "shard_size": args.shard_size, "note": args.note}
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp_name:
        tmp = Path(tmp_name)
        ckpt = args.ckpt or fresh_checkpoint(tmp / "small")
        costs = _stage_costs(items, ckpt, min(64, len(items) - 4))
        measured: dict[str, dict[str, float]] = {}
        measured["local, 1 decode process"] = _embed(
            items, ckpt, tmp / "local", LocalRunner(1), args.shard_size
        )
        for nodes in (1, 2):
            measured[f"ray, {nodes} worker node(s) of 1 CPU"] = _ray_run(
                nodes, items, ckpt, args.shard_size, tmp
            )
            shutil.rmtree(tmp / f"ray-{nodes}", ignore_errors=True)
    per_clip = costs["decode_s_per_clip_one_core"] + costs["encode_s_per_clip_one_core"]
    result["stage_s_per_clip_one_core"] = {k: round(v, 4) for k, v in costs.items()}
    result["measured"] = measured
    one = measured["ray, 1 worker node(s) of 1 CPU"]["steady_clips_per_s"]
    two = measured["ray, 2 worker node(s) of 1 CPU"]["steady_clips_per_s"]
    result["speedup_2_vs_1"] = round(two / one, 2)
    result["model"] = {
        "formula_cpu_only": "clips/s ≈ N / (t_decode + t_encode)",
        "formula_with_gpus": "clips/s ≈ min(N / t_decode, G / t_encode_gpu)",
        "projected_cpu_only_clips_per_s": {
            n: round(int(n) / per_clip, 1) for n in args.project.split(",")
        },
        "decode_only_ceiling_per_cpu_clips_per_s": round(
            1 / costs["decode_s_per_clip_one_core"], 1
        ),
        "measured_efficiency_vs_model": {
            "1": round(one / (1 / per_clip), 2),
            "2": round(two / (2 / per_clip), 2),
        },
    }

    console = Console(width=140)
    table = Table(title=f"embedding {len(items)} SynthAV clips (shards of {args.shard_size})")
    for col in ("runner", "seconds", "clips/s overall", "start-up s", "clips/s steady"):
        table.add_column(col, justify="right")
    for name, r in measured.items():
        table.add_row(
            name,
            f"{r['seconds']:.1f}",
            f"{r['clips_per_s']:.2f}",
            f"{r['startup_s']:.1f}",
            f"{r['steady_clips_per_s']:.2f}",
        )
    console.print(table)
    model = Table(title="throughput model (derived from per-clip CPU costs, not measured)")
    model.add_column("CPU workers N", justify="right")
    model.add_column("clips/s (CPU only)", justify="right")
    for n, v in result["model"]["projected_cpu_only_clips_per_s"].items():
        model.add_row(str(n), f"{v:.1f}")
    console.print(model)
    console.print(
        f"per clip on one core: decode {costs['decode_s_per_clip_one_core'] * 1e3:.0f} ms, "
        f"encode {costs['encode_s_per_clip_one_core'] * 1e3:.0f} ms; steady 2 vs 1 worker: "
        f"{result['speedup_2_vs_1']:.2f}x; measured / model: "
        f"{result['model']['measured_efficiency_vs_model']}"
    )
    write_result("bench_ray", result)
    return result


if __name__ == "__main__":
    main()
