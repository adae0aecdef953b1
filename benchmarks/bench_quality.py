"""Quality benchmark on SynthAV: do the seed papers' claims hold here?

    python -m benchmarks.bench_quality [--corpus data/bench-synthav] [--epochs 8]

One run, one table. Rows: two-stage / single-stage / single-stage + SCAV loss, each with pooled and
hybrid (pooled top-K, then sequence re-rank) retrieval, and "service": what the service does by
default with the checkpoint's recorded search policy (models.policy: hybrid only in the directions
where the validation split showed the re-rank helps); columns R@1/5/10 for text→video,
text→audio, audio→video, video→audio and twin R@1. Then curated-30% vs random-30% training on the
train split (10% of which has misaligned audio). The claims tested:
  - single-stage ≥ 2x two-stage on audio→video R@10 (SLAVA);
  - sequence re-rank ≥ 2x pooled on twin R@1 (SCAV);
  - curated > random (LG-CAV-MAE).
It also times the small preset end to end (feature extraction + training) against the 15-minute
budget and its text→video R@10 against 0.5. Every figure is reported, whether a claim holds or not.

`--val-only` makes it a probe: the same runs, timed, reported on the val split (where a setting
is chosen), the test pool never decoded, evaluated or shown; no claims.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks._common import write_result
from models.config import preset as preset_config
from models.policy import SearchPolicy, load_policy
from training.augment import named
from training.batches import all_captions, examples
from training.cli import print_report
from training.curate import agreement_scores, keep_top, random_subset
from training.datasets import load_manifest
from training.evaluate import evaluate, validation_score
from training.losses import PairWeights
from training.synthav import GeneratorConfig, generate_corpus
from training.synthav.writer import reword_corpus
from training.trainer import TrainConfig, lent_clips, lent_event_clips, prepare, train
from training.what_phase import named_clips

DIRS = ("text→video", "text→audio", "audio→video", "video→audio")


def ensure_corpus(
    path: Path,
    train: int,
    val: int,
    test: int,
    seed: int,
    variety: bool = False,
    variety_share: float = 0.0,
    variety_parts: str = "all",
    val_heldout: float = 0.0,
) -> Path:
    total = train + val + test
    cfg = GeneratorConfig(
        clips=total,
        seed=seed,
        val_fraction=val / total,
        test_fraction=test / total,
        variety=variety,
        variety_share=variety_share,
        variety_parts=variety_parts,
        val_heldout_fraction=val_heldout,
    )
    generate_corpus(path, cfg)  # resumes / reuses a complete corpus made with the same settings
    return path / "manifest.jsonl"


def row(report: dict[str, Any], mode: str, policy: SearchPolicy | None = None) -> dict[str, float]:
    """One table row; mode "service": per direction what the service does by default with the
    checkpoint's recorded policy (hybrid where it re-ranks, pooled elsewhere; text is pooled)."""
    out: dict[str, float] = {}
    for d in DIRS:
        m = report[d][_service_mode(d, policy, report) if mode == "service" else mode]["all"]
        out |= {f"{d} R@1": m["R@1"], f"{d} R@5": m["R@5"], f"{d} R@10": m["R@10"]}
    a2v, v2a = (
        (_service_mode(d, policy, report) if mode == "service" else mode)
        for d in ("audio→video", "video→audio")
    )
    twins = report["audio→video"][a2v].get("twins")
    out["twin R@1 (a→v)"] = twins["R@1"] if twins else float("nan")
    twins_v = report["video→audio"][v2a].get("twins")
    out["twin R@1 (v→a)"] = twins_v["R@1"] if twins_v else float("nan")
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, default=Path("data/bench-synthav"))
    p.add_argument("--runs", type=Path, default=Path("data/bench-quality"))
    p.add_argument("--train", type=int, default=2000)
    p.add_argument("--val", type=int, default=200)
    p.add_argument("--test", type=int, default=1000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--scav-weight", type=float, default=0.5)
    p.add_argument("--rerank", type=int, default=100)
    p.add_argument("--keep", type=float, default=0.3)
    p.add_argument("--only", default="two-stage,single-stage,single-stage+scav,curation")
    p.add_argument(
        "--text-head", default=None, help="override the text projection: mlp, linear, identity"
    )
    p.add_argument("--embed-dim", type=int, default=None, help="override the shared dimension")
    p.add_argument(
        "--soft-targets",
        type=float,
        default=None,
        help="temperature of soft text targets (0 = one-hot; default: TrainConfig's)",
    )
    p.add_argument("--tag", default="", help="suffix of the result name (use with another --runs)")
    p.add_argument(
        "--ckpt",
        type=Path,
        default=None,
        help="measure this checkpoint as the single-stage run instead of training one (its "
        "corpus and feature cache are --corpus and --runs'; no time is claimed)",
    )
    p.add_argument("--weights", default=None, help="single-stage pair weights vt,at,av (1,1,1)")
    p.add_argument(
        "--augment",
        nargs="?",
        const="both",
        choices=("both", "audio", "visual", "level", "band", "none"),
        default=None,
        help="train with training.augment's defaults, on both streams or only one; 'level' "
        "(TrainConfig's default): only the sound's recording level (training.augment."
        "level_only); 'band': the level and a low sample rate's band (training.augment."
        "level_and_band); 'none': no augmentation (the recipe before 2026-11-30's level)",
    )
    p.add_argument("--variety", action="store_true", help="SynthAV corpus with per-clip variety")
    p.add_argument(
        "--variety-share",
        type=float,
        default=0.0,
        help="SynthAV corpus whose train clips are varied at this share (val and test plain: the "
        "own pool stays the plain corpus's clips)",
    )
    p.add_argument(
        "--variety-parts",
        choices=("all", "sound"),
        default="all",
        help="what --variety-share varies: all, or the sound alone (pictures stay plain)",
    )
    p.add_argument(
        "--val-heldout",
        type=float,
        default=0.0,
        help="SynthAV corpus whose val split holds (source, colour|size) pairs of its own that no "
        "train clip holds, forced into this share of it (the test split stays the same)",
    )
    p.add_argument(
        "--rich-captions",
        action="store_true",
        help="train on the larger caption grammar (the corpus re-worded: same media and features; "
        "val and test keep their reserved wordings)",
    )
    p.add_argument(
        "--paraphrase-weight",
        type=float,
        default=None,
        help="weight of the paraphrase loss (default: TrainConfig's; needs a trainable text head)",
    )
    p.add_argument(
        "--sync-weight",
        type=float,
        default=None,
        help="weight of the per-step audio–visual contrast that trains the sequence heads "
        "(default: TrainConfig's)",
    )
    p.add_argument(
        "--sync-objective",
        choices=("steps", "clips"),
        default=None,
        help="the timing objective --sync-weight weighs (default: TrainConfig's)",
    )
    p.add_argument("--sync-temperature", type=float, default=None, help="default: TrainConfig's")
    p.add_argument(
        "--excerpt-weight",
        type=float,
        default=None,
        help="weight of the excerpt objective (pieces land on their clip's steps; default: "
        "TrainConfig's)",
    )
    p.add_argument(
        "--position-jitter",
        type=int,
        default=None,
        help="training positions start at a random step below this (default: TrainConfig's)",
    )
    p.add_argument(
        "--sequence-branch",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="sequences from their own branch on the detached encoder outputs (default: the "
        "preset's)",
    )
    p.add_argument(
        "--branch-trunk-gradient",
        type=float,
        default=None,
        help="share of the sequence branch's gradient that reaches the shared encoder",
    )
    p.add_argument(
        "--event-inputs",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="sound onsets and picture changes as explicit encoder inputs (default: the preset's)",
    )
    p.add_argument(
        "--event-data",
        type=Path,
        default=None,
        metavar="MANIFEST",
        help="more clips for the picture event network's phase alone (this manifest's train "
        "split, captions unused; `trimodal train --event-data`), e.g. a `trimodal synth "
        "--variety` corpus; decoded with the features (their time counts)",
    )
    p.add_argument(
        "--what-data",
        type=Path,
        default=None,
        metavar="MANIFEST",
        help="more clips for the what networks' phase alone (this manifest's train split, "
        "whose SynthAV metadata names the sources; `trimodal train --what-data`), e.g. a "
        "`trimodal synth --variety` corpus; decoded with the features (their time counts)",
    )
    p.add_argument(
        "--val-pool",
        type=Path,
        default=None,
        metavar="MANIFEST",
        help="pick each run's best epoch on this manifest's val split instead of the own one: "
        "clips and wordings unlike the training ones (e.g. a --variety corpus when training on "
        "a plain one), so that 'best' means best on unseen media; the own val score is logged",
    )
    p.add_argument(
        "--fps",
        type=float,
        default=None,
        help="frames a second the visual encoder samples (default: the preset's; a multiple of "
        "its steps per second)",
    )
    p.add_argument(
        "--branch-epochs",
        type=int,
        default=None,
        help="epochs after the main ones in which only the sequence branches learn (default: "
        "TrainConfig's)",
    )
    p.add_argument(
        "--branch-slow-share",
        type=float,
        default=None,
        help="share of the branch phase's clips shown as a file at 8 or 10 fps is decoded "
        "(default: TrainConfig's)",
    )
    p.add_argument(
        "--event-epochs",
        type=int,
        default=None,
        help="epochs at the end in which only the picture's event network learns (0: the "
        "hand-made change envelope; default: TrainConfig's)",
    )
    p.add_argument(
        "--what-epochs",
        type=int,
        default=None,
        help="epochs after the event phase in which only the networks naming what a picture "
        "shows and a sound sounds learn (0: none; default: TrainConfig's)",
    )
    p.add_argument(
        "--what-vary",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the what phase's pieces drawn and heard other ways (default: TrainConfig's)",
    )
    p.add_argument(
        "--branch-in-main-epochs",
        action="store_true",
        help="train the sequence branches in the main epochs too (the recipe before 2026-11-30's)",
    )
    p.add_argument(
        "--sequence-detrend",
        type=int,
        default=None,
        help="steps of the moving average the sequence branch's steps are taken relative to "
        "(0 = off; default: the preset's)",
    )
    p.add_argument(
        "--trunk-every",
        type=int,
        default=None,
        help="the visual trunk reads every k-th frame, the sequence branch all (default: the "
        "preset's trunk frame rate)",
    )
    p.add_argument(
        "--fit",
        choices=("pad", "stretch", "crop"),
        default=None,
        help="how non-square pictures are squared (default: the preset's)",
    )
    p.add_argument(
        "--init-temperature",
        type=float,
        default=None,
        help="initial contrastive temperature (default: the preset's)",
    )
    p.add_argument(
        "--pool",
        action="append",
        default=[],
        metavar="NAME=MANIFEST",
        help="another test pool reported beside the own one, e.g. foreign=DIR/manifest.jsonl "
        "(benchmarks.foreign.render) or robust=DIR/manifest.jsonl (benchmarks.foreign.reencode); "
        "never used for training or for choosing anything (repeatable)",
    )
    p.add_argument(
        "--val-only",
        action="store_true",
        help="a probe: report the val split (where settings are chosen) and the time; the test "
        "pool and any --pool are neither decoded, evaluated nor shown, so a probe cannot show "
        "test figures before its choice is made",
    )
    args = p.parse_args(argv)
    wanted = set(args.only.split(","))
    console = Console(width=200)  # the summary table is wide; logs are not terminals
    if args.val_only and (args.pool or "curation" in wanted):
        raise SystemExit("--val-only: --pool and curation report test pools; leave them out")

    pools = other_pools(args.pool)
    manifest = ensure_corpus(
        args.corpus,
        args.train,
        args.val,
        args.test,
        args.seed,
        variety=args.variety,
        variety_share=args.variety_share,
        variety_parts=args.variety_parts,
        val_heldout=args.val_heldout,
    )
    if args.rich_captions:
        manifest = reword_corpus(args.corpus, rich_captions=True)
    items = load_manifest(manifest)
    train_val = [i for i in items if i.split in ("train", "val")]
    val_items = [i for i in train_val if i.split == "val"]
    test_items = [i for i in items if i.split == "test"]
    cache_root = args.runs / "cache"

    cached = cache_root.is_dir() and any(cache_root.glob("features-*"))
    t0 = time.perf_counter()
    prepared = prepare(train_val, "small", cache_root, fit=args.fit, fps=args.fps)
    if args.event_data is not None:
        try:
            prepared.event_extra = lent_event_clips(
                args.event_data, "small", cache_root, fit=args.fit, fps=args.fps
            )
        except ValueError as e:
            raise SystemExit(f"--event-data: {e}") from e
    if args.what_data is not None:
        if args.what_epochs == 0:
            raise SystemExit("--what-data lends clips to the what phase: --what-epochs is 0")
        try:
            prepared.what_extra = lent_clips(
                args.what_data, "small", cache_root, fit=args.fit, fps=args.fps
            )
        except ValueError as e:
            raise SystemExit(f"--what-data: {e}") from e
        if not sum(named_clips(lent) for _, lent in prepared.what_extra):
            raise SystemExit(f"--what-data: no train clip of {args.what_data} names its sources")
    prep_s = time.perf_counter() - t0
    # The pool reported: the test split, or with --val-only the val split (features and captions
    # already prepared with the training clips).
    report_items, report_prepared = val_items, prepared
    if not args.val_only:
        report_items = test_items
        report_prepared = prepare(test_items, "small", cache_root, fit=args.fit, fps=args.fps)
        report_prepared.texts.ensure(
            all_captions(examples(test_items, report_prepared.cache)), prepared.backbone.embed
        )
    console.print(f"features for {len(train_val)} train+val clips: {prep_s:.0f} s")

    def prepared_pool(pool_items: list) -> tuple[list, Any, Any]:
        """A pool's items with its features (decoded once, cached) and its captions' vectors."""
        ready = prepare(pool_items, "small", cache_root, fit=args.fit, fps=args.fps)
        ready.texts.ensure(all_captions(examples(pool_items, ready.cache)), prepared.backbone.embed)
        return pool_items, ready.cache, ready.texts

    base = TrainConfig(
        preset="small",
        epochs=args.epochs,
        device="cpu",
        text_head=args.text_head,
        embed_dim=args.embed_dim,
        **({"soft_target_temperature": args.soft_targets} if args.soft_targets is not None else {}),
        **(
            {"paraphrase_weight": args.paraphrase_weight}
            if args.paraphrase_weight is not None
            else {}
        ),
        event_inputs=args.event_inputs,
        sequence_branch=args.sequence_branch,
        trunk_every=args.trunk_every,
        **({"branch_epochs": args.branch_epochs} if args.branch_epochs is not None else {}),
        branch_in_main_epochs=args.branch_in_main_epochs,
        **(
            {"branch_slow_share": args.branch_slow_share}
            if args.branch_slow_share is not None
            else {}
        ),
        **({"event_epochs": args.event_epochs} if args.event_epochs is not None else {}),
        **({"what_epochs": args.what_epochs} if args.what_epochs is not None else {}),
        **({"what_vary": args.what_vary} if args.what_vary is not None else {}),
        init_temperature=args.init_temperature,
        sequence_detrend=args.sequence_detrend,
        **(
            {"branch_trunk_gradient": args.branch_trunk_gradient}
            if args.branch_trunk_gradient is not None
            else {}
        ),
        **({"sync_objective": args.sync_objective} if args.sync_objective else {}),
        **({"sync_temperature": args.sync_temperature} if args.sync_temperature else {}),
        **({"excerpt_weight": args.excerpt_weight} if args.excerpt_weight is not None else {}),
        **({"position_jitter": args.position_jitter} if args.position_jitter is not None else {}),
        **({"sync_weight": args.sync_weight} if args.sync_weight is not None else {}),
        **({"weights": PairWeights(*map(float, args.weights.split(",")))} if args.weights else {}),
        **(
            {"augment": named("full" if args.augment == "both" else args.augment)}
            if args.augment is not None
            else {}
        ),
    )
    runs = {
        "two-stage": TrainConfig(**{**base.__dict__, "objective": "two-stage"}),
        "single-stage": base,
        "single-stage+scav": TrainConfig(**{**base.__dict__, "scav_weight": args.scav_weight}),
    }
    split = "val" if args.val_only else "test"
    # A reused cache makes feature time near zero: say so, or the time budget claim would lie.
    results: dict[str, Any] = {
        "split": split,
        "feature_seconds": round(prep_s, 1),
        "features_cached": cached,
        "runs": {},
    }
    table = Table(
        title=f"SynthAV quality ({split} pool {len(report_items)}, {args.epochs} epochs, "
        "small preset)"
    )
    table.add_column("model")
    table.add_column("mode")
    cols = [f"{d} R@{k}" for d in DIRS for k in (1, 5, 10)] + ["twin R@1 (a→v)", "twin R@1 (v→a)"]
    for c in cols:
        table.add_column(
            c.replace("text→", "t→").replace("audio→", "a→").replace("video→", "v→"),
            justify="right",
        )

    moved_val = None
    if args.val_pool is not None:
        moved_val = prepared_pool([i for i in load_manifest(args.val_pool) if i.split == "val"])
        if not moved_val[0]:
            raise SystemExit(f"--val-pool {args.val_pool} has no val split")

    def validate(model) -> dict[str, float]:
        """Pick each run's best epoch by validation recall, never by training loss (a two-stage
        run's loss is lowest at the end of stage 1, before audio has been trained at all); on
        the --val-pool clips when given, the own val split's score logged beside it."""
        report = evaluate(model, val_items, prepared.cache, prepared.texts, modes=("pooled",))
        own = validation_score(report)
        if moved_val is None:
            return {"score": own}
        moved = validation_score(evaluate(*(model, *moved_val), modes=("pooled",)))
        return {"score": moved, "own": own}

    models = {}
    for name, cfg in runs.items():
        if name not in wanted:
            continue
        t = time.perf_counter()
        best_dir = args.runs / name / "best"
        if args.ckpt is not None:  # measured, not trained
            best_dir, result = args.ckpt, None
        else:
            result = train(prepared, cfg, args.runs / name, validate=validate)
        train_s = time.perf_counter() - t
        from models.model import TrimodalModel

        model = TrimodalModel.load(best_dir, text_backbone=prepared.backbone)
        models[name] = model
        policy = load_policy(best_dir)
        report = evaluate(
            model,
            report_items,
            report_prepared.cache,
            report_prepared.texts,
            rerank_k=args.rerank,
            policy=policy,
        )
        print_report(report, title=name)
        results["runs"][name] = {
            "train_seconds": round(train_s, 1) if result is not None else None,
            "epochs": result.epochs_done if result is not None else None,
            "val_score": round(result.best_score, 4) if result is not None else None,
            **({"ckpt": str(args.ckpt)} if args.ckpt is not None else {}),
            "report": report,
            "pools": {
                pool: evaluate(
                    model, *prepared_pool(pool_items), rerank_k=args.rerank, policy=policy
                )
                for pool, pool_items in pools.items()
            },
        }
        results["runs"][name]["search_policy"] = policy.to_dict()
        for mode in ("pooled", "hybrid", "service"):
            r = row(report, mode, policy)
            table.add_row(name, mode, *[f"{r[c]:.3f}" for c in cols])

    if "curation" in wanted and "single-stage" in models:
        results["curation"] = curation(
            args, prepared, test_items, report_prepared, models["single-stage"], base, validate
        )
    console.print(table)
    if pools:
        console.print(transfer_table(results["runs"]))
    # the claims are about the test pool; a --val-only probe states its time instead
    results["claims"] = {} if args.val_only else claims(results)
    if args.val_only and results["runs"].get("single-stage", {}).get("train_seconds"):
        minutes = (
            results["feature_seconds"] + results["runs"]["single-stage"]["train_seconds"]
        ) / 60
        console.print(f"small preset (val only): {minutes:.1f} min (features + training)")
    for claim, verdict in results["claims"].items():
        console.print(f"{claim}: {verdict}")
    results["text_head"] = args.text_head or f"preset ({preset_config('small').text.head})"
    results["train_config"] = asdict(base)
    results["fit"] = args.fit or preset_config("small").visual.fit
    results["fps"] = args.fps or preset_config("small").visual.fps
    results["val_pool"] = str(args.val_pool) if args.val_pool else "own val split"
    results["event_data"] = str(args.event_data) if args.event_data else None
    results["what_data"] = str(args.what_data) if args.what_data else None
    results["captions"] = "rich" if args.rich_captions or args.variety else "plain"
    results["variety_share"] = 1.0 if args.variety else args.variety_share
    if args.variety_share and not args.variety:
        results["variety_parts"] = args.variety_parts
    if args.val_heldout:
        results["val_heldout"] = args.val_heldout
    write_result("bench_quality" + (f"-{args.tag}" if args.tag else ""), results)
    return results


