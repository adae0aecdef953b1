"""Turn embedding shards into a published index version.

Per modality: gather the pooled vectors of the items that have it, choose a FAISS factory (`auto`
or explicit), build, tune nprobe/efSearch against exact search, and store the per-step sequences.
Everything goes through `VersionWriter`, which publishes atomically with checksums.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from index import ann
from index.embed import MODALITIES, CorpusItem, embed_corpus, load_shard
from index.version import ItemRecord, VersionWriter
from models.model import TrimodalModel


@dataclass(frozen=True)
class BuildReport:
    version: str
    items: int
    failed: dict[str, str]
    factories: dict[str, str]
    params: dict[str, dict[str, Any]]
    resumed_shards: int


def _tuning_queries(vectors: np.ndarray, n: int = 200, seed: int = 0) -> np.ndarray:
    """Queries near the data (a stored vector plus noise), as real queries are."""
    rng = np.random.default_rng(seed)
    picks = vectors[rng.choice(len(vectors), size=min(n, len(vectors)), replace=False)]
    noisy = picks + 0.05 * rng.normal(size=picks.shape).astype(np.float32)
    return (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)


def publish_from_shards(
    root: Path,
    items: Sequence[CorpusItem],
    shards: Sequence[Path],
    *,
    model_hash: str,
    dim: int,
    steps_per_second: float,
    index_type: str = "auto",
    build_info: dict[str, Any] | None = None,
) -> BuildReport:
    by_id = {item.id: item for item in items}
    records: list[ItemRecord] = []
    pooled: dict[str, list[np.ndarray]] = {m: [] for m in MODALITIES}
    sequences: dict[str, list[np.ndarray]] = {m: [] for m in MODALITIES}
    # Pooled vectors per item too (one-step "sequences"): "more like this" starts from them.
    pooled_items: dict[str, list[np.ndarray]] = {m: [] for m in MODALITIES}
    failed: dict[str, str] = {}
    for path in shards:
        shard = load_shard(path)
        cursor = {m: (0, 0) for m in MODALITIES}  # (pooled row, step offset) within the shard
        for k, item_id in enumerate(shard["ids"]):
            item_id = str(item_id)
            has = {m: bool(shard[f"{m}_present"][k]) for m in MODALITIES}
            if shard["errors"][k]:
                failed[item_id] = str(shard["errors"][k])
                continue
            item = by_id[item_id]
            for m in MODALITIES:
                if has[m]:
                    row, step = cursor[m]
                    n_steps = int(shard[f"{m}_lengths"][row])
                    pooled[m].append(shard[f"{m}_pooled"][row])
                    pooled_items[m].append(shard[f"{m}_pooled"][row][None])
                    sequences[m].append(shard[f"{m}_steps"][step : step + n_steps])
                    cursor[m] = (row + 1, step + n_steps)
                else:
                    pooled_items[m].append(np.zeros((0, dim), dtype=np.float32))
                    sequences[m].append(np.zeros((0, dim), dtype=np.float16))
            records.append(
                ItemRecord(
                    id=item_id,
                    media=str(item.media),
                    duration_s=float(shard["duration_s"][k]),
                    has_video=has["visual"],
                    has_audio=has["audio"],
                    title=item.title,
                    meta=item.meta,
                )
            )
    factories: dict[str, str] = {}
    params: dict[str, dict[str, Any]] = {}
    built: dict[str, Any] = {}
    item_rows: dict[str, np.ndarray] = {}
    for m in MODALITIES:
        present = [i for i, s in enumerate(sequences[m]) if len(s)]
        if not present:
            continue
        vectors = np.stack(pooled[m]).astype(np.float32)
        factories[m] = ann.choose_factory(len(vectors), dim, index_type)
        built[m] = ann.build(vectors, factories[m])
        params[m] = ann.tune(built[m], vectors, _tuning_queries(vectors))
        item_rows[m] = np.asarray(present, dtype=np.int64)
    info = {**(build_info or {}), "params": params, "failed": failed}
    with VersionWriter(
        root,
        model_hash=model_hash,
        dim=dim,
        steps_per_second=steps_per_second,
        factories=factories,
        build_info=info,
    ) as writer:
        writer.add_items(records)
        for m in MODALITIES:
            writer.write_sequences(m, iter(sequences[m]))
            writer.write_sequences(f"{m}.pooled", iter(pooled_items[m]))
            if m in built:
                ann.save(built[m], writer.path / f"{m}.faiss")
                writer.write_rows(m, item_rows[m])
        version = writer.publish()
    return BuildReport(version, len(records), failed, factories, params, 0)


def build_index(
    root: Path,
    items: Sequence[CorpusItem],
    model: TrimodalModel,
    model_hash: str,
    *,
    work_dir: Path | None = None,
    index_type: str = "auto",
    resume: bool = False,
    workers: int | None = None,
    batch_size: int = 16,
    shard_size: int = 256,
    on_progress: Callable[[int, int], None] | None = None,
) -> BuildReport:
    """Embed (resumable) and publish a new version under `root`."""
    work = work_dir or root / ".work"
    report = embed_corpus(
        items,
        model,
        model_hash,
        work,
        shard_size=shard_size,
        batch_size=batch_size,
        workers=workers,
        resume=resume,
        on_progress=on_progress,
    )
    built = publish_from_shards(
        root,
        items,
        report.shards,
        model_hash=model_hash,
        dim=model.cfg.embed_dim,
        steps_per_second=model.cfg.steps_per_second,
        index_type=index_type,
        build_info={"shard_size": shard_size, "items_requested": len(items)},
    )
    (work / "published.json").write_text(json.dumps({"version": built.version}))
    return BuildReport(
        built.version,
        built.items,
        built.failed,
        built.factories,
        built.params,
        report.skipped_shards,
    )
