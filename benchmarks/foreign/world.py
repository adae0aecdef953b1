"""What one foreign clip holds: the world's attributes, event times and how it is rendered.

A `ClipPlan` is a pure function of (seed, clip index), so a run can be resumed and a clip
re-rendered. `meta` has exactly the keys and vocabularies of the project's own manifests, so the
oracle ceilings in training/evaluate.py read it the same way.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Any

KINDS = ("ball", "bell", "drum", "bird", "clock", "engine", "siren")
COLOURS = ("red", "green", "blue", "yellow", "white", "purple")
SIZES = ("small", "large")
TEMPI = ("slow", "fast")
DIRECTIONS = ("left-to-right", "right-to-left", "still")
SCENES = ("day", "night")
AMBIENCES = ("quiet", "rain", "wind")
ROLES = ("main", "silent", "offscreen")

# Mean events per second; gaps are jittered ±40% so no two clips share a rhythm.
EVENT_RATE = {"slow": 1.0, "fast": 3.0}
FRAME_RATES = (10.0, 15.0, 24.0, 25.0, 30.0)
SAMPLE_RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000)
# (width, height): even sides for 4:2:0 chroma; square, landscape and portrait.
FRAME_SIZES = (
    (96, 96),
    (128, 128),
    (160, 120),
    (176, 144),
    (192, 108),
    (224, 160),
    (256, 144),
    (120, 160),
    (144, 192),
    (256, 256),
)


@dataclass(frozen=True)
class Format:
    """A container and its codecs, as the ffmpeg CLI names them."""

    name: str
    muxer: str
    suffix: str
    video_codec: str
    audio_codec: str
    # Opus only runs at 48 kHz in practice (decoders always answer 48k), so it pins the rate.
    sample_rate: int | None = None


FORMATS = (
    Format("mp4-h264-aac", "mp4", ".mp4", "libx264", "aac"),
    Format("webm-vp9-opus", "webm", ".webm", "libvpx-vp9", "libopus", 48000),
    Format("webm-vp8-vorbis", "webm", ".webm", "libvpx", "libvorbis"),
    Format("mkv-h264-flac", "matroska", ".mkv", "libx264", "flac"),
    Format("mkv-mpeg4-mp3", "matroska", ".mkv", "mpeg4", "libmp3lame"),
    Format("mov-mjpeg-pcm", "mov", ".mov", "mjpeg", "pcm_s16le"),
    Format("mov-h264-alac", "mov", ".mov", "libx264", "alac"),
)
# mp4 h264/aac is what most footage is; the rest share the remainder.
FORMAT_WEIGHTS = (4, 2, 1, 1, 1, 1, 1)
FORMAT_BY_NAME = {f.name: f for f in FORMATS}


@dataclass(frozen=True)
class Source:
    kind: str
    colour: str
    direction: str
    size: str
    tempo: str
    role: str
    events: tuple[float, ...]
    # Rendering only (not in meta): where the glyph sits and travels, its exact shade and timbre.
    lane: int = 0
    x0: float = 0.5  # horizontal position of a still glyph, as a fraction of the width
    shade: tuple[int, int, int] = (0, 0, 0)
    timbre: float = 1.0  # pitch multiplier within the size's register

    @property
    def visible(self) -> bool:
        return self.role != "offscreen"

    @property
    def audible(self) -> bool:
        return self.role != "silent"


@dataclass(frozen=True)
class Look:
    """What the world leaves open about the picture and the room."""

    filled: bool
    background: str  # "gradient" or "texture"
    palette: tuple[tuple[int, int, int], tuple[int, int, int]]
    gradient_angle: float
    noise: float  # std of per-frame camera noise, 0-255 scale
    reverb: int  # sox reverberance 0-100; 0 means a dry room
    seed: int  # the background texture and camera noise


@dataclass(frozen=True)
class ClipPlan:
    id: str
    duration_s: float
    fps: float
    width: int
    height: int
    sample_rate: int
    channels: int
    format: Format
    crf: int
    scene: str
    ambience: str
    sources: tuple[Source, ...]
    look: Look
    caption_seed: int
    heldout: bool = False
    twin_group: int | None = None
    visible_lanes: int = field(default=1)

    @property
    def media_name(self) -> str:
        return f"{self.id}{self.format.suffix}"

    def meta(self) -> dict[str, Any]:
        count = sum(s.role == "main" for s in self.sources)
        return {
            "generator": "foreign",
            "duration_s": self.duration_s,
            "fps": self.fps,
            "width": self.width,
            "height": self.height,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "scene": self.scene,
            "ambience": self.ambience,
            "count": count,
            "sources": [
                {
                    "kind": s.kind,
                    "colour": s.colour,
                    "direction": s.direction,
                    "size": s.size,
                    "tempo": s.tempo,
                    "role": s.role,
                    "events": list(s.events),
                }
                for s in self.sources
            ],
            "audio": {
                "ambience": self.ambience,
                "sources": [
                    {
                        "kind": s.kind,
                        "size": s.size,
                        "tempo": s.tempo,
                        "role": s.role,
                        "events": list(s.events),
                    }
                    for s in self.sources
                    if s.audible
                ],
            },
            "offscreen": any(s.role == "offscreen" for s in self.sources),
            "silent_object": any(s.role == "silent" for s in self.sources),
            # Only the own train split has borrowed soundtracks; this corpus is test-only.
            "misaligned": False,
            "audio_from": None,
            "heldout": self.heldout,
            "twin_group": self.twin_group,
        }


@dataclass(frozen=True)
class WorldConfig:
    clips: int
    seed: int = 0
    duration_s: float = 6.0
    two_sources_p: float = 0.4
    offscreen_p: float = 0.2
    silent_object_p: float = 0.2
    twin_fraction: float = 0.2
    stereo_p: float = 0.4
    # (kind, colour-or-size) pairs the own train split never shows; clips holding one are flagged.
    heldout_pairs: frozenset[tuple[str, str]] = frozenset()

    def __post_init__(self) -> None:
        if self.clips < 1:
            raise ValueError(f"clips must be at least 1, got {self.clips}")
        if not 1.0 <= self.duration_s <= 60.0:
            raise ValueError(f"duration_s must be within 1-60 s, got {self.duration_s}")
        for name in ("two_sources_p", "offscreen_p", "silent_object_p", "twin_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within 0-1, got {value}")
        for kind, attr in self.heldout_pairs:
            if kind not in KINDS or attr not in (*COLOURS, *SIZES):
                raise ValueError(f"held-out pair ({kind!r}, {attr!r}) is not in the world")


def sample_events(rng: random.Random, tempo: str, duration_s: float) -> tuple[float, ...]:
    """Jittered event times, at least one, none in the last 0.2 s (a sound needs room)."""
    gap = 1.0 / EVENT_RATE[tempo]
    t = rng.uniform(0.1, min(gap, duration_s - 0.3))
    times = []
    while t < duration_s - 0.2:
        times.append(round(t, 4))
        t += gap * rng.uniform(0.6, 1.4)
    return tuple(times)


def _clamp(rgb: tuple[int, ...]) -> tuple[int, int, int]:
    r, g, b = (max(0, min(255, c)) for c in rgb)
    return r, g, b


def _shade(rng: random.Random, colour: str) -> tuple[int, int, int]:
    base = {
        "red": (215, 35, 40),
        "green": (40, 170, 60),
        "blue": (40, 80, 220),
        "yellow": (235, 210, 40),
        "white": (245, 245, 245),
        "purple": (140, 50, 190),
    }[colour]
    return _clamp(tuple(c + rng.randint(-18, 18) for c in base))


def _palette(rng: random.Random, scene: str) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    # Day backgrounds stay below white so a white glyph still shows; night ones stay dark.
    if scene == "day":
        bases = [(165, 195, 225), (205, 195, 160), (180, 180, 185), (175, 205, 180)]
    else:
        bases = [(15, 20, 45), (28, 28, 30), (40, 22, 48), (10, 35, 38)]
    a = _clamp(tuple(c + rng.randint(-12, 12) for c in rng.choice(bases)))
    scale = rng.uniform(0.7, 0.9) if scene == "day" else rng.uniform(1.3, 2.0)
    return a, _clamp(tuple(round(c * scale) for c in a))


def _source(rng: random.Random, kind: str, role: str, cfg: WorldConfig) -> Source:
    tempo = rng.choice(TEMPI)
    # The engine moves across (it has no still pose) and makes no discrete events.
    direction = rng.choice(DIRECTIONS[:2] if kind == "engine" else DIRECTIONS)
    colour = rng.choice(COLOURS)
    events = () if kind == "engine" else sample_events(rng, tempo, cfg.duration_s)
    return Source(
        kind=kind,
        colour=colour,
        direction=direction,
        size=rng.choice(SIZES),
        tempo=tempo,
        role=role,
        events=events,
        x0=rng.uniform(0.25, 0.75),
        shade=_shade(rng, colour),
        timbre=rng.uniform(0.9, 1.12),
    )


def _draw_clip(rng: random.Random, cfg: WorldConfig, clip_id: str) -> ClipPlan:
    kinds = list(KINDS)
    rng.shuffle(kinds)
    count = 2 if rng.random() < cfg.two_sources_p else 1
    roles = ["main"] * count
    if rng.random() < cfg.silent_object_p:
        roles.append("silent")
    if rng.random() < cfg.offscreen_p:
        roles.append("offscreen")
    sources = [_source(rng, kind, role, cfg) for kind, role in zip(kinds, roles, strict=False)]
    visible = [i for i, s in enumerate(sources) if s.visible]
    lanes = list(range(len(visible)))
    rng.shuffle(lanes)
    for lane, i in zip(lanes, visible, strict=True):
        sources[i] = replace(sources[i], lane=lane)
    fmt = rng.choices(FORMATS, weights=FORMAT_WEIGHTS)[0]
    width, height = rng.choice(FRAME_SIZES)
    scene = rng.choice(SCENES)
    look = Look(
        filled=rng.random() < 0.5,
        background=rng.choice(("gradient", "texture")),
        palette=_palette(rng, scene),
        gradient_angle=rng.uniform(0.0, 360.0),
        noise=rng.choice((0.0, rng.uniform(2.0, 9.0))),
        reverb=rng.choice((0, rng.randint(20, 70))),
        seed=rng.randrange(2**31),
    )
    heldout = any(
        (s.kind, s.colour) in cfg.heldout_pairs or (s.kind, s.size) in cfg.heldout_pairs
        for s in sources
    )
    return ClipPlan(
        id=clip_id,
        duration_s=cfg.duration_s,
        fps=rng.choice(FRAME_RATES),
        width=width,
        height=height,
        sample_rate=fmt.sample_rate or rng.choice(SAMPLE_RATES),
        channels=2 if rng.random() < cfg.stereo_p else 1,
        format=fmt,
        crf=rng.randint(20, 32),
        scene=scene,
        ambience=rng.choice(AMBIENCES),
        sources=tuple(sources),
        look=look,
        caption_seed=rng.randrange(2**31),
        heldout=heldout,
        visible_lanes=max(1, len(visible)),
    )


def twin_groups(cfg: WorldConfig) -> int:
    """Groups of 4 timing twins: the first 4 * groups clips."""
    return min(cfg.clips // 4, round(cfg.clips * cfg.twin_fraction / 4))


def plan_clip(cfg: WorldConfig, index: int) -> ClipPlan:
    """Clip `index` of the corpus; twins share everything but their event times."""
    if not 0 <= index < cfg.clips:
        raise IndexError(f"clip {index} is outside 0-{cfg.clips - 1}")
    clip_id = f"foreign{index:06d}"
    groups = twin_groups(cfg)
    if index >= 4 * groups:
        return _draw_clip(random.Random(f"{cfg.seed}:clip:{index}"), cfg, clip_id)
    group = index // 4
    base = _draw_clip(random.Random(f"{cfg.seed}:twins:{group}"), cfg, clip_id)
    timing = random.Random(f"{cfg.seed}:twins:{group}:member:{index % 4}")
    sources = tuple(
        replace(s, events=sample_events(timing, s.tempo, cfg.duration_s)) if s.events else s
        for s in base.sources
    )
    return replace(base, sources=sources, twin_group=group)
