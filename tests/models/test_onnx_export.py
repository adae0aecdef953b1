"""Exported query encoders (`trimodal export-onnx`) match torch within 1e-4, on random and real
SynthAV inputs, at several batch sizes and lengths; longer inputs are handed back to torch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from models.config import Modality, preset
from models.media import decode
from models.model import TrimodalModel
from models.onnx_export import OnnxEncoders, export_onnx
from training.synthav import GeneratorConfig, RenderConfig, generate_corpus

ATOL = 1e-4


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[TrimodalModel, OnnxEncoders, Path]:
    base = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    TrimodalModel(preset("tiny")).save(base / "ckpt")
    export_onnx(base / "ckpt", base / "onnx")
    model = TrimodalModel.load(base / "ckpt").eval()
    return model, OnnxEncoders(base / "onnx", model), base


def close(a, b) -> None:
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=ATOL, rtol=0)


@pytest.mark.parametrize("seconds", [[6.0], [0.5, 3.0], [1.0, 4.0, 9.0, 11.5], [2.0] * 7])
def test_audio_matches_torch(exported, seconds) -> None:
    model, onnx, _ = exported
    rng = np.random.default_rng(len(seconds))
    waves = [0.3 * rng.standard_normal(int(16000 * s)).astype(np.float32) for s in seconds]
    mel, mask = model.audio_inputs(waves)
    with torch.no_grad():
        ref = model.encoders[Modality.AUDIO](mel, mask)
    got = onnx.audio(mel, mask)
    assert got is not None
    close(got.pooled, ref.pooled)
    close(got.sequence, ref.sequence)
    assert torch.equal(got.mask, ref.mask)


@pytest.mark.parametrize("seconds", [[6.0], [0.5, 3.0], [1.0, 4.0, 9.0, 12.0]])
def test_visual_matches_torch(exported, seconds) -> None:
    model, onnx, _ = exported
    rng = np.random.default_rng(7)
    fps = model.cfg.visual.fps
    clips = [rng.integers(0, 255, (max(1, int(fps * s)), 40, 56, 3), np.uint8) for s in seconds]
    frames, mask = model.visual_inputs(clips)
    with torch.no_grad():
        ref = model.encoders[Modality.VISUAL](frames, mask)
    got = onnx.visual(frames, mask)
    assert got is not None
    close(got.pooled, ref.pooled)
    close(got.sequence, ref.sequence)
    assert torch.equal(got.mask, ref.mask)


@pytest.mark.parametrize("texts", [["a bell"], ["a small red ball bounces on the grass", "x", ""]])
def test_text_matches_torch(exported, texts) -> None:
    model, onnx, _ = exported
    with torch.no_grad():
        ref = model.encode_text(texts)
    close(onnx.text(texts).pooled, ref.pooled)


def test_real_synthav_clip_matches(exported, tmp_path: Path) -> None:
    model, onnx, _ = exported
    generate_corpus(tmp_path, GeneratorConfig(clips=2, seed=4, render=RenderConfig(duration_s=4.0)))
    cfg = model.cfg
    size = (cfg.visual.image_size, cfg.visual.image_size)
    clips = [
        decode(p, fps=cfg.visual.fps, size=size) for p in sorted((tmp_path / "media").glob("*"))
    ]
    mel, mel_mask = model.audio_inputs([c.audio for c in clips])
    frames, frame_mask = model.visual_inputs([c.frames for c in clips])
    with torch.no_grad():
        ref_a = model.encoders[Modality.AUDIO](mel, mel_mask)
        ref_v = model.encoders[Modality.VISUAL](frames, frame_mask)
    got_a, got_v = onnx.audio(mel, mel_mask), onnx.visual(frames, frame_mask)
    assert got_a is not None and got_v is not None
    close(got_a.sequence, ref_a.sequence)
    close(got_v.sequence, ref_v.sequence)
    rows = [json.loads(line) for line in (tmp_path / "manifest.jsonl").open()]
    captions = [c for row in rows for kind in row["captions"].values() for c in kind]
    with torch.no_grad():  # the clips' own captions, all kinds, as one ragged batch
        ref_t = model.encode_text(captions)
    close(onnx.text(captions).pooled, ref_t.pooled)


def test_inputs_longer_than_the_export_go_back_to_torch(exported) -> None:
    model, onnx, _ = exported
    long_wave = np.zeros(16000 * 20, np.float32)
    mel, mask = model.audio_inputs([long_wave])
    assert mel.shape[-1] > onnx.limits["audio_frames"]
    assert onnx.audio(mel, mask) is None
    frames = torch.zeros(1, onnx.limits["visual_frames"] + 1, 3, 8, 8)
    assert onnx.visual(frames, torch.ones(1, frames.shape[1], dtype=torch.bool)) is None


def test_a_changed_file_is_refused(exported, tmp_path: Path) -> None:
    model, _, base = exported
    copy = tmp_path / "onnx"
    copy.mkdir()
    for f in (base / "onnx").iterdir():
        copy.joinpath(f.name).write_bytes(f.read_bytes())
    data = bytearray((copy / "text.onnx").read_bytes())
    data[len(data) // 2] ^= 1
    (copy / "text.onnx").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="re-export"):
        OnnxEncoders(copy, model)
