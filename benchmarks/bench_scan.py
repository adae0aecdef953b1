"""The event scan (`models.events.EventScan.scores`) at service scale: each query shape's time on
one thread (what a search gets under load; a lone search splits the rows between two cores), by
each product kernel, beside the scan as it was before blocks (one product of every row per kind,
the query's placements unpadded), computed here in the same run so the ratio is machine-fair.

    python -m benchmarks.bench_scan [--items 100000] [--repeats 9]

Items are 6 s at 12 bins a second with random standardised envelopes: a picture has six kinds
(change, motion, and its halves'), a sound one. The scores of every variant are checked equal.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from benchmarks._common import p50_p99, write_result
from models import events
from models.events import EventScan, scan_window_span

RATE = 12.0
BINS = 72  # 6 s
PICTURE_KINDS = 6


def _unblocked(scan: EventScan, query: np.ndarray, across: bool) -> np.ndarray:
    """The scan before blocks, for the ratio: every row of one kind at once, converted to
    float32 whole, times the query's placements unpadded, kind after kind (single thread)."""
    q_all = np.asarray(query, np.float32)
    q_all = q_all if q_all.ndim == 2 else q_all[:, None]
    n = len(q_all)
    pinned = across and scan._placements(n).most <= events.PINNED_PLACEMENTS
    if not pinned:
        q_all = q_all[:, :1]
    start, m = scan_window_span(q_all, scan.rate)
    q, q_scale = events._quantised(np.ascontiguousarray(q_all[start : start + m].T), axis=None)
    span = scan._columns(n, start, m)
    assert span is not None
    c_lo, c_hi, first, last, uniform = span
    placements = last - first + 1
    padded = scan.rows.shape[2]
    cols = torch.arange(placements)
    toeplitz = torch.zeros(padded, len(q), placements, dtype=torch.int8)
    rows_at = first + cols[None, :] + torch.arange(m)[:, None]
    for k in range(len(q)):
        toeplitz[rows_at, k, cols[None, :]] = q[k][:, None]
    columns = toeplitz.reshape(padded, -1).float()
    at = first + cols
    lowest = float(torch.iinfo(torch.int32).min)
    best = torch.full((len(scan.rows),), lowest)
    for kind in range(scan.kinds if pinned else 1):
        found = (scan.rows[:, kind].float() @ columns).reshape(len(scan.rows), len(q), placements)
        if not uniform:
            allowed = (at[None, :] >= c_lo[:, None]) & (at[None, :] <= c_hi[:, None])
            found = found.masked_fill(~allowed[:, None, :], lowest)
        torch.maximum(best, found.reshape(len(scan.rows), -1).amax(dim=1), out=best)
    per_row = best * scan.scale * (float(q_scale[0]) / m)
    per_row[best == lowest] = -torch.inf
    out = torch.full((scan.n_items,), -torch.inf)
    out.scatter_reduce_(0, scan.owner, per_row, reduce="amax")
    return out.numpy()


def _timed(run: Callable[[], np.ndarray], repeats: int) -> tuple[dict[str, float], np.ndarray]:
    out = run()  # warm: placements kept, buffers grown
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = run()
        times.append((time.perf_counter() - t) * 1e3)
    return p50_p99(times), out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--repeats", type=int, default=9)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)

    def standard(shape: tuple[int, ...]) -> np.ndarray:
        x = rng.standard_normal(shape).astype(np.float32)
        return (x - x.mean(0)) / x.std(0)

    pictures = EventScan([standard((BINS, PICTURE_KINDS)) for _ in range(args.items)], RATE)
    sounds = EventScan([standard((BINS,)) for _ in range(args.items)], RATE)
    shapes = {
        "6 s sound → pictures (every kind)": (pictures, standard((BINS,)), True),
        "2.5 s sound → pictures": (pictures, standard((30,)), True),
        "6 s footage → sounds": (sounds, standard((BINS, PICTURE_KINDS)), True),
        "2.5 s footage → sounds": (sounds, standard((30, PICTURE_KINDS)), True),
        "6 s sound → sounds": (sounds, standard((BINS,)), False),
    }
    chosen = events.int8_kernel_is_faster()
    results: dict[str, Any] = {
        "items": args.items,
        "threads": 1,
        "int8_kernel_chosen": chosen,
        "block_rows": events.SCAN_BLOCK_ROWS,
        "columns_multiple": events.SCAN_COLUMNS,
        "shapes": {},
    }
    kept = events.INT8_KERNEL
    try:
        for name, (scan, query, across) in shapes.items():
            row: dict[str, Any] = {}

            def unblocked(s: EventScan = scan, q: np.ndarray = query, a: bool = across) -> Any:
                return _unblocked(s, q, a)

            def blocked(s: EventScan = scan, q: np.ndarray = query, a: bool = across) -> Any:
                return s.scores(q, a)

            before, want = _timed(unblocked, args.repeats)
            row["before_unblocked_float32"] = before
            for kernel in (False, True):
                events.INT8_KERNEL = kernel
                got, scores = _timed(blocked, args.repeats)
                if not np.array_equal(scores, want):
                    raise AssertionError(f"{name}: the blocked scan's scores differ")
                row["blocked_int8" if kernel else "blocked_float32"] = got
            now = row["blocked_int8" if chosen else "blocked_float32"]["p50_ms"]
            row["speedup_p50"] = round(before["p50_ms"] / now, 2)
            results["shapes"][name] = row
    finally:
        events.INT8_KERNEL = kept

    table = Table(title=f"event scan, {args.items:,} items, one thread (p50 / p99 ms)")
    for col in ("query", "before (unblocked)", "blocked float32", "blocked int8", "speed-up"):
        table.add_column(col, justify="right")
    for name, r in results["shapes"].items():
        cells = [
            f"{r[k]['p50_ms']:.1f} / {r[k]['p99_ms']:.1f}"
            for k in ("before_unblocked_float32", "blocked_float32", "blocked_int8")
        ]
        table.add_row(name, *cells, f"{r['speedup_p50']:.2f}x")
    Console(width=160).print(table)
    print(f"int8 kernel chosen on this CPU: {chosen}")
    write_result("bench_scan", results)
    return results


if __name__ == "__main__":
    main()
