"""Hostile and broken files: each must end as a MediaError with the exact reason, quickly.

A crash (segfault, abort) would kill the xdist worker and fail the run, so every passing case
also shows that the process survived it.
"""

from __future__ import annotations

import io
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from av.audio.plane import AudioPlane

import models._decode as decode_module
import models.media as media_module
from models._sniff import sniff
from models.media import MediaError, MediaLimits, decode, decode_audio, decode_video, probe
from models.media import MediaErrorReason as R
from tests.models import hostile
from tests.models.conftest import MediaFactory, float_wav, pcm16_wav, tone, wav_bytes, write_media
from tests.models.hostile import HOSTILE

Case = Callable[[MediaFactory], "tuple[Path | str, MediaLimits]"]
DEFAULT = MediaLimits()


def _cut(path: Path, fraction: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def _cut_after_packet(path: Path, fraction: float = 0.5) -> Path:
    """Cut at the end of the packet nearest `fraction` of the bytes: the file is short, yet
    every packet left is whole, so no decoder error can come before the truncation rule."""
    data = path.read_bytes()
    with av.open(str(path)) as container:
        ends = [p.pos + p.size for p in container.demux() if p.size and (p.pos or 0) > 0]
    end = min(ends, key=lambda e: abs(e - len(data) * fraction))
    path.write_bytes(data[:end])
    return path


def _png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\0" + b"\x80" * 12 for _ in range(4)))
    chunks = chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def _image(media: MediaFactory, name: str, muxer: str, codec: str, pix_fmt: str) -> Path:
    path = media.path(name)
    with av.open(str(path), "w", format=muxer) as out:
        stream = out.add_stream(codec, rate=5)
        stream.width = stream.height = 16
        stream.pix_fmt = pix_fmt
        frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 90, np.uint8), format="rgb24")
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def _subtitle_only(media: MediaFactory) -> Path:
    path = media.path("subs.mkv")
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ass")
        for i in range(3):
            packet = av.Packet(f"Dialogue: line {i}".encode())
            packet.stream, packet.time_base = stream, Fraction(1, 1000)
            packet.pts = packet.dts = i * 1000
            out.mux(packet)
    return path


def _data_only(media: MediaFactory) -> Path:
    path = media.path("data.ts")
    with av.open(str(path), "w", format="mpegts") as out:
        stream = out.add_data_stream()
        for i in range(3):
            packet = av.Packet(b"x" * 32)
            packet.stream, packet.time_base = stream, Fraction(1, 90_000)
            packet.pts = packet.dts = i * 90_000
            out.mux(packet)
    return path


def _many_audio_streams(media: MediaFactory, count: int = 20) -> Path:
    path = media.path("many.mkv")
    with av.open(str(path), "w") as out:
        streams = [out.add_stream("pcm_s16le", rate=8000, layout="mono") for _ in range(count)]
        for stream in streams:
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 800), np.int16), format="s16", layout="mono"
            )
            frame.sample_rate, frame.pts = 8000, 0
            out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
    return path


class _NoSeek:
    """Write-only sink: the muxer cannot go back to write durations, like a live stream."""

    def __init__(self, f: object) -> None:
        self.write = f.write  # type: ignore[attr-defined]


def _live_mkv(media: MediaFactory) -> Path:
    path = media.path("live.mkv")
    with open(path, "wb") as f:
        write_media(path, container="matroska", audio="flac", file=_NoSeek(f))
    return path


def _silence_wav(**header: int) -> bytes:
    return wav_bytes(b"\0" * 3200, **header)


def _float_wav_with(value: float) -> bytes:
    x = tone(1.0, 16_000, click_at=None)[0]
    x[8000] = value
    return float_wav(x)


def _wav_lying_about_length() -> bytes:
    hours = 16_000 * 3600 * 5  # 5 h of 16 kHz mono in the `fact` chunk; 0.1 s of real data
    return wav_bytes(b"\0" * 3200, data_size=2 * hours, fact_samples=hours)