def _service_mode(direction: str, policy: SearchPolicy | None, report: dict | None = None) -> str:
    if policy is None:
        return "pooled"
    if report is not None and "service" in report.get(direction, {}):
        # measured with the policy's weights (`training.evaluate.evaluate`); text→video: the
        # picture's and the sound's indexes fused at the recorded share; text→audio: re-ranked
        # by the agreement on what is heard where the policy says
        return "service"
    if direction.startswith("text"):  # the service never re-ranks text
        return "pooled"
    return "hybrid" if policy.rerank.get(direction, False) else "pooled"


def other_pools(specs: list[str]) -> dict[str, list]:
    """NAME=MANIFEST → the manifest's items (every split: these pools are only ever tested);
    NAME=MANIFEST#SPLIT → the items of that split only (`manifest.jsonl#test`: the own test
    split, with no file of its own to write first)."""
    pools = {}
    for spec in specs:
        name, sep, where = spec.partition("=")
        if not sep or not name or name == "own":
            raise SystemExit(f"--pool wants NAME=MANIFEST[#SPLIT] (NAME not 'own'), got {spec!r}")
        path, _, split = where.partition("#")
        items = load_manifest(Path(path), [split] if split else None)
        if not items:
            raise SystemExit(
                f"--pool {spec!r}: no items" + (f" in split {split!r}" if split else "")
            )
        pools[name] = items
    return pools


