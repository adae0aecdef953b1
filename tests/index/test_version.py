"""Version directories: round trip, checksums, atomic CURRENT, gc, hostile CURRENT, concurrency."""

from __future__ import annotations

import json
import os
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import pytest

from index.version import (
    CURRENT,
    VERSION_RE,
    IndexCorrupt,
    IndexVersion,
    ItemRecord,
    VersionWriter,
    current_version,
    gc,
    list_versions,
    verify,
)

D = 4
N = 5
NO_AUDIO = {1, 3}  # silent videos
SEQ_LEN = [3, 0, 2, 4, 1]  # visual steps per item (item 1 failed to embed visually)


def records(tag: int) -> list[ItemRecord]:
    return [
        ItemRecord(
            id=f"{tag}-{i}",
            media=f"media/{i}.mp4",
            duration_s=None if i == 0 else 1.5 * i,
            has_video=True,
            has_audio=i not in NO_AUDIO,
            title=None if i == 2 else f"clip {i}",
            meta={"tag": tag, "i": i} if i != 4 else {},
        )
        for i in range(N)
    ]


def writer(root: Path, **overrides: object) -> VersionWriter:
    kwargs: dict = dict(
        model_hash="sha256:abc",
        dim=D,
        steps_per_second=4.0,
        factories={"visual": "Flat", "audio": "Flat"},
        build_info={"tag": 0},
    )
    kwargs.update(overrides)
    return VersionWriter(root, **kwargs)


def fill(w: VersionWriter, tag: int) -> None:
    """Every sequence value equals `tag`, so a reader can tell which version it sees."""
    w.add_items(records(tag))
    w.write_sequences("visual", (np.full((t, D), tag, np.float32) for t in SEQ_LEN))
    audio_len = [0 if i in NO_AUDIO else 2 for i in range(N)]
    w.write_sequences("audio", (np.full((t, D), -tag, np.float32) for t in audio_len))
    w.write_sequences("visual.pooled", (np.full((t and 1, D), tag, np.float32) for t in SEQ_LEN))
    w.write_rows("visual", np.array([4, 0, 2, 3]))
    w.write_rows("audio", np.array([2, 0, 4]))
    # FAISS files are opaque here: one written straight into the temp dir, one via a callback.
    (w.path / "visual.faiss").write_bytes(b"fake-faiss-visual" * 4)
    w.add_file("audio.faiss", lambda p: p.write_bytes(b"fake-faiss-audio" * 4))


def publish(root: Path, tag: int = 1, make_current: bool = True) -> str:
    with writer(root, build_info={"tag": tag}) as w:
        fill(w, tag)
        return w.publish(make_current=make_current)


