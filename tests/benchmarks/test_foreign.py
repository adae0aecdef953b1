"""The foreign corpus and the robustness set: real sox and ffmpeg runs, decoded by models.media."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PIL", reason="the foreign corpus draws with Pillow: pip install '.[bench]'")

from benchmarks.foreign.captions import COLOUR_WORDS, SHAPE_NOUNS
from benchmarks.foreign.encode import missing_tools
from benchmarks.foreign.reencode import VARIANTS, reencode_corpus
from benchmarks.foreign.render import encode_clip, main, render_corpus
from benchmarks.foreign.world import (
    AMBIENCES,
    COLOURS,
    DIRECTIONS,
    FORMATS,
    KINDS,
    ROLES,
    SCENES,
    SIZES,
    TEMPI,
    Source,
    WorldConfig,
    plan_clip,
)
from models.media import decode, probe
from training.datasets import load_manifest

pytestmark = pytest.mark.skipif(
    bool(missing_tools()),
    reason=f"needs the ffmpeg and sox CLIs (apt-get install ffmpeg sox), missing {missing_tools()}",
)

# The keys of the own generator's meta, in its order (a line of its manifest, as of this writing).
OWN_META_KEYS = [
    "generator", "duration_s", "fps", "width", "height", "sample_rate", "channels", "scene",
    "ambience", "count", "sources", "audio", "offscreen", "silent_object", "misaligned",
    "audio_from", "heldout", "twin_group",
]  # fmt: skip
OWN_SOURCE_KEYS = ["kind", "colour", "direction", "size", "tempo", "role", "events"]
OWN_AUDIO_SOURCE_KEYS = ["kind", "size", "tempo", "role", "events"]
DURATION = 2.0
# A tiny corpus that still holds a twin group, offscreen sounds, silent objects and stereo.
CFG = WorldConfig(
    clips=6, seed=11, duration_s=DURATION, twin_fraction=0.7, offscreen_p=0.5, silent_object_p=0.5
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("foreign")
    summary = render_corpus(out, CFG, workers=2)
    assert summary.rendered == CFG.clips
    return out


@pytest.fixture(scope="module")
def records(corpus: Path) -> list[dict]:
    return [json.loads(line) for line in (corpus / "manifest.jsonl").read_text().splitlines()]


def _check_decodes(path: Path, meta: dict) -> None:
    """The file holds what meta declares: size, frame rate, sample rate, channels, duration."""
    info = probe(path)
    (video,) = [s for s in info.streams if s.kind == "video"]
    (audio,) = [s for s in info.streams if s.kind == "audio"]
    assert (video.width, video.height) == (meta["width"], meta["height"])
    assert video.fps == pytest.approx(meta["fps"], abs=0.01)
    assert (audio.sample_rate, audio.channels) == (meta["sample_rate"], meta["channels"])
    out = decode(path, fps=None, size=None, sample_rate=meta["sample_rate"])
    assert out.frames is not None and out.audio is not None
    assert out.frames.shape[1:3] == (meta["height"], meta["width"])
    assert abs(len(out.frames) - round(meta["duration_s"] * meta["fps"])) <= 1
    assert len(out.audio) / meta["sample_rate"] == pytest.approx(meta["duration_s"], abs=0.2)
    assert np.abs(out.audio).max() > 0.05  # a soundtrack, not silence


def test_every_clip_decodes_as_declared(corpus: Path, records: list[dict]) -> None:
    assert len(records) == CFG.clips
    for record in records:
        _check_decodes(corpus / record["video"], record["meta"])


def test_manifest_loads_with_own_meta_schema(corpus: Path, records: list[dict]) -> None:
    items = load_manifest(corpus / "manifest.jsonl")
    assert [i.id for i in items] == [r["id"] for r in records]
    assert {i.split for i in items} == {"test"}
    for item in items:
        meta = item.meta
        assert list(meta) == OWN_META_KEYS
        assert meta["generator"] == "foreign" and meta["misaligned"] is False
        assert meta["scene"] in SCENES and meta["ambience"] in AMBIENCES
        assert meta["audio"]["ambience"] == meta["ambience"]
        for s in meta["sources"]:
            assert list(s) == OWN_SOURCE_KEYS
            assert s["kind"] in KINDS and s["colour"] in COLOURS and s["size"] in SIZES
            assert s["tempo"] in TEMPI and s["direction"] in DIRECTIONS and s["role"] in ROLES
        assert meta["count"] == sum(s["role"] == "main" for s in meta["sources"]) in (1, 2)
        heard = [s for s in meta["sources"] if s["role"] != "silent"]
        assert meta["audio"]["sources"] == [{k: s[k] for k in OWN_AUDIO_SOURCE_KEYS} for s in heard]
        assert meta["offscreen"] == any(s["role"] == "offscreen" for s in meta["sources"])
        assert meta["silent_object"] == any(s["role"] == "silent" for s in meta["sources"])
    flags = [(r["meta"]["offscreen"], r["meta"]["silent_object"]) for r in records]
    assert any(o for o, _ in flags) and any(s for _, s in flags)


def test_timing_twins_differ_only_in_event_times(records: list[dict]) -> None:
    twins = [r for r in records if r["meta"]["twin_group"] is not None]
    assert len(twins) == 4 and len({r["meta"]["twin_group"] for r in twins}) == 1

    def without_events(meta: dict) -> str:
        return re.sub(r'"events": \[[^\]]*\]', "", json.dumps(meta))

    assert len({json.dumps(r["captions"]) for r in twins}) == 1
    assert len({without_events(r["meta"]) for r in twins}) == 1
    timings = {json.dumps([s["events"] for s in r["meta"]["sources"]]) for r in twins}
    assert len(timings) == 4


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def test_captions_are_truthful_per_kind(records: list[dict]) -> None:
    colours = {w for words in COLOUR_WORDS.values() for p in words for w in _words(p)}
    heard_only = {"rain", "wind", "quiet", "silent", "silence", "noise", "hear", "hum", "chirps"}
    heard_only |= {"thuds", "dings", "booms", "ticks", "drone", "voice", "tones", "pitched"}
    seen_only = colours | {"day", "night", "dark", "bright", "daylight", "moving", "frame"}
    seen_only |= {"left", "right", "rightward", "leftward", "screen", "picture", "backdrop"}
    for r in records:
        caps, sources = r["captions"], r["meta"]["sources"]
        assert all(len(caps[k]) >= 3 and len(set(caps[k])) == len(caps[k]) for k in caps)
        for text in caps["visual"]:
            assert not _words(text) & heard_only, text
            for s in sources:
                nouns = {w for n in SHAPE_NOUNS[s["kind"]] for w in _words(n)} - {
                    "icon",
                    "block",
                    "shaped",
                }
                named = bool(_words(text) & nouns)
                assert named == (s["role"] != "offscreen"), (s, text)
        for text in caps["audio"]:
            assert not _words(text) & seen_only, text
            for s in sources:
                if s["role"] == "silent" and s["kind"] in ("bell", "drum", "siren", "engine"):
                    assert s["kind"] not in _words(text), (s, text)
        for text in caps["audiovisual"]:
            assert _words(text) & colours, text


def test_events_lie_inside_the_clip(records: list[dict]) -> None:
    for r in records:
        for s in r["meta"]["sources"]:
            assert s["events"] == sorted(s["events"])
            assert all(0.0 < t < DURATION - 0.1 for t in s["events"]), s
            assert (s["kind"] == "engine") == (not s["events"])


def test_sound_and_picture_of_an_event_within_one_frame(tmp_path: Path) -> None:
    """A lone drum in a quiet room: its boom starts, and its squash shows, at each event."""
    base = plan_clip(CFG, 5)
    drum = Source(
        "drum", "red", "still", "large", "slow", "main", (0.55, 1.35), shade=(220, 30, 30)
    )
    plan = replace(
        base,
        sources=(drum,),
        ambience="quiet",
        channels=1,
        scene="night",
        format=FORMATS[0],
        sample_rate=16000,
        fps=15.0,
        visible_lanes=1,
        look=replace(base.look, noise=0.0, reverb=0, filled=True, palette=((20, 20, 40),) * 2),
    )
    path = tmp_path / plan.media_name
    encode_clip(plan, path)
    out = decode(path, fps=None, size=None, sample_rate=16000)
    assert out.audio is not None and out.frames is not None
    frame_s = 1 / plan.fps
    loud = np.flatnonzero(np.abs(out.audio) > 0.2 * np.abs(out.audio).max()) / 16000
    onsets = [loud[0], *loud[1:][np.diff(loud) > 0.25]]
    assert len(onsets) == 2
    for onset, t in zip(onsets, drum.events, strict=True):
        assert abs(onset - t) <= frame_s, (onset, t)
    red = (out.frames[..., 0].astype(int) > 150) & (out.frames[..., 1] < 90)
    heights = np.array([np.ptp(np.flatnonzero(f.any(axis=1))) for f in red])
    squashed = np.flatnonzero(heights < 0.8 * np.median(heights))
    first = [squashed[0], *squashed[1:][np.diff(squashed) > 1]]
    for frame, t in zip(first, drum.events, strict=True):
        assert abs(frame * frame_s - t) <= frame_s, (frame, t)


def test_every_container_and_codec_decodes(tmp_path: Path) -> None:
    base = plan_clip(CFG, 4)
    for i, fmt in enumerate(FORMATS):
        plan = replace(base, format=fmt, sample_rate=fmt.sample_rate or 22050, channels=2)
        path = tmp_path / f"{i}{fmt.suffix}"
        encode_clip(plan, path)
        _check_decodes(path, plan.meta())


def test_rerun_resumes_and_refuses_another_config(corpus: Path) -> None:
    before = (corpus / "manifest.jsonl").read_text()
    again = render_corpus(corpus, CFG, workers=1)
    assert (again.rendered, again.reused) == (0, CFG.clips)
    assert (corpus / "manifest.jsonl").read_text() == before
    with pytest.raises(ValueError, match="another configuration"):
        render_corpus(corpus, replace(CFG, seed=12), workers=1)


def test_cli_rejects_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--out", str(tmp_path), "--clips", "0"]) == 2
    assert "clips must be at least 1" in capsys.readouterr().err
    assert main(["--out", str(tmp_path), "--clips", "2", "--heldout", "bell:mauve"]) == 2
    assert "not in the world" in capsys.readouterr().err


def test_reencoded_own_clips_decode_as_declared(tmp_path: Path) -> None:
    from training.synthav import GeneratorConfig, RenderConfig, generate_corpus

    own = generate_corpus(
        tmp_path / "own", GeneratorConfig(clips=4, render=RenderConfig(duration_s=DURATION))
    )
    path = reencode_corpus(own.manifest, tmp_path / "robust", split=None, seed=3, workers=2)
    source = {i.id: i for i in load_manifest(own.manifest)}
    items = load_manifest(path)
    assert sorted(i.id for i in items) == sorted(source)
    variants = {i.meta["variant"] for i in items}
    assert len(variants) == 4 and variants <= {v.name for v in VARIANTS}
    for item in items:
        old = source[item.id]
        assert item.captions == old.captions and item.split == old.split
        kept = {k: v for k, v in old.meta.items() if k not in ("fps", "width", "height")}
        kept = {k: v for k, v in kept.items() if k not in ("sample_rate", "channels")}
        assert {k: item.meta[k] for k in kept} == kept
        assert item.video is not None
        _check_decodes(item.video, item.meta)


def test_oracle_ceilings_read_the_foreign_meta(records: list[dict]) -> None:
    """The evaluation's signatures (what a caption of each kind can tell apart) work on the
    foreign corpus's meta exactly as on the own generator's."""
    from training.evaluate import _signature

    for record in records:
        for kind in ("visual", "audio", "audiovisual"):
            assert _signature(record["meta"], kind) is not None, (record["id"], kind)
