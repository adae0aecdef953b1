"""A tiny training run end to end: the loss falls, checkpoints, resume, two-stage, eval, curate."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import typer

from models.attributes import columns
from models.config import Modality, preset
from models.model import TrimodalModel
from training.augment import AugmentConfig, level_only
from training.batches import iterate_batches
from training.cli import curate, evaluate_command
from training.datasets import load_manifest
from training.pictures import PictureMemo
from training.synthav import GeneratorConfig, RenderConfig, generate_corpus
from training.trainer import TrainConfig, prepare, train, train_step


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("tr") / "corpus"
    cfg = GeneratorConfig(
        clips=48, seed=4, val_fraction=0.15, test_fraction=0.2, render=RenderConfig(duration_s=2.0)
    )
    generate_corpus(out, cfg, workers=2)
    return out


@pytest.fixture(scope="module")
def prepared(corpus, tmp_path_factory):
    items = load_manifest(corpus / "manifest.jsonl", splits=("train", "val"))
    return prepare(items, "tiny", tmp_path_factory.mktemp("cache"), workers=2)


def one_epoch_command_args(corpus, tmp_path) -> dict:
    """`trimodal train` arguments for one quick tiny-preset epoch on the module's corpus."""
    return {
        "data": corpus / "manifest.jsonl",
        "model_preset": "tiny",
        "epochs": 1,
        "batch_size": 8,
        "device": "cpu",
        "cache": tmp_path / "c",
        "workers": 1,
    }


def variety_corpus(path: Path, clips: int, seed: int, val: float, test: float) -> Path:
    """A small corpus of 2 s clips drawn with per-clip variety (unlike the module's corpus)."""
    generate_corpus(
        path,
        GeneratorConfig(
            clips=clips,
            seed=seed,
            val_fraction=val,
            test_fraction=test,
            variety=True,
            render=RenderConfig(duration_s=2.0),
        ),
        workers=2,
    )
    return path


def fixed_batch_loss(model, prepared, cfg):
    batch = next(
        iterate_batches(prepared.train, prepared.cache, prepared.texts, 8, np.random.default_rng(0))
    )
    model.eval()
    with torch.no_grad():
        loss, _ = train_step(model, batch, cfg, 0, torch.device("cpu"))
    return loss.item()


def test_a_few_epochs_lower_the_loss(prepared, tmp_path):
    cfg = TrainConfig(
        preset="tiny",
        epochs=5,
        batch_size=8,
        lr=3e-3,
        warmup_steps=2,
        scav_weight=0.5,
        device="cpu",
        # SCAV on the shared trunk's sequence head, as before the sequence branch; the timing
        # objectives draw random pieces and positions: tested on their own below
        sequence_branch=False,
        sync_weight=0.0,
        excerpt_weight=0.0,
        position_jitter=0,
        augment=None,  # the loss is measured on a fixed batch as decoded
    )
    torch.manual_seed(0)
    before = fixed_batch_loss(
        TrimodalModel(
            replace(__import__("models.config").config.preset("tiny"), sequence_branch=False),
            prepared.backbone,
        ),
        prepared,
        cfg,
    )
    result = train(prepared, cfg, tmp_path / "run")
    after = fixed_batch_loss(
        TrimodalModel.load(tmp_path / "run" / "last", text_backbone=prepared.backbone),
        prepared,
        cfg,
    )
    assert after < 0.8 * before, (before, after)
    assert len(result.history) == cfg.epochs
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("scav" in x for x in lines)
    assert (tmp_path / "run" / "best" / "model.safetensors").is_file()


def test_resume_continues_where_it_stopped(prepared, tmp_path):
    cfg = TrainConfig(preset="tiny", epochs=3, batch_size=16, warmup_steps=2, device="cpu")
    full = train(prepared, cfg, tmp_path / "full")
    train(
        prepared,
        TrainConfig(**{**cfg.__dict__, "epochs": 3, "max_minutes": 1e-9}),
        tmp_path / "cut",
    )
    resumed = train(prepared, cfg, tmp_path / "cut", resume=True)
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    a = TrimodalModel.load(tmp_path / "full" / "last", text_backbone=prepared.backbone).state_dict()
    b = TrimodalModel.load(tmp_path / "cut" / "last", text_backbone=prepared.backbone).state_dict()
    assert full.epochs_done == resumed.epochs_done == 3
    assert set(a) == set(b)


