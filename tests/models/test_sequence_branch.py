"""The sequence branch: steps learned apart from the pooled vector, which it cannot move."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from models.config import ModelConfig, preset
from models.encoders import SequenceBranch
from models.model import TrimodalModel


def inputs(model: TrimodalModel):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8) for n in (24, 13)]
    waves = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (48_000, 20_000)]
    return model.visual_inputs(frames), model.audio_inputs(waves)


def test_the_branch_cannot_move_the_pooled_vector():
    torch.manual_seed(0)
    model = TrimodalModel(preset("tiny"))
    assert model.cfg.sequence_branch  # every preset has one
    (frames, fmask), (mel, mmask) = inputs(model)
    for encode, args in (
        (model.encode_visual, (frames, fmask)),
        (model.encode_audio, (mel, mmask)),
    ):
        model.zero_grad()
        out = encode(*args)
        out.sequence.sum().backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        assert grads and all(".branch." in n for n in grads), sorted(grads)[:5]
    # ... unless training lets a share through
    for m in model.modules():
        if isinstance(m, SequenceBranch):
            m.trunk_gradient = 0.5
    model.zero_grad()
    model.encode_visual(frames, fmask).sequence.sum().backward()
    assert model.encoders["visual"].stem.conv[0].weight.grad is not None


def test_the_pooled_vector_is_the_trunks_and_the_steps_the_branchs():
    torch.manual_seed(0)
    with_branch = TrimodalModel(preset("tiny")).eval()
    without = TrimodalModel(replace(preset("tiny"), sequence_branch=False)).eval()
    state = {k: v for k, v in with_branch.state_dict().items() if ".branch." not in k}
    without.load_state_dict(state)
    (frames, fmask), (mel, mmask) = inputs(with_branch)
    with torch.inference_mode():
        for encode in ("encode_visual", "encode_audio"):
            args = (frames, fmask) if encode == "encode_visual" else (mel, mmask)
            a, b = getattr(with_branch, encode)(*args), getattr(without, encode)(*args)
            assert torch.allclose(a.pooled, b.pooled, atol=1e-6)
            assert torch.equal(a.mask, b.mask)
            assert not torch.allclose(a.sequence, b.sequence)
            norms = a.sequence.norm(dim=-1)[a.mask]
            assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
            assert float(a.sequence[~a.mask].abs().max()) == 0  # padding stays zero


def test_a_checkpoint_from_before_the_branch_loads_without_it(tmp_path):
    old = replace(preset("tiny"), sequence_branch=False).to_dict()
    del old["sequence_branch"]
    assert ModelConfig.from_dict(old).sequence_branch is False
    TrimodalModel(ModelConfig.from_dict(old)).save(tmp_path / "old")
    assert not TrimodalModel.load(tmp_path / "old").cfg.sequence_branch


def every_third(cfg: ModelConfig) -> ModelConfig:
    return replace(cfg, visual=replace(cfg.visual, fps=12.0, trunk_every=3))


def test_the_trunk_reads_every_kth_frame_and_the_branch_every_frame():
    torch.manual_seed(0)
    model = TrimodalModel(every_third(preset("tiny"))).eval()
    assert model.cfg.frames_per_step == 3 and model.cfg.trunk_frames_per_step == 1
    rng = np.random.default_rng(1)
    clip = rng.integers(0, 255, (37, 32, 32, 3), dtype=np.uint8)  # 3.08 s: 13 steps
    touched = clip.copy()
    touched[10] = 255 - touched[10]  # a frame the trunk skips (it reads 0, 3, 6, 9, 12, ...)
    with torch.inference_mode():
        a = model.encode_visual(*model.visual_inputs([clip]))
        b = model.encode_visual(*model.visual_inputs([touched]))
    assert a.sequence.shape[1] == 13 and int(a.mask.sum()) == 13
    assert torch.allclose(a.pooled, b.pooled, atol=1e-6)  # the trunk never saw frame 10
    assert not torch.allclose(a.sequence[0, 3], b.sequence[0, 3], atol=1e-4)  # the branch did


def test_every_kth_frame_keeps_a_clip_independent_of_its_batch():
    torch.manual_seed(0)
    model = TrimodalModel(every_third(preset("tiny"))).eval()
    rng = np.random.default_rng(2)
    clips = [rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8) for n in (72, 40, 11)]
    with torch.inference_mode():
        batch = model.encode_visual(*model.visual_inputs(clips))
        for i, clip in enumerate(clips):
            alone = model.encode_visual(*model.visual_inputs([clip]))
            n = int(alone.mask.sum())
            assert n == int(batch.mask[i].sum()) == -(-len(clip) // 3)
            assert torch.allclose(batch.pooled[i], alone.pooled[0], atol=1e-5)
            assert torch.allclose(batch.sequence[i, :n], alone.sequence[0, :n], atol=1e-5)


def test_trunk_every_must_divide_the_frames_of_a_step():
    tiny = preset("tiny")
    with pytest.raises(ValueError, match="trunk_every"):
        replace(tiny, visual=replace(tiny.visual, fps=8.0, trunk_every=3))
    with pytest.raises(ValueError, match="trunk_every"):
        replace(tiny.visual, trunk_every=0)
    old = tiny.to_dict()
    del old["visual"]["trunk_every"]  # a checkpoint from before the field
    assert ModelConfig.from_dict(old).visual.trunk_every == 1


def test_detrended_steps_say_what_changes_and_an_excerpt_keeps_its_inside():
    from models.encoders import Embeddings, detrend_steps

    torch.manual_seed(0)
    seq = torch.nn.functional.normalize(torch.randn(1, 12, 8), dim=-1)
    mask = torch.ones(1, 12, dtype=torch.bool)
    mask_short = mask.clone()
    mask_short[0, 9:] = False
    whole = detrend_steps(Embeddings(seq[:, 0], seq, mask), 5)
    norms = whole.sequence.norm(dim=-1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
    # padding stays zero and does not enter the valid steps' means
    padded = detrend_steps(Embeddings(seq[:, 0], seq * mask_short[..., None], mask_short), 5)
    assert float(padded.sequence[0, 9:].abs().max()) == 0
    alone = detrend_steps(Embeddings(seq[:, 0], seq[:, :9], mask[:, :9]), 5)
    assert torch.allclose(padded.sequence[0, :9], alone.sequence[0], atol=1e-6)
    # an excerpt (steps 3..9) equals the whole clip's steps wherever its window is inside it
    piece = detrend_steps(Embeddings(seq[:, 0], seq[:, 3:10], mask[:, 3:10]), 5)
    assert torch.allclose(piece.sequence[0, 2:5], whole.sequence[0, 5:8], atol=1e-6)
    assert not torch.allclose(piece.sequence[0, 0], whole.sequence[0, 3], atol=1e-3)  # an edge
    # nothing changes: nothing to say
    flat = seq[:, :1].expand(1, 12, 8)
    assert float(detrend_steps(Embeddings(seq[:, 0], flat, mask), 5).sequence.abs().max()) < 1e-3


def test_sequence_detrend_is_odd_and_old_configs_have_none():
    with pytest.raises(ValueError, match="sequence_detrend"):
        replace(preset("tiny"), sequence_detrend=4)
    old = preset("small").to_dict()
    del old["sequence_detrend"]
    assert ModelConfig.from_dict(old).sequence_detrend == 0
    assert preset("small").sequence_detrend == 5
