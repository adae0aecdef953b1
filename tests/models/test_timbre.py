"""Each sound measured from its waveform (`models.timbre`): made here by hand, as the world
describes them (shared/SYNTHAV.md), not by the corpus generator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.timbre import (
    FRAME_S,
    ROW,
    RUN_FEATURES,
    SAMPLE_RATE,
    TimbreReader,
    runs,
    sound_runs,
)
from models.what_net import CLASSES

SR = SAMPLE_RATE
# the features' columns in a `sound_runs` row (after its weight and start)
LENGTH, DECAY, FLATNESS, SLOPE, CENTRE = 2, 4, 5, 7, 10


def _silence(seconds: float = 3.0) -> np.ndarray:
    return np.zeros(int(seconds * SR), np.float32)


def _place(track: np.ndarray, sound: np.ndarray, at_s: float) -> None:
    start = int(at_s * SR)
    end = min(start + len(sound), len(track))
    track[start:end] += sound[: end - start]


def _sweep(f_start: float, f_end: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    f = np.geomspace(f_start, f_end, len(t))
    phase = 2 * np.pi * np.cumsum(f) / SR
    return (0.5 * np.sin(phase) * np.hanning(len(t))).astype(np.float32)


def _noise_burst(seconds: float, rng: np.random.Generator, low_pass_hz: float) -> np.ndarray:
    n = int(seconds * SR)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum[np.fft.rfftfreq(n, 1 / SR) > low_pass_hz] = 0
    burst = np.fft.irfft(spectrum, n)
    return (0.5 * burst / np.abs(burst).max() * np.exp(-np.arange(n) / (0.03 * SR))).astype(
        np.float32
    )


def _events(sound: np.ndarray, times: list[float], seconds: float = 3.0) -> np.ndarray:
    track = _silence(seconds)
    for t in times:
        _place(track, sound, t)
    return track


def test_each_event_of_a_sound_is_one_run() -> None:
    """Three chirps a second apart: three runs, each starting where its chirp does."""
    found = sound_runs(_events(_sweep(1500, 4000, 0.12), [0.3, 1.3, 2.3]), SR)
    assert found.shape == (3, ROW)
    np.testing.assert_allclose(found[:, 1], [0.3, 1.3, 2.3], atol=0.05)
    np.testing.assert_allclose(found[:, 0].sum(), 1.0, atol=1e-5)  # shares of the clip's energy


def test_a_rising_sweep_and_a_falling_one_have_opposite_slopes() -> None:
    chirp = sound_runs(_events(_sweep(1500, 4000, 0.15), [0.5, 1.5]), SR)
    boom = sound_runs(_events(_sweep(300, 80, 0.3), [0.5, 1.5]), SR)
    assert (chirp[:, SLOPE] > 0.5).all()
    assert (boom[:, SLOPE] < -0.5).all()
    assert chirp[:, CENTRE].mean() > boom[:, CENTRE].mean() + 2  # octaves higher


def test_a_noise_burst_is_flatter_than_a_tone_and_a_click_is_short() -> None:
    rng = np.random.default_rng(0)
    thud = sound_runs(_events(_noise_burst(0.15, rng, 600.0), [0.5, 1.5]), SR)
    tone = np.sin(2 * np.pi * 440 * np.arange(int(0.15 * SR)) / SR).astype(np.float32)
    held = sound_runs(_events(0.5 * tone * np.hanning(len(tone)), [0.5, 1.5]), SR)
    assert thud[:, FLATNESS].min() > held[:, FLATNESS].max()
    click = np.zeros(int(0.004 * SR), np.float32)
    click[:8] = [0.9, -0.8, 0.6, -0.5, 0.3, -0.2, 0.1, -0.05]
    ticks = sound_runs(_events(click, [0.5, 1.5]), SR)
    assert len(ticks) == 2
    assert (np.exp(ticks[:, LENGTH]) < 0.1).all()  # a run of a few frames (its window's length)


def _hum(loudness: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(len(loudness)) / SR
    f = 110 * (1 + 0.01 * np.sin(2 * np.pi * 5 * t))
    saw = 2 * ((np.cumsum(f) / SR) % 1.0) - 1
    return (loudness * saw + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


def test_a_hum_growing_louder_is_one_long_run_above_the_noise() -> None:
    """A sawtooth with vibrato for the whole clip over a steady noise, louder as it goes faster
    mid-clip: the noise is the background, the hum one run lasting most of the clip."""
    rng = np.random.default_rng(1)
    loudness = 0.3 * np.hanning(3 * SR) ** 2
    found = sound_runs(_hum(loudness, rng), SR)
    assert len(found) == 1
    assert np.exp(found[0, LENGTH]) > 1.0


def test_a_sound_that_never_changes_is_taken_for_the_background() -> None:
    """What this measure cannot do: a hum as loud for the whole clip as it starts is the
    clip's background: at most its first frames, where it starts, stand above it (its kind is
    read from that onset alone, or left to the what network, `heard_reading`)."""
    rng = np.random.default_rng(1)
    found = sound_runs(_hum(np.full(3 * SR, 0.3), rng), SR)
    assert len(found) <= 1
    assert (np.exp(found[:, LENGTH]) < 0.2).all() and (found[:, 1] < 0.05).all()


@pytest.mark.parametrize(
    "sound",
    [np.zeros(3 * SR, np.float32), 0.05 * np.random.default_rng(2).standard_normal(3 * SR)],
    ids=["silence", "steady noise"],
)
def test_nothing_standing_above_the_background_is_no_run(sound: np.ndarray) -> None:
    assert sound_runs(sound.astype(np.float32), SR).shape == (0, ROW)


def test_another_sample_rate_measures_the_same_sound() -> None:
    """The same chirps at 44.1 kHz: resampled first, the same runs within a frame or two."""
    seconds = 3.0
    t = np.arange(int(seconds * 44_100)) / 44_100
    track = np.zeros_like(t)
    for at in (0.5, 1.5):
        inside = (t >= at) & (t < at + 0.15)
        u = t[inside] - at
        track[inside] = (
            0.5 * np.sin(2 * np.pi * (1500 * u + 4000 * u**2)) * np.hanning(inside.sum())
        )
    high = sound_runs(track.astype(np.float32), 44_100)
    low = sound_runs(_events(_sweep(1500, 2700, 0.15), [0.5, 1.5]), SR)
    assert len(high) == len(low) == 2
    np.testing.assert_allclose(high[:, 1], low[:, 1], atol=3 * FRAME_S)
    assert (high[:, SLOPE] > 0).all()


def test_bad_audio_is_refused_not_measured() -> None:
    bad = _silence()
    bad[10] = np.nan
    with pytest.raises(ValueError, match="not finite"):
        sound_runs(bad, SR)
    with pytest.raises(ValueError, match="sample_rate"):
        sound_runs(_silence(), 0)
    with pytest.raises(ValueError, match="mono"):
        sound_runs(np.zeros((2, SR), np.float32), SR)


def test_runs_bridge_short_gaps_and_drop_specks() -> None:
    active = np.zeros(200, bool)
    active[10:30] = True
    active[32:50] = True  # a gap of 2 frames: bridged
    active[100] = True  # one frame: shorter than a run
    active[150:170] = True
    assert runs(active) == [(10, 50), (150, 170)]
    assert runs(np.zeros(5, bool)) == []


def test_an_unfitted_reader_reads_nothing_and_loads_from_a_checkpoint_without_it() -> None:
    reader = TimbreReader()
    rows = np.ones((3, ROW), np.float32)
    assert not reader.is_fitted
    assert np.isnan(reader.clip_chances(rows)).all()
    # a checkpoint from before the reader: nothing of it in the state dict
    fresh = TimbreReader()
    fresh.load_state_dict({})
    assert not fresh.is_fitted
    # one over other numbers: left out, unfitted
    other = {"net.0.weight": torch.zeros(4, RUN_FEATURES + 3), "fitted": torch.ones(())}
    fresh.load_state_dict(other)
    assert not fresh.is_fitted


def test_a_clips_chances_are_its_runs_mean() -> None:
    reader = TimbreReader()
    with torch.no_grad():
        for p in reader.net.parameters():
            p.zero_()
        # the last layer's bias alone: every run reads class 3 likeliest
        reader.net[2].bias[3] = 5.0
    reader.fitted.fill_(1.0)
    rows = np.random.default_rng(0).standard_normal((4, ROW)).astype(np.float32)
    chances = reader.clip_chances(rows)
    assert chances.shape == (len(CLASSES),)
    assert int(np.argmax(chances)) == 3
    np.testing.assert_allclose(chances.sum(), 1.0, atol=1e-5)
    np.testing.assert_allclose(chances, reader.run_chances(rows[:, 2:]).mean(axis=0), atol=1e-6)
    assert np.isnan(reader.clip_chances(np.zeros((0, ROW), np.float32))).all()


def test_a_long_recording_is_measured_a_stretch_at_a_time() -> None:
    """95 s of chirps every 2.5 s: every chirp is a run, its start on the recording's own
    clock across the stretches (30 s, 30 s and 35 s: the short tail joins the last), and the
    first stretch measures as it does alone."""
    from models.timbre import STRETCH_S

    times = [0.5 + 2.5 * k for k in range(38)]
    track = _events(_sweep(1500, 4000, 0.12), times, seconds=95.0)
    found = sound_runs(track, SR)
    assert len(found) == len(times)
    np.testing.assert_allclose(found[:, 1], times, atol=0.05)
    alone = sound_runs(track[: int(STRETCH_S * SR)], SR)
    np.testing.assert_allclose(found[: len(alone)], alone, atol=1e-5)
