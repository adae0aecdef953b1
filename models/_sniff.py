"""Identify a file from its first bytes, before FFmpeg sees any of it.

FFmpeg's own probing picks among hundreds of demuxers, some of which read other files or URLs
(HLS, concat, DASH, SDP/RTP, image sequences). We never let it probe: the bytes are matched
against a short list of signatures here and FFmpeg is told exactly which demuxer to use. The file
name and extension play no part.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO, Literal

HEAD_BYTES = 4096

SniffKind = Literal["media", "image", "reference", "unknown"]


@dataclass(frozen=True)
class Sniffed:
    """What the first bytes say. `demuxer` is an FFmpeg demuxer name, set only for media.
    `sample_rate`/`channels` (WAV) and `tracks` (mp4/mov) are read from the header where it is
    cheap, so limits can be checked before FFmpeg allocates anything; None when unknown."""

    kind: SniffKind
    what: str
    demuxer: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    tracks: int | None = None


# Brands of ISO-BMFF files that are still images (HEIF/AVIF), not movies.
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
_IMAGE_BRANDS = {b"avif", b"avis", *_HEIF_BRANDS}
# Top-level QuickTime boxes that may legitimately come first when there is no `ftyp`.
_MOV_BOXES = {b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot"}
_ASF_GUID = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")


def _image(head: bytes) -> str | None:
    """Name the still-image format `head` starts with, if any."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG image"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG image"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF image"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP image"
    if head[:2] == b"BM" and len(head) >= 14 and head[6:10] == b"\0\0\0\0":
        return "BMP image"
    if head[:4] in (b"II*\0", b"MM\0*"):
        return "TIFF image"
    if head[4:8] == b"ftyp" and head[8:12] in _IMAGE_BRANDS:
        return f"HEIF/AVIF image (brand {head[8:12].decode('latin-1')!r})"
    if head.startswith((b"\0\0\0\x0cjP  \r\n\x87\n", b"\xff\x0a", b"\0\0\0\x0cJXL ")):
        return "JPEG 2000 / JPEG XL image"
    return None


def _mpeg_ts(head: bytes) -> str | None:
    """MPEG-TS needs three sync bytes one packet apart (188 bytes, or 192 for M2TS)."""
    for start, step in ((0, 188), (4, 192)):
        if len(head) > start + 2 * step and all(head[start + k * step] == 0x47 for k in range(3)):
            return "mpegts"
    return None


def _elementary_audio(head: bytes) -> str | None:
    """Raw ADTS AAC or MPEG audio (MP3) frame headers, which have no magic number of their own."""
    if len(head) < 4 or head[0] != 0xFF:
        return None
    if head[1] & 0xF6 == 0xF0:  # 12-bit sync and layer 00: ADTS (FFF1 / FFF9)
        return "aac"
    version, layer = (head[1] >> 3) & 3, (head[1] >> 1) & 3
    bitrate, rate = head[2] >> 4, (head[2] >> 2) & 3
    if (
        head[1] & 0xE0 == 0xE0
        and version != 1
        and layer != 0
        and bitrate not in (0, 15)
        and rate != 3
    ):
        return "mp3"
    return None


def _container(head: bytes) -> str | None:
    """The FFmpeg demuxer for a recognised container signature, allowed or not."""
    if head[4:8] == b"ftyp" or head[4:8] in _MOV_BOXES:
        return "mov"
    signatures: list[tuple[int, bytes, str]] = [
        (0, b"\x1a\x45\xdf\xa3", "matroska"),
        (0, b"fLaC", "flac"),
        (0, b"OggS", "ogg"),
        (0, b"FLV\x01", "flv"),
        (0, _ASF_GUID, "asf"),
        (0, b"\x00\x00\x01\xba", "mpeg"),
        (0, b"caff", "caf"),
        (0, b"DKIF", "ivf"),
        (0, b"#!AMR", "amr"),
        (0, b".RMF", "rm"),
    ]
    for offset, magic, demuxer in signatures:
        if head[offset : offset + len(magic)] == magic:
            return demuxer
    if head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[:4] == b"riff" and head[4:8] == b"\x2e\x91\xcf\x11":
        return "w64"
    return _mpeg_ts(head) or _elementary_audio(head)


_TEXT_MARKERS: list[tuple[tuple[str, ...], str]] = [
    (("#extm3u", "#ext-x-", "#extinf"), "HLS/M3U playlist"),
    (("ffconcat",), "FFmpeg concat script"),
    (("[playlist]",), "PLS playlist"),
    (("[reference]",), "ASF reference file"),
    (("v=0",), "SDP session description"),
    (("<?xml", "<mpd", "<smil", "<asx", "<playlist", "<!doctype"), "XML/SMIL/DASH manifest"),
]


