"""Ragged per-item sequence store: steps in one flat file, int64 offsets beside it.

Two step encodings, told apart by the file name:
- `<name>.seq.f16`: every time step of every item, little-endian float16, (total_steps, D).
- `<name>.seq.i8` + `<name>.seq.scale.f16`: each step quantised to int8 with its own scale
  (max |x| / 127, float16), (total_steps, D) + (total_steps,): half the bytes of float16, and the
  per-step scale keeps the relative error of every step below 1/254.
`<name>.seq.offsets.npy` holds n_items + 1 int64 offsets: item i owns rows offsets[i]:offsets[i+1]
(zero rows where the item lacks the modality). Reading maps the files into memory, so opening a
large store costs nothing and concurrent readers share pages. Writing streams one item at a time.
"""

from __future__ import annotations

import array
import re
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import torch

from models.config import Modality

# Modalities that have a sequence store and a FAISS index (text is only ever a query).
INDEXED_MODALITIES: tuple[Modality, ...] = (Modality.VISUAL, Modality.AUDIO)
STEP_DTYPE = np.dtype("<f2")
INT8_DTYPE = np.dtype("i1")
OFFSET_DTYPE = np.dtype("<i8")
StepEncoding = Literal["f16", "i8"]
ENCODINGS: tuple[StepEncoding, ...] = ("f16", "i8")
_TAG_RE = re.compile(r"[a-z][a-z0-9_]*")


def indexed_modality(modality: str) -> Modality:
    """`modality` as a Modality, or ValueError unless it is one that an index stores."""
    try:
        m = Modality(modality)
    except ValueError:
        m = None
    if m not in INDEXED_MODALITIES:
        names = ", ".join(INDEXED_MODALITIES)
        raise ValueError(f"modality {modality!r} is not indexed (one of: {names})")
    return m


def store_name(name: str) -> str:
    """A sequence store is named by its modality, optionally with a tag: "visual", "audio.pooled".

    Tagged stores hold other per-item arrays on the same ragged layout (e.g. one pooled vector
    per item for "more like this"); the name is validated so it can never form a path.
    """
    modality, dot, tag = str(name).partition(".")
    indexed_modality(modality)
    if dot and not _TAG_RE.fullmatch(tag):
        raise ValueError(f"bad sequence store tag {tag!r} in {name!r}")
    return str(name)


def seq_filename(modality: str, encoding: StepEncoding = "f16") -> str:
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown step encoding {encoding!r} (one of {ENCODINGS})")
    return f"{store_name(modality)}.seq.{encoding}"


def scale_filename(modality: str) -> str:
    """Per-step scales of an int8 store."""
    return f"{store_name(modality)}.seq.scale.f16"


def offsets_filename(modality: str) -> str:
    return f"{store_name(modality)}.seq.offsets.npy"


_NPY_MAGIC = b"\x93NUMPY"
_NPY_INT64_VECTOR = re.compile(
    rb"\{'descr': '<i8', 'fortran_order': False, 'shape': \((\d+),\), \} *\n"
)
_NPY_LOAD_LOCK = threading.Lock()


def read_int64_vector(path: Path) -> np.ndarray:
    """Load a 1-D little-endian int64 .npy file, as `np.save` writes it.

    Why not `np.load`: it parses the header with `ast.literal_eval`, and on CPython 3.11 the
    AST constructor is not thread-safe (concurrent parses raise "SystemError: AST constructor
    recursion depth mismatch"), which concurrent readers of an index hit. The header `np.save`
    writes for this one dtype and shape is matched exactly; anything else falls back to `np.load`
    under a lock and must still be a 1-D int64 array.
    """
    with open(path, "rb") as f:
        head = f.read(10)
        if head[:6] == _NPY_MAGIC and head[6] == 1:
            header = f.read(int.from_bytes(head[8:10], "little"))
            m = _NPY_INT64_VECTOR.fullmatch(header)
            if m is not None:
                n = int(m.group(1))
                data = f.read(n * OFFSET_DTYPE.itemsize + 1)
                if len(data) != n * OFFSET_DTYPE.itemsize:
                    raise ValueError(f"{Path(path).name}: {len(data)} data bytes for {n} int64")
                return np.frombuffer(data, dtype=OFFSET_DTYPE)
    with _NPY_LOAD_LOCK:
        arr = np.load(path, allow_pickle=False)
    if arr.ndim != 1 or arr.dtype != OFFSET_DTYPE:
        raise ValueError(
            f"{Path(path).name}: expected a 1-D int64 array, got {arr.dtype} {arr.shape}"
        )
    return np.asarray(arr)


def _checked_steps(seq: object, dim: int, i: int) -> np.ndarray:
    arr = np.asarray(seq)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"sequence {i}: shape {arr.shape}, expected (T, {dim})")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"sequence {i}: dtype {arr.dtype} is not a float dtype")
    if not np.isfinite(arr).all():
        raise ValueError(f"sequence {i}: contains NaN or Inf")
    with np.errstate(over="ignore"):  # overflow is reported just below, as a ValueError
        steps = np.ascontiguousarray(arr, dtype=STEP_DTYPE)
    if not np.isfinite(steps).all():  # finite in float32/64 but beyond float16's ±65504
        raise ValueError(f"sequence {i}: values overflow float16")
    return steps


