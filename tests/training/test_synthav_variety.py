"""SynthAV with variety: the rendering varies per clip, the world does not.

Measured from real files (plain PyAV and the project's decoder), as the other SynthAV tests are.
"""

from __future__ import annotations

import colorsys
import hashlib
import json
import re
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest

from models.media import decode
from tests.training.plain_av import audio_onsets, decode_plain, peaks, spectral_centroid
from training.cli import synth
from training.synthav import (
    ClipSpec,
    GeneratorConfig,
    RenderConfig,
    Role,
    Source,
    manifest_record,
    plan_corpus,
    read_manifest,
    render_audio,
    render_frames,
)
from training.synthav import captions as cap
from training.synthav.variety import Variety, clip_render_config, draw_variety
from training.synthav.world import sample_source
from training.synthav.writer import encode_clip

DURATION = 2.0


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("variety") / "corpus"
    synth(out=out, clips=12, seed=3, duration=DURATION, variety=True, workers=1)
    return out


@pytest.fixture(scope="module")
def records(corpus) -> list[dict]:
    return list(read_manifest(corpus / "manifest.jsonl"))


def test_option_off_leaves_the_default_corpus_as_it_was():
    """Pinned from the generator before variety existed: manifest and raw media, byte for byte,
    except the val split's captions, which now use the wordings reserved for it (pinned from the
    generator before that change: every other record, and the val records' other fields)."""
    cfg = GeneratorConfig(clips=40, seed=11, render=RenderConfig(duration_s=1.5))
    plan = plan_corpus(cfg)
    records = [manifest_record(c, cfg.render) for c in plan.clips]
    lines = "\n".join(json.dumps(r) for r in records if r["split"] != "val")
    val = "\n".join(json.dumps({**r, "captions": None}) for r in records if r["split"] == "val")
    media = hashlib.sha256()
    for c in plan.clips[:6]:
        media.update(render_frames(c.spec, cfg.render).tobytes())
        media.update(render_audio(c.spec, cfg.render).tobytes())
    assert all(c.spec.variety is None for c in plan.clips)
    assert sum(r["split"] == "val" for r in records) == 4
    assert hashlib.sha256(lines.encode()).hexdigest() == (
        "8c04c8003d04864e53120d9cdf1650f03a1419829020ee812b320173b6bcb89f"
    )
    assert hashlib.sha256(val.encode()).hexdigest() == (
        "163ce129c6cacb59fea6a9c24dec671d2eca56a291b3042de046bf11859472df"
    )
    assert media.hexdigest() == "2e04eda86ab0ff0a5ea1870073912d94bfab3e1a884e9b055e2201c19260d882"


def test_a_share_varies_some_train_clips_and_leaves_every_other_clip_as_it_was():
    """`variety_share`: a share of the train clips drawn as `variety` would draw them; val, test
    and the other train clips are the plain corpus's clips, plan and pixels alike."""
    render = RenderConfig(duration_s=1.5)
    plain = plan_corpus(GeneratorConfig(clips=60, seed=11, render=render))
    mixed = plan_corpus(GeneratorConfig(clips=60, seed=11, render=render, variety_share=0.5))
    full = plan_corpus(GeneratorConfig(clips=60, seed=11, render=render, variety=True))
    varied = [c.spec for c in mixed.clips if c.spec.variety is not None]
    n_train = sum(c.spec.split == "train" for c in plain.clips)
    assert {s.split for s in varied} == {"train"}
    assert 0.25 * n_train < len(varied) < 0.75 * n_train
    by_id = {c.spec.id: c.spec for c in full.clips}

    def plain_of(spec: ClipSpec) -> ClipSpec:  # a misaligned clip's donor may be varied too
        donor = spec.audio_donor
        return replace(spec, variety=None, audio_donor=None if donor is None else plain_of(donor))

    for p, m in zip(plain.clips, mixed.clips, strict=True):
        # the world and the plain wordings of the plain clip, and where varied the look and sound
        # that full variety draws
        assert plain_of(m.spec) == p.spec
        assert m.captions == p.captions
        if m.spec.variety is not None:
            assert m.spec.variety == by_id[m.spec.id].variety
    test = next(c.spec for c in mixed.clips if c.spec.split == "test")
    np.testing.assert_array_equal(
        render_frames(test, render), render_frames(plain.clips[test.index].spec, render)
    )
    records = [manifest_record(c, render) for c in mixed.clips]
    assert {r["split"] for r in records if r["meta"].get("look")} == {"train"}
    assert all("look" not in r["meta"] for r in records if r["split"] != "train")
    with pytest.raises(ValueError, match="variety_share"):
        GeneratorConfig(clips=4, variety_share=1.5)


