"""Compressed sequence stores (`--sequence-codec`): projection, int8, and what search keeps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from index.build import SequenceCodec, fit_projection, publish_from_shards, remove_items
from index.search import Query, Searcher
from index.version import PROJECTION, IndexCorrupt, IndexVersion, verify
from tests.index.test_build_search import synthetic_shard


def test_codec_specs_parse_and_print_back() -> None:
    for spec in ("f16", "i8", "pca64-f16", "pca8-i8"):
        assert str(SequenceCodec.parse(spec)) == spec
    assert SequenceCodec.parse("pca64-i8") == SequenceCodec(64, "i8")
    for bad in ("", "fp16", "pca-i8", "pca0-f16", "pca64", "i8-pca64", "pca64-f32"):
        with pytest.raises(ValueError):
            SequenceCodec.parse(bad)


def test_projection_keeps_the_energy_of_steps_that_live_in_a_subspace() -> None:
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(32, 4)))[0]  # steps span 4 of 32 dims
    seqs = [(rng.normal(size=(int(rng.integers(0, 9)), 4)) @ basis.T) for _ in range(50)]
    p = fit_projection(seqs, 4)
    assert p.shape == (32, 4) and p.dtype == np.float32
    np.testing.assert_allclose(p.T @ p, np.eye(4), atol=1e-5)  # orthonormal columns
    x = np.concatenate(seqs)
    np.testing.assert_allclose(x @ p @ p.T, x, atol=1e-4)  # nothing lost
    np.testing.assert_array_equal(fit_projection(seqs, 4), p)  # deterministic
    with pytest.raises(ValueError, match="compresses nothing"):
        fit_projection(seqs, 32)
    with pytest.raises(ValueError, match="no steps"):
        fit_projection([np.zeros((0, 32))], 4)


@pytest.mark.parametrize("codec", ["i8", "pca12-f16", "pca12-i8"])
def test_compressed_store_still_finds_the_planted_segment(tmp_path: Path, codec: str) -> None:
    items, shard, query = synthetic_shard(tmp_path)
    root = tmp_path / "root"
    publish_from_shards(
        root, items, [shard], model_hash="x", dim=16, steps_per_second=4.0, codec=codec
    )
    version = IndexVersion.open(root)
    parsed = SequenceCodec.parse(codec)
    assert version.manifest["build"]["sequence_codec"] == codec
    stores = version.manifest["sequence_stores"]
    assert stores["visual"]["encoding"] == parsed.encoding
    assert stores["visual"]["dim"] == (parsed.dim or 16)
    assert stores["visual.pooled"] == {**stores["visual.pooled"], "dim": 16, "encoding": "f16"}
    assert (version.projection() is not None) == (parsed.dim is not None)

    searcher = Searcher.open(root)
    pooled = (query.mean(0) / np.linalg.norm(query.mean(0))).astype(np.float32)
    hit = searcher.search(Query("visual", pooled, query), "video", k=3, rerank_k=20).hits[0]
    assert hit.id == "item7"
    assert (hit.start_s, hit.end_s) == pytest.approx((2.0, 3.5))
    more = searcher.item_query("item7")  # "more like this" gets full-dim steps back
    assert more.sequence is not None and more.sequence.shape == (24, 16)
    assert searcher.search(more, "video", k=1).hits[0].id == "item7"


def test_remove_keeps_the_codec_and_the_projection(tmp_path: Path) -> None:
    items, shard, _ = synthetic_shard(tmp_path)
    root = tmp_path / "root"
    publish_from_shards(
        root, items, [shard], model_hash="x", dim=16, steps_per_second=4.0, codec="pca12-i8"
    )
    before = IndexVersion.open(root)
    remove_items(root, {"item3"})
    after = IndexVersion.open(root)
    assert after.name != before.name
    assert after.manifest["build"]["sequence_codec"] == "pca12-i8"
    p_before, p_after = before.projection(), after.projection()
    assert p_before is not None and p_after is not None
    np.testing.assert_array_equal(p_after, p_before)
    old_row = before.items().by_id("item9")
    new_row = after.items().by_id("item9")
    assert old_row is not None and new_row is not None
    # carried over through decode → full space → the same projection → re-encode: stable
    np.testing.assert_allclose(
        after.sequences("visual").get(new_row[0]),
        before.sequences("visual").get(old_row[0]),
        atol=2e-3,
    )


def test_a_flipped_byte_in_the_projection_is_refused(tmp_path: Path) -> None:
    items, shard, _ = synthetic_shard(tmp_path)
    root = tmp_path / "root"
    publish_from_shards(
        root, items, [shard], model_hash="x", dim=16, steps_per_second=4.0, codec="pca12-f16"
    )
    path = IndexVersion.open(root).path / PROJECTION
    raw = bytearray(path.read_bytes())
    raw[40] ^= 0x01
    path.chmod(0o644)
    path.write_bytes(bytes(raw))
    assert any(PROJECTION in p for p in verify(root))
    with pytest.raises(IndexCorrupt, match=PROJECTION):
        IndexVersion.open(root)


def _entries(n: int, dim: int = 64, steps: int = 24):
    """A generator of entries whose arrays exist only while they are being written."""
    from index.build import Entry
    from index.version import ItemRecord

    rng = np.random.default_rng(0)
    for i in range(n):
        seq = rng.normal(size=(steps, dim)).astype(np.float32)
        seq /= np.linalg.norm(seq, axis=1, keepdims=True)
        pooled = seq.mean(0) / np.linalg.norm(seq.mean(0))
        yield Entry(
            ItemRecord(f"item{i}", f"/m/{i}.mp4", steps / 4.0, True, False),
            {"visual": pooled, "audio": None},
            {"visual": seq, "audio": np.zeros((0, dim), np.float32)},
        )


@pytest.mark.parametrize("codec", ["f16", "i8"])
def test_publish_streams_sequences_instead_of_holding_them(tmp_path: Path, codec: str) -> None:
    import tracemalloc

    from index.build import publish_entries

    n, dim, steps = 3000, 64, 24
    total = n * steps * dim * 4  # float32 steps the generator makes: 18 MB
    tracemalloc.start()
    try:
        publish_entries(
            tmp_path / "root",
            _entries(n, dim, steps),
            model_hash="x",
            dim=dim,
            steps_per_second=4.0,
            index_type="flat",
            codec=codec,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # pooled vectors for FAISS (n x dim float32 = 0.8 MB, twice while stacking) plus the index:
    # a small fraction of the sequences, which were never all in memory at once
    assert peak < total / 4, f"peak {peak / 1e6:.1f} MB for {total / 1e6:.1f} MB of steps"
    version = IndexVersion.open(tmp_path / "root")
    assert len(version.items()) == n
    store = version.sequences("visual")
    assert store.lengths().sum() == n * steps and store.encoding == codec


def test_publish_builds_faiss_from_spooled_vectors_block_by_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The merge: pooled vectors wait in a scratch file, FAISS trains on a sample and adds
    blocks; the vectors are never all in (Python-visible) memory, and the index is complete."""
    import tracemalloc

    import index.ann as ann
    from index.build import publish_entries

    monkeypatch.setattr(ann, "ADD_CHUNK", 1000)
    monkeypatch.setattr(ann, "TRAIN_SAMPLE", 1000)
    n, dim = 20_000, 1024
    # 82 MB of float32 pooled vectors; held in lists and then stacked (the old way), the peak
    # was over twice that. Now: per-item bookkeeping (ids, rows; ~5 MB) + a sample + a block.
    pooled_bytes = n * dim * 4
    tracemalloc.start()
    try:
        publish_entries(
            tmp_path / "root",
            _entries(n, dim, steps=1),
            model_hash="x",
            dim=dim,
            steps_per_second=4.0,
            index_type="IVF16,Flat",
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < pooled_bytes / 4, f"peak {peak / 1e6:.1f} MB for {pooled_bytes / 1e6:.1f} MB"
    version = IndexVersion.open(tmp_path / "root")
    assert not any(p.name.startswith(".") for p in version.path.iterdir())  # no scratch left
    searcher = Searcher(version)
    assert len(searcher.indexes["visual"]) == n
    first = next(iter(_entries(1, dim, steps=1)))
    query = Query("visual", first.pooled["visual"], None)
    assert searcher.search(query, "video", k=1, rerank=False).hits[0].id == "item0"


def test_projection_is_fitted_on_the_first_steps_then_streamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import index.build as build

    monkeypatch.setattr(build, "PCA_SAMPLE_STEPS", 240)  # fit after 10 items, stream the rest
    build.publish_entries(
        tmp_path / "a",
        _entries(50),
        model_hash="x",
        dim=64,
        steps_per_second=4.0,
        index_type="flat",
        codec="pca16-i8",
    )
    version = IndexVersion.open(tmp_path / "a")
    projection = version.projection()
    assert projection is not None and projection.shape == (64, 16)
    expected = build.fit_projection([e.steps["visual"] for e in _entries(10)], 16)
    np.testing.assert_array_equal(projection, expected)
    store = version.sequences("visual")
    assert len(store) == 50 and store.dim == 16
    first = next(iter(_entries(1)))
    np.testing.assert_allclose(
        store.get(0),
        first.steps["visual"] @ projection,
        atol=np.abs(first.steps["visual"]).max() / 100,
    )
