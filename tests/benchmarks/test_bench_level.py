"""bench_level: the sound at another recording level, as a file at that level would decode."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmarks import bench_level as bl
from models.config import preset
from models.model import TrimodalModel
from tests.benchmarks.tiny_corpus import tiny_corpus


def test_a_level_scales_the_sound_and_never_passes_full_scale():
    wave = (0.5 * np.sin(np.linspace(0, 100, 1_000))).astype(np.float32)
    quiet = bl.at_level(wave, -20.0)
    assert np.allclose(quiet, wave * 0.1, atol=1e-7)
    loud = bl.at_level(wave, 12.0)  # 0.5 x 4 would clip: taken back to full scale
    assert np.isclose(np.abs(loud).max(), 1.0) and np.allclose(loud, wave / 0.5, atol=1e-6)
    assert bl.at_level(np.zeros(0, np.float32), 6.0).size == 0


def test_benchmark_on_a_tiny_corpus_writes_its_result(tmp_path: Path, results: Path):
    manifest = tiny_corpus(tmp_path / "c", clips=8, seed=5, split="val", seconds=2.0)
    TrimodalModel(preset("tiny")).save(tmp_path / "ckpt")
    out = bl.main(
        [
            "--ckpt",
            str(tmp_path / "ckpt"),
            "--manifest",
            str(manifest),
            "--gains-db=-20,0",
            "--cache",
            str(tmp_path / "cache"),
        ]
    )
    assert set(out["by_gain"]) == {"-20 dB", "+0 dB"}
    for row in out["by_gain"].values():
        assert row["pool"] == 8
        assert all(0.0 <= row[d]["R@10"] <= 1.0 for d in bl.DIRECTIONS)
    # The pictures and the text are the same at every level: only sound-side directions move.
    assert out["by_gain"]["-20 dB"]["text→video"] == out["by_gain"]["+0 dB"]["text→video"]
    written = list(results.glob("bench_level-*.json"))
    assert len(written) == 1 and json.loads(written[0].read_text())["split"] == "val"
