"""The attribute readers: labels from SynthAV metadata, the text reader's strongest token, and the
lean along the picture reader's directions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.attributes import (
    ATTRIBUTES,
    CLASSES,
    AttributeReaders,
    columns,
    lean,
    shown_labels,
)
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


def test_a_pictures_score_along_the_lean_is_its_signed_logits_up_to_a_constant():
    torch.manual_seed(1)
    readers = AttributeReaders(8, 6).requires_grad_(False)
    torch.nn.init.normal_(readers.picture.weight)
    torch.nn.init.normal_(readers.picture.bias)
    readers.picture_mean.normal_()
    readers.picture_scale.uniform_(0.5, 2.0)
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
