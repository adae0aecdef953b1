"""Decode once, train many times: a feature cache and a text-embedding cache.

`FeatureCache` stores, per item, its frames (uint8, at the model's visual fps and image size) and
its mono waveform (float16 at the model's sample rate) in two flat memory-mapped files with offsets.
The log-mel is computed at batch time (cheap), so the cache depends only on decoding settings. The
cache directory name is a hash of those settings and of every file's path, size and mtime: change
anything and a new cache is built. Files that fail to decode are skipped and listed with the
`MediaError` reason in `skipped.json`.

`TextCache` stores the frozen text tower's sentence vectors for every caption it has seen.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from models.config import ModelConfig
from models.events import PICTURE_REGIONS
from models.media import Fit, MediaError, decode
from models.motion import HALVES
from models.spare import usable_cores
from training.datasets import ManifestItem
from training.pictures import PictureMemo

# 2: the decoder's per-frame picture changes (`changes.f32`, `models.media.DecodedMedia.changes`)
# 3: and per quadrant (`region_changes.f32`, `DecodedMedia.region_changes`)
# 4: where the picture's motion changes (`motion.f32`, `DecodedMedia.motion`)
# 5: repeated frames left out of the motion (`models.motion.REPEATED_SHARE`)
# 6: a target frame in which none of a slower file's frames starts takes the spanning pair's
#    change and motion (`models._decode._VideoSampler._per_target`)
# 7: each half's change and motion (`halves.f32`, `DecodedMedia.halves`)
# 8: frame times within a tenth of a step of the grid on it (`models._decode.ON_GRID_SHARE`)
CACHE_VERSION = 8


@dataclass(frozen=True)
class DecodeSpec:
    fps: float
    image_size: int
    sample_rate: int
    fit: Fit = "pad"

    @classmethod
    def for_model(cls, cfg: ModelConfig) -> DecodeSpec:
        return cls(cfg.visual.fps, cfg.visual.image_size, cfg.audio.sample_rate, cfg.visual.fit)


@dataclass(frozen=True)
class Decoded:
    id: str
    frames: np.ndarray | None  # uint8 (T, S, S, 3)
    audio: np.ndarray | None  # float32 (N,)
    error: str | None = None  # "reason: message" when the file was refused
    changes: np.ndarray | None = None  # float32 (T,): the decoder's picture change per frame
    region_changes: np.ndarray | None = None  # float32 (T, 4): the same per quadrant
    motion: np.ndarray | None = None  # float32 (T,): the decoder's change of motion per frame
    halves: np.ndarray | None = None  # float32 (T, 2 × len(HALVES)): each half's, as `halves.f32`


def decode_item(item: ManifestItem, spec: DecodeSpec) -> Decoded:
    """Decode one manifest item; a refused file comes back as an error, never as zeros."""
    size = (spec.image_size, spec.image_size)
    try:
        frames = audio = changes = regions = motion = halves = None
        if item.video is not None:
            media = decode(
                item.video, fps=spec.fps, size=size, sample_rate=spec.sample_rate, fit=spec.fit
            )
            frames, audio = media.frames, media.audio
            changes, regions, motion = media.changes, media.region_changes, media.motion
            halves = media.halves
        if item.audio is not None:  # a separate audio file wins over the video's own track
            media = decode(
                item.audio, fps=None, size=None, sample_rate=spec.sample_rate, video=False
            )
            audio = media.audio
    except MediaError as e:
        return Decoded(item.id, None, None, f"{e.reason.value}: {e.message}")
    if frames is None and audio is None:
        return Decoded(item.id, None, None, "no_streams: neither video nor audio decoded")
    return Decoded(
        item.id,
        frames,
        audio,
        changes=changes,
        region_changes=regions,
        motion=motion,
        halves=halves,
    )


def _decode_job(job: tuple[ManifestItem, DecodeSpec]) -> Decoded:
    return decode_item(*job)


def cache_key(items: Sequence[ManifestItem], spec: DecodeSpec) -> str:
    settings = asdict(spec)
    if settings["fit"] == "pad":  # caches made before `fit` existed decoded with "pad": keep them
        del settings["fit"]
    digest = hashlib.sha256(json.dumps({"v": CACHE_VERSION, **settings}).encode())
    for item in items:
        for path in (item.video, item.audio):
            if path is None:
                digest.update(b"-")
                continue
            try:
                st = os.stat(path)
                digest.update(f"{item.id}|{path}|{st.st_size}|{st.st_mtime_ns}".encode())
            except OSError:
                digest.update(f"{item.id}|{path}|missing".encode())
    return digest.hexdigest()[:20]


class FeatureCache:
    """Read side of a built cache: ragged frames and audio per item id, memory-mapped."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        index = json.loads((directory / "index.json").read_text())
        self.spec = DecodeSpec(**index["spec"])
        self.ids: list[str] = index["ids"]
        self.row = {item_id: i for i, item_id in enumerate(self.ids)}
        # what the visual encoder measures of each clip's frames, kept once made (by clip id)
        self.pictures = PictureMemo()
        self.frame_offsets = np.asarray(index["frame_offsets"], dtype=np.int64)
        self.audio_offsets = np.asarray(index["audio_offsets"], dtype=np.int64)
        self.skipped: dict[str, str] = json.loads((directory / "skipped.json").read_text())
        s = self.spec.image_size
        total_frames = int(self.frame_offsets[-1])
        total_samples = int(self.audio_offsets[-1])
        self._frames = (
            np.memmap(
                directory / "frames.u8", dtype=np.uint8, mode="r", shape=(total_frames, s, s, 3)
            )
            if total_frames
            else np.zeros((0, s, s, 3), dtype=np.uint8)
        )
        self._audio = (
            np.memmap(directory / "audio.f16", dtype=np.float16, mode="r", shape=(total_samples,))
            if total_samples
            else np.zeros((0,), dtype=np.float16)
        )
        self._changes = (
            np.memmap(directory / "changes.f32", dtype=np.float32, mode="r", shape=(total_frames,))
            if total_frames and (directory / "changes.f32").is_file()
            else None
        )
        self._regions = (
            np.memmap(
                directory / "region_changes.f32",
                dtype=np.float32,
                mode="r",
                shape=(total_frames, PICTURE_REGIONS),
            )
            if total_frames and (directory / "region_changes.f32").is_file()
            else None
        )
        self._motion = (
            np.memmap(directory / "motion.f32", dtype=np.float32, mode="r", shape=(total_frames,))
            if total_frames and (directory / "motion.f32").is_file()
            else None
        )
        self._halves = (
            np.memmap(
                directory / "halves.f32",
                dtype=np.float32,
                mode="r",
                shape=(total_frames, 2 * len(HALVES)),
            )
            if total_frames and (directory / "halves.f32").is_file()
            else None
        )

    def __len__(self) -> int:
        return len(self.ids)

    def frames(self, item_id: str) -> np.ndarray:
        """uint8 (T, S, S, 3); T = 0 for an audio-only item."""
        i = self.row[item_id]
        return self._frames[self.frame_offsets[i] : self.frame_offsets[i + 1]]

    def changes(self, item_id: str) -> np.ndarray | None:
        """float32 (T,): the decoder's picture change per frame (`picture_events`); None in a
        cache made before they were kept."""
        if self._changes is None:
            return None
        i = self.row[item_id]
        return np.asarray(self._changes[self.frame_offsets[i] : self.frame_offsets[i + 1]])

    def motion(self, item_id: str) -> np.ndarray | None:
        """float32 (T,): the decoder's change of motion per frame (`picture_motion`); None in a
        cache made before it was kept."""
        if self._motion is None:
            return None
        i = self.row[item_id]
        return np.asarray(self._motion[self.frame_offsets[i] : self.frame_offsets[i + 1]])

    def halves(self, item_id: str) -> np.ndarray | None:
        """float32 (T, 2 × len(HALVES)): the decoder's change and change of motion per frame
        in each half of the picture (`models.events.picture_halves`); None in a cache made
        before they were kept."""
        if self._halves is None:
            return None
        i = self.row[item_id]
        return np.asarray(self._halves[self.frame_offsets[i] : self.frame_offsets[i + 1]])

    def region_changes(self, item_id: str) -> np.ndarray | None:
        """float32 (T, 4): the decoder's picture change per frame and quadrant
        (`picture_bands`); None in a cache made before they were kept."""
        if self._regions is None:
            return None
        i = self.row[item_id]
        return np.asarray(self._regions[self.frame_offsets[i] : self.frame_offsets[i + 1]])

    def audio(self, item_id: str) -> np.ndarray:
        """float32 (N,); N = 0 for a silent video."""
        i = self.row[item_id]
        return np.asarray(
            self._audio[self.audio_offsets[i] : self.audio_offsets[i + 1]], dtype=np.float32
        )

    @classmethod
    def build(
        cls,
        items: Sequence[ManifestItem],
        spec: DecodeSpec,
        root: str | os.PathLike[str],
        workers: int | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> FeatureCache:
        """Build (or reuse) the cache for `items` under `root`; decoding runs on all cores."""
        root = Path(root)
        directory = root / f"features-{cache_key(items, spec)}"
        if (directory / "index.json").is_file():
            return cls(directory)
        tmp = root / f".{directory.name}.part"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        ids: list[str] = []
        frame_offsets, audio_offsets = [0], [0]
        skipped: dict[str, str] = {}
        with (
            open(tmp / "frames.u8", "wb") as ff,
            open(tmp / "audio.f16", "wb") as af,
            open(tmp / "changes.f32", "wb") as cf,
            open(tmp / "region_changes.f32", "wb") as rf,
            open(tmp / "motion.f32", "wb") as mf,
            open(tmp / "halves.f32", "wb") as hf,
        ):
            for n, result in enumerate(_decode_all(items, spec, workers), 1):
                if result.error is not None:
                    skipped[result.id] = result.error
                else:
                    frames = (
                        result.frames if result.frames is not None else np.zeros((0,), np.uint8)
                    )
                    audio = result.audio if result.audio is not None else np.zeros((0,), np.float32)
                    count = len(frames) if frames.ndim == 4 else 0
                    changes = result.changes if result.changes is not None else np.zeros(0)
                    if len(changes) != count:  # the decoder gives one per sampled frame
                        raise ValueError(f"{result.id}: {len(changes)} changes, {count} frames")
                    ff.write(np.ascontiguousarray(frames, dtype=np.uint8).tobytes())
                    af.write(audio.astype(np.float16).tobytes())
                    cf.write(np.asarray(changes, np.float32).tobytes())
                    regions = (
                        result.region_changes
                        if result.region_changes is not None
                        else np.zeros((0, PICTURE_REGIONS))
                    )
                    if regions.shape != (count, PICTURE_REGIONS):
                        raise ValueError(
                            f"{result.id}: region changes {regions.shape}, {count} frames"
                        )
                    rf.write(np.ascontiguousarray(regions, np.float32).tobytes())
                    motion = result.motion if result.motion is not None else np.zeros(0)
                    if len(motion) != count:
                        raise ValueError(
                            f"{result.id}: {len(motion)} motion values, {count} frames"
                        )
                    mf.write(np.asarray(motion, np.float32).tobytes())
                    width = 2 * len(HALVES)
                    halves = result.halves if result.halves is not None else np.zeros((0, width))
                    if halves.shape != (count, width):
                        raise ValueError(f"{result.id}: halves {halves.shape}, {count} frames")
                    hf.write(np.ascontiguousarray(halves, np.float32).tobytes())
                    ids.append(result.id)
                    frame_offsets.append(frame_offsets[-1] + count)
                    audio_offsets.append(audio_offsets[-1] + len(audio))
                if on_progress:
                    on_progress(n, len(items))
            for f in (ff, af, cf, rf, mf, hf):
                f.flush()
                os.fsync(f.fileno())
        (tmp / "skipped.json").write_text(json.dumps(skipped, indent=1))
        index = {
            "spec": asdict(spec),
            "ids": ids,
            "frame_offsets": frame_offsets,
            "audio_offsets": audio_offsets,
        }
        (tmp / "index.json").write_text(json.dumps(index))
        os.replace(tmp, directory)
        return cls(directory)


def _decode_all(items: Sequence[ManifestItem], spec: DecodeSpec, workers: int | None):
    workers = workers or usable_cores()  # a container's CPU limit counted
    jobs = [(item, spec) for item in items]
    if workers <= 1:
        yield from map(_decode_job, jobs)
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        yield from pool.map(_decode_job, jobs, chunksize=8)


class TextCache:
    """Sentence vectors of the frozen text tower, keyed by the exact caption string."""

    def __init__(self, root: str | os.PathLike[str], model_key: str) -> None:
        safe = hashlib.sha256(model_key.encode()).hexdigest()[:16]
        self.directory = Path(root) / f"text-{safe}"
        self.model_key = model_key
        self.texts: list[str] = []
        self.vectors = torch.zeros(0, 0)
        if (self.directory / "texts.json").is_file():
            self.texts = json.loads((self.directory / "texts.json").read_text())
            self.vectors = torch.from_numpy(np.load(self.directory / "vectors.npy"))
        self.row = {t: i for i, t in enumerate(self.texts)}

    def ensure(self, texts: Sequence[str], embed: Callable[[list[str]], torch.Tensor]) -> None:
        """Embed the texts not cached yet and save, atomically."""
        new = sorted({t for t in texts if t not in self.row})
        if not new:
            return
        vectors = embed(new).float()
        self.vectors = vectors if self.vectors.numel() == 0 else torch.cat([self.vectors, vectors])
        self.texts += new
        self.row = {t: i for i, t in enumerate(self.texts)}
        self.directory.mkdir(parents=True, exist_ok=True)
        np.save(self.directory / ".vectors.part.npy", self.vectors.numpy())
        (self.directory / ".texts.part").write_text(json.dumps(self.texts))
        os.replace(self.directory / ".vectors.part.npy", self.directory / "vectors.npy")
        os.replace(self.directory / ".texts.part", self.directory / "texts.json")
        (self.directory / "model.txt").write_text(self.model_key + "\n")

    def lookup(self, texts: Sequence[str]) -> torch.Tensor:
        return self.vectors[[self.row[t] for t in texts]]