def flip_byte(path: Path, at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if at is None else at
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def test_round_trip(tmp_path: Path) -> None:
    name = publish(tmp_path, tag=7)
    assert VERSION_RE.fullmatch(name) and name.startswith("v000001-")
    assert current_version(tmp_path) == name
    assert (tmp_path / CURRENT).read_text() == name + "\n"
    assert list_versions(tmp_path) == [name]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []

    v = IndexVersion.open(tmp_path)
    assert v.name == name and v.path == tmp_path / name and v.dim == D
    m = v.manifest
    assert m["model_hash"] == "sha256:abc" and m["steps_per_second"] == 4.0
    assert m["factories"] == {"visual": "Flat", "audio": "Flat"} and m["build"] == {"tag": 7}
    assert m["counts"] == {
        "items": N,
        "visual": {"vectors": 4, "steps": sum(SEQ_LEN)},
        "audio": {"vectors": 3, "steps": 6},
    }
    on_disk = {p.name for p in v.path.iterdir()} - {"manifest.json"}
    assert set(m["files"]) == on_disk
    assert {"items.sqlite", "visual.faiss", "audio.faiss", "visual.rows.npy"} <= on_disk
    assert v.modalities == ["visual", "audio"]

    items = v.items()
    assert len(items) == N
    assert items.ids() == [f"7-{i}" for i in range(N)]
    assert items.by_row(3) == records(7)[3]
    assert items.by_id("7-2") == (2, records(7)[2])
    assert items.by_id("nope") is None
    with pytest.raises(IndexError):
        items.by_row(N)

    seqs = v.sequences("visual")
    np.testing.assert_array_equal(seqs.lengths(), SEQ_LEN)
    assert (seqs.get(3) == 7).all()
    assert v.sequences("audio").get(1).shape == (0, D)
    assert v.sequences("visual.pooled").get(0).shape == (1, D)
    np.testing.assert_array_equal(v.rows("audio"), [2, 0, 4])
    assert v.rows("visual").dtype == np.int64
    assert verify(tmp_path) == []
    v.close()


def test_names_sort_in_creation_order(tmp_path: Path) -> None:
    names = [publish(tmp_path, tag=t, make_current=t == 0) for t in range(3)]
    assert [n[:7] for n in names] == ["v000001", "v000002", "v000003"]
    assert list_versions(tmp_path) == names == sorted(names)
    assert current_version(tmp_path) == names[0]  # make_current=False leaves CURRENT alone


CORRUPTIBLE = [
    "visual.seq.f16",
    "audio.seq.offsets.npy",
    "items.sqlite",
    "visual.faiss",
    "audio.rows.npy",
    "manifest.json",
]


@pytest.mark.parametrize("fname", CORRUPTIBLE)
def test_one_flipped_byte_is_found(tmp_path: Path, fname: str) -> None:
    name = publish(tmp_path)
    flip_byte(tmp_path / name / fname)
    with pytest.raises(IndexCorrupt, match=fname.replace(".", r"\.")):
        IndexVersion.open(tmp_path)
    problems = verify(tmp_path, name)
    assert len(problems) == 1 and problems[0].startswith(fname + ":")


def test_every_manifest_byte_is_covered(tmp_path: Path) -> None:
    """The manifest seals itself: a flip anywhere breaks its JSON, checksum or canonical form."""
    name = publish(tmp_path)
    path = tmp_path / name / "manifest.json"
    original = path.read_bytes()
    for i in [*range(0, len(original), 5), len(original) - 1]:  # a stride keeps it quick
        data = bytearray(original)
        data[i] ^= 0x01
        path.write_bytes(bytes(data))
        assert verify(tmp_path, name)[0].startswith("manifest.json:"), i
    path.write_bytes(original)
    assert verify(tmp_path, name) == []


def test_missing_and_extra_files(tmp_path: Path) -> None:
    name = publish(tmp_path)
    (tmp_path / name / "audio.faiss").unlink()
    (tmp_path / name / "stray.bin").write_bytes(b"x")
    problems = verify(tmp_path)
    assert problems == ["audio.faiss: missing", "stray.bin: not listed in the manifest"]
    with pytest.raises(IndexCorrupt, match=r"stray\.bin") as err:
        IndexVersion.open(tmp_path)
    assert err.value.problems == problems


def test_verify_false_skips_hashing_but_not_the_manifest(tmp_path: Path) -> None:
    name = publish(tmp_path)
    flip_byte(tmp_path / name / "visual.faiss")
    assert IndexVersion.open(tmp_path, verify=False).name == name
    flip_byte(tmp_path / name / "manifest.json")
    with pytest.raises(IndexCorrupt, match=r"manifest\.json"):
        IndexVersion.open(tmp_path, verify=False)


def test_crash_before_publish_leaves_nothing(tmp_path: Path) -> None:
    first = publish(tmp_path)
    with pytest.raises(RuntimeError, match="boom"), writer(tmp_path) as w:
        fill(w, 2)
        assert w.path.is_dir()
        raise RuntimeError("boom")
    with writer(tmp_path) as w:  # abandoned without publish
        fill(w, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first, CURRENT, ".publish.lock"])
    assert current_version(tmp_path) == first
    assert verify(tmp_path) == []


