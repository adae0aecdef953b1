"""bench_text_ceiling: clips at their signature's centroid, captions ranked against them."""

from __future__ import annotations

import zlib

import torch
import torch.nn.functional as F

from benchmarks.bench_text_ceiling import ceiling
from training.datasets import load_manifest
from training.evaluate import _signature
from training.synthav import GeneratorConfig, RenderConfig, generate_corpus


def test_a_space_that_encodes_the_signature_reaches_the_ceiling_and_noise_does_not(tmp_path):
    generate_corpus(
        tmp_path / "c",
        GeneratorConfig(
            clips=240,
            seed=2,
            val_fraction=0.0,
            test_fraction=0.3,
            render=RenderConfig(duration_s=1.0, fps=4.0, height=32, width=32),
        ),
        workers=2,
    )
    items = load_manifest(tmp_path / "c" / "manifest.jsonl")
    train = [i for i in items if i.split == "train"]
    # Queries from clips whose signatures training has (a small corpus does not repeat every
    # test signature); the point here is the ranking, not the wording.
    seen = {_signature(i.meta, "audio") for i in train}
    test = [i for i in items if i.split == "test" and _signature(i.meta, "audio") in seen]
    kind = "audio"
    meaning = {c: _signature(i.meta, kind) for i in items for c in i.captions[kind]}
    index = {s: n for n, s in enumerate(sorted(set(meaning.values()), key=repr))}

    def knows(texts):  # every wording of a signature lands on the same point
        return F.one_hot(torch.tensor([index[meaning[t]] for t in texts]), len(index)).float()

    def noise(texts):  # each sentence its own random point, whatever it says
        rows = [
            torch.randn(64, generator=torch.Generator().manual_seed(zlib.crc32(t.encode())))
            for t in texts
        ]
        return F.normalize(torch.stack(rows), dim=-1)

    perfect = ceiling(train, test, kind, knows)
    assert perfect["pool"] > 0 and perfect["R@1"] == 1.0
    assert perfect["pool"] == sum(
        _signature(i.meta, kind) in {_signature(t.meta, kind) for t in train} for i in test
    )
    assert perfect["pool"] >= 20
    assert ceiling(train, test, kind, noise)["R@1"] < 0.5
