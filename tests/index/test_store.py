"""Ragged sequence store: round trips, padding, validation, and files left behind on errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from index.store import SequenceStore, read_int64_vector, store_name, write_sequences

D = 6


def ragged(lengths: list[int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((t, D)).astype(np.float32) for t in lengths]


def test_round_trip_ragged_with_empty_items(tmp_path: Path) -> None:
    seqs = ragged([3, 0, 5, 1, 0])
    seqs[2] = seqs[2].astype(np.float64)  # any float dtype is accepted
    seqs[3] = seqs[3].astype(np.float16)
    write_sequences(tmp_path, "visual", (s for s in seqs), D)  # a generator: streamed

    store = SequenceStore.open(tmp_path, "visual")
    assert len(store) == 5
    assert store.dim == D
    np.testing.assert_array_equal(store.lengths(), [3, 0, 5, 1, 0])
    assert store.lengths().dtype == np.int64
    for i, s in enumerate(seqs):
        got = store.get(i)
        assert got.dtype == np.float16 and got.shape == (len(s), D)
        np.testing.assert_array_equal(got, s.astype(np.float16))
    assert not store.get(0).flags.writeable
    assert (tmp_path / "visual.seq.f16").stat().st_size == 9 * D * 2
    offsets = np.load(tmp_path / "visual.seq.offsets.npy")
    assert offsets.dtype == np.int64
    np.testing.assert_array_equal(offsets, [0, 3, 3, 8, 9, 9])
    # all at once, as the landmark table reads its store
    steps, offs = store.whole()
    assert steps.dtype == np.float32 and steps.shape == (9, D)
    np.testing.assert_array_equal(offs, offsets)
    for i in range(5):
        np.testing.assert_array_equal(steps[offs[i] : offs[i + 1]], store.get(i))


def test_batch_pads_and_masks(tmp_path: Path) -> None:
    seqs = ragged([2, 0, 4])
    write_sequences(tmp_path, "audio", seqs, D)
    store = SequenceStore.open(tmp_path, "audio")

    x, mask = store.batch([2, 1, 0, 2])
    assert x.dtype == np.float32 and x.shape == (4, 4, D)
    assert mask.dtype == np.bool_ and mask.shape == (4, 4)
    np.testing.assert_array_equal(mask.sum(1), [4, 0, 2, 4])
    np.testing.assert_array_equal(mask[2], [True, True, False, False])
    np.testing.assert_allclose(x[0], seqs[2].astype(np.float16).astype(np.float32))
    np.testing.assert_allclose(x[2, :2], seqs[0].astype(np.float16).astype(np.float32))
    assert not x[~mask].any()  # padding is zero

    x, mask = store.batch([1])  # only an empty item: Tmax = 0
    assert x.shape == (1, 0, D) and mask.shape == (1, 0)
    x, mask = store.batch([])
    assert x.shape == (0, 0, D) and mask.shape == (0, 0)
    with pytest.raises(IndexError):
        store.batch([0, 3])
    with pytest.raises(IndexError, match="row -1"):
        store.batch(np.array([2, -1]))
    with pytest.raises(IndexError):
        store.get(-1)
    # rows as an array or any iterable read alike
    want = store.batch([2, 0])
    for rows in (np.array([2, 0]), iter([2, 0]), (r for r in (2, 0))):
        got = store.batch(rows)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_empty_store_needs_dim(tmp_path: Path) -> None:
    write_sequences(tmp_path, "audio", [np.zeros((0, D), np.float32)] * 3, D)
    with pytest.raises(ValueError, match="pass dim"):
        SequenceStore.open(tmp_path, "audio")
    store = SequenceStore.open(tmp_path, "audio", dim=D)
    assert len(store) == 3 and store.dim == D and store.get(1).shape == (0, D)
    x, mask = store.batch([0, 2])
    assert x.shape == (2, 0, D) and not mask.any()


def test_no_items(tmp_path: Path) -> None:
    write_sequences(tmp_path, "visual", [], D)
    store = SequenceStore.open(tmp_path, "visual", dim=D)
    assert len(store) == 0 and store.lengths().shape == (0,)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.array([[0.0] * D, [np.nan] * D], np.float32), "NaN or Inf"),
        (np.full((1, D), np.inf, np.float64), "NaN or Inf"),
        (np.full((1, D), 1e6, np.float32), "overflow float16"),
        (np.zeros((2, D + 1), np.float32), "expected"),
        (np.zeros(D, np.float32), "expected"),
        (np.zeros((2, D), np.int64), "not a float dtype"),
    ],
    ids=["nan", "inf", "fp16-overflow", "wrong-dim", "1-d", "int"],
)
def test_rejects_bad_sequences_and_leaves_nothing(
    tmp_path: Path, bad: np.ndarray, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        write_sequences(tmp_path, "visual", [*ragged([2, 1]), bad], D)
    assert list(tmp_path.iterdir()) == []


def test_never_overwrites(tmp_path: Path) -> None:
    write_sequences(tmp_path, "visual", ragged([1]), D)
    before = (tmp_path / "visual.seq.f16").read_bytes()
    with pytest.raises(FileExistsError):
        write_sequences(tmp_path, "visual", ragged([2], seed=1), D)
    assert (tmp_path / "visual.seq.f16").read_bytes() == before


def test_inconsistent_files_refused(tmp_path: Path) -> None:
    write_sequences(tmp_path, "visual", ragged([3, 2]), D)
    with open(tmp_path / "visual.seq.f16", "r+b") as f:
        f.truncate(4 * D * 2)  # one step short
    with pytest.raises(ValueError, match="bytes"):
        SequenceStore.open(tmp_path, "visual", dim=D)


def test_int64_vectors_load_without_np_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offsets and rows skip `np.load` (its header parser is not thread-safe on CPython 3.11)."""
    np.save(tmp_path / "a.npy", np.arange(70, dtype=np.int64))  # header padding varies with n
    np.save(tmp_path / "b.npy", np.arange(3, dtype=">i8"))
    np.save(tmp_path / "c.npy", np.zeros((2, 2), np.int64))

    def no_np_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("np.load called")

    with monkeypatch.context() as m:
        m.setattr(np, "load", no_np_load)
        np.testing.assert_array_equal(read_int64_vector(tmp_path / "a.npy"), np.arange(70))
    for other in ["b.npy", "c.npy"]:  # other headers go through np.load, and are refused
        with pytest.raises(ValueError, match="1-D int64"):
            read_int64_vector(tmp_path / other)
    data = (tmp_path / "a.npy").read_bytes()
    (tmp_path / "a.npy").write_bytes(data[:-1])
    with pytest.raises(ValueError, match="data bytes"):
        read_int64_vector(tmp_path / "a.npy")


