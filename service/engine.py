"""The heavy objects behind the API: the model, the query encoder and the live index version.

A new index version (CURRENT changed, or an explicit reload) is opened beside the live one and
swapped in with one reference assignment: a request takes the searcher it starts with and keeps it
to the end, so in-flight requests finish on the old version while new ones use the new one. The
old version is released when its last request lets go of it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

import numpy as np
import torch

from index.query import QueryEncoder
from index.search import Query, Searcher
from index.version import CURRENT, IndexCorrupt, IndexVersion, current_version, is_version_name
from models.events import sound_envelopes
from models.fingerprint import query_peaks
from models.media import MediaLimits
from models.model import TrimodalModel, checkpoint_hash
from models.onnx_export import MANIFEST as ONNX_MANIFEST
from models.onnx_export import OnnxEncoders
from models.onnx_text import OnnxTextBackbone
from models.prints import query_prints
from models.spare import SPARE, usable_cores
from service.settings import Settings

log = logging.getLogger("trimodal.service")


# Threads a lone text query's encoder may borrow from idle cores (`OnnxTextBackbone.wide`): one
# more cut ONNX Runtime's call for a sentence 3.7 → 2.75 ms on a two-core AMD EPYC (int8, probe,
# the same vectors bit for bit); more were not measured.
TEXT_LENT_THREADS = 1


class EngineError(RuntimeError):
    """The service cannot start or reload (wrong checkpoint, no index, corrupt version)."""


class Engine:
    def __init__(self, settings: Settings) -> None:
        from training.trainer import resolve_device

        self.settings = settings
        torch.set_num_threads(settings.torch_threads)  # process-wide: this process serves
        SPARE.configure(settings.spare_threads)  # process-wide too: idle cores lent to a search
        self.root = Path(settings.index)
        self.model_hash = checkpoint_hash(settings.ckpt)
        model = TrimodalModel.load(settings.ckpt, resolve_device(settings.device))
        limits = MediaLimits(
            max_bytes=int(settings.max_upload_mb * 1024 * 1024),
            max_duration_s=settings.max_query_duration_s,
            max_wall_s=settings.request_timeout_s,
        )
        onnx = self._exported(model)
        text = self._text_runtime(model, exported=onnx is not None)
        self.encoder = QueryEncoder(model, limits, text, onnx)
        log.info("query encoders: %s", self.encoder.runtime)
        self._lock = threading.Lock()  # one reload at a time
        # The live version and why the last reload failed (None once one succeeds) change
        # together under this one, held only for the assignments: `status` never shows a new
        # version beside the error of the reload before it, nor waits for a load.
        self._state = threading.Lock()
        self.reload_error: str | None = None
        self._searcher = self._open(None)

    def _exported(self, model: TrimodalModel) -> OnnxEncoders | None:
        """The exported encoders next to the checkpoint, if they were made from it."""
        mode = self.settings.encoder_runtime
        directory = Path(self.settings.ckpt) / "onnx"
        if mode == "torch":
            return None
        try:
            manifest = json.loads((directory / ONNX_MANIFEST).read_text())
            if manifest["checkpoint_hash"] != self.model_hash:
                raise ValueError("they were exported from another checkpoint")
            s = self.settings
            return OnnxEncoders(directory, model, s.onnx_threads, s.onnx_spin)
        except (OSError, ValueError, KeyError, ImportError) as e:
            if mode == "onnx":
                raise EngineError(
                    f"encoder_runtime=onnx, but {directory} is not usable: {e}"
                ) from e
            if directory.exists():
                log.warning("not using the exported encoders in %s: %s", directory, e)
            return None

    def _text_runtime(self, model: TrimodalModel, exported: bool) -> OnnxTextBackbone | None:
        """The text tower on ONNX Runtime: int8 always (unless torch is asked for), float32 only
        where no export already covers text — or where the checkpoint's attribute readers need
        the tower's token states, which the export's sentence vector does not give."""
        s = self.settings
        if s.text_runtime == "torch" or not model.cfg.text.frozen:
            return None
        if s.text_runtime == "onnx" and exported and not model.knows_attributes():
            return None
        try:
            return OnnxTextBackbone(
                model.text.backbone,
                s.cache_dir,
                s.onnx_threads,
                s.onnx_spin,
                int8=s.text_runtime == "onnx-int8",
                lent=min(s.spare_threads, usable_cores() - 1, TEXT_LENT_THREADS),
            )
        except Exception as e:  # an accelerator, never a reason not to serve
            log.warning("text tower on ONNX Runtime unavailable (%s): it runs in torch", e)
            return None

    def _open(self, version: str | None) -> Searcher:
        """A searcher on `version` (default: CURRENT), every part checked; EngineError naming the
        version and the file otherwise."""
        try:
            v = IndexVersion.open(self.root, version, verify=self.settings.verify_index)
        except FileNotFoundError as e:
            raise EngineError(f"no published index under {self.root}: {e}") from e
        except IndexCorrupt as e:  # its message starts with the version's name
            raise EngineError(f"cannot load index version {e}") from e
        except (ValueError, OSError) as e:
            raise EngineError(f"cannot load index version {version or '(CURRENT)'}: {e}") from e
        if v.manifest["model_hash"] != self.model_hash:
            raise EngineError(
                f"index version {v.name} was built with another model checkpoint than "
                f"{self.settings.ckpt}; serve it with that checkpoint, or rebuild the index"
            )
        try:
            searcher = Searcher(v)
            searcher.prepare_filters()
            # the event scans and the landmark and print tables (~4.5 s at 100k items) are built
            # here, off the request path, before a reloaded version serves its first search
            searcher.prepare_events()
            # and every item's agreement logs, where text queries find candidates by them
            searcher.prepare_agreement(self.encoder.picture_reader())
        except Exception as e:
            v.close()
            where = "" if isinstance(e, IndexCorrupt) else f"{v.name}: "
            raise EngineError(f"cannot load index version {where}{e}") from e
        return searcher

    @property
    def searcher(self) -> Searcher:
        return self._searcher  # one reference read: requests keep the one they start with

    def published(self) -> str | None:
        """The version CURRENT names now; None if there is none or it names no version."""
        try:
            return current_version(self.root)
        except (IndexCorrupt, OSError):
            return None

    def status(self) -> dict[str, object]:
        """What is served against what is published, and why they differ (see /readyz)."""
        with self._state:
            served, error = self._searcher.name, self.reload_error
        published = self.published()
        return {
            "index_version": served,
            "published_version": published,
            "stale": published != served,
            "reload_error": error,
        }

    def reload(
        self, force: bool = False, seen: tuple[object, ...] | None = None
    ) -> tuple[bool, str]:
        """Swap in the version CURRENT names if it is new (or always, with `force`).

        Any failure, whatever its cause (a bad CURRENT, a missing, corrupt or inconsistent
        version, a FAISS error), is an EngineError saying why; the live version stays, and the
        reason is kept in `reload_error` until a later reload succeeds. `seen`: what the caller
        saw published (`published_fingerprint`); if it has moved on since, nothing is tried and
        the live version is kept (False): the caller looks again. A failure is then always the
        failure of what the caller saw (the watcher counts it once against that, not against a
        publish that landed between its look and the load).
        """
        with self._lock:
            if seen is not None and self.published_fingerprint() != seen:
                return False, self._searcher.name
            try:
                name = current_version(self.root)
                if name is None:
                    raise EngineError(f"{self.root}/CURRENT names no version")
                if name == self._searcher.name and not force:
                    with self._state:
                        self.reload_error = None
                    return False, name
                fresh = self._open(name)
            except Exception as e:
                error = str(e) if isinstance(e, EngineError) else f"{self.root}: {e}"
                with self._state:
                    self.reload_error = error
                log.error("index reload failed, %s stays live: %s", self._searcher.name, error)
                if isinstance(e, EngineError):
                    raise
                raise EngineError(error) from e
            with self._state:
                self._searcher = fresh
                self.reload_error = None
            log.info("index version %s is live", name)
            return True, name

    def published_fingerprint(self) -> tuple[object, ...]:
        """Cheap identity of what is published (CURRENT's bytes, and the size, times and inode of
        every file of the version it names): a failed version is retried only once this changes,
        so a broken publish is not re-hashed, re-logged and re-counted at every poll, while a
        repair (a new version, or a file restored in place: ctime always moves) is seen at the
        next poll."""
        try:
            raw = (self.root / CURRENT).read_bytes()[:256]
        except OSError as e:
            return ("no CURRENT", type(e).__name__)
        name = raw.decode("utf-8", errors="replace").strip()
        if not is_version_name(name):
            return (raw,)
        entries: list[tuple[object, ...]] = []
        try:
            vdir = self.root / name
            for entry in sorted(os.scandir(vdir), key=lambda e: e.name):
                st = entry.stat(follow_symlinks=False)
                entries.append((entry.name, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
            st = vdir.lstat()
            entries.append((st.st_ino, st.st_mtime_ns, st.st_ctime_ns))
        except OSError as e:
            entries.append(("unreadable", type(e).__name__))
        return (raw, *entries)

    def warm_up(self) -> None:
        """A search of each kind, so the first user does not pay for lazy initialisation (the
        first audio query used to take ten times the usual)."""
        model = self.encoder.model
        text = self.encoder.text("warm up").query
        self.searcher.search(text, "video", k=1, rerank=False)
        rng = np.random.default_rng(0)
        sr, fps, size = (
            model.cfg.audio.sample_rate,
            model.cfg.visual.fps,
            model.cfg.visual.image_size,
        )
        with torch.inference_mode():
            wave = (0.1 * rng.standard_normal(4 * sr)).astype(np.float32)
            audio = model.encode_audio(*model.audio_inputs([wave]))
            frames = rng.integers(0, 255, (int(4 * fps), size, size, 3), dtype=np.uint8)
            model.encode_visual(*model.visual_inputs([frames]))
        steps = audio.sequence[0][audio.mask[0]].float().numpy()
        events, bands = sound_envelopes(wave, sr, fps)
        query = Query(
            "audio",
            audio.pooled[0].float().numpy(),
            steps,
            events,
            bands,
            landmarks=tuple(query_peaks(wave, sr)),
            prints=tuple(query_prints(wave, sr)),
        )
        self.searcher.prepare_events()
        self.searcher.search(query, "video", k=1, rerank_k=10)
        self.searcher.search(query, "audio", k=1, rerank_k=10)
