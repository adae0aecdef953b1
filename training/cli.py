"""Training-side commands: `trimodal synth` (and, later, train / eval / curate).

Each command is a plain function with typer annotations, so tests call it with arguments directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from training.synthav import CorpusSummary, GeneratorConfig, RenderConfig, generate_corpus

console = Console(stderr=True)


def synth(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the corpus into.")],
    clips: Annotated[int, typer.Option(min=1, help="Number of clips.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same corpus.")] = 0,
    duration: Annotated[float, typer.Option(help="Clip length in seconds.")] = 6.0,
    fps: Annotated[float, typer.Option(help="Video frame rate.")] = 12.0,
    height: Annotated[int, typer.Option(help="Frame height in pixels (even).")] = 128,
    width: Annotated[int, typer.Option(help="Frame width in pixels (even).")] = 128,
    sample_rate: Annotated[int, typer.Option(help="Audio sample rate.")] = 16_000,
    stereo: Annotated[bool, typer.Option(help="Stereo audio panned with the sources.")] = False,
    media_format: Annotated[
        str, typer.Option("--format", help="mp4 (h264+aac), webm (vp9+opus) or mkv (h264+flac).")
    ] = "mp4",
    val_fraction: Annotated[float, typer.Option(help="Fraction of clips in the val split.")] = 0.1,
    test_fraction: Annotated[
        float, typer.Option(help="Fraction of clips in the test split.")
    ] = 0.1,
    misaligned: Annotated[
        float, typer.Option(help="Fraction of train clips whose audio comes from another clip.")
    ] = 0.1,
    val_heldout: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Fraction of the val split forced to hold a (source, colour|size) pair of its "
            "own that no train clip holds, as a share of the test split holds the test's: model "
            "selection then sees what an untrained combination costs (0: val clips hold none).",
        ),
    ] = 0.0,
    workers: Annotated[int, typer.Option(help="Worker processes (0 = one per core).")] = 0,
    overwrite: Annotated[
        bool, typer.Option(help="Replace a corpus made with other settings.")
    ] = False,
    variety: Annotated[
        bool,
        typer.Option(
            help="Vary the rendering per clip: look, sound recipes, size, frame and sample rate, "
            "channels, container, and a larger training caption grammar (--duration still holds; "
            "--fps/--height/--width/--sample-rate/--stereo/--format are drawn per clip)."
        ),
    ] = False,
    variety_share: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Vary only this share of the train clips as --variety would (their captions "
            "plain unless --rich-captions); val and test clips stay plain, the same clips as "
            "without it.",
        ),
    ] = 0.0,
    variety_parts: Annotated[
        str,
        typer.Option(
            help="What --variety-share varies: all (look, sound, rates, container) or sound (the "
            "sound, its sample rate and channels; pictures and containers stay plain).",
        ),
    ] = "all",
    rich_captions: Annotated[
        bool | None,
        typer.Option(
            "--rich-captions/--plain-captions",
            help="The larger training caption grammar with or without --variety's media "
            "(default: with --variety only). The val and test splits keep their reserved wordings.",
        ),
    ] = None,
) -> CorpusSummary:
    """Generate a SynthAV corpus: real media files plus manifest.jsonl."""
    try:
        render = RenderConfig(
            duration_s=duration,
            fps=fps,
            height=height,
            width=width,
            sample_rate=sample_rate,
            stereo=stereo,
            format=media_format,
        )
        cfg = GeneratorConfig(
            clips=clips,
            seed=seed,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            misaligned_fraction=misaligned,
            val_heldout_fraction=val_heldout,
            render=render,
            variety=variety,
            rich_captions=rich_captions,
            variety_share=variety_share,
            variety_parts=variety_parts,
        )
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e

    columns = (TextColumn("synth"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("clips", total=clips)
            summary = generate_corpus(
                out,
                cfg,
                workers=workers or None,
                overwrite=overwrite,
                on_progress=lambda done, total: progress.update(task, completed=done),
            )
    except (FileExistsError, NotADirectoryError, PermissionError) as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from e
    print_summary(summary)
    return summary


def print_summary(summary: CorpusSummary) -> None:
    table = Table(title=f"SynthAV corpus in {summary.out_dir}")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("clips", str(summary.clips))
    for split, n in summary.splits.items():
        table.add_row(f"  {split}", str(n))
    for flag, n in summary.flags.items():
        table.add_row(f"  {flag}", str(n))
    table.add_row("written this run", str(summary.written))
    table.add_row("seconds", f"{summary.seconds:.1f}")
    table.add_row("held-out pairs", ", ".join("/".join(p) for p in summary.heldout))
    table.add_row("manifest", str(summary.manifest))
    Console().print(table)


# -- train / eval / curate ------------------------------------------------------------------------


def _cache_root(data: Path, cache: Path | None) -> Path:
    return cache if cache is not None else data.parent / ".trimodal-cache"


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def _prepare(items, model_preset: str, cache_root: Path, workers: int | None, fit=None, fps=None):
    from training.trainer import prepare

    with _progress() as progress:
        tasks: dict[str, TaskID] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total or 1)
            progress.update(tasks[stage], completed=done)

        prepared = prepare(
            items, model_preset, cache_root, workers, on_progress=update, fit=fit, fps=fps
        )
    if prepared.skipped:
        console.print(
            f"[yellow]skipped {len(prepared.skipped)} file(s) that failed to decode:[/yellow]"
        )
        for item_id, reason in sorted(prepared.skipped.items())[:20]:
            console.print(f"  {item_id}: {reason}")
    return prepared


def train(
    data: Annotated[
        Path, typer.Option("--data", help="Manifest (JSONL) with train and val items.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Checkpoint directory to write.")],
    model_preset: Annotated[str, typer.Option("--preset", help="tiny, small or base.")] = "small",
    objective: Annotated[str, typer.Option(help="single-stage or two-stage.")] = "single-stage",
    scav_weight: Annotated[
        float, typer.Option(help="Weight of the SCAV sequence loss (0 = off).")
    ] = 0.0,
    epochs: Annotated[int, typer.Option(min=1)] = 8,
    batch_size: Annotated[int, typer.Option(min=2)] = 64,
    lr: Annotated[float, typer.Option()] = 2e-3,
    seed: Annotated[int, typer.Option()] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    max_minutes: Annotated[float | None, typer.Option(help="Stop cleanly after this long.")] = None,
    text_head: Annotated[
        str | None,
        typer.Option(
            help="Text projection: mlp, linear, residual or identity (default: the preset's)."
        ),
    ] = None,
    paraphrase_weight: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Weight of the paraphrase loss: two wordings of a clip's caption embed together "
            "(needs a trainable --text-head; 0 = off).",
        ),
    ] = 0.0,
    embed_dim: Annotated[
        int | None, typer.Option(help="Shared dimension (default: the preset's).")
    ] = None,
    sync_weight: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Weight of the audio–visual timing objective that teaches the sequence heads "
            "when things happen (0 = off; default: TrainConfig's, 1).",
        ),
    ] = None,
    excerpt_weight: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Weight of the excerpt objective: a piece of a clip, encoded alone, lands on the "
            "clip's steps at the same times (0 = off; default: TrainConfig's, 0.25).",
        ),
    ] = None,
    branch_epochs: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Epochs after the main ones in which only the sequence branches learn, on the "
            "best epoch's settled encoders; the main epochs then leave the branches out unless "
            "--branch-in-main-epochs (0: the main epochs train them; default: TrainConfig's).",
        ),
    ] = None,
    event_epochs: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Epochs at the end in which only the picture's event network learns, from each "
            "clip's own sound; the model then matches pictures by its envelope (0: the "
            "hand-made change envelope, no network; default: TrainConfig's).",
        ),
    ] = None,
    what_epochs: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Epochs after the event phase in which only the networks naming the sources a "
            "picture shows and a sound sounds (kind and size) learn, from the clips' SynthAV "
            "metadata; searches then weigh how far a query's and an item's agree where the "
            "search policy measured it helps (0: no networks; default: TrainConfig's).",
        ),
    ] = None,
    what_vary: Annotated[
        bool | None,
        typer.Option(
            "--what-vary/--no-what-vary",
            help="Show the what networks each piece drawn and heard another way that keeps its "
            "sources' kind and size (colours, light, noise, focus; the band's tilt, a noise "
            "floor, a low sample rate's cut-off; default: TrainConfig's).",
        ),
    ] = None,
    text_attributes: Annotated[
        bool | None,
        typer.Option(
            "--text-attributes/--no-text-attributes",
            help="After the what phase, fit readers of the attributes a caption names (from the "
            "frozen tower's words) and a picture shows (from its pooled vector), from the clips' "
            "SynthAV metadata; text queries searching videos then lean on them where the search "
            "policy measured it helps (default: TrainConfig's).",
        ),
    ] = None,
    branch_in_main_epochs: Annotated[
        bool,
        typer.Option(
            "--branch-in-main-epochs",
            help="Train the sequence branches in the main epochs too, before the branch phase.",
        ),
    ] = False,
    position_jitter: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Training positions start at a random step below this, so a step's embedding "
            "does not say where the input began (0 = off; default: TrainConfig's, 24).",
        ),
    ] = None,
    event_inputs: Annotated[
        bool | None,
        typer.Option(
            help="Sound onsets and picture changes as explicit encoder inputs (default: the "
            "preset's)."
        ),
    ] = None,
    init_temperature: Annotated[
        float | None,
        typer.Option(
            min=1e-4,
            max=1.0,
            help="Initial contrastive temperature; the learned logit scales start at its "
            "inverse (default: the preset's).",
        ),
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/last.")] = False,
    cache: Annotated[
        Path | None, typer.Option(help="Cache directory (default: beside the manifest).")
    ] = None,
    workers: Annotated[int, typer.Option(help="Decoding processes (0 = one per core).")] = 0,
    augment: Annotated[
        str,
        typer.Option(
            help="How each training clip is shown and played another way every epoch: 'level' "
            "(the sound's recording level only), 'band' (the level, and a share of the sounds "
            "band-limited as a low sample rate leaves them), 'full' (crops, light, blur, noise; "
            "gain, EQ, band-limiting, reverb, noise), 'audio' or 'visual' (full, one stream) or "
            "'none'."
        ),
    ] = "level",
    fit: Annotated[
        str | None,
        typer.Option(
            help="How non-square pictures become square: pad, stretch or crop (default: the "
            "preset's). Recorded in the checkpoint; indexing and queries decode the same way."
        ),
    ] = None,
    fps: Annotated[
        float | None,
        typer.Option(
            help="Frames a second the visual encoder samples (default: the preset's; a multiple "
            "of its steps per second). Recorded in the checkpoint; indexing and queries sample "
            "the same way."
        ),
    ] = None,
    trunk_every: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="The shared visual encoder reads every k-th frame, the sequence branch all "
            "(default: the preset's, 3 of 12 fps; it must divide the frames per step, so e.g. "
            "--fps 8 needs --trunk-every 1 or 2).",
        ),
    ] = None,
    val_data: Annotated[
        Path | None,
        typer.Option(
            "--val-data",
            help="Pick the best epoch on this manifest's val split instead of --data's: clips "
            "and wordings unlike the training ones (e.g. `trimodal synth --variety`), so that "
            "best means best on media the model did not train on.",
        ),
    ] = None,
    event_data: Annotated[
        Path | None,
        typer.Option(
            "--event-data",
            help="More clips for the picture event network alone: this manifest's train split "
            "(its captions unused: each clip's sound teaches its picture), e.g. a `trimodal "
            "synth --variety` corpus, so that the network meets pictures drawn other ways.",
        ),
    ] = None,
    what_data: Annotated[
        Path | None,
        typer.Option(
            "--what-data",
            help="More clips for the what networks alone: this manifest's train split, whose "
            "SynthAV metadata names each clip's sources (e.g. a `trimodal synth --variety` "
            "corpus), so that they learn kinds and sizes drawn and synthesised other ways.",
        ),
    ] = None,
) -> dict:
    """Train trimodal encoders with contrastive learning; write best/ and last/ checkpoints."""
    from dataclasses import replace as replace_config

    from training.augment import named
    from training.datasets import ManifestError, load_manifest
    from training.evaluate import evaluate, validation_score
    from training.trainer import TrainConfig
    from training.trainer import train as run_training

    try:
        augmentation = named(augment)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--augment") from None
    try:
        cfg = TrainConfig(
            preset=model_preset,
            objective=objective,  # type: ignore[arg-type]
            scav_weight=scav_weight,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            device=device,
            max_minutes=max_minutes,
            text_head=text_head,
            embed_dim=embed_dim,
            augment=augmentation,
            paraphrase_weight=paraphrase_weight,
            event_inputs=event_inputs,
            trunk_every=trunk_every,
        )
        defaults = cfg
        cfg = replace_config(
            cfg,
            sync_weight=defaults.sync_weight if sync_weight is None else sync_weight,
            excerpt_weight=defaults.excerpt_weight if excerpt_weight is None else excerpt_weight,
            branch_epochs=defaults.branch_epochs if branch_epochs is None else branch_epochs,
            branch_in_main_epochs=branch_in_main_epochs,
            event_epochs=defaults.event_epochs if event_epochs is None else event_epochs,
            what_epochs=defaults.what_epochs if what_epochs is None else what_epochs,
            what_vary=defaults.what_vary if what_vary is None else what_vary,
            text_attributes=defaults.text_attributes
            if text_attributes is None
            else text_attributes,
            init_temperature=init_temperature,
            position_jitter=defaults.position_jitter
            if position_jitter is None
            else position_jitter,
        )
        if fit not in (None, "pad", "stretch", "crop"):
            raise ValueError(f"--fit must be pad, stretch or crop, got {fit!r}")
        if what_data is not None and cfg.what_epochs == 0:
            # its clips would be decoded for a phase that does not run
            raise ValueError("--what-data lends clips to the what phase: --what-epochs is 0")
        if fps is not None:
            from dataclasses import replace

            from models.config import preset

            base = preset(model_preset)
            every = base.visual.trunk_every if trunk_every is None else trunk_every
            # raises if the grid cannot hold it
            replace(base, visual=replace(base.visual, fps=fps, trunk_every=every))
        items = load_manifest(data, splits=("train", "val"))
    except (ValueError, ManifestError, FileNotFoundError) as e:
        raise typer.BadParameter(str(e)) from e
    prepared = _prepare(items, model_preset, _cache_root(data, cache), workers or None, fit, fps)
    if len(prepared.train) < batch_size:
        raise typer.BadParameter(
            f"only {len(prepared.train)} usable train items; need >= batch size {batch_size}"
        )
    if event_data is not None:
        prepared.event_extra = _event_clips(
            event_data, model_preset, _cache_root(event_data, cache), workers or None, fit, fps
        )
    if what_data is not None:
        from training.what_phase import named_clips

        prepared.what_extra = _lent(
            "--what-data",
            what_data,
            model_preset,
            _cache_root(what_data, cache),
            workers or None,
            fit,
            fps,
        )
        naming = sum(named_clips(lent) for _, lent in prepared.what_extra)
        if not naming:
            raise typer.BadParameter(
                f"no train clip of {what_data} names its sources (SynthAV metadata: each "
                "source's kind and size, and the sources its sound holds)",
                param_hint="--what-data",
            )
        console.print(f"--what-data: {naming} clips name their sources")
    val_items = [i for i in items if i.split == "val"]
    val_cache, val_texts = prepared.cache, prepared.texts
    if val_data is not None:
        try:
            val_items = load_manifest(val_data, splits=("val",))
        except (ManifestError, FileNotFoundError) as e:
            raise typer.BadParameter(str(e)) from e
        if not val_items:
            raise typer.BadParameter(f"--val-data {val_data} has no val split")
        unlike = _prepare(
            val_items, model_preset, _cache_root(val_data, cache), workers or None, fit, fps
        )
        val_cache, val_texts = unlike.cache, unlike.texts

    def validate(model) -> dict[str, float]:
        if not val_items:
            return {}
        report = evaluate(model, val_items, val_cache, val_texts, modes=("pooled",))
        return {"score": validation_score(report)}

    steps = max(1, len(prepared.train) // batch_size) * epochs
    with _progress() as progress:
        task = progress.add_task("train", total=steps)
        result = run_training(
            prepared,
            cfg,
            out,
            resume=resume,
            validate=validate,
            on_step=lambda epoch, step, parts: progress.update(
                task, completed=step, description=f"train e{epoch} loss {parts['loss']:.3f}"
            ),
        )
    table = Table(title=f"training → {out}")
    for col in ("epoch", "loss", "val score", "seconds"):
        table.add_column(col, justify="right")
    for rec in result.history:
        table.add_row(
            str(rec["epoch"]),
            f"{rec.get('loss', float('nan')):.3f}",
            f"{rec.get('val_score', float('nan')):.3f}",
            str(rec["seconds"]),
        )
    Console().print(table)
    return {"best": result.best_score, "history": result.history, "seconds": result.seconds}


def _event_clips(
    manifest: Path,
    model_preset: str,
    cache_root: Path,
    workers: int | None,
    fit: str | None,
    fps: float | None,
) -> list:
    """`--event-data` as the event phase's (cache, ids) sources."""
    lent = _lent("--event-data", manifest, model_preset, cache_root, workers, fit, fps)
    return [(cache, [i.id for i in items]) for cache, items in lent]


