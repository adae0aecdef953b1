"""SynthAV's cross-modal structure, measured from decoded media files.

Each test builds a clip from a chosen spec (the generator's input), writes it as a real file,
decodes it with plain PyAV and measures what is seen and heard. No test reads the generator's
arrays.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.training.plain_av import (
    audio_onsets,
    decode_plain,
    frame_change,
    glyph_mask,
    peaks,
    spectral_centroid,
)
from training.synthav import ClipSpec, RenderConfig, Role, Source, render_audio, render_frames
from training.synthav.world import sample_source
from training.synthav.writer import encode_clip

CFG = RenderConfig()


def one_source(
    kind: Source,
    *,
    size: str = "small",
    tempo: str = "slow",
    direction: str = "still",
    scene: str = "day",
    ambience: str = "quiet",
    seed: int = 0,
) -> ClipSpec:
    rng = np.random.default_rng(seed)
    s = sample_source(rng, kind, Role.MAIN, CFG.duration_s)
    while s.tempo != tempo or (kind is not Source.ENGINE and s.direction != direction):
        s = sample_source(rng, kind, Role.MAIN, CFG.duration_s)
    s = replace(s, size=size, colour="red" if scene == "day" else "yellow")
    return ClipSpec(
        id=f"{kind.value}-{size}",
        index=0,
        split="train",
        scene=scene,
        ambience=ambience,
        sources=(s,),
        n_lanes=1,
        noise_seed=seed,
    )


def write(spec: ClipSpec, tmp: Path, cfg: RenderConfig = CFG) -> Path:
    path = tmp / f"{spec.id}-{spec.noise_seed}.{cfg.format}"
    encode_clip(path, render_frames(spec, cfg), render_audio(spec, cfg), cfg)
    return path


def weighted_centroid(frames: np.ndarray, axis: int) -> np.ndarray:
    """Sub-pixel glyph position per frame along `axis` (1 = y, 2 = x)."""
    f = frames.astype(np.float32)
    weight = np.clip(np.abs(f - np.median(f, axis=2, keepdims=True)).sum(-1) - 20, 0, None)
    coords = np.arange(frames.shape[axis], dtype=np.float32)
    shape = [1, 1, 1]
    shape[axis] = -1
    return (weight * coords.reshape(shape)).sum(axis=(1, 2)) / (weight.sum(axis=(1, 2)) + 1e-6)


def visual_events(kind: Source, frames: np.ndarray) -> np.ndarray:
    """Frame indices of visual events, found from pixels alone."""
    if kind is Source.BALL:  # impacts: the lowest points of the bounce
        y = weighted_centroid(frames, axis=1)
        return peaks(y - y.min(), rel=0.85, gap=3)
    if kind is Source.CLOCK:  # each tick leaves the plus turned: look for the step changes
        return peaks(frame_change(frames), rel=0.3, gap=3)
    # Flash, squash and flap decay back to a rest pose, which most frames show: distance from rest.
    f = frames.astype(np.float32)
    activation = np.abs(f - np.median(f, axis=0)).mean(axis=(1, 2, 3))
    return peaks(activation, rel=0.3, gap=3)


@pytest.mark.parametrize(
    ("kind", "direction", "scene", "seed"),
    [
        (Source.BALL, "still", "day", 1),
        (Source.BALL, "left-to-right", "night", 2),
        (Source.BELL, "still", "day", 3),
        (Source.BELL, "still", "night", 4),
        (Source.DRUM, "still", "day", 5),
        (Source.BIRD, "still", "night", 6),
        (Source.CLOCK, "still", "day", 7),
    ],
)
def test_audio_onsets_line_up_with_visual_events(kind, direction, scene, seed, tmp_path):
    clip = decode_plain(
        write(one_source(kind, direction=direction, scene=scene, seed=seed), tmp_path)
    )
    seen = visual_events(kind, clip.frames) / clip.fps
    heard = audio_onsets(clip.audio, clip.sample_rate)
    assert len(seen) >= 4, f"too few visual events found: {seen}"
    assert len(heard) == len(seen), f"seen {np.round(seen, 3)} heard {np.round(heard, 3)}"
    # One video frame, plus the onset detector's 2 ms hop.
    assert np.abs(seen - heard).max() <= 1 / clip.fps + 0.004


@pytest.mark.parametrize("kind", list(Source))
def test_small_glyphs_sound_higher_than_large(kind, tmp_path):
    centroids = {}
    for size in ("small", "large"):
        spec = one_source(kind, size=size, seed=11)
        clip = decode_plain(write(spec, tmp_path))
        centroids[size] = spectral_centroid(clip.audio, clip.sample_rate)
    assert centroids["small"] > 1.3 * centroids["large"], centroids


def test_small_glyphs_look_smaller(tmp_path):
    areas = {}
    for size in ("small", "large"):
        clip = decode_plain(write(one_source(Source.DRUM, size=size, seed=3), tmp_path))
        areas[size] = np.median(glyph_mask(clip.frames).sum(axis=(1, 2)))
    assert areas["large"] > 2.5 * areas["small"]


@pytest.mark.parametrize("seed", [21, 22])
def test_engine_loudness_follows_its_speed(seed, tmp_path):
    spec = one_source(Source.ENGINE, tempo="fast", seed=seed)
    clip = decode_plain(write(spec, tmp_path))
    x = weighted_centroid(clip.frames, axis=2)
    speed = np.abs(np.gradient(x)) * clip.fps
    kernel = np.ones(5) / 5
    speed = np.convolve(speed, kernel, mode="same")[3:-3]
    hop = clip.sample_rate / clip.fps
    mono = clip.audio.mean(axis=0)
    loud = np.array(
        [np.sqrt((mono[int(k * hop) : int((k + 1) * hop)] ** 2).mean()) for k in range(len(x))]
    )
    loud = np.convolve(loud, kernel, mode="same")[3:-3]
    r = np.corrcoef(speed, loud)[0, 1]
    assert r > 0.8, f"loudness/speed correlation {r:.2f}"


def test_direction_is_seen_and_still_means_still(tmp_path):
    xs = {}
    for direction in ("left-to-right", "right-to-left", "still"):
        clip = decode_plain(write(one_source(Source.BIRD, direction=direction, seed=5), tmp_path))
        xs[direction] = weighted_centroid(clip.frames, axis=2)
    w = CFG.width
    assert xs["left-to-right"][-1] - xs["left-to-right"][0] > 0.3 * w
    assert xs["right-to-left"][0] - xs["right-to-left"][-1] > 0.3 * w
    assert np.ptp(xs["still"]) < 0.05 * w


def test_scene_is_light_or_dark_and_ambience_is_heard(tmp_path):
    levels = {}
    for scene, ambience in (("day", "quiet"), ("night", "rain"), ("day", "wind")):
        spec = one_source(Source.CLOCK, scene=scene, ambience=ambience, seed=9)
        clip = decode_plain(write(spec, tmp_path))
        levels[(scene, ambience)] = (clip.frames.mean(), clip.audio)
    assert levels[("day", "quiet")][0] > 120 > levels[("night", "rain")][0]

    def background_rms(audio: np.ndarray) -> float:  # between ticks: median of 50 ms windows
        mono = audio.mean(axis=0)
        win = mono[: len(mono) // 800 * 800].reshape(-1, 800)
        return float(np.median(np.sqrt((win**2).mean(axis=1))))

    quiet = background_rms(levels[("day", "quiet")][1])
    assert background_rms(levels[("night", "rain")][1]) > 10 * quiet
    assert background_rms(levels[("day", "wind")][1]) > 10 * quiet
    assert quiet > 0, "a quiet room still has a noise floor, never digital zero"


@pytest.mark.parametrize("fmt", ["webm", "mkv"])
def test_other_containers_decode_with_their_codecs(fmt, tmp_path):
    cfg = replace(CFG, format=fmt, duration_s=3.0)
    clip = decode_plain(write(one_source(Source.BELL, seed=2), tmp_path, cfg))
    expected = {"webm": ("vp9", "opus"), "mkv": ("h264", "flac")}[fmt]
    assert (clip.video_codec, clip.audio_codec) in {
        expected,
        ("libvpx-vp9", "libopus"),
        ("libdav1d", "opus"),
    } | {(expected[0], "libopus")}
    assert clip.frames.shape == (36, 128, 128, 3)
    assert abs(clip.audio.shape[1] / clip.sample_rate - 3.0) < 0.07


def test_stereo_pans_with_position(tmp_path):
    cfg = replace(CFG, stereo=True)
    spec = one_source(Source.CLOCK, tempo="fast", direction="left-to-right", seed=4)
    clip = decode_plain(write(spec, tmp_path, cfg))
    assert clip.audio.shape[0] == 2
    n = clip.audio.shape[1]
    first, last = clip.audio[:, : n // 4], clip.audio[:, -n // 4 :]
    energy = lambda a: (a**2).sum(axis=1)  # noqa: E731
    assert energy(first)[0] > 2 * energy(first)[1]  # starts on the left
    assert energy(last)[1] > 2 * energy(last)[0]  # ends on the right


def test_other_sizes_rates_and_durations(tmp_path):
    cfg = RenderConfig(duration_s=2.5, fps=25.0, height=96, width=160, sample_rate=48_000)
    clip = decode_plain(write(one_source(Source.DRUM, seed=8), tmp_path, cfg))
    assert clip.frames.shape == (round(2.5 * 25), 96, 160, 3)
    assert clip.sample_rate == 48_000
    assert abs(clip.audio.shape[1] / 48_000 - 2.5) < 0.05
