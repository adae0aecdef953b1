"""Captions of three kinds, as in AVCaps: visual (what is seen), audio (what is heard), audiovisual.

Each phrase has training wordings and wordings reserved for the test split, so text retrieval is
measured on phrasings the model never trained on. Captions are truthful: a visual caption names only
visible sources and visible attributes (colour, size, motion, scene); an audio caption names only
audible sources and audible attributes (pitch, tempo, loudness, ambience).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.synthav.world import ClipSpec, Role, Source, SourceSpec


@dataclass(frozen=True)
class Words:
    train: tuple[str, ...]
    test: tuple[str, ...]

    def pick(self, rng: np.random.Generator, test: bool) -> str:
        return str(rng.choice(self.test if test else self.train))

    @property
    def all(self) -> tuple[str, ...]:
        return self.train + self.test


def _w(train: str, test: str) -> Words:
    return Words(tuple(train.split("|")), tuple(test.split("|")))


NOUNS: dict[Source, Words] = {
    Source.BALL: _w("ball|rubber ball", "sphere"),
    Source.BELL: _w("bell|hand bell", "chime"),
    Source.DRUM: _w("drum|tom drum", "tom-tom"),
    Source.BIRD: _w("bird|songbird", "finch"),
    Source.CLOCK: _w("clock|wall clock", "timepiece"),
    Source.ENGINE: _w("engine|motor", "machine"),
    Source.SIREN: _w("siren|warning siren", "emergency horn"),
}
# What the glyph is seen doing at each event.
SEEN: dict[Source, Words] = {
    Source.BALL: _w("bounces|hops", "rebounds"),
    Source.BELL: _w("flashes|glints", "sparkles"),
    Source.DRUM: _w("squashes|pulses", "flattens"),
    Source.BIRD: _w("flaps|flutters", "beats its wings"),
    Source.CLOCK: _w("turns step by step|rotates in steps", "ratchets round"),
    Source.ENGINE: _w("drives|moves", "travels"),
    Source.SIREN: _w("blinks|flashes on and off", "strobes"),
}
# What it is heard doing.
HEARD: dict[Source, Words] = {
    Source.BALL: _w("thuds|thumps", "bumps"),
    Source.BELL: _w("dings|rings", "chimes"),
    Source.DRUM: _w("booms|is struck", "pounds"),
    Source.BIRD: _w("chirps|tweets", "twitters"),
    Source.CLOCK: _w("ticks|clicks", "tick-tocks"),
    Source.ENGINE: _w("hums|drones", "rumbles"),
    Source.SIREN: _w("wails|alternates between two tones", "howls"),
}
SOUND_NOUNS: dict[Source, Words] = {
    Source.BALL: _w("thuds|dull thumps", "bumps"),
    Source.BELL: _w("dings|rings", "chimes"),
    Source.DRUM: _w("booms|drum hits", "pounding beats"),
    Source.BIRD: _w("chirps|tweets", "twitters"),
    Source.CLOCK: _w("ticks|clicks", "tick-tocks"),
    Source.ENGINE: _w("humming|droning", "rumbling"),
    Source.SIREN: _w("wailing tones|two-tone wails", "howling tones"),
}
SIZE_WORDS = {"small": _w("small|little", "tiny"), "large": _w("large|big", "huge")}
PITCH_WORDS = {"small": _w("high-pitched|high", "shrill"), "large": _w("low|deep", "low-pitched")}
ENGINE_LOUDNESS = {"slow": _w("quiet|soft", "faint"), "fast": _w("loud|roaring", "noisy")}
TEMPO_WORDS = {
    "slow": _w("slowly|at a slow pace", "unhurriedly"),
    "fast": _w("quickly|rapidly", "briskly"),
}
ENGINE_SPEED = {
    "slow": _w("slowly|at a crawl", "unhurriedly"),
    "fast": _w("quickly|at speed", "briskly"),
}
DIRECTION_WORDS = {
    "left-to-right": _w("from left to right|toward the right", "rightward"),
    "right-to-left": _w("from right to left|toward the left", "leftward"),
    "still": _w("in place|without moving across", "while staying put"),
}
SCENE_WORDS = {
    "day": _w("on a bright background|in daylight", "by day"),
    "night": _w("on a dark background|at night", "after dark"),
}
AMBIENCE_WORDS = {
    "quiet": _w("in a quiet room|with no background noise", "in silence"),
    "rain": _w("while rain falls|with rain in the background", "amid a downpour"),
    "wind": _w("while wind blows|over the sound of wind", "in a gusty breeze"),
}
COLOUR_WORDS = ("red", "green", "blue", "yellow", "white", "purple")

# Templates: {seen} is a visual clause, {heard} an audio clause, {scene}/{amb} trailing phrases.
VISUAL_TEMPLATES = _w(
    "{seen} {scene}|{Scene}, {seen}|in this video {seen} {scene}",
    "footage {scene} in which {seen}|we watch as {seen} {scene}",
)
AUDIO_TEMPLATES = _w(
    "{heard} {amb}|listen as {heard} {amb}|{Amb}, {heard}",
    "in this recording {heard} {amb}|you can hear how {heard} {amb}",
)
AV_TEMPLATES = _w(
    "{both} {scene}, {amb}|{Scene}, {both}, {amb}|in this video {both} {scene} {amb}",
    "a clip {scene} in which {both}, {amb}|we see and hear how {both} {scene} {amb}",
)


def _a(phrase: str) -> str:
    """The indefinite article a phrase takes."""
    return f"an {phrase}" if phrase[:1].lower() in "aeiou" else f"a {phrase}"


def _seen_clause(s: SourceSpec, rng: np.random.Generator, test: bool) -> str:
    """'a small red ball bounces quickly from left to right'."""
    size = SIZE_WORDS[s.size].pick(rng, test)
    tempo = (ENGINE_SPEED if s.kind is Source.ENGINE else TEMPO_WORDS)[s.tempo].pick(rng, test)
    direction = DIRECTION_WORDS[s.direction].pick(rng, test)
    noun = NOUNS[s.kind].pick(rng, test)
    verb = SEEN[s.kind].pick(rng, test)
    return f"{_a(size)} {s.colour} {noun} {verb} {tempo} {direction}"


def _heard_clause(s: SourceSpec, rng: np.random.Generator, test: bool) -> str:
    """'a high-pitched bell dings quickly' or 'high-pitched dings repeat quickly'."""
    pitch = PITCH_WORDS[s.size].pick(rng, test)
    noun = NOUNS[s.kind].pick(rng, test)
    if s.kind is Source.ENGINE:
        loud = ENGINE_LOUDNESS[s.tempo].pick(rng, test)
        return f"{_a(loud)} {pitch} {noun} {HEARD[s.kind].pick(rng, test)}"
    tempo = TEMPO_WORDS[s.tempo].pick(rng, test)
    if rng.random() < 0.5:
        return f"{_a(pitch)} {noun} {HEARD[s.kind].pick(rng, test)} {tempo}"
    return f"{pitch} {SOUND_NOUNS[s.kind].pick(rng, test)} from {_a(noun)} repeat {tempo}"


def _both_clause(s: SourceSpec, rng: np.random.Generator, test: bool) -> str:
    """An audiovisual clause for one source, by its role."""
    seen = _seen_clause(s, rng, test)
    if s.role is Role.SILENT:
        return f"{seen} silently"
    if s.role is Role.OFFSCREEN:
        return f"{_heard_clause(s, rng, test)} off screen"
    heard = HEARD[s.kind].pick(rng, test)
    return (
        f"{seen} and {heard}" if s.kind is not Source.ENGINE else f"{seen} and {heard} as it goes"
    )


def _join(clauses: list[str], rng: np.random.Generator) -> str:
    if len(clauses) == 1:
        return clauses[0]
    link = str(rng.choice([" while ", " and ", ", as "]))
    return ", ".join(clauses[:-1]) + link + clauses[-1]


def _fill(template: str, **parts: str) -> str:
    capitalised = {k.capitalize(): v[:1].upper() + v[1:] for k, v in parts.items()}
    text = template.format(**parts, **capitalised)
    return " ".join(text.split()).replace(" ,", ",").strip(" ,")


def _unique(make, n: int, rng: np.random.Generator) -> list[str]:
    out: list[str] = []
    for _ in range(n * 8):
        text = make()
        if text not in out:
            out.append(text)
        if len(out) == n:
            break
    return out


def make_captions(
    spec: ClipSpec, rng: np.random.Generator, n: int, test: bool
) -> dict[str, list[str]]:
    """Visual, audio and audiovisual captions for one clip.

    For a misaligned clip (its audio taken from another clip), visual and audio captions stay true
    to what is seen and heard, while the audiovisual captions describe the clip as it was meant to
    be, like the title of a web video whose sound track was replaced: that is the noise that
    caption-agreement curation must find.
    """
    seen = spec.visible_sources
    heard = spec.audible_sources
    meant = spec.sources  # the clip's own sources, whatever its track carries
    ambience = spec.audio_clip.ambience

    def visual() -> str:
        clauses = [_seen_clause(s, rng, test) for s in seen]
        scene = SCENE_WORDS[spec.scene].pick(rng, test)
        return _fill(VISUAL_TEMPLATES.pick(rng, test), seen=_join(clauses, rng), scene=scene)

    def audio() -> str:
        clauses = [_heard_clause(s, rng, test) for s in heard]
        amb = AMBIENCE_WORDS[ambience].pick(rng, test)
        return _fill(AUDIO_TEMPLATES.pick(rng, test), heard=_join(clauses, rng), amb=amb)

    def audiovisual() -> str:
        clauses = [_both_clause(s, rng, test) for s in meant]
        scene = SCENE_WORDS[spec.scene].pick(rng, test)
        amb = AMBIENCE_WORDS[spec.ambience].pick(rng, test)
        return _fill(AV_TEMPLATES.pick(rng, test), both=_join(clauses, rng), scene=scene, amb=amb)

    return {
        "visual": _unique(visual, n, rng),
        "audio": _unique(audio, n, rng),
        "audiovisual": _unique(audiovisual, n, rng),
    }
