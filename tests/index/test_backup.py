"""Backup and restore of an index root: consistent under concurrent publish + gc, verified, and
never a half-copied or foreign version under a version name."""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from index import backup as bk
from index.version import (
    CURRENT,
    TMP_PREFIX,
    IndexCorrupt,
    IndexVersion,
    _seal,
    current_version,
    gc,
    list_versions,
    verify,
)
from tests.index.test_version import flip_byte, publish


def tree(path: Path) -> dict[str, bytes]:
    """Every file under `path` with its bytes: "untouched" means this is equal before and after."""
    return {
        str(p.relative_to(path)): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file() and p.name != ".publish.lock"
    }


def sound_backup(dest: Path) -> str:
    """DEST's CURRENT names a version that is in DEST and verifies; no temp dirs are left."""
    name = current_version(dest)
    assert name is not None and name in list_versions(dest)
    assert verify(dest) == [], verify(dest)
    assert not [p for p in dest.iterdir() if p.name.startswith(TMP_PREFIX)]
    return name


def wrap_copy(monkeypatch: pytest.MonkeyPatch, before: Callable[[int, Path, Path], None]) -> None:
    """Run `before(call_no, src_path, dst)` ahead of each file copy (call_no from 0)."""
    original = bk._copy_file
    calls = iter(range(1_000_000))

    def wrapped(fd: int, src: Path, dst: Path, link: bool) -> bool:
        before(next(calls), src, dst)
        return original(fd, src, dst, link)

    monkeypatch.setattr(bk, "_copy_file", wrapped)


def test_backup_opens_verified_and_searches_like_the_source(tmp_path: Path) -> None:
    from index.build import publish_from_shards
    from index.search import Query, Searcher
    from tests.index.test_build_search import synthetic_shard

    items, shard, query = synthetic_shard(tmp_path)
    root, dest = tmp_path / "root", tmp_path / "backup"
    publish_from_shards(root, items, [shard], model_hash="x", dim=16, steps_per_second=4.0)
    live = current_version(root)

    report = bk.backup(root, dest)

    assert report.version == live and report.copied == [live] and report.attempts == 1
    listed = IndexVersion.open(root).manifest["files"]
    assert report.files == len(listed) + 1
    assert report.bytes == sum(p.stat().st_size for p in (root / str(live)).iterdir())
    assert sound_backup(dest) == live
    copy = IndexVersion.open(dest, verify=True)
    assert copy.name == live and not (dest / str(live) / "items.sqlite").samefile(
        root / str(live) / "items.sqlite"
    )
    q = Query("visual", query[0], query)
    want = Searcher.open(root).search(q, "video", k=5, rerank_k=20)
    got = Searcher.open(dest).search(q, "video", k=5, rerank_k=20)
    assert [(h.id, h.score, h.start_s, h.end_s) for h in got.hits] == [
        (h.id, h.score, h.start_s, h.end_s) for h in want.hits
    ]


def test_hardlinked_backup_shares_the_files_and_is_verified(tmp_path: Path) -> None:
    root, dest = tmp_path / "root", tmp_path / "backup"
    name = publish(root, tag=1)
    report = bk.backup(root, dest, link=True)
    assert report.linked == report.files - 1  # every file but the manifest, written anew
    assert (dest / name / "visual.seq.f16").samefile(root / name / "visual.seq.f16")
    assert sound_backup(dest) == name


def test_backup_into_an_earlier_backup_adds_the_new_version_and_moves_current(
    tmp_path: Path,
) -> None:
    root, dest = tmp_path / "root", tmp_path / "backup"
    first = publish(root, tag=1)
    assert bk.backup(root, dest).copied == [first]
    second = publish(root, tag=2)
    report = bk.backup(root, dest)
    assert report.copied == [second] and report.skipped == []
    assert list_versions(dest) == [first, second] and sound_backup(dest) == second
    again = bk.backup(root, dest)  # nothing new: verified, not copied
    assert again.copied == [] and again.skipped == [second] and again.files == 0

    # A backup of another root whose version has the same name is refused, not overwritten.
    other = tmp_path / "other"
    shutil.copytree(root / first, other / second)
    (other / CURRENT).write_text(second + "\n")
    manifest = json.loads((other / second / "manifest.json").read_bytes())
    (other / second / "manifest.json").write_bytes(_seal({**manifest, "version": second}))
    before = tree(dest)
    with pytest.raises(bk.BackupError, match="different version of the same name"):
        bk.backup(other, dest)
    assert tree(dest) == before


def test_backup_all_copies_every_version_and_current_names_the_live_one(tmp_path: Path) -> None:
    root, dest = tmp_path / "root", tmp_path / "backup"
    names = [publish(root, tag=t, make_current=t == 1) for t in range(3)]
    report = bk.backup(root, dest, all_versions=True)
    assert sorted(report.copied) == names and report.failed == {}
    assert list_versions(dest) == names and sound_backup(dest) == names[1]
    assert all(verify(dest, n) == [] for n in names)