def test_a_share_of_the_sound_alone_keeps_every_picture_plain():
    """`variety_parts="sound"`: the same train clips are varied, with the same voices, but their
    pictures, frame rate, size and container are the plain clip's; their sound is not."""
    render = RenderConfig(duration_s=1.5)
    plain = plan_corpus(GeneratorConfig(clips=40, seed=11, render=render))
    whole = plan_corpus(GeneratorConfig(clips=40, seed=11, render=render, variety_share=0.5))
    heard = plan_corpus(
        GeneratorConfig(clips=40, seed=11, render=render, variety_share=0.5, variety_parts="sound")
    )
    varied = 0
    for p, w, h in zip(plain.clips, whole.clips, heard.clips, strict=True):
        assert h.spec.variety == w.spec.variety  # the same clips, the same voices
        assert h.captions == p.captions
        assert h.spec.seen_variety is None
        assert clip_render_config(h.spec, render).fps == render.fps
        if h.spec.variety is None or h.spec.audio_donor is not None:
            continue
        varied += 1
        cfg = clip_render_config(h.spec, render)
        assert (cfg.width, cfg.height, cfg.format) == (render.width, render.height, render.format)
        np.testing.assert_array_equal(render_frames(h.spec, cfg), render_frames(p.spec, render))
        assert not np.array_equal(render_audio(h.spec, cfg), render_audio(p.spec, render))
        record = manifest_record(h, render)
        assert record["meta"]["look"] is None and record["meta"]["voice"]
        if varied == 3:
            break
    assert varied == 3
    with pytest.raises(ValueError, match="variety_parts"):
        GeneratorConfig(clips=4, variety_share=0.5, variety_parts="look")


def test_synth_command_varies_the_share_of_train_clips_it_is_given(tmp_path):
    out = tmp_path / "mixed"
    synth(out=out, clips=6, seed=3, duration=1.0, variety_share=1.0, workers=1)
    records = list(read_manifest(out / "manifest.jsonl"))
    assert all(bool(r["meta"].get("look")) == (r["split"] == "train") for r in records)
    config = json.loads((out / "synthav.json").read_text())["config"]
    assert config["variety_share"] == 1.0
    assert "variety_parts" not in config  # the default: corpora made before it resume as they were


def test_corpus_decodes_and_its_rendering_varies(corpus, records):
    assert len(records) == 12
    seen: dict[str, set] = {k: set() for k in ("fps", "size", "rate", "channels", "ext")}
    for r in records:
        path = corpus / r["video"]
        meta = r["meta"]
        with av.open(str(path)) as c:
            v, a = c.streams.video[0], c.streams.audio[0]
            assert (v.codec_context.width, v.codec_context.height) == (
                meta["width"],
                meta["height"],
            )
            assert abs(float(v.average_rate) - meta["fps"]) < 0.01
            assert a.codec_context.sample_rate == meta["sample_rate"]
            assert a.codec_context.channels == meta["channels"]
        # The feature path resamples whatever was drawn onto the model's grid.
        media = decode(path, fps=4.0, size=(128, 128), sample_rate=16_000)
        assert media.frames is not None and media.frames.shape == (8, 128, 128, 3)
        assert media.audio is not None and abs(media.audio.shape[-1] - 32_000) <= 1024
        assert np.isfinite(media.audio).all()
        seen["fps"].add(meta["fps"])
        seen["size"].add((meta["width"], meta["height"]))
        seen["rate"].add(meta["sample_rate"])
        seen["channels"].add(meta["channels"])
        seen["ext"].add(path.suffix)
    assert all(len(values) >= 2 for values in seen.values()), seen


