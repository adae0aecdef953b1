"""Searching a published index version: pooled first pass, sequence re-rank, segment localisation.

A query is an embedding from any modality (text: a pooled vector; audio or video: pooled plus a
per-step sequence). The first pass searches the FAISS index of each target modality with a weight
(text→video searches the visual *and* the audio index and fuses the scores). The top `rerank_k`
are then re-ranked by the sequence distance between the query's steps and each candidate's stored
steps (audio and video queries), and every hit gets the segment `[start_s, end_s]` that matches
best and its per-step score timeline.

A `Searcher` is safe to share between threads: FAISS CPU search and the memory-mapped stores are
read-only, and GPU indexes serialise themselves (see `index.ann.VectorIndex`).
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from index.ann import VectorIndex
from index.embed import (
    DIRECTION_STORE,
    DIRECTIONS,
    GLYPH_STORE,
    HALVES_STORE,
    MODALITIES,
    MOTION_STORE,
    PEAKS_STORE,
    PRINTS_STORE,
    TIMBRE_STORE,
    bands_store,
    what_store,
)
from index.store import SequenceStore
from index.version import IndexCorrupt, IndexVersion
from models import fingerprint, prints
from models.alignment import Segment, align_sequence_batch, align_vector_batch, window_distances
from models.attributes import (
    AGREEMENT_K,
    ATTRIBUTES,
    GLYPH_CLASSES,
    HEARD,
    AttributeReading,
    PictureReader,
    agreement,
    agreement_bound,
    agreement_logs,
    heard_reading,
    lean,
    named,
    with_directions,
    with_glyphs,
    with_sources,
)
from models.events import (
    BANDS,
    SCAN_CANDIDATES,
    EventScan,
    Phase,
    best_phase,
    picture_kinds,
    widened,
)
from models.fingerprint import FingerprintTable, Match
from models.media import DECODE_VERSION
from models.motion import HALVES
from models.policy import SearchPolicy
from models.sequence import Distance, sequence_similarity
from models.spare import SPARE
from models.what_net import CLASSES
from models.what_net import agreement as what_agreement

log = logging.getLogger("trimodal.index")

Target = Literal["video", "audio"]
QueryModality = Literal["text", "audio", "visual"]

# How much each index counts for a target, by query modality. Text describing a video is matched
# against what is seen and against what is heard, at the share the checkpoint's validation
# measured (`SearchPolicy.text_video_weights`), so it is not in this table.
DEFAULT_WEIGHTS: dict[tuple[str, str], dict[str, float]] = {
    ("text", "audio"): {"audio": 1.0},
    ("audio", "video"): {"visual": 1.0},
    ("audio", "audio"): {"audio": 1.0},
    ("visual", "audio"): {"audio": 1.0},
    ("visual", "video"): {"visual": 1.0},
}
# Items read at a time when every item's agreement logs are made (`Searcher._agreement_table`).
TABLE_ROWS = 8192


@dataclass(frozen=True)
class Query:
    modality: QueryModality
    pooled: np.ndarray  # (D,) unit vector
    sequence: np.ndarray | None = None  # (T, D) for audio / visual queries
    events: np.ndarray | None = None  # (E,) its event envelope (`models.events`), same kinds
    bands: np.ndarray | None = None  # (E, B) its banded envelope (`sound_bands`, `picture_bands`)
    # a sound's envelopes at sub-bin offsets (`models.events.sound_phases`, phase 0 = `events`,
    # `bands`): matched at each, the best counts; empty: phase 0 alone
    phases: tuple[Phase, ...] = ()
    # footage's motion envelope (`models.events.picture_motion`): with `events`, what it meets
    # sounds by (None: its change envelope alone)
    motion: np.ndarray | None = None
    # footage's halves' change and motion envelopes (`models.events.picture_halves`): with
    # `motion`, what it also meets sounds by where the policy says so (None: not)
    halves: np.ndarray | None = None
    # a sound's landmarks at sub-frame shifts (`models.fingerprint.query_peaks`): the indexed
    # recording it was cut from, found before anything learned is asked (empty: not looked for)
    landmarks: tuple[tuple[np.ndarray, float], ...] = ()
    # a sound's dense prints at sub-hop shifts (`models.prints.query_prints`): the same, for a
    # sound whose peaks say nothing (empty: not looked for)
    prints: tuple[tuple[np.ndarray, float], ...] = ()
    # the sources it shows / sounds (`models.what_net`, (C,) probabilities; None: the model has
    # no trained networks)
    what: np.ndarray | None = None
    # a sentence's attribute directions (`models.attributes`, name → (D,)): what its vector for
    # the picture index leans along where the policy says so (None: the model has no readers)
    leans: Mapping[str, np.ndarray] | None = None
    # what the sentence names and the reader of what a picture shows (`models.attributes`): the
    # leaning first pass's best videos re-ranked by how far they agree, where the policy says so
    # (None: the model has no readers)
    reading: AttributeReading | None = None


@dataclass(frozen=True)
class _Piece:
    """Where an item holds the piece of sound searched for (`Searcher._found_pieces`)."""

    start_s: float
    ber: float | None  # the prints' bit error rate there; None: found by the landmarks alone
    votes: int | None  # the landmarks' agreeing pairs; None: not among their finds


@dataclass(frozen=True)
class Hit:
    row: int
    id: str
    score: float  # the ranking score (re-ranked when re-ranking applied)
    pooled_score: float
    start_s: float
    end_s: float
    timeline: list[float]
    title: str | None
    duration_s: float | None
    media: str
    has_video: bool = True
    has_audio: bool = True
    # How well the item's own sound fits its picture (models.alignment.av_agreement), and by how
    # much its sound lags; None where the index has no agreement or the item lacks a stream.
    av_agreement: float | None = None
    audio_offset_s: float | None = None
    # The query is a piece of this item's recording: this many of its landmark pairs agree on
    # where (`models.fingerprint`); None where it was not found that way.
    landmark_votes: int | None = None
    # The query is a piece of this item's recording by its dense prints (`models.prints`): this
    # share of their bits differ at the place found; None where it was not found that way.
    print_ber: float | None = None


class FilterUnavailable(ValueError):
    """A filter this index cannot apply (it lacks the data the filter reads)."""


@dataclass(frozen=True)
class ItemFilter:
    """Which items a search may return; None / empty means "any"."""

    min_duration_s: float | None = None
    max_duration_s: float | None = None
    has_audio: bool | None = None
    has_video: bool | None = None
    tags: tuple[str, ...] = ()  # every one must be among the item's `meta["tags"]`
    min_av_agreement: float | None = None  # only items whose sound agrees with their picture

    def is_empty(self) -> bool:
        return self == ItemFilter()


@dataclass
class SearchResult:
    hits: list[Hit]
    version: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    reranked: bool = False  # whether the sequence re-rank ordered the hits
    localised: bool = True  # False: sequences cannot align this query; segments = whole items
    # a text query: what the sentence was read to name of each attribute that weighed in this
    # search (`models.attributes.named`); None where no reading did
    read_as: dict[str, list[tuple[str, float]]] | None = None


class Searcher:
    def __init__(self, version: IndexVersion, use_gpu: bool = True) -> None:
        """Open every part of `version` and check that the parts fit together (dimensions, counts,
        row ids): IndexCorrupt naming the file otherwise. Checksums cannot catch a consistent but
        wrong file (a re-sealed manifest, or loading without verification), and a FAISS index of
        another dimension would otherwise only fail at the first search, as a bare
        AssertionError that no caller can tell from a bug."""
        self.version = version
        try:
            self._open_parts(use_gpu)
        except (ValueError, KeyError, OSError, RuntimeError, sqlite3.Error) as e:
            raise IndexCorrupt(f"{version.name}/{_message(e)}") from e
        self._columns: tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]] | None = (
            None
        )
        self._columns_lock = threading.Lock()
        # every item's `agreement_logs` for a picture reader and the attributes it weighs
        # (`_agreement_table`)
        self._agreeing: tuple[PictureReader, tuple[str, ...], np.ndarray] | None = None
        self._agreeing_lock = threading.Lock()
        self._scans: dict[str, EventScan] = {}
        self._scans_lock = threading.Lock()
        self._landmarks: FingerprintTable | None = None
        self._prints: prints.PrintTable | None = None

    def _open_parts(self, use_gpu: bool) -> None:
        version, manifest = self.version, self.version.manifest
        dim, n_items = version.dim, int(manifest["counts"]["items"])
        self.sps = float(manifest["steps_per_second"])
        # Compressed stores hold steps @ P: queries are projected with the same P.
        self.projection = version.projection()
        if self.projection is not None and self.projection.shape[0] != dim:
            raise ValueError(f"projection: {self.projection.shape[0]} rows for dim {dim}")
        params = manifest.get("build", {}).get("params", {})
        self.indexes: dict[str, VectorIndex] = {}
        for m in MODALITIES:
            path = version.path / f"{m}.faiss"
            if path.is_file():
                rows = version.rows(m)
                if len(rows) and (rows.min() < 0 or rows.max() >= n_items):
                    raise ValueError(f"{m}.rows.npy: row ids outside [0, {n_items})")
                self.indexes[m] = VectorIndex.load(path, rows, params.get(m, {}), use_gpu, dim)
        step_dim = dim if self.projection is None else self.projection.shape[1]
        for name in manifest["sequence_stores"]:  # the pooled stores too ("more like this")
            stored = version.sequences(name)
            want = (
                dim
                if name.endswith(".pooled")
                else 1
                if name.endswith(".events") or name == MOTION_STORE
                else fingerprint.STORE_DIM
                if name == PEAKS_STORE
                else prints.STORE_DIM
                if name == PRINTS_STORE
                else 2 * len(HALVES)
                if name == HALVES_STORE
                else BANDS[name.split(".")[0]]
                if name.endswith(".bands")
                else len(CLASSES)
                if name.endswith(".what") or name == TIMBRE_STORE
                else DIRECTIONS
                if name == DIRECTION_STORE
                else GLYPH_CLASSES
                if name == GLYPH_STORE
                else step_dim
            )
            if stored.dim != want or len(stored) != n_items:
                raise ValueError(
                    f"{name} sequence store: {len(stored)} items of dimension {stored.dim}, "
                    f"expected {n_items} of dimension {want}"
                )
        self.sequences = {m: version.sequences(m) for m in MODALITIES}
        # Re-rank defaults measured when the model was trained (models.policy); a version built
        # before they were recorded searches pooled-only unless a request asks otherwise.
        self.policy = SearchPolicy.from_dict(manifest.get("build", {}).get("search_policy"))
        if (warning := self.policy.warning()) is not None:
            log.warning("index %s: %s", version.name, warning)
        # what decoder measured its items (`models.media.DECODE_VERSION`; unrecorded: the first)
        self.decode_version = int(manifest.get("build", {}).get("decode_version") or 1)
        if self.decode_version < DECODE_VERSION:
            log.warning(
                "index %s: its items were decoded by an older decoder (version %d, now %d): a "
                "Matroska or WebM video's frames and event envelopes can sit a step off the "
                "grid, so its search finds them less well; `trimodal index build` measures them "
                "anew",
                version.name,
                self.decode_version,
                DECODE_VERSION,
            )
        self.items = version.items()
        if len(self.items) != n_items:
            raise ValueError(f"items.sqlite: {len(self.items)} items, the manifest says {n_items}")
        self.agreement = version.agreement()  # (n_items, 2) or None
        # Event envelopes per item where the index keeps them (`models.events`), at this rate.
        rate = manifest.get("build", {}).get("event_rate")
        self.event_rate = float(rate) if isinstance(rate, int | float) and rate > 0 else None
        self.events = {
            m: version.sequences(f"{m}.events")
            for m in MODALITIES
            if f"{m}.events" in manifest["sequence_stores"] and self.event_rate is not None
        }
        # Same-modality matches by banded envelopes, where the index keeps them (else the single).
        self.bands = {
            m: version.sequences(bands_store(m))
            for m in self.events
            if bands_store(m) in manifest["sequence_stores"]
        }
        # A picture's motion envelope beside its change envelope, where the index keeps it.
        self.motion = (
            version.sequences(MOTION_STORE)
            if MOTION_STORE in manifest["sequence_stores"] and "visual" in self.events
            else None
        )
        # A picture's halves' envelopes beside them, where the index keeps them.
        self.halves = (
            version.sequences(HALVES_STORE)
            if HALVES_STORE in manifest["sequence_stores"] and self.motion is not None
            else None
        )
        # Sound landmarks, where the index keeps them: a piece of an indexed recording.
        self.peaks = (
            version.sequences(PEAKS_STORE) if PEAKS_STORE in manifest["sequence_stores"] else None
        )
        # Dense sound prints, where the index keeps them: the same, where the peaks say nothing.
        self.prints = (
            version.sequences(PRINTS_STORE) if PRINTS_STORE in manifest["sequence_stores"] else None
        )
        # The sources each item shows / sounds (`models.what_net`), where the index keeps them.
        self.what = {
            m: version.sequences(what_store(m))
            for m in MODALITIES
            if what_store(m) in manifest["sequence_stores"]
        }
        # Each picture's chances of each direction by where its foreground goes
        # (`models.drift`), where the index keeps them.
        self.directions = (
            version.sequences(DIRECTION_STORE)
            if DIRECTION_STORE in manifest["sequence_stores"]
            else None
        )
        # Each picture's chances of each kind and colour by its glyphs' outlines and pixels
        # (`models.shape`), where the index keeps them.
        self.glyphs = (
            version.sequences(GLYPH_STORE) if GLYPH_STORE in manifest["sequence_stores"] else None
        )
        # Each sound's chances of each kind × size by how it sounds (`models.timbre`), where the
        # index keeps them.
        self.timbres = (
            version.sequences(TIMBRE_STORE) if TIMBRE_STORE in manifest["sequence_stores"] else None
        )
        if self.policy.event_weight and not self.events:
            log.warning(
                "index %s keeps no event envelopes (built before they were kept): searches by "
                "sound or footage re-rank by the steps alone; rebuild it to use them",
                version.name,
            )

    def prepare_filters(self) -> None:
        """Read the per-item columns filters need (done on first filtered search otherwise)."""
        with self._columns_lock:
            if self._columns is None:
                durations, video, audio, tags = self.items.columns()
                by_tag: dict[str, list[int]] = {}
                for row, item_tags in enumerate(tags):
                    for tag in set(item_tags):
                        by_tag.setdefault(tag, []).append(row)
                rows = {t: np.asarray(r, np.int64) for t, r in by_tag.items()}
                self._columns = (durations, video, audio, rows)

    def allowed(self, where: ItemFilter) -> np.ndarray:
        """Bool (n_items,): the items `where` lets through."""
        self.prepare_filters()
        assert self._columns is not None
        durations, video, audio, by_tag = self._columns
        ok = np.ones(len(durations), bool)
        if where.min_duration_s is not None:
            ok &= durations >= where.min_duration_s  # unknown durations (NaN) fail both bounds
        if where.max_duration_s is not None:
            ok &= durations <= where.max_duration_s
        if where.has_audio is not None:
            ok &= audio == where.has_audio
        if where.has_video is not None:
            ok &= video == where.has_video
        if where.min_av_agreement is not None:
            if self.agreement is None:
                raise FilterUnavailable(
                    "min_av_agreement: this index has no audio–visual agreement (its model's "
                    "sequence heads were not trained to match sound with picture)"
                )
            ok &= self.agreement[:, 0] >= where.min_av_agreement  # NaN (no sound) fails
        for tag in where.tags:
            tagged = np.zeros(len(durations), bool)
            tagged[by_tag.get(tag, np.zeros(0, np.int64))] = True
            ok &= tagged
        return ok

    @classmethod
    def open(cls, root: Path, version: str | None = None, verify: bool = True) -> Searcher:
        return cls(IndexVersion.open(root, version, verify=verify))

    @property
    def name(self) -> str:
        return self.version.name

    def _first_pass(
        self,
        pooled: np.ndarray,
        weights: dict[str, float],
        k: int,
        allowed: np.ndarray | None = None,
        vectors: Mapping[str, np.ndarray] | None = None,
    ) -> dict[int, float]:
        """Fused scores of the union of each weighted index's top-k (a missing score counts as the
        lowest score that index returned, so one strong modality can still surface an item).

        With `allowed` (a filter), each index is searched wider until k allowed items are found or
        the index is exhausted; items not allowed never enter the fusion. `vectors`: an index's
        own query vector where it differs from `pooled` (a text query's leaning one).
        """
        fused: dict[int, float] = {}
        per_index: dict[str, dict[int, float]] = {}
        for m, w in weights.items():
            if w <= 0 or m not in self.indexes:
                continue
            index, fetch = self.indexes[m], k
            vector = pooled if vectors is None or m not in vectors else vectors[m]
            while True:
                scores, rows = index.search(vector[None], fetch)
                found = {
                    int(r): float(s)
                    for r, s in zip(rows[0], scores[0], strict=True)
                    if r >= 0 and (allowed is None or allowed[r])
                }
                if allowed is None or len(found) >= k or fetch >= len(index):
                    break
                fetch = min(fetch * 4, len(index))
            per_index[m] = found
        floors = {m: min(found.values()) if found else 0.0 for m, found in per_index.items()}
        candidates = {r for found in per_index.values() for r in found}
        for r in candidates:
            fused[r] = sum(weights[m] * found.get(r, floors[m]) for m, found in per_index.items())
        return fused

    @staticmethod
    def _leaning(
        query: Query, target: str, policy: SearchPolicy, weights: Mapping[str, float]
    ) -> dict[str, np.ndarray] | None:
        """A text query's vector for the picture index, leaning on the attributes the policy
        measured help (`models.attributes.lean`; the weight is the fused score's, so the picture
        index's own weight is divided out); None where nothing leans."""
        names, weight = policy.text_lean()
        visual = weights.get("visual", 0.0)
        if query.modality != "text" or target != "video" or not names or query.leans is None:
            return None
        if visual <= 0 or any(n not in query.leans for n in names):
            return None
        pooled = np.asarray(query.pooled, np.float32)
        return {"visual": pooled + lean(query.leans, names, weight) / visual}

    def _pictures(
        self, reader: PictureReader, rows: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(len(rows), C): what each item's picture shows as a text query's agreement reads it:
        the picture reader of its stored picture vector (an item without a picture: unsure of
        everything, 0.5); where the index keeps the picture what network's lists, kind and size
        from them (`models.attributes.with_sources`); where it keeps each picture's directions by
        where its foreground goes, the direction from those (`with_directions`); and where it
        keeps each picture's kinds and colours by its glyphs, those (`with_glyphs`). And
        (len(rows),) which items have a picture."""
        rows = list(rows)
        stored, mask = self.version.sequences("visual.pooled").batch(rows)
        pictures = reader.probabilities(stored[:, 0])
        pictures[~mask[:, 0]] = 0.5
        shown = self._what_lists("visual", rows)
        if shown is not None:  # kind and size as the picture what network read them
            pictures = with_sources(pictures, shown)
        going = self._rows_of(self.directions, rows)
        if going is not None:  # the direction as the picture's foreground goes
            pictures = with_directions(pictures, going)
        glyphs = self._rows_of(self.glyphs, rows)
        if glyphs is not None:  # the kind and colour as the glyphs' pixels read
            pictures = with_glyphs(pictures, glyphs)
        return pictures, mask[:, 0]

    def _agreement_table(self, reader: PictureReader, names: tuple[str, ...]) -> np.ndarray:
        """Every item's `agreement_logs` on `names` as `reader` reads its picture (`_pictures`),
        an item without a picture's made −∞ (its bound: −∞, never found): made on the first
        search that needs it (~0.3 s at 100k items, K + 1 float32 an item: 7.6 MB at 100k) and
        kept while the reader and names stay."""
        with self._agreeing_lock:
            kept = self._agreeing
            if kept is not None and kept[0] is reader and kept[1] == names:
                return kept[2]
            n = len(self.items)
            logs = np.empty((n, sum(len(ATTRIBUTES[a]) for a in names) + 1), np.float32)
            for start in range(0, n, TABLE_ROWS):
                rows = list(range(start, min(n, start + TABLE_ROWS)))
                pictures, pictured = self._pictures(reader, rows)
                found = agreement_logs(pictures, names)
                found[~pictured, :-1], found[~pictured, -1] = 0.0, -np.inf
                logs[rows[0] : rows[-1] + 1] = found
            self._agreeing = (reader, names, logs)
            return logs

    def prepare_agreement(self, reader: PictureReader | None) -> None:
        """Make every item's agreement logs for `reader` (the query encoder's picture reader)
        where the policy has text queries find candidates among every item, off the request
        path (done by the first such search otherwise)."""
        if reader is not None and self.policy.agreement_found() > 0:
            self._agreement_table(reader, self.policy.agreement_attributes())

    def _found_by_agreement(
        self,
        reading: AttributeReading,
        names: tuple[str, ...],
        found: int,
        allowed: np.ndarray | None,
    ) -> list[int]:
        """The `found` items with a picture (and that `allowed` lets through) whose agreement
        with the sentence's reading on `names` is bounded highest (`agreement_bound`), best
        first: the candidates a text query's agreement finds among every item
        (`SearchPolicy.text_agreement_found`), as `training.evaluate.agreement_rerank` finds
        them."""
        bound = agreement_bound(
            reading.probabilities, self._agreement_table(reading.picture, names), names
        )
        if allowed is not None:
            bound[~allowed] = -np.inf
        n = min(found, len(bound))
        if n == 0:
            return []
        best = np.argpartition(bound, len(bound) - n)[len(bound) - n :]
        return [
            int(r)
            for r in sorted(best.tolist(), key=lambda r: (-bound[r], r))
            if bound[r] > -np.inf
        ]

    def _by_agreement(
        self,
        reading: AttributeReading,
        ranked: list[tuple[int, float]],
        policy: SearchPolicy,
        k: int = AGREEMENT_K,
    ) -> list[tuple[int, float]]:
        """A leaning text query's best `k` videos re-ranked: each one's first-pass score + the
        policy's weight × how far the readers agree on its attributes
        (`models.attributes.agreement`; the pictures read by `_pictures`). The rest follow in
        their order, as `training.evaluate.agreement_rerank` ranks them."""
        names = policy.agreement_attributes()
        top, rest = ranked[:k], ranked[k:]
        if not top:
            return ranked
        pictures, _ = self._pictures(reading.picture, [r for r, _ in top])
        agree = agreement(reading.probabilities[None], pictures, names)
        weight = policy.text_agreement()
        rescored = [(r, s + weight * float(a)) for (r, s), a in zip(top, agree, strict=True)]
        return sorted(rescored, key=lambda kv: (-kv[1], kv[0])) + rest

    def _by_heard(
        self, reading: AttributeReading, ranked: list[tuple[int, float]], policy: SearchPolicy
    ) -> list[tuple[int, float]]:
        """A text query's best `AGREEMENT_K` sounds re-ranked: each one's first-pass score + the
        policy's weight × how far the sentence's reader and the item's sound agree on the kind
        and size heard (`models.attributes.HEARD`, `heard_reading`: by the sound what network's
        list and, where the policy measured it helps and the index keeps it, by how it sounds;
        an item without either counts as unsure of everything), the sentence's kinds those read
        at its nouns where the policy measured it helps (`_heard_text`). The rest follow in their
        order, as `training.evaluate` ranks them."""
        top, rest = ranked[:AGREEMENT_K], ranked[AGREEMENT_K:]
        rows = [r for r, _ in top]
        lists = self._what_lists("audio", rows) if top else None
        timbres = self._rows_of(self.timbres, rows) if top and policy.text_heard_timbre else None
        if lists is None and timbres is None:
            return ranked
        heard = heard_reading(lists, timbres, len(rows))
        agree = agreement(_heard_text(reading, policy)[None], heard, HEARD)
        weight = policy.heard_agreement()
        rescored = [(r, s + weight * float(a)) for (r, s), a in zip(top, agree, strict=True)]
        return sorted(rescored, key=lambda kv: (-kv[1], kv[0])) + rest

    def search(
        self,
        query: Query,
        target: Target = "video",
        *,
        k: int = 10,
        rerank: bool | None = None,
        rerank_k: int = 100,
        distance: Distance = "interp",
        weights: dict[str, float] | None = None,
        where: ItemFilter | None = None,
    ) -> SearchResult:
        """The best `k` items of `target` for `query`. `rerank` None: the index's measured default
        for this direction (`self.policy`); True / False force the sequence re-rank on or off."""
        timings: dict[str, float] = {}
        start = time.perf_counter()
        if not weights:
            weights = (
                self.policy.text_video_weights()
                if (query.modality, target) == ("text", "video")
                else DEFAULT_WEIGHTS[(query.modality, target)]
            )
        # A short query has its own measured defaults (`models.policy.SHORT_QUERY_S`).
        seconds = None if query.sequence is None else len(query.sequence) / self.sps
        policy = self.policy.for_length(seconds)
        if rerank is None:
            rerank = policy.reranks(query.modality, target)
        unknown = set(weights) - set(MODALITIES)
        if unknown:
            raise ValueError(f"unknown fusion weights {sorted(unknown)}; use {MODALITIES}")
        pooled = np.asarray(query.pooled, dtype=np.float32)
        allowed = None if where is None or where.is_empty() else self.allowed(where)
        # A text query has no steps to re-rank by: fetch only what fusing the indexes needs.
        reranking = rerank and query.sequence is not None
        fetch = max(k, rerank_k) if reranking else max(k, min(rerank_k, 4 * k))
        leaning = self._leaning(query, target, policy, weights)
        agreeing = leaning is not None and query.reading is not None and policy.text_agreement()
        hearing = (
            query.modality == "text"
            and target == "audio"
            and query.reading is not None
            and policy.heard_agreement() > 0
            and "audio" in self.what
        )
        if agreeing or hearing:  # the readers' agreement re-ranks the first pass's best
            fetch = max(fetch, AGREEMENT_K)
        read_as = _read_as(query, policy, leaning is not None, bool(agreeing), hearing)
        fused = self._first_pass(pooled, weights, fetch, allowed, leaning)
        if sum(w > 0 and m in self.indexes for m, w in weights.items()) > 1:
            # several indexes fused (a text query searching videos): each candidate's score is
            # made exact from the stores, where the union's floors would stand for an index's
            # score of an item it did not return (with the lean, the two indexes' lists differ
            # more: on the own test pool the floors cost R@1 0.148 → 0.128, `k` 10)
            fused = self._pooled_scores(pooled, weights, sorted(fused), leaning)
        ranked = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))
        if agreeing and query.reading is not None:
            # the items the agreement finds among every one join the first pass's best, where
            # the policy measured they help: the first pass misses pictures drawn another way
            finding = policy.agreement_found()
            new: list[int] = []
            if finding:
                listed = {r for r, _ in ranked[:AGREEMENT_K]}
                names = policy.agreement_attributes()
                found_rows = self._found_by_agreement(query.reading, names, finding, allowed)
                new = [r for r in found_rows if r not in listed]
            if new:
                fused |= self._pooled_scores(pooled, weights, new, leaning)
                taken = set(new)
                ranked = (
                    ranked[:AGREEMENT_K]
                    + [(r, fused[r]) for r in new]
                    + [kv for kv in ranked[AGREEMENT_K:] if kv[0] not in taken]
                )
            ranked = self._by_agreement(query.reading, ranked, policy, AGREEMENT_K + len(new))
        if hearing and query.reading is not None:
            ranked = self._by_heard(query.reading, ranked, policy)
        primary = max(weights, key=lambda m: weights[m])
        # The event envelopes weigh in where the policy measured they help this direction; they
        # also bring their own candidates, found by scanning every item's envelope.
        event_weight = policy.events_weight(query.modality, target) if reranking else 0.0
        by_events = event_weight > 0 and query.events is not None and primary in self.events
        extra: list[int] = []
        if by_events and query.events is not None:
            listed = {r for r, _ in ranked[:rerank_k]}
            found_rows = self._event_candidates(query, primary, allowed, policy)
            extra = [r for r in found_rows if r not in listed]
            fused |= self._pooled_scores(pooled, weights, extra, leaning)
        timings["search"] = (time.perf_counter() - start) * 1e3

        t0 = time.perf_counter()
        scores = dict(ranked)
        known: dict[int, Segment | None] = {}
        reranked = bool(reranking and (ranked or extra))
        if reranked and query.sequence is not None:
            top = [r for r, _ in ranked[:rerank_k]] + extra
            sequence = query.sequence

            def steps() -> tuple[np.ndarray, Callable[[int], Segment | None]]:
                return self._rerank(sequence, top, primary, distance)

            def events() -> tuple[list[float], list[float | None]]:
                across = policy.matches_by_bands(query.modality, target)
                motion = across and policy.picture_motion
                return self._event_scores(
                    query, top, primary, across, motion, motion and policy.picture_halves
                )

            agree: list[float] = []
            placed: list[float | None] = []
            if by_events and query.events is not None:
                # independent: on two cores when a search runs alone (`models.spare`). (The
                # envelopes' quarter of the candidates beside the steps, the rest apart, was
                # slower: their matching is mostly Python, which holds the GIL.)
                (distances, found), (agree, placed) = SPARE.both(steps, events)
            else:
                distances, found = steps()
            weight = policy.fusion_weight(query.modality, target)
            if weight is None:  # the sequence distance alone
                fused_scores = [-float(d) for d in distances]
            else:  # the first pass's score plus the window's mean step similarity, weighed
                fused_scores = [
                    fused[r] + weight * sequence_similarity(float(d), distance)
                    for r, d in zip(top, distances, strict=True)
                ]
            if agree:
                fused_scores = [
                    s + event_weight * e for s, e in zip(fused_scores, agree, strict=True)
                ]
            named = self._sources_agreement(query, top, primary, policy)
            if named is not None:
                fused_scores = [s + a for s, a in zip(fused_scores, named, strict=True)]
            order = sorted(range(len(top)), key=lambda i: (-fused_scores[i], top[i]))
            added = set(extra)
            rest = [(r, s) for r, s in ranked[rerank_k:] if r not in added]
            ranked = [(top[i], fused_scores[i]) for i in order] + rest
            scores = dict(ranked)
            for i in order[:k]:  # segments only for the hits that are returned
                known[top[i]] = found(i)
                at = placed[i] if placed else None
                if at is not None and query.events is not None and self.event_rate:
                    # The envelopes place a piece to a frame, the steps to a quarter second
                    # (val, 2.5 s sound → audio: start within 0.25 s for 92 % vs 64 %).
                    known[top[i]] = _placed(known[top[i]], at, len(query.events), self.event_rate)
        timings["rerank"] = (time.perf_counter() - t0) * 1e3

        pieces = self._found_pieces(query, primary, allowed, timings)
        if pieces:
            # A piece of an indexed recording: those items first, in the order found (fewest
            # print bits wrong, else most agreeing landmarks), scored above everything else.
            ahead = max((s for _, s in ranked), default=0.0)
            first = [(r, ahead + len(pieces) - i) for i, r in enumerate(pieces)]
            ranked = first + [(r, s) for r, s in ranked if r not in pieces]
            scores = dict(ranked)
            fused |= self._pooled_scores(pooled, weights, [r for r in pieces if r not in fused])

        t0 = time.perf_counter()
        chosen = [r for r, _ in ranked[:k]]
        # A query's steps align with an item's only through sequence heads that mean something
        # for the pair: the same encoder's steps always do; across modalities only trained heads,
        # and for text only heads trained in the text space (the policy says which). Otherwise
        # the segment would be noise: the hit gets the whole item.
        localised = _same_space(query.modality, primary) or (
            self.policy.localises_text if query.modality == "text" else self.policy.sequence_trained
        )
        if localised:
            missing = [r for r in chosen if r not in known]  # the re-rank aligned the others
            known |= dict(zip(missing, self._segments(query, missing, primary), strict=True))
            for r in chosen:  # the prints place a piece to 8 ms, the landmarks to 16 ms
                if r in pieces:
                    known[r] = _at(known[r], pieces[r].start_s, self._query_seconds(query))
            segments = [_segment_tuple(known[r]) for r in chosen]
        else:
            segments = [(0.0, math.inf, []) for _ in chosen]  # clipped to each item's duration
        hits = []
        for r, seg, record in zip(chosen, segments, self.items.by_rows(chosen), strict=True):
            if record.duration_s:  # codec padding can leave a last step past the real end
                seg = (min(seg[0], record.duration_s), min(seg[1], record.duration_s), seg[2])
            elif math.isinf(seg[1]):
                seg = (0.0, 0.0, [])  # whole item of unknown length
            hits.append(
                Hit(
                    row=r,
                    id=record.id,
                    score=scores[r],
                    pooled_score=fused[r],
                    start_s=seg[0],
                    end_s=seg[1],
                    timeline=seg[2],
                    title=record.title,
                    duration_s=record.duration_s,
                    media=record.media,
                    has_video=record.has_video,
                    has_audio=record.has_audio,
                    **self._agreement_of(r),
                    landmark_votes=pieces[r].votes if r in pieces else None,
                    print_ber=pieces[r].ber if r in pieces else None,
                )
            )
        timings["segments"] = (time.perf_counter() - t0) * 1e3
        return SearchResult(hits, self.name, timings, reranked, localised, read_as)

    def _scan(self, modality: str) -> EventScan:
        """Every item's `modality` envelopes laid out for scanning, built on first use: a
        picture's by what the policy has it meet a sound by (`_picture_kinds`, its change
        envelope first), a sound's single."""
        with self._scans_lock:
            if modality not in self._scans:
                store = self.events[modality]
                assert self.event_rate is not None
                rows = list(range(len(store)))
                policy = self.policy
                envelopes = (
                    self._picture_kinds(rows, policy.picture_halves)
                    if modality == "visual" and policy.picture_motion and self.motion is not None
                    else [store.get(r)[:, 0].astype(np.float32) for r in rows]
                )
                self._scans[modality] = EventScan(envelopes, self.event_rate)
            return self._scans[modality]

    def _picture_kinds(self, rows: list[int], halves: bool) -> list[np.ndarray]:
        """Each row's picture envelopes that a sound meets (`models.events.picture_kinds`): its
        change and motion envelopes, and its halves' with `halves` (where the index keeps them).
        An item embedded before motion (or its halves) was kept has fewer: its change envelope
        repeated fills the others (`models.events.widened`), so it scores as the envelopes it
        has do, beside items that have all."""
        assert self.motion is not None
        store, motion = self.events["visual"], self.motion
        with_halves = self.halves if halves else None
        together = self._picture_kinds_together(rows, with_halves)
        if together is not None:
            return together
        kinds = [
            picture_kinds(
                store.get(r)[:, 0].astype(np.float32),
                motion.get(r)[:, 0].astype(np.float32),
                None if with_halves is None else np.asarray(with_halves.get(r), np.float32),
            )
            for r in rows
        ]
        widest = max((k.shape[1] for k in kinds if k.ndim == 2), default=0)
        return [widened(k, widest) for k in kinds] if widest else kinds

    def _picture_kinds_together(
        self, rows: list[int], halves: SequenceStore | None
    ) -> list[np.ndarray] | None:
        """`_picture_kinds` read with one gather a store (`SequenceStore.batch`) where every row
        has all its envelopes, each as long as its change envelope (None otherwise): the same
        values, without three reads and a concatenation per row."""
        assert self.motion is not None
        stores = [self.events["visual"], self.motion] + ([halves] if halves is not None else [])
        if not rows:
            return None
        lengths = [s.lengths(rows) for s in stores]
        if not (lengths[0] > 0).all() or any((n != lengths[0]).any() for n in lengths[1:]):
            return None
        parts = [s.batch(rows)[0] for s in stores]
        if halves is not None and parts[2].shape[2] == 0:
            return None
        kinds = np.concatenate([parts[0][..., :1], parts[1][..., :1], *parts[2:]], axis=2)
        return [kinds[i, :n] for i, n in enumerate(lengths[0].tolist())]

    def prepare_events(self) -> None:
        """Build the event scans and the landmark and print tables now (done on the first
        search that uses them otherwise)."""
        for m in self.events:
            self._scan(m)
        if self.peaks is not None:
            self._landmark_table()
        if self.prints is not None:
            self._print_table()

    def _landmark_table(self) -> FingerprintTable:
        """Every item's sound landmarks, hashed and sorted (`models.fingerprint`), built on
        first use: ~2 KB of memory per item of 6 s."""
        assert self.peaks is not None
        with self._scans_lock:
            if self._landmarks is None:
                found, offsets = self.peaks.whole()
                self._landmarks = FingerprintTable.from_concatenated(
                    fingerprint.from_store(found), offsets
                )
            return self._landmarks

    def _print_table(self) -> prints.PrintTable:
        """Every item's dense sound prints, values sorted (`models.prints`), built on first use:
        ~1.2 KB of memory per item of 6 s (91 prints at 12 B, and the bucket directory)."""
        assert self.prints is not None
        with self._scans_lock:
            if self._prints is None:
                found, offsets = self.prints.whole()
                self._prints = prints.PrintTable.from_concatenated(
                    prints.from_store(found), offsets
                )
            return self._prints

    def _found_pieces(
        self,
        query: Query,
        primary: str,
        allowed: np.ndarray | None,
        timings: dict[str, float],
    ) -> dict[int, _Piece]:
        """The items a sound is a piece of, in order (`models.prints.pieces`: by the dense
        prints where the index keeps them and they decide, else by the landmarks). Sound
        against sound only: what a piece of a soundtrack says about a picture is the learned
        search's to find."""
        if query.modality != "audio" or primary != "audio":
            return {}
        if not (query.landmarks and self.peaks is not None) and not (
            query.prints and self.prints is not None
        ):
            return {}
        t0 = time.perf_counter()
        none = Match(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
        landmarks = (
            self._landmark_table().match(list(query.landmarks), allowed)
            if query.landmarks and self.peaks is not None
            else none
        )
        timings["landmarks"] = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        found = (
            self._print_table().match(list(query.prints), allowed, also=landmarks.rows)
            if query.prints and self.prints is not None
            else prints.Found(np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
        )
        if query.prints and self.prints is not None:
            timings["prints"] = (time.perf_counter() - t0) * 1e3
        chosen = prints.pieces(found, landmarks)
        return {
            int(r): _Piece(
                float(at), None if np.isnan(ber) else float(ber), int(v) if v > 0 else None
            )
            for r, at, ber, v in zip(
                chosen.rows, chosen.starts_s, chosen.ber, chosen.votes, strict=True
            )
        }

    def _query_seconds(self, query: Query) -> float:
        if query.events is not None and self.event_rate:
            return len(query.events) / self.event_rate
        return 0.0 if query.sequence is None else len(query.sequence) / self.sps

    def _event_candidates(
        self, query: Query, modality: str, allowed: np.ndarray | None, policy: SearchPolicy
    ) -> list[int]:
        """The items whose envelopes match the query's best (`SCAN_CANDIDATES`): a sound
        against pictures by every kind the policy has a picture meet it by, footage against
        sounds by its own kinds (`EventScan.scores`), alike by the single envelopes."""
        assert query.events is not None
        across = query.modality != modality and policy.matches_by_bands(
            query.modality, "video" if modality == "visual" else "audio"
        )
        envelopes: np.ndarray = query.events
        footage = across and query.modality == "visual" and query.motion is not None
        if footage and policy.picture_motion:
            halves = query.halves if policy.picture_halves else None
            envelopes = picture_kinds(query.events, query.motion, halves)
        scores = self._scan(modality).scores(envelopes, across)
        if allowed is not None:
            scores = np.where(allowed, scores, -np.inf)
        n = min(SCAN_CANDIDATES, len(scores))
        if n == 0:
            return []
        top = np.argpartition(-scores, n - 1)[:n]
        top = top[np.isfinite(scores[top])]
        return [int(r) for r in top[np.argsort(-scores[top], kind="stable")]]

    def _pooled_scores(
        self,
        pooled: np.ndarray,
        weights: dict[str, float],
        rows: list[int],
        vectors: Mapping[str, np.ndarray] | None = None,
    ) -> dict[int, float]:
        """The first pass's fused score of `rows` (exact, from the stores; `vectors`: an
        index's own query vector where it differs from `pooled`, as `_first_pass` takes it). An
        item without one of the weighted streams (a silent video) is scored by the others, their
        weights taken as the whole, as `training.evaluate` scores it."""
        if not rows:
            return {}
        total = np.zeros(len(rows), np.float64)
        present = np.zeros(len(rows), np.float64)
        for m, w in weights.items():
            if w <= 0 or m not in self.indexes:
                continue
            vector = pooled if vectors is None or m not in vectors else vectors[m]
            stored, mask = self.version.sequences(f"{m}.pooled").batch(rows)
            total += w * np.where(mask[:, 0], stored[:, 0] @ vector, 0.0)
            present += w * mask[:, 0]
        whole = sum(w for m, w in weights.items() if w > 0 and m in self.indexes)
        scale = np.where(present > 0, whole / np.maximum(present, 1e-12), 1.0)
        return dict(zip(rows, (total * scale).tolist(), strict=True))

    def _event_scores(
        self,
        query: Query,
        rows: list[int],
        modality: str,
        across: bool = False,
        motion: bool = False,
        halves: bool = False,
    ) -> tuple[list[float], list[float | None]]:
        """Each row's event correlation with the query (-1 where it has no envelope), and where
        the query's first bin lies in it, in bins (None: nowhere). A sound against sounds and
        footage against footage are matched band by band where both have bands
        (`models.events.sound_bands`, `picture_bands`), with `across` a sound against a picture
        by the sound's best band (`match_across`; where the policy measured it so); a sound at
        each of its phases (`sound_phases`), the best counting. With `motion` (and `across`), a
        picture meets the sound by its change and motion envelopes, the best pair counting
        (`models.events.picture_kinds`), where it has both; with `halves` by its halves' too,
        where it has them. Items embedded before bands were kept are matched by single
        envelopes."""
        assert query.events is not None
        phases = list(query.phases) or [Phase(0.0, query.events, query.bands)]  # type: ignore[arg-type]
        candidates: list[np.ndarray] | None = None
        banded = False
        query_banded = query.bands is not None and all(p.bands is not None for p in phases)
        # the candidates' bands where they are what the query meets: its own modality's, or a
        # sound's against a picture query
        if modality in self.bands and (
            (query.modality == modality and query_banded)
            or (across and query.modality == "visual" and modality == "audio")
        ):
            stored = [self.bands[modality].get(r) for r in rows]
            # an item embedded before bands were kept has an envelope and no bands
            events = self.events[modality]
            if all(len(b) or not len(events.get(r)) for b, r in zip(stored, rows, strict=True)):
                candidates = [np.asarray(b, np.float32) for b in stored]
                banded = query.modality == modality
        elif across and query.modality == "audio" and modality == "visual" and query_banded:
            banded = True  # the sound's bands against each picture's single envelope
        pairs: bool | None = None
        if candidates is None:
            if across and motion and modality == "visual" and banded and self.motion is not None:
                # the sound's bands against each picture's change and motion envelopes
                candidates, pairs = self._picture_kinds(rows, halves), True
            else:
                store = self.events[modality]
                candidates = [store.get(r)[:, 0].astype(np.float32) for r in rows]
        elif across and motion and query.modality == "visual" and query.motion is not None:
            # footage's change and motion envelopes against each sound's bands
            kinds = picture_kinds(query.events, query.motion, query.halves if halves else None)
            phases = [Phase(p.skip_s, kinds, p.bands) for p in phases]
            pairs = True
        rate = self.event_rate or 1.0
        scores, starts = best_phase(phases, candidates, rate, banded, pairs)
        ok = np.isfinite(scores)
        placed = [float(p) if f else None for p, f in zip(starts, ok, strict=True)]
        return np.where(ok, scores, -1.0).tolist(), placed

    def _sources_agreement(
        self, query: Query, rows: list[int], modality: str, policy: SearchPolicy
    ) -> list[float] | None:
        """What the sources' agreement adds to each of `rows`' re-rank score: the policy's weight
        for the direction × how far the query's and the item's sources agree
        (`models.what_net.agreement`; an item without that store's row: 0). None where it adds
        nothing: no weight, a query or an index without what networks' lists."""
        target = "video" if modality == "visual" else "audio"
        weight = policy.sources_weight(query.modality, target)
        if not weight or query.what is None or modality not in self.what or not rows:
            return None
        items = self._what_lists(modality, rows)
        if items is None:  # none of them has the stream
            return [0.0] * len(rows)
        found = what_agreement(np.asarray(query.what, np.float32)[None], items)[0]
        return (weight * found).tolist()

    def _what_lists(self, modality: str, rows: list[int]) -> np.ndarray | None:
        """(len(rows), C) the what network's list of each of `rows` for `modality`, a row of NaN
        where an item lacks that stream; None where the index keeps no such lists or none of
        `rows` has one."""
        if modality not in self.what:
            return None
        return self._rows_of(self.what[modality], rows)

    @staticmethod
    def _rows_of(store: Any, rows: list[int]) -> np.ndarray | None:
        """(len(rows), K) the one-row-an-item `store`'s row of each of `rows`, a row of NaN where
        an item has none; None where there is no store or none of `rows` has a row."""
        if store is None:
            return None
        vectors, mask = store.batch(rows)
        if vectors.shape[1] == 0:
            return None
        return np.where(mask[:, :1], vectors[:, 0], np.nan).astype(np.float32)

    def _agreement_of(self, row: int) -> dict[str, float | None]:
        if self.agreement is None or not np.isfinite(self.agreement[row, 0]):
            return {"av_agreement": None, "audio_offset_s": None}
        score, offset = self.agreement[row]
        return {"av_agreement": round(float(score), 4), "audio_offset_s": round(float(offset), 3)}

    def _candidates(self, rows: list[int], modality: str) -> tuple[torch.Tensor, torch.Tensor]:
        seq, mask = self.sequences[modality].batch(rows)
        return torch.from_numpy(seq), torch.from_numpy(mask)

    def _project(self, x: np.ndarray) -> torch.Tensor:
        """A query's steps (T, D) or vector (D,) in the stores' space (projected if compressed)."""
        q = np.asarray(x, dtype=np.float32)
        if self.projection is not None:
            q = q @ self.projection
        return torch.from_numpy(np.ascontiguousarray(q))

    def _rerank(
        self, sequence: np.ndarray, rows: list[int], modality: str, distance: Distance
    ) -> tuple[np.ndarray, Callable[[int], Segment | None]]:
        """Distance between the query's steps and each candidate's best-matching window
        (`models.alignment.window_distances`: one batched pass for all K candidates), and a
        function giving candidate i's window as a Segment (built only when asked for)."""
        cand, mask = self._candidates(rows, modality)
        q = self._project(sequence)
        usable = mask.any(dim=1)
        out = np.full(len(rows), np.inf)
        if not usable.any() or q.shape[0] == 0:
            return out, lambda i: None
        idx = usable.nonzero().flatten()
        d, found = window_distances(q, cand[idx], mask[idx], self.sps, distance)
        out[idx.numpy()] = d.numpy()
        position = {int(r): j for j, r in enumerate(idx.tolist())}

        def segment(i: int) -> Segment | None:
            j = position.get(i)
            return None if j is None else found.segment(j)

        return out, segment

    def _segments(self, query: Query, rows: list[int], modality: str) -> list[Segment | None]:
        """Best-matching segment and per-step timeline of each hit in `modality` (None: the hit
        lacks that modality's steps, so there is no segment to show)."""
        if not rows:
            return []
        cand, mask = self._candidates(rows, modality)
        usable = mask.any(dim=1)
        segs: list[Any] = [None] * len(rows)
        if usable.any():
            idx = usable.nonzero().flatten().tolist()
            if query.sequence is not None:
                q = self._project(query.sequence)
                found = align_sequence_batch(
                    q,
                    torch.ones(q.shape[0], dtype=torch.bool),
                    cand[usable],
                    mask[usable],
                    self.sps,
                )
            else:
                found = align_vector_batch(
                    self._project(query.pooled),
                    cand[usable],
                    mask[usable],
                    self.sps,
                )
            for i, seg in zip(idx, found, strict=True):
                segs[i] = seg
        return segs

    def item_query(self, item_id: str, modality: QueryModality = "visual") -> Query:
        """ "More like this": the stored embedding of an indexed item as a query."""
        found = self.items.by_id(item_id)
        if found is None:
            raise KeyError(item_id)
        row, _ = found
        store_name = "visual" if modality == "visual" else "audio"
        pooled_store = self.version.sequences(f"{store_name}.pooled")
        pooled = pooled_store.get(row)
        if len(pooled) == 0:
            raise ValueError(f"item {item_id!r} has no {store_name} embedding")
        sequence = self.sequences[store_name].get(row).astype(np.float32)
        if self.projection is not None:  # stored compressed: back to the model's space
            sequence = sequence @ self.projection.T
        events = bands = None
        if store_name in self.events:
            events = self.events[store_name].get(row)[:, 0].astype(np.float32)
        if store_name in self.bands and len(self.bands[store_name].get(row)):
            bands = np.asarray(self.bands[store_name].get(row), np.float32)
        motion = None
        if store_name == "visual" and self.motion is not None and len(self.motion.get(row)):
            motion = self.motion.get(row)[:, 0].astype(np.float32)
        halves = None
        if motion is not None and self.halves is not None and len(self.halves.get(row)):
            halves = np.asarray(self.halves.get(row), np.float32)
        what = None
        if store_name in self.what and len(named := self.what[store_name].get(row)):
            what = np.asarray(named[0], np.float32)
        return Query(
            modality,
            pooled[0].astype(np.float32),
            sequence,
            events,
            bands,
            motion=motion,
            halves=halves,
            what=what,
        )


def _placed(seg: Segment | None, placement: float, bins: int, rate: float) -> Segment | None:
    """`seg` with its start and end where the query's envelope was placed (its first bin at
    bin `placement` of the item, `bins` long, `rate` bins a second); the per-step timeline is
    kept. The hit's duration clips it later, as it does every segment."""
    if seg is None:
        return seg
    start = max(0.0, placement / rate)
    return Segment(start, max(start, (placement + bins) / rate), seg.score, seg.timeline)


def _at(seg: Segment | None, start_s: float, length_s: float) -> Segment | None:
    """`seg` moved to where the landmarks found the piece (its per-step timeline kept); the
    hit's duration clips it later."""
    if seg is None:
        return seg
    return Segment(start_s, start_s + length_s, seg.score, seg.timeline)


def _read_as(
    query: Query, policy: SearchPolicy, leaning: bool, agreeing: bool, hearing: bool
) -> dict[str, list[tuple[str, float]]] | None:
    """What the sentence was read to name (`models.attributes.named`) of the attributes that
    weigh in this search: those the query leans on, those the readers' agreement re-ranks by,
    and what is heard; None where the query has no reading or none weighs in."""
    if query.reading is None:
        return None
    weighed: set[str] = set()
    if leaning:
        weighed |= set(policy.text_lean()[0])
    if agreeing:
        weighed |= set(policy.agreement_attributes())
    if hearing:
        weighed |= set(HEARD)
    if not weighed:
        return None
    read = query.reading.probabilities
    if hearing and not (leaning or agreeing):  # a search among sounds: what it agreed on
        read = _heard_text(query.reading, policy)
    return named(read, [n for n in ATTRIBUTES if n in weighed])


def _heard_text(reading: AttributeReading, policy: SearchPolicy) -> np.ndarray:
    """The (C,) probabilities a text query searching sounds agrees on: the kinds read at the
    sentence's nouns where the policy measured they help and the query has them
    (`AttributeReading.heard`; `heard_lead` where the policy counts the second noun by its
    lead; with the kinds of a sentence without a noun read from its sound words where the
    policy says so, `heard_sounds` / `heard_lead_sounds`), else the text reader's."""
    if policy.text_heard_nouns:
        at_nouns = {
            (False, False): reading.heard,
            (True, False): reading.heard_lead,
            (False, True): reading.heard_sounds,
            (True, True): reading.heard_lead_sounds,
        }[policy.text_heard_lead, policy.text_heard_sound_words]
        if at_nouns is not None:
            return at_nouns
    return reading.probabilities


def _same_space(query_modality: str, store: str) -> bool:
    """Whether a query's steps come from the encoder that made the `store` modality's steps."""
    return (query_modality, store) in (("visual", "visual"), ("audio", "audio"))


def _message(e: Exception) -> str:
    """The reason, file first; a KeyError's message is otherwise shown as a quoted repr."""
    return str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)


def _segment_tuple(seg: Segment | None) -> tuple[float, float, list[float]]:
    if seg is None:  # the hit lacks the modality's steps: no segment to show
        return (0.0, 0.0, [])
    timeline = np.round(seg.timeline.detach().cpu().numpy().astype(np.float64), 4).tolist()
    return (float(seg.start_s), float(seg.end_s), timeline)
