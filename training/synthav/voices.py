"""Sound with variety: several synthesis recipes per source kind, random timbre, EQ, room, gain.

What the world fixes is kept: every event's sound starts at its onset sample, small sources sound
an octave above large ones (timbre jitter stays well inside that octave), a fast engine is louder,
the siren switches tone at each event. Everything else is drawn from the clip's `Voice`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from training.synthav.render import engine_speed
from training.synthav.sound import BASE_HZ, LARGE_FACTOR, _fft_filter, _pan
from training.synthav.variety import Voice
from training.synthav.world import ClipSpec, RenderConfig, Source, SourceSpec

Rng = np.random.Generator


def _t(seconds: float, sr: int) -> np.ndarray:
    return np.arange(max(2, int(seconds * sr))) / sr


def _attack(t: np.ndarray, seconds: float = 0.002) -> np.ndarray:
    return np.minimum(1.0, t / seconds)


def _sweep(freq: np.ndarray, sr: int) -> np.ndarray:
    """Sine whose instantaneous frequency is `freq`, kept below Nyquist."""
    return np.sin(2 * math.pi * np.cumsum(np.minimum(freq, sr / 2.2)) / sr)


def _ball(recipe: int, f0: float, sr: int, rng: Rng) -> np.ndarray:
    if recipe == 0:  # low-passed noise burst over a short low sine
        t = _t(rng.uniform(0.09, 0.15), sr)
        noise = _fft_filter(rng.normal(0, 1, t.size), sr, 0, f0 * rng.uniform(3, 6))
        body = np.sin(2 * math.pi * f0 * t)
        mix = rng.uniform(0.3, 0.7) * noise / (np.abs(noise).max() + 1e-9) + 0.7 * body
        return mix * np.exp(-t / rng.uniform(0.02, 0.045))
    if recipe == 1:  # a damped sine that sags in pitch, with a soft click on contact
        t = _t(rng.uniform(0.1, 0.18), sr)
        tone = _sweep(f0 * (1 + rng.uniform(0.2, 0.5) * np.exp(-t / 0.015)), sr)
        click = rng.normal(0, 1, t.size) * np.exp(-t / 0.002) * 0.3
        return (tone + click) * np.exp(-t / rng.uniform(0.025, 0.05)) * _attack(t, 0.001)
    # band-passed noise: the hollow body of the ball resonating
    t = _t(rng.uniform(0.08, 0.14), sr)
    noise = _fft_filter(rng.normal(0, 1, t.size), sr, f0 * 0.7, f0 * rng.uniform(2.0, 3.0))
    return noise * np.exp(-t / rng.uniform(0.02, 0.04)) * _attack(t, 0.001)


def _bell(recipe: int, f0: float, sr: int, rng: Rng) -> np.ndarray:
    t = _t(rng.uniform(0.9, 1.4), sr)
    decay = np.exp(-t / rng.uniform(0.25, 0.6))
    if recipe == 0:  # inharmonic partials
        partials = [(1.0, 1.0), (2.76, 0.5), (5.40, 0.3), (8.93, 0.15)]
        tone = np.zeros(t.size)
        for ratio, amp in partials:
            r = ratio if ratio == 1.0 else ratio * rng.uniform(0.97, 1.03)
            if f0 * r < sr / 2.2:
                tone += (
                    amp * rng.uniform(0.6, 1.2) ** (ratio > 1) * np.sin(2 * math.pi * f0 * r * t)
                )
        return tone * decay * _attack(t)
    # FM: an inharmonic modulator whose index decays, as a struck metal's brightness does
    fm = f0 * rng.uniform(1.4, 3.6)
    index0 = min(rng.uniform(1.5, 4.0), max(0.3, (sr / 2.2 - f0) / fm - 1))
    index = index0 * np.exp(-t / rng.uniform(0.1, 0.4))
    tone = np.sin(2 * math.pi * f0 * t + index * np.sin(2 * math.pi * fm * t))
    return tone * decay * _attack(t)


def _drum(recipe: int, f0: float, sr: int, rng: Rng) -> np.ndarray:
    if recipe == 0:  # falling sine sweep
        t = _t(rng.uniform(0.28, 0.42), sr)
        freq = f0 * (1 + rng.uniform(0.6, 1.2) * np.exp(-t / rng.uniform(0.03, 0.06)))
        return _sweep(freq, sr) * np.exp(-t / rng.uniform(0.08, 0.16)) * _attack(t)
    # a noise strike on the skin, then the shell's resonance at the drum's pitch
    t = _t(rng.uniform(0.3, 0.45), sr)
    strike = _fft_filter(rng.normal(0, 1, t.size), sr, 0, f0 * rng.uniform(3, 6))
    strike *= np.exp(-t / rng.uniform(0.01, 0.025)) / (np.abs(strike).max() + 1e-9)
    body = np.sin(2 * math.pi * f0 * t) * np.exp(-t / rng.uniform(0.1, 0.2))
    return (rng.uniform(0.4, 0.8) * strike + body) * _attack(t)


def _bird(recipe: int, f0: float, sr: int, rng: Rng) -> np.ndarray:
    if recipe == 0:  # one fast rising sweep
        t = _t(rng.uniform(0.08, 0.14), sr)
        freq = f0 * (1 + rng.uniform(0.6, 1.0) * t / t[-1])
        return _sweep(freq, sr) * np.clip(np.sin(math.pi * t / t[-1]), 0, None) ** 0.5
    # a burst of short frequency-modulated chirps
    out: list[np.ndarray] = []
    for _ in range(int(rng.integers(2, 5))):
        t = _t(rng.uniform(0.025, 0.04), sr)
        wobble = 1 + 0.08 * np.sin(2 * math.pi * rng.uniform(60, 120) * t)
        freq = f0 * rng.uniform(1.0, 1.3) * (1 + 0.4 * t / t[-1]) * wobble
        out += [
            _sweep(freq, sr) * np.sin(math.pi * t / t[-1]),
            np.zeros(int(rng.uniform(0.008, 0.02) * sr)),
        ]
    return np.concatenate(out)


def _clock(recipe: int, f0: float, sr: int, rng: Rng) -> np.ndarray:
    t = _t(rng.uniform(0.008, 0.016), sr)
    if recipe == 0:  # a very short sine click
        tone = np.sin(2 * math.pi * min(f0, sr / 2.5) * t)
        return tone * np.exp(-t / rng.uniform(0.0015, 0.003))
    # a band-passed noise click around the tick's pitch
    t = _t(0.03, sr)
    centre = min(f0, sr / 2.8)
    noise = _fft_filter(rng.normal(0, 1, t.size), sr, centre * 0.7, centre * 1.35)
    return noise * np.exp(-t / rng.uniform(0.002, 0.004))


_EVENTS: dict[Source, Callable[[int, float, int, Rng], np.ndarray]] = {
    Source.BALL: _ball,
    Source.BELL: _bell,
    Source.DRUM: _drum,
    Source.BIRD: _bird,
    Source.CLOCK: _clock,
}


def _engine(s: SourceSpec, recipe: int, f0: float, cfg: RenderConfig, rng: Rng) -> np.ndarray:
    sr, n = cfg.sample_rate, cfg.num_samples
    t = np.arange(n) / sr
    speed = engine_speed(s, t, cfg.duration_s)
    vibrato = 1 + rng.uniform(0.005, 0.02) * np.sin(2 * math.pi * rng.uniform(4, 7) * t)
    phase = np.cumsum(f0 * (0.85 + 0.15 * speed) * vibrato) / sr
    if recipe == 0:  # sawtooth
        wave = 2 * (phase - np.floor(phase + 0.5))
    else:  # pulse wave with a sub-octave, a different engine's buzz
        duty = rng.uniform(0.2, 0.4)
        wave = np.where(phase % 1.0 < duty, 1.0, -1.0) + 0.5 * np.sin(math.pi * phase)
    wave = _fft_filter(wave, sr, 20, f0 * rng.uniform(5, 10))
    wave /= np.abs(wave).max() + 1e-9
    level = 0.55 if s.tempo == "fast" else 0.28
    return level * wave * speed / speed.max()


def _siren(s: SourceSpec, recipe: int, f0: float, cfg: RenderConfig, rng: Rng) -> np.ndarray:
    sr, n = cfg.sample_rate, cfg.num_samples
    t = np.arange(n) / sr
    switches = np.searchsorted(np.asarray(s.events), t, side="right")
    freq = np.where(switches % 2 == 0, f0, f0 * 4 / 3)
    phase = 2 * math.pi * np.cumsum(freq) / sr
    if recipe == 0:  # two pure tones
        wave = np.sin(phase)
    else:  # two horn-like tones: odd harmonics
        wave = np.zeros(n)
        for k in (1, 3, 5):
            if f0 * 4 / 3 * k < sr / 2.2:
                wave += np.sin(k * phase) / k**1.5
        wave /= np.abs(wave).max() + 1e-9
    return 0.3 * wave * _attack(t, 0.01)


def voiced_track(s: SourceSpec, cfg: RenderConfig, voice: Voice, rng: Rng) -> np.ndarray:
    """One source's mono track in the clip's voice, float64 (N,)."""
    recipe = voice.recipe(s.kind)
    size = LARGE_FACTOR if s.size == "large" else 1.0
    # Timbre may shift the pitch a little; an octave separates the sizes, far more than this.
    f0 = BASE_HZ[s.kind] * size * s.pitch * rng.uniform(0.92, 1.08)
    if s.kind is Source.ENGINE:
        return _engine(s, recipe, f0, cfg, rng)
    if s.kind is Source.SIREN:
        return _siren(s, recipe, f0, cfg, rng)
    n = cfg.num_samples
    track = np.zeros(n)
    for e in s.events:
        start = round(e * cfg.sample_rate)
        if start >= n:
            continue
        sound = _EVENTS[s.kind](recipe, f0, cfg.sample_rate, rng) * rng.uniform(0.8, 1.0)
        end = min(n, start + sound.size)
        track[start:end] += 0.5 * sound[: end - start] / (np.abs(sound).max() + 1e-9)
    return track


def voiced_ambience(kind: str, recipe: int, cfg: RenderConfig, rng: Rng) -> np.ndarray:
    sr, n = cfg.sample_rate, cfg.num_samples
    t = np.arange(n) / sr
    if kind == "quiet":  # a room's noise floor, at its own level
        return rng.normal(0, 10 ** (rng.uniform(-70, -60) / 20), n)
    if kind == "rain" and recipe == 0:  # hiss plus sparse droplets
        hiss = _fft_filter(rng.normal(0, 1, n), sr, rng.uniform(1000, 2500), sr / 2)
        hiss *= rng.uniform(0.025, 0.05) / (hiss.std() + 1e-12)
        drops = np.zeros(n)
        idx = rng.integers(0, n, size=int(rng.uniform(25, 60) * cfg.duration_s))
        drops[idx] = rng.uniform(-0.12, 0.12, size=idx.size)
        return hiss + _fft_filter(drops, sr, 2000, sr / 2)
    if kind == "rain":  # many droplets, each a tiny decaying ping
        out = np.zeros(n)
        drop_t = _t(0.006, sr)
        for start in rng.integers(0, n, size=int(rng.uniform(150, 400) * cfg.duration_s)):
            f = min(rng.uniform(1500, 6000), sr / 2.5)
            ping = np.sin(2 * math.pi * f * drop_t) * np.exp(-drop_t / 0.0015)
            end = min(n, start + ping.size)
            out[start:end] += rng.uniform(0.01, 0.05) * ping[: end - start]
        return out
    if kind == "wind" and recipe == 0:  # low rumble that swells and fades
        rumble = _fft_filter(rng.normal(0, 1, n), sr, rng.uniform(25, 80), rng.uniform(300, 900))
        swell = 0.6 + 0.4 * np.sin(2 * math.pi * rng.uniform(0.1, 0.3) * t + rng.uniform(0, 6.28))
        return rng.uniform(0.035, 0.065) * swell * rumble / (rumble.std() + 1e-12)
    if kind == "wind":  # gusts: a few noise bands fading in and out at their own slow rates
        out = np.zeros(n)
        for low in rng.uniform(60, 1200, size=3):
            band = _fft_filter(rng.normal(0, 1, n), sr, low, low * rng.uniform(1.5, 3.0))
            gust = 0.5 + 0.5 * np.sin(
                2 * math.pi * rng.uniform(0.05, 0.4) * t + rng.uniform(0, 6.28)
            )
            out += gust * band / (band.std() + 1e-12)
        return rng.uniform(0.03, 0.05) * out / math.sqrt(3)
    raise ValueError(f"unknown ambience {kind!r}")


def _eq(x: np.ndarray, sr: int, voice: Voice) -> np.ndarray:
    """Tilt, high-pass and (when it falls below Nyquist) low-pass, on each channel."""
    spec = np.fft.rfft(x, axis=-1)
    freqs = np.fft.rfftfreq(x.shape[-1], 1 / sr)
    gain = (np.maximum(freqs, 20.0) / 1000.0) ** voice.eq_tilt
    gain[freqs < voice.highpass_hz] = 0.0
    if voice.lowpass_hz:
        gain[freqs > voice.lowpass_hz] = 0.0
    return np.fft.irfft(spec * gain, n=x.shape[-1], axis=-1)


def _reverb(x: np.ndarray, sr: int, voice: Voice, rng: Rng) -> np.ndarray:
    """A simple room: the dry sound plus an exponentially decaying noise tail."""
    if voice.wet <= 0:
        return x
    t = _t(voice.room_s, sr)
    ir = rng.normal(0, 1, t.size) * np.exp(-6.9 * t / voice.room_s)
    ir /= np.sqrt((ir**2).sum())
    n = x.shape[-1] + ir.size
    wet = np.fft.irfft(np.fft.rfft(x, n, axis=-1) * np.fft.rfft(ir, n), n, axis=-1)
    return x + voice.wet * wet[..., : x.shape[-1]]


def render_voiced_audio(spec: ClipSpec, cfg: RenderConfig, voice: Voice) -> np.ndarray:
    """The clip's audio track in its voice, float32 (C, N) in [-1, 1]."""
    rng = np.random.default_rng([voice.timbre_seed, spec.noise_seed, 8])
    channels = 2 if cfg.stereo else 1
    mix = np.zeros((channels, cfg.num_samples))
    for s in spec.sources:
        if not s.audible:
            continue
        track = voiced_track(s, cfg, voice, rng)
        mix += _pan(track, s, cfg) if cfg.stereo else track[None]
    mix = _reverb(_eq(mix, cfg.sample_rate, voice), cfg.sample_rate, voice, rng) * voice.gain
    amb = voiced_ambience(spec.ambience, voice.ambience_recipe, cfg, rng)
    mix += amb[None] * (math.sqrt(0.5) if cfg.stereo else 1.0)
    peak = np.abs(mix).max()
    if peak > 0.95:
        mix *= 0.95 / peak
    return mix.astype(np.float32)
