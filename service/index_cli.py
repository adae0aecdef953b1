"""`trimodal index ...` and `trimodal search`: build, inspect and query index versions.

These live in `service` (the CLI root) because they read manifests (`training.datasets`), which the
`index` package must not import.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

console = Console(stderr=True)
index_app = typer.Typer(help="Build, inspect and maintain index versions.", no_args_is_help=True)


def fail_on_os_error(what: str, e: OSError, where: Path) -> typer.Exit:
    """One line on stderr for a failure of the machine (full disk, permissions, ...), not a
    traceback: what failed, the reason, and the path (or the directory it was working in)."""
    reason = (e.strerror or str(e)).rstrip(".")
    path = e.filename if e.filename is not None else where
    typer.echo(f"error: {what} failed: {reason[:1].lower()}{reason[1:]}: {path}", err=True)
    return typer.Exit(1)


def corpus_items(manifest: Path, splits: list[str] | None = None) -> list[Any]:
    from index.embed import CorpusItem
    from training.datasets import load_manifest

    items = load_manifest(manifest, splits=splits)
    out = []
    for item in items:
        title = (item.captions.get("audiovisual") or item.captions.get("visual") or (None,))[0]
        out.append(
            CorpusItem(
                id=item.id,
                media=item.media.resolve(),
                audio=item.audio.resolve() if item.video is not None and item.audio else None,
                title=title,
                meta=item.meta,
            )
        )
    return out


@index_app.command("build")
def build(
    manifest: Annotated[Path, typer.Option("--manifest", help="Corpus manifest (JSONL).")],
    ckpt: Annotated[Path, typer.Option("--ckpt", help="Model checkpoint directory.")],
    out: Annotated[Path, typer.Option("--out", help="Index root (versions + CURRENT).")],
    index_type: Annotated[
        str, typer.Option(help="auto, flat, ivf, ivfsq8, hnsw, ivfpq or a FAISS factory string.")
    ] = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    workers: Annotated[int, typer.Option(help="Decoding processes (0 = one per core).")] = 0,
    split: Annotated[
        list[str] | None, typer.Option(help="Only these manifest splits (repeatable).")
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue an interrupted build from its shards.")
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
    shard_size: Annotated[int, typer.Option(min=1, help="Items per committed shard.")] = 256,
    sequence_codec: Annotated[
        str,
        typer.Option(
            help="How per-step sequences are stored: f16, i8, pca<d>-f16 or pca<d>-i8 "
            "(e.g. pca64-i8: about 1/6 of f16's bytes at 384 dims)."
        ),
    ] = "f16",
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            help="Run the embedding on a Ray cluster: auto (the cluster this machine belongs "
            "to), HOST:PORT, ray://HOST:PORT, or local (start Ray here). Corpus, checkpoint and "
            "--out must be at the same paths on every node.",
        ),
    ] = None,
    ray_encoders: Annotated[
        int, typer.Option(min=0, help="Encoder actors on Ray (0 = one per GPU, or CPUs / 4).")
    ] = 0,
    work_dir: Annotated[
        Path | None,
        typer.Option(
            "--work-dir",
            help="Where the embedding shards go (default: INDEX/.work/<key of what is built>; "
            "removed once the version is published).",
        ),
    ] = None,
) -> dict[str, Any]:
    """Embed a corpus and publish a new index version (atomically, with checksums)."""
    from index.build import SequenceCodec, build_index
    from models.model import TrimodalModel, checkpoint_hash
    from training.trainer import resolve_device

    try:
        codec = SequenceCodec.parse(sequence_codec)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--sequence-codec") from e
    runner = None
    if ray is not None:
        from index.ray_runner import RayRunner, parse_address

        try:
            address = parse_address(ray)
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--ray") from e
        assert address is not None
        runner = RayRunner(address, ckpt, device=device, encoders=ray_encoders or None)

    items = corpus_items(manifest, split)
    if not items:
        raise typer.BadParameter("the manifest holds no items")
    model = TrimodalModel.load(ckpt, resolve_device(device))
    columns = (TextColumn("embed"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("embed", total=len(items))
            report = build_index(
                out,
                items,
                model,
                checkpoint_hash(ckpt),
                index_type=index_type,
                resume=resume,
                workers=workers or None,
                batch_size=batch_size,
                shard_size=shard_size,
                on_progress=lambda done, total: progress.update(task, completed=done),
                sequence_codec=codec,
                runner=runner,
                work_dir=work_dir,
            )
    except FileExistsError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from e
    except OSError as e:
        raise fail_on_os_error("index build", e, work_dir or out) from e
    console.print(f"published {report.version}: {report.items} items, factories {report.factories}")
    if report.resumed_shards or report.stale_shards:
        console.print(
            f"resumed: {report.resumed_shards} shard(s) reused, {report.stale_shards} embedded "
            "again (their files changed)"
        )
    if report.failed:
        console.print(f"[yellow]{len(report.failed)} file(s) skipped:[/yellow]")
        for item_id, reason in sorted(report.failed.items())[:20]:
            console.print(f"  {item_id}: {reason}")
    return {"version": report.version, "items": report.items, "failed": report.failed}


@index_app.command("add")
def add(
    manifest: Annotated[Path, typer.Option("--manifest", help="Manifest of the items to add.")],
    ckpt: Annotated[Path, typer.Option("--ckpt", help="The checkpoint the index was built with.")],
    root: Annotated[Path, typer.Option("--index", help="Index root.")],
    index_type: Annotated[
        str, typer.Option(help="auto, flat, ivf, ivfsq8, hnsw, ivfpq or a factory.")
    ] = "auto",
    workers: Annotated[int, typer.Option(help="Decoding processes (0 = one per core).")] = 0,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted add.")] = False,
    work_dir: Annotated[
        Path | None,
        typer.Option(
            "--work-dir",
            help="Where the embedding shards go (default: INDEX/.work/<key of what is built>; "
            "removed once the version is published).",
        ),
    ] = None,
) -> dict[str, Any]:
    """Publish a new version = the current one + these items (old items are not re-embedded)."""
    from index.build import add_items
    from models.model import TrimodalModel, checkpoint_hash

    items = corpus_items(manifest)
    model = TrimodalModel.load(ckpt)
    try:
        report = add_items(
            root,
            items,
            model,
            checkpoint_hash(ckpt),
            index_type=index_type,
            workers=workers or None,
            resume=resume,
            work_dir=work_dir,
        )
    except (ValueError, FileExistsError) as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from e
    except OSError as e:
        raise fail_on_os_error("index add", e, work_dir or root) from e
    console.print(
        f"published {report.version}: {report.items} items ({len(report.failed)} skipped)"
    )
    return {"version": report.version, "items": report.items, "failed": report.failed}


@index_app.command("remove")
def remove(
    root: Annotated[Path, typer.Option("--index", help="Index root.")],
    ids: Annotated[list[str], typer.Argument(help="Item ids to remove.")],
) -> dict[str, Any]:
    """Publish a new version without these items."""
    from index.build import remove_items

    return _derive("index remove", root, lambda: remove_items(root, set(ids)), KeyError)


@index_app.command("policy")
def policy(
    root: Annotated[Path, typer.Option("--index", help="Index root.")],
    ckpt: Annotated[Path, typer.Option("--ckpt", help="The checkpoint the index was built with.")],
) -> dict[str, Any]:
    """Publish a new version of the same items with the search defaults the checkpoint records
    now (after `trimodal policy`): no embedding again; a running service reloads it."""
    from index.build import adopt_policy

    derive = lambda: adopt_policy(root, ckpt)  # noqa: E731
    return _derive("index policy", root, derive, ValueError, f", the defaults of {ckpt}")


def _derive(
    what: str, root: Path, derive: Callable[[], Any], refused: type[Exception], said: str = ""
) -> dict[str, Any]:
    """Publish a version derived from the current one; one line for it, or for why not."""
    try:
        report = derive()
    except refused as e:
        console.print(f"[red]error:[/red] {e.args[0] if isinstance(e, KeyError) else e}")
        raise typer.Exit(1) from e
    except OSError as e:
        raise fail_on_os_error(what, e, root) from e
    console.print(f"published {report.version}: {report.items} items{said}")
    return {"version": report.version, "items": report.items}


@index_app.command("info")
def info(root: Annotated[Path, typer.Option("--index", help="Index root.")]) -> dict[str, Any]:
    """Show the live version: counts, dims, factories, tuned parameters, model hash."""
    from index.version import IndexVersion, list_versions

    version = IndexVersion.open(root, verify=False)
    m = version.manifest
    print(
        json.dumps(
            {"current": version.name, "versions": list_versions(root), **m}, indent=2, default=str
        )
    )
    return m


@index_app.command("verify")
def verify(
    root: Annotated[Path, typer.Option("--index", help="Index root.")],
    version: Annotated[str | None, typer.Option(help="Version (default: CURRENT).")] = None,
) -> list[str]:
    """Recompute every checksum; exit 1 if anything does not match."""
    from index.version import verify as verify_version

    problems = verify_version(root, version)
    for p in problems:
        console.print(f"[red]{p}[/red]")
    if problems:
        raise typer.Exit(1)
    console.print("ok")
    return problems


@index_app.command("gc")
def gc(
    root: Annotated[Path, typer.Option("--index", help="Index root.")],
    keep: Annotated[int, typer.Option(min=1, help="Newest versions to keep besides CURRENT.")] = 2,
    work_max_age_h: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Remove the work dirs (shards) of builds that are not running once untouched "
            "this many hours (until then they serve a --resume).",
        ),
    ] = 24.0,
) -> list[str]:
    """Delete old, unreferenced versions, the temporary dirs of builds that are not running,
    and their half-written and abandoned shards."""
    from index.version import gc as collect

    try:
        removed = collect(root, keep, work_stale_after_s=work_max_age_h * 3600)
    except OSError as e:
        raise fail_on_os_error("index gc", e, root) from e
    console.print(f"removed {len(removed)}: {', '.join(removed) or '-'}")
    return removed


def search(
    root: Annotated[Path, typer.Option("--index", help="Index root.")],
    ckpt: Annotated[Path, typer.Option("--ckpt", help="Model checkpoint directory.")],
    text: Annotated[str | None, typer.Option(help="A sentence to search for.")] = None,
    audio: Annotated[
        Path | None, typer.Option(help="An audio (or video) file: search by its sound.")
    ] = None,
    video: Annotated[
        Path | None, typer.Option(help="A video file: search by its pictures.")
    ] = None,
    target: Annotated[str, typer.Option(help="video or audio.")] = "video",
    k: Annotated[int, typer.Option(min=1, max=1000)] = 10,
    rerank_k: Annotated[int, typer.Option(min=1, max=5000)] = 100,
    rerank: Annotated[
        bool | None,
        typer.Option(
            "--rerank/--no-rerank",
            help="Force the sequence re-rank on or off (default: the index's measured default).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> dict[str, Any]:
    """Search an index from the terminal with a sentence, a sound or a piece of footage."""
    from index.query import QueryEncoder
    from index.search import Searcher
    from models.media import MediaError
    from models.model import TrimodalModel

    if sum(x is not None for x in (text, audio, video)) != 1:
        raise typer.BadParameter("give exactly one of --text, --audio, --video")
    if target not in ("video", "audio"):
        raise typer.BadParameter("--target must be video or audio")
    # The service's own query encoder: the terminal and the API encode a query exactly alike.
    encoder = QueryEncoder(TrimodalModel.load(ckpt))
    try:
        if text is not None:
            query = encoder.text(text).query
        elif audio is not None:
            query = encoder.audio(audio, landmarks=target == "audio").query
        else:
            assert video is not None
            query = encoder.video(video).query
    except MediaError as e:
        console.print(f"[red]cannot read the query file:[/red] {e.message} ({e.reason.value})")
        raise typer.Exit(2) from e
    except ValueError as e:  # an empty or over-long sentence
        raise typer.BadParameter(str(e)) from e
    searcher = Searcher.open(root)
    result = searcher.search(query, target, k=k, rerank=rerank, rerank_k=rerank_k)  # type: ignore[arg-type]
    out = {
        "version": result.version,
        "timings_ms": result.timings_ms,
        "hits": [
            {
                "id": h.id,
                "score": round(h.score, 4),
                "start_s": h.start_s,
                "end_s": h.end_s,
                "title": h.title,
                "media": h.media,
            }
            for h in result.hits
        ],
    }
    if as_json:
        print(json.dumps(out))
    else:
        table = Table(title=f"{len(result.hits)} hits from {result.version}")
        for col in ("#", "id", "score", "segment", "title"):
            table.add_column(col)
        for i, h in enumerate(result.hits, 1):
            table.add_row(
                str(i),
                h.id,
                f"{h.score:.3f}",
                f"{h.start_s:.2f}–{h.end_s:.2f} s",
                (h.title or "")[:60],
            )
        Console().print(table)
    return out


@index_app.command("backup")
def backup(
    dest: Annotated[Path, typer.Argument(help="Backup directory (empty, or an earlier backup).")],
    root: Annotated[Path, typer.Option("--index", help="Index root to back up.")],
    all_versions: Annotated[
        bool, typer.Option("--all", help="Every published version, not only the live one.")
    ] = False,
    hardlink: Annotated[
        bool,
        typer.Option(
            help="Hard-link files when DEST is on the same filesystem (fast, no extra space; "
            "a byte later flipped on disk then shows in both copies)."
        ),
    ] = False,
) -> dict[str, Any]:
    """Copy the live version and CURRENT into DEST, verified (safe while versions are published)."""
    from index.backup import BackupError
    from index.backup import backup as run_backup
    from index.version import IndexCorrupt

    try:
        report = run_backup(root, dest, all_versions=all_versions, link=hardlink)
    except (BackupError, IndexCorrupt, OSError) as e:  # OSError: no root, disk full, permissions
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from e
    out = report.as_dict()
    print(json.dumps(out))
    for name, reason in out["failed"].items():
        console.print(f"[red]{name} not backed up:[/red] {reason}")
    if out["failed"]:
        raise typer.Exit(1)
    return out


@index_app.command("restore")
def restore(
    src: Annotated[Path, typer.Argument(help="A directory written by `trimodal index backup`.")],
    root: Annotated[Path, typer.Option("--index", help="Index root to restore into.")],
    version: Annotated[
        str | None, typer.Option(help="Version to restore (default: the backup's CURRENT).")
    ] = None,
    hardlink: Annotated[
        bool, typer.Option(help="Hard-link files when SRC is on the same filesystem.")
    ] = False,
) -> dict[str, Any]:
    """Verify a backed-up version, put it into the index root and make it CURRENT atomically."""
    from index.backup import BackupError
    from index.backup import restore as run_restore
    from index.version import IndexCorrupt

    try:
        report = run_restore(src, root, version=version, link=hardlink)
    except (BackupError, IndexCorrupt, OSError) as e:  # OSError: no root, disk full, permissions
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from e
    out = report.as_dict()
    print(json.dumps(out))
    return out
