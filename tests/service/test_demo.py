"""`trimodal demo`'s orchestration: which steps run, in order, and what is skipped.

The steps themselves (synth, train, index build, ONNX export) have their own tests; here they are
recorded stand-ins, so the test runs in well under a second. The whole demo, for real, is the slow
browser test's fixture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def steps(monkeypatch) -> list[tuple[str, dict[str, Any]]]:
    import index.version
    import models.onnx_export
    from service import index_cli
    from training import cli as training_cli

    calls: list[tuple[str, dict[str, Any]]] = []
    built: dict[Path, bool] = {}

    def synth(**kw: Any) -> None:
        calls.append(("synth", kw))
        kw["out"].mkdir(parents=True)
        (kw["out"] / "manifest.jsonl").write_text("")

    def train(**kw: Any) -> None:
        calls.append(("train", kw))
        (kw["out"] / "best").mkdir(parents=True)
        (kw["out"] / "best" / "config.json").write_text("{}")

    def export(ckpt: Path, out: Path) -> None:
        calls.append(("onnx", {"ckpt": ckpt, "out": out}))
        raise RuntimeError("exporter unavailable")

    def build(**kw: Any) -> None:
        calls.append(("index", kw))
        built[kw["out"]] = True

    monkeypatch.setattr(training_cli, "synth", synth)
    monkeypatch.setattr(training_cli, "train", train)
    monkeypatch.setattr(models.onnx_export, "export_onnx", export)
    monkeypatch.setattr(index_cli, "build", build)
    monkeypatch.setattr(index.version, "current_version", lambda d: "v1" if built.get(d) else None)
    return calls


def test_demo_builds_corpus_model_and_index_without_an_onnx_export(steps, tmp_path) -> None:
    from service.demo import demo

    timings = demo(out=tmp_path, serve=False)

    assert [name for name, _ in steps] == ["synth", "train", "index"]
    assert steps[0][1]["clips"] == 400
    assert steps[1][1]["model_preset"] == "small"
    assert steps[1][1]["max_minutes"] == 4.0
    assert steps[2][1]["ckpt"] == tmp_path / "model" / "best"
    assert set(timings) == {"corpus_s", "train_s", "index_s"}

    # A second run finds every output and does nothing again.
    steps.clear()
    demo(out=tmp_path, serve=False)
    assert steps == []


def test_demo_onnx_export_is_opt_in_and_a_failed_export_is_reported_not_fatal(
    steps, tmp_path, capsys
) -> None:
    from service.demo import demo

    demo(out=tmp_path, serve=False, onnx=True)

    assert [name for name, _ in steps] == ["synth", "train", "onnx", "index"]
    assert steps[2][1]["out"] == tmp_path / "model" / "best" / "onnx"
    out = capsys.readouterr().out
    assert "ONNX export skipped (exporter unavailable)" in out
    assert "queries will run in torch" in out
