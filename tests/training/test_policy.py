"""Re-rank defaults are measured, recorded with the checkpoint and the index, and obeyed.

An untrained sequence head must never silently re-order results: the trainer measures on its
validation split whether the re-rank helps each direction, writes `search.json` beside the
weights, the index build copies it into the version, and a search that does not say whether to
re-rank gets that default. Checkpoints and indexes from before the record are pooled-only, with a
warning.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import numpy as np
import pytest
import torch

from index.build import add_items, build_index, remove_items
from index.search import Query, Searcher
from index.version import IndexVersion
from models.alignment import window_distances
from models.config import preset
from models.events import SOUND_BANDS
from models.model import TrimodalModel, checkpoint_hash
from models.policy import (
    DIRECTIONS,
    SEARCH_FILE,
    SHORT_QUERY_S,
    TEXT_AUDIO_SHARE_BEFORE,
    WHOLE_QUERY_S,
    SearchPolicy,
    load_policy,
    save_policy,
)
from models.what_net import CLASSES
from service.index_cli import corpus_items
from training.datasets import load_manifest
from training.evaluate import embed_pool, excerpt_report, weight_label
from training.search_policy import (
    BEST_BAND,
    GAIN_STANDARD_ERRORS,
    POLICY_EVENT_WEIGHTS,
    POLICY_WEIGHTS,
    TEXT_AUDIO_SHARES,
    WHAT_WEIGHTS,
    _gain,
    _paired_gain,
    choose_what_tiers,
)
from training.synthav import GeneratorConfig, RenderConfig, generate_corpus
from training.trainer import TrainConfig, prepare, train
from training.what_phase import WHAT_PHASE_DONE


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("pol") / "corpus"
    cfg = GeneratorConfig(
        clips=40, seed=3, val_fraction=0.3, test_fraction=0.1, render=RenderConfig(duration_s=4.0)
    )
    generate_corpus(out, cfg, workers=2)
    return out


@pytest.fixture(scope="module")
def prepared(corpus, tmp_path_factory):
    items = load_manifest(corpus / "manifest.jsonl", splits=("train", "val"))
    return prepare(items, "tiny", tmp_path_factory.mktemp("cache"), workers=2)


def test_policy_round_trip_and_what_an_old_record_means(tmp_path):
    policy = SearchPolicy(True, {"audio→video": True, "video→audio": False}, {"pool": 3})
    save_policy(tmp_path, policy)
    back = load_policy(tmp_path)
    assert back.recorded and back.sequence_trained
    assert back.reranks("audio", "video") and not back.reranks("visual", "audio")
    assert not back.reranks("text", "video")  # text has no steps to re-rank by
    assert set(back.to_dict()["rerank"]) == set(DIRECTIONS)
    assert back.warning() is None
    # how sound met picture when the weights were measured: a record before the field, singly
    assert not back.cross_bands and "cross_bands" not in back.to_dict()
    bands = frozenset({"audio→video"})
    save_policy(tmp_path, SearchPolicy(True, dict.fromkeys(DIRECTIONS, False), cross_bands=bands))
    back = load_policy(tmp_path)
    assert back.cross_bands == bands and back.matches_by_bands("audio", "video")
    assert not back.agreement_bands  # a record before the field: the single envelope
    save_policy(
        tmp_path, SearchPolicy(True, dict.fromkeys(DIRECTIONS, False), agreement_bands=True)
    )
    assert load_policy(tmp_path).agreement_bands
    assert not back.matches_by_bands("visual", "audio")

    old = load_policy(tmp_path / "nowhere")
    assert not old.recorded and not old.sequence_trained
    assert not any(old.reranks(q, t) for q in ("audio", "visual") for t in ("audio", "video"))
    assert "pooled-only" in (old.warning() or "")
    (tmp_path / SEARCH_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="unreadable search policy"):
        load_policy(tmp_path)


def test_short_queries_get_their_own_recorded_defaults(tmp_path):
    short = SearchPolicy(True, {"audio→video": False}, rerank_weight={"video→video": 0.5})
    policy = SearchPolicy(
        True,
        dict.fromkeys(DIRECTIONS, True),
        rerank_weight={"audio→video": 2.0},
        event_weight={"audio→video": 1.0},
        short=short,
    )
    save_policy(tmp_path, policy)
    back = load_policy(tmp_path)
    assert back.event_weight == {"audio→video": 1.0}
    assert back.events_weight("audio", "video") == 1.0 and back.events_weight("text", "video") == 0
    long, brief = back.for_length(SHORT_QUERY_S), back.for_length(SHORT_QUERY_S - 0.5)
    assert long is back and back.for_length(None) is back
    assert not brief.reranks("audio", "video") and brief.events_weight("audio", "video") == 0
    assert brief.fusion_weight("visual", "video") == 0.5
    # a record measured below another threshold cannot be applied at this one
    record = back.to_dict()
    record["short_queries"]["below_s"] = SHORT_QUERY_S + 1
    assert SearchPolicy.from_dict(record).short is None


def test_whole_clip_queries_get_their_own_recorded_defaults(tmp_path):
    """From `WHOLE_QUERY_S` on a query gets the defaults measured on whole clips; shorter ones,
    and a query of unknown length, the others'; a record measured from another length, or made
    before the tier, has none (every long query the others')."""
    whole = SearchPolicy(True, {"audio→video": True}, event_weight={"audio→video": 2.0})
    short = SearchPolicy(True, {"audio→video": False})
    policy = SearchPolicy(
        True, {"audio→video": True}, event_weight={"audio→video": 1.0}, short=short, whole=whole
    )
    save_policy(tmp_path, policy)
    back = load_policy(tmp_path)
    assert back.for_length(WHOLE_QUERY_S).events_weight("audio", "video") == 2.0
    assert back.whole is not None and back.for_length(60.0) is back.whole
    assert back.for_length(WHOLE_QUERY_S - 0.1) is back and back.for_length(None) is back
    assert back.for_length(SHORT_QUERY_S - 0.5) is back.short
    record = back.to_dict()
    assert record["whole_queries"]["from_s"] == WHOLE_QUERY_S
    record["whole_queries"]["from_s"] = WHOLE_QUERY_S + 1
    assert SearchPolicy.from_dict(record).whole is None
    del record["whole_queries"]
    before = SearchPolicy.from_dict(record)
    assert before.whole is None and before.for_length(60.0) is before


def test_saving_new_weights_drops_a_policy_measured_on_the_old_ones(tmp_path):
    model = TrimodalModel(preset("tiny"))
    model.save(tmp_path)
    save_policy(tmp_path, SearchPolicy(True, dict.fromkeys(DIRECTIONS, True)))
    assert TrimodalModel.load(tmp_path).search_policy.reranks("audio", "video")
    model.save(tmp_path)
    assert not (tmp_path / SEARCH_FILE).exists()
    assert not TrimodalModel.load(tmp_path).search_policy.recorded


def test_window_distances_find_an_excerpt_where_it_was_cut():
    torch.manual_seed(0)
    targets = torch.nn.functional.normalize(torch.randn(3, 24, 16), dim=-1)
    mask = torch.ones(3, 24, dtype=torch.bool)
    query = targets[1, 7:17]
    d, found = window_distances(query, targets, mask, 4.0)
    assert int(d.argmin()) == 1 and float(d[1]) < 1e-6
    assert int(found.start[1]) == 7 and found.segment(1).start_s == pytest.approx(7 / 4)


def test_window_distances_equal_the_paired_distance_of_their_aligned_parts():
    """Every window as long as the query, and candidates shorter than it: the distance (norms
    and one product of all steps) equals `paired_distance` of the two aligned parts — the query
    with the window each candidate was aligned at, or, for a candidate shorter than the query,
    the candidate with the part of the query it lies in — at any batch layout."""
    from models.sequence import paired_distance, take_steps

    torch.manual_seed(1)
    query = torch.randn(6, 16)  # not unit length: the stores' steps need not be either
    for lengths in ([20, 20, 9, 12], [20, 5, 9, 3], [6, 6, 6, 6]):
        targets = torch.randn(4, 20, 16)
        mask = torch.arange(20)[None, :] < torch.tensor(lengths)[:, None]
        d, found = window_distances(query, targets, mask, 4.0)
        alone = [
            float(window_distances(query, targets[k : k + 1], mask[k : k + 1])[0][0])
            for k in range(4)
        ]
        for k in range(4):
            s, e = int(found.start[k]), int(found.end[k])
            qs = int(found.query_start[k])
            assert qs == 0 or lengths[k] < 6
            window = take_steps(targets[k : k + 1], torch.arange(s, e)[None])
            part = query[qs : qs + e - s][None]
            ones = torch.ones(1, e - s, dtype=torch.bool)
            want = paired_distance("interp", part, ones, window, ones)
            assert float(d[k]) == pytest.approx(float(want[0]), rel=1e-5, abs=1e-5), (lengths, k)
            assert float(d[k]) == pytest.approx(alone[k], rel=1e-5, abs=1e-5)


def test_a_candidate_shorter_than_the_query_is_measured_where_it_lies_in_it():
    """A 10-step query that holds a 4-step item at steps 5..8: the item's distance is ~0 (its
    own steps), however the rest of the query looks; another short item is far."""
    torch.manual_seed(2)
    item = torch.nn.functional.normalize(torch.randn(4, 16), dim=-1)
    query = torch.nn.functional.normalize(torch.randn(10, 16), dim=-1)
    query[5:9] = item
    targets = torch.zeros(2, 6, 16)
    targets[0, :4] = item
    targets[1, :4] = torch.nn.functional.normalize(torch.randn(4, 16), dim=-1)
    mask = torch.arange(6)[None, :] < 4
    d, found = window_distances(query, targets, mask.expand(2, -1), 4.0)
    assert int(found.query_start[0]) == 5 and float(d[0]) < 1e-6 < float(d[1])
    assert (int(found.start[0]), int(found.end[0])) == (0, 4)


@pytest.mark.parametrize("timing", [False, True])
def test_the_trainer_measures_and_records_the_policy(prepared, tmp_path, timing):
    off = {} if timing else {"sync_weight": 0.0, "excerpt_weight": 0.0}
    cfg = TrainConfig(preset="tiny", epochs=2, batch_size=8, warmup_steps=1, device="cpu", **off)
    train(prepared, cfg, tmp_path / "run")
    record = json.loads((tmp_path / "run" / "best" / SEARCH_FILE).read_text())
    assert record["sequence_trained"] is cfg.trains_sequences
    assert record["text_segments"] is False  # no objective puts the steps in the text space
    evidence = record["evidence"]
    # the val clips query; the training clips are searched too, as distractors
    assert evidence["queried"] == len(prepared.val_items) > 0
    assert evidence["pool"] == len(prepared.val_items) + len(prepared.train_items)
    # the agreement's envelopes: the matching that placed shifted sounds closer on val
    agreement = evidence["agreement"]
    errors = agreement["shifted_offset_error_s"]
    assert (agreement["matching"] == "best band") is record.get("agreement_bands", False)
    if abs(errors["best band"] - errors["single"]) > 1e-3:
        assert record.get("agreement_bands", False) is (errors["best band"] < errors["single"])
    singly = {
        weight_label(w, e): (w, e, False) for w in POLICY_WEIGHTS for e in POLICY_EVENT_WEIGHTS
    }
    # sound against picture: the envelopes matched by the sound's best band besides
    banded = {
        weight_label(w, e) + BEST_BAND: (w, e, True)
        for w in POLICY_WEIGHTS
        for e in POLICY_EVENT_WEIGHTS
        if e
    }
    cross = ("audio→video", "video→audio")
    # text→video: the audio index's share with the best R@1, then R@10, then the smaller share
    shares = evidence["text→video"]
    measured = {float(k): v for k, v in shares["by_share"].items()}
    assert set(measured) == set(TEXT_AUDIO_SHARES)
    best = max(measured, key=lambda w: (measured[w]["R@1"], measured[w]["R@10"], -w))
    assert shares["chosen"] == record["text_audio_share"] == best
    assert shares["queries"] > 0

    def obeys_the_rule(tier: dict, name: str) -> None:
        """Re-ranked by default exactly where some weighing measured no worse than pooled in
        every protocol of the tier, and the best of those (by R@1, then R@10) gained R@1 over
        pooled by more than `GAIN_STANDARD_ERRORS`; that one recorded."""
        found = tier["evidence"][name]
        measured = {k: v for k, v in found.items() if k not in ("chosen", "gain_R@1", "what")}
        combos = singly | banded if name in cross else singly
        for m in measured.values():  # every steps' weight with every envelopes' weight
            assert set(m) - {"pooled", "queries"} == set(combos)
        eligible = [
            w
            for w in combos
            if all(m[w][k] >= m["pooled"][k] for m in measured.values() for k in ("R@1", "R@10"))
        ]
        if not eligible:
            assert tier["rerank"][name] is False and found["chosen"] == "off"
            return
        best = max(
            eligible,
            key=lambda w: tuple(sum(m[w][k] for m in measured.values()) for k in ("R@1", "R@10")),
        )
        gain = found["gain_R@1"]
        a = [m[best]["R@1"] for m in measured.values()]
        b = [m["pooled"]["R@1"] for m in measured.values()]
        n = [m["queries"] for m in measured.values()]
        assert gain["gain"] == pytest.approx(sum(a) - sum(b), abs=1e-3)
        se = sum((x * (1 - x) + y * (1 - y)) / q for x, y, q in zip(a, b, n, strict=True)) ** 0.5
        assert gain["se"] == pytest.approx(se, abs=1e-3)
        clear = gain["gain"] > GAIN_STANDARD_ERRORS * gain["se"]
        assert tier["rerank"][name] is clear
        assert found["chosen"] == (best if clear else "off")
        w, e, bands = combos[best] if clear else (None, 0.0, False)
        assert tier.get("rerank_weight", {}).get(name) == w
        assert tier.get("event_weight", {}).get(name, 0.0) == e
        assert (name in tier.get("cross_bands", [])) is bands

    # 2–4 s queries: 2.5 s excerpts in every direction
    for name in DIRECTIONS:
        assert set(evidence[name]) - {"gain_R@1", "what"} == {"excerpt", "chosen"}
        obeys_the_rule(record, name)
    # Short queries: their own choice, on their own excerpts, by the same rule.
    short = record["short_queries"]
    assert short["below_s"] == SHORT_QUERY_S
    assert short["evidence"]["excerpt_s"] < SHORT_QUERY_S
    for name in DIRECTIONS:
        assert set(short["evidence"][name]) - {"gain_R@1", "what"} == {"excerpt", "chosen"}
        obeys_the_rule(short, name)
    # Whole clips: sound against picture on whole clips (these 4 s clips hold no 4 s excerpt);
    # sound against sound and footage against footage had nothing this long to measure, and keep
    # the shorter queries' defaults.
    whole = record["whole_queries"]
    assert whole["from_s"] == WHOLE_QUERY_S and whole["evidence"]["queries"] == 0
    for name in cross:
        assert set(whole["evidence"][name]) - {"gain_R@1", "what"} == {"full", "chosen"}
        obeys_the_rule(whole, name)
    for name in ("audio→audio", "video→video"):
        assert whole["evidence"][name]["chosen"].startswith("as shorter queries")
        assert whole["rerank"][name] is record["rerank"][name]
        for key in ("rerank_weight", "event_weight"):
            assert whole.get(key, {}).get(name) == record.get(key, {}).get(name)


def test_excerpts_are_cut_inside_the_clips_and_reported_per_direction(prepared, tmp_path):
    model = TrimodalModel(preset("tiny"), prepared.backbone)
    report = excerpt_report(model, prepared.val_items, prepared.cache, seconds=2.5, seed=1)
    assert report["queries"] == len(prepared.val_items)  # every 4 s clip holds a 2.5 s excerpt
    for name in ("audio→audio", "audio→video", "video→video", "video→audio"):
        r = report[name]
        assert r["pooled"]["n"] == r["hybrid"]["n"] == report["queries"]
        err = r["start_error_s"]["median"]
        assert np.isnan(err) or 0.0 <= err <= 4.0 - 2.5 + 0.25
    # A piece of a clip's sound is found by its signal (exact cuts of the decoded sound), as the
    # service finds it: by its dense prints, else its landmarks; first, and placed to a frame,
    # whatever the untrained model says.
    found = report["audio→audio"]["by_signal"]
    assert found["found"] >= 0.8 and found["first_elsewhere"] == 0.0
    assert found["found"] >= found["landmarks_alone"]["found"]
    assert found["decided_by_prints"] > 0.0
    assert report["audio→audio"]["hybrid"]["R@1"] >= found["found"] - 1e-6  # float32 shares
    assert report["audio→audio"]["start_error_s"]["median"] <= 0.02
    # Too short to cut from: nothing is measured rather than a padded query.
    assert excerpt_report(model, prepared.val_items, prepared.cache, seconds=10.0)["queries"] == 0


def _index(corpus, ckpt, root):
    items = corpus_items(corpus / "manifest.jsonl")[:8]
    model = TrimodalModel.load(ckpt)
    build_index(root, items, model, checkpoint_hash(ckpt), workers=1)
    return items


def test_the_index_carries_the_policy_and_searches_obey_it(corpus, tmp_path):
    ckpt = tmp_path / "ckpt"
    torch.manual_seed(0)
    TrimodalModel(preset("tiny")).save(ckpt)
    rerank = {"audio→video": True, "video→audio": False, "audio→audio": True}
    save_policy(ckpt, SearchPolicy(True, rerank, {"pool": 1}, rerank_weight={"audio→video": 0.5}))
    items = _index(corpus, ckpt, tmp_path / "index")
    searcher = Searcher.open(tmp_path / "index")
    assert searcher.policy.reranks("audio", "video")
    assert not searcher.policy.reranks("visual", "audio")

    audio = searcher.item_query(items[0].id, "audio")
    visual = searcher.item_query(items[0].id, "visual")
    assert searcher.search(audio, "video", k=3).reranked
    assert not searcher.search(visual, "audio", k=3).reranked
    assert searcher.search(visual, "audio", k=3, rerank=True).reranked  # a request can force it
    assert not searcher.search(audio, "video", k=3, rerank=False).reranked
    text = Query("text", audio.pooled)
    assert not searcher.search(text, "video", k=3).reranked
    # a record without the text search's share: the picture's and the sound's indexes at the
    # fixed share of before
    before = {"visual": 1 - TEXT_AUDIO_SHARE_BEFORE, "audio": TEXT_AUDIO_SHARE_BEFORE}
    assert searcher.policy.text_video_weights() == pytest.approx(before)
    default, explicit = (searcher.search(text, "video", k=5, weights=w) for w in (None, before))
    assert [(h.id, h.score) for h in default.hits] == [(h.id, h.score) for h in explicit.hits]

    # audio→video weighs the steps at 0.5 against the first pass, as recorded; audio→audio,
    # recorded without a weight, orders by the sequence distance alone.
    assert searcher.policy.fusion_weight("audio", "video") == 0.5
    fused = searcher.search(audio, "video", k=5)
    for hit in fused.hits:
        d, _ = searcher._rerank(audio.sequence, [hit.row], "visual", "interp")
        assert hit.score == pytest.approx(hit.pooled_score + 0.5 * (1 - d[0] / 2), abs=1e-5)
    assert [h.score for h in fused.hits] == sorted((h.score for h in fused.hits), reverse=True)
    alone = searcher.search(audio, "audio", k=5)
    for hit in alone.hits:
        d, _ = searcher._rerank(audio.sequence, [hit.row], "audio", "interp")
        assert hit.score == pytest.approx(-d[0], abs=1e-5)

    # The index keeps each item's event envelopes at the model's frame rate; "more like this"
    # carries them; a direction recorded without an event weight does not use them.
    assert searcher.event_rate == TrimodalModel.load(ckpt).cfg.visual.fps
    assert audio.events is not None and len(audio.events) > 0
    # the real build keeps each sound's banded envelope too, bin for bin
    assert audio.bands is not None and audio.bands.shape == (len(audio.events), SOUND_BANDS)
    assert searcher.policy.events_weight("audio", "video") == 0.0

    # a share measured on val is what a text search of videos fuses the two indexes by
    for share, weights in ((0.5, {"visual": 0.5, "audio": 0.5}), (0.0, {"visual": 1.0})):
        save_policy(ckpt, replace(searcher.policy, text_audio_share=share))
        _index(corpus, ckpt, tmp_path / f"index-{share}")
        again = Searcher.open(tmp_path / f"index-{share}")
        default, explicit = (again.search(text, "video", k=5, weights=w) for w in (None, weights))
        assert [(h.id, h.score) for h in default.hits] == [(h.id, h.score) for h in explicit.hits]
        hit = default.hits[0]
        visual, heard = (again.item_query(hit.id, m).pooled for m in ("visual", "audio"))
        expected = (1 - share) * float(np.dot(text.pooled, visual)) + share * float(
            np.dot(text.pooled, heard)
        )
        assert hit.score == pytest.approx(expected, abs=1e-4)

    # Derived versions keep the policy: same model.
    remove_items(tmp_path / "index", {items[1].id})
    model = TrimodalModel.load(ckpt)
    extra = corpus_items(corpus / "manifest.jsonl")[8:10]
    add_items(tmp_path / "index", extra, model, checkpoint_hash(ckpt), workers=1)
    version = IndexVersion.open(tmp_path / "index")
    assert version.manifest["build"]["search_policy"]["rerank"]["audio→video"] is True
    assert Searcher.open(tmp_path / "index").policy.reranks("audio", "video")


def test_an_index_without_a_policy_is_pooled_only_and_says_so(corpus, tmp_path, caplog):
    ckpt = tmp_path / "ckpt"
    TrimodalModel(preset("tiny")).save(ckpt)  # no search.json: as checkpoints before policies
    items = _index(corpus, ckpt, tmp_path / "index")
    with caplog.at_level(logging.WARNING, logger="trimodal.index"):
        searcher = Searcher.open(tmp_path / "index")
    assert "pooled-only" in caplog.text
    assert not searcher.policy.recorded
    audio = searcher.item_query(items[0].id, "audio")
    plain = searcher.search(audio, "video", k=5)
    assert not plain.reranked and "rerank" in plain.timings_ms
    pooled = [h.pooled_score for h in plain.hits]
    assert [h.score for h in plain.hits] == pooled == sorted(pooled, reverse=True)
    assert searcher.search(audio, "video", k=5, rerank=True).reranked


def test_segments_come_only_from_sequences_that_can_align_the_query(corpus, tmp_path):
    """Untrained sequence heads align a query only with steps of its own encoder: across
    modalities, and for text, the segment would be noise, so a hit gets the whole item."""
    ckpt = tmp_path / "ckpt"
    TrimodalModel(preset("tiny")).save(ckpt)  # no record: heads assumed untrained
    items = _index(corpus, ckpt, tmp_path / "index")
    searcher = Searcher.open(tmp_path / "index")
    audio = searcher.item_query(items[0].id, "audio")
    for query, target in ((Query("text", audio.pooled), "video"), (audio, "video")):
        found = searcher.search(query, target, k=4)
        assert not found.localised
        for hit in found.hits:
            assert (hit.start_s, hit.end_s, hit.timeline) == (0.0, hit.duration_s, [])
    same = searcher.search(audio, "audio", k=4)
    assert same.localised and all(len(h.timeline) > 0 for h in same.hits)

    trained = tmp_path / "trained"
    save_policy(ckpt, SearchPolicy(True, dict.fromkeys(DIRECTIONS, False)))
    _index(corpus, ckpt, trained)
    cross = Searcher.open(trained).search(audio, "video", k=4)
    assert cross.localised and all(len(h.timeline) > 0 for h in cross.hits)

    # Steps trained to match sound with picture localise audio and video queries, not text ones.
    timing = tmp_path / "timing"
    save_policy(ckpt, SearchPolicy(True, dict.fromkeys(DIRECTIONS, False), text_segments=False))
    _index(corpus, ckpt, timing)
    searcher = Searcher.open(timing)
    assert searcher.search(audio, "video", k=4).localised
    text = searcher.search(Query("text", audio.pooled), "video", k=4)
    assert not text.localised and all(h.timeline == [] for h in text.hits)


def test_fusion_weights_round_trip_and_bad_ones_are_dropped(tmp_path):
    weights = {"audio→video": 2.0, "video→video": 0.5}
    save_policy(
        tmp_path, SearchPolicy(True, dict.fromkeys(DIRECTIONS, True), rerank_weight=weights)
    )
    back = load_policy(tmp_path)
    assert back.rerank_weight == weights
    assert back.fusion_weight("audio", "video") == 2.0
    assert back.fusion_weight("audio", "audio") is None  # the sequence distance alone
    assert back.fusion_weight("text", "video") is None
    record = back.to_dict()
    record["rerank_weight"] = {
        "audio→video": -1,
        "video→video": "x",
        "audio→audio": True,
        "video→audio": float("inf"),
        "nowhere": 1.0,
    }
    assert SearchPolicy.from_dict(record).rerank_weight == {}
    del record["rerank_weight"]  # a record from before the field
    assert SearchPolicy.from_dict(record).rerank_weight == {}


def test_the_text_searchs_audio_share_round_trips_and_old_records_keep_theirs(tmp_path):
    save_policy(tmp_path, SearchPolicy(True, {}, text_audio_share=0.4))
    back = load_policy(tmp_path)
    assert back.text_audio_share == 0.4
    assert back.text_video_weights() == pytest.approx({"visual": 0.6, "audio": 0.4})
    # measured as no help: the picture's index alone
    assert SearchPolicy(True, {}, text_audio_share=0.0).text_video_weights() == {"visual": 1.0}
    # a record from before the field: the fixed share the service used then
    older = SearchPolicy.from_dict({"sequence_trained": True, "rerank": {}})
    assert older.text_audio_share is None and "text_audio_share" not in older.to_dict()
    assert older.text_video_weights() == pytest.approx(
        {"visual": 1 - TEXT_AUDIO_SHARE_BEFORE, "audio": TEXT_AUDIO_SHARE_BEFORE}
    )
    assert SearchPolicy.unrecorded().text_video_weights() == older.text_video_weights()
    for bad in (-0.1, 1.5, float("nan"), "x", True):
        record = {"sequence_trained": True, "rerank": {}, "text_audio_share": bad}
        assert SearchPolicy.from_dict(record).text_audio_share is None


def test_text_segments_are_recorded_and_old_records_keep_their_meaning(tmp_path):
    save_policy(tmp_path, SearchPolicy(True, {}, text_segments=False))
    back = load_policy(tmp_path)
    assert back.sequence_trained and back.text_segments is False and not back.localises_text
    older = SearchPolicy.from_dict({"sequence_trained": True, "rerank": {}})
    assert older.text_segments is None and older.localises_text  # as before the field
    assert "text_segments" not in older.to_dict()


def test_an_index_of_a_timing_trained_model_carries_each_items_av_agreement(corpus, tmp_path):
    """Stored per item at build (from the item's own two sequences), returned with every hit,
    usable as a filter; an index whose model was not trained for it has none and says so."""
    from index.search import FilterUnavailable, ItemFilter
    from models.alignment import av_agreement
    from models.events import event_agreement, fused_agreement

    ckpt = tmp_path / "ckpt"
    torch.manual_seed(0)
    TrimodalModel(preset("tiny")).save(ckpt)
    save_policy(ckpt, SearchPolicy(True, dict.fromkeys(DIRECTIONS, False), text_segments=False))
    items = _index(corpus, ckpt, tmp_path / "index")
    searcher = Searcher.open(tmp_path / "index")
    table = searcher.agreement
    assert table is not None and table.shape == (len(items), 2)
    row, record = searcher.items.by_id(items[2].id)
    a = torch.from_numpy(np.asarray(searcher.sequences["audio"].get(row), np.float32))[None]
    v = torch.from_numpy(np.asarray(searcher.sequences["visual"].get(row), np.float32))[None]
    ones = lambda x: torch.ones(x.shape[:2], dtype=torch.bool)  # noqa: E731
    (expected,) = av_agreement(a, ones(a), v, ones(v), searcher.sps)
    assert table[row, 0] == pytest.approx(expected.score, abs=1e-5)
    assert table[row, 1] == pytest.approx(expected.offset_s, abs=1e-5)

    query = searcher.item_query(record.id, "audio")
    hits = searcher.search(query, "video", k=8).hits
    assert all(h.av_agreement is not None and h.audio_offset_s is not None for h in hits)
    threshold = float(np.median(table[:, 0]))
    kept = searcher.search(query, "video", k=8, where=ItemFilter(min_av_agreement=threshold)).hits
    assert kept and all(h.av_agreement >= threshold - 1e-4 for h in kept)
    assert len(kept) < len(hits)

    # With an envelope weight recorded, the score adds the envelopes' and the offset is theirs.
    fused_root = tmp_path / "fused"
    save_policy(
        ckpt,
        SearchPolicy(
            True, dict.fromkeys(DIRECTIONS, False), text_segments=False, agreement_event_weight=0.3
        ),
    )
    _index(corpus, ckpt, fused_root)
    fused = Searcher.open(fused_root)
    row, _ = fused.items.by_id(items[2].id)
    sound = fused.events["audio"].get(row)[:, 0].astype(np.float32)
    picture = fused.events["visual"].get(row)[:, 0].astype(np.float32)
    events = event_agreement(sound, picture, fused.event_rate)
    want = fused_agreement(expected.score, expected.offset_s, events, 0.3)
    assert events is not None and fused.agreement is not None
    assert tuple(fused.agreement[row]) == pytest.approx(want, abs=2e-3)  # float16 envelopes
    # Recorded so, the sound's envelopes meet the picture by their best band.
    banded_root = tmp_path / "banded"
    save_policy(
        ckpt,
        SearchPolicy(
            True,
            dict.fromkeys(DIRECTIONS, False),
            text_segments=False,
            agreement_event_weight=0.3,
            agreement_bands=True,
        ),
    )
    _index(corpus, ckpt, banded_root)
    banded = Searcher.open(banded_root)
    row, _ = banded.items.by_id(items[2].id)
    bands = banded.bands["audio"].get(row).astype(np.float32)
    by_band = event_agreement(bands, picture, banded.event_rate)
    assert by_band is not None and banded.agreement is not None
    want = fused_agreement(expected.score, expected.offset_s, by_band, 0.3)
    assert tuple(banded.agreement[row]) == pytest.approx(want, abs=2e-3)  # int8 bands
    assert abs(banded.agreement[row, 0] - fused.agreement[row, 0]) > 1e-2  # not the single's
    save_policy(ckpt, SearchPolicy(True, dict.fromkeys(DIRECTIONS, False), text_segments=False))

    remove_items(tmp_path / "index", {items[0].id})  # a derived version keeps them
    derived = IndexVersion.open(tmp_path / "index").agreement()
    assert derived is not None and derived.shape == (len(items) - 1, 2)

    plain = tmp_path / "plain"
    save_policy(ckpt, SearchPolicy(False, dict.fromkeys(DIRECTIONS, False)))
    _index(corpus, ckpt, plain)
    untrained = Searcher.open(plain)
    assert untrained.agreement is None
    assert all(h.av_agreement is None for h in untrained.search(query, "video", k=4).hits)
    with pytest.raises(FilterUnavailable, match="agreement"):
        untrained.search(query, "video", k=4, where=ItemFilter(min_av_agreement=0.0))


def test_evaluate_reports_what_the_service_does_under_a_policy(prepared):
    """ "service": pooled where the policy does not re-rank, else the re-rank with the recorded
    steps' and envelopes' weights — the same figures as that weighting measured on its own."""
    from training.evaluate import _direction, clip_subsets_of, evaluate

    torch.manual_seed(0)
    model = TrimodalModel(preset("tiny"), prepared.backbone)
    policy = SearchPolicy(
        True,
        {"audio→video": True, "video→audio": False},
        rerank_weight={"audio→video": 1.0},
        event_weight={"audio→video": 2.0},
    )
    items, cache, texts = prepared.val_items, prepared.cache, prepared.texts
    report = evaluate(model, items, cache, texts, policy=policy)
    assert report["video→audio"]["service"] == report["video→audio"]["pooled"]
    # text→audio: the first pass where the policy weighs nothing heard (and no readers to read)
    assert report["text→audio"]["service"] == report["text→audio"]["pooled"]
    by_id = {i.id: i for i in items if i.id in cache.row}
    from training.evaluate import embed_pool
    from training.metrics import ranks_from_scores, summarise

    # text→video: the picture's and the sound's indexes fused at the recorded share (a record
    # without one: the share of before), each clip scored exactly
    everything = embed_pool(model, cache, list(by_id))
    captions = [
        (c, row)
        for row, i in enumerate(everything.ids)
        for kind in ("visual", "audiovisual")
        for c in by_id[i].captions.get(kind, ())
    ]
    with torch.inference_mode():
        q = model.project_text(texts.lookup([c for c, _ in captions])).pooled.float()
    target = torch.tensor([row for _, row in captions])
    for share in (None, 0.0, 0.4):
        shared = replace(policy, text_audio_share=share)
        found = evaluate(model, items, cache, texts, policy=shared)["text→video"]["service"]
        s = TEXT_AUDIO_SHARE_BEFORE if share is None else share
        scores = (1 - s) * q @ everything.visual.pooled.T + s * q @ everything.audio.pooled.T
        assert found["all"] == summarise(ranks_from_scores(scores, target))
    assert found != report["text→video"]["pooled"]  # the sound changes the ranks
    # a clip without sound is scored by its picture alone
    silent = replace(everything, has_audio=torch.arange(len(everything.ids)) != 0)
    alone = scores.clone()
    alone[:, 0] = q @ everything.visual.pooled[0]
    with torch.inference_mode():  # as `evaluate` asks
        found = _direction(
            *(model, "text→video", by_id, silent, texts, {}, 100, "interp", ("pooled",)),
            audio_share=0.4,
        )["pooled"]["all"]
    assert found == summarise(ranks_from_scores(alone, target))

    # pictures meet sounds as the policy had them met: a record without halves, by the whole
    # picture's envelopes
    pool = embed_pool(model, cache, list(by_id), picture_halves=False)
    halved_pool = embed_pool(model, cache, list(by_id))
    subsets = clip_subsets_of([by_id[i] for i in pool.ids])

    def by_weight(cross_bands: bool, halves: bool = False) -> dict:
        return _direction(
            model,
            "audio→video",
            by_id,
            halved_pool if halves else pool,
            None,
            subsets,
            100,
            "interp",
            ("hybrid",),
            (1.0, None),
            (2.0, 0.0),
            cross_bands=cross_bands,
        )["hybrid_by_weight"]

    # a record before the best band: the single envelopes; one measured with it: the best band
    assert report["audio→video"]["service"] == by_weight(False)[weight_label(1.0, 2.0)]
    banded = replace(policy, cross_bands=frozenset({"audio→video"}))
    service = evaluate(model, items, cache, texts, policy=banded)["audio→video"]["service"]
    assert service == by_weight(True)[weight_label(1.0, 2.0)]
    # one measured with the halves: the pictures meet sounds by them too
    halved = replace(banded, picture_motion=True, picture_halves=True)
    service = evaluate(model, items, cache, texts, policy=halved)["audio→video"]["service"]
    assert service == by_weight(True, halves=True)[weight_label(1.0, 2.0)]
    # whole clips as long as `WHOLE_QUERY_S` (these are 4 s): the whole-clip defaults
    whole = replace(policy, event_weight={"audio→video": 0.0})
    tiered = replace(policy, rerank={"audio→video": False}, whole=whole)
    service = evaluate(model, items, cache, texts, policy=tiered)["audio→video"]["service"]
    assert service == by_weight(False)[weight_label(1.0, 0.0)]


def test_a_split_without_captions_keeps_the_default_text_share(prepared):
    """Nothing to measure the text search's share on (a corpus without captions): none is
    recorded, so the default stays, and the evaluation reports no text→video at all."""
    from training.evaluate import embed_pool, evaluate
    from training.search_policy import choose_text_share

    torch.manual_seed(0)
    model = TrimodalModel(preset("tiny"), prepared.backbone)
    items = [replace(i, captions={}) for i in prepared.val_items]
    by_id = {i.id: i for i in items}
    pool = embed_pool(model, prepared.cache, list(by_id))
    share, evidence = choose_text_share(model, by_id, pool, prepared.texts)
    assert share is None and "no visual or audiovisual captions" in evidence["reason"]
    unmeasured = SearchPolicy(True, {}, text_audio_share=share)
    assert unmeasured.text_video_weights() == SearchPolicy.unrecorded().text_video_weights()
    policy = SearchPolicy(True, {}, text_audio_share=0.4)
    report = evaluate(
        model, items, prepared.cache, prepared.texts, modes=("pooled",), policy=policy
    )
    assert report["text→video"] == {} and report["text→audio"] == {}


def test_distractors_are_searched_but_never_query(prepared):
    """The policy's pool: the val clips query, the training clips only make the search harder —
    the same queries, each ranked among more items, and none cut from a distractor."""
    from training.evaluate import _direction, embed_pool

    torch.manual_seed(0)
    model = TrimodalModel(preset("tiny"), prepared.backbone)
    val, train = prepared.val_items, prepared.train_items
    items = val + train
    by_id = {i.id: i for i in items}
    pool = embed_pool(model, prepared.cache, [i.id for i in items])
    querying = torch.arange(len(items)) < len(val)

    def found(querying):
        return _direction(
            model,
            "audio→video",
            by_id,
            pool,
            None,
            {},
            100,
            "interp",
            ("pooled",),
            querying=querying,
        )["pooled"]["all"]

    assert found(querying)["n"] == len(val) < found(None)["n"] == len(items)
    alone = _direction(
        model,
        "audio→video",
        {i.id: i for i in val},
        embed_pool(model, prepared.cache, [i.id for i in val]),
        None,
        {},
        100,
        "interp",
        ("pooled",),
    )["pooled"]["all"]
    among = found(querying)  # each query ranked below as many items at least
    assert among["MdR"] >= alone["MdR"] and among["R@10"] <= alone["R@10"]
    cut = excerpt_report(
        model, items, prepared.cache, seconds=2.5, pool=pool, among=range(len(val))
    )
    assert cut["queries"] == len(val)
    assert cut["audio→video"]["pooled"]["n"] == len(val)


def test_the_policy_command_measures_a_checkpoint_again_on_its_val_split(corpus, tmp_path):
    """`trimodal policy`: a checkpoint whose record was measured with an older scoring gets its
    defaults measured again on the val split, as training records them; never on test."""
    from typer.testing import CliRunner

    from service.cli import app

    ckpt = tmp_path / "ckpt"
    torch.manual_seed(0)
    TrimodalModel(preset("tiny")).save(ckpt)
    old = SearchPolicy(
        True,
        dict.fromkeys(DIRECTIONS, True),
        {"audio→video": {"chosen": "2+events 1"}},
        event_weight={"audio→video": 1.0},
    )
    save_policy(ckpt, old)
    manifest = corpus / "manifest.jsonl"
    args = ["policy", "--ckpt", str(ckpt), "--data", str(manifest), "--cache", str(tmp_path / "c")]
    refused = CliRunner().invoke(app, [*args, "--split", "test"])
    assert refused.exit_code != 0 and "val split" in " ".join(refused.output.split())
    assert load_policy(ckpt) == old  # untouched
    done = CliRunner().invoke(app, args, env={"COLUMNS": "200"})  # a table row on one line
    assert done.exit_code == 0, done.output
    now = load_policy(ckpt)
    val = load_manifest(manifest, splits=("val",))
    train = load_manifest(manifest, splits=("train",))
    assert now.sequence_trained and now.evidence["queried"] == len(val)
    assert now.evidence["pool"] == len(val) + len(train)  # the train clips as distractors
    assert now.text_segments is False and now.short is not None and now.whole is not None
    for name in DIRECTIONS:  # every direction measured and its choice recorded
        assert "excerpt" in now.evidence[name] and "chosen" in now.evidence[name]
    assert now.cross_bands <= {"audio→video", "video→audio"}
    assert "2+events 1" in " ".join(done.output.split())  # what it was, beside what it is now
    # the text search's share: measured now, printed beside the old record's (none: 0.3)
    assert now.text_audio_share in TEXT_AUDIO_SHARES
    assert now.evidence["text→video"]["chosen"] == now.text_audio_share
    words = " ".join(done.output.split())
    assert f"audio share {TEXT_AUDIO_SHARE_BEFORE:g}" in words
    assert f"audio share {now.text_audio_share:g}" in words


def test_an_index_adopts_defaults_measured_again_without_embedding_again(corpus, tmp_path):
    """`trimodal index policy`: a new version of the same items with the checkpoint's defaults
    as they are now — the same as building the index again with them (agreement included),
    without embedding anything; another model's checkpoint is refused, the index untouched."""
    from typer.testing import CliRunner

    from service.cli import app

    ckpt = tmp_path / "ckpt"
    torch.manual_seed(0)
    TrimodalModel(preset("tiny")).save(ckpt)
    before = SearchPolicy(True, dict.fromkeys(DIRECTIONS, False), text_segments=False)
    save_policy(ckpt, before)
    root = tmp_path / "index"
    items = _index(corpus, ckpt, root)
    first = IndexVersion.open(root).name
    now = SearchPolicy(
        True,
        {**dict.fromkeys(DIRECTIONS, False), "audio→video": True},
        {"pool": 1},
        text_segments=False,
        rerank_weight={"audio→video": 1.0},
        event_weight={"audio→video": 1.0},
        agreement_event_weight=0.3,
        cross_bands=frozenset({"audio→video"}),
        agreement_bands=True,
    )
    save_policy(ckpt, now)
    other = tmp_path / "other"
    torch.manual_seed(1)
    TrimodalModel(preset("tiny")).save(other)
    refused = CliRunner().invoke(
        app, ["index", "policy", "--index", str(root), "--ckpt", str(other)]
    )
    # the console wraps its lines where the temp path's length puts them: words, not lines
    assert refused.exit_code == 1 and "not the model" in " ".join(refused.output.split())
    # (and removing an item it does not hold is refused the same way)
    unknown = CliRunner().invoke(app, ["index", "remove", "--index", str(root), "nothing-such"])
    assert unknown.exit_code == 1 and "not in the index" in " ".join(unknown.output.split())
    assert IndexVersion.open(root).name == first

    done = CliRunner().invoke(app, ["index", "policy", "--index", str(root), "--ckpt", str(ckpt)])
    assert done.exit_code == 0, done.output
    adopted = Searcher.open(root)
    assert adopted.version.name != first
    assert adopted.policy.to_dict() == now.to_dict()
    assert adopted.version.manifest["build"]["derived_from"] == first
    # the same as an index built with these defaults from the start
    _index(corpus, ckpt, tmp_path / "fresh")
    fresh = Searcher.open(tmp_path / "fresh")
    assert list(adopted.items.ids()) == list(fresh.items.ids())
    assert adopted.agreement is not None and fresh.agreement is not None
    # from the stored envelopes (int8 bands): scores to 0.005, offsets to a quarter of a bin
    np.testing.assert_allclose(adopted.agreement[:, 0], fresh.agreement[:, 0], atol=5e-3)
    np.testing.assert_allclose(adopted.agreement[:, 1], fresh.agreement[:, 1], atol=0.25 / 12)
    query = fresh.item_query(items[3].id, "audio")
    assert [h.id for h in adopted.search(query, "video", k=5).hits] == [
        h.id for h in fresh.search(query, "video", k=5).hits
    ]


def test_pieces_are_cut_and_encoded_once_per_pool_with_the_same_report(prepared):
    """The policy measures each length twice (sound meeting picture singly and by bands): the
    second report reuses the pool's pieces, their embeddings and the steps' distances, and
    equals one made from scratch."""
    from training.evaluate import embed_pool

    torch.manual_seed(0)
    model = TrimodalModel(preset("tiny"), prepared.backbone)
    items, cache = prepared.val_items, prepared.cache
    pool = embed_pool(model, cache, [i.id for i in items])
    tried = {"weights": (1.0, None), "event_weights": (1.0, 0.0)}
    first = excerpt_report(model, items, cache, seconds=2.5, pool=pool, **tried)
    again = excerpt_report(model, items, cache, seconds=2.5, pool=pool, cross_bands=(), **tried)
    assert len(pool._excerpts) == 1  # cut and encoded once
    fresh = excerpt_report(model, items, cache, seconds=2.5, cross_bands=(), **tried)
    assert json.dumps(again, sort_keys=True) == json.dumps(fresh, sort_keys=True)
    # no sound met a picture there
    assert json.dumps(first["video→video"]) == json.dumps(again["video→video"])
    # another model's pieces are its own
    other = TrimodalModel(preset("tiny"), prepared.backbone)
    excerpt_report(other, items, cache, seconds=2.5, pool=pool, **tried)
    assert len(pool._excerpts) == 2


def test_the_sources_weight_is_measured_against_each_tiers_chosen_weighting(prepared, tmp_path):
    cfg = TrainConfig(
        preset="tiny",
        epochs=1,
        batch_size=8,
        warmup_steps=1,
        device="cpu",
        sync_weight=0.0,
        excerpt_weight=0.0,
        event_epochs=0,
        what_epochs=2,
    )
    train(prepared, cfg, tmp_path / "run")
    model = TrimodalModel.load(tmp_path / "run" / "best")
    assert model.knows_what() and (tmp_path / "run" / WHAT_PHASE_DONE).is_file()
    items = prepared.val_items + prepared.train_items
    pool = embed_pool(model, prepared.cache, [i.id for i in items])
    assert pool.what is not None and pool.what["visual"].shape == (len(items), len(CLASSES))
    cross = ("audio→video", "video→audio")
    policy = SearchPolicy(
        sequence_trained=True,
        rerank=dict.fromkeys(DIRECTIONS, True),
        evidence={d: {} for d in cross},
        rerank_weight=dict.fromkeys(DIRECTIONS, 0.0),
    )
    querying = torch.arange(len(items)) < len(prepared.val_items)
    tiers = {"whole": (policy, (None, 2.5))}
    chosen = choose_what_tiers(model, items, prepared.cache, pool, 100, querying, tiers)["whole"]
    for d in cross:
        record = chosen.evidence[d]["what"]
        assert {"without", "chosen", *(f"{w:g}" for w in WHAT_WEIGHTS)} <= set(record)
        assert len(record["without"]) == 2  # whole clips and 2.5 s pieces
        if record["chosen"] == "off":
            assert d not in chosen.what_weight
        else:  # the best (summed R@1, then R@10) of those that lose clearly nowhere
            assert chosen.what_weight[d] == float(record["chosen"])
            assert record["chosen"] in record["eligible"]
            best = max(
                record["eligible"],
                key=lambda w: tuple(sum(f[k] for f in record[w]) for k in ("R@1", "R@10")),
            )
            assert record["chosen"] == best
    # the weights round-trip; a bad one is dropped
    again = SearchPolicy.from_dict(
        {**chosen.to_dict(), "what_weight": {"audio→video": 2.0, "video→audio": -1.0}}
    )
    assert again.what_weight == {"audio→video": 2.0}
    assert (
        again.sources_weight("audio", "video") == 2.0
        and again.sources_weight("text", "video") == 0.0
    )
    # a model without networks: its pool names nothing, and a policy never weighs them
    assert embed_pool(TrimodalModel(preset("tiny")), prepared.cache, [items[0].id]).what is None


def test_the_sources_weight_is_adopted_by_the_queries_paired_differences():
    base = [{"ranks": [1, 2, 1, 5, 1, 3, 9, 1]}, {"ranks": [1, 1, 2, 2]}]
    same = _paired_gain(base, base)
    assert same == (0.0, 0.0)
    # two queries gain rank 1, one loses it: the gain is theirs, the error from their spread
    tried = [{"ranks": [1, 1, 1, 5, 2, 1, 9, 1]}, {"ranks": [1, 1, 2, 2]}]
    gain, se = _paired_gain(base, tried)
    d = np.array([0, 1, 0, 0, -1, 1, 0, 0], float)
    assert gain == pytest.approx(d.mean()) and se == pytest.approx(np.sqrt(d.var() / 8))
    # far tighter than the figures taken as independent
    as_independent = _gain([({"R@1": 0.5, "n": 8}, {"R@1": 0.625})])[1]
    assert se < as_independent


def test_a_sources_weight_is_eligible_unless_it_loses_clearly_somewhere():
    """A weight that loses a query or two of many on whole clips and finds pieces elsewhere is
    eligible; one that loses rank 1, or the top 10, for many queries in any protocol is not."""
    from training.search_policy import _no_clear_loss

    whole = [1] * 170 + [20] * 30
    pieces = [1] * 100 + [20] * 100
    base = [{"ranks": whole}, {"ranks": pieces}]
    found = [{"ranks": [*pieces[:100], *[1] * 10, *pieces[110:]]}]  # ten more pieces first
    assert _no_clear_loss(base, [{"ranks": [2, 2, *whole[2:]]}, *found])
    assert not _no_clear_loss(base, [{"ranks": [*[2] * 10, *whole[10:]]}, *found])
    # the top 10 counts too: rank 1 untouched, many queries pushed out of the top 10
    near = [{"ranks": whole}, {"ranks": [*pieces[:100], *[5] * 100]}]
    pushed = [{"ranks": whole}, {"ranks": [*pieces[:100], *[50] * 100]}]
    assert not _no_clear_loss(near, pushed)
    assert _no_clear_loss(base, base)


def test_whether_a_direction_weighs_the_sources_is_decided_on_every_tiers_evidence(monkeypatch):
    """Each tier's gain may be short of the line alone (1.9 standard errors) and clear once the
    tiers are summed: the direction then weighs the sources in every tier whose best weight
    gains, and in no tier where that weight gains nothing; a direction unclear over all tiers
    weighs them nowhere, however one tier looks. One tier alone decides as before."""
    import training.search_policy as sp

    def trial(best: float | None, gain: tuple[float, float] | None) -> sp._WhatTrial:
        row = [{"R@1": 0.5, "R@10": 0.8}]
        eligible = () if best is None else (best,)
        return sp._WhatTrial(row, dict.fromkeys(WHAT_WEIGHTS, row), eligible, best, gain)

    found = {
        "long": {
            "audio→video": trial(8.0, (0.03, 0.0157)),
            "video→audio": trial(2.0, (0.03, 0.0157)),
        },
        "short": {"audio→video": trial(4.0, (0.0, 0.0)), "video→audio": trial(1.0, (-0.01, 0.02))},
        "whole": {"audio→video": trial(1.0, (0.045, 0.0147)), "video→audio": trial(None, None)},
    }
    monkeypatch.setattr(sp, "what_trials", lambda *a: found[a[6].evidence["tier"]])
    tiers = {
        name: (
            SearchPolicy(
                sequence_trained=True,
                rerank=dict.fromkeys(DIRECTIONS, True),
                evidence={"tier": name, "audio→video": {}, "video→audio": {}},
            ),
            (None,),
        )
        for name in found
    }
    chosen = sp.choose_what_tiers(None, [], None, None, 100, torch.zeros(0), tiers)
    assert chosen["long"].what_weight == {"audio→video": 8.0}
    assert chosen["whole"].what_weight == {"audio→video": 1.0}
    assert chosen["short"].what_weight == {}  # its best weight gained nothing
    record = chosen["long"].evidence["audio→video"]["what"]
    assert record["chosen"] == "8" and record["gain_R@1"] == {"gain": 0.03, "paired_se": 0.0157}
    summed = record["gain_R@1_all_tiers"]
    assert summed["gain"] == pytest.approx(0.075)
    assert summed["paired_se"] == pytest.approx(np.hypot(0.0157, 0.0147), abs=1e-4)
    # video→audio: 0.02 over all tiers, 0.0256 its error: off everywhere, long's gain too
    assert chosen["long"].evidence["video→audio"]["what"]["chosen"] == "off"
    # one tier alone: 1.9 standard errors is not clear
    alone = sp.choose_what_tiers(None, [], None, None, 100, torch.zeros(0), {"long": tiers["long"]})
    assert alone["long"].what_weight == {}


def test_whole_clips_are_re_ranked_by_each_candidates_window_as_the_service_does(prepared):
    """The evaluation's whole-clip re-rank measures a query's steps against each candidate's
    best window (`window_distances`, nothing resampled), as `index.search` does for a query of
    any length: ranked by the steps alone, every query's rank is the one those distances give.
    (It once resampled every pair to the longest sequence among the candidates, which the
    service never does; docs/quality-log.md "What did not work".)"""
    from models.alignment import window_distances
    from training.evaluate import _direction

    torch.manual_seed(0)
    model = TrimodalModel(preset("tiny"), prepared.backbone)
    items = prepared.val_items + prepared.train_items
    by_id = {i.id: i for i in items}
    pool = embed_pool(model, prepared.cache, list(by_id))
    n = len(pool.ids)
    sps = model.cfg.steps_per_second
    for name, (src, dst) in (
        ("audio→video", (pool.audio, pool.visual)),
        ("video→audio", (pool.visual, pool.audio)),
    ):
        with torch.inference_mode():
            report = _direction(
                model, name, by_id, pool, None, {}, n, "interp", ("hybrid",), (None,), (0.0,),
                keep_ranks=True,
            )  # fmt: skip
        rows = (pool.has_audio & pool.has_video).nonzero().flatten()
        want = []
        for r in rows.tolist():
            cand = rows
            d, _ = window_distances(
                src.sequence[r][src.mask[r]], dst.sequence[cand], dst.mask[cand], sps
            )
            want.append(int((d <= d[(cand == r).nonzero()[0, 0]]).sum()))
        assert report["hybrid_ranks"] == want


def test_the_attribute_phase_fits_the_readers_and_nothing_else(prepared, tmp_path):
    """The readers of what a caption names and a picture shows are fitted from the training
    clips' metadata on the finished checkpoint; every other tensor stays as it was."""
    import io

    from training.attribute_phase import attribute_phase

    torch.manual_seed(0)
    model = TrimodalModel(replace(preset("tiny"), attribute_readers=True), prepared.backbone)
    model.save(tmp_path / "best")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    log = io.StringIO()
    assert attribute_phase(prepared, 0, tmp_path, torch.device("cpu"), log, 0.0)
    after = TrimodalModel.load(tmp_path / "best", text_backbone=prepared.backbone)
    assert after.knows_attributes() and not model.knows_attributes()
    for name, tensor in after.state_dict().items():
        if not name.startswith("attributes."):
            assert torch.equal(tensor, before[name]), name
    assert after.attributes is not None
    assert float(after.attributes.text.weight.detach().abs().sum()) > 0
    assert float(after.attributes.picture.weight.detach().abs().sum()) > 0
    records = [json.loads(line) for line in log.getvalue().splitlines()]
    fitted = next(r for r in records if r.get("part") == "picture")
    assert fitted["loss"] < np.log(2)  # better than the zero readers' every class at one half
    # the kinds a sound caption's sound words name: fitted on the training clips' sound captions
    sound_words = next(r for r in records if r.get("part") == "sound words")
    assert sound_words["captions"] == len(
        [i for i in prepared.train_items if i.captions.get("audio")]
    )
    assert after.knows_sound_words() and not model.knows_sound_words()
    assert float(after.attributes.sound.weight.detach().abs().sum()) > 0
    # and the direction read from where each training clip's foreground goes (`models.drift`)
    assert after.knows_directions() and not model.knows_directions()
    drift = next(r for r in records if r.get("part") == "drift")
    assert drift["clips"] == fitted["clips"]
    clips = [i for i in prepared.train_items if i.id in prepared.cache.row]
    read = after.picture_directions([np.asarray(prepared.cache.frames(i.id)) for i in clips[:4]])
    assert read is not None and read.shape == (min(4, len(clips)), 3)
    assert ((read >= 0) & (read <= 1)).all()
    # the evaluation's pools carry them, and its picture probabilities take the direction there
    from models.attributes import columns
    from training.evaluate import embed_pool, picture_probabilities

    pool = embed_pool(after, prepared.cache, [i.id for i in clips[:4]])
    assert pool.directions is not None
    np.testing.assert_allclose(pool.directions, read, atol=1e-6)
    found = picture_probabilities(after, pool.visual.pooled, None, pool.directions)
    np.testing.assert_allclose(found[:, columns("direction")].numpy(), read, atol=1e-6)
    assert embed_pool(model, prepared.cache, [i.id for i in clips[:4]]).directions is None
    # and the kind read from the training clips' glyphs' outlines (`models.shape`)
    assert after.knows_glyphs() and not model.knows_glyphs()
    shaped = next(r for r in records if r.get("part") == "shape")
    assert shaped["failed"] == 0 and shaped["parts"] > 0
    assert shaped["shape_read"] > 0.5 and shaped["tint_read"] > 0.5
    assert after.attributes.reads_tint
    # a pool embedded with its items' files carries each picture's kinds, measured once and kept
    # beside the cache; the picture probabilities take the kind from there
    from training.shapes import clip_shapes, memo_name

    by_id = {i.id: i for i in clips[:4]}
    memo = prepared.cache.directory / memo_name()
    memo.unlink(missing_ok=True)
    shaped_pool = embed_pool(after, prepared.cache, list(by_id), items=by_id)
    assert memo.exists()
    outlines = clip_shapes(list(by_id.values()), prepared.cache.directory)
    assert set(outlines) == set(by_id)
    want = after.glyph_reading([outlines[i] for i in by_id])
    assert shaped_pool.glyphs is not None and want is not None
    np.testing.assert_allclose(shaped_pool.glyphs, want, atol=1e-6)
    assert not np.isnan(want).all()
    found = picture_probabilities(
        after, shaped_pool.visual.pooled, None, shaped_pool.directions, shaped_pool.glyphs
    )
    known = ~np.isnan(want).any(axis=1)
    np.testing.assert_allclose(
        found[known][:, columns("kind") + columns("colour")].numpy(), want[known], atol=1e-6
    )
    assert pool.glyphs is None  # embedded without its items' files
    # and each sound's kind and size from how it sounds (`models.timbre`), fitted on the
    # single-source training clips heard as they are and otherwise
    assert after.knows_timbre() and not model.knows_timbre()
    timbre = next(r for r in records if r.get("part") == "timbre")
    assert timbre["failed"] == 0 and timbre["runs"] > 0 and timbre["kind_read"] > 0.5
    from training.timbres import clip_timbres
    from training.timbres import memo_name as timbre_memo

    memo = prepared.cache.directory / timbre_memo()
    assert memo.exists()  # the pool above measured its sounds once and kept them
    runs = clip_timbres(list(by_id.values()), prepared.cache.directory)
    assert set(runs) == set(by_id)
    heard = after.timbre_reading([runs[i] for i in by_id])
    assert shaped_pool.timbres is not None and heard is not None
    np.testing.assert_allclose(shaped_pool.timbres, heard, atol=1e-6)
    read = ~np.isnan(heard).any(axis=1)
    assert read.any()
    np.testing.assert_allclose(heard[read].sum(axis=1), 1.0, atol=1e-5)
    assert pool.timbres is None and shaped_pool.heard() is not None
    # a checkpoint whose config has no readers is left alone
    TrimodalModel(preset("tiny"), prepared.backbone).save(tmp_path / "plain" / "best")
    assert not attribute_phase(prepared, 0, tmp_path / "plain", torch.device("cpu"), log, 0.0)


def test_the_lean_chosen_on_val_is_the_one_the_evaluation_measures(prepared, tmp_path):
    """`choose_text_attributes` ranks the val captions as `_direction` does with the chosen lean
    and the re-rank by the readers' agreement: the figures it records are the evaluation's;
    without fitted readers it chooses none."""
    from models.attributes import AGREEMENT_FOUND
    from training.evaluate import _direction
    from training.search_policy import (
        TEXT_AGREEMENT_WEIGHTS,
        TEXT_ATTRIBUTE_WEIGHTS,
        choose_text_attributes,
    )

    model, by_id, pool, queried = _unfitted_readers(prepared)
    unfitted = choose_text_attributes(model, by_id, pool, prepared.texts, 0.3, queried)
    assert unfitted[:3] == ((), None, None)
    model, pool = _fitted_readers(prepared, model, by_id, tmp_path)
    names, weight, agree, evidence = choose_text_attributes(
        model, by_id, pool, prepared.texts, 0.3, queried
    )
    assert set(evidence) >= {"queries", "without", "steps", "chosen"}
    querying = torch.arange(len(pool.ids)) < queried
    for step in evidence["steps"]:
        assert step["weight"] in TEXT_ATTRIBUTE_WEIGHTS
        with torch.inference_mode():
            found = _direction(
                *(model, "text→video", by_id, pool, prepared.texts, {}, 0, "interp", ("pooled",)),
                querying=querying,
                audio_share=0.3,
                lean=(step["attributes"], step["weight"]),
            )["pooled"]["all"]
        assert found["R@1"] == pytest.approx(step["R@1"], abs=1e-4)
        assert found["R@10"] == pytest.approx(step["R@10"], abs=1e-4)
    if names:
        assert list(names) == evidence["steps"][-1]["attributes"] and weight is not None
        assert evidence["steps"][-1]["R@1"] > evidence["without"]["R@1"]
        measured = evidence["agreement"]["by_weight"]
        sets = [tuple(names)] + ([(*names, "kind")] if "kind" not in names else [])
        assert set(measured) == {
            f"{'+'.join(s)} {w:g}" for s in sets for w in TEXT_AGREEMENT_WEIGHTS
        }

        def agreeing(names_: tuple, w: float, found: int = 0) -> dict:
            """text→video as `_direction` ranks it with this agreement."""
            with torch.inference_mode():
                return _direction(
                    *(model, "text→video", by_id, pool, prepared.texts, {}, 0, "interp"),
                    ("pooled",),
                    querying=querying,
                    audio_share=0.3,
                    lean=(names, weight),
                    reader_weight=w,
                    reader_names=names_,
                    reader_found=found,
                )["pooled"]["all"]

        for s in sets:
            for w in TEXT_AGREEMENT_WEIGHTS:
                found = agreeing(s, w)
                figures = measured[f"{'+'.join(s)} {w:g}"]
                assert found["R@1"] == pytest.approx(figures["R@1"], abs=1e-4)
                assert found["R@10"] == pytest.approx(figures["R@10"], abs=1e-4)
        assert agree is None or (agree[0] in sets and agree[1] in TEXT_AGREEMENT_WEIGHTS)
        if agree is not None:  # the candidates found among every clip, measured as evaluated
            assert agree[2] in (0, AGREEMENT_FOUND)
            widened = evidence["agreement"]["found"]
            assert widened["chosen"] == (agree[2] or "off")
            found = agreeing(agree[0], agree[1], AGREEMENT_FOUND)
            assert found["R@1"] == pytest.approx(widened["R@1"], abs=1e-4)
            assert found["R@10"] == pytest.approx(widened["R@10"], abs=1e-4)
    else:
        assert weight is None and agree is None and evidence["chosen"] == "off"


def test_the_candidates_found_among_every_clip_are_kept_where_they_find_more() -> None:
    """`choose_found` keeps `AGREEMENT_FOUND` candidates where R@10 gains beyond two paired
    standard errors and R@1 does not clearly lose; otherwise none."""
    from models.attributes import AGREEMENT_FOUND
    from training.search_policy import choose_found

    def summary(ranks: list[int]) -> dict:
        r = np.asarray(ranks)
        return {"R@1": float((r <= 1).mean()), "R@10": float((r <= 10).mean()), "ranks": r}

    base = [1] * 50 + [30] * 150
    reached = [1] * 50 + [5] * 60 + [30] * 90  # 60 of 200 more within ten: kept
    found, record = choose_found(summary(base), summary(reached))
    assert found == AGREEMENT_FOUND and record["chosen"] == AGREEMENT_FOUND
    assert record["R@10"] == pytest.approx(0.55) and record["gain_R@10"]["gain"] == 0.3
    assert choose_found(summary(base), summary(base))[0] == 0  # nothing found: none kept
    few = [1] * 50 + [5] * 2 + [30] * 148  # two more queries: not clear
    assert choose_found(summary(base), summary(few))[1]["chosen"] == "off"
    lost = [2] * 30 + [1] * 20 + [5] * 60 + [30] * 90  # more within ten, 30 first hits lost
    assert choose_found(summary(base), summary(lost))[0] == 0


def test_the_heard_agreement_is_adopted_where_r1_or_r10_gains_clearly() -> None:
    """`heard_adopted`: a clear R@1 gain adopts; a clear R@10 gain adopts where neither R@1 nor
    R@10 loses clearly; a gain within the noise, or an R@10 gain bought with first hits, does
    not."""
    from training.search_policy import heard_adopted

    def summary(ranks: list[int]) -> dict:
        r = np.asarray(ranks)
        return {"R@1": float((r <= 1).mean()), "R@10": float((r <= 10).mean()), "ranks": r}

    base = [1] * 20 + [30] * 180
    first = [1] * 60 + [30] * 140  # 40 of 200 more first hits
    adopted, gains = heard_adopted(summary(base), summary(first))
    assert adopted and gains["gain_R@1"]["gain"] == 0.2
    tenth = [1] * 22 + [5] * 50 + [30] * 128  # R@1 +2 (noise), 50 more within ten
    adopted, gains = heard_adopted(summary(base), summary(tenth))
    assert adopted and gains["gain_R@10"]["gain"] == 0.26
    assert gains["gain_R@1"]["gain"] < 2 * gains["gain_R@1"]["paired_se"]
    few = [1] * 21 + [5] * 2 + [30] * 177  # three queries: not clear
    assert not heard_adopted(summary(base), summary(few))[0]
    bought = [2] * 20 + [5] * 50 + [30] * 130  # within ten more often, every first hit lost
    assert not heard_adopted(summary(base), summary(bought))[0]


def test_the_policy_reports_the_val_splits_held_out_pairs_apart() -> None:
    """`_heldout_figures`: each ranking's R@1 and R@10 on the queries whose clip holds a pair no
    training clip holds, beside the figures on every query; nothing where none does."""
    from types import SimpleNamespace

    from training.search_policy import _heldout_figures

    held = torch.tensor([True, True, False, False, False])
    q = SimpleNamespace(subset={"heldout": held})
    ranked = {
        "without": {"ranks": np.array([1, 20, 1, 1, 1])},
        "agreement": {"ranks": np.array([3, 40, 1, 1, 1])},
    }
    assert _heldout_figures(q, ranked) == {
        "queries": 2,
        "without": {"R@1": 0.5, "R@10": 0.5},
        "agreement": {"R@1": 0.0, "R@10": 0.5},
    }
    none = SimpleNamespace(subset={"heldout": torch.zeros(5, dtype=torch.bool)})
    assert _heldout_figures(none, ranked) is None


def _unfitted_readers(prepared):
    """A tiny model with unfitted attribute readers, the val clips (querying) among the training
    ones, their pool and how many query."""
    torch.manual_seed(0)
    model = TrimodalModel(replace(preset("tiny"), attribute_readers=True), prepared.backbone)
    items = prepared.val_items + prepared.train_items
    by_id = {i.id: i for i in items if i.id in prepared.cache.row}
    pool = embed_pool(model, prepared.cache, list(by_id))
    queried = sum(i.id in prepared.cache.row for i in prepared.val_items)
    return model, by_id, pool, queried


def _fitted_readers(prepared, model, by_id, tmp_path):
    """`model` with its readers fitted by the attribute phase, and the pool again."""
    from training.attribute_phase import attribute_phase

    model.save(tmp_path / "best")
    attribute_phase(prepared, 0, tmp_path, torch.device("cpu"), io_sink(), 0.0)
    model = TrimodalModel.load(tmp_path / "best", text_backbone=prepared.backbone)
    return model, embed_pool(model, prepared.cache, list(by_id))


def test_the_attribute_phase_run_again_fits_the_same_readers(prepared, tmp_path):
    """The phase fits the readers from their initial weights: run again on its own result it
    gives the same readers, not ones trained on from the first fit."""
    model, by_id, _, _ = _unfitted_readers(prepared)
    first, _ = _fitted_readers(prepared, model, by_id, tmp_path / "once")
    again, _ = _fitted_readers(prepared, first, by_id, tmp_path / "twice")
    assert first.attributes is not None and again.attributes is not None
    assert first.attributes.is_trained and again.attributes.is_trained
    fitted, refitted = first.attributes.state_dict(), again.attributes.state_dict()
    assert set(fitted) == set(refitted)
    for name, value in fitted.items():
        torch.testing.assert_close(refitted[name], value, rtol=0, atol=0, msg=name)


def io_sink():
    import io

    return io.StringIO()


def _heard_key(sentence: str) -> str:
    """The evidence's key of a reading of the sentence (`choose_heard_agreement`)."""
    from training.search_policy import SENTENCE_READINGS

    keys = (
        "by_reading",
        "by_reading_at_nouns",
        "by_reading_at_nouns_lead",
        "by_reading_at_nouns_sounds",
        "by_reading_at_nouns_lead_sounds",
    )
    return dict(zip(SENTENCE_READINGS, keys, strict=True))[sentence]


def test_the_agreement_on_what_is_heard_chosen_on_val_is_the_one_the_evaluation_measures(
    prepared, tmp_path
):
    """`choose_heard_agreement` ranks the val audio captions as `_direction` does for
    text→audio with each weight and each reading (the what list alone; with the timbre): the
    figures it records are the evaluation's, and it chooses the reading with the weight;
    without the sound what network's lists or the timbre's readings, or without fitted readers,
    it chooses none."""
    from models.what_net import CLASSES as WHAT
    from models.what_net import class_of
    from training.evaluate import _direction
    from training.search_policy import (
        SENTENCE_READINGS,
        TEXT_AGREEMENT_WEIGHTS,
        choose_heard_agreement,
    )

    model, by_id, pool, queried = _unfitted_readers(prepared)
    assert choose_heard_agreement(model, by_id, pool, prepared.texts, queried)[0] is None
    model, pool = _fitted_readers(prepared, model, by_id, tmp_path)
    assert pool.what is None  # the tiny model has no trained what networks
    weight, timbre, sentence, evidence = choose_heard_agreement(
        model, by_id, pool, prepared.texts, queried
    )
    assert weight is None and not timbre and sentence == SENTENCE_READINGS[0]
    assert evidence["reason"] == "no sound what network or timbre reader"
    # lists that name what each clip's sound holds, as a sound what network would; timbres
    # that name it wrongly (each clip's kind shifted by one)
    lists = np.full((len(pool.ids), len(WHAT)), 0.02, np.float32)
    wrong = np.zeros((len(pool.ids), len(WHAT)), np.float32)
    for row, item_id in enumerate(pool.ids):
        for source in by_id[item_id].meta["audio"]["sources"]:
            lists[row, class_of(source["kind"], source["size"])] = 0.95
            wrong[row, (class_of(source["kind"], source["size"]) + 2) % len(WHAT)] = 1.0
    wrong /= np.maximum(wrong.sum(axis=1, keepdims=True), 1.0)
    pool.what = {"visual": lists, "audio": lists}
    pool.timbres = wrong
    weight, timbre, sentence, evidence = choose_heard_agreement(
        model, by_id, pool, prepared.texts, queried
    )
    assert set(evidence["by_reading"]) == {"what list", "what list and timbre"}
    # the phase read the kinds at the captions' nouns by both rules of the count, and fitted the
    # reader of sound words: the five readings of the sentence are tried
    assert model.knows_noun_lead() and model.knows_sound_words()
    assert {_heard_key(name) for name in SENTENCE_READINGS} <= set(evidence)
    querying = torch.arange(len(pool.ids)) < queried
    for key, heard_nouns, heard_lead, heard_sound_words in (
        ("by_reading", False, False, False),
        ("by_reading_at_nouns", True, False, False),
        ("by_reading_at_nouns_lead", True, True, False),
        ("by_reading_at_nouns_sounds", True, False, True),
        ("by_reading_at_nouns_lead_sounds", True, True, True),
    ):
        for reading, heard_timbre in (("what list", False), ("what list and timbre", True)):
            found_by = evidence[key][reading]
            assert set(found_by) == {f"{w:g}" for w in TEXT_AGREEMENT_WEIGHTS}
            for w in (0.0, *TEXT_AGREEMENT_WEIGHTS):
                with torch.inference_mode():
                    found = _direction(
                        *(model, "text→audio", by_id, pool, prepared.texts, {}, 0, "interp"),
                        ("pooled",),
                        querying=querying,
                        reader_weight=w,
                        heard_timbre=heard_timbre,
                        heard_nouns=heard_nouns,
                        heard_lead=heard_lead,
                        heard_sound_words=heard_sound_words,
                    )["pooled"]["all"]
                figures = found_by[f"{w:g}"] if w else evidence["without"]
                assert found["R@1"] == pytest.approx(figures["R@1"], abs=1e-4)
                assert found["R@10"] == pytest.approx(figures["R@10"], abs=1e-4)
    assert sentence == (evidence["sentence"] if weight is not None else SENTENCE_READINGS[0])
    assert evidence["nouns"] == (evidence["sentence"] != SENTENCE_READINGS[0])
    assert evidence["queries"] > 0
    assert weight is None or weight in TEXT_AGREEMENT_WEIGHTS
    assert evidence["chosen"] == ("off" if weight is None else weight)
    # the timbre that names every sound wrongly is not chosen over the lists that name it right
    assert not timbre and evidence["timbre"] is False
    chosen = _heard_key(evidence["sentence"])
    assert evidence["by_weight"] == evidence[chosen]["what list"]
    # and where the lists are the wrong ones and the timbre names each sound, the timbre is
    right = np.zeros_like(wrong)
    for row, item_id in enumerate(pool.ids):
        for source in by_id[item_id].meta["audio"]["sources"]:
            right[row, class_of(source["kind"], source["size"])] = 1.0
    right /= np.maximum(right.sum(axis=1, keepdims=True), 1.0)
    pool.what = {"visual": lists, "audio": np.roll(lists, 2, axis=1)}
    pool.timbres = right
    weight, timbre, sentence, evidence = choose_heard_agreement(
        model, by_id, pool, prepared.texts, queried
    )
    assert evidence["timbre"] is True
    assert timbre == (weight is not None)
    chosen = _heard_key(evidence["sentence"])
    assert evidence["by_weight"] == evidence[chosen]["what list and timbre"]


def test_a_reading_of_the_sentence_replaces_a_simpler_one_only_where_it_gains_clearly():
    """`simplest_clear_reading` walks the readings from the text reader's: one that gains by a
    few queries of 600 over the reading taken so far does not replace it; one that gains clearly
    does, and the later ones are weighed against it."""
    from training.search_policy import SENTENCE_READINGS, simplest_clear_reading

    rng = np.random.default_rng(0)
    n = 600

    def summary(ranks: np.ndarray) -> dict:
        return {
            "R@1": float((ranks <= 1).mean()),
            "R@10": float((ranks <= 10).mean()),
            "ranks": ranks,
        }

    reader = rng.integers(1, 40, n)
    nouns = reader.copy()
    nouns[rng.choice(n, 120, replace=False)] = 1  # 120 more first hits: clear
    lead = nouns.copy()
    # 12 found first, 8 lost, each within the first ten: 4 more, within the noise
    lead[np.flatnonzero((nouns > 1) & (nouns <= 10))[:12]] = 1
    lead[np.flatnonzero(nouns == 1)[:8]] = 5
    best = {
        SENTENCE_READINGS[0]: summary(reader),
        SENTENCE_READINGS[1]: summary(nouns),
        SENTENCE_READINGS[2]: summary(lead),
    }
    assert best[SENTENCE_READINGS[2]]["R@1"] > best[SENTENCE_READINGS[1]]["R@1"]
    taken, steps = simplest_clear_reading(best)
    assert taken == SENTENCE_READINGS[1]
    assert [(s["reading"], s["against"], s["taken"]) for s in steps] == [
        (SENTENCE_READINGS[1], SENTENCE_READINGS[0], True),
        (SENTENCE_READINGS[2], SENTENCE_READINGS[1], False),
    ]
    assert steps[1]["gain_R@1"]["gain"] == pytest.approx(4 / n, abs=1e-4)
    # a reading clearly better than the one taken is taken, whatever came between
    sounds = nouns.copy()
    sounds[np.flatnonzero(nouns > 1)[:150]] = 1
    best[SENTENCE_READINGS[3]] = summary(sounds)
    taken, steps = simplest_clear_reading(best)
    assert taken == SENTENCE_READINGS[3] and steps[-1]["against"] == SENTENCE_READINGS[1]
    # the text reader's alone: nothing to weigh
    assert simplest_clear_reading({SENTENCE_READINGS[0]: summary(reader)}) == (
        SENTENCE_READINGS[0],
        [],
    )