def test_a_run_saved_with_other_parameters_resumes_its_phases_but_not_its_epochs(
    prepared, tmp_path, caplog
):
    """A run saved by a version whose model had other parameters (a reader added since) has an
    optimizer state that does not fit: with its main epochs done it resumes (its phases run
    again where their markers are gone), with a warning; with epochs left it refuses, saying
    why, rather than train on from a fresh optimizer."""
    cfg = TrainConfig(preset="tiny", epochs=1, batch_size=16, warmup_steps=2, device="cpu")
    train(prepared, cfg, tmp_path / "run")
    state_path = tmp_path / "run" / "last" / "trainer_state.pt"
    state = torch.load(state_path, weights_only=False)
    group = state["optimizer"]["param_groups"][0]
    group["params"] = group["params"][:-1]  # one parameter fewer than this version's model
    torch.save(state, state_path)
    with caplog.at_level("WARNING", logger="training.trainer"):
        resumed = train(prepared, cfg, tmp_path / "run", resume=True)
    assert resumed.epochs_done == 1 and resumed.history == []
    assert "does not fit this version's model" in caplog.text
    with pytest.raises(ValueError, match=r"main epochs \(1 of 2 done\) cannot be resumed"):
        train(prepared, replace(cfg, epochs=2), tmp_path / "run", resume=True)


def test_two_stage_freezes_vision_and_text_head_in_stage_two(prepared):
    from models.config import preset
    from training.trainer import _set_trainable

    cfg = TrainConfig(preset="tiny", objective="two-stage", epochs=2, batch_size=8, device="cpu")
    model = TrimodalModel(preset("tiny"), prepared.backbone)
    _set_trainable(model, cfg, epoch=1)  # stage 2
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1
    )
    batch = next(
        iterate_batches(prepared.train, prepared.cache, prepared.texts, 8, np.random.default_rng(1))
    )
    loss, parts = train_step(model, batch, cfg, 1, torch.device("cpu"))
    assert set(parts) == {"at", "loss"}
    loss.backward()
    opt.step()
    after = model.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(k.startswith(("encoders.audio.", "logit_scale.")) for k in moved), moved
    _set_trainable(model, cfg, epoch=0)  # stage 1 trains vision and the text head, not audio
    assert all(p.requires_grad for p in model.encoders[Modality.VISUAL].parameters())
    assert not any(p.requires_grad for p in model.encoders[Modality.AUDIO].parameters())


def test_eval_and_curate_commands(corpus, prepared, tmp_path):
    cfg = TrainConfig(preset="tiny", epochs=1, batch_size=8, device="cpu")
    train(prepared, cfg, tmp_path / "ck")
    report = evaluate_command(
        ckpt=tmp_path / "ck" / "best",
        data=corpus / "manifest.jsonl",
        rerank=5,
        cache=tmp_path / "c",
    )
    for direction in ("text→video", "text→audio", "audio→video", "video→audio"):
        assert {"pooled", "hybrid"} <= set(report[direction])
        assert 0 <= report[direction]["pooled"]["all"]["R@10"] <= 1
    assert "ceiling" in report["text→video"]
    out = curate(
        ckpt=tmp_path / "ck" / "best",
        data=corpus / "manifest.jsonl",
        out=tmp_path / "cur" / "m.jsonl",
        keep=0.5,
        cache=tmp_path / "c",
    )
    kept_train = [i for i in load_manifest(tmp_path / "cur" / "m.jsonl") if i.split == "train"]
    all_train = [i for i in load_manifest(corpus / "manifest.jsonl") if i.split == "train"]
    assert len(kept_train) == round(0.5 * len(all_train)) == len(out["kept"])
    assert all(i.video.is_file() for i in kept_train)
    assert len(
        [i for i in load_manifest(tmp_path / "cur" / "m.jsonl") if i.split == "test"]
    ) == len([i for i in load_manifest(corpus / "manifest.jsonl") if i.split == "test"])


def test_train_command_can_pick_the_best_epoch_on_unlike_clips(corpus, tmp_path):
    """--val-data: the best epoch is chosen on another manifest's val split (here clips rendered
    with per-clip variety and worded with the larger grammar), not on the training corpus's."""
    from training.cli import train as train_command
    from training.evaluate import evaluate, validation_score

    unlike = variety_corpus(tmp_path / "unlike", clips=12, seed=21, val=0.5, test=0.1)
    common = one_epoch_command_args(corpus, tmp_path)
    out = train_command(out=tmp_path / "run", val_data=unlike / "manifest.jsonl", **common)
    model = TrimodalModel.load(tmp_path / "run" / "best")
    val = load_manifest(unlike / "manifest.jsonl", splits=("val",))
    prep = prepare(val, "tiny", tmp_path / "c", workers=1)
    expected = validation_score(evaluate(model, val, prep.cache, prep.texts, modes=("pooled",)))
    assert out["history"][0]["val_score"] == pytest.approx(expected)
    lines = (unlike / "manifest.jsonl").read_text().splitlines()
    (unlike / "test-only.jsonl").write_text(
        "\n".join(line for line in lines if '"split": "test"' in line) + "\n"
    )
    with pytest.raises(typer.BadParameter, match="no val split"):
        train_command(out=tmp_path / "run2", val_data=unlike / "test-only.jsonl", **common)


