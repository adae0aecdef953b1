"""A tiny served index: a SynthAV corpus, a tiny random model, an index built from them, and an
Engine loaded once per session (apps share it, so each test builds only a cheap app)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from index.build import build_index
from models.config import preset
from models.model import TrimodalModel, checkpoint_hash
from models.policy import DIRECTIONS, SearchPolicy, save_policy
from service.app import create_app
from service.engine import Engine
from service.index_cli import corpus_items
from service.settings import Settings
from training.synthav import GeneratorConfig, RenderConfig, generate_corpus


@pytest.fixture(scope="session")
def served(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("served")
    corpus = base / "corpus"
    generate_corpus(corpus, GeneratorConfig(clips=12, seed=5, render=RenderConfig(duration_s=3.0)))
    torch.manual_seed(0)
    ckpt = base / "ckpt"
    TrimodalModel(preset("tiny")).save(ckpt)
    # As a trained checkpoint records it (training.trainer.record_policy): sequence heads trained,
    # re-rank on by default except audio→video, so tests see both defaults and real segments.
    rerank = {**dict.fromkeys(DIRECTIONS, True), "audio→video": False}
    save_policy(ckpt, SearchPolicy(True, rerank, {"fixture": "random weights"}))
    items = corpus_items(corpus / "manifest.jsonl")
    for i, item in enumerate(items):  # tags for filter tests: every other item is "even"
        item.meta["tags"] = ["even"] if i % 2 == 0 else ["odd"]
    root = base / "index"
    build_index(root, items, TrimodalModel.load(ckpt), checkpoint_hash(ckpt), workers=1)
    return {"corpus": corpus, "ckpt": ckpt, "index": root, "cache": base / "cache"}


def settings_for(served: dict[str, Path], **overrides: object) -> Settings:
    values: dict[str, object] = {
        "index": served["index"],
        "ckpt": served["ckpt"],
        "reload_poll_s": 0,
        "api_key": "s3cret-key",
        "cache_dir": served["cache"],
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def engine(served) -> Engine:
    return Engine(settings_for(served))


@pytest.fixture
def client(served, engine) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(served), engine=engine)) as c:
        yield c


@pytest.fixture
def live_server(served, engine) -> Iterator[str]:
    """A real uvicorn server (HTTP over a socket) in a thread; yields its base URL."""
    import socket
    import threading
    import time

    import httpx
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(settings_for(served, max_upload_mb=0.05), engine=engine)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.05)
    else:
        raise RuntimeError("the server did not start")
    yield url
    server.should_exit = True
    thread.join(10)
