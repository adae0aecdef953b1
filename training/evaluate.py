"""Evaluation: recall@K and median rank for text→video, text→audio, audio→video, video→audio.

Each direction is measured with pooled retrieval and with hybrid retrieval (pooled top-K, then a
sequence re-rank), on the whole pool, on the held-out combinations and on the timing twins. For text
queries on SynthAV the oracle ceiling is reported too: how well a perfect model could do, given
how many pool items share the query's attributes (a caption cannot tell them apart).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import Any

import numpy as np
import torch
from torch import Tensor

from models import prints as pr
from models.alignment import Agreement, av_agreement, window_distances
from models.attributes import (
    AGREEMENT_K,
    ATTRIBUTES,
    HEARD,
    agreement_bound,
    agreement_logs,
    heard_reading,
    with_directions,
    with_glyphs,
    with_sources,
)
from models.attributes import CLASSES as READ_CLASSES
from models.attributes import agreement as reader_agreement
from models.cohort import cohort_rows, sequence_offsets
from models.encoders import Embeddings
from models.events import (
    SCAN_CANDIDATES,
    EventAgreement,
    EventScan,
    Phase,
    best_phase,
    event_agreement,
    item_events,
    match_events,
    picture_bands,
    picture_halves,
    picture_kinds,
    picture_motion,
    sound_phases,
)
from models.fingerprint import FingerprintTable, peaks, query_peaks
from models.model import TrimodalModel
from models.policy import SearchPolicy
from models.sequence import Distance, sequence_similarity
from models.what_net import CLASSES
from models.what_net import agreement as what_agreement
from training.cache import FeatureCache, TextCache
from training.datasets import ManifestItem
from training.metrics import ceiling_recall, ranks_from_scores, summarise
from training.shapes import clip_shapes
from training.timbres import clip_timbres

DIRECTIONS = ("text→video", "text→audio", "audio→video", "video→audio")


@dataclass
class Pool:
    ids: list[str]
    visual: Embeddings  # rows for every id; rows without video are masked out by has_video
    audio: Embeddings
    has_video: Tensor  # (N,) bool
    has_audio: Tensor
    event_rate: float = 12.0  # envelope bins a second: the model's frame rate
    # where the rows' media are, to take their event envelopes from when first asked for (most
    # evaluations never are: per-epoch validation is pooled only)
    cache: FeatureCache | None = field(default=None, repr=False, compare=False)
    sample_rate: int = 16_000
    _events: dict[str, list[np.ndarray]] | None = field(default=None, repr=False, compare=False)
    _scans: dict[str, EventScan] = field(default_factory=dict, repr=False, compare=False)
    _landmarks: FingerprintTable | None = field(default=None, repr=False, compare=False)
    _prints: pr.PrintTable | None = field(default=None, repr=False, compare=False)
    # excerpt protocols' queries, cut and encoded once per pool (`_excerpt_queries`)
    _excerpts: dict[tuple, _ExcerptQueries] = field(default_factory=dict, repr=False, compare=False)
    # whether a picture meets a sound by its halves' envelopes too (`models.events.picture_kinds`),
    # as a policy that records `picture_halves` searches; set before `events` is first read
    picture_halves: bool = True
    # the model's picture envelope (`TrimodalModel.picture_envelope`); None: the hand-made one
    picture_envelope: Callable[..., np.ndarray] | None = field(
        default=None, repr=False, compare=False
    )
    # "visual" / "audio" → (N, len(CLASSES)) the sources each row's picture shows / sound sounds
    # (`models.what_net`), NaN rows where it has no such stream; None: the model has no networks
    what: dict[str, np.ndarray] | None = field(default=None, repr=False, compare=False)
    # (N, 3) each row's picture read for the chance of each direction by where its foreground
    # goes (`TrimodalModel.picture_directions`), NaN rows without pictures; None: the model has
    # no drift reader
    directions: np.ndarray | None = field(default=None, repr=False, compare=False)
    # (N, GLYPH_CLASSES) each row's picture read for the chance of each kind and colour by its
    # glyphs (`TrimodalModel.glyph_reading`), NaN where not read; None: the model reads neither,
    # or the pool was embedded without its items' files
    glyphs: np.ndarray | None = field(default=None, repr=False, compare=False)
    # (N, 14) each row's sound read for the chance of each kind × size by how it sounds
    # (`TrimodalModel.timbre_reading`), NaN where not read; None: the model has no timbre
    # reader, or the pool was embedded without its items' files
    timbres: np.ndarray | None = field(default=None, repr=False, compare=False)
    _offsets: dict[str, Tensor] = field(default_factory=dict, repr=False, compare=False)

    def heard(self, timbre: bool = True) -> np.ndarray | None:
        """(N, C) what each row's sound is heard to be (`models.attributes.heard_reading`: the
        kind and size by the sound what network's list and, with `timbre`, by how it sounds);
        None where the pool has neither reading."""
        timbres = self.timbres if timbre else None
        if timbres is None and self.what is None:
            return None
        what = None if self.what is None else self.what["audio"]
        return heard_reading(what, timbres, len(self.ids))

    @property
    def events(self) -> dict[str, list[np.ndarray]]:
        """ "visual" / "audio" → each row's event envelope, "visual_bands" / "audio_bands" → its
        banded ones, "visual_motion" → its picture's motion envelope, "visual_halves" → its
        halves' (`models.events.picture_halves`), "visual_kinds" → what its picture meets a
        sound by (`models.events.picture_kinds`, with the halves if `picture_halves`; empty: no
        stream)."""
        if self._events is None:
            if self.cache is None:
                raise ValueError("this pool was made without its media: no envelopes to take")
            found = [
                item_events(
                    np.asarray(self.cache.frames(i)),
                    self.cache.audio(i),
                    self.event_rate,
                    self.sample_rate,
                    self.cache.changes(i),
                    self.cache.region_changes(i),
                    self.cache.motion(i),
                    self.cache.halves(i),
                    picture_envelope=self.picture_envelope,
                )
                for i in self.ids
            ]
            kinds = (
                "visual",
                "audio",
                "visual_bands",
                "audio_bands",
                "visual_motion",
                "visual_halves",
            )
            self._events = {m: [e[m] for e in found] for m in kinds}
            self._events["visual_kinds"] = [
                picture_kinds(
                    e["visual"],
                    e["visual_motion"],
                    e["visual_halves"] if self.picture_halves else None,
                )
                for e in found
            ]
        return self._events

    def landmarks(self) -> FingerprintTable:
        """Every row's sound landmarks, as an index keeps them (none for a row without sound),
        built once."""
        if self._landmarks is None:
            if self.cache is None:
                raise ValueError("this pool was made without its media: no sounds to take")
            self._landmarks = _landmark_table(self.cache, self.ids, self.has_audio)
        return self._landmarks

    def prints(self) -> pr.PrintTable:
        """Every row's dense sound prints, as an index keeps them (none for a row without
        sound), built once."""
        if self._prints is None:
            if self.cache is None:
                raise ValueError("this pool was made without its media: no sounds to take")
            self._prints = _print_table(self.cache, self.ids, self.has_audio)
        return self._prints

    def sequence_offsets(self, direction: str, steps_per_second: float) -> Tensor:
        """(N,) each row's offset of the step similarity for `direction` ("audio→video": the
        rows' pictures against a cohort of the pool's sounds; "video→audio": the reverse;
        `models.cohort`), the cohort the rows with both streams; computed once."""
        if direction not in self._offsets:
            pair = (self.audio, self.visual)
            src, dst = pair if direction == "audio→video" else pair[::-1]
            both = (self.has_video & self.has_audio).numpy()
            self._offsets[direction] = sequence_offsets(
                src.sequence,
                src.mask,
                dst.sequence,
                dst.mask,
                cohort_rows(self.ids, both),
                steps_per_second,
            )
        return self._offsets[direction]

    def scan(self, modality: str) -> EventScan:
        """The event scan over every row's `modality` envelopes, built once: a picture's by
        what it meets a sound by ("visual_kinds", its change envelope first), a sound's single."""
        if modality not in self._scans:
            kind = "visual_kinds" if modality == "visual" else modality
            self._scans[modality] = EventScan(self.events[kind], self.event_rate)
        return self._scans[modality]


