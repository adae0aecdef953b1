"""How a non-square picture becomes the encoders' square input is part of the model.

The fit ("pad", "stretch", "crop") is chosen at training time, recorded in the checkpoint's config,
and the index build and every query decode the same way: a model trained on stretched frames must
never be served letterboxed ones.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from index.build import build_index
from index.query import QueryEncoder
from index.search import Searcher
from models.config import ModelConfig, VisualConfig, preset
from models.media import decode_video
from models.model import TrimodalModel, checkpoint_hash
from training.cache import CACHE_VERSION, DecodeSpec, cache_key
from training.datasets import load_manifest
from training.synthav import GeneratorConfig, RenderConfig, generate_corpus
from training.trainer import TrainConfig, prepare, train


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """16:9 clips: letterboxing leaves black bands above and below the picture."""
    out = tmp_path_factory.mktemp("fit") / "corpus"
    render = RenderConfig(duration_s=2.0, width=128, height=72)
    cfg = GeneratorConfig(clips=24, seed=5, val_fraction=0.2, test_fraction=0.2, render=render)
    generate_corpus(out, cfg, workers=2)
    return out


def test_fit_is_validated_and_survives_the_config_round_trip():
    with pytest.raises(ValueError, match="fit"):
        VisualConfig(fit="zoom")  # type: ignore[arg-type]
    cfg = replace(preset("tiny"), visual=replace(preset("tiny").visual, fit="stretch"))
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))).visual.fit == "stretch"
    # A checkpoint written before the field existed decoded with "pad".
    old = cfg.to_dict()
    del old["visual"]["fit"]
    assert ModelConfig.from_dict(old).visual.fit == "pad"


def test_pad_caches_keep_their_old_key_and_other_fits_get_their_own(wide):
    items = load_manifest(wide / "manifest.jsonl")[:3]
    spec = DecodeSpec(8.0, 32, 16_000)
    # The key as it was computed before `fit` existed: a pad cache built then is still found.
    digest = hashlib.sha256(
        json.dumps(
            {"v": CACHE_VERSION, "fps": 8.0, "image_size": 32, "sample_rate": 16_000}
        ).encode()
    )
    for item in items:
        for path in (item.video, item.audio):
            if path is None:
                digest.update(b"-")
                continue
            st = path.stat()
            digest.update(f"{item.id}|{path}|{st.st_size}|{st.st_mtime_ns}".encode())
    assert cache_key(items, spec) == digest.hexdigest()[:20]
    keys = {cache_key(items, replace(spec, fit=fit)) for fit in ("pad", "stretch", "crop")}
    assert len(keys) == 3


def test_the_trained_fit_is_recorded_and_used_by_the_index_and_queries(wide, tmp_path):
    items = load_manifest(wide / "manifest.jsonl", splits=("train", "val"))
    padded = prepare(items, "tiny", tmp_path / "cache", workers=1, fit="pad")
    stretched = prepare(items, "tiny", tmp_path / "cache", workers=1)  # the presets stretch
    assert stretched.cache.spec.fit == "stretch"
    assert padded.cache.directory != stretched.cache.directory
    some = padded.cache.ids[0]
    top_pad = padded.cache.frames(some)[:, :4].astype(int)
    top_stretch = stretched.cache.frames(some)[:, :4].astype(int)
    assert top_pad.max() == 0  # letterbox bands
    assert top_stretch.mean() > 10  # the picture reaches the top

    cfg = TrainConfig(preset="tiny", epochs=1, batch_size=8, warmup_steps=1, device="cpu")
    train(padded, cfg, tmp_path / "padded")  # an override of the preset is what gets recorded
    assert TrimodalModel.load(tmp_path / "padded" / "best").cfg.visual.fit == "pad"
    train(stretched, cfg, tmp_path / "run")
    model = TrimodalModel.load(tmp_path / "run" / "best", text_backbone=stretched.backbone)
    assert model.cfg.visual.fit == "stretch"
    assert (
        json.loads((tmp_path / "run" / "best" / "config.json").read_text())["visual"]["fit"]
        == "stretch"
    )

    clip = items[0].video
    assert clip is not None
    size = (model.cfg.visual.image_size,) * 2
    with torch.inference_mode():

        def pooled(frames: np.ndarray) -> np.ndarray:
            return model.encode_visual(*model.visual_inputs([frames])).pooled[0].numpy()

        want = pooled(decode_video(clip, fps=model.cfg.visual.fps, size=size, fit="stretch"))
        other = pooled(decode_video(clip, fps=model.cfg.visual.fps, size=size, fit="pad"))
    assert not np.allclose(want, other, atol=1e-3)  # the fit changes the embedding

    query = QueryEncoder(model).video(clip).query
    np.testing.assert_allclose(query.pooled, want, atol=1e-4)

    from service.index_cli import corpus_items

    root = tmp_path / "index"
    ckpt = tmp_path / "run" / "best"
    corpus = [i for i in corpus_items(wide / "manifest.jsonl") if i.media == clip]
    build_index(root, corpus, model, checkpoint_hash(ckpt), workers=1, shard_size=4)
    searcher = Searcher.open(root)
    stored = searcher.item_query(corpus[0].id, "visual").pooled
    np.testing.assert_allclose(stored, want, atol=2e-2)  # the index stores float16
