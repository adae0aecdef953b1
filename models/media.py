"""Safe decoding of untrusted media files with PyAV.

Files reach us from users and crawlers, so every one is treated as hostile: a bad file must end as
a `MediaError` with a machine-readable reason, never a crash, a hang, a silent zero tensor or a read
of some other file. The defences, outermost first:

1. `os.stat` decides before anything is opened: only regular files (no FIFO, device, directory).
   The file is then opened with O_NONBLOCK and the descriptor re-checked, so a swap in between
   cannot turn it into a FIFO that blocks us.
2. `_sniff` reads the first bytes and names the demuxer. FFmpeg never probes, so playlists, concat
   scripts, SDP and image formats can never select their demuxers; the extension is ignored.
3. FFmpeg never sees a path: it reads through a Python file object (`_GuardedReader`). Nested
   opens (mov data references, anything a demuxer might try) are refused twice: the protocol
   whitelist names no protocol at all, and PyAV's `io_open` hook answers every request with an
   empty buffer and records it, which we turn into EXTERNAL_REFERENCE.
4. Header values are checked against `MediaLimits`, and because headers lie the same limits are
   checked again on every decoded frame, together with the wall clock (also on every read).
5. Memory is bounded before FFmpeg allocates it: the sniffer reads the WAV channel count and the
   number of mp4 tracks, the demuxer is told `max_streams` (limit + 1) and every decoder,
   including the ones FFmpeg opens to read the header, is told `max_pixels`, so an 8,200^2 frame
   or a 300-stream file is refused without a frame or 300 decoders being allocated. A video
   decoder runs `decode_threads` frame threads (not FFmpeg's cores + 1): the tables each makes
   for a picture size declared mid-stream then cost the same on any machine.
6. Three PyAV failure modes found by fuzzing are avoided in `_decode`: a deadlock between frame
   threads and PyAV's log callback (`_thread_type`), a segfault reading 8-channel planar audio
   (`_float_planes`) and an IndexError when a stream appears mid-file (`_packets`).

Damage policy (what a file that decodes may still be refused for):

- CORRUPT: any decode error FFmpeg reports; a stream that decoded to nothing although it had
  packets; a stream whose timestamps stop short of 80% of its declared duration (truncated: a
  sound whose timestamps jump over stretches its capture lost is not, and decodes to the sound it
  holds); more than
  `max_corrupt_share` (default 5%) of a stream's frames flagged corrupt by FFmpeg (its error
  concealment painted over damaged slices: the pictures are partly invented). The message gives
  the counts, e.g. "10 of 100 video frames are flagged corrupt".
- BAD_TIMESTAMPS: video whose decoded frames span more than 1.5x its declared duration + 1 s
  (an mp4 with timescale 0 makes one frame last 512 s), or more than `max_corrupt_share` of
  whose frames do not advance in time; the frames cannot be placed on the timeline.
- NO_FRAMES: a selected stream with no packets at all (a fragmented mp4 cut before its first
  fragment).

This module opens and validates; `_decode` turns the opened container into arrays (frame
sampling and scaling, audio checks and resampling, the decode loop, truncation checks).
"""

from __future__ import annotations

import io
import math
import os
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, BinaryIO, Literal

import av
import numpy as np
from av.container import InputContainer
from av.stream import Disposition

from models._sniff import sniff

Fit = Literal["pad", "stretch", "crop"]

# How the decoder places frames and their measures on the time grid; bumped when a file decodes
# to other frames or measures, so that what was measured before (an index's items, a resumed
# build's shards) can be told apart. 1 (or unrecorded): before; 2: frame times within a tenth of
# a grid step of a grid time are on it (`models._decode.ON_GRID_SHARE`: Matroska and WebM keep
# milliseconds, and a third of a 12 fps clip's events sat a bin off).
DECODE_VERSION = 2

# Tests replace this to make the wall-clock limit deterministic.
_clock: Callable[[], float] = time.monotonic


