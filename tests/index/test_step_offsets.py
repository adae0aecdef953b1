"""Each item's offset of the cross-modal step similarity (`models.cohort`) in an index: made at
publish where the search policy takes it off, made anew in a derived version, and taken off in
the re-rank only in the directions the policy names."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from index.build import Entry, publish_entries, remove_items
from index.search import Query, Searcher
from index.version import STEP_OFFSETS, IndexVersion, ItemRecord
from models.cohort import cohort_rows, sequence_offsets
from models.policy import DIRECTIONS, SearchPolicy

DIM, STEPS, N = 16, 8, 40
WEIGHT = 2.0


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _policy(offsets: frozenset[str], whole: bool = False) -> dict:
    """Re-rank every direction by pooled + WEIGHT × the steps' similarity; `offsets`: the
    directions that take the offsets off (in the whole-clip tier alone with `whole`)."""
    tier = SearchPolicy(
        sequence_trained=True,
        rerank=dict.fromkeys(DIRECTIONS, True),
        rerank_weight=dict.fromkeys(DIRECTIONS, WEIGHT),
    )
    if whole:
        return replace(tier, whole=replace(tier, step_offsets=offsets)).to_dict()
    return replace(tier, step_offsets=offsets).to_dict()


def _build(root: Path, policy: dict, n: int = N) -> None:
    rng = np.random.default_rng(0)
    common = _unit(rng.normal(size=DIM))

    def entries():
        for i in range(n):
            # a third of the pictures carry a component every sound shares: like every sound
            picture = _unit(rng.normal(size=(STEPS, DIM)) + (2.0 * common if i % 3 == 0 else 0))
            sound = _unit(rng.normal(size=(STEPS, DIM)) + common)
            yield Entry(
                ItemRecord(f"item{i}", f"/m/{i}.mp4", 2.0, True, i != 5),  # item5: no sound
                {"visual": _unit(rng.normal(size=DIM)), "audio": None if i == 5 else sound[0]},
                {"visual": picture, "audio": sound if i != 5 else np.zeros((0, DIM), np.float16)},
                {},
            )

    info = {"search_policy": policy}
    publish_entries(root, entries(), model_hash="x", dim=DIM, steps_per_second=4.0, build_info=info)


def _expected(version: IndexVersion) -> np.ndarray:
    """The offsets `models.cohort.sequence_offsets` gives the version's stored steps."""
    ids = version.items().ids()
    stores = {m: version.sequences(m) for m in ("visual", "audio")}
    rows = np.arange(len(ids))
    (v, vm), (a, am) = (stores[m].batch(rows) for m in ("visual", "audio"))
    v, vm, a, am = (torch.from_numpy(x) for x in (v, vm, a, am))
    cohort = cohort_rows(ids, (vm.any(1) & am.any(1)).numpy())
    return np.stack(
        [
            sequence_offsets(a, am, v, vm, cohort).numpy(),
            sequence_offsets(v, vm, a, am, cohort).numpy(),
        ],
        axis=1,
    )


def test_an_index_keeps_the_offsets_its_policy_takes_off_and_makes_them_anew(
    tmp_path: Path,
) -> None:
    root = tmp_path / "idx"
    _build(root, _policy(frozenset({"audio→video"}), whole=True))
    version = IndexVersion.open(root)
    kept = version.step_offsets()
    assert kept is not None and kept.shape == (N, 2)
    np.testing.assert_array_equal(kept, _expected(version))
    assert kept[5, 1] == 0.0  # no sound: no offset as a sound
    assert kept[::3, 0].mean() > kept[1::3, 0].mean() + 0.1  # the pictures like every sound
    # a derived version: the cohort is its own items', the offsets made again
    remove_items(root, {"item0", "item7"})
    derived = IndexVersion.open(root)
    again = derived.step_offsets()
    assert again is not None and again.shape == (N - 2, 2)
    np.testing.assert_array_equal(again, _expected(derived))
    # a policy that takes none off: no file
    _build(tmp_path / "none", _policy(frozenset()))
    bare = IndexVersion.open(tmp_path / "none")
    assert bare.step_offsets() is None and STEP_OFFSETS not in bare.manifest["files"]


def test_the_re_rank_takes_the_offsets_off_in_the_policys_directions(tmp_path: Path) -> None:
    _build(tmp_path / "on", _policy(frozenset({"audio→video"})))
    _build(tmp_path / "off", _policy(frozenset()))
    on, off = Searcher.open(tmp_path / "on"), Searcher.open(tmp_path / "off")
    kept = on.version.step_offsets()
    assert kept is not None
    rng = np.random.default_rng(9)
    sound = _unit(rng.normal(size=(STEPS, DIM)))
    query = Query("audio", sound[0], sound)
    with_offsets = {h.id: h.score for h in on.search(query, "video", k=N).hits}
    without = {h.id: h.score for h in off.search(query, "video", k=N).hits}
    assert set(with_offsets) == set(without) and len(without) == N
    for item, score in without.items():
        row = int(item.removeprefix("item"))
        assert with_offsets[item] == pytest.approx(score - WEIGHT * float(kept[row, 0]), abs=1e-5)
    # the other directions: as they were
    picture = Query("visual", sound[0], sound)
    assert [h.score for h in on.search(picture, "audio", k=5).hits] == [
        h.score for h in off.search(picture, "audio", k=5).hits
    ]
    assert [h.score for h in on.search(query, "audio", k=5).hits] == [
        h.score for h in off.search(query, "audio", k=5).hits
    ]


def test_a_whole_clip_tier_takes_them_off_for_long_queries_only(tmp_path: Path) -> None:
    _build(tmp_path / "whole", _policy(frozenset({"audio→video"}), whole=True))
    _build(tmp_path / "off", _policy(frozenset()))
    on, off = Searcher.open(tmp_path / "whole"), Searcher.open(tmp_path / "off")
    rng = np.random.default_rng(4)
    for steps, moved in ((STEPS, False), (24, True)):  # 2 s, then 6 s at 4 steps a second
        sound = _unit(rng.normal(size=(steps, DIM)))
        query = Query("audio", sound[0], sound)
        a = [h.score for h in on.search(query, "video", k=5).hits]
        b = [h.score for h in off.search(query, "video", k=5).hits]
        assert (a != b) == moved


def test_an_index_without_them_searches_as_before_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "idx"
    _build(root, _policy(frozenset({"audio→video"})))
    _build(tmp_path / "off", _policy(frozenset()))
    version = IndexVersion.open(root)
    # as an index published before the offsets existed keeps its files: without them
    manifest = version.manifest
    del manifest["files"][STEP_OFFSETS]
    searcher = Searcher.open(tmp_path / "off")
    rng = np.random.default_rng(5)
    sound = _unit(rng.normal(size=(STEPS, DIM)))
    query = Query("audio", sound[0], sound)
    expected = [h.score for h in searcher.search(query, "video", k=5).hits]
    with caplog.at_level(logging.WARNING, logger="trimodal.index"):
        stripped = Searcher(version, use_gpu=False)
    assert stripped.step_offsets is None
    assert any("step offsets" in r.getMessage() for r in caplog.records)
    assert [h.score for h in stripped.search(query, "video", k=5).hits] == expected


def test_a_damaged_offsets_file_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "idx"
    _build(root, _policy(frozenset({"video→audio"})))
    version = IndexVersion.open(root)
    path = version.path / STEP_OFFSETS
    path.chmod(0o644)
    np.save(path, np.full((N, 2), np.nan, np.float32), allow_pickle=False)
    with pytest.raises(Exception, match="step_offsets"):
        IndexVersion.open(root, verify=False).step_offsets()
