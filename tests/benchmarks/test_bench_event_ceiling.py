"""bench_event_ceiling: a perfect encoder of event timing, and where it must guess."""

from __future__ import annotations

import pytest

from benchmarks.bench_event_ceiling import ceiling, event_train
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
