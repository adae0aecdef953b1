"""The attribute readers: labels from SynthAV metadata, the text reader's strongest token, and the
lean along the picture reader's directions."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from models.attributes import (
    ATTRIBUTES,
    CLASSES,
    WORD_SHARE,
    AttributeReaders,
    agreement,
    agreement_bound,
    agreement_logs,
    columns,
    lean,
    shown_labels,
    with_sources,
)
from models.drift import DRIFT_FEATURES
from models.policy import SearchPolicy


def _meta(**more) -> dict:
    shown = {"kind": "bell", "colour": "red", "size": "small", "direction": "still"}
    heard_only = {"kind": "siren", "colour": "blue", "size": "large", "direction": "still"}
    return {
        "scene": "night",
        "sources": [
            {**shown, "tempo": "slow", "role": "main"},
            {**heard_only, "tempo": "fast", "role": "offscreen"},
        ],
        **more,
    }


def test_labels_name_what_a_clip_shows_and_its_scene():
    y = shown_labels(_meta())
    assert y is not None and y.shape == (len(CLASSES),)
    named = {CLASSES[i] for i in np.flatnonzero(y)}
    assert named == {
        ("kind", "bell"),
        ("colour", "red"),
        ("size", "small"),
        ("direction", "still"),
        ("tempo", "slow"),
        ("scene", "night"),
    }  # the offscreen siren is heard, not shown
    assert shown_labels({"scene": "night"}) is None
    bad = _meta()
    bad["sources"][0]["colour"] = "mauve"
    assert shown_labels(bad) is None
    assert shown_labels({**_meta(), "scene": "dusk"}) is None
    with pytest.raises(ValueError, match="unknown attribute"):
        columns("mood")


def test_the_text_reader_takes_each_class_from_its_strongest_real_token():
    torch.manual_seed(0)
    readers = AttributeReaders(8, 4).requires_grad_(False)
    torch.nn.init.normal_(readers.text.weight)
    states = torch.randn(2, 5, 8)
    mask = torch.tensor([[True, True, True, False, False], [True] * 5])
    logits = readers.text_logits(states, mask)
    per_token = readers.text(torch.nn.functional.normalize(states, dim=-1))
    assert torch.allclose(logits[0], per_token[0, :3].amax(0))
    assert torch.allclose(logits[1], per_token[1].amax(0))
    padded = states.clone()
    padded[0, 3:] = 1e3  # padding never counts, whatever it holds
    assert torch.equal(readers.text_logits(padded, mask), logits)
    with pytest.raises(ValueError, match="at least one token"):
        readers.text_logits(states, torch.zeros(2, 5, dtype=torch.bool))


def _worded_readers() -> tuple[AttributeReaders, torch.Tensor]:
    """Readers (text 8 wide) with a random fitted text reader and names for the kinds (one
    each, the first seven basis vectors of the token space) and for one tempo (the eighth)."""
    torch.manual_seed(1)
    readers = AttributeReaders(8, 4).requires_grad_(False)
    torch.nn.init.normal_(readers.text.weight)
    kinds, tempo = columns("kind"), columns("tempo")
    words = torch.eye(8) * 3.0  # kept at unit length
    named = torch.tensor([*kinds, tempo[1]])
    readers.set_words(words, named, {"kind": (4.0, 1.5), "tempo": (2.0, -0.5)})
    return readers, words


def test_an_attribute_is_also_read_by_its_strongest_tokens_likeness_to_the_training_names():
    readers, _ = _worded_readers()
    assert readers.worded() == ("kind", "tempo")
    kinds, tempo = columns("kind"), columns("tempo")
    states = torch.zeros(1, 3, 8)
    states[0, 0, 2] = 1.0  # exactly the third kind's name
    states[0, 1, 4], states[0, 1, 7] = 0.6, 0.8  # cosine 0.6 to the fifth's, 0.8 to "fast"
    states[0, 2, 7], states[0, 2, 5] = 0.6, 0.8  # weaker for "fast", 0.8 to the sixth kind
    mask = torch.ones(1, 3, dtype=torch.bool)
    liked = readers.likeness(states, mask)[0]
    # each class's likeness is how far its strongest token falls behind its attribute's best
    want = torch.zeros(len(CLASSES))
    want[kinds] = -1.0
    want[kinds[4]] = 0.6 - 1.0
    want[kinds[5]] = 0.8 - 1.0
    want[kinds[2]] = 0.0
    want[tempo[0]] = -2.0 - 0.8  # "slow" has no name: −2, behind "fast"'s 0.8
    torch.testing.assert_close(liked, want)
    fitted = readers.text_logits(states, mask, words=False)
    both = readers.text_logits(states, mask)
    torch.testing.assert_close(
        both[0, kinds],
        (1 - WORD_SHARE) * fitted[0, kinds] + WORD_SHARE * (4.0 * liked[kinds] + 1.5),
    )
    torch.testing.assert_close(
        both[0, tempo],
        (1 - WORD_SHARE) * fitted[0, tempo] + WORD_SHARE * (2.0 * liked[tempo] - 0.5),
    )
    others = [c for c in range(len(CLASSES)) if c not in kinds + tempo]
    assert torch.equal(both[:, others], fitted[:, others])  # only named attributes change
    # a padded token never counts, however like a name it is
    padded = torch.cat([states, torch.zeros(1, 1, 8)], dim=1)
    padded[0, 3, 0] = 1.0
    pad_mask = torch.tensor([[True, True, True, False]])
    torch.testing.assert_close(readers.likeness(padded, pad_mask), liked[None])
    # readers without names read with the fitted reader alone
    plain = AttributeReaders(8, 4)
    plain.text.load_state_dict(readers.text.state_dict())
    assert not plain.reads_words and plain.worded() == ()
    assert torch.equal(plain.text_logits(states, mask), fitted)
    with pytest.raises(ValueError, match="a calibration for each attribute"):
        readers.set_words(torch.eye(8)[:1], torch.tensor([columns("colour")[0]]), {"kind": (1, 0)})
    with pytest.raises(ValueError, match="must be"):
        readers.set_words(torch.eye(4), torch.tensor(kinds[:4]), {"kind": (1.0, 0.0)})


def test_the_names_travel_with_the_readers_and_old_readers_load_without_them():
    readers, words = _worded_readers()
    loaded = AttributeReaders(8, 4)
    loaded.load_state_dict(readers.state_dict())
    assert loaded.reads_words and loaded.words.shape == (8, 8)
    torch.testing.assert_close(loaded.words, torch.nn.functional.normalize(words, dim=-1))
    assert torch.equal(loaded.word_scale, readers.word_scale)
    assert float(loaded.word_scale[columns("kind")[0]]) == 4.0
    assert float(loaded.word_offset[columns("tempo")[1]]) == -0.5
    older = {
        k: v
        for k, v in readers.state_dict().items()
        if k not in ("words", "word_columns", "word_scale", "word_offset")
    }
    fresh = AttributeReaders(8, 4)
    fresh.load_state_dict(older)  # strict: nothing missing
    assert not fresh.reads_words


def _random_picture_reader(seed: int) -> AttributeReaders:
    """Readers (text 8 wide, pictures 6) whose picture reader and standardisation are random."""
    torch.manual_seed(seed)
    readers = AttributeReaders(8, 6).requires_grad_(False)
    torch.nn.init.normal_(readers.picture.weight)
    torch.nn.init.normal_(readers.picture.bias)
    readers.picture_mean.normal_()
    readers.picture_scale.uniform_(0.5, 2.0)
    return readers


def test_a_pictures_score_along_the_lean_is_its_signed_logits_up_to_a_constant():
    readers = _random_picture_reader(1)
    p = torch.rand(1, len(CLASSES))
    names = ("colour", "direction")
    dirs = readers.directions(p, names)[0]  # (2, D)
    v1, v2 = torch.randn(6), torch.randn(6)
    signed = (2 * p[0] - 1) / len(CLASSES)
    chosen = columns("colour") + columns("direction")
    l1, l2 = readers.picture_logits(v1[None])[0], readers.picture_logits(v2[None])[0]
    expected = float((signed[chosen] * (l1 - l2)[chosen]).sum())
    assert float(dirs.sum(0) @ (v1 - v2)) == pytest.approx(expected, rel=1e-4, abs=1e-6)
    found = lean({"colour": dirs[0].numpy(), "direction": dirs[1].numpy()}, names, 0.5)
    assert np.allclose(found, 0.5 * dirs.sum(0).numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="no direction"):
        lean({"colour": dirs[0].numpy()}, names, 1.0)


def test_the_policy_records_what_a_text_query_leans_on():
    policy = SearchPolicy(
        True, {}, text_attributes=("size", "direction"), text_attribute_weight=0.2
    )
    back = SearchPolicy.from_dict(policy.to_dict())
    assert back.text_lean() == (("size", "direction"), 0.2)
    record = policy.to_dict()
    assert record["text_attributes"] == ["size", "direction"]
    record["text_attributes"] = ["size", "mood"]  # a name this version does not know: no lean
    assert SearchPolicy.from_dict(record).text_lean() == ((), 0.0)
    del record["text_attributes"]  # a record from before the fields
    assert SearchPolicy.from_dict(record).text_lean() == ((), 0.0)
    assert set(ATTRIBUTES) >= {"colour", "direction", "size"}


def test_the_policy_records_the_agreements_weight_only_beside_a_lean():
    policy = SearchPolicy(
        True,
        {},
        text_attributes=("size",),
        text_attribute_weight=0.2,
        text_attribute_agreement=0.5,
    )
    record = policy.to_dict()
    assert record["text_attribute_agreement"] == 0.5
    assert SearchPolicy.from_dict(record).text_agreement() == 0.5
    assert record["text_agreement_attributes"] == ["size"]  # the lean's, where none is recorded
    wider = replace(policy, text_agreement_attributes=("size", "kind"))
    assert SearchPolicy.from_dict(wider.to_dict()).agreement_attributes() == ("size", "kind")
    del record["text_attribute_agreement"]  # a record from before the field: no re-rank
    assert SearchPolicy.from_dict(record).text_agreement() == 0.0
    alone = SearchPolicy(True, {}, text_attribute_agreement=0.5)  # nothing leans: nothing agrees
    assert alone.text_agreement() == 0.0
    assert "text_attribute_agreement" not in alone.to_dict()
    record = policy.to_dict() | {"text_attribute_agreement": -1.0}
    assert SearchPolicy.from_dict(record).text_agreement() == 0.0


def test_the_readers_agreement_is_the_mean_log_chance_they_say_the_same():
    t = np.full(len(CLASSES), 0.5, np.float32)
    p = np.full((2, len(CLASSES)), 0.5, np.float32)
    size = columns("size")
    t[size] = (0.9, 0.1)  # the sentence says small
    p[0, size] = (0.8, 0.2)  # the first picture shows a small one
    p[1, size] = (0.05, 0.95)  # the second a large one
    found = agreement(t[None], p, ("size",))
    expected = [
        np.mean(np.log([0.9 * 0.8 + 0.1 * 0.2 + 1e-3, 0.1 * 0.2 + 0.9 * 0.8 + 1e-3])),
        np.mean(np.log([0.9 * 0.05 + 0.1 * 0.95 + 1e-3, 0.1 * 0.95 + 0.9 * 0.05 + 1e-3])),
    ]
    assert np.allclose(found, expected, atol=1e-6)
    assert found[0] > found[1]
    # torch tensors alike, and attributes the policy does not lean on do not count
    both = agreement(torch.from_numpy(t)[None], torch.from_numpy(p), ("size", "colour"))
    colour = np.log(0.5 * 0.5 + 0.5 * 0.5 + 1e-3)
    mixed = (np.array(expected) * 2 + colour * len(columns("colour"))) / (2 + 6)
    assert np.allclose(both.numpy(), mixed, atol=1e-6)
    with pytest.raises(ValueError, match="at least one"):
        agreement(t[None], p, ())


def test_the_picture_reader_as_arrays_reads_as_the_module_does():
    readers = _random_picture_reader(2)
    v = torch.randn(5, 6)
    expected = torch.sigmoid(readers.picture_logits(v)).numpy()
    found = readers.picture_reader().probabilities(v.numpy())
    assert found.shape == (5, len(CLASSES))
    assert np.allclose(found, expected, atol=1e-5)


def test_kind_and_size_can_come_from_the_picture_what_networks_lists():
    from models.what_net import CLASSES as WHAT
    from models.what_net import class_of

    pictures = np.full((3, len(CLASSES)), 0.25, np.float32)
    lists = np.zeros((3, len(WHAT)), np.float32)
    lists[0, class_of("bell", "small")] = 0.9
    lists[0, class_of("drum", "large")] = 0.6
    lists[2] = np.nan  # an item without a picture's list keeps the reader's
    found = with_sources(pictures, lists)
    kind, size = columns("kind"), columns("size")
    assert found[0, kind[ATTRIBUTES["kind"].index("bell")]] == pytest.approx(0.9)
    assert found[0, kind[ATTRIBUTES["kind"].index("drum")]] == pytest.approx(0.6)
    assert found[0, kind[ATTRIBUTES["kind"].index("bird")]] == 0.0
    assert found[0, size].tolist() == pytest.approx([0.9, 0.6])
    assert np.all(found[1, kind + size] == 0.0)
    assert np.all(found[2] == 0.25)
    others = [c for c in range(len(CLASSES)) if c not in kind + size]
    assert np.all(found[:, others] == 0.25)  # colour, direction, tempo, scene: the reader's
    assert np.all(pictures == 0.25)  # a copy
    with pytest.raises(ValueError, match="lists"):
        with_sources(pictures, lists[:, :5])


def test_a_pictures_direction_can_come_from_where_its_foreground_goes():
    """`with_directions` replaces the direction's columns (numpy arrays and tensors alike),
    rows of NaN keep the reader's; an unfitted drift reader says one half for every direction and
    is not used; old readers load without it."""
    from models.attributes import with_directions

    pictures = np.full((3, len(CLASSES)), 0.25, np.float32)
    going = np.array([[0.9, 0.05, 0.1], [np.nan] * 3, [0.0, 0.2, 0.8]], np.float32)
    cols = columns("direction")
    out = with_directions(pictures, going)
    want = np.array([[0.9, 0.05, 0.1], [0.25] * 3, [0.0, 0.2, 0.8]], np.float32)
    np.testing.assert_array_equal(out[:, cols], want)
    others = [c for c in range(len(CLASSES)) if c not in cols]
    np.testing.assert_array_equal(out[:, others], pictures[:, others])
    assert pictures[0, cols[0]] == 0.25  # the input is left alone
    as_tensor = with_directions(torch.from_numpy(pictures), going)
    assert isinstance(as_tensor, torch.Tensor)
    np.testing.assert_array_equal(as_tensor.numpy(), out)
    with pytest.raises(ValueError, match="direction"):
        with_directions(pictures, going[:, :2])
    readers = AttributeReaders(8, 4)
    assert not readers.reads_drift
    unsure = readers.drift_probabilities(np.ones((2, DRIFT_FEATURES)))
    np.testing.assert_array_equal(unsure, np.full((2, 3), 0.5))
    readers.drift.weight.data[0, 0] = 4.0  # rightward where the first feature (the slope) is
    readers.drift_fitted.fill_(1.0)
    rightward, leftward = np.ones(DRIFT_FEATURES), -np.ones(DRIFT_FEATURES)
    p = readers.drift_probabilities(np.stack([rightward, leftward]))
    assert p[0, 0] > 0.9 and p[1, 0] < 0.1
    loaded = AttributeReaders(8, 4)
    loaded.load_state_dict(readers.state_dict())
    assert loaded.reads_drift and torch.equal(loaded.drift.weight, readers.drift.weight)
    drift_keys = ("drift.weight", "drift.bias", "drift_mean", "drift_scale", "drift_fitted")
    older = {k: v for k, v in readers.state_dict().items() if k not in drift_keys}
    fresh = AttributeReaders(8, 4)
    fresh.load_state_dict(older)  # strict: nothing missing
    assert not fresh.reads_drift
    # a reader over the whole picture's three numbers alone (before the halves): left unfitted
    narrower = dict(readers.state_dict())
    narrower["drift.weight"] = torch.ones(3, 3)
    fresh.load_state_dict(narrower)
    assert not fresh.reads_drift and fresh.drift.weight.shape == (3, DRIFT_FEATURES)


def test_a_pictures_kind_and_colour_can_come_from_its_glyphs():
    """`with_glyphs` replaces the kind's and the colour's columns, an attribute's NaN keeps what
    it had; the shape and tint readers read each part (a softmax) and a clip by
    `models.shape.kind_chances`; an unfitted one gives NaN and is not used; readers from before
    them, or over other numbers, load them unfitted."""
    from models.attributes import GLYPH_CLASSES, with_glyphs
    from models.shape import COLOUR_FEATURES, PART_FEATURES, ROW

    assert GLYPH_CLASSES == 13
    pictures = np.full((2, len(CLASSES)), 0.25, np.float32)
    glyphs = np.full((2, GLYPH_CLASSES), np.nan, np.float32)
    glyphs[0, :7] = [0.7, 0.1, 0.0, 0.0, 0.0, 0.2, 0.0]
    glyphs[1, 7:] = [0.0, 0.9, 0.1, 0.0, 0.0, 0.0]  # only the colour read
    out = with_glyphs(pictures, glyphs)
    kind, colour = columns("kind"), columns("colour")
    np.testing.assert_array_equal(out[0, kind], glyphs[0, :7])
    np.testing.assert_array_equal(out[0, colour], pictures[0, colour])
    np.testing.assert_array_equal(out[1, kind], pictures[1, kind])
    np.testing.assert_array_equal(out[1, colour], glyphs[1, 7:])
    others = [c for c in range(len(CLASSES)) if c not in kind + colour]
    np.testing.assert_array_equal(out[:, others], pictures[:, others])
    as_tensor = with_glyphs(torch.from_numpy(pictures), glyphs)
    np.testing.assert_array_equal(as_tensor.numpy(), out)
    with pytest.raises(ValueError, match="glyphs"):
        with_glyphs(pictures, glyphs[:, :7])
    readers = AttributeReaders(8, 4)
    assert not readers.reads_shape and not readers.reads_tint
    holed = np.concatenate([[0.0], np.ones(PART_FEATURES), np.zeros(COLOUR_FEATURES)])
    green = np.concatenate([[1.0], np.zeros(PART_FEATURES), np.ones(COLOUR_FEATURES)])
    rows = np.stack([holed, green]).astype(np.float32)
    assert rows.shape[1] == ROW
    assert np.isnan(readers.glyph_probabilities(rows)).all()
    readers.shape.weight.data[3, 0] = 5.0  # a bird where the first outline number is high
    readers.shape_fitted.fill_(1.0)
    p = readers.part_probabilities(rows[:, 1 : 1 + PART_FEATURES])
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    assert p[0].argmax() == 3 and p[1].max() == pytest.approx(1 / 7, abs=1e-5)
    # one frame with a holed part, one with a solid one: half a bird
    clip = readers.kind_probabilities(rows)
    assert clip is not None
    assert clip[3] == pytest.approx((p[0, 3] + p[1, 3]) / 2, rel=1e-5)
    assert readers.kind_probabilities(np.zeros((0, ROW))) is None
    read = readers.glyph_probabilities(rows)
    np.testing.assert_allclose(read[:7], clip)
    assert np.isnan(read[7:]).all()  # no colour reader yet
    readers.tint.weight.data[1, 0] = 5.0  # green where the first colour number is high
    readers.tint_fitted.fill_(1.0)
    tint = readers.colour_probabilities(rows)
    assert tint is not None and tint.argmax() == 1
    np.testing.assert_allclose(readers.glyph_probabilities(rows)[7:], tint)
    loaded = AttributeReaders(8, 4)
    loaded.load_state_dict(readers.state_dict())
    assert loaded.reads_shape and loaded.reads_tint
    assert torch.equal(loaded.tint.weight, readers.tint.weight)
    keys = [
        f"{r}{n}"
        for r in ("shape", "tint")
        for n in (".weight", ".bias", "_mean", "_scale", "_fitted")
    ]
    older = {k: v for k, v in readers.state_dict().items() if k not in keys}
    fresh = AttributeReaders(8, 4)
    fresh.load_state_dict(older)  # strict: nothing missing
    assert not fresh.reads_shape and not fresh.reads_tint
    other = dict(readers.state_dict())
    other["shape.weight"] = torch.ones(7, 5)
    fresh.load_state_dict(other)
    assert not fresh.reads_shape and fresh.shape.weight.shape == (7, PART_FEATURES)
    assert fresh.reads_tint


def test_the_agreement_bound_is_below_the_agreement_and_equal_where_the_sentence_is_sure() -> None:
    """`agreement_bound` never exceeds `agreement` (the log's concavity) and equals it where
    every class the sentence is read for is 0 or 1; a policy records how many candidates it
    finds only with the agreement it serves, and a bad record finds none."""
    rng = np.random.default_rng(0)
    names = ("size", "colour", "kind")
    pictures = rng.uniform(0, 1, (50, len(CLASSES))).astype(np.float32)
    text = rng.uniform(0, 1, (7, len(CLASSES))).astype(np.float32)
    logs = agreement_logs(pictures, names)
    width = sum(len(columns(n)) for n in names)
    assert logs.shape == (50, width + 1)
    bound = agreement_bound(text, logs, names)
    exact = agreement(text[:, None, :], pictures[None], names)
    assert bound.shape == exact.shape == (7, 50)
    assert (bound <= exact + 1e-5).all() and (bound < exact - 1e-3).any()
    sure = (text > 0.5).astype(np.float32)
    np.testing.assert_allclose(
        agreement_bound(sure, logs, names),
        agreement(sure[:, None, :], pictures[None], names),
        atol=1e-5,
    )
    # one sentence's (C,) reading against every item: its row of the batch
    np.testing.assert_allclose(agreement_bound(text[2], logs, names), bound[2], atol=1e-6)

    policy = SearchPolicy(
        True,
        {},
        text_attributes=("size",),
        text_attribute_weight=0.1,
        text_attribute_agreement=1.0,
        text_agreement_found=100,
    )
    assert SearchPolicy.from_dict(policy.to_dict()).agreement_found() == 100
    assert replace(policy, text_attribute_agreement=None).agreement_found() == 0
    assert "text_agreement_found" not in replace(policy, text_attribute_agreement=None).to_dict()
    for bad in (-5, 0, 2.5, True, "100", 10**9):
        record = policy.to_dict() | {"text_agreement_found": bad}
        assert SearchPolicy.from_dict(record).agreement_found() == 0
    assert (
        SearchPolicy.from_dict(
            {k: v for k, v in policy.to_dict().items() if k != "text_agreement_found"}
        ).agreement_found()
        == 0
    )  # a record from before the field


def _noun_readers() -> AttributeReaders:
    """Readers (text 10 wide) with names for the kinds (the first seven basis vectors), a nouns'
    detector that reads the eighth (its logit 10 × the token's cosine to it − 5), a second noun
    and a noun at all counted from logit 0, and the kinds' softmax at temperature 0.05."""
    readers = AttributeReaders(10, 4).requires_grad_(False)
    readers.set_words(torch.eye(10)[:7], torch.tensor(columns("kind")), {"kind": (4.0, 1.5)})
    readers.noun.weight[0, 7] = 10.0
    readers.noun.bias.fill_(-5.0)
    readers.set_nouns(0.0, 0.0, 0.05)
    return readers


def _token(kind: int | None = None, noun: bool = False, other: int = 9) -> torch.Tensor:
    """A token state: like kind `kind`'s name (cosine 0.8 for a noun, 1 for another word), a
    noun's (the eighth dimension), or neither (`other`)."""
    out = torch.zeros(10)
    if noun:
        out[7] = 0.6
        if kind is not None:
            out[kind] = 0.8
    elif kind is not None:
        out[kind] = 1.0
    else:
        out[other] = 1.0
    return out


def test_the_kinds_a_sentence_names_are_read_at_its_nouns():
    """A verb just like another kind's name ("ricochets") outvotes the noun in the likeness,
    which takes each kind's strongest token anywhere; at the nouns, the noun's kind is named. A
    second noun far enough from the first names its kind too (1 − (1 − p₁)(1 − p₂)); a second
    token of the same name next to the first does not count twice; a sentence without a noun
    the detector knows says so, and the heard reading keeps its own kinds there."""
    readers = _noun_readers()
    kinds = columns("kind")
    assert readers.reads_nouns
    one = [_token(other=8), _token(), _token(2, noun=True), _token(), _token(4), _token()]
    one += [_token(other=8), _token(other=8)]
    states = torch.stack(one)[None]
    mask = torch.ones(1, 8, dtype=torch.bool)
    assert int(readers.likeness(states, mask)[0, kinds].argmax()) == 4  # the verb's kind
    chances, found, count = readers.noun_kinds(states, mask)
    assert bool(found[0]) and int(count[0]) == 1
    liked = torch.zeros(7)
    liked[2] = 0.8
    torch.testing.assert_close(chances[0], torch.softmax(liked / 0.05, dim=0))
    assert int(chances[0].argmax()) == 2
    # a second noun four tokens on names the sixth kind as well
    two = list(one)
    two[6] = _token(5, noun=True)
    chances, found, count = readers.noun_kinds(torch.stack(two)[None], mask)
    assert int(count[0]) == 2
    p2 = torch.zeros(7)
    p2[5] = 0.8
    p2 = torch.softmax(p2 / 0.05, dim=0)
    p1 = torch.softmax(liked / 0.05, dim=0)
    torch.testing.assert_close(chances[0], 1 - (1 - p1) * (1 - p2))
    assert chances[0, 2] > 0.99 and chances[0, 5] > 0.99 and chances[0, 4] < 0.01
    # a name of two tokens ("wall clock") is one noun
    near = list(one)
    near[3] = _token(2, noun=True)
    assert int(readers.noun_kinds(torch.stack(near)[None], mask)[2][0]) == 1
    # without a noun: not found; the heard reading keeps the given kinds on that row only
    none = [_token(other=8), _token(), _token(4), _token(), _token(), _token(), _token(), _token()]
    both = torch.stack([torch.stack(one), torch.stack(none)])
    chances, found, _ = readers.noun_kinds(both, torch.ones(2, 8, dtype=torch.bool))
    assert found.tolist() == [True, False]
    given = torch.rand(2, len(CLASSES))
    heard = readers.heard_probabilities(both, torch.ones(2, 8, dtype=torch.bool), given)
    torch.testing.assert_close(heard[1], given[1])
    others = [c for c in range(len(CLASSES)) if c not in kinds]
    torch.testing.assert_close(heard[0, others], given[0, others])
    torch.testing.assert_close(heard[0, kinds], chances[0], atol=1e-5, rtol=0)
    # a padded token never counts, however like a noun it is
    padded = torch.cat([states, _token(6, noun=True)[None, None] * 3], dim=1)
    pad_mask = torch.tensor([[True] * 8 + [False]])
    torch.testing.assert_close(
        readers.noun_kinds(padded, pad_mask)[0], readers.noun_kinds(states, mask)[0]
    )


def test_a_second_noun_counted_by_its_lead_holds_where_every_logit_falls():
    """An unfamiliar wording lowers every token's noun logit alike: the second noun falls below
    its own threshold (one noun read), while its lead over the first noun holds (two read by the
    lead rule). A token too weak beside the first is no noun by either rule; a sentence with no
    token far enough from the first has no second noun by either."""
    readers = _noun_readers()
    assert not readers.reads_noun_lead  # calibrated without the lead: only the own rule
    one = torch.ones(1, 2, dtype=torch.bool)
    assert set(readers.heard_by_rule(torch.ones(1, 2, 10), one, torch.rand(1, len(CLASSES)))) == {
        (False, False)
    }
    with pytest.raises(RuntimeError, match="no lead rule"):
        readers.noun_kinds(torch.ones(1, 2, 10), torch.ones(1, 2, dtype=torch.bool), lead=True)
    readers.set_nouns(-3.0, 0.0, 0.05, lead=-1.0)
    assert readers.reads_noun_lead
    mask = torch.ones(1, 8, dtype=torch.bool)

    def sentence(first: float, second: float) -> torch.Tensor:
        """Two nouns (kinds 2 and 5), `first` and `second` along the noun dimension."""
        tokens = [_token(other=8) for _ in range(8)]
        tokens[2], tokens[6] = _token(2, noun=True), _token(5, noun=True)
        tokens[2][7], tokens[6][7] = first, second
        return torch.stack(tokens)[None]

    familiar = sentence(0.6, 0.55)  # logits 1.0, 0.67: two by either rule
    unfamiliar = sentence(0.4, 0.35)  # −0.53, −0.99: the second below 0, 0.46 behind
    weak = sentence(0.6, 0.35)  # 1.0, −0.99: below 0 and 1.99 behind: one by either
    for states, own, by_lead in ((familiar, 2, 2), (unfamiliar, 1, 2), (weak, 1, 1)):
        assert int(readers.noun_kinds(states, mask)[2][0]) == own
        chances, found, count = readers.noun_kinds(states, mask, lead=True)
        assert bool(found[0]) and int(count[0]) == by_lead
        assert (chances[0, 5] > 0.99) == (by_lead == 2)
    given = torch.rand(1, len(CLASSES))
    kinds = columns("kind")
    heard = readers.heard_probabilities(unfamiliar, mask, given, lead=True)
    torch.testing.assert_close(
        heard[0, kinds], readers.noun_kinds(unfamiliar, mask, lead=True)[0][0], atol=1e-5, rtol=0
    )
    # both rules from one reading of the nouns, each as read alone
    both = readers.heard_by_rule(unfamiliar, mask, given)
    assert set(both) == {(False, False), (True, False)}
    for (lead, _), read in both.items():
        torch.testing.assert_close(read, readers.heard_probabilities(unfamiliar, mask, given, lead))
    # a sentence of three tokens has none far enough from its first
    short = familiar[:, 1:4]
    assert int(readers.noun_kinds(short, mask[:, :3], lead=True)[2][0]) == 1
    # the lead travels with the readers; readers calibrated before it load without it
    loaded = AttributeReaders(10, 4)
    loaded.load_state_dict(readers.state_dict())
    assert loaded.reads_noun_lead and float(loaded.noun_lead) == pytest.approx(-1.0)
    older = {k: v for k, v in readers.state_dict().items() if k != "noun_lead"}
    before = AttributeReaders(10, 4)
    before.load_state_dict(older)
    assert before.reads_nouns and not before.reads_noun_lead


def test_a_sentence_without_a_noun_is_read_from_its_sound_words_where_fitted():
    """Where the readers read sound words, each rule of the count is read twice: as before, and
    with a sentence whose nouns are not found given the kinds its sound words name (its
    strongest token's, through `sound`) in place of the text reader's; a sentence whose noun is
    found keeps the kinds read there either way. Unfitted, or without nouns, there is no such
    reading; readers from before it load unfitted."""
    readers = _noun_readers()
    assert not readers.reads_sound_words
    none = [_token(other=8), _token(), _token(4), _token(), _token(), _token(), _token(), _token()]
    one = [_token(other=8), _token(), _token(2, noun=True), _token(), _token(4), _token()]
    one += [_token(other=8), _token(other=8)]
    states = torch.stack([torch.stack(one), torch.stack(none)])
    mask = torch.ones(2, 8, dtype=torch.bool)
    given = torch.rand(2, len(CLASSES))
    assert set(readers.heard_by_rule(states, mask, given)) == {(False, False)}
    # the sound words: a token along dimension 4 (the verb above) says the sixth kind is heard
    readers.sound.weight[5, 4] = 12.0
    readers.sound.bias.fill_(-6.0)
    readers.sound_fitted.fill_(1.0)
    assert readers.reads_sound_words
    sounds = readers.sound_probabilities(states, mask)
    assert sounds.shape == (2, 7) and sounds[1, 5] > 0.99 and sounds[1, 2] < 0.01
    # a padded token never counts
    padded = torch.cat([states, torch.stack([_token(4), _token(4)])[:, None] * 0], dim=1)
    pad_mask = torch.cat([mask, torch.zeros(2, 1, dtype=torch.bool)], dim=1)
    torch.testing.assert_close(readers.sound_probabilities(padded, pad_mask), sounds)
    both = readers.heard_by_rule(states, mask, given)
    assert set(both) == {(False, False), (False, True)}
    kinds = columns("kind")
    others = [c for c in range(len(CLASSES)) if c not in kinds]
    plain, by_sounds = both[False, False], both[False, True]
    torch.testing.assert_close(by_sounds[0], plain[0])  # the noun found: read at it either way
    torch.testing.assert_close(plain[1], given[1])  # no noun: the text reader's kinds
    torch.testing.assert_close(by_sounds[1, others], given[1, others])
    torch.testing.assert_close(by_sounds[1, kinds], sounds[1].clamp(1e-6, 1 - 1e-6))
    # the reader travels with the readers; readers from before it load without it
    loaded = AttributeReaders(10, 4)
    loaded.load_state_dict(readers.state_dict())
    assert loaded.reads_sound_words
    torch.testing.assert_close(loaded.sound_probabilities(states, mask), sounds)
    older = {k: v for k, v in readers.state_dict().items() if not k.startswith("sound")}
    before = AttributeReaders(10, 4)
    before.load_state_dict(older)
    assert before.reads_nouns and not before.reads_sound_words
    # without nouns, sound words alone are not read (the fallback is of the nouns' reading)
    bare = AttributeReaders(10, 4)
    bare.sound_fitted.fill_(1.0)
    assert not bare.reads_sound_words


def test_the_size_a_sentence_says_is_heard_is_read_by_likeness_to_seen_and_heard_names():
    """Where the readers keep names of a small and a large source (seen and heard: "small",
    "deep"), every heard reading takes the size as the fitted reader's logit and the calibrated
    likeness's, half each: a sentence whose pitch word the text reader read as small ("a deep
    bell") is heard large; nothing else moves, and a sentence reading no size name keeps the
    likeness's offset alone. Unfitted, or from before the names, the size is the text
    reader's."""
    readers = _noun_readers()
    assert not readers.reads_pitch
    deep = torch.stack([_token(other=9), _token(1, noun=True)])[None]  # like the large name
    high = torch.stack([_token(other=8), _token(1, noun=True)])[None]  # like the small name
    states, mask = torch.cat([deep, high]), torch.ones(2, 2, dtype=torch.bool)
    size, kinds = columns("size"), columns("kind")
    given = torch.full((2, len(CLASSES)), 0.3)
    given[:, size] = torch.tensor([0.9, 0.1])  # the text reader: small, both
    unfitted = readers.heard_by_rule(states, mask, given)[False, False]
    torch.testing.assert_close(unfitted[:, size], given[:, size])
    small, large = columns("size")
    with pytest.raises(ValueError, match="both sizes"):
        readers.set_pitch_words(torch.eye(10)[[8]], torch.tensor([small]), 8.0, 0.5)
    with pytest.raises(ValueError, match="must be"):
        readers.set_pitch_words(torch.eye(12)[[8, 9]], torch.tensor([small, large]), 8.0, 0.5)
    readers.set_pitch_words(2 * torch.eye(10)[[8, 9]], torch.tensor([small, large]), 8.0, 0.5)
    assert readers.reads_pitch
    liked = readers.size_likeness(states, mask)
    torch.testing.assert_close(liked, torch.tensor([[-1.0, 0.0], [0.0, -1.0]]))
    torch.testing.assert_close(readers.heard_size_logits(states, mask), 8.0 * liked + 0.5)
    heard = readers.heard_by_rule(states, mask, given)[False, False]
    fitted = torch.logit(given[:, size])
    want = torch.sigmoid((1 - WORD_SHARE) * fitted + WORD_SHARE * (8.0 * liked + 0.5))
    torch.testing.assert_close(heard[:, size], want)
    assert heard[0, large] > heard[0, small] and heard[1, small] > heard[1, large]
    # the kinds are read at the noun as before; the rest as the text reader read it
    torch.testing.assert_close(heard[:, kinds], unfitted[:, kinds])
    rest = [c for c in range(len(CLASSES)) if c not in kinds and c not in size]
    torch.testing.assert_close(heard[:, rest], given[:, rest])
    torch.testing.assert_close(
        readers.heard_probabilities(states, mask, given), heard, atol=1e-6, rtol=0
    )
    # a padded token never counts
    padded = torch.cat([states, torch.stack([_token(other=9), _token(other=9)])[:, None]], dim=1)
    pad_mask = torch.cat([mask, torch.zeros(2, 1, dtype=torch.bool)], dim=1)
    torch.testing.assert_close(readers.size_likeness(padded, pad_mask), liked)
    # the names travel with the readers; readers from before them load without them
    loaded = AttributeReaders(10, 4)
    loaded.load_state_dict(readers.state_dict())
    assert loaded.reads_pitch
    torch.testing.assert_close(loaded.heard_size_logits(states, mask), 8.0 * liked + 0.5)
    older = {k: v for k, v in readers.state_dict().items() if not k.startswith("pitch")}
    before = AttributeReaders(10, 4)
    before.load_state_dict(older)
    assert before.reads_nouns and not before.reads_pitch
    torch.testing.assert_close(before.heard_by_rule(states, mask, given)[False, False], unfitted)


def test_the_nouns_travel_with_the_readers_and_old_readers_load_unfitted():
    readers = _noun_readers()
    loaded = AttributeReaders(10, 4)
    loaded.load_state_dict(readers.state_dict())
    assert loaded.reads_nouns
    assert float(loaded.noun_temperature) == pytest.approx(0.05)
    older = {k: v for k, v in readers.state_dict().items() if not k.startswith("noun")}
    fresh = AttributeReaders(10, 4)
    fresh.load_state_dict(older)  # strict: nothing missing
    assert fresh.reads_words and not fresh.reads_nouns
    with pytest.raises(RuntimeError, match="read no nouns"):
        fresh.noun_kinds(torch.ones(1, 2, 10), torch.ones(1, 2, dtype=torch.bool))
    # fitted nouns without the kinds' names read none
    bare = AttributeReaders(10, 4)
    bare.set_nouns(0.0, 0.0, 0.05)
    assert not bare.reads_nouns
    with pytest.raises(ValueError, match="temperature"):
        bare.set_nouns(0.0, 0.0, 0.0)


def test_the_policy_records_whether_sounds_agree_with_the_kinds_at_the_nouns():
    policy = SearchPolicy(True, {}, text_heard_agreement=0.5, text_heard_nouns=True)
    assert SearchPolicy.from_dict(policy.to_dict()).text_heard_nouns
    # only beside a weight; records from before read as the text reader's kinds
    assert "text_heard_nouns" not in SearchPolicy(True, {}, text_heard_nouns=True).to_dict()
    assert not SearchPolicy.from_dict(
        SearchPolicy(True, {}, text_heard_agreement=0.5).to_dict()
    ).text_heard_nouns
    # the count by the lead: recorded only with the nouns, read back the same
    lead = SearchPolicy(
        True, {}, text_heard_agreement=0.5, text_heard_nouns=True, text_heard_lead=True
    )
    assert SearchPolicy.from_dict(lead.to_dict()).text_heard_lead
    assert "text_heard_lead" not in replace(lead, text_heard_nouns=False).to_dict()
    assert not SearchPolicy.from_dict(policy.to_dict()).text_heard_lead
    assert not SearchPolicy.from_dict(
        {k: v for k, v in lead.to_dict().items() if k != "text_heard_nouns"}
    ).text_heard_lead
    # a sentence without a noun read from its sound words: recorded only with the nouns too
    sounds = replace(lead, text_heard_sound_words=True)
    back = SearchPolicy.from_dict(sounds.to_dict())
    assert back.text_heard_sound_words and back.text_heard_lead
    assert "text_heard_sound_words" not in replace(sounds, text_heard_nouns=False).to_dict()
    assert "text_heard_sound_words" not in replace(sounds, text_heard_agreement=None).to_dict()
    assert not SearchPolicy.from_dict(lead.to_dict()).text_heard_sound_words
    assert not SearchPolicy.from_dict(
        {k: v for k, v in sounds.to_dict().items() if k != "text_heard_nouns"}
    ).text_heard_sound_words
