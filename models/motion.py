"""Where a picture's motion changes: the impacts a change envelope cannot see.

A picture's change envelope (`models.events.picture_events`: how much changes between frames)
finds a flash, a squash, a blink or a turn, which change the picture for a moment. It cannot find
an impact: a ball that bounces changes the picture as much in mid-flight as when it lands (once
it moves further than its own size between frames the difference saturates). What marks the
landing is that its *motion* changes: down, then up. This is the visual-impact idea of Davis &
Agrawala's visual rhythm (onsets as sudden decelerations of optical flow), made cheap enough to
run on every frame of every upload: no flow field, only where the change between two frames lies
(the centre of mass of their absolute difference, which sits half-way between where a moving
thing was and where it is) and how that centre's velocity changes from one pair of frames to
the next. A steady motion, or none, changes no velocity; a landing reverses it within a frame.

Envelopes alone, the sound's best band against the picture's change envelope → the best pair
with its motion envelope beside it (`benchmarks/bench_crossbands.py`, shared-event clips among
1,000; `bench_crossbands-20261201T102919Z`), audio→video / video→audio R@1: val (the choosing
pool) 0.628 → 0.678 / 0.639 → 0.689; test 0.557 → 0.653 / 0.580 → 0.707; another renderer's
clips 0.203 → 0.223 / 0.240 → 0.290; re-encoded ones 0.403 → 0.427 / 0.403 → 0.443. In a probe on
val, clips whose only seen source is a ball went from none found first to half, and the motion
envelope's correlation with a ball's true landings was 0.64 where the change envelope's is 0.25.

Velocities are measured on the file's own timestamps (`models._decode._VideoSampler` calls this
on every frame of the file), not on frames resampled onto the grid, which judder; a frame the
file repeats is no new observation and is left out (`REPEATED_SHARE`). A landing counts its
whole change of velocity at any frame rate, a gravity's smooth turn only a frame's worth of it.
Each value is weighed by the square root of the smallest change of the frames it was measured
on: where nothing moves, the centre of a difference is where the codec's noise is.
"""

from __future__ import annotations

import math

import numpy as np


def change_centre(diff: np.ndarray) -> tuple[float, float, float]:
    """(y, x, mass) of an absolute difference (H, W) or (H, W, C): the centre of the change in
    fractions of the picture's height and width (0.5 each when nothing changed), and its sum
    (any unit: only ratios between one clip's values matter)."""
    d = np.asarray(diff)
    if d.ndim not in (2, 3) or d.size == 0:
        raise ValueError(f"a difference must be (H, W) or (H, W, C), got {np.shape(diff)}")
    height, width = d.shape[:2]
    # one contiguous (H, W × C) view, summed along each axis: the decoder calls this on every
    # frame of every file (a channel axis reduced first costs five times as much)
    flat = d.reshape(height, -1)
    exact = np.int64 if d.dtype.kind in "ui" else np.float64
    rows = flat.sum(axis=1, dtype=exact).astype(np.float64)
    total = float(rows.sum())
    if total <= 0.0 or not math.isfinite(total):
        return 0.5, 0.5, 0.0
    cols = flat.sum(axis=0, dtype=exact).reshape(width, -1).sum(axis=1).astype(np.float64)
    y = float(rows @ (np.arange(height) + 0.5)) / total / height
    x = float(cols @ (np.arange(width) + 0.5)) / total / width
    return y, x, total


# A frame pair whose change is below this share of the clip's 90th percentile shows a repeated
# frame (a 12 fps clip converted to 25 or 30 fps by repeating frames, as encoders do): it is no
# new observation of where anything is, and kept, its zero mass silenced every landing near it.
# Chosen on the val split re-encoded (`benchmarks.foreign.reencode --split val --seed 1`, its
# 200 clips among themselves, envelopes alone): the motion envelope's correlation with a ball's
# landings 0.26 → 0.53 / 0.56 / 0.55 with 0.02 / 0.05 / 0.1, audio→video R@1 by the best pair
# 0.443 → 0.481 / 0.481 / 0.464; the val clips as made (12 fps, no repeats): unchanged.
REPEATED_SHARE = 0.05


