"""What a picture's glyphs are, read from their outlines (`models.shape`)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.shape import (
    HARMONICS,
    PART_FEATURES,
    ROW,
    aspect,
    foreground,
    glyph_shapes,
    kind_chances,
    part_features,
    parts,
)

SIZE = 96
HOLE, ELONGATION, EXTENT, BOX_FILL, RELATIVE = range(5)


def _inside(kind: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether points (u, v), in glyph units (radius 1, y down), fall inside a glyph of `kind`."""
    r = np.hypot(u, v)
    if kind == "circle":
        return r <= 1.0
    if kind == "ring":
        return (r <= 1.0) & (r >= 0.6)
    if kind == "square":
        return (np.abs(u) <= 0.8) & (np.abs(v) <= 0.8)
    if kind == "bar":
        return (np.abs(u) <= 1.7) & (np.abs(v) <= 0.55)
    if kind == "plus":
        return ((np.abs(u) <= 1.0) & (np.abs(v) <= 0.3)) | ((np.abs(u) <= 0.3) & (np.abs(v) <= 1.0))
    if kind in ("triangle", "star"):
        if kind == "triangle":
            corners = np.array([[0.0, -1.0], [0.95, 0.8], [-0.95, 0.8]])
        else:
            a = -math.pi / 2 + np.arange(10) * math.pi / 5
            radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
            corners = np.stack([radii * np.cos(a), radii * np.sin(a)], axis=1)
        # even-odd rule against the polygon's edges
        inside = np.zeros(u.shape, bool)
        for (x0, y0), (x1, y1) in zip(corners, np.roll(corners, -1, axis=0), strict=True):
            crosses = (y0 > v) != (y1 > v)
            at = (x1 - x0) * (v - y0) / np.where(y1 == y0, 1e-9, y1 - y0) + x0
            inside ^= crosses & (u < at)
        return inside
    raise ValueError(kind)


def _frame(
    glyphs: list[tuple[str, float, float, float]],
    size: tuple[int, int] = (SIZE, SIZE),
    squeeze: float = 1.0,
    angle: float = 0.0,
) -> np.ndarray:
    """(H, W, 3) uint8: glyphs (kind, centre x, centre y, radius, in pixels of the shown
    picture) on a dark gradient background with a little noise; `squeeze`: the shown picture's
    width squeezed by it into the frame (an anamorphic file)."""
    h, w = size
    rng = np.random.default_rng(1)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.stack([20 + 20 * ys / h, 25 + 10 * xs / w, 40 + 0 * xs], axis=-1)
    out = out + rng.normal(0.0, 2.0, out.shape)
    for kind, cx, cy, radius in glyphs:
        gx, gy = (xs + 0.5) * squeeze - cx, ys + 0.5 - cy
        c, s = math.cos(angle), math.sin(angle)
        u, v = (c * gx + s * gy) / radius, (-s * gx + c * gy) / radius
        out[_inside(kind, u, v)] = (230, 200, 40)
    return out.clip(0, 255).astype(np.uint8)


def _one(kind: str, radius: float = 11.0, **kw: float) -> np.ndarray:
    rows = glyph_shapes(_frame([(kind, SIZE / 2, SIZE / 2, radius)], **kw)[None])  # type: ignore[arg-type]
    assert len(rows) == 1, rows
    return rows[0, 1:]


def _strongest_harmonic(features: np.ndarray) -> int:
    return int(np.argmax(features[5 : 5 + HARMONICS])) + 1


@pytest.mark.parametrize(
    ("kind", "harmonic"), [("triangle", 3), ("square", 4), ("plus", 4), ("star", 5), ("bar", 2)]
)
def test_an_outline_s_strongest_harmonic_counts_its_corners(kind: str, harmonic: int) -> None:
    assert _strongest_harmonic(_one(kind)) == harmonic
    # turning it does not change which
    assert _strongest_harmonic(_one(kind, angle=0.4)) == harmonic


def test_a_ring_has_a_hole_a_bar_is_long_a_circle_fills_its_circle() -> None:
    ring, circle, bar, square = _one("ring"), _one("circle"), _one("bar"), _one("square")
    assert ring[HOLE] > 0.2 and circle[HOLE] == 0.0 and square[HOLE] == 0.0
    assert bar[ELONGATION] < 0.45 < 0.9 < circle[ELONGATION]
    assert circle[EXTENT] > 0.85 > 0.7 > square[EXTENT]
    assert square[BOX_FILL] > 0.95 > 0.85 > circle[BOX_FILL]
    # the ring's silhouette is the circle's: its outline has no corners
    assert ring[5:PART_FEATURES].max() < 0.05 and circle[5:PART_FEATURES].max() < 0.05


