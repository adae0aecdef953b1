"""The FastAPI app: `create_app(settings)`. Nothing heavy happens at import or in the factory; the
model and the index are loaded in the lifespan (or handed in ready-made, as tests do)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import errors
from service.deps import State
from service.engine import Engine, EngineError
from service.errors import ApiError, error_body
from service.metrics import Metrics
from service.routes import items, search, system
from service.settings import Settings
from service.thumbs import Thumbnails

log = logging.getLogger("trimodal.service")
WEB = Path(__file__).parent / "web"
JSON_LIMIT = 1 << 20  # bodies of non-upload routes


class BodyLimit:
    """Refuses a request body over the limit *while it arrives*: a declared Content-Length over
    the limit is answered 413 before one body byte is read; a chunked body is counted as it streams
    and cut off at the limit (the route's parser sees an error, answered 413)."""

    def __init__(self, app: ASGIApp, upload_limit: int) -> None:
        self.app, self.upload_limit = app, upload_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        upload = path in ("/v1/search/audio", "/v1/search/video")
        limit = self.upload_limit + (64 << 10) if upload else JSON_LIMIT  # + multipart framing
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            body = error_body("too_large", f"the request body is larger than {limit} bytes")
            await _send_json(send, 413, body)
            return
        seen, exceeded, replaced = 0, False, False
        too_large = error_body("too_large", f"the request body is larger than {limit} bytes")

        async def counted() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    exceeded = True
                    raise ApiError(413, "too_large", too_large["error"]["message"])
            return message

        async def answer(message: Message) -> None:
            # The body parser may turn our error into its own 400: whatever the app answers
            # once the limit was crossed, the client gets the 413.
            nonlocal replaced
            if exceeded and message["type"] == "http.response.start":
                replaced = True
                await _send_json(send, 413, too_large)
                return
            if not replaced:
                await send(message)

        await self.app(scope, counted, answer)


class Shed:
    """The overload policy's refusal, before routing and before the body is read: a search that
    `State.run` would refuse anyway costs no upload, no JSON parsing and no validation. Cheap
    refusals matter most when the server is saturated, where every cycle spent saying no is taken
    from the searches it can still answer. A small declared body (a text search) is read and
    dropped so the connection stays open for the client's retry; a larger or chunked one (an
    upload) is left unread and the connection closed after the 503 (a keep-alive client would
    otherwise send its next request after our unread bytes)."""

    SMALL_BODY = 64 << 10

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") == "POST":
            path: str = scope.get("path", "")
            state = getattr(scope["app"].state, "trimodal", None) if "app" in scope else None
            if path.startswith("/v1/search/") and state is not None:
                wait = state.overloaded()
                if wait is not None:
                    busy = state.busy_error(wait)
                    state.metrics.errors.labels(busy.code).inc()
                    headers = dict(busy.headers or {})
                    if not await self._drain_small(scope, receive):
                        headers["Connection"] = "close"
                    await _send_json(send, 503, error_body(busy.code, busy.message), headers)
                    return
        await self.app(scope, receive, send)

    async def _drain_small(self, scope: Scope, receive: Receive) -> bool:
        """Read and drop a body declared at most SMALL_BODY bytes; False if it is not one."""
        declared = dict(scope.get("headers", [])).get(b"content-length", b"")
        if not declared.isdigit() or int(declared) > self.SMALL_BODY:
            return False
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return False  # the client went away
            seen += len(message.get("body", b""))
            if seen > self.SMALL_BODY:
                return False
            if not message.get("more_body", False):
                return True


class Observe:
    """Request id, latency histogram per route and a JSON log line per request (plain ASGI: the
    decorator form of middleware costs a task and a body copy per request)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        given = headers.get(b"x-request-id", b"")[:64]
        request_id = given.decode("latin-1") if given else uuid.uuid4().hex[:16]
        start = time.perf_counter()
        status = 500

        async def stamped(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode("latin-1")),
                ]
            await send(message)

        try:
            await self.app(scope, receive, stamped)
        finally:
            ms = (time.perf_counter() - start) * 1e3
            label = getattr(scope.get("route"), "path", "unmatched")
            method = scope.get("method", "")
            self.metrics.requests.labels(label, method, str(status)).observe(ms)
            log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": method,
                    "route": label,
                    "status": status,
                    "ms": round(ms, 2),
                },
            )


async def _send_json(
    send: Send, status: int, body: dict[str, Any], extra: dict[str, str] | None = None
) -> None:
    import json

    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def _watch(state: State) -> None:
    """Poll CURRENT; a newly published version is loaded beside the live one and swapped in.

    Nothing ends the watcher but the app's shutdown: a version that cannot be loaded (any error)
    is logged and counted once (`reloads{result="failed"}`), the live version keeps serving, and
    /readyz reports it stale with the reason. The failed state is retried as soon as anything
    published changes (a new version, CURRENT rewritten, a file of the version restored), so a
    repair goes live at the next poll; an unchanged broken state is not re-hashed every poll.
    """
    interval = state.settings.reload_poll_s
    failed: tuple[object, ...] | None = None  # what was published when loading it last failed
    while True:
        await asyncio.sleep(interval)
        try:
            seen = await run_in_threadpool(state.engine.published_fingerprint)
            if seen == failed:
                continue
            try:
                swapped, _ = await run_in_threadpool(state.engine.reload, False, seen)
            except EngineError:  # the engine logged why and keeps it for /readyz
                failed = seen
                state.reloaded(None)
                continue
            failed = None
            state.reloaded(swapped)
        except Exception:
            # A dead watcher is a service that silently stays on an old version forever.
            state.metrics.reloads.labels("failed").inc()
            log.exception("index watcher: unexpected error, polling goes on")


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    """The app. `engine` lets tests share one loaded model and index between apps."""
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        live = engine if engine is not None else await run_in_threadpool(Engine, settings)
        await run_in_threadpool(live.warm_up)
        state = State(
            settings,
            live,
            metrics,
            Thumbnails(),
            asyncio.Semaphore(settings.max_concurrency),
            asyncio.Semaphore(settings.aside_concurrency),
        )
        state.refresh_gauges()
        app.state.trimodal = state
        watcher = asyncio.create_task(_watch(state)) if settings.reload_poll_s > 0 else None
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
            app.state.trimodal = None

    app = FastAPI(
        title="trimodal",
        version="1",
        summary="Cross-modal search for video and sound: text, audio and video queries.",
        lifespan=lifespan,
        responses={500: {"model": search.ErrorResponse}},
    )
    errors.install(app, on_error=lambda code: metrics.errors.labels(code).inc())
    app.include_router(search.router)
    app.include_router(items.router)
    app.include_router(system.router)

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
        )
    app.add_middleware(Shed)
    app.add_middleware(BodyLimit, upload_limit=int(settings.max_upload_mb * 1024 * 1024))
    app.add_middleware(Observe, metrics=metrics)

    if (WEB / "index.html").is_file():
        app.mount("/static", StaticFiles(directory=WEB), name="static")

        @app.get("/", include_in_schema=False)
        def page() -> FileResponse:
            return FileResponse(WEB / "index.html", media_type="text/html")

    return app
