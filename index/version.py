"""Index version directories: build in a temp dir, publish atomically, open with checksums.

Layout under ROOT:

    ROOT/CURRENT                       names the live version (one line)
    ROOT/v000007-20261122T035500Z/     a published version, never modified after publish
    ROOT/.tmp-*                        builds in progress (or left by a crash; `gc` removes them)
    ROOT/.publish.lock                 serialises publish and gc (POSIX `flock`)
    ROOT/.work/<key>/                  embedding shards of a build or add (`index.embed`)

A version holds `manifest.json`, `items.sqlite`, and per indexed modality `<m>.faiss` (written by
the FAISS side through `VersionWriter.add_file` or into `VersionWriter.path`), `<m>.rows.npy`
(FAISS row -> item row) and the sequence store (`index.store`). The manifest lists the sha256 and
size of every other file, and carries a checksum of itself (`manifest_sha256`, over its canonical
JSON without that field), so one flipped byte anywhere is found.

Publishing is: fsync every file, write the manifest, fsync the dir, rename the temp dir to its
version name, fsync ROOT, then replace CURRENT (temp file + fsync + os.replace + fsync ROOT). A
crash at any point leaves either the old CURRENT or the new one, never a half-written version
under a version name.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from index import store
from index.store import INDEXED_MODALITIES, SequenceStore, indexed_modality

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ITEMS = "items.sqlite"
CURRENT = "CURRENT"
TMP_PREFIX = ".tmp-"
LOCK = ".publish.lock"
SCRATCH = ".scratch"  # a build's temporary files, never published
VERSION_RE = re.compile(r"v(\d{6,})-(\d{8}T\d{6}Z)")
STALE_TMP_S = 3600.0  # only where flock does not work: a live build cannot be told apart
WORK_DIR = ".work"  # ROOT/.work/<key>/: builds' embedding shards (`index.embed`)
WORK_LOCK = ".lock"  # flocked in a work dir while its build runs
OLD_WORK_DIRS = (".work-add",)  # the work dir of `index add` before work dirs were keyed
STALE_WORK_S = 24 * 3600.0  # a killed build's shards are kept this long for a --resume
_FILE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_CHUNK = 1 << 20
# Optional (dim, d) float32 projection of the modality stores' steps (compressed stores).
PROJECTION = "sequence_projection.f32"
# Optional (n_items, 2) float32 .npy: each item's audio–visual agreement score and estimated audio
# offset in seconds (models.alignment.av_agreement), NaN where an item lacks sound or picture.
# Written only when the model's sequence heads were trained to match sound with picture.
AGREEMENT = "av_agreement.npy"
# Item flag that says an item has each indexed modality.
_FLAG = {"visual": "has_video", "audio": "has_audio"}

_SCHEMA = """
CREATE TABLE items (
    row INTEGER PRIMARY KEY,
    id TEXT UNIQUE NOT NULL,
    media TEXT NOT NULL,
    duration_s REAL,
    has_video INTEGER,
    has_audio INTEGER,
    title TEXT,
    meta TEXT /* json */
)
"""


class IndexCorrupt(Exception):
    """A version (or CURRENT) fails its checks; the message names the file."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems) or [message]


@dataclass(frozen=True)
class ItemRecord:
    id: str
    media: str
    duration_s: float | None
    has_video: bool
    has_audio: bool
    title: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, hash=False)


def rows_filename(modality: str) -> str:
    return f"{indexed_modality(modality)}.rows.npy"


def faiss_filename(modality: str) -> str:
    return f"{indexed_modality(modality)}.faiss"


# --- names, CURRENT, listing ------------------------------------------------------------------


def is_version_name(name: str) -> bool:
    return VERSION_RE.fullmatch(name) is not None


def _counter(name: str) -> int:
    m = VERSION_RE.fullmatch(name)
    assert m is not None
    return int(m.group(1))


def _version_dir(root: Path, name: str) -> Path:
    """ROOT/name for a plain version name; anything else (a path, "..") is refused."""
    if not is_version_name(name):
        raise ValueError(f"not a version name: {name!r}")
    return Path(root) / name


