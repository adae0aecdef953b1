"""Shared benchmark plumbing: the machine's description and where results go.

Every benchmark prints a table for people and one JSON line last for machines, and writes that
JSON (with the machine it ran on) to benchmarks/results/.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import socket
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "python": platform.python_version(),
    }
    for module in ("torch", "av", "numpy", "faiss", "onnxruntime"):
        try:
            info[module] = __import__(module).__version__
        except ImportError:
            continue
    try:
        import torch

        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    return info


def write_result(name: str, result: dict[str, Any]) -> Path:
    """Write `result` and the machine to results/<name>-<utc>.json; print it as one JSON line."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    record = {"benchmark": name, "utc": stamp, "machine": machine(), **result}
    path = RESULTS / f"{name}-{stamp}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record))
    return path


def p50_p99(times_ms: list[float]) -> dict[str, float]:
    """Median and 99th percentile of latencies in milliseconds, rounded to the microsecond."""
    import numpy as np

    ordered = np.asarray(times_ms, dtype=np.float64)
    return {
        "p50_ms": round(float(np.median(ordered)), 3),
        "p99_ms": round(float(np.percentile(ordered, 99)), 3),
    }
