"""Dense sound prints in an index: a piece of a recording the landmarks cannot pin down (one
engine's hum, recorded in different rooms) comes first, placed where it was cut; a piece both find
carries both; filters apply; kept through derived versions; an index without them uses the
landmarks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from index.build import Entry, entries_from_version, publish_entries
from index.embed import PRINTS_STORE
from index.search import ItemFilter, Query, Searcher
from index.version import IndexVersion, ItemRecord
from models import fingerprint as fp
from models import prints as pr
from tests.models.test_fingerprint import SR, recording

DIM, STEPS = 16, 24
SCENES = 20  # items 0-19 are scenes, 20-39 hums


def hum(seed: int, seconds: float = 6.0) -> np.ndarray:
    """One engine's hum, its level swelling at 1.3 Hz, in a room of its own: room tone 50 dB
    below it. Every peak the landmarks can pick is the engine's, the same in every recording
    (they rightly refuse); the prints, which describe every band, tell the rooms apart."""
    t = np.arange(round(seconds * SR)) / SR
    engine = sum(np.sin(2 * np.pi * 150.0 * k * t) / k for k in range(1, 7))
    engine = engine * (1.0 + 0.3 * np.sin(2 * np.pi * 1.3 * t))
    room = np.random.default_rng(1000 + seed).standard_normal(len(t))
    return (0.1 * engine + 3e-4 * room).astype(np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _wave(row: int) -> np.ndarray:
    return recording(row) if row < SCENES else hum(row - SCENES)


def _entries(n: int, with_prints: bool = True):
    rng = np.random.default_rng(0)
    for i in range(n):
        seq = _unit(rng.normal(size=(STEPS, DIM)))
        events = {"audio_peaks": fp.to_store(fp.peaks(_wave(i), SR))}
        if with_prints:
            events["audio_prints"] = pr.to_store(pr.prints(_wave(i), SR))
        yield Entry(
            ItemRecord(f"item{i}", f"/m/{i}.wav", 6.0, False, True),
            {"visual": None, "audio": _unit(seq.mean(0))},
            {"visual": np.zeros((0, DIM), np.float16), "audio": seq},
            events,
        )


def _build(root: Path, n: int = 2 * SCENES, with_prints: bool = True) -> Searcher:
    entries = _entries(n, with_prints)
    publish_entries(root, entries, model_hash="x", dim=DIM, steps_per_second=4.0)
    return Searcher.open(root)


def _piece(row: int, start: float, seconds: float = 2.5) -> Query:
    """A piece of item `row`'s recording whose learned vectors point anywhere but at it."""
    rng = np.random.default_rng(99)
    first = round(start * SR)
    wave = _wave(row)[first : first + round(seconds * SR)]
    steps = _unit(rng.normal(size=(10, DIM)))
    return Query(
        "audio",
        _unit(steps.mean(0)),
        steps,
        landmarks=tuple(fp.query_peaks(wave, SR)),
        prints=tuple(pr.query_prints(wave, SR)),
    )


def test_a_hum_the_landmarks_cannot_place_is_found_by_its_prints(tmp_path: Path) -> None:
    searcher = _build(tmp_path / "root")
    assert searcher.prints is not None
    query = _piece(27, 1.7)
    found = searcher.search(query, "audio", k=5)
    first = found.hits[0]
    assert first.id == "item27"
    assert first.print_ber is not None and first.print_ber <= pr.MATCH_BER
    assert first.landmark_votes is None  # every hum holds the same peaks: the landmarks refuse
    assert abs(first.start_s - 1.7) <= pr.HOP_S / 2 and abs(first.end_s - 4.2) <= pr.HOP_S / 2
    assert first.score > max(h.score for h in found.hits[1:])
    assert all(h.print_ber is None for h in found.hits[1:])
    assert "prints" in found.timings_ms
    # the landmarks alone say nothing of it, and the learned vectors point elsewhere
    alone = Query("audio", query.pooled, query.sequence, landmarks=query.landmarks)
    hits = searcher.search(alone, "audio", k=5).hits
    assert hits[0].id != "item27" and all(h.landmark_votes is None for h in hits)


def test_a_scene_found_by_both_carries_both(tmp_path: Path) -> None:
    searcher = _build(tmp_path / "root")
    first = searcher.search(_piece(12, 2.2), "audio", k=3).hits[0]
    assert first.id == "item12"
    assert first.landmark_votes is not None and first.landmark_votes >= fp.MIN_VOTES
    assert first.print_ber is not None and first.print_ber <= 0.12
    assert abs(first.start_s - 2.2) <= pr.HOP_S / pr.PHASES


def test_a_filter_applies_to_what_the_prints_find(tmp_path: Path) -> None:
    searcher = _build(tmp_path / "root")
    where = ItemFilter(max_duration_s=1.0)  # every item is 6 s long
    assert searcher.search(_piece(27, 1.7), "audio", k=5, where=where).hits == []


def test_sound_against_picture_does_not_use_the_prints(tmp_path: Path) -> None:
    searcher = _build(tmp_path / "root")
    found = searcher.search(_piece(27, 1.7), "video", k=5)
    assert all(h.print_ber is None for h in found.hits)


def test_prints_survive_a_derived_version(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _build(root)
    entries = list(entries_from_version(IndexVersion.open(root), exclude=["item25"]))
    assert all(e.events["audio_prints"].shape[1] == pr.STORE_DIM for e in entries)
    publish_entries(root, iter(entries), model_hash="x", dim=DIM, steps_per_second=4.0)
    searcher = Searcher.open(root)
    hit = searcher.search(_piece(30, 0.5), "audio", k=1).hits[0]
    assert hit.id == "item30" and hit.print_ber is not None
    assert all(h.print_ber is None for h in searcher.search(_piece(25, 0.5), "audio", k=3).hits)


def test_items_embedded_without_prints_are_found_by_their_landmarks(tmp_path: Path) -> None:
    searcher = _build(tmp_path / "root", with_prints=False)
    assert searcher.prints is not None  # the store is there, empty for every item
    assert len(searcher.version.sequences(PRINTS_STORE).get(0)) == 0
    scene = searcher.search(_piece(12, 2.2), "audio", k=3).hits[0]
    assert scene.id == "item12" and scene.landmark_votes is not None and scene.print_ber is None
    hits = searcher.search(_piece(27, 1.7), "audio", k=5).hits
    assert all(h.print_ber is None and h.landmark_votes is None for h in hits)
