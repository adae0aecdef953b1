"""Hot reload against real index versions on disk: the watcher survives any unloadable version,
says so (log, metrics, /readyz), keeps serving the last good one and takes the next good one."""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
import pytest
from fastapi.testclient import TestClient

from index.version import MANIFEST, _seal, _sha256, current_version
from service.app import create_app
from service.engine import Engine, EngineError
from tests.service.conftest import settings_for

POLL = 0.1
KEY = {"X-API-Key": "s3cret-key"}


def _point(root: Path, name: str) -> None:
    """CURRENT := name, replaced atomically as publish does (raw: any bytes, even a bad name)."""
    tmp = root / "CURRENT.tmp"
    tmp.write_text(name)
    os.replace(tmp, root / "CURRENT")


def _copy_version(root: Path, counter: int) -> tuple[str, Path]:
    """A sealed copy of the live version under a new name (a stand-in for a newly published one)."""
    live = current_version(root)
    assert live is not None
    name = f"v{counter:06d}-" + live.split("-", 1)[1]
    target = root / name
    shutil.copytree(root / live, target)
    manifest = json.loads((target / MANIFEST).read_bytes())
    manifest["version"] = name
    (target / MANIFEST).write_bytes(_seal(manifest))
    return name, target


def _reseal(vdir: Path) -> None:
    """Update the manifest's checksums to the files as they are now (an operator's re-seal)."""
    manifest = json.loads((vdir / MANIFEST).read_bytes())
    for fname in manifest["files"]:
        path = vdir / fname
        manifest["files"][fname] = {"bytes": path.stat().st_size, "sha256": _sha256(path)}
    (vdir / MANIFEST).write_bytes(_seal(manifest))


