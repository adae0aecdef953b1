"""bench_quality --val-only: a probe that reports the val split and never touches the test pool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import bench_quality as bq


def test_a_val_only_probe_never_decodes_or_evaluates_the_test_pool(
    tmp_path: Path, results: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepared_splits: list[set[str]] = []
    evaluated_splits: list[set[str]] = []
    prepare, evaluate = bq.prepare, bq.evaluate

    def prepare_seen(items, *args, **kwargs):
        prepared_splits.append({i.split for i in items})
        return prepare(items, *args, **kwargs)

    def evaluate_seen(model, items, *args, **kwargs):
        evaluated_splits.append({i.split for i in items})
        return evaluate(model, items, *args, **kwargs)

    monkeypatch.setattr(bq, "prepare", prepare_seen)
    monkeypatch.setattr(bq, "evaluate", evaluate_seen)
    args = ["--corpus", str(tmp_path / "c"), "--runs", str(tmp_path / "runs")]
    args += ["--train", "12", "--val", "6", "--test", "6", "--seed", "3", "--epochs", "1"]
    args += ["--only", "single-stage", "--branch-epochs", "0", "--event-epochs", "0"]
    out = bq.main([*args, "--val-only"])

    assert out["split"] == "val" and out["claims"] == {}
    report = out["runs"]["single-stage"]["report"]
    assert report["audio→video"]["pooled"]["all"]["n"] == 6  # the 6 val clips, all with sound
    assert "test" not in set().union(*prepared_splits)
    assert evaluated_splits and all(s == {"val"} for s in evaluated_splits)
    written = list(results.glob("bench_quality-*.json"))
    assert len(written) == 1 and json.loads(written[0].read_text())["split"] == "val"

    # what it refuses: pools and curation report test figures
    for more in (["--pool", f"x={tmp_path / 'c' / 'manifest.jsonl'}"], ["--only", "curation"]):
        with pytest.raises(SystemExit, match="--val-only"):
            bq.main([*args, *more, "--val-only"])
