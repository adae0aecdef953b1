"""Encoders and TrimodalModel: shapes, masks for ragged inputs, checkpoints, presets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.config import PRESETS, ModelConfig, VisualConfig, preset
from models.model import TrimodalModel, checkpoint_hash


@pytest.fixture(scope="module")
def tiny() -> TrimodalModel:
    torch.manual_seed(0)
    return TrimodalModel(preset("tiny")).eval()


def waves(seconds, sr=16_000, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 0.1, int(s * sr)).astype(np.float32) for s in seconds]


def clips(seconds, fps=12.0, size=40, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (int(s * fps), size, size, 3), dtype=np.uint8) for s in seconds]


def test_audio_steps_sit_on_the_time_grid(tiny):
    out = tiny.encode_audio(*tiny.audio_inputs(waves([6.0, 2.5, 0.3])))
    d = tiny.cfg.embed_dim
    assert out.pooled.shape == (3, d) and out.sequence.shape == (3, 24, d)
    # 4 steps per second; a partly filled last step (0.3 s → 1.2 steps) holds real sound: it counts.
    assert out.mask.sum(1).tolist() == [24, 10, 2]
    torch.testing.assert_close(out.pooled.norm(dim=-1), torch.ones(3))
    real = out.sequence[out.mask]
    torch.testing.assert_close(real.norm(dim=-1), torch.ones(real.shape[0]))
    assert out.sequence[~out.mask].abs().sum() == 0


def test_visual_steps_sit_on_the_time_grid(tiny):
    out = tiny.encode_visual(*tiny.visual_inputs(clips([6.0, 3.0])))
    assert out.sequence.shape[:2] == (2, 24)
    assert out.mask.sum(1).tolist() == [24, 12]


@pytest.mark.parametrize("modality", ["audio", "visual"])
def test_padding_does_not_change_a_clip(tiny, modality):
    """A clip's embedding is the same alone and beside a longer clip (masks work)."""
    if modality == "audio":
        short, long = waves([2.0, 6.0], seed=1)
        alone = tiny.encode_audio(*tiny.audio_inputs([short]))
        batched = tiny.encode_audio(*tiny.audio_inputs([short, long]))
    else:
        short, long = clips([2.0, 6.0], seed=1)
        alone = tiny.encode_visual(*tiny.visual_inputs([short]))
        batched = tiny.encode_visual(*tiny.visual_inputs([short, long]))
    torch.testing.assert_close(alone.pooled[0], batched.pooled[0], atol=1e-5, rtol=1e-4)
    t = alone.mask.sum()
    torch.testing.assert_close(alone.sequence[0, :t], batched.sequence[0, :t], atol=1e-5, rtol=1e-4)


def test_long_inputs_run_in_windows(tiny):
    """A 40 s clip (beyond the attention window) still gives one step per grid slot."""
    out = tiny.encode_audio(*tiny.audio_inputs(waves([40.0])))
    assert out.mask.sum().item() == 160


def test_missing_streams_give_empty_masks_not_fake_content(tiny):
    _, mask = tiny.audio_inputs([np.zeros(0, np.float32), waves([1.0])[0]])
    assert not mask[0].any() and mask[1].any()
    frames, fmask = tiny.visual_inputs([np.zeros((0, 40, 40, 3), np.uint8), clips([1.0])[0]])
    assert not fmask[0].any() and fmask[1].sum() == 12
    out = tiny.encode_visual(frames, fmask)
    assert not out.mask[0].any() and torch.isfinite(out.pooled).all()


def test_text_encoder_is_frozen_and_projects(tiny):
    out = tiny.encode_text(["a red ball bounces", "a bell rings"])
    assert out.pooled.shape == (2, tiny.cfg.embed_dim) and out.sequence.shape == (
        2,
        1,
        tiny.cfg.embed_dim,
    )
    backbone = tiny.text.backbone
    assert not any(p.requires_grad for p in backbone.parameters())
    assert all(p.requires_grad for p in tiny.text.project_head.parameters())


def test_checkpoint_round_trip_gives_identical_embeddings(tiny, tmp_path):
    tiny.save(tmp_path / "ckpt")
    loaded = TrimodalModel.load(tmp_path / "ckpt")
    a, v = waves([3.0], seed=4), clips([3.0], seed=4)
    with torch.no_grad():
        for m1, m2 in ((tiny, loaded),):
            torch.testing.assert_close(
                m1.encode_audio(*m1.audio_inputs(a)).sequence,
                m2.encode_audio(*m2.audio_inputs(a)).sequence,
                atol=0,
                rtol=0,
            )
            torch.testing.assert_close(
                m1.encode_visual(*m1.visual_inputs(v)).pooled,
                m2.encode_visual(*m2.visual_inputs(v)).pooled,
                atol=0,
                rtol=0,
            )
            torch.testing.assert_close(
                m1.encode_text(["a bell"]).pooled, m2.encode_text(["a bell"]).pooled, atol=0, rtol=0
            )
    assert len(checkpoint_hash(tmp_path / "ckpt")) == 64


def test_checkpoint_refuses_a_mismatched_config(tiny, tmp_path):
    tiny.save(tmp_path / "ckpt")
    other = ModelConfig.from_dict({**PRESETS["tiny"].to_dict(), "embed_dim": 48})
    other.save(tmp_path / "ckpt" / "config.json")
    with pytest.raises(Exception, match=r"does not fit|size mismatch"):
        TrimodalModel.load(tmp_path / "ckpt")
    with pytest.raises(FileNotFoundError):
        TrimodalModel.load(tmp_path / "nothing")


