"""What a sentence says of a picture, read from the frozen text tower's words.

The frozen tower's sentence vector (the mean of its token states) blurs what tells most SynthAV
pictures apart: the nearest training-caption centroid of a val-wording caption has the wrong
direction or tempo far more often than the wrong colour (docs/quality-log.md "Where text→video
fails"), and a linear reader of the sentence vector fitted on training wordings names a val
wording's direction in 0.58 of captions (chance 0.37). The token states still hold it: a reader of
each token, its strongest evidence over the sentence kept, names the direction in 0.90, colour and
size in 1.00 (docs/quality-log.md "What a sentence says, read from its words"). The picture's pooled
vector knows these attributes too (a linear probe reads them at 0.97–1.00 on val clips).

So a checkpoint may carry two linear readers fitted after training from the training clips'
metadata (`training.attribute_phase`): the text one over token states, the picture one over the
standardised pooled picture vector, both naming the attribute values (`CLASSES`) of the sources a
clip shows. A text query searching videos then leans toward pictures whose reader says what the
sentence names: for an attribute the policy measured it helps (`SearchPolicy.text_attributes`),
the picture reader's logits of its values, signed by whether the sentence names each
(`directions`), are linear in the pooled picture vector, so the lean is a vector added to the
query's for the picture index (`index.search`): the first pass itself finds the items, at no
cost per item and with no new store in the index. The first pass's best candidates are then
re-ranked by how far the two readers agree on those attributes (`agreement`, where the policy
measured it helps, `SearchPolicy.text_agreement`): the picture reader's probabilities of each
candidate's stored picture vector (`PictureReader`), met with the sentence's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.drift import DRIFT_FEATURES
from models.shape import COLOUR_FEATURES, PART_FEATURES, ROW, kind_chances
from models.timbre import TimbreReader
from models.what_net import SIZES, SOURCES

# The world's attributes of a shown source and their values (shared/SYNTHAV.md), and the scene's.
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "kind": ("ball", "bell", "drum", "bird", "clock", "engine", "siren"),
    "colour": ("red", "green", "blue", "yellow", "white", "purple"),
    "size": ("small", "large"),
    "direction": ("left-to-right", "right-to-left", "still"),
    "tempo": ("slow", "fast"),
    "scene": ("day", "night"),
}
CLASSES: tuple[tuple[str, str], ...] = tuple(
    (name, value) for name, values in ATTRIBUTES.items() for value in values
)
_COLUMN = {c: i for i, c in enumerate(CLASSES)}
# The agreement's floor: one confident disagreement costs log(1e-3), not −∞.
AGREEMENT_FLOOR = 1e-3
# How many of the leaning first pass's best candidates the agreement re-ranks.
AGREEMENT_K = 100
# How many more candidates a text query's agreement finds among every item, where the policy
# measured they help (`SearchPolicy.text_agreement_found`): the items whose `agreement_bound` is
# highest. The first pass ranks by the pooled vectors, which read pictures drawn another way
# poorly, so it leaves out items the glyphs' kinds and colours and the foreground's direction
# would have put first (a `--variety` val split among 800 of its training clips: R@10 0.472
# with the first pass's best 100 alone, 0.550 with every item re-ranked; the bound's best 100
# find 0.549 of it; docs/quality-log.md "Candidates found by what the sentence names").
AGREEMENT_FOUND = 100
# What a text query searching sounds agrees on: the attributes the sound what network names.
HEARD: tuple[str, ...] = ("kind", "size")
# A clip's sources heard at most (shared/SYNTHAV.md: one or two): a kind read in its share of a
# sound's runs is taken as heard at this many times that share (`with_timbre`).
SOURCES_HEARD = 2.0
# What a picture's glyphs are read for from their pixels (`models.shape`,
# `AttributeReaders.glyph_probabilities`): each value's chance, these attributes' in turn.
GLYPH_ATTRIBUTES: tuple[str, ...] = ("kind", "colour")
GLYPH_CLASSES = sum(len(ATTRIBUTES[name]) for name in GLYPH_ATTRIBUTES)
# A value a sentence is read to name (`named`): its reader's probability at least this.
NAMED_AT = 0.5
# The share of the reading by likeness to the training names in a class's logit where the text
# reader has names for it (`AttributeReaders`; the rest the fitted reader's).
WORD_SHARE = 0.5
# The kinds read at a sentence's nouns (`AttributeReaders.noun_kinds`): a second source's noun
# stands at least this many tokens from the first's, and each noun's kind is read from its
# tokens this many either side of it (a name of two words, "wall clock").
NOUN_APART = 3
NOUN_WINDOW = 1


def columns(name: str) -> list[int]:
    """The classes of one attribute."""
    if name not in ATTRIBUTES:
        raise ValueError(f"unknown attribute {name!r}; known: {', '.join(ATTRIBUTES)}")
    return [_COLUMN[(name, v)] for v in ATTRIBUTES[name]]


def shown_labels(meta: Mapping[str, Any]) -> np.ndarray | None:
    """(C,) float32 multi-hot: the attribute values of the sources a SynthAV clip shows (every
    one but an offscreen sound) and its scene; None for a clip without such metadata or naming a
    value outside `CLASSES`."""
    sources = meta.get("sources")
    if not isinstance(sources, list) or not sources:
        return None
    out = np.zeros(len(CLASSES), np.float32)
    for source in sources:
        if not isinstance(source, Mapping) or source.get("role") == "offscreen":
            continue
        for name in ("kind", "colour", "size", "direction", "tempo"):
            column = _COLUMN.get((name, str(source.get(name))))
            if column is None:
                return None
            out[column] = 1.0
    scene = _COLUMN.get(("scene", str(meta.get("scene"))))
    if scene is None:
        return None
    out[scene] = 1.0
    return out


class AttributeReaders(nn.Module):
    """The text reader (a linear map of each unit-length token state; a sentence's logit of a
    class is its strongest token's) and the picture reader (a linear map of the pooled picture
    vector, standardised by the training clips' mean and spread), and whether the trainer fitted
    them.

    The fitted text reader learns the training words; a word it never saw is read by where its
    state happens to fall (val wordings: the kind named in 0.73 of visual captions). So an
    attribute may also be read by likeness (`likeness`): `words` holds the unit-length token
    states of the training grammar's names of its values as the tower reads them in training
    captions (`word_columns`: each one's class), a sentence's likeness to a class is its
    strongest token's cosine to that class's nearest name, and how far each class falls behind
    its attribute's best is made a logit by the class's `word_scale` and `word_offset` (one pair
    per attribute), fitted on captions whose names were swapped for training names the kept ones
    do not hold (`training.attribute_phase`; val wordings: the kind named in 0.84). The two
    readings are averaged (`WORD_SHARE`). Readers without names read as before.

    The likeness takes each kind's strongest token anywhere in the sentence, so a verb or a
    scene word that lies near another kind's names ("ricochets", "moonlight") can outvote an
    unseen noun. So the kinds a sentence names may also be read at its nouns (`noun_kinds`): a
    linear detector of unit token states (`noun`) says where the nouns stand, and each noun's
    kind is the one whose names lie nearest its tokens (docs/quality-log.md "The kinds read at a
    caption's nouns"). What a text query searching sounds agrees on reads the kinds so where the
    policy measured it helps (`SearchPolicy.text_heard_nouns`)."""

    trained: Tensor  # () buffer: 1 once the trainer's attribute phase has fitted them
    picture_mean: Tensor
    picture_scale: Tensor
    words: Tensor  # (P, H) unit-length token states of the training names; (0, H) without
    word_columns: Tensor  # (P,) long: each one's column of `CLASSES`
    word_scale: Tensor  # (C,): the likeness's scale per class (its attribute's)
    word_offset: Tensor  # (C,)
    # The direction read from where the picture's foreground goes (`models.drift`): a linear
    # map of its standardised `DRIFT_FEATURES` to the direction's classes, fitted by the trainer's
    # attribute phase (then `drift_fitted` is 1); a checkpoint from before has none.
    drift_mean: Tensor
    drift_scale: Tensor
    drift_fitted: Tensor
    # The kind read from the glyphs' outlines (`models.shape`): a linear map of a part's
    # standardised `PART_FEATURES` to the kinds' logits (a softmax: one part is one glyph),
    # fitted by the trainer's attribute phase (then `shape_fitted` is 1); a checkpoint from
    # before has none.
    shape_mean: Tensor
    shape_scale: Tensor
    shape_fitted: Tensor
    # And the colour from the same parts' pixels (`models.shape.part_colour`): a linear map of a
    # part's standardised `COLOUR_FEATURES` to the colours' logits, fitted beside it.
    tint_mean: Tensor
    tint_scale: Tensor
    tint_fitted: Tensor
    # The nouns' detector (`noun`: a logit per unit token state) and what the attribute phase
    # calibrated for it: the logit a sentence's strongest token must reach to be read as a noun
    # at all (`noun_found`; below it the sentence names none the detector knows), the logit a
    # second noun must reach (`noun_second`), and the temperature of the softmax that reads a
    # noun's kind from its likeness to the kinds' names (`noun_temperature`); `noun_fitted` 1
    # once fitted. A checkpoint from before has none (it loads unfitted). `noun_lead`: the
    # other rule for the second noun, the least its logit less the first's may be (an
    # unfamiliar word lowers every token's logit alike, so the gap holds where the level does
    # not; NaN where the phase did not calibrate it, a checkpoint from before it).
    noun_found: Tensor
    noun_second: Tensor
    noun_lead: Tensor
    noun_temperature: Tensor
    noun_fitted: Tensor
    # The kinds a sentence says are heard, read from its sound words (`sound`: a linear map of
    # each unit token state to the kinds' logits, a sentence's the strongest token's), fitted by
    # the attribute phase on training sound captions (then `sound_fitted` is 1): the text reader
    # learned visual and audiovisual captions, so a sound caption without a noun it finds
    # ("high tweets repeat") is read by its kinds where the policy measured it helps
    # (`SearchPolicy.text_heard_sound_words`). A checkpoint from before has none.
    sound_fitted: Tensor
    # The size a sentence says is heard, read by likeness as well (`heard_size_logits`): the
    # training grammar's names of a small and a large source, seen ("small", "big") and heard
    # ("high-pitched", "deep"), as the tower reads them in training captions (`pitch_words`,
    # unit length; `pitch_columns`: each one's size column), and the (scale, offset) that make
    # the likeness a logit, calibrated by the attribute phase on sound captions whose pitch word
    # was swapped for another (then `pitch_fitted` is 1). The text reader learned visual and
    # audiovisual captions, which say the size and never the pitch, so it read "a deep drum" as
    # small; what a text query searching sounds agrees on reads the size so (`heard_by_rule`).
    # A checkpoint from before has none.
    pitch_words: Tensor
    pitch_columns: Tensor
    pitch_scale: Tensor
    pitch_offset: Tensor
    pitch_fitted: Tensor

    def __init__(self, text_hidden: int, embed_dim: int) -> None:
        super().__init__()
        self.text = nn.Linear(text_hidden, len(CLASSES))
        self.picture = nn.Linear(embed_dim, len(CLASSES))
        for layer in (self.text, self.picture):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.register_buffer("picture_mean", torch.zeros(embed_dim))
        self.register_buffer("picture_scale", torch.ones(embed_dim))
        self.register_buffer("trained", torch.zeros(()))
        self.register_buffer("words", torch.zeros(0, text_hidden))
        self.register_buffer("word_columns", torch.zeros(0, dtype=torch.long))
        self.register_buffer("word_scale", torch.zeros(len(CLASSES)))
        self.register_buffer("word_offset", torch.zeros(len(CLASSES)))
        self.drift = self._measured("drift", DRIFT_FEATURES, "direction")
        self.shape = self._measured("shape", PART_FEATURES, "kind")
        self.tint = self._measured("tint", COLOUR_FEATURES, "colour")
        # Each sound's kind and size from how it sounds (`models.timbre`), fitted by the trainer's
        # attribute phase; a checkpoint from before has none (it loads unfitted).
        self.timbre = TimbreReader()
        self.noun = nn.Linear(text_hidden, 1)
        nn.init.zeros_(self.noun.weight)
        nn.init.zeros_(self.noun.bias)
        self.register_buffer("noun_found", torch.zeros(()))
        self.register_buffer("noun_second", torch.zeros(()))
        self.register_buffer("noun_lead", torch.full((), float("nan")))
        self.register_buffer("noun_temperature", torch.ones(()))
        self.register_buffer("noun_fitted", torch.zeros(()))
        self.sound = nn.Linear(text_hidden, len(ATTRIBUTES["kind"]))
        nn.init.zeros_(self.sound.weight)
        nn.init.zeros_(self.sound.bias)
        self.register_buffer("sound_fitted", torch.zeros(()))
        self.register_buffer("pitch_words", torch.zeros(0, text_hidden))
        self.register_buffer("pitch_columns", torch.zeros(0, dtype=torch.long))
        self.register_buffer("pitch_scale", torch.ones(()))
        self.register_buffer("pitch_offset", torch.zeros(()))
        self.register_buffer("pitch_fitted", torch.zeros(()))

    def _measured(self, name: str, features: int, attribute: str) -> nn.Linear:
        """A reader of `attribute`'s values from `features` numbers measured on the media (zero
        weights), with its standardisation (`<name>_mean`, `<name>_scale`) and whether the
        attribute phase fitted it (`<name>_fitted`) as buffers."""
        layer = nn.Linear(features, len(ATTRIBUTES[attribute]))
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)
        self.register_buffer(f"{name}_mean", torch.zeros(features))
        self.register_buffer(f"{name}_scale", torch.ones(features))
        self.register_buffer(f"{name}_fitted", torch.zeros(()))
        return layer

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict,
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # the names' number is the checkpoint's; a checkpoint from before them has none
        for name in ("words", "word_columns", "pitch_words", "pitch_columns"):
            key = prefix + name
            if key in state_dict:
                setattr(self, name, getattr(self, name).new_empty(state_dict[key].shape))
        for name in ("words", "word_columns", "word_scale", "word_offset"):
            state_dict.setdefault(prefix + name, getattr(self, name))
        # nor a drift reader: it stays unfitted; nor one over other features than today's (a
        # checkpoint of the whole picture's three numbers alone): left out, unfitted
        drift = state_dict.get(prefix + "drift.weight")
        if drift is not None and tuple(drift.shape) != tuple(self.drift.weight.shape):
            for name in ("drift.weight", "drift.bias", "drift_mean", "drift_scale", "drift_fitted"):
                state_dict.pop(prefix + name, None)
        # nor a shape or colour reader (or one over other numbers than today's): unfitted
        for reader in ("shape", "tint"):
            weight = state_dict.get(prefix + reader + ".weight")
            if weight is not None and tuple(weight.shape) != tuple(
                getattr(self, reader).weight.shape
            ):
                for name in (".weight", ".bias", "_mean", "_scale", "_fitted"):
                    state_dict.pop(prefix + reader + name, None)
        for name, value in (
            ("drift.weight", self.drift.weight),
            ("drift.bias", self.drift.bias),
            ("drift_mean", self.drift_mean),
            ("drift_scale", self.drift_scale),
            ("drift_fitted", self.drift_fitted),
            ("shape.weight", self.shape.weight),
            ("shape.bias", self.shape.bias),
            ("shape_mean", self.shape_mean),
            ("shape_scale", self.shape_scale),
            ("shape_fitted", self.shape_fitted),
            ("tint.weight", self.tint.weight),
            ("tint.bias", self.tint.bias),
            ("tint_mean", self.tint_mean),
            ("tint_scale", self.tint_scale),
            ("tint_fitted", self.tint_fitted),
            ("noun.weight", self.noun.weight),
            ("noun.bias", self.noun.bias),
            ("noun_found", self.noun_found),
            ("noun_second", self.noun_second),
            ("noun_lead", self.noun_lead),
            ("noun_temperature", self.noun_temperature),
            ("noun_fitted", self.noun_fitted),
            ("sound.weight", self.sound.weight),
            ("sound.bias", self.sound.bias),
            ("sound_fitted", self.sound_fitted),
            ("pitch_words", self.pitch_words),
            ("pitch_columns", self.pitch_columns),
            ("pitch_scale", self.pitch_scale),
            ("pitch_offset", self.pitch_offset),
            ("pitch_fitted", self.pitch_fitted),
        ):
            state_dict.setdefault(prefix + name, value)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    @property
    def is_trained(self) -> bool:
        return bool(self.trained.item() > 0)

    @property
    def reads_words(self) -> bool:
        return len(self.words) > 0

    @property
    def reads_drift(self) -> bool:
        """Whether the direction can be read from where a picture's foreground goes."""
        return bool(self.drift_fitted.item() > 0)

    def drift_probabilities(self, features: np.ndarray) -> np.ndarray:
        """(N, 3) chances of each direction (`ATTRIBUTES["direction"]`) from (N,
        `DRIFT_FEATURES`) `models.drift.drift_features`."""
        x = torch.as_tensor(np.asarray(features, np.float32)).reshape(-1, DRIFT_FEATURES)
        with torch.no_grad():
            x = (x.to(self.drift_mean.device) - self.drift_mean) / self.drift_scale
            return torch.sigmoid(self.drift(x)).float().cpu().numpy()

    @property
    def reads_shape(self) -> bool:
        """Whether the kind can be read from the outlines of a picture's glyphs."""
        return bool(self.shape_fitted.item() > 0)

    def part_probabilities(self, parts: np.ndarray) -> np.ndarray:
        """(R, 7) each part's chance of being each kind (`ATTRIBUTES["kind"]`, a softmax) from
        (R, `PART_FEATURES`) `models.shape.part_features`."""
        x = torch.as_tensor(np.asarray(parts, np.float32)).reshape(-1, PART_FEATURES)
        with torch.no_grad():
            x = (x.to(self.shape_mean.device) - self.shape_mean) / self.shape_scale
            return torch.softmax(self.shape(x), dim=-1).float().cpu().numpy()

    @property
    def reads_tint(self) -> bool:
        """Whether the colour can be read from the pixels of a picture's glyphs."""
        return bool(self.tint_fitted.item() > 0)

    def part_colours(self, colours: np.ndarray) -> np.ndarray:
        """(R, 6) each part's chance of being each colour (`ATTRIBUTES["colour"]`, a softmax)
        from (R, `COLOUR_FEATURES`) `models.shape.part_colour`."""
        x = torch.as_tensor(np.asarray(colours, np.float32)).reshape(-1, COLOUR_FEATURES)
        with torch.no_grad():
            x = (x.to(self.tint_mean.device) - self.tint_mean) / self.tint_scale
            return torch.softmax(self.tint(x), dim=-1).float().cpu().numpy()

    def kind_probabilities(self, shapes: np.ndarray) -> np.ndarray | None:
        """(7,) a clip's chance of showing each kind from its `models.shape.glyph_shapes` rows
        (`models.shape.kind_chances`); None where it has none (nothing read: unknown)."""
        rows = np.asarray(shapes, np.float32).reshape(-1, ROW)
        if not len(rows):
            return None
        outline = rows[:, 1 : 1 + PART_FEATURES]
        return kind_chances(self.part_probabilities(outline), rows[:, 0], len(ATTRIBUTES["kind"]))

    def colour_probabilities(self, shapes: np.ndarray) -> np.ndarray | None:
        """(6,) a clip's chance of showing each colour from its `models.shape.glyph_shapes` rows,
        as `kind_probabilities` reads the kind; None where it has none."""
        rows = np.asarray(shapes, np.float32).reshape(-1, ROW)
        if not len(rows):
            return None
        tint = rows[:, 1 + PART_FEATURES :]
        return kind_chances(self.part_colours(tint), rows[:, 0], len(ATTRIBUTES["colour"]))

    def glyph_probabilities(self, shapes: np.ndarray) -> np.ndarray:
        """(`GLYPH_CLASSES`,) a clip's chances of each kind then each colour (`GLYPH_ATTRIBUTES`)
        from its glyphs' rows; NaN for an attribute whose reader is not fitted, and for both
        where the clip has no rows."""
        out = np.full(GLYPH_CLASSES, np.nan, np.float32)
        kinds = len(ATTRIBUTES["kind"])
        if self.reads_shape:
            found = self.kind_probabilities(shapes)
            if found is not None:
                out[:kinds] = found
        if self.reads_tint:
            found = self.colour_probabilities(shapes)
            if found is not None:
                out[kinds:] = found
        return out

    def worded(self) -> tuple[str, ...]:
        """The attributes read by likeness as well, in `ATTRIBUTES`' order."""
        named = {CLASSES[c][0] for c in self.word_columns.tolist()}
        return tuple(name for name in ATTRIBUTES if name in named)

    def set_words(
        self, words: Tensor, word_columns: Tensor, calibration: Mapping[str, tuple[float, float]]
    ) -> None:
        """Keep the training names' (P, H) token states, their (P,) columns, and per attribute
        they name the (scale, offset) that make its likeness a logit (`calibration`)."""
        word_columns = torch.as_tensor(word_columns, dtype=torch.long)
        if words.ndim != 2 or words.shape[1] != self.words.shape[1]:
            raise ValueError(f"words must be (P, {self.words.shape[1]}), got {tuple(words.shape)}")
        if word_columns.shape != (len(words),):
            raise ValueError("one column per word")
        named = {CLASSES[c][0] for c in word_columns.tolist()}
        if named != set(calibration):
            raise ValueError(
                f"a calibration for each attribute named: names {sorted(named)}, "
                f"calibrated {sorted(calibration)}"
            )
        scale, offset = torch.zeros(len(CLASSES)), torch.zeros(len(CLASSES))
        for name, (a, b) in calibration.items():
            scale[columns(name)], offset[columns(name)] = float(a), float(b)
        device = self.words.device
        self.words = F.normalize(words.float(), dim=-1).to(device)
        self.word_columns = word_columns.to(device)
        self.word_scale = scale.to(device)
        self.word_offset = offset.to(device)

    def likeness(self, states: Tensor, mask: Tensor) -> Tensor:
        """(B, L, H) token states and their (B, L) mask → (B, C): per class with names, the
        strongest cosine of a real token to one of its names, less its attribute's best class's
        (0 for the class the sentence is likest; a class without names of an attribute with
        some −2; the classes of attributes without names 0)."""
        per_word = _strongest_cosines(states, mask, self.words)  # (B, P)
        out = torch.zeros(len(states), len(CLASSES), device=states.device)
        for name in self.worded():
            cols = columns(name)
            found = torch.full((len(states), len(cols)), -2.0, device=states.device)
            for k, c in enumerate(cols):
                of = self.word_columns == c
                if bool(of.any()):
                    found[:, k] = per_word[:, of].amax(dim=1)
            out[:, cols] = found - found.amax(dim=1, keepdim=True)
        return out

    def text_logits(self, states: Tensor, mask: Tensor, words: bool = True) -> Tensor:
        """(B, L, H) token states and (B, L) bool mask of real tokens → (B, C) logits
        (`words`: the classes of attributes with names read by likeness as well)."""
        _check_states(states, mask)
        per_token = self.text(F.normalize(states.float(), dim=-1))
        logits = per_token.masked_fill(~mask[..., None], -torch.inf).amax(dim=1)
        if not words or not self.reads_words:
            return logits
        cols = [c for name in self.worded() for c in columns(name)]
        liked = self.word_scale * self.likeness(states, mask) + self.word_offset
        logits = logits.clone()
        logits[:, cols] = (1 - WORD_SHARE) * logits[:, cols] + WORD_SHARE * liked[:, cols]
        return logits

    @property
    def reads_nouns(self) -> bool:
        """Whether the kinds a sentence names can be read at its nouns (`noun_kinds`)."""
        return bool(self.noun_fitted.item() > 0) and "kind" in self.worded()

    @property
    def reads_noun_lead(self) -> bool:
        """Whether the second noun can be counted by its lead rule as well (`noun_lead`)."""
        return self.reads_nouns and bool(torch.isfinite(self.noun_lead).item())

    def set_nouns(
        self, found: float, second: float, temperature: float, lead: float = float("nan")
    ) -> None:
        """Keep what the attribute phase calibrated for the nouns' detector (its weights fitted
        in place) and mark it fitted; `lead` NaN: the second noun has only its own rule."""
        if not temperature > 0:
            raise ValueError(f"the temperature must be positive, got {temperature}")
        for buffer, value in (
            (self.noun_found, found),
            (self.noun_second, second),
            (self.noun_lead, lead),
            (self.noun_temperature, temperature),
            (self.noun_fitted, 1.0),
        ):
            buffer.fill_(float(value))

    def noun_logits(self, states: Tensor, mask: Tensor) -> Tensor:
        """(B, L, H) token states and their (B, L) mask → (B, L): how surely each token is a noun
        of a source (−∞ where the mask has none)."""
        found = self.noun(F.normalize(states.float(), dim=-1))[..., 0]
        return found.masked_fill(~mask, -torch.inf)

    def noun_kinds(
        self, states: Tensor, mask: Tensor, lead: bool = False
    ) -> tuple[Tensor, Tensor, Tensor]:
        """What kinds a sentence names, read at its nouns: (B, 7) the chance each kind
        (`ATTRIBUTES["kind"]`) is named, (B,) bool whether a noun was found at all, and (B,) the
        number of nouns read (1 or 2). The strongest token of the detector (`noun_logits`) is
        the first noun; the strongest at least `NOUN_APART` tokens from it a second where its
        logit reaches `noun_second` (with `lead`: where its logit less the first's reaches
        `noun_lead`). A noun's kind is a softmax at `noun_temperature` of the
        kinds' likeness to its tokens (the strongest cosine of a token within `NOUN_WINDOW` of
        it to one of the kind's names); two nouns name a kind with 1 − (1 − p₁)(1 − p₂). Where
        no token reaches `noun_found` the sentence names no noun the detector knows (a sound
        caption naming only what is heard, "high tiny clicks"): its row is the first token's
        reading all the same, and `found` False says the caller should keep its own."""
        if not self.reads_nouns:
            raise RuntimeError("these readers read no nouns (the attribute phase did not fit them)")
        if lead and not self.reads_noun_lead:
            raise RuntimeError("these readers have no lead rule for the second noun")
        return self._kinds_at(self.noun_reading(states, mask), lead)

    def _kinds_at(self, read: NounReading, lead: bool) -> tuple[Tensor, Tensor, Tensor]:
        """`noun_kinds` of a sentence's `noun_reading`, by the second noun's `lead` rule or not."""
        temperature = self.noun_temperature.clamp(min=1e-4)
        p1 = torch.softmax(read.first_liked / temperature, dim=-1)
        p2 = torch.softmax(read.second_liked / temperature, dim=-1)
        if lead:  # −∞ where no token stands far enough: no second noun
            two = (read.second_logit - read.first_logit) >= self.noun_lead
        else:
            two = read.second_logit >= self.noun_second
        chances = torch.where(two[:, None], 1 - (1 - p1) * (1 - p2), p1)
        return chances, read.first_logit >= self.noun_found, 1 + two.long()

    def noun_reading(self, states: Tensor, mask: Tensor) -> NounReading:
        """What `noun_kinds` reads its kinds from, before its calibration: the first and second
        nouns' logits (`noun_logits`: the strongest token's, and the strongest's at least
        `NOUN_APART` tokens from it, −∞ where none is) and the kinds' likeness to each's window
        (the strongest cosine of a token within `NOUN_WINDOW` of it to one of a kind's names;
        −2 for a kind without names). Reads with the detector as it stands (the attribute phase
        calibrates on it)."""
        _check_states(states, mask)
        logits = self.noun_logits(states, mask)
        positions = torch.arange(logits.shape[1], device=logits.device)
        first_logit, first = logits.max(dim=1)
        near = (positions[None] - first[:, None]).abs() < NOUN_APART
        second_logit, second = logits.masked_fill(near, -torch.inf).max(dim=1)
        unit = F.normalize(states.float(), dim=-1)
        cosine = unit @ self.words.T.to(unit.dtype)  # (B, L, P)
        kinds = columns("kind")
        liked = torch.full((*cosine.shape[:2], len(kinds)), -2.0, device=cosine.device)
        for k, c in enumerate(kinds):
            of = self.word_columns == c
            if bool(of.any()):
                liked[..., k] = cosine[..., of].amax(dim=-1)
        liked = liked.masked_fill(~mask[..., None], -2.0)
        window = 2 * NOUN_WINDOW + 1
        liked = F.max_pool1d(liked.transpose(1, 2), window, stride=1, padding=NOUN_WINDOW)
        liked = liked.transpose(1, 2)  # (B, L, 7): the strongest of each token's window
        rows = torch.arange(len(states), device=states.device)
        return NounReading(first_logit, second_logit, liked[rows, first], liked[rows, second])

    def heard_probabilities(
        self, states: Tensor, mask: Tensor, probabilities: Tensor, lead: bool = False
    ) -> Tensor:
        """(B, C) probabilities of a sentence (`text_logits`' sigmoid, as the caller already has
        them) with the kind's columns read at its nouns (`noun_kinds`, its second noun by the
        `lead` rule or not, kept within [1e-6, 1 − 1e-6]) where it has one, and the size read
        as heard where these readers read it (`_with_heard_size`); the rest as given."""
        probabilities = self._with_heard_size(states, mask, probabilities)
        return self._heard(self.noun_kinds(states, mask, lead), probabilities)

    def heard_by_rule(
        self, states: Tensor, mask: Tensor, probabilities: Tensor
    ) -> dict[tuple[bool, bool], Tensor]:
        """`heard_probabilities` by each rule of the second noun these readers have (False: its
        own logit; True: its lead, where calibrated) and, where they read sound words, each
        again with the kinds of a sentence whose nouns are not found read from its sound words
        (`sound_probabilities`) rather than by the text reader: keyed (lead, sound words), from
        one `noun_reading` of the states. Every rule reads the size as heard where these readers
        read it (`_with_heard_size`)."""
        if not self.reads_nouns:
            raise RuntimeError("these readers read no nouns (the attribute phase did not fit them)")
        probabilities = self._with_heard_size(states, mask, probabilities)
        read = self.noun_reading(states, mask)
        rules = (False, True) if self.reads_noun_lead else (False,)
        sounds = self.sound_probabilities(states, mask) if self.reads_sound_words else None
        out: dict[tuple[bool, bool], Tensor] = {}
        for lead in rules:
            kinds = self._kinds_at(read, lead)
            out[lead, False] = self._heard(kinds, probabilities)
            if sounds is not None:
                out[lead, True] = self._heard(kinds, probabilities, sounds)
        return out

    @property
    def reads_sound_words(self) -> bool:
        """Whether the kinds a sentence says are heard can be read from its sound words
        (`sound_probabilities`), where its nouns are not found."""
        return self.reads_nouns and bool(self.sound_fitted.item() > 0)

    def sound_probabilities(self, states: Tensor, mask: Tensor) -> Tensor:
        """(B, L, H) token states and their (B, L) mask → (B, 7) each kind's chance of being
        heard, from the sentence's sound words (`sound`, its strongest token's logit)."""
        _check_states(states, mask)
        per_token = self.sound(F.normalize(states.float(), dim=-1))
        return torch.sigmoid(per_token.masked_fill(~mask[..., None], -torch.inf).amax(dim=1))

    @property
    def reads_pitch(self) -> bool:
        """Whether the size a sentence says is heard is read by likeness as well
        (`heard_size_logits`)."""
        return bool(self.pitch_fitted.item() > 0) and len(self.pitch_words) > 0

    def set_pitch_words(
        self, words: Tensor, word_columns: Tensor, scale: float, offset: float
    ) -> None:
        """Keep the (P, H) token states of the names of a small and a large source, their (P,)
        size columns (both sizes named), and the (scale, offset) of `heard_size_logits`; mark
        them fitted."""
        word_columns = torch.as_tensor(word_columns, dtype=torch.long)
        if words.ndim != 2 or words.shape[1] != self.pitch_words.shape[1]:
            raise ValueError(
                f"words must be (P, {self.pitch_words.shape[1]}), got {tuple(words.shape)}"
            )
        if word_columns.shape != (len(words),):
            raise ValueError("one column per word")
        if set(word_columns.tolist()) != set(columns("size")):
            raise ValueError("the names must name both sizes, and nothing else")
        device = self.pitch_words.device
        self.pitch_words = F.normalize(words.float(), dim=-1).to(device)
        self.pitch_columns = word_columns.to(device)
        self.pitch_scale.fill_(float(scale))
        self.pitch_offset.fill_(float(offset))
        self.pitch_fitted.fill_(1.0)

    def size_likeness(self, states: Tensor, mask: Tensor) -> Tensor:
        """(B, L, H) token states and their (B, L) mask → (B, 2): per size, the strongest
        cosine of a real token to one of its names (`pitch_words`), less the likelier size's."""
        per_word = _strongest_cosines(states, mask, self.pitch_words)  # (B, P)
        found = torch.stack(
            [per_word[:, self.pitch_columns == c].amax(dim=1) for c in columns("size")], dim=1
        )
        return found - found.amax(dim=1, keepdim=True)

    def heard_size_logits(self, states: Tensor, mask: Tensor) -> Tensor:
        """(B, 2) logits of each size a sentence says is heard, read by likeness to the names
        of small and large sources seen and heard (`size_likeness`, calibrated)."""
        _check_states(states, mask)
        return self.pitch_scale * self.size_likeness(states, mask) + self.pitch_offset

    def _with_heard_size(self, states: Tensor, mask: Tensor, probabilities: Tensor) -> Tensor:
        """`probabilities` ((B, C), the text reader's) with the size's columns read as heard
        where these readers read it by likeness (`reads_pitch`): the fitted reader's logit and
        the likeness's, `WORD_SHARE` of it, as the kind and tempo are read; as given otherwise."""
        if not self.reads_pitch:
            return probabilities
        size = torch.as_tensor(columns("size"), device=probabilities.device)
        fitted = torch.logit(probabilities[:, size].float().clamp(1e-6, 1 - 1e-6))
        liked = self.heard_size_logits(states, mask).to(fitted.device)
        out = probabilities.clone()
        mixed = (1 - WORD_SHARE) * fitted + WORD_SHARE * liked
        out[:, size] = torch.sigmoid(mixed).to(out.dtype)
        return out

    @staticmethod
    def _heard(
        kinds: tuple[Tensor, Tensor, Tensor], probabilities: Tensor, otherwise: Tensor | None = None
    ) -> Tensor:
        """`probabilities` with the kind's columns replaced by `noun_kinds`' chances on the rows
        where a noun was found, and by `otherwise`'s (B, 7) chances on the others where given
        (both kept within [1e-6, 1 − 1e-6])."""
        chances, found, _ = kinds
        chances = chances.clamp(1e-6, 1 - 1e-6).to(probabilities.device, probabilities.dtype)
        out = probabilities.clone()
        kind_columns = torch.as_tensor(columns("kind"), device=probabilities.device)
        found = found.to(probabilities.device)
        rest = out[:, kind_columns]
        if otherwise is not None:
            rest = otherwise.clamp(1e-6, 1 - 1e-6).to(probabilities.device, probabilities.dtype)
        out[:, kind_columns] = torch.where(found[:, None], chances, rest)
        return out

    def picture_logits(self, pooled: Tensor) -> Tensor:
        """(N, D) pooled picture vectors → (N, C) logits."""
        return self.picture((pooled.float() - self.picture_mean) / self.picture_scale)

    def picture_reader(self) -> PictureReader:
        """The picture reader with its standardisation folded in, as arrays (`index.search`
        reads candidates' stored picture vectors with it)."""
        weight = (self.picture.weight / self.picture_scale).detach().float().cpu()
        bias = self.picture.bias.detach().float().cpu() - weight @ self.picture_mean.float().cpu()
        return PictureReader(weight.numpy(), bias.numpy())

    def directions(self, probabilities: Tensor, names: Sequence[str] = tuple(ATTRIBUTES)) -> Tensor:
        """(B, C) text probabilities → (B, len(names), D): per attribute, the direction in the
        pooled picture space along which the picture reader's logits of its values grow, each
        signed by whether the sentence names it (2p − 1) and divided by the number of classes: a
        picture's score along it is that sum of logits up to a constant of the sentence's, so
        adding it to a query vector leans the search toward pictures the reader says show what
        the sentence names."""
        signed = (2.0 * probabilities.float() - 1.0) / len(CLASSES)
        weight = self.picture.weight / self.picture_scale  # (C, D): logit = weight @ v + const
        out = [signed[:, columns(name)] @ weight[columns(name)] for name in names]
        return torch.stack(out, dim=1)


def _strongest_cosines(states: Tensor, mask: Tensor, words: Tensor) -> Tensor:
    """(B, L, H) token states and their (B, L) mask, (P, H) unit-length names → (B, P): each
    name's strongest cosine to a real token."""
    unit = F.normalize(states.float(), dim=-1)
    cosine = (unit @ words.T.to(unit.dtype)).masked_fill(~mask[..., None], -2.0)
    return cosine.amax(dim=1)


def _check_states(states: Tensor, mask: Tensor) -> None:
    """Raise unless (B, L, H) token states come with a (B, L) mask holding a token each."""
    if states.ndim != 3 or mask.shape != states.shape[:2]:
        raise ValueError(
            f"states must be (B, L, H) with a (B, L) mask, got {tuple(states.shape)} and "
            f"{tuple(mask.shape)}"
        )
    if not bool(mask.any(dim=1).all()):
        raise ValueError("every sentence needs at least one token")


def lean(directions: Mapping[str, np.ndarray], names: Sequence[str], weight: float) -> np.ndarray:
    """The vector a text query's picture-index vector gains: `weight` × the sum of the named
    attributes' `directions` (`AttributeReaders.directions`, one (D,) each)."""
    missing = [n for n in names if n not in directions]
    if missing:
        raise ValueError(f"the query has no direction for {missing}")
    total = np.zeros_like(next(iter(directions.values())), dtype=np.float32)
    for name in names:
        total += np.asarray(directions[name], np.float32)
    return (weight * total).astype(np.float32)


class NounReading(NamedTuple):
    """A sentence's nouns as `AttributeReaders.noun_reading` reads them, per sentence."""

    first_logit: Tensor  # (B,)
    second_logit: Tensor  # (B,): −∞ where no token stands far enough from the first
    first_liked: Tensor  # (B, 7): each kind's likeness to the first noun's window
    second_liked: Tensor  # (B, 7)


@dataclass(frozen=True)
class PictureReader:
    """The picture reader as arrays: a pooled picture vector's logits are `weight` @ v + `bias`
    (`AttributeReaders.picture_reader`)."""

    weight: np.ndarray  # (C, D)
    bias: np.ndarray  # (C,)

    def probabilities(self, vectors: np.ndarray) -> np.ndarray:
        """(N, D) pooled picture vectors → (N, C) probabilities."""
        logits = np.asarray(vectors, np.float32) @ self.weight.T + self.bias
        return (1.0 / (1.0 + np.exp(-np.clip(logits, -60.0, 60.0)))).astype(np.float32)


@dataclass(frozen=True)
class AttributeReading:
    """What a sentence names (the text reader's (C,) probabilities) and the reader that says what
    a candidate's picture shows: what a text query's re-rank by the readers' agreement needs.
    `heard`: the same probabilities with the kinds read at the sentence's nouns and the size
    read as heard where the readers read it (`AttributeReaders.heard_probabilities`), which a
    search among sounds agrees on where its policy says so (`SearchPolicy.text_heard_nouns`);
    None where the readers read no nouns.
    `heard_lead`: the same with the second noun counted by its lead (`noun_lead`), read where
    the policy says so (`SearchPolicy.text_heard_lead`); None where the readers have no such
    rule. `heard_sounds`, `heard_lead_sounds`: `heard` and `heard_lead` with the kinds of a
    sentence whose nouns are not found read from its sound words
    (`AttributeReaders.sound_probabilities`), where the policy says so
    (`SearchPolicy.text_heard_sound_words`); None where the readers read none."""

    probabilities: np.ndarray  # (C,)
    picture: PictureReader
    heard: np.ndarray | None = None  # (C,)
    heard_lead: np.ndarray | None = None  # (C,)
    heard_sounds: np.ndarray | None = None  # (C,)
    heard_lead_sounds: np.ndarray | None = None  # (C,)


def agreement(text: Any, picture: Any, names: Sequence[str]) -> Any:
    """How far a sentence's and pictures' readers agree on the attributes `names`: per class of
    each, the log of the chance the two say the same (both name it or neither,
    t·p + (1 − t)(1 − p), floored at `AGREEMENT_FLOOR`), averaged over those classes. `text`
    (..., C) and `picture` (..., C) probabilities broadcast against each other (numpy arrays or
    torch tensors alike); the result has their broadcast shape without C. A log, not the
    chance itself: one confident disagreement weighs more than several near-misses (val, the
    shipped checkpoint's lean re-ranked: R@1 0.219 with the chance, 0.228 with its log)."""
    if not names:
        raise ValueError("agreement needs at least one attribute")
    cols = [c for name in names for c in columns(name)]
    t, p = text[..., cols], picture[..., cols]
    same = t * p + (1 - t) * (1 - p) + AGREEMENT_FLOOR
    logged = torch.log(same) if isinstance(same, Tensor) else np.log(same)
    return logged.mean(-1)


def agreement_logs(pictures: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """(N, K + 1) float32 for (N, C) picture probabilities and the K classes of `names`, what
    `agreement_bound` weighs (an index keeps it for every item: `index.search`): per class, how
    much surer the item is that it shows it than that it does not, log(p + floor) − log(1 − p +
    floor), then the sum over the classes of log(1 − p + floor)."""
    cols = [c for name in names for c in columns(name)]
    p = np.asarray(pictures, np.float32)[:, cols]
    yes, no = np.log(p + AGREEMENT_FLOOR), np.log(1 - p + AGREEMENT_FLOOR)
    return np.concatenate([yes - no, no.sum(axis=1, keepdims=True)], axis=1).astype(np.float32)


def agreement_bound(text: np.ndarray, logs: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """A lower bound of `agreement`, linear in the items' `agreement_logs` (`logs`, (N, K + 1)):
    per class, t log(p + floor) + (1 − t) log(1 − p + floor), which the log's concavity keeps at
    or below log(t p + (1 − t)(1 − p) + floor), equal where the sentence is sure of a class
    (t 0 or 1), averaged over the classes of `names`. `text`: (..., C) probabilities; the result
    (..., N). One product over every item: at 100k items ~0.25 ms where `agreement` takes ~4 ms,
    so a search can find its best candidates among all of them (`AGREEMENT_FOUND`)."""
    cols = [c for name in names for c in columns(name)]
    t = np.asarray(text, np.float32)[..., cols]
    weights = np.concatenate([t, np.ones((*t.shape[:-1], 1), np.float32)], axis=-1) / len(cols)
    return np.asarray(weights @ np.asarray(logs, np.float32).T, np.float32)


def named(probabilities: np.ndarray, names: Sequence[str]) -> dict[str, list[tuple[str, float]]]:
    """What a sentence's reader says it names of the attributes `names` (a search shows the user
    how their words were read): per attribute, in `ATTRIBUTES`' order, its values whose (C,)
    `probabilities` are at least `NAMED_AT`, likeliest first, each with its probability; an
    empty list where the reader is sure of none (a sentence with two sources names two)."""
    probabilities = np.asarray(probabilities, np.float32).reshape(-1)
    if probabilities.shape != (len(CLASSES),):
        raise ValueError(f"expected {len(CLASSES)} probabilities, got {probabilities.shape}")
    unknown = set(names) - set(ATTRIBUTES)
    if unknown:
        raise ValueError(f"unknown attributes {sorted(unknown)}; known: {', '.join(ATTRIBUTES)}")
    out: dict[str, list[tuple[str, float]]] = {}
    for name in ATTRIBUTES:
        if name not in names:
            continue
        found = [(CLASSES[c][1], float(probabilities[c])) for c in columns(name)]
        out[name] = sorted(
            ((v, p) for v, p in found if p >= NAMED_AT), key=lambda vp: (-vp[1], vp[0])
        )
    return out


def heard_probabilities(what: np.ndarray) -> np.ndarray:
    """(N, C) probabilities of what N sounds are heard to be, from the sound what network's
    (N, 14) lists of kind × size (`with_sources`): the kind and size columns the network's, the
    rest (and a row of NaN: an item without a sound's list) 0.5, unsure."""
    unsure = np.full((len(what), len(CLASSES)), 0.5, np.float32)
    return with_sources(unsure, what)


def with_directions(pictures: Any, directions: np.ndarray) -> Any:
    """(N, C) picture probabilities (a numpy array or a tensor, as given) with the direction's
    columns taken from (N, 3) `directions` (`AttributeReaders.drift_probabilities`: where the
    picture's foreground goes, which transfers to pictures drawn another way where the pooled
    vector's reader does not: `models.drift`). Rows of NaN (an item without pictures) keep the
    reader's."""
    return _with_read(pictures, directions, "direction")


def with_glyphs(pictures: Any, glyphs: np.ndarray) -> Any:
    """(N, C) picture probabilities (a numpy array or a tensor, as given) with the kind's and the
    colour's columns taken from (N, `GLYPH_CLASSES`) `glyphs` (`AttributeReaders.
    glyph_probabilities`: the glyphs' outlines and pixels, which transfer to pictures drawn
    another way where the what network and the pooled vector's reader do not: `models.shape`).
    An attribute's NaN in a row (no pictures, nothing read, no reader) keeps what it had."""
    found = np.asarray(glyphs, np.float32)
    if found.ndim != 2 or found.shape[1] != GLYPH_CLASSES:
        raise ValueError(
            f"expected ({pictures.shape[0]}, {GLYPH_CLASSES}) glyphs, got {found.shape}"
        )
    start = 0
    for name in GLYPH_ATTRIBUTES:
        width = len(ATTRIBUTES[name])
        pictures = _with_read(pictures, found[:, start : start + width], name)
        start += width
    return pictures


def with_timbre(sounds: Any, timbre: np.ndarray) -> Any:
    """(N, C) sound probabilities (a numpy array or a tensor, as given) with the kind's and the
    size's columns taken from (N, 14) `timbre` (`TrimodalModel.timbre_reading`: each clip's
    share of runs read as each kind × size from how they start, last, ring and move in pitch:
    `models.timbre`): a kind's chance of being heard is twice its sizes' share, at most 1, and a
    size's twice its kinds' (the world sounds one or two sources: each of two holds about half
    the runs). A row with NaN (no sound, nothing stood above its background, no reader) keeps
    what it had."""
    found = np.asarray(timbre, np.float32)
    kinds, sizes = len(SOURCES), len(SIZES)
    if found.ndim != 2 or found.shape[1] != kinds * sizes:
        raise ValueError(f"expected ({sounds.shape[0]}, {kinds * sizes}) rows, got {found.shape}")
    grid = found.reshape(len(found), kinds, sizes)
    sounds = _with_read(sounds, np.minimum(SOURCES_HEARD * grid.sum(axis=2), 1.0), "kind")
    return _with_read(sounds, np.minimum(SOURCES_HEARD * grid.sum(axis=1), 1.0), "size")


def heard_reading(what: np.ndarray | None, timbre: np.ndarray | None, n: int) -> np.ndarray:
    """(n, C) probabilities of what n sounds are heard to be, on the kind and size: the mean of
    the sound what network's reading (`heard_probabilities`) and the timbre's (`with_timbre`)
    where a sound has both, the one it has where it has one; 0.5 (unsure) for the rest and for
    every other attribute. Each reader fails where the other holds: the what network names the
    kinds of own val sounds, two sources included, in 1.00, the own test pool's held-out
    kind × size pairs' single sources in 0.82 and a corpus synthesised another way's in 0.41;
    the timbre names those in 1.00, 0.98 and 0.57, and both of two sources in only 0.45–0.46 on
    own clips. Whether a search meets the two is the policy's choice on val
    (`SearchPolicy.text_heard_timbre`; docs/quality-log.md, "Each sound's kind from how it
    sounds")."""
    unsure = np.full((n, len(CLASSES)), 0.5, np.float32)
    listed = heard_probabilities(what) if what is not None else unsure
    if timbre is None:
        return listed
    read = with_timbre(listed, timbre)
    both = ~np.isnan(np.asarray(what, np.float32)).any(axis=1) if what is not None else None
    if both is not None:
        read[both] = (listed[both] + read[both]) / 2
    return read


def _with_read(pictures: Any, read: np.ndarray, name: str) -> Any:
    """`pictures` with the columns of attribute `name` taken from (N, its values) `read` where
    its row has no NaN."""
    found = np.asarray(read, np.float32)
    if found.shape != (pictures.shape[0], len(ATTRIBUTES[name])):
        raise ValueError(
            f"expected ({pictures.shape[0]}, {len(ATTRIBUTES[name])}) rows of the {name}, "
            f"got {found.shape}"
        )
    rows = np.flatnonzero(~np.isnan(found).any(axis=1))
    cols = np.asarray(columns(name))
    if isinstance(pictures, Tensor):
        changed = pictures.clone()
        taken = torch.from_numpy(found[rows]).to(changed.dtype)
        changed[torch.from_numpy(rows)[:, None], torch.from_numpy(cols)] = taken
        return changed
    out = np.array(pictures, np.float32, copy=True)
    out[rows[:, None], cols] = found[rows]
    return out


def with_sources(pictures: np.ndarray, what: np.ndarray) -> np.ndarray:
    """(N, C) picture reader probabilities with the kind and size columns taken from the picture
    what network's (N, 14) lists of kind × size (`models.what_net`: a class's chance that the
    picture shows a source of that kind, its largest over the sizes; of that size, its largest
    over the kinds). Rows of NaN (an item without a picture's list) keep the reader's. The
    network reads pictures drawn another way better than the pooled vector's reader does (the
    variety val split's single-source clips: kind 0.66 vs 0.59, size 0.83 vs 0.70), so where a
    checkpoint has one the agreement reads those two attributes from it."""
    n = len(SOURCES) * len(SIZES)
    if what.shape != (pictures.shape[0], n):
        raise ValueError(f"expected ({pictures.shape[0]}, {n}) lists, got {tuple(what.shape)}")
    out = np.array(pictures, np.float32, copy=True)
    lists = np.asarray(what, np.float32).reshape(len(what), len(SOURCES), len(SIZES))
    known = ~np.isnan(lists).any(axis=(1, 2))
    kinds, sizes = lists.max(axis=2), lists.max(axis=1)
    for i, kind in enumerate(SOURCES):
        out[known, _COLUMN[("kind", kind)]] = kinds[known, i]
    for j, size in enumerate(SIZES):
        out[known, _COLUMN[("size", size)]] = sizes[known, j]
    return out
