"""A text query searching videos leans on the attribute readers where the index's policy says so
(`models.attributes`), through its vector for the picture index: nothing per item is stored."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from index.build import Entry, publish_entries
from index.query import QueryEncoder
from index.search import ItemFilter, Query, Searcher
from index.version import ItemRecord
from models.attributes import (
    AGREEMENT_FOUND,
    AGREEMENT_K,
    ATTRIBUTES,
    CLASSES,
    AttributeReading,
    PictureReader,
    agreement,
    columns,
)
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

    _publish(root, _items(vectors), policy)


def _items(vectors, lists: np.ndarray | None = None):
    """An item per vector (`item0`, …), its picture and its sound both that vector; with
    `lists`, each item's what network lists (the same for both streams)."""
    for i, v in enumerate(vectors):
        yield Entry(
            ItemRecord(f"item{i}", f"/m/{i}.mp4", 6.0, True, True),
            {"visual": v, "audio": v},
            {"visual": v[None], "audio": v[None]},
            {} if lists is None else {"visual_what": lists[i], "audio_what": lists[i]},
        )


def _publish(root: Path, entries, policy: SearchPolicy) -> None:
    publish_entries(
        root,
        entries,
        model_hash="x",
        dim=DIM,
        steps_per_second=4.0,
        build_info={"search_policy": policy.to_dict()},
    )


def _publish_listed(root: Path, vectors, lists: np.ndarray, policy: SearchPolicy) -> None:
    """An index of `_items(vectors, lists)`: it keeps each item's what network lists."""
    from models.what_net import CLASSES as WHAT

    publish_entries(
        root,
        _items(vectors, lists),
        model_hash="x",
        dim=DIM,
        steps_per_second=4.0,
        build_info={"search_policy": policy.to_dict(), "what_classes": len(WHAT)},
    )


