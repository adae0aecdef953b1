"""Service settings: environment variables with the `TRIMODAL_` prefix (or keyword arguments).

Validated at start-up, so a wrong value stops the server with a message saying which one.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


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
        8, ge=1, description="Searches running at once; more are answered 503 with Retry-After."
    )
    queue_wait_s: float = Field(
        0.5, ge=0, description="How long a request may wait for a free slot before the 503."
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