def test_train_command_lends_the_event_phase_more_clips(corpus, tmp_path, monkeypatch):
    """--event-data: another manifest's train clips (here drawn with per-clip variety) join the
    training clips in the picture event network's phase, and in nothing else; a manifest
    without a train split is refused before any training."""
    import training.event_phase as phase
    from training.cli import train as train_command

    unlike = variety_corpus(tmp_path / "unlike", clips=6, seed=23, val=0.0, test=0.0)
    read: list[list[list[str]]] = []
    real = phase._Clips

    def recording(model, sources):
        read.append([list(ids) for _, ids in sources])
        return real(model, sources)

    monkeypatch.setattr(phase, "_Clips", recording)
    common = one_epoch_command_args(corpus, tmp_path)
    train_command(
        out=tmp_path / "run", event_data=unlike / "manifest.jsonl", event_epochs=1, **common
    )
    train_ids = {i.id for i in load_manifest(corpus / "manifest.jsonl", splits=("train",))}
    ((own, more),) = read
    assert set(own) <= train_ids and len(own) > 0
    assert sorted(more) == sorted(i.id for i in load_manifest(unlike / "manifest.jsonl"))
    assert TrimodalModel.load(tmp_path / "run" / "best").picture_events.is_trained
    lines = (unlike / "manifest.jsonl").read_text().splitlines()
    (unlike / "none.jsonl").write_text(lines[0].replace('"split": "train"', '"split": "val"'))
    with pytest.raises(typer.BadParameter, match="no train split"):
        train_command(out=tmp_path / "run2", event_data=unlike / "none.jsonl", **common)
    assert not (tmp_path / "run2" / "best").exists()


def test_train_command_lends_the_what_phase_more_clips(corpus, tmp_path, monkeypatch):
    """--what-data: another manifest's train clips (drawn with per-clip variety), with their
    metadata, join the training clips in the what networks' phase; a manifest without a train
    split is refused before any training."""
    import training.what_phase as phase
    from training.cli import train as train_command

    unlike = variety_corpus(tmp_path / "unlike", clips=6, seed=23, val=0.0, test=0.0)
    read: list[list[list[str]]] = []
    real = phase._Clips

    def recording(sources, fps, sr):
        read.append([[i.id for i in items] for _, items in sources])
        return real(sources, fps, sr)

    monkeypatch.setattr(phase, "_Clips", recording)
    common = one_epoch_command_args(corpus, tmp_path)
    train_command(
        out=tmp_path / "run",
        what_data=unlike / "manifest.jsonl",
        event_epochs=0,
        what_epochs=1,
        **common,
    )
    train_ids = {i.id for i in load_manifest(corpus / "manifest.jsonl", splits=("train",))}
    ((own, more),) = read
    assert set(own) <= train_ids and len(own) > 0
    assert sorted(more) == sorted(i.id for i in load_manifest(unlike / "manifest.jsonl"))
    assert TrimodalModel.load(tmp_path / "run" / "best").knows_what()
    lines = (unlike / "manifest.jsonl").read_text().splitlines()
    (unlike / "none.jsonl").write_text(lines[0].replace('"split": "train"', '"split": "val"'))
    with pytest.raises(typer.BadParameter, match="no train split"):
        train_command(out=tmp_path / "run2", what_data=unlike / "none.jsonl", **common)
    assert not (tmp_path / "run2" / "best").exists()
    # clips that do not name their sources (a user's own media) teach the networks nothing
    import json

    bare = [json.loads(line) | {"meta": {}} for line in lines]
    (unlike / "bare.jsonl").write_text("".join(json.dumps(b) + "\n" for b in bare))
    with pytest.raises(typer.BadParameter, match="names its sources"):
        train_command(out=tmp_path / "run3", what_data=unlike / "bare.jsonl", **common)
    assert not (tmp_path / "run3" / "best").exists()
    # and lent clips for a phase that does not run are refused before anything is decoded
    with pytest.raises(typer.BadParameter, match="--what-epochs is 0"):
        train_command(
            out=tmp_path / "run4", what_data=unlike / "manifest.jsonl", what_epochs=0, **common
        )
    assert not (tmp_path / "run4" / "best").exists()


