"""The decoder measures how much the picture changes on every frame of the file, so a clip's
change envelope keeps its events at another frame rate: sampled onto 12 frames a second, a 30 fps
copy of a 12 fps clip repeats some frames and skips others (judder), and the sampled frames'
differences follow that pattern instead of the events."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.events import PICTURE_REGIONS, match_events, picture_bands, picture_events
from models.media import decode, decode_pictures
from tests.models.conftest import write_media
from training.cache import DecodeSpec, FeatureCache
from training.datasets import ManifestItem

FPS = 12.0
FLASHES_S = (0.75, 2.5, 3.9, 5.1)


def scene(t: float, height: int = 64, width: int = 64) -> np.ndarray:
    """The picture at t seconds: a red square swinging left and right (smooth motion, drawn with
    soft edges) that flashes white for a twelfth of a second at each of FLASHES_S."""
    x = 26.0 + 20.0 * np.sin(2 * np.pi * t / 3.0)  # left edge, px
    cols = np.arange(width, dtype=np.float64)
    cover = np.clip(np.minimum(cols + 1 - x, x + 12 - cols), 0.0, 1.0)  # per column
    flash = any(f <= t < f + 1 / FPS for f in FLASHES_S)
    colour = np.array((250, 250, 250) if flash else (200, 40, 40), np.float64)
    img = np.full((height, width, 3), 60.0)
    img[24:36] = 60.0 + cover[None, :, None] * (colour - 60.0)
    return img.round().astype(np.uint8)


def footage(path: Path, fps: int) -> Path:
    """The scene filmed at `fps`, nearly lossless."""
    return write_media(
        path,
        video="libx264",
        audio=None,
        duration=6.0,
        fps=fps,
        size=(64, 64),
        draw=lambda i, t, h, w: scene(t, h, w),
    )


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    return float(np.dot(a[:n], b[:n]) / n)


def test_changes_at_the_grid_rate_are_the_sampled_frames_differences(tmp_path):
    media = decode(footage(tmp_path / "c12.mp4", 12), fps=FPS, size=(64, 64), audio=False)
    assert media.changes is not None and media.changes.shape == (len(media.frames),)
    f = media.frames.astype(np.float32) / 255
    np.testing.assert_allclose(
        media.changes[:-1], np.abs(np.diff(f, axis=0)).mean(axis=(1, 2, 3)), atol=1e-6
    )
    assert media.changes[-1] == 0.0
    np.testing.assert_allclose(
        picture_events(media.frames, FPS, FPS, media.changes),
        picture_events(media.frames, FPS, FPS),
        atol=1e-5,
    )


@pytest.mark.parametrize("fps", [25, 30])
def test_another_frame_rate_keeps_the_events_where_sampled_frames_lose_them(tmp_path, fps):
    own = picture_events(np.stack([scene(j / FPS) for j in range(72)]), FPS, FPS)
    media = decode_pictures(footage(tmp_path / f"c{fps}.mp4", fps), fps=FPS, size=(64, 64))
    assert media.frames is not None and len(media.frames) == 72
    measured = picture_events(media.frames, FPS, FPS, media.changes)
    sampled = picture_events(media.frames, FPS, FPS)
    assert correlation(measured, own) > 0.7
    assert correlation(measured, own) > correlation(sampled, own) + 0.1

    def found(envelope: np.ndarray) -> list[bool]:
        """Each flash among the envelope's peaks, in its own bin or the one before (it changes
        the picture as it appears and as it goes)."""
        peaks = set(np.argsort(envelope)[-2 * len(FLASHES_S) :].tolist())
        return [bool({int(t * FPS) - 1, int(t * FPS)} & peaks) for t in FLASHES_S]

    assert all(found(measured))
    assert not all(found(sampled))  # the judder the decoder's changes avoid


@pytest.mark.parametrize("fps", [8, 10])
def test_a_file_slower_than_the_grid_leaves_no_target_without_a_change(tmp_path, fps):
    """At 8 or 10 fps some 12 fps targets have no frame of the file starting in them. Read as
    "nothing changed", those regular dips outweighed the events (correlation with the scene's
    own envelope about 0.2 at 10 fps and 0 at 8); each takes the change of the pair of frames
    that spans it."""
    own = picture_events(np.stack([scene(j / FPS) for j in range(72)]), FPS, FPS)
    media = decode_pictures(footage(tmp_path / f"c{fps}.mp4", fps), fps=FPS, size=(64, 64))
    assert media.changes is not None and media.motion is not None
    assert media.region_changes is not None
    last_start = (round(6.0 * fps) - 1) / fps  # the file's last frame: no pair after it
    inside = np.arange(len(media.changes)) / FPS < last_start - 1e-6
    assert inside.sum() > 60
    # what the targets without a starting frame would read if left empty
    starts = {int(np.floor(k / fps * FPS + 1e-6)) for k in range(round(6.0 * fps))}
    empty = np.array([j not in starts for j in range(len(media.changes))])
    assert (empty & inside).sum() >= 72 * (1 - fps / FPS) - 2
    spanned = np.flatnonzero(empty & inside)
    for measure in (media.changes, media.region_changes, media.motion):
        np.testing.assert_array_equal(measure[spanned], measure[spanned - 1])
    assert (media.changes[spanned] > 0).all()
    left = np.where(empty, 0.0, media.changes)
    measured = correlation(picture_events(media.frames, FPS, FPS, media.changes), own)
    assert measured > 0.45
    assert measured > correlation(picture_events(media.frames, FPS, FPS, left), own) + 0.3


def test_picture_events_refuses_changes_that_do_not_fit_the_frames():
    frames = np.zeros((10, 4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="one per frame"):
        picture_events(frames, FPS, FPS, np.zeros(9, np.float32))
    with pytest.raises(ValueError, match="one per frame"):
        picture_events(frames, FPS, FPS, np.full(10, np.nan, np.float32))


def test_the_feature_cache_keeps_the_decoders_changes(tmp_path):
    clip = footage(tmp_path / "c25.mp4", 25)
    items = [ManifestItem(id="a", video=clip, audio=None, captions={}, split="test")]
    spec = DecodeSpec(FPS, 64, 16_000, "stretch")
    cache = FeatureCache.build(items, spec, tmp_path / "cache", workers=1)
    want = decode(clip, fps=FPS, size=(64, 64), fit="stretch", audio=False).changes
    np.testing.assert_array_equal(cache.changes("a"), want)
    regions = decode(clip, fps=FPS, size=(64, 64), fit="stretch", audio=False).region_changes
    np.testing.assert_array_equal(cache.region_changes("a"), regions)
    # a cache made before the changes were kept still reads, without them
    (cache.directory / "changes.f32").unlink()
    (cache.directory / "region_changes.f32").unlink()
    old = FeatureCache(cache.directory)
    assert old.changes("a") is None and old.region_changes("a") is None


def test_region_changes_are_the_changes_per_quadrant(tmp_path):
    media = decode(footage(tmp_path / "c12.mp4", 12), fps=FPS, size=(64, 64), audio=False)
    regions = media.region_changes
    assert regions is not None and regions.shape == (len(media.frames), PICTURE_REGIONS)
    f = media.frames.astype(np.float32) / 255
    d = np.abs(np.diff(f, axis=0))
    want = np.stack(
        [d[:, :32, :32].mean((1, 2, 3)), d[:, :32, 32:].mean((1, 2, 3)),
         d[:, 32:, :32].mean((1, 2, 3)), d[:, 32:, 32:].mean((1, 2, 3))],
        axis=1,
    )  # fmt: skip
    np.testing.assert_allclose(regions[:-1], want, atol=1e-6)
    np.testing.assert_allclose(regions.mean(axis=1), media.changes, atol=1e-6)  # equal quadrants
    np.testing.assert_allclose(
        picture_bands(media.frames, FPS, FPS, regions),
        picture_bands(media.frames, FPS, FPS),
        atol=1e-5,
    )


def test_picture_bands_tell_apart_footage_that_changes_at_the_same_times():
    """Two clips with flashes at the same frames, one top left and one bottom right: the whole
    frame's envelope cannot tell them apart, the quadrants' can."""
    flashes = (9, 30, 47, 61)

    def clip(top_left: bool) -> np.ndarray:
        frames = np.full((72, 32, 32, 3), 50, np.uint8)
        rows, cols = (slice(2, 10), slice(2, 10)) if top_left else (slice(20, 28), slice(20, 28))
        for j in flashes:
            frames[j, rows, cols] = 250
        return frames

    a, b = clip(True), clip(False)
    np.testing.assert_allclose(picture_events(a, FPS, FPS), picture_events(b, FPS, FPS))
    bands_a, bands_b = picture_bands(a, FPS, FPS), picture_bands(b, FPS, FPS)
    assert bands_a.shape == (72, PICTURE_REGIONS)
    piece = bands_a[20:50]
    found = match_events(piece, [bands_b, bands_a])
    # (three quadrants never change: their flat envelopes add nothing to either)
    assert found.scores[1] > found.scores[0] + 0.2 and found.placement[1] == 20
    with pytest.raises(ValueError, match="region changes"):
        picture_bands(a, FPS, FPS, np.zeros((72, 3), np.float32))


def test_a_container_in_milliseconds_holds_and_measures_as_the_exact_one(tmp_path):
    """Matroska keeps times in milliseconds: a 12 fps clip's frames lie at 0.083, 0.167, ...
    s, a third just before their grid time and a third just after. Decoded onto the 12 fps grid,
    every frame and every change lands where the same clip's MP4 (exact times) puts it; the
    times as stored held the frames that round up a step late and counted the changes of those
    that round down a bin early."""
    exact = decode(footage(tmp_path / "c12.mp4", 12), fps=FPS, size=(64, 64), audio=False)
    rounded_path = write_media(
        tmp_path / "c12.mkv",
        video="libx264",
        audio=None,
        duration=6.0,
        fps=12,
        size=(64, 64),
        draw=lambda i, t, h, w: scene(t, h, w),
    )
    rounded = decode(rounded_path, fps=FPS, size=(64, 64), audio=False)
    assert len(rounded.frames) == len(exact.frames) == 72
    # the same frames at the same targets (the two encodes differ only in their codec's noise)
    diff = np.abs(rounded.frames.astype(np.int16) - exact.frames.astype(np.int16))
    assert float(diff.mean(axis=(1, 2, 3)).max()) < 2.0
    peaks = {int(np.ceil(f * FPS - 1e-6)) - 1 for f in FLASHES_S}  # the change into a flash
    for media in (exact, rounded):
        assert media.changes is not None
        top = set(np.argsort(media.changes)[-2 * len(FLASHES_S) :].tolist())
        assert peaks <= top
    np.testing.assert_allclose(rounded.changes, exact.changes, atol=0.01)


def test_a_time_a_hair_off_the_grid_is_on_it():
    from models._decode import ON_GRID_SHARE, _on_grid, _on_grid_time

    times = np.array([0.0, 0.083, 0.167, 0.25, 0.04, 1 / 12 + 0.5 / 12])
    snapped = _on_grid(times, 12.0)
    np.testing.assert_allclose(snapped[:4], [0.0, 1 / 12, 2 / 12, 3 / 12])
    assert snapped[4] == 0.04 and snapped[5] == times[5]  # a real frame between grid times
    off = (ON_GRID_SHARE + 0.01) / 12
    assert _on_grid(np.array([1 / 12 + off]), 12.0)[0] == pytest.approx(1 / 12 + off)
    # the sampler's one-time form agrees with the array form
    many = np.random.default_rng(0).uniform(0, 10, 500)
    many = np.concatenate([many, times, np.round(many * 12) / 12 + 0.0004])
    for rate in (12.0, 10.0, 29.97):
        np.testing.assert_array_equal(
            [_on_grid_time(float(t), rate) for t in many], _on_grid(many, rate)
        )