def current_version(root: Path) -> str | None:
    """The version CURRENT names, None if there is no CURRENT; IndexCorrupt if it is not a name."""
    try:
        with open(Path(root) / CURRENT, "rb") as f:
            raw = f.read(256)  # a version name is short; never slurp a hostile file
    except FileNotFoundError:
        return None
    name = raw.decode("utf-8", errors="replace").strip()
    if not is_version_name(name):  # also refuses "../etc", "/abs/path", "a/b"
        raise IndexCorrupt(f"{CURRENT}: {name[:80]!r} is not a version name")
    return name


def list_versions(root: Path) -> list[str]:
    """Published versions, oldest first (temp dirs, files and symlinks are not versions)."""
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return []
    names = [e.name for e in entries if is_version_name(e.name) and e.is_dir(follow_symlinks=False)]
    return sorted(names, key=lambda n: (_counter(n), n))


@contextlib.contextmanager
def _root_lock(root: Path) -> Iterator[None]:
    with open(Path(root) / LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def locked_tmp_dir(path: Path) -> int:
    """Make `path` (ROOT/.tmp-<something>) and hold an flock on it; returns the fd to close.

    Both happen under ROOT's lock, which `gc` holds while it looks: gc removes an unlocked
    `.tmp-` dir at once, so it must never see one between its mkdir and its flock.
    """
    with _root_lock(path.parent):
        path.mkdir()
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            shutil.rmtree(path, ignore_errors=True)
            raise
    return fd


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path: Path, fsync: bool = False) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
        if fsync:
            os.fsync(f.fileno())
    return h.hexdigest()


def _canonical(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, sort_keys=True, indent=2, allow_nan=False) + "\n").encode()


def _seal(manifest: dict[str, Any]) -> bytes:
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return _canonical({**body, "manifest_sha256": hashlib.sha256(_canonical(body)).hexdigest()})


def _write_current(root: Path, name: str) -> None:
    tmp = Path(root) / f"{TMP_PREFIX}{CURRENT}-{secrets.token_hex(4)}"
    with open(tmp, "x", encoding="utf-8") as f:
        f.write(name + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, Path(root) / CURRENT)
    _fsync_dir(Path(root))


# --- writing ----------------------------------------------------------------------------------


def _item_row(i: int, r: ItemRecord) -> tuple[Any, ...]:
    if not isinstance(r.id, str) or not r.id:
        raise ValueError(f"item {i}: id must be a non-empty string")
    if not isinstance(r.media, str) or not r.media:
        raise ValueError(f"item {r.id!r}: media must be a non-empty string")
    if r.duration_s is not None and not (math.isfinite(r.duration_s) and r.duration_s >= 0):
        raise ValueError(f"item {r.id!r}: duration_s must be finite and >= 0")
    if not (r.has_video or r.has_audio):
        raise ValueError(f"item {r.id!r}: has neither video nor audio")
    meta = json.dumps(r.meta, sort_keys=True, allow_nan=False)
    return (r.id, r.media, r.duration_s, int(r.has_video), int(r.has_audio), r.title, meta)