def test_a_misaligned_clip_carries_its_donors_track_as_the_donor_has_it(records):
    by_id = {r["id"]: r for r in records}
    misaligned = [r for r in records if r["meta"]["misaligned"]]
    assert misaligned
    for r in misaligned:
        donor = by_id[r["meta"]["audio_from"]]["meta"]
        assert r["meta"]["voice"] == donor["voice"]
        assert (r["meta"]["synth_sample_rate"], r["meta"]["channels"]) == (
            donor["synth_sample_rate"],
            donor["channels"],
        )


def test_same_seed_same_variety():
    cfg = GeneratorConfig(clips=8, seed=4, variety=True, render=RenderConfig(duration_s=1.5))
    a, b = plan_corpus(cfg), plan_corpus(cfg)
    assert [c.spec for c in a.clips] == [c.spec for c in b.clips]
    spec = a.clips[0].spec
    rc = clip_render_config(spec, cfg.render)
    np.testing.assert_array_equal(render_frames(spec, rc), render_frames(b.clips[0].spec, rc))
    np.testing.assert_array_equal(render_audio(spec, rc), render_audio(b.clips[0].spec, rc))
    looks = {c.spec.variety.look for c in a.clips if c.spec.variety is not None}
    assert len(looks) == 8


# ---------------------------------------------------------------------------------------------
# The world stays truthful under every look and voice


def styled(
    kind: Source,
    variety: Variety,
    *,
    colour: str = "red",
    size: str = "large",
    scene: str = "day",
    seed: int = 0,
    duration: float = DURATION,
) -> ClipSpec:
    rng = np.random.default_rng(seed)
    s = sample_source(rng, kind, Role.MAIN, duration)
    while s.tempo != "slow" or s.direction != "still":
        s = sample_source(rng, kind, Role.MAIN, duration)
    s = replace(s, colour=colour, size=size)
    return ClipSpec(
        id=f"{kind.value}-{colour}-{size}-{seed}",
        index=0,
        split="train",
        scene=scene,
        ambience="quiet",
        sources=(s,),
        n_lanes=1,
        noise_seed=seed,
        variety=variety,
    )


def write(spec: ClipSpec, tmp: Path, duration: float = DURATION) -> Path:
    cfg = clip_render_config(spec, RenderConfig(duration_s=duration))
    assert spec.variety is not None
    path = tmp / f"{spec.id}-{spec.noise_seed}.{cfg.format}"
    frames, audio = render_frames(spec, cfg), render_audio(spec, cfg)
    encode_clip(path, frames, audio, cfg, spec.variety.look.crf)
    return path


def draws(n: int, seed: int) -> list[Variety]:
    return [draw_variety(np.random.default_rng([seed, i])) for i in range(n)]


HUES = {"red": 0.0, "yellow": 53.0, "green": 129.0, "blue": 222.0, "purple": 278.0}


def named_colour(rgb: np.ndarray) -> str:
    h, s, v = colorsys.rgb_to_hsv(*(rgb / 255.0))
    if s < 0.25:
        return "white" if v > 0.5 else "grey"
    hue = h * 360.0
    return min(HUES, key=lambda c: min(abs(hue - HUES[c]), 360 - abs(hue - HUES[c])))


@pytest.mark.parametrize("colour", ["red", "green", "blue", "yellow", "white", "purple"])
def test_a_glyph_keeps_its_named_colour_in_every_look(colour, tmp_path):
    for i, variety in enumerate(draws(3, seed=len(colour) * 31 + ord(colour[0]))):
        scene = ("day", "night")[i % 2]
        spec = styled(Source.DRUM, variety, colour=colour, scene=scene, seed=i)
        empty = replace(spec, id=spec.id + "-empty", sources=())
        frames = decode_plain(write(spec, tmp_path, 1.0)).frames.astype(np.float32)
        background = decode_plain(write(empty, tmp_path, 1.0)).frames.astype(np.float32)
        diff = np.abs(frames - background).sum(-1)
        # The glyph's most distinct pixels: away from its antialiased or blurred edge.
        mask = diff > np.quantile(diff[diff > 40], 0.8)
        found = named_colour(np.median(frames[mask], axis=0))
        assert found == colour, (colour, variety.look, np.median(frames[mask], axis=0))


