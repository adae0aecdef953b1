"""The pictures: Pillow glyphs over a gradient or textured backdrop, with camera noise.

A visual event is shown on the frame nearest its time (round(t * fps)), so it is never more than
half a frame from the sound, which starts exactly at t.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageDraw

from benchmarks.foreign.world import ClipPlan, Source

RGB = tuple[int, int, int]


def _background(plan: ClipPlan) -> np.ndarray:
    """(H, W, 3) float32 backdrop, fixed for the clip."""
    h, w = plan.height, plan.width
    a, b = (np.asarray(c, dtype=np.float32) for c in plan.look.palette)
    rng = np.random.default_rng(plan.look.seed)
    if plan.look.background == "gradient":
        ang = math.radians(plan.look.gradient_angle)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        proj = (xx / w - 0.5) * math.cos(ang) + (yy / h - 0.5) * math.sin(ang)
        mix = (proj - proj.min()) / max(float(np.ptp(proj)), 1e-6)
    else:
        # Value noise: a coarse random grid blown up smoothly, plus faint fine grain.
        coarse = rng.random((6, 6)).astype(np.float32)
        img = Image.fromarray((coarse * 255).astype(np.uint8)).resize(
            (w, h), Image.Resampling.BICUBIC
        )
        mix = np.asarray(img, dtype=np.float32) / 255.0
        mix = np.clip(mix + rng.normal(0, 0.04, (h, w)).astype(np.float32), 0, 1)
    return a * (1 - mix[..., None]) + b * mix[..., None]


def _since(t: float, events: tuple[float, ...], fps: float) -> float:
    """Seconds since the latest event as shown on screen (quantised to its frame); inf if none."""
    shown = [round(e * fps) / fps for e in events]
    past = [t - s for s in shown if s <= t + 1e-9]
    return min(past) if past else math.inf


def _pulse(since: float, length: float) -> float:
    """1 on an event's frame, fading linearly to 0 over `length` seconds."""
    return max(0.0, 1.0 - since / length) if math.isfinite(since) else 0.0


def _blend(c: RGB, other: RGB, k: float) -> RGB:
    return tuple(round(x * (1 - k) + y * k) for x, y in zip(c, other, strict=True))  # type: ignore[return-value]


def _x(plan: ClipPlan, s: Source, t: float, half_w: float) -> float:
    lo, hi = half_w + 2, plan.width - half_w - 2
    if s.direction == "still":
        return lo + (hi - lo) * s.x0
    progress = t / plan.duration_s
    if s.kind == "engine" and s.tempo == "slow":
        # A slow engine covers half the way in the same time; it starts where it stays in frame.
        progress = 0.25 + 0.5 * progress
    if s.direction == "right-to-left":
        progress = 1 - progress
    return lo + (hi - lo) * progress


def _ball_height(t: float, events: tuple[float, ...], fps: float) -> float:
    """0 at each floor contact, a parabola between them (frame-quantised contacts)."""
    hits = [round(e * fps) / fps for e in events]
    gap = (hits[-1] - hits[0]) / max(1, len(hits) - 1) if len(hits) > 1 else 1.0
    hits = [hits[0] - gap, *hits, hits[-1] + gap]
    for a, b in itertools.pairwise(hits):
        if a <= t <= b:
            return 4 * (t - a) * (b - t) / max((b - a) ** 2, 1e-6)
    return 0.0


