"""Training-time augmentation of decoded clips: the same world, shown and heard another way.

A model trained on one renderer learns its pixels and its waveforms (issue: "a learned space that
transfers"). Re-rendering is the strong fix; this is the cheap one, applied to the cached decoded
frames and waveforms at batch time, so the feature cache stays valid and every epoch sees each clip
differently.

What changes is only what the SynthAV world leaves open (SYNTHAV.md). Never touched: a glyph's hue
(colour is an attribute), left/right (direction is one: no flips), day vs night (brightness moves
within a range that keeps a light background light), pitch (size is heard as pitch: no resampling
that shifts it) and timing (event times are what sequences must learn: no time stretch).

Visual, per clip (one draw for all its frames, like one camera): a random crop rescaled to the
model's size (zoom, re-framing, aspect), brightness, contrast and gamma, a small white-balance gain
per channel, a smooth lighting gradient, blur, sensor noise. Audio, per clip: gain, a random smooth
EQ curve, band-limiting (a low sample rate upstream), room reverb, background noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of each transform; `p` is the chance that a clip is augmented at all."""

    p: float = 0.8
    visual: bool = True  # augment the pictures
    audio: bool = True  # augment the sound
    # visual
    crop_scale: tuple[float, float] = (0.6, 1.0)  # share of the frame's area kept
    crop_aspect: tuple[float, float] = (0.75, 1.33)
    brightness: tuple[float, float] = (0.8, 1.2)
    contrast: tuple[float, float] = (0.7, 1.3)
    gamma: tuple[float, float] = (0.8, 1.25)
    channel_gain: float = 0.08  # ± per channel: white balance, never a hue change
    gradient: float = 25.0  # ± levels of a linear lighting ramp across the frame
    blur_p: float = 0.3
    blur_sigma: tuple[float, float] = (0.4, 1.2)  # in pixels of the model's frame
    noise_p: float = 0.5
    noise_sigma: tuple[float, float] = (2.0, 8.0)  # in 0-255 levels
    # audio
    gain_db: tuple[float, float] = (-9.0, 6.0)
    eq_db: float = 6.0  # ± at each of a few log-spaced bands, interpolated smoothly
    lowpass_p: float = 0.3
    lowpass_hz: tuple[float, float] = (3_500.0, 7_000.0)
    reverb_p: float = 0.3
    reverb_rt60_s: tuple[float, float] = (0.1, 0.6)
    reverb_wet: tuple[float, float] = (0.1, 0.4)
    noise_snr_db: tuple[float, float] = (12.0, 40.0)
    audio_noise_p: float = 0.5

    def __post_init__(self) -> None:
        if not 0 <= self.p <= 1:
            raise ValueError(f"p must be in [0, 1], got {self.p}")
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_scale must be within (0, 1], got {self.crop_scale}")


def level_only(gain_db: tuple[float, float] = (-24.0, 6.0), p: float = 0.8) -> AugmentConfig:
    """Only the recording level changes (the pictures and the sound's colour stay): how loud a
    file is recorded is not part of the world a clip shows, yet a model trained on one synthesiser's
    levels learns them (docs/quality-log.md, "A learned space that transfers"). Gains above
    what fits are taken back to full scale, as a recorder's limiter would."""
    return AugmentConfig(
        p=p,
        visual=False,
        gain_db=gain_db,
        eq_db=0.0,
        lowpass_p=0.0,
        reverb_p=0.0,
        audio_noise_p=0.0,
    )


def level_and_band(p: float = 0.8) -> AugmentConfig:
    """`level_only`, and a share of the clips heard through a narrower band, as a file recorded
    or kept at a low sample rate is (8 kHz keeps 4 kHz of it, 11.025 kHz 5.5 kHz): the band
    limits of the full augmentation (`AugmentConfig.lowpass_p`, `lowpass_hz`), nothing else of
    it. A small source's pitch and a chirp's sweep are partly above those bands, so a model that
    never heard a band-limited file takes one for another sound (measured on the re-encoded val
    clips: the 8 kHz PCM files' text→audio R@10 0.616 as made → 0.209)."""
    full = AugmentConfig()
    return replace(level_only(p=p), lowpass_p=full.lowpass_p, lowpass_hz=full.lowpass_hz)


AUGMENTATIONS = ("level", "band", "full", "audio", "visual", "none")


