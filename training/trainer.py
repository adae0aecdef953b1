"""The trainer: one thin loop over batches, with checkpoints, validation and resume.

Output directory layout:
  last/   model checkpoint + trainer_state.pt (optimizer, schedule, epoch, RNG) — for --resume
  best/   model checkpoint with the best validation score
  metrics.jsonl   one line per logged step, per epoch, per part of a phase, and the search
                  policy's measurement (its parts timed)
  train_config.json
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from models.config import Modality, preset
from models.encoders import (
    AudioEncoder,
    Embeddings,
    PictureInputs,
    SequenceBranch,
    TemporalHead,
    VisualEncoder,
)
from models.media import Fit
from models.model import TrimodalModel
from models.policy import DIRECTIONS as POLICY_DIRECTIONS
from models.policy import SearchPolicy, save_policy
from models.sequence import Distance
from models.text import TextBackbone
from training.attribute_phase import ATTRIBUTE_PHASE_DONE, attribute_phase
from training.augment import AugmentConfig, level_only
from training.batches import Batch, Example, all_captions, examples, iterate_batches, shown_slower
from training.cache import DecodeSpec, FeatureCache, TextCache
from training.datasets import ManifestItem, load_manifest
from training.event_phase import EVENT_PHASE_DONE, event_phase
from training.losses import (
    PairWeights,
    TextBatch,
    paraphrase_loss,
    scav_loss,
    single_stage_loss,
    soft_targets,
    step_contrast_loss,
    sync_loss,
    two_stage_loss,
)
from training.pictures import PictureMemo
from training.search_policy import distractors_for, measure_policy
from training.what_phase import WHAT_PHASE_DONE, what_phase

logger = logging.getLogger(__name__)

Objective = Literal["single-stage", "two-stage"]


@dataclass(frozen=True)
class TrainConfig:
    preset: str = "small"
    objective: Objective = "single-stage"
    scav_weight: float = 0.0  # weight of the SCAV sequence loss (0 = off)
    scav_distance: Distance = "interp"
    weights: PairWeights = field(default_factory=PairWeights)
    epochs: int = 8
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 30
    stage1_fraction: float = 0.5  # two-stage: share of epochs spent on vision–text
    seed: int = 0
    device: str = "auto"
    workers: int | None = None
    log_every: int = 10
    # Stop the main epochs cleanly (and checkpoint) after this long; the branch phase still runs.
    max_minutes: float | None = None
    text_head: str | None = None  # override the preset's text projection (mlp, linear, identity)
    embed_dim: int | None = None  # override the preset's shared dimension
    # Soft text targets (losses.soft_targets): temperature over the frozen tower's caption
    # similarities; 0 = plain one-hot InfoNCE.
    soft_target_temperature: float = 0.0
    # Re-show and re-hear every training clip another way each epoch (training.augment): crops,
    # light, blur, noise; gain, EQ, band-limiting, reverb, noise. None = off. The default changes
    # only the sound's recording level (`level_only`, -24..+6 dB): trained at the generator's
    # levels, the small model lost 45 % of its val text→audio R@10 on sound 20 dB quieter
    # (0.67 → 0.37; with it 0.63 → 0.63), at the same val score at the generator's own level
    # (0.659 vs 0.662; docs/quality-log.md, "A learned space that transfers").
    augment: AugmentConfig | None = field(default_factory=level_only)
    # Weight of the paraphrase loss (losses.paraphrase_loss): two wordings of one clip's caption
    # embed together. Only a trainable text head (mlp, linear, residual) learns from it. 0 = off.
    paraphrase_weight: float = 0.0
    paraphrase_temperature: float = 0.05
    # Weight of the timing objective (`sync_objective`) that trains the sequence heads to know when
    # things happen; 0 = off. Its temperature is fixed (cosine logits). Every preset trains its
    # sequence heads with these (see docs/quality-log.md "Time-aware matching"): whole-sequence sync
    # with shifted negatives, the excerpt objective, and positions jittered so that neither can be
    # solved by matching positions.
    sync_weight: float = 1.0
    sync_temperature: float = 0.05
    # Which timing objective `sync_weight` weighs: "clips" (losses.sync_loss: whole sequences,
    # other clips and the clip's own shifted picture as negatives) or "steps"
    # (losses.step_contrast_loss).
    sync_objective: Literal["steps", "clips"] = "clips"
    # Positions start at a random step in [0, position_jitter) per training sample
    # (models.encoders.TemporalHead): an excerpt's steps then match the whole clip's, and sound
    # and picture cannot be matched by position. 0 = off (the step contrast is then solved by
    # positions alone: measured).
    position_jitter: int = 24
    # Weight of the excerpt objective (`excerpt_loss`): a piece cut from each clip at a random step,
    # encoded alone, must land on the whole clip's steps at the same times, in its own modality and
    # the other. 0 = off. Costs an extra encoder pass over the pieces. 0.25 beside the sync loss's
    # 1, chosen on the val split for the branch phase (0, 0.25, 0.5, 1: docs/quality-log.md
    # "Time-aware matching").
    excerpt_weight: float = 0.25
    excerpt_steps: tuple[int, int] = (6, 16)  # the pieces' lengths, in steps (1.5–4 s at 4/s)
    excerpt_rows: int = 8  # clips of a batch that give a piece (the extra pass costs time)
    # Share of the sequence branch's gradient that reaches the shared encoder (0 = detached).
    branch_trunk_gradient: float = 0.0
    # Override the preset's sequence branch (models.encoders.SequenceBranch).
    sequence_branch: bool | None = None
    # Override the preset's explicit event inputs (sound onsets, picture changes; models.encoders).
    event_inputs: bool | None = None
    # After the main epochs: this many more in which only the sequence branches learn, from the
    # timing objectives alone, on the trunk as the best epoch left it (frozen; in training mode,
    # see `_branch_phase`).
    # The main epochs then leave the branches out (faster; they read detached trunk tokens, so
    # they never shaped the trunk) unless `branch_in_main_epochs`; with 0 the main epochs train
    # them. Chosen on the val split (docs/quality-log.md "Time-aware matching").
    branch_epochs: int = 8
    # Train the sequence branches in the main epochs too (before the branch phase, if any).
    branch_in_main_epochs: bool = False
    # The share of the branch phase's clips shown each epoch as a file at a lower frame rate is
    # decoded (`training.batches.shown_slower`: 8 or 10 fps held on the 12 fps grid), their
    # sound as it was. Off: 0.3 cost the re-encoded val clips' 8 and 10 fps files it was for
    # (whole-clip video→audio R@1 0.654 → 0.538 and 0.667 → 0.593, the policies weighing alike;
    # docs/quality-log.md "What did not work").
    branch_slow_share: float = 0.0
    # Override the preset's sequence_detrend (models.config.ModelConfig).
    sequence_detrend: int | None = None
    # Override the preset's visual trunk_every (the shared encoder reads every k-th frame).
    trunk_every: int | None = None
    # After the main epochs and the branch phase: this many epochs in which only the picture's event
    # network learns, from each clip's own sound (`training.event_phase`); the checkpoint then
    # matches pictures by its envelope instead of the hand-made change envelope. 0 = no network (the
    # hand-made envelope). Chosen on the val splits (docs/quality-log.md "A picture's events,
    # learned from its sound"): 4 epochs found more than 3 on all three; 8, with some windows shown
    # at a lower frame rate (`training.event_phase.vary_rate`), more than 4 on all three
    # (2026-12-03; the phase's time about doubles: 46 → 101 s in a slow hour on two cores).
    event_epochs: int = 8
    # After the event phase: this many epochs in which only the networks naming what a picture shows
    # and a sound sounds learn, from the training clips' metadata (`training.what_phase`); 0 = no
    # networks (the checkpoint searches without them). After 12 the picture network names every
    # source's kind and size in 0.935 of the own val clips, the sound's in 0.985
    # (docs/quality-log.md "What a piece shows and sounds"); 8 and 6 epochs name pictures in 0.88
    # and 0.87 of them (a probe from fresh networks, 2026-12-05). The phase takes ~165 s on two
    # cores.
    what_epochs: int = 12
    # Each what-phase piece drawn and heard another way that keeps its sources' kind and size
    # (`training.what_phase.vary_pictures` / `vary_sounds`: colours, light, contrast, noise, focus,
    # mirror; the band's tilt, a noise floor, a low sample rate's cut-off). Off: on the val splits
    # it moved every one by a query or three either way and cost the policy's own 1.5 s footage →
    # sound evidence (docs/quality-log.md "Variety clips lent to the what networks").
    what_vary: bool = False
    # After the what phase: fit the readers of what a caption names and a picture shows
    # (`models.attributes`, `training.attribute_phase`) from the training clips' metadata; a text
    # query searching videos then leans on them where val measures that it helps
    # (docs/quality-log.md "What a sentence says, read from its words").
    text_attributes: bool = True
    # Override the preset's initial contrastive temperature (models.config.ModelConfig; the learned
    # logit scales start at its inverse). Val mean R@10: 0.02 → 0.561, 0.07 (the presets') → 0.659,
    # 0.1 → 0.644 (docs/quality-log.md, "An attribute loss, and other temperatures").
    init_temperature: float | None = None

    @property
    def defers_branches(self) -> bool:
        """Whether the sequence branches learn only in the branch phase (not in the main epochs)."""
        return self.branch_epochs > 0 and not self.branch_in_main_epochs

    @property
    def trains_sequences(self) -> bool:
        """Whether a sequence objective trains the per-step heads."""
        return self.scav_weight > 0 or self.sync_weight > 0 or self.excerpt_weight > 0

    def __post_init__(self) -> None:
        if self.objective not in ("single-stage", "two-stage"):
            raise ValueError(f"objective must be single-stage or two-stage, not {self.objective!r}")
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError("epochs must be >= 1 and batch_size >= 2 (contrast needs negatives)")
        if self.scav_weight < 0:
            raise ValueError("scav_weight must be >= 0")
        if self.excerpt_weight < 0 or not 1 <= self.excerpt_steps[0] <= self.excerpt_steps[1]:
            raise ValueError(
                "excerpt_weight must be >= 0 and excerpt_steps an ordered (lo, hi) >= 1"
            )
        if self.excerpt_rows < 2 or not 0 <= self.branch_trunk_gradient <= 1:
            raise ValueError("excerpt_rows must be >= 2 and branch_trunk_gradient in [0, 1]")
        if self.position_jitter < 0:
            raise ValueError("position_jitter must be >= 0 (steps; 0 = off)")
        if self.sync_weight < 0 or self.sync_temperature <= 0:
            raise ValueError("sync_weight must be >= 0 and sync_temperature > 0")
        if self.paraphrase_weight < 0 or self.paraphrase_temperature <= 0:
            raise ValueError("paraphrase_weight must be >= 0 and paraphrase_temperature > 0")
        if self.init_temperature is not None and not 0 < self.init_temperature <= 1:
            raise ValueError("init_temperature must be in (0, 1]")
        if self.soft_target_temperature < 0:
            raise ValueError("soft_target_temperature must be >= 0 (0 = off)")
        if self.event_epochs < 0:
            raise ValueError("event_epochs must be >= 0 (0 = the hand-made picture envelope)")
        if self.what_epochs < 0:
            raise ValueError("what_epochs must be >= 0 (0 = no what networks)")
        if not 0.0 <= self.branch_slow_share <= 1.0:
            raise ValueError("branch_slow_share must be in [0, 1]")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but no CUDA device is available")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Prepared:
    """Everything a run needs that is expensive to make: caches and the text tower."""

    train: list[Example]
    val: list[Example]
    cache: FeatureCache
    texts: TextCache
    backbone: TextBackbone
    skipped: dict[str, str]
    val_items: list[ManifestItem] = field(default_factory=list)  # for the search policy
    train_items: list[ManifestItem] = field(default_factory=list)  # its distractors
    # More clips for the picture event network only (`training.event_phase`): any media with
    # sound, labels unused, e.g. clips drawn and synthesised unlike the training ones
    event_extra: list[tuple[FeatureCache, list[str]]] = field(default_factory=list)
    # More clips for the what networks only (`training.what_phase`): clips whose metadata names
    # their sources, e.g. drawn and synthesised unlike the training ones (`--what-data`)
    what_extra: list[tuple[FeatureCache, list[ManifestItem]]] = field(default_factory=list)


def decode_spec(model_preset: str, fit: Fit | None = None, fps: float | None = None) -> DecodeSpec:
    """How `model_preset` decodes media, `fit` and `fps` overriding its own (checked here,
    before any decoding: the grid needs whole frames per step; the trunk's share of them is
    the training config's to choose)."""
    cfg = preset(model_preset)
    spec = DecodeSpec.for_model(cfg)
    if fit is not None:
        spec = replace(spec, fit=fit)
    if fps is not None:
        replace(cfg, visual=replace(cfg.visual, fps=fps, trunk_every=1))
        spec = replace(spec, fps=fps)
    return spec


def lent_event_clips(
    manifest: str | os.PathLike[str],
    model_preset: str,
    cache_root: Path,
    workers: int | None = None,
    fit: Fit | None = None,
    fps: float | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[tuple[FeatureCache, list[str]]]:
    """`Prepared.event_extra` from another manifest's train split (`--event-data`): its clips
    decoded as the run decodes (cached); clips that fail to decode are in the cache's `skipped`
    and left out. ValueError when the manifest has no train split."""
    lent = lent_clips(manifest, model_preset, cache_root, workers, fit, fps, on_progress)
    return [(cache, [i.id for i in kept]) for cache, kept in lent]


def lent_clips(
    manifest: str | os.PathLike[str],
    model_preset: str,
    cache_root: Path,
    workers: int | None = None,
    fit: Fit | None = None,
    fps: float | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[tuple[FeatureCache, list[ManifestItem]]]:
    """Another manifest's train split decoded as the run decodes (cached), for a phase that
    learns from more clips than the run's own (`--event-data`, `--what-data`): the clips that
    decode, with their manifest entries; those that fail are in the cache's `skipped`.
    ValueError when the manifest has no train split."""
    items = load_manifest(manifest, splits=("train",))
    if not items:
        raise ValueError(f"{manifest} has no train split")
    spec = decode_spec(model_preset, fit, fps)
    cache = FeatureCache.build(items, spec, cache_root, workers, on_progress=on_progress)
    return [(cache, [i for i in items if i.id in cache.row])]


def prepare(
    items: list[ManifestItem],
    model_preset: str,
    cache_root: Path,
    workers: int | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
    fit: Fit | None = None,
    fps: float | None = None,
) -> Prepared:
    """Decode `items` for `model_preset` (cached), `fit` overriding how the preset squares
    non-square pictures and `fps` how many frames a second it samples; a model trained on the
    result records both."""
    cfg = preset(model_preset)
    spec = decode_spec(model_preset, fit, fps)
    cache = FeatureCache.build(
        items,
        spec,
        cache_root,
        workers,
        on_progress=(lambda n, t: on_progress("decode", n, t)) if on_progress else None,
    )
    exs = examples(items, cache)
    split = {i.id: i.split for i in items}
    train = [e for e in exs if split[e.id] == "train"]
    val = [e for e in exs if split[e.id] == "val"]
    backbone = TextBackbone(cfg.text)
    texts = TextCache(cache_root, f"{cfg.text.model}|{cfg.text.max_length}")
    captions = all_captions(train + val)
    if on_progress:
        on_progress("text", 0, len(captions))
    texts.ensure(captions, backbone.embed)
    kept = [i for i in items if i.id in cache.row]
    val_items = [i for i in kept if split[i.id] == "val"]
    train_items = [i for i in kept if split[i.id] == "train"]
    return Prepared(train, val, cache, texts, backbone, dict(cache.skipped), val_items, train_items)


def record_policy(
    prepared: Prepared,
    checkpoint: Path,
    sequence_trained: bool,
    device: torch.device,
    timings: dict[str, float] | None = None,
) -> SearchPolicy:
    """Measure on the validation split, searched among training clips (`distractors_for`), what
    the checkpoint's sequence heads are good for, and record it beside the weights
    (`models.policy`): the index and the service take their re-rank defaults from it. No
    objective here puts the steps in the text space (SCAV and the timing objectives contrast
    sound with picture), so text hits are never localised by them. `timings`, where given, gets
    the measurement's parts' seconds (`measure_policy`)."""
    if prepared.val_items:
        model = TrimodalModel.load(checkpoint, device, prepared.backbone)
        policy = measure_policy(
            model,
            prepared.val_items,
            prepared.cache,
            prepared.texts,
            sequence_trained,
            text_segments=False,
            distractors=distractors_for(prepared.val_items, prepared.train_items),
            timings=timings,
        )
    else:
        policy = SearchPolicy(
            sequence_trained,
            dict.fromkeys(POLICY_DIRECTIONS, False),
            {"reason": "no validation split to measure the re-rank on"},
            text_segments=False,
        )
    save_policy(checkpoint, policy)
    return policy


def _text_batch(model: TrimodalModel, batch: Batch, device: torch.device) -> TextBatch:
    proj = {k: model.project_text(v.to(device)).pooled for k, v in batch.text.items()}
    return TextBatch(proj["visual"], proj["audio"], proj["audiovisual"])


def _stage(cfg: TrainConfig, epoch: int) -> int:
    return 1 if epoch < max(1, round(cfg.epochs * cfg.stage1_fraction)) else 2


def _set_trainable(model: TrimodalModel, cfg: TrainConfig, epoch: int) -> None:
    """Two-stage: stage 1 trains vision and the text head; stage 2 trains audio alone, into the
    vision–text space that stage 1 fixed (vision and the text head frozen)."""
    if cfg.objective != "two-stage":
        return
    stage = _stage(cfg, epoch)
    model.encoders[Modality.VISUAL].requires_grad_(stage == 1)
    model.text.project_head.requires_grad_(stage == 1)
    model.encoders[Modality.AUDIO].requires_grad_(stage == 2)


def batch_pictures(
    model: TrimodalModel, batch: Batch, memo: PictureMemo | None = None
) -> PictureInputs:
    """What the visual encoder reads of a batch's frames; with `memo` (the cache's), what needs
    no learning is made once per clip whose frames are the cache's own (`training.pictures`)."""
    if memo is None or batch.frame_keys is None:
        encoder = model.encoders[Modality.VISUAL]
        assert isinstance(encoder, VisualEncoder)
        return encoder.measure(*model.visual_inputs(batch.frames))
    return memo.inputs(model, batch.frames, batch.frame_keys)


def train_step(
    model: TrimodalModel,
    batch: Batch,
    cfg: TrainConfig,
    epoch: int,
    device: torch.device,
    pictures: PictureMemo | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    scales = {p: model.scale(p) for p in model.logit_scale}
    text = _text_batch(model, batch, device)
    audio_valid = batch.has_audio.to(device) & batch.has_video.to(device)
    stage = _stage(cfg, epoch) if cfg.objective == "two-stage" else 0
    visual = audio = None
    if stage in (0, 1):
        visual = model.encode_pictures(batch_pictures(model, batch, pictures))
    if stage in (0, 2):
        audio = model.encode_audio(*model.audio_inputs(batch.audio))
    if stage == 0:
        assert visual is not None and audio is not None
        targets = None
        if cfg.soft_target_temperature > 0:
            targets = {
                k: soft_targets(v.to(device), cfg.soft_target_temperature)
                for k, v in batch.text.items()
            }
        loss, parts = single_stage_loss(
            visual, audio, text, scales, cfg.weights, audio_valid, targets
        )
    else:
        loss, parts = two_stage_loss(stage, visual, audio, text, scales, audio_valid)
    if cfg.paraphrase_weight > 0 and batch.text_alt is not None:
        alt = _text_batch(model, replace(batch, text=batch.text_alt), device)
        l_par = torch.stack(
            [
                paraphrase_loss(
                    getattr(text, kind),
                    getattr(alt, kind),
                    batch.text[kind].to(device),
                    batch.text_alt[kind].to(device),
                    cfg.paraphrase_temperature,
                )
                for kind in ("visual", "audio", "audiovisual")
            ]
        ).mean()
        loss = loss + cfg.paraphrase_weight * l_par
        parts["para"] = float(l_par.detach())
    if cfg.scav_weight > 0 and visual is not None and audio is not None:
        l_seq = scav_loss(audio, visual, scales["sequence"], cfg.scav_distance, audio_valid)
        loss = loss + cfg.scav_weight * l_seq
        parts["scav"] = l_seq.item()
    if visual is not None and audio is not None and _branches_run(model):
        l_timing, timing_parts = timing_losses(model, batch, audio, visual, audio_valid, cfg)
        loss = loss + l_timing
        parts |= timing_parts
    parts["loss"] = loss.item()
    return loss, parts


def _encoders_with_branches(model: TrimodalModel) -> list[AudioEncoder | VisualEncoder]:
    encoders = (model.encoders[Modality.AUDIO], model.encoders[Modality.VISUAL])
    return [
        e for e in encoders if isinstance(e, AudioEncoder | VisualEncoder) and e.branch is not None
    ]


def _branches_run(model: TrimodalModel) -> bool:
    """False while the main epochs leave the sequence branches out (`defers_branches`): the
    timing objectives then wait for the branch phase."""
    return all(e.run_branch for e in _encoders_with_branches(model))


def timing_losses(
    model: TrimodalModel,
    batch: Batch,
    audio: Embeddings,
    visual: Embeddings,
    valid: torch.Tensor,
    cfg: TrainConfig,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The weighted timing objectives (sync, excerpt) and their parts for the log."""
    loss = audio.pooled.new_zeros(())
    parts: dict[str, float] = {}
    if cfg.sync_weight > 0:
        if cfg.sync_objective == "clips":
            l_sync = sync_loss(audio, visual, cfg.sync_temperature, valid=valid)
        else:
            l_sync = step_contrast_loss(audio, visual, cfg.sync_temperature, valid)
        loss = loss + cfg.sync_weight * l_sync
        parts["sync"] = float(l_sync.detach())
    if cfg.excerpt_weight > 0:
        l_ex = excerpt_loss(model, batch, audio, visual, valid, cfg)
        loss = loss + cfg.excerpt_weight * l_ex
        parts["excerpt"] = float(l_ex.detach())
    return loss, parts


def branch_step(
    model: TrimodalModel,
    batch: Batch,
    cfg: TrainConfig,
    device: torch.device,
    pictures: PictureMemo | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The timing objectives alone (`train_step`'s sync and excerpt terms), for the branch phase."""
    visual = model.encode_pictures(batch_pictures(model, batch, pictures))
    audio = model.encode_audio(*model.audio_inputs(batch.audio))
    valid = batch.has_audio.to(device) & batch.has_video.to(device)
    loss, parts = timing_losses(model, batch, audio, visual, valid, cfg)
    parts["loss"] = float(loss.detach())
    return loss, parts


def _epoch_batches(
    prepared: Prepared,
    cfg: TrainConfig,
    model: TrimodalModel,
    rng: np.random.Generator,
    paraphrases: bool = False,
) -> Iterator[Batch]:
    """One epoch of the training split in batches, augmented as `cfg` says."""
    return iterate_batches(
        prepared.train,
        prepared.cache,
        prepared.texts,
        cfg.batch_size,
        rng,
        augment=cfg.augment,
        sample_rate=model.cfg.audio.sample_rate,
        paraphrases=paraphrases,
    )


BRANCH_PHASE_DONE = "branch_phase.json"


def _branch_phase(
    prepared: Prepared,
    cfg: TrainConfig,
    out: Path,
    device: torch.device,
    log: Any,
    on_step: Callable[[int, int, dict[str, float]], None] | None,
    start: float,
) -> None:
    """`cfg.branch_epochs` epochs in which only the sequence branches of the best checkpoint
    learn; the result replaces `best/` (its pooled vectors stay bit-identical)."""
    model = TrimodalModel.load(out / "best", device, prepared.backbone, warn_untrained=False)
    branches = [m for m in model.modules() if isinstance(m, SequenceBranch)]
    if not branches or not cfg.trains_sequences:
        return
    model.requires_grad_(False)
    params = [p for b in branches for p in b.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    # The frozen trunk runs in training mode (dropout, jittered positions) as in the main
    # epochs: its tokens vary a little from epoch to epoch, which the branch gains from (with
    # the trunk as at search time, val audio→video and video→audio were lower: docs/quality-log.md).
    for module in model.modules():
        if isinstance(module, TemporalHead):
            module.position_jitter = cfg.position_jitter
    model.train()
    # the trunk does not learn here: its stem's outputs of each clip are kept across epochs
    with prepared.cache.pictures.frozen_stem(model):
        for epoch in range(cfg.branch_epochs):
            rng = np.random.default_rng([cfg.seed, 1_000 + epoch])
            sums: dict[str, float] = {}
            n = 0
            slower = np.random.default_rng([cfg.seed, 3_000 + epoch])  # the batches' rng as it was
            for batch in _epoch_batches(prepared, cfg, model, rng):
                if cfg.branch_slow_share > 0:
                    batch = shown_slower(batch, slower, cfg.branch_slow_share)
                loss, parts = branch_step(model, batch, cfg, device, prepared.cache.pictures)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                n += 1
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + v
                if on_step:
                    on_step(cfg.epochs + epoch, n, parts)
            record = {
                "phase": "branch",
                "epoch": cfg.epochs + epoch,
                **{k: v / max(1, n) for k, v in sums.items()},
                "seconds": round(time.perf_counter() - start, 1),
            }
            log.write(json.dumps(record) + "\n")
            log.flush()
    model.eval()
    model.save(out / "best")


def excerpt_loss(
    model: TrimodalModel,
    batch: Batch,
    audio: Embeddings,
    visual: Embeddings,
    valid: torch.Tensor,
    cfg: TrainConfig,
) -> torch.Tensor:
    """Pieces of `cfg.excerpt_steps` steps cut from every clip with both streams at a random
    step, sound and picture encoded alone (as a user's excerpt query is), contrasted step by step
    with the whole clip's steps at the same times (`step_contrast_loss`): sound piece against the
    clip's sound and its picture, picture piece against its picture and its sound. A piece then
    lands on the steps it was cut from, wherever it starts."""
    mc = model.cfg
    sps, fps, sr = mc.steps_per_second, mc.visual.fps, mc.audio.sample_rate
    length = torch.minimum(audio.mask.sum(1), visual.mask.sum(1))  # (B,) steps in both
    lo, hi = cfg.excerpt_steps
    n = int(torch.randint(lo, hi + 1, ()))
    rows = [b for b in range(len(batch.ids)) if bool(valid[b]) and int(length[b]) > n]
    rows = rows[: cfg.excerpt_rows]  # batches come shuffled: the first ones are a random few
    if len(rows) < 2:
        return audio.pooled.new_zeros(())
    starts = [int(torch.randint(0, int(length[b]) - n + 1, ())) for b in rows]
    frames = [
        batch.frames[b][round(s * fps / sps) : round((s + n) * fps / sps)]
        for b, s in zip(rows, starts, strict=True)
    ]
    waves = [
        batch.audio[b][round(s * sr / sps) : round((s + n) * sr / sps)]
        for b, s in zip(rows, starts, strict=True)
    ]
    piece_a = model.encode_audio(*model.audio_inputs(waves))
    piece_v = model.encode_visual(*model.visual_inputs(frames))
    index = torch.tensor(rows, device=audio.sequence.device)
    steps = torch.tensor(starts, device=index.device)[:, None] + torch.arange(
        n, device=index.device
    )

    def cut(e: Embeddings) -> Embeddings:
        seq = e.sequence[index[:, None], steps]  # (R, n, D)
        return Embeddings(e.pooled[index], seq, e.mask[index[:, None], steps])

    whole_a, whole_v = cut(audio), cut(visual)
    t = cfg.sync_temperature
    return 0.25 * (
        step_contrast_loss(piece_a, whole_a, t)
        + step_contrast_loss(piece_v, whole_v, t)
        + step_contrast_loss(piece_a, whole_v, t)
        + step_contrast_loss(whole_a, piece_v, t)
    )


def _lr_lambda(cfg: TrainConfig, total_steps: int) -> Callable[[int], float]:
    def schedule(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return schedule


def _save_state(
    out: Path, model: TrimodalModel, opt, sched, epoch: int, step: int, best: float
) -> None:
    model.save(out / "last")
    state = {
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "epoch": epoch,
        "step": step,
        "best": best,
        "rng": {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
        },
    }
    tmp = out / "last" / ".trainer_state.pt.part"
    torch.save(state, tmp)
    os.replace(tmp, out / "last" / "trainer_state.pt")


@dataclass
class TrainResult:
    out_dir: Path
    epochs_done: int
    best_score: float
    history: list[dict[str, Any]]
    seconds: float
    stopped_early: bool = False


def train(
    prepared: Prepared,
    cfg: TrainConfig,
    out_dir: str | os.PathLike[str],
    resume: bool = False,
    validate: Callable[[TrimodalModel], dict[str, float]] | None = None,
    on_step: Callable[[int, int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train on `prepared.train`; validate each epoch with `validate` (higher `score` is better)."""
    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    model_cfg = preset(cfg.preset)
    if cfg.text_head is not None:
        model_cfg = replace(model_cfg, text=replace(model_cfg.text, head=cfg.text_head))
    if cfg.embed_dim is not None:
        model_cfg = replace(model_cfg, embed_dim=cfg.embed_dim)
    if cfg.sequence_branch is not None:
        model_cfg = replace(model_cfg, sequence_branch=cfg.sequence_branch)
    if cfg.sequence_detrend is not None:
        model_cfg = replace(model_cfg, sequence_detrend=cfg.sequence_detrend)
    if cfg.init_temperature is not None:
        model_cfg = replace(model_cfg, init_temperature=cfg.init_temperature)
    if cfg.event_inputs is not None:
        model_cfg = replace(
            model_cfg,
            audio=replace(model_cfg.audio, events=cfg.event_inputs),
            visual=replace(model_cfg.visual, events=cfg.event_inputs),
        )
    if cfg.event_epochs > 0:
        model_cfg = replace(model_cfg, picture_events="learned")
    if cfg.what_epochs > 0:
        model_cfg = replace(model_cfg, what_nets=True)
    if cfg.text_attributes:
        model_cfg = replace(model_cfg, attribute_readers=True)
    # The model decodes pictures the way its training features were decoded, at index and query
    # time too: the fit and the frame rate are the cache's, recorded in the checkpoint's config.
    spec = prepared.cache.spec
    every = model_cfg.visual.trunk_every if cfg.trunk_every is None else cfg.trunk_every
    model_cfg = replace(
        model_cfg,
        visual=replace(model_cfg.visual, fit=spec.fit, fps=spec.fps, trunk_every=every),
    )
    model = TrimodalModel(model_cfg, prepared.backbone).to(device)
    for module in model.modules():
        if isinstance(module, TemporalHead):
            module.position_jitter = cfg.position_jitter
        if isinstance(module, SequenceBranch):
            module.trunk_gradient = cfg.branch_trunk_gradient
    if cfg.paraphrase_weight > 0 and not list(model.text.project_head.parameters()):
        raise ValueError(
            f"the paraphrase loss needs a trainable text head; {model_cfg.text.head!r} has none "
            "(choose text_head mlp, linear or residual)"
        )
    # Branches that learn only in the branch phase stay out of the main epochs altogether.
    deferred = bool(_encoders_with_branches(model)) and cfg.defers_branches and cfg.trains_sequences
    for encoder in _encoders_with_branches(model):
        encoder.run_branch = not deferred
    params = [
        p
        for n, p in model.named_parameters()
        if not n.startswith("encoders.text.backbone.") and not (deferred and ".branch." in n)
    ]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, len(prepared.train) // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg, total))
    first_epoch, step, best = 0, 0, -math.inf
    if resume and (out / "last" / "trainer_state.pt").is_file():
        loaded = TrimodalModel.load(out / "last", device, prepared.backbone, warn_untrained=False)
        model.load_state_dict(loaded.state_dict())
        state = torch.load(out / "last" / "trainer_state.pt", weights_only=False)
        first_epoch, step, best = state["epoch"], state["step"], state["best"]
        try:
            opt.load_state_dict(state["optimizer"])
        except ValueError as e:
            # a run saved by a version whose model had other parameters (a reader added
            # since): its phases can be run again, its main epochs cannot go on
            if first_epoch < cfg.epochs:
                raise ValueError(
                    f"{out}: the saved optimizer does not fit this version's model ({e}); "
                    f"its main epochs ({first_epoch} of {cfg.epochs} done) cannot be resumed"
                ) from e
            logger.warning(
                "%s: the saved optimizer does not fit this version's model (%s); its main "
                "epochs are done, so only its phases run",
                out,
                e,
            )
        sched.load_state_dict(state["scheduler"])
        random.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])
        torch.set_rng_state(state["rng"]["torch"])
    (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2, default=str))
    log = open(out / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115 (closed in finally)
    history: list[dict[str, Any]] = []
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    # The branch phase ran on best/ as it is now: a resumed run whose epochs find no better
    # checkpoint does not phase the same branches twice, one interrupted inside the phase
    # completes it, and a new best/ (fresh from the main epochs) drops the marker.
    phase_done = out / BRANCH_PHASE_DONE
    events_done = out / EVENT_PHASE_DONE  # the same, for the event phase
    what_done = out / WHAT_PHASE_DONE  # and the what phase
    attributes_done = out / ATTRIBUTE_PHASE_DONE  # and the attribute phase
    stopped = False
    epoch = first_epoch
    try:
        for epoch in range(first_epoch, cfg.epochs):
            model.train()
            _set_trainable(model, cfg, epoch)
            rng = np.random.default_rng([cfg.seed, epoch])
            sums: dict[str, float] = {}
            n = 0
            for batch in _epoch_batches(
                prepared, cfg, model, rng, paraphrases=cfg.paraphrase_weight > 0
            ):
                with autocast:
                    loss, parts = train_step(
                        model, batch, cfg, epoch, device, prepared.cache.pictures
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                sched.step()
                step += 1
                n += 1
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + v
                if on_step:
                    on_step(epoch, step, parts)
                if step % cfg.log_every == 0:
                    log.write(
                        json.dumps(
                            {"step": step, "epoch": epoch, "lr": sched.get_last_lr()[0], **parts}
                        )
                        + "\n"
                    )
                    log.flush()
                if cfg.max_minutes and time.perf_counter() - start > 60 * cfg.max_minutes:
                    stopped = True
                    break
            record: dict[str, Any] = {
                "epoch": epoch,
                "step": step,
                **{k: v / max(1, n) for k, v in sums.items()},
            }
            if validate is not None:
                model.eval()
                record |= {f"val_{k}": v for k, v in validate(model).items()}
            score = record.get("val_score", -record.get("loss", 0.0))
            if score > best:
                best = score
                phase_done.unlink(missing_ok=True)
                events_done.unlink(missing_ok=True)
                what_done.unlink(missing_ok=True)
                attributes_done.unlink(missing_ok=True)
                model.save(out / "best")
            record["seconds"] = round(time.perf_counter() - start, 1)
            history.append(record)
            log.write(json.dumps(record) + "\n")
            log.flush()
            _save_state(out, model, opt, sched, epoch + 1, step, best)
            if stopped:
                break
        # Also after a stop at max_minutes (the cap bounds the main epochs; the phase's few
        # epochs cost a known time): branches left out of the main epochs must not ship
        # untrained.
        if cfg.branch_epochs > 0 and (out / "best").is_dir() and not phase_done.exists():
            _branch_phase(prepared, cfg, out, device, log, on_step, start)
            phase_done.write_text(json.dumps({"branch_epochs": cfg.branch_epochs}) + "\n")
        # Then the picture's event network, on the finished checkpoint (it reads pictures and
        # the decoder's measures only, so nothing before changes what it learns).
        if (
            cfg.event_epochs > 0
            and (out / "best").is_dir()
            and not events_done.exists()
            and event_phase(
                prepared,
                cfg.event_epochs,
                cfg.seed,
                out,
                device,
                log,
                start,
                prepared.event_extra,
            )
        ):
            events_done.write_text(json.dumps({"event_epochs": cfg.event_epochs}) + "\n")
        # Then what the pictures show and the sounds sound, on the same finished checkpoint.
        if (
            cfg.what_epochs > 0
            and (out / "best").is_dir()
            and not what_done.exists()
            and what_phase(
                prepared,
                cfg.what_epochs,
                cfg.seed,
                out,
                device,
                log,
                start,
                prepared.what_extra,
                cfg.what_vary,
            )
        ):
            what_done.write_text(json.dumps({"what_epochs": cfg.what_epochs}) + "\n")
        # Then what a caption names and a picture shows, on the same finished checkpoint.
        if (
            cfg.text_attributes
            and (out / "best").is_dir()
            and not attributes_done.exists()
            and attribute_phase(prepared, cfg.seed, out, device, log, start)
        ):
            attributes_done.write_text(json.dumps({"text_attributes": True}) + "\n")
    finally:
        log.close()
    if (out / "best").is_dir():
        # Deferred branches that never had their phase (a run stopped early) are untrained: the
        # checkpoint says so and searches pooled-only, with a warning, instead of by noise.
        trained = cfg.trains_sequences and (not deferred or phase_done.exists())
        began, parts = time.perf_counter(), {}
        record_policy(prepared, out / "best", trained, device, parts)
        took, seconds = time.perf_counter() - began, time.perf_counter() - start
        line = {"phase": "policy", "took": round(took, 1), "parts": parts}
        with open(out / "metrics.jsonl", "a", encoding="utf-8") as log:
            log.write(json.dumps(line | {"seconds": round(seconds, 1)}) + "\n")
    done = epoch + 1 if first_epoch < cfg.epochs else first_epoch  # none run: what was done
    return TrainResult(out, done, best, history, time.perf_counter() - start, stopped)