class VersionWriter:
    """Builds a version in ROOT/.tmp-<random>; `publish` makes it real, anything else removes it.

        with VersionWriter(root, model_hash=h, dim=256, steps_per_second=4.0,
                           factories={"visual": "Flat", "audio": "Flat"}) as w:
            w.add_items(records)
            w.write_sequences("visual", seqs)
            w.write_rows("visual", rows)
            w.add_file("visual.faiss", faiss_bytes_or_callback)
            name = w.publish()

    The temp dir is `flock`ed while the writer lives, so `gc` never removes a live build however
    long it runs.
    """

    def __init__(
        self,
        root: Path,
        *,
        model_hash: str,
        dim: int,
        steps_per_second: float,
        factories: dict[str, str],
        build_info: dict[str, Any] | None = None,
    ) -> None:
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        if not (math.isfinite(steps_per_second) and steps_per_second > 0):
            raise ValueError(f"steps_per_second must be positive, got {steps_per_second}")
        self._factories = {str(indexed_modality(m)): str(f) for m, f in factories.items()}
        self._build_info = dict(build_info or {})
        json.dumps(self._build_info, allow_nan=False)  # fail now, not at publish
        self._model_hash = str(model_hash)
        self._dim = int(dim)
        self._steps_per_second = float(steps_per_second)
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._path = Path(os.path.realpath(self.root)) / f"{TMP_PREFIX}{secrets.token_hex(8)}"
        self._published: str | None = None
        self._store_dims: dict[str, int] = {}
        self._n_items = 0
        self._db: sqlite3.Connection | None = None
        self._lock_fd: int | None = locked_tmp_dir(self._path)
        try:
            self._db = sqlite3.connect(self._path / ITEMS)
            self._db.execute(_SCHEMA)
            self._db.commit()
        except BaseException:
            self.close()
            raise

    @property
    def path(self) -> Path:
        """The temp dir; files written here are checksummed and published with the version."""
        return self._path

    def __enter__(self) -> VersionWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Drop the build unless it was published (idempotent)."""
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._published is None and self._path.exists():
            shutil.rmtree(self._path, ignore_errors=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _open_db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("this VersionWriter is closed or published")
        return self._db

    def add_items(self, records: Sequence[ItemRecord]) -> None:
        """Append items; rows are assigned in order. Duplicate ids raise ValueError (no rows)."""
        db = self._open_db()
        values = [_item_row(self._n_items + i, r) for i, r in enumerate(records)]
        seen: set[str] = set()
        for v in values:
            if v[0] in seen:
                raise ValueError(f"duplicate item id {v[0]!r}")
            seen.add(v[0])
        start = self._n_items
        try:
            with db:  # one transaction: all or nothing
                db.executemany(
                    "INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(start + i, *v) for i, v in enumerate(values)],
                )
        except sqlite3.IntegrityError:
            dup = next(
                v[0]
                for v in values
                if db.execute("SELECT 1 FROM items WHERE id = ?", (v[0],)).fetchone()
            )
            raise ValueError(f"duplicate item id {dup!r}") from None
        self._n_items += len(values)

    def write_sequences(
        self,
        modality: str,
        sequences: Iterable[np.ndarray],
        dim: int | None = None,
        encoding: store.StepEncoding = "f16",
    ) -> None:
        """Stream item row i's (T_i, dim) steps, one per item in row order (T_i = 0 if absent).

        `dim` defaults to the version's; a store of projected steps (see `PROJECTION`) has its
        own, recorded in the manifest with the store's encoding.
        """
        with self.sequence_writer(modality, dim, encoding) as w:
            for seq in sequences:
                w.append(seq)

    def sequence_writer(
        self, modality: str, dim: int | None = None, encoding: store.StepEncoding = "f16"
    ) -> store.SequenceWriter:
        """A streaming writer for one store (append item by item, in row order, then close);
        `write_sequences` is the one-call form."""
        self._open_db()
        name = store.store_name(modality)
        self._store_dims[name] = int(dim or self._dim)
        return store.SequenceWriter(self._path, name, self._store_dims[name], encoding)

    def describe(self, factories: dict[str, str], build_info: dict[str, Any] | None = None) -> None:
        """Set the FAISS factories and build info when they are known only after streaming the
        items (they are checked at publish exactly as if given to the constructor)."""
        self._open_db()
        info = dict(build_info or {})
        json.dumps(info, allow_nan=False)
        self._factories = {str(indexed_modality(m)): str(f) for m, f in factories.items()}
        self._build_info = info

    def write_rows(self, modality: str, rows: np.ndarray) -> None:
        """FAISS row j -> item row rows[j]; checked against the items at publish."""
        self._open_db()
        arr = np.asarray(rows)
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"rows must be a 1-D integer array, got {arr.dtype} {arr.shape}")
        with open(self._path / rows_filename(modality), "xb") as f:
            np.save(f, arr.astype("<i8"), allow_pickle=False)

    def add_file(self, name: str, content: bytes | Callable[[Path], object]) -> None:
        """Add an opaque file (a FAISS index): its bytes, or a callback that writes the path."""
        self._open_db()
        if not _FILE_NAME_RE.fullmatch(name) or name in (MANIFEST, ITEMS):
            raise ValueError(f"not an allowed file name: {name!r}")
        target = self._path / name
        if target.exists():
            raise FileExistsError(target)
        if callable(content):
            content(target)
            if not target.is_file():
                raise ValueError(f"callback did not write {name}")
        else:
            with open(target, "xb") as f:
                f.write(content)

    def _check(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Cross-file consistency; returns the manifest's counts and sequence-store table."""
        db = self._open_db()
        counts: dict[str, Any] = {"items": self._n_items}
        stores: dict[str, Any] = {}
        suffix = ".seq.offsets.npy"
        for fname in sorted(os.listdir(self._path)):
            if not fname.endswith(suffix):
                continue
            name = store.store_name(fname.removesuffix(suffix))
            flag = _FLAG[name.partition(".")[0]]
            seqs = SequenceStore.open(self._path, name, dim=self._store_dims.get(name, self._dim))
            if len(seqs) != self._n_items:
                raise ValueError(f"{name}: {len(seqs)} sequences for {self._n_items} items")
            flagged = self._flagged(db, flag)
            if (seqs.lengths()[~flagged] > 0).any():
                raise ValueError(f"{name}: steps for items whose {flag} is false")
            stores[name] = {
                "items": len(seqs),
                "steps": int(seqs.lengths().sum()),
                "dim": seqs.dim,
                "encoding": seqs.encoding,
            }
        if PROJECTION in os.listdir(self._path):
            projection = _read_projection(self._path / PROJECTION)
            if projection.shape[0] != self._dim:
                raise ValueError(f"{PROJECTION}: {projection.shape[0]} rows for dim {self._dim}")
            for m in INDEXED_MODALITIES:
                if m in stores and stores[m]["dim"] != projection.shape[1]:
                    raise ValueError(
                        f"{m}: steps of dim {stores[m]['dim']}, projection to {projection.shape[1]}"
                    )
        for m in INDEXED_MODALITIES:
            has_rows = (self._path / rows_filename(m)).exists()
            has_faiss = (self._path / faiss_filename(m)).exists()
            if has_rows != has_faiss or (m in self._factories and not has_faiss):
                raise ValueError(f"{m}: needs both {faiss_filename(m)} and {rows_filename(m)}")
            if has_rows and m not in stores:
                raise ValueError(f"{m}: rows without sequences (re-ranking needs them)")
            if m not in stores:
                continue
            rows = (
                store.read_int64_vector(self._path / rows_filename(m))
                if has_rows
                else np.zeros(0, np.int64)
            )
            if ((rows < 0) | (rows >= self._n_items)).any():
                raise ValueError(f"{m}: rows out of range [0, {self._n_items})")
            if len(np.unique(rows)) != len(rows):
                raise ValueError(f"{m}: an item appears twice in rows")
            if not self._flagged(db, _FLAG[m])[rows].all():
                raise ValueError(f"{m}: rows for items whose {_FLAG[m]} is false")
            counts[m] = {"vectors": len(rows), "steps": stores[m]["steps"]}
        return counts, stores

    def _flagged(self, db: sqlite3.Connection, flag: str) -> np.ndarray:
        """Bool (n_items,): which items have the modality `flag` stands for."""
        flagged = np.zeros(self._n_items, bool)
        found = db.execute(f"SELECT row FROM items WHERE {flag} = 1").fetchall()
        flagged[np.array([r for (r,) in found], dtype=np.int64)] = True
        return flagged

    def scratch(self) -> Path:
        """A directory inside the build for its temporary files (e.g. pooled vectors waiting
        for the FAISS build). It goes with the build: removed at publish, and a crash leaves it
        inside the build's `.tmp-` directory, which `gc` removes."""
        path = self._path / SCRATCH
        path.mkdir(exist_ok=True)
        return path

    def publish(self, make_current: bool = True) -> str:
        """Seal, rename to the next version name, and (by default) point CURRENT at it."""
        shutil.rmtree(self._path / SCRATCH, ignore_errors=True)
        counts, stores = self._check()
        db = self._open_db()
        db.close()
        self._db = None
        files: dict[str, dict[str, Any]] = {}
        for entry in sorted(os.scandir(self._path), key=lambda e: e.name):
            if entry.name == MANIFEST or not entry.is_file(follow_symlinks=False):
                raise ValueError(f"unexpected entry in the build: {entry.name}")
            files[entry.name] = {
                "sha256": _sha256(Path(entry.path), fsync=True),
                "bytes": entry.stat().st_size,
            }
        # The lock makes choosing the next counter and moving CURRENT one step for concurrent
        # publishers (and keeps gc out); hashing, the slow part, is done before taking it.
        with _root_lock(self.root):
            existing = list_versions(self.root)
            counter = max((_counter(n) for n in existing), default=0) + 1
            now = dt.datetime.now(dt.UTC).replace(microsecond=0)
            name = f"v{counter:06d}-{now:%Y%m%dT%H%M%SZ}"
            manifest = {
                "format": FORMAT_VERSION,
                "version": name,
                "created_utc": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "model_hash": self._model_hash,
                "dim": self._dim,
                "steps_per_second": self._steps_per_second,
                "counts": counts,
                "sequence_stores": stores,
                "factories": self._factories,
                "build": self._build_info,
                "files": files,
            }
            with open(self._path / MANIFEST, "xb") as f:
                f.write(_seal(manifest))
                f.flush()
                os.fsync(f.fileno())
            _fsync_dir(self._path)
            os.rename(self._path, self.root / name)
            self._published = name
            _fsync_dir(self.root)
            if make_current:
                _write_current(self.root, name)
        self.close()
        return name


