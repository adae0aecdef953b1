"""FAISS indexes over pooled embeddings: choosing, building, tuning against exact search, searching.

Vectors are L2-normalised, so inner product is cosine similarity. `auto` picks exact search (Flat)
below `FLAT_LIMIT` vectors and an inverted file (IVF) above, then raises `nprobe` (or HNSW's
`efSearch`) until recall@10 against exact search reaches the target on a sample of queries.

CPU indexes are safe for concurrent searches; GPU indexes are not, so a `VectorIndex` on a GPU
serialises its searches with a lock.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# isort: off
import numpy as np
import torch  # noqa: F401  (before faiss: see below)

# torch and faiss each bring an OpenMP runtime; whichever loads first is the one both use. With
# faiss's first, every small torch op of the re-rank got slower (K=100: 5.5 vs 4.2 ms, measured
# by benchmarks/bench_index.py), so this module, the first to import faiss, loads torch before it.
import faiss

# isort: on

FLAT_LIMIT = 50_000  # exact search of 50k x 384-d takes ~4 ms on 2 cores; IVF above
TARGET_RECALL = 0.95
KINDS = ("auto", "flat", "ivf", "ivfsq8", "hnsw", "ivfpq")


def gpu_count() -> int:
    """GPUs usable by this FAISS build (0 for faiss-cpu)."""
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


def choose_factory(n: int, dim: int, kind: str = "auto") -> str:
    """A FAISS factory string for `n` vectors of `dim`, or `kind` itself if it is one already."""
    if kind not in KINDS:
        return kind  # an explicit factory string, e.g. "IVF1024,PQ32"
    if kind == "auto":
        kind = "flat" if n < FLAT_LIMIT else "ivf"
    if kind == "flat":
        return "Flat"
    # About 4·sqrt(n) lists, a power of two, at least 39 training points per list.
    nlist = 2 ** max(4, round(math.log2(4 * math.sqrt(max(n, 1)))))
    nlist = max(16, min(nlist, max(16, n // 39)))
    if kind == "ivf":
        return f"IVF{nlist},Flat"
    if kind == "ivfsq8":  # one byte per dimension: a quarter of Flat, recall close to it
        return f"IVF{nlist},SQ8"
    if kind == "hnsw":
        return "HNSW32,Flat"
    # IVF-PQ: sub-quantizers of 8 dims, 8 bits each — 32 bytes a vector at 256 dims.
    m = max(1, dim // 8)
    while dim % m:
        m -= 1
    return f"IVF{nlist},PQ{m}x8"


ADD_CHUNK = 65_536  # rows per add / per exact-search pass: bounded extra memory at any size
TRAIN_SAMPLE = 100_000


def _as_matrix(vectors: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"vectors must be (n, d), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("vectors hold NaN or Inf")
    return x


def _chunks(vectors: np.ndarray) -> Any:
    """Row blocks of `ADD_CHUNK` rows as float32 matrices (checked): a memory map is read one
    block at a time."""
    if vectors.ndim != 2:
        raise ValueError(f"vectors must be (n, d), got {vectors.shape}")
    size = ADD_CHUNK  # read at call time (tests shrink it)
    for start in range(0, len(vectors), size):
        yield start, _as_matrix(vectors[start : start + size])


def build(vectors: np.ndarray, factory: str, seed: int = 0) -> faiss.Index:
    """Train (if the factory needs it) on a sample of at most `TRAIN_SAMPLE` rows, then add every
    vector in row order, `ADD_CHUNK` rows at a time.

    `vectors` may be a memory map (the build's spool on disk): only the sample and one chunk are
    in memory besides the index itself, as in FAISS's own recipe for big corpora (train on a
    sample, add shard by shard).
    """
    if vectors.ndim != 2:
        raise ValueError(f"vectors must be (n, d), got {vectors.shape}")
    index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        rng = np.random.default_rng(seed)
        if len(vectors) <= TRAIN_SAMPLE:
            sample = _as_matrix(vectors)
        else:  # sorted rows: a memory map is read front to back
            sample = _as_matrix(vectors[np.sort(rng.choice(len(vectors), TRAIN_SAMPLE, False))])
        index.train(sample)
        del sample
    for _, block in _chunks(vectors):
        index.add(block)
    return index


def exact_topk(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Rows of the exact top-k by inner product, `base` read one block at a time."""
    q = _as_matrix(queries)
    best_scores = np.full((len(q), 0), -np.inf, dtype=np.float32)
    best_rows = np.zeros((len(q), 0), dtype=np.int64)
    for start, block in _chunks(base):
        flat = faiss.IndexFlatIP(block.shape[1])
        flat.add(block)
        scores, rows = flat.search(q, min(k, len(block)))
        best_scores = np.concatenate([best_scores, scores], 1)
        best_rows = np.concatenate([best_rows, np.where(rows >= 0, rows + start, -1)], 1)
        # Stable on score, then row: equal scores keep the lower row, as one flat search would.
        order = np.lexsort((best_rows, -best_scores), axis=1)[:, :k]
        best_scores = np.take_along_axis(best_scores, order, 1)
        best_rows = np.take_along_axis(best_rows, order, 1)
    return best_rows


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of the exact top-k found, per query, averaged (ties in the exact list allowed)."""
    hits = [
        len(set(f.tolist()) & set(t.tolist())) / max(1, len(t))
        for f, t in zip(found, truth, strict=True)
    ]
    return float(np.mean(hits)) if hits else 1.0


def _set_param(index: faiss.Index, name: str, value: int) -> None:
    faiss.ParameterSpace().set_index_parameter(index, name, value)


def tune(
    index: faiss.Index,
    base: np.ndarray,
    queries: np.ndarray,
    k: int = 10,
    target: float = TARGET_RECALL,
) -> dict[str, Any]:
    """Smallest nprobe / efSearch reaching `target` recall@k against exact search on `queries`."""
    truth = exact_topk(base, queries, k)
    inner = _ivf_or_none(index)
    if inner is not None:
        name, values = (
            "nprobe",
            [v for v in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512) if v <= inner.nlist],
        )
    elif "HNSW" in type(index).__name__:
        name, values = "efSearch", [16, 32, 64, 128, 256, 512]
    else:
        return {"recall_at_10": recall_at_k(index.search(_as_matrix(queries), k)[1], truth)}
    recall = 0.0
    value = values[-1]
    for value in values:
        _set_param(index, name, value)
        recall = recall_at_k(index.search(_as_matrix(queries), k)[1], truth)
        if recall >= target:
            break
    return {name: value, "recall_at_10": recall}


def _ivf_or_none(index: faiss.Index) -> Any:
    """The inverted-file part of an index (to read nlist), or None for Flat / HNSW."""
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


@dataclass
class VectorIndex:
    """A FAISS index plus its search parameters; `rows[i]` is the item row of FAISS id i."""

    index: faiss.Index
    rows: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)
    on_gpu: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(
        cls,
        path: Path,
        rows: np.ndarray,
        params: dict[str, Any],
        use_gpu: bool = True,
        dim: int | None = None,
    ) -> VectorIndex:
        """Read `path`; ValueError naming the file if it does not fit `rows` (one row id per
        vector) or `dim` (the vectors' dimension): FAISS itself would only notice at the first
        search, with a bare AssertionError."""
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as e:  # FAISS reports a truncated or foreign file this way
            raise ValueError(f"{path.name}: not a readable FAISS index ({_first_line(e)})") from e
        if dim is not None and index.d != dim:
            raise ValueError(
                f"{path.name}: vectors of dimension {index.d}, the manifest says {dim}"
            )
        if index.ntotal != len(rows):
            raise ValueError(f"{path.name}: {index.ntotal} vectors but {len(rows)} row ids")
        for name in ("nprobe", "efSearch"):
            if name in params:
                _set_param(index, name, int(params[name]))
        on_gpu = False
        if use_gpu and gpu_count() > 0:  # pragma: no cover - needs faiss-gpu and a GPU
            resources = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(resources, 0, index)
            on_gpu = True
        return cls(index, rows, params, on_gpu)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, item rows) per query; rows of -1 mark fewer than k results."""
        x = _as_matrix(queries)
        k = min(k, len(self))
        if k == 0:
            empty = np.zeros((len(x), 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        if self.on_gpu:  # GPU indexes are not thread-safe
            with self._lock:
                scores, ids = self.index.search(x, k)
        else:
            scores, ids = self.index.search(x, k)
        rows = np.where(ids >= 0, self.rows[np.clip(ids, 0, None)], -1)
        return scores, rows


def _first_line(e: Exception) -> str:
    """FAISS errors carry a C++ stack trace after their first line."""
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def save(index: faiss.Index, path: Path) -> None:
    faiss.write_index(index, str(path))
