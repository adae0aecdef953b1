"""Pixels: each visible source drawn as its glyph, moving and reacting to its events.

Frame k shows the world at t = k / fps. An event at time e shows from the first frame at or after e,
so a sound (which starts exactly at e) is never more than one frame away from what is seen.
Shapes are rasterised with 4x supersampling so edges are antialiased as a real renderer's would be.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from training.synthav.world import COLOURS, ClipSpec, RenderConfig, Source, SourceSpec

# Glyph radius as a fraction of the frame's shorter side.
RADIUS = {"small": 0.06, "large": 0.115}
_SUB = np.array([-0.25, 0.25])  # supersampling offsets within a pixel


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    angles = -math.pi / 2 + np.arange(2 * points) * math.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _rect(half_w: float, half_h: float) -> np.ndarray:
    return np.array([[-half_w, -half_h], [half_w, -half_h], [half_w, half_h], [-half_w, half_h]])


# Polygons in glyph units (radius 1, y down). Circle, ring and plus are tested analytically.
POLYGONS: dict[Source, np.ndarray] = {
    Source.BELL: np.array([[0.0, -1.0], [0.95, 0.8], [-0.95, 0.8]]),
    Source.DRUM: _rect(0.8, 0.8),
    Source.BIRD: _star(),
    Source.ENGINE: _rect(1.7, 0.55),
}


def _inside_polygon(x: np.ndarray, y: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd rule, vectorised over points; works for the non-convex star."""
    inside = np.zeros(x.shape, dtype=bool)
    x0, y0 = poly[:, 0], poly[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    for a, b, c, d in zip(x0, y0, x1, y1, strict=True):
        crosses = (b > y) != (d > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = a + (y - b) * (c - a) / (d - b)
        inside ^= crosses & (x < x_cross)
    return inside


def inside_glyph(kind: Source, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if kind is Source.BALL:
        return x * x + y * y <= 1.0
    if kind is Source.SIREN:
        r2 = x * x + y * y
        return (r2 <= 1.0) & (r2 >= 0.36)
    if kind is Source.CLOCK:
        return ((np.abs(x) <= 0.25) & (np.abs(y) <= 1.0)) | (
            (np.abs(y) <= 0.25) & (np.abs(x) <= 1.0)
        )
    return _inside_polygon(x, y, POLYGONS[kind])


def draw_glyph(
    canvas: np.ndarray,
    kind: Source,
    cx: float,
    cy: float,
    radius: float,
    colour: np.ndarray,
    sx: float = 1.0,
    sy: float = 1.0,
    angle: float = 0.0,
) -> None:
    """Alpha-blend one glyph into `canvas` (H, W, 3) float32, in place."""
    h, w, _ = canvas.shape
    reach = radius * max(sx, sy) * 1.8 + 2
    x0, x1 = max(0, int(cx - reach)), min(w, int(cx + reach) + 1)
    y0, y1 = max(0, int(cy - reach)), min(h, int(cy + reach) + 1)
    if x0 >= x1 or y0 >= y1:
        return
    px = np.arange(x0, x1, dtype=np.float64) + 0.5
    py = np.arange(y0, y1, dtype=np.float64) + 0.5
    cover = np.zeros((y1 - y0, x1 - x0))
    cos, sin = math.cos(angle), math.sin(angle)
    for oy in _SUB:
        for ox in _SUB:
            gx, gy = np.meshgrid(px + ox - cx, py + oy - cy)
            # Into glyph units: undo rotation, then scale.
            ux = (cos * gx + sin * gy) / (radius * sx)
            uy = (-sin * gx + cos * gy) / (radius * sy)
            cover += inside_glyph(kind, ux, uy)
    alpha = (cover / _SUB.size**2)[..., None]
    region = canvas[y0:y1, x0:x1]
    region[:] = region * (1 - alpha) + colour * alpha


def _decay(t: float, events: tuple[float, ...], tau: float) -> float:
    """exp(-(t - e) / tau) for the latest event e at or before t; 0 before the first event."""
    past = [e for e in events if e <= t + 1e-9]
    return math.exp(-(t - past[-1]) / tau) if past else 0.0


def engine_progress(source: SourceSpec, t: np.ndarray | float, duration: float) -> np.ndarray:
    """Fraction of its path the engine has covered at t; its speed wobbles (and so does its hum)."""
    depth, freq, phase = source.motion
    tt = np.asarray(t, dtype=np.float64)

    def integral(x: np.ndarray) -> np.ndarray:  # ∫ 1 + depth·sin(2π f u + φ) du from 0 to x
        w = 2 * math.pi * freq
        return x - depth / w * (np.cos(w * x + phase) - math.cos(phase))

    return integral(tt) / integral(np.asarray(duration))


def engine_speed(source: SourceSpec, t: np.ndarray, duration: float) -> np.ndarray:
    """Relative speed (mean 1 over the clip) — what makes the engine louder."""
    depth, freq, phase = source.motion
    w = 2 * math.pi * freq
    total = duration - depth / w * (math.cos(w * duration + phase) - math.cos(phase))
    return (1 + depth * np.sin(w * t + phase)) * duration / total


def x_fraction(source: SourceSpec, t: float, duration: float) -> float:
    if source.kind is Source.ENGINE:
        p = float(engine_progress(source, t, duration))
    else:
        p = t / duration
    return source.x_start + (source.x_end - source.x_start) * p


def _bounce_height(source: SourceSpec, t: float, duration: float) -> float:
    """Height above the floor in [0, 1]: parabolic arcs that touch the floor at each event."""
    ev = list(source.events)
    gap = ev[1] - ev[0] if len(ev) > 1 else 1.0
    knots = [min(ev[0] - gap, -0.05), *ev, max(ev[-1] + gap, duration + 0.05)]
    for a, b in itertools.pairwise(knots):
        if a <= t <= b:
            s = (t - a) / (b - a)
            # Longer arcs go higher, as a real bounce would; capped at the lane.
            return min(1.0, (b - a) / 1.2) * 4 * s * (1 - s)
    return 0.0


def _background(spec: ClipSpec, cfg: RenderConfig) -> np.ndarray:
    rng = np.random.default_rng(spec.noise_seed)
    h, w = cfg.height, cfg.width
    if spec.scene == "day":
        top, bottom = np.array([140.0, 180.0, 225.0]), np.array([205.0, 215.0, 225.0])
    else:
        top, bottom = np.array([10.0, 12.0, 28.0]), np.array([32.0, 34.0, 58.0])
    tint = rng.uniform(-12, 12, size=3)
    ramp = np.linspace(0.0, 1.0, h)[:, None, None]
    bg = (top + (bottom - top) * ramp + tint) * np.ones((1, w, 1))
    bg += rng.normal(0.0, 2.0, size=(h, w, 1))  # fixed texture, like a real sensor's
    lane_h = h / spec.n_lanes
    floor_shade = -25.0 if spec.scene == "day" else 25.0
    for lane in range(spec.n_lanes):  # a floor line under each lane
        y = int((lane + 1) * lane_h) - 2
        bg[max(0, y) : y + 1] += floor_shade
    return bg.astype(np.float32)


Pose = tuple[Source, float, float, float, np.ndarray, float, float, float]


def glyph_pose(spec: ClipSpec, s: SourceSpec, t: float, cfg: RenderConfig) -> Pose:
    """Where and how a source's glyph stands at t: kind, centre, radius, colour, scale, angle."""
    h, w = cfg.height, cfg.width
    radius = RADIUS[s.size] * min(h, w)
    lane_h = h / spec.n_lanes
    floor = (s.lane + 1) * lane_h - 3
    cx = x_fraction(s, t, cfg.duration_s) * w
    cy = (s.lane + 0.5) * lane_h
    colour = np.array(COLOURS[s.colour], dtype=np.float32)
    sx = sy = 1.0
    angle = 0.0
    kind = s.kind
    if kind is Source.BALL:
        room = max(0.0, lane_h - 2 * radius - 6)
        cy = floor - radius - room * _bounce_height(s, t, cfg.duration_s)
    elif kind is Source.BELL:  # a strike: the glyph flashes toward white and swells slightly
        k = _decay(t, s.events, 0.12)
        colour = colour + (255.0 - colour) * 0.85 * k
        sx = sy = 1.0 + 0.12 * k
    elif kind is Source.DRUM:  # a hit: squashed, anchored on its base
        k = _decay(t, s.events, 0.1)
        sy, sx = 1.0 - 0.45 * k, 1.0 + 0.3 * k
        cy += radius * 0.8 * (1 - sy)
    elif kind is Source.BIRD:  # a chirp: a flap, seen as a scale pulse
        k = _decay(t, s.events, 0.09)
        sx, sy = 1.0 + 0.45 * k, 1.0 - 0.25 * k
    elif kind is Source.CLOCK:  # a tick: the plus turns one step
        angle = math.radians(30.0) * sum(1 for e in s.events if e <= t + 1e-9)
    elif kind is Source.SIREN:  # each tone switch: the ring blinks between bright and dim
        n = sum(1 for e in s.events if e <= t + 1e-9)
        colour = colour if n % 2 == 0 else colour * 0.3
    return kind, cx, cy, radius, colour, sx, sy, angle


def _draw_source(
    canvas: np.ndarray, spec: ClipSpec, s: SourceSpec, t: float, cfg: RenderConfig
) -> None:
    draw_glyph(canvas, *glyph_pose(spec, s, t, cfg))


def render_frames(spec: ClipSpec, cfg: RenderConfig) -> np.ndarray:
    """All frames of a clip: uint8 (T, H, W, 3)."""
    if spec.seen_variety is not None:
        # Imported here: the styled renderer builds on this module's geometry.
        from training.synthav.look import render_styled_frames

        return render_styled_frames(spec, cfg, spec.seen_variety.look)
    bg = _background(spec, cfg)
    frames = np.empty((cfg.num_frames, cfg.height, cfg.width, 3), dtype=np.uint8)
    for k in range(cfg.num_frames):
        t = k / cfg.fps
        canvas = bg.copy()
        for s in spec.visible_sources:
            _draw_source(canvas, spec, s, t, cfg)
        frames[k] = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return frames
