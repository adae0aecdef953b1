"""`kill -9` inside an index publish: CURRENT never names a partial version, and a resumed build
publishes exactly what an uninterrupted one does.

The kill points are deterministic, not timing luck. The build runs in a child process
(`python -c _CHILD`) that wraps one function on the publish path so that its N-th matching call
SIGKILLs the process itself, before, during or after the real call; the child then runs the same
build the CLI runs (`trimodal index build`, through the Typer app) or, for the quick sweep, a
`VersionWriter` publish. Nothing in production code knows about it.

After every kill: CURRENT is absent or names a whole version (old or new, as the kill point
dictates) that passes `verify` and opens with `verify=True`; nothing under a version name is
partial; what the kill left behind is exactly what that point should leave (which proves the kill
happened where the test says); publishing again gives the same data as an uninterrupted build;
and `gc` removes the leftovers at once, and nothing else.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from index.version import (
    TMP_PREFIX,
    IndexVersion,
    current_version,
    gc,
    list_versions,
    verify,
)
from tests.index import test_build_search as build_tests
from tests.index.test_build_search import _build_cmd
from tests.index.test_version import publish

# The tiny SynthAV corpus and tiny-preset checkpoint of the build/search tests (module scoped).
corpus = build_tests.corpus
ckpt = build_tests.ckpt

REPO = Path(__file__).resolve().parents[2]

# The child: argv = [kill point as JSON, "cli" | "version", args...]. It installs one hook, runs
# the build, and exits 3 (never by SIGKILL) if the hook never fired.
_CHILD = r"""
import json, os, signal, sys, traceback
from pathlib import Path

import index.version as iv

point = json.loads(sys.argv[1])
mode, args = sys.argv[2], sys.argv[3:]


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def fd_path(fd):
    try:
        return os.readlink(f"/proc/self/fd/{fd if isinstance(fd, int) else fd.fileno()}")
    except OSError:
        return ""


# hook -> (owner, which calls count). Only the publish path's own calls match: embedding also
# fsyncs and os.replace()s its shards, and gc renames versions the other way round.
HOOKS = {
    "write_sequences": (iv.VersionWriter, lambda a, k: True),
    # Stores are streamed item by item (publish_entries, VersionWriter.write_sequences both).
    "append": (iv.store.SequenceWriter, lambda a, k: True),
    "write_rows": (iv.VersionWriter, lambda a, k: True),
    "publish": (iv.VersionWriter, lambda a, k: True),
    "_sha256": (iv, lambda a, k: k.get("fsync", False)),
    "fsync": (os, lambda a, k: fd_path(a[0]).endswith("/" + iv.MANIFEST)),
    "rename": (
        os,
        lambda a, k: Path(a[0]).name.startswith(iv.TMP_PREFIX)
        and iv.is_version_name(Path(a[1]).name),
    ),
    "replace": (os, lambda a, k: Path(a[1]).name == iv.CURRENT),
}


def cut_after(items, n):
    # Hand over n items, then die while the consumer is still writing its file.
    for i, item in enumerate(items):
        if i == n:
            die()
        yield item


def install(hook, when, nth, cut):
    owner, matches = HOOKS[hook]
    original = getattr(owner, hook)
    calls = 0

    def wrapper(*a, **k):
        nonlocal calls
        if not matches(a, k):
            return original(*a, **k)
        calls += 1
        if calls != nth:
            return original(*a, **k)
        if when == "before":
            die()
        if when == "during":  # VersionWriter.write_sequences(self, modality, sequences)
            a = (*a[:2], cut_after(a[2], cut), *a[3:])
        result = original(*a, **k)
        if when == "after":
            die()
        return result

    setattr(owner, hook, wrapper)


install(point["hook"], point["when"], point["nth"], point["cut"])
try:
    if mode == "cli":
        from service.cli import app

        app(args, prog_name="trimodal")
    else:
        from tests.index.test_version import publish

        publish(Path(args[0]), tag=int(args[1]))
except SystemExit:
    pass
except BaseException:
    traceback.print_exc()
