"""The text tower through ONNX Runtime gives the torch tower's sentence vectors."""

from __future__ import annotations

import logging
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
import torch

pytest.importorskip("onnxruntime")

from models.config import preset
from models.onnx_text import _QUANTIZER_NOTE, OnnxTextBackbone, _known_notes_quiet
from models.text import TextBackbone

SENTENCES = ["a small red ball bounces on the grass", "a bell", "", "chime " * 300]


def test_onnx_tower_matches_torch_for_ragged_batches(tmp_path: Path) -> None:
    torch_tower = TextBackbone(preset("tiny").text)
    with torch.no_grad():
        before = torch_tower(SENTENCES)
    onnx_tower = OnnxTextBackbone(torch_tower, tmp_path)
    torch.testing.assert_close(onnx_tower(SENTENCES), before, atol=1e-4, rtol=1e-4)
    for one in SENTENCES:  # one at a time (no padding) as a search does
        torch.testing.assert_close(
            onnx_tower([one]), torch_tower([one]).detach(), atol=1e-4, rtol=1e-4
        )
    with torch.no_grad():  # exporting did not change the torch tower
        torch.testing.assert_close(torch_tower(SENTENCES), before)
    with pytest.raises(ValueError):
        onnx_tower([])


def test_export_is_cached_by_the_towers_identity(tmp_path: Path) -> None:
    tower = TextBackbone(preset("tiny").text)
    first = OnnxTextBackbone(tower, tmp_path)
    stamp = first.path.stat().st_mtime_ns
    again = OnnxTextBackbone(tower, tmp_path)
    assert again.path == first.path and again.path.stat().st_mtime_ns == stamp  # not re-exported
    other_cfg = replace(preset("tiny").text, max_length=16)
    other = OnnxTextBackbone(TextBackbone(other_cfg), tmp_path)
    assert other.path != first.path
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.path.name, other.path.name])


def test_a_first_start_prints_no_exporter_notes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The first export and quantisation (a user's first `trimodal serve`) used to print the
    tracer's, the exporter's and the quantiser's notes about cases the tower never meets."""
    tower = TextBackbone(preset("tiny").text)
    with caplog.at_level(logging.WARNING), warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        OnnxTextBackbone(tower, tmp_path, int8=True)
    said = [str(w.message) for w in seen]
    assert not [m for m in said if "Python boolean" in m or "aten::index" in m], said
    assert not [r for r in caplog.records if r.getMessage().startswith(_QUANTIZER_NOTE)]


def test_only_the_known_notes_are_kept_quiet(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING), warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with _known_notes_quiet():
            warnings.warn("something else went wrong", stacklevel=1)
            logging.getLogger().warning("another message")
            logging.getLogger().warning(_QUANTIZER_NOTE + ". Refer to example: …")
    assert [str(w.message) for w in seen] == ["something else went wrong"]
    assert [r.getMessage() for r in caplog.records] == ["another message"]
    assert logging.getLogger().filters == []  # the filter is gone afterwards


REAL_SENTENCES = [
    "a small red ball bounces on the grass",
    "a dog barks twice while a car drives past",
    "rain falls on a tin roof at night",
    "the bell rings and then the crowd cheers",
    "footsteps on gravel, slowly getting louder",
    "an engine starts",
]


def test_int8_tower_stays_close_to_the_float_one(tmp_path: Path) -> None:
    """int8 weights on the real all-MiniLM-L6-v2: sentence vectors at cosine >= 0.97 of torch's
    (the service's default text runtime; retrieval effect measured by bench_text_int8), and the
    same sentence still nearest to itself among the others."""
    tower = TextBackbone(preset("small").text)
    with torch.no_grad():
        reference = torch.nn.functional.normalize(tower(REAL_SENTENCES), dim=-1)
    int8 = OnnxTextBackbone(tower, tmp_path, int8=True)
    assert int8.path.name.endswith("-int8.onnx") and int8.path.is_file()
    got = torch.nn.functional.normalize(int8(REAL_SENTENCES), dim=-1)
    cosine = (got * reference).sum(-1)
    assert bool((cosine >= 0.97).all()), cosine
    assert (got @ reference.T).argmax(1).tolist() == list(range(len(REAL_SENTENCES)))
    assert not torch.allclose(got, reference, atol=1e-4)  # really the quantised tower
    float_file = int8.path.with_name(int8.path.name.replace("-int8", ""))
    assert float_file.is_file()  # quantised from the cached float export
    stamp = int8.path.stat().st_mtime_ns
    assert OnnxTextBackbone(tower, tmp_path, int8=True).path.stat().st_mtime_ns == stamp


class _Counted:
    """An ONNX Runtime session whose runs are counted."""

    def __init__(self, session) -> None:
        self.session, self.runs = session, 0

    def run(self, *args, **kwargs):
        self.runs += 1
        return self.session.run(*args, **kwargs)


def test_a_lone_query_borrows_an_idle_core_and_gets_the_same_vector(
    tmp_path: Path, monkeypatch
) -> None:
    """With a core idle (`SPARE.idle`) a sentence runs on the second, wider session; with every
    core busy, on the first; the vectors are the same bit for bit either way."""
    from models import onnx_text
    from models.spare import SpareCores

    tower = TextBackbone(preset("tiny").text)
    onnx_tower = OnnxTextBackbone(tower, tmp_path, lent=1)
    narrow, wide = _Counted(onnx_tower.session), _Counted(onnx_tower.wide)
    onnx_tower.session, onnx_tower.wide = narrow, wide  # type: ignore[assignment]
    spare = SpareCores(1, cores=2)
    monkeypatch.setattr(onnx_text, "SPARE", spare)
    with spare.running():
        alone = onnx_tower(SENTENCES)
    assert (narrow.runs, wide.runs) == (0, 1)
    with spare.running(), spare.running():  # two requests on two cores
        busy = onnx_tower(SENTENCES)
    assert (narrow.runs, wide.runs) == (1, 1)
    assert torch.equal(alone, busy)
    assert OnnxTextBackbone(tower, tmp_path).wide is None  # nothing lent: one session
