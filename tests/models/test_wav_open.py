"""A WAV's header says everything FFmpeg's stream probe looks for, so the probe reads only the
start of one (`models.media._WAV_PROBE_BYTES`): with FFmpeg's default it read a whole 6 s
44.1 kHz file through the guarded reader to open it. What a WAV decodes to must not change."""

from __future__ import annotations

import numpy as np
import pytest

import models.media as media_module
from models.media import decode_audio, probe
from tests.models.conftest import MediaFactory, float_wav, pcm16_wav, tone, wav_bytes


def _bytes_read(monkeypatch) -> list[int]:
    """Every read FFmpeg makes through the guarded reader, by size."""
    reads: list[int] = []
    original = media_module._GuardedReader.read

    def counted(self, n: int) -> bytes:
        data = original(self, n)
        reads.append(len(data))
        return data

    monkeypatch.setattr(media_module._GuardedReader, "read", counted)
    return reads


def test_opening_a_wav_reads_its_start_only(media: MediaFactory, monkeypatch) -> None:
    path = media.bytes("long.wav", pcm16_wav(tone(10.0, 48_000, 2, None), rate=48_000))
    size = path.stat().st_size  # 1.9 MB
    reads = _bytes_read(monkeypatch)
    info = probe(path)
    assert info.duration_s == pytest.approx(10.0, abs=0.01)
    assert info.streams[0].sample_rate == 48_000 and info.streams[0].channels == 2
    # the reader's 64 KB buffers: a few of them, where FFmpeg's default probe read it all
    assert sum(reads) <= 4 * 65_536 < size / 5
    reads.clear()
    audio, _ = decode_audio(path)  # decoding then reads it all, once
    assert len(audio) == pytest.approx(160_000, abs=2) and sum(reads) >= size - 64


def _wavs(media: MediaFactory) -> dict[str, object]:
    x = tone(3.0, 44_100, 2, click_at=1.0)
    mono = tone(2.0, 22_050, 1, click_at=0.5)
    pcm = (np.clip(mono, -1, 1) * 32767).astype("<i2").tobytes()
    return {
        "stereo 44.1 kHz": media.bytes("a.wav", pcm16_wav(x, rate=44_100)),
        "float": media.bytes("f.wav", float_wav(mono[0], rate=22_050)),
        # the data chunk says more than the file holds, and a fact chunk gives a length
        "short data": media.bytes(
            "s.wav", wav_bytes(pcm, rate=22_050, data_size=len(pcm) * 4, fact_samples=len(pcm))
        ),
        "8-bit": media.bytes(
            "u8.wav", wav_bytes(((mono[0] + 1) * 127.5).astype(np.uint8).tobytes(), bits=8)
        ),
        "in mp4 beside": media.av("m.mp4", audio="aac", rate=44_100, channels=2, duration=2.0),
    }


def test_a_wav_decodes_as_with_ffmpegs_whole_probe(media: MediaFactory, monkeypatch) -> None:
    """The same samples, length and description as when the probe may read 5 MB (FFmpeg's
    default), for WAVs whose headers tell the truth and one whose data chunk does not; other
    containers are not touched."""
    files = _wavs(media)
    shorter = {}
    for name, path in files.items():
        shorter[name] = (probe(path), decode_audio(path))
    monkeypatch.setattr(media_module, "_WAV_PROBE_BYTES", 5_000_000)
    for name, path in files.items():
        info, (samples, rate) = shorter[name]
        whole_info = probe(path)
        whole, whole_rate = decode_audio(path)
        assert info.streams == whole_info.streams and info.duration_s == whole_info.duration_s
        assert rate == whole_rate and np.array_equal(samples, whole), name
