"""FAISS index choice, build and tuning, always checked against exact search."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from index import ann


def clustered(n, d=32, centres=50, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, d))
    x = c[rng.integers(0, centres, n)] + 0.3 * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_auto_picks_exact_for_small_and_ivf_for_large():
    assert ann.choose_factory(10_000, 256) == "Flat"
    assert ann.choose_factory(1_000_000, 256).startswith("IVF")
    assert ann.choose_factory(1_000_000, 256, "ivfpq").endswith("PQ32x8")
    assert ann.choose_factory(1_000_000, 256, "ivfsq8").endswith(",SQ8")
    assert ann.choose_factory(5_000, 256, "HNSW16,Flat") == "HNSW16,Flat"


def test_flat_equals_exact_search():
    base, queries = clustered(2000, seed=1), clustered(50, seed=2)
    index = ann.build(base, "Flat")
    found = index.search(queries, 10)[1]
    assert ann.recall_at_k(found, ann.exact_topk(base, queries, 10)) == 1.0


@pytest.mark.parametrize("factory", ["IVF64,Flat", "IVF64,SQ8", "HNSW16,Flat"])
def test_tuning_reaches_target_recall_against_exact(factory):
    base, queries = clustered(6000, seed=3), clustered(100, seed=4)
    index = ann.build(base, factory)
    params = ann.tune(index, base, queries)
    assert params["recall_at_10"] >= ann.TARGET_RECALL
    assert {"nprobe", "efSearch"} & set(params)
    found = index.search(queries, 10)[1]  # the tuned parameter stays set on the index
    assert ann.recall_at_k(found, ann.exact_topk(base, queries, 10)) >= ann.TARGET_RECALL


def test_vector_index_maps_rows_and_survives_threads(tmp_path):
    base = clustered(1000, seed=5)
    rows = np.arange(1000, dtype=np.int64) * 3  # FAISS id i → item row 3i
    ann.save(ann.build(base, "IVF16,Flat"), tmp_path / "v.faiss")
    index = ann.VectorIndex.load(tmp_path / "v.faiss", rows, {"nprobe": 16})
    scores, got = index.search(base[:5], 3)
    assert got[:, 0].tolist() == [0, 3, 6, 9, 12] and np.all(scores[:, 0] > 0.99)
    errors = []

    def worker():
        try:
            for _ in range(20):
                index.search(base[:8], 10)
        except Exception as e:  # any failure fails the test
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with pytest.raises(ValueError):
        ann.VectorIndex.load(tmp_path / "v.faiss", rows[:10], {})


def test_bad_vectors_are_refused():
    bad = clustered(10)
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ann.build(bad, "Flat")


def test_build_from_a_memory_map_in_blocks_equals_the_in_memory_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The publish path hands FAISS a memory map of the spooled vectors: training on a sample
    and adding block by block must give the index one pass over an array gives."""
    base, queries = clustered(3000, seed=7), clustered(40, seed=17)
    path = tmp_path / "spool.f32"
    base.astype(np.float32).tofile(path)
    spooled = np.memmap(path, dtype=np.float32, mode="r", shape=base.shape)
    monkeypatch.setattr(ann, "ADD_CHUNK", 257)  # many uneven blocks
    truth = ann.exact_topk(base, queries, 10)
    monkeypatch.setattr(ann, "ADD_CHUNK", 10**9)
    assert np.array_equal(truth, ann.exact_topk(base, queries, 10))  # blocks change nothing
    monkeypatch.setattr(ann, "ADD_CHUNK", 257)
    monkeypatch.setattr(ann, "TRAIN_SAMPLE", 10**9)
    for factory in ("Flat", "IVF16,Flat"):
        in_memory = ann.build(np.array(base), factory)
        blocked = ann.build(spooled, factory)
        assert blocked.ntotal == len(base)
        a, b = in_memory.search(queries, 10), blocked.search(queries, 10)
        assert np.array_equal(a[1], b[1]) and np.allclose(a[0], b[0])
    monkeypatch.setattr(ann, "TRAIN_SAMPLE", 500)  # trained on a sample: still finds its data
    sampled = ann.build(spooled, "IVF16,Flat")
    ann._set_param(sampled, "nprobe", 16)
    assert ann.recall_at_k(sampled.search(queries, 10)[1], truth) == 1.0


def test_a_nan_in_a_later_block_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    base = clustered(600, d=8, seed=8)
    base[550, 3] = np.nan
    monkeypatch.setattr(ann, "ADD_CHUNK", 100)
    with pytest.raises(ValueError, match="NaN"):
        ann.build(base, "Flat")