def transfer_table(runs: dict[str, Any]) -> Table:
    """Each run's pooled R@1 / R@10 on the own pool and each other pool, with the share of the
    own pool's R@10 each keeps and the oracle ceiling of the text directions; text→video as the
    service's first pass answers it (the picture's and the sound's indexes fused at the recorded
    share) where the report has it."""
    table = Table(
        title="transfer: pooled R@1 / R@10 (share of own R@10) [text ceiling R@10]; "
        "text as the service searches it"
    )
    table.add_column("model")
    table.add_column("pool")
    for d in DIRS:
        table.add_column(d, justify="right")
    for name, run in runs.items():
        own = run["report"]
        for pool, report in {"own": own, **run.get("pools", {})}.items():
            cells = []
            for d in DIRS:
                mode = "service" if d.startswith("text") and "service" in own[d] else "pooled"
                m = report[d].get(mode, report[d]["pooled"])["all"]
                base = own[d][mode]["all"]["R@10"]
                share = f" ({m['R@10'] / base:.0%})" if pool != "own" and base else ""
                ceiling = report[d].get("ceiling", {}).get("all", {}).get("R@10")
                roof = f" [{ceiling:.2f}]" if ceiling is not None else ""
                cells.append(f"{m['R@1']:.3f} / {m['R@10']:.3f}{share}{roof}")
            table.add_row(name, f"{pool} ({report['pool']})", *cells)
    return table