# --- reading ----------------------------------------------------------------------------------


def _read_projection(path: Path) -> np.ndarray:
    """A projection file: int64 rows, int64 cols, then rows x cols little-endian float32."""
    raw = path.read_bytes()
    if len(raw) < 16:
        raise ValueError(f"{path.name}: too short")
    rows, cols = (int.from_bytes(raw[i : i + 8], "little") for i in (0, 8))
    if not (0 < cols <= rows) or len(raw) != 16 + 4 * rows * cols:
        raise ValueError(f"{path.name}: bad shape {rows}x{cols} for {len(raw)} bytes")
    out = np.frombuffer(raw, dtype="<f4", offset=16).reshape(rows, cols)
    if not np.isfinite(out).all():
        raise ValueError(f"{path.name}: not finite")
    return out


def projection_bytes(projection: np.ndarray) -> bytes:
    """Serialise a (dim, d) projection for `VersionWriter.add_file(PROJECTION, ...)`."""
    p = np.ascontiguousarray(projection, dtype="<f4")
    if p.ndim != 2 or not 0 < p.shape[1] <= p.shape[0] or not np.isfinite(p).all():
        raise ValueError(f"projection must be a finite (dim, d) array, d <= dim; got {p.shape}")
    return p.shape[0].to_bytes(8, "little") + p.shape[1].to_bytes(8, "little") + p.tobytes()


