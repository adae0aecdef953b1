"""Overload benchmark: how fast an overloaded server says no.

    python -m benchmarks.bench_overload [--items 10000] [--clients 64,256] [--seconds 12]

`trimodal serve` (a subprocess, loopback) serves a synthetic index (see bench_service), and
64 then 256 client threads, each on its own keep-alive connection, send text searches back to back
for a bounded time; after a 503 a client waits as Retry-After says (`--backoff S` waits S
seconds instead: 0.1 offers a load far above what two cores serve, and shows what answering that
many 503s costs). Reported per policy and
client count: p50/p99 of the OK answers, p50/p99 of the 503 answers, the share of 503s, QPS.

Policies: `default` (the shipped settings: a full server refuses a request whose estimated wait
passes queue_target_s) and `queue-5s` (queue_target_s out of reach and queue_wait_s = 5: every
request queues up to 5 s, the behaviour before the overload policy). Clients and server share the
machine's cores.
"""

from __future__ import annotations

import argparse
import http.client
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks._common import p50_p99, write_result
from benchmarks.bench_service import make_index, query_text, start_server

POLICIES: dict[str, dict[str, str]] = {
    "default": {},
    "queue-5s": {"TRIMODAL_QUEUE_TARGET_S": "1000000", "TRIMODAL_QUEUE_WAIT_S": "5"},
}


def load(url: str, clients: int, seconds: float, backoff: float | None) -> dict[str, Any]:
    """`clients` threads sending text searches until the time is up; latencies by outcome."""
    ok: list[float] = []
    busy: list[float] = []
    other: dict[str, int] = {}
    lock = threading.Lock()
    host, port = url.removeprefix("http://").split(":")
    stop = time.monotonic() + seconds

    def worker(seed: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        i = seed * 1_000_000
        try:
            while time.monotonic() < stop:
                body = json.dumps({"query": query_text(i), "k": 10})
                t = time.perf_counter()
                try:
                    conn.request(
                        "POST", "/v1/search/text", body, {"content-type": "application/json"}
                    )
                    response = conn.getresponse()
                    response.read()
                    status = str(response.status)
                    retry_after = float(response.getheader("retry-after") or 1)
                except (OSError, http.client.HTTPException) as e:
                    status = type(e).__name__  # a reset or a refused connection: counted apart
                    conn.close()
                    conn = http.client.HTTPConnection(host, int(port), timeout=60)
                ms = (time.perf_counter() - t) * 1e3
                with lock:
                    if status == "200":
                        ok.append(ms)
                    elif status == "503":
                        busy.append(ms)
                    else:
                        other[status] = other.get(status, 0) + 1
                if status == "503":
                    time.sleep(retry_after if backoff is None else backoff)
                i += 1
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    answered = len(ok) + len(busy)
    return {
        "clients": clients,
        "ok": {"n": len(ok), **(p50_p99(ok) if ok else {})},
        "busy_503": {"n": len(busy), **(p50_p99(busy) if busy else {})},
        "share_503": round(len(busy) / answered, 4) if answered else None,
        "other": other,
        "ok_qps": round(len(ok) / wall, 1),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument("--clients", default="64,256")
    p.add_argument("--seconds", type=float, default=12.0)
    p.add_argument(
        "--backoff", type=float, default=None, help="pause after a 503 (s; default: Retry-After)"
    )
    p.add_argument("--policies", default=",".join(POLICIES))
    p.add_argument("--work", type=Path, default=Path("data/bench-service"))
    p.add_argument("--note", default="")
    args = p.parse_args(argv)
    console = Console(width=160)
    from models.config import preset
    from models.model import TrimodalModel

    args.work.mkdir(parents=True, exist_ok=True)
    ckpt = args.work / "ckpt-small"
    if not (ckpt / "config.json").is_file():
        TrimodalModel(preset("small")).save(ckpt)  # latency does not depend on the weights
    counts = [int(c) for c in args.clients.split(",") if c.strip()]
    result: dict[str, Any] = {
        "note": args.note,
        "items": args.items,
        "seconds": args.seconds,
        "backoff_s": args.backoff,
        "policies": {name: POLICIES[name] for name in args.policies.split(",")},
        "runs": [],
    }
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        index = Path(tmp) / "index"
        make_index(index, ckpt, args.items, preset("small").embed_dim)
        for name in result["policies"]:
            proc, url = start_server(index, ckpt, queue=POLICIES[name])
            try:
                load(url, 4, 2.0, args.backoff)  # warm-up: caches, and the service-time estimate
                for clients in counts:
                    run = load(url, clients, args.seconds, args.backoff)
                    result["runs"].append({"policy": name, **run})
                    console.print(f"done: {name}, {clients} clients")
            finally:
                proc.terminate()
                proc.wait(30)

    table = Table(title=f"overload: text search, {args.items} items, clients on the same cores")
    for col in (
        "policy",
        "clients",
        "OK p50",
        "OK p99",
        "503 p50",
        "503 p99",
        "503 share",
        "OK QPS",
    ):
        table.add_column(col, justify="right")
    for r in result["runs"]:
        ok, busy = r["ok"], r["busy_503"]
        table.add_row(
            r["policy"],
            str(r["clients"]),
            _ms(ok.get("p50_ms")),
            _ms(ok.get("p99_ms")),
            _ms(busy.get("p50_ms")),
            _ms(busy.get("p99_ms")),
            "-" if r["share_503"] is None else f"{100 * r['share_503']:.1f}%",
            f"{r['ok_qps']:.0f}",
        )
    console.print(table)
    write_result("bench_overload", result)
    return result


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


if __name__ == "__main__":
    main()
