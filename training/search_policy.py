"""The search defaults a checkpoint records (`models.policy`), measured on its validation split.

After training, the trainer asks what the per-step sequences and the event envelopes are good for
in each query → target direction, and how much the re-rank should weigh each against the pooled
first pass, in three tiers by the query's length — from 4 s (whole clips and 4 s excerpts),
2–4 s (2.5 s excerpts), under 2 s (1.5 s excerpts) — with the val clips searched among training
clips; how much the envelopes' agreement adds to the steps' in the per-item agreement score; and
how much a text query searching videos weighs the sound's index beside the picture's. The
measurements are `training.evaluate`'s, which mirror `index.search`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import product
from typing import Any

import numpy as np
import torch
from torch import Tensor

from models.attributes import AGREEMENT_FOUND, ATTRIBUTES, HEARD
from models.events import event_agreement, fused_agreement, sound_envelopes
from models.model import TrimodalModel
from models.policy import DIRECTIONS as POLICY_DIRECTIONS
from models.policy import TEXT_AUDIO_SHARE_BEFORE, WHOLE_QUERY_S, SearchPolicy
from training.cache import FeatureCache, TextCache
from training.datasets import ManifestItem
from training.evaluate import (
    CROSS_DIRECTIONS,
    EXCERPT_DIRECTIONS,
    Pool,
    Weighting,
    _direction,
    _text_queries,
    agreement_parts,
    agreement_rerank,
    embed_pool,
    excerpt_report,
    picture_probabilities,
    take_rows,
    text_reading,
    text_readings,
    weight_label,
)
from training.metrics import roc_auc

# The re-rank's fusion weights tried on the validation split (None: the sequence distance alone).
POLICY_WEIGHTS: tuple[float | None, ...] = (None, 4.0, 2.0, 1.0, 0.5, 0.25)
# The event envelopes' weights tried with each (0: the envelopes left out, no event scan). 4 since
# the whole-clip tier chose the largest weight tried, 2, in all four directions (val: a larger one
# lifted whole-clip video→audio R@1 0.815 → 0.825 and its 4 s pieces 0.535 → 0.555).
POLICY_EVENT_WEIGHTS: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0)
# The length of the excerpts the defaults are measured on beside whole clips.
EXCERPT_S = 2.5
# The length of the excerpts the short-query defaults are measured on (below SHORT_QUERY_S).
SHORT_EXCERPT_S = 1.5
# The length of the excerpts the whole-clip defaults are measured on beside whole clips: the
# shortest query they serve (`models.policy.WHOLE_QUERY_S`).
WHOLE_EXCERPT_S = WHOLE_QUERY_S
# How many items the validation clips are searched among, made up with training clips: a
# validation split alone (200 clips) is too small a pool to tell weightings apart on whole clips
# (R@1 0.825 vs 0.845 there; among 800 more clips 0.803 vs 0.891, the benchmark pools' size).
POLICY_POOL = 1000
# A tier re-ranks a direction only where the chosen weighting's R@1 gain over pooled, summed
# over the tier's protocols, is more than this many standard errors of that difference (binomial,
# the two figures taken as independent: conservative). The best of ~50 weightings beats pooled
# by a query or two of 200 by chance alone where nothing is there to find (1.5 s pieces across
# modalities: val R@1 0.010 → 0.030, then below pooled on other clips); the rule: where
# a direction gains nothing, the re-rank is off.
GAIN_STANDARD_ERRORS = 2.0
# The audio index's shares of a text→video search tried (`SearchPolicy.text_audio_share`): a
# caption of what is seen and heard ("a bell strikes slowly…") is told apart by the sound as well.
TEXT_AUDIO_SHARES: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
# How much the agreement of the query's and a candidate's sources may add to the re-rank across
# modalities (`SearchPolicy.what_weight`), tried with each tier's chosen weighting: a probe on val
# (2.5 s pieces, the what networks' agreement added to the pooled score) found 1–2 best on the own
# clips and 2–8 on their re-encoded copies.
WHAT_WEIGHTS: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
# How much a text query's picture-index vector may lean on the attribute readers
# (`models.attributes`, `SearchPolicy.text_attribute_weight`): a probe on val found 0.1–0.2 best
# (in these units) with colour, direction and size.
TEXT_ATTRIBUTE_WEIGHTS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4, 0.8)
# How much the readers' agreement may add in the re-rank of a leaning text query's best videos
# (`SearchPolicy.text_attribute_agreement`, `models.attributes.agreement`, a mean log chance): a
# probe on val found 0.5–1 best with the shipped lean.
TEXT_AGREEMENT_WEIGHTS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
# How a text query searching sounds may read the kinds its sentence names
# (`choose_heard_agreement`), in the order `simplest_clear_reading` weighs them (each taken only
# where it gains clearly over the one taken before it): the text reader's, at its nouns
# with a second noun counted by its own logit, at its nouns with it counted by its lead over the
# first's (`models.attributes.AttributeReaders.noun_kinds`), and each of those two with a
# sentence whose nouns are not found read from its sound words rather than by the text reader
# (`AttributeReaders.sound_probabilities`). Each but the first by its rule in
# `TrimodalModel.heard_readings` (lead, sound words).
SENTENCE_READINGS: tuple[str, ...] = (
    "text reader",
    "nouns",
    "nouns, second by its lead",
    "nouns, else sound words",
    "nouns, second by its lead, else sound words",
)
READING_RULES: dict[str, tuple[bool, bool]] = {
    "nouns": (False, False),
    "nouns, second by its lead": (True, False),
    "nouns, else sound words": (False, True),
    "nouns, second by its lead, else sound words": (True, True),
}
# How much the event envelopes' agreement may add to the steps' (`fused_agreement`).
AGREEMENT_EVENT_WEIGHTS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.5)


def distractors_for(
    measured: Sequence[ManifestItem], others: Sequence[ManifestItem]
) -> list[ManifestItem]:
    """The clips of `others` (e.g. the training split, in order) that make `measured` a pool of
    `POLICY_POOL` items (all of them where there are fewer)."""
    return list(others[: max(0, POLICY_POOL - len(measured))])


def choose_text_share(
    model: TrimodalModel,
    by_id: Mapping[str, ManifestItem],
    pool: Pool,
    texts: TextCache,
    queried: int | None = None,
) -> tuple[float | None, dict[str, Any]]:
    """The audio index's share of a text→video search (`SearchPolicy.text_audio_share`): each
    of `TEXT_AUDIO_SHARES` ranks the pool for the captions of the first `queried` clips (visual
    and audiovisual, as text→video is evaluated; the rest of the pool are distractors), and the
    best R@1, then R@10, then the smaller share, is chosen. None when no clip with a picture has
    such a caption (nothing measured: the record keeps the default)."""
    querying = torch.arange(len(pool.ids)) < (len(pool.ids) if queried is None else queried)
    found: dict[float, dict[str, Any]] = {}
    with torch.inference_mode():
        for share in TEXT_AUDIO_SHARES:
            report = _direction(
                *(model, "text→video", by_id, pool, texts, {}, 0, "interp", ("pooled",)),
                querying=querying,
                audio_share=share,
            )
            if not report:
                return None, {"reason": "no visual or audiovisual captions on clips with a picture"}
            found[share] = report["pooled"]["all"]
    best = max(found, key=lambda w: (found[w]["R@1"], found[w]["R@10"], -w))
    figures = {f"{w:g}": {k: round(found[w][k], 4) for k in ("R@1", "R@10")} for w in found}
    return best, {"queries": found[best]["n"], "by_share": figures, "chosen": best}


def choose_text_attributes(
    model: TrimodalModel,
    by_id: Mapping[str, ManifestItem],
    pool: Pool,
    texts: TextCache,
    audio_share: float,
    queried: int | None = None,
) -> tuple[
    tuple[str, ...], float | None, tuple[tuple[str, ...], float, int] | None, dict[str, Any]
]:
    """Which attributes a text query searching videos leans on, how much, and how much the
    readers' agreement then adds in a re-rank (`SearchPolicy.text_attributes`,
    `text_attribute_weight`, `text_attribute_agreement`): the captions of the first `queried`
    clips (visual and audiovisual, val wordings) rank the pool as the service ranks it (the audio
    index at `audio_share`), with attributes added one at a time, each time the one and the
    weight (`TEXT_ATTRIBUTE_WEIGHTS`) that rank best (R@1, then R@10), while that improves on the
    set before. (An attribute whose readers disagree on unseen wordings — a caption's scene or
    tempo in words training never had — only adds noise, so not every one is taken.) The set is
    adopted where its paired R@1 gain over no lean is clearer than `GAIN_STANDARD_ERRORS`
    standard errors; then the leaning ranking's best `AGREEMENT_K` are re-ranked by the readers'
    agreement at each of `TEXT_AGREEMENT_WEIGHTS`, on the set and on the set with the kind, and
    the best (R@1, then R@10) is adopted where its paired R@1 gain over the lean alone is as
    clear (the third value: its attributes, weight and how many candidates it finds among every
    clip beside the first pass's: `AGREEMENT_FOUND` where they add to R@10 by as many standard
    errors and lose clearly nowhere, `_no_clear_loss`, else 0). Where the pool has the picture what
    network's lists, the pictures' kind and size are read from them
    (`models.attributes.with_sources`), as the service reads them from the index's. Empty, None,
    None where the checkpoint has no fitted readers or nothing gains."""
    if not model.knows_attributes():
        return (), None, None, {"reason": "no fitted attribute readers"}
    has = pool.has_video
    querying = torch.arange(len(pool.ids)) < (len(pool.ids) if queried is None else queried)
    q = _text_queries(dict(by_id), pool, texts, ("visual", "audiovisual"), has, querying)
    if q.target.numel() == 0:
        return (
            (),
            None,
            None,
            {"reason": "no visual or audiovisual captions on clips with a picture"},
        )
    with torch.inference_mode():
        qv = model.project_text(q.vectors.to(model.device)).pooled.float().cpu()
        base = qv @ pool.visual.pooled.T
        heard = qv @ pool.audio.pooled.T
        base = torch.where(pool.has_audio, (1 - audio_share) * base + audio_share * heard, base)
        probabilities, dirs = text_reading(model, q.sentences)  # (Q, C), (Q, A, D)
        along = {name: dirs[:, a] @ pool.visual.pooled.T for a, name in enumerate(ATTRIBUTES)}
        shown = None if pool.what is None else pool.what["visual"]
        pictures = picture_probabilities(
            model, pool.visual.pooled, shown, pool.directions, pool.glyphs
        )

    def ranks(scores: Tensor) -> np.ndarray:
        scores = scores.masked_fill(~has, -torch.inf)
        own = scores[torch.arange(len(q.target)), q.target]
        return ((scores > own[:, None]).sum(dim=1) + 1).numpy()

    def summary(r: np.ndarray) -> dict[str, Any]:
        return {"R@1": float((r <= 1).mean()), "R@10": float((r <= 10).mean()), "ranks": r}

    without = summary(ranks(base))
    chosen: list[str] = []
    weight: float | None = None
    current = without
    steps: list[dict[str, Any]] = []
    while len(chosen) < len(ATTRIBUTES):
        tried = [
            (name, w, summary(ranks(base + w * sum(along[n] for n in [*chosen, name]))))
            for name in ATTRIBUTES
            if name not in chosen
            for w in TEXT_ATTRIBUTE_WEIGHTS
        ]
        name, w, found = max(tried, key=lambda t: (t[2]["R@1"], t[2]["R@10"]))
        if (found["R@1"], found["R@10"]) <= (current["R@1"], current["R@10"]):
            break
        chosen.append(name)
        weight, current = w, found
        steps.append(
            {"attributes": list(chosen), "weight": w}
            | {k: round(found[k], 4) for k in ("R@1", "R@10")}
        )
    evidence: dict[str, Any] = {
        "queries": len(q.target),
        "without": {k: round(without[k], 4) for k in ("R@1", "R@10")},
        "steps": steps,
    }
    if not chosen:
        evidence["chosen"] = "off"
        return (), None, None, evidence
    gain, se = _paired_gain([without], [current])
    evidence["gain_R@1"] = {"gain": round(gain, 4), "paired_se": round(se, 4)}
    if gain <= GAIN_STANDARD_ERRORS * se:
        evidence["chosen"] = "off"
        return (), None, None, evidence
    evidence["chosen"] = {"attributes": list(chosen), "weight": weight}
    assert weight is not None
    leaning = base + weight * sum(along[n] for n in chosen)
    leaning = leaning.masked_fill(~has, -torch.inf)
    # the lean's attributes, and those with the kind where the lean has none (the picture what
    # network reads it better than the pooled vector's reader, `models.attributes.with_sources`)
    sets = [tuple(chosen)] + ([(*chosen, "kind")] if "kind" not in chosen else [])
    reranked = {
        (names, w): summary(ranks(agreement_rerank(leaning, probabilities, pictures, names, w)))
        for names in sets
        for w in TEXT_AGREEMENT_WEIGHTS
    }
    best = max(reranked, key=lambda t: (reranked[t]["R@1"], reranked[t]["R@10"], -t[1]))
    gain, se = _paired_gain([current], [reranked[best]])
    adopted = gain > GAIN_STANDARD_ERRORS * se
    evidence["agreement"] = {
        "sources_from_what_network": shown is not None,
        "by_weight": {
            f"{'+'.join(names)} {w:g}": {k: round(found[k], 4) for k in ("R@1", "R@10")}
            for (names, w), found in reranked.items()
        },
        "gain_R@1": {"gain": round(gain, 4), "paired_se": round(se, 4)},
        "chosen": {"attributes": list(best[0]), "weight": best[1]} if adopted else "off",
    }
    ranked = {"without": without, "lean": current} | (
        {"agreement": reranked[best]} if adopted else {}
    )
    if (held := _heldout_figures(q, ranked)) is not None:
        evidence["held-out pairs"] = held
    if not adopted:
        return tuple(chosen), weight, None, evidence
    # the candidates the agreement finds among every clip beside the first pass's
    widened = summary(
        ranks(
            agreement_rerank(
                leaning, probabilities, pictures, best[0], best[1], found=AGREEMENT_FOUND
            )
        )
    )
    finding, evidence["agreement"]["found"] = choose_found(reranked[best], widened)
    if (held := _heldout_figures(q, {"found": widened})) is not None:
        evidence["held-out pairs"] |= {"found": held["found"]}
    return tuple(chosen), weight, (best[0], best[1], finding), evidence


def choose_found(base: dict[str, Any], widened: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Whether a text query's agreement also finds `AGREEMENT_FOUND` candidates among every
    clip (`SearchPolicy.text_agreement_found`): `base` and `widened` summarise the same queries'
    ranks without and with them. They change which clips the re-rank reaches, not how it ranks
    them, so they are kept where R@10's paired gain is clearer than `GAIN_STANDARD_ERRORS`
    standard errors and neither R@1 nor R@10 loses clearly (`_no_clear_loss`). The count (0:
    none) and what the record keeps."""
    more, se = _paired_gain([base], [widened], within=10)
    kept = more > GAIN_STANDARD_ERRORS * se and _no_clear_loss([base], [widened])
    found = AGREEMENT_FOUND if kept else 0
    return found, {
        "candidates": AGREEMENT_FOUND,
        **{k: round(float(widened[k]), 4) for k in ("R@1", "R@10")},
        "gain_R@10": {"gain": round(more, 4), "paired_se": round(se, 4)},
        "chosen": found or "off",
    }


