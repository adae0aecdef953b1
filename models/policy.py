"""What a checkpoint's sequence embeddings are good for, measured when it was trained.

The pooled heads are always trained. The per-step sequence heads are trained only by a run with a
sequence objective (SCAV), and an untrained head is a random projection: re-ranking across
modalities by it makes results worse (measured: audio→video R@1 0.031 pooled, 0.004 re-ranked),
while aligning an excerpt with its own modality can still help. So the trainer measures, on its
validation split, whether re-ranking the pooled first pass by sequence distance helps each
query → target direction, and records the answer beside the weights (`search.json`). The index
build copies it into the version's manifest, and a search that does not say whether to re-rank
gets the recorded default for its direction.

A checkpoint or index without the record (made before it existed) has sequence heads that were
never trained: it gets pooled-only search, and a warning.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.attributes import ATTRIBUTES

SEARCH_FILE = "search.json"
POLICY_VERSION = 1

# Queries shorter than this are measured apart and get their own defaults (`SearchPolicy.short`):
# a second and a half of steps or events matches something in any clip by chance far more often
# than a whole clip does (measured on val: the whole-clip weighing cut 1.5 s audio→video R@10
# 0.575 → 0.475), so what helps a long query can hurt a short one.
SHORT_QUERY_S = 2.0
# Queries at least this long get the defaults measured on whole clips and on excerpts this long
# (`SearchPolicy.whole`): the longer a query, the more events its envelopes hold and the less
# often they correlate with another item's by chance, so the envelopes may weigh more than in a
# 2.5 s piece (measured on val among 800 distractors: events ×2 lifted whole-clip audio→video R@1
# 0.803 → 0.891, while 2.5 s pieces lost 0.230 → 0.175).
WHOLE_QUERY_S = 4.0

# text→video searches the visual and the audio index and adds their scores, the audio's at this
# share where a record does not say (`SearchPolicy.text_audio_share`): the service's fixed share
# before the share was measured.
TEXT_AUDIO_SHARE_BEFORE = 0.3

# The most candidates a record may have a text query's agreement find among every item
# (`SearchPolicy.text_agreement_found`): a larger number is not a measured setting.
MAX_FOUND = 10_000

# query modality → target, as the service names them; text queries have no steps to re-rank by.
DIRECTIONS = ("audio→video", "video→audio", "audio→audio", "video→video")
_QUERY = {"audio": "audio", "visual": "video"}


def direction(query_modality: str, target: str) -> str | None:
    """ "audio"/"visual" query → "video"/"audio" target as a DIRECTIONS key (None for text)."""
    source = _QUERY.get(query_modality)
    return None if source is None else f"{source}→{target}"


@dataclass(frozen=True)
class SearchPolicy:
    sequence_trained: bool  # whether any sequence objective trained the per-step heads
    rerank: Mapping[str, bool]  # DIRECTIONS key → re-rank by default
    evidence: Mapping[str, Any] = field(default_factory=dict)  # the figures behind each choice
    recorded: bool = True  # False: the checkpoint or index predates the record
    # Whether the steps live in the text space, so a text query can be localised by them. The
    # timing objectives train steps that know *when* sound and picture agree, not what a caption
    # says: their text hits get the whole item. None (records before the field): as trained.
    text_segments: bool | None = None
    # DIRECTIONS key → how the re-rank weighs the sequences against the pooled first pass:
    # score = pooled similarity + w × the aligned window's mean step similarity. Absent (records
    # before the field, or a direction measured best without the pooled score): the sequence
    # distance alone orders the candidates.
    rerank_weight: Mapping[str, float] = field(default_factory=dict)
    # DIRECTIONS key → how much the event envelopes' correlation (`models.events`) adds to the
    # re-rank's score; a direction with a weight also takes the first pass's candidates from an
    # event scan of every item. Absent (records before the field, or measured no better): none.
    event_weight: Mapping[str, float] = field(default_factory=dict)
    # The defaults measured on queries shorter than `SHORT_QUERY_S` (None: records before the
    # field, or not measured: the same as longer queries).
    short: SearchPolicy | None = None
    # The defaults measured on whole clips and on queries of `WHOLE_QUERY_S` (None: records
    # before the field: the same as shorter queries).
    whole: SearchPolicy | None = None
    # How much the event envelopes' agreement adds to the steps' (`models.events.fused_agreement`);
    # None (records before the field): the steps' alone, offsets included.
    agreement_event_weight: float | None = None
    # The directions (audio→video, video→audio) whose event weight was measured, and is applied,
    # matching sound against picture by the sound's best band (`models.events.match_across`);
    # the others match the single envelopes (records before the field: all of them).
    cross_bands: frozenset[str] = frozenset()
    # Whether a clip's agreement and audio offset take the sound's best band against its picture
    # (`models.events.event_agreement` on `sound_bands`), as measured on val; False (records
    # before the field): the single envelope.
    agreement_bands: bool = False
    # Whether the picture met the sound (in `cross_bands` and in the agreement by the best band)
    # by its change *and* motion envelopes (`models.events.picture_motion`, the best pair
    # counting), as measured; False (records before the field): its change envelope alone.
    picture_motion: bool = False
    # Whether the picture met the sound also by each half's change and motion envelopes
    # (`models.events.picture_halves`), as measured (only with `picture_motion`); False (records
    # before the field): by the whole picture's alone.
    picture_halves: bool = False
    # text→video: the audio index's share of the first pass (score = (1 − s) × the text's
    # similarity to the picture's vector + s × to the sound's; an item without sound scores by its
    # picture), measured on val (`training.search_policy.choose_text_share`). None (records before
    # the field): `TEXT_AUDIO_SHARE_BEFORE`.
    text_audio_share: float | None = None
    # DIRECTIONS key → how much the agreement of the query's and a candidate's sources (kind and
    # size, `models.what_net.agreement`) adds to the re-rank's score, where the checkpoint has
    # trained what networks and val measured it helps (absent: records before the field, or not
    # adopted: none).
    what_weight: Mapping[str, float] = field(default_factory=dict)
    # text→video: the attributes (`models.attributes.ATTRIBUTES`) whose readers a text query's
    # picture-index vector leans on, and how much (`models.attributes.lean`), as measured on val
    # (`training.search_policy.choose_text_attributes`); empty (records before the fields, a
    # checkpoint without fitted readers, or no gain measured): no lean.
    text_attributes: tuple[str, ...] = ()
    text_attribute_weight: float | None = None
    # text→video, with a lean: how much the readers' agreement on those attributes
    # (`models.attributes.agreement`) adds to the first pass's score in a re-rank of its best
    # `models.attributes.AGREEMENT_K` candidates, as measured on val (None: records before the
    # field, or not adopted: no re-rank).
    text_attribute_agreement: float | None = None
    # the attributes that agreement weighs, as measured on val (empty: records before the field,
    # or the lean's own)
    text_agreement_attributes: tuple[str, ...] = ()
    # text→video, with that agreement: how many more candidates it finds among every item, those
    # whose `models.attributes.agreement_bound` is highest (`models.attributes.AGREEMENT_FOUND`),
    # as measured on val (0: records before the field, or not adopted: the first pass's alone)
    text_agreement_found: int = 0
    # text→audio: how much the agreement of the sentence's reader and the sound what network's
    # list on the kind and size heard (`models.attributes.HEARD`) adds to the first pass's score in
    # a re-rank of its best `models.attributes.AGREEMENT_K` sounds, as measured on val
    # (`training.search_policy.choose_heard_agreement`; None: records before the field, or not
    # adopted: no re-rank).
    text_heard_agreement: float | None = None
    # whether that agreement reads each sound's timbre as well as its what list
    # (`models.attributes.heard_reading`), as measured on val (False: records before the field,
    # or the what list alone measured better)
    text_heard_timbre: bool = False
    # whether that agreement reads the kinds the sentence names at its nouns
    # (`models.attributes.AttributeReading.heard`) rather than the text reader's kinds, as
    # measured on val (False: records before the field, or the text reader's measured better)
    text_heard_nouns: bool = False
    # whether, reading them so, it counts the sentence's second noun by its logit's lead over
    # the first's (`models.attributes.AttributeReading.heard_lead`, `noun_lead`) rather than by
    # its own (`noun_second`), as measured on val (False: records before the field, or the own
    # rule measured better)
    text_heard_lead: bool = False
    # whether, reading them so, a sentence whose nouns are not found has the kinds it says are
    # heard read from its sound words (`models.attributes.AttributeReading.heard_sounds`,
    # `AttributeReaders.sound_probabilities`) rather than by the text reader, as measured on
    # val (False: records before the field, or the text reader's measured better)
    text_heard_sound_words: bool = False

    def heard_agreement(self) -> float:
        """How much the agreement on the kind and size heard adds in a text query's re-rank of
        sounds (none: 0)."""
        w = self.text_heard_agreement
        return 0.0 if w is None or w <= 0 else float(w)

    def text_lean(self) -> tuple[tuple[str, ...], float]:
        """The attributes a text query searching videos leans on, and the weight (none: 0)."""
        w = self.text_attribute_weight
        if not self.text_attributes or w is None or w <= 0:
            return (), 0.0
        return self.text_attributes, float(w)

    def agreement_attributes(self) -> tuple[str, ...]:
        """The attributes the readers' agreement weighs in a text query's re-rank of videos."""
        return self.text_agreement_attributes or self.text_lean()[0]

    def text_agreement(self) -> float:
        """How much the readers' agreement adds in a text query's re-rank of videos (none: 0);
        only with a lean (`text_lean`)."""
        w = self.text_attribute_agreement
        if not self.text_lean()[0] or w is None or w <= 0:
            return 0.0
        return float(w)

    def agreement_found(self) -> int:
        """How many candidates a text query's agreement finds among every video beside the
        first pass's (none: 0); only with that agreement (`text_agreement`)."""
        return self.text_agreement_found if self.text_agreement() > 0 else 0

    def text_video_weights(self) -> dict[str, float]:
        """The first pass's weight of each index for a text query searching videos."""
        share = TEXT_AUDIO_SHARE_BEFORE if self.text_audio_share is None else self.text_audio_share
        return {"visual": 1.0 - share, "audio": share} if share > 0 else {"visual": 1.0}

    def for_length(self, seconds: float | None) -> SearchPolicy:
        """The defaults for a query this long (None: unknown length, the 2–4 s queries' ones)."""
        if seconds is None:
            return self
        if self.short is not None and seconds < SHORT_QUERY_S:
            return self.short
        if self.whole is not None and seconds >= WHOLE_QUERY_S:
            return self.whole
        return self

    def events_weight(self, query_modality: str, target: str) -> float:
        key = direction(query_modality, target)
        return 0.0 if key is None else float(self.event_weight.get(key, 0.0))

    def sources_weight(self, query_modality: str, target: str) -> float:
        """How much the sources' agreement adds to the re-rank in this direction (0: none)."""
        key = direction(query_modality, target)
        return 0.0 if key is None else float(self.what_weight.get(key, 0.0))

    def matches_by_bands(self, query_modality: str, target: str) -> bool:
        """Whether sound meets picture by the sound's best band in this direction."""
        return direction(query_modality, target) in self.cross_bands

    def fusion_weight(self, query_modality: str, target: str) -> float | None:
        key = direction(query_modality, target)
        return None if key is None else self.rerank_weight.get(key)

    @property
    def localises_text(self) -> bool:
        return self.sequence_trained if self.text_segments is None else self.text_segments

    def reranks(self, query_modality: str, target: str) -> bool:
        key = direction(query_modality, target)
        return bool(key is not None and self.rerank.get(key, False))

    @classmethod
    def unrecorded(cls) -> SearchPolicy:
        """For a checkpoint or index made before policies existed: pooled-only."""
        return cls(
            sequence_trained=False,
            rerank=dict.fromkeys(DIRECTIONS, False),
            evidence={"reason": "no search policy recorded: sequence heads assumed untrained"},
            recorded=False,
        )

    def warning(self) -> str | None:
        """One line for the logs when the defaults are not the measured ones."""
        if not self.recorded:
            return (
                "this model/index records no search policy (made before policies existed): its "
                "sequence heads are assumed untrained, so searches are pooled-only unless a "
                "request asks for the re-rank"
            )
        if not self.sequence_trained:
            off = [d for d in DIRECTIONS if not self.rerank.get(d, False)]
            return (
                "this model's sequence heads were not trained by a sequence objective; the "
                f"re-rank is off by default where validation found it hurts: {', '.join(off)}"
            )
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": POLICY_VERSION,
            "sequence_trained": self.sequence_trained,
            "rerank": {d: bool(self.rerank.get(d, False)) for d in DIRECTIONS},
            "evidence": dict(self.evidence),
            **({} if self.text_segments is None else {"text_segments": self.text_segments}),
            **(
                {"rerank_weight": {d: float(w) for d, w in self.rerank_weight.items()}}
                if self.rerank_weight
                else {}
            ),
            **(
                {"event_weight": {d: float(w) for d, w in self.event_weight.items()}}
                if self.event_weight
                else {}
            ),
            **(
                {"what_weight": {d: float(w) for d, w in self.what_weight.items()}}
                if self.what_weight
                else {}
            ),
            **(
                {"agreement_event_weight": self.agreement_event_weight}
                if self.agreement_event_weight is not None
                else {}
            ),
            **(
                {"text_audio_share": self.text_audio_share}
                if self.text_audio_share is not None
                else {}
            ),
            **(
                {
                    "text_attributes": list(self.text_attributes),
                    "text_attribute_weight": self.text_attribute_weight,
                }
                if self.text_attributes and self.text_attribute_weight is not None
                else {}
            ),
            **(
                {
                    "text_attribute_agreement": self.text_attribute_agreement,
                    "text_agreement_attributes": list(self.agreement_attributes()),
                }
                if self.text_agreement() > 0
                else {}
            ),
            **(
                {"text_agreement_found": self.agreement_found()}
                if self.agreement_found() > 0
                else {}
            ),
            **(
                {"text_heard_agreement": self.text_heard_agreement}
                if self.heard_agreement() > 0
                else {}
            ),
            **(
                {"text_heard_timbre": True}
                if self.heard_agreement() > 0 and self.text_heard_timbre
                else {}
            ),
            **(
                {"text_heard_nouns": True}
                if self.heard_agreement() > 0 and self.text_heard_nouns
                else {}
            ),
            **(
                {"text_heard_lead": True}
                if self.heard_agreement() > 0 and self.text_heard_nouns and self.text_heard_lead
                else {}
            ),
            **(
                {"text_heard_sound_words": True}
                if self.heard_agreement() > 0
                and self.text_heard_nouns
                and self.text_heard_sound_words
                else {}
            ),
            **({"cross_bands": sorted(self.cross_bands)} if self.cross_bands else {}),
            **({"agreement_bands": True} if self.agreement_bands else {}),
            **({"picture_motion": True} if self.picture_motion else {}),
            **({"picture_halves": True} if self.picture_halves else {}),
            **(
                {"short_queries": {"below_s": SHORT_QUERY_S, **self.short.to_dict()}}
                if self.short is not None
                else {}
            ),
            **(
                {"whole_queries": {"from_s": WHOLE_QUERY_S, **self.whole.to_dict()}}
                if self.whole is not None
                else {}
            ),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> SearchPolicy:
        """A record as saved; None or an unreadable one → `unrecorded()`."""
        if not isinstance(data, Mapping) or not isinstance(data.get("rerank"), Mapping):
            return cls.unrecorded()
        rerank = data["rerank"]
        text_segments = data.get("text_segments")
        short = data.get("short_queries")
        # A record made with another threshold cannot be applied at this one: treated as absent.
        usable = isinstance(short, Mapping) and short.get("below_s") == SHORT_QUERY_S
        whole = data.get("whole_queries")
        whole_usable = isinstance(whole, Mapping) and whole.get("from_s") == WHOLE_QUERY_S
        return cls(
            sequence_trained=bool(data.get("sequence_trained", False)),
            rerank={d: rerank.get(d) is True for d in DIRECTIONS},
            evidence=dict(data.get("evidence") or {}),
            text_segments=text_segments if isinstance(text_segments, bool) else None,
            rerank_weight=_weights(data.get("rerank_weight")),
            event_weight=_weights(data.get("event_weight")),
            what_weight=_weights(data.get("what_weight")),
            short=cls.from_dict(short) if usable and isinstance(short, Mapping) else None,
            whole=cls.from_dict(whole) if whole_usable and isinstance(whole, Mapping) else None,
            agreement_event_weight=_weight(data.get("agreement_event_weight")),
            text_audio_share=_share(data.get("text_audio_share")),
            text_attributes=_attribute_names(data.get("text_attributes")),
            text_attribute_weight=_weight(data.get("text_attribute_weight")),
            text_attribute_agreement=_weight(data.get("text_attribute_agreement")),
            text_agreement_attributes=_attribute_names(data.get("text_agreement_attributes")),
            text_agreement_found=_count(data.get("text_agreement_found")),
            text_heard_agreement=_weight(data.get("text_heard_agreement")),
            text_heard_timbre=data.get("text_heard_timbre") is True,
            text_heard_nouns=data.get("text_heard_nouns") is True,
            text_heard_lead=data.get("text_heard_nouns") is True
            and data.get("text_heard_lead") is True,
            text_heard_sound_words=data.get("text_heard_nouns") is True
            and data.get("text_heard_sound_words") is True,
            cross_bands=_directions(data.get("cross_bands")),
            agreement_bands=data.get("agreement_bands") is True,
            picture_motion=data.get("picture_motion") is True,
            picture_halves=data.get("picture_motion") is True
            and data.get("picture_halves") is True,
        )


