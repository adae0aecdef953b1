"""Backups of an index root, and restoring one, without ever naming a version that is not there.

`cp -a ROOT DEST` while versions are published copies CURRENT and the version directories at
different moments: CURRENT may name a version published (or a version gc removed) after the copy
listed the directory. Here the unit of copy is one version, taken from what CURRENT named:

    backup:  under ROOT's publish lock (milliseconds), read CURRENT and open the manifest and every
             file it lists; the open descriptors keep the bytes even if gc deletes the version
             later, so publishes and gc go on while the bytes are copied. The copy goes into
             DEST/.tmp-backup-*, is verified against its manifest (every sha256), renamed to
             DEST/<version>, and only then DEST/CURRENT is replaced (temp file + fsync + rename).
             Where ROOT's lock cannot be taken (a read-only root), a version that vanishes before
             its files are open, or a copy that does not verify, is retried with the new CURRENT.
    restore: verify the backup's version, copy it into ROOT/.tmp-restore-*, verify the copy, rename
             it to its name and make it CURRENT under ROOT's publish lock.

DEST is itself an index root: `IndexVersion.open(DEST)`, `trimodal index verify --index DEST` and
`gc` work on it. A name already present in DEST (or ROOT, on restore) is reused only if it holds the
same manifest and verifies; a different version of the same name is refused, never overwritten.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from index.version import (
    _CHUNK,
    _FILE_NAME_RE,
    CURRENT,
    LOCK,
    MANIFEST,
    TMP_PREFIX,
    IndexCorrupt,
    _fsync_dir,
    _problems,
    _root_lock,
    _seal,
    _version_dir,
    _write_current,
    current_version,
    is_version_name,
    list_versions,
)

ATTEMPTS = 5
_MAX_MANIFEST = 64 << 20  # a manifest is a few KiB per file; never slurp a hostile one


class BackupError(Exception):
    """A backup or restore that cannot be done as asked; the message says why."""


@dataclass
class BackupReport:
    version: str  # what DEST/CURRENT (or ROOT/CURRENT, on restore) names now
    dest: str
    copied: list[str] = field(default_factory=list)  # versions written by this run
    skipped: list[str] = field(default_factory=list)  # already there, same manifest, verified
    vanished: list[str] = field(default_factory=list)  # --all: removed by gc before being opened
    failed: dict[str, str] = field(default_factory=dict)  # --all: older versions that are corrupt
    files: int = 0
    bytes: int = 0
    linked: int = 0  # files hard-linked rather than copied
    attempts: int = 0
    seconds: float = 0.0
    previous: str | None = None  # restore: what CURRENT named before

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Snapshot:
    """One version's manifest bytes and an open descriptor per listed file."""

    name: str
    path: Path
    manifest: bytes
    fds: dict[str, int]

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


class _Vanished(Exception):
    """The version's directory (or a file of it) was gone when we went to open it."""


def _listed_files(raw: bytes, name: str) -> list[str]:
    """The file names a sealed manifest lists; IndexCorrupt (naming the manifest) otherwise."""
    try:
        manifest = json.loads(raw)
        sealed = isinstance(manifest, dict) and raw == _seal(manifest)
    except ValueError:
        sealed = False
    if not sealed:
        raise IndexCorrupt(f"{name}/{MANIFEST}: not valid or checksum mismatch")
    files = manifest.get("files")
    if manifest.get("version") != name or not isinstance(files, dict):
        raise IndexCorrupt(f"{name}/{MANIFEST}: names another version or lists no files")
    bad = [f for f in files if not _FILE_NAME_RE.fullmatch(f) or f == MANIFEST]
    if bad:  # a listed "../x" must never become a path we read or write
        raise IndexCorrupt(f"{name}/{MANIFEST}: not an allowed file name: {bad[0]!r}")
    return sorted(files)


def _open_file(path: Path) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except (FileNotFoundError, NotADirectoryError) as e:
        raise _Vanished(str(path)) from e
    except OSError as e:  # ELOOP: a symlink where a version file should be
        raise IndexCorrupt(f"{path.parent.name}/{path.name}: not a regular file ({e})") from e


def _open_version(root: Path, name: str) -> _Snapshot:
    vdir = _version_dir(root, name)
    fd = _open_file(vdir / MANIFEST)
    try:
        raw = os.read(fd, _MAX_MANIFEST + 1)
        while len(raw) <= _MAX_MANIFEST and (more := os.read(fd, _MAX_MANIFEST + 1 - len(raw))):
            raw += more
    finally:
        os.close(fd)
    if len(raw) > _MAX_MANIFEST:
        raise IndexCorrupt(f"{name}/{MANIFEST}: over {_MAX_MANIFEST} bytes")
    snap = _Snapshot(name, vdir, raw, {})
    try:
        for fname in _listed_files(raw, name):
            snap.fds[fname] = _open_file(vdir / fname)
    except BaseException:
        snap.close()
        raise
    return snap


