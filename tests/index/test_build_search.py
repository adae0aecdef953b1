"""Index build and search end to end, on a small SynthAV corpus with a tiny random model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from index.build import add_items, build_index, publish_from_shards
from index.embed import CorpusItem, Decoded, write_shard
from index.search import Query, Searcher
from index.version import IndexCorrupt, IndexVersion, current_version, verify
from models.config import preset
from models.media import DECODE_VERSION
from models.model import TrimodalModel, checkpoint_hash
from models.policy import DIRECTIONS, SearchPolicy, save_policy
from training.synthav import GeneratorConfig, RenderConfig, generate_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("idx") / "corpus"
    cfg = GeneratorConfig(clips=10, seed=9, render=RenderConfig(duration_s=2.0))
    generate_corpus(out, cfg, workers=1)
    (out / "media" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x01" * 300)
    (out / "media" / "notes.mp4").write_text("not a video at all")
    return out


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ck") / "tiny"
    TrimodalModel(preset("tiny")).save(path)
    # Searches here exercise the re-rank and segment machinery: record trained sequence heads.
    save_policy(path, SearchPolicy(True, dict.fromkeys(DIRECTIONS, True)))
    return path


def items_of(corpus: Path) -> list[CorpusItem]:
    from service.index_cli import corpus_items

    items = corpus_items(corpus / "manifest.jsonl")
    return [
        *items,
        CorpusItem("broken", corpus / "media" / "broken.mp4"),
        CorpusItem("notes", corpus / "media" / "notes.mp4"),
    ]


@pytest.fixture(scope="module")
def built(corpus, ckpt, tmp_path_factory):
    root = tmp_path_factory.mktemp("root")
    model = TrimodalModel.load(ckpt)
    report = build_index(
        root, items_of(corpus), model, checkpoint_hash(ckpt), workers=2, shard_size=4
    )
    return root, report


def test_broken_files_are_reported_and_the_rest_indexed(built):
    root, report = built
    assert set(report.failed) == {"broken", "notes"}
    assert report.failed["notes"].startswith("unknown_format")
    version = IndexVersion.open(root)
    assert len(version.items()) == 10
    assert version.manifest["counts"]["items"] == 10
    assert current_version(root) == report.version
    assert verify(root) == []
    # the decoder that measured the items is recorded, and a search of it does not warn
    assert version.manifest["build"]["decode_version"] == DECODE_VERSION


def test_audio_query_finds_its_own_clip_with_the_whole_clip_as_segment(built, ckpt, corpus):
    root, _ = built
    searcher = Searcher.open(root)
    _row, record = searcher.items.by_id(searcher.items.ids()[3])
    query = searcher.item_query(record.id, "audio")
    result = searcher.search(query, "audio", k=3)
    assert result.hits[0].id == record.id
    hit = result.hits[0]
    # The whole clip; AAC pads its last frame, so the decoded track may run up to ~64 ms longer.
    assert hit.start_s == pytest.approx(0.0) and 2.0 <= hit.end_s <= 2.07
    assert len(hit.timeline) in (8, 9)  # 2 s at 4 steps per second, plus a padded partial step
    assert set(result.timings_ms) >= {"search", "rerank", "segments"}


def test_text_query_returns_hits_with_segments(built, ckpt):
    root, _ = built
    model = TrimodalModel.load(ckpt)
    pooled = model.encode_text(["a small red ball bounces"]).pooled[0].detach().numpy()
    result = Searcher.open(root).search(Query("text", pooled), "video", k=5)
    assert len(result.hits) == 5
    assert all(0 <= h.start_s < h.end_s <= 2.0 for h in result.hits)
    assert [h.score for h in result.hits] == sorted((h.score for h in result.hits), reverse=True)


def test_a_flipped_byte_anywhere_is_refused(built, tmp_path):
    import shutil

    root, report = built
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    target = copy / report.version / "visual.seq.f16"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    assert any("visual.seq.f16" in p for p in verify(copy))
    with pytest.raises(IndexCorrupt, match=r"visual\.seq\.f16"):
        IndexVersion.open(copy)


def synthetic_shard(tmp_path: Path, dim: int = 16) -> tuple[list[CorpusItem], Path, np.ndarray]:
    """20 items with random unit steps; item 7 holds the query's 6 steps at offset 8 (2.0 s)."""
    rng = np.random.default_rng(0)
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    query = unit(rng.normal(size=(6, dim))).astype(np.float32)
    records, encoded = [], {"visual": [], "audio": []}
    items = []
    for i in range(20):
        seq = unit(rng.normal(size=(24, dim))).astype(np.float32)
        if i == 7:
            seq[8:14] = unit(query + 0.05 * rng.normal(size=query.shape))
        pooled = unit(seq.mean(0)).astype(np.float32)
        records.append(Decoded(f"item{i}", None, None, 6.0))
        envelope = np.random.default_rng(i).standard_normal(72).astype(np.float32)
        encoded["visual"].append((pooled, seq, envelope))
        encoded["audio"].append(None)
        items.append(CorpusItem(f"item{i}", tmp_path / f"item{i}.mp4"))
    path = tmp_path / "shard-000000.npz"
    write_shard(path, records, encoded, dim)
    return items, path, query


