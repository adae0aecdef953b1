"""Explicit event inputs: sound onsets and picture changes, found where they happen."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from models.config import ModelConfig, preset
from models.encoders import CHANGE_GRID, ONSET_BANDS, change_features, onset_features
from models.model import TrimodalModel


def test_onsets_are_found_in_the_token_where_the_sound_starts():
    mel = torch.full((1, 32, 100), -8.0)
    mel[:, :, 63:70] = 0.0  # a sound starts at frame 63: token 12 of 5-frame tokens
    mask = torch.ones(1, 100, dtype=torch.bool)
    out = onset_features(mel, mask, 5)
    assert out.shape == (1, 20, 2 * ONSET_BANDS)
    peak = out[0, :, :ONSET_BANDS].sum(-1)
    assert int(peak.argmax()) == 12
    assert float(peak[13:].abs().max()) == 0  # a sound that ends is not an onset
    # padding never starts a sound, whatever it holds
    mask[:, 80:] = False
    mel[:, :, 80:] = 50.0
    assert float(onset_features(mel, mask, 5)[0, 16:].abs().max()) == 0


def test_picture_changes_are_found_in_the_frame_and_region_that_change():
    frames = torch.zeros(1, 8, 3, 32, 32)
    frames[:, 5, :, :8, 24:] = 1.0  # a flash in the top-right corner at frame 5 only
    mask = torch.ones(1, 8, dtype=torch.bool)
    out = change_features(frames, mask)
    assert out.shape == (1, 8, CHANGE_GRID * CHANGE_GRID + 1)
    assert out[0, :, -1].nonzero().flatten().tolist() == [5, 6]  # it appears, then it goes
    assert int(out[0, 5, :-1].argmax()) == CHANGE_GRID - 1  # row 0, last column
    mask[:, 6:] = False  # a padded frame is no change
    assert float(change_features(frames, mask)[0, 6:].abs().max()) == 0


def test_event_inputs_are_a_setting_older_checkpoints_load_without(tmp_path):
    cfg = preset("tiny")
    assert not cfg.audio.events and not cfg.visual.events  # the default: what old configs meant
    old = TrimodalModel(cfg)
    old.save(tmp_path / "old")
    assert not TrimodalModel.load(tmp_path / "old").cfg.visual.events

    on = replace(
        cfg, audio=replace(cfg.audio, events=True), visual=replace(cfg.visual, events=True)
    )
    model = TrimodalModel(on)
    model.save(tmp_path / "new")
    loaded = TrimodalModel.load(tmp_path / "new")
    assert loaded.cfg.audio.events and loaded.cfg.visual.events
    assert ModelConfig.from_dict(on.to_dict()) == on
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (12, 32, 32, 3), dtype=np.uint8)
    wave = rng.standard_normal(16_000 * 3).astype(np.float32)
    with torch.inference_mode():
        for m in (model, loaded):
            m.eval()
        a = [m.encode_audio(*m.audio_inputs([wave])) for m in (model, loaded)]
        v = [m.encode_visual(*m.visual_inputs([frames])) for m in (model, loaded)]
    assert torch.allclose(a[0].sequence, a[1].sequence)
    assert torch.allclose(v[0].sequence, v[1].sequence)