@contextlib.contextmanager
def _lock_source(root: Path) -> Iterator[None]:
    """ROOT's publish lock, so gc cannot remove the version between reading CURRENT and opening
    its files; held only for that. A root we may not write (no lock file) relies on retries."""
    try:
        lock = _root_lock(root)
        lock.__enter__()
    except OSError:
        yield
        return
    try:
        yield
    finally:
        lock.__exit__(None, None, None)


def _copy_file(src_fd: int, src_path: Path, dst: Path, link: bool) -> bool:
    """Put one file at dst; True if hard-linked. Tests replace this to corrupt a copy."""
    if link:
        try:
            os.link(src_path, dst, follow_symlinks=False)
            return True
        except OSError:
            pass  # another filesystem, no hard links there, or gc removed the name: copy the fd
    with open(dst, "xb") as out:
        offset = 0
        while chunk := os.pread(src_fd, _CHUNK, offset):
            out.write(chunk)
            offset += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    return False


@contextlib.contextmanager
def _temp_dir(root: Path, kind: str) -> Iterator[Path]:
    """ROOT/.tmp-<kind>-<random>, flocked like a live build (so gc leaves it alone) and removed
    unless it was renamed away. Made and flocked under ROOT's lock, which gc holds while it
    looks: it must never see the dir between the mkdir and the flock."""
    path = Path(root) / f"{TMP_PREFIX}{kind}-{secrets.token_hex(8)}"
    with _root_lock(root):
        path.mkdir()
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield path
    finally:
        os.close(fd)
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)


def _check_existing(target: Path, snap: _Snapshot) -> None:
    """Returns if `target` already holds this very version, sound; raises otherwise."""
    try:
        raw = (target / MANIFEST).read_bytes()
    except OSError:
        raw = b""
    if raw and raw != snap.manifest:
        raise BackupError(
            f"{target} holds a different version of the same name; not overwriting it "
            "(move it away, or back up into another directory)"
        )
    problems = _problems(target, snap.name)
    if problems:
        raise IndexCorrupt(
            f"{target} exists but is damaged: {'; '.join(problems)} (move it away and retry)",
            problems,
        )


def _place(snap: _Snapshot, dest: Path, link: bool, report: BackupReport, kind: str) -> list[str]:
    """Copy a snapshot into DEST/<name> (or find it there): [] if placed or present, else the
    copy's problems (nothing is left behind). Raises if DEST holds something else."""
    target = dest / snap.name
    if target.exists():
        _check_existing(target, snap)
        report.skipped.append(snap.name)
        return []
    with _temp_dir(dest, kind) as tmp:
        files = nbytes = linked = 0
        for fname, fd in snap.fds.items():
            linked += _copy_file(fd, snap.path / fname, tmp / fname, link)
            files += 1
            nbytes += os.fstat(fd).st_size
        with open(tmp / MANIFEST, "xb") as f:
            f.write(snap.manifest)
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(tmp)
        # Hard-linked files are checked too: "immutable" is a promise, not a guarantee.
        problems = _problems(tmp, snap.name)
        if problems:
            return problems
        with _root_lock(dest):
            if target.exists():  # a concurrent backup of the same version got there first
                _check_existing(target, snap)
                report.skipped.append(snap.name)
                return []
            os.rename(tmp, target)
            _fsync_dir(dest)
    report.copied.append(snap.name)
    report.files += files + 1
    report.bytes += nbytes + len(snap.manifest)
    report.linked += linked
    return []


def _source_state(root: Path, name: str) -> str:
    """After a failed attempt: "moved" (CURRENT moved on, or the version is gone: retry),
    or the source version's problems joined (it is corrupt: refuse), or "" (sound: retry)."""
    try:
        if current_version(root) != name or not (Path(root) / name).is_dir():
            return "moved"
    except IndexCorrupt as e:
        return str(e)
    return "; ".join(_problems(Path(root) / name, name))


def _check_dest(root: Path, dest: Path) -> None:
    if dest.exists() and dest.resolve() == Path(root).resolve():
        raise BackupError(f"{dest} is the index root itself")
    if not dest.exists():
        return
    if not dest.is_dir():
        raise BackupError(f"{dest} is not a directory")
    for entry in os.scandir(dest):
        n = entry.name
        if not (is_version_name(n) or n in (CURRENT, LOCK) or n.startswith(TMP_PREFIX)):
            raise BackupError(
                f"{dest} holds {n!r}, which is not part of an index backup; "
                "give an empty directory or an earlier backup"
            )


