"""Builders for the hostile files of issue 12 point 8, shared by the tests and the RSS benchmark.

Each builder writes one file into `root` and returns its path. They are deterministic and cheap
(the 8,200 x 8,200 frame is one flat h264 picture, ~1 s to encode; the file over max_bytes is
sparse, so it costs no disk).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from models.media import MediaLimits
from tests.models.conftest import FAST_VIDEO_OPTIONS, index_frame, wav_bytes, write_media


def _boxes(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(type, payload start, box end) of the ISO-BMFF boxes between start and end."""
    out = []
    while start + 8 <= end:
        size, kind = struct.unpack(">I4s", data[start : start + 8])
        if size < 8:
            break
        out.append((kind, start + 8, start + size))
        start += size
    return out


def _find(data: bytes, path: list[bytes]) -> list[int]:
    """Payload offsets of every box reached by `path` (e.g. moov/trak/mdia/mdhd)."""
    spans = [(0, len(data))]
    for kind in path:
        spans = [(s, e) for lo, hi in spans for k, s, e in _boxes(data, lo, hi) if k == kind]
    return [s for s, _ in spans]


def timescale_zero_mp4(root: Path) -> Path:
    """A normal h264+aac mp4 whose video media header declares timescale 0: every timestamp of
    that track is then a division by zero."""
    path = write_media(root / "timescale0.mp4", duration=2.0)
    data = bytearray(path.read_bytes())
    mdhd = _find(bytes(data), [b"moov", b"trak", b"mdia", b"mdhd"])[0]
    version = data[mdhd]
    at = mdhd + (20 if version == 1 else 12)  # version/flags, creation and modification times
    data[at : at + 4] = b"\0\0\0\0"
    path.write_bytes(bytes(data))
    return path


def sparse_file(root: Path, size: int) -> Path:
    """A valid WAV header followed by a hole: `size` bytes that occupy no disk."""
    path = root / "sparse.wav"
    with open(path, "wb") as f:
        f.write(wav_bytes(b"\0" * 3200))
        f.truncate(size)
    return path


