"""Sound: each audible source's events synthesised at their exact onsets, plus the ambience.

Small sources sound higher and large ones lower (about an octave apart); the engine's hum follows
its speed; a stereo track pans each source with its position on screen.
"""

from __future__ import annotations

import math

import numpy as np

from training.synthav.render import engine_speed, x_fraction
from training.synthav.world import ClipSpec, RenderConfig, Source, SourceSpec

# Base frequency (Hz) of each source for a small glyph; a large glyph is an octave lower.
BASE_HZ = {
    Source.BALL: 220.0,
    Source.BELL: 1300.0,
    Source.DRUM: 150.0,
    Source.BIRD: 2800.0,
    Source.CLOCK: 3600.0,
    Source.ENGINE: 110.0,
    Source.SIREN: 900.0,
}
LARGE_FACTOR = 0.5


def _fft_filter(x: np.ndarray, sr: int, low: float, high: float) -> np.ndarray:
    """Brick-wall band-pass in the frequency domain (fast for long ambience noise)."""
    spec = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1 / sr)
    spec[(freqs < low) | (freqs > high)] = 0
    return np.fft.irfft(spec, n=len(x))


def _event_sound(kind: Source, f0: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """The sound one event makes, starting at sample 0."""

    def t_of(seconds: float) -> np.ndarray:
        return np.arange(int(seconds * sr)) / sr

    if kind is Source.BALL:  # dull thud: low-passed noise burst over a short low sine
        t = t_of(0.12)
        noise = _fft_filter(rng.normal(0, 1, t.size), sr, 0, f0 * 4)
        body = np.sin(2 * math.pi * f0 * t)
        return (0.5 * noise / (np.abs(noise).max() + 1e-9) + 0.7 * body) * np.exp(-t / 0.03)
    if kind is Source.BELL:  # ding: inharmonic partials, long decay
        t = t_of(1.2)
        partials = [(1.0, 1.0), (2.76, 0.5), (5.40, 0.3), (8.93, 0.15)]
        tone = sum(a * np.sin(2 * math.pi * f0 * r * t) for r, a in partials if f0 * r < sr / 2.2)
        return tone * np.exp(-t / 0.35) * np.minimum(1.0, t / 0.002)
    if kind is Source.DRUM:  # boom: falling sine sweep
        t = t_of(0.35)
        freq = f0 * (1 + np.exp(-t / 0.04))
        phase = 2 * math.pi * np.cumsum(freq) / sr
        return np.sin(phase) * np.exp(-t / 0.12) * np.minimum(1.0, t / 0.002)
    if kind is Source.BIRD:  # chirp: fast rising sweep
        t = t_of(0.11)
        freq = f0 * (1 + 0.8 * t / t[-1])
        phase = 2 * math.pi * np.cumsum(np.minimum(freq, sr / 2.2)) / sr
        return np.sin(phase) * np.sin(math.pi * t / t[-1]) ** 0.5
    if kind is Source.CLOCK:  # tick: a very short click
        t = t_of(0.012)
        return np.sin(2 * math.pi * min(f0, sr / 2.5) * t) * np.exp(-t / 0.002)
    raise ValueError(f"{kind} has no discrete events")


def _engine(s: SourceSpec, f0: float, cfg: RenderConfig) -> np.ndarray:
    """Continuous sawtooth hum with vibrato; loudness (and a little pitch) follow the speed."""
    sr, n = cfg.sample_rate, cfg.num_samples
    t = np.arange(n) / sr
    speed = engine_speed(s, t, cfg.duration_s)
    freq = f0 * (0.85 + 0.15 * speed) * (1 + 0.01 * np.sin(2 * math.pi * 5.5 * t))
    phase = np.cumsum(freq) / sr
    saw = 2 * (phase - np.floor(phase + 0.5))
    saw = _fft_filter(saw, sr, 20, 8 * f0)  # soften the buzz
    level = 0.55 if s.tempo == "fast" else 0.28
    return level * saw * speed / speed.max()


def _siren(s: SourceSpec, f0: float, cfg: RenderConfig) -> np.ndarray:
    """Two alternating tones; the tone switches at each event."""
    sr, n = cfg.sample_rate, cfg.num_samples
    t = np.arange(n) / sr
    switches = np.searchsorted(np.asarray(s.events), t, side="right")
    freq = np.where(switches % 2 == 0, f0, f0 * 4 / 3)
    phase = 2 * math.pi * np.cumsum(freq) / sr
    ramp = np.minimum(1.0, t / 0.01)
    return 0.3 * np.sin(phase) * ramp


def source_track(s: SourceSpec, cfg: RenderConfig, rng: np.random.Generator) -> np.ndarray:
    """One source's mono track, float64 (N,)."""
    f0 = BASE_HZ[s.kind] * (LARGE_FACTOR if s.size == "large" else 1.0) * s.pitch
    if s.kind is Source.ENGINE:
        return _engine(s, f0, cfg)
    if s.kind is Source.SIREN:
        return _siren(s, f0, cfg)
    n = cfg.num_samples
    track = np.zeros(n)
    for e in s.events:
        start = round(e * cfg.sample_rate)
        if start >= n:
            continue
        sound = _event_sound(s.kind, f0, cfg.sample_rate, rng) * rng.uniform(0.8, 1.0)
        end = min(n, start + sound.size)
        track[start:end] += 0.5 * sound[: end - start] / (np.abs(sound).max() + 1e-9)
    return track


def ambience_track(kind: str, cfg: RenderConfig, rng: np.random.Generator) -> np.ndarray:
    sr, n = cfg.sample_rate, cfg.num_samples
    if kind == "quiet":  # never digital zero: a real room has a noise floor
        return rng.normal(0, 10 ** (-66 / 20), n)
    if kind == "rain":  # hiss plus sparse droplets
        hiss = _fft_filter(rng.normal(0, 1, n), sr, 1500, sr / 2)
        hiss *= 0.035 / (hiss.std() + 1e-12)
        drops = np.zeros(n)
        idx = rng.integers(0, n, size=int(40 * cfg.duration_s))
        drops[idx] = rng.uniform(-0.12, 0.12, size=idx.size)
        return hiss + _fft_filter(drops, sr, 2000, sr / 2)
    if kind == "wind":  # low rumble that swells and fades
        rumble = _fft_filter(rng.normal(0, 1, n), sr, 30, 500)
        t = np.arange(n) / sr
        swell = 0.6 + 0.4 * np.sin(2 * math.pi * rng.uniform(0.1, 0.3) * t + rng.uniform(0, 6.28))
        return 0.05 * swell * rumble / (rumble.std() + 1e-12)
    raise ValueError(f"unknown ambience {kind!r}")


def _pan(track: np.ndarray, s: SourceSpec, cfg: RenderConfig) -> np.ndarray:
    """Equal-power pan following the source's position on screen; off-screen sources sit centre."""
    if not s.visible:
        pos = np.full(track.size, 0.5)
    else:
        t = np.arange(track.size) / cfg.sample_rate
        step = max(1, cfg.sample_rate // 100)  # position changes slowly: evaluate at 100 Hz
        coarse = np.array([x_fraction(s, float(u), cfg.duration_s) for u in t[::step]])
        pos = np.interp(t, t[::step], coarse)
    angle = np.clip(pos, 0, 1) * math.pi / 2
    return np.stack([track * np.cos(angle), track * np.sin(angle)])


def render_audio(spec: ClipSpec, cfg: RenderConfig) -> np.ndarray:
    """The clip's audio track, float32 (C, N) in [-1, 1]; a misaligned clip carries its donor's."""
    clip = spec.audio_clip
    if clip.variety is not None:
        # Imported here: the varied voices build on this module's fixed ones.
        from training.synthav.voices import render_voiced_audio

        return render_voiced_audio(clip, cfg, clip.variety.voice)
    rng = np.random.default_rng([clip.noise_seed, 7])
    channels = 2 if cfg.stereo else 1
    mix = np.zeros((channels, cfg.num_samples))
    for s in clip.sources:
        if not s.audible:
            continue
        track = source_track(s, cfg, rng)
        mix += _pan(track, s, cfg) if cfg.stereo else track[None]
    amb = ambience_track(clip.ambience, cfg, rng)
    mix += amb[None] * (math.sqrt(0.5) if cfg.stereo else 1.0)
    peak = np.abs(mix).max()
    if peak > 0.95:
        mix *= 0.95 / peak
    return mix.astype(np.float32)
