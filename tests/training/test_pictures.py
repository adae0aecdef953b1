"""The per-clip memo of what the visual encoder measures of frames: the batch's values."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from models.config import Modality, preset
from models.encoders import PictureInputs
from models.model import TrimodalModel
from training.pictures import PictureMemo


def model_reading_everything() -> TrimodalModel:
    """The tiny preset with the picture-change input too: both measures are read."""
    cfg = preset("tiny")
    torch.manual_seed(0)
    return TrimodalModel(replace(cfg, visual=replace(cfg.visual, events=True)))


def clips(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) for n in lengths]


def measured(model, frames) -> PictureInputs:
    return model.encoders[Modality.VISUAL].measure(*model.visual_inputs(frames))


def assert_same(got: PictureInputs, want: PictureInputs) -> None:
    assert torch.equal(got.picked, want.picked) and torch.equal(got.mask, want.mask)
    assert got.picked.stride()[2:] == want.picked.stride()[2:]
    for part in ("changes", "grid"):
        a, b = getattr(got, part), getattr(want, part)
        assert (a is None) == (b is None) and (a is None or torch.equal(a, b)), part


def test_the_memo_gives_what_the_batch_measures_bit_for_bit():
    model = model_reading_everything().eval()
    memo = PictureMemo()
    first = clips([24, 13, 30])
    keys = ["a", "b", "c"]
    assert_same(memo.inputs(model, first, keys), measured(model, first))  # nothing kept yet
    assert len(memo) == 3
    # kept: only every third frame is converted now, the rest comes from the memo
    again = [first[2], first[0], first[1]]
    assert_same(memo.inputs(model, again, ["c", "a", "b"]), measured(model, again))
    # a new clip among kept ones, and frames of their own (augmented: no key) beside them
    other = clips([18, 7], seed=1)
    mixed = [first[1], other[0], first[0], other[1]]
    got = memo.inputs(model, mixed, ["b", "d", "a", None])
    assert_same(got, measured(model, mixed))
    assert len(memo) == 4  # the unkeyed clip is measured, not kept
    with torch.inference_mode():
        a = model.encode_pictures(got)
        b = model.encode_visual(*model.visual_inputs(mixed))
    assert torch.equal(a.pooled, b.pooled) and torch.equal(a.sequence, b.sequence)
    with pytest.raises(ValueError, match="keys"):
        memo.inputs(model, mixed, ["b"])


def test_a_clip_without_pictures_and_one_shorter_than_a_pick():
    model = model_reading_everything().eval()
    memo = PictureMemo()
    frames = [*clips([10, 2]), np.zeros((0,), np.uint8)]
    keys = ["long", "short", "none"]
    memo.inputs(model, frames, keys)
    assert_same(memo.inputs(model, frames, keys), measured(model, frames))


def test_the_grid_is_made_when_the_branch_starts_reading():
    """The branch phase turns the branch on after main epochs that kept no colour grid."""
    model = model_reading_everything().train()
    visual = model.encoders[Modality.VISUAL]
    memo = PictureMemo()
    frames, keys = clips([24, 12]), ["a", "b"]
    visual.run_branch = False
    got = memo.inputs(model, frames, keys)
    assert got.grid is None and got.changes is not None
    memo.inputs(model, frames[:1], keys[:1])  # kept: the same
    visual.run_branch = True
    assert_same(memo.inputs(model, frames, keys), measured(model, frames))


def test_measures_kept_during_an_evaluation_train_with_autograd():
    """An evaluation (inference mode) may keep a clip's measures first; a training step that
    reads them later must get ordinary tensors, and the gradients of the plain path."""
    model = model_reading_everything().train()
    memo = PictureMemo()
    frames, keys = clips([24, 18]), ["a", "b"]
    with torch.inference_mode():
        memo.inputs(model, frames, keys)
    grads = []
    for inputs in (memo.inputs(model, frames, keys), measured(model, frames)):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(3)  # the positions' jitter
        out = model.encode_pictures(inputs)
        (out.pooled.sum() + out.sequence.sum()).backward()
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    assert grads[0] and all(torch.equal(a, b) for a, b in zip(*grads, strict=True))


def test_encoding_without_a_measure_the_encoder_reads_is_refused():
    model = model_reading_everything().eval()
    inputs = measured(model, clips([12]))
    with pytest.raises(ValueError, match="changes"):
        model.encode_pictures(replace(inputs, changes=None))
    with pytest.raises(ValueError, match="colour grid"):
        model.encode_pictures(replace(inputs, grid=None))
    with pytest.raises(ValueError, match="frames"):
        model.encode_pictures(replace(inputs, picked=inputs.picked[:, :1]))
