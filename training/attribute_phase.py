"""The attribute phase: the readers of what a caption names and a picture shows
(`models.attributes`) are fitted on the finished checkpoint, from the training clips' metadata.

Nothing else of the model changes. The text reader learns from the training clips' visual and
audiovisual captions (each labelled with the attribute values of the sources its clip shows, and
its scene) read by the frozen tower token by token; the picture reader from the same clips'
pooled picture vectors, a reader of the direction from where each clip's foreground goes
(`models.drift`: numbers of its frames, which pictures drawn another way keep), and a reader of
the kind and the colour from its glyphs' outlines and pixels (`models.shape`, on frames decoded
again for them), and a reader of each sound's kind and size from how it sounds (`models.timbre`,
on waveforms decoded again for it). Then the
text reader keeps the training grammar's names of each kind and
tempo (`NAMED`) as the tower reads them in those captions, to read them by likeness as well
(`_names`), calibrated on captions whose name was swapped for another training name the kept
ones do not hold (`_calibrate`): a stand-in for a word no training caption used. So too the
names of a small and a large source, seen and heard (its pitch words, read in sound captions),
for the size a sentence searching sounds says is heard (`_fit_heard_size`). The readers
start from their initial weights on every run. A corpus without such metadata (a user's own
media) leaves them unfitted, and text searches go without them. Whether and how much a search
leans on them is measured on val afterwards (`training.search_policy.choose_text_attributes`).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
import torch.nn.functional as F

from models.attributes import ATTRIBUTES, AttributeReaders, columns, shown_labels
from models.drift import drift_features
from models.model import TrimodalModel
from models.shape import PART_FEATURES
from models.timbre import TimbreReader
from models.what_net import SIZES, class_of
from training.shapes import read_all
from training.synthav.captions import (
    ENGINE_SPEED,
    NOUNS,
    PITCH_WORDS,
    SIZE_WORDS,
    TEMPO_WORDS,
    Words,
)
from training.timbres import read_all as read_sounds
from training.timbres import sound_path

logger = logging.getLogger(__name__)

ATTRIBUTE_PHASE_DONE = "attribute_phase.json"
TEXT_EPOCHS = 10
TEXT_BATCH = 512
TEXT_LR = 1e-2
TEXT_DECAY = 1e-4  # × the squared weights, added to the loss
PICTURE_DECAY = 1e-3
PICTURE_ITERATIONS = 300
PICTURE_BATCH = 64
# The frozen tower reads each caption once (most of the phase's time: 12,000 captions took 88 s on
# two cores, 4,000 take ~30 s); a clip's captions of a kind say the same in other words.
CAPTIONS_PER_KIND = 1
# Each training name's token states are averaged over this many captions that use it; the
# likeness is calibrated on this many captions with a name swapped (~8 s of the tower on two cores).
NAME_CONTEXTS = 24
CALIBRATION_CAPTIONS = 1000
CALIBRATION_ITERATIONS = 100
# The kind from the glyphs' outlines (`_fit_shape`): fitted on this many single-source training
# clips (each decoded again at `models.shape.SHAPE_SIZE`: ~20 s on two cores), each measured as
# shown and once stretched by a factor drawn log-uniformly from this range.
SHAPE_CLIPS = 500
SHAPE_STRETCH = (0.7, 1 / 0.7)
# Each sound's kind and size from how it sounds (`_fit_timbre`): fitted on this many training
# clips that sound one source (each decoded again: its waveform, ~15 s on two cores with the
# measuring), each heard as it is and once heard otherwise (`training.timbres.heard_otherwise`).
TIMBRE_CLIPS = 600
TIMBRE_ITERATIONS = 500
# Where a caption's nouns stand (`_fit_nouns`): the detector is fitted on up to this many of the
# phase's captions (with the sound captions of up to `NOUN_SOUND_CAPTIONS` clips read for it:
# ~8 s of the tower on two cores), and calibrated on `NOUN_CALIBRATION` others, each read once
# with every noun swapped for an `extra` wording and once with its nouns left out (~8 s).
NOUN_CAPTIONS = 3000
NOUN_SOUND_CAPTIONS = 1000
NOUN_CALIBRATION = 500
# The kinds a sentence says are heard, from its sound words (`_fit_sound_words`): fitted on one
# sound caption of each of up to this many training clips (~6 s of the tower on two cores),
# as the text reader is fitted.
SOUND_WORD_CAPTIONS = 2000
# The size a sentence says is heard, read by likeness as well (`_fit_heard_size`): the training
# grammar's names of a small and a large source as seen (in visual and audiovisual captions) and
# as heard (its pitch words, in sound captions); calibrated on up to `CALIBRATION_CAPTIONS` sound
# captions with their pitch word swapped for one of the grammar's `extra` ones.
HEARD_SIZE_NAMES: tuple[dict[str, Words], dict[str, Words]] = (SIZE_WORDS, PITCH_WORDS)


def _merged(*tables: Mapping[Any, Words]) -> dict[str, Words]:
    """One attribute's wordings from several phrase tables, value by value."""
    out: dict[str, Words] = {}
    for table in tables:
        for value, words in table.items():
            had = out.get(str(value), Words((), ()))
            out[str(value)] = Words(
                tuple(dict.fromkeys(had.train + words.train)),
                (),
                tuple(dict.fromkeys(had.extra + words.extra)),
            )
    return out