def velocity_changes(
    centres: np.ndarray, masses: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> np.ndarray:
    """(N,) how much the motion changes at each of N consecutive frame pairs (pair i: the frames
    at `starts[i]` and `ends[i]`, seconds; `centres[i]` (y, x) and `masses[i]` of their
    difference, `change_centre`): pair i's centre moved from the previous pair's at one velocity
    and moves on to the next pair's at another; the size of that change (picture fractions a
    second), times the square root of the smallest mass of the three. It happened between pair
    i's two frames, where its change is placed too. Pairs of a repeated frame
    (`REPEATED_SHARE`) are skipped, their neighbours taken across them, and score 0; so do the
    first and last pairs, which have no neighbour."""
    c = np.asarray(centres, np.float64).reshape(-1, 2)
    m = np.asarray(masses, np.float64).reshape(-1)
    mid = (np.asarray(starts, np.float64) + np.asarray(ends, np.float64)) / 2
    if not len(c) == len(m) == len(mid):
        raise ValueError("centres, masses and times must have one entry per frame pair")
    out = np.zeros(len(c), np.float64)
    if len(c) < 3:
        return out.astype(np.float32)
    moved = np.nonzero(m > REPEATED_SHARE * np.quantile(m, 0.9))[0]
    if len(moved) < 3:
        return out.astype(np.float32)
    c, m, mid = c[moved], m[moved], mid[moved]
    gaps = np.maximum(np.diff(mid), 1e-6)
    velocity = np.diff(c, axis=0) / gaps[:, None]  # (N - 1, 2): from pair i to pair i + 1
    change = np.linalg.norm(np.diff(velocity, axis=0), axis=1)  # (N - 2,): at pairs 1..N-2
    weight = np.sqrt(np.minimum(np.minimum(m[:-2], m[1:-1]), m[2:]))
    out[moved[1:-1]] = change * weight
    return out.astype(np.float32)


# The horizontal halves of the picture (top, bottom) as groups of its quadrants (top left, top
# right, bottom left, bottom right: `quadrant_centres`). Two things in one picture each make their
# own changes; measured over the whole picture, one's steady motion buries the other's moments,
# and the centre of all change follows neither. Each half's change and motion envelopes
# (`models.events.picture_halves`) hold one of them where they stand one above the other, as
# things on a floor, on a road, under a sky mostly do. Envelopes alone, the sound's best band
# against the best of the picture's envelopes, shared-event val clips among 1,000 (`/tmp`
# probe, the val split chose): audio→video R@1 0.683 whole picture → 0.781 with both halves,
# video→audio 0.694 → 0.809; the left and right halves as well 0.738 / 0.787 (a thing that moves
# across the picture crosses them), the four quadrants instead 0.552 / 0.525.
HALVES: dict[str, tuple[int, ...]] = {"top": (0, 1), "bottom": (2, 3)}


def quadrant_centres(diff: np.ndarray) -> np.ndarray:
    """(4, 3) `change_centre` of each quadrant of a difference (top left, top right, bottom left,
    bottom right), (y, x) in fractions of the *whole* picture and the quadrant's mass: the
    quadrants partition the picture (an odd row or column goes to the bottom / right ones; a
    picture one pixel high or wide has empty top / left ones, centre 0.5 and mass 0), so any
    group of them merges exactly (`merged_centre`)."""
    d = np.asarray(diff)
    if d.ndim not in (2, 3) or d.size == 0:
        raise ValueError(f"a difference must be (H, W) or (H, W, C), got {np.shape(diff)}")
    height, width = d.shape[:2]
    h, w = height // 2, width // 2
    out = np.empty((4, 3), np.float64)
    spans = [
        ((0, h), (0, w)),
        ((0, h), (w, width)),
        ((h, height), (0, w)),
        ((h, height), (w, width)),
    ]
    for k, ((r0, r1), (c0, c1)) in enumerate(spans):
        if r1 <= r0 or c1 <= c0:
            out[k] = (0.5, 0.5, 0.0)
            continue
        y, x, mass = change_centre(d[r0:r1, c0:c1])
        out[k] = ((r0 + y * (r1 - r0)) / height, (c0 + x * (c1 - c0)) / width, mass)
    return out


def half_sums(diffs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For N integer differences of one shape, (N, H, W) or (N, H, W, C): (N, H, 2) each row's
    sum over the left and the right half of the columns (and the channels), and (N, 2, W) each
    column's over the top and the bottom half of the rows (halves as `quadrant_centres` splits
    them), exact integers as float64. Two matrix products: every partial sum is an integer
    below 2**24 (2**53 for pictures too wide for that), so floats hold them exactly."""
    d = np.asarray(diffs)
    if d.ndim not in (3, 4) or d.size == 0 or d.dtype.kind not in "ui":
        raise ValueError(f"integer differences (N, H, W[, C]) wanted, got {d.dtype} {d.shape}")
    n, height, width = d.shape[:3]
    channels = d.size // (n * height * width)
    info = np.iinfo(d.dtype)
    peak = max(abs(int(info.min)), int(info.max))
    exact = np.dtype(np.float32 if peak * max(width, height) * channels < 2**24 else np.float64)
    h, w = height // 2, width // 2
    flat = d.reshape(n, height, width * channels).astype(exact)
    left = (np.arange(width * channels) // channels) < w
    by_columns = np.stack([left, ~left], axis=1).astype(exact)  # (W × C, 2)
    top = np.arange(height) < h
    by_rows = np.stack([top, ~top]).astype(exact)  # (2, H)
    rows = flat @ by_columns  # (N, H, 2)
    cols = (by_rows @ flat).reshape(n, 2, width, channels).sum(axis=3)  # (N, 2, W)
    return rows.astype(np.float64), cols.astype(np.float64)


def quadrant_centres_many(
    diffs: np.ndarray, sums: tuple[np.ndarray, np.ndarray] | None = None
) -> np.ndarray:
    """(N, 4, 3): `quadrant_centres` of N differences of one shape, (N, H, W) or (N, H, W, C),
    bit for bit, in a few array passes instead of a dozen per picture (the decoder measures
    every frame of every file: at 64 px the calls were most of the cost). `sums`: their
    `half_sums`, where the caller has them.

    Integer differences take this path, and it is exact: every sum is an integer sum
    (`half_sums`), and a centre's numerator (row sums times half-integer positions) is a
    multiple of 0.5 far below 2**52, so it has one value whatever the order it is added in; the
    divisions are then the ones `change_centre` makes, in its order. Float differences go
    picture by picture."""
    d = np.asarray(diffs)
    if d.ndim not in (3, 4) or d.size == 0:
        raise ValueError(f"differences must be (N, H, W) or (N, H, W, C), got {d.shape}")
    if d.dtype.kind not in "ui":
        return np.stack([quadrant_centres(x) for x in d])
    n, height, width = d.shape[:3]
    row_halves, col_halves = half_sums(d) if sums is None else sums
    h, w = height // 2, width // 2
    out = np.empty((n, 4, 3), np.float64)
    for k, (a, b) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        r0, r1 = (0, h) if a == 0 else (h, height)
        c0, c1 = (0, w) if b == 0 else (w, width)
        if r1 <= r0 or c1 <= c0:
            out[:, k] = (0.5, 0.5, 0.0)
            continue
        rows = row_halves[:, r0:r1, b]  # (N, r1 - r0)
        cols = col_halves[:, a, c0:c1]  # (N, c1 - c0)
        total = rows.sum(axis=1)
        changed = total > 0.0
        safe = np.where(changed, total, 1.0)
        y = np.where(changed, rows @ (np.arange(r1 - r0) + 0.5) / safe / (r1 - r0), 0.5)
        x = np.where(changed, cols @ (np.arange(c1 - c0) + 0.5) / safe / (c1 - c0), 0.5)
        out[:, k, 0] = (r0 + y * (r1 - r0)) / height
        out[:, k, 1] = (c0 + x * (c1 - c0)) / width
        out[:, k, 2] = np.where(changed, total, 0.0)
    return out


def merged_centre(quadrants: np.ndarray, members: tuple[int, ...] = (0, 1, 2, 3)) -> np.ndarray:
    """(..., 3) the (y, x, mass) of the change over a group of quadrants (`quadrant_centres`,
    (..., 4, 3)): the mass-weighted centre of theirs, (0.5, 0.5, 0) where nothing changed. All
    four give the whole picture's `change_centre`."""
    q = np.asarray(quadrants, np.float64)[..., list(members), :]
    mass = q[..., 2].sum(axis=-1)
    safe = np.where(mass > 0, mass, 1.0)
    y = np.where(mass > 0, (q[..., 0] * q[..., 2]).sum(axis=-1) / safe, 0.5)
    x = np.where(mass > 0, (q[..., 1] * q[..., 2]).sum(axis=-1) / safe, 0.5)
    return np.stack([y, x, mass], axis=-1)


def half_values(
    quadrants: np.ndarray, changes: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> np.ndarray:
    """(N, 2 × len(HALVES)) float32 for N consecutive frame pairs: each half's change (the mean
    of its quadrants' `changes`, (N, 4)) and `velocity_changes` of the centre of its change
    (`merged_centre` of its `quadrants`, (N, 4, 3)), half by half (top, then bottom)."""
    columns = []
    for members in HALVES.values():
        centre = merged_centre(quadrants, members)
        columns.append(np.asarray(changes)[:, list(members)].mean(axis=1))
        columns.append(velocity_changes(centre[:, :2], centre[:, 2], starts, ends))
    return np.stack(columns, axis=1).astype(np.float32)


def frame_motion(frames: np.ndarray, fps: float) -> np.ndarray:
    """(T,) `velocity_changes` of (T, H, W, C) frames sampled at `fps`, pair k (frames k and
    k + 1) at index k, the last 0: what the decoder measures on a file's own frames, here on
    the sampled ones (a file at another frame rate than `fps` judders; see `picture_motion`)."""
    f = np.asarray(frames)
    if f.ndim != 4 or len(f) == 0:
        raise ValueError(f"frames must be (T, H, W, C) with T ≥ 1, got {f.shape}")
    out = np.zeros(len(f), np.float32)
    if len(f) < 2:
        return out
    x = f.astype(np.int16) if f.dtype == np.uint8 else f.astype(np.float32)
    found = [change_centre(np.abs(x[k + 1] - x[k])) for k in range(len(f) - 1)]
    centres = np.array([(y, xx) for y, xx, _ in found])
    masses = np.array([m for _, _, m in found])
    starts = np.arange(len(f) - 1) / fps
    out[:-1] = velocity_changes(centres, masses, starts, starts + 1 / fps)
    return out


def frame_halves(frames: np.ndarray, fps: float) -> np.ndarray:
    """(T, 2 × len(HALVES)) of (T, H, W, C) frames sampled at `fps`: each half's change and
    `velocity_changes`, pair k at index k, the last row 0 (`frame_motion` per half: what the
    decoder measures on a file's own frames, here on the sampled ones)."""
    f = np.asarray(frames)
    if f.ndim != 4 or len(f) == 0:
        raise ValueError(f"frames must be (T, H, W, C) with T ≥ 1, got {f.shape}")
    out = np.zeros((len(f), 2 * len(HALVES)), np.float32)
    if len(f) < 2:
        return out
    x = f.astype(np.int16) if f.dtype == np.uint8 else f.astype(np.float32)
    quadrants = quadrant_centres_many(np.abs(np.diff(x, axis=0)))
    # each quadrant's mean change, as the decoder measures it (`region_changes`)
    height, width = f.shape[1:3]
    h, w = height // 2, width // 2
    rows, cols = np.array([h, h, height - h, height - h]), np.array([w, width - w] * 2)
    values = f.shape[3] * np.maximum(rows * cols, 1) * (255.0 if f.dtype == np.uint8 else 1.0)
    starts = np.arange(len(f) - 1) / fps
    out[:-1] = half_values(quadrants, quadrants[:, :, 2] / values, starts, starts + 1 / fps)
    return out
