"""Request-time access to the app's state, as `Annotated` dependencies (tests override them)."""

from __future__ import annotations

import asyncio
import hmac
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Request
from starlette.concurrency import run_in_threadpool

from models.spare import SPARE
from service.engine import Engine
from service.errors import ApiError
from service.metrics import Metrics
from service.settings import Settings
from service.thumbs import Thumbnails

T = TypeVar("T")


EWMA_WEIGHT = 0.2  # of the newest service time: follows a change of load within ~10 requests


@dataclass
class State:
    settings: Settings
    engine: Engine
    metrics: Metrics
    thumbnails: Thumbnails
    slots: asyncio.Semaphore
    # Work beside the searches (thumbnails): its own few slots, so a page of results loading its
    # cards' pictures never holds the searches' (`run_aside`).
    aside: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))
    # Recent service time (s) of each kind of work, by the function's qualified name: a text
    # search and a video upload differ tenfold, so one average would misjudge both.
    service_s: dict[str, float] = field(default_factory=dict)
    queued_s: float = 0.0  # estimated work of the requests waiting for a slot
    running_s: float = 0.0  # estimated work of the requests holding one
    admitted: int = 0  # requests waiting for a slot or holding one

    def refresh_gauges(self) -> None:
        m = self.engine.searcher.version.manifest
        self.metrics.items.set(int(m["counts"]["items"]))
        for modality in ("visual", "audio"):
            vectors = m["counts"].get(modality, {}).get("vectors", 0)
            self.metrics.vectors.labels(modality).set(vectors)

    def reloaded(self, swapped: bool | None) -> None:
        """Count a reload attempt that failed (None) or swapped a version in (True)."""
        if swapped is None:
            self.metrics.reloads.labels("failed").inc()
        elif swapped:
            self.metrics.reloads.labels("swapped").inc()
            self.refresh_gauges()

    def estimated_wait_s(self) -> float:
        """How long a request arriving now would wait for a slot: the estimated work ahead of it
        (queued and running) shared among the slots."""
        return (self.queued_s + self.running_s) / self.settings.max_concurrency

    def overloaded(self) -> float | None:
        """The estimated wait if a request arriving now should be refused (every slot taken and
        the work ahead over `queue_target_s`), else None."""
        s = self.settings
        if self.admitted < s.max_concurrency:
            return None
        wait = self.estimated_wait_s()
        return wait if wait > s.queue_target_s or s.queue_target_s == 0 else None

    def busy_error(self, wait_s: float) -> ApiError:
        retry = max(1, math.ceil(wait_s))
        return ApiError(
            503, "busy", "the server is busy; retry shortly", headers={"Retry-After": str(retry)}
        )

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking work in the thread pool, under the concurrency limit and the time limit.

        Overload policy: with every slot taken, a request whose estimated wait (see
        `estimated_wait_s`, from the measured service times) is over `queue_target_s` gets a
        503 + Retry-After at once, in well under a millisecond, rather than after queueing in
        vain; one that queues waits at most `queue_wait_s` (the upper bound, for estimates that
        prove wrong). Past `request_timeout_s` → 504; the slot stays taken until the thread
        really finishes, so timed-out work can never pile up beyond the limit.
        """
        s = self.settings
        kind = getattr(fn, "__qualname__", type(fn).__name__)
        cost = self.service_s.get(kind, 0.0)
        # Counted here, before any await: requests of one burst arrive in the same loop turn, and
        # the semaphore only shows them once their acquire tasks have run.
        if (wait := self.overloaded()) is not None:
            raise self.busy_error(wait)
        self.admitted += 1
        self.queued_s += cost
        try:
            await asyncio.wait_for(self.slots.acquire(), timeout=s.queue_wait_s or 1e-3)
        except BaseException as e:  # not queued any more: timed out, or the client went away
            self.admitted -= 1
            if isinstance(e, TimeoutError):
                raise self.busy_error(self.estimated_wait_s()) from None
            raise
        finally:
            self.queued_s = max(0.0, self.queued_s - cost)
        self.metrics.in_flight.inc()
        self.running_s += cost
        start = time.perf_counter()
        task = asyncio.ensure_future(run_in_threadpool(_running, fn, *args))

        def release(_: object) -> None:
            took = time.perf_counter() - start
            before = self.service_s.get(kind)
            self.service_s[kind] = (
                took if before is None else (1 - EWMA_WEIGHT) * before + EWMA_WEIGHT * took
            )
            self.running_s = max(0.0, self.running_s - cost)
            self.admitted -= 1
            self.metrics.in_flight.dec()
            self.slots.release()

        task.add_done_callback(release)
        return await self._within_limit(task)

    async def run_aside(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking work that is not a search (a thumbnail) in the thread pool under its own
        slots (`aside`): it never takes a search's slot nor counts in the overload estimate, and
        it waits its turn up to `request_timeout_s` (a page asks for ten at once and can wait;
        503 + Retry-After past that), then runs within the same limit (504 past it; the slot
        stays taken until the thread really finishes, as in `run`)."""
        s = self.settings
        try:
            await asyncio.wait_for(self.aside.acquire(), timeout=s.request_timeout_s)
        except TimeoutError:
            raise self.busy_error(1.0) from None
        task = asyncio.ensure_future(run_in_threadpool(fn, *args))
        task.add_done_callback(lambda _: self.aside.release())
        return await self._within_limit(task)

    async def _within_limit(self, task: asyncio.Future[T]) -> T:
        """The work's result, or 504 past `request_timeout_s`; the work itself goes on until its
        thread finishes (its slot is released by the task's callback, not here)."""
        limit = self.settings.request_timeout_s
        try:
            return await asyncio.wait_for(asyncio.shield(task), timeout=limit)
        except TimeoutError:
            raise ApiError(504, "timeout", f"the request took longer than {limit:g} s") from None


def _running(fn: Callable[..., T], *args: Any) -> T:
    """`fn` counted as a running request: a search lent an idle core (`models.spare`) only
    while fewer run than there are cores."""
    with SPARE.running():
        return fn(*args)


def get_state(request: Request) -> State:
    state: State | None = getattr(request.app.state, "trimodal", None)
    if state is None:
        raise ApiError(503, "starting", "the service is starting")
    return state


StateDep = Annotated[State, Depends(get_state)]


def require_admin(state: StateDep, x_api_key: Annotated[str | None, Header()] = None) -> None:
    """Admin routes: 401 without a key, 403 with a wrong one (compared in constant time)."""
    expected = state.settings.api_key
    if expected is None:
        raise ApiError(403, "admin_disabled", "admin routes are off (no TRIMODAL_API_KEY set)")
    if not x_api_key:
        raise ApiError(401, "unauthorized", "this route needs the X-API-Key header")
    if not hmac.compare_digest(x_api_key.encode(), expected.get_secret_value().encode()):
        raise ApiError(403, "forbidden", "wrong API key")


AdminDep = Annotated[None, Depends(require_admin)]