M3U8 = "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{target}\n#EXT-X-ENDLIST\n"
FFCONCAT = "ffconcat version 1.0\nfile '{target}'\n"
CONCAT = "# list\nfile '{target}'\n"
SDP = "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nm=audio 5004 RTP/AVP 0\n"
MPD = '<?xml version="1.0"?>\n<MPD><Period><BaseURL>{target}</BaseURL></Period></MPD>\n'


def _text(name: str, text: str) -> Case:
    return lambda m: (m.bytes(name, text.format(target=m.av("real.mp4")).encode()), DEFAULT)


def _bytes(name: str, data: bytes, limits: MediaLimits = DEFAULT) -> Case:
    return lambda m: (m.bytes(name, data), limits)


def _av(name: str, limits: MediaLimits = DEFAULT, cut: float | None = None, **kw: object) -> Case:
    def build(m: MediaFactory) -> tuple[Path, MediaLimits]:
        path = m.av(name, **kw)
        return (_cut(path, cut) if cut else path), limits

    return build


RNG_BYTES = np.random.default_rng(7).integers(0, 256, 64_000, dtype=np.uint8).tobytes()
FASTSTART = {"movflags": "faststart"}

CASES: list[tuple[str, Case, R]] = [
    ("zero_bytes", _bytes("empty.mp4", b""), R.EMPTY),
    ("cut_moov_at_end", _av("cut.mp4", cut=0.5), R.CORRUPT),
    (
        "cut_faststart",
        _av("cutfs.mp4", cut=0.5, audio=None, container_options=FASTSTART),
        R.CORRUPT,
    ),
    ("cut_faststart_av", _av("cutfsav.mp4", cut=0.5, container_options=FASTSTART), R.CORRUPT),
    ("cut_matroska", _av("cut.mkv", cut=0.5, audio="flac"), R.CORRUPT),
    (
        "ftyp_only",
        _bytes("ftyp.mp4", struct.pack(">I", 24) + b"ftypisom" + bytes(4) + b"isommp41"),
        R.CORRUPT,
    ),
    ("random_bytes", _bytes("random.mp4", RNG_BYTES), R.UNKNOWN_FORMAT),
    ("text", _bytes("notes.mp4", b"just some notes\nabout a video\n"), R.UNKNOWN_FORMAT),
    ("json", _bytes("meta.mp4", json.dumps({"title": "x", "fps": 25}).encode()), R.UNKNOWN_FORMAT),
    ("pdf", _bytes("doc.mp4", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"), R.UNKNOWN_FORMAT),
    ("hls_m3u8", _text("list.m3u8", M3U8), R.EXTERNAL_REFERENCE),
    ("hls_named_mp4", _text("list.mp4", M3U8), R.EXTERNAL_REFERENCE),
    ("ffconcat", _text("list.ffconcat", FFCONCAT), R.EXTERNAL_REFERENCE),
    ("concat_list", _text("list.txt", CONCAT), R.EXTERNAL_REFERENCE),
    ("sdp", _text("stream.sdp", SDP), R.EXTERNAL_REFERENCE),
    ("dash_mpd", _text("manifest.mp4", MPD), R.EXTERNAL_REFERENCE),
    (
        "pls",
        _text("radio.mp4", "[playlist]\nFile1={target}\nNumberOfEntries=1\n"),
        R.EXTERNAL_REFERENCE,
    ),
    ("png", _bytes("image.mp4", _png()), R.UNSUPPORTED_CONTAINER),
    (
        "gif",
        lambda m: (_image(m, "anim.mp4", "gif", "gif", "rgb8"), DEFAULT),
        R.UNSUPPORTED_CONTAINER,
    ),
    (
        "jpeg",
        lambda m: (_image(m, "photo.mp4", "mjpeg", "mjpeg", "yuvj420p"), DEFAULT),
        R.UNSUPPORTED_CONTAINER,
    ),
    ("webp", _bytes("image.webm", b"RIFF\x24\0\0\0WEBPVP8 " + bytes(24)), R.UNSUPPORTED_CONTAINER),
    (
        "flv_not_allowed",
        _av("a.flv", audio=None, video="flv", duration=0.3),
        R.UNSUPPORTED_CONTAINER,
    ),
    (
        "wav_not_allowed",
        _bytes("a.wav", _silence_wav(), MediaLimits(containers=frozenset({"mov"}))),
        R.UNSUPPORTED_CONTAINER,
    ),
    ("subtitle_only", lambda m: (_subtitle_only(m), DEFAULT), R.NO_STREAMS),
    ("data_only", lambda m: (_data_only(m), DEFAULT), R.NO_STREAMS),
    ("twenty_audio_streams", lambda m: (_many_audio_streams(m), DEFAULT), R.TOO_MANY_STREAMS),
    ("wav_header_claims_hours", _bytes("hours.wav", _wav_lying_about_length()), R.TOO_LONG),
    ("longer_than_limit", _av("long.mp4", MediaLimits(max_duration_s=1.0)), R.TOO_LONG),
    ("no_declared_duration", lambda m: (_live_mkv(m), MediaLimits(max_duration_s=1.0)), R.TOO_LONG),
    (
        "frame_above_limit",
        _av("big.mp4", MediaLimits(max_pixels=64 * 47), audio=None),
        R.FRAME_TOO_LARGE,
    ),
    (
        "sliver_8000x16",
        _av(
            "sliver.mp4", MediaLimits(max_pixels=100_000), audio=None, size=(16, 8000), duration=0.2
        ),
        R.FRAME_TOO_LARGE,
    ),
    ("1000_fps", _av("fast.mp4", audio=None, fps=1000, duration=0.05), R.BAD_FRAME_RATE),
    ("ffv1_video", _av("ffv1.mkv", audio=None, video="ffv1", duration=0.2), R.UNSUPPORTED_CODEC),
    ("raw_video", _av("raw.mkv", audio=None, video="rawvideo", duration=0.2), R.UNSUPPORTED_CODEC),
    (
        "mulaw_audio",
        _av("mulaw.wav", video=None, audio="pcm_mulaw", rate=8000, duration=0.5),
        R.UNSUPPORTED_CODEC,
    ),
    (
        "adpcm_audio",
        _av("adpcm.wav", video=None, audio="adpcm_ms", rate=8000, duration=0.5),
        R.UNSUPPORTED_CODEC,
    ),
    ("megahertz_wav", _bytes("mhz.wav", _silence_wav(rate=1_000_000)), R.BAD_SAMPLE_RATE),
    ("1khz_wav", _bytes("khz.wav", _silence_wav(rate=1000)), R.BAD_SAMPLE_RATE),
    (
        "64_channels",
        _bytes("ch64.wav", wav_bytes(bytes(64 * 2 * 100), channels=64)),
        R.TOO_MANY_CHANNELS,
    ),
    (
        "32_channels",
        _bytes("ch32.wav", wav_bytes(bytes(32 * 2 * 100), channels=32)),
        R.TOO_MANY_CHANNELS,
    ),
    ("nan_samples", _bytes("nan.wav", _float_wav_with(np.nan)), R.INVALID_SAMPLES),
    ("inf_samples", _bytes("inf.wav", _float_wav_with(np.inf)), R.INVALID_SAMPLES),
    ("huge_samples", _bytes("huge.wav", _float_wav_with(1e30)), R.INVALID_SAMPLES),
    ("above_max_bytes", _bytes("a.wav", _silence_wav(), MediaLimits(max_bytes=1000)), R.TOO_LARGE),
    ("zero_wall_time", _av("a.mp4", MediaLimits(max_wall_s=0.0)), R.TIMEOUT),
    ("directory", lambda m: (m.root, DEFAULT), R.NOT_A_FILE),
    ("dev_zero", lambda m: ("/dev/zero", DEFAULT), R.NOT_A_FILE),
    ("missing", lambda m: (m.path("missing.mp4"), DEFAULT), R.NOT_FOUND),
    (
        "concat_protocol",
        lambda m: (f"concat:{m.av('x.mp4')}|{m.av('y.mp4')}", DEFAULT),
        R.NOT_FOUND,
    ),
    ("file_protocol", lambda m: (f"file:{m.av('x.mp4')}", DEFAULT), R.NOT_FOUND),
]


@pytest.mark.parametrize(("build", "reason"), [pytest.param(b, r, id=i) for i, b, r in CASES])
def test_hostile_file_is_refused_with_reason(media: MediaFactory, build: Case, reason: R) -> None:
    path, limits = build(media)
    started = time.monotonic()
    with pytest.raises(MediaError) as caught:
        decode(path, limits=limits)
    assert caught.value.reason == reason, caught.value
    assert time.monotonic() - started < 5.0
    assert caught.value.path == os.fsdecode(path) and caught.value.message
    assert str(caught.value).endswith(f"[{reason}]")


def test_truncation_rule_names_both_durations(media: MediaFactory) -> None:
    """A cut inside a packet gave the decoder's "Invalid data" with one or two frame threads and
    this message with three or more (a frame thread's error at the end is not reported)."""
    path = _cut_after_packet(media.av("cut.mp4", audio=None, container_options=FASTSTART))
    with pytest.raises(MediaError, match=r"truncated: video declared 3\.00 s, decoded") as caught:
        decode(path)
    assert caught.value.reason == R.CORRUPT


def test_corrupt_message_carries_ffmpeg_reason(media: MediaFactory) -> None:
    path = _cut(media.av("cut.mp4"))
    with pytest.raises(MediaError) as caught:
        probe(path)
    assert caught.value.message == (
        "FFmpeg failed while reading the header: Invalid data found when processing input"
    )


@pytest.mark.parametrize("kind", ["fifo", "socket"])
def test_special_files_are_refused_without_blocking(media: MediaFactory, kind: str) -> None:
    path = media.path(f"special.{kind}")
    if kind == "fifo":
        os.mkfifo(path)  # opening this for reading would block forever without a writer
    else:
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
    started = time.monotonic()
    with pytest.raises(MediaError) as caught:
        decode(path)
    assert caught.value.reason == R.NOT_A_FILE
    assert time.monotonic() - started < 1.0
    if kind == "socket":
        server.close()


@contextmanager
def fifo_watch(path: Path) -> Iterator[list[float]]:
    """Make `path` a FIFO and record every moment someone has it open for reading: a non-blocking
    open for writing succeeds only while a reader exists (ENXIO otherwise)."""
    os.mkfifo(path)
    seen: list[float] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                pass
            else:
                seen.append(time.monotonic())
                os.close(fd)
            time.sleep(0.001)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()


def test_fifo_watch_detects_a_reader(media: MediaFactory) -> None:
    """The probe below must be able to fail: a real reader is noticed."""
    path = media.path("watched")
    with fifo_watch(path) as seen:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        time.sleep(0.05)
        os.close(fd)
    assert seen


@pytest.mark.parametrize(
    ("name", "template"),
    [
        ("list.m3u8", M3U8),
        ("list.mp4", M3U8),
        ("list.ffconcat", FFCONCAT),
        ("list.txt", CONCAT),
        ("manifest.mpd", MPD),
    ],
)
def test_references_are_never_followed(media: MediaFactory, name: str, template: str) -> None:
    target = media.path("segment.ts")
    with fifo_watch(target) as seen:
        path = media.bytes(name, template.format(target=target).encode())
        started = time.monotonic()
        for call in (probe, decode, decode_audio, decode_video):
            with pytest.raises(MediaError) as caught:
                call(path)
            assert caught.value.reason == R.EXTERNAL_REFERENCE
        assert time.monotonic() - started < 2.0
        time.sleep(0.02)
    assert not seen


def _forced_open(path: Path, demuxer: str, guarded: bool) -> list[str]:
    """Hand a playlist straight to FFmpeg's own demuxer, through the same file object as in
    production, with or without our options; returns what the io_open hook was asked for."""
    guard = media_module._NestedOpenGuard()
    with open(path, "rb") as raw:
        reader = media_module._GuardedReader(raw, media_module._Deadline(5.0, str(path)))
        try:
            if guarded:
                container = media_module._open_container(reader, demuxer, guard)
            else:
                container = av.open(reader, format=demuxer)
            with container:
                for _ in container.demux():
                    pass
        except av.FFmpegError:
            pass  # a demuxer that cannot open its segments fails: fine, we only watch the FIFO
    return guard.attempts


# Relative names pass concat's default `safe` check and the `.ts` name passes HLS's extension
# check, so FFmpeg's own defences do not stop these; only ours do. The reader has no name, so
# FFmpeg resolves the relative name against the working directory.
FORCED = [("hls", "list.m3u8", M3U8), ("concat", "list.txt", FFCONCAT)]


@pytest.mark.parametrize("guarded", [True, False], ids=["guarded", "control_unguarded"])
@pytest.mark.parametrize(("demuxer", "name", "template"), FORCED)
def test_ffmpeg_cannot_open_other_files_even_if_asked(
    media: MediaFactory, monkeypatch, demuxer: str, name: str, template: str, guarded: bool
) -> None:
    """Second line of defence, below the sniffer: even with FFmpeg's HLS or concat demuxer
    forced onto a playlist, the protocol whitelist and io_open hook open nothing. The unguarded
    control shows that the threat is real and that the FIFO watch sees it."""
    monkeypatch.chdir(media.root)
    path = media.bytes(name, template.format(target="segment.ts").encode())
    with fifo_watch(media.path("segment.ts")) as seen:
        attempts = _forced_open(path, demuxer, guarded)
        time.sleep(0.02)
    assert bool(seen) is not guarded
    if guarded and demuxer == "hls":
        assert attempts == ["segment.ts"]  # asked through the hook, answered with nothing


def test_fake_clock_times_out_mid_decode(media: MediaFactory, monkeypatch) -> None:
    path = media.av("a.mp4")
    ticks = iter(range(10**6))
    monkeypatch.setattr(media_module, "_clock", lambda: float(next(ticks)))  # 1 s per look
    with pytest.raises(MediaError) as caught:
        decode(path, limits=MediaLimits(max_wall_s=60.0))
    assert caught.value.reason == R.TIMEOUT
    assert next(ticks) > 60  # the clock was consulted all through the decode, not just once


def test_required_stream_missing(media: MediaFactory) -> None:
    silent = media.av("silent.mp4", audio=None, duration=0.5)
    wav = media.bytes("a.wav", pcm16_wav(tone(0.5, 16_000)))
    for call, path in ((decode_audio, silent), (decode_video, wav)):
        with pytest.raises(MediaError) as caught:
            call(path)
        assert caught.value.reason == R.NO_STREAMS


def _ts(packet: int, offset: int = 0) -> bytes:
    return b"".join(bytes(offset) + b"\x47" + bytes(packet - offset - 1) for _ in range(3))


def _id3(rest: bytes, size: int = 300) -> bytes:
    syncsafe = bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0))
    return b"ID3\x04\x00\x00" + syncsafe + bytes(size) + rest