def named(name: str) -> AugmentConfig | None:
    """The augmentation called `name`: "level" (`level_only`), "band" (`level_and_band`), "full"
    (every transform, both streams), "audio" or "visual" (every transform, one stream), "none"."""
    if name not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be one of {', '.join(AUGMENTATIONS)}, not {name!r}")
    if name == "none":
        return None
    if name == "level":
        return level_only()
    if name == "band":
        return level_and_band()
    return AugmentConfig(visual=name != "audio", audio=name != "visual")


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


# --- pictures ----------------------------------------------------------------------------------


def _crop_box(rng: np.random.Generator, h: int, w: int, cfg: AugmentConfig) -> tuple[int, ...]:
    area = h * w * _uniform(rng, cfg.crop_scale)
    aspect = math.exp(_uniform(rng, (math.log(cfg.crop_aspect[0]), math.log(cfg.crop_aspect[1]))))
    ch = min(h, max(8, round(math.sqrt(area / aspect))))
    cw = min(w, max(8, round(math.sqrt(area * aspect))))
    top = int(rng.integers(0, h - ch + 1))
    left = int(rng.integers(0, w - cw + 1))
    return top, left, ch, cw


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (T, 3, H, W)."""
    radius = max(1, math.ceil(2.5 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    across = k.view(1, 1, 1, -1).expand(3, 1, 1, -1)
    down = k.view(1, 1, -1, 1).expand(3, 1, -1, 1)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), across, groups=3)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), down, groups=3)


def augment_frames(
    frames: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig = AugmentConfig()
) -> np.ndarray:
    """uint8 (T, H, W, 3) → uint8 (T, H, W, 3), the same transform for every frame of the clip."""
    if not cfg.visual or len(frames) == 0 or rng.random() >= cfg.p:
        return frames
    _, h, w, _ = frames.shape
    top, left, ch, cw = _crop_box(rng, h, w, cfg)
    crop = np.array(frames[:, top : top + ch, left : left + cw])  # a copy: the cache is read-only
    x = torch.from_numpy(crop)
    x = x.permute(0, 3, 1, 2).float()  # (T, 3, ch, cw)
    if (ch, cw) != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    x = x / 255.0
    gain = 1 + torch.from_numpy(rng.uniform(-cfg.channel_gain, cfg.channel_gain, 3)).float()
    x = x * _uniform(rng, cfg.brightness) * gain.view(1, 3, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * _uniform(rng, cfg.contrast) + mean).clamp(0, 1)
    x = x ** _uniform(rng, cfg.gamma)
    angle = rng.uniform(0, 2 * math.pi)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    ramp = (math.cos(angle) * xs + math.sin(angle) * ys) * rng.uniform(0, cfg.gradient) / 255.0
    x = x + ramp.view(1, 1, h, w)
    if rng.random() < cfg.blur_p:
        x = _blur(x, _uniform(rng, cfg.blur_sigma))
    if rng.random() < cfg.noise_p:
        sigma = _uniform(rng, cfg.noise_sigma) / 255.0
        noise = torch.from_numpy(rng.standard_normal(x.shape, dtype=np.float32))
        x = x + sigma * noise
    out = (x.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8)
    return out.permute(0, 2, 3, 1).contiguous().numpy()


# --- frame rate --------------------------------------------------------------------------------

# The lower frame rates a clip is shown at, as shares of the grid's (8 and 10 fps on a 12 fps
# grid): the robustness set's and the foreign corpus's slowest files.
SLOWER_RATES = (2 / 3, 5 / 6)


def slower_file(frames: int, rate: float, phase: float) -> tuple[np.ndarray, np.ndarray]:
    """How `frames` grid frames look as a file at `rate` (a share of the grid's frame rate, in
    (0, 1]) decoded onto the grid (`models._decode._VideoSampler`'s sample and hold): `shown[k]`,
    the grid frame the file's frame k shows (the scene at k / rate + `phase`, `phase` in [0, 1)
    grid steps, never past the last frame), and `held[j]`, the file frame grid frame j holds (the
    last one at or before its time). `shown[held]` re-orders a clip's frames as such a file
    would show them: some held over two grid steps, some never shown."""
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"rates are shares of the grid's frame rate, in (0, 1]: {rate}")
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    k = np.arange(int(np.floor((frames - 1) * rate)) + 2)
    shown = np.minimum(np.floor(k / rate + phase).astype(np.int64), frames - 1)
    held = np.floor(np.arange(frames) * rate + 1e-9).astype(np.int64)
    return shown, held


def show_slower(
    frames: np.ndarray,
    rng: np.random.Generator,
    share: float,
    rates: tuple[float, ...] = SLOWER_RATES,
) -> np.ndarray:
    """uint8 (T, H, W, 3) grid frames; with probability `share`, as a file at a lower frame rate
    (a random one of `rates`, at a random phase) decoded onto the grid shows them (`slower_file`),
    a new array; else the same array. The sound is not touched: events happen when they
    happen, and a slower file shows them late or not at all."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share}")
    if len(frames) < 2 or share == 0.0 or rng.random() >= share:
        return frames
    rate = float(rng.choice(rates))
    shown, held = slower_file(len(frames), rate, float(rng.uniform(0.0, 1.0)))
    return np.ascontiguousarray(frames[shown[held]])


