"""Idle cores lent to a lone search.

The service runs one search per core (`max_concurrency`), each on one torch thread: under load
every core has a search of its own, and a second thread per search would only make them fight.
A search running alone leaves the other cores idle while its independent parts wait on each
other: the sound's encoder and its envelopes, the two halves of the event scan, the steps'
distances and the envelopes' correlations. `SpareCores.both` runs the second of two such parts
on a helper thread when a core is idle (fewer requests running, and helpers lent, than there
are cores), and otherwise after the first, in the caller's thread. Each part is whole on its
own, so the results are the same either way, only sooner: torch's kernels and most of NumPy's
release the GIL while they work.

`SPARE` is the process's: no helpers until `configure` lends some (the service does, from its
settings; a test or a terminal search runs everything in its own thread).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

A = TypeVar("A")
B = TypeVar("B")


# Where a container finds its own CPU limit (cgroup v2 `cpu.max`; v1 `cpu/cpu.cfs_quota_us`).
CGROUP = Path("/sys/fs/cgroup")


def cpu_limit(root: Path = CGROUP) -> float | None:
    """The CPUs a container's limit allows (`docker run --cpus 2`: 2.0), from cgroup v2's
    `cpu.max` or v1's quota and period; None where there is no limit or none can be read."""
    try:
        v2 = root / "cpu.max"
        if v2.is_file():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        v1 = root / "cpu"
        quota_us = int((v1 / "cpu.cfs_quota_us").read_text())
        period_us = int((v1 / "cpu.cfs_period_us").read_text())
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    except (OSError, ValueError, ZeroDivisionError):
        return None


def usable_cores(root: Path = CGROUP) -> int:
    """The cores this process may run on: its CPU affinity (where the platform tells), and no
    more than a container's CPU limit allows (rounded up: 1.5 CPUs keep two searches going).
    `os.cpu_count()` counts the host's: in a container limited to 2 CPUs on a 16-core host,
    sixteen searches at once would only thrash the two."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    limit = cpu_limit(root)
    if limit is not None:
        cores = min(cores, math.ceil(limit))
    return max(1, cores)


class SpareCores:
    def __init__(self, helpers: int = 0, cores: int | None = None) -> None:
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._helpers = 0
        self._cores = 1
        self._running = 0  # requests inside `running()`
        self._lent = 0  # helpers working now
        self.configure(helpers, cores)

    def configure(self, helpers: int, cores: int | None = None) -> None:
        """Lend up to `helpers` threads (0: none) on a machine of `cores` (default: this
        process's, `usable_cores`). Parts already handed to the old helpers finish there."""
        if helpers < 0:
            raise ValueError(f"helpers must be ≥ 0, got {helpers}")
        pool = ThreadPoolExecutor(helpers, thread_name_prefix="spare") if helpers else None
        with self._lock:
            old, self._pool = self._pool, pool
            self._helpers = helpers
            self._cores = max(1, cores if cores is not None else usable_cores())
        if old is not None:
            old.shutdown(wait=False)

    @property
    def helpers(self) -> int:
        return self._helpers

    @contextmanager
    def running(self) -> Iterator[None]:
        """Count a request as running (each holds a core) while inside."""
        with self._lock:
            self._running += 1
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1

    def _lend(self) -> ThreadPoolExecutor | None:
        with self._lock:
            busy = max(self._running, 1) + self._lent  # the caller holds a core, counted or not
            if self._pool is None or self._lent >= self._helpers or busy >= self._cores:
                return None
            self._lent += 1
            return self._pool

    def _give_back(self) -> None:
        with self._lock:
            self._lent -= 1

    @contextmanager
    def idle(self, most: int) -> Iterator[int]:
        """How many idle cores, up to `most`, a caller may run threads of its own on while
        inside (0: none; e.g. ONNX Runtime's, for a lone query's text encoder): they count as
        lent until it leaves, so no other part is lent them meanwhile."""
        with self._lock:
            busy = max(self._running, 1) + self._lent
            free = min(most, self._helpers - self._lent, self._cores - busy)
            free = max(0, free) if self._pool is not None else 0
            self._lent += free
        try:
            yield free
        finally:
            with self._lock:
                self._lent -= free

    def both(self, first: Callable[[], A], second: Callable[[], B]) -> tuple[A, B]:
        """(first(), second()), the second on an idle core if one is free. An exception from
        either is raised here, after both have stopped (a helper is never left working for a
        request that has gone)."""
        pool = self._lend()
        if pool is None:
            return first(), second()
        try:
            try:
                future: Future[B] = pool.submit(second)
            except RuntimeError:  # reconfigured meanwhile: this pool takes no more work
                return first(), second()
            try:
                a = first()
            except BaseException:
                wait_for([future])
                raise
            return a, future.result()
        finally:
            self._give_back()


# The process's helpers (none until the service lends some: `service.engine.Engine`).
SPARE = SpareCores()
