"""Sound is resampled in runs of frames gathered in a FIFO, not a frame at a time: the samples
must be the same, bit for bit, however the decoded frames are cut into runs."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

import models._decode as decode_module
from models.media import decode, decode_audio
from tests.models.conftest import MediaFactory, pcm16_wav


def _noise(seconds: float, rate: int, channels: int, seed: int = 0) -> np.ndarray:
    """(channels, n) float32: a tone per channel under noise, so that every sample matters."""
    n = round(seconds * rate)
    t = np.arange(n) / rate
    rng = np.random.default_rng(seed)
    tones = np.stack([np.sin(2 * np.pi * (330 + 110 * c) * t) for c in range(channels)])
    return (0.3 * tones + 0.05 * rng.standard_normal((channels, n))).astype(np.float32)


# (file name, muxer, audio codec, sample rate, channels): the codecs' own decoded formats
# (planar float for AAC and Opus, s16 / s32 for FLAC and PCM), rates that resample by
# simple and awkward ratios, mono to 7.1.
FILES = [
    ("aac48.mp4", None, "aac", 48_000, 2),
    ("aac16.mp4", None, "aac", 16_000, 1),
    ("opus.webm", "webm", "libopus", 48_000, 2),
    ("flac.mkv", None, "flac", 44_100, 1),
    ("surround.m4a", "ipod", "aac", 48_000, 8),
]


def _write(media: MediaFactory, name: str, muxer: str | None, codec: str, rate: int, ch: int):
    samples = _noise(2.5, rate, ch)
    return media.av(
        name, container=muxer, video=None, audio=codec, rate=rate, channels=ch, samples=samples
    )


@pytest.mark.parametrize(("name", "muxer", "codec", "rate", "channels"), FILES)
def test_samples_do_not_depend_on_the_runs(
    media: MediaFactory, monkeypatch, name, muxer, codec, rate, channels
) -> None:
    path = _write(media, name, muxer, codec, rate, channels)
    by_run = {}
    # 1: every frame alone (how sound was resampled before); 777: runs cut inside frames'
    # worth of samples; the default; 1 << 40: the whole file at the end.
    for run in (1, 777, decode_module._RESAMPLE_RUN, 1 << 40):
        monkeypatch.setattr(decode_module, "_RESAMPLE_RUN", run)
        by_run[run], out_rate = decode_audio(path)
        assert out_rate == 16_000
    one = by_run[1]
    assert len(one) == pytest.approx(2.5 * 16_000, abs=1_100) and np.abs(one).max() > 0.1
    for run, samples in by_run.items():
        assert samples.dtype == np.float32 and np.array_equal(samples, one), run


def _frame_by_frame(path: Path) -> np.ndarray:
    """PyAV's decode and resampler a frame at a time, timestamps kept, a new resampler where
    the sound's format changes: independent of ours."""
    out: list[np.ndarray] = []
    setup, resampler = None, None
    with av.open(str(path)) as container:
        for frame in container.decode(container.streams.audio[0]):
            if (frame.format.name, frame.layout.name, frame.sample_rate) != setup:
                if resampler is not None:
                    out += [f.to_ndarray()[0].copy() for f in resampler.resample(None)]
                setup = (frame.format.name, frame.layout.name, frame.sample_rate)
                resampler = av.AudioResampler(
                    format="flt", layout="mono", rate=16_000, options={"rematrix_maxval": "1.0"}
                )
            out += [f.to_ndarray()[0].copy() for f in resampler.resample(frame)]
    assert resampler is not None
    out += [f.to_ndarray()[0].copy() for f in resampler.resample(None)]
    return np.concatenate(out)


@pytest.mark.parametrize(("rate", "channels"), [(44_100, 2), (22_050, 1), (48_000, 1)])
def test_wav_samples_are_those_of_a_frame_at_a_time(media: MediaFactory, rate, channels) -> None:
    """A WAV starts at 0, so nothing is placed: the whole signal is the resampler's output."""
    path = media.bytes("pcm.wav", pcm16_wav(_noise(3.0, rate, channels, seed=1), rate=rate))
    samples, _ = decode_audio(path)
    assert np.array_equal(samples, _frame_by_frame(path))


def test_runs_end_where_the_sound_changes_format(media: MediaFactory, monkeypatch) -> None:
    """Two ADTS streams back to back, 22.05 kHz mono then 44.1 kHz stereo: the decoder's
    frames change format mid-stream, and the run waiting in the FIFO is resampled by the old
    setup before the new one starts, whatever the run size."""
    first, second = (
        media.av(
            name,
            container="adts",
            video=None,
            audio="aac",
            rate=rate,
            channels=channels,
            samples=_noise(1.0, rate, channels, seed=channels + 1),
        )
        for name, rate, channels in (("a.aac", 22_050, 1), ("b.aac", 44_100, 2))
    )
    path = media.bytes("ab.aac", first.read_bytes() + second.read_bytes())
    with av.open(str(path)) as container:
        setups = {f.sample_rate for f in container.decode(container.streams.audio[0])}
    assert setups == {22_050, 44_100}
    reference = _frame_by_frame(path)
    for run in (1, 5_000, decode_module._RESAMPLE_RUN, 1 << 40):
        monkeypatch.setattr(decode_module, "_RESAMPLE_RUN", run)
        assert np.array_equal(decode_audio(path)[0], reference), run


def test_sound_with_pictures_is_the_sound_alone(media: MediaFactory) -> None:
    path = media.av("both.mp4", audio="aac", rate=48_000, channels=2, duration=2.0)
    both = decode(path, fps=4.0, size=(32, 32))
    assert both.audio is not None and np.array_equal(both.audio, decode_audio(path)[0])