def test_the_numbers_do_not_change_with_size_but_the_size_does() -> None:
    small, large = _one("star", radius=6.0), _one("star", radius=11.0)
    assert _strongest_harmonic(small) == _strongest_harmonic(large) == 5
    assert small[ELONGATION] == pytest.approx(large[ELONGATION], abs=0.1)
    assert large[RELATIVE] == pytest.approx(small[RELATIVE] * 11 / 6, rel=0.15)


def test_a_stretched_file_is_measured_in_its_shown_proportions() -> None:
    # a circle in a picture shown twice as wide as it is stored: the frame holds an ellipse
    squeezed = _frame([("circle", 96.0, 48.0, 14.0)], squeeze=2.0)
    as_stored = glyph_shapes(squeezed[None])[0, 1:]
    as_shown = glyph_shapes(squeezed[None], display_aspect=2.0)[0, 1:]
    assert as_stored[ELONGATION] < 0.6
    assert as_shown[ELONGATION] > 0.9


def test_parts_are_found_apart_largest_first_and_lines_are_no_glyphs() -> None:
    frame = _frame([("circle", 25.0, 30.0, 8.0), ("square", 70.0, 60.0, 14.0)])
    frame[90:92, 2:94] = 250  # a floor line across the picture
    mask = foreground(frame)
    assert mask is not None
    found = parts(mask)
    assert len(found) == 3
    assert [len(ys) for ys, _ in found] == sorted((len(ys) for ys, _ in found), reverse=True)
    rows = glyph_shapes(frame[None])
    assert len(rows) == 2  # the line is not measured
    assert rows[0, 1 + BOX_FILL] > 0.95  # the square, larger, first
    assert rows[1, 1 + EXTENT] > 0.85  # then the circle