# --- sound -------------------------------------------------------------------------------------


def _eq_curve(
    rng: np.random.Generator, n_bins: int, sample_rate: int, cfg: AugmentConfig
) -> np.ndarray:
    """A smooth random gain per FFT bin: ± eq_db at 6 log-spaced bands, interpolated in log f."""
    bands = np.geomspace(60.0, sample_rate / 2, 6)
    gains_db = rng.uniform(-cfg.eq_db, cfg.eq_db, len(bands))
    freqs = np.linspace(0, sample_rate / 2, n_bins)
    db = np.interp(np.log(np.maximum(freqs, 1.0)), np.log(bands), gains_db)
    return (10 ** (db / 20)).astype(np.float32)


def augment_audio(
    wave: np.ndarray,
    sample_rate: int,
    rng: np.random.Generator,
    cfg: AugmentConfig = AugmentConfig(),
) -> np.ndarray:
    """float32 (N,) → float32 (N,): same length, same event times, another room and microphone."""
    if not cfg.audio or wave.size == 0 or rng.random() >= cfg.p:
        return wave
    x = wave.astype(np.float64)
    n = x.size
    size = 1 << (n - 1).bit_length()
    reverb = rng.random() < cfg.reverb_p
    if reverb:  # room: exponentially decaying noise, convolved (its tail cut at the clip's end)
        rt60 = _uniform(rng, cfg.reverb_rt60_s)
        length = min(n, int(rt60 * sample_rate))
        tail = rng.standard_normal(length) * np.exp(-6.9 * np.arange(length) / max(1, length))
        tail /= np.sqrt((tail**2).sum()) + 1e-12
        size = 1 << (n + length - 1).bit_length()
    if reverb or cfg.eq_db or cfg.lowpass_p:
        spectrum = np.fft.rfft(x, size)
        spectrum *= _eq_curve(rng, spectrum.size, sample_rate, cfg)
        if rng.random() < cfg.lowpass_p:
            cutoff = _uniform(rng, cfg.lowpass_hz)
            freqs = np.fft.rfftfreq(size, 1 / sample_rate)
            spectrum *= 1 / np.sqrt(1 + (freqs / cutoff) ** 16)  # 8th-order Butterworth
        if reverb:
            wet = _uniform(rng, cfg.reverb_wet)
            spectrum = spectrum * ((1 - wet) + wet * np.fft.rfft(tail, size))
        x = np.fft.irfft(spectrum, size)[:n]
    else:
        # Nothing changes the sound's colour (`level_only`): no round trip through the FFT, and
        # the same random draws as that path, so both give the same sound (to rounding).
        _eq_curve(rng, 1, sample_rate, cfg)
        rng.random()
    if rng.random() < cfg.audio_noise_p:
        power = float(np.mean(x**2))
        if power > 0:
            snr = 10 ** (_uniform(rng, cfg.noise_snr_db) / 10)
            noise = rng.standard_normal(n)
            if rng.random() < 0.5:  # pink: 1/f power, as much background noise is
                spec = np.fft.rfft(noise)
                spec /= np.sqrt(np.maximum(np.arange(spec.size), 1.0))
                noise = np.fft.irfft(spec, n)
            noise *= math.sqrt(power / snr / (np.mean(noise**2) + 1e-20))
            x = x + noise
    x *= 10 ** (_uniform(rng, cfg.gain_db) / 20)
    peak = float(np.abs(x).max())
    if peak > 1.0:  # a real recorder would clip; keep the sound, not the overload
        x /= peak
    return x.astype(np.float32)