def test_publish_refuses_inconsistent_builds(tmp_path: Path) -> None:
    with writer(tmp_path) as w:
        w.add_items(records(1))
        with pytest.raises(ValueError, match="duplicate item id '1-2'"):
            w.add_items([records(1)[2]])
        with pytest.raises(ValueError, match="duplicate item id 'x'"):
            w.add_items([ItemRecord("x", "a", 1.0, True, False)] * 2)
        w.add_items([])
        w.write_sequences("visual", (np.zeros((1, D)) for _ in range(N - 1)))
        with pytest.raises(ValueError, match="4 sequences for 5 items"):
            w.publish()
    with writer(tmp_path, factories={}) as w:
        w.add_items(records(1))
        w.write_sequences("audio", (np.zeros((1, D)) for _ in range(N)))  # item 1 has no audio
        with pytest.raises(ValueError, match="has_audio is false"):
            w.publish()
    with writer(tmp_path, factories={}) as w:
        fill(w, 1)
        (w.path / "audio.faiss").unlink()
        with pytest.raises(ValueError, match=r"needs both audio\.faiss and audio\.rows\.npy"):
            w.publish()
    with writer(tmp_path, factories={"audio": "Flat"}) as w:
        w.add_items(records(1))
        w.write_sequences("audio", (np.zeros((0, D)) for _ in range(N)))
        w.write_rows("audio", np.array([1]))  # item 1 is a silent video
        w.add_file("audio.faiss", b"f")
        with pytest.raises(ValueError, match="rows for items whose has_audio is false"):
            w.publish()
    with writer(tmp_path) as w, pytest.raises(ValueError):
        w.add_file("../escape", b"x")
    assert list_versions(tmp_path) == []


def test_a_modality_without_vectors_publishes(tmp_path: Path) -> None:
    """No audio anywhere: its (empty) sequences are kept, it has no FAISS index or rows."""
    with writer(tmp_path, factories={"visual": "Flat"}) as w:
        w.add_items([ItemRecord("a", "a.mp4", 2.0, True, False)])
        w.write_sequences("visual", [np.ones((2, D))])
        w.write_sequences("audio", [np.zeros((0, D))])
        w.write_rows("visual", np.array([0]))
        w.add_file("visual.faiss", b"f")
        w.publish()
    v = IndexVersion.open(tmp_path)
    assert v.manifest["counts"]["audio"] == {"vectors": 0, "steps": 0}
    assert len(v.sequences("audio")) == 1
    with pytest.raises(KeyError):
        v.rows("audio")


def test_gc_keeps_current_and_newest(tmp_path: Path) -> None:
    names = [publish(tmp_path, tag=t, make_current=t == 0) for t in range(5)]
    assert current_version(tmp_path) == names[0]
    assert gc(tmp_path, keep=2) == [names[1], names[2]]
    assert list_versions(tmp_path) == [names[0], names[3], names[4]]
    assert gc(tmp_path, keep=0) == [names[3], names[4]]
    assert list_versions(tmp_path) == [names[0]]
    assert IndexVersion.open(tmp_path).name == names[0]
    # Numbering continues after the newest ever seen that still exists, so order holds.
    assert publish(tmp_path, tag=9) > names[0]


def test_gc_removes_dead_tmp_dirs_at_once_and_never_a_live_build(tmp_path: Path) -> None:
    """A `.tmp-` dir nobody holds an flock on is a killed build's: gone at the first gc, however
    young. A live build (its VersionWriter holds the flock) stays, however old its files."""
    name = publish(tmp_path)
    killed = tmp_path / ".tmp-killed"
    killed.mkdir()
    (killed / "visual.seq.f16").write_bytes(b"partial")
    current_tmp = tmp_path / f".tmp-{CURRENT}-0a1b2c3d"  # a publish killed before its rename
    current_tmp.write_text(name + "\n")
    old = time.time() - 2 * 3600
    with writer(tmp_path) as live:  # a long build that has not touched its files for hours
        for p in [live.path / "items.sqlite", live.path]:
            os.utime(p, (old, old))
        assert sorted(gc(tmp_path)) == [f".tmp-{CURRENT}-0a1b2c3d", ".tmp-killed"]
        assert live.path.is_dir() and not killed.exists() and not current_tmp.exists()
        fill(live, 2)
        live.publish()
    assert len(list_versions(tmp_path)) == 2
    assert current_version(tmp_path) != name