def quantise_int8(steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, D) float → int8 (T, D) and float16 scales (T,), step t ≈ q[t] * scale[t]."""
    x = np.asarray(steps, dtype=np.float32)
    peak = np.abs(x).max(axis=1) if x.size else np.zeros(len(x), np.float32)
    # Round the scale to float16 first, then quantise with exactly the scale that is stored.
    scale = (peak / 127.0).astype(STEP_DTYPE)
    safe = np.where(scale > 0, scale.astype(np.float32), 1.0)[:, None]
    q = np.clip(np.rint(x / safe), -127, 127).astype(INT8_DTYPE)
    return q, scale


class SequenceWriter:
    """Streams (T_i, dim) float arrays into a new store, one item at a time.

        with SequenceWriter(directory, "visual", dim=64, encoding="i8") as w:
            for steps in items:
                w.append(steps)

    Only the offsets (8 bytes per item) stay in memory. `append` raises ValueError on a wrong
    shape, a non-float dtype, NaN/Inf or float16 overflow; leaving the `with` block on an error
    removes every file the writer made, so no partial store is ever left behind.
    """

    def __init__(
        self, directory: Path, name: str, dim: int, encoding: StepEncoding = "f16"
    ) -> None:
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim, self.encoding = int(dim), encoding
        directory = Path(directory)
        self._paths = [directory / seq_filename(name, encoding), directory / offsets_filename(name)]
        if encoding == "i8":
            self._paths.append(directory / scale_filename(name))
        if any(p.exists() for p in self._paths[1:]):
            raise FileExistsError(self._paths[1])
        self._offsets = array.array("q", [0])
        self._files: list[BinaryIO] = []
        try:
            # "x": never overwrite a store; closed by close() / abort()
            self._files.append(open(self._paths[0], "xb"))  # noqa: SIM115
            if encoding == "i8":
                self._files.append(open(self._paths[2], "xb"))  # noqa: SIM115
        except BaseException:
            self.abort()
            raise
        self._closed = False

    def append(self, seq: object) -> None:
        if self._closed:
            raise RuntimeError("this SequenceWriter is closed")
        steps = _checked_steps(seq, self.dim, len(self._offsets) - 1)
        if self.encoding == "f16":
            self._files[0].write(steps.data)
        else:
            q, scale = quantise_int8(steps)
            self._files[0].write(q.data)
            self._files[1].write(scale.data)
        self._offsets.append(self._offsets[-1] + steps.shape[0])

    def close(self) -> None:
        """Finish the store: the offsets file is written last, so its presence means complete."""
        if self._closed:
            return
        for f in self._files:
            f.close()
        with open(self._paths[1], "xb") as g:
            np.save(g, np.frombuffer(self._offsets, dtype=np.int64).astype(OFFSET_DTYPE))
        self._closed = True

    def abort(self) -> None:
        for f in getattr(self, "_files", []):
            f.close()
        for p in self._paths:
            p.unlink(missing_ok=True)
        self._closed = True

    def __enter__(self) -> SequenceWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_sequences(
    directory: Path,
    modality: str,
    sequences: Iterable[np.ndarray],
    dim: int,
    encoding: StepEncoding = "f16",
) -> None:
    """Stream (T_i, dim) float arrays to a new store (see `SequenceWriter`)."""
    with SequenceWriter(directory, modality, dim, encoding) as w:
        for seq in sequences:
            w.append(seq)


class SequenceStore:
    """Read side: memory-mapped, read-only, safe to share between threads."""

    def __init__(
        self, steps: np.ndarray, offsets: np.ndarray, scales: np.ndarray | None = None
    ) -> None:
        self._steps = steps  # (total_steps, D) float16 or int8, read-only
        self._offsets = offsets  # (n + 1,) int64
        self._scales = scales  # (total_steps,) float16 for int8 stores, else None

    @classmethod
    def open(cls, directory: Path, modality: str, dim: int | None = None) -> SequenceStore:
        """Map a store (either encoding); D comes from `dim` or, if omitted, from the file size.

        A store with no steps at all cannot tell its D, so it needs `dim` (IndexVersion passes
        the manifest's). Inconsistent files raise ValueError.
        """
        directory = Path(directory)
        found = [e for e in ENCODINGS if (directory / seq_filename(modality, e)).exists()]
        if len(found) != 1:
            raise ValueError(f"{store_name(modality)}: expected one step file, found {found}")
        encoding = found[0]
        dtype = STEP_DTYPE if encoding == "f16" else INT8_DTYPE
        seq_path = directory / seq_filename(modality, encoding)
        offsets = read_int64_vector(directory / offsets_filename(modality))
        if len(offsets) == 0:
            raise ValueError(f"{offsets_filename(modality)}: no offsets")
        if offsets[0] != 0 or (np.diff(offsets) < 0).any():
            raise ValueError(f"{offsets_filename(modality)}: offsets must start at 0 and not fall")
        total = int(offsets[-1])
        nbytes = seq_path.stat().st_size
        if dim is None:
            if total == 0:
                raise ValueError(f"{seq_path.name}: no steps, so D is unknown: pass dim")
            dim = nbytes // (total * dtype.itemsize)
        if dim <= 0 or nbytes != total * dim * dtype.itemsize:
            raise ValueError(
                f"{seq_path.name}: {nbytes} bytes, expected {total} steps x {dim} x {dtype.name}"
            )
        scales = None
        if encoding == "i8":
            scale_path = directory / scale_filename(modality)
            if scale_path.stat().st_size != total * STEP_DTYPE.itemsize:
                raise ValueError(f"{scale_path.name}: expected {total} float16 scales")
            scales = _map(scale_path, STEP_DTYPE, (total,))
        return cls(_map(seq_path, dtype, (total, dim)), offsets, scales)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    @property
    def dim(self) -> int:
        return int(self._steps.shape[1])

    @property
    def encoding(self) -> StepEncoding:
        return "f16" if self._scales is None else "i8"

    def _span(self, row: int) -> tuple[int, int]:
        r = int(row)
        if not 0 <= r < len(self):
            raise IndexError(f"row {row} out of range for {len(self)} items")
        return int(self._offsets[r]), int(self._offsets[r + 1])

    def get(self, row: int) -> np.ndarray:
        """Item `row`'s steps (T_i, D), T_i may be 0: a read-only float16 view into the map, or
        float32 values decoded from an int8 store."""
        start, end = self._span(row)
        if self._scales is None:
            return self._steps[start:end]
        return self._steps[start:end].astype(np.float32) * self._scales[start:end, None]

    def lengths(self, rows: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Steps per item, int64 (n,), or of `rows` only."""
        if rows is None:
            return np.diff(self._offsets)
        at = np.asarray(rows, dtype=np.int64)
        if len(at) and not (at.min() >= 0 and at.max() < len(self)):
            raise IndexError(f"rows out of range for {len(self)} items")
        return self._offsets[at + 1] - self._offsets[at]

    def whole(self) -> tuple[np.ndarray, np.ndarray]:
        """Every item's steps at once: float32 (total, D), and the (n + 1,) offsets (item r's
        steps are rows offsets[r] .. offsets[r + 1])."""
        if self._scales is None:
            steps = _to_float32(np.asarray(self._steps))
        else:
            steps = self._steps.astype(np.float32) * self._scales[:, None]
        return steps, self._offsets.copy()

    def batch(self, rows: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        """Candidates for re-ranking: float32 (K, Tmax, D) zero-padded, bool mask (K, Tmax).

        One gather from the map for all K items (no per-item copies), then one scatter into the
        padded block.
        """
        at = np.asarray(rows if isinstance(rows, np.ndarray) else list(rows), dtype=np.int64)
        at = at.reshape(-1)
        if len(at) and not (at.min() >= 0 and at.max() < len(self)):
            bad = int(at[(at < 0) | (at >= len(self))][0])
            raise IndexError(f"row {bad} out of range for {len(self)} items")
        # the spans of every row at once (a Python call per row was a millisecond of a search)
        spans = np.stack([self._offsets[at], self._offsets[at + 1]], axis=1).astype(np.int64)
        lengths = spans[:, 1] - spans[:, 0]
        t_max = int(lengths.max()) if len(spans) else 0
        mask = np.arange(t_max)[None, :] < lengths[:, None]  # (K, Tmax)
        if not mask.any():
            return np.zeros((len(spans), t_max, self.dim), np.float32), mask
        # One gather of (K, Tmax) rows; padding positions read some valid row, then are zeroed.
        steps = np.where(mask, spans[:, :1] + np.arange(t_max)[None, :], spans[:, :1])
        steps = np.minimum(steps, len(self._steps) - 1)  # an empty item's start may be the end
        out = _to_float32(self._steps[steps])  # (K, Tmax, D)
        if self._scales is not None:
            out *= self._scales[steps].astype(np.float32)[..., None]
        if not mask.all():
            out[~mask] = 0.0
        return out, mask


def _to_float32(x: np.ndarray) -> np.ndarray:
    """float16 → float32 through torch, whose conversion is vectorised (numpy's is ~15x slower,
    and on the re-rank path it was the largest single cost)."""
    if x.dtype == STEP_DTYPE:
        return torch.from_numpy(np.ascontiguousarray(x)).float().numpy()
    return x.astype(np.float32)


def _map(path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    if shape[0] == 0:  # mmap refuses empty files
        empty = np.empty(shape, dtype)
        empty.flags.writeable = False
        return empty
    return np.memmap(path, dtype=dtype, mode="r", shape=shape).view(np.ndarray)


__all__ = [
    "ENCODINGS",
    "INDEXED_MODALITIES",
    "SequenceStore",
    "SequenceWriter",
    "StepEncoding",
    "indexed_modality",
    "offsets_filename",
    "quantise_int8",
    "read_int64_vector",
    "scale_filename",
    "seq_filename",
    "store_name",
    "write_sequences",
]