def test_naive_copy_names_a_missing_version_where_backup_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's `cp -a` failure, made deterministic: a publish + gc lands during the copy."""
    root = tmp_path / "root"
    publish(root, tag=0)
    tags = iter(range(1, 100))

    def publish_and_gc(*_: object) -> None:
        publish(root, tag=next(tags))
        gc(root, keep=1)

    naive = tmp_path / "naive"
    fired = []

    def copy_after_a_publish(src: str, dst: str) -> str:
        if not fired:
            fired.append(src)
            publish_and_gc()
        return shutil.copy2(src, dst)

    with contextlib.suppress(shutil.Error):  # cp -a, too, reports vanished files and goes on
        shutil.copytree(root, naive, copy_function=copy_after_a_publish)
    named = current_version(naive)
    assert named is not None and named not in list_versions(naive)

    # The same interference during our copies, with and without ROOT's lock, copying or linking.
    for lockless, link in [(False, False), (True, False), (False, True), (True, True)]:
        with monkeypatch.context() as m:
            if lockless:
                m.setattr(bk, "_lock_source", lambda root: contextlib.nullcontext())
            wrap_copy(m, lambda i, *_: publish_and_gc() if i == 0 else None)
            dest = tmp_path / f"ours-{lockless}-{link}"
            report = bk.backup(root, dest, link=link)
        assert sound_backup(dest) == report.version


def test_backups_during_a_publish_and_gc_loop_always_name_a_present_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    publish(root, tag=0)
    stop, errors, published = threading.Event(), [], [0]

    def churn() -> None:
        try:
            while not stop.is_set():
                published[0] += 1
                publish(root, tag=published[0])
                gc(root, keep=1)
        except Exception as e:  # any failure fails the test
            errors.append(e)

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        naive_bad = 0
        for i in range(30):
            with monkeypatch.context() as m:
                if i % 3 == 2:  # a root we may not lock: the retry path
                    m.setattr(bk, "_lock_source", lambda root: contextlib.nullcontext())
                dest = tmp_path / f"b{i}"
                report = bk.backup(root, dest, link=i % 2 == 1)
            assert sound_backup(dest) == report.version
            incremental = bk.backup(root, tmp_path / "incremental")
            assert sound_backup(tmp_path / "incremental") == incremental.version
            naive = tmp_path / f"naive{i}"
            try:
                shutil.copytree(root, naive)
                named = current_version(naive)
                naive_bad += named not in list_versions(naive) or verify(naive) != []
            except shutil.Error:
                naive_bad += 1
    finally:
        stop.set()
        thread.join()
    assert not errors, errors[:1]
    assert published[0] >= 5, "the publisher must really have raced the backups"
    print(f"naive copytree: {naive_bad}/30 inconsistent; {published[0]} versions published")
    assert len(list_versions(tmp_path / "incremental")) >= 2


def test_a_copy_corrupted_in_transit_is_retried_and_never_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, dest = tmp_path / "root", tmp_path / "backup"
    name = publish(root, tag=1)
    seen: list[Path] = []
    original = bk._copy_file

    def corrupt_first(fd: int, src: Path, dst: Path, link: bool) -> bool:
        linked = original(fd, src, dst, link)
        if not seen:
            flip_byte(dst)
            seen.append(dst)
        # The half-done copy is never under a version name in DEST.
        assert not (dest / name).exists()
        return linked

    monkeypatch.setattr(bk, "_copy_file", corrupt_first)
    report = bk.backup(root, dest)
    assert report.attempts == 2 and report.copied == [name]
    assert sound_backup(dest) == name


def test_a_source_corrupted_during_backup_is_refused_and_dest_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, dest = tmp_path / "root", tmp_path / "backup"
    first = publish(root, tag=1)
    bk.backup(root, dest)
    name = publish(root, tag=2)
    before = tree(dest)

    def flip_source_once(i: int, src: Path, dst: Path) -> None:
        if src.name == "visual.seq.f16" and not getattr(flip_source_once, "done", False):
            flip_byte(src)
            flip_source_once.done = True  # type: ignore[attr-defined]

    wrap_copy(monkeypatch, flip_source_once)
    with pytest.raises(IndexCorrupt, match=r"visual\.seq\.f16") as e:
        bk.backup(root, dest)
    assert name in str(e.value)
    assert tree(dest) == before and current_version(dest) == first
    assert not [p for p in dest.iterdir() if p.name.startswith(TMP_PREFIX)]


def test_a_hostile_manifest_path_is_refused_before_anything_is_read(tmp_path: Path) -> None:
    root, dest = tmp_path / "root", tmp_path / "backup"
    name = publish(root, tag=1)
    path = root / name / "manifest.json"
    manifest = json.loads(path.read_bytes())
    manifest["files"]["../../escape"] = manifest["files"].pop("visual.faiss")
    path.write_bytes(_seal(manifest))
    with pytest.raises(IndexCorrupt, match="not an allowed file name"):
        bk.backup(root, dest)
    assert not (tmp_path / "escape").exists() and list_versions(dest) == []