def _cat(parts: list[Embeddings]) -> Embeddings:
    longest = max(p.sequence.shape[1] for p in parts)
    seqs = [
        torch.nn.functional.pad(p.sequence, (0, 0, 0, longest - p.sequence.shape[1])) for p in parts
    ]
    masks = [torch.nn.functional.pad(p.mask, (0, longest - p.mask.shape[1])) for p in parts]
    return Embeddings(torch.cat([p.pooled for p in parts]), torch.cat(seqs), torch.cat(masks))


@torch.inference_mode()
def embed_pool(
    model: TrimodalModel,
    cache: FeatureCache,
    ids: Sequence[str],
    batch_size: int = 64,
    picture_halves: bool = True,
    items: Mapping[str, ManifestItem] | None = None,
) -> Pool:
    """The items' embeddings, their envelopes taken from `cache` when first asked for;
    `picture_halves`: whether pictures meet sounds by their halves too (`Pool.picture_halves`:
    as a policy that records it searches); `items` (id → item, for their files): where the model
    reads the glyphs' kinds and colours, each picture's (`training.shapes`, kept beside the
    cache), and where it reads each sound's timbre, each sound's (`training.timbres`, the same)."""
    model.eval()
    vis, aud = [], []
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        clips = [np.asarray(cache.frames(i)) for i in chunk]
        v = model.encode_pictures(cache.pictures.inputs(model, clips, chunk))
        a = model.encode_audio(*model.audio_inputs([cache.audio(i) for i in chunk]))
        vis.append(Embeddings(v.pooled.float().cpu(), v.sequence.float().cpu(), v.mask.cpu()))
        aud.append(Embeddings(a.pooled.float().cpu(), a.sequence.float().cpu(), a.mask.cpu()))
    has_video = torch.tensor([len(cache.frames(i)) > 0 for i in ids])
    has_audio = torch.tensor([cache.audio(i).size > 0 for i in ids])
    what = None
    if model.knows_what():
        what = {
            "visual": _what_rows(model.picture_what, [cache.frames(i) for i in ids], has_video),
            "audio": _what_rows(model.sound_what, [cache.audio(i) for i in ids], has_audio),
        }
    directions = None
    if model.knows_directions():
        directions = _what_rows(
            model.picture_directions,
            [cache.frames(i) for i in ids],
            has_video,
            len(ATTRIBUTES["direction"]),
        )
    glyphs = None
    if model.knows_glyphs() and items is not None:
        shapes = clip_shapes([items[i] for i in ids if i in items], cache.directory)
        glyphs = model.glyph_reading([shapes.get(i) for i in ids])
        assert glyphs is not None
        glyphs[~has_video.numpy()] = np.nan
    timbres = None
    if model.knows_timbre() and items is not None:
        runs = clip_timbres([items[i] for i in ids if i in items], cache.directory)
        timbres = model.timbre_reading([runs.get(i) for i in ids])
        assert timbres is not None
        timbres[~has_audio.numpy()] = np.nan
    return Pool(
        list(ids),
        _cat(vis),
        _cat(aud),
        has_video,
        has_audio,
        event_rate=model.cfg.visual.fps,
        cache=cache,
        sample_rate=model.cfg.audio.sample_rate,
        picture_halves=picture_halves,
        picture_envelope=model.picture_envelope,
        what=what,
        directions=directions,
        glyphs=glyphs,
        timbres=timbres,
    )


def _what_rows(
    name: Callable[[list], np.ndarray | None], media: list, has: Tensor, width: int = len(CLASSES)
) -> np.ndarray:
    """(N, `width`) `name`'s probabilities for the rows that `has` the stream (`width`: its
    classes, the what networks' or the 3 directions), NaN rows for the others."""
    out = np.full((len(media), width), np.nan, np.float32)
    rows = has.nonzero().flatten().tolist()
    if rows:
        found = name([np.asarray(media[r]) for r in rows])
        assert found is not None
        out[rows] = found
    return out


def take_rows(e: Embeddings, rows: Tensor) -> Embeddings:
    """The embeddings of `rows` only."""
    return Embeddings(e.pooled[rows], e.sequence[rows], e.mask[rows])


def agreement_parts(
    model: TrimodalModel,
    audio: Embeddings,
    visual: Embeddings,
    sounds: Sequence[np.ndarray],
    pictures: Sequence[np.ndarray],
) -> list[tuple[Agreement, EventAgreement | None]]:
    """Each clip's sound (row i of `audio`, envelope `sounds[i]`) against its picture (row i of
    `visual`, `pictures[i]`): the steps' agreement and the envelopes' (None: no events), for
    `models.events.fused_agreement` to combine as an index does (`index.build`)."""
    steps = av_agreement(
        audio.sequence, audio.mask, visual.sequence, visual.mask, model.cfg.steps_per_second
    )
    rate = model.cfg.visual.fps
    return [
        (found, event_agreement(sound, picture, rate))
        for found, sound, picture in zip(steps, sounds, pictures, strict=True)
    ]


def _signature(meta: dict[str, Any], kind: str) -> tuple | None:
    """What a caption of `kind` can say about a SynthAV clip: clips with equal signatures are
    indistinguishable to it. None for corpora without SynthAV metadata (the own generator's, or
    the foreign renderer's in benchmarks/foreign, which writes the same meta)."""
    if meta.get("generator") not in ("synthav", "foreign"):
        return None
    seen = sorted(
        (s["kind"], s["colour"], s["size"], s["tempo"], s["direction"])
        for s in meta["sources"]
        if s["role"] != "offscreen"
    )
    heard = sorted((s["kind"], s["size"], s["tempo"]) for s in meta["audio"]["sources"])
    if kind == "visual":
        return ("v", meta["scene"], tuple(seen))
    if kind == "audio":
        return ("a", meta["audio"]["ambience"], tuple(heard))
    meant = sorted(
        (s["kind"], s["colour"], s["size"], s["tempo"], s["direction"], s["role"])
        for s in meta["sources"]
    )
    return ("av", meta["scene"], meta["ambience"], tuple(meant))


@dataclass
class Queries:
    vectors: Tensor  # (Q, hidden) cached sentence vectors
    target: Tensor  # (Q,) row in the pool
    subset: dict[str, Tensor]  # name → (Q,) bool
    equivalent: Tensor | None  # (Q,) pool items sharing the caption's signature
    sentences: list[str] = field(default_factory=list)  # the captions, row for row


def _text_queries(
    items: dict[str, ManifestItem],
    pool: Pool,
    texts: TextCache,
    kinds: Sequence[str],
    need: Tensor,
    asking: Tensor | None = None,
) -> Queries:
    """Every caption of the wanted kinds is a query; its clip is the one right answer. `need`:
    the rows that can be found; `asking`: those whose captions query (default: all of them).

    Captions must already be in `texts` (the caller embeds them with the text tower).
    """
    sentences, target, heldout, twins, sigs = [], [], [], [], []
    for row, item_id in enumerate(pool.ids):
        if not need[row] or (asking is not None and not asking[row]):
            continue
        item = items[item_id]
        for kind in kinds:
            for caption in item.captions.get(kind, ()):
                sentences.append(caption)
                target.append(row)
                heldout.append(bool(item.meta.get("heldout")))
                twins.append(item.meta.get("twin_group") is not None)
                sigs.append(_signature(item.meta, kind))
    equivalent = None
    if sentences and all(s is not None for s in sigs):
        counts = Counter(
            _signature(items[i].meta, kind)
            for r, i in enumerate(pool.ids)
            if need[r]
            for kind in kinds
        )
        equivalent = torch.tensor([counts[s] for s in sigs])
    return Queries(
        texts.lookup(sentences) if sentences else torch.zeros(0, 1),
        torch.tensor(target, dtype=torch.long),
        {
            "heldout": torch.tensor(heldout, dtype=torch.bool),
            "twins": torch.tensor(twins, dtype=torch.bool),
        },
        equivalent,
        sentences,
    )


