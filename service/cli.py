"""The `trimodal` command-line root. It mounts the training and index commands."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from service import demo, index_cli
from training import cli as training_cli

# Nothing is ever fetched from a model hub at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

console = Console()
app = typer.Typer(
    name="trimodal",
    help="Cross-modal search for video and sound: text, audio and visual queries in one space.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
app.command("synth")(training_cli.synth)
app.command("train")(training_cli.train)
app.command("eval")(training_cli.evaluate_command)
app.command("policy")(training_cli.policy_command)
app.command("curate")(training_cli.curate)
app.add_typer(index_cli.index_app, name="index")
app.command("search")(index_cli.search)
app.command("demo")(demo.demo)


@app.command("export-onnx")
def export_onnx_command(
    ckpt: Annotated[Path, typer.Option("--ckpt", help="Model checkpoint directory.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Where to write (default: CKPT/onnx).")
    ] = None,
) -> dict:
    """Export the text, audio and visual query encoders to ONNX (the service uses them when they
    sit in CKPT/onnx)."""
    from models.onnx_export import export_onnx

    target = out or ckpt / "onnx"
    manifest = export_onnx(ckpt, target)
    console.print(f"exported to {target}: {', '.join(manifest['files'])}")
    return manifest


@app.command("serve")
def serve(
    index: Annotated[Path, typer.Option("--index", help="Index root (versions + CURRENT).")],
    ckpt: Annotated[Path, typer.Option("--ckpt", help="The checkpoint the index was built with.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, help="Server processes (each loads the model and the index).")
    ] = 1,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "cpu",
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
    http: Annotated[
        str, typer.Option(help="HTTP parser: auto (httptools when installed), h11, httptools.")
    ] = "auto",
) -> None:
    """Serve the search API and the web page (other settings: TRIMODAL_* environment variables)."""
    from pydantic import ValidationError

    from service import server
    from service.settings import Settings

    try:  # validate now, with a readable message, before any worker starts
        Settings(index=index, ckpt=ckpt, device=device)
    except ValidationError as e:
        raise typer.BadParameter(str(e)) from e
    os.environ.update(
        {
            "TRIMODAL_INDEX": str(index),
            "TRIMODAL_CKPT": str(ckpt),
            "TRIMODAL_DEVICE": device,
            "TRIMODAL_LOG_LEVEL": log_level,
        }
    )
    if workers > 1:
        # each process counts only its own searches: lending idle cores from several would
        # overcommit them (`models.spare`); the processes share the cores instead
        os.environ.setdefault("TRIMODAL_SPARE_THREADS", "0")
    try:
        protocol = server.http_protocol(http)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    console.print(f"trimodal: http://{host}:{port}/  (API docs: http://{host}:{port}/docs)")
    server.run(host, port, workers, log_level, protocol)


@app.callback()
def _root() -> None:
    """Cross-modal search for video and sound: text, audio and visual queries in one space."""


def main() -> None:
    app()


if __name__ == "__main__":
    main()
