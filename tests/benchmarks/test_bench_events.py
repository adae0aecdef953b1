"""bench_events: non-learned event envelopes find a clip's picture from its sound, and only its."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from benchmarks import bench_events as be
from models.config import preset
from models.events import picture_events, sound_events
from models.model import TrimodalModel
from tests.benchmarks.tiny_corpus import tiny_corpus


def clicks_and_flashes(times: list[float], fps: float, seconds: float = 4.0):
    sr = be.SAMPLE_RATE
    wave = np.random.default_rng(0).normal(0, 1e-3, int(seconds * sr)).astype(np.float32)
    frames = np.full((int(seconds * fps), 16, 16, 3), 40, np.uint8)
    for t in times:
        start = int(t * sr)
        wave[start : start + 400] += np.sin(np.arange(400) * 0.3).astype(np.float32)
        frames[int(t * fps) : int(t * fps) + 1] = 220
    return wave, frames


def test_envelopes_pair_each_sound_with_its_own_picture():
    rng = np.random.default_rng(3)
    fps, seconds = 12.0, 4.0
    length = int(fps * seconds)
    patterns = [sorted(rng.uniform(0.2, 3.7, 5).tolist()) for _ in range(8)]
    sounds, pictures = [], []
    for times in patterns:
        wave, frames = clicks_and_flashes(times, fps, seconds)
        sounds.append(be._fixed(sound_events(wave, be.SAMPLE_RATE, fps), length))
        pictures.append(be._fixed(picture_events(frames, fps, fps), length))
    scores = be.alignment_scores(np.stack(sounds), np.stack(pictures))
    assert be.recall(scores)["R@1"] == 1.0
    assert be.recall(scores.T)["R@1"] == 1.0
    # Pairing each sound with another clip's picture: its own is no longer there to be found.
    shifted = be.alignment_scores(np.stack(sounds), np.roll(np.stack(pictures), 1, axis=0))
    assert be.recall(shifted)["R@1"] <= 0.25


def test_fidelity_is_each_envelopes_correlation_with_its_own_clips_event_times():
    """An envelope made of the clip's own events correlates with their train as closely as the
    lag allows; with another clip's train it does not."""
    fps, seconds = 12.0, 4.0
    length = int(fps * seconds)
    rng = np.random.default_rng(5)
    metas, pictures = [], []
    for _ in range(6):
        times = sorted(rng.uniform(0.2, 3.7, 5).tolist())
        metas.append({"sources": [{"kind": "bell", "role": "main", "events": times}]})
        _, frames = clicks_and_flashes(times, fps, seconds)
        pictures.append(be._fixed(picture_events(frames, fps, fps), length))
    trains = np.stack([be.event_train(m, fps, length) for m in metas])
    kinds = [be._timed_source(m) for m in metas]
    own = be.fidelity(np.stack(pictures), trains, kinds, max_lag=1)
    assert own["median"] > 0.5 and own["by_source"] == {
        "bell": {"clips": 6, "median": own["median"]}
    }
    other = be.fidelity(np.stack(pictures), np.roll(trains, 1, axis=0), kinds, max_lag=1)
    assert other["median"] < own["median"] - 0.3
    # a clip whose only source is off screen, or a silent one, has no train; two timed sources
    # are no single source's
    assert (
        be.event_train({"sources": [{"role": "offscreen", "events": [1.0]}]}, fps, length) is None
    )
    assert be.event_train({}, fps, length) is None
    two = {"sources": [{"kind": "bell", "role": "main", "events": [1.0]}] * 2}
    assert be._timed_source(two) == ""


def test_benchmark_on_a_tiny_corpus_writes_its_result(tmp_path, results):
    """The hand-made envelopes, and with `--ckpt` a checkpoint's picture envelope beside them
    (here an event network that was never fitted, marked trained: its envelope, not the
    hand-made one, is what the "-model" rows measure)."""
    manifest = tiny_corpus(tmp_path / "c", clips=16, seed=9, workers=2)
    torch.manual_seed(0)
    tiny = preset("tiny")
    cfg = replace(tiny, visual=replace(tiny.visual, image_size=64), picture_events="learned")
    model = TrimodalModel(cfg)
    assert model.picture_events is not None
    model.picture_events.trained.fill_(1.0)
    model.save(tmp_path / "ckpt")
    TrimodalModel(tiny).save(tmp_path / "small-pictures")
    with pytest.raises(SystemExit, match="32×32"):
        be.main(["--pool", f"tiny={manifest}", "--ckpt", str(tmp_path / "small-pictures")])
    out = be.main(
        [
            "--pool",
            f"tiny={manifest}",
            "--fps",
            "12",
            "--max-lag",
            "1",
            "--duration",
            "3",
            "--cache",
            str(tmp_path / "cache"),
            "--workers",
            "1",
            "--ckpt",
            str(tmp_path / "ckpt"),
        ]
    )
    m = out["pools"]["tiny"]["12fps-lag1"]
    assert m["pool"] == 16 and not m["skipped"]
    # Chance is 1/16: event timing alone finds a good share of the clips (3 s clips carry only a
    # few events each; 6 s test clips do far better, see benchmarks/results/bench_events-*).
    assert m["audio→video"]["shared"]["R@1"] >= 0.3, m
    assert m["audio→video"]["all"]["R@10"] >= 0.6, m
    # the envelopes follow the clips' own event times (the generator's pictures and sounds)
    f = m["fidelity"]
    assert 0 < f["clips"] <= 16
    assert f["sound"]["median"] > 0.3 and f["picture"]["median"] > 0.3, f
    learned = out["pools"]["tiny"]["12fps-lag1-model"]
    assert learned["pool"] == 16 and learned["fidelity"]["clips"] == f["clips"]
    assert learned["fidelity"]["sound"] == f["sound"]  # the sound's envelope is the same
    assert learned["fidelity"]["picture"]["median"] != f["picture"]["median"]
    written = list(results.glob("bench_events-*.json"))
    assert len(written) == 1 and json.loads(written[0].read_text())["machine"]["cores"] >= 1
