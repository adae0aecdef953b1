"""bench_crossbands: the sound's best band finds a picture that its summed envelope hides."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import bench_crossbands as bc
from benchmarks.bench_quality import other_pools
from models.events import standardise
from tests.benchmarks.tiny_corpus import tiny_corpus


def _events(rng: np.random.Generator, bins: int, count: int) -> np.ndarray:
    x = np.zeros(bins, np.float32)
    x[rng.choice(bins, count, replace=False)] = 1.0
    return x


def clips_with_loud_background(
    n: int = 16, bins: int = 72, seed: int = 0, landing: bool = False, below: bool = False
):
    """Each clip's picture shows one source's events; its sound holds them in band 0 and a louder
    background (rain-like onsets its picture never shows) in the seven other bands. The picture
    shows them in its change envelope, its motion envelope unrelated; `landing`: the other way
    round (a ball landing, `models.events.picture_motion`); `below`: only its lower half's
    change envelope shows them (`models.events.picture_halves`), the whole picture's neither."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        source = _events(rng, bins, 6)
        background = [3.0 * _events(rng, bins, 12) for _ in range(7)]
        bands = np.stack([standardise(b) for b in [source, *background]], axis=1)
        other = standardise(_events(rng, bins, 6))
        seen = standardise(source)
        halves = np.stack([standardise(_events(rng, bins, 6)) for _ in range(4)], axis=1)
        if below:
            halves[:, 2], seen = seen, standardise(_events(rng, bins, 6))
        out.append(
            {
                "visual": other if landing else seen,
                "visual_motion": seen if landing else other,
                "visual_halves": halves,
                "audio": standardise(source + sum(background)),
                "audio_bands": bands,
            }
        )
    return out


def test_the_best_band_finds_what_the_summed_envelope_hides():
    envelopes = clips_with_loud_background()
    r = bc.measure(envelopes, list(range(len(envelopes))))
    for d in ("audio→video", "video→audio"):
        assert r[f"{d} best band"]["R@1"] == 1.0
        assert r[f"{d} single"]["R@1"] < 1.0  # the background drowns the source in the sum
    # With every picture swapped for another clip's, the own clip's is no longer there to find.
    swapped = [
        e | {"visual": envelopes[(k + 1) % len(envelopes)]["visual"]}
        for k, e in enumerate(envelopes)
    ]
    assert bc.measure(swapped, list(range(len(swapped))))["audio→video best band"]["R@1"] <= 0.2


@pytest.mark.parametrize(
    ("shown", "finds", "misses"),
    [
        # the motion envelope finds a landing the change envelope does not show
        ({"landing": True}, "+ motion", "best band"),
        # the halves find what only the lower half shows, and the whole picture does not
        ({"below": True}, "+ halves", "+ motion"),
    ],
)
def test_an_envelope_finds_what_only_it_shows(shown: dict, finds: str, misses: str):
    envelopes = clips_with_loud_background(**shown)
    r = bc.measure(envelopes, list(range(len(envelopes))))
    for d in ("audio→video", "video→audio"):
        assert r[f"{d} {finds}"]["R@1"] == 1.0
        assert r[f"{d} {misses}"]["R@1"] <= 0.2


def test_pools_take_one_split_of_a_manifest(tmp_path):
    manifest = tiny_corpus(tmp_path / "c", clips=4, seed=3, split="val", workers=1)
    assert len(other_pools([f"v={manifest}#val"])["v"]) == 4
    assert len(other_pools([f"all={manifest}"])["all"]) == 4
    with pytest.raises(SystemExit, match="no items in split 'test'"):
        other_pools([f"t={manifest}#test"])


def test_benchmark_on_a_tiny_corpus_writes_its_result(tmp_path, results):
    manifest = tiny_corpus(tmp_path / "c", clips=12, seed=9, workers=2)
    out = bc.main(
        [
            "--pool",
            f"tiny={manifest}#test",
            "--cache",
            str(tmp_path / "cache"),
            "--workers",
            "1",
            "--max-queries",
            "5",
        ]
    )
    tiny = out["pools"]["tiny"]
    assert tiny["clips"] == 12 and 0 < tiny["queries"] <= 5
    for key in ("audio→video single", "audio→video best band", "video→audio + halves"):
        assert tiny[key]["n"] == tiny["queries"]
    (written,) = results.glob("bench_crossbands-*.json")
    assert json.loads(written.read_text())["pools"]["tiny"]["queries"] == tiny["queries"]