def text_reading(
    model: TrimodalModel, sentences: Sequence[str], batch: int = 256
) -> tuple[Tensor, Tensor]:
    """Each sentence's (Q, C) attribute probabilities and (Q, A, D) directions
    (`TrimodalModel.attribute_reading`), its token states read by the model's frozen tower."""
    probabilities, directions, _ = text_readings(model, sentences, batch, heard=False)
    return probabilities, directions


def text_readings(
    model: TrimodalModel, sentences: Sequence[str], batch: int = 256, heard: bool = True
) -> tuple[Tensor, Tensor, dict[tuple[bool, bool], Tensor]]:
    """`text_reading` and, with `heard` where the checkpoint reads nouns, the same probabilities
    with the kinds read at each sentence's nouns (`TrimodalModel.heard_readings`), from one pass
    of the frozen tower: by whether the second noun is counted by its lead and whether a
    sentence whose nouns are not found is read from its sound words, the rules the checkpoint
    has (empty: not read)."""
    probabilities, directions = [], []
    rules = [
        (lead, sounds)
        for lead in (False, True)
        for sounds in (False, True)
        if heard
        and (model.knows_noun_lead() or not lead)
        and (model.knows_sound_words() or not sounds)
    ]
    rules = rules if model.knows_nouns() else []
    at_nouns: dict[tuple[bool, bool], list[Tensor]] = {rule: [] for rule in rules}
    with torch.inference_mode():
        for s in range(0, len(sentences), batch):
            states, mask = model.text.backbone.states(list(sentences[s : s + batch]))
            p, d = model.attribute_reading(states, mask)
            probabilities.append(p)
            directions.append(d)
            if at_nouns:
                for rule, found in model.heard_readings(states, mask, p).items():
                    at_nouns[rule].append(found)
    if not probabilities:
        empty = torch.zeros(0, len(READ_CLASSES))
        return empty, torch.zeros(0, len(ATTRIBUTES), 0), {rule: empty for rule in rules}
    by_rule = {rule: torch.cat(read) for rule, read in at_nouns.items()}
    return torch.cat(probabilities), torch.cat(directions), by_rule


def picture_probabilities(
    model: TrimodalModel,
    pooled: Tensor,
    what: np.ndarray | None = None,
    directions: np.ndarray | None = None,
    glyphs: np.ndarray | None = None,
) -> Tensor:
    """(N, C): the picture reader's probabilities of (N, D) pooled picture vectors, read as the
    service reads them (`models.attributes.PictureReader`), with kind and size from the picture
    what network's (N, 14) lists where given (`models.attributes.with_sources`), the direction
    from where each picture's foreground goes where given ((N, 3),
    `models.attributes.with_directions`), and the kind and colour from its glyphs where given
    ((N, `GLYPH_CLASSES`), `models.attributes.with_glyphs`)."""
    assert model.attributes is not None
    reader = model.attributes.picture_reader()
    found = reader.probabilities(pooled.float().cpu().numpy())
    if what is not None:
        found = with_sources(found, what)
    if directions is not None:
        found = with_directions(found, directions)
    if glyphs is not None:
        found = with_glyphs(found, glyphs)
    return torch.from_numpy(found)


def agreement_rerank(
    scores: Tensor,
    text: Tensor,
    pictures: Tensor,
    names: Sequence[str],
    weight: float,
    k: int = AGREEMENT_K,
    found: int = 0,
) -> Tensor:
    """(Q, N) first-pass scores with each query's best `k` re-scored as the service re-ranks a
    text query's videos: + `weight` × the readers' agreement on `names`
    (`models.attributes.agreement` of the (Q, C) `text` and (N, C) `pictures` probabilities);
    the rest stay below them, in their order. With `found` > 0 the `found` items whose
    `models.attributes.agreement_bound` is highest (among those the first pass scores, not −∞)
    join each query's re-ranked ones, as the service finds them among every item
    (`SearchPolicy.text_agreement_found`)."""
    k = min(k, scores.shape[1])
    top = scores.topk(k, dim=1).indices  # (Q, k)
    if found > 0:
        logs = agreement_logs(pictures.numpy(), names)
        bound = torch.from_numpy(agreement_bound(text.numpy(), logs, names))  # (Q, N)
        bound = bound.masked_fill(torch.isneginf(scores), -torch.inf)
        extra = bound.topk(min(found, scores.shape[1]), dim=1).indices
        top = torch.cat([top, extra], dim=1)  # an item in both is scored twice, alike
    agree = reader_agreement(text[:, None, :], pictures[top], names)  # (Q, k)
    out = scores - 1e6  # below every re-ranked one, in their first-pass order
    out.scatter_(1, top, scores.gather(1, top) + weight * agree)
    return out


def _rerank_ranks(
    pooled_scores: Tensor,
    target: Tensor,
    rerank_scores,
    k: int,
    extra: Callable[[int], Tensor] | None = None,
) -> Tensor:
    """Ranks after re-ordering each query's pooled top-k, and the candidates `extra(q)` adds
    (the event scan's), by `rerank_scores(q, candidates)`.

    The target keeps its pooled rank when it is not a candidate (re-ranking cannot reach it).
    """
    base = ranks_from_scores(pooled_scores, target)
    k = min(k, pooled_scores.shape[1])
    top = pooled_scores.topk(k, dim=1).indices  # (Q, k)
    out = base.clone()
    for q in range(pooled_scores.shape[0]):
        cand = top[q] if extra is None else _union(top[q], extra(q))
        hit = (cand == target[q]).nonzero()
        if hit.numel() == 0:
            continue
        s = rerank_scores(q, cand)  # (k,)
        out[q] = int((s >= s[hit[0, 0]]).sum())
    return out


def _union(first: Tensor, more: Tensor) -> Tensor:
    """`first`, then the entries of `more` not in it, in order."""
    # a comparison table: a few times faster than torch.isin at these sizes (k ≤ a few hundred)
    return torch.cat([first, more[~(more[:, None] == first[None, :]).any(dim=1)]])


def _event_candidates(
    scan: EventScan, queries: Sequence[np.ndarray], allowed: Tensor, across: bool = False
) -> Callable[[int], Tensor]:
    """Query i → the rows whose envelopes match its envelopes best (`SCAN_CANDIDATES`);
    `across`: a sound against a picture (`EventScan.scores`)."""
    known: dict[int, Tensor] = {}

    def extra(qi: int) -> Tensor:
        if qi not in known:
            found = scan.scores(queries[qi], across)
            s = torch.from_numpy(found).masked_fill(~allowed, -torch.inf)
            top = s.topk(min(SCAN_CANDIDATES, len(s))).indices
            known[qi] = top[torch.isfinite(s[top])]
        return known[qi]

    return extra


def _report(ranks: Tensor, subset: dict[str, Tensor]) -> dict[str, Any]:
    out = {"all": summarise(ranks)}
    for name, mask in subset.items():
        if mask.any():
            out[name] = summarise(ranks[mask])
    return out


def shares_an_event(meta: dict[str, Any]) -> bool:
    """Whether a clip's sound and picture share an event source: a seen-and-heard source with
    events (an engine has none), and the sound track is the clip's own. Only such a clip can be
    told from others by *when* things happen in it."""
    if meta.get("misaligned"):
        return False
    return any(s.get("role") == "main" and s.get("events") for s in meta.get("sources", ()))


