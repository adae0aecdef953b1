"""An index records which decoder measured its items (`models.media.DECODE_VERSION`): a search
of one an older decoder measured says so in the log, a derived version keeps the record, and a
resumed build never mixes shards that two decoders measured."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

import index.embed as embed
from index.build import Entry, publish_entries, remove_items
from index.embed import CorpusItem, plan_key
from index.search import Searcher
from index.version import ItemRecord
from models.media import DECODE_VERSION

DIM, STEPS, N = 8, 5, 6


def _publish(root: Path, build_info: dict) -> None:
    rng = np.random.default_rng(0)

    def entries():
        for i in range(N):
            pooled = rng.normal(size=DIM).astype(np.float32)
            pooled /= np.linalg.norm(pooled)
            seq = rng.normal(size=(STEPS, DIM)).astype(np.float32)
            seq /= np.linalg.norm(seq, axis=1, keepdims=True)
            yield Entry(
                ItemRecord(f"item{i}", f"/m/{i}.mkv", 2.0, True, True),
                {"visual": pooled, "audio": pooled},
                {"visual": seq, "audio": seq},
                {},
            )

    publish_entries(
        root, entries(), model_hash="x", dim=DIM, steps_per_second=4.0, build_info=build_info
    )


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "older decoder" in r.getMessage()]


def test_an_index_an_older_decoder_measured_is_named_in_the_log(tmp_path, caplog):
    _publish(tmp_path / "old", {})  # made before versions were recorded
    with caplog.at_level(logging.WARNING):
        old = Searcher.open(tmp_path / "old")
    assert old.decode_version == 1
    (line,) = _warnings(caplog)
    assert f"version 1, now {DECODE_VERSION}" in line and "trimodal index build" in line
    # a derived version keeps what its items were measured by: still old, still said
    remove_items(tmp_path / "old", {"item0"})
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert Searcher.open(tmp_path / "old").decode_version == 1
    assert len(_warnings(caplog)) == 1

    _publish(tmp_path / "new", {"decode_version": DECODE_VERSION})
    remove_items(tmp_path / "new", {"item1"})
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        new = Searcher.open(tmp_path / "new")
    assert new.decode_version == DECODE_VERSION
    assert new.version.manifest["build"]["decode_version"] == DECODE_VERSION
    assert _warnings(caplog) == []


def test_shards_another_decoder_measured_belong_to_another_build(monkeypatch):
    items = [CorpusItem(f"c{i}", Path(f"/m/{i}.mkv")) for i in range(3)]
    now = plan_key(items, 4, "model", "build")
    monkeypatch.setattr(embed, "DECODE_VERSION", DECODE_VERSION - 1)
    assert plan_key(items, 4, "model", "build") != now
