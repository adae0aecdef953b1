"""What the pooled vectors know: a linear probe per attribute, fitted on training clips.

    python -m benchmarks.bench_probe --ckpt RUN/best \
        --train data/bench-synthav/manifest.jsonl#train \
        --pool val=data/bench-synthav/manifest.jsonl#val \
        --pool test=data/bench-synthav/manifest.jsonl#test \
        --pool robust=data/robust-test/manifest.jsonl \
        --pool foreign=data/foreign-1000/manifest.jsonl [--cache DIR] [--tag T]

Retrieval figures say *that* a search fails, not *why*. This asks each modality's pooled vector —
the one the first pass searches — what it knows of a clip: for every attribute of the world
(`SYNTHAV.md`: a source's kind, colour, direction, size and tempo, the scene; a sound's kind,
size, tempo and ambience) a multinomial logistic regression on the standardised vectors of the
training clips, then its accuracy on each pool beside the share of the pool's most common value
(what a probe that knew nothing would score). The clips are those with one visible and one
audible source, so that "the source's colour" has one answer. A pool keeps what transferred where
its accuracy stays near the own test pool's; an attribute at the majority share is one the
vector does not hold there, whatever the text side does.

Each pool is also read by probes fitted on the pool itself (two-fold: each half by a probe fitted
on the other), which asks whether its vectors hold the attribute at all. The two readings differ
in what they blame: a training-fitted probe also fails where the pool's vectors hold the
attribute in other directions, or where the probe learned a shortcut of its training clips (a
colour that no training bell has counts as evidence against a bell); a pool-fitted probe fails
only where the vectors do not hold it.

A pool holding clips of combinations that training never saw (SynthAV's `heldout` test clips:
a source in a colour or a size no training clip shows it in) is also read in those two parts.

The encoders are the checkpoint's; the probes are fitted here and thrown away (L2 1e-3, LBFGS).
Pools need the world's metadata (SynthAV's `meta`; the foreign corpus writes its own).
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from benchmarks._common import write_result
from models.encoders import AudioEncoder, VisualEncoder
from models.model import TrimodalModel
from training.cache import DecodeSpec, FeatureCache
from training.datasets import ManifestItem, load_manifest
from training.evaluate import embed_pool

ATTRIBUTES = {
    "visual": ("kind", "colour", "direction", "size", "tempo", "scene"),
    "audio": ("kind", "size", "tempo", "ambience"),
}


def _seen(meta: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [s for s in meta.get("sources", ()) if s.get("role") != "offscreen"]


def _heard(meta: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    audio = meta.get("audio") or {}
    return list(audio.get("sources", ()))


def single_source(meta: Mapping[str, Any]) -> bool:
    """Whether the clip shows one source and sounds one (a probe's question has one answer)."""
    return len(_seen(meta)) == 1 and len(_heard(meta)) == 1


def label(meta: Mapping[str, Any], modality: str, attribute: str) -> str:
    """The value of `attribute` that `modality` carries of a single-source clip."""
    if attribute == "scene":
        return str(meta["scene"])
    if attribute == "ambience":
        return str(meta["audio"].get("ambience") or "none")
    source = _seen(meta)[0] if modality == "visual" else _heard(meta)[0]
    return str(source[attribute])


def with_metadata(items: Sequence[ManifestItem], where: str) -> list[ManifestItem]:
    """The single-source clips of `items`; a pool without the world's metadata is refused."""
    if not any("sources" in i.meta and "audio" in i.meta for i in items):
        raise ValueError(
            f"{where}: no item carries the world's metadata (meta.sources, meta.audio)"
        )
    return [i for i in items if "sources" in i.meta and "audio" in i.meta and single_source(i.meta)]


@dataclass(frozen=True)
class Probe:
    classes: tuple[str, ...]
    mean: torch.Tensor
    scale: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor

    def predict(self, x: torch.Tensor) -> list[str]:
        logits = ((x - self.mean) / self.scale) @ self.weight + self.bias
        return [self.classes[j] for j in logits.argmax(1).tolist()]


def fit_probe(x: torch.Tensor, labels: Sequence[str], l2: float = 1e-3) -> Probe:
    """A multinomial logistic regression of `labels` on the standardised rows of `x`."""
    classes = tuple(sorted(set(labels)))
    if len(classes) < 2:
        raise ValueError(f"a probe needs two values or more, got {classes}")
    target = torch.tensor([classes.index(v) for v in labels])
    x = x.float()
    mean, scale = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / scale
    weight = torch.zeros(z.shape[1], len(classes), requires_grad=True)
    bias = torch.zeros(len(classes), requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z @ weight + bias, target)
        loss = loss + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return Probe(classes, mean, scale, weight.detach(), bias.detach())


def accuracy(probe: Probe, x: torch.Tensor, labels: Sequence[str]) -> tuple[float, float]:
    """The probe's accuracy on (x, labels), and the share of the most common label."""
    hits = sum(p == t for p, t in zip(probe.predict(x.float()), labels, strict=True))
    majority = Counter(labels).most_common(1)[0][1]
    return hits / len(labels), majority / len(labels)


def within_pool(x: torch.Tensor, labels: Sequence[str], seed: int = 0) -> float | None:
    """Accuracy of probes fitted on the pool itself, two-fold (each half read by a probe fitted on
    the other): whether the vectors hold the attribute at all, in directions of their own. None
    for a pool too small to fit on (under 20 clips, or a half with a single value)."""
    if len(labels) < 20:
        return None
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed)).tolist()
    halves = (order[: len(order) // 2], order[len(order) // 2 :])
    hits = 0
    for fit, read in (halves, halves[::-1]):
        fit_labels = [labels[j] for j in fit]
        if len(set(fit_labels)) < 2:
            return None
        probe = fit_probe(x[fit], fit_labels)
        predicted = probe.predict(x[read].float())
        hits += sum(p == labels[j] for p, j in zip(predicted, read, strict=True))
    return hits / len(labels)


def _items(spec: str) -> list[ManifestItem]:
    path, _, split = spec.partition("#")
    return load_manifest(Path(path), [split] if split else None)


def heldout_parts(
    name: str, where: str, items: list[ManifestItem], x: dict[str, torch.Tensor]
) -> dict[str, tuple[str, list[ManifestItem], dict[str, torch.Tensor]]]:
    """A pool that holds clips of combinations training never saw (SynthAV's `meta.heldout`: a
    source in a colour or a size no training clip shows it in), read in two parts as well: those
    clips, and the rest. Empty for a pool without such clips."""
    held = [bool(i.meta.get("heldout")) for i in items]
    if not any(held) or all(held):
        return {}
    parts = {}
    for label_, keep in ((f"{name}: held-out", True), (f"{name}: seen", False)):
        rows = [j for j, h in enumerate(held) if h == keep]
        parts[label_] = (where, [items[j] for j in rows], {m: v[rows] for m, v in x.items()})
    return parts


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", type=Path, required=True)
    p.add_argument("--train", required=True, help="MANIFEST[#SPLIT] the probes are fitted on")
    p.add_argument("--pool", action="append", required=True, help="NAME=MANIFEST[#SPLIT]")
    p.add_argument("--cache", type=Path, default=None, help="default: beside each manifest")
    p.add_argument("--tag", default="")
    args = p.parse_args(argv)

    model = TrimodalModel.load(args.ckpt, warn_untrained=False)
    for encoder in model.encoders.values():
        if isinstance(encoder, AudioEncoder | VisualEncoder):
            encoder.run_branch = False  # pooled vectors only: the branches' steps are not read

    def vectors(spec: str, where: str) -> tuple[list[ManifestItem], dict[str, torch.Tensor]]:
        path = Path(spec.partition("#")[0])
        root = args.cache if args.cache is not None else path.parent / ".trimodal-cache"
        items = _items(spec)
        # the cache of the whole selection (as every other tool decodes it), then its clips that
        # have one answer
        cache = FeatureCache.build(items, DecodeSpec.for_model(model.cfg), root)
        kept = [i for i in with_metadata(items, where) if i.id in cache.row]
        if not kept:
            raise ValueError(f"{where}: no decoded clip that shows one source and sounds one")
        pool = embed_pool(model, cache, [i.id for i in kept])
        return kept, {"visual": pool.visual.pooled, "audio": pool.audio.pooled}

    train_items, train_x = vectors(args.train, "--train")
    pools: dict[str, tuple[str, list[ManifestItem], dict[str, torch.Tensor]]] = {}
    for spec in args.pool:
        name, _, where = spec.partition("=")
        pools[name] = (where, *vectors(where, name))
        pools.update(heldout_parts(name, *pools[name]))
    results: dict[str, Any] = {
        "ckpt": str(args.ckpt),
        "train": {"manifest": args.train, "clips": len(train_items)},
        "pools": {n: {"manifest": w, "clips": len(i)} for n, (w, i, _) in pools.items()},
        "accuracy": {},
    }
    table = Table(
        title="linear probes of the pooled vectors: fitted on training / within the pool "
        "(majority share)"
    )
    table.add_column("vector")
    table.add_column("attribute")
    for name, (_, items, _) in pools.items():
        table.add_column(f"{name} ({len(items)})", justify="right")
    for modality, attributes in ATTRIBUTES.items():
        for attribute in attributes:
            train_labels = [label(i.meta, modality, attribute) for i in train_items]
            if len(set(train_labels)) < 2:  # nothing to tell apart (a tiny training split)
                results["accuracy"][f"{modality}.{attribute}"] = None
                table.add_row(modality, attribute, *("—" for _ in pools))
                continue
            probe = fit_probe(train_x[modality], train_labels)
            row = {}
            for name, (_, items, x) in pools.items():
                labels = [label(i.meta, modality, attribute) for i in items]
                acc, majority = accuracy(probe, x[modality], labels)
                own = within_pool(x[modality], labels)
                row[name] = {
                    "accuracy": round(acc, 4),
                    "within": None if own is None else round(own, 4),
                    "majority": round(majority, 4),
                }
            results["accuracy"][f"{modality}.{attribute}"] = row
            table.add_row(
                modality,
                attribute,
                *(
                    f"{r['accuracy']:.2f} / "
                    + ("—" if r["within"] is None else f"{r['within']:.2f}")
                    + f" ({r['majority']:.2f})"
                    for r in row.values()
                ),
            )
    Console(width=240).print(table)
    write_result("bench_probe" + (f"-{args.tag}" if args.tag else ""), results)
    return results


if __name__ == "__main__":
    main()
