"""Where a picture's motion changes: a ball's landings, which the change envelope cannot see, on
the sampled frames and on a file's own frames at another frame rate; sound meets picture by the
best pair of their envelopes, in the search's match and in the agreement."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from models.events import (
    event_agreement,
    match_across,
    match_events,
    picture_events,
    picture_kinds,
    picture_motion,
    standardise,
)
from models.media import decode
from models.motion import change_centre, frame_motion, velocity_changes
from models.policy import DIRECTIONS, SearchPolicy
from tests.models.conftest import write_media

FPS = 12.0
LANDINGS = [0.55, 1.45, 2.2, 3.3, 4.05, 5.1]


def _height(t: float) -> float:
    """Height above the floor in [0, 1]: parabolic arcs touching it at each landing."""
    knots = [-0.4, *LANDINGS, 6.4]
    for a, b in itertools.pairwise(knots):
        if a <= t <= b:
            s = (t - a) / (b - a)
            return min(1.0, (b - a) / 1.2) * 4 * s * (1 - s)
    return 0.0


def _ball(i: int, t: float, height: int, width: int) -> np.ndarray:
    """A bright disc bouncing on a dark floor while it drifts right."""
    radius = max(2.0, height / 16)
    cy = height - 2 - radius - (height - 4 - 2 * radius) * _height(t)
    cx = width * (0.2 + 0.1 * t)
    yy, xx = np.mgrid[:height, :width]
    image = np.full((height, width, 3), 30, np.uint8)
    image[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = (240, 200, 60)
    return image


def _frames(fps: float, seconds: float = 6.0, size: int = 64) -> np.ndarray:
    return np.stack([_ball(i, i / fps, size, size) for i in range(round(seconds * fps))])


def _landings(n: int) -> np.ndarray:
    train = np.zeros(n, np.float32)
    for t in LANDINGS:
        train[int(t * FPS)] = 1.0
    return standardise(train)


def _found(envelope: np.ndarray) -> float:
    """The envelope's correlation with the true landings, lag-tolerant as the search is."""
    return float(match_events(_landings(len(envelope)), [envelope]).scores[0])


def test_a_landing_is_where_the_motion_turns_not_where_the_picture_changes():
    frames = _frames(FPS)
    motion = picture_motion(frames, FPS, FPS)
    change = picture_events(frames, FPS, FPS)
    assert _found(motion) > 0.6
    assert _found(motion) > _found(change) + 0.2
    # the strongest bins are the landings (to a bin)
    top = np.sort(np.argsort(motion)[-len(LANDINGS) :])
    assert all(min(abs(b - t * FPS) for t in LANDINGS) <= 1.5 for b in top)


def test_steady_motion_and_stillness_change_no_velocity():
    """A centre moving at one velocity, sampled at uneven times (a variable-frame-rate file):
    no change anywhere; nothing changing at all: zeros, not noise blown up."""
    starts = np.cumsum(np.r_[0.0, np.random.default_rng(0).uniform(0.02, 0.1, 20)])
    ends = starts + 0.04
    mid = (starts + ends) / 2
    centres = np.stack([0.2 + 0.3 * mid, 0.7 - 0.1 * mid], axis=1)
    found = velocity_changes(centres, np.ones(len(mid)), starts, ends)
    np.testing.assert_allclose(found, 0.0, atol=1e-6)
    still = np.full((24, 16, 16, 3), 90, np.uint8)
    assert not frame_motion(still, FPS).any()
    assert not picture_motion(still, FPS, FPS).any()
    assert change_centre(np.zeros((4, 4, 3), np.uint8)) == (0.5, 0.5, 0.0)
    y, x, mass = change_centre(np.pad(np.ones((2, 2)), ((0, 2), (2, 0))))  # top right
    assert (y, x, mass) == pytest.approx((0.25, 0.75, 4.0))
    with pytest.raises(ValueError, match="one entry per frame pair"):
        velocity_changes(centres, np.ones(3), starts, ends)
    with pytest.raises(ValueError, match="motion must be"):
        picture_motion(still, FPS, FPS, np.zeros(5, np.float32))