# The attributes the text reader reads by likeness as well, and the training grammar's wordings
# of their values (its training names kept, its `extra` ones to calibrate on).
NAMED: dict[str, dict[str, Words]] = {
    "kind": _merged(NOUNS),
    "tempo": _merged(TEMPO_WORDS, ENGINE_SPEED),
}
# Each kind's `extra` wordings, a stand-in for a user's noun (`_fit_nouns`).
NOUNS_EXTRA: dict[str, tuple[str, ...]] = {str(kind): words.extra for kind, words in NOUNS.items()}
# A name's tokens that say nothing of its value ("at a slow pace": "slow", "pace").
FUNCTION_TOKENS = frozenset({"a", "an", "the", "at", "in", "on", "of", "to", "from", "by", "and"})


def _sentences(
    prepared: Any, rng: np.random.Generator
) -> tuple[list[str], list[np.ndarray], list[str], list[np.ndarray]]:
    """The labelled training clips' captions (`CAPTIONS_PER_KIND` of each kind, visual and
    audiovisual, drawn by `rng`) with their labels, and the clips with pictures with theirs."""
    captions: list[str] = []
    caption_labels: list[np.ndarray] = []
    clips: list[str] = []
    clip_labels: list[np.ndarray] = []
    cache = prepared.cache
    for item in prepared.train_items:
        labels = shown_labels(item.meta)
        if labels is None or item.id not in cache.row or len(cache.frames(item.id)) == 0:
            continue
        clips.append(item.id)
        clip_labels.append(labels)
        for kind in ("visual", "audiovisual"):
            found = list(item.captions.get(kind, ()))
            for r in rng.permutation(len(found))[:CAPTIONS_PER_KIND]:
                captions.append(found[int(r)])
                caption_labels.append(labels)
    return captions, caption_labels, clips, clip_labels