def backup(
    root: Path,
    dest: Path,
    *,
    all_versions: bool = False,
    link: bool = False,
    attempts: int = ATTEMPTS,
) -> BackupReport:
    """Copy ROOT's live version (with `all_versions`, every published one) into DEST, verified,
    and point DEST/CURRENT at the live one. Versions DEST already holds are verified, not copied.

    `link` hard-links files when DEST is on the same filesystem (a version's files never change
    after publish), falling back to a copy; a byte flipped on disk then shows in both copies.
    Raises FileNotFoundError (no CURRENT), IndexCorrupt (the live version is corrupt; the message
    names the file), BackupError (DEST holds something else, or every attempt raced)."""
    root, dest = Path(root), Path(dest)
    start = time.monotonic()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such index root")
    _check_dest(root, dest)
    dest.mkdir(parents=True, exist_ok=True)
    report = BackupReport(version="", dest=str(dest))
    last = ""
    for attempt in range(1, attempts + 1):
        report.attempts = attempt
        with _lock_source(root):
            name = current_version(root)
            if name is None:
                raise FileNotFoundError(f"{root / CURRENT}: no published index to back up")
            try:
                snap = _open_version(root, name)
            except _Vanished as e:
                snap, last = None, f"{name} vanished while being opened ({e})"
        if snap is not None:
            try:
                problems = _place(snap, dest, link, report, "backup")
            finally:
                snap.close()
            if not problems:
                with _root_lock(dest):
                    _write_current(dest, name)
                report.version = name
                break
            last = f"the copy of {name} did not verify: {'; '.join(problems)}"
        state = _source_state(root, name)
        if state not in ("", "moved"):
            raise IndexCorrupt(f"{root / name} is corrupt, not backed up: {state}", [state])
    else:
        raise BackupError(f"gave up after {attempts} attempts: {last}")
    if all_versions:
        _backup_others(root, dest, link, report)
    report.seconds = round(time.monotonic() - start, 3)
    return report


def _backup_others(root: Path, dest: Path, link: bool, report: BackupReport) -> None:
    """The non-live versions, after the live one: one gc removed is recorded, not an error; a
    corrupt one is recorded in `failed` and the others still copied."""
    for name in list_versions(root):
        if name in report.copied or name in report.skipped:
            continue
        try:
            with _lock_source(root):
                snap = _open_version(root, name)
        except _Vanished:
            report.vanished.append(name)
            continue
        except IndexCorrupt as e:
            report.failed[name] = str(e)
            continue
        try:
            # One retry: a copy that fails twice from open descriptors means bad bytes at source.
            problems = _place(snap, dest, link, report, "backup") and _place(
                snap, dest, link, report, "backup"
            )
            if problems:
                report.failed[name] = f"the copy did not verify: {'; '.join(problems)}"
        except IndexCorrupt as e:
            report.failed[name] = str(e)
        finally:
            snap.close()


def restore(
    src: Path, root: Path, *, version: str | None = None, link: bool = False
) -> BackupReport:
    """Put a backed-up version (default: SRC's CURRENT) into ROOT and make it CURRENT.

    SRC's version is verified first and its copy in ROOT again before it gets its name; ROOT is
    left untouched if either fails (IndexCorrupt, naming the file). A version of that name
    already in ROOT is reused if identical and sound, else refused (BackupError)."""
    src, root = Path(src), Path(root)
    start = time.monotonic()
    name = version if version is not None else current_version(src)
    if name is None:
        raise FileNotFoundError(f"{src / CURRENT}: no backup here (or give --version)")
    if not is_version_name(name):
        raise BackupError(f"not a version name: {name!r}")
    problems = _problems(src / name, name)
    if problems:
        raise IndexCorrupt(f"{src / name}: {'; '.join(problems)}", problems)
    root.mkdir(parents=True, exist_ok=True)
    report = BackupReport(version=name, dest=str(root), attempts=1)
    try:
        report.previous = current_version(root)
    except IndexCorrupt:
        report.previous = None  # a damaged CURRENT is what a restore is for
    try:
        snap = _open_version(src, name)
    except _Vanished as e:
        raise BackupError(f"{src / name} changed during the restore ({e})") from e
    try:
        problems = _place(snap, root, link, report, "restore")
        if problems:
            raise IndexCorrupt(
                f"the copy of {name} into {root} did not verify ({'; '.join(problems)}); "
                f"{root} is unchanged",
                problems,
            )
    finally:
        snap.close()
    with _root_lock(root):
        _write_current(root, name)
    report.seconds = round(time.monotonic() - start, 3)
    return report