def choose_heard_agreement(
    model: TrimodalModel,
    by_id: Mapping[str, ManifestItem],
    pool: Pool,
    texts: TextCache,
    queried: int | None = None,
) -> tuple[float | None, bool, str, dict[str, Any]]:
    """How much the agreement on the kind and size heard adds when a text query searches sounds
    (`SearchPolicy.text_heard_agreement`), whether it reads each sound's timbre as well as its
    what list (`text_heard_timbre`; `Pool.heard`), and how it reads the sentence: one of
    `SENTENCE_READINGS`, the text reader's kinds, or the kinds it names at its nouns
    (`text_heard_nouns`; `TrimodalModel.heard_reading`) with the second noun counted by its own
    logit or by its lead over the first's (`text_heard_lead`), a sentence whose nouns are not
    found read by the text reader or from its sound words (`text_heard_sound_words`;
    `READING_RULES`): the audio captions of the first `queried` clips (val wordings) rank the
    pool's sounds by the first pass, its best
    `AGREEMENT_K` then re-ranked by how far the sentence's reading and each sound's agree on
    `HEARD`, for each reading of the sentence the checkpoint has and each reading of the sounds
    the pool has (the what list alone; with the timbre) at each of `TEXT_AGREEMENT_WEIGHTS`;
    each reading of the sentence at its best (R@1, then R@10, then the lighter weight, then the
    what list alone), the simplest that no later one beats clearly (`simplest_clear_reading`)
    adopted where it gains clearly over the first pass (`heard_adopted`: R@1, or R@10 without a
    clear loss). (None, False, the text reader) where the checkpoint has no fitted readers, the
    pool no sound readings, or nothing gains."""
    reader = SENTENCE_READINGS[0]
    if not model.knows_attributes():
        return None, False, reader, {"reason": "no fitted attribute readers"}
    readings = {
        timbre: found
        for timbre in (False, True)
        if (timbre or pool.what is not None)
        and (not timbre or pool.timbres is not None)
        and (found := pool.heard(timbre)) is not None
    }
    if not readings:
        return None, False, reader, {"reason": "no sound what network or timbre reader"}
    has = pool.has_audio
    querying = torch.arange(len(pool.ids)) < (len(pool.ids) if queried is None else queried)
    q = _text_queries(dict(by_id), pool, texts, ("audio",), has, querying)
    if q.target.numel() == 0:
        return None, False, reader, {"reason": "no audio captions on clips with sound"}
    with torch.inference_mode():
        qv = model.project_text(q.vectors.to(model.device)).pooled.float().cpu()
        base = (qv @ pool.audio.pooled.T).masked_fill(~has, -torch.inf)
        read, _, at_nouns = text_readings(model, q.sentences)
        said = {reader: read}
        said |= {name: at_nouns[rule] for name, rule in READING_RULES.items() if rule in at_nouns}

    def summary(scores: Tensor) -> dict[str, Any]:
        scores = scores.masked_fill(~has, -torch.inf)
        own = scores[torch.arange(len(q.target)), q.target]
        r = ((scores > own[:, None]).sum(dim=1) + 1).numpy()
        return {"R@1": float((r <= 1).mean()), "R@10": float((r <= 10).mean()), "ranks": r}

    without = summary(base)
    tried = {
        (sentence, timbre, w): summary(
            agreement_rerank(base, probabilities, torch.from_numpy(found), HEARD, w)
        )
        for sentence, probabilities in said.items()
        for timbre, found in readings.items()
        for w in TEXT_AGREEMENT_WEIGHTS
    }
    # each reading of the sentence at its best reading of the sounds and weight
    best_of = {
        sentence: max(
            (k for k in tried if k[0] == sentence),
            key=lambda k: (tried[k]["R@1"], tried[k]["R@10"], -k[2], not k[1]),
        )
        for sentence in said
    }
    sentence, steps = simplest_clear_reading({name: tried[k] for name, k in best_of.items()})
    best = best_of[sentence]
    _, timbre, weight = best
    adopted, gains = heard_adopted(without, tried[best])

    def figures(at: str, reading: bool) -> dict[str, Any]:
        return {
            f"{w:g}": {k: round(tried[at, reading, w][k], 4) for k in ("R@1", "R@10")}
            for w in TEXT_AGREEMENT_WEIGHTS
        }

    def by_reading(at: str) -> dict[str, Any]:
        return {
            ("what list and timbre" if reading else "what list"): figures(at, reading)
            for reading in readings
        }

    evidence = {
        "queries": len(q.target),
        "attributes": list(HEARD),
        # whether the chosen reading reads the sounds' timbre too (`heard_reading`)
        "timbre": timbre,
        # how it reads the sentence (`SENTENCE_READINGS`; `TrimodalModel.heard_reading`)
        "sentence": sentence,
        "nouns": sentence != reader,
        "without": {k: round(without[k], 4) for k in ("R@1", "R@10")},
        "by_weight": figures(sentence, timbre),
        # the sentence as the text reader reads it, then (where the checkpoint reads them) with
        # the kinds read at its nouns, the second counted by its own logit, then by its lead,
        # then each with a sentence whose nouns are not found read from its sound words
        "by_reading": by_reading(reader),
        **{
            f"by_reading_{key}": by_reading(name)
            for key, name in zip(
                ("at_nouns", "at_nouns_lead", "at_nouns_sounds", "at_nouns_lead_sounds"),
                SENTENCE_READINGS[1:],
                strict=True,
            )
            if name in said
        },
        # each reading weighed against the one chosen before it (`simplest_clear_reading`)
        "readings": steps,
        **gains,
        "chosen": weight if adopted else "off",
    }
    held = _heldout_figures(q, {"without": without, "best": tried[best]})
    if held is not None:
        evidence["held-out pairs"] = held
    return (
        (weight if adopted else None),
        (timbre and adopted),
        (sentence if adopted else reader),
        evidence,
    )


