"""Audio–visual agreement: a clip's own sound stands out at one lag, and that lag is its offset."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models.alignment import av_agreement


def smooth_steps(b: int, t: int, d: int, seed: int) -> torch.Tensor:
    """Unit steps that change smoothly over time, so neighbouring lags score in between."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t + 4, d, generator=g)
    x = F.avg_pool1d(x.transpose(1, 2), 5, stride=1).transpose(1, 2)  # (b, t, d)
    return F.normalize(x, dim=-1)


def test_the_offset_of_a_late_or_early_sound_is_found():
    picture = F.normalize(
        torch.randn(3, 24, 16, generator=torch.Generator().manual_seed(0)), dim=-1
    )
    mask = torch.ones(3, 24, dtype=torch.bool)
    for steps in (-3, 0, 2):
        sound = torch.roll(picture, steps, dims=1)  # sound step t + steps = picture step t
        found = av_agreement(sound, mask, picture, mask, steps_per_second=4.0)
        assert [round(a.offset_s, 2) for a in found] == [steps / 4.0] * 3
        assert all(a.score > 0.5 and a.curve.shape == (13,) for a in found)


def test_a_sound_between_steps_is_placed_between_them():
    picture = smooth_steps(1, 40, 8, seed=1)
    mask = torch.ones(1, 40, dtype=torch.bool)
    # half a step late: each sound step halfway between two picture steps
    sound = F.normalize(0.5 * (picture + torch.roll(picture, 1, dims=1)), dim=-1)
    (found,) = av_agreement(sound, mask, picture, mask, steps_per_second=4.0)
    assert 0.0 < found.offset_s < 0.25
    assert abs(found.offset_s - 0.125) < 0.07


def test_another_clips_sound_does_not_agree():
    picture = F.normalize(
        torch.randn(8, 24, 16, generator=torch.Generator().manual_seed(2)), dim=-1
    )
    mask = torch.ones(8, 24, dtype=torch.bool)
    own = av_agreement(picture.clone(), mask, picture, mask)
    swapped = av_agreement(torch.roll(picture, 1, dims=0), mask, picture, mask)
    assert min(a.score for a in own) > max(a.score for a in swapped)


def test_padding_and_lengths_are_respected():
    picture = F.normalize(torch.randn(2, 20, 8, generator=torch.Generator().manual_seed(3)), dim=-1)
    sound = torch.roll(picture, 1, dims=1).clone()
    v_mask = torch.ones(2, 20, dtype=torch.bool)
    a_mask = v_mask.clone()
    a_mask[1, 14:] = False
    sound[1, 14:] = float("nan")  # padding may hold anything
    found = av_agreement(sound, a_mask, picture, v_mask)
    assert [round(a.offset_s, 2) for a in found] == [0.25, 0.25]
    assert all(torch.isfinite(torch.tensor(a.score)) for a in found)
    with pytest.raises(ValueError, match="same"):
        av_agreement(sound[:1], a_mask[:1], picture, v_mask)