def clip_subsets_of(items: Sequence[ManifestItem]) -> dict[str, Tensor]:
    """The clips reported apart (from SynthAV metadata; a corpus without it has none): held-out
    combinations, timing twins, and the clips whose sound and picture share an event source."""
    if not any(i.meta for i in items):
        return {}
    return {
        "heldout": torch.tensor([bool(i.meta.get("heldout")) for i in items]),
        "twins": torch.tensor([i.meta.get("twin_group") is not None for i in items]),
        "shared": torch.tensor([shares_an_event(i.meta) for i in items]),
    }


def evaluate(
    model: TrimodalModel,
    items: Sequence[ManifestItem],
    cache: FeatureCache,
    texts: TextCache,
    rerank_k: int = 100,
    distance: str = "interp",
    modes: Sequence[str] = ("pooled", "hybrid"),
    policy: SearchPolicy | None = None,
) -> dict[str, Any]:
    """Every direction × mode × subset. Items missing from the cache (skipped files) are out.
    With `policy` (the checkpoint's), every direction also gets "service": what a search does by
    default — the recorded steps' and envelopes' weights where it re-ranks, pooled elsewhere;
    text→video with the picture's and the sound's indexes fused at the recorded share, the lean
    and the readers' agreement (with the candidates it finds among every clip); text→audio
    re-ranked by the agreement on what is heard."""
    by_id = {i.id: i for i in items if i.id in cache.row}
    pool = embed_pool(
        model,
        cache,
        list(by_id),
        picture_halves=policy is None or policy.picture_halves,
        items=by_id,
    )
    results: dict[str, Any] = {"pool": len(pool.ids)}
    clip_subsets = clip_subsets_of([by_id[i] for i in pool.ids])
    with torch.inference_mode():
        for direction in DIRECTIONS:
            results[direction] = _direction(
                model, direction, by_id, pool, texts, clip_subsets, rerank_k, distance, modes
            )
            if policy is not None and direction == "text→video":
                if results[direction]:  # there were captions to ask with
                    share = policy.text_video_weights().get("audio", 0.0)
                    results[direction]["service"] = _direction(
                        *(model, direction, by_id, pool, texts, clip_subsets, rerank_k, distance),
                        ("pooled",),
                        audio_share=share,
                        lean=policy.text_lean(),
                        reader_weight=policy.text_agreement(),
                        reader_names=policy.agreement_attributes(),
                        reader_found=policy.agreement_found(),
                    )["pooled"]
            elif policy is not None and direction == "text→audio":
                if results[direction]:  # re-ranked by what is heard where val measured it helps
                    results[direction]["service"] = _direction(
                        *(model, direction, by_id, pool, texts, clip_subsets, rerank_k, distance),
                        ("pooled",),
                        reader_weight=policy.heard_agreement(),
                        heard_timbre=policy.text_heard_timbre,
                        heard_nouns=policy.text_heard_nouns,
                        heard_lead=policy.text_heard_lead,
                        heard_sound_words=policy.text_heard_sound_words,
                    )["pooled"]
            elif policy is not None and not direction.startswith("text"):
                results[direction]["service"] = _service(
                    model, direction, by_id, pool, clip_subsets, rerank_k, distance, policy
                )
    return results


def clip_seconds(model: TrimodalModel, pool: Pool) -> float | None:
    """How long the pool's clips with sound and picture are (the median's sound, seconds): the
    length whole-clip queries have, which picks their defaults (`SearchPolicy.for_length`)."""
    both = pool.has_audio & pool.has_video
    if not bool(both.any()):
        return None
    steps = pool.audio.mask[both].sum(dim=1).float()
    return float(steps.median()) / model.cfg.steps_per_second


def _service(model, direction, by_id, pool, clip_subsets, rerank_k, distance, policy):
    """Whole-clip queries as a search answers them by default under `policy` (the defaults of
    a query as long as the clips)."""
    policy = policy.for_length(clip_seconds(model, pool))
    if not policy.rerank.get(direction, False):
        return _direction(
            model, direction, by_id, pool, None, clip_subsets, rerank_k, distance, ("pooled",)
        )["pooled"]
    weighting = (policy.rerank_weight.get(direction), policy.event_weight.get(direction, 0.0))
    return _direction(
        model,
        direction,
        by_id,
        pool,
        None,
        clip_subsets,
        rerank_k,
        distance,
        ("hybrid",),
        (weighting[0],),
        (weighting[1],),
        cross_bands=direction in policy.cross_bands,
        what_weight=policy.what_weight.get(direction, 0.0),
    )["hybrid"]


