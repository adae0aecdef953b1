"""The picture's learned event network: its inputs, its envelope, and where a model uses it."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pytest
import torch

from models.config import ModelConfig, preset
from models.event_net import MEASURES, PictureEventNet, event_inputs, learned_envelope
from models.events import item_events, picture_events
from models.model import TrimodalModel


def clip(t: int = 30, size: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (t, size, size, 3), dtype=np.uint8)


def test_inputs_are_grey_pairs_and_measures_relative_to_their_median():
    frames = clip(10, 64)
    changes = np.linspace(1.0, 10.0, 10).astype(np.float32)
    regions = np.ones((10, 4), np.float32) * 3.0
    motion = np.zeros(10, np.float32)  # nothing ever moves: stays zero, not a division by zero
    halves = np.full((10, 4), 2.0, np.float32)
    grey, measures = event_inputs(frames, 32, changes, regions, motion, halves)
    assert grey.shape == (11, 32, 32) and measures.shape == (10, MEASURES)
    assert torch.equal(grey[-1], grey[-2])  # nothing follows the last frame
    # grey is the mean of the channels, averaged over each 2 × 2 block
    expected = frames[0].astype(np.float32).mean(-1).reshape(32, 2, 32, 2).mean((1, 3)) / 255.0
    np.testing.assert_allclose(grey[0].numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(
        measures[:, 0].numpy(), np.log1p(changes / np.median(changes)), rtol=1e-5
    )
    np.testing.assert_allclose(measures[:, 1:5].numpy(), np.log1p(1.0), rtol=1e-6)
    assert (measures[:, 5] == 0).all()
    # the same clip 10 times brighter in its measures: the same inputs
    _, scaled = event_inputs(frames, 32, changes * 10, regions * 10, motion, halves * 10)
    np.testing.assert_allclose(scaled.numpy(), measures.numpy(), rtol=1e-5)


def test_missing_measures_are_taken_from_the_frames_where_they_can_be():
    frames = clip(8, 32)
    _, measures = event_inputs(frames, 32)
    f = frames.astype(np.float32) / 255.0
    change = np.concatenate([np.abs(np.diff(f, axis=0)).mean(axis=(1, 2, 3)), [0.0]])
    scale = np.median(change)
    np.testing.assert_allclose(measures[:, 0].numpy(), np.log1p(change / scale), rtol=1e-4)
    assert measures[:, 1:5].abs().sum() > 0  # the quadrants, from the frames
    assert (measures[:, 5:] == 0).all()  # motion and halves: not measurable here


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="frames must be"):
        event_inputs(np.zeros((0, 8, 8, 3), np.uint8))
    bad = np.full(5, np.nan, np.float32)
    with pytest.raises(ValueError, match="non-finite"):
        event_inputs(clip(5), 32, changes=bad)


def test_the_network_gives_one_logit_per_frame_pair_and_a_standardised_envelope():
    torch.manual_seed(0)
    net = PictureEventNet(16, 4).eval()
    grey = torch.rand(2, 13, 16, 16)
    measures = torch.rand(2, 12, MEASURES)
    assert net(grey, measures).shape == (2, 12)
    env = learned_envelope(net, clip(12, 32))
    assert env.shape == (12,) and abs(env.mean()) < 1e-5 and abs(env.std() - 1) < 1e-3


def learned_tiny() -> ModelConfig:
    return replace(preset("tiny"), picture_events="learned")


def test_config_refuses_an_unknown_envelope_and_old_configs_keep_the_hand_made_one():
    with pytest.raises(ValueError, match="picture_events"):
        replace(preset("tiny"), picture_events="optical-flow")
    data = preset("tiny").to_dict()
    del data["picture_events"]  # a checkpoint from before the field
    assert ModelConfig.from_dict(data).picture_events == "changes"
    assert TrimodalModel(ModelConfig.from_dict(data)).picture_events is None


def test_a_model_uses_its_network_only_once_trained(tmp_path, caplog):
    torch.manual_seed(0)
    model = TrimodalModel(learned_tiny()).eval()
    frames = clip(24, 32, seed=3)
    changes = np.random.default_rng(1).random(24).astype(np.float32)
    fps = model.cfg.visual.fps
    hand = picture_events(frames, fps, fps, changes)
    np.testing.assert_array_equal(model.picture_envelope(frames, changes), hand)
    # saved untrained, loaded: a warning, and still the hand-made envelope
    model.save(tmp_path / "untrained")
    with caplog.at_level(logging.WARNING, logger="models.model"):
        loaded = TrimodalModel.load(tmp_path / "untrained")
    assert "never trained" in caplog.text
    np.testing.assert_array_equal(loaded.picture_envelope(frames, changes), hand)

    assert model.picture_events is not None
    model.picture_events.trained.fill_(1.0)
    learned = model.picture_envelope(frames, changes)
    assert learned.shape == hand.shape and not np.allclose(learned, hand)
    np.testing.assert_array_equal(learned, learned_envelope(model.picture_events, frames, changes))
    model.save(tmp_path / "trained")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="models.model"):
        again = TrimodalModel.load(tmp_path / "trained")
    assert "never trained" not in caplog.text
    np.testing.assert_array_equal(again.picture_envelope(frames, changes), learned)
    # the evaluation's envelopes take the model's
    found = item_events(frames, None, fps, 16_000, changes, picture_envelope=again.picture_envelope)
    np.testing.assert_array_equal(found["visual"], learned)
    assert np.array_equal(item_events(frames, None, fps, 16_000, changes)["visual"], hand)
