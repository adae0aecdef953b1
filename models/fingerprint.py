"""Landmark fingerprints: finding the indexed recording a piece of sound was cut from.

A piece of a file's sound — 2.5 s dropped into the search, cut anywhere, re-encoded or not — is
best found by what the signal *is*, not by what the model learned it means: the constellation of
spectral peaks of a recording (Wang, "An industrial-strength audio search algorithm", 2003).
Each peak is paired with a few peaks just after it; a pair's (frequency, frequency step, time
step) is a hash that survives gain, most codecs and resampling; a piece whose hashes meet one
item's at one consistent time offset is a piece of that item, and the offset is where it was cut.

The learned sequences and event envelopes find a piece among 1,000 clips 0.855–0.895 of the time
at 2.5 s (a periodic clock or a steady siren looks like many others at that resolution); two
different recordings rarely share many peak pairs at one offset, and where many recordings do
share a sound (a steady hum at one pitch) the lookup says nothing rather than guess.

- `peaks(wave, sr)`: (n, 2) int32 (frame, frequency bin) of the strongest local maxima of the
  log spectrogram between `LOW_HZ` and `HIGH_HZ` (a file at 8 kHz keeps its peaks), at most
  `PEAKS_PER_S` a second; frames are `HOP_S` apart.
- `query_peaks(wave, sr)`: the same at `PHASES` sub-frame shifts: a piece cut between two
  frames of the indexed grid would otherwise move its peaks by a frame where the item's did not.
- `FingerprintTable(peaks per item)`: every item's hashes, sorted for lookup; `match` votes
  per (item, offset) and returns the item (or the few copies) whose votes reach `MIN_VOTES`
  with every other item under half as many (`_decided`); else nothing.
- `to_store` / `from_store`: peaks as float16 rows (exact integers) for an index's stores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

HOP_S = 0.016  # one spectrogram frame; a found piece's start is placed to this
WINDOW_HOPS = 4  # the analysis window is 4 hops (64 ms)
LOW_HZ, HIGH_HZ = 100.0, 4000.0  # what a telephone-band or 8 kHz file still carries
PEAK_FRAMES, PEAK_BINS = 3, 8  # a peak is the largest in ±3 frames (48 ms) and ±8 bins (125 Hz)
PEAK_FLOOR_DB = 60.0  # ... and within 60 dB of the loudest point of what is fingerprinted,
SILENCE_DB = -70.0  # ... and above this power (a full-scale sine: about +48; digital silence: -120)
PEAKS_PER_S = 12.0  # the strongest this many per second of sound are kept
FAN_OUT = 3  # each peak is paired with the next few peaks ...
PAIR_FRAMES = 48  # ... within 48 frames (0.77 s) after it
PAIR_BINS = 63  # ... and 63 bins (~1 kHz) above or below
PHASES = 4  # sub-frame shifts of a query
MIN_VOTES = 6  # hashes agreeing on one offset that make a match ...
CLEAR_RATIO = 2  # ... when every other item has less than half as many ...
MAX_FOUND = 4  # ... except at most this many copies of one recording
# a hash found in more places than this many, or this share of the items, says nothing
COMMON_POSTINGS, COMMON_SHARE = 64, 0.02
SHORT_LIST = 32  # the items holding most of a piece's hashes that are voted on by offset
_F16_EXACT = 2048  # float16 holds every integer below this exactly
STORE_DIM = 3  # a stored peak: frame // 2048, frame % 2048, bin
_BIN_BITS, _HASH_BITS = 8, 22  # a hash: bin (8 bits), bin step + 63 (7), frame step (7)


@dataclass(frozen=True)
class Match:
    """Items a piece was found in: `rows` (positions in the table's items), best first, with
    `votes` (hashes agreeing on the offset) and `starts_s` (where in the item the piece starts)."""

    rows: np.ndarray
    votes: np.ndarray
    starts_s: np.ndarray


def _frame_geometry(sr: int) -> tuple[int, int, int, int]:
    hop = max(1, round(sr * HOP_S))
    n_fft = WINDOW_HOPS * hop
    low = max(1, int(np.ceil(LOW_HZ * n_fft / sr)))
    high = min(n_fft // 2, int(np.floor(HIGH_HZ * n_fft / sr)))
    return hop, n_fft, low, high


def _spectrogram(wave: np.ndarray, sr: int, shift: int = 0) -> np.ndarray:
    """(frames, bins) log power in dB of the band LOW_HZ–HIGH_HZ; frame j starts at sample
    shift + j × hop."""
    hop, n_fft, low, high = _frame_geometry(sr)
    x = np.asarray(wave, np.float32).reshape(-1)[shift:]
    if len(x) < n_fft:
        return np.zeros((0, max(0, high - low)), np.float32)
    power = power_spectrum(x, n_fft, hop)[low:high]
    return (10.0 * torch.log10(power + 1e-12)).T.contiguous().numpy()


def power_spectrum(x: np.ndarray, n_fft: int, hop: int) -> torch.Tensor:
    """(n_fft // 2 + 1, frames) power of Hann-windowed frames of `x` (float32, at least n_fft
    long), frame j starting at sample j × hop."""
    spectrum = torch.stft(
        torch.from_numpy(np.ascontiguousarray(x, np.float32)),
        n_fft,
        hop,
        window=torch.hann_window(n_fft),
        center=False,
        return_complex=True,
    )
    return spectrum.real.square() + spectrum.imag.square()


def _max_filter(s: np.ndarray, frames: int, bins: int) -> np.ndarray:
    """The largest value within ±frames and ±bins of each point (separable: along bins, then
    along frames, `_running_max`)."""
    return _running_max(_running_max(s, bins, axis=1), frames, axis=0)


def _running_max(s: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """The largest value within ±radius along `axis` (beyond the ends: nothing), by doubling:
    maxima of 2, 4, 8, … neighbours, then two overlapping ones for the window, ~log2(2 radius)
    passes where shifting by each distance took 2 radius (a 6 s query's four phases: 4.2 → 1.2
    ms on this project's AVX2 EPYC)."""
    if radius <= 0 or s.size == 0:
        return s.copy()
    x = np.moveaxis(s, axis, 0)
    edge = np.full((radius, *x.shape[1:]), -np.inf, x.dtype)
    m = np.concatenate([edge, x, edge])  # m[i] = max of the padded values i .. i + span - 1
    width, span = 2 * radius + 1, 1
    while 2 * span <= width:
        m = np.maximum(m[:-span], m[span:])
        span *= 2
    if span < width:
        m = np.maximum(m[: len(m) - (width - span)], m[width - span :])
    return np.ascontiguousarray(np.moveaxis(m, 0, axis))


def _peaks_of(s: np.ndarray) -> np.ndarray:
    if s.size == 0:
        return np.zeros((0, 2), np.int32)
    floor = max(float(s.max()) - PEAK_FLOOR_DB, SILENCE_DB)
    local = _max_filter(s, PEAK_FRAMES, PEAK_BINS)
    t, f = np.nonzero((s >= local) & (s > floor))
    if len(t) == 0:
        return np.zeros((0, 2), np.int32)
    # the strongest PEAKS_PER_S per second, judged within each second of the piece
    per_block = max(1, round(PEAKS_PER_S))
    block = (t * HOP_S).astype(np.int64)
    strength = s[t, f]
    order = np.lexsort((-strength, block))
    first = np.searchsorted(block[order], block[order])
    keep = order[np.arange(len(order)) - first < per_block]
    keep = keep[np.lexsort((f[keep], t[keep]))]  # time order, then frequency
    return np.stack([t[keep], f[keep]], axis=1).astype(np.int32)


def peaks(wave: np.ndarray, sr: int) -> np.ndarray:
    """(n, 2) int32 (frame, bin) landmarks of a whole recording (module docstring)."""
    return _peaks_of(_spectrogram(wave, sr))


def query_peaks(wave: np.ndarray, sr: int) -> list[tuple[np.ndarray, float]]:
    """A piece's landmarks at each of `PHASES` sub-frame shifts, with the shift in seconds."""
    hop = _frame_geometry(sr)[0]
    out = []
    for p in range(PHASES):
        shift = round(p * hop / PHASES)
        out.append((_peaks_of(_spectrogram(wave, sr, shift)), shift / sr))
    return out


def _pairs(found: np.ndarray, groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(hash uint32, anchor peak's index) of each peak paired with up to FAN_OUT peaks after it
    (within PAIR_FRAMES frames and PAIR_BINS bins). `groups` (n,): peaks of many recordings
    concatenated, each recording's in time order; pairs never cross a recording."""
    found = np.asarray(found).reshape(-1, 2)
    n = len(found)
    if n < 2:
        return np.zeros(0, np.uint32), np.zeros(0, np.int64)
    if found[:, 1].min() < 0 or found[:, 1].max() >= 1 << _BIN_BITS:
        raise ValueError(f"peak bins must lie in [0, {1 << _BIN_BITS})")
    if found[:, 0].max() >= 1 << 31:
        raise ValueError("peak frames must lie below 2**31")
    # int32 throughout: half the memory traffic of a table's millions of peaks
    t, f = found[:, 0].astype(np.int32), found[:, 1].astype(np.int32)
    if groups is not None:
        groups = np.asarray(groups).astype(np.int32, copy=False)
    keys, anchors = [], []
    taken = np.zeros(n, np.int32)
    # the peaks still looking for partners: a peak drops out once it has FAN_OUT of them, or
    # once the next candidate lies past PAIR_FRAMES or in another recording (time order);
    # contiguous slices, not gathers: a table pairs millions of peaks
    alive = np.ones(n, bool)
    step = 1
    while step < n and alive[: n - step].any():
        m = n - step
        dt = t[step:] - t[:m]
        near = alive[:m] & (dt <= PAIR_FRAMES)
        if groups is not None:
            near &= groups[step:] == groups[:m]
        alive[:m] = near
        alive[m:] = False
        df = f[step:] - f[:m]
        i = np.flatnonzero(near & (dt >= 1) & (np.abs(df) <= PAIR_BINS))
        taken[i] += 1
        keys.append((f[i] << 14) | ((df[i] + PAIR_BINS) << 7) | dt[i])
        anchors.append(i)
        alive[i[taken[i] >= FAN_OUT]] = False
        step += 1
    return np.concatenate(keys).astype(np.uint32), np.concatenate(anchors).astype(np.int64)


def hashes(found: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hash uint32, anchor frame int64) of one recording's landmark pairs (`_pairs`)."""
    key, anchor = _pairs(found)
    return key, np.asarray(found, np.int64).reshape(-1, 2)[anchor, 0]


class FingerprintTable:
    """Every item's hashes, sorted, for `match`. `items[r]`: item r's `peaks` (may be empty);
    `from_concatenated` takes them as one array and offsets, as an index's store holds them."""

    def __init__(self, items: list[np.ndarray]) -> None:
        counts = np.array([len(p) for p in items], np.int64)
        found = (
            np.concatenate([np.asarray(p, np.int64).reshape(-1, 2) for p in items])
            if items
            else np.zeros((0, 2), np.int64)
        )
        self._build(found, np.concatenate([[0], np.cumsum(counts)]))

    @classmethod
    def from_concatenated(cls, found: np.ndarray, offsets: np.ndarray) -> FingerprintTable:
        """`found` (total, 2) every item's peaks in row order, item r's at offsets[r] ..
        offsets[r + 1]."""
        table = cls.__new__(cls)
        table._build(np.asarray(found, np.int64).reshape(-1, 2), np.asarray(offsets, np.int64))
        return table

    def _build(self, found: np.ndarray, offsets: np.ndarray) -> None:
        self.size = len(offsets) - 1
        groups = np.repeat(np.arange(self.size, dtype=np.int64), np.diff(offsets))
        # pairs are found by position, so each item's peaks must be in time order (as `peaks`
        # gives them; sorted here only where they are not)
        if len(found) > 1 and not _in_order(found, groups):
            order = np.lexsort((found[:, 1], found[:, 0], groups))
            found, groups = found[order], groups[order]
        key, anchor = _pairs(found, groups)
        order = np.argsort(key)
        self.keys = key[order]
        self.rows = groups[anchor[order]].astype(np.int32)
        self.times = found[anchor[order], 0].astype(np.int32)

    def __len__(self) -> int:
        return self.size

    @property
    def nbytes(self) -> int:
        return self.keys.nbytes + self.rows.nbytes + self.times.nbytes

    def match(
        self,
        phases: list[tuple[np.ndarray, float]],
        allowed: np.ndarray | None = None,
        min_votes: int = MIN_VOTES,
    ) -> Match:
        """Items holding the piece whose landmarks are `phases` (`query_peaks`), best first.
        An item's votes are its most hashes agreeing on one offset (or two neighbouring ones),
        taken over the phases; `allowed` (items,) bool leaves the others out. Items are first
        short-listed by how many of the piece's hashes they hold at all (`SHORT_LIST`): only
        those are voted on by offset, so the cost follows the postings, not the table."""
        best_votes = np.zeros(self.size, np.int64)
        best_start = np.zeros(self.size, np.float64)
        for found, shift_s in phases:
            key, anchor = hashes(found)
            if not len(key) or not len(self.keys):
                continue
            lo = np.searchsorted(self.keys, key, "left")
            count = np.searchsorted(self.keys, key, "right") - lo
            use = (count > 0) & (count <= max(COMMON_POSTINGS, COMMON_SHARE * self.size))
            if not use.any():
                continue
            lo, count, anchor, key = lo[use], count[use], anchor[use], key[use]
            # every posting of every query hash, flattened, with its query anchor
            total = int(count.sum())
            start = np.repeat(lo - np.cumsum(count) + count, count) + np.arange(total)
            q_anchor = np.repeat(anchor, count)
            rows = self.rows[start].astype(np.int64)
            if allowed is not None:
                keep = allowed[rows]
                start, rows, q_anchor = start[keep], rows[keep], q_anchor[keep]
            held = np.bincount(rows, minlength=self.size)
            if held.max(initial=0) < min_votes:
                continue
            listed = np.argpartition(-held, min(SHORT_LIST, self.size) - 1)[:SHORT_LIST]
            chosen = np.zeros(self.size, bool)
            chosen[listed[held[listed] >= min_votes]] = True
            keep = chosen[rows]
            start, rows, q_anchor = start[keep], rows[keep], q_anchor[keep]
            offset = self.times[start].astype(np.int64) - q_anchor
            key = self.keys[start].astype(np.int64)
            self._vote(rows, offset, key, shift_s, best_votes, best_start)
        return _decided(best_votes, best_start, min_votes)

    def _vote(
        self,
        rows: np.ndarray,
        offset: np.ndarray,
        key: np.ndarray,
        shift_s: float,
        best_votes: np.ndarray,
        best_start: np.ndarray,
    ) -> None:
        """Each item's most hashes agreeing on one offset (or two neighbouring ones), kept in
        best_votes / best_start where more than before."""
        if not len(rows):
            return
        base = int(offset.min())
        offset = offset - base
        width = int(offset.max()) + 2
        # each hash votes once per (item, offset): a steady tone repeats its hashes at every
        # anchor, and would otherwise outvote a real match in any item that has the tone
        fine = np.unique((rows * width + offset) << _HASH_BITS | key) >> _HASH_BITS
        fine, votes = np.unique(fine, return_counts=True)
        # a piece's frames fall between the item's: its votes split over two offsets
        nxt = np.minimum(np.searchsorted(fine, fine + 1), len(fine) - 1)
        pair = votes + np.where(fine[nxt] == fine + 1, votes[nxt], 0)
        row_of = fine // width
        order = np.lexsort((-pair, row_of))
        firsts = order[np.r_[True, row_of[order][1:] != row_of[order][:-1]]]
        r, v, cell = row_of[firsts], pair[firsts], fine[firsts]
        # of the two offsets, the one with more votes says where
        later = (fine[nxt[firsts]] == cell + 1) & (votes[nxt[firsts]] > votes[firsts])
        at = cell % width + later + base
        better = v > best_votes[r]
        best_votes[r[better]] = v[better]
        best_start[r[better]] = at[better] * HOP_S - shift_s


def _in_order(found: np.ndarray, groups: np.ndarray) -> bool:
    same = groups[1:] == groups[:-1]
    return bool((groups[1:] >= groups[:-1]).all() and (found[1:, 0] >= found[:-1, 0])[same].all())


def _decided(votes: np.ndarray, starts: np.ndarray, min_votes: int) -> Match:
    """The items a piece is in: the leading group, every item within `CLEAR_RATIO` of the most
    votes — when that is at least `min_votes` and the group is at most `MAX_FOUND` items (copies
    of one recording). A larger group is a sound many recordings share (SynthAV's engines
    hum at the same pitches in hundreds of clips): the piece says nothing about which, and
    nothing is returned."""
    none = Match(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64))
    if not len(votes) or votes.max() < min_votes:
        return none
    group = np.flatnonzero(votes * CLEAR_RATIO >= votes.max())
    if len(group) > MAX_FOUND:
        return none
    group = group[np.lexsort((group, -votes[group]))]
    return Match(group, votes[group], np.maximum(starts[group], 0.0))


def to_store(found: np.ndarray) -> np.ndarray:
    """(n, 3) float32 rows (frame // 2048, frame % 2048, bin) that a float16 store keeps
    exactly (every value below 2048)."""
    found = np.asarray(found, np.int64).reshape(-1, 2)
    if len(found) and (found[:, 1].max() >= _F16_EXACT or found.min() < 0):
        raise ValueError("peak bins must lie in [0, 2048)")
    return np.stack(
        [found[:, 0] // _F16_EXACT, found[:, 0] % _F16_EXACT, found[:, 1]], axis=1
    ).astype(np.float32)


def from_store(rows: np.ndarray) -> np.ndarray:
    """The (n, 2) int32 peaks `to_store` wrote."""
    rows = np.asarray(rows, np.float32).reshape(-1, 3).astype(np.int64)
    return np.stack([rows[:, 0] * _F16_EXACT + rows[:, 1], rows[:, 2]], axis=1).astype(np.int32)