def _direction(
    model,
    direction,
    by_id,
    pool,
    texts,
    clip_subsets,
    rerank_k,
    distance,
    modes,
    weights=(None,),
    event_weights=(0.0,),
    cross_bands=True,
    querying: Tensor | None = None,
    audio_share: float = 0.0,
    lean: tuple[Sequence[str], float] = ((), 0.0),
    reader_weight: float = 0.0,
    reader_names: Sequence[str] = (),
    reader_found: int = 0,
    heard_timbre: bool = True,
    heard_nouns: bool = False,
    heard_lead: bool = False,
    heard_sound_words: bool = False,
    what_weight: float = 0.0,
    keep_ranks: bool = False,
    sequence_offsets: bool = False,
):
    """One direction's report. text→video scores each clip by (1 − `audio_share`) × the
    caption's similarity to its picture's vector + `audio_share` × to its sound's (a clip without
    sound by its picture alone), as the service's first pass fuses the two indexes
    (`SearchPolicy.text_video_weights`; the service scores the union of each index's top
    candidates exactly from its stores; here every clip is scored). With `lean` (attribute names
    and a weight, `SearchPolicy.text_lean`) the caption's vector for the picture leans as the
    service's does (`models.attributes`), and with `reader_weight` > 0 the best `AGREEMENT_K` are
    re-ranked by the readers' agreement on `reader_names` (empty: the lean's; `agreement_rerank`;
    kind and size read by the picture what network where the pool has its lists), with the
    `reader_found` items it finds among every clip (`agreement_rerank`'s `found`); text→audio
    with `reader_weight` > 0 re-ranks the same way by the agreement on the kind and size heard
    (`models.attributes.HEARD`, read by `Pool.heard`: each sound's what list and, with
    `heard_timbre`, its timbre; with `heard_nouns`, the sentence's kinds read at its nouns,
    `text_readings`, its second noun counted by its lead with `heard_lead`, a sentence whose
    nouns are not found read from its sound words with `heard_sound_words`; the text reader's
    where the checkpoint has no such reading, as the service falls back).
    Audio/video queries:
    "hybrid" re-ranks with `weights[0]` (None: the sequence distance alone; w: pooled + w × the
    steps' similarity, `fused_score`) and `event_weights[0]` (e > 0: + e × the event envelopes'
    correlation, by the sound's best band if `cross_bands`, else by the single envelopes; and
    the event scan's candidates join the pooled ones), and with several weightings
    "hybrid_by_weight" holds each one's (the distances computed once). `querying` ((pool size,)
    bool): the clips whose sound, footage or captions query (default all; the others are
    searched, as distractors). `what_weight`: how much the sources' agreement adds in the
    re-rank (`fused_score`; where the pool has the model's what networks' lists); `keep_ranks`:
    "hybrid_ranks" holds each query's rank (for a paired comparison of two weightings);
    `sequence_offsets`: audio/video queries' re-rank takes each candidate's offset
    (`Pool.sequence_offsets`, `models.cohort`) off its step similarity."""
    both = pool.has_video & pool.has_audio
    if direction.startswith("text"):
        target_emb = pool.visual if direction == "text→video" else pool.audio
        has = pool.has_video if direction == "text→video" else pool.has_audio
        kinds = ("visual", "audiovisual") if direction == "text→video" else ("audio",)
        q = _text_queries(by_id, pool, texts, kinds, has, querying)
        if q.target.numel() == 0:
            return {}
        qv = model.project_text(q.vectors.to(model.device)).pooled.float().cpu()
        scores = qv @ target_emb.pooled.T
        if direction == "text→video" and audio_share > 0:
            heard = qv @ pool.audio.pooled.T
            scores = torch.where(
                pool.has_audio, (1 - audio_share) * scores + audio_share * heard, scores
            )
        names, lean_weight = lean
        leaning = (
            direction == "text→video" and names and lean_weight > 0 and model.knows_attributes()
        )
        hearing = (
            direction == "text→audio"
            and reader_weight > 0
            and pool.what is not None
            and model.knows_attributes()
        )
        read = (
            text_readings(model, q.sentences, heard=hearing and heard_nouns)
            if leaning or hearing
            else None
        )
        if read is not None and leaning:
            chosen = [list(ATTRIBUTES).index(n) for n in names]
            gained = lean_weight * read[1][:, chosen].sum(dim=1)
            scores = scores + gained @ target_emb.pooled.T
        scores[:, ~has] = -torch.inf
        if read is not None and leaning and reader_weight > 0:
            shown = None if pool.what is None else pool.what["visual"]
            pictures = picture_probabilities(
                model, target_emb.pooled, shown, pool.directions, pool.glyphs
            )
            agreeing = tuple(reader_names) or tuple(names)
            scores = agreement_rerank(
                scores, read[0], pictures, agreeing, reader_weight, found=reader_found
            )
        found = pool.heard(heard_timbre) if read is not None and hearing else None
        if read is not None and found is not None:
            sounds = torch.from_numpy(found)
            rule = (heard_lead, heard_sound_words)
            said = read[2].get(rule, read[0]) if heard_nouns else read[0]
            scores = agreement_rerank(scores, said, sounds, HEARD, reader_weight)
        subset, equivalent = q.subset, q.equivalent
        target = q.target

        def seq_score(qi, cand):  # pooled score and best single step, averaged
            steps = target_emb.sequence[cand] @ qv[qi]  # (k, T)
            steps = steps.masked_fill(~target_emb.mask[cand], -torch.inf).amax(dim=1)
            return 0.5 * (scores[qi, cand] + steps)

        def hybrid_ranks(w: float | None, e: float) -> Tensor:
            return _rerank_ranks(scores, target, seq_score, rerank_k)

        combos: list[Weighting] = [(None, 0.0)]
    else:
        src_m, dst_m = ("audio", "visual") if direction == "audio→video" else ("visual", "audio")
        src, dst = (
            (pool.audio, pool.visual) if direction == "audio→video" else (pool.visual, pool.audio)
        )
        rows = (both if querying is None else both & querying).nonzero().flatten()
        scores = src.pooled[rows] @ dst.pooled.T
        scores[:, ~both] = -torch.inf
        target = rows
        subset = {k: v[rows] for k, v in clip_subsets.items()}
        equivalent = None

        sps = model.cfg.steps_per_second

        def sequence_distance(qi, cand):  # as `index.search` re-ranks: each candidate's window
            r = rows[qi]
            steps = src.sequence[r][src.mask[r]]
            return window_distances(steps, dst.sequence[cand], dst.mask[cand], sps, distance)[0]

        memo = _Memo(sequence_distance)
        # with `cross_bands`, the sound's bands against the picture's change and motion
        # envelopes, the best pair counting (`models.events.match_across`), as `index.search`
        # does then
        kind = {"audio": "audio_bands", "visual": "visual_kinds"} if cross_bands else {}
        queries = [pool.events[kind.get(src_m, src_m)][r] for r in rows.tolist()]
        event_memo = _event_memo(
            queries, pool.events[kind.get(dst_m, dst_m)], across=True if cross_bands else None
        )
        # the scan for candidates as `index.search` scans: the sound's single envelope, the
        # picture's kinds with `cross_bands` (`EventScan.scores`)
        scanned = "visual_kinds" if cross_bands and src_m == "visual" else src_m
        singles = [pool.events[scanned][r] for r in rows.tolist()]
        extra = _event_candidates(pool.scan(dst_m), singles, both, bool(cross_bands))
        combos = list(product(weights, event_weights))
        fused: dict[Weighting, Tensor] = {}
        agreement = (
            what_agreement(pool.what[src_m][rows.numpy()], pool.what[dst_m])
            if what_weight and pool.what is not None
            else None
        )

        def hybrid_ranks(w: float | None, e: float) -> Tensor:
            if not fused:  # every weighting at once
                ranked = _fused_ranks(
                    scores,
                    target,
                    combos,
                    memo,
                    distance,
                    event_memo,
                    rerank_k,
                    extra,
                    agreement,
                    what_weight,
                    pool.sequence_offsets(direction, sps) if sequence_offsets else None,
                )
                fused.update(ranked)
            return fused[w, e]

    out: dict[str, Any] = {}
    if "pooled" in modes:
        out["pooled"] = _report(ranks_from_scores(scores, target), subset)
    if "hybrid" in modes:
        out["hybrid"] = _report(hybrid_ranks(*combos[0]), subset)
        if keep_ranks:
            out["hybrid_ranks"] = hybrid_ranks(*combos[0]).tolist()
        if len(combos) > 1:
            out["hybrid_by_weight"] = {
                weight_label(w, e): _report(hybrid_ranks(w, e), subset) for w, e in combos
            }
    if equivalent is not None:
        out["ceiling"] = {"all": ceiling_recall(equivalent)}
        for name, mask in subset.items():
            if mask.any():
                out["ceiling"][name] = ceiling_recall(equivalent[mask])
    return out


class _Memo:
    """A query's distances (or scores) to candidates, each computed once for every weight tried
    (the candidates of a query differ between weights only by the event scan's). Kept as one
    row per query over the pool's rows, NaN where not computed yet: a lookup is an index, not a
    Python loop over the candidates (the policy measurement asks ~170k times)."""

    def __init__(self, compute: Callable[[int, Tensor], Tensor]) -> None:
        self.compute = compute
        self.known: dict[int, Tensor] = {}

    def __call__(self, qi: int, cand: Tensor) -> Tensor:
        row = self.known.get(qi)
        need = int(cand.max()) + 1 if cand.numel() else 0
        if row is None or len(row) < need:
            grown = torch.full((need if row is None else max(need, len(row)),), torch.nan)
            if row is not None:
                grown[: len(row)] = row
            row = self.known[qi] = grown
        found = row[cand]
        missing = cand[torch.isnan(found)]
        if missing.numel():
            row[missing] = self.compute(qi, missing).float()
            found = row[cand]
        return found


def _event_memo(
    queries: Sequence[np.ndarray | list[Phase]],
    targets: Sequence[np.ndarray],
    rate: float = 1.0,
    banded: bool = False,
    across: bool | None = None,
) -> _Memo:
    """Query i's event correlation with each candidate row (`models.events.match_events`); a
    query given as a sound's phases (`sound_phases`) scores its best phase, on the phases'
    banded envelopes if `banded`, as `index.search` does. `across`: sound against picture by
    the best pair (`match_across`; None: as the shapes say)."""

    def compute(qi: int, cand: Tensor) -> Tensor:
        query, chosen = queries[qi], [targets[c] for c in cand.tolist()]
        if isinstance(query, list):
            found, _ = best_phase(query, chosen, rate, banded, across)
        else:
            found = match_events(query, chosen, across=across).scores
        return torch.from_numpy(np.where(np.isfinite(found), found, -1.0).astype(np.float32))

    return _Memo(compute)


# A re-rank weighting: (sequence weight, None = the sequence distance alone; event weight).
Weighting = tuple[float | None, float]


def weight_label(w: float | None, events: float = 0.0) -> str:
    label = "sequence" if w is None else f"{w:g}"
    return label if not events else f"{label}+events {events:g}"