class MediaErrorReason(StrEnum):
    """Why a file was refused; stable strings meant for APIs, logs and skip lists."""

    NOT_FOUND = "not_found"
    NOT_A_FILE = "not_a_file"
    EMPTY = "empty"
    TOO_LARGE = "too_large"
    UNKNOWN_FORMAT = "unknown_format"
    EXTERNAL_REFERENCE = "external_reference"
    UNSUPPORTED_CONTAINER = "unsupported_container"
    UNSUPPORTED_CODEC = "unsupported_codec"
    NO_STREAMS = "no_streams"
    TOO_MANY_STREAMS = "too_many_streams"
    TOO_LONG = "too_long"
    FRAME_TOO_LARGE = "frame_too_large"
    BAD_FRAME_RATE = "bad_frame_rate"
    BAD_SAMPLE_RATE = "bad_sample_rate"
    TOO_MANY_CHANNELS = "too_many_channels"
    INVALID_SAMPLES = "invalid_samples"
    BAD_TIMESTAMPS = "bad_timestamps"
    NO_FRAMES = "no_frames"
    CORRUPT = "corrupt"
    TIMEOUT = "timeout"


R = MediaErrorReason


class MediaError(Exception):
    """A file we refuse to decode: `reason` for machines, `message` for people."""

    def __init__(self, reason: MediaErrorReason, message: str, path: str = "") -> None:
        super().__init__(f"{path}: {message} [{reason}]" if path else f"{message} [{reason}]")
        self.reason = MediaErrorReason(reason)
        self.message = message
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        # Keeps the error intact across process boundaries (multiprocessing, Ray workers).
        return (type(self), (self.reason, self.message, self.path))


_PCM_CODECS = {"pcm_u8", "pcm_s8"} | {
    f"pcm_{sample}{order}"
    for sample in ("s16", "s24", "s32", "f32", "f64")
    for order in ("le", "be")
}


@dataclass(frozen=True)
class MediaLimits:
    """Bounds for one file; the defaults suit a video archive, tests pass tighter ones."""

    # 1 GiB is 3 h (max_duration_s) at 0.8 Mb/s or 1 h at 2.4 Mb/s. The index only ever sees 4
    # frames/s at 128 px and 16 kHz mono, so bigger sources are high-bitrate masters that cost
    # decode time (max_wall_s) and gain nothing: transcode a proxy or raise this. The service
    # passes its own, smaller max_upload_mb.
    max_bytes: int = 1024**3
    max_duration_s: float = 3 * 3600.0
    max_pixels: int = 3840 * 2160
    max_fps: float = 240.0
    min_sample_rate: int = 4000
    max_sample_rate: int = 192_000
    max_channels: int = 8
    max_streams: int = 16
    max_wall_s: float = 600.0
    # Frame threads per video decoder; FFmpeg's own default is the machine's cores + 1. Each
    # thread keeps its own copy of the decoder's per-picture tables, made for the size the
    # bitstream declares before a picture past max_pixels is refused: a stream that turns
    # 8,200^2 mid-file cost ~21 MB a thread (~80 MB a thread at 16,000^2), so with the default
    # a hostile file cost more the more cores the machine had. The indexer decodes one file per
    # core already; 2 keeps most of one file's speed (1.36x one thread, single-slice 720p h264).
    decode_threads: int = 2
    # Share of a stream's frames that may be flagged corrupt by FFmpeg or fail to advance in time
    # before the file is refused (see the damage policy in the module docstring).
    max_corrupt_share: float = 0.05
    # FFmpeg demuxer names. flv, asf, mpeg (PS), aiff, caf, ivf, amr, rm, w64 are recognised by
    # the sniffer and may be added here; hls, concat, dash, sdp, image2 can never be selected.
    containers: frozenset[str] = frozenset(
        {"mov", "matroska", "wav", "avi", "flac", "ogg", "mp3", "aac", "mpegts"}
    )
    # The formats real archives hold. Left out on purpose: lossless/intermediate and legacy codecs
    # (ffv1, rawvideo, prores, theora, h263, png, gif) that widen the decoder attack surface.
    video_codecs: frozenset[str] = frozenset(
        {"h264", "hevc", "vp8", "vp9", "av1", "mpeg4", "mpeg1video", "mpeg2video", "mjpeg"}
    )
    # Left out: telephony codecs (pcm_mulaw, pcm_alaw, adpcm_*, gsm, amr) and exotic PCM layouts.
    audio_codecs: frozenset[str] = frozenset(
        {"aac", "mp3", "mp2", "opus", "vorbis", "flac", "alac", "ac3", "eac3", *_PCM_CODECS}
    )

    def __post_init__(self) -> None:
        if self.decode_threads < 1:
            raise ValueError(f"decode_threads must be at least 1, got {self.decode_threads}")


