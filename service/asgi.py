"""Entry point for ASGI servers: `uvicorn service.asgi:app --factory` (settings from TRIMODAL_*)."""

from __future__ import annotations

import os

from fastapi import FastAPI


def app() -> FastAPI:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from service import logs
    from service.app import create_app
    from service.settings import Settings

    logs.configure(os.environ.get("TRIMODAL_LOG_LEVEL", "info"))

    return create_app(Settings())  # fields come from the TRIMODAL_* environment