def _lent(
    option: str,
    manifest: Path,
    model_preset: str,
    cache_root: Path,
    workers: int | None,
    fit: str | None,
    fps: float | None,
) -> list:
    """A lent manifest's train split as (cache, items) sources, decoding with progress; clips
    that fail to decode are reported and left out."""
    from training.datasets import ManifestError
    from training.trainer import lent_clips

    with _progress() as progress:
        task = progress.add_task(f"decode ({option} clips)", total=None)
        try:
            lent = lent_clips(
                manifest,
                model_preset,
                cache_root,
                workers,
                fit,  # type: ignore[arg-type]
                fps,
                on_progress=lambda n, t: progress.update(task, completed=n, total=t),
            )
        except (ManifestError, FileNotFoundError, ValueError) as e:
            raise typer.BadParameter(str(e), param_hint=option) from e
    for cache, _ in lent:
        for item_id, why in cache.skipped.items():
            console.print(f"{option}: skipped {item_id}: {why}")
    return lent


def _load_for_eval(ckpt: Path, items, cache_root: Path, workers: int | None):
    from models.model import TrimodalModel
    from models.text import TextBackbone
    from training.batches import all_captions, examples
    from training.cache import DecodeSpec, FeatureCache, TextCache
    from training.trainer import resolve_device

    model = TrimodalModel.load(ckpt, resolve_device("auto"))
    with _progress() as progress:
        task = progress.add_task("decode", total=len(items))
        cache = FeatureCache.build(
            items,
            DecodeSpec.for_model(model.cfg),
            cache_root,
            workers,
            on_progress=lambda n, t: progress.update(task, completed=n),
        )
    texts = TextCache(cache_root, f"{model.cfg.text.model}|{model.cfg.text.max_length}")
    backbone: TextBackbone = model.text.backbone
    texts.ensure(all_captions(examples(items, cache)), backbone.embed)
    return model, cache, texts