@pytest.mark.parametrize(
    ("head", "kind", "demuxer"),
    [
        (b"\0\0\0\x20ftypisom" + bytes(20), "media", "mov"),
        (b"\0\0\0\x08wide\0\0\0\x10mdat", "media", "mov"),
        (b"\0\0\0\x1cftypheic" + bytes(20), "image", None),
        (b"\0\0\0\x1cftypavif" + bytes(20), "image", None),
        (b"\x1a\x45\xdf\xa3" + bytes(40), "media", "matroska"),
        (b"RIFF\0\0\0\0WAVEfmt ", "media", "wav"),
        (b"RF64\xff\xff\xff\xffWAVEds64", "media", "wav"),
        (b"RIFF\0\0\0\0AVI LIST", "media", "avi"),
        (b"RIFF\0\0\0\0WEBPVP8 ", "image", None),
        (b"fLaC\0\0\0\x22", "media", "flac"),
        (b"OggS\0\x02" + bytes(30), "media", "ogg"),
        (b"\xff\xf1\x50\x80\x02\x1f\xfc", "media", "aac"),  # ADTS, MPEG-4
        (b"\xff\xf9\x50\x80\x02\x1f\xfc", "media", "aac"),  # ADTS, MPEG-2
        (b"\xff\xfb\x90\x64" + bytes(40), "media", "mp3"),  # MPEG-1 layer III, 128 kb/s
        (b"\xff\xfb\xf0\x64" + bytes(40), "unknown", None),  # bitrate index 15 is invalid
        (_id3(b"\xff\xfb\x90\x64"), "media", "mp3"),
        (_id3(b"fLaC\0\0\0\x22"), "media", "flac"),
        (_id3(b"\xff\xf1\x50\x80"), "media", "aac"),
        (_ts(188), "media", "mpegts"),
        (_ts(192, 4), "media", "mpegts"),  # M2TS (Blu-ray, AVCHD) timestamps each packet
        (b"\x47" + bytes(100), "unknown", None),  # one sync byte proves nothing
        (b"FLV\x01\x05" + bytes(20), "media", "flv"),
        (b"\x00\x00\x01\xba" + bytes(20), "media", "mpeg"),
        (b"\x89PNG\r\n\x1a\n" + bytes(20), "image", None),
        (b"\xff\xd8\xff\xe0" + bytes(20), "image", None),
        (b"GIF87a" + bytes(20), "image", None),
        (b"BM\x36\0\0\0\0\0\0\0\x36\0\0\0", "image", None),
        (b"II*\0" + bytes(20), "image", None),
        (b"\xef\xbb\xbf#EXTM3U\n", "reference", None),  # UTF-8 BOM first
        (b"  \n#EXT-X-VERSION:3\n", "reference", None),
        (b"FFCONCAT VERSION 1.0\n", "reference", None),
        (b"# comment\nfile 'a.mp4'\n" + b"\n" * 600, "reference", None),
        (b"<?xml version='1.0'?><smil>", "reference", None),
        (b"<MPD xmlns='urn:mpeg:dash:schema:mpd:2011'>", "reference", None),
        (b"[Reference]\nRef1=http://x/y.asf\n", "reference", None),
        (b"hello world\n", "unknown", None),
        (b"\0\x01\x02\x03" * 64, "unknown", None),
    ],
)
def test_sniff_signatures(head: bytes, kind: str, demuxer: str | None) -> None:
    found = sniff(io.BytesIO(head + bytes(400 - min(len(head), 400))))
    assert (found.kind, found.demuxer) == (kind, demuxer), found


