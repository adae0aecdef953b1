"""What a picture's glyphs are and what colour, read from their pixels with nothing learned.

The picture what network (`models.what_net`) names the kind of source a clip shows in 1.00 of the
own val clips, in 0.66 of a `--variety` val split's single-source clips (drawn with outlines,
shading, textures, tilts and other aspect ratios) and near chance in media drawn by another
toolchain: it learned this generator's way of drawing each glyph; the pooled vector's reader
names the colour in 0.95 and 0.64. The world's glyphs are shapes (shared/SYNTHAV.md: a filled
circle, a triangle, a square, a five-point star, a plus sign, a wide bar, a ring) of six colours,
and neither a shape nor a colour is a matter of drawing.

So each of a few frames (`SHAPE_FPS`, decoded at `SHAPE_SIZE`) is split into foreground and
background (`foreground`: the colour distance to a smooth background of block medians,
thresholded above the frame's own spread), its connected parts found (`parts`), and each part
thick and small enough to be a glyph measured (`part_features`), in the picture's display
proportions (`aspect`: a stretched frame is unstretched first), by numbers that do not change
with size, rotation or how the glyph is filled: how much of its silhouette is a hole (a ring),
how elongated it is (a bar), how much of its widest circle and of its box it fills (a circle, a
square), its size in the picture, and the harmonics of its outline's distance from its centre
(3: a triangle, 4: a square or a plus, 5: a star); and its colour (`part_colour`: the median of
its pixels as hue, lightness and saturation, against the background's). Readers of the kinds and
of the colours over a part's numbers (`models.attributes.AttributeReaders.shape` and `.tint`,
softmaxes: one part is one glyph) are fitted on single-source training clips by the trainer's
attribute phase; a clip's chance of showing a kind (a colour) is, per frame, its likeliest
part's, averaged over the frames (`kind_chances`: two glyphs of two kinds both count).

Measured (2026-12-05, the quality log's "A glyph's kind from its outline" and "… and its colour
from its pixels"; the attribute phase's readers on the AMD checkpoint): single-source clips'
kind / colour named (two-source clips': both) in own val 1.000 / 1.000 (1.000 / 1.000), a
`--variety` val split 0.778 / 0.790 (0.667 / 0.839), the re-encoded val clips 1.000 / 0.988
(0.939 / 0.977).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from models.media import DecodedMedia, MediaError, decode

# The frames measured: this many a second, at this size (height and width of the decoded,
# stretched frame; the glyphs' proportions are restored by `aspect`). At 64 px a small glyph is
# ~8 px across, too few for its outline's harmonics (a `/tmp` probe: `--variety` val 0.70
# against 0.82 at 128); one frame a second reads val as two do (0.83 / 0.82) at half the cost.
SHAPE_FPS = 1.0
SHAPE_SIZE = 128
# A part is measured as a glyph up to this many a frame, the largest first.
MAX_PARTS = 3
# The outline's distance from its centre in this many directions; its first harmonics kept.
ANGLES = 32
HARMONICS = 8
# hole, elongation, extent, box fill, size, then the harmonics 1..HARMONICS
PART_FEATURES = 5 + HARMONICS
# a part's colour (`part_colour`): its hue's cosine and sine scaled by its saturation, its
# lightness and saturation, its red, green and blue shares, its spread across the channels, and
# its lightness less the background's
COLOUR_FEATURES = 9
# a row of `glyph_shapes`: the frame, the part's outline numbers, then its colour's
ROW = 1 + PART_FEATURES + COLOUR_FEATURES
# A frame whose foreground is more than this share of it is not split (a cut, a flash of the
# whole picture, a texture the background misses).
MAX_FOREGROUND = 0.25
# The colour distance (0–441 for 8-bit RGB) a foreground pixel differs from its background by
# at least, and in the frame's own spread (its median absolute deviation) at least.
MIN_DISTANCE = 30.0
SPREAD_DISTANCES = 6.0
BLOCKS = 8  # the background's grid: BLOCKS × BLOCKS block medians
NEIGHBOURHOOD = 3  # each block's background: the median of its NEIGHBOURHOOD² blocks' medians


def aspect(width: int | None, height: int | None, sample_aspect: float | None = None) -> float:
    """The picture's display width over its height (1.0 where unknown)."""
    if not width or not height or width <= 0 or height <= 0:
        return 1.0
    sar = (
        sample_aspect if sample_aspect and np.isfinite(sample_aspect) and sample_aspect > 0 else 1.0
    )
    return float(width) * sar / float(height)


