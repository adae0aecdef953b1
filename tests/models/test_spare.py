"""Idle cores lent to a lone search: the second part on a helper only while a core is idle,
the same results either way, and an error from either part raised once both have stopped."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from models import events
from models.spare import SPARE, SpareCores


def _where() -> str:
    return threading.current_thread().name


def test_without_helpers_both_parts_run_in_the_callers_thread() -> None:
    spare = SpareCores(0, cores=4)
    assert spare.both(_where, _where) == (_where(), _where())


def test_a_lone_request_lends_the_second_part_to_an_idle_core() -> None:
    spare = SpareCores(1, cores=2)
    with spare.running():
        first, second = spare.both(_where, _where)
    assert first == _where() and second.startswith("spare")
    # the results come back in the order asked, whichever finishes first
    assert spare.both(lambda: time.sleep(0.05) or "a", lambda: "b") == ("a", "b")


def test_with_every_core_busy_a_search_keeps_to_its_own_thread() -> None:
    spare = SpareCores(1, cores=2)
    with spare.running(), spare.running():  # two requests on two cores
        assert spare.both(_where, _where) == (_where(), _where())
    with spare.running():  # one left: its core's neighbour is idle again
        assert spare.both(_where, _where)[1].startswith("spare")


def test_a_helper_at_work_is_not_lent_twice() -> None:
    spare = SpareCores(1, cores=8)
    inner: list[str] = []

    def second() -> str:
        # the one helper is working here: a nested request for one runs in this thread
        inner.extend(spare.both(_where, _where))
        return _where()

    _, helper = spare.both(_where, second)
    assert helper.startswith("spare") and inner == [helper, helper]


def test_an_error_is_raised_after_both_parts_stopped_and_the_helper_comes_back() -> None:
    spare = SpareCores(1, cores=2)
    finished = threading.Event()

    def slow() -> None:
        time.sleep(0.05)
        finished.set()

    def broken() -> None:
        raise RuntimeError("first failed")

    with pytest.raises(RuntimeError, match="first failed"):
        spare.both(broken, slow)
    assert finished.is_set()  # the helper's part was not left running

    def broken_second() -> None:
        raise ValueError("second failed")

    with pytest.raises(ValueError, match="second failed"):
        spare.both(lambda: None, broken_second)
    # the helper was given back both times: it is lent again
    assert spare.both(_where, _where)[1].startswith("spare")


def test_helpers_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="helpers"):
        SpareCores(-1)


def test_the_event_scan_split_between_cores_scores_as_one_pass(monkeypatch) -> None:
    """Halves of the scan's rows on two cores: every score exactly the one-pass score (items
    of several lengths, so some rows mask placements)."""
    rng = np.random.default_rng(3)
    envelopes = [
        rng.standard_normal((int(n), 6)).astype(np.float32) for n in rng.integers(40, 90, size=301)
    ]
    scan = events.EventScan(envelopes, 12.0)
    query = rng.standard_normal(72).astype(np.float32)
    alone = scan.scores(query, across=True)
    monkeypatch.setattr(events, "SPLIT_SCAN_ROWS", 10)
    lent: list[str] = []
    both = SPARE.both

    def recorded(first, second):
        return both(first, lambda: lent.append(_where()) or second())

    monkeypatch.setattr(SPARE, "both", recorded)
    SPARE.configure(1, cores=2)
    try:
        split = scan.scores(query, across=True)
    finally:
        SPARE.configure(0)
    assert len(lent) == 1 and lent[0].startswith("spare")
    np.testing.assert_array_equal(split, alone)
    assert np.isfinite(alone).sum() > 250


def test_a_containers_cpu_limit_bounds_the_cores(tmp_path, monkeypatch) -> None:
    """`docker run --cpus` shows every host core to `os.cpu_count()`: the cgroup's limit (v2
    `cpu.max`, v1 quota / period) bounds the cores counted, rounded up; no limit, or nothing
    readable, leaves the affinity's count."""
    from models.spare import cpu_limit, usable_cores

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)), raising=False)
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("200000 100000\n")
    assert cpu_limit(v2) == 2.0 and usable_cores(v2) == 2
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert usable_cores(v2) == 2  # 1.5 CPUs keep two searches going
    (v2 / "cpu.max").write_text("max 100000\n")
    assert cpu_limit(v2) is None and usable_cores(v2) == 16
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("400000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert usable_cores(v1) == 4
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")  # v1's "no limit"
    assert usable_cores(v1) == 16
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("garbage\n")
    assert cpu_limit(v1) is None
    assert usable_cores(tmp_path / "missing") == 16
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert usable_cores(v2) == 2 and usable_cores(tmp_path / "missing") == 2


def test_idle_cores_lent_to_a_callers_own_threads_are_not_lent_twice() -> None:
    spare = SpareCores(3, cores=4)
    with spare.running():
        with spare.idle(2) as free:
            assert free == 2
            with spare.idle(5) as more:  # one core is left idle
                assert more == 1
                assert spare.both(_where, _where) == (_where(), _where())  # none left to lend
        with spare.idle(5) as free:  # all given back
            assert free == 3
    busy = (spare.running(), spare.running(), spare.running(), spare.running())
    with busy[0], busy[1], busy[2], busy[3], spare.idle(1) as free:
        assert free == 0
    with SpareCores(0, cores=4).idle(2) as free:  # no helpers configured: nothing lent
        assert free == 0