def curation(
    args, prepared, test_items, test_prepared, scorer, base: TrainConfig, validate
) -> dict[str, Any]:
    """Score train clips with the single-stage model, keep the top 30% vs a random 30%, retrain."""
    from dataclasses import replace

    from training.datasets import load_manifest as _load

    items = {i.id: i for i in _load(args.corpus / "manifest.jsonl") if i.split == "train"}
    scored = agreement_scores(scorer, list(items.values()), prepared.cache, prepared.texts)
    kept = {
        "curated": keep_top(scored, args.keep),
        "random": random_subset(sorted(items), args.keep, seed=1),
    }
    out: dict[str, Any] = {}
    for name, ids in kept.items():
        misaligned = sum(bool(items[i].meta.get("misaligned")) for i in ids) / len(ids)
        subset = replace(prepared, train=[e for e in prepared.train if e.id in ids])
        t = time.perf_counter()
        train(subset, base, args.runs / f"subset-{name}", validate=validate)
        from models.model import TrimodalModel

        model = TrimodalModel.load(
            args.runs / f"subset-{name}" / "best", text_backbone=prepared.backbone
        )
        report = evaluate(
            model, test_items, test_prepared.cache, test_prepared.texts, modes=("pooled",)
        )
        out[name] = {
            "kept": len(ids),
            "misaligned_fraction": round(misaligned, 4),
            "train_seconds": round(time.perf_counter() - t, 1),
            "pooled": {d: report[d]["pooled"]["all"] for d in DIRS},
        }
    overall = sum(bool(i.meta.get("misaligned")) for i in items.values()) / len(items)
    out["train_misaligned_fraction"] = round(overall, 4)
    return out