def evaluate_command(
    ckpt: Annotated[Path, typer.Option("--ckpt", help="Checkpoint directory.")],
    data: Annotated[Path, typer.Option("--data", help="Manifest (JSONL).")],
    split: Annotated[str, typer.Option(help="Split to evaluate on.")] = "test",
    rerank: Annotated[int, typer.Option(help="Hybrid retrieval: re-rank the pooled top K.")] = 100,
    distance: Annotated[str, typer.Option(help="interp, softdtw, dtw or wasserstein.")] = "interp",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON line instead of a table.")
    ] = False,
    cache: Annotated[
        Path | None, typer.Option(help="Cache directory (default: beside the manifest).")
    ] = None,
    workers: Annotated[int, typer.Option(help="Decoding processes (0 = one per core).")] = 0,
) -> dict:
    """Recall@1/5/10 and median rank in four directions, pooled and hybrid, with oracle ceilings."""
    import json

    from training.datasets import load_manifest
    from training.evaluate import evaluate

    items = load_manifest(data, splits=(split,))
    if not items:
        raise typer.BadParameter(f"no items in split {split!r}")
    model, feature_cache, texts = _load_for_eval(
        ckpt, items, _cache_root(data, cache), workers or None
    )
    report = evaluate(model, items, feature_cache, texts, rerank_k=rerank, distance=distance)
    if as_json:
        print(json.dumps(report))
    else:
        print_report(report)
    return report


