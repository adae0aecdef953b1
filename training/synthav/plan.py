"""Planning a corpus: splits, held-out combinations, timing twins, realism flags, captions.

Everything here is decided from the seed alone, before any pixel or sample is made.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import cast

import numpy as np

from training.synthav.captions import Wording, make_captions
from training.synthav.variety import draw_variety
from training.synthav.world import (
    AMBIENCES,
    SCENES,
    ClipSpec,
    GeneratorConfig,
    Role,
    Source,
    SourceSpec,
    holds_heldout,
    pick_heldout,
    pick_val_heldout,
    retime,
    sample_source,
)

TWIN_GROUP_SIZE = 4


@dataclass(frozen=True)
class PlannedClip:
    spec: ClipSpec
    captions: dict[str, list[str]]


@dataclass(frozen=True)
class CorpusPlan:
    config: GeneratorConfig
    heldout: frozenset[tuple[str, str]]
    clips: tuple[PlannedClip, ...]
    # The val split's own held-out pairs (`GeneratorConfig.val_heldout_fraction`): in no train
    # clip, forced into that share of the val clips. Empty where the share is 0.
    val_heldout: frozenset[tuple[str, str]] = frozenset()


def _clip_rng(seed: int, index: int, salt: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, index, salt])


def _layout(sources: list[SourceSpec]) -> tuple[tuple[SourceSpec, ...], int]:
    """Give each visible source its own lane (row of the frame); off-screen ones get none."""
    lanes = 0
    placed = []
    for s in sources:
        if s.visible:
            placed.append(replace(s, lane=lanes))
            lanes += 1
        else:
            placed.append(replace(s, lane=-1))
    return tuple(placed), max(lanes, 1)


def _sample_clip(
    cfg: GeneratorConfig,
    index: int,
    split: str,
    forbidden: frozenset[tuple[str, str]],
    forced: tuple[str, str] | None = None,
    allow_offscreen: bool = True,
) -> ClipSpec:
    rng = _clip_rng(cfg.seed, index)
    duration = cfg.render.duration_s
    n_main = 2 if rng.random() < cfg.two_sources_p else 1
    extras: list[Role] = []
    if allow_offscreen and rng.random() < cfg.offscreen_p:
        extras.append(Role.OFFSCREEN)
    if rng.random() < cfg.silent_object_p:
        extras.append(Role.SILENT)
    kinds = [Source(k) for k in rng.permutation([s.value for s in Source])]
    if forced is not None:  # the held-out pair's source is the first main source
        kinds.remove(Source(forced[0]))
        kinds.insert(0, Source(forced[0]))
    roles = [Role.MAIN] * n_main + extras
    sources = [
        sample_source(rng, kind, role, duration, forbidden, forced if i == 0 else None)
        for i, (kind, role) in enumerate(zip(kinds, roles, strict=False))
    ]
    placed, n_lanes = _layout(sources)
    # Its own generators (salt 3 the look, salt 4 whether a train clip is varied at all), so
    # drawing a look never shifts what the world draws above.
    varied = cfg.variety or (
        split == "train"
        and cfg.variety_share > 0
        and _clip_rng(cfg.seed, index, salt=4).random() < cfg.variety_share
    )
    variety = draw_variety(_clip_rng(cfg.seed, index, salt=3)) if varied else None
    return ClipSpec(
        id=f"clip{index:06d}",
        index=index,
        split=split,
        scene=str(rng.choice(SCENES)),
        ambience=str(rng.choice(AMBIENCES)),
        sources=placed,
        n_lanes=n_lanes,
        noise_seed=int(rng.integers(2**31)),
        variety=variety,
        variety_sound_only=varied and not cfg.variety and cfg.variety_parts == "sound",
    )


def _assign_splits(cfg: GeneratorConfig, rng: np.random.Generator) -> list[str]:
    n_test = round(cfg.clips * cfg.test_fraction)
    n_val = round(cfg.clips * cfg.val_fraction)
    labels = ["test"] * n_test + ["val"] * n_val + ["train"] * (cfg.clips - n_test - n_val)
    return [labels[i] for i in rng.permutation(cfg.clips)]


def plan_corpus(cfg: GeneratorConfig) -> CorpusPlan:
    rng = np.random.default_rng([cfg.seed, 2**20])
    heldout = pick_heldout(rng)
    splits = _assign_splits(cfg, rng)
    test_idx = [i for i, s in enumerate(splits) if s == "test"]
    train_idx = [i for i, s in enumerate(splits) if s == "train"]

    n_twins = int(len(test_idx) * cfg.twin_fraction) // TWIN_GROUP_SIZE * TWIN_GROUP_SIZE
    twin_idx = test_idx[:n_twins]
    rest = test_idx[n_twins:]
    forced_idx = set(rest[: round(len(test_idx) * cfg.heldout_fraction)])
    misaligned_idx = (
        set(
            rng.choice(
                train_idx, size=round(len(train_idx) * cfg.misaligned_fraction), replace=False
            ).tolist()
        )
        if train_idx
        else set()
    )

    # The val split's own pairs and which val clips hold one come from their own random stream,
    # so the test split (and every draw above) is the same whatever the val share.
    val_rng = np.random.default_rng([cfg.seed, 2**20, 1])
    val_heldout = (
        pick_val_heldout(val_rng, heldout) if cfg.val_heldout_fraction > 0 else frozenset()
    )
    val_idx = [i for i, s in enumerate(splits) if s == "val"]
    val_forced_idx = set(val_idx[: round(len(val_idx) * cfg.val_heldout_fraction)])

    specs: dict[int, ClipSpec] = {}
    pairs = sorted(heldout)
    val_pairs = sorted(val_heldout)
    for i, split in enumerate(splits):
        if i in twin_idx:
            continue
        if split == "test":
            forced = pairs[int(rng.integers(len(pairs)))] if i in forced_idx else None
            spec = _sample_clip(cfg, i, split, frozenset(), forced)
        elif split == "val":
            forced = (
                val_pairs[int(val_rng.integers(len(val_pairs)))] if i in val_forced_idx else None
            )
            spec = _sample_clip(cfg, i, split, heldout, forced)
            # a val clip's flag: it holds one of the val split's own pairs
            specs[i] = replace(spec, heldout=holds_heldout(spec, val_heldout))
            continue
        else:
            spec = _sample_clip(cfg, i, split, heldout | val_heldout)
        specs[i] = replace(spec, heldout=holds_heldout(spec, heldout))

    captions: dict[int, dict[str, list[str]]] = {}
    _plan_twins(cfg, twin_idx, heldout, specs, captions)
    _plan_misaligned(cfg, sorted(misaligned_idx), train_idx, rng, specs)

    for i, spec in specs.items():
        if i not in captions:
            crng = _clip_rng(cfg.seed, i, salt=1)
            captions[i] = make_captions(
                spec,
                crng,
                cfg.captions_per_kind,
                wording=cast(Wording, spec.split),  # "train" | "val" | "test" (_sample_clip)
                rich=cfg.rich,
            )
    clips = tuple(PlannedClip(specs[i], captions[i]) for i in range(cfg.clips))
    return CorpusPlan(cfg, heldout, clips, val_heldout)


def _plan_twins(
    cfg: GeneratorConfig,
    twin_idx: list[int],
    heldout: frozenset[tuple[str, str]],
    specs: dict[int, ClipSpec],
    captions: dict[int, dict[str, list[str]]],
) -> None:
    """Groups of 4 test clips identical in every attribute and caption, differing only in timing."""
    for g in range(0, len(twin_idx), TWIN_GROUP_SIZE):
        members = twin_idx[g : g + TWIN_GROUP_SIZE]
        base_index = members[0]
        base = _sample_clip(cfg, base_index, "test", frozenset())
        # A group needs at least one seen-and-heard timed source, or the twins could not differ.
        salt = 0
        while not any(s.role is Role.MAIN and s.events for s in base.sources):
            salt += 1
            base = _sample_clip(cfg, base_index + 7919 * salt, "test", frozenset())
        group = f"twins{base_index:06d}"
        crng = _clip_rng(cfg.seed, base_index, salt=1)
        shared = make_captions(base, crng, cfg.captions_per_kind, "test", rich=cfg.rich)
        for j, i in enumerate(members):
            trng = _clip_rng(cfg.seed, i, salt=2)
            sources = (
                base.sources
                if j == 0
                else tuple(retime(trng, s, cfg.render.duration_s) for s in base.sources)
            )
            spec = replace(
                base,
                id=f"clip{i:06d}",
                index=i,
                sources=sources,
                twin_group=group,
                noise_seed=int(trng.integers(2**31)),
            )
            specs[i] = replace(spec, heldout=holds_heldout(spec, heldout))
            captions[i] = shared


def _plan_misaligned(
    cfg: GeneratorConfig,
    misaligned: list[int],
    train_idx: list[int],
    rng: np.random.Generator,
    specs: dict[int, ClipSpec],
) -> None:
    """Give each misaligned train clip the audio track of another, aligned, train clip."""
    donors = [i for i in train_idx if i not in set(misaligned)]
    if not donors:
        return
    for i in misaligned:
        own = {s.kind for s in specs[i].sources}
        choices = [d for d in donors if not own & {s.kind for s in specs[d].sources}] or donors
        donor = specs[choices[int(rng.integers(len(choices)))]]
        specs[i] = replace(specs[i], audio_donor=donor)