def _read_manifest(vdir: Path, name: str) -> tuple[dict[str, Any] | None, list[str]]:
    """The manifest of a version dir if it is intact, else the problems (each naming a file)."""
    if vdir.is_symlink() or not vdir.is_dir():  # never follow a link out of ROOT
        return None, [f"{name}: not a version directory"]
    try:
        raw = (vdir / MANIFEST).read_bytes()
    except FileNotFoundError:
        return None, [f"{MANIFEST}: missing"]
    try:
        manifest = json.loads(raw)
        # Canonical bytes with a matching self-checksum: any flipped byte either breaks the JSON,
        # changes the content (checksum) or changes the layout (canonical bytes).
        sound = isinstance(manifest, dict) and raw == _seal(manifest)
    except ValueError as e:
        return None, [f"{MANIFEST}: not valid JSON ({e})"]
    if not sound:
        return None, [f"{MANIFEST}: checksum mismatch"]
    problems = []
    if manifest.get("format") != FORMAT_VERSION:
        problems.append(f"{MANIFEST}: unsupported format {manifest.get('format')!r}")
    if manifest.get("version") != name:
        problems.append(f"{MANIFEST}: names version {manifest.get('version')!r}, not {name}")
    if not isinstance(manifest.get("files"), dict):
        problems.append(f"{MANIFEST}: no files table")
    return (None if problems else manifest), problems


def _file_problems(vdir: Path, listed: dict[str, Any]) -> list[str]:
    """Missing, resized, altered or unlisted files; the slow part (hashes every byte)."""
    problems = []
    for fname, want in sorted(listed.items()):
        path = vdir / fname
        want = want if isinstance(want, dict) else {}
        if not _FILE_NAME_RE.fullmatch(fname) or fname == MANIFEST:
            problems.append(f"{fname}: not an allowed file name")
        elif path.is_symlink() or not path.is_file():
            problems.append(f"{fname}: missing")
        elif (size := path.stat().st_size) != want.get("bytes"):
            problems.append(f"{fname}: {size} bytes, expected {want.get('bytes')}")
        elif _sha256(path) != want.get("sha256"):
            problems.append(f"{fname}: sha256 mismatch")
    for entry in sorted(os.listdir(vdir)):
        if entry != MANIFEST and entry not in listed:
            problems.append(f"{entry}: not listed in the manifest")
    return problems


