"""`trimodal demo`: the whole product end to end on the embedded SynthAV corpus.

corpus (generated) → a `small` model trained on it → an index of every clip → the web page.
Each step is skipped when its output is already there, so a second run starts serving at once.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console()


def demo(
    out: Annotated[
        Path, typer.Option(help="Working directory for corpus, model and index.")
    ] = Path("data/demo"),
    clips: Annotated[int, typer.Option(min=100, help="SynthAV clips to generate.")] = 400,
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs (small preset).")] = 10,
    max_minutes: Annotated[
        float,
        typer.Option(
            help="Stop the main epochs after this long (the sequence phases that follow are short)."
        ),
    ] = 4.0,
    onnx: Annotated[
        bool,
        typer.Option(
            help="Also export the query encoders to ONNX (`trimodal export-onnx`: faster audio and "
            "footage queries; ~1.5 min more on two cores, not needed at the demo's size)."
        ),
    ] = False,
    host: Annotated[str, typer.Option(help="Address to serve on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    serve: Annotated[bool, typer.Option(help="Serve the web page at the end.")] = True,
    corpus_dir: Annotated[
        Path | None, typer.Option(help="Where the corpus goes (default OUT/corpus).")
    ] = None,
    model_dir: Annotated[
        Path | None, typer.Option(help="Where the model goes (default OUT/model).")
    ] = None,
    index_dir: Annotated[
        Path | None, typer.Option(help="Where the index goes (default OUT/index).")
    ] = None,
) -> dict[str, float]:
    """Generate SynthAV, train the small preset, build the index, serve the web page."""
    from index.version import current_version
    from service import index_cli
    from training import cli as training_cli

    timings: dict[str, float] = {}
    corpus = corpus_dir or out / "corpus"
    manifest = corpus / "manifest.jsonl"
    ckpt_root = model_dir or out / "model"
    ckpt = ckpt_root / "best"
    index = index_dir or out / "index"

    t = time.perf_counter()
    if not manifest.is_file():
        console.rule("1/3 generating the SynthAV corpus")
        training_cli.synth(out=corpus, clips=clips, seed=0, val_fraction=0.1, test_fraction=0.1)
    timings["corpus_s"] = round(time.perf_counter() - t, 1)

    t = time.perf_counter()
    if not (ckpt / "config.json").is_file():
        console.rule("2/3 training the small preset")
        training_cli.train(
            data=manifest,
            out=ckpt_root,
            model_preset="small",
            epochs=epochs,
            batch_size=64,
            device="auto",
            max_minutes=max_minutes,
        )
    if onnx and not (ckpt / "onnx" / "onnx.json").is_file():
        try:  # faster query encoding in the service; torch serves just as well without it
            from models.onnx_export import export_onnx

            export_onnx(ckpt, ckpt / "onnx")
        except Exception as e:
            console.print(f"[yellow]ONNX export skipped ({e}); queries will run in torch[/yellow]")
    timings["train_s"] = round(time.perf_counter() - t, 1)

    t = time.perf_counter()
    if current_version(index) is None:
        console.rule("3/3 indexing every clip")
        index_cli.build(manifest=manifest, ckpt=ckpt, out=index)
    timings["index_s"] = round(time.perf_counter() - t, 1)
    total = sum(timings.values())
    console.print(
        f"ready in {total / 60:.1f} min (corpus {timings['corpus_s']:.0f} s, training "
        f"{timings['train_s']:.0f} s, index {timings['index_s']:.0f} s)"
    )
    console.print(
        f"try: curl -s localhost:{port}/v1/search/text -H 'content-type: application/json' "
        '-d \'{"query": "a small red ball bounces", "k": 3}\''
    )
    if serve:
        from service.cli import serve as run_server

        run_server(index=index, ckpt=ckpt, host=host, port=port)
    return timings
