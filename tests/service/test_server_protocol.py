"""`service.server`: connections get TCP_NODELAY even on a listening socket uvicorn bound itself.

With `--workers > 1` uvicorn creates the listening socket with `socket.socket(family)` (proto 0),
and asyncio only sets TCP_NODELAY when proto is IPPROTO_TCP: Nagle's algorithm then held every
two-part response until the client's delayed ACK (~40 ms a search). Here the server is given such
a socket, and the option is read back from the server side of a live connection.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from service.server import H11NoDelay, HttpToolsNoDelay, http_protocol


async def tiny_app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _serve(protocol: type) -> Iterator[tuple[uvicorn.Server, int]]:
    sock = socket.socket(socket.AF_INET)  # proto 0, as uvicorn binds it for several workers
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        tiny_app, http=protocol, loop="asyncio", log_level="warning", lifespan="off"
    )  # uvloop sets TCP_NODELAY itself: the plain asyncio loop is the case to cover
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "uvicorn did not start"
    try:
        yield server, port
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _server_side_nodelay(server: uvicorn.Server, port: int) -> list[int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/")
    response = conn.getresponse()
    assert (response.status, response.read()) == (200, b"ok")
    values = [
        c.transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        for c in list(server.server_state.connections)  # the keep-alive connection is still open
    ]
    conn.close()
    return values


PROTOCOLS = [H11NoDelay] + ([HttpToolsNoDelay] if HttpToolsNoDelay is not None else [])


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.__name__)
def test_connections_get_tcp_nodelay_on_a_proto_zero_listener(protocol: type) -> None:
    for server, port in _serve(protocol):
        values = _server_side_nodelay(server, port)
        assert values and all(v != 0 for v in values), values


def test_http_protocol_choice() -> None:
    assert http_protocol("h11") is H11NoDelay
    assert http_protocol("auto") in PROTOCOLS
    with pytest.raises(ValueError, match="unknown HTTP parser"):
        http_protocol("spdy")