def fused_score(
    pooled: Tensor,
    distances: Tensor,
    weight: float | None,
    distance: Distance,
    correlations: Tensor | None = None,
    event_weight: float = 0.0,
    agreement: Tensor | None = None,
    what_weight: float = 0.0,
) -> Tensor:
    """The re-rank's score of candidates, as the service computes it (`index.search`): the
    sequence distance alone (None), or the pooled score plus `weight` × the steps' similarity;
    plus `event_weight` × the event envelopes' correlation; plus `what_weight` × how far the
    query's and the candidate's sources agree (`models.what_net.agreement`)."""
    if weight is None:
        base = -distances
    else:
        base = pooled + weight * sequence_similarity(distances, distance)
    if correlations is not None and event_weight:
        base = base + event_weight * correlations
    if agreement is not None and what_weight:
        base = base + what_weight * agreement
    return base


def _fused_ranks(
    pooled_scores: Tensor,
    target: Tensor,
    combos: Sequence[Weighting],
    memo: _Memo,
    distance: Distance,
    events: _Memo,
    k: int,
    extra: Callable[[int], Tensor],
    agreement: Tensor | None = None,
    what_weight: float = 0.0,
    offsets: Tensor | None = None,
) -> dict[Weighting, Tensor]:
    """Every weighting's ranks after the re-rank (`fused_score`), as `_rerank_ranks` gives them
    one weighting at a time: the pooled top-k re-ordered, and with an event weight the event
    scan's candidates (`extra`) joining them. A query's distances and correlations are asked of
    the memos in the order the weightings one by one asked (so the memos compute the same, and
    every figure is the same), and its candidates' scores are made once per weighting, a few
    operations each instead of a memo lookup per weighting (the search policy ranks each of its
    ~1,000 queries by 24 weightings in 18 protocols). `agreement` ((Q, pool size)): the sources'
    agreement, weighed by `what_weight` in every weighting. `offsets` ((pool size,)): each
    candidate's offset of the step similarity (`models.cohort`), taken off it in every weighting
    that adds one."""
    base = ranks_from_scores(pooled_scores, target)
    k = min(k, pooled_scores.shape[1])
    top = pooled_scores.topk(k, dim=1).indices  # (Q, k)
    out = {c: base.clone() for c in combos}
    groups: dict[bool, list[Weighting]] = {}  # by whether the scan's candidates join, in order
    for combo in combos:
        groups.setdefault(bool(combo[1]), []).append(combo)
    for q in range(pooled_scores.shape[0]):
        for scanned, group in groups.items():
            cand = _union(top[q], extra(q)) if scanned else top[q]
            hit = (cand == target[q]).nonzero()
            if hit.numel() == 0:  # re-ranking cannot reach it: its pooled rank stays
                continue
            at = int(hit[0, 0])
            d = memo(q, cand)
            correlations = events(q, cand) if scanned else None
            pooled = pooled_scores[q, cand]
            agree = None if agreement is None else agreement[q, cand]
            shift = offsets[cand] if offsets is not None else None
            scores = torch.stack(
                [
                    fused_score(
                        pooled if shift is None or w is None else pooled - w * shift,
                        d,
                        w,
                        distance,
                        correlations,
                        e,
                        agree,
                        what_weight,
                    )
                    for w, e in group
                ]
            )
            ranks = (scores >= scores[:, at : at + 1]).sum(1).tolist()
            for combo, rank in zip(group, ranks, strict=True):
                out[combo][q] = rank
    return out


def validation_score(report: dict[str, Any]) -> float:
    """One number to pick the best epoch: mean pooled R@10 over the four directions."""
    vals = [report[d]["pooled"]["all"]["R@10"] for d in DIRECTIONS if report.get(d)]
    return float(np.mean(vals)) if vals else 0.0


EXCERPT_DIRECTIONS = ("audio→audio", "audio→video", "video→video", "video→audio")
# The directions where sound meets picture (`models.events.match_across`).
CROSS_DIRECTIONS = ("audio→video", "video→audio")


@dataclass
class Excerpts:
    """Pieces cut from a pool's clips: `seconds` of sound and of footage at one random offset
    per clip (the footage at a frame, the sound up to a frame later at any sample, as a user's
    pieces start), for clips that have both streams and are long enough."""

    seconds: float
    rows: list[int]  # the clip each excerpt was cut from (pool row)
    starts: list[float]  # where its footage starts in that clip, seconds (on the frame grid)
    waves: list[np.ndarray]
    clips: list[np.ndarray]
    # the decoder's picture change per frame of each piece (None: a cache without them); the
    # last frame's is 0, as in a file cut there: its next frame is not in the piece
    changes: list[np.ndarray | None]
    region_changes: list[np.ndarray | None]
    sound_starts: list[float]  # where its sound starts in that clip: at any sample
    # the decoder's change of motion per frame of each piece (None: a cache without it); 0
    # where a file cut there has no frame pair on one side (its first and last two)
    motion: list[np.ndarray | None] = field(default_factory=list)
    # the decoder's change and change of motion per frame in each half of each piece (None: a
    # cache without them); edges as `changes` and `motion`
    halves: list[np.ndarray | None] = field(default_factory=list)


def cut_excerpts(
    ids: Sequence[str],
    cache: FeatureCache,
    seconds: float,
    fps: float,
    sr: int,
    seed: int = 0,
    max_queries: int | None = None,
    among: Sequence[int] | None = None,
) -> Excerpts:
    """`max_queries`: cut from that many clips only (a random subset, the same for every length
    and seed-for-seed), the rest of the pool still searched; `among`: the rows of `ids` cut
    from (default all)."""
    rng = np.random.default_rng(seed)
    jitter = np.random.default_rng([seed, 2])
    n_frames = round(seconds * fps)
    out = Excerpts(seconds, [], [], [], [], [], [], [])
    chosen: Sequence[int] = range(len(ids)) if among is None else sorted(among)
    if max_queries is not None and max_queries < len(chosen):
        pick = np.random.default_rng([seed, 1]).choice(len(chosen), max_queries, replace=False)
        chosen = sorted(chosen[i] for i in pick.tolist())
    for r in chosen:
        item_id = ids[r]
        frames, wave = cache.frames(item_id), cache.audio(item_id)
        usable = min(len(frames) / fps, len(wave) / sr)
        if len(frames) == 0 or len(wave) == 0 or usable < seconds + 1 / fps:
            continue
        first = int(rng.integers(0, int((usable - seconds) * fps) + 1))  # frame index
        start_s = first / fps
        out.rows.append(r)
        out.starts.append(start_s)
        # footage is cut at a frame, sound at any sample: up to a frame after the footage (its
        # own generator, so the frame offsets stay the same), the whole piece inside the clip
        sound_start = min(start_s + float(jitter.uniform(0.0, 1.0 / fps)), usable - seconds)
        out.sound_starts.append(sound_start)
        out.clips.append(np.asarray(frames[first : first + n_frames]))
        for kept, found in (
            (out.changes, cache.changes(item_id)),
            (out.region_changes, cache.region_changes(item_id)),
        ):
            if found is not None:
                found = np.array(found[first : first + n_frames], np.float32)
                found[-1] = 0.0
            kept.append(found)
        motion = cache.motion(item_id)
        if motion is not None:
            motion = np.array(motion[first : first + n_frames], np.float32)
            motion[:1] = 0.0
            motion[-2:] = 0.0
        out.motion.append(motion)
        halves = cache.halves(item_id)
        if halves is not None:
            halves = np.array(halves[first : first + n_frames], np.float32)
            halves[-1, 0::2] = 0.0  # changes: the last frame's next is not in the piece
            halves[:1, 1::2] = 0.0  # motion: no pair before the first, none after the last two
            halves[-2:, 1::2] = 0.0
        out.halves.append(halves)
        a = round(sound_start * sr)
        out.waves.append(wave[a : a + round(seconds * sr)])
    return out


