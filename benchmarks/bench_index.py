"""Index benchmark: FAISS index types on clustered vectors; the searcher's re-rank and bytes.

    python -m benchmarks.bench_index [--sizes 100000,1000000] [--types flat,ivf,ivfpq,hnsw]

Part 1, per size and index type: build time, the nprobe/efSearch that the build's own tuning picks
(recall@10 >= 0.95 against exact search on queries near the data), then on 1,000 held-out queries:
recall@10 against exact search, p50/p99 single-query latency, batch-100 throughput, bytes per item.

Part 2, the product's search path on a published index version (`index.build.publish_entries` +
`index.search.Searcher`), per sequence codec (f16, int8, PCA projections): bytes per item on disk,
re-rank time (alignment + window distance) for K = 50/100/400 candidates, and what each codec
costs: the overlap of its re-ranked top-10 with the f16 store's, and how often the query's source
item comes first. The 4 KB/item target is checked with the cheapest FAISS index that reaches the
recall target at the largest size, plus the version's other bytes per item for each codec.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from benchmarks._common import write_result
from index import ann

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
    # Queries come from the same clusters as the data but are not in it (held-out points).
    both = clustered(n + queries, seed=1)
    base, q = both[:n], both[n:]
    truth = ann.exact_topk(base, q, 10)
    rows = []
    for kind in types:
        factory = ann.choose_factory(n, DIM, kind)
        t = time.perf_counter()
        index = ann.build(base, factory)
        build_s = time.perf_counter() - t
        # Tuned as a build tunes it: on queries near the data (indexed points plus noise).
        rng = np.random.default_rng(0)
        tuning = base[rng.choice(n, size=200, replace=False)]
        tuning = tuning + 0.05 * rng.normal(size=tuning.shape).astype(np.float32)
        tuning /= np.linalg.norm(tuning, axis=1, keepdims=True)
        params = ann.tune(index, base, tuning)
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
                "params": {k: v for k, v in params.items() if k != "recall_at_10"},
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


def structured_sequences(n: int, seed: int) -> np.ndarray:
    """Smooth, structured unit steps (N, STEPS, DIM), like real ones: a few of 64 centres blended
    over time, plus noise. Real model steps are not isotropic noise, which no codec could keep."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(64, DIM)).astype(np.float32)
    out = np.empty((n, STEPS, DIM), np.float32)
    for start in range(0, n, 5000):
        m = min(5000, n - start)
        w = rng.dirichlet(np.ones(4), size=(m, STEPS)).astype(np.float32)
        # weights drift slowly over time, as content does
        w = np.cumsum(w, axis=1) / np.arange(1, STEPS + 1, dtype=np.float32)[None, :, None]
        picks = rng.integers(0, 64, size=(m, 4))
        x = np.einsum("ntk,nkd->ntd", w, centres[picks])
        x += 0.3 * rng.normal(size=x.shape).astype(np.float32)
        out[start : start + m] = x / np.linalg.norm(x, axis=-1, keepdims=True)
    return out


def build_version(root: Path, seqs: np.ndarray, codec: str) -> float:
    """Publish `seqs` (one visual sequence + its mean as pooled vector per item) → seconds."""
    from index.build import Entry, publish_entries
    from index.version import ItemRecord

    def entries():
        empty = np.zeros((0, DIM), np.float32)
        for i, s in enumerate(seqs):
            pooled = s.mean(0)
            record = ItemRecord(f"item{i}", f"/media/{i}.mp4", STEPS / 4.0, True, False)
            yield Entry(
                record,
                {"visual": pooled / np.linalg.norm(pooled), "audio": None},
                {"visual": s, "audio": empty},
            )

    t = time.perf_counter()
    publish_entries(
        root,
        entries(),
        model_hash="bench",
        dim=DIM,
        steps_per_second=4.0,
        index_type="flat",
        codec=codec,
    )
    return time.perf_counter() - t


