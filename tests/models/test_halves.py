"""Each half of the picture on its own: two things one above the other, one moving steadily and
one changing at its own moments. The whole picture's change and motion follow the mover; the
lower half's change follows the moments, on the sampled frames and on a file's own frames, in
the feature cache, and the sound that holds those moments finds its picture by them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.events import (
    match_across,
    match_events,
    picture_events,
    picture_halves,
    picture_kinds,
    picture_motion,
    standardise,
)
from models.media import decode
from models.motion import HALVES, change_centre, frame_halves, merged_centre, quadrant_centres
from models.policy import DIRECTIONS, SearchPolicy
from tests.models.conftest import write_media
from training.cache import DecodeSpec, FeatureCache
from training.datasets import ManifestItem

FPS = 12.0
SIZE = 64
# when the lower thing squashes (its own moments: nothing to do with the mover above)
MOMENTS = [0.4, 1.25, 1.9, 2.95, 3.6, 4.55, 5.3]


def _since(t: float) -> float:
    past = [t - m for m in MOMENTS if m <= t + 1e-9]
    return min(past) if past else np.inf


def _scene(i: int, t: float, height: int = SIZE, width: int = SIZE, moments=MOMENTS) -> np.ndarray:
    """Above: a large bright bar sweeping right and back at a wobbling speed (it changes every
    frame, by more or less). Below: a small square that squashes for a frame at each moment."""
    image = np.full((height, width, 3), 25, np.uint8)
    phase = (t / 3.0 + 0.05 * np.sin(2 * np.pi * 1.7 * t)) % 2.0
    x0 = round((phase if phase <= 1 else 2 - phase) * (width - 24))
    image[4 : height // 2 - 6, x0 : x0 + 24] = (250, 240, 200)
    past = [t - m for m in moments if m <= t + 1e-9]
    squash = bool(past) and min(past) < 1 / FPS
    top = height - 14 if not squash else height - 9
    left = width // 2 - (5 if not squash else 8)
    image[top : height - 4, left : width - left] = (60, 200, 90)
    return image


def _frames(fps: float = FPS, seconds: float = 6.0) -> np.ndarray:
    return np.stack([_scene(i, i / fps) for i in range(round(seconds * fps))])


def _moments(n: int) -> np.ndarray:
    train = np.zeros(n, np.float32)
    for t in MOMENTS:
        train[int(t * FPS)] = 1.0
    return standardise(train)


def _found(envelope: np.ndarray) -> float:
    """Correlation with the true moments, lag-tolerant as the search is."""
    return float(match_events(_moments(len(envelope)), [envelope]).scores[0])


@pytest.mark.parametrize("shape", [(64, 64, 3), (7, 5, 3), (1, 9, 3), (9, 1, 3), (6, 6)])
def test_the_quadrants_merge_into_the_whole_pictures_change(shape):
    rng = np.random.default_rng(sum(shape))
    diff = rng.integers(0, 255, size=shape).astype(np.uint8)
    diff[rng.random(shape) < 0.7] = 0
    quadrants = quadrant_centres(diff)
    assert quadrants.shape == (4, 3)
    np.testing.assert_allclose(merged_centre(quadrants), change_centre(diff), rtol=1e-9)
    nothing = quadrant_centres(np.zeros(shape, np.uint8))
    np.testing.assert_array_equal(merged_centre(nothing), [0.5, 0.5, 0.0])
    # a half holds only what changed in it
    top = merged_centre(quadrants, HALVES["top"])
    assert top[2] == pytest.approx(float(diff[: shape[0] // 2].sum()))


def test_the_lower_half_sees_the_moments_the_whole_picture_loses():
    frames = _frames()
    halves = picture_halves(frames, FPS, FPS)
    assert halves.shape == (len(frames), 2 * len(HALVES))
    whole = max(_found(picture_events(frames, FPS, FPS)), _found(picture_motion(frames, FPS, FPS)))
    lower_change = _found(halves[:, 2])  # columns: top change, top motion, bottom change, ...
    # a squash changes the picture twice (on, off): 0.59 where the true moments are single bins
    assert lower_change > 0.5 and lower_change > whole + 0.2
    assert _found(halves[:, 0]) < 0.4  # the upper half is the mover's


@pytest.mark.parametrize("file_fps", [12, 25])
def test_the_decoder_measures_each_half_on_the_files_own_frames(tmp_path: Path, file_fps: int):
    path = write_media(
        tmp_path / f"two{file_fps}.mp4",
        audio=None,
        duration=6.0,
        fps=file_fps,
        size=(SIZE, SIZE),
        draw=_scene,
    )
    media = decode(path, fps=FPS, size=(SIZE, SIZE), sample_rate=16_000)
    assert media.frames is not None and media.halves is not None
    assert media.halves.shape == (len(media.frames), 2 * len(HALVES))
    assert np.isfinite(media.halves).all()
    halves = picture_halves(media.frames, FPS, FPS, media.halves)
    assert _found(halves[:, 2]) > 0.4  # 0.59 at 12 fps, 0.44 at 25
    if file_fps == FPS:  # at the grid's rate the file's frames are the sampled ones
        np.testing.assert_allclose(
            media.halves, frame_halves(media.frames, FPS), rtol=1e-4, atol=1e-7
        )


def test_a_sound_finds_its_picture_by_the_lower_half():
    """A sound band holds the lower thing's moments. Against the picture's whole-picture
    envelopes its picture loses to a decoy whose lower thing squashes at other moments; with
    the halves beside them it wins clearly."""
    rng = np.random.default_rng(4)
    frames = _frames()
    others = [m + 0.37 for m in MOMENTS[:-1]]
    decoy_frames = np.stack([_scene(i, i / FPS, moments=others) for i in range(len(frames))])

    def kinds(f: np.ndarray, halves: bool) -> np.ndarray:
        return picture_kinds(
            picture_events(f, FPS, FPS),
            picture_motion(f, FPS, FPS),
            picture_halves(f, FPS, FPS) if halves else None,
        )

    sound = np.stack([standardise(rng.standard_normal(len(frames))) for _ in range(8)], axis=1)
    sound[:, 3] = _moments(len(frames))
    with_halves = match_across([sound], [kinds(frames, True), kinds(decoy_frames, True)])[0]
    without = match_across([sound], [kinds(frames, False), kinds(decoy_frames, False)])[0]
    assert kinds(frames, True).shape == (len(frames), 2 + 2 * len(HALVES))
    assert with_halves.scores[0] > with_halves.scores[1] + 0.2  # 0.59 vs 0.33
    assert without.scores[0] < without.scores[1]  # 0.29 vs 0.33
    assert abs(with_halves.placement[0]) <= 1


def test_picture_halves_refuses_values_that_do_not_fit_the_frames():
    frames = _frames(seconds=1.0)
    with pytest.raises(ValueError, match="halves must be"):
        picture_halves(frames, FPS, FPS, np.zeros((len(frames), 3), np.float32))
    bad = np.zeros((len(frames), 2 * len(HALVES)), np.float32)
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="halves must be"):
        picture_halves(frames, FPS, FPS, bad)
    with pytest.raises(ValueError, match="bins of halves"):
        picture_kinds(picture_events(frames, FPS, FPS), picture_motion(frames, FPS, FPS), bad[:-1])


def test_a_policy_records_whether_pictures_met_sounds_by_their_halves():
    policy = SearchPolicy(
        True, dict.fromkeys(DIRECTIONS, True), picture_motion=True, picture_halves=True
    )
    assert SearchPolicy.from_dict(policy.to_dict()).picture_halves
    old = policy.to_dict()
    del old["picture_halves"]
    assert not SearchPolicy.from_dict(old).picture_halves  # a record made before them
    del old["picture_motion"]
    old["picture_halves"] = True
    assert not SearchPolicy.from_dict(old).picture_halves  # halves only beside motion


def test_the_feature_cache_keeps_the_decoders_halves(tmp_path: Path):
    clip = write_media(
        tmp_path / "two.mp4", audio=None, duration=3.0, fps=25, size=(SIZE, SIZE), draw=_scene
    )
    items = [ManifestItem(id="a", video=clip, audio=None, captions={}, split="test")]
    cache = FeatureCache.build(
        items, DecodeSpec(FPS, SIZE, 16_000, "stretch"), tmp_path / "cache", workers=1
    )
    want = decode(clip, fps=FPS, size=(SIZE, SIZE), fit="stretch", audio=False).halves
    np.testing.assert_array_equal(cache.halves("a"), want)
    # a cache made before the halves were kept still reads, without them
    (cache.directory / "halves.f32").unlink()
    assert FeatureCache(cache.directory).halves("a") is None
