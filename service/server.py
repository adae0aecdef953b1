"""Running the app under uvicorn, with the two things its defaults get wrong for a search API.

1. TCP_NODELAY on every connection. asyncio sets it only on sockets whose `proto` is IPPROTO_TCP;
   with `--workers > 1` uvicorn binds the listening socket itself with proto 0, so accepted
   connections inherit 0 and keep Nagle's algorithm on. A response written in two parts (headers,
   then body) then waits for the client's delayed ACK: ~40 ms added to every search answered by a
   multi-worker server (measured: 9 ms of work answered in 56 ms).
2. The C HTTP parser and event loop (httptools, uvloop) when installed: they take less of each
   request's CPU than the pure-Python h11 and asyncio loop, on cores shared with the searches.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import socket

from uvicorn.protocols.http.h11_impl import H11Protocol


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):  # the peer may already be gone: nothing to tune
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class H11NoDelay(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        set_nodelay(transport)
        super().connection_made(transport)


try:  # the C parser is optional: h11 (pure Python) is always there
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools not installed
    HttpToolsNoDelay: type[asyncio.Protocol] | None = None
else:

    class HttpToolsNoDelay(HttpToolsProtocol):  # type: ignore[no-redef]
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            set_nodelay(transport)
            super().connection_made(transport)


def http_protocol(parser: str = "auto") -> type[asyncio.Protocol]:
    """`auto`: httptools when installed, else h11; both with TCP_NODELAY."""
    if parser not in ("auto", "h11", "httptools"):
        raise ValueError(f"unknown HTTP parser {parser!r}; use auto, h11 or httptools")
    if parser == "h11" or (parser == "auto" and HttpToolsNoDelay is None):
        return H11NoDelay
    if HttpToolsNoDelay is None:
        raise ValueError("the httptools parser is not installed (pip install httptools)")
    return HttpToolsNoDelay


def event_loop() -> str:
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


def run(
    host: str,
    port: int,
    workers: int = 1,
    log_level: str = "info",
    protocol: type[asyncio.Protocol] | None = None,
) -> None:
    """Serve `service.asgi:app` (settings from the TRIMODAL_* environment)."""
    import uvicorn

    uvicorn.run(
        "service.asgi:app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=False,  # the app logs every request itself, as JSON with its request id
        http=protocol or http_protocol(),
        loop=event_loop(),
    )
