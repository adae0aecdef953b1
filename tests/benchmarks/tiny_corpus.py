"""A tiny SynthAV corpus of one split, for the benchmark tests."""

from __future__ import annotations

from pathlib import Path

from training.synthav import GeneratorConfig, RenderConfig, generate_corpus


def tiny_corpus(
    out: Path, clips: int, seed: int, split: str = "test", seconds: float = 3.0, workers: int = 1
) -> Path:
    """`clips` SynthAV clips of `seconds` each, all in `split` ("test" or "val"); the manifest."""
    generate_corpus(
        out,
        GeneratorConfig(
            clips=clips,
            seed=seed,
            val_fraction=1.0 if split == "val" else 0.0,
            test_fraction=1.0 if split == "test" else 0.0,
            render=RenderConfig(duration_s=seconds),
        ),
        workers=workers,
    )
    return out / "manifest.jsonl"