@dataclass(frozen=True)
class StreamInfo:
    """One stream as declared by the header. Cover art (attached pictures) counts as "other"."""

    kind: Literal["video", "audio", "other"]
    codec: str
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    # a video pixel's width over its height as the header declares it (1.0 where it declares
    # none, or a value outside 1/10..10: header damage, not video)
    pixel_aspect: float = 1.0


@dataclass(frozen=True)
class MediaInfo:
    """What `probe` learned; `duration_s` is 0.0 when the container declares none."""

    path: str
    container: str
    duration_s: float
    size_bytes: int
    streams: tuple[StreamInfo, ...]

    @property
    def has_video(self) -> bool:
        return any(s.kind == "video" for s in self.streams)

    @property
    def has_audio(self) -> bool:
        return any(s.kind == "audio" for s in self.streams)


@dataclass(frozen=True)
class DecodedMedia:
    """Frames `(T, H, W, 3)` uint8 RGB on the grid t = j / fps and mono float32 audio, both
    measured from the same origin (the earliest first timestamp of the decoded streams).
    `changes` (T,) float32, when frames were sampled at an fps: how much the picture changed
    inside each frame's interval, measured between every pair of the file's own consecutive
    frames (`models._decode._VideoSampler`; what `models.events.picture_events` reads)."""

    info: MediaInfo
    frames: np.ndarray | None
    fps: float | None
    audio: np.ndarray | None
    sample_rate: int | None
    duration_s: float
    changes: np.ndarray | None = None
    region_changes: np.ndarray | None = None  # (T, 4): `changes` per quadrant (picture_bands)
    # (T,): where the picture's motion changes, on the file's own frames (`models.motion`;
    # what `models.events.picture_motion` reads)
    motion: np.ndarray | None = None
    # (T, 2 × len(models.motion.HALVES)): each half's change and change of motion, as `motion`
    # (what `models.events.picture_halves` reads)
    halves: np.ndarray | None = None
    # (S, h, w, 3) uint8, where asked for (`decode`'s `stills`): a second look at the picture,
    # a few frames a second at another size, stretched, on the grid t = j / its fps (what
    # `models.shape` measures glyphs' outlines on)
    stills: np.ndarray | None = None


# ---------------------------------------------------------------------------------------------
# Opening: path checks, sniffing, FFmpeg without paths or protocols


class _Deadline:
    """Wall-clock budget for one call, checked on every read, packet and frame."""

    def __init__(self, limit_s: float, path: str) -> None:
        self.limit_s = limit_s
        self.path = path
        self._end = _clock() + limit_s

    def expired(self) -> bool:
        return _clock() >= self._end

    def check(self) -> None:
        if self.expired():
            raise MediaError(
                R.TIMEOUT, f"gave up after max_wall_s={self.limit_s:g} s of wall time", self.path
            )


_FILE_TYPES = [
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
]