def test_stream_appearing_mid_file_is_corrupt() -> None:
    """Found by fuzzing: when an MPEG-TS file announces a new stream after the header was read,
    PyAV's demux raises IndexError. That must surface as CORRUPT, not as an IndexError."""

    class Container:
        def demux(self, *streams: object) -> Iterator[str]:
            yield "packet"
            raise IndexError("list index out of range")

    packets = decode_module._packets(Container(), [], "x.ts")  # type: ignore[arg-type]
    assert next(packets) == "packet"
    with pytest.raises(MediaError) as caught:
        next(packets)
    assert caught.value.reason == R.CORRUPT


def test_hostile_files_do_not_kill_the_process(media: MediaFactory) -> None:
    """The suite above runs in-process, where a segfault would take the worker down. This runs
    a sample in a child process and checks it exits normally, with the right reasons. The 7.1
    file is valid: its planar 8-channel frames are what crashed PyAV's `to_ndarray`."""
    cases = {
        str(_cut(media.av("cut.mp4"))): "corrupt",
        str(media.bytes("nan.wav", _float_wav_with(np.nan))): "invalid_samples",
        str(media.bytes("random.mp4", RNG_BYTES)): "unknown_format",
        str(media.av("71.ogg", video=None, audio="libopus", channels=8, duration=0.5)): "ok",
    }
    code = (
        "import sys, json\n"
        "from models.media import decode, MediaError\n"
        "for path in json.loads(sys.argv[1]):\n"
        "    try:\n"
        "        decode(path)\n"
        "        print('ok')\n"
        "    except MediaError as e:\n"
        "        print(e.reason)\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(list(cases))],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == list(cases.values())


# ---------------------------------------------------------------------------------------------
# Issue 12 point 8: the last hostile files that passed, or were refused for the wrong reason


@pytest.mark.parametrize("name", list(HOSTILE))
def test_point8_file_gets_its_own_reason(media: MediaFactory, name: str) -> None:
    build, reason = HOSTILE[name]
    path = build(media.root)
    with pytest.raises(MediaError) as caught:
        decode(path)
    assert caught.value.reason == reason, caught.value


def test_timescale_zero_names_both_durations(media: MediaFactory) -> None:
    with pytest.raises(MediaError, match=r"run to 512\.00 s but the stream declares 2\.00 s"):
        decode(hostile.timescale_zero_mp4(media.root))


def test_broken_timestamps_are_not_refused_as_too_long(media: MediaFactory) -> None:
    """The service decodes with a shorter max_duration_s: the broken time base must still be
    named as such, not as a size-class answer (413 too_long)."""
    path = hostile.timescale_zero_mp4(media.root)
    with pytest.raises(MediaError) as caught:
        decode(path, limits=MediaLimits(max_duration_s=300.0))
    assert caught.value.reason == R.BAD_TIMESTAMPS


def test_corrupt_share_policy(media: MediaFactory) -> None:
    """10 of 100 frames flagged corrupt: refused at the default 5% with the counts in the
    message, accepted when the operator allows 20%."""
    path = hostile.h264_flipped_slices(media.root)
    with pytest.raises(MediaError, match=r": 10 of 100 video frames are flagged corrupt") as caught:
        decode(path)
    assert caught.value.reason == R.CORRUPT
    out = decode(path, limits=MediaLimits(max_corrupt_share=0.2))
    assert out.frames is not None and out.frames.shape[0] == 16  # 4 s at 4 frames/s


def test_clean_clip_passes_the_damage_rules(media: MediaFactory) -> None:
    out = decode(hostile.normal_clip(media.root))
    assert out.frames is not None and out.audio is not None


def test_default_max_bytes_refuses_a_2gib_file(media: MediaFactory) -> None:
    """Sparse files: their size costs no disk."""
    assert MediaLimits().max_bytes < 2 * 1024**3
    for size in (MediaLimits().max_bytes + 1, 2 * 1024**3):
        with pytest.raises(MediaError) as caught:
            decode(hostile.sparse_file(media.root, size))
        assert caught.value.reason == R.TOO_LARGE


def test_sniffer_reads_wav_format_and_counts_mp4_tracks(media: MediaFactory) -> None:
    with open(hostile.wav_65535_channels(media.root), "rb") as f:
        found = sniff(f)
    assert (found.demuxer, found.sample_rate, found.channels) == ("wav", 16_000, 65535)
    with open(hostile.many_tracks_mp4(media.root, count=20), "rb") as f:
        assert sniff(f).tracks == 20
    with open(media.av("one.mp4", video=None, duration=0.2), "rb") as f:
        assert sniff(f).tracks == 1


# The import alone (interpreter, numpy, PyAV) is ~45 MB; a normal 3 s clip adds ~14 MB.
MEMORY_CASES = ["frame_8200x8200", "frame_grows_to_8200x8200", "300_streams_mkv", "300_tracks_mp4"]


@pytest.mark.parametrize("name", MEMORY_CASES)
def test_refusing_costs_no_big_allocation(media: MediaFactory, name: str) -> None:
    """In a fresh process, as the benchmark measures it: refusing these cost 160-210 MB over
    the import before the limits reached FFmpeg; now under 80 MB (the decoder still sets up
    per-macroblock tables for a picture it will not allocate)."""
    from benchmarks.bench_hostile_rss import measure

    build, reason = HOSTILE[name]
    got = measure(str(build(media.root)))
    assert got["reason"] == reason
    assert float(got["peak_mb"]) - float(got["import_mb"]) < 80.0, got


def _over_import(got: dict[str, float | str]) -> float:
    return float(got["peak_mb"]) - float(got["import_mb"])


def test_a_growing_streams_cost_follows_decode_threads_not_the_cores(media: MediaFactory) -> None:
    """Each frame thread makes its own per-picture tables for the size the bitstream declares
    before the 8,200^2 picture is refused (~21 MB a thread). FFmpeg's default count is the
    machine's cores + 1, so the bound above held on two cores and failed on a CI machine with
    more; the count is `MediaLimits.decode_threads` now."""
    from benchmarks.bench_hostile_rss import measure

    path = str(hostile.growing_frame_ts(media.root))
    one, three = measure(path, decode_threads=1), measure(path, decode_threads=3)
    assert one["reason"] == three["reason"] == "frame_too_large"
    assert _over_import(three) - _over_import(one) > 30.0, (one, three)
    assert _over_import(one) < 60.0, one  # 28 MB here; machines differ by ~10 (see above)


def test_decode_threads_change_no_pixel(media: MediaFactory) -> None:
    path = media.av("threads.mp4", duration=2.0)
    one = decode(path, limits=MediaLimits(decode_threads=1))
    four = decode(path, limits=MediaLimits(decode_threads=4))
    assert one.frames is not None and four.frames is not None
    assert np.array_equal(one.frames, four.frames)
    assert np.array_equal(one.audio, four.audio)
    with pytest.raises(ValueError, match="decode_threads must be at least 1"):
        MediaLimits(decode_threads=0)


@pytest.mark.parametrize("layout", ["mono", "stereo", "7.1"])
@pytest.mark.parametrize("fmt", ["fltp", "flt", "dblp"])
def test_every_plane_of_a_float_frame_is_checked(layout: str, fmt: str) -> None:
    """The check reads each plane on its own (7.1 planar: the 8 real planes, never PyAV's
    count of them): a bad sample in the last channel is found, and which kind it is."""
    channels = av.AudioLayout(layout).nb_channels
    planar = fmt.endswith("p")
    dtype = np.float64 if fmt.startswith("dbl") else np.float32

    def frame(value: float) -> av.AudioFrame:
        x = np.zeros((channels, 256), dtype)
        x[-1, 200] = value
        # written plane by plane: `from_ndarray` trips on 7.1 planar as `to_ndarray` does
        f = av.AudioFrame(format=fmt, layout=layout, samples=256)
        f.sample_rate = 16_000
        planes = [x[c] for c in range(channels)] if planar else [x.T.reshape(-1)]
        for c, values in enumerate(planes):
            np.frombuffer(memoryview(AudioPlane(f, c)), dtype, values.size)[:] = values
        return f

    decode_module._check_samples(frame(0.5), "p")
    for value, message in (
        (np.nan, "NaN or infinite"),
        (-np.inf, "NaN or infinite"),
        (-80.0, "absurd"),
    ):
        with pytest.raises(MediaError, match=message) as caught:
            decode_module._check_samples(frame(value), "p")
        assert caught.value.reason == R.INVALID_SAMPLES
