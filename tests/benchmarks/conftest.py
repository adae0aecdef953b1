"""Shared by the benchmark tests: each benchmark's result file goes to the test's tmp."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the benchmark writes its result file during the test."""
    monkeypatch.setattr("benchmarks._common.RESULTS", tmp_path / "results")
    return tmp_path / "results"