def _star(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    pts = []
    for k in range(10):
        rad = r if k % 2 == 0 else r * 0.42
        ang = -math.pi / 2 + k * math.pi / 5
        pts.append((cx + rad * math.cos(ang), cy + rad * math.sin(ang)))
    return pts


def _plus(cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    arm = r * 0.32
    outline = [
        (-arm, -r), (arm, -r), (arm, -arm), (r, -arm), (r, arm), (arm, arm),
        (arm, r), (-arm, r), (-arm, arm), (-r, arm), (-r, -arm), (-arm, -arm),
    ]  # fmt: skip
    ca, sa = math.cos(angle), math.sin(angle)
    return [(cx + x * ca - y * sa, cy + x * sa + y * ca) for x, y in outline]


def _shape(
    d: ImageDraw.ImageDraw, pts: list[tuple[float, float]], colour: RGB, filled: bool, stroke: int
) -> None:
    if filled:
        d.polygon(pts, fill=colour)
    else:
        d.polygon(pts, outline=colour, width=stroke)


def _glyph(d: ImageDraw.ImageDraw, plan: ClipPlan, s: Source, t: float) -> None:
    lane_h = plan.height / plan.visible_lanes
    top = s.lane * lane_h
    r = min(plan.width, lane_h) * (0.12 if s.size == "small" else 0.24)
    cy = top + lane_h / 2
    colour = s.shade
    filled = plan.look.filled
    stroke = max(2, round(r / 4))
    since = _since(t, s.events, plan.fps)
    if s.kind == "engine":
        cx = _x(plan, s, t, 1.6 * r)
        box = [cx - 1.6 * r, cy - 0.45 * r, cx + 1.6 * r, cy + 0.45 * r]
        if filled:
            d.rectangle(box, fill=colour)
        else:
            d.rectangle(box, outline=colour, width=stroke)
        return
    cx = _x(plan, s, t, r * 1.3)
    if s.kind == "ball":
        floor = top + lane_h - 2
        cy = floor - r - _ball_height(t, s.events, plan.fps) * max(0.0, lane_h - 2 * r - 4)
        # A ball is a filled disc in the world; the "outlined" look only rims it.
        rim = _blend(colour, (0, 0, 0), 0.5) if not filled else None
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour, outline=rim, width=stroke)
    elif s.kind == "bell":
        k = _pulse(since, 0.25)
        c = _blend(colour, (255, 255, 220), 0.8 * k)
        pts = [(cx, cy - r), (cx + r, cy + 0.8 * r), (cx - r, cy + 0.8 * r)]
        _shape(d, pts, c, filled, stroke)
        if k > 0:  # sparks: a flash must show on a white bell too
            for j in range(6):
                ang = j * math.pi / 3
                d.line(
                    [
                        (cx + 1.2 * r * math.cos(ang), cy + 1.2 * r * math.sin(ang)),
                        (cx + 1.55 * r * math.cos(ang), cy + 1.55 * r * math.sin(ang)),
                    ],
                    fill=_blend((255, 220, 60), colour, 0.2),
                    width=max(1, stroke // 2),
                )
    elif s.kind == "drum":
        k = _pulse(since, 0.2)
        hw, hh = r * (1 + 0.3 * k), r * (1 - 0.45 * k)
        base = cy + r
        _shape(
            d,
            [(cx - hw, base - 2 * hh), (cx + hw, base - 2 * hh), (cx + hw, base), (cx - hw, base)],
            colour,
            filled,
            stroke,
        )
    elif s.kind == "bird":
        k = _pulse(since, 0.2)
        _shape(d, _star(cx, cy, r * (1 + 0.4 * k)), colour, filled, stroke)
    elif s.kind == "clock":
        steps = sum(1 for e in s.events if round(e * plan.fps) / plan.fps <= t + 1e-9)
        _shape(d, _plus(cx, cy, r, steps * math.pi / 8), colour, filled, stroke)
    elif s.kind == "siren":
        switches = sum(1 for e in s.events if round(e * plan.fps) / plan.fps <= t + 1e-9)
        bg = tuple(round(c) for c in plan.look.palette[0])
        c = colour if switches % 2 == 0 else _blend(colour, bg, 0.65)  # type: ignore[arg-type]
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=c, width=max(3, round(r / 3)))
    else:
        raise ValueError(f"unknown source kind {s.kind!r}")


def frames(plan: ClipPlan) -> Iterator[bytes]:
    """Every frame of the clip as rgb24 bytes, for ffmpeg's rawvideo input."""
    backdrop = _background(plan)
    base = Image.fromarray(np.clip(backdrop, 0, 255).astype(np.uint8))
    noise = np.random.default_rng(plan.look.seed + 1)
    visible = [s for s in plan.sources if s.visible]
    n = round(plan.duration_s * plan.fps)
    for j in range(n):
        t = j / plan.fps
        img = base.copy()
        d = ImageDraw.Draw(img)
        for s in visible:
            _glyph(d, plan, s, t)
        if plan.look.noise > 0:
            arr = np.asarray(img, dtype=np.int16)
            grain = noise.normal(0, plan.look.noise, (*arr.shape[:2], 1)).astype(np.int16)
            img_bytes = np.clip(arr + grain, 0, 255).astype(np.uint8).tobytes()
        else:
            img_bytes = img.tobytes()
        yield img_bytes