def policy_command(
    ckpt: Annotated[Path, typer.Option("--ckpt", help="Checkpoint directory to record into.")],
    data: Annotated[Path, typer.Option("--data", help="Manifest (JSONL) with a val split.")],
    split: Annotated[str, typer.Option(help="Split to measure on (never a test split).")] = "val",
    cache: Annotated[
        Path | None, typer.Option(help="Cache directory (default: beside the manifest).")
    ] = None,
    workers: Annotated[int, typer.Option(help="Decoding processes (0 = one per core).")] = 0,
) -> dict:
    """Measure a checkpoint's search defaults again on a val split (searched among the train
    split's clips) and record them beside its weights, as training does at its end: after an
    upgrade changed how the search scores, no training again. Indexes keep the defaults they
    were built with until built again."""
    from models.attributes import HEARD
    from models.policy import DIRECTIONS, SHORT_QUERY_S, WHOLE_QUERY_S, SearchPolicy, save_policy
    from training.datasets import ManifestError, load_manifest
    from training.search_policy import distractors_for, measure_policy

    if split == "test":
        raise typer.BadParameter("defaults are chosen on a val split, never on the test split")
    try:
        items = load_manifest(data, splits=(split,))
    except (ManifestError, FileNotFoundError) as e:
        raise typer.BadParameter(str(e)) from e
    if not items:
        raise typer.BadParameter(f"no items in split {split!r} of {data}")
    # searched among training clips, as the trainer measures
    others = [i for i in load_manifest(data, splits=("train",)) if i.split != split]
    distractors = distractors_for(items, others)
    model, feature_cache, texts = _load_for_eval(
        ckpt, items + distractors, _cache_root(data, cache), workers or None
    )
    before = model.search_policy
    # as the trainer records it: no objective puts the steps in the text space
    after = measure_policy(
        model,
        items,
        feature_cache,
        texts,
        before.sequence_trained,
        text_segments=False,
        distractors=distractors,
    )
    save_policy(ckpt, after)
    table = Table(
        title=f"search defaults of {ckpt} (measured on {len(items)} {split} clips among "
        f"{len(items) + len(distractors)})"
    )
    for col in ("direction", "queries", "before", "now"):
        table.add_column(col)

    def tiers(policy: SearchPolicy) -> dict[str, SearchPolicy | None]:
        return {
            f"≥ {WHOLE_QUERY_S:g} s": policy.whole,
            "the others": policy,
            f"< {SHORT_QUERY_S:g} s": policy.short,
        }

    def _chosen(policy: SearchPolicy, direction: str) -> str:
        """A tier's choice for one direction, as `trimodal policy` lists it: the re-rank's weighting
        and the sources' weight where one is weighed in."""
        chosen = str(policy.evidence.get(direction, {}).get("chosen", "off"))
        what = policy.what_weight.get(direction)
        return chosen if what is None else f"{chosen}, sources {what:g}"

    for d in DIRECTIONS:
        for (name, old), new in zip(tiers(before).items(), tiers(after).values(), strict=True):
            table.add_row(
                d,
                name,
                "-" if old is None else _chosen(old, d),
                "-" if new is None else _chosen(new, d),
            )

    def share(policy: SearchPolicy) -> str:
        return f"audio share {policy.text_video_weights().get('audio', 0.0):g}"

    def leaning(policy: SearchPolicy) -> str:
        names, weight = policy.text_lean()
        return f"{', '.join(names)} × {weight:g}" if names else "none"

    table.add_row("text→video", "all", share(before), share(after))

    def agreeing(policy: SearchPolicy) -> str:
        weight = policy.text_agreement()
        names = ", ".join(policy.agreement_attributes())
        return f"{names} × {weight:g}" if weight > 0 else "none"

    table.add_row("text→video", "leans on", leaning(before), leaning(after))
    table.add_row("text→video", "readers' agreement", agreeing(before), agreeing(after))

    def hearing(policy: SearchPolicy) -> str:
        weight = policy.heard_agreement()
        nouns = ", kinds at the nouns" if policy.text_heard_nouns else ""
        nouns += " (a second by its lead)" if nouns and policy.text_heard_lead else ""
        nouns += ", else its sound words" if nouns and policy.text_heard_sound_words else ""
        return f"{', '.join(HEARD)} heard × {weight:g}{nouns}" if weight > 0 else "none"

    table.add_row("text→audio", "readers' agreement", hearing(before), hearing(after))
    Console().print(table)
    return after.to_dict()


