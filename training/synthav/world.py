"""The SynthAV world: its vocabulary, clip specifications and how a corpus is planned.

A plan is pure data (`ClipSpec`s) decided in one process from the seed, so the corpus is the same
however many workers render it. Rendering (`render.py`, `sound.py`) only reads a spec.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from training.synthav.variety import Variety


class Source(StrEnum):
    BALL = "ball"
    BELL = "bell"
    DRUM = "drum"
    BIRD = "bird"
    CLOCK = "clock"
    ENGINE = "engine"
    SIREN = "siren"


class Role(StrEnum):
    MAIN = "main"  # seen and heard
    OFFSCREEN = "offscreen"  # heard, not seen
    SILENT = "silent"  # seen, not heard


COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 90, 230),
    "yellow": (235, 210, 40),
    "white": (250, 250, 250),
    "purple": (150, 60, 200),
}
SIZES = ("small", "large")
TEMPOS = ("slow", "fast")
DIRECTIONS = ("left-to-right", "right-to-left", "still")
SCENES = ("day", "night")
AMBIENCES = ("quiet", "rain", "wind")
SPLITS = ("train", "val", "test")

EVENTS_PER_SECOND = {"slow": 1.0, "fast": 3.0}


@dataclass(frozen=True)
class RenderConfig:
    """How clips are written. Every size is a parameter; the defaults are SYNTHAV.md's."""

    duration_s: float = 6.0
    fps: float = 12.0
    height: int = 128
    width: int = 128
    sample_rate: int = 16_000
    stereo: bool = False
    format: str = "mp4"  # mp4 (h264+aac), webm (vp9+opus), mkv (h264+flac)

    def __post_init__(self) -> None:
        if self.format not in ("mp4", "webm", "mkv"):
            raise ValueError(f"format must be mp4, webm or mkv, not {self.format!r}")
        if self.height % 2 or self.width % 2 or min(self.height, self.width) < 32:
            raise ValueError("height and width must be even and at least 32 (yuv420p video)")
        if not 1.0 <= self.duration_s <= 600.0:
            raise ValueError("duration_s must be between 1 and 600 seconds")
        if not 1.0 <= self.fps <= 60.0:
            raise ValueError("fps must be between 1 and 60")
        if self.sample_rate not in (8_000, 16_000, 24_000, 48_000):
            raise ValueError("sample_rate must be 8000, 16000, 24000 or 48000")

    @property
    def num_frames(self) -> int:
        return round(self.duration_s * self.fps)

    @property
    def num_samples(self) -> int:
        return round(self.duration_s * self.sample_rate)


