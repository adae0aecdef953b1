"""Corpus embedding: reader → encoder → sink, one thin loop, safe to kill and resume.

The corpus is cut into fixed shards (item j belongs to shard j // shard_size). Each shard is
decoded in worker processes, encoded in batches, and written as one `.npz` under a temporary name,
fsynced and renamed: a shard file that exists is complete. `--resume` skips the shards already on
disk; a plan file makes sure they belong to this build: its key (the kind of build, shard size,
model hash and the ordered ids and paths) must match, and each shard's content identity (size,
mtime and a hash of both ends of every file) too, or that shard is embedded again.
Files that fail to decode are recorded in their shard with the reason, never embedded as zeros.

Work directories: by default ROOT/.work/<key prefix>/, so builds and adds of different inputs never
share one. A build holds an `flock` on `<work dir>/.lock` while it runs (`gc` leaves such a
directory alone) and removes the directory once its version is published.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from index.reader import CorpusItem, Decoded, Reader
from index.version import WORK_DIR, WORK_LOCK
from models import fingerprint, prints
from models.events import (
    BANDS,
    picture_bands,
    picture_halves,
    picture_motion,
    sound_envelopes,
)
from models.media import DECODE_VERSION
from models.model import TrimodalModel
from models.motion import HALVES
from models.spare import usable_cores
from models.timbre import sound_runs

MODALITIES = ("visual", "audio")


# The store of a picture's motion envelope (`models.events.picture_motion`), one row per item.
MOTION_STORE = "visual.motion"
# The store of a picture's halves' change and motion envelopes (`models.events.picture_halves`),
# one row per item, int8 as the bands.
HALVES_STORE = "visual.halves"
# The store of a sound's landmarks (`models.fingerprint.peaks`, as `to_store` writes them): a
# piece of an indexed recording is found by them before anything learned is asked.
PEAKS_STORE = "audio.peaks"
# The store of a sound's dense prints (`models.prints.prints`, as `to_store` writes them): what
# finds a piece of a recording whose sound has too few distinct peaks for the landmarks.
PRINTS_STORE = "audio.prints"


# The store of a picture's chances of each direction read from where its foreground goes
# (`models.drift`, `TrimodalModel.picture_directions`): one row of 3 per item with pictures,
# where the model has a drift reader.
DIRECTION_STORE = "visual.direction"
DIRECTIONS = 3
# The store of a picture's chances of each kind and each colour read from its glyphs' outlines
# and pixels (`models.shape`, `TrimodalModel.glyph_reading`): one row of `GLYPH_CLASSES` per item
# with pictures whose glyphs were read, where the model reads them.
GLYPH_STORE = "visual.glyph"
# The store of a sound's chances of each kind × size read from how it sounds (`models.timbre`,
# `TrimodalModel.timbre_reading`): one row of 14 per item with a sound whose runs were read,
# where the model has a timbre reader.
TIMBRE_STORE = "audio.timbre"


def keeps_timbre(model: TrimodalModel) -> bool:
    """Whether an index built with `model` measures and keeps each sound's timbre
    (`TIMBRE_STORE`): where it has a fitted timbre reader and its search policy measured on val
    that the heard re-rank reads it (`SearchPolicy.text_heard_timbre`); elsewhere no search
    would read the rows."""
    return model.knows_timbre() and model.search_policy.text_heard_timbre


def what_store(modality: str) -> str:
    """The store of the sources a modality's stream shows / sounds (`models.what_net`): one row
    of class probabilities per item, none where the model has no trained networks."""
    return f"{modality}.what"


def bands_store(modality: str) -> str:
    """The store of a modality's banded envelopes (`models.events.sound_bands` /
    `picture_bands`), one row per item."""
    return f"{modality}.bands"


@torch.inference_mode()
def encode_batch(model: TrimodalModel, batch: Sequence[Decoded]) -> dict[str, list[Any]]:
    """(pooled (D,), sequence (T, D), event envelope (E,)) per item and modality (the envelope:
    `models.events`, one bin per visual frame) and its banded envelope (E, B)
    (`models.events.picture_bands` / `sound_bands`), a picture's also its motion envelope (E,)
    (`models.events.picture_motion`) and its halves' (E, 4) (`models.events.picture_halves`), a
    sound's also its landmarks (`models.fingerprint`, as stored) and its dense prints
    (`models.prints`, as stored); then both the sources it shows / sounds
    (`models.what_net`, (C,) probabilities; None where the model has no trained networks); a
    picture's, then, its chances of each direction by where its foreground goes
    (`TrimodalModel.picture_directions`, (3,); None where the model has no drift reader) and,
    last, of each kind and each colour by its glyphs' outlines and pixels
    (`TrimodalModel.glyph_reading`, (`GLYPH_CLASSES`,), NaN where none was read; None where the
    model reads neither or the item's glyphs were not measured); a sound's, last, its chances of
    each kind × size by how it sounds (`TrimodalModel.timbre_reading`, (14,), NaN where nothing
    stood above its background; None where the index keeps no timbre, `keeps_timbre`). None
    where the item lacks the stream."""
    fps, sr = model.cfg.visual.fps, model.cfg.audio.sample_rate
    out: dict[str, Any] = {m: [None] * len(batch) for m in MODALITIES}
    with_video = [i for i, d in enumerate(batch) if d.frames is not None and len(d.frames)]
    with_audio = [i for i, d in enumerate(batch) if d.audio is not None and d.audio.size]
    if with_video:
        frames = [batch[i].frames for i in with_video]
        emb = model.encode_visual(*model.visual_inputs(frames))  # type: ignore[arg-type]
        shown = model.picture_what(frames)  # type: ignore[arg-type]
        going = model.picture_directions(frames)  # type: ignore[arg-type]
        glyphs = model.glyph_reading([batch[i].shapes for i in with_video])
        for j, i in enumerate(with_video):
            t = int(emb.mask[j].sum())
            out["visual"][i] = (
                emb.pooled[j].float().cpu().numpy(),
                emb.sequence[j, :t].float().cpu().numpy(),
                model.picture_envelope(
                    frames[j],  # type: ignore[arg-type]
                    batch[i].changes,
                    batch[i].region_changes,
                    batch[i].motion,
                    batch[i].halves,
                ),
                picture_bands(frames[j], fps, fps, batch[i].region_changes),  # type: ignore[arg-type]
                picture_motion(frames[j], fps, fps, batch[i].motion),  # type: ignore[arg-type]
                picture_halves(frames[j], fps, fps, batch[i].halves),  # type: ignore[arg-type]
                None if shown is None else shown[j],
                None if going is None else going[j],
                None if glyphs is None else glyphs[j],
            )
    if with_audio:
        waves = [batch[i].audio for i in with_audio]
        emb = model.encode_audio(*model.audio_inputs(waves))  # type: ignore[arg-type]
        sounded = model.sound_what(waves)  # type: ignore[arg-type]
        heard = (
            model.timbre_reading([sound_runs(w, sr) for w in waves])  # type: ignore[arg-type]
            if keeps_timbre(model)
            else None
        )
        for j, i in enumerate(with_audio):
            t = int(emb.mask[j].sum())
            single, banded = sound_envelopes(waves[j], sr, fps)  # type: ignore[arg-type]
            out["audio"][i] = (
                emb.pooled[j].float().cpu().numpy(),
                emb.sequence[j, :t].float().cpu().numpy(),
                single,
                banded,
                fingerprint.to_store(fingerprint.peaks(waves[j], sr)),  # type: ignore[arg-type]
                prints.to_store(prints.prints(waves[j], sr)),  # type: ignore[arg-type]
                None if sounded is None else sounded[j],
                None if heard is None else heard[j],
            )
    return out


def _fsync_write(path: Path, write: Callable[[Any], None]) -> None:
    tmp = path.with_name(f".{path.name}.part")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException as e:
        tmp.unlink(missing_ok=True)  # a full disk must not also leave a dead half-file behind
        if isinstance(e, OSError) and e.filename is None:  # writes through a file object
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_shard(
    path: Path, records: list[Decoded], encoded: dict[str, list[Any]], dim: int
) -> None:
    """One shard: ids, status, durations, and per modality pooled vectors + ragged sequences +
    ragged event envelopes."""
    arrays: dict[str, np.ndarray] = {
        "ids": np.array([r.id for r in records], dtype=object),
        "errors": np.array([r.error or "" for r in records], dtype=object),
        "duration_s": np.array([r.duration_s for r in records], dtype=np.float64),
    }
    for m in MODALITIES:
        present = np.array([e is not None for e in encoded[m]], dtype=bool)
        pooled = (
            np.stack([e[0] for e in encoded[m] if e is not None])
            if present.any()
            else np.zeros((0, dim))
        )
        seqs = [e[1] for e in encoded[m] if e is not None]
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        steps = np.concatenate(seqs) if seqs else np.zeros((0, dim))
        events = [e[2] for e in encoded[m] if e is not None]
        arrays |= {
            f"{m}_event_lengths": np.array([len(e) for e in events], dtype=np.int64),
            f"{m}_events": np.concatenate(events) if events else np.zeros(0, np.float32),
            f"{m}_present": present,
            f"{m}_pooled": pooled.astype(np.float32),
            f"{m}_lengths": lengths,
            f"{m}_steps": steps.astype(np.float16),
        }
        # banded envelopes, as many bins as the envelope's (none given: the shard has none)
        bands = [e[3] for e in encoded[m] if e is not None and len(e) > 3]
        if len(bands) == len(events):
            arrays[f"{m}_bands"] = (
                np.concatenate(bands).astype(np.float32)
                if bands
                else np.zeros((0, BANDS[m]), np.float32)
            )
        # a picture's motion envelope, as many bins as its change envelope's
        motion = [e[4] for e in encoded[m] if e is not None and len(e) > 4]
        if m == "visual" and len(motion) == len(events):
            arrays[f"{m}_motion"] = (
                np.concatenate(motion).astype(np.float32) if motion else np.zeros(0, np.float32)
            )
        # a picture's halves' envelopes, as many bins as its change envelope's
        halves = [e[5] for e in encoded[m] if e is not None and len(e) > 5]
        if m == "visual" and len(halves) == len(events):
            arrays[f"{m}_halves"] = (
                np.concatenate(halves).astype(np.float32)
                if halves
                else np.zeros((0, 2 * len(HALVES)), np.float32)
            )
        # a sound's landmarks, as many rows as it has peaks
        peaks = [e[4] for e in encoded[m] if e is not None and len(e) > 4]
        if m == "audio" and len(peaks) == len(events):
            arrays["audio_peak_counts"] = np.array([len(p) for p in peaks], np.int64)
            arrays["audio_peaks"] = (
                np.concatenate(peaks).astype(np.float32) if peaks else np.zeros((0, 3), np.float32)
            )
        # a sound's dense prints, as many rows as it has prints
        found = [e[5] for e in encoded[m] if e is not None and len(e) > 5]
        if m == "audio" and len(found) == len(events):
            arrays["audio_print_counts"] = np.array([len(p) for p in found], np.int64)
            arrays["audio_prints"] = (
                np.concatenate(found).astype(np.float32)
                if found
                else np.zeros((0, prints.STORE_DIM), np.float32)
            )
        # the sources it shows / sounds, one row per item with the stream (none: the model has
        # no trained networks)
        what = [e[6] for e in encoded[m] if e is not None and len(e) > 6 and e[6] is not None]
        if what and len(what) == len(events):
            arrays[f"{m}_what"] = np.stack(what).astype(np.float32)
        # a picture's chances of each direction, one row per item with pictures (none: the
        # model has no drift reader)
        going = [e[7] for e in encoded[m] if e is not None and len(e) > 7 and e[7] is not None]
        if m == "visual" and going and len(going) == len(events):
            arrays["visual_direction"] = np.stack(going).astype(np.float32)
        # its chances of each kind and colour by its glyphs, one row per item with pictures
        # (NaN: not read; none: the model reads neither)
        glyphs = [e[8] for e in encoded[m] if e is not None and len(e) > 8 and e[8] is not None]
        if m == "visual" and glyphs and len(glyphs) == len(events):
            arrays["visual_glyph"] = np.stack(glyphs).astype(np.float32)
        # a sound's chances of each kind × size by how it sounds, one row per item with sound
        # (NaN: nothing read; none: the model has no timbre reader)
        heard = [e[7] for e in encoded[m] if e is not None and len(e) > 7 and e[7] is not None]
        if m == "audio" and heard and len(heard) == len(events):
            arrays["audio_timbre"] = np.stack(heard).astype(np.float32)
    _fsync_write(path, lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]


def load_shard(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=True) as z:
        return {k: z[k] for k in z.files}


@dataclass
class EmbedReport:
    shards: list[Path]
    embedded: int
    failed: dict[str, str]
    skipped_shards: int  # already complete when a resumed run started
    stale_shards: int = 0  # complete, but their files changed since: embedded again


KINDS = ("build", "add")
PLAN = "plan.json"
SHARDS = "shards"
IDENTITY_BYTES = 64 * 1024


def plan_key(items: Sequence[CorpusItem], shard_size: int, model_hash: str, kind: str) -> str:
    """What a work directory builds: the kind of build, shard size, model, decoder
    (`models.media.DECODE_VERSION`: shards a former decoder measured are not resumed) and the
    ordered items (ids and paths). Content is checked per shard (`content_identity`), so a
    replaced file costs its shard, not the whole build."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    digest = hashlib.sha256(f"{kind}|{shard_size}|{model_hash}|{DECODE_VERSION}".encode())
    for item in items:
        digest.update(f"{item.id}\0{item.media}\0{item.audio}\n".encode())
    return digest.hexdigest()


def default_work_dir(
    root: Path, items: Sequence[CorpusItem], shard_size: int, model_hash: str, kind: str
) -> Path:
    return Path(root) / WORK_DIR / plan_key(items, shard_size, model_hash, kind)[:16]


def file_identity(path: Path) -> str:
    """Size, mtime_ns and a sha256 of the first and last `IDENTITY_BYTES` bytes: cheap, and a
    replaced file (same path, other content) does not pass for the old one."""
    try:
        st = os.stat(path)
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            digest.update(f.read(IDENTITY_BYTES))
            if st.st_size > IDENTITY_BYTES:
                f.seek(max(IDENTITY_BYTES, st.st_size - IDENTITY_BYTES))
                digest.update(f.read(IDENTITY_BYTES))
    except OSError as e:  # decoding will refuse the file with its reason; the plan notes it
        return f"unreadable:{e.errno}"
    return f"{st.st_size}:{st.st_mtime_ns}:{digest.hexdigest()[:32]}"


def content_identity(items: Sequence[CorpusItem], shard_size: int) -> list[str]:
    """One digest per shard over its items' media (and separate audio) file identities."""
    paths = [p for item in items for p in (item.media, item.audio) if p is not None]
    with ThreadPoolExecutor(8) as pool:  # I/O bound: small reads of many files
        identity = dict(zip(paths, pool.map(file_identity, paths), strict=True))
    shards = []
    for start in range(0, len(items), shard_size):
        digest = hashlib.sha256()
        for item in items[start : start + shard_size]:
            audio = identity[item.audio] if item.audio is not None else "-"
            digest.update(f"{item.id}\0{identity[item.media]}\0{audio}\n".encode())
        shards.append(digest.hexdigest())
    return shards


@dataclass(frozen=True)
class ShardPlan:
    """The corpus cut into fixed shards: item j belongs to shard j // shard_size, written to
    `paths[j // shard_size]`. A shard file that exists is complete (written under a temporary
    name, fsynced, renamed)."""

    items: Sequence[CorpusItem]
    shard_size: int
    paths: list[Path]
    stale: int = 0  # shards dropped on resume because their files changed

    def chunk(self, shard: int) -> Sequence[CorpusItem]:
        return self.items[shard * self.shard_size : (shard + 1) * self.shard_size]

    def pending(self) -> list[int]:
        return [j for j, path in enumerate(self.paths) if not path.exists()]


class WorkDirBusy(FileExistsError):
    """Another running build holds this work directory."""


_held: dict[str, tuple[int, int]] = {}  # realpath -> (fd, depth): this process's work dir locks


@contextlib.contextmanager
def hold_work_dir(path: Path, wait_s: float = 2.0) -> Iterator[Path]:
    """Create `path` and hold an `flock` on `path/.lock` until the block ends (re-entrant).

    Another build already holding it is an error (`WorkDirBusy`); a `gc` that holds it for a
    moment is waited for. Filesystems without flock get no lock (gc falls back to age there).
    """
    key = os.path.realpath(path)
    if key in _held:
        fd, depth = _held[key]
        _held[key] = (fd, depth + 1)
        try:
            yield path
        finally:
            fd, depth = _held[key]
            _held[key] = (fd, depth - 1)
        return
    deadline = time.monotonic() + wait_s
    while True:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / WORK_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if time.monotonic() > deadline:
                raise WorkDirBusy(
                    f"{path} is in use by another running build of the same input; wait for "
                    "it, or give this one another --work-dir"
                ) from None
            time.sleep(0.05)
            continue
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                os.close(fd)
                raise
        # gc may have removed the directory between our open and our lock: lock what is there.
        with contextlib.suppress(FileNotFoundError):
            if os.fstat(fd).st_ino == os.stat(path / WORK_LOCK).st_ino:
                break
        os.close(fd)
    _held[key] = (fd, 1)
    try:
        yield path
    finally:
        _held.pop(key, None)
        os.close(fd)


def remove_work_dir(path: Path) -> None:
    """Remove what a build put in its work directory (shards, plan, lock), then the directory
    if nothing else is in it: an explicit --work-dir may hold the user's own files."""
    shards = path / SHARDS
    if shards.is_dir():
        for entry in os.scandir(shards):
            if entry.name.startswith(("shard-", ".shard-")):
                os.unlink(entry.path)
        with contextlib.suppress(OSError):
            shards.rmdir()
    for name in (PLAN, f".{PLAN}.part", "published.json", WORK_LOCK):
        (path / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        path.rmdir()


def plan_shards(
    items: Sequence[CorpusItem],
    model_hash: str,
    work_dir: Path,
    shard_size: int,
    resume: bool,
    *,
    kind: str = "build",
    restart: bool = False,
) -> ShardPlan:
    """Cut the corpus into shards under `work_dir/shards`, recording the plan (key and per-shard
    content identity) so that `resume` only ever continues the same build, and re-embeds the
    shards whose files changed since.

    Without `resume`, a work dir that holds a plan is an error, unless `restart` (the default
    keyed work dirs, which only ever hold this input's shards): then it is emptied first.
    """
    if len({i.id for i in items}) != len(items):
        raise ValueError("item ids must be unique")
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    shards_dir = work_dir / SHARDS
    plan_file = work_dir / PLAN
    key = plan_key(items, shard_size, model_hash, kind)
    n_shards = (len(items) + shard_size - 1) // shard_size
    paths = [shards_dir / f"shard-{j:06d}.npz" for j in range(n_shards)]
    identity = content_identity(items, shard_size)
    stale = 0
    if plan_file.exists():
        previous = json.loads(plan_file.read_text())
        if previous.get("key") != key:
            raise FileExistsError(
                f"{work_dir} holds another build's shards (other items, shard size, model or "
                "kind of build); give another --work-dir, or remove it"
            )
        if not resume and not restart:
            raise FileExistsError(
                f"{work_dir} holds the shards of an earlier run of this build; use --resume to "
                "continue it, or remove it"
            )
        old = previous.get("shards", []) if resume else []
        for j, path in enumerate(paths):
            # Dropped before the new plan is written: a crash in between cannot bless them.
            if (j >= len(old) or old[j] != identity[j]) and path.exists():
                path.unlink()
                stale += 1 if resume else 0
    elif shards_dir.is_dir():  # shards of no known plan (plan.json lost): none can be trusted
        for path in shards_dir.glob("shard-*.npz"):
            path.unlink()
    shards_dir.mkdir(parents=True, exist_ok=True)
    plan = {"key": key, "kind": kind, "items": len(items), "shard_size": shard_size}
    _fsync_write(plan_file, lambda f: f.write(json.dumps({**plan, "shards": identity}).encode()))
    return ShardPlan(items, shard_size, paths, stale)


def embed_shard(
    path: Path,
    decoded: Iterable[Decoded],
    model: TrimodalModel,
    batch_size: int,
    on_item: Callable[[], None] | None = None,
) -> tuple[int, int]:
    """Encode one shard's decoded items in batches and write the shard file.

    The one code path of the encoder stage, whatever runs it (this process or a Ray actor).
    Returns (embedded, failed) counts; failed items are in the shard with their reason.
    """
    records: list[Decoded] = []
    encoded: dict[str, list[Any]] = {m: [] for m in MODALITIES}
    batch: list[Decoded] = []
    for item in decoded:
        records.append(item)
        if item.error is None:
            batch.append(item)
        if len(batch) == batch_size:
            _flush(model, batch, records, encoded)
            batch = []
        if on_item:
            on_item()
    _flush(model, batch, records, encoded)
    write_shard(path, records, encoded, model.cfg.embed_dim)
    failed = sum(r.error is not None for r in records)
    return len(records) - failed, failed


class LocalRunner:
    """Runs the shard stages on this machine: decoding in worker processes, encoding here."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or usable_cores()  # a container's CPU limit counted

    def run(
        self,
        plan: ShardPlan,
        model: TrimodalModel,
        batch_size: int,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> None:
        pending = plan.pending()
        if not pending:
            return
        cfg = model.cfg
        total = len(plan.items)
        processed = (len(plan.paths) - len(pending)) * plan.shard_size

        def tick() -> None:
            nonlocal processed
            processed += 1
            if on_progress:
                on_progress(min(processed, total), total)

        args = (cfg.visual.fps, cfg.visual.image_size, cfg.audio.sample_rate, self.workers)
        with Reader(*args, fit=cfg.visual.fit, shapes=model.knows_glyphs()) as reader:
            for j in pending:
                embed_shard(plan.paths[j], reader.read(plan.chunk(j)), model, batch_size, tick)


class Runner(Protocol):
    def run(
        self,
        plan: ShardPlan,
        model: TrimodalModel,
        batch_size: int,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> None: ...


def embed_corpus(
    items: Sequence[CorpusItem],
    model: TrimodalModel,
    model_hash: str,
    work_dir: Path,
    *,
    shard_size: int = 256,
    batch_size: int = 16,
    workers: int | None = None,
    resume: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
    runner: Runner | None = None,
    kind: str = "build",
    restart: bool = False,
) -> EmbedReport:
    """Embed every item into shards under `work_dir/shards`, skipping complete shards on resume
    (those whose files have not changed since). `kind` and `restart`: see `plan_shards`.

    `runner` runs the stages (default: `LocalRunner(workers)`; `index.ray_runner.RayRunner`
    spreads them over a Ray cluster). Whatever ran them, the shards are read back here.
    """
    with hold_work_dir(work_dir):
        plan = plan_shards(
            items, model_hash, work_dir, shard_size, resume, kind=kind, restart=restart
        )
        done = len(plan.paths) - len(plan.pending())
        (runner or LocalRunner(workers)).run(plan, model, batch_size, on_progress)
        missing = plan.pending()
        if missing:  # a runner that returns without error must have written every shard
            names = [plan.paths[j].name for j in missing[:5]]
            raise RuntimeError(f"shards not written: {names}")
        failed: dict[str, str] = {}
        embedded = 0
        for path in plan.paths:
            shard = load_shard(path)
            for item_id, error in zip(shard["ids"], shard["errors"], strict=True):
                if error:
                    failed[str(item_id)] = str(error)
                else:
                    embedded += 1
    return EmbedReport(plan.paths, embedded, failed, done, plan.stale)


def _flush(
    model: TrimodalModel,
    batch: list[Decoded],
    records: list[Decoded],
    encoded: dict[str, list[Any]],
) -> None:
    """Encode the pending batch and line its results up with `records` (failed items get None)."""
    results: dict[str, list[Any]] = (
        encode_batch(model, batch) if batch else {m: [] for m in MODALITIES}
    )
    by_id = {d.id: i for i, d in enumerate(batch)}
    for m in MODALITIES:
        done = len(encoded[m])
        for record in records[done:]:
            i = by_id.get(record.id)
            encoded[m].append(results[m][i] if i is not None else None)
