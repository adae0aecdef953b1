"""Which way a picture's foreground goes, measured from its frames with nothing learned.

The pooled picture vector's reader (`models.attributes`) names the direction a source moves in
0.82 of the own val clips but in 0.56 of single-source clips drawn and synthesised another way
(`bench_probe`: a linear probe fitted on training clips): it learned this generator's way of
drawing a glyph on the move. Where a thing goes is not a matter of drawing. A clip's median
picture is its background; each frame's foreground is how far it differs from that, summed down
each column; the foreground's centre across the picture, frame by frame, weighted by how much
foreground there is, is fitted by a line in time. Its slope (picture widths a second, + to the
right), the slope's size, and how well the line fits (signed as the slope) are the three numbers
`foreground_drift` gives. A still glyph that flashes or squashes stays where it is: its
foreground's centre does not move.

Two glyphs moving different ways pull one centre both ways: with the whole picture's numbers
alone, a reader named every direction of 0.34 of the own val split's two-source clips. So
`drift_features` measures the top and the bottom half of the picture too (where two things in a
picture are, as "Two things in one picture: its halves" in the quality log found for the
envelopes): 0.98 of them, single-source clips 0.99 → 0.95. A reader of the three directions
over those nine numbers, fitted on the training clips (`models.attributes.AttributeReaders.drift`,
`training.attribute_phase`), gives each direction's chance independently (a clip may show two).
With the whole picture's numbers it named the direction of 1.000 of the own val split's
single-source clips, 0.80 of a `--variety` val split's and 0.95 of the foreign corpus's (a `/tmp`
probe, 2026-12-05; the quality log's "A picture's direction from where its foreground goes").
"""

from __future__ import annotations

import numpy as np

# `foreground_drift`'s numbers for one picture (or part of one)
PART_FEATURES = 3
# `drift_features`': the whole picture's, its top half's and its bottom half's
DRIFT_FEATURES = 3 * PART_FEATURES


def drift_features(frames: np.ndarray, fps: float) -> np.ndarray:
    """(`DRIFT_FEATURES`,) float32: `foreground_drift` of the whole picture, of its top half and
    of its bottom half (each measured against its own median picture)."""
    f = np.asarray(frames)
    if f.ndim not in (3, 4):
        raise ValueError(f"frames must be (T, H, W[, C]), got {f.shape}")
    half = f.shape[1] // 2
    parts = (f, f[:, :half], f[:, half:]) if half else (f, f[:, :0], f)
    return np.concatenate([foreground_drift(part, fps) for part in parts]).astype(np.float32)


def foreground_drift(frames: np.ndarray, fps: float) -> np.ndarray:
    """(`PART_FEATURES`,) float32 for (T, H, W, C) frames (or (T, H, W) grey) at `fps`: the
    slope of the foreground's centre across the picture in widths a second (+: rightward), its
    size, and the weighted R² of that line signed as the slope. Zeros where nothing can be
    measured: fewer than two frames, an empty picture, or one that never differs from its
    median."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    f = np.asarray(frames)
    if f.ndim not in (3, 4):
        raise ValueError(f"frames must be (T, H, W[, C]), got {f.shape}")
    if f.dtype != np.uint8 and not np.isfinite(f).all():
        raise ValueError("frames have non-finite values")
    out = np.zeros(PART_FEATURES, np.float32)
    if len(f) < 2 or f.shape[1] < 1 or f.shape[2] < 2:
        return out
    # grey as the channels' sum (a scale the measures do not see), each 2 × 2 cell summed where
    # the picture is large enough: the median over time, the most of the cost, on a quarter of
    # the values (about 1.5 ms for 6 s of 64 × 64 frames at 12 fps; 13 ms at full size in float)
    wide = np.uint16 if f.dtype == np.uint8 else np.float32
    if f.ndim == 4:
        g = np.add(np.add(f[..., 0], f[..., 1], dtype=wide), f[..., 2], dtype=wide)
    else:
        g = f.astype(wide)
    if g.shape[1] >= 32 and g.shape[2] >= 32:
        h, w = g.shape[1] // 2 * 2, g.shape[2] // 2 * 2
        g = g[:, 0:h:2, 0:w:2] + g[:, 1:h:2, 0:w:2] + g[:, 0:h:2, 1:w:2] + g[:, 1:h:2, 1:w:2]
    t_len = len(g)
    by_place = np.ascontiguousarray(g.reshape(t_len, -1).T)  # each place's values over time
    background = np.median(by_place, axis=1).astype(np.float32).reshape(g.shape[1:])
    columns = np.abs(g.astype(np.float32) - background).sum(axis=1)  # (T, W) foreground
    mass = columns.sum(axis=1)
    total = float(mass.sum())
    if total <= 0.0:
        return out
    across = np.linspace(-0.5, 0.5, columns.shape[1], dtype=np.float32)
    x = (columns @ across) / np.maximum(mass, 1e-12)  # the foreground's centre, frame by frame
    t = np.arange(len(x), dtype=np.float64) / fps
    w = mass / total
    t_mean, x_mean = float(w @ t), float(w @ x)
    spread = float(w @ (t - t_mean) ** 2)
    if spread <= 0.0:
        return out
    slope = float(w @ ((t - t_mean) * (x - x_mean))) / spread
    varied = float(w @ (x - x_mean) ** 2)
    fitted = 0.0
    if varied > 1e-12:
        residual = x - (x_mean + slope * (t - t_mean))
        fitted = 1.0 - float(w @ residual**2) / varied
    out[:] = (slope, abs(slope), np.sign(slope) * fitted)
    return out
