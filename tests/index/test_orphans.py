"""`kill -9` of `trimodal index build` leaves no decode worker (nor resource tracker) behind."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

from tests.index import test_build_search as build_tests

# The tiny SynthAV corpus and tiny-preset checkpoint of the build/search tests (module scoped).
corpus = build_tests.corpus
ckpt = build_tests.ckpt
REPO = Path(__file__).resolve().parents[2]
MARKER = "TRIMODAL_TEST_ORPHAN_MARK"


def marked(tag: str) -> dict[int, str]:
    """Live (not zombie) processes whose environment carries MARKER=tag: pid -> command line."""
    found = {}
    needle = f"{MARKER}={tag}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if state != "Z":  # a zombie has exited; reaping it is its new parent's business
            found[int(entry.name)] = cmdline
    return found


def test_sigkill_of_a_build_takes_its_decode_workers_with_it(corpus, ckpt, tmp_path):
    tag = uuid.uuid4().hex
    cmd = build_tests._build_cmd(corpus, ckpt, tmp_path / "root")
    cmd[cmd.index("--workers") + 1] = "2"
    # One shard for the whole corpus: the pool gets several chunks at once and starts both.
    cmd[cmd.index("--shard-size") + 1] = "16"
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env={**os.environ, MARKER: tag},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        workers: dict[int, str] = {}
        while time.monotonic() < deadline and proc.poll() is None:
            workers = {p: c for p, c in marked(tag).items() if "spawn_main" in c}
            if len(workers) >= 2:
                break
            time.sleep(0.05)
        assert len(workers) >= 2, "the build never started its two decode workers"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 5
        while marked(tag) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = marked(tag)
        assert not left, f"left behind by the killed build: {left}"
    finally:
        proc.kill()
        for pid in marked(tag):  # whatever a failed run left, so that it does not linger
            os.kill(pid, signal.SIGKILL)
