"""The heavy objects behind the API: the model, the query encoder and the live index version.

A new index version (CURRENT changed, or an explicit reload) is opened beside the live one and
swapped in with one reference assignment: a request takes the searcher it starts with and keeps it
to the end, so in-flight requests finish on the old version while new ones use the new one. The
old version is released when its last request lets go of it.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import numpy as np
import torch

from index.query import QueryEncoder
from index.search import Query, Searcher
from index.version import IndexVersion, current_version
from models.media import MediaLimits
from models.model import TrimodalModel, checkpoint_hash
from models.onnx_export import MANIFEST as ONNX_MANIFEST
from models.onnx_export import OnnxEncoders
from models.onnx_text import OnnxTextBackbone
from service.settings import Settings

log = logging.getLogger("trimodal.service")


class EngineError(RuntimeError):
    """The service cannot start or reload (wrong checkpoint, no index, corrupt version)."""


class Engine:
    def __init__(self, settings: Settings) -> None:
        from training.trainer import resolve_device

        self.settings = settings
        torch.set_num_threads(settings.torch_threads)  # process-wide: this process serves
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
        self._lock = threading.Lock()
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
        where no export already covers text."""
        s = self.settings
        if s.text_runtime == "torch" or not model.cfg.text.frozen:
            return None
        if s.text_runtime == "onnx" and exported:
            return None
        try:
            return OnnxTextBackbone(
                model.text.backbone,
                s.cache_dir,
                s.onnx_threads,
                s.onnx_spin,
                int8=s.text_runtime == "onnx-int8",
            )
        except Exception as e:  # an accelerator, never a reason not to serve
            log.warning("text tower on ONNX Runtime unavailable (%s): it runs in torch", e)
            return None

    def _open(self, version: str | None) -> Searcher:
        try:
            v = IndexVersion.open(self.root, version, verify=self.settings.verify_index)
        except FileNotFoundError as e:
            raise EngineError(f"no published index under {self.root}: {e}") from e
        if v.manifest["model_hash"] != self.model_hash:
            raise EngineError(
                f"index version {v.name} was built with another model checkpoint than "
                f"{self.settings.ckpt}; serve it with that checkpoint, or rebuild the index"
            )
        searcher = Searcher(v)
        searcher.prepare_filters()
        return searcher

    @property
    def searcher(self) -> Searcher:
        return self._searcher  # one reference read: requests keep the one they start with

    def reload(self, force: bool = False) -> tuple[bool, str]:
        """Swap in the version CURRENT names if it is new (or always, with `force`)."""
        with self._lock:
            name = current_version(self.root)
            if name is None:
                raise EngineError(f"{self.root}/CURRENT names no version")
            if name == self._searcher.name and not force:
                return False, name
            fresh = self._open(name)
            self._searcher = fresh
            log.info("index version %s is live", name)
            return True, name

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
        query = Query("audio", audio.pooled[0].float().numpy(), steps)
        self.searcher.search(query, "video", k=1, rerank_k=10)
