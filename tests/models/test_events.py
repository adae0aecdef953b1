"""Event envelopes: they mark when sound starts and picture changes, and they match where a piece
was cut from; the scan finds what the exact match finds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models import events
from models.events import (
    SOUND_BANDS,
    SOUND_PHASES,
    EventScan,
    best_phase,
    event_agreement,
    fused_agreement,
    int8_matmul,
    item_events,
    match_across,
    match_events,
    match_many,
    picture_events,
    scan_window_span,
    sound_bands,
    sound_envelopes,
    sound_events,
    sound_phases,
    standardise,
)

SR, FPS = 16_000, 12.0


def clicks(
    times_s: list[float], seconds: float = 6.0, floor: float = 0.001, seed: int = 0
) -> np.ndarray:
    """Noise at `floor` (quiet by default) with a short loud burst at each time."""
    rng = np.random.default_rng(seed)
    wave = floor * rng.standard_normal(int(seconds * SR)).astype(np.float32)
    for t in times_s:
        start = int(t * SR)
        wave[start : start + 800] += 0.5 * rng.standard_normal(800).astype(np.float32)
    return wave


def flashes(frames_at: list[int], n: int = 72) -> np.ndarray:
    frames = np.full((n, 8, 8, 3), 40, np.uint8)
    for f in frames_at:
        frames[f] = 250
    return frames


def test_sound_onsets_and_picture_changes_peak_in_their_bins():
    times = [0.5, 2.0, 4.25]
    sound = sound_events(clicks(times), SR, FPS)
    assert len(sound) == 72
    peaks = sorted(np.argsort(sound)[-3:].tolist())
    assert peaks == [int(t * FPS) for t in times]
    picture = picture_events(flashes([6, 24, 51]), FPS, FPS)
    assert len(picture) == 72
    # a one-frame flash changes the picture as it appears (in the interval before it) and goes
    assert set(np.argsort(picture)[-6:].tolist()) == {5, 6, 23, 24, 50, 51}
    assert abs(float(sound.mean())) < 1e-5 and float(sound.std()) == pytest.approx(1.0, abs=1e-4)


def test_nothing_happening_is_all_zeros_and_broken_input_is_refused():
    assert not standardise(np.ones(30)).any()
    assert not picture_events(np.zeros((24, 4, 4, 3), np.uint8), FPS, FPS).any()
    with pytest.raises(ValueError, match="no sound"):
        sound_events(np.zeros(0, np.float32), SR, FPS)
    with pytest.raises(ValueError, match="non-finite"):
        sound_events(np.array([0.0, np.nan] * 800, np.float32), SR, FPS)
    with pytest.raises(ValueError, match="frames"):
        picture_events(np.zeros((0, 4, 4, 3), np.uint8), FPS, FPS)
    found = item_events(None, clicks([1.0], 2.0), FPS, SR)
    assert found["visual"].size == 0 and found["audio"].size == 24


def naive_best(query: np.ndarray, cand: np.ndarray, max_lag: int) -> tuple[float, int]:
    """Every allowed placement, one dot product each."""
    n, m = len(query), len(cand)
    low, high = min(0, m - n) - max_lag, max(0, m - n) + max_lag
    best, where = -np.inf, 0
    for p in range(low, high + 1):
        total = sum(query[t] * cand[p + t] for t in range(n) if 0 <= p + t < m)
        if total / n > best:
            best, where = total / n, p
    return float(best), where


def test_a_piece_is_matched_where_it_was_cut_and_equals_the_naive_search():
    rng = np.random.default_rng(1)
    items = [standardise(rng.standard_normal(n)) for n in (72, 50, 90, 30, 0)]
    piece = items[2][37:67].copy()
    found = match_events(piece, items, max_lag=2)
    assert int(np.argmax(found.scores)) == 2 and int(found.placement[2]) == 37
    assert found.scores[4] == -np.inf  # nothing to compare with
    for i, cand in enumerate(items[:4]):
        best, _ = naive_best(piece, cand, 2)
        assert found.scores[i] == pytest.approx(best, abs=1e-5)
    # a query longer than the item slides the item inside it
    longer = match_events(items[3], [items[0]], max_lag=1)
    assert longer.scores[0] == pytest.approx(naive_best(items[3], items[0], 1)[0], abs=1e-5)


def test_lag_tolerance_reaches_exactly_max_lag_bins():
    rng = np.random.default_rng(2)
    clip = standardise(rng.standard_normal(72))
    late = np.roll(clip, 2)  # the same clip two bins later
    assert match_events(clip, [late], max_lag=2).placement[0] == 2
    assert (
        match_events(clip, [late], max_lag=1).scores[0]
        < 0.5
        < (match_events(clip, [late], max_lag=2).scores[0])
    )


# the scan reads int8 envelopes (a scale per row and kind): within 1/127 of each side's largest
# value per bin, a correlation within this of the exact one
SCAN_TOL = 0.01


def _window_score(window: np.ndarray, cand: np.ndarray, p: int) -> float:
    n, m = len(window), len(cand)
    return sum(window[t] * cand[p + t] for t in range(n) if 0 <= p + t < m) / n


def _bounded_want(query: np.ndarray, cand: np.ndarray, row_bins: int = 0, lag: int = 2) -> float:
    """The window's best correlation with `cand` at every placement of the whole query that
    the exact match allows (the shorter inside the longer, ± lag) and that a row of
    `row_bins` (0: any) holds with its lag of zeros either side."""
    start, m = scan_window_span(query, FPS)
    window = query[start : start + m]
    n, length = len(query), len(cand)
    low, high = min(length - n, 0) - lag, max(length - n, 0) + lag
    at = [start + p for p in range(low, high + 1)]
    if row_bins:
        at = [a for a in at if -lag <= a <= row_bins + lag - m]
    return max(_window_score(window, cand, a) for a in at)


def test_the_scan_meets_each_item_where_the_exact_match_places_the_whole_query():
    """An item within one row: the window's best correlation at every placement the whole
    query may take in it (past the item's end it meets silence, zeros). A longer item spans
    several rows: at least the best such placement wholly inside it."""
    rng = np.random.default_rng(3)
    items = [standardise(rng.standard_normal(n)) for n in (72, 72, 30, 200, 10, 0, 73)]
    scan = EventScan(items, FPS)
    assert int((scan.owner == 3).sum()) >= 2 and int((scan.owner == 5).sum()) == 0
    for query in (items[3][100:172], items[0][5:35], rng.standard_normal(20), items[6]):
        query = np.asarray(query, np.float32)
        got = scan.scores(query)
        for i, cand in enumerate(items):
            if len(cand) == 0:
                assert got[i] == -np.inf
                continue
            want = _bounded_want(query, cand, scan.row_bins if len(cand) <= scan.row_bins else 0)
            if len(cand) <= scan.row_bins:
                assert got[i] == pytest.approx(want, abs=SCAN_TOL), i
            else:
                assert got[i] >= want - SCAN_TOL, i  # the placements inside one row at least
    # a piece of the long item is found in it, and a whole clip finds itself
    assert int(np.argmax(scan.scores(items[3][100:172]))) == 3
    assert int(np.argmax(scan.scores(items[1]))) == 1


def test_a_whole_clip_is_scanned_at_its_own_alignment_not_wherever_its_window_fits():
    """A clip whose events are the query's shifted by a second scores high wherever the window
    may go, but not at the query's own alignment (± the lag), which the exact match keeps."""
    rng = np.random.default_rng(5)
    clip = standardise(rng.standard_normal(72))
    shifted = np.roll(clip, 12)
    scan = EventScan([clip, shifted], FPS)
    got = scan.scores(clip)
    assert got[0] == pytest.approx(1.0, abs=0.05)
    assert got[1] == pytest.approx(_bounded_want(clip, shifted), abs=SCAN_TOL)
    assert got[1] < 0.5


def test_across_a_sound_meets_every_kind_of_a_picture_only_at_few_placements():
    """A picture's kinds laid out together: a whole-clip sound across them takes the best kind
    (as `match_across` does), the same sound without `across`, or a short piece of it (many
    placements), the first kind alone; footage's kinds as a query likewise."""
    rng = np.random.default_rng(6)
    sound = standardise(rng.standard_normal(72))
    noise = standardise(rng.standard_normal(72))
    # the sound's events are in the second kind (its motion), the first is noise
    picture = np.stack([noise, sound], axis=1)
    other = np.stack([standardise(rng.standard_normal(72)) for _ in range(2)], axis=1)
    scan = EventScan([picture, other, noise], FPS)  # a single envelope: widened
    assert scan.kinds == 2 and scan.rows.shape[1] == 2
    across = scan.scores(sound, across=True)
    assert int(np.argmax(across)) == 0 and across[0] == pytest.approx(1.0, abs=0.05)
    alike = scan.scores(sound)
    assert alike[0] == pytest.approx(_bounded_want(sound, noise), abs=SCAN_TOL)
    piece = sound[20:50]  # 30 bins in 72: 47 placements, the first kind alone
    assert scan.scores(piece, across=True)[0] == pytest.approx(
        _bounded_want(piece, noise), abs=SCAN_TOL
    )
    sounds = EventScan([sound, noise], FPS)
    found = sounds.scores(picture, across=True)
    assert int(np.argmax(found)) == 0 and found[0] == pytest.approx(1.0, abs=0.05)
    assert sounds.scores(picture)[0] == pytest.approx(_bounded_want(noise, sound), abs=SCAN_TOL)


def test_the_int8_product_is_exact_with_or_without_torchs_kernel(monkeypatch) -> None:
    rng = np.random.default_rng(8)
    a = torch.from_numpy(rng.integers(-127, 128, (300, 77)).astype(np.int8))
    b = torch.from_numpy(rng.integers(-127, 128, (77, 30)).astype(np.int8))
    want = a.long() @ b.long()
    assert torch.equal(int8_matmul(a, b).long(), want)
    monkeypatch.setattr(events, "INT8_KERNEL", False)
    assert torch.equal(int8_matmul(a, b).long(), want)
    # and the scan scores alike either way
    items = [
        np.stack([standardise(rng.standard_normal(72)) for _ in range(3)], 1) for _ in range(40)
    ]
    scan = EventScan(items, FPS)
    query = standardise(rng.standard_normal(72))
    without = scan.scores(query, across=True)
    monkeypatch.setattr(events, "INT8_KERNEL", True)
    np.testing.assert_array_equal(scan.scores(query, across=True), without)
    # unset: measured on first use, the faster of the two on this CPU, and kept
    monkeypatch.setattr(events, "INT8_KERNEL", None)
    assert torch.equal(int8_matmul(a, b).long(), want)
    assert isinstance(events.INT8_KERNEL, bool)
    assert isinstance(events.int8_kernel_is_faster(rows=512, repeats=1), bool)


def test_agreement_finds_how_late_the_sound_is_and_fuses_with_the_steps():
    times = [0.6, 1.7, 2.4, 3.9, 5.1]
    frames = flashes([round(t * FPS) for t in times])
    picture = picture_events(frames, FPS, FPS)
    for late_s in (0.0, 0.5, -0.75):
        sound = sound_events(clicks([t + late_s for t in times if 0 <= t + late_s < 6]), SR, FPS)
        found = event_agreement(sound, picture, FPS)
        assert found is not None and abs(found.offset_s - late_s) <= 1 / FPS, late_s
    own = event_agreement(sound_events(clicks(times), SR, FPS), picture, FPS)
    other = event_agreement(sound_events(clicks([0.3, 2.9, 4.4]), SR, FPS), picture, FPS)
    assert own is not None and other is not None and own.score > other.score
    # a flat envelope has no events to agree with
    assert event_agreement(np.zeros(72, np.float32), picture, FPS) is None
    assert event_agreement(np.zeros(0, np.float32), picture, FPS) is None
    # fused: the steps' score plus the weighed envelopes', the envelopes' offset; steps alone
    # where there are no envelopes
    assert fused_agreement(0.1, 0.4, own, 0.2) == pytest.approx(
        (0.1 + 0.2 * own.score, own.offset_s)
    )
    assert fused_agreement(0.1, 0.4, None, 0.2) == (0.1, 0.4)


def pitched_clicks(times_s: list[float], hz: float, seconds: float = 6.0) -> np.ndarray:
    """Quiet noise with a short decaying tone at `hz` at each time."""
    rng = np.random.default_rng(0)
    wave = 0.001 * rng.standard_normal(int(seconds * SR)).astype(np.float32)
    n = 1600
    k = np.arange(n)
    # a 5 ms rise: a sharp edge would sound in every band
    burst = 0.5 * np.sin(2 * np.pi * hz * k / SR) * (1 - np.exp(-k / 80.0)) * np.exp(-k / 300.0)
    for t in times_s:
        start = int(t * SR)
        wave[start : start + n] += burst.astype(np.float32)
    return wave


def test_sound_bands_tell_apart_sounds_that_start_together():
    """Two recordings with onsets at the same times, one low and one high: one envelope each
    cannot tell them apart, their banded envelopes can."""
    times = [0.4, 1.3, 2.2, 3.6, 4.9]
    low, high = pitched_clicks(times, 150.0), pitched_clicks(times, 3000.0)
    single_low, bands_low = sound_envelopes(low, SR, FPS)
    single_high, bands_high = sound_envelopes(high, SR, FPS)
    assert bands_low.shape == (72, SOUND_BANDS)
    np.testing.assert_allclose(bands_low.std(axis=0), 1.0, atol=1e-3)  # each band on its own
    np.testing.assert_array_equal(single_low, sound_events(low, SR, FPS))
    np.testing.assert_array_equal(bands_low, sound_bands(low, SR, FPS))
    # a 2.5 s piece of the low recording
    piece_single, piece_bands = sound_envelopes(low[int(1.0 * SR) : int(3.5 * SR)], SR, FPS)
    by_single = match_events(piece_single, [single_high, single_low]).scores
    by_bands = match_events(piece_bands, [bands_high, bands_low])
    assert abs(by_single[0] - by_single[1]) < 0.1  # a tie: the same onsets
    assert by_bands.scores[1] > by_bands.scores[0] + 0.3
    assert by_bands.placement[1] == 12  # cut at 1.0 s: bin 12
    with pytest.raises(ValueError, match="bands"):
        sound_bands(low, SR, FPS, bands=0)
    with pytest.raises(ValueError, match="bands"):
        match_events(piece_bands, [bands_low[:, :4]])


def test_banded_matching_is_the_mean_of_the_bands_correlations():
    rng = np.random.default_rng(4)
    query = rng.standard_normal((20, 3)).astype(np.float32)
    cands = [rng.standard_normal((m, 3)).astype(np.float32) for m in (72, 20, 9)]
    found = match_events(query, cands, max_lag=2)
    for c, score, where in zip(cands, found.scores, found.placement, strict=True):
        best = max(
            (
                np.mean([naive_best_at(query[:, b], c[:, b], p) for b in range(3)]),
                p,
            )
            for p in range(min(0, len(c) - 20) - 2, max(0, len(c) - 20) + 3)
        )
        assert score == pytest.approx(best[0], abs=1e-5) and where == best[1]


def naive_best_at(query: np.ndarray, cand: np.ndarray, p: int) -> float:
    n, m = len(query), len(cand)
    return sum(query[t] * cand[p + t] for t in range(n) if 0 <= p + t < m) / n


def test_a_piece_cut_between_bins_is_matched_at_its_best_phase():
    """Onsets 2 ms into their bins; a piece cut 40 ms into a bin has them 45 ms into its own
    bins: one of its phases lines up with the recording's bins again (a clearly higher
    correlation than phase 0's), and places the piece where it was cut."""
    rng = np.random.default_rng(3)
    times = sorted(int(b) / FPS + 0.002 for b in rng.choice(np.arange(3, 70), 14, replace=False))
    recording = pitched_clicks(times, 1000.0)
    start = 1.0 + 0.04  # half a bin into bin 12
    piece = recording[int(start * SR) : int((start + 2.5) * SR)]
    phases = sound_phases(piece, SR, FPS)
    skips = [k / FPS / SOUND_PHASES for k in range(SOUND_PHASES)]
    assert [p.skip_s for p in phases] == pytest.approx(skips, abs=1e-4)
    np.testing.assert_array_equal(phases[0].events, sound_events(piece, SR, FPS))
    np.testing.assert_array_equal(phases[0].bands, sound_bands(piece, SR, FPS))
    item = sound_bands(recording, SR, FPS)
    at_zero = match_events(phases[0].bands, [item]).scores[0]
    scores, starts = best_phase(phases, [item], FPS, banded=True)
    assert scores[0] > at_zero + 0.1
    assert abs(starts[0] / FPS - start) < 1 / FPS  # within a bin of where it was cut
    whole = sound_events(recording, SR, FPS)
    single, _ = best_phase(phases, [whole], FPS, banded=False)
    assert single[0] >= match_events(phases[0].events, [whole]).scores[0]


def hiss(times_s: list[float], seconds: float = 6.0, above_hz: float = 2000.0) -> np.ndarray:
    """A short burst of noise at each time with nothing below `above_hz`: rain on a roof."""
    rng = np.random.default_rng(1)
    wave = np.zeros(int(seconds * SR), np.float32)
    n = 800
    for t in times_s:
        start = int(t * SR)
        wave[start : start + n] += rng.standard_normal(n) * np.exp(-np.arange(n) / 300.0)
    spectrum = np.fft.rfft(wave)
    spectrum[np.fft.rfftfreq(len(wave), 1 / SR) < above_hz] = 0
    return np.fft.irfft(spectrum, len(wave)).astype(np.float32)


def test_a_sound_meets_a_picture_by_its_best_band():
    """A seen source (low tones, one flash each) heard under offscreen rain (high bursts the
    picture never shows): summed into one envelope the rain drowns the tones, one band holds
    them alone. Matched by the sound's best band, the clip's picture scores far higher than by
    the single envelope, above a decoy's, and equals each band's best correlation taken alone;
    picture against sound is the same match the other way round."""
    rng = np.random.default_rng(11)
    seen = [0.6, 1.9, 3.1, 4.4, 5.3]
    rain = sorted(float(t) for t in rng.uniform(0.2, 5.7, 24))
    wave = pitched_clicks(seen, 150.0) + 0.5 * hiss(rain)
    single, bands = sound_envelopes(wave, SR, FPS)
    picture = picture_events(flashes([round(t * FPS) for t in seen]), FPS, FPS)
    decoy = picture_events(flashes([round(t * FPS) for t in (0.9, 1.4, 2.7, 3.9, 5.0)]), FPS, FPS)
    by_single = match_events(single, [picture, decoy]).scores
    by_band = match_events(bands, [picture, decoy])
    assert by_band.scores[0] > by_single[0] + 0.2
    assert by_band.scores[0] > by_band.scores[1] + 0.2
    assert by_band.placement[0] == 0
    for found, cand in zip(by_band.scores, (picture, decoy), strict=True):
        per_band = [match_events(bands[:, b].copy(), [cand]).scores[0] for b in range(SOUND_BANDS)]
        assert found == pytest.approx(max(per_band), abs=1e-6)
    # the picture as the query, the sounds' bands as the candidates (a piece: placed where cut)
    other = sound_bands(pitched_clicks([0.9, 1.4, 2.7, 3.9, 5.0], 150.0), SR, FPS)
    back = match_events(picture, [other, bands])
    assert back.scores[1] == pytest.approx(by_band.scores[0], abs=1e-5)
    assert back.scores[1] > back.scores[0] + 0.2
    piece = match_events(picture[6:66], [other, bands])
    assert np.argmax(piece.scores) == 1 and piece.placement[1] == 6
    # several banded queries at once (a sound's phases) match as each alone
    many = match_across([bands, bands[6:66]], [picture, decoy])
    np.testing.assert_allclose(many[0].scores, by_band.scores, atol=1e-6)
    alone = match_events(bands[6:66], [picture, decoy])
    np.testing.assert_allclose(many[1].scores, alone.scores, atol=1e-6)
    assert many[1].placement[0] == alone.placement[0] == 6
    with pytest.raises(ValueError, match="banded"):
        match_across([bands, single], [picture])
    with pytest.raises(ValueError, match="bands"):
        match_across([picture], [bands, bands[:, :4]])
    # a candidate without the stream scores nothing
    assert match_events(picture, [np.zeros((0, SOUND_BANDS), np.float32)]).scores[0] == -np.inf


def test_several_queries_at_once_match_as_each_alone():
    """`match_many` convolves queries of one length together: the same scores and placements
    as one query at a time, whatever the mix of lengths (an empty one scores nothing)."""
    rng = np.random.default_rng(6)
    cands = [rng.standard_normal((m, 2)).astype(np.float32) for m in (72, 30, 9, 0)]
    queries = [rng.standard_normal((n, 2)).astype(np.float32) for n in (30, 12, 30, 30, 0, 12)]
    together = match_many(queries, cands)
    for query, found in zip(queries, together, strict=True):
        if not len(query):
            assert (found.scores == -np.inf).all()
            continue
        alone = match_many([query], cands)[0]
        np.testing.assert_array_equal(found.placement, alone.placement)
        np.testing.assert_allclose(found.scores, alone.scores, atol=1e-6)
        assert found.scores[3] == -np.inf  # the candidate without the stream


def test_agreement_by_the_best_band_places_a_sound_under_rain():
    """A seen source under offscreen rain: the single envelope's best lag follows the rain (its
    offset is wrong by up to a second), the band that holds the source alone places the sound
    to a bin, with a clearer peak."""
    seen = [0.6, 1.9, 3.1, 4.4, 5.3]
    picture = picture_events(flashes([round(t * FPS) for t in seen]), FPS, FPS)
    wrong = 0
    for seed, late_s in enumerate((0.0, 0.5, -0.75)):
        rain = sorted(float(t) for t in np.random.default_rng(seed).uniform(0.2, 5.7, 24))
        source = pitched_clicks([t + late_s for t in seen if 0 <= t + late_s < 6], 150.0)
        single, bands = sound_envelopes(source + 0.5 * hiss(rain), SR, FPS)
        by_single = event_agreement(single, picture, FPS)
        by_band = event_agreement(bands, picture, FPS)
        assert by_single is not None and by_band is not None
        assert abs(by_band.offset_s - late_s) <= 1 / FPS
        assert by_band.score > by_single.score
        wrong += abs(by_single.offset_s - late_s) > 0.25
    assert wrong >= 2  # what the single envelope does under rain
    # a band without events is passed over; none with events: nothing to agree with
    quiet = np.zeros((72, SOUND_BANDS), np.float32)
    assert event_agreement(quiet, picture, FPS) is None
    quiet[:, 3] = picture_events(flashes([round(t * FPS) + 6 for t in seen]), FPS, FPS)
    found = event_agreement(quiet, picture, FPS)
    assert found is not None and found.offset_s == pytest.approx(0.5, abs=1 / FPS)


def _max_per_bin_one_row(values: np.ndarray, per_second: float, rate: float, length: int):
    """The plain definition: scatter each sample's value into its bin, the largest kept."""
    bins = np.floor(np.arange(len(values)) / per_second * rate + 1e-9).astype(np.int64)
    out = np.zeros(length, np.float32)
    keep = bins < length
    np.maximum.at(out, bins[keep], values[keep].astype(np.float32))
    return out


def _standardise_one_row(x: np.ndarray) -> np.ndarray:
    """The plain definition: minus a centred moving average (edges repeated), then z-scored."""
    x = np.asarray(x, np.float64)
    n = events.DETREND_BINS
    x = x - np.convolve(np.pad(x, n // 2, mode="edge"), np.ones(n) / n, mode="valid")
    std = x.std()
    if not np.isfinite(std) or std < 1e-6:
        return np.zeros(x.size, np.float32)
    return ((x - x.mean()) / std).astype(np.float32)


def test_all_rows_at_once_equal_each_row_alone_bit_for_bit():
    """Envelopes are binned and standardised all bands in one pass (a sound upload's four phases
    of nine envelopes were 36 scatters and 36 convolutions): the values must not move, or an
    index built before would stop matching queries made after."""
    rng = np.random.default_rng(7)
    for length in (1, 2, 3, 5, 9, 72):
        for per_second, rate in ((100.0, 12.0), (12.0, 12.0), (25.0, 12.0), (7.0, 12.0)):
            samples = max(1, round(length * per_second / rate) + int(rng.integers(-3, 4)))
            rows = rng.standard_normal((5, samples)) * rng.choice([1e-9, 1.0, 1e4])
            rows[1] = np.abs(rows[1])  # flux-like: never negative
            got = events._max_per_bins(rows, per_second, rate, length)
            want = np.stack([_max_per_bin_one_row(r, per_second, rate, length) for r in rows])
            assert got.dtype == np.float32 and np.array_equal(got, want)
            want[2] = 0.5  # a flat envelope: nothing changes
            got = events.standardise_rows(want)
            assert got.dtype == np.float32
            assert np.array_equal(got, np.stack([_standardise_one_row(r) for r in want]))
            assert not got[2].any()  # all zeros, not NaN
    # through the public functions: the single envelope is the one `sound_events` gives, and
    # each band is its own row's
    wave = clicks([0.5, 1.7, 3.1, 4.45])
    single, banded = sound_envelopes(wave, SR, FPS)
    assert np.array_equal(single, sound_events(wave, SR, FPS))
    assert banded.flags.c_contiguous and banded.shape == (len(single), SOUND_BANDS)


def test_the_scan_keeps_few_placements_and_scores_as_a_fresh_one():
    """What a scan keeps per query length and window (`EventScan._placements`) changes no score,
    however many lengths and windows come and go, and stays bounded."""
    rng = np.random.default_rng(11)
    items = [standardise(rng.standard_normal(n)) for n in (72, 72, 30, 200, 10, 0, 73, 80)]
    kept = EventScan(items, FPS)
    queries = [np.asarray(rng.standard_normal(n), np.float32) for n in range(6, 90, 4)]
    for query in queries + queries[::-1]:
        for across in (False, True):
            got = kept.scores(query, across)
            want = EventScan(items, FPS).scores(query, across)
            assert np.array_equal(got, want)
    assert len(kept._by_length) <= events._KEPT_LENGTHS
    assert all(len(p.columns) <= events._KEPT_WINDOWS for p in kept._by_length.values())


def test_candidates_of_any_length_are_laid_out_where_each_placement_finds_them():
    """`_layout` (one scatter of every candidate's bins): each candidate's bins at `pad` on,
    zeros around them and in place of an empty one; a band count unlike the query's refused."""
    rng = np.random.default_rng(12)
    lengths = [5, 0, 12, 1, 7, 0]
    candidates = [rng.standard_normal((n, 3)).astype(np.float32) for n in lengths]
    queries = [np.zeros((9, 3), np.float32)]
    laid = events._layout(candidates, 3, queries, max_lag=2)
    assert laid is not None and laid.pad == 9 - 1 + 2
    assert laid.x.shape == (6, 3, 12 + 2 * laid.pad) and laid.lengths.tolist() == lengths
    for i, c in enumerate(candidates):
        want = torch.zeros(3, laid.x.shape[2])
        want[:, laid.pad : laid.pad + len(c)] = torch.from_numpy(c).T
        assert torch.equal(laid.x[i], want), i
    single = events._layout([np.arange(4, dtype=np.float32), np.zeros(0)], 1, [np.zeros(3)], 1)
    assert single is not None and single.x[0, 0, 3:7].tolist() == [0.0, 1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="candidate 0 has 3 bands, the query 2"):
        events._layout(candidates, 2, queries, max_lag=2)


def ambience_with_clicks(times_s: list[float], seconds: float = 6.0) -> np.ndarray:
    """Sound from the first sample on: steady noise with a louder burst at each time."""
    return clicks(times_s, seconds, floor=0.05, seed=1)


def test_an_encoders_priming_is_where_the_sound_starts_not_an_event(monkeypatch):
    times = [0.75, 2.0, 3.5, 4.75]
    content = ambience_with_clicks(times)
    priming = 1105  # MP3's encoder delay, left in where a container does not say to drop it
    rng = np.random.default_rng(2)
    primed = np.concatenate([3e-4 * rng.standard_normal(priming).astype(np.float32), content])
    mel = events._mel(SR)
    assert events.lead_in_frames(mel(torch.from_numpy(primed)).numpy(), 100.0) in (6, 7, 8)
    found = sound_events(primed, SR, FPS)
    assert sorted(np.argsort(found)[-4:].tolist()) == [int(t * FPS + 0.07 * FPS) for t in times]
    assert found[:2].max() < 1.0  # the rise out of the priming is no event
    monkeypatch.setattr(events, "LEAD_IN_S", 0.0)  # as before: the start stood out as an event
    assert sound_events(primed, SR, FPS)[0] > 2.0


def test_a_sound_that_starts_at_once_or_after_a_long_quiet_keeps_every_rise(monkeypatch):
    at_once = ambience_with_clicks([1.0, 3.0])
    late = np.concatenate([np.zeros(SR // 2, np.float32), ambience_with_clicks([1.0], 3.0)])
    silent = np.zeros(SR, np.float32)
    before = {}
    with monkeypatch.context() as m:
        m.setattr(events, "LEAD_IN_S", 0.0)
        before = {name: sound_envelopes(w, SR, FPS) for name, w in
                  (("at_once", at_once), ("late", late), ("silent", silent))}  # fmt: skip
    for name, wave in (("at_once", at_once), ("late", late), ("silent", silent)):
        single, banded = sound_envelopes(wave, SR, FPS)  # bit for bit as without the rule
        assert np.array_equal(single, before[name][0]) and np.array_equal(banded, before[name][1])
    # half a second of silence is a recording's, not an encoder's: the sound's start is an onset
    assert int(np.argmax(sound_events(late, SR, FPS))) == 6


def test_the_scan_in_blocks_scores_as_in_one(monkeypatch) -> None:
    """Rows multiplied a block at a time (`SCAN_BLOCK_ROWS`), the query's columns padded with
    copies of its first (`SCAN_COLUMNS`): every score exactly as one block of every row with
    unpadded columns gives, for items of several lengths (masked placements) and kinds, pinned
    or not, by either kernel."""
    rng = np.random.default_rng(13)
    items = [rng.standard_normal((int(n), 3)).astype(np.float32) for n in rng.integers(20, 160, 57)]
    queries = [rng.standard_normal(72), rng.standard_normal(25), rng.standard_normal((70, 3))]

    def scored(block_rows: int, columns: int) -> list[np.ndarray]:
        monkeypatch.setattr(events, "SCAN_BLOCK_ROWS", block_rows)
        monkeypatch.setattr(events, "SCAN_COLUMNS", columns)
        scan = EventScan(items, FPS)
        return [scan.scores(np.asarray(q, np.float32), a) for q in queries for a in (False, True)]

    for kernel in (False, True):
        monkeypatch.setattr(events, "INT8_KERNEL", kernel)
        want = scored(10_000, 1)  # one block, the query's columns unpadded
        got = scored(7, 16)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)
            assert np.isfinite(w).sum() > 40
