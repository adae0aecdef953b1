"""Dense sound prints: finding a recording whose sound the landmarks cannot pin down.

`models.fingerprint`'s landmarks need distinct spectral peaks. A steady engine hum has a handful
of peak pairs that hundreds of recordings share, and a slow drum on silence has four peaks in
4 s: the landmarks rightly say nothing there (on the independently rendered corpus, 11 % of 4 s
pieces). A dense print says something about every frame: per frame, 32 bits, each the sign of how
the energy difference of two neighbouring bands changed since the frame before (the sub-band
energy-difference print of Haitsma and Kalker, "A highly robust audio fingerprinting system",
2002). It survives gain (a sign of differences), codecs and resampling (wide bands), and its
bit error rate (BER) at the best offset separates a piece of a recording (val: at most 0.12 cut
from the same file; re-encoded with another codec and rate 0.07–0.37, 90 % at most 0.2) from
another recording (0.24 at the least, 0.5 by chance).

- `prints(wave, sr)`: (n,) uint32, one print every `HOP_S`, over `WINDOW_S` of sound.
- `query_prints(wave, sr)`: the same at `PHASES` sub-hop shifts, with the shift in seconds: a
  piece cut between two of the indexed grid's frames is matched at its nearest phase.
- `best_offsets(phases, items)`: each item's lowest BER over every offset where the piece fits
  inside it (and the piece's start there, in seconds).
- `decide(ber, starts)`: the items a piece is in — the best at most `MATCH_BER`, with every
  item within `COPY_MARGIN` of it (copies), when those are at most `MAX_FOUND`; else nothing.
- `to_store` / `from_store`: prints as three float16-exact values (11 + 11 + 10 bits).
- `PrintTable`: every item's prints, their values sorted: `match` short-lists the items holding
  a piece's prints or their one-bit neighbours (`SHORT_LIST`), decides among those (and any
  items the caller adds, e.g. the landmarks' finds) by BER, so the cost follows the postings,
  not the table.
- `pieces(found, landmarks)`: what a search puts first: the prints' decision, else the
  landmarks' (`models.fingerprint`).

Measured with `benchmarks.bench_prints` (the same 200 excerpts a pool as `bench_timing`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from models.fingerprint import Match, power_spectrum

WINDOW_S = 0.128  # the analysis window ...
HOP_S = 0.064  # ... one print each hop (an indexed 6 s recording: 91 prints, 0.55 KB stored)
LOW_HZ, HIGH_HZ = 100.0, 4000.0  # as the landmarks: what a telephone-band file still carries
BANDS = 33  # log-spaced bands: 32 neighbouring pairs, one bit each
PHASES = 8  # sub-hop shifts of a query (8 ms apart)
MATCH_BER = 0.2  # a piece of a recording: at most this share of bits differ at the best offset
COPY_MARGIN = 0.05  # items this close to the best are copies of one recording ...
MAX_FOUND = 4  # ... up to this many; more: a sound many recordings share, nothing returned
STORE_DIM = 3  # a stored print: three parts ...
_PARTS = ((0, 11), (11, 11), (22, 10))  # ... (shift, bits) each
# A value (or a one-bit neighbour) held more often than this says nothing about where a piece is
# (digital silence prints 0 in every recording that has any): it short-lists nothing.
COMMON_POSTINGS, COMMON_SHARE = 64, 0.02
# The items holding most of a piece's prints (or their neighbours) that are compared whole. On
# val (200 clips, a piece re-encoded with another codec and rate searched among the originals)
# the one-bit neighbours find the piece's item for 96-98 % of 1.5-4 s pieces, the exact values
# for 90-96 %; every item compared finds 100 % of the same-file pieces.
SHORT_LIST = 32
_SMALL_BUCKET = 64  # a lookup bucket read whole (`PrintTable._postings`)


@dataclass(frozen=True)
class Found:
    """Items a piece was found in: `rows` best first, their `ber` and `starts_s` (where in the
    item the piece starts)."""

    rows: np.ndarray
    ber: np.ndarray
    starts_s: np.ndarray


@lru_cache(maxsize=8)
def _geometry(sr: int) -> tuple[int, int, torch.Tensor]:
    """(window, hop, bands × bins 0/1 matrix) at `sr`; built once a rate, never changed."""
    if sr < 2 * HIGH_HZ:
        raise ValueError(f"sample rate {sr} Hz is below {2 * HIGH_HZ:.0f} Hz: resample first")
    n_fft = round(WINDOW_S * sr)
    hop = round(HOP_S * sr)
    freqs = torch.arange(n_fft // 2 + 1, dtype=torch.float32) * sr / n_fft
    edges = torch.from_numpy(np.geomspace(LOW_HZ, HIGH_HZ, BANDS + 1).astype(np.float32))
    bands = ((freqs[None] >= edges[:-1, None]) & (freqs[None] < edges[1:, None])).float()
    return n_fft, hop, bands


def _prints(wave: np.ndarray, sr: int, shift: int = 0) -> np.ndarray:
    n_fft, hop, bands = _geometry(sr)
    x = np.asarray(wave, np.float32).reshape(-1)[shift:]
    if not np.isfinite(x).all():
        raise ValueError("wave holds NaN or infinite samples")
    if len(x) < n_fft + hop:  # two frames at least: a print compares a frame with the one before
        return np.zeros(0, np.uint32)
    energy = (bands @ power_spectrum(x, n_fft, hop)).T.double().numpy()
    across = energy[:, :-1] - energy[:, 1:]  # (frames, 32) band-pair differences
    bits = (across[1:] - across[:-1]) > 0
    weights = np.left_shift(np.uint64(1), np.arange(BANDS - 1, dtype=np.uint64))
    return (bits.astype(np.uint64) @ weights).astype(np.uint32)


def prints(wave: np.ndarray, sr: int) -> np.ndarray:
    """(n,) uint32 prints of a whole recording; print j compares the windows starting at
    j × `HOP_S` and (j + 1) × `HOP_S` (module docstring). Too short for two windows: empty."""
    return _prints(wave, sr)


def query_prints(wave: np.ndarray, sr: int) -> list[tuple[np.ndarray, float]]:
    """A piece's prints at each of `PHASES` sub-hop shifts, with the shift in seconds."""
    hop = round(HOP_S * sr)
    out = []
    for p in range(PHASES):
        shift = round(p * hop / PHASES)
        out.append((_prints(wave, sr, shift), shift / sr))
    return out


