"""Pixels with variety: the same world as render.py, drawn in the clip's own `Look`.

Geometry and event animation come from render.py (`glyph_pose`), so what happens and when is the
same as in the fixed style: frame k still shows the world at t = k / fps. Only the drawing differs:
glyph style, anti-aliasing, tilt and skew, background, vignette, lighting, blur and camera noise.
"""

from __future__ import annotations

import colorsys
import math

import numpy as np

from training.synthav.render import glyph_pose, inside_glyph
from training.synthav.variety import Look
from training.synthav.world import ClipSpec, RenderConfig, Source

_SUB_AA = np.array([-0.25, 0.25])
_SUB_HARD = np.array([0.0])


def jitter_colour(colour: np.ndarray, look: Look) -> np.ndarray:
    """A small hue/saturation/brightness change that keeps the colour's name."""
    r, g, b = (float(c) / 255.0 for c in colour)
    h, s, v = colorsys.rgb_to_hsv(r, g, b)
    h = (h + look.hue_shift / 360.0) % 1.0
    s = min(1.0, s * look.saturation)
    v = min(1.0, v * look.value)
    return np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32) * 255.0


def draw_styled_glyph(
    canvas: np.ndarray,
    kind: Source,
    cx: float,
    cy: float,
    radius: float,
    colour: np.ndarray,
    sx: float,
    sy: float,
    angle: float,
    look: Look,
) -> None:
    """Alpha-blend one glyph drawn in `look`'s style into `canvas` (H, W, 3) float32."""
    h, w, _ = canvas.shape
    reach = radius * max(sx, sy) * (1.8 + abs(look.skew)) + 2
    x0, x1 = max(0, int(cx - reach)), min(w, int(cx + reach) + 1)
    y0, y1 = max(0, int(cy - reach)), min(h, int(cy + reach) + 1)
    if x0 >= x1 or y0 >= y1:
        return
    px = np.arange(x0, x1, dtype=np.float64) + 0.5
    py = np.arange(y0, y1, dtype=np.float64) + 0.5
    sub = _SUB_AA if look.antialias else _SUB_HARD
    cover = np.zeros((y1 - y0, x1 - x0))
    paint = np.zeros((y1 - y0, x1 - x0, 3))
    edge = colour * 0.5  # a darker rim of the same hue
    inner_scale = 1.0 / (1.0 - look.outline)
    cos, sin = math.cos(angle + look.tilt), math.sin(angle + look.tilt)
    for oy in sub:
        for ox in sub:
            gx, gy = np.meshgrid(px + ox - cx, py + oy - cy)
            uy = (-sin * gx + cos * gy) / (radius * sy)
            ux = (cos * gx + sin * gy) / (radius * sx) - look.skew * uy
            inside = inside_glyph(kind, ux, uy)
            if look.glyph_style == "filled":
                cover += inside
                paint += inside[..., None] * colour
                continue
            if look.glyph_style == "shaded":  # lit from the top left, darker toward bottom right
                shade = np.clip(1.1 - 0.18 * (ux + uy), 0.7, 1.2)[..., None]
                cover += inside
                paint += inside[..., None] * np.minimum(colour * shade, 255.0)
                continue
            core = inside_glyph(kind, ux * inner_scale, uy * inner_scale)
            rim = inside & ~core
            cover += rim
            if look.glyph_style == "outline":
                paint += rim[..., None] * colour
            else:  # filled+outline
                paint += rim[..., None] * edge
                cover += core
                paint += core[..., None] * colour
    alpha = (cover / sub.size**2)[..., None]
    mean = paint / np.maximum(cover, 1.0)[..., None]
    region = canvas[y0:y1, x0:x1]
    region[:] = region * (1 - alpha) + mean * alpha


