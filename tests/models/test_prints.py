"""Dense sound prints: a piece of a recording is placed at its offset with few bits wrong, at any
level, cut at any sample, through a codec at another rate; steady and sparse sounds the landmarks
cannot pin down are found; another recording, or a sound many share, finds nothing."""

from __future__ import annotations

import numpy as np
import pytest

from models import prints as pr
from models.fingerprint import Match
from tests.models.test_fingerprint import SR, aac_piece, recording


def hum(seed: int, seconds: float = 6.0) -> np.ndarray:
    """A steady engine-like hum at one pitch every such recording shares; what tells two apart
    is how each harmonic's level wobbles, which differs from recording to recording."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * SR)) / SR
    x = np.zeros_like(t)
    for k in (1, 2, 3, 4, 5, 6):
        wobble = sum(
            0.15 * np.sin(2 * np.pi * rng.uniform(0.5, 4.0) * t + rng.uniform(0, 6.3))
            for _ in range(3)
        )
        x += (1.0 + wobble) * np.sin(2 * np.pi * 150.0 * k * t) / k
    return (0.1 * x).astype(np.float32)


@pytest.fixture(scope="module")
def library() -> list[np.ndarray]:
    return [recording(s) for s in range(20)] + [hum(s) for s in range(20)]


@pytest.fixture(scope="module")
def table(library) -> list[np.ndarray]:
    return [pr.prints(w, SR) for w in library]


def test_prints_are_one_per_hop_and_ignore_the_level() -> None:
    wave = recording(3)
    found = pr.prints(wave, SR)
    assert found.dtype == np.uint32
    windows = (len(wave) - round(pr.WINDOW_S * SR)) // round(pr.HOP_S * SR) + 1
    assert len(found) == windows - 1
    # 26 dB down: the same bits, but for float rounding where two differences all but tie
    wrong = np.bitwise_count(pr.prints(0.05 * wave, SR) ^ found).sum() / (32 * len(found))
    assert wrong <= 0.01
    assert len(pr.prints(wave[: round(pr.WINDOW_S * SR)], SR)) == 0  # one window: nothing


@pytest.mark.parametrize("seconds", [1.5, 2.5, 4.0])
def test_a_piece_cut_at_any_sample_is_found_and_placed(library, table, seconds) -> None:
    rng = np.random.default_rng(2)
    for row in (0, 9, 20, 33):  # two scenes, two hums
        first = int(rng.integers(0, round((6.0 - seconds) * SR)))
        piece = library[row][first : first + round(seconds * SR)]
        ber, starts = pr.best_offsets(pr.query_prints(piece, SR), table)
        found = pr.decide(ber, starts)
        assert found.rows.tolist() == [row]
        assert found.ber[0] <= (0.12 if row < 20 else pr.MATCH_BER)  # a hum's bits near ties
        # a scene to its nearest phase; a hum, whose prints change slowly, to half a print
        assert abs(found.starts_s[0] - first / SR) <= pr.HOP_S / (pr.PHASES if row < 20 else 2)
        others = np.delete(ber, row)
        assert others.min() > pr.MATCH_BER  # every other recording, hums included


def test_a_quieter_piece_through_a_codec_at_another_rate_is_found(table, tmp_path) -> None:
    """20 dB down, AAC at 22.05 kHz in an MP4, decoded back to the model's rate."""
    start = 1.2345
    wave, rate = aac_piece(tmp_path, 11, start)
    ber, starts = pr.best_offsets(pr.query_prints(wave, rate), table)
    found = pr.decide(ber, starts)
    assert found.rows.tolist() == [11]
    assert abs(found.starts_s[0] - start) <= 0.06  # the codec's priming moves it a little


def test_a_recording_that_is_not_there_finds_nothing(table) -> None:
    piece = recording(99)[SR : 4 * SR]
    ber, starts = pr.best_offsets(pr.query_prints(piece, SR), table)
    assert ber.min() > pr.MATCH_BER
    assert len(pr.decide(ber, starts).rows) == 0


def test_copies_are_returned_together_and_a_shared_sound_is_not() -> None:
    ber = np.array([0.45, 0.08, 0.10, 0.40])
    found = pr.decide(ber, np.array([0.0, 1.0, 2.0, 0.0]), rows=np.array([5, 6, 7, 8]))
    assert found.rows.tolist() == [6, 7] and found.starts_s.tolist() == [1.0, 2.0]
    shared = np.full(pr.MAX_FOUND + 1, 0.1)
    assert len(pr.decide(shared, np.zeros(len(shared))).rows) == 0
    assert len(pr.decide(np.zeros(0), np.zeros(0)).rows) == 0


def test_a_piece_longer_than_an_item_is_not_matched_inside_it(library) -> None:
    short = pr.prints(library[0][:SR], SR)
    ber, _ = pr.best_offsets(pr.query_prints(library[0][: 3 * SR], SR), [short])
    assert ber.tolist() == [1.0]