def simplest_clear_reading(
    best: Mapping[str, dict[str, Any]],
) -> tuple[str, list[dict[str, Any]]]:
    """Which reading of the sentence a text query searching sounds takes, of those measured
    (`best`: each reading's summary at its best weighting, queries' "ranks" included): walking
    `SENTENCE_READINGS` from the text reader's, a reading replaces the one taken so far only
    where it gains clearly over it (`heard_adopted`'s test: R@1 beyond `GAIN_STANDARD_ERRORS`
    paired standard errors, or R@10 so without a clear loss). Each refines a simpler reading
    (the nouns the text reader's; the lead or the sound words the nouns'), all are ranked on
    the same few hundred val captions, and the best of several wins by chance as often as by
    merit: on the s64 checkpoint, val's best reading twice (the second noun by its lead, then
    a sentence without a noun read from its sound words) gained on val within about one or two
    standard errors and lost on the three test pools (docs/quality-log.md "The kinds a sound
    caption's sound words name"). Returns the reading and each step's gains."""
    order = [name for name in SENTENCE_READINGS if name in best]
    taken = order[0]
    steps: list[dict[str, Any]] = []
    for name in order[1:]:
        clear, gains = heard_adopted(best[taken], best[name])
        steps.append({"reading": name, "against": taken, "taken": clear, **gains})
        if clear:
            taken = name
    return taken, steps


