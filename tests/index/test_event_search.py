"""Event envelopes in an index: kept per item, carried through add/remove, scanned for candidates
the pooled first pass misses, and weighed in the re-rank only where the policy says so."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from index.build import Entry, entries_from_version, publish_entries, remove_items
from index.query import QueryEncoder
from index.reader import CorpusItem, read_item
from index.search import ItemFilter, Query, Searcher
from index.version import IndexVersion, ItemRecord
from models import events as events_module
from models import fingerprint
from models.config import preset
from models.events import (
    BANDS,
    SOUND_PHASES,
    picture_bands,
    picture_events,
    sound_envelopes,
    standardise,
)
from models.media import decode
from models.model import TrimodalModel
from models.policy import DIRECTIONS, WHOLE_QUERY_S, SearchPolicy
from models.spare import SPARE
from tests.models.conftest import write_media

DIM, STEPS, BINS, RATE = 16, 24, 72, 12.0


def _events_policy(
    event_weight: dict[str, float], cross_bands: frozenset[str] = frozenset()
) -> dict:
    """Re-rank everything, with the envelopes in `event_weight`'s directions (sound against
    picture by the sound's best band in `cross_bands`'s); short queries never re-ranked."""
    return SearchPolicy(
        sequence_trained=True,
        rerank=dict.fromkeys(DIRECTIONS, True),
        rerank_weight=dict.fromkeys(DIRECTIONS, 0.0),
        event_weight=event_weight,
        short=SearchPolicy(True, dict.fromkeys(DIRECTIONS, False)),
        cross_bands=cross_bands,
    ).to_dict()


def _policy(event_weight: float) -> dict:
    """The envelopes for audio→video only."""
    return _events_policy({"audio→video": event_weight} if event_weight else {})


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _build(
    root: Path, n: int, event_weight: float, rate: float | None = RATE, policy: dict | None = None
) -> dict:
    """n items with random vectors and envelopes; returns them for making queries. `policy`:
    the index's search policy (default `_policy(event_weight)`)."""
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

    info = {"search_policy": policy or _policy(event_weight)}
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


