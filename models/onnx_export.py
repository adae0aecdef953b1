"""Exporting the query encoders to ONNX, and running them with ONNX Runtime.

`export_onnx(ckpt, out)` writes `text.onnx` (token ids, mask → pooled), `audio.onnx` (log-mel, mask
→ pooled, sequence, step mask) and `visual.onnx` (frames, mask → the same) with dynamic batch and
time axes, plus `onnx.json` naming the checkpoint they came from and how long an input each takes.
The encoders attend inside windows of `CONTEXT_STEPS` grid steps (12 s); an export covers inputs up
to one window — every query of ordinary length — and `OnnxEncoders` hands anything longer back
to torch (it says so by returning None), rather than answering wrongly.

Feature extraction (log-mel, frame resizing) stays in torch: it is cheap and shared with training.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from models.config import Modality
from models.encoders import CONTEXT_STEPS, Embeddings
from models.model import TrimodalModel, checkpoint_hash

MANIFEST = "onnx.json"
OPSET = 18


class _Outputs(nn.Module):
    """An encoder with plain tensor outputs (ONNX has no NamedTuple)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out = self.encoder(x, mask)
        return out.pooled, out.sequence, out.mask


class _Text(nn.Module):
    """Frozen tower + mean pooling + projection: token ids → the pooled query vector."""

    def __init__(self, model: TrimodalModel) -> None:
        super().__init__()
        self.tower = model.text.backbone.model
        self.head = model.text.project_head

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        hidden = self.tower(input_ids=ids, attention_mask=mask).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return nn.functional.normalize(self.head(pooled), dim=-1)


def _export(module: nn.Module, args: tuple, path: Path, names: list[str], dynamic: dict) -> None:
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    module.eval()  # the wrappers are new modules (training mode); the encoders inside are eval
    with torch.no_grad():
        torch.onnx.export(
            module,
            args,
            str(tmp),
            input_names=names[:2],
            output_names=names[2:],
            dynamic_shapes=dynamic,
            opset_version=OPSET,
            dynamo=True,
            external_data=False,  # one self-contained file (these encoders are a few MB)
            verbose=False,
        )
    os.replace(tmp, path)  # a half-written export is never taken for a finished one


def export_onnx(ckpt: Path, out: Path) -> dict[str, Any]:
    """Export the three query encoders of checkpoint `ckpt` into directory `out`."""
    model = TrimodalModel.load(ckpt).eval()
    cfg = model.cfg
    out.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1, max=256)
    limits: dict[str, int] = {}

    # Audio: up to one attention window of mel frames.
    mel_per_step = cfg.audio.token_frames * cfg.audio_tokens_per_step
    limits["audio_frames"] = CONTEXT_STEPS * mel_per_step
    wave = np.random.default_rng(0).standard_normal(6 * cfg.audio.sample_rate).astype(np.float32)
    mel, mel_mask = model.audio_inputs([wave, wave[: len(wave) // 2]])
    frames_dim = torch.export.Dim("frames", min=cfg.audio.token_frames, max=limits["audio_frames"])
    _export(
        _Outputs(model.encoders[Modality.AUDIO]),
        (mel, mel_mask),
        out / "audio.onnx",
        ["mel", "mask", "pooled", "sequence", "step_mask"],
        {"x": {0: batch, 2: frames_dim}, "mask": {0: batch, 1: frames_dim}},
    )

    # Visual: up to one window of frames.
    limits["visual_frames"] = CONTEXT_STEPS * cfg.frames_per_step
    rng = np.random.default_rng(1)
    clip = rng.integers(0, 255, (int(6 * cfg.visual.fps), 32, 32, 3), dtype=np.uint8)
    frames, frame_mask = model.visual_inputs([clip, clip[: len(clip) // 2]])
    vframes = torch.export.Dim("vframes", min=1, max=limits["visual_frames"])
    _export(
        _Outputs(model.encoders[Modality.VISUAL]),
        (frames, frame_mask),
        out / "visual.onnx",
        ["frames", "mask", "pooled", "sequence", "step_mask"],
        {"x": {0: batch, 1: vframes}, "mask": {0: batch, 1: vframes}},
    )

    # Text: ids → pooled.
    tok = model.text.backbone.tokenizer(
        ["a sample sentence", "two"], padding=True, return_tensors="pt"
    )
    tokens = torch.export.Dim("tokens", min=2, max=cfg.text.max_length)
    _export(
        _Text(model),
        (tok["input_ids"], tok["attention_mask"]),
        out / "text.onnx",
        ["input_ids", "attention_mask", "pooled"],
        {"ids": {0: batch, 1: tokens}, "mask": {0: batch, 1: tokens}},
    )
    manifest = {
        "checkpoint_hash": checkpoint_hash(ckpt),
        "opset": OPSET,
        "limits": limits,
        "files": {
            name: hashlib.sha256((out / name).read_bytes()).hexdigest()
            for name in ("audio.onnx", "visual.onnx", "text.onnx")
        },
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


class OnnxEncoders:
    """The exported query encoders on ONNX Runtime (CUDA provider when present)."""

    def __init__(
        self, directory: Path, model: TrimodalModel, threads: int = 1, spin: bool = False
    ) -> None:
        import onnxruntime as ort

        from models.onnx_text import session_options

        self.manifest = json.loads((directory / MANIFEST).read_text())
        self.limits = self.manifest["limits"]
        self.tokenizer = model.text.backbone.tokenizer
        self.max_length = model.cfg.text.max_length
        options = session_options(threads, spin)
        providers = [
            p
            for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
            if p in ort.get_available_providers()
        ]
        self.sessions = {}
        for name, digest in self.manifest["files"].items():
            path = directory / name
            if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
                raise ValueError(f"{path} does not match {MANIFEST}: re-export")
            self.sessions[name.removesuffix(".onnx")] = ort.InferenceSession(
                str(path), options, providers=providers
            )

    def _run(self, name: str, x: Tensor, mask: Tensor) -> Embeddings:
        pooled, sequence, step_mask = self.sessions[name].run(
            None, {"mel" if name == "audio" else "frames": x.numpy(), "mask": mask.numpy()}
        )
        return Embeddings(
            torch.from_numpy(pooled), torch.from_numpy(sequence), torch.from_numpy(step_mask)
        )

    def audio(self, mel: Tensor, mask: Tensor) -> Embeddings | None:
        """None when the input is longer than the export covers (use torch then)."""
        if mel.shape[-1] > self.limits["audio_frames"]:
            return None
        return self._run("audio", mel, mask)

    def visual(self, frames: Tensor, mask: Tensor) -> Embeddings | None:
        if frames.shape[1] > self.limits["visual_frames"]:
            return None
        return self._run("visual", frames, mask)

    def text(self, texts: list[str]) -> Embeddings:
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="np"
        )
        (pooled,) = self.sessions["text"].run(
            None,
            {
                "input_ids": batch["input_ids"].astype(np.int64),
                "attention_mask": batch["attention_mask"].astype(np.int64),
            },
        )
        p = torch.from_numpy(pooled)
        return Embeddings(p, p.unsqueeze(1), torch.ones(p.shape[0], 1, dtype=torch.bool))
