"""The decoder measures each pair of a file's frames (how much changed, per quadrant, and where)
for many pairs at once (`models.motion.half_sums`, `quadrant_centres_many`): the values must be
those of a picture at a time, bit for bit, since indexes, feature caches and queries made
before and after hold them side by side."""

from __future__ import annotations

import numpy as np
import pytest

import models._decode as decode_module
from models.media import decode_pictures
from models.motion import half_sums, quadrant_centres, quadrant_centres_many
from tests.models.conftest import MediaFactory

SHAPES = [(64, 64, 3), (65, 63, 3), (1, 64, 3), (64, 1, 3), (1, 1, 3), (2, 2), (7, 9), (128, 96, 3)]


def _differences(rng: np.random.Generator, shape: tuple[int, ...], kind: str) -> np.ndarray:
    n = 13
    if kind == "random":
        d = rng.integers(0, 256, (n, *shape))
    elif kind == "sparse":  # a small thing moving: most of the picture unchanged
        d = rng.integers(0, 256, (n, *shape)) * (rng.random((n, *shape)) < 0.01)
    elif kind == "full":
        d = np.full((n, *shape), 255)
    else:
        d = np.zeros((n, *shape))
    d = d.astype(np.uint8)
    d[3] = 0  # a repeated frame among changed ones
    return d


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ["random", "sparse", "full", "zero"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16])
def test_many_centres_are_each_pictures(shape, kind, dtype) -> None:
    diffs = _differences(np.random.default_rng(len(shape) + len(kind)), shape, kind).astype(dtype)
    one_by_one = np.stack([quadrant_centres(d) for d in diffs])
    many = quadrant_centres_many(diffs)
    assert many.dtype == one_by_one.dtype and np.array_equal(many, one_by_one)


def test_float_differences_go_one_by_one() -> None:
    diffs = np.random.default_rng(0).random((5, 6, 8, 3))
    assert np.array_equal(quadrant_centres_many(diffs), [quadrant_centres(d) for d in diffs])


@pytest.mark.parametrize("shape", [(9, 64, 3), (2, 30_000, 3), (5, 7)])
def test_half_sums_are_exact(shape) -> None:
    """(2, 30,000 × 3) rows sum past 2**24, where float32 would round: float64 is used there."""
    diffs = np.random.default_rng(1).integers(0, 256, (3, *shape)).astype(np.uint8)
    rows, cols = half_sums(diffs)
    h, w = shape[0] // 2, shape[1] // 2
    d = diffs.reshape(3, shape[0], shape[1], -1).astype(np.int64)
    assert np.array_equal(rows[..., 0], d[:, :, :w].sum(axis=(2, 3)))
    assert np.array_equal(rows[..., 1], d[:, :, w:].sum(axis=(2, 3)))
    assert np.array_equal(cols[:, 0], d[:, :h].sum(axis=(1, 3)))
    assert np.array_equal(cols[:, 1], d[:, h:].sum(axis=(1, 3)))
    with pytest.raises(ValueError, match="integer"):
        half_sums(diffs.astype(np.float32))


def _one_at_a_time(self) -> None:
    """`_VideoSampler._measure` as it was: every waiting difference alone."""
    if self._waited:
        diffs, self._waited = self._waiting[: self._waited], 0
        self._measure_each(diffs)


@pytest.mark.parametrize(
    ("fps", "size", "fit", "grid"),
    [(12, (64, 64), "stretch", 12.0), (25, (64, 64), "pad", 12.0), (30, (48, 64), "crop", 8.0)],
)
def test_a_decode_measures_what_it_did_a_picture_at_a_time(
    media: MediaFactory, monkeypatch, fps, size, fit, grid
) -> None:
    """Files longer than a run of differences (`_MEASURE_RUN`), at the grid's rate and others,
    letterboxed, cropped: every measure of the decode is the one a picture at a time gives."""
    path = media.av(
        f"moving{fps}.mp4", audio=None, duration=4.0, fps=fps, size=(90, 160), flash_at=1.5
    )
    fields = ("frames", "changes", "region_changes", "motion", "halves")
    many = decode_pictures(path, fps=grid, size=size, fit=fit)
    monkeypatch.setattr(decode_module._VideoSampler, "_measure", _one_at_a_time)
    each = decode_pictures(path, fps=grid, size=size, fit=fit)
    for field in fields:
        a, b = getattr(many, field), getattr(each, field)
        assert a is not None and a.dtype == b.dtype and np.array_equal(a, b), field
    assert np.abs(many.changes).max() > 0 and np.abs(many.motion).max() > 0