def _ramp(h: int, w: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 1) in [0, 1]: where between the two background colours each pixel sits."""
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    if kind == "flat":
        return np.full((h, w, 1), 0.5)
    if kind == "vertical":
        return yy[..., None]
    if kind == "diagonal":
        a = float(rng.uniform(0, 2 * math.pi))
        r = xx * math.cos(a) + yy * math.sin(a)
        return ((r - r.min()) / (np.ptp(r) + 1e-9))[..., None]
    raise ValueError(f"no ramp for {kind!r}")


def _texture(h: int, w: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    """Low-frequency noise in [-1, 1], (H, W, 1): a coarse random grid, bilinearly enlarged."""
    gh = cells + 1
    gw = max(2, round(cells * w / h)) + 1
    grid = rng.uniform(-1, 1, size=(gh, gw))
    ys = np.linspace(0, gh - 1, h)
    xs = np.linspace(0, gw - 1, w)
    rows = np.stack([np.interp(xs, np.arange(gw), grid[i]) for i in range(gh)])
    out = np.stack([np.interp(ys, np.arange(gh), rows[:, j]) for j in range(w)], axis=1)
    return out[..., None]


def styled_background(spec: ClipSpec, cfg: RenderConfig, look: Look) -> np.ndarray:
    """Day stays light and night dark; flat, gradient or textured within that, with a vignette."""
    rng = np.random.default_rng([spec.noise_seed, 5])
    h, w = cfg.height, cfg.width
    lo, hi = (150.0, 235.0) if spec.scene == "day" else (6.0, 60.0)
    top, bottom = rng.uniform(lo, hi, size=3), rng.uniform(lo, hi, size=3)
    if look.background == "texture":
        mid = (top + bottom) / 2
        amp = float(rng.uniform(10, 25))
        bg = mid + amp * _texture(h, w, look.texture_scale, rng) * np.ones(3)
    else:
        bg = top + (bottom - top) * _ramp(h, w, look.background, rng)
    bg = bg + rng.normal(0.0, 2.0, size=(h, w, 1))
    lane_h = h / spec.n_lanes
    shade = float(rng.uniform(15, 35)) * (-1.0 if spec.scene == "day" else 1.0)
    for lane in range(spec.n_lanes):
        y = int((lane + 1) * lane_h) - 2
        bg[max(0, y) : y + 1] += shade
    if look.vignette > 0:
        yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
        bg *= (1.0 - look.vignette * (xx**2 + yy**2) / 2)[..., None]
    return np.clip(bg, 0, 255).astype(np.float32)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of (H, W, 3) float32, edges extended."""
    r = max(1, math.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2).astype(np.float32)
    k /= k.sum()
    h, w, _ = image.shape
    rows = np.pad(image, ((r, r), (0, 0), (0, 0)), mode="edge")
    image = sum((k[i] * rows[i : i + h] for i in range(k.size)), np.zeros_like(image))
    cols = np.pad(image, ((0, 0), (r, r), (0, 0)), mode="edge")
    return sum((k[i] * cols[:, i : i + w] for i in range(k.size)), np.zeros_like(image))


def render_styled_frames(spec: ClipSpec, cfg: RenderConfig, look: Look) -> np.ndarray:
    """All frames of a clip in its look: uint8 (T, H, W, 3)."""
    bg = styled_background(spec, cfg, look)
    rng = np.random.default_rng([spec.noise_seed, 6])
    flicker_hz, flicker_phase = float(rng.uniform(0.1, 0.6)), float(rng.uniform(0, 2 * math.pi))
    frames = np.empty((cfg.num_frames, cfg.height, cfg.width, 3), dtype=np.uint8)
    for k in range(cfg.num_frames):
        t = k / cfg.fps
        canvas = bg.copy()
        for s in spec.visible_sources:
            kind, cx, cy, radius, colour, sx, sy, angle = glyph_pose(spec, s, t, cfg)
            colour = jitter_colour(colour, look)
            draw_styled_glyph(canvas, kind, cx, cy, radius, colour, sx, sy, angle, look)
        if look.blur > 0:
            canvas = _blur(canvas, look.blur)
        gain = look.exposure * (
            1 + look.flicker * math.sin(2 * math.pi * flicker_hz * t + flicker_phase)
        )
        canvas = np.float32(255.0) * (np.clip(canvas * np.float32(gain / 255.0), 0, 1)) ** (
            np.float32(look.gamma)
        )
        if look.noise > 0:  # sensor noise: fresh every frame, seeded by the frame
            noise_rng = np.random.default_rng([spec.noise_seed, 9, k])
            noise = noise_rng.standard_normal(size=canvas.shape, dtype=np.float32)
            canvas += np.float32(look.noise) * noise
        frames[k] = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return frames
