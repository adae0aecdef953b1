"""Work directories of `index build` / `index add`: keyed by what they build, resumable, removed on
publish; a replaced file is embedded again on resume; gc of dead shards; ENOSPC as one line."""

from __future__ import annotations

import errno
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer

from index.build import build_index
from index.embed import WorkDirBusy, default_work_dir, embed_corpus, hold_work_dir
from index.version import IndexVersion, gc
from models.model import TrimodalModel, checkpoint_hash
from service import index_cli
from tests.index import test_build_search as build_tests

# The tiny SynthAV corpus and tiny-preset checkpoint of the build/search tests (module scoped).
corpus = build_tests.corpus
ckpt = build_tests.ckpt


def write_manifest(path: Path, corpus: Path, ids: list[str]) -> Path:
    """A manifest of some of the corpus's clips, in the given order (paths stay absolute)."""
    import json

    lines = [json.loads(x) for x in (corpus / "manifest.jsonl").read_text().splitlines()]
    by_id = {x["id"]: x for x in lines}
    with open(path, "w") as f:
        for i in ids:
            row = dict(by_id[i])
            for key in ("video", "audio"):
                if row.get(key):
                    row[key] = str((corpus / row[key]).resolve())
            f.write(json.dumps(row) + "\n")
    return path


def clip_ids(corpus: Path) -> list[str]:
    return [i.id for i in index_cli.corpus_items(corpus / "manifest.jsonl")]


def vectors(root: Path) -> dict[str, np.ndarray]:
    """Every item's stored visual and audio steps, by id."""
    v = IndexVersion.open(root)
    out = {}
    for row, item_id in enumerate(v.items().ids()):
        out[item_id] = np.concatenate(
            [np.asarray(v.sequences(m).get(row), np.float32).ravel() for m in ("visual", "audio")]
        )
    return out


def test_two_successive_adds_of_different_items_both_succeed(corpus, ckpt, tmp_path):
    ids = clip_ids(corpus)
    root = tmp_path / "root"
    index_cli.build(
        manifest=write_manifest(tmp_path / "base.jsonl", corpus, ids[:4]),
        ckpt=ckpt,
        out=root,
        workers=1,
    )
    first = index_cli.add(
        manifest=write_manifest(tmp_path / "a.jsonl", corpus, ids[4:6]),
        ckpt=ckpt,
        root=root,
        workers=1,
    )
    second = index_cli.add(
        manifest=write_manifest(tmp_path / "b.jsonl", corpus, ids[6:8]),
        ckpt=ckpt,
        root=root,
        workers=1,
    )
    assert (first["items"], second["items"]) == (6, 8)
    assert IndexVersion.open(root).items().ids() == ids[:8]
    assert list((root / ".work").iterdir()) == []  # each removed its work dir once published


def test_a_changed_manifest_with_resume_builds_it_beside_a_killed_builds_shards(
    corpus, ckpt, tmp_path
):
    """The Docker indexer always passes --resume: a new corpus must build, and correctly, while
    an earlier build's shards (as a kill leaves them) stay, still resumable."""
    ids = clip_ids(corpus)
    model, h = TrimodalModel.load(ckpt), checkpoint_hash(ckpt)
    root = tmp_path / "root"
    old_items = index_cli.corpus_items(write_manifest(tmp_path / "old.jsonl", corpus, ids[:5]))
    old_work = default_work_dir(root, old_items, 256, h, "build")
    embed_corpus(old_items, model, h, old_work, workers=1)  # killed before it could publish
    old_shards = {p: p.stat().st_mtime_ns for p in old_work.glob("shards/*.npz")}

    manifest = write_manifest(tmp_path / "new.jsonl", corpus, ids[3:9])
    out = index_cli.build(manifest=manifest, ckpt=ckpt, out=root, workers=1, resume=True)
    fresh = tmp_path / "fresh"
    build_index(fresh, index_cli.corpus_items(manifest), model, h, workers=1)
    assert out["items"] == 6
    got, want = vectors(root), vectors(fresh)
    assert list(got) == list(want) == ids[3:9]
    for item_id in want:
        np.testing.assert_array_equal(got[item_id], want[item_id])
    assert {p: p.stat().st_mtime_ns for p in old_work.glob("shards/*.npz")} == old_shards
    assert sorted((root / ".work").iterdir()) == [old_work]


def test_resume_embeds_a_replaced_file_again(corpus, ckpt, tmp_path):
    """Same path, other content: resume must not publish the old vectors, only that item's shard
    is embedded again, and the result equals a fresh build of the corpus as it is now."""
    work_corpus = tmp_path / "corpus"
    shutil.copytree(corpus, work_corpus)
    items = [i for i in build_tests.items_of(work_corpus) if i.id not in ("broken", "notes")][:6]
    model, h = TrimodalModel.load(ckpt), checkpoint_hash(ckpt)
    root = tmp_path / "root"
    work = default_work_dir(root, items, 2, h, "build")
    embed_corpus(items, model, h, work, shard_size=2, workers=1)  # then killed
    build_index(tmp_path / "before", items, model, h, shard_size=2, workers=1)
    stale = vectors(tmp_path / "before")[items[3].id]

    shutil.copyfile(items[0].media, items[3].media)  # replaced under the same path
    report = build_index(root, items, model, h, shard_size=2, resume=True, workers=1)
    assert (report.resumed_shards, report.stale_shards) == (2, 1)
    fresh = tmp_path / "fresh"
    build_index(fresh, items, model, h, shard_size=2, workers=1)
    got, want = vectors(root), vectors(fresh)
    for item_id in want:
        np.testing.assert_array_equal(got[item_id], want[item_id])
    assert got[items[3].id].shape != stale.shape or not np.array_equal(got[items[3].id], stale)
    np.testing.assert_array_equal(got[items[3].id], got[items[0].id])