def bench_searcher(
    items: int, codecs: list[str], ks: tuple[int, ...], queries: int, repeats: int = 3
) -> list[dict[str, Any]]:
    """The product's own search path on a published version, per sequence codec: bytes per
    item on disk, re-rank time (alignment + window distance) for K candidates, and how much of the
    full-precision (f16) re-ranked top-10 each codec keeps."""
    from index.search import Query, Searcher

    seqs = structured_sequences(items, seed=5)
    rng = np.random.default_rng(6)
    picks = rng.choice(items, size=queries, replace=False)
    # A query is a 12-step excerpt of an indexed item, slightly perturbed (a re-recorded clip).
    excerpts = []
    for i in picks:
        start = int(rng.integers(0, STEPS - 12))
        x = seqs[i, start : start + 12] + 0.05 * rng.normal(size=(12, DIM)).astype(np.float32)
        excerpts.append(x / np.linalg.norm(x, axis=-1, keepdims=True))
    out: list[dict[str, Any]] = []
    reference: dict[int, list[list[str]]] = {}
    with tempfile.TemporaryDirectory(dir="data" if Path("data").is_dir() else None) as tmp:
        for codec in codecs:
            root = Path(tmp) / codec
            build_s = build_version(root, seqs, codec)
            searcher = Searcher.open(root)
            vdir = searcher.version.path
            seq_bytes = sum(f.stat().st_size for f in vdir.glob("visual.seq.*"))
            total_bytes = sum(f.stat().st_size for f in vdir.iterdir())
            row: dict[str, Any] = {
                "codec": codec,
                "items": items,
                "build_s": round(build_s, 1),
                "sequence_bytes_per_item": round(seq_bytes / items, 1),
                "version_bytes_per_item": round(total_bytes / items, 1),
            }
            for k in ks:
                # Three passes over the queries; each figure is the best pass's (the machine is
                # shared: a pass that other tenants slowed down says nothing about the code).
                passes: list[tuple[list[float], list[float]]] = []
                for _ in range(repeats):
                    rerank_ms, total_ms, tops = [], [], []
                    for x in excerpts:
                        pooled = x.mean(0) / np.linalg.norm(x.mean(0))
                        query = Query("visual", pooled.astype(np.float32), x)
                        result = searcher.search(query, "video", k=10, rerank_k=k)
                        rerank_ms.append(result.timings_ms["rerank"])
                        total_ms.append(sum(result.timings_ms.values()))
                        tops.append([h.id for h in result.hits])
                    passes.append((rerank_ms, total_ms))
                rerank_ms, total_ms = min(passes, key=lambda p: statistics.median(p[0]))
                if codec == codecs[0]:
                    reference[k] = tops
                overlap = np.mean(
                    [len(set(a) & set(b)) / 10 for a, b in zip(tops, reference[k], strict=True)]
                )
                hit1 = np.mean([t[0] == f"item{i}" for t, i in zip(tops, picks, strict=True)])
                row[f"K{k}"] = {
                    "rerank_p50_ms": round(statistics.median(rerank_ms), 2),
                    "rerank_p99_ms": round(float(np.percentile(rerank_ms, 99)), 2),
                    "search_p50_ms": round(statistics.median(total_ms), 2),
                    "top10_overlap_vs_first": round(float(overlap), 3),
                    "source_at_1": round(float(hit1), 3),
                    "rerank_p50_ms_each_pass": [round(statistics.median(p[0]), 2) for p in passes],
                }
            out.append(row)
            searcher.version.close()
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="100000,1000000")
    p.add_argument("--types", default="flat,ivf,ivfpq,hnsw")
    p.add_argument(
        "--hnsw-max",
        type=int,
        default=1_000_000,
        help="skip HNSW above this many vectors (its build is the slowest on 2 cores)",
    )
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--store-items", type=int, default=20_000)
    p.add_argument("--codecs", default="f16,i8,pca128-f16,pca64-f16,pca64-i8,pca32-i8")
    p.add_argument("--store-queries", type=int, default=100)
    p.add_argument("--note", default="")
    args = p.parse_args(argv)
    console = Console(width=160)
    rows = []
    skipped = []
    for n in (int(x) for x in args.sizes.split(",") if x.strip()):
        types = [t for t in args.types.split(",") if t != "hnsw" or n <= args.hnsw_max]
        skipped += [f"hnsw@{n}"] if len(types) < len(args.types.split(",")) else []
        rows += bench_types(n, types, args.queries)
        console.print(f"done: {n} vectors")
    table = Table(title=f"FAISS index types ({DIM}-d clustered, recall@10 vs exact)")
    for col in ("n", "factory", "params", "recall@10", "build s", "p50 ms", "p99 ms"):
        table.add_column(col, justify="right")
    for col in ("QPS@100", "B/item"):
        table.add_column(col, justify="right")
    for r in rows:
        params = ",".join(f"{k}={v}" for k, v in r["params"].items())
        table.add_row(
            str(r["n"]),
            r["factory"],
            params or "-",
            f"{r['recall_at_10']:.3f}",
            f"{r['build_s']:.1f}",
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            f"{r['batch100_qps']:.0f}",
            f"{r['index_bytes_per_item']:.0f}",
        )
    console.print(table)
    if skipped:
        console.print(f"skipped (over --hnsw-max): {', '.join(skipped)}")

    ks = (50, 100, 400)
    store = bench_searcher(args.store_items, args.codecs.split(","), ks, args.store_queries)
    t2 = Table(
        title=f"Searcher on a published version ({args.store_items} items, {STEPS} steps x {DIM}"
        " dims, visual only): bytes and re-rank per sequence codec"
    )
    for col in ("codec", "seq B/item", "version B/item"):
        t2.add_column(col, justify="right")
    for k in ks:
        t2.add_column(f"re-rank K={k} p50/p99 ms", justify="right")
    t2.add_column("top-10 vs f16 (K=100)", justify="right")
    t2.add_column("source@1 (K=100)", justify="right")
    for r in store:
        t2.add_row(
            r["codec"],
            f"{r['sequence_bytes_per_item']:.0f}",
            f"{r['version_bytes_per_item']:.0f}",
            *[f"{r[f'K{k}']['rerank_p50_ms']:.2f}/{r[f'K{k}']['rerank_p99_ms']:.2f}" for k in ks],
            f"{r['K100']['top10_overlap_vs_first']:.3f}",
            f"{r['K100']['source_at_1']:.3f}",
        )
    console.print(t2)
    result = {
        "note": args.note,
        "index_types": rows,
        "skipped": skipped,
        "searcher": store,
        "targets": targets(rows, store),
    }
    for name, verdict in result["targets"].items():
        console.print(f"{name}: {verdict}")
    write_result("bench_index", result)
    return result


