"""Event envelopes: when a clip's sound starts something and when its picture changes.

Every clip has its own event times, shared by what it shows and what it sounds (a bell is struck
and flashes, a drum is hit and squashes). Two hand-made signals carry them, one value per frame
(`rate` bins a second, the visual frame rate):
- sound: onset strength, the positive spectral flux of the log-mel (`models.features.LogMel`,
  100 frames a second), the largest value inside each bin, so an onset anywhere in it counts;
- picture: the mean absolute difference between a frame and the next, measured by the decoder
  on every frame of the file (not on the sampled ones, which judder when the file has another
  frame rate), the largest inside each bin.
Each minus its 5-bin moving average (motion across the screen is slow; events are not), then
standardised: a clip's envelope says *when* things happen in it, nothing of what they are.
A model whose checkpoint has a trained picture event network (`models.event_net`, learned from
the training clips' sound) uses its envelope instead of the picture's change envelope
(`TrimodalModel.picture_envelope`); the picture's other envelopes here stay hand-made.

Matched across modalities they identify a clip from its sound far better than any pooled vector
(`benchmarks/bench_events.py`: audio→video R@1 0.50 on the 1,000-clip test pool, 0.19 on a
corpus rendered by another toolchain, vs 0.03 pooled), and they do not depend on how a clip was
drawn or synthesised. The learned per-step sequences (`models.sequence`) keep 4 steps a second
and, on val, found far less of it (sequence-only audio→video R@1 0.32 vs 0.57). So an index keeps
both envelopes per item, and the search (`index.search`) finds candidates by them and adds their
correlation to the re-rank's score with a weight measured on the validation split (`models.policy`).

Scores: a query envelope against an item's at every placement where they overlap fully, give or
take `max_lag` bins (a frame shows an event up to a frame after it sounds, and encoders shift
sound further: AAC priming, Opus pre-skip, frame-rate conversion), the dot product over the
overlap divided by the query's length — a correlation for standardised envelopes.

Sound against picture, the sound's bands meet the picture's single envelope and the best band
counts (`match_across`): a clip's sound sums everything audible (rain, wind, a source offscreen)
and the picture shows only some of it, while one band often holds the seen source alone.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from models.features import LogMel, LogMelConfig
from models.motion import HALVES, frame_halves, frame_motion
from models.spare import SPARE

DETREND_BINS = 5
# ±2 bins at 12 a second: a frame of quantisation plus one of an encoder's shift (AAC priming,
# frame-rate conversion). On the validation split ±1 and ±2 tie, with the picture placement
# before and after its fix (summed R@1 of the chosen weightings 4.065 vs 4.050: three queries of
# 200); the generator's own clips carry no encoder shift to tell them apart, so the wider one is
# kept for the re-encoded files real users upload.
MAX_LAG_BINS = 2
# The first pass scans every item with at most this many bins of the query (its most eventful
# stretch): its cost grows with the window. A whole clip of SynthAV's 6 s fits: against the
# items at its own alignment (`EventScan`), val whole-clip audio→video, the right clip among the
# scan's best 50: 0.683 with 3 s, 0.721 with 6 s.
SCAN_WINDOW_S = 6.0
# Placements of a query in an item (± `MAX_LAG_BINS` and the length difference) up to which the
# scan of a sound against a picture meets every kind of the picture's envelopes (`EventScan`).
PINNED_PLACEMENTS = 2 * (2 * MAX_LAG_BINS + 1)
# How many of the scan's best items join the pooled first pass's candidates (`index.search`; the
# evaluation does the same).
SCAN_CANDIDATES = 50
# A scan of at least this many rows is split between two cores when a search runs alone
# (`models.spare`): below it, handing half to a helper costs about what it saves.
SPLIT_SCAN_ROWS = 20_000
# The scan multiplies this many rows (every kind of each) at a time: small enough for a block and
# its product to stay in the cache, large enough to amortise the call. Its query side is padded
# to a multiple of `SCAN_COLUMNS` columns (copies of its first): float32 products with a whole
# clip's 5 placements ran 2.5x slower than with 16 on this project's AVX2 EPYC. Together: a 6 s
# sound against 100k pictures' six kinds 122 → 32 ms on one thread (`benchmarks/bench_scan`).
SCAN_BLOCK_ROWS = 1024
SCAN_COLUMNS = 16
# A sound matched against sounds (a piece of a recording, searched among recordings) compares
# onsets band by band: the log-mel's bins in this many equal groups, each group's flux an
# envelope of its own (`sound_bands`). Which bands start together says what sounded as well as
# when. Envelope alone, 2.5 s pieces of the 200 val clips among those clips and 800 train clips:
# R@1 0.30 with one envelope, 0.66 / 0.77 / 0.84 with 4 / 8 / 16 bands. Eight is the compromise
# with the index's bytes (an int8 store: 10 B a bin, 720 B for a 6 s item).
SOUND_BANDS = 8
# Footage against footage likewise compares the picture's changes quadrant by quadrant: where in
# the frame things change says which clip this is as well as when (envelope alone, 2.5 s pieces
# of the val clips among them and 800 train clips: R@1 0.375 whole frame, 0.93 in 2 × 2
# quadrants, 0.965 in 4 × 4; the quadrants keep the index at 6 B a bin).
PICTURE_REGIONS = 4
# What each modality's banded envelope has per bin.
BANDS = {"audio": SOUND_BANDS, "visual": PICTURE_REGIONS}
# A piece of sound cut anywhere starts part of the way into one of its recording's bins, and its
# own bins then straddle the recording's: on val, 2.5 s pieces cut at any sample found their clip
# (banded envelopes alone) R@1 0.465 against 0.825 for pieces cut on the bin grid. Matched at
# this many phases (the piece's first 0, 1/4, 2/4, 3/4 of a bin dropped), the best phase
# counting: 0.73 (2 phases: 0.66).
SOUND_PHASES = 4
# A sound that starts with a short near-silence starts there, not with an event: an encoder's
# priming decodes as near-silence where the container does not say to drop it (MP3 in Matroska:
# ~1,105 samples; AAC without an edit list: 1,024-2,112), and the sound's first rise out of it
# is the stream starting, as a picture's first frame is (its change: none). At most this long
# (the longest of those at 8 kHz for MP3, 16 kHz for AAC), and this far below the sound's
# median loudness. On the re-encoded val clips 18 of the 28 MP3 files' envelopes had their
# largest value (up to 7.8 standard deviations) at that rise, and whole clips found their picture
# by their sound R@1 0.036 (0.071 without it); no clip of the generator's own starts so (their
# quiet starts are longer).
LEAD_IN_S = 0.14
LEAD_IN_DB = 30.0


@lru_cache(maxsize=4)
def _mel(sample_rate: int) -> LogMel:
    return LogMel(LogMelConfig(sample_rate=sample_rate))


def _max_per_bin(values: np.ndarray, per_second: float, rate: float, length: int) -> np.ndarray:
    return _max_per_bins(np.asarray(values)[None], per_second, rate, length)[0]


def _max_per_bins(values: np.ndarray, per_second: float, rate: float, length: int) -> np.ndarray:
    """(K, length) float32: each row of `values` (K, F), sampled at `per_second`, the largest
    inside each of `length` bins at `rate` (no less than 0; 0 where a bin has no sample). The
    samples of a bin are contiguous: one reduction for all rows, not one scatter a row."""
    values = np.asarray(values)
    bins = np.floor(np.arange(values.shape[1]) / per_second * rate + 1e-9).astype(np.int64)
    out = np.zeros((values.shape[0], length), np.float32)
    keep = bins < length
    kept = bins[keep]
    if kept.size:
        starts = np.flatnonzero(np.r_[True, kept[1:] != kept[:-1]])
        found = np.maximum.reduceat(values[:, keep].astype(np.float32), starts, axis=1)
        out[:, kept[starts]] = np.maximum(found, 0.0)
    return out


def _standardised_columns(values: np.ndarray, fps: float, rate: float, length: int) -> np.ndarray:
    """(length, K): each column of per-frame `values` (T, K), the largest inside each bin,
    standardised on its own (a banded envelope: `picture_bands`, `picture_halves`)."""
    per_bin = _max_per_bins(np.asarray(values).T, fps, rate, length)
    return np.ascontiguousarray(standardise_rows(per_bin).T)


def standardise(envelope: np.ndarray) -> np.ndarray:
    """Minus its moving average, zero mean, unit variance (all zeros when nothing changes)."""
    return standardise_rows(np.asarray(envelope).reshape(1, -1))[0]


def standardise_rows(envelopes: np.ndarray) -> np.ndarray:
    """`standardise` of each row of (K, L) `envelopes`, all rows in one pass, as float32."""
    x = np.asarray(envelopes, np.float64)
    if x.shape[1] == 0:
        return x.astype(np.float32)
    half = DETREND_BINS // 2
    padded = np.pad(x, ((0, 0), (half, half)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, DETREND_BINS, axis=1)
    x = x - windows @ (np.ones(DETREND_BINS) / DETREND_BINS)
    std = x.std(axis=1, keepdims=True)
    flat = ~np.isfinite(std) | (std < 1e-6)
    out = ((x - x.mean(axis=1, keepdims=True)) / np.where(flat, 1.0, std)).astype(np.float32)
    out[flat[:, 0]] = 0.0
    return out


def _flux(wave: np.ndarray, sample_rate: int) -> tuple[np.ndarray, float]:
    """(n_mels, F) positive log-mel flux of a mono waveform (column 0: zeros; after a lead-in,
    `lead_in_frames`, every frame whose window reaches into it: zeros too), and F's rate."""
    wave = np.asarray(wave, np.float32).reshape(-1)
    if wave.size == 0:
        raise ValueError("no sound to take an envelope of")
    if not np.isfinite(wave).all():
        raise ValueError("the sound has non-finite samples")
    mel = _mel(int(sample_rate))
    spec = mel(torch.from_numpy(np.ascontiguousarray(wave))).numpy()  # (n_mels, F)
    rise = np.concatenate([np.zeros((len(spec), 1)), np.maximum(np.diff(spec, axis=1), 0.0)], 1)
    per_second = mel.cfg.frames_per_second
    lead = lead_in_frames(spec, per_second)
    if lead:  # the frames that straddle the lead-in's end see the stream start, not an event
        rise[:, : lead + -(-mel.cfg.n_fft // mel.cfg.hop_length)] = 0.0
    return rise, per_second


def lead_in_frames(spec: np.ndarray, per_second: float) -> int:
    """How many of a log-mel's (n_mels, F) first frames are a lead-in (`LEAD_IN_S`): all more
    than `LEAD_IN_DB` below the median frame's loudness, no longer than `LEAD_IN_S`, and sound
    after them; 0 where there is none."""
    if spec.shape[1] < 2:
        return 0
    top = spec.max(axis=0)
    loudness = (top + np.log(np.exp(spec - top).mean(axis=0))) * (10.0 / math.log(10.0))  # dB
    quiet = loudness < np.median(loudness) - LEAD_IN_DB
    if not quiet[0] or quiet.all():
        return 0
    lead = int(np.argmin(quiet))  # the first frame with sound
    return lead if lead <= LEAD_IN_S * per_second + 1e-9 else 0


def _bins(wave: np.ndarray, sample_rate: int, rate: float) -> int:
    return max(1, math.ceil(np.asarray(wave).size / sample_rate * rate - 1e-9))


def sound_events(wave: np.ndarray, sample_rate: int, rate: float) -> np.ndarray:
    """(ceil(seconds × rate),) standardised onset envelope of a mono waveform."""
    flux, per_second = _flux(wave, sample_rate)
    return standardise(_max_per_bin(flux.sum(0), per_second, rate, _bins(wave, sample_rate, rate)))


def sound_bands(
    wave: np.ndarray, sample_rate: int, rate: float, bands: int = SOUND_BANDS
) -> np.ndarray:
    """(ceil(seconds × rate), bands): the onset envelope of each group of mel bins (low to
    high), each standardised on its own; what a sound is matched by against other sounds."""
    return sound_envelopes(wave, sample_rate, rate, bands)[1]


def sound_envelopes(
    wave: np.ndarray, sample_rate: int, rate: float, bands: int = SOUND_BANDS
) -> tuple[np.ndarray, np.ndarray]:
    """`sound_events` and `sound_bands` from one spectrogram."""
    flux, per_second = _flux(wave, sample_rate)
    if not 1 <= bands <= len(flux):
        raise ValueError(f"bands must be 1..{len(flux)}, got {bands}")
    length = _bins(wave, sample_rate, rate)
    groups = np.array_split(np.arange(len(flux)), bands)
    rows = np.stack([flux.sum(0)] + [flux[g].sum(0) for g in groups])  # the whole, then bands
    envelopes = standardise_rows(_max_per_bins(rows, per_second, rate, length))
    return envelopes[0], np.ascontiguousarray(envelopes[1:].T)


@dataclass(frozen=True)
class Phase:
    """A sound's envelopes with its first `skip_s` seconds dropped (`sound_phases`)."""

    skip_s: float
    events: np.ndarray  # (bins,) as `sound_events`
    bands: np.ndarray  # (bins, SOUND_BANDS) as `sound_bands`


def sound_phases(
    wave: np.ndarray, sample_rate: int, rate: float, phases: int = SOUND_PHASES
) -> list[Phase]:
    """The envelopes of a sound at `phases` sub-bin offsets, phase 0 first (`SOUND_PHASES`): one
    of them lies within 1 / (phases × rate) s of any recording's bin grid."""
    wave = np.asarray(wave, np.float32).reshape(-1)
    out = []
    for p in range(max(1, phases)):
        skip = round(p * sample_rate / rate / max(1, phases))
        if p and wave.size - skip < sample_rate / rate:  # less than a bin left
            break
        single, banded = sound_envelopes(wave[skip:], sample_rate, rate)
        out.append(Phase(skip / sample_rate, single, banded))
    return out


def best_phase(
    phases: list[Phase],
    candidates: list[np.ndarray],
    rate: float,
    banded: bool,
    across: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Each candidate's best correlation over a sound's phases (`match_events` on their single or
    banded envelopes: banded against single candidates, a picture's, the best band counts;
    `across`: against pictures by the best pair, `match_across`), and where the whole sound
    starts in it then, in (fractional) bins."""
    scores = np.full(len(candidates), -np.inf, np.float32)
    starts = np.zeros(len(candidates))
    matched = _match([p.bands if banded else p.events for p in phases], candidates, across=across)
    for phase, found in zip(phases, matched, strict=True):
        better = found.scores > scores
        scores = np.where(better, found.scores, scores)
        starts = np.where(better, found.placement - phase.skip_s * rate, starts)
    return scores, starts


def picture_events(
    frames: np.ndarray, fps: float, rate: float, changes: np.ndarray | None = None
) -> np.ndarray:
    """(ceil(len(frames) / fps × rate),) standardised change envelope of (T, H, W, C) frames.

    `changes` (T,), the decoder's change per frame measured on every frame of the file
    (`models.media.DecodedMedia.changes`), is used when given: frames sampled from another frame
    rate than `fps` judder, and differences of the sampled frames then follow the judder, not
    the events (on re-encoded val clips, audio→video by envelopes alone R@1 0.17 from sampled
    frames, 0.43 from the file's own frames; the generator's own clips: 0.63 either way)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or len(frames) == 0:
        raise ValueError(f"frames must be (T, H, W, C) with T ≥ 1, got {frames.shape}")
    if changes is not None:
        change = np.asarray(changes, np.float32).reshape(-1)
        if len(change) != len(frames) or not np.isfinite(change).all():
            raise ValueError(
                f"changes must be {len(frames)} finite values, one per frame, got {change.shape}"
            )
    else:
        change = frame_changes(frames)
    length = max(1, math.ceil(len(frames) / fps * rate - 1e-9))
    return standardise(_max_per_bin(change, fps, rate, length))


def _scaled(frames: np.ndarray) -> np.ndarray:
    return frames.astype(np.float32) / (255.0 if frames.dtype == np.uint8 else 1.0)


def frame_changes(frames: np.ndarray) -> np.ndarray:
    """(T,) the mean absolute difference between each of (T, H, W, C) `frames` and the next
    (0 after the last), measured on the frames themselves: what the decoder's `changes` are
    when a caller has none. What changed between frame k and frame k + 1 happened in the
    interval that starts at frame k: placed there, a change lines up with the onset that caused
    it (placed at k + 1, every picture came out a bin late, and the lag tolerance was
    lopsided)."""
    f = _scaled(np.asarray(frames))
    return np.concatenate([np.abs(np.diff(f, axis=0)).mean(axis=(1, 2, 3)), [0.0]])


def frame_region_changes(frames: np.ndarray) -> np.ndarray:
    """(T, PICTURE_REGIONS) `frame_changes` of each quadrant (top left, top right, bottom left,
    bottom right): what the decoder's `region_changes` are when a caller has none."""
    d = np.abs(np.diff(_scaled(np.asarray(frames)), axis=0)).mean(axis=3)  # (T - 1, H, W)
    h, w = max(1, d.shape[1] // 2), max(1, d.shape[2] // 2)
    quads = [d[:, :h, :w], d[:, :h, w:], d[:, h:, :w], d[:, h:, w:]]
    per = np.stack([q.mean(axis=(1, 2)) if q.size else np.zeros(len(d)) for q in quads], 1)
    return np.concatenate([per, np.zeros((1, PICTURE_REGIONS))])


def picture_motion(
    frames: np.ndarray, fps: float, rate: float, motion: np.ndarray | None = None
) -> np.ndarray:
    """(ceil(len(frames) / fps × rate),) standardised envelope of where the picture's motion
    changes (`models.motion`: a ball landing, which the change envelope cannot see). `motion`
    (T,), the decoder's, measured on every frame of the file (`DecodedMedia.motion`), is used
    when given, as `picture_events` uses its `changes`; else it is measured on the frames."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or len(frames) == 0:
        raise ValueError(f"frames must be (T, H, W, C) with T ≥ 1, got {frames.shape}")
    if motion is not None:
        values = np.asarray(motion, np.float32).reshape(-1)
        if len(values) != len(frames) or not np.isfinite(values).all():
            raise ValueError(
                f"motion must be {len(frames)} finite values, one per frame, got {values.shape}"
            )
    else:
        values = frame_motion(frames, fps)
    length = max(1, math.ceil(len(frames) / fps * rate - 1e-9))
    return standardise(_max_per_bin(values, fps, rate, length))


def picture_halves(
    frames: np.ndarray, fps: float, rate: float, halves: np.ndarray | None = None
) -> np.ndarray:
    """(ceil(len(frames) / fps × rate), 2 × len(HALVES)): for each half of the picture
    (`models.motion.HALVES`: top, bottom) its change envelope and its motion envelope, each
    standardised on its own; what a picture also meets a sound by (`picture_kinds`) where the
    policy measured it so. `halves` (T, 2 × len(HALVES)), the decoder's
    (`models.media.DecodedMedia.halves`, measured on every frame of the file), is used when
    given, as `picture_events` uses its `changes`."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or len(frames) == 0:
        raise ValueError(f"frames must be (T, H, W, C) with T ≥ 1, got {frames.shape}")
    width = 2 * len(HALVES)
    if halves is not None:
        values = np.asarray(halves, np.float32)
        if values.shape != (len(frames), width) or not np.isfinite(values).all():
            raise ValueError(
                f"halves must be {len(frames)} × {width} finite values, got {values.shape}"
            )
    else:
        values = frame_halves(frames, fps)
    length = max(1, math.ceil(len(frames) / fps * rate - 1e-9))
    return _standardised_columns(values, fps, rate, length)


def picture_kinds(
    events: np.ndarray, motion: np.ndarray | None, halves: np.ndarray | None = None
) -> np.ndarray:
    """What a picture meets a sound by (`match_across`): (bins, K), its change envelope, its
    motion envelope (`picture_motion`) and, when given, its halves' (`picture_halves`); the
    change envelope alone (bins,) when it has no motion envelope (an index or a cache made
    before they were kept)."""
    events = np.asarray(events, np.float32)
    if motion is None or not len(motion) or not len(events):
        return events
    motion = np.asarray(motion, np.float32).reshape(-1)
    if len(motion) != len(events):
        raise ValueError(f"{len(motion)} motion bins for {len(events)} change bins")
    columns = [events[:, None], motion[:, None]]
    if halves is not None and len(halves):
        halves = np.asarray(halves, np.float32).reshape(len(halves), -1)
        if len(halves) != len(events):
            raise ValueError(f"{len(halves)} bins of halves for {len(events)} change bins")
        columns.append(halves)
    return np.concatenate(columns, axis=1)


def picture_bands(
    frames: np.ndarray, fps: float, rate: float, region_changes: np.ndarray | None = None
) -> np.ndarray:
    """(ceil(len(frames) / fps × rate), PICTURE_REGIONS): the change envelope of each quadrant
    of the picture (top left, top right, bottom left, bottom right), each standardised on its
    own; what footage is matched by against other footage. `region_changes` (T, 4), the
    decoder's (`models.media.DecodedMedia.region_changes`, measured on every frame of the file),
    is used when given, as `picture_events` uses its `changes`."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or len(frames) == 0:
        raise ValueError(f"frames must be (T, H, W, C) with T ≥ 1, got {frames.shape}")
    if region_changes is not None:
        change = np.asarray(region_changes, np.float32)
        if change.shape != (len(frames), PICTURE_REGIONS) or not np.isfinite(change).all():
            raise ValueError(
                f"region changes must be {len(frames)} × {PICTURE_REGIONS} finite values, "
                f"got {change.shape}"
            )
    else:
        change = frame_region_changes(frames)
    length = max(1, math.ceil(len(frames) / fps * rate - 1e-9))
    return _standardised_columns(change, fps, rate, length)


@dataclass(frozen=True)
class EventMatches:
    scores: np.ndarray  # (K,) best correlation per candidate (-inf: nothing to compare)
    placement: np.ndarray  # (K,) int: where the query's first bin lies in the candidate, bins


def _placements(n_query: int, lengths: torch.Tensor, max_lag: int) -> tuple[torch.Tensor, ...]:
    """Bounds of the placements p (query bin 0 at candidate bin p) each candidate allows: every
    offset of the shorter inside the longer, ± max_lag."""
    low = torch.clamp(lengths - n_query, max=0) - max_lag
    high = torch.clamp(lengths - n_query, min=0) + max_lag
    return low, high


def match_events(
    query: np.ndarray,
    candidates: list[np.ndarray],
    max_lag: int = MAX_LAG_BINS,
    across: bool | None = None,
) -> EventMatches:
    """A query envelope against each candidate's, at every placement allowed (module doc).
    Banded envelopes (`sound_bands`: (bins, B) query and candidates) score the mean over bands
    of each band's correlation at one placement; one side banded and the other single (a
    sound against a picture), the best band's (`match_across`). `across` True: a sound against
    a picture by the best pair whatever the shapes (`match_across`); False: alike."""
    return _match([query], candidates, max_lag, across)[0]


def _match(
    queries: list[np.ndarray],
    candidates: list[np.ndarray],
    max_lag: int = MAX_LAG_BINS,
    across: bool | None = None,
) -> list[EventMatches]:
    """`match_across` when `across` (a sound against a picture), `match_many` when not; None:
    `match_many` where queries and candidates are alike (both single or both banded),
    `match_across` where one side is banded and the other single."""
    if across is not None:
        return (match_across if across else match_many)(queries, candidates, max_lag)
    banded_queries = np.asarray(queries[0]).ndim == 2
    shaped = [c for c in candidates if len(c)]
    banded_candidates = bool(shaped) and np.asarray(shaped[0]).ndim == 2
    if shaped and banded_queries != banded_candidates:
        return match_across(queries, candidates, max_lag)
    return match_many(queries, candidates, max_lag)


def match_across(
    queries: list[np.ndarray], candidates: list[np.ndarray], max_lag: int = MAX_LAG_BINS
) -> list[EventMatches]:
    """A sound against a picture by their best pair of envelopes: each side single ((bins,)) or
    banded ((bins, B): a sound's bands, `sound_bands`; a picture's kinds, `picture_kinds`), every
    query alike and every candidate alike. Each query band's correlation with each candidate band
    at every placement allowed; the best (pair, placement) counts, and its placement is returned.

    The sound's single envelope sums all it holds, the picture shows a part of it: matched by
    envelopes alone (`benchmarks/bench_crossbands.py`), on the val clips whose sound and picture
    share a source, among 1,000 clips, audio→video R@1 0.568 with the single envelope, 0.628
    with the sound's best band (video→audio 0.557 → 0.639); test 0.507 → 0.557, another
    renderer's clips 0.140 → 0.203, re-encoded ones 0.363 → 0.403. The picture's motion
    envelope beside its change envelope (`picture_motion`, `bench_crossbands-20261201T102919Z`):
    val 0.628 → 0.678, test 0.557 → 0.653, foreign 0.203 → 0.223, re-encoded 0.403 → 0.427."""
    arrays = [np.asarray(q, np.float32) for q in queries]
    if any(a.ndim != arrays[0].ndim for a in arrays) or arrays[0].ndim not in (1, 2):
        raise ValueError("the queries must all be banded or all single")
    q_bands = _band_count(arrays, "queries") if arrays[0].ndim == 2 else 1
    singles = (
        [a[:, b].copy() for a in arrays for b in range(q_bands)]
        if q_bands > 1
        else [a.reshape(len(a)) for a in arrays]
    )
    shaped = [np.asarray(c, np.float32) for c in candidates]
    nonempty = [c for c in shaped if len(c)]
    c_ndim = nonempty[0].ndim if nonempty else 1
    if any(c.ndim != c_ndim for c in nonempty) or c_ndim not in (1, 2):
        raise ValueError("the candidates must all be banded or all single")
    c_bands = _band_count(nonempty, "candidates") if c_ndim == 2 else 1
    # laid out once as they are, then each band a single candidate of its own: k × bands rows
    laid = _layout(shaped, c_bands, singles, max_lag)
    if laid is not None:
        x = laid.x.reshape(len(shaped) * c_bands, 1, laid.x.shape[2])
        laid = _Laid(x, laid.lengths.repeat_interleave(c_bands), laid.pad)
    found = _correlate(singles, laid, len(shaped) * c_bands, 1, max_lag)
    rows = np.arange(len(shaped))
    out = []
    for i in range(len(arrays)):
        mine = found[i * q_bands : (i + 1) * q_bands]
        # (K, candidate bands × query bands)
        scores = np.concatenate([m.scores.reshape(len(shaped), c_bands) for m in mine], axis=1)
        placement = np.concatenate(
            [m.placement.reshape(len(shaped), c_bands) for m in mine], axis=1
        )
        best = scores.argmax(axis=1)
        out.append(EventMatches(scores[rows, best], placement[rows, best]))
    return out


def _band_count(arrays: list[np.ndarray], what: str) -> int:
    if any(a.ndim != 2 for a in arrays) or len({a.shape[1] for a in arrays}) != 1:
        raise ValueError(f"the {what} must all be banded, with the same bands")
    return int(arrays[0].shape[1])


def _best_of(per_band: list[EventMatches]) -> EventMatches:
    """The best band's score and placement per candidate."""
    scores = np.stack([m.scores for m in per_band])  # (B, K)
    placement = np.stack([m.placement for m in per_band])
    best = scores.argmax(axis=0)
    cols = np.arange(scores.shape[1])
    return EventMatches(scores[best, cols], placement[best, cols])


def match_many(
    queries: list[np.ndarray], candidates: list[np.ndarray], max_lag: int = MAX_LAG_BINS
) -> list[EventMatches]:
    """`match_events` for several queries of one kind (a sound's phases) against the same
    candidates, laid out once: the layout, not the correlation, is most of the cost."""
    arrays = [np.asarray(q, np.float32) for q in queries]
    channels = 1 if arrays[0].ndim == 1 else arrays[0].shape[1]
    laid = _layout(candidates, channels, arrays, max_lag)
    return _correlate(arrays, laid, len(candidates), channels, max_lag)


@dataclass(frozen=True)
class _Laid:
    x: torch.Tensor  # (K, C, longest + 2 pad): each candidate's bins after `pad` zeros
    lengths: torch.Tensor  # (K,) int64
    pad: int


def _layout(
    candidates: list[np.ndarray], channels: int, queries: list[np.ndarray], max_lag: int
) -> _Laid | None:
    """The candidates zero-padded for every placement of the longest query (None: nothing to
    compare)."""
    lengths = torch.tensor([len(c) for c in candidates], dtype=torch.int64)
    longest_query = max((len(q) for q in queries), default=0)
    if longest_query == 0 or not bool((lengths > 0).any()):
        return None
    pad = longest_query - 1 + max_lag
    x = torch.zeros(len(candidates), channels, int(lengths.max()) + 2 * pad)
    # every candidate's bins end to end, then one scatter into the padded block (a copy per
    # candidate was a fifth of the re-rank's envelope matching)
    present = [i for i, c in enumerate(candidates) if len(c)]
    parts = [np.asarray(candidates[i], np.float32).reshape(len(candidates[i]), -1) for i in present]
    for i, c in zip(present, parts, strict=True):
        if c.shape[1] != channels:
            raise ValueError(f"candidate {i} has {c.shape[1]} bands, the query {channels}")
    flat = torch.from_numpy(np.concatenate(parts))  # (bins of all, channels)
    counts = lengths[present]
    item = torch.repeat_interleave(torch.tensor(present, dtype=torch.int64), counts)
    first = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    x[item, :, pad + torch.arange(len(flat)) - first] = flat
    return _Laid(x, lengths, pad)


def _correlate(
    arrays: list[np.ndarray], laid: _Laid | None, k: int, channels: int, max_lag: int
) -> list[EventMatches]:
    """Each query against each of the `k` laid-out candidates (queries of one length in one
    convolution): the best placement allowed and its score (-inf: nothing to compare)."""
    out = [EventMatches(np.full(k, -np.inf, np.float32), np.zeros(k, np.int64)) for _ in arrays]
    by_length: dict[int, list[int]] = {}
    for j, query in enumerate(arrays):
        if (1 if query.ndim == 1 else query.shape[1]) != channels:
            raise ValueError("the queries must have the same bands")
        if len(query):
            by_length.setdefault(len(query), []).append(j)
    if laid is None:
        return out
    usable = (laid.lengths > 0).nonzero().flatten()
    rows = usable.numpy()
    for n, group in by_length.items():
        weight = np.stack([arrays[j].reshape(n, channels).T for j in group])  # (Q, C, n)
        low, high = _placements(n, laid.lengths, max_lag)
        # only the placements some candidate allows (a whole clip against whole clips: 5 of
        # the ~150 a full correlation would compute); x holds placement p at column pad + p
        first, last = int(low[usable].min()), int(high[usable].max())
        span = laid.x[:, :, laid.pad + first : laid.pad + last + n]
        # (K, Q, P): column j is placement p = first + j
        corr = F.conv1d(span, torch.from_numpy(weight)) / (n * channels)
        p = torch.arange(corr.shape[2]) + first
        allowed = (p[None] >= low[:, None]) & (p[None] <= high[:, None])
        if not bool(allowed[usable].all()):  # items of one length allow the same placements
            corr = corr.masked_fill(~allowed[:, None, :], -torch.inf)
        best, where = corr.max(dim=2)
        for column, j in enumerate(group):
            out[j].scores[rows] = best[usable, column].numpy()
            out[j].placement[rows] = (where[usable, column] + first).numpy()
    return out


def scan_window_span(query: np.ndarray, rate: float) -> tuple[int, int]:
    """(first bin, length) of the query's most eventful `SCAN_WINDOW_S` (largest sum of positive
    values, every kind of a (bins, K) query counting), or all of it."""
    m = max(1, round(SCAN_WINDOW_S * rate))
    if len(query) <= m:
        return 0, len(query)
    positive = np.maximum(query, 0.0)
    if positive.ndim == 2:
        positive = positive.sum(axis=1)
    sums = np.convolve(positive, np.ones(m), mode="valid")
    return int(np.argmax(sums)), m


def _quantised(
    x: np.ndarray, axis: int | tuple[int, ...] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 values and the float32 scale of each slice over `axis` (None: one for all; its
    largest magnitude → 127)."""
    scale = np.abs(x).max(axis=axis, keepdims=True) / 127.0
    scale[scale == 0] = 1.0
    values = np.clip(np.rint(x / scale), -127, 127).astype(np.int8)
    return torch.from_numpy(values), torch.from_numpy(scale.reshape(-1).astype(np.float32))


def int8_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(M, K) @ (K, N) of int8 → int32, exactly: the scan's product (`_Product`: torch's int8
    kernel where it is the faster here, `int8_kernel_is_faster`; float32 otherwise, exact too:
    |sums| stay far below 2^24 for K < 1,000)."""
    return _Product(b)(a).to(torch.int32)


def int8_kernel_is_faster(rows: int = 6 * SCAN_BLOCK_ROWS, repeats: int = 5) -> bool:
    """Whether torch's int8 kernel multiplies a block of the scan (`rows` × 80 by 80 ×
    `SCAN_COLUMNS`, as `_Product` does) faster than converting it to float32 and multiplying
    that, best of `repeats` each. With AVX-512 VNNI it is; on a CPU with AVX2 alone (an AMD EPYC
    VM of this project) the int8 kernel took 10–20x float32's time (`benchmarks/bench_scan`),
    and the 100k-item event scan with it was the slowest stage of a sound upload."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(-127, 128, (rows, 80), dtype=torch.int8, generator=gen)
    b = torch.randint(-127, 128, (80, SCAN_COLUMNS), dtype=torch.int8, generator=gen)
    converted, b_float, out = torch.empty(rows, 80), b.float(), torch.empty(rows, SCAN_COLUMNS)

    def best(product: Callable[[], torch.Tensor]) -> float:
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            product()
            times.append(time.perf_counter() - t)
        return min(times)

    try:
        kernel = best(lambda: torch._int_mm(a, b))
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
    return kernel < best(lambda: torch.mm(converted.copy_(a), b_float, out=out))


# whether `int8_matmul` uses torch's int8 kernel: None measures it on first use (tests set it to
# check each path)
INT8_KERNEL: bool | None = None


class _Product:
    """Blocks of int8 rows times one int8 matrix of columns, exactly, as float32: by torch's int8
    kernel where it is the faster on this CPU (`INT8_KERNEL`), else in float32, each block
    converted into a buffer kept between blocks, which stays in the cache for the product (a
    fresh tensor per block, or one conversion of every row, cost as much as the product). One
    per thread: the buffers are its own."""

    def __init__(self, columns: torch.Tensor) -> None:
        global INT8_KERNEL
        if INT8_KERNEL is None:
            INT8_KERNEL = int8_kernel_is_faster()
        self.columns = columns
        self.float_columns = columns.float()
        self._rows = torch.empty(0)
        self._out = torch.empty(0)

    def __call__(self, block: torch.Tensor) -> torch.Tensor:
        n = len(block)
        if INT8_KERNEL:
            try:
                return torch._int_mm(block.contiguous(), self.columns).float()
            except (AttributeError, RuntimeError, NotImplementedError):
                pass
        if len(self._rows) < n:
            self._rows = torch.empty(n, block.shape[1])
            self._out = torch.empty(n, self.columns.shape[1])
        rows, out = self._rows[:n], self._out[:n]
        rows.copy_(block)
        return torch.mm(rows, self.float_columns, out=out)


def widened(kinds: np.ndarray, width: int) -> np.ndarray:
    """Envelopes ((bins,) or (bins, K)) as `width` columns, the first (a picture's change
    envelope, `picture_kinds`) repeated in those it lacks: an item indexed before the others
    were kept scores as the envelope it has does."""
    kinds = np.asarray(kinds, np.float32)
    kinds = kinds if kinds.ndim == 2 else kinds[:, None]
    if kinds.shape[1] >= width:
        return kinds
    return np.concatenate([kinds, np.repeat(kinds[:, :1], width - kinds.shape[1], axis=1)], 1)


# query lengths whose placements an EventScan keeps, and window positions for each (two
# (rows,) tensors apiece: 1.6 MB at 100k items)
_KEPT_LENGTHS = 8
_KEPT_WINDOWS = 4


def _keep(kept: dict[Any, Any], key: object, value: object, most: int) -> None:
    """`kept[key] = value`, the oldest entry dropped first where `most` are kept."""
    while len(kept) >= most:
        kept.pop(next(iter(kept)))
    kept[key] = value


@dataclass
class _Placements:
    """An EventScan's allowed placements for one query length (`EventScan._placements`)."""

    low: torch.Tensor  # (rows,) first allowed start of the whole query, relative to the item
    high: torch.Tensor  # (rows,) last
    most: int  # the most placements any row allows
    # (window start, window bins) → `EventScan._columns`' answer (False: no row allows any)
    columns: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor, int, int, bool] | bool]


class EventScan:
    """Every item's envelopes laid out for one matrix product per query: rows of `row_bins` bins
    (an item longer than a row spans several, overlapping by the scan window so every placement
    of the window lies whole inside one row), zeros past an item's end and `max_lag` zeros
    before and after each row, kind by kind (an item's envelopes may be several, (bins, K): a
    picture's `picture_kinds`), laid out once: padding per query cost a third of the scan.

    The window meets an item only where the whole query may lie as the exact match places it
    (`match_events`: the shorter inside the longer, ± `max_lag`), so a whole clip is compared at
    its own alignment, as the re-rank compares it, not wherever its window fits. With few
    placements (`PINNED_PLACEMENTS`) a sound meets every kind of a picture, the best pair
    counting as in `match_across`; with many, the first kind alone: the best of many kinds at
    many placements is mostly the best noise (both on val in `scores`' doc)."""

    def __init__(
        self, envelopes: list[np.ndarray], rate: float, max_lag: int = MAX_LAG_BINS
    ) -> None:
        self.rate = rate
        self.max_lag = max_lag
        self.window = max(1, round(SCAN_WINDOW_S * rate))
        longest = max((len(e) for e in envelopes), default=0)
        # one row per item where items are no longer than two windows: no bins of zeros scanned
        self.row_bins = max(self.window + 1, min(longest, 2 * self.window))
        hop = self.row_bins - self.window
        self.kinds = max((np.asarray(e).shape[1] for e in envelopes if np.ndim(e) == 2), default=1)
        starts: list[tuple[int, int]] = []  # (item, first bin)
        for item, env in enumerate(envelopes):
            for start in range(0, max(1, len(env) - self.window + 1), hop):
                if len(env):
                    starts.append((item, start))
                if start + self.row_bins >= len(env):
                    break
        self.n_items = len(envelopes)
        width = self.row_bins + 2 * max_lag
        # zeros to a multiple of 16 bins: torch's int8 kernel runs a third faster on them
        rows = np.zeros((len(starts), self.kinds, -(-width // 16) * 16), np.float32)
        for j, (item, start) in enumerate(starts):
            part = widened(envelopes[item], self.kinds)[start : start + self.row_bins]
            rows[j, :, max_lag : max_lag + len(part)] = part.T
        # int8 with a scale per row, its kinds together (standardised envelopes: alike in
        # range): a quarter of float32's bytes to read per query, which is what the scan's time
        # is at 100k items, and the best of every kind and placement taken on the integers. A
        # row's kinds lie together: a block of rows is one product (`scores`).
        self.rows, self.scale = _quantised(rows, axis=(1, 2))  # (rows, kinds, width), (rows,)
        self.owner = torch.tensor([item for item, _ in starts], dtype=torch.int64)
        self.first = torch.tensor([start for _, start in starts], dtype=torch.int64)
        lengths = torch.tensor([len(e) for e in envelopes], dtype=torch.int64)
        self.lengths = lengths[self.owner] if len(starts) else lengths[:0]
        self._by_length: dict[int, _Placements] = {}
        self._kept = threading.Lock()  # searches run side by side on one scan

    def __len__(self) -> int:
        return self.n_items

    def _placements(self, n: int) -> _Placements:
        """Each row's allowed window starts for a query of `n` bins, in item bins relative to
        the window's own start: column c is item bin first + c - lag. Kept for the last few
        query lengths (they depend on nothing else; a dozen passes over every row a query)."""
        with self._kept:
            found = self._by_length.get(n)
        if found is None:
            low = torch.clamp(self.lengths - n, max=0) - self.max_lag
            high = torch.clamp(self.lengths - n, min=0) + self.max_lag
            most = int((high - low).max()) + 1 if len(high) else 0
            found = _Placements(low, high, most, {})
            with self._kept:
                _keep(self._by_length, n, found, _KEPT_LENGTHS)
        return found

    def _columns(
        self, n: int, start: int, m: int
    ) -> tuple[torch.Tensor, torch.Tensor, int, int, bool] | None:
        """Each row's first and last allowed column for the window at query bins start..start+m,
        the range over live rows, and whether every row allows every placement (items of one
        length: nothing to mask); None where no row allows any."""
        placements = self._placements(n)
        with self._kept:
            found = placements.columns.get((start, m))
        if found is None:
            width = self.row_bins + 2 * self.max_lag  # what is laid out: the rest is zeros
            c_lo = torch.clamp(start + placements.low - self.first + self.max_lag, min=0)
            c_hi = torch.clamp(start + placements.high - self.first + self.max_lag, max=width - m)
            live = c_lo <= c_hi
            if not bool(live.any()):
                found = False
            else:
                first, last = int(c_lo[live].min()), int(c_hi[live].max())
                uniform = bool(live.all() and (c_lo == first).all() and (c_hi == last).all())
                found = (c_lo, c_hi, first, last, uniform)
            with self._kept:
                _keep(placements.columns, (start, m), found, _KEPT_WINDOWS)
        return found if isinstance(found, tuple) else None

    def scores(self, query: np.ndarray, across: bool = False) -> np.ndarray:
        """(n_items,) each item's best correlation with the query's scan window (-inf: none), at
        every placement of the window the whole query's allowed placements give (past an item's
        end the window meets silence). `query`: (bins,) or (bins, K) envelopes; with `across`
        (a sound against a picture) and few placements, every query kind meets every item kind
        and the best pair counts; otherwise the first of each.

        Why bounded, and why all kinds only then (val clips sharing an event among val and 800
        train clips, 183 whole-clip queries, audio→video / video→audio, the right clip among
        the scan's best 50): the 3 s window anywhere in an item 0.590 / 0.508; bounded 0.683 /
        0.678; a 6 s window (the whole clip) bounded 0.721 / 0.749, and every kind of the
        picture 0.918 / 0.923 (exact best-band matching of every item: 0.934 / 0.929). Pieces
        of 2.5 s (many placements): the first kinds 0.443 / 0.426, every kind 0.404 / 0.421."""
        out = torch.full((self.n_items,), -torch.inf)
        q_all = np.asarray(query, np.float32)
        q_all = q_all if q_all.ndim == 2 else q_all[:, None]
        n = len(q_all)
        if len(self.owner) == 0 or n == 0:
            return out.numpy()
        padded = self.rows.shape[2]
        pinned = across and self._placements(n).most <= PINNED_PLACEMENTS
        if not pinned:
            q_all = q_all[:, :1]
        start, m = scan_window_span(q_all, self.rate)
        q, q_scale = _quantised(np.ascontiguousarray(q_all[start : start + m].T), axis=None)
        span = self._columns(n, start, m)
        if span is None:
            return out.numpy()
        c_lo, c_hi, first, last, uniform = span
        placements = last - first + 1
        # Toeplitz of each query kind: column k * placements + j places kind k's window at
        # column first + j; to a multiple of `SCAN_COLUMNS` columns with copies of the first,
        # so the best over every column of a row's product is the best placement, read whole
        # (a slice of the real columns cost a quarter of the scan's time to gather)
        cols = torch.arange(placements)
        used = len(q) * placements
        toeplitz = torch.zeros(padded, len(q), placements, dtype=torch.int8)
        rows_at = first + cols[None, :] + torch.arange(m)[:, None]  # (m, placements)
        for k in range(len(q)):
            toeplitz[rows_at, k, cols[None, :]] = q[k][:, None]
        source = torch.arange(-(-used // SCAN_COLUMNS) * SCAN_COLUMNS)
        source[used:] = 0
        columns = toeplitz.reshape(padded, used)[:, source]
        at = first + source % placements  # each column's placement, as a column of the rows
        kinds = self.kinds if pinned else 1
        lowest = float(torch.iinfo(torch.int32).min)

        def best_of(lo: int, hi: int) -> torch.Tensor:
            """Rows lo..hi: the best pair of kinds at the best placement, on the integers, a
            block of rows (every kind of each) one product, then scaled."""
            best = torch.empty(hi - lo)
            product = _Product(columns)  # this thread's buffers
            for b_lo in range(lo, hi, SCAN_BLOCK_ROWS):
                b_hi = min(hi, b_lo + SCAN_BLOCK_ROWS)
                block = self.rows[b_lo:b_hi] if pinned else self.rows[b_lo:b_hi, :1]
                found = product(block.reshape((b_hi - b_lo) * kinds, padded))
                found = found.view(b_hi - b_lo, kinds, len(source))
                if not uniform:
                    allowed = (at[None, :] >= c_lo[b_lo:b_hi, None]) & (
                        at[None, :] <= c_hi[b_lo:b_hi, None]
                    )
                    found.masked_fill_(~allowed[:, None, :], lowest)
                torch.amax(found.view(b_hi - b_lo, -1), dim=1, out=best[b_lo - lo : b_hi - lo])
            per_row = best * self.scale[lo:hi] * (float(q_scale[0]) / m)
            per_row[best == lowest] = -torch.inf
            return per_row

        n_rows = len(self.owner)
        if n_rows >= SPLIT_SCAN_ROWS and SPARE.helpers:
            # a lone search scans on two cores (`models.spare`): the halves' rows are apart
            half = n_rows // 2
            head, tail = SPARE.both(lambda: best_of(0, half), lambda: best_of(half, n_rows))
            per_row = torch.cat([head, tail])
        else:
            per_row = best_of(0, n_rows)
        out.scatter_reduce_(0, self.owner, per_row, reduce="amax")
        return out.numpy()


def item_events(
    frames: np.ndarray | None,
    wave: np.ndarray | None,
    fps: float,
    sample_rate: int,
    changes: np.ndarray | None = None,
    region_changes: np.ndarray | None = None,
    motion: np.ndarray | None = None,
    halves: np.ndarray | None = None,
    picture_envelope: Callable[..., np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """ "visual" / "audio" → the item's picture / sound envelope at `fps` bins a second (the
    visual frame rate), "visual_bands" / "audio_bands" → their banded envelopes
    (`picture_bands`, `sound_bands`), "visual_motion" → the picture's motion envelope
    (`picture_motion`), "visual_halves" → its halves' change and motion envelopes
    (`picture_halves`); empty for a stream the item lacks. `changes`, `region_changes`,
    `motion`, `halves`: the decoder's (`picture_events`, `picture_bands`, `picture_motion`,
    `picture_halves`). `picture_envelope`: a model's (`TrimodalModel.picture_envelope`, called
    with the frames and those measures) for "visual" instead of the hand-made change envelope."""
    out = {
        "visual": np.zeros(0, np.float32),
        "visual_motion": np.zeros(0, np.float32),
        "visual_halves": np.zeros((0, 2 * len(HALVES)), np.float32),
        "audio": np.zeros(0, np.float32),
        "visual_bands": np.zeros((0, PICTURE_REGIONS), np.float32),
        "audio_bands": np.zeros((0, SOUND_BANDS), np.float32),
    }
    if frames is not None and len(frames):
        out["visual"] = (
            picture_envelope(frames, changes, region_changes, motion, halves)
            if picture_envelope is not None
            else picture_events(frames, fps, fps, changes)
        )
        out["visual_bands"] = picture_bands(frames, fps, fps, region_changes)
        out["visual_motion"] = picture_motion(frames, fps, fps, motion)
        out["visual_halves"] = picture_halves(frames, fps, fps, halves)
    if wave is not None and np.asarray(wave).size:
        out["audio"], out["audio_bands"] = sound_envelopes(wave, sample_rate, fps)
    return out


@dataclass(frozen=True)
class EventAgreement:
    """How well a clip's sound fits its own picture by their events, and by how much it is late."""

    score: float  # correlation at the best lag minus the median over lags: a clear peak = in sync
    offset_s: float  # the sound lags the picture by this much (negative: it comes early)


def event_agreement(
    sound: np.ndarray, picture: np.ndarray, rate: float, max_lag_s: float = 1.5
) -> EventAgreement | None:
    """The correlation of a clip's own two envelopes at every lag within ±max_lag_s (counted
    where at least half of the shorter one overlaps), its peak refined between bins by the
    parabola through its neighbours. None when either envelope is missing or flat.

    `sound` banded ((bins, B), `sound_bands`), or `picture` with its kinds ((bins, 2),
    `picture_kinds`): each pair's correlation curve, the pair with the clearest peak counting —
    its own source, not rain over it, sets the offset (probe on the val split, sounds shifted
    by ±0.25–1 s, envelopes alone: offset error median 0.041 → 0.033 s, within 0.1 s 55 → 61 %;
    own vs another clip's sound ROC AUC 0.824 → 0.853; another renderer's clips 0.251 → 0.063 s,
    re-encoded ones 0.189 → 0.120 s)."""
    a, v = np.asarray(sound, np.float64), np.asarray(picture, np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if v.ndim == 1:
        v = v[:, None]
    if a.size == 0 or v.size == 0 or not v.any():
        return None
    m = round(max_lag_s * rate)
    need = max(1, min(len(a), len(v)) // 2)
    pairs = a.shape[1] * v.shape[1]
    curves = np.full((2 * m + 1, pairs), -np.inf)  # (lags, picture kind × sound band)
    for j, lag in enumerate(range(-m, m + 1)):
        # sound bin t + lag against picture bin t
        lo, hi = max(0, -lag), min(len(v), len(a) - lag)
        if hi - lo >= need:
            curves[j] = (v[lo:hi].T @ a[lo + lag : hi + lag]).reshape(pairs) / (hi - lo)
    finite = np.isfinite(curves[:, 0])
    # a band or a picture envelope without events says nothing
    silent_picture = ~np.asarray(v.any(axis=0), bool)
    silent_sound = ~np.asarray(a.any(axis=0), bool)
    flat = (silent_picture[:, None] | silent_sound[None, :]).reshape(pairs)
    if not finite.any() or flat.all():
        return None
    peaks = curves[finite].max(axis=0) - np.median(curves[finite], axis=0)
    band = int(np.argmax(np.where(flat, -np.inf, peaks)))
    curve = curves[:, band]
    best = int(np.argmax(curve))
    shift = 0.0
    if 0 < best < len(curve) - 1 and finite[best - 1] and finite[best + 1]:
        left, peak, right = curve[best - 1], curve[best], curve[best + 1]
        bend = left - 2 * peak + right
        if bend < 0:
            shift = float(np.clip(0.5 * (left - right) / bend, -0.5, 0.5))
    return EventAgreement(score=float(peaks[band]), offset_s=(best - m + shift) / rate)


def fused_agreement(
    steps_score: float,
    steps_offset_s: float,
    events: EventAgreement | None,
    weight: float,
) -> tuple[float, float]:
    """A clip's agreement (score, audio offset s) from its learned steps and, where both its
    envelopes have events, from them: the score adds `weight` × theirs (the weight the trainer
    measured on val, `SearchPolicy.agreement_event_weight`); the offset is theirs, measured
    on a grid three times finer than the steps' (val: median error 0.03 s vs 0.13 s)."""
    if events is None:
        return steps_score, steps_offset_s
    return steps_score + weight * events.score, events.offset_s
