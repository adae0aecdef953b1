"""Manifests, converters and the feature / text caches."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from training.cache import DecodeSpec, FeatureCache, TextCache
from training.datasets import (
    ManifestError,
    convert_avcaps,
    convert_folder,
    load_manifest,
)
from training.synthav import GeneratorConfig, RenderConfig, generate_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "corpus"
    generate_corpus(
        out, GeneratorConfig(clips=8, seed=2, render=RenderConfig(duration_s=1.5)), workers=1
    )
    return out


def test_load_manifest_resolves_paths_and_filters_splits(corpus):
    items = load_manifest(corpus / "manifest.jsonl")
    assert len(items) == 8 and all(i.video.is_file() for i in items)
    train = load_manifest(corpus / "manifest.jsonl", splits=["train"])
    assert train and all(i.split == "train" for i in train)
    assert set(items[0].captions) == {"visual", "audio", "audiovisual"}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "not JSON"),
        ('{"video": "a.mp4"}', "'id'"),
        ('{"id": "x"}', "needs 'video' or 'audio'"),
        ('{"id": "x", "video": "a.mp4", "captions": {"smell": ["a"]}}', "unknown caption kind"),
        ('{"id": "x", "video": "a.mp4", "captions": {"audio": [1]}}', "list of strings"),
    ],
)
def test_bad_manifest_lines_name_the_line(tmp_path, line, message):
    path = tmp_path / "m.jsonl"
    path.write_text('{"id": "ok", "video": "a.mp4"}\n' + line + "\n")
    with pytest.raises(ManifestError, match=f"m.jsonl:2.*{message}"):
        load_manifest(path)


def test_duplicate_ids_are_refused(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"id": "a", "video": "x.mp4"}\n{"id": "a", "video": "y.mp4"}\n')
    with pytest.raises(ManifestError, match="duplicate"):
        load_manifest(path)


def test_avcaps_layout_converts(corpus, tmp_path):
    root = tmp_path / "avcaps"
    (root / "videos").mkdir(parents=True)
    items = load_manifest(corpus / "manifest.jsonl")
    for item in items[:3]:
        (root / "videos" / item.video.name).write_bytes(item.video.read_bytes())
    (root / "train_captions.json").write_text(
        json.dumps(
            {
                items[0].video.stem: {
                    "audio_captions": ["a thud"],
                    "visual_captions": ["a ball"],
                    "audio_visual_captions": ["a ball thuds"],
                },
                items[1].video.stem: {
                    "audio": "a ding",
                    "visual": ["a bell"],
                    "audio-visual": ["a bell dings"],
                },
                "missing_clip": {"audio": ["nothing"]},
            }
        )
    )
    (root / "test_captions.json").write_text(
        json.dumps(
            [
                {
                    "video_id": items[2].video.name,
                    "audio": ["a tick"],
                    "visual": ["a clock"],
                    "audiovisual": ["x"],
                }
            ]
        )
    )
    manifest, missing = convert_avcaps(root, tmp_path / "out" / "manifest.jsonl")
    assert missing == ["missing_clip"]
    loaded = load_manifest(manifest)
    assert {i.split for i in loaded} == {"train", "test"}
    first = next(i for i in loaded if i.id == items[0].video.stem)
    assert first.captions == {
        "visual": ("a ball",),
        "audio": ("a thud",),
        "audiovisual": ("a ball thuds",),
    }
    assert all(i.video.is_file() for i in loaded)


def test_folder_with_csv_converts(corpus, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    items = load_manifest(corpus / "manifest.jsonl")
    for item in items[:2]:
        (folder / item.video.name).write_bytes(item.video.read_bytes())
    csv = tmp_path / "captions.csv"
    csv.write_text(
        "file,caption,kind\n"
        f"{items[0].video.name},a ball bounces,visual\n"
        f"{items[0].video.name},thuds,audio\n"
        f"{items[1].video.name},a bell rings,\n"
        "../outside.mp4,escape,visual\n"
        "gone.mp4,nothing,visual\n"
    )
    manifest, missing = convert_folder(folder, csv, tmp_path / "m" / "manifest.jsonl")
    assert sorted(missing) == ["../outside.mp4", "gone.mp4"]
    loaded = {i.id: i for i in load_manifest(manifest)}
    assert loaded[items[0].video.stem].captions["visual"] == ("a ball bounces",)
    assert loaded[items[1].video.stem].captions["audiovisual"] == ("a bell rings",)


def test_feature_cache_decodes_once_and_skips_bad_files_with_reasons(corpus, tmp_path):
    items = load_manifest(corpus / "manifest.jsonl")
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    text = tmp_path / "notes.mp4"
    text.write_text("hello, I am not a video")
    from training.datasets import ManifestItem

    extra = [
        ManifestItem("broken", bad, None, {"visual": ("x",)}, "train"),
        ManifestItem("text", text, None, {"visual": ("x",)}, "train"),
    ]
    spec = DecodeSpec(fps=8.0, image_size=32, sample_rate=16_000)
    cache = FeatureCache.build(items + extra, spec, tmp_path / "cache", workers=2)
    assert set(cache.skipped) == {"broken", "text"}
    assert cache.skipped["text"].startswith("unknown_format")
    assert cache.skipped["broken"].split(":")[0] in {"corrupt", "no_streams"}
    frames = cache.frames(items[0].id)
    assert frames.shape == (12, 32, 32, 3) and frames.dtype == np.uint8 and frames.std() > 0
    assert abs(cache.audio(items[0].id).size - 24_000) < 1100
    again = FeatureCache.build(items + extra, spec, tmp_path / "cache", workers=1)
    assert again.directory == cache.directory  # reused, not rebuilt
    other = FeatureCache.build(items, DecodeSpec(8.0, 48, 16_000), tmp_path / "cache", workers=1)
    assert other.directory != cache.directory and other.frames(items[0].id).shape[1] == 48


def test_text_cache_embeds_only_new_texts(tmp_path):
    calls = []

    def embed(texts):
        calls.append(list(texts))
        return torch.tensor([[float(len(t)), 1.0] for t in texts])

    cache = TextCache(tmp_path, "fake-model")
    cache.ensure(["a", "bb"], embed)
    cache.ensure(["bb", "ccc"], embed)
    assert calls == [["a", "bb"], ["ccc"]]
    reopened = TextCache(tmp_path, "fake-model")
    assert reopened.lookup(["ccc", "a"])[:, 0].tolist() == [3.0, 1.0]
    assert TextCache(tmp_path, "other-model").texts == []