def test_dest_must_be_a_backup_directory(tmp_path: Path) -> None:
    root = tmp_path / "root"
    publish(root, tag=1)
    with pytest.raises(bk.BackupError, match="index root itself"):
        bk.backup(root, root)
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("mine")
    with pytest.raises(bk.BackupError, match=r"notes\.txt"):
        bk.backup(root, home)
    assert sorted(p.name for p in home.iterdir()) == ["notes.txt"]
    with pytest.raises(FileNotFoundError, match="no published index"):
        bk.backup(tmp_path / "home", tmp_path / "b2")


# --- restore ----------------------------------------------------------------------------------


@pytest.fixture
def backed_up(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """ROOT with three versions (the last live) and a --all backup of it."""
    root, dest = tmp_path / "root", tmp_path / "backup"
    names = [publish(root, tag=t) for t in range(3)]
    bk.backup(root, dest, all_versions=True)
    return root, dest, names


def test_restore_into_an_empty_root(
    backed_up: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    _, dest, names = backed_up
    fresh = tmp_path / "fresh"
    report = bk.restore(dest, fresh)
    assert report.version == names[-1] and report.copied == [names[-1]] and report.previous is None
    assert current_version(fresh) == names[-1] and list_versions(fresh) == [names[-1]]
    version = IndexVersion.open(fresh, verify=True)
    assert (version.sequences("visual").get(0) == 2).all()  # tag 2's values
    assert not [p for p in fresh.iterdir() if p.name.startswith(TMP_PREFIX)]


def test_restore_into_a_root_with_other_versions(
    backed_up: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    root, dest, names = backed_up
    shutil.rmtree(root / names[0])  # lost since the backup
    assert verify(root, names[0]) != []
    report = bk.restore(dest, root, version=names[0])
    assert report.copied == [names[0]] and report.previous == names[-1]
    assert current_version(root) == names[0] and list_versions(root) == names
    assert (IndexVersion.open(root).sequences("visual").get(0) == 0).all()
    # Restoring what the root already holds is a rollback: verified, reused, made current.
    again = bk.restore(dest, root, version=names[1])
    assert again.copied == [] and again.skipped == [names[1]] and current_version(root) == names[1]


def test_restore_refuses_a_corrupt_backup_and_leaves_the_root_untouched(
    backed_up: tuple[Path, Path, list[str]],
) -> None:
    root, dest, names = backed_up
    shutil.rmtree(root / names[0])
    flip_byte(dest / names[0] / "items.sqlite")
    before = tree(root)
    with pytest.raises(IndexCorrupt, match=r"items\.sqlite: sha256 mismatch"):
        bk.restore(dest, root, version=names[0])
    assert tree(root) == before and current_version(root) == names[-1]
    assert list_versions(root) == names[1:]


def test_restore_refuses_a_copy_that_does_not_verify(
    backed_up: tuple[Path, Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, dest, names = backed_up
    shutil.rmtree(root / names[0])
    before = tree(root)
    original = bk._copy_file

    def corrupt(fd: int, src: Path, dst: Path, link: bool) -> bool:
        linked = original(fd, src, dst, link)
        if dst.name == "audio.rows.npy":
            flip_byte(dst)
        return linked

    monkeypatch.setattr(bk, "_copy_file", corrupt)
    with pytest.raises(IndexCorrupt, match=r"audio\.rows\.npy"):
        bk.restore(dest, root, version=names[0])
    assert tree(root) == before and current_version(root) == names[-1]
    assert not [p for p in root.iterdir() if p.name.startswith(TMP_PREFIX)]


def test_restore_refuses_a_different_version_of_the_same_name(
    backed_up: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    _, dest, names = backed_up
    other = tmp_path / "other"
    publish(other, tag=9)
    # Another root's version under this backup's name (as two roots' counters can collide).
    shutil.copytree(other / list_versions(other)[0], other / names[-1])
    (other / CURRENT).write_text(names[-1] + "\n")
    before = tree(other)
    with pytest.raises(bk.BackupError, match="different version of the same name"):
        bk.restore(dest, other)
    assert tree(other) == before


# --- CLI --------------------------------------------------------------------------------------


def run_cli(*args: str) -> tuple[int, str]:
    from typer.testing import CliRunner

    from service.cli import app

    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_cli_backup_and_restore(tmp_path: Path) -> None:
    root, dest, fresh = tmp_path / "root", tmp_path / "backup", tmp_path / "fresh"
    name = publish(root, tag=3)
    code, out = run_cli("index", "backup", str(dest), "--index", str(root))
    assert code == 0, out
    report = json.loads(out.strip().splitlines()[-1])
    assert report["version"] == name and report["files"] > 1 and report["bytes"] > 0
    assert set(report) >= {"version", "files", "bytes", "seconds"}

    code, out = run_cli("index", "restore", str(dest), "--index", str(fresh))
    assert code == 0, out
    assert json.loads(out.strip().splitlines()[-1])["version"] == name
    assert current_version(fresh) == name and IndexVersion.open(fresh).name == name

    flip_byte(dest / name / "visual.rows.npy")
    code, out = run_cli("index", "restore", str(dest), "--index", str(tmp_path / "third"))
    assert code == 1 and "visual.rows.npy" in out
    assert not (tmp_path / "third").exists()
