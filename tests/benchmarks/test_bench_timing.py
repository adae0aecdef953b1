"""bench_timing: its peer (Chromaprint alignment), its ROC AUC, and a run on a tiny corpus."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import bench_timing as bt
from models.config import preset
from models.model import TrimodalModel
from tests.benchmarks.tiny_corpus import tiny_corpus
from training.metrics import roc_auc


def test_roc_auc_matches_counting_pairs():
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1, 1, 40).round(1), rng.normal(0, 1, 30).round(1)
    pairs = [(p > n) + 0.5 * (p == n) for p in pos for n in neg]
    assert roc_auc(pos, neg) == pytest.approx(np.mean(pairs))
    assert roc_auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert np.isnan(roc_auc(np.array([]), neg))


def test_fingerprint_alignment_finds_the_planted_offset_and_the_right_clip():
    rng = np.random.default_rng(1)
    targets = rng.integers(0, 2**32, (5, 40), dtype=np.uint64).astype(np.uint32)
    lengths = np.array([40, 40, 25, 40, 6])
    query = targets[3, 12:20].copy()
    query[2] ^= np.uint32(0xFF)  # a few flipped bits: still found
    ber, offset = bt.best_alignment(query, targets, lengths)
    assert int(ber.argmin()) == 3 and int(offset[3]) == 12
    assert ber[3] == pytest.approx(8 / (32 * 8))
    # a target shorter than the query is compared over its own length, never past it
    assert 0.0 <= ber[4] <= 1.0


@pytest.mark.skipif(shutil.which("fpcalc") is None, reason="fpcalc (libchromaprint-tools) missing")
def test_each_recipe_reports_its_shared_event_clips_apart():
    from training.datasets import ManifestItem

    def item(i: int, variant: str | None) -> ManifestItem:
        meta = {"variant": variant} if variant else {}
        return ManifestItem(f"c{i}", None, None, {}, "test", meta)

    items = [item(0, "mp4-8fps"), item(1, "webm"), item(2, "mp4-8fps"), item(3, None)]
    shared = torch.tensor([True, True, False, True])
    parts = bt.variant_subsets(items, shared)
    assert list(parts) == ["shared@mp4-8fps", "shared@webm"]
    assert parts["shared@mp4-8fps"].tolist() == [True, False, False, False]  # clip 2: no event
    assert parts["shared@webm"].tolist() == [False, True, False, False]
    assert bt.variant_subsets([item(0, None)], torch.tensor([True])) == {}


def test_each_frame_rate_reports_its_shared_event_clips_apart():
    from training.datasets import ManifestItem

    def item(i: int, fps: float | None, variant: str | None = None) -> ManifestItem:
        meta: dict = {} if fps is None else {"fps": fps}
        if variant:
            meta["variant"] = variant
        return ManifestItem(f"c{i}", None, None, {}, "test", meta)

    items = [item(0, 10.0), item(1, 24), item(2, 10.0), item(3, None), item(4, 24.0)]
    shared = torch.tensor([True, True, False, True, True])
    parts = bt.rate_subsets(items, shared)
    assert list(parts) == ["shared@10fps", "shared@24fps"]
    assert parts["shared@10fps"].tolist() == [True, False, False, False, False]  # 2: no event
    assert parts["shared@24fps"].tolist() == [False, True, False, False, True]
    # one rate, or rates that a recipe already names: nothing to tell apart
    assert bt.rate_subsets([item(0, 12.0), item(1, 12.0)], torch.tensor([True, True])) == {}
    named = [item(0, 8.0, "mkv-8fps"), item(1, 25.0, "mkv-25fps")]
    assert bt.rate_subsets(named, torch.tensor([True, True])) == {}


def test_chromaprint_finds_a_4s_excerpt_and_where_it_starts():
    rng = np.random.default_rng(2)
    sr = 16_000
    pool = []
    for _ in range(3):  # noise bursts at random times: distinct, fingerprintable sounds
        wave = rng.normal(0, 0.01, 8 * sr).astype(np.float32)
        for t in rng.uniform(0, 7.5, 12):
            a = int(t * sr)
            wave[a : a + 2000] += rng.normal(0, 0.5, 2000).astype(np.float32)
        pool.append(wave)
    start = 2.0
    excerpt = pool[1][int(start * sr) : int((start + 4) * sr)]
    out = bt.chromaprint_report(pool, [excerpt, excerpt[:sr]], [1, 1], [start, start], sr)
    assert out["n"] == 2 and out["no_fingerprint"] == 1  # one second is too short
    assert out["R@1"] == 0.5
    assert out["start_error_s"]["median"] < 0.15


def test_benchmark_on_a_tiny_corpus_writes_its_result(tmp_path: Path, results: Path):
    manifest = tiny_corpus(tmp_path / "c", clips=10, seed=4)
    TrimodalModel(preset("tiny")).save(tmp_path / "ckpt")
    args = ["--ckpt", str(tmp_path / "ckpt"), "--pool", f"tiny={manifest}"]
    args += ["--seconds", "1.5", "--chromaprint", "--cache", str(tmp_path / "cache")]
    out = bt.main(args)
    r = out["pools"]["tiny"]
    assert r["pool"] == 10 and not r["skipped"]
    assert set(r["full"]) == {"audio→video", "video→audio"}
    assert r["full"]["audio→video"]["service"]["all"]["n"] == 10
    assert r["excerpts"]["1.5s"]["queries"] == 10
    agreement = r["agreement"]
    assert agreement["clips"] == 10 and 0.0 <= agreement["swapped_auc"]["all"] <= 1.0
    assert out["search_policy"]["sequence_trained"] is False  # an untrained model says so
    written = list(results.glob("bench_timing-*.json"))
    assert len(written) == 1 and json.loads(written[0].read_text())["machine"]["cores"] >= 1


def test_the_offsets_are_taken_off_across_modalities_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """`--sequence-offsets`: whole clips and pieces of every length, sound against picture."""
    from training.cache import DecodeSpec, FeatureCache
    from training.datasets import load_manifest

    manifest = tiny_corpus(tmp_path / "c", clips=6, seed=5, seconds=4.5)
    model = TrimodalModel(preset("tiny"))
    items = load_manifest(manifest)
    cache = FeatureCache.build(items, DecodeSpec.for_model(model.cfg), tmp_path / "cache", 1)
    asked: dict[str, list] = {"full": [], "excerpts": []}
    direction, excerpts = bt._direction, bt.excerpt_report

    def full(*args, **kw):
        asked["full"].append((args[1], kw.get("sequence_offsets")))
        return direction(*args, **kw)

    def pieces(*args, **kw):
        asked["excerpts"].append((args[3], frozenset(kw.get("sequence_offsets", ()))))
        return excerpts(*args, **kw)

    monkeypatch.setattr(bt, "_direction", full)
    monkeypatch.setattr(bt, "excerpt_report", pieces)
    cross = frozenset({"audio→video", "video→audio"})
    for on in (True, False):
        asked["full"].clear()
        asked["excerpts"].clear()
        bt.measure_pool(model, items, cache, [1.5, 4.0], [], 20, sequence_offsets=on)
        assert dict(asked["full"]) == dict.fromkeys(cross, on)
        assert dict(asked["excerpts"]) == dict.fromkeys((1.5, 4.0), cross if on else frozenset())