def test_paraphrase_batches_draw_another_wording_and_keep_the_stream_when_off(prepared):
    def batches(paraphrases):
        return list(
            iterate_batches(
                prepared.train,
                prepared.cache,
                prepared.texts,
                8,
                np.random.default_rng(5),
                paraphrases=paraphrases,
            )
        )

    plain, para = batches(False), batches(True)
    assert all(b.text_alt is None for b in plain)
    first = para[0]
    assert first.text_alt is not None
    torch.testing.assert_close(first.text["audio"], plain[0].text["audio"])
    for kind, alt in first.text_alt.items():
        several = [
            i
            for i, item_id in enumerate(first.ids)
            if len({c for c in next(e for e in prepared.train if e.id == item_id).captions[kind]})
            > 1
        ]
        assert several, kind
        assert all(not torch.equal(alt[i], first.text[kind][i]) for i in several), kind


def test_paraphrase_loss_trains_a_residual_text_head(prepared, tmp_path):
    cfg = TrainConfig(
        preset="tiny",
        epochs=2,
        batch_size=8,
        warmup_steps=2,
        device="cpu",
        text_head="residual",
        embed_dim=32,
        paraphrase_weight=1.0,
    )
    train(prepared, cfg, tmp_path / "run")
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(x["para"] >= 0 for x in lines if "para" in x) and any("para" in x for x in lines)
    model = TrimodalModel.load(tmp_path / "run" / "last", text_backbone=prepared.backbone)
    assert model.cfg.text.head == "residual"
    assert model.text.project_head.delta.weight.abs().sum() > 0  # it moved off the identity
    with pytest.raises(ValueError, match="paraphrase"):
        TrainConfig(paraphrase_weight=-1.0)
    with pytest.raises(ValueError, match="trainable text head"):
        train(prepared, replace(cfg, text_head="identity"), tmp_path / "nothing-to-train")


def test_reword_corpus_changes_only_the_training_captions(corpus):
    from training.synthav.writer import corpus_config, reword_corpus

    path = reword_corpus(corpus, rich_captions=True)
    assert path.name == "manifest-rich.jsonl" and corpus_config(corpus).rich_captions is None
    old = {
        r["id"]: r
        for r in map(json.loads, (corpus / "manifest.jsonl").read_text().split("\n")[:-1])
    }
    new = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(new) == len(old)
    changed = 0
    for rec in new:
        before = old[rec["id"]]
        assert {**rec, "captions": 0} == {**before, "captions": 0}
        if rec["split"] != "train":
            assert rec["captions"] == before["captions"]
        changed += rec["captions"] != before["captions"]
    assert changed > 0.8 * sum(r["split"] == "train" for r in new)
    items = load_manifest(path)  # a valid manifest, pointing at the same media files
    assert all(i.video.is_file() for i in items)
    (corpus / "manifest.jsonl").write_text(
        "\n".join(list(map(json.dumps, old.values()))[:-1]) + "\n"
    )
    try:
        with pytest.raises(ValueError, match="does not match"):
            reword_corpus(corpus, rich_captions=True)
    finally:
        (corpus / "manifest.jsonl").write_text("\n".join(map(json.dumps, old.values())) + "\n")


def test_frame_rate_override_is_decoded_trained_and_recorded(corpus, tmp_path):
    """--fps: the cache samples that many frames a second, the checkpoint records it, and every
    later decode of the model (eval, index, queries: DecodeSpec.for_model) samples the same way."""
    from training.cache import DecodeSpec
    from training.cli import train as train_command

    common = one_epoch_command_args(corpus, tmp_path)
    train_command(out=tmp_path / "run", fps=12.0, **common)
    model = TrimodalModel.load(tmp_path / "run" / "last")
    assert model.cfg.visual.fps == 12.0 and model.cfg.frames_per_step == 3
    assert DecodeSpec.for_model(model.cfg).fps == 12.0
    items = load_manifest(corpus / "manifest.jsonl", splits=("val",))
    ready = prepare(items, "tiny", tmp_path / "c2", workers=1, fps=12.0)
    frames = ready.cache.frames(items[0].id)
    assert len(frames) == 24  # 2 s at 12 fps
    with pytest.raises(typer.BadParameter, match="multiple of steps_per_second"):
        train_command(out=tmp_path / "bad", fps=10.0, **common)
    # 8 fps is 2 frames a step: the preset's trunk (every 3rd frame) cannot sit on it, every 2nd can
    with pytest.raises(typer.BadParameter, match="trunk_every"):
        train_command(out=tmp_path / "bad8", fps=8.0, **common)
    train_command(out=tmp_path / "run8", fps=8.0, trunk_every=2, **common)
    eight = TrimodalModel.load(tmp_path / "run8" / "last").cfg
    assert (eight.visual.fps, eight.visual.trunk_every, eight.trunk_frames_per_step) == (8.0, 2, 1)