def test_gc_falls_back_to_age_where_flock_does_not_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import fcntl

    publish(tmp_path)
    young, stale = tmp_path / ".tmp-young", tmp_path / ".tmp-stale"
    for d in (young, stale):
        d.mkdir()
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    real_flock = fcntl.flock

    def flock(fd: object, op: int) -> None:
        if op & fcntl.LOCK_NB:  # the probe gc makes; the root lock (blocking) still works
            raise OSError(errno.ENOLCK, "No locks available")
        real_flock(fd, op)  # type: ignore[arg-type]

    monkeypatch.setattr(fcntl, "flock", flock)
    assert gc(tmp_path) == [".tmp-stale"]
    assert young.is_dir()


@pytest.mark.parametrize(
    "content",
    ["../etc", "/etc/passwd", "v000001-20261122T035500Z/../../x", "", "v1\n\nextra", "\xff"],
)
def test_hostile_current_is_refused(tmp_path: Path, content: str) -> None:
    publish(tmp_path)
    (tmp_path / CURRENT).write_text(content, encoding="utf-8", errors="surrogateescape")
    with pytest.raises(IndexCorrupt, match=CURRENT):
        current_version(tmp_path)
    with pytest.raises(IndexCorrupt, match=CURRENT):
        IndexVersion.open(tmp_path)
    assert verify(tmp_path)[0].startswith(CURRENT)


def test_symlinked_version_and_bad_names_are_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    name = publish(elsewhere)
    root = tmp_path / "root"
    root.mkdir()
    (root / name).symlink_to(elsewhere / name)
    (root / CURRENT).write_text(name)
    assert list_versions(root) == []
    with pytest.raises(IndexCorrupt, match="not a version directory"):
        IndexVersion.open(root)
    with pytest.raises(ValueError):
        IndexVersion.open(elsewhere, version="../root")
    with pytest.raises(FileNotFoundError):
        IndexVersion.open(tmp_path / "empty")


def test_concurrent_readers_see_whole_versions(tmp_path: Path) -> None:
    publish(tmp_path, tag=1)
    errors: list[BaseException] = []
    seen: set[int] = set()
    done = threading.Event()

    def read() -> None:
        reads = 0
        try:
            while True:
                finishing = done.is_set()  # then this read starts after the last publish
                v = IndexVersion.open(tmp_path)
                tag = v.manifest["build"]["tag"]
                items = v.items()
                assert items.ids() == [f"{tag}-{i}" for i in range(N)]
                assert items.by_row(0).meta == {"tag": tag, "i": 0}
                x, mask = v.sequences("visual").batch(range(N))
                assert (x[mask] == tag).all() and mask.sum() == sum(SEQ_LEN)
                assert (v.sequences("audio").get(0) == -tag).all()
                v.close()
                seen.add(tag)
                reads += 1
                if finishing and reads >= 3:
                    assert tag == 4
                    return
        except BaseException as e:
            errors.append(e)

    readers = [threading.Thread(target=read) for _ in range(8)]
    for t in readers:
        t.start()
    for tag in (2, 3, 4):
        publish(tmp_path, tag=tag)
    done.set()
    for t in readers:
        t.join(timeout=30)
    assert not errors, "".join(traceback.format_exception(errors[0]))
    assert seen >= {4} and seen <= {1, 2, 3, 4}
    current = current_version(tmp_path)
    assert current is not None
    assert json.loads((tmp_path / current / "manifest.json").read_text())["build"] == {"tag": 4}
