"""The what networks: they learn from SynthAV metadata to name the sources a picture shows and a
sound sounds, kind and size, and a checkpoint without them (or untrained) names nothing."""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from models.config import preset
from models.model import TrimodalModel
from models.what_net import CLASSES, agreement, class_of
from training.what_phase import (
    WHAT_PHASE_DONE,
    vary_pictures,
    vary_sounds,
    what_labels,
    what_phase,
)

FPS, SR, SIZE = 12.0, 16_000, 32
# two kinds at two sizes: a drum is a filled square that booms low, a bell a hollow one that
# rings high; a small one is smaller and higher
KINDS = ("drum", "bell")
TONE_HZ = {("drum", "large"): 220.0, ("drum", "small"): 440.0}
TONE_HZ |= {("bell", "large"): 1760.0, ("bell", "small"): 3520.0}


def clip(kind: str, size: str, seed: int, seconds: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Frames of a square (filled: drum, hollow: bell) drifting over a grey background, and a
    sound of its tone struck at random times over a little noise."""
    rng = np.random.default_rng(seed)
    t = round(seconds * FPS)
    side = 6 if size == "small" else 14
    frames = np.full((t, SIZE, SIZE, 3), int(rng.integers(30, 120)), np.uint8)
    x, y = int(rng.integers(0, SIZE - side)), int(rng.integers(0, SIZE - side))
    for k in range(t):
        at = (x + k) % (SIZE - side)
        frames[k, y : y + side, at : at + side] = 230
        if kind == "bell":
            frames[k, y + 2 : y + side - 2, at + 2 : at + side - 2] = frames[k, 0, 0]
    n = round(seconds * SR)
    wave = rng.normal(0, 0.01, n).astype(np.float32)
    time = np.arange(2400) / SR
    strike = 0.5 * np.sin(2 * np.pi * TONE_HZ[kind, size] * time) * np.exp(-time * 30)
    for start in rng.integers(0, n - len(time), 4):
        wave[start : start + len(time)] += strike.astype(np.float32)
    return frames, wave


def meta(kind: str, size: str, offscreen: str | None = None) -> dict:
    sources = [{"kind": kind, "size": size, "role": "main"}]
    heard = [{"kind": kind, "size": size}]
    if offscreen is not None:
        sources.append({"kind": offscreen, "size": "small", "role": "offscreen"})
        heard.append({"kind": offscreen, "size": "small"})
    return {"generator": "synthav", "sources": sources, "audio": {"sources": heard}}


@dataclass
class Item:
    id: str
    meta: dict


class Cache:
    """What `what_phase` reads of a feature cache."""

    def __init__(self, clips: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        self.clips = clips
        self.row = {i: k for k, i in enumerate(clips)}

    def frames(self, i: str) -> np.ndarray:
        return self.clips[i][0]

    def audio(self, i: str) -> np.ndarray:
        return self.clips[i][1]


@dataclass
class Prepared:
    train_items: list[Item]
    cache: Cache
    backbone: None = None


def kinds_and_sizes(n: int, seed: int) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    return [(KINDS[rng.integers(2)], ("small", "large")[rng.integers(2)]) for _ in range(n)]


def test_labels_are_what_a_clip_shows_and_what_it_sounds():
    seen, heard = what_labels(meta("drum", "large", offscreen="bird"))  # type: ignore[misc]
    assert seen.nonzero()[0].tolist() == [class_of("drum", "large")]
    assert sorted(heard.nonzero()[0].tolist()) == sorted(
        [class_of("drum", "large"), class_of("bird", "small")]
    )
    # a silent glyph is seen, not heard; a misaligned clip's track is its donor's
    silent = {
        "sources": [{"kind": "bell", "size": "small", "role": "silent"}],
        "audio": {"sources": [{"kind": "siren", "size": "large"}]},
    }
    seen, heard = what_labels(silent)  # type: ignore[misc]
    assert seen.nonzero()[0].tolist() == [class_of("bell", "small")]
    assert heard.nonzero()[0].tolist() == [class_of("siren", "large")]
    assert what_labels({}) is None  # a user's clip: no metadata
    assert (
        what_labels({"sources": [{"kind": "dog", "size": "small"}], "audio": {"sources": []}})
        is None
    )
    assert class_of("bell", "huge") is None and len(CLASSES) == 14


def test_agreement_counts_the_classes_both_say_alike():
    a = np.zeros((1, len(CLASSES)), np.float32)
    a[0, 3] = 1.0
    b = np.stack([a[0], 1.0 - a[0], np.full(len(CLASSES), np.nan, np.float32)])
    found = agreement(a, b)
    assert found.shape == (1, 3)
    assert found[0, 0] == pytest.approx(1.0)  # the same list
    assert found[0, 1] == pytest.approx(0.0)  # every class said otherwise
    assert found[0, 2] == 0.0  # an item without the stream agrees with nothing
    with pytest.raises(ValueError, match="expected"):
        agreement(a[:, :5], b)


def test_a_model_without_trained_networks_names_nothing(tmp_path: Path):
    frames, wave = clip("drum", "small", 0)
    plain = TrimodalModel(preset("tiny"))
    assert plain.what_nets is None and plain.picture_what([frames]) is None
    untrained = TrimodalModel(replace(preset("tiny"), what_nets=True))
    assert not untrained.knows_what() and untrained.sound_what([wave]) is None
    # the networks are made on a fork of the random state: the encoders start alike either way
    torch.manual_seed(0)
    a = TrimodalModel(preset("tiny"))
    torch.manual_seed(0)
    b = TrimodalModel(replace(preset("tiny"), what_nets=True))
    for name, p in a.state_dict().items():
        assert torch.equal(p, b.state_dict()[name]), name


def test_the_phase_teaches_both_networks_kind_and_size(tmp_path: Path):
    labels = kinds_and_sizes(160, 1)
    clips = {f"c{k}": clip(kind, size, 100 + k) for k, (kind, size) in enumerate(labels)}
    items = [Item(f"c{k}", meta(*ks)) for k, ks in enumerate(labels)]
    items.append(Item("user", {}))  # no metadata: left out
    clips["user"] = clip("drum", "small", 99)
    out = tmp_path / "run"
    torch.manual_seed(0)
    model = TrimodalModel(replace(preset("tiny"), what_nets=True))
    model.save(out / "best")
    before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("what")}
    log = io.StringIO()
    assert what_phase(Prepared(items, Cache(clips)), 20, 0, out, torch.device("cpu"), log, 0.0)
    trained = TrimodalModel.load(out / "best")
    assert trained.knows_what()
    # nothing else of the checkpoint moved
    for name, value in before.items():
        if not name.startswith("encoders.text.backbone"):
            assert torch.equal(trained.state_dict()[name], value), name
    # clips it never saw: both networks name their kind and size
    fresh = kinds_and_sizes(16, 2)
    shown = [clip(kind, size, 500 + k) for k, (kind, size) in enumerate(fresh)]
    want = np.stack([what_labels(meta(*ks))[0] for ks in fresh])  # type: ignore[index]
    pictures = trained.picture_what([f for f, _ in shown])
    sounds = trained.sound_what([w * 0.05 for _, w in shown])  # quieter than any training clip
    assert pictures is not None and sounds is not None
    assert ((pictures > 0.5) == want).all(1).mean() >= 0.9
    assert ((sounds > 0.5) == want).all(1).mean() >= 0.9
    # and a piece's sound agrees with its own picture more than with the others'
    agree = agreement(sounds, pictures).numpy()
    assert (agree.argmax(1) == np.arange(len(fresh))).mean() >= 0.25  # 4 classes: ties broken
    assert np.diag(agree).mean() > agree.mean() + 0.05
    assert '"phase": "what"' in log.getvalue()


def test_the_phase_leaves_a_checkpoint_without_networks_or_labels_untouched(tmp_path: Path):
    out = tmp_path / "run"
    TrimodalModel(preset("tiny")).save(out / "best")
    clips = {"c0": clip("drum", "small", 0)}
    items = [Item("c0", meta("drum", "small"))]
    log = io.StringIO()
    assert not what_phase(Prepared(items, Cache(clips)), 2, 0, out, torch.device("cpu"), log, 0.0)
    TrimodalModel(replace(preset("tiny"), what_nets=True)).save(out / "best")
    unlabelled = [Item("c0", {})]
    assert not what_phase(
        Prepared(unlabelled, Cache(clips)), 2, 0, out, torch.device("cpu"), log, 0.0
    )
    assert "no clip names its sources" in log.getvalue()
    assert not TrimodalModel.load(out / "best").knows_what()
    assert WHAT_PHASE_DONE == "what_phase.json"


def test_lent_clips_teach_the_networks_what_the_training_clips_never_show(tmp_path: Path):
    """`extra` (`--what-data`): the (cache, items) of other clips join every epoch. Training
    clips that are all drums and lent clips that are all bells: with the lent clips both
    networks name a bell they never saw, without them they name no bell at all."""
    own = [("drum", ("small", "large")[k % 2]) for k in range(64)]
    lent = [("bell", ("small", "large")[k % 2]) for k in range(64)]
    own_clips = {f"o{k}": clip(*ks, 100 + k) for k, ks in enumerate(own)}
    lent_clips = {f"l{k}": clip(*ks, 300 + k) for k, ks in enumerate(lent)}
    own_items = [Item(f"o{k}", meta(*ks)) for k, ks in enumerate(own)]
    lent_items = [Item(f"l{k}", meta(*ks)) for k, ks in enumerate(lent)]
    fresh = [clip("bell", size, 700 + k) for k, size in enumerate(["small", "large"] * 4)]
    bells = [class_of("bell", "small"), class_of("bell", "large")]
    named = {}
    for name, extra in (("alone", []), ("lent", [(Cache(lent_clips), lent_items)])):
        out = tmp_path / name
        torch.manual_seed(0)
        TrimodalModel(replace(preset("tiny"), what_nets=True)).save(out / "best")
        log = io.StringIO()
        prepared = Prepared(own_items, Cache(own_clips))
        assert what_phase(prepared, 20, 0, out, torch.device("cpu"), log, 0.0, extra)
        assert f'"clips": {len(own) + len(extra and lent)}' in log.getvalue()
        trained = TrimodalModel.load(out / "best")
        pictures = trained.picture_what([f for f, _ in fresh])
        sounds = trained.sound_what([w for _, w in fresh])
        assert pictures is not None and sounds is not None
        named[name] = [
            float((np.asarray(p)[:, bells] > 0.5).any(1).mean()) for p in (pictures, sounds)
        ]
    assert named["alone"] == [0.0, 0.0]
    assert min(named["lent"]) >= 0.75, named
    # lent clips alone teach too when no training clip has the metadata (a user's own corpus)
    out = tmp_path / "user"
    TrimodalModel(replace(preset("tiny"), what_nets=True)).save(out / "best")
    unlabelled = Prepared([Item(i.id, {}) for i in own_items], Cache(own_clips))
    extra = [(Cache(lent_clips), lent_items)]
    assert what_phase(unlabelled, 1, 0, out, torch.device("cpu"), io.StringIO(), 0.0, extra)
    assert TrimodalModel.load(out / "best").knows_what()
    # and pieces drawn and heard other ways (`--what-vary`) take the same path
    TrimodalModel(replace(preset("tiny"), what_nets=True)).save(out / "best")
    assert what_phase(
        unlabelled, 1, 0, out, torch.device("cpu"), io.StringIO(), 0.0, extra, vary=True
    )
    assert TrimodalModel.load(out / "best").knows_what()


def test_pieces_drawn_and_heard_other_ways_keep_their_sources_size_and_pitch():
    """`vary_pictures` / `vary_sounds` (`--what-vary`): other colours, light, noise, focus and a
    mirror, never a rescale — the glyph covers about as much of the frame; another band tilt,
    noise floor and cut-off, never a shift in pitch — a tone's loudest band stays put."""
    frames = np.stack([clip("drum", size, k)[0] for k, size in enumerate(["small", "large"] * 4)])
    rng = np.random.default_rng(0)
    varied = vary_pictures(torch.as_tensor(frames), rng)
    assert varied.shape == frames.shape and varied.dtype == torch.float32
    assert float(varied.min()) >= 0.0 and float(varied.max()) <= 255.0
    assert not torch.equal(varied, torch.as_tensor(frames).float())

    def coverage(x: np.ndarray) -> float:  # the share of pixels far from the frame's median
        grey = x.mean(-1)
        return float((np.abs(grey - np.median(grey)) > 40).mean())

    for k in range(len(frames)):
        assert coverage(varied[k, 0].numpy()) == pytest.approx(coverage(frames[k, 0]), abs=0.03)
    # the same random stream draws the same pieces
    again = vary_pictures(torch.as_tensor(frames), np.random.default_rng(0))
    assert torch.equal(varied, again)

    from models.features import LogMelConfig, log_mel

    cfg = LogMelConfig()
    t = np.arange(SR * 2) / SR
    tones = np.stack([0.3 * np.sin(2 * np.pi * hz * t) for hz in (300.0, 600.0, 1200.0)])
    mel = log_mel(torch.as_tensor(tones, dtype=torch.float32), cfg)
    loudest = mel.mean(-1).argmax(-1)
    for seed in range(20):
        heard = vary_sounds(mel, np.random.default_rng(seed))
        assert heard.shape == mel.shape and torch.isfinite(heard).all()
        assert torch.equal(heard.mean(-1).argmax(-1), loudest), seed
    assert not torch.equal(vary_sounds(mel, np.random.default_rng(1)), mel)