def _problems(vdir: Path, name: str) -> list[str]:
    manifest, problems = _read_manifest(vdir, name)
    return problems if manifest is None else _file_problems(vdir, manifest["files"])


def verify(root: Path, version: str | None = None) -> list[str]:
    """Problems with a version (default: CURRENT's), each naming its file; [] means sound."""
    try:
        name = version if version is not None else current_version(root)
    except IndexCorrupt as e:
        return [str(e)]
    if name is None:
        return [f"{CURRENT}: missing"]
    if not is_version_name(name):
        return [f"{name!r}: not a version name"]
    return _problems(_version_dir(root, name), name)


class ItemTable:
    """The items of one version, read-only.

    Threading: one SQLite connection per thread (opened on first use, `mode=ro&immutable=1`, safe
    because a published version never changes), so readers never wait on each other. `close`
    closes them all; call it only when no thread is still reading.
    """

    def __init__(self, path: Path) -> None:
        self._uri = f"{Path(path).resolve().as_uri()}?mode=ro&immutable=1"
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        (self._len,) = self._conn().execute("SELECT COUNT(*) FROM items").fetchone()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # check_same_thread=False only so that close() may close it from another thread.
            conn = sqlite3.connect(self._uri, uri=True, check_same_thread=False)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()

    def __len__(self) -> int:
        return int(self._len)

    @staticmethod
    def _record(row: tuple[Any, ...]) -> ItemRecord:
        id_, media, duration_s, has_video, has_audio, title, meta = row
        return ItemRecord(
            id=id_,
            media=media,
            duration_s=duration_s,
            has_video=bool(has_video),
            has_audio=bool(has_audio),
            title=title,
            meta=json.loads(meta) if meta else {},
        )

    _COLUMNS = "id, media, duration_s, has_video, has_audio, title, meta"

    def by_row(self, row: int) -> ItemRecord:
        found = (
            self._conn()
            .execute(f"SELECT {self._COLUMNS} FROM items WHERE row = ?", (int(row),))
            .fetchone()
        )
        if found is None:
            raise IndexError(f"no item at row {row}")
        return self._record(found)

    def by_rows(self, rows: Sequence[int]) -> list[ItemRecord]:
        """Records of `rows`, in that order: one query for a page of hits."""
        wanted = [int(r) for r in rows]
        if not wanted:
            return []
        marks = ",".join("?" * len(set(wanted)))
        found = {
            row: self._record(rest)
            for row, *rest in self._conn().execute(
                f"SELECT row, {self._COLUMNS} FROM items WHERE row IN ({marks})",
                sorted(set(wanted)),
            )
        }
        missing = [r for r in wanted if r not in found]
        if missing:
            raise IndexError(f"no item at rows {missing[:5]}")
        return [found[r] for r in wanted]

    def by_id(self, id: str) -> tuple[int, ItemRecord] | None:
        found = (
            self._conn()
            .execute(f"SELECT row, {self._COLUMNS} FROM items WHERE id = ?", (id,))
            .fetchone()
        )
        return None if found is None else (int(found[0]), self._record(found[1:]))

    def ids(self) -> list[str]:
        return [i for (i,) in self._conn().execute("SELECT id FROM items ORDER BY row")]

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[list[str]]]:
        """Every item's duration (NaN if unknown), has_video, has_audio and `meta["tags"]`, in row
        order: what filtered searches need, read once."""
        rows = self._conn().execute(
            "SELECT duration_s, has_video, has_audio, meta FROM items ORDER BY row"
        )
        durations, video, audio, tags = [], [], [], []
        for duration_s, has_video, has_audio, meta in rows:
            durations.append(np.nan if duration_s is None else float(duration_s))
            video.append(bool(has_video))
            audio.append(bool(has_audio))
            found = json.loads(meta).get("tags", []) if meta else []
            tags.append([str(t) for t in found] if isinstance(found, list) else [])
        return (
            np.asarray(durations, np.float64),
            np.asarray(video, bool),
            np.asarray(audio, bool),
            tags,
        )