def _publish_going(root: Path, vectors, going: np.ndarray, policy: SearchPolicy) -> None:
    """An index of an item per vector whose picture's directions (`models.drift`) are `going`'s
    row."""
    entries = (
        Entry(
            ItemRecord(f"item{i}", f"/m/{i}.mp4", 6.0, True, True),
            {"visual": v, "audio": v},
            {"visual": v[None], "audio": v[None]},
            {"visual_direction": going[i]},
        )
        for i, v in enumerate(vectors)
    )
    publish_entries(
        root,
        entries,
        model_hash="x",
        dim=DIM,
        steps_per_second=4.0,
        build_info={"search_policy": policy.to_dict(), "direction_classes": 3},
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


def test_a_sentence_gets_its_kinds_at_its_nouns_by_each_rule_of_the_count() -> None:
    """`QueryEncoder.text` reads the kinds at the sentence's nouns by the second noun's own
    rule and by its lead (`AttributeReading.heard`, `heard_lead`), as the model reads them from
    the same states; readers calibrated before the lead give the first alone."""
    torch.manual_seed(0)
    model = TrimodalModel(replace(preset("tiny"), attribute_readers=True)).eval()
    readers = model.attributes
    assert readers is not None
    torch.nn.init.normal_(readers.text.weight)
    torch.nn.init.normal_(readers.noun.weight)
    readers.trained.fill_(1.0)
    hidden = readers.words.shape[1]
    readers.set_words(
        torch.randn(14, hidden), torch.tensor(columns("kind") * 2), {"kind": (4.0, 1.5)}
    )
    sentence = "a small red bell rings slowly while a drum thunders"
    readers.set_nouns(-1e3, 1e3, 0.05)  # a noun always; a second by its own rule never
    assert QueryEncoder(model).text(sentence).query.reading.heard_lead is None
    readers.set_nouns(-1e3, 1e3, 0.05, lead=-1e3)  # by its lead always
    reading = QueryEncoder(model).text(sentence).query.reading
    assert reading is not None and reading.heard is not None and reading.heard_lead is not None
    with torch.inference_mode():
        states, mask = model.text.backbone.states([sentence])
        probabilities, _ = model.attribute_reading(states, mask)
        own = model.heard_reading(states, mask, probabilities)
        by_lead = model.heard_reading(states, mask, probabilities, lead=True)
    assert own is not None and by_lead is not None
    np.testing.assert_allclose(reading.heard, own[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(reading.heard_lead, by_lead[0].numpy(), atol=1e-6)
    kinds = columns("kind")
    # two nouns read by the lead, one by the own rule: the lead's reading names more
    assert reading.heard_lead[kinds].sum() > reading.heard[kinds].sum()
    assert reading.heard_sounds is None and reading.heard_lead_sounds is None
    # with a reader of sound words, and no noun found: both rules' readings again with the kinds
    # its sound words name, as the model reads them
    torch.nn.init.normal_(readers.sound.weight)
    readers.sound_fitted.fill_(1.0)
    readers.set_nouns(1e3, 1e3, 0.05, lead=-1e3)  # no noun is ever found
    reading = QueryEncoder(model).text(sentence).query.reading
    assert reading.heard_sounds is not None and reading.heard_lead_sounds is not None
    with torch.inference_mode():
        found = model.heard_readings(states, mask, probabilities)
        sounds = readers.sound_probabilities(states, mask)
    assert set(found) == {(False, False), (True, False), (False, True), (True, True)}
    np.testing.assert_allclose(reading.heard_sounds, found[False, True][0].numpy(), atol=1e-6)
    np.testing.assert_allclose(reading.heard_lead_sounds, found[True, True][0].numpy(), atol=1e-6)
    np.testing.assert_allclose(
        reading.heard_sounds[kinds], sounds[0].clamp(1e-6, 1 - 1e-6).numpy(), atol=1e-6
    )
    np.testing.assert_allclose(reading.heard, probabilities[0].numpy(), atol=1e-6)
    # with names of a small and a large source, every heard reading takes the size as heard:
    # the text reader's logit and the likeness's, half each; the sentence's own reading keeps
    # the text reader's
    size = columns("size")
    readers.set_pitch_words(torch.randn(4, hidden), torch.tensor(size * 2), 8.0, 0.5)
    reading = QueryEncoder(model).text(sentence).query.reading
    with torch.inference_mode():
        found = model.heard_readings(states, mask, probabilities)
        liked = readers.heard_size_logits(states, mask)[0]
    mixed = torch.sigmoid(0.5 * torch.logit(probabilities[0, size]) + 0.5 * liked).numpy()
    for heard in (reading.heard, reading.heard_lead, reading.heard_sounds):
        np.testing.assert_allclose(heard[size], mixed, atol=1e-5)
    np.testing.assert_allclose(reading.heard_lead_sounds, found[True, True][0].numpy(), atol=1e-6)
    np.testing.assert_allclose(reading.probabilities, probabilities[0].numpy(), atol=1e-6)
    assert np.abs(mixed - probabilities[0, size].numpy()).max() > 1e-3


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


def _reader(dim: int, seed: int) -> PictureReader:
    rng = np.random.default_rng(seed)
    weight = rng.normal(0.0, 3.0, (len(CLASSES), dim)).astype(np.float32)
    return PictureReader(weight, rng.normal(0.0, 0.5, len(CLASSES)).astype(np.float32))


def test_the_readers_agreement_reranks_a_leaning_querys_videos(tmp_path: Path) -> None:
    """Item 0 is a little nearer the sentence; the picture reader says item 1 shows the size the
    sentence names and item 0 the other: the agreement puts item 1 first where the policy says."""
    e = np.eye(DIM, dtype=np.float32)
    weight = np.zeros((len(CLASSES), DIM), np.float32)
    small, large = columns("size")
    weight[small], weight[large] = 8 * e[2], -8 * e[2]
    reader = PictureReader(weight, np.zeros(len(CLASSES), np.float32))
    probabilities = np.full(len(CLASSES), 0.5, np.float32)
    probabilities[[small, large]] = (0.95, 0.05)
    vectors = [_unit(e[0] - 0.3 * e[2]), _unit(e[0] + 0.35 * e[2]), _unit(e[3] - e[0])]

    leans = {name: np.zeros(DIM, np.float32) for name in ATTRIBUTES}
    reading = AttributeReading(probabilities, reader)
    policy = SearchPolicy(
        True,
        {},
        text_audio_share=0.0,
        text_attributes=("size",),
        text_attribute_weight=0.1,
        text_attribute_agreement=1.0,
    )
    _publish(tmp_path / "agree", _items(vectors), policy)
    searcher = Searcher.open(tmp_path / "agree")
    query = Query("text", e[0], leans=leans, reading=reading)
    result = searcher.search(query, "video", k=2)
    hits = result.hits
    assert [h.id for h in hits] == ["item1", "item0"]
    assert hits[0].pooled_score < hits[1].pooled_score  # the first pass had them the other way
    # the sentence's reading of the one attribute that weighed in, for the user to see
    assert result.read_as is not None and list(result.read_as) == ["size"]
    assert [v for v, _ in result.read_as["size"]] == ["small"]
    assert abs(result.read_as["size"][0][1] - 0.95) < 1e-6
    assert searcher.search(replace(query, reading=None), "video", k=1).read_as is None
    # without the sentence's reading, or where the policy re-ranks by nothing: the first pass
    assert searcher.search(replace(query, reading=None), "video", k=1).hits[0].id == "item0"
    _publish(tmp_path / "off", _items(vectors), replace(policy, text_attribute_agreement=None))
    assert Searcher.open(tmp_path / "off").search(query, "video", k=1).hits[0].id == "item0"
    # the lean alone still weighs the size: the reading is still shown
    assert Searcher.open(tmp_path / "off").search(query, "video", k=1).read_as == {
        "size": [("small", float(np.float32(0.95)))]
    }


@pytest.mark.parametrize(
    ("items", "sure", "weight", "found"),
    [(40, False, 0.5, 0), (3 * AGREEMENT_K, True, 2.0, AGREEMENT_FOUND)],
    ids=["first-pass", "found-among-every-item"],
)
def test_the_service_reranks_by_agreement_as_the_evaluation_does(
    tmp_path: Path, items: int, sure: bool, weight: float, found: int
) -> None:
    """The same vectors, sentences and readers: the index's ranking is
    `training.evaluate.agreement_rerank`'s (the stores hold half precision: scores to 1e-2),
    and the agreement reorders it. Where the policy says so, the items whose agreement with the
    sentence is bounded highest (`agreement_bound`) join the first pass's best `AGREEMENT_K` in
    the index as `agreement_rerank`'s `found` adds them: and they rank."""
    from training.evaluate import agreement_rerank

    rng = np.random.default_rng(8 if sure else 3)
    vectors = np.stack([_unit(rng.normal(size=DIM)) for _ in range(items)])
    queries = np.stack([_unit(rng.normal(size=DIM)) for _ in range(8)])
    reader = _reader(DIM, 9 if sure else 4)
    text = (
        rng.choice([0.03, 0.97], (len(queries), len(CLASSES)))
        if sure
        else rng.uniform(0.02, 0.98, (len(queries), len(CLASSES)))
    ).astype(np.float32)
    names = ("size", "direction", "colour")
    policy = SearchPolicy(
        True,
        {},
        text_audio_share=0.0,
        text_attributes=names,
        text_attribute_weight=0.1,
        text_attribute_agreement=weight,
        text_agreement_found=found,
    )
    _publish(tmp_path, _items(vectors), policy)
    searcher = Searcher.open(tmp_path)
    leans = {name: np.zeros(DIM, np.float32) for name in ATTRIBUTES}
    first = torch.from_numpy(queries @ vectors.T)
    pictures = torch.from_numpy(reader.probabilities(vectors))
    expected = agreement_rerank(first, torch.from_numpy(text), pictures, names, weight, found=found)
    assert not torch.equal(expected.topk(5).indices, first.topk(5).indices)  # it reorders
    if found:  # and the ones found among every item rank
        alone = agreement_rerank(first, torch.from_numpy(text), pictures, names, weight)
        assert not torch.equal(expected.topk(5).indices, alone.topk(5).indices)
    for qi, q in enumerate(queries):
        reading = AttributeReading(text[qi], reader)
        hits = searcher.search(Query("text", q, leans=leans, reading=reading), "video", k=5).hits
        best = expected[qi].topk(5)
        assert [h.row for h in hits] == best.indices.tolist()
        assert np.allclose([h.score for h in hits], best.values.numpy(), atol=1e-2)


def test_an_item_the_first_pass_misses_is_found_by_what_the_sentence_names(
    tmp_path: Path,
) -> None:
    """One item of many is far from the sentence's vector but its picture shows what the
    sentence names: found among every item, it comes first; a policy that finds none, or a
    filter that keeps it out, leaves it out; an item without a picture is never found."""
    rng = np.random.default_rng(11)
    e = np.eye(DIM, dtype=np.float32)
    small, large = columns("size")
    weight = np.zeros((len(CLASSES), DIM), np.float32)
    weight[small], weight[large] = 12 * e[5], -12 * e[5]
    reader = PictureReader(weight, np.zeros(len(CLASSES), np.float32))
    probabilities = np.full(len(CLASSES), 0.5, np.float32)
    probabilities[[small, large]] = (0.99, 0.01)
    noise = 0.8 * rng.normal(size=(2 * AGREEMENT_K, DIM)).astype(np.float32)
    noise[:, 5] = 0.0  # every other item is large, surely
    others = [_unit(e[0] + n - 2.0 * e[5]) for n in noise]
    far = _unit(-e[0] + 0.6 * e[5])  # the first pass's last; the only small one

    def entries():
        for i, v in enumerate(others):
            yield Entry(
                ItemRecord(f"item{i}", f"/m/{i}.mp4", 6.0, True, True),
                {"visual": v, "audio": v},
                {"visual": v[None], "audio": v[None]},
            )
        yield Entry(
            ItemRecord("far", "/m/far.mp4", 9.0, True, True),
            {"visual": far, "audio": far},
            {"visual": far[None], "audio": far[None]},
        )
        yield Entry(  # a sound alone: the agreement has no picture of it to find it by
            ItemRecord("heard", "/m/heard.wav", 6.0, False, True),
            {"visual": None, "audio": -e[0]},
            {"visual": np.zeros((0, DIM), np.float32), "audio": -e[0][None]},
        )

    policy = SearchPolicy(
        True,
        {},
        text_audio_share=0.4,
        text_attributes=("size",),
        text_attribute_weight=0.01,
        text_attribute_agreement=2.0,
        text_agreement_found=AGREEMENT_FOUND,
    )
    _publish(tmp_path / "found", entries(), policy)
    _publish(tmp_path / "alone", entries(), replace(policy, text_agreement_found=0))
    leans = {name: np.zeros(DIM, np.float32) for name in ATTRIBUTES}
    query = Query("text", e[0], leans=leans, reading=AttributeReading(probabilities, reader))
    found = Searcher.open(tmp_path / "found")
    found.prepare_agreement(reader)  # as the service does on loading a version
    assert found._agreeing is not None and found._agreeing[0] is reader
    hits = found.search(query, "video", k=3).hits
    assert hits[0].id == "far" and "heard" not in {h.id for h in hits}
    assert hits[0].pooled_score < min(h.pooled_score for h in hits[1:])
    alone = Searcher.open(tmp_path / "alone")
    alone.prepare_agreement(reader)
    assert alone._agreeing is None  # a policy that finds none keeps no table
    assert "far" not in {h.id for h in alone.search(query, k=3).hits}
    kept_out = found.search(query, "video", k=3, where=ItemFilter(max_duration_s=7.0)).hits
    assert "far" not in {h.id for h in kept_out} and len(kept_out) == 3
    assert "text_agreement_found" not in replace(policy, text_agreement_found=0).to_dict()


def test_the_service_reads_the_stored_directions_as_the_evaluation_does(tmp_path: Path) -> None:
    """With each picture's directions kept (`models.drift`), the index's ranking is
    `agreement_rerank`'s over `picture_probabilities`' columns (`with_directions`)."""
    from models.attributes import with_directions
    from training.evaluate import agreement_rerank

    rng = np.random.default_rng(5)
    vectors = np.stack([_unit(rng.normal(size=DIM)) for _ in range(40)])
    queries = np.stack([_unit(rng.normal(size=DIM)) for _ in range(6)])
    going = rng.uniform(0.01, 0.99, (len(vectors), 3)).astype(np.float16).astype(np.float32)
    reader = _reader(DIM, 6)
    text = rng.uniform(0.02, 0.98, (len(queries), len(CLASSES))).astype(np.float32)
    names = ("direction", "colour")
    policy = SearchPolicy(
        True,
        {},
        text_audio_share=0.0,
        text_attributes=names,
        text_attribute_weight=0.1,
        text_attribute_agreement=1.0,
    )
    _publish_going(tmp_path, vectors, going, policy)
    searcher = Searcher.open(tmp_path)
    leans = {name: np.zeros(DIM, np.float32) for name in ATTRIBUTES}
    pictures = with_directions(reader.probabilities(vectors), going)
    expected = agreement_rerank(
        torch.from_numpy(queries @ vectors.T),
        torch.from_numpy(text),
        torch.from_numpy(pictures),
        names,
        1.0,
    )
    without = agreement_rerank(
        torch.from_numpy(queries @ vectors.T),
        torch.from_numpy(text),
        torch.from_numpy(reader.probabilities(vectors)),
        names,
        1.0,
    )
    assert not torch.equal(expected.topk(5).indices, without.topk(5).indices)  # they count
    for qi, q in enumerate(queries):
        reading = AttributeReading(text[qi], reader)
        hits = searcher.search(Query("text", q, leans=leans, reading=reading), "video", k=5).hits
        best = expected[qi].topk(5)
        assert [h.row for h in hits] == best.indices.tolist()
        assert np.allclose([h.score for h in hits], best.values.numpy(), atol=1e-2)


def test_an_item_without_a_picture_counts_as_the_reader_unsure(tmp_path: Path) -> None:
    """A sound-only item a text query's sound index returns has no picture for the reader: it
    gets the agreement of probabilities of one half (log 0.501 per class), not an error."""
    e = np.eye(DIM, dtype=np.float32)
    reader = _reader(DIM, 5)
    probabilities = np.full(len(CLASSES), 0.9, np.float32)
    seen = _unit(e[0] + 0.2 * e[4])

    def entries():
        yield Entry(
            ItemRecord("shown", "/m/shown.mp4", 6.0, True, True),
            {"visual": seen, "audio": seen},
            {"visual": seen[None], "audio": seen[None]},
        )
        yield Entry(
            ItemRecord("heard", "/m/heard.wav", 6.0, False, True),
            {"visual": None, "audio": e[0]},
            {"visual": np.zeros((0, DIM), np.float32), "audio": e[0][None]},
        )

    names = ("size", "tempo")
    policy = SearchPolicy(
        True,
        {},
        text_audio_share=0.4,
        text_attributes=names,
        text_attribute_weight=0.1,
        text_attribute_agreement=2.0,
    )
    _publish(tmp_path, entries(), policy)
    leans = {name: np.zeros(DIM, np.float32) for name in ATTRIBUTES}
    query = Query("text", e[0], leans=leans, reading=AttributeReading(probabilities, reader))
    hits = {h.id: h for h in Searcher.open(tmp_path).search(query, "video", k=2).hits}
    assert set(hits) == {"shown", "heard"}
    unsure = 2.0 * np.log(0.5 + 1e-3)
    assert abs(hits["heard"].score - (hits["heard"].pooled_score + unsure)) < 1e-4
    shown = agreement(probabilities[None], reader.probabilities(seen[None]), names)[0]
    assert abs(hits["shown"].score - (hits["shown"].pooled_score + 2.0 * shown)) < 1e-2


def _two_items_and_a_sentence_naming(
    attribute: str, read: tuple[float, ...]
) -> tuple[list[np.ndarray], Query, SearchPolicy]:
    """Two items, the first a little nearer the sentence, whose pooled vectors the picture reader
    reads as one half for everything; a sentence read as `read` for `attribute`'s values (one
    half for the rest); a policy that leans on and agrees on that attribute alone."""
    e = np.eye(DIM, dtype=np.float32)
    reader = PictureReader(np.zeros((len(CLASSES), DIM), np.float32), np.zeros(len(CLASSES)))
    probabilities = np.full(len(CLASSES), 0.5, np.float32)
    probabilities[columns(attribute)] = read
    vectors = [_unit(e[0] + 0.1 * e[2]), _unit(e[0] + 0.2 * e[3])]
    policy = SearchPolicy(
        True,
        {},
        text_audio_share=0.0,
        text_attributes=(attribute,),
        text_attribute_weight=0.1,
        text_attribute_agreement=1.0,
    )
    leans = {name: np.zeros(DIM, np.float32) for name in ATTRIBUTES}
    query = Query("text", e[0], leans=leans, reading=AttributeReading(probabilities, reader))
    return vectors, query, policy


def test_the_agreement_reads_kind_and_size_from_the_index_what_lists(tmp_path: Path) -> None:
    """The pooled vector's reader cannot tell the two items' sizes apart; the picture what
    network's lists the index keeps can: the sentence's "small" puts the small one first."""
    from models.what_net import CLASSES as WHAT
    from models.what_net import class_of

    vectors, query, policy = _two_items_and_a_sentence_naming("size", (0.95, 0.05))
    lists = np.full((2, len(WHAT)), 0.01, np.float32)
    lists[0, class_of("bell", "large")] = 0.97
    lists[1, class_of("bell", "small")] = 0.97
    _publish_listed(tmp_path / "named", vectors, lists, policy)
    hits = Searcher.open(tmp_path / "named").search(query, "video", k=2).hits
    assert [h.id for h in hits] == ["item1", "item0"]
    # an index without the lists: the reader's one half for both, the first pass's order
    _publish(tmp_path / "plain", _items(vectors), policy)
    hits = Searcher.open(tmp_path / "plain").search(query, "video", k=2).hits
    assert [h.id for h in hits] == ["item0", "item1"]


def test_the_agreement_reads_the_direction_from_where_each_picture_goes(tmp_path: Path) -> None:
    """The pooled vector's reader cannot tell which way the two items go; the directions the
    index keeps (`models.drift`) can: the sentence's "right-to-left" puts that item first, and an
    index without them keeps the first pass's order."""
    vectors, query, policy = _two_items_and_a_sentence_naming("direction", (0.05, 0.95, 0.05))
    going = np.array([[0.97, 0.02, 0.03], [0.02, 0.96, 0.05]], np.float32)
    _publish_going(tmp_path / "going", vectors, going, policy)
    going_index = Searcher.open(tmp_path / "going")
    assert [h.id for h in going_index.search(query, "video", k=2).hits] == ["item1", "item0"]
    # a derived version (an item removed) keeps the store and the other item's row
    from index.build import remove_items

    remove_items(tmp_path / "going", {"item0"})
    derived = Searcher.open(tmp_path / "going")
    assert derived.directions is not None
    np.testing.assert_allclose(derived._rows_of(derived.directions, [0])[0], going[1], atol=1e-3)
    # an index without them: the reader's one half for both, the first pass's order
    _publish(tmp_path / "plain", _items(vectors), policy)
    hits = Searcher.open(tmp_path / "plain").search(query, "video", k=2).hits
    assert [h.id for h in hits] == ["item0", "item1"]


def test_the_agreement_reads_the_kind_from_each_pictures_glyphs_outlines(tmp_path: Path) -> None:
    """The pooled vector's reader cannot tell the two items' kinds apart; the kinds the index
    keeps by the glyphs' outlines (`models.shape`) can, over the what network's lists: the
    sentence's "drum" puts the drum first; an item whose outlines were not read keeps the
    lists' reading; a derived version keeps the rows."""
    from models.what_net import CLASSES as WHAT
    from models.what_net import class_of

    drum = ATTRIBUTES["kind"].index("drum")
    read = tuple(0.9 if k == drum else 0.05 for k in range(len(ATTRIBUTES["kind"])))
    vectors, query, policy = _two_items_and_a_sentence_naming("kind", read)
    policy = replace(policy, text_agreement_attributes=("kind",))
    # the what network names both bells; the outlines say the second is a drum
    lists = np.full((2, len(WHAT)), 0.01, np.float32)
    lists[:, class_of("bell", "small")] = 0.97
    kinds = np.full((2, 13), 1 / 6, np.float32)  # the kind read; the colour unsure
    kinds[:, :7] = 0.02
    kinds[0, ATTRIBUTES["kind"].index("bell")] = 0.9
    kinds[1, drum] = 0.9
    build_info = {"search_policy": policy.to_dict(), "what_classes": len(WHAT), "glyph_classes": 13}

    def publish(root: Path, glyphs: np.ndarray) -> None:
        entries = (
            Entry(
                ItemRecord(f"item{i}", f"/m/{i}.mp4", 6.0, True, True),
                {"visual": v, "audio": v},
                {"visual": v[None], "audio": v[None]},
                {"visual_what": lists[i], "audio_what": lists[i], "visual_glyph": glyphs[i]},
            )
            for i, v in enumerate(vectors)
        )
        publish_entries(
            root, entries, model_hash="x", dim=DIM, steps_per_second=4.0, build_info=build_info
        )

    publish(tmp_path / "kinds", kinds)
    searcher = Searcher.open(tmp_path / "kinds")
    assert searcher.glyphs is not None
    assert [h.id for h in searcher.search(query, "video", k=2).hits] == ["item1", "item0"]
    from index.build import remove_items

    remove_items(tmp_path / "kinds", {"item0"})
    derived = Searcher.open(tmp_path / "kinds")
    assert derived.glyphs is not None
    np.testing.assert_allclose(derived._rows_of(derived.glyphs, [0])[0], kinds[1], atol=1e-3)
    # outlines not read (a NaN row is kept as none): the lists' bells for both, the first pass's
    # order
    publish(tmp_path / "unread", np.full((2, 13), np.nan, np.float32))
    blank = Searcher.open(tmp_path / "unread")
    assert blank._rows_of(blank.glyphs, [0, 1]) is None  # no row kept for either
    assert [h.id for h in blank.search(query, "video", k=2).hits] == ["item0", "item1"]


def test_a_text_query_searching_sounds_reranks_by_the_kind_and_size_heard(tmp_path: Path) -> None:
    """The sound what network's lists tell the two sounds' sizes and kinds apart; where the
    index's policy says so, the sentence's "small bell" puts the small bell first, each score
    the first pass's + the weight × their agreement on `HEARD`, as the evaluation scores it;
    without the policy's weight, or without lists, the first pass's order stands."""
    from models.attributes import HEARD, heard_probabilities
    from models.what_net import CLASSES as WHAT
    from models.what_net import class_of
    from training.evaluate import agreement_rerank

    e = np.eye(DIM, dtype=np.float32)
    reader = PictureReader(np.zeros((len(CLASSES), DIM), np.float32), np.zeros(len(CLASSES)))
    probabilities = np.full(len(CLASSES), 0.1, np.float32)
    probabilities[columns("size")[0]] = 0.9  # small
    probabilities[columns("kind")[ATTRIBUTES["kind"].index("bell")]] = 0.9
    vectors = [_unit(e[0] + 0.1 * e[2]), _unit(e[0] + 0.2 * e[3]), _unit(e[0] + 0.3 * e[4])]
    lists = np.full((3, len(WHAT)), 0.01, np.float32)
    lists[0, class_of("bell", "large")] = 0.97
    lists[1, class_of("drum", "small")] = 0.97
    lists[2, class_of("bell", "small")] = 0.97  # the farthest in the first pass
    policy = SearchPolicy(True, {}, text_heard_agreement=1.0)
    assert SearchPolicy.from_dict(policy.to_dict()).heard_agreement() == 1.0
    query = Query("text", e[0], reading=AttributeReading(probabilities, reader))
    _publish_listed(tmp_path / "named", vectors, lists, policy)
    result = Searcher.open(tmp_path / "named").search(query, "audio", k=3)
    hits = result.hits
    assert [h.id for h in hits] == ["item2", "item0", "item1"]
    assert result.read_as is not None
    assert {n: [v for v, _ in found] for n, found in result.read_as.items()} == {
        "kind": ["bell"],
        "size": ["small"],
    }
    first = torch.from_numpy(e[0][None] @ np.stack(vectors).T)
    expected = agreement_rerank(
        first,
        torch.from_numpy(probabilities[None]),
        torch.from_numpy(heard_probabilities(lists)),
        HEARD,
        1.0,
    )[0]
    assert np.allclose([h.score for h in hits], expected[[2, 0, 1]].numpy(), atol=1e-2)
    # the same index searched for videos: no re-rank by what is heard
    videos = Searcher.open(tmp_path / "named").search(query, "video", k=3)
    assert [h.id for h in videos.hits] == ["item0", "item1", "item2"]
    assert videos.read_as is None  # nothing of the reading weighed in
    # a policy without the weight, or an index without lists: the first pass's order
    _publish_listed(tmp_path / "off", vectors, lists, SearchPolicy(True, {}))
    off = Searcher.open(tmp_path / "off").search(query, "audio", k=3)
    assert [h.id for h in off.hits] == ["item0", "item1", "item2"]
    assert off.read_as is None
    _publish(tmp_path / "plain", _items(vectors), policy)
    hits = Searcher.open(tmp_path / "plain").search(query, "audio", k=3).hits
    assert [h.id for h in hits] == ["item0", "item1", "item2"]


def test_a_search_among_sounds_agrees_with_the_kinds_read_at_the_nouns_where_the_policy_says(
    tmp_path: Path,
) -> None:
    """The text reader says "bell" where the sentence's noun says "drum" (its reading at the
    nouns, `AttributeReading.heard`): a policy that measured the nouns help re-ranks by them and
    shows them as what the sentence was read to name, scored as the evaluation scores it; one
    that did not, or a query without them, re-ranks by the text reader's."""
    from models.attributes import HEARD, heard_probabilities
    from models.what_net import CLASSES as WHAT
    from models.what_net import class_of
    from training.evaluate import agreement_rerank

    e = np.eye(DIM, dtype=np.float32)
    reader = PictureReader(np.zeros((len(CLASSES), DIM), np.float32), np.zeros(len(CLASSES)))
    bell, drum = (columns("kind")[ATTRIBUTES["kind"].index(k)] for k in ("bell", "drum"))
    probabilities = np.full(len(CLASSES), 0.1, np.float32)
    probabilities[columns("size")[0]] = 0.9  # small
    probabilities[bell] = 0.9
    at_nouns = probabilities.copy()
    at_nouns[bell], at_nouns[drum] = 0.02, 0.97
    vectors = [_unit(e[0] + 0.1 * e[2]), _unit(e[0] + 0.2 * e[3]), _unit(e[0] + 0.3 * e[4])]
    lists = np.full((3, len(WHAT)), 0.01, np.float32)
    lists[0, class_of("bell", "large")] = 0.97
    lists[1, class_of("bell", "small")] = 0.97
    lists[2, class_of("drum", "small")] = 0.97  # the farthest in the first pass
    nouns = SearchPolicy(True, {}, text_heard_agreement=1.0, text_heard_nouns=True)
    query = Query("text", e[0], reading=AttributeReading(probabilities, reader, at_nouns))
    _publish_listed(tmp_path / "nouns", vectors, lists, nouns)
    result = Searcher.open(tmp_path / "nouns").search(query, "audio", k=3)
    assert [h.id for h in result.hits] == ["item2", "item1", "item0"]
    assert result.read_as is not None and [v for v, _ in result.read_as["kind"]] == ["drum"]
    first = torch.from_numpy(e[0][None] @ np.stack(vectors).T)
    expected = agreement_rerank(
        first,
        torch.from_numpy(at_nouns[None]),
        torch.from_numpy(heard_probabilities(lists)),
        HEARD,
        1.0,
    )[0]
    assert np.allclose([h.score for h in result.hits], expected[[2, 1, 0]].numpy(), atol=1e-2)
    # the text reader's kinds: the small bell first
    _publish_listed(tmp_path / "reader", vectors, lists, replace(nouns, text_heard_nouns=False))
    result = Searcher.open(tmp_path / "reader").search(query, "audio", k=3)
    assert result.hits[0].id == "item1"
    assert result.read_as is not None and [v for v, _ in result.read_as["kind"]] == ["bell"]
    bare = Query("text", e[0], reading=AttributeReading(probabilities, reader))
    assert Searcher.open(tmp_path / "nouns").search(bare, "audio", k=3).hits[0].id == "item1"

    # the second noun counted by its lead names the drum where the own rule's reading names the
    # bell: the policy that counts by the lead reads that one; a query without it, the reader's
    def searched(name: str, reading: AttributeReading, policy: SearchPolicy | None = None):
        """The sounds a query with `reading` finds in the index `name` (published first with
        `policy` where given)."""
        if policy is not None:
            _publish_listed(tmp_path / name, vectors, lists, policy)
        return Searcher.open(tmp_path / name).search(Query("text", e[0], reading=reading), "audio")

    counted = AttributeReading(probabilities, reader, probabilities.copy(), at_nouns)
    lead = replace(nouns, text_heard_lead=True)
    by_lead = searched("lead", counted, lead)
    assert [h.id for h in by_lead.hits[:3]] == ["item2", "item1", "item0"]
    assert by_lead.read_as is not None and [v for v, _ in by_lead.read_as["kind"]] == ["drum"]
    own = searched("nouns", counted)
    assert own.hits[0].id == "item1"
    found = searched("lead", AttributeReading(probabilities, reader, at_nouns))
    assert found.hits[0].id == "item1"
    # a sentence whose noun was not found, its sound words naming the drum: a policy that reads
    # them takes that reading (by the rule of the count it keeps); one that does not, the other
    unfound = AttributeReading(probabilities, reader, probabilities, probabilities, None, at_nouns)
    by_sounds = replace(lead, text_heard_sound_words=True)
    heard = searched("sounds", unfound, by_sounds)
    assert [h.id for h in heard.hits[:3]] == ["item2", "item1", "item0"]
    assert heard.read_as is not None and [v for v, _ in heard.read_as["kind"]] == ["drum"]
    plain = searched("lead", unfound)
    assert plain.hits[0].id == "item1"
    # the own rule's reading with sound words is not there: the text reader's kinds
    missing = searched("sounds-own", unfound, replace(by_sounds, text_heard_lead=False))
    assert missing.hits[0].id == "item1"


def test_a_sounds_timbre_joins_its_what_list_in_the_heard_rerank(tmp_path: Path) -> None:
    """The what network's lists call all three sounds large bells; how they sound
    (`models.timbre`, the index's `audio.timbre` rows) says the third is a small bell, which the
    two readings together (`heard_reading`) put first for the sentence's "small bell", scored as
    the evaluation scores it, where the policy says the timbre is read. A policy that measured
    the lists alone better reads them alone; a sound whose timbre was not read (a NaN row, kept
    as none) keeps its list's reading; a derived version keeps the rows."""
    from index.build import remove_items
    from models.attributes import HEARD, heard_reading
    from models.what_net import CLASSES as WHAT
    from models.what_net import class_of
    from training.evaluate import agreement_rerank

    e = np.eye(DIM, dtype=np.float32)
    reader = PictureReader(np.zeros((len(CLASSES), DIM), np.float32), np.zeros(len(CLASSES)))
    probabilities = np.full(len(CLASSES), 0.1, np.float32)
    probabilities[columns("size")[0]] = 0.9  # small
    probabilities[columns("kind")[ATTRIBUTES["kind"].index("bell")]] = 0.9
    vectors = [_unit(e[0] + 0.1 * e[2]), _unit(e[0] + 0.2 * e[3]), _unit(e[0] + 0.3 * e[4])]
    lists = np.full((3, len(WHAT)), 0.01, np.float32)
    lists[:, class_of("bell", "large")] = 0.97
    timbres = np.full((3, len(WHAT)), 0.01 / 13, np.float32)
    timbres[0, class_of("bell", "large")] = 0.99
    timbres[1, class_of("drum", "large")] = 0.99
    timbres[2, class_of("bell", "small")] = 0.99
    policy = SearchPolicy(True, {}, text_heard_agreement=1.0, text_heard_timbre=True)
    assert SearchPolicy.from_dict(policy.to_dict()).text_heard_timbre
    query = Query("text", e[0], reading=AttributeReading(probabilities, reader))

    def publish(root: Path, rows: np.ndarray, policy: SearchPolicy = policy) -> None:
        entries = (
            Entry(
                ItemRecord(f"item{i}", f"/m/{i}.mp4", 6.0, True, True),
                {"visual": v, "audio": v},
                {"visual": v[None], "audio": v[None]},
                {"visual_what": lists[i], "audio_what": lists[i], "audio_timbre": rows[i]},
            )
            for i, v in enumerate(vectors)
        )
        build_info = {
            "search_policy": policy.to_dict(),
            "what_classes": len(WHAT),
            "timbre_classes": len(WHAT),
        }
        publish_entries(
            root, entries, model_hash="x", dim=DIM, steps_per_second=4.0, build_info=build_info
        )

    publish(tmp_path / "heard", timbres)
    searcher = Searcher.open(tmp_path / "heard")
    assert searcher.timbres is not None
    hits = searcher.search(query, "audio", k=3).hits
    assert [h.id for h in hits] == ["item2", "item0", "item1"]
    first = torch.from_numpy(e[0][None] @ np.stack(vectors).T)
    expected = agreement_rerank(
        first,
        torch.from_numpy(probabilities[None]),
        torch.from_numpy(heard_reading(lists, timbres, 3)),
        HEARD,
        1.0,
    )[0]
    assert np.allclose([h.score for h in hits], expected[[2, 0, 1]].numpy(), atol=1e-2)
    remove_items(tmp_path / "heard", {"item0"})
    derived = Searcher.open(tmp_path / "heard")
    assert derived.timbres is not None
    np.testing.assert_allclose(derived._rows_of(derived.timbres, [1])[0], timbres[2], atol=1e-3)
    # a policy that measured the lists alone better: the lists' large bells for all three
    lists_alone = SearchPolicy(True, {}, text_heard_agreement=1.0)
    assert "text_heard_timbre" not in lists_alone.to_dict()
    publish(tmp_path / "lists", timbres, lists_alone)
    hits = Searcher.open(tmp_path / "lists").search(query, "audio", k=3).hits
    assert [h.id for h in hits] == ["item0", "item1", "item2"]
    # nothing read: the lists' large bells for all three, the first pass's order
    publish(tmp_path / "unread", np.full((3, len(WHAT)), np.nan, np.float32))
    blank = Searcher.open(tmp_path / "unread")
    assert blank._rows_of(blank.timbres, [0, 1, 2]) is None
    assert [h.id for h in blank.search(query, "audio", k=3).hits] == ["item0", "item1", "item2"]


def test_heard_reading_averages_the_timbre_and_the_list_where_both_are_read() -> None:
    from models.attributes import heard_probabilities, heard_reading
    from models.what_net import CLASSES as WHAT
    from models.what_net import class_of

    lists = np.full((3, len(WHAT)), 0.01, np.float32)
    lists[:, class_of("drum", "large")] = 0.97
    lists[2] = np.nan  # no list: the timbre alone
    timbres = np.full((3, len(WHAT)), 0.0, np.float32)
    timbres[[0, 2], class_of("bell", "small")] = 0.6
    timbres[[0, 2], class_of("clock", "large")] = 0.4
    timbres[1] = np.nan  # no timbre: the list alone
    found = heard_reading(lists, timbres, 3)
    kind, size = columns("kind"), columns("size")
    column = {k: kind[ATTRIBUTES["kind"].index(k)] for k in ("bell", "clock", "drum")}
    # twice a kind's share of the runs, at most 1 (two sources heard: about half the runs each)
    assert found[2, column["bell"]] == pytest.approx(1.0)
    assert found[2, column["clock"]] == pytest.approx(0.8)
    assert found[2, size].tolist() == pytest.approx([1.0, 0.8])
    assert found[2, column["drum"]] == pytest.approx(0.0)
    # both read: their mean
    listed = heard_probabilities(lists)
    assert found[0, column["drum"]] == pytest.approx((listed[0, column["drum"]] + 0.0) / 2)
    assert found[0, column["bell"]] == pytest.approx((listed[0, column["bell"]] + 1.0) / 2)
    np.testing.assert_allclose(found[1], listed[1])
    assert (heard_reading(None, None, 2) == 0.5).all()
    with pytest.raises(ValueError, match="rows"):
        heard_reading(lists, timbres[:, :5], 3)


def test_what_a_sentence_is_read_to_name() -> None:
    """Per attribute asked for, in `ATTRIBUTES`' order: the values at least `NAMED_AT`, likeliest
    first (two sources name two kinds), an empty list where none is; bad input is refused."""
    from models.attributes import NAMED_AT, named

    probabilities = np.full(len(CLASSES), 0.2, np.float32)
    kinds = columns("kind")
    probabilities[kinds[ATTRIBUTES["kind"].index("bell")]] = 0.7
    probabilities[kinds[ATTRIBUTES["kind"].index("ball")]] = 0.9
    probabilities[columns("size")[1]] = NAMED_AT  # large, just read
    found = named(probabilities, ("tempo", "size", "kind"))
    assert list(found) == ["kind", "size", "tempo"]
    assert [v for v, _ in found["kind"]] == ["ball", "bell"]
    assert found["size"] == [("large", NAMED_AT)]
    assert found["tempo"] == []
    assert named(probabilities, ()) == {}
    with pytest.raises(ValueError, match="unknown attributes"):
        named(probabilities, ("kind", "mood"))
    with pytest.raises(ValueError, match="probabilities"):
        named(probabilities[:-1], ("kind",))
