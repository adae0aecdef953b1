"""The sources each item shows and sounds in an index (`models.what_net`): kept per item, carried
through a derived version, and weighed in the re-rank only where the policy says so."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from index.build import Entry, publish_entries, remove_items
from index.embed import what_store
from index.search import Query, Searcher
from index.version import ItemRecord
from models.policy import DIRECTIONS, SearchPolicy
from models.what_net import CLASSES

DIM, STEPS, N = 16, 8, 40
C = len(CLASSES)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _policy(what_weight: dict[str, float]) -> dict:
    """Re-rank every direction by the pooled score alone (steps weighed 0), plus the sources'
    agreement in `what_weight`'s directions."""
    return SearchPolicy(
        sequence_trained=True,
        rerank=dict.fromkeys(DIRECTIONS, True),
        rerank_weight=dict.fromkeys(DIRECTIONS, 0.0),
        what_weight=what_weight,
    ).to_dict()


def _lists(rng: np.random.Generator) -> np.ndarray:
    """(N, C) class probabilities: one or two classes each, confidently."""
    out = np.full((N, C), 0.02, np.float32)
    for row in out:
        row[rng.choice(C, int(rng.integers(1, 3)), replace=False)] = 0.98
    return out


def _build(root: Path, policy: dict, named: bool = True) -> dict:
    rng = np.random.default_rng(0)
    made = {
        "pooled": _unit(rng.normal(size=(N, DIM))),
        "shown": _lists(rng),
        "sounded": _lists(rng),
    }

    def entries():
        for i in range(N):
            seq = _unit(rng.normal(size=(STEPS, DIM)))
            events = {"visual_what": made["shown"][i], "audio_what": made["sounded"][i]}
            yield Entry(
                ItemRecord(f"item{i}", f"/m/{i}.mp4", 2.0, True, i != 5),  # item5: no sound
                {"visual": made["pooled"][i], "audio": None if i == 5 else made["pooled"][i]},
                {"visual": seq, "audio": seq if i != 5 else np.zeros((0, DIM), np.float16)},
                events if named else {},
            )

    info = {"search_policy": policy, **({"what_classes": C} if named else {})}
    publish_entries(root, entries(), model_hash="x", dim=DIM, steps_per_second=4.0, build_info=info)
    return made


def _sound_like(made: dict, pooled_of: int, sources_of: int) -> Query:
    """A sound whose pooled vector is `pooled_of`'s and whose sources are what `sources_of`
    shows."""
    rng = np.random.default_rng(3)
    steps = _unit(rng.normal(size=(STEPS, DIM)))
    return Query("audio", made["pooled"][pooled_of], steps, what=made["shown"][sources_of])


def test_the_sources_agreement_reorders_where_the_policy_weighs_it(tmp_path: Path) -> None:
    made = _build(tmp_path / "on", _policy({"audio→video": 8.0}))
    searcher = Searcher.open(tmp_path / "on")
    assert set(searcher.what) == {"visual", "audio"}
    query = _sound_like(made, pooled_of=3, sources_of=17)
    assert searcher.search(query, "video", k=3).hits[0].id == "item17"
    # forced off, or a direction the policy does not weigh: the pooled order
    assert searcher.search(query, "video", k=3, rerank=False).hits[0].id == "item3"
    assert searcher.search(query, "audio", k=3).hits[0].id == "item3"
    # a query without a list (the model has no networks) searches as before
    plain = Query("audio", query.pooled, query.sequence)
    assert searcher.search(plain, "video", k=3).hits[0].id == "item3"


def test_without_a_weight_or_without_the_stores_nothing_changes(tmp_path: Path) -> None:
    made = _build(tmp_path / "off", _policy({}))
    query = _sound_like(made, pooled_of=3, sources_of=17)
    assert Searcher.open(tmp_path / "off").search(query, "video", k=3).hits[0].id == "item3"
    _build(tmp_path / "bare", _policy({"audio→video": 8.0}), named=False)
    bare = Searcher.open(tmp_path / "bare")
    assert bare.what == {}
    assert what_store("visual") not in bare.version.manifest["sequence_stores"]
    assert bare.search(query, "video", k=3).hits[0].id == "item3"


def test_the_lists_survive_a_derived_version_and_make_item_queries(tmp_path: Path) -> None:
    root = tmp_path / "root"
    made = _build(root, _policy({"video→audio": 8.0}))
    remove_items(root, {"item0"})
    searcher = Searcher.open(root)
    assert searcher.version.manifest["build"]["what_classes"] == C
    row = searcher.items.by_id("item17")
    assert row is not None
    kept = np.asarray(searcher.what["visual"].get(row[0]), np.float32)[0]
    np.testing.assert_allclose(kept, made["shown"][17], atol=1e-3)  # float16 in the store
    assert len(searcher.what["audio"].get(searcher.items.by_id("item5")[0])) == 0  # no sound
    # "more like this" carries the item's own list
    query = searcher.item_query("item17", "visual")
    assert query.what is not None
    np.testing.assert_allclose(query.what, made["shown"][17], atol=1e-3)