@pytest.mark.parametrize("file_fps", [12, 30])
def test_the_decoder_measures_motion_on_the_files_own_frames(tmp_path: Path, file_fps: int):
    """The same bounce written at the grid's rate and at 30 fps (which judders when sampled
    onto 12 fps): the decoder's motion, on the file's own frames and timestamps, finds the
    landings either way; at the grid's rate it is what the sampled frames give."""
    path = write_media(
        tmp_path / f"ball{file_fps}.mp4",
        audio=None,
        duration=6.0,
        fps=file_fps,
        size=(64, 64),
        draw=_ball,
    )
    media = decode(path, fps=FPS, size=(64, 64), sample_rate=16_000)
    assert media.motion is not None and media.frames is not None
    assert media.motion.shape == (len(media.frames),)
    envelope = picture_motion(media.frames, FPS, FPS, media.motion)
    assert _found(envelope) > 0.6
    if file_fps == FPS:
        np.testing.assert_allclose(media.motion, frame_motion(media.frames, FPS), rtol=1e-4)


def test_repeated_frames_are_no_new_observation(tmp_path: Path, monkeypatch):
    """The 12 fps bounce converted to 30 fps by repeating frames, as encoders convert: most
    frame pairs show no change at all. Left out, the landings are found as in the 12 fps file;
    kept, their zero change silences the landings around them."""
    import models.motion

    def held(i: int, t: float, height: int, width: int) -> np.ndarray:
        return _ball(i, np.floor(t * FPS + 1e-6) / FPS, height, width)

    path = write_media(
        tmp_path / "repeated.mp4", audio=None, duration=6.0, fps=30, size=(64, 64), draw=held
    )

    def found() -> float:
        media = decode(path, fps=FPS, size=(64, 64), sample_rate=16_000)
        assert media.frames is not None
        return _found(picture_motion(media.frames, FPS, FPS, media.motion))

    skipping = found()
    monkeypatch.setattr(models.motion, "REPEATED_SHARE", 0.0)
    assert skipping > 0.6 and skipping > found() + 0.2


def test_sound_meets_a_picture_by_the_best_pair_of_their_envelopes():
    """A sound band holds a ball's landings: of the picture's two envelopes only its motion
    shows them. Matched by every (band, envelope) pair, the clip's picture wins by the motion
    envelope; the score is the best pair's, the same either way round; the agreement places a
    sound shifted by three bins by that pair too."""
    rng = np.random.default_rng(3)
    frames = _frames(FPS)
    motion = picture_motion(frames, FPS, FPS)
    change = picture_events(frames, FPS, FPS)
    kinds = picture_kinds(change, motion)
    assert kinds.shape == (len(change), 2)
    assert picture_kinds(change, None) is not None and picture_kinds(change, None).ndim == 1
    sound = np.stack([standardise(rng.standard_normal(len(change))) for _ in range(8)], axis=1)
    sound[:, 5] = _landings(len(change))
    decoy = np.stack(
        [picture_events(frames[::-1], FPS, FPS), picture_motion(frames[::-1], FPS, FPS)], axis=1
    )
    found = match_across([sound], [kinds, decoy])[0]
    assert found.scores[0] > found.scores[1] + 0.2 and found.placement[0] == 0
    pairs = [
        match_events(sound[:, b].copy(), [kinds[:, k].copy()]).scores[0]
        for b in range(8)
        for k in range(2)
    ]
    assert found.scores[0] == pytest.approx(max(pairs), abs=1e-5)
    back = match_across([kinds], [sound])[0]
    assert back.scores[0] == pytest.approx(found.scores[0], abs=1e-5)
    with_change_only = match_across([sound], [change])[0]
    assert with_change_only.scores[0] < found.scores[0] - 0.2
    late = np.roll(sound, 3, axis=0)
    late[:3] = 0.0
    agreed = event_agreement(late, kinds, FPS)
    assert agreed is not None and agreed.offset_s == pytest.approx(3 / FPS, abs=0.5 / FPS)


def test_a_policy_records_whether_pictures_met_sounds_by_their_motion():
    policy = SearchPolicy(True, dict.fromkeys(DIRECTIONS, True), picture_motion=True)
    assert SearchPolicy.from_dict(policy.to_dict()).picture_motion
    old = policy.to_dict()
    del old["picture_motion"]
    assert not SearchPolicy.from_dict(old).picture_motion  # a record made before it
