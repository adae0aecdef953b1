"""Each clip's sounds measured apart from the feature cache (`training.timbres`)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from models.media import decode_audio
from models.timbre import ROW, sound_runs
from tests.models.conftest import write_media
from training.datasets import ManifestItem
from training.timbres import clip_timbres, heard_otherwise, measure, memo_name


def _chirps(seconds: float = 3.0, rate: int = 48_000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    out = np.zeros_like(t)
    for at in (0.4, 1.4, 2.4):
        inside = (t >= at) & (t < at + 0.12)
        u = t[inside] - at
        out[inside] = 0.5 * np.sin(2 * np.pi * (1500 * u + 6000 * u**2)) * np.hanning(inside.sum())
    return out.astype(np.float32)[None]  # (channels, samples)


def _item(item_id: str, path: Path) -> ManifestItem:
    return ManifestItem(item_id, path, None, {}, "val")


def test_a_pool_is_measured_once_and_a_bad_file_reported_not_read_as_silence(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = write_media(tmp_path / "good.mp4", samples=_chirps(), flash_at=None, click_at=None)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a film")
    items = [_item("good", good), _item("bad", bad)]
    with caplog.at_level(logging.WARNING, logger="training.timbres"):
        found = clip_timbres(items, tmp_path, workers=1)
    assert set(found) == {"good"}
    assert "sounds of bad not measured" in caplog.text
    audio, rate = decode_audio(good)
    np.testing.assert_allclose(found["good"], sound_runs(audio, rate), atol=1e-6)
    assert found["good"].shape == (3, ROW)
    assert (tmp_path / memo_name()).exists()
    # read back from the memo: the file is not decoded again
    good.unlink()
    again = clip_timbres(items[:1], tmp_path, workers=1)
    np.testing.assert_allclose(again["good"], found["good"])


def test_a_damaged_memo_is_measured_again(tmp_path: Path) -> None:
    good = write_media(tmp_path / "good.mp4", samples=_chirps(), flash_at=None, click_at=None)
    (tmp_path / memo_name()).write_bytes(b"not an npz")
    assert set(clip_timbres([_item("good", good)], tmp_path, workers=1)) == {"good"}


def test_a_sound_heard_otherwise_keeps_its_events() -> None:
    """Played faster or slower (its length and pitch with it), in another room: the same three
    chirps, at the times the speed moves them to."""
    rate = 16_000
    audio = _chirps(rate=rate)[0]
    rng = np.random.default_rng(3)
    other = heard_otherwise(audio, rate, rng)
    speed = len(audio) / len(other)
    assert 0.8 - 1e-3 <= speed <= 1.25 + 1e-3
    assert np.isfinite(other).all()
    runs = sound_runs(other, rate)
    assert len(runs) == 3
    np.testing.assert_allclose(runs[:, 1], np.array([0.4, 1.4, 2.4]) / speed, atol=0.06)


def test_measure_gives_one_reading_per_seed_and_the_reason_for_a_bad_file(tmp_path: Path) -> None:
    good = write_media(tmp_path / "good.mp4", samples=_chirps(), flash_at=None, click_at=None)
    found = measure(str(good), (1, 2))
    assert isinstance(found, list) and len(found) == 3
    assert not np.array_equal(found[1], found[2])
    reason = measure(str(tmp_path / "missing.mp4"))
    assert isinstance(reason, str) and "not_found" in reason