def targets(rows: list[dict[str, Any]], store: list[dict[str, Any]]) -> dict[str, str]:
    """The issue's targets, each with what was measured."""
    out: dict[str, str] = {}
    largest = max((r["n"] for r in rows), default=0)
    good = [r for r in rows if r["n"] == largest and r["recall_at_10"] >= 0.95]
    if good:
        best = min(good, key=lambda r: r["p50_ms"])
        verdict = "met" if best["p50_ms"] <= 10 else "not met"
        out[f"p50 <= 10 ms at recall@10 >= 0.95, n={largest}"] = (
            f"{verdict}: {best['factory']} {best['p50_ms']:.2f} ms at {best['recall_at_10']:.3f}"
        )
    if store:
        f16 = store[0]
        k100 = f16["K100"]["rerank_p50_ms"]
        out["re-rank K=100 <= 5 ms"] = (
            f"{'met' if k100 <= 5 else 'not met'}: p50 {k100:.2f} ms ({f16['codec']} store)"
        )
        # Per item at the largest n: FAISS bytes of the cheapest index type at recall >= 0.95,
        # plus the version's own bytes (sequences, pooled copy, item table) per codec.
        if good:
            cheapest = min(good, key=lambda r: r["index_bytes_per_item"])
            fits = []
            for r in store:
                other = r["version_bytes_per_item"] - index_bytes_in_version(r)
                total = cheapest["index_bytes_per_item"] + other
                fits.append((total, r))
            ok = [(t, r) for t, r in fits if t <= 4096]
            if ok:
                total, r = max(ok, key=lambda tr: tr[1]["K100"]["top10_overlap_vs_first"])
                out["<= 4 KB per item incl. sequences"] = (
                    f"met with {cheapest['factory']} + {r['codec']}: {total:.0f} B/item, "
                    f"top-10 overlap with f16 re-rank {r['K100']['top10_overlap_vs_first']:.3f}"
                )
            else:
                out["<= 4 KB per item incl. sequences"] = "not met by any codec measured"
    return out


def index_bytes_in_version(row: dict[str, Any]) -> float:
    """The benchmark's versions use a Flat index: DIM float32 per item."""
    return DIM * 4.0


if __name__ == "__main__":
    main()