@dataclass
class _ExcerptQueries:
    """An excerpt protocol's queries: the pieces, their embeddings and their envelopes."""

    model: TrimodalModel  # what embedded them (held: its id keys the pool's cache)
    cut: Excerpts
    embedded: dict[str, Embeddings]
    sounds: list[list[Phase]]
    events: dict[str, list[np.ndarray]]
    kinds: list[np.ndarray]
    bands: dict[str, list[np.ndarray]]
    # (direction, distance) → the steps' distances to candidates, and where they placed each
    # piece's own clip (seconds), filled as the re-rank asks
    distances: dict[tuple[str, str], tuple[_Memo, dict[int, float]]] = field(default_factory=dict)
    # "audio" / "video" → (Q, len(CLASSES)) the sources each piece sounds / shows
    # (`models.what_net`); None: the model has no networks
    what: dict[str, np.ndarray] | None = None


def _excerpt_queries(
    model: TrimodalModel,
    pool: Pool,
    cache: FeatureCache,
    seconds: float,
    seed: int,
    max_queries: int | None,
    among: Sequence[int] | None,
) -> _ExcerptQueries:
    """The pieces `excerpt_report` searches with, cut and encoded once per pool and model (the
    search policy measures each length twice: sound meeting picture singly and by bands)."""
    key = (id(model), seconds, seed, max_queries, None if among is None else tuple(among))
    known = pool._excerpts.get(key)
    if known is not None and known.model is model:
        return known
    fps, sr = model.cfg.visual.fps, model.cfg.audio.sample_rate
    cut = cut_excerpts(pool.ids, cache, seconds, fps, sr, seed, max_queries, among)
    if not cut.rows:  # clips too short for pieces this long: nothing to search with
        return _ExcerptQueries(model, cut, {}, [], {}, [], {})
    embedded = {
        "audio": _batched(lambda c: model.encode_audio(*model.audio_inputs(c)), cut.waves),
        "video": _batched(lambda c: model.encode_visual(*model.visual_inputs(c)), cut.clips),
    }
    # a sound is matched at each of its phases, as `index.query` encodes an upload
    sounds = [sound_phases(w, sr, fps) for w in cut.waves]
    events = {
        "audio": [phases[0].events for phases in sounds],
        "video": [
            model.picture_envelope(c, d, r, m, h)
            for c, d, r, m, h in zip(
                cut.clips, cut.changes, cut.region_changes, cut.motion, cut.halves, strict=True
            )
        ],
    }
    # what footage meets a sound by across modalities: its change and motion envelopes, and its
    # halves' where the pool's pictures meet sounds by theirs
    kinds = [
        picture_kinds(
            e,
            picture_motion(c, fps, fps, m),
            picture_halves(c, fps, fps, h) if pool.picture_halves else None,
        )
        for e, c, m, h in zip(events["video"], cut.clips, cut.motion, cut.halves, strict=True)
    ]
    bands = {
        "audio": [phases[0].bands for phases in sounds],
        "video": [
            picture_bands(c, fps, fps, r)
            for c, r in zip(cut.clips, cut.region_changes, strict=True)
        ],
    }
    what = None
    if model.knows_what():
        sounded, shown = model.sound_what(cut.waves), model.picture_what(cut.clips)
        assert sounded is not None and shown is not None
        what = {"audio": sounded, "video": shown}
    found = _ExcerptQueries(model, cut, embedded, sounds, events, kinds, bands, what=what)
    pool._excerpts[key] = found
    return found


@torch.inference_mode()
def excerpt_report(
    model: TrimodalModel,
    items: Sequence[ManifestItem],
    cache: FeatureCache,
    seconds: float = 2.5,
    seed: int = 0,
    rerank_k: int = 100,
    distance: Distance = "interp",
    pool: Pool | None = None,
    subsets: dict[str, Tensor] | None = None,
    max_queries: int | None = None,
    weights: Sequence[float | None] | Mapping[str, Sequence[float | None]] = (None,),
    event_weights: Sequence[float] | Mapping[str, Sequence[float]] = (0.0,),
    cross_bands: Collection[str] = CROSS_DIRECTIONS,
    directions: Collection[str] = EXCERPT_DIRECTIONS,
    among: Sequence[int] | None = None,
    what_weight: float | Mapping[str, float] = 0.0,
    keep_ranks: bool = False,
    sequence_offsets: Collection[str] = (),
) -> dict[str, Any]:
    """Queries cut from the pool's own clips: `seconds` of a clip's sound or footage at a random
    offset (footage at a frame, sound at any sample), searched against the whole clips, as a
    user drops a piece of a file. Pooled and hybrid (the service's re-rank: each candidate's
    best window, `window_distances`) R@K, and for hybrid hits at rank 1 the error of the
    returned segment's start. Clips without both streams, or shorter than the excerpt, are left
    out. `pool`: the items' embeddings when the caller has them already; `subsets`: name → (pool
    size,) bool, the clips whose excerpts are also reported apart. `weights` (one list, or one
    per direction): the re-rank's fusion weights (`fused_score`), and `event_weights` likewise
    the event envelopes'; "hybrid" and the start errors use the first of each, and with several
    "hybrid_by_weight" holds each weighting's. `cross_bands`: the directions whose sound meets
    picture by the sound's best band (`models.events.match_across`), the others by the single
    envelopes; `directions`: the ones reported (default all four); `among`: the pool rows
    excerpts are cut from (default all; the others are searched, as distractors);
    `what_weight` (one, or one per direction): how much the sources' agreement adds in the
    re-rank across modalities, where the model has what networks (`fused_score`); `keep_ranks`:
    each direction's "hybrid_ranks" holds each piece's rank (for a paired comparison);
    `sequence_offsets`: the directions across modalities whose re-rank takes each candidate's
    offset (`Pool.sequence_offsets`, `models.cohort`) off its step similarity."""
    model.eval()
    ids = [i.id for i in items if i.id in cache.row]
    if pool is None:
        pool = embed_pool(model, cache, ids)
    elif pool.ids != ids:
        raise ValueError("pool does not hold the items' embeddings in their order")
    sps = model.cfg.steps_per_second
    fps, sr = model.cfg.visual.fps, model.cfg.audio.sample_rate
    prepared = _excerpt_queries(model, pool, cache, seconds, seed, max_queries, among)
    cut = prepared.cut
    rows, offsets = cut.rows, cut.starts
    out: dict[str, Any] = {"seconds": seconds, "queries": len(rows)}
    if not rows:
        return out
    queries, sounds = prepared.embedded, prepared.sounds
    query_events, query_kinds, query_bands = prepared.events, prepared.kinds, prepared.bands
    targets = {"audio": pool.audio, "video": pool.visual}
    store_of = {"audio": "audio", "video": "visual"}
    has = {"audio": pool.has_audio, "video": pool.has_video}
    target = torch.tensor(rows)
    true_starts = {"audio": torch.tensor(cut.sound_starts), "video": torch.tensor(offsets)}
    parts = {name: mask[target] for name, mask in (subsets or {}).items()}
    for name in (d for d in EXCERPT_DIRECTIONS if d in directions):
        src, dst = name.split("→")
        q, t = queries[src], targets[dst]
        true_start = true_starts[src]
        scores = q.pooled @ t.pooled.T
        scores[:, ~has[dst]] = -torch.inf
        # the steps' distances and where they place each piece's own clip, kept with the
        # pieces: the same whichever way sound meets picture
        if (name, distance) not in prepared.distances:
            placed: dict[int, float] = {}

            def window_distance(qi: int, cand: Tensor, q=q, t=t, placed=placed) -> Tensor:
                steps = q.sequence[qi][q.mask[qi]]
                d, found = window_distances(steps, t.sequence[cand], t.mask[cand], sps, distance)
                if rows[qi] in (listed := cand.tolist()):
                    placed[qi] = float(found.start[listed.index(rows[qi])]) / sps
                return d

            prepared.distances[name, distance] = (_Memo(window_distance), placed)
        memo, starts = prepared.distances[name, distance]
        # as `index.search` does: sounds against sounds and footage against footage band by
        # band, a sound against a picture by the best pair of the sound's bands and the
        # picture's change and motion envelopes in `cross_bands`
        across = src != dst and name in cross_bands
        banded = src == dst or across
        against = pool.events[
            f"{store_of[dst]}_bands"
            if src == dst or (across and dst == "audio")
            else "visual_kinds"
            if across
            else store_of[dst]
        ]
        matched: Sequence[np.ndarray | list[Phase]] = (
            sounds
            if src == "audio"
            else query_bands[src]
            if src == dst
            else query_kinds
            if across
            else query_events[src]
        )
        pairs = True if across else None
        event_memo = _event_memo(matched, against, fps, banded, pairs)
        scanned = query_kinds if across and src == "video" else query_events[src]
        extra = _event_candidates(pool.scan(store_of[dst]), scanned, has[dst], across)
        pooled = ranks_from_scores(scores, target)
        tried = weights.get(name, (None,)) if isinstance(weights, Mapping) else weights
        tried_events = (
            event_weights.get(name, (0.0,)) if isinstance(event_weights, Mapping) else event_weights
        )
        combos = list(product(tried, tried_events))
        ww = what_weight.get(name, 0.0) if isinstance(what_weight, Mapping) else what_weight
        agreement = (
            what_agreement(prepared.what[src], pool.what[store_of[dst]])
            if ww and src != dst and prepared.what is not None and pool.what is not None
            else None
        )
        shift = (
            pool.sequence_offsets(name, sps) if src != dst and name in sequence_offsets else None
        )
        ranked = _fused_ranks(
            scores, target, combos, memo, distance, event_memo, rerank_k, extra, agreement, ww,
            shift,
        )  # fmt: skip

        def ranks_of(w: float | None, e: float, ranked=ranked) -> Tensor:
            return ranked[w, e]

        hybrid = ranks_of(*combos[0])
        top1 = (hybrid == 1).nonzero().flatten().tolist()
        if combos[0][1]:  # weighing the envelopes, the service places a hit by them
            starts = _event_starts(matched, against, rows, top1, fps, banded, pairs)
        by_signal = None
        if name == "audio→audio":  # as `index.search`: a piece of a recording, by its signal
            tables = (
                (pool.landmarks(), pool.prints())
                if pool.cache is not None
                else (
                    _landmark_table(cache, ids, has["audio"]),
                    _print_table(cache, ids, has["audio"]),
                )
            )
            hybrid, found_starts, by_signal = _piece_ranks(*tables, cut.waves, sr, rows, hybrid)
            top1 = (hybrid == 1).nonzero().flatten().tolist()
            starts = {**starts, **found_starts}
        errors = torch.tensor([abs(starts[i] - float(true_start[i])) for i in top1 if i in starts])
        out[name] = {
            "pooled": summarise(pooled),
            "hybrid": summarise(hybrid),
            "start_error_s": {
                "median": float(errors.median()) if errors.numel() else float("nan"),
                "within_0.25s": float((errors <= 0.25).float().mean()) if errors.numel() else 0.0,
            },
        }
        if by_signal is not None:
            out[name]["by_signal"] = by_signal
        if keep_ranks:
            out[name]["hybrid_ranks"] = hybrid.tolist()
        if len(combos) > 1:
            out[name]["hybrid_by_weight"] = {
                weight_label(w, e): summarise(ranks_of(w, e)) for w, e in combos
            }
        for part, mask in parts.items():
            if mask.any():
                out[name][part] = {
                    "pooled": summarise(pooled[mask]),
                    "hybrid": summarise(hybrid[mask]),
                }
    return out