def print_report(report: dict, title: str = "retrieval") -> None:
    table = Table(title=f"{title} (pool {report['pool']})")
    for col in ("direction", "mode", "subset", "R@1", "R@5", "R@10", "MdR", "n", "ceiling R@10"):
        table.add_column(col, justify="left" if col in ("direction", "mode", "subset") else "right")
    for direction, modes in report.items():
        if direction == "pool" or not modes:
            continue
        ceiling = modes.get("ceiling", {})
        for mode in ("pooled", "hybrid"):
            for subset, m in modes.get(mode, {}).items():
                ceil = ceiling.get(subset, {}).get("R@10")
                table.add_row(
                    direction,
                    mode,
                    subset,
                    f"{m['R@1']:.3f}",
                    f"{m['R@5']:.3f}",
                    f"{m['R@10']:.3f}",
                    f"{m['MdR']:.0f}",
                    str(m["n"]),
                    f"{ceil:.3f}" if ceil is not None else "-",
                )
    Console().print(table)


def curate(
    ckpt: Annotated[Path, typer.Option("--ckpt", help="Checkpoint used to score the clips.")],
    data: Annotated[Path, typer.Option("--data", help="Manifest to filter.")],
    out: Annotated[Path, typer.Option("--out", help="Filtered manifest to write.")],
    keep: Annotated[float, typer.Option(help="Fraction of train clips to keep.")] = 0.3,
    random_baseline: Annotated[
        bool, typer.Option("--random", help="Keep a random subset instead.")
    ] = False,
    seed: Annotated[int, typer.Option()] = 0,
    cache: Annotated[
        Path | None, typer.Option(help="Cache directory (default: beside the manifest).")
    ] = None,
    workers: Annotated[int, typer.Option(help="Decoding processes (0 = one per core).")] = 0,
) -> dict:
    """Keep the train clips whose audio best agrees with their captions (LG-CAV-MAE)."""
    import json
    import os

    from training.curate import agreement_scores, keep_top, random_subset
    from training.datasets import load_manifest, write_manifest

    items = load_manifest(data)
    train_items = [i for i in items if i.split == "train"]
    if random_baseline:
        kept = random_subset([i.id for i in train_items], keep, seed)
        scores: dict[str, float] = {}
    else:
        model, feature_cache, texts = _load_for_eval(
            ckpt, train_items, _cache_root(data, cache), workers or None
        )
        scored = agreement_scores(model, train_items, feature_cache, texts)
        kept = keep_top(scored, keep)
        scores = {s.id: s.score for s in scored}
    records = []
    with open(data, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            record = json.loads(line)
            if record.get("split", "train") == "train" and record["id"] not in kept:
                continue
            for key in ("video", "audio"):
                if record.get(key):
                    absolute = (data.parent / record[key]).resolve()
                    record[key] = os.path.relpath(absolute, out.parent.resolve())
            if record["id"] in scores:
                record.setdefault("meta", {})["curation_score"] = scores[record["id"]]
            records.append(record)
    write_manifest(records, out)
    console.print(f"kept {len(kept)} of {len(train_items)} train clips → {out}")
    return {"kept": sorted(kept), "scores": scores}