def test_a_query_as_long_as_a_whole_clip_gets_the_whole_clip_defaults(tmp_path: Path) -> None:
    """The envelopes weigh in only from `WHOLE_QUERY_S` on in this index's policy: the whole
    6 s sound finds its picture by them; its first 3 s get the shorter queries' defaults (the
    steps alone) and the pooled top 20, which lacks it."""
    whole = SearchPolicy(
        True,
        dict.fromkeys(DIRECTIONS, True),
        rerank_weight=dict.fromkeys(DIRECTIONS, 0.0),
        event_weight={"audio→video": 2.0},
    )
    policy = replace(SearchPolicy.from_dict(_policy(0.0)), whole=whole).to_dict()
    made = _build(tmp_path / "root", 300, event_weight=0.0, policy=policy)
    searcher = Searcher.open(tmp_path / "root")
    query = _query_for(made, 123)
    assert query.sequence is not None and len(query.sequence) / 4.0 >= WHOLE_QUERY_S
    found = searcher.search(query, "video", k=5, rerank_k=20)
    assert found.reranked and found.hits[0].id == "item123"
    assert query.events is not None
    part = Query("audio", query.pooled, query.sequence[:12], query.events[: BINS // 2])
    assert WHOLE_QUERY_S > 12 / 4.0
    shorter = searcher.search(part, "video", k=5, rerank_k=20)
    assert shorter.reranked and "item123" not in {h.id for h in shorter.hits}


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


def _same_modality_policy() -> dict:
    """Sounds among sounds and footage among footage re-ranked with the envelopes; nothing else."""
    return _events_policy({"audio→audio": 2.0, "video→video": 2.0})


def _build_banded(root: Path, n: int, with_bands: bool = True) -> dict:
    """n items whose pictures share one change envelope and whose sounds share one onset
    envelope: they differ only band by band (quadrant by quadrant for the pictures)."""
    rng = np.random.default_rng(2)
    shared = standardise(rng.standard_normal(BINS))
    made: dict = {"audio": [], "visual": []}

    def entries():
        for i in range(n):
            seq = _unit(rng.normal(size=(STEPS, DIM)))
            pooled = _unit(seq.mean(0))
            events = {"visual": shared, "audio": shared}
            for m in ("visual", "audio"):
                bands = np.stack(
                    [standardise(rng.standard_normal(BINS)) for _ in range(BANDS[m])], axis=1
                )
                made[m].append(bands)
                if with_bands:
                    events[f"{m}_bands"] = bands
            yield Entry(
                ItemRecord(f"item{i}", f"/m/{i}.mp4", 6.0, True, True),
                {"visual": pooled, "audio": pooled},
                {"visual": seq, "audio": seq},
                events,
            )

    info = {"search_policy": _same_modality_policy(), "event_rate": RATE}
    publish_entries(root, entries(), model_hash="x", dim=DIM, steps_per_second=4.0, build_info=info)
    return made


@pytest.mark.parametrize(
    ("modality", "target", "other"), [("audio", "audio", "video"), ("visual", "video", "audio")]
)
def test_same_modality_pieces_are_matched_band_by_band(
    tmp_path: Path, modality: str, target: str, other: str
) -> None:
    root = tmp_path / "root"
    made = _build_banded(root, 120)
    searcher = Searcher.open(root)
    stored = searcher.version.sequences(f"{modality}.bands")
    assert stored.dim == BANDS[modality] and stored.encoding == "i8"
    np.testing.assert_allclose(stored.get(5), made[modality][5], atol=0.05)  # int8, own scales
    rng = np.random.default_rng(9)
    piece = made[modality][64][30:60]  # 2.5 s of item 64
    single = standardise(rng.standard_normal(BINS))[30:60]
    query = Query(modality, _unit(rng.normal(size=DIM)), _unit(rng.normal(size=(10, DIM))), single)
    banded = Query(query.modality, query.pooled, query.sequence, query.events, piece)
    hits = searcher.search(banded, target, k=3, rerank_k=120).hits
    assert hits[0].id == "item64" and hits[0].start_s == pytest.approx(30 / RATE)
    # every item has the same single envelope: without the bands nothing singles it out
    assert searcher.search(query, target, k=3, rerank_k=120).hits[0].id != "item64"
    # the other modality is never matched by these bands
    assert searcher.search(banded, other, k=3, rerank_k=120).hits[0].id != "item64"
    # "more like this" from an item carries its stored bands
    like = searcher.item_query("item64", modality)
    assert like.bands is not None and like.bands.shape == (BINS, BANDS[modality])
    # the bands survive a derived version
    remove_items(root, {"item0"})
    kept = list(entries_from_version(IndexVersion.open(root)))
    np.testing.assert_allclose(kept[63].events[f"{modality}_bands"], made[modality][64], atol=0.05)


def test_items_embedded_before_bands_fall_back_to_the_single_envelope(tmp_path: Path) -> None:
    root = tmp_path / "root"
    made = _build_banded(root, 30, with_bands=False)
    searcher = Searcher.open(root)
    assert len(searcher.bands["audio"].get(0)) == 0
    assert searcher.item_query("item3", "audio").bands is None
    rng = np.random.default_rng(9)
    piece = made["audio"][7][30:60]
    single = searcher.events["audio"].get(7)[30:60, 0].astype(np.float32)
    query = Query("audio", _unit(rng.normal(size=DIM)), _unit(rng.normal(size=(10, DIM))), single)
    banded = Query(query.modality, query.pooled, query.sequence, query.events, piece)
    hits = searcher.search(banded, "audio", k=3, rerank_k=30).hits
    assert len(hits) == 3 and hits[0].start_s == pytest.approx(30 / RATE)  # placed by the single


def decode_as_the_model(clip: Path, cfg):
    """The file decoded as a model with `cfg` reads it (frames, sound, the decoder's measures)."""
    return decode(
        clip,
        fps=cfg.visual.fps,
        size=(cfg.visual.image_size,) * 2,
        sample_rate=cfg.audio.sample_rate,
        fit=cfg.visual.fit,
    )


def test_an_uploaded_query_carries_the_envelopes_the_index_keeps(tmp_path: Path) -> None:
    """A sound's single and banded envelopes, and footage's envelope from the decoder's
    per-frame changes, exactly as an index computes them for its items."""
    model = TrimodalModel(preset("tiny"))
    cfg = model.cfg
    clip = write_media(tmp_path / "c.mp4", duration=3.0, fps=25, size=(48, 64))
    encoder = QueryEncoder(model)
    sound = encoder.audio(clip).query
    media = decode_as_the_model(clip, cfg)
    single, bands = sound_envelopes(media.audio, cfg.audio.sample_rate, cfg.visual.fps)
    np.testing.assert_allclose(sound.events, single, atol=1e-5)
    np.testing.assert_allclose(sound.bands, bands, atol=1e-5)
    # and at its sub-bin phases, phase 0 first (`models.events.sound_phases`)
    assert len(sound.phases) == SOUND_PHASES and sound.phases[0].skip_s == 0.0
    np.testing.assert_array_equal(sound.phases[0].bands, sound.bands)
    # and its landmarks at each sub-frame shift, the first as an index keeps its items'
    assert len(sound.landmarks) == fingerprint.PHASES and sound.landmarks[0][1] == 0.0
    assert media.audio is not None
    np.testing.assert_array_equal(
        sound.landmarks[0][0], fingerprint.peaks(media.audio, cfg.audio.sample_rate)
    )
    footage = encoder.video(clip).query
    assert media.changes is not None
    want = picture_events(media.frames, cfg.visual.fps, cfg.visual.fps, media.changes)
    np.testing.assert_allclose(footage.events, want, atol=1e-5)
    assert media.region_changes is not None
    quads = picture_bands(media.frames, cfg.visual.fps, cfg.visual.fps, media.region_changes)
    np.testing.assert_allclose(footage.bands, quads, atol=1e-5)
    item = read_item(
        CorpusItem("c", clip),
        cfg.visual.fps,
        cfg.visual.image_size,
        cfg.audio.sample_rate,
        cfg.visual.fit,
    )
    np.testing.assert_array_equal(item.changes, media.changes)
    np.testing.assert_array_equal(item.region_changes, media.region_changes)


def test_a_trained_picture_network_gives_uploads_and_items_its_envelope(tmp_path: Path) -> None:
    """A checkpoint with a trained picture event network (`models.event_net`): footage uploaded
    as a query and the same file indexed as an item both get the network's envelope, from the
    frames and the decoder's measures, not the hand-made change envelope."""
    import torch

    from index.embed import encode_batch

    torch.manual_seed(0)
    model = TrimodalModel(replace(preset("tiny"), picture_events="learned")).eval()
    assert model.picture_events is not None
    model.picture_events.trained.fill_(1.0)
    cfg = model.cfg
    clip = write_media(tmp_path / "c.mp4", duration=3.0, fps=25, size=(48, 64))
    footage = QueryEncoder(model).video(clip).query
    media = decode_as_the_model(clip, cfg)
    want = model.picture_envelope(
        media.frames, media.changes, media.region_changes, media.motion, media.halves
    )
    np.testing.assert_allclose(footage.events, want, atol=1e-5)
    hand = picture_events(media.frames, cfg.visual.fps, cfg.visual.fps, media.changes)
    assert want.shape == hand.shape and not np.allclose(want, hand, atol=1e-3)
    item = read_item(
        CorpusItem("c", clip),
        cfg.visual.fps,
        cfg.visual.image_size,
        cfg.audio.sample_rate,
        "stretch",
    )
    encoded = encode_batch(model, [item])
    np.testing.assert_allclose(encoded["visual"][0][2], want, atol=1e-5)


def _cross_policy(cross_bands: bool = True) -> dict:
    """Sound against picture re-ranked with the envelopes (by the sound's best band, or as a
    record made before it: by the single envelopes); nothing else."""
    cross = frozenset({"audio→video", "video→audio"})
    return _events_policy(dict.fromkeys(cross, 2.0), cross if cross_bands else frozenset())


def _build_drowned(root: Path, n: int, with_bands: bool = True, cross_bands: bool = True) -> dict:
    """n items whose sound holds their picture's events in one band only: the other bands, and
    the single envelope that sums them, are unrelated (rain, an offscreen source). Their vectors
    are all the same: only the envelopes tell them apart."""
    rng = np.random.default_rng(4)
    made: dict = {"picture": [], "sound": [], "bands": []}
    seq = _unit(rng.normal(size=(STEPS, DIM)))
    pooled = _unit(seq.mean(0))

    def entries():
        for i in range(n):
            picture = standardise(rng.standard_normal(BINS))
            bands = np.stack(
                [standardise(rng.standard_normal(BINS)) for _ in range(BANDS["audio"])], axis=1
            )
            bands[:, i % BANDS["audio"]] = picture
            sound = standardise(rng.standard_normal(BINS))
            made["picture"].append(picture)
            made["sound"].append(sound)
            made["bands"].append(bands)
            events = {"visual": picture, "audio": sound}
            if with_bands:
                events["audio_bands"] = bands
            yield Entry(
                ItemRecord(f"item{i}", f"/m/{i}.mp4", 6.0, True, True),
                {"visual": pooled, "audio": pooled},
                {"visual": seq, "audio": seq},
                events,
            )

    info = {"search_policy": _cross_policy(cross_bands), "event_rate": RATE}
    publish_entries(root, entries(), model_hash="x", dim=DIM, steps_per_second=4.0, build_info=info)
    return made


def test_sound_and_picture_meet_by_the_sounds_best_band(tmp_path: Path) -> None:
    root = tmp_path / "root"
    made = _build_drowned(root, 120)
    searcher = Searcher.open(root)
    rng = np.random.default_rng(9)
    pooled, steps = _unit(rng.normal(size=DIM)), _unit(rng.normal(size=(10, DIM)))
    # a piece of item 45's sound: its single envelope says nothing, its bands do
    single, bands = made["sound"][45][20:56], made["bands"][45][20:56]
    sound = Query("audio", pooled, steps, single, bands)
    hits = searcher.search(sound, "video", k=3, rerank_k=120).hits
    assert hits[0].id == "item45" and hits[0].start_s == pytest.approx(20 / RATE)
    alone = Query("audio", pooled, steps, single)  # no bands: the single envelope alone
    assert searcher.search(alone, "video", k=3, rerank_k=120).hits[0].id != "item45"
    # a piece of item 77's footage finds the sound whose band holds its changes
    picture = Query("visual", pooled, steps, made["picture"][77][10:46])
    hits = searcher.search(picture, "audio", k=3, rerank_k=120).hits
    assert hits[0].id == "item77" and hits[0].start_s == pytest.approx(10 / RATE)


def test_a_picture_meets_sounds_embedded_before_bands_by_their_single_envelope(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    made = _build_drowned(root, 30, with_bands=False)
    searcher = Searcher.open(root)
    rng = np.random.default_rng(9)
    pooled, steps = _unit(rng.normal(size=DIM)), _unit(rng.normal(size=(10, DIM)))
    # footage whose changes are item 12's sound's single envelope: found by it
    picture = Query("visual", pooled, steps, made["sound"][12][10:46])
    hits = searcher.search(picture, "audio", k=3, rerank_k=30).hits
    assert hits[0].id == "item12" and hits[0].start_s == pytest.approx(10 / RATE)


def test_a_policy_measured_before_the_best_band_keeps_the_single_envelopes(tmp_path: Path) -> None:
    """Its event weights were measured with the single envelopes: the search matches as they
    were measured."""
    root = tmp_path / "root"
    made = _build_drowned(root, 120, cross_bands=False)
    searcher = Searcher.open(root)
    assert not searcher.policy.matches_by_bands("audio", "video")
    rng = np.random.default_rng(9)
    pooled, steps = _unit(rng.normal(size=DIM)), _unit(rng.normal(size=(10, DIM)))
    sound = Query("audio", pooled, steps, made["sound"][45][20:56], made["bands"][45][20:56])
    assert searcher.search(sound, "video", k=3, rerank_k=120).hits[0].id != "item45"
    picture = Query("visual", pooled, steps, made["sound"][77][10:46])
    assert searcher.search(picture, "audio", k=3, rerank_k=120).hits[0].id == "item77"


def _build_shown(
    root: Path, n: int, shown_by: str = "motion", used: bool = True, missing_every: int = 0
) -> dict:
    """n items whose sound holds in one band what only one of their picture's envelopes shows:
    its *motion* envelope (a ball landing: `models.events.picture_motion`) or its *lower
    half's* change envelope (a thing under another that moves: `models.events.picture_halves`),
    `shown_by`; every other envelope and band is unrelated. Their vectors are all the same: only
    the envelopes tell them apart. `used`: the policy was measured with that envelope;
    `missing_every` k > 0: every k-th item was embedded before it was kept (it has none)."""
    rng = np.random.default_rng(6 if shown_by == "motion" else 7)
    made: dict = {"change": [], "motion": [], "halves": [], "bands": []}
    seq = _unit(rng.normal(size=(STEPS, DIM)))
    pooled = _unit(seq.mean(0))
    key = {"motion": "visual_motion", "halves": "visual_halves"}[shown_by]

    def entries():
        for i in range(n):
            change, motion = (standardise(rng.standard_normal(BINS)) for _ in range(2))
            events = {"visual": change, "visual_motion": motion}
            if shown_by == "halves":
                halves = np.stack([standardise(rng.standard_normal(BINS)) for _ in range(4)], 1)
                events["visual_halves"] = halves
                made["halves"].append(halves)
            bands = np.stack(
                [standardise(rng.standard_normal(BINS)) for _ in range(BANDS["audio"])], axis=1
            )
            # the motion envelope, or the lower half's change (halves: top change, top motion,
            # bottom change, bottom motion)
            bands[:, i % BANDS["audio"]] = motion if shown_by == "motion" else halves[:, 2]
            made["change"].append(change)
            made["motion"].append(motion)
            made["bands"].append(bands)
            events |= {"audio": standardise(rng.standard_normal(BINS)), "audio_bands": bands}
            if missing_every and i % missing_every == 0:
                del events[key]
            yield Entry(
                ItemRecord(f"item{i}", f"/m/{i}.mp4", 6.0, True, True),
                {"visual": pooled, "audio": pooled},
                {"visual": seq, "audio": seq},
                events,
            )

    cross = frozenset({"audio→video", "video→audio"})
    policy = SearchPolicy.from_dict(_events_policy(dict.fromkeys(cross, 2.0), cross))
    if shown_by == "motion":
        policy = replace(policy, picture_motion=used)
    else:
        policy = replace(policy, picture_motion=True, picture_halves=used)
    info = {"search_policy": policy.to_dict(), "event_rate": RATE}
    publish_entries(root, entries(), model_hash="x", dim=DIM, steps_per_second=4.0, build_info=info)
    return made


def _unrelated(steps: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """A pooled vector and steps that say nothing of any item: only envelopes can find it."""
    rng = np.random.default_rng(9)
    return _unit(rng.normal(size=DIM)), _unit(rng.normal(size=(steps, DIM)))


def _sound_of(made: dict, row: int, piece: slice, pooled: np.ndarray, steps: np.ndarray) -> Query:
    """A piece of `row`'s sound as `_build_shown` made it: its bands and their mean."""
    bands = made["bands"][row][piece]
    return Query("audio", pooled, steps, bands.mean(1), bands)


def test_sound_meets_a_picture_by_its_motion_envelope_too(tmp_path: Path) -> None:
    root = tmp_path / "root"
    made = _build_shown(root, 120)
    searcher = Searcher.open(root)
    assert searcher.policy.picture_motion and searcher.motion is not None
    pooled, steps = _unrelated()
    # a piece of item 45's sound: its band holds item 45's landings, which only motion shows
    sound = _sound_of(made, 45, slice(20, 56), pooled, steps)
    hits = searcher.search(sound, "video", k=3, rerank_k=120).hits
    assert hits[0].id == "item45" and hits[0].start_s == pytest.approx(20 / RATE)
    # a piece of item 77's footage, its motion envelope with it, finds item 77's sound
    footage = Query(
        "visual",
        pooled,
        steps,
        made["change"][77][10:46],
        motion=made["motion"][77][10:46],
    )
    hits = searcher.search(footage, "audio", k=3, rerank_k=120).hits
    assert hits[0].id == "item77" and hits[0].start_s == pytest.approx(10 / RATE)
    # without its motion envelope the footage's changes say nothing of item 77
    changes_only = Query("visual", pooled, steps, made["change"][77][10:46])
    assert searcher.search(changes_only, "audio", k=3, rerank_k=120).hits[0].id != "item77"
    # "more like this" carries the stored motion envelope, and a derived version keeps it
    assert searcher.item_query("item77", "visual").motion is not None
    remove_items(root, {"item3"})
    kept = list(entries_from_version(IndexVersion.open(root)))
    np.testing.assert_allclose(kept[3].events["visual_motion"], made["motion"][4], atol=2e-3)


@pytest.mark.parametrize("shown_by", ["motion", "halves"])
def test_a_policy_measured_before_an_envelope_does_not_use_it(
    tmp_path: Path, shown_by: str
) -> None:
    """Its weights were measured without that envelope: the search matches so (an index keeps
    the envelope all the same)."""
    root = tmp_path / "root"
    made = _build_shown(root, 120, shown_by, used=False)
    searcher = Searcher.open(root)
    assert (searcher.motion if shown_by == "motion" else searcher.halves) is not None
    pooled, steps = _unrelated()
    sound = _sound_of(made, 45, slice(20, 56), pooled, steps)
    assert searcher.search(sound, "video", k=3, rerank_k=120).hits[0].id != "item45"


@pytest.mark.parametrize("shown_by", ["motion", "halves"])
def test_items_embedded_before_an_envelope_meet_sounds_by_the_others(
    tmp_path: Path, shown_by: str
) -> None:
    """An index holding items with and without that envelope (items added to an old index):
    the ones without are matched by the envelopes they have beside the others, not refused."""
    root = tmp_path / "root"
    made = _build_shown(root, 120, shown_by, missing_every=3)
    searcher = Searcher.open(root)
    pooled, steps = _unrelated()
    sound = _sound_of(made, 46, slice(10, 66), pooled, steps)  # 56 bins: evidence enough among 120
    hits = searcher.search(sound, "video", k=3, rerank_k=120).hits
    assert hits[0].id == "item46" and hits[0].start_s == pytest.approx(10 / RATE)
    # item 45 lacks it: what it showed cannot be seen, and nothing breaks
    sound = _sound_of(made, 45, slice(10, 66), pooled, steps)
    hits = searcher.search(sound, "video", k=3, rerank_k=120).hits
    assert len(hits) == 3 and hits[0].id != "item45"


def test_sound_meets_a_picture_by_its_halves_too(tmp_path: Path) -> None:
    root = tmp_path / "root"
    made = _build_shown(root, 120, "halves")
    searcher = Searcher.open(root)
    assert searcher.policy.picture_halves and searcher.halves is not None
    pooled, steps = _unrelated()
    # a piece of item 45's sound: its band holds what only item 45's lower half shows
    sound = _sound_of(made, 45, slice(20, 56), pooled, steps)
    hits = searcher.search(sound, "video", k=3, rerank_k=120).hits
    assert hits[0].id == "item45" and hits[0].start_s == pytest.approx(20 / RATE)
    # a piece of item 77's footage with its halves finds item 77's sound; without, it cannot
    piece = slice(10, 46)
    footage = Query(
        "visual",
        pooled,
        steps,
        made["change"][77][piece],
        motion=made["motion"][77][piece],
        halves=made["halves"][77][piece],
    )
    hits = searcher.search(footage, "audio", k=3, rerank_k=120).hits
    assert hits[0].id == "item77" and hits[0].start_s == pytest.approx(10 / RATE)
    whole_only = replace(footage, halves=None)
    assert searcher.search(whole_only, "audio", k=3, rerank_k=120).hits[0].id != "item77"
    # "more like this" carries the stored halves, and a derived version keeps them
    found = searcher.item_query("item77", "visual").halves
    assert found is not None
    np.testing.assert_allclose(found, made["halves"][77], atol=0.05)  # int8 in the store
    remove_items(root, {"item3"})
    kept = list(entries_from_version(IndexVersion.open(root)))
    np.testing.assert_allclose(kept[3].events["visual_halves"], made["halves"][4], atol=0.05)


@pytest.mark.parametrize("used", [True, False])
def test_the_scan_finds_a_whole_clip_by_the_picture_envelope_that_shows_its_sound(
    tmp_path: Path, used: bool
) -> None:
    """Whole clips among 300 alike ones, the pooled pass's 10 the first rows: the scan brings
    the clip whose motion envelope holds the sound's events (`EventScan.scores` across, at the
    clip's own alignment), where the policy has pictures meet sounds by their motion; by the
    change envelope alone (a policy measured before motion) it cannot."""
    root = tmp_path / "root"
    made = _build_shown(root, 300, used=used)
    searcher = Searcher.open(root)
    pooled, steps = _unrelated(STEPS)
    for row in (245, 131, 17):
        sound = Query("audio", pooled, steps, made["motion"][row], made["bands"][row])
        policy = searcher.policy
        found = searcher._event_candidates(sound, "visual", None, policy)
        assert (found[0] == row) is used
        top = [h.id for h in searcher.search(sound, "video", k=3, rerank_k=10).hits]
        assert (top[0] == f"item{row}") is used


def test_a_lone_search_on_two_cores_finds_scores_and_places_as_on_one(
    tmp_path: Path, monkeypatch
) -> None:
    """Idle cores lent to a lone search (`models.spare`): the scan's halves, the re-rank's
    steps and envelopes, an upload's encoder and envelopes side by side. Every hit, score and
    segment, and every part of the uploaded query, as in one thread."""
    root = tmp_path / "root"
    made = _build_shown(root, 300)
    searcher = Searcher.open(root)
    pooled, steps = _unrelated(STEPS)
    queries = [
        (Query("audio", pooled, steps, made["motion"][row], made["bands"][row]), "video")
        for row in (245, 17)
    ] + [
        (
            Query(
                "visual", pooled, steps, made["change"][77][10:46], motion=made["motion"][77][10:46]
            ),
            "audio",
        )
    ]
    model = TrimodalModel(preset("tiny"))
    encoder = QueryEncoder(model)
    clip = write_media(tmp_path / "c.mp4", duration=3.0, fps=25, size=(48, 64))

    def searched() -> list:
        return [
            [(h.id, h.score, h.start_s, h.end_s) for h in searcher.search(q, t, k=5).hits]
            for q, t in queries
        ]

    alone, upload = searched(), encoder.audio(clip).query
    monkeypatch.setattr(events_module, "SPLIT_SCAN_ROWS", 10)
    lent: list[bool] = []
    both = SPARE.both
    monkeypatch.setattr(SPARE, "both", lambda a, b: both(a, lambda: lent.append(True) or b()))
    SPARE.configure(1, cores=2)
    try:
        assert searched() == alone
        two = encoder.audio(clip).query
    finally:
        SPARE.configure(0)
    # per search the scan's halves and the re-rank's two parts; the upload's two parts
    assert len(lent) == 2 * len(queries) + 1
    assert alone[0][0][0] == "item245" and alone[2][0][0] == "item77"
    np.testing.assert_array_equal(two.pooled, upload.pooled)
    np.testing.assert_array_equal(two.sequence, upload.sequence)
    np.testing.assert_array_equal(two.bands, upload.bands)
    assert [p.skip_s for p in two.phases] == [p.skip_s for p in upload.phases]
    for a, b in zip(two.phases, upload.phases, strict=True):
        np.testing.assert_array_equal(a.bands, b.bands)
    for (a, s), (b, t) in zip(two.landmarks, upload.landmarks, strict=True):
        np.testing.assert_array_equal(a, b)
        assert s == t


@pytest.mark.parametrize("missing_every", [0, 3])
def test_picture_kinds_read_together_are_the_ones_read_row_by_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, missing_every: int
) -> None:
    """The re-rank reads its candidates' picture envelopes with one gather a store where every
    candidate has them all (else row by row, as before): the same arrays either way."""
    root = tmp_path / "root"
    _build_shown(root, 40, "halves", missing_every=missing_every)
    searcher = Searcher.open(root)
    rows = [7, 3, 39, 0, 12, 3]
    assert (searcher._picture_kinds_together(rows, searcher.halves) is None) == bool(missing_every)
    assert searcher._picture_kinds_together(rows, None) is not None or missing_every
    together = {h: searcher._picture_kinds(rows, h) for h in (True, False)}
    monkeypatch.setattr(searcher, "_picture_kinds_together", lambda rows, halves: None)
    for halves in (True, False):
        alone = searcher._picture_kinds(rows, halves)
        assert len(alone) == len(together[halves]) == len(rows)
        for a, b in zip(alone, together[halves], strict=True):
            assert a.dtype == b.dtype == np.float32 and np.array_equal(a, b)
        assert alone[0].shape[1] == (6 if halves else 2)
    store = searcher.events["visual"]
    assert np.array_equal(store.lengths(rows), store.lengths()[rows])
    assert len(store.lengths([])) == 0
    with pytest.raises(IndexError):
        store.lengths([40])