def test_hybrid_rerank_finds_the_planted_segment(tmp_path):
    items, shard, query = synthetic_shard(tmp_path)
    root = tmp_path / "root"
    publish_from_shards(root, items, [shard], model_hash="x", dim=16, steps_per_second=4.0)
    searcher = Searcher.open(root)
    q = Query("visual", (query.mean(0) / np.linalg.norm(query.mean(0))).astype(np.float32), query)
    result = searcher.search(q, "video", k=3, rerank_k=20)
    assert result.hits[0].id == "item7"
    assert result.hits[0].start_s == pytest.approx(2.0) and result.hits[0].end_s == pytest.approx(
        3.5
    )


def test_concurrent_searches_while_a_new_version_is_published(tmp_path):
    items, shard, query = synthetic_shard(tmp_path)
    root = tmp_path / "root"
    publish_from_shards(root, items, [shard], model_hash="x", dim=16, steps_per_second=4.0)
    searcher = Searcher.open(root)
    q = Query("visual", query[0], query)
    errors, done = [], threading.Event()

    def worker():
        while not done.is_set():
            try:
                assert len(searcher.search(q, "video", k=5).hits) == 5
                fresh = Searcher.open(root, verify=False)  # whatever CURRENT names is complete
                assert len(fresh.items) == 20
            except Exception as e:  # any failure fails the test
                errors.append(e)
                return

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for _ in range(3):
        publish_from_shards(root, items, [shard], model_hash="x", dim=16, steps_per_second=4.0)
    done.set()
    for t in threads:
        t.join()
    assert not errors, errors[:1]


def _build_cmd(corpus: Path, ckpt: Path, root: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "service.cli",
        "index",
        "build",
        "--manifest",
        str(corpus / "manifest.jsonl"),
        "--ckpt",
        str(ckpt),
        "--out",
        str(root),
        "--workers",
        "1",
        "--batch-size",
        "2",
        "--shard-size",
        "2",
        *extra,
    ]