def attribute_phase(
    prepared: Any, seed: int, out: Path, device: torch.device, log: IO[str], start: float
) -> bool:
    """Fit the best checkpoint's attribute readers; the result, marked fitted, replaces `best/`
    (everything else in it bit-identical). False, and `best/` untouched, when its config has no
    readers or no training clip names its attributes."""
    model = TrimodalModel.load(out / "best", device, prepared.backbone, warn_untrained=False)
    readers = model.attributes
    if readers is None:
        return False
    # Fitted from their initial weights every time: on a checkpoint whose readers were fitted
    # before, the phase would go on from them (ten more epochs of the text reader, closer to the
    # training wordings: on val the agreement on what is heard reached R@1 0.048 instead of
    # 0.077 and was not adopted) and not give the trainer's readers.
    readers.load_state_dict(
        AttributeReaders(readers.text.in_features, readers.picture.in_features).state_dict()
    )
    captions, caption_labels, clips, clip_labels = _sentences(
        prepared, np.random.default_rng([seed, 4_000])
    )
    if not captions or not clips:
        log.write(json.dumps({"phase": "attributes", "skipped": "no clip names its attributes"}))
        log.write("\n")
        return False
    model.requires_grad_(False)
    gen = torch.Generator().manual_seed(seed)
    backbone = prepared.backbone
    # The frozen tower's token states, once (read in batches of like length: less padding),
    # kept per caption at unit length (the reader's input) in half precision.
    states_of = _unit_states(backbone, captions)
    labels_of = torch.as_tensor(np.stack(caption_labels))

    def text_batch(rows: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (*_padded(states_of, rows), labels_of[rows])

    text = readers.text
    text.requires_grad_(True)
    opt = torch.optim.Adam(text.parameters(), lr=TEXT_LR)
    for epoch in range(TEXT_EPOCHS):
        total = 0.0
        order = torch.randperm(len(captions), generator=gen).tolist()
        for s in range(0, len(order), TEXT_BATCH):
            states, mask, target = text_batch(order[s : s + TEXT_BATCH])
            logits = readers.text_logits(states.to(device), mask.to(device), words=False)
            loss = F.binary_cross_entropy_with_logits(logits, target.to(device))
            loss = loss + TEXT_DECAY * text.weight.pow(2).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(target)
        log.write(
            json.dumps(
                {
                    "phase": "attributes",
                    "part": "text",
                    "epoch": epoch,
                    "captions": len(captions),
                    "loss": total / len(captions),
                    "seconds": round(time.perf_counter() - start, 1),
                }
            )
            + "\n"
        )
        log.flush()
    text.requires_grad_(False)
    names = _names(backbone, captions, states_of)
    if names is not None:
        calibrated = _calibrate(
            readers,
            backbone,
            names,
            captions,
            labels_of,
            np.random.default_rng([seed, 4_001]),
        )
        log.write(
            json.dumps(
                {"phase": "attributes", "part": "words", "words": len(names[0])}
                | calibrated
                | {"seconds": round(time.perf_counter() - start, 1)}
            )
            + "\n"
        )
        nouns = _fit_nouns(
            readers, prepared, captions, states_of, np.random.default_rng([seed, 4_002]), device
        )
        _log_part(log, "nouns", nouns, start)
        sound_words = _fit_sound_words(
            readers, prepared, np.random.default_rng([seed, 4_004]), seed, device
        )
        _log_part(log, "sound words", sound_words, start)
        heard_size = _fit_heard_size(
            readers, prepared, captions, states_of, np.random.default_rng([seed, 4_005])
        )
        _log_part(log, "heard size", heard_size, start)
    # The picture reader on the pooled picture vectors, standardised by their own spread.
    pooled = []
    with torch.no_grad():
        for s in range(0, len(clips), PICTURE_BATCH):
            chunk = clips[s : s + PICTURE_BATCH]
            frames = [np.asarray(prepared.cache.frames(i)) for i in chunk]
            inputs = prepared.cache.pictures.inputs(model, frames, chunk)
            pooled.append(model.encode_pictures(inputs).pooled.float().cpu())
    vectors = torch.cat(pooled)
    readers.picture_mean.copy_(vectors.mean(0))
    readers.picture_scale.copy_(vectors.std(0).clamp(min=1e-6))
    x = ((vectors - readers.picture_mean.cpu()) / readers.picture_scale.cpu()).to(device)
    y = torch.as_tensor(np.stack(clip_labels)).to(device)
    picture = readers.picture
    _fit_linear(picture, x, y)
    with torch.no_grad():
        fitted = float(F.binary_cross_entropy_with_logits(picture(x), y))
    log.write(
        json.dumps(
            {
                "phase": "attributes",
                "part": "picture",
                "clips": len(clips),
                "loss": fitted,
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
        + "\n"
    )
    log.flush()
    drifted = _fit_drift(readers, prepared, clips, y[:, columns("direction")].cpu(), model)
    _log_part(log, "drift", drifted, start)
    _log_part(log, "shape", _fit_shape(readers, prepared, seed, device), start)
    _log_part(log, "timbre", _fit_timbre(readers.timbre, prepared, seed), start)
    readers.trained.fill_(1.0)
    model.save(out / "best")
    return True


def _log_part(log: IO[str], part: str, record: dict[str, Any], start: float) -> None:
    """One line of the phase's log: what fitting `part` gave, and the seconds since `start`."""
    line = {"phase": "attributes", "part": part} | record
    log.write(json.dumps(line | {"seconds": round(time.perf_counter() - start, 1)}) + "\n")
    log.flush()


def _fit_linear(
    layer: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    iterations: int = PICTURE_ITERATIONS,
) -> None:
    """Fit `layer`'s logits of (N, F) `x` to `y`: (N, C) multi-hot (binary cross-entropy: the
    picture's and the drift's readers) or (N,) classes (cross-entropy: the glyphs' and the
    timbre's readers), with `PICTURE_DECAY` × its squared weights, by L-BFGS."""
    loss_of = F.cross_entropy if y.ndim == 1 else F.binary_cross_entropy_with_logits
    layer.requires_grad_(True)
    weights = [p for n, p in layer.named_parameters() if n.endswith("weight")]
    lbfgs = torch.optim.LBFGS(
        layer.parameters(), max_iter=iterations, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        lbfgs.zero_grad(set_to_none=True)
        loss = loss_of(layer(x), y) + PICTURE_DECAY * sum(w.pow(2).sum() for w in weights)
        loss.backward()
        return loss

    lbfgs.step(closure)
    layer.requires_grad_(False)


def _fit_drift(
    readers: AttributeReaders,
    prepared: Any,
    clips: list[str],
    directions: torch.Tensor,
    model: TrimodalModel,
) -> dict[str, Any]:
    """Fit the reader of a picture's direction from where its foreground goes (`models.drift`)
    on the training `clips`' frames as the cache holds them, labelled with the (N, 3)
    `directions` they show; mark it fitted. Returns what the log records."""
    fps = model.cfg.visual.fps
    found = np.stack([drift_features(np.asarray(prepared.cache.frames(i)), fps) for i in clips])
    x = torch.from_numpy(found)
    mean, scale = x.mean(0), x.std(0).clamp(min=1e-6)
    device = readers.drift_mean.device
    readers.drift_mean.copy_(mean.to(device))
    readers.drift_scale.copy_(scale.to(device))
    x = ((x - mean) / scale).to(device)
    y = directions.float().to(device)
    drift = readers.drift
    _fit_linear(drift, x, y)
    readers.drift_fitted.fill_(1.0)
    with torch.no_grad():
        read = torch.sigmoid(drift(x)) > 0.5
    one = y.sum(dim=1) == 1
    return {
        "clips": len(clips),
        # the training clips whose every direction is read right, and of those showing one
        "exact": round(float((read == (y > 0.5)).all(dim=1).float().mean()), 4),
        "single_direction_read": round(
            float((drift(x)[one].argmax(dim=1) == y[one].argmax(dim=1)).float().mean()), 4
        )
        if bool(one.any())
        else None,
    }


def _fit_shape(
    readers: AttributeReaders, prepared: Any, seed: int, device: torch.device
) -> dict[str, Any]:
    """Fit the readers of a glyph's kind from its outline and of its colour from its pixels
    (`models.shape`) on up to `SHAPE_CLIPS` training clips that show one source (drawn by
    `seed`): each frame's largest part, labelled with the clip's kind and colour, measured as
    shown and as if shown stretched by a factor drawn from `SHAPE_STRETCH` (a file scaled to
    other proportions; on the re-encoded val split, whose recipes do that, single-source clips'
    kinds 0.93 → 1.00 in the probe); mark them fitted where any part was found. Returns what
    the log records."""
    rng = np.random.default_rng([seed, 4_002])
    chosen = []
    for item in prepared.train_items:
        shown = [s for s in item.meta.get("sources") or () if s.get("role") != "offscreen"]
        if item.video is None or len(shown) != 1 or not isinstance(shown[0], Mapping):
            continue
        kind, colour = str(shown[0].get("kind")), str(shown[0].get("colour"))
        if kind in ATTRIBUTES["kind"] and colour in ATTRIBUTES["colour"]:
            labels = (ATTRIBUTES["kind"].index(kind), ATTRIBUTES["colour"].index(colour))
            chosen.append((item, labels))
    order = rng.permutation(len(chosen))[:SHAPE_CLIPS]
    chosen = [chosen[int(k)] for k in order]
    stretches = [
        (1.0, float(np.exp(rng.uniform(*np.log(SHAPE_STRETCH))))) for _ in range(len(chosen))
    ]
    parts: list[np.ndarray] = []
    kinds: list[int] = []
    colours: list[int] = []
    failed = 0
    for (_item, (kind_label, colour_label)), found in zip(
        chosen,
        read_all([i.video for i, _ in chosen if i.video is not None], stretches),
        strict=True,
    ):
        if isinstance(found, str):
            failed += 1
            continue
        for rows in found:
            if not len(rows):
                continue
            first = np.r_[True, rows[1:, 0] != rows[:-1, 0]]  # each frame's largest part
            parts.append(rows[first, 1:])
            kinds.extend([kind_label] * int(first.sum()))
            colours.extend([colour_label] * int(first.sum()))
    if not parts:
        return {"clips": len(chosen), "failed": failed, "parts": 0}
    found_rows = torch.from_numpy(np.concatenate(parts))
    out: dict[str, Any] = {"clips": len(chosen), "failed": failed, "parts": len(kinds)}
    for name, columns_of, labels_of in (
        ("shape", slice(0, PART_FEATURES), kinds),
        ("tint", slice(PART_FEATURES, None), colours),
    ):
        x = found_rows[:, columns_of]
        mean, scale = x.mean(0), x.std(0).clamp(min=1e-6)
        getattr(readers, f"{name}_mean").copy_(mean.to(device))
        getattr(readers, f"{name}_scale").copy_(scale.to(device))
        x = ((x - mean) / scale).to(device)
        y = torch.as_tensor(labels_of).to(device)
        layer = getattr(readers, name)
        _fit_linear(layer, x, y)
        getattr(readers, f"{name}_fitted").fill_(1.0)
        with torch.no_grad():
            out[f"{name}_read"] = round(float((layer(x).argmax(dim=1) == y).float().mean()), 4)
    return out


def _fit_timbre(reader: TimbreReader, prepared: Any, seed: int) -> dict[str, Any]:
    """Fit the reader of each sound's kind and size from how it sounds (`models.timbre`) on up
    to `TIMBRE_CLIPS` training clips whose sound holds one source (a misaligned clip's is its
    donor's, as its metadata says; drawn by `seed`): each run of each clip labelled with the
    source's kind × size, measured as heard and once heard otherwise (another speed, room and
    microphone: on the `--variety` val split, whose sounds are synthesised other ways, a linear
    reader's single-source kinds 0.84 → 0.87 in the probe); its weights start from `seed`. Mark
    it fitted where any run was found; a clip whose sound does not decode is logged with its
    reason and left out. Returns what the log records."""
    rng = np.random.default_rng([seed, 4_003])
    chosen: list[tuple[Path, int]] = []
    for item in prepared.train_items:
        heard: list[Any] = list((item.meta.get("audio") or {}).get("sources") or ())
        path = sound_path(item)
        if path is None or len(heard) != 1 or not isinstance(heard[0], Mapping):
            continue
        label = class_of(str(heard[0].get("kind")), str(heard[0].get("size")))
        if label is not None:
            chosen.append((path, label))
    order = rng.permutation(len(chosen))[:TIMBRE_CLIPS]
    chosen = [chosen[int(k)] for k in order]
    seeds = rng.integers(0, 2**31, len(chosen)).tolist()
    rows: list[np.ndarray] = []
    labels: list[int] = []
    failed = 0
    for (path, label), found in zip(
        chosen, read_sounds([p for p, _ in chosen], [(s,) for s in seeds]), strict=True
    ):
        if isinstance(found, str):
            logger.warning("sounds of %s not measured: %s", path, found)
            failed += 1
            continue
        for runs in found:
            rows.append(runs[:, 2:])
            labels.extend([label] * len(runs))
    out: dict[str, Any] = {"clips": len(chosen), "failed": failed, "runs": len(labels)}
    if not labels:
        return out
    x = torch.from_numpy(np.concatenate(rows))
    mean, scale = x.mean(0), x.std(0).clamp(min=1e-6)
    device = reader.mean.device
    reader.mean.copy_(mean.to(device))
    reader.scale.copy_(scale.to(device))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in reader.net:
            if isinstance(layer, torch.nn.Linear):
                bound = 1.0 / layer.in_features**0.5
                drawn = torch.rand(layer.weight.shape, generator=gen) * 2 - 1
                layer.weight.copy_(drawn * bound)
                layer.bias.zero_()
    x = ((x - mean) / scale).to(device)
    y = torch.as_tensor(labels).to(device)
    _fit_linear(reader.net, x, y, TIMBRE_ITERATIONS)
    reader.fitted.fill_(1.0)
    with torch.no_grad():
        read = reader.net(x).argmax(dim=1)
    out["read"] = round(float((read == y).float().mean()), 4)
    out["kind_read"] = round(float((read // len(SIZES) == y // len(SIZES)).float().mean()), 4)
    return out


def _fit_sound_words(
    readers: AttributeReaders,
    prepared: Any,
    rng: np.random.Generator,
    seed: int,
    device: torch.device,
) -> dict[str, Any]:
    """Fit the reader of the kinds a sentence says are heard from its sound words
    (`AttributeReaders.sound`) on one sound caption (drawn by `rng`) of each of up to
    `SOUND_WORD_CAPTIONS` training clips whose sound's sources the metadata names (a misaligned
    clip's, its donor's), labelled with every kind heard, as the text reader is fitted (its
    strongest token's logit, from zero weights, `TEXT_EPOCHS` of Adam; `seed` orders the
    batches). The text reader learned visual and audiovisual captions, so a sound caption whose
    nouns are not found was read by a reader that never saw one; the policy reads these kinds
    there only where val measures a clear gain (on the s64 checkpoint it did not: val +0.007 R@1
    within the noise, the test pools −0.01 R@10; docs/quality-log.md "The kinds a sound
    caption's sound words name"). Mark it fitted where any caption was read. Returns what the
    log records."""
    captions: list[str] = []
    labels: list[np.ndarray] = []
    for item in prepared.train_items:
        if len(captions) == SOUND_WORD_CAPTIONS:
            break
        if (heard := _heard_label(item, "kind")) is None:
            continue
        found, label = heard
        captions.append(found[int(rng.integers(len(found)))])
        labels.append(label)
    if not captions:
        return {"captions": 0}
    states_of = _unit_states(prepared.backbone, captions)
    target = torch.as_tensor(np.stack(labels))
    layer = readers.sound
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.zero_()
    layer.requires_grad_(True)
    opt = torch.optim.Adam(layer.parameters(), lr=TEXT_LR)
    gen = torch.Generator().manual_seed(seed)

    def logits_of(rows: list[int]) -> torch.Tensor:
        states, mask = _padded(states_of, rows)
        per_token = layer(states.to(device))
        return per_token.masked_fill(~mask.to(device)[..., None], -torch.inf).amax(dim=1)

    total = 0.0
    for _ in range(TEXT_EPOCHS):
        total = 0.0
        order = torch.randperm(len(captions), generator=gen).tolist()
        for s in range(0, len(order), TEXT_BATCH):
            rows = order[s : s + TEXT_BATCH]
            loss = F.binary_cross_entropy_with_logits(logits_of(rows), target[rows].to(device))
            loss = loss + TEXT_DECAY * layer.weight.pow(2).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(rows)
    layer.requires_grad_(False)
    readers.sound_fitted.fill_(1.0)
    with torch.no_grad():
        read = torch.cat(
            [
                logits_of(list(range(s, min(s + TEXT_BATCH, len(captions))))).cpu()
                for s in range(0, len(captions), TEXT_BATCH)
            ]
        )
    one = target.sum(dim=1) == 1
    right = read[one].argmax(dim=1) == target[one].argmax(dim=1)
    return {
        "captions": len(captions),
        "loss": round(total / len(captions), 4),
        "one_kind_read": round(float(right.float().mean()), 4) if bool(one.any()) else None,
    }


def _fit_heard_size(
    readers: AttributeReaders,
    prepared: Any,
    captions: list[str],
    states_of: list[torch.Tensor],
    rng: np.random.Generator,
) -> dict[str, Any]:
    """Keep in `readers` the names of a small and a large source (`HEARD_SIZE_NAMES`: their
    training wordings' token states, averaged over up to `NAME_CONTEXTS` captions each: the
    seen ones' in `captions`, the phase's visual and audiovisual captions with their states
    `states_of`; the heard ones' in the training clips' sound captions) with the (scale,
    offset) that make a sentence's likeness to them the logits of the sizes its sound holds:
    fitted on one sound caption of each training clip (drawn by `rng`) whose pitch word was
    swapped for one of the grammar's `extra` ones, as the kind's and the tempo's likeness is
    calibrated (`AttributeReaders.set_pitch_words`). The text reader learned captions that
    say the size and never the pitch: it read the training pitch words of a large sound as
    small ("deep" right in 0.03 of training sound captions, "low" in none), and the grammar's
    unseen ones by chance of a word's letters (`extra` and val's eight, per word: 0.59); read
    as heard, 0.995 and 0.85 (docs/quality-log.md "The size a sound sentence says"). Returns
    what the log records."""
    sizes = ATTRIBUTES["size"]
    sounds: list[str] = []  # every training sound caption of a clip whose sizes are named
    chosen: list[str] = []  # one of each such clip's, for the calibration
    heard: list[np.ndarray] = []
    for item in prepared.train_items:
        if (held := _heard_label(item, "size")) is None:
            continue
        said, label = held
        sounds.extend(said)
        chosen.append(said[int(rng.integers(len(said)))])
        heard.append(label)
    seen_names, heard_names = HEARD_SIZE_NAMES
    vectors: list[torch.Tensor] = []
    kept: list[int] = []

    def keep(found: list[torch.Tensor], value: str) -> None:
        vectors.extend(found)
        kept.extend([columns("size")[sizes.index(value)]] * len(found))

    for value in sizes:
        for name in seen_names[value].train:
            keep(_name_states(prepared.backbone, _word(name), captions, states_of), value)
    for value in sizes:
        for name in heard_names[value].train:
            pattern = _word(name)
            using = [c for c in sounds if pattern.search(c)][:NAME_CONTEXTS]
            if using:
                found = _name_states(
                    prepared.backbone, pattern, using, _unit_states(prepared.backbone, using)
                )
                keep(found, value)
    if set(kept) != set(columns("size")):
        return {"names": len(kept), "skipped": "both sizes are not named"}
    swapped, rows = _swapped(chosen, heard_names, rng)
    if not swapped:
        return {"names": len(kept), "skipped": "no sound caption says a pitch"}
    readers.set_pitch_words(torch.stack(vectors), torch.tensor(kept), 1.0, 0.0)
    device = readers.pitch_words.device
    liked = []
    with torch.no_grad():
        for s in range(0, len(swapped), TEXT_BATCH):
            states, mask = prepared.backbone.states(swapped[s : s + TEXT_BATCH])
            liked.append(readers.size_likeness(states.to(device), mask.to(device)).float().cpu())
    x = torch.cat(liked)
    y = torch.as_tensor(np.stack([heard[r] for r in rows]))
    scale, offset = _scale_offset(x, y)
    readers.set_pitch_words(torch.stack(vectors), torch.tensor(kept), scale, offset)
    one = y.sum(dim=1) == 1
    right = x[one].argmax(dim=1) == y[one].argmax(dim=1)
    return {
        "names": len(kept),
        "calibration": len(swapped),
        "scale": round(scale, 4),
        "offset": round(offset, 4),
        "named": round(float(right.float().mean()), 4) if bool(one.any()) else None,
    }


def _heard_label(item: Any, attribute: str) -> tuple[list[str], np.ndarray] | None:
    """A clip's sound captions and the (V,) multi-hot of the values of `attribute` its sound's
    sources hold (the metadata's `audio.sources`: a misaligned clip's are its donor's); None
    where it has no sound caption or its metadata names none, or a value outside
    `ATTRIBUTES`."""
    values = ATTRIBUTES[attribute]
    sources = list((item.meta.get("audio") or {}).get("sources") or ())
    found = list(item.captions.get("audio", ()))
    if not sources or not found:
        return None
    if not all(isinstance(h, Mapping) and h.get(attribute) in values for h in sources):
        return None
    label = np.zeros(len(values), np.float32)
    for h in sources:
        label[values.index(str(h.get(attribute)))] = 1.0
    return found, label


def _word(name: str) -> re.Pattern[str]:
    """A name as a whole word, not a part of a hyphenated one ("high" is not in
    "high-pitched")."""
    return re.compile(rf"(?<![-\w]){re.escape(name)}(?![-\w])")


def _names(
    backbone: Any, captions: list[str], states_of: list[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The training names of the values of each attribute in `NAMED` (the grammar's training
    wordings only), each of their tokens' unit-length states (but `FUNCTION_TOKENS`) averaged over
    up to `NAME_CONTEXTS` of the training `captions` that use the name (`states_of`: each
    caption's real tokens' states): (P, H) and the (P,) columns of their values; None where no
    caption uses one."""
    vectors: list[torch.Tensor] = []
    kept: list[int] = []
    for attribute, table in NAMED.items():
        values = ATTRIBUTES[attribute]
        for value, wordings in table.items():
            if value not in values:
                continue
            column = columns(attribute)[values.index(value)]
            for name in wordings.train:
                pattern = re.compile(rf"\b{re.escape(name)}\b")
                found = _name_states(backbone, pattern, captions, states_of)
                vectors.extend(found)
                kept.extend([column] * len(found))
    if not vectors:
        return None
    return torch.stack(vectors), torch.tensor(kept, dtype=torch.long)


def _name_states(
    backbone: Any, pattern: re.Pattern[str], captions: list[str], states_of: list[torch.Tensor]
) -> list[torch.Tensor]:
    """A name's tokens' unit-length states (but `FUNCTION_TOKENS` and punctuation: the hyphen
    of "high-pitched" is in "bass-heavy" too), each averaged over up to
    `NAME_CONTEXTS` of `captions` where `pattern` finds it (`states_of`: each caption's real
    tokens' states), one per position in the name; none where no caption uses it."""
    by_position: dict[int, list[torch.Tensor]] = defaultdict(list)
    used = 0
    for caption, states in zip(captions, states_of, strict=True):
        found = pattern.search(caption)
        if found is None:
            continue
        encoded = backbone.tokenizer(caption, return_offsets_mapping=True)
        tokens = backbone.tokenizer.convert_ids_to_tokens(encoded["input_ids"])
        inside = [
            t
            for t, (a, b) in enumerate(encoded["offset_mapping"])
            if b > a
            and a >= found.start()
            and b <= found.end()
            and t < len(states)
            and tokens[t] not in FUNCTION_TOKENS
            and any(ch.isalnum() for ch in tokens[t])  # a hyphen names nothing
        ]
        for position, t in enumerate(inside):
            by_position[position].append(states[t].float())
        used += 1
        if used == NAME_CONTEXTS:
            break
    return [F.normalize(torch.stack(s).mean(0), dim=-1) for s in by_position.values()]


def _swapped(
    captions: list[str], table: dict[str, Words], rng: np.random.Generator
) -> tuple[list[str], list[int]]:
    """Up to `CALIBRATION_CAPTIONS` of `captions` with their first name of one of `table`'s
    values (its longest training wording found) swapped for one of the value's `extra`
    wordings, and the rows they came from."""
    swapped: list[str] = []
    rows: list[int] = []
    for r in rng.permutation(len(captions)).tolist():
        caption = captions[r]
        for wordings in table.values():
            if not wordings.extra:
                continue
            found = None
            for name in sorted(wordings.train, key=len, reverse=True):
                found = re.search(rf"\b{re.escape(name)}\b", caption)
                if found is not None:
                    break
            if found is not None:
                other = str(rng.choice(wordings.extra))
                swapped.append(caption[: found.start()] + other + caption[found.end() :])
                rows.append(r)
                break
        if len(swapped) == CALIBRATION_CAPTIONS:
            break
    return swapped, rows


def _calibrate(
    readers: AttributeReaders,
    backbone: Any,
    names: tuple[torch.Tensor, torch.Tensor],
    captions: list[str],
    labels: torch.Tensor,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """Keep `names` in `readers` with, per attribute they name, the scale and offset that make
    its likeness a logit: fitted on training captions whose name of its value was swapped for
    one of the grammar's other training wordings (`Words.extra`, which `names` was not made
    from; `_swapped`): some share a word with a kept name ("toy ball"), others share none
    ("sparrow", "generator", "every so often"), so the likeness is calibrated on names it did
    not keep, as a user's would be. Returns what the log records."""
    vectors, kept = names
    named = {name for name in NAMED if set(columns(name)) & set(kept.tolist())}
    readers.set_words(vectors, kept, {name: (1.0, 0.0) for name in named})
    device = readers.words.device
    calibration: dict[str, tuple[float, float]] = {}
    record: dict[str, Any] = {}
    for name in sorted(named, key=list(ATTRIBUTES).index):
        swapped, rows = _swapped(captions, NAMED[name], rng)
        if not swapped:
            calibration[name] = (1.0, 0.0)
            continue
        liked = []
        with torch.no_grad():
            for s in range(0, len(swapped), TEXT_BATCH):
                states, mask = backbone.states(swapped[s : s + TEXT_BATCH])
                found = readers.likeness(states.to(device), mask.to(device))
                liked.append(found[:, columns(name)].float().cpu())
        x = torch.cat(liked)
        y = labels[rows][:, columns(name)].float()
        calibration[name] = _scale_offset(x, y)
        record[name] = {
            "calibration": len(swapped),
            "scale": round(calibration[name][0], 4),
            "offset": round(calibration[name][1], 4),
            "named": round(float(y[torch.arange(len(y)), x.argmax(dim=1)].mean()), 4),
        }
    readers.set_words(vectors, kept, calibration)
    return record


def _scale_offset(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """The (scale, offset) that make (N, K) likeness `x` the logits of (N, K) multi-hot `y`
    (binary cross-entropy, L-BFGS from (1, 0))."""
    scale = torch.tensor(1.0, requires_grad=True)
    offset = torch.tensor(0.0, requires_grad=True)
    lbfgs = torch.optim.LBFGS(
        [scale, offset], max_iter=CALIBRATION_ITERATIONS, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        lbfgs.zero_grad(set_to_none=True)
        loss = F.binary_cross_entropy_with_logits(scale * x + offset, y)
        loss.backward()
        return loss

    lbfgs.step(closure)
    return float(scale.detach()), float(offset.detach())


def _noun_pattern() -> tuple[re.Pattern[str], dict[str, str]]:
    """A pattern of every training wording of a source's noun (`NOUNS`, the longest first) and
    each one's kind."""
    kind_of = {name: str(kind) for kind, words in NOUNS.items() for name in words.train}
    names = sorted(kind_of, key=len, reverse=True)
    return re.compile(r"\b(" + "|".join(re.escape(n) for n in names) + r")\b"), kind_of


def _noun_tokens(tokenizer: Any, caption: str, pattern: re.Pattern[str], tokens: int) -> np.ndarray:
    """(tokens,) float32: 1 for each of the caption's first `tokens` tokens that lies inside a
    match of `pattern` (a training noun), 0 for the rest (the special tokens among them)."""
    spans = [(m.start(), m.end()) for m in pattern.finditer(caption)]
    offsets = tokenizer(caption, return_offsets_mapping=True)["offset_mapping"][:tokens]
    out = np.zeros(tokens, np.float32)
    for t, (a, b) in enumerate(offsets):
        out[t] = float(b > a and any(a >= x and b <= y for x, y in spans))
    return out


def _cut(scores: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """The threshold on `scores` that says `truth` (bool) best (at or above it: True), the
    middle one of those that do equally well, and its share right. −∞ scores count as below
    every finite one."""
    scores = np.asarray(scores, np.float64)
    finite = scores[np.isfinite(scores)]
    floor = (finite.min() if len(finite) else 0.0) - 1.0
    scores = np.where(np.isfinite(scores), scores, floor)
    order = np.argsort(scores, kind="stable")
    ranked, said = scores[order], np.asarray(truth, bool)[order]
    # a cut before position i says True for ranked[i:]
    negatives_before = np.concatenate([[0], np.cumsum(~said)])
    positives_from = said.sum() - np.concatenate([[0], np.cumsum(said)])
    right = (negatives_before + positives_from) / max(len(said), 1)
    edges = np.concatenate([[ranked[0] - 1.0], (ranked[:-1] + ranked[1:]) / 2, [ranked[-1] + 1.0]])
    best = np.flatnonzero(right == right.max())
    return float(np.median(edges[best])), float(right.max())


def _fit_nouns(
    readers: AttributeReaders,
    prepared: Any,
    captions: list[str],
    states_of: list[torch.Tensor],
    rng: np.random.Generator,
    device: torch.device,
) -> dict[str, Any]:
    """Fit where a caption's nouns stand and what `AttributeReaders.noun_kinds` needs to read
    the kinds at them (docs/quality-log.md "The kinds read at a caption's nouns"). The detector
    (`readers.noun`) is a linear map of unit token states fitted by L-BFGS on the phase's
    captions and some training sound captions, each token labelled by whether a training noun
    (`NOUNS`) stands there. Then, on held-out captions naming at least one: the logit a second
    noun must reach (the one that counts them best with every noun swapped for an `extra`
    wording, a stand-in for a user's word: a caption's count is how many it named) and the
    least its lead over the first's may be (`noun_lead`, calibrated the same way), the logit a
    first one must reach (the one that tells those swapped captions from the same ones with
    their nouns left out), and the temperature of the kinds' softmax (the swapped one-noun
    captions' kinds, by likelihood). Needs the readers' names (`_calibrate`). Returns what the
    log records."""
    backbone = prepared.backbone
    tokenizer = backbone.tokenizer
    pattern, kind_of = _noun_pattern()
    sounds: list[str] = []
    for r in rng.permutation(len(prepared.train_items)).tolist():
        said = list(prepared.train_items[r].captions.get("audio", ()))
        if said:
            sounds.append(said[int(rng.integers(len(said)))])
        if len(sounds) == NOUN_SOUND_CAPTIONS:
            break
    sound_states = _unit_states(backbone, sounds)
    pool = [
        (caption, states)
        for caption, states in zip(captions + sounds, states_of + sound_states, strict=True)
        if pattern.search(caption) is not None
    ]
    if len(pool) < 2:
        return {"skipped": "no caption names a training noun"}
    order = rng.permutation(len(pool)).tolist()
    held = [pool[r][0] for r in order[: min(NOUN_CALIBRATION, len(pool) // 2)]]
    fit = [pool[r] for r in order[len(held) :][:NOUN_CAPTIONS]]
    x = torch.cat([states.float() for _, states in fit])
    y = torch.from_numpy(
        np.concatenate([_noun_tokens(tokenizer, c, pattern, len(st)) for c, st in fit])
    )
    _fit_linear(readers.noun, x.to(device), y[:, None].to(device))
    # the held-out captions with every noun swapped for another wording of its kind, and left out
    swapped, left_out, count, kind = [], [], [], []
    for caption in held:
        matches = list(pattern.finditer(caption))
        swapped.append(pattern.sub(lambda m: _another(m.group(0), kind_of, rng), caption))
        left_out.append(" ".join(pattern.sub(" ", caption).split()))
        count.append(len(matches))
        kinds = {kind_of[m.group(0)] for m in matches}
        kind.append(ATTRIBUTES["kind"].index(kinds.pop()) if len(matches) == 1 else -1)
    swap, leave = _noun_parts(readers, backbone, swapped), _noun_parts(readers, backbone, left_out)
    found, found_right = _cut(
        np.concatenate([swap.first_logit, leave.first_logit]),
        np.concatenate([np.ones(len(held), bool), np.zeros(len(held), bool)]),
    )
    second, count_right = _cut(swap.second_logit, np.asarray(count) >= 2)
    # the other rule for the count: the second's logit less the first's (−∞ where none stands
    # far enough), which an unfamiliar word lowers less than either (the policy chooses the rule)
    lead, lead_right = _cut(swap.second_logit - swap.first_logit, np.asarray(count) >= 2)
    single = np.flatnonzero(np.asarray(kind) >= 0)
    liked = torch.from_numpy(swap.first_liked[single])
    truth = torch.as_tensor(np.asarray(kind)[single], dtype=torch.long)
    temperature = _fit_temperature(liked, truth)
    readers.set_nouns(found, second, temperature, lead)
    return {
        "captions": len(fit),
        "sound_captions": len(sounds),
        "tokens": len(y),
        "noun_tokens": int(y.sum()),
        "calibration": len(held),
        "found": round(found, 4),
        "found_right": round(found_right, 4),
        "second": round(second, 4),
        "count_right": round(count_right, 4),
        "lead": round(lead, 4),
        "lead_right": round(lead_right, 4),
        "temperature": round(temperature, 5),
        "named": round(float((liked.argmax(dim=1) == truth).float().mean()), 4)
        if len(single)
        else None,
    }


def _another(name: str, kind_of: Mapping[str, str], rng: np.random.Generator) -> str:
    """One of the `extra` wordings of the kind training noun `name` names."""
    return str(rng.choice(NOUNS_EXTRA[kind_of[name]]))


def _unit_states(backbone: Any, captions: list[str]) -> list[torch.Tensor]:
    """Each caption's real tokens' unit-length states (half precision, on the CPU), read by the
    frozen tower in batches of like length."""
    out: list[torch.Tensor] = [torch.zeros(0)] * len(captions)
    by_length = sorted(range(len(captions)), key=lambda r: len(captions[r]))
    with torch.no_grad():
        for s in range(0, len(by_length), TEXT_BATCH):
            rows = by_length[s : s + TEXT_BATCH]
            states, mask = backbone.states([captions[r] for r in rows])
            states = F.normalize(states.float(), dim=-1).half().cpu()
            for j, r in enumerate(rows):
                out[r] = states[j][mask[j].cpu()]
    return out


def _padded(states_of: list[torch.Tensor], rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The `rows` of `_unit_states` as one (B, L, H) float batch, zeros after each caption's
    tokens, and its (B, L) mask of real tokens."""
    longest = max(len(states_of[r]) for r in rows)
    states = torch.zeros(len(rows), longest, states_of[rows[0]].shape[-1])
    mask = torch.zeros(len(rows), longest, dtype=torch.bool)
    for j, r in enumerate(rows):
        states[j, : len(states_of[r])] = states_of[r].float()
        mask[j, : len(states_of[r])] = True
    return states, mask


class _Nouns:
    """`AttributeReaders.noun_reading` of some captions, as arrays."""

    def __init__(self, parts: list[Any]) -> None:
        self.first_logit = np.concatenate([p.first_logit.float().cpu().numpy() for p in parts])
        self.second_logit = np.concatenate([p.second_logit.float().cpu().numpy() for p in parts])
        self.first_liked = np.concatenate([p.first_liked.float().cpu().numpy() for p in parts])


def _noun_parts(readers: AttributeReaders, backbone: Any, captions: list[str]) -> _Nouns:
    """What the readers' nouns' detector reads of `captions` (`noun_reading`)."""
    parts = []
    device = readers.words.device
    with torch.no_grad():
        for s in range(0, len(captions), TEXT_BATCH):
            states, mask = backbone.states(captions[s : s + TEXT_BATCH])
            parts.append(readers.noun_reading(states.to(device), mask.to(device)))
    return _Nouns(parts)


def _fit_temperature(liked: torch.Tensor, truth: torch.Tensor) -> float:
    """The temperature of a softmax of (N, K) likeness that names the (N,) classes `truth` most
    likely (1 where there is nothing to fit on)."""
    if not len(truth):
        return 1.0
    log_t = torch.tensor(-3.0, requires_grad=True)
    lbfgs = torch.optim.LBFGS(
        [log_t], max_iter=CALIBRATION_ITERATIONS, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        lbfgs.zero_grad(set_to_none=True)
        loss = F.cross_entropy(liked / log_t.exp(), truth)
        loss.backward()
        return loss

    lbfgs.step(closure)
    return float(log_t.detach().clamp(-9.0, 3.0).exp())