def _other_dimension(vdir: Path) -> None:
    """visual.faiss replaced by a sound FAISS index of the right size but another dimension."""
    old = faiss.read_index(str(vdir / "visual.faiss"))
    other = faiss.IndexFlatIP(old.d // 2)
    rng = np.random.default_rng(0)
    other.add(rng.standard_normal((old.ntotal, old.d // 2)).astype(np.float32))
    faiss.write_index(other, str(vdir / "visual.faiss"))


def _flip_byte(vdir: Path) -> None:
    path = vdir / "visual.seq.f16"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(vdir: Path) -> None:
    path = vdir / "visual.faiss"
    path.write_bytes(path.read_bytes()[:100])


def _failed(c: TestClient) -> float:
    for line in c.get("/metrics").text.splitlines():
        if line.startswith('trimodal_index_reloads_total{result="failed"}'):
            return float(line.split()[-1])
    return 0.0


def _wait(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


@pytest.fixture
def root(served, tmp_path: Path) -> Path:
    root = tmp_path / "index"
    shutil.copytree(served["index"], root)
    return root


def _break(kind: str, root: Path) -> str:
    """Make CURRENT name something unloadable; returns what CURRENT now says."""
    if kind == "missing":
        name = "v000077-20260101T000000Z"
    elif kind == "outside":
        name = "../../etc"
    else:
        name, vdir = _copy_version(root, 50)
        {"flipped": _flip_byte, "truncated": _truncate}[kind](vdir)
    _point(root, name)
    return name


@pytest.mark.parametrize("kind", ["flipped", "truncated", "missing", "outside"])
def test_watcher_survives_an_unloadable_version_and_takes_the_repaired_one(
    served, root: Path, kind: str, caplog
) -> None:
    settings = settings_for(served, index=root, reload_poll_s=POLL)
    good = current_version(root)
    with TestClient(create_app(settings, engine=Engine(settings))) as c:
        with caplog.at_level(logging.ERROR, logger="trimodal.service"):
            _break(kind, root)
            _wait(lambda: _failed(c) >= 1)
            time.sleep(5 * POLL)  # more polls: the watcher is still there, the count still one
        assert _failed(c) == 1, "one failure counted once, not once per poll"
        assert any("reload failed" in r.getMessage() for r in caplog.records)
        ready = c.get("/readyz")
        assert ready.status_code == 200, "the last good version is still served"
        body = ready.json()
        assert body["index_version"] == good and body["stale"] is True
        assert body["reload_error"], body
        r = c.post("/v1/search/text", json={"query": "a bell", "k": 3})
        assert r.status_code == 200 and r.json()["index_version"] == good
        assert "trimodal_index_stale 1.0" in c.get("/metrics").text

        # The repair: a good version is published; it is live within about one poll interval.
        fixed, _ = _copy_version_from(root, good, 60)
        repaired_at = time.monotonic()
        _point(root, fixed)
        _wait(lambda: c.get("/readyz").json()["index_version"] == fixed)
        assert time.monotonic() - repaired_at < 10 * POLL + 1.0
        body = c.get("/readyz").json()
        assert body["stale"] is False and body["reload_error"] is None
        assert body["published_version"] == fixed
        r = c.post("/v1/search/text", json={"query": "a bell", "k": 3})
        assert r.json()["index_version"] == fixed
        assert "trimodal_index_stale 0.0" in c.get("/metrics").text


def _copy_version_from(root: Path, source: str | None, counter: int) -> tuple[str, Path]:
    assert source is not None
    _point(root, source)  # _copy_version copies what CURRENT names
    return _copy_version(root, counter)


def test_a_version_repaired_in_place_is_retried(served, root: Path) -> None:
    settings = settings_for(served, index=root, reload_poll_s=POLL)
    with TestClient(create_app(settings, engine=Engine(settings))) as c:
        name, vdir = _copy_version(root, 50)
        original = (vdir / "visual.seq.f16").read_bytes()
        _flip_byte(vdir)
        _point(root, name)
        _wait(lambda: _failed(c) >= 1)
        (vdir / "visual.seq.f16").write_bytes(original)  # same name, same size: fixed in place
        _wait(lambda: c.get("/readyz").json()["index_version"] == name)
        assert c.get("/readyz").json()["stale"] is False


def test_the_watchers_look_and_load_are_one(served, root: Path) -> None:
    """A publish that lands between the watcher's look at what is published and its load is not
    tried in that round (so its failure is not counted against the look before it, and counted
    again at the next poll: the watcher test's flake); the next look sees it and tries it."""
    engine = Engine(settings_for(served, index=root))
    good = engine.searcher.name
    seen = engine.published_fingerprint()
    broken = _break("flipped", root)
    assert engine.reload(seen=seen) == (False, good)
    assert engine.reload_error is None and engine.published() == broken
    now = engine.published_fingerprint()
    assert now != seen
    with pytest.raises(EngineError, match="sha256 mismatch"):
        engine.reload(seen=now)
    assert engine.searcher.name == good and engine.reload_error


def test_status_never_shows_the_new_version_beside_the_last_failure(served, root: Path) -> None:
    """The live version and the last reload's error change as one: /readyz read while a good
    version goes live shows the old version with its error or the new one without (before, the
    watcher test once read the new version with the error of the broken one before it)."""
    engine = Engine(settings_for(served, index=root))
    good = engine.searcher.name
    _break("outside", root)
    with pytest.raises(EngineError):
        engine.reload()
    assert engine.reload_error
    fixed, _ = _copy_version_from(root, good, 60)
    _point(root, fixed)

    seen: list[dict[str, object]] = []
    cls = type(engine)

    class Watched(cls):  # type: ignore[misc, valid-type]
        """Reads the status from another thread the moment the new version is assigned."""

        def __setattr__(self, name: str, value: object) -> None:
            super().__setattr__(name, value)
            if name == "_searcher" and getattr(value, "name", None) == fixed:
                reader = threading.Thread(target=lambda: seen.append(self.status()))
                reader.start()
                reader.join(timeout=0.5)  # blocks on the pair's lock now: read after it
                self._reader = reader

    engine.__class__ = Watched
    assert engine.reload() == (True, fixed)
    engine._reader.join(timeout=10)
    assert len(seen) == 1
    assert seen[0]["index_version"] == fixed and seen[0]["reload_error"] is None, seen[0]


@pytest.mark.parametrize("kind", ["flipped", "truncated", "missing", "outside"])
def test_admin_reload_of_an_unloadable_version_is_409_with_the_reason(
    served, root: Path, kind: str
) -> None:
    settings = settings_for(served, index=root)
    good = current_version(root)
    with TestClient(create_app(settings, engine=Engine(settings))) as c:
        _break(kind, root)
        r = c.post("/v1/admin/reload", headers=KEY)
        assert r.status_code == 409, r.text
        error = r.json()["error"]
        assert error["code"] == "reload_failed" and error["message"]
        assert _failed(c) == 1
        body = c.get("/readyz").json()
        assert body["index_version"] == good and body["stale"] is True
        assert body["reload_error"] == error["message"]
        assert c.post("/v1/search/text", json={"query": "a"}).status_code == 200


@pytest.mark.parametrize("verify", [True, False])
def test_a_faiss_index_of_another_dimension_is_refused_at_start_up(
    served, root: Path, verify: bool
) -> None:
    name, vdir = _copy_version(root, 50)
    _other_dimension(vdir)
    if verify:
        _reseal(vdir)
    _point(root, name)
    with pytest.raises(EngineError, match=r"visual\.faiss.*dimension 16.*32"):
        Engine(settings_for(served, index=root, verify_index=verify))


def test_a_faiss_index_of_another_dimension_is_a_failed_reload_never_a_500(
    served, root: Path
) -> None:
    settings = settings_for(served, index=root, reload_poll_s=POLL)
    good = current_version(root)
    with TestClient(create_app(settings, engine=Engine(settings))) as c:
        name, vdir = _copy_version(root, 50)
        _other_dimension(vdir)
        _reseal(vdir)
        _point(root, name)
        _wait(lambda: _failed(c) >= 1)
        body = c.get("/readyz").json()
        assert body["stale"] is True and "visual.faiss" in body["reload_error"]
        for _ in range(4):
            r = c.post("/v1/search/text", json={"query": "a bell", "target": "video"})
            assert r.status_code == 200 and r.json()["index_version"] == good
        r = c.post("/v1/admin/reload", headers=KEY)
        assert r.status_code == 409 and "visual.faiss" in r.json()["error"]["message"]


def test_a_sequence_store_of_another_dimension_is_refused(served, root: Path) -> None:
    name, vdir = _copy_version(root, 50)
    manifest = json.loads((vdir / MANIFEST).read_bytes())
    manifest["sequence_stores"]["visual.pooled"]["dim"] = 16  # the store holds 32-d steps
    (vdir / MANIFEST).write_bytes(_seal(manifest))
    _point(root, name)
    with pytest.raises(EngineError, match=r"visual\.pooled"):
        Engine(settings_for(served, index=root))


def test_a_truncated_faiss_file_unverified_is_refused_naming_it(served, root: Path) -> None:
    name, vdir = _copy_version(root, 50)
    _truncate(vdir)
    _point(root, name)
    with pytest.raises(EngineError, match=r"visual\.faiss: not a readable FAISS index"):
        Engine(settings_for(served, index=root, verify_index=False))
