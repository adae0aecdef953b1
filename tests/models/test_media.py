"""Happy paths of models.media: formats, timing, sampling, resizing, resampling."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import av
import numpy as np
import pytest

from models.media import (
    MediaError,
    MediaErrorReason,
    MediaLimits,
    decode,
    decode_audio,
    decode_video,
    probe,
)
from tests.models.conftest import MediaFactory, pcm16_wav, read_index, tone

HAS_MP3_ENCODER = "libmp3lame" in av.codecs_available

# name, muxer, video encoder, audio encoder, expected (container, video codec, audio codec)
FORMATS = [
    ("a.mp4", None, "libx264", "aac", ("mov", "h264", "aac")),
    ("a.webm", None, "libvpx-vp9", "libopus", ("matroska", "vp9", "opus")),
    ("a.mkv", None, "mpeg4", "flac", ("matroska", "mpeg4", "flac")),
    ("a.avi", None, "mjpeg", "pcm_s16le", ("avi", "mjpeg", "pcm_s16le")),
    ("a.ts", "mpegts", "mpeg2video", "mp2", ("mpegts", "mpeg2video", "mp2")),
    ("a.wav", None, None, "pcm_s16le", ("wav", None, "pcm_s16le")),
    ("a.flac", None, None, "flac", ("flac", None, "flac")),
    pytest.param(
        "a.mp3",
        None,
        None,
        "libmp3lame",
        ("mp3", None, "mp3"),
        marks=pytest.mark.skipif(not HAS_MP3_ENCODER, reason="no libmp3lame in PyAV"),
    ),
    ("a.ogg", None, None, "libopus", ("ogg", None, "opus")),
    ("v.ogg", "ogg", None, "vorbis", ("ogg", None, "vorbis")),
    ("a.m4a", "ipod", None, "aac", ("mov", None, "aac")),
    ("a.aac", "adts", None, "aac", ("aac", None, "aac")),
    ("a.mov", None, "libx264", "aac", ("mov", "h264", "aac")),
    ("silent.mp4", None, "libx264", None, ("mov", "h264", None)),
]


@pytest.mark.parametrize(("name", "muxer", "vcodec", "acodec", "expected"), FORMATS)
def test_formats_decode(media: MediaFactory, name, muxer, vcodec, acodec, expected) -> None:
    rate = 44_100 if acodec in ("libmp3lame", "vorbis") else 48_000
    channels = 2 if acodec == "vorbis" else 1  # FFmpeg's own Vorbis encoder is stereo-only
    path = media.av(name, container=muxer, video=vcodec, audio=acodec, rate=rate, channels=channels)
    info = probe(path)
    container, vname, aname = expected
    assert info.container == container
    assert [s.codec for s in info.streams] == [c for c in (vname, aname) if c]
    assert info.has_video == (vname is not None) and info.has_audio == (aname is not None)

    out = decode(path, fps=4.0, size=None)
    assert abs(out.duration_s - 3.0) < 0.1
    if vname is None:
        assert out.frames is None and out.fps is None
    else:
        assert out.frames is not None and out.frames.dtype == np.uint8
        assert out.frames.shape == (12, 48, 64, 3) and out.fps == 4.0
        # Target j at t = j/4 shows source frame floor(25 t), give or take the audio's head
        # start (MPEG-TS keeps AAC priming samples); the flash at 2.0 s hides frame 50.
        for j, frame in enumerate(out.frames):
            if j != 8:
                assert abs(read_index(frame) - math.floor(j * 25 / 4)) <= 1
    if aname is None:
        assert out.audio is None and out.sample_rate is None
    else:
        assert out.audio is not None and out.audio.dtype == np.float32 and out.sample_rate == 16_000
        assert abs(len(out.audio) / 16_000 - 3.0) < 0.06
        assert 0.05 < np.abs(out.audio[:16_000]).max() < 0.2  # the 0.1 tone, not silence


@pytest.mark.parametrize(
    ("name", "encoder", "codec"),
    [("a.mp4", "libsvtav1", "av1"), ("b.mp4", "libx265", "hevc"), ("c.webm", "libvpx", "vp8")],
)
def test_modern_video_codecs(media: MediaFactory, name, encoder, codec) -> None:
    if encoder not in av.codecs_available:
        pytest.skip(f"PyAV has no {encoder} encoder")
    path = media.av(name, video=encoder, audio=None, size=(64, 64), duration=1.0, flash_at=None)
    assert [s.codec for s in probe(path).streams] == [codec]
    frames = decode_video(path, fps=5.0, size=None)
    assert [read_index(f) for f in frames] == [0, 5, 10, 15, 20]


@pytest.mark.skipif(not HAS_MP3_ENCODER, reason="no libmp3lame in PyAV")
def test_cover_art_is_not_video(media: MediaFactory) -> None:
    """An MP3 with an embedded picture: the picture is an "other" stream, audio decodes."""
    path = media.path("cover.mp3")
    jpeg = media.path("cover.jpg")
    with av.open(str(jpeg), "w", format="mjpeg") as out:
        stream = out.add_stream("mjpeg", rate=1)
        stream.width = stream.height = 16
        stream.pix_fmt = "yuvj420p"
        out.mux(stream.encode(av.VideoFrame(16, 16, "rgb24")))
        out.mux(stream.encode(None))
    with av.open(str(path), "w") as out:
        audio = out.add_stream("libmp3lame", rate=44_100, layout="mono")
        cover = out.add_stream("mjpeg")
        cover.width = cover.height = 16
        cover.pix_fmt = "yuvj420p"
        cover.disposition = av.stream.Disposition.attached_pic
        packet = av.Packet(jpeg.read_bytes())
        packet.stream, packet.pts, packet.dts = cover, 0, 0
        out.mux(packet)
        frame = av.AudioFrame.from_ndarray(tone(1.0, 44_100), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 44_100, 0
        out.mux(audio.encode(frame))
        out.mux(audio.encode(None))
    info = probe(path)
    assert [(s.kind, s.codec) for s in info.streams] == [("audio", "mp3"), ("other", "mjpeg")]
    out = decode(path)
    assert out.frames is None and abs(len(out.audio) / 16_000 - 1.0) < 0.1


def _flash_time(frames: np.ndarray, fps: float) -> float:
    bright = frames.reshape(len(frames), -1).mean(axis=1)
    assert bright.max() > 240
    return int(np.argmax(bright > 240)) / fps


def _click_time(audio: np.ndarray, rate: int) -> float:
    assert np.abs(audio).max() > 0.5
    return int(np.argmax(np.abs(audio) > 0.5)) / rate


@pytest.mark.parametrize(
    ("name", "muxer", "vcodec", "acodec", "start"),
    [
        ("aac.mp4", None, "libx264", "aac", 0.0),  # AAC priming must not shift the audio
        ("opus.webm", None, "libvpx-vp9", "libopus", 0.0),  # so must Opus pre-skip
        ("late.ts", "mpegts", "libx264", "aac", 1.4),  # MPEG-TS clock starts at 1.4 s
        ("mp2.ts", "mpegts", "mpeg2video", "mp2", 0.0),
    ],
)
def test_av_sync(media: MediaFactory, name, muxer, vcodec, acodec, start) -> None:
    path = media.av(name, container=muxer, video=vcodec, audio=acodec, start=start)
    out = decode(path, fps=25.0, size=(32, 32), fit="stretch")
    assert abs(out.duration_s - 3.0) < 0.1  # measured from the origin, not from 0
    one_frame = 1 / 25 + 1e-6
    assert abs(_flash_time(out.frames, 25.0) - 2.0) <= one_frame
    assert abs(_flash_time(out.frames, 25.0) - _click_time(out.audio, 16_000)) <= one_frame
    # Separate calls share the timeline, so their results line up with each other.
    audio, rate = decode_audio(path)
    frames = decode_video(path, fps=25.0, size=(32, 32), fit="stretch")
    assert abs(_flash_time(frames, 25.0) - _click_time(audio, rate)) <= one_frame


PRIMED = [
    ("aac.mkv", None, "libx264", "aac"),
    ("aac.avi", None, "mjpeg", "aac"),
    ("aac.mp4", None, "libx264", "aac"),
    pytest.param(
        "mp3.mkv",
        None,
        "libx264",
        "libmp3lame",
        marks=pytest.mark.skipif(not HAS_MP3_ENCODER, reason="no libmp3lame in PyAV"),
    ),
    pytest.param(
        "mp3.avi",
        None,
        "mjpeg",
        "libmp3lame",
        marks=pytest.mark.skipif(not HAS_MP3_ENCODER, reason="no libmp3lame in PyAV"),
    ),
    pytest.param(
        "mp3.mov",
        None,
        "libx264",
        "libmp3lame",
        marks=pytest.mark.skipif(not HAS_MP3_ENCODER, reason="no libmp3lame in PyAV"),
    ),
]


@pytest.mark.parametrize(("name", "muxer", "vcodec", "acodec"), PRIMED)
def test_encoder_priming_keeps_sound_and_picture_together(
    media: MediaFactory, name, muxer, vcodec, acodec
) -> None:
    """An encoder puts silence before the first real sample (AAC 1,024 samples, LAME's MP3 1,105
    with the decoder's share: 64 and 69 ms at 16 kHz). MP4 and MOV drop it by an edit list; where
    a container cannot say so (AVI, and Matroska as older FFmpeg writes it) the muxer delays the
    picture by as much instead, and the decoded sound keeps its priming: both land late together.
    Dropping the priming there, as a 2026-12-03 probe did, put the sound 64-100 ms ahead of its
    picture; this pins the file's own timeline."""
    path = media.av(name, container=muxer, video=vcodec, audio=acodec, rate=16_000)
    out = decode(path, fps=25.0, size=(32, 32), fit="stretch")
    assert abs(_flash_time(out.frames, 25.0) - _click_time(out.audio, 16_000)) <= 1 / 25 + 1e-6


def test_native_fps_keeps_every_frame(media: MediaFactory) -> None:
    path = media.av("a.mp4", audio=None, flash_at=None)
    out = decode(path, fps=None, size=None)
    assert out.frames.shape == (75, 48, 64, 3)
    assert out.fps == pytest.approx(25.0)
    assert [read_index(f) for f in out.frames] == list(range(75))


def test_variable_frame_rate_uses_timestamps(media: MediaFactory) -> None:
    times = [0.0, 0.1, 0.15, 0.5, 0.9, 1.0, 1.6, 2.05, 2.5]
    path = media.av("vfr.mkv", audio=None, frame_times=times, flash_at=None)
    out = decode(path, fps=10.0, size=None)
    expected = [
        max(i for i, t in enumerate(times) if t <= j / 10 + 1e-9) for j in range(len(out.frames))
    ]
    assert [read_index(f) for f in out.frames] == expected
    assert len(out.frames) == 25  # last frame lasts until 2.5 s + its duration


def test_first_frame_after_origin_is_held_back(media: MediaFactory) -> None:
    # Audio starts at 0, video at 0.5 s: targets before 0.5 s show the first frame.
    times = [0.5 + i / 25 for i in range(50)]
    path = media.av("late_video.mkv", frame_times=times, flash_at=None, audio="flac", duration=2.5)
    out = decode(path, fps=4.0, size=None)
    assert [read_index(f) for f in out.frames[:4]] == [0, 0, 0, 6]


def _bands(i: int, t: float, height: int, width: int) -> np.ndarray:
    """Blue | red | green thirds."""
    img = np.zeros((height, width, 3), np.uint8)
    third = width // 3
    img[:, :third, 2] = img[:, third : 2 * third, 0] = img[:, 2 * third :, 1] = 255
    return img


def _colour(pixel: np.ndarray) -> str:
    if pixel.max() < 40:
        return "black"
    return "rgb"[int(np.argmax(pixel))]


@pytest.mark.parametrize(
    ("fit", "row", "expected"),
    [
        # 96x48 source into 64x64: pad letterboxes rows 0-15 and 48-63 ...
        ("pad", 4, ["black"] * 4),
        ("pad", 32, ["b", "r", "r", "g"]),
        # ... stretch fills everything and keeps the thirds ...
        ("stretch", 4, ["b", "r", "r", "g"]),
        # ... crop keeps the centre 48x48: only slivers of blue and green remain.
        ("crop", 4, ["b", "r", "r", "g"]),
    ],
)
def test_fit_modes(media: MediaFactory, fit, row, expected) -> None:
    path = media.av(
        "bands.mp4", audio=None, size=(48, 96), draw=_bands, duration=0.5, pix_fmt="yuv444p"
    )
    frame = decode(path, fps=4.0, size=(64, 64), fit=fit).frames[0]
    assert frame.shape == (64, 64, 3)
    assert [_colour(frame[row, x]) for x in (2, 24, 40, 61)] == expected
    blue_width = int((frame[32, :, 2] > 128).sum())
    assert blue_width == pytest.approx({"pad": 21, "stretch": 21, "crop": 11}[fit], abs=2)


def test_size_is_height_width(media: MediaFactory) -> None:
    path = media.av("a.mp4", audio=None, duration=0.5)
    assert decode_video(path, size=(24, 40), fit="stretch").shape[1:] == (24, 40, 3)


@pytest.mark.parametrize(("left", "right", "expected"), [(0.5, 0.5, 0.5), (0.5, 0.0, 0.25)])
def test_stereo_downmix_is_the_channel_mean(media: MediaFactory, left, right, expected) -> None:
    x = tone(1.0, 16_000, click_at=None, amplitude=1.0)[0]
    path = media.bytes("stereo.wav", pcm16_wav(np.stack([left * x, right * x]), rate=16_000))
    audio, _ = decode_audio(path)
    assert np.abs(audio).max() == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize(
    ("name", "muxer", "codec", "channels"),
    [("71.m4a", "ipod", "aac", 8), ("71.ogg", None, "libopus", 8), ("51.mkv", None, "flac", 6)],
)
def test_surround_downmix(media: MediaFactory, name, muxer, codec, channels) -> None:
    """7.1 AAC and Opus decode to planar float with 8 channels, the case where PyAV's own
    `to_ndarray` reads a bogus ninth plane and crashes the process."""
    path = media.av(
        name,
        container=muxer,
        video=None,
        audio=codec,
        channels=channels,
        duration=1.0,
        click_at=None,
    )
    assert probe(path).streams[0].channels == channels
    audio, _ = decode_audio(path)
    assert abs(len(audio) / 16_000 - 1.0) < 0.05
    assert np.abs(audio[1000:-1000]).max() == pytest.approx(0.1, rel=0.15)  # identical channels


@pytest.mark.parametrize("rate", [8_000, 22_050, 44_100, 48_000])
def test_resampled_to_16k_with_correct_length_and_pitch(media: MediaFactory, rate) -> None:
    n = round(1.5 * rate)
    path = media.bytes(f"{rate}.wav", pcm16_wav(tone(1.5, rate, click_at=None), rate=rate))
    audio, out_rate = decode_audio(path, sample_rate=16_000)
    assert out_rate == 16_000
    assert abs(len(audio) - round(n * 16_000 / rate)) <= 2
    spectrum = np.abs(np.fft.rfft(audio))
    assert np.argmax(spectrum) * 16_000 / len(audio) == pytest.approx(440, abs=2)


def test_other_sample_rate(media: MediaFactory) -> None:
    path = media.bytes("a.wav", pcm16_wav(tone(1.0, 16_000), rate=16_000))
    audio, rate = decode_audio(path, sample_rate=8_000)
    assert rate == 8_000 and abs(len(audio) - 8_000) <= 2


def test_content_decides_not_extension(media: MediaFactory) -> None:
    webm = media.av("really_webm.mp4", container="webm", video="libvpx-vp9", audio="libopus")
    wav = media.bytes("really_wav.mp4", pcm16_wav(tone(1.0, 16_000)))
    assert probe(webm).container == "matroska"
    assert decode(webm).frames.shape == (12, 128, 128, 3)
    assert probe(wav).container == "wav"
    assert decode(wav).frames is None


def test_probe_describes_streams(media: MediaFactory) -> None:
    path = media.av(
        "a.mkv", video="libx264", audio="flac", size=(48, 80), rate=44_100, channels=2, fps=30
    )
    info = probe(path)
    video, audio = info.streams
    assert (video.kind, video.codec, video.width, video.height) == ("video", "h264", 80, 48)
    assert video.fps == pytest.approx(30.0)
    assert (audio.kind, audio.codec, audio.sample_rate, audio.channels) == (
        "audio",
        "flac",
        44_100,
        2,
    )
    assert info.duration_s == pytest.approx(3.0, abs=0.1)
    assert info.size_bytes == path.stat().st_size


def test_partial_requests(media: MediaFactory) -> None:
    path = media.av("a.mp4")
    assert decode(path, audio=False).audio is None
    assert decode(path, video=False).frames is None
    with pytest.raises(ValueError):
        decode(path, video=False, audio=False)
    with pytest.raises(ValueError):
        decode(path, fps=0)


def test_media_error_is_readable_and_picklable() -> None:
    err = MediaError(MediaErrorReason.TOO_LONG, "declares 9 h", "/x.mp4")
    assert str(err) == "/x.mp4: declares 9 h [too_long]"
    back = pickle.loads(pickle.dumps(err))
    assert (back.reason, back.message, back.path) == (err.reason, err.message, err.path)


def test_limits_are_overridable() -> None:
    limits = MediaLimits(max_duration_s=1.0, containers=frozenset({"wav"}))
    assert limits.max_duration_s == 1.0 and "mov" not in limits.containers
    assert "h264" in MediaLimits().video_codecs


def _gapped_recording(path: Path, spans: list[tuple[float, float]]) -> Path:
    """WebM Opus at 48 kHz whose packets cover only `spans` (start, end, seconds) of its
    timeline, as a browser's MediaRecorder writes a recording whose capture dropped sound under
    load: timestamps jump over the lost stretches, and the header's duration runs to the end."""
    rate, step = 48_000, 960
    with av.open(str(path), "w", format="webm") as out:
        stream = out.add_stream("libopus", rate=rate, layout="mono")
        for start, end in spans:
            first, last = round(start * rate), round(end * rate)
            for i in range(first, last, step):
                t = np.arange(i, i + step) / rate
                wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
                frame = av.AudioFrame.from_ndarray(wave, format="flt", layout="mono")
                frame.sample_rate, frame.pts = rate, i
                for packet in stream.encode(frame):
                    out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def test_a_recording_whose_capture_dropped_sound_is_decoded_not_refused(tmp_path: Path) -> None:
    """Its timestamps run to the duration its header declares, so it is not truncated: the sound
    it holds is decoded (before, its samples' length was compared with the header's duration,
    and a recording with 0.36 s of sound over 1.6 s was refused as a truncated file). A file cut
    short still is refused (`test_media_hostile.test_truncation_rule_names_both_durations`)."""
    path = _gapped_recording(tmp_path / "recording.webm", [(0.0, 0.18), (1.42, 1.6)])
    audio, rate = decode_audio(path)
    assert rate == 16_000
    assert 0.3 <= len(audio) / rate <= 0.45  # the sound it holds, nothing made up
    assert np.abs(audio).max() > 0.1
    whole = _gapped_recording(tmp_path / "whole.webm", [(0.0, 1.6)])
    assert len(decode_audio(whole)[0]) / rate > 1.5