def background(frame: np.ndarray) -> np.ndarray:
    """(H, W, C) float32 → the same shape: a smooth background, each block of a BLOCKS × BLOCKS
    grid its pixels' median, then the median of each block's 3 × 3 neighbourhood of those (a
    glyph covers a few blocks at most), repeated over the block's pixels."""
    h, w, c = frame.shape
    bh, bw = max(h // BLOCKS, 1), max(w // BLOCKS, 1)
    gh, gw = h // bh, w // bw
    blocks = frame[: gh * bh, : gw * bw].reshape(gh, bh, gw, bw, c)
    medians = np.median(blocks.transpose(0, 2, 1, 3, 4).reshape(gh, gw, -1, c), axis=2)
    r = NEIGHBOURHOOD // 2
    padded = np.pad(medians, ((r, r), (r, r), (0, 0)), mode="edge")
    around = np.stack(
        [padded[i : i + gh, j : j + gw] for i in range(2 * r + 1) for j in range(2 * r + 1)],
        axis=2,
    )
    smooth = np.median(around, axis=2)
    rows = np.minimum(np.arange(h) // bh, gh - 1)
    cols = np.minimum(np.arange(w) // bw, gw - 1)
    return smooth[rows][:, cols].astype(np.float32)


def foreground(frame: np.ndarray) -> np.ndarray | None:
    """(H, W) bool: the pixels that differ from `background` by more than the frame's own spread
    and `MIN_DISTANCE`; None where that is more than `MAX_FOREGROUND` of the frame."""
    f = np.asarray(frame, np.float32)
    distance = np.sqrt(((f - background(f)) ** 2).sum(axis=-1))
    middle = float(np.median(distance))
    spread = float(np.median(np.abs(distance - middle)))
    mask = distance > max(MIN_DISTANCE, middle + SPREAD_DISTANCES * spread)
    if mask.mean() > MAX_FOREGROUND:
        return None
    return mask


def parts(mask: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The 8-connected parts of a (H, W) bool mask as (rows, columns) of their pixels, the
    largest first (ties: the one with the first pixel first)."""
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return []
    y0, x0 = int(ys.min()), int(xs.min())
    box = mask[y0 : int(ys.max()) + 1, x0 : int(xs.max()) + 1]
    h, w = box.shape
    outside = h * w
    # each pixel's label the least flat index in reach: its neighbourhood's least, then each
    # label replaced by its own pixel's label (pointer jumping) until nothing changes
    labels = np.where(box, np.arange(outside).reshape(h, w), outside)
    padded = np.full((h + 2, w + 2), outside, labels.dtype)
    while True:
        padded[1:-1, 1:-1] = labels
        least = labels.copy()
        for dy in range(3):
            for dx in range(3):
                np.minimum(least, padded[dy : dy + h, dx : dx + w], out=least)
        least[~box] = outside
        flat = least.reshape(-1)
        inside = flat < outside
        while True:
            jumped = flat.copy()
            jumped[inside] = flat[flat[inside]]
            if np.array_equal(jumped, flat):
                break
            flat = jumped
        least = flat.reshape(h, w)
        if np.array_equal(least, labels):
            break
        labels = least
    py, px = np.nonzero(box)
    found = labels[py, px]
    _, first, inverse, counts = np.unique(
        found, return_index=True, return_inverse=True, return_counts=True
    )
    order = np.lexsort((first, -counts))
    by_part = np.argsort(inverse, kind="stable")
    ends = np.cumsum(counts)
    out = []
    for k in order:
        pixels = by_part[ends[k] - counts[k] : ends[k]]
        out.append((py[pixels] + y0, px[pixels] + x0))
    return out


def _filled(box: np.ndarray) -> np.ndarray:
    """A (h, w) bool box with its holes (what the border cannot reach) filled in."""
    free = np.pad(~box, 1, constant_values=True)
    outside = np.zeros_like(free)
    outside[0, :] = outside[-1, :] = outside[:, 0] = outside[:, -1] = True
    while True:
        grown = outside.copy()
        grown[1:] |= outside[:-1]
        grown[:-1] |= outside[1:]
        grown[:, 1:] |= outside[:, :-1]
        grown[:, :-1] |= outside[:, 1:]
        grown &= free
        if np.array_equal(grown, outside):
            break
        outside = grown
    return ~outside[1:-1, 1:-1]


def part_features(
    ys: np.ndarray, xs: np.ndarray, shape: tuple[int, int], sy: float = 1.0, sx: float = 1.0
) -> np.ndarray:
    """(`PART_FEATURES`,) float32 of one part's pixels in a (H, W) frame whose pixels stand
    `sy` × `sx` in display proportions: its hole share, its elongation (minor over major axis),
    its extent (its area over its widest circle's), its box fill, its size (√area over the
    shorter side) and its outline's harmonics 1..`HARMONICS` over the mean distance."""
    y0, x0 = int(ys.min()), int(xs.min())
    box = np.zeros((int(ys.max()) - y0 + 1, int(xs.max()) - x0 + 1), bool)
    box[ys - y0, xs - x0] = True
    silhouette = _filled(box)
    area = float(silhouette.sum())
    hole = 1.0 - float(box.sum()) / area
    rows, cols = np.nonzero(silhouette)
    fy = (rows + 0.5) * sy
    fx = (cols + 0.5) * sx
    cy, cx = fy.mean(), fx.mean()
    if len(fy) > 2:
        low, high = np.sort(np.linalg.eigvalsh(np.cov(np.stack([fy - cy, fx - cx]))))
        elongation = float(np.sqrt(max(low, 0.0) / high)) if high > 0 else 1.0
    else:
        elongation = 1.0
    # the outline's distance from the centre: per direction, the farthest pixel corner
    hy, hx = 0.5 * sy, 0.5 * sx
    dy = np.concatenate([fy - hy, fy + hy, fy - hy, fy + hy]) - cy
    dx = np.concatenate([fx - hx, fx - hx, fx + hx, fx + hx]) - cx
    bins = ((np.arctan2(dy, dx) + np.pi) / (2 * np.pi) * ANGLES).astype(np.int64) % ANGLES
    radius = np.zeros(ANGLES)
    np.maximum.at(radius, bins, np.hypot(dy, dx))
    if (radius == 0).any():
        radius[radius == 0] = radius[radius > 0].mean()
    spectrum = np.abs(np.fft.rfft(radius))[: HARMONICS + 1]
    harmonics = spectrum[1:] / max(float(spectrum[0]), 1e-9)
    scaled_area = area * sy * sx
    extent = scaled_area / (np.pi * float(radius.max()) ** 2)
    box_fill = area / float(box.size)
    size = np.sqrt(scaled_area) / min(shape[0] * sy, shape[1] * sx)
    return np.concatenate([[hole, elongation, extent, box_fill, size], harmonics]).astype(
        np.float32
    )


def part_colour(frame: np.ndarray, ys: np.ndarray, xs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(`COLOUR_FEATURES`,) float32: the colour of one part's pixels in a (H, W, 3) frame (their
    median), against the frame's background (the median of the pixels outside the foreground
    `mask`): hue (as a point on the colour wheel, nearer its centre the greyer), lightness,
    saturation, channel shares, channel spread, and lightness over the background's."""
    pixels = np.asarray(frame, np.float32)[ys, xs] / 255.0
    r, g, b = np.median(pixels, axis=0)
    outside = np.asarray(frame, np.float32)[~mask]
    back = np.median(outside, axis=0) / 255.0 if len(outside) else np.zeros(3, np.float32)
    high, low = max(r, g, b), min(r, g, b)
    lightness = (high + low) / 2
    spread = high - low
    saturation = 0.0 if spread == 0 else spread / (1 - abs(2 * lightness - 1) + 1e-6)
    if spread == 0:
        hue = 0.0
    elif high == r:
        hue = ((g - b) / spread) % 6
    elif high == g:
        hue = (b - r) / spread + 2
    else:
        hue = (r - g) / spread + 4
    angle = hue / 6 * 2 * np.pi
    total = max(float(r + g + b), 1e-6)
    back_lightness = (float(back.max()) + float(back.min())) / 2
    return np.array(
        [
            np.cos(angle) * saturation,
            np.sin(angle) * saturation,
            lightness,
            saturation,
            r / total,
            g / total,
            b / total,
            spread,
            lightness - back_lightness,
        ],
        np.float32,
    )


def _glyph_like(ys: np.ndarray, xs: np.ndarray, shape: tuple[int, int]) -> bool:
    """A part thick enough both ways and narrower than most of the picture (a line, a lane's
    floor, a frame's edge is none), and not too small to be measured."""
    h, w = shape
    tall, wide = int(ys.max() - ys.min()), int(xs.max() - xs.min())
    return len(ys) >= max(6, 0.0015 * h * w) and tall >= 2 and wide >= 2 and wide <= 0.8 * w


def glyph_shapes(frames: np.ndarray, display_aspect: float = 1.0) -> np.ndarray:
    """(R, `ROW`) float32 for (T, H, W, 3) frames stretched from a picture of `display_aspect`
    (width over height): per frame, up to `MAX_PARTS` glyph-like parts, the largest first, each
    row the frame's index, the part's `part_features` and its `part_colour`. (0, `ROW`) where no
    frame has one."""
    f = np.asarray(frames)
    if f.ndim != 4 or f.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got {f.shape}")
    if not np.isfinite(display_aspect) or display_aspect <= 0:
        raise ValueError(f"display_aspect must be positive, got {display_aspect}")
    h, w = f.shape[1:3]
    # a pixel's display proportions: the stretched frame squeezed the wider axis
    stretch = display_aspect * h / w
    sy, sx = (1.0, stretch) if stretch >= 1.0 else (1.0 / stretch, 1.0)
    rows: list[np.ndarray] = []
    for t, frame in enumerate(f):
        mask = foreground(frame)
        if mask is None:
            continue
        kept = 0
        for ys, xs in parts(mask):
            if kept == MAX_PARTS or len(ys) < 6:
                break
            if not _glyph_like(ys, xs, (h, w)):
                continue
            features = part_features(ys, xs, (h, w), sy, sx)
            colour = part_colour(frame, ys, xs, mask)
            rows.append(np.concatenate([[float(t)], features, colour]).astype(np.float32))
            kept += 1
    if not rows:
        return np.zeros((0, ROW), np.float32)
    return np.stack(rows)


def kind_chances(part_probabilities: np.ndarray, frame_of: np.ndarray, kinds: int) -> np.ndarray:
    """(kinds,) a clip's chance of showing each kind from its parts' (R, kinds) probabilities and
    each one's (R,) frame: per frame the likeliest part of each kind, averaged over the frames
    with a part (two glyphs of two kinds both count). Zeros where there is no part."""
    p = np.asarray(part_probabilities, np.float32).reshape(-1, kinds)
    frame_of = np.asarray(frame_of).reshape(-1)
    if not len(p):
        return np.zeros(kinds, np.float32)
    frames = np.unique(frame_of)
    best = np.stack([p[frame_of == t].max(axis=0) for t in frames])
    return best.mean(axis=0).astype(np.float32)


# What `models.media.decode` is asked for (its `stills`) to measure a file's glyphs in the same
# pass as its other frames.
STILLS = (SHAPE_FPS, (SHAPE_SIZE, SHAPE_SIZE))


def display_aspect(media: DecodedMedia) -> float:
    """A decoded file's picture's display width over its height (1.0 without a video stream)."""
    video = next((s for s in media.info.streams if s.kind == "video"), None)
    return aspect(video.width, video.height, video.pixel_aspect) if video is not None else 1.0


def media_shapes(media: DecodedMedia) -> np.ndarray | None:
    """`glyph_shapes` of a file decoded with `STILLS` (its `stills`, in its display aspect);
    None where it has no pictures or was decoded without them."""
    if media.stills is None or not len(media.stills):
        return None
    return glyph_shapes(media.stills, display_aspect(media))


def decode_for_shapes(path: str | os.PathLike[str]) -> tuple[np.ndarray, float] | None:
    """A file's frames at `SHAPE_FPS`, stretched to `SHAPE_SIZE` (the frames `STILLS` gives),
    and its display aspect; None where it has no pictures. Raises `MediaError` for a refused
    file."""
    media = decode(
        path,
        fps=SHAPE_FPS,
        size=(SHAPE_SIZE, SHAPE_SIZE),
        audio=False,
        fit="stretch",
    )
    if media.frames is None or not len(media.frames):
        return None
    return media.frames, display_aspect(media)


def read_shapes(
    path: str | os.PathLike[str], stretches: Sequence[float] = (1.0,)
) -> list[np.ndarray] | str:
    """One file's `glyph_shapes` rows, once per display stretch in `stretches` (1.0: as shown;
    others: as if shown that much wider, the attribute phase's augmentation); (0, ROW) arrays
    where it has no pictures; the refusal's reason where it fails to decode."""
    try:
        found = decode_for_shapes(path)
    except MediaError as e:
        return f"{e.reason.value}: {e.message}"
    if found is None:
        return [np.zeros((0, ROW), np.float32) for _ in stretches]
    frames, shown = found
    return [glyph_shapes(frames, shown * s) for s in stretches]
