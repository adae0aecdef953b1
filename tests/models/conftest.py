"""Media files generated on the fly with PyAV and numpy: no fixtures on disk, no network.

Video frames carry their own index in binary (7 vertical stripes in the top half), so a test
can tell which source frame the decoder picked for each output time. A "flash" frame is all
white and the audio has a "click" (a short full-scale burst) so A/V sync can be measured.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

FAST_VIDEO_OPTIONS = {
    "libx264": {"preset": "ultrafast"},
    "h264": {"preset": "ultrafast"},
    "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8"},
    "libvpx": {"deadline": "realtime", "cpu-used": "8"},
    "libsvtav1": {"preset": "12"},
    "libx265": {"preset": "ultrafast", "x265-params": "log-level=none"},
}
INDEX_BITS = 7


def index_frame(i: int, height: int = 48, width: int = 64) -> np.ndarray:
    """RGB frame whose top half spells `i` in 7 stripes (bit k bright = 1)."""
    img = np.full((height, width, 3), 32, np.uint8)
    stripe = width // 8
    for k in range(INDEX_BITS):
        if (i >> k) & 1:
            img[: height // 2, k * stripe : (k + 1) * stripe] = 224
    img[height // 2 :] = 128
    return img


def read_index(img: np.ndarray) -> int:
    """Inverse of `index_frame` for a decoded frame of the same size."""
    height, width = img.shape[:2]
    stripe = width // 8
    row = img[height // 4].mean(axis=1)
    return sum(1 << k for k in range(INDEX_BITS) if row[k * stripe + stripe // 2] > 128)


Draw = Callable[[int, float, int, int], np.ndarray]  # (index, time, height, width) -> RGB


def flash_or_index(flash_at: float | None, fps: float) -> Draw:
    """Index frames, except an all-white frame at `flash_at` seconds."""

    def draw(i: int, t: float, height: int, width: int) -> np.ndarray:
        if flash_at is not None and abs(t - flash_at) < 0.5 / fps:
            return np.full((height, width, 3), 255, np.uint8)
        return index_frame(i, height, width)

    return draw


def tone(
    duration: float,
    rate: int,
    channels: int = 1,
    click_at: float | None = 2.0,
    amplitude: float = 0.1,
) -> np.ndarray:
    """(channels, n) float32: a 440 Hz tone, plus a 10 ms full-scale click at `click_at`."""
    n = round(duration * rate)
    x = (amplitude * np.sin(2 * np.pi * 440 * np.arange(n) / rate)).astype(np.float32)
    if click_at is not None:
        start = round(click_at * rate)
        x[start : start + rate // 100] = 0.9
    return np.tile(x, (channels, 1))


def write_media(
    path: Path,
    *,
    container: str | None = None,
    video: str | None = "libx264",
    audio: str | None = "aac",
    duration: float = 3.0,
    fps: int = 25,
    size: tuple[int, int] = (48, 64),
    rate: int = 48_000,
    channels: int = 1,
    samples: np.ndarray | None = None,
    draw: Draw | None = None,
    frame_times: Sequence[float] | None = None,
    start: float = 0.0,
    flash_at: float | None = 2.0,
    click_at: float | None = 2.0,
    container_options: dict[str, str] | None = None,
    pix_fmt: str = "yuv420p",
    file: object = None,
) -> Path:
    """Write a file with one video and/or one audio stream. `frame_times` (seconds) makes VFR
    video; `start` shifts every timestamp (MPEG-TS style non-zero start)."""
    out = av.open(
        file if file is not None else str(path),
        "w",
        format=container,
        options=container_options or {},
    )
    height, width = size
    draw = draw or flash_or_index(flash_at, fps)
    if video:
        vs = out.add_stream(video, rate=fps, options=FAST_VIDEO_OPTIONS.get(video, {}))
        vs.width, vs.height = width, height
        vs.pix_fmt = "yuvj420p" if video == "mjpeg" else pix_fmt  # MJPEG wants full range
        vs.time_base = Fraction(1, 1000) if frame_times is not None else Fraction(1, fps)
        vs.codec_context.time_base = vs.time_base  # else VFR times snap to the 1/fps grid
    if audio:
        layout = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}[channels]
        # The native Vorbis encoder is flagged experimental; it is fine for test tones.
        aus = out.add_stream(audio, rate=rate, layout=layout, options={"strict": "experimental"})
        aus.time_base = Fraction(1, rate)
    if video:
        times = frame_times
        if times is None:
            times = [i / fps for i in range(round(duration * fps))]
        for i, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(draw(i, t, height, width), format="rgb24")
            frame.time_base = vs.time_base
            frame.pts = round((t + start) / vs.time_base)
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
    if audio:
        x = samples if samples is not None else tone(duration, rate, channels, click_at)
        step = 1024
        for s in range(0, x.shape[1], step):
            # Packed samples: PyAV mishandles planar frames with 8 channels (see models.media).
            chunk = np.ascontiguousarray(x[:, s : s + step].T).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout=aus.layout.name)
            frame.sample_rate = rate
            frame.time_base = Fraction(1, rate)
            frame.pts = s + round(start * rate)
            out.mux(aus.encode(frame))
        out.mux(aus.encode(None))
    out.close()
    return path


def wav_bytes(
    payload: bytes,
    *,
    rate: int = 16_000,
    channels: int = 1,
    bits: int = 16,
    fmt_tag: int = 1,
    data_size: int | None = None,
    fact_samples: int | None = None,
) -> bytes:
    """A RIFF/WAVE file written by hand so headers can lie (rate, size, channel count, length:
    FFmpeg trusts a `fact` sample count when the data chunk runs past the end of the file)."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * block, block, bits)
    size = len(payload) if data_size is None else data_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    if fact_samples is not None:
        body += b"fact" + struct.pack("<II", 4, fact_samples)
    body += b"data" + struct.pack("<I", size) + payload
    return b"RIFF" + struct.pack("<I", min(len(body), 0xFFFFFFFF)) + body


def float_wav(x: np.ndarray, rate: int = 16_000) -> bytes:
    """IEEE float WAV (format tag 3) of a mono float32 signal, NaN/Inf allowed."""
    return wav_bytes(x.astype("<f4").tobytes(), rate=rate, bits=32, fmt_tag=3)


def pcm16_wav(x: np.ndarray, rate: int = 16_000) -> bytes:
    """16-bit PCM WAV of `(channels, n)` float samples in [-1, 1]."""
    x = np.atleast_2d(x)
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2").T.tobytes()
    return wav_bytes(pcm, rate=rate, channels=x.shape[0])


class MediaFactory:
    """Writes generated media into a test's temporary directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> Path:
        return self.root / name

    def av(self, name: str, **kwargs: object) -> Path:
        return write_media(self.root / name, **kwargs)  # type: ignore[arg-type]

    def bytes(self, name: str, data: bytes) -> Path:
        path = self.root / name
        path.write_bytes(data)
        return path


@pytest.fixture
def media(tmp_path: Path) -> MediaFactory:
    return MediaFactory(tmp_path)
