"""Landmark fingerprints: a piece of an indexed recording is found, and placed, whatever its
level or codec; a recording that is not there, or a sound many recordings share, finds nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models import fingerprint as fp
from models.media import decode_audio
from tests.models.conftest import write_media

SR = 16_000


def recording(seed: int, rate: int = SR, start: float = 0.0, seconds: float = 6.0) -> np.ndarray:
    """A made-up sound scene, the same continuous signal at any sample rate: tones and glides
    starting at random times, with decays, over a faint hum every recording shares."""
    rng = np.random.default_rng(seed)
    t = start + np.arange(round(seconds * rate)) / rate
    x = 0.01 * np.sin(2 * np.pi * 180.0 * t)
    for _ in range(40):
        onset, length = rng.uniform(-0.2, 6.0), rng.uniform(0.05, 0.6)
        f0, glide = rng.uniform(250.0, 3500.0), rng.uniform(-400.0, 400.0)
        local = t - onset
        on = (local >= 0) & (local < length)
        phase = 2 * np.pi * (f0 * local + 0.5 * glide * local**2)
        x = x + on * rng.uniform(0.05, 0.3) * np.exp(-3.0 * np.clip(local, 0, None)) * np.sin(phase)
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def table() -> fp.FingerprintTable:
    return fp.FingerprintTable([fp.peaks(recording(s), SR) for s in range(40)])


@pytest.mark.parametrize("seconds", [1.5, 2.5, 4.0])
def test_a_piece_cut_anywhere_is_found_and_placed(table, seconds) -> None:
    rng = np.random.default_rng(1)
    for row in (0, 7, 23, 39):
        start = round(float(rng.uniform(0.0, 6.0 - seconds)), 5)
        first = round(start * SR)
        piece = recording(row)[first : first + round(seconds * SR)]
        found = table.match(fp.query_peaks(piece, SR))
        assert found.rows.tolist() == [row]
        assert found.votes[0] >= fp.MIN_VOTES
        assert abs(found.starts_s[0] - first / SR) <= fp.HOP_S + 1e-6


def aac_piece(tmp_path: Path, seed: int, start: float) -> tuple[np.ndarray, int]:
    """2.5 s of recording `seed` from `start`, 20 dB down, AAC at 22.05 kHz in an MP4, decoded
    back to the model's rate."""
    piece = 0.1 * recording(seed, 22_050, start=start, seconds=2.5)
    path = tmp_path / "piece.mp4"
    write_media(path, video=None, audio="aac", rate=22_050, samples=piece[None], duration=2.5)
    return decode_audio(path, sample_rate=SR)


def test_a_quieter_piece_through_a_codec_at_another_rate_is_found(table, tmp_path) -> None:
    """20 dB down, AAC at 22.05 kHz in an MP4, decoded back to the model's rate."""
    start = 1.2345
    wave, rate = aac_piece(tmp_path, 11, start)
    found = table.match(fp.query_peaks(wave, rate))
    assert found.rows.tolist() == [11]
    assert abs(found.starts_s[0] - start) <= 0.05


def test_a_recording_that_is_not_there_finds_nothing(table) -> None:
    for seed in range(100, 110):
        piece = recording(seed)[SR : SR + round(2.5 * SR)]
        assert len(table.match(fp.query_peaks(piece, SR)).rows) == 0


def test_a_sound_many_recordings_share_finds_nothing() -> None:
    """Many clips with the same steady engine tone (as SynthAV's engines hum at the same pitches
    in hundreds of clips): a piece of one is a piece of all of them as far as their peaks go,
    and the table says nothing rather than pick one. A faint noise of its own tells one apart
    (its peaks are unique to it)."""
    t = np.arange(6 * SR) / SR
    hum = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((220.0, 440.0, 660.0), 1))
    items = [(0.3 * hum).astype(np.float32)] * 30 + [recording(s) for s in range(5)]
    table = fp.FingerprintTable([fp.peaks(x, SR) for x in items])
    piece = items[4][SR : SR + round(2.5 * SR)]
    assert len(table.match(fp.query_peaks(piece, SR)).rows) == 0
    noisy = items[4] + 0.003 * np.random.default_rng(3).standard_normal(len(t)).astype(np.float32)
    table = fp.FingerprintTable([fp.peaks(x, SR) for x in [*items, noisy]])
    assert table.match(fp.query_peaks(noisy[SR : SR + round(2.5 * SR)], SR)).rows.tolist() == [35]


def test_copies_of_one_recording_are_all_found() -> None:
    items = [recording(s) for s in range(10)]
    items.append(items[3].copy())
    table = fp.FingerprintTable([fp.peaks(x, SR) for x in items])
    found = table.match(fp.query_peaks(items[3][SR : 3 * SR], SR))
    assert sorted(found.rows.tolist()) == [3, 10]


def test_allowed_leaves_items_out(table) -> None:
    piece = recording(5)[SR : 3 * SR]
    allowed = np.ones(len(table), bool)
    allowed[5] = False
    assert len(table.match(fp.query_peaks(piece, SR), allowed).rows) == 0


def test_silence_and_scraps_have_no_landmarks() -> None:
    assert fp.peaks(np.zeros(3 * SR, np.float32), SR).shape == (0, 2)
    assert fp.peaks(np.zeros(10, np.float32), SR).shape == (0, 2)
    table = fp.FingerprintTable([np.zeros((0, 2), np.int32), fp.peaks(recording(1), SR)])
    assert len(table.match(fp.query_peaks(np.zeros(SR, np.float32), SR)).rows) == 0


def test_landmarks_are_kept_exactly_in_a_float16_store() -> None:
    found = np.array([[0, 3], [2047, 200], [2048, 0], [90_001, 255]], np.int32)
    stored = fp.to_store(found).astype(np.float16)
    assert stored.shape == (4, fp.STORE_DIM)
    np.testing.assert_array_equal(fp.from_store(stored), found)
    with pytest.raises(ValueError):
        fp.to_store(np.array([[0, 4096]]))


def test_peaks_are_limited_per_second(tmp_path: Path) -> None:
    x = np.random.default_rng(0).standard_normal(10 * SR).astype(np.float32)
    found = fp.peaks(x, SR)
    assert len(found) <= 10 * fp.PEAKS_PER_S
    assert (np.diff(found[:, 0]) >= 0).all()  # in time order


def test_the_peak_neighbourhood_is_the_largest_value_within_its_window() -> None:
    """`_max_filter` (by doubling) against the plain definition: each point's largest value
    within ±frames and ±bins, the window cut at the edges; shapes smaller than the window, a
    radius of zero, and ties."""
    rng = np.random.default_rng(21)
    for shape in [(61, 40), (1, 5), (3, 1), (7, 17), (2, 40), (50, 3), (0, 4)]:
        s = rng.integers(-5, 5, shape).astype(np.float32)  # small integers: many ties
        for frames, bins in [(3, 8), (0, 2), (5, 0), (1, 1), (10, 30)]:
            want = np.empty_like(s)
            for t in range(shape[0]):
                for f in range(shape[1]):
                    window = s[max(0, t - frames) : t + frames + 1, max(0, f - bins) : f + bins + 1]
                    want[t, f] = window.max()
            np.testing.assert_array_equal(fp._max_filter(s, frames, bins), want)