def activation(frames: np.ndarray) -> np.ndarray:
    """Frame-to-frame change of the glyph's pixels only.

    Every event (flash, squash, flap, tick) is an abrupt change; the slow lighting drift is not,
    and restricting to the pixels that vary most keeps camera noise elsewhere from counting.
    """
    f = frames.astype(np.float32).mean(-1)
    spread = f.std(axis=0)
    top = spread >= np.quantile(spread, 0.99)
    return np.concatenate([[0.0], np.abs(np.diff(f[:, top], axis=0)).mean(1)])


@pytest.mark.parametrize(
    ("kind", "fps"),
    [(Source.BELL, 10.0), (Source.DRUM, 15.0), (Source.CLOCK, 24.0), (Source.BIRD, 25.0)],
)
def test_sound_starts_within_a_frame_of_its_visual_event(kind, fps, tmp_path):
    for i, variety in enumerate(draws(2, seed=int(fps))):
        variety = replace(variety, fps=fps)
        spec = styled(kind, variety, size="small", seed=100 + i, duration=4.0)
        clip = decode_plain(write(spec, tmp_path, 4.0))
        # Slow events are at least 0.45 s apart: one peak per 0.3 s at most, at any frame rate.
        gap = max(3, int(0.3 * clip.fps))
        seen = peaks(activation(clip.frames), rel=0.3, gap=gap) / clip.fps
        heard = audio_onsets(clip.audio, clip.sample_rate)
        assert len(seen) >= 3, seen
        assert len(heard) == len(seen), (variety.voice, np.round(seen, 3), np.round(heard, 3))
        assert np.abs(seen - heard).max() <= 1 / clip.fps + 0.004


@pytest.mark.parametrize("kind", [Source.BELL, Source.DRUM, Source.BIRD])
def test_small_sounds_higher_than_large_in_every_voice(kind, tmp_path):
    for i, variety in enumerate(draws(4, seed=7)):
        recipe = i % 2  # both recipes of each kind, in different voices
        voice = variety.voice
        recipes = tuple(
            recipe if k is kind else r for k, r in zip(Source, voice.recipes, strict=True)
        )
        variety = replace(variety, voice=replace(voice, recipes=recipes))
        centroids = {}
        for size in ("small", "large"):
            clip = decode_plain(write(styled(kind, variety, size=size, seed=i), tmp_path))
            centroids[size] = spectral_centroid(clip.audio, clip.sample_rate)
        assert centroids["small"] > 1.3 * centroids["large"], (variety.voice, centroids)