def _count(value: object) -> int:
    """A recorded count of candidates: a whole number from 1 to `MAX_FOUND` (else none, 0)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_FOUND:
        return 0
    return value


def _attribute_names(names: object) -> tuple[str, ...]:
    """Recorded attribute names, if every one is an attribute this version knows (else none)."""
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return ()
    return tuple(names) if all(n in ATTRIBUTES for n in names) else ()


def _weight(w: object) -> float | None:
    """A recorded weight if it is a finite non-negative number, else None."""
    if isinstance(w, int | float) and not isinstance(w, bool) and math.isfinite(w) and w >= 0:
        return float(w)
    return None


def _share(found: object) -> float | None:
    """A recorded share if it is a weight no larger than 1, else None."""
    share = _weight(found)
    return share if share is not None and share <= 1.0 else None


def _directions(found: object) -> frozenset[str]:
    """A record's list of directions, keeping only known ones."""
    if not isinstance(found, list | tuple):
        return frozenset()
    return frozenset(d for d in found if isinstance(d, str) and d in DIRECTIONS)


def _weights(found: object) -> dict[str, float]:
    """A record's per-direction weights, keeping only finite non-negative numbers."""
    if not isinstance(found, Mapping):
        return {}
    return {d: w for d, raw in found.items() if d in DIRECTIONS and (w := _weight(raw)) is not None}


def save_policy(directory: str | os.PathLike[str], policy: SearchPolicy) -> Path:
    path = Path(directory) / SEARCH_FILE
    tmp = path.with_name(f".{SEARCH_FILE}.part")
    tmp.write_text(json.dumps(policy.to_dict(), indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)
    return path


def load_policy(directory: str | os.PathLike[str]) -> SearchPolicy:
    """The checkpoint's recorded policy; `unrecorded()` when it has none."""
    path = Path(directory) / SEARCH_FILE
    if not path.is_file():
        return SearchPolicy.unrecorded()
    try:
        return SearchPolicy.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError) as e:
        raise ValueError(f"unreadable search policy {path}: {e}") from e
