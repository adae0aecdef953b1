"""bench_prints: a run on a tiny corpus finds every piece of its clips by the signal alone."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import bench_prints as bp
from models.config import preset
from models.model import TrimodalModel
from tests.benchmarks.tiny_corpus import tiny_corpus


def test_benchmark_on_a_tiny_corpus_writes_its_result(tmp_path: Path, results: Path):
    manifest = tiny_corpus(tmp_path / "c", clips=10, seed=4)
    TrimodalModel(preset("tiny")).save(tmp_path / "ckpt")
    args = ["--ckpt", str(tmp_path / "ckpt"), "--pool", f"tiny={manifest}", "--seconds", "2.5"]
    args += ["--no-chromaprint", "--cache", str(tmp_path / "cache")]
    out = bp.main(args)
    r = out["pools"]["tiny"]["2.5s"]
    assert out["pools"]["tiny"]["pool"] == 10 and r["queries"] == 10
    # pieces of the clips' own decoded sound: the prints rank each clip first and place it
    assert r["prints"]["R@1"] == 1.0 and r["prints"]["start_error_s"]["within_0.25s"] == 1.0
    assert r["prints"]["first_elsewhere"] == 0.0
    assert r["landmarks_then_prints"]["found"] >= r["landmarks"]["found"]
    assert r["chromaprint"] is None
    written = list(results.glob("bench_prints-*.json"))
    assert len(written) == 1 and json.loads(written[0].read_text())["settings"]["phases"] == 8
