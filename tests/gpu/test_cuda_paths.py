"""The CUDA paths: training, encoding, event envelopes and evaluation on a GPU, checked against
the same checkpoint on the CPU. Skipped where no CUDA device is present (CI never has one); run
on a GPU machine with `python -m pytest -m gpu tests/gpu`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.model import TrimodalModel
from training.datasets import load_manifest
from training.evaluate import embed_pool, evaluate
from training.synthav import GeneratorConfig, RenderConfig, generate_corpus
from training.trainer import TrainConfig, prepare, train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu") / "corpus"
    cfg = GeneratorConfig(
        clips=40, seed=3, val_fraction=0.2, test_fraction=0.2, render=RenderConfig(duration_s=2.0)
    )
    generate_corpus(out, cfg, workers=4)
    return out


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    """A tiny checkpoint trained on the GPU, every phase included (main, branch, event)."""
    items = load_manifest(corpus / "manifest.jsonl", splits=("train", "val"))
    prepared = prepare(items, "tiny", tmp_path_factory.mktemp("cache"), workers=4)
    cfg = TrainConfig(
        preset="tiny",
        epochs=2,
        batch_size=8,
        warmup_steps=2,
        device="cuda",
        branch_epochs=1,
        event_epochs=1,
    )
    out = tmp_path_factory.mktemp("run")
    result = train(prepared, cfg, out)
    return prepared, out / "best", result


def test_training_on_cuda_learns_and_saves_a_checkpoint_the_cpu_loads(trained):
    prepared, best, result = trained
    losses = [h["loss"] for h in result.history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    model = TrimodalModel.load(best, "cpu", text_backbone=prepared.backbone)
    assert model.device.type == "cpu"
    assert model.picture_events is not None and model.picture_events.is_trained


def test_the_gpu_encodes_as_the_cpu_does(trained):
    prepared, best, _ = trained
    ids = [e.id for e in prepared.train][:16]
    pools = {}
    for device in ("cpu", "cuda"):
        model = TrimodalModel.load(best, device, text_backbone=prepared.backbone)
        pools[device] = embed_pool(model, prepared.cache, ids)
    cpu, gpu = pools["cpu"], pools["cuda"]
    for modality in ("visual", "audio"):
        a, b = getattr(cpu, modality), getattr(gpu, modality)
        cos = torch.nn.functional.cosine_similarity(a.pooled, b.pooled, dim=-1)
        assert float(cos.min()) > 0.999, (modality, cos.min())
        assert torch.equal(a.mask, b.mask)
        seq = torch.nn.functional.cosine_similarity(a.sequence[a.mask], b.sequence[b.mask], dim=-1)
        assert float(seq.min()) > 0.99, (modality, seq.min())
    # the learned picture envelope runs on the checkpoint's device
    for e_cpu, e_gpu in zip(cpu.events["visual"], gpu.events["visual"], strict=True):
        assert e_cpu.shape == e_gpu.shape
        np.testing.assert_allclose(e_cpu, e_gpu, atol=2e-2)


def test_evaluation_on_cuda_ranks_as_on_the_cpu(corpus, trained):
    prepared, best, _ = trained
    items = load_manifest(corpus / "manifest.jsonl", splits=("val",))
    reports = {}
    for device in ("cpu", "cuda"):
        model = TrimodalModel.load(best, device, text_backbone=prepared.backbone)
        reports[device] = evaluate(model, items, prepared.cache, prepared.texts, modes=("pooled",))
    for direction in ("text→video", "text→audio", "audio→video", "video→audio"):
        a = reports["cpu"][direction]["pooled"]["all"]
        b = reports["cuda"][direction]["pooled"]["all"]
        assert a["n"] == b["n"]
        assert abs(a["R@10"] - b["R@10"]) <= 1.5 / a["n"], direction


def test_log_mel_on_cuda_matches_torchaudio():
    torchaudio = pytest.importorskip("torchaudio", exc_type=ImportError)
    from models.features import LogMel, LogMelConfig
    from tests.models.test_features import torchaudio_mel

    wave = torch.randn(2, 16_000 * 3, device="cuda")
    ref = torchaudio_mel(torchaudio).to("cuda")(wave)
    ours = LogMel(LogMelConfig()).to("cuda").power_mel(wave)
    assert ours.device.type == "cuda"
    torch.testing.assert_close(ours, ref, rtol=1e-3, atol=1e-3)
