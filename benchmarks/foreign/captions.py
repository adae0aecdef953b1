"""This corpus's own caption grammar, written from the world's description alone.

Truthful per kind: a visual caption names only what is on screen (shapes, colours, sizes, motion,
rate of visible events, light or dark scene); an audio caption only what is heard (sounds, pitch,
rate, loudness of the engine, the background noise); an audiovisual caption both, and says which
visible thing is mute and which sound has no visible source.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from benchmarks.foreign.world import ClipPlan, Source

COLOUR_WORDS = {
    "red": ("red", "crimson", "scarlet"),
    "green": ("green", "emerald", "lime-green"),
    "blue": ("blue", "azure", "cobalt"),
    "yellow": ("yellow", "golden", "lemon-yellow"),
    "white": ("white", "snow-white", "pale white"),
    "purple": ("purple", "violet", "plum-coloured"),
}
SIZE_WORDS = {"small": ("small", "little", "compact"), "large": ("large", "big", "oversized")}
PITCH_WORDS = {"small": ("high", "shrill", "high-pitched"), "large": ("low", "deep", "bass")}
SCENE_WORDS = {
    "day": ("in daylight", "against a bright backdrop", "on a light background", "by day"),
    "night": ("at night", "against a dark backdrop", "on a dark background", "after dark"),
}
AMBIENCE_WORDS = {
    "quiet": ("in an otherwise silent room", "with no background noise", "in near silence"),
    "rain": ("with rain pattering behind it", "over steady rainfall", "amid falling rain"),
    "wind": ("with wind gusting behind it", "over a blowing wind", "amid gusts of wind"),
}
# What is seen: the glyph's name and what it does at an event.
SHAPE_NOUNS = {
    "ball": ("ball", "round ball", "bouncy ball"),
    "bell": ("bell", "triangular bell", "bell icon"),
    "drum": ("drum", "square drum", "drum block"),
    "bird": ("bird", "star-shaped bird", "bird icon"),
    "clock": ("clock", "cross-shaped clock", "clock marker"),
    "engine": ("engine", "long engine bar", "motor block"),
    "siren": ("siren", "ring-shaped siren", "siren ring"),
}
SEEN_ACTIONS = {
    "ball": ("bounces", "keeps landing on the ground", "rebounds off the floor"),
    "bell": ("flashes", "lights up", "sparkles"),
    "drum": ("squashes down", "flattens", "compresses"),
    "bird": ("flaps", "puffs up", "pulses"),
    "clock": ("turns a notch", "rotates step by step", "steps round"),
    "siren": ("blinks", "switches between bright and dim", "flickers"),
}
SEEN_RATE = {
    "slow": ("slowly", "about once a second", "at an unhurried pace"),
    "fast": ("rapidly", "several times a second", "at a quick pace"),
}
ENGINE_MOTION = {
    "slow": ("crawls", "creeps", "rolls slowly"),
    "fast": ("speeds", "races", "zooms"),
}
MOTION_WORDS = {
    "left-to-right": ("moving rightward", "travelling to the right", "heading right"),
    "right-to-left": ("moving leftward", "travelling to the left", "heading left"),
    "still": ("staying in one spot", "holding still", "standing in place"),
}
# What is heard.
SOUND_NOUNS = {
    "ball": ("thuds", "dull knocks", "muffled thumps"),
    "bell": ("dings", "chimes", "bell strikes"),
    "drum": ("booms", "drum hits", "falling thumps"),
    "bird": ("chirps", "tweets", "rising whistles"),
    "clock": ("ticks", "clicks", "tiny clicks"),
}
HEARD_RATE = {
    "slow": ("slowly", "about once a second", "at a relaxed pace", "sparsely"),
    "fast": ("quickly", "in rapid succession", "several times a second", "in a busy stream"),
}
ENGINE_SOUND = {
    "slow": ("a soft engine hum", "a faint motor drone", "a gentle engine buzz"),
    "fast": ("a loud engine hum", "a roaring motor drone", "a strong engine buzz"),
}
SIREN_SOUND = {
    "slow": ("a siren slowly switching between two tones", "a slow two-tone siren"),
    "fast": ("a siren flipping rapidly between two tones", "a fast two-tone siren"),
}
AV_ACTIONS = {
    "ball": ("bounces and thuds at every landing", "thumps each time it hits the floor"),
    "bell": ("flashes with every ding", "lights up as it chimes"),
    "drum": ("squashes with each boom", "flattens on every drum hit"),
    "bird": ("flaps as it chirps", "pulses with every tweet"),
    "clock": ("turns a notch at each tick", "steps round with every click"),
    "siren": ("blinks at each change of tone", "flickers as its two tones alternate"),
}

Pick = Callable[[tuple[str, ...]], str]


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _thing(s: Source, pick: Pick) -> str:
    return _article(f"{pick(SIZE_WORDS[s.size])} {pick(COLOUR_WORDS[s.colour])} "
                    f"{pick(SHAPE_NOUNS[s.kind])}")  # fmt: skip


def _seen(s: Source, pick: Pick) -> str:
    if s.kind == "engine":
        way = "rightward" if s.direction == "left-to-right" else "leftward"
        return f"{_thing(s, pick)} {pick(ENGINE_MOTION[s.tempo])} {way} across the frame"
    return (f"{_thing(s, pick)} {pick(SEEN_ACTIONS[s.kind])} {pick(SEEN_RATE[s.tempo])} "
            f"while {pick(MOTION_WORDS[s.direction])}")  # fmt: skip


def _heard(s: Source, pick: Pick) -> str:
    if s.kind == "engine":
        pitch = pick(PITCH_WORDS[s.size])
        return (
            pick(ENGINE_SOUND[s.tempo])
            .replace("engine", f"{pitch} engine", 1)
            .replace("motor", f"{pitch} motor", 1)
        )
    if s.kind == "siren":
        return f"{pick(SIREN_SOUND[s.tempo])} in a {pick(PITCH_WORDS[s.size])} register"
    return f"{pick(PITCH_WORDS[s.size])} {pick(SOUND_NOUNS[s.kind])} {pick(HEARD_RATE[s.tempo])}"


def _both(s: Source, pick: Pick) -> str:
    if s.kind == "engine":
        return f"{_thing(s, pick)} {pick(ENGINE_MOTION[s.tempo])} across, giving {_heard(s, pick)}"
    rate = pick(SEEN_RATE[s.tempo])
    return (f"{_thing(s, pick)} {pick(MOTION_WORDS[s.direction])} {pick(AV_ACTIONS[s.kind])}, "
            f"{rate}, in a {pick(PITCH_WORDS[s.size])} voice")  # fmt: skip


def _join(parts: list[str], pick: Pick) -> str:
    if len(parts) == 1:
        return parts[0]
    return f"{pick((' and', '; meanwhile,', ', while'))} ".join(parts)


def _visual(plan: ClipPlan, pick: Pick, form: int) -> str:
    seen = [_seen(s, pick) for s in plan.sources if s.visible]
    scene = pick(SCENE_WORDS[plan.scene])
    body = _join(seen, pick)
    return (
        f"{body}, {scene}",
        f"{scene.capitalize()}, {body}",
        f"in this picture {body} {scene}",
        f"on screen, {body}, {scene}",
    )[form]


def _audio(plan: ClipPlan, pick: Pick, form: int) -> str:
    heard = [_heard(s, pick) for s in plan.sources if s.audible]
    amb = pick(AMBIENCE_WORDS[plan.ambience])
    body = _join(heard, pick)
    return (
        f"{body}, {amb}",
        f"you can hear {body} {amb}",
        f"a recording of {body} {amb}",
        f"{amb.capitalize()}, {body}",
    )[form]


def _audiovisual(plan: ClipPlan, pick: Pick, form: int) -> str:
    main = _join([_both(s, pick) for s in plan.sources if s.role == "main"], pick)
    extras = []
    for s in plan.sources:
        if s.role == "silent":
            extras.append(f"{_thing(s, pick)} {pick(('stays mute', 'makes no sound'))}")
        elif s.role == "offscreen":
            where = pick(("heard from out of view", "from something off screen"))
            extras.append(f"{_heard(s, pick)} {where}")
    scene, amb = pick(SCENE_WORDS[plan.scene]), pick(AMBIENCE_WORDS[plan.ambience])
    tail = "".join(f"; {e}" for e in extras)
    return (
        f"{main}, {scene}, {amb}{tail}",
        f"{scene.capitalize()} and {amb}, {main}{tail}",
        f"a clip where {main} {scene} {amb}{tail}",
    )[form]


def captions(plan: ClipPlan, per_kind: int = 4) -> dict[str, list[str]]:
    """`per_kind` distinct captions of each kind; equal for clips with equal attributes and seed
    (timing twins share theirs)."""
    rng = random.Random(plan.caption_seed)

    def pick(options: tuple[str, ...]) -> str:
        return rng.choice(options)

    out: dict[str, list[str]] = {}
    for kind, make, forms in (
        ("visual", _visual, 4),
        ("audio", _audio, 4),
        ("audiovisual", _audiovisual, 3),
    ):
        texts: list[str] = []
        for attempt in range(per_kind * 8):
            text = " ".join(make(plan, pick, attempt % forms).split())
            text = text[0].upper() + text[1:]
            if text not in texts:
                texts.append(text)
            if len(texts) == per_kind:
                break
        out[kind] = texts
    return out
