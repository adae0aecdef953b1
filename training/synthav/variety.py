"""Variety at the source: how one clip looks, sounds and is encoded, drawn per clip.

The world (SYNTHAV.md) fixes what a clip shows and plays; everything it leaves open is drawn here
when `GeneratorConfig(variety=True)`: glyph drawing style, anti-aliasing, background, lighting,
camera noise, blur, frame size and rate, synthesis recipe and timbre, EQ, room, gain, ambience
recipe, sample rate, channels, container and compression. A `Variety` is pure data decided at plan
time from the clip's own seeded generator, so a corpus is the same whichever worker renders a clip.
Off (the default), no clip carries one and rendering is exactly the fixed style.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from training.synthav.world import RenderConfig, Source

if TYPE_CHECKING:
    from training.synthav.world import ClipSpec

GLYPH_STYLES = ("filled", "outline", "filled+outline", "shaded")
BACKGROUNDS = ("flat", "vertical", "diagonal", "texture")
SHORT_SIDES = (96, 112, 128, 144, 160, 192)
ASPECTS = ((1, 1), (4, 3), (16, 9))
FRAME_RATES = (10.0, 12.0, 15.0, 24.0, 25.0)
SAMPLE_RATES = (8_000, 16_000, 24_000, 48_000)
FORMATS = ("mp4", "webm", "mkv")
# Synthesis recipes per source kind (see voices.py); each is a different way to make that sound.
RECIPES: dict[Source, int] = {
    Source.BALL: 3,
    Source.BELL: 2,
    Source.DRUM: 2,
    Source.BIRD: 2,
    Source.CLOCK: 2,
    Source.ENGINE: 2,
    Source.SIREN: 2,
}
AMBIENCE_RECIPES = 2


@dataclass(frozen=True)
class Look:
    """How the pixels are made. Colour jitter is small: a red glyph stays recognisably red."""

    glyph_style: str
    outline: float  # outline width as a fraction of the glyph radius
    antialias: bool
    tilt: float  # static rotation of every glyph, radians
    skew: float  # horizontal shear in glyph units
    background: str
    texture_scale: int  # cells across the short side of a textured background
    vignette: float  # darkening at the corners, 0 = none
    exposure: float  # global gain
    gamma: float
    flicker: float  # depth of a slow lighting drift over the clip
    noise: float  # per-frame camera noise, standard deviation in 8-bit levels
    blur: float  # Gaussian blur sigma in pixels, 0 = sharp
    hue_shift: float  # degrees
    saturation: float  # factor
    value: float  # factor
    crf: int  # encoder quality: higher = more compression artefacts


@dataclass(frozen=True)
class Voice:
    """How the sound is made. Recipes and timbre vary; size ↔ pitch and event times do not."""

    recipes: tuple[int, ...]  # one recipe index per Source, in enum order
    timbre_seed: int
    eq_tilt: float  # spectral slope, in gain-exponent per decade around 1 kHz
    highpass_hz: float
    lowpass_hz: float  # 0 = none; never below 6 kHz, so no source's pitch is cut away
    room_s: float  # reverb decay time (RT60), seconds
    wet: float  # reverb level, 0 = dry
    gain: float
    ambience_recipe: int

    def recipe(self, kind: Source) -> int:
        return self.recipes[list(Source).index(kind)]


@dataclass(frozen=True)
class Variety:
    fps: float
    width: int
    height: int
    sample_rate: int
    stereo: bool
    format: str
    look: Look
    voice: Voice


def _even(x: float) -> int:
    return max(32, round(x / 2) * 2)


def draw_variety(rng: np.random.Generator) -> Variety:
    """One clip's rendering, drawn from its own generator."""
    short = int(rng.choice(SHORT_SIDES))
    aw, ah = ASPECTS[int(rng.integers(len(ASPECTS)))]
    fmt = str(rng.choice(FORMATS))
    look = Look(
        glyph_style=str(rng.choice(GLYPH_STYLES)),
        outline=float(rng.uniform(0.15, 0.3)),
        antialias=bool(rng.random() < 0.7),
        tilt=float(rng.uniform(-0.2, 0.2)),
        skew=float(rng.uniform(-0.2, 0.2)),
        background=str(rng.choice(BACKGROUNDS)),
        texture_scale=int(rng.integers(3, 9)),
        vignette=float(rng.choice([0.0, rng.uniform(0.1, 0.4)])),
        exposure=float(rng.uniform(0.85, 1.15)),
        gamma=float(rng.uniform(0.85, 1.15)),
        flicker=float(rng.choice([0.0, rng.uniform(0.02, 0.08)])),
        noise=float(rng.choice([0.0, rng.uniform(1.0, 6.0)])),
        blur=float(rng.choice([0.0, rng.uniform(0.4, 1.2)])),
        hue_shift=float(rng.uniform(-8.0, 8.0)),
        saturation=float(rng.uniform(0.85, 1.1)),
        value=float(rng.uniform(0.88, 1.08)),
        crf=int(rng.integers(30, 46)) if fmt == "webm" else int(rng.integers(18, 33)),
    )
    voice = Voice(
        recipes=tuple(int(rng.integers(RECIPES[k])) for k in Source),
        timbre_seed=int(rng.integers(2**31)),
        eq_tilt=float(rng.uniform(-0.25, 0.25)),
        highpass_hz=float(rng.choice([0.0, rng.uniform(30.0, 90.0)])),
        lowpass_hz=float(rng.choice([0.0, rng.uniform(6_000.0, 12_000.0)])),
        room_s=float(rng.uniform(0.15, 0.7)),
        wet=float(rng.choice([0.0, rng.uniform(0.05, 0.25)])),
        gain=float(rng.uniform(0.5, 1.0)),
        ambience_recipe=int(rng.integers(AMBIENCE_RECIPES)),
    )
    return Variety(
        fps=float(rng.choice(FRAME_RATES)),
        width=_even(short * aw / ah),
        height=short,
        sample_rate=int(rng.choice(SAMPLE_RATES)),
        stereo=bool(rng.random() < 0.5),
        format=fmt,
        look=look,
        voice=voice,
    )


def clip_render_config(spec: ClipSpec, base: RenderConfig) -> RenderConfig:
    """The render settings of one clip: `base`, or what its variety drew.

    Picture and container follow the clip; sample rate and channels follow the clip whose sounds
    are on the track (a misaligned clip carries its donor's audio exactly as the donor has it).
    """
    heard = spec.audio_clip.variety
    seen = spec.seen_variety
    cfg = base
    if seen is not None:
        cfg = replace(cfg, fps=seen.fps, width=seen.width, height=seen.height, format=seen.format)
    if heard is not None:
        cfg = replace(cfg, sample_rate=heard.sample_rate, stereo=heard.stereo)
    return cfg
