"""Training-side commands: `trimodal synth` (and, later, train / eval / curate).

Each command is a plain function with typer annotations, so tests call it with arguments directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
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
    workers: Annotated[int, typer.Option(help="Worker processes (0 = one per core).")] = 0,
    overwrite: Annotated[
        bool, typer.Option(help="Replace a corpus made with other settings.")
    ] = False,
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
            render=render,
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