@pytest.mark.slow
def test_kill_9_during_embedding_then_resume_gives_the_same_index(corpus, ckpt, tmp_path):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    env = dict(os.environ)
    subprocess.run(_build_cmd(corpus, ckpt, clean), check=True, env=env, capture_output=True)
    proc = subprocess.Popen(
        _build_cmd(corpus, ckpt, killed),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120  # until the first shard is committed
    while time.monotonic() < deadline and proc.poll() is None:
        if any(killed.glob(".work/*/shards/shard-000000.npz")):
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert current_version(killed) is None, "no partial version may become CURRENT"
    subprocess.run(
        _build_cmd(corpus, ckpt, killed, "--resume"), check=True, env=env, capture_output=True
    )
    a, b = IndexVersion.open(clean), IndexVersion.open(killed)
    assert a.items().ids() == b.items().ids()
    for m in ("visual", "audio"):
        sa, sb = a.sequences(m), b.sequences(m)
        for row in range(len(sa)):
            np.testing.assert_array_equal(sa.get(row), sb.get(row))


def test_add_then_search_finds_new_items_and_old_ones_unchanged(corpus, ckpt, tmp_path):
    from index.build import add_items, remove_items

    root = tmp_path / "root"
    model = TrimodalModel.load(ckpt)
    items = [i for i in items_of(corpus) if i.id not in ("broken", "notes")]
    first = build_index(root, items[:6], model, checkpoint_hash(ckpt), workers=1, shard_size=4)
    old = IndexVersion.open(root)
    old_steps = {
        i: np.array(old.sequences("visual").get(r)) for r, i in enumerate(old.items().ids())
    }
    added = add_items(root, items[6:], model, checkpoint_hash(ckpt), workers=1)
    assert added.version != first.version and added.items == 10
    new = IndexVersion.open(root)
    for row, item_id in enumerate(new.items().ids()):
        if item_id in old_steps:  # carried over, not re-embedded: bit-identical
            np.testing.assert_array_equal(new.sequences("visual").get(row), old_steps[item_id])
    searcher = Searcher.open(root)
    for item_id in (items[7].id, items[2].id):
        hits = searcher.search(searcher.item_query(item_id, "visual"), "video", k=1).hits
        assert hits[0].id == item_id
    with pytest.raises(ValueError, match="already indexed"):
        add_items(root, items[6:7], model, checkpoint_hash(ckpt), work_dir=tmp_path / "w2")

    removed = remove_items(root, {items[7].id, items[0].id})
    assert removed.items == 8
    # derived versions keep the decoder's version with the items it measured
    assert IndexVersion.open(root).manifest["build"]["decode_version"] == DECODE_VERSION
    after = Searcher.open(root)
    assert items[7].id not in after.items.ids() and items[0].id not in after.items.ids()
    hits = after.search(after.item_query(items[2].id, "visual"), "video", k=8).hits
    assert {h.id for h in hits}.isdisjoint({items[7].id, items[0].id})
    with pytest.raises(KeyError):
        remove_items(root, {"no-such-id"})
    assert IndexVersion.open(root, first.version).items().ids() == [i.id for i in items[:6]]


def test_a_build_keeps_each_pictures_directions_where_the_model_reads_them(corpus, tmp_path):
    """A checkpoint whose drift reader is fitted (`models.drift`): the build stores each item's
    chances of each direction, as the model reads its decoded frames; one without: no store."""
    from dataclasses import replace

    from index.embed import DIRECTION_STORE
    from index.reader import read_item

    torch.manual_seed(0)
    model = TrimodalModel(replace(preset("tiny"), attribute_readers=True))
    assert model.attributes is not None and not model.knows_directions()
    model.attributes.drift.weight.data.normal_()
    model.attributes.drift_fitted.fill_(1.0)
    path = tmp_path / "ck"
    model.save(path)
    model = TrimodalModel.load(path)
    assert model.knows_directions()
    items = items_of(corpus)[:4]
    build_index(tmp_path / "root", items[:3], model, checkpoint_hash(path), workers=1)
    # an item added later gets its row, the others keep theirs
    add_items(tmp_path / "root", items[3:], model, checkpoint_hash(path), workers=1)
    version = IndexVersion.open(tmp_path / "root")
    assert DIRECTION_STORE in version.manifest["sequence_stores"]
    assert version.manifest["build"]["direction_classes"] == 3
    searcher = Searcher.open(tmp_path / "root")
    assert searcher.items.ids() == [i.id for i in items]
    cfg = model.cfg.visual
    for row, item in enumerate(items):
        frames = read_item(item, cfg.fps, cfg.image_size, model.cfg.audio.sample_rate, cfg.fit)
        want = model.picture_directions([frames.frames])
        assert want is not None
        stored = searcher._rows_of(searcher.directions, [row])
        assert stored is not None
        np.testing.assert_allclose(stored[0], want[0], atol=2e-3)  # float16 in the store
    # a model without a fitted drift reader: the build keeps no directions
    plain = tmp_path / "plain"
    TrimodalModel(preset("tiny")).save(plain)
    unread = TrimodalModel.load(plain)
    build_index(tmp_path / "bare", items, unread, checkpoint_hash(plain), workers=1)
    bare = IndexVersion.open(tmp_path / "bare")
    assert DIRECTION_STORE not in bare.manifest["sequence_stores"]
    assert Searcher.open(tmp_path / "bare").directions is None


def test_a_build_keeps_each_pictures_glyphs_where_the_model_reads_them(corpus, tmp_path):
    """A checkpoint whose shape and tint readers are fitted (`models.shape`): the build
    measures each item's glyphs on stills kept from its decoding and stores its chances of each
    kind and colour, as the model reads them from a decoding of their own; an item added later
    gets its row; one without the readers: no store."""
    from dataclasses import replace

    from index.embed import GLYPH_STORE
    from models.shape import read_shapes

    torch.manual_seed(0)
    model = TrimodalModel(replace(preset("tiny"), attribute_readers=True))
    assert model.attributes is not None and not model.knows_glyphs()
    model.attributes.shape.weight.data.normal_()
    model.attributes.shape_fitted.fill_(1.0)
    model.attributes.tint.weight.data.normal_()
    model.attributes.tint_fitted.fill_(1.0)
    path = tmp_path / "ck"
    model.save(path)
    model = TrimodalModel.load(path)
    assert model.knows_glyphs()
    items = items_of(corpus)[:4]
    build_index(tmp_path / "root", items[:3], model, checkpoint_hash(path), workers=1)
    add_items(tmp_path / "root", items[3:], model, checkpoint_hash(path), workers=1)
    version = IndexVersion.open(tmp_path / "root")
    assert GLYPH_STORE in version.manifest["sequence_stores"]
    assert version.manifest["build"]["glyph_classes"] == 13
    searcher = Searcher.open(tmp_path / "root")
    assert searcher.items.ids() == [i.id for i in items]
    read = 0
    for row, item in enumerate(items):
        found = read_shapes(item.media)
        assert not isinstance(found, str)
        want = model.glyph_reading([found[0]])
        assert want is not None
        stored = searcher._rows_of(searcher.glyphs, [row])
        assert stored is not None
        if np.isnan(want[0]).any():  # no glyph found: no row kept
            assert np.isnan(stored[0]).all()
            continue
        read += 1
        np.testing.assert_allclose(stored[0], want[0], atol=2e-3)  # float16 in the store
    assert read >= 3  # the test corpus's clips show glyphs
    plain = tmp_path / "plain"
    TrimodalModel(preset("tiny")).save(plain)
    unread = TrimodalModel.load(plain)
    build_index(tmp_path / "bare", items, unread, checkpoint_hash(plain), workers=1)
    bare = IndexVersion.open(tmp_path / "bare")
    assert GLYPH_STORE not in bare.manifest["sequence_stores"]
    assert Searcher.open(tmp_path / "bare").glyphs is None


def test_a_build_keeps_each_sounds_timbre_where_the_model_reads_it(corpus, tmp_path):
    """A checkpoint whose timbre reader is fitted (`models.timbre`) and whose policy reads it in
    the heard re-rank: the build measures each item's sound as decoded for the encoders and
    stores its chances of each kind × size, as the model reads them from a decoding of its own;
    an item added later gets its row. One without the reader, or whose policy keeps the what
    list alone: no store."""
    from dataclasses import replace

    from index.embed import TIMBRE_STORE, keeps_timbre
    from models.media import decode_audio
    from models.policy import SearchPolicy, save_policy
    from models.timbre import sound_runs
    from models.what_net import CLASSES as WHAT

    torch.manual_seed(0)
    model = TrimodalModel(replace(preset("tiny"), attribute_readers=True))
    assert model.attributes is not None and not model.knows_timbre()
    model.attributes.timbre.fitted.fill_(1.0)
    path = tmp_path / "ck"
    model.save(path)
    heard = SearchPolicy(True, {}, text_heard_agreement=0.5, text_heard_timbre=True)
    save_policy(path, heard)
    model = TrimodalModel.load(path)
    assert model.knows_timbre() and keeps_timbre(model)
    items = items_of(corpus)[:4]
    build_index(tmp_path / "root", items[:3], model, checkpoint_hash(path), workers=1)
    add_items(tmp_path / "root", items[3:], model, checkpoint_hash(path), workers=1)
    version = IndexVersion.open(tmp_path / "root")
    assert TIMBRE_STORE in version.manifest["sequence_stores"]
    assert version.manifest["build"]["timbre_classes"] == len(WHAT)
    searcher = Searcher.open(tmp_path / "root")
    read = 0
    for row, item in enumerate(items):
        audio, rate = decode_audio(item.media, sample_rate=model.cfg.audio.sample_rate)
        want = model.timbre_reading([sound_runs(audio, rate)])
        assert want is not None
        stored = searcher._rows_of(searcher.timbres, [row])
        assert stored is not None
        if np.isnan(want[0]).any():  # nothing stood above the background: no row kept
            assert np.isnan(stored[0]).all()
            continue
        read += 1
        np.testing.assert_allclose(stored[0], want[0], atol=2e-3)  # float16 in the store
    assert read >= 3  # the test corpus's clips sound their sources
    plain = tmp_path / "plain"
    TrimodalModel(preset("tiny")).save(plain)
    build_index(
        tmp_path / "bare", items, TrimodalModel.load(plain), checkpoint_hash(plain), workers=1
    )
    bare = IndexVersion.open(tmp_path / "bare")
    assert TIMBRE_STORE not in bare.manifest["sequence_stores"]
    assert Searcher.open(tmp_path / "bare").timbres is None
    # the reader fitted, but the policy keeps the what list alone: nothing measured or kept
    save_policy(path, replace(heard, text_heard_timbre=False))
    unread = TrimodalModel.load(path)
    assert unread.knows_timbre() and not keeps_timbre(unread)
    build_index(tmp_path / "lists", items[:2], unread, checkpoint_hash(path), workers=1)
    lists = IndexVersion.open(tmp_path / "lists")
    assert TIMBRE_STORE not in lists.manifest["sequence_stores"]
    assert "timbre_classes" not in lists.manifest["build"]
