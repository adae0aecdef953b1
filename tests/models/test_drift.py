"""Which way a picture's foreground goes (`models.drift`), measured from its frames alone."""

from __future__ import annotations

import numpy as np
import pytest

from models.drift import DRIFT_FEATURES, PART_FEATURES, drift_features, foreground_drift

FPS = 12.0


def _clip(step: float, frames: int = 36, size: int = 32, flash: bool = False) -> np.ndarray:
    """(T, size, size, 3) uint8: a 6-pixel bright square on a dark, textured background, its
    left edge moving `step` pixels a frame from wherever it starts (flashing every few frames)."""
    rng = np.random.default_rng(0)
    background = rng.integers(20, 60, (size, size, 3))
    out = np.repeat(background[None], frames, axis=0).astype(np.uint8)
    start = 2 if step >= 0 else size - 8
    for t in range(frames):
        x = round(start + step * t)
        out[t, 12:18, x : x + 6] = 255 if (flash and t % 6 == 0) else 200
    return out


def test_a_foreground_moving_right_drifts_right_at_its_speed() -> None:
    step = 0.6  # pixels a frame: 0.6 × 12 / 31 of the picture's width a second
    slope, size, fitted = foreground_drift(_clip(step), FPS)
    assert slope == pytest.approx(step * FPS / 31, rel=0.15)
    assert size == pytest.approx(abs(slope))
    assert fitted > 0.9  # a straight line in time


def test_a_foreground_moving_left_drifts_left() -> None:
    slope, _, fitted = foreground_drift(_clip(-0.6), FPS)
    assert slope < -0.15 and fitted < -0.9


def test_a_still_foreground_that_flashes_does_not_drift() -> None:
    slope, size, _ = foreground_drift(_clip(0.0, flash=True), FPS)
    assert abs(slope) < 0.01 and size < 0.01


def test_grey_frames_and_the_frame_rate_count() -> None:
    clip = _clip(0.6)
    grey = clip.astype(np.float32).mean(axis=-1)
    np.testing.assert_allclose(foreground_drift(grey, FPS), foreground_drift(clip, FPS), rtol=1e-5)
    # the same frames shown twice as fast go twice as far a second
    np.testing.assert_allclose(
        foreground_drift(clip, 2 * FPS)[0], 2 * foreground_drift(clip, FPS)[0], rtol=1e-5
    )


def test_nothing_to_measure_gives_zeros_and_bad_input_an_error() -> None:
    assert foreground_drift(_clip(0.6)[:1], FPS).tolist() == [0.0] * PART_FEATURES
    flat = np.full((10, 16, 16, 3), 90, np.uint8)
    assert foreground_drift(flat, FPS).tolist() == [0.0] * PART_FEATURES
    assert drift_features(flat, FPS).tolist() == [0.0] * DRIFT_FEATURES
    with pytest.raises(ValueError, match="fps"):
        foreground_drift(_clip(0.6), 0.0)
    with pytest.raises(ValueError, match="frames must be"):
        foreground_drift(np.zeros((4, 4)), FPS)
    bad = _clip(0.6).astype(np.float32)
    bad[3, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        foreground_drift(bad, FPS)


def test_two_things_going_opposite_ways_are_told_apart_by_the_halves() -> None:
    """One square goes right along the top, another left along the bottom: the whole picture's
    centre hardly moves, each half's goes its own way."""
    top, bottom = _clip(0.6), _clip(-0.6)
    both = np.concatenate([top[:, 10:20], bottom[:, 10:20]], axis=1)  # (T, 20, 32, 3)
    found = drift_features(both, FPS)
    whole, upper, lower = found[:3], found[3:6], found[6:]
    assert abs(whole[0]) < 0.25 * upper[0]
    assert upper[0] > 0.15 and upper[2] > 0.9
    assert lower[0] < -0.15 and lower[2] < -0.9
    np.testing.assert_allclose(upper, foreground_drift(both[:, :10], FPS))
    with pytest.raises(ValueError, match="frames must be"):
        drift_features(np.zeros(4), FPS)
