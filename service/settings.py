"""Service settings: environment variables with the `TRIMODAL_` prefix (or keyword arguments).

Validated at start-up, so a wrong value stops the server with a message saying which one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.spare import usable_cores


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRIMODAL_", extra="forbid")

    index: Path = Field(
        description="Index root (versions + CURRENT), as `trimodal index build` made it."
    )
    ckpt: Path = Field(description="The model checkpoint the index was built with.")
    device: str = Field("cpu", description="cpu, cuda or auto.")
    max_upload_mb: float = Field(50.0, gt=0, description="Largest accepted upload (413 above).")
    max_query_duration_s: float = Field(
        120.0, gt=0, description="Longest audio/video query accepted (decoded length)."
    )
    request_timeout_s: float = Field(
        30.0, gt=0, description="Per-request time limit (504 past it)."
    )
    max_concurrency: int = Field(
        default_factory=usable_cores,
        ge=1,
        description="Searches running at once (default: one per core this process may use, a "
        "container's CPU limit counted; more only thrash the cores); others wait for a slot.",
    )
    aside_concurrency: int = Field(
        1,
        ge=1,
        description="Thumbnails made at once, beside the searches and never in their slots "
        "(a page of results asks for ten together; they queue here, the searches do not).",
    )
    queue_target_s: float = Field(
        0.5,
        ge=0,
        description="Overload policy: with every slot taken, a request whose estimated wait "
        "(the measured recent service time of the work ahead of it, shared among the slots) is "
        "over this gets a 503 + Retry-After at once instead of queueing; a normal burst whose "
        "queue drains within it still queues. 0: a full server answers 503 at once.",
    )
    queue_wait_s: float = Field(
        2.0,
        ge=0,
        description="Upper bound on the time a queued request waits for a slot (503 + "
        "Retry-After past it), for when the estimate behind queue_target_s proves wrong.",
    )
    torch_threads: int = Field(
        1,
        ge=1,
        description="Threads per search for torch (1: concurrent searches run side by side "
        "instead of fighting over the cores, and FAISS's own threads are not starved).",
    )
    spare_threads: int = Field(
        default_factory=lambda: max(0, usable_cores() - 1),
        ge=0,
        description="Helper threads a search may borrow while cores are idle (`models.spare`): "
        "alone on the machine, a search runs its independent parts (the sound's encoder and "
        "envelopes, the event scan's halves, the re-rank's steps and envelopes) side by side, "
        "and a text query's encoder runs on two threads; with every core busy, each search runs "
        "in its own thread. 0: never.",
    )
    onnx_threads: int = Field(
        1,
        ge=1,
        description="Threads per query-encoder call on ONNX Runtime. 1 gives the most searches "
        "per second; 2 with onnx_spin cut a lone text query's p50 from 9.6 to 6.5 ms on two "
        "cores, for 158 → 151 QPS under load (benchmarks/bench_service.py).",
    )
    onnx_spin: bool = Field(
        False,
        description="Let ONNX Runtime's idle threads busy-wait between ops (a little faster "
        "alone, CPU burnt that concurrent requests need); they stop when a call returns.",
    )
    api_key: SecretStr | None = Field(
        default=None, description="Key for /v1/admin/* (unset: admin off)."
    )
    cors_origins: list[str] = Field(default_factory=list, description="Allowed CORS origins.")
    reload_poll_s: float = Field(
        2.0, ge=0, description="How often CURRENT is checked for a new version (0: never)."
    )
    max_k: int = Field(100, ge=1, le=1000, description="Largest k (hits per page) accepted.")
    max_rerank_k: int = Field(1000, ge=1, le=10_000, description="Largest rerank_k accepted.")
    verify_index: bool = Field(True, description="Check every checksum when loading a version.")
    text_runtime: Literal["onnx-int8", "onnx", "torch"] = Field(
        "onnx-int8",
        description="Runtime of the frozen text tower for queries: onnx-int8 (ONNX Runtime with "
        "int8 weights, also in place of an export's float text encoder: ~2x faster than onnx, "
        "text→video R@10 unchanged on a fresh SynthAV pool, sentence vectors at cosine >= 0.98 "
        "of torch's), onnx (float32, the same vectors as torch; an export's text encoder when "
        "there is one) or torch. The ONNX files are made once into cache_dir.",
    )
    encoder_runtime: Literal["auto", "onnx", "torch"] = Field(
        "auto",
        description="Query encoders: auto uses `trimodal export-onnx` models found in "
        "CKPT/onnx (made from this checkpoint), torch otherwise; onnx requires them.",
    )
    cache_dir: Path = Field(
        default_factory=lambda: (
            Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "trimodal"
        ),
        description="Where derived files (the ONNX export of the text tower) are kept.",
    )

    @field_validator("index", "ckpt")
    @classmethod
    def _exists(cls, v: Path) -> Path:
        if not v.is_dir():
            raise ValueError(f"{v} is not a directory")
        return v.resolve()

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v not in ("cpu", "cuda", "auto"):
            raise ValueError("device must be cpu, cuda or auto")
        return v
