"""Index benchmark: FAISS index types on clustered vectors, sequence-store size, re-rank cost.

    python -m benchmarks.bench_index [--sizes 100000,1000000] [--types flat,ivf,ivfpq,hnsw]

For each size and index type: build time, the tuned nprobe/efSearch and its recall@10 against
exact search, p50/p99 single-query latency, batch-100 throughput, and bytes per item (the FAISS
index plus the per-step sequences). Sequences (24 steps x 256 dims per item) dominate the bytes, so
the benchmark also measures compressed stores — fp16, int8 per step, PCA to 64 dims — and what
each costs: the overlap of the top-10 after re-ranking with the full-precision re-rank. Finally it
times the re-rank (alignment + sequence distance) for K = 50, 100, 400 candidates.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from benchmarks._common import write_result
from index import ann
from models.alignment import align_sequence_batch
from models.sequence import paired_distance

DIM, STEPS = 256, 24


def clustered(n: int, seed: int, centres: int = 2000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, DIM)).astype(np.float32)
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):  # in chunks: 1M x 256 float64 noise would be 2 GB
        m = min(100_000, n - start)
        out[start : start + m] = c[rng.integers(0, centres, m)] + 0.35 * rng.normal(size=(m, DIM))
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def latency(index: Any, queries: np.ndarray, k: int = 10) -> tuple[float, float, float]:
    times = []
    for q in queries:
        t = time.perf_counter()
        index.search(q[None], k)
        times.append((time.perf_counter() - t) * 1e3)
    t = time.perf_counter()
    for start in range(0, len(queries), 100):
        index.search(queries[start : start + 100], k)
    qps = len(queries) / (time.perf_counter() - t)
    return statistics.median(times), float(np.percentile(times, 99)), qps


def bench_types(n: int, types: list[str], queries: int) -> list[dict[str, Any]]:
    base = clustered(n, seed=1)
    q = clustered(queries, seed=2)
    rows = []
    for kind in types:
        factory = ann.choose_factory(n, DIM, kind)
        t = time.perf_counter()
        index = ann.build(base, factory)
        build_s = time.perf_counter() - t
        params = ann.tune(index, base, q[: min(200, queries)])
        truth = ann.exact_topk(base, q, 10)
        recall = ann.recall_at_k(index.search(q, 10)[1], truth)
        p50, p99, qps = latency(index, q)
        with tempfile.TemporaryDirectory() as tmp:
            ann.save(index, Path(tmp) / "x.faiss")
            size = (Path(tmp) / "x.faiss").stat().st_size
        rows.append(
            {
                "n": n,
                "type": kind,
                "factory": factory,
                "params": params,
                "recall_at_10": round(recall, 4),
                "build_s": round(build_s, 2),
                "p50_ms": round(p50, 3),
                "p99_ms": round(p99, 3),
                "batch100_qps": round(qps, 1),
                "index_bytes_per_item": round(size / n, 1),
            }
        )
        del index
    return rows


def compress(seqs: np.ndarray, how: str, pca: np.ndarray | None) -> tuple[np.ndarray, float]:
    """Round-trip sequences (N, T, D) through a storage format → (restored float32, bytes/item)."""
    _n, t, d = seqs.shape
    if how == "fp16":
        return seqs.astype(np.float16).astype(np.float32), t * d * 2
    if how == "int8":
        scale = np.abs(seqs).max(axis=-1, keepdims=True) / 127.0 + 1e-12
        q = np.round(seqs / scale).astype(np.int8)
        return q.astype(np.float32) * scale, t * d + t * 2  # + an fp16 scale per step
    assert pca is not None
    low = seqs @ pca  # (N, T, 64)
    if how == "pca64-fp16":
        return (low.astype(np.float16).astype(np.float32)) @ pca.T, t * pca.shape[1] * 2
    scale = np.abs(low).max(axis=-1, keepdims=True) / 127.0 + 1e-12
    q = np.round(low / scale).astype(np.int8).astype(np.float32) * scale
    return q @ pca.T, t * pca.shape[1] + t * 2


def rerank_order(query: torch.Tensor, cands: np.ndarray) -> list[int]:
    c = torch.from_numpy(cands)
    mask = torch.ones(c.shape[:2], dtype=torch.bool)
    d = paired_distance(
        "interp", query[None], torch.ones(1, query.shape[0], dtype=torch.bool), c, mask
    )
    return torch.argsort(d).tolist()


def bench_compression(samples: int = 400, k: int = 100, queries: int = 30) -> list[dict[str, Any]]:
    """Top-10 overlap of re-ranking on compressed sequences vs full precision."""
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(64, DIM)).astype(np.float32)
    # Smooth, structured sequences (like real ones): a few centres blended over time + noise.
    w = rng.dirichlet(np.ones(4), size=(samples, STEPS)).astype(np.float32)
    picks = rng.integers(0, 64, size=(samples, 4))
    seqs = np.einsum("ntk,nkd->ntd", w, centres[picks]) + 0.3 * rng.normal(
        size=(samples, STEPS, DIM)
    ).astype(np.float32)
    seqs /= np.linalg.norm(seqs, axis=-1, keepdims=True)
    flat = seqs.reshape(-1, DIM)
    _, _, vt = np.linalg.svd(flat[rng.choice(len(flat), 4000, replace=False)], full_matrices=False)
    pca = vt[:64].T.astype(np.float32)  # (D, 64)
    out = []
    for how in ("fp16", "int8", "pca64-fp16", "pca64-int8"):
        restored, nbytes = compress(seqs, how, pca)
        overlaps = []
        for _qi in range(queries):
            cand = rng.choice(samples, size=k, replace=False)
            query = torch.from_numpy(
                seqs[cand[0]][4:16] + 0.05 * rng.normal(size=(12, DIM)).astype(np.float32)
            )
            exact = rerank_order(query, seqs[cand])[:10]
            approx = rerank_order(query, restored[cand])[:10]
            overlaps.append(len(set(exact) & set(approx)) / 10)
        out.append(
            {
                "store": how,
                "sequence_bytes_per_item": nbytes,
                "rerank_top10_overlap": round(float(np.mean(overlaps)), 3),
            }
        )
    return out


def bench_rerank(ks=(50, 100, 400), repeats: int = 20) -> list[dict[str, Any]]:
    rng = np.random.default_rng(4)
    out = []
    query = torch.from_numpy(rng.normal(size=(20, DIM)).astype(np.float32))
    qmask = torch.ones(20, dtype=torch.bool)
    for k in ks:
        cands = torch.from_numpy(rng.normal(size=(k, STEPS, DIM)).astype(np.float32))
        mask = torch.ones(k, STEPS, dtype=torch.bool)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            with torch.no_grad():
                align_sequence_batch(query, qmask, cands, mask, 4.0)
                paired_distance("interp", query[None], qmask[None], cands, mask)
            times.append((time.perf_counter() - t) * 1e3)
        out.append(
            {
                "K": k,
                "p50_ms": round(statistics.median(times), 2),
                "p99_ms": round(float(np.percentile(times, 99)), 2),
            }
        )
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="100000,1000000")
    p.add_argument("--types", default="flat,ivf,ivfpq,hnsw")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--note", default="")
    args = p.parse_args(argv)
    console = Console()
    rows = []
    for n in (int(x) for x in args.sizes.split(",")):
        rows += bench_types(n, args.types.split(","), args.queries)
    table = Table(title="FAISS index types (256-d clustered, recall@10 vs exact)")
    for col in (
        "n",
        "type",
        "params",
        "recall@10",
        "build s",
        "p50 ms",
        "p99 ms",
        "QPS@100",
        "B/item",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        params = ",".join(f"{k}={v}" for k, v in r["params"].items() if k != "recall_at_10")
        table.add_row(
            str(r["n"]),
            r["type"],
            params or "-",
            f"{r['recall_at_10']:.3f}",
            f"{r['build_s']:.1f}",
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            f"{r['batch100_qps']:.0f}",
            f"{r['index_bytes_per_item']:.0f}",
        )
    console.print(table)
    comp = bench_compression()
    t2 = Table(title=f"sequence store ({STEPS} steps x {DIM} dims per item)")
    for col in ("store", "bytes/item", "re-rank top-10 overlap"):
        t2.add_column(col, justify="right")
    for c in comp:
        t2.add_row(
            c["store"], str(c["sequence_bytes_per_item"]), f"{c['rerank_top10_overlap']:.3f}"
        )
    console.print(t2)
    rr = bench_rerank()
    t3 = Table(title="re-rank cost (alignment + interpolated distance, one query)")
    for col in ("K", "p50 ms", "p99 ms"):
        t3.add_column(col, justify="right")
    for r in rr:
        t3.add_row(str(r["K"]), f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}")
    console.print(t3)
    result = {"note": args.note, "index_types": rows, "sequence_compression": comp, "rerank": rr}
    write_result("bench_index", result)
    return result


if __name__ == "__main__":
    main()