def test_initial_temperature_override_starts_the_scales_there_and_is_recorded(corpus, tmp_path):
    import math

    from training.cli import train as train_command

    common = one_epoch_command_args(corpus, tmp_path)
    train_command(out=tmp_path / "run", init_temperature=0.02, event_epochs=0, **common)
    model = TrimodalModel.load(tmp_path / "run" / "last")
    assert model.cfg.init_temperature == 0.02
    fresh = TrimodalModel(model.cfg, model.text.backbone)
    # every cosine pair starts at 1 / 0.02 (the sequence pair keeps its own start)
    assert float(fresh.scale("visual_text")) == pytest.approx(50.0)
    assert float(fresh.logit_scale["sequence"]) != pytest.approx(math.log(50.0))
    assert (
        json.loads((tmp_path / "run" / "train_config.json").read_text())["init_temperature"] == 0.02
    )
    with pytest.raises(ValueError, match="init_temperature"):
        TrainConfig(init_temperature=0.0)


def test_timing_objectives_train_the_sequence_heads_and_say_so(prepared, tmp_path):
    """sync + excerpt + position jitter + event inputs: every part runs, lowers its own loss on a
    fixed batch, and the checkpoint's policy records trained sequence heads (an untrained run's
    says the opposite)."""
    cfg = TrainConfig(
        preset="tiny",
        epochs=4,
        batch_size=8,
        lr=3e-3,
        warmup_steps=2,
        device="cpu",
        sync_weight=1.0,
        excerpt_weight=1.0,
        excerpt_steps=(2, 4),
        position_jitter=8,
        event_inputs=True,
        branch_in_main_epochs=True,
        branch_epochs=0,
        augment=None,  # four tiny epochs: each loss's own descent, not the level's variety
    )
    assert cfg.trains_sequences and TrainConfig(preset="tiny").trains_sequences  # the default
    assert not TrainConfig(preset="tiny", sync_weight=0, excerpt_weight=0).trains_sequences
    result = train(prepared, cfg, tmp_path / "run")
    first, last = result.history[0], result.history[-1]
    assert last["sync"] < first["sync"] and last["excerpt"] < first["excerpt"], (first, last)
    model = TrimodalModel.load(tmp_path / "run" / "best", text_backbone=prepared.backbone)
    assert model.cfg.audio.events and model.cfg.visual.events
    assert model.search_policy.sequence_trained and model.search_policy.recorded
    with pytest.raises(ValueError, match="excerpt"):
        TrainConfig(excerpt_weight=1.0, excerpt_steps=(5, 2))
    with pytest.raises(ValueError, match="jitter"):
        TrainConfig(position_jitter=-1)


def test_train_command_passes_the_timing_options(corpus, tmp_path):
    from training.cli import train as train_command

    out = tmp_path / "run"
    train_command(
        **one_epoch_command_args(corpus, tmp_path),
        out=out,
        sync_weight=0.5,
        excerpt_weight=0.5,
        position_jitter=4,
        event_inputs=True,
        branch_epochs=1,
        branch_in_main_epochs=True,
        event_epochs=0,
        augment="none",
    )
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["augment"] is None and saved["event_epochs"] == 0
    assert TrimodalModel.load(out / "best").cfg.picture_events == "changes"
    assert (saved["branch_epochs"], saved["branch_in_main_epochs"]) == (1, True)
    assert (saved["sync_weight"], saved["excerpt_weight"], saved["position_jitter"]) == (
        0.5,
        0.5,
        4,
    )
    assert json.loads((out / "best" / "search.json").read_text())["sequence_trained"] is True


def test_training_changes_the_recording_level_by_default_and_the_command_says_how(tmp_path):
    """The default augmentation is the sound's level only; `--augment band|full|none` choose the
    level and a low sample rate's band, the whole set, or nothing, and anything else is refused
    before any training."""
    import typer

    from training.augment import AugmentConfig, level_only
    from training.cli import train as train_command

    assert TrainConfig().augment == level_only()
    assert not TrainConfig().augment.visual
    with pytest.raises(typer.BadParameter, match="level, band, full, audio, visual, none"):
        train_command(data=tmp_path / "absent.jsonl", out=tmp_path / "run", augment="loud")
    assert not (tmp_path / "run").exists()
    assert AugmentConfig().visual  # `full` is training.augment's whole set


# One quick tiny epoch with short excerpt pieces (2 s clips): the branch-phase tests' base.
ONE_EPOCH_TIMING = TrainConfig(
    preset="tiny", epochs=1, batch_size=8, warmup_steps=1, device="cpu", excerpt_steps=(2, 4)
)


