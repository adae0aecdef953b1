"""Turning what a user gives — a sentence, a sound file, a piece of footage — into a `Query`.

Shared by the terminal search and the service, so both encode exactly alike. Decoding goes through
`models.media` with its limits (a hostile file raises `MediaError` with a reason, never reaches the
model). Safe to call from many threads: the model is only run under `torch.inference_mode`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from index.search import Query, QueryModality
from models.attributes import ATTRIBUTES, AttributeReading, PictureReader
from models.encoders import Embeddings
from models.events import (
    Phase,
    picture_bands,
    picture_halves,
    picture_motion,
    sound_phases,
)
from models.fingerprint import query_peaks
from models.media import MediaLimits, decode_audio, decode_pictures
from models.model import TrimodalModel
from models.onnx_export import OnnxEncoders
from models.prints import query_prints
from models.spare import SPARE
from models.text import mean_of_states

MAX_QUERY_CHARS = 1000


@dataclass
class Encoded:
    query: Query
    timings_ms: dict[str, float] = field(default_factory=dict)  # decode, encode
    duration_s: float | None = None  # of an uploaded file


class QueryEncoder:
    def __init__(
        self,
        model: TrimodalModel,
        limits: MediaLimits | None = None,
        text_backbone: Callable[[list[str]], torch.Tensor] | None = None,
        onnx: OnnxEncoders | None = None,
    ) -> None:
        """`text_backbone`: another runtime for the frozen text tower (ONNX Runtime, float32 or
        int8), used for text when given; None uses the export or the model's own. `onnx`: the
        exported query encoders (`trimodal export-onnx`), used for every query they cover."""
        self.model = model.eval()
        self.cfg = model.cfg
        self.limits = limits or MediaLimits()
        self.text_backbone = text_backbone
        self.onnx = onnx
        self._reader: PictureReader | None = None

    @property
    def runtime(self) -> str:
        text = "onnx text tower" if self.text_backbone is not None else None
        if self.onnx is not None:
            return "onnx (exported encoders" + (f", {text})" if text else ")")
        return f"{text} + torch" if text else "torch"

    def text(self, sentence: str) -> Encoded:
        sentence = sentence.strip()
        if not sentence:
            raise ValueError("the query is empty")
        if len(sentence) > MAX_QUERY_CHARS:
            raise ValueError(f"the query is longer than {MAX_QUERY_CHARS} characters")
        t = time.perf_counter()
        leans = reading = None
        with torch.inference_mode():
            if self.model.knows_attributes():
                # one pass of the tower gives the sentence vector (the mean of its token
                # states) and what the attribute readers read (`models.attributes`)
                tower = getattr(self.text_backbone, "states", None)
                read = tower if callable(tower) else self.model.text.backbone.states
                states, mask = read([sentence])
                emb = self.model.project_text(mean_of_states(states, mask))
                probabilities, found = self.model.attribute_reading(states, mask)
                leans = {name: found[0, a].numpy() for a, name in enumerate(ATTRIBUTES)}
                # the kinds at its nouns by each rule of the count (the policy picks one)
                # (and each with the kinds of a sentence without a noun from its sound words)
                heard = {
                    rule: read[0].numpy()
                    for rule, read in self.model.heard_readings(states, mask, probabilities).items()
                }
                reading = AttributeReading(
                    probabilities[0].numpy(),
                    self._picture_reader(),
                    heard.get((False, False)),
                    heard.get((True, False)),
                    heard.get((False, True)),
                    heard.get((True, True)),
                )
            elif self.text_backbone is not None:
                emb = self.model.project_text(self.text_backbone([sentence]))
            elif self.onnx is not None:
                emb = self.onnx.text([sentence])
            else:
                emb = self.model.encode_text([sentence])
        pooled = emb.pooled[0].float().cpu().numpy()
        return Encoded(Query("text", pooled, leans=leans, reading=reading), {"encode": _ms(t)})

    def picture_reader(self) -> PictureReader | None:
        """The reader a text query's agreement reads pictures by (`_picture_reader`); None for a
        model without fitted attribute readers."""
        return self._picture_reader() if self.model.knows_attributes() else None

    def _picture_reader(self) -> PictureReader:
        """The model's picture reader as arrays, made once (`models.attributes`)."""
        if self._reader is None:
            assert self.model.attributes is not None
            self._reader = self.model.attributes.picture_reader()
        return self._reader

    def audio(self, path: Path, landmarks: bool = True) -> Encoded:
        """The sound of an audio file, or of a video file's audio track; `landmarks`: also its
        landmarks (`models.fingerprint`, ~1.5 ms a second of sound) and dense prints
        (`models.prints`), which only a search among sounds looks for."""
        t = time.perf_counter()
        wave, _ = decode_audio(path, sample_rate=self.cfg.audio.sample_rate, limits=self.limits)
        decode_ms = _ms(t)
        t = time.perf_counter()
        rate = self.cfg.audio.sample_rate

        Shifted = tuple[tuple[np.ndarray, float], ...]

        def encode() -> tuple[Embeddings, Shifted]:
            with torch.inference_mode():
                mel, mask = self.model.audio_inputs([wave])
                found = self.onnx.audio(mel, mask) if self.onnx is not None else None
                emb = found if found is not None else self.model.encode_audio(mel, mask)
            # the prints on this side: the envelopes and landmarks take about as long as the
            # encoder alone (`bench_service` at 100k items: the sound-among-sounds encode stage
            # 38 → 28 ms)
            return emb, tuple(query_prints(wave, rate)) if landmarks else ()

        def envelopes() -> tuple[list[Phase], Shifted]:
            phases = sound_phases(wave, rate, self.cfg.visual.fps)
            return phases, tuple(query_peaks(wave, rate)) if landmarks else ()

        # independent: on two cores when a search runs alone (`models.spare`)
        (emb, found), (phases, peaks) = SPARE.both(encode, envelopes)
        query = _sequence_query(
            "audio", emb.pooled[0], emb.sequence[0], emb.mask[0], phases[0].events, phases[0].bands
        )
        named = self.model.sound_what([wave])
        query = dataclasses.replace(
            query,
            phases=tuple(phases),
            landmarks=peaks,
            prints=found,
            what=None if named is None else named[0],
        )
        duration = len(wave) / self.cfg.audio.sample_rate
        return Encoded(query, {"decode": decode_ms, "encode": _ms(t)}, duration)

    def video(self, path: Path) -> Encoded:
        """The pictures of a video file."""
        t = time.perf_counter()
        size = (self.cfg.visual.image_size, self.cfg.visual.image_size)
        media = decode_pictures(
            path, fps=self.cfg.visual.fps, size=size, fit=self.cfg.visual.fit, limits=self.limits
        )
        frames = media.frames
        assert frames is not None
        decode_ms = _ms(t)
        t = time.perf_counter()
        with torch.inference_mode():
            pixels, mask = self.model.visual_inputs([frames])
            found = self.onnx.visual(pixels, mask) if self.onnx is not None else None
            emb = found if found is not None else self.model.encode_visual(pixels, mask)
        fps = self.cfg.visual.fps
        events = self.model.picture_envelope(
            frames, media.changes, media.region_changes, media.motion, media.halves
        )
        bands = picture_bands(frames, fps, fps, media.region_changes)
        motion = picture_motion(frames, fps, fps, media.motion)
        halves = picture_halves(frames, fps, fps, media.halves)
        query = _sequence_query(
            "visual", emb.pooled[0], emb.sequence[0], emb.mask[0], events, bands, motion, halves
        )
        named = self.model.picture_what([frames])
        if named is not None:
            query = dataclasses.replace(query, what=named[0])
        duration = len(frames) / self.cfg.visual.fps
        return Encoded(query, {"decode": decode_ms, "encode": _ms(t)}, duration)


def _sequence_query(
    modality: QueryModality,
    pooled: torch.Tensor,
    seq: torch.Tensor,
    mask: torch.Tensor,
    events: np.ndarray,
    bands: np.ndarray | None = None,
    motion: np.ndarray | None = None,
    halves: np.ndarray | None = None,
) -> Query:
    steps = seq[mask].float().cpu().numpy()  # (T, D): only the valid steps
    pooled_np = pooled.float().cpu().numpy()
    return Query(
        modality,
        pooled_np,
        np.ascontiguousarray(steps),
        events,
        bands,
        motion=motion,
        halves=halves,
    )


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1e3, 3)
