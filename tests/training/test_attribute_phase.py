"""The attribute phase's names read by likeness: which tokens a name keeps, and the captions its
calibration swaps names in."""

from __future__ import annotations

import re

import numpy as np
import torch
import torch.nn.functional as F

from models.attributes import ATTRIBUTES, CLASSES, columns
from models.config import preset
from models.text import TextBackbone
from training.attribute_phase import FUNCTION_TOKENS, NAMED, _names, _swapped


def _uses(caption: str, name: str) -> bool:
    return re.search(rf"\b{re.escape(name)}\b", caption) is not None


def test_the_named_attributes_hold_training_wordings_of_every_value():
    for attribute, table in NAMED.items():
        assert set(table) == set(ATTRIBUTES[attribute])
        for wordings in table.values():
            assert wordings.train and wordings.extra
            assert not set(wordings.train) & set(wordings.extra)
    # the tempo's wordings gather both phrase tables, each once
    assert NAMED["tempo"]["slow"].train.count("slowly") == 1
    assert "at a crawl" in NAMED["tempo"]["slow"].train


def test_a_swapped_caption_names_its_value_in_another_training_wording():
    table = NAMED["kind"]
    captions = [
        "a small red rubber ball bounces from left to right",
        "a large blue motor drives slowly at night",
        "a quiet room",  # names no kind: never swapped
    ]
    rng = np.random.default_rng(0)
    swapped, rows = _swapped(captions, table, rng)
    assert sorted(rows) == [0, 1]
    for caption, row in zip(swapped, rows, strict=True):
        value, was = ("ball", "rubber ball") if row == 0 else ("engine", "motor")
        assert not _uses(caption, was)
        assert any(_uses(caption, name) for name in table[value].extra)
    # the longest wording is the one swapped: nothing of "rubber ball" is left
    first = swapped[rows.index(0)]
    assert "rubber" not in first and first.endswith("bounces from left to right")


def test_a_names_tokens_are_averaged_over_the_captions_that_use_it():
    tower = TextBackbone(preset("tiny").text)
    captions = [
        "a small red ball bounces slowly",
        "a large green ball hops at a slow pace",
        "a blue drum pulses quickly",
    ]
    with torch.no_grad():
        states, mask = tower.states(captions)
    states_of = [F.normalize(s[m], dim=-1) for s, m in zip(states, mask, strict=True)]
    found = _names(tower, captions, states_of)
    assert found is not None
    vectors, kept = found
    kept_classes = [CLASSES[c] for c in kept.tolist()]
    # "ball" in two captions: one vector, the mean of its two states
    ball = kept_classes.index(("kind", "ball"))
    tokens = [
        tower.tokenizer.convert_ids_to_tokens(tower.tokenizer(c)["input_ids"]) for c in captions
    ]
    both = torch.stack([states_of[i][tokens[i].index("ball")] for i in (0, 1)]).mean(0)
    torch.testing.assert_close(vectors[ball], F.normalize(both, dim=0))
    assert kept_classes.count(("kind", "ball")) == 1 and ("kind", "drum") in kept_classes
    # "at a slow pace": its words, not its function words
    slow = [v for v, c in zip(vectors, kept_classes, strict=True) if c == ("tempo", "slow")]
    assert "slowly" in tokens[0] and len(slow) == 3  # "slowly"; "slow", "pace"
    pace = states_of[1][tokens[1].index("pace")]
    assert any(torch.allclose(v, F.normalize(pace, dim=0)) for v in slow)
    assert "at" in FUNCTION_TOKENS and not any(
        torch.allclose(v, states_of[1][tokens[1].index("at")]) for v in slow
    )
    assert set(kept.tolist()) <= set(columns("kind")) | set(columns("tempo"))


def test_a_captions_noun_tokens_are_those_inside_a_training_noun():
    from training.attribute_phase import _noun_pattern, _noun_tokens

    tower = TextBackbone(preset("tiny").text)
    pattern, kind_of = _noun_pattern()
    assert kind_of["wall clock"] == "clock" and kind_of["motor"] == "engine"
    caption = "a small wall clock ticks while a motor hums"
    tokens = tower.tokenizer.convert_ids_to_tokens(tower.tokenizer(caption)["input_ids"])
    labels = _noun_tokens(tower.tokenizer, caption, pattern, len(tokens))
    nouns = [t for t, y in zip(tokens, labels, strict=True) if y]
    assert nouns == ["wall", "clock", "motor"]  # the special tokens and the rest are not
    # an `extra` wording is not a training noun ("sparrow"); a word inside another is not one
    assert not _noun_tokens(tower.tokenizer, "a sparrow chirps", pattern, 5).any()
    assert not _noun_tokens(tower.tokenizer, "drummers play", pattern, 4).any()


def test_a_threshold_is_cut_where_it_says_the_truth_best():
    from training.attribute_phase import _cut

    scores = np.array([-3.0, -2.0, -1.0, 1.0, 2.0, -np.inf])
    truth = np.array([False, False, False, True, True, False])
    cut, right = _cut(scores, truth)
    assert cut == 0.0 and right == 1.0  # midway between −1 and 1
    # one mistake either way is as good: the middle of the equally good cuts
    cut, right = _cut(np.array([0.0, 1.0, 2.0, 3.0]), np.array([False, True, False, True]))
    assert right == 0.75 and 0.5 <= cut <= 2.5
    # nothing true: a cut above every score
    cut, right = _cut(np.array([0.0, 1.0]), np.array([False, False]))
    assert cut > 1.0 and right == 1.0


def test_the_heard_sizes_names_are_whole_words_and_their_hyphens_name_nothing():
    """A pitch name keeps its words' states, not its hyphen's ("high-pitched": "high",
    "pitched"; the hyphen is in "bass-heavy" as well); "high" is found alone, not inside
    "high-pitched"; the seen and the heard names of both sizes are the grammar's training
    wordings, their calibration's swaps its `extra` ones."""
    from training.attribute_phase import HEARD_SIZE_NAMES, _name_states, _word

    tower = TextBackbone(preset("tiny").text)
    captions = ["a high-pitched bell dings slowly", "high chirps repeat quickly"]
    with torch.no_grad():
        states, mask = tower.states(captions)
    states_of = [F.normalize(s[m], dim=-1) for s, m in zip(states, mask, strict=True)]
    tokens = [
        tower.tokenizer.convert_ids_to_tokens(tower.tokenizer(c)["input_ids"]) for c in captions
    ]
    assert "-" in tokens[0]
    hyphenated = _name_states(tower, _word("high-pitched"), captions, states_of)
    want = [states_of[0][tokens[0].index(t)] for t in ("high", "pitched")]
    assert len(hyphenated) == 2
    for got, token in zip(hyphenated, want, strict=True):
        torch.testing.assert_close(got, F.normalize(token.float(), dim=0))
    # "high" alone is the second caption's only: the first's is part of "high-pitched"
    (alone,) = _name_states(tower, _word("high"), captions, states_of)
    torch.testing.assert_close(alone, F.normalize(states_of[1][tokens[1].index("high")], dim=0))
    assert _name_states(tower, _word("low"), captions, states_of) == []
    seen, heard = HEARD_SIZE_NAMES
    for table in (seen, heard):
        assert set(table) == set(ATTRIBUTES["size"])
        for wordings in table.values():
            assert wordings.train and wordings.extra
    assert "deep" in heard["large"].train and "small" in seen["small"].train
    rng = np.random.default_rng(0)
    swapped, rows = _swapped(["a deep drum booms", "a quiet room"], heard, rng)
    assert rows == [0] and any(_uses(swapped[0], w) for w in heard["large"].extra)