def _check_stat(st: os.stat_result, limits: MediaLimits, path: str) -> None:
    """Refuse anything but a non-empty regular file within the byte limit."""
    if not stat.S_ISREG(st.st_mode):
        what = next((name for test, name in _FILE_TYPES if test(st.st_mode)), "not a regular file")
        raise MediaError(R.NOT_A_FILE, f"path is {what}, not a regular file", path)
    if st.st_size == 0:
        raise MediaError(R.EMPTY, "file is empty (0 bytes)", path)
    if st.st_size > limits.max_bytes:
        raise MediaError(
            R.TOO_LARGE, f"file has {st.st_size} bytes, above max_bytes={limits.max_bytes}", path
        )


def _open_regular(path: str, limits: MediaLimits) -> tuple[BinaryIO, int]:
    """Open `path` only if it is a regular file; stat first so a FIFO can never block us."""
    try:
        before = os.stat(path)
    except (OSError, ValueError) as exc:  # ValueError: embedded NUL byte
        raise MediaError(R.NOT_FOUND, f"cannot access file: {exc}", path) from exc
    _check_stat(before, limits, path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise MediaError(R.NOT_FOUND, f"cannot open file: {exc}", path) from exc
    after = os.fstat(fd)
    if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
        os.close(fd)
        raise MediaError(R.NOT_A_FILE, "file was replaced while being opened", path)
    try:
        _check_stat(after, limits, path)
    except MediaError:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb"), after.st_size


class _GuardedReader:
    """The only file FFmpeg reads. It never raises into C (PyAV would stash the exception and
    re-raise it at some unrelated later call); failures become EOF and are reported by us."""

    def __init__(self, raw: BinaryIO, deadline: _Deadline) -> None:
        self._raw = raw
        self._deadline = deadline
        self.error: OSError | ValueError | None = None

    def read(self, n: int) -> bytes:
        if self.error is not None or self._deadline.expired():
            return b""
        try:
            return self._raw.read(n)
        except OSError as exc:
            self.error = exc
            return b""

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        try:
            return self._raw.seek(offset, whence)
        except (OSError, ValueError) as exc:
            self.error = exc
            return -1

    def tell(self) -> int:
        return self._raw.tell()


class _NestedOpenGuard:
    """PyAV `io_open` hook: every other file or URL a demuxer asks for gets an empty buffer."""

    def __init__(self) -> None:
        self.attempts: list[str] = []

    def __call__(self, url: str, flags: int, options: dict[str, str]) -> io.BytesIO:
        self.attempts.append(url)
        return io.BytesIO(b"")

    def check(self, path: str) -> None:
        if self.attempts:
            raise MediaError(
                R.EXTERNAL_REFERENCE, f"file refers to other resources: {self.attempts[:3]}", path
            )


# A name that matches no FFmpeg protocol: with a file object as input we need none, and nested
# contexts (concat, HLS segments) inherit the whitelist. "file" would allow reading other files.
_NO_PROTOCOLS = "none"


# What FFmpeg's stream probe may read of a WAV (`_open_container`).
_WAV_PROBE_BYTES = 1 << 15


def _open_container(
    reader: _GuardedReader,
    demuxer: str,
    guard: _NestedOpenGuard,
    buffer_size: int = 1 << 16,
    limits: MediaLimits = MediaLimits(),
) -> InputContainer:
    """Open with an explicit demuxer, no protocols, no data references, lenient metadata.
    `max_streams` stops the demuxer one stream past the limit (Matroska and MPEG-TS drop the
    rest, mov fails) and `max_pixels` reaches the decoders FFmpeg opens while reading the header,
    which would otherwise decode a first frame of any size: 160 MB for 8,200^2."""
    options = {"protocol_whitelist": _NO_PROTOCOLS, "max_streams": str(limits.max_streams + 1)}
    if demuxer == "mov":
        options |= {"enable_drefs": "0", "use_absolute_path": "0"}
    if demuxer == "wav":
        # A WAV's header says all FFmpeg's stream probe looks for, yet with the default 5 MB
        # probe it read a 6 s 44.1 kHz file to its end through this reader: 35-60 ms to open,
        # 2-3 ms with this. Other demuxers open in ~1 ms as they are.
        options["probesize"] = str(_WAV_PROBE_BYTES)
    return av.open(
        reader,
        mode="r",
        format=demuxer,
        container_options=options,
        options={"max_pixels": str(limits.max_pixels)},
        io_open=guard,
        metadata_errors="replace",
        buffer_size=buffer_size,
    )


def _demuxer_for(raw: BinaryIO, limits: MediaLimits, path: str) -> str:
    """Map content to an allowed demuxer or raise the matching reason."""
    found = sniff(raw)
    raw.seek(0)
    if found.kind == "reference":
        raise MediaError(
            R.EXTERNAL_REFERENCE, f"{found.what}: refers to other files or URLs; refused", path
        )
    if found.kind == "image":
        raise MediaError(R.UNSUPPORTED_CONTAINER, f"{found.what}, not audio or video", path)
    if found.kind == "unknown" or found.demuxer is None:
        raise MediaError(R.UNKNOWN_FORMAT, f"no known media signature: {found.what}", path)
    if found.demuxer not in limits.containers:
        raise MediaError(
            R.UNSUPPORTED_CONTAINER,
            f"{found.what} container is not allowed (allowed: {sorted(limits.containers)})",
            path,
        )
    # Checked before FFmpeg opens anything: a WAV with 65,535 channels only fails inside FFmpeg
    # (as "Invalid argument"), and FFmpeg sets up every mp4 track before we can count them.
    if found.sample_rate is not None:
        _check_audio_format(found.sample_rate, found.channels or 0, limits, path)
    if found.tracks is not None and found.tracks > limits.max_streams:
        raise MediaError(
            R.TOO_MANY_STREAMS,
            f"{found.tracks} tracks, above max_streams={limits.max_streams}",
            path,
        )
    return found.demuxer


def _failure(
    exc: BaseException, doing: str, deadline: _Deadline, reader: _GuardedReader, path: str
) -> MediaError:
    """Turn an FFmpeg/OS exception into the reason that actually caused it."""
    if deadline.expired():
        return MediaError(R.TIMEOUT, f"gave up after max_wall_s={deadline.limit_s:g} s", path)
    if reader.error is not None:
        return MediaError(R.CORRUPT, f"read error while {doing}: {reader.error}", path)
    return MediaError(R.CORRUPT, f"FFmpeg failed while {doing}: {_ffmpeg_message(exc)}", path)


def _ffmpeg_message(exc: BaseException) -> str:
    """FFmpeg's own words, without PyAV's placeholder file name for file objects."""
    if not isinstance(exc, av.FFmpegError):
        return str(exc) or type(exc).__name__
    log = getattr(exc, "log", None)  # only filled when an application enabled av.logging
    detail = f" ({log[2].strip()})" if log else ""
    return f"{exc.strerror}{detail}"


@dataclass
class _Opened:
    container: InputContainer
    info: MediaInfo
    reader: _GuardedReader
    guard: _NestedOpenGuard
    deadline: _Deadline
    path: str


@contextmanager
def _open_media(path: str | os.PathLike[str], limits: MediaLimits) -> Iterator[_Opened]:
    """Everything up to a validated, open container; closes it on the way out."""
    name = os.fsdecode(os.fspath(path))
    deadline = _Deadline(limits.max_wall_s, name)
    raw, size = _open_regular(name, limits)
    with raw:
        demuxer = _demuxer_for(raw, limits, name)
        reader, guard = _GuardedReader(raw, deadline), _NestedOpenGuard()
        try:
            container = _open_container(reader, demuxer, guard, limits=limits)
        except (av.FFmpegError, OSError, UnicodeError) as exc:
            guard.check(name)
            raise _failure(exc, "reading the header", deadline, reader, name) from exc
        with container:
            guard.check(name)
            deadline.check()
            info = _describe(container, demuxer, size, name)
            _check_header(container, info, limits)
            yield _Opened(container, info, reader, guard, deadline, name)


# ---------------------------------------------------------------------------------------------
# Header checks


def _is_av(stream: av.stream.Stream) -> bool:
    """Audio or video we would decode: cover art is a one-picture "video" stream, not video."""
    if stream.type == "video":
        return not (stream.disposition & Disposition.attached_pic)
    return stream.type == "audio"


def _codec_name(stream: av.stream.Stream) -> str:
    """FFmpeg's codec name (e.g. "mp3", not the decoder name "mp3float"); "none" if unknown."""
    ctx = getattr(stream, "codec_context", None)
    codec = getattr(ctx, "codec", None)
    return str(getattr(codec, "canonical_name", None) or getattr(ctx, "name", None) or "none")


def _stream_rate(stream: av.stream.Stream) -> float | None:
    """Average frame rate, else FFmpeg's guess; None when the header has neither."""
    for rate in (stream.average_rate, stream.guessed_rate):
        if rate and rate > 0:
            return float(rate)
    return None


def _declared_pixel_aspect(stream: av.stream.Stream | None) -> float:
    """Width of a pixel relative to its height (DVD and HDV pixels are not square); values
    outside 1/10..10 are header damage, not video, and are ignored."""
    sar = getattr(stream, "sample_aspect_ratio", None)
    return float(sar) if sar and 0.1 <= sar <= 10 else 1.0


def _stream_info(stream: av.stream.Stream) -> StreamInfo:
    codec = _codec_name(stream)
    ctx = getattr(stream, "codec_context", None)
    if not _is_av(stream):
        return StreamInfo("other", codec)
    if ctx is None:  # FFmpeg has no decoder for it; the codec check then refuses it
        return StreamInfo("video" if stream.type == "video" else "audio", codec)
    if stream.type == "video":
        return StreamInfo(
            "video",
            codec,
            width=ctx.width or None,
            height=ctx.height or None,
            fps=_stream_rate(stream),
            pixel_aspect=_declared_pixel_aspect(stream),
        )
    return StreamInfo(
        "audio", codec, sample_rate=ctx.sample_rate or None, channels=ctx.channels or None
    )


def _declared_s(stream: av.stream.Stream | None, container: InputContainer) -> float | None:
    """Declared duration of a stream, falling back to the container's (Matroska has no per-stream
    durations). FFmpeg reports the container duration in AV_TIME_BASE (microsecond) units."""
    if stream is not None and stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration and container.duration > 0:
        return container.duration / av.time_base
    return None


def _describe(container: InputContainer, demuxer: str, size: int, path: str) -> MediaInfo:
    streams = tuple(_stream_info(s) for s in container.streams)
    return MediaInfo(path, demuxer, _declared_s(None, container) or 0.0, size, streams)


def _selected(container: InputContainer, kind: str) -> av.stream.Stream | None:
    """The first decodable stream of a kind: deterministic, and what players show by default."""
    return next((s for s in container.streams if s.type == kind and _is_av(s)), None)


def _check_header(container: InputContainer, info: MediaInfo, limits: MediaLimits) -> None:
    """Refuse what the header already shows to be out of bounds."""
    path = info.path
    if not set(container.format.name.split(",")) & limits.containers:
        raise MediaError(R.UNSUPPORTED_CONTAINER, f"container {container.format.name!r}", path)
    if len(info.streams) > limits.max_streams:
        # The demuxer was stopped at max_streams + 1, so there may be more than we see.
        raise MediaError(
            R.TOO_MANY_STREAMS,
            f"at least {len(info.streams)} streams, above max_streams={limits.max_streams}",
            path,
        )
    if not (info.has_video or info.has_audio):
        kinds = sorted({s.kind + ":" + s.codec for s in info.streams}) or ["none"]
        raise MediaError(R.NO_STREAMS, f"no audio or video stream (streams: {kinds})", path)
    durations = [_declared_s(s, container) or 0.0 for s in container.streams]
    longest = max([info.duration_s, *durations])
    if longest > limits.max_duration_s:
        raise MediaError(
            R.TOO_LONG,
            f"declares {longest:.1f} s, above max_duration_s={limits.max_duration_s:g}",
            path,
        )
    for kind in ("video", "audio"):
        stream = _selected(container, kind)
        if stream is not None:
            rate = getattr(stream, "average_rate", None)
            _check_stream(_stream_info(stream), limits, path, float(rate) if rate else None)


def _check_stream(
    s: StreamInfo, limits: MediaLimits, path: str, average_fps: float | None = None
) -> None:
    """`average_fps` is the rate measured from the stream's frames; `s.fps` may be FFmpeg's
    guess, which for a stream without frames is its time base (12,800 "frames/s")."""
    allowed = limits.video_codecs if s.kind == "video" else limits.audio_codecs
    if s.codec not in allowed:
        raise MediaError(
            R.UNSUPPORTED_CODEC,
            f"{s.kind} codec {s.codec!r} is not allowed (allowed: {sorted(allowed)})",
            path,
        )
    if s.width and s.height:
        _check_pixels(s.width, s.height, limits, path)
    if average_fps is not None and average_fps > limits.max_fps:
        raise MediaError(
            R.BAD_FRAME_RATE, f"{average_fps:g} frames/s, above max_fps={limits.max_fps:g}", path
        )
    if s.sample_rate is not None:
        _check_audio_format(s.sample_rate, s.channels or 0, limits, path)


def _check_pixels(width: int, height: int, limits: MediaLimits, path: str) -> None:
    if width * height > limits.max_pixels:
        raise MediaError(
            R.FRAME_TOO_LARGE,
            f"{width}x{height} frame has {width * height} "
            f"pixels, above max_pixels={limits.max_pixels}",
            path,
        )


def _check_audio_format(rate: int, channels: int, limits: MediaLimits, path: str) -> None:
    if not limits.min_sample_rate <= rate <= limits.max_sample_rate:
        raise MediaError(
            R.BAD_SAMPLE_RATE,
            f"{rate} Hz is outside [{limits.min_sample_rate}, {limits.max_sample_rate}] Hz",
            path,
        )
    if channels > limits.max_channels:
        raise MediaError(
            R.TOO_MANY_CHANNELS,
            f"{channels} channels, above max_channels={limits.max_channels}",
            path,
        )


# ---------------------------------------------------------------------------------------------
# Public API


def probe(path: str | os.PathLike[str], limits: MediaLimits = MediaLimits()) -> MediaInfo:
    """Validate a file's header against `limits` and describe it, without decoding."""
    with _open_media(path, limits) as opened:
        return opened.info


def _check_args(
    fps: float | None, size: tuple[int, int] | None, sample_rate: int, fit: str
) -> None:
    """Caller mistakes are ValueErrors, not MediaErrors: the file is not to blame."""
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be positive or None, got {fps!r}")
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise ValueError(f"size must be (height, width) with positive values, got {size!r}")
    if sample_rate < 1:
        raise ValueError(f"sample_rate must be positive, got {sample_rate!r}")
    if fit not in ("pad", "stretch", "crop"):
        raise ValueError(f"fit must be 'pad', 'stretch' or 'crop', got {fit!r}")


def _decode(
    path: str | os.PathLike[str],
    *,
    fps: float | None,
    size: tuple[int, int] | None,
    sample_rate: int,
    video: bool,
    audio: bool,
    fit: Fit,
    limits: MediaLimits,
    require: str | None = None,
    stills: tuple[float, tuple[int, int]] | None = None,
) -> DecodedMedia:
    # Imported here because `_decode` imports this module's types and header helpers.
    from models._decode import _decode_opened

    _check_args(fps, size, sample_rate, fit)
    if stills is not None:
        _check_args(stills[0], stills[1], sample_rate, "stretch")
    if not (video or audio):
        raise ValueError("nothing to decode: video and audio are both False")
    with _open_media(path, limits) as opened:
        has = {"video": opened.info.has_video, "audio": opened.info.has_audio}
        if require is not None and not has[require]:
            raise MediaError(R.NO_STREAMS, f"no {require} stream", opened.path)
        if not ((video and has["video"]) or (audio and has["audio"])):
            wanted = " or ".join(k for k, w in (("video", video), ("audio", audio)) if w)
            raise MediaError(R.NO_STREAMS, f"no {wanted} stream to decode", opened.path)
        return _decode_opened(
            opened,
            fps=fps,
            size=size,
            stills=stills if video else None,
            sample_rate=sample_rate,
            video=video,
            audio=audio,
            fit=fit,
            limits=limits,
        )


def decode(
    path: str | os.PathLike[str],
    *,
    fps: float | None = 4.0,
    size: tuple[int, int] | None = (128, 128),
    sample_rate: int = 16_000,
    video: bool = True,
    audio: bool = True,
    fit: Fit = "pad",
    limits: MediaLimits = MediaLimits(),
    stills: tuple[float, tuple[int, int]] | None = None,
) -> DecodedMedia:
    """Decode frames sampled at `fps` (None: every frame) resized to `size` (height, width;
    None: native) and mono audio at `sample_rate`. Streams the file lacks come back as None.
    `stills` (fps, (height, width)): in the same pass, a second set of frames sampled at that
    rate, stretched to that size (`DecodedMedia.stills`; only the frames kept are converted)."""
    return _decode(
        path,
        fps=fps,
        size=size,
        sample_rate=sample_rate,
        video=video,
        audio=audio,
        fit=fit,
        limits=limits,
        stills=stills,
    )


def decode_audio(
    path: str | os.PathLike[str], *, sample_rate: int = 16_000, limits: MediaLimits = MediaLimits()
) -> tuple[np.ndarray, int]:
    """Mono float32 audio; NO_STREAMS if the file has no audio stream."""
    out = _decode(
        path,
        fps=None,
        size=None,
        sample_rate=sample_rate,
        video=False,
        audio=True,
        fit="pad",
        limits=limits,
        require="audio",
    )
    assert out.audio is not None and out.sample_rate is not None
    return out.audio, out.sample_rate


def decode_video(
    path: str | os.PathLike[str],
    *,
    fps: float | None = 4.0,
    size: tuple[int, int] | None = (128, 128),
    fit: Fit = "pad",
    limits: MediaLimits = MediaLimits(),
) -> np.ndarray:
    """RGB frames `(T, H, W, 3)`; NO_STREAMS if the file has no video stream."""
    return decode_pictures(path, fps=fps, size=size, fit=fit, limits=limits).frames  # type: ignore[return-value]


def decode_pictures(
    path: str | os.PathLike[str],
    *,
    fps: float | None = 4.0,
    size: tuple[int, int] | None = (128, 128),
    fit: Fit = "pad",
    limits: MediaLimits = MediaLimits(),
) -> DecodedMedia:
    """The video stream alone, with its frames' `changes`; NO_STREAMS if the file has none."""
    out = _decode(
        path,
        fps=fps,
        size=size,
        sample_rate=16_000,
        video=True,
        audio=False,
        fit=fit,
        limits=limits,
        require="video",
    )
    assert out.frames is not None
    return out


__all__ = [
    "DecodedMedia",
    "MediaError",
    "MediaErrorReason",
    "MediaInfo",
    "MediaLimits",
    "StreamInfo",
    "decode",
    "decode_audio",
    "decode_pictures",
    "decode_video",
    "probe",
]
