"""A text query searching videos leans on the attribute readers where the index's policy says so
(`models.attributes`), through its vector for the picture index: nothing per item is stored."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from index.build import Entry, publish_entries
from index.query import QueryEncoder
from index.search import Query, Searcher
from index.version import ItemRecord
from models.attributes import ATTRIBUTES
from models.config import preset
from models.model import TrimodalModel
from models.policy import SearchPolicy

DIM = 16


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x)).astype(np.float32)


def _build(root: Path, policy: SearchPolicy) -> None:
    """Item 0 a little nearer the query's vector; item 1 along the colour's direction."""
    e = np.eye(DIM, dtype=np.float32)
    vectors = [_unit(1.05 * e[0] + e[2]), _unit(e[0] + e[1]), _unit(e[3])]

    def entries():
        for i, v in enumerate(vectors):
            yield Entry(
                ItemRecord(f"item{i}", f"/m/{i}.mp4", 6.0, True, True),
                {"visual": v, "audio": v},
                {"visual": v[None], "audio": v[None]},
            )

    _publish(root, entries(), policy)


def _publish(root: Path, entries, policy: SearchPolicy) -> None:
    publish_entries(
        root,
        entries,
        model_hash="x",
        dim=DIM,
        steps_per_second=4.0,
        build_info={"search_policy": policy.to_dict()},
    )


def _query(leans: bool) -> Query:
    e = np.eye(DIM, dtype=np.float32)
    found = {name: np.zeros(DIM, np.float32) for name in ATTRIBUTES}
    found["colour"] = e[1]
    found["tempo"] = -e[1]  # an attribute the policy does not lean on
    return Query("text", e[0], leans=found if leans else None)


def test_the_policys_attributes_lean_a_text_query_toward_what_it_names(tmp_path: Path) -> None:
    policy = SearchPolicy(True, {}, text_attributes=("colour",), text_attribute_weight=0.5)
    _build(tmp_path / "lean", policy)
    searcher = Searcher.open(tmp_path / "lean")
    assert [h.id for h in searcher.search(_query(True), "video", k=2).hits] == ["item1", "item0"]
    # a query without directions (a checkpoint without readers), or audio as the target: as before
    assert searcher.search(_query(False), "video", k=1).hits[0].id == "item0"
    assert searcher.search(_query(True), "audio", k=1).hits[0].id == "item0"
    # an index whose policy leans on nothing (records before the fields): as before
    _build(tmp_path / "plain", replace(policy, text_attributes=(), text_attribute_weight=None))
    plain = Searcher.open(tmp_path / "plain")
    assert plain.search(_query(True), "video", k=1).hits[0].id == "item0"
    # the tempo's direction points away from item 1: leaning on it as well undoes the colour's
    _build(tmp_path / "both", replace(policy, text_attributes=("colour", "tempo")))
    both = Searcher.open(tmp_path / "both")
    assert both.search(_query(True), "video", k=1).hits[0].id == "item0"


def test_a_sentence_gets_its_directions_from_the_same_pass_of_the_tower() -> None:
    torch.manual_seed(0)
    model = TrimodalModel(replace(preset("tiny"), attribute_readers=True)).eval()
    encoder = QueryEncoder(model)
    plain = encoder.text("a small red bell rings slowly").query
    assert plain.leans is None  # readers never fitted: no lean
    readers = model.attributes
    assert readers is not None
    torch.nn.init.normal_(readers.text.weight)
    torch.nn.init.normal_(readers.picture.weight)
    readers.trained.fill_(1.0)
    query = encoder.text("a small red bell rings slowly").query
    assert query.leans is not None and set(query.leans) == set(ATTRIBUTES)
    assert np.allclose(query.pooled, plain.pooled, atol=1e-6)  # the sentence vector unchanged
    assert all(v.shape == (model.cfg.embed_dim,) for v in query.leans.values())
    assert any(np.abs(v).sum() > 0 for v in query.leans.values())


def test_fused_indexes_score_every_candidate_exactly(tmp_path: Path) -> None:
    """A text query searching videos fuses the picture's and the sound's index. An item one index
    did not return is scored from the stores, not given that index's lowest returned score: here
    the picture's best item is silent, and the sound's list is full of clips nothing like the
    sentence to look at; only the exact score puts first the item both indexes like."""
    e = np.eye(DIM, dtype=np.float32)

    def at(score: float) -> np.ndarray:  # a unit vector whose cosine with e[0] is `score`
        return (score * e[0] + np.sqrt(1 - score**2) * e[1]).astype(np.float32)

    scores = {"both": (0.8, 0.7), "silent-look": (0.9, 0.0)}
    scores |= {f"noise{i}": (0.0, 0.9) for i in range(4)}

    def entries():
        for name, (seen, heard) in scores.items():
            yield Entry(
                ItemRecord(name, f"/m/{name}.mp4", 6.0, True, True),
                {"visual": at(seen), "audio": at(heard)},
                {"visual": at(seen)[None], "audio": at(heard)[None]},
            )
        # a silent video: scored by its picture alone, as the evaluation scores it
        yield Entry(
            ItemRecord("silent", "/m/silent.mp4", 6.0, True, False),
            {"visual": at(0.75), "audio": None},
            {"visual": at(0.75)[None], "audio": np.zeros((0, DIM), np.float32)},
        )

    _publish(tmp_path, entries(), SearchPolicy(True, {}, text_audio_share=0.4))
    hits = Searcher.open(tmp_path).search(Query("text", e[0]), "video", k=1).hits
    assert hits[0].id == "both"  # 0.6 × 0.8 + 0.4 × 0.7, against 0.6 × 0.9 for the silent look
    assert abs(hits[0].score - (0.6 * 0.8 + 0.4 * 0.7)) < 1e-3  # stored in half precision
    hits = Searcher.open(tmp_path).search(Query("text", e[0]), "video", k=2).hits
    assert [h.id for h in hits] == ["both", "silent"]
    assert abs(hits[1].score - 0.75) < 1e-3
