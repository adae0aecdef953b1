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
    # the stem reads them as one run of pictures, laid out as the whole batch's would be
    assert got.picked.flatten(0, 1).stride()[1:] == want.picked.flatten(0, 1).stride()[1:]
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
    # a longest clip of 13 frames: the stem's every third is copied into a contiguous run
    odd = [first[1], other[1]]
    assert_same(memo.inputs(model, odd, ["b", "e"]), measured(model, odd))
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


def test_while_the_stem_is_frozen_its_outputs_are_kept_and_give_the_same_embeddings():
    """The branch phase: the trunk does not learn, so its stem's outputs of each clip's picked
    frames are kept too, and a batch of kept clips needs no frames converted at all."""
    model = model_reading_everything().train()
    memo = PictureMemo()
    frames, keys = clips([24, 13, 30]), ["a", "b", "c"]
    with pytest.raises(ValueError, match="learns"), memo.frozen_stem(model):
        pass
    model.requires_grad_(False)

    def embedded(inputs: PictureInputs):
        torch.manual_seed(5)  # the positions' jitter
        with torch.no_grad():
            return model.encode_pictures(inputs)

    want = embedded(measured(model, frames))
    with memo.frozen_stem(model):
        first = memo.inputs(model, frames, keys)
        assert first.stem is not None
        kept = memo.inputs(model, frames, keys)
        assert kept.picked is None and kept.stem is not None
        mixed = memo.inputs(model, [frames[1], *clips([9], seed=2)], ["b", "new"])
        assert mixed.stem is not None
        for got in (embedded(first), embedded(kept)):
            assert torch.equal(got.pooled, want.pooled)
            assert torch.equal(got.sequence, want.sequence)
        reference = embedded(measured(model, [frames[1], *clips([9], seed=2)]))
        assert torch.equal(embedded(mixed).sequence, reference.sequence)
        # batches that lay their pictures out otherwise (`channels_last`): a clip of one frame,
        # a longest clip whose frames are not a multiple of the stem's stride (13 of every 3)
        for lengths in ([24, 1], [13, 9], [13, 30]):
            batch = [
                frames[1] if n == 13 else frames[0] if n == 24 else frames[2] if n == 30 else c
                for n, c in zip(lengths, clips(lengths, seed=3), strict=True)
            ]
            names = [{24: "a", 13: "b", 30: "c"}.get(n, f"other{n}") for n in lengths]
            for kept_already in (False, True):
                got = memo.inputs(model, batch, names)
                assert got.stem is not None and (got.picked is None or not kept_already)
                want_here = embedded(measured(model, batch))
                assert torch.equal(embedded(got).sequence, want_here.sequence), lengths
                assert torch.equal(embedded(got).pooled, want_here.pooled), lengths
        with pytest.raises(RuntimeError, match="already"), memo.frozen_stem(model):
            pass
    after = memo.inputs(model, frames, keys)  # forgotten on leaving: the frames again
    assert after.stem is None and after.picked is not None
    assert torch.equal(embedded(after).sequence, want.sequence)
