"""The sequence branch: steps learned apart from the pooled vector, which it cannot move."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
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