def _landmark_table(cache: FeatureCache, ids: Sequence[str], has: Tensor) -> FingerprintTable:
    """Every pool clip's sound landmarks, as an index keeps them (none for a clip without)."""
    empty = np.zeros((0, 2), np.int32)
    sr = cache.spec.sample_rate
    return FingerprintTable(
        [
            peaks(np.asarray(cache.audio(i)), sr) if bool(h) else empty
            for i, h in zip(ids, has.tolist(), strict=True)
        ]
    )


def _print_table(cache: FeatureCache, ids: Sequence[str], has: Tensor) -> pr.PrintTable:
    """Every pool clip's dense sound prints, as an index keeps them (none for a clip without)."""
    empty = np.zeros(0, np.uint32)
    sr = cache.spec.sample_rate
    return pr.PrintTable(
        [
            pr.prints(np.asarray(cache.audio(i), np.float32), sr) if bool(h) else empty
            for i, h in zip(ids, has.tolist(), strict=True)
        ]
    )


def _piece_ranks(
    landmarks: FingerprintTable,
    prints: pr.PrintTable,
    waves: Sequence[np.ndarray],
    sr: int,
    rows: Sequence[int],
    ranks: Tensor,
) -> tuple[Tensor, dict[int, float], dict[str, Any]]:
    """`ranks` after the items a piece is found in by its signal are put first (`index.search`:
    `models.prints.pieces`, the dense prints' decision, else the landmarks'): the query's own
    clip found → its place among them; else its rank behind all of them (at worst: what they
    pushed down is not known here). Also where the found clips place each piece, and the shares
    of pieces found, and found first in another clip — in all, and by the landmarks alone."""
    out = ranks.clone()
    starts: dict[int, float] = {}
    found = wrong = by_prints = lm_found = lm_wrong = 0
    for i, wave in enumerate(waves):
        match = landmarks.match(query_peaks(wave, sr))
        lm = match.rows.tolist()
        lm_found += rows[i] in lm
        lm_wrong += bool(lm) and lm[0] != rows[i]
        chosen = pr.pieces(prints.match(pr.query_prints(wave, sr), also=match.rows), match)
        if not len(chosen.rows):
            continue
        listed = chosen.rows.tolist()
        found += rows[i] in listed
        wrong += listed[0] != rows[i]
        by_prints += bool(np.isfinite(chosen.ber).all())
        if rows[i] in listed:
            out[i] = listed.index(rows[i]) + 1
            starts[i] = float(chosen.starts_s[listed.index(rows[i])])
        else:
            out[i] = ranks[i] + len(listed)
    n = max(1, len(waves))
    return (
        out,
        starts,
        {
            "found": found / n,
            "first_elsewhere": wrong / n,
            "decided_by_prints": by_prints / n,
            "landmarks_alone": {"found": lm_found / n, "first_elsewhere": lm_wrong / n},
        },
    )


def _event_starts(
    queries: Sequence[np.ndarray | list[Phase]],
    targets: Sequence[np.ndarray],
    rows: Sequence[int],
    which: Sequence[int],
    rate: float,
    banded: bool = False,
    across: bool | None = None,
) -> dict[int, float]:
    """Where query i lies in its own clip (seconds), as `index.search` places a hit found with
    the envelopes' help (a sound's phases: by its best one)."""
    out = {}
    for i in which:
        query = queries[i]
        if isinstance(query, list):
            scores, starts = best_phase(query, [targets[rows[i]]], rate, banded, across)
        else:
            found = match_events(query, [targets[rows[i]]], across=across)
            scores, starts = found.scores, found.placement.astype(np.float64)
        if np.isfinite(scores[0]):
            out[i] = max(0.0, float(starts[0])) / rate
    return out


def _batched(encode, inputs: list, batch_size: int = 64) -> Embeddings:
    parts = []
    for start in range(0, len(inputs), batch_size):
        e = encode(inputs[start : start + batch_size])
        parts.append(Embeddings(e.pooled.float().cpu(), e.sequence.float().cpu(), e.mask.cpu()))
    return _cat(parts)
