"""Turn embedding shards into a published index version.

Per modality: gather the pooled vectors of the items that have it, choose a FAISS factory (`auto`
or explicit), build, tune nprobe/efSearch against exact search, and store the per-step sequences.
Everything goes through `VersionWriter`, which publishes atomically with checksums.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from index import ann
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
    CorpusItem,
    Runner,
    bands_store,
    default_work_dir,
    embed_corpus,
    hold_work_dir,
    keeps_timbre,
    load_shard,
    remove_work_dir,
    what_store,
)
from index.store import SequenceWriter, StepEncoding
from index.version import (
    AGREEMENT,
    PROJECTION,
    IndexVersion,
    ItemRecord,
    VersionWriter,
    projection_bytes,
)
from models import fingerprint, prints
from models.alignment import av_agreement
from models.attributes import GLYPH_CLASSES
from models.events import BANDS, EventAgreement, event_agreement, fused_agreement, picture_kinds
from models.features import pad_batch
from models.media import DECODE_VERSION
from models.model import TrimodalModel, checkpoint_hash
from models.motion import HALVES
from models.policy import SearchPolicy, load_policy
from models.what_net import CLASSES

log = logging.getLogger("trimodal.index")


@dataclass(frozen=True)
class BuildReport:
    version: str
    items: int
    failed: dict[str, str]
    factories: dict[str, str]
    params: dict[str, dict[str, Any]]
    resumed_shards: int
    stale_shards: int = 0  # on resume: complete shards whose files had changed, embedded again


def _tuning_queries(vectors: np.ndarray, n: int = 200, seed: int = 0) -> np.ndarray:
    """Queries near the data (a stored vector plus noise), as real queries are."""
    rng = np.random.default_rng(seed)
    picks = vectors[rng.choice(len(vectors), size=min(n, len(vectors)), replace=False)]
    noisy = picks + 0.05 * rng.normal(size=picks.shape).astype(np.float32)
    return (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)


@dataclass(frozen=True)
class SequenceCodec:
    """How the modality stores keep their steps: `[pca<d>-](f16|i8)`.

    - "f16" (default): the steps as they are, float16.
    - "i8": int8 with one scale per step (half of f16's bytes).
    - "pca<d>-f16" / "pca<d>-i8": first projected onto the d directions that carry the most of the
      corpus's step energy (uncentred PCA, fitted at build time on up to `PCA_SAMPLE_STEPS`
      steps and stored with the version); queries are projected the same way at search time.
    The pooled vectors (FAISS and "more like this") are never compressed by this.
    """

    dim: int | None  # projected dimension, None = no projection
    encoding: StepEncoding

    @classmethod
    def parse(cls, spec: str) -> SequenceCodec:
        m = re.fullmatch(r"(?:pca(\d+)-)?(f16|i8)", spec.strip())
        if m is None:
            raise ValueError(f"sequence codec {spec!r}: expected f16, i8, pca<d>-f16 or pca<d>-i8")
        dim = int(m.group(1)) if m.group(1) else None
        if dim is not None and dim < 1:
            raise ValueError(f"sequence codec {spec!r}: the projected dimension must be >= 1")
        return cls(dim, cast(StepEncoding, m.group(2)))

    def __str__(self) -> str:
        return (f"pca{self.dim}-" if self.dim else "") + self.encoding


PCA_SAMPLE_STEPS = 100_000


def fit_projection(sequences: Sequence[np.ndarray], dim: int, seed: int = 0) -> np.ndarray:
    """(D, dim) orthonormal columns: the top eigenvectors of the (uncentred) second moment of the
    steps, so dot products and distances between projected steps approximate the originals.

    Fitted on at most `PCA_SAMPLE_STEPS` steps drawn evenly at random; deterministic for `seed`.
    """
    filled = [s for s in sequences if len(s)]
    if not filled:
        raise ValueError("no steps to fit a projection on")
    full = filled[0].shape[1]
    if dim >= full:
        raise ValueError(f"projection to {dim} dims of {full}-dim steps compresses nothing")
    total = sum(len(s) for s in filled)
    take = min(1.0, PCA_SAMPLE_STEPS / total)
    rng = np.random.default_rng(seed)
    moment = np.zeros((full, full), np.float64)
    for s in filled:
        x = np.asarray(s, np.float32)
        if take < 1.0:
            x = x[rng.random(len(x)) < take]
        moment += x.T.astype(np.float64) @ x
    values, vectors = np.linalg.eigh(moment)  # ascending
    top = vectors[:, np.argsort(values)[::-1][:dim]]
    # Fix each column's sign (largest-magnitude entry positive): the same steps give the same file.
    signs = np.sign(top[np.abs(top).argmax(0), np.arange(dim)])
    return (top * signs).astype(np.float32)


class _VectorSpool:
    """float32 rows appended to a file, read back as a memory map."""

    def __init__(self, path: Path, dim: int) -> None:
        self.path, self.dim, self.rows = path, dim, 0
        self._file: Any = open(path, "wb")  # noqa: SIM115 (closed by matrix())

    def append(self, vector: np.ndarray) -> None:
        row = np.asarray(vector, dtype=np.float32).reshape(-1)
        if row.shape != (self.dim,):
            raise ValueError(f"pooled vector of shape {row.shape}, expected ({self.dim},)")
        self._file.write(row.tobytes())
        self.rows += 1

    def close(self) -> None:
        self._file.close()

    def matrix(self) -> np.ndarray:
        self._file.close()
        return np.memmap(self.path, dtype=np.float32, mode="r", shape=(self.rows, self.dim))


@dataclass(frozen=True)
class Entry:
    """One item as it goes into a version: its record, and per modality its pooled vector and
    its steps (None / zero steps where the item lacks that modality)."""

    record: ItemRecord
    pooled: dict[str, np.ndarray | None]
    steps: dict[str, np.ndarray]
    # per modality its event envelope (`models.events`), and "<modality>_bands" its banded one
    # (bins, B); absent or empty: none (an index built before they were kept, or an item
    # without that stream)
    events: dict[str, np.ndarray] = field(default_factory=dict)


def entries_from_shards(
    items: Sequence[CorpusItem], shards: Sequence[Path], dim: int, failed: dict[str, str]
) -> Iterator[Entry]:
    """Entries of freshly embedded items; refused files go to `failed` with their reason."""
    by_id = {item.id: item for item in items}
    for path in shards:
        shard = load_shard(path)
        cursor = {m: (0, 0, 0) for m in MODALITIES}  # pooled row, step and event offsets
        # Shards written before envelopes were kept have none: their items get none.
        kept_events = all(f"{m}_events" in shard for m in MODALITIES)
        kept_bands = kept_events and all(f"{m}_bands" in shard for m in MODALITIES)
        kept_motion = kept_events and "visual_motion" in shard
        kept_halves = kept_events and "visual_halves" in shard
        kept_peaks = "audio_peaks" in shard
        kept_prints = "audio_prints" in shard
        kept_what = {m for m in MODALITIES if f"{m}_what" in shard}
        kept_direction = "visual_direction" in shard
        kept_kind = "visual_glyph" in shard
        kept_timbre = "audio_timbre" in shard
        peak_row = print_row = 0  # the sound landmarks' and prints' offsets
        for k, raw_id in enumerate(shard["ids"]):
            item_id = str(raw_id)
            if shard["errors"][k]:
                failed[item_id] = str(shard["errors"][k])
                continue
            pooled: dict[str, np.ndarray | None] = {}
            steps: dict[str, np.ndarray] = {}
            events: dict[str, np.ndarray] = {}
            for m in MODALITIES:
                if shard[f"{m}_present"][k]:
                    row, step, event = cursor[m]
                    n_steps = int(shard[f"{m}_lengths"][row])
                    pooled[m] = shard[f"{m}_pooled"][row]
                    steps[m] = shard[f"{m}_steps"][step : step + n_steps]
                    n_bins = int(shard[f"{m}_event_lengths"][row]) if kept_events else 0
                    if kept_events:
                        events[m] = shard[f"{m}_events"][event : event + n_bins]
                    if kept_bands:
                        events[f"{m}_bands"] = shard[f"{m}_bands"][event : event + n_bins]
                    if kept_motion and m == "visual":
                        events["visual_motion"] = shard["visual_motion"][event : event + n_bins]
                    if kept_halves and m == "visual":
                        events["visual_halves"] = shard["visual_halves"][event : event + n_bins]
                    if kept_peaks and m == "audio":
                        n_peaks = int(shard["audio_peak_counts"][row])
                        events["audio_peaks"] = shard["audio_peaks"][peak_row : peak_row + n_peaks]
                        peak_row += n_peaks
                    if kept_prints and m == "audio":
                        n_prints = int(shard["audio_print_counts"][row])
                        events["audio_prints"] = shard["audio_prints"][
                            print_row : print_row + n_prints
                        ]
                        print_row += n_prints
                    if m in kept_what:
                        events[f"{m}_what"] = shard[f"{m}_what"][row]
                    if kept_direction and m == "visual":
                        events["visual_direction"] = shard["visual_direction"][row]
                    if kept_kind and m == "visual":
                        events["visual_glyph"] = shard["visual_glyph"][row]
                    if kept_timbre and m == "audio":
                        events["audio_timbre"] = shard["audio_timbre"][row]
                    cursor[m] = (row + 1, step + n_steps, event + n_bins)
                else:
                    pooled[m], steps[m] = None, np.zeros((0, dim), dtype=np.float16)
            item = by_id[item_id]
            record = ItemRecord(
                id=item_id,
                media=str(item.media),
                duration_s=float(shard["duration_s"][k]),
                has_video=pooled["visual"] is not None,
                has_audio=pooled["audio"] is not None,
                title=item.title,
                meta=item.meta,
            )
            yield Entry(record, pooled, steps, events)


def entries_from_version(version: IndexVersion, exclude: Iterable[str] = ()) -> Iterator[Entry]:
    """Entries of an existing version, read back from its stores: nothing is embedded again."""
    table = version.items()
    exclude = set(exclude)
    projection = version.projection()
    stores = version.manifest["sequence_stores"]
    kept = [m for m in MODALITIES if f"{m}.events" in stores]
    banded = [m for m in MODALITIES if bands_store(m) in stores]
    moving = MOTION_STORE in stores
    halved = HALVES_STORE in stores
    landmarks = PEAKS_STORE in stores
    printed = PRINTS_STORE in stores
    named = [m for m in MODALITIES if what_store(m) in stores]
    directed = DIRECTION_STORE in stores
    glyphed = GLYPH_STORE in stores
    timbred = TIMBRE_STORE in stores
    for row in range(len(table)):
        record = table.by_row(row)
        if record.id in exclude:
            continue
        pooled: dict[str, np.ndarray | None] = {}
        steps: dict[str, np.ndarray] = {}
        for m in MODALITIES:
            stored = version.sequences(f"{m}.pooled").get(row)
            pooled[m] = np.asarray(stored[0], dtype=np.float32) if len(stored) else None
            steps[m] = np.asarray(version.sequences(m).get(row))
            if projection is not None:  # back to the full space; the same projection is reused
                steps[m] = steps[m].astype(np.float32) @ projection.T
        events = {m: version.sequences(f"{m}.events").get(row)[:, 0] for m in kept}
        for m in banded:
            events[f"{m}_bands"] = np.asarray(
                version.sequences(bands_store(m)).get(row), np.float32
            )
        if moving:
            events["visual_motion"] = version.sequences(MOTION_STORE).get(row)[:, 0]
        if halved:
            events["visual_halves"] = np.asarray(
                version.sequences(HALVES_STORE).get(row), np.float32
            )
        if landmarks:
            events["audio_peaks"] = np.asarray(version.sequences(PEAKS_STORE).get(row), np.float32)
        if printed:
            events["audio_prints"] = np.asarray(
                version.sequences(PRINTS_STORE).get(row), np.float32
            )
        for m in named:
            found = np.asarray(version.sequences(what_store(m)).get(row), np.float32)
            if len(found):
                events[f"{m}_what"] = found[0]
        if directed:
            found = np.asarray(version.sequences(DIRECTION_STORE).get(row), np.float32)
            if len(found):
                events["visual_direction"] = found[0]
        if glyphed:
            found = np.asarray(version.sequences(GLYPH_STORE).get(row), np.float32)
            if len(found):
                events["visual_glyph"] = found[0]
        if timbred:
            found = np.asarray(version.sequences(TIMBRE_STORE).get(row), np.float32)
            if len(found):
                events["audio_timbre"] = found[0]
        yield Entry(record, pooled, steps, events)


def policy_record(policy: SearchPolicy) -> dict[str, Any]:
    """The model's search policy for a version's build info; none when the model had none (an
    index without one searches pooled-only by default, see `index.search`)."""
    return {"search_policy": policy.to_dict()} if policy.recorded else {}


def policy_of(version: IndexVersion) -> dict[str, Any]:
    """A derived version (add, remove) keeps the policy, the event rate and the what classes of
    the one it derives from (same model), and its decoder's version: its items keep what that
    decoder measured, and an added item's is never older (`models.media.DECODE_VERSION`; a
    version that recorded none was decoded before they were counted)."""
    build = version.manifest.get("build", {})
    kept = (
        "search_policy",
        "event_rate",
        "what_classes",
        "direction_classes",
        "glyph_classes",
        "timbre_classes",
        "decode_version",
    )
    return {k: build[k] for k in kept if build.get(k) is not None}


def codec_of(version: IndexVersion) -> tuple[SequenceCodec, np.ndarray | None]:
    """The codec and projection a version was built with (add/remove keep them)."""
    spec = version.manifest.get("build", {}).get("sequence_codec", "f16")
    return SequenceCodec.parse(spec), version.projection()


def publish_entries(
    root: Path,
    entries: Iterable[Entry],
    *,
    model_hash: str,
    dim: int,
    steps_per_second: float,
    index_type: str = "auto",
    build_info: dict[str, Any] | None = None,
    failed: dict[str, str] | None = None,
    codec: SequenceCodec | str = "f16",
    projection: np.ndarray | None = None,
) -> BuildReport:
    """Build the FAISS indexes and stores for `entries` and publish them as a new version.

    Streams: each entry's steps go to the stores as it arrives, so memory holds the pooled vectors
    (for FAISS) and not the sequences. `codec` says how the modality stores keep steps
    (`SequenceCodec`); a projecting codec fits its projection on the first `PCA_SAMPLE_STEPS`
    steps (buffered until then) unless `projection` (e.g. the previous version's) is given.
    """
    codec = SequenceCodec.parse(str(codec))
    if codec.dim is None:
        projection = None
    elif projection is not None and projection.shape != (dim, codec.dim):
        raise ValueError(f"projection {projection.shape} does not fit codec {codec}")
    store_dim = codec.dim or dim
    failed = {} if failed is None else failed  # filled while `entries` is consumed
    present: dict[str, list[int]] = {m: [] for m in MODALITIES}
    seen: set[str] = set()
    records: list[ItemRecord] = []  # not yet in the item table
    buffered: list[Entry] = []  # waiting for the projection to be fitted
    buffered_steps = 0
    # Audio–visual agreement per item, from its own two sequences: only meaningful when a timing
    # objective trained them (the model's recorded policy says so).
    policy = SearchPolicy.from_dict((build_info or {}).get("search_policy"))
    agreeing = policy.sequence_trained
    event_rate = (build_info or {}).get("event_rate")
    naming = (build_info or {}).get("what_classes") == len(CLASSES)
    directing = (build_info or {}).get("direction_classes") == DIRECTIONS
    glyphing = (build_info or {}).get("glyph_classes") == GLYPH_CLASSES
    timbring = (build_info or {}).get("timbre_classes") == len(CLASSES)
    agreement = _Agreements(
        steps_per_second,
        event_rate if policy.agreement_event_weight is not None else None,
        policy.agreement_event_weight or 0.0,
        policy.agreement_bands,
        policy.picture_motion,
        policy.picture_halves,
    )
    with (
        VersionWriter(
            root, model_hash=model_hash, dim=dim, steps_per_second=steps_per_second, factories={}
        ) as writer,
        contextlib.ExitStack() as open_stores,
    ):
        # Pooled vectors wait on disk, not in memory, until the FAISS indexes are built from them.
        pooled = {m: _VectorSpool(writer.scratch() / f"{m}.f32", dim) for m in MODALITIES}
        stores: dict[str, SequenceWriter] = {}

        def open_all() -> None:
            for m in MODALITIES:
                stores[m] = open_stores.enter_context(
                    writer.sequence_writer(m, store_dim, codec.encoding)
                )
                # Pooled vectors per item too (one-step "sequences"): "more like this".
                stores[f"{m}.pooled"] = open_stores.enter_context(
                    writer.sequence_writer(f"{m}.pooled")
                )
                # Event envelopes (one value a bin) where the build info says at what rate.
                if event_rate is not None:
                    stores[f"{m}.events"] = open_stores.enter_context(
                        writer.sequence_writer(f"{m}.events", 1)
                    )
                # Banded envelopes: sounds against sounds and footage against footage match
                # band by band; int8 (standardised values, each bin its own float16 scale)
                if event_rate is not None:
                    stores[bands_store(m)] = open_stores.enter_context(
                        writer.sequence_writer(bands_store(m), BANDS[m], "i8")
                    )
            # A picture's motion envelope (`models.events.picture_motion`): what it meets a
            # sound by beside its change envelope
            if event_rate is not None:
                stores[MOTION_STORE] = open_stores.enter_context(
                    writer.sequence_writer(MOTION_STORE, 1)
                )
            # A picture's halves' change and motion envelopes (`models.events.picture_halves`):
            # what it meets a sound by beside those of the whole picture; int8 as the bands
            if event_rate is not None:
                stores[HALVES_STORE] = open_stores.enter_context(
                    writer.sequence_writer(HALVES_STORE, 2 * len(HALVES), "i8")
                )
            # A sound's landmarks (`models.fingerprint`): where a piece of it was cut from.
            # float16 keeps them exactly (`fingerprint.to_store`).
            stores[PEAKS_STORE] = open_stores.enter_context(
                writer.sequence_writer(PEAKS_STORE, fingerprint.STORE_DIM)
            )
            # A sound's dense prints (`models.prints`): where a piece of it was cut from when
            # its peaks say nothing. float16 keeps them exactly (`prints.to_store`).
            stores[PRINTS_STORE] = open_stores.enter_context(
                writer.sequence_writer(PRINTS_STORE, prints.STORE_DIM)
            )
            # The sources each stream shows / sounds (`models.what_net`), where the model
            # names them (the build info says so): one row of class probabilities an item.
            if naming:
                for m in MODALITIES:
                    stores[what_store(m)] = open_stores.enter_context(
                        writer.sequence_writer(what_store(m), len(CLASSES))
                    )
            # A picture's chances of each direction by where its foreground goes
            # (`models.drift`), where the model reads them (the build info says so).
            if directing:
                stores[DIRECTION_STORE] = open_stores.enter_context(
                    writer.sequence_writer(DIRECTION_STORE, DIRECTIONS)
                )
            # A picture's chances of each kind and colour by its glyphs' outlines and pixels
            # (`models.shape`), where the model reads them (the build info says so).
            if glyphing:
                stores[GLYPH_STORE] = open_stores.enter_context(
                    writer.sequence_writer(GLYPH_STORE, GLYPH_CLASSES)
                )
            # A sound's chances of each kind × size by how it sounds (`models.timbre`), where
            # the model reads them (the build info says so).
            if timbring:
                stores[TIMBRE_STORE] = open_stores.enter_context(
                    writer.sequence_writer(TIMBRE_STORE, len(CLASSES))
                )

        def emit(entry: Entry) -> None:
            if not stores:
                open_all()
            for m in MODALITIES:
                steps = entry.steps[m]
                if projection is not None:
                    steps = np.asarray(steps, np.float32).reshape(-1, dim) @ projection
                stores[m].append(steps)
                vector = entry.pooled[m]
                stores[f"{m}.pooled"].append(
                    np.zeros((0, dim), np.float32)
                    if vector is None
                    else np.asarray(vector, np.float32)[None]
                )
                if event_rate is not None:
                    found = entry.events.get(m)
                    bins = np.zeros(0, np.float32) if found is None else found
                    stores[f"{m}.events"].append(np.asarray(bins, np.float32).reshape(-1, 1))
                if event_rate is not None:
                    banded = entry.events.get(f"{m}_bands")  # none: embedded before them
                    stores[bands_store(m)].append(
                        np.zeros((0, BANDS[m]), np.float32)
                        if banded is None
                        else np.asarray(banded, np.float32).reshape(-1, BANDS[m])
                    )
            if event_rate is not None:
                motion = entry.events.get("visual_motion")  # none: embedded before it
                stores[MOTION_STORE].append(
                    np.zeros((0, 1), np.float32)
                    if motion is None
                    else np.asarray(motion, np.float32).reshape(-1, 1)
                )
                halves = entry.events.get("visual_halves")  # none: embedded before them
                stores[HALVES_STORE].append(
                    np.zeros((0, 2 * len(HALVES)), np.float32)
                    if halves is None
                    else np.asarray(halves, np.float32).reshape(-1, 2 * len(HALVES))
                )
            peaks = entry.events.get("audio_peaks")  # none: embedded before them, or silent
            stores[PEAKS_STORE].append(
                np.zeros((0, fingerprint.STORE_DIM), np.float32)
                if peaks is None
                else np.asarray(peaks, np.float32).reshape(-1, fingerprint.STORE_DIM)
            )
            found = entry.events.get("audio_prints")  # none: embedded before them, or silent
            stores[PRINTS_STORE].append(
                np.zeros((0, prints.STORE_DIM), np.float32)
                if found is None
                else np.asarray(found, np.float32).reshape(-1, prints.STORE_DIM)
            )
            if naming:
                for m in MODALITIES:
                    found = entry.events.get(f"{m}_what") if entry.pooled[m] is not None else None
                    stores[what_store(m)].append(
                        np.zeros((0, len(CLASSES)), np.float32)
                        if found is None
                        else np.asarray(found, np.float32).reshape(1, len(CLASSES))
                    )
            if directing:
                going = (
                    entry.events.get("visual_direction")
                    if entry.pooled["visual"] is not None
                    else None
                )
                stores[DIRECTION_STORE].append(
                    np.zeros((0, DIRECTIONS), np.float32)
                    if going is None
                    else np.asarray(going, np.float32).reshape(1, DIRECTIONS)
                )
            if glyphing:
                # none kept for an item without pictures or whose glyphs were not read
                glyphs = (
                    entry.events.get("visual_glyph") if entry.pooled["visual"] is not None else None
                )
                # (the store keeps finite rows: a row with an attribute unread is kept as none;
                # the attribute phase fits both readers together)
                if glyphs is not None and np.isnan(np.asarray(glyphs, np.float32)).any():
                    glyphs = None
                stores[GLYPH_STORE].append(
                    np.zeros((0, GLYPH_CLASSES), np.float32)
                    if glyphs is None
                    else np.asarray(glyphs, np.float32).reshape(1, GLYPH_CLASSES)
                )
            if timbring:
                # none kept for an item without sound or where nothing stood above its
                # background (a row of NaN)
                heard = (
                    entry.events.get("audio_timbre") if entry.pooled["audio"] is not None else None
                )
                if heard is not None and np.isnan(np.asarray(heard, np.float32)).any():
                    heard = None
                stores[TIMBRE_STORE].append(
                    np.zeros((0, len(CLASSES)), np.float32)
                    if heard is None
                    else np.asarray(heard, np.float32).reshape(1, len(CLASSES))
                )
            records.append(entry.record)
            if len(records) >= 1000:
                writer.add_items(records)
                records.clear()

        def fit_and_flush() -> None:
            nonlocal projection, buffered
            assert codec.dim is not None
            projection = fit_projection(
                [e.steps[m] for e in buffered for m in MODALITIES], codec.dim
            )
            for e in buffered:
                emit(e)
            buffered = []

        for n, entry in enumerate(entries):
            if agreeing:
                agreement.add(entry)
            if entry.record.id in seen:
                raise ValueError(
                    f"item {entry.record.id!r} is already in the index; remove it first"
                )
            seen.add(entry.record.id)
            for m in MODALITIES:
                vector = entry.pooled[m]
                if vector is not None:
                    pooled[m].append(vector)
                    present[m].append(n)
            if codec.dim is not None and projection is None:
                buffered.append(entry)
                buffered_steps += sum(len(entry.steps[m]) for m in MODALITIES)
                if buffered_steps >= PCA_SAMPLE_STEPS:
                    fit_and_flush()
                continue
            emit(entry)
        if buffered:
            fit_and_flush()
        if not stores:  # no entries at all: empty stores still make a valid version
            open_all()
        if records:
            writer.add_items(records)
        for w in stores.values():
            w.close()

        factories: dict[str, str] = {}
        params: dict[str, dict[str, Any]] = {}
        for m in MODALITIES:
            if not pooled[m].rows:
                pooled[m].close()
                continue
            vectors = pooled[m].matrix()  # a memory map: read a sample, then block by block
            factories[m] = ann.choose_factory(len(vectors), dim, index_type)
            index = ann.build(vectors, factories[m])
            params[m] = ann.tune(index, vectors, _tuning_queries(vectors))
            ann.save(index, writer.path / f"{m}.faiss")
            writer.write_rows(m, np.asarray(present[m], dtype=np.int64))
            del index, vectors
        if projection is not None:
            writer.add_file(PROJECTION, projection_bytes(projection))
        if agreeing:
            table = agreement.table()
            buffer = io.BytesIO()
            np.save(buffer, table, allow_pickle=False)
            writer.add_file(AGREEMENT, buffer.getvalue())
        writer.describe(
            factories,
            {
                **(build_info or {}),
                "params": params,
                "failed": failed,
                "sequence_codec": str(codec),
            },
        )
        version = writer.publish()
    return BuildReport(version, len(seen), failed, factories, params, 0)


def _float(steps: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(steps, np.float32))


class _Agreements:
    """Each entry's (score, audio offset s) of its own sound against its own picture, NaN without
    one; computed 256 items at a time (one call per item cost 2 ms, mostly dispatch)."""

    CHUNK = 256

    def __init__(
        self,
        steps_per_second: float,
        event_rate: float | None = None,
        event_weight: float = 0.0,
        by_bands: bool = False,
        motion: bool = False,
        halves: bool = False,
    ) -> None:
        """`event_rate`: the entries' envelopes join in (`models.events.fused_agreement`);
        `by_bands`: the sound's by its best band where the entry has bands, with `motion` against
        the picture's change and motion envelopes where the entry has both, with `halves` its
        halves' too where it has them."""
        self.sps = steps_per_second
        self.event_rate = event_rate
        self.event_weight = event_weight
        self.by_bands = by_bands
        self.motion = motion
        self.halves = halves
        self.values: list[tuple[float, float]] = []
        self.pending: list[tuple[int, np.ndarray, np.ndarray]] = []
        self.events: dict[int, EventAgreement | None] = {}

    def add(self, entry: Entry) -> None:
        a, v = entry.steps["audio"], entry.steps["visual"]
        self.values.append((math.nan, math.nan))
        if len(a) and len(v):
            row = len(self.values) - 1
            self.pending.append((row, a, v))
            sound, picture = entry.events.get("audio"), entry.events.get("visual")
            bands = entry.events.get("audio_bands")
            if self.by_bands and bands is not None and len(bands):
                sound = bands
                if self.motion and picture is not None:
                    picture = picture_kinds(
                        picture,
                        entry.events.get("visual_motion"),
                        entry.events.get("visual_halves") if self.halves else None,
                    )
            if self.event_rate is not None and sound is not None and picture is not None:
                self.events[row] = event_agreement(sound, picture, self.event_rate)
            if len(self.pending) >= self.CHUNK:
                self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        rows = [r for r, _, _ in self.pending]
        a, am = pad_batch([_float(x) for _, x, _ in self.pending])
        v, vm = pad_batch([_float(x) for _, _, x in self.pending])
        for row, found in zip(rows, av_agreement(a, am, v, vm, self.sps), strict=True):
            events = self.events.pop(row, None)
            self.values[row] = fused_agreement(
                found.score, found.offset_s, events, self.event_weight
            )
        self.pending = []

    def table(self) -> np.ndarray:
        self._flush()
        return np.asarray(self.values, np.float32).reshape(-1, 2)


def publish_from_shards(
    root: Path,
    items: Sequence[CorpusItem],
    shards: Sequence[Path],
    *,
    model_hash: str,
    dim: int,
    steps_per_second: float,
    index_type: str = "auto",
    build_info: dict[str, Any] | None = None,
    codec: SequenceCodec | str = "f16",
) -> BuildReport:
    failed: dict[str, str] = {}
    return publish_entries(
        root,
        entries_from_shards(items, shards, dim, failed),
        model_hash=model_hash,
        dim=dim,
        steps_per_second=steps_per_second,
        index_type=index_type,
        build_info=build_info,
        failed=failed,
        codec=codec,
    )


def remove_items(root: Path, ids: set[str], index_type: str = "auto") -> BuildReport:
    """A new version without `ids` (the current one is left untouched, as every version is)."""
    base = IndexVersion.open(root)
    missing = ids - set(base.items().ids())
    if missing:
        raise KeyError(f"not in the index: {sorted(missing)[:5]}")
    m = base.manifest
    codec, projection = codec_of(base)
    return publish_entries(
        root,
        entries_from_version(base, ids),
        model_hash=m["model_hash"],
        dim=base.dim,
        steps_per_second=float(m["steps_per_second"]),
        index_type=index_type,
        build_info={"derived_from": base.name, "removed": len(ids), **policy_of(base)},
        codec=codec,
        projection=projection,
    )


def adopt_policy(root: Path, checkpoint: Path, index_type: str = "auto") -> BuildReport:
    """A new version of the same items with the search defaults the checkpoint records now
    (`trimodal policy` measured them again): nothing is embedded again; the per-item agreement
    is computed again, as the defaults say. Refused for another model's checkpoint (its
    defaults were measured on other embeddings) or one that records none."""
    base = IndexVersion.open(root)
    m = base.manifest
    if checkpoint_hash(checkpoint) != m["model_hash"]:
        raise ValueError(
            f"{checkpoint} is not the model index {base.name} was built with: its search "
            "defaults were measured on other embeddings"
        )
    policy = load_policy(checkpoint)
    if not policy.recorded:
        raise ValueError(f"{checkpoint} records no search defaults (see `trimodal policy`)")
    codec, projection = codec_of(base)
    return publish_entries(
        root,
        entries_from_version(base),
        model_hash=m["model_hash"],
        dim=base.dim,
        steps_per_second=float(m["steps_per_second"]),
        index_type=index_type,
        build_info={
            "derived_from": base.name,
            **policy_of(base),
            **policy_record(policy),
            "policy_from": str(checkpoint),
        },
        codec=codec,
        projection=projection,
    )


def add_items(
    root: Path,
    items: Sequence[CorpusItem],
    model: TrimodalModel,
    model_hash: str,
    *,
    work_dir: Path | None = None,
    index_type: str = "auto",
    resume: bool = False,
    workers: int | None = None,
    batch_size: int = 16,
    shard_size: int = 256,
    on_progress: Callable[[int, int], None] | None = None,
) -> BuildReport:
    """A new version = the current one + `items`; only the new items are embedded (into
    `work_dir`, by default keyed by the items like `build_index`'s, removed once published)."""
    base = IndexVersion.open(root)
    if base.manifest["model_hash"] != model_hash:
        raise ValueError(
            "the index was built with another model checkpoint; rebuild it (`index build`) "
            "instead of mixing embeddings from two models"
        )
    clash = {i.id for i in items} & set(base.items().ids())
    if clash:
        raise ValueError(f"already indexed: {sorted(clash)[:5]}; remove them first")
    work = work_dir or default_work_dir(root, items, shard_size, model_hash, "add")
    with hold_work_dir(work):
        report = embed_corpus(
            items,
            model,
            model_hash,
            work,
            shard_size=shard_size,
            batch_size=batch_size,
            workers=workers,
            resume=resume,
            on_progress=on_progress,
            kind="add",
            restart=work_dir is None,
        )
        failed: dict[str, str] = {}
        codec, projection = codec_of(base)
        entries = itertools.chain(
            entries_from_version(base),
            entries_from_shards(items, report.shards, base.dim, failed),
        )
        built = publish_entries(
            root,
            entries,
            model_hash=model_hash,
            dim=base.dim,
            steps_per_second=float(base.manifest["steps_per_second"]),
            index_type=index_type,
            build_info={"derived_from": base.name, "added": len(items), **policy_of(base)},
            failed=failed,
            codec=codec,
            projection=projection,
        )
        _drop_work_dir(work)
    return _with_resume_counts(built, report.skipped_shards, report.stale_shards)


def build_index(
    root: Path,
    items: Sequence[CorpusItem],
    model: TrimodalModel,
    model_hash: str,
    *,
    work_dir: Path | None = None,
    index_type: str = "auto",
    resume: bool = False,
    workers: int | None = None,
    batch_size: int = 16,
    shard_size: int = 256,
    on_progress: Callable[[int, int], None] | None = None,
    sequence_codec: SequenceCodec | str = "f16",
    runner: Runner | None = None,
) -> BuildReport:
    """Embed (resumable) and publish a new version under `root`.

    The shards go to `work_dir`, by default ROOT/.work/<key prefix>/ (keyed by what is built, so
    builds of other inputs never collide); it is removed once the version is published.

    `runner` runs the embedding stages (default: this machine; `index.ray_runner.RayRunner`: a
    Ray cluster); the shards it writes are merged into one version here either way.
    """
    codec = SequenceCodec.parse(str(sequence_codec))  # fails before any embedding
    work = work_dir or default_work_dir(root, items, shard_size, model_hash, "build")
    with hold_work_dir(work):
        report = embed_corpus(
            items,
            model,
            model_hash,
            work,
            shard_size=shard_size,
            batch_size=batch_size,
            workers=workers,
            resume=resume,
            on_progress=on_progress,
            runner=runner,
            kind="build",
            restart=work_dir is None,
        )
        built = publish_from_shards(
            root,
            items,
            report.shards,
            model_hash=model_hash,
            dim=model.cfg.embed_dim,
            steps_per_second=model.cfg.steps_per_second,
            index_type=index_type,
            build_info={
                "shard_size": shard_size,
                "items_requested": len(items),
                **policy_record(model.search_policy),
                "event_rate": model.cfg.visual.fps,
                "decode_version": DECODE_VERSION,
                # how many source classes the items' what stores hold (`models.what_net`)
                **({"what_classes": len(CLASSES)} if model.knows_what() else {}),
                # a picture's directions by where its foreground goes (`models.drift`)
                **({"direction_classes": DIRECTIONS} if model.knows_directions() else {}),
                # a picture's kinds and colours by its glyphs (`models.shape`)
                **({"glyph_classes": GLYPH_CLASSES} if model.knows_glyphs() else {}),
                # a sound's kinds and sizes by how it sounds (`models.timbre`)
                **({"timbre_classes": len(CLASSES)} if keeps_timbre(model) else {}),
            },
            codec=codec,
        )
        _drop_work_dir(work)
    return _with_resume_counts(built, report.skipped_shards, report.stale_shards)


def _drop_work_dir(work: Path) -> None:
    """After a publish: the shards are in the version now. Failing to remove them must not turn
    a published build into a failed one; `gc` removes what is left once it is stale."""
    try:
        remove_work_dir(work)
    except OSError as e:
        log.warning("published, but could not remove the work directory %s: %s", work, e)


def _with_resume_counts(built: BuildReport, resumed: int, stale: int) -> BuildReport:
    return BuildReport(
        built.version, built.items, built.failed, built.factories, built.params, resumed, stale
    )
