"""Peak memory while `models.media.decode` refuses each hostile file of issue 12 point 8.

    python -m benchmarks.bench_hostile_rss [--repeats 3]

Every file is decoded with the default `MediaLimits` in a fresh Python process, which reports its
peak resident set (VmHWM from /proc/self/status) once `models.media` is imported and again after
`decode`, plus the reason it got. The "normal" row is a 3 s 64x48 h264+aac clip that decodes;
"import only" is the cost of the interpreter, numpy and PyAV before any file is opened. The
target is a peak of at most 150 MB for every hostile file. The builders are the tests' own
(`tests/models/hostile.py`), so the benchmark measures exactly the files the tests refuse.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks._common import write_result
from tests.models.hostile import HOSTILE, Builder, normal_clip

TARGET_MB = 150.0
ROOT = Path(__file__).resolve().parents[1]

# Runs in the child: nothing but the decoder is imported, so the figures are the decoder's.
CHILD = """
import json, sys
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
from models.media import MediaError, MediaLimits, decode
import models._decode  # imported by decode's first call: compiled here (a fresh checkout has no
# bytecode yet), so compiling it is not counted as the cost of refusing a file
imported = hwm()
try:
    limits = MediaLimits(decode_threads=int(sys.argv[2])) if len(sys.argv) > 2 else MediaLimits()
    decode(sys.argv[1], limits=limits) if sys.argv[1] else None
    reason = "ok"
except MediaError as e:
    reason = e.reason.value
print(json.dumps({"import_mb": imported, "peak_mb": hwm(), "reason": reason}))
"""


def measure(path: str, decode_threads: int | None = None) -> dict[str, float | str]:
    """Peak RSS of a fresh process that imports the decoder and decodes `path` ("" : none),
    with the default `MediaLimits` or those with `decode_threads` frame threads."""
    threads = [] if decode_threads is None else [str(decode_threads)]
    done = subprocess.run(
        [sys.executable, "-c", CHILD, path, *threads],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(repeats: int) -> dict[str, object]:
    cases: dict[str, tuple[Builder | None, str | None]] = {
        "import only": (None, None),
        "normal": (normal_clip, "ok"),
        **HOSTILE,
    }
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (build, expected) in cases.items():
            folder = Path(tmp) / name.replace(" ", "_")
            folder.mkdir()
            path = str(build(folder)) if build else ""
            runs = [measure(path) for _ in range(repeats)]
            peak = max(float(r["peak_mb"]) for r in runs)
            imported = min(float(r["import_mb"]) for r in runs)
            reasons = sorted({str(r["reason"]) for r in runs})
            rows[name] = {
                "reason": reasons[0] if len(reasons) == 1 else reasons,
                "expected": expected or "ok",
                "peak_mb": round(peak, 1),
                "import_mb": round(imported, 1),
                "over_import_mb": round(peak - imported, 1),
            }
    hostile = [r for name, r in rows.items() if name in HOSTILE]
    worst = max(float(r["peak_mb"]) for r in hostile)  # type: ignore[arg-type]
    return {
        "repeats": repeats,
        "target_peak_mb": TARGET_MB,
        "worst_hostile_peak_mb": worst,
        "within_target": worst <= TARGET_MB,
        "all_reasons_as_expected": all(r["reason"] == r["expected"] for r in rows.values()),
        "files": rows,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per file")
    args = parser.parse_args(argv)
    result = run(args.repeats)
    table = Table(title=f"decode peak RSS per file (target <= {TARGET_MB:g} MB for hostile ones)")
    for column in ("file", "reason", "peak MB", "import MB", "over import MB"):
        left = column in ("file", "reason")
        table.add_column(column, justify="left" if left else "right", no_wrap=left)
    for name, r in result["files"].items():  # type: ignore[union-attr]
        table.add_row(
            name,
            str(r["reason"]),
            f"{r['peak_mb']:.1f}",
            f"{r['import_mb']:.1f}",
            f"{r['over_import_mb']:.1f}",
        )
    Console().print(table)
    write_result("bench_hostile_rss", result)


if __name__ == "__main__":
    main()