@dataclass(frozen=True)
class GeneratorConfig:
    clips: int = 200
    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    twin_fraction: float = 0.2  # of the test split, in groups of 4
    heldout_fraction: float = 0.25  # of the test split, forced to hold a held-out combination
    # Of the val split, forced to hold a pair of its own that no train clip holds either
    # (`pick_val_heldout`): so model selection sees what a combination never trained on costs,
    # as the test split's held-out clips do. 0 (the default): val clips hold no pair that
    # training lacks, the corpus of earlier releases. Not the default: its training lacks those
    # pairs too (a fifth of the train clips drawn otherwise, a source with one size); measured
    # from scratch, its text gains and whole-clip losses lay within one training seed's spread
    # and its pooled audio→video R@10 lost beyond it (docs/quality-log.md "A val split with
    # held-out pairs of its own").
    val_heldout_fraction: float = 0.0
    misaligned_fraction: float = 0.1  # of the train split only
    offscreen_p: float = 0.2
    silent_object_p: float = 0.2
    two_sources_p: float = 0.4
    captions_per_kind: int = 3
    render: RenderConfig = field(default_factory=RenderConfig)
    # Off: every clip is drawn, synthesised and worded one fixed way (the corpus of earlier
    # releases, byte for byte). On: each clip draws its own look, sound, size, frame and sample
    # rate, channels, container and a larger training grammar (see variety.py); `render` then
    # gives only the duration.
    variety: bool = False
    # The larger training caption grammar (more sentence forms, synonyms, colour words) on its own,
    # for a corpus whose media stay plain. None: follow `variety`. Captions draw from their own
    # random stream, so the media are the same either way.
    rich_captions: bool | None = None
    # Variety in a dose: this share of the *train* clips draws its own look and sound as `variety`
    # would (drawn per clip from its own random stream); val and test clips, and every other train
    # clip, stay the plain ones byte for byte, so a corpus's own pools measure what they always
    # did. Captions stay plain unless `rich_captions` asks. Ignored when `variety` is on.
    variety_share: float = 0.0
    # What a varied share changes: "all" (look, sound, rates, container) or "sound" (the sound,
    # its sample rate and channels; the picture and container stay plain). Ignored when
    # `variety` is on.
    variety_parts: str = "all"

    @property
    def rich(self) -> bool:
        return self.variety if self.rich_captions is None else self.rich_captions

    def __post_init__(self) -> None:
        if self.clips < 1:
            raise ValueError("clips must be at least 1")
        if self.variety_parts not in ("all", "sound"):
            raise ValueError(f"variety_parts must be 'all' or 'sound', not {self.variety_parts!r}")
        for name in (
            "val_fraction",
            "test_fraction",
            "twin_fraction",
            "heldout_fraction",
            "val_heldout_fraction",
            "misaligned_fraction",
            "offscreen_p",
            "silent_object_p",
            "two_sources_p",
            "variety_share",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        if self.val_fraction + self.test_fraction > 1.0:
            raise ValueError("val_fraction + test_fraction must not exceed 1")
        if self.captions_per_kind < 1:
            raise ValueError("captions_per_kind must be at least 1")


@dataclass(frozen=True)
class SourceSpec:
    kind: Source
    colour: str
    size: str
    tempo: str
    direction: str
    role: Role
    events: tuple[float, ...]  # event onsets in seconds (the engine has none)
    lane: int  # row of the frame it moves in; -1 when off screen
    x_start: float  # horizontal position as a fraction of the width
    x_end: float
    pitch: float  # per-clip pitch jitter, a factor near 1
    motion: tuple[float, float, float] = (0.0, 0.0, 0.0)  # engine speed wobble: depth, Hz, phase

    @property
    def visible(self) -> bool:
        return self.role is not Role.OFFSCREEN

    @property
    def audible(self) -> bool:
        return self.role is not Role.SILENT


@dataclass(frozen=True)
class ClipSpec:
    id: str
    index: int
    split: str
    scene: str
    ambience: str
    sources: tuple[SourceSpec, ...]
    n_lanes: int
    noise_seed: int
    heldout: bool = False
    twin_group: str | None = None
    audio_donor: ClipSpec | None = None  # misaligned: the clip whose audio track this one carries
    variety: Variety | None = None  # how this clip is rendered; None: the fixed style
    # The variety reaches the sound only (`GeneratorConfig.variety_parts`): the picture, its
    # frame rate, size and container stay the fixed style's.
    variety_sound_only: bool = False

    @property
    def seen_variety(self) -> Variety | None:
        """How this clip's picture is drawn and encoded; None: the fixed style."""
        return None if self.variety_sound_only else self.variety

    @property
    def visible_sources(self) -> tuple[SourceSpec, ...]:
        return tuple(s for s in self.sources if s.visible)

    @property
    def audio_clip(self) -> ClipSpec:
        """The clip whose sounds are on this clip's audio track."""
        return self.audio_donor if self.audio_donor is not None else self

    @property
    def audible_sources(self) -> tuple[SourceSpec, ...]:
        return tuple(s for s in self.audio_clip.sources if s.audible)


# ---------------------------------------------------------------------------------------------
# Sampling


def sample_events(rng: np.random.Generator, tempo: str, duration_s: float) -> tuple[float, ...]:
    """Jittered event onsets: a rate like the tempo's, but no two clips share a pattern."""
    mean_gap = 1.0 / EVENTS_PER_SECOND[tempo]
    min_gap = 0.45 * mean_gap
    events: list[float] = []
    t = float(rng.uniform(0.15, 0.15 + mean_gap))
    while t < duration_s - 0.25:
        events.append(round(t, 4))
        t += max(min_gap, mean_gap * float(rng.uniform(0.6, 1.4)))
    if not events:  # a very short clip still gets its one event
        events.append(round(min(0.15, duration_s / 3), 4))
    return tuple(events)


def _sample_positions(
    rng: np.random.Generator, kind: Source, tempo: str, direction: str
) -> tuple[float, float]:
    if direction == "still":
        x = float(rng.uniform(0.25, 0.75))
        return x, x
    # The engine's tempo is its speed: a fast engine covers more ground in the same time.
    span = (
        float(rng.uniform(0.65, 0.8))
        if (kind is not Source.ENGINE or tempo == "fast")
        else float(rng.uniform(0.3, 0.42))
    )
    start = float(rng.uniform(0.1, 0.9 - span))
    end = start + span
    return (start, end) if direction == "left-to-right" else (1.0 - start, 1.0 - end)


def sample_source(
    rng: np.random.Generator,
    kind: Source,
    role: Role,
    duration_s: float,
    forbidden: frozenset[tuple[str, str]] = frozenset(),
    forced: tuple[str, str] | None = None,
) -> SourceSpec:
    """One source with random attributes, avoiding `forbidden` (kind, colour|size) pairs."""
    while True:
        colour = str(rng.choice(list(COLOURS)))
        size = str(rng.choice(SIZES))
        if forced is not None:
            colour = forced[1] if forced[1] in COLOURS else colour
            size = forced[1] if forced[1] in SIZES else size
        if (kind.value, colour) not in forbidden and (kind.value, size) not in forbidden:
            break
    tempo = str(rng.choice(TEMPOS))
    directions = DIRECTIONS[:2] if kind is Source.ENGINE else DIRECTIONS
    direction = str(rng.choice(directions))
    x_start, x_end = _sample_positions(rng, kind, tempo, direction)
    events = () if kind is Source.ENGINE else sample_events(rng, tempo, duration_s)
    motion = (
        (
            float(rng.uniform(0.5, 0.8)),
            float(rng.uniform(0.12, 0.3)),
            float(rng.uniform(0, 2 * math.pi)),
        )
        if kind is Source.ENGINE
        else (0.0, 0.0, 0.0)
    )
    return SourceSpec(
        kind=kind,
        colour=colour,
        size=size,
        tempo=tempo,
        direction=direction,
        role=role,
        events=events,
        lane=0,
        x_start=x_start,
        x_end=x_end,
        pitch=float(rng.uniform(0.94, 1.06)),
        motion=motion,
    )


def retime(rng: np.random.Generator, source: SourceSpec, duration_s: float) -> SourceSpec:
    """The same source with a fresh timing pattern (timing twins differ only in this)."""
    if source.kind is Source.ENGINE:
        depth, _, _ = source.motion
        return replace(
            source,
            motion=(depth, float(rng.uniform(0.12, 0.3)), float(rng.uniform(0, 2 * math.pi))),
        )
    return replace(source, events=sample_events(rng, source.tempo, duration_s))


def pick_heldout(rng: np.random.Generator) -> frozenset[tuple[str, str]]:
    """(source, colour) and (source, size) pairs that never occur in train or val.

    Four colour pairs on four different sources with four different colours, and two size pairs
    on two further sources, so every source keeps most of its colours and one size in training.
    """
    kinds = [Source(k) for k in rng.permutation([s.value for s in Source])]
    colours = list(rng.permutation(list(COLOURS)))
    pairs = {(kinds[i].value, str(colours[i])) for i in range(4)}
    pairs |= {(kinds[4 + i].value, str(rng.choice(SIZES))) for i in range(2)}
    return frozenset(pairs)


def pick_val_heldout(
    rng: np.random.Generator, taken: frozenset[tuple[str, str]]
) -> frozenset[tuple[str, str]]:
    """The val split's own held-out pairs, none of the test split's (`taken`): two (source,
    colour) pairs on two different sources and one (source, size) pair on a source whose sizes
    the test split leaves both in training, so every source keeps four colours or more and one
    size in training."""
    kinds = [Source(k) for k in rng.permutation([s.value for s in Source])]
    pairs: set[tuple[str, str]] = set()
    for kind in kinds[:2]:
        free = [c for c in COLOURS if (kind.value, c) not in taken]
        pairs.add((kind.value, str(rng.choice(free))))
    sized = [k for k in kinds[2:] if not any((k.value, s) in taken for s in SIZES)]
    if sized:
        pairs.add((sized[0].value, str(rng.choice(SIZES))))
    return frozenset(pairs)


def holds_heldout(spec: ClipSpec, heldout: frozenset[tuple[str, str]]) -> bool:
    sources = spec.sources + (spec.audio_donor.sources if spec.audio_donor else ())
    return any(
        (s.kind.value, s.colour) in heldout or (s.kind.value, s.size) in heldout for s in sources
    )