def heard_adopted(base: dict[str, Any], tried: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    """Whether the heard agreement's best weighting (`tried`) is adopted over the first pass
    (`base`), and the paired gains that say so: where R@1's gain is clearer than
    `GAIN_STANDARD_ERRORS` standard errors, or R@10's is and neither loses clearly
    (`_no_clear_loss`). Text→audio's target is R@10: a re-rank that puts the right sound in the
    first ten far more often without losing first hits is what a user searching sounds wants
    (on a val split with held-out pairs of its own, R@10 0.302 → 0.354 with R@1 0.057 → 0.071,
    R@1's paired error 0.0085, was dropped by the R@1 clause alone; where the sounds' readings
    are confident noise, as on the foreign corpus, an adopted agreement costs there:
    docs/quality-log.md "A val split with held-out pairs of its own")."""
    first, first_se = _paired_gain([base], [tried])
    tenth, tenth_se = _paired_gain([base], [tried], within=10)
    adopted = first > GAIN_STANDARD_ERRORS * first_se or (
        tenth > GAIN_STANDARD_ERRORS * tenth_se and _no_clear_loss([base], [tried])
    )
    return adopted, {
        "gain_R@1": {"gain": round(first, 4), "paired_se": round(first_se, 4)},
        "gain_R@10": {"gain": round(tenth, 4), "paired_se": round(tenth_se, 4)},
    }


def choose_agreement(
    model: TrimodalModel, pool: Pool, cache: FeatureCache | None = None, queried: int | None = None
) -> tuple[float, bool, dict[str, Any]]:
    """How a clip's agreement is scored (`models.events.fused_agreement`): whether its sound's
    envelopes meet its picture by the best band or the single envelope — the one that places
    each clip's own sound, shifted by ±0.25–1 s, closer (median error; the offset is the
    envelopes' alone; a tie, or no `cache` to read sounds from: single) — and the envelopes'
    weight that best tells each clip's own sound from another clip's (ROC AUC on the pool: each
    picture with its sound and with the next clip's); ties go to the smaller weight. `queried`:
    only the pool's first that many clips are measured (the rest are distractors)."""
    both = pool.has_audio & pool.has_video
    if queried is not None:  # the rest of the pool are distractors: not measured
        both &= torch.arange(len(pool.ids)) < queried
    rows = both.nonzero().flatten()
    if len(rows) < 2:
        return 0.0, False, {"reason": "fewer than two clips with sound and picture"}
    evidence: dict[str, Any] = {}
    by_bands = False
    if cache is not None:
        errors = shifted_offset_errors(model, pool, cache, rows)
        evidence["shifted_offset_error_s"] = {k: round(v, 4) for k, v in errors.items()}
        by_bands = errors["best band"] < errors["single"]
    sound_kind = "audio_bands" if by_bands else "audio"
    # by the best band, the picture meets the sound by its change and motion envelopes
    pictures = [pool.events["visual_kinds" if by_bands else "visual"][r] for r in rows.tolist()]

    def parts(sound_rows: Tensor) -> list:
        sounds = [pool.events[sound_kind][r] for r in sound_rows.tolist()]
        return agreement_parts(
            model, take_rows(pool.audio, sound_rows), take_rows(pool.visual, rows), sounds, pictures
        )

    own, other = parts(rows), parts(rows.roll(1))  # once; only the fusion differs by weight

    def scores(found: list, w: float) -> np.ndarray:
        return np.array([fused_agreement(a.score, a.offset_s, e, w)[0] for a, e in found])

    auc = {w: roc_auc(scores(own, w), scores(other, w)) for w in AGREEMENT_EVENT_WEIGHTS}
    best = max(AGREEMENT_EVENT_WEIGHTS, key=lambda w: (auc[w], -w))
    evidence |= {
        "matching": "best band" if by_bands else "single",
        "swapped_auc": {f"{w:g}": round(a, 4) for w, a in auc.items()},
        "chosen": best,
    }
    return best, by_bands, evidence


def shifted_offset_errors(
    model: TrimodalModel, pool: Pool, cache: FeatureCache, rows: Tensor, seed: int = 0
) -> dict[str, float]:
    """Median error of the offset the envelopes alone estimate (`event_agreement`) for each
    clip's own sound shifted by ±0.25–1 s against its picture: "single" and "best band"."""
    rng = np.random.default_rng(seed)
    sr, rate = model.cfg.audio.sample_rate, model.cfg.visual.fps
    errors: dict[str, list[float]] = {"single": [], "best band": []}
    for r in rows.tolist():
        wave = np.asarray(cache.audio(pool.ids[r]), np.float32)
        shift = float(rng.uniform(0.25, 1.0) * rng.choice([-1.0, 1.0]))
        n = min(len(wave), round(abs(shift) * sr))
        pad = np.zeros(n, np.float32)
        # late: silence first, the end cut off; early: the start cut off, silence after
        moved = (
            np.concatenate([pad, wave])[: len(wave)]
            if shift > 0
            else np.concatenate([wave[n:], pad])
        )
        single, bands = sound_envelopes(moved, sr, rate)
        for name, sound in (("single", single), ("best band", bands)):
            picture = pool.events["visual_kinds" if name == "best band" else "visual"][r]
            found = event_agreement(sound, picture, rate)
            if found is not None:
                errors[name].append(abs(found.offset_s - shift))
    return {k: float(np.median(v)) if v else float("inf") for k, v in errors.items()}


def measure_policy(
    model: TrimodalModel,
    items: Sequence[ManifestItem],
    cache: FeatureCache,
    texts: TextCache,
    sequence_trained: bool,
    rerank_k: int = 100,
    text_segments: bool | None = None,
    weights: Sequence[float | None] = POLICY_WEIGHTS,
    event_weights: Sequence[float] = POLICY_EVENT_WEIGHTS,
    distractors: Sequence[ManifestItem] = (),
    timings: dict[str, float] | None = None,
) -> SearchPolicy:
    """The checkpoint's search defaults, measured on `items` (the validation split), searched
    among `distractors` too (clips that never query, e.g. training clips) where given: for each
    direction, each weighting of the re-rank (`fused_score`: the steps' weight × the event
    envelopes' weight, and for sound against picture the envelopes matched singly or by the
    sound's best band, `models.events.match_across`) that is at least as good as the pooled
    first pass on R@1 and R@10 in every protocol of a length tier is eligible there; the one
    with the best R@1 (summed over the tier's protocols, then R@10) becomes the tier's default,
    and with none eligible the direction does not re-rank. Three tiers, each measured on the
    lengths it serves: queries from `WHOLE_QUERY_S` on, on whole clips (cross-modal) and
    `WHOLE_EXCERPT_S` excerpts (`SearchPolicy.whole`); queries shorter than `SHORT_QUERY_S`, on
    `SHORT_EXCERPT_S` excerpts (`SearchPolicy.short`); the others on `EXCERPT_S` excerpts.
    Measured, not assumed from `sequence_trained`: untrained heads fail the cross-modal test
    (audio→video R@1 0.045 pooled, 0.015 re-ranked on a variety val split), yet the same-modality
    window alignment of an excerpt helps even then (video→video R@1 0.88 → 0.98), because it
    compares the same encoder's features with themselves. Nor is the best band assumed: on val
    it gained on whole clips and lost on short excerpts (a short envelope's eight bands give
    eight chances of a chance correlation). `timings`, where given, gets each part's seconds
    (the training log records them)."""
    clock = _Clock(timings)
    by_id = {i.id: i for i in items if i.id in cache.row}
    queried = len(by_id)
    for item in distractors:
        if item.id in cache.row and item.id not in by_id:
            by_id[item.id] = item
    pool = embed_pool(model, cache, list(by_id), items=by_id)  # once, for every protocol
    clock("pool")
    weights = tuple(weights) or (None,)
    event_weights = tuple(event_weights) or (0.0,)
    combos: list[Weighting] = list(product(weights, event_weights))
    ordered = [by_id[i] for i in pool.ids]
    singly, banded = (
        _measure(
            model, ordered, cache, texts, pool, rerank_k, weights, event_weights, bands, queried
        )
        for bands in (False, True)
    )
    clock("re-rank")
    evidence: dict[str, Any] = {
        "pool": len(pool.ids),
        "queried": queried,
        "excerpt_s": EXCERPT_S,
        "excerpt_queries": singly.queries[EXCERPT_S],
    }
    short_evidence: dict[str, Any] = {
        "excerpt_s": SHORT_EXCERPT_S,
        "queries": singly.queries[SHORT_EXCERPT_S],
    }
    whole_evidence: dict[str, Any] = {
        "excerpt_s": WHOLE_EXCERPT_S,
        "queries": singly.queries[WHOLE_EXCERPT_S],
    }
    agreement_weight, agreement_bands, evidence["agreement"] = choose_agreement(
        model, pool, cache, queried
    )
    clock("agreement")
    text_share, evidence["text→video"] = choose_text_share(model, by_id, pool, texts, queried)
    leaning, lean_weight, agree, evidence["text→video attributes"] = choose_text_attributes(
        model,
        by_id,
        pool,
        texts,
        TEXT_AUDIO_SHARE_BEFORE if text_share is None else text_share,
        queried,
    )
    clock("text→video")
    heard_weight, heard_timbre, heard_sentence, evidence["text→audio attributes"] = (
        choose_heard_agreement(model, by_id, pool, texts, queried)
    )
    clock("text→audio")
    # the best-band matchings met each picture by its motion envelope too where the pool had
    # one, and by its halves' where it had them and the pool met pictures by them
    motion = any(len(m) for m in pool.events["visual_motion"])
    halves = motion and pool.picture_halves and any(len(h) for h in pool.events["visual_halves"])

    def tier(name: str, tier_evidence: dict[str, Any], **more: Any) -> SearchPolicy:
        chosen = _choose(
            _merged(singly.by_tier[name], banded.by_tier[name]),
            combos,
            tier_evidence,
            sequence_trained,
            text_segments,
            **more,
        )
        return replace(chosen, picture_motion=motion, picture_halves=halves)

    long = tier("long", evidence)
    short, whole = tier("short", short_evidence), tier("whole", whole_evidence, fallback=long)
    if pool.what is not None:
        querying = torch.arange(len(pool.ids)) < queried
        tiers = {
            "long": (long, (EXCERPT_S,)),
            "short": (short, (SHORT_EXCERPT_S,)),
            "whole": (whole, (None, WHOLE_EXCERPT_S)),
        }
        weighed = choose_what_tiers(model, ordered, cache, pool, rerank_k, querying, tiers)
        long, short, whole = weighed["long"], weighed["short"], weighed["whole"]
        clock("sources")
    return replace(
        long,
        short=short,
        whole=whole,
        agreement_event_weight=agreement_weight,
        agreement_bands=agreement_bands,
        text_audio_share=text_share,
        text_attributes=leaning,
        text_attribute_weight=lean_weight,
        text_attribute_agreement=None if agree is None else agree[1],
        text_agreement_attributes=() if agree is None else agree[0],
        text_agreement_found=0 if agree is None else agree[2],
        text_heard_agreement=heard_weight,
        text_heard_timbre=heard_timbre,
        text_heard_nouns=heard_sentence in READING_RULES,
        text_heard_lead=READING_RULES.get(heard_sentence, (False, False))[0],
        text_heard_sound_words=READING_RULES.get(heard_sentence, (False, False))[1],
    )


class _Clock:
    """Each call records the seconds since the last (or since it was made) under a name, where
    there is somewhere to record them."""

    def __init__(self, into: dict[str, float] | None) -> None:
        self.into, self.last = into, time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        if self.into is not None:
            self.into[name] = round(self.into.get(name, 0.0) + now - self.last, 2)
        self.last = now


@dataclass(frozen=True)
class _WhatTrial:
    """One tier's measurement of the sources' agreement in one direction: the tier's weighting
    without it (`base`) and with each of `WHAT_WEIGHTS` (`tried`), per protocol; the best weight
    that loses clearly in no protocol (`best`, None if none) and its paired R@1 gain (`gain`)."""

    base: list[dict]
    tried: dict[float, list[dict]]
    eligible: tuple[float, ...]  # the weights that lose clearly in no protocol
    best: float | None
    gain: tuple[float, float] | None


def what_trials(
    model: TrimodalModel,
    items: list[ManifestItem],
    cache: FeatureCache,
    pool: Pool,
    rerank_k: int,
    querying: Tensor,
    policy: SearchPolicy,
    lengths: Sequence[float | None],
) -> dict[str, _WhatTrial]:
    """For each direction across modalities that `policy` (a tier's) re-ranks, its chosen
    weighting again with each of `WHAT_WEIGHTS`, on the tier's protocols (`lengths`: None =
    whole clips, else excerpts of that many seconds; the first `querying` rows query), and the
    best weight (by summed R@1, then R@10) of those that lose clearly in no protocol
    (`_no_clear_loss`)."""
    by_id = {i.id: i for i in items}
    queried = int(querying.sum())
    trials: dict[str, _WhatTrial] = {}
    for name in CROSS_DIRECTIONS:
        if not policy.rerank.get(name, False):
            continue
        w, e = policy.rerank_weight.get(name), policy.event_weight.get(name, 0.0)
        bands = name in policy.cross_bands

        def measured(what: float, name: str = name, w=w, e=e, bands=bands) -> list[dict]:
            found = []
            for seconds in lengths:
                if seconds is None:
                    report = _direction(
                        model, name, by_id, pool, None, {}, rerank_k, "interp", ("hybrid",),
                        (w,), (e,), cross_bands=bands, querying=querying, what_weight=what,
                        keep_ranks=True,
                    )  # fmt: skip
                    found.append({**report["hybrid"]["all"], "ranks": report["hybrid_ranks"]})
                else:
                    report = excerpt_report(
                        model, items, cache, seconds=seconds, rerank_k=rerank_k, pool=pool,
                        weights={name: (w,)}, event_weights={name: (e,)},
                        cross_bands=(name,) if bands else (), directions=(name,),
                        among=range(queried), what_weight=what, keep_ranks=True,
                    )  # fmt: skip
                    if name in report:  # else no clip is this long: nothing to measure
                        found.append(
                            {**report[name]["hybrid"], "ranks": report[name]["hybrid_ranks"]}
                        )
            return found

        base = measured(0.0)
        if not base:
            continue
        tried = {what: measured(what) for what in WHAT_WEIGHTS}
        eligible = [what for what, found in tried.items() if _no_clear_loss(base, found)]
        best = max(
            eligible,
            key=lambda what: tuple(sum(f[k] for f in tried[what]) for k in ("R@1", "R@10")),
            default=None,
        )
        gain = None if best is None else _paired_gain(base, tried[best])
        trials[name] = _WhatTrial(base, tried, tuple(eligible), best, gain)
    return trials


def choose_what_tiers(
    model: TrimodalModel,
    items: list[ManifestItem],
    cache: FeatureCache,
    pool: Pool,
    rerank_k: int,
    querying: Tensor,
    tiers: Mapping[str, tuple[SearchPolicy, Sequence[float | None]]],
) -> dict[str, SearchPolicy]:
    """Each tier's policy (`tiers`: name → (its policy, its protocols' lengths)) with the
    sources' agreement weighed in where it helps (`what_trials`). Whether a direction weighs it at
    all is decided on every tier's evidence together: the agreement comes from the same two networks
    at any query length, so their best weights' paired R@1 gains are summed over the tiers (their
    errors added in quadrature) and must be clearer than `GAIN_STANDARD_ERRORS`; then each tier
    where its best weight gains takes it. (Decided tier by tier, a real gain of a query or three in
    200 fell either side of the line from one training run to the next, with every tier's gain
    positive: docs/quality-log.md "Whether the sources weigh in, decided over every
    tier".) The figures go into each tier's evidence of the direction."""
    trials = {
        tier: what_trials(model, items, cache, pool, rerank_k, querying, policy, lengths)
        for tier, (policy, lengths) in tiers.items()
    }
    overall: dict[str, tuple[float, float]] = {}
    for name in CROSS_DIRECTIONS:
        gains: list[tuple[float, float]] = [
            gain for t in trials.values() if name in t and (gain := t[name].gain) is not None
        ]
        if gains:
            overall[name] = (sum(g for g, _ in gains), math.sqrt(sum(se**2 for _, se in gains)))
    adopt = {n for n, (g, se) in overall.items() if g > GAIN_STANDARD_ERRORS * se}
    out: dict[str, SearchPolicy] = {}
    for tier, (policy, _) in tiers.items():
        chosen: dict[str, float] = {}
        for name, trial in trials[tier].items():
            takes = (
                name in adopt
                and trial.best is not None
                and trial.gain is not None
                and trial.gain[0] > 0
            )
            if takes and trial.best is not None:
                chosen[name] = trial.best
            record = policy.evidence.get(name)
            if not isinstance(record, dict):
                continue
            record["what"] = {
                "without": [{k: round(f[k], 4) for k in ("R@1", "R@10")} for f in trial.base],
                **{
                    f"{what:g}": [{k: round(f[k], 4) for k in ("R@1", "R@10")} for f in found]
                    for what, found in trial.tried.items()
                },
                "eligible": [f"{what:g}" for what in trial.eligible],
                **(
                    {
                        "gain_R@1": {
                            "gain": round(trial.gain[0], 4),
                            "paired_se": round(trial.gain[1], 4),
                        }
                    }
                    if trial.gain is not None
                    else {}
                ),
                **(
                    {
                        "gain_R@1_all_tiers": {
                            "gain": round(overall[name][0], 4),
                            "paired_se": round(overall[name][1], 4),
                        }
                    }
                    if name in overall
                    else {}
                ),
                "chosen": f"{trial.best:g}" if takes and trial.best is not None else "off",
            }
        out[tier] = replace(policy, what_weight=chosen)
    return out


def _heldout_figures(q: Any, ranked: Mapping[str, dict[str, Any]]) -> dict[str, Any] | None:
    """R@1 and R@10 of each of `ranked`'s rankings (name → summary with "ranks") on the queries
    whose clip holds a pair no training clip holds (a val split made with its own held-out
    pairs: `GeneratorConfig.val_heldout_fraction`); None where no query's clip holds one. What a
    setting costs on combinations it never trained on, beside its figures on every query."""
    mask = q.subset["heldout"].numpy()
    if not mask.any():
        return None
    out: dict[str, Any] = {"queries": int(mask.sum())}
    for name, found in ranked.items():
        r = np.asarray(found["ranks"])[mask]
        out[name] = {
            "R@1": round(float((r <= 1).mean()), 4),
            "R@10": round(float((r <= 10).mean()), 4),
        }
    return out


def _paired_gain(base: list[dict], tried: list[dict], within: int = 1) -> tuple[float, float]:
    """The R@`within` gain of `tried` over `base` summed over protocols (each a summary with
    the queries' "ranks", the same queries in the same order), and its standard error from the
    queries' paired differences: two weightings that differ in one term rank most queries
    alike, so their figures are far from independent (`_gain`'s conservative assumption)."""
    gain = variance = 0.0
    for b, t in zip(base, tried, strict=True):
        d = (np.asarray(t["ranks"]) <= within).astype(float) - (np.asarray(b["ranks"]) <= within)
        gain += float(d.mean())
        variance += float(d.var()) / max(len(d), 1)
    return gain, math.sqrt(variance)


def _no_clear_loss(base: list[dict], tried: list[dict]) -> bool:
    """Whether `tried` ranks no protocol clearly worse than `base`: in each, its paired R@1 and
    R@10 changes are each above −`GAIN_STANDARD_ERRORS` standard errors. (No worse to the query, the
    rule before, let one or two queries of 200 lost on whole clips veto a weight that found ten more
    4 s pieces: docs/quality-log.md "Whole clips measured as the service re-ranks them, and the
    sources' weight eligible unless it clearly loses".)"""
    for b, t in zip(base, tried, strict=True):
        for within in (1, 10):
            change, se = _paired_gain([b], [t], within)
            if change < -GAIN_STANDARD_ERRORS * se:
                return False
    return True


# Per direction, each protocol measured: (kind, its pooled figures, weighting label → figures).
Measured = dict[str, list[tuple[str, dict[str, Any], dict[str, Any]]]]
# A weighting's label when sound met picture by the sound's best band (`weight_label` + this).
BEST_BAND = " by best band"


@dataclass(frozen=True)
class _Measurement:
    by_tier: dict[str, Measured]  # "whole", "long", "short" → what their defaults are chosen on
    queries: dict[float, int]  # excerpt length → excerpts cut


def _measure(
    model: TrimodalModel,
    items: list[ManifestItem],
    cache: FeatureCache,
    texts: TextCache,
    pool: Pool,
    rerank_k: int,
    weights: tuple[float | None, ...],
    event_weights: tuple[float, ...],
    cross_bands: bool,
    queried: int,
) -> _Measurement:
    """Every weighting in every protocol, sound meeting picture by the sound's best band or by
    the single envelopes; the first `queried` items query, the rest are only searched."""
    by_id = {i.id: i for i in items}
    querying = torch.arange(len(pool.ids)) < queried
    with torch.inference_mode():
        full = {
            d: _direction(
                model,
                d,
                by_id,
                pool,
                texts,
                {},
                rerank_k,
                "interp",
                ("pooled", "hybrid"),
                weights,
                event_weights,
                cross_bands=cross_bands,
                querying=querying,
            )
            for d in CROSS_DIRECTIONS  # text queries are never re-ranked
        }
    excerpts = {
        seconds: excerpt_report(
            model,
            items,
            cache,
            seconds=seconds,
            rerank_k=rerank_k,
            pool=pool,
            weights=weights,
            event_weights=event_weights,
            cross_bands=CROSS_DIRECTIONS if cross_bands else (),
            # sound against sound and footage against footage match the same either way
            directions=CROSS_DIRECTIONS if cross_bands else EXCERPT_DIRECTIONS,
            among=range(queried),
        )
        for seconds in (WHOLE_EXCERPT_S, EXCERPT_S, SHORT_EXCERPT_S)
    }

    def protocols(seconds: float, whole_clips: bool) -> Measured:
        found: Measured = {}
        for name in POLICY_DIRECTIONS:
            found[name] = []
            if whole_clips and full.get(name):
                report = full[name]
                found[name].append(("full", report["pooled"]["all"], report["hybrid_by_weight"]))
            if name in excerpts[seconds]:
                report = excerpts[seconds][name]
                found[name].append(("excerpt", report["pooled"], report["hybrid_by_weight"]))
        return found

    return _Measurement(
        {
            "whole": protocols(WHOLE_EXCERPT_S, whole_clips=True),
            "long": protocols(EXCERPT_S, whole_clips=False),
            "short": protocols(SHORT_EXCERPT_S, whole_clips=False),
        },
        {seconds: report["queries"] for seconds, report in excerpts.items()},
    )


def _merged(singly: Measured, banded: Measured) -> Measured:
    """One table per direction and protocol: the weightings with the single envelopes, and for
    sound against picture those with the envelopes matched by the best band besides, labelled
    so (`BEST_BAND`). The pooled figures are the same in both."""
    out: Measured = {}
    for name, found in singly.items():
        others = {kind: h for kind, _, h in banded.get(name, [])}
        out[name] = []
        for kind, pooled, by_weight in found:
            merged = dict(by_weight)
            if name in CROSS_DIRECTIONS and kind in others:
                for label, figures in others[kind].items():
                    if "+events" in label:  # the envelopes weighed in: the matching mattered
                        merged[label + BEST_BAND] = figures
            out[name].append((kind, pooled, merged))
    return out


# A choice of the re-rank: its weighting, and whether sound met picture by the best band.
Choice = tuple[float | None, float, bool]


def _gain(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> tuple[float, float]:
    """(pooled figures, re-ranked figures) per protocol → the R@1 gain summed over them, and its
    standard error (each protocol's two recalls as independent binomials on its queries)."""
    gain = variance = 0.0
    for pooled, hybrid in pairs:
        a, b, n = float(hybrid["R@1"]), float(pooled["R@1"]), max(int(pooled["n"]), 1)
        gain += a - b
        variance += (a * (1 - a) + b * (1 - b)) / n
    return gain, math.sqrt(variance)


def choice_label(choice: Choice) -> str:
    w, e, bands = choice
    return weight_label(w, e) + (BEST_BAND if bands else "")


def _choose(
    measured: Measured,
    combos: list[Weighting],
    evidence: dict[str, Any],
    sequence_trained: bool,
    text_segments: bool | None,
    short: SearchPolicy | None = None,
    whole: SearchPolicy | None = None,
    fallback: SearchPolicy | None = None,
) -> SearchPolicy:
    """Per direction, the weighting no worse than pooled on R@1 and R@10 in every protocol
    measured, best by R@1 summed over them (then R@10; a tie to the one listed first, the
    single envelopes before the best band), adopted where its R@1 gain over pooled is clearer
    than chance (`GAIN_STANDARD_ERRORS`); none eligible or adopted: no re-rank. A direction with
    nothing measured takes `fallback`'s choice where given (clips too short for the whole-clip
    tier's excerpts: same-modality queries keep the shorter ones' defaults), else no re-rank."""
    rerank: dict[str, bool] = {}
    chosen_weights: dict[str, float] = {}
    chosen_events: dict[str, float] = {}
    cross_bands: set[str] = set()
    for name in POLICY_DIRECTIONS:
        found = measured.get(name, [])
        if not found and fallback is not None:  # nothing this long to measure: as `fallback`
            rerank[name] = fallback.rerank.get(name, False)
            if name in fallback.rerank_weight:
                chosen_weights[name] = fallback.rerank_weight[name]
            if name in fallback.event_weight:
                chosen_events[name] = fallback.event_weight[name]
            if name in fallback.cross_bands:
                cross_bands.add(name)
            evidence[name] = {"chosen": "as shorter queries (none this long to measure)"}
            continue
        if not found:
            rerank[name] = False
            continue
        choices: list[Choice] = [(w, e, False) for w, e in combos]
        if all(choice_label((w, e, True)) in h for w, e in combos if e for _, _, h in found):
            choices += [(w, e, True) for w, e in combos if e]

        def hybrid_of(by_weight: dict[str, Any], choice: Choice) -> dict[str, Any]:
            report = by_weight[choice_label(choice)]
            return report.get("all", report)

        eligible = [
            c
            for c in choices
            if all(hybrid_of(h, c)[k] >= p[k] for _, p, h in found for k in ("R@1", "R@10"))
        ]
        best = max(
            eligible,
            key=lambda c: tuple(
                sum(hybrid_of(h, c)[k] for _, _, h in found) for k in ("R@1", "R@10")
            ),
            default=None,
        )
        gain = None if best is None else _gain([(p, hybrid_of(h, best)) for _, p, h in found])
        if gain is not None and gain[0] <= GAIN_STANDARD_ERRORS * gain[1]:
            best = None  # no clearer than chance
        rerank[name] = best is not None
        if best is not None and best[0] is not None:
            chosen_weights[name] = float(best[0])
        if best is not None and best[1]:
            chosen_events[name] = float(best[1])
            if best[2]:
                cross_bands.add(name)
        evidence[name] = {
            kind: {
                "queries": int(p["n"]),
                "pooled": {k: round(p[k], 4) for k in ("R@1", "R@10")},
                **{
                    choice_label(c): {k: round(hybrid_of(h, c)[k], 4) for k in ("R@1", "R@10")}
                    for c in choices
                },
            }
            for kind, p, h in found
        }
        if gain is not None:  # the best eligible weighting's, adopted or not
            evidence[name]["gain_R@1"] = {"gain": round(gain[0], 4), "se": round(gain[1], 4)}
        evidence[name]["chosen"] = "off" if best is None else choice_label(best)
    return SearchPolicy(
        sequence_trained=sequence_trained,
        rerank=rerank,
        evidence=evidence,
        text_segments=text_segments,
        rerank_weight=chosen_weights,
        event_weight=chosen_events,
        short=short,
        whole=whole,
        cross_bands=frozenset(cross_bands),
    )