class IndexVersion:
    """One published version, opened read-only. Thread-safe to share between readers."""

    def __init__(self, root: Path, name: str, manifest: dict[str, Any]) -> None:
        self.root = Path(root)
        self.name = name
        self.path = self.root / name
        self.manifest = manifest
        self._lock = threading.Lock()
        self._items: ItemTable | None = None
        self._sequences: dict[str, SequenceStore] = {}
        self._projection: np.ndarray | None = None

    @classmethod
    def open(cls, root: Path, version: str | None = None, verify: bool = True) -> IndexVersion:
        """Open `version` (default: CURRENT). With `verify`, every checksum is recomputed and any
        mismatch, missing or unlisted file raises IndexCorrupt naming the file."""
        for attempt in range(3):
            name = version if version is not None else current_version(root)
            if name is None:
                raise FileNotFoundError(f"{Path(root) / CURRENT}: no published index")
            vdir = _version_dir(root, name)
            manifest, problems = _read_manifest(vdir, name)
            if manifest is not None and verify:
                problems = _file_problems(vdir, manifest["files"])
            if not problems:
                assert manifest is not None
                return cls(root, name, manifest)
            # CURRENT moved on, and gc removed what it named, between reading it and opening.
            if version is None and attempt < 2 and current_version(root) != name:
                continue
            raise IndexCorrupt(f"{name}: " + "; ".join(problems), problems)
        raise AssertionError("unreachable")

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def modalities(self) -> list[str]:
        """Indexed modalities with a sequence store (and, if any item has them, vectors)."""
        return [m for m in INDEXED_MODALITIES if m in self.manifest["counts"]]

    def items(self) -> ItemTable:
        with self._lock:
            if self._items is None:
                self._items = ItemTable(self.path / ITEMS)
            return self._items

    def sequences(self, modality: str) -> SequenceStore:
        """A modality's store ("visual"), or a tagged one ("visual.pooled")."""
        name = store.store_name(modality)
        if name not in self.manifest["sequence_stores"]:
            raise KeyError(f"version {self.name} has no {name} sequence store")
        with self._lock:
            if name not in self._sequences:
                dim = self.manifest["sequence_stores"][name].get("dim", self.dim)
                self._sequences[name] = SequenceStore.open(self.path, name, dim=dim)
            return self._sequences[name]

    def projection(self) -> np.ndarray | None:
        """(dim, d) float32 orthonormal columns that the modality stores' steps were projected
        with (store = steps @ P), or None when they hold the steps themselves."""
        if PROJECTION not in self.manifest["files"]:
            return None
        with self._lock:
            if self._projection is None:
                self._projection = _read_projection(self.path / PROJECTION)
            return self._projection

    def agreement(self) -> np.ndarray | None:
        """(n_items, 2) float32: agreement score and audio offset (s) per item row, NaN where it
        does not apply; None for a version without them (see `AGREEMENT`)."""
        if AGREEMENT not in self.manifest["files"]:
            return None
        values = np.load(self.path / AGREEMENT, allow_pickle=False)
        n = self.manifest["counts"]["items"]
        if values.dtype != np.float32 or values.shape != (n, 2):
            raise IndexCorrupt(
                f"{AGREEMENT}: expected float32 ({n}, 2), got {values.dtype} {values.shape}"
            )
        return values

    def rows(self, modality: str) -> np.ndarray:
        """FAISS row -> item row, int64 (KeyError if the version has no such index)."""
        fname = rows_filename(modality)
        if fname not in self.manifest["files"]:
            raise KeyError(f"version {self.name} has no {modality} index")
        return store.read_int64_vector(self.path / fname)

    def faiss_path(self, modality: str) -> Path:
        return self.path / faiss_filename(modality)

    def close(self) -> None:
        with self._lock:
            if self._items is not None:
                self._items.close()


# --- garbage collection -----------------------------------------------------------------------


def _newest_mtime(path: Path) -> float:
    st = path.lstat()
    newest = st.st_mtime
    if path.is_dir() and not path.is_symlink():
        for entry in os.scandir(path):
            newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
    return newest


