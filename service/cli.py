"""The `trimodal` command-line root. It mounts the training and index commands."""

from __future__ import annotations

import os

import typer

from service import index_cli
from training import cli as training_cli

# Nothing is ever fetched from a model hub at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

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
app.command("curate")(training_cli.curate)
app.add_typer(index_cli.index_app, name="index")
app.command("search")(index_cli.search)


@app.callback()
def _root() -> None:
    """Cross-modal search for video and sound: text, audio and visual queries in one space."""


def main() -> None:
    app()


if __name__ == "__main__":
    main()
