"""bench_probe: linear probes of the pooled vectors, fitted on training clips, read on pools."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks import bench_probe as bp
from models.config import preset
from models.model import TrimodalModel
from tests.benchmarks.tiny_corpus import tiny_corpus
from training.datasets import ManifestItem


def _meta(seen_roles=("main",), heard=1, **extra):
    sources = [
        {"kind": k, "colour": "red", "direction": "still", "size": "small", "tempo": "fast",
         "role": r}
        for k, r in zip(("bell", "drum", "ball"), seen_roles, strict=False)
    ]  # fmt: skip
    audio = {"ambience": None, "sources": [{"kind": "bell", "size": "large"}] * heard}
    return {"scene": "day", "sources": sources, "audio": audio, **extra}


def test_a_clip_answers_when_it_shows_one_source_and_sounds_one():
    assert bp.single_source(_meta())
    # an offscreen source is heard, not seen: still one source shown
    assert bp.single_source(_meta(("main", "offscreen")))
    assert not bp.single_source(_meta(("main", "silent")))
    assert not bp.single_source(_meta(heard=2))
    meta = _meta()
    assert bp.label(meta, "visual", "kind") == "bell"
    assert bp.label(meta, "visual", "size") == "small"
    assert bp.label(meta, "audio", "size") == "large"  # each side's own record
    assert bp.label(meta, "audio", "ambience") == "none"
    assert bp.label(meta, "visual", "scene") == "day"


def test_a_pool_without_the_worlds_metadata_is_refused():
    items = [ManifestItem("a", None, None, {}, "test", {"duration_s": 3.0})]
    with pytest.raises(ValueError, match="metadata"):
        bp.with_metadata(items, "plain")
    kept = bp.with_metadata(
        [
            ManifestItem("a", None, None, {}, "test", _meta()),
            ManifestItem("b", None, None, {}, "test", _meta(heard=2)),
        ],
        "pool",
    )
    assert [i.id for i in kept] == ["a"]


def test_a_probe_reads_what_the_vectors_hold_and_nothing_more():
    torch.manual_seed(0)
    x = torch.randn(200, 8)
    labels = ["left" if v > 0 else "right" for v in x[:, 3].tolist()]
    probe = bp.fit_probe(x[:100], labels[:100])
    acc, majority = bp.accuracy(probe, x[100:], labels[100:])
    assert acc > 0.9 and 0.4 < majority < 0.7
    # labels the vectors do not hold: about the majority share, not above it
    noise = ["a" if v > 0 else "b" for v in torch.randn(200).tolist()]
    acc, majority = bp.accuracy(bp.fit_probe(x[:100], noise[:100]), x[100:], noise[100:])
    assert acc < majority + 0.2
    with pytest.raises(ValueError, match="two values"):
        bp.fit_probe(x[:10], ["a"] * 10)


def test_a_pool_fitted_on_itself_finds_what_a_probe_from_elsewhere_misses():
    torch.manual_seed(1)
    x = torch.randn(120, 6)
    # training clips hold the attribute along one direction, the pool along another
    train_labels = ["on" if v > 0 else "off" for v in x[:60, 0].tolist()]
    pool_labels = ["on" if v > 0 else "off" for v in x[60:, 1].tolist()]
    probe = bp.fit_probe(x[:60], train_labels)
    elsewhere, majority = bp.accuracy(probe, x[60:], pool_labels)
    within = bp.within_pool(x[60:], pool_labels)
    assert within is not None and within > 0.85 and elsewhere < majority + 0.25
    assert bp.within_pool(x[:10], train_labels[:10]) is None  # too few to fit on
    assert bp.within_pool(x[:40], ["same"] * 40) is None


def test_benchmark_on_a_tiny_corpus_writes_its_result(tmp_path: Path, results: Path):
    manifest = tiny_corpus(tmp_path / "c", clips=24, seed=2, split="val", seconds=1.5, workers=2)
    TrimodalModel(preset("tiny")).save(tmp_path / "ckpt")
    out = bp.main(
        [
            "--ckpt",
            str(tmp_path / "ckpt"),
            "--train",
            f"{manifest}#val",
            "--pool",
            f"same={manifest}",
            "--cache",
            str(tmp_path / "cache"),
        ]
    )
    clips = out["pools"]["same"]["clips"]
    assert 0 < clips == out["train"]["clips"] < 24  # single-source clips only
    assert set(out["accuracy"]) == {
        f"{m}.{a}" for m, attributes in bp.ATTRIBUTES.items() for a in attributes
    }
    read = [r["same"] for r in out["accuracy"].values() if r is not None]
    assert read and all(0.0 <= r["accuracy"] <= 1.0 and r["majority"] > 0 for r in read)
    assert all(r["within"] is None or 0.0 <= r["within"] <= 1.0 for r in read)
    written = list(results.glob("bench_probe-*.json"))
    assert len(written) == 1 and json.loads(written[0].read_text())["pools"]["same"]["clips"]


def test_a_pool_with_unseen_combinations_is_also_read_in_two_parts():
    items = [
        ManifestItem(n, None, None, {}, "test", _meta(heldout=h))
        for n, h in (("a", True), ("b", False), ("c", True))
    ]
    x = {"visual": torch.arange(6.0).reshape(3, 2), "audio": torch.zeros(3, 2)}
    parts = bp.heldout_parts("test", "M#test", items, x)
    held, seen = parts["test: held-out"], parts["test: seen"]
    assert [i.id for i in held[1]] == ["a", "c"] and [i.id for i in seen[1]] == ["b"]
    assert held[2]["visual"].tolist() == [[0.0, 1.0], [4.0, 5.0]]
    # nothing to split: no parts
    assert bp.heldout_parts("p", "M", items[1:2], {k: v[1:2] for k, v in x.items()}) == {}


def test_a_pool_without_a_single_source_clip_is_refused(tmp_path: Path, results: Path):
    manifest = tiny_corpus(tmp_path / "c", clips=4, seed=2, split="val", seconds=1.0)
    lines = [json.loads(x) for x in manifest.read_text().splitlines()]
    for line in lines:  # every clip now sounds two sources
        line["meta"]["audio"]["sources"] = line["meta"]["audio"]["sources"] * 2
    manifest.write_text("".join(json.dumps(x) + "\n" for x in lines))
    TrimodalModel(preset("tiny")).save(tmp_path / "ckpt")
    args = ["--ckpt", str(tmp_path / "ckpt"), "--cache", str(tmp_path / "cache")]
    with pytest.raises(ValueError, match="one source"):
        bp.main([*args, "--train", str(manifest), "--pool", f"p={manifest}"])
    assert not list(results.glob("bench_probe-*.json"))