def test_store_names_are_validated() -> None:
    assert store_name("visual") == "visual"
    assert store_name("audio.pooled") == "audio.pooled"
    for bad in ["text", "../visual", "visual/../x", "visual.", "visual.Pooled", "visual.a.b", ""]:
        with pytest.raises(ValueError):
            store_name(bad)


def test_int8_store_round_trips_within_one_step_of_its_scale(tmp_path: Path) -> None:
    seqs = ragged([3, 0, 5, 1])
    seqs[3][:] = 0.0  # an all-zero step has scale 0 and must come back as zeros, not NaN
    write_sequences(tmp_path, "visual", seqs, D, encoding="i8")
    assert not (tmp_path / "visual.seq.f16").exists()
    assert (tmp_path / "visual.seq.i8").stat().st_size == 9 * D  # one byte per value
    store = SequenceStore.open(tmp_path, "visual")
    assert store.encoding == "i8" and store.dim == D and len(store) == 4
    x, mask = store.batch([0, 1, 2, 3])
    for i, s in enumerate(seqs):
        got = store.get(i)
        assert got.dtype == np.float32 and got.shape == s.shape
        peak = np.abs(s).max(axis=1, keepdims=True) if len(s) else 0
        # half a quantisation step, plus float16 rounding of the scale itself
        assert (np.abs(got - s) <= peak / 254 + np.abs(s) * 1e-3 + 1e-7).all()
        np.testing.assert_array_equal(x[i, : len(s)], got)
    assert not x[~mask].any()
    np.testing.assert_array_equal(store.get(3), 0.0)


def test_a_failed_int8_write_leaves_no_file(tmp_path: Path) -> None:
    bad = np.full((2, D), np.nan, np.float32)
    with pytest.raises(ValueError, match="NaN"):
        write_sequences(tmp_path, "audio", [*ragged([2]), bad], D, encoding="i8")
    assert list(tmp_path.iterdir()) == []


def test_a_store_with_two_step_files_is_refused(tmp_path: Path) -> None:
    write_sequences(tmp_path, "visual", ragged([2]), D)
    (tmp_path / "visual.seq.i8").write_bytes(b"\0" * 2 * D)
    with pytest.raises(ValueError, match="one step file"):
        SequenceStore.open(tmp_path, "visual")
    with pytest.raises(ValueError, match="encoding"):
        write_sequences(tmp_path, "audio", ragged([1]), D, encoding="f32")  # type: ignore[arg-type]
