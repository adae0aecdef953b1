"""A whole SynthAV corpus, made through the CLI function: files, manifest, splits, captions."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import av
import numpy as np
import pytest
import typer

from tests.training.plain_av import audio_onsets, decode_plain
from training.cli import synth
from training.synthav import GeneratorConfig, RenderConfig, generate_corpus, read_manifest
from training.synthav.captions import (
    AMBIENCE_WORDS,
    COLOUR_WORDS,
    NOUNS,
    PITCH_WORDS,
    SCENE_WORDS,
)
from training.synthav.world import Source


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthav") / "corpus"
    synth(out=out, clips=200, seed=1)
    return out


@pytest.fixture(scope="module")
def records(corpus) -> list[dict]:
    return list(read_manifest(corpus / "manifest.jsonl"))


def has_word(text: str, phrase: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(phrase)}(?![\w-])", text.lower()) is not None


def mentions_any(text: str, phrases) -> bool:
    return any(has_word(text, p) for p in phrases)


def test_every_file_decodes_with_plain_pyav(corpus, records):
    assert len(records) == 200
    files = sorted((corpus / "media").iterdir())
    assert len(files) == 200
    assert {corpus / r["video"] for r in records} == set(files)
    for r in records:
        with av.open(str(corpus / r["video"])) as c:
            assert [s.type for s in c.streams] == ["video", "audio"]
            v, a = c.streams.video[0], c.streams.audio[0]
            assert v.codec_context.name == "h264" and a.codec_context.name == "aac"
            assert (v.codec_context.width, v.codec_context.height) == (128, 128)
            assert a.codec_context.sample_rate == 16_000 and a.codec_context.channels == 1
            assert abs(c.duration / 1e6 - 6.0) < 0.1
            frames = sum(1 for _ in c.decode(v))
        assert frames == 72


def test_audio_track_has_the_declared_length(corpus, records):
    for r in records[:20]:
        clip = decode_plain(corpus / r["video"])
        assert abs(clip.audio.shape[1] - 96_000) <= 1024
        assert np.isfinite(clip.audio).all() and np.abs(clip.audio).max() <= 1.0


def test_splits_are_disjoint_and_sized(records):
    ids = [r["id"] for r in records]
    assert len(set(ids)) == len(ids)
    by_split = defaultdict(set)
    for r in records:
        by_split[r["split"]].add(r["id"])
    assert set(by_split) == {"train", "val", "test"}
    assert not (by_split["train"] & by_split["test"]) and not (by_split["val"] & by_split["test"])
    assert (len(by_split["train"]), len(by_split["val"]), len(by_split["test"])) == (160, 20, 20)


def test_heldout_combinations_never_occur_in_train_or_val(corpus, records):
    info = json.loads((corpus / "synthav.json").read_text())
    heldout = {tuple(p) for p in info["heldout"]}
    assert len(heldout) == 6

    def pairs(r):
        out = set()
        for s in r["meta"]["sources"] + r["meta"]["audio"]["sources"]:
            out.add((s["kind"], s["size"]))
            if "colour" in s:
                out.add((s["kind"], s["colour"]))
        return out

    assert info["val_heldout"] == [] and info["flags"]["val_heldout"] == 0  # not asked for
    for r in records:
        if r["split"] != "test":
            assert not pairs(r) & heldout, r["id"]
        assert r["meta"]["heldout"] == bool(pairs(r) & heldout)
    assert sum(r["meta"]["heldout"] for r in records if r["split"] == "test") >= 5


def test_the_val_splits_pairs_leave_the_test_split_as_it_was():
    """The val split's own pairs come from their own random stream: without them the train and
    val clips are the earlier corpus's; with them the test clips are the same either way, and
    each source keeps a size and four colours in training."""
    from training.synthav.plan import plan_corpus
    from training.synthav.world import COLOURS, SIZES

    with_pairs = plan_corpus(GeneratorConfig(clips=400, seed=3, val_heldout_fraction=0.25))
    without = plan_corpus(GeneratorConfig(clips=400, seed=3))
    assert without.val_heldout == frozenset() and len(with_pairs.val_heldout) == 3
    assert with_pairs.heldout == without.heldout and not with_pairs.val_heldout & without.heldout

    def pairs(spec):
        heard = spec.audio_donor.sources if spec.audio_donor is not None else ()
        return {(s.kind.value, v) for s in spec.sources + heard for v in (s.colour, s.size)}

    val = [c.spec for c in with_pairs.clips if c.spec.split == "val"]
    for c in with_pairs.clips:
        if c.spec.split == "train":
            assert not pairs(c.spec) & (with_pairs.heldout | with_pairs.val_heldout)
        if c.spec.split == "val":
            assert not pairs(c.spec) & with_pairs.heldout
            # a val clip's flag names the val split's own pairs
            assert c.spec.heldout == bool(pairs(c.spec) & with_pairs.val_heldout)
    # a quarter of the val split is forced to hold one (more may by chance)
    assert sum(spec.heldout for spec in val) >= round(len(val) * 0.25) > 0
    for a, b in zip(with_pairs.clips, without.clips, strict=True):
        assert a.spec.split == b.spec.split
        if a.spec.split == "test":
            assert a == b
    assert any(
        a != b
        for a, b in zip(with_pairs.clips, without.clips, strict=True)
        if a.spec.split == "val"
    )
    untrained = with_pairs.heldout | with_pairs.val_heldout
    for kind in Source:
        assert sum((kind.value, c) not in untrained for c in COLOURS) >= 4
        assert any((kind.value, s) not in untrained for s in SIZES)


def test_realism_flags_are_where_they_belong(corpus, records):
    n = {
        k: sum(r["meta"][k] for r in records) for k in ("offscreen", "silent_object", "misaligned")
    }
    assert 20 <= n["offscreen"] <= 65 and 20 <= n["silent_object"] <= 65
    misaligned = [r for r in records if r["meta"]["misaligned"]]
    assert len(misaligned) == 16 and all(r["split"] == "train" for r in misaligned)
    by_id = {r["id"]: r for r in records}
    # The track really is the other clip's: decoded audio is the donor's, sample for sample.
    for r in misaligned[:3]:
        donor = by_id[r["meta"]["audio_from"]]
        assert not donor["meta"]["misaligned"]
        mine = decode_plain(corpus / r["video"]).audio
        theirs = decode_plain(corpus / donor["video"]).audio
        np.testing.assert_array_equal(mine, theirs)
        assert r["meta"]["audio"] == donor["meta"]["audio"]


def test_captions_agree_with_meta(records):
    all_nouns = {k: NOUNS[Source(k)].all for k in (s.value for s in Source)}
    for r in records:
        meta, caps = r["meta"], r["captions"]
        assert all(len(caps[k]) >= 1 for k in ("visual", "audio", "audiovisual"))
        seen = [s for s in meta["sources"] if s["role"] != "offscreen"]
        heard = meta["audio"]["sources"]
        unseen_kinds = {s["kind"] for s in meta["sources"]} - {s["kind"] for s in seen}
        unheard_kinds = set(all_nouns) - {s["kind"] for s in heard}
        for text in caps["visual"]:
            for s in seen:
                assert mentions_any(text, all_nouns[s["kind"]]), (r["id"], text)
                assert has_word(text, s["colour"]), (r["id"], text)
            colours = {c for c in COLOUR_WORDS if has_word(text, c)}
            assert colours == {s["colour"] for s in seen}, (r["id"], text)
            for kind in unseen_kinds:  # an off-screen sound is never described as seen
                assert not mentions_any(text, all_nouns[kind]), (r["id"], text)
            assert mentions_any(text, SCENE_WORDS[meta["scene"]].all), (r["id"], text)
            assert not any(mentions_any(text, w.all) for w in AMBIENCE_WORDS.values())
        for text in caps["audio"]:
            assert not any(has_word(text, c) for c in COLOUR_WORDS), (r["id"], text)
            for s in heard:
                assert mentions_any(text, all_nouns[s["kind"]]), (r["id"], text)
            for kind in unheard_kinds:  # a silent object is never described as heard
                assert not mentions_any(text, all_nouns[kind]), (r["id"], text)
            assert mentions_any(text, AMBIENCE_WORDS[meta["audio"]["ambience"]].all)
            if len(heard) == 1:  # pitch words follow size
                size = heard[0]["size"]
                other = "large" if size == "small" else "small"
                assert mentions_any(text, PITCH_WORDS[size].all), (r["id"], text)
                assert not mentions_any(text, PITCH_WORDS[other].all), (r["id"], text)


def test_test_split_uses_phrasings_train_never_sees(records):
    train_caps = {
        c for r in records if r["split"] == "train" for k in r["captions"] for c in r["captions"][k]
    }
    test_caps = [
        c for r in records if r["split"] == "test" for k in r["captions"] for c in r["captions"][k]
    ]
    assert not train_caps & set(test_caps)
    reserved = {w for words in NOUNS.values() for w in words.test}
    train_text = " ".join(train_caps)
    assert not any(has_word(train_text, w) for w in reserved)
    assert any(mentions_any(c, reserved) for c in test_caps)


def test_timing_twins_share_captions_and_differ_in_onsets(corpus, records):
    groups = defaultdict(list)
    for r in records:
        if r["meta"]["twin_group"]:
            groups[r["meta"]["twin_group"]].append(r)
    assert groups, "the test split holds at least one twin group"
    for members in groups.values():
        assert len(members) == 4 and all(m["split"] == "test" for m in members)
        assert all(m["captions"] == members[0]["captions"] for m in members)

        def attrs(m):
            strip = lambda s: {k: v for k, v in s.items() if k != "events"}  # noqa: E731
            meta = {
                k: v for k, v in m["meta"].items() if k not in ("sources", "audio", "twin_group")
            }
            return meta, [strip(s) for s in m["meta"]["sources"]]

        assert all(attrs(m) == attrs(members[0]) for m in members)
        onsets = [audio_onsets(decode_plain(corpus / m["video"]).audio, 16_000) for m in members]
        for i in range(4):
            for j in range(i + 1, 4):
                same = len(onsets[i]) == len(onsets[j]) and np.allclose(
                    onsets[i], onsets[j], atol=0.02
                )
                assert not same, "twins must differ in event timing"


def _decoded(out: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    recs = list(read_manifest(out / "manifest.jsonl"))
    return [(d.frames, d.audio) for d in (decode_plain(out / r["video"]) for r in recs)]


def test_same_seed_same_content_other_seed_other_clips(tmp_path):
    cfg = GeneratorConfig(clips=6, seed=5, render=RenderConfig(duration_s=2.0))
    generate_corpus(tmp_path / "a", cfg, workers=2)
    generate_corpus(tmp_path / "b", cfg, workers=1)
    assert (tmp_path / "a/manifest.jsonl").read_text() == (
        tmp_path / "b/manifest.jsonl"
    ).read_text()
    for (fa, aa), (fb, ab) in zip(_decoded(tmp_path / "a"), _decoded(tmp_path / "b"), strict=True):
        np.testing.assert_array_equal(fa, fb)
        np.testing.assert_array_equal(aa, ab)
    other = GeneratorConfig(clips=6, seed=6, render=RenderConfig(duration_s=2.0))
    generate_corpus(tmp_path / "c", other, workers=2)
    pairs = zip(_decoded(tmp_path / "a"), _decoded(tmp_path / "c"), strict=True)
    assert all(not np.array_equal(fa, fc) for (fa, _), (fc, _) in pairs)


def test_resume_skips_complete_files_and_refuses_other_settings(tmp_path):
    cfg = GeneratorConfig(clips=4, seed=1, render=RenderConfig(duration_s=1.5))
    first = generate_corpus(tmp_path / "c", cfg, workers=1)
    assert first.written == 4
    (tmp_path / "c/media/clip000002.mp4").unlink()
    again = generate_corpus(tmp_path / "c", cfg, workers=1)
    assert again.written == 1
    with pytest.raises(FileExistsError):
        generate_corpus(tmp_path / "c", GeneratorConfig(clips=4, seed=2), workers=1)
    (tmp_path / "other").mkdir()
    (tmp_path / "other/keep.txt").write_text("user data")
    with pytest.raises(FileExistsError):
        generate_corpus(tmp_path / "other", cfg, workers=1)
    assert (tmp_path / "other/keep.txt").read_text() == "user data"


def test_cli_rejects_bad_settings(tmp_path):
    with pytest.raises(typer.BadParameter):
        synth(out=tmp_path / "x", clips=2, width=33)
    with pytest.raises(typer.BadParameter):
        synth(out=tmp_path / "x", clips=2, media_format="avi")
