"""Event envelopes in an index: kept per item, carried through add/remove, scanned for candidates
the pooled first pass misses, and weighed in the re-rank only where the policy says so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from index.build import Entry, entries_from_version, publish_entries, remove_items
from index.search import ItemFilter, Query, Searcher
from index.version import IndexVersion, ItemRecord
from models.events import standardise
from models.policy import DIRECTIONS, SearchPolicy

DIM, STEPS, BINS, RATE = 16, 24, 72, 12.0


def _policy(event_weight: float) -> dict:
    """Re-rank everything, with the envelopes for audio→video; short queries never re-ranked."""
    weights = {"audio→video": event_weight} if event_weight else {}
    return SearchPolicy(
        sequence_trained=True,
        rerank=dict.fromkeys(DIRECTIONS, True),
        rerank_weight=dict.fromkeys(DIRECTIONS, 0.0),
        event_weight=weights,
        short=SearchPolicy(True, dict.fromkeys(DIRECTIONS, False)),
    ).to_dict()


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _build(root: Path, n: int, event_weight: float, rate: float | None = RATE) -> dict:
    """n items with random vectors and envelopes; returns them for making queries."""
    rng = np.random.default_rng(0)
    made = {"pooled": [], "events": []}

    def entries():
        for i in range(n):
            seq = _unit(rng.normal(size=(STEPS, DIM)))
            pooled = _unit(seq.mean(0))
            picture = standardise(rng.standard_normal(BINS))
            made["pooled"].append(pooled)
            made["events"].append(picture)
            yield Entry(
                ItemRecord(f"item{i}", f"/m/{i}.mp4", 6.0, True, True),
                {"visual": pooled, "audio": pooled},
                {"visual": seq, "audio": seq},
                {"visual": picture, "audio": standardise(rng.standard_normal(BINS))},
            )

    info = {"search_policy": _policy(event_weight)}
    if rate is not None:
        info["event_rate"] = rate
    publish_entries(root, entries(), model_hash="x", dim=DIM, steps_per_second=4.0, build_info=info)
    return made


def _query_for(made: dict, row: int, seed: int = 5) -> Query:
    """A sound whose pooled vector and steps are unrelated to `row`'s, whose envelope is row's
    picture envelope one bin early (as a frame shows an event after it sounds)."""
    rng = np.random.default_rng(seed)
    pooled = _unit(rng.normal(size=DIM))
    steps = _unit(rng.normal(size=(STEPS, DIM)))
    events = np.roll(made["events"][row], -1)
    return Query("audio", pooled, steps, events)


def test_the_event_scan_finds_what_the_pooled_pass_cannot(tmp_path: Path) -> None:
    made = _build(tmp_path / "root", 300, event_weight=2.0)
    searcher = Searcher.open(tmp_path / "root")
    assert searcher.event_rate == RATE and set(searcher.events) == {"visual", "audio"}
    query = _query_for(made, 123)
    found = searcher.search(query, "video", k=5, rerank_k=20)
    assert found.reranked and found.hits[0].id == "item123"
    # without the envelopes the re-rank only reorders the pooled top 20, which lacks it
    off = searcher.search(query, "video", k=5, rerank_k=20, rerank=False)
    assert "item123" not in {h.id for h in off.hits}
    # a filter applies to the scan's candidates too
    where = ItemFilter(has_audio=False)
    assert searcher.search(query, "video", k=5, rerank_k=20, where=where).hits == []


def test_directions_without_an_event_weight_do_not_use_the_envelopes(tmp_path: Path) -> None:
    made = _build(tmp_path / "root", 300, event_weight=0.0)
    searcher = Searcher.open(tmp_path / "root")
    found = searcher.search(_query_for(made, 123), "video", k=5, rerank_k=20)
    assert "item123" not in {h.id for h in found.hits}


def test_an_index_without_envelopes_searches_as_before(tmp_path: Path, caplog) -> None:
    made = _build(tmp_path / "root", 50, event_weight=2.0, rate=None)
    with caplog.at_level("WARNING", logger="trimodal.index"):
        searcher = Searcher.open(tmp_path / "root")
    assert "keeps no event envelopes" in caplog.text
    assert searcher.events == {} and searcher.event_rate is None
    hits = searcher.search(_query_for(made, 7), "video", k=5, rerank_k=10).hits
    assert len(hits) == 5  # re-ranked by the steps alone, no scan, no error


def test_envelopes_survive_a_derived_version(tmp_path: Path) -> None:
    root = tmp_path / "root"
    made = _build(root, 40, event_weight=2.0)
    remove_items(root, {"item3"})
    version = IndexVersion.open(root)
    assert version.manifest["build"]["event_rate"] == RATE
    kept = list(entries_from_version(version))
    assert len(kept) == 39 and kept[3].record.id == "item4"
    np.testing.assert_allclose(kept[3].events["visual"], made["events"][4], atol=2e-3)  # float16
    searcher = Searcher.open(root)
    assert searcher.search(_query_for(made, 20), "video", k=1, rerank_k=5).hits[0].id == "item20"


@pytest.mark.parametrize("length", [30, 72])
def test_an_excerpt_envelope_is_found_inside_its_item_and_placed_to_the_bin(
    tmp_path: Path, length: int
) -> None:
    made = _build(tmp_path / "root", 200, event_weight=2.0)
    searcher = Searcher.open(tmp_path / "root")
    q = _query_for(made, 77)
    piece = np.asarray(made["events"][77][20 : 20 + length])
    hit = searcher.search(Query("audio", q.pooled, q.sequence[:10], piece), "video", k=3).hits[0]
    assert hit.id == "item77"
    # the segment is where the envelope lies (bin 20 of 12 a second), not on the steps' grid
    assert hit.start_s == pytest.approx(20 / RATE)
    assert hit.end_s == pytest.approx(min(6.0, (20 + len(piece)) / RATE))


def test_a_short_query_gets_the_short_defaults(tmp_path: Path) -> None:
    made = _build(tmp_path / "root", 60, event_weight=2.0)
    searcher = Searcher.open(tmp_path / "root")
    q = _query_for(made, 9)
    brief = Query("audio", q.pooled, q.sequence[:6], q.events[:18])  # 1.5 s at 4 steps a second
    assert not searcher.search(brief, "video", k=3).reranked
    assert searcher.search(brief, "video", k=3, rerank=True).reranked  # a request can force it
    assert searcher.search(q, "video", k=3).reranked