print(f"kill point {point['id']} was never reached", file=sys.stderr, flush=True)
os._exit(3)
"""


@dataclass(frozen=True)
class KillPoint:
    """Where the child dies, and what that point must leave behind."""

    id: str
    hook: str  # a key of the child's HOOKS
    when: str  # "before" / "after" the nth matching call, or "during" write_sequences
    nth: int = 1
    cut: int = 3  # "during": items handed over before the kill
    renamed: bool = False  # the new version dir got its version name
    moved: bool = False  # CURRENT names the new version
    # The one ".tmp-" leftover: the build's temp dir without / with its manifest ("build" /
    # "sealed"), CURRENT's temp file ("current"), or none.
    left: str | None = "build"


KILL_POINTS = [
    # Files are still being written into the temp dir.
    KillPoint("half-written-sequence-file", "append", "before", nth=5),
    KillPoint("rows-not-yet-written", "write_rows", "before"),
    KillPoint("hashing-and-fsyncing-files", "_sha256", "after", nth=3),
    # The temp dir is complete (manifest written), not yet renamed.
    KillPoint("manifest-written-not-fsynced", "fsync", "before", left="sealed"),
    KillPoint("temp-dir-complete-before-rename", "rename", "before", left="sealed"),
    # Renamed to its version name, CURRENT not yet replaced.
    KillPoint("renamed-before-current", "rename", "after", renamed=True, left=None),
    KillPoint(
        "current-temp-written-not-replaced", "replace", "before", renamed=True, left="current"
    ),
    # CURRENT replaced; what follows (fsync ROOT, the build's bookkeeping) never ran.
    KillPoint(
        "current-replaced-root-not-fsynced", "replace", "after", renamed=True, moved=True, left=None
    ),
    KillPoint("publish-returned", "publish", "after", renamed=True, moved=True, left=None),
]
BY_ID = {p.id: p for p in KILL_POINTS}
# The one end-to-end kill point in the fast suite: the moment CURRENT itself is being replaced.
FAST_E2E = "current-temp-written-not-replaced"


def _run_killed(point: KillPoint, mode: str, *args: str) -> None:
    """Run the child; insist it died by SIGKILL at `point` (not by an error, not by finishing)."""
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(asdict(point)), mode, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, (
        f"child exited {proc.returncode}, not killed at {point.id}:\n{proc.stderr[-3000:]}"
    )


def _tmp_entries(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith(TMP_PREFIX))


def _check_after_kill(
    root: Path, point: KillPoint, before: str | None, versions_before: list[str]
) -> list[str]:
    """CURRENT is absent or whole, as `point` dictates; returns the `.tmp-` leftovers."""
    current = current_version(root)  # CURRENT is a whole version name or absent, never garbage
    versions = list_versions(root)
    new = [n for n in versions if n not in versions_before]
    # Nothing partial ever carries a version name, CURRENT's or not.
    for name in versions:
        assert verify(root, name) == [], name
    assert len(new) == int(point.renamed), versions
    if point.moved:
        assert current == new[0]
    else:
        assert current == before
    if current is not None:
        assert verify(root) == []
        IndexVersion.open(root, verify=True).close()
    leftovers = _tmp_entries(root)
    if point.left in ("build", "sealed"):
        assert len(leftovers) == 1 and (root / leftovers[0]).is_dir(), leftovers
        sealed = (root / leftovers[0] / "manifest.json").exists()
        assert sealed == (point.left == "sealed"), leftovers
    elif point.left == "current":
        assert len(leftovers) == 1 and leftovers[0].startswith(f"{TMP_PREFIX}CURRENT-"), leftovers
        assert (root / leftovers[0]).read_text() == new[0] + "\n"
    else:
        assert leftovers == []
    return leftovers


def _check_gc(root: Path, leftovers: list[str]) -> None:
    """gc removes exactly the leftovers, at once: the killed build's flock died with it, so its
    temp dir is not live however young, and CURRENT's temp file is only written under the lock
    gc holds."""
    current, versions = current_version(root), list_versions(root)
    keep = len(versions)  # no version is old enough to go: only the leftovers are gc's business
    assert sorted(gc(root, keep=keep)) == leftovers
    assert _tmp_entries(root) == []
    assert current_version(root) == current and list_versions(root) == versions
    assert verify(root) == []


def _published(root: Path, faiss_vectors: bool = True) -> dict[str, Any]:
    """CURRENT's data as comparable values: items in row order, every file's sha256, the
    manifest without its name and timestamp, FAISS vectors, row maps and every stored step."""
    v = IndexVersion.open(root, verify=True)
    try:
        m = v.manifest
        table = v.items()
        data: dict[str, Any] = {
            "items": [table.by_row(r) for r in range(len(table))],
            "manifest": {
                k: val
                for k, val in m.items()
                if k not in ("version", "created_utc", "manifest_sha256")
            },
        }
        for modality in v.modalities:
            if f"{modality}.rows.npy" in m["files"]:
                data[f"rows:{modality}"] = v.rows(modality).tobytes()
            if faiss_vectors and f"{modality}.faiss" in m["files"]:
                import faiss

                index = faiss.read_index(str(v.faiss_path(modality)))
                vectors = index.reconstruct_n(0, index.ntotal)
                data[f"faiss:{modality}"] = np.ascontiguousarray(vectors).tobytes()
        for name in m["sequence_stores"]:
            seqs = v.sequences(name)
            data[f"steps:{name}"] = [np.asarray(seqs.get(i)).tobytes() for i in range(len(seqs))]
        return data
    finally:
        v.close()


def _assert_same_data(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got.keys() == want.keys()
    for key in want:  # one key at a time: a failure names what differs
        assert got[key] == want[key], key


# --- the quick sweep: every kill point on VersionWriter.publish, an old CURRENT in place ---------


@pytest.mark.parametrize("point", KILL_POINTS, ids=lambda p: p.id)
def test_kill_9_at_each_publish_step_keeps_current_whole(tmp_path: Path, point: KillPoint) -> None:
    """With an old version live, a publish SIGKILLed at any step leaves CURRENT on the old
    version or on the whole new one (never a partial one), leaves only the leftovers that step
    should, a second publish gives the same data as an uninterrupted one, and gc cleans up."""
    root, clean = tmp_path / "root", tmp_path / "clean"
    old = publish(root, tag=1)
    publish(clean, tag=2)
    _run_killed(point, "version", str(root), "2")
    leftovers = _check_after_kill(root, point, before=old, versions_before=[old])

    name = publish(root, tag=2)  # the rerun
    assert current_version(root) == name
    # The FAISS files here are opaque bytes (covered by the manifest's sha256s), not indexes.
    _assert_same_data(_published(root, faiss_vectors=False), _published(clean, faiss_vectors=False))
    assert IndexVersion.open(root, old).manifest["build"] == {"tag": 1}  # untouched
    _check_gc(root, leftovers)


# --- end to end: the `index build` CLI killed inside publish, then `--resume` -------------------


@pytest.fixture(scope="module")
def reference(corpus: Path, ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted CLI build, the result every resumed build must equal."""
    root = tmp_path_factory.mktemp("reference") / "root"
    proc = subprocess.run(_build_cmd(corpus, ckpt, root), cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


def _kill_then_resume(
    corpus: Path, ckpt: Path, reference: Path, root: Path, point: KillPoint
) -> None:
    """A fresh `index build` into `root`, SIGKILLed at `point`; checks, `--resume`, compares."""
    # _build_cmd is [python, -m, service.cli, index, build, ...]: the child runs the same argv.
    _run_killed(point, "cli", *_build_cmd(corpus, ckpt, root)[3:])
    leftovers = _check_after_kill(root, point, before=None, versions_before=[])
    shards = list(root.glob(".work/*/shards/*.npz"))
    assert shards, "the kill came after embedding: its shards are on disk"

    resumed = subprocess.run(
        _build_cmd(corpus, ckpt, root, "--resume"), cwd=REPO, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # Resumed from the shards, none embedded again; published, then its work dir removed.
    assert f"resumed: {len(shards)} shard(s) reused, 0 embedded again" in resumed.stderr
    published = re.search(r"published (v\S+):", resumed.stderr)
    assert published and current_version(root) == published.group(1)
    assert list((root / ".work").iterdir()) == []
    assert verify(root) == []
    _assert_same_data(_published(root), _published(reference))
    _check_gc(root, leftovers)


def test_kill_9_while_current_is_replaced_then_resume_gives_the_same_index(
    corpus: Path, ckpt: Path, reference: Path, tmp_path: Path
) -> None:
    """`index build` SIGKILLed between writing CURRENT's temp file and renaming it over CURRENT:
    no CURRENT yet, the new version whole but not live; `--resume` publishes, from the shards on
    disk, an index identical (items, rows, FAISS vectors, steps, every file's bytes) to an
    uninterrupted build's."""
    _kill_then_resume(corpus, ckpt, reference, tmp_path / "root", BY_ID[FAST_E2E])


@pytest.mark.slow
@pytest.mark.parametrize("point", [p for p in KILL_POINTS if p.id != FAST_E2E], ids=lambda p: p.id)
def test_kill_9_inside_publish_then_resume_gives_the_same_index(
    corpus: Path, ckpt: Path, reference: Path, tmp_path: Path, point: KillPoint
) -> None:
    """The same as the fast end-to-end test, at every other kill point of the publish."""
    _kill_then_resume(corpus, ckpt, reference, tmp_path / "root", point)