def test_the_branch_phase_moves_only_the_branches_and_lowers_their_loss(
    prepared, tmp_path, monkeypatch
):
    """The main epochs leave the sequence branches out (no timing loss, branch weights as
    initialised); then `branch_epochs` more train the branches alone: every other weight of the
    best checkpoint is kept bit for bit, the timing loss falls, the log says so, and the policy
    is measured on the result."""
    import shutil

    import training.trainer as trainer

    cfg = replace(
        ONE_EPOCH_TIMING,
        position_jitter=8,
        branch_epochs=3,
        event_epochs=0,
        what_epochs=0,
        text_attributes=False,
    )
    phase = trainer._branch_phase

    def keep_best_then_run(prepared_, cfg_, out, *rest):
        shutil.copytree(out / "best", tmp_path / "before-phase")
        return phase(prepared_, cfg_, out, *rest)

    monkeypatch.setattr(trainer, "_branch_phase", keep_best_then_run)
    train(prepared, cfg, tmp_path / "run")
    before = TrimodalModel.load(tmp_path / "before-phase", text_backbone=prepared.backbone)
    after = TrimodalModel.load(tmp_path / "run" / "best", text_backbone=prepared.backbone)
    a, b = before.state_dict(), after.state_dict()
    moved = {k for k in a if not torch.equal(a[k], b[k])}
    assert moved and all(".branch." in k for k in moved), sorted(moved)[:5]
    # The main epochs did not touch the branches: they are still as the model was built.
    torch.manual_seed(cfg.seed)
    built = TrimodalModel(before.cfg, prepared.backbone).state_dict()
    assert all(torch.equal(a[k], built[k]) for k in a if ".branch." in k)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    main = [x for x in lines if "phase" not in x]
    assert main and not any("sync" in x or "excerpt" in x for x in main)
    phase_lines = [x for x in lines if x.get("phase") == "branch"]
    assert [x["epoch"] for x in phase_lines] == [1, 2, 3]
    assert phase_lines[-1]["sync"] < phase_lines[0]["sync"], phase_lines
    assert after.search_policy.recorded and after.search_policy.sequence_trained
    # Resuming a finished run does not run the phase again on its own result.
    train(prepared, cfg, tmp_path / "run", resume=True)
    again = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert sum(json.loads(x).get("phase") == "branch" for x in again) == len(phase_lines)
    resumed = TrimodalModel.load(tmp_path / "run" / "best", text_backbone=prepared.backbone)
    assert all(torch.equal(v, resumed.state_dict()[k]) for k, v in b.items())


def test_the_branch_phase_shows_a_share_of_its_clips_at_a_lower_frame_rate(
    prepared, tmp_path, monkeypatch
):
    """`branch_slow_share`: the branch phase's clips held as an 8 or 10 fps file shows them on
    the grid (in order, some frames twice), not kept by the picture memo; 0 (the default) shows
    every clip as the cache holds it, the memo's."""
    import training.trainer as trainer

    seen: dict[str, list] = {}
    step = trainer.branch_step

    def record(model, batch, cfg_, *rest):
        seen.setdefault(cfg_.branch_slow_share, []).append(batch)
        return step(model, batch, cfg_, *rest)

    monkeypatch.setattr(trainer, "branch_step", record)
    cfg = replace(ONE_EPOCH_TIMING, branch_epochs=1, event_epochs=0, what_epochs=0)
    for share in (0.0, 1.0):
        train(prepared, replace(cfg, branch_slow_share=share), tmp_path / str(share))
    for batch in seen[0.0]:
        assert batch.frame_keys == batch.ids
        assert all(
            np.array_equal(f, prepared.cache.frames(i))
            for f, i in zip(batch.frames, batch.ids, strict=True)
        )
    held = 0
    for batch in seen[1.0]:
        assert batch.frame_keys == [None] * len(batch.ids)
        for f, i in zip(batch.frames, batch.ids, strict=True):
            own = np.asarray(prepared.cache.frames(i))
            assert f.shape == own.shape
            held += sum(np.array_equal(a, b) for a, b in zip(f[1:], f[:-1], strict=True))
            held -= sum(np.array_equal(a, b) for a, b in zip(own[1:], own[:-1], strict=True))
    assert held > 0
    with pytest.raises(ValueError, match="branch_slow_share"):
        replace(cfg, branch_slow_share=1.5)


def test_branches_trained_in_the_main_epochs_on_request_or_without_a_phase(prepared, tmp_path):
    """`branch_in_main_epochs`, or no branch phase at all: the main epochs train the branches
    with the timing objectives (the recipe before the phase took them over)."""
    cfg = replace(ONE_EPOCH_TIMING, branch_epochs=0)
    for name, run in {"none": cfg, "both": replace(cfg, branch_in_main_epochs=True)}.items():
        train(prepared, run, tmp_path / name)
        lines = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        main = [json.loads(x) for x in lines if "phase" not in json.loads(x)]
        assert main and all("sync" in x and "excerpt" in x for x in main), name