def test_small_checkpoint_does_not_copy_the_frozen_minilm(tmp_path):
    model = TrimodalModel(preset("small"))
    model.save(tmp_path / "small")
    size = (tmp_path / "small" / "model.safetensors").stat().st_size
    assert size < 12 * 1024**2, "MiniLM (90 MB) must be loaded from its package, not copied"
    loaded = TrimodalModel.load(tmp_path / "small")
    with torch.no_grad():
        torch.testing.assert_close(
            model.eval().encode_text(["a sphere"]).pooled, loaded.encode_text(["a sphere"]).pooled
        )


def test_presets_and_config_validation():
    assert set(PRESETS) == {"tiny", "small", "base"}
    for cfg in PRESETS.values():
        assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="multiple of steps_per_second"):
        ModelConfig(visual=VisualConfig(fps=6.0))
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")


def test_local_pretrained_text_directory_replaces_minilm(tmp_path):
    """Any local Hugging Face encoder directory can be the text tower (here a tiny random BERT)."""
    from transformers import BertConfig, BertModel

    from models.config import TextConfig
    from models.text import minilm_path

    BertModel(
        BertConfig(hidden_size=24, num_hidden_layers=1, num_attention_heads=2, intermediate_size=48)
    ).save_pretrained(tmp_path / "bert")
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (tmp_path / "bert" / name).write_bytes((minilm_path() / name).read_bytes())
    cfg = ModelConfig.from_dict(
        {**PRESETS["tiny"].to_dict(), "text": {"model": str(tmp_path / "bert")}}
    )
    assert TrimodalModel(cfg).encode_text(["hello"]).pooled.shape == (1, cfg.embed_dim)
    with pytest.raises(FileNotFoundError):
        TrimodalModel(
            ModelConfig.from_dict(
                {**PRESETS["tiny"].to_dict(), "text": {"model": str(tmp_path / "none")}}
            )
        )
    assert TextConfig().frozen


def test_local_pretrained_audio_and_vision_towers_plug_in(tmp_path):
    """A CLIP vision tower and an AST audio tower saved as local directories replace the stems."""
    from transformers import ASTConfig, ASTModel, CLIPVisionConfig, CLIPVisionModel

    CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        )
    ).save_pretrained(tmp_path / "clip")
    ASTModel(
        ASTConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_mel_bins=32,
            max_length=64,
            frequency_stride=8,
            time_stride=8,
        )
    ).save_pretrained(tmp_path / "ast")
    base = PRESETS["tiny"].to_dict()
    base["audio"] |= {"backbone": str(tmp_path / "ast")}
    base["visual"] |= {"backbone": str(tmp_path / "clip")}
    model = TrimodalModel(ModelConfig.from_dict(base)).eval()
    a = model.encode_audio(*model.audio_inputs(waves([3.0])))
    v = model.encode_visual(*model.visual_inputs(clips([3.0])))
    assert a.mask.sum() == 12 and v.mask.sum() == 12
    frozen = [p for n, p in model.named_parameters() if ".tower." in n]
    assert frozen and not any(p.requires_grad for p in frozen)
    model.save(tmp_path / "ckpt")
    again = TrimodalModel.load(tmp_path / "ckpt")
    with torch.no_grad():
        torch.testing.assert_close(
            again.encode_audio(*again.audio_inputs(waves([3.0]))).pooled, a.pooled
        )


def test_text_head_variants():
    base = PRESETS["tiny"].to_dict()
    linear = TrimodalModel(
        ModelConfig.from_dict({**base, "text": {**base["text"], "head": "linear"}})
    )
    assert isinstance(linear.text.project_head, torch.nn.Linear)
    ident_cfg = {**base, "embed_dim": 32, "text": {**base["text"], "head": "identity"}}
    ident = TrimodalModel(ModelConfig.from_dict(ident_cfg))
    assert not list(ident.text.project_head.parameters())
    feats = torch.randn(2, 32)
    torch.testing.assert_close(
        ident.project_text(feats).pooled, torch.nn.functional.normalize(feats, dim=-1)
    )
    with pytest.raises(ValueError, match="embed_dim"):
        TrimodalModel(ModelConfig.from_dict({**ident_cfg, "embed_dim": 16}))
    with pytest.raises(ValueError, match=r"text\.head"):
        TrimodalModel(ModelConfig.from_dict({**base, "text": {**base["text"], "head": "deep"}}))


def test_residual_text_head_starts_as_the_pretrained_space_and_trains():
    base = PRESETS["tiny"].to_dict()
    cfg = {**base, "embed_dim": 32, "text": {**base["text"], "head": "residual"}}
    model = TrimodalModel(ModelConfig.from_dict(cfg))
    feats = torch.randn(3, 32)
    torch.testing.assert_close(
        model.project_text(feats).pooled, torch.nn.functional.normalize(feats, dim=-1)
    )
    params = list(model.text.project_head.parameters())
    assert params and all(p.requires_grad for p in params)
    model.project_text(feats).pooled[:, 0].sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    with pytest.raises(ValueError, match="embed_dim"):
        TrimodalModel(ModelConfig.from_dict({**cfg, "embed_dim": 16}))