def best_offsets(
    phases: list[tuple[np.ndarray, float]], items: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """(items,) lowest BER of the piece against each item over every offset where it fits
    whole (1.0: never fits, or no prints), and (items,) where it then starts, in seconds."""
    n = len(items)
    ber = np.ones(n)
    starts = np.zeros(n)
    if not n:
        return ber, starts
    lengths = np.array([len(p) for p in items])
    table = np.zeros((n, max(1, int(lengths.max()))), np.uint32)
    for i, p in enumerate(items):
        table[i, : len(p)] = p
    for found, shift_s in phases:
        m = len(found)
        if m == 0 or m > table.shape[1]:
            continue
        windows = np.lib.stride_tricks.sliding_window_view(table, m, axis=1)  # (n, offsets, m)
        errors = np.bitwise_count(windows ^ found[None, None]).sum(axis=2) / (32.0 * m)
        fits = np.arange(errors.shape[1])[None, :] + m <= lengths[:, None]
        errors = np.where(fits, errors, 1.0)
        at = errors.argmin(axis=1)
        low = errors[np.arange(n), at]
        better = low < ber
        ber[better] = low[better]
        starts[better] = at[better] * HOP_S - shift_s
    return ber, np.maximum(starts, 0.0)


def decide(ber: np.ndarray, starts: np.ndarray, rows: np.ndarray | None = None) -> Found:
    """The items a piece is in (module docstring); `rows`: the item each entry of `ber` stands
    for (default its position)."""
    ber = np.asarray(ber, np.float64)
    rows = np.arange(len(ber)) if rows is None else np.asarray(rows, np.int64)
    none = Found(np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
    if not len(ber) or ber.min() > MATCH_BER:
        return none
    group = np.flatnonzero(ber <= min(MATCH_BER, ber.min() + COPY_MARGIN))
    if len(group) > MAX_FOUND:
        return none
    group = group[np.lexsort((rows[group], ber[group]))]
    return Found(rows[group], ber[group], np.asarray(starts, np.float64)[group])


class PrintTable:
    """Every item's prints, for `match`. `items[r]`: item r's `prints` (may be empty);
    `from_concatenated` takes them as one array and offsets, as an index's store holds them."""

    def __init__(self, items: list[np.ndarray]) -> None:
        counts = np.array([len(p) for p in items], np.int64)
        flat = (
            np.concatenate([np.asarray(p, np.uint32).reshape(-1) for p in items])
            if items
            else np.zeros(0, np.uint32)
        )
        self._build(flat, np.concatenate([[0], np.cumsum(counts)]))

    @classmethod
    def from_concatenated(cls, flat: np.ndarray, offsets: np.ndarray) -> PrintTable:
        """`flat` (total,) every item's prints in row order, item r's at offsets[r] ..
        offsets[r + 1]."""
        table = cls.__new__(cls)
        table._build(np.asarray(flat, np.uint32).reshape(-1), np.asarray(offsets, np.int64))
        return table

    def _build(self, flat: np.ndarray, offsets: np.ndarray) -> None:
        if len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(flat):
            raise ValueError("offsets must run from 0 to the number of prints")
        self.size = len(offsets) - 1
        self._flat, self._offsets = flat, offsets
        groups = np.repeat(np.arange(self.size, dtype=np.int32), np.diff(offsets))
        order = np.argsort(flat, kind="stable")
        self.values = flat[order]
        self.rows = groups[order]
        # where each value's top bits start among the sorted values (about four values a
        # bucket; 4 B a bucket, under 1 B a print): a lookup reads its bucket, not a binary
        # search's 23 scattered places
        self._bits = int(min(24, max(8, round(np.log2(max(len(flat), 1))) - 2)))
        self._starts = np.searchsorted(
            self.values >> np.uint32(32 - self._bits), np.arange(2**self._bits + 1)
        ).astype(np.int32 if len(flat) < 2**31 else np.int64)

    def __len__(self) -> int:
        return self.size

    @property
    def nbytes(self) -> int:
        parts = (self._flat, self.values, self.rows, self._offsets, self._starts)
        return sum(a.nbytes for a in parts)

    def item(self, row: int) -> np.ndarray:
        return self._flat[self._offsets[row] : self._offsets[row + 1]]

    def short_list(
        self, phases: list[tuple[np.ndarray, float]], allowed: np.ndarray | None = None
    ) -> np.ndarray:
        """The `SHORT_LIST` items holding most of the piece's distinct prints or their one-bit
        neighbours (values held more than `COMMON_POSTINGS` times left out), most first."""
        found = [np.asarray(p, np.uint32) for p, _ in phases if len(p)]
        if not found or not len(self.values):
            return np.zeros(0, np.int64)
        exact = np.unique(np.concatenate(found))
        flips = np.left_shift(np.uint32(1), np.arange(32, dtype=np.uint32))
        asked = np.unique(np.concatenate([exact, (exact[:, None] ^ flips[None]).reshape(-1)]))
        at = self._postings(asked, max(COMMON_POSTINGS, COMMON_SHARE * self.size))
        if not len(at):
            return np.zeros(0, np.int64)
        rows = self.rows[at].astype(np.int64)
        if allowed is not None:
            rows = rows[allowed[rows]]
        held = np.bincount(rows, minlength=self.size)
        listed = np.flatnonzero(held)
        listed = listed[np.lexsort((listed, -held[listed]))]
        return listed[:SHORT_LIST]

    def _postings(self, asked: np.ndarray, most: float) -> np.ndarray:
        """Positions (in `values`) of every posting of the `asked` values (sorted, distinct)
        that are held at most `most` times. A bucket of at most `_SMALL_BUCKET` values is read
        whole and compared; a larger one (digital silence's 0 and its neighbours share the
        first) is binary-searched."""
        bucket = (asked >> np.uint32(32 - self._bits)).astype(np.int64)
        lo = self._starts[bucket].astype(np.int64)
        hi = self._starts[bucket + 1].astype(np.int64)
        size = hi - lo
        small = size <= _SMALL_BUCKET
        parts = []
        if small.any():
            lo_s, size_s, want = lo[small], size[small], asked[small]
            total = int(size_s.sum())
            at = np.repeat(lo_s - np.cumsum(size_s) + size_s, size_s) + np.arange(total)
            which = np.repeat(np.arange(len(want)), size_s)
            hit = self.values[at] == want[which]
            held = np.bincount(which[hit], minlength=len(want))
            parts.append(at[hit & (held[which] <= most)])
        if (~small).any():
            want = asked[~small]
            first = np.searchsorted(self.values, want, "left")
            count = np.searchsorted(self.values, want, "right") - first
            keep = (count > 0) & (count <= most)
            first, count = first[keep], count[keep]
            total = int(count.sum())
            parts.append(np.repeat(first - np.cumsum(count) + count, count) + np.arange(total))
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def match(
        self,
        phases: list[tuple[np.ndarray, float]],
        allowed: np.ndarray | None = None,
        also: np.ndarray | list[int] = (),  # type: ignore[assignment]
    ) -> Found:
        """The items the piece whose prints are `phases` (`query_prints`) is in (`decide`),
        among the short list (`short_list`) and `also` (items the caller has other reasons to
        ask about); `allowed` (items,) bool leaves the others out."""
        extra = np.asarray(also, np.int64).reshape(-1)
        if allowed is not None:
            extra = extra[allowed[extra]]
        rows = np.union1d(self.short_list(phases, allowed), extra)
        ber, starts = best_offsets(phases, [self.item(int(r)) for r in rows])
        return decide(ber, starts, rows)


@dataclass(frozen=True)
class Pieces:
    """The items a search puts first for a piece of sound, best first: `starts_s` where in each
    the piece starts, `ber` the prints' bit error rate there (NaN: found by the landmarks alone)
    and `votes` the landmarks' agreeing pairs (0: not among the landmarks' finds)."""

    rows: np.ndarray
    starts_s: np.ndarray
    ber: np.ndarray
    votes: np.ndarray


def pieces(found: Found, landmarks: Match) -> Pieces:
    """The prints' decision where they make one, else the landmarks'. (`bench_prints`: the
    prints decide every 1.5-4 s test piece, the landmarks leave 3-22 % undecided; the first item
    is another clip as often for both, 0-1 %: copies of one recording.) Each found item keeps
    the landmarks' votes when the landmarks found it too."""
    votes = dict(zip(landmarks.rows.tolist(), landmarks.votes.tolist(), strict=True))
    if len(found.rows):
        return Pieces(
            found.rows.astype(np.int64),
            found.starts_s.astype(np.float64),
            found.ber.astype(np.float64),
            np.array([votes.get(int(r), 0) for r in found.rows], np.int64),
        )
    return Pieces(
        landmarks.rows.astype(np.int64),
        landmarks.starts_s.astype(np.float64),
        np.full(len(landmarks.rows), np.nan),
        landmarks.votes.astype(np.int64),
    )


def to_store(found: np.ndarray) -> np.ndarray:
    """(n, 3) float32 rows that a float16 store keeps exactly (each part below 2048)."""
    values = np.asarray(found, np.uint32).reshape(-1).astype(np.int64)
    parts = [(values >> s) & ((1 << b) - 1) for s, b in _PARTS]
    return np.stack(parts, axis=1).astype(np.float32)


def from_store(rows: np.ndarray) -> np.ndarray:
    """The (n,) uint32 prints `to_store` wrote."""
    parts = np.asarray(rows, np.float32).reshape(-1, STORE_DIM).astype(np.int64)
    if len(parts) and (parts.min() < 0 or (parts >= 1 << 11).any()):
        raise ValueError("stored print parts must lie in [0, 2048)")
    value = sum(parts[:, i] << s for i, (s, _) in enumerate(_PARTS))
    return np.asarray(value, np.int64).astype(np.uint32)
