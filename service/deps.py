"""Request-time access to the app's state, as `Annotated` dependencies (tests override them)."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Request
from starlette.concurrency import run_in_threadpool

from service.engine import Engine
from service.errors import ApiError
from service.metrics import Metrics
from service.settings import Settings
from service.thumbs import Thumbnails

T = TypeVar("T")


@dataclass
class State:
    settings: Settings
    engine: Engine
    metrics: Metrics
    thumbnails: Thumbnails
    slots: asyncio.Semaphore

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking work in the thread pool, under the concurrency limit and the time limit.

        No free slot within `queue_wait_s` → 503 with Retry-After (instead of queueing forever).
        Past `request_timeout_s` → 504; the slot stays taken until the thread really finishes, so
        timed-out work can never pile up beyond the limit.
        """
        s = self.settings
        try:
            await asyncio.wait_for(self.slots.acquire(), timeout=s.queue_wait_s or 1e-3)
        except TimeoutError:
            raise ApiError(
                503, "busy", "the server is busy; retry shortly", headers={"Retry-After": "1"}
            ) from None
        self.metrics.in_flight.inc()
        task = asyncio.ensure_future(run_in_threadpool(fn, *args))

        def release(_: object) -> None:
            self.metrics.in_flight.dec()
            self.slots.release()

        task.add_done_callback(release)
        try:
            return await asyncio.wait_for(asyncio.shield(task), timeout=s.request_timeout_s)
        except TimeoutError:
            raise ApiError(
                504, "timeout", f"the request took longer than {s.request_timeout_s:g} s"
            ) from None


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
