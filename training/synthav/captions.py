"""Captions of three kinds, as in AVCaps: visual (what is seen), audio (what is heard), audiovisual.

Each phrase has training wordings, wordings reserved for the val split and wordings reserved for
the test split, all three disjoint: text retrieval is measured on phrasings the model never trained
on, and a checkpoint or setting is chosen on other phrasings it never trained on, not on the test
ones. A corpus made with variety also draws from a larger training-only grammar (`extra`
wordings, colour synonyms, more sentence forms); the val and test wordings stay the same and
disjoint from all training ones. Captions are truthful: a visual
caption names only visible sources and visible attributes (colour, size, motion, scene); an audio
caption names only audible sources and audible attributes (pitch, tempo, loudness, ambience).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from training.synthav.world import ClipSpec, Role, Source, SourceSpec

# Which wordings a caption may use: the training grammar, the validation split's reserved wordings,
# or the test split's reserved wordings. The three are disjoint.
Wording = Literal["train", "val", "test"]


@dataclass(frozen=True)
class Words:
    train: tuple[str, ...]
    test: tuple[str, ...]
    extra: tuple[str, ...] = ()  # training wordings used only by a corpus made with variety
    val: tuple[str, ...] = ()  # reserved for the val split: model selection on unseen wordings

    def pick(self, rng: np.random.Generator, wording: Wording, rich: bool = False) -> str:
        if wording == "test":
            return str(rng.choice(self.test))
        if wording == "val":
            return str(rng.choice(self.val))
        return str(rng.choice(self.train + self.extra if rich else self.train))

    @property
    def all(self) -> tuple[str, ...]:
        return self.train + self.test + self.extra + self.val


def _w(train: str, test: str, extra: str = "", val: str = "") -> Words:
    def split(text: str) -> tuple[str, ...]:
        return tuple(text.split("|")) if text else ()

    return Words(split(train), split(test), split(extra), split(val))


# The val column (4th): wordings reserved for the val split, disjoint from train, extra and test.
NOUNS: dict[Source, Words] = {
    Source.BALL: _w("ball|rubber ball", "sphere", "bouncy ball|toy ball|round ball", "orb"),
    Source.BELL: _w("bell|hand bell", "chime", "brass bell|handbell|bell shape", "cowbell"),
    Source.DRUM: _w("drum|tom drum", "tom-tom", "snare drum|hand drum|kettle drum", "bongo"),
    Source.BIRD: _w("bird|songbird", "finch", "sparrow|robin|blackbird", "warbler"),
    Source.CLOCK: _w(
        "clock|wall clock", "timepiece", "alarm clock|ticking clock|clock face", "chronometer"
    ),
    Source.ENGINE: _w("engine|motor", "machine", "car engine|diesel engine|generator", "vehicle"),
    Source.SIREN: _w(
        "siren|warning siren",
        "emergency horn",
        "police siren|fire siren|air-raid siren",
        "klaxon",
    ),
}
# What the glyph is seen doing at each event.
SEEN: dict[Source, Words] = {
    Source.BALL: _w("bounces|hops", "rebounds", "bounds|springs up and down|jumps", "ricochets"),
    Source.BELL: _w("flashes|glints", "sparkles", "lights up|gleams|shines briefly", "twinkles"),
    Source.DRUM: _w("squashes|pulses", "flattens", "squishes|compresses|jolts", "contracts"),
    Source.BIRD: _w(
        "flaps|flutters", "beats its wings", "spreads its wings|twitches|flaps its wings", "flits"
    ),
    Source.CLOCK: _w(
        "turns step by step|rotates in steps",
        "ratchets round",
        "steps around|turns notch by notch|rotates a notch at a time",
        "advances in increments",
    ),
    Source.ENGINE: _w("drives|moves", "travels", "rolls|cruises|glides", "proceeds"),
    Source.SIREN: _w(
        "blinks|flashes on and off",
        "strobes",
        "flickers|pulses on and off|lights up by turns",
        "winks",
    ),
}
# What it is heard doing.
HEARD: dict[Source, Words] = {
    Source.BALL: _w("thuds|thumps", "bumps", "thunks|knocks|pats", "plonks"),
    Source.BELL: _w("dings|rings", "chimes", "tolls|rings out|peals", "jingles"),
    Source.DRUM: _w("booms|is struck", "pounds", "beats|resounds|throbs", "thunders"),
    Source.BIRD: _w("chirps|tweets", "twitters", "peeps|cheeps|sings", "trills"),
    Source.CLOCK: _w("ticks|clicks", "tick-tocks", "tocks|taps|clacks", "clatters"),
    Source.ENGINE: _w("hums|drones", "rumbles", "whirs|buzzes|purrs", "growls"),
    Source.SIREN: _w(
        "wails|alternates between two tones",
        "howls",
        "blares|sounds two notes by turns|wails up and down",
        "shrieks",
    ),
}
SOUND_NOUNS: dict[Source, Words] = {
    Source.BALL: _w("thuds|dull thumps", "bumps", "thunks|knocks", "plonks"),
    Source.BELL: _w("dings|rings", "chimes", "tolls|peals", "jingles"),
    Source.DRUM: _w("booms|drum hits", "pounding beats", "beats|strikes", "thunderous hits"),
    Source.BIRD: _w("chirps|tweets", "twitters", "peeps|cheeps", "trills"),
    Source.CLOCK: _w("ticks|clicks", "tick-tocks", "tocks|taps", "clatters"),
    Source.ENGINE: _w("humming|droning", "rumbling", "whirring|buzzing", "growling"),
    Source.SIREN: _w(
        "wailing tones|two-tone wails",
        "howling tones",
        "blaring tones|two-note calls",
        "shrieking tones",
    ),
}
SIZE_WORDS = {
    "small": _w("small|little", "tiny", "miniature|compact|petite", "diminutive"),
    "large": _w("large|big", "huge", "giant|sizeable|oversized", "enormous"),
}
PITCH_WORDS = {
    "small": _w("high-pitched|high", "shrill", "high-toned|treble|piping", "high-frequency"),
    "large": _w("low|deep", "low-pitched", "low-toned|bassy|deep-voiced", "bass-heavy"),
}
ENGINE_LOUDNESS = {
    "slow": _w("quiet|soft", "faint", "gentle|muted|soft-sounding", "hushed"),
    "fast": _w("loud|roaring", "noisy", "thundering|blaring|powerful", "deafening"),
}
TEMPO_WORDS = {
    "slow": _w(
        "slowly|at a slow pace",
        "unhurriedly",
        "leisurely|at a leisurely pace|every so often",
        "sparsely",
    ),
    "fast": _w(
        "quickly|rapidly", "briskly", "in quick succession|fast|at a fast pace", "hurriedly"
    ),
}
ENGINE_SPEED = {
    "slow": _w(
        "slowly|at a crawl", "unhurriedly", "gently|sluggishly|at a leisurely pace", "lazily"
    ),
    "fast": _w("quickly|at speed", "briskly", "at high speed|swiftly|fast", "hurriedly"),
}
DIRECTION_WORDS = {
    "left-to-right": _w(
        "from left to right|toward the right",
        "rightward",
        "to the right|left to right|across to the right",
        "heading right",
    ),
    "right-to-left": _w(
        "from right to left|toward the left",
        "leftward",
        "to the left|right to left|across to the left",
        "heading left",
    ),
    "still": _w(
        "in place|without moving across",
        "while staying put",
        "on the spot|in one place|without going anywhere",
        "stationary",
    ),
}
SCENE_WORDS = {
    "day": _w(
        "on a bright background|in daylight",
        "by day",
        "against a light backdrop|in bright light|under a daytime sky",
        "in sunlight",
    ),
    "night": _w(
        "on a dark background|at night",
        "after dark",
        "against a dark backdrop|in the dark|under a night sky",
        "by moonlight",
    ),
}
AMBIENCE_WORDS = {
    "quiet": _w(
        "in a quiet room|with no background noise",
        "in silence",
        "in a still room|with nothing else to hear|in a noiseless room",
        "against a silent backdrop",
    ),
    "rain": _w(
        "while rain falls|with rain in the background",
        "amid a downpour",
        "as rain patters|under steady rain|with raindrops pattering",
        "during a rainstorm",
    ),
    "wind": _w(
        "while wind blows|over the sound of wind",
        "in a gusty breeze",
        "as the wind gusts|with wind whooshing|over a blustery wind",
        "in a windstorm",
    ),
}
COLOUR_WORDS = ("red", "green", "blue", "yellow", "white", "purple")
# Training-only colour synonyms (variety): the val and test splits always say the plain colour.
COLOUR_SYNONYMS: dict[str, tuple[str, ...]] = {
    "red": ("crimson", "scarlet"),
    "green": ("emerald", "leaf-green"),
    "blue": ("azure", "cobalt"),
    "yellow": ("golden", "lemon"),
    "white": ("snow-white", "ivory"),
    "purple": ("violet", "plum"),
}

# Templates: {seen} is a visual clause, {heard} an audio clause, {scene}/{amb} trailing phrases.
VISUAL_TEMPLATES = _w(
    "{seen} {scene}|{Scene}, {seen}|in this video {seen} {scene}",
    "footage {scene} in which {seen}|we watch as {seen} {scene}",
    "a video of how {seen} {scene}|{Scene} we can see that {seen}|the picture shows that {seen} "
    "{scene}|here {seen} {scene}|{Seen}, {scene}|on screen, {seen} {scene}",
    "the camera catches how {seen} {scene}|a shot {scene} where {seen}",
)
AUDIO_TEMPLATES = _w(
    "{heard} {amb}|listen as {heard} {amb}|{Amb}, {heard}",
    "in this recording {heard} {amb}|you can hear how {heard} {amb}",
    "the sound of how {heard} {amb}|{Heard}, {amb}|a recording where {heard} {amb}|one hears that "
    "{heard} {amb}|on the soundtrack {heard} {amb}",
    "this audio captures how {heard} {amb}|a sound clip where {heard} {amb}",
)
AV_TEMPLATES = _w(
    "{both} {scene}, {amb}|{Scene}, {both}, {amb}|in this video {both} {scene} {amb}",
    "a clip {scene} in which {both}, {amb}|we see and hear how {both} {scene} {amb}",
    "{Both}, {scene} and {amb}|a video where {both}, {scene}, {amb}|{Scene} and {amb}, {both}|on "
    "screen and on the soundtrack, {both} {scene} {amb}",
    "the camera and microphone catch how {both} {scene} {amb}|a scene {scene} where {both}, {amb}",
)


def _a(phrase: str) -> str:
    """The indefinite article a phrase takes."""
    return f"an {phrase}" if phrase[:1].lower() in "aeiou" else f"a {phrase}"


def _colour(s: SourceSpec, rng: np.random.Generator, wording: Wording, rich: bool) -> str:
    if wording != "train" or not rich:
        return s.colour
    return str(rng.choice((s.colour, *COLOUR_SYNONYMS[s.colour])))


def _seen_clause(
    s: SourceSpec, rng: np.random.Generator, wording: Wording, rich: bool = False
) -> str:
    """'a small red ball bounces quickly from left to right'."""
    size = SIZE_WORDS[s.size].pick(rng, wording, rich)
    tempo = (ENGINE_SPEED if s.kind is Source.ENGINE else TEMPO_WORDS)[s.tempo].pick(
        rng, wording, rich
    )
    direction = DIRECTION_WORDS[s.direction].pick(rng, wording, rich)
    noun = NOUNS[s.kind].pick(rng, wording, rich)
    verb = SEEN[s.kind].pick(rng, wording, rich)
    if not rich or wording != "train":
        return f"{_a(size)} {s.colour} {noun} {verb} {tempo} {direction}"
    colour = _colour(s, rng, wording, rich)
    form = int(rng.integers(3))
    if form == 1:
        return f"{_a(colour)} {noun}, {size}, {verb} {tempo} {direction}"
    if form == 2:
        return f"{_a(size)} {noun} in {colour} {verb} {tempo} {direction}"
    return f"{_a(size)} {colour} {noun} {verb} {tempo} {direction}"


def _heard_clause(
    s: SourceSpec, rng: np.random.Generator, wording: Wording, rich: bool = False
) -> str:
    """'a high-pitched bell dings quickly' or 'high-pitched dings repeat quickly'."""
    pitch = PITCH_WORDS[s.size].pick(rng, wording, rich)
    noun = NOUNS[s.kind].pick(rng, wording, rich)
    if s.kind is Source.ENGINE:
        loud = ENGINE_LOUDNESS[s.tempo].pick(rng, wording, rich)
        return f"{_a(loud)} {pitch} {noun} {HEARD[s.kind].pick(rng, wording, rich)}"
    tempo = TEMPO_WORDS[s.tempo].pick(rng, wording, rich)
    if rich and wording == "train":
        form = int(rng.integers(4))
        if form == 2:
            return f"{_a(noun)} {HEARD[s.kind].pick(rng, wording, rich)} {tempo}, sounding {pitch}"
        if form == 3:
            sound = SOUND_NOUNS[s.kind].pick(rng, wording, rich)
            return f"the {pitch} {sound} of {_a(noun)} come {tempo}"
        first = form == 0
    else:
        first = rng.random() < 0.5
    if first:
        return f"{_a(pitch)} {noun} {HEARD[s.kind].pick(rng, wording, rich)} {tempo}"
    return f"{pitch} {SOUND_NOUNS[s.kind].pick(rng, wording, rich)} from {_a(noun)} repeat {tempo}"


def _both_clause(
    s: SourceSpec, rng: np.random.Generator, wording: Wording, rich: bool = False
) -> str:
    """An audiovisual clause for one source, by its role."""
    seen = _seen_clause(s, rng, wording, rich)
    if s.role is Role.SILENT:
        return f"{seen} silently"
    if s.role is Role.OFFSCREEN:
        return f"{_heard_clause(s, rng, wording, rich)} off screen"
    heard = HEARD[s.kind].pick(rng, wording, rich)
    return (
        f"{seen} and {heard}" if s.kind is not Source.ENGINE else f"{seen} and {heard} as it goes"
    )


def _join(clauses: list[str], rng: np.random.Generator, rich: bool = False) -> str:
    if len(clauses) == 1:
        return clauses[0]
    links = [" while ", " and ", ", as "] + (
        [" whereas ", "; meanwhile ", ", and "] if rich else []
    )
    link = str(rng.choice(links))
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
    spec: ClipSpec, rng: np.random.Generator, n: int, wording: Wording, rich: bool = False
) -> dict[str, list[str]]:
    """Visual, audio and audiovisual captions for one clip (`rich`: the larger training grammar).

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
        clauses = [_seen_clause(s, rng, wording, rich) for s in seen]
        scene = SCENE_WORDS[spec.scene].pick(rng, wording, rich)
        template = VISUAL_TEMPLATES.pick(rng, wording, rich)
        return _fill(template, seen=_join(clauses, rng, rich and wording == "train"), scene=scene)

    def audio() -> str:
        clauses = [_heard_clause(s, rng, wording, rich) for s in heard]
        amb = AMBIENCE_WORDS[ambience].pick(rng, wording, rich)
        template = AUDIO_TEMPLATES.pick(rng, wording, rich)
        return _fill(template, heard=_join(clauses, rng, rich and wording == "train"), amb=amb)

    def audiovisual() -> str:
        clauses = [_both_clause(s, rng, wording, rich) for s in meant]
        scene = SCENE_WORDS[spec.scene].pick(rng, wording, rich)
        amb = AMBIENCE_WORDS[spec.ambience].pick(rng, wording, rich)
        template = AV_TEMPLATES.pick(rng, wording, rich)
        both = _join(clauses, rng, rich and wording == "train")
        return _fill(template, both=both, scene=scene, amb=amb)

    return {
        "visual": _unique(visual, n, rng),
        "audio": _unique(audio, n, rng),
        "audiovisual": _unique(audiovisual, n, rng),
    }