def test_ambience_is_heard_in_every_recipe(tmp_path):
    def background_rms(path: Path) -> float:  # between ticks: median of 50 ms windows
        clip = decode_plain(path)
        mono = clip.audio.mean(axis=0)
        win = int(0.05 * clip.sample_rate)
        frames = mono[: len(mono) // win * win].reshape(-1, win)
        return float(np.median(np.sqrt((frames**2).mean(axis=1))))

    for recipe, variety in enumerate(draws(2, seed=9)):
        variety = replace(variety, voice=replace(variety.voice, ambience_recipe=recipe))
        level = {}
        for ambience in ("quiet", "rain", "wind"):
            spec = replace(styled(Source.CLOCK, variety, seed=recipe), ambience=ambience)
            level[ambience] = background_rms(write(replace(spec, id=ambience), tmp_path))
        assert level["quiet"] > 0, "a quiet room still has a noise floor, never digital zero"
        assert min(level["rain"], level["wind"]) > 10 * level["quiet"], (recipe, level)


# ---------------------------------------------------------------------------------------------
# Captions: a larger training grammar, the test wordings untouched and never in training


def has_word(text: str, phrase: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(phrase)}(?![\w-])", text.lower()) is not None


def _tables() -> list[cap.Words]:
    out = [*cap.NOUNS.values(), *cap.SEEN.values(), *cap.HEARD.values()]
    out += [*cap.SOUND_NOUNS.values(), *cap.SIZE_WORDS.values(), *cap.PITCH_WORDS.values()]
    out += [*cap.ENGINE_LOUDNESS.values(), *cap.TEMPO_WORDS.values()]
    out += [*cap.ENGINE_SPEED.values(), *cap.DIRECTION_WORDS.values()]
    return [*out, *cap.SCENE_WORDS.values(), *cap.AMBIENCE_WORDS.values()]


def test_test_wordings_stay_out_of_the_larger_training_grammar():
    tables = _tables()
    train_words = {w for t in tables for w in t.train + t.extra}
    test_words = {w for t in tables for w in t.test}
    assert not train_words & test_words
    assert all(len(t.extra) >= 2 for t in tables)  # the grammar really is larger
    plan = plan_corpus(GeneratorConfig(clips=300, seed=2, variety=True))
    train = [
        c
        for p in plan.clips
        if p.spec.split != "test"
        for kind in p.captions.values()
        for c in kind
    ]
    test = [c for p in plan.clips if p.spec.split == "test" for k in p.captions.values() for c in k]
    assert not set(train) & set(test)
    for text in train:
        assert not any(has_word(text, w) for w in test_words), text
        assert not text.lower().startswith(("footage", "we watch as", "in this recording"))
        assert not text.lower().startswith(("you can hear how", "a clip", "we see and hear how"))
    # The test split is worded exactly as without variety: no extra word, no colour synonym.
    extras = {w for t in tables for w in t.extra} | {
        w for words in cap.COLOUR_SYNONYMS.values() for w in words
    }
    for text in test:
        for phrase in test_words:  # "beats its wings" is a test phrase; "beats" alone is not
            text = re.sub(rf"(?<![\w-]){re.escape(phrase)}(?![\w-])", " ", text.lower())
        assert not any(has_word(text, w) for w in extras), text
    # Training uses the new wordings, and colour synonyms, a good share of the time.
    used = sum(any(has_word(t, w) for w in extras) for t in train)
    assert used > 0.5 * len(train)


def test_larger_grammar_stays_truthful():
    plan = plan_corpus(GeneratorConfig(clips=200, seed=5, variety=True))
    colours = {c: (c, *syn) for c, syn in cap.COLOUR_SYNONYMS.items()}
    for p in plan.clips:
        seen = p.spec.visible_sources
        for text in p.captions["visual"]:
            named = {c for c, words in colours.items() if any(has_word(text, w) for w in words)}
            assert named == {s.colour for s in seen}, text
            assert any(has_word(text, w) for w in cap.SCENE_WORDS[p.spec.scene].all), text
            ambience = (w for t in cap.AMBIENCE_WORDS.values() for w in t.all)
            assert not any(has_word(text, w) for w in ambience), text
        heard = p.spec.audible_sources
        for text in p.captions["audio"]:
            assert not any(has_word(text, w) for ws in colours.values() for w in ws), text
            for s in heard:
                assert any(has_word(text, w) for w in cap.NOUNS[s.kind].all), text
            if len(heard) == 1:
                other = "large" if heard[0].size == "small" else "small"
                assert not any(has_word(text, w) for w in cap.PITCH_WORDS[other].all), text


@pytest.mark.parametrize("variety", [False, True])
def test_val_split_is_worded_apart_from_train_and_test(variety):
    """Model selection on the val split measures unseen wordings, without touching the test ones."""
    tables = [*_tables(), cap.VISUAL_TEMPLATES, cap.AUDIO_TEMPLATES, cap.AV_TEMPLATES]
    assert all(t.val for t in tables)
    for t in tables:
        assert not set(t.val) & set(t.train + t.extra + t.test), t
    words = _tables()
    val_words = {w for t in words for w in t.val}
    test_words = {w for t in words for w in t.test}
    train_words = {w for t in words for w in t.train + t.extra}
    plan = plan_corpus(GeneratorConfig(clips=400, seed=3, variety=variety))
    by_split: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for p in plan.clips:
        by_split[p.spec.split] += [c for k in p.captions.values() for c in k]
    assert by_split["val"]
    for split in ("train", "test"):
        for text in by_split[split]:
            assert not any(has_word(text, w) for w in val_words), (split, text)
    for text in by_split["val"]:
        assert not any(has_word(text, w) for w in test_words), text
        # Every slot is filled from the val column: no training noun, verb or scene phrase is left.
        # ("high" in "high-frequency" is not a word of its own; has_word knows that.)
        leftover = [w for w in train_words if has_word(text, w) and w not in val_words]
        assert not [w for w in leftover if " " in w or len(w) > 5], (text, leftover)