def _twice(new: float, old: float) -> str:
    """Whether `new` is at least twice `old`; 0 against 0 is not (it was "x inf, holds")."""
    if old > 0:
        ratio = f"x{new / old:.2f}"
        holds = new >= 2 * old
    else:
        ratio, holds = ("x inf", True) if new > 0 else ("both zero", False)
    return f"{'holds' if holds else 'does not hold'}: {new:.3f} vs {old:.3f} ({ratio})"


def claims(results: dict[str, Any]) -> dict[str, str]:
    runs = results["runs"]
    out = {}
    if {"two-stage", "single-stage"} <= set(runs):
        one = runs["single-stage"]["report"]["audio→video"]["pooled"]["all"]["R@10"]
        two = runs["two-stage"]["report"]["audio→video"]["pooled"]["all"]["R@10"]
        out["single-stage >= 2x two-stage on audio→video R@10"] = _twice(one, two)
    for name in ("single-stage+scav", "single-stage"):
        if name in runs:
            rep = runs[name]["report"]["audio→video"]
            pooled = rep["pooled"].get("twins", {}).get("R@1", float("nan"))
            hybrid = rep["hybrid"].get("twins", {}).get("R@1", float("nan"))
            out[f"{name}: re-rank >= 2x pooled on twin R@1 (a→v)"] = _twice(hybrid, pooled)
    if "curation" in results:
        c, r = results["curation"]["curated"], results["curation"]["random"]
        cm = sum(c["pooled"][d]["R@10"] for d in DIRS) / 4
        rm = sum(r["pooled"][d]["R@10"] for d in DIRS) / 4
        out["curated > random (mean R@10 of 4 directions)"] = (
            f"{'holds' if cm > rm else 'does not hold'}: {cm:.3f} vs {rm:.3f}; misaligned kept "
            f"{c['misaligned_fraction']:.1%} vs {r['misaligned_fraction']:.1%}"
        )
    if "single-stage" in runs and runs["single-stage"]["train_seconds"] is not None:
        tv = runs["single-stage"]["report"]["text→video"]["pooled"]["all"]["R@10"]
        minutes = (results["feature_seconds"] + runs["single-stage"]["train_seconds"]) / 60
        cached = (
            " — features came from the cache: run with an empty --runs dir to time them"
            if results.get("features_cached")
            else ""
        )
        out["small preset: text→video R@10 >= 0.5 within 15 min"] = (
            f"R@10 {tv:.3f}, {minutes:.1f} min (features + training){cached}"
        )
    return out


if __name__ == "__main__":
    main()
