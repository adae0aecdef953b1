"""The event phase: the picture's event network learns from each clip's own sound alone."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from models.config import preset
from models.events import picture_events
from models.model import TrimodalModel
from training.event_phase import MIN_WINDOW, envelope_loss, event_phase, vary_looks, vary_rate

FPS, SR, SIZE = 12.0, 16_000, 32


def flashing_clip(seed: int, t: int = 48) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames, sound and event bins of a clip in which a still square flashes at random times
    (and its sound clicks then) while another square wanders at a random, changing speed: the
    picture changes all the time, only the flashes are events."""
    rng = np.random.default_rng(seed)
    events = np.sort(rng.choice(np.arange(2, t - 2, 3), size=t // 8, replace=False))
    frames = np.full((t, SIZE, SIZE, 3), int(rng.integers(20, 100)), np.uint8)
    x = 0.0
    for k in range(t):
        x = (x + rng.uniform(0, 6)) % (SIZE - 6)
        frames[k, 20:26, int(x) : int(x) + 6] = 230
        frames[k, 4:10, 4:10] = 120
    for e in events:  # bin e: what changes between frames e and e + 1
        frames[e + 1, 4:10, 4:10] = 255
    wave = rng.normal(0, 0.01, int(t / FPS * SR)).astype(np.float32)
    for e in events:  # it sounds between those two frames, as a SynthAV event does
        start = int((e + 0.5) / FPS * SR)
        n = min(400, len(wave) - start)
        wave[start : start + n] += rng.normal(0, 0.5, n) * np.exp(-np.arange(n) / 80.0)
    return frames, wave, events


@dataclass
class Example:
    id: str


class Cache:
    """What `event_phase` reads of a feature cache: frames and sound, no decoder measures."""

    def __init__(self, clips: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
        self.clips = clips

    def frames(self, i: str) -> np.ndarray:
        return self.clips[i][0]

    def audio(self, i: str) -> np.ndarray:
        return self.clips[i][1]

    def changes(self, i: str) -> None:
        return None

    region_changes = motion = halves = changes


@dataclass
class Prepared:
    train: list[Example]
    cache: Cache
    backbone: None = None


def correlation_with(envelope: np.ndarray, events: np.ndarray) -> float:
    train = np.zeros(len(envelope))
    train[events] = 1.0
    return float(np.corrcoef(envelope, train)[0, 1])


def test_envelope_loss_is_minus_the_correlation_and_skips_flat_targets():
    target = torch.tensor([[0.0, 1.0, 0.0, 2.0], [1.0, 1.0, 1.0, 1.0]])
    logits = torch.tensor([[0.0, 2.0, 0.0, 4.0], [5.0, 0.0, 1.0, 2.0]], requires_grad=True)
    loss = envelope_loss(logits, target)
    assert abs(loss.item() + 1.0) < 1e-3  # the second row (no sound to follow) left out
    loss.backward()
    assert logits.grad is not None and (logits.grad[1] == 0).all()
    flat = envelope_loss(logits, torch.ones(2, 4))
    assert flat.item() == 0.0


def test_looks_vary_per_clip_and_repeat_with_the_generator():
    grey = torch.rand(3, 5, 8, 8)
    a = vary_looks(grey, np.random.default_rng(0))
    b = vary_looks(grey, np.random.default_rng(0))
    assert a.shape == grey.shape and torch.equal(a, b) and not torch.equal(a, grey)


def test_the_phase_learns_events_from_the_sound_and_moves_nothing_else(tmp_path: Path):
    clips = {f"c{i}": flashing_clip(i) for i in range(48)}
    clips["short"] = flashing_clip(99, t=MIN_WINDOW - 1)  # too short to learn from: left out
    cfg = replace(preset("tiny"), picture_events="learned")
    torch.manual_seed(0)
    model = TrimodalModel(cfg)
    model.save(tmp_path / "best")
    before = TrimodalModel.load(tmp_path / "best").state_dict()
    prepared = Prepared([Example(i) for i in clips], Cache(clips))
    log_path = tmp_path / "metrics.jsonl"
    with open(log_path, "w") as log:
        assert event_phase(prepared, 4, 0, tmp_path, torch.device("cpu"), log, 0.0)
    after = TrimodalModel.load(tmp_path / "best")
    assert after.picture_events is not None and after.picture_events.is_trained
    moved = {k for k, v in after.state_dict().items() if not torch.equal(v, before[k])}
    assert moved and all(k.startswith("picture_events.") for k in moved), sorted(moved)[:5]
    lines = [json.loads(x) for x in log_path.read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [0, 1, 2, 3]
    assert lines[-1]["envelope_loss"] < lines[0]["envelope_loss"]

    # clips it never saw: its envelope finds the flashes, the hand-made one the wandering too
    learned, hand = [], []
    for seed in range(100, 110):
        frames, _, events = flashing_clip(seed)
        learned.append(correlation_with(after.picture_envelope(frames), events))
        hand.append(correlation_with(picture_events(frames, FPS, FPS), events))
    assert np.median(learned) > 0.6 and np.median(learned) > np.median(hand) + 0.1, (
        learned,
        hand,
    )


def test_no_phase_without_a_network_or_without_clips_to_learn_from(tmp_path: Path):
    clips = {"short": flashing_clip(1, t=MIN_WINDOW - 1)}
    prepared = Prepared([Example("short")], Cache(clips))
    for name, cfg in {
        "hand-made": preset("tiny"),
        "no clips": replace(preset("tiny"), picture_events="learned"),
    }.items():
        TrimodalModel(cfg).save(tmp_path / name / "best")
        weights = (tmp_path / name / "best" / "model.safetensors").read_bytes()
        with open(tmp_path / name / "log", "w") as log:
            assert not event_phase(prepared, 2, 0, tmp_path / name, torch.device("cpu"), log, 0.0)
        assert (tmp_path / name / "best" / "model.safetensors").read_bytes() == weights, name


def test_a_large_corpus_lends_the_phase_a_subset(tmp_path: Path, monkeypatch):
    """The phase holds its clips' inputs in memory: beyond `MAX_CLIPS` it takes a random subset
    (the same for the same seed)."""
    import training.event_phase as phase

    clips = {f"c{i}": flashing_clip(i, t=24) for i in range(12)}
    read: list[list[str]] = []
    real = phase._Clips

    def recording(model, sources):
        ((_cache, ids),) = sources
        read.append(list(ids))
        return real(model, sources)

    monkeypatch.setattr(phase, "MAX_CLIPS", 5)
    monkeypatch.setattr(phase, "_Clips", recording)
    prepared = Prepared([Example(i) for i in clips], Cache(clips))
    learned = replace(preset("tiny"), picture_events="learned")
    for run in ("a", "b"):
        TrimodalModel(learned).save(tmp_path / run / "best")
        with open(tmp_path / run / "log", "w") as log:
            assert event_phase(prepared, 1, 3, tmp_path / run, torch.device("cpu"), log, 0.0)
    assert len(read[0]) == 5 and set(read[0]) <= set(clips) and read[0] == read[1]


def test_a_window_shown_at_a_lower_frame_rate_holds_frames_and_sums_the_changes_it_skips():
    steps = 24
    grey = torch.arange(steps + 1, dtype=torch.float32)[None, :, None, None].expand(1, -1, 2, 2)
    linear = torch.ones(1, steps, 3)
    linear[0, 5] = 4.0  # a large change between grid frames 5 and 6
    measures = torch.log1p(linear)
    slow_grey, slow_measures = vary_rate(grey, measures, np.random.default_rng(0), 1.0, (2 / 3,))
    assert slow_grey.shape == grey.shape and slow_measures.shape == measures.shape
    shown = slow_grey[0, :, 0, 0].long().tolist()
    # sample and hold: never backwards, never ahead of the grid, a third of the frames repeated
    assert all(b >= a for a, b in itertools.pairwise(shown))
    assert all(s <= j + 1 for j, s in enumerate(shown))
    assert sum(b == a for a, b in itertools.pairwise(shown)) in (7, 8, 9)
    # each file pair spans one or two grid bins: its change is theirs summed, never lost
    values = torch.expm1(slow_measures[0, :, 0])
    assert set(torch.round(values).long().tolist()) <= {1, 2, 4, 5}
    assert float(values.max()) == 5.0 or float(values.max()) == 4.0
    # the input is untouched, a share of 0 changes nothing
    assert torch.equal(grey[0, :, 0, 0], torch.arange(steps + 1, dtype=torch.float32))
    same_grey, same_measures = vary_rate(grey, measures, np.random.default_rng(0), 0.0)
    assert torch.equal(same_grey, grey) and torch.equal(same_measures, measures)


def test_a_rate_above_the_grids_is_refused():
    import pytest

    grey, measures = torch.zeros(1, 5, 2, 2), torch.zeros(1, 4, 3)
    with pytest.raises(ValueError, match="shares of the grid"):
        vary_rate(grey, measures, np.random.default_rng(0), 1.0, (1.5,))


def test_more_clips_from_another_cache_teach_the_network_too(tmp_path: Path, monkeypatch):
    """`extra` (cache, ids) sources join the training clips, each capped at `MAX_CLIPS`: a
    corpus whose own clips are too short to learn from still trains on them."""
    import training.event_phase as phase

    own = {"short": flashing_clip(1, t=MIN_WINDOW - 1)}
    more = {f"m{i}": flashing_clip(200 + i) for i in range(24)}
    read: list[list[list[str]]] = []
    real = phase._Clips

    def recording(model, sources):
        read.append([list(ids) for _, ids in sources])
        return real(model, sources)

    monkeypatch.setattr(phase, "MAX_CLIPS", 20)
    monkeypatch.setattr(phase, "_Clips", recording)
    cfg = replace(preset("tiny"), picture_events="learned")
    torch.manual_seed(0)
    TrimodalModel(cfg).save(tmp_path / "best")
    prepared = Prepared([Example("short")], Cache(own))
    with open(tmp_path / "log", "w") as log:
        assert event_phase(
            prepared, 3, 0, tmp_path, torch.device("cpu"), log, 0.0, [(Cache(more), list(more))]
        )
    assert read[0][0] == ["short"] and len(read[0][1]) == 20 and set(read[0][1]) <= set(more)
    after = TrimodalModel.load(tmp_path / "best")
    assert after.picture_events is not None and after.picture_events.is_trained
    frames, _, events = flashing_clip(300)
    assert correlation_with(after.picture_envelope(frames), events) > 0.3


def test_an_epoch_shows_every_clip_lent_ones_too(tmp_path: Path, monkeypatch):
    """Each epoch shows every clip the phase holds once, the training clips' and the lent ones'
    (lent clips lengthen the phase: at the training clips' number of windows they gave little)."""
    import training.event_phase as phase

    own = {f"c{i}": flashing_clip(i) for i in range(10)}
    more = {f"m{i}": flashing_clip(200 + i) for i in range(30)}
    shown: list[list[int]] = []
    real_batch = phase._Clips.batch

    def counting(self, rows, rng):
        shown[-1].extend(int(r) for r in rows)
        return real_batch(self, rows, rng)

    monkeypatch.setattr(phase._Clips, "batch", counting)
    cfg = replace(preset("tiny"), picture_events="learned")
    for run, extra in (("alone", []), ("lent", [(Cache(more), list(more))])):
        shown.append([])
        TrimodalModel(cfg).save(tmp_path / run / "best")
        with open(tmp_path / run / "log", "w") as log:
            assert event_phase(
                Prepared([Example(i) for i in own], Cache(own)),
                2,
                0,
                tmp_path / run,
                torch.device("cpu"),
                log,
                0.0,
                extra,
            )
    alone, lent = shown
    assert sorted(alone) == sorted(2 * list(range(len(own))))
    assert sorted(lent) == sorted(2 * list(range(len(own) + len(more))))
