"""Sound landmarks in an index: a piece of an indexed recording comes first, placed where it was
cut, whatever the learned vectors say; kept through derived versions; an index built before
them searches as before."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from index.build import Entry, entries_from_version, publish_entries
from index.embed import PEAKS_STORE
from index.search import ItemFilter, Query, Searcher
from index.version import IndexVersion, ItemRecord
from models import fingerprint as fp
from tests.models.test_fingerprint import SR, recording

DIM, STEPS = 16, 24


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _entries(n: int, with_peaks: bool = True):
    rng = np.random.default_rng(0)
    for i in range(n):
        seq = _unit(rng.normal(size=(STEPS, DIM)))
        events = {"audio_peaks": fp.to_store(fp.peaks(recording(i), SR))} if with_peaks else {}
        yield Entry(
            ItemRecord(f"item{i}", f"/m/{i}.wav", 6.0, False, True),
            {"visual": None, "audio": _unit(seq.mean(0))},
            {"visual": np.zeros((0, DIM), np.float16), "audio": seq},
            events,
        )


def _build(root: Path, n: int = 40, with_peaks: bool = True) -> Searcher:
    publish_entries(root, _entries(n, with_peaks), model_hash="x", dim=DIM, steps_per_second=4.0)
    return Searcher.open(root)


def _piece(row: int, start: float, seconds: float = 2.5) -> Query:
    """A piece of item `row`'s recording whose learned vectors point anywhere but at it."""
    rng = np.random.default_rng(99)
    first = round(start * SR)
    wave = recording(row)[first : first + round(seconds * SR)]
    steps = _unit(rng.normal(size=(10, DIM)))
    return Query("audio", _unit(steps.mean(0)), steps, landmarks=tuple(fp.query_peaks(wave, SR)))


def test_a_piece_of_an_indexed_recording_comes_first_where_it_was_cut(tmp_path: Path) -> None:
    searcher = _build(tmp_path / "root")
    assert searcher.peaks is not None
    found = searcher.search(_piece(17, 2.2), "audio", k=5)
    first = found.hits[0]
    assert first.id == "item17" and first.landmark_votes is not None
    assert first.landmark_votes >= fp.MIN_VOTES
    assert abs(first.start_s - 2.2) <= 0.02 and abs(first.end_s - 4.7) <= 0.02
    assert first.score > max(h.score for h in found.hits[1:])
    assert all(h.landmark_votes is None for h in found.hits[1:])
    assert "landmarks" in found.timings_ms
    # without landmarks the same learned vectors do not find it
    plain = Query("audio", _piece(17, 2.2).pooled, _piece(17, 2.2).sequence)
    assert searcher.search(plain, "audio", k=5).hits[0].id != "item17"


def test_a_filter_applies_to_what_the_landmarks_find(tmp_path: Path) -> None:
    searcher = _build(tmp_path / "root")
    where = ItemFilter(max_duration_s=1.0)  # every item is 6 s long
    assert searcher.search(_piece(17, 2.2), "audio", k=5, where=where).hits == []


def test_sound_against_picture_does_not_use_the_landmarks(tmp_path: Path) -> None:
    searcher = _build(tmp_path / "root")
    found = searcher.search(_piece(17, 2.2), "video", k=5)
    assert all(h.landmark_votes is None for h in found.hits)


def test_landmarks_survive_a_derived_version(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _build(root)
    entries = list(entries_from_version(IndexVersion.open(root), exclude=["item3"]))
    assert all(e.events["audio_peaks"].shape[1] == fp.STORE_DIM for e in entries)
    publish_entries(root, iter(entries), model_hash="x", dim=DIM, steps_per_second=4.0)
    searcher = Searcher.open(root)
    hit = searcher.search(_piece(30, 0.5), "audio", k=1).hits[0]
    assert hit.id == "item30" and hit.landmark_votes is not None
    assert searcher.search(_piece(3, 0.5), "audio", k=1).hits[0].landmark_votes is None


def test_items_embedded_without_landmarks_are_searched_as_before(tmp_path: Path) -> None:
    searcher = _build(tmp_path / "root", with_peaks=False)
    assert searcher.peaks is not None  # the store is there, empty for every item
    assert len(searcher.version.sequences(PEAKS_STORE).get(0)) == 0
    found = searcher.search(_piece(17, 2.2), "audio", k=5)
    assert len(found.hits) == 5 and all(h.landmark_votes is None for h in found.hits)