def test_a_run_stopped_at_max_minutes_still_trains_its_branches(prepared, tmp_path):
    """The time cap stops the main epochs; the branches, left out of them, still get their
    phase, so the checkpoint never ships untrained steps recorded as trained (or at all)."""
    cfg = TrainConfig(
        preset="tiny", epochs=2, batch_size=8, device="cpu", branch_epochs=2, max_minutes=1e-9
    )
    scores = iter([1.0, 0.5, 2.0])  # epoch 1, then the resumed epoch 2 twice
    result = train(prepared, cfg, tmp_path / "cut", validate=lambda m: {"score": next(scores)})
    assert result.stopped_early and result.epochs_done == 1
    lines = [json.loads(x) for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines if x.get("phase") == "branch"] == [2, 3]
    model = TrimodalModel.load(tmp_path / "cut" / "best", text_backbone=prepared.backbone)
    assert model.search_policy.recorded and model.search_policy.sequence_trained

    # Resumed, an epoch that does not beat best/ leaves it as phased: its branches are not
    # trained a second time (the phase learns from the branches' initial weights, once).
    import shutil

    shutil.copytree(tmp_path / "cut", tmp_path / "again")
    whole = replace(cfg, max_minutes=0)

    def phases(run: str) -> int:
        text = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return sum(json.loads(x).get("phase") == "branch" for x in text)

    phased = model.state_dict()
    train(
        prepared, whole, tmp_path / "cut", resume=True, validate=lambda m: {"score": next(scores)}
    )
    assert phases("cut") == 2
    kept = TrimodalModel.load(tmp_path / "cut" / "best", text_backbone=prepared.backbone)
    assert all(torch.equal(v, kept.state_dict()[k]) for k, v in phased.items())
    # One that does beat it is a new best/ from the main epochs: its branches get their phase.
    train(
        prepared, whole, tmp_path / "again", resume=True, validate=lambda m: {"score": next(scores)}
    )
    assert phases("again") == 4


def test_a_step_reads_kept_picture_measures_and_computes_what_it_did(prepared):
    """The cache keeps what the visual encoder measures of each clip's frames (not of augmented
    ones): a training step from the memo, first and again, gives the plain step's loss and
    gradients bit for bit."""
    rng = np.random.default_rng(0)
    shown = next(iterate_batches(prepared.train, prepared.cache, prepared.texts, 8, rng))
    assert shown.frame_keys == shown.ids
    level = iterate_batches(
        prepared.train, prepared.cache, prepared.texts, 8, rng, augment=level_only()
    )
    assert next(level).frame_keys is not None and None not in next(level).frame_keys
    redrawn = next(
        iterate_batches(
            prepared.train, prepared.cache, prepared.texts, 8, rng, augment=AugmentConfig(p=1.0)
        )
    )
    assert redrawn.frame_keys == [None] * 8

    cfg = TrainConfig(preset="tiny", epochs=1, batch_size=8, device="cpu", augment=None)
    torch.manual_seed(0)
    model = TrimodalModel(preset("tiny"), prepared.backbone).train()
    memo = PictureMemo()
    for run_branch in (False, True):
        model.encoders[Modality.VISUAL].run_branch = run_branch
        found = []
        for pictures in (None, memo, memo):
            model.zero_grad(set_to_none=True)
            torch.manual_seed(7)
            loss, _ = train_step(model, shown, cfg, 0, torch.device("cpu"), pictures)
            loss.backward()
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            found.append((loss.detach(), grads))
        for loss, grads in found[1:]:
            assert torch.equal(loss, found[0][0])
            assert all(torch.equal(a, b) for a, b in zip(grads, found[0][1], strict=True))
    assert len(memo) == 8


