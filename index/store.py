"""Ragged per-item sequence store: float16 steps in one flat file, int64 offsets beside it.

`<modality>.seq.f16` holds every time step of every item, little-endian float16, shape
(total_steps, D), no header. `<modality>.seq.offsets.npy` holds n_items + 1 int64 offsets: item i
owns rows offsets[i]:offsets[i + 1] (zero rows where the item lacks the modality). Reading maps the
file into memory, so opening a large store costs nothing and concurrent readers share pages.
"""

from __future__ import annotations

import array
import re
import threading
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from models.config import Modality

# Modalities that have a sequence store and a FAISS index (text is only ever a query).
INDEXED_MODALITIES: tuple[Modality, ...] = (Modality.VISUAL, Modality.AUDIO)
STEP_DTYPE = np.dtype("<f2")
OFFSET_DTYPE = np.dtype("<i8")
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


def seq_filename(modality: str) -> str:
    return f"{store_name(modality)}.seq.f16"


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


def write_sequences(
    directory: Path, modality: str, sequences: Iterable[np.ndarray], dim: int
) -> None:
    """Stream (T_i, dim) float arrays to `<modality>.seq.f16` + offsets, one item at a time.

    Only the offsets (8 bytes per item) stay in memory. Raises ValueError on a wrong shape, a
    non-float dtype, NaN/Inf or float16 overflow, and then leaves no partial files behind.
    """
    if dim <= 0:
        raise ValueError(f"dim must be positive, got {dim}")
    seq_path = Path(directory) / seq_filename(modality)
    offsets_path = Path(directory) / offsets_filename(modality)
    if offsets_path.exists():
        raise FileExistsError(offsets_path)
    offsets = array.array("q", [0])
    with open(seq_path, "xb") as f:  # "x": never overwrite a store in place
        try:
            for i, seq in enumerate(sequences):
                steps = _checked_steps(seq, dim, i)
                f.write(steps.data)
                offsets.append(offsets[-1] + steps.shape[0])
            with open(offsets_path, "xb") as g:
                np.save(g, np.frombuffer(offsets, dtype=np.int64).astype(OFFSET_DTYPE))
        except BaseException:
            seq_path.unlink(missing_ok=True)
            offsets_path.unlink(missing_ok=True)
            raise


class SequenceStore:
    """Read side: memory-mapped, read-only, safe to share between threads."""

    def __init__(self, steps: np.ndarray, offsets: np.ndarray) -> None:
        self._steps = steps  # (total_steps, D) float16, read-only
        self._offsets = offsets  # (n + 1,) int64

    @classmethod
    def open(cls, directory: Path, modality: str, dim: int | None = None) -> SequenceStore:
        """Map `<modality>.seq.f16`; D comes from `dim` or, if omitted, from the file size.

        A store with no steps at all cannot tell its D, so it needs `dim` (IndexVersion passes
        the manifest's). Inconsistent files raise ValueError.
        """
        seq_path = Path(directory) / seq_filename(modality)
        offsets = read_int64_vector(Path(directory) / offsets_filename(modality))
        if len(offsets) == 0:
            raise ValueError(f"{offsets_filename(modality)}: no offsets")
        if offsets[0] != 0 or (np.diff(offsets) < 0).any():
            raise ValueError(f"{offsets_filename(modality)}: offsets must start at 0 and not fall")
        total = int(offsets[-1])
        nbytes = seq_path.stat().st_size
        if dim is None:
            if total == 0:
                raise ValueError(f"{seq_path.name}: no steps, so D is unknown: pass dim")
            dim = nbytes // (total * STEP_DTYPE.itemsize)
        if dim <= 0 or nbytes != total * dim * STEP_DTYPE.itemsize:
            raise ValueError(
                f"{seq_path.name}: {nbytes} bytes, expected {total} steps x {dim} x float16"
            )
        if total == 0:  # mmap refuses empty files
            steps = np.empty((0, dim), STEP_DTYPE)
            steps.flags.writeable = False
        else:
            steps = np.memmap(seq_path, dtype=STEP_DTYPE, mode="r", shape=(total, dim))
        return cls(steps.view(np.ndarray), offsets)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    @property
    def dim(self) -> int:
        return int(self._steps.shape[1])

    def _span(self, row: int) -> tuple[int, int]:
        r = int(row)
        if not 0 <= r < len(self):
            raise IndexError(f"row {row} out of range for {len(self)} items")
        return int(self._offsets[r]), int(self._offsets[r + 1])

    def get(self, row: int) -> np.ndarray:
        """Item `row`'s steps: a read-only float16 (T_i, D) view into the map (T_i may be 0)."""
        start, end = self._span(row)
        return self._steps[start:end]

    def lengths(self) -> np.ndarray:
        """Steps per item, int64 (n,)."""
        return np.diff(self._offsets)

    def batch(self, rows: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        """Candidates for re-ranking: float32 (K, Tmax, D) zero-padded, bool mask (K, Tmax)."""
        spans = [self._span(r) for r in rows]
        lengths = np.array([end - start for start, end in spans], dtype=np.int64)
        t_max = int(lengths.max()) if len(spans) else 0
        out = np.zeros((len(spans), t_max, self.dim), np.float32)  # (K, Tmax, D)
        for k, (start, end) in enumerate(spans):
            out[k, : end - start] = self._steps[start:end]
        mask = np.arange(t_max)[None, :] < lengths[:, None]  # (K, Tmax)
        return out, mask


__all__ = [
    "INDEXED_MODALITIES",
    "SequenceStore",
    "indexed_modality",
    "offsets_filename",
    "read_int64_vector",
    "seq_filename",
    "store_name",
    "write_sequences",
]