def _reference(head: bytes) -> str | None:
    """Name the playlist or script format whose whole purpose is to point at other files.
    A leading marker decides even if binary junk follows; the concat `file` directive, which
    may come after comments, is only looked for in text."""
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n").lower()
    for prefixes, what in _TEXT_MARKERS:
        if text.startswith(prefixes):
            return what
    if b"\0" in head[:512]:
        return None
    lines = (line.strip() for line in text.splitlines())
    if any(line.startswith(("file ", "file\t", "file'")) for line in lines):
        return "FFmpeg concat script"
    return None


def _id3_skip(f: BinaryIO, head: bytes) -> bytes | None:
    """Bytes after a leading ID3v2 tag, so we can see what audio it is attached to."""
    if not head.startswith(b"ID3") or len(head) < 10:
        return None
    size = 0
    for byte in head[6:10]:
        size = (size << 7) | (byte & 0x7F)
    footer = 10 if head[5] & 0x10 else 0
    f.seek(10 + size + footer)
    return f.read(16)


def sniff(f: BinaryIO) -> Sniffed:
    """Classify an open binary file by content. Leaves the position at an unspecified place."""
    f.seek(0)
    head = f.read(HEAD_BYTES)
    image = _image(head)
    if image:
        return Sniffed("image", image)
    after_id3 = _id3_skip(f, head)
    if after_id3 is not None:
        tagged = {b"fLaC": "flac"}.get(after_id3[:4]) or _elementary_audio(after_id3) or "mp3"
        return Sniffed("media", f"{tagged} with ID3 tag", tagged)
    demuxer = _container(head)
    if demuxer == "wav":
        rate, channels = _wav_format(head)
        return Sniffed("media", demuxer, demuxer, sample_rate=rate, channels=channels)
    if demuxer == "mov":
        return Sniffed("media", demuxer, demuxer, tracks=_mov_tracks(f))
    if demuxer:
        return Sniffed("media", demuxer, demuxer)
    reference = _reference(head)
    if reference:
        return Sniffed("reference", reference)
    return Sniffed("unknown", _describe_unknown(head))


def _wav_format(head: bytes) -> tuple[int | None, int | None]:
    """(sample rate, channels) from the `fmt ` chunk, if it lies within `head`. RF64/BW64 use the
    same chunk layout after their `ds64` chunk."""
    at = 12
    while at + 8 <= len(head):
        kind, size = head[at : at + 4], struct.unpack("<I", head[at + 4 : at + 8])[0]
        if kind == b"fmt ":
            if at + 16 > len(head):
                break
            channels, rate = struct.unpack("<HI", head[at + 10 : at + 16])
            return rate, channels
        at += 8 + size + (size & 1)  # chunks are padded to even sizes
    return None, None


_MAX_BOXES = 10_000  # a box walk over a hostile file must end, even with tiny boxes


def _box_headers(f: BinaryIO, start: int, end: int | None) -> list[tuple[bytes, int, int]]:
    """(type, payload start, box end) of the ISO-BMFF boxes from `start`, reading only headers."""
    boxes: list[tuple[bytes, int, int]] = []
    at = start
    while (end is None or at + 8 <= end) and len(boxes) < _MAX_BOXES:
        f.seek(at)
        header = f.read(8)
        if len(header) < 8:
            break
        size, kind = struct.unpack(">I4s", header)
        payload = at + 8
        if size == 1:  # 64-bit size follows
            large = f.read(8)
            if len(large) < 8:
                break
            (size,) = struct.unpack(">Q", large)
            payload += 8
        elif size == 0:  # box runs to the end of the file (or of its parent)
            boxes.append((kind, payload, -1 if end is None else end))
            break
        if size < payload - at:
            break
        boxes.append((kind, payload, at + size))
        at += size
    return boxes


def _mov_tracks(f: BinaryIO) -> int | None:
    """How many `trak` boxes the first `moov` holds (FFmpeg reads only the first), or None when
    there is no moov to count. Only box headers are read, wherever the moov sits."""
    for kind, payload, end in _box_headers(f, 0, None):
        if kind == b"moov":
            children = _box_headers(f, payload, None if end < 0 else end)
            return sum(1 for child, _, _ in children if child == b"trak")
    return None


def _describe_unknown(head: bytes) -> str:
    """A short human hint for bytes we could not place."""
    if b"\0" not in head[:512]:
        return "text or unrecognised bytes"
    (first,) = struct.unpack(">I", head[:4].ljust(4, b"\0"))
    return f"unrecognised binary data (starts with 0x{first:08x})"
