"""Against a real uvicorn server: what only a socket can show."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import httpx


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    return sock


def _read_status(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            break
        body += chunk
    return int(head.split(b" ", 2)[1]), head + b"\r\n\r\n" + body


def test_a_declared_huge_body_is_refused_before_any_of_it_is_sent(live_server: str) -> None:
    with _connect(live_server) as sock:
        sock.sendall(
            b"POST /v1/search/audio HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: multipart/form-data; boundary=zz\r\n"
            b"Content-Length: 10000000000\r\n\r\n"
        )
        status, data = _read_status(sock)  # answered with not one body byte sent
    assert status == 413 and b"too_large" in data


def test_a_streamed_body_is_cut_off_at_the_limit(live_server: str) -> None:
    limit = int(0.05 * 1024 * 1024)
    with _connect(live_server) as sock:
        sock.sendall(
            b"POST /v1/search/audio HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: multipart/form-data; boundary=zz\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        head = (
            b'--zz\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n"
        )
        sock.sendall(b"%x\r\n%s\r\n" % (len(head), head))
        sent = 0
        sock.settimeout(0.05)
        status = None
        while sent < 20 * limit:
            piece = b"x" * 16384
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
            try:
                peek = sock.recv(4096, socket.MSG_PEEK)
            except TimeoutError:
                continue
            if peek:
                break
        sock.settimeout(10)
        status, data = _read_status(sock)
    assert status == 413 and b"too_large" in data
    assert sent < 4 * limit, f"sent {sent} bytes before the 413 (limit {limit})"


def test_every_route_answers_over_http(live_server: str) -> None:
    with httpx.Client(base_url=live_server, timeout=30) as c:
        assert c.get("/healthz").status_code == 200
        hits = c.post("/v1/search/text", json={"query": "a bell", "k": 3}).json()["hits"]
        assert len(hits) == 3
        item = c.get(f"/v1/items/{hits[0]['id']}").json()
        r = c.get(item["media_url"], headers={"Range": "bytes=0-9"})
        assert r.status_code == 206 and len(r.content) == 10
        assert c.get(item["thumbnail_url"]).headers["content-type"] == "image/jpeg"
        r = c.post(f"/v1/search/item/{item['id']}", json={"k": 2})
        assert r.status_code == 200 and r.json()["hits"][0]["id"] == item["id"]
        assert "trimodal_request_duration_ms" in c.get("/metrics").text
        assert c.get("/v1/index").json()["items"] == 12
        bad = c.post(
            "/v1/search/text", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert bad.status_code == 422 and json.loads(bad.text)["error"]["code"] == "invalid_request"


def test_a_500_tells_a_keep_alive_client_that_the_connection_closes(
    live_server: str, engine, monkeypatch
) -> None:
    """uvicorn closes the socket after any error that reaches it; without `Connection: close` a
    keep-alive client sends its next request into that socket and gets a reset."""

    def broken(*args: object, **kwargs: object) -> None:
        raise AssertionError("a bug")

    monkeypatch.setattr(engine.searcher, "search", broken)
    with _connect(live_server) as sock:
        request = b"POST /v1/search/text HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        body = b'{"query": "a"}'
        sock.sendall(request + b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        status, data = _read_status(sock)
        assert status == 500 and b'"internal"' in data
        assert b"connection: close" in data.lower()
        assert sock.recv(1) == b""  # and it does close: the client knew not to reuse it
    with httpx.Client(base_url=live_server, timeout=10) as c:
        for _ in range(3):  # one client, one pool: every request answered, none reset
            r = c.post("/v1/search/text", json={"query": "a"})
            assert r.status_code == 500 and r.headers["connection"] == "close"