def test_the_event_phase_comes_last_runs_once_and_is_recorded(prepared, tmp_path, caplog):
    """After the main epochs and the branch phase, the picture's event network learns alone,
    then the what networks; the checkpoint says both are trained and the policy is measured with
    them; a resumed run does not train them twice; with no event epochs the model has no event
    network at all."""
    cfg = replace(ONE_EPOCH_TIMING, branch_epochs=1, event_epochs=2, what_epochs=1)
    with caplog.at_level("WARNING", logger="models.model"):
        train(prepared, cfg, tmp_path / "run")
    # the trainer's own loads before the phase do not call the network untrained
    assert "never trained" not in caplog.text
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    phases = [x.get("phase") for x in lines if x.get("phase")]
    from training.attribute_phase import TEXT_EPOCHS

    # last the attribute readers: the text one's epochs, its names of the kinds, the picture one,
    # the direction's from where the picture's foreground goes, the kind's from the glyphs'
    # outlines, and each sound's kind and size from how it sounds (and between the names and
    # the picture, where a caption's nouns stand)
    assert phases == ["branch", "events", "events", "what"] + ["attributes"] * (TEXT_EPOCHS + 8) + [
        "policy"
    ]
    # and the policy's measurement, its parts timed
    policy_line = lines[-1]
    assert set(policy_line["parts"]) >= {"pool", "re-rank", "agreement", "text→audio"}
    assert 0 < sum(policy_line["parts"].values()) <= policy_line["took"] + 0.1
    assert [x.get("part") for x in lines if x.get("phase") == "attributes"][-4:] == [
        "picture",
        "drift",
        "shape",
        "timbre",
    ]
    timbre = next(x for x in lines if x.get("part") == "timbre")
    assert timbre["failed"] == 0 and timbre["runs"] > 0 and timbre["kind_read"] > 0.5
    words = next(x for x in lines if x.get("part") == "words")
    assert words["words"] > 0
    assert words["kind"]["calibration"] > 0 and np.isfinite(words["kind"]["scale"])
    nouns = next(x for x in lines if x.get("part") == "nouns")
    assert nouns["noun_tokens"] > 0 and nouns["calibration"] > 0 and nouns["temperature"] > 0
    assert nouns["found_right"] > 0.5 and np.isfinite(nouns["found"])
    assert np.isfinite(nouns["lead"]) and 0 < nouns["lead_right"] <= 1
    # and the kinds a sound caption's sound words name, fitted on one per training clip
    sound_words = next(x for x in lines if x.get("part") == "sound words")
    assert sound_words["captions"] > 0
    assert sound_words["loss"] < np.log(2)  # better than the zero reader's every kind at one half
    assert 0 <= sound_words["one_kind_read"] <= 1
    # and the names of a small and a large source, seen and heard, for the size heard
    heard_size = next(x for x in lines if x.get("part") == "heard size")
    assert heard_size["names"] >= 8 and heard_size["calibration"] > 0  # 2 + 2 seen, 4 heard
    assert np.isfinite(heard_size["scale"]) and np.isfinite(heard_size["offset"])
    assert all(np.isfinite(x["envelope_loss"]) for x in lines if x.get("phase") == "events")
    model = TrimodalModel.load(tmp_path / "run" / "best", text_backbone=prepared.backbone)
    assert model.cfg.picture_events == "learned"
    assert model.picture_events is not None and model.picture_events.is_trained
    assert model.search_policy.recorded
    assert (tmp_path / "run" / "event_phase.json").is_file()
    assert model.knows_what() and (tmp_path / "run" / "what_phase.json").is_file()
    assert model.knows_attributes() and (tmp_path / "run" / "attribute_phase.json").is_file()
    assert model.attributes is not None and "kind" in model.attributes.worded()
    assert model.knows_nouns() and model.knows_noun_lead() and model.knows_sound_words()
    assert model.attributes.reads_pitch
    assert set(model.attributes.pitch_columns.tolist()) == set(columns("size"))
    assert model.knows_timbre()
    # the evaluation (and so the search policy) matches pictures by the network's envelope
    from training.evaluate import embed_pool

    ids = [e.id for e in prepared.val[:3]]
    pool = embed_pool(model, prepared.cache, ids)
    c = prepared.cache
    for i, item in enumerate(ids):
        want = model.picture_envelope(
            np.asarray(c.frames(item)),
            c.changes(item),
            c.region_changes(item),
            c.motion(item),
            c.halves(item),
        )
        np.testing.assert_array_equal(pool.events["visual"][i], want)
    train(prepared, cfg, tmp_path / "run", resume=True)
    again = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert sum(json.loads(x).get("phase") == "events" for x in again) == 2
    assert sum(json.loads(x).get("phase") == "what" for x in again) == 1
    assert sum(json.loads(x).get("phase") == "attributes" for x in again) == TEXT_EPOCHS + 8

    train(prepared, replace(cfg, event_epochs=0), tmp_path / "none")
    plain = TrimodalModel.load(tmp_path / "none" / "best", text_backbone=prepared.backbone)
    assert plain.cfg.picture_events == "changes" and plain.picture_events is None
    assert not (tmp_path / "none" / "event_phase.json").exists()
    # the network is made on a fork of the random state: the encoders trained bit for bit alike
    with_net = model.state_dict()
    assert all(torch.equal(v, with_net[k]) for k, v in plain.state_dict().items())
    assert set(with_net) - set(plain.state_dict()) == {
        k for k in with_net if k.startswith("picture_events.")
    }
