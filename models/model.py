"""TrimodalModel: the three encoders, model inputs from decoded media, checkpoint directories.

The model returns embeddings; losses live in `training.losses`. A checkpoint directory holds
`config.json` and `model.safetensors`. A frozen text tower that can be loaded again from where it
came from (the bundled MiniLM, a local directory) is not copied into the checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from models.attributes import ATTRIBUTES, GLYPH_CLASSES, AttributeReaders
from models.config import RANDOM_TINY, Modality, ModelConfig
from models.drift import drift_features
from models.encoders import AudioEncoder, Embeddings, PictureInputs, VisualEncoder
from models.event_net import SIZE as EVENT_SIZE
from models.event_net import PictureEventNet, learned_envelope
from models.events import picture_events
from models.features import LogMel, LogMelConfig, frames_batch, pad_batch
from models.policy import SEARCH_FILE, SearchPolicy, load_policy
from models.text import TextBackbone, TextEncoder
from models.what_net import CLASSES as WHAT_CLASSES
from models.what_net import WhatNets, picture_inputs, probabilities

PAIRS = ("visual_text", "audio_text", "audio_visual", "sequence")
SEQUENCE_TEMPERATURE = 0.2
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"

log = logging.getLogger(__name__)


class TrimodalModel(nn.Module):
    def __init__(self, cfg: ModelConfig, text_backbone: TextBackbone | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoders = nn.ModuleDict(
            {
                Modality.AUDIO: AudioEncoder(cfg),
                Modality.VISUAL: VisualEncoder(cfg),
                Modality.TEXT: TextEncoder(cfg, text_backbone),
            }
        )
        # One learnable temperature per contrasted pair, stored as log(1 / T) like CLIP. The
        # sequence pair's logits are standardised distances (about N(0, 1) per row), not cosines
        # in [-1, 1]: CLIP's 1/0.07 would spread them over ±40 and let SCAV drown the other
        # losses at the start, so it starts at T = 0.2.
        init = {p: math.log(1.0 / cfg.init_temperature) for p in PAIRS}
        init["sequence"] = math.log(1.0 / SEQUENCE_TEMPERATURE)
        self.logit_scale = nn.ParameterDict(
            {p: nn.Parameter(torch.tensor(v)) for p, v in init.items()}
        )
        self.log_mel = LogMel(
            LogMelConfig(
                sample_rate=cfg.audio.sample_rate,
                n_fft=cfg.audio.n_fft,
                hop_length=cfg.audio.hop_length,
                n_mels=cfg.audio.n_mels,
            )
        )
        # The picture's learned event envelope (`models.event_net`), trained after the main
        # epochs; None where the config keeps the hand-made one. Made on a fork of the random
        # state: the rest of a run (its batches, dropout, augmentation) draws what it would
        # without it, so the encoders train bit for bit as in a model that has none.
        self.picture_events: PictureEventNet | None = None
        if cfg.picture_events == "learned":
            with torch.random.fork_rng(devices=[]):
                self.picture_events = PictureEventNet(min(EVENT_SIZE, cfg.visual.image_size))
        # The sources a picture shows and a sound sounds (`models.what_net`), trained after the
        # event phase; on a fork of the random state like the event network.
        self.what_nets: WhatNets | None = None
        if cfg.what_nets:
            with torch.random.fork_rng(devices=[]):
                self.what_nets = WhatNets(cfg.audio.n_mels)
        # What a caption names and a picture shows (`models.attributes`), fitted after the what
        # phase; on a fork of the random state like the networks above.
        self.attributes: AttributeReaders | None = None
        if cfg.attribute_readers:
            with torch.random.fork_rng(devices=[]):
                self.attributes = AttributeReaders(self.text.backbone.hidden, cfg.embed_dim)
        # What the sequence heads are good for (models.policy): measured by the trainer after
        # training and read back by `load`; a model not loaded from a checkpoint has no record.
        self.search_policy = SearchPolicy.unrecorded()

    @property
    def text(self) -> TextEncoder:
        return self.encoders[Modality.TEXT]  # type: ignore[return-value]

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def scale(self, pair: str) -> Tensor:
        return self.logit_scale[pair].clamp(max=math.log(100.0)).exp()

    # -- inputs -----------------------------------------------------------------------------------

    def audio_inputs(self, waves: Sequence[np.ndarray | Tensor]) -> tuple[Tensor, Tensor]:
        """Mono waveforms at the model's sample rate → log-mel (B, n_mels, F) and mask (B, F).

        An empty waveform (a silent video) gets an all-False mask, never a fake silent clip.
        """
        hop, edge = self.cfg.audio.hop_length, self.cfg.audio.n_fft // 2
        tensors = [torch.as_tensor(w, dtype=torch.float32).reshape(-1) for w in waves]
        # Each clip's end mirrored before the batch pads it: the last frames' windows then see the
        # same samples alone or beside a longer clip (the centred STFT would otherwise mirror a
        # lone clip's end but see a batched one's zero padding).
        batch, _ = pad_batch([_mirror_end(t, edge, hop) for t in tensors])
        mel = self.log_mel(batch.to(self.device))
        # floor(n / hop) frames: the centred STFT's extra last frame would start a step that holds
        # only 10 ms of sound.
        frames = torch.tensor([t.shape[0] // hop for t in tensors], device=self.device)
        mel = mel[..., : max(1, int(frames.max()))]
        mask = torch.arange(mel.shape[-1], device=self.device)[None] < frames[:, None]
        return mel, mask

    def visual_inputs(self, clips: Sequence[np.ndarray | Tensor]) -> tuple[Tensor, Tensor]:
        """uint8 frames (T, H, W, 3) per clip at `visual.fps` → (B, F, 3, S, S) and mask (B, F).

        A clip without frames (audio only) gets one padded step and an all-False mask.
        """
        size = (self.cfg.visual.image_size, self.cfg.visual.image_size)
        batch, mask = frames_batch(clips, size)
        return batch.to(self.device), mask.to(self.device)

    # -- encoding ---------------------------------------------------------------------------------

    def encode_audio(self, mel: Tensor, mask: Tensor) -> Embeddings:
        return self.encoders[Modality.AUDIO](mel, mask)

    def encode_visual(self, frames: Tensor, mask: Tensor) -> Embeddings:
        return self.encoders[Modality.VISUAL](frames, mask)

    def encode_pictures(self, inputs: PictureInputs) -> Embeddings:
        """As `encode_visual`, from what the visual encoder reads of the frames
        (`VisualEncoder.measure`, or a memo of it: `training.pictures`)."""
        encoder = self.encoders[Modality.VISUAL]
        assert isinstance(encoder, VisualEncoder)
        return encoder.encode(inputs)

    def encode_text(self, texts: list[str]) -> Embeddings:
        return self.text(texts)

    def project_text(self, features: Tensor) -> Embeddings:
        """From cached backbone sentence vectors (frozen text tower)."""
        return self.text.project(features)

    def picture_envelope(
        self,
        frames: np.ndarray,
        changes: np.ndarray | None = None,
        region_changes: np.ndarray | None = None,
        motion: np.ndarray | None = None,
        halves: np.ndarray | None = None,
    ) -> np.ndarray:
        """(T,) a clip's standardised picture event envelope, one bin per frame of (T, H, W, 3)
        `frames` at the model's frame rate: the trained network's (`models.event_net`) where the
        checkpoint has one, else the hand-made change envelope (`models.events.picture_events`).
        `changes` … `halves`: the decoder's per-frame measures (`models.media.DecodedMedia`)."""
        net = self.picture_events
        if net is not None and net.is_trained:
            return learned_envelope(net, frames, changes, region_changes, motion, halves)
        fps = self.cfg.visual.fps
        return picture_events(frames, fps, fps, changes)

    def knows_attributes(self) -> bool:
        """Whether the checkpoint has fitted readers of what a caption names and a picture shows."""
        return self.attributes is not None and self.attributes.is_trained

    def attribute_directions(self, states: Tensor, mask: Tensor) -> Tensor:
        """(B, L, H) token states of the frozen tower and their (B, L) mask → (B, A, D): per
        attribute of `models.attributes.ATTRIBUTES`, the direction a text query's picture-index
        vector leans along (`AttributeReaders.directions`). Needs fitted readers."""
        return self.attribute_reading(states, mask)[1]

    def attribute_reading(self, states: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """What the text reader reads of (B, L, H) token states with their (B, L) mask: the
        (B, C) probabilities of `models.attributes.CLASSES` and the (B, A, D) directions
        (`attribute_directions`), from one pass of the reader. Needs fitted readers."""
        if self.attributes is None or not self.attributes.is_trained:
            raise RuntimeError("this checkpoint has no fitted attribute readers")
        readers = self.attributes
        probabilities = torch.sigmoid(
            readers.text_logits(states.to(self.device), mask.to(self.device))
        )
        directions = readers.directions(probabilities).float().cpu()
        return probabilities.float().cpu(), directions

    def knows_nouns(self) -> bool:
        """Whether the checkpoint reads the kinds a sentence names at its nouns
        (`AttributeReaders.noun_kinds`, fitted by the attribute phase)."""
        return (
            self.attributes is not None and self.knows_attributes() and self.attributes.reads_nouns
        )

    def knows_noun_lead(self) -> bool:
        """Whether the checkpoint can count a sentence's second noun by its lead as well
        (`AttributeReaders.noun_lead`, calibrated by the attribute phase)."""
        return (
            self.knows_nouns() and self.attributes is not None and self.attributes.reads_noun_lead
        )

    def heard_reading(
        self, states: Tensor, mask: Tensor, probabilities: Tensor, lead: bool = False
    ) -> Tensor | None:
        """The (B, C) `probabilities` of `attribute_reading` (of the same states) with the kinds
        read at each sentence's nouns where it has one (`AttributeReaders.heard_probabilities`;
        with `lead`, its second noun counted by the lead rule): what a text query searching
        sounds agrees on where the policy says so (`SearchPolicy.text_heard_nouns`,
        `text_heard_lead`). None where the checkpoint reads no nouns (or has no lead rule)."""
        if not (self.knows_noun_lead() if lead else self.knows_nouns()):
            return None
        assert self.attributes is not None
        states, mask = states.to(self.device), mask.to(self.device)
        found = self.attributes.heard_probabilities(
            states, mask, probabilities.to(self.device), lead
        )
        return found.float().cpu()

    def knows_sound_words(self) -> bool:
        """Whether the checkpoint can read the kinds a sentence says are heard from its sound
        words where its nouns are not found (`AttributeReaders.sound_probabilities`, fitted by
        the attribute phase)."""
        return (
            self.knows_nouns() and self.attributes is not None and self.attributes.reads_sound_words
        )

    def heard_readings(
        self, states: Tensor, mask: Tensor, probabilities: Tensor
    ) -> dict[tuple[bool, bool], Tensor]:
        """`heard_reading` by each rule of the second noun the checkpoint has (False: its own
        logit; True: its lead), and each again with the kinds of a sentence whose nouns are not
        found read from its sound words where the checkpoint reads them: keyed (lead, sound
        words), from one reading of the nouns (`AttributeReaders.heard_by_rule`); empty where the
        checkpoint reads no nouns."""
        if not self.knows_nouns():
            return {}
        assert self.attributes is not None
        states, mask = states.to(self.device), mask.to(self.device)
        found = self.attributes.heard_by_rule(states, mask, probabilities.to(self.device))
        return {rule: p.float().cpu() for rule, p in found.items()}

    def knows_directions(self) -> bool:
        """Whether the checkpoint reads a picture's direction from where its foreground goes
        (`models.drift`, fitted by the attribute phase)."""
        return self.attributes is not None and self.attributes.reads_drift

    def picture_directions(self, clips: Sequence[np.ndarray]) -> np.ndarray | None:
        """(N, 3) each clip's (T, H, W, 3) frames (at the model's frame rate) read for the
        chance of each direction (`models.attributes.ATTRIBUTES["direction"]`) by where its
        foreground goes; None where the checkpoint has no drift reader."""
        if not self.knows_directions():
            return None
        assert self.attributes is not None
        if not clips:
            return np.zeros((0, len(ATTRIBUTES["direction"])), np.float32)
        fps = self.cfg.visual.fps
        found = np.stack([drift_features(np.asarray(c), fps) for c in clips])
        return self.attributes.drift_probabilities(found)

    def knows_glyphs(self) -> bool:
        """Whether the checkpoint reads a picture's glyphs from their pixels (`models.shape`: the
        kind from their outlines, the colour from their pixels; fitted by the attribute phase)."""
        return self.attributes is not None and (
            self.attributes.reads_shape or self.attributes.reads_tint
        )

    def glyph_reading(self, shapes: Sequence[np.ndarray | None]) -> np.ndarray | None:
        """(N, `models.attributes.GLYPH_CLASSES`) each clip's chances of each kind, then each
        colour (`AttributeReaders.glyph_probabilities`), from its `models.shape.glyph_shapes`
        rows; NaN where a clip has none (or None given) or a reader is not fitted; None where
        the checkpoint reads neither."""
        if not self.knows_glyphs():
            return None
        assert self.attributes is not None
        out = np.full((len(shapes), GLYPH_CLASSES), np.nan, np.float32)
        for i, rows in enumerate(shapes):
            if rows is not None:
                out[i] = self.attributes.glyph_probabilities(rows)
        return out

    def knows_timbre(self) -> bool:
        """Whether the checkpoint reads each sound's kind and size from how it sounds
        (`models.timbre`; fitted by the attribute phase)."""
        return self.attributes is not None and self.attributes.timbre.is_fitted

    def timbre_reading(self, runs: Sequence[np.ndarray | None]) -> np.ndarray | None:
        """(N, len(`models.what_net.CLASSES`)) each clip's chances of each kind × size
        (`models.timbre.TimbreReader.clip_chances`) from its `models.timbre.sound_runs` rows;
        NaN where a clip has none (or None given); None where the checkpoint has no fitted
        timbre reader."""
        if not self.knows_timbre():
            return None
        assert self.attributes is not None
        out = np.full((len(runs), len(WHAT_CLASSES)), np.nan, np.float32)
        for i, rows in enumerate(runs):
            if rows is not None:
                out[i] = self.attributes.timbre.clip_chances(rows)
        return out

    def knows_what(self) -> bool:
        """Whether the checkpoint has trained networks naming what a piece shows and sounds."""
        return self.what_nets is not None and self.what_nets.is_trained

    def picture_what(self, clips: Sequence[np.ndarray]) -> np.ndarray | None:
        """(N, len(CLASSES)) each clip's (T, H, W, 3) frames' source classes' probabilities
        (`models.what_net`); None where the checkpoint has no trained networks."""
        if not self.knows_what():
            return None
        assert self.what_nets is not None
        net = self.what_nets.picture
        return probabilities(net, [picture_inputs(c).to(self.device) for c in clips])

    def sound_what(self, waves: Sequence[np.ndarray | Tensor]) -> np.ndarray | None:
        """(N, len(CLASSES)) each mono waveform's (at the model's rate) source classes'
        probabilities; None where the checkpoint has no trained networks."""
        if not self.knows_what():
            return None
        assert self.what_nets is not None
        mels = [
            self.log_mel(torch.as_tensor(np.asarray(w), dtype=torch.float32).reshape(1, -1))
            for w in waves
        ]
        return probabilities(self.what_nets.sound, [m.to(self.device) for m in mels])

    # -- checkpoints ------------------------------------------------------------------------------

    def _keeps_backbone(self) -> bool:
        """Whether the text tower's weights must live in the checkpoint."""
        return not self.cfg.text.frozen or self.cfg.text.model == RANDOM_TINY

    def save(self, directory: str | os.PathLike[str]) -> Path:
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        state = {
            k: v.detach().cpu().contiguous()
            for k, v in self.state_dict().items()
            if self._keeps_backbone() or not k.startswith("encoders.text.backbone.")
        }
        tmp_weights, tmp_config = out / f".{WEIGHTS_FILE}.part", out / f".{CONFIG_FILE}.part"
        save_file(state, str(tmp_weights))
        self.cfg.save(tmp_config)
        # A search policy measured on the weights being replaced no longer applies to them.
        (out / SEARCH_FILE).unlink(missing_ok=True)
        os.replace(tmp_weights, out / WEIGHTS_FILE)
        os.replace(tmp_config, out / CONFIG_FILE)
        return out

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike[str],
        device: str | torch.device = "cpu",
        text_backbone: TextBackbone | None = None,
        warn_untrained: bool = True,
    ) -> TrimodalModel:
        """`warn_untrained`: log a checkpoint whose picture event network was never trained
        (off for the trainer's own loads before its event phase, where none is yet)."""
        path = Path(directory)
        if not (path / CONFIG_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
            raise FileNotFoundError(
                f"{path} is not a checkpoint: it needs {CONFIG_FILE} and {WEIGHTS_FILE}"
            )
        cfg = ModelConfig.load(path / CONFIG_FILE)
        model = cls(cfg, text_backbone)
        state = load_file(str(path / WEIGHTS_FILE))
        missing, unexpected = model.load_state_dict(state, strict=False)
        allowed = () if model._keeps_backbone() else ("encoders.text.backbone.",)
        missing = [k for k in missing if not k.startswith(allowed)] if allowed else missing
        if missing or unexpected:
            raise ValueError(
                f"checkpoint {path} does not fit its config: missing {missing[:5]}, "
                f"unexpected {unexpected[:5]}"
            )
        model.search_policy = load_policy(path)
        net = model.picture_events
        if warn_untrained and net is not None and not net.is_trained:
            # a run stopped before its event phase: its network would place events at random
            log.warning(
                "checkpoint %s: its picture event network was never trained; pictures are "
                "matched by the hand-made change envelope",
                path,
            )
        return model.to(device).eval()


def _mirror_end(wave: Tensor, edge: int, minimum: int) -> Tensor:
    if wave.numel() > edge:
        return torch.cat([wave, wave[-edge - 1 : -1].flip(0)])
    return F.pad(wave, (0, max(0, minimum - wave.numel())))  # too short to mirror: silence


def checkpoint_hash(directory: str | os.PathLike[str]) -> str:
    """sha256 over config and weights: what an index records to know which model made it."""
    digest = hashlib.sha256()
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        with open(Path(directory) / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def describe(model: TrimodalModel) -> dict[str, int]:
    """Parameter counts per encoder (trainable only), for logs and the README."""
    out = {}
    for name, module in model.encoders.items():
        out[name] = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return json.loads(json.dumps(out))