def test_frames_without_a_glyph_or_all_foreground_give_no_rows() -> None:
    flat = np.full((3, SIZE, SIZE, 3), 40, np.uint8)
    assert glyph_shapes(flat).shape == (0, ROW)
    # half the picture another colour is a background, not a glyph
    half = flat[0].copy()
    half[:, : SIZE // 2] = 250
    assert glyph_shapes(half[None]).shape == (0, ROW)
    # a picture strewn with specks (a texture the background misses) is not split at all
    specks = flat[0].copy()
    specks[np.random.default_rng(0).random((SIZE, SIZE)) < 0.4] = 250
    assert foreground(specks) is None
    assert glyph_shapes(specks[None]).shape == (0, ROW)


def test_bad_input_is_an_error() -> None:
    with pytest.raises(ValueError, match="frames"):
        glyph_shapes(np.zeros((SIZE, SIZE, 3), np.uint8))
    with pytest.raises(ValueError, match="display_aspect"):
        glyph_shapes(np.zeros((1, SIZE, SIZE, 3), np.uint8), display_aspect=0.0)
    assert aspect(None, 10) == 1.0 and aspect(160, 90) == pytest.approx(16 / 9)
    assert aspect(100, 100, sample_aspect=2.0) == 2.0


def test_a_part_s_numbers_have_their_count() -> None:
    ys, xs = np.nonzero(np.ones((6, 6), bool))
    assert part_features(ys, xs, (SIZE, SIZE)).shape == (PART_FEATURES,)


def test_a_clip_s_kinds_are_each_frame_s_best_part_averaged() -> None:
    # frame 0: one part, kind 0; frame 1: two parts, kinds 0 and 2
    p = np.array([[0.9, 0.1, 0.0], [0.8, 0.0, 0.2], [0.1, 0.0, 0.9]], np.float32)
    chances = kind_chances(p, np.array([0, 1, 1]), 3)
    np.testing.assert_allclose(chances, [(0.9 + 0.8) / 2, (0.1 + 0.0) / 2, (0.0 + 0.9) / 2])
    assert kind_chances(np.zeros((0, 3)), np.zeros(0), 3).tolist() == [0.0, 0.0, 0.0]


def _parts_by_search(mask: np.ndarray) -> list[set[tuple[int, int]]]:
    """8-connected parts by a plain search, for reference."""
    seen = np.zeros_like(mask)
    out = []
    for y, x in zip(*np.nonzero(mask), strict=True):
        if seen[y, x]:
            continue
        part, stack = set(), [(int(y), int(x))]
        seen[y, x] = True
        while stack:
            a, b = stack.pop()
            part.add((a, b))
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    c, d = a + dy, b + dx
                    inside = 0 <= c < mask.shape[0] and 0 <= d < mask.shape[1]
                    if inside and mask[c, d] and not seen[c, d]:
                        seen[c, d] = True
                        stack.append((c, d))
        out.append(part)
    return out


@pytest.mark.parametrize("seed", range(5))
def test_parts_are_the_masks_connected_parts(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = rng.random((40, 50)) < 0.3 + 0.1 * seed  # sparse to nearly one tangle
    mask[rng.random(mask.shape) < 0.02] = True
    found = parts(mask)
    want = _parts_by_search(mask)
    assert sorted(len(ys) for ys, _ in found) == sorted(len(p) for p in want)
    assert {frozenset(zip(ys.tolist(), xs.tolist(), strict=True)) for ys, xs in found} == {
        frozenset(p) for p in want
    }
    sizes = [len(ys) for ys, _ in found]
    assert sizes == sorted(sizes, reverse=True)
    assert parts(np.zeros((4, 4), bool)) == []


def test_stills_kept_in_the_same_pass_are_the_frames_a_second_decoding_gives(tmp_path) -> None:
    """`decode(..., stills=STILLS)` keeps, beside the encoders' frames, the frames a decoding at
    the stills' rate and size gives (the index measures outlines on them, the attribute phase on
    the second decoding), and `media_shapes` reads them in the file's display proportions: a
    circle in a file stored at half its shown width is measured round."""
    from models.media import decode
    from models.shape import STILLS, decode_for_shapes, media_shapes
    from tests.models.conftest import write_media

    def draw(i: int, t: float, height: int, width: int) -> np.ndarray:
        # shown 2:1; stored squeezed into a square frame
        x = 40.0 + 8.0 * t
        return _frame([("circle", x, 48.0, 12.0)], size=(height, width), squeeze=2.0)

    path = write_media(
        tmp_path / "round.mp4", audio=None, duration=3.0, fps=10, size=(SIZE, SIZE), draw=draw
    )
    media = decode(path, fps=12.0, size=(64, 64), fit="stretch", stills=STILLS)
    assert media.frames is not None and media.frames.shape[1:3] == (64, 64)
    assert media.stills is not None
    found = decode_for_shapes(path)
    assert found is not None
    np.testing.assert_array_equal(media.stills, found[0])
    assert len(media.stills) == 3  # 3 s at one a second
    assert decode(path, fps=12.0, size=(64, 64), fit="stretch").stills is None
    rows = media_shapes(media)
    assert rows is not None and len(rows) == 3
    assert found[1] == 1.0  # the file does not say its pixels are wide
    # told the picture is shown twice as wide, the squeezed circle is round again
    wide = glyph_shapes(media.stills, display_aspect=2.0)
    assert np.median(wide[:, 1 + ELONGATION]) > 0.85 > np.median(rows[:, 1 + ELONGATION])


def test_a_parts_colour_is_its_pixels_against_the_background() -> None:
    """`part_colour`: a yellow glyph on a dark background has a yellow hue (between red and
    green), is saturated and lighter than the background; a white one is grey and lighter
    still; the row of `glyph_shapes` ends with it."""
    from models.shape import COLOUR_FEATURES, part_colour

    frame = _frame([("circle", 30.0, 48.0, 10.0)])  # (230, 200, 40) on dark blue-grey
    white = frame.copy()
    mask = foreground(frame)
    assert mask is not None
    ys, xs = parts(mask)[0]
    white[ys, xs] = 240
    yellow = part_colour(frame, ys, xs, mask)
    grey = part_colour(white, ys, xs, mask)
    assert yellow.shape == (COLOUR_FEATURES,)
    hue = np.degrees(np.arctan2(yellow[1], yellow[0])) % 360
    assert 40 < hue < 60  # yellow-orange: (230, 200, 40)
    assert yellow[3] > 0.6 > 0.05 > grey[3]  # saturation
    assert grey[8] > yellow[8] > 0.3  # lighter than the background
    assert yellow[4] > yellow[6]  # more red than blue
    rows = glyph_shapes(frame[None])
    np.testing.assert_allclose(rows[0, 1 + PART_FEATURES :], yellow, rtol=1e-5)