@contextlib.contextmanager
def _unless_locked(path: Path, lock: Path | None = None) -> Iterator[bool | None]:
    """Whether nobody holds an flock on `lock` (default: `path` itself): True (and it is held
    here until the block ends, so nobody starts on it meanwhile), False (a live build holds it)
    or None (the filesystem has no flock: only age can tell). A missing lock file is free."""
    try:
        if lock is None:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        else:
            fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        if lock is None:
            raise
        yield True
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        except OSError:  # a filesystem without flock
            yield None
            return
        yield True
    finally:
        os.close(fd)


def _build_is_live(path: Path) -> bool:
    """A VersionWriter holds an flock on its temp dir for as long as it lives."""
    if not path.is_dir() or path.is_symlink():
        return False
    with _unless_locked(path) as free:
        return free is False


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _gc_tmp(root: Path, stale_after_s: float) -> list[str]:
    """`.tmp-` entries of builds that are not running (called under the root lock)."""
    deleted = []
    now = time.time()
    for entry in os.scandir(root):
        if not entry.name.startswith(TMP_PREFIX):
            continue
        path = Path(entry.path)
        with contextlib.suppress(FileNotFoundError):
            if entry.is_dir(follow_symlinks=False):
                # Builds (VersionWriter, backups) flock their dir for as long as they live.
                with _unless_locked(path) as free:
                    dead = free or (free is None and now - _newest_mtime(path) > stale_after_s)
                    if dead:
                        _remove(path)
            elif entry.name.startswith(f"{TMP_PREFIX}{CURRENT}-"):
                # Written and renamed under the root lock, which we hold: a killed publish's.
                dead = True
                _remove(path)
            else:
                dead = now - _newest_mtime(path) > stale_after_s
                if dead:
                    _remove(path)
            if dead:
                deleted.append(entry.name)
    return deleted


def _work_dirs(root: Path) -> Iterator[Path]:
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in os.scandir(root / WORK_DIR):
            yield Path(entry.path)
    for name in OLD_WORK_DIRS:
        if (root / name).is_dir():
            yield root / name


def _gc_work(root: Path, stale_after_s: float) -> list[str]:
    """In work dirs whose build is not running: `.part` files (half-written shards or plans,
    never resumable) at once, the whole dir once untouched for `stale_after_s`."""
    deleted = []
    now = time.time()
    for path in _work_dirs(root):
        name = str(path.relative_to(root))
        with contextlib.suppress(FileNotFoundError):
            if not path.is_dir() or path.is_symlink():  # e.g. the pre-keyed layout's plan.json
                if now - path.lstat().st_mtime > stale_after_s:
                    path.unlink()
                    deleted.append(name)
                continue
            with _unless_locked(path, path / WORK_LOCK) as free:
                if free is False:
                    continue
                newest = _newest_mtime(path)
                for sub in (path, path / "shards"):
                    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                        for entry in os.scandir(sub):
                            part = entry.name.endswith(".part")
                            if part and entry.is_file(follow_symlinks=False):
                                os.unlink(entry.path)
                                deleted.append(str(Path(entry.path).relative_to(root)))
                if now - newest > stale_after_s:
                    shutil.rmtree(path)
                    deleted.append(name)
    return deleted


def gc(
    root: Path,
    keep: int = 2,
    stale_after_s: float = STALE_TMP_S,
    work_stale_after_s: float = STALE_WORK_S,
) -> list[str]:
    """Delete published versions beyond the newest `keep` (never CURRENT); `.tmp-` entries of
    builds that are not running (their flock is free; where flock does not work, once untouched
    for `stale_after_s`); and in the work dirs of builds that are not running, `.part` files at
    once and the whole dir once untouched for `work_stale_after_s` (until then it still serves a
    `--resume`). Returns the deleted names, relative to `root`."""
    if keep < 0:
        raise ValueError(f"keep must be >= 0, got {keep}")
    root = Path(root)
    deleted: list[str] = []
    if not root.is_dir():
        return deleted
    with _root_lock(root):
        current = current_version(root)
        versions = list_versions(root)
        kept = set(versions[len(versions) - keep :] if keep else [])
        for name in versions:
            if name in kept or name == current:
                continue
            # Rename first, so a crash mid-delete leaves a .tmp- leftover, not half a version.
            doomed = root / f"{TMP_PREFIX}gc-{name}"
            os.rename(root / name, doomed)
            shutil.rmtree(doomed)
            deleted.append(name)
        deleted += _gc_tmp(root, stale_after_s)
        deleted += _gc_work(root, work_stale_after_s)
    return deleted
