"""Corpus embedding: reader → encoder → sink, one thin loop, safe to kill and resume.

The corpus is cut into fixed shards (item j belongs to shard j // shard_size). Each shard is
decoded in worker processes, encoded in batches, and written as one `.npz` under a temporary name,
fsynced and renamed: a shard file that exists is complete. `--resume` skips the shards already on
disk; a plan file (the ordered ids, shard size and model hash) makes sure they belong to this build.
Files that fail to decode are recorded in their shard with the reason, never embedded as zeros.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from index.reader import CorpusItem, Decoded, Reader
from models.model import TrimodalModel

MODALITIES = ("visual", "audio")


@torch.inference_mode()
def encode_batch(model: TrimodalModel, batch: Sequence[Decoded]) -> dict[str, list[Any]]:
    """(pooled (D,), sequence (T, D)) per item and modality; None where the item lacks it."""
    out: dict[str, Any] = {m: [None] * len(batch) for m in MODALITIES}
    with_video = [i for i, d in enumerate(batch) if d.frames is not None and len(d.frames)]
    with_audio = [i for i, d in enumerate(batch) if d.audio is not None and d.audio.size]
    if with_video:
        frames = [batch[i].frames for i in with_video]
        emb = model.encode_visual(*model.visual_inputs(frames))  # type: ignore[arg-type]
        for j, i in enumerate(with_video):
            t = int(emb.mask[j].sum())
            out["visual"][i] = (
                emb.pooled[j].float().cpu().numpy(),
                emb.sequence[j, :t].float().cpu().numpy(),
            )
    if with_audio:
        waves = [batch[i].audio for i in with_audio]
        emb = model.encode_audio(*model.audio_inputs(waves))  # type: ignore[arg-type]
        for j, i in enumerate(with_audio):
            t = int(emb.mask[j].sum())
            out["audio"][i] = (
                emb.pooled[j].float().cpu().numpy(),
                emb.sequence[j, :t].float().cpu().numpy(),
            )
    return out


def _fsync_write(path: Path, write: Callable[[Any], None]) -> None:
    tmp = path.with_name(f".{path.name}.part")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_shard(
    path: Path, records: list[Decoded], encoded: dict[str, list[Any]], dim: int
) -> None:
    """One shard: ids, status, durations, and per modality pooled vectors + ragged sequences."""
    arrays: dict[str, np.ndarray] = {
        "ids": np.array([r.id for r in records], dtype=object),
        "errors": np.array([r.error or "" for r in records], dtype=object),
        "duration_s": np.array([r.duration_s for r in records], dtype=np.float64),
    }
    for m in MODALITIES:
        present = np.array([e is not None for e in encoded[m]], dtype=bool)
        pooled = (
            np.stack([e[0] for e in encoded[m] if e is not None])
            if present.any()
            else np.zeros((0, dim))
        )
        seqs = [e[1] for e in encoded[m] if e is not None]
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        steps = np.concatenate(seqs) if seqs else np.zeros((0, dim))
        arrays |= {
            f"{m}_present": present,
            f"{m}_pooled": pooled.astype(np.float32),
            f"{m}_lengths": lengths,
            f"{m}_steps": steps.astype(np.float16),
        }
    _fsync_write(path, lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]


def load_shard(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=True) as z:
        return {k: z[k] for k in z.files}


@dataclass
class EmbedReport:
    shards: list[Path]
    embedded: int
    failed: dict[str, str]
    skipped_shards: int  # already complete when a resumed run started


def plan_hash(items: Sequence[CorpusItem], shard_size: int, model_hash: str) -> str:
    digest = hashlib.sha256(f"{shard_size}|{model_hash}".encode())
    for item in items:
        digest.update(f"{item.id}\0{item.media}\0{item.audio}\n".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class ShardPlan:
    """The corpus cut into fixed shards: item j belongs to shard j // shard_size, written to
    `paths[j // shard_size]`. A shard file that exists is complete (written under a temporary
    name, fsynced, renamed)."""

    items: Sequence[CorpusItem]
    shard_size: int
    paths: list[Path]

    def chunk(self, shard: int) -> Sequence[CorpusItem]:
        return self.items[shard * self.shard_size : (shard + 1) * self.shard_size]

    def pending(self) -> list[int]:
        return [j for j, path in enumerate(self.paths) if not path.exists()]


def plan_shards(
    items: Sequence[CorpusItem],
    model_hash: str,
    work_dir: Path,
    shard_size: int,
    resume: bool,
) -> ShardPlan:
    """Cut the corpus into shards under `work_dir/shards`, recording the plan (ordered ids, shard
    size, model hash) so that `resume` only ever continues the same build."""
    if len({i.id for i in items}) != len(items):
        raise ValueError("item ids must be unique")
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    shards_dir = work_dir / "shards"
    plan_file = work_dir / "plan.json"
    plan = {
        "hash": plan_hash(items, shard_size, model_hash),
        "items": len(items),
        "shard_size": shard_size,
    }
    if plan_file.exists():
        previous = json.loads(plan_file.read_text())
        if not resume or previous != plan:
            raise FileExistsError(
                f"{work_dir} holds another build's shards; use an empty directory"
                + ("" if resume else " or --resume to continue it")
            )
    shards_dir.mkdir(parents=True, exist_ok=True)
    _fsync_write(plan_file, lambda f: f.write(json.dumps(plan).encode()))
    n_shards = (len(items) + shard_size - 1) // shard_size
    paths = [shards_dir / f"shard-{j:06d}.npz" for j in range(n_shards)]
    return ShardPlan(items, shard_size, paths)


def embed_shard(
    path: Path,
    decoded: Iterable[Decoded],
    model: TrimodalModel,
    batch_size: int,
    on_item: Callable[[], None] | None = None,
) -> tuple[int, int]:
    """Encode one shard's decoded items in batches and write the shard file.

    The one code path of the encoder stage, whatever runs it (this process or a Ray actor).
    Returns (embedded, failed) counts; failed items are in the shard with their reason.
    """
    records: list[Decoded] = []
    encoded: dict[str, list[Any]] = {m: [] for m in MODALITIES}
    batch: list[Decoded] = []
    for item in decoded:
        records.append(item)
        if item.error is None:
            batch.append(item)
        if len(batch) == batch_size:
            _flush(model, batch, records, encoded)
            batch = []
        if on_item:
            on_item()
    _flush(model, batch, records, encoded)
    write_shard(path, records, encoded, model.cfg.embed_dim)
    failed = sum(r.error is not None for r in records)
    return len(records) - failed, failed


class LocalRunner:
    """Runs the shard stages on this machine: decoding in worker processes, encoding here."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1

    def run(
        self,
        plan: ShardPlan,
        model: TrimodalModel,
        batch_size: int,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> None:
        pending = plan.pending()
        if not pending:
            return
        cfg = model.cfg
        total = len(plan.items)
        processed = (len(plan.paths) - len(pending)) * plan.shard_size

        def tick() -> None:
            nonlocal processed
            processed += 1
            if on_progress:
                on_progress(min(processed, total), total)

        args = (cfg.visual.fps, cfg.visual.image_size, cfg.audio.sample_rate, self.workers)
        with Reader(*args) as reader:
            for j in pending:
                embed_shard(plan.paths[j], reader.read(plan.chunk(j)), model, batch_size, tick)


class Runner(Protocol):
    def run(
        self,
        plan: ShardPlan,
        model: TrimodalModel,
        batch_size: int,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> None: ...


def embed_corpus(
    items: Sequence[CorpusItem],
    model: TrimodalModel,
    model_hash: str,
    work_dir: Path,
    *,
    shard_size: int = 256,
    batch_size: int = 16,
    workers: int | None = None,
    resume: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
    runner: Runner | None = None,
) -> EmbedReport:
    """Embed every item into shards under `work_dir/shards`, skipping complete shards on resume.

    `runner` runs the stages (default: `LocalRunner(workers)`; `index.ray_runner.RayRunner`
    spreads them over a Ray cluster). Whatever ran them, the shards are read back here.
    """
    plan = plan_shards(items, model_hash, work_dir, shard_size, resume)
    done = len(plan.paths) - len(plan.pending())
    (runner or LocalRunner(workers)).run(plan, model, batch_size, on_progress)
    missing = plan.pending()
    if missing:  # a runner that returns without error must have written every shard
        raise RuntimeError(f"shards not written: {[plan.paths[j].name for j in missing[:5]]}")
    failed: dict[str, str] = {}
    embedded = 0
    for path in plan.paths:
        shard = load_shard(path)
        for item_id, error in zip(shard["ids"], shard["errors"], strict=True):
            if error:
                failed[str(item_id)] = str(error)
            else:
                embedded += 1
    return EmbedReport(plan.paths, embedded, failed, done)


def _flush(
    model: TrimodalModel,
    batch: list[Decoded],
    records: list[Decoded],
    encoded: dict[str, list[Any]],
) -> None:
    """Encode the pending batch and line its results up with `records` (failed items get None)."""
    results: dict[str, list[Any]] = (
        encode_batch(model, batch) if batch else {m: [] for m in MODALITIES}
    )
    by_id = {d.id: i for i, d in enumerate(batch)}
    for m in MODALITIES:
        done = len(encoded[m])
        for record in records[done:]:
            i = by_id.get(record.id)
            encoded[m].append(results[m][i] if i is not None else None)
