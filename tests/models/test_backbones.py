"""Pretrained-tower stems, exercised on tiny random CLIP / AST towers saved to a temp directory."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from transformers import (
    ASTConfig,
    ASTModel,
    CLIPConfig,
    CLIPModel,
    CLIPVisionConfig,
    CLIPVisionModel,
)

from models import backbones
from models.backbones import (
    CLIP_MEAN,
    CLIP_STD,
    HFAudioTokens,
    HFFrameStem,
    _interpolate,
    ast_patch_grid,
)
from models.features import IMAGE_MEAN, IMAGE_STD

WIDTH = 24
N_MELS = 32
MAX_LENGTH = 64  # AST window in mel frames


def tiny_clip_vision() -> CLIPVisionConfig:
    # attention_dropout is high so train-mode dropout is visible in outputs.
    return CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
        attention_dropout=0.5,
    )


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("clip")
    CLIPVisionModel(tiny_clip_vision()).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def ast_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ast")
    config = ASTConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_mel_bins=N_MELS,
        max_length=MAX_LENGTH,
        patch_size=16,
        frequency_stride=8,  # 3 frequency patches
        time_stride=8,  # 7 time patches per window
        hidden_dropout_prob=0.5,
        attention_probs_dropout_prob=0.5,
    )
    model = ASTModel(config)
    with torch.no_grad():  # random, not zero, CLS/position embeddings: tokens must differ by place
        model.embeddings.position_embeddings.normal_(std=0.5)
        model.embeddings.cls_token.normal_()
        model.embeddings.distillation_token.normal_()
    model.save_pretrained(path)
    return path


def token_count(frames: int) -> int:
    return math.ceil(frames / 5)


# ---------------------------------------------------------------- frames


@pytest.mark.parametrize(("n", "size"), [(1, (32, 32)), (3, (48, 64)), (2, (20, 24))])
def test_frame_stem_shapes(clip_dir: Path, n: int, size: tuple[int, int]) -> None:
    stem = HFFrameStem(clip_dir, WIDTH).eval()
    out = stem(torch.randn(n, 3, *size))
    assert out.shape == (n, WIDTH)
    assert torch.isfinite(out).all()


def test_frame_stem_renormalises_to_tower_statistics(clip_dir: Path, tmp_path: Path) -> None:
    raw = torch.rand(2, 3, 32, 32)
    ours = (raw - torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGE_STD).view(
        1, 3, 1, 1
    )

    stem = HFFrameStem(clip_dir, WIDTH)  # no preprocessor_config.json: CLIP defaults
    expected = (raw - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(
        1, 3, 1, 1
    )
    torch.testing.assert_close(ours * stem.scale + stem.shift, expected)

    custom = tmp_path / "custom"
    CLIPVisionModel(tiny_clip_vision()).save_pretrained(custom)
    stats = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.5, 1.0]}
    (custom / "preprocessor_config.json").write_text(json.dumps(stats))
    stem = HFFrameStem(custom, WIDTH)
    expected = (raw - 0.5) / torch.tensor(stats["image_std"]).view(1, 3, 1, 1)
    torch.testing.assert_close(ours * stem.scale + stem.shift, expected)


def test_frame_stem_loads_full_clip_directory(tmp_path: Path) -> None:
    """Users often have a whole CLIPModel on disk; its vision tower must load from it."""
    text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 2, "vocab_size": 100}  # fmt: skip
    config = CLIPConfig(text_config=text, vision_config=tiny_clip_vision().to_dict())
    model = CLIPModel(config).eval()
    model.save_pretrained(tmp_path)
    stem = HFFrameStem(tmp_path, WIDTH).eval()
    frames = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        got = stem.tower(pixel_values=frames).pooler_output
        want = model.vision_model(pixel_values=frames).pooler_output
    torch.testing.assert_close(got, want)


def test_frozen_frame_stem_trains_only_projection(clip_dir: Path) -> None:
    stem = HFFrameStem(clip_dir, WIDTH, frozen=True).train()
    stem(torch.randn(2, 3, 32, 32)).square().sum().backward()
    assert all(p.grad is None for p in stem.tower.parameters())
    assert stem.proj.weight.grad is not None and stem.proj.weight.grad.abs().sum() > 0


def test_unfrozen_frame_stem_trains_tower(clip_dir: Path) -> None:
    stem = HFFrameStem(clip_dir, WIDTH, frozen=False).train()
    stem(torch.randn(2, 3, 32, 32)).square().sum().backward()
    grads = [p.grad for p in stem.tower.parameters()]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0


def test_frame_stem_train_keeps_frozen_tower_in_eval(clip_dir: Path) -> None:
    frames = torch.randn(2, 3, 32, 32)
    frozen = HFFrameStem(clip_dir, WIDTH, frozen=True).train()
    assert frozen.training and frozen.proj.training and not frozen.tower.training
    torch.testing.assert_close(frozen(frames), frozen(frames))
    # The same check must fail when dropout is live, or it proves nothing.
    live = HFFrameStem(clip_dir, WIDTH, frozen=False).train()
    assert live.tower.training
    assert not torch.allclose(live(frames), live(frames))


# ---------------------------------------------------------------- audio


def test_ast_grid_matches_the_model(ast_dir: Path) -> None:
    stem = HFAudioTokens(ast_dir, N_MELS, WIDTH)
    f_dim, t_dim = ast_patch_grid(stem.tower.config)
    assert (f_dim, t_dim) == (3, 7)
    positions = stem.tower.embeddings.position_embeddings.shape[1]
    assert positions == f_dim * t_dim + 2  # CLS + distillation tokens lead
    # Default AST geometry (AudioSet checkpoints): 12 x 101 patches.
    assert ast_patch_grid(ASTConfig()) == (12, 101)


@pytest.mark.parametrize(
    "frames",
    [
        3,  # shorter than one patch
        23,  # not a multiple of token_frames, one window
        MAX_LENGTH,  # exactly one window
        150,  # three windows, last one padded
    ],
)
def test_audio_tokens_shapes(ast_dir: Path, frames: int) -> None:
    stem = HFAudioTokens(ast_dir, N_MELS, WIDTH).eval()
    mel = torch.randn(2, N_MELS, frames) - 5.0
    mask = torch.ones(2, frames, dtype=torch.bool)
    tokens, token_mask = stem(mel, mask)
    assert tokens.shape == (2, token_count(frames), WIDTH)
    assert token_mask.shape == (2, token_count(frames)) and token_mask.all()
    assert torch.isfinite(tokens).all()


def test_audio_token_mask_and_padded_tokens(ast_dir: Path) -> None:
    stem = HFAudioTokens(ast_dir, N_MELS, WIDTH).eval()
    frames, lengths = 47, [47, 21, 0]
    mel = torch.randn(3, N_MELS, frames)
    mask = torch.arange(frames)[None, :] < torch.tensor(lengths)[:, None]
    tokens, token_mask = stem(mel, mask)
    expected = torch.arange(token_count(frames))[None, :] * 5 < torch.tensor(lengths)[:, None]
    assert torch.equal(token_mask, expected)  # frames 20 of clip 1 makes token 4 real
    assert token_mask[1].sum() == token_count(21)
    assert (tokens[~token_mask] == 0).all()
    assert (tokens[token_mask].abs().sum(-1) > 0).all()


@pytest.mark.parametrize("padded_to", [57, MAX_LENGTH, 3 * MAX_LENGTH + 5])
def test_audio_tokens_ignore_batch_padding(ast_dir: Path, padded_to: int) -> None:
    """A clip's tokens are the same alone and padded inside a batch, whatever the padding holds,
    even past its last window (extra windows never reach its tokens)."""
    stem = HFAudioTokens(ast_dir, N_MELS, WIDTH).eval()
    frames = 53
    clip = torch.randn(1, N_MELS, frames) - 4.0
    alone, alone_mask = stem(clip, torch.ones(1, frames, dtype=torch.bool))

    batch = torch.randn(2, N_MELS, padded_to) * 30.0  # garbage in the padding
    batch[0, :, :frames] = clip[0]
    mask = torch.ones(2, padded_to, dtype=torch.bool)
    mask[0, frames:] = False
    tokens, token_mask = stem(batch, mask)
    n = token_count(frames)
    torch.testing.assert_close(tokens[0, :n], alone[0], atol=1e-5, rtol=1e-4)
    assert torch.equal(token_mask[0, :n], alone_mask[0]) and not token_mask[0, n:].any()


def test_audio_tokens_follow_time(ast_dir: Path) -> None:
    """Tokens of a later window come from that window: changing it leaves earlier tokens be."""
    stem = HFAudioTokens(ast_dir, N_MELS, WIDTH).eval()
    mel = torch.randn(1, N_MELS, 2 * MAX_LENGTH)
    mask = torch.ones(1, 2 * MAX_LENGTH, dtype=torch.bool)
    before, _ = stem(mel, mask)
    mel[..., MAX_LENGTH:] = torch.randn(N_MELS, MAX_LENGTH)
    after, _ = stem(mel, mask)
    # Tokens centred before the last patch centre of window 0 only interpolate inside it.
    last_centre = 6 * 8 + 7.5
    inside = int((last_centre - 2) // 5)
    torch.testing.assert_close(after[0, :inside], before[0, :inside])
    assert not torch.allclose(after[0, -5:], before[0, -5:])


def test_audio_windows_in_bounded_passes(ast_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stem = HFAudioTokens(ast_dir, N_MELS, WIDTH).eval()
    mel = torch.randn(2, N_MELS, 3 * MAX_LENGTH - 10)
    mask = torch.ones(2, mel.shape[-1], dtype=torch.bool)
    whole, _ = stem(mel, mask)
    monkeypatch.setattr(backbones, "WINDOWS_PER_PASS", 1)
    split, _ = stem(mel, mask)
    torch.testing.assert_close(split, whole, atol=1e-5, rtol=1e-4)


def test_interpolate_matches_numpy() -> None:
    gen = torch.Generator().manual_seed(0)
    src = torch.tensor([7.5, 15.5, 23.5, 71.5, 79.5, 87.5])  # uneven, as across windows
    tgt = torch.arange(20, dtype=torch.float32) * 5 + 2
    values = torch.randn(3, 6, 4, generator=gen)
    n_valid = torch.tensor([6, 4, 1])
    got = _interpolate(values, src, tgt, n_valid)
    for b in range(3):
        k = int(n_valid[b])
        for d in range(4):
            want = np.interp(tgt.numpy(), src[:k].numpy(), values[b, :k, d].numpy())
            np.testing.assert_allclose(got[b, :, d].numpy(), want, rtol=1e-5, atol=1e-6)


def test_frozen_audio_tokens_train_only_projection(ast_dir: Path) -> None:
    stem = HFAudioTokens(ast_dir, N_MELS, WIDTH, frozen=True).train()
    tokens, _ = stem(torch.randn(2, N_MELS, 90), torch.ones(2, 90, dtype=torch.bool))
    tokens.square().sum().backward()
    assert all(p.grad is None for p in stem.tower.parameters())
    assert stem.proj.weight.grad is not None and stem.proj.weight.grad.abs().sum() > 0


def test_unfrozen_audio_tokens_train_tower(ast_dir: Path) -> None:
    stem = HFAudioTokens(ast_dir, N_MELS, WIDTH, frozen=False).train()
    tokens, _ = stem(torch.randn(2, N_MELS, 90), torch.ones(2, 90, dtype=torch.bool))
    tokens.square().sum().backward()
    patch_conv = stem.tower.embeddings.patch_embeddings.projection.weight
    assert patch_conv.grad is not None and patch_conv.grad.abs().sum() > 0


def test_audio_train_keeps_frozen_tower_in_eval(ast_dir: Path) -> None:
    mel, mask = torch.randn(1, N_MELS, 40), torch.ones(1, 40, dtype=torch.bool)
    frozen = HFAudioTokens(ast_dir, N_MELS, WIDTH, frozen=True)
    nn.ModuleDict({"audio": frozen}).train()  # as the parent model's .train() reaches it
    assert frozen.training and not frozen.tower.training
    torch.testing.assert_close(frozen(mel, mask)[0], frozen(mel, mask)[0])
    live = HFAudioTokens(ast_dir, N_MELS, WIDTH, frozen=False).train()
    assert not torch.allclose(live(mel, mask)[0], live(mel, mask)[0])


def test_audio_rejects_mel_bin_mismatch(ast_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"32 mel bins.*n_mels=64"):
        HFAudioTokens(ast_dir, n_mels=64, width=WIDTH)


def test_audio_rejects_wrong_input_shape(ast_dir: Path) -> None:
    stem = HFAudioTokens(ast_dir, N_MELS, WIDTH)
    with pytest.raises(ValueError, match="log-mel"):
        stem(torch.randn(1, 16, 10), torch.ones(1, 10, dtype=torch.bool))
    with pytest.raises(ValueError, match="mel_mask"):
        stem(torch.randn(1, N_MELS, 10), torch.ones(1, 9, dtype=torch.bool))


# ---------------------------------------------------------------- loading


LOADERS: dict[str, Callable[[Path], nn.Module]] = {
    "clip": lambda d: HFFrameStem(d, WIDTH),
    "ast": lambda d: HFAudioTokens(d, N_MELS, WIDTH),
}


@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_missing_directory_names_the_path(tmp_path: Path, kind: str) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        LOADERS[kind](missing)
    missing.mkdir()  # a directory without config.json is not a model either
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        LOADERS[kind](missing)
