"""Augmentation changes how a clip looks and sounds, never what the world says about it: colour,
direction, day/night, pitch and event times survive every draw."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from training.augment import AugmentConfig, augment_audio, augment_frames

SR = 16_000
ALWAYS = AugmentConfig(p=1.0, blur_p=1.0, noise_p=1.0, lowpass_p=1.0, reverb_p=1.0)


def _clip(background: int, colour: tuple[int, int, int], xs: list[int]) -> np.ndarray:
    """A square glyph of `colour` at each x (one per frame) on a flat background."""
    frames = np.full((len(xs), 64, 64, 3), background, np.uint8)
    for t, x in enumerate(xs):
        frames[t, 24:40, x : x + 12] = colour
    return frames


def _glyph_mask(frames: np.ndarray, background: int) -> np.ndarray:
    return np.abs(frames.astype(int) - background).sum(-1) > 120


@pytest.mark.parametrize("seed", range(20))
def test_colour_direction_and_scene_survive(seed: int) -> None:
    rng = np.random.default_rng(seed)
    day = _clip(220, (200, 30, 30), [10, 20, 30, 40])  # a red glyph moving right, daylight
    out = augment_frames(day, rng, ALWAYS)
    assert out.shape == day.shape and out.dtype == np.uint8
    assert out.mean() > 150  # still a light scene
    red = out[..., 0].astype(int) - out[..., 1:].astype(int).max(-1)
    assert (red > 40).sum() > 0.3 * (day[..., 0] == 200).sum()  # the glyph is still red
    cols = np.arange(64)[None, None, :]
    centroid = [((red[t] > 40) * cols[0]).sum() / max(1, (red[t] > 40).sum()) for t in range(4)]
    assert centroid[-1] > centroid[0]  # still moving to the right (no mirror)
    night = augment_frames(_clip(25, (30, 30, 200), [40, 30, 20, 10]), rng, ALWAYS)
    assert night.mean() < 90  # still a dark scene


def test_off_or_empty_is_untouched_and_draws_are_reproducible() -> None:
    frames = _clip(220, (30, 200, 30), [10, 20])
    assert augment_frames(frames, np.random.default_rng(0), AugmentConfig(p=0.0)) is frames
    empty = np.zeros((0, 64, 64, 3), np.uint8)
    assert augment_frames(empty, np.random.default_rng(0)) is empty
    a = augment_frames(frames, np.random.default_rng(5), ALWAYS)
    b = augment_frames(frames, np.random.default_rng(5), ALWAYS)
    assert np.array_equal(a, b) and not np.array_equal(a, frames)
    assert augment_audio(np.zeros(0, np.float32), SR, np.random.default_rng(0)).size == 0


def test_one_stream_can_be_left_alone() -> None:
    """`visual=False` / `audio=False`: only the other stream is re-shown or re-heard."""
    frames = _clip(220, (30, 200, 30), [10, 20])
    wave = (0.1 * np.sin(np.arange(SR) * 0.05)).astype(np.float32)
    sound_only = replace(ALWAYS, visual=False)
    pictures_only = replace(ALWAYS, audio=False)
    assert augment_frames(frames, np.random.default_rng(1), sound_only) is frames
    assert not np.array_equal(augment_audio(wave, SR, np.random.default_rng(1), sound_only), wave)
    assert augment_audio(wave, SR, np.random.default_rng(1), pictures_only) is wave
    assert not np.array_equal(
        augment_frames(frames, np.random.default_rng(1), pictures_only), frames
    )


@pytest.mark.parametrize("seed", range(20))
def test_pitch_and_event_time_survive(seed: int) -> None:
    t = np.arange(2 * SR) / SR
    tone = 0.5 * np.sin(2 * np.pi * 1000 * t) * (t >= 1.0) * np.exp(-4 * np.clip(t - 1.0, 0, None))
    out = augment_audio(tone.astype(np.float32), SR, np.random.default_rng(seed), ALWAYS)
    assert out.shape == tone.shape and out.dtype == np.float32 and np.isfinite(out).all()
    assert np.abs(out).max() <= 1.0
    spectrum = np.abs(np.fft.rfft(out[SR : SR + 4096]))
    assert abs(np.fft.rfftfreq(4096, 1 / SR)[spectrum.argmax()] - 1000) < 20  # same pitch
    envelope = np.convolve(np.abs(out), np.ones(160) / 160, mode="same")  # 10 ms
    before, after = envelope[int(0.5 * SR) : int(0.95 * SR)].max(), envelope[SR : SR + 800].max()
    assert after > 2 * before  # the event still starts at 1.0 s, not smeared before it


def test_the_batches_are_augmented_only_when_asked(tmp_path) -> None:
    from training.batches import iterate_batches

    class Cache:
        def frames(self, _id: str) -> np.ndarray:
            return _clip(220, (200, 30, 30), [10, 20, 30])

        def audio(self, _id: str) -> np.ndarray:
            return np.random.default_rng(1).standard_normal(SR).astype(np.float32) * 0.1

    class Texts:
        def lookup(self, captions: list[str]) -> np.ndarray:
            return np.zeros((len(captions), 4), np.float32)

    class Ex:
        def __init__(self, i: int) -> None:
            self.id, self.has_video, self.has_audio = f"c{i}", True, True
            self.captions = {k: ["x"] for k in ("visual", "audio", "audiovisual")}

    exs = [Ex(i) for i in range(4)]
    plain = next(iterate_batches(exs, Cache(), Texts(), 4, np.random.default_rng(0)))
    shown = next(
        iterate_batches(exs, Cache(), Texts(), 4, np.random.default_rng(0), augment=ALWAYS)
    )
    assert all(np.array_equal(f, Cache().frames("")) for f in plain.frames)
    assert not any(np.array_equal(f, Cache().frames("")) for f in shown.frames)
    assert all(a.shape == (SR,) for a in shown.audio)


def test_level_only_changes_the_recording_level_and_nothing_else() -> None:
    """`level_only`: the pictures are left alone, and each augmented sound is the same waveform
    scaled by a gain within the range (taken back to full scale where it would clip)."""
    from training.augment import level_only

    cfg = level_only(gain_db=(-24.0, 6.0), p=1.0)
    rng = np.random.default_rng(0)
    frames = np.random.default_rng(1).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    assert augment_frames(frames, rng, cfg) is frames
    quiet = (0.05 * np.sin(np.linspace(0, 400, 16_000))).astype(np.float32)
    loud = quiet * 19.0  # peak 0.95: +6 dB would clip
    gains = []
    for wave in (quiet, loud):
        for _ in range(20):
            out = augment_audio(wave, 16_000, rng, cfg)
            gain = float(np.dot(out, wave) / np.dot(wave, wave))
            assert np.allclose(out, gain * wave, atol=1e-6)  # only a level, no colour or noise
            assert np.abs(out).max() <= 1.0 + 1e-6
            gains.append(20 * np.log10(gain))
    assert min(gains) >= -24.0 - 1e-3 and max(gains) <= 6.0 + 1e-3
    assert min(gains) < -12.0  # the range is used, not one gain


def test_a_level_only_sound_skips_the_fft_and_sounds_the_same(monkeypatch) -> None:
    """`level_only` takes the short path (no spectrum: nothing colours the sound), with the same
    random draws as the spectral path, so a draw gives the same sound either way (to rounding)."""
    from training.augment import level_only

    wave = (np.random.default_rng(3).standard_normal(8_000) * 0.1).astype(np.float32)
    cfg = level_only(p=1.0)
    # The same config forced down the spectral path: a band-limit that never happens is "on".
    forced = replace(cfg, lowpass_p=1e-12)
    spectra = []
    rfft = np.fft.rfft
    monkeypatch.setattr(np.fft, "rfft", lambda *a, **k: spectra.append(1) or rfft(*a, **k))
    short = [augment_audio(wave, 16_000, np.random.default_rng(s), cfg) for s in range(5)]
    assert not spectra
    longer = [augment_audio(wave, 16_000, np.random.default_rng(s), forced) for s in range(5)]
    assert len(spectra) == 5
    for a, b in zip(short, longer, strict=True):
        assert np.allclose(a, b, atol=1e-6) and not np.allclose(a, wave, atol=1e-4)


def test_level_and_band_changes_the_level_and_sometimes_the_band_and_nothing_else() -> None:
    """`level_and_band`: the pictures are left alone; each augmented sound is the same waveform
    at another level, or that heard through a low-pass at 3.5–7 kHz (a low sample rate upstream):
    nothing added, nothing below the band touched, the length and the event times kept."""
    from training.augment import level_and_band, level_only

    cfg = replace(level_and_band(), p=1.0)
    assert (cfg.visual, cfg.eq_db, cfg.reverb_p, cfg.audio_noise_p) == (False, 0.0, 0.0, 0.0)
    assert cfg.gain_db == level_only().gain_db and cfg.lowpass_p == AugmentConfig().lowpass_p
    rng = np.random.default_rng(0)
    frames = np.random.default_rng(1).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    assert augment_frames(frames, rng, cfg) is frames
    t = np.arange(SR) / SR
    low, high = 0.2 * np.sin(2 * np.pi * 500 * t), 0.2 * np.sin(2 * np.pi * 7_800 * t)
    wave = (low + high).astype(np.float32)
    limited = 0
    for _ in range(40):
        out = augment_audio(wave, SR, rng, cfg)
        assert out.shape == wave.shape
        gain = float(np.dot(out, low) / np.dot(low, low))  # the band below 3.5 kHz: only a level
        left = out - gain * low
        kept = float(np.dot(left, left) / (gain**2 * np.dot(high, high)))  # of the 7.8 kHz tone
        if kept > 0.99:
            assert np.allclose(out, gain * wave, atol=1e-4)  # a level and nothing else
        else:
            assert kept < 0.9  # a cutoff at 7 kHz at most takes most of it
            limited += 1
    assert 4 <= limited <= 24  # about 30 % of the sounds, not none and not all


def test_augmentations_by_name() -> None:
    from training.augment import level_and_band, level_only, named

    assert named("level") == level_only() and named("none") is None
    assert named("band") == level_and_band()
    assert named("full") == AugmentConfig()
    assert (named("audio").audio, named("audio").visual) == (True, False)
    assert (named("visual").audio, named("visual").visual) == (False, True)
    with pytest.raises(ValueError, match="loud"):
        named("loud")


@pytest.mark.parametrize("rate", [2 / 3, 5 / 6, 1.0])
def test_a_slower_file_holds_frames_in_order_and_never_shows_ahead(rate: float) -> None:
    from training.augment import slower_file

    for phase in (0.0, 0.3, 0.99):
        shown, held = slower_file(36, rate, phase)
        rows = shown[held]
        assert rows.shape == (36,) and rows.min() >= 0 and rows.max() <= 35
        assert np.all(np.diff(rows) >= 0)  # never backwards
        assert np.all(rows <= np.arange(36) + 1)  # never more than a grid step ahead
        # a share (1 - rate) of the grid frames repeat their predecessor
        repeats = int(np.sum(np.diff(rows) == 0))
        assert abs(repeats - 35 * (1 - rate)) <= 1.5
    assert np.array_equal(slower_file(12, 1.0, 0.0)[0][slower_file(12, 1.0, 0.0)[1]], range(12))
    with pytest.raises(ValueError, match="shares of the grid"):
        slower_file(12, 1.5, 0.0)


def test_shown_slower_leaves_the_sound_and_unchosen_clips_and_drops_their_memo_keys() -> None:
    import torch

    from training.augment import show_slower
    from training.batches import Batch, shown_slower

    clip = np.arange(24, dtype=np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 3), np.uint8)
    frames = [clip, clip.copy(), clip[:1]]
    audio = [np.ones(SR, np.float32)] * 3
    batch = Batch(
        ids=["a", "b", "c"],
        frames=frames,
        audio=audio,
        text={},
        has_video=torch.ones(3, dtype=torch.bool),
        has_audio=torch.ones(3, dtype=torch.bool),
        frame_keys=["a", "b", "c"],
    )
    slow = shown_slower(batch, np.random.default_rng(0), 1.0)
    # a one-frame clip has nothing to hold; the others are new arrays held in order
    assert slow.frames[2] is frames[2] and slow.frame_keys == [None, None, "c"]
    for f in slow.frames[:2]:
        rows = f[:, 0, 0, 0].astype(int)
        assert f.shape == clip.shape and np.all(np.diff(rows) >= 0)
        assert 4 <= int(np.sum(np.diff(rows) == 0)) <= 8
    assert slow.audio is batch.audio and slow.ids == batch.ids
    assert np.array_equal(frames[0], clip)  # the cache's frames untouched
    same = shown_slower(batch, np.random.default_rng(0), 0.0)
    assert all(s is f for s, f in zip(same.frames, frames, strict=True))
    assert same.frame_keys == ["a", "b", "c"]
    # about `share` of the clips change
    rng = np.random.default_rng(1)
    changed = sum(show_slower(clip, rng, 0.3) is not clip for _ in range(1000))
    assert 240 <= changed <= 360
    with pytest.raises(ValueError, match="share"):
        show_slower(clip, rng, 1.5)