def test_explicit_work_dir_is_used_and_cleaned_but_another_builds_is_refused(
    corpus, ckpt, tmp_path
):
    ids = clip_ids(corpus)
    model, h = TrimodalModel.load(ckpt), checkpoint_hash(ckpt)
    items = index_cli.corpus_items(write_manifest(tmp_path / "m.jsonl", corpus, ids[:3]))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's own file")
    build_index(tmp_path / "root", items, model, h, work_dir=mine, workers=1)
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]  # ours gone, theirs kept

    embed_corpus(items[:2], model, h, mine, workers=1)  # another build's shards
    with pytest.raises(FileExistsError, match="another build's shards"):
        build_index(tmp_path / "root", items, model, h, work_dir=mine, workers=1, resume=True)
    with pytest.raises(FileExistsError, match="use --resume"):  # the same build, not resumed
        build_index(tmp_path / "r2", items[:2], model, h, work_dir=mine, workers=1)


def _hold(work: Path, held: Any, release: Any) -> None:
    with hold_work_dir(work):
        held.set()
        release.wait(30)


def test_a_running_build_keeps_its_work_dir_to_itself(tmp_path):
    """Another process (this one's own holds are re-entrant) cannot take a held work dir, and
    can once that process ends."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")  # the child only takes a lock: no torch in it
    work = tmp_path / ".work" / "k"
    held, release = ctx.Event(), ctx.Event()
    other = ctx.Process(target=_hold, args=(work, held, release))
    other.start()
    try:
        assert held.wait(30)
        busy = pytest.raises(WorkDirBusy, match="in use by another running build")
        with busy, hold_work_dir(work, wait_s=0.2):
            pass
    finally:
        release.set()
        other.join(30)
    with hold_work_dir(work, wait_s=0.2):
        assert (work / ".lock").exists()


def test_gc_removes_part_files_and_abandoned_work_dirs_not_a_running_builds(tmp_path):
    root = tmp_path / "root"
    old = time.time() - 3 * 24 * 3600
    live, dead, recent = (root / ".work" / n for n in ("live", "dead", "recent"))
    for d in (live, dead, recent):
        (d / "shards").mkdir(parents=True)
        (d / "shards" / "shard-000000.npz").write_bytes(b"done")
        (d / "shards" / ".shard-000001.npz.part").write_bytes(b"half")
        (d / "plan.json").write_text("{}")
    legacy = root / ".work-add"  # the add work dir of the layout before keyed dirs
    (legacy / "shards").mkdir(parents=True)
    (legacy / "plan.json").write_text("{}")
    for d in (live, dead, legacy):
        for p in [*d.rglob("*"), d]:
            os.utime(p, (old, old))
    with hold_work_dir(live):
        os.utime(live / ".lock", (old, old))
        removed = gc(root)
    assert sorted(removed) == sorted(
        [
            ".work/dead/shards/.shard-000001.npz.part",
            ".work/dead",
            ".work/recent/shards/.shard-000001.npz.part",
            ".work-add",
        ]
    )
    assert not dead.exists() and not legacy.exists()
    # A recent killed build's complete shards stay for its --resume; a live one is untouched.
    assert [p.name for p in (recent / "shards").iterdir()] == ["shard-000000.npz"]
    assert (live / "shards" / ".shard-000001.npz.part").exists()


def _enospc(*_: object, **__: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["shard", "publish"])
def test_enospc_is_one_clear_line_and_leaves_nothing_half_written(
    corpus, ckpt, tmp_path, capsys, monkeypatch, where
):
    import index.ann
    import index.embed

    ids = clip_ids(corpus)
    manifest = write_manifest(tmp_path / "m.jsonl", corpus, ids[:3])
    root = tmp_path / "root"
    if where == "shard":

        def savez(f: object, **arrays: object) -> None:
            f.write(b"x" * 1000)  # type: ignore[attr-defined]  (a partial write, then full)
            _enospc()

        monkeypatch.setattr(index.embed.np, "savez", savez)
    else:
        monkeypatch.setattr(index.ann, "save", _enospc)
    with pytest.raises(typer.Exit) as exc:
        index_cli.build(manifest=manifest, ckpt=ckpt, out=root, workers=1)
    assert exc.value.exit_code == 1
    err = capsys.readouterr().err
    # Besides the progress bar's last state, one line.
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith("embed ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: index build failed: no space left on device: ")
    if where == "shard":
        assert lines[0].endswith("shard-000000.npz")
    assert not list(root.glob(".tmp-*")), "the half-built version must be removed"
    assert not list(root.glob(".work/*/shards/.*.part")), "and no half-written shard left"
    # What was committed stays: a rerun with --resume after freeing space publishes.
    monkeypatch.undo()
    out = index_cli.build(manifest=manifest, ckpt=ckpt, out=root, workers=1, resume=True)
    assert out["items"] == 3
