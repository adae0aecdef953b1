"""The text tower with int8 weights: how much faster a query is, and what it costs in retrieval.

    python -m benchmarks.bench_text_int8 --ckpt DIR [--pool data/indep-seed11]

Three runtimes of the same frozen tower (all-MiniLM-L6-v2): torch (what training and the
evaluation use), ONNX Runtime float32, ONNX Runtime with int8 weights. For each: the latency of
one sentence (p50 over distinct sentences, one thread), the cosine of its sentence vectors to
torch's on the pool's captions, and text→video / text→audio R@1 / R@10 (pooled) of the checkpoint
on a SynthAV test pool. The pool should be one nobody tuned on (`bench_fresh_pool` makes one).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from benchmarks._common import p50_p99, write_result

DIRS = ("text→video", "text→audio")


def _latency(embed: Any, sentences: list[str], n: int = 300) -> dict[str, float]:
    for s in sentences[:20]:
        embed([s])
    times = []
    for s in sentences[:n]:
        t = time.perf_counter()
        embed([s])
        times.append((time.perf_counter() - t) * 1e3)
    return p50_p99(times)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", type=Path, required=True)
    p.add_argument("--pool", type=Path, default=Path("data/indep-seed11"))
    p.add_argument("--seed", type=int, default=11, help="seed of the pool, if it must be made")
    args = p.parse_args(argv)
    from models.model import TrimodalModel
    from models.onnx_text import OnnxTextBackbone
    from training.batches import all_captions, examples
    from training.cache import TextCache
    from training.datasets import load_manifest
    from training.evaluate import evaluate
    from training.synthav import GeneratorConfig, generate_corpus
    from training.trainer import prepare

    torch.set_num_threads(1)
    generate_corpus(
        args.pool, GeneratorConfig(clips=1000, seed=args.seed, val_fraction=0.0, test_fraction=1.0)
    )
    items = [i for i in load_manifest(args.pool / "manifest.jsonl") if i.split == "test"]
    prep = prepare(items, "small", args.pool / "cache")
    captions = sorted(set(all_captions(examples(items, prep.cache))))
    prep.texts.ensure(captions, prep.backbone.embed)
    model = TrimodalModel.load(args.ckpt, text_backbone=prep.backbone)
    reference = prep.texts.lookup(captions).numpy()

    results: dict[str, Any] = {"pool": str(args.pool), "clips": len(items), "runtimes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        runtimes: dict[str, Any] = {
            "torch": prep.backbone,
            "onnx float32": OnnxTextBackbone(prep.backbone, Path(tmp)),
            "onnx int8": OnnxTextBackbone(prep.backbone, Path(tmp), int8=True),
        }
        for name, tower in runtimes.items():
            embed = tower.embed if name == "torch" else tower
            texts = prep.texts
            if name != "torch":
                texts = TextCache(Path(tmp) / name.replace(" ", "-"), name)
                texts.ensure(
                    captions,
                    lambda batch, e=embed: torch.cat(
                        [e(batch[i : i + 64]) for i in range(0, len(batch), 64)]
                    ),
                )
            vectors = texts.lookup(captions).numpy()
            cosine = np.sum(vectors * reference, 1) / (
                np.linalg.norm(vectors, axis=1) * np.linalg.norm(reference, axis=1)
            )
            with torch.inference_mode():
                latency = _latency(embed, [f"{c} {i}" for i, c in enumerate(captions)])
            report = evaluate(model, items, prep.cache, texts, modes=("pooled",))
            results["runtimes"][name] = {
                **latency,
                "cosine_to_torch_min": round(float(cosine.min()), 4),
                "cosine_to_torch_median": round(float(np.median(cosine)), 4),
                "pooled": {d: report[d]["pooled"]["all"] for d in DIRS},
            }

    table = Table(title=f"text tower runtimes ({len(captions)} captions, {len(items)} clips)")
    for col in (
        "runtime",
        "p50 ms",
        "p99 ms",
        "cos min / median",
        *(f"{d} R@1/R@10" for d in DIRS),
    ):
        table.add_column(col, justify="right")
    for name, r in results["runtimes"].items():
        table.add_row(
            name,
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            f"{r['cosine_to_torch_min']:.4f} / {r['cosine_to_torch_median']:.4f}",
            *(f"{r['pooled'][d]['R@1']:.3f} / {r['pooled'][d]['R@10']:.3f}" for d in DIRS),
        )
    Console(width=160).print(table)
    write_result("bench_text_int8", results)
    return results


if __name__ == "__main__":
    main()
