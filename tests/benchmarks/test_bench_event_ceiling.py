"""bench_event_ceiling: a perfect encoder of event timing, and where it must guess."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmarks.bench_event_ceiling import PAIRINGS, ceiling, event_train, main
from models.config import preset
from models.model import TrimodalModel
from tests.benchmarks.tiny_corpus import tiny_corpus
from training.datasets import ManifestItem


def _clip(name: str, kind: str, events: list[float], **extra) -> ManifestItem:
    meta = {
        "duration_s": 3.0,
        "fps": 12.0,
        "sources": [{"kind": kind, "size": "small", "role": "main", "events": events}],
        **extra,
    }
    return ManifestItem(name, None, None, {}, "test", meta)


def test_the_train_holds_the_shown_and_heard_events_only_at_their_frames():
    meta = {
        "duration_s": 1.0,
        "sources": [
            {"kind": "bell", "size": "small", "role": "main", "events": [0.0, 0.49, 0.999]},
            {"kind": "drum", "size": "large", "role": "silent", "events": [0.25]},
        ],
    }
    train = event_train(meta, 12.0)
    assert len(train) == 12
    assert train.nonzero()[0].tolist() == [0, 5, 11]


def test_a_clip_whose_events_another_clip_repeats_can_only_be_guessed_unless_its_source_differs():
    same = [0.3, 0.9, 1.7, 2.2]
    items = [
        _clip("a", "bell", same),
        _clip("b", "drum", same),  # the same events to the frame, another source
        _clip("c", "bell", [0.1, 1.2, 1.3, 2.8]),
        _clip("d", "clock", [0.5, 1.0, 2.5], misaligned=True),  # never a query
    ]
    whole = ceiling(items, None, queries=10)
    assert whole["queries"] == 3
    # a and b tie on timing (each found first half of the time), c is alone; kind breaks the tie
    assert whole["R@1 timing"] == pytest.approx((0.5 + 0.5 + 1.0) / 3, abs=1e-4)
    assert whole["R@1 timing + kind and size"] == 1.0
    pieces = ceiling(items, 1.5, queries=10, seed=3)
    assert pieces["R@1 timing"] <= whole["R@1 timing"] + 1e-9
    assert pieces["R@1 timing + kind and size"] <= 1.0


def test_noise_is_not_a_ceiling_a_distinct_pattern_is_found_first():
    items = [
        _clip(f"c{n}", "bell", [0.1 + 0.25 * n, 1.4 + 0.1 * n, 2.6 - 0.05 * n]) for n in range(6)
    ]
    assert ceiling(items, None, queries=6)["R@1 timing"] == 1.0


def test_a_corpus_without_metadata_is_refused():
    with pytest.raises(ValueError, match="metadata"):
        ceiling([ManifestItem("x", None, None, {}, "test", {})], 1.5, queries=1)


def _pool(n: int = 12) -> list[ManifestItem]:
    rng = np.random.default_rng(5)
    return [
        _clip(f"c{k}", ("bell", "drum")[k % 2], sorted(rng.uniform(0.0, 2.9, 4).round(3).tolist()))
        for k in range(n)
    ]


def test_an_envelope_as_good_as_the_events_gives_the_ceiling_and_noise_gives_less():
    items = _pool()
    trains = [event_train(i.meta, 12.0) for i in items]
    perfect = ceiling(items, 1.5, queries=12, seed=1)
    # the same events, scaled and shifted (a correlation does not see either): the same pieces,
    # the same figures, on either side or both
    scaled = [3.0 * t - 1.0 for t in trains]
    for query_side, target_side in ((scaled, None), (None, scaled), (scaled, scaled)):
        assert ceiling(items, 1.5, 12, 1, 12.0, query_side, target_side) == perfect
    # envelopes that know nothing of the events (each side its own noise): the pieces are still
    # cut (and counted) as before, and found no better
    rng = np.random.default_rng(0)
    heard, seen = ([rng.standard_normal(len(t)).astype(np.float32) for t in trains] for _ in "ab")
    lost = ceiling(items, 1.5, 12, 1, 12.0, heard, seen)
    assert lost["queries"] == perfect["queries"]
    assert lost["R@1 timing"] < perfect["R@1 timing"]
    assert lost["R@1 timing + kind and size"] < perfect["R@1 timing + kind and size"]
    # the same noise on both sides is a perfect match to itself: a piece finds its own clip
    assert ceiling(items, 1.5, 12, 1, 12.0, heard, heard)["R@1 timing"] == 1.0
    with pytest.raises(ValueError, match="an envelope per item"):
        ceiling(items, 1.5, 12, 1, 12.0, trains[:-1], None)


def test_with_a_checkpoint_each_pairing_of_real_and_true_envelopes_is_measured(tmp_path, results):
    manifest = tiny_corpus(tmp_path / "c", clips=8, seed=4, workers=2)
    ckpt = tmp_path / "ckpt"
    torch.manual_seed(0)
    TrimodalModel(preset("tiny")).save(ckpt)
    args = ["--pool", f"t={manifest}", "--pieces", "1.5", "--queries", "8", "--tag", "t"]
    out = main([*args, "--ckpt", str(ckpt), "--cache", str(tmp_path / "cache")])
    rows = out["pools"]["t"]["lengths"]
    expected = {"1.5s", "whole"} | {
        f"{key} {a} → {b}" for key in ("1.5s", "whole") for a, b in PAIRINGS
    }
    assert set(rows) == expected and out["pools"]["t"]["skipped"] == {}
    assert out["fps"] == preset("tiny").visual.fps
    for name, m in rows.items():
        assert m["queries"] == rows[name.split()[0]]["queries"]  # the same clips every time
        assert 0.0 <= m["R@1 timing"] <= m["R@1 timing + kind and size"] <= 1.0
    written = json.loads(next(results.glob("bench_event_ceiling-t-*.json")).read_text())
    assert written["ckpt"] == str(ckpt)