def test_stored_prints_come_back_exactly() -> None:
    values = np.array([0, 1, 2047, 2048, 0xFFFFFFFF, 0x80000001, 123456789], np.uint32)
    stored = pr.to_store(values)
    assert stored.shape == (len(values), 3)
    assert np.array_equal(stored.astype(np.float16).astype(np.float32), stored)
    assert np.array_equal(pr.from_store(stored.astype(np.float16)), values)
    with pytest.raises(ValueError, match="2048"):
        pr.from_store(np.array([[4096.0, 0.0, 0.0]]))


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="NaN"):
        pr.prints(np.full(SR, np.nan, np.float32), SR)
    with pytest.raises(ValueError, match="resample"):
        pr.prints(np.zeros(SR, np.float32), 4_000)


# ------------------------------------------------------------------------------ the table


def test_the_table_short_lists_and_decides_as_comparing_every_item(library, table) -> None:
    """`PrintTable.match` asks only the items holding a piece's prints or their one-bit
    neighbours, and returns what comparing every item returns: scenes, hums, a codec's piece."""
    found_in = pr.PrintTable(table)
    rng = np.random.default_rng(4)
    for row in (2, 15, 24, 38):
        first = int(rng.integers(0, round(3.5 * SR)))
        phases = pr.query_prints(library[row][first : first + round(2.5 * SR)], SR)
        assert row in found_in.short_list(phases).tolist()
        found = found_in.match(phases)
        whole = pr.decide(*pr.best_offsets(phases, table))
        assert found.rows.tolist() == whole.rows.tolist() == [row]
        assert found.starts_s.tolist() == whole.starts_s.tolist()
        assert found_in.match(phases, allowed=np.arange(len(table)) != row).rows.tolist() == []


def test_the_table_from_a_store_matches_the_one_from_lists(table) -> None:
    counts = [len(p) for p in table]
    stored = pr.to_store(np.concatenate(table))
    again = pr.PrintTable.from_concatenated(
        pr.from_store(stored), np.concatenate([[0], np.cumsum(counts)])
    )
    assert len(again) == len(table)
    assert all((again.item(r) == table[r]).all() for r in range(len(table)))
    with pytest.raises(ValueError, match="offsets"):
        pr.PrintTable.from_concatenated(np.zeros(5, np.uint32), np.array([0, 3]))


def test_a_print_every_recording_holds_short_lists_nothing(library) -> None:
    """Digital silence prints 0: in every recording that has any, that value (and its one-bit
    neighbours) says nothing about where a piece is cut from."""
    gap = np.zeros(SR, np.float32)
    found_in = pr.PrintTable([pr.prints(np.concatenate([gap, w, gap]), SR) for w in library])
    assert (found_in.values == 0).sum() > pr.COMMON_POSTINGS
    silence = pr.query_prints(np.zeros(2 * SR, np.float32), SR)
    assert found_in.short_list(silence).tolist() == []
    assert len(found_in.match(silence).rows) == 0


def test_what_the_items_ask_adds_to_the_short_list(table, library) -> None:
    found_in = pr.PrintTable(table)
    phases = pr.query_prints(library[5][SR : 3 * SR], SR)
    # a short list of nothing (no value shared): only the items asked about are compared
    far = [(p ^ np.uint32(0x0F0F0F0F), s) for p, s in phases]
    assert found_in.short_list(far).tolist() == []
    assert found_in.match(far, also=[5, 6]).rows.tolist() == []
    assert found_in.match(phases, also=[6]).rows.tolist() == [5]


def test_the_prints_decide_before_the_landmarks() -> None:
    landmarks = Match(np.array([3, 4]), np.array([20, 11]), np.array([1.0, 2.0]))
    by_prints = pr.Found(np.array([4]), np.array([0.05]), np.array([2.004]))
    both = pr.pieces(by_prints, landmarks)
    assert both.rows.tolist() == [4] and both.votes.tolist() == [11]
    assert both.starts_s.tolist() == [2.004] and both.ber.tolist() == [0.05]
    nothing = pr.Found(np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
    alone = pr.pieces(nothing, landmarks)
    assert alone.rows.tolist() == [3, 4] and np.isnan(alone.ber).all()
    assert alone.votes.tolist() == [20, 11] and alone.starts_s.tolist() == [1.0, 2.0]


def test_the_lookup_holds_every_posting_a_plain_search_finds() -> None:
    """`PrintTable._postings` reads small buckets whole and binary-searches large ones (digital
    silence's 0 and its neighbours): the same postings as a plain search, over both paths."""
    rng = np.random.default_rng(5)
    items = [rng.integers(0, 2**32, 91, dtype=np.uint64).astype(np.uint32) for _ in range(300)]
    for i, found in enumerate(items):
        found[rng.random(91) < 0.1] = 0  # silence, in every recording
        found[:3] = np.uint32(7 + i % 5)  # small values shared by a few, in the zeros' bucket
        found[3] = items[0][10]  # one value held by every item
    table = pr.PrintTable(items)
    assert table._starts[1] - table._starts[0] > pr._SMALL_BUCKET  # both paths are taken
    asked = np.unique(np.concatenate([items[4][:40], [0, 7, 8, 9, 1234567]]).astype(np.uint32))
    for most in (1, 64, 400):
        got = np.sort(table.values[table._postings(asked, most)])
        plain = [v for v in table.values if v in set(asked.tolist())]
        counts = {v: plain.count(v) for v in set(plain)}
        want = np.sort(np.array([v for v in plain if counts[v] <= most], np.uint32))
        assert got.tolist() == want.tolist()