def h264_flipped_slices(root: Path, frames: int = 100, every: int = 7) -> Path:
    """100 frames of moving noise in h264/mkv where every `every`-th non-key packet has bits of
    its slice data flipped. FFmpeg conceals the damage and flags the frames corrupt; nothing
    raises. The encoder's packets are rewritten before muxing, so timestamps stay valid."""
    path = root / "flipped.mkv"
    rng = np.random.default_rng(3)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options=FAST_VIDEO_OPTIONS["libx264"])
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        count = 0

        def mux(packets: list[av.Packet]) -> None:
            nonlocal count
            for packet in packets:
                count += 1
                if not packet.is_keyframe and count % every == 0:
                    data = bytearray(bytes(packet))
                    for k in range(len(data) // 3, len(data), 5):  # past the slice header
                        data[k] ^= 0x5A
                    damaged = av.Packet(bytes(data))
                    damaged.pts, damaged.dts = packet.pts, packet.dts
                    damaged.time_base, damaged.stream = packet.time_base, stream
                    packet = damaged
                out.mux(packet)

        for i in range(frames):
            img = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            mux(stream.encode(frame))
        mux(stream.encode(None))
    return path


def huge_frame_mp4(root: Path, side: int = 8200) -> Path:
    """One flat side x side h264 picture (67 Mpixels for 8,200): ~200 kB on disk, 100 MB once
    decoded."""
    path = root / f"frame{side}.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options=FAST_VIDEO_OPTIONS["libx264"])
        stream.width = stream.height = side
        stream.pix_fmt = "yuv420p"
        planes = np.full((side * 3 // 2, side), 128, np.uint8)
        frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
        frame.pts = 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def _many_aac_streams(path: Path, count: int, muxer: str | None = None) -> Path:
    """`count` short AAC streams: FFmpeg sets up a decoder per stream to read the header,
    ~0.7 MB each, which is what made the first 300-stream file cost 250 MB."""
    with av.open(str(path), "w", format=muxer) as out:
        streams = [out.add_stream("aac", rate=48_000, layout="mono") for _ in range(count)]
        for stream in streams:
            for k in range(2):
                frame = av.AudioFrame.from_ndarray(
                    np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
                )
                frame.sample_rate, frame.pts = 48_000, k * 1024
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
    return path


def many_streams_mkv(root: Path, count: int = 300) -> Path:
    """`count` AAC streams in Matroska (the demuxer drops what is past `max_streams`)."""
    return _many_aac_streams(root / f"streams{count}.mkv", count)


def many_tracks_mp4(root: Path, count: int = 300) -> Path:
    """`count` AAC tracks in mp4 (counted by the sniffer before FFmpeg opens the file)."""
    return _many_aac_streams(root / f"tracks{count}.mp4", count, "mp4")


def empty_fragmented_mp4(root: Path) -> Path:
    """A fragmented mp4 (empty moov, as live encoders write) cut before its first fragment: a
    video track and not one frame. FFmpeg writes no header for a stream that never muxed a
    packet, so one frame is written and its moof/mdat are dropped."""
    path = root / "fragmented_empty.mp4"
    with av.open(
        str(path), "w", format="mp4", options={"movflags": "frag_keyframe+empty_moov"}
    ) as out:
        stream = out.add_stream("libx264", rate=25, options=FAST_VIDEO_OPTIONS["libx264"])
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
        frame.pts = 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    data = path.read_bytes()
    kept = [data[s - 8 : e] for k, s, e in _boxes(data, 0, len(data)) if k in (b"ftyp", b"moov")]
    path.write_bytes(b"".join(kept))
    return path


def wav_65535_channels(root: Path) -> Path:
    """A WAV header declaring 65,535 channels of 8-bit PCM (the most the field holds)."""
    path = root / "ch65535.wav"
    path.write_bytes(wav_bytes(bytes(65535 * 4), channels=65535, bits=8))
    return path


def frozen_timestamps_mkv(root: Path, frames: int = 50) -> Path:
    """h264/mkv whose packets all carry timestamp 0 (Matroska allows equal timestamps): the
    frames cannot be placed in time and used to collapse into one."""
    path = root / "frozen.mkv"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options=FAST_VIDEO_OPTIONS["libx264"])
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        encoded = []
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(index_frame(i), format="rgb24")
            frame.pts = i
            encoded += stream.encode(frame)
        encoded += stream.encode(None)
        for packet in encoded:
            packet.pts = packet.dts = 0
            out.mux(packet)
    return path


def growing_frame_ts(root: Path, side: int = 8200, small: int = 250) -> Path:
    """MPEG-TS h264 whose first `small` pictures (10 s) are 64x48 and whose last one is side x
    side: FFmpeg reads the header from the first 5 s, so only the decoder meets the big one."""
    path = root / "growing.ts"
    with av.open(str(path), "w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=25, options=FAST_VIDEO_OPTIONS["libx264"])
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        packets = []
        for i in range(small):
            frame = av.VideoFrame.from_ndarray(index_frame(i), format="rgb24")
            frame.pts = i
            packets += stream.encode(frame)
        packets += stream.encode(None)
        big = av.CodecContext.create("libx264", "w")
        big.width = big.height = side
        big.pix_fmt, big.time_base = "yuv420p", Fraction(1, 25)
        big.options = dict(FAST_VIDEO_OPTIONS["libx264"])
        planes = np.full((side * 3 // 2, side), 128, np.uint8)
        frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
        frame.pts = small
        packets += big.encode(frame) + big.encode(None)
        for packet in packets:
            packet.stream = stream
            out.mux(packet)
    return path


def normal_clip(root: Path) -> Path:
    """The baseline: a 3 s 64x48 h264 + aac clip that decodes fine."""
    return write_media(root / "normal.mp4")


Builder = Callable[[Path], Path]

# name -> (builder, the reason decode must give with default limits; None: decodes fine)
HOSTILE: dict[str, tuple[Builder, str | None]] = {
    "timescale_zero": (timescale_zero_mp4, "bad_timestamps"),
    "flipped_slice_bits": (h264_flipped_slices, "corrupt"),
    "frame_8200x8200": (huge_frame_mp4, "frame_too_large"),
    "300_streams_mkv": (many_streams_mkv, "too_many_streams"),
    "300_tracks_mp4": (many_tracks_mp4, "too_many_streams"),
    "fragmented_no_frames": (empty_fragmented_mp4, "no_frames"),
    "wav_65535_channels": (wav_65535_channels, "too_many_channels"),
    "frozen_timestamps": (frozen_timestamps_mkv, "bad_timestamps"),
    "frame_grows_to_8200x8200": (growing_frame_ts, "frame_too_large"),
    "sparse_over_max_bytes": (
        lambda root: sparse_file(root, MediaLimits().max_bytes + 1),
        "too_large",
    ),
}
