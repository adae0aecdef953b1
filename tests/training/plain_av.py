"""Decoding and measuring with plain PyAV and numpy, independent of the project's own decoder.

The SynthAV tests check structure from what a file really holds, not from generator internals, so
they must not trust `models.media` (which has its own tests) or the generator's arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np


@dataclass
class Plain:
    frames: np.ndarray  # uint8 (T, H, W, 3)
    fps: float
    audio: np.ndarray  # float32 (C, N)
    sample_rate: int
    video_codec: str
    audio_codec: str
    duration_s: float


def decode_plain(path: str | Path) -> Plain:
    with av.open(str(path)) as container:
        vstream = container.streams.video[0]
        astream = container.streams.audio[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(vstream)]
        fps = float(vstream.average_rate)
        duration = container.duration / 1e6 if container.duration else float("nan")
        vcodec, acodec = vstream.codec_context.name, astream.codec_context.name
    with av.open(str(path)) as container:
        astream = container.streams.audio[0]
        rate = astream.codec_context.sample_rate
        layout = astream.codec_context.layout.name
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        chunks = []
        for frame in container.decode(astream):
            chunks += [g.to_ndarray() for g in resampler.resample(frame)]
        chunks += [g.to_ndarray() for g in resampler.resample(None)]
    return Plain(
        frames=np.stack(frames),
        fps=fps,
        audio=np.concatenate(chunks, axis=1).astype(np.float32),
        sample_rate=rate,
        video_codec=vcodec,
        audio_codec=acodec,
        duration_s=duration,
    )


def audio_onsets(audio: np.ndarray, sr: int, hop_s: float = 0.002, jump: float = 1.0) -> np.ndarray:
    """Onset times (s): where short-time log energy jumps above what came just before.

    The energy at hop k is compared with the loudest of the hops 6-20 ms earlier (skipping the last
    few, which a fast attack or codec pre-echo already lifts). `jump` is in natural-log RMS units
    (1.0 ≈ x2.7 louder), so a new strike is found even while an earlier bell still rings.
    """
    mono = audio.mean(axis=0) if audio.ndim == 2 else audio
    hop = max(1, int(hop_s * sr))
    n = len(mono) // hop
    rms = np.sqrt((mono[: n * hop].reshape(n, hop) ** 2).mean(axis=1)) + 1e-5
    log = np.log(rms)
    onsets: list[float] = []
    back, skip = int(0.02 / hop_s), int(0.006 / hop_s)
    for k in range(back, n):
        if log[k] - log[k - back : k - skip].max() > jump and log[k] > np.log(0.01):
            t = k * hop / sr
            if not onsets or t - onsets[-1] > 0.15:
                # Refine: the first sample above a tenth of the new level, in the hops just before.
                lo = (k - skip) * hop
                seg = np.abs(mono[lo : (k + 2) * hop])
                first = np.flatnonzero(seg > 0.1 * seg.max())
                onsets.append((lo + (first[0] if first.size else 0)) / sr)
    return np.array(onsets)


def glyph_mask(frames: np.ndarray, threshold: float = 40.0) -> np.ndarray:
    """Pixels that stand out from their row: (T, H, W) bool.

    SynthAV-like backgrounds vary only vertically, so each row's median is the background.
    """
    f = frames.astype(np.float32)
    background = np.median(f, axis=2, keepdims=True)
    return np.abs(f - background).sum(axis=-1) > threshold


def frame_change(frames: np.ndarray) -> np.ndarray:
    """Mean absolute change from the previous frame, (T,) with 0 for the first frame."""
    f = frames.astype(np.float32)
    d = np.abs(np.diff(f, axis=0)).mean(axis=(1, 2, 3))
    return np.concatenate([[0.0], d])


def peaks(signal: np.ndarray, rel: float = 0.3, gap: int = 3) -> np.ndarray:
    """Indices of local maxima above `rel` of the maximum, at least `gap` apart."""
    thr = rel * signal.max()
    idx = []
    for k in range(len(signal)):
        lo, hi = max(0, k - 1), min(len(signal), k + 2)
        if (
            signal[k] >= thr
            and signal[k] == signal[lo:hi].max()
            and (not idx or k - idx[-1] >= gap)
        ):
            idx.append(k)
    return np.array(idx, dtype=int)


def spectral_centroid(audio: np.ndarray, sr: int) -> float:
    mono = audio.mean(axis=0) if audio.ndim == 2 else audio
    power = np.abs(np.fft.rfft(mono)) ** 2
    freqs = np.fft.rfftfreq(len(mono), 1 / sr)
    return float((freqs * power).sum() / power.sum())
